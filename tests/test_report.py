"""The run report: curves from metrics, the funnel from filter counts, PNGs that are images,
and the whole report built from a real smoke run (GRPO + eval)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1pipe.report import (
    funnel_figure,
    funnel_steps,
    metric_steps,
    render,
    rl_figure,
    series,
    sft_figure,
    stage_funnels,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> tuple[int, int]:
    from PIL import Image

    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width > 300 and height > 200, (path, width, height)
    return width, height


def _rl_records(n: int) -> list[dict]:
    """A GRPO log shaped like TRL's, with R1-Zero's trends: reward and length grow."""
    out = []
    for step in range(1, n + 1):
        out.append({"step": step, "loss": 0.01, "reward": 0.1 + step / n,
                    "reward_std": 0.2, "rewards/accuracy/mean": step / n,
                    "rewards/format/mean": 0.1, "completions/mean_length": 50.0 + 3 * step,
                    "completions/min_length": 20.0, "completions/max_length": 200.0,
                    "completions/clipped_ratio": 0.1, "kl": 0.001 * step,
                    "clip_ratio/region_mean": 0.0, "clip_ratio/low_mean": 0.0,
                    "clip_ratio/high_mean": 0.0, "entropy": 2.0 - step / (2 * n),
                    "step_time": 1.0})
    return out


def test_metric_steps_keeps_the_last_attempt_of_each_step() -> None:
    records = [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.0}, {"step": 3, "loss": 9.0},
               {"step": 3, "loss": 1.5},  # resumed from checkpoint-2: step 3 again
               {"job": "sampling", "chunk": 0},  # a generation job line, no step
               {"step": 3, "train_runtime": 10.0, "train_loss": 2.0}]
    steps = metric_steps(records)
    assert series(steps, "loss") == ([1.0, 2.0, 3.0], [3.0, 2.0, 1.5])


def test_rl_figure_has_every_curve(tmp_path: Path) -> None:
    records = _rl_records(40)
    fig = render(rl_figure("r1_zero", metric_steps(records)), tmp_path / "rl.png")
    _assert_png(tmp_path / "rl.png")
    titles = [p.title for p in fig.panels]
    assert titles[:4] == ["reward (mean over the group; band: ± std)",
                          "response length (band: min–max)", "KL(policy ‖ reference)",
                          "clip ratio (share of tokens clipped)"]
    reward = fig.drawn[titles[0]]
    steps = [float(s) for s in range(1, 41)]
    # 40 points > SMOOTH_ABOVE: the labelled line is the smoothed one, over the raw one
    assert set(reward) == {"total (weighted)", "accuracy", "format"}
    assert reward["accuracy"][0] == steps
    assert fig.panels[0].series["accuracy"] == (steps, [s / 40 for s in range(1, 41)])
    assert reward["accuracy"][1][-1] < 1.0 and reward["accuracy"][1] == sorted(
        reward["accuracy"][1])  # smoothed, still increasing
    length = fig.panels[1].series["mean"]
    assert length[1][0] == 53.0 and length[1][-1] == 170.0
    assert fig.drawn[titles[2]]["KL"][0] == steps
    assert set(fig.drawn[titles[3]]) == {"region", "low", "high"}


def test_sft_figure(tmp_path: Path) -> None:
    records = [{"step": s, "loss": 2.0 / s, "mean_token_accuracy": 0.1 * s} for s in (1, 2, 3)]
    fig = render(sft_figure("cold_start", metric_steps(records)), tmp_path / "sft.png")
    _assert_png(tmp_path / "sft.png")
    assert fig.drawn["loss (completion tokens)"]["train"] == ([1.0, 2.0, 3.0],
                                                             [2.0, 1.0, 2.0 / 3])
    assert "train" in fig.drawn["mean token accuracy"]


def test_funnel_from_filter_counts(tmp_path: Path) -> None:
    from r1pipe.filters import FilterSummary

    records = []
    for i in range(10):  # 10 samples of 5 prompts: 3 kept, the rest removed for a reason
        removed = [None, None, None, "correct", "correct", "correct", "correct", "format",
                   "truncated", "language"][i]
        records.append({"prompt_id": str(i // 2), "verdict": "rejected" if removed else "kept",
                        "removed_by": removed, "failed": [removed] if removed else []})
    counts = FilterSummary().add_all(records).as_dict()
    steps = funnel_steps(counts)
    assert steps == {"generated": 10, "not truncated": 9, "well formatted": 8,
                     "correct answer": 4, "one language": 3, "kept": 3}
    # the stage summary's flat keys (as stages/reject_sample.py writes them)
    flat = {"reasoning samples": 10, "reasoning kept": 3, "mix reasoning": 2,
            **{f"reasoning removed by {k}": v for k, v in counts["removed_by"].items()}}
    figs = stage_funnels("reject_sample", flat)
    assert len(figs) == 1 and figs[0].bars["steps"][-1] == "in the SFT mix"
    assert figs[0].name == "reject_sample-funnel-reasoning"
    nested = stage_funnels("reject_sample", {"filters": counts, "mix reasoning": 2})
    assert nested[0].bars == figs[0].bars
    fig = render(figs[0], tmp_path / "funnel.png")
    _assert_png(tmp_path / "funnel.png")
    assert fig.drawn[fig.title]["samples"][1] == [10, 9, 8, 4, 3, 3, 2]
    plain = render(funnel_figure({"generated": 5, "kept": 2}), tmp_path / "plain.png")
    assert plain.drawn[plain.title]["samples"][1] == [5, 2]


def test_funnel_needs_counts() -> None:
    assert funnel_steps({"kept": 3}) is None
    assert stage_funnels("x", {"steps": 3}) == []


@pytest.mark.parametrize("n", [1, 3])
def test_short_and_flat_curves_render(tmp_path: Path, n: int) -> None:
    records = [{**r, "kl": 0.0, "reward": 0.0} for r in _rl_records(n)]
    fig = render(rl_figure("s", metric_steps(records)), tmp_path / "flat.png")
    _assert_png(tmp_path / "flat.png")
    assert fig.drawn[fig.panels[2].title]["KL"] == ([float(s) for s in range(1, n + 1)],
                                                    [0.0] * n)


def test_metrics_lines_are_json(tmp_path: Path) -> None:
    # the report reads what MetricsLogger writes, a torn last line included
    from r1pipe.state import MetricsLogger, read_metrics

    path = tmp_path / "metrics.jsonl"
    logger = MetricsLogger(path)
    for r in _rl_records(3):
        logger.log(r)
    with open(path, "a") as fh:
        fh.write('{"step": 4, "rew')
    steps = metric_steps(read_metrics(path))
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert json.loads(path.read_text().splitlines()[0])["reward"] == pytest.approx(0.1 + 1 / 3)


# ---------------------------------------------------------------------------------------
# The report of a real smoke run: GRPO, rejection sampling + SFT, eval after each stage
# ---------------------------------------------------------------------------------------

SMOKE = """\
name: reportsmoke
run_dir: {run}
seed: 3
base_model: {{builtin: tiny-llama}}
data:
  reasoning: {{builtin: reasoning, size: 8, test_size: 4, difficulty: 1}}
  general: {{builtin: general, size: 8}}
generation: {{max_new_tokens: 16}}
eval:
  after_each_stage: true
  samples: 2
  max_new_tokens: 16
  chunk_size: 2
  benchmarks:
    arith: {{builtin: arithmetic, split: test, test_size: 4}}
    countdown: {{builtin: countdown, split: test, test_size: 2}}
stages:
  r1_zero:
    data: reasoning
    trainer: {{max_steps: 3, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 16, save_steps: 3}}
  reject_sample:
    from: r1_zero
    data: reasoning
    general_data: general
    samples_per_prompt: 2
    chunk_size: 4
    general: {{mode: reference}}
    mix: {{reasoning: 100, general: 100}}
    trainer: {{max_steps: 3, per_device_train_batch_size: 2, save_steps: 3, max_length: 128}}
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    import os

    from r1pipe import evaluation
    from r1pipe.config import load
    from r1pipe.pipeline import Hook, execute, plan

    root = tmp_path_factory.mktemp("report-smoke")
    old = os.environ.get("R1PIPE_CACHE")
    os.environ["R1PIPE_CACHE"] = str(tmp_path_factory.getbasetemp() / "r1pipe-cache")
    try:
        path = root / "p.yaml"
        path.write_text(SMOKE.format(run=root / "run"))
        execute(plan(load(path)), hooks=[Hook.of(evaluation)])
        yield root, load(path)
    finally:
        if old is None:
            os.environ.pop("R1PIPE_CACHE", None)
        else:
            os.environ["R1PIPE_CACHE"] = old


def test_report_of_a_smoke_run(smoke_run: tuple[Path, object]) -> None:
    import re

    from r1pipe.report import build_report
    from r1pipe.state import read_metrics

    root, config = smoke_run
    report = build_report(config)
    out = root / "run" / "report"
    assert report.dir == out and report.index == out / "index.html"
    names = {f.name: f for f in report.figures}
    assert set(names) == {"r1_zero-training", "reject_sample-training", "eval",
                          "reject_sample-funnel-reasoning", "reject_sample-funnel-general"}
    for fig in report.figures:
        assert fig.path == out / f"{fig.name}.png"
        _assert_png(fig.path)

    # GRPO curves: every step of metrics.jsonl, per reward function, length, KL, clip ratio
    logged = metric_steps(read_metrics(root / "run/r1_zero/metrics.jsonl"))
    rl = names["r1_zero-training"].drawn
    assert rl["reward (mean over the group; band: ± std)"]["total (weighted)"] == series(
        logged, "reward")
    assert set(rl["reward (mean over the group; band: ± std)"]) == {
        "total (weighted)", "accuracy", "format"}
    assert rl["response length (band: min–max)"]["mean"] == series(
        logged, "completions/mean_length")
    assert rl["KL(policy ‖ reference)"]["KL"][0] == [1.0, 2.0, 3.0]
    assert set(rl["clip ratio (share of tokens clipped)"]) == {"region", "low", "high"}

    # SFT loss of the rejection-sampling stage
    sft_logged = metric_steps(read_metrics(root / "run/reject_sample/metrics.jsonl"))
    sft = names["reject_sample-training"].drawn
    assert sft["loss (completion tokens)"]["train"] == series(sft_logged, "loss")
    assert len(sft["loss (completion tokens)"]["train"][0]) == 3

    # the eval table as bars: one bar group per model, pass@1 in % from the summaries
    bars = names["eval"].drawn["pass@1 by stage"]
    rows = ("base", "r1_zero", "reject_sample")
    assert set(bars) == {*rows, *(f"{r} cons@k" for r in rows)}
    for row in rows:
        for i, bench in enumerate(("arith", "countdown")):
            summary = json.loads((root / "run" / row / "eval" / bench / "summary.json")
                                 .read_text())
            assert bars[row][1][i] == pytest.approx(100 * summary["pass@1"])
            assert bars[f"{row} cons@k"][1][i] == pytest.approx(100 * summary["cons@k"])

    # the funnel adds up to the filter counts the stage kept in its filtered artifact
    from r1pipe.artifacts import read_manifest

    for name, artifact in (("reasoning", "filtered"), ("general", "general")):
        kept = read_manifest(root / "run/reject_sample/data" / artifact).meta["summary"]
        funnel = names[f"reject_sample-funnel-{name}"]
        counts = funnel.bars["counts"]
        assert counts[0] == kept["total"] and counts[-2] == kept["kept"]
        assert len(counts) == 2 + len(kept["removed_by"]) + 1
        assert funnel.bars["steps"][-2:] == ["kept", "in the SFT mix"]
        assert funnel.drawn[funnel.title]["samples"][1] == counts

    # samples: training completions (first and last step) and eval samples with verdicts
    assert [s["source"] for s in report.samples["r1_zero"][:4]] == [
        "training step 1", "training step 1", "training step 3", "training step 3"]
    assert any(s["source"] == "eval arith" and s["scores"]["verdict"] in ("correct", "wrong")
               for s in report.samples["reject_sample"])
    assert "base" in report.samples

    # the CLI writes the same report
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    out_dir = root / "cli-report"
    done = subprocess.run([sys.executable, "-m", "r1pipe.cli", "report", str(root / "p.yaml"),
                           "--out", str(out_dir)], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(repo)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(5 plots)" in done.stdout
    assert sorted(p.name for p in out_dir.glob("*.png")) == sorted(f"{n}.png" for n in names)

    page = report.index.read_text()
    assert page.count("<img ") == len(report.figures)
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", page)  # self-contained
    for text in ("r1_zero", "reject_sample", "pass@1", "Rejection sampling", "training step 3"):
        assert text in page


def test_students_sharing_a_metrics_file_get_a_figure_each(tmp_path: Path) -> None:
    from r1pipe.report import metric_groups

    records = [{"step": s, "loss": 3.0 - s, "part": "small"} for s in (1, 2)] + [
        {"step": s, "loss": 5.0 - s, "part": "large"} for s in (1, 2, 3)]
    groups = metric_groups(records)
    assert set(groups) == {"small", "large"}
    fig = render(sft_figure("distill/large", metric_steps(groups["large"])), tmp_path / "l.png")
    assert fig.drawn["loss (completion tokens)"]["train"] == ([1.0, 2.0, 3.0], [4.0, 3.0, 2.0])
