"""Stage schemas: `StageConfig` (the fields every stage section has) and the shared bases
of trained stages, `GRPOStageConfig` and `SFTStageConfig`, with the GRPO-only sections
(`vllm_server:`, `prompt_filter:`, `dynamic_sampling:`). A stage module subclasses one of
them as its `Config`."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from r1pipe.config.health import GateSettings, HealthSettings
from r1pipe.config.refs import BASE, DataRef, Input, ModelRef, collect_refs
from r1pipe.config.sections import LaunchConfig, LoraSection, PromptSettings, Section


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
        return list(collect_refs(self, ""))

    def trainer_config_class(self) -> str | None:
        """The TRL config class `trainer:` is checked against; a stage whose trainer depends
        on a setting (distill's `method: on_policy`) overrides this."""
        return type(self).trainer_class


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
        "base models; with `prompts.template: chat`, the start of the assistant's turn) and "
        "put back in front of each completion before the rewards score it")
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


class SFTStageConfig(StageConfig):
    """A stage trained with TRL's SFTTrainer (loss on completions only)."""

    trainer_class: ClassVar[str | None] = "SFTConfig"

    lora: LoraSection | None = None
