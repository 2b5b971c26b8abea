"""The preference reward model of all-scenario RL: where it comes from, and its training data.

The paper's last stage scores general prompts with reward models of human preference. A
pipeline either names one (`reward_model: {model: <Hub id, folder or model spec>}`) or lets
the stage train one first (`reward_model: {train: {...}}`, the default) with TRL's
`RewardTrainer` on preference pairs, which come from

- a preference source of the pipeline's `data:` section, or any artifact, with `prompt`,
  `chosen` and `rejected` columns; or
- the rejection-sampling stage's verdicts (`reject_sample:filtered`): records with
  `prompt_id`, `prompt`, `completion` and `verdict` (kept | rejected). For each prompt, a
  kept answer is paired with a rejected one: the filters' judgement becomes the preference;
- or a list of such inputs, trained on together (`data: [reject_sample:filtered,
  general_pairs]`). Verdict pairs are answers to reasoning prompts only; a reward model that
  is to score general prompts needs general pairs too, such as the built-in ones made from
  the shipped general prompts without a download (`general_pairs: {builtin: general,
  pairs: true}` under `data:`).

The pairs are written as an artifact of the stage (`data/preferences/`, with a card that
counts the pairs of each input) and the reward model as a Hub-compatible sequence classifier
(`reward_model/`, with a card); the stage's `reward_model` rewards that name no model of
their own then load it. The pairs of a `heldout_fraction` of the prompts (0.2 by default)
are kept out of training and rank-scored afterwards: the held-out pair accuracy (0.5 is
chance) is in the stage summary, on the reward model's card and in its `heldout.json`
(see `r1pipe.stages.all_scenario_rl.heldout`).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from r1pipe.config import DataRef, LoraSection, ModelRef, Section
from r1pipe.models import ModelSpec
from r1pipe.stages.all_scenario_rl.heldout import (
    is_heldout,
    measure_accuracy,
    read_accuracy,
    write_accuracy,
)

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig
    from r1pipe.contract import StageContext

REWARD_MODEL_FAMILY = "reward_model"
PLACEHOLDER = "<the stage's reward model>"
"""What a `reward_model` reward without `model:` is validated with: the stage fills it in."""
PREFERENCES = "preferences"
"""Artifact name of the pairs the reward model is trained on (`data/preferences/`)."""
OUTPUT = "reward_model"
"""Folder of the trained reward model inside the stage folder."""
PENDING_PROMPTS = 10_000
"""Prompts whose unpaired answers are held while streaming verdicts. Rejection sampling
writes a prompt's answers together, so a window this wide never drops a live group."""


class RewardModelTraining(Section):
    """`reward_model.train`: fit a reward model on preference pairs before the RL."""

    data: DataRef | list[DataRef] = Field(
        "reject_sample:filtered",
        description="preference pairs (prompt, chosen, rejected), or rejection-sampling "
        "verdicts (prompt_id, prompt, completion, verdict) to pair kept against rejected; "
        "or a list of such inputs, whose pairs are trained on together")
    heldout_fraction: float = Field(
        0.2, ge=0, lt=1, description="share of the pairs (by a hash of the prompt) kept out "
        "of training to measure the reward model's held-out pair accuracy; 0: none")
    init: ModelRef | None = Field(
        None, description="model the reward model starts from (a new score head on its body); "
        "default: the stage's `from` model")
    max_pairs_per_prompt: int = Field(
        4, gt=0, description="at most this many (kept, rejected) pairs per prompt")
    trainer: dict[str, Any] = Field(
        default_factory=dict, description="TRL RewardConfig settings")
    lora: LoraSection | None = None

    @field_validator("data")
    @classmethod
    def _some_data(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("name at least one input (a source or `<stage>:<artifact>`)")
        if isinstance(value, list) and len(set(value)) < len(value):
            raise ValueError(f"{value}: an input is named twice (its pairs would be too)")
        return value

    def inputs_of_data(self) -> list[tuple[str, str]]:
        """(input key, ref as written) of each pair input: `ctx.input(key)` resolves it."""
        key = "reward_model.train.data"
        if isinstance(self.data, str):
            return [(key, self.data)]
        return [(f"{key}.{i}", ref) for i, ref in enumerate(self.data)]

    @field_validator("trainer")
    @classmethod
    def _reward_config_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Same check as a stage's `trainer:`, against TRL's RewardConfig."""
        from r1pipe.config import trainer_problem

        problem = trainer_problem("RewardConfig", value)
        if problem is not None:
            raise ValueError(problem[1])
        return value


class RewardModelSection(Section):
    """`reward_model`: an existing reward model (`model`) or one to train (`train`)."""

    model: ModelSpec | None = Field(
        None, description="a reward model (sequence classifier): Hub id, folder or model spec")
    train: RewardModelTraining | None = None
    heldout_prompts: int = Field(
        24, ge=0, description="after GRPO, score one answer of the stage's input model and one "
        "of its trained model to the first this many held-out general prompts (the built-in "
        "general `test` split) with the reward model; 0: do not measure")

    @model_validator(mode="after")
    def _one_source(self) -> RewardModelSection:
        if self.model is not None and self.train is not None:
            raise ValueError("give either `model` (an existing reward model) or `train` (train "
                             "one on preference pairs), not both")
        if self.model is None and self.train is None:
            self.train = RewardModelTraining()
        return self


# ---------------------------------------------------------------------------------------
# The rewards section and the reward model
# ---------------------------------------------------------------------------------------


def is_reward_model(key: str, value: Any) -> bool:
    """Whether a `rewards:` entry is of the `reward_model` family."""
    family = value.get("reward", key) if isinstance(value, Mapping) else key
    return family == REWARD_MODEL_FAMILY


def needs_reward_model(rewards: Mapping[str, Any]) -> bool:
    """Whether some `reward_model` reward names no model and so uses the stage's."""
    return bool(stage_model_rewards(rewards))


def stage_model_rewards(rewards: Mapping[str, Any]) -> list[str]:
    """Names of the `reward_model` rewards that name no model and so use the stage's."""
    return [k for k, v in rewards.items()
            if is_reward_model(k, v) and not (isinstance(v, Mapping) and v.get("model"))]


def with_reward_model(rewards: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The rewards section with `model` filled into every `reward_model` reward without one."""
    out: dict[str, Any] = {}
    for key, value in rewards.items():
        if is_reward_model(key, value):
            body = dict(value) if isinstance(value, Mapping) else {"weight": value}
            if not body.get("model"):
                body["model"] = model
            out[key] = body
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------------------------------
# Preference pairs
# ---------------------------------------------------------------------------------------


@dataclass
class PairStats:
    """How a pair set was built, for the data card and the stage summary."""

    records: int = 0
    pairs: int = 0
    prompts_paired: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def _question(record: Mapping[str, Any]) -> Any:
    """The prompt a pair is about: the raw question when the record kept it, else `prompt`."""
    return record.get("question") or record.get("prompt")


def pairs_from_verdicts(records: Iterable[Mapping[str, Any]], stats: PairStats, *,
                        max_pairs_per_prompt: int = 4,
                        window: int = PENDING_PROMPTS) -> Iterator[dict[str, Any]]:
    """(kept, rejected) pairs of answers to the same prompt, streamed.

    Each answer waits until an answer of the other verdict to the same `prompt_id` arrives;
    pairs are disjoint, in arrival order, at most `max_pairs_per_prompt` per prompt. Only the
    unpaired answers of the last `window` prompts are held in memory. A prompt whose answers
    were all kept (or all rejected) yields no pair: there is no preference to learn.
    """
    pending: OrderedDict[str, dict[str, Any]] = OrderedDict()
    made: dict[str, int] = {}
    for record in records:
        stats.records += 1
        verdict = record.get("verdict")
        text = record.get("completion")
        if verdict not in ("kept", "rejected"):
            stats.skip(f"verdict {verdict!r}")
            continue
        if not isinstance(text, str):
            stats.skip("no text completion")
            continue
        key = str(record.get("prompt_id") or _question(record))
        count = made.get(key, 0)
        if count >= max_pairs_per_prompt:
            continue
        group = pending.setdefault(key, {"kept": [], "rejected": [], "prompt": _question(record)})
        pending.move_to_end(key)
        other = "rejected" if verdict == "kept" else "kept"
        if group[other]:
            partner = group[other].pop(0)
            chosen, rejected = (text, partner) if verdict == "kept" else (partner, text)
            made[key] = count + 1
            stats.pairs += 1
            stats.prompts_paired += count == 0
            yield {"id": f"{key}-pair{count}", "prompt_id": key, "prompt": group["prompt"],
                   "chosen": chosen, "rejected": rejected, "source": "verdicts"}
        elif len(group[verdict]) < max_pairs_per_prompt:
            group[verdict].append(text)
        while len(pending) > window:
            pending.popitem(last=False)
            stats.skip("prompt left the pairing window")


def given_pairs(records: Iterable[Mapping[str, Any]], stats: PairStats,
                source: str) -> Iterator[dict[str, Any]]:
    """Pairs of a preference dataset, with ids, as the stage's artifact records."""
    for i, record in enumerate(records):
        stats.records += 1
        if record.get("chosen") is None or record.get("rejected") is None:
            stats.skip("chosen or rejected missing")
            continue
        stats.pairs += 1
        yield {"id": str(record.get("id") or f"{source}-{i:07d}"), "prompt": record.get("prompt"),
               "chosen": record["chosen"], "rejected": record["rejected"], "source": source}


def _records_of(pipeline: PipelineConfig, value: str) -> tuple[Iterable[Mapping[str, Any]], list[str]]:
    """Stream the records of a data input (a source name or an artifact folder) and name its
    columns, read from the first record."""
    from r1pipe.artifacts import MANIFEST, iter_records

    path = Path(value)
    if value not in pipeline.data and (path / MANIFEST).exists():
        first = next(iter_records(path, verify=False), None)
        return iter_records(path), list(first or {})
    from r1pipe.data.prepare import load_input

    data = load_input(pipeline, value)
    columns = list(data.column_names or []) if hasattr(data, "column_names") else []
    if not columns:
        first = next(iter(data), None)
        columns = list(first or {})
    return data, columns


def _pairs_of(pipeline: PipelineConfig, ref: str, value: str, spec: RewardModelTraining,
              stats: PairStats) -> tuple[Iterator[dict[str, Any]], str]:
    """The pairs of one input, and how they were made (for the card)."""
    records, columns = _records_of(pipeline, value)
    if {"chosen", "rejected"} <= set(columns):
        return given_pairs(records, stats, ref), f"preference pairs of `{ref}`"
    if {"verdict", "completion"} <= set(columns):
        pairs = pairs_from_verdicts(records, stats, max_pairs_per_prompt=spec.max_pairs_per_prompt)
        return pairs, (f"kept vs rejected answers to the same prompt in `{ref}` (at most "
                       f"{spec.max_pairs_per_prompt} pairs per prompt)")
    raise ValueError(
        f"reward_model.train.data {ref!r}: records need `chosen` and `rejected` "
        "(preference pairs) or `verdict` and `completion` (rejection-sampling output); "
        f"found columns: {', '.join(columns) or 'none'}")


def write_preferences(ctx: StageContext[Any], spec: RewardModelTraining
                      ) -> tuple[Path, dict[str, PairStats]]:
    """Build the pair artifact `data/preferences/` from the configured input(s), one after
    the other, and return the stats of each (once: a finished artifact of this stage run is
    reused, its per-input counts read from its manifest)."""
    from r1pipe.artifacts import ShardedJsonlWriter, read_manifest, stage_card

    out = ctx.data_dir(PREFERENCES)
    if (out / "manifest.json").exists() and read_manifest(out).complete:
        manifest = read_manifest(out)
        counts = manifest.meta.get("pairs") or {str(spec.data): manifest.records}
        return out, {ref: PairStats(pairs=int(n)) for ref, n in counts.items()}
    per_input = {ref: PairStats() for _, ref in spec.inputs_of_data()}
    streams, hows = [], []
    for key, ref in spec.inputs_of_data():
        pairs, how = _pairs_of(ctx.pipeline, ref, ctx.input(key), spec, per_input[ref])
        streams.append(pairs)
        hows.append(how)
    writer = ShardedJsonlWriter(out)
    writer.write_records(itertools.chain(*streams), shard_size=10_000)
    if writer.manifest.records == 0:
        records = sum(s.records for s in per_input.values())
        skipped = {k: v for s in per_input.values() for k, v in s.skipped.items()}
        raise ValueError(
            f"reward_model.train.data {spec.data!r}: no preference pair could be built from "
            f"{records} records (skipped: {skipped or 'none'}); a prompt needs a "
            "kept and a rejected answer (a model that gets everything wrong, or right, gives "
            "none). Train on a preference source instead (`reward_model.train.data: <a source "
            "with prompt, chosen, rejected>`, e.g. `{builtin: general, pairs: true}`) or give "
            "a reward model (`reward_model.model`)")
    stats: dict[str, Any] = {}
    for ref, s in per_input.items():
        stats |= {f"pairs from `{ref}`": s.pairs, f"input records of `{ref}`": s.records,
                  f"prompts paired in `{ref}`": s.prompts_paired,
                  **{f"skipped in `{ref}`: {k}": v for k, v in s.skipped.items()}}
    card = stage_card(
        ctx, f"{ctx.name} reward-model preferences",
        f"Pairs the stage's reward model was trained on: {'; '.join(hows)}. The pairs of "
        f"prompts in the held-out share ({spec.heldout_fraction:g}, by a hash of the prompt) "
        "were kept out of training and measure the reward model's held-out accuracy.",
        fields={"prompt": "the question", "chosen": "the preferred answer",
                "rejected": "the other answer", "prompt_id": "the prompt both answer",
                "source": "where the pair came from"},
        stats=stats, tags=["preference"])
    writer.finalize(card=card, meta={"input": spec.data,
                                     "pairs": {ref: s.pairs for ref, s in per_input.items()}})
    return out, per_input


def _messages(value: Any, role: str) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [dict(m) for m in value]
    return [{"role": role, "content": str(value)}]


def trainer_example(record: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """One pair in the form RewardTrainer reads and the `reward_model` reward scores.

    With a chat template both see the same conversation (user prompt, assistant answer);
    without one, the prompt text followed by the answer.
    """
    from r1pipe.decontam import prompt_text

    prompt = record.get("prompt")
    if chat:
        return {"prompt": [] if prompt is None else _messages(prompt, "user"),
                "chosen": _messages(record["chosen"], "assistant"),
                "rejected": _messages(record["rejected"], "assistant")}
    return {"prompt": prompt_text(prompt), "chosen": prompt_text(record["chosen"]),
            "rejected": prompt_text(record["rejected"])}


def preference_dataset(folder: Path, tokenizer: Any, heldout_fraction: float = 0.0) -> Any:
    """The training pairs of the artifact (the held-out prompts' pairs left out) as a
    `datasets.Dataset` (memory-mapped) in trainer form."""
    from datasets import load_dataset

    chat = bool(getattr(tokenizer, "chat_template", None))
    data = load_dataset("json", data_dir=str(folder), split="train")
    if heldout_fraction > 0:
        data = data.filter(lambda r: not is_heldout(r["prompt"], heldout_fraction))
    if len(data) == 0:
        raise ValueError(
            f"reward_model.train.heldout_fraction {heldout_fraction:g} holds out every "
            "preference pair, leaving none to train on: lower it, or give more pairs")
    return data.map(lambda r: trainer_example(r, chat), remove_columns=data.column_names)


# ---------------------------------------------------------------------------------------
# The stage's reward model
# ---------------------------------------------------------------------------------------


@dataclass
class StageRewardModel:
    """The reward model the stage's rewards load, and what to say about it."""

    path: str
    summary: dict[str, Any]


def _is_saved(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "README.md").is_file()


def _heldout_summary(ctx: StageContext[Any], spec: RewardModelTraining, folder: Path
                     ) -> dict[str, Any]:
    """The held-out accuracy lines of the trained reward model at `folder`: read back from
    its `heldout.json`, or measured now (then saved, logged and put on its card)."""
    from r1pipe.artifacts import iter_records
    from r1pipe.checkpoints import add_card_metrics

    if spec.heldout_fraction == 0:
        return {}
    result = read_accuracy(folder, spec.heldout_fraction)
    if result is None:
        result = measure_accuracy(str(folder), iter_records(ctx.data_dir(PREFERENCES)),
                                 spec.heldout_fraction)
        if ctx.is_main_process:
            add_card_metrics(folder, result.summary())
            write_accuracy(folder, result)
            ctx.metrics.log({"reward_model/heldout_pairs": result.pairs,
                             "reward_model/heldout_accuracy": result.accuracy})
    return result.summary()


def stage_reward_model(ctx: StageContext[Any]) -> StageRewardModel | None:
    """Resolve the stage's reward model: the given one, the one an interrupted attempt of
    this run already trained, or a new one trained now. None if no reward needs one."""
    section: RewardModelSection | None = ctx.config.reward_model
    if section is None:
        return None
    if section.model is not None:
        from r1pipe.models import materialize

        path = materialize(section.model, ctx.layout.imports)
        return StageRewardModel(path, {"reward model": section.model.describe()})
    spec = section.train
    assert spec is not None
    out = ctx.stage_dir / OUTPUT
    if _is_saved(out):
        return StageRewardModel(str(out), {"reward model": f"{OUTPUT}/ (trained, reused)",
                                           **_heldout_summary(ctx, spec, out)})
    from accelerate import PartialState

    from r1pipe.models import load_tokenizer
    from r1pipe.train import CardText, reward

    init = ctx.input("reward_model.train.init") if spec.init else ctx.input("from")
    with PartialState().main_process_first():  # rank 0 writes the pairs, the others read them
        folder, per_input = write_preferences(ctx, spec)
    pairs = sum(s.pairs for s in per_input.values())
    dataset = preference_dataset(folder, load_tokenizer(init), spec.heldout_fraction)
    names = ", ".join(f"`{ref}`" for ref in per_input)
    trained = reward(
        ctx, model=init, train_dataset=dataset, out_dir=out,
        card=CardText(
            {ref: s.pairs for ref, s in per_input.items()},
            f"Preference reward model of the `{ctx.name}` stage: TRL RewardTrainer on "
            f"{len(dataset)} of {pairs} (chosen, rejected) pairs from {names} (the pairs of "
            f"a {spec.heldout_fraction:g} share of the prompts held out), starting from "
            f"{init}. It scores a (prompt, response) pair; higher is preferred."),
        trainer=spec.trainer, lora=spec.lora,
        trainer_where=f"stages.{ctx.name}.reward_model.train.trainer")
    summary = {"reward model": f"{OUTPUT}/ (trained)", "reward-model pairs": pairs,
               **({f"reward-model pairs from {ref}": s.pairs for ref, s in per_input.items()}
                  if len(per_input) > 1 else {}),
               "reward-model pairs trained": len(dataset),
               "reward-model steps": trained.steps,
               **{f"reward model {k}": round(v, 4) for k, v in trained.metrics.items()},
               **_heldout_summary(ctx, spec, Path(trained.model_dir))}
    return StageRewardModel(str(trained.model_dir), summary)
