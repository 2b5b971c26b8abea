"""Detectors of how a chain of thought is written: reasoning steps and code blocks.

The rejection filters call the plain functions on one string (the paper drops chains of
thought with mixed languages, long paragraphs and code blocks); the reward classes wrap the
same functions for RL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, split_completion
from r1pipe.rewards.base import Batch, RewardFunc, Score

# open-r1's step markers: "Step 1:", numbered lines, bullets, and ordinal transitions
_STEP = re.compile(
    r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)", re.MULTILINE
)
_FENCE = re.compile(r"^[ \t]*(?:```|~~~)", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")

Part = Literal["reasoning", "answer", "all"]


def count_reasoning_steps(text: str) -> int:
    """Number of explicit step markers ("Step 1:", "1.", bullets, "First,", "Finally,")."""
    return sum(1 for _ in _STEP.finditer(text))


def has_code_block(text: str) -> bool:
    """Whether `text` contains a fenced code block (a line opening with ``` or ~~~).

    An unclosed fence counts: a generation cut off inside code still wrote code.
    """
    return _FENCE.search(text) is not None


def longest_paragraph_words(text: str) -> int:
    """Words in the longest paragraph (blank-line separated): the "long paragraph" filter."""
    return max((len(p.split()) for p in _PARAGRAPH_BREAK.split(text)), default=0)


def _part(text: str, part: Part, special_token: str) -> str:
    if part == "all":
        return text
    parsed = split_completion(text, special_token)
    if part == "reasoning":
        return parsed.reasoning if parsed.reasoning is not None else text
    return parsed.answer or parsed.summary or ""


@dataclass
class ReasoningSteps(RewardFunc):
    """min(1, steps / min_steps) over the chain of thought (open-r1's reasoning_steps)."""

    family = "reasoning_steps"

    min_steps: int = 3
    part: Part = "reasoning"
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def score_one(self, batch: Batch, i: int) -> Score:
        steps = count_reasoning_steps(_part(batch.texts[i], self.part, self.special_token))
        return min(1.0, steps / self.min_steps)

    def problems(self) -> list[str]:
        return [] if self.min_steps >= 1 else ["min_steps must be at least 1"]


@dataclass
class CodeBlock(RewardFunc):
    """-1.0 when the chosen part contains a fenced code block, else 0.0: a penalty (the
    paper keeps code blocks out of chains of thought), so give it a positive weight."""

    family = "code_block"

    part: Part = "reasoning"
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def score_one(self, batch: Batch, i: int) -> Score:
        return -1.0 if has_code_block(_part(batch.texts[i], self.part, self.special_token)) else 0.0
