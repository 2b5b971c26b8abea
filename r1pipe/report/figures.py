"""What the report plots, read from the run before anything is drawn: each function returns a
`FigureData` (panels and the exact series), so tests check the curves and the drawing code
(`r1pipe.report.draw`) stays free of what a stage logged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from r1pipe.evaluation.table import Comparison


Series = tuple[list[float], list[float]]


@dataclass
class Panel:
    """One axes: a title, axis labels and named series (x, y)."""

    title: str
    ylabel: str
    series: dict[str, Series]
    bands: dict[str, tuple[list[float], list[float], list[float]]] = field(default_factory=dict)
    xlabel: str = "step"


@dataclass
class FigureData:
    """A plot before it is drawn: what the report shows and what tests check."""

    name: str  # file stem
    title: str
    caption: str
    panels: list[Panel] = field(default_factory=list)
    kind: str = "lines"  # lines | bars | funnel
    bars: dict[str, Any] = field(default_factory=dict)  # for bars / funnel
    path: Path | None = None
    drawn: dict[str, dict[str, Series]] = field(default_factory=dict)  # read back from Axes


# ---------------------------------------------------------------------------------------
# Reading the run
# ---------------------------------------------------------------------------------------


def metric_steps(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Training log lines by step, the last write of a step winning.

    A stage resumed from a checkpoint logs the steps after that checkpoint again; the later
    attempt is the one whose weights were kept. Lines without a step (generation jobs) and
    the trainer's end-of-training line (`train_runtime`) are left out.
    """
    by_step: dict[int, dict[str, Any]] = {}
    for record in records:
        step = record.get("step")
        if not isinstance(step, (int, float)) or "train_runtime" in record:
            continue
        by_step[int(step)] = {**by_step.get(int(step), {}), **record}
    return [by_step[s] for s in sorted(by_step)]


def series(steps: Sequence[Mapping[str, Any]], key: str) -> Series:
    """(steps, values) of one metric, skipping steps where it is missing or not finite."""
    xs, ys = [], []
    for record in steps:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            xs.append(float(record["step"]))
            ys.append(float(value))
    return xs, ys


def is_rl(steps: Sequence[Mapping[str, Any]]) -> bool:
    return any("reward" in r for r in steps)


def is_sft(steps: Sequence[Mapping[str, Any]]) -> bool:
    return not is_rl(steps) and any("loss" in r for r in steps)


def _add(panel_series: dict[str, Series], label: str, data: Series) -> None:
    if data[0]:
        panel_series[label] = data


def _panel(panels: list[Panel], steps: Sequence[Mapping[str, Any]], title: str, unit: str,
           keys: Mapping[str, str]) -> None:
    """One panel of the series `keys` names (label -> logged key), if any was logged."""
    found: dict[str, Series] = {}
    for label, key in keys.items():
        _add(found, label, series(steps, key))
    if found:
        panels.append(Panel(title, unit, found))


def rl_figure(stage: str, steps: Sequence[Mapping[str, Any]]) -> FigureData:
    """Reward (total and per function), response length, KL, clip ratio and entropy."""
    panels: list[Panel] = []

    reward: dict[str, Series] = {}
    _add(reward, "total (weighted)", series(steps, "reward"))
    names = sorted({k.split("/")[1] for r in steps for k in r
                    if k.startswith("rewards/") and k.endswith("/mean")})
    for name in names:
        _add(reward, name, series(steps, f"rewards/{name}/mean"))
    bands = {}
    total, std = series(steps, "reward"), series(steps, "reward_std")
    if total[0] and std[0] and total[0] == std[0]:
        bands["total (weighted)"] = (total[0], [m - s for m, s in zip(total[1], std[1], strict=True)],
                                     [m + s for m, s in zip(total[1], std[1], strict=True)])
    if reward:
        panels.append(Panel("reward (mean over the group; band: ± std)", "reward", reward, bands))

    length: dict[str, Series] = {}
    _add(length, "mean", series(steps, "completions/mean_length"))
    lo, hi = series(steps, "completions/min_length"), series(steps, "completions/max_length")
    length_bands = {}
    if length and lo[0] == length["mean"][0] and hi[0] == length["mean"][0]:
        length_bands["mean"] = (lo[0], lo[1], hi[1])
    if length:
        panels.append(Panel("response length (band: min–max)", "tokens", length, length_bands))

    _panel(panels, steps, "KL(policy ‖ reference)", "KL", {"KL": "kl"})
    _panel(panels, steps, "clip ratio (share of tokens clipped)", "share",
           {"region": "clip_ratio/region_mean", "low": "clip_ratio/low_mean",
            "high": "clip_ratio/high_mean"})
    # A group whose answers all score the same has zero advantage: it teaches nothing (what
    # `prompt_filter:` removes before training). TRL logs the share as frac_reward_zero_std.
    # The title is short: a long one ran into the next panel's on the figure.
    _panel(panels, steps, "zero-spread groups (no signal)", "share of groups",
           {"zero reward spread": "frac_reward_zero_std"})
    _panel(panels, steps, "policy entropy", "nats / token", {"entropy": "entropy"})
    _panel(panels, steps, "share of completions cut at max length", "share",
           {"truncated": "completions/clipped_ratio"})

    last = steps[-1]["step"] if steps else 0
    return FigureData(f"{_safe(stage)}-training", f"{stage}: GRPO training",
                      f"{stage}: {last} steps. The paper's R1-Zero shows reward and response "
                      "length growing together; groups with zero reward spread (all answers "
                      "right, or all wrong) give GRPO no signal.", panels)


def sft_figure(stage: str, steps: Sequence[Mapping[str, Any]]) -> FigureData:
    """Loss (train and eval) and mean token accuracy."""
    panels: list[Panel] = []
    _panel(panels, steps, "loss (completion tokens)", "loss",
           {"train": "loss", "eval": "eval_loss"})
    _panel(panels, steps, "mean token accuracy", "accuracy",
           {"train": "mean_token_accuracy", "eval": "eval_mean_token_accuracy"})
    last = steps[-1]["step"] if steps else 0
    return FigureData(f"{_safe(stage)}-training", f"{stage}: SFT training",
                      f"{stage}: {last} steps of supervised fine-tuning.", panels)


def eval_figure(comp: Comparison) -> FigureData | None:
    """pass@1 per benchmark and model as grouped bars with ± SE, cons@k as diamonds."""
    rows = [r for r, cells in comp.rows.items() if any(cells.values())]
    if not rows or not comp.benchmarks:
        return None
    bars = {"benchmarks": list(comp.benchmarks), "rows": rows, "k": comp.settings["samples"],
            "pass@1": {r: [comp.value(r, b, "pass@1") for b in comp.benchmarks] for r in rows},
            "stderr": {r: [comp.value(r, b, "pass@1_stderr") for b in comp.benchmarks]
                       for r in rows},
            "cons@k": {r: [comp.value(r, b, "cons@k") for b in comp.benchmarks] for r in rows}}
    s = comp.settings
    return FigureData("eval", "pass@1 by stage",
                      f"pass@1 (bars, ± standard error over prompts) and cons@{s['samples']} "
                      f"(◆) on each benchmark; {s['samples']} samples per prompt at temperature "
                      f"{s['temperature']}, top-p {s['top_p']}.", kind="bars", bars=bars)


# What a sample that passed each filter of `r1pipe.filters` is: the funnel's bar labels.
PASSED = {"truncated": "not truncated", "format": "well formatted", "correct": "correct answer",
          "unverifiable": "verifiable", "length": "length in bounds",
          "language": "one language", "paragraphs": "short paragraphs",
          "code_block": "no code block", "duplicate": "not a duplicate",
          "per_prompt": "within k per prompt"}


def funnel_steps(summary: Mapping[str, Any]) -> dict[str, int] | None:
    """Remaining samples after each rejection filter, from a `FilterSummary.as_dict()`.

    `{"total": 100, "kept": 40, "removed_by": {"correct": 50, "format": 10}}` gives
    generated 100 → well formatted 90 → correct answer 40 → kept 40, filters in checking
    order.
    """
    if not {"total", "kept"} <= set(summary):
        return None
    from r1pipe.filters import FILTERS

    removed = summary.get("removed_by") or {}
    order = [f for f in FILTERS if f in removed] + [f for f in removed if f not in FILTERS]
    steps = {"generated": int(summary["total"])}
    left = int(summary["total"])
    for name in order:
        left -= int(removed[name])
        steps[PASSED.get(name, f"passed {name.replace('_', ' ')}")] = left
    steps["kept"] = int(summary["kept"])
    return steps


def find_filter_summary(obj: Any, depth: int = 0) -> Mapping[str, Any] | None:
    """The first `FilterSummary.as_dict()` inside a stage summary (total, kept, removed_by)."""
    if isinstance(obj, Mapping):
        if {"total", "kept", "removed_by"} <= set(obj):
            return obj
        if depth < 3:
            for value in obj.values():
                found = find_filter_summary(value, depth + 1)
                if found is not None:
                    return found
    return None


# The sample kinds of a rejection-sampling stage: (name in its summary, artifact whose
# manifest keeps the full `FilterSummary`).
FUNNELS = (("reasoning", "filtered"), ("general", "general"))


def filter_counts(summary: Mapping[str, Any], name: str,
                  stage_dir: Path | None = None, artifact: str | None = None
                  ) -> Mapping[str, Any] | None:
    """`FilterSummary.as_dict()`-shaped counts of one sample kind of a stage.

    Read from the stage summary's flat keys (`reasoning samples`, `reasoning kept`,
    `reasoning removed by correct`, ...), else from the manifest of the filtered artifact
    (`meta.summary`), else from a nested `filters`/`general_filters` table.
    """
    if isinstance(summary.get(f"{name} samples"), int) and f"{name} kept" in summary:
        prefix = f"{name} removed by "
        return {"total": summary[f"{name} samples"], "kept": summary[f"{name} kept"],
                "removed_by": {k[len(prefix):]: v for k, v in summary.items()
                               if k.startswith(prefix) and isinstance(v, int)}}
    if stage_dir is not None and artifact is not None:
        from r1pipe.artifacts import read_json

        meta = (read_json(stage_dir / "data" / artifact / "manifest.json") or {}).get("meta", {})
        if isinstance(meta.get("summary"), Mapping) and "total" in meta["summary"]:
            return meta["summary"]
    nested = summary.get("filters" if name == "reasoning" else f"{name}_filters")
    return nested if isinstance(nested, Mapping) else None


def stage_funnels(stage: str, summary: Mapping[str, Any],
                  stage_dir: Path | None = None) -> list[FigureData]:
    """The filter funnels of a rejection-sampling stage (reasoning, then general samples),
    each ending with how many of the kept samples were drawn into the SFT mix."""
    out = []
    for name, artifact in FUNNELS:
        counts = filter_counts(summary, name, stage_dir, artifact)
        steps = funnel_steps(counts) if counts else None
        if not steps:
            continue
        if isinstance(summary.get(f"mix {name}"), int):
            steps["in the SFT mix"] = summary[f"mix {name}"]
        fig = funnel_figure(steps, f"{stage}: {name} samples")
        fig.name = f"{_safe(stage)}-funnel-{name}"
        out.append(fig)
    if not out:  # a stage of another shape that still reports filter counts
        found = find_filter_summary(summary)
        steps = funnel_steps(found) if found else None
        if steps:
            fig = funnel_figure(steps, stage)
            fig.name = f"{_safe(stage)}-funnel"
            out.append(fig)
    return out


def prompt_filter_funnel(stage: str, summary: Mapping[str, Any]) -> FigureData | None:
    """The prompt filter of a GRPO stage (`prompt_filter:`): candidate prompts, those left
    once the too hard ones are dropped, and those kept once the too easy ones are too."""
    keys = ("candidates", "kept", "too easy", "too hard")
    counts = {k: summary.get(f"prompt filter {k}") for k in keys}
    if not all(isinstance(v, int) for v in counts.values()):
        return None
    fig = funnel_figure({"candidate prompts": counts["candidates"],
                         "not too hard": counts["candidates"] - counts["too hard"],
                         "kept (not too easy either)": counts["kept"]},
                        f"{stage}: prompt filter")
    fig.name = f"{_safe(stage)}-prompt-filter"
    fig.caption = ("Prompts sampled with the stage's starting model before training: those "
                   "every answer failed (too hard) or passed (too easy) were dropped, since "
                   "GRPO's advantage is zero for a group with no reward spread.")
    return fig


def funnel_figure(counts: Mapping[str, int], title: str = "rejection sampling") -> FigureData:
    """Horizontal bars: samples left after each step (a dict of step name → count, in order)."""
    return FigureData("funnel", f"{title}: filter funnel",
                      "Samples left after each filter, in the order they are checked; the "
                      "label says how many the filter removed.", kind="funnel",
                      bars={"steps": list(counts), "counts": [int(v) for v in counts.values()]})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)
