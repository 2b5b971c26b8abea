"""Online dynamic sampling in GRPO stages (`dynamic_sampling:`), with TRL's real GRPOTrainer
on r1pipe's tiny model: trained batches hold no zero-spread group where the offline
`prompt_filter` alone leaves some, the counts add up, a kill mid-step resumes with the
counts kept, and a 2-process launch agrees across ranks.

The test reward `rare` passes an answer whose text length is a multiple of 5 (about one in
five, at random for a random model): every prompt the filter keeps was passed at least once
and failed at least once, yet a fresh group of four all fail often (about 0.8^4 = 41 %).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from r1pipe.config import ConfigError, load
from r1pipe.pipeline import execute, plan
from tests.helpers import REPO, kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

REASONING = ("{builtin: reasoning, size: 24, test_size: 0, difficulty: 1, "
             "tasks: [countdown, linear_equation, arithmetic]}")
GENERATION = "{backend: hf, max_new_tokens: 16, batch_size: 8}"
STAGES = """\
stages:
  r1_zero:
    from: base
    data: reasoning
    rewards:
      rare: {reward: "tests.test_dynamic_sampling:rare"}
    prompt_filter: {samples: 4, reward: rare, chunk_size: 8}
    trainer: {max_steps: STEPS, per_device_train_batch_size: 8, num_generations: 4,
              max_completion_length: 16, save_steps: 1, learning_rate: 1.0e-4}
EXTRA"""


def rare(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
    """1.0 for an answer whose length is a multiple of 5, else 0.0 (see the module)."""
    return [float(len(text) % 5 == 0) for text in completions]


def _pipeline(folder: Path, steps: int = 4, extra: str = "", name: str = "dstest") -> Path:
    body = STAGES.replace("STEPS", str(steps)).replace("EXTRA", extra)
    folder.mkdir(parents=True, exist_ok=True)
    return write_pipeline(folder, name, body, seed=11, generation=GENERATION,
                          data={"reasoning": REASONING})


def _steps(run: Path) -> list[dict]:
    """The last logged line of each training step (a resumed step logs again)."""
    by_step: dict[int, dict] = {}
    for line in read_jsonl(run / "r1_zero/metrics.jsonl"):
        if "reward" in line:
            by_step[line["step"]] = line
    return [by_step[s] for s in sorted(by_step)]


DS = "    dynamic_sampling: {oversample: 2, max_rounds: 8}\n"


def _check_counts(steps: list[dict], groups_per_step: int) -> None:
    for line in steps:
        assert line["dynamic_sampling/trained_zero_std_frac"] == 0.0, line
        assert line["dynamic_sampling/groups_trained"] == groups_per_step
        assert line["dynamic_sampling/groups_short"] == 0
        assert line["dynamic_sampling/groups_sampled"] >= groups_per_step * 2  # oversample 2
        assert (line["dynamic_sampling/groups_sampled"] - line["dynamic_sampling/groups_dropped"]
                >= groups_per_step)
    last = steps[-1]
    for key in ("groups_sampled", "groups_dropped", "groups_trained", "rounds"):
        assert last[f"dynamic_sampling/total_{key}"] == sum(
            s[f"dynamic_sampling/{key}"] for s in steps), key


def test_zero_spread_groups_leave_the_trained_batches(tmp_path: Path) -> None:
    base = execute(plan(load(_pipeline(tmp_path / "filter_only"))))["r1_zero"].summary
    offline = _steps(tmp_path / "filter_only/run")
    assert base["prompt filter kept"] >= 4  # the filter kept prompts the model sometimes passes
    # the filter alone: TRL trained on groups with no reward spread
    assert sum(s["frac_reward_zero_std"] for s in offline) / len(offline) > 0

    results = execute(plan(load(_pipeline(tmp_path / "dynamic", extra=DS))))
    summary = results["r1_zero"].summary
    online = _steps(tmp_path / "dynamic/run")
    assert [s["step"] for s in online] == [1, 2, 3, 4]
    _check_counts(online, groups_per_step=2)
    assert sum(s["dynamic_sampling/groups_dropped"] for s in online) > 0  # something to drop
    assert summary["dynamic sampling groups trained"] == 8
    assert summary["dynamic sampling groups dropped"] == online[-1][
        "dynamic_sampling/total_groups_dropped"]
    state = json.loads((tmp_path / "dynamic/run/r1_zero/checkpoints/checkpoint-4/"
                        "dynamic_sampling.json").read_text())
    assert state["groups_sampled"] == summary["dynamic sampling groups sampled"]


def test_rounds_run_out_and_the_step_trains_on_what_it_has(tmp_path: Path) -> None:
    """A reward that never varies: every group is dropped, the rounds run out, the step
    trains on zero-spread groups it must have and says it was short."""
    extra = "    dynamic_sampling: {oversample: 1, max_rounds: 2}\n"
    cfg = _pipeline(tmp_path, steps=2, extra=extra).read_text()
    cfg = cfg.replace('rare: {reward: "tests.test_dynamic_sampling:rare"}',
                      "accuracy: 1.0").replace("    prompt_filter: {samples: 4, reward: rare, "
                                               "chunk_size: 8}\n", "")
    (tmp_path / "p.yaml").write_text(cfg)
    execute(plan(load(tmp_path / "p.yaml")))
    for line in _steps(tmp_path / "run"):
        assert line["dynamic_sampling/rounds"] == 2
        assert line["dynamic_sampling/groups_sampled"] == 4  # 2 groups a round, 2 rounds
        assert line["dynamic_sampling/groups_dropped"] == 4
        assert line["dynamic_sampling/groups_short"] == 2
        assert line["dynamic_sampling/trained_zero_std_frac"] == 1.0


@pytest.mark.parametrize(("section", "error"), [
    ("dynamic_sampling: {oversample: 0.5}", "dynamic_sampling.oversample"),
    ("dynamic_sampling: {max_rounds: 0}", "dynamic_sampling.max_rounds"),
    ("dynamic_sampling: {rounds: 3}", "dynamic_sampling.rounds"),
])
def test_bad_dynamic_sampling_is_refused_at_load(tmp_path: Path, section: str,
                                                 error: str) -> None:
    body = f"stages:\n  r1_zero:\n    from: base\n    {section}\n"
    with pytest.raises(ConfigError, match=error) as info:
        load(write_pipeline(tmp_path, "bad", body))
    assert "p.yaml" in str(info.value) and "\n" not in info.value.one_line()


def test_kill_mid_step_resumes_with_the_counts_kept(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, steps=5, extra=DS)
    second = tmp_path / "run/r1_zero/checkpoints/checkpoint-2/dynamic_sampling.json"
    kill_cli_when("run", cfg, cwd=tmp_path, condition=second,
                  message="no checkpoint with dynamic-sampling counts was written")
    saved = json.loads(second.read_text())
    assert saved["steps"] == 2
    execute(plan(load(cfg)))
    steps = _steps(tmp_path / "run")
    assert [s["step"] for s in steps] == [1, 2, 3, 4, 5]
    # the totals after resume are the saved ones plus the steps run after the checkpoint
    _check_counts(steps, groups_per_step=2)
    after = steps[2:]
    assert steps[-1]["dynamic_sampling/total_groups_sampled"] == saved["groups_sampled"] + sum(
        s["dynamic_sampling/groups_sampled"] for s in after)
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["attempts"] == 2
    assert state["summary"]["dynamic sampling steps"] == 5


@pytest.mark.slow
def test_dynamic_sampling_under_two_processes(tmp_path: Path) -> None:
    extra = DS + "    launch: {num_processes: 2}\n"
    cfg = _pipeline(tmp_path, steps=2, extra=extra)
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    steps = _steps(tmp_path / "run")
    # each of the 2 ranks trains 2 groups a step: 4 in all, none without reward spread
    _check_counts(steps, groups_per_step=4)


@pytest.mark.slow
def test_dynamic_sampling_with_vllm_colocate_rollouts(tmp_path: Path) -> None:
    """Every round's rollouts come from the colocated vLLM engine (TRL's sampling log-prob
    metric is logged only then), with the policy's weights of the step before."""
    extra = DS.replace("max_rounds: 8", "max_rounds: 4")
    cfg = _pipeline(tmp_path, steps=3, extra=extra).read_text().replace(
        "learning_rate: 1.0e-4}", "learning_rate: 1.0e-4,\n              use_vllm: true, "
        "vllm_mode: colocate, vllm_max_model_length: 512}")
    (tmp_path / "p.yaml").write_text(cfg)
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(tmp_path / "p.yaml")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    steps = _steps(tmp_path / "run")
    assert all("sampling/sampling_logp_difference/mean" in s for s in steps)
    assert [s["step"] for s in steps] == [1, 2, 3]
    _check_counts(steps, groups_per_step=2)
