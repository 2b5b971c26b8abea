"""Worked solutions of the countdown task: a breadth-first search over the numbers (each used
once, only the operations the prompt allows, every intermediate a positive whole number, as
the generator builds them) finds the shortest expression; checked against the rules.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from r1pipe.data import expressions
from r1pipe.data.expressions import (
    Node,
)
from r1pipe.data.solutions.tree import chain_text, parse_tree
from r1pipe.data.solutions.voice import Voice, listing, ordinal

_COUNTDOWN_OPS_BY_LEVEL = {1: "+-", 2: "+-*", 3: "+-*", 4: "+-*/", 5: "+-*/"}
"""Fallback when a countdown prompt does not list its operations (as `tasks` builds them)."""
_OPS_IN_PROMPT = re.compile(r"operations\s+([-+*/,\s]*?(?:and\s+[-+*/]))")
_MAX_COUNTDOWN_NUMBERS = 6


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


def solve_countdown(record: Mapping[str, Any], voice: Voice) -> tuple[list[str], str, str]:
    numbers, target = record.get("numbers"), record.get("target")
    if not isinstance(numbers, (list, tuple)) or not numbers or target is None:
        raise ValueError(f"record {record.get('id')!r}: a countdown record needs `numbers` and "
                         "`target`")
    if len(numbers) > _MAX_COUNTDOWN_NUMBERS:
        raise ValueError(f"record {record.get('id')!r}: more than {_MAX_COUNTDOWN_NUMBERS} "
                         "numbers is too many for an exhaustive search")
    nums, goal, ops = [int(n) for n in numbers], int(target), _countdown_ops(record)
    shown = listing([str(n) for n in nums])
    op_words = listing(list(ops))
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
            lines.append(f"{ordinal(voice, i, len(done))} {a} {op} {b} = {r}{tail}.")
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
    ), u=listing([str(u) for u in used_ints]))
    if unused:
        rules += voice.say("cd-unused", (
            " It leaves out {x}, which is fine, since each number may be used at most once.",
            " The {x} is not needed, and that is allowed: the rule is at most once.",
        ), x=listing([str(u) for u in unused]))
    rules += voice.say("cd-recompute", (
        " Evaluating it again with the usual order of operations: {c}. That equals the "
        "target {g}.",
        " Recomputing with precedence: {c}, which is {g} as required.",
    ), c=chain_text(parse_tree(expression)), g=goal)
    paragraphs.append(rules)
    summary = voice.say("cd-summary", (
        "Using {n} at most once each, {e} = {g}.",
        "The expression {e} reaches {g} with the given numbers, each used at most once.",
        "Combining the numbers as {e} gives exactly {g}.",
    ), n=shown, e=expression, g=goal)
    return paragraphs, summary, expression
