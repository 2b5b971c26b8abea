"""Benchmark: how fast and in how much memory hostile pipeline files are refused.

A 529-byte YAML of nested aliases ("billion laughs") names 9^10 values; before the bounded
loader it drove `validate` past 6 GB and 112 s. Each case runs in a fresh process
(`r1pipe validate`, as a user would type it) and reports the wall time and the peak RSS of
that process; the shipped full-scale pipeline is the baseline for a normal file.

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


def _validate(path: Path) -> dict[str, object]:
    """Wall time and peak RSS of one `r1pipe validate` process."""
    code = ("import resource, sys; from r1pipe.cli import main; rc = main(['validate', "
            f"{str(path)!r}]); print('RSS', resource.getrusage(resource.RUSAGE_SELF)"
            ".ru_maxrss, file=sys.stderr); sys.exit(rc)")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    elapsed = time.perf_counter() - started
    rss_kb = int(proc.stderr.rsplit("RSS", 1)[1].split()[0])
    return {"exit_code": proc.returncode, "seconds": round(elapsed, 3),
            "peak_rss_mb": round(rss_kb / 1024, 1), "bytes": path.stat().st_size}


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
