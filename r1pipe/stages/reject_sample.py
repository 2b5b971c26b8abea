"""Rejection sampling and SFT: the paper's third stage, where the scale is.

"When reasoning-oriented RL converges, we utilize the resulting checkpoint to collect SFT
data for the subsequent round." From the RL model, several responses are sampled per
reasoning prompt and only the correct ones are kept (checked by rules, or by a generative
judge given the reference), without mixed languages, long paragraphs or code blocks in the
chain of thought: about 600k samples. About 200k non-reasoning samples (writing, factual
QA, self-cognition, translation) are added, with a short chain of thought for the complex
ones and none for a simple "hello". The *base* model is then fine-tuned on the ~800k for
two epochs.

Every step leaves an artifact under `data/` and is skipped once it is complete, so the
stage resumes wherever it was stopped:

1. generate   `generated/`          N samples per reasoning prompt, shard by shard
                                    (`--shard i/N`: several machines take a part each;
                                    under `launch:` every rank samples its own chunks)
2. general    `general_generated/`  answers to the general prompts (model or references)
3. filter     `filtered/`, `general/`  every sample with its verdict and why
4. mix        `mix/`                the SFT data: counts as configured, shuffled by seed
5. train      `model/`              SFT of the base model on the mix (`train.sft`)
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from r1pipe.config import DataRef, ModelRef, PromptSettings, Section, SFTStageConfig
from r1pipe.contract import StageContext, StageFailed, StageResult
from r1pipe.filters import FilterSettings, FilterSummary, apply_filters, judge_problems, make_judge
from r1pipe.generation.jobs import (
    GenerationJob,
    JobReport,
    Placement,
    is_complete,
    run_job,
    wait_complete,
)
from r1pipe.generation.shard_steps import MixSource, map_shards, sample_and_shuffle
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, final_response, split_completion

NAME = "reject-sample"
MAX_AUTO_WORKERS = 16
AUTO_WORKERS_FROM = 20_000


class SamplingOverrides(Section):
    """Sampling settings of this stage; unset ones come from the pipeline's `generation:`."""

    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, gt=0)


class GeneralSettings(Section):
    """The non-reasoning part of the SFT data."""

    mode: Literal["generate", "reference"] = Field(
        "generate", description="answer with the sampling model, or take reference answers")
    cot: Literal["complex", "always", "never"] = Field(
        "complex", description="keep a chain of thought for complex prompts only (the "
        "paper: none for a simple 'hello'), for all, or for none")
    simple_categories: list[str] = Field(default_factory=lambda: ["greeting"])
    simple_max_words: int = Field(
        3, ge=0, description="prompts of at most this many words are simple")
    samples_per_prompt: int = Field(1, ge=1)
    max_new_tokens: int | None = Field(None, gt=0, description="default: the stage's")
    filters: FilterSettings = Field(default_factory=lambda: FilterSettings(
        require_format=False, unverifiable="keep"))


class MixCounts(Section):
    """How many samples of each kind go into the SFT data (fewer if fewer were kept)."""

    reasoning: int = Field(600_000, ge=0)
    general: int = Field(200_000, ge=0)


class Config(SFTStageConfig):
    """The `reject_sample:` section. Sampling defaults come from the pipeline's
    `generation:` (hence in the fingerprint); training runs 2 epochs unless `trainer:` says."""

    global_sections: ClassVar[tuple[str, ...]] = ("generation",)

    from_: ModelRef = Field("reasoning_rl", alias="from", description="the sampling model")
    train_from: ModelRef = Field("base", description="the model fine-tuned on the mix")
    data: DataRef = "reasoning"
    general_data: DataRef | None = "general"
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    samples_per_prompt: int = Field(4, ge=1)
    keep_per_prompt: int | None = Field(2, ge=1)
    sampling: SamplingOverrides = Field(default_factory=SamplingOverrides)
    chunk_size: int = Field(64, ge=1, description="prompts per generated shard")
    filters: FilterSettings = Field(default_factory=FilterSettings)
    judge: dict[str, Any] | None = Field(
        None, description="LLM judge for answers rules cannot check: the `judge` reward's "
        "parameters (base_url, model, ...) plus threshold")
    general: GeneralSettings = Field(default_factory=GeneralSettings)
    mix: MixCounts = Field(default_factory=MixCounts)
    special_token: str = Field(DEFAULT_SPECIAL_TOKEN, min_length=1)
    records_per_shard: int = Field(10_000, ge=1, description="mix shard size")
    filter_workers: int | None = Field(
        None, ge=1, description="processes for the filters; default: one per CPU (at most "
        f"{MAX_AUTO_WORKERS}) from {AUTO_WORKERS_FROM:,} samples on, one below or with a judge")
    shard: str | None = Field(
        None, pattern=r"^\d+/\d+$", description="i/N: generate only part i of N (as --shard)")

    @field_validator("judge")
    @classmethod
    def _judge_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        errors = judge_problems(value)
        if errors:
            raise ValueError("; ".join(errors))
        return value

    @model_validator(mode="after")
    def _shard_in_range(self) -> Config:
        if self.shard is not None:
            index, count = (int(p) for p in self.shard.split("/"))
            if count < 1 or index >= count:
                raise ValueError(f"shard {self.shard!r}: need 0 <= i < N")
        return self


GENERATED_FIELDS = {
    "id": "`<prompt_id>-s<k>`: sample k of the prompt",
    "prompt_id": "id of the prompt record",
    "prompt": "the question as written in the data (before the template)",
    "completion": "what the model wrote",
    "token_count": "completion tokens",
    "finish_reason": "`stop`, or `length` when cut off at max_new_tokens",
    "task / answer": "the task and reference answer of the prompt (other columns kept too)",
}
FILTERED_FIELDS = {
    **GENERATED_FIELDS,
    "verdict": "`kept` or `rejected`",
    "removed_by": "the first filter the sample failed (null when kept)",
    "failed": "every filter the sample failed",
    "filters": "the measured values: correct, tokens, language share, paragraph words...",
    "reward": "correctness: 1.0 right, 0.0 wrong, null when it could not be checked",
}
MIX_FIELDS = {
    "id": "sample id",
    "prompt": "chat messages: the user's question",
    "completion": "chat messages: `|special_token|reasoning|special_token|summary`",
    "source": "`reasoning` or `general`",
    "prompt_id": "id of the prompt record",
    "reward": "correctness of reasoning samples",
}


def run(ctx: StageContext[Config]) -> StageResult:
    cfg: Config = ctx.config
    shard = ctx.shard  # --shard i/N, or `shard:` in the YAML (the engine reads both)
    # Under `accelerate launch` every rank samples its own chunks (`Placement`); rank 0 then
    # filters and mixes while the others wait, and all of them train.
    generated = generate(ctx)
    general_generated = generate_general(ctx)
    if not ctx.is_main_process:
        if shard is not None:
            return StageResult()
        wait_complete(ctx.data_dir("mix"))
        return train(ctx, {})
    if shard is not None:  # this machine's part is done; a run without --shard merges
        return StageResult(summary={"shard": f"{shard.index}/{shard.count}",
                                    "reasoning chunks generated": generated.generated,
                                    "general chunks generated": general_generated.generated})
    reasoning = filter_samples(ctx, "generated", "filtered", cfg.filters, cfg.keep_per_prompt)
    reasoning.print("reasoning samples: filters")
    general = None
    if general_generated.complete:
        general = filter_samples(ctx, "general_generated", "general", cfg.general.filters, None,
                                 judged=cfg.general.mode == "generate")
        general.print("general samples: filters")
    counts, notes = mix(ctx, reasoning, general)
    out = train(ctx, counts)
    summary = headline(generated, reasoning, general, counts, notes)
    summary.update(steps=out.steps, **out.metrics)
    return StageResult(summary=summary, artifacts={
        "model": "model", "generated": "data/generated", "filtered": "data/filtered",
        **({"general": "data/general"} if general else {}), "mix": "data/mix"})


def headline(generated: JobReport, reasoning: FilterSummary, general: FilterSummary | None,
             counts: dict[str, int], notes: dict[str, str]) -> dict[str, Any]:
    """The stage summary: what was sampled, what each filter removed, what was mixed.
    (Every filter's full counts are in the manifests and cards of `filtered/`, `general/`.)"""
    out: dict[str, Any] = {"reasoning prompts": generated.prompts}
    for name, summary in (("reasoning", reasoning), ("general", general)):
        if summary is None:
            continue
        out[f"{name} samples"] = summary.total
        out[f"{name} kept"] = summary.kept
        out.update({f"{name} removed by {k}": v
                    for k, v in summary.as_dict()["removed_by"].items()})
    out.update({f"mix {k}": v for k, v in counts.items()})
    out.update({f"mix {k}: fewer than configured": v for k, v in notes.items()})
    if generated.tokens_generated:
        out["sampling tokens/s"] = round(generated.tokens_per_second, 1)
    return out


# ---------------------------------------------------------------------------------------
# 1-2. Generate
# ---------------------------------------------------------------------------------------


def sampling(ctx: StageContext, n: int, max_new_tokens: int | None = None) -> Any:
    """The stage's sampling settings over the pipeline's `generation:` defaults."""
    from r1pipe.generation import Sampling

    own = ctx.config.sampling
    overrides = {"temperature": own.temperature, "top_p": own.top_p,
                 "max_new_tokens": max_new_tokens or own.max_new_tokens}
    return Sampling.from_config(ctx.pipeline.generation, n=n, seed=ctx.pipeline.seed,
                                **{k: v for k, v in overrides.items() if v is not None})


def sample_records(record: dict[str, Any], completions: list[Any], *,
                   transform: Any = None) -> list[dict[str, Any]]:
    """One output record per completion: id `<prompt_id>-s<k>`, the raw question, the
    completion and how it ended, plus the prompt record's other columns (task, answer...)."""
    prompt_id = str(record["id"])
    base = {k: v for k, v in record.items() if k not in ("id", "prompt", "question")}
    out = []
    for k, completion in enumerate(completions):
        text = completion.text if transform is None else transform(record, completion.text)
        out.append({**base, "id": f"{prompt_id}-s{k}", "prompt_id": prompt_id, "sample": k,
                    "prompt": record.get("question", record["prompt"]), "completion": text,
                    "token_count": int(completion.token_count),
                    "finish_reason": completion.finish_reason})
    return out


def _prompts(ctx: StageContext, key: str, model: str) -> Any:
    """The data input `key` rendered with the stage's template, too-long prompts dropped."""
    from r1pipe.data.prepare import prompt_dataset
    from r1pipe.models import load_tokenizer

    data, report = prompt_dataset(ctx.pipeline, ctx.input(key), ctx.config.prompts,
                                  load_tokenizer(model))
    if report.dropped or report.truncated:
        _say(f"{key}: {report}")
    return data


def sampling_job(ctx: StageContext, artifact: str, data: Any, *, n: int, build: Any,
                 description: str, max_new_tokens: int | None = None) -> GenerationJob:
    """`n` samples per prompt of `data` from the sampling model (`from`) into `artifact`:
    what both generating steps of the stage share (the model, the card, the chunking, and
    this process's share: its `--shard` part, the merge run that joins the parts, its
    rank)."""
    from r1pipe.artifacts import stage_card
    from r1pipe.generation.lazy import Engine

    model = ctx.input("from")
    card = stage_card(ctx, description, f"{n} sample(s) per prompt from `{model}`, every one "
                      "kept, before filtering.", fields=GENERATED_FIELDS)
    return GenerationJob(
        data, ctx.data_dir(artifact), generator=Engine(model, ctx.pipeline.generation,
                                                       ctx.pipeline.seed),
        sampling=sampling(ctx, n, max_new_tokens), build=build,
        chunk_size=ctx.config.chunk_size, description=description, card=card,
        place=Placement.of(ctx), metrics=ctx.metrics)


def _done(ctx: StageContext, artifact: str) -> JobReport | None:
    """The report of a generation already complete (so no data or model is loaded)."""
    from r1pipe.artifacts import read_manifest

    if not is_complete(ctx.data_dir(artifact)):
        return None
    return JobReport.finished(read_manifest(ctx.data_dir(artifact)))


def generate(ctx: StageContext) -> JobReport:
    """N samples per reasoning prompt from the RL model into `generated/`."""
    cfg: Config = ctx.config
    done = _done(ctx, "generated")
    if done:
        return done
    data = _prompts(ctx, "data", ctx.input("from"))
    job = sampling_job(ctx, "generated", data, n=cfg.samples_per_prompt, build=sample_records,
                       description="sampling reasoning prompts")
    return run_job(job)


def is_simple(record: dict[str, Any], settings: GeneralSettings) -> bool:
    """A query that needs no chain of thought ("hello")."""
    question = final_question(record)
    return (record.get("category") in settings.simple_categories
            or len(question.split()) <= settings.simple_max_words)


def final_question(record: dict[str, Any]) -> str:
    from r1pipe.data.templates import to_messages

    prompt = record.get("question", record.get("prompt"))
    messages = to_messages(prompt) if prompt is not None else []
    users = [m.get("content", "") for m in messages if m.get("role") == "user"]
    return str(users[-1]) if users else ""


def general_answer(record: dict[str, Any], text: str, *, settings: GeneralSettings,
                   special_token: str) -> str:
    """A general answer as it will be trained on: with its chain of thought when the prompt
    calls for one, else the summary alone."""
    keep_cot = settings.cot == "always" or (settings.cot == "complex"
                                            and not is_simple(record, settings))
    if keep_cot:
        return text
    parsed = split_completion(text, special_token)
    if parsed.reasoning is None:
        return text
    return parsed.summary if parsed.summary is not None else final_response(text, special_token)


def generate_general(ctx: StageContext) -> JobReport:
    """General prompts answered by the model (or their references) into
    `general_generated/`."""
    cfg: Config = ctx.config
    if cfg.general_data is None:
        return JobReport()
    done = _done(ctx, "general_generated")
    if done:
        return done
    settings = cfg.general
    if settings.mode == "reference":
        if ctx.shard is not None or not ctx.is_main_process:  # cheap: one process writes it
            return JobReport()
        return reference_answers(ctx)
    data = _prompts(ctx, "general_data", ctx.input("from"))
    build = partial(sample_records, transform=partial(
        general_answer, settings=settings, special_token=cfg.special_token))
    job = sampling_job(ctx, "general_generated", data, n=settings.samples_per_prompt,
                       build=build, description="answering general prompts",
                       max_new_tokens=settings.max_new_tokens)
    return run_job(job)


def reference_answers(ctx: StageContext) -> JobReport:
    """General samples taken from the data's reference answers (no chain of thought)."""
    from r1pipe.artifacts import ShardedJsonlWriter, stage_card
    from r1pipe.data.prepare import load_input
    from r1pipe.models import load_tokenizer

    cfg: Config = ctx.config
    tokenizer = load_tokenizer(ctx.input("train_from"))
    data = load_input(ctx.pipeline, ctx.input("general_data"))
    missing = 0

    class _Answer:
        def __init__(self, text: str) -> None:
            self.text = text
            self.token_count = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            self.finish_reason = "stop"

    def records() -> Any:
        nonlocal missing
        for record in data:
            reference = record.get("reference")
            if not isinstance(reference, str) or not reference.strip():
                missing += 1
                continue
            yield from sample_records(record, [_Answer(reference)])

    writer = ShardedJsonlWriter(ctx.data_dir("general_generated"))
    count = writer.write_records(records(), shard_size=cfg.chunk_size)
    if missing:
        _say(f"general_data: {missing} prompt(s) have no reference answer and were skipped")
    writer.finalize(card=stage_card(
        ctx, "general reference answers",
        "General prompts with their reference answers, before filtering.",
        fields=GENERATED_FIELDS, stats={"prompts without a reference": missing}),
        meta={"prompts": count})
    return JobReport(records=count, prompts=count, complete=True)


# ---------------------------------------------------------------------------------------
# 3. Filter
# ---------------------------------------------------------------------------------------


def filter_samples(ctx: StageContext, src: str, dst: str, settings: FilterSettings,
                   keep_per_prompt: int | None, *, judged: bool = True) -> FilterSummary:
    """Every sample of `src` with its verdict into `dst`; returns the counts per filter.

    The judge (if configured) rates what the rules cannot check; reference answers are not
    sent to it (`judged=False`)."""
    from r1pipe.artifacts import DatasetCard, count_records, read_manifest, stage_card

    cfg: Config = ctx.config
    if is_complete(ctx.data_dir(dst)):
        return FilterSummary.from_dict(read_manifest(ctx.data_dir(dst)).meta["summary"])
    summary = FilterSummary()
    judge = make_judge(cfg.judge, cfg.special_token) if cfg.judge and judged else None
    workers = filter_workers(cfg.filter_workers, count_records(ctx.data_dir(src)), judge)
    # In worker processes the summary is counted from what they wrote (see map_shards).
    transform = partial(apply_filters, settings=settings, keep_per_prompt=keep_per_prompt,
                        judge=judge, special_token=cfg.special_token,
                        summary=summary if workers == 1 else None)

    def card() -> DatasetCard:
        return stage_card(
            ctx, f"{dst} samples with verdicts", "Every sample with its verdict "
            "(`kept`/`rejected`), the filter that removed it and the measured values. Rejected "
            "samples are kept for audit and for preference pairs.", fields=FILTERED_FIELDS,
            stats={"kept": summary.kept, **{
                f"removed by {k}": v for k, v in summary.as_dict()["removed_by"].items()}})

    map_shards(ctx.data_dir(src), ctx.data_dir(dst), transform, on_skip=summary.add_all,
               card=card, meta=lambda: {"summary": summary.as_dict()},
               description=f"filtering {src}", workers=workers)
    if not summary.adds_up:  # a bug, never a data problem: refuse to go on with it
        raise StageFailed(f"filter summary of {dst} does not add up: {summary.as_dict()}")
    return summary


def filter_workers(configured: int | None, records: int, judge: Any) -> int:
    """Processes for the filters: as configured, else one per CPU for large artifacts. A
    judge (network-bound, concurrent already, and not picklable) keeps them in-process."""
    if judge is not None:
        return 1
    if configured is not None:
        return configured
    return min(os.cpu_count() or 1, MAX_AUTO_WORKERS) if records >= AUTO_WORKERS_FROM else 1


# ---------------------------------------------------------------------------------------
# 4. Mix
# ---------------------------------------------------------------------------------------


def sft_record(record: dict[str, Any], *, source: str, special_token: str) -> dict[str, Any]:
    """A kept sample as SFT data: the question as a user turn, the answer in the cold-start
    layout `|special_token|reasoning|special_token|summary`."""
    from r1pipe.data.templates import format_completion, to_messages

    text = record["completion"]
    parsed = split_completion(text, special_token)
    summary = parsed.summary if parsed.summary is not None else final_response(text,
                                                                                special_token)
    completion = format_completion(parsed.reasoning, summary, "special_token", special_token)
    return {"id": record["id"], "prompt": to_messages(record["prompt"]),
            "completion": [{"role": "assistant", "content": completion}], "source": source,
            "prompt_id": record.get("prompt_id"), "reward": record.get("reward")}


def _kept(path: Any) -> Any:
    from r1pipe.artifacts import iter_records

    return (r for r in iter_records(path) if r["verdict"] == "kept")


def mix(ctx: StageContext, reasoning: FilterSummary,
        general: FilterSummary | None) -> tuple[dict[str, int], dict[str, str]]:
    """Draw the configured counts of kept samples, shuffle them by seed, write `mix/`.

    Returns the counts drawn and, for a kind with fewer kept samples than configured, a note
    saying so (all of them are taken)."""
    from r1pipe.artifacts import read_manifest, stage_card

    cfg: Config = ctx.config
    out = ctx.data_dir("mix")
    if is_complete(out):
        meta = read_manifest(out).meta
        return dict(meta["drawn"]), dict(meta.get("notes", {}))
    want = {"reasoning": (cfg.mix.reasoning, reasoning.kept, "filtered"),
            "general": (cfg.mix.general, general.kept if general else 0, "general")}
    sources, notes = [], {}
    for name, (count, available, artifact) in want.items():
        take = min(count, available)
        if take < count:
            notes[name] = f"{take:,} of the {count:,} configured (only {available:,} kept)"
            _say(f"mix: {name}: {notes[name]}")
        if take:
            sources.append(MixSource(name, partial(_kept, ctx.data_dir(artifact)), available,
                                     take, partial(sft_record, source=name,
                                                   special_token=cfg.special_token)))
    if not sources:
        raise StageFailed(_empty_mix_message(reasoning, general))
    card = stage_card(
        ctx, "rejection-sampling SFT data", "Correct, readable reasoning samples from the RL "
        "model and general samples, shuffled: the SFT data of R1's third stage (and of "
        "distillation).", fields=MIX_FIELDS,
        stats={f"{s.name} samples": s.take for s in sources} | {
            f"{k} (fewer than configured)": v for k, v in notes.items()})
    drawn = sample_and_shuffle(sources, out, seed=ctx.pipeline.seed,
                               records_per_shard=cfg.records_per_shard, card=card,
                               meta={"notes": notes})
    return {"reasoning": drawn.get("reasoning", 0), "general": drawn.get("general", 0)}, notes


def _empty_mix_message(reasoning: FilterSummary, general: FilterSummary | None) -> str:
    parts = [f"reasoning: {reasoning.explain_empty()}"]
    parts.append(f"general: {general.explain_empty()}" if general else
                 "general: none (general_data is null)")
    return ("the SFT mix would be empty, so there is nothing to train on; " + "; ".join(parts)
            + ". Relax `filters:` of the stage, sample more (samples_per_prompt), or use a "
            "stronger sampling model")


# ---------------------------------------------------------------------------------------
# 5. Train
# ---------------------------------------------------------------------------------------


def train(ctx: StageContext, counts: dict[str, int]) -> Any:
    """SFT of the base model on the mix, 2 epochs by default (the paper's setting)."""
    from r1pipe.train import CardText, sft, sft_data

    cfg: Config = ctx.config
    model = ctx.input("train_from")
    data = sft_data(ctx, str(ctx.data_dir("mix")), model=model)
    card = CardText(
        {f"{ctx.name}:mix": data.num_rows, **{f"{k} samples": v for k, v in counts.items()}},
        "Rejection sampling + SFT: the base model fine-tuned on correct, readable samples of "
        "the reasoning-RL model and general samples.",
        tags=("rejection-sampling",), base_model=ctx.pipeline.base_model)
    return sft(ctx, model=model, train_dataset=data, card=card,
               defaults={"num_train_epochs": 2}, lora=cfg.lora)


def _say(message: str) -> None:
    from r1pipe.progress import is_main_process
    from r1pipe.terminal import say

    if is_main_process():
        say(message)
