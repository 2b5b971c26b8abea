"""Test cases of code problems, read from the columns the public code datasets ship.

Two layouts:

- open-r1's `verification_info` (a dict, or that dict as a JSON string):
  `{"language": "python", "test_cases": [{"type": "stdin_stdout", "input": "...",
  "output": "..."}]}`; a `func_name` in it (or in a test) names the function functional
  tests call.
- LiveCodeBench's `public_test_cases` / `private_test_cases` (JSON strings of
  `[{"input", "output", "testtype": "stdin" | "functional"}]`) with `func_name` in the
  `metadata` JSON. LiveCodeBench ships private tests compressed (base64 of zlib of a pickled
  JSON string); they are unpacked with an unpickler that builds plain strings only, so a
  crafted row cannot run code in the trainer.

- APPS / TACO's `input_output` (a JSON string of `{"inputs": [...], "outputs": [...]}`,
  with `fn_name` for call-based problems, whose expected value may be wrapped in a list).
- Assert-style test code, run in the program's own process (`CodeTest` kind `assert`):
  HumanEval's `test` (a `def check(candidate)`) with `entry_point` and the program appended
  to the `prompt`; MBPP's `test_list` of asserts with `test_setup_code` / `test_imports`;
  pytest-style `test` code (KodCode) whose `test_*` functions `from solution import ...`;
  any other `test` code is one test that passes when it runs to its end.

`TestSpec` is the `tests:` parameter of the `code` reward: the layout (`auto` finds it by
column names, in the order above) and the column names, for a dataset that spells them its
own way. Only Python is run: any other `language` raises `UnsupportedLanguage` (a ValueError).
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import pickle
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from r1pipe.sandbox import CodeTest

PYTHON_NAMES = frozenset({"python", "python3", "py", "py3", "python 3"})
_STDIN_TYPES = frozenset({"stdin_stdout", "stdin", "stdio", "io"})
_CALL_TYPES = frozenset({"functional", "function_call", "call", "call_based"})


class UnsupportedLanguage(ValueError):
    """A sample's tests are for a language the sandbox does not run."""


class BadTests(ValueError):
    """A sample's test data cannot be read (malformed JSON, wrong shapes)."""


class _StringsOnly(pickle.Unpickler):
    """Unpickles str/bytes/numbers/lists/dicts only: any class or function is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _livecodebench_compressed(text: str) -> Any:
    raw = zlib.decompress(base64.b64decode(text, validate=True))
    value = _StringsOnly(io.BytesIO(raw)).load()
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def load_field(value: Any) -> Any:
    """A column value as data: JSON strings parsed (LiveCodeBench's compressed form too)."""
    if not isinstance(value, (str, bytes)):
        return value
    text = value.decode() if isinstance(value, bytes) else value
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return _livecodebench_compressed(text)
    except (ValueError, binascii.Error, zlib.error, pickle.UnpicklingError, EOFError,
            TypeError) as exc:
        raise BadTests(f"neither JSON nor LiveCodeBench's compressed tests: {text[:80]!r}") \
            from exc


def is_python(language: Any) -> bool:
    """Whether a dataset's language field names Python (missing counts as Python)."""
    return language is None or str(language).strip().lower() in PYTHON_NAMES


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "\n".join(value)
    return json.dumps(value)


def _case(raw: Any, func_name: str | None) -> CodeTest:
    if not isinstance(raw, Mapping) or "input" not in raw or "output" not in raw:
        raise BadTests(f"a test case needs `input` and `output`, got {str(raw)[:120]!r}")
    kind = str(raw.get("type") or raw.get("testtype") or "stdin_stdout").lower()
    name = raw.get("func_name") or raw.get("fn_name") or func_name
    if kind in _CALL_TYPES:
        if not name:
            raise BadTests("a functional test needs `func_name` (in the test, the "
                           "verification info, or LiveCodeBench's metadata)")
        return CodeTest(_text(raw["input"]), _text(raw["output"]), "functional", str(name))
    if kind not in _STDIN_TYPES:
        raise BadTests(f"unknown test type {kind!r}; known: stdin_stdout, stdin, functional")
    return CodeTest(_text(raw["input"]), _text(raw["output"]), "stdin")


def _func_name(metadata: Any) -> str | None:
    data = load_field(metadata)
    if isinstance(data, Mapping):
        name = data.get("func_name") or data.get("fn_name")
        return str(name) if name else None
    return None


def tests_from_verification_info(info: Any, metadata: Any = None) -> tuple[str, list[CodeTest]]:
    """(language, tests) from an open-r1 `verification_info` value."""
    data = load_field(info)
    if not isinstance(data, Mapping):
        raise BadTests(f"verification_info must be a mapping, got {type(data).__name__}")
    language = data.get("language")
    language = "python" if language is None else str(language)
    if not is_python(language):
        return language, []
    cases = data.get("test_cases")
    if cases is None:
        cases = data.get("tests")
    cases = load_field(cases)
    if not isinstance(cases, list):
        raise BadTests("verification_info.test_cases must be a list of test cases")
    func_name = data.get("func_name") or data.get("fn_name") or _func_name(metadata)
    return language, [_case(case, func_name) for case in cases]


def tests_from_livecodebench(public: Any, private: Any, metadata: Any) -> list[CodeTest]:
    """Tests from LiveCodeBench's `public_test_cases` and `private_test_cases` columns."""
    func_name = _func_name(metadata)
    out: list[CodeTest] = []
    for value in (public, private):
        cases = load_field(value)
        if cases is None:
            continue
        if not isinstance(cases, list):
            raise BadTests("LiveCodeBench test cases must be a JSON list")
        out.extend(_case(case, func_name) for case in cases)
    return out


# ---------------------------------------------------------------------------------------
# APPS / TACO and assert-style layouts
# ---------------------------------------------------------------------------------------

LAYOUTS = ("auto", "verification_info", "livecodebench", "input_output", "assert")
ASSERT_STYLES = ("auto", "check", "pytest", "script")


@dataclass(frozen=True)
class TestSpec:
    """The `tests:` parameter: which layout the tests are in and the columns holding them.

    `layout: auto` takes the first layout whose column has a value (open-r1's
    `verification_info`, LiveCodeBench's test cases, `input_output`, `test_list`, `test`).
    `style` (assert layout) says how `test` code is run: `check` calls `check(<entry
    point>)` (HumanEval), `pytest` calls each `test_*` function, `script` runs the code as
    one test; `auto` picks by what the code defines. `prompt` names the column of code the
    program is appended to (HumanEval's signature and docstring); by default `code_prompt`,
    else `prompt` when it is Python that defines the entry point.
    """

    __test__ = False  # a name pytest would collect: not a test class

    layout: str = "auto"
    test: str = "test"
    entry_point: str = "entry_point"
    test_list: str = "test_list"
    setup: str = "test_setup_code"
    imports: str = "test_imports"
    prompt: str | None = None
    input_output: str = "input_output"
    style: str = "auto"

    @classmethod
    def parse(cls, value: Mapping[str, Any] | None) -> TestSpec:
        """From the YAML mapping (unknown keys and wrong values: `problems`)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: str(v) for k, v in (value or {}).items() if k in known})

    @staticmethod
    def problems(value: Mapping[str, Any] | None) -> list[str]:
        """Errors in a `tests:` mapping, each naming the key and the fix."""
        if value is None:
            return []
        known = [f.name for f in fields(TestSpec)]
        out = [f"tests.{k}: unknown key; known: {', '.join(known)}" for k in value
               if k not in known]
        out += [f"tests.{k}: expected a column name, got {v!r}" for k, v in value.items()
                if k in known and not (isinstance(v, str) and v.strip())]
        if value.get("layout", "auto") not in LAYOUTS:
            out.append(f"tests.layout: {value.get('layout')!r} is not one of "
                       f"{', '.join(LAYOUTS)}")
        if value.get("style", "auto") not in ASSERT_STYLES:
            out.append(f"tests.style: {value.get('style')!r} is not one of "
                       f"{', '.join(ASSERT_STYLES)}")
        return out

    def columns(self) -> tuple[str, ...]:
        """The columns this spec reads tests from (not the prompt)."""
        return (self.input_output, self.test_list, self.test)


def tests_from_input_output(value: Any) -> list[CodeTest]:
    """Tests from APPS / TACO's `input_output`: stdin/stdout, or calls of `fn_name`."""
    data = load_field(value)
    if not isinstance(data, Mapping):
        raise BadTests(f"input_output must be a mapping, got {type(data).__name__}")
    inputs, outputs = data.get("inputs"), data.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(
            outputs):
        raise BadTests("input_output needs `inputs` and `outputs` lists of the same length")
    name = data.get("fn_name")
    if not name:
        return [CodeTest(_text(i), _text(o), "stdin") for i, o in zip(inputs, outputs,
                                                                      strict=True)]
    out = []
    for args, expected in zip(inputs, outputs, strict=True):
        args = args if isinstance(args, list) else [args]
        out.append(CodeTest("\n".join(json.dumps(a) for a in args), json.dumps(expected),
                            "functional", str(name), unwrap=True))
    return out


def _code_lines(value: Any, what: str) -> list[str]:
    data = load_field(value) if isinstance(value, (str, bytes)) and value.strip()[:1] == "[" \
        else value
    if data is None:
        return []
    if isinstance(data, str):
        return [data]
    if isinstance(data, (list, tuple)) and all(isinstance(v, str) for v in data):
        return list(data)
    raise BadTests(f"{what} must be a list of code strings, got {str(data)[:120]!r}")


def mbpp_tests(test_list: Any, setup: Any = None, imports: Any = None) -> list[CodeTest]:
    """One assert test per entry of MBPP's `test_list`, after its imports and setup code."""
    asserts = [a for a in _code_lines(test_list, "test_list") if a.strip()]
    if not asserts:
        raise BadTests("test_list holds no assert")
    prelude = "\n".join([*_code_lines(imports, "test_imports"), *_code_lines(setup, "setup")])
    return [CodeTest(prelude + "\n", a, "assert") for a in asserts]


def _parse(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _parametrized_names(func: ast.FunctionDef) -> set[str]:
    names: set[str] = set()
    for decorator in func.decorator_list:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == "parametrize" and decorator.args
                and isinstance(decorator.args[0], ast.Constant)):
            given = decorator.args[0].value
            parts = given.split(",") if isinstance(given, str) else given
            names.update(str(n).strip() for n in parts)
    return names


def _needs_fixtures(func: ast.FunctionDef, method: bool) -> bool:
    args = [a.arg for a in func.args.posonlyargs + func.args.args][1 if method else 0:]
    required = args[:len(args) - len(func.args.defaults)] if func.args.defaults else args
    return bool(set(required) - _parametrized_names(func))


def pytest_names(tree: ast.Module) -> tuple[list[str], list[str]]:
    """(runnable, needing fixtures) pytest-style tests of a module: `test*` functions and
    `test*` methods of `Test*` classes, in order (async ones need a plugin: not run)."""
    runnable: list[str] = []
    fixtures: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            (fixtures if _needs_fixtures(node, False) else runnable).append(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                    name = f"{node.name}.{item.name}"
                    (fixtures if _needs_fixtures(item, True) else runnable).append(name)
    return runnable, fixtures


def assert_tests(code: Any, entry_point: Any = None, style: str = "auto") -> list[CodeTest]:
    """Tests from a `test` column: HumanEval's `check`, pytest-style functions, or a script."""
    if not isinstance(code, str) or not code.strip():
        raise BadTests("the test code is empty")
    tree = _parse(code)
    if tree is None:
        raise BadTests(f"the test code is not valid Python: {code[:80]!r}")
    defines = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    entry = str(entry_point).strip() if entry_point else ""
    if style == "check" or (style == "auto" and "check" in defines and entry):
        if not entry.isidentifier():
            raise BadTests(f"HumanEval-style tests need an entry point, got {entry_point!r}")
        return [CodeTest(code, f"check({entry})", "assert")]
    runnable, fixtures = pytest_names(tree)
    if style == "pytest" or (style == "auto" and (runnable or fixtures)):
        if not runnable:
            raise BadTests(f"no pytest-style test runs without fixtures ({', '.join(fixtures)} "
                           "take arguments that only pytest fixtures supply)")
        return [CodeTest(code, f"__r1pipe_call__({name!r})", "assert") for name in runnable]
    return [CodeTest("", code, "assert")]


def code_prefix(get: Callable[[str], Any], spec: TestSpec, entry_point: Any) -> str | None:
    """The code a HumanEval-style program is appended to: the signature and docstring."""
    if spec.prompt is not None:
        value = get(spec.prompt)
        return value if isinstance(value, str) and value.strip() else None
    value = get("code_prompt")
    if isinstance(value, str) and value.strip():
        return value
    value = get("prompt")
    if not (isinstance(value, str) and entry_point and f"def {entry_point}" in value):
        return None
    tree = _parse(value)
    if tree is None or not any(isinstance(n, ast.FunctionDef) and n.name == entry_point
                               for n in tree.body):
        return None
    return value


@dataclass(frozen=True)
class Problem:
    """A sample's tests, and the code its program is appended to (HumanEval's prompt)."""

    tests: list[CodeTest]
    prefix: str | None = None
    language: str = "python"


def read_problem(get: Callable[[str], Any], spec: TestSpec, *, verification_info: str,
                 public: str, private: str, metadata: str) -> Problem | None:
    """The tests of one sample in the layout `spec` names (or the first one found), None
    when it has none; `get(column)` is the sample's value of a column (None if absent)."""

    def present(column: str) -> bool:
        return get(column) not in (None, "", "[]")

    layout = spec.layout
    if layout in ("auto", "verification_info") and present(verification_info):
        language, tests = tests_from_verification_info(get(verification_info), get(metadata))
        return Problem(tests, language=language)
    if layout in ("auto", "livecodebench") and (present(public) or present(private)):
        return Problem(tests_from_livecodebench(get(public), get(private), get(metadata)))
    if layout in ("auto", "input_output") and present(spec.input_output):
        return Problem(tests_from_input_output(get(spec.input_output)))
    if layout in ("auto", "assert") and present(spec.test_list):
        return Problem(mbpp_tests(get(spec.test_list), get(spec.setup), get(spec.imports)))
    if layout in ("auto", "assert") and present(spec.test):
        entry = get(spec.entry_point)
        tests = assert_tests(get(spec.test), entry, spec.style)
        prefix = code_prefix(get, spec, entry) if tests[0].output.startswith("check(") else None
        return Problem(tests, prefix=prefix)
    return None
