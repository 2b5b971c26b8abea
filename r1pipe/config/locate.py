"""Error locations and suggestions: key paths (pydantic's, or the checks') turned into
`file:line: key.path: message`, and the nearest valid key for a typo."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from r1pipe.config.errors import ConfigError, ConfigErrors
from r1pipe.config.reader import LineMap


def nearest(word: str, options: list[str]) -> str | None:
    hits = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return hits[0] if hits else None


class Locator:
    """Turns key paths into `file:line: key.path: message` errors."""

    def __init__(self, file: str, lines: LineMap, overridden: set[tuple[str, ...]]) -> None:
        self.file = file
        self.lines = lines
        self.overridden = overridden

    def error(self, message: str, key_path: tuple[str, ...]) -> ConfigError:
        key = ".".join(key_path) or None
        if any(path[:len(key_path)] == tuple(key_path) for path in self.overridden):
            # the key exists only because an override put it (or something under it) there
            return ConfigError(message, file="<command line override>", key=key)
        for n in range(len(key_path), 0, -1):
            prefix = tuple(key_path[:n])
            if prefix in self.overridden:
                return ConfigError(message, file="<command line override>", key=key)
            if prefix in self.lines:
                return ConfigError(message, file=self.file, line=self.lines[prefix], key=key)
        return ConfigError(message, file=self.file, key=key)

    def from_validation(self, exc: ValidationError, model: type[BaseModel],
                        prefix: tuple[str, ...]) -> ConfigError:
        """Every problem pydantic found, one `ConfigError` each (a `ConfigErrors` when
        there are several)."""
        return ConfigErrors.of(self.all_from_validation(exc, model, prefix))

    def all_from_validation(self, exc: ValidationError, model: type[BaseModel],
                            prefix: tuple[str, ...]) -> list[ConfigError]:
        """One `ConfigError` per pydantic error; a union whose every member failed gives
        several errors at one key path, of which the first one stands for the key."""
        out: dict[tuple[str, ...], ConfigError] = {}
        for err in exc.errors():
            key_path, error = self._one_validation_error(err, model, prefix)
            out.setdefault(key_path, error)
        # `source: {typo: 1}` against `DataSourceConfig | str` fails both members: the
        # complaint about the key inside says more than "should be a valid string" above it
        return [e for path, e in out.items()
                if not any(len(o) > len(path) and o[:len(path)] == path for o in out)]

    def _yaml_loc(self, loc: tuple[str, ...], prefix: tuple[str, ...], *, keep_last: bool
                  ) -> tuple[str, ...]:
        """The YAML keys of a pydantic error location. Pydantic adds union members' names
        ("str", "ModelSpec", "function-before[...]") to it; those are dropped, but a segment
        the file or an override has at that place is a key whatever it looks like (`Foo`,
        `"[]"`, `"[/red]"`), and so is the last one of an unknown or missing key."""
        kept: list[str] = []
        for i, part in enumerate(loc):
            here = (*prefix, *kept, part)
            if (here in self.lines or (keep_last and i == len(loc) - 1)
                    or any(path[:len(here)] == here for path in self.overridden)
                    or not _is_pydantic_tag(part)):
                kept.append(part)
        return tuple(kept)

    def _one_validation_error(self, err: Any, model: type[BaseModel], prefix: tuple[str, ...]
                              ) -> tuple[tuple[str, ...], ConfigError]:
        loc = self._yaml_loc(tuple(str(p) for p in err["loc"]), prefix,
                             keep_last=err["type"] in ("extra_forbidden", "missing"))
        key_path = (*prefix, *loc)
        if err["type"] == "extra_forbidden":
            options = _fields_at(model, loc[:-1])
            hint = nearest(loc[-1], options) if options else None
            msg = f"unknown key {loc[-1]!r}" + (
                f"; did you mean {hint!r}?" if hint else
                (f"; valid keys: {', '.join(sorted(options))}" if options else ""))
        elif err["type"] == "missing":
            msg = f"required key {loc[-1]!r} is missing"
        else:
            value = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if not isinstance(value, (dict, list)):
                msg += f" (got {value!r})"
            elif err["type"].endswith(("_type", "_parsing")):  # a mapping where a value goes
                msg += f" (got a {'mapping' if isinstance(value, dict) else 'list'})"
        return key_path, self.error(msg, key_path)


def _is_pydantic_tag(part: str) -> bool:
    return part[:1].isupper() or "[" in part or part in {"str", "int", "float", "bool", "list",
                                                          "dict", "none", "function-after",
                                                          "function-before", "function-plain",
                                                          "function-wrap", "literal"}


def _fields_at(model: Any, loc: tuple[str, ...]) -> list[str]:
    """Valid keys of the model found by walking `loc` down from `model`."""
    current: Any = model
    for part in loc:
        current = _descend(current, part)
        if current is None:
            return []
    candidates = _models_in(current)
    names: list[str] = []
    for cand in candidates:
        for name, field in cand.model_fields.items():
            names.append(field.alias or name)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_models_in(arg))
    return out


def _descend(annotation: Any, part: str) -> Any:
    for model in _models_in(annotation):
        for name, field in model.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
    origin = get_origin(annotation)
    if origin in (dict, list, typing.Union, types.UnionType) or origin is not None:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if origin is dict and len(args) == 2:
            return args[1]
        if origin is list and args:
            return args[0]
        for arg in args:
            found = _descend(arg, part)
            if found is not None:
                return found
    return None
