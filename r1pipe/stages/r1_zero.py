"""R1-Zero: pure reinforcement learning from the base model.

No supervised data at all. The base model is prompted with the paper's template, which asks
for the reasoning inside <think> </think> and the answer inside <answer> </answer>; GRPO
samples a group of answers per question and rewards them by rules only, accuracy and
format, with no neural reward model to hack. The paper's result: the response length and
the accuracy grow together as the model learns to re-check its work.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from r1pipe.config import GRPOStageConfig, PromptSettings
from r1pipe.contract import StageContext, StageResult
from r1pipe.train import grpo_stage

NAME = "r1-zero"


class Config(GRPOStageConfig):
    prompts: PromptSettings = Field(default_factory=lambda: PromptSettings(template="r1_zero"))
    rewards: dict[str, Any] = Field(default_factory=lambda: {
        "accuracy": 1.0, "format": {"weight": 0.1, "variant": "r1_zero"}})


def run(ctx: StageContext[Config]) -> StageResult:
    return grpo_stage(ctx, description="R1-Zero: GRPO from the base model with rule-based "
                      "accuracy and format rewards and the R1-Zero template.")
