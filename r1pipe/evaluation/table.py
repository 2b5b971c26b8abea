"""The before/after table: one model of a run's results, rendered for every reader.

`comparison` reads every summary of the run once into a `Comparison` (rows = models in
pipeline order, columns = benchmarks; each cell a summary and whether it is stale). The
markdown file (`runs/<name>/eval_table.md`), the terminal (`r1pipe eval --compare`) and the
HTML report (`r1pipe report`) all render that one model, and the text of a cell (pass@1 ±
SE in %, cons@k, format rate, length) is formatted here only, so a number reads the same in
every place it is shown.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from r1pipe.evaluation.runner import SUMMARY_FILE, Summary, eval_settings
from r1pipe.evaluation.targets import BASE_LABEL, result_dirs

if TYPE_CHECKING:
    from rich.text import Text

    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig

TABLE_FILE = "eval_table.md"

# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


@dataclass
class Cell:
    summary: Summary
    stale: bool  # evaluated with other settings than the current `eval:` block


@dataclass
class Comparison:
    """Rows = models in pipeline order, columns = benchmarks."""

    benchmarks: list[str]
    rows: dict[str, dict[str, Cell | None]]
    settings: dict[str, Any]  # the `eval:` block's defaults
    per_benchmark: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each ran with

    @property
    def uniform(self) -> bool:
        """Whether every benchmark runs with the `eval:` block's sampling and template."""
        return all(all(v.get(k) == self.settings.get(k) for k in self.settings)
                   and v.get("answer", "math") == "math" and not v.get("instruction")
                   for v in self.per_benchmark.values())

    @property
    def k_label(self) -> str:
        """`cons@4` when every benchmark draws the same k, else `cons@k`."""
        ks = {v.get("samples") for v in self.per_benchmark.values()} or {
            self.settings["samples"]}
        return f"cons@{ks.pop()}" if len(ks) == 1 else "cons@k"

    def value(self, row: str, benchmark: str, key: str) -> float | None:
        cell = self.rows.get(row, {}).get(benchmark)
        return None if cell is None else cell.summary.get(key)

    @property
    def stale(self) -> bool:
        """Whether some cell was evaluated with other settings than the current ones."""
        return any(c and c.stale for cells in self.rows.values() for c in cells.values())


def comparison(config: PipelineConfig, layout: RunLayout | None = None) -> Comparison:
    """Every summary of the run, as a table (cells None where nothing was evaluated)."""
    from r1pipe.artifacts import RunLayout, read_json

    layout = layout or RunLayout(config.resolved_run_dir())
    benchmarks = list(config.eval.benchmarks)
    current = {b: eval_settings(config, b) for b in benchmarks}
    rows: dict[str, dict[str, Cell | None]] = {}
    for label, eval_dir in result_dirs(config, layout):
        cells: dict[str, Cell | None] = {}
        for bench in benchmarks:
            summary = read_json(eval_dir / bench / SUMMARY_FILE)
            cells[bench] = None if summary is None else Cell(
                summary, _comparable(summary.get("settings")) != _comparable(current[bench]))
        if label == BASE_LABEL or any(cells.values()):
            rows[label] = cells
    ev = config.eval
    settings = {"samples": ev.samples, "temperature": ev.temperature, "top_p": ev.top_p,
                "max_new_tokens": ev.max_new_tokens, "template": ev.prompts.template}
    per_benchmark = {}
    for bench in benchmarks:
        b = ev.benchmark(bench)
        per_benchmark[bench] = {"samples": b.samples, "temperature": b.temperature,
                                "top_p": b.top_p, "max_new_tokens": b.max_new_tokens,
                                "template": b.prompts.template, "answer": b.answer,
                                "instruction": b.instruction}
    return Comparison(benchmarks, rows, settings, per_benchmark)


def _comparable(settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """Settings that change the numbers: not file times (a touched benchmark file still
    compares) nor the shard size."""
    if not settings:
        return None
    out = dict(settings)
    out.pop("chunk_size", None)
    source = dict(out.get("source") or {})
    source.pop("files", None)
    out["source"] = source
    return out


# ---------------------------------------------------------------------------------------
# Cell text, once for every rendering
# ---------------------------------------------------------------------------------------

NONE = "–"  # a number that is not there


def pct(value: float | None) -> str:
    """A rate in %, one decimal: `41.3`."""
    return NONE if value is None else f"{100 * value:.1f}"


def plus_minus(stderr: float) -> str:
    """` ± 2.1`: a standard error in %, to follow its rate."""
    return f" ± {100 * stderr:.1f}"


def tokens(value: float | None) -> str:
    """A mean length in whole tokens: `812`."""
    return NONE if value is None else f"{value:.0f}"


def cell_text(cell: Cell | None) -> str:
    """`41.3 ± 2.1` (pass@1 and its standard error, in %)."""
    if cell is None:
        return NONE
    s = cell.summary
    text = pct(s.get("pass@1"))
    if s.get("pass@1_stderr") is not None:
        text += plus_minus(s["pass@1_stderr"])
    return text + (" †" if cell.stale else "")


@dataclass(frozen=True)
class CellDetail:
    """The numbers shown under a cell's pass@1 (terminal and HTML), as text."""

    k: Any  # samples per prompt of this summary (a list when prompts differ)
    cons: str
    format_rate: str
    length: str


def cell_detail(cell: Cell) -> CellDetail:
    s = cell.summary
    return CellDetail(s.get("k"), pct(s.get("cons@k")), pct(s.get("format_rate")),
                      tokens(s.get("mean_length")))


METRIC_TABLES: tuple[tuple[str, str, Callable[[float | None], str]], ...] = (
    ("cons@k", "cons@k (%): the majority answer of the k samples is right", pct),
    ("format_rate", "format rate (%): samples laid out as reasoning, then an answer", pct),
    ("mean_length", "mean response length (tokens)", tokens),
    ("truncated_rate", "truncated (%): samples that hit max_new_tokens", pct),
)

STALE_NOTE = "evaluated with other settings than the current `eval:` block"

# ---------------------------------------------------------------------------------------
# Markdown: runs/<name>/eval_table.md
# ---------------------------------------------------------------------------------------


Rendered = TypeVar("Rendered")


def grid(comp: Comparison, render: Callable[[Cell], Rendered], *, empty: Rendered
         ) -> list[tuple[str, list[Rendered]]]:
    """(row label, one rendered cell per benchmark) for every row: the one walk over the
    table that the markdown, terminal and HTML renderings share (`empty` where a model was
    not evaluated on a benchmark)."""
    return [(label, [render(cells[b]) if cells.get(b) is not None else empty
                     for b in comp.benchmarks]) for label, cells in comp.rows.items()]


def markdown_table(comp: Comparison, title: str = "Evaluation") -> str:
    """The comparison as markdown: pass@1 ± SE first, then the other metrics."""
    s = comp.settings
    lines = [f"# {title}", ""]
    if comp.uniform:
        lines += [f"pass@1 (%) ± standard error over prompts; k = {s['samples']} samples per "
                  f"prompt at temperature {s['temperature']}, top-p {s['top_p']}, up to "
                  f"{s['max_new_tokens']} new tokens, `{s['template']}` template.", ""]
    else:
        lines += ["pass@1 (%) ± standard error over prompts, each benchmark with its own "
                  "settings:", "", "| benchmark | k | temperature | top-p | max new tokens | "
                  "template | answer | instruction |", "|---|---:|---:|---:|---:|---|---|---|"]
        for bench, b in comp.per_benchmark.items():
            lines.append(f"| {bench} | {b['samples']} | {b['temperature']} | {b['top_p']} | "
                         f"{b['max_new_tokens']} | `{b['template']}` | {b['answer']} | "
                         f"{b['instruction'] or NONE} |")
        lines.append("")
    header = "| model | " + " | ".join(comp.benchmarks) + " |"
    rule = "|---|" + "---:|" * len(comp.benchmarks)
    lines += ["## pass@1", "", header, rule]
    lines += [f"| {label} | " + " | ".join(texts) + " |"
              for label, texts in grid(comp, cell_text, empty=cell_text(None))]
    for key, caption, fmt in METRIC_TABLES:
        caption = caption.replace("cons@k", comp.k_label)
        lines += ["", f"## {caption}", "", header, rule]
        lines += [f"| {label} | " + " | ".join(texts) + " |" for label, texts in
                  grid(comp, lambda c, k=key, f=fmt: f(c.summary.get(k)), empty=NONE)]
    if comp.stale:
        lines += ["", f"† {STALE_NOTE}; run `r1pipe eval` to refresh."]
    return "\n".join(lines) + "\n"


def write_table(config: PipelineConfig, layout: RunLayout | None = None) -> Path:
    """`runs/<name>/eval_table.md`, rewritten whenever an evaluation finishes."""
    from r1pipe.artifacts import RunLayout, atomic_write

    layout = layout or RunLayout(config.resolved_run_dir())
    path = layout.root / TABLE_FILE
    atomic_write(path, markdown_table(comparison(config, layout), f"Evaluation: {config.name}"))
    return path


# ---------------------------------------------------------------------------------------
# Terminal
# ---------------------------------------------------------------------------------------


def print_comparison(comp: Comparison, title: str) -> None:
    """The table on the terminal: pass@1 ± SE, with cons@k, format rate and length below."""
    from rich.table import Table

    from r1pipe.terminal import line, show

    table = Table(title=title, caption=f"pass@1 % ± SE, then {comp.k_label} %, format % and "
                  "mean response tokens", show_lines=True)
    table.add_column("model", style="bold")
    for bench in comp.benchmarks:
        b = comp.per_benchmark.get(bench)
        table.add_column(bench if comp.uniform or not b else
                         f"{bench}\nk={b['samples']} · {b['answer']}", justify="right")
    def render(cell: Cell) -> Text:
        d = cell_detail(cell)
        return line((cell_text(cell), "bold"), "\n",
                    (f"cons {d.cons} · fmt {d.format_rate} · {d.length} tok", "dim"))

    for label, texts in grid(comp, render, empty=line((NONE, "dim"))):
        table.add_row(label, *texts)
    show(table, stdout=True)  # stdout: the answer of `r1pipe eval --compare`


def print_results(label: str, results: dict[str, Summary | None]) -> None:
    """The numbers of one model after it was evaluated."""
    from r1pipe.progress import summary_table

    rows: dict[str, Any] = {}
    for bench, s in results.items():
        if s is None:
            rows[bench] = "this --shard part is done; run without --shard to merge"
            continue
        se = s.get("pass@1_stderr")
        rows[f"{bench} pass@1"] = pct(s.get("pass@1")) + (plus_minus(se) if se else "")
        rows[f"{bench} cons@{s.get('k')}"] = pct(s.get("cons@k"))
        rows[f"{bench} format rate"] = pct(s.get("format_rate"))
        rows[f"{bench} mean length"] = (f"{tokens(s['mean_length'])} tokens"
                                        if s.get("mean_length") is not None else NONE)
    summary_table(f"eval · {label}", rows)


# ---------------------------------------------------------------------------------------
# HTML: the report's evaluation section
# ---------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(comp: Comparison) -> str:
    """The comparison as an HTML table with its note ("" when nothing was evaluated):
    pass@1 ± SE in bold, cons@k, format rate and length below it."""
    if not comp.rows or not comp.benchmarks:
        return ""
    head = "".join(f"<th>{_esc(b)}</th>" for b in comp.benchmarks)
    def render(cell: Cell) -> str:
        d = cell_detail(cell)
        return (f"<td class='num'><b>{_esc(cell_text(cell))}</b><br><span class='sub'>"
                f"cons@{_esc(d.k)} {d.cons} · format {d.format_rate} · {d.length} "
                "tokens</span></td>")

    body = [f"<tr><th>{_esc(label)}</th>{''.join(tds)}</tr>"
            for label, tds in grid(comp, render, empty=f"<td class='num'>{NONE}</td>")]
    st = comp.settings
    note = (f"pass@1 (%) ± standard error over prompts in bold; below it {comp.k_label} "
            "(%), format rate (%) and mean response length. ")
    if comp.uniform:
        note += (f"k = {st['samples']} samples per prompt, temperature {st['temperature']}, "
                 f"top-p {st['top_p']}, up to {st['max_new_tokens']} new tokens, "
                 f"{st['template']} template.")
    else:
        note += "Per benchmark: " + "; ".join(
            f"{bench}: k = {b['samples']}, temperature {b['temperature']}, top-p {b['top_p']}, "
            f"up to {b['max_new_tokens']} new tokens, {b['template']} template, "
            f"{b['answer']} answers" for bench, b in comp.per_benchmark.items()) + "."
    if comp.stale:
        note += f" † {STALE_NOTE.replace('`', '')}."
    return (f"<table><tr><th>model</th>{head}</tr>{''.join(body)}</table>"
            f"<p class='sub'>{_esc(note)}</p>")
