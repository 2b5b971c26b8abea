"""Benchmark: rejection-sampling filter + mix throughput and peak memory at two sizes.

Writes a synthetic `generated/` artifact (reasoning samples, 4 per prompt, contiguous per
prompt as a generation job writes them) and a synthetic `general_generated/` one, then runs
exactly what the reject-sample stage runs on them: `map_shards(apply_filters)` into
`filtered/` and `general/`, then `sample_and_shuffle(sft_record)` into `mix/`. Each size runs
in a fresh child process, whose peak RSS (ru_maxrss) is reported next to its RSS after the
imports: if everything streams, the peak is the same at 100k and 800k records. Each size is
run in one process and, when the stage would use more at that size, with the filters in
one worker process per CPU (`filter_workers`).

Samples are varied the way real ones are: right and wrong answers, truncated generations,
missing format, chains of thought in English with sentences of German or Chinese mixed in,
fenced code, over-long paragraphs, duplicates. Every chain of thought carries a sentence of
random words, so the language detector's cache does not make the figure look better than
real data would.

    python bench/bench_filters.py --out bench/filters.json [--sizes 100000 800000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ST = "|special_token|"
SAMPLES = 4
PROMPTS_PER_SHARD = 64
GENERAL_SHARE = 0.25  # 200k of 800k, as in configs/r1.yaml
WORDS = ("number", "value", "result", "term", "product", "sum", "check", "answer", "step",
         "carry", "digit", "total", "factor", "equation", "side", "both", "add", "subtract",
         "multiply", "divide", "left", "right", "first", "second", "next", "then", "again",
         "careful", "simple", "small", "large", "even", "odd", "whole", "part", "case", "rule",
         "method", "idea", "look", "see", "find", "give", "take", "keep", "move", "write",
         "read", "count", "start", "finish", "compare", "verify")
_EN = ["First, I multiply {a} by {b} to get {p}.", "Then I add {c} and obtain {r}.",
       "Let me double-check this step once more.", "Wait, that seems wrong, so I redo it.",
       "So the intermediate value is {p}.", "Finally, I verify the result by substitution."]
_DE = "Dann rechnen wir das Ergebnis noch einmal sorgfältig nach."
_ZH = "我们再检查一遍这个结果。"


def _cot(rng: random.Random, a: int, b: int, c: int, kind: int) -> str:
    p, r = a * b, a * b + c
    sentences = [s.format(a=a, b=b, c=c, p=p, r=r) for s in rng.sample(_EN, 4)]
    sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 9))) + ".")
    if kind == 1:
        sentences.insert(2, _DE)
    elif kind == 2:
        sentences.insert(2, _ZH)
    text = " ".join(sentences)
    if kind == 3:
        text += f"\n\n```python\nprint({a} * {b} + {c})\n```"
    elif kind == 4:
        text += "\n\n" + " ".join(rng.choice(WORDS) for _ in range(320)) + "."
    return text


def write_inputs(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """`generated/` and `general_generated/` with n samples between them."""
    from r1pipe.artifacts import ShardedJsonlWriter

    rng = random.Random(seed)
    n_general = int(n * GENERAL_SHARE)
    n_reasoning = n - n_general
    writer = ShardedJsonlWriter(root / "generated")
    shard: list[dict[str, Any]] = []
    index = 0
    for p in range(n_reasoning // SAMPLES):
        a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(1, 999)
        answer = str(a * b + c)
        pid = f"arithmetic-{p:07d}"
        previous = None
        for k in range(SAMPLES):
            roll = rng.random()
            kind = 0 if roll < 0.8 else 1 + int((roll - 0.8) / 0.2 * 4)  # 80% clean English
            wrong = rng.random() < 0.35
            final = str(int(answer) + rng.randint(1, 9)) if wrong else answer
            if previous is not None and rng.random() < 0.05:
                text = previous  # a repeat of the previous sample
            elif rng.random() < 0.03:
                text = f"{ST}{_cot(rng, a, b, c, kind)}"  # cut off inside the reasoning
            elif rng.random() < 0.03:
                text = f"The answer is {final}."  # no reasoning section
            else:
                text = f"{ST}{_cot(rng, a, b, c, kind)}{ST}The answer is \\boxed{{{final}}}."
            previous = text
            shard.append({"id": f"{pid}-s{k}", "prompt_id": pid, "sample": k,
                          "prompt": f"What is {a} * {b} + {c}?", "completion": text,
                          "task": "arithmetic", "answer": answer, "task_type": "reasoning",
                          "token_count": len(text) // 4,
                          "finish_reason": "length" if text.count(ST) == 1 else "stop"})
        if (p + 1) % PROMPTS_PER_SHARD == 0:
            with writer.shard(index) as sink:
                sink.write_many(shard)
            index, shard = index + 1, []
    if shard:
        with writer.shard(index) as sink:
            sink.write_many(shard)
    writer.finalize()
    general = ShardedJsonlWriter(root / "general_generated")

    def general_records():
        for g in range(n_general):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120)))
            yield {"id": f"general-{g:07d}-s0", "prompt_id": f"general-{g:07d}", "sample": 0,
                   "prompt": f"Write a short note about the {rng.choice(WORDS)}.",
                   "completion": f"{ST}The user wants a note.{ST}{words}.", "answer": None,
                   "task_type": "general", "category": "writing", "language": "en",
                   "token_count": len(words) // 4, "finish_reason": "stop"}

    general.write_records(general_records(), shard_size=PROMPTS_PER_SHARD * SAMPLES)
    general.finalize()
    return {"reasoning": n_reasoning, "general": n_general}


def run_child(root: Path, workers: int) -> dict[str, Any]:
    """Filter + mix in this process (a fresh child): the numbers for one size."""
    from functools import partial

    from r1pipe.artifacts import iter_records
    from r1pipe.filters import FilterSummary, apply_filters
    from r1pipe.generation.shard_steps import MixSource, map_shards, sample_and_shuffle
    from r1pipe.stages.reject_sample import Config, sft_record

    cfg = Config()  # the stage's defaults: filters, keep_per_prompt, mix counts
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = root / f"workers-{workers}"
    start = time.perf_counter()
    summaries = {}
    for src, dst, settings, k in (("generated", "filtered", cfg.filters, cfg.keep_per_prompt),
                                  ("general_generated", "general", cfg.general.filters, None)):
        summary = FilterSummary()  # as the stage does it (stages/reject_sample.filter_samples)
        map_shards(root / src, out / dst,
                   partial(apply_filters, settings=settings, keep_per_prompt=k,
                           special_token=cfg.special_token,
                           summary=summary if workers == 1 else None),
                   on_skip=summary.add_all, description=f"filter {src}", workers=workers)
        assert summary.adds_up
        summaries[dst] = summary
    filtered_at = time.perf_counter()

    def kept(path: Path):
        return (r for r in iter_records(path) if r["verdict"] == "kept")

    sources = []
    for name, artifact, count in (("reasoning", "filtered", cfg.mix.reasoning),
                                  ("general", "general", cfg.mix.general)):
        available = summaries[artifact].kept
        sources.append(MixSource(name, partial(kept, out / artifact), available,
                                 min(count, available),
                                 partial(sft_record, source=name,
                                         special_token=cfg.special_token)))
    drawn = sample_and_shuffle(sources, out / "mix", seed=0,
                               records_per_shard=cfg.records_per_shard)
    done = time.perf_counter()
    total = sum(s.total for s in summaries.values())
    return {
        "records": total,
        "workers": workers,
        "filter_seconds": round(filtered_at - start, 2),
        "mix_seconds": round(done - filtered_at, 2),
        "records_per_second": round(total / (done - start), 1),
        "filter_records_per_second": round(total / (filtered_at - start), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_after_imports_mb": round(rss_imports, 1),
        "worker_peak_rss_mb": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1) if workers > 1
        else None,
        "kept": {k: s.kept for k, s in summaries.items()},
        "removed_by": summaries["filtered"].as_dict()["removed_by"],
        "mix": drawn,
    }


def bench_size(n: int, workdir: Path, workers: list[int]) -> dict[str, Any]:
    root = workdir / f"n{n}"
    tick = time.perf_counter()
    write_inputs(root, n)
    written = time.perf_counter() - tick
    results: dict[str, Any] = {"write_inputs_seconds": round(written, 1)}
    for w in workers:
        out = subprocess.run([sys.executable, __file__, "--child", str(root), "--workers",
                              str(w)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        if out.returncode != 0:
            raise SystemExit(f"child for n={n}, workers={w} failed:\n{out.stderr[-4000:]}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        results[f"workers_{w}"] = result
        print(f"n={n:,}, {w} process(es): {result['records_per_second']:,.0f} records/s, "
              f"peak RSS {result['peak_rss_mb']:.0f} MB"
              + (f" (+ {w} x {result['worker_peak_rss_mb']:.0f} MB workers)" if w > 1 else ""),
              file=sys.stderr)
    shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    from r1pipe.stages.reject_sample import filter_workers

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/filters.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 800_000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_child(Path(args.child), args.workers)))
        return
    auto = filter_workers(None, max(args.sizes), None)  # what the stage picks at this size
    workers = sorted({1, auto})
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-filters-") as tmp:
        for n in args.sizes:
            results[str(n)] = bench_size(n, Path(tmp), workers)
    small, large = results[str(min(args.sizes))], results[str(max(args.sizes))]
    report = {
        "what": "reject-sample filter (map_shards + apply_filters with the stage's default "
                "filters) and mix (sample_and_shuffle to the default 600k/200k counts) over "
                "synthetic generated artifacts (3/4 reasoning, 1/4 general samples); one fresh "
                "process per size and worker count; peak RSS is ru_maxrss of that process "
                "(worker_peak_rss_mb: the largest worker process)",
        "sizes": results,
        "peak_rss_ratio_large_to_small": {
            f"workers_{w}": round(large[f"workers_{w}"]["peak_rss_mb"]
                                  / small[f"workers_{w}"]["peak_rss_mb"], 3) for w in workers},
        "records_ratio_large_to_small": max(args.sizes) / min(args.sizes),
        "stage_default_workers_here": auto,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "note": "2 shared cores: other jobs ran at the same time"},
        "versions": {p: metadata.version(p) for p in ("lingua-language-detector",
                                                      "math-verify")},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
