"""The sandbox on any Python layout: an interpreter reached through a symlinked virtualenv
under a directory the sandbox hides, and a setup failure reported as what it is.

Seen on a cluster: `.venv` a symlink in the repo root, r1pipe run from the repo root. The
sandbox hides the working directory and exec'd the interpreter by the symlinked path, so every
code reward failed with "cannot isolate programs ... allow unprivileged user namespaces",
which was not the cause.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.sandbox import LocalSandbox, SandboxConfig, SandboxUnavailable
from r1pipe.sandbox import local as local_sandbox

REPO = Path(__file__).resolve().parents[1]
PROGRAM = ("from r1pipe.sandbox import CodeTest, LocalSandbox\n"
           "box = LocalSandbox()\n"
           "print(box.python)\n"
           "print(box.run(\"print(input()[::-1])\", [CodeTest('abc', 'cba')])[0].status)\n")


def test_a_symlinked_venv_under_the_hidden_working_directory_runs(tmp_path: Path) -> None:
    """`.venv` -> the real venv, in the directory r1pipe runs from (hidden by the sandbox)."""
    link = tmp_path / ".venv"
    link.symlink_to(Path(sys.prefix), target_is_directory=True)
    python = link / "bin" / Path(sys.executable).name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([str(python), "-c", PROGRAM], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    resolved, status = out.stdout.split()
    assert resolved == str(Path(os.path.realpath(sys.prefix)) / "bin" / python.name)
    assert status == "passed"


def test_interpreter_path_keeps_the_venv_and_refuses_what_is_not_there(tmp_path: Path) -> None:
    link = tmp_path / "env"
    link.symlink_to(Path(sys.prefix), target_is_directory=True)
    named = str(link / "bin" / "python")
    resolved = local_sandbox.interpreter_path(named)
    # the directory resolved, the venv's own `python` kept (not the base interpreter)
    assert resolved == os.path.join(os.path.realpath(sys.prefix), "bin", "python")
    with pytest.raises(ValueError, match="sandbox python '/nonexistent/python' is not an "
                                         "executable here; set sandbox.python"):
        LocalSandbox(SandboxConfig(python="/nonexistent/python"))


def test_a_setup_failure_is_not_reported_as_missing_namespaces(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the interpreter bound back into the sandbox: it cannot start there. User
    namespaces work on this machine, so the message says the setup failed and names the
    interpreter, instead of sending the user to change kernel settings."""
    monkeypatch.setattr(local_sandbox, "_PROBES", {})
    monkeypatch.setattr(local_sandbox, "interpreter_dirs", lambda python: [])
    box = LocalSandbox(SandboxConfig())
    with pytest.raises(SandboxUnavailable) as info:
        box.check()
    message = str(info.value)
    assert message.startswith("cannot run programs in the sandbox: user namespaces work here, "
                              "but its setup failed")
    assert box.python in message and "sandbox.python" in message
    assert "kernel.unprivileged_userns_clone" not in message
