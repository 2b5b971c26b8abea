"""The parent's side of one sandboxed run: feed stdin, read the capped outputs and the status
pipe, and kill the whole process group on the wall clock or an output cap. Apart from
`r1pipe.sandbox.local`, which builds the namespaces and starts the program, because this
part is the same whatever started it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time

from r1pipe.sandbox.base import (
    CaseResult,
    CodeTest,
    SandboxConfig,
    SandboxError,
    output_matches,
)

ASSERT_MARK = "\x1er1pipe-asserts "
"""Starts the assert harness's verdict line (then the run's nonce, a space, the verdicts)."""
_ASSERT_STATUS = {"1": "passed", "0": "failed", "t": "timeout"}


SETUP_TIMEOUT = 30.0
"""Seconds the sandbox may take to start (unshare + launcher) on a loaded machine."""
KILL_WAIT = 10.0
"""Seconds allowed for a killed PID namespace to wind down before the group is killed."""
KEPT_CHARS = 8192
"""stdout/stderr characters kept in a result (the whole stdout is compared, up to the cap)."""


class Supervisor:
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
