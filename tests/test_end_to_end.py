"""End to end: the shipped pipelines validate and plan, the smoke pipeline runs all six
stages through the CLI, `status` tells finished from stale, and a run killed with SIGKILL at
ten random moments resumes each time to exactly the artifacts of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "configs/smoke.yaml"
STAGES = ["r1_zero", "cold_start", "reasoning_rl", "reject_sample", "all_scenario_rl", "distill"]


def _env(cache: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    if cache is not None:
        env["R1PIPE_CACHE"] = str(cache)
    return env


def _cli(*args: str, cache: Path | None = None, check: bool = True,
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=REPO, env=_env(cache),
                         capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


# ---------------------------------------------------------------------------------------
# The shipped configs
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["r1", "demo", "smoke"])
def test_shipped_config_validates_and_plans(name: str, tmp_path: Path) -> None:
    path = str(REPO / "configs" / f"{name}.yaml")
    out = _cli("validate", path)
    assert "OK: pipeline" in out.stdout and " -> ".join(STAGES) in out.stdout
    out = _cli("run", path, f"run_dir={tmp_path / 'run'}", "--dry-run")
    for stage in STAGES:
        assert stage in out.stdout
    assert out.stdout.count("never ran") == len(STAGES)
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_full_scale_config_has_the_papers_settings() -> None:
    from r1pipe.config import load

    cfg = load(REPO / "configs/r1.yaml")
    assert cfg.base_model.hub_id  # a Hub id, not a local file
    for name in ("r1_zero", "reasoning_rl", "all_scenario_rl"):
        trainer = cfg.stages[name].trainer
        assert trainer["learning_rate"] == 3e-6 and trainer["beta"] == 0.001
        assert trainer["num_generations"] == 16 and trainer["epsilon"] == 10.0
        assert trainer["temperature"] == 1.0 and trainer["use_vllm"] is True
    assert cfg.stages["r1_zero"].prompts.template == "r1_zero"
    rs = cfg.stages["reject_sample"]
    assert (rs.mix.reasoning, rs.mix.general) == (600_000, 200_000)
    assert rs.trainer["num_train_epochs"] == 2 and rs.train_from == "base"
    assert (cfg.eval.temperature, cfg.eval.top_p, cfg.eval.samples,
            cfg.eval.max_new_tokens) == (0.6, 0.95, 64, 32768)
    assert cfg.generation.backend == "vllm"
    assert cfg.launch.accelerate_config == "configs/accelerate/zero3.yaml"
    assert (REPO / cfg.launch.accelerate_config).is_file()


def test_yaml_anchors_and_merge_keys_load_and_errors_keep_their_line(tmp_path: Path) -> None:
    """Big configs share trainer settings with `&anchor` / `<<: *anchor`."""
    from r1pipe.config import ConfigError, load

    text = """\
name: anchors
base_model: {builtin: tiny-llama}
data: {reasoning: {builtin: arithmetic, size: 4}}
stages:
  r1_zero:
    trainer: &grpo
      learning_rate: 1.0e-5
      num_generations: 4
  reasoning_rl:
    from: base
    trainer: {<<: *grpo, max_steps: 3}
"""
    path = tmp_path / "p.yaml"
    path.write_text(text)
    cfg = load(path)
    assert cfg.stages["reasoning_rl"].trainer == {"learning_rate": 1e-5, "num_generations": 4,
                                                  "max_steps": 3}
    path.write_text(text.replace("num_generations: 4", "num_generation: 4"))
    with pytest.raises(ConfigError) as err:
        load(path)
    assert err.value.line == 8 and "did you mean 'num_generations'" in err.value.message


# ---------------------------------------------------------------------------------------
# The smoke pipeline through the CLI
# ---------------------------------------------------------------------------------------


def _artifact_ids(run: Path) -> dict[str, list[str]]:
    """Record ids of every JSONL artifact (a folder with manifest.json), eval samples too."""
    from r1pipe.artifacts import iter_records

    out = {}
    for manifest in sorted(run.rglob("manifest.json")):
        folder = manifest.parent
        out[str(folder.relative_to(run))] = [str(r["id"]) for r in iter_records(folder)]
    return out


def _model_dirs(run: Path) -> list[Path]:
    return sorted(p.parent for p in run.rglob("config.json")
                  if p.parent.name in ("model", "reward_model") and "checkpoints" not in p.parts)


def _states(run: Path) -> dict[str, dict]:
    return {s: json.loads((run / s / "stage.json").read_text()) for s in STAGES}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("r1pipe-cache")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> tuple[Path, float]:
    """One uninterrupted smoke run: (run dir, seconds it took)."""
    run = tmp_path_factory.mktemp("baseline") / "run"
    start = time.perf_counter()
    _cli("run", str(SMOKE), f"run_dir={run}", cache=cache)
    return run, time.perf_counter() - start


@pytest.mark.slow
def test_smoke_runs_every_stage_with_hub_compatible_outputs(baseline: tuple[Path, float]) -> None:
    from datasets import load_dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        GenerationConfig,
    )

    from r1pipe.checkpoints import read_card

    run, _ = baseline
    states = _states(run)
    assert {s: st["status"] for s, st in states.items()} == dict.fromkeys(STAGES, "finished")
    models = _model_dirs(run)
    names = {str(m.relative_to(run)) for m in models}
    assert names == {"r1_zero/model", "cold_start/model", "reasoning_rl/model",
                     "reject_sample/model", "all_scenario_rl/model",
                     "all_scenario_rl/reward_model", "distill/tiny/model",
                     "distill/half/model"}
    for folder in models:
        assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
        assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
        AutoTokenizer.from_pretrained(folder)
        if folder.name == "reward_model":
            AutoModelForSequenceClassification.from_pretrained(folder)
            continue
        model = AutoModelForCausalLM.from_pretrained(folder)
        GenerationConfig.from_pretrained(folder)
        card = read_card(folder)
        assert "r1pipe" in card.get("tags", []), card
    half = AutoModelForCausalLM.from_pretrained(run / "distill/half/model")
    assert half.config.num_hidden_layers == model.config.num_hidden_layers - 1
    # every data artifact is a Hub dataset folder that `datasets` reads as it is
    for folder in ("cold_start/data/samples", "reject_sample/data/mix",
                   "reject_sample/data/filtered"):
        ds = load_dataset(str(run / folder), split="train")  # types from the card
        assert ds.num_rows > 0 and "id" in ds.column_names
        assert (run / folder / "README.md").read_text().startswith("---\n")
    # eval before and after each stage, and the comparison table
    table = _cli("eval", str(SMOKE), f"run_dir={run}", "--compare").stdout
    for row in ("base", *STAGES[:-1], "distill/tiny", "distill/half"):
        assert row in table
    # an unchanged run does nothing
    again = _cli("run", str(SMOKE), f"run_dir={run}")
    assert "nothing to do" in again.stdout


@pytest.mark.slow
def test_status_shows_finished_then_stale_after_an_edit(baseline: tuple[Path, float],
                                                        tmp_path: Path) -> None:
    run, _ = baseline
    out = json.loads(_cli("status", str(SMOKE), f"run_dir={run}", "--json").stdout)
    rows = {r["stage"]: r for r in out["stages"]}
    assert all(rows[s]["status"] == "finished" and rows[s]["next"] == "skip" for s in STAGES)
    assert all(rows[s]["artifacts"] for s in STAGES)
    assert rows["r1_zero"]["summary"]["steps"] == 2
    assert "reward (last)" in rows["r1_zero"]["summary"]
    table = _cli("status", str(SMOKE), f"run_dir={run}").stdout
    assert "reward (last)" in table and "loss (last)" in table
    # edit one stage in the YAML: it and everything downstream of it are stale
    edited = tmp_path / "smoke.yaml"
    edited.write_text(SMOKE.read_text().replace(
        "  reasoning_rl:\n    from: cold_start\n",
        "  reasoning_rl:\n    from: cold_start\n    rewards: {accuracy: 1.0, language: 0.2}\n"))
    out = json.loads(_cli("status", str(edited), f"run_dir={run}", "--json").stdout)
    shown = {r["stage"]: r["status"] for r in out["stages"]}
    assert shown == {"r1_zero": "finished", "cold_start": "finished", "reasoning_rl": "stale",
                     "reject_sample": "stale", "all_scenario_rl": "stale", "distill": "stale"}
    table = _cli("status", str(edited), f"run_dir={run}").stdout
    assert table.count("stale") >= 4


def _wait_and_kill(proc: subprocess.Popen, run: Path, stage: str, delay: float,
                   deadline: float) -> str:
    """SIGKILL the run `delay` s after `stage` is seen running (or once it is past it);
    returns where the kill landed."""
    seen = None
    while time.time() < deadline and proc.poll() is None:
        state_file = run / stage / "stage.json"
        status = json.loads(state_file.read_text())["status"] if state_file.exists() else None
        if status in ("running", "finished") and seen is None:
            seen = time.time()
        if seen is not None and time.time() - seen >= delay:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        return "finished before the kill"
    landed = next((s for s in STAGES if (run / s / "stage.json").exists() and json.loads(
        (run / s / "stage.json").read_text())["status"] == "running"), "between stages / eval")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return landed


@pytest.mark.slow
def test_killed_ten_times_anywhere_resumes_to_the_uninterrupted_artifacts(
        baseline: tuple[Path, float], cache: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    base_run, _ = baseline
    run = tmp_path / "run"
    rng = random.Random(20261201)
    # ten moments across all six stages: each stage once, four more anywhere, in run order
    targets = sorted(STAGES + rng.choices(STAGES, k=4), key=STAGES.index)
    landed = []
    for stage in targets:
        proc = subprocess.Popen(
            [sys.executable, "-m", "r1pipe.cli", "run", str(SMOKE), f"run_dir={run}"], cwd=REPO,
            env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        landed.append(_wait_and_kill(proc, run, stage, rng.uniform(0.0, 1.5),
                                     time.time() + 600))
    stages_hit = {s for s in landed if s in STAGES}
    assert len(stages_hit) >= 4, landed  # the kills really were spread over the stages
    _cli("run", str(SMOKE), f"run_dir={run}", cache=cache)

    states, base_states = _states(run), _states(base_run)
    assert {s: st["status"] for s, st in states.items()} == dict.fromkeys(STAGES, "finished")
    assert {s: st["fingerprint"] for s, st in states.items()} == {
        s: st["fingerprint"] for s, st in base_states.items()}
    assert sum(st["attempts"] for st in states.values()) > len(STAGES), landed
    ids, base_ids = _artifact_ids(run), _artifact_ids(base_run)
    assert ids.keys() == base_ids.keys()
    for folder, got in ids.items():
        assert len(got) == len(set(got)), f"{folder}: duplicate records"
        assert sorted(got) == sorted(base_ids[folder]), folder
    models = _model_dirs(run)
    assert [m.relative_to(run) for m in models] == [m.relative_to(base_run)
                                                   for m in _model_dirs(base_run)]
    for folder in models:
        loader = (AutoModelForSequenceClassification if folder.name == "reward_model"
                  else AutoModelForCausalLM)
        loader.from_pretrained(folder)
