"""Drawing a `FigureData` with matplotlib, kept apart from what is plotted: `render` writes the
PNG and reads back from the Axes what it drew (`drawn`), so tests check curves, not pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


from r1pipe.report.figures import FigureData, Series

# Stable colours: the total reward is always dark, rows of the eval chart keep their colour.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
SMOOTH_ABOVE = 30  # points; longer curves get a smoothed line over the faint raw one


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
