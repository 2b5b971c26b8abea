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

Only Python is run: any other `language` raises `UnsupportedLanguage` (a ValueError).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import zlib
from collections.abc import Mapping
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
