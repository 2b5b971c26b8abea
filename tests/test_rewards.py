"""Rewards: the paper's worked examples, each family's rules, composition and validation."""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from r1pipe.parsing import final_response, split_completion
from r1pipe.rewards import (
    available_rewards,
    build_reward_funcs,
    check_completion,
    count_reasoning_steps,
    detect_language,
    has_code_block,
    language_consistency,
    limits,
    longest_paragraph_words,
    repeated_ngram_share,
    score,
    validate_reward_spec,
    verifiers,
)
from r1pipe.rewards.base import INTERNAL_ERRORS
from r1pipe.rewards.format import cold_start_format, r1_zero_format, tag_count_format, think_format

QUESTION = "What is 2 + 3 * 4?"
GROUP = [
    "<think>2 + 3 = 5, 5 * 4 = 20</think> <answer> 20</answer>",
    "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
    "<answer>14</answer>",
    "<think>...some gibberish reasoning...</think> <answer> 7<answer>",
]


def _advantages(totals: list[float]) -> list[float]:
    """GRPO's group-normalised advantage, as TRL computes it (unbiased std, eps 1e-4)."""
    mean = sum(totals) / len(totals)
    std = math.sqrt(sum((t - mean) ** 2 for t in totals) / (len(totals) - 1))
    return [(t - mean) / (std + 1e-4) for t in totals]


# ----------------------------------------------------------------- the worked examples


@pytest.mark.parametrize("task", [None, "arithmetic"])
@pytest.mark.parametrize("conversational", [False, True])
def test_worked_example_accuracy_and_format(task: str | None, conversational: bool) -> None:
    completions: list[Any] = GROUP
    prompts: list[Any] = [QUESTION] * 4
    if conversational:
        completions = [[{"role": "assistant", "content": c}] for c in GROUP]
        prompts = [[{"role": "user", "content": QUESTION}]] * 4
    result = score({"accuracy": 1.0, "format": 0.1}, prompts, completions,
                   answer=["14"] * 4, task=[task] * 4, task_type=["reasoning"] * 4,
                   id=["q1"] * 4)
    assert result.total == pytest.approx([0.1, 1.1, 1.0, 0.1])
    assert result.per_reward == {"accuracy": [0.0, 1.0, 1.0, 0.0], "format": [1.0, 1.0, 0.0, 1.0]}
    assert sum(result.total) / 4 == pytest.approx(0.575)
    adv = _advantages(result.total)
    correct = [False, True, True, False]
    assert all((a > 0) == ok for a, ok in zip(adv, correct, strict=True))


def test_worked_example_language_consistency() -> None:
    result = score({"accuracy": 1.0, "language": 0.2}, [QUESTION] * 2, GROUP[:2],
                   answer=["14", "14"])
    assert result.total == pytest.approx([0.2, 1.2])


def test_trl_call_convention_names_and_weights() -> None:
    """Called exactly as GRPOTrainer._calculate_rewards calls a reward function."""
    funcs, weights = build_reward_funcs({"accuracy": 1.0, "format": {"weight": 0.1}})
    assert [f.__name__ for f in funcs] == ["accuracy", "format"]
    assert weights == [1.0, 0.1]
    logged: dict[str, list[Any]] = {}
    extra = {
        "trainer_state": object(),
        "log_extra": lambda k, v: logged.setdefault(k, v),
        "log_metric": lambda k, v: None,
    }
    out = funcs[0](prompts=[QUESTION] * 4, completions=GROUP, completion_ids=[[1, 2]] * 4,
                   answer=["14"] * 4, task=["arithmetic"] * 4, task_type=["reasoning"] * 4,
                   difficulty=[1] * 4, **extra)
    assert out == [0.0, 1.0, 1.0, 0.0]
    # TRL pickles reward functions for its async rollout worker
    again = pickle.loads(pickle.dumps(funcs))
    assert again[1].__name__ == "format"
    assert again[1](completions=GROUP) == [1.0, 1.0, 0.0, 1.0]


# ----------------------------------------------------------------- parsing


def test_split_completion_is_linear_on_hostile_tags() -> None:
    text = "<think>" * 200_000
    start = time.perf_counter()
    parsed = split_completion(text)
    assert time.perf_counter() - start < 0.5
    assert parsed.answer is None and parsed.reasoning is not None


def test_final_response() -> None:
    assert final_response("<think>r</think> <answer>a</answer>") == "a"
    assert final_response("|special_token|r|special_token| The end.") == "The end."
    assert final_response("<think>cut off") == ""
    assert final_response("hello") == "hello"


# ----------------------------------------------------------------- format


def test_format_variants() -> None:
    good = "<think>r</think>\n<answer>a</answer>"
    assert think_format(good) == 1.0
    assert think_format("  <think>r</think> tail") == 1.0
    assert think_format("<think> </think>") == 0.0  # empty reasoning
    assert think_format("x <think>r</think>") == 0.0
    assert think_format("<think>a</think><think>b</think>") == 0.0
    assert r1_zero_format(good) == 1.0
    assert r1_zero_format(good + " extra") == 0.0
    assert r1_zero_format("<answer>a</answer><think>r</think>") == 0.0
    assert r1_zero_format("<think>r</think> <answer> 7<answer>") == 0.0
    assert r1_zero_format("<think>r</think><answer> </answer>") == 0.0
    assert tag_count_format(good) == 1.0
    assert tag_count_format("<think>r</think> <answer> 7<answer>") == 0.5
    assert tag_count_format("") == 0.0
    assert cold_start_format("|special_token|steps|special_token|Summary.") == 1.0
    assert cold_start_format("|special_token|steps|special_token|") == 0.0
    assert cold_start_format("<sep>steps<sep>Summary", "<sep>") == 1.0
    assert cold_start_format("|special_token|a|special_token|b|special_token|c") == 0.0


def test_cold_start_special_token_comes_from_the_pipeline() -> None:
    funcs, _ = build_reward_funcs({"format": {"variant": "cold_start"}}, special_token="<sep>")
    assert funcs[0](completions=["<sep>r<sep>s", "|special_token|r|special_token|s"]) == [1.0, 0.0]


# ----------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("<answer>\\frac{1}{2}</answer>", "0.5", 1.0),
        ("<answer>[0, 1)</answer>", "[0,1)", 1.0),
        ("<answer>(0, 1)</answer>", "[0,1)", 0.0),
        ("<answer>\\{3, 1, 2\\}</answer>", "\\{1,2,3\\}", 1.0),
        ("<think>x</think> The answer is $\\boxed{\\sqrt{2}/2}$.", "\\frac{\\sqrt{2}}{2}", 1.0),
        ("|special_token|work|special_token|So x = 5.", "x = 5", 1.0),
        ("<think>never closed, the answer is 14", "14", 0.0),
        ("The answer is 14", "14", 1.0),
        ("<answer>2^{2023}</answer>", "2^{2023}", 1.0),
    ],
)
def test_accuracy_math_verify(text: str, gold: str, expected: float) -> None:
    assert check_completion(text, gold) == expected


@pytest.mark.parametrize(
    ("text", "gold", "expected"),
    [
        ("<answer>14</answer>", "14", 1.0),
        ("<answer>x = -7/2</answer>", "-7/2", 1.0),
        ("<answer>\\boxed{-\\frac{7}{2}}</answer>", "-7/2", 1.0),
        ("<answer>-3.5</answer>", "-7/2", 1.0),
        ("<answer>1,234,000</answer>", "1234000", 1.0),
        ("<answer>2 + 12 = 14.</answer>", "14", 1.0),
        ("<answer>14 or 20</answer>", "14", 0.0),
        # an unworked expression states no answer, whatever its last operand
        ("<answer>2 * 7 - 7</answer>", "7", 0.0),
        ("<answer>20 - 6</answer>", "6", 0.0),
        ("<answer>The result is 2 * 7 - 7</answer>", "7", 0.0),
        ("<answer>The result of 2 * 7 - 7 is 7</answer>", "7", 1.0),
        ("<answer>(3 + 5) * 2, so 16</answer>", "16", 1.0),
        ("<answer>2 * 7 - 7 = 7</answer>", "7", 1.0),
        ("<answer>The answer is -22.</answer>", "-22", 1.0),
        ("<answer>It is 3/4</answer>", "3/4", 1.0),
        ("<answer>" + "9" * 5000 + "</answer>", "14", 0.0),
    ],
)
def test_accuracy_exact_numbers(text: str, gold: str, expected: float) -> None:
    assert check_completion(text, gold, task="linear_equation") == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("(3 + 5) * 2", 1.0),
        ("(3+5)*2 = 16", 1.0),
        ("16 = 2 * (5 + 3)", 1.0),
        ("\\boxed{(3 + 5) \\times 2}", 1.0),
        ("(3 + 5) * 2 * 1", 0.0),  # 1 is not given
        ("(3 + 3) * 2 + 4", 0.0),  # 3 used twice
        ("8 * 2", 0.0),  # 8 is not given
        ("__import__('os').system('true')", 0.0),  # never evaluated
        ("3 ** 5", 0.0),
        ("(" * 300 + "3" + ")" * 300, 0.0),
    ],
)
def test_accuracy_countdown(answer: str, expected: float) -> None:
    got = check_completion(f"<answer>{answer}</answer>", "(3 + 5) * 2", task="countdown",
                           numbers=[3, 5, 2, 7], target=16)
    assert got == expected


def test_unparseable_gold_is_reported_once_and_never_scores(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="r1pipe.rewards.accuracy"):
        result = score({"accuracy": 1.0}, ["q"] * 3, ["<answer>}{</answer>"] * 3,
                       answer=["}{"] * 3, id=["broken-7"] * 3)
    assert result.per_reward["accuracy"] == [None, None, None]
    messages = [r.getMessage() for r in caplog.records if "broken-7" in r.getMessage()]
    assert len(messages) == 1
    assert check_completion("<answer>1</answer>", "12", task="countdown", record_id="cd-1") is None


def test_gold_is_parsed_once_per_answer() -> None:
    verifiers._GOLD_CACHE.clear()
    for k in range(5):
        check_completion(f"<answer>{k}/3</answer>", "\\frac{2}{3}")
    assert list(verifiers._GOLD_CACHE) == ["\\frac{2}{3}"]


@pytest.mark.parametrize(
    "answer",
    ["9**9**9**9", "$10^{10^{10}}$", "\\boxed{(10^{10})!}", "10^{100000000}", "2**3**4**5",
     "\\boxed{9^{9^{9}}}", "123456!", "\\frac{" * 60 + "1" + "}{2}" * 60],
)
def test_explosive_answers_are_rejected_fast(answer: str) -> None:
    start = time.perf_counter()
    assert check_completion(f"<answer>{answer}</answer>", "14") == 0.0
    assert time.perf_counter() - start < 0.2


def test_deadline_interrupts_sympy_and_restores_an_outer_timer() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda s, f: fired.append(s))
    signal.setitimer(signal.ITIMER_REAL, 5.0)
    try:
        start = time.perf_counter()
        # a slow comparison that the screen lets through: only the deadline stops it
        verdict = verifiers.verify_here(None, "14", "\\sum_{k=1}^{9999} k^{9999}", timeout=0.3)
        elapsed = time.perf_counter() - start
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert verdict == verifiers.TIMEOUT
    assert elapsed < 0.8
    assert 3.5 < remaining <= 5.0  # the outer timer was put back with its remaining time
    assert not fired


def test_deadline_raises_through_broad_except() -> None:
    def stubborn() -> None:
        while True:
            with contextlib.suppress(Exception):  # math-verify's habit: must not swallow it
                sum(range(10_000))

    start = time.perf_counter()
    with pytest.raises(limits.VerificationTimeout):
        limits.call_with_deadline(stubborn, 0.2)
    assert time.perf_counter() - start < 0.6


def test_verification_from_a_worker_thread_uses_the_helper_process() -> None:
    results: dict[str, Any] = {}

    def run() -> None:
        results["right"] = check_completion("<answer>\\frac{6}{4}</answer>", "3/2", timeout=5)
        results["wrong"] = check_completion("<answer>\\frac{5}{4}</answer>", "3/2", timeout=5)
        start = time.perf_counter()
        results["slow"] = check_completion("<answer>\\sum_{k=1}^{9999} k^{9999}</answer>", "1",
                                           timeout=0.5)
        results["slow_s"] = time.perf_counter() - start

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    limits.close_worker()
    assert results.pop("slow_s") < 1.5  # the helper's deadline held, off the main thread
    assert results == {"right": 1.0, "wrong": 0.0, "slow": 0.0}


# ----------------------------------------------------------------- language


def test_language_consistency_english_chinese_and_mixed() -> None:
    english = "First we add the numbers, then we multiply, and finally we verify the result."
    chinese = "我们先把两个数相加，然后再乘以四。"
    assert language_consistency(english, "en") == 1.0
    assert language_consistency(chinese, "zh") == 1.0
    assert language_consistency(chinese, "en") == 0.0
    mixed = f"{english} {chinese}"
    share = language_consistency(mixed, "en")
    assert 0.3 < share < 0.7
    assert language_consistency(mixed, "zh") == pytest.approx(1 - share)
    assert language_consistency("2 + 3 = 5, 5 * 4 = 20", "en") == 1.0  # no words, no mixing
    assert language_consistency("Let $x^2 + y$ be the sum, then \\frac{a}{b} holds.", "en") == 1.0
    french = "Ensuite, nous calculons la somme des deux nombres et nous vérifions le résultat."
    assert language_consistency(french, "en") == 0.0
    assert language_consistency(french, "fr") == 1.0


def test_language_target_auto_from_prompt_or_column() -> None:
    assert detect_language("What is the capital of France?") == "en"
    assert detect_language("What is 2 + 3?") == "en"
    assert detect_language("Wie spät ist es? Ich weiß es nicht.") == "de"
    assert detect_language("2 + 3") is None
    assert detect_language("法国的首都是哪里？") == "zh"
    template = "A conversation between User and Assistant. ... User: 法国的首都是哪里？. Assistant:"
    assert detect_language(template) == "zh"
    funcs, _ = build_reward_funcs({"language": {"target": "auto"}})
    cot = "<think>我们先把两个数相加。</think> 14"
    english = "<think>We add the two numbers first.</think> 14"
    assert funcs[0](prompts=["法国的首都是哪里？", "What is 2 + 3?"], completions=[cot, cot]) == [1.0, 0.0]
    assert funcs[0](prompts=["What is 2 + 3?", "2 + 3"], completions=[english, english]) == [1.0, None]
    assert funcs[0](prompts=["x", "x"], completions=[cot, cot], language=["zh", "en"]) == [1.0, 0.0]
    assert funcs[0](prompts=["x"], completions=["no reasoning at all"]) == [0.0]


# ----------------------------------------------------------------- length family


def test_cosine_length() -> None:
    funcs, _ = build_reward_funcs({"cosine": 1.0}, max_completion_length=100)
    right, wrong = "<answer>14</answer>", "<answer>15</answer>"
    kw = {"answer": ["14"] * 4, "completion_ids": [[0] * 10, [0] * 90, [0] * 10, [0] * 90]}
    short_right, long_right, short_wrong, long_wrong = funcs[0](
        completions=[right, right, wrong, wrong], **kw)
    assert 1.0 >= short_right > long_right >= 0.5
    assert -1.0 <= short_wrong < long_wrong <= -0.5
    at_zero = funcs[0](completions=[right], answer=["14"], completion_ids=[[]])
    assert at_zero == [pytest.approx(1.0)]
    past_max = funcs[0](completions=[right], answer=["14"], completion_ids=[[0] * 500])
    assert past_max == [pytest.approx(0.5)]


def test_overlong_soft_punishment() -> None:
    funcs, _ = build_reward_funcs({"overlong": {"max_length": 100, "cache_length": 20}})
    ids = [[0] * n for n in (50, 80, 90, 100, 101)]
    assert funcs[0](completions=[""] * 5, completion_ids=ids) == pytest.approx(
        [0.0, 0.0, -0.5, -1.0, -1.0])
    with pytest.raises(ValueError, match="max_completion_length"):
        build_reward_funcs({"overlong": 1.0})
    funcs, _ = build_reward_funcs({"overlong": 1.0}, max_completion_length=10)
    assert funcs[0](completions=["x" * 9, "x" * 11]) == [pytest.approx(-0.5), -1.0]


def test_repetition_penalty() -> None:
    assert repeated_ngram_share("the cat sat on the mat") == 0.0
    assert repeated_ngram_share("a b c " * 50) > 0.9
    assert repeated_ngram_share("我们我们我们我们我们我们") > 0.5
    funcs, _ = build_reward_funcs({"repetition": {"ngram_size": 2, "max_penalty": -0.5}})
    assert funcs[0](completions=["one two three", "go go go go go"]) == [0.0, -0.375]


# ----------------------------------------------------------------- steps and code


def test_reasoning_steps_and_code_blocks() -> None:
    text = "Step 1: add.\nStep 2: multiply.\n1. check\n- note\nFinally, done."
    assert count_reasoning_steps(text) == 5
    assert count_reasoning_steps("just thinking") == 0
    assert has_code_block("look:\n```python\nprint(1)\n```")
    assert has_code_block("  ~~~\ncode")
    assert not has_code_block("inline `code` only")
    assert longest_paragraph_words("a b c\n\nd e\n \nf") == 3
    funcs, _ = build_reward_funcs({"reasoning_steps": 1.0, "code_block": 0.5})
    texts = [f"<think>{text}</think>", "<think>```\nx=1\n```</think> ok"]
    assert funcs[0](completions=texts) == [1.0, 0.0]
    assert funcs[1](completions=texts) == [0.0, -1.0]


# ----------------------------------------------------------------- composition


def test_routing_by_task_type() -> None:
    spec = {"accuracy": 1.0, "format": 0.1, "any": {"reward": "format", "task_types": "all"}}
    result = score(spec, ["q", "hello"], ["<think>r</think> <answer>14</answer>"] * 2,
                   answer=["14", None], task_type=["reasoning", "general"])
    assert result.per_reward["accuracy"] == [1.0, None]
    assert result.per_reward["format"] == [1.0, None]
    assert result.per_reward["any"] == [1.0, 1.0]
    assert result.total == pytest.approx([2.1, 1.0])
    unrouted = score({"accuracy": 1.0}, ["q"], ["<answer>14</answer>"], answer=["14"])
    assert unrouted.per_reward["accuracy"] == [1.0]  # no task_type column: every reward applies


def test_routed_model_rewards_only_see_their_samples() -> None:
    from r1pipe.rewards.compose import Routed
    from r1pipe.rewards.format import Format

    seen: list[int] = []

    class Counting(Format):
        def score_batch(self, batch: Any) -> list[Any]:
            seen.append(len(batch))
            return super().score_batch(batch)

    routed = Routed(Counting(), ("general",))
    out = routed(prompts=["a", "b", "c"], completions=["<think>x</think>"] * 3,
                 task_type=["reasoning", "general", "general"], answer=[1, 2, 3])
    assert out == [None, 1.0, 1.0] and seen == [2]


def test_validate_reward_spec_messages() -> None:
    assert validate_reward_spec({"accuracy": 1.0, "format": {"weight": 0.1, "variant": "r1_zero"},
                                 "language": 0.2}) == []
    errors = validate_reward_spec({
        "acuracy": 1.0,
        "format": {"weight": 0.1, "variant": "r1zero"},
        "language": {"target": "xx"},
        "cosine": {"max_len": 10},
        "judge": {"weight": "high", "model": "m"},
        "reward_model": 1.0,
        "rep": {"reward": "repetition", "max_penalty": 1.0},
    })
    text = "\n".join(errors)
    assert "rewards.acuracy: unknown reward 'acuracy' (did you mean 'accuracy'?)" in text
    assert "rewards.format.variant" in text and "did you mean 'r1_zero'" in text
    assert "rewards.language: target 'xx'" in text
    assert "rewards.cosine.max_len" in text and "did you mean 'max_length'" in text
    assert "rewards.judge.weight: expected a number" in text
    assert "rewards.reward_model: reward_model needs `model`" in text
    assert "rewards.rep: max_penalty must not be positive" in text
    assert validate_reward_spec([1, 2])[0].startswith("rewards: expected a mapping")
    with pytest.raises(ValueError, match="acuracy"):
        build_reward_funcs({"acuracy": 1.0})


def test_registry_lists_every_family() -> None:
    names = available_rewards()
    for name in ("accuracy", "format", "language", "cosine", "overlong", "repetition",
                 "reasoning_steps", "code_block", "reward_model", "judge"):
        assert names[name]


def test_registry_and_validation_import_nothing_heavy() -> None:
    code = (
        "import sys, r1pipe.rewards as r\n"
        "r.available_rewards()\n"
        "assert r.validate_reward_spec({'accuracy': 1, 'language': {'target': 'zh'},"
        " 'reward_model': {'model': 'x'}, 'judge': {'model': 'm'}}) == []\n"
        "heavy = [m for m in ('torch', 'transformers', 'math_verify', 'sympy', 'openai', 'trl')"
        " if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_internal_errors_were_swallowed() -> None:
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


def test_score_takes_dataset_columns_named_like_its_own_arguments() -> None:
    """The code task's records carry a `spec` column: it is a column, not `score`'s spec."""
    from r1pipe.rewards import score

    out = score({"accuracy": 1.0}, ["1+1?"], ["<think>x</think> \\boxed{2}"], answer=["2"],
                spec=["nums|sum"], prompts_column=["p"])
    assert out.total == [1.0]
