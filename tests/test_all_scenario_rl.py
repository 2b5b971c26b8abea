"""All-scenario RL through the engine on the tiny model: reward-model training, routing by
task type, the saved policy and reward model, and the config that drives them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, load
from r1pipe.pipeline import execute, plan
from r1pipe.stages.all_scenario_rl.heldout import (
    HeldoutAccuracy,
    is_heldout,
    read_accuracy,
    score_pairs,
    write_accuracy,
)
from r1pipe.stages.all_scenario_rl.reward_model import (
    PairStats,
    pairs_from_verdicts,
    with_reward_model,
)
from tests.helpers import kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

DATA = {
    "reasoning": "{builtin: reasoning, size: 16, test_size: 4, difficulty: 1}",
    "general": "{builtin: general, size: 16, test_size: 4}",
    "mixed": "{mixture: [{source: reasoning, weight: 0.5}, {source: general, weight: 0.5}]}",
}

STAGES = """\
stages:
{upstream}  all_scenario_rl:
    from: base
    data: mixed
{reward_model}    trainer:
      max_steps: {steps}
      per_device_train_batch_size: 8
      num_generations: 4
      max_completion_length: 12
      save_steps: 2
      learning_rate: 1.0e-4
"""

TRAIN_FROM_VERDICTS = """\
    reward_model:
      train:
        data: verdicts:filtered
        trainer: {max_steps: 3, per_device_train_batch_size: 4, learning_rate: 1.0e-3}
"""


def _pipeline(tmp_path: Path, *, steps: int = 4, reward_model: str = TRAIN_FROM_VERDICTS,
              upstream: str = "  verdicts: {prompts: 6}\n",
              data: dict[str, str] | None = None) -> Path:
    body = STAGES.format(steps=steps, reward_model=reward_model, upstream=upstream)
    return write_pipeline(tmp_path, "astest", body, seed=3,
                          stage_modules=["tests.stage_verdicts"], data={**DATA, **(data or {})})


def _metrics(stage_dir: Path) -> list[dict]:
    return read_jsonl(stage_dir / "metrics.jsonl")


def _finite(values: list) -> list[float]:
    return [v for v in values if isinstance(v, float) and not math.isnan(v)]


# ---------------------------------------------------------------------------------------
# Preference pairs
# ---------------------------------------------------------------------------------------


def test_pairs_pair_kept_with_rejected_of_the_same_prompt() -> None:
    records = [
        {"prompt_id": "a", "prompt": "A?", "completion": "a-good-1", "verdict": "kept"},
        {"prompt_id": "b", "prompt": "B?", "completion": "b-bad-1", "verdict": "rejected"},
        {"prompt_id": "a", "prompt": "A?", "completion": "a-good-2", "verdict": "kept"},
        {"prompt_id": "a", "prompt": "A?", "completion": "a-bad-1", "verdict": "rejected"},
        {"prompt_id": "c", "prompt": "C?", "completion": "c-good", "verdict": "kept"},  # alone
        {"prompt_id": "b", "prompt": "B?", "completion": "b-good-1", "verdict": "kept"},
        {"prompt_id": "a", "prompt": "A?", "completion": "a-bad-2", "verdict": "rejected"},
        {"prompt_id": "a", "prompt": "A?", "completion": "a-bad-3", "verdict": "rejected"},
        {"prompt_id": "b", "prompt": "B?", "completion": "b-?", "verdict": "unsure"},
    ]
    stats = PairStats()
    pairs = list(pairs_from_verdicts(records, stats, max_pairs_per_prompt=4))
    assert [(p["prompt"], p["chosen"], p["rejected"]) for p in pairs] == [
        ("A?", "a-good-1", "a-bad-1"), ("B?", "b-good-1", "b-bad-1"),
        ("A?", "a-good-2", "a-bad-2")]
    assert len({p["id"] for p in pairs}) == 3
    assert stats.records == 9 and stats.pairs == 3 and stats.prompts_paired == 2
    assert stats.skipped == {"verdict 'unsure'": 1}
    capped = list(pairs_from_verdicts(records, PairStats(), max_pairs_per_prompt=1))
    assert [p["chosen"] for p in capped] == ["a-good-1", "b-good-1"]


def test_rewards_get_the_stage_reward_model_unless_they_name_one() -> None:
    rewards = {"accuracy": 1.0, "reward_model": 0.5,
               "helpful": {"reward": "reward_model", "part": "summary"},
               "own": {"reward": "reward_model", "model": "org/rm"},
               "judged": {"reward": "judge", "model": "m"}}
    filled = with_reward_model(rewards, "/rm")
    assert filled["reward_model"] == {"weight": 0.5, "model": "/rm"}
    assert filled["helpful"] == {"reward": "reward_model", "part": "summary", "model": "/rm"}
    assert filled["own"]["model"] == "org/rm" and filled["judged"] == rewards["judged"]
    assert filled["accuracy"] == 1.0 and "model" not in rewards["helpful"]


def test_heldout_split_is_deterministic_disjoint_and_by_prompt() -> None:
    prompts = [f"What is {i} + {i}?" for i in range(400)]
    held = [p for p in prompts if is_heldout(p, 0.2)]
    assert held == [p for p in prompts if is_heldout(p, 0.2)]  # a pure function
    assert 40 < len(held) < 120
    # the same prompt written differently, or as chat messages, stays on its side
    assert all(is_heldout(p.upper() + "  ", 0.2) for p in held)
    assert all(is_heldout([{"role": "user", "content": p}], 0.2) for p in held)
    assert not any(is_heldout(p, 0.0) for p in prompts)
    # pairs: every pair of a held-out prompt is held out, none of the others is
    pairs = [{"prompt": p, "chosen": "a", "rejected": "b"} for p in prompts for _ in range(2)]
    trained = [r for r in pairs if not is_heldout(r["prompt"], 0.2)]
    heldout = [r for r in pairs if is_heldout(r["prompt"], 0.2)]
    assert len(trained) + len(heldout) == len(pairs)
    assert not {r["prompt"] for r in trained} & {r["prompt"] for r in heldout}


def test_heldout_accuracy_file_round_trip(tmp_path: Path) -> None:
    result = HeldoutAccuracy(pairs=8, correct=6, fraction=0.2)
    assert result.summary() == {"reward-model held-out pairs": 8,
                                "reward-model held-out accuracy": 0.75}
    write_accuracy(tmp_path, result)
    assert read_accuracy(tmp_path, 0.2) == result
    assert read_accuracy(tmp_path, 0.3) is None  # measured on another split
    assert read_accuracy(tmp_path / "none", 0.2) is None
    assert HeldoutAccuracy(0, 0, 0.2).summary()["reward-model held-out accuracy"] is None


def test_general_pairs_source_train_prompts_only_and_deterministic() -> None:
    from r1pipe.data.general import REFUSALS, generate_general
    from r1pipe.data.loading import load_source
    from r1pipe.data.sources import DataSourceConfig

    pairs = load_source(DataSourceConfig(builtin="general", pairs=True), seed=5)
    assert {"id", "prompt", "chosen", "rejected", "task_type", "rejection"} <= set(
        pairs.column_names)
    train = {r["prompt"]: r for r in generate_general("train")}
    test = {r["prompt"] for r in generate_general("test")}
    assert len(pairs) == sum(1 for r in train.values() if r["reference"]) > 100
    assert all(r["prompt"] in train and r["prompt"] not in test for r in pairs)
    assert all(r["chosen"] == train[r["prompt"]]["reference"] != r["rejected"] for r in pairs)
    kinds = {k: [r for r in pairs if r["rejection"] == k] for k in
             ("off_topic", "truncated", "refusal")}
    assert all(len(v) > len(pairs) // 5 for v in kinds.values())  # mixed in about equal shares
    assert all(r["rejected"] in REFUSALS for r in kinds["refusal"])
    assert all(r["chosen"].startswith(r["rejected"]) for r in kinds["truncated"])
    references = {r["reference"]: r["category"] for r in train.values() if r["reference"]}
    assert all(references[r["rejected"]] != train[r["prompt"]]["category"]
               for r in kinds["off_topic"])  # another category's answer, from train prompts
    again = load_source(DataSourceConfig(builtin="general", pairs=True), seed=5)
    other = load_source(DataSourceConfig(builtin="general", pairs=True), seed=6)
    assert again.to_list() == pairs.to_list() and other.to_list() != pairs.to_list()
    assert len(load_source(DataSourceConfig(builtin="general", pairs=True, size=7))) == 7


@pytest.mark.parametrize(("spec", "message"), [
    ("{builtin: arithmetic, pairs: true}", "`pairs` only applies to `builtin: general`"),
    ("{path: prefs.jsonl, pairs: true}", "pairs do not apply to a `path:` source"),
    ("{builtin: general, pairs: sometimes}", "valid boolean"),
], ids=["other-builtin", "path", "not-a-bool"])
def test_general_pairs_config_errors_name_the_key(tmp_path: Path, spec: str,
                                                  message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(_pipeline(tmp_path, data={"general_pairs": spec}))
    assert message in info.value.message, info.value.one_line()
    assert "general_pairs" in info.value.one_line()


def test_train_data_takes_a_list_of_inputs() -> None:
    from pydantic import ValidationError

    from r1pipe.stages.all_scenario_rl import Config

    cfg = Config.model_validate({"reward_model": {
        "train": {"data": ["reject_sample:filtered", "general_pairs"]}}})
    assert {(i.field, i.value) for i in cfg.inputs()} >= {
        ("reward_model.train.data.0", "reject_sample:filtered"),
        ("reward_model.train.data.1", "general_pairs")}
    assert cfg.reward_model.train.inputs_of_data() == [
        ("reward_model.train.data.0", "reject_sample:filtered"),
        ("reward_model.train.data.1", "general_pairs")]
    for bad, message in (([], "name at least one input"), (["a", "a"], "named twice")):
        with pytest.raises(ValidationError, match=message):
            Config.model_validate({"reward_model": {"train": {"data": bad}}})


# ---------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------


def test_default_config_trains_a_reward_model_on_reject_sample_verdicts() -> None:
    from r1pipe.stages.all_scenario_rl import Config

    cfg = Config.model_validate({})
    assert cfg.reward_model is not None and cfg.reward_model.train is not None
    assert {(i.field, i.value) for i in cfg.inputs()} == {
        ("from", "reject_sample"), ("data", "all_scenario"),
        ("reward_model.train.data", "reject_sample:filtered")}
    assert cfg.rewards["helpfulness"]["part"] == "summary"
    assert cfg.rewards["harmlessness"]["part"] == "full"
    # only judges: no reward model to train, so no dependency on its data
    judged = Config.model_validate({"rewards": {
        "accuracy": 1.0, "helpfulness": {"reward": "judge", "model": "m"}}})
    assert judged.reward_model is None
    assert {i.field for i in judged.inputs()} == {"from", "data"}
    # what the run dir's pipeline.yaml holds reads back to the same section
    written = cfg.model_dump(mode="json", by_alias=True, exclude_unset=True)
    assert Config.model_validate(written) == cfg
    init = Config.model_validate({"reward_model": {"train": {"init": "base"}}})
    assert ("reward_model.train.init", "base") in {(i.field, i.value) for i in init.inputs()}


@pytest.mark.parametrize(("section", "message"), [
    ("    reward_model: {train: {data: verdicts:filtered, trainer: {learning_rat: 0.1}}}\n",
     "'learning_rat' is not a field of TRL's RewardConfig; did you mean 'learning_rate'?"),
    ("    reward_model: {train: {data: verdicts:filtered, trainer: {max_steps: many}}}\n",
     "'max_steps' must be int for TRL's RewardConfig"),
    ("    reward_model: {model: org/rm, train: {data: verdicts:filtered}}\n",
     "give either `model`"),
    ("    reward_model: {train: {data: nowhere:filtered}}\n",
     "names stage 'nowhere', which is not in `stages:`"),
    ("    rewards: {accuracy: 1.0}\n    reward_model: {model: org/rm}\n",
     "would go unused"),
], ids=["unknown-trainer-field", "trainer-field-type", "model-and-train", "unknown-stage",
        "unused"])
def test_config_errors_name_the_reward_model_key(tmp_path: Path, section: str,
                                                  message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(_pipeline(tmp_path, reward_model=section))
    assert message in info.value.message, info.value.one_line()
    assert info.value.line is not None and info.value.line > 10


# ---------------------------------------------------------------------------------------
# Through the engine
# ---------------------------------------------------------------------------------------


def test_trains_reward_model_then_policy_with_routed_rewards(tmp_path: Path) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from r1pipe.artifacts import read_manifest
    from r1pipe.checkpoints import read_card
    from r1pipe.rewards import build_reward_funcs, score

    the_plan = plan(load(_pipeline(tmp_path)))
    assert [s.name for s in the_plan.stages] == ["verdicts", "all_scenario_rl"]
    results = execute(the_plan)
    stage = tmp_path / "run/all_scenario_rl"
    summary = results["all_scenario_rl"].summary
    assert summary["steps"] == 4 and summary["reward-model steps"] == 3
    # 6 prompts x 2 kept x 2 rejected -> 2 disjoint pairs each
    assert summary["reward-model pairs"] == 12 == read_manifest(stage / "data/preferences").records

    # the reward model: a Hub-compatible sequence classifier with its card
    rm_dir = stage / "reward_model"
    rm = AutoModelForSequenceClassification.from_pretrained(rm_dir)
    assert rm.config.num_labels == 1
    rm_card = read_card(rm_dir)
    assert rm_card["pipeline_tag"] == "text-classification"
    assert {"all_scenario_rl", "reward-model"} <= set(rm_card["tags"])
    assert "AutoModelForSequenceClassification" in (rm_dir / "README.md").read_text()

    # the policy: loads, and its card names the stage and the model it started from
    model_dir = stage / "model"
    AutoModelForCausalLM.from_pretrained(model_dir)
    text = (model_dir / "README.md").read_text()
    assert "all_scenario_rl" in read_card(model_dir)["tags"]
    parent = json.loads((stage / "stage.json").read_text())["inputs"]["from"]
    assert f"| Parent model | {parent} |" in text and "all_scenario_rl" in text

    logged = _metrics(stage)
    rm_lines = [m for m in logged if "reward_model/loss" in m]
    assert [m["reward_model/step"] for m in rm_lines] == [1, 2, 3]
    steps = [m for m in logged if "rewards/helpfulness/mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    # routing: rule rewards score reasoning prompts, the reward model general ones; each
    # step has 2 prompts, so over 4 steps both kinds are scored
    for key in ("rewards/accuracy/mean", "rewards/format/mean", "rewards/helpfulness/mean",
                "rewards/harmlessness/mean"):
        assert _finite([m[key] for m in steps]), key

    # the logged helpfulness of general samples is the trained reward model's score
    rows = load_dataset("parquet", data_dir=str(stage / "checkpoints/completions"),
                        split="train")
    general = [r for r in rows if r["helpfulness"] is not None]
    reasoning = [r for r in rows if r["helpfulness"] is None]
    assert general and reasoning
    assert all(r["accuracy"] is None for r in general)
    assert all(r["accuracy"] is not None for r in reasoning)
    spec = {"helpfulness": {"reward": "reward_model", "model": str(rm_dir), "part": "summary",
                            "task_types": "all"}}
    again = score(build_reward_funcs(spec), [r["prompt"] for r in general],
                  [r["completion"] for r in general])
    assert again.per_reward["helpfulness"] == pytest.approx(
        [r["helpfulness"] for r in general], abs=1e-4)


def test_reward_model_from_a_preference_source(tmp_path: Path) -> None:
    from r1pipe.artifacts import iter_records

    prefs = tmp_path / "prefs.jsonl"
    with prefs.open("w") as fh:
        for i in range(6):
            fh.write(json.dumps({"prompt": f"Say hello to {i}.", "chosen": f"Hello, {i}!",
                                 "rejected": "No."}) + "\n")
    data = {"prefs": f"{{path: {prefs}}}"}
    section = ("    reward_model:\n      train:\n        data: prefs\n"
               "        trainer: {max_steps: 2, per_device_train_batch_size: 3}\n")
    results = execute(plan(load(_pipeline(tmp_path, steps=1, reward_model=section, upstream="",
                                          data=data))))
    stage = tmp_path / "run/all_scenario_rl"
    assert results["all_scenario_rl"].summary["reward-model pairs"] == 6
    pairs = list(iter_records(stage / "data/preferences"))
    assert pairs[0]["chosen"] == "Hello, 0!" and pairs[0]["rejected"] == "No."
    assert (stage / "reward_model/model.safetensors").exists()


def test_reward_model_on_verdicts_and_general_pairs_measured_held_out(tmp_path: Path) -> None:
    from r1pipe.artifacts import iter_records, read_manifest

    section = ("    reward_model:\n      heldout_prompts: 5\n      train:\n"
               "        data: [verdicts:filtered, general_pairs]\n"
               "        trainer: {max_steps: 2, per_device_train_batch_size: 8}\n")
    data = {"general_pairs": "{builtin: general, pairs: true, size: 30}"}
    cfg = _pipeline(tmp_path, steps=1, reward_model=section, data=data)
    summary = execute(plan(load(cfg)))["all_scenario_rl"].summary
    stage = tmp_path / "run/all_scenario_rl"

    # the pairs of both inputs, counted per input in the summary, manifest and card
    prefs = stage / "data/preferences"
    pairs = list(iter_records(prefs))
    assert summary["reward-model pairs"] == len(pairs) == 12 + 30
    assert summary["reward-model pairs from verdicts:filtered"] == 12
    assert summary["reward-model pairs from general_pairs"] == 30
    assert read_manifest(prefs).meta["pairs"] == {"verdicts:filtered": 12, "general_pairs": 30}
    card = (prefs / "README.md").read_text()
    assert "pairs from `verdicts:filtered`" in card and "pairs from `general_pairs`" in card

    # held-out pair accuracy: the pairs of held-out prompts, scored by the trained model
    held = [p for p in pairs if is_heldout(p["prompt"], 0.2)]
    assert 0 < len(held) < len(pairs)
    assert summary["reward-model pairs trained"] == len(pairs) - len(held)
    scores = score_pairs(str(stage / "reward_model"), held)
    accuracy = sum(c > r for c, r in scores) / len(held)
    assert summary["reward-model held-out pairs"] == len(held)
    assert summary["reward-model held-out accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert read_accuracy(stage / "reward_model", 0.2).pairs == len(held)
    rm_card = (stage / "reward_model/README.md").read_text()
    assert f"| reward-model held-out pairs | {len(held)} |" in rm_card
    assert "| reward-model held-out accuracy |" in rm_card

    # general-prompt reward of the input and the trained model, same held-out prompts
    before = list(iter_records(stage / "data/general_reward_before"))
    after = list(iter_records(stage / "data/general_reward_after"))
    assert [r["id"] for r in before] == [r["id"] for r in after] and len(before) == 5
    assert all(r["id"].startswith("general-") for r in before)
    assert summary["general-reward prompts"] == 5
    for name in ("helpfulness", "harmlessness"):
        b, a = summary[f"general {name} before"], summary[f"general {name} after"]
        assert b == pytest.approx(sum(r["rewards"][name] for r in before) / 5, abs=1e-4)
        assert a == pytest.approx(sum(r["rewards"][name] for r in after) / 5, abs=1e-4)
        assert summary[f"general {name} change"] == pytest.approx(a - b, abs=2e-4)
    policy_card = (stage / "model/README.md").read_text()
    assert "| general-reward prompts | 5 |" in policy_card
    assert "| general helpfulness change |" in policy_card
    # what `status` and the report read: the stage state, and metrics.jsonl
    state = json.loads((stage / "stage.json").read_text())["summary"]
    assert state["general helpfulness after"] == summary["general helpfulness after"]
    assert state["reward-model held-out accuracy"] == summary["reward-model held-out accuracy"]
    logged = _metrics(stage)
    assert any("reward_model/heldout_accuracy" in m for m in logged)
    assert any(m.get("general_reward/prompts") == 5 for m in logged)


def test_given_reward_model_is_used_and_fingerprinted(tmp_path: Path,
                                                      tiny_reward_model_dir: Path) -> None:
    from r1pipe.rewards import model as rm_module

    section = f"    reward_model: {{model: {tiny_reward_model_dir}}}\n"
    cfg = _pipeline(tmp_path, steps=1, reward_model=section, upstream="")
    results = execute(plan(load(cfg)))
    stage = tmp_path / "run/all_scenario_rl"
    assert results["all_scenario_rl"].summary["reward model"] == str(tiny_reward_model_dir)
    assert not (stage / "reward_model").exists() and not (stage / "data/preferences").exists()
    assert any(str(tiny_reward_model_dir) in key for key in rm_module._MODELS)
    assert plan(load(cfg))["all_scenario_rl"].action == "skip"
    other = load(cfg, [f"stages.all_scenario_rl.reward_model.model={tmp_path / 'other-rm'}"])
    assert plan(other)["all_scenario_rl"].action == "stale"


@pytest.mark.slow
def test_killed_during_rl_resumes_without_retraining_the_reward_model(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, steps=6)
    stage = tmp_path / "run/all_scenario_rl"
    first = stage / "checkpoints/checkpoint-2/trainer_state.json"
    kill_cli_when("run", cfg, cwd=tmp_path, condition=first,
                  message="no GRPO checkpoint was written")
    assert (stage / "reward_model/config.json").exists() and not (stage / "model").exists()
    the_plan = plan(load(cfg))
    assert the_plan["all_scenario_rl"].action == "resume"
    results = execute(the_plan)
    summary = results["all_scenario_rl"].summary
    assert summary["reward model"] == "reward_model/ (trained, reused)"
    # measured once, before GRPO started, and read back from reward_model/heldout.json
    saved = read_accuracy(stage / "reward_model", 0.2)
    assert saved is not None and summary["reward-model held-out pairs"] == saved.pairs > 0
    assert summary["reward-model held-out accuracy"] == round(saved.accuracy, 4)
    assert len([m for m in _metrics(stage) if "reward_model/heldout_accuracy" in m]) == 1
    logged = _metrics(stage)
    assert len([m for m in logged if "reward_model/loss" in m]) == 3  # trained once
    steps = [m["step"] for m in logged if "rewards/helpfulness/mean" in m]
    assert steps[-1] == 6 and results["all_scenario_rl"].summary["steps"] == 6

