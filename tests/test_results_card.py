"""RESULTS.md/.json of a run whose stage trains parts of its own (distillation students):
each student is a row of its own, compared with the base model (the demo's card showed the
stage with no score while eval_table.md had the student's)."""

from __future__ import annotations

import json
from pathlib import Path

from r1pipe import results
from r1pipe.config import load_text
from tests.helpers import pipeline_header

BODY = """
eval:
  after_each_stage: true
  benchmarks:
    arith: {builtin: arithmetic, split: test, test_size: 4}
stages:
  distill:
    data: reasoning
    students:
      small: {builtin: tiny-llama}
"""


def _summary(folder: Path, pass1: float, se: float) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"pass@1": pass1, "pass@1_stderr": se}))


def test_each_student_is_a_row_against_the_base_model(tmp_path: Path) -> None:
    config = load_text(pipeline_header("card", tmp_path / "run",
                                       data={"reasoning": "{builtin: arithmetic, size: 4}"})
                       + BODY)
    _summary(tmp_path / "run/base/eval/arith", 0.05, 0.02)
    _summary(tmp_path / "run/distill/small/eval/arith", 0.11, 0.03)
    data = results.build(config)
    (stage,) = data["stages"]
    row = stage["parts"]["small"]["arith"]
    assert row["input"] == "base" and abs(row["delta"] - 0.06) < 1e-9
    assert abs(row["delta_se"] - 0.06 / (0.02**2 + 0.03**2) ** 0.5) < 1e-9
    card = results.markdown(data)
    assert "| distill/small | base | 11.0 ± 3.0 (+6.0, +1.7 SE) |" in card
    assert "| distill | base |" not in card  # no empty evaluation row for the stage itself
