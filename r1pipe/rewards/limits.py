"""Hard time limits for answer verification.

Why not math-verify's own `timeout_seconds`/`parsing_timeout`: they use `signal.alarm`, which
has whole-second resolution, raises `ValueError` outside the main thread, and re-arms the one
process-wide `ITIMER_REAL` timer without restoring what was there (pytest-timeout's, or ours).
So r1pipe turns math-verify's timeouts off and puts one deadline around the whole
verification (gold parse, prediction parse, comparison):

- In the main thread (where TRL calls reward functions) the deadline is `ITIMER_REAL` with a
  float delay. The handler raises `VerificationTimeout`, a `BaseException`, so that the broad
  `except Exception` blocks inside math-verify and sympy cannot swallow it; any timer that was
  armed before (pytest-timeout, an outer deadline) is restored with its remaining time.
- In any other thread signals are unavailable, so the verification runs in a helper process
  (`python -m r1pipe.rewards._worker`) that applies the same deadline in its own main thread
  and is killed if it still has not answered shortly after the deadline. Only a few plain
  strings cross the pipe, and the helper is started once and reused.

sympy evaluates lazily in Python code (checked on math-verify 0.9 with `9**9**9**9`,
`10^{10^{10}}`, `(10^{10})!`, `2^{2^{30}}`: the signal interrupts each within a millisecond of
the deadline); `verifiers.is_explosive` rejects such inputs before they are parsed anyway, so a
hostile answer costs microseconds rather than the whole timeout.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class VerificationTimeout(BaseException):  # noqa: N818 - it is a signal, not an error
    """The deadline of a verification passed.

    A BaseException on purpose: math-verify and sympy wrap their work in `except Exception`,
    which would otherwise swallow the interruption and carry on without any time limit.
    """


def in_main_thread() -> bool:
    """Whether SIGALRM-based deadlines can be used here."""
    return threading.current_thread() is threading.main_thread()


def call_with_deadline(fn: Callable[..., T], seconds: float | None, *args: Any) -> T:
    """Run `fn(*args)` in the main thread, raising `VerificationTimeout` after `seconds`.

    `seconds` of None or <= 0 means no limit. Any previously armed ITIMER_REAL timer and
    SIGALRM handler are restored afterwards, the timer with its remaining delay.
    """
    if seconds is None or seconds <= 0:
        return fn(*args)
    if not in_main_thread():
        raise RuntimeError("call_with_deadline needs the main thread; use verify_isolated")
    armed = True

    def on_alarm(signum: int, frame: Any) -> None:
        if armed:
            raise VerificationTimeout

    previous_handler = signal.getsignal(signal.SIGALRM)
    signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        try:
            return fn(*args)
        finally:
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(
            signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL
        )
        if previous_delay > 0:
            remaining = previous_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(remaining, 1e-4), previous_interval)


class _Worker:
    """One helper process answering verification requests, restarted after a kill.

    Requests are serialised with a lock: a worker thread that verifies is already off the
    training hot path (TRL calls rewards in the main thread), so simplicity wins over
    parallelism here.
    """

    STARTUP_SECONDS = 120.0  # importing sympy + math-verify on a loaded 2-core machine
    GRACE_SECONDS = 1.0  # the helper's own deadline fires first; this covers the pipe

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()  # a forked child must not share the parent's pipes
        self._buffer = b""

    def _start(self) -> None:
        env = dict(os.environ)
        # The package may be imported from a source tree that is not installed.
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "r1pipe.rewards._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._buffer = b""
        ready = self._read_line(self.STARTUP_SECONDS)
        if ready is None or json.loads(ready).get("ready") is not True:
            self._kill()
            raise RuntimeError("the verification helper process did not start")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def _read_line(self, timeout: float) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        end = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the helper died
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send one request; None if the helper timed out or died (it is then restarted)."""
        with self._lock:
            if self._owner != os.getpid():
                self._proc, self._owner = None, os.getpid()
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(payload, default=str).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError:
                self._kill()
                return None
            line = self._read_line(timeout + self.GRACE_SECONDS)
            if line is None:
                self._kill()
                return None
            return json.loads(line)

    def close(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                self._kill()


_WORKER = _Worker()
atexit.register(_WORKER.close)


def verify_isolated(payload: dict[str, Any], timeout: float) -> dict[str, Any] | None:
    """Run one verification request in the helper process (for non-main threads)."""
    return _WORKER.request(payload, timeout)


def close_worker() -> None:
    """Stop the helper process, if one was started (tests, interpreter exit)."""
    _WORKER.close()
