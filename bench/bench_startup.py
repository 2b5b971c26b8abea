"""Benchmark: how long `r1pipe --help` takes to answer, against the libraries it cannot avoid.

A person types `r1pipe --help` (or any command) many times a day; every import of torch,
transformers, datasets or even r1pipe's pydantic models at start is paid each time. The
floor is `python -c "import typer, rich.console, pydantic"`, measured in the same run on the
same machine, so the ratio holds across machines (target: within 2.5x).

    python bench/bench_startup.py --out bench/startup.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "baseline: import typer, rich.console, pydantic":
        [sys.executable, "-c", "import typer, rich.console, pydantic"],
    "r1pipe --help": [sys.executable, "-m", "r1pipe.cli", "--help"],
    "r1pipe run --help": [sys.executable, "-m", "r1pipe.cli", "run", "--help"],
}
TARGET_RATIO = 2.5


def _seconds(cmd: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"})
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {proc.stderr[-2000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "bench" / "startup.json"))
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for cmd in CASES.values():  # warm the file cache and .pyc files once
        _seconds(cmd)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits every case
        for name, cmd in CASES.items():
            times[name].append(_seconds(cmd))
    median = {name: statistics.median(values) for name, values in times.items()}
    base = median["baseline: import typer, rich.console, pydantic"]
    result = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "repeats": args.repeats,
        "median_seconds": {k: round(v, 3) for k, v in median.items()},
        "min_seconds": {k: round(min(v), 3) for k, v in times.items()},
        "ratio_to_baseline": {k: round(v / base, 2) for k, v in median.items()},
        "target_ratio": TARGET_RATIO,
        "within_target": median["r1pipe --help"] / base <= TARGET_RATIO,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
