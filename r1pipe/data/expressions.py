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

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExpressionError(ValueError):
    """The text is not a plain arithmetic expression (or divides by zero)."""


def _parse(text: str) -> ast.expr:
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
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left = _walk(node.left, numbers)
        right = _walk(node.right, numbers)
        op = _BINARY[type(node.op)]
        if op == "+":
            return left + right
        if op == "-":
            return left - right
        if op == "*":
            return left * right
        if right == 0:
            raise ExpressionError("division by zero")
        return left / right
    raise ExpressionError(f"unsupported element {ast.dump(node)[:40]!r}")


def evaluate(text: str) -> Fraction:
    """Exact value of an arithmetic expression such as "(25 - 7) * 3 + 5"."""
    return _walk(_parse(text), [])


def evaluate_with_numbers(text: str) -> tuple[Fraction, list[Fraction]]:
    """Value of the expression and the literal numbers it uses, in order of appearance."""
    numbers: list[Fraction] = []
    value = _walk(_parse(text), numbers)
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
        a, b = self.left.evaluate(), self.right.evaluate()
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        if b == 0:
            raise ExpressionError("division by zero")
        return a / b

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
