"""What every sandbox provider shares: tests, results, limits, errors, and output comparison.

A provider runs one untrusted program against test cases and says, per test, whether its
output was right. `LocalSandbox` (namespaces on this machine) is the only one shipped; the
`Provider` protocol is the seam for remote ones (a code-execution service), which only need
`run`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Isolation = Literal["auto", "namespace", "none"]
TestKind = Literal["stdin", "functional", "assert"]
Status = Literal["passed", "failed", "error", "timeout", "output_limit", "skipped",
                 "sandbox_error"]
"""`failed`: wrong output; `error`: nonzero exit (exception, memory, CPU limit); `skipped`:
not run after an earlier failure; `sandbox_error`: the sandbox, not the program, failed."""


class SandboxError(RuntimeError):
    """The sandbox itself failed to run a test (not the program): setup, a missing binary."""


class SandboxUnavailable(SandboxError):
    """This machine cannot isolate programs the way the configuration asks.

    Raised instead of ever running a program unisolated: the message says what was tried,
    what failed, and how to fix it (or to opt out explicitly with `isolation: none`).
    """


@dataclass(frozen=True)
class CodeTest:
    """One test: `input` on stdin and `output` expected on stdout (`stdin`), or a call of
    `func_name` with the JSON values of `input`'s lines as arguments, whose result must equal
    the JSON value `output` (`functional`; with `unwrap`, APPS's call-based convention, the
    only element of a one-element `output` list is accepted too).

    `assert`: test code run in the program's process (`_asserts`): `input` is the test
    module (imports, setup code, helpers, `check`, `test_*` functions) and `output` the code
    of this one test, which passes when it runs to its end. Consecutive assert tests of one
    program with the same `input` run in one process, one verdict each."""

    input: str
    output: str
    kind: TestKind = "stdin"
    func_name: str | None = None
    unwrap: bool = False


@dataclass(frozen=True)
class CaseResult:
    """How one test went. `stdout`/`stderr` are capped (and decoded leniently)."""

    status: Status
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and isolation of a sandbox; each test gets them afresh.

    `timeout` is wall time from the program's start (the sandbox's own setup is not
    counted); the CPU limit is the same, rounded up. `memory_mb` is address space
    (RLIMIT_AS) per process. `max_processes` is RLIMIT_NPROC and the PID namespace's size;
    the kernel enforces neither below about 300 processes for a root parent (see
    docs/code-reasoning.md).
    `disk_mb` is the size of the scratch tmpfs and the largest file (RLIMIT_FSIZE).

    `isolation`: `auto` takes the strongest isolation the provider offers (for `local`,
    namespaces) and refuses to run without one; `namespace` insists on namespaces; `none`
    runs programs as this user, with its files and network: for trusted code only, and only
    when spelled out.
    """

    provider: Literal["local"] = "local"
    isolation: Isolation = "auto"
    workers: int | None = None
    """Tests run in parallel; None: min(4, cpus)."""
    timeout: float = 5.0
    memory_mb: int = 1024
    max_output_bytes: int = 1_000_000
    max_processes: int = 64
    disk_mb: int = 32
    max_open_files: int = 64
    python: str | None = None
    """Interpreter that runs the programs; None: the one running r1pipe."""
    hide_paths: tuple[str, ...] = field(default_factory=tuple)
    """Directories hidden from programs besides the defaults (the parent's home and working
    directory, /root, /home, /run, /tmp, /var/tmp)."""

    def problems(self) -> list[str]:
        """Errors in the values; empty when all is well."""
        out = []
        if self.provider != "local":
            out.append(f"provider {self.provider!r}: only 'local' is shipped")
        if self.isolation not in ("auto", "namespace", "none"):
            out.append(f"isolation {self.isolation!r}: expected auto, namespace or none")
        if self.workers is not None and self.workers < 1:
            out.append("workers must be at least 1")
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout)
                and self.timeout > 0):
            out.append("timeout must be a positive number of seconds")
        for name in ("memory_mb", "max_output_bytes", "max_processes", "disk_mb",
                     "max_open_files"):
            if getattr(self, name) < 1:
                out.append(f"{name} must be at least 1")
        if self.memory_mb < 64:
            out.append("memory_mb below 64 leaves the interpreter no room to start")
        for path in self.hide_paths:
            if not os.path.isabs(os.path.expanduser(path)):
                out.append(f"hide_paths: {path!r} is not an absolute path")
        return out

    def resolved_workers(self) -> int:
        """Worker threads: the configured number, else min(4, cpus)."""
        return self.workers or min(4, os.cpu_count() or 1)


@runtime_checkable
class Provider(Protocol):
    """Runs a program against tests; one result per test, in order.

    A program that misbehaves (crashes, hangs, floods output) fails its tests; only a
    failure of the provider itself raises (`SandboxError`).
    """

    def run(self, program: str, tests: Sequence[CodeTest]) -> list[CaseResult]: ...


def normalize_output(text: str) -> str:
    """Output as the code datasets compare it: trailing whitespace of each line and trailing
    blank lines do not count (line endings neither)."""
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def _json(text: str) -> Any:
    try:
        return True, json.loads(text)
    except ValueError:
        return False, None


def output_matches(test: CodeTest, stdout: str) -> bool:
    """Whether a program's stdout answers `test`.

    Functional tests compare JSON values (a tuple result equals a list, as LiveCodeBench's
    own check does after its JSON round trip); a reference that is not JSON is compared as
    text.
    """
    if test.kind == "functional":
        lines = normalize_output(stdout).split("\n")
        ok_expected, expected = _json(test.output)
        ok_actual, actual = _json(lines[-1]) if lines else (False, None)
        if ok_expected and ok_actual:
            return actual == expected or (test.unwrap and isinstance(expected, list)
                                          and len(expected) == 1 and actual == expected[0])
        return normalize_output(stdout) == normalize_output(test.output)
    return normalize_output(stdout) == normalize_output(test.output)
