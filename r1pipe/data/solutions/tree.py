"""Expression trees in exact fractions, evaluated one operation at a time: the arithmetic and
linear-equation solutions read the same tree (parsed by `r1pipe.data.expressions`, never
`eval`), render it as a textbook would and list the steps of its evaluation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, replace
from fractions import Fraction

from r1pipe.data import expressions
from r1pipe.data.expressions import (
    AST_OPERATORS,
    PRECEDENCE,
    ExpressionError,
    apply_operator,
)
from r1pipe.data.solutions.voice import num_text


@dataclass(frozen=True)
class Expr:
    """A number, the unknown x, a binary operation, or a unary minus ("neg", in `left`)."""

    value: Fraction | None = None
    op: str | None = None
    left: Expr | None = None
    right: Expr | None = None
    var: bool = False

    @property
    def is_number(self) -> bool:
        return self.op is None and not self.var


def _tree(node: ast.expr) -> Expr:
    """An `ast` expression from `expressions` as a tree; only numbers, x, + - * /, unary -."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Expr(value=Fraction(str(node.value)))
    if isinstance(node, ast.Name) and node.id == "x":
        return Expr(var=True)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _tree(node.operand)
        if isinstance(node.op, ast.UAdd):
            return inner
        if inner.is_number and isinstance(node.operand, ast.Constant):
            assert inner.value is not None
            return Expr(value=-inner.value)  # a negative literal such as -5
        return Expr(op="neg", left=inner)
    if isinstance(node, ast.BinOp) and type(node.op) in AST_OPERATORS:
        return Expr(op=AST_OPERATORS[type(node.op)], left=_tree(node.left), right=_tree(node.right))
    raise ExpressionError(f"unsupported element {ast.dump(node)[:40]!r}")


def parse_tree(text: str) -> Expr:
    # `expressions` cleans the text (×, ÷, −) and parses it; the walk is ours, so that the
    # steps can be shown, and x is allowed for the equations
    return _tree(expressions.parse(text))


def expr_value(e: Expr) -> Fraction:
    if e.var:
        raise ExpressionError("the expression still contains x")
    if e.op is None:
        assert e.value is not None
        return e.value
    assert e.left is not None
    if e.op == "neg":
        return -expr_value(e.left)
    assert e.right is not None
    return apply_operator(e.op, expr_value(e.left), expr_value(e.right))


def substitute(e: Expr, x: Fraction) -> Expr:
    if e.var:
        return Expr(value=x)
    if e.op is None:
        return e
    assert e.left is not None
    return replace(e, left=substitute(e.left, x),
                   right=substitute(e.right, x) if e.right is not None else None)


def render_expr(e: Expr, *, top: bool = True, leftmost: bool = True, textbook: bool = False,
            parent: str | None = None) -> str:
    """The tree as text with only the parentheses precedence needs. A negative number that
    is not the first token, and a fraction multiplied or divided, are bracketed.
    `textbook` writes products with x the way the equations are written: 3x, 3(x + 4)."""
    if e.var:
        return "x"
    if e.op is None:
        assert e.value is not None
        text = num_text(e.value)
        fraction = e.value.denominator != 1 and parent in ("*", "/", "neg")
        if not top and (fraction or (e.value < 0 and not leftmost)):
            return f"({text})"
        return text
    assert e.left is not None
    if e.op == "neg":
        inner = e.left
        body = render_expr(inner, top=False, leftmost=False, textbook=textbook, parent="neg")
        if inner.op is not None and inner.op != "neg" and not body.startswith("("):
            body = f"({body})"
        text = f"-{body}"
        return text if leftmost or top else f"({text})"
    assert e.right is not None
    if textbook and e.op == "*" and e.left.is_number and has_var(e.right):
        assert e.left.value is not None
        coef = {1: "", -1: "-"}.get(int(e.left.value), num_text(e.left.value)) \
            if e.left.value.denominator == 1 else f"({num_text(e.left.value)})"
        inner = render_expr(e.right, top=False, leftmost=True, textbook=True)
        return f"{coef}{inner}" if e.right.var else f"{coef}({inner})"
    prec = PRECEDENCE[e.op]
    left_paren = e.left.op in PRECEDENCE and PRECEDENCE[e.left.op] < prec
    right_paren = e.right.op in PRECEDENCE and (
        PRECEDENCE[e.right.op] < prec or (PRECEDENCE[e.right.op] == prec and e.op in "-/"))
    left = render_expr(e.left, top=False, leftmost=leftmost or left_paren, textbook=textbook,
                   parent=e.op)
    right = render_expr(e.right, top=False, leftmost=right_paren, textbook=textbook, parent=e.op)
    if left_paren:
        left = f"({left})"
    if right_paren:
        right = f"({right})"
    return f"{left} {e.op} {right}"


def has_var(e: Expr) -> bool:
    if e.var:
        return True
    return any(c is not None and has_var(c) for c in (e.left, e.right))


def _has_op(e: Expr, ops: str) -> bool:
    if e.op is None:
        return False
    return e.op in ops or any(c is not None and _has_op(c, ops) for c in (e.left, e.right))


@dataclass(frozen=True)
class Step:
    """One operation done: `text` ("4 * 7 = 28"), why it came now, and the tree after it."""

    op: str
    a: Fraction
    b: Fraction | None
    result: Fraction
    reason: str  # "brackets", "precedence", "left", "sign"
    after: Expr

    @property
    def text(self) -> str:
        if self.op == "neg":
            return f"-({num_text(self.a)}) = {num_text(self.result)}"
        assert self.b is not None
        left = render_expr(Expr(value=self.a), top=False, leftmost=True, parent=self.op)
        right = render_expr(Expr(value=self.b), top=False, leftmost=False, parent=self.op)
        return f"{left} {self.op} {right} = {num_text(self.result)}"


def _candidates(e: Expr, depth: int, path: tuple[str, ...], parent: Expr | None,
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


def _at(e: Expr, path: tuple[str, ...]) -> Expr:
    for name in path:
        child = e.left if name == "left" else e.right
        assert child is not None
        e = child
    return e


def _put(e: Expr, path: tuple[str, ...], new: Expr) -> Expr:
    if not path:
        return new
    name, rest = path[0], path[1:]
    child = e.left if name == "left" else e.right
    assert child is not None
    return replace(e, **{name: _put(child, rest, new)})


def evaluation_steps(e: Expr) -> list[Step]:
    """The operations of a number-only tree in the order a person does them: deepest
    brackets first, then * and / before + and -, ties from left to right."""
    out: list[Step] = []
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
        e = _put(e, path, Expr(value=result))
        out.append(Step(node.op or "", a, b, result, reason, e))
    return out


def chain_text(e: Expr) -> str:
    """"3 * 7 - 5 = 21 - 5 = 16": the expression and each stage of its evaluation."""
    parts = [render_expr(e)] + [render_expr(s.after) for s in evaluation_steps(e)]
    return " = ".join(parts)


def signed_terms(e: Expr, sign: int = 1) -> list[tuple[int, Expr]]:
    """The top-level terms of a sum: "2 + 3 * 4 - 5" gives +2, +(3 * 4), -5."""
    if e.op == "+":
        assert e.left is not None and e.right is not None
        return signed_terms(e.left, sign) + signed_terms(e.right, sign)
    if e.op == "-":
        assert e.left is not None and e.right is not None
        return signed_terms(e.left, sign) + signed_terms(e.right, -sign)
    return [(sign, e)]
