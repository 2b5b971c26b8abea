"""All-scenario RL through the engine on the tiny model: reward-model training, routing by
task type, the saved policy and reward model, and the config that drives them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, load
from r1pipe.pipeline import execute, plan
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


def test_given_reward_model_is_used_and_fingerprinted(tmp_path: Path,
                                                      tiny_reward_model_dir: Path) -> None:
    from r1pipe.rewards import model as rm_module

    section = f"    reward_model: {{model: {tiny_reward_model_dir}}}\n"
    cfg = _pipeline(tmp_path, steps=1, reward_model=section, upstream="")
    results = execute(plan(load(cfg)))
    stage = tmp_path / "run/all_scenario_rl"
    assert results["all_scenario_rl"].summary["reward model"] == str(tiny_reward_model_dir)
    assert not (stage / "reward_model").exists() and not (stage / "data").exists()
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
    assert results["all_scenario_rl"].summary["reward model"] == "reward_model/ (trained, reused)"
    logged = _metrics(stage)
    assert len([m for m in logged if "reward_model/loss" in m]) == 3  # trained once
    steps = [m["step"] for m in logged if "rewards/helpfulness/mean" in m]
    assert steps[-1] == 6 and results["all_scenario_rl"].summary["steps"] == 6

