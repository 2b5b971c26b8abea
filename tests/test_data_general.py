"""The shipped general prompts: enough of them, varied, well-formed, with a held-out split."""

from __future__ import annotations

import re
from collections import Counter

from r1pipe.data.general import categories, general_prompts, generate_general
from r1pipe.data.sources import DataSourceConfig
from r1pipe.data.tasks import normalise_prompt

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_at_least_300_distinct_prompts_with_stable_unique_ids() -> None:
    records = general_prompts()
    assert len(records) >= 300
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(rf"general-{r['category']}-\d{{3}}", r["id"]) for r in records)
    prompts = [normalise_prompt(r["prompt"]) for r in records]
    assert len(set(prompts)) == len(prompts)


def test_records_have_the_documented_schema() -> None:
    for r in general_prompts():
        assert set(r) == {"id", "prompt", "category", "reference", "language", "task_type"}
        assert r["task_type"] == "general" and r["language"] in ("en", "zh")
        assert isinstance(r["prompt"], str) and r["prompt"].strip() == r["prompt"] and r["prompt"]
        assert r["reference"] is None or (isinstance(r["reference"], str) and r["reference"])


def test_covers_the_categories_the_paper_lists() -> None:
    counts = Counter(r["category"] for r in general_prompts())
    for category in ("writing", "factual_qa", "translation", "summarisation", "rewriting",
                     "role_play", "self_cognition", "greeting", "open_qa"):
        assert counts[category] >= 15, category
    assert categories()[0] == "greeting"


def test_simple_and_self_cognition_prompts_are_there() -> None:
    by_prompt = {r["prompt"]: r for r in general_prompts()}
    assert by_prompt["hello"]["category"] == "greeting"
    assert by_prompt["Who are you?"]["category"] == "self_cognition"
    assert "r1pipe" in by_prompt["Who are you?"]["reference"]


def test_factual_translation_and_rewriting_prompts_have_references() -> None:
    for r in general_prompts():
        if r["category"] in ("factual_qa", "translation", "rewriting", "summarisation",
                             "self_cognition", "greeting"):
            assert r["reference"], r["id"]


def test_translation_goes_both_ways_with_references_in_the_target_language() -> None:
    to_chinese = to_english = 0
    for r in general_prompts():
        if r["category"] != "translation":
            continue
        if CJK.search(r["reference"]):
            to_chinese += 1
            assert r["language"] == "zh"
        else:
            to_english += 1
            assert r["language"] == "en" and CJK.search(r["prompt"])
    assert to_chinese >= 20 and to_english >= 20


def test_spot_check_reference_answers() -> None:
    refs = {r["prompt"]: r["reference"] for r in general_prompts()}
    assert refs["What is the capital of Australia?"] == "Canberra"
    assert refs["How many bones are in the adult human body?"] == "206"
    assert refs["《红楼梦》的作者是谁？"] == "曹雪芹"
    assert refs["Translate into Chinese: \"Knowledge is power.\""] == "知识就是力量。"


def test_held_out_split_is_disjoint_and_complete() -> None:
    train, test = generate_general("train"), generate_general("test")
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert len(train) + len(test) == len(general_prompts())
    assert 0.03 * len(train) < len(test) < 0.25 * len(train)
    assert len(generate_general("train", size=10)) == 10


def test_loads_as_a_builtin_source() -> None:
    from r1pipe.data.loading import load_source

    data = load_source(DataSourceConfig(builtin="general"))
    assert len(data) == len(generate_general("train"))
    assert {"id", "prompt", "answer", "task_type", "category", "reference"} <= set(
        data.column_names
    )
    assert all(a is None for a in data["answer"])
    assert set(data["task_type"]) == {"general"}
