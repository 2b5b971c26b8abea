"""Benchmark: rewards scored per second per core, for each reward family.

Scores 10,000 realistic completions (groups of 8 per prompt, as GRPO samples them) of the
built-in tasks plus a LaTeX "math" set that goes through math-verify. Completions mix the
R1-Zero format, the cold-start format, truncated generations, right and wrong answers,
English chains of thought with some Chinese mixed in, and lengths from a line to a few
thousand characters. Each family is timed on the whole set in one process with torch held
to one thread, so the figure is per core; caches are cleared before each family, so the
gold answer of a prompt is parsed once per group, as in training.

The reward model is a tiny random Llama classifier built on the spot (no hub here), so its
figure is the library's overhead plus a small forward pass, not a real RM's speed. The judge
talks to a scripted OpenAI-compatible server on loopback, so its figure is the HTTP/client
overhead, not an LLM's.

    python bench/bench_rewards.py --out bench/rewards.json [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GROUP = 8
BATCH = 64  # completions per reward call (a GRPO step's local batch)

_EN = [
    "Let me work through this step by step.",
    "First, I compute the product of the two numbers.",
    "Wait, let me double-check that step again.",
    "So the intermediate result is {v}.",
    "Next, I add the remaining term to get {v}.",
    "Hmm, that does not look right, so I will start over.",
    "Finally, I verify the result by substituting it back.",
    "Step {k}: combine the terms carefully.",
    "The answer should be an integer, which {v} is.",
]
_ZH = ["我们先把两个数相加。", "让我再检查一遍答案。", "所以结果是{v}。"]


def _math_problem(rng: random.Random) -> tuple[str, list[str]]:
    """A LaTeX gold answer and ways to state it: the first is right, the others mostly not."""
    a, b = rng.randint(1, 99), rng.randint(2, 99)
    kind = rng.randrange(6)
    if kind == 0:
        return f"\\frac{{{a}}}{{{b}}}", [f"\\frac{{{a * 2}}}{{{b * 2}}}", f"{a}/{b}",
                                          f"\\frac{{{a + 1}}}{{{b}}}"]
    if kind == 1:
        return f"[{a}, {a + b})", [f"[{a},{a + b})", f"({a}, {a + b})", f"[{a}, {a + b}]"]
    if kind == 2:
        return f"\\{{{a}, {b}, {a + b}\\}}", [f"\\{{{a + b}, {b}, {a}\\}}",
                                                f"\\{{{a}, {b}\\}}"]
    if kind == 3:
        return f"\\sqrt{{{b}}}", [f"\\sqrt{{{b}}}", f"{b}^{{1/2}}", f"\\sqrt{{{b + 1}}}"]
    if kind == 4:
        return f"x = {a - b}", [f"{a - b}", f"x={a - b}", f"x = {a + b}"]
    return f"{a}\\pi", [f"{a}\\pi", f"\\pi \\cdot {a}", f"{a + 1}\\pi"]


def _cot(rng: random.Random, value: str, words: int, mix_zh: bool) -> str:
    parts: list[str] = []
    while sum(len(p.split()) for p in parts) < words:
        pool = _ZH if mix_zh and rng.random() < 0.15 else _EN
        parts.append(rng.choice(pool).format(v=value, k=len(parts) + 1))
    sep = "\n" if rng.random() < 0.5 else " "
    return sep.join(parts)


def _wrong(rng: random.Random, answer: str) -> str:
    try:
        return str(int(answer) + rng.choice([-10, -1, 1, 2, 7]))
    except ValueError:
        return answer + " + 1"


def _completion(rng: random.Random, answer: str, options: list[str] | None) -> str:
    right = rng.random() < 0.5
    if options is not None:
        stated = options[0] if right else rng.choice(options)
    else:
        stated = answer if right else _wrong(rng, answer)
    cot = _cot(rng, stated, rng.choice([20, 60, 150, 400]), mix_zh=rng.random() < 0.2)
    shape = rng.random()
    if shape < 0.45:
        return f"<think>\n{cot}\n</think>\n<answer>{stated}</answer>"
    if shape < 0.75:
        return f"|special_token|{cot}|special_token|The answer is $\\boxed{{{stated}}}$."
    if shape < 0.85:
        return f"<think>{cot} ```python\nprint({stated!r})\n``` </think> <answer>{stated}</answer>"
    if shape < 0.95:
        return f"<think>{cot}"  # truncated at the length limit
    return f"{cot} So the answer is {stated}."


def make_dataset(n: int, seed: int = 0) -> dict[str, list[Any]]:
    """`n` completions with their prompts and dataset columns, in groups of GROUP."""
    from r1pipe.data.tasks import generate_task

    rng = random.Random(seed)
    prompts_needed = n // GROUP + 1
    per_source = prompts_needed // 5 + 1
    records: list[dict[str, Any]] = []
    for task in ("arithmetic", "multiplication", "countdown", "linear_equation"):
        for difficulty in (1, 3, 5):
            records += generate_task(task, size=per_source // 3 + 1, difficulty=difficulty)
    for k in range(per_source):
        gold, options = _math_problem(rng)
        records.append({"id": f"math-{k}", "prompt": "Compute the value.", "answer": gold,
                        "task": None, "task_type": "reasoning", "options": options})
    rng.shuffle(records)
    cols: dict[str, list[Any]] = {k: [] for k in ("prompts", "completions", "answer", "task",
                                                  "numbers", "target", "id", "task_type",
                                                  "completion_ids")}
    for record in records:
        for _ in range(GROUP):
            if len(cols["completions"]) >= n:
                break
            text = _completion(rng, record["answer"], record.get("options"))
            if record.get("task") == "countdown" and rng.random() < 0.5:
                text = text.replace(record["answer"], record["answer"].replace(" ", ""))
            cols["prompts"].append(record["prompt"])
            cols["completions"].append(text)
            cols["answer"].append(record["answer"])
            cols["task"].append(record.get("task"))
            cols["numbers"].append(record.get("numbers"))
            cols["target"].append(record.get("target"))
            cols["id"].append(record["id"])
            cols["task_type"].append("reasoning")
            cols["completion_ids"].append([0] * (len(text) // 4))
    return cols


class _Judge(BaseHTTPRequestHandler):
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body
    protocol_version = "HTTP/1.1"  # keep-alive, as a real server
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        payload = json.dumps({"id": "b", "object": "chat.completion", "created": 0, "model": "m",
                              "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                  "role": "assistant", "content": "Fine. Rating: [[7]]"}}]})
        body = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _clear_caches() -> None:
    from r1pipe.rewards import accuracy, language, verifiers

    accuracy._VERDICTS.clear()
    verifiers._GOLD_CACHE.clear()
    language._identify.cache_clear()
    language.detect_language.cache_clear()


def _time(func: Any, data: dict[str, list[Any]], idx: list[int]) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds) to score the samples `idx` in batches of BATCH, and how
    many got a value. CPU time is what "per core" means on a shared machine; the judge,
    which waits on HTTP, is reported by wall time as well."""
    scored = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for b in range(0, len(idx), BATCH):
        chunk = idx[b:b + BATCH]
        pick = {k: [v[i] for i in chunk] for k, v in data.items()}
        out = func(prompts=pick.pop("prompts"), completions=pick.pop("completions"),
                   completion_ids=pick.pop("completion_ids"), **pick)
        scored += sum(v is not None for v in out)
    return time.process_time() - cpu, time.perf_counter() - wall, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/rewards.json")
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from r1pipe.rewards import build_reward_funcs, verifiers
    from r1pipe.testing import build_tiny_reward_model

    data = make_dataset(args.n)
    n = len(data["completions"])
    everything = list(range(n))
    by_task: dict[str, list[int]] = {}
    for i, task in enumerate(data["task"]):
        kind = ("exact" if task in verifiers.EXACT_TASKS else
                "countdown" if task in verifiers.COUNTDOWN_TASKS else "math_verify")
        by_task.setdefault(kind, []).append(i)

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    judge_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    tmp = tempfile.mkdtemp(prefix="bench-rm-")
    rm_path = str(build_tiny_reward_model(Path(tmp) / "rm"))

    families: dict[str, dict[str, Any]] = {
        "accuracy": {"accuracy": 1.0},
        "format": {"think": {"reward": "format"},
                   "r1_zero": {"reward": "format", "variant": "r1_zero"},
                   "tag_count": {"reward": "format", "variant": "tag_count"},
                   "cold_start": {"reward": "format", "variant": "cold_start"}},
        "language": {"language": {"target": "en"}},
        "length": {"cosine": 1.0, "overlong": {"cache_length": 256}, "repetition": 1.0},
        "steps_and_code": {"reasoning_steps": 1.0, "code_block": 1.0},
        "reward_model": {"rm": {"reward": "reward_model", "model": rm_path, "batch_size": 16,
                                "max_length": 512, "task_types": "all"}},
        "judge": {"judge": {"base_url": judge_url, "model": "m", "task_types": "all",
                            "concurrency": 8}},
    }
    results: dict[str, Any] = {}
    for family, spec in families.items():
        funcs, _ = build_reward_funcs(spec, max_completion_length=1024)
        _clear_caches()
        warm_start = time.perf_counter()
        for func in funcs:  # imports, model loads, first-call costs
            _time(func, data, everything[:16])
        warmup = time.perf_counter() - warm_start
        _clear_caches()
        entry: dict[str, Any] = {"warmup_s": round(warmup, 3), "rewards": {}}
        total_cpu = total_wall = 0.0
        for func in funcs:
            cpu, wall, scored = _time(func, data, everything)
            total_cpu, total_wall = total_cpu + cpu, total_wall + wall
            entry["rewards"][func.__name__] = {
                "cpu_seconds": round(cpu, 3), "wall_seconds": round(wall, 3),
                "per_second_per_core": round(n / cpu, 1), "per_second_wall": round(n / wall, 1),
                "scored": scored,
            }
        entry["completions"] = n
        entry["per_second_per_core"] = round(n * len(funcs) / total_cpu, 1)
        entry["per_second_wall"] = round(n * len(funcs) / total_wall, 1)
        if family == "accuracy":
            entry["by_verifier"] = {}
            for kind, idx in sorted(by_task.items()):
                _clear_caches()
                cpu, _, _ = _time(funcs[0], data, idx)
                entry["by_verifier"][kind] = {"completions": len(idx),
                                              "per_second_per_core": round(len(idx) / cpu, 1)}
            correct = funcs[0](prompts=data["prompts"], completions=data["completions"],
                               **{k: data[k] for k in ("answer", "task", "numbers", "target",
                                                       "id")})
            entry["share_correct"] = round(sum(v or 0 for v in correct) / n, 3)
        results[family] = entry
        print(f"{family:16s} {entry['per_second_per_core']:>10.1f} rewards/s/core "
              f"({entry['per_second_wall']:.1f}/s wall, warm-up {warmup:.2f}s)", flush=True)
    server.shutdown()

    versions = {}
    for dist in ("math-verify", "lingua-language-detector", "sympy", "torch", "transformers",
                 "openai"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    report = {
        "benchmark": "rewards scored per second per core (CPU time of one process, torch 1 "
                     "thread); per_second_wall is elapsed time on a possibly shared machine",
        "completions": n,
        "group_size": GROUP,
        "batch_size": BATCH,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()},
        "versions": versions,
        "notes": {
            "reward_model": "tiny random 2-layer Llama classifier (max_length 512): overhead "
                            "plus a small forward pass, not a real reward model's speed",
            "judge": "scripted OpenAI-compatible server on loopback, in the same process (its "
                     "CPU time counts): client/HTTP overhead only, not an LLM's speed",
        },
        "families": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
