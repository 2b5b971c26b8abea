"""Decontamination: n-gram matching, the report, dropping contaminated training prompts, and
the engine hook on a smoke-like pipeline whose training data holds three benchmark problems."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.decontam import BenchmarkIndex, ngrams, words

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path_factory.getbasetemp() / "r1pipe-cache"))


def test_words_and_ngrams_follow_open_r1() -> None:
    assert words("What's the VALUE of x, if  x+1 = 3?") == [
        "whats", "the", "value", "of", "x", "if", "x1", "3"]
    assert list(ngrams(["a", "b", "c", "d"], 3)) == ["a b c", "b c d"]
    assert list(ngrams(["a", "b"], 3)) == []


BENCH = [
    "Find the number of ordered pairs of positive integers (a, b) such that a + b = 1000 and "
    "neither a nor b has a zero digit.",
    "Let S be the set of all rational numbers that can be written as a repeating decimal; "
    "find the sum of the numerators of its elements in lowest terms.",
    "A bug walks along the edges of a regular tetrahedron, choosing each edge at random; "
    "what is the probability it is back at its start after seven moves?",
    "Compute the remainder when the product of the first one hundred odd primes is divided "
    "by the square of the smallest of them.",
    "Two circles of radius five and seven are externally tangent; find the length of their "
    "common external tangent segment between the points of tangency.",
    "What is 17 + 25?",  # shorter than 8 words: matched by its whole text only
]


def test_index_matches_shared_ngrams_whatever_the_case_and_punctuation() -> None:
    index = BenchmarkIndex(8)
    for i, text in enumerate(BENCH):
        index.add("bench", f"b{i}", text)
    assert index.prompts == {"bench": 6}
    # the same problem inside a longer prompt, in other case and punctuation
    inside = "Solve this. " + BENCH[2].upper().replace(";", " --") + " Show your work!"
    doc, gram = index.match(inside)
    assert index.documents[doc][1] == "b2" and len(gram.split()) == 8
    # seven words in common is not contamination at n = 8
    assert index.match("Find the number of ordered pairs of dogs in the park today") is None
    assert index.match("find the number of ordered pairs of positive integers") is not None
    # a short benchmark prompt matches only itself
    assert index.documents[index.match("what is 17 + 25")[0]][1] == "b5"
    assert index.match("What is 17 + 25 plus one?") is None
    assert index.match("") is None
    # n is configurable
    small = BenchmarkIndex(3)
    small.add("bench", "b0", BENCH[0])
    assert small.match("the ordered pairs are cats") is None
    assert small.match("count ordered pairs of positive things") is not None


PIPELINE = """\
name: decon
run_dir: {run}
seed: 7
base_model: {{builtin: tiny-llama}}
data:
  train: {{path: {train}}}
  general: {{builtin: general, size: 4, test_size: 0}}
generation: {{backend: hf, max_new_tokens: 8, batch_size: 8}}
eval:
  samples: 2
  max_new_tokens: 8
  benchmarks:
    olympiad: {{path: {bench}}}
{decon}
stages:
  r1_zero:
    from: base
    data: train
    trainer: {{max_steps: 1, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 8, save_steps: 1}}
"""


def _pipeline(tmp_path: Path, decon: str = "") -> Path:
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"id": f"b{i}", "prompt": t, "answer": "1"}) + "\n"
                             for i, t in enumerate(BENCH)))
    own = [f"Training problem {i}: a farmer has {i + 3} sheep and buys {2 * i} more; how many "
           f"sheep does the farmer have now?" for i in range(12)]
    copied = {"t-copy-0": BENCH[0], "t-copy-1": "Problem: " + BENCH[3].lower(),
              "t-copy-2": BENCH[4].replace(";", ".") + " Give the exact value."}
    rows = [{"id": f"t{i}", "prompt": p, "answer": str(i)} for i, p in enumerate(own)]
    rows[4:4] = [{"id": k, "prompt": v, "answer": "1"} for k, v in copied.items()]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "p.yaml"
    path.write_text(PIPELINE.format(run=tmp_path / "run", train=train, bench=bench,
                                    decon=decon))
    return path


COPIES = {"t-copy-0", "t-copy-1", "t-copy-2"}


def test_report_lists_the_three_copied_problems_and_loading_drops_them(tmp_path: Path) -> None:
    from r1pipe.config import load
    from r1pipe.data.prepare import load_input
    from r1pipe.decontam import counts, decontaminate, read_report

    cfg = load(_pipeline(tmp_path))
    assert {r["id"] for r in load_input(cfg, "train")} >= COPIES  # no report yet: all 15
    report = decontaminate(cfg)
    train = report["sources"]["train"]
    assert (train["prompts"], train["contaminated"], train["dropped"]) == (15, 3, 3)
    assert train["by_benchmark"] == {"olympiad": 3}
    assert {e["id"] for e in train["examples"]["olympiad"]} == COPIES
    assert report["sources"]["general"]["contaminated"] == 0
    assert report["benchmarks"] == {"olympiad": {"prompts": 6}} and report["contaminated"] == 3
    folder = tmp_path / "run/decontamination"
    lines = [json.loads(line) for line in (folder / "contaminated.jsonl").read_text().splitlines()]
    assert {(x["source"], x["id"]) for x in lines} == {("train", i) for i in COPIES}
    assert {x["benchmark_id"] for x in lines} == {"b0", "b3", "b4"}
    card = (folder / "README.md").read_text()
    assert "| train | 15 | 3 | 3 |" in card and "t-copy-1" in card
    assert counts(cfg) == {"train": {"contaminated": 3, "dropped": 3},
                           "general": {"contaminated": 0, "dropped": 0}}

    kept = [r["id"] for r in load_input(cfg, "train")]
    assert len(kept) == 12 and not COPIES & set(kept)
    assert len(list(load_input(cfg, "train", decontaminate=False))) == 15

    # up to date: no second scan; other settings: a new report
    assert decontaminate(cfg)["time"] == report["time"]
    assert read_report(load(_pipeline(tmp_path), ["eval.decontamination.ngram=30"])) is None
    wide = decontaminate(load(_pipeline(tmp_path), ["eval.decontamination.ngram=30"]))
    assert wide["sources"]["train"]["contaminated"] == 1  # only the verbatim copy is that long

    # drop: false reports but keeps every prompt
    keep = load(_pipeline(tmp_path), ["eval.decontamination.drop=false"])
    kept_report = decontaminate(keep)
    assert kept_report["sources"]["train"]["contaminated"] == 3
    assert kept_report["dropped"] == 0
    assert len(list(load_input(keep, "train"))) == 15


@pytest.mark.slow
def test_run_reports_and_drops_contaminated_prompts_before_training(tmp_path: Path) -> None:
    """`r1pipe run`: the hook writes the report before the first stage, which then trains on
    the 12 clean prompts only."""
    cfg = _pipeline(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    shown = out.stdout + out.stderr
    assert "decontamination" in shown and "3 of 15 contaminated" in shown
    report = json.loads((tmp_path / "run/decontamination/report.json").read_text())
    assert report["sources"]["train"]["dropped"] == 3
    state = json.loads((tmp_path / "run/r1_zero/stage.json").read_text())
    assert state["status"] == "finished"
    assert state["summary"]["prompts"] == 12
    status = subprocess.run([sys.executable, "-m", "r1pipe.cli", "status", str(cfg), "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert json.loads(status.stdout)["decontamination"]["train"] == {"contaminated": 3,
                                                                     "dropped": 3}
    shown = subprocess.run([sys.executable, "-m", "r1pipe.cli", "status", str(cfg)],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert "train 3 found, 3 dropped" in shown.stdout
