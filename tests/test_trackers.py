"""Health verdicts, gate results and dynamic-sampling counts reach the experiment trackers,
for real: one run through the CLI on r1pipe's tiny model (a GRPO stage with dynamic
sampling, a health rule that fires and a gate that passes) reporting to TensorBoard, wandb
(offline mode: its run files are read back) and MLflow (a local file store, read back with
MLflow's own client). The trainer's own per-step logs and r1pipe's stage numbers both count.
"""

from __future__ import annotations

import glob
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, cli_env, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

BODY = """\
tracking: {report_to: [tensorboard, wandb, mlflow]}
eval:
  after_each_stage: true
  samples: 1
  max_new_tokens: 4
  benchmarks:
    arith: {builtin: arithmetic, split: test, test_size: 2}
stages:
  r1_zero:
    from: base
    data: reasoning
    rewards:
      rare: {reward: "tests.test_dynamic_sampling:rare"}
    dynamic_sampling: {oversample: 2, max_rounds: 4}
    health: {length_pinned: {window: 1}}
    gate: {benchmark: arith, min_delta_se: -1}
    trainer: {max_steps: 2, per_device_train_batch_size: 8, num_generations: 4,
              max_completion_length: 8, save_steps: 50}
"""


def wandb_history(folder: Path) -> dict[str, list[float]]:
    """Every history value of the offline runs under `folder`, by key, read from wandb's
    own run files (`run-<id>.wandb`: a header, then records in 32 KiB blocks, each with a
    7-byte header: checksum, length, type; a record is a protobuf `Record`)."""
    from wandb.proto import wandb_internal_pb2 as pb

    out: dict[str, list[float]] = {}
    for file in sorted(glob.glob(str(folder / "wandb" / "*" / "run-*.wandb"))):
        data = Path(file).read_bytes()
        pos, block, buf = 7, 32768, b""
        while pos + 7 <= len(data):
            if block - pos % block < 7:
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            if length == 0 and kind == 0:
                break
            buf += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # a whole record, or the last part of one
                record = pb.Record()
                record.ParseFromString(buf)
                buf = b""
                if record.WhichOneof("record_type") == "history":
                    for item in record.history.item:
                        key = item.key or "/".join(item.nested_key)
                        out.setdefault(key, []).append(json.loads(item.value_json))
    return out


def mlflow_metrics(store: Path, run_name: str) -> dict[str, float]:
    code = ("import json, mlflow; mlflow.set_experiment('trk'); runs = mlflow.search_runs("
            f"filter_string=\"tags.mlflow.runName = '{run_name}'\", output_format='list'); "
            "print(json.dumps([r.data.metrics for r in runs]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=True, env=_env(store))
    merged: dict[str, float] = {}
    for metrics in json.loads(out.stdout.strip().splitlines()[-1]):
        merged.update(metrics)
    return merged


def _env(tmp_path: Path) -> dict[str, str]:
    return cli_env(WANDB_MODE="offline", WANDB_DIR=str(tmp_path), WANDB_SILENT="true",
                   MLFLOW_TRACKING_URI=(tmp_path / "mlruns").as_uri(),
                   MLFLOW_ALLOW_FILE_STORE="true", PYTHONPATH=str(REPO))


@pytest.mark.slow
def test_verdicts_and_counts_reach_wandb_mlflow_and_tensorboard(tmp_path: Path) -> None:
    from tests.test_tracking import _tb_scalars

    cfg = write_pipeline(tmp_path, "trk", BODY, seed=11, generation="{backend: hf, "
                         "max_new_tokens: 8}", data={"reasoning": "{builtin: reasoning, "
                                                     "size: 24, test_size: 0, difficulty: 1}"})
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)], cwd=tmp_path,
                         env=_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "run"
    state = json.loads((run / "r1_zero/stage.json").read_text())
    sampled = state["summary"]["dynamic sampling groups sampled"]
    assert state["summary"]["health length_pinned"].startswith("warn at step 1")
    assert json.loads((run / "r1_zero/gate.json").read_text())["status"] == "passed"
    stage_numbers = {"health/length_pinned": 1.0, "gate/passed": 1.0,
                     "summary/dynamic_sampling_groups_sampled": float(sampled)}

    history = wandb_history(tmp_path)
    for key, value in stage_numbers.items():
        assert value in history.get(key, []), (key, sorted(history))
    # the trainer's own per-step logs: dynamic sampling's counts, the health verdict
    assert len(history["train/dynamic_sampling/groups_sampled"]) == 2
    assert sum(history["train/dynamic_sampling/groups_sampled"]) == sampled
    assert history["train/health/length_pinned"] == [1, 1]

    metrics = mlflow_metrics(tmp_path, "trk/r1_zero")
    for key, value in stage_numbers.items():
        assert metrics.get(key) == value, (key, sorted(metrics))
    assert metrics["dynamic_sampling/total_groups_sampled"] == sampled
    assert metrics["health/length_pinned"] == 1.0
    assert metrics["eval/arith/pass_at_1"] == 0.0  # "@" is no MLflow name character

    # the result card: the stage's tokens and counts, its gate and health lines
    card = json.loads((run / "RESULTS.json").read_text())["stages"][0]
    assert card["tokens_sampled"] == state["summary"]["dynamic sampling tokens sampled"]
    assert card["tokens_trained"] == state["summary"]["dynamic sampling tokens trained"]
    assert 0 < card["tokens_trained"] < card["tokens_sampled"]
    assert card["dynamic_sampling"]["groups sampled"] == sampled
    assert card["gate"]["status"] == "passed"
    assert card["health"]["length_pinned"].startswith("warn at step 1")
    model_card = (run / "r1_zero/model/README.md").read_text()
    assert "- dynamic sampling:" in model_card and "- gate: passed" in model_card
    assert "| r1_zero | finished |" in (run / "RESULTS.md").read_text()

    tb = _tb_scalars(run / "tensorboard" / "trk" / "r1_zero")
    for key, value in stage_numbers.items():
        assert tb.get(key) == [value], (key, sorted(tb))
