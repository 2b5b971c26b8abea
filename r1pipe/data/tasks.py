"""Built-in verifiable reasoning tasks, generated from a seed with a held-out test split.

R1-Zero needs prompts whose answers a rule can check. Nothing can be downloaded on the CPU
demo, so r1pipe makes its own: arithmetic with operator precedence ("What is 2 + 3 * 4?"),
multi-digit multiplication, countdown (reach a target with given numbers; many answers are
right) and linear equations, plus small stdin/stdout programs checked by their tests
(`code`, see `r1pipe.data.code_tasks`). Difficulty runs from 1 to 5 so a small model can start easy.

Two properties the stages rely on:

- **Deterministic**: the same (task, seed, difficulty, sizes) always gives the same records,
  and the train split of size N is a prefix of the train split of size N + k, so record ids
  stay meaningful across runs.
- **Held-out test split that never overlaps training**: each problem goes to train or test
  by a hash of its canonical form, *not* of the seed. So a test problem is never trained on,
  whatever seed or size either split was generated with.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from r1pipe.data.code_tasks import CODE_TASK, code_problem
from r1pipe.data.expressions import ExpressionError, Node, evaluate, format_number
from r1pipe.data.sources import BUILTIN_TASKS, MAX_DIFFICULTY, REASONING_TASKS

TEST_FRACTION = 0.2
"""Share of all possible problems reserved for the test split (by hash of the problem)."""

_MAX_FRUITLESS_DRAWS = 50_000


@dataclass(frozen=True)
class Problem:
    """One generated problem before it gets an id and a split."""

    prompt: str
    answer: str
    key: str  # canonical form: two prompts with the same key are the same problem
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def normalise_prompt(prompt: str) -> str:
    """Prompt text reduced to what makes it the same question: case, spaces, end marks."""
    text = re.sub(r"\s+", " ", prompt.casefold()).strip()
    text = re.sub(r"\s*([+\-*/=(),])\s*", r"\1", text)
    return text.rstrip(" ?.!")


def in_test_split(key: str, test_fraction: float = TEST_FRACTION) -> bool:
    """Whether a problem belongs to the held-out split; a pure function of the problem."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _random_tree(rng: random.Random, leaves: list[int], ops: str) -> Node:
    """A random binary tree over `leaves` in the given order with operators from `ops`."""
    nodes = [Node(value=v) for v in leaves]
    while len(nodes) > 1:
        i = rng.randrange(len(nodes) - 1)
        node = Node(op=rng.choice(ops), left=nodes[i], right=nodes[i + 1])
        nodes[i : i + 2] = [node]
    return nodes[0]


def _all_steps_positive_integers(node: Node) -> bool:
    """Countdown rule: every intermediate result is a positive whole number."""
    if node.op is None:
        return True
    assert node.left is not None and node.right is not None
    if not (_all_steps_positive_integers(node.left) and _all_steps_positive_integers(node.right)):
        return False
    value = node.evaluate()
    return value > 0 and value.denominator == 1


# ---------------------------------------------------------------------------------------
# the four tasks
# ---------------------------------------------------------------------------------------

# difficulty -> (operand count range, max operand, operators, parentheses, nested)
_ARITHMETIC_LEVELS: dict[int, tuple[tuple[int, int], int, str, bool]] = {
    1: ((3, 3), 9, "+-*", False),
    2: ((3, 4), 12, "+-*", False),
    3: ((4, 4), 20, "+-*", True),
    4: ((4, 5), 50, "+-*/", True),
    5: ((5, 6), 100, "+-*/", True),
}


def arithmetic(rng: random.Random, difficulty: int) -> Problem | None:
    """"What is 2 + 3 * 4?": precedence without parentheses at first, then with them."""
    (lo, hi), top, ops, parens = _ARITHMETIC_LEVELS[difficulty]
    operands = [rng.randint(1, top) for _ in range(rng.randint(lo, hi))]
    if parens and rng.random() < 0.6:
        text = _random_tree(rng, operands, ops).render()
    else:
        # a flat chain: the reader must apply precedence, which is the point of the task
        words = [str(operands[0])]
        for value in operands[1:]:
            words += [rng.choice(ops), str(value)]
        text = " ".join(words)
    try:
        value = evaluate(text)
    except ExpressionError:
        return None
    if value.denominator != 1 or abs(value) > 10**6:
        return None
    return Problem(prompt=f"What is {text}?", answer=format_number(value), key=f"arith:{text}")


# difficulty -> digits of the two factors
_MULTIPLICATION_LEVELS = {1: ((2, 3), (1, 1)), 2: ((2, 2), (2, 2)), 3: ((3, 3), (2, 2)),
                          4: ((3, 3), (3, 3)), 5: ((4, 4), (3, 4))}


def multiplication(rng: random.Random, difficulty: int) -> Problem | None:
    """Multi-digit multiplication: long enough that the answer needs worked steps."""
    (a_lo, a_hi), (b_lo, b_hi) = _MULTIPLICATION_LEVELS[difficulty]
    a_digits, b_digits = rng.randint(a_lo, a_hi), rng.randint(b_lo, b_hi)
    a = rng.randint(10 ** (a_digits - 1), 10**a_digits - 1)
    b = rng.randint(max(2, 10 ** (b_digits - 1)), 10**b_digits - 1)
    if rng.random() < 0.5:
        a, b = b, a
    key = "mul:" + "*".join(str(v) for v in sorted((a, b)))
    return Problem(prompt=f"What is {a} * {b}?", answer=str(a * b), key=key)


# difficulty -> (how many numbers, largest number, operators, largest target)
_COUNTDOWN_LEVELS = {
    1: (3, 30, "+-", 100),
    2: (3, 30, "+-*", 200),
    3: (4, 50, "+-*", 500),
    4: (4, 100, "+-*/", 1000),
    5: (5, 100, "+-*/", 1000),
}


def _operator_words(ops: str) -> str:
    symbols = list(ops)
    return ", ".join(symbols[:-1]) + " and " + symbols[-1]


def countdown(rng: random.Random, difficulty: int) -> Problem | None:
    """Reach a target with given numbers, each used at most once: many answers are right.

    The target is built from an expression over all the numbers (so one answer surely
    exists and is recorded); any expression using the numbers at most once that evaluates
    to the target is equally correct, which is why the record carries `numbers`/`target`.
    """
    count, top, ops, max_target = _COUNTDOWN_LEVELS[difficulty]
    numbers = [rng.randint(1, top) for _ in range(count)]
    tree = _random_tree(rng, rng.sample(numbers, len(numbers)), ops)
    if not _all_steps_positive_integers(tree):
        return None
    target = tree.evaluate()
    if target.denominator != 1 or not 1 <= target <= max_target or int(target) in numbers:
        return None
    target_int = int(target)
    shown = ", ".join(str(n) for n in numbers[:-1]) + f" and {numbers[-1]}"
    prompt = (
        f"Using the numbers {shown}, each at most once, and the operations "
        f"{_operator_words(ops)}, write an expression that equals {target_int}."
    )
    key = "countdown:" + ",".join(str(n) for n in sorted(numbers)) + f"->{target_int}"
    return Problem(
        prompt=prompt,
        answer=tree.render(),
        key=key,
        extra={"numbers": numbers, "target": target_int},
    )


def _linear_side(coef: int, const: int) -> str:
    """`coef`·x + `const` written the way a textbook would ("3x - 7", "-x", "12")."""
    parts: list[str] = []
    if coef:
        parts.append({1: "x", -1: "-x"}.get(coef, f"{coef}x"))
    if const or not parts:
        if parts:
            parts.append(f"{'-' if const < 0 else '+'} {abs(const)}")
        else:
            parts.append(str(const))
    return " ".join(parts)


def linear_equation(rng: random.Random, difficulty: int) -> Problem | None:
    """Solve for x: integer solutions first, then both sides, fractions and brackets."""
    if difficulty == 1:
        a, x = rng.randint(2, 12), rng.randint(1, 20)
        b = rng.choice([-1, 1]) * rng.randint(1, 40)
        left, right = _linear_side(a, b), str(a * x + b)
        solution = Fraction(x)
    elif difficulty == 2:
        a = rng.choice([-1, 1]) * rng.randint(2, 12)
        x, b = rng.randint(-20, 20), rng.randint(-30, 30)
        left, right = _linear_side(a, b), str(a * x + b)
        solution = Fraction(x)
    elif difficulty in (3, 4):
        a, c = rng.randint(-12, 12), rng.randint(-12, 12)
        if a == c or a == 0:
            return None
        b = rng.randint(-30, 30)
        if difficulty == 3:
            x = rng.randint(-15, 15)
            d = (a - c) * x + b
            solution = Fraction(x)
        else:
            d = rng.randint(-30, 30)
            solution = Fraction(d - b, a - c)
            if solution.denominator == 1 or solution.denominator > 12:
                return None
        left, right = _linear_side(a, b), _linear_side(c, d)
    else:
        # a(x + b) + c = d(x - e): brackets to expand, a fractional answer allowed
        a, d = rng.randint(2, 9), rng.randint(-9, 9)
        b, e, c = rng.randint(1, 12), rng.randint(1, 12), rng.randint(-20, 20)
        if a == d or d == 0:
            return None
        solution = Fraction(-d * e - a * b - c, a - d)
        if solution.denominator > 12:
            return None
        inner_left = f"{a}(x + {b})" + (f" {'-' if c < 0 else '+'} {abs(c)}" if c else "")
        right_coef = {1: "", -1: "-"}.get(d, str(d))
        left, right = inner_left, f"{right_coef}(x - {e})"
    equation = f"{left} = {right}"
    return Problem(
        prompt=f"Solve for x: {equation}",
        answer=format_number(solution),
        key=f"linear:{equation}",
    )


GENERATORS: dict[str, Callable[[random.Random, int], Problem | None]] = {
    "arithmetic": arithmetic,
    "multiplication": multiplication,
    "countdown": countdown,
    "linear_equation": linear_equation,
}
"""The math tasks (checked by `accuracy`); the default mix of `builtin: reasoning`."""
assert tuple(GENERATORS) == BUILTIN_TASKS


def code(rng: random.Random, difficulty: int) -> Problem | None:
    """A stdin/stdout Python problem with test cases (`r1pipe.data.code_tasks`): no
    `answer`, a `verification_info` column the `code` reward runs instead."""
    drawn = code_problem(rng, difficulty)
    if drawn is None:
        return None
    prompt, key, extra = drawn
    return Problem(prompt=prompt, answer="", key=key, extra=extra)


ALL_GENERATORS: dict[str, Callable[[random.Random, int], Problem | None]] = {
    **GENERATORS, CODE_TASK: code}
"""Every task `generate_task` knows: the math tasks and the code task."""
assert tuple(ALL_GENERATORS) == REASONING_TASKS


# ---------------------------------------------------------------------------------------
# splits and records
# ---------------------------------------------------------------------------------------


def _problems(task: str, seed: int, difficulty: int) -> Iterator[Problem | None]:
    """The endless, duplicate-free stream of problems for one (task, seed, difficulty).

    A draw that is rejected or repeats an earlier problem yields None, so the caller can
    tell an exhausted problem space from a slow one.
    """
    rng = random.Random(f"r1pipe:{task}:{seed}:{difficulty}")
    make = ALL_GENERATORS[task]
    seen: set[str] = set()
    while True:
        problem = make(rng, difficulty)
        if problem is None:
            yield None
            continue
        if problem.key in seen:
            yield None
            continue
        seen.add(problem.key)
        yield problem


def generate_task(
    task: str,
    split: str = "train",
    *,
    size: int = 2_000,
    test_size: int = 200,
    difficulty: int = 1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Records of one built-in task for one split.

    Ids look like `arithmetic-d1-train-000042`: the difficulty is part of them so a
    curriculum mixing levels of one task never repeats an id.

    `size` is the number of train records, `test_size` the number of test records; the
    requested split is returned. Records are `{"id", "prompt", "answer", "task",
    "difficulty", "task_type": "reasoning"}`, countdown ones also `numbers` and `target`,
    code ones (`task: code`, `answer: None`) `verification_info` and `spec`.
    """
    if task not in ALL_GENERATORS:
        raise ValueError(f"unknown built-in task {task!r}; choose from {list(ALL_GENERATORS)}")
    if split not in ("train", "test"):
        raise ValueError(f"built-in tasks have splits 'train' and 'test', not {split!r}")
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be 1 to {MAX_DIFFICULTY}, not {difficulty}")
    want_test = split == "test"
    wanted = test_size if want_test else size
    records: list[dict[str, Any]] = []
    fruitless = 0
    for problem in _problems(task, seed, difficulty):
        if len(records) >= wanted:
            break
        if problem is None or in_test_split(problem.key) != want_test:
            fruitless += 1
            if fruitless > _MAX_FRUITLESS_DRAWS:
                raise ValueError(
                    f"built-in task {task!r} at difficulty {difficulty} ran out of distinct "
                    f"{split} problems after {len(records)} (asked for {wanted}); ask for "
                    "fewer or raise the difficulty"
                )
            continue
        fruitless = 0
        records.append(
            {
                "id": f"{task}-d{difficulty}-{split}-{len(records):06d}",
                "prompt": problem.prompt,
                "answer": problem.answer or None,
                "task": task,
                "difficulty": difficulty,
                "task_type": "reasoning",
                **problem.extra,
            }
        )
    return records


def generate_reasoning(
    split: str = "train",
    *,
    size: int = 2_000,
    test_size: int = 200,
    difficulty: int = 1,
    seed: int = 0,
    tasks: list[str] | None = None,
) -> list[dict[str, Any]]:
    """An even mix of the built-in tasks (the math ones unless `tasks` names others, such as
    `code`), interleaved so any prefix is balanced too."""
    chosen = list(tasks or GENERATORS)
    k = len(chosen)

    def share(total: int, i: int) -> int:
        return total // k + (1 if i < total % k else 0)

    per_task = [
        generate_task(
            task,
            split,
            size=share(size, i),
            test_size=share(test_size, i),
            difficulty=difficulty,
            seed=seed,
        )
        for i, task in enumerate(chosen)
    ]
    mixed: list[dict[str, Any]] = []
    for row in range(max((len(r) for r in per_task), default=0)):
        mixed.extend(records[row] for records in per_task if row < len(records))
    return mixed
