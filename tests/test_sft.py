"""The shared SFT routine: data shapes, the completion-only loss mask, the stop token."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from r1pipe.artifacts import RunLayout, ShardedJsonlWriter
from r1pipe.config import SFTStageConfig, load_text
from r1pipe.contract import ResumeInfo, StageContext
from r1pipe.data.sft import SFTDataError, matches, sft_dataset, sft_example
from tests.helpers import pipeline_header

COMPLETION = "|special_token|2 + 3 = 5, and 5 * 4 = 20.|special_token|The answer is 20."


def _ctx(tmp_path: Path, **trainer: object) -> StageContext:
    pipeline = load_text(pipeline_header("sfttest", tmp_path / "run"))
    config = SFTStageConfig(trainer={"max_steps": 1, "per_device_train_batch_size": 2,
                                     **trainer})
    return StageContext("sft", config, pipeline, RunLayout(tmp_path / "run"), {},
                        ResumeInfo(), "fp")


def _records() -> list[dict]:
    return [
        {"id": "a", "prompt": "What is (2 + 3) * 4?", "completion": COMPLETION,
         "source": "reasoning"},
        {"id": "b", "messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Say hello."},
                                 {"role": "assistant", "content": "Hello!"}],
         "source": "general"},
        {"id": "c", "prompt": [{"role": "user", "content": "What is 7 + 7?"}],
         "completion": [{"role": "assistant", "content": "|special_token|7 + 7 = 14"
                         "|special_token|14"}], "source": "reasoning", "verdict": "kept"},
        {"id": "d", "prompt": "What is 1 + 1?", "completion": "3", "verdict": "rejected",
         "source": "reasoning"},
    ]


def test_every_record_shape_becomes_prompt_completion() -> None:
    a, b, c, _ = _records()
    assert sft_example(a) == {"prompt": [{"role": "user", "content": a["prompt"]}],
                              "completion": [{"role": "assistant", "content": COMPLETION}]}
    ex = sft_example(b)
    assert [m["role"] for m in ex["prompt"]] == ["system", "user"]
    assert ex["completion"] == [{"role": "assistant", "content": "Hello!"}]
    assert sft_example(c)["prompt"] == c["prompt"]
    plain = sft_example(a, chat=False)
    assert plain == {"prompt": a["prompt"] + "\n", "completion": COMPLETION}
    with pytest.raises(SFTDataError, match="'b'.*chat template"):
        sft_example(b, chat=False)
    with pytest.raises(SFTDataError, match="'x'.*user turn followed by an assistant"):
        sft_example({"id": "x", "messages": [{"role": "user", "content": "hi"}]})
    with pytest.raises(SFTDataError, match="completion is empty"):
        sft_example({"id": "y", "prompt": "hi", "completion": "  "})


def test_where_filter_and_rejected_records() -> None:
    a, _, _, d = _records()
    assert matches(a, {"source": "reasoning"}) and matches(a, {"source": ["general", "reasoning"]})
    assert not matches(a, {"source": "general"})
    assert not matches(d, {})  # the audit trail of a filter step is never trained on


def test_dataset_from_artifact_streams_and_filters(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(), shard_size=2)
    writer.finalize()
    data = sft_dataset(str(tmp_path / "art"), chat=True, cache_dir=tmp_path / "cache")
    assert data.num_rows == 3 and data.column_names == ["prompt", "completion"]
    only = sft_dataset(str(tmp_path / "art"), chat=True, cache_dir=tmp_path / "cache",
                       where={"source": "reasoning"})
    assert [r["completion"][0]["content"] for r in only] == [
        COMPLETION, "|special_token|7 + 7 = 14|special_token|14"]
    with pytest.raises(SFTDataError, match=r"no records matching \{'source': 'nope'\}"):
        sft_dataset(str(tmp_path / "art"), chat=True, cache_dir=tmp_path / "cache",
                    where={"source": "nope"})


def _kept_and_masked(trainer, tokenizer) -> list[tuple[str, str]]:
    out = []
    for ex in trainer.train_dataset:
        ids, labels = ex["input_ids"], ex["labels"]
        trained = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != -100])
        masked = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab == -100])
        # the mask is one prompt block then one completion block, never interleaved
        flips = sum(1 for x, y in zip(labels, labels[1:], strict=False)
                    if (x == -100) != (y == -100))
        assert flips == 1
        out.append((masked, trained))
    return out


def test_loss_mask_covers_the_completion_only(tmp_path: Path, tiny_model_dir: Path) -> None:
    from r1pipe.train import sft_trainer

    a, b, _, _ = _records()
    data = sft_dataset_from([a, b], tmp_path, chat=True)
    trainer, tokenizer = sft_trainer(_ctx(tmp_path), model=str(tiny_model_dir),
                                     train_dataset=data)
    (p1, c1), (p2, c2) = _kept_and_masked(trainer, tokenizer)
    # what is trained: the assistant's answer and the end-of-turn token that stops it
    assert c1 == COMPLETION + "<|im_end|>\n"
    assert c2 == "Hello!<|im_end|>\n"
    # what is not: the templated prompt, up to and including the assistant header
    assert p1 == "<|im_start|>user\nWhat is (2 + 3) * 4?<|im_end|>\n<|im_start|>assistant\n"
    assert p2 == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nSay hello."
                  "<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"


def sft_dataset_from(records: list[dict], tmp_path: Path, *, chat: bool):
    writer = ShardedJsonlWriter(tmp_path / f"data-{chat}")
    writer.write_records(records)
    writer.finalize()
    return sft_dataset(str(tmp_path / f"data-{chat}"), chat=chat, cache_dir=tmp_path / "cache")


def test_plain_text_model_trains_completion_and_eos(tmp_path: Path, tiny_model_dir: Path) -> None:
    from r1pipe.train import has_chat_template, sft_trainer

    model = tmp_path / "no-template"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").unlink()
    assert not has_chat_template(str(model))
    data = sft_dataset_from([_records()[0]], tmp_path, chat=False)
    trainer, tokenizer = sft_trainer(_ctx(tmp_path), model=str(model), train_dataset=data)
    ((prompt, trained),) = _kept_and_masked(trainer, tokenizer)
    assert prompt == "What is (2 + 3) * 4?\n"
    assert trained == COMPLETION + "<|im_end|>"


def test_a_template_that_never_trains_the_stop_token_is_refused(tmp_path: Path,
                                                                 tiny_model_dir: Path) -> None:
    from r1pipe.train import sft_trainer

    model = tmp_path / "bad-template"
    shutil.copytree(tiny_model_dir, model)
    # the assistant's turn ends without <|im_end|>: a model trained on it never stops
    (model / "chat_template.jinja").write_text(
        "{%- for m in messages %}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] }}"
        "{%- if m['role'] != 'assistant' %}{{- '<|im_end|>\\n' }}{%- else %}{{- '\\n' }}"
        "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}")
    data = sft_dataset_from([_records()[0]], tmp_path, chat=True)
    with pytest.raises(ValueError, match=r"token \('<\|im_end\|>'\), so the model would never learn to stop"):
        sft_trainer(_ctx(tmp_path), model=str(model), train_dataset=data)


def test_packing_keeps_the_completion_mask(tmp_path: Path, tiny_model_dir: Path) -> None:
    from r1pipe.train import sft_trainer

    records = [{"id": str(i), "prompt": f"What is {i} + 3?",
                "completion": f"|special_token|{i} + 3 = {i + 3}|special_token|{i + 3}"}
               for i in range(6)]
    data = sft_dataset_from(records, tmp_path, chat=True)
    trainer, tokenizer = sft_trainer(_ctx(tmp_path, packing=True, max_length=96),
                                     model=str(tiny_model_dir), train_dataset=data)
    assert len(trainer.train_dataset) < len(records)  # several examples per sequence
    trained = "".join(tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"],
                                                            strict=True) if lab != -100])
                      for ex in trainer.train_dataset)
    for r in records:
        assert r["completion"] + "<|im_end|>" in trained
        assert r["prompt"] not in trained
    trainer.train()
    assert trainer.state.global_step == 1
