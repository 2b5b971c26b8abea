"""Decontamination: training prompts that contain an eval benchmark's problems.

A model trained on a benchmark's problems scores well on that benchmark for the wrong reason.
Before the first stage trains, every prompt of every `data:` source is compared with every
benchmark under `eval.benchmarks:` by word n-grams, the way open-r1's
`scripts/decontaminate.py` does it: text lowercased, punctuation removed, split on
whitespace, and a training prompt that shares one n-gram (n = 8 by default) with a benchmark
prompt is contaminated. A benchmark prompt shorter than n words can share no n-gram; it
matches a training prompt whose normalised text is the same words.

Memory stays bounded whatever the size of the training data: the benchmarks (hundreds to a
few thousand problems) are indexed as a set of n-gram hashes, and training prompts are
streamed one at a time through `load_input` (the same loader and record ids the stages use);
only matches are kept. A hash hit is confirmed against the benchmark prompt's text, so a
collision never drops a prompt.

Written to `runs/<name>/decontamination/`:

    contaminated.jsonl   one line per contaminated training prompt: source, id, benchmark,
                         benchmark prompt id, the shared n-gram, the prompt's start
    report.json          counts per source and benchmark, examples, settings, fingerprint
    README.md            the same as a card a person reads

With `eval.decontamination.drop` on (the default) `r1pipe.data.prepare.load_input` leaves
the listed prompts out, so no stage trains or samples on them. The scan runs as an engine
hook's `before_stages` event (the CLI passes `Hook.of(r1pipe.decontam)` to
`pipeline.execute`), before the first stage, and again only when the sources, the
benchmarks or the settings change.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from r1pipe.data.prepare import CONTAMINATED_FILE, DECONTAMINATION_DIR, load_input

if TYPE_CHECKING:
    from pathlib import Path

    from r1pipe.config import PipelineConfig
    from r1pipe.contract import Shard
    from r1pipe.pipeline import Plan

REPORT_FILE = "report.json"
CARD_FILE = "README.md"
_PUNCT = re.compile(r"[^\w\s]")
_EXAMPLE_CHARS = 300


def words(text: str) -> list[str]:
    """The words a prompt is compared by: lowercased, punctuation removed, whitespace split."""
    return _PUNCT.sub("", text.lower()).split()


def ngrams(tokens: list[str], n: int) -> Iterator[str]:
    """The word n-grams of `tokens`, as space-joined strings."""
    for i in range(len(tokens) - n + 1):
        yield " ".join(tokens[i:i + n])


def prompt_text(prompt: Any) -> str:
    """A record's prompt as text: a string, or the contents of a conversation's turns."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m)
                         for m in prompt)
    return "" if prompt is None else str(prompt)


@dataclass
class BenchmarkIndex:
    """The n-grams of every benchmark prompt: hash -> (benchmark, prompt) of its first owner.

    Hashes, not strings, keep the index small; a hit is confirmed on the owner's text.
    """

    n: int
    grams: dict[int, int] = field(default_factory=dict)  # n-gram hash -> document number
    short: dict[str, int] = field(default_factory=dict)  # whole text of a short prompt -> doc
    documents: list[tuple[str, str, str]] = field(default_factory=list)  # benchmark, id, text
    prompts: dict[str, int] = field(default_factory=dict)  # per benchmark

    def add(self, benchmark: str, record_id: str, text: str) -> None:
        tokens = words(text)
        doc = len(self.documents)
        self.documents.append((benchmark, record_id, " ".join(tokens)))
        self.prompts[benchmark] = self.prompts.get(benchmark, 0) + 1
        if len(tokens) < self.n:
            if tokens:
                self.short.setdefault(" ".join(tokens), doc)
            return
        for gram in ngrams(tokens, self.n):
            self.grams.setdefault(hash(gram), doc)

    def match(self, text: str) -> tuple[int, str] | None:
        """(document, shared n-gram) of the first benchmark prompt `text` overlaps, or None."""
        tokens = words(text)
        if not tokens:
            return None
        joined = " ".join(tokens)
        doc = self.short.get(joined)
        if doc is not None:
            return doc, joined
        grams = self.grams
        for gram in ngrams(tokens, self.n):
            doc = grams.get(hash(gram))
            if doc is not None and f" {gram} " in f" {self.documents[doc][2]} ":
                return doc, gram
        return None


@dataclass
class SourceReport:
    """What one training source held: prompts read, contaminated, per benchmark, examples."""

    prompts: int = 0
    contaminated: int = 0
    by_benchmark: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    seconds: float = 0.0


def scan(records: Iterable[dict[str, Any]], index: BenchmarkIndex, *, source: str,
         examples: int = 5) -> tuple[SourceReport, Iterator[dict[str, Any]]]:
    """Compare a stream of training records with the index.

    Returns the report (filled in as the stream is consumed) and an iterator of the
    contaminated records' lines for `contaminated.jsonl`; consume the iterator to scan.
    """
    report = SourceReport()

    def matches() -> Iterator[dict[str, Any]]:
        started = time.perf_counter()
        for record in records:
            report.prompts += 1
            text = prompt_text(record.get("prompt"))
            hit = index.match(text)
            if hit is None:
                continue
            doc, gram = hit
            benchmark, bench_id, _ = index.documents[doc]
            report.contaminated += 1
            report.by_benchmark[benchmark] = report.by_benchmark.get(benchmark, 0) + 1
            line = {"source": source, "id": str(record.get("id")), "benchmark": benchmark,
                    "benchmark_id": bench_id, "ngram": gram, "prompt": text[:_EXAMPLE_CHARS]}
            kept = report.examples.setdefault(benchmark, [])
            if len(kept) < examples:
                kept.append(line)
            yield line
        report.seconds = time.perf_counter() - started

    return report, matches()


# ---------------------------------------------------------------------------------------
# The pipeline: which sources, which benchmarks, the report files
# ---------------------------------------------------------------------------------------


def rows(data: Any, batch_size: int = 1_000) -> Iterator[dict[str, Any]]:
    """`{id, prompt}` of each record of a `datasets` object, read in batches (several times
    faster than row by row; a streamed source stays streamed)."""
    data = data.select_columns(["id", "prompt"])
    for batch in data.iter(batch_size=batch_size):
        yield from ({"id": i, "prompt": p} for i, p in zip(batch["id"], batch["prompt"],
                                                           strict=True))


def report_dir(config: PipelineConfig) -> Path:
    return config.resolved_run_dir() / DECONTAMINATION_DIR


def training_sources(config: PipelineConfig) -> list[str]:
    """Every `data:` source, except those that are themselves a benchmark (`source: name`)."""
    benchmarks = {b.source for b in config.eval.benchmarks.values() if isinstance(b.source, str)}
    return [name for name in config.data if name not in benchmarks]


def settings_fingerprint(config: PipelineConfig) -> str:
    """What decides the report: n, the sources and the benchmarks (their files' times too)."""
    from r1pipe.artifacts import fingerprint

    ev = config.eval
    return fingerprint({
        "ngram": ev.decontamination.ngram,
        "seed": config.seed,
        "sources": {name: config.data[name].identity() for name in training_sources(config)},
        "benchmarks": {name: ev.benchmark_source(name, config.data, config.source_path).identity()
                       for name in ev.benchmarks},
    })


def build_index(config: PipelineConfig) -> BenchmarkIndex:
    """The n-grams of every benchmark's questions as written in its data (before options or
    instructions are added for evaluation)."""
    from r1pipe.data.loading import load_source

    ev = config.eval
    index = BenchmarkIndex(ev.decontamination.ngram)
    for name in ev.benchmarks:
        source = ev.benchmark_source(name, config.data, config.source_path)
        for record in load_source(source, seed=config.seed, name=name):
            index.add(name, str(record.get("id")), prompt_text(record.get("prompt")))
    return index


def read_report(config: PipelineConfig) -> dict[str, Any] | None:
    """The current report (None when none was made, or it was made with other settings)."""
    from r1pipe.artifacts import read_json

    report = read_json(report_dir(config) / REPORT_FILE)
    if not report or report.get("fingerprint") != settings_fingerprint(config):
        return None
    return report


def decontaminate(config: PipelineConfig) -> dict[str, Any]:
    """Scan every training source against every benchmark; write and return the report.

    Up to date (same sources, benchmarks and n): the stored report, without a scan.
    """
    import json

    from r1pipe.artifacts import atomic_file, atomic_write, atomic_write_json

    existing = read_report(config)
    if existing is not None:
        return existing
    from r1pipe.state import claim_run_dir

    settings = config.eval.decontamination
    claim_run_dir(config.resolved_run_dir())  # r1pipe writes only into its own run dirs
    folder = report_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    index = build_index(config)
    sources: dict[str, SourceReport] = {}
    with atomic_file(folder / CONTAMINATED_FILE) as sink:
        for name in training_sources(config):
            records = rows(load_input(config, name, decontaminate=False))
            report, lines = scan(records, index, source=name, examples=settings.examples)
            for line in lines:
                sink.write((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
            sources[name] = report
    out = {
        "fingerprint": settings_fingerprint(config),
        "ngram": settings.ngram,
        "drop": settings.drop,
        "benchmarks": {b: {"prompts": index.prompts.get(b, 0)} for b in config.eval.benchmarks},
        "benchmark_ngrams": len(index.grams),
        "sources": {name: {"prompts": r.prompts, "contaminated": r.contaminated,
                           "dropped": r.contaminated if settings.drop else 0,
                           "by_benchmark": r.by_benchmark, "examples": r.examples,
                           "prompts_per_second": round(r.prompts / r.seconds, 1)
                           if r.seconds else None}
                    for name, r in sources.items()},
        "contaminated": sum(r.contaminated for r in sources.values()),
        "dropped": sum(r.contaminated for r in sources.values()) if settings.drop else 0,
        "time": started,
        "seconds": round(time.time() - started, 2),
    }
    atomic_write(folder / CARD_FILE, card(config, out))
    atomic_write_json(folder / REPORT_FILE, out)  # last: its presence means the scan finished
    return out


def card(config: PipelineConfig, report: dict[str, Any]) -> str:
    """The report as markdown: counts per source and benchmark, then examples."""
    benchmarks = list(report["benchmarks"])
    action = ("dropped from training" if report["drop"] else
              "kept (drop: false): training still sees them")
    lines = [f"# Decontamination: {config.name}", "",
             f"Training prompts sharing a {report['ngram']}-word n-gram with a benchmark prompt "
             "(lowercased, punctuation removed; open-r1's method). Contaminated prompts are "
             f"{action}. {report['contaminated']} contaminated in all; benchmark prompts: "
             + ", ".join(f"{b} {v['prompts']}" for b, v in report["benchmarks"].items()) + ".",
             "", "| source | prompts | contaminated | " + " | ".join(benchmarks) + " |",
             "|---|---:|---:|" + "---:|" * len(benchmarks)]
    for name, s in report["sources"].items():
        lines.append(f"| {name} | {s['prompts']} | {s['contaminated']} | "
                     + " | ".join(str(s["by_benchmark"].get(b, 0)) for b in benchmarks) + " |")
    for name, s in report["sources"].items():
        for bench, examples in s["examples"].items():
            lines += ["", f"## {name} × {bench}", ""]
            for ex in examples:
                prompt = ex["prompt"].replace("\n", " ").replace("|", "\\|")
                lines.append(f"- `{ex['id']}` ~ {bench} `{ex['benchmark_id']}` "
                             f"(shared: \"{ex['ngram']}\"): {prompt}")
    return "\n".join(lines) + "\n"


def counts(config: PipelineConfig) -> dict[str, Any]:
    """Per source, the contaminated prompts and how many are dropped, for `r1pipe status`
    (empty when no current report exists)."""
    report = read_report(config)
    if report is None:
        return {}
    return {name: {"contaminated": s["contaminated"], "dropped": s["dropped"]}
            for name, s in report["sources"].items()}


def before_stages(plan_: Plan, shard: Shard | None = None) -> None:
    """The engine hook, before the first stage: make the report when a stage is about to
    run, the benchmarks are set and decontamination is on; print what it found."""
    config = plan_.config
    settings = config.eval.decontamination
    if not settings.enabled or not config.eval.benchmarks:
        return
    if not plan_.to_run or not training_sources(config):
        return
    fresh = read_report(config) is None
    try:
        report = decontaminate(config)
    except Exception as exc:
        from r1pipe.contract import StageFailed

        raise StageFailed(f"decontamination failed: {type(exc).__name__}: {exc}; fix the "
                          "source or benchmark named, or set `eval.decontamination.enabled: "
                          "false`") from exc
    if fresh:
        from r1pipe.progress import summary_table

        rows: dict[str, Any] = {}
        for name, s in report["sources"].items():
            rows[name] = (f"{s['contaminated']} of {s['prompts']} contaminated"
                          + (f", dropped ({s['by_benchmark']})" if s["dropped"] else
                             f" ({s['by_benchmark']})" if s["contaminated"] else ""))
        rows["report"] = str(report_dir(config) / CARD_FILE)
        summary_table(f"decontamination · {report['ngram']}-grams", rows)
