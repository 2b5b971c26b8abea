"""No secret lands in the run dir: a smoke run with tokens in the pipeline file (free-form
mappings and a trainer's `hub_token`) and in the environment, then every file under the run
dir, binary ones included (trainer checkpoints pickle their arguments), is searched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

YAML_SECRETS = {
    "generation.vllm.api_key": "sk-yamlsecretvalue0123456789abcdef",
    "generation.vllm.hf_token": "hf_yamlHFtokenABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "stages.r1_zero.trainer.hub_token": "plainsecret-hub-token-42",
}
ENV_SECRETS = {
    "HF_TOKEN": "env-hf-token-value-0000",
    "WANDB_API_KEY": "env-wandb-key-value-1111",
    "OPENAI_API_KEY": "env-openai-key-2222",
}


def test_config_secrets_are_masked_when_dumped() -> None:
    from r1pipe.config import dump, load, secret_values

    config = load(REPO / "configs/smoke.yaml", [f"{k}={v}" for k, v in YAML_SECRETS.items()])
    masked = dump(config, mask_secrets=True)
    for value in YAML_SECRETS.values():
        assert value not in masked
    assert secret_values(config) == YAML_SECRETS  # what a launched worker gets back


@pytest.mark.slow
def test_no_secret_in_any_file_of_a_smoke_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, **ENV_SECRETS, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "R1PIPE_CACHE": str(tmp_path / "cache")}
    args = [f"run_dir={run}", *(f"{k}={v}" for k, v in YAML_SECRETS.items())]
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", "configs/smoke.yaml",
                          *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (run / "distill" / "stage.json").exists()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.name == "training_args.bin" for p in files)  # the pickled args were checked
    leaks = []
    for path in files:
        data = path.read_bytes()
        for value in [*YAML_SECRETS.values(), *ENV_SECRETS.values()]:
            if value.encode() in data:
                leaks.append(f"{path.relative_to(run)}: {value}")
    assert not leaks, leaks
    for value in [*YAML_SECRETS.values(), *ENV_SECRETS.values()]:
        assert value not in out.stdout + out.stderr
