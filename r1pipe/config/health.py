"""`health:` and `gate:` of a stage: the training-health rules (docs/health.md) and the
stage gate read after evaluation (`r1pipe.gates`)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from r1pipe.config.sections import Section

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
