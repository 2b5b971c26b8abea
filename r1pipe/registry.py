"""Which stages exist: the six of the R1 recipe, plus any a pipeline or a test registers.

A stage is a module (or any object) that follows `r1pipe.contract.Stage`: `NAME`, `Config`
(a `StageConfig` subclass) and `run(ctx) -> StageResult`. Stages are looked up by their YAML
key (`r1_zero`); the CLI spells them with dashes (`r1-zero`). The recipe's own are listed
once, in `r1pipe.stages.RECIPE`; modules are imported on first use, so listing stages costs
nothing and `r1pipe --help` stays instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
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


def import_stage_modules(names: list[str]) -> None:
    for name in names:
        register_module(name)


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
