"""Length-shaping rewards: cosine-scaled correctness, DAPO's overlong punishment, repetition.

Lengths are in tokens when TRL passes `completion_ids` (always, in training) and in
characters otherwise (`score()` on stored text), so set `max_length` in the unit of use.
The formulas follow TRL's `trl.rewards` (`get_cosine_scaled_reward`,
`get_soft_overlong_punishment`, `get_repetition_penalty_reward`); they are re-stated here
rather than imported because TRL's versions are tied to its own math-only accuracy check and
to token ids, and importing `trl` costs seconds where filters only score strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN
from r1pipe.rewards.accuracy import correctness
from r1pipe.rewards.base import Batch, RewardFunc, Score


@dataclass
class CosineLength(RewardFunc):
    """Correctness scaled by length on a cosine schedule ("Demystifying Long CoT", C.1).

    Correct answers earn `max_value_correct` at length 0 falling to `min_value_correct` at
    `max_length`: shorter is better. Wrong answers earn `min_value_wrong` at length 0 rising
    to `max_value_wrong` at `max_length`: a longer wrong attempt is less bad, so the model
    keeps exploring. Lengths past `max_length` stay at the long end (cos is periodic).
    None where accuracy is None (no usable reference).
    """

    family = "cosine"

    max_length: int | None = None
    """Length at the long end of the schedule; defaults to the trainer's max completion length."""
    min_value_wrong: float = -1.0
    max_value_wrong: float = -0.5
    min_value_correct: float = 0.5
    max_value_correct: float = 1.0
    special_token: str = DEFAULT_SPECIAL_TOKEN
    timeout: float = 2.0
    answer_column: str = "answer"

    def score_one(self, batch: Batch, i: int) -> Score:
        correct = correctness(batch, i, self.answer_column, self.special_token, self.timeout)
        if correct is None:
            return None
        assert self.max_length
        progress = min(batch.length(i) / self.max_length, 1.0)
        cosine = math.cos(progress * math.pi)
        if correct:
            low, high = self.min_value_correct, self.max_value_correct
        else:
            low, high = self.max_value_wrong, self.min_value_wrong
        return low + 0.5 * (high - low) * (1.0 + cosine)

    def problems(self) -> list[str]:
        if self.max_length is not None and self.max_length <= 0:
            return ["max_length must be positive"]
        return []


@dataclass
class Overlong(RewardFunc):
    """DAPO's soft overlong punishment (Eq. 13): 0 up to `max_length - cache_length`, then a
    linear ramp to -1 at `max_length`, and -1 beyond it."""

    family = "overlong"

    max_length: int | None = None
    """L_max; defaults to the trainer's max completion length."""
    cache_length: int | None = None
    """L_cache, the width of the ramp; defaults to a fifth of max_length."""

    def score_one(self, batch: Batch, i: int) -> Score:
        assert self.max_length
        cache = self.cache_length if self.cache_length is not None else self.max_length // 5
        length = batch.length(i)
        if length <= self.max_length - cache:
            return 0.0
        if length <= self.max_length:
            return (self.max_length - cache - length) / cache
        return -1.0

    def problems(self) -> list[str]:
        if self.max_length is not None and self.max_length <= 0:
            return ["max_length must be positive"]
        if self.cache_length is not None and self.max_length is not None and not (
            0 < self.cache_length <= self.max_length
        ):
            return ["cache_length must be between 1 and max_length"]
        return []


_WORDS = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff]|[^\W_]+")


def repeated_ngram_share(text: str, n: int = 3) -> float:
    """Share of the word n-grams of `text` that repeat an earlier one (0.0 to just under 1).

    Words are lower-cased letter/digit runs, and each CJK character is a word, so Chinese
    loops are caught as well as English ones.
    """
    words = [w.lower() for w in _WORDS.findall(text)]
    if len(words) < n:
        return 0.0
    grams = list(zip(*(words[k:] for k in range(n)), strict=False))
    return 1.0 - len(set(grams)) / len(grams)


@dataclass
class Repetition(RewardFunc):
    """N-gram repetition penalty ("Demystifying Long CoT", C.2): `max_penalty` times the
    share of repeated word n-grams, 0.0 for a text without repeats."""

    family = "repetition"

    ngram_size: int = 3
    max_penalty: float = -1.0

    def score_one(self, batch: Batch, i: int) -> Score:
        return self.max_penalty * repeated_ngram_share(batch.texts[i], self.ngram_size)

    def problems(self) -> list[str]:
        out = []
        if self.ngram_size < 1:
            out.append("ngram_size must be at least 1")
        if self.max_penalty > 0:
            out.append("max_penalty must not be positive (it is a penalty)")
        return out
