"""The fields of TRL's trainer configs, known without importing TRL.

`validate` checks each `trainer:` key against TRL's `GRPOConfig`, `SFTConfig` and
`RewardConfig`: is it a field, and is its value of the field's plain type. Importing those
dataclasses imports transformers and torch: 9-11 s of a 12 s `validate` of the smoke
pipeline, for names and types that change only when TRL or transformers is upgraded. So the
first use writes them to `<cache>/trl-fields/trl-<version>-transformers-<version>-v1.json`
(`r1pipe.models.default_cache_dir()`: `$R1PIPE_CACHE`, else `~/.cache/r1pipe`) and later
processes read that file. A file that is missing, unreadable, corrupt or from another
installed version, or a cache folder that cannot be written, falls back to the import: the
checks and their messages are the same, only slower.

The ranges r1pipe checks (`r1pipe.config.TRAINER_RANGES`) are its own table and need no TRL.
"""

from __future__ import annotations

import contextlib
import json
import re
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

TRAINER_CLASSES = ("GRPOConfig", "SFTConfig", "RewardConfig")
"""The TRL configs r1pipe's stages train with; all are stored on first use (one import)."""
LAYOUT = 1
"""Version of what a cache file holds: bump it when that changes, and old files are ignored."""

PLAIN_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str}

FieldTypes = dict[str, tuple[type, ...] | None]
"""Field name → its plain scalar types (None: a richer type, whose values are not checked)."""

_known: dict[str, FieldTypes] = {}  # this process's answers: read or imported once


def field_types(trainer_class: str) -> FieldTypes:
    """Every `__init__` field of TRL's `trainer_class` config with its plain types, from the
    cache when it holds the installed versions' fields, else by importing TRL (and storing
    them for the next process)."""
    if trainer_class not in _known:
        path = cache_file()
        stored = read_cache(path) if path is not None else None
        if stored is None or trainer_class not in stored:
            stored = {**(stored or {}), **from_trl(sorted({*TRAINER_CLASSES, trainer_class}))}
            if path is not None:
                write_cache(path, stored)
        _known.update(stored)
    return _known[trainer_class]


def from_trl(classes: list[str]) -> dict[str, FieldTypes]:
    """The fields of each TRL config class, read from the dataclasses (imports TRL)."""
    import dataclasses
    import typing

    import trl

    out: dict[str, FieldTypes] = {}
    for name in classes:
        cls = getattr(trl, name)
        hints = typing.get_type_hints(cls)
        out[name] = {f.name: plain_types(hints.get(f.name, Any)) for f in dataclasses.fields(cls)
                     if f.init}
    return out


def plain_types(annotation: Any) -> tuple[type, ...] | None:
    """Plain scalar types of a dataclass field (None when the type is richer than that)."""
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin in (Union, types.UnionType):
        out: list[type] = []
        for arg in args:
            if arg is type(None):
                continue
            sub = plain_types(arg)
            if sub is None:
                return None
            out.extend(sub)
        return tuple(out) or None
    if annotation in (int, float, bool, str):
        return (annotation,)
    return None


def versions() -> dict[str, str] | None:
    """The installed trl and transformers versions (package metadata: nothing is imported),
    or None when either is not installed (the import then says so)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return {"trl": version("trl"), "transformers": version("transformers")}
    except PackageNotFoundError:
        return None


def cache_file() -> Path | None:
    """The cache file of the installed versions (None: no versions to key it by)."""
    found = versions()
    if found is None:
        return None
    from r1pipe.models import default_cache_dir

    def safe(v: str) -> str:
        return re.sub(r"[^A-Za-z0-9._]", "_", v)

    name = f"trl-{safe(found['trl'])}-transformers-{safe(found['transformers'])}-v{LAYOUT}.json"
    return default_cache_dir() / "trl-fields" / name


def read_cache(path: Path) -> dict[str, FieldTypes] | None:
    """The classes stored in `path`, or None when it is missing, unreadable, not valid JSON,
    of another layout or versions, or holds a type name r1pipe does not know."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("layout") != LAYOUT or {k: data.get(k) for k in ("trl", "transformers")} \
                != versions():
            return None
        out: dict[str, FieldTypes] = {}
        for cls, fields in data["classes"].items():
            out[str(cls)] = {str(name): None if names is None else
                             tuple(PLAIN_TYPES[n] for n in names)
                             for name, names in fields.items()}
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def write_cache(path: Path, classes: dict[str, FieldTypes]) -> None:
    """Store `classes` in `path` atomically (a reader sees the old file or the new one); a
    cache that cannot be written is skipped: the next process imports TRL again."""
    from r1pipe.artifacts import atomic_write

    data = {"layout": LAYOUT, **(versions() or {}),
            "classes": {cls: {name: None if found is None else [t.__name__ for t in found]
                              for name, found in fields.items()}
                        for cls, fields in sorted(classes.items())}}
    with contextlib.suppress(OSError):
        atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
