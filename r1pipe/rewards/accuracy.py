"""Accuracy: is the final answer right? The R1-Zero reward, checked by rules only.

The final answer is read from `<answer>…</answer>`, else from the summary after the
reasoning (`</think>` or the cold-start special token; a `\\boxed{}` in it wins), else from
the whole completion when it has no structure at all. A completion cut off inside its
reasoning has no answer. The verifier is chosen by the record's `task` column: exact
numbers for arithmetic, multiplication and linear equations, an expression check for
countdown, math-verify for anything else.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, split_completion
from r1pipe.rewards import verifiers
from r1pipe.rewards.base import Batch, RewardFunc, Score

logger = logging.getLogger(__name__)

_VERDICTS: OrderedDict[tuple[Any, ...], str] = OrderedDict()
"""Verdicts by (task, gold, answer region, numbers, target, timeout): a group's identical
answers, and cosine after accuracy, are verified once."""
_LOCK = threading.Lock()
_VERDICT_CACHE_SIZE = 16_384
_REPORTED_GOLD: set[str] = set()
_REPORTED_TIMEOUT: set[str] = set()


def answer_region(
    text: str,
    special_token: str = DEFAULT_SPECIAL_TOKEN,
    *,
    limit: int | None = verifiers.MAX_REGION_CHARS,
) -> str | None:
    """The part of a completion that states the final answer, or None if there is none.

    Only the last `limit` characters are kept (`MAX_REGION_CHARS` by default): the final
    answer closes the response, and nothing longer is handed to a parser. The code rewards
    pass None: a program is as long as it is.
    """
    parsed = split_completion(text, special_token)
    if parsed.answer is not None:
        region = parsed.answer
    elif parsed.summary is not None:
        region = parsed.summary
    elif parsed.reasoning is not None:
        return None  # truncated inside the reasoning
    else:
        region = text
    return region if limit is None else region[-limit:]


def _key(*parts: Any) -> tuple[str, ...]:
    return tuple(p if isinstance(p, str) else repr(p) for p in parts)


def _report_gold_error(record_id: Any, gold: str, task: Any) -> None:
    key = str(record_id) if record_id is not None else f"gold:{gold[:200]}"
    if key not in _REPORTED_GOLD:
        _REPORTED_GOLD.add(key)
        if task in verifiers.COUNTDOWN_TASKS:
            problem = "has no usable `numbers` and `target`"
        else:
            problem = f"has a reference answer that cannot be parsed: {gold[:200]!r}"
        logger.error("record %s (task %s) %s; its samples get no accuracy reward",
                     record_id, task, problem)


def _report_timeout(record_id: Any, timeout: float | None) -> None:
    key = str(record_id)
    if key not in _REPORTED_TIMEOUT:
        _REPORTED_TIMEOUT.add(key)
        logger.warning("record %s: verifying an answer took over %ss; scored wrong",
                       record_id, timeout)


def check_completion(
    text: str,
    answer: Any,
    *,
    task: str | None = None,
    numbers: Sequence[Any] | None = None,
    target: Any = None,
    record_id: Any = None,
    special_token: str = DEFAULT_SPECIAL_TOKEN,
    timeout: float | None = 2.0,
) -> float | None:
    """1.0 if the completion's final answer is right, 0.0 if not, None if it cannot be told.

    None means the reference itself is unusable (unparseable gold, a countdown record
    without `numbers`/`target`): reported once per record, never counted as success. This is
    the function rejection-sampling filters call on one string.
    """
    task = task if isinstance(task, str) else None
    if task in verifiers.COUNTDOWN_TASKS:
        if numbers is None or target is None:
            _report_gold_error(record_id, str(answer), task)
            return None
    elif answer is None:
        return None
    gold = "" if answer is None else str(answer)
    region = answer_region(text, special_token)
    if region is None or not region.strip():
        return 0.0  # nothing answered: wrong, whatever the reference
    key = _key(task, gold, region, numbers, target, timeout)
    with _LOCK:
        verdict = _VERDICTS.get(key)
        if verdict is not None:
            _VERDICTS.move_to_end(key)
    if verdict is None:
        verdict = verifiers.verify_answer(task, gold, region, numbers, target, timeout)
        with _LOCK:
            _VERDICTS[key] = verdict
            if len(_VERDICTS) > _VERDICT_CACHE_SIZE:
                _VERDICTS.popitem(last=False)
    if verdict == verifiers.GOLD_ERROR:
        _report_gold_error(record_id, gold, task)
        return None
    if verdict == verifiers.TIMEOUT:
        _report_timeout(record_id, timeout)
    return 1.0 if verdict == verifiers.CORRECT else 0.0


@dataclass
class Accuracy(RewardFunc):
    """1.0 for a right final answer, 0.0 for a wrong or missing one, None without reference.

    Reads the `answer` column (and `task`, `numbers`, `target`, `id` when present).
    """

    family = "accuracy"

    special_token: str = DEFAULT_SPECIAL_TOKEN
    timeout: float = 2.0
    """Seconds allowed to verify one answer (gold parse + prediction parse + comparison)."""
    answer_column: str = "answer"

    def score_one(self, batch: Batch, i: int) -> Score:
        return correctness(batch, i, self.answer_column, self.special_token, self.timeout)


def correctness(
    batch: Batch, i: int, answer_column: str, special_token: str, timeout: float | None
) -> float | None:
    """`check_completion` for sample `i` of a batch, reading the record's columns."""
    numbers = batch.column("numbers", i)
    return check_completion(
        batch.texts[i],
        batch.column(answer_column, i),
        task=batch.column("task", i),
        numbers=list(numbers) if isinstance(numbers, (list, tuple)) else None,
        target=batch.column("target", i),
        record_id=batch.column("id", i),
        special_token=special_token,
        timeout=timeout,
    )
