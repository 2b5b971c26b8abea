"""Pass-rate prompt filtering for GRPO stages (`prompt_filter:` of a GRPO section).

GRPO's advantage is a sample's reward minus its group's mean reward, over the group's std.
When every answer of a group is right, or every one wrong, the group has no reward spread:
its advantage is zero, its policy gradient is zero, and the rollout was spent for nothing
(TRL logs the share of such groups as `frac_reward_zero_std`). On a small or early model most
groups are like that. So before training, each candidate prompt is sampled `samples` times
with the stage's starting model on the run's generation backend, every answer is scored by
the stage's own pass reward (accuracy and code by default: an answer passes when it scores
1.0), and only the prompts whose pass rate lies in the range are trained on.

    pass rate = passed / scored       scored: answers the pass reward scored at all (a reward
                                      routed to other task types returns None)
    kept      = min <= rate <= max    defaults: 0 < rate < 1 (neither always nor never solved)
    too easy  = rate above the range; too hard = rate below it
    a prompt with no scored answer (no pass reward applies to it) is kept

The pass rates are the artifact `<stage>/data/pass_rates/`: one record per prompt, written a
chunk at a time by a generation job (`r1pipe.generation.jobs.run_job`), so a killed filter resumes
from its finished chunks, and once complete a resumed stage loads no model for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.config import PASS_REWARD_FAMILIES, PromptFilterSettings

if TYPE_CHECKING:
    from r1pipe.contract import StageContext
    from r1pipe.generation.base import Completion

ARTIFACT = "pass_rates"
DESCRIPTION = "prompt filter: sampling pass rates"
FIELDS = {
    "id": "id of the prompt record",
    "prompt": "the question as written in the data (before the template)",
    "samples": "answers sampled",
    "scored": "answers the pass reward scored (it returns nothing for other task types)",
    "passed": "answers the pass reward scored 1.0",
    "pass_rate": "passed / scored; null when nothing was scored",
    "verdict": "`kept`, `too_easy` (above the range) or `too_hard` (below it)",
    "rewards": "each answer's pass reward (the first that scored it; null: none did)",
    "token_counts": "completion tokens of each answer",
    "truncated": "answers cut off at max_new_tokens",
}


@dataclass
class FilterCounts:
    """How many candidate prompts the filter kept and why it dropped the others."""

    candidates: int = 0
    kept: int = 0
    too_easy: int = 0
    too_hard: int = 0
    unscored: int = 0  # kept without a pass rate: no pass reward applies to them

    def add(self, record: Mapping[str, Any]) -> None:
        self.candidates += 1
        verdict = record["verdict"]
        if verdict == "kept":
            self.kept += 1
            self.unscored += record.get("pass_rate") is None
        elif verdict == "too_easy":
            self.too_easy += 1
        else:
            self.too_hard += 1

    def summary(self) -> dict[str, int]:
        """The stage-summary lines (`status` and the report read them)."""
        out = {"prompt filter candidates": self.candidates, "prompt filter kept": self.kept,
               "prompt filter too easy": self.too_easy, "prompt filter too hard": self.too_hard}
        if self.unscored:
            out["prompt filter unscored (kept)"] = self.unscored
        return out


def verdict(rate: float | None, settings: PromptFilterSettings) -> str:
    """`kept`, `too_easy` or `too_hard` for a pass rate (None, nothing scored: `kept`).

    Unset bounds are exclusive at 0 and 1, so the default keeps exactly the prompts that
    are neither always nor never solved; set bounds are inclusive."""
    if rate is None:
        return "kept"
    low, high = settings.min_pass_rate, settings.max_pass_rate
    if (rate < low) if low is not None else (rate <= 0.0):
        return "too_hard"
    if (rate > high) if high is not None else (rate >= 1.0):
        return "too_easy"
    return "kept"


def pass_reward_names(rewards: Mapping[str, Any], settings: PromptFilterSettings) -> list[str]:
    """The names of the rewards that decide whether an answer passes."""
    from r1pipe.config import reward_family

    if settings.reward is not None:
        return [settings.reward]
    return [name for name, value in rewards.items()
            if reward_family(name, value) in PASS_REWARD_FAMILIES]


def is_pass(value: Any) -> bool | None:
    """Whether one reward value is a pass (1.0); None when the reward did not score it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value) >= 1.0


def sample_passes(per_reward: Mapping[str, list[Any]], n: int) -> list[bool | None]:
    """Per answer: passed (every pass reward that scored it gave 1.0), failed, or None when
    none of them scored it."""
    out: list[bool | None] = []
    for i in range(n):
        verdicts = [v for v in (is_pass(values[i]) for values in per_reward.values())
                    if v is not None]
        out.append(all(verdicts) if verdicts else None)
    return out


def rate_record(record: Mapping[str, Any], completions: list[Completion], *,
                score: Callable[[list[Any], list[Any], dict[str, list[Any]]], dict[str, list[Any]]],
                settings: PromptFilterSettings) -> list[dict[str, Any]]:
    """The pass-rate record of one prompt from its sampled answers (a job's `build`).

    Answers are handed to the rewards as TRL hands them: the text for a text prompt, an
    assistant message for a chat prompt, with every other column of the record repeated."""
    n = len(completions)
    prompt = record["prompt"]
    per_reward = score(*as_trl_batch(record, [c.text for c in completions]))
    passes = sample_passes(per_reward, n)
    scored = sum(p is not None for p in passes)
    passed = sum(p is True for p in passes)
    rate = passed / scored if scored else None
    values = [next((float(v[i]) for v in per_reward.values() if is_pass(v[i]) is not None),
                   None) for i in range(n)]
    return [{"id": str(record["id"]), "prompt": record.get("question", prompt), "samples": n,
             "scored": scored, "passed": passed, "pass_rate": rate,
             "verdict": verdict(rate, settings),
             "rewards": values,
             "token_counts": [int(c.token_count) for c in completions],
             "truncated": sum(c.finish_reason == "length" for c in completions)}]


def as_trl_batch(record: Mapping[str, Any], texts: list[str]
                 ) -> tuple[list[Any], list[Any], dict[str, list[Any]]]:
    """(prompts, answers, columns) of one prompt's sampled answers, as TRL hands them to a
    reward: the text for a text prompt, an assistant message for a chat prompt, with every
    other column of the record repeated."""
    n = len(texts)
    prompt = record["prompt"]
    answers: list[Any] = (list(texts) if isinstance(prompt, str)
                          else [[{"role": "assistant", "content": t}] for t in texts])
    columns = {k: [v] * n for k, v in record.items()
               if k not in ("prompt", "completion", "completion_ids")}  # as TRL leaves them
    return [prompt] * n, answers, columns


def pass_scorer(rewards: Mapping[str, Any], settings: PromptFilterSettings, *,
                special_token: str, max_completion_length: int | None,
                response_prefix: str | None
                ) -> Callable[[list[Any], list[Any], dict[str, list[Any]]], dict[str, list[Any]]]:
    """A function scoring answers with the stage's pass rewards only; the other rewards are
    not built (no reward model is loaded). See `reward_scorer`."""
    return reward_scorer(rewards, pass_reward_names(rewards, settings),
                         special_token=special_token,
                         max_completion_length=max_completion_length,
                         response_prefix=response_prefix)


def reward_scorer(rewards: Mapping[str, Any], names: list[str], *, special_token: str,
                  max_completion_length: int | None, response_prefix: str | None
                  ) -> Callable[[list[Any], list[Any], dict[str, list[Any]]],
                                dict[str, list[Any]]]:
    """A function scoring answers with the rewards `names` of a rewards section, built as
    training builds them (`build_reward_funcs`, task-type routing, `response_prefix` put
    back in front of each answer), so a score outside the trainer is the one GRPO sees."""
    from r1pipe.rewards import build_reward_funcs

    funcs, _ = build_reward_funcs({k: rewards[k] for k in names}, special_token=special_token,
                                  max_completion_length=max_completion_length)
    if response_prefix:
        from r1pipe.rewards.compose import Prefixed

        funcs = [Prefixed(f, response_prefix) for f in funcs]

    def run(prompts: list[Any], answers: list[Any], columns: dict[str, list[Any]]
            ) -> dict[str, list[Any]]:
        # called as GRPOTrainer calls a reward: the dataset's columns as keywords (any name,
        # `spec` of a code task included), so nothing of r1pipe's own may sit beside them
        return {name: list(func(prompts=prompts, completions=answers, completion_ids=None,
                                **columns))
                for name, func in zip(names, funcs, strict=True)}

    return run


def sampling_of(ctx: StageContext[Any], settings: PromptFilterSettings, args: Any) -> Any:
    """The filter's sampling: GRPO's rollout settings (the trainer's temperature, top_p and
    max_completion_length) unless `prompt_filter:` sets its own, seeded by the pipeline."""
    from r1pipe.generation import Sampling

    def pick(own: Any, trainer: Any) -> Any:
        return own if own is not None else trainer

    return Sampling.from_config(
        ctx.pipeline.generation, n=settings.samples, seed=ctx.pipeline.seed,
        temperature=pick(settings.temperature, getattr(args, "temperature", None)),
        top_p=pick(settings.top_p, getattr(args, "top_p", None)),
        max_new_tokens=pick(settings.max_new_tokens,
                            getattr(args, "max_completion_length", None)))


def measure(ctx: StageContext[Any], dataset: Iterable[dict[str, Any]], *, model: str,
            rewards: Mapping[str, Any], args: Any) -> Path:
    """Write (or finish) `data/pass_rates/` for the rendered prompts in `dataset`; return
    its folder once complete. Every process of a launched stage samples its own chunks;
    rank 0 finalizes and the others wait for it."""
    from r1pipe.artifacts import stage_card
    from r1pipe.generation.jobs import GenerationJob, Placement, run_job
    from r1pipe.generation.lazy import Engine

    cfg = ctx.config
    settings: PromptFilterSettings = cfg.prompt_filter
    out = ctx.data_dir(ARTIFACT)
    scorer = pass_scorer(rewards, settings, special_token=cfg.special_token,
                         max_completion_length=getattr(args, "max_completion_length", None),
                         response_prefix=cfg.response_prefix)
    card = stage_card(ctx, "prompt pass rates", card_text(settings, model), fields=FIELDS)

    def build(record: dict[str, Any], completions: list[Any]) -> list[dict[str, Any]]:
        return rate_record(record, completions, score=scorer, settings=settings)

    run_job(GenerationJob(
        dataset, out, generator=Engine(model, ctx.pipeline.generation, ctx.pipeline.seed),
        sampling=sampling_of(ctx, settings, args), build=build,
        chunk_size=settings.chunk_size, description=DESCRIPTION, card=card,
        place=Placement.launched(ctx), metrics=ctx.metrics), wait=True)
    return out


def card_text(settings: PromptFilterSettings, model: str) -> str:
    low = (f"at least {settings.min_pass_rate}" if settings.min_pass_rate is not None
           else "above 0")
    high = (f"at most {settings.max_pass_rate}" if settings.max_pass_rate is not None
            else "below 1")
    return (f"{settings.samples} answers per candidate prompt from `{model}`, scored by the "
            "stage's pass reward; the stage trains on the prompts whose pass rate is "
            f"{low} and {high} (GRPO learns nothing from a group whose answers all pass or all "
            "fail: its advantage is zero).")


def read_counts(path: Path) -> tuple[set[str], FilterCounts]:
    """The kept prompt ids and the counts, read back from a complete pass-rates artifact."""
    from r1pipe.artifacts import iter_records

    counts = FilterCounts()
    kept: set[str] = set()
    for record in iter_records(path):
        counts.add(record)
        if record["verdict"] == "kept":
            kept.add(str(record["id"]))
    return kept, counts


def record_counts(ctx: StageContext[Any], path: Path, counts: FilterCounts) -> None:
    """Put the counts in the artifact's manifest and card (main process; idempotent)."""
    from r1pipe.artifacts import ShardedJsonlWriter, read_manifest, stage_card

    if not ctx.is_main_process or read_manifest(path).meta.get("counts") == counts.summary():
        return
    settings: PromptFilterSettings = ctx.config.prompt_filter
    card = stage_card(ctx, "prompt pass rates", card_text(settings, ctx.input("from")),
                      fields=FIELDS, stats={k.removeprefix("prompt filter "): v
                                            for k, v in counts.summary().items()})
    ShardedJsonlWriter(path).finalize(card=card, meta={"counts": counts.summary()})


def apply(ctx: StageContext[Any], dataset: Any, *, model: str, rewards: Mapping[str, Any],
          args: Any) -> tuple[Any, FilterCounts]:
    """The training prompts the filter keeps, and its counts. Raises `StageFailed` when it
    keeps none, saying which bound to widen."""
    from r1pipe.contract import StageFailed

    limit = ctx.config.prompt_filter.candidates
    if limit is not None and len(dataset) > limit:
        dataset = dataset.select(range(limit))
    path = measure(ctx, dataset, model=model, rewards=rewards, args=args)
    kept, counts = read_counts(path)
    record_counts(ctx, path, counts)
    if not counts.kept:
        raise StageFailed(
            f"prompt_filter kept none of the {counts.candidates} prompts ({counts.too_easy} "
            f"too easy, {counts.too_hard} too hard; pass rates in {path}): widen "
            "prompt_filter.min_pass_rate / max_pass_rate (min_pass_rate: 0 keeps prompts the "
            "model never solves), raise samples, or start from a stronger model")
    return dataset.filter(lambda record: str(record["id"]) in kept), counts
