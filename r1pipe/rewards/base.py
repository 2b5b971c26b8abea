"""What every reward shares: TRL's call signature, per-sample columns, and a crash guard.

A reward is an instance of a small dataclass rather than a closure, for the same reason TRL's
own `trl.rewards` are: TRL's async rollout worker pickles reward functions into a spawned
process, and closures do not pickle. The instance carries a `__name__`, which TRL logs as
`rewards/<name>`; the composer sets it to the YAML key.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from r1pipe.parsing import completion_text

logger = logging.getLogger(__name__)

INTERNAL_ERRORS: Counter[str] = Counter()
"""Exceptions caught by the guard, by reward name: tests assert this stays empty."""

_REPORTED: set[tuple[str, str]] = set()
# The last internal error of each reward, for the message when a whole batch fails.
LAST_ERROR: dict[str, str] = {}


class RewardFailed(RuntimeError):
    """A reward raised on every sample of a batch: a broken reward (a model that cannot run,
    a judge that does not answer), not a bad sample. Training on it would read its None
    scores as "no signal" and learn nothing there, so the step fails instead."""

Score = float | None


@dataclass
class Batch:
    """One call's inputs, with completions already reduced to text."""

    texts: list[str]
    prompts: list[Any]
    completion_ids: list[Any] | None
    columns: dict[str, Any]

    def __len__(self) -> int:
        return len(self.texts)

    def column(self, name: str, i: int) -> Any:
        """Sample `i`'s value of dataset column `name`, or None if there is no such column.

        TRL passes every dataset column as a list with one entry per completion; anything
        else under that name (a scalar, a list of another length) is not a column.
        """
        values = self.columns.get(name)
        if isinstance(values, (list, tuple)) and len(values) == len(self.texts):
            return values[i]
        return None

    def prompt_text(self, i: int) -> str:
        """The prompt as text: a plain prompt, or the messages of a chat prompt joined."""
        if i >= len(self.prompts):
            return ""
        prompt = self.prompts[i]
        if isinstance(prompt, (list, tuple)):
            return "\n".join(completion_text(m.get("content", "") if isinstance(m, dict) else m)
                             for m in prompt)
        return completion_text(prompt)

    def user_text(self, i: int) -> str:
        """The user's words: the last user message of a chat prompt, or the plain prompt."""
        if i >= len(self.prompts):
            return ""
        prompt = self.prompts[i]
        if isinstance(prompt, (list, tuple)):
            for message in reversed(prompt):
                if isinstance(message, dict) and message.get("role") == "user":
                    return completion_text(message.get("content", ""))
        return self.prompt_text(i)

    def length(self, i: int) -> int:
        """Completion length in tokens when TRL gave ids, else in characters."""
        if self.completion_ids is not None and i < len(self.completion_ids):
            ids = self.completion_ids[i]
            if ids is not None:
                return len(ids)
        return len(self.texts[i])


def make_batch(
    prompts: Sequence[Any] | None,
    completions: Sequence[Any] | None,
    completion_ids: Sequence[Any] | None,
    columns: dict[str, Any],
) -> Batch:
    """Normalise TRL's arguments (plain or conversational) into a Batch."""
    texts = [completion_text(c) for c in (completions or [])]
    ids = list(completion_ids) if completion_ids is not None else None
    if ids is not None and len(ids) != len(texts):
        ids = None
    return Batch(texts=texts, prompts=list(prompts or []), completion_ids=ids, columns=columns)


class TRLReward:
    """TRL's reward signature, `f(prompts, completions, completion_ids, **columns)`, in one
    place: r1pipe's rewards, the routing wrapper and plugin wrappers implement `score_call`.
    """

    __name__: str

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Any] | None = None,
        **kwargs: Any,
    ) -> list[Score]:
        return self.score_call(prompts, completions, completion_ids, kwargs)

    def score_call(self, prompts: Sequence[Any] | None, completions: Sequence[Any] | None,
                   completion_ids: Sequence[Any] | None, columns: dict[str, Any]
                   ) -> list[Score]:
        """One score (or None) per completion."""
        raise NotImplementedError


class RewardFunc(TRLReward):
    """Base of every reward: `f(prompts, completions, completion_ids, **columns)`.

    Subclasses are dataclasses whose fields are the YAML parameters. Rule rewards implement
    `score_one`; batched rewards (models, judges) override `score_batch`. Whatever the
    model wrote, a call returns one float or None per completion: an unexpected exception
    costs that one sample (None, logged once per reward and exception type), never the run.
    """

    family: ClassVar[str] = ""
    default_task_types: ClassVar[tuple[str, ...] | None] = ("reasoning",)
    """Sample types (`task_type` column) the reward applies to by default; None = all."""
    scores_every_sample: ClassVar[bool] = False
    """True where None only ever means an error (models, judges): a batch of None with an
    error is then a broken reward (`RewardFailed`), however few errors were logged."""

    def __post_init__(self) -> None:
        self.__name__ = self.family

    def score_call(self, prompts: Sequence[Any] | None, completions: Sequence[Any] | None,
                   completion_ids: Sequence[Any] | None, columns: dict[str, Any]
                   ) -> list[Score]:
        batch = make_batch(prompts, completions, completion_ids, columns)
        if not len(batch):
            return []
        name = getattr(self, "__name__", self.family)
        errors = INTERNAL_ERRORS[name]
        scores = self.score_batch(batch)
        failed = INTERNAL_ERRORS[name] - errors
        if all(s is None for s in scores) and failed and (
                self.scores_every_sample or failed >= len(batch)):
            raise RewardFailed(
                f"reward {name!r} failed on all {len(batch)} samples of a batch "
                f"({LAST_ERROR.get(name, 'see the stage log')}); a reward that cannot score "
                "anything would train nothing: fix it (model, device, server) and resume")
        return scores

    def score_batch(self, batch: Batch) -> list[Score]:
        """Scores for a whole batch; by default `score_one` per sample, guarded."""
        return [self.guarded(self.score_one, batch, i) for i in range(len(batch))]

    def score_one(self, batch: Batch, i: int) -> Score:
        """Score of sample `i` of the batch."""
        raise NotImplementedError

    def problems(self) -> list[str]:
        """Errors in the parameter values (ranges, combinations); empty when all is well."""
        return []

    def guarded(self, fn: Any, *args: Any) -> Score:
        """`fn(*args)`, or None (reported once) if it raises."""
        try:
            value = fn(*args)
        except Exception as exc:
            self.report_error(exc)
            return None
        return None if value is None else float(value)

    def report_error(self, exc: BaseException) -> None:
        """Count an internal error and log it once per reward and exception type."""
        name = getattr(self, "__name__", self.family)
        INTERNAL_ERRORS[name] += 1
        LAST_ERROR[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        key = (name, type(exc).__name__)
        if key not in _REPORTED:
            _REPORTED.add(key)
            logger.error("reward %r failed on a sample (%s); scored None", name,
                         type(exc).__name__, exc_info=exc)
