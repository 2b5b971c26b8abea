"""The stage contract: what a stage is given, what it returns, and how it fails.

The role torchtune's `recipe_interfaces.py` plays. A stage is a module (or any object) with
`NAME`, `Config` and `run(ctx)`; the engine (`r1pipe.pipeline`) builds a `StageContext`,
calls `run`, and records the `StageResult` in the stage's `stage.json`. Launched workers
(`r1pipe.launch`) build the same context in each process. Everything else in r1pipe depends
on this module, and this module on nothing heavy: config and layout types are imported only
for type checking, so stages, the engine, launch and evaluation can all import it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

# BadInput is defined with the config errors that derive from it (the layer above); it is
# part of the stage contract, so it is re-exported here.
from r1pipe.config.errors import BadInput
from r1pipe.state import MetricsLogger, latest_checkpoint

if TYPE_CHECKING:
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig, StageConfig

__all__ = ["BadInput", "ResumeInfo", "Shard", "Stage", "StageContext", "StageFailed", "StageResult"]


class StageFailed(Exception):
    """A stage raised; its stage.json says `failed` and the next run resumes it."""


@dataclass
class ResumeInfo:
    """What an interrupted earlier attempt left behind."""

    previous_status: str | None = None
    last_checkpoint: Path | None = None


@dataclass(frozen=True)
class Shard:
    """`--shard i/N`: this process does part i of N of a stage's generation work.

    Work is split by chunk index (chunk k belongs to shard k mod N), so N machines sharing
    the run dir each write their own JSONL shards; a later run without --shard finds every
    chunk done, checks none is missing, and carries on (filter, mix, train).
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise BadInput(f"--shard {text!r} must look like i/N, e.g. 0/4") from None
        if count < 1 or not 0 <= index < count:
            raise BadInput(f"--shard {text!r}: need 0 <= i < N")
        return cls(index, count)

    def owns(self, chunk: int) -> bool:
        return chunk % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass
class StageResult:
    """What a stage reports: headline metrics (model card, status table) and its artifacts."""

    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # name -> path relative to stage dir


C = TypeVar("C", bound="StageConfig")


@dataclass
class StageContext(Generic[C]):
    """Everything a stage needs; built by the engine (or a launched worker process).

    Generic over the stage's own config class, so `ctx.config` is typed in a stage:
    `def run(ctx: StageContext[Config]) -> StageResult`.
    """

    name: str
    config: C
    pipeline: PipelineConfig
    layout: RunLayout
    inputs: dict[str, str]  # field key path ("from", "data") -> path, Hub id or source name
    resume: ResumeInfo
    fingerprint: str
    shard: Shard | None = None  # set by --shard i/N: do only this part of the generation
    part: str | None = None  # one separately trained part of the stage; see `for_part`

    def owns(self, chunk: int) -> bool:
        """Whether this process should produce chunk `chunk` (always, without --shard)."""
        return self.shard is None or self.shard.owns(chunk)

    def for_part(self, part: str, config: C | None = None) -> StageContext[C]:
        """The context of one model a stage trains among several (a distillation student).

        Its `model/`, `checkpoints/` (and so its resume point) live under `<stage>/<part>/`;
        `config` (default: the stage's) is what the trainer reads, e.g. with the part's own
        `trainer:` overrides; metrics go to the stage's metrics.jsonl with `"part": part`.
        Data artifacts stay the stage's.
        """
        sub = dataclasses.replace(self, part=part, config=config or self.config)
        sub.resume = ResumeInfo(self.resume.previous_status,
                                latest_checkpoint(sub.checkpoints_dir))
        return sub

    @property
    def stage_dir(self) -> Path:
        root = self.layout.stage_dir(self.name)
        return root / self.part if self.part else root

    @property
    def model_dir(self) -> Path:
        return self.stage_dir / "model" if self.part else self.layout.model_dir(self.name)

    @property
    def checkpoints_dir(self) -> Path:
        if self.part:
            return self.stage_dir / "checkpoints"
        return self.layout.checkpoints_dir(self.name)

    def data_dir(self, artifact: str) -> Path:
        return self.layout.data_dir(self.name, artifact)

    @property
    def metrics(self) -> MetricsLogger:
        return MetricsLogger(self.layout.metrics_file(self.name),
                             {"part": self.part} if self.part else None)

    @property
    def is_main_process(self) -> bool:
        """Only rank 0 writes shared state when a stage runs under `accelerate launch`."""
        return int(os.environ.get("RANK", "0")) == 0

    def input(self, key: str) -> str:
        try:
            return self.inputs[key]
        except KeyError:
            raise KeyError(f"stage {self.name} has no input {key!r} (has: "
                           f"{', '.join(self.inputs)})") from None


class Stage(Protocol):
    """What a stage module provides (`r1pipe.stages.r1_zero` is one; so is a user's own
    module named in `stage_modules:`)."""

    NAME: str
    Config: type[StageConfig]

    def run(self, ctx: StageContext[Any]) -> StageResult | None: ...
