"""`trainer:` mappings checked against TRL's config dataclasses (field names, types,
ranges, precision) at validate time, so a typo fails with a suggestion instead of deep
inside TRL after the model has loaded."""

from __future__ import annotations

from typing import Any

from r1pipe.config.errors import ConfigError
from r1pipe.config.locate import Locator, nearest
from r1pipe.config.stage import StageConfig


def trainer_fields(trainer_class: str) -> dict[str, tuple[type, ...] | None]:
    """Field name → plain types of TRL's `GRPOConfig`/`SFTConfig`/`RewardConfig`, from the
    per-version cache of `r1pipe.trl_fields` (TRL is imported only when the cache misses)."""
    from r1pipe.trl_fields import field_types

    return field_types(trainer_class)


BOTH_PRECISIONS = ("'bf16' and 'fp16' are both true; choose one, or leave both `auto` (bf16 "
                   "where this machine runs it natively, else float32 on a CPU, fp16 on a GPU)")


def trainer_problem(cls_name: str, settings: dict[str, Any]) -> tuple[str, str] | None:
    """The first setting TRL's `cls_name` config would reject, as (key, message), or None.

    One check for every `trainer:` mapping (a stage's, a reward model's, a student's), so a
    typo fails at `validate` with a suggestion instead of deep inside TRL after model loading.
    """
    if not settings:
        return None
    fields = trainer_fields(cls_name)
    from r1pipe.precision import AUTO, PRECISION_KEYS

    if all(settings.get(k) is True for k in PRECISION_KEYS):
        return "fp16", BOTH_PRECISIONS
    for key, value in settings.items():
        if key in PRECISION_KEYS and value == AUTO:
            continue  # settled per machine by r1pipe.precision
        if key not in fields:
            hint = nearest(key, list(fields))
            return key, (f"{key!r} is not a field of TRL's {cls_name}"
                         + (f"; did you mean {hint!r}?" if hint else ""))
        expected = fields[key]
        if expected is not None and value is not None and not _matches(value, expected):
            names = "/".join(t.__name__ for t in expected)
            return key, (f"{key!r} must be {names} for TRL's {cls_name}, got "
                         f"{type(value).__name__} {value!r}")
        problem = _out_of_range(key, value)
        if problem:
            return key, f"{key!r} {problem} (got {value!r})"
    return None


# Ranges of TRL/transformers trainer settings that their dataclasses leave unchecked until
# the trainer is built (after the model has loaded) or that fail mid-run: (low, high,
# low inclusive). One table, so a new entry covers every `trainer:` mapping.
TRAINER_RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "learning_rate": (0, None, True),
    "max_steps": (-1, None, True),  # -1: train by epochs
    "num_train_epochs": (0, None, False),
    "per_device_train_batch_size": (1, None, True),
    "per_device_eval_batch_size": (1, None, True),
    "gradient_accumulation_steps": (1, None, True),
    "warmup_ratio": (0, 1, True),
    "warmup_steps": (0, None, True),
    "weight_decay": (0, None, True),
    "max_grad_norm": (0, None, True),
    "seed": (0, 2**32 - 1, True),
    "data_seed": (0, 2**32 - 1, True),
    "logging_steps": (0, None, False),
    "save_steps": (0, None, False),
    "save_total_limit": (1, None, True),
    "beta": (0, None, True),
    "epsilon": (0, None, True),
    "temperature": (0, None, False),
    "top_p": (0, 1, False),
    "num_generations": (2, None, True),  # GRPO's advantage needs a group of two or more
    "max_completion_length": (1, None, True),
    "max_prompt_length": (1, None, True),
    "max_length": (1, None, True),
    "num_iterations": (1, None, True),
}


def _out_of_range(key: str, value: Any) -> str | None:
    import math

    bounds = TRAINER_RANGES.get(key)
    if bounds is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    low, high, inclusive = bounds
    if low is not None and (value < low if inclusive else value <= low):
        return f"must be {'at least' if inclusive else 'more than'} {low}"
    if high is not None and value > high:
        return f"must be at most {high}"
    return None


def check_trainer(section: StageConfig, locate: Locator, key_path: tuple[str, ...],
                   problems: list[ConfigError]) -> None:
    """Each `trainer:` key TRL would reject goes to `problems` (all of them, not the first)."""
    cls_name = section.trainer_config_class()
    if not section.trainer:
        return
    if cls_name is None:
        problems.append(locate.error("this stage trains nothing, so it takes no `trainer:` "
                                     "settings", (*key_path, "trainer")))
        return
    for name, value in section.trainer.items():
        problem = trainer_problem(cls_name, {name: value})
        if problem is not None:
            key, message = problem
            problems.append(locate.error(message, (*key_path, "trainer", key)))
    if section.trainer.get("bf16") is True and section.trainer.get("fp16") is True:
        problems.append(locate.error(BOTH_PRECISIONS, (*key_path, "trainer", "fp16")))


def _matches(value: Any, expected: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in expected
    if isinstance(value, int) and (int in expected or float in expected):
        return True
    return isinstance(value, expected)
