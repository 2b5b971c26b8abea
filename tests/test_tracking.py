"""Experiment tracking: `tracking:` reaches every trainer; eval results, the rejection
funnel, generation tokens/s and wall time reach the same runs; model cards carry the eval
results as `model-index`; known-harmless warnings stay off the terminal but in stage.log.

TensorBoard and trackio run for real (offline, local files) and are read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, load_text, tensorboard_dir
from r1pipe.tracking import stage_scalars
from tests.helpers import REPO, cli_env, pipeline_header

SECRET = "hf_SECRETtokenXYZ123"


def _tb_scalars(folder: Path) -> dict[str, list[float]]:
    """Every scalar of every event file under `folder`, by tag."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[float]] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend(e.value for e in acc.Scalars(tag))
    return out


def _trackio_keys(trackio_dir: Path, project: str, run: str) -> set[str]:
    """The metric names trackio stored for a run, read by trackio itself in a process whose
    TRACKIO_DIR is `trackio_dir` (trackio reads the variable once, at import)."""
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
            "print(json.dumps(sorted({k for line in SQLiteStorage.get_logs(sys.argv[1], "
            "sys.argv[2]) for k in line})))")
    proc = subprocess.run([sys.executable, "-c", code, project, run], capture_output=True,
                          text=True, check=True, timeout=120,
                          env=cli_env(TRACKIO_DIR=str(trackio_dir)))
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


def _config(tmp_path: Path, trackers: str):
    text = pipeline_header("tracked", tmp_path / "run") + f"tracking: {{report_to: {trackers}}}\n"
    return load_text(text)


# ---------------------------------------------------------------------------- fast checks

def test_unknown_tracker_is_a_config_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown tracker 'tensorbord'; did you mean "
                       "'tensorboard'"):
        _config(tmp_path, "[tensorbord]")
    assert _config(tmp_path, "wandb").tracking.report_to == ["wandb"]
    assert _config(tmp_path, "none").tracking.report_to == []


def test_stage_scalars_read_the_funnel_throughput_and_wall_time(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(json.dumps(m) for m in [
        {"job": "sampling", "chunk": 0, "tokens": 300, "seconds": 2.0, "tokens_per_second": 150},
        {"job": "sampling", "chunk": 1, "tokens": 100, "seconds": 2.0, "tokens_per_second": 50},
        {"step": 1, "loss": 0.5}]) + "\n")
    state = {"started": 100.0, "ended": 160.5, "summary": {
        "reasoning samples": 16, "reasoning kept": 3, "reasoning removed by format": 9,
        "reasoning removed by language mix": 4, "mix general": 8, "note": "text is skipped"}}
    assert stage_scalars(state, metrics) == {
        "stage/wall_time_s": 60.5, "funnel/reasoning/generated": 16.0,
        "funnel/reasoning/kept": 3.0, "funnel/reasoning/removed_by/format": 9.0,
        "funnel/reasoning/removed_by/language_mix": 4.0, "summary/mix_general": 8.0,
        "generation/tokens_per_s": 100.0, "generation/tokens": 400.0}


def test_scalars_reach_tensorboard_and_trackio(tmp_path: Path) -> None:
    # in a process of its own: trackio reads TRACKIO_DIR once, when it is imported
    code = f"""
from r1pipe.tracking import log_scalars
from tests.test_tracking import _config
from pathlib import Path
config = _config(Path({str(tmp_path)!r}), "[tensorboard, trackio]")
log_scalars(config, "reject_sample", {{"funnel/reasoning/kept": 3.0}}, step=2)
log_scalars(config, "reject_sample", {{"eval/arithmetic/pass@1": 0.25}}, step=2)
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300, cwd=REPO,
                   env=cli_env(TRACKIO_DIR=str(tmp_path / "trackio"), PYTHONPATH=str(REPO)))
    tb = _tb_scalars(tensorboard_dir((tmp_path / "run").resolve(), "tracked", "reject_sample"))
    assert tb == {"funnel/reasoning/kept": [3.0], "eval/arithmetic/pass@1": [0.25]}
    keys = _trackio_keys(tmp_path / "trackio", "tracked", "tracked/reject_sample")
    assert {"funnel/reasoning/kept", "eval/arithmetic/pass@1"} <= keys


def test_card_gets_model_index_the_hub_parses(tmp_path: Path) -> None:
    from huggingface_hub import ModelCard

    from r1pipe.checkpoints import ModelCardInfo, render_card, set_card_eval_results

    (tmp_path / "README.md").write_text(render_card(ModelCardInfo(stage="r1_zero",
                                                                  pipeline="p")))
    results = [("gsm8k", "pass@1", 0.41), ("gsm8k", "cons@k", 0.5), ("math", "pass@1", 0.2)]
    assert set_card_eval_results(tmp_path, "p/r1_zero", results)
    assert not set_card_eval_results(tmp_path, "p/r1_zero", results)  # already there
    card = ModelCard.load(tmp_path / "README.md")
    assert [(r.dataset_name, r.metric_type, r.metric_value) for r in card.data.eval_results] \
        == results
    assert card.data.model_name == "p/r1_zero"
    assert "# p: r1_zero" in card.text  # the body is kept


def test_harmless_warnings_leave_the_terminal_for_stage_log(tmp_path: Path) -> None:
    code = """
import logging, warnings
from r1pipe.quiet import install, stage_log
install(False)
with stage_log('LOG'):
    warnings.warn('TRL currently supports vLLM versions from 0.22.0 to 0.31.0.', UserWarning)
    logging.getLogger('vllm.triton_utils').warning(
        "Triton is installed, but doesn't include CPU backend. Disabling Triton.")
    logging.getLogger('somelib').warning('disk almost full')
    from r1pipe.secrets import register_config_secrets
    register_config_secrets({'judge': {'api_key': 'sk-not-a-real-key-1234567890'}})
    logging.getLogger('somelib').info('calling http://judge/?key=sk-not-a-real-key-1234567890')
""".replace("LOG", str(tmp_path / "stage.log"))
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=cli_env(PYTHONPATH=str(REPO)), timeout=120)
    assert quiet.stderr.strip().splitlines() == ["WARNING [somelib] disk almost full"]
    log = (tmp_path / "stage.log").read_text()
    assert "TRL currently supports vLLM" in log and "Triton is installed" in log
    assert "disk almost full" in log
    assert "calling http://judge/?key=***" in log and "sk-not-a-real" not in log
    loud = subprocess.run([sys.executable, "-c", code.replace("install(False)",
                                                              "install(True)")],
                          capture_output=True, text=True, env=cli_env(PYTHONPATH=str(REPO)),
                          timeout=120)
    assert "TRL currently supports vLLM" in loud.stderr and "Triton" in loud.stderr


def test_stage_log_without_install_keeps_warnings_on_stderr(tmp_path: Path) -> None:
    """r1pipe used as a library (no `install`): the file handler must not swallow what
    Python would have printed to stderr."""
    code = """
import logging
from r1pipe.quiet import stage_log
with stage_log('LOG'):
    logging.getLogger('somelib').warning('visible')
""".replace("LOG", str(tmp_path / "stage.log"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env(PYTHONPATH=str(REPO)), timeout=120)
    assert "visible" in proc.stderr
    assert "visible" in (tmp_path / "stage.log").read_text()


# ----------------------------------------------------------------- the smoke pipeline

@pytest.mark.slow
def test_smoke_run_reports_to_tensorboard_and_trackio(tmp_path: Path) -> None:
    """configs/smoke.yaml with `tracking: {report_to: [tensorboard, trackio]}` (and a Hub
    token in a trainer section, which must reach no tracker file)."""
    from huggingface_hub import ModelCard

    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "r1pipe.cli", "run", "configs/smoke.yaml", f"run_dir={run}",
         "tracking.report_to=[tensorboard,trackio]", f"stages.r1_zero.trainer.hub_token={SECRET}"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
        env=cli_env(R1PIPE_CACHE=str(tmp_path / "cache"), TRACKIO_DIR=str(tmp_path / "trackio"),
                    PYTHONPATH=str(REPO), COLUMNS="120"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trained = ["r1_zero", "cold_start", "reasoning_rl", "reject_sample", "all_scenario_rl",
               "distill"]
    for stage in trained:
        tb = _tb_scalars(run / "tensorboard" / "smoke" / stage)
        trk = _trackio_keys(tmp_path / "trackio", "smoke", f"smoke/{stage}")
        for keys in (set(tb), trk):
            assert "train/loss" in keys, (stage, sorted(keys))
            assert "stage/wall_time_s" in keys
            assert any(k.startswith("eval/") and k.endswith("arithmetic/pass@1")
                       for k in keys), (stage, sorted(keys))
        for state_file in [run / stage / "stage.json"]:
            assert json.loads(state_file.read_text())["status"] == "finished"
        assert (run / stage / "stage.log").is_file()
    funnel = _tb_scalars(run / "tensorboard" / "smoke" / "reject_sample")
    summary = json.loads((run / "reject_sample" / "stage.json").read_text())["summary"]
    assert funnel["funnel/reasoning/generated"] == [float(summary["reasoning samples"])]
    assert funnel["funnel/reasoning/kept"] == [float(summary["reasoning kept"])]
    assert {"funnel/reasoning/kept", "generation/tokens_per_s"} <= set(funnel)
    assert "funnel/reasoning/generated" in _trackio_keys(tmp_path / "trackio", "smoke",
                                                         "smoke/reject_sample")
    assert "eval/arithmetic/pass@1" in _tb_scalars(run / "tensorboard" / "smoke" / "base")
    # model cards: the Hub's parser finds the results
    cards = sorted(run.glob("*/model/README.md")) + sorted(run.glob("distill/*/model/README.md"))
    assert len(cards) >= 6
    for card_path in cards:
        card = ModelCard.load(card_path)
        assert card.data.eval_results, card_path
        assert {r.metric_type for r in card.data.eval_results} >= {"pass@1", "cons@k"}
    # the harmless TRL warning went to the log, not to the terminal
    assert "TRL currently supports vLLM" not in proc.stdout + proc.stderr
    assert "TRL currently supports vLLM" in (run / "r1_zero" / "stage.log").read_text()
    # no secret in any file a tracker or r1pipe wrote
    for path in [*run.rglob("*"), *(tmp_path / "trackio").rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
