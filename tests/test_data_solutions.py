"""Worked solutions of the built-in tasks (`r1pipe.data.solutions`, `solutions: true`).

They exist to be cold-start SFT data, so they are held to what the cold-start stage
checks: r1pipe's own accuracy check says the boxed answer is right, and the readability
filters (layout, one language, short paragraphs, no code) keep every one of them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from r1pipe.config import ConfigError, load_text
from r1pipe.data.expressions import evaluate_with_numbers
from r1pipe.data.loading import builtin_dataset, load_source
from r1pipe.data.prepare import load_input
from r1pipe.data.solutions import countdown_search, worked_parts, worked_solution
from r1pipe.data.sources import BUILTIN_TASKS, DataSourceConfig, parse_sources
from r1pipe.data.tasks import generate_task
from r1pipe.filters import (
    FilterSettings,
    code_block,
    correctness,
    has_format,
    language_share,
    paragraph_words,
    reasoning_of,
)
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, split_completion
from r1pipe.rewards.verifiers import last_boxed
from r1pipe.stages.cold_start.collect import external_records, filter_way

ROOT = Path(__file__).resolve().parents[1]
BOXED_END = re.compile(r"The answer is \\boxed\{[^{}]+\}\.$")


def _records(task: str, difficulty: int, size: int = 200) -> list[dict[str, Any]]:
    return generate_task(task, size=size, difficulty=difficulty)


# --------------------------------------------------------------------- correct and readable


@pytest.mark.parametrize("difficulty", [1, 2, 3])
@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_every_solution_is_correct_and_passes_the_cold_start_filters(task: str,
                                                                     difficulty: int) -> None:
    records = _records(task, difficulty)
    assert len(records) == 200
    texts = [worked_solution(r) for r in records]
    settings = FilterSettings()
    for record, text in zip(records, texts, strict=True):
        where = f"{record['id']}: {record['prompt']}"
        # r1pipe's own accuracy check (the verifier the filters and RL rewards use)
        assert correctness({**record, "completion": text}) == 1.0, where
        # the per-check helpers, with the default thresholds
        reasoning = reasoning_of(text)
        assert text.startswith(DEFAULT_SPECIAL_TOKEN) and has_format(text), where
        share = language_share(reasoning, "en")
        assert share is not None and share >= settings.min_language_consistency, where
        assert settings.max_paragraph_words is not None
        assert paragraph_words(reasoning) <= settings.max_paragraph_words, where
        assert not code_block(reasoning) and "```" not in text, where
        # the shape the brief promises: steps, a verification paragraph, a boxed summary
        paragraphs = reasoning.split("\n\n")
        assert len(paragraphs) >= 4 and all(p.strip() == p and p for p in paragraphs), where
        assert any(p.startswith(("Wait", "Let me verify")) for p in paragraphs[2:]), where
        summary = split_completion(text).summary
        assert summary is not None and BOXED_END.search(summary), where
        assert text.isascii(), where
    # and the cold-start stage's own path: read as `collect.external`, refined by the rules,
    # judged by the rejection filters with the default settings; every sample is kept
    rows = [{**r, "completion": t} for r, t in zip(records, texts, strict=True)]
    filtered = list(filter_way(external_records(rows, "worked"), settings,
                               special_token=DEFAULT_SPECIAL_TOKEN,
                               count_tokens=lambda s: len(s.split()), seen=set()))
    verdicts = Counter(r["removed_by"] for r in filtered)
    assert verdicts == Counter({None: 200}), verdicts
    assert [r["completion"] for r in filtered] == texts  # the rules leave them unchanged


def test_the_checks_above_can_fail() -> None:
    """The same checks reject a wrong box, a mixed-language paragraph and a long one."""
    record = _records("arithmetic", 2, 1)[0]
    text = worked_solution(record)
    wrong = text.replace(f"\\boxed{{{record['answer']}}}", f"\\boxed{{{int(record['answer']) + 1}}}")
    assert wrong != text and correctness({**record, "completion": wrong}) == 0.0
    french = "Ensuite je calcule la somme des deux nombres pour trouver la réponse finale."
    share = language_share(reasoning_of(text) + "\n\n" + french, "en")
    assert share is not None and share < FilterSettings().min_language_consistency
    assert paragraph_words(reasoning_of(text) + "\n\n" + "word " * 301) > 300


@pytest.mark.parametrize("difficulty", [4, 5])
@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_harder_levels_are_solved_too(task: str, difficulty: int) -> None:
    for record in _records(task, difficulty, 40):
        text = worked_solution(record)
        assert correctness({**record, "completion": text}) == 1.0, record["prompt"]
        assert paragraph_words(reasoning_of(text)) <= 300


# --------------------------------------------------------------------- derived, not copied


def test_arithmetic_is_evaluated_one_operation_at_a_time_by_precedence() -> None:
    record = {"id": "a", "task": "arithmetic", "prompt": "What is 2 + 3 * 4 - 10 / 5?",
              "answer": "12"}
    reasoning, summary = worked_parts(record)
    steps = ["3 * 4 = 12", "10 / 5 = 2", "2 + 12 = 14", "14 - 2 = 12"]
    positions = [reasoning.find(s) for s in steps]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), reasoning
    assert "2 + 3 = 5" not in reasoning  # never left to right through the multiplication
    # the precedence slip is named: strictly left to right, ((2 + 3) * 4 - 10) / 5 = 2
    assert re.search(r"left to right\b.*\b(would give 2,|gives 2 instead of 12)", reasoning)
    assert summary.endswith("The answer is \\boxed{12}.")
    brackets = worked_parts({"id": "b", "task": "arithmetic",
                             "prompt": "What is (14 - 3) * (1 + 6)?", "answer": "77"})[0]
    assert brackets.find("14 - 3 = 11") < brackets.find("1 + 6 = 7") < brackets.find("11 * 7")


def test_multiplication_shows_the_partial_products_and_their_sum() -> None:
    reasoning, summary = worked_parts({"id": "m", "task": "multiplication",
                                       "prompt": "What is 347 * 43?", "answer": "14921"})
    for piece in ("347 * 3 = 1041", "1200 + 160 + 28 = 1388", "13880",
                  "1041 + 13880 = 14921"):
        assert piece in reasoning, piece
    assert "43 * 300" in reasoning  # the check splits the other factor
    assert "\\boxed{14921}" in summary
    zero = worked_parts({"id": "z", "task": "multiplication", "prompt": "What is 512 * 304?",
                         "answer": str(512 * 304)})[0]
    assert "tens digit of 304 is 0" in zero and "153600" in zero


def test_countdown_answers_follow_the_rules_of_the_prompt() -> None:
    for difficulty in (1, 2, 3):
        for record in _records("countdown", difficulty, 60):
            summary = worked_parts(record)[1]
            boxed = last_boxed(summary)
            assert boxed is not None
            value, used = evaluate_with_numbers(boxed)
            assert value == record["target"]
            assert not Counter(int(u) for u in used) - Counter(record["numbers"])
            allowed = {1: "+-", 2: "+-*", 3: "+-*"}[difficulty]
            assert set(re.findall(r"[-+*/]", boxed)) <= set(allowed), (record["prompt"], boxed)
    # the search finds the shortest way, may leave numbers out, and says when there is none
    assert countdown_search([2, 3, 50], 100, "+-*").render() == "50 * 2"
    assert countdown_search([4, 9], 7, "+-*/") is None
    numbers_left_out = worked_parts({"id": "c", "task": "countdown", "numbers": [50, 2, 7],
                                     "target": 100, "difficulty": 2,
                                     "prompt": "Using the numbers 50, 2 and 7, each at most "
                                     "once, and the operations +, - and *, write an "
                                     "expression that equals 100."})[0]
    assert "50 * 2 = 100" in numbers_left_out
    assert re.search(r"leaves out 7|The 7 is not needed", numbers_left_out)


def test_linear_equations_are_solved_in_fractions_and_substituted_back() -> None:
    reasoning, summary = worked_parts({"id": "l", "task": "linear_equation",
                                       "prompt": "Solve for x: 2(x + 5) + 18 = -3(x - 5)",
                                       "answer": "-13/5"})
    for piece in ("2(x + 5) = 2x + 10", "-3(x - 5) = -3x + 15", "add 3x", "5x + 28 = 15",
                  "5x = 15 - 28 = -13", "x = -13 / 5", "114/5"):
        assert piece in reasoning, piece
    assert summary.endswith("\\boxed{-13/5}.")


def test_a_record_whose_answer_disagrees_is_refused() -> None:
    record = {"id": "w", "task": "arithmetic", "prompt": "What is 6 - 4 * 7?", "answer": "8"}
    with pytest.raises(ValueError, match="gives -22.*refusing"):
        worked_solution(record)
    with pytest.raises(ValueError, match="no worked solution for task 'poetry'"):
        worked_solution({"id": "p", "task": "poetry", "prompt": "Write a poem."})
    with pytest.raises(ValueError, match="needs `numbers` and `target`"):
        worked_solution({"id": "c", "task": "countdown", "prompt": "Reach 10."})


# --------------------------------------------------------------------- deterministic, varied


def test_same_record_same_text_in_any_process() -> None:
    records = [r for task in BUILTIN_TASKS for r in _records(task, 2, 5)]
    here = [worked_solution(r) for r in records]
    assert here == [worked_solution(dict(r)) for r in records]
    script = ("import json, sys; from r1pipe.data.solutions import worked_solution; "
              "print(json.dumps([worked_solution(r) for r in json.load(sys.stdin)]))")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", script], input=json.dumps(records),
                             capture_output=True, text=True, check=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": hash_seed})
        assert json.loads(out.stdout) == here


@pytest.mark.parametrize("task", BUILTIN_TASKS)
def test_phrasing_varies_across_records(task: str) -> None:
    texts = [worked_solution(r) for r in _records(task, 2, 60)]
    openings = Counter(reasoning_of(t).split()[:3].__str__() for t in texts)
    checks = Counter(next(p for p in reasoning_of(t).split("\n\n")[2:]
                          if p.startswith(("Wait", "Let me verify"))).split()[:5].__str__()
                     for t in texts)
    assert len(openings) >= 3 and max(openings.values()) < 0.7 * len(texts), openings
    assert len(checks) >= 2, checks
    # the same problem under another id reads differently too
    record = _records(task, 2, 1)[0]
    variants = {worked_solution({**record, "id": f"other-{i}"}) for i in range(8)}
    assert len(variants) >= 3


# --------------------------------------------------------------------- the data source


def test_a_yaml_source_with_solutions_has_a_completion_column() -> None:
    config = load_text("""\
name: worked
base_model: {builtin: tiny-llama}
data:
  worked: {builtin: arithmetic, size: 10, solutions: true}
stages:
  cold_start: {collect: {few_shot: {enabled: false}, direct: {enabled: false},
               external: worked}}
""")
    assert [i.field for i in config.stages["cold_start"].inputs()] == ["from",
                                                                       "collect.external"]
    data = load_input(config, "worked")
    assert len(data) == 10 and "completion" in data.column_names
    assert data.features["completion"].dtype == "string"
    for row in data:
        assert row["completion"] == worked_solution(row)
        assert correctness(dict(row)) == 1.0


def test_the_fixed_schema_of_a_mix_with_solutions() -> None:
    source = DataSourceConfig(builtin="reasoning", size=12, difficulty=2, solutions=True)
    data = builtin_dataset(source, seed=0)
    assert list(data.features)[-1] == "completion"
    assert {"numbers", "target", "completion"} <= set(data.column_names)
    tasks = Counter(data["task"])
    assert tasks == Counter({t: 3 for t in BUILTIN_TASKS})
    assert all(correctness(dict(row)) == 1.0 for row in data)
    plain = load_source(DataSourceConfig(builtin="reasoning", size=12, difficulty=2), seed=0)
    assert "completion" not in plain.column_names
    assert plain["prompt"] == data["prompt"]  # the same problems, only a column more


def test_solutions_on_a_source_without_tasks_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="`solutions` only applies to the built-in "
                                              "reasoning tasks.*`builtin: general`"):
        DataSourceConfig.model_validate({"builtin": "general", "solutions": True})
    with pytest.raises(ValidationError, match="solutions do not apply to a `path:` source"):
        DataSourceConfig.model_validate({"path": "x.jsonl", "solutions": True})
    with pytest.raises(ValidationError, match="solutions do not apply to a `hub:` source"):
        parse_sources({"h": {"hub": "org/set", "solutions": True}})
    with pytest.raises(ConfigError, match="solutions"):
        load_text("name: x\nbase_model: {builtin: tiny-llama}\n"
                  "data:\n  g: {builtin: general, solutions: true}\n")
    # the reasoning-task built-ins all take it
    pipeline = SimpleNamespace(seed=0, data=parse_sources(
        {"w": {"builtin": "countdown", "size": 3, "solutions": True}}))
    assert "completion" in load_input(pipeline, "w").column_names
