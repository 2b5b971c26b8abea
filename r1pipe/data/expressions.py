"""Exact arithmetic on small expression strings, for generating and checking built-in tasks.

The generators need the true value of "2 + 3 * 4" with the usual operator precedence, and
the countdown task needs to know which numbers an expression uses. Python's own `eval` is
not safe on model output and works in floats; this walks the `ast` in exact fractions and
accepts nothing but numbers, + - * /, unary minus and parentheses.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from fractions import Fraction

AST_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
"""The `ast` binary operators an expression may use, as the symbols `apply_operator` takes."""
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExpressionError(ValueError):
    """The text is not a plain arithmetic expression (or divides by zero)."""


def parse(text: str) -> ast.expr:
    """The `ast` of an arithmetic text, with the ×, ÷ and − a model may write read as * / -.

    Only parsed, not checked: `evaluate` walks it and refuses anything but numbers and
    + - * /; `solutions` walks it with x allowed, for the equations."""
    cleaned = text.replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    if not cleaned or len(cleaned) > 500:
        raise ExpressionError(f"not an expression: {text!r}")
    try:
        return ast.parse(cleaned, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"not an expression: {text!r}") from exc


def _walk(node: ast.expr, numbers: list[Fraction]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = Fraction(node.value)
        numbers.append(value)
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _walk(node.operand, numbers)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in AST_OPERATORS:
        left = _walk(node.left, numbers)
        right = _walk(node.right, numbers)
        return apply_operator(AST_OPERATORS[type(node.op)], left, right)
    raise ExpressionError(f"unsupported element {ast.dump(node)[:40]!r}")


def apply_operator(op: str, a: Fraction, b: Fraction) -> Fraction:
    """`a op b` exactly, for op one of + - * /; the one place every evaluator here (and the
    worked solutions' steps) divides, so division by zero is refused the same way everywhere."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExpressionError("division by zero")
    return a / b


def evaluate(text: str) -> Fraction:
    """Exact value of an arithmetic expression such as "(25 - 7) * 3 + 5"."""
    return _walk(parse(text), [])


def evaluate_with_numbers(text: str) -> tuple[Fraction, list[Fraction]]:
    """Value of the expression and the literal numbers it uses, in order of appearance."""
    numbers: list[Fraction] = []
    value = _walk(parse(text), numbers)
    return value, numbers


def format_number(value: Fraction) -> str:
    """How an exact answer is written: "14", "-3", "7/2"."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{value.numerator}/{value.denominator}"


@dataclass(frozen=True)
class Node:
    """A binary expression tree: a leaf holds `value`, an inner node `op`, `left`, `right`."""

    value: int | None = None
    op: str | None = None
    left: Node | None = None
    right: Node | None = None

    def evaluate(self) -> Fraction:
        """Exact value of the tree."""
        if self.op is None:
            assert self.value is not None
            return Fraction(self.value)
        assert self.left is not None and self.right is not None
        return apply_operator(self.op, self.left.evaluate(), self.right.evaluate())

    def render(self) -> str:
        """The tree as text with only the parentheses precedence requires."""
        if self.op is None:
            return str(self.value)
        assert self.left is not None and self.right is not None
        prec = PRECEDENCE[self.op]
        left = self.left.render()
        right = self.right.render()
        if self.left.op is not None and PRECEDENCE[self.left.op] < prec:
            left = f"({left})"
        if self.right.op is not None and (
            PRECEDENCE[self.right.op] < prec
            or (PRECEDENCE[self.right.op] == prec and self.op in "-/")
        ):
            right = f"({right})"
        return f"{left} {self.op} {right}"
