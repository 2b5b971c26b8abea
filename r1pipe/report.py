"""The run report: `runs/<name>/report/` with PNG plots and one self-contained index.html.

What a person wants to see after a run, in the paper's terms:

- for each RL stage: the reward (total and per reward function), the response length over
  steps (R1-Zero's growing length), the KL to the reference, the clip ratio, the share of
  groups with zero reward spread (no learning signal) and entropy; the prompt filter's
  funnel when the stage has one (`prompt_filter:`);
- for each SFT stage: the loss (and token accuracy);
- the before/after evaluation table and a bar chart of it;
- the rejection-sampling funnel (how many samples each filter removed);
- a few completions per stage, from training (first and last logged step) and from eval.

Every plot is built in two steps: a function reads the run and returns a `FigureData` (the
panels and the exact series), then `render` draws it and records what it drew (`drawn`,
read back from the matplotlib Axes), so tests check curves, not pixels. Everything is read
from files (metrics.jsonl, stage.json, eval summaries, TRL's completion logs): a report can
be built while a run is still going, or long after.
"""

from __future__ import annotations

import base64
import html
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig
    from r1pipe.evaluation.table import Comparison

Series = tuple[list[float], list[float]]

# Stable colours: the total reward is always dark, rows of the eval chart keep their colour.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SMOOTH_ABOVE = 30  # points; longer curves get a smoothed line over the faint raw one


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


@dataclass
class Report:
    """What `build_report` wrote."""

    dir: Path
    index: Path
    figures: list[FigureData]
    samples: dict[str, list[dict[str, Any]]]


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

    kl: dict[str, Series] = {}
    _add(kl, "KL", series(steps, "kl"))
    if kl:
        panels.append(Panel("KL(policy ‖ reference)", "KL", kl))

    clip: dict[str, Series] = {}
    for key, label in (("clip_ratio/region_mean", "region"), ("clip_ratio/low_mean", "low"),
                       ("clip_ratio/high_mean", "high")):
        _add(clip, label, series(steps, key))
    if clip:
        panels.append(Panel("clip ratio (share of tokens clipped)", "share", clip))

    # A group whose answers all score the same has zero advantage: it teaches nothing (what
    # `prompt_filter:` removes before training). TRL logs the share as frac_reward_zero_std.
    flat: dict[str, Series] = {}
    _add(flat, "zero reward spread", series(steps, "frac_reward_zero_std"))
    if flat:
        # short: a long title ran into the next panel's on the figure
        panels.append(Panel("zero-spread groups (no signal)", "share of groups", flat))

    other: dict[str, Series] = {}
    _add(other, "entropy", series(steps, "entropy"))
    if other:
        panels.append(Panel("policy entropy", "nats / token", other))
    truncated: dict[str, Series] = {}
    _add(truncated, "truncated", series(steps, "completions/clipped_ratio"))
    if truncated:
        panels.append(Panel("share of completions cut at max length", "share", truncated))

    last = steps[-1]["step"] if steps else 0
    return FigureData(f"{_safe(stage)}-training", f"{stage}: GRPO training",
                      f"{stage}: {last} steps. The paper's R1-Zero shows reward and response "
                      "length growing together; groups with zero reward spread (all answers "
                      "right, or all wrong) give GRPO no signal.", panels)


def sft_figure(stage: str, steps: Sequence[Mapping[str, Any]]) -> FigureData:
    """Loss (train and eval) and mean token accuracy."""
    panels = []
    loss: dict[str, Series] = {}
    _add(loss, "train", series(steps, "loss"))
    _add(loss, "eval", series(steps, "eval_loss"))
    if loss:
        panels.append(Panel("loss (completion tokens)", "loss", loss))
    acc: dict[str, Series] = {}
    _add(acc, "train", series(steps, "mean_token_accuracy"))
    _add(acc, "eval", series(steps, "eval_mean_token_accuracy"))
    if acc:
        panels.append(Panel("mean token accuracy", "accuracy", acc))
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


# ---------------------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------------------


def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11, "axes.titleweight": "bold",
                         "axes.spines.top": False, "axes.spines.right": False,
                         "axes.grid": True, "grid.alpha": 0.3, "legend.fontsize": 9,
                         "legend.frameon": False, "figure.dpi": 110})
    return plt


def smooth(values: Sequence[float], weight: float | None = None) -> list[float]:
    """Debiased exponential moving average (TensorBoard's smoothing), its weight set by the
    curve's length so that about 30 steps are averaged at most; the start is not pulled
    towards the first value."""
    if weight is None:
        weight = min(0.95, max(0.0, 1 - 30 / max(len(values), 1)))
    out, last = [], 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out.append(last / (1 - weight ** (i + 1)) if weight < 1 else v)
    return out


def _draw_lines(fig_data: FigureData, plt: ModuleType) -> Figure:
    n = len(fig_data.panels)
    cols = 1 if n == 1 else 2 if n in (2, 4) else 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.3 * rows + 0.5), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax, panel in zip(axes.flat, fig_data.panels, strict=False):
        for i, (label, (xs, ys)) in enumerate(panel.series.items()):
            total = label.startswith("total") and len(panel.series) > 1
            color = "#222222" if total else PALETTE[i % len(PALETTE)]
            # the total is drawn dashed on top, so a component equal to it stays visible
            style = {"color": color, "linewidth": 1.8, "zorder": 3 if total else 2,
                     "linestyle": (0, (4, 2)) if total else "-"}
            if label in panel.bands:
                bx, low, high = panel.bands[label]
                ax.fill_between(bx, low, high, color=color, alpha=0.12, linewidth=0)
            if len(xs) > SMOOTH_ABOVE:
                ax.plot(xs, ys, color=color, alpha=0.25, linewidth=0.8)
                ax.plot(xs, smooth(ys), label=label, **style)
            else:
                ax.plot(xs, ys, marker="o", markersize=3.5, label=label, **style)
        ax.set_title(panel.title, loc="left")
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        ax.margins(x=0.02)
        _flat_limits(ax)
        if len(panel.series) > 1:
            ax.legend(loc="best")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
    fig.suptitle(fig_data.title, fontsize=13, fontweight="bold", x=0.01, ha="left")
    fig.tight_layout()
    return fig


def _flat_limits(ax: Axes) -> None:
    """A constant curve (a tiny model's zero KL) gets a visible range instead of 1e-16 ticks,
    and a change far below the value's own size (entropy 6.6862 → 6.6859) is not blown up
    to fill the panel."""
    low, high = ax.get_ylim()
    mid = (low + high) / 2
    if high - low < 1e-9:
        span = max(abs(mid) * 0.1, 0.05)
        ax.set_ylim(mid - span, mid + span)
    elif high - low < 2e-3 * abs(mid):
        span = 1e-3 * abs(mid)
        ax.set_ylim(mid - span, mid + span)


def _draw_bars(fig_data: FigureData, plt: ModuleType) -> Figure:
    data = fig_data.bars
    benches, rows = data["benchmarks"], data["rows"]
    width = 0.8 / len(rows)
    handles = []
    fig, ax = plt.subplots(figsize=(max(6.5, 1.2 + len(benches) * (0.5 + 0.45 * len(rows))),
                                    4.2 + 0.25 * math.ceil(len(rows) / 4)))
    for i, row in enumerate(rows):
        xs = [b + (i - (len(rows) - 1) / 2) * width for b in range(len(benches))]
        ys = [100 * v if v is not None else math.nan for v in data["pass@1"][row]]
        err = [100 * e if e is not None else 0.0 for e in data["stderr"][row]]
        color = PALETTE[i % len(PALETTE)]
        handles.append(ax.bar(xs, ys, width * 0.92, yerr=err, capsize=3, color=color,
                              label=row, error_kw={"elinewidth": 1, "ecolor": "#333333"}))
        cons = [100 * v if v is not None else math.nan for v in data["cons@k"][row]]
        ax.plot(xs, cons, linestyle="none", marker="D", markersize=5, color="#222222",
                markerfacecolor="white", label=f"{row} cons@k")
        for x, y, e in zip(xs, ys, err, strict=True):
            if not math.isnan(y):  # above the error bar, where nothing else is drawn
                ax.annotate(f"{y:.1f}", (x, y + e), xytext=(0, 2), textcoords="offset points",
                            ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_ylabel("pass@1 (%)")
    top = max([100 * ((v or 0) + (e or 0)) for r in rows
               for v, e in zip(data["pass@1"][r], data["stderr"][r], strict=True)]
              + [100 * (v or 0) for r in rows for v in data["cons@k"][r]] + [1.0])
    ax.set_ylim(0, min(105, max(10, top * 1.2)))
    ax.grid(axis="x", visible=False)
    from matplotlib.lines import Line2D

    handles.append(Line2D([], [], linestyle="none", marker="D", markersize=5, color="#222222",
                          markerfacecolor="white", label=f"cons@{data.get('k', 'k')}"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1),
              ncol=min(len(handles), 5))
    ax.set_title(fig_data.title, loc="left")
    fig.tight_layout()
    return fig


def _draw_funnel(fig_data: FigureData, plt: ModuleType) -> Figure:
    steps, counts = fig_data.bars["steps"], fig_data.bars["counts"]
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(steps) + 1.3))
    ys = list(range(len(steps)))[::-1]
    special = {"generated": "#7f7f7f", "kept": PALETTE[2], "in the SFT mix": "#1b5e20"}
    colors = [special.get(step, PALETTE[0]) for step in steps]
    ax.barh(ys, counts, color=colors, height=0.65, label="samples")
    top = max(counts + [1])
    for i, (y, n) in enumerate(zip(ys, counts, strict=True)):
        removed = counts[i - 1] - n if i and steps[i] not in special else None
        text = f"{n:,}" + (f"   (−{removed:,})" if removed else "")
        if steps[i] in ("kept", "in the SFT mix") and counts[0]:
            text += f"   {100 * n / counts[0]:.1f}% of generated"
        ax.text(n + top * 0.01, y, text, va="center", fontsize=9)
    ax.set_yticks(ys, steps)
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("samples")
    ax.grid(axis="y", visible=False)
    ax.set_title(fig_data.title, loc="left")
    fig.tight_layout()
    return fig


# `fig` stays Any: matplotlib types an Artist's label as `object`, its data as ArrayLike
def _read_back(fig: Any, fig_data: FigureData) -> dict[str, dict[str, Series]]:
    """The labelled lines and bars of every Axes, as drawn (what tests assert on)."""
    out: dict[str, dict[str, Series]] = {}
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        drawn: dict[str, Series] = {}
        for line in ax.get_lines():
            label = line.get_label()
            if label.startswith("_"):  # matplotlib's own (error bar caps, unlabelled raw lines)
                continue
            xs, ys = line.get_xdata(), line.get_ydata()
            drawn[label] = ([float(x) for x in xs], [float(y) for y in ys])
        for container in ax.containers:
            label = container.get_label()
            patches = getattr(container, "patches", None)
            if patches and label and not label.startswith("_"):
                if fig_data.kind == "funnel":
                    drawn[label] = ([p.get_y() for p in patches], [p.get_width() for p in patches])
                else:
                    drawn[label] = ([p.get_x() + p.get_width() / 2 for p in patches],
                                    [p.get_height() for p in patches])
        out[ax.get_title(loc="left") or ax.get_title()] = drawn
    return out


def render(fig_data: FigureData, path: Path) -> FigureData:
    """Draw `fig_data` to a PNG at `path`; fills in `path` and `drawn`."""
    plt = _pyplot()
    if fig_data.kind == "bars":
        fig = _draw_bars(fig_data, plt)
    elif fig_data.kind == "funnel":
        fig = _draw_funnel(fig_data, plt)
    else:
        fig = _draw_lines(fig_data, plt)
    fig_data.drawn = _read_back(fig, fig_data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    fig_data.path = path
    return fig_data


# ---------------------------------------------------------------------------------------
# Sample completions
# ---------------------------------------------------------------------------------------

SAMPLES_PER_SOURCE = 3
MAX_SAMPLE_CHARS = 1_500


def training_samples(stage_dir: Path, n: int = 2) -> list[dict[str, Any]]:
    """Completions TRL logged during GRPO (`checkpoints/completions/completions_*.parquet`,
    written when `log_completions` is on, as r1pipe's default is): the first and the last
    logged step, `n` of each, with their rewards."""
    files = sorted((stage_dir / "checkpoints" / "completions").glob("completions_*.parquet"))
    if not files:
        return []
    import pandas as pd

    chosen = [files[0]] if len(files) == 1 else [files[0], files[-1]]
    out = []
    for path in chosen:
        try:
            frame = pd.read_parquet(path)
        except Exception:  # a file being written right now, or torn by a kill
            continue
        fixed = {"step", "prompt", "completion", "advantage"}
        for record in frame.head(n).to_dict("records"):
            rewards = {k: v for k, v in record.items() if k not in fixed}
            out.append({"source": f"training step {record.get('step')}",
                        "prompt": _text(record.get("prompt")),
                        "completion": _text(record.get("completion")),
                        "scores": {k: _num(v) for k, v in rewards.items()}})
    return out


def eval_samples(eval_dir: Path, n: int = SAMPLES_PER_SOURCE) -> list[dict[str, Any]]:
    """The first sample of the first `n` prompts of each benchmark, with its verdict."""
    from r1pipe.artifacts import ArtifactError, iter_records

    out: list[dict[str, Any]] = []
    if not eval_dir.is_dir():
        return out
    for bench_dir in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
        samples = bench_dir / "samples"
        if not (samples / "manifest.json").exists():
            continue
        try:
            for record in iter_records(samples, require_complete=False):
                if record.get("sample", 0) != 0:
                    continue
                out.append({"source": f"eval {bench_dir.name}",
                            "prompt": _text(record.get("prompt")),
                            "completion": _text(record.get("completion")),
                            "scores": {"verdict": record.get("verdict"),
                                       "answer": record.get("answer"),
                                       "extracted": record.get("extracted"),
                                       "tokens": record.get("token_count")}})
                if sum(s["source"] == f"eval {bench_dir.name}" for s in out) >= n:
                    break
        except ArtifactError:
            continue
    return out


def _text(value: Any) -> str:
    from r1pipe.parsing import completion_text

    if isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
        return "\n".join(f"[{m.get('role', '?')}] {completion_text(m)}" for m in value)
    if hasattr(value, "tolist"):  # numpy arrays of messages from parquet
        return _text(value.tolist())
    return completion_text(value)


def _num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(f) else round(f, 4)


# ---------------------------------------------------------------------------------------
# Building the report
# ---------------------------------------------------------------------------------------


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


def metric_groups(records: list[dict[str, Any]]) -> dict[str | None, list[dict[str, Any]]]:
    """Split a metrics file by its `part` field (`StageContext.for_part`: one distillation
    student each), when several models of a stage log into it."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for record in records:
        key = record.get("part")
        groups.setdefault(key if isinstance(key, str) else None, []).append(record)
    return groups


def stage_figures(config: PipelineConfig, layout: RunLayout) -> list[FigureData]:
    """Training curves of every stage that logged any (RL or SFT), in pipeline order."""
    from r1pipe.graph import stage_order
    from r1pipe.state import read_metrics

    out = []
    for stage in stage_order(config):
        files = [(stage, layout.metrics_file(stage))]
        stage_dir = layout.stage_dir(stage)
        if stage_dir.is_dir():
            files += [(f"{stage}/{sub.name}", sub / "metrics.jsonl")
                      for sub in sorted(stage_dir.iterdir()) if (sub / "metrics.jsonl").is_file()]
        for label, path in files:
            for group, records in metric_groups(read_metrics(path)).items():
                name = f"{label}/{group}" if group else label
                steps = metric_steps(records)
                if is_rl(steps):
                    out.append(rl_figure(name, steps))
                elif is_sft(steps):
                    out.append(sft_figure(name, steps))
    return [f for f in out if f.panels]


def stage_overview(config: PipelineConfig, layout: RunLayout) -> list[dict[str, Any]]:
    """One row per stage: status, time taken, headline numbers (from stage.json)."""
    from r1pipe.graph import stage_order
    from r1pipe.state import read_state

    rows = []
    for stage in stage_order(config):
        state = read_state(layout, stage) or {}
        section = config.stages[stage]
        status = state.get("status", "not started") if section.enabled else "disabled"
        took = None
        if state.get("started") and state.get("ended"):
            took = state["ended"] - state["started"]
        rows.append({"stage": stage, "status": status, "seconds": took,
                     "summary": state.get("summary") or {}})
    return rows


def build_report(config: PipelineConfig, out_dir: str | Path | None = None) -> Report:
    """Write `runs/<name>/report/`: the PNGs and index.html with them embedded."""
    from r1pipe.artifacts import RunLayout, atomic_write
    from r1pipe.evaluation.table import comparison
    from r1pipe.evaluation.targets import stage_targets
    from r1pipe.graph import stage_order
    from r1pipe.state import read_state

    layout = RunLayout(config.resolved_run_dir())
    if not layout.root.is_dir():
        from r1pipe.config import ConfigError

        raise ConfigError(f"run directory {layout.root} does not exist; run the pipeline first "
                          "(`r1pipe run`)", file=config.source_path)
    if out_dir is None:
        from r1pipe.state import claim_run_dir

        claim_run_dir(layout.root)  # the report goes into the run dir: r1pipe's only
    out = Path(out_dir) if out_dir else layout.root / "report"
    figures = stage_figures(config, layout)

    comp = comparison(config, layout)
    eval_fig = eval_figure(comp)
    if eval_fig is not None:
        figures.append(eval_fig)

    for stage in stage_order(config):
        summary = (read_state(layout, stage) or {}).get("summary") or {}
        figures += stage_funnels(stage, summary, layout.stage_dir(stage))
        kept = prompt_filter_funnel(stage, summary)
        if kept is not None:
            figures.append(kept)

    for fig in figures:
        render(fig, out / f"{fig.name}.png")

    samples: dict[str, list[dict[str, Any]]] = {}
    base_eval = eval_samples(layout.root / "base" / "eval")
    if base_eval:
        samples["base"] = base_eval
    for stage in stage_order(config):
        found = training_samples(layout.stage_dir(stage))
        for target in stage_targets(config, layout, stage):
            found += [{**s, "source": f"{s['source']} ({target.label})"} if "/" in target.label
                      else s for s in eval_samples(target.eval_dir)]
        if found:
            samples[stage] = found

    from r1pipe import results  # the result card, written first so the page links it

    card = results.write(config)
    page = render_html(config, layout, figures, comp, stage_overview(config, layout), samples,
                       results_path=card, checks=results.read_checks(layout))
    index = out / "index.html"
    atomic_write(index, page)
    return Report(out, index, figures, samples)


# ---------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#f6f7f9}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:36px 0 10px;padding-top:8px;
border-top:1px solid #dde1e6}h3{font-size:16px;margin:22px 0 8px}
.meta{color:#5f6670;margin:0 0 18px}
table{border-collapse:collapse;background:#fff;margin:8px 0 14px;font-size:14px}
th,td{border:1px solid #dde1e6;padding:5px 10px;text-align:left;vertical-align:top}
th{background:#eef1f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.sub{color:#5f6670;font-size:12px}
figure{margin:10px 0 22px;background:#fff;border:1px solid #dde1e6;border-radius:6px;
padding:10px}figure img{max-width:100%;height:auto;display:block}
figcaption{color:#5f6670;font-size:13px;margin-top:6px}
.status-finished{color:#1a7f37;font-weight:600}.status-failed{color:#cf222e;font-weight:600}
.status-running,.status-interrupted,.status-partial{color:#9a6700;font-weight:600}
.status-stale{color:#8250df;font-weight:600}
.sample{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:8px 0;
padding:8px 12px}
.sample summary{cursor:pointer;font-weight:600}.sample .q{font-weight:400}
.sample pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:8px;
border-radius:4px;font-size:13px;max-height:360px;overflow:auto;margin:6px 0}
.tag{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;margin-left:6px;
background:#eef1f5}.tag.ok{background:#dafbe1;color:#1a7f37}.tag.bad{background:#ffebe9;
color:#cf222e}
nav a{margin-right:14px}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _img(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figure_html(fig: FigureData) -> str:
    assert fig.path is not None
    return (f'<figure><img src="{_img(fig.path)}" alt="{_esc(fig.title)}">'
            f"<figcaption>{_esc(fig.caption)} <span class='sub'>({_esc(fig.path.name)})</span>"
            "</figcaption></figure>")


def _overview_html(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        took = "" if row["seconds"] is None else _duration(row["seconds"])
        headline = "; ".join(f"{_esc(k)}: {_esc(v)}" for k, v in headline_items(row["summary"]))
        body.append(f"<tr><th>{_esc(row['stage'])}</th><td class='status-{_esc(row['status'])}'>"
                    f"{_esc(row['status'])}</td><td class='num'>{took}</td>"
                    f"<td class='sub'>{headline}</td></tr>")
    return ("<table><tr><th>stage</th><th>status</th><th>time</th><th>headline</th></tr>"
            + "".join(body) + "</table>")


def headline_items(summary: Mapping[str, Any], limit: int = 8) -> list[tuple[str, str]]:
    """The numbers worth a glance: steps first, then `x (first)`/`x (last)` pairs shown as
    `first → last`, then other plain values; nested counts (filter tables) are left out."""
    items: list[tuple[str, str]] = []
    if "steps" in summary:
        items.append(("steps", _fmt(summary["steps"])))
    for key, value in summary.items():
        if key.endswith(" (first)") and f"{key[:-8]} (last)" in summary:
            items.append((key[:-8], f"{_fmt(value)} → {_fmt(summary[key[:-8] + ' (last)'])}"))
    for key, value in summary.items():
        if key == "steps" or key.endswith((" (first)", " (last)")) or value is None:
            continue
        if isinstance(value, (int, float, str, bool)):
            items.append((key, _fmt(value)))
    return items[:limit]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def question_of(prompt: str) -> str:
    """The question inside a rendered prompt (after the R1-Zero template's "User:", or the
    last user turn), on one line."""
    text = prompt
    if "User:" in text:
        text = text.rsplit("User:", 1)[1].strip().removesuffix("Assistant:").strip()
        if text.endswith("?."):  # the template's full stop after a question
            text = text[:-1]
    elif "[user]" in text:
        text = text.rsplit("[user]", 1)[1].split("\n[", 1)[0]
    return " ".join(text.split())


def _short(text: Any, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _sample_html(sample: dict[str, Any], open_: bool = False) -> str:
    scores = sample.get("scores") or {}
    verdict = scores.get("verdict")
    tag = ""
    if verdict in ("correct", "wrong", "unverifiable"):
        cls = "ok" if verdict == "correct" else "bad" if verdict == "wrong" else ""
        tag = f"<span class='tag {cls}'>{_esc(verdict)}</span>"
    details = " · ".join(f"{_esc(k)}: {_esc(_short(_fmt(v), 24))}" for k, v in scores.items()
                         if k != "verdict" and v is not None)
    completion = sample.get("completion") or ""
    cut = len(completion) > MAX_SAMPLE_CHARS
    shown = completion[:MAX_SAMPLE_CHARS] + ("\n… (cut)" if cut else "")
    prompt = sample.get("prompt") or ""
    prompt = ("…" + prompt[-400:]) if len(prompt) > 400 else prompt
    question = _short(question_of(sample.get("prompt") or ""), 90)
    return (f"<details class='sample'{' open' if open_ else ''}><summary>"
            f"{_esc(sample.get('source', ''))}{tag} <span class='q'>{_esc(question)}</span>"
            f"<br><span class='sub'>{details}</span></summary>"
            f"<div class='sub'>prompt</div><pre>{_esc(prompt)}</pre>"
            f"<div class='sub'>completion</div><pre>{_esc(shown) or '(empty)'}</pre></details>")


def render_html(config: PipelineConfig, layout: RunLayout, figures: list[FigureData],
                comp: Comparison, overview: list[dict[str, Any]],
                samples: dict[str, list[dict[str, Any]]], *, results_path: Path | None = None,
                checks: list[tuple[str, str, str]] | None = None) -> str:
    """index.html: one file, images embedded, no scripts or external resources.

    `results_path`: the run's RESULTS.md, linked; `checks`: (stage, gate or health rule,
    verdict) rows, the gates and training-health verdicts (r1pipe/results.py)."""
    from r1pipe.evaluation.table import html_table

    when = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    base = config.base_model
    parts = [f"<h1>{_esc(config.name)}</h1>",
             f"<p class='meta'>run dir <code>{_esc(layout.root)}</code> · base model "
             f"{_esc(base.describe())} · report built {when}</p>",
             "<nav><a href='#stages'>stages</a><a href='#eval'>evaluation</a>"
             "<a href='#training'>training</a><a href='#samples'>samples</a></nav>",
             "<h2 id='stages'>Stages</h2>", _overview_html(overview)]
    if results_path is not None:
        # named, not linked: the page stays one self-contained file
        parts.append(f"<p class='meta'>Result card: <code>{_esc(results_path)}</code> (and "
                     "RESULTS.json beside it)</p>")
    if checks:
        parts.append("<h2 id='checks'>Gates and training health</h2><table><tr><th>stage"
                     "</th><th>check</th><th>verdict</th></tr>" + "".join(
                         f"<tr><td>{_esc(a)}</td><td>{_esc(b)}</td><td>{_esc(c)}</td></tr>"
                         for a, b, c in checks) + "</table>")
    parts.append("<h2 id='eval'>Evaluation</h2>")
    table = html_table(comp)
    parts.append(table or "<p class='sub'>No evaluation yet: add benchmarks under "
                 "<code>eval:</code> and run <code>r1pipe eval</code> (or set "
                 "<code>eval.after_each_stage: true</code>).</p>")
    parts += [_figure_html(f) for f in figures if f.kind == "bars"]
    funnels = [f for f in figures if f.kind == "funnel"]
    if funnels:
        parts.append("<h2 id='funnel'>Rejection sampling</h2>")
        parts += [_figure_html(f) for f in funnels]
    parts.append("<h2 id='training'>Training curves</h2>")
    lines = [f for f in figures if f.kind == "lines"]
    parts += [_figure_html(f) for f in lines] or [
        "<p class='sub'>No training metrics yet.</p>"]
    parts.append("<h2 id='samples'>Sample completions</h2>")
    if not samples:
        parts.append("<p class='sub'>No samples yet.</p>")
    for stage, items in samples.items():
        parts.append(f"<h3>{_esc(stage)}</h3>" + "".join(_sample_html(s, open_=i == 0)
                                                          for i, s in enumerate(items)))
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{_esc(config.name)}: r1pipe report</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


__all__ = [
    "FigureData",
    "Panel",
    "Report",
    "build_report",
    "eval_figure",
    "funnel_figure",
    "funnel_steps",
    "metric_steps",
    "render",
    "rl_figure",
    "series",
    "sft_figure",
]
