"""Worked solutions of the arithmetic task: evaluated by operator precedence, one operation
per step, then checked term by term or by undoing the last step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from r1pipe.data import expressions
from r1pipe.data.expressions import (
    PRECEDENCE,
    ExpressionError,
    apply_operator,
)
from r1pipe.data.solutions.tree import (
    Expr,
    Step,
    chain_text,
    evaluation_steps,
    expr_value,
    parse_tree,
    render_expr,
    signed_terms,
)
from r1pipe.data.solutions.voice import Voice, listing, num_text, ordinal


def _product_detail(a: Fraction, b: Fraction) -> str | None:
    """How a two-digit product is worked out in the head ("17 * 10 = 170 and ..."), or None
    when it is a one-digit table fact."""
    if a.denominator != 1 or b.denominator != 1 or a < 10 or b < 10:
        return None
    x, y = int(a), int(b)
    tens, ones = y - y % 10, y % 10
    if ones == 0:
        return None
    return (f"{x} * {tens} = {x * tens} and {x} * {ones} = {x * ones}, which add up to "
            f"{x * y}")


# ---------------------------------------------------------------------------------------
# Arithmetic
# ---------------------------------------------------------------------------------------


def _question_expression(prompt: str) -> str:
    text = prompt.strip()
    match = re.match(r"(?is)\s*what\s+is\s+(.*?)\s*\??\s*$", text)
    return match.group(1) if match else text.rstrip("?. ")


def _left_to_right(text: str) -> Fraction | None:
    """The value of a flat chain read strictly left to right (the classic precedence slip),
    or None when the text has brackets or that reading divides by zero."""
    if "(" in text:
        return None
    tokens = re.findall(r"\d+|[-+*/]", text)
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        return None
    try:
        value = Fraction(int(tokens[0]))
        for op, number in zip(tokens[1::2], tokens[2::2], strict=True):
            value = apply_operator(op, value, Fraction(int(number)))
    except (ExpressionError, ValueError):
        return None
    return value


_REASONS = {
    "brackets": ("{o} inside the brackets, {t}.",
                 "{o} I work out the part in parentheses: {t}.",
                 "{o} the parentheses come before anything else, so {t}."),
    "precedence": ("{o} multiplication and division come before addition and subtraction, "
                   "so {t}.",
                   "{o} by operator precedence the {w} is done before any adding or "
                   "subtracting: {t}.",
                   "{o} I do the {w}, since it binds tighter than + and -: {t}."),
    "left": ("{o} going from left to right, {t}.",
             "{o} working from left to right: {t}.",
             "{o} in order from the left, {t}."),
    "last": ("{o} {t}.",
             "{o} what remains is {t}.",
             "{o} the remaining operation gives {t}."),
    "sign": ("{o} the minus sign in front gives {t}.",),
}
_WORD = {"*": "multiplication", "/": "division", "+": "addition", "-": "subtraction"}


def solve_arithmetic(record: Mapping[str, Any], voice: Voice) -> tuple[list[str], str, str]:
    text = _question_expression(str(record["prompt"]))
    tree = parse_tree(text)
    steps = evaluation_steps(tree)
    if not steps:
        raise ValueError(f"record {record.get('id')!r}: {text!r} has no operation to do")
    value = steps[-1].result
    if value != expressions.evaluate(text):  # an independent evaluation of the same text
        raise AssertionError(f"step-by-step value of {text!r} disagrees with evaluate()")
    answer = num_text(value)
    paragraphs = [voice.say("arith-intro", (
        "I need the value of {e}. The order of operations decides what happens first: "
        "anything in parentheses, then multiplication and division, then addition and "
        "subtraction from left to right. I will do one operation at a time.",
        "Let me evaluate {e} carefully, one operation per step. Brackets come first, then "
        "* and /, and + and - come last, read from left to right.",
        "The expression is {e}. Before computing anything I should respect operator "
        "precedence: parentheses, then multiplication and division, then addition and "
        "subtraction.",
    ), e=text)]
    for i, step in enumerate(steps):
        reason = "last" if step.reason == "left" and i == len(steps) - 1 else step.reason
        sentence = voice.pick(f"arith-reason-{reason}-{i}", _REASONS[reason]).format(
            o=ordinal(voice, i, len(steps)), t=step.text, w=_WORD.get(step.op, "operation"))
        sentence = sentence[0].upper() + sentence[1:]
        if step.op == "*" and step.b is not None:
            detail = _product_detail(step.a, step.b)
            if detail:
                sentence += voice.say("arith-detail", (" To be careful: {d}.",
                                                      " In detail, {d}."), d=detail)
        if step.after.op is not None:
            sentence += voice.say(f"arith-now-{i}", (
                " Now the expression is {x}.", " That leaves {x}.",
                " The expression becomes {x}."), x=render_expr(step.after))
        else:
            sentence += voice.say("arith-done", (" So the value is {v}.",
                                                 " No operations remain: the value is {v}."),
                                  v=answer)
        paragraphs.append(sentence)
    paragraphs.extend(_arithmetic_checks(text, tree, steps, value, voice))
    summary = voice.say("arith-summary", (
        "Following the order of operations, {s}, so {e} = {v}.",
        "Working by operator precedence: {s}. So the value of {e} is {v}.",
        "One operation at a time ({s}), {e} comes to {v}.",
    ), s=listing([s.text for s in steps]), e=text, v=answer)
    return paragraphs, summary, answer


def _arithmetic_checks(text: str, tree: Expr, steps: list[Step], value: Fraction,
                       voice: Voice) -> list[str]:
    out: list[str] = []
    naive = _left_to_right(text)
    if naive is not None and naive != value:
        out.append(voice.say("arith-trap", (
            "Wait, let me check that I did not simply go from left to right. Doing that "
            "would give {n}, which is a different number, so the order really matters "
            "here: the multiplication and division had to come first.",
            "Wait, a common slip is to ignore precedence. Reading strictly left to right "
            "gives {n} instead of {v}, and that reading is wrong, because * and / bind "
            "tighter than + and -.",
        ), n=num_text(naive), v=num_text(value)))
    terms = signed_terms(tree)
    if len(terms) >= 2 and any(t.op is not None for _, t in terms):
        described = []
        for sign, term in terms:
            term_value = expr_value(term)
            shown = num_text(sign * term_value)
            shown = shown if shown.startswith("-") else f"+{shown}"
            described.append(shown if term.op is None else f"{shown} (from {render_expr(term)})")
        plus = [s * expr_value(t) for s, t in terms if s * expr_value(t) >= 0]
        minus = [-(s * expr_value(t)) for s, t in terms if s * expr_value(t) < 0]
        pos, neg = sum(plus, Fraction(0)), sum(minus, Fraction(0))
        if minus:
            total = (f"the positive terms add up to {num_text(pos)}, the negative ones to "
                     f"{num_text(neg)}, and {num_text(pos)} - {num_text(neg)} = {num_text(pos - neg)}")
        else:
            total = f"they add up to {num_text(pos)}"
        out.append(voice.say("arith-terms", (
            "Let me verify this another way, term by term. The terms are {d}; {t}. That "
            "matches the value I found.",
            "Wait, let me double-check by splitting the expression into its terms: {d}. "
            "Then {t}, the same as before.",
        ), d=listing(described), t=total))
    else:
        last = steps[-1]
        if last.op in PRECEDENCE and last.b is not None and not (last.op in "*/" and
                                                                 last.b == 0):
            inverse = {"+": "-", "-": "+", "*": "/", "/": "*"}[last.op]
            back = apply_operator(inverse, last.result, last.b)
            check = (f"{render_expr(Expr(value=last.result), top=False, parent=inverse)} "
                     f"{inverse} "
                     f"{render_expr(Expr(value=last.b), top=False, leftmost=False, parent=inverse)}"
                     f" = {num_text(back)}")
            out.append(voice.say("arith-undo", (
                "Wait, let me check the last step by undoing it: {c}, which is the number I "
                "had before that step. So the value {v} holds.",
                "Let me verify by working backwards from the result: {c}, and that is exactly "
                "what the last operation started from. Good, the value is {v}.",
            ), c=check, v=num_text(value)))
        else:  # pragma: no cover - a single operation of another kind
            out.append(f"Wait, let me recompute it once more: {chain_text(tree)}. The value is "
                       f"{num_text(value)}.")
    return out
