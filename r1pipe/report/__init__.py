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

The parts live by what they hold: `figures` (what is plotted), `draw` (matplotlib),
`samples` (completions), `page` (the HTML); this module builds the report from them and
keeps every name importable from `r1pipe.report` as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig

from r1pipe.report.draw import PALETTE, SMOOTH_ABOVE, render, smooth
from r1pipe.report.figures import (
    FUNNELS,
    PASSED,
    FigureData,
    Panel,
    Series,
    eval_figure,
    filter_counts,
    find_filter_summary,
    funnel_figure,
    funnel_steps,
    is_rl,
    is_sft,
    metric_steps,
    prompt_filter_funnel,
    rl_figure,
    series,
    sft_figure,
    stage_funnels,
)
from r1pipe.report.page import headline_items, question_of, render_html
from r1pipe.report.samples import (
    MAX_SAMPLE_CHARS,
    SAMPLES_PER_SOURCE,
    eval_samples,
    training_samples,
)


@dataclass
class Report:
    """What `build_report` wrote."""

    dir: Path
    index: Path
    figures: list[FigureData]
    samples: dict[str, list[dict[str, Any]]]


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


__all__ = [
    "FUNNELS",
    "MAX_SAMPLE_CHARS",
    "PALETTE",
    "PASSED",
    "SAMPLES_PER_SOURCE",
    "SMOOTH_ABOVE",
    "Series",
    "eval_samples",
    "filter_counts",
    "find_filter_summary",
    "headline_items",
    "is_rl",
    "is_sft",
    "metric_groups",
    "prompt_filter_funnel",
    "question_of",
    "render_html",
    "smooth",
    "stage_figures",
    "stage_funnels",
    "stage_overview",
    "training_samples",
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
