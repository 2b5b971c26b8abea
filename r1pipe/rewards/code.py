"""Code rewards: run the program a completion ends with against the problem's tests.

`code` takes the last fenced Python block (tagged python/py, or untagged) of the answer part
(after the reasoning, as accuracy reads it), runs it against the sample's test cases in a
sandbox (`r1pipe.sandbox`, one fresh isolated process per test) and scores the share of tests
passed (`mode: fraction`) or 1/0 (`mode: binary`, which stops at the first failure). No
block: 0.0. Test cases come from open-r1's `verification_info` column, LiveCodeBench's
`public_test_cases`/`private_test_cases`, APPS/TACO's `input_output`, or assert-style test
code (HumanEval's `test` + `entry_point`, MBPP's `test_list`, pytest-style `test` code as
KodCode's), found by column name or named by the `tests:` parameter (see `code_tests`); a
sample without any scores None, like accuracy without a reference. Assert-style tests run
in the program's own process, one sandbox per sample. A HumanEval-style program is the
problem's prompt (signature and docstring) followed by the completion's code, so a
completion may hold the body alone or the whole function. Only Python runs: tests for another language raise
(`other_languages: skip` scores those samples None instead).

`code_format` is the cheap companion: 1.0 when the answer part holds a closed fenced block
in the requested language.

The sandbox settings (`isolation`, `workers`, `timeout`, `memory_mb`, ...) are parameters of
`code`; its sandbox is built on first use and never pickled (TRL pickles reward functions
into its rollout workers).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN
from r1pipe.rewards.accuracy import answer_region
from r1pipe.rewards.base import Batch, RewardFunc, Score
from r1pipe.rewards.code_tests import (
    PYTHON_NAMES,
    BadTests,
    Problem,
    TestSpec,
    UnsupportedLanguage,
    is_python,
    read_problem,
)
from r1pipe.sandbox import CaseResult, CodeTest, SandboxConfig, SandboxError, make_provider

logger = logging.getLogger(__name__)
_REPORTED: set[str] = set()


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language tag, body) of every closed fenced block (``` or ~~~), in order.

    A line scan, linear in the text: a fence opens with three or more backticks or tildes
    and an optional tag, and closes with a line of at least as many of the same character.
    A block still open at the end (a cut-off generation) is not a block.
    """
    blocks: list[tuple[str, str]] = []
    fence: tuple[str, int, str] | None = None
    body: list[str] = []
    for line in text.split("\n"):
        stripped = line.strip()
        if fence is None:
            head = line.lstrip()
            char = head[:1]
            if char not in ("`", "~"):
                continue
            count = len(head) - len(head.lstrip(char))
            if count < 3:
                continue
            info = head[count:].strip()
            if char == "`" and "`" in info:
                continue  # inline code such as ```x```, not a fence
            fence, body = (char, count, info.split()[0].lower() if info else ""), []
        elif stripped and stripped == fence[0] * len(stripped) and len(stripped) >= fence[1]:
            blocks.append((fence[2], "\n".join(body)))
            fence = None
        else:
            body.append(line)
    return blocks


def _language_names(language: str) -> frozenset[str]:
    name = language.strip().lower()
    return PYTHON_NAMES if name in PYTHON_NAMES else frozenset({name})


def extract_program(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str | None:
    """The last Python (or untagged) fenced block of the answer part, or None.

    Blocks tagged with another language (```text with sample output, ```bash) are passed
    over: the program is the last block that can be Python.
    """
    region = answer_region(text, special_token, limit=None)
    if region is None:
        return None
    for language, body in reversed(fenced_blocks(region)):
        if (not language or language in PYTHON_NAMES) and body.strip():
            return body
    return None


def _top_level_names(code: str) -> set[str] | None:
    """Names the code defines at its top level; None when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return {n.name for n in tree.body
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}


def _last_function(code: str) -> str | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    return names[-1] if names else None


def _compiles(code: str) -> bool:
    """Whether `code` compiles (nothing runs: the sandbox runs it)."""
    try:
        compile(code, "<program>", "exec", dont_inherit=True)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
        return False


def _indented(code: str, first_only: bool = False) -> str:
    """The code as a function body: every line indented by four spaces, or (for an answer
    whose first line lost its indentation to stripping) the first line alone, to the others'."""
    lines = code.splitlines(keepends=True)
    if not first_only:
        return "".join(f"    {line}" if line.strip() else line for line in lines)
    depth = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()),
                default=4)
    return " " * depth + "".join(lines)


def with_prefix(prefix: str, code: str) -> str:
    """HumanEval's program: the prompt (signature and docstring), then the completion's code:
    a body (indented as the prompt's function needs when it came at column 0) or a whole
    function, which replaces the prompt's stub and keeps its imports and helpers."""
    head = prefix.rstrip("\n") + "\n"
    first = next((line for line in code.splitlines() if line.strip()), "")
    defined = _top_level_names(code)
    function = _last_function(prefix)
    if first[:1].isspace() or function is None or (defined and function in defined):
        return head + code
    for candidate in (_indented(code), _indented(code.lstrip("\n"), first_only=True)):
        if _compiles(head + candidate):
            return head + candidate
    return head + code


def completion_program(text: str, prefix: str | None,
                       special_token: str = DEFAULT_SPECIAL_TOKEN) -> str | None:
    """The program a completion submits: its last Python block; for a problem with a code
    prefix (HumanEval) also the bare answer text, appended to the prefix."""
    program = extract_program(text, special_token)
    if prefix is None:
        return program
    if program is None:
        region = answer_region(text, special_token, limit=None)
        program = region if region and region.strip() else None
    return None if program is None else with_prefix(prefix, program)


def _report(key: str, message: str) -> None:
    if key not in _REPORTED:
        _REPORTED.add(key)
        logger.error(message)


@dataclass
class Code(RewardFunc):
    """Share of the sample's tests its final Python block passes, run in a sandbox.

    Reads `verification_info` (open-r1), `public_test_cases`/`private_test_cases` plus
    `metadata` (LiveCodeBench), `input_output` (APPS/TACO) or assert-style test code
    (HumanEval, MBPP, pytest-style); see the module docstring.
    """

    family = "code"

    mode: Literal["fraction", "binary"] = "fraction"
    tests_column: str = "verification_info"
    public_tests_column: str = "public_test_cases"
    private_tests_column: str = "private_test_cases"
    metadata_column: str = "metadata"
    """LiveCodeBench's JSON column holding `func_name` for functional tests."""
    tests: dict[str, str] | None = None
    """Layout and columns of the tests (`code_tests.TestSpec`), e.g. `{layout: assert, test:
    test, entry_point: entry_point}`; None: found by the usual column names."""
    max_tests: int | None = None
    """Run at most this many tests per sample (the first ones); None: all."""
    other_languages: Literal["error", "skip"] = "error"
    provider: Literal["local"] = "local"
    isolation: Literal["auto", "namespace", "none"] = "auto"
    """`auto`/`namespace`: refuse to run unless namespaces isolate the program; `none`
    runs programs unisolated (trusted code only)."""
    workers: int | None = None
    timeout: float = 5.0
    """Wall seconds per test."""
    memory_mb: int = 1024
    max_output_bytes: int = 1_000_000
    max_processes: int = 64
    hide_paths: list[str] = field(default_factory=list)
    """Directories to hide from programs besides the defaults (home, the working directory,
    /root, /home, /run, /tmp, /var/tmp): data or checkpoint directories elsewhere."""
    special_token: str = DEFAULT_SPECIAL_TOKEN
    _provider: Any = field(default=None, init=False, repr=False, compare=False)

    def sandbox_config(self) -> SandboxConfig:
        """The sandbox settings among the parameters."""
        return SandboxConfig(
            provider=self.provider, isolation=self.isolation, workers=self.workers,
            timeout=self.timeout, memory_mb=self.memory_mb,
            max_output_bytes=self.max_output_bytes, max_processes=self.max_processes,
            hide_paths=tuple(self.hide_paths),
        )

    def problems(self) -> list[str]:
        out = self.sandbox_config().problems() + TestSpec.problems(self.tests)
        if self.max_tests is not None and self.max_tests < 1:
            out.append("max_tests must be at least 1 (or null for all)")
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_provider"] = None
        return state

    def sandbox(self) -> Any:
        """The provider, built on first use."""
        if self._provider is None:
            self._provider = make_provider(self.sandbox_config())
        return self._provider

    def spec(self) -> TestSpec:
        """The `tests:` parameter, parsed."""
        return TestSpec.parse(self.tests)

    def columns(self) -> tuple[str, ...]:
        """Every column tests are read from (a sample with a value in one is a code sample)."""
        return (self.tests_column, self.public_tests_column, self.private_tests_column,
                *self.spec().columns())

    def read_columns(self) -> tuple[str, ...]:
        """Every column `problem` may read: the test columns and their companions."""
        spec = self.spec()
        return tuple(dict.fromkeys((*self.columns(), self.metadata_column, spec.entry_point,
                                    spec.setup, spec.imports, spec.prompt or "code_prompt",
                                    "prompt")))

    def problem(self, batch: Batch, i: int) -> Problem | None:
        """Sample `i`'s tests; None when it has none (or another language, when skipped)."""
        problem = read_problem(lambda column: batch.column(column, i), self.spec(),
                               verification_info=self.tests_column,
                               public=self.public_tests_column,
                               private=self.private_tests_column,
                               metadata=self.metadata_column)
        if problem is not None and not is_python(problem.language):
            message = (f"code reward: sample {batch.column('id', i) or i} has tests in "
                       f"{problem.language!r}; only python is supported (the sandbox runs "
                       f"Python programs). Keep Python problems only, or set "
                       f"`other_languages: skip` to score such samples None.")
            if self.other_languages == "error":
                raise UnsupportedLanguage(message)
            _report(f"language:{problem.language}", message)
            return None
        if problem is None or not problem.tests:
            return None
        if self.max_tests:
            return Problem(problem.tests[:self.max_tests], problem.prefix, problem.language)
        return problem

    def score_batch(self, batch: Batch) -> list[Score]:
        out: list[Score] = [None] * len(batch)
        jobs: list[tuple[str, list[CodeTest]]] = []
        owners: list[int] = []
        for i in range(len(batch)):
            record = batch.column("id", i)
            try:
                problem = self.problem(batch, i)
                program = (None if problem is None else completion_program(
                    batch.texts[i], problem.prefix, self.special_token))
            except UnsupportedLanguage:
                raise
            except BadTests as exc:
                _report(f"tests:{record if record is not None else i}",
                        f"code reward: sample {record if record is not None else i}: unusable "
                        f"test cases ({exc}); scored None")
                continue
            except Exception as exc:  # a bug here costs the sample, not the run
                self.report_error(exc)
                continue
            if problem is None:
                # routing, not an error: math samples of a mixed batch have no tests
                if "no-tests" not in _REPORTED:
                    _REPORTED.add("no-tests")
                    logger.info("code reward: samples without test cases (columns %s) score "
                                "None", ", ".join(repr(c) for c in self.columns()))
                continue
            if program is None:
                out[i] = 0.0
                continue
            jobs.append((program, problem.tests))
            owners.append(i)
        if not jobs:
            return out
        for i, results in zip(owners, run_jobs(self.sandbox(), jobs, self.mode == "binary"),
                              strict=True):
            out[i] = self._score(results)
        return out

    def _score(self, results: Sequence[CaseResult]) -> Score:
        broken = [r for r in results if r.status == "sandbox_error"]
        if broken:
            self.report_error(SandboxError(broken[0].stderr))
            return None
        passed = sum(r.passed for r in results)
        if self.mode == "binary":
            return 1.0 if results and passed == len(results) else 0.0
        return passed / len(results) if results else 0.0


def run_jobs(provider: Any, jobs: Sequence[tuple[str, Sequence[CodeTest]]],
             stop_on_failure: bool) -> list[list[CaseResult]]:
    """Every job through the provider: `run_many` when it has one (tests of the whole batch
    share the worker pool), else `run` per program."""
    run_many = getattr(provider, "run_many", None)
    if callable(run_many):
        return run_many(jobs, stop_on_failure=stop_on_failure)
    return [list(provider.run(program, tests)) for program, tests in jobs]


TEST_COLUMNS = ("verification_info", "public_test_cases", "private_test_cases",
                *TestSpec().columns())
"""Columns whose presence makes a sample a code sample (open-r1's, LiveCodeBench's, APPS's,
MBPP's, HumanEval's and pytest-style `test`)."""


def without_tests(batch: Batch, i: int) -> bool:
    """Whether sample `i` is a non-code sample of a batch that has code samples: the batch
    has a test column, and this sample has no value in any."""
    present = [name for name in TEST_COLUMNS
               if isinstance(batch.columns.get(name), (list, tuple))
               and len(batch.columns[name]) == len(batch)]
    return bool(present) and all(batch.column(name, i) in (None, "") for name in present)


@dataclass
class CodeFormat(RewardFunc):
    """1.0 when the answer part has a closed fenced block in `language`, else 0.0; None for
    samples without test cases in a batch that has some (math samples of a mixed batch)."""

    family = "code_format"

    language: str = "python"
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def score_one(self, batch: Batch, i: int) -> Score:
        if without_tests(batch, i):
            return None  # a math sample of a mixed batch: no code is asked of it
        region = answer_region(batch.texts[i], self.special_token, limit=None)
        if region is None:
            return 0.0
        names = _language_names(self.language)
        return 1.0 if any(tag in names for tag, _ in fenced_blocks(region)) else 0.0

    def problems(self) -> list[str]:
        return [] if self.language.strip() else ["language must not be empty"]
