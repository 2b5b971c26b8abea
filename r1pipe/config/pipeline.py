"""`PipelineConfig`: the whole pipeline file, the one model every other section hangs off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, PrivateAttr, field_validator

from r1pipe.config.eval import EvalConfig
from r1pipe.config.sections import GenerationConfig, LaunchConfig, Section
from r1pipe.config.stage import StageConfig
from r1pipe.config.tracking import TrackingConfig
from r1pipe.data.sources import DataSourceConfig
from r1pipe.models import ModelSpec


class PipelineConfig(Section):
    """The whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    run_dir: str | None = Field(None, description="default: runs/<name>")
    seed: int = Field(42, ge=0, lt=2**32, description="numpy and torch take 0 <= seed < 2**32")
    base_model: ModelSpec
    data: dict[str, DataSourceConfig] = Field(default_factory=dict)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    trust_remote_code: bool = False
    # Extra stage modules (importable names) for stages of your own; see README.
    stage_modules: list[str] = Field(default_factory=list)
    # Validated per stage by the stage's own Config class (see `load`).
    stages: dict[str, Any] = Field(default_factory=dict)

    # Where the file came from, for messages. Not part of the YAML.
    _source_path: str | None = PrivateAttr(None)

    @field_validator("stages")
    @classmethod
    def _stages_are_mappings(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, section in value.items():
            if section is not None and not isinstance(section, (dict, StageConfig)):
                raise ValueError(f"stage {key!r} must be a mapping of settings")
        return value

    @property
    def source_path(self) -> str | None:
        return self._source_path

    @property
    def remote_code(self) -> bool:
        """`trust_remote_code: true` at the top or on `base_model`: models of this pipeline
        may run the modelling code they ship (applied by `apply_process_settings`)."""
        return self.trust_remote_code or self.base_model.trust_remote_code

    def apply_process_settings(self) -> None:
        """What the pipeline decides for the whole process that runs it (the CLI, the engine
        and each launched worker call this once after loading)."""
        from r1pipe.models import allow_remote_code

        allow_remote_code(self.remote_code)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def stage(self, name: str) -> StageConfig:
        return self.stages[name]

    def enabled_stages(self) -> list[str]:
        return [name for name, section in self.stages.items() if section.enabled]


# ---------------------------------------------------------------------------------------
