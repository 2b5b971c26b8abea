"""The `code` and `code_format` rewards, plugin rewards, and hostile programs.

The plugin targets are defined at the bottom of this module and named as
"tests.test_rewards_code:<name>", as a user's package would be.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from r1pipe.rewards import build_reward_funcs, extract_program, score, validate_reward_spec
from r1pipe.rewards.base import INTERNAL_ERRORS, Batch, RewardFunc, Score
from r1pipe.rewards.code_tests import UnsupportedLanguage
from r1pipe.sandbox import CodeTest, SandboxUnavailable
from r1pipe.sandbox import local as local_sandbox

SUM = "a, b = map(int, input().split())\nprint(a + b)"
SPEC = {"code": {"weight": 1.0, "task_types": "all", "timeout": 2.0, "memory_mb": 256,
                 "max_processes": 16, "workers": 2}}
HERE = "tests.test_rewards_code"


def answer(program: str, language: str = "python") -> str:
    return (f"<think>Read two numbers, add them.</think>\nHere it is:\n"
            f"```{language}\n{program}\n```\n")


def info(*pairs: tuple[str, str], language: str = "python", as_json: bool = True) -> Any:
    value = {"language": language, "test_cases": [
        {"type": "stdin_stdout", "input": i, "output": o} for i, o in pairs]}
    return json.dumps(value) if as_json else value


SUM_INFO = info(("1 2\n", "3\n"), ("10 5\n", "15\n"), ("3 3\n", "6  \n\n"), ("0 7", "7"))


def test_score_right_wrong_and_partly_right_programs() -> None:
    partly = "a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)"
    completions = [answer(SUM), answer("print('no idea')"), answer(partly),
                   "<think>hmm</think> I could not write it.", "<think>cut off ```python\n"]
    out = score(SPEC, ["Add two numbers."] * 5, completions,
                verification_info=[SUM_INFO] * 4 + [info(("1 2", "3"), as_json=False)])
    assert out.per_reward["code"] == [1.0, 0.0, 0.75, 0.0, 0.0]
    assert out.total == [1.0, 0.0, 0.75, 0.0, 0.0]
    binary = {"code": {**SPEC["code"], "mode": "binary"}}
    out = score(binary, ["p"] * 3, completions[:3], verification_info=[SUM_INFO] * 3)
    assert out.per_reward["code"] == [1.0, 0.0, 0.0]


def test_program_is_the_last_python_block_of_the_answer() -> None:
    text = ("<think>```python\nprint('draft')\n```</think>\n```python\nprint(1)\n```\n"
            "Example:\n```text\n1\n```\n")
    assert extract_program(text) == "print(1)"
    assert extract_program("<think>x</think> ```python\nprint(2)\n") is None  # unclosed
    assert extract_program("<think>x</think>\n```cpp\nint main(){}\n```") is None
    assert extract_program("no reasoning at all\n```\nprint(3)\n```") == "print(3)"
    assert extract_program("<think>never closed ```python\nprint(4)\n```") is None
    long_program = "\n".join(f"x{i} = {i}" for i in range(2000))  # longer than accuracy's cut
    assert extract_program(answer(long_program)) == long_program


def test_code_format() -> None:
    funcs, _ = build_reward_funcs({"code_format": {"task_types": "all"},
                                   "cpp": {"reward": "code_format", "language": "cpp",
                                           "task_types": "all"}})
    completions = [answer("print(1)"), answer("print(1)", "py"), answer("int main(){}", "cpp"),
                   "<think>```python\nprint(1)\n```</think> none", "<think>x</think> ```python\n"]
    assert funcs[0](prompts=["p"] * 5, completions=completions) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert funcs[1](prompts=["p"] * 5, completions=completions) == [0.0, 0.0, 1.0, 0.0, 0.0]


def _lcb_private(cases: list[dict[str, str]]) -> str:
    """LiveCodeBench's private-test encoding: base64(zlib(pickle(json string)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(cases)))).decode()


def test_livecodebench_stdin_layout() -> None:
    public = json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}])
    private = _lcb_private([{"input": "4 4\n", "output": "8\n", "testtype": "stdin"},
                            {"input": "9 1\n", "output": "10\n", "testtype": "stdin"}])
    out = score(SPEC, ["p"] * 2, [answer(SUM), answer("print(3)")],
                public_test_cases=[public] * 2, private_test_cases=[private] * 2,
                metadata=["{}"] * 2)
    assert out.per_reward["code"] == [1.0, pytest.approx(1 / 3)]


def test_livecodebench_functional_layout() -> None:
    public = json.dumps([{"input": "[1, 2, 3]\n2", "output": "5", "testtype": "functional"}])
    private = json.dumps([{"input": "[5]\n1", "output": "5", "testtype": "functional"},
                          {"input": "[]\n0", "output": "0", "testtype": "functional"}])
    right = ("class Solution:\n    def maxSum(self, nums: List[int], k: int) -> int:\n"
             "        print('debug output does not count')\n"
             "        return sum(sorted(nums)[-k:]) if k else 0")
    wrong = "class Solution:\n    def maxSum(self, nums, k):\n        return len(nums)"
    out = score(SPEC, ["p"] * 3, [answer(right), answer(wrong), answer("print(5)")],
                public_test_cases=[public] * 3, private_test_cases=[private] * 3,
                metadata=[json.dumps({"func_name": "maxSum"})] * 3)
    assert out.per_reward["code"] == [1.0, pytest.approx(1 / 3), 0.0]
    in_info = {"language": "python", "func_name": "maxSum", "test_cases": [
        {"type": "functional", "input": "[1, 2, 3]\n2", "output": "5"}]}
    assert score(SPEC, ["p"], [answer(right)], verification_info=[in_info]).total == [1.0]


def test_pickled_tests_cannot_run_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    private = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    out = score(SPEC, ["p"], [answer(SUM)], public_test_cases=["[]"],
                private_test_cases=[private], metadata=["{}"])
    assert out.per_reward["code"] == [None] and not marker.exists()


def test_other_language_is_a_clear_error() -> None:
    cpp = info(("1 2", "3"), language="cpp")
    with pytest.raises(UnsupportedLanguage) as err:
        score(SPEC, ["p"], [answer("int main(){}", "cpp")], verification_info=[cpp])
    assert isinstance(err.value, ValueError)
    assert "'cpp'" in str(err.value) and "only python is supported" in str(err.value)
    skip = {"code": {**SPEC["code"], "other_languages": "skip"}}
    out = score(skip, ["p"] * 2, [answer(SUM)] * 2, verification_info=[cpp, SUM_INFO])
    assert out.per_reward["code"] == [None, 1.0]


def test_samples_without_tests_score_none() -> None:
    out = score(SPEC, ["p"] * 2, [answer(SUM)] * 2, verification_info=[None, SUM_INFO])
    assert out.per_reward["code"] == [None, 1.0]
    assert score(SPEC, ["p"], [answer(SUM)]).per_reward["code"] == [None]


def test_validation_of_code_params() -> None:
    assert validate_reward_spec({"code": {"mode": "binary", "isolation": "none", "workers": 1,
                                          "hide_paths": ["/data"]}}) == []
    errors = "\n".join(validate_reward_spec({"code": {"mode": "fractoin", "isolation": "off"}}))
    assert "rewards.code.mode" in errors and "did you mean 'fraction'" in errors
    assert "rewards.code.isolation: expected one of 'auto', 'namespace', 'none'" in errors
    errors = "\n".join(validate_reward_spec({"code": {"timeout": 0, "hide_paths": ["data"]}}))
    assert "rewards.code: timeout must be a positive" in errors
    assert "not an absolute path" in errors


def test_unavailable_isolation_stops_the_reward(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_sandbox, "_PROBES", {})
    monkeypatch.setattr(local_sandbox.LocalSandbox, "_probe",
                        lambda self: "cannot isolate programs: simulated")
    with pytest.raises(SandboxUnavailable, match="simulated"):
        score(SPEC, ["p"], [answer(SUM)], verification_info=[SUM_INFO])


def test_reward_pickles_after_use() -> None:
    funcs, _ = build_reward_funcs({"code": {"timeout": 2.0}})
    assert funcs[0](prompts=["p"], completions=[answer(SUM)], verification_info=[SUM_INFO],
                    task_type=["reasoning"]) == [1.0]
    clone = pickle.loads(pickle.dumps(funcs[0]))
    assert clone(prompts=["p"], completions=[answer(SUM)], verification_info=[SUM_INFO]) == [1.0]


# -- hostile completions ---------------------------------------------------------------

MARKER = f"r1pipe-sandbox-marker-{os.getpid()}"


def _marked_processes() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if MARKER.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                continue
    return found


def test_hostile_completions_score_zero_and_nothing_escapes(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = "hf_FAKEsandboxTESTtoken0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("OPENAI_API_KEY", token)
    home = tmp_path / "home"
    run_dir = tmp_path / "run"
    home.mkdir()
    run_dir.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    monkeypatch.setenv("HOME", str(home))
    win = "pwned"  # every test expects this: a program that escaped could print it and score
    programs = {
        "infinite_loop": "while True:\n    pass",
        "fork_bomb": (
            "import os, sys\n"
            f"if len(sys.argv) < 2:\n    os.execv(sys.executable, [sys.executable, '-I', "
            f"'main.py', {MARKER!r}])\n"
            "while True:\n    try:\n        os.fork()\n    except OSError:\n        pass"),
        "allocate": "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 2**20))",
        "connect": (
            "import socket\n"
            f"socket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('pwned')"),
        "read_token": (
            "import os, glob\n"
            "found = [os.environ.get('HF_TOKEN', ''), os.environ.get('OPENAI_API_KEY', '')]\n"
            "for path in glob.glob('/proc/*/environ'):\n"
            "    try:\n        found.append(open(path, 'rb').read().decode('latin-1'))\n"
            "    except OSError:\n        pass\n"
            f"print('pwned' if any({token!r} in f for f in found) else 'nothing', "
            "'|'.join(found))"),
        "write_files": (
            "ok = 0\n"
            f"for path in ({str(run_dir / 'escape.txt')!r}, {str(home / 'escape.txt')!r}):\n"
            "    try:\n        open(path, 'w').write('x')\n        ok += 1\n"
            "    except OSError:\n        pass\n"
            "print('pwned' if ok else 'nothing')"),
        "print_gigabytes": "import sys\nwhile True:\n    sys.stdout.write('pwned\\n' * 2**17)",
        "kill_parent": "import os\nos.kill(-1, 9)\nos.kill(os.getppid(), 9)\nprint('pwned')",
        "background_child": (
            "import os, subprocess, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(1000)',"
            f" {MARKER!r}])\n"
            "        open('child.pid', 'w').write(str(p.pid))\n"
            "    os._exit(0)\n"
            "time.sleep(0.5)\nprint('nothing')"),
    }
    names = list(programs)
    # The honest program goes first, so that its tests do not share the CPUs with the bomb.
    completions = [answer(SUM)] + [answer(p) for p in programs.values()]
    tests = [SUM_INFO] + [info(("", win))] * len(programs)
    spec = {"code": {**SPEC["code"], "timeout": 2.0, "max_output_bytes": 1_000_000}}
    before = dict(INTERNAL_ERRORS)
    start = time.monotonic()
    out = score(spec, ["p"] * len(completions), completions, verification_info=tests)
    elapsed = time.monotonic() - start
    scores = dict(zip(["honest", *names], out.per_reward["code"], strict=True))
    assert scores == {**dict.fromkeys(names, 0.0), "honest": 1.0}
    assert elapsed < 30, elapsed  # each hostile program ends within its limits
    assert dict(INTERNAL_ERRORS) == before  # misbehaving programs are not sandbox failures
    with pytest.raises(BlockingIOError):
        listener.accept()  # no connection ever arrived
    listener.close()
    assert not (run_dir / "escape.txt").exists() and list(home.iterdir()) == []
    assert _marked_processes() == []  # the fork bomb and the daemon died with their tests

    # The same programs through the sandbox itself: no output carries the secret.
    code = build_reward_funcs(spec)[0][0]
    result = code.sandbox().run(programs["read_token"], [CodeTest("", win)])[0]
    assert result.status == "failed"
    assert token not in result.stdout and token not in result.stderr
    assert result.stdout.startswith("nothing")


@pytest.mark.parametrize("name", ["print_gigabytes", "infinite_loop"])
def test_hostile_programs_end_at_their_limit(name: str) -> None:
    program = {"print_gigabytes": "import sys\nwhile True:\n    sys.stdout.write('x' * 2**20)",
               "infinite_loop": "while True:\n    pass"}[name]
    spec = {"code": {**SPEC["code"], "timeout": 1.5, "max_output_bytes": 2**20}}
    start = time.monotonic()
    assert score(spec, ["p"], [answer(program)],
                 verification_info=[info(("", "x"))]).total == [0.0]
    elapsed = time.monotonic() - start
    bound = 1.0 if name == "print_gigabytes" else 1.5 + 2.0  # the cap hits long before 1.5 s
    assert elapsed < bound, elapsed


# -- plugin rewards ---------------------------------------------------------------------


def short_answers(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
    """A plugin function: 1.0 for completions under 40 characters."""
    return [1.0 if len(c) < 40 else 0.0 for c in completions]


@dataclass
class MentionsWord(RewardFunc):
    """A plugin RewardFunc: 1.0 when the completion mentions `word`."""

    family = "mentions_word"
    word: str = "python"

    def score_one(self, batch: Batch, i: int) -> Score:
        return 1.0 if self.word in batch.texts[i] else 0.0

    def problems(self) -> list[str]:
        return [] if self.word else ["word must not be empty"]


class Bonus:
    """A plugin class that is not a RewardFunc: any callable instance works."""

    def __init__(self, bonus: float = 0.5) -> None:
        self.bonus = bonus

    def __call__(self, prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float]:
        return [self.bonus for _ in completions]


NOT_CALLABLE = 42


def test_plugin_rewards_score_like_built_in_ones() -> None:
    spec = {
        "short": {"reward": f"{HERE}:short_answers", "weight": 2.0},
        "mentions": {"reward": f"{HERE}:MentionsWord", "word": "sum"},
        "bonus": {"reward": f"{HERE}:Bonus", "bonus": 0.25, "task_types": ["general"]},
    }
    assert validate_reward_spec(spec) == []
    out = score(spec, ["p"] * 2, ["tiny", "a longer answer about the sum of two numbers"],
                task_type=["general", "reasoning"])
    # A plain callable scores every sample by default; a RewardFunc keeps its class default
    # (reasoning samples only, as r1pipe's rule rewards).
    assert out.per_reward == {"short": [1.0, 0.0], "mentions": [None, 1.0], "bonus": [0.25, None]}
    assert out.total == [2.25, 1.0]
    funcs, weights = build_reward_funcs(spec)
    assert [f.__name__ for f in funcs] == ["short", "mentions", "bonus"] and weights[0] == 2.0
    assert pickle.loads(pickle.dumps(funcs[0]))(prompts=["p"], completions=["x"]) == [1.0]


@pytest.mark.parametrize(("reward", "extra", "expected"), [
    ("no_such_pkg.rewards:f", {}, "rewards.bad.reward: cannot import module 'no_such_pkg.rewards'"),
    (f"{HERE}:missing", {}, f"rewards.bad.reward: module '{HERE}' has no attribute 'missing'"),
    (f"{HERE}:NOT_CALLABLE", {}, "is a int, not callable"),
    ("no_colon_here:", {}, "is not 'module:attribute'"),
    (f"{HERE}:short_answers", {"limit": 3}, "rewards.bad: a plain function takes no parameters"),
    (f"{HERE}:MentionsWord", {"wrod": "x"}, "rewards.bad.wrod: unknown parameter"),
    (f"{HERE}:MentionsWord", {"word": 3}, "rewards.bad.word: expected str"),
    (f"{HERE}:MentionsWord", {"word": ""}, "rewards.bad: word must not be empty"),
])
def test_bad_plugins_are_caught_at_validation(reward: str, extra: dict[str, Any],
                                              expected: str) -> None:
    errors = validate_reward_spec({"bad": {"reward": reward, **extra}})
    assert len(errors) == 1 and expected in errors[0], errors
    if "import" in expected or "attribute" in expected:
        assert "package.module:attribute" in errors[0]  # says how to fix it
    with pytest.raises(ValueError, match="invalid rewards section"):
        build_reward_funcs({"bad": {"reward": reward, **extra}})
