"""The six stages of the R1 recipe, one module each, in the paper's order.

This table is the one list of the recipe's stages: the registry looks modules up here, the
CLI makes one command per row with its help text, and the order breaks ties in the stage
graph. Importing this package imports no stage: a stage module (and its torch, TRL, vLLM)
loads on first use, so `r1pipe --help` stays instant.

A stage module follows the contract in `r1pipe.contract` (`NAME`, `Config`, `run(ctx)`);
a stage of its own needs no row here: see docs/architecture.md, "Adding a stage".
"""

from __future__ import annotations

from typing import NamedTuple


class RecipeStage(NamedTuple):
    module: str
    help: str


RECIPE: dict[str, RecipeStage] = {
    "r1_zero": RecipeStage(
        "r1pipe.stages.r1_zero",
        "Pure RL (GRPO) from the base model with rule rewards and the R1-Zero template."),
    "cold_start": RecipeStage(
        "r1pipe.stages.cold_start",
        "Collect readable long-CoT samples, then SFT the base model on them."),
    "reasoning_rl": RecipeStage(
        "r1pipe.stages.reasoning_rl",
        "GRPO on the cold-start model: accuracy, format and language consistency."),
    "reject_sample": RecipeStage(
        "r1pipe.stages.reject_sample",
        "Sample, keep correct and readable answers, add general data, SFT the base."),
    "all_scenario_rl": RecipeStage(
        "r1pipe.stages.all_scenario_rl",
        "GRPO over reasoning and general prompts: rule, reward-model and judge rewards."),
    "distill": RecipeStage(
        "r1pipe.stages.distill",
        "SFT one or more student models on the rejection-sampling data."),
}
