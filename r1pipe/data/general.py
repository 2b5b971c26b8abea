"""The general (non-reasoning) prompts shipped with r1pipe.

R1's third stage adds about 200k non-reasoning samples (writing, factual QA,
self-cognition, translation) so the model stays a general assistant, and its fourth stage
trains on general prompts with preference rewards. A real run points a `hub:` source at a
large dataset; the CPU demo uses this hand-written set, which needs no download. Each
record has a category and, where one exists, a short reference answer that a generative
judge (or a person) can compare against.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from r1pipe.data.tasks import in_test_split, normalise_prompt

RESOURCE = "general_prompts.jsonl"
GENERAL_TEST_FRACTION = 0.1
"""Share of the shipped prompts held out as the `test` split (by hash of the prompt)."""


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict[str, Any], ...]:
    text = resources.files("r1pipe.data").joinpath("resources", RESOURCE).read_text("utf-8")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - caught by the tests
            raise ValueError(f"{RESOURCE} line {number}: {exc}") from exc
        records.append(record)
    return tuple(records)


def general_prompts() -> list[dict[str, Any]]:
    """Every shipped general prompt: `{"id", "prompt", "category", "reference", "task_type"}`."""
    return [dict(r) for r in _shipped()]


def categories() -> list[str]:
    """The categories present in the shipped set, in first-seen order."""
    return list(dict.fromkeys(r["category"] for r in _shipped()))


def generate_general(
    split: str = "train", *, size: int | None = None, test_size: int | None = None
) -> list[dict[str, Any]]:
    """The shipped prompts of one split; `size`/`test_size` cap the count when given.

    The split is decided by a hash of the normalised prompt, like the built-in tasks, so
    the held-out prompts stay held out as the file grows.
    """
    if split not in ("train", "test"):
        raise ValueError(f"the built-in general set has splits 'train' and 'test', not {split!r}")
    want_test = split == "test"
    cap = test_size if want_test else size
    chosen = [
        r
        for r in general_prompts()
        if in_test_split("general:" + normalise_prompt(r["prompt"]), GENERAL_TEST_FRACTION)
        == want_test
    ]
    return chosen if cap is None else chosen[:cap]
