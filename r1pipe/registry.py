"""Which stages exist: the six of the R1 recipe, plus any a pipeline or a test registers.

A stage is a module (or any object) that follows `r1pipe.contract.Stage`: `NAME`, `Config`
(a `StageConfig` subclass) and `run(ctx) -> StageResult`. Stages are looked up by their YAML
key (`r1_zero`); the CLI spells them with dashes (`r1-zero`). The recipe's own are listed
once, in `r1pipe.stages.RECIPE`; modules are imported on first use, so listing stages costs
nothing and `r1pipe --help` stays instant.
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from r1pipe.stages import RECIPE

__all__ = ["RECIPE", "StageNotAvailable", "StageSpec", "key", "known_names", "lookup",
           "register_module", "unregister"]


@dataclass(frozen=True)
class StageSpec:
    name: str
    config_class: Any  # type[StageConfig]
    run: Callable[[Any], Any]
    module: str | None  # importable module, so a child process (accelerate launch) finds it


_registered: dict[str, StageSpec] = {}


class StageNotAvailable(LookupError):
    """A recipe stage whose module is not part of this installation."""


def key(name: str) -> str:
    """`reject-sample` and `reject_sample` are the same stage."""
    return name.replace("-", "_")


def register_module(module: ModuleType | str) -> StageSpec:
    """Register a stage module (object or importable name) that follows the stage contract."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    for attr in ("NAME", "Config", "run"):
        if not hasattr(mod, attr):
            raise TypeError(f"stage module {mod.__name__} has no `{attr}`; a stage module "
                            "defines NAME, Config (a StageConfig) and run(ctx)")
    spec = StageSpec(key(mod.NAME), mod.Config, mod.run, mod.__name__)
    _registered[spec.name] = spec
    return spec


class StageModuleError(ValueError):
    """A `stage_modules:` entry that is not an importable stage module."""


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def check_stage_module(name: object) -> None:
    """Check a `stage_modules:` entry by its source, without running it: a dotted module
    name that exists on the import path and defines `NAME`, `Config` and `run` at top level.

    Only a module that passes is imported (to validate its stage's section), so a pipeline
    naming `os`, `this` or any installed module cannot make `validate` run its import-time
    code. Parent packages are located, not imported (their `__init__` does not run either).
    """
    if not isinstance(name, str) or not _MODULE_NAME.fullmatch(name):
        raise StageModuleError(f"{name!r} is not a module name; give a dotted import path "
                               "such as my_pkg.my_stage")
    if name in sys.modules:
        module = sys.modules[name]
        missing = [a for a in _CONTRACT if not hasattr(module, a)]
        source_path = getattr(module, "__file__", None)
    else:
        spec = _find_spec(name)
        if spec is None:
            raise StageModuleError(f"module {name!r} is not found on the import path "
                                   f"(sys.path); install it or add its folder to PYTHONPATH")
        source_path = spec.origin
        if not source_path or not source_path.endswith(".py"):
            raise StageModuleError(f"module {name!r} is not a Python source file "
                                   f"({source_path}); a stage module is a .py file")
        missing = _undefined_names(Path(source_path))
    if missing:
        raise StageModuleError(
            f"module {name!r} ({source_path}) is not a stage module: it does not define "
            f"{', '.join(missing)} at top level (a stage module defines NAME, Config and "
            "run(ctx); see docs/architecture.md, 'Adding a stage')")


_CONTRACT = ("NAME", "Config", "run")


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Locate `a.b.c` through the path finders alone: no package `__init__` is executed."""
    import importlib.machinery

    parts = name.split(".")
    search: list[str] | None = None
    spec = None
    for depth in range(1, len(parts) + 1):
        spec = importlib.machinery.PathFinder.find_spec(".".join(parts[:depth]), search)
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
        if depth < len(parts) and not search:
            return None  # `a.b` where `a` is a module, not a package
    return spec


def _undefined_names(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise StageModuleError(f"cannot read stage module {path}: {exc}") from None
    defined: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Assign):
            defined.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            defined.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.Import):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return [a for a in _CONTRACT if a not in defined]


def lookup(name: str) -> StageSpec | None:
    """The stage registered or shipped under `name`, or None if there is no such stage."""
    name = key(name)
    if name in _registered:
        return _registered[name]
    entry = RECIPE.get(name)
    if entry is None:
        return None
    module = entry.module
    try:
        return register_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        raise StageNotAvailable(
            f"stage {name!r} is part of the R1 recipe but not in this version of r1pipe "
            f"(module {module} is missing); remove it from `stages:` or upgrade r1pipe"
        ) from None


def known_names() -> list[str]:
    return list(dict.fromkeys([*RECIPE, *_registered]))


def unregister(name: str) -> None:
    """Forget a registered stage (tests register their own stages)."""
    _registered.pop(key(name), None)
