"""Compose rewards: build TRL's reward functions and weights, route them, score offline.

GRPO's advantage (reward minus the group mean, over the group's std) stays TRL's job: r1pipe
hands `GRPOTrainer` one function per reward and `GRPOConfig.reward_weights`, and TRL sums
`weight * reward` with `nansum`, turning None into NaN. Routing therefore is returning None:
a reward wrapped in `Routed` scores only the samples whose `task_type` column it serves
("reasoning" samples get rule rewards, "general" ones model rewards, by default) and passes
only those to the wrapped reward, so a reward model never runs on samples it does not judge.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, completion_text
from r1pipe.rewards import plugins
from r1pipe.rewards.base import RewardFunc, Score, TRLReward
from r1pipe.rewards.registry import resolve_spec, reward_class, reward_params, reward_target

RewardFuncs = tuple[list[Callable[..., list[Score]]], list[float]]


@dataclass
class Routed(TRLReward):
    """A reward restricted to samples whose `task_type` is in `task_types` (None elsewhere).

    Samples without a `task_type` column, or with a null one, are scored by every reward.
    """

    inner: RewardFunc
    task_types: tuple[str, ...]

    def __post_init__(self) -> None:
        self.__name__ = self.inner.__name__

    def score_call(self, prompts: Sequence[Any] | None, completions: Sequence[Any] | None,
                   completion_ids: Sequence[Any] | None, kwargs: dict[str, Any]
                   ) -> list[Score]:
        completions = list(completions or [])
        n = len(completions)
        kinds = kwargs.get("task_type")
        if not isinstance(kinds, (list, tuple)) or len(kinds) != n:
            return self.inner(prompts, completions, completion_ids, **kwargs)
        keep = [i for i, kind in enumerate(kinds) if kind is None or kind in self.task_types]
        if len(keep) == n:
            return self.inner(prompts, completions, completion_ids, **kwargs)
        out: list[Score] = [None] * n
        if not keep:
            return out

        def pick(values: Any) -> Any:
            if isinstance(values, (list, tuple)) and len(values) == n:
                return [values[i] for i in keep]
            return values

        scored = self.inner(
            pick(list(prompts or [])) if prompts is not None else None,
            pick(completions),
            pick(list(completion_ids)) if completion_ids is not None else None,
            **{key: pick(value) for key, value in kwargs.items()},
        )
        for i, value in zip(keep, scored, strict=True):
            out[i] = value
        return out


class Prefixed:
    """A reward that scores `prefix + completion`: the part of the answer the prompt already
    wrote (`response_prefix`, e.g. "<think>") is part of the layout the rewards check."""

    def __init__(self, func: Callable[..., list[Score]], prefix: str) -> None:
        self.func = func
        self.prefix = prefix
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[Score]:
        whole = [self.prefix + c if isinstance(c, str) else
                 [{**m, "content": self.prefix + completion_text(m.get("content", ""))}
                  if i == 0 else m for i, m in enumerate(c)]
                 for c in (completions or [])]
        return self.func(prompts=prompts, completions=whole, **kwargs)


def build_reward_funcs(
    spec: Any,
    *,
    special_token: str = DEFAULT_SPECIAL_TOKEN,
    max_completion_length: int | None = None,
    route: bool = True,
) -> RewardFuncs:
    """Reward functions and weights for `GRPOTrainer(reward_funcs=...)` and
    `GRPOConfig(reward_weights=...)`, from a `rewards:` section.

    `special_token` (the cold-start separator) and `max_completion_length` (the trainer's)
    fill the parameters of the same meaning that the YAML leaves unset. `route=False` skips
    the task-type routing (every reward scores every sample). Raises ValueError listing
    every problem of the section.
    """
    entries, errors = resolve_spec(spec)
    if errors:
        raise ValueError("invalid rewards section:\n  " + "\n  ".join(errors))
    funcs: list[Callable[..., list[Score]]] = []
    weights: list[float] = []
    for entry in entries:
        params = dict(entry.params)
        known = reward_params(entry.reward)
        if "special_token" in known and "special_token" not in params:
            params["special_token"] = special_token
        if "max_length" in known and params.get("max_length") is None and entry.reward in (
            "cosine", "overlong"
        ):
            if max_completion_length is None:
                raise ValueError(f"rewards.{entry.name}.max_length: not set, and no "
                                 "max_completion_length was given to take it from")
            params["max_length"] = max_completion_length
        if plugins.is_plugin(entry.reward):
            func, problems = plugins.instantiate(reward_target(entry.reward), params)
        else:
            func = reward_class(entry.reward)(**params)
            problems = func.problems()
        if problems:
            raise ValueError(f"rewards.{entry.name}: " + "; ".join(problems))
        if isinstance(func, RewardFunc):
            func.__name__ = entry.name
        else:
            func = plugins.PluginReward(func, entry.name)
        funcs.append(Routed(func, entry.task_types) if route and entry.task_types else func)
        weights.append(entry.weight)
    return funcs, weights


@dataclass
class Scores:
    """What `score` returns: weighted totals and each reward's raw values per sample."""

    total: list[float]
    per_reward: dict[str, list[Score]]
    weights: dict[str, float]


def score(
    spec: Any,
    prompts: Sequence[Any],
    completions: Sequence[Any],
    /,
    *,
    special_token: str = DEFAULT_SPECIAL_TOKEN,
    max_completion_length: int | None = None,
    **columns: Any,
) -> Scores:
    """Score completions outside a trainer, exactly as TRL would: total = nansum(w * r).

    `spec` is a `rewards:` section or the `(funcs, weights)` pair `build_reward_funcs`
    returned (build once when scoring many batches). `columns` are the dataset columns
    (`answer`, `task`, `task_type`, ...) as lists, plus `completion_ids` if known. A sample
    no reward applies to totals 0.0, as in TRL. The first three are positional-only, so a
    dataset column named `spec`, `prompts` or `completions` (the code task has `spec`) is a
    column like any other.
    """
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], list):
        funcs, weights = spec
    else:
        funcs, weights = build_reward_funcs(
            spec, special_token=special_token, max_completion_length=max_completion_length
        )
    completion_ids = columns.pop("completion_ids", None)
    per_reward: dict[str, list[Score]] = {}
    totals = [0.0] * len(completions)
    for func, weight in zip(funcs, weights, strict=True):
        values = func(prompts=list(prompts), completions=list(completions),
                      completion_ids=completion_ids, **columns)
        name = getattr(func, "__name__", type(func).__name__)
        per_reward[name] = list(values)
        for i, value in enumerate(values):
            if value is not None and not math.isnan(value):
                totals[i] += weight * value
    names = [getattr(f, "__name__", type(f).__name__) for f in funcs]
    return Scores(total=totals, per_reward=per_reward, weights=dict(zip(names, weights, strict=True)))
