"""Runs assert-style tests against a program in one process: the harness of `assert` tests.

Copied next to the program as `harness.py` and run as `python -I -S harness.py` inside the
sandbox (no `site`: the parent sends the interpreter's `path`, so site-packages import
without the .pth files' start-up cost). stdin holds one `marshal`led dict (built in, unlike
`json`, whose import costs milliseconds): a per-run random `nonce`, the test module (`prelude`:
imports, setup code, helpers, HumanEval's `check`, pytest-style `test_*` functions), the code
of each test (`tests`: an MBPP assert, `check(entry_point)`, a `__r1pipe_call__("test_x")`
call), the seconds each may take and the modules the tests import. The tests never touch the
disk, and stdin is read to its end before the program runs, so a program cannot read them.

Order: the test modules are imported and every piece of test code compiled first; then the
program runs as module `solution` (importable by `from solution import ...`); then the
prelude and each test run in a namespace that copies the program's names but has builtins of
its own. After the last test, one line on file descriptor 1 says what happened:
`MARK + nonce + " " + one character per test` (1 passed, 0 failed, t timed out). The parent
trusts only that line, checked against the nonce it sent, so a solution passes only if the
test code ran to its end: `sys.exit(0)` or `os._exit(0)` before or during the tests, an early
exit of the test code itself, a printed "all tests passed", overriding `check` or patching
builtins all leave no valid line, or a line of failures.

The program never learns the nonce. It lives in a local variable of `main`, and an audit
hook installed before the program runs refuses what reaches another frame's variables or
arbitrary objects: `sys._getframe` (as ValueError, which `typing`, `collections` and
`logging` expect), `sys._current_frames`, frame attributes of tracebacks, generators and
coroutines, trace and profile functions, `gc`'s object walks, new audit hooks, `ctypes`,
and starting other programs; `signal` is a copy of `_signal` whose `signal` refuses
(handlers get the current frame), and the launcher lays an empty tmpfs over /proc (no
/proc/self/mem). The harness and the tests use private copies of the builtins and the
harness's own references to what it calls, so patching `builtins`, `os` or `sys` changes
neither, and each test starts with the attributes of the modules the tests import restored.

What stays possible (see docs/code-reasoning.md): a function returning an object whose
`__eq__` always says True; patching, during a test, a module the test uses later in that
test; and rebuilding the signal module through the interpreter's import internals
(`_imp.create_builtin`) to reach the harness's frame. Audit hooks are not a security
boundary: the namespaces are; these checks keep a score honest, not the machine safe.

Standard library only, and nothing from r1pipe: the sandbox hides everything but the
interpreter.
"""

import builtins as _builtins_module
import sys as _sys

_builtins_module.exit = _builtins_module.quit = _sys.exit  # what `site` would add (-S)
_HARNESS_BUILTINS = dict(_builtins_module.__dict__)
__builtins__ = _HARNESS_BUILTINS  # functions defined below look builtins up here
_TEST_BUILTINS = dict(_builtins_module.__dict__)

import _signal  # noqa: E402  (after the private builtins; `signal` would import enum)
import marshal as _marshal  # noqa: E402
import os as _os  # noqa: E402
import types as _types  # noqa: E402, F401  (its import reads a traceback's tb_frame: not later)

MARK = "\x1er1pipe-asserts "
_write, _read, _exit = _os.write, _os.read, _os._exit
_setitimer, _ITIMER_REAL, _SIGALRM = _signal.setitimer, _signal.ITIMER_REAL, _signal.SIGALRM
_modules, _stderr = _sys.modules, _sys.stderr
_BLOCKED = frozenset({
    "sys._current_frames", "sys.settrace", "sys.setprofile", "sys._setprofileallthreads",
    "sys._settraceallthreads", "sys.addaudithook", "gc.get_objects", "gc.get_referrers",
    "gc.get_referents", "os.exec", "os.posix_spawn", "os.spawn", "os.system",
    "subprocess.Popen", "os.forkpty", "pty.spawn", "sys.remote_exec",
})
_FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame", "f_back"})
_BLOCKED_IMPORTS = frozenset({"ctypes", "_ctypes", "_signal", "_testcapi",
                              "_testinternalcapi", "_xxsubinterpreters", "faulthandler"})


def _audit(event, args):
    """Refuses what would let the program reach the harness's frame (see the module doc)."""
    if event == "sys._getframe":
        raise ValueError("call stack is not deep enough")  # what callers catch
    if event in _BLOCKED or event.startswith("ctypes."):
        raise RuntimeError(f"{event} is not allowed in the test sandbox")
    if event == "object.__getattr__" and args[1] in _FRAME_ATTRIBUTES:
        raise RuntimeError(f"{args[1]} is not allowed in the test sandbox")
    if event == "import" and args[0].partition(".")[0] in _BLOCKED_IMPORTS:
        raise ImportError(f"module {args[0]} is not allowed in the test sandbox")


def _refuse_signals(*args, **kwargs):
    raise RuntimeError("signal handlers are not allowed in the test sandbox")


def _on_alarm(signum, frame):
    raise TimeoutError("test timed out")


def _read_stdin():
    chunks = []
    while True:
        chunk = _read(0, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _parametrized(func):
    """Keyword arguments of each call of a pytest-style test: the product of its
    `@pytest.mark.parametrize` marks (read off `pytestmark`, so pytest is not needed)."""
    calls = [{}]
    for mark in reversed(getattr(func, "pytestmark", None) or []):
        if getattr(mark, "name", None) != "parametrize":
            continue
        names, values = mark.args[0], mark.args[1]
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        rows = []
        for value in values:
            if type(value).__name__ == "ParameterSet":  # pytest.param(...)
                value = value.values if len(names) > 1 else value.values[0]
            rows.append({names[0]: value} if len(names) == 1 else dict(zip(names, value, strict=False)))
        calls = [{**call, **row} for call in calls for row in rows]
    return calls


def _call_test(namespace):
    """`__r1pipe_call__("test_x")` / `("TestCase.test_x")`: one pytest-style test, every
    parametrized case of it, with the setup/teardown hooks pytest would call."""

    def call(name):
        owner, _, attr = name.rpartition(".")
        instance = namespace[owner]() if owner else None
        func = getattr(instance, attr) if owner else namespace[name]
        setup = (getattr(instance, "setup_method", None) if owner
                 else namespace.get("setup_function"))
        teardown = (getattr(instance, "teardown_method", None) if owner
                    else namespace.get("teardown_function"))
        for kwargs in _parametrized(func):
            if setup is not None:
                setup(func)
            try:
                func(**kwargs)
            finally:
                if teardown is not None:
                    teardown(func)

    return call


def _restore(saved):
    """The test modules as imported before the program ran: entries and attributes."""
    for name, (module, attributes) in saved.items():
        _modules[name] = module
        if name in ("sys", "builtins"):
            continue
        try:
            module.__dict__.clear()
            module.__dict__.update(attributes)
        except (AttributeError, TypeError):
            continue


def _timed(code, namespace, seconds):
    """exec under a wall-clock alarm: '1' it ran to its end, 't' it timed out, '0' else."""
    _setitimer(_ITIMER_REAL, seconds)
    try:
        exec(code, namespace)
        verdict = "1"
    except TimeoutError:
        verdict = "t"
    except BaseException as exc:  # noqa: BLE001 - SystemExit and all: the test did not finish
        verdict = "0"
        try:  # noqa: SIM105 - no contextlib: the program could patch it
            _stderr.write(f"{type(exc).__name__}: {exc}\n"[:2000])
        except BaseException:  # noqa: BLE001 - a hostile __str__
            pass
    finally:
        _setitimer(_ITIMER_REAL, 0)
    return verdict


def main():
    payload = _marshal.loads(_read_stdin())
    nonce, per_test = payload["nonce"], float(payload["timeout"])
    _sys.path[:] = [p for p in payload["path"] if p not in _sys.path] + _sys.path
    saved = {}
    for name in payload["imports"]:
        try:
            __import__(name)
            module = _modules[name]
            saved[name] = (module, dict(module.__dict__))
        except BaseException:  # noqa: BLE001 - the test module's import fails the tests
            continue
    prelude = compile(payload["prelude"], "<tests>", "exec")
    tests = [compile(code, f"<test {i}>", "exec") for i, code in enumerate(payload["tests"])]
    del payload
    with open("main.py", encoding="utf-8") as f:
        program = compile(f.read(), "main.py", "exec")
    solution = type(_sys)("solution")
    solution.__file__ = "main.py"
    _modules["solution"] = solution
    _modules["__main__"] = solution
    _signal.signal(_SIGALRM, _on_alarm)
    shim = type(_sys)("signal")  # `import signal` works (unittest, pytest), handlers do not
    shim.__dict__.update({k: v for k, v in _signal.__dict__.items() if not k.startswith("__")})
    for module in (_signal, _modules.get("signal"), shim):
        if module is not None:
            module.signal = _refuse_signals
    for name in [n for n in _modules if n.partition(".")[0] in _BLOCKED_IMPORTS]:
        _modules.pop(name)  # the launcher's ctypes too: this runs in its process
    _modules["signal"] = shim
    _sys.stdout = _stderr  # the program's prints: fd 1 carries the verdict line only
    _sys.addaudithook(_audit)
    ran = _timed(program, solution.__dict__, per_test)
    verdicts = [ran] * len(tests)
    if ran == "1":
        namespace = dict(solution.__dict__)
        namespace.update(__builtins__=_TEST_BUILTINS, __name__="__r1pipe_tests__")
        namespace["__r1pipe_call__"] = _call_test(namespace)
        _restore(saved)
        ran = _timed(prelude, namespace, per_test)
        for i, code in enumerate(tests):
            if ran == "1":
                _restore(saved)
                verdicts[i] = _timed(code, namespace, per_test)
            else:
                verdicts[i] = ran  # the test module itself failed: no test can pass
    line = "\n" + MARK + nonce + " " + "".join(verdicts) + "\n"
    _write(1, line.encode())
    try:  # noqa: SIM105 - no contextlib: the program could patch it
        _stderr.flush()
    except BaseException:  # noqa: BLE001 - a program that broke stderr
        pass
    _exit(0)


if __name__ == "__main__":
    main()
