"""Stage gates (`gate:` of a stage): after a stage's evaluation, check that it did not make
the model worse than its input before the next stage's compute is spent on it.

`gate: {benchmark: NAME, min_delta_se: -1}` compares the stage's pass@1 on NAME with its
input model's (`from:`: the base model or an upstream stage): delta = stage - input, in
standard errors of the difference (sqrt(se_stage^2 + se_input^2)). Below `min_delta_se`
the gate fails. Two engine hooks, so the verdict reaches the tracker before the run stops:

- `check` (after evaluation's hook) writes `<stage>/gate.json`;
- `enforce(ignore)` (after the tracker's hook) stops the run with `GateFailed` when the gate
  of the stage just done failed, unless `r1pipe run --ignore-gates`.

A finished stage whose gate failed is skipped by the next `run` and stops it again: the
result is still worse until the stage (or its input) changes. `status` and the plan show
`gate failed` (`failed`), the report and the result card the numbers (`read`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import atomic_write_json, read_json
from r1pipe.config import BASE
from r1pipe.contract import StageFailed
from r1pipe.state import read_state

if TYPE_CHECKING:
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig
    from r1pipe.contract import Shard
    from r1pipe.pipeline import Plan

GATE_FILE = "gate.json"
"""In the stage's folder: the gate's numbers and verdict."""

BASE_EVAL = "base/eval"
"""Under the run dir: the base model's evaluation (r1pipe.evaluation.targets.BASE_LABEL)."""


class GateFailed(StageFailed):
    """A stage scored below its input by more than its gate allows; the run stopped."""


def _score(eval_dir: Path, benchmark: str) -> tuple[float, float] | None:
    summary = read_json(eval_dir / benchmark / "summary.json")
    if not isinstance(summary, dict):
        return None
    value, se = summary.get("pass@1"), summary.get("pass@1_stderr")
    if not isinstance(value, (int, float)) or not isinstance(se, (int, float)):
        return None
    return float(value), float(se)


def input_eval_dir(config: PipelineConfig, layout: RunLayout, stage: str
                   ) -> tuple[str, Path] | None:
    """(label, eval dir) of the model the stage starts from; None for a model outside the
    run (a Hub id or folder), which the run does not evaluate."""
    source = str(config.stages[stage].from_)
    if source == BASE:
        return "base", layout.root / BASE_EVAL
    if source in config.stages:
        return source, layout.stage_dir(source) / "eval"
    return None


def evaluate(config: PipelineConfig, layout: RunLayout, stage: str) -> dict[str, Any] | None:
    """The gate's verdict for a finished stage (None when it has no gate). `status` is
    `passed`, `failed`, or `pending` (an evaluation is missing; never fails the run)."""
    gate = getattr(config.stages[stage], "gate", None)
    if gate is None:
        return None
    state = read_state(layout, stage) or {}
    out: dict[str, Any] = {"benchmark": gate.benchmark, "metric": "pass@1",
                           "min_delta_se": gate.min_delta_se, "run_id": state.get("run_id"),
                           "checked": time.time()}
    mine = _score(layout.stage_dir(stage) / "eval", gate.benchmark)
    source = input_eval_dir(config, layout, stage)
    theirs = _score(source[1], gate.benchmark) if source else None
    out["input"] = source[0] if source else str(config.stages[stage].from_)
    if mine is None or theirs is None:
        missing = "the stage's" if mine is None else f"its input's ({out['input']})"
        return {**out, "status": "pending",
                "reason": f"no {gate.benchmark} evaluation of {missing} model yet"}
    (value, se), (before, before_se) = mine, theirs
    spread = math.sqrt(se ** 2 + before_se ** 2)
    delta = value - before
    # both scores without spread (every sample alike): any change is beyond any number of SEs
    in_se = delta / spread if spread > 0 else (0.0 if delta == 0 else math.copysign(math.inf,
                                                                                     delta))
    passed = in_se >= gate.min_delta_se
    return {**out, "status": "passed" if passed else "failed", "score": value, "se": se,
            "input_score": before, "input_se": before_se, "delta": delta,
            "delta_se": in_se if math.isfinite(in_se) else None}


def read(layout: RunLayout, stage: str) -> dict[str, Any] | None:
    """The recorded gate of a stage (None without one, or when it belongs to an earlier run
    of the stage)."""
    data = read_json(layout.stage_dir(stage) / GATE_FILE)
    if not isinstance(data, dict):
        return None
    state = read_state(layout, stage) or {}
    return data if data.get("run_id") == state.get("run_id") else None


def failed(layout: RunLayout, stage: str) -> bool:
    """Whether the stage's recorded gate failed (what `status` and the plan mark)."""
    data = read(layout, stage)
    return bool(data and data.get("status") == "failed")


def describe(data: dict[str, Any]) -> str:
    """One line for the summary, the report and the result card."""
    if data.get("status") == "pending":
        return f"pending: {data.get('reason')}"
    return (f"{data['status']}: pass@1 {data['score']:.3f} ± {data['se']:.3f} on "
            f"{data['benchmark']} vs {data['input']} {data['input_score']:.3f} ± "
            f"{data['input_se']:.3f} (delta {data['delta']:+.3f}, "
            + (f"{data['delta_se']:+.2f} SE" if data.get("delta_se") is not None
               else "both without spread") + f"; allowed {data['min_delta_se']:+g} SE)"
            + (" (ignored: --ignore-gates)" if data.get("ignored") else ""))


def scalars(layout: RunLayout, stage: str) -> dict[str, float]:
    """`gate/passed` (1/0), `gate/delta`, `gate/delta_se`: what the trackers get."""
    data = read(layout, stage)
    if not data or data.get("status") not in ("passed", "failed"):
        return {}
    out = {"gate/passed": 1.0 if data["status"] == "passed" else 0.0,
           "gate/delta": float(data["delta"])}
    if data.get("delta_se") is not None:
        out["gate/delta_se"] = float(data["delta_se"])
    return out


def check(plan_: Plan, stage: str | None, shard: Shard | None = None) -> None:
    """Engine hook (after evaluation's): write the gate verdict of the stage just done."""
    if stage is None or shard is not None or plan_[stage].action in ("disabled",
                                                                     "not selected"):
        return
    state = read_state(plan_.layout, stage) or {}
    if state.get("status") != "finished":
        return
    verdict = evaluate(plan_.config, plan_.layout, stage)
    if verdict is not None:
        atomic_write_json(plan_.layout.stage_dir(stage) / GATE_FILE, verdict)


def enforce(ignore: bool = False) -> Any:
    """Engine hook (last): stop the run after a stage whose gate failed, unless `ignore`
    (`--ignore-gates`), which records that the run went on."""

    def hook(plan_: Plan, stage: str | None, shard: Shard | None = None) -> None:
        if stage is None or shard is not None:
            return
        data = read(plan_.layout, stage)
        if not data or data.get("status") != "failed":
            return
        if ignore:
            if not data.get("ignored"):
                atomic_write_json(plan_.layout.stage_dir(stage) / GATE_FILE,
                                  {**data, "ignored": True})
            return
        later = [s.name for s in plan_.stages[[s.name for s in plan_.stages].index(stage) + 1:]
                 if s.action in ("run", "resume", "stale")]
        raise GateFailed(
            f"gate failed after stage {stage}: {describe(data)}. "
            + (f"Not run: {', '.join(later)}. " if later else "")
            + f"Change the stage (or stages.{stage}.gate.min_delta_se) and run again, or "
            "pass --ignore-gates to go on")

    return hook


def summary_line(layout: RunLayout, stage: str) -> str | None:
    data = read(layout, stage)
    return describe(data) if data else None
