"""The training-health watch (`health:`): each rule on step logs shaped like TRL's, and
through the engine with TRL's real GRPOTrainer on r1pipe's tiny model, whose accuracy
reward never varies (a random model solves nothing): the zero-spread rule warns and the
stage finishes, or stops the stage at a checkpoint that the next run resumes from once the
rule is changed. Bad rule settings are one-line errors naming the key."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, HealthSettings, load
from r1pipe.health import HealthStop, Watch, summary_lines
from r1pipe.pipeline import execute, plan
from tests.helpers import read_jsonl, write_pipeline


def _fired(settings: dict, logs: list[dict], format_keys: tuple[str, ...] = ()) -> dict:
    watch = Watch(HealthSettings.model_validate(settings), format_keys)
    for step, log in enumerate(logs, start=1):
        watch.observe({"step": step, **log})
    return watch.verdicts


HEALTHY = {"reward": 0.0, "frac_reward_zero_std": 0.25, "entropy": 2.0, "loss": 0.1,
           "grad_norm": 1.0, "completions/clipped_ratio": 0.2, "rewards/accuracy/mean": 0.3,
           "rewards/format/mean": 0.2}


def test_a_healthy_run_fires_nothing() -> None:
    logs = [{**HEALTHY, "reward": 0.1 * i} for i in range(30)]  # the reward rises
    assert _fired({}, logs, ("rewards/format/mean",)) == {}


@pytest.mark.parametrize(("rule", "change"), [
    ("reward_flat", {}),  # HEALTHY's reward never moves
    ("zero_spread", {"frac_reward_zero_std": 0.75}),
    ("format_stuck", {"rewards/format/mean": 0.0}),
    ("not_finite", {"loss": math.nan}),
    ("not_finite", {"grad_norm": math.inf}),
    ("entropy_collapse", {"entropy": 0.001}),
    ("length_pinned", {"completions/clipped_ratio": 1.0}),
    ("reward_none", {"rewards/accuracy/mean": None}),
])
def test_each_rule_fires_on_what_it_watches(rule: str, change: dict) -> None:
    rising = [{**HEALTHY, "reward": 0.1 * i, **change} for i in range(30)]
    logs = [{**HEALTHY, **change}] * 30 if rule == "reward_flat" else rising
    fired = _fired({}, logs, ("rewards/format/mean",))
    assert set(fired) == {rule}, fired
    assert fired[rule]["status"] == "warn"
    window = HealthSettings().model_dump()[rule]["window"]
    assert fired[rule]["first_step"] == window  # as soon as the window is full
    off = _fired({rule: {"action": "off"}}, logs, ("rewards/format/mean",))
    assert rule not in off


def test_dynamic_sampling_share_is_what_zero_spread_watches() -> None:
    """With dynamic sampling, TRL's share covers the sampled groups; the trained ones count."""
    logs = [{**HEALTHY, "reward": 0.1 * i, "frac_reward_zero_std": 0.9,
             "dynamic_sampling/trained_zero_std_frac": 0.0} for i in range(12)]
    assert _fired({}, logs) == {}


@pytest.mark.parametrize(("section", "error"), [
    ("health: {zero_spread: {threshold: 2}}", "health: zero_spread.threshold: 2.0 is a share"),
    ("health: {zero_spread: {action: halt}}", "health.zero_spread.action"),
    ("health: {reward_flat: {window: 1}}", "reward_flat.window"),
    ("health: {entropy_collaps: {}}", "health.entropy_collaps"),
    ("health: {not_finite: {window: 0}}", "health.not_finite.window"),
])
def test_bad_health_rules_are_one_line_errors_naming_the_key(tmp_path: Path, section: str,
                                                             error: str) -> None:
    body = f"stages:\n  r1_zero:\n    from: base\n    {section}\n"
    with pytest.raises(ConfigError, match=error) as info:
        load(write_pipeline(tmp_path, "badhealth", body,
                            data={"reasoning": "{builtin: reasoning, size: 8}"}))
    assert "\n" not in info.value.one_line() and "stages.r1_zero" in info.value.one_line()


STAGES = """\
stages:
  r1_zero:
    from: base
    data: reasoning
    rewards: {{accuracy: 1.0}}
    health: {{zero_spread: {{window: 2, action: {action}}}}}
    trainer: {{max_steps: 4, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 8, save_steps: 50, learning_rate: 1.0e-4}}
"""
REASONING = "{builtin: reasoning, size: 16, test_size: 0, difficulty: 1}"


def _pipeline(folder: Path, action: str) -> Path:
    return write_pipeline(folder, "healthtest", STAGES.format(action=action), seed=3,
                          data={"reasoning": REASONING})


@pytest.mark.usefixtures("r1pipe_cache")
def test_a_reward_that_never_varies_warns_and_the_stage_goes_on(tmp_path: Path) -> None:
    summary = execute(plan(load(_pipeline(tmp_path, "warn"))))["r1_zero"].summary
    assert summary["steps"] == 4
    assert summary["health zero_spread"].startswith("warn at step 2 (3 steps, last 4): 100%")
    logged = [m for m in read_jsonl(tmp_path / "run/r1_zero/metrics.jsonl") if "reward" in m]
    assert [m.get("health/zero_spread") for m in logged] == [None, 1, 1, 1]
    rules = json.loads((tmp_path / "run/r1_zero/health.json").read_text())["rules"]
    assert rules["zero_spread"]["status"] == "warn" and rules["not_finite"]["status"] == "ok"
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["summary"]["health zero_spread"] == summary["health zero_spread"]


@pytest.mark.usefixtures("r1pipe_cache")
def test_stop_saves_stops_and_resumes_once_the_rule_is_changed(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, "stop")
    with pytest.raises(HealthStop, match="stopped by health rule zero_spread at step 2") as info:
        execute(plan(load(cfg)))
    assert "stages.r1_zero.health.zero_spread" in str(info.value)
    run = tmp_path / "run/r1_zero"
    state = json.loads((run / "stage.json").read_text())
    assert state["status"] == "failed" and "zero_spread" in state["error"]
    assert (run / "checkpoints/checkpoint-2").is_dir()  # saved at the stop (save_steps: 50)
    assert not (run / "model").exists()
    # the user relaxes the rule: the stage resumes from the stop, not from scratch
    cfg = _pipeline(tmp_path, "warn")
    the_plan = plan(load(cfg))
    assert the_plan["r1_zero"].action == "resume"
    summary = execute(the_plan)["r1_zero"].summary
    steps = [m["step"] for m in read_jsonl(run / "metrics.jsonl") if "reward" in m]
    assert steps == [1, 2, 3, 4]
    state = json.loads((run / "stage.json").read_text())
    assert state["status"] == "finished" and state["attempts"] == 2
    assert summary["health zero_spread"].startswith("warn at step 4")  # its window restarted
    earlier = json.loads((run / "health.json").read_text())["rules"]["zero_spread"]["earlier"]
    assert earlier["status"] == "stop" and earlier["first_step"] == 2
    assert summary_lines(run) == {k: v for k, v in summary.items() if k.startswith("health")}
