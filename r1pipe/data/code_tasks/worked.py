"""The worked solution of a code problem: the problem restated, each step of its rule
explained, the empty case considered, the example traced by hand, and the program in a
fenced python block in the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from r1pipe.data.code_tasks.spec import Spec, expected_output, final_of, solution_program
from r1pipe.data.code_tasks.tables import NUM_STEPS, TEXT_STEPS


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]" if value else "an empty list"
    return f"\"{value}\"" if value else "an empty text"


def worked_parts(record: dict[str, Any], voice: Callable[[str, Sequence[str]], str]
                 ) -> tuple[list[str], str]:
    """(reasoning paragraphs, summary with the program) of a code task record.

    `voice(slot, options)` picks a phrasing deterministically (the caller's `_Voice.pick`).
    The example of the trace is the record's first test, and the trace recomputes it with
    the reference interpreter; a record whose stored output disagrees is refused.
    """
    spec_text = record.get("spec")
    if not isinstance(spec_text, str):
        raise ValueError(f"code record {record.get('id')!r} has no `spec` to solve it from")
    spec = Spec.parse(spec_text)
    info = json.loads(record["verification_info"]) if isinstance(
        record.get("verification_info"), str) else record.get("verification_info")
    if not isinstance(info, dict) or not info.get("test_cases"):
        raise ValueError(f"code record {record.get('id')!r} has no test cases")
    example = info["test_cases"][0]
    if expected_output(spec, example["input"]) != example["output"]:
        raise ValueError(f"code record {record.get('id')!r}: its first test expects "
                         f"{example['output']!r}, but the rule gives something else; refusing "
                         "to write a wrong sample")
    program = solution_program(spec)
    paragraphs = [_restate(spec, voice), *_plan(spec, voice), _trace(spec, example, voice)]
    summary = voice("code-summary", (
        "The program reads the input, applies each step in the order the statement gives, "
        "and prints the result:",
        "Here is the complete program; it follows the statement step by step:",
        "The solution reads standard input, transforms the data as described and prints "
        "the answer:",
    ))
    return paragraphs, f"{summary}\n\n```python\n{program}\n```"


def _restate(spec: Spec, voice: Callable[[str, Sequence[str]], str]) -> str:
    if spec.family == "fizz":
        p, q, a, b = spec.fizz_args()
        return voice("code-restate", (
            "I need to print the numbers from 1 to n, replacing multiples of {p} and {q} by "
            "words. This is a variant of the classic counting game.",
            "The task is a counting game: go from 1 to n and put words in place of the "
            "multiples of {p} and of {q}.",
        )).format(p=p, q=q) + (f" The order of the checks matters: a multiple of both must "
                               f"print {a}{b}, not just one of the words.")
    what = "a list of integers" if spec.family == "nums" else "one line of text"
    count = len(spec.steps)
    steps = ("no transformation at all" if not count else
             "a single transformation" if count == 1 else f"{count} transformations in order")
    return voice("code-restate", (
        "Let me restate the problem. The input is {what}, and the statement asks for {steps} "
        "before the final output.",
        "So the program receives {what}. I have to apply {steps} and then produce the "
        "requested output.",
    )).format(what=what, steps=steps)


def _plan(spec: Spec, voice: Callable[[str, Sequence[str]], str]) -> list[str]:
    if spec.family == "fizz":
        p, q, a, b = spec.fizz_args()
        return [f"A clean way is to build the word for each number: start empty, add {a} when "
                f"the number is divisible by {p}, add {b} when it is divisible "
                f"by {q}. If the word is still empty, the number itself is printed. This "
                f"handles the multiples of both without a separate case, because the two "
                f"words are added in the right order."]
    table = NUM_STEPS if spec.family == "nums" else TEXT_STEPS
    reading = ("The input has the count on the first line and the numbers on the second, so "
               "reading all of standard input and splitting it on whitespace gives the count "
               "first and then the numbers; taking exactly n of them is safest."
               if spec.family == "nums" else
               "The text is the first line of the input, read as it is, spaces included.")
    out = [reading]
    notes = [table[name].why(arg) for name, arg in spec.steps]
    if notes:
        out.append("Now the steps. " + " ".join(
            f"{_ordinal(i, len(notes))} {note}." for i, note in enumerate(notes)))
    final = final_of(spec)
    out.append(voice("code-edge", (
        "One edge case needs care: what if nothing is left? Here {empty}.",
        "I should also think about the empty case before writing the output line: {empty}.",
    )).format(empty=final.empty))
    return out


def _ordinal(index: int, count: int) -> str:
    if count == 1:
        return "Here"
    return ("First,", "Then", "Next,", "After that,", "Then")[min(index, 4)] if (
        index < count - 1) else "Finally,"


def _trace(spec: Spec, example: dict[str, Any], voice: Callable[[str, Sequence[str]], str]
           ) -> str:
    opening = voice("code-check", (
        "Wait, let me check the plan on the example before writing the program.",
        "Let me verify this by running the example by hand.",
    ))
    expected = example["output"].rstrip("\n")
    if spec.family == "fizz":
        n = int(example["input"].split()[0])
        p, q, a, b = spec.fizz_args()
        both = [str(i) for i in range(1, n + 1) if i % p == 0 and i % q == 0]
        plain = sum(1 for line in expected.splitlines() if line.isdigit())
        where = (f"the numbers {', '.join(both)} are multiples of both and print {a}{b}" if both
                 else f"no number up to {n} is a multiple of both")
        return (f"{opening} With n = {n} there are {n} lines; {where}, and {plain} of the lines "
                f"are plain numbers. That matches the expected output.")
    value: Any
    table = NUM_STEPS if spec.family == "nums" else TEXT_STEPS
    if spec.family == "nums":
        tokens = example["input"].split()
        value = [int(t) for t in tokens[1:1 + int(tokens[0])]]
        sentences = [f"The numbers are {_show(value)}."]
    else:
        value = example["input"].split("\n")[0]
        sentences = [f"The text is {_show(value)}."]
    for name, arg in spec.steps:
        value = table[name].apply(value, arg)
        sentences.append(f"After the step that says to {table[name].phrase(arg)}, I have "
                         f"{_show(value)}.")
    result = final_of(spec).result(value, spec.final[1])
    shown = f"\"{result}\"" if spec.family == "text" and spec.final[0] == "print" else result
    sentences.append(f"The output is {shown if result else 'an empty line'}, and the expected "
                     f"output is the same, so the plan is right.")
    return " ".join([opening, *sentences])
