"""Rewards by name, and the checking of a YAML `rewards:` section.

A section maps names to a weight or to a mapping of weight and parameters:

    rewards:
      accuracy: 1.0
      format: {weight: 0.1, variant: r1_zero}
      language: {weight: 0.2, target: auto}
      tags: {reward: format, variant: tag_count, weight: 0.05}   # same family, second name
      helpful: {reward: reward_model, model: ./rm, task_types: [general]}
      mine: {reward: "my_pkg.rewards:my_func", weight: 0.5}      # a plugin (see `plugins`)

The key is the name TRL logs (`rewards/<key>`); `reward:` picks the family when the key is
not itself a registered name, or names a plugin as "module:attribute". Reserved keys besides
the parameters: `weight` (default 1.0), `reward`, and `task_types` (which `task_type` values
the reward scores; `all` for every sample; by default rule rewards score "reasoning" samples
and model rewards "general" ones, plugin functions every sample).

Parameters are the fields of each reward's dataclass, so the schema lives in one place and
validation needs no import of torch, transformers or math-verify.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import numbers
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from r1pipe.rewards import plugins
from r1pipe.rewards.base import RewardFunc

REWARDS: dict[str, str] = {
    "accuracy": "r1pipe.rewards.accuracy:Accuracy",
    "format": "r1pipe.rewards.format:Format",
    "language": "r1pipe.rewards.language:LanguageConsistency",
    "cosine": "r1pipe.rewards.length:CosineLength",
    "overlong": "r1pipe.rewards.length:Overlong",
    "repetition": "r1pipe.rewards.length:Repetition",
    "reasoning_steps": "r1pipe.rewards.steps:ReasoningSteps",
    "code_block": "r1pipe.rewards.steps:CodeBlock",
    "code": "r1pipe.rewards.code:Code",
    "code_format": "r1pipe.rewards.code:CodeFormat",
    "reward_model": "r1pipe.rewards.model:RewardModel",
    "judge": "r1pipe.rewards.judge:Judge",
}
RESERVED = ("weight", "reward", "task_types")


@dataclass(frozen=True)
class RewardEntry:
    """One resolved line of a `rewards:` section."""

    name: str
    reward: str
    weight: float
    params: dict[str, Any]
    task_types: tuple[str, ...] | None
    """Sample types scored; None for all."""


def reward_class(reward: str) -> type[RewardFunc]:
    """The class registered under `reward` (imports its module, which is light)."""
    module, _, attr = REWARDS[reward].partition(":")
    return getattr(importlib.import_module(module), attr)


def reward_target(reward: str) -> Any:
    """What a `reward:` value names: a registered class, or a plugin's class or function.

    Raises ValueError for a plugin that cannot be loaded (`resolve_spec` reports it first).
    """
    if not plugins.is_plugin(reward):
        return reward_class(reward)
    target, problem = plugins.load_plugin(reward)
    if problem is not None:
        raise ValueError(f"reward {reward!r}: {problem}")
    return target


def available_rewards() -> dict[str, str]:
    """Registered reward names, each with the first line of its description."""
    out = {}
    for name in sorted(REWARDS):
        doc = (reward_class(name).__doc__ or "").strip()
        out[name] = " ".join(doc.split("\n\n")[0].split())
    return out


def reward_params(reward: str) -> dict[str, tuple[Any, Any]]:
    """Parameter name -> (type annotation, default) for a registered reward or a plugin."""
    if plugins.is_plugin(reward):
        return plugins.plugin_params(reward_target(reward))
    cls = reward_class(reward)
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out[f.name] = (hints[f.name], default)
    return out


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        inner = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and all(
            _matches(v, inner[0]) for v in value) if inner else isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping)
    return isinstance(value, annotation) if isinstance(annotation, type) else True


def _literal_hint(value: Any, annotation: Any) -> str:
    for option in (annotation, *typing.get_args(annotation)):
        if typing.get_origin(option) is Literal and isinstance(value, str):
            return _suggest(value, [str(a) for a in typing.get_args(option)])
    return ""


def _task_types(value: Any, path: str, errors: list[str]) -> tuple[str, ...] | None:
    if value == "all" or value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    errors.append(f"{path}.task_types: expected a list of sample types or 'all', got {value!r}")
    return None


def resolve_spec(spec: Any) -> tuple[list[RewardEntry], list[str]]:
    """Entries of a `rewards:` section and the errors found in it (paths like
    `rewards.format.variant`)."""
    errors: list[str] = []
    entries: list[RewardEntry] = []
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump()
    if not isinstance(spec, Mapping):
        return [], [f"rewards: expected a mapping of reward names to weights, got "
                    f"{type(spec).__name__}"]
    if not spec:
        errors.append("rewards: no reward given; name at least one of " + ", ".join(REWARDS))
    for key, value in spec.items():
        path = f"rewards.{key}"
        if not isinstance(key, str) or not key.isidentifier():
            errors.append(f"{path}: a reward name must be an identifier (it becomes the "
                          f"metric rewards/<name>)")
            continue
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, Mapping)):
            errors.append(f"{path}: expected a weight or a mapping, got {value!r}")
            continue
        body: dict[str, Any] = {"weight": value} if isinstance(value, numbers.Real) else dict(value)
        reward = body.pop("reward", key)
        where = f"{path}.reward" if "reward" in (value if isinstance(value, Mapping) else {}) else path
        target: Any = None
        if plugins.is_plugin(reward):
            target, problem = plugins.load_plugin(reward)
            if problem is not None:
                errors.append(f"{where}: {problem}")
                continue
            default_types = plugins.default_task_types(target)
        elif reward not in REWARDS:
            errors.append(f"{where}: unknown reward {reward!r}{_suggest(str(reward), list(REWARDS))}; "
                          f"available: {', '.join(sorted(REWARDS))}, or a plugin as "
                          f"'module:attribute'")
            continue
        else:
            default_types = reward_class(reward).default_task_types
        weight = body.pop("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            errors.append(f"{path}.weight: expected a number, got {weight!r}")
            continue
        task_types = _task_types(body.pop("task_types", default_types), path, errors)
        if target is not None and not isinstance(target, type):
            _, problems = plugins.instantiate(target, body)  # a function: no parameters
            errors.extend(f"{path}: {problem}" for problem in problems)
            entries.append(RewardEntry(name=key, reward=reward, weight=float(weight), params={},
                                       task_types=task_types))
            continue
        params = plugins.plugin_params(target) if target is not None else reward_params(reward)
        clean: dict[str, Any] = {}
        local: list[str] = []
        for name, given in body.items():
            if name not in params:
                local.append(f"{path}.{name}: unknown parameter of {reward!r}"
                             f"{_suggest(name, list(params) + list(RESERVED))}; "
                             f"known: {', '.join(sorted(list(params) + list(RESERVED)))}")
                continue
            annotation = params[name][0]
            if not _matches(given, annotation):
                local.append(f"{path}.{name}: expected {_type_name(annotation)}, got {given!r}"
                             f"{_literal_hint(given, annotation)}")
                continue
            clean[name] = list(given) if isinstance(given, tuple) else given
        if not local and target is not None:
            local.extend(f"{path}: {problem}" for problem in plugins.instantiate(target, clean)[1])
        elif not local:
            instance = reward_class(reward)(**clean)
            local.extend(f"{path}: {problem}" for problem in instance.problems())
        errors.extend(local)
        entries.append(RewardEntry(name=key, reward=reward, weight=float(weight), params=clean,
                                   task_types=task_types))
    return entries, errors


def validate_reward_spec(spec: Any) -> list[str]:
    """Errors in a `rewards:` section, each naming its key path; empty when it is valid.

    Cheap: imports no torch, transformers or math-verify, loads no model, calls no server.
    """
    return resolve_spec(spec)[1]
