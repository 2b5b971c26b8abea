"""Reasoning-oriented RL: GRPO on the cold-start model, plus language consistency.

The same large-scale RL as R1-Zero, but it starts from the cold-start checkpoint, whose
answers are readable (reasoning, then a summary). R1-Zero mixed languages in its chains of
thought; here a language-consistency reward, the share of target-language words in the
chain of thought, is added to the accuracy reward. It costs a little accuracy and buys
readability.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from r1pipe.config import GRPOStageConfig, ModelRef
from r1pipe.contract import StageContext, StageResult
from r1pipe.train import grpo_stage

NAME = "reasoning-rl"


class Config(GRPOStageConfig):
    from_: ModelRef = Field("cold_start", alias="from")
    rewards: dict[str, Any] = Field(default_factory=lambda: {
        "accuracy": 1.0,
        "format": {"weight": 0.1, "variant": "cold_start"},
        "language": {"weight": 0.2, "target": "auto"},
        # code samples (with test cases) are scored by their tests; None for math samples
        "code": 1.0,
    })


def run(ctx: StageContext[Config]) -> StageResult:
    return grpo_stage(ctx, description="Reasoning-oriented RL: GRPO on the cold-start model "
                      "with accuracy, format and language-consistency rewards.")
