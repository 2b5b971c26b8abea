"""The preference reward model of all-scenario RL: where it comes from, and its training data.

The paper's last stage scores general prompts with reward models of human preference. A
pipeline either names one (`reward_model: {model: <Hub id, folder or model spec>}`) or lets
the stage train one first (`reward_model: {train: {...}}`, the default) with TRL's
`RewardTrainer` on preference pairs, which come from

- a preference source of the pipeline's `data:` section, or any artifact, with `prompt`,
  `chosen` and `rejected` columns; or
- the rejection-sampling stage's verdicts (`reject_sample:filtered`): records with
  `prompt_id`, `prompt`, `completion` and `verdict` (kept | rejected). For each prompt, a
  kept answer is paired with a rejected one: the filters' judgement becomes the preference.

The pairs are written as an artifact of the stage (`data/preferences/`, with a card) and the
reward model as a Hub-compatible sequence classifier (`reward_model/`, with a card); the
stage's `reward_model` rewards that name no model of their own then load it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from r1pipe.config import DataRef, LoraSection, ModelRef, Section
from r1pipe.models import ModelSpec

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

    data: DataRef = Field(
        "reject_sample:filtered",
        description="preference pairs (prompt, chosen, rejected), or rejection-sampling "
        "verdicts (prompt_id, prompt, completion, verdict) to pair kept against rejected")
    init: ModelRef | None = Field(
        None, description="model the reward model starts from (a new score head on its body); "
        "default: the stage's `from` model")
    max_pairs_per_prompt: int = Field(
        4, gt=0, description="at most this many (kept, rejected) pairs per prompt")
    trainer: dict[str, Any] = Field(
        default_factory=dict, description="TRL RewardConfig settings")
    lora: LoraSection | None = None

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


def _is_reward_model(key: str, value: Any) -> bool:
    family = value.get("reward", key) if isinstance(value, Mapping) else key
    return family == REWARD_MODEL_FAMILY


def needs_reward_model(rewards: Mapping[str, Any]) -> bool:
    """Whether some `reward_model` reward names no model and so uses the stage's."""
    return any(_is_reward_model(k, v) and not (isinstance(v, Mapping) and v.get("model"))
               for k, v in rewards.items())


def with_reward_model(rewards: Mapping[str, Any], model: str) -> dict[str, Any]:
    """The rewards section with `model` filled into every `reward_model` reward without one."""
    out: dict[str, Any] = {}
    for key, value in rewards.items():
        if _is_reward_model(key, value):
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


def write_preferences(ctx: StageContext[Any], spec: RewardModelTraining) -> tuple[Path, PairStats]:
    """Build the pair artifact `data/preferences/` from the configured input (once: a
    finished artifact of this stage run is reused)."""
    from r1pipe.artifacts import ShardedJsonlWriter, read_manifest, stage_card

    out = ctx.data_dir(PREFERENCES)
    stats = PairStats()
    if (out / "manifest.json").exists() and read_manifest(out).complete:
        stats.pairs = read_manifest(out).records
        return out, stats
    value = ctx.input("reward_model.train.data")
    records, columns = _records_of(ctx.pipeline, value)
    if {"chosen", "rejected"} <= set(columns):
        pairs = given_pairs(records, stats, spec.data)
        how = f"preference pairs of `{spec.data}`"
    elif {"verdict", "completion"} <= set(columns):
        pairs = pairs_from_verdicts(records, stats, max_pairs_per_prompt=spec.max_pairs_per_prompt)
        how = (f"kept vs rejected answers to the same prompt in `{spec.data}` (at most "
               f"{spec.max_pairs_per_prompt} pairs per prompt)")
    else:
        raise ValueError(
            f"reward_model.train.data {spec.data!r}: records need `chosen` and `rejected` "
            "(preference pairs) or `verdict` and `completion` (rejection-sampling output); "
            f"found columns: {', '.join(columns) or 'none'}")
    writer = ShardedJsonlWriter(out)
    writer.write_records(pairs, shard_size=10_000)
    if writer.manifest.records == 0:
        raise ValueError(
            f"reward_model.train.data {spec.data!r}: no preference pair could be built from "
            f"{stats.records} records (skipped: {stats.skipped or 'none'}); a prompt needs a "
            "kept and a rejected answer (a model that gets everything wrong, or right, gives "
            "none). Train on a preference source instead (`reward_model.train.data: <a source "
            "with prompt, chosen, rejected>`) or give a reward model (`reward_model.model`)")
    card = stage_card(
        ctx, f"{ctx.name} reward-model preferences",
        f"Pairs the stage's reward model was trained on: {how}.",
        fields={"prompt": "the question", "chosen": "the preferred answer",
                "rejected": "the other answer", "prompt_id": "the prompt both answer",
                "source": "where the pair came from"},
        stats={"input records": stats.records, "prompts paired": stats.prompts_paired,
               **{f"skipped: {k}": v for k, v in stats.skipped.items()}},
        tags=["preference"])
    writer.finalize(card=card, meta={"input": spec.data})
    return out, stats


def _messages(value: Any, role: str) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [dict(m) for m in value]
    return [{"role": role, "content": str(value)}]


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return "" if value is None else str(value)


def trainer_example(record: Mapping[str, Any], chat: bool) -> dict[str, Any]:
    """One pair in the form RewardTrainer reads and the `reward_model` reward scores.

    With a chat template both see the same conversation (user prompt, assistant answer);
    without one, the prompt text followed by the answer.
    """
    prompt = record.get("prompt")
    if chat:
        return {"prompt": [] if prompt is None else _messages(prompt, "user"),
                "chosen": _messages(record["chosen"], "assistant"),
                "rejected": _messages(record["rejected"], "assistant")}
    return {"prompt": _text(prompt), "chosen": _text(record["chosen"]),
            "rejected": _text(record["rejected"])}


def preference_dataset(folder: Path, tokenizer: Any) -> Any:
    """The pair artifact as a `datasets.Dataset` (memory-mapped) in trainer form."""
    from datasets import load_dataset

    chat = bool(getattr(tokenizer, "chat_template", None))
    data = load_dataset("json", data_dir=str(folder), split="train")
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
        return StageRewardModel(str(out), {"reward model": f"{OUTPUT}/ (trained, reused)"})
    from accelerate import PartialState

    from r1pipe.models import load_tokenizer
    from r1pipe.train import reward

    init = ctx.input("reward_model.train.init") if spec.init else ctx.input("from")
    with PartialState().main_process_first():  # rank 0 writes the pairs, the others read them
        folder, stats = write_preferences(ctx, spec)
    dataset = preference_dataset(folder, load_tokenizer(init))
    trained = reward(
        ctx, model=init, train_dataset=dataset, out_dir=out, data={spec.data: stats.pairs},
        trainer=spec.trainer, lora=spec.lora,
        description=f"Preference reward model of the `{ctx.name}` stage: TRL RewardTrainer on "
        f"{stats.pairs} (chosen, rejected) pairs from `{spec.data}`, starting from {init}. "
        "It scores a (prompt, response) pair; higher is preferred.")
    summary = {"reward model": f"{OUTPUT}/ (trained)", "reward-model pairs": stats.pairs,
               "reward-model steps": trained.steps,
               **{f"reward model {k}": round(v, 4) for k, v in trained.metrics.items()}}
    return StageRewardModel(str(trained.model_dir), summary)
