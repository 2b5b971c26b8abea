"""A stage's data input to rendered, length-checked prompts (`r1pipe.data.prepare`)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from r1pipe.data.loading import DataSourceError
from r1pipe.data.prepare import load_input, prompt_dataset
from r1pipe.data.sources import parse_sources

PIPELINE = SimpleNamespace(
    seed=3,
    data=parse_sources({"reasoning": {"builtin": "reasoning", "size": 12},
                        "general": {"builtin": "general", "size": 10}}),
)


@pytest.fixture(scope="module")
def tokenizer():
    from r1pipe.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


def _artifact(folder: Path, n: int, finish: bool = True) -> Path:
    from r1pipe.artifacts import ShardedJsonlWriter

    writer = ShardedJsonlWriter(folder)
    writer.write_records(
        [{"id": f"s-{i}", "prompt": f"What is {i} * 2?", "answer": str(2 * i),
          "completion": "<think>double</think> <answer>0</answer>"} for i in range(n)],
        shard_size=4,
    )
    if finish:
        writer.finalize()
    return folder


def test_inputs_by_source_name_artifact_folder_and_path(tmp_path: Path) -> None:
    data = load_input(PIPELINE, "reasoning")
    assert len(data) == 12 and data[0]["id"] == "arithmetic-d1-train-000000"
    artifact = load_input(PIPELINE, str(_artifact(tmp_path / "kept", 10)))
    assert sorted(artifact["id"]) == sorted(f"s-{i}" for i in range(10))
    assert "completion" in artifact.column_names
    file = tmp_path / "qa.jsonl"
    file.write_text(json.dumps({"prompt": "hello"}) + "\n")
    assert load_input(PIPELINE, str(file))[0]["task_type"] == "general"
    with pytest.raises(DataSourceError, match="neither a source under `data:`.*reasoning"):
        load_input(PIPELINE, "resoning")


def test_an_unfinished_artifact_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="not complete"):
        load_input(PIPELINE, str(_artifact(tmp_path / "half", 5, finish=False)))


def test_prompt_dataset_renders_and_limits(tokenizer) -> None:
    settings = SimpleNamespace(template="r1_zero", system_prompt=None, max_prompt_tokens=1000,
                               prompt_length_mode="drop")
    data, report = prompt_dataset(PIPELINE, "reasoning", settings, tokenizer)
    assert report.kept == 12 and report.dropped == 0
    assert data[0]["prompt"].startswith("A conversation between User and Assistant.")
    assert data[0]["question"] == load_input(PIPELINE, "reasoning")[0]["prompt"]
    settings.max_prompt_tokens = 10
    data, report = prompt_dataset(PIPELINE, "reasoning", settings, tokenizer)
    assert len(data) == 0 and report.dropped == 12


def test_chat_prompts_stay_messages_for_trl(tokenizer) -> None:
    from r1pipe.config import PromptSettings

    settings = PromptSettings(template="chat", system_prompt="Be kind.")
    data, report = prompt_dataset(PIPELINE, "general", settings, tokenizer)
    assert report.total == 10
    assert data[0]["prompt"] == [{"role": "system", "content": "Be kind."},
                                 {"role": "user", "content": data[0]["question"]}]


def test_chat_template_on_a_base_tokenizer_is_a_clear_error(tokenizer) -> None:
    import copy

    base = copy.deepcopy(tokenizer)
    base.chat_template = None
    settings = SimpleNamespace(template="chat", system_prompt=None, max_prompt_tokens=64,
                               prompt_length_mode="drop")
    with pytest.raises(ValueError, match="no chat template; use 'r1_zero'"):
        prompt_dataset(PIPELINE, "reasoning", settings, base)
