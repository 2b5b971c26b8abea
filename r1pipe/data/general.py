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


REFUSALS = ("I don't know.", "I can't help with that.", "Sorry, I have no answer to that.")
"""Unhelpful answers a preference pair can reject: a refusal of a harmless request."""
REJECTIONS = ("off_topic", "truncated", "refusal")
"""How the rejected answer of a built-in general pair is made (`general_preferences`)."""
TRUNCATED_WORDS = 3
"""A truncated reference keeps this many words (or a third of its characters, if fewer)."""


def _truncated(reference: str) -> str:
    """The start of a reference: too short to answer (Chinese has no spaces: characters)."""
    words = reference.split()
    if len(words) > TRUNCATED_WORDS:
        return " ".join(words[:TRUNCATED_WORDS])
    return reference[: max(1, len(reference) // 3)]


def general_preferences(split: str = "train", *, size: int | None = None,
                        seed: int = 0) -> list[dict[str, Any]]:
    """Preference pairs made from the shipped prompts of one split, needing no download.

    A reward model for general prompts needs pairs of a better and a worse answer to them.
    Here the better one (`chosen`) is the prompt's reference answer and the worse one
    (`rejected`) is made by rule, the rule mixed over the prompts by `seed`, in equal shares:
    `off_topic` (the reference of a prompt of another category, from the same split, so no
    held-out text leaks into training), `truncated` (the reference cut to its first words)
    or `refusal` (an unhelpful "I don't know."). Prompts without a reference give no pair;
    `size` caps the pairs.
    """
    import random

    referenced = [r for r in generate_general(split) if r.get("reference")]
    prompts = referenced if size is None else referenced[:size]
    rng = random.Random(seed)
    rules = [REJECTIONS[i % len(REJECTIONS)] for i in range(len(prompts))]
    rng.shuffle(rules)
    pairs = []
    for record, rule in zip(prompts, rules, strict=True):
        reference = record["reference"]
        if rule == "truncated" and _truncated(reference) == reference:
            rule = "off_topic"  # a one-character reference cannot be cut shorter
        if rule == "off_topic":
            rejected = rng.choice([r["reference"] for r in referenced
                                   if r["category"] != record["category"]])
        elif rule == "refusal":
            rejected = rng.choice(REFUSALS)
        else:
            rejected = _truncated(reference)
        pairs.append({**record, "id": f"{record['id']}-pair", "chosen": reference,
                      "rejected": rejected, "rejection": rule})
    return pairs
