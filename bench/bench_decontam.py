"""Decontamination speed and memory: prompts per second and peak RSS at 100k and 1M prompts.

    python bench/bench_decontam.py --out bench/decontam.json

Two measurements per size, each in a fresh process so peak RSS belongs to that size alone:

- `scan`: the matcher itself (`r1pipe.decontam.scan`) over a generator of synthetic prompts,
  against a benchmark index the size of AIME + MATH-500 + GPQA Diamond + LiveCodeBench
  (~1,400 problems); the floor of what any source costs;
- `pipeline`: `r1pipe.decontam.decontaminate` on a pipeline whose training source is a JSONL
  file of that many prompts read with `streaming: true` (the default for large local files),
  through the same loader the stages use, writing the report; what a run pays.

Synthetic prompts are 20-70 words of a math-problem vocabulary (20,000 distinct ones,
cycled); one in 1,000 embeds a benchmark problem, so the report has matches to write. Bounded memory shows as a peak RSS
that does not grow from 100k to 1M prompts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_PROMPTS = 1_400
_WORDS = ("find compute let the of a an and number integer sum product prime circle radius "
         "triangle area value real positive odd even digits remainder divided by probability "
         "random chosen polynomial roots square cube function equation solve which smallest "
         "largest such that there exist how many ways points line segment angle degrees")
VOCAB = _WORDS.split()


def synthetic(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(words)) + "?"


def bench_prompts(seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    return [synthetic(rng, rng.randint(25, 120)) for _ in range(BENCH_PROMPTS)]


POOL = 20_000  # distinct synthetic prompts, cycled: making a prompt costs more than checking it


def training_prompts(n: int, seed: int = 2) -> Any:
    rng = random.Random(seed)
    pool = [synthetic(rng, rng.randint(20, 70)) for _ in range(min(n, POOL))]
    problems = bench_prompts()
    for i in range(n):
        text = pool[i % len(pool)]
        if i % 1000 == 0:
            text = "Solve: " + problems[i % len(problems)].upper()
        yield {"id": f"t{i}", "prompt": text}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_scan(n: int) -> dict[str, Any]:
    from r1pipe.decontam import BenchmarkIndex, scan

    index = BenchmarkIndex(8)
    for i, text in enumerate(bench_prompts()):
        index.add("bench", f"b{i}", text)
    rss_index = peak_rss_mb()
    started = time.perf_counter()
    report, lines = scan(training_prompts(n), index, source="train")
    matched = sum(1 for _ in lines)
    seconds = time.perf_counter() - started
    return {"prompts": report.prompts, "contaminated": matched, "seconds": round(seconds, 2),
            "prompts_per_second": round(report.prompts / seconds),
            "benchmark_ngrams": len(index.grams), "peak_rss_mb_after_index": round(rss_index, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def run_pipeline(n: int, work: Path) -> dict[str, Any]:
    from r1pipe.config import load
    from r1pipe.decontam import decontaminate

    train = work / f"train-{n}.jsonl"
    with train.open("w") as fh:
        for record in training_prompts(n):
            fh.write(json.dumps(record) + "\n")
    bench = work / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"b{i}", "prompt": p, "answer": "1"}) + "\n"
                             for i, p in enumerate(bench_prompts())))
    cfg_path = work / f"p-{n}.yaml"
    cfg_path.write_text(
        f"name: bench-decontam\nrun_dir: {work / f'run-{n}'}\nbase_model: {{builtin: tiny-llama}}\n"
        f"data:\n  train: {{path: {train}, streaming: true}}\n"
        f"eval:\n  benchmarks:\n    bench: {{path: {bench}}}\n")
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    report = decontaminate(load(cfg_path))
    seconds = time.perf_counter() - started
    source = report["sources"]["train"]
    return {"prompts": source["prompts"], "contaminated": source["contaminated"],
            "seconds": round(seconds, 2), "prompts_per_second": round(source["prompts"] / seconds),
            "file_mb": round(train.stat().st_size / 2**20, 1),
            "peak_rss_mb_before": round(rss_before, 1), "peak_rss_mb": round(peak_rss_mb(), 1)}


def child(kind: str, n: int, work: str) -> None:
    result = run_scan(n) if kind == "scan" else run_pipeline(n, Path(work))
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/decontam.json")
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "N", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {"benchmark_prompts": BENCH_PROMPTS, "ngram": 8,
                               "cpus": os.cpu_count(), "scan": {}, "pipeline": {}}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as work:
        env.setdefault("R1PIPE_CACHE", str(Path(work) / "cache"))
        for kind in ("scan", "pipeline"):
            for n in sizes:
                out = subprocess.run([sys.executable, __file__, "--child", kind, str(n), work],
                                     env=env, capture_output=True, text=True, check=True)
                results[kind][str(n)] = json.loads(out.stdout.strip().splitlines()[-1])
                print(kind, n, results[kind][str(n)], flush=True)
    from r1pipe.artifacts import atomic_write_json

    atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
