"""Benchmark: sandboxed test executions per second for the `code` reward.

A trivial program (`print(int(input()) * 2)`) is run against N stdin tests by
`LocalSandbox` with 1 and 2 workers (each test: a fresh temporary directory, `unshare`
with user, network, mount and PID namespaces, the launcher's mounts and limits, `python -I`),
against a bare `subprocess.run([sys.executable, "-c", ...])` loop in the same run (no
isolation, no temporary directory, no limits). `overhead_ratio` is bare executions per second
over sandboxed ones at one worker: what isolation costs per test. `isolation: none` (the
launcher and limits without namespaces) is timed too, to split that cost. Wall time on a
possibly shared machine, the methods taking turns in rounds; the one-time probe is excluded
and reported apart.

    python bench/bench_code.py --out bench/code.json [--n 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r1pipe.artifacts import atomic_write_json  # noqa: E402  (after the path insert)

PROGRAM = "print(int(input()) * 2)"


def _sandbox(workers: int, isolation: str) -> tuple[Any, float]:
    from r1pipe.sandbox import LocalSandbox, SandboxConfig

    mode: Any = isolation
    box = LocalSandbox(SandboxConfig(workers=workers, isolation=mode, timeout=10.0))
    start = time.perf_counter()
    box.check()
    return box, time.perf_counter() - start


def _run_sandboxed(box: Any, first: int, count: int) -> tuple[float, int]:
    from r1pipe.sandbox import CodeTest

    tests = [CodeTest(f"{i}\n", f"{2 * i}\n") for i in range(first, first + count)]
    start = time.perf_counter()
    results = box.run(PROGRAM, tests)
    return time.perf_counter() - start, sum(r.passed for r in results)


def _run_bare(first: int, count: int) -> tuple[float, int]:
    start = time.perf_counter()
    passed = 0
    for i in range(first, first + count):
        out = subprocess.run([sys.executable, "-c", PROGRAM], input=f"{i}\n",
                             capture_output=True, text=True, check=False)
        passed += out.stdout.strip() == str(2 * i)
    return time.perf_counter() - start, passed


def _summary(n: int, wall: float, passed: int, **extra: Any) -> dict[str, Any]:
    return {**extra, "tests": n, "passed": passed, "wall_seconds": round(wall, 3),
            "per_second": round(n / wall, 1), "ms_per_test": round(1000 * wall / n, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/code.json")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    methods = {"namespace_1_worker": (1, "namespace"), "namespace_2_workers": (2, "namespace"),
               "none_1_worker": (1, "none")}
    boxes, probes = {}, {}
    for name, (workers, isolation) in methods.items():
        boxes[name], probes[name] = _sandbox(workers, isolation)
        _run_sandboxed(boxes[name], 0, 4)  # warm: interpreter paths, page cache
    # Methods take turns in rounds, so that a load change on a shared machine hits them alike.
    chunk = max(1, args.n // args.rounds)
    totals = {name: [0.0, 0, 0] for name in ["bare", *methods]}
    for r in range(args.rounds):
        for name in totals:
            wall, passed = (_run_bare(r * chunk, chunk) if name == "bare"
                            else _run_sandboxed(boxes[name], r * chunk, chunk))
            totals[name][0] += wall
            totals[name][1] += passed
            totals[name][2] += chunk
    bare = _summary(totals["bare"][2], totals["bare"][0], totals["bare"][1], workers=1)
    runs = {name: _summary(totals[name][2], totals[name][0], totals[name][1],
                           workers=workers, isolation=isolation,
                           probe_seconds=round(probes[name], 3))
            for name, (workers, isolation) in methods.items()}
    print(f"bare subprocess.run      {bare['per_second']:>7.1f} runs/s", flush=True)
    for name, run in runs.items():
        print(f"{name:24s} {run['per_second']:>7.1f} tests/s", flush=True)
    report = {
        "benchmark": "sandboxed test executions per second (trivial stdin program), against "
                     "a bare subprocess.run loop in the same run; wall time, methods taking "
                     "turns in rounds",
        "rounds": args.rounds,
        "program": PROGRAM,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "uid": os.getuid(),
                    "load_average_at_end": os.getloadavg()},
        "bare_subprocess_run": bare,
        "sandbox": runs,
        "overhead_ratio": round(bare["per_second"] / runs["namespace_1_worker"]["per_second"], 2),
        "overhead_ms_per_test": round(runs["namespace_1_worker"]["ms_per_test"]
                                      - bare["ms_per_test"], 1),
        "speedup_2_workers": round(runs["namespace_2_workers"]["per_second"]
                                   / runs["namespace_1_worker"]["per_second"], 2),
        "notes": "overhead_ratio = bare runs/s over sandboxed tests/s at one worker; the "
                 "sandbox adds per test a temporary directory, unshare, a launcher interpreter "
                 "(python -I -S) that mounts and limits, and python -I instead of a bare "
                 "interpreter; 2 workers on a 2-core machine cannot reach 2x",
    }
    atomic_write_json(args.out, report)  # a killed run never leaves half a file
    print(f"overhead ratio {report['overhead_ratio']}x; wrote {args.out}")


if __name__ == "__main__":
    main()
