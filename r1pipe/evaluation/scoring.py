"""Scoring: from generated samples to the benchmark's numbers, with no model or files involved.

Kept apart from running and reporting so that the metrics are pure functions of verdicts and
answers (tested on hand-computed values), and so that "correct" is decided in one place, by
the same rules as the accuracy reward of RL and rejection sampling.

- pass@1 = mean correctness over the k samples, averaged over questions, with the standard
  error over questions (how far apart two checkpoints must be before the gap means anything);
- cons@k = the majority answer of the k samples (answers normalised before voting), right or
  wrong;
- format rate = the share of samples laid out as reasoning then answer;
- mean response length in tokens (the paper's growing response length).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from r1pipe.evaluation.answers import choice_letter, code_verdicts
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN
from r1pipe.rewards.verifiers import LATEX_FRACTION

if TYPE_CHECKING:
    from r1pipe.generation.base import Completion

Record = dict[str, Any]

# ---------------------------------------------------------------------------------------
# Answers and votes
# ---------------------------------------------------------------------------------------

_LATEX_NOISE = ("$", "\\(", "\\)", "\\[", "\\]", "\\left", "\\right", "\\!", "\\,", "\\;",
                "\\displaystyle")
_TEXT_WRAPPER = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\s*\{([^{}]*)\}")
_SPACE = re.compile(r"\s+")


def _as_number(text: str) -> Fraction | None:
    """`text` as an exact number when it is nothing but one ("1,234", "-7/2", "3.50")."""
    token = text.replace(",", "").replace(" ", "")
    if not token or len(token) > 64 or not re.fullmatch(r"[-+]?\d+(\.\d+)?(/[-+]?\d+(\.\d+)?)?",
                                                           token):
        return None
    try:
        num, _, den = token.partition("/")
        value = Fraction(num) / Fraction(den) if den else Fraction(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value


def _number_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def normalize_answer(region: str, task: str | None = None) -> str | None:
    """The answer a completion states, in a canonical form, so equal answers vote together.

    `region` is the completion's answer region (`rewards.answer_region`). Numeric tasks vote
    on the number (`x = 7/2`, `3.5` and `\\boxed{\\frac{7}{2}}` are one answer); countdown on
    the expression without spaces; anything else on the boxed or bare text with LaTeX
    wrappers, spacing, case and a final full stop removed, or on its number when it is one.
    """
    from r1pipe.rewards import verifiers

    if not region or not region.strip():
        return None
    if task in verifiers.COUNTDOWN_TASKS:
        candidates = verifiers.countdown_candidates(region)
        return candidates[0].replace(" ", "") if candidates else None
    if task in verifiers.EXACT_TASKS:  # no readable number: no vote (the rules say wrong)
        number = verifiers.exact_number(region)
        return None if number is None else _number_text(number)
    boxed = verifiers.last_boxed(region)
    text = boxed if boxed is not None else region
    text = _TEXT_WRAPPER.sub(r"\1", text)
    for noise in _LATEX_NOISE:
        text = text.replace(noise, " ")
    text = LATEX_FRACTION.sub(r"\1/\2", text)
    text = _SPACE.sub(" ", text).strip().rstrip(".").strip().lower()
    if not text:
        return None
    number = _as_number(text)
    return _number_text(number) if number is not None else text.replace(" ", "")


def majority_vote(answers: Sequence[str | None]) -> int | None:
    """Index of the sample whose answer wins the vote, or None when no sample answered.

    Ties go to the answer that appeared first among the samples, so the result depends only
    on the samples and their order (which the artifact keeps), never on hashing.
    """
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, i)
    if not counts:
        return None
    best = max(counts, key=lambda a: (counts[a], -first[a]))
    return first[best]


# ---------------------------------------------------------------------------------------
# Scores of one prompt and of a benchmark
# ---------------------------------------------------------------------------------------


@dataclass
class PromptScores:
    """The k scored samples of one prompt, in sample order."""

    prompt_id: str
    verdicts: list[float | None] = field(default_factory=list)  # 1.0 / 0.0 / None (no reference)
    answers: list[str | None] = field(default_factory=list)  # normalised, for the vote
    formats: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)

    def add(self, verdict: float | None, answer: str | None, fmt: float, length: int,
            truncated: bool = False) -> None:
        self.verdicts.append(verdict)
        self.answers.append(answer)
        self.formats.append(fmt)
        self.lengths.append(length)
        self.truncated.append(truncated)

    @property
    def verifiable(self) -> bool:
        """Whether correctness could be told: a prompt with an unusable reference answer
        (every verdict None) is left out of pass@1 and cons@k, not counted as failed."""
        return any(v is not None for v in self.verdicts)

    @property
    def pass_at_1(self) -> float:
        """Mean correctness over the samples (an unknown verdict counts as wrong)."""
        return sum(v or 0.0 for v in self.verdicts) / len(self.verdicts)

    @property
    def consensus(self) -> float:
        """Whether the majority answer is right (0.0 when no sample gave an answer)."""
        winner = majority_vote(self.answers)
        return 0.0 if winner is None else float(self.verdicts[winner] or 0.0)


def mean_and_stderr(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); None where undefined."""
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summarize(prompts: Iterable[PromptScores]) -> dict[str, Any]:
    """The headline numbers of a benchmark from its prompts' scored samples.

    pass@1 averages each prompt's mean correctness over prompts; its standard error is taken
    over prompts (the samples of one prompt are not independent draws of the benchmark).
    """
    prompts = list(prompts)
    scored = [p for p in prompts if p.verifiable]
    pass1, pass1_se = mean_and_stderr([p.pass_at_1 for p in scored])
    cons, cons_se = mean_and_stderr([p.consensus for p in scored])
    samples = [s for p in prompts for s in p.formats]
    lengths = [n for p in prompts for n in p.lengths]
    truncated = [t for p in prompts for t in p.truncated]
    ks = sorted({len(p.verdicts) for p in prompts})
    return {
        "prompts": len(prompts),
        "scored_prompts": len(scored),
        "unverifiable_prompts": len(prompts) - len(scored),
        "k": ks[0] if len(ks) == 1 else ks,
        "completions": len(samples),
        "pass@1": pass1,
        "pass@1_stderr": pass1_se,
        "cons@k": cons,
        "cons@k_stderr": cons_se,
        "format_rate": sum(samples) / len(samples) if samples else None,
        "mean_length": sum(lengths) / len(lengths) if lengths else None,
        "truncated_rate": sum(truncated) / len(truncated) if truncated else None,
    }


# ---------------------------------------------------------------------------------------
# Scoring one completion
# ---------------------------------------------------------------------------------------

FORMATS = ("any", "think", "r1_zero", "tag_count", "cold_start")


def format_score(text: str, variant: str = "any",
                 special_token: str = DEFAULT_SPECIAL_TOKEN) -> float:
    """1.0 when the completion is laid out as the chosen format asks.

    `any` accepts every layout of the recipe (`<think>` or the cold-start special token,
    followed by an answer or summary), so models of different stages are measured alike;
    the other variants are the format rewards of `r1pipe.rewards.format`.
    """
    from r1pipe.rewards import format as fmt

    if variant == "any":
        from r1pipe.filters import has_format

        return 1.0 if has_format(text, special_token) else 0.0
    if variant == "think":
        return fmt.think_format(text)
    if variant == "r1_zero":
        return fmt.r1_zero_format(text)
    if variant == "tag_count":
        return fmt.tag_count_format(text)
    if variant == "cold_start":
        return fmt.cold_start_format(text, special_token)
    raise ValueError(f"unknown eval format {variant!r}; choose from {', '.join(FORMATS)}")


def exact_match(region: str | None, gold: Any) -> float | None:
    """1.0 when the normalised answer equals the normalised reference (None: no reference)."""
    if gold is None or not str(gold).strip():
        return None
    want = normalize_answer(str(gold))
    if want is None:
        return None
    return 1.0 if region and normalize_answer(region) == want else 0.0


def judge_sample(record: Record, *, format_variant: str = "any",
                 special_token: str = DEFAULT_SPECIAL_TOKEN,
                 answer_type: str = "math") -> dict[str, Any]:
    """Verdict, extracted answer and format of one generated sample (fields added to it).

    `math` (the default) takes the accuracy reward's verdict (`rewards.check_completion`), so
    "correct" means the same in RL, rejection sampling and evaluation; `choice` compares the
    chosen option letter with the gold letter in `answer` (`options` = how many letters
    count), `exact` the normalised answer strings. `code` needs the record's tests and is
    judged by `sample_builder` (here its verdict stays the one already stored).
    """
    from r1pipe.rewards import answer_region, check_completion

    text = record.get("completion") or ""
    task = record.get("task")
    numbers = record.get("numbers")
    verdict = None
    region = answer_region(text, special_token)
    fmt = format_score(text, format_variant, special_token)
    if answer_type == "choice":
        letter = choice_letter(region, record.get("options"))
        gold = record.get("answer")
        verdict = None if gold is None else float(letter is not None and letter == gold)
        return {"verdict": verdict, "extracted": letter, "format": fmt}
    if answer_type == "exact":
        return {"verdict": exact_match(region, record.get("answer")),
                "extracted": normalize_answer(region) if region else None, "format": fmt}
    if answer_type == "code":
        return {"verdict": record.get("correct"), "extracted": None, "format": fmt}
    if record.get("answer") is not None or task == "countdown":
        verdict = check_completion(
            text, record.get("answer"), task=task,
            numbers=list(numbers) if isinstance(numbers, (list, tuple)) else None,
            target=record.get("target"), record_id=record.get("prompt_id", record.get("id")),
            special_token=special_token)
    return {
        "verdict": verdict,
        "extracted": normalize_answer(region, task) if region else None,
        "format": fmt,
    }


# ---------------------------------------------------------------------------------------
# Samples artifact records
# ---------------------------------------------------------------------------------------

_CARRIED = ("answer", "task", "numbers", "target", "difficulty", "task_type", "reference",
            "category", "options")


def sample_builder(benchmark: str, format_variant: str, special_token: str,
                   answer_type: str = "math", code_params: dict[str, Any] | None = None,
                   ) -> Callable[[Record, list[Completion]], list[Record]]:
    """(record, completions) -> one scored JSONL record per sample.

    A `code` benchmark's k completions are run against the record's tests together (the
    tests stay out of the samples: LiveCodeBench's are megabytes per problem).
    """

    def build(record: Record, completions: list[Completion]) -> list[Record]:
        prompt_id = str(record.get("id"))
        out = []
        code = (code_verdicts([c.text for c in completions], record, code_params or {},
                              special_token) if answer_type == "code" else None)
        for k, completion in enumerate(completions):
            sample = {
                "id": f"{prompt_id}-s{k}",
                "prompt_id": prompt_id,
                "sample": k,
                "source": benchmark,
                "prompt": record.get("question", record.get("prompt")),
                "completion": completion.text,
                **{c: record[c] for c in _CARRIED if record.get(c) is not None},
                "token_count": int(completion.token_count or 0),
                "finish_reason": completion.finish_reason,
            }
            if code is not None:
                sample["correct"] = code[k]
            judged = judge_sample(sample, format_variant=format_variant,
                                  special_token=special_token, answer_type=answer_type)
            sample["correct"] = judged["verdict"]
            sample["verdict"] = ("unverifiable" if judged["verdict"] is None else
                                 "correct" if judged["verdict"] >= 1.0 else "wrong")
            sample["extracted"] = judged["extracted"]
            sample["format"] = judged["format"]
            out.append(sample)
        return out

    return build


def scores_from_samples(records: Iterable[Record]) -> list[PromptScores]:
    """Group a samples artifact (one prompt's samples are contiguous) into `PromptScores`."""
    out: list[PromptScores] = []
    for record in records:
        pid = str(record.get("prompt_id"))
        if not out or out[-1].prompt_id != pid:
            out.append(PromptScores(pid))
        out[-1].add(record.get("correct"), record.get("extracted"),
                    float(record.get("format") or 0.0), int(record.get("token_count") or 0),
                    record.get("finish_reason") == "length")
    return out
