"""The self-contained index.html of the report: the figures embedded as data URLs, the stage
overview, the before/after table and sample completions. Every value is escaped here (run
names, model output) so the page shows what was written.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    from r1pipe.artifacts import RunLayout
    from r1pipe.config import PipelineConfig
    from r1pipe.evaluation.table import Comparison

from r1pipe.report.figures import FigureData
from r1pipe.report.samples import MAX_SAMPLE_CHARS

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
