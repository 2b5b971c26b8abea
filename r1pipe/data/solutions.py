"""Worked solutions of the built-in tasks: correct, readable long chains of thought.

Why this exists: the cold-start stage needs "a few thousand readable long chain-of-thought
samples". The paper gets them by prompting strong models; on a CPU machine with a 135M model
nothing the few-shot, direct or R1-Zero ways generate is correct, so the filters keep
nothing. But r1pipe generates the built-in tasks itself, so it can also solve them: this
module derives a solution from the problem alone (the expression, the two factors, the
numbers and target, the equation), one step at a time, the way a careful person would write
it, then checks it another way and closes with a summary in `\\boxed{}`. A builtin source
with `solutions: true` carries the result as its `completion` column, which the cold-start
stage reads as `collect.external` data.

What a solution looks like (the cold-start layout of `templates.format_completion`):
`|special_token|<reasoning>|special_token|<summary>`, short English paragraphs separated by
blank lines, a "Wait, let me check..." verification paragraph, and a summary ending
"The answer is \\boxed{X}.".

- arithmetic: evaluated by operator precedence, one operation per step, on the expression
  tree parsed by `r1pipe.data.expressions` (never `eval`); checked term by term or by
  undoing the last step;
- multiplication: long multiplication with partial products and their sum; checked by
  splitting the other factor (or by rounding) and by the last digit;
- countdown: a breadth-first search over the numbers (each used at most once, only the
  operations the prompt allows, every intermediate result a positive whole number, as the
  generator builds them) finds the shortest expression reaching the target; checked
  against the rules and re-evaluated;
- linear_equation: brackets expanded, x terms and numbers collected, both sides divided,
  in exact fractions; checked by substituting x back into the original equation;
- code: the problem restated, each step of its rule explained, the empty case considered,
  the example traced by hand; the summary holds the program in a fenced python block
  (`r1pipe.data.code_tasks`), and passes every test of the record.

Nothing is copied from the record's stored answer: it is recomputed, and a record whose
stored answer disagrees with the derivation is refused (`ValueError`), so a wrong sample is
never produced. Phrasing varies deterministically by a hash of the record id (a few
alternative sentences per slot), so samples are not all the same text.
"""

from __future__ import annotations

import ast
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from r1pipe.data import code_tasks, expressions
from r1pipe.data.expressions import (
    AST_OPERATORS,
    PRECEDENCE,
    ExpressionError,
    Node,
    apply_operator,
    format_number,
)
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN

SOLVABLE_TASKS: tuple[str, ...] = ("arithmetic", "multiplication", "countdown", "linear_equation")
"""The math tasks `worked_solution` solves here; the code task (`task: code`) is solved by
`r1pipe.data.code_tasks` from the record's `spec`."""

_COUNTDOWN_OPS_BY_LEVEL = {1: "+-", 2: "+-*", 3: "+-*", 4: "+-*/", 5: "+-*/"}
"""Fallback when a countdown prompt does not list its operations (as `tasks` builds them)."""
_OPS_IN_PROMPT = re.compile(r"operations\s+([-+*/,\s]*?(?:and\s+[-+*/]))")
_MAX_COUNTDOWN_NUMBERS = 6
_PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


def worked_solution(record: Mapping[str, Any], *, special_token: str = DEFAULT_SPECIAL_TOKEN
                    ) -> str:
    """A correct, readable worked solution of a built-in task record, in the cold-start
    layout `{special_token}{reasoning}{special_token}{summary}`.

    `record` needs `task` and `prompt` (countdown also `numbers` and `target`); `id` seeds
    the phrasing. Raises ValueError for a task it cannot solve or a problem whose stored
    answer disagrees with the derivation.
    """
    from r1pipe.data.templates import format_completion

    reasoning, summary = worked_parts(record)
    return format_completion(reasoning, summary, "special_token", special_token)


def worked_parts(record: Mapping[str, Any]) -> tuple[str, str]:
    """(reasoning, summary) of the worked solution, before they are put in a layout."""
    task = record.get("task")
    if task == code_tasks.CODE_TASK:
        voice = _Voice(str(record.get("id") or record.get("prompt")))
        paragraphs, summary = code_tasks.worked_parts(dict(record), voice.pick)
        return "\n\n".join(paragraphs), summary
    solver = _SOLVERS.get(task) if isinstance(task, str) else None
    if solver is None:
        raise ValueError(f"no worked solution for task {task!r}; solvable tasks: "
                         f"{', '.join(SOLVABLE_TASKS)}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"record {record.get('id')!r} has no prompt to solve")
    voice = _Voice(str(record.get("id") or prompt))
    paragraphs, summary, answer = solver(record, voice)
    gold = record.get("answer")
    if task != "countdown" and gold is not None and _as_fraction(gold) != _as_fraction(answer):
        raise ValueError(f"record {record.get('id')!r}: the worked solution gives {answer}, but "
                         f"the record's answer is {gold!r}; refusing to write a wrong sample")
    return "\n\n".join(paragraphs), f"{summary} The answer is \\boxed{{{answer}}}."


def _as_fraction(value: Any) -> Fraction | None:
    try:
        return Fraction(str(value).strip().replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None


# ---------------------------------------------------------------------------------------
# Phrasing
# ---------------------------------------------------------------------------------------


class _Voice:
    """Deterministic choice among alternative sentences, by a hash of the record id and the
    slot, so two records read differently but one record always reads the same."""

    def __init__(self, key: str) -> None:
        self.key = key

    def pick(self, slot: str, options: Sequence[str]) -> str:
        digest = hashlib.blake2b(f"{self.key}\x1f{slot}".encode(), digest_size=8).digest()
        return options[int.from_bytes(digest, "big") % len(options)]

    def say(self, slot: str, options: Sequence[str], **values: Any) -> str:
        return self.pick(slot, options).format(**values)


_ORDINALS = (("First,", "Next,", "Then", "After that,", "Finally,"),
             ("First,", "Then", "Next,", "Now", "Finally,"),
             ("To start,", "Next,", "Then", "Next,", "Last,"))


def _ordinal(voice: _Voice, index: int, count: int) -> str:
    words = _ORDINALS[int(voice.pick("ordinals", "012"))]
    if index == 0:
        return words[0]
    if index == count - 1:
        return words[4]
    return words[1 + (index - 1) % 3]


def _num(value: Fraction | int) -> str:
    return format_number(Fraction(value))


def _listing(items: Sequence[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------------------------------
# Expression trees in exact fractions, evaluated one operation at a time
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expr:
    """A number, the unknown x, a binary operation, or a unary minus ("neg", in `left`)."""

    value: Fraction | None = None
    op: str | None = None
    left: _Expr | None = None
    right: _Expr | None = None
    var: bool = False

    @property
    def is_number(self) -> bool:
        return self.op is None and not self.var


def _tree(node: ast.expr) -> _Expr:
    """An `ast` expression from `expressions` as a tree; only numbers, x, + - * /, unary -."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _Expr(value=Fraction(str(node.value)))
    if isinstance(node, ast.Name) and node.id == "x":
        return _Expr(var=True)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _tree(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        if inner.is_number and isinstance(node.operand, ast.Constant):
            assert inner.value is not None
            return _Expr(value=-inner.value)  # a negative literal such as -5
        return _Expr(op="neg", left=inner)
    if isinstance(node, ast.BinOp) and type(node.op) in AST_OPERATORS:
        return _Expr(op=AST_OPERATORS[type(node.op)], left=_tree(node.left), right=_tree(node.right))
    raise ExpressionError(f"unsupported element {ast.dump(node)[:40]!r}")


def _parse_tree(text: str) -> _Expr:
    # `expressions` cleans the text (×, ÷, −) and parses it; the walk is ours, so that the
    # steps can be shown, and x is allowed for the equations
    return _tree(expressions.parse(text))


def _value(e: _Expr) -> Fraction:
    if e.var:
        raise ExpressionError("the expression still contains x")
    if e.op is None:
        assert e.value is not None
        return e.value
    assert e.left is not None
    if e.op == "neg":
        return -_value(e.left)
    assert e.right is not None
    return apply_operator(e.op, _value(e.left), _value(e.right))


def _substitute(e: _Expr, x: Fraction) -> _Expr:
    if e.var:
        return _Expr(value=x)
    if e.op is None:
        return e
    assert e.left is not None
    return replace(e, left=_substitute(e.left, x),
                   right=_substitute(e.right, x) if e.right is not None else None)


def _render(e: _Expr, *, top: bool = True, leftmost: bool = True, textbook: bool = False,
            parent: str | None = None) -> str:
    """The tree as text with only the parentheses precedence needs. A negative number that
    is not the first token, and a fraction multiplied or divided, are bracketed.
    `textbook` writes products with x the way the equations are written: 3x, 3(x + 4)."""
    if e.var:
        return "x"
    if e.op is None:
        assert e.value is not None
        text = _num(e.value)
        fraction = e.value.denominator != 1 and parent in ("*", "/", "neg")
        if not top and (fraction or (e.value < 0 and not leftmost)):
            return f"({text})"
        return text
    assert e.left is not None
    if e.op == "neg":
        inner = e.left
        body = _render(inner, top=False, leftmost=False, textbook=textbook, parent="neg")
        if inner.op is not None and inner.op != "neg" and not body.startswith("("):
            body = f"({body})"
        text = f"-{body}"
        return text if leftmost or top else f"({text})"
    assert e.right is not None
    if textbook and e.op == "*" and e.left.is_number and _has_var(e.right):
        assert e.left.value is not None
        coef = {1: "", -1: "-"}.get(int(e.left.value), _num(e.left.value)) \
            if e.left.value.denominator == 1 else f"({_num(e.left.value)})"
        inner = _render(e.right, top=False, leftmost=True, textbook=True)
        return f"{coef}{inner}" if e.right.var else f"{coef}({inner})"
    prec = PRECEDENCE[e.op]
    left_paren = e.left.op in PRECEDENCE and PRECEDENCE[e.left.op] < prec
    right_paren = e.right.op in PRECEDENCE and (
        PRECEDENCE[e.right.op] < prec or (PRECEDENCE[e.right.op] == prec and e.op in "-/"))
    left = _render(e.left, top=False, leftmost=leftmost or left_paren, textbook=textbook,
                   parent=e.op)
    right = _render(e.right, top=False, leftmost=right_paren, textbook=textbook, parent=e.op)
    if left_paren:
        left = f"({left})"
    if right_paren:
        right = f"({right})"
    return f"{left} {e.op} {right}"


def _has_var(e: _Expr) -> bool:
    if e.var:
        return True
    return any(c is not None and _has_var(c) for c in (e.left, e.right))


def _has_op(e: _Expr, ops: str) -> bool:
    if e.op is None:
        return False
    return e.op in ops or any(c is not None and _has_op(c, ops) for c in (e.left, e.right))


@dataclass(frozen=True)
class _Step:
    """One operation done: `text` ("4 * 7 = 28"), why it came now, and the tree after it."""

    op: str
    a: Fraction
    b: Fraction | None
    result: Fraction
    reason: str  # "brackets", "precedence", "left", "sign"
    after: _Expr

    @property
    def text(self) -> str:
        if self.op == "neg":
            return f"-({_num(self.a)}) = {_num(self.result)}"
        assert self.b is not None
        left = _render(_Expr(value=self.a), top=False, leftmost=True, parent=self.op)
        right = _render(_Expr(value=self.b), top=False, leftmost=False, parent=self.op)
        return f"{left} {self.op} {right} = {_num(self.result)}"


def _candidates(e: _Expr, depth: int, path: tuple[str, ...], parent: _Expr | None,
                side: str) -> Iterator[tuple[int, int, tuple[str, ...]]]:
    """Operations ready to do (all operands are numbers), left to right, with the depth of
    brackets they sit in and their precedence."""
    if e.op is None:
        return
    assert e.left is not None
    bracketed = False
    if parent is not None and parent.op in PRECEDENCE and e.op in PRECEDENCE:
        prec, outer = PRECEDENCE[e.op], PRECEDENCE[parent.op]
        bracketed = prec < outer or (side == "right" and prec == outer and parent.op in "-/")
    if parent is not None and parent.op == "neg" and e.op in PRECEDENCE:
        bracketed = True
    inner = depth + bracketed
    children = [("left", e.left)] + ([("right", e.right)] if e.right is not None else [])
    if all(c.is_number for _, c in children):
        yield inner, 3 if e.op == "neg" else PRECEDENCE[e.op], path
        return
    for name, child in children:
        yield from _candidates(child, inner, (*path, name), e, name)


def _at(e: _Expr, path: tuple[str, ...]) -> _Expr:
    for name in path:
        child = e.left if name == "left" else e.right
        assert child is not None
        e = child
    return e


def _put(e: _Expr, path: tuple[str, ...], new: _Expr) -> _Expr:
    if not path:
        return new
    name, rest = path[0], path[1:]
    child = e.left if name == "left" else e.right
    assert child is not None
    return replace(e, **{name: _put(child, rest, new)})


def _steps(e: _Expr) -> list[_Step]:
    """The operations of a number-only tree in the order a person does them: deepest
    brackets first, then * and / before + and -, ties from left to right."""
    out: list[_Step] = []
    while e.op is not None:
        ready = list(_candidates(e, 0, (), None, "left"))
        depth, prec, path = max(ready, key=lambda c: (c[0], c[1]))  # max keeps the first tie
        node = _at(e, path)
        assert node.left is not None and node.left.value is not None
        a = node.left.value
        if node.op == "neg":
            b, result, reason = None, -a, "sign"
        else:
            assert node.op is not None and node.right is not None
            assert node.right.value is not None
            b = node.right.value
            result = apply_operator(node.op, a, b)
            if depth > 0:
                reason = "brackets"
            elif node.op in "*/" and _has_op(e, "+-"):
                reason = "precedence"
            else:
                reason = "left"
        e = _put(e, path, _Expr(value=result))
        out.append(_Step(node.op or "", a, b, result, reason, e))
    return out


def _chain(e: _Expr) -> str:
    """"3 * 7 - 5 = 21 - 5 = 16": the expression and each stage of its evaluation."""
    parts = [_render(e)] + [_render(s.after) for s in _steps(e)]
    return " = ".join(parts)


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


def _signed_terms(e: _Expr, sign: int = 1) -> list[tuple[int, _Expr]]:
    """The top-level terms of a sum: "2 + 3 * 4 - 5" gives +2, +(3 * 4), -5."""
    if e.op == "+":
        assert e.left is not None and e.right is not None
        return _signed_terms(e.left, sign) + _signed_terms(e.right, sign)
    if e.op == "-":
        assert e.left is not None and e.right is not None
        return _signed_terms(e.left, sign) + _signed_terms(e.right, -sign)
    return [(sign, e)]


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


def _solve_arithmetic(record: Mapping[str, Any], voice: _Voice) -> tuple[list[str], str, str]:
    text = _question_expression(str(record["prompt"]))
    tree = _parse_tree(text)
    steps = _steps(tree)
    if not steps:
        raise ValueError(f"record {record.get('id')!r}: {text!r} has no operation to do")
    value = steps[-1].result
    if value != expressions.evaluate(text):  # an independent evaluation of the same text
        raise AssertionError(f"step-by-step value of {text!r} disagrees with evaluate()")
    answer = _num(value)
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
            o=_ordinal(voice, i, len(steps)), t=step.text, w=_WORD.get(step.op, "operation"))
        sentence = sentence[0].upper() + sentence[1:]
        if step.op == "*" and step.b is not None:
            detail = _product_detail(step.a, step.b)
            if detail:
                sentence += voice.say("arith-detail", (" To be careful: {d}.",
                                                      " In detail, {d}."), d=detail)
        if step.after.op is not None:
            sentence += voice.say(f"arith-now-{i}", (
                " Now the expression is {x}.", " That leaves {x}.",
                " The expression becomes {x}."), x=_render(step.after))
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
    ), s=_listing([s.text for s in steps]), e=text, v=answer)
    return paragraphs, summary, answer


def _arithmetic_checks(text: str, tree: _Expr, steps: list[_Step], value: Fraction,
                       voice: _Voice) -> list[str]:
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
        ), n=_num(naive), v=_num(value)))
    terms = _signed_terms(tree)
    if len(terms) >= 2 and any(t.op is not None for _, t in terms):
        described = []
        for sign, term in terms:
            term_value = _value(term)
            shown = _num(sign * term_value)
            shown = shown if shown.startswith("-") else f"+{shown}"
            described.append(shown if term.op is None else f"{shown} (from {_render(term)})")
        plus = [s * _value(t) for s, t in terms if s * _value(t) >= 0]
        minus = [-(s * _value(t)) for s, t in terms if s * _value(t) < 0]
        pos, neg = sum(plus, Fraction(0)), sum(minus, Fraction(0))
        if minus:
            total = (f"the positive terms add up to {_num(pos)}, the negative ones to "
                     f"{_num(neg)}, and {_num(pos)} - {_num(neg)} = {_num(pos - neg)}")
        else:
            total = f"they add up to {_num(pos)}"
        out.append(voice.say("arith-terms", (
            "Let me verify this another way, term by term. The terms are {d}; {t}. That "
            "matches the value I found.",
            "Wait, let me double-check by splitting the expression into its terms: {d}. "
            "Then {t}, the same as before.",
        ), d=_listing(described), t=total))
    else:
        last = steps[-1]
        if last.op in PRECEDENCE and last.b is not None and not (last.op in "*/" and
                                                                 last.b == 0):
            inverse = {"+": "-", "-": "+", "*": "/", "/": "*"}[last.op]
            back = apply_operator(inverse, last.result, last.b)
            check = (f"{_render(_Expr(value=last.result), top=False, parent=inverse)} "
                     f"{inverse} "
                     f"{_render(_Expr(value=last.b), top=False, leftmost=False, parent=inverse)}"
                     f" = {_num(back)}")
            out.append(voice.say("arith-undo", (
                "Wait, let me check the last step by undoing it: {c}, which is the number I "
                "had before that step. So the value {v} holds.",
                "Let me verify by working backwards from the result: {c}, and that is exactly "
                "what the last operation started from. Good, the value is {v}.",
            ), c=check, v=_num(value)))
        else:  # pragma: no cover - a single operation of another kind
            out.append(f"Wait, let me recompute it once more: {_chain(tree)}. The value is "
                       f"{_num(value)}.")
    return out


# ---------------------------------------------------------------------------------------
# Multiplication
# ---------------------------------------------------------------------------------------


def _place_parts(n: int) -> list[int]:
    """347 -> [300, 40, 7] (zero digits left out)."""
    digits = str(n)
    return [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]


def _row(top: int, digit: int) -> str | None:
    """How one digit times the top number is worked out, place by place ("300 * 4 = 1200,
    40 * 4 = 160 and 7 * 4 = 28, and 1200 + 160 + 28 = 1388"); None when there is nothing
    to split (a digit 1, or a top number with one non-zero digit)."""
    parts = _place_parts(top)
    if digit == 1 or len(parts) == 1:
        return None
    pieces = ", ".join(f"{p} * {digit} = {p * digit}" for p in parts[:-1])
    pieces += f" and {parts[-1]} * {digit} = {parts[-1] * digit}"
    total = " + ".join(str(p * digit) for p in parts)
    return f"{pieces}, and {total} = {top * digit}"


def _running_sum(values: list[int]) -> str:
    """"1041 + 13880 = 14921, and 14921 + 52000 = 66921"."""
    total, parts = values[0], []
    for v in values[1:]:
        parts.append(f"{total} + {v} = {total + v}")
        total += v
    return ", and ".join(parts)


def _question_factors(prompt: str) -> tuple[int, int]:
    match = re.search(r"(-?\d+)\s*[*×x]\s*(-?\d+)", prompt)
    if not match:
        raise ValueError(f"cannot find two factors in {prompt!r}")
    return int(match.group(1)), int(match.group(2))


def _solve_multiplication(record: Mapping[str, Any], voice: _Voice
                          ) -> tuple[list[str], str, str]:
    a, b = _question_factors(str(record["prompt"]))
    if a <= 0 or b <= 0:
        raise ValueError(f"record {record.get('id')!r}: long multiplication needs positive "
                         "factors")
    # the factor with fewer digits is the multiplier, written below
    top, bottom = (a, b) if len(str(a)) >= len(str(b)) else (b, a)
    paragraphs = [voice.say("mul-intro", (
        "I need to compute {a} * {b}. I will use long multiplication: multiply {t} by each "
        "digit of {m}, shift each partial product to the place of its digit, and add the "
        "partial products.",
        "To find {a} * {b}, I'll multiply {t} by one digit of {m} at a time, starting with "
        "the ones digit, and then add up the rows.",
        "Let me work out {a} * {b} by long multiplication, with {t} on top and {m} below, "
        "going through the digits of {m} from right to left.",
    ), a=a, b=b, t=top, m=bottom)]
    digits = str(bottom)[::-1]
    partials: list[int] = []
    for k, ch in enumerate(digits):
        d, place = int(ch), _PLACES[k] if k < len(_PLACES) else f"10^{k}"
        if d == 0:
            paragraphs.append(voice.say(f"mul-zero-{k}", (
                "The {p} digit of {m} is 0, so this row adds nothing.",
                "The {p} digit of {m} is 0; that row is all zeros and I can skip it.",
            ), p=place, m=bottom))
            continue
        row = top * d
        partial = row * 10**k
        partials.append(partial)
        detail = _row(top, d)
        if detail is None:
            sentence = f"The {place} digit of {bottom} is {d}, and {top} * {d} = {row}."
        else:
            sentence = voice.say(f"mul-row-{k}", (
                "The {p} digit of {m} is {d}. Working out {t} * {d}: {r}. So this row is "
                "{t} * {d} = {q}.",
                "{n} the {p} digit, {d}. Splitting {t} by place: {r}, so {t} * {d} = {q}.",
                "Row for the {p} digit {d}: {r}, which makes {t} * {d} = {q}.",
            ), p=place, m=bottom, d=d, t=top, r=detail, q=row,
                n="Next comes" if k else "I start with")
        if k:
            sentence += voice.say(f"mul-shift-{k}", (
                " This digit stands for {v}, so the partial product is {r} * {s} = {q}.",
                " Shifted {k} to the left, it becomes {q}.",
            ), v=d * 10**k, r=row, s=10**k, q=partial,
                k={1: "one place", 2: "two places", 3: "three places"}.get(k, f"{k} places"))
        paragraphs.append(sentence)
    product = sum(partials)
    if len(partials) == 1:
        paragraphs.append(voice.say("mul-one-row", (
            "There is only one non-zero row, so the product is {q}.",
            "With a single row there is nothing to add: {a} * {b} = {q}.",
        ), q=product, a=a, b=b))
    else:
        paragraphs.append(voice.say("mul-add", (
            "Now I add the partial products: {s}. So {a} * {b} = {q}.",
            "Adding the rows: {s}. That gives {a} * {b} = {q}.",
        ), s=_running_sum(partials), a=a, b=b, q=product))
    paragraphs.append(_multiplication_check(top, bottom, product, voice))
    answer = str(product)
    if len(partials) == 1:
        summary = voice.say("mul-summary-one", (
            "Multiplying {t} by the single digit {m} place by place gives {q}, and a second "
            "method gives the same.",
            "Long multiplication with the one-digit factor {m} gives {a} * {b} = {q}; the "
            "check by rounding agrees.",
        ), q=product, t=top, m=bottom, a=a, b=b)
    else:
        summary = voice.say("mul-summary", (
            "Long multiplication gives the partial products {p}, which add up to {q}; a "
            "second method gives the same.",
            "Multiplying {t} by each digit of {m} and adding the partial products {p} gives "
            "{q}, and the check agrees.",
            "The rows of the long multiplication are {p}; their sum is {a} * {b} = {q}.",
        ), p=_listing([str(p) for p in partials]), q=product, t=top, m=bottom, a=a, b=b)
    return paragraphs, summary, answer


def _multiplication_check(top: int, bottom: int, product: int, voice: _Voice) -> str:
    last = (top % 10) * (bottom % 10)
    last_digit = voice.say("mul-last", (
        " The last digits agree too: {x} * {y} = {z} ends in {u}, and so does {q}.",
        " As a quick extra test, {x} * {y} = {z} ends in {u}, and {q} also ends in {u}.",
    ), x=top % 10, y=bottom % 10, z=last, u=last % 10, q=product)
    if bottom >= 10:
        # split the top number by place and multiply the bottom one by each part
        parts = _place_parts(top)
        terms = " + ".join(f"{bottom} * {p}" for p in parts)
        values = " + ".join(str(bottom * p) for p in parts)
        check = sum(bottom * p for p in parts)
        route = f"{bottom} * {top} = {terms} = {values} = {check}"
    elif top % 10:
        rounded = top + (10 - top % 10)
        gap = rounded - top
        check = rounded * bottom - gap * bottom
        route = (f"{top} is {rounded} - {gap}, so {top} * {bottom} = {rounded} * {bottom} - "
                 f"{gap} * {bottom} = {rounded * bottom} - {gap * bottom} = {check}")
    else:
        tens = top // 10
        check = tens * bottom * 10
        route = (f"{top} * {bottom} = {tens} * {bottom} * 10 = {tens * bottom} * 10 = {check}")
    if check != product:
        raise AssertionError(f"multiplication check of {top} * {bottom} disagrees")
    opener = voice.pick("mul-check", (
        "Wait, let me check this another way, so that I do not rely on one calculation: "
        "{r}. Both methods give {q}.",
        "Wait, let me double-check by a different route: {r}. That is the same result, "
        "{q}.",
        "Let me verify it another way: {r}. It matches {q}.",
    ))
    return opener.format(r=route, q=product) + last_digit


# ---------------------------------------------------------------------------------------
# Countdown
# ---------------------------------------------------------------------------------------


def _countdown_ops(record: Mapping[str, Any]) -> str:
    """The operations the prompt allows ("+, - and *"), else those of its difficulty."""
    match = _OPS_IN_PROMPT.search(str(record.get("prompt", "")))
    if match:
        ops = "".join(ch for ch in "+-*/" if ch in match.group(1))
        if ops:
            return ops
    level = record.get("difficulty")
    return _COUNTDOWN_OPS_BY_LEVEL.get(level, "+-*/") if isinstance(level, int) else "+-*/"


def _combine(a: tuple[int, Node], b: tuple[int, Node], ops: str
             ) -> Iterator[tuple[int, Node]]:
    """Every useful result of one operation on two values, in a fixed order: positive whole
    numbers only (the generator's rule), no multiplying or dividing by 1."""
    (x, nx), (y, ny) = (a, b) if a[0] >= b[0] else (b, a)
    if "+" in ops:
        yield x + y, Node(op="+", left=nx, right=ny)
    if "*" in ops and x != 1 and y != 1:
        yield x * y, Node(op="*", left=nx, right=ny)
    if "-" in ops and x != y:
        yield x - y, Node(op="-", left=nx, right=ny)
    if "/" in ops and y not in (0, 1) and x % y == 0:
        yield x // y, Node(op="/", left=nx, right=ny)


def countdown_search(numbers: Sequence[int], target: int, ops: str = "+-*/") -> Node | None:
    """The expression with the fewest operations that reaches `target`, using each number at
    most once and only `ops`, every intermediate result a positive whole number; None if
    there is none. Breadth-first over the multisets of values still available."""
    start = tuple(sorted(((int(n), Node(value=int(n))) for n in numbers), key=lambda p: p[0]))
    for value, node in start:
        if value == target:
            return node
    frontier = [start]
    seen = {tuple(v for v, _ in start)}
    while frontier:
        following: list[tuple[tuple[int, Node], ...]] = []
        for state in frontier:
            for i in range(len(state)):
                for j in range(i + 1, len(state)):
                    rest = state[:i] + state[i + 1:j] + state[j + 1:]
                    for value, node in _combine(state[i], state[j], ops):
                        if value == target:
                            return node
                        new = tuple(sorted((*rest, (value, node)), key=lambda p: p[0]))
                        key = tuple(v for v, _ in new)
                        if len(new) > 1 and key not in seen:
                            seen.add(key)
                            following.append(new)
        frontier = following
    return None


def _operations(node: Node) -> list[tuple[int, str, int, int]]:
    """The operations of a tree in the order they are done: (a, op, b, result)."""
    if node.op is None:
        return []
    assert node.left is not None and node.right is not None
    done = _operations(node.left) + _operations(node.right)
    a, b = node.left.evaluate(), node.right.evaluate()
    return [*done, (int(a), node.op, int(b), int(node.evaluate()))]


def _solve_countdown(record: Mapping[str, Any], voice: _Voice) -> tuple[list[str], str, str]:
    numbers, target = record.get("numbers"), record.get("target")
    if not isinstance(numbers, (list, tuple)) or not numbers or target is None:
        raise ValueError(f"record {record.get('id')!r}: a countdown record needs `numbers` and "
                         "`target`")
    if len(numbers) > _MAX_COUNTDOWN_NUMBERS:
        raise ValueError(f"record {record.get('id')!r}: more than {_MAX_COUNTDOWN_NUMBERS} "
                         "numbers is too many for an exhaustive search")
    nums, goal, ops = [int(n) for n in numbers], int(target), _countdown_ops(record)
    shown = _listing([str(n) for n in nums])
    op_words = _listing(list(ops))
    paragraphs = [voice.say("cd-intro", (
        "I need to reach {g} using {n}, each at most once, with {o}. I will look for a "
        "combination where every intermediate result is a positive whole number.",
        "The target is {g} and the numbers are {n}. Each number can be used at most once, "
        "and only {o} are allowed, so let me search systematically.",
        "Let me find an expression equal to {g} built from {n} (each used at most once) "
        "with the operations {o}.",
    ), g=goal, n=shown, o=op_words)]
    total = sum(nums)
    if "+" in ops and total == goal:
        paragraphs.append(f"Adding all the numbers gives {' + '.join(map(str, nums))} = "
                          f"{total}, which is exactly the target.")
        solution: Node | None = Node(value=nums[0])
        for n in nums[1:]:
            solution = Node(op="+", left=solution, right=Node(value=n))
    else:
        if "+" in ops and len(nums) > 1:
            gap = goal - total
            paragraphs.append(voice.say("cd-sum", (
                "A first idea is to add everything: {s} = {t}. That is {d} {w} {g}, so plain "
                "addition does not work and I need a different combination.",
                "Let me try the simplest thing first. {s} = {t}, which misses {g} by {d} (it "
                "is too {adj}), so I have to combine the numbers differently.",
            ), s=" + ".join(map(str, nums)), t=total, d=abs(gap),
                w="short of" if gap > 0 else "more than", g=goal,
                adj="small" if gap > 0 else "large"))
        solution = countdown_search(nums, goal, ops)
    if solution is None:
        raise ValueError(f"record {record.get('id')!r}: no expression over {nums} with {ops} "
                         f"reaches {goal}")
    expression = solution.render()
    done = _operations(solution)
    if done:
        lines = []
        for i, (a, op, b, r) in enumerate(done):
            tail = voice.pick("cd-hit", (", which is the target", ", exactly the target",
                                         ", which is the target {g}")).format(g=goal) \
                if i == len(done) - 1 else ""
            lines.append(f"{_ordinal(voice, i, len(done))} {a} {op} {b} = {r}{tail}.")
        lines = [line[0].upper() + line[1:] for line in lines]
        paragraphs.append(voice.say("cd-found", (
            "Trying the combinations, this one works. {l}",
            "After trying a few combinations, I find one that reaches the target. {l}",
            "Here is a combination that works. {l}",
        ), l=" ".join(lines)))
    paragraphs.append(voice.say("cd-expr", (
        "Written as a single expression, that is {e}.",
        "Putting the steps together gives the expression {e}.",
    ), e=expression))
    # check against the rules with the shared evaluator, as the verifier will
    value, used = expressions.evaluate_with_numbers(expression)
    used_ints = [int(u) for u in used]
    if value != goal or Counter(used_ints) - Counter(nums):
        raise AssertionError(f"countdown solution {expression!r} breaks the rules")
    unused = list((Counter(nums) - Counter(used_ints)).elements())
    rules = voice.say("cd-check", (
        "Wait, let me check it against the rules. It uses {u}, each no more often than it "
        "was given.",
        "Wait, let me verify that this is allowed. The numbers in the expression are {u}, "
        "all from the list and none used twice.",
    ), u=_listing([str(u) for u in used_ints]))
    if unused:
        rules += voice.say("cd-unused", (
            " It leaves out {x}, which is fine, since each number may be used at most once.",
            " The {x} is not needed, and that is allowed: the rule is at most once.",
        ), x=_listing([str(u) for u in unused]))
    rules += voice.say("cd-recompute", (
        " Evaluating it again with the usual order of operations: {c}. That equals the "
        "target {g}.",
        " Recomputing with precedence: {c}, which is {g} as required.",
    ), c=_chain(_parse_tree(expression)), g=goal)
    paragraphs.append(rules)
    summary = voice.say("cd-summary", (
        "Using {n} at most once each, {e} = {g}.",
        "The expression {e} reaches {g} with the given numbers, each used at most once.",
        "Combining the numbers as {e} gives exactly {g}.",
    ), n=shown, e=expression, g=goal)
    return paragraphs, summary, expression


# ---------------------------------------------------------------------------------------
# Linear equations
# ---------------------------------------------------------------------------------------

Linear = tuple[Fraction, Fraction]
"""coefficient of x, constant."""


def _linear(e: _Expr) -> Linear:
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
            word = "x" if mag == 1 else (f"{_num(mag)}x" if mag.denominator == 1
                                         else f"({_num(mag)})x")
            pieces.append((c, word))
        if k:
            pieces.append((k, _num(abs(k))))
    if not pieces:
        return "0"
    first_sign, first = pieces[0]
    out = ("-" if first_sign < 0 else "") + first
    for sign, word in pieces[1:]:
        out += f" {'-' if sign < 0 else '+'} {word}"
    return out


def _side(e: Linear) -> str:
    return _monomials([e])


def _brackets(e: _Expr) -> Iterator[_Expr]:
    """The bracketed products of a side: 3(x + 4), -(x - 5)."""
    if e.op is None:
        return
    if (e.op == "*" and e.left is not None and e.left.is_number and e.right is not None
            and e.right.op is not None and _has_var(e.right)):
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


def _equation_tree(side: str) -> _Expr:
    # "3x" and "3(x + 4)" are products: make the multiplication explicit for the parser
    explicit = re.sub(r"(\d|\))\s*(?=[x(])", r"\1*", side)
    return _parse_tree(explicit)


def _solve_linear(record: Mapping[str, Any], voice: _Voice) -> tuple[list[str], str, str]:
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
        expansions = [f"{_render(b, textbook=True)} = {_side(_linear(b))}" for b in found]
        terms = [(sign, term) for sign, term in _signed_terms(tree)]
        spelled = _monomials([tuple(sign * v for v in _linear(t)) for sign, t in terms])
        simplified = _side(_linear(tree))
        text = voice.say(f"lin-expand-{name}", (
            "{f} I expand the brackets on the {s} side: {e}.",
            "The {s} side has brackets, so I multiply them out: {e}.",
        ), f="Then" if expanded else "First", s=name, e=_listing(expansions))
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
        arithmetic = f"{_num(d)} {'-' if b > 0 else '+'} {_num(abs(b))} = {_num(new)}"
        first = "First" if not moves else "Next"
        moves.append(voice.say("lin-move-k", (
            "{f} I {v} {w} {p} both sides, to leave only the x term on the left: {l} = {z}.",
            "{f} I {v} {w} {p} both sides. On the right that gives {z}, so now {l} = {r}.",
        ), f=first, v=verb, w=_num(abs(b)), p="from" if verb == "subtract" else "to",
            l=_side((a, Fraction(0))), z=arithmetic, r=_num(new)))
        b, d = Fraction(0), new
    x = d / a
    if a == 1:
        moves.append(f"That already says x = {_num(x)}.")
    elif a == -1:
        moves.append(voice.say("lin-neg", (
            "The left side is -x, so I multiply both sides by -1: x = {x}.",
            "Changing the sign of both sides turns -x = {d} into x = {x}.",
        ), x=_num(x), d=_num(d)))
    else:
        divisor = _num(a) if a > 0 else f"({_num(a)})"
        quotient = f"{_num(d)} / {divisor}"
        if x.denominator == 1:
            tail = f"{quotient} = {_num(x)}"
        else:
            g = math.gcd(int(d), int(a)) if d.denominator == 1 and a.denominator == 1 else 1
            if g > 1 or a < 0:
                tail = (f"{quotient}, which simplifies to {_num(x)}" +
                        (f" (dividing the top and bottom by {g})" if g > 1 else ""))
            else:
                tail = f"{quotient}; that does not divide evenly, so x is the fraction {_num(x)}"
        moves.append(voice.say("lin-divide", (
            "{f} I divide both sides by {a}: x = {t}.",
            "Dividing both sides by the coefficient {a} gives x = {t}.",
        ), f="Finally" if moves else "First", a=_num(a), t=tail))
    paragraphs.extend(moves)
    # verification: put x back into the original sides and evaluate them exactly
    checks = []
    for name, tree in (("left", left_tree), ("right", right_tree)):
        substituted = _substitute(tree, x)
        value = _value(substituted)
        if _has_var(tree):
            checks.append((name, f"the {name} side is {_chain(substituted)}", value))
        else:
            checks.append((name, f"the {name} side is just {_num(value)}", value))
    if checks[0][2] != checks[1][2]:
        raise AssertionError(f"x = {_num(x)} does not satisfy {equation!r}")
    paragraphs.append(voice.say("lin-check", (
        "Wait, let me check by putting x = {x} back into the original equation. With it, "
        "{l}, and {r}. Both sides equal {v}, so the solution is right.",
        "Wait, let me verify this by substitution, since a sign slip is easy here. For "
        "x = {x}, {l}; {r}. They agree at {v}.",
    ), x=_num(x), l=checks[0][1], r=checks[1][1], v=_num(checks[0][2])))
    coefficient = _side((a, Fraction(0)))
    reduced = f"{coefficient} = {_num(d)}, so x = {_num(x)}" if a != 1 else f"x = {_num(x)}"
    summary = voice.say("lin-summary", (
        "Collecting the x terms and the numbers gives {r}, and substituting it back makes "
        "both sides equal.",
        "Solving {q} step by step leads to {r}, which checks out in the original equation.",
        "After moving the x terms to one side and the numbers to the other, {r}.",
    ), r=reduced, q=equation)
    return paragraphs, summary, _num(x)


_SOLVERS: dict[str, Callable[[Mapping[str, Any], _Voice], tuple[list[str], str, str]]] = {
    "arithmetic": _solve_arithmetic,
    "multiplication": _solve_multiplication,
    "countdown": _solve_countdown,
    "linear_equation": _solve_linear,
}
assert tuple(_SOLVERS) == SOLVABLE_TASKS
