"""The `tracking:` block and what the trackers read from the environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from r1pipe.config.locate import nearest
from r1pipe.config.sections import Section

if TYPE_CHECKING:
    from r1pipe.config.pipeline import PipelineConfig

TRACKERS: tuple[str, ...] = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub",
                             "dvclive", "flyte", "mlflow", "neptune", "swanlab", "tensorboard",
                             "trackio", "wandb")
"""The `report_to` names transformers' Trainer integrates (`transformers.integrations`)."""


class TrackingConfig(Section):
    """The `tracking:` block: one experiment tracker for the whole pipeline.

    Every trainer of every stage reports to it (TRL's `report_to`), each stage as one run
    named `<pipeline>/<stage>` in one group (`group`, default the pipeline name) of one
    project; evaluation results, the rejection-sampling funnel, generation throughput and
    stage wall time go to the same runs (`r1pipe.tracking`). A stage's own
    `trainer: {report_to: ...}` still wins for its trainer. Not fingerprinted: a tracker
    changes nothing a stage produces."""

    report_to: list[str] = Field(default_factory=list, description="tensorboard, wandb, "
                                 "trackio, mlflow, or any tracker transformers supports")
    project: str | None = Field(None, description="tracker project (default: the pipeline "
                                "name)")
    group: str | None = Field(None, description="run group (default: the pipeline name)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _known_trackers(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if isinstance(names, list):
            for name in names:
                if isinstance(name, str) and name not in TRACKERS and name not in ("none",
                                                                                  "all"):
                    hint = nearest(name, list(TRACKERS))
                    raise ValueError(f"unknown tracker {name!r}" + (
                        f"; did you mean {hint!r}?" if hint else
                        f"; transformers supports: {', '.join(TRACKERS)}"))
            return [n for n in names if n != "none"]
        return value

    def run_name(self, pipeline: str, stage: str) -> str:
        """The tracker run of one stage: `<pipeline>/<stage>`."""
        return f"{pipeline}/{stage}"

    def project_name(self, pipeline: str) -> str:
        return self.project or pipeline

    def group_name(self, pipeline: str) -> str:
        return self.group or pipeline


def tensorboard_dir(run_dir: Path, pipeline: str, stage: str) -> Path:
    """Where a stage's TensorBoard events go: `<run_dir>/tensorboard/<pipeline>/<stage>`, so
    `tensorboard --logdir <run_dir>/tensorboard` shows the stages as runs of one pipeline."""
    return Path(run_dir) / "tensorboard" / pipeline / stage


def tracker_environment(config: PipelineConfig, stage: str, run_key: str = ""
                        ) -> dict[str, str]:
    """Environment the trackers read for grouping (wandb's group, project and run id,
    MLflow's experiment, the TensorBoard log folder): set before a trainer is built, and
    read by `r1pipe.tracking` to log into the same run. `run_key` (the stage's fingerprint)
    makes a re-run of a changed stage a new wandb run."""
    import hashlib

    tr = config.tracking
    env: dict[str, str] = {}
    if "tensorboard" in tr.report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(
            tensorboard_dir(config.resolved_run_dir().resolve(), config.name, stage))
    if "wandb" in tr.report_to:
        run_id = hashlib.sha256(f"{config.resolved_run_dir().resolve()}|{stage}|{run_key}"
                                .encode()).hexdigest()[:16]
        env.update(WANDB_PROJECT=tr.project_name(config.name),
                   WANDB_RUN_GROUP=tr.group_name(config.name), WANDB_RUN_ID=run_id,
                   WANDB_RESUME="allow")
    if "mlflow" in tr.report_to:
        env.update(MLFLOW_EXPERIMENT_NAME=tr.project_name(config.name),
                   MLFLOW_RUN_NAME=tr.run_name(config.name, stage))
    return env
