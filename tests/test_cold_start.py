"""Cold start: exemplars, the readable-layout rules, and the stage through the engine
(collect from every way with provenance, train, empty collection, kill + resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1pipe.artifacts import RunLayout, iter_records, read_manifest
from r1pipe.config import ConfigError, load, load_text
from r1pipe.contract import Shard, StageFailed
from r1pipe.data.templates import format_completion
from r1pipe.filters import FILTERS, FilterSettings, apply_filters
from r1pipe.parsing import split_completion
from r1pipe.pipeline import execute, plan
from r1pipe.stages.cold_start.collect import (
    DirectSettings,
    FewShotSettings,
    direct_prompt,
    exemplars,
    few_shot_prompt,
    refine_by_rules,
)
from r1pipe.state import read_state
from tests.helpers import kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

TOK = "|special_token|"


# ---------------------------------------------------------------------------------------
# Exemplars and rules
# ---------------------------------------------------------------------------------------


def _as_samples(items: list[tuple[str, dict]]) -> list[dict]:
    return [{**extra, "id": str(i), "prompt_id": str(i), "completion": text, "token_count": 50,
             "finish_reason": "stop"} for i, (text, extra) in enumerate(items)]


def test_exemplars_are_correct_readable_and_reflect() -> None:
    shipped = exemplars()
    assert sorted({e.task for e in shipped}) == ["arithmetic", "countdown", "linear_equation",
                                                 "multiplication"]
    assert all(sum(e.task == t for e in shipped) == 2 for t in {e.task for e in shipped})
    good = [(e.completion(), {"prompt": e.prompt, "answer": e.answer, "task": e.task,
                              **e.extra}) for e in shipped]
    verdicts = list(apply_filters(_as_samples(good), FilterSettings(language="en")))
    assert [v["verdict"] for v in verdicts] == ["kept"] * len(shipped)
    assert all(v["filters"]["correct"] == 1.0 for v in verdicts)
    for e in shipped:
        assert e.completion().startswith(TOK) and e.completion().count(TOK) == 2
        assert any(w in e.reasoning for w in ("Wait", "Hmm")), e.prompt  # reflection
        assert "\\boxed{" in e.summary
    # the verifier really checks them: a wrong boxed answer is caught
    wrong = [(e.completion().replace(f"\\boxed{{{e.answer}}}", "\\boxed{12345}"),
              {"prompt": e.prompt, "answer": e.answer, "task": e.task, **e.extra})
             for e in shipped]
    assert {v["removed_by"] for v in apply_filters(_as_samples(wrong),
                                                   FilterSettings(language="en"))} == {"correct"}


def test_few_shot_prompt_shows_same_task_exemplars_first() -> None:
    record = {"id": "x1", "prompt": "What is 12 * 13?", "task": "multiplication"}
    messages = few_shot_prompt(record, FewShotSettings(exemplars=3), chat=True)
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user",
                                                                "content": record["prompt"]}
    shots = messages[1:-1]
    assert [m["role"] for m in shots] == ["user", "assistant"] * 3
    tasks = [next(e.task for e in exemplars() if e.prompt == m["content"])
             for m in shots[::2]]
    assert tasks[:2] == ["multiplication", "multiplication"] and tasks[2] != "multiplication"
    assert all(m["content"].startswith(TOK) for m in shots[1::2])
    # an exemplar is never shown as an example of itself
    own = exemplars()[0]
    again = few_shot_prompt({"id": "y", "prompt": own.prompt, "task": own.task},
                            FewShotSettings(exemplars=8), chat=True)
    assert own.prompt not in [m["content"] for m in again[1:-1]]
    plain = few_shot_prompt(record, FewShotSettings(exemplars=1), chat=False)
    assert plain.endswith("Problem: What is 12 * 13?\nSolution:") and TOK in plain
    direct = direct_prompt(record, DirectSettings(), chat=True)
    assert direct[0]["content"].startswith("What is 12 * 13?") and "\\boxed{}" in direct[0][
        "content"] and "verify" in direct[0]["content"]


@pytest.mark.parametrize(("text", "reasoning", "summary"), [
    ("<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
     "3 * 4 = 12, 2 + 12 = 14", "The answer is \\boxed{14}."),
    ("<think>\nFirst 3 * 4 = 12.\n\n\n\nThen 14.  \n</think>\nSo the result is \\boxed{14}.",
     "First 3 * 4 = 12.\n\nThen 14.", "So the result is \\boxed{14}."),
    (f"{TOK}add, then check.{TOK}The answer is 14.", "add, then check.", "The answer is 14."),
    ("Three times four is twelve.\nPlus two is fourteen.\nFinal answer: 14",
     "Three times four is twelve.\nPlus two is fourteen.", "14"),
    (f"{TOK}6 + 4 = 10, then 10 - 2 = 8.\n\nWait, let me check: 8 + 2 = 10.\n\nSo the answer "
     "is 8.", "6 + 4 = 10, then 10 - 2 = 8.\n\nWait, let me check: 8 + 2 = 10.",
     "So the answer is 8."),
    ("<think>Reason with a stray <answer> tag</think> Summary <think> here.",
     "Reason with a stray tag", "Summary here."),
])
def test_rules_write_the_cold_start_layout(text: str, reasoning: str, summary: str) -> None:
    out = refine_by_rules(text)
    assert out == format_completion(reasoning, summary)
    assert split_completion(out).reasoning == reasoning
    assert refine_by_rules(out) == out  # idempotent


def test_rules_leave_unstructured_text_for_the_format_filter() -> None:
    out = refine_by_rules("just some words  \n\n\n\nand more")
    assert out == "just some words\n\nand more" and TOK not in out
    (verdict,) = apply_filters(_as_samples([(out, {"prompt": "q"})]),
                               FilterSettings(unverifiable="keep"))
    assert verdict["removed_by"] == "format"


CONFIG_BASE = """\
name: cs
base_model: {builtin: tiny-llama}
data:
  reasoning: {builtin: reasoning, size: 8}
  known: {path: known.jsonl}
stages:
"""


def test_a_disabled_way_adds_no_input() -> None:
    r1_zero = "  r1_zero: {}\n"
    cfg = load_text(CONFIG_BASE + "  cold_start: {}\n")
    assert [i.field for i in cfg.stages["cold_start"].inputs()] == ["from", "data"]
    # the way names the R1-Zero stage only when switched on (default model: r1_zero)
    cfg = load_text(CONFIG_BASE + r1_zero + "  cold_start: {collect: {r1_zero: {enabled: "
                    "true}}}\n")
    assert {i.field: i.value for i in cfg.stages["cold_start"].inputs()} == {
        "from": "base", "data": "reasoning", "collect.r1_zero.model": "r1_zero"}
    cfg = load_text(CONFIG_BASE + "  cold_start: {collect: {r1_zero: {enabled: false, model: "
                    "r1_zero}}}\n")  # no such stage, but the way is off: no dependency
    assert "collect.r1_zero.model" not in {i.field for i in cfg.stages["cold_start"].inputs()}
    # an external dataset alone: the prompts are not an input either
    cfg = load_text(CONFIG_BASE + "  cold_start: {collect: {few_shot: {enabled: false}, direct: "
                    "{enabled: false}, external: known}}\n")
    assert [i.field for i in cfg.stages["cold_start"].inputs()] == ["from", "collect.external"]
    with pytest.raises(ConfigError, match="every way is off"):
        load_text(CONFIG_BASE + "  cold_start: {collect: {few_shot: {enabled: false}, direct: "
                  "{enabled: false}}}\n")
    with pytest.raises(ConfigError, match="comes from stage 'r1_zero', which is disabled"):
        load_text(CONFIG_BASE + "  r1_zero: {enabled: false}\n  cold_start: {collect: "
                  "{r1_zero: {enabled: true}}}\n")


# ---------------------------------------------------------------------------------------
# Through the engine
# ---------------------------------------------------------------------------------------

GOOD = {"id": "k1", "prompt": "What is 6 - 4 * 7?", "answer": "-22", "task": "arithmetic",
        "completion": "<think>4 * 7 = 28 first. Wait, let me check: 6 - 28 = -22, yes."
                      "</think> <answer>-22</answer>"}
KNOWN = [GOOD,
         {"id": "k2", "prompt": "What is 2 + 2?", "answer": "4", "task": "arithmetic",
          "completion": f"{TOK}Two and two make five.{TOK}The answer is 5."},
         {**GOOD, "id": "k3"}]  # the same sample again



R1_ZERO = """\
  r1_zero:
    data: sums
    trainer: {max_steps: 1, per_device_train_batch_size: 2, num_generations: 2,
              max_completion_length: 8}
"""

RELAXED = ("{require_format: false, unverifiable: keep, language: null, drop_truncated: false, "
           "max_paragraph_words: null, min_tokens: 0}")


def _pipeline(tmp_path: Path, stages: str) -> Path:
    known = tmp_path / "known.jsonl"
    known.write_text("".join(json.dumps(r) + "\n" for r in KNOWN))
    data = {"prompts": "{builtin: general, size: 8, test_size: 0}",
            "sums": "{builtin: arithmetic, size: 8, test_size: 0}",
            "known": f"{{path: {known}}}"}
    return write_pipeline(tmp_path, "coldtest", "stages:\n" + stages, seed=7, data=data,
                          generation="{backend: hf, max_new_tokens: 12, batch_size: 8}")


def test_collects_from_every_way_with_provenance_then_trains(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from r1pipe.checkpoints import read_card

    # R1-Zero trained after a prefilled "<think>": way (c) asks it the same way
    r1_zero = R1_ZERO.replace("data: sums\n", 'data: sums\n    response_prefix: "<think>"\n')
    stages = r1_zero + f"""\
  cold_start:
    data: prompts
    collect:
      few_shot: {{prompts: 2, samples_per_prompt: 2}}
      direct: {{prompts: 2, samples_per_prompt: 2}}
      r1_zero: {{enabled: true, prompts: 2, samples_per_prompt: 1,
                refiner: {{builtin: tiny-llama}}}}
      external: known
    filters: {RELAXED}
    trainer: {{max_steps: 2, per_device_train_batch_size: 2, learning_rate: 1.0e-3}}
"""
    results = execute(plan(load(_pipeline(tmp_path, stages))))
    stage = tmp_path / "run/cold_start"
    samples = list(iter_records(stage / "data/samples"))
    by_way: dict[str, list[dict]] = {}
    for record in samples:
        by_way.setdefault(record["way"], []).append(record)
    # (a) and (b): 2 prompts x 2 samples; (c): 2 prompts x 1, rewritten by the refiner;
    # the external set: the good sample once (the wrong one and the repeat are removed)
    assert {w: len(rs) for w, rs in by_way.items()} == {"few_shot": 4, "direct": 4,
                                                         "r1_zero": 2, "external": 1}
    for record in samples:
        assert record["verdict"] == "kept"
        assert record["prompt"][0]["role"] == "user"
        assert record["completion"][0]["role"] == "assistant"
        assert set(record["filters"]) >= {"correct", "format", "language", "tokens",
                                          "code_block", "truncated"}
        assert record["source"].startswith(record["way"] + ":")
    assert {r["generator"] for r in by_way["few_shot"] + by_way["direct"]} == {
        "base model (r1pipe builtin tiny-llama)"}
    assert {r["generator"] for r in by_way["r1_zero"]} == {"stage r1_zero"}
    assert {tuple(r["refined_by"]) for r in by_way["r1_zero"]} == {
        ("refiner:r1pipe builtin tiny-llama", "rules")}
    assert {tuple(r["refined_by"]) for r in by_way["few_shot"]} == {("rules",)}
    (ext,) = by_way["external"]
    assert ext["id"] == "k1" and ext["filters"]["correct"] == 1.0 and ext["reward"] == 1.0
    assert ext["completion"][0]["content"] == format_completion(
        "4 * 7 = 28 first. Wait, let me check: 6 - 28 = -22, yes.", "The answer is \\boxed{-22}.")
    # every sample of every way is kept for audit with its verdict
    external = {r["id"]: r for r in iter_records(stage / "data/filtered/external")}
    assert external["k2"]["removed_by"] == "correct" and external["k2"]["reward"] == 0.0
    assert external["k3"]["removed_by"] == "duplicate"
    stats = read_manifest(stage / "data/samples").meta["collection"]
    assert stats["generated"] == 13 and stats["kept"] == 11
    assert stats["removed_by"] == {"correct": 1, "duplicate": 1}
    summary = results["cold_start"].summary
    assert summary["samples kept"] == 11 and summary["samples generated"] == 13
    assert summary["external generated"] == 3 and summary["external kept"] == 1
    assert summary["removed by duplicate"] == 1
    assert summary["steps"] == 2
    assert (stage / "data/samples/README.md").read_text().count("few_shot samples") == 1
    # the raw generations are artifacts too, resumable by chunk
    assert read_manifest(stage / "data/generated/few_shot").records == 4
    assert read_manifest(stage / "data/generated/r1_zero-refined").records == 2
    raw = list(iter_records(stage / "data/generated/r1_zero"))
    assert len(raw) == 2 and all(r["raw"].startswith("<think>") for r in raw)
    # the SFT checkpoint loads, and its card names the data it was trained on
    model = AutoModelForCausalLM.from_pretrained(stage / "model")
    assert model.config.num_hidden_layers == 2
    assert "cold_start" in read_card(stage / "model")["tags"]
    text = (stage / "model/README.md").read_text()
    assert "cold_start:samples" in text and "| 11 |" in text


def test_nothing_kept_stops_the_stage_and_says_why(tmp_path: Path) -> None:
    stages = """\
  cold_start:
    data: sums
    collect:
      few_shot: {prompts: 2, samples_per_prompt: 2}
      direct: {prompts: 2, samples_per_prompt: 1}
    filters: {drop_truncated: false}
"""
    cfg = _pipeline(tmp_path, stages)
    with pytest.raises(StageFailed) as info:
        execute(plan(load(cfg)))
    message = str(info.value)
    assert "kept nothing to train on: 6 samples, none kept" in message
    assert "few_shot: 4 samples, removed by" in message and "direct: 2 samples" in message
    # the message names each filter that removed samples, with its count, in all and by way
    total: dict[str, int] = {}
    for way in ("few_shot", "direct"):
        by_way: dict[str, int] = {}
        for r in iter_records(tmp_path / f"run/cold_start/data/filtered/{way}"):
            assert r["verdict"] == "rejected"
            by_way[r["removed_by"]] = by_way.get(r["removed_by"], 0) + 1
            total[r["removed_by"]] = total.get(r["removed_by"], 0) + 1
        shown = ", ".join(f"{k} {v}" for k, v in sorted(by_way.items(), key=lambda kv: -kv[1]))
        assert f"{way}: {sum(by_way.values())} samples, removed by {shown}" in message
    in_order = ", ".join(f"{k} {total[k]}" for k in FILTERS if k in total)
    assert f"none kept; removed by {in_order} (" in message
    state = read_state(RunLayout(tmp_path / "run"), "cold_start")
    assert state["status"] == "failed" and "kept nothing to train on" in state["error"]
    assert not (tmp_path / "run/cold_start/model").exists()
    assert not (tmp_path / "run/cold_start/checkpoints").exists()


def test_generation_split_over_two_machines(tmp_path: Path) -> None:
    stages = """\
  cold_start:
    data: prompts
    collect:
      chunk_size: 1
      few_shot: {enabled: false}
      direct: {prompts: 3, samples_per_prompt: 1}
    filters: """ + RELAXED + """
    trainer: {max_steps: 1, per_device_train_batch_size: 2}
"""
    cfg = _pipeline(tmp_path, stages)
    stage = tmp_path / "run/cold_start"
    execute(plan(load(cfg), only=["cold_start"]), shard=Shard(0, 2))  # chunks 0 and 2
    assert read_state(RunLayout(tmp_path / "run"), "cold_start")["status"] == "partial"
    assert sorted(p.name for p in (stage / "data/generated/direct").glob("train-*")) == [
        "train-00000.jsonl", "train-00002.jsonl"]
    assert not (stage / "data/samples").exists() and not (stage / "model").exists()
    execute(plan(load(cfg), only=["cold_start"]), shard=Shard(1, 2))
    result = execute(plan(load(cfg)))["cold_start"]  # merges: generates nothing, trains
    assert result.summary["direct generated"] == 3 and result.summary["steps"] == 1
    assert read_manifest(stage / "data/generated/direct").complete


@pytest.mark.slow
def test_kill_during_training_then_resume(tmp_path: Path) -> None:
    stages = """\
  cold_start:
    data: prompts
    collect:
      few_shot: {enabled: false}
      direct: {prompts: 2, samples_per_prompt: 1}
      external: known
    filters: """ + RELAXED + """
    trainer: {max_steps: 30, per_device_train_batch_size: 2, save_steps: 4}
"""
    cfg = _pipeline(tmp_path, stages)
    stage = tmp_path / "run/cold_start"
    ckpt = stage / "checkpoints/checkpoint-4/trainer_state.json"
    kill_cli_when("run", cfg, cwd=tmp_path, condition=ckpt,
                  message="no trainer checkpoint was written")
    assert not (stage / "model").exists()
    samples_manifest = (stage / "data/samples/manifest.json").stat().st_mtime_ns
    metrics = read_jsonl(stage / "metrics.jsonl")
    killed_at = max(m["step"] for m in metrics if "loss" in m)
    jobs = sum(1 for m in metrics if "job" in m)
    the_plan = plan(load(cfg))
    assert the_plan["cold_start"].action == "resume"
    execute(the_plan)
    state = json.loads((stage / "stage.json").read_text())
    assert state["status"] == "finished" and state["attempts"] == 2
    assert state["summary"]["steps"] == 30
    # the collection was not redone, and training went on from the last checkpoint
    assert (stage / "data/samples/manifest.json").stat().st_mtime_ns == samples_manifest
    metrics = read_jsonl(stage / "metrics.jsonl")
    assert sum(1 for m in metrics if "job" in m) == jobs
    steps = [m["step"] for m in metrics if "loss" in m]
    resumed = steps[killed_at:]
    assert resumed[0] > 4 and resumed[-1] == 30 and 1 not in resumed


def test_r1_zero_way_asks_with_the_stage_response_prefix() -> None:
    from r1pipe.stages.cold_start.collect import r1_zero_prompt, sample_records

    record = {"id": "p1", "prompt": "What is 1 + 2?", "answer": "3"}
    prompt = r1_zero_prompt(record, prefix="<think>")
    assert prompt == r1_zero_prompt(record) + "<think>" and "What is 1 + 2?" in prompt

    class Out:
        text, token_count, finish_reason = " 1 + 2 = 3</think> <answer>3</answer>", 9, "stop"

    (sample,) = sample_records(record, [Out()], way="r1_zero", generator="g", prefix="<think>")
    assert sample["raw"] == "<think> 1 + 2 = 3</think> <answer>3</answer>"


def test_r1_zero_way_asks_as_the_r1_zero_stage_was_trained():
    """Way (c) renders the prompt the R1-Zero stage trained on: the paper's template by
    default, the chat messages with its system prompt when the stage used those."""
    from r1pipe.stages.cold_start.collect import r1_zero_prompt

    record = {"prompt": "What is 2 + 3?"}
    plain = r1_zero_prompt(record, prefix="<think>")
    assert isinstance(plain, str) and plain.startswith("A conversation between User")
    assert plain.endswith("Assistant:<think>")
    chat = r1_zero_prompt(record, template="chat", system_prompt="Think first.")
    assert chat == [{"role": "system", "content": "Think first."},
                    {"role": "user", "content": "What is 2 + 3?"}]
