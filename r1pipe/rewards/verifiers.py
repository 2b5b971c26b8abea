"""Answer verifiers: exact numbers, countdown expressions, and math-verify for the rest.

Each verifier gets the gold answer and the *answer region* of a completion (already cut out
by `accuracy.answer_region`) and says correct or wrong. They are written for hostile input:

- the region is capped in length and screened (`is_explosive`) before anything reaches sympy,
  so a megabyte of digits or an exponent tower is rejected in microseconds;
- countdown expressions are evaluated by walking a parsed `ast` in exact fractions
  (`r1pipe.data.expressions`, shared with the task generator), never with `eval`;
- everything runs under one deadline (`limits.call_with_deadline`), in a helper process when
  the caller is not the main thread.

A gold answer that cannot be parsed is a data error (`GOLD_ERROR`), never a success: the
caller reports it once per record and scores the sample as not applicable.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from r1pipe.rewards import limits

logger = logging.getLogger(__name__)

CORRECT, WRONG, TIMEOUT, GOLD_ERROR = "correct", "wrong", "timeout", "gold_error"

MAX_REGION_CHARS = 2_000
"""Longest answer region handed to a parser; a final answer is never longer."""
MAX_NESTING = 24
"""Deepest bracket nesting accepted before parsing (latex2sympy recurses on it)."""
MAX_EXPONENT = 10_000
"""Largest literal exponent or factorial argument let through to sympy (2^{2023} is fine)."""

EXACT_TASKS = frozenset({"arithmetic", "multiplication", "linear_equation"})
COUNTDOWN_TASKS = frozenset({"countdown"})

# ------------------------------------------------------------------------ screening


def _group_end(text: str, start: int, opener: str, closer: str, limit: int = 400) -> int:
    """Index just past the bracket group opening at `start` (bounded scan), or -1."""
    depth = 0
    for i in range(start, min(len(text), start + limit)):
        ch = text[i]
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def _operand_after(text: str, i: int) -> tuple[str, int]:
    """The exponent operand starting at `i` (a brace/paren group or a plain token), and the
    index just past it."""
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text):
        return "", i
    if text[i] in "{(":
        closer = "}" if text[i] == "{" else ")"
        end = _group_end(text, i, text[i], closer)
        return (text[i:end], end) if end > 0 else (text[i:i + 400], len(text))
    j = i
    while j < len(text) and (text[j].isalnum() or text[j] in "._"):
        j += 1
    return text[i:j], j


_DIGITS = re.compile(r"\d+")
_FACTORIAL = re.compile(r"(\d+)\s*!")


def _too_big(operand: str) -> bool:
    """An exponent operand that is a tower or a literal above MAX_EXPONENT."""
    if "^" in operand or "**" in operand or "!" in operand:
        return True
    return any(len(d) > 5 or int(d) > MAX_EXPONENT for d in _DIGITS.findall(operand))


def is_explosive(text: str) -> bool:
    """Whether parsing/evaluating `text` could blow up: too long, too deep, huge powers.

    Deliberately conservative for *predictions* (gold answers are trusted and only run
    under the deadline): an exponent tower such as `9**9**9**9` or `10^{10^{10}}`, an
    exponent or factorial argument above MAX_EXPONENT, or bracket nesting deeper than
    MAX_NESTING. A correct answer written as a tower is vanishingly rare; a hostile one
    would otherwise cost a full timeout.
    """
    if len(text) > MAX_REGION_CHARS:
        return True
    depth = worst = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            worst = max(worst, depth)
        elif ch in "})]":
            depth = max(depth - 1, 0)
    if worst > MAX_NESTING:
        return True
    for m in _FACTORIAL.finditer(text):
        if len(m.group(1)) > 5 or int(m.group(1)) > MAX_EXPONENT:
            return True
    i = 0
    while True:
        caret = text.find("^", i)
        star = text.find("**", i)
        hits = [h for h in (caret, star) if h >= 0]
        if not hits:
            break
        at = min(hits)
        step = 2 if at == star else 1
        operand, end = _operand_after(text, at + step)
        if _too_big(operand) or text[end:end + 8].lstrip().startswith(("^", "**")):
            return True  # a huge exponent, or a tower such as 9**9**9 or 10^{10}^{10}
        i = at + step
    # a factorial of a bracket group containing a power: (10^{10})!
    for m in re.finditer(r"[)}]\s*!", text):
        opener = "(" if text[m.start()] == ")" else "{"
        start = text.rfind(opener, 0, m.start())
        if start >= 0 and ("^" in text[start:m.start()] or "**" in text[start:m.start()]):
            return True
    return False


# ------------------------------------------------------------------------ exact numbers

_NUMBER = re.compile(
    r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*[-+]?\d+(?:\.\d+)?)?"
)
LATEX_FRACTION = re.compile(
    r"\\[dt]?frac\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}\s*\{\s*([-+]?\d+(?:\.\d+)?)\s*\}")
"""`\\frac{a}{b}` (also `\\dfrac`, `\\tfrac`) of two plain numbers; groups 1 and 2 are the
numerator and denominator. Public so that other number readers (evaluation) share it."""
_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)")
_MAX_NUMBER_CHARS = 64
_OPERATOR = r"(?:[-+*\u00d7\u00b7]|\\times|\\cdot)"
_EXPRESSION = re.compile(r"[(\s]*\d[\d.,]*[)\s]*(?:" + _OPERATOR + r"[(\s]*[-+]?\d[\d.,]*[)\s]*)+")
"""Numbers joined by operators ("2 * 7 - 7", "(3 + 5) * 2"): an expression left unworked,
whose numbers are operands, not a stated answer ("3/4" is a number, not an expression)."""


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, or None."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    brace = text.find("{", start)
    if brace < 0 or text[start:brace].strip() not in ("\\boxed", "\\fbox"):
        return None
    end = _group_end(text, brace, "{", "}", limit=MAX_REGION_CHARS)
    return text[brace + 1:end - 1] if end > 0 else None


def _to_fraction(token: str) -> Fraction | None:
    token = token.replace(",", "").replace(" ", "")
    if not token or len(token) > _MAX_NUMBER_CHARS:
        return None
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            denominator = Fraction(den)
            return None if denominator == 0 else Fraction(num) / denominator
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def _normalise_number_text(text: str) -> str:
    boxed = last_boxed(text)
    if boxed is not None:
        text = boxed
    text = text.replace("\u2212", "-").replace("\\!", "").replace("{,}", ",")
    text = LATEX_FRACTION.sub(r"\1/\2", text)
    text = _FRAC_SHORT.sub(r"\1/\2", text)
    if "=" in text:
        text = text.rsplit("=", 1)[1]
    for junk in ("$", "\\(", "\\)", "\\[", "\\]", "\\left", "\\right"):
        text = text.replace(junk, " ")
    return text.strip().rstrip(".")


def exact_number(text: str) -> Fraction | None:
    """The number a short answer states: "14", "x = -7/2", "\\boxed{3.5}", "1,234".

    Takes the last number of the (boxed, right-hand side) text, the way graders of
    GSM8K-style tasks do, and returns it as an exact fraction. Numbers inside an unworked
    expression ("2 * 7 - 7") are operands, not answers, and are skipped: crediting the last
    one would pay a policy for copying the question back.
    """
    cleaned = _normalise_number_text(text)
    whole = _to_fraction(cleaned)
    if whole is not None:
        return whole
    tokens = _NUMBER.findall(_EXPRESSION.sub(" ", cleaned))
    return _to_fraction(tokens[-1]) if tokens else None


def verify_exact(gold: Fraction, region: str) -> str:
    """Exact comparison for tasks whose answer is one rational number."""
    predicted = exact_number(region)
    return CORRECT if predicted is not None and predicted == gold else WRONG


# ------------------------------------------------------------------------ countdown

_EXPRESSION_RUN = re.compile(r"[0-9+\-*/().\s]+")
_LATEX_OPS = (
    ("\\times", "*"), ("\\cdot", "*"), ("\u00d7", "*"), ("\u00b7", "*"), ("\\div", "/"),
    ("\u00f7", "/"), ("\u2212", "-"), ("\\left", ""), ("\\right", ""), ("{", "("), ("}", ")"),
    ("[", "("), ("]", ")"), ("$", " "), ("\\(", " "), ("\\)", " "),
)


def countdown_candidates(region: str) -> list[str]:
    """Expressions a countdown answer may state: each side of "=", reduced to its longest
    arithmetic run ("The expression is (3+5)*2 = 16" gives "(3+5)*2" and "16")."""
    boxed = last_boxed(region)
    text = boxed if boxed is not None else region
    text = LATEX_FRACTION.sub(r"(\1)/(\2)", text)
    for old, new in _LATEX_OPS:
        text = text.replace(old, new)
    out: list[str] = []
    for side in text.split("=")[:4]:
        runs = [r.strip() for r in _EXPRESSION_RUN.findall(side) if any(c.isdigit() for c in r)]
        if runs:
            out.append(max(runs, key=len))
    return out


def verify_countdown(region: str, numbers: Sequence[Any], target: Any) -> str:
    """Correct when some stated expression uses only the given numbers, each at most as
    often as given, and evaluates exactly to the target."""
    from r1pipe.data.expressions import evaluate_with_numbers

    try:
        allowed = Counter(Fraction(str(n)) for n in numbers)
        goal = Fraction(str(target))
    except (ValueError, ZeroDivisionError):
        return GOLD_ERROR  # the record's numbers/target are not numbers
    for candidate in countdown_candidates(region):
        try:
            value, used = evaluate_with_numbers(candidate)
        except Exception:  # ExpressionError, SyntaxError, RecursionError, MemoryError, ...
            continue
        if value == goal and not Counter(used) - allowed:
            return CORRECT
    return WRONG


# ------------------------------------------------------------------------ math-verify

_GOLD_CACHE: OrderedDict[str, Any] = OrderedDict()
_GOLD_CACHE_SIZE = 16_384
_UNPARSEABLE = object()
_DELIMITERS = ("$", "\\(", "\\[", "\\boxed", "\\fbox")


def _quiet_math_verify() -> None:
    """r1pipe disables math-verify's own timeouts (see limits); silence its warning."""
    for name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _has_sympy(candidates: list[Any]) -> bool:
    from sympy import Basic, MatrixBase

    return any(isinstance(c, (Basic, MatrixBase)) for c in candidates)


def parse_gold(gold: str) -> Any:
    """Parsed gold answer (cached per gold text), or `_UNPARSEABLE`.

    A bare gold such as `[0, 1)` or `x = 5` is LaTeX without delimiters; math-verify's
    plain-expression extraction would read `[0, 1)` as `1`. So a gold without delimiters is
    parsed wrapped in `$...$` first. A gold that yields no sympy object at all is unparseable.
    """
    cached = _GOLD_CACHE.get(gold)
    if cached is not None:
        _GOLD_CACHE.move_to_end(gold)
        return cached
    from math_verify import parse

    _quiet_math_verify()
    text = gold.strip()
    parsed: Any = _UNPARSEABLE
    if text:
        attempts = [text] if any(d in text for d in _DELIMITERS) else [f"${text}$", text]
        for attempt in attempts:
            candidates = parse(attempt, parsing_timeout=None)
            if _has_sympy(candidates):
                parsed = candidates
                break
    _GOLD_CACHE[gold] = parsed
    if len(_GOLD_CACHE) > _GOLD_CACHE_SIZE:
        _GOLD_CACHE.popitem(last=False)
    return parsed


def verify_math(gold: str, region: str) -> str:
    """math-verify comparison: numbers, fractions, LaTeX, sets, intervals, equations."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_parsed = parse_gold(gold)
    if gold_parsed is _UNPARSEABLE:
        return GOLD_ERROR
    text = region.strip()
    if not text:
        return WRONG
    if len(text) <= 200 and not any(d in text for d in _DELIMITERS):
        # an answer tag holding bare LaTeX ("[0, 1)", "\frac{1}{2}"): read it as LaTeX first
        wrapped = parse(f"${text}$", parsing_timeout=None)
        if wrapped and verify(gold_parsed, wrapped, timeout_seconds=None):
            return CORRECT
    predicted = parse(
        text,
        extraction_config=[LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()],
        parsing_timeout=None,
    )
    if predicted and verify(gold_parsed, predicted, timeout_seconds=None):
        return CORRECT
    return WRONG


# ------------------------------------------------------------------------ dispatch


def _verify_unlimited(
    task: str | None, gold: str, region: str, numbers: Sequence[Any] | None, target: Any
) -> str:
    if task in COUNTDOWN_TASKS:
        if numbers is None or target is None:
            return GOLD_ERROR
        return verify_countdown(region, numbers, target)
    if task in EXACT_TASKS:
        gold_number = exact_number(gold)
        if gold_number is not None:
            return verify_exact(gold_number, region)
        # a non-numeric gold for a numeric task: let math-verify have a go at it
    return verify_math(gold, region)


def verify_here(
    task: str | None,
    gold: str,
    region: str,
    numbers: Sequence[Any] | None = None,
    target: Any = None,
    timeout: float | None = 2.0,
) -> str:
    """Verify in this process, in the main thread, under a deadline. Returns a verdict."""
    if is_explosive(region):
        return WRONG
    try:
        return limits.call_with_deadline(_verify_unlimited, timeout, task, gold, region, numbers,
                                         target)
    except limits.VerificationTimeout:
        return TIMEOUT
    except Exception as exc:  # a library bug on odd input must cost one sample, not the run
        _warn_once(type(exc).__name__)
        return WRONG


_WARNED: set[str] = set()


def _warn_once(kind: str) -> None:
    if kind not in _WARNED:
        _WARNED.add(kind)
        logger.warning("answer verification raised %s; the sample is scored wrong", kind,
                       exc_info=True)


def verify_answer(
    task: str | None,
    gold: str,
    region: str,
    numbers: Sequence[Any] | None = None,
    target: Any = None,
    timeout: float | None = 2.0,
) -> str:
    """Verdict (CORRECT, WRONG, TIMEOUT or GOLD_ERROR) for one answer region.

    Runs here in the main thread, in the helper process otherwise (signals are main-thread
    only). Without a timeout it always runs here.
    """
    if is_explosive(region):
        return WRONG
    if timeout is None or timeout <= 0 or limits.in_main_thread():
        return verify_here(task, gold, region, numbers, target, timeout)
    payload = {
        "task": task, "gold": gold, "region": region, "target": target,
        "numbers": list(numbers) if numbers is not None else None, "timeout": timeout,
    }
    reply = limits.verify_isolated(payload, timeout)
    return TIMEOUT if reply is None else str(reply.get("verdict", WRONG))
