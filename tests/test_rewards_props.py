"""Property tests: no model output can crash a reward or hold it past its time limit.

Every reward is fed adversarial completions (empty, megabyte strings, deeply nested LaTeX,
exponent towers, unbalanced tags, mixed scripts, control characters, odd column values) as
TRL would pass them. A fast run (a few hundred per reward) always runs; the 10,000-per-reward
run is marked slow. The reward model and the judge are covered in test_rewards_models.py.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1pipe.rewards import build_reward_funcs, check_completion, language_consistency
from r1pipe.rewards.base import INTERNAL_ERRORS

FRAGMENTS = [
    "<think>", "</think>", "<answer>", "</answer>", "|special_token|", "<think>\n", "\n</think>\n",
    "\\boxed{", "\\boxed{14}", "}", "{", "$", "$$", "\\(", "\\)", "\\frac{", "\\frac{1}{2}", "^", "**",
    "9**9**9**9", "10^{10^{10}}", "2^{2^{30}}", "(10^{10})!", "100000!", "\\sqrt{2}^{10^{9}}",
    "1e999", "1/0", "0/0", "(3 + 5) * 2", "(3+5)*2 = 16", "= 14", "14", "-7/2", "x = 5",
    "[0, 1)", "\\{1,2,3\\}", "\\infty", "nan", "```python\nprint(1)\n```", "```", "~~~",
    "Step 1:", "\n1. ", "\n- ", "First,", "Finally,", "\n\n", "你好，我们先把两个数相加", "法国",
    "こんにちは", "안녕하세요", "Привет мир", "مرحبا", "שלום", "नमस्ते", "สวัสดี",
    "Ensuite, nous calculons la somme", "Die Antwort ist", "The answer is", "\x00", "\x1b[31m",
    "\r\n", "\t", "\u202e", "\ufeff", "\u200b", "\U0001f600", "\\", "\\\\", "%", "&", "#",
    "\\left(", "\\right)", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\int_0^1 x dx",
    "\\sum_{k=1}^{10^{9}} k", "\\binom{10^{9}}{5}", "__import__('os')", "lambda: 0", "9" * 400,
]

_piece = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.sampled_from(FRAGMENTS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.integers(-10**30, 10**30).map(str),
    st.integers(1, 40).map(lambda k: "\\frac{" * k + "1" + "}{2}" * k),
    st.integers(1, 300).map(lambda k: "{" * k + "x" + "}" * k),
    st.integers(1, 300).map(lambda k: "(" * k),
)

MATH_TOKENS = [
    "\\frac{", "}", "{", "^", "**", "\\sqrt{", "x", "y", "=", "+", "-", "*", "/", "(", ")", "[",
    "]", ",", "\\{", "\\}", "\\infty", "\\pi", "e", "i", "!", "\\%", "\\cdot", "\\times",
    "\\le", "<", "\\cup", "\\in", "\\text{", "\\mathbb{R}", "0", "1", "2", "7", "9", "10",
    "123", "0.5", "-7/2", "\\boxed{", "$", "\\pm", "\\sin", "\\log_{2}", "\\binom{",
    "\\begin{pmatrix}", "\\end{pmatrix}", "&", "\\\\", "\\int", "\\sum_{k=1}^{n}", "\\lim",
    "\\to", "\\dfrac", " ", "\\,", "\\left(", "\\right)", "\\emptyset", "\\circ",
]
_math_answer = st.lists(st.sampled_from(MATH_TOKENS), min_size=1, max_size=14).map("".join)


def _hostile(draw: st.DrawFn, max_pieces: int, min_pieces: int = 0) -> str:
    return "".join(draw(st.lists(_piece, min_size=min_pieces, max_size=max_pieces)))


@st.composite
def completions(draw: st.DrawFn) -> str:
    """A hostile completion: raw fragments, or hostile parts inside the formats the rewards
    parse (so the verifiers see them); about one in fifty is blown up to a megabyte."""
    shape = draw(st.sampled_from(["raw", "r1", "cold", "boxed", "truncated"]))
    reasoning = _hostile(draw, 20)
    answer = draw(_math_answer) if draw(st.booleans()) else _hostile(draw, 4, 1)
    text = {
        "raw": reasoning + answer,
        "r1": f"<think>{reasoning}</think> <answer>{answer}</answer>",
        "cold": f"|special_token|{reasoning}|special_token|{answer}",
        "boxed": f"<think>{reasoning}</think> The answer is \\boxed{{{answer}}}.",
        "truncated": f"<think>{reasoning}{answer}",
    }[shape]
    if draw(st.sampled_from([False] * 49 + [True])):
        unit = text or "<think>"
        text = unit * (1_000_000 // len(unit) + 1)
    return text


_column_value = st.one_of(
    st.sampled_from(["14", "-7/2", "\\frac{1}{2}", "[0,1)", "}{", "", "x = 5", "\\{1,2\\}"]),
    st.integers(-1000, 1000), st.text(max_size=30), st.none(),
)


@st.composite
def samples(draw: st.DrawFn) -> dict[str, Any]:
    """One sample as TRL passes it: completion (plain or chat), prompt and dataset columns."""
    text = draw(completions())
    chat = draw(st.booleans())
    return {
        "completion": [{"role": "assistant", "content": text}] if chat else text,
        "prompt": [{"role": "user", "content": draw(st.text(max_size=30))}] if chat
        else draw(st.sampled_from(["What is 2 + 3 * 4?", "法国的首都是哪里？", "", "\x00"])),
        "answer": draw(_column_value),
        "task": draw(st.sampled_from([None, "arithmetic", "multiplication", "countdown",
                                      "linear_equation", "unknown-task", 3, ("countdown",)])),
        "numbers": draw(st.one_of(st.lists(st.integers(-5, 100), max_size=6), st.none(),
                                  st.lists(st.one_of(st.text(max_size=3), st.floats()), max_size=3))),
        "target": draw(st.one_of(st.integers(-10, 1000), st.none(), st.text(max_size=4),
                                 st.floats())),
        "task_type": draw(st.sampled_from([None, "reasoning", "general"])),
        "completion_ids": draw(st.one_of(st.none(), st.integers(0, 5000).map(lambda n: [0] * n))),
        "id": draw(st.text(max_size=8)),
        "language": draw(st.sampled_from([None, "en", "zh", "xx", "", "EN-us", "ja", "ru"])),
    }


SPEC = {
    "accuracy": {"weight": 1.0, "timeout": 1.0},
    "format": 0.1,
    "r1_zero": {"reward": "format", "variant": "r1_zero"},
    "tag_count": {"reward": "format", "variant": "tag_count"},
    "cold_start": {"reward": "format", "variant": "cold_start"},
    "language": {"weight": 0.2, "target": "en"},
    "language_auto": {"reward": "language", "target": "auto"},
    "cosine": {"weight": 1.0, "timeout": 1.0},
    "overlong": 1.0,
    "repetition": 1.0,
    "reasoning_steps": 1.0,
    "code_block": 1.0,
}
FUNCS, WEIGHTS = build_reward_funcs(SPEC, max_completion_length=1024)
# One-off costs (importing math-verify, loading lingua's models) are not per-call work.
check_completion("<answer>\\frac{1}{2}</answer>", "0.5")
language_consistency("Warm up the language models with a sentence.", "en")
TIME_LIMIT = {"accuracy": 1.0, "cosine": 1.0}
"""Per-call limits: the verification timeout; other rewards are linear-time string work."""
DEFAULT_LIMIT = 2.0
GRACE = 0.5


def _check_one(func: Any, sample: dict[str, Any]) -> None:
    ids = sample["completion_ids"]
    start = time.perf_counter()
    out = func(
        prompts=[sample["prompt"]],
        completions=[sample["completion"]],
        completion_ids=[ids] if ids is not None else None,
        answer=[sample["answer"]], task=[sample["task"]], numbers=[sample["numbers"]],
        target=[sample["target"]], task_type=[sample["task_type"]], id=[sample["id"]],
        language=[sample["language"]], trainer_state=None,
    )
    elapsed = time.perf_counter() - start
    assert isinstance(out, list) and len(out) == 1
    assert out[0] is None or (isinstance(out[0], float) and out[0] == out[0]), out
    limit = TIME_LIMIT.get(func.__name__, DEFAULT_LIMIT) + GRACE
    assert elapsed < limit, f"{func.__name__} took {elapsed:.2f}s"


def _run(batch: list[dict[str, Any]]) -> None:
    for sample in batch:
        for func in FUNCS:
            _check_one(func, sample)
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


_SETTINGS = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": list(HealthCheck),
}


@settings(max_examples=30, **_SETTINGS)
@given(st.lists(samples(), min_size=10, max_size=10))
def test_rewards_survive_hostile_output_fast(batch: list[dict[str, Any]]) -> None:
    _run(batch)


@pytest.mark.slow
@settings(max_examples=1_000, **_SETTINGS)
@given(st.lists(samples(), min_size=10, max_size=10))
def test_rewards_survive_hostile_output_10k(batch: list[dict[str, Any]]) -> None:
    """10 samples x 1,000 examples = 10,000 hostile completions through every reward."""
    _run(batch)


@pytest.mark.parametrize(
    "text",
    [
        "", "<think>" * 150_000, "</think><answer>" * 70_000, "|special_token|" * 70_000,
        "9" * 1_000_000, "\\frac{" * 100_000, "{" * 1_000_000, "$" * 1_000_000,
        "你" * 1_000_000, "word " * 200_000, "<think>" + "Ensuite nous " * 80_000 + "</think>",
        "<answer>" + "9**" * 300_000 + "9</answer>", "```" * 300_000, "\x00" * 1_000_000,
    ],
    ids=lambda t: f"{t[:12]!r}x{len(t)}",
)
def test_megabyte_completions(text: str) -> None:
    sample = {"completion": text, "prompt": "q", "answer": "14", "task": None, "numbers": None,
              "target": None, "task_type": None, "completion_ids": None, "id": "mb",
              "language": None}
    _run([sample])
    _run([{**sample, "task": "countdown", "numbers": [1, 2], "target": 3}])


@settings(max_examples=200, **_SETTINGS)
@given(completions(), st.sampled_from(["en", "zh", "fr", "ja", "ru"]))
def test_language_consistency_is_a_share(text: str, lang: str) -> None:
    share = language_consistency(text, lang)
    assert 0.0 <= share <= 1.0


@settings(max_examples=200, **_SETTINGS)
@given(st.integers(0, 10**6), st.integers(0, 10**6))
def test_countdown_accepts_any_valid_expression(a: int, b: int) -> None:
    text = f"<answer>{a} + {b}</answer>"
    assert check_completion(text, "x", task="countdown", numbers=[a, b, 7], target=a + b) == 1.0
    fits = not Counter([a, b]) - Counter([a, 7])
    assert check_completion(text, "x", task="countdown", numbers=[a, 7], target=a + b) == (
        1.0 if fits else 0.0)
