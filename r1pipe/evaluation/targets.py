"""Targets: which models a run evaluates, where each loads from and where its results go.

Every model of a run is evaluated the same way: the base model once, each stage's `model/`
after the stage, each distillation student, or any folder with `--model`. Kept apart from
running so that the table and the engine's hook can list the rows (and find results on
disk) without loading a model or a benchmark.

    runs/<name>/<stage>/eval/<benchmark>/            a stage's model
    runs/<name>/base/eval/<benchmark>/               the base model (no stage owns it)
    runs/<name>/distill/<student>/eval/<benchmark>/  one per distillation student
    runs/<name>/external/<label>/eval/<benchmark>/   a model given with --model
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig

BASE_LABEL = "base"
EXTERNAL_DIR = "external"  # runs/<name>/external/<label>/eval: models given with --model


@dataclass(frozen=True)
class Target:
    """One model to evaluate: a row of the table, where it loads from, where results go."""

    label: str  # base, r1_zero, distill/<student>, or an --model name
    model: str  # folder or Hub id
    eval_dir: Path
    identity: str  # changes when the model changes: re-evaluate then

    def bench_dir(self, benchmark: str) -> Path:
        return self.eval_dir / benchmark


def is_model_dir(path: Path) -> bool:
    """Whether `path` holds a saved model (a `config.json` beside the weights)."""
    return (path / "config.json").is_file()


def stage_targets(config: PipelineConfig, layout: RunLayout, stage: str) -> list[Target]:
    """The models a finished stage produced: its `model/`, or one per student folder
    (`distill/<student>/model`). A stage without a model (data only) gives none."""
    from r1pipe.state import read_state

    state = read_state(layout, stage) or {}
    if state.get("status") != "finished":
        return []
    # a stage.json migrated from an older fingerprint keeps the one its evals were made with
    fp = state.get("legacy_fingerprint") or state.get("fingerprint")
    identity = f"stage:{fp}:{state.get('run_id')}"
    stage_dir = layout.stage_dir(stage)
    if is_model_dir(stage_dir / "model"):
        return [Target(stage, str(stage_dir / "model"), stage_dir / "eval", identity)]
    out = []
    for sub in sorted(p for p in stage_dir.iterdir() if p.is_dir()) if stage_dir.is_dir() else []:
        if is_model_dir(sub / "model"):
            out.append(Target(f"{stage}/{sub.name}", str(sub / "model"), sub / "eval",
                              f"{identity}:{sub.name}"))
    return out


def base_target(config: PipelineConfig, layout: RunLayout) -> Target:
    """The base model, evaluated once so every stage has a 'before' to compare with."""
    from r1pipe.models import fingerprint, materialize

    return Target(BASE_LABEL, materialize(config.base_model, layout.imports),
                  layout.root / BASE_LABEL / "eval", "model:" + fingerprint(config.base_model))


def external_target(layout: RunLayout, model: str, label: str | None = None) -> Target:
    """A model given with `--model PATH` (any folder or Hub id), evaluated beside the run."""
    from r1pipe.models import fingerprint

    label = label or Path(model.rstrip("/")).name or "model"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"
    return Target(safe, model, layout.root / EXTERNAL_DIR / safe / "eval",
                  "model:" + fingerprint(model))


def all_targets(config: PipelineConfig, layout: RunLayout, *,
                include_base: bool = True) -> list[Target]:
    """Base, then every finished stage in pipeline order, then the --model extras."""
    from r1pipe.graph import stage_order

    out = [base_target(config, layout)] if include_base else []
    for stage in stage_order(config):
        if config.stages[stage].enabled:
            out += stage_targets(config, layout, stage)
    return out


def select_targets(config: PipelineConfig, layout: RunLayout, *,
                   stages: Sequence[str] | None = None, model: str | None = None,
                   name: str | None = None) -> list[Target]:
    """The models `r1pipe eval` was asked about: --model, --stage (repeatable; `base` is the
    base model), or by default the base model and every finished stage."""
    from r1pipe.config import ConfigError
    from r1pipe.registry import key
    from r1pipe.state import read_state

    if model:
        return [external_target(layout, model, name)]
    if not stages:
        return all_targets(config, layout)
    out: list[Target] = []
    for raw in stages:
        stage = key(raw)
        if stage == BASE_LABEL:
            out.append(base_target(config, layout))
            continue
        if stage not in config.stages:
            raise ConfigError(f"--stage {raw!r} is not in `stages:` (have: base, "
                              f"{', '.join(config.stages)})", file=config.source_path)
        found = stage_targets(config, layout, stage)
        if not found:
            status = (read_state(layout, stage) or {}).get("status", "not started")
            why = ("it has not finished (status: " + status + "); run it first"
                   if status != "finished" else "it produced no model (only data)")
            raise ConfigError(f"cannot evaluate stage {stage!r}: {why}", file=config.source_path)
        out += found
    return out


def result_dirs(config: PipelineConfig, layout: RunLayout) -> list[tuple[str, Path]]:
    """(label, eval dir) of every model that may have results, without loading anything:
    the rows of the comparison table, finished or not, --model extras included."""
    from r1pipe.graph import stage_order

    rows = [(BASE_LABEL, layout.root / BASE_LABEL / "eval")]
    for stage in stage_order(config):
        stage_dir = layout.stage_dir(stage)
        if (stage_dir / "eval").is_dir() or is_model_dir(stage_dir / "model"):
            rows.append((stage, stage_dir / "eval"))
        elif stage_dir.is_dir():
            rows += [(f"{stage}/{sub.name}", sub / "eval") for sub in sorted(stage_dir.iterdir())
                     if sub.is_dir() and (sub / "eval").is_dir()]
    external = layout.root / EXTERNAL_DIR
    if external.is_dir():
        rows += [(sub.name, sub / "eval") for sub in sorted(external.iterdir()) if sub.is_dir()]
    return rows
