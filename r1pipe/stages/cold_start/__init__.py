"""Cold start: a few thousand readable long chains of thought, then SFT of the base model.

R1-Zero reasons well but is hard to read and mixes languages. So before its RL, DeepSeek-R1
fine-tunes the base model on "thousands of cold-start data": long chains of thought in a
readable layout, `|special_token|<reasoning_process>|special_token|<summary>`, collected by
few-shot prompting with long-CoT examples, by directly prompting for detailed answers with
reflection and verification, and by taking R1-Zero's outputs and refining them. Unreadable
responses are filtered out.

Two steps, each leaving an artifact (see `r1pipe.stages.cold_start.collect` for the collection's details):

1. collect   `data/samples/`   correct, readable, deduplicated samples from any mix of the
                               three ways (and an external dataset), each saying which way
                               produced it and why it passed
2. train     `model/`          SFT of the base model on them (`train.sft`)
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any, ClassVar

from pydantic import Field, model_validator

from r1pipe.config import DataRef, SFTStageConfig
from r1pipe.contract import StageContext, StageFailed, StageResult
from r1pipe.filters import FilterSettings, FilterSummary, correctness
from r1pipe.generation.jobs import GenerationJob, Placement, is_complete, run_job, wait_complete
from r1pipe.generation.lazy import LazyGenerator
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN
from r1pipe.stages.cold_start.collect import (
    Collection,
    CollectSettings,
    direct_prompt,
    external_records,
    few_shot_prompt,
    filter_way,
    kept_stream,
    r1_zero_prompt,
    readable,
    refined_records,
    refiner_prompt,
    remember_kept,
    sample_records,
    token_counter,
)

NAME = "cold-start"


class Config(SFTStageConfig):
    global_sections: ClassVar[tuple[str, ...]] = ("generation",)

    data: DataRef | None = Field("reasoning", description="prompts the generating ways answer")
    collect: CollectSettings = Field(default_factory=CollectSettings)
    filters: FilterSettings = Field(default_factory=FilterSettings)
    special_token: str = Field(DEFAULT_SPECIAL_TOKEN, min_length=1)
    records_per_shard: int = Field(10_000, ge=1, description="shard size of data/samples")

    @model_validator(mode="after")
    def _inputs_of_enabled_ways(self) -> Config:
        if not self.collect.enabled_ways():
            raise ValueError("collect: every way is off; enable few_shot, direct or r1_zero, "
                             "or give an external dataset (collect.external)")
        if not self.collect.generating():
            self.data = None  # external samples only: the prompts are not an input
        elif self.data is None:
            raise ValueError("data: the generating ways need prompts; name a source or "
                             "<stage>:<artifact>")
        return self


class EmptyCollection(StageFailed):
    """Nothing passed the filters: the stage stops instead of training on nothing."""


def run(ctx: StageContext[Config]) -> StageResult:
    cfg: Config = ctx.config
    samples = ctx.data_dir("samples")
    collection = None
    if not is_complete(samples):
        # Under `accelerate launch` every rank samples its own chunks; rank 0 then selects
        # while the others wait, and all of them train.
        parts = generate(ctx)
        if ctx.shard is not None:  # this machine's part is done; a run without --shard merges
            if not ctx.is_main_process:
                return StageResult()
            return StageResult(summary={"shard": f"{ctx.shard.index}/{ctx.shard.count}",
                                        **{f"{w} chunks generated": n for w, n in parts.items()}})
        refine_r1_zero(ctx)
        if ctx.is_main_process:
            collection = select(ctx)
    if not ctx.is_main_process:
        wait_complete(samples)
        return StageResult(summary=train(ctx, None))
    out = train(ctx, collection)
    artifacts = {"model": "model", "samples": "data/samples",
                 **{f"filtered/{w}": f"data/filtered/{w}" for w in cfg.collect.enabled_ways()}}
    return StageResult(summary=out, artifacts=artifacts)


# ---------------------------------------------------------------------------------------
# 1. Collect: generate with each way, refine, filter, keep
# ---------------------------------------------------------------------------------------


def _lazy(model: str, ctx: StageContext) -> LazyGenerator:
    """A generator loaded on first use and shared by the jobs that use the same model."""
    return LazyGenerator.for_model(model, ctx.pipeline.generation, seed=ctx.pipeline.seed)


def _model(ctx: StageContext, spec: Any) -> str:
    from r1pipe.models import materialize

    return materialize(spec, ctx.layout.imports)


def _label(ctx: StageContext, way: str) -> str:
    """Which model a way's samples come from, for the records' `generator` field."""
    collect = ctx.config.collect
    if way == "r1_zero":
        return f"stage {collect.r1_zero.model}"
    if collect.teacher is not None:
        return collect.teacher.describe()
    source = ctx.config.from_
    return f"base model ({ctx.pipeline.base_model.describe()})" if source == "base" else (
        f"stage {source}")


def _chat(ctx: StageContext, model: str) -> bool:
    """Whether `model` is prompted with chat messages (see `collect.prompt_style`)."""
    style = ctx.config.collect.prompt_style
    if style != "auto":
        return style == "chat"
    if ctx.pipeline.generation.backend == "openai":
        return True
    from r1pipe.models import load_tokenizer

    return bool(getattr(load_tokenizer(model), "chat_template", None))


def _sampling(ctx: StageContext, way: Any, offset: int, *, n: int | None = None,
              max_new_tokens: int | None = None, stop: list[str] | None = None) -> Any:
    from r1pipe.generation import Sampling

    gen = ctx.pipeline.generation
    return Sampling(n=n or way.samples_per_prompt,
                    temperature=gen.temperature if way.temperature is None else way.temperature,
                    top_p=gen.top_p,
                    max_new_tokens=max_new_tokens or way.max_new_tokens or gen.max_new_tokens,
                    stop=stop, seed=ctx.pipeline.seed + 1_000_003 * offset)


def _prompt_records(ctx: StageContext, count: int) -> list[dict[str, Any]]:
    """The first `count` records of `data`, the question as plain text."""
    from r1pipe.data.prepare import load_input
    from r1pipe.data.templates import to_messages

    out = []
    for record in load_input(ctx.pipeline, ctx.input("data")):
        if len(out) == count:
            break
        users = [m["content"] for m in to_messages(record["prompt"]) if m["role"] == "user"]
        out.append({**record, "prompt": str(users[-1] if users else "")})
    return out


def _way_job(ctx: StageContext, artifact: str, records: Any, *, generator: Any,
             sampling: Any, prompt_of: Any, build: Any, description: str) -> GenerationJob:
    """The job of one collection step: raw samples into `generated/<...>/`, chunked by
    `collect.chunk_size`, in this process's share of the stage (`Placement.of`)."""
    from r1pipe.artifacts import stage_card

    card = stage_card(ctx, f"cold-start {description}",
                      "Raw samples before refinement and filtering.")
    return GenerationJob(records, ctx.data_dir(artifact), generator=generator,
                         sampling=sampling, build=build, chunk_size=ctx.config.collect.chunk_size,
                         prompt_of=prompt_of, description=description, card=card,
                         place=Placement.of(ctx), metrics=ctx.metrics)


def generate(ctx: StageContext) -> dict[str, int]:
    """Raw samples of every enabled way under `generated/<way>/`; returns the chunks each
    generated now. Way `external` reads its dataset instead."""
    cfg: Config = ctx.config
    collect = cfg.collect
    todo = [w for w in ("few_shot", "direct", "r1_zero")
            if getattr(collect, w).enabled and not is_complete(ctx.data_dir(f"generated/{w}"))]
    done: dict[str, int] = {}
    if todo:
        records = _prompt_records(ctx, max(getattr(collect, w).prompts for w in todo))
        teacher = _model(ctx, collect.teacher) if collect.teacher else ctx.input("from")
        teacher_gen = _lazy(teacher, ctx)
        try:
            for offset, way in enumerate(("few_shot", "direct", "r1_zero")):
                if way not in todo:
                    continue
                settings = getattr(collect, way)
                if way == "r1_zero":
                    teacher_gen.close()  # one engine in memory at a time
                model = ctx.input("collect.r1_zero.model") if way == "r1_zero" else teacher
                generator = teacher_gen if way != "r1_zero" else _lazy(model, ctx)
                chat = way != "r1_zero" and _chat(ctx, model)
                prefix = _r1_zero_prefix(ctx) if way == "r1_zero" else ""
                prompt_of = {
                    "few_shot": partial(few_shot_prompt, settings=settings, chat=chat,
                                        special_token=cfg.special_token),
                    "direct": partial(direct_prompt, settings=settings, chat=chat),
                    "r1_zero": partial(r1_zero_prompt, prefix=prefix,
                                       **_r1_zero_prompting(ctx))}[way]
                stop = ["\nProblem:"] if way == "few_shot" and not chat else None
                report = run_job(_way_job(
                    ctx, f"generated/{way}", records[:settings.prompts], generator=generator,
                    sampling=_sampling(ctx, settings, offset, stop=stop), prompt_of=prompt_of,
                    build=partial(sample_records, way=way, generator=_label(ctx, way),
                                  prefix=prefix),
                    description=f"{way.replace('_', '-')} samples"))
                if way == "r1_zero":
                    generator.close()
                done[way] = report.generated
        finally:
            teacher_gen.close()
    if collect.external is not None and ctx.shard is None and ctx.is_main_process:
        _read_external(ctx)
    return done


def _r1_zero_prefix(ctx: StageContext) -> str:
    """The opening the R1-Zero model's answers were trained to follow: way (c)'s own
    `response_prefix`, else that of the stage its `model` names, else none."""
    settings = ctx.config.collect.r1_zero
    if settings.response_prefix is not None:
        return settings.response_prefix
    upstream = ctx.pipeline.stages.get(str(settings.model))
    return getattr(upstream, "response_prefix", None) or ""


def _r1_zero_prompting(ctx: StageContext) -> dict[str, Any]:
    """Template and system prompt of the stage way (c)'s `model` names (the R1-Zero stage,
    as it was trained); the paper's template for a model from elsewhere."""
    upstream = ctx.pipeline.stages.get(str(ctx.config.collect.r1_zero.model))
    prompts = getattr(upstream, "prompts", None)
    if prompts is None:
        return {"template": "r1_zero", "system_prompt": None}
    return {"template": prompts.template, "system_prompt": prompts.system_prompt}


def _read_external(ctx: StageContext) -> None:
    from r1pipe.artifacts import ShardedJsonlWriter, stage_card
    from r1pipe.data.sft import stream_records

    out = ctx.data_dir("generated/external")
    if is_complete(out):
        return
    name = ctx.config.collect.external
    writer = ShardedJsonlWriter(out)
    count = writer.write_records(external_records(
        stream_records(ctx.input("collect.external"), ctx.pipeline), name),
        shard_size=ctx.config.records_per_shard)
    writer.finalize(card=stage_card(
        ctx, "cold-start external samples",
        f"Samples read from `{name}`, before refinement and filtering."),
        meta={"prompts": count})


def refine_r1_zero(ctx: StageContext) -> None:
    """With a refiner model: rewrite every correct R1-Zero sample readably (the paper's
    human post-processing) into `generated/r1_zero-refined/`."""
    from r1pipe.artifacts import iter_records
    from r1pipe.models import load_tokenizer

    cfg: Config = ctx.config
    settings = cfg.collect.r1_zero
    if not settings.enabled or settings.refiner is None:
        return
    if not ctx.is_main_process:  # every rank refines its chunks of the finished samples
        wait_complete(ctx.data_dir("generated/r1_zero"))
    count = token_counter(load_tokenizer(ctx.input("from")))

    def correct(record: dict[str, Any]) -> bool:
        """Right (or unverifiable, where the filters keep those) and not cut off (where the
        filters drop those): the samples the correctness filters would let through."""
        if cfg.filters.drop_truncated and record.get("finish_reason") == "length":
            return False
        ready = readable(record, special_token=cfg.special_token, count_tokens=count)
        verdict = correctness(ready, cfg.special_token)
        return verdict == 1.0 or (verdict is None and cfg.filters.unverifiable == "keep")

    refiner = _model(ctx, settings.refiner)
    generator = _lazy(refiner, ctx)
    job = _way_job(
        ctx, "generated/r1_zero-refined",
        (r for r in iter_records(ctx.data_dir("generated/r1_zero")) if correct(r)),
        generator=generator, sampling=_sampling(ctx, settings, 3, n=1,
                                                max_new_tokens=settings.refiner_max_new_tokens),
        prompt_of=partial(refiner_prompt, settings=settings, chat=_chat(ctx, refiner)),
        build=partial(refined_records, refiner=settings.refiner.describe()),
        description="refining R1-Zero samples")
    # Never a merge: the `--shard` parts stop before refining, so the run that joins them
    # refines every chunk itself.
    place = dataclasses.replace(job.place, merge=False)
    try:
        run_job(dataclasses.replace(job, place=place))
    finally:
        generator.close()


def select(ctx: StageContext) -> Collection:
    """Every sample in the cold-start layout with its verdict (`filtered/<way>/`), then the
    kept ones of all ways, deduplicated, into `samples/`."""
    from r1pipe.artifacts import ShardedJsonlWriter, iter_records, stage_card
    from r1pipe.generation.shard_steps import map_shards
    from r1pipe.models import load_tokenizer

    cfg: Config = ctx.config
    seen: set[bytes] = set()  # answers kept so far, so no way repeats another
    transform = partial(filter_way, settings=cfg.filters, special_token=cfg.special_token,
                        count_tokens=token_counter(load_tokenizer(ctx.input("from"))), seen=seen)
    ways = cfg.collect.enabled_ways()
    for way in ways:
        src = "r1_zero-refined" if way == "r1_zero" and cfg.collect.r1_zero.refiner else way
        map_shards(ctx.data_dir(f"generated/{src}"), ctx.data_dir(f"filtered/{way}"),
                   transform, on_skip=partial(remember_kept, seen=seen),
                   description=f"filtering {way.replace('_', '-')} samples",
                   card=stage_card(
                       ctx, f"cold-start {way} samples with verdicts",
                       "Every sample in the cold-start layout with its verdict "
                       "(`kept`/`rejected`), the filter that removed it and the measured "
                       "values."))
    collection = Collection({way: FilterSummary() for way in ways})
    writer = ShardedJsonlWriter(ctx.data_dir("samples"))
    writer.write_records(kept_stream((iter_records(ctx.data_dir(f"filtered/{w}"))
                                      for w in ways), collection),
                         shard_size=cfg.records_per_shard)
    if collection.kept == 0:
        raise EmptyCollection(
            "cold-start collection kept nothing to train on: " + collection.explain_empty() +
            ". Relax the stage's `filters:`, collect more (collect.<way>.prompts, "
            "samples_per_prompt), use a stronger teacher (collect.teacher), or add known-good "
            "samples (collect.external)")
    writer.finalize(card=stage_card(
        ctx, "cold-start data", "Correct, readable long chains of thought in the layout "
        f"`{cfg.special_token}reasoning{cfg.special_token}summary`: the SFT data of R1's cold "
        "start.", fields=SAMPLE_FIELDS,
        stats={f"{w} samples": s.kept for w, s in collection.ways.items()}),
        meta={"collection": collection.as_dict()})
    for way, summary in collection.ways.items():
        summary.print(f"cold start: {way} samples")
    return collection


SAMPLE_FIELDS = {
    "prompt": "chat messages: the user's question",
    "completion": "chat messages: the answer in the cold-start layout",
    "way": "few_shot, direct, r1_zero or external: how the sample was produced",
    "source": "`<way>:<model or dataset>`",
    "generator": "the model (or dataset) that wrote it",
    "refined_by": "`rules`, preceded by `refiner:<model>` when a model rewrote it",
    "verdict / filters / reward": "why it passed: the measured correctness, language share, "
    "tokens, paragraph words, code blocks",
    "prompt_id / answer / task": "the prompt record it answers",
}


# ---------------------------------------------------------------------------------------
# 2. Train
# ---------------------------------------------------------------------------------------


def train(ctx: StageContext, collection: Collection | None) -> dict[str, Any]:
    """SFT of the `from` model (the base model) on the collected samples."""
    from r1pipe.artifacts import read_manifest
    from r1pipe.train import CardText, sft, sft_data

    cfg: Config = ctx.config
    samples = ctx.data_dir("samples")
    model = ctx.input("from")
    stats = collection.as_dict() if collection else read_manifest(samples).meta["collection"]
    card = CardText({f"{ctx.name}:samples": stats["kept"]}, "Cold start: the base model "
                    "fine-tuned on readable long chains of thought (reasoning, then a summary) "
                    "collected by few-shot prompting, direct prompting and refining R1-Zero's "
                    "answers.")
    out = sft(ctx, model=model, train_dataset=sft_data(ctx, str(samples), model=model),
              card=card, lora=cfg.lora)
    per_way = {f"{w} {k}": s[k] for w, s in stats["ways"].items() for k in ("total", "kept")}
    return {"samples generated": stats["generated"], "samples kept": stats["kept"],
            **{k.replace(" total", " generated"): v for k, v in per_way.items()},
            **{f"removed by {k}": v for k, v in stats["removed_by"].items()},
            "steps": out.steps, **out.metrics}
