"""Stage gates (`gate:`) through the CLI on r1pipe's tiny model: a stage made worse on
purpose (`tests/stage_noise.py` adds noise to its input's weights) fails its gate, is
marked `gate failed` in `status` and the plan, and `run` stops before the stage after it;
`--ignore-gates` goes on. Bad gate settings are one-line errors naming the key.

For the base model to score above 0, the benchmark's answers are what the base model
itself says: its greedy answers (temperature 0) are sampled once and written back as the
references, so the base scores 100 % and any other model scores less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, load
from tests.helpers import REPO, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

EVAL = """\
eval:
  after_each_stage: true
  samples: 1
  temperature: 0
  max_new_tokens: 8
  benchmarks:
    probe: {{source: {{path: {probe}}}, answer: exact}}
"""
STAGES = """\
stages:
  noise:
    from: base
    scale: 0.5
    gate: {benchmark: probe, min_delta_se: -1}
  copy:
    from: noise
    scale: 0
"""


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "r1pipe.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def _probe(tmp_path: Path) -> Path:
    """The benchmark, with the base model's own greedy answers as its references."""
    from r1pipe.artifacts import iter_records
    from r1pipe.evaluation import run_eval

    probe = tmp_path / "probe.jsonl"
    rows = [{"id": f"q{i}", "prompt": f"Name a thing, number {i}.", "answer": "none"}
            for i in range(6)]
    probe.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "first").mkdir()
    first = write_pipeline(tmp_path / "first", "gatefirst", EVAL.format(probe=probe), seed=3)
    run_eval(load(first), stages=["base"])
    said = {r["prompt_id"]: r["extracted"] for r in
            iter_records(tmp_path / "first/run/base/eval/probe/samples")}
    rows = [{**r, "answer": said[r["id"]]} for r in rows if said.get(r["id"])]
    assert len(rows) >= 3, said  # the base model answers something to most prompts
    probe.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return probe


def test_a_worse_stage_fails_its_gate_and_stops_the_run(tmp_path: Path) -> None:
    cfg = write_pipeline(tmp_path, "gatetest", EVAL.format(probe=_probe(tmp_path)) + STAGES,
                         seed=3, stage_modules=["tests.stage_noise", "tests.stage_copy"])
    out = _cli("run", cfg, cwd=tmp_path)
    assert out.returncode != 0
    message = out.stderr + out.stdout
    assert "gate failed after stage noise" in message and "Not run: copy" in message, message
    run = tmp_path / "run"
    gate = json.loads((run / "noise/gate.json").read_text())
    assert gate["status"] == "failed" and gate["input"] == "base"
    assert gate["input_score"] == 1.0 and gate["score"] < 1.0 and gate["delta"] < 0
    assert not (run / "copy").exists()  # the stage after it never started
    status = json.loads(_cli("status", cfg, "--json", cwd=tmp_path).stdout)
    shown = {row["stage"]: row["status"] for row in status["stages"]}
    assert shown == {"noise": "gate failed", "copy": "not started"}
    plan = _cli("plan", cfg, cwd=tmp_path).stdout
    assert "gate failed" in plan
    cards = (run / "RESULTS.md").read_text()
    assert "| noise | gate failed |" in cards and "failed: pass@1" in cards
    results = json.loads((run / "RESULTS.json").read_text())
    noise = next(s for s in results["stages"] if s["stage"] == "noise")
    assert noise["eval"]["probe"]["delta"] == pytest.approx(gate["delta"])
    assert "gate: failed" in (run / "noise/model/README.md").read_text()

    # a second run skips the finished stage and is stopped by its gate again
    again = _cli("run", cfg, cwd=tmp_path)
    assert again.returncode != 0 and "gate failed after stage noise" in again.stderr + again.stdout

    ignored = _cli("run", cfg, "--ignore-gates", cwd=tmp_path)
    assert ignored.returncode == 0, ignored.stderr[-3000:]
    assert json.loads((run / "copy/stage.json").read_text())["status"] == "finished"
    assert json.loads((run / "noise/gate.json").read_text())["ignored"] is True
    assert (run / "copy/eval/probe/summary.json").exists()

    # the report writes the result card again and links it, with the gate's verdict
    report = _cli("report", cfg, cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    page = (run / "report/index.html").read_text()
    assert f"Result card: <code>{run / 'RESULTS.md'}</code>" in page
    assert "Gates and training health" in page
    cards = json.loads((run / "RESULTS.json").read_text())
    assert [s["status"] for s in cards["stages"]] == ["gate failed", "finished"]
    assert cards["hardware"]["cores"] >= 1 and cards["hardware"]["cpu"]
    assert "ignored: --ignore-gates" in (run / "RESULTS.md").read_text()


@pytest.mark.parametrize(("gate", "eval_block", "error"), [
    ("{benchmark: nope}", "eval: {after_each_stage: true, benchmarks: {a: {builtin: "
     "arithmetic}}}", "stages.r1_zero.gate.benchmark: 'nope' is not a benchmark"),
    ("{benchmark: a}", "eval: {benchmarks: {a: {builtin: arithmetic}}}",
     "stages.r1_zero.gate: a gate reads the stage's evaluation"),
    ("{benchmark: a, min_delta_se: x}", "eval: {after_each_stage: true, benchmarks: {a: "
     "{builtin: arithmetic}}}", "stages.r1_zero.gate.min_delta_se"),
    ("{benchmark: a, delta: 1}", "eval: {after_each_stage: true, benchmarks: {a: "
     "{builtin: arithmetic}}}", "stages.r1_zero.gate.delta"),
])
def test_bad_gates_are_one_line_errors_naming_the_key(tmp_path: Path, gate: str,
                                                      eval_block: str, error: str) -> None:
    body = f"{eval_block}\nstages:\n  r1_zero:\n    from: base\n    gate: {gate}\n"
    with pytest.raises(ConfigError, match=error) as info:
        load(write_pipeline(tmp_path, "badgate", body,
                            data={"reasoning": "{builtin: reasoning, size: 8}"}))
    assert "\n" not in info.value.one_line()
