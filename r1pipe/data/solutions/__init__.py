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

The parts: `voice` (phrasing), `tree` (exact expression trees), and one module per task
(`arithmetic`, `multiplication`, `countdown`, `linear`); this module picks the solver and
checks its answer against the record's. Every name stays importable from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any

from r1pipe.data import code_tasks
from r1pipe.data.solutions.arithmetic import solve_arithmetic
from r1pipe.data.solutions.countdown import countdown_search, solve_countdown
from r1pipe.data.solutions.linear import Linear as Linear
from r1pipe.data.solutions.linear import solve_linear
from r1pipe.data.solutions.multiplication import solve_multiplication
from r1pipe.data.solutions.voice import Voice
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN

SOLVABLE_TASKS: tuple[str, ...] = ("arithmetic", "multiplication", "countdown", "linear_equation")
"""The math tasks `worked_solution` solves here; the code task (`task: code`) is solved by
`r1pipe.data.code_tasks` from the record's `spec`."""


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
        voice = Voice(str(record.get("id") or record.get("prompt")))
        paragraphs, summary = code_tasks.worked_parts(dict(record), voice.pick)
        return "\n\n".join(paragraphs), summary
    solver = _SOLVERS.get(task) if isinstance(task, str) else None
    if solver is None:
        raise ValueError(f"no worked solution for task {task!r}; solvable tasks: "
                         f"{', '.join(SOLVABLE_TASKS)}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"record {record.get('id')!r} has no prompt to solve")
    voice = Voice(str(record.get("id") or prompt))
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


_SOLVERS: dict[str, Callable[[Mapping[str, Any], Voice], tuple[list[str], str, str]]] = {
    "arithmetic": solve_arithmetic,
    "multiplication": solve_multiplication,
    "countdown": solve_countdown,
    "linear_equation": solve_linear,
}
assert tuple(_SOLVERS) == SOLVABLE_TASKS


__all__ = ["SOLVABLE_TASKS", "countdown_search", "worked_parts", "worked_solution"]
