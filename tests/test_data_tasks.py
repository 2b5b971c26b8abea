"""Built-in verifiable tasks: deterministic, held out, and every answer checks out."""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1pipe.data.expressions import ExpressionError, evaluate, evaluate_with_numbers
from r1pipe.data.tasks import (
    GENERATORS,
    generate_reasoning,
    generate_task,
    in_test_split,
    normalise_prompt,
)
from r1pipe.rewards.accuracy import check_completion

TASKS = list(GENERATORS)
LEVELS = [1, 2, 3, 4, 5]


def _both(task: str, difficulty: int, seed: int = 0, size: int = 300, test_size: int = 100):
    train = generate_task(task, "train", size=size, test_size=test_size,
                          difficulty=difficulty, seed=seed)
    test = generate_task(task, "test", size=size, test_size=test_size,
                         difficulty=difficulty, seed=seed)
    return train, test


@pytest.mark.parametrize("task", TASKS)
def test_generation_is_deterministic_per_seed(task: str) -> None:
    first = generate_task(task, "train", size=100, difficulty=2, seed=11)
    again = generate_task(task, "train", size=100, difficulty=2, seed=11)
    other = generate_task(task, "train", size=100, difficulty=2, seed=12)
    assert first == again
    assert [r["prompt"] for r in first] != [r["prompt"] for r in other]


@pytest.mark.parametrize("task", TASKS)
def test_a_smaller_split_is_a_prefix_of_a_larger_one(task: str) -> None:
    """Ids keep meaning the same problem when a config asks for more data."""
    small = generate_task(task, "train", size=40, difficulty=3, seed=5)
    large = generate_task(task, "train", size=120, difficulty=3, seed=5)
    assert large[:40] == small


@pytest.mark.parametrize("difficulty", LEVELS)
@pytest.mark.parametrize("task", TASKS)
def test_train_and_test_never_share_a_prompt(task: str, difficulty: int) -> None:
    train, test = _both(task, difficulty)
    assert len(train) == 300 and len(test) == 100
    train_prompts = {normalise_prompt(r["prompt"]) for r in train}
    assert len(train_prompts) == len(train), "duplicate prompts inside the train split"
    assert not train_prompts & {normalise_prompt(r["prompt"]) for r in test}


@pytest.mark.parametrize("task", TASKS)
def test_no_seed_trains_on_another_seeds_test_split(task: str) -> None:
    """The split is a function of the problem, not of the seed."""
    train = generate_task(task, "train", size=2000, difficulty=1, seed=1)
    test = generate_task(task, "test", test_size=400, difficulty=1, seed=2)
    assert not {normalise_prompt(r["prompt"]) for r in train} & {
        normalise_prompt(r["prompt"]) for r in test
    }


def test_normalised_prompts_ignore_case_spacing_and_final_mark() -> None:
    assert normalise_prompt("What is 2 + 3 * 4?") == normalise_prompt("what is 2+3*4 ")
    assert in_test_split("arith:2 + 3 * 4") == in_test_split("arith:2 + 3 * 4")


@pytest.mark.parametrize("task", TASKS)
def test_records_have_the_documented_schema(task: str) -> None:
    records = generate_task(task, "test", test_size=50, difficulty=2, seed=3)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert ids[7] == f"{task}-d2-test-000007"
    for r in records:
        assert {"id", "prompt", "answer", "task", "difficulty", "task_type"} <= set(r)
        assert r["task"] == task and r["difficulty"] == 2 and r["task_type"] == "reasoning"
        assert isinstance(r["answer"], str) and r["answer"]
        if task == "countdown":
            assert isinstance(r["numbers"], list) and all(isinstance(n, int) for n in r["numbers"])
            assert isinstance(r["target"], int)
        else:
            assert "numbers" not in r and "target" not in r


def test_the_papers_example_is_the_arithmetic_task() -> None:
    prompts = [r["prompt"] for r in generate_task("arithmetic", "train", size=300, seed=0)]
    assert all(p.startswith("What is ") and p.endswith("?") for p in prompts)
    assert evaluate("2 + 3 * 4") == 14  # precedence, as the task expects


@pytest.mark.parametrize("difficulty", LEVELS)
@pytest.mark.parametrize("task", TASKS)
def test_every_builtin_answer_verifies_with_the_accuracy_reward(task: str, difficulty: int) -> None:
    """The shared accuracy reward accepts every reference answer and rejects a wrong one."""
    train, test = _both(task, difficulty, seed=7, size=150, test_size=50)
    for record in [*train, *test]:
        kwargs = {"task": task, "numbers": record.get("numbers"), "target": record.get("target"),
                  "record_id": record["id"]}
        right = f"<think>working</think> <answer>{record['answer']}</answer>"
        assert check_completion(right, record["answer"], **kwargs) == 1.0, record
        wrong_answer = (f"{record['answer']} + 1" if task == "countdown"
                        else str(evaluate(record["answer"]) + 1))
        wrong = f"<think>working</think> <answer>{wrong_answer}</answer>"
        assert check_completion(wrong, record["answer"], **kwargs) == 0.0, record


def _independent_check(record: dict) -> bool:
    """r1pipe's own exact check, independent of the rewards package."""
    task, answer, prompt = record["task"], record["answer"], record["prompt"]
    if task in ("arithmetic", "multiplication"):
        return evaluate(prompt.removeprefix("What is ").removesuffix("?")) == evaluate(answer)
    if task == "linear_equation":
        x = evaluate(answer)
        left, right = prompt.removeprefix("Solve for x: ").split(" = ")

        def at(side: str) -> Fraction:
            side = re.sub(r"(\d)x", r"\1*x", side)
            side = re.sub(r"(\d)\(", r"\1*(", side).replace("-(", "-1*(")
            return evaluate(side.replace("x", f"({x})"))

        return at(left) == at(right)
    value, used = evaluate_with_numbers(answer)
    return value == record["target"] and not Counter(used) - Counter(record["numbers"])


@settings(max_examples=60, deadline=None)
@given(
    task=st.sampled_from(TASKS),
    difficulty=st.integers(1, 5),
    seed=st.integers(0, 10_000),
    split=st.sampled_from(["train", "test"]),
)
def test_answers_are_exactly_right_for_any_seed(task: str, difficulty: int, seed: int,
                                                split: str) -> None:
    for record in generate_task(task, split, size=20, test_size=20, difficulty=difficulty,
                                seed=seed):
        assert _independent_check(record), record


def test_difficulty_makes_problems_harder() -> None:
    def mean_answer_digits(task: str, level: int) -> float:
        records = generate_task(task, "train", size=200, difficulty=level, seed=0)
        return sum(len(r["answer"].lstrip("-")) for r in records) / len(records)

    digits = [mean_answer_digits("multiplication", level) for level in LEVELS]
    assert digits == sorted(digits) and digits[-1] > digits[0] + 3
    counts = [len(generate_task("countdown", "train", size=50, difficulty=lvl)[0]["numbers"])
              for lvl in LEVELS]
    assert counts == sorted(counts) and counts[0] == 3 and counts[-1] == 5


def test_asking_for_more_problems_than_exist_says_so() -> None:
    with pytest.raises(ValueError, match="ran out of distinct train problems"):
        generate_task("multiplication", "train", size=100_000, difficulty=2)


def test_the_reasoning_mix_balances_the_tasks() -> None:
    records = generate_reasoning("train", size=103, difficulty=1, seed=0)
    counts = Counter(r["task"] for r in records)
    assert len(records) == 103 and set(counts) == set(TASKS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert [r["task"] for r in records[:4]] == TASKS  # interleaved: any prefix is balanced
    assert len({r["id"] for r in records}) == 103
    only = generate_reasoning("test", test_size=10, tasks=["countdown", "arithmetic"])
    assert {r["task"] for r in only} == {"countdown", "arithmetic"}


def test_expression_evaluator_refuses_anything_but_arithmetic() -> None:
    for text in ("__import__('os')", "2 ** 10", "x + 1", "1 / 0", ""):
        with pytest.raises(ExpressionError):
            evaluate(text)
    assert evaluate("7 / 2") == Fraction(7, 2)
