"""The phrasing every worked solution shares: a `Voice` that picks among a few alternative
sentences per slot by a hash of the record id (so samples are not all the same text),
ordinal openers, numbers and lists written as a person would.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from r1pipe.data.expressions import (
    format_number,
)


class Voice:
    """Deterministic choice among alternative sentences, by a hash of the record id and the
    slot, so two records read differently but one record always reads the same."""

    def __init__(self, key: str) -> None:
        self.key = key

    def pick(self, slot: str, options: Sequence[str]) -> str:
        digest = hashlib.blake2b(f"{self.key}\x1f{slot}".encode(), digest_size=8).digest()
        return options[int.from_bytes(digest, "big") % len(options)]

    def say(self, slot: str, options: Sequence[str], **values: Any) -> str:
        return self.pick(slot, options).format(**values)


_ORDINALS = (("First,", "Next,", "Then", "After that,", "Finally,"),
             ("First,", "Then", "Next,", "Now", "Finally,"),
             ("To start,", "Next,", "Then", "Next,", "Last,"))


def ordinal(voice: Voice, index: int, count: int) -> str:
    words = _ORDINALS[int(voice.pick("ordinals", "012"))]
    if index == 0:
        return words[0]
    if index == count - 1:
        return words[4]
    return words[1 + (index - 1) % 3]


def num_text(value: Fraction | int) -> str:
    return format_number(Fraction(value))


def listing(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
