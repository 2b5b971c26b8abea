"""A small real stage the engine tests load through `stage_modules:`.

It does real, checkable work with the machinery the recipe stages use (sharded JSONL,
trainer-style checkpoints, metrics), slowly enough to be killed in the middle.
"""

from __future__ import annotations

import os
import time

from pydantic import Field

from r1pipe.artifacts import ShardedJsonlWriter
from r1pipe.config import StageConfig
from r1pipe.contract import StageContext, StageResult

NAME = "squares"


class Config(StageConfig):
    count: int = Field(100, gt=0)
    shard_size: int = Field(10, gt=0)
    delay: float = Field(0.0, ge=0)


def run(ctx: StageContext) -> StageResult:
    cfg: Config = ctx.config
    writer = ShardedJsonlWriter(ctx.data_dir("squares"))
    shards = range((cfg.count + cfg.shard_size - 1) // cfg.shard_size)
    for index in shards:
        if index in writer.finished or not ctx.owns(index):
            continue
        with writer.shard(index) as sink:
            for i in range(index * cfg.shard_size, min(cfg.count, (index + 1) * cfg.shard_size)):
                sink.write({"id": f"sq-{i:05d}", "prompt": f"{i}^2", "value": i * i,
                            "pid": os.getpid()})
                time.sleep(cfg.delay)
    if ctx.shard is not None:  # another process merges once every part is done
        return StageResult(summary={"written": writer.manifest.records})
    writer.finalize(expected_shards=len(shards))
    return StageResult(summary={"records": writer.manifest.records},
                       artifacts={"squares": "data/squares"})
