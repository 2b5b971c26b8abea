"""Worked solutions of the linear-equation task: brackets expanded, x terms and numbers
collected, both sides divided, in exact fractions; checked by substituting x back into the
original equation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from fractions import Fraction
from typing import Any

from r1pipe.data.solutions.tree import (
    Expr,
    chain_text,
    expr_value,
    has_var,
    parse_tree,
    render_expr,
    signed_terms,
    substitute,
)
from r1pipe.data.solutions.voice import Voice, listing, num_text

Linear = tuple[Fraction, Fraction]
"""coefficient of x, constant."""


def _linear(e: Expr) -> Linear:
    """A side of the equation as (coefficient of x, constant)."""
    if e.var:
        return Fraction(1), Fraction(0)
    if e.op is None:
        assert e.value is not None
        return Fraction(0), e.value
    assert e.left is not None
    if e.op == "neg":
        c, k = _linear(e.left)
        return -c, -k
    assert e.right is not None
    (c1, k1), (c2, k2) = _linear(e.left), _linear(e.right)
    if e.op == "+":
        return c1 + c2, k1 + k2
    if e.op == "-":
        return c1 - c2, k1 - k2
    if e.op == "*":
        if c1 and c2:
            raise ValueError("not a linear equation: x is multiplied by x")
        return (c1 * k2 + c2 * k1, k1 * k2)
    if c2 or k2 == 0:
        raise ValueError("not a linear equation: division by x or by zero")
    return c1 / k2, k1 / k2


def _monomials(parts: Sequence[Linear]) -> str:
    """Terms written one after another: [(3, 12), (0, 5)] -> "3x + 12 + 5"."""
    pieces: list[tuple[Fraction, str]] = []
    for c, k in parts:
        if c:
            mag = abs(c)
            word = "x" if mag == 1 else (f"{num_text(mag)}x" if mag.denominator == 1
                                         else f"({num_text(mag)})x")
            pieces.append((c, word))
        if k:
            pieces.append((k, num_text(abs(k))))
    if not pieces:
        return "0"
    first_sign, first = pieces[0]
    out = ("-" if first_sign < 0 else "") + first
    for sign, word in pieces[1:]:
        out += f" {'-' if sign < 0 else '+'} {word}"
    return out


def _side(e: Linear) -> str:
    return _monomials([e])


def _brackets(e: Expr) -> Iterator[Expr]:
    """The bracketed products of a side: 3(x + 4), -(x - 5)."""
    if e.op is None:
        return
    if (e.op == "*" and e.left is not None and e.left.is_number and e.right is not None
            and e.right.op is not None and has_var(e.right)):
        yield e
        return
    if e.op == "neg" and e.left is not None and e.left.op is not None:
        yield e
        return
    for child in (e.left, e.right):
        if child is not None:
            yield from _brackets(child)


def _equation_sides(prompt: str) -> tuple[str, str]:
    text = prompt.split(":", 1)[1] if ":" in prompt else prompt
    sides = text.strip().rstrip(".").split("=")
    if len(sides) != 2:
        raise ValueError(f"not an equation with one '=': {prompt!r}")
    return sides[0].strip(), sides[1].strip()


def _equation_tree(side: str) -> Expr:
    # "3x" and "3(x + 4)" are products: make the multiplication explicit for the parser
    explicit = re.sub(r"(\d|\))\s*(?=[x(])", r"\1*", side)
    return parse_tree(explicit)


def solve_linear(record: Mapping[str, Any], voice: Voice) -> tuple[list[str], str, str]:
    left_text, right_text = _equation_sides(str(record["prompt"]))
    equation = f"{left_text} = {right_text}"
    left_tree, right_tree = _equation_tree(left_text), _equation_tree(right_text)
    paragraphs = [voice.say("lin-intro", (
        "I need the value of x that makes {q} true. The plan: simplify both sides, collect "
        "the x terms on the left and the plain numbers on the right, then divide.",
        "To solve {q}, I will move everything with x to one side and the numbers to the "
        "other, doing the same thing to both sides each time.",
        "The equation is {q}. I want x alone on one side, so I will undo the operations "
        "around it one by one, keeping both sides balanced.",
    ), q=equation)]
    expanded = 0
    for name, tree in (("left", left_tree), ("right", right_tree)):
        found = list(_brackets(tree))
        if not found:
            continue
        expansions = [f"{render_expr(b, textbook=True)} = {_side(_linear(b))}" for b in found]
        terms = [(sign, term) for sign, term in signed_terms(tree)]
        spelled = _monomials([tuple(sign * v for v in _linear(t)) for sign, t in terms])
        simplified = _side(_linear(tree))
        text = voice.say(f"lin-expand-{name}", (
            "{f} I expand the brackets on the {s} side: {e}.",
            "The {s} side has brackets, so I multiply them out: {e}.",
        ), f="Then" if expanded else "First", s=name, e=listing(expansions))
        expanded += 1
        if spelled != simplified:
            text += f" So the {name} side is {spelled}, which simplifies to {simplified}."
        else:
            text += f" So the {name} side is {simplified}."
        paragraphs.append(text)
    (a, b), (c, d) = _linear(left_tree), _linear(right_tree)
    if a == c:
        raise ValueError(f"record {record.get('id')!r}: {equation!r} has no single solution")
    moves: list[str] = []
    if c:
        what = _side((abs(c), Fraction(0)))
        verb = "subtract" if c > 0 else "add"
        a, c = a - c, Fraction(0)
        moves.append(voice.say("lin-move-x", (
            "To bring the x terms together, I {v} {w} {p} both sides: {l} = {r}.",
            "The right side has an x term, so I {v} {w} {p} both sides, which gives {l} = {r}.",
        ), v=verb, w=what, p="from" if verb == "subtract" else "to", l=_side((a, b)),
            r=_side((c, d))))
    if b:
        verb = "subtract" if b > 0 else "add"
        new = d - b
        arithmetic = f"{num_text(d)} {'-' if b > 0 else '+'} {num_text(abs(b))} = {num_text(new)}"
        first = "First" if not moves else "Next"
        moves.append(voice.say("lin-move-k", (
            "{f} I {v} {w} {p} both sides, to leave only the x term on the left: {l} = {z}.",
            "{f} I {v} {w} {p} both sides. On the right that gives {z}, so now {l} = {r}.",
        ), f=first, v=verb, w=num_text(abs(b)), p="from" if verb == "subtract" else "to",
            l=_side((a, Fraction(0))), z=arithmetic, r=num_text(new)))
        b, d = Fraction(0), new
    x = d / a
    if a == 1:
        moves.append(f"That already says x = {num_text(x)}.")
    elif a == -1:
        moves.append(voice.say("lin-neg", (
            "The left side is -x, so I multiply both sides by -1: x = {x}.",
            "Changing the sign of both sides turns -x = {d} into x = {x}.",
        ), x=num_text(x), d=num_text(d)))
    else:
        divisor = num_text(a) if a > 0 else f"({num_text(a)})"
        quotient = f"{num_text(d)} / {divisor}"
        if x.denominator == 1:
            tail = f"{quotient} = {num_text(x)}"
        else:
            g = math.gcd(int(d), int(a)) if d.denominator == 1 and a.denominator == 1 else 1
            if g > 1 or a < 0:
                tail = (f"{quotient}, which simplifies to {num_text(x)}" +
                        (f" (dividing the top and bottom by {g})" if g > 1 else ""))
            else:
                tail = f"{quotient}; that does not divide evenly, so x is the fraction {num_text(x)}"
        moves.append(voice.say("lin-divide", (
            "{f} I divide both sides by {a}: x = {t}.",
            "Dividing both sides by the coefficient {a} gives x = {t}.",
        ), f="Finally" if moves else "First", a=num_text(a), t=tail))
    paragraphs.extend(moves)
    # verification: put x back into the original sides and evaluate them exactly
    checks = []
    for name, tree in (("left", left_tree), ("right", right_tree)):
        substituted = substitute(tree, x)
        value = expr_value(substituted)
        if has_var(tree):
            checks.append((name, f"the {name} side is {chain_text(substituted)}", value))
        else:
            checks.append((name, f"the {name} side is just {num_text(value)}", value))
    if checks[0][2] != checks[1][2]:
        raise AssertionError(f"x = {num_text(x)} does not satisfy {equation!r}")
    paragraphs.append(voice.say("lin-check", (
        "Wait, let me check by putting x = {x} back into the original equation. With it, "
        "{l}, and {r}. Both sides equal {v}, so the solution is right.",
        "Wait, let me verify this by substitution, since a sign slip is easy here. For "
        "x = {x}, {l}; {r}. They agree at {v}.",
    ), x=num_text(x), l=checks[0][1], r=checks[1][1], v=num_text(checks[0][2])))
    coefficient = _side((a, Fraction(0)))
    reduced = f"{coefficient} = {num_text(d)}, so x = {num_text(x)}" if a != 1 else f"x = {num_text(x)}"
    summary = voice.say("lin-summary", (
        "Collecting the x terms and the numbers gives {r}, and substituting it back makes "
        "both sides equal.",
        "Solving {q} step by step leads to {r}, which checks out in the original equation.",
        "After moving the x terms to one side and the numbers to the other, {r}.",
    ), r=reduced, q=equation)
    return paragraphs, summary, num_text(x)
