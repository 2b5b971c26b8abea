"""A code problem's `Spec` (`nums|gt:3|mul:2|sum`): drawn from a seed by difficulty, parsed,
described as a statement, interpreted for the expected outputs of its tests, and turned
into the solution program the worked solution shows.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from r1pipe.data.code_tasks.tables import (
    FAMILIES,
    FILTERS,
    FIZZ_WORDS,
    LANGUAGE,
    LATE_STEPS,
    MAPS,
    MODULI,
    NUM_FINALS,
    NUM_FINALS_BY_LEVEL,
    NUM_LEVELS,
    NUM_STEPS,
    TESTS,
    TEXT_EARLY,
    TEXT_FINALS,
    TEXT_FINALS_BY_LEVEL,
    TEXT_STEPS,
    TEXT_STEPS_BY_LEVEL,
    VOWELS,
    WORDS,
    Final,
    SpecError,
)


def _letter_set(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return VOWELS
    return "".join(sorted(rng.sample(string.ascii_lowercase, rng.randint(1, 3))))


def _num_step(rng: random.Random, name: str, top: int) -> str:
    if name in ("gt", "lt", "ge", "le"):
        return f"{name}:{rng.randint(-top // 2, top // 2)}"
    if name in ("div", "ndiv"):
        return f"{name}:{rng.randint(2, 9)}"
    if name == "add":
        return f"add:{rng.choice([-1, 1]) * rng.randint(1, 20)}"
    if name == "mul":
        return f"mul:{rng.randint(2, 12)}"
    if name == "mod":
        return f"mod:{rng.randint(2, 12)}"
    if name in ("first", "skip"):
        return f"{name}:{rng.randint(1, 6)}"
    return name


def _draw_spec(rng: random.Random, difficulty: int) -> str:
    families, weights = zip(*FAMILIES[difficulty], strict=True)
    family = rng.choices(families, weights)[0]
    if family == "fizz":
        p, q = rng.sample(range(2, 10), 2)
        a, b = rng.sample(FIZZ_WORDS, 2)
        return f"fizz|{p}|{q}|{a}|{b}"
    if family == "nums":
        (lo, hi), _, top = NUM_LEVELS[difficulty]
        pool = FILTERS + MAPS + (LATE_STEPS if difficulty >= 3 else ())
        steps = [_num_step(rng, rng.choice(pool), top) for _ in range(rng.randint(lo, hi))]
        final = rng.choice(NUM_FINALS_BY_LEVEL[difficulty])
        if final == "prod":
            final = f"prod:{rng.choice(MODULI)}"
        return "|".join(["nums", *steps, final])
    lo, hi = TEXT_STEPS_BY_LEVEL[difficulty]
    pool = TEXT_EARLY if difficulty < 3 else tuple(TEXT_STEPS)
    steps = []
    for _ in range(rng.randint(lo, hi)):
        name = rng.choice(pool)
        if name == "drop":
            name = f"drop:{_letter_set(rng)}"
        elif name == "replace":
            name = "replace:" + "".join(rng.sample(string.ascii_lowercase, 2))
        elif name == "shift":
            name = f"shift:{rng.randint(1, 25)}"
        steps.append(name)
    final = rng.choice(TEXT_FINALS_BY_LEVEL[difficulty])
    if final == "count":
        final = f"count:{_letter_set(rng)}"
    return "|".join(["text", *steps, final])


@dataclass(frozen=True)
class Spec:
    """A parsed problem rule: its family, the (step, argument) chain and the final output."""

    family: str
    steps: tuple[tuple[str, str], ...]
    final: tuple[str, str]

    @classmethod
    def parse(cls, text: str) -> Spec:
        parts = text.split("|")
        family = parts[0]
        if family == "fizz":
            if len(parts) != 5 or not (parts[1].isdigit() and parts[2].isdigit()):
                raise SpecError(f"bad fizzbuzz spec {text!r}")
            return cls("fizz", (), ("fizz", "|".join(parts[1:])))
        steps_table, finals_table = ((NUM_STEPS, NUM_FINALS) if family == "nums" else
                                     (TEXT_STEPS, TEXT_FINALS) if family == "text" else
                                     ({}, {}))
        if not finals_table or len(parts) < 2:
            raise SpecError(f"unknown code problem spec {text!r}")
        pairs = [tuple(p.split(":", 1)) if ":" in p else (p, "") for p in parts[1:]]
        *steps, final = pairs
        for name, _ in steps:
            if name not in steps_table:
                raise SpecError(f"spec {text!r}: unknown step {name!r}")
        if final[0] not in finals_table:
            raise SpecError(f"spec {text!r}: unknown output {final[0]!r}")
        return cls(family, tuple(steps), final)  # type: ignore[arg-type]

    def fizz_args(self) -> tuple[int, int, str, str]:
        p, q, a, b = self.final[1].split("|")
        return int(p), int(q), a, b


def _phrases(spec: Spec) -> list[str]:
    table = NUM_STEPS if spec.family == "nums" else TEXT_STEPS
    return [table[name].phrase(arg) for name, arg in spec.steps]


def final_of(spec: Spec) -> Final:
    return (NUM_FINALS if spec.family == "nums" else TEXT_FINALS)[spec.final[0]]


def _chain(phrases: Sequence[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", then ".join(phrases[:-1]) + ", and finally " + phrases[-1]


def statement(spec: Spec) -> str:
    """The task in words (the prompt without its example)."""
    if spec.family == "fizz":
        p, q, a, b = spec.fizz_args()
        return (f"Read an integer n (1 <= n <= 100) and print the numbers from 1 to n, one per "
                f"line, except: print {a} instead of a multiple of {p}, {b} instead of a "
                f"multiple of {q}, and {a}{b} instead of a multiple of both.")
    actions = [*_phrases(spec), final_of(spec).phrase(spec.final[1])]
    if spec.family == "nums":
        head = ("The first line of the input holds an integer n (n >= 1) and the second line "
                "n integers separated by spaces.")
        what = "the numbers"
    else:
        head = "The input is one line of text."
        what = "the text"
    if len(actions) == 1:
        return f"{head} Read {what} and {actions[0]}."
    return f"{head} Read {what}, {_chain(actions)}. Apply the steps in this order."


# ---------------------------------------------------------------------------------------
# Tests: inputs drawn by level, outputs from the reference interpreter
# ---------------------------------------------------------------------------------------


def _text_line(rng: random.Random, difficulty: int) -> str:
    if rng.random() < 0.25:  # palindromes, so YES answers occur
        word = rng.choice(WORDS)
        middle = rng.choice(["", rng.choice(string.ascii_lowercase)])
        return word + middle + word[::-1]
    words = [rng.choice(WORDS) for _ in range(rng.randint(1, 2 + difficulty))]
    words = [w.capitalize() if rng.random() < 0.3 else w for w in words]
    if difficulty >= 3 and rng.random() < 0.5:
        words[-1] += rng.choice("!?.,")
    return " ".join(words)


def _input(spec: Spec, rng: random.Random, difficulty: int) -> str:
    if spec.family == "fizz":
        return f"{rng.randint(1, 10 + 10 * difficulty)}\n"
    if spec.family == "text":
        return _text_line(rng, difficulty) + "\n"
    _, (lo, hi), top = NUM_LEVELS[difficulty]
    nums = [rng.randint(-top, top) for _ in range(rng.randint(lo, hi))]
    return f"{len(nums)}\n{' '.join(map(str, nums))}\n"


def expected_output(spec: Spec, stdin: str) -> str:
    """What a correct program prints for `stdin`, computed from the rule (not the program)."""
    if spec.family == "fizz":
        p, q, a, b = spec.fizz_args()
        lines = []
        for i in range(1, int(stdin.split()[0]) + 1):
            word = (a if i % p == 0 else "") + (b if i % q == 0 else "")
            lines.append(word or str(i))
        return "\n".join(lines) + "\n"
    value: Any
    if spec.family == "nums":
        tokens = stdin.split()
        value = [int(t) for t in tokens[1:1 + int(tokens[0])]]
        table = NUM_STEPS
    else:
        value = stdin.split("\n")[0]
        table = TEXT_STEPS
    for name, arg in spec.steps:
        value = table[name].apply(value, arg)
    return final_of(spec).result(value, spec.final[1]) + "\n"


def verification_info(spec: Spec, inputs: Sequence[str]) -> dict[str, Any]:
    """open-r1's `verification_info` for the given test inputs."""
    return {"language": LANGUAGE, "test_cases": [
        {"type": "stdin_stdout", "input": stdin, "output": expected_output(spec, stdin)}
        for stdin in inputs]}


def _fence(text: str) -> str:
    return "```\n" + text.rstrip("\n") + "\n```"


def code_problem(rng: random.Random, difficulty: int) -> tuple[str, str, dict[str, Any]] | None:
    """(prompt, key, extra columns) of one drawn problem; the key is the spec, so the split
    (by hash of the key) holds out the rule itself, whatever example a prompt shows."""
    spec_text = _draw_spec(rng, difficulty)
    spec = Spec.parse(spec_text)
    inputs: list[str] = []
    for _ in range(TESTS[difficulty] * 4):
        stdin = _input(spec, rng, difficulty)
        if stdin not in inputs:
            inputs.append(stdin)
        if len(inputs) == TESTS[difficulty]:
            break
    info = verification_info(spec, inputs)
    outputs = {case["output"] for case in info["test_cases"]}
    if spec.family != "fizz" and len(outputs) == 1 and len(inputs) > 2:
        return None  # every test expects the same output: a constant would pass
    example = info["test_cases"][0]
    prompt = (f"{statement(spec)}\n\nExample input:\n{_fence(example['input'])}\n"
              f"Example output:\n{_fence(example['output'])}\n\nWrite a Python program that "
              "reads from standard input and prints the answer to standard output.")
    return prompt, f"code:{spec_text}", {"verification_info": json.dumps(info),
                                         "spec": spec_text}


# ---------------------------------------------------------------------------------------
# Worked solutions
# ---------------------------------------------------------------------------------------


def solution_program(spec: Spec) -> str:
    """The Python program that solves the problem, assembled line by line from the rule."""
    if spec.family == "fizz":
        p, q, a, b = spec.fizz_args()
        return "\n".join([
            "n = int(input())",
            "for i in range(1, n + 1):",
            "    word = \"\"",
            f"    if i % {p} == 0:",
            f"        word += \"{a}\"",
            f"    if i % {q} == 0:",
            f"        word += \"{b}\"",
            "    print(word or i)",
        ])
    if spec.family == "nums":
        lines = ["import sys", "", "data = sys.stdin.read().split()", "n = int(data[0])",
                 "nums = [int(tok) for tok in data[1:1 + n]]"]
        table = NUM_STEPS
    else:
        lines = ["text = input()"]
        table = TEXT_STEPS
    lines += [table[name].line(arg) for name, arg in spec.steps]
    lines += final_of(spec).lines(spec.final[1])
    return "\n".join(lines)
