"""The local sandbox: tests run, limits bite, isolation holds, and its absence is refused.

The hostile programs scored through the `code` reward live in test_rewards_code.py; here
the sandbox is driven directly, to look at statuses and at what a program can see.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

import pytest

from r1pipe.sandbox import (
    CodeTest,
    LocalSandbox,
    SandboxConfig,
    SandboxUnavailable,
    normalize_output,
    output_matches,
)
from r1pipe.sandbox import local as local_sandbox

SUM = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def sandbox() -> LocalSandbox:
    box = LocalSandbox(SandboxConfig(timeout=2.0, memory_mb=256, max_processes=16, workers=2))
    box.check()  # this machine has user namespaces: the suite needs them
    return box


def _see(sandbox: LocalSandbox, program: str) -> str:
    result = sandbox.run(program, [CodeTest("", "")])[0]
    assert result.returncode == 0, result
    return result.stdout


def test_normalize_output_ignores_trailing_whitespace_and_blank_lines() -> None:
    assert normalize_output("1 2  \n3\t\n\n\n") == "1 2\n3"
    assert normalize_output("a\r\nb\r\n") == "a\nb"
    assert normalize_output("  x") == "  x"  # leading whitespace counts
    assert output_matches(CodeTest("", "3\n\n"), "3   ")
    assert not output_matches(CodeTest("", "3"), "3\n4")
    call = CodeTest("", "[1, 2]", "functional", "f")
    assert output_matches(call, "[1,2]\n") and not output_matches(call, "[2, 1]")


def test_stdin_and_functional_tests(sandbox: LocalSandbox) -> None:
    results = sandbox.run(SUM, [CodeTest("1 2\n", "3\n"), CodeTest("2 2", "5")])
    assert [r.status for r in results] == ["passed", "failed"]
    assert results[1].stdout == "4\n"
    solution = ("class Solution:\n"
                "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
                "        print('debugging goes to stderr')\n"
                "        seen = {}\n"
                "        for i, x in enumerate(nums):\n"
                "            if target - x in seen:\n"
                "                return (seen[target - x], i)\n"
                "            seen[x] = i\n")
    calls = [CodeTest("[2, 7, 11, 15]\n9", "[0, 1]", "functional", "twoSum"),
             CodeTest("[3, 3]\n6", "[1, 0]", "functional", "twoSum")]
    results = sandbox.run(solution, calls)
    assert [r.status for r in results] == ["passed", "failed"]
    assert "debugging" in results[0].stderr
    function = "def add(a, b):\n    return a + b\n"
    assert sandbox.run(function, [CodeTest("1\n2", "3", "functional", "add")])[0].passed


def test_crash_and_stop_on_failure(sandbox: LocalSandbox) -> None:
    crash = sandbox.run("raise SystemExit(3)", [CodeTest("", "")])[0]
    assert crash.status == "error" and crash.returncode == 3
    serial = LocalSandbox(SandboxConfig(timeout=2.0, memory_mb=256, workers=1))
    results = serial.run("print(1)", [CodeTest("", "2"), CodeTest("", "1")], stop_on_failure=True)
    assert [r.status for r in results] == ["failed", "skipped"]  # in parallel: best effort


def test_limits_bite(sandbox: LocalSandbox) -> None:
    start = time.monotonic()
    loop = sandbox.run("while True:\n    pass\n", [CodeTest("", "")])[0]
    assert loop.status == "timeout" and time.monotonic() - start < 2.0 + 3.0
    memory = sandbox.run("x = bytearray(512 * 1024 * 1024)\n", [CodeTest("", "")])[0]
    assert memory.status == "error" and "MemoryError" in memory.stderr
    start = time.monotonic()
    flood = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n",
                        [CodeTest("", "")])[0]
    assert flood.status == "output_limit" and time.monotonic() - start < 2.0
    big_file = sandbox.run("open('f', 'wb').write(b'x' * (64 * 1024 * 1024))\n",
                           [CodeTest("", "")])[0]
    assert big_file.status == "error"  # RLIMIT_FSIZE / the scratch tmpfs size


def test_program_sees_a_bare_world(sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_sandboxtestFAKEtoken")
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "secret.txt").write_text("s3cret")
    program = (
        "import json, os, socket\n"
        "status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines()"
        " if ':\\t' in l)\n"
        "print(json.dumps({\n"
        "  'env': dict(os.environ), 'pid': os.getpid(), 'cwd': os.getcwd(),\n"
        "  'cap_eff': status['CapEff'], 'cap_bnd': status['CapBnd'],\n"
        "  'no_new_privs': status['NoNewPrivs'],\n"
        "  'nets': sorted(os.listdir('/sys/class/net')) if os.path.isdir('/sys/class/net')"
        " else None,\n"
        "  'procs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit()),\n"
        f"  'home_visible': os.path.exists({str(tmp_path / 'secret.txt')!r}),\n"
        f"  'cwd_listing': sorted(os.listdir({os.getcwd()!r})),\n"
        "  'dev': sorted(os.listdir('/dev')),\n"
        "}))\n"
    )
    seen = json.loads(_see(sandbox, program))
    assert "HF_TOKEN" not in seen["env"] and set(seen["env"]) <= {
        "PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE",
        "PYTHONIOENCODING", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"}
    assert seen["pid"] == 1 and seen["procs"] == [1]  # its own PID namespace, alone
    assert int(seen["cap_eff"], 16) == 0 and int(seen["cap_bnd"], 16) == 0
    assert seen["no_new_privs"].strip() == "1"
    assert seen["home_visible"] is False
    # The parent's working directory (the project here) is hidden; an interpreter living
    # inside it (a .venv) is bound back, read-only.
    venv = Path(sys.prefix).resolve()
    cwd = Path.cwd().resolve()
    visible = {venv.relative_to(cwd).parts[0]} if venv.is_relative_to(cwd) else set()
    assert set(seen["cwd_listing"]) == visible
    assert set(seen["dev"]) == {"null", "zero", "full", "random", "urandom", "fd", "stdin",
                                "stdout", "stderr"}  # no disks, no ttys, no shared memory
    assert not os.path.exists(seen["cwd"])  # the scratch directory was removed


def test_filesystem_is_read_only_outside_scratch(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    # Unhide /tmp so that tmp_path is visible: only the read-only remount protects it now.
    monkeypatch.setattr(local_sandbox, "HIDDEN", ("/root", "/home", "/run", "/var/tmp"))
    box = LocalSandbox(SandboxConfig(timeout=2.0, memory_mb=256, max_processes=16))
    target = tmp_path / "escape.txt"
    program = (
        "import errno, os\n"
        f"for path in ({str(target)!r}, '/escape.txt', 'scratch.txt'):\n"
        "    try:\n"
        "        open(path, 'w').write('x')\n"
        "        print(path, 'written')\n"
        "    except OSError as exc:\n"
        "        print(path, errno.errorcode[exc.errno])\n"
        f"print(os.listdir({str(tmp_path)!r}))\n"
    )
    lines = _see(box, program).splitlines()
    assert lines[0] == f"{target} EROFS"
    assert lines[1] == "/escape.txt EROFS"
    assert lines[2] == "scratch.txt written"
    assert not target.exists() and not Path("/escape.txt").exists()


def test_network_is_unreachable(sandbox: LocalSandbox) -> None:
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        port = server.getsockname()[1]
        program = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "    print('connected')\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__)\n"
        )
        out = _see(sandbox, program)
        assert "connected" not in out
        with pytest.raises(BlockingIOError):
            server.accept()


def test_missing_unshare_refuses_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_sandbox, "_PROBES", {})
    box = LocalSandbox(SandboxConfig(), unshare="/nonexistent/unshare")
    with pytest.raises(SandboxUnavailable) as info:
        box.run("print(1)", [CodeTest("", "1")])
    message = str(info.value)
    assert "unshare -U -r -n -p -f" in message and "/nonexistent/unshare" in message
    assert "user namespaces" in message and "isolation: none" in message


def test_failing_namespaces_refuse_with_what_failed(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    fake = tmp_path / "unshare"
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(local_sandbox, "_PROBES", {})
    box = LocalSandbox(SandboxConfig(isolation="namespace"), unshare=str(fake))
    with pytest.raises(SandboxUnavailable, match="Operation not permitted"):
        box.check()


def test_isolation_none_is_explicit_and_still_scrubs(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_sandboxtestFAKEtoken")
    monkeypatch.setattr(local_sandbox, "_WARNED_NONE", False)
    box = LocalSandbox(SandboxConfig(isolation="none", timeout=2.0, memory_mb=256),
                       unshare="/nonexistent/unshare")  # not needed without isolation
    with caplog.at_level(logging.WARNING, logger="r1pipe.sandbox.local"):
        results = box.run("import os\nprint(os.environ.get('HF_TOKEN'))\n" + SUM,
                          [CodeTest("1 2", "None\n3")])
    assert results[0].passed
    assert "isolation is off" in caplog.text
    with pytest.raises(ValueError, match="isolation 'off'"):
        LocalSandbox(SandboxConfig(isolation="off"))  # type: ignore[arg-type]


def test_tests_run_in_parallel(sandbox: LocalSandbox) -> None:
    start = time.monotonic()
    results = sandbox.run("import time\ntime.sleep(0.6)\nprint(1)\n",
                          [CodeTest("", "1")] * 4)
    elapsed = time.monotonic() - start
    assert all(r.passed for r in results)
    assert elapsed < 4 * 0.6 + 0.3  # two workers: about two rounds, not four
