"""How well the stage's reward model ranks preference pairs it was not trained on.

A reward model's training loss says little about whether it will score the policy's answers
sensibly: it can learn its pairs by heart. So `reward_model.train.heldout_fraction` of the
pairs is kept out of training, chosen by a hash of the prompt (deterministic, and a prompt's
pairs all fall on one side, so no held-out prompt was seen in training), and after training
each held-out pair is scored: accuracy is the share with score(chosen) > score(rejected);
0.5 is chance. The result is written to `reward_model/heldout.json`, so a resumed stage that
reuses the trained reward model reads it back rather than training or scoring again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ACCURACY_FILE = "heldout.json"
"""Inside the reward model folder: the held-out accuracy, for a resumed stage."""
SCORE_BATCH = 32
"""Pairs scored per call of the reward model."""


def is_heldout(prompt: Any, fraction: float) -> bool:
    """Whether the pairs of `prompt` are held out of training: a pure function of the
    normalised prompt text, like the built-in tasks' test split."""
    from r1pipe.data.tasks import in_test_split, normalise_prompt
    from r1pipe.decontam import prompt_text

    return fraction > 0 and in_test_split(
        "preference:" + normalise_prompt(prompt_text(prompt)), fraction)


@dataclass
class HeldoutAccuracy:
    """Held-out pair accuracy of a reward model: share of `pairs` ranked right."""

    pairs: int
    correct: int
    fraction: float

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.pairs if self.pairs else None

    def summary(self) -> dict[str, Any]:
        """The stage-summary (and card) lines."""
        return {"reward-model held-out pairs": self.pairs,
                "reward-model held-out accuracy": (None if self.accuracy is None
                                                   else round(self.accuracy, 4))}


def score_pairs(model: str, pairs: list[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(score of chosen, score of rejected) of each pair, by the `reward_model` reward the
    stage's rewards use (whole response, every task type), so the ranking measured is the
    ranking GRPO gets."""
    from r1pipe.decontam import prompt_text
    from r1pipe.rewards import build_reward_funcs, score

    spec = build_reward_funcs({"heldout": {"reward": "reward_model", "model": model,
                                           "part": "full", "task_types": "all"}})
    out: list[tuple[float, float]] = []
    for start in range(0, len(pairs), SCORE_BATCH):
        batch = pairs[start:start + SCORE_BATCH]
        prompts = [p.get("prompt") or "" for p in batch]
        chosen = score(spec, prompts, [prompt_text(p["chosen"]) for p in batch])
        rejected = score(spec, prompts, [prompt_text(p["rejected"]) for p in batch])
        out += [(float("nan") if c is None else c, float("nan") if r is None else r)
                for c, r in zip(chosen.per_reward["heldout"], rejected.per_reward["heldout"],
                                strict=True)]
    return out


def measure_accuracy(model: str, records: Iterable[Mapping[str, Any]], fraction: float
                     ) -> HeldoutAccuracy:
    """Score the held-out pairs among `records` (the pairs artifact) with `model`. A pair
    the model could not score (NaN) counts as ranked wrong."""
    held = [r for r in records if is_heldout(r.get("prompt"), fraction)]
    scores = score_pairs(model, held) if held else []
    return HeldoutAccuracy(pairs=len(held), correct=sum(c > r for c, r in scores),
                           fraction=fraction)


def write_accuracy(folder: Path, result: HeldoutAccuracy) -> None:
    from r1pipe.artifacts import atomic_write_json

    atomic_write_json(folder / ACCURACY_FILE, asdict(result))


def read_accuracy(folder: Path, fraction: float) -> HeldoutAccuracy | None:
    """The accuracy a finished attempt wrote, if it was measured with this `fraction`."""
    from r1pipe.artifacts import read_json

    try:
        saved = read_json(folder / ACCURACY_FILE)
        result = HeldoutAccuracy(int(saved["pairs"]), int(saved["correct"]),
                                 float(saved["fraction"]))
    except (TypeError, KeyError, ValueError):
        return None
    return result if result.fraction == fraction else None
