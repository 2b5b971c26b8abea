"""The general-prompt reward of all-scenario RL, before and after: did the stage help?

The stage's GRPO logs the reward model's score on the general prompts it trains on, but a
rising training reward can be the policy overfitting its prompts or the reward model's
quirks. So after GRPO the stage asks the same held-out general prompts (the first
`reward_model.heldout_prompts` of the built-in general `test` split, which no stage trains
on) of its input model (`from`) and of its trained model, one answer each with the run's
generation settings and backend, rendered with the stage's prompt template, and scores every
answer with the rewards that use the stage's reward model, built as GRPO builds them (so
the number is what GRPO optimised). The summary, the model card and metrics.jsonl get each
reward's mean before, after, and the change.

Answers and scores are the artifacts `data/general_reward_before/` and
`data/general_reward_after/`, written a chunk at a time by the generation jobs, so a killed
stage resumes from its finished chunks and a finished one loads no model for them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1pipe.contract import StageContext
    from r1pipe.generation.base import Completion

ARTIFACTS = {"before": "general_reward_before", "after": "general_reward_after"}
"""Artifact of the answers (and their scores) of the input model and the trained one."""
ROLES = {"before": "input", "after": "trained"}
CHUNK_SIZE = 32
"""Prompts per generation chunk (a resume point). One engine batch for the demo's 24: in
chunks of 8, vLLM on 2 cores decoded at a fraction of its throughput (1.4 min per model)."""
FIELDS = {"id": "id of the general prompt", "prompt": "the question",
          "completion": "the model's answer",
          "rewards": "each reward-model reward's score of the answer (null: not scored)"}


@dataclass
class GeneralReward:
    """Mean score of each reward over the held-out prompts, for both models."""

    prompts: int
    before: dict[str, float | None]
    after: dict[str, float | None]

    def summary(self) -> dict[str, Any]:
        """The stage-summary (and card, and metrics) lines."""
        out: dict[str, Any] = {"general-reward prompts": self.prompts}
        for name, before in self.before.items():
            after = self.after.get(name)
            out[f"general {name} before"] = _rounded(before)
            out[f"general {name} after"] = _rounded(after)
            out[f"general {name} change"] = (None if before is None or after is None
                                             else round(after - before, 4))
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _finite(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def mean_rewards(records: Iterable[Mapping[str, Any]], names: list[str]
                 ) -> dict[str, float | None]:
    """Each reward's mean over the answers it scored (None: it scored none)."""
    values: dict[str, list[float]] = {name: [] for name in names}
    for record in records:
        for name in names:
            value = _finite((record.get("rewards") or {}).get(name))
            if value is not None:
                values[name].append(value)
    return {name: (sum(v) / len(v) if v else None) for name, v in values.items()}


def heldout_prompts(ctx: StageContext[Any], count: int) -> Any:
    """The first `count` prompts of the built-in general test split, rendered as the stage
    renders its training prompts (template, length limit, `response_prefix`)."""
    from r1pipe.data.loading import builtin_dataset
    from r1pipe.data.prepare import render_prompts
    from r1pipe.data.sources import DataSourceConfig
    from r1pipe.models import load_tokenizer

    cfg = ctx.config
    source = DataSourceConfig(builtin="general", split="test", test_size=count)
    data, _ = render_prompts(builtin_dataset(source), cfg.prompts,
                             load_tokenizer(ctx.input("from")))
    if cfg.response_prefix:
        from r1pipe.data.templates import with_response_prefix

        data = data.map(lambda r: {"prompt": with_response_prefix(r["prompt"],
                                                                   cfg.response_prefix)})
    return data


def _answers(ctx: StageContext[Any], which: str, model: str, data: Any,
             score: Any) -> Path:
    """Write (or finish) the answers of `model` and their scores; return the artifact."""
    from r1pipe.artifacts import stage_card
    from r1pipe.generation import Sampling
    from r1pipe.generation.jobs import GenerationJob, Placement, run_job
    from r1pipe.generation.lazy import Engine
    from r1pipe.prompt_filter import as_trl_batch

    out = ctx.data_dir(ARTIFACTS[which])

    def build(record: dict[str, Any], completions: list[Completion]) -> list[dict[str, Any]]:
        texts = [c.text for c in completions]
        per_reward = score(*as_trl_batch(record, texts))
        return [{"id": str(record["id"]), "prompt": record.get("question", record["prompt"]),
                 "completion": texts[0],
                 "rewards": {k: _finite(v[0]) for k, v in per_reward.items()}}]

    card = stage_card(ctx, f"general reward {which}",
                      f"One answer of `{model}` (the stage's {ROLES[which]} model) to each "
                      "held-out general prompt, scored by the stage's reward-model rewards.",
                      fields=FIELDS)
    run_job(GenerationJob(
        data, out, generator=Engine(model, ctx.pipeline.generation, ctx.pipeline.seed),
        sampling=Sampling.from_config(ctx.pipeline.generation, n=1, seed=ctx.pipeline.seed),
        build=build, chunk_size=CHUNK_SIZE, description=f"general reward {which}", card=card,
        place=Placement.launched(ctx), metrics=ctx.metrics), wait=True)
    return out


def measure_general_reward(ctx: StageContext[Any], reward_model: str) -> GeneralReward | None:
    """Score the input and the trained model's answers to the held-out general prompts;
    put the means on the model card and in metrics.jsonl. None when
    `reward_model.heldout_prompts` is 0.

    In a launched stage the input model's answers come first: rank 0 finalizes them only
    after it saved the trained model, so the other ranks, waiting for that, load a finished
    `model/` next."""
    from r1pipe.artifacts import iter_records
    from r1pipe.checkpoints import add_card_metrics
    from r1pipe.prompt_filter import reward_scorer
    from r1pipe.stages.all_scenario_rl.reward_model import (
        stage_model_rewards,
        with_reward_model,
    )

    cfg = ctx.config
    count = cfg.reward_model.heldout_prompts if cfg.reward_model else 0
    names = stage_model_rewards(cfg.rewards)
    if not count or not names:
        return None
    data = heldout_prompts(ctx, count)
    # only reward-model rewards are built here, and they do not read max_completion_length
    score = reward_scorer(with_reward_model(cfg.rewards, reward_model), names,
                          special_token=cfg.special_token, max_completion_length=None,
                          response_prefix=cfg.response_prefix)
    means = {}
    for which, model in (("before", ctx.input("from")), ("after", str(ctx.model_dir))):
        means[which] = mean_rewards(iter_records(_answers(ctx, which, model, data, score)), names)
    result = GeneralReward(prompts=len(data), before=means["before"], after=means["after"])
    if ctx.is_main_process:
        add_card_metrics(ctx.model_dir, result.summary())
        ctx.metrics.log({"general_reward/prompts": result.prompts,
                         **{f"general_reward/{name}/{which}": means[which][name]
                            for name in names for which in means}})
    return result
