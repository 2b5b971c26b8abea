"""The `eval:` block: benchmarks, their settings over the block's defaults, and
decontamination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from r1pipe.config.errors import ConfigError
from r1pipe.config.sections import PromptSettings, Section
from r1pipe.config.stage import check_rewards
from r1pipe.data.sources import DataSourceConfig


class BenchmarkConfig(Section):
    """One benchmark under `eval.benchmarks:`: its data and, optionally, its own settings.

    Published numbers are measured per benchmark (the paper and open-r1: 64 samples for AIME,
    4 for MATH-500, 8 for GPQA, 16 for LiveCodeBench), so every sampling and prompt setting of
    the `eval:` block can be overridden here; what is left unset takes the block's value. A
    plain data source (`arith: {builtin: arithmetic, split: test}`) is the same as
    `arith: {source: {builtin: arithmetic, split: test}}`, and a bare string names a source of
    the pipeline's `data:` section.
    """

    source: DataSourceConfig | str = Field(
        description="an inline data source, or the name of one under `data:`")
    samples: int | None = Field(None, ge=1, description="k completions per prompt")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, gt=0)
    prompts: PromptSettings | None = Field(
        None, description="template, system prompt and prompt budget of this benchmark")
    instruction: str | None = Field(
        None, description="appended to each question on a new line, e.g. the paper's "
        "'Please reason step by step, and put your final answer within \\\\boxed{}.'; "
        "'' for none where the `eval:` block sets one")
    answer: Literal["math", "choice", "exact", "code"] | None = Field(
        None, description="how answers are checked: math, choice (a letter), exact or code")
    choices: str | list[str] | None = Field(
        None, description="choice: a column holding the options as a list, or the columns "
        "that each hold one option (the correct one first when the data has no letter "
        "answer, as GPQA's columns); the options are listed under the question as A) ... ")
    shuffle_choices: bool = Field(
        False, description="choice: shuffle the options of each question (seeded by the "
        "pipeline seed and the record id), as GPQA needs")
    code: dict[str, Any] = Field(
        default_factory=dict, description="code: parameters of the `code` reward (sandbox "
        "isolation, timeout, memory_mb, max_tests, ...); it scores in `binary` mode: pass@1 "
        "counts a sample right when every test passes")

    @model_validator(mode="before")
    @classmethod
    def _plain_source(cls, value: Any) -> Any:
        """Keep `name: {builtin: ...}` and `name: source_name` valid: a plain source (which
        may carry this benchmark's settings beside the source keys)."""
        if isinstance(value, str):
            return {"source": value}
        if isinstance(value, dict) and "source" not in value:
            own = {k: v for k, v in value.items() if k in cls.model_fields}
            return {**own, "source": {k: v for k, v in value.items() if k not in own}}
        return value

    @field_validator("code")
    @classmethod
    def _code_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value:
            check_rewards({"code": {"weight": 1.0, **value, "mode": "binary"}})
        return value

    @model_validator(mode="after")
    def _choice_settings(self) -> BenchmarkConfig:
        if (self.choices is not None or self.shuffle_choices) and self.answer not in (
                "choice", None):
            raise ValueError("`choices`/`shuffle_choices` only apply to `answer: choice`")
        if self.code and self.answer not in ("code", None):
            raise ValueError("`code:` sandbox parameters only apply to `answer: code`")
        return self


BENCHMARK_DEFAULTS: tuple[str, ...] = ("samples", "temperature", "top_p", "max_new_tokens",
                                       "prompts", "instruction", "answer")
"""Settings a benchmark may set for itself and otherwise takes from the `eval:` block: each
is a field of `EvalConfig` and an optional (None: unset) field of `BenchmarkConfig`, and
`EvalConfig.benchmark` merges exactly these (checked when the module is imported)."""


@dataclass(frozen=True)
class BenchmarkSettings:
    """A benchmark's settings with the `eval:` block's defaults filled in (what runs)."""

    name: str
    source: DataSourceConfig | str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    prompts: PromptSettings
    instruction: str | None
    answer: str
    choices: str | list[str] | None
    shuffle_choices: bool
    code: dict[str, Any]


class DecontaminationConfig(Section):
    """`eval.decontamination:` word n-gram overlap between training prompts and benchmarks.

    Before the first stage trains, every prompt of every `data:` source is compared with
    every benchmark's prompts by word n-grams (open-r1's decontamination: lowercase, strip
    punctuation, split on whitespace, n = 8); a prompt sharing one n-gram with a benchmark
    prompt is contaminated. The report goes to `runs/<name>/decontamination/`; with `drop`
    on, contaminated prompts never reach a trainer or sampler.
    """

    enabled: bool = True
    ngram: int = Field(8, ge=1, le=64, description="words per n-gram (open-r1: 8)")
    drop: bool = Field(True, description="drop contaminated training prompts (else report)")
    examples: int = Field(5, ge=0, description="example matches kept per source and benchmark")


class EvalConfig(Section):
    """The `eval:` block; consumed by `r1pipe eval` and, when asked, after each stage.

    Sampling defaults are the paper's (temperature 0.6, top-p 0.95, k samples per prompt);
    every model of the run is prompted with the same template so the rows compare.
    """

    after_each_stage: bool = False
    benchmarks: dict[str, BenchmarkConfig] = Field(
        default_factory=dict, description="name -> a data source, or {source: ..., and any "
        "of samples, temperature, top_p, max_new_tokens, prompts, instruction, answer}")
    samples: int = Field(4, ge=1, description="k completions per prompt for pass@1")
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(1024, gt=0)
    prompts: PromptSettings = Field(
        default_factory=lambda: PromptSettings(template="r1_zero"),
        description="template for every evaluated model (r1_zero works for base models too)")
    format: Literal["any", "think", "r1_zero", "tag_count", "cold_start"] = Field(
        "any", description="what the format rate counts; any = reasoning then an answer, in "
        "<think> or special-token layout")
    special_token: str = Field("|special_token|", description="the cold-start separator")
    chunk_size: int = Field(32, gt=0, description="prompts per samples shard (resume unit)")
    instruction: str | None = Field(
        None, description="appended to each question on a new line (per benchmark too); the "
        "paper's: 'Please reason step by step, and put your final answer within \\boxed{}.'")
    answer: Literal["math", "choice", "exact", "code"] = Field(
        "math", description="default answer check of the benchmarks")
    decontamination: DecontaminationConfig = Field(default_factory=DecontaminationConfig)

    def benchmark_source(self, name: str, sources: dict[str, DataSourceConfig],
                         file: str | None = None) -> DataSourceConfig:
        """Benchmark `name`'s data source: inline, or the one of `data:` it names."""
        source = self.benchmarks[name].source
        if isinstance(source, DataSourceConfig):
            return source
        if source not in sources:
            raise ConfigError(f"benchmark {name!r} names source {source!r}, which is not under "
                              f"`data:` (have: {', '.join(sources) or 'none'}); define it there "
                              "or give the source inline", file=file,
                              key=f"eval.benchmarks.{name}.source")
        return sources[source]

    def benchmark(self, name: str) -> BenchmarkSettings:
        """The settings benchmark `name` is evaluated with: its own, else this block's (the
        one merge of `BENCHMARK_DEFAULTS`; an empty `instruction` means none)."""
        b = self.benchmarks[name]
        merged = {key: getattr(self, key) if getattr(b, key) is None else getattr(b, key)
                  for key in BENCHMARK_DEFAULTS}
        merged["instruction"] = merged["instruction"] or None
        return BenchmarkSettings(name=name, source=b.source, choices=b.choices,
                                 shuffle_choices=b.shuffle_choices, code=dict(b.code), **merged)

    @field_validator("benchmarks")
    @classmethod
    def _folder_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
                raise ValueError(f"benchmark name {name!r} becomes a folder name: use letters, "
                                 "digits, '.', '_' and '-'")
        return value


def _defaults_line_up() -> None:
    """Each merged setting exists on both sides, unset (None) by default on the benchmark:
    a field added to one model and not the other fails here, at import, not mid-evaluation."""
    for key in BENCHMARK_DEFAULTS:
        own, block = BenchmarkConfig.model_fields.get(key), EvalConfig.model_fields.get(key)
        if own is None or block is None or own.default is not None:
            raise TypeError(f"BENCHMARK_DEFAULTS: {key!r} must be an optional field of "
                            "BenchmarkConfig and a field of EvalConfig")


_defaults_line_up()
