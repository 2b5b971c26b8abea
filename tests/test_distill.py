"""Distillation through the engine: several students (one derived by keeping layers), each
with its own checkpoint; kill + resume; on-policy distillation and its tokenizer check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, load
from r1pipe.contract import StageFailed
from r1pipe.pipeline import execute, plan
from tests.helpers import REPO, kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

STAGES = """\
stages:
  distill:
    data: mix
    where: {{source: reasoning}}
    trainer:
      max_steps: {steps}
      per_device_train_batch_size: 2
      save_steps: {save_steps}
      learning_rate: 1.0e-3
      {length}
    students:
{students}
"""

STUDENTS = """\
      full: {builtin: tiny-llama}
      small:
        builtin: tiny-llama
        layers: [1]
        trainer: {max_steps: 3}
        lora: {r: 4, alpha: 8}
"""


def _mix(path: Path) -> Path:
    """Rejection-sampling style records: reasoning samples and general ones."""
    lines = []
    for i in range(12):
        lines.append({"id": f"r{i}", "source": "reasoning",
                      "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
                      "completion": [{"role": "assistant", "content":
                                      f"|special_token|{i} + {i} = {2 * i}.|special_token|"
                                      f"The answer is {2 * i}."}]})
    for i in range(4):
        lines.append({"id": f"g{i}", "source": "general",
                      "prompt": [{"role": "user", "content": "Say hello."}],
                      "completion": [{"role": "assistant", "content": "Hello!"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return path


def _pipeline(tmp_path: Path, *, steps: int = 4, students: str = STUDENTS,
              on_policy: bool = False, save_steps: int = 2) -> Path:
    """The test pipeline; `on_policy` switches the method (its trainer is TRL's
    DistillationConfig, which has `max_completion_length` instead of `max_length`)."""
    length = "max_completion_length: 8" if on_policy else "max_length: 128"
    extra = "    method: on_policy\n    teacher: base\n" if on_policy else ""
    body = STAGES.format(steps=steps, students=students, length=length, save_steps=save_steps)
    return write_pipeline(tmp_path, "distilltest", body + extra, seed=5,
                          data={"mix": f"{{path: {_mix(tmp_path / 'mix.jsonl')}}}"})


def _metrics(run: Path) -> list[dict]:
    return read_jsonl(run / "distill/metrics.jsonl")


def test_two_students_train_load_and_generate(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1pipe.checkpoints import read_card

    results = execute(plan(load(_pipeline(tmp_path))))
    result = results["distill"]
    assert result.artifacts == {"full": "full/model", "small": "small/model"}
    summary = result.summary
    assert summary["students"] == "full, small"
    assert summary["full: steps"] == 4 and summary["small: steps"] == 3  # its own override
    assert summary["data records"] == 12  # `where: {source: reasoning}` left out general
    assert "layers 1" in summary["small: model"]
    layers = {}
    for name in ("full", "small"):
        folder = tmp_path / "run/distill" / name / "model"
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        layers[name] = model.config.num_hidden_layers
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}],
                                               add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]
        card = read_card(folder)
        assert "distill" in card["tags"] and name in card["tags"]
        text = (folder / "README.md").read_text()
        assert "mix source=reasoning" in text and "| 12 |" in text  # the data it trained on
    assert layers == {"full": 2, "small": 1}  # a genuinely smaller student
    # LoRA for one student only: its adapter beside its model, which is merged
    assert (tmp_path / "run/distill/small/adapter/adapter_config.json").is_file()
    assert not (tmp_path / "run/distill/full/adapter").exists()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "run/distill/small/model")
    assert not any("lora" in k for k in merged.state_dict())
    logged = _metrics(tmp_path / "run")
    assert [m["step"] for m in logged if m.get("part") == "small" and "loss" in m] == [1, 2, 3]
    assert [m["step"] for m in logged if m.get("part") == "full" and "loss" in m] == [1, 2, 3, 4]


def test_student_config_errors(tmp_path: Path) -> None:
    bad_trainer = "      s: {builtin: tiny-llama, trainer: {max_stepz: 3}}\n"
    with pytest.raises(ConfigError, match=r"students\.s\.trainer\.max_stepz: 'max_stepz' is "
                       r"not a field of TRL's SFTConfig; did you mean 'max_steps'\?"):
        load(_pipeline(tmp_path, students=bad_trainer))
    # the same type check as a stage's own `trainer:`
    bad_type = "      s: {builtin: tiny-llama, trainer: {max_steps: three}}\n"
    with pytest.raises(ConfigError, match=r"'max_steps' must be int for TRL's SFTConfig"):
        load(_pipeline(tmp_path, students=bad_type))
    with pytest.raises(ConfigError, match="student name 'model'"):
        load(_pipeline(tmp_path, students="      model: {builtin: tiny-llama}\n"))
    with pytest.raises(ConfigError, match="students"):
        load(_pipeline(tmp_path, students="      {}\n"))
    # no teacher unless on-policy: the stage depends on its data alone
    cfg = load(_pipeline(tmp_path))
    assert [i.field for i in cfg.stages["distill"].inputs()] == ["data"]


def test_on_policy_needs_the_teachers_tokenizer(tmp_path: Path) -> None:
    from r1pipe.testing import build_tiny_model

    other = build_tiny_model(tmp_path / "other-vocab", vocab_size=700)
    students = f"      odd: {{id: {other}}}\n"
    cfg = load(_pipeline(tmp_path, students=students, on_policy=True))
    assert [i.field for i in cfg.stages["distill"].inputs()] == ["data", "teacher"]
    with pytest.raises(StageFailed, match="share a tokenizer.*vocabulary has .* tokens, the "
                       "teacher's .*use `method: sft`"):
        execute(plan(cfg))


@pytest.mark.slow
def test_on_policy_distillation_trains(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    students = "      small: {builtin: tiny-llama, layers: [0]}\n"
    cfg = _pipeline(tmp_path, steps=2, students=students, on_policy=True)
    result = execute(plan(load(cfg)))["distill"]
    assert result.summary["small: steps"] == 2
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "run/distill/small/model")
    assert model.config.num_hidden_layers == 1


@pytest.mark.slow
def test_kill_mid_student_then_resume(tmp_path: Path) -> None:
    students = ("      first: {builtin: tiny-llama, trainer: {max_steps: 2}}\n"
                "      second: {builtin: tiny-llama, layers: [0]}\n")
    cfg = _pipeline(tmp_path, steps=30, students=students, save_steps=4)
    run = tmp_path / "run"
    ckpt = run / "distill/second/checkpoints/checkpoint-4/trainer_state.json"
    kill_cli_when("run", cfg, cwd=tmp_path, condition=ckpt,
                  message="no trainer checkpoint was written")
    assert not (run / "distill/second/model").exists()
    first_model = run / "distill/first/model/model.safetensors"
    first_written = first_model.stat().st_mtime_ns
    killed_at = max(m["step"] for m in _metrics(run) if m.get("part") == "second")
    assert killed_at < 30
    the_plan = plan(load(cfg))
    assert the_plan["distill"].action == "resume"
    execute(the_plan)
    state = json.loads((run / "distill/stage.json").read_text())
    assert state["status"] == "finished" and state["attempts"] == 2
    assert state["summary"]["first: steps"] == 2 and state["summary"]["second: steps"] == 30
    assert first_model.stat().st_mtime_ns == first_written  # the finished student was kept
    steps = [m["step"] for m in _metrics(run) if m.get("part") == "second" and "loss" in m]
    resumed = steps[killed_at:]  # the first attempt logged steps 1..killed_at
    assert resumed[0] > 4 and resumed[-1] == 30 and 1 not in resumed


@pytest.mark.slow
def test_student_under_accelerate_with_two_processes(tmp_path: Path) -> None:
    """An SFT stage under `accelerate launch` with 2 CPU processes (gloo): both ranks train
    the same steps on halves of each batch; rank 0 alone writes the model and stage state."""
    from transformers import AutoModelForCausalLM

    students = "      full: {builtin: tiny-llama}\n"
    cfg = _pipeline(tmp_path, steps=3, students=students, save_steps=3)
    cfg.write_text(cfg.read_text() + "    launch: {num_processes: 2}\n")
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "distill", str(cfg)],
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    state = json.loads((tmp_path / "run/distill/stage.json").read_text())
    assert state["status"] == "finished" and state["summary"]["full: steps"] == 3
    logged = [m for m in _metrics(tmp_path / "run") if "loss" in m]
    # one line per step (rank 0 logs): 3 steps, not 6
    assert [m["step"] for m in logged] == [1, 2, 3]
    # 2 processes x batch 2 = 4 records per step: 3 steps cover 12 records = one epoch
    assert logged[-1]["epoch"] == pytest.approx(1.0)
    AutoModelForCausalLM.from_pretrained(tmp_path / "run/distill/full/model")
