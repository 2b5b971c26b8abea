"""The local provider: each test in a fresh, throw-away set of Linux namespaces.

Per test: a new temporary directory (removed afterwards), and `unshare -U -r -n -p -f
--kill-child --mount-proc` (util-linux) around `_launcher.py`, which hides the machine's
private directories, makes everything but a scratch tmpfs read-only, sets the resource
limits, drops every capability and execs `python -I` on the program (see `_launcher`). The
parent owns the wall clock and the output caps: past either it kills the whole process
group, and `--kill-child` plus the PID namespace take every process the program started
with it, daemons included. The environment is built from nothing, so no variable of the
parent (HF_TOKEN, API keys) is there to read.

No `preexec_fn`: the reward calls this from worker threads, where forking Python code is
unsafe; every limit is applied by the launcher, a separate process, instead.

Whether namespaces work is probed once per process (a real run of a one-line program);
when they do not, every run raises `SandboxUnavailable` saying what failed and how to fix it.
Running without isolation takes `isolation: none`, spelled out in the configuration.
"""

from __future__ import annotations

import contextlib
import json
import logging
import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from r1pipe.sandbox.base import (
    CaseResult,
    CodeTest,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    output_matches,
)

logger = logging.getLogger(__name__)

LAUNCHER = Path(__file__).with_name("_launcher.py")
HARNESS = Path(__file__).with_name("_harness.py")
ASSERT_HARNESS = Path(__file__).with_name("_asserts.py")
ASSERT_MARK = "\x1er1pipe-asserts "
"""Starts the assert harness's verdict line (then the run's nonce, a space, the verdicts)."""
_ASSERT_STATUS = {"1": "passed", "0": "failed", "t": "timeout"}
UNSHARE_ARGS = ("-U", "-r", "-n", "-p", "-f", "--kill-child", "--mount-proc")
HIDDEN = ("/root", "/home", "/run", "/tmp", "/var/tmp")
"""Always hidden, besides the parent's home, its working directory (the project or run
directory: configs, data, checkpoints) and `hide_paths`: where secrets, sockets (docker,
dbus) and other runs' files live."""
SETUP_TIMEOUT = 30.0
"""Seconds the sandbox may take to start (unshare + launcher) on a loaded machine."""
KILL_WAIT = 10.0
"""Seconds allowed for a killed PID namespace to wind down before the group is killed."""
KEPT_CHARS = 8192
"""stdout/stderr characters kept in a result (the whole stdout is compared, up to the cap)."""
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
        supervisor = _Supervisor(proc, status_r, self.config, timeout)
        if test.kind == "assert":
            return supervisor.assert_results(stdin, len(tests), nonce)
        return [supervisor.result(test)]


class _Supervisor:
    """Feeds stdin, reads the capped outputs and the status pipe, and kills on the limits."""

    def __init__(self, proc: subprocess.Popen[bytes], status_fd: int, config: SandboxConfig,
                 timeout: float):
        self.proc = proc
        self.config = config
        self.timeout = timeout
        self.status_fd = status_fd
        self.status = b""
        self.out = bytearray()
        self.err = bytearray()
        self.started: float | None = None
        self.limit: str | None = None

    def kill(self) -> None:
        """SIGKILL the program and everything it started.

        With namespaces: the PID namespace's first process, which takes every other one in
        the namespace with it; `unshare` returns only once they are all gone, so nothing
        outlives the test (killing `unshare` first would return before the kernel finished).
        Then, and without namespaces, the process group.
        """
        if self.proc.returncode is not None:
            return
        if self.config.isolation != "none" and self._kill_namespace():
            try:
                self.proc.wait(timeout=KILL_WAIT)
                return
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.kill()

    def _kill_namespace(self) -> bool:
        """SIGKILL unshare's child, the namespace's PID 1; False if there is none (yet)."""
        children = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        if not hasattr(os, "pidfd_open"):  # Linux < 5.3: the process group it is
            return False
        try:
            with open(children) as f:
                pids = [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            return False
        for pid in pids:
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                with open(children) as f:  # the pidfd pins the process; still unshare's child?
                    if str(pid) not in f.read().split():
                        continue
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                return True
            except OSError:
                continue
            finally:
                os.close(pidfd)
        return False

    def result(self, test: CodeTest) -> CaseResult:
        """The one stdin or functional test's result."""
        stdout, stderr, code, seconds = self._finish(test.input)
        if self.limit is not None:
            status = self.limit
        elif code != 0:
            status = "error"
        else:
            status = "passed" if output_matches(test, stdout) else "failed"
        return CaseResult(status=status,  # type: ignore[arg-type]
                          returncode=code, stdout=stdout[:KEPT_CHARS],
                          stderr=stderr[-KEPT_CHARS:], seconds=round(seconds, 4))

    def assert_results(self, stdin: bytes, count: int, nonce: str) -> list[CaseResult]:
        """The assert harness's verdicts, read only from its line carrying this run's nonce
        (which the program cannot know): without that line, or with any exit status but 0,
        no test passed."""
        stdout, stderr, code, seconds = self._finish(stdin)
        head = ASSERT_MARK + nonce + " "
        at = stdout.rfind(head)
        verdicts = stdout[at + len(head):].split("\n", 1)[0] if at >= 0 else ""
        if self.limit is None and code == 0 and len(verdicts) == count and all(
                v in _ASSERT_STATUS for v in verdicts):
            statuses = [_ASSERT_STATUS[v] for v in verdicts]
            stdout = stdout[:at]
        else:
            fallback = self.limit or ("error" if code != 0 else "failed")
            statuses = [fallback] * count
        share = round(seconds / max(count, 1), 4)
        return [CaseResult(status=status,  # type: ignore[arg-type]
                           returncode=code, stdout=stdout[:KEPT_CHARS],
                           stderr=stderr[-KEPT_CHARS:], seconds=share) for status in statuses]

    def _finish(self, stdin: str | bytes) -> tuple[str, str, int | None, float]:
        """Feed stdin, wait for the end (or a limit), clean up: (stdout, stderr, exit
        status, seconds the program ran); raises SandboxError when the sandbox failed."""
        began = time.monotonic()
        try:
            data = stdin if isinstance(stdin, bytes) else stdin.encode("utf-8",
                                                                          errors="surrogatepass")
            self._pump(data, began)
            if self.limit is None:
                self._wait_exit()
        finally:
            self.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            with contextlib.suppress(OSError):
                os.close(self.status_fd)
            if self.config.isolation == "none":  # background children left in the group
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
        stderr = self.err.decode("utf-8", errors="replace")
        if (self.limit == "setup_timeout" or self.started is None
                or b"!" in self.status):
            message = self.status.decode("utf-8", errors="replace").lstrip("+!").strip()
            raise SandboxError(message or f"the sandbox did not start (exit "
                               f"{self.proc.returncode}): {stderr.strip()[-2000:]}")
        seconds = time.monotonic() - (self.started or began)
        return self.out.decode("utf-8", errors="replace"), stderr, self.proc.returncode, seconds

    def _deadline(self, began: float) -> float:
        if self.started is None:
            return began + SETUP_TIMEOUT
        return self.started + self.timeout

    def _pump(self, data: bytes, began: float) -> None:
        proc, cap = self.proc, self.config.max_output_bytes
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        sel = selectors.DefaultSelector()
        sel.register(self.status_fd, selectors.EVENT_READ, "status")
        sel.register(proc.stdout, selectors.EVENT_READ, self.out)
        sel.register(proc.stderr, selectors.EVENT_READ, self.err)
        if data:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        view, sent = memoryview(data), 0
        try:
            while sel.get_map():
                left = self._deadline(began) - time.monotonic()
                if left <= 0:
                    self.limit = "timeout" if self.started is not None else "setup_timeout"
                    return
                for key, _ in sel.select(left):
                    fd = key.fd
                    if key.data == "stdin":
                        try:
                            sent += os.write(fd, view[sent:sent + 65536])
                        except BlockingIOError:
                            continue
                        except OSError:  # the program closed its stdin: it wants no more
                            sent = len(data)
                        if sent >= len(data):
                            sel.unregister(key.fileobj)
                            proc.stdin.close()
                        continue
                    chunk = os.read(fd, 65536)
                    if key.data == "status":
                        self.status += chunk
                        if self.started is None and self.status.startswith(b"+"):
                            self.started = time.monotonic()  # the launcher execs the program
                        if not chunk:  # unshare exited; read its last words on stderr
                            sel.unregister(fd)
                        continue
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    key.data.extend(chunk)
                    if len(key.data) > cap:
                        del key.data[cap:]
                        self.limit = "output_limit"
                        return
        finally:
            sel.close()

    def _wait_exit(self) -> None:
        """Outputs closed; the program may still run (or just be exiting)."""
        if self.started is None:
            return
        left = self.started + self.timeout - time.monotonic()
        try:
            self.proc.wait(timeout=max(left, 0.001))
        except subprocess.TimeoutExpired:
            self.limit = "timeout"
