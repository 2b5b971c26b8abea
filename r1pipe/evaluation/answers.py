"""Answer types other than math: multiple-choice letters, exact strings and code.

A benchmark's `answer:` says how a completion is checked. `math` is the accuracy reward's
rule (math-verify, or a built-in task's own rule) and lives in `r1pipe.rewards`; this module
holds the three others, and the question building a multiple-choice benchmark needs:

- `choice`: the options are listed under the question (`A) ...`), optionally shuffled per
  record (GPQA stores the correct option first), and a completion is right when the letter
  it chooses (`\\boxed{C}`, `Answer: C`, `(C)`, or a bare `C`) is the gold letter;
- `exact`: the normalised final answer equals the normalised reference;
- `code`: the program the completion ends with passes every test of the record, run by the
  sandboxed `code` reward in `binary` mode (LiveCodeBench's pass@1).

Pure functions on strings and records; nothing here loads a model or a dataset.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

LETTERS = "ABCDEFGHIJ"
"""Option letters: GPQA uses A-D, MMLU-Pro A-J."""

_BOXED_LETTER = re.compile(r"^\W*(?:\\text\w*\s*\{\s*)?\(?([A-Za-z])\)?\W*$")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?[:\-]?\s*[\(\[\*\$]*\s*"
                        r"(?:\\text\w*\s*\{\s*)?([A-J])\b", re.IGNORECASE)
_PARENS = re.compile(r"\(([A-J])\)")
_BARE = re.compile(r"^\W*(?:option\s+)?([A-J])\W*$", re.IGNORECASE)


def _allowed(letters: int | None) -> str:
    return LETTERS[:letters] if letters else LETTERS


def choice_letter(region: str | None, letters: int | None = None) -> str | None:
    """The option letter a completion's answer part chooses, or None when it names none.

    Looked for in this order: the last `\\boxed{...}` holding one letter, the last
    "answer is / Answer: X", the last "(X)", then an answer part that is one letter alone.
    Only the first `letters` letters count (all of A-J when None).
    """
    from r1pipe.rewards import verifiers

    if not region or not region.strip():
        return None
    allowed = _allowed(letters)
    boxed = verifiers.last_boxed(region)
    if boxed is not None:
        found = _BOXED_LETTER.match(boxed.strip())
        if found and found.group(1).upper() in allowed:
            return found.group(1).upper()
    for pattern in (_ANSWER_IS, _PARENS):
        hits = [m.group(1).upper() for m in pattern.finditer(region)]
        hits = [h for h in hits if h in allowed]
        if hits:
            return hits[-1]
    bare = _BARE.match(region.strip())
    if bare and bare.group(1).upper() in allowed:
        return bare.group(1).upper()
    return None


def choice_options(record: dict[str, Any], choices: str | Sequence[str] | None
                   ) -> list[str] | None:
    """The record's options: a column holding a list, or one column per option."""
    if choices is None:
        return None
    if isinstance(choices, str):
        value = record.get(choices)
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"record {record.get('id')!r}: column {choices!r} should hold a "
                             f"list of options, got {type(value).__name__}")
        return [str(v) for v in value]
    missing = [c for c in choices if record.get(c) is None]
    if missing:
        raise ValueError(f"record {record.get('id')!r} has no option column(s) "
                         f"{', '.join(map(repr, missing))}")
    return [str(record[c]).strip() for c in choices]


def gold_letter(answer: Any, options: Sequence[str] | None,
                first_is_correct: bool = False) -> str | None:
    """The correct letter from a record's answer: a letter ("C", "(C)"), a 0-based index,
    or the text of an option; with no answer and `first_is_correct`, "A" (GPQA's layout,
    before shuffling)."""
    count = len(options) if options else None
    if answer is None or (isinstance(answer, str) and not answer.strip()):
        return "A" if first_is_correct and options else None
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return LETTERS[answer] if 0 <= answer < min(count or len(LETTERS), len(LETTERS)) \
            else None
    text = str(answer).strip()
    letter = _BARE.match(text)
    if letter and letter.group(1).upper() in _allowed(count):
        return letter.group(1).upper()
    if options:
        for i, option in enumerate(options):
            if option.strip() == text:
                return LETTERS[i]
    if text.isdigit() and int(text) < (count or len(LETTERS)):
        return LETTERS[int(text)]
    return None


def choice_question(record: dict[str, Any], *, choices: str | Sequence[str] | None,
                    shuffle: bool, seed: int) -> tuple[str, str | None, int | None]:
    """(question with its options listed, gold letter, number of options) of one record.

    Shuffling is seeded by the pipeline seed and the record id, so every model of a run (and
    every re-run) sees the same order. Without `choices` the question is kept as written
    (its options already in it) and the answer must be a letter.
    """
    question = str(record.get("prompt") or "")
    options = choice_options(record, choices)
    gold = gold_letter(record.get("answer"), options,
                       first_is_correct=isinstance(choices, (list, tuple)))
    if not options:
        return question, gold, None
    if len(options) > len(LETTERS):
        raise ValueError(f"record {record.get('id')!r} has {len(options)} options; at most "
                         f"{len(LETTERS)} (A-J) are supported")
    if shuffle:
        order = list(range(len(options)))
        random.Random(f"{seed}:{record.get('id')}").shuffle(order)
        options = [options[i] for i in order]
        if gold is not None:
            gold = LETTERS[order.index(LETTERS.index(gold))]
    listed = "\n".join(f"{LETTERS[i]}) {option}" for i, option in enumerate(options))
    return f"{question.rstrip()}\n\n{listed}", gold, len(options)


def with_instruction(question: str, instruction: str | None) -> str:
    """The question with the answer instruction on a line of its own after it (the paper's
    "Please reason step by step, and put your final answer within \\boxed{}.")."""
    return f"{question.rstrip()}\n{instruction}" if instruction else question


def code_verdicts(texts: Sequence[str], record: dict[str, Any], params: dict[str, Any],
                  special_token: str) -> list[float | None]:
    """Each completion's verdict on the record's tests: 1.0 when its program passes all of
    them (the `code` reward in `binary` mode, in its sandbox), None when the record has none."""
    from r1pipe.rewards.base import Batch
    from r1pipe.rewards.code import Code

    reward = Code(**{**params, "mode": "binary", "special_token": special_token})
    n = len(texts)
    columns = {k: [v] * n for k, v in record.items()}
    batch = Batch(texts=list(texts), prompts=[record.get("prompt")] * n, completion_ids=None,
                  columns=columns)
    return [None if s is None else float(s) for s in reward.score_batch(batch)]
