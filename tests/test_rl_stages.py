"""The GRPO stages through the engine on r1pipe's tiny model: train, save, resume, LoRA, launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.config import load
from r1pipe.pipeline import execute, plan
from tests.helpers import REPO, kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

STAGES = """\
stages:
  {stage}:
    from: base
    data: reasoning
    trainer:
      max_steps: {steps}
      per_device_train_batch_size: 4
      num_generations: 4
      max_completion_length: 16
      save_steps: 2
      learning_rate: 1.0e-4
{extra}"""

REASONING = "{builtin: reasoning, size: 64, test_size: 8, difficulty: 1}"


def _pipeline(tmp_path: Path, stage: str = "r1_zero", steps: int = 4, extra: str = "") -> Path:
    return write_pipeline(tmp_path, "rltest", STAGES.format(stage=stage, steps=steps, extra=extra),
                          seed=3, data={"reasoning": REASONING})


def _metrics(run: Path, stage: str) -> list[dict]:
    return read_jsonl(run / stage / "metrics.jsonl")


def test_r1_zero_trains_saves_and_logs(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from r1pipe.checkpoints import read_card

    results = execute(plan(load(_pipeline(tmp_path))))
    summary = results["r1_zero"].summary
    assert summary["steps"] == 4 and summary["prompts"] == 64
    model_dir = tmp_path / "run/r1_zero/model"
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    assert model.config.num_hidden_layers == 2
    assert (model_dir / "generation_config.json").exists() and (model_dir / "tokenizer.json").exists()
    card = read_card(model_dir)
    assert "r1_zero" in card["tags"]
    text = (model_dir / "README.md").read_text()
    assert "r1_zero" in text and "tiny-llama" in text
    logged = _metrics(tmp_path / "run", "r1_zero")
    assert [m["step"] for m in logged if "reward" in m] == [1, 2, 3, 4]
    assert logged[0]["epoch"] == pytest.approx(1 / 64)  # one prompt x 4 generations per step
    for key in ("reward", "rewards/accuracy/mean", "rewards/format/mean", "kl",
                "completions/mean_length", "clip_ratio/region_mean", "entropy", "step_time"):
        assert key in logged[0], key


def test_reasoning_rl_scores_language(tmp_path: Path) -> None:
    results = execute(plan(load(_pipeline(tmp_path, stage="reasoning_rl", steps=2))))
    logged = _metrics(tmp_path / "run", "reasoning_rl")
    assert "rewards/language/mean" in logged[0]
    assert results["reasoning_rl"].summary["steps"] == 2


def test_lora_saves_merged_model_and_adapter(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    extra = "    lora: {r: 4, alpha: 8}\n"
    execute(plan(load(_pipeline(tmp_path, steps=2, extra=extra))))
    stage = tmp_path / "run/r1_zero"
    assert (stage / "adapter" / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(stage / "model")
    assert not hasattr(merged, "peft_config")
    assert not any("lora" in k for k in merged.state_dict())


@pytest.mark.slow
def test_kill_after_first_checkpoint_resumes_from_it(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, steps=8)
    first = tmp_path / "run/r1_zero/checkpoints/checkpoint-2/trainer_state.json"
    kill_cli_when("run", cfg, cwd=tmp_path, condition=first,
                  message="no trainer checkpoint was written")
    assert not (tmp_path / "run/r1_zero/model").exists()
    killed_at = max(m["step"] for m in _metrics(tmp_path / "run", "r1_zero"))
    the_plan = plan(load(cfg))
    assert the_plan["r1_zero"].action == "resume"
    execute(the_plan)
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["status"] == "finished" and state["attempts"] == 2
    steps = [m["step"] for m in _metrics(tmp_path / "run", "r1_zero") if "reward" in m]
    resumed = steps[killed_at:]
    # the second attempt continued after the last checkpoint instead of starting at step 1
    assert resumed[0] > 2 and resumed[-1] == 8 and 1 not in resumed
    assert state["summary"]["steps"] == 8


@pytest.mark.slow
def test_r1_zero_under_accelerate_with_two_processes(tmp_path: Path) -> None:
    extra = "    launch: {num_processes: 2}\n"
    cfg = _pipeline(tmp_path, steps=2, extra=extra)
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["status"] == "finished" and state["summary"]["steps"] == 2
    assert (tmp_path / "run/r1_zero/model/model.safetensors").exists()
    # Two ranks share the step: 2 x 4 completions = 2 prompts of the 64 per step, where a
    # single process does 1 (see test_r1_zero_trains_saves_and_logs).
    logged = [m for m in _metrics(tmp_path / "run", "r1_zero") if "reward" in m]
    assert logged[-1]["step"] == 2 and logged[-1]["epoch"] == pytest.approx(4 / 64)
