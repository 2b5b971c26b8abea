"""Fingerprints track results only: operational settings skip, result settings re-run the
stage and everything downstream, data files count by content, and a run dir written by
r1pipe 0.x (the fingerprint before this split) is recognised without re-running."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from r1pipe.artifacts import fingerprint
from r1pipe.config import (
    BASE,
    OPERATIONAL_GENERATION_KEYS,
    OPERATIONAL_TRAINER_KEYS,
    PipelineConfig,
    load,
)
from r1pipe.pipeline import execute, plan
from r1pipe.state import read_state
from tests.helpers import write_pipeline

BODY = """\
stages:
  settings_probe:
    data: prompts
    count: 4
    trainer: {learning_rate: 1.0e-6, logging_steps: 1, max_steps: 3}
  steps:
    data: settings_probe:rows
    steps: 2
    save_every: 1
"""


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path / "cache"))


def _pipeline(tmp_path: Path) -> Path:
    data = tmp_path / "prompts.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({"prompt": f"p{i}", "answer": str(i)}) + "\n"
                                for i in range(6)))
    return write_pipeline(tmp_path, "fptest", BODY, base_model="my-org/tiny-model",
                          stage_modules=["tests.stage_settings", "tests.stage_steps"],
                          data={"prompts": f"{{path: {data}}}"})


def _finished(tmp_path: Path) -> Path:
    cfg = _pipeline(tmp_path)
    execute(plan(load(cfg)))
    return cfg


def _plan(cfg: Path, *overrides: str):
    return plan(load(cfg, list(overrides)))


OPERATIONAL = [
    "stages.settings_probe.trainer.logging_steps=50",
    "stages.settings_probe.trainer.save_steps=7",
    "stages.settings_probe.trainer.save_total_limit=2",
    "stages.settings_probe.trainer.report_to=[tensorboard]",
    "stages.settings_probe.trainer.run_name=other",
    "stages.settings_probe.trainer.dataloader_num_workers=4",
    "stages.settings_probe.trainer.output_dir=/elsewhere",
    "stages.settings_probe.trainer.disable_tqdm=true",
    "stages.settings_probe.trainer.hub_model_id=me/model",
    "stages.settings_probe.trainer.log_completions=true",
    "stages.settings_probe.launch.num_processes=1",
    "stages.settings_probe.push_to_hub=me/model",
    "generation.base_urls=[http://a:8000/v1,http://b:8000/v1]",
    "generation.max_concurrency=999",
    "generation.timeout=30",
    "generation.max_retries=1",
    "generation.api_key_env=MY_KEY",
    "generation.vllm.gpu_memory_utilization=0.5",
]

RESULT = [
    "stages.settings_probe.trainer.learning_rate=2.0e-6",
    "stages.settings_probe.trainer.max_steps=4",
    "stages.settings_probe.trainer.num_generations=4",
    "stages.settings_probe.trainer.max_completion_length=64",
    "stages.settings_probe.trainer.seed=7",
    "stages.settings_probe.trainer.dataloader_drop_last=true",
    "stages.settings_probe.count=5",
    "seed=1",
    "generation.temperature=1.0",
    "generation.max_new_tokens=64",
    "generation.backend=vllm",
]


def test_each_operational_setting_skips_and_says_so(tmp_path: Path) -> None:
    cfg = _finished(tmp_path)
    for override in OPERATIONAL:
        the_plan = _plan(cfg, override)
        actions = {s.name: s.action for s in the_plan.stages}
        assert actions == {"settings_probe": "skip", "steps": "skip"}, override
        key = override.split("=")[0].removeprefix("stages.settings_probe.")
        reason = the_plan["settings_probe"].reason
        assert reason.startswith("finished; settings changed that do not affect results: ")
        assert key.split(".")[-1] in reason, (override, reason)
    assert _plan(cfg)["settings_probe"].reason == "finished; fingerprint matches"


def test_each_result_setting_reruns_the_stage_and_downstream(tmp_path: Path) -> None:
    cfg = _finished(tmp_path)
    for override in RESULT:
        actions = {s.name: s.action for s in _plan(cfg, override).stages}
        assert actions == {"settings_probe": "stale", "steps": "stale"}, override


def test_the_tables_name_real_settings() -> None:
    """A typo in the operational tables would silently fingerprint the real key."""
    import trl

    fields = {f.name for cls in (trl.GRPOConfig, trl.SFTConfig)
              for f in dataclasses.fields(cls)}
    assert set(OPERATIONAL_TRAINER_KEYS) <= fields, set(OPERATIONAL_TRAINER_KEYS) - fields
    from r1pipe.config import GenerationConfig

    assert set(OPERATIONAL_GENERATION_KEYS) <= set(GenerationConfig.model_fields)


def test_data_files_count_by_content(tmp_path: Path) -> None:
    cfg = _finished(tmp_path)
    data = tmp_path / "prompts.jsonl"
    later = time.time() + 100
    os.utime(data, (later, later))  # `touch`
    assert {s.action for s in _plan(cfg).stages} == {"skip"}
    copy = data.read_bytes()
    data.unlink()
    data.write_bytes(copy)  # a fresh copy of the same bytes
    assert {s.action for s in _plan(cfg).stages} == {"skip"}
    data.write_text(copy.decode() + json.dumps({"prompt": "new", "answer": "1"}) + "\n")
    assert {s.name: s.action for s in _plan(cfg).stages} == {"settings_probe": "stale",
                                                               "steps": "stale"}
    cache = json.loads((tmp_path / "cache" / "file-sha256.json").read_text())
    assert str(data.resolve()) in cache


# ----------------------------------------------------------- run dirs of r1pipe 0.x

def _old_source_identity(source: Any) -> dict[str, Any]:
    ident: dict[str, Any] = {"config": source.model_dump(mode="json")}
    p = Path(source.path)
    files = sorted(p.rglob("*")) if p.is_dir() else [p]
    ident["files"] = [(str(f), f.stat().st_size, int(f.stat().st_mtime))
                      for f in files[:10_000] if f.is_file()]
    return ident


def _old_fingerprints(config: PipelineConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """What r1pipe 0.x (`git show HEAD~2:r1pipe/pipeline.py`) wrote: section minus four keys,
    the whole `generation:` block, data files by size and mtime."""
    from r1pipe.graph import stage_order
    from r1pipe.models import fingerprint as model_fingerprint

    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name in stage_order(config):
        section = config.stages[name]
        ident: dict[str, Any] = {
            "stage": name,
            "section": section.model_dump(mode="json", by_alias=True,
                                          exclude={"enabled", "launch", "push_to_hub", "shard"}),
            "seed": config.seed, "trust_remote_code": config.trust_remote_code}
        for global_name in getattr(type(section), "global_sections", ()):
            ident[global_name] = getattr(config, global_name).model_dump(mode="json")
        inputs = {}
        for inp in section.inputs():
            if inp.kind == "model" and inp.value == BASE:
                inputs[inp.field] = "model:" + model_fingerprint(config.base_model)
            elif inp.stage is not None:
                inputs[inp.field] = f"stage:{inp.stage}:{out[inp.stage][0]}:{inp.artifact}"
            else:
                inputs[inp.field] = "data:" + fingerprint(
                    _old_source_identity(config.data[inp.value]))
        out[name] = (fingerprint({"identity": ident, "inputs": inputs}), ident)
    return out


def _as_written_by_0x(cfg: Path) -> dict[str, str]:
    config = load(cfg)
    the_plan = plan(config)
    old = _old_fingerprints(config)
    for name, (fp, ident) in old.items():
        path = the_plan.layout.stage_dir(name) / "stage.json"
        state = json.loads(path.read_text())
        for key in ("fingerprint_version", "settings"):
            state.pop(key)
        state.update(fingerprint=fp, identity=ident)
        path.write_text(json.dumps(state))
    return {name: fp for name, (fp, _) in old.items()}


def test_run_dir_of_the_previous_version_is_not_rerun(tmp_path: Path) -> None:
    cfg = _finished(tmp_path)
    old = _as_written_by_0x(cfg)
    the_plan = _plan(cfg)
    assert {s.action for s in the_plan.stages} == {"skip"}
    assert all(the_plan[n].fingerprint != fp for n, fp in old.items())  # really migrated
    # an operational change made together with the upgrade skips too
    assert {s.action for s in _plan(cfg, "generation.max_concurrency=3").stages} == {"skip"}
    # ... a result change does not
    assert _plan(cfg, "stages.steps.steps=3")["steps"].action == "stale"
    # the first run records today's fingerprints, keeping the old one for evaluations
    execute(the_plan)
    layout = the_plan.layout
    for name, fp in old.items():
        state = read_state(layout, name)
        assert state["fingerprint"] == the_plan[name].fingerprint
        assert state["legacy_fingerprint"] == fp and state["fingerprint_version"] == 2
    assert {s.action for s in _plan(cfg).stages} == {"skip"}


def test_old_run_dir_with_a_changed_result_setting_reruns(tmp_path: Path) -> None:
    cfg = _finished(tmp_path)
    _as_written_by_0x(cfg)
    data = tmp_path / "prompts.jsonl"
    data.write_text(data.read_text() + json.dumps({"prompt": "x"}) + "\n")
    assert {s.action for s in _plan(cfg).stages} == {"stale"}


@pytest.mark.slow
def test_cli_status_and_dry_run_name_the_operational_changes(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.helpers import REPO, cli_env

    cfg = _finished(tmp_path)
    env = cli_env(COLUMNS="250", R1PIPE_CACHE=str(tmp_path / "cache"))
    for command in ("status", "run"):
        args = [command, str(cfg), "stages.settings_probe.trainer.logging_steps=10",
                "generation.max_concurrency=3", *(["--dry-run"] if command == "run" else [])]
        proc = subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "settings changed that do not affect results: generation.max_concurrency, " \
            "trainer.logging_steps" in proc.stdout, proc.stdout
        assert "stale" not in proc.stdout
