"""Benchmark: how fast and in how much memory hostile pipeline files are refused.

A 529-byte YAML of nested aliases ("billion laughs") names 9^10 values; before the bounded
loader it drove `validate` past 6 GB and 112 s. Each case runs in a fresh process
(`r1pipe validate`, as a user would type it) and reports the wall time and the peak RSS of
that process; the shipped full-scale pipeline is the baseline for a normal file.

`smoke_validate_cold` / `smoke_validate_warm`: `r1pipe validate configs/smoke.yaml` with an
empty r1pipe cache (TRL's trainer fields are read by importing TRL, which imports
transformers and torch, and stored) and then with that cache (`r1pipe.trl_fields`); the
warm figure is the median of several runs, and `imported_torch` says whether torch loaded.

    python bench/bench_config.py --out bench/config.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _validate(path: Path, env: dict[str, str] | None = None) -> dict[str, object]:
    """Wall time and peak RSS of one `r1pipe validate` process, and whether it loaded torch."""
    code = ("import resource, sys; from r1pipe.cli import main; rc = main(['validate', "
            f"{str(path)!r}]); print('RSS', resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss, 'torch' in sys.modules, file=sys.stderr); sys.exit(rc)")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env=env)
    elapsed = time.perf_counter() - started
    rss_kb, torch = proc.stderr.rsplit("RSS", 1)[1].split()[:2]
    return {"exit_code": proc.returncode, "seconds": round(elapsed, 3),
            "peak_rss_mb": round(int(rss_kb) / 1024, 1), "bytes": path.stat().st_size,
            "imported_torch": torch == "True"}


def _smoke_cold_and_warm(cache: Path, warm_runs: int = 5) -> dict[str, object]:
    """`validate configs/smoke.yaml` with an empty cache, then `warm_runs` times with it."""
    import os
    import statistics

    env = {**os.environ, "R1PIPE_CACHE": str(cache)}
    smoke = ROOT / "configs" / "smoke.yaml"
    cold = _validate(smoke, env)
    warm = [_validate(smoke, env) for _ in range(warm_runs)]
    seconds = [float(w["seconds"]) for w in warm]  # type: ignore[arg-type]
    return {"smoke_validate_cold": cold,
            "smoke_validate_warm": {**warm[-1], "seconds": round(statistics.median(seconds), 3),
                                    "runs": warm_runs, "min_seconds": min(seconds),
                                    "max_seconds": max(seconds)}}


def main() -> None:
    from tests.helpers import yaml_bomb  # the same hostile files the tests refuse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="bench/config.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "alias_bomb_9_levels": yaml_bomb(9),
            "alias_bomb_7_levels": yaml_bomb(7),
            "list_5000_deep": "name: t\nbase_model: x\nx: " + "[" * 5000 + "]" * 5000 + "\n",
        }
        results = {}
        for name, text in cases.items():
            path = Path(tmp) / f"{name}.yaml"
            path.write_text(text)
            results[name] = _validate(path)
        results["shipped_r1_yaml"] = _validate(ROOT / "configs" / "r1.yaml")
        results.update(_smoke_cold_and_warm(Path(tmp) / "r1pipe-cache"))
    # the loader alone, in this process (imports warm): what the refusal itself costs
    from r1pipe.config import ConfigError, load_text

    for name in ("alias_bomb_9_levels", "list_5000_deep"):
        started = time.perf_counter()
        with contextlib.suppress(ConfigError):
            load_text(cases[name], file=name)
        results[name]["loader_seconds_in_process"] = round(time.perf_counter() - started, 4)
    report = {
        "what": "r1pipe validate on hostile pipeline files, one fresh process each",
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "load_average_1min": round(__import__("os").getloadavg()[0], 2),
        "cases": results,
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
