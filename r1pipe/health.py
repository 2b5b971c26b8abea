"""The training-health watch (`health:` of a stage): rules over the metrics the trainers
already log, checked as each step is logged, so "the reward never rises" is seen at step 20
and not hours later.

One place: `callback(ctx)` is a TrainerCallback every r1pipe trainer gets next to the
metrics callback, fed the same logs. A rule that fires with `action: warn` is printed and
recorded; with `action: stop` the trainer saves a checkpoint at that step and stops, and the
stage fails with a message naming the rule and the key to change. `health` is an
operational key (it is not fingerprinted), so after the user changes the rule the next run
resumes the stage from that checkpoint.

Verdicts go to `<stage>/health.json` (atomically, as they happen), into the stage summary
(`summary_lines`, the engine adds them), the tracker (`r1pipe.tracking`), the report and the
result card. The rules are in docs/health.md.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import atomic_write_json, read_json
from r1pipe.config import HealthRule, HealthSettings, reward_family
from r1pipe.contract import StageFailed

if TYPE_CHECKING:
    from transformers import TrainerCallback

    from r1pipe.contract import StageContext

HEALTH_FILE = "health.json"
"""In the stage's folder: each rule's settings and, when it fired, where and why."""

RULES = ("reward_flat", "zero_spread", "format_stuck", "not_finite", "entropy_collapse",
         "length_pinned", "reward_none")
"""The rules of `health:`, in the order they are checked and shown."""

LEVEL = {"ok": 0, "warn": 1, "stop": 2}
"""A verdict as a number (what a tracker gets)."""

_log = logging.getLogger("r1pipe.health")


class HealthStop(StageFailed):
    """A rule with `action: stop` fired: the stage stopped at a checkpoint it resumes from."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _finite(values: list[Any]) -> list[float]:
    return [v for v in (_number(x) for x in values) if v is not None and math.isfinite(v)]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


class Watch:
    """The rules over a stage's step logs, without the trainer (the callback feeds it).

    `format_keys`: the `rewards/<name>/mean` keys of the stage's format rewards."""

    def __init__(self, settings: HealthSettings, format_keys: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.format_keys = format_keys
        self.history: list[dict[str, Any]] = []
        self.verdicts: dict[str, dict[str, Any]] = {}

    def rule(self, name: str) -> HealthRule:
        return getattr(self.settings, name)

    def observe(self, record: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Add one step's log; return (rule, message) for each rule that fires on it."""
        if "train_runtime" in record or "step" not in record:
            return []  # the trainer's end-of-training summary is no step
        self.history.append(dict(record))
        fired = []
        for name in RULES:
            rule = self.rule(name)
            if rule.action == "off":
                continue
            message = getattr(self, f"_{name}")(rule)
            if message is not None:
                fired.append((name, message))
                self._record(name, rule, message, int(record["step"]))
        return fired

    def _record(self, name: str, rule: HealthRule, message: str, step: int) -> None:
        seen = self.verdicts.get(name)
        if seen is None:
            self.verdicts[name] = {"status": rule.action, "first_step": step, "last_step": step,
                                   "times": 1, "message": message}
        else:
            seen.update(status=rule.action if LEVEL[rule.action] >= LEVEL[seen["status"]]
                        else seen["status"], last_step=step, times=seen["times"] + 1)

    def _window(self, key: str, rule: HealthRule) -> list[Any] | None:
        values = [r[key] for r in self.history if key in r]
        return values[-rule.window:] if len(values) >= rule.window else None

    # -- the rules: each returns why it fires, or None ----------------------------------
    def _reward_flat(self, rule: HealthRule) -> str | None:
        values = self._window("reward", rule)
        values = _finite(values) if values is not None else []
        if len(values) < max(rule.window, 2):
            return None
        half = len(values) // 2
        gain = _mean(values[half:]) - _mean(values[:half])
        if gain > rule.threshold:
            return None
        return (f"the mean reward rose by {gain:+.4f} from the first to the second half of the "
                f"last {len(values)} steps (needs more than {rule.threshold:g})")

    def _zero_spread(self, rule: HealthRule) -> str | None:
        key = "dynamic_sampling/trained_zero_std_frac" if any(
            "dynamic_sampling/trained_zero_std_frac" in r for r in self.history) \
            else "frac_reward_zero_std"
        values = self._window(key, rule)
        values = _finite(values) if values is not None else []
        if len(values) < rule.window or _mean(values) <= rule.threshold:
            return None
        return (f"{_mean(values):.0%} of the trained groups had no reward spread (no "
                f"gradient) over the last {len(values)} steps (bound {rule.threshold:g})")

    def _format_stuck(self, rule: HealthRule) -> str | None:
        for key in self.format_keys:
            values = self._window(key, rule)
            values = _finite(values) if values is not None else []
            if len(values) >= rule.window and max(values) <= rule.threshold:
                return (f"{key} stayed at or below {rule.threshold:g} for the last "
                        f"{len(values)} steps: no sampled answer has the format")
        return None

    def _not_finite(self, rule: HealthRule) -> str | None:
        last = self.history[-1]
        for key in ("loss", "grad_norm"):
            value = _number(last.get(key))
            if value is not None and not math.isfinite(value):
                return f"{key} is {value} at step {last['step']}"
        return None

    def _entropy_collapse(self, rule: HealthRule) -> str | None:
        values = self._window("entropy", rule)
        values = _finite(values) if values is not None else []
        if len(values) < rule.window or _mean(values) >= rule.threshold:
            return None
        return (f"the mean token entropy was {_mean(values):.4g} over the last {len(values)} "
                f"steps (bound {rule.threshold:g}): the policy samples nearly one answer")

    def _length_pinned(self, rule: HealthRule) -> str | None:
        values = self._window("completions/clipped_ratio", rule)
        values = _finite(values) if values is not None else []
        if len(values) < rule.window or _mean(values) < rule.threshold:
            return None
        return (f"{_mean(values):.0%} of the completions were cut at max_completion_length "
                f"over the last {len(values)} steps (bound {rule.threshold:g})")

    def _reward_none(self, rule: HealthRule) -> str | None:
        keys = sorted({k for r in self.history for k in r
                       if k.startswith("rewards/") and k.endswith("/mean")})
        for key in keys:
            values = self._window(key, rule)
            if values is not None and all(_number(v) is None or not math.isfinite(v)
                                          for v in values):
                name = key[len("rewards/"):-len("/mean")]
                return (f"the reward {name!r} scored no completion (None for all of them) on "
                        f"each of the last {len(values)} steps")
        return None


def format_reward_keys(ctx: StageContext[Any]) -> tuple[str, ...]:
    """`rewards/<name>/mean` of the stage's rewards of the format family."""
    rewards = getattr(ctx.config, "rewards", None) or {}
    return tuple(f"rewards/{name}/mean" for name, value in rewards.items()
                 if reward_family(name, value) == "format")


def _stage_path(ctx: StageContext[Any]) -> Path:
    return ctx.stage_dir / HEALTH_FILE


def callback(ctx: StageContext[Any], settings: HealthSettings | None = None) -> TrainerCallback:
    """The TrainerCallback of the watch for the stage's trainer (see the module)."""
    from transformers import TrainerCallback

    settings = settings or getattr(ctx.config, "health", None) or HealthSettings()
    watch = Watch(settings, format_reward_keys(ctx))
    previous = read_json(_stage_path(ctx)) if ctx.is_main_process else None
    earlier = (previous or {}).get("rules", {}) if isinstance(previous, dict) else {}

    def save() -> None:
        if not ctx.is_main_process:
            return
        rules = {}
        for name in RULES:
            rule = watch.rule(name)
            entry: dict[str, Any] = {"action": rule.action, "threshold": rule.threshold,
                                     "window": rule.window, "status": "ok"}
            before = earlier.get(name) if isinstance(earlier, dict) else None
            if isinstance(before, dict) and before.get("status") in ("warn", "stop"):
                entry["earlier"] = {k: before[k] for k in ("status", "first_step", "message")
                                    if k in before}
            entry.update(watch.verdicts.get(name, {}))
            rules[name] = entry
        atomic_write_json(_stage_path(ctx), {"updated": time.time(), "rules": rules})

    class _Health(TrainerCallback):
        stopped: tuple[str, str, int] | None = None
        is_health_watch = True  # what `watch_first` looks for

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            save()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202
            if not logs:
                return
            fired = watch.observe({"step": state.global_step, **logs})
            for name, message in fired:
                if watch.verdicts[name]["times"] > 1 and watch.rule(name).action == "warn":
                    continue  # said once; health.json counts the rest
                text = f"{ctx.name}: health rule {name} ({watch.rule(name).action}) at step " \
                       f"{state.global_step}: {message}"
                _log.info(text)  # stage.log; the terminal gets it once, next
                if ctx.is_main_process:
                    from r1pipe.terminal import say

                    say((text, "yellow"))  # verbatim, no markup
                if watch.rule(name).action == "stop" and self.stopped is None:
                    self.stopped = (name, message, int(state.global_step))
                    control.should_save = True  # the checkpoint the stage resumes from
                    control.should_training_stop = True
            if fired:
                logs.update({f"health/{name}": LEVEL[watch.rule(name).action]
                             for name, _ in fired})  # into metrics.jsonl with the step
                save()

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            save()
            if self.stopped is not None:
                name, message, step = self.stopped
                raise HealthStop(
                    f"stage {ctx.name} stopped by health rule {name} at step {step}: {message}."
                    f" Fix the cause, or change stages.{ctx.name}.health.{name} (its threshold,"
                    " window, or action: warn), and run again: the stage resumes from "
                    f"checkpoint-{step}")

    return _Health()


def watch_first(trainer: Any) -> Any:
    """Move the watch before the trainer's own callbacks (its tracker integrations among
    them), so the `health/<rule>` values it adds to a step's logs reach every tracker with
    the step; returns the trainer. (A trainer puts the callbacks it is given last.)"""
    handler = trainer.callback_handler
    mine = [cb for cb in handler.callbacks if getattr(cb, "is_health_watch", False)]
    handler.callbacks = mine + [cb for cb in handler.callbacks if cb not in mine]
    return trainer


def read(stage_dir: Path) -> dict[str, dict[str, Any]]:
    """The rules recorded in a stage's `health.json` (empty when it has none)."""
    data = read_json(stage_dir / HEALTH_FILE)
    rules = data.get("rules") if isinstance(data, dict) else None
    return {k: v for k, v in rules.items() if isinstance(v, dict)} \
        if isinstance(rules, dict) else {}


def verdict_line(entry: Mapping[str, Any]) -> str:
    """One rule's verdict as the summary, report and result card show it."""
    status = entry.get("status", "ok")
    if status == "ok":
        earlier = entry.get("earlier")
        return f"ok (earlier {earlier['status']} at step {earlier.get('first_step')})" \
            if isinstance(earlier, dict) else "ok"
    times = int(entry.get("times", 1))
    return (f"{status} at step {entry.get('first_step')}"
            + (f" ({times} steps, last {entry.get('last_step')})" if times > 1 else "")
            + f": {entry.get('message', '')}")


def summary_lines(stage_dir: Path) -> dict[str, str]:
    """Stage-summary lines: one per rule that fired, else one `health: ok` line; nothing for
    a stage that trained nothing (no health.json)."""
    rules = read(stage_dir)
    if not rules:
        return {}
    fired = {f"health {name}": verdict_line(entry) for name, entry in rules.items()
             if entry.get("status") != "ok" or entry.get("earlier")}
    checked = sum(1 for e in rules.values() if e.get("action") != "off")
    return fired or {"health": f"ok ({checked} rules checked)"}


def scalars(stage_dir: Path) -> dict[str, float]:
    """`health/<rule>` = 0 ok, 1 warned, 2 stopped (the worst of the stage's attempts: a stop
    the stage resumed from counts): what the trackers get."""
    out = {}
    for name, entry in read(stage_dir).items():
        earlier = entry.get("earlier") if isinstance(entry.get("earlier"), dict) else {}
        out[f"health/{name}"] = float(max(LEVEL.get(str(entry.get("status")), 0),
                                          LEVEL.get(str(earlier.get("status")), 0)))
    return out
