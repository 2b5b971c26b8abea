"""The built-in code task: rule-generated problems, tests in open-r1's schema, worked
solutions that pass their tests in the sandbox, reward routing and rejection filters."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from r1pipe.data.code_tasks import Spec, expected_output, solution_program
from r1pipe.data.loading import builtin_dataset
from r1pipe.data.solutions import worked_solution
from r1pipe.data.sources import DataSourceConfig
from r1pipe.data.tasks import generate_reasoning, generate_task, normalise_prompt
from r1pipe.filters import FilterSettings, apply_filters, language_share, reasoning_of
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, split_completion
from r1pipe.rewards import score
from r1pipe.sandbox import SandboxUnavailable

CODE = {"code": {"weight": 1.0, "task_types": "all"}}


def _sandbox_or_skip() -> None:
    from r1pipe.sandbox import LocalSandbox, SandboxConfig

    try:
        LocalSandbox(SandboxConfig()).run("print(1)", [])
    except SandboxUnavailable as exc:  # pragma: no cover - machines without namespaces
        pytest.skip(f"no isolation on this machine: {exc}")


def test_records_carry_open_r1_tests_and_a_held_out_split() -> None:
    train = generate_task("code", "train", size=150, test_size=40, difficulty=2, seed=3)
    test = generate_task("code", "test", size=150, test_size=40, difficulty=2, seed=3)
    assert len(train) == 150 and len(test) == 40
    assert train == generate_task("code", "train", size=150, test_size=40, difficulty=2, seed=3)
    assert generate_task("code", "train", size=50, difficulty=2, seed=3) == train[:50]
    # held out by the rule (spec), not only by prompt text: no rule is in both splits
    assert not {r["spec"] for r in train} & {r["spec"] for r in test}
    assert not {normalise_prompt(r["prompt"]) for r in train} & {
        normalise_prompt(r["prompt"]) for r in test}
    for record in train + test:
        assert record["task"] == "code" and record["task_type"] == "reasoning"
        assert record["answer"] is None
        info = json.loads(record["verification_info"])
        assert info["language"] == "python" and len(info["test_cases"]) >= 3
        outputs = set()
        for case in info["test_cases"]:
            assert set(case) == {"type", "input", "output"} and case["type"] == "stdin_stdout"
            assert case["output"] == expected_output(Spec.parse(record["spec"]), case["input"])
            outputs.add(case["output"])
        assert len(outputs) > 1 or record["spec"].startswith("fizz")  # no constant answers
        example = info["test_cases"][0]
        assert example["input"].strip() in record["prompt"]


def test_difficulty_lengthens_the_chain_of_steps() -> None:
    def steps(level: int) -> float:
        specs = [Spec.parse(r["spec"]) for r in generate_task("code", size=200, difficulty=level)]
        return sum(len(s.steps) for s in specs) / len(specs)

    assert steps(1) < steps(3) < steps(5)
    families = Counter(r["spec"].split("|")[0] for r in generate_task("code", size=300))
    assert set(families) == {"nums", "text", "fizz"}


@pytest.mark.parametrize("difficulty", [1, 3, 5])
def test_every_worked_solution_passes_its_tests_in_the_sandbox(difficulty: int) -> None:
    _sandbox_or_skip()
    records = generate_task("code", size=8, difficulty=difficulty, seed=difficulty)
    texts = [worked_solution(r) for r in records]
    columns = {"verification_info": [r["verification_info"] for r in records]}
    result = score(CODE, [r["prompt"] for r in records], texts, **columns)
    assert result.per_reward["code"] == [1.0] * len(records)
    # the check can fail: the same programs with their output step altered fail some tests
    broken = [t.replace("print(", "print(0, ", 1) for t in texts]
    failed = score(CODE, [r["prompt"] for r in records], broken, **columns)
    assert all(v is not None and v < 1.0 for v in failed.per_reward["code"])


def test_worked_solutions_have_the_cold_start_layout_and_pass_the_filters() -> None:
    _sandbox_or_skip()
    records = generate_task("code", size=10, difficulty=3, seed=1)
    rows = [{**r, "prompt_id": r["id"], "completion": text, "token_count": len(text.split())}
            for r in records for text in [worked_solution(r)]]
    others = [{**r, "completion": worked_solution(r)} for level in (1, 2, 4, 5)
              for r in generate_task("code", size=30, difficulty=level, seed=level)]
    for row in rows + others:
        parsed = split_completion(row["completion"])
        assert row["completion"].startswith(DEFAULT_SPECIAL_TOKEN) and parsed.summary
        assert "```" not in (parsed.reasoning or "")  # the code is in the summary only
        assert f"```python\n{solution_program(Spec.parse(row['spec']))}\n```" in parsed.summary
        share = language_share(reasoning_of(row["completion"]), "en")
        assert share is not None and share >= 0.95, row["completion"]
    verdicts = list(apply_filters(rows, FilterSettings()))
    assert [v["removed_by"] for v in verdicts] == [None] * len(rows)
    assert all(v["filters"]["code"] and v["reward"] == 1.0 for v in verdicts)


def test_filters_drop_code_answers_whose_tests_fail_and_keep_code_in_the_summary() -> None:
    _sandbox_or_skip()
    record = generate_task("code", size=1, difficulty=2, seed=4)[0]
    good = worked_solution(record)
    reasoning, summary = good.split(DEFAULT_SPECIAL_TOKEN)[1:]
    wrong = good.replace("print(", "print(1 + ", 1)
    no_program = DEFAULT_SPECIAL_TOKEN + reasoning + DEFAULT_SPECIAL_TOKEN + "No idea, sorry."
    code_in_reasoning = (DEFAULT_SPECIAL_TOKEN + reasoning + "\n\n```python\nx = 1\n```"
                         + DEFAULT_SPECIAL_TOKEN + summary)
    rows = [{**record, "prompt_id": "p", "completion": text, "token_count": 100}
            for text in (good, wrong, no_program, code_in_reasoning)]
    verdicts = list(apply_filters(rows, FilterSettings(dedup=False)))
    assert [v["removed_by"] for v in verdicts] == [None, "tests", "tests", None]
    # a math answer with code in its reasoning still meets the code-block filter
    math = generate_task("arithmetic", size=1)[0]
    text = worked_solution(math)
    head, tail = text.split(DEFAULT_SPECIAL_TOKEN)[1:]
    bad = DEFAULT_SPECIAL_TOKEN + head + "\n\n```python\nprint(1)\n```" + DEFAULT_SPECIAL_TOKEN + tail
    (verdict,) = apply_filters([{**math, "prompt_id": "m", "completion": bad, "token_count": 9}],
                               FilterSettings())
    assert verdict["removed_by"] == "code_block" and verdict["filters"]["code"] is False


def test_code_tests_settings_are_checked_like_the_reward() -> None:
    with pytest.raises(ValueError, match="code_tests.isolation"):
        FilterSettings(code_tests={"isolation": "chroot"})
    with pytest.raises(ValueError, match="code_tests.timout: unknown parameter"):
        FilterSettings(code_tests={"timout": 3})
    assert FilterSettings(code_tests={"timeout": 2.0, "workers": 2}).code_tests["workers"] == 2


def test_rewards_route_by_the_record_math_gets_accuracy_and_code_gets_tests() -> None:
    _sandbox_or_skip()
    records = generate_reasoning(size=6, difficulty=1, tasks=["arithmetic", "code"], seed=2)
    assert Counter(r["task"] for r in records) == Counter({"arithmetic": 3, "code": 3})
    texts = [worked_solution(r) for r in records]
    columns: dict[str, Any] = {name: [r.get(name) for r in records]
                               for name in ("answer", "task", "task_type", "verification_info")}
    spec = {"accuracy": 1.0, "code": 1.0, "code_format": 0.1,
            "format": {"weight": 0.1, "variant": "cold_start"}}
    result = score(spec, [r["prompt"] for r in records], texts, **columns)
    for i, record in enumerate(records):
        is_code = record["task"] == "code"
        assert result.per_reward["accuracy"][i] == (None if is_code else 1.0)
        assert result.per_reward["code"][i] == (1.0 if is_code else None)
        assert result.per_reward["code_format"][i] == (1.0 if is_code else None)
        assert result.per_reward["format"][i] == 1.0  # the format reward stays on for both
        assert result.total[i] == pytest.approx(1.2 if is_code else 1.1)


def test_builtin_sources_for_the_code_task() -> None:
    data = builtin_dataset(DataSourceConfig(builtin="code", size=5, solutions=True), seed=0)
    assert {"verification_info", "spec", "completion"} <= set(data.column_names)
    assert data.features["verification_info"].dtype == "string"
    mixed = builtin_dataset(DataSourceConfig(builtin="reasoning", size=10,
                                             tasks=["countdown", "code"]), seed=0)
    assert Counter(mixed["task"]) == Counter({"countdown": 5, "code": 5})
    assert all((info is None) == (task != "code")
               for info, task in zip(mixed["verification_info"], mixed["task"], strict=True))
    default = DataSourceConfig(builtin="reasoning", size=8)
    assert "code" not in set(builtin_dataset(default, seed=0)["task"])  # math unless asked
    with pytest.raises(ValueError, match="unknown built-in task.*'poetry'"):
        DataSourceConfig(builtin="reasoning", tasks=["poetry"])
