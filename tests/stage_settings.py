"""A stage with the settings surface of a recipe stage, loaded by the fingerprint tests.

It has a TRL `trainer:` mapping (checked against GRPOConfig), reads the global
`generation:` block and a data source, and writes an artifact a downstream stage reads, so
the tests can change every kind of setting and watch what the plan does.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from r1pipe.artifacts import ShardedJsonlWriter
from r1pipe.config import DataRef, StageConfig
from r1pipe.contract import StageContext, StageResult

NAME = "settings-probe"


class Config(StageConfig):
    trainer_class: ClassVar[str | None] = "GRPOConfig"
    global_sections: ClassVar[tuple[str, ...]] = ("generation",)

    data: DataRef = "prompts"
    count: int = Field(5, gt=0)


def run(ctx: StageContext[Config]) -> StageResult:
    """Writes `count` records whose values depend on the data file's line count."""
    source = ctx.pipeline.data[ctx.input("data")]
    with open(source.path or "", encoding="utf-8") as fh:
        lines = sum(1 for _ in fh)
    writer = ShardedJsonlWriter(ctx.data_dir("rows"))
    if 0 not in writer.finished:
        with writer.shard(0) as sink:
            for i in range(ctx.config.count):
                sink.write({"id": f"r{i}", "value": i * lines})
    writer.finalize(expected_shards=1)
    return StageResult(summary={"records": writer.manifest.records},
                       artifacts={"rows": "data/rows"})
