"""The local provider: each test in a fresh, throw-away set of Linux namespaces.

Per test: a new temporary directory (removed afterwards), and `unshare -U -r -n -p -f
--kill-child --mount-proc` (util-linux) around `_launcher.py`, which hides the machine's
private directories, makes everything but a scratch tmpfs read-only, sets the resource
limits, drops every capability and execs `python -I` on the program (see `_launcher`). The
parent owns the wall clock and the output caps (`r1pipe.sandbox.supervisor`): past either
it kills the whole process group, and `--kill-child` plus the PID namespace take every
process the program started with it, daemons included. The environment is built from
nothing, so no variable of the parent (HF_TOKEN, API keys) is there to read.

No `preexec_fn`: the reward calls this from worker threads, where forking Python code is
unsafe; every limit is applied by the launcher, a separate process, instead.

Whether namespaces work is probed once per process (a real run of a one-line program);
when they do not, every run raises `SandboxUnavailable` saying what failed and how to fix it.
Running without isolation takes `isolation: none`, spelled out in the configuration.
"""

from __future__ import annotations

import json
import logging
import marshal
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from r1pipe.sandbox.base import (
    CaseResult,
    CodeTest,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
)
from r1pipe.sandbox.supervisor import ASSERT_MARK as ASSERT_MARK
from r1pipe.sandbox.supervisor import KEPT_CHARS as KEPT_CHARS
from r1pipe.sandbox.supervisor import KILL_WAIT as KILL_WAIT
from r1pipe.sandbox.supervisor import SETUP_TIMEOUT as SETUP_TIMEOUT
from r1pipe.sandbox.supervisor import Supervisor

logger = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("_launcher.py")
HARNESS = Path(__file__).with_name("_harness.py")
ASSERT_HARNESS = Path(__file__).with_name("_asserts.py")
UNSHARE_ARGS = ("-U", "-r", "-n", "-p", "-f", "--kill-child", "--mount-proc")
HIDDEN = ("/root", "/home", "/run", "/tmp", "/var/tmp")
"""Always hidden, besides the parent's home, its working directory (the project or run
directory: configs, data, checkpoints) and `hide_paths`: where secrets, sockets (docker,
dbus) and other runs' files live."""
FIX = (
    "Fixes: allow unprivileged user namespaces (sysctl user.max_user_namespaces=15000; "
    "Debian/Ubuntu: kernel.unprivileged_userns_clone=1; Ubuntu 24.04+: "
    "kernel.apparmor_restrict_unprivileged_userns=0; Docker: --security-opt "
    "seccomp=unconfined --security-opt apparmor=unconfined, or a remote provider), install "
    "util-linux for `unshare`, or, for trusted code only, set `isolation: none`."
)

_PROBES: dict[tuple[str, ...], str | None] = {}
_PROBE_LOCK = threading.Lock()
_INTERPRETERS: dict[str, list[str]] = {}
_SYS_PATHS: dict[str, list[str]] = {}
_WARNED_NONE = False


def minimal_env(workdir: str) -> dict[str, str]:
    """The program's whole environment: nothing is inherited from the parent.

    The program runs `python -I`, which ignores the PYTHON* variables; they are there for
    the programs it might start itself.
    """
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": workdir,
        "TMPDIR": workdir,
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def interpreter_dirs(python: str) -> list[str]:
    """Directories `python` needs (prefixes, stdlib, site-packages): bound back into the
    sandbox when they sit under a hidden directory such as /root/.pyenv."""
    if python not in _INTERPRETERS:
        code = ("import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, "
                "sys.exec_prefix, sys.base_exec_prefix, *sys.path]))")
        out = subprocess.run([python, "-I", "-c", code], capture_output=True, text=True,
                             env=minimal_env(tempfile.gettempdir()), timeout=60, check=True)
        dirs = {os.path.dirname(os.path.realpath(python)), os.path.dirname(python)}
        listed = json.loads(out.stdout)
        _SYS_PATHS[python] = [p for p in listed[4:] if p and os.path.exists(p)]
        dirs.update(listed)
        found = sorted({os.path.realpath(d) for d in dirs if d and os.path.isdir(d)}, key=len)
        keep: list[str] = []
        for d in found:  # drop directories inside one already kept
            if not any(d == k or d.startswith(k.rstrip("/") + "/") for k in keep):
                keep.append(d)
        _INTERPRETERS[python] = keep
    return _INTERPRETERS[python]


def interpreter_sys_path(python: str) -> list[str]:
    """`sys.path` of `python -I` (site-packages included): the assert harness runs under
    `-S`, which skips `site` and its .pth files (about a third of an interpreter's start),
    and puts these on its path instead."""
    interpreter_dirs(python)
    return _SYS_PATHS[python]


def process_units(tests: Sequence[CodeTest]) -> list[list[int]]:
    """Indices of the tests each sandboxed process runs: one stdin or functional test, or a
    run of consecutive assert tests sharing a test module (the program imported once)."""
    units: list[list[int]] = []
    for t, test in enumerate(tests):
        last = tests[units[-1][-1]] if units else None
        if (last is not None and test.kind == "assert" and last.kind == "assert"
                and last.input == test.input):
            units[-1].append(t)
        else:
            units.append([t])
    return units


def imported_modules(prelude: str, tests: Sequence[CodeTest]) -> list[str]:
    """Top-level modules the test code imports (never `solution`, the program): the harness
    imports them before the program runs, and restores them before every test."""
    import ast

    names: dict[str, None] = {}
    for code in (prelude, *(t.output for t in tests)):
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # the harness reports the broken test code as failing
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                top = name.partition(".")[0]
                if top not in ("solution", "__future__"):
                    names[name] = None
    return list(names)


def interpreter_path(python: str) -> str:
    """`python` with the symlinks of its directory resolved, the file name kept.

    The sandbox hides the working and home directories and binds back only the real
    directories the interpreter needs, so a virtualenv reached through a symlink there
    (`.venv -> /shared/envs/x`, common with cluster envs, conda and pyenv) must be exec'd by
    its real path. The file itself stays as named: a venv's `bin/python` is a symlink to the
    base interpreter, and exec'ing that target would leave the venv (and its packages)."""
    found = shutil.which(python) if os.sep not in python else python
    if found is None or not os.access(found, os.X_OK):
        raise ValueError(f"sandbox python {python!r} is not an executable here; set "
                         "sandbox.python to an interpreter's path")
    folder, name = os.path.split(os.path.abspath(found))
    return os.path.join(os.path.realpath(folder), name)


def _namespaces_work(unshare: str) -> bool:
    """Whether `unshare` can make the sandbox's namespaces here at all (a bare `true`), to tell
    a machine without user namespaces from a sandbox setup that failed for another reason."""
    true = shutil.which("true") or "/bin/true"
    try:
        done = subprocess.run([unshare, *UNSHARE_ARGS, "--", true], capture_output=True,
                              timeout=SETUP_TIMEOUT, env=minimal_env(tempfile.gettempdir()))
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _cwd() -> list[str]:
    try:
        return [os.getcwd()]
    except OSError:  # deleted under us: nothing there to hide
        return []


class LocalSandbox:
    """Runs Python programs against tests on this machine, isolated (see the module doc).

    `unshare` names the util-linux binary (a path, or a name looked up on PATH).
    """

    def __init__(self, config: SandboxConfig | None = None, *, unshare: str = "unshare") -> None:
        self.config = config or SandboxConfig()
        problems = self.config.problems()
        if problems:
            raise ValueError("invalid sandbox settings: " + "; ".join(problems))
        self.unshare = unshare
        self.python = interpreter_path(self.config.python or sys.executable)

    # -- public API ---------------------------------------------------------------------

    def run(self, program: str, tests: Sequence[CodeTest], *,
            stop_on_failure: bool = False) -> list[CaseResult]:
        """One result per test, in order. `stop_on_failure` skips the tests left once one
        failed (all-or-nothing scoring needs no more)."""
        return self.run_many([(program, tests)], stop_on_failure=stop_on_failure)[0]

    def run_many(self, jobs: Sequence[tuple[str, Sequence[CodeTest]]], *,
                 stop_on_failure: bool = False) -> list[list[CaseResult]]:
        """Results for several programs, their tests spread over `workers` threads.

        A test the sandbox itself could not run has status `sandbox_error`; when isolation
        is impossible here nothing runs and `SandboxUnavailable` is raised.
        """
        self.check()
        results: list[list[CaseResult | None]] = [[None] * len(tests) for _, tests in jobs]
        failed = [False] * len(jobs)
        lock = threading.Lock()

        def one(j: int, unit: list[int]) -> None:
            program, tests = jobs[j]
            with lock:
                skip = stop_on_failure and failed[j]
            if skip:
                done = [CaseResult("skipped")] * len(unit)
            else:
                try:
                    done = self.run_unit(program, [tests[t] for t in unit])
                except SandboxError as exc:
                    done = [CaseResult("sandbox_error", stderr=str(exc))] * len(unit)
            with lock:
                for t, result in zip(unit, done, strict=True):
                    results[j][t] = result
                    if not result.passed:
                        failed[j] = True

        units = [(j, unit) for j, (_, tests) in enumerate(jobs) for unit in process_units(tests)]
        workers = min(self.config.resolved_workers(), max(1, len(units)))
        if workers == 1:
            for j, unit in units:
                one(j, unit)
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
                for future in [pool.submit(one, j, unit) for j, unit in units]:
                    future.result()
        return [[r for r in job if r is not None] for job in results]

    def check(self) -> None:
        """Raise `SandboxUnavailable` unless programs can run with the configured isolation
        (probed once per process and setting; free afterwards)."""
        global _WARNED_NONE
        if self.config.isolation == "none":
            if not _WARNED_NONE:
                _WARNED_NONE = True
                logger.warning("sandbox isolation is off (isolation: none): programs run as "
                               "this user, with its files, processes and network")
            return
        key = (self.unshare, self.python, self.config.isolation, *self.config.hide_paths)
        with _PROBE_LOCK:
            if key not in _PROBES:
                _PROBES[key] = self._probe()
            problem = _PROBES[key]
        if problem is not None:
            raise SandboxUnavailable(problem)

    def run_test(self, program: str, test: CodeTest) -> CaseResult:
        """Run `program` against one test in a fresh sandbox (call `check` first)."""
        return self.run_unit(program, [test])[0]

    def run_unit(self, program: str, tests: Sequence[CodeTest]) -> list[CaseResult]:
        """Run `program` in one fresh sandbox: against one stdin or functional test, or
        against assert tests sharing one test module (`process_units` makes such groups)."""
        workdir = tempfile.mkdtemp(prefix="r1pipe-sandbox-")
        try:
            return self._run_in(workdir, program, tests)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise SandboxError(f"could not start a sandbox: {type(exc).__name__}: {exc}") \
                from exc
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # -- internals ----------------------------------------------------------------------

    def _probe(self) -> str | None:
        tried = f"`unshare {' '.join(UNSHARE_ARGS)}` (util-linux)"
        binary = shutil.which(self.unshare)
        if binary is None:
            return (f"cannot isolate programs: {tried} is needed, and {self.unshare!r} is not "
                    f"an executable here. {FIX}")
        # Default limits: a probe that fails says the machine cannot isolate, not that a
        # configured limit is too tight for the interpreter (that shows in the tests' stderr).
        probe = LocalSandbox(SandboxConfig(isolation=self.config.isolation, python=self.python,
                                           hide_paths=self.config.hide_paths),
                             unshare=self.unshare)
        try:
            result = probe.run_test("print('ok')", CodeTest(input="", output="ok"))
        except SandboxError as exc:
            if _namespaces_work(binary):
                return self._setup_failure(str(exc))
            return f"cannot isolate programs: {tried} failed: {exc}. {FIX}"
        if not result.passed:
            detail = (f"status {result.status}, exit {result.returncode}): "
                      f"{result.stderr.strip()[-2000:]}")
            if _namespaces_work(binary):
                return self._setup_failure(f"a one-line program did not run ({detail}")
            return (f"cannot isolate programs: a one-line program did not run under {tried} "
                    f"({detail}. {FIX}")
        return None

    def _setup_failure(self, what: str) -> str:
        """The probe's message when namespaces work and the sandbox's own setup did not:
        most often the interpreter, or a directory it needs, is hidden by the mounts."""
        return (f"cannot run programs in the sandbox: user namespaces work here, but its setup "
                f"failed: {what}. The interpreter {self.python} (sandbox.python, default: this "
                f"process's) and its directories {interpreter_dirs(self.python)} must be "
                f"reachable once {', '.join(HIDDEN)}, the home and working directories and "
                "sandbox.hide_paths are hidden; point sandbox.python at an interpreter "
                "outside them, or remove that path from hide_paths.")

    def _spec(self, workdir: str, test: CodeTest, status_fd: int, timeout: float) -> dict:
        cfg = self.config
        isolate = cfg.isolation != "none"
        mib = 1024 * 1024
        if test.kind == "functional":
            argv = [self.python, "-I", "-B", "-X", "utf8", "harness.py", test.func_name or ""]
            files = ["main.py", "harness.py"]
        elif test.kind == "assert":  # no site: the harness sets its path (interpreter_sys_path)
            argv = [self.python, "-I", "-S", "-B", "-X", "utf8", "harness.py"]
            files = ["main.py", "harness.py"]
        else:
            argv = [self.python, "-I", "-B", "-X", "utf8", "main.py"]
            files = ["main.py"]
        hide = [*HIDDEN, os.path.expanduser("~"), *_cwd(),
                *(os.path.expanduser(p) for p in cfg.hide_paths)]
        return {
            "workdir": workdir,
            "files": files,
            "argv": argv,
            "env": minimal_env(workdir),
            "isolate": isolate,
            "hide_proc": isolate and test.kind == "assert",
            # the assert harness runs in the launcher's own interpreter (-I -S): no exec
            "inline": "harness.py" if test.kind == "assert" else None,
            "status_fd": status_fd,
            "pid_max": max(301, cfg.max_processes + 2),
            "scratch_bytes": cfg.disk_mb * mib,
            "hide": sorted({os.path.realpath(p) for p in hide}),
            "keep": interpreter_dirs(self.python) if isolate else [],
            "limits": {
                "RLIMIT_CORE": 0,
                "RLIMIT_CPU": math.ceil(timeout) + 1,
                "RLIMIT_AS": cfg.memory_mb * mib,
                "RLIMIT_FSIZE": cfg.disk_mb * mib,
                "RLIMIT_NOFILE": cfg.max_open_files,
                "RLIMIT_NPROC": cfg.max_processes,
            },
        }

    def _command(self, spec: dict) -> list[str]:
        launcher = [self.python, "-I", "-S", str(LAUNCHER), marshal.dumps(spec, 4).hex()]
        if not spec["isolate"]:
            return launcher
        return [shutil.which(self.unshare) or self.unshare, *UNSHARE_ARGS, "--", *launcher]

    def _run_in(self, workdir: str, program: str, tests: Sequence[CodeTest]) -> list[CaseResult]:
        test = tests[0]
        if len(tests) > 1 and any(t.kind != "assert" or t.input != test.input for t in tests):
            raise ValueError("one sandbox runs one stdin/functional test, or assert tests "
                             "sharing one test module")
        Path(workdir, "main.py").write_text(program, encoding="utf-8", errors="surrogatepass")
        timeout, nonce = self.config.timeout, ""
        stdin: str | bytes = test.input
        if test.kind == "functional":
            if not test.func_name:
                raise SandboxError("a functional test needs the name of the function to call")
            shutil.copyfile(HARNESS, Path(workdir, "harness.py"))
        elif test.kind == "assert":
            shutil.copyfile(ASSERT_HARNESS, Path(workdir, "harness.py"))
            nonce = secrets.token_hex(16)
            stdin = marshal.dumps({"nonce": nonce, "prelude": test.input, "timeout": timeout,
                                   "tests": [t.output for t in tests],
                                   "imports": imported_modules(test.input, tests),
                                   "path": interpreter_sys_path(self.python)}, 4)
            timeout *= len(tests) + 2  # the program, the test module, then each test
        status_r, status_w = os.pipe()
        try:
            spec = self._spec(workdir, test, status_w, timeout)
            proc = subprocess.Popen(
                self._command(spec), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=workdir, env=minimal_env(workdir),
                start_new_session=True, pass_fds=(status_w,),
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(status_w)
        supervisor = Supervisor(proc, status_r, self.config, timeout)
        if test.kind == "assert":
            return supervisor.assert_results(stdin, len(tests), nonce)
        return [supervisor.result(test)]
