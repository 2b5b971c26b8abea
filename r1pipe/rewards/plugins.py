"""Rewards from outside r1pipe: `reward: "my_pkg.rewards:my_func"` in a `rewards:` section.

The target is any callable with TRL's reward signature, `f(prompts, completions,
completion_ids, **columns) -> list[float | None]`, or a class (an r1pipe `RewardFunc`
dataclass, or any class whose instances are such callables) which is instantiated with the
entry's parameters. A plain function takes no parameters: its settings live in its code, or
it becomes a class.

Checked when the configuration is validated: the module must import and the attribute be
callable, so a typo fails before a run starts, not at its first reward call.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any

from r1pipe.rewards.base import RewardFunc, Score, TRLReward

SPEC_HELP = ("give 'package.module:attribute', where the module is importable (installed, or "
             "on PYTHONPATH) and the attribute is a reward function f(prompts, completions, "
             "**columns) -> list[float] or a reward class")


def is_plugin(reward: Any) -> bool:
    """Whether a `reward:` value names an importable object rather than a registered reward."""
    return isinstance(reward, str) and ":" in reward


def load_plugin(reward: str) -> tuple[Any, str | None]:
    """(the object `module:attr` names, None), or (None, why it cannot be used)."""
    module_name, _, attr = reward.partition(":")
    module_name, attr = module_name.strip(), attr.strip()
    if not module_name or not attr:
        return None, f"{reward!r} is not 'module:attribute'; {SPEC_HELP}"
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing to import
        return None, (f"cannot import module {module_name!r} ({type(exc).__name__}: {exc}); "
                      f"{SPEC_HELP}")
    for part in attr.split("."):
        if not hasattr(target, part):
            return None, f"module {module_name!r} has no attribute {attr!r}; {SPEC_HELP}"
        target = getattr(target, part)
    if not callable(target):
        return None, (f"{reward!r} is a {type(target).__name__}, not callable; {SPEC_HELP}")
    return target, None


def plugin_params(target: Any) -> dict[str, tuple[Any, Any]]:
    """Parameter name -> (annotation, default) a plugin takes: a dataclass's fields, a
    class's constructor arguments, nothing for a function."""
    if not isinstance(target, type):
        return {}
    if dataclasses.is_dataclass(target):
        try:
            hints = typing.get_type_hints(target)
        except Exception:  # unresolvable annotations: accept any value
            hints = {}
        out = {}
        for f in dataclasses.fields(target):
            if not f.init or f.name.startswith("_"):
                continue
            default = (f.default if f.default is not dataclasses.MISSING else
                       f.default_factory() if f.default_factory is not dataclasses.MISSING
                       else None)
            out[f.name] = (hints.get(f.name, Any), default)
        return out
    out = {}
    for name, param in inspect.signature(target).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is param.empty or isinstance(
            param.annotation, str) else param.annotation
        out[name] = (annotation, None if param.default is param.empty else param.default)
    return out


def default_task_types(target: Any) -> tuple[str, ...] | None:
    """Sample types a plugin scores by default: a RewardFunc's own default, else all."""
    if isinstance(target, type) and issubclass(target, RewardFunc):
        return target.default_task_types
    return None


def instantiate(target: Any, params: dict[str, Any]) -> tuple[Any, list[str]]:
    """(the reward callable, problems): a class is instantiated with `params`; a function is
    used as it is and takes none."""
    if not isinstance(target, type):
        if params:
            return None, [f"a plain function takes no parameters (got {', '.join(params)}); "
                          "make it a class (a RewardFunc dataclass) to configure it"]
        return target, []
    try:
        instance = target(**params)
    except Exception as exc:
        return None, [f"{target.__name__}({', '.join(params)}) failed: "
                      f"{type(exc).__name__}: {exc}"]
    if not callable(instance):
        return None, [f"instances of {target.__name__} are not callable; a reward class "
                      "needs __call__(prompts, completions, **columns)"]
    problems = getattr(instance, "problems", None)
    return instance, list(problems()) if callable(problems) else []


@dataclasses.dataclass
class PluginReward(TRLReward):
    """A plugin callable under its YAML key's name (TRL logs `rewards/<key>`), left
    untouched: one function may serve under several keys. Pickles when the function is
    importable by name, as TRL's rollout workers need."""

    func: Callable[..., Sequence[Score]]
    name: str

    def __post_init__(self) -> None:
        self.__name__ = self.name

    def score_call(self, prompts: Sequence[Any] | None, completions: Sequence[Any] | None,
                   completion_ids: Sequence[Any] | None, columns: dict[str, Any]
                   ) -> list[Score]:
        return list(self.func(prompts=prompts, completions=completions,
                              completion_ids=completion_ids, **columns))
