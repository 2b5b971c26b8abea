"""Format rewards: did the model lay its output out as the template asks?

Variants, chosen in YAML with `format: {weight: 0.1, variant: r1_zero}`:

- `think` (default): the reasoning is enclosed in one `<think>…</think>` pair that opens the
  completion and is not empty. What the answer looks like is accuracy's business, which is
  why `<think>…</think> <answer> 7<answer>` still gets the format point in the paper's
  worked example.
- `r1_zero`: strict R1-Zero layout, `<think>…</think>` then `<answer>…</answer>`, one of
  each, both non-empty, nothing but whitespace outside them.
- `tag_count`: partial credit, 0.25 for each of the four tags appearing exactly once
  (open-r1's shaping for models that have not found the format yet).
- `cold_start`: `|special_token|reasoning|special_token|summary`, the readable format of the
  cold-start data, with the configured special token.

All checks are string searches, linear in the completion's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from r1pipe.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DEFAULT_SPECIAL_TOKEN,
    THINK_CLOSE,
    THINK_OPEN,
)
from r1pipe.rewards.base import Batch, RewardFunc, Score

FormatVariant = Literal["think", "r1_zero", "tag_count", "cold_start"]


def think_format(text: str) -> float:
    """1.0 if the completion opens with one non-empty `<think>…</think>` block."""
    body = text.lstrip()
    if not body.startswith(THINK_OPEN):
        return 0.0
    if body.count(THINK_OPEN) != 1 or body.count(THINK_CLOSE) != 1:
        return 0.0
    close = body.find(THINK_CLOSE)
    return 1.0 if body[len(THINK_OPEN):close].strip() else 0.0


def r1_zero_format(text: str) -> float:
    """1.0 for exactly `<think>r</think> <answer>a</answer>` (whitespace aside)."""
    tags = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
    if any(text.count(tag) != 1 for tag in tags):
        return 0.0
    positions = [text.find(tag) for tag in tags]
    if positions != sorted(positions):
        return 0.0
    t_open, t_close, a_open, a_close = positions
    reasoning = text[t_open + len(THINK_OPEN):t_close]
    answer = text[a_open + len(ANSWER_OPEN):a_close]
    outside = text[:t_open] + text[t_close + len(THINK_CLOSE):a_open]
    outside += text[a_close + len(ANSWER_CLOSE):]
    if outside.strip() or not reasoning.strip() or not answer.strip():
        return 0.0
    return 1.0


def tag_count_format(text: str) -> float:
    """0.25 for each of `<think>`, `</think>`, `<answer>`, `</answer>` present exactly once."""
    return sum(0.25 for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
               if text.count(tag) == 1)


def cold_start_format(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> float:
    """1.0 for `|special_token|reasoning|special_token|summary`, both parts non-empty."""
    if not special_token:
        return 0.0
    body = text.lstrip()
    if not body.startswith(special_token) or body.count(special_token) != 2:
        return 0.0
    second = body.find(special_token, len(special_token))
    reasoning = body[len(special_token):second]
    summary = body[second + len(special_token):]
    return 1.0 if reasoning.strip() and summary.strip() else 0.0


@dataclass
class Format(RewardFunc):
    """1.0 when the completion follows the chosen layout (see the module docstring)."""

    family = "format"

    variant: FormatVariant = "think"
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def score_one(self, batch: Batch, i: int) -> Score:
        text = batch.texts[i]
        if self.variant == "think":
            return think_format(text)
        if self.variant == "r1_zero":
            return r1_zero_format(text)
        if self.variant == "tag_count":
            return tag_count_format(text)
        return cold_start_format(text, self.special_token)
