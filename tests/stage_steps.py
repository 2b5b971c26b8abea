"""A small real stage the engine tests load through `stage_modules:`.

It does real, checkable work with the machinery the recipe stages use (sharded JSONL,
trainer-style checkpoints, metrics), slowly enough to be killed in the middle.
"""

from __future__ import annotations

import json
import os
import time

from pydantic import Field

from r1pipe.artifacts import atomic_write_json, iter_records
from r1pipe.config import DataRef, StageConfig
from r1pipe.contract import StageContext, StageResult

NAME = "steps"


class Config(StageConfig):
    data: DataRef = "squares:squares"
    steps: int = Field(6, gt=0)
    save_every: int = Field(2, gt=0)
    delay: float = Field(0.0, ge=0)


def run(ctx: StageContext) -> StageResult:
    """A 'trainer': sums values step by step, checkpointing like HF Trainer does."""
    cfg: Config = ctx.config
    values = [r["value"] for r in iter_records(ctx.input("data"))]
    step, total = 0, 0
    if ctx.resume.last_checkpoint is not None:
        state = json.loads((ctx.resume.last_checkpoint / "trainer_state.json").read_text())
        step, total = state["global_step"], state["total"]
    started_at = step
    while step < cfg.steps:
        total += sum(values[step::cfg.steps])
        step += 1
        if ctx.is_main_process:
            ctx.metrics.log({"step": step, "total": total})
        time.sleep(cfg.delay)
        if step % cfg.save_every == 0 and ctx.is_main_process:
            ckpt = ctx.checkpoints_dir / f"checkpoint-{step}"
            ckpt.mkdir(parents=True, exist_ok=True)
            atomic_write_json(ckpt / "trainer_state.json", {"global_step": step, "total": total})
    if ctx.is_main_process:
        ctx.model_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(ctx.model_dir / "result.json",
                          {"total": total, "from": ctx.input("from")})
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return StageResult(summary={"total": total, "resumed_from_step": started_at,
                                "world_size": world},
                       artifacts={"model": "model"})
