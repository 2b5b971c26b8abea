"""Every problem of a pipeline file at once: one `file:line: key.path: message` line each,
suggestions kept, exit 2; a single problem keeps its one-line form."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, ConfigErrors, load
from tests.helpers import REPO, cli_env

FIVE_MISTAKES = """\
name: errs
sed: 7
base_model: {builtin: tiny-llama}
data:
  reasoning: {builtin: reasoning, size: 8}
generation: {backend: hf, temperature: -1}
stages:
  r1_zero:
    data: reasoning
    trainer: {learnin_rate: 1.0e-6, max_steps: 2}
  cold_start:
    data: reasoning
    colect: {}
  reasoning_rl:
    data: reasoning
    trainer: {per_device_train_batch_size: 0}
"""


def _validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return subprocess.run([sys.executable, "-m", "r1pipe.cli", "validate", str(path)],
                          cwd=tmp_path, env=cli_env(COLUMNS="300", PYTHONPATH=str(REPO)),
                          capture_output=True, text=True, timeout=300)


def test_five_mistakes_give_five_lines_and_exit_2(tmp_path: Path) -> None:
    proc = _validate(tmp_path, FIVE_MISTAKES)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 5, proc.stderr
    path = str(tmp_path / "p.yaml")
    assert lines == [
        f"error: {path}:2: sed: unknown key 'sed'; did you mean 'seed'?",
        f"error: {path}:6: generation.temperature: Input should be greater than or equal "
        "to 0 (got -1)",
        f"error: {path}:10: stages.r1_zero.trainer.learnin_rate: 'learnin_rate' is not a "
        "field of TRL's GRPOConfig; did you mean 'learning_rate'?",
        f"error: {path}:13: stages.cold_start.colect: unknown key 'colect'; did you mean "
        "'collect'?",
        f"error: {path}:16: stages.reasoning_rl.trainer.per_device_train_batch_size: "
        "'per_device_train_batch_size' must be at least 1 (got 0)",
    ], proc.stderr


def test_one_mistake_keeps_the_one_line_form(tmp_path: Path) -> None:
    proc = _validate(tmp_path, FIVE_MISTAKES.replace("sed: 7", "seed: 7").replace(
        "temperature: -1", "temperature: 1").replace("learnin_rate", "learning_rate")
        .replace("colect", "collect").replace("batch_size: 0", "batch_size: 1")
        .replace("size: 8}", "size: 8, difficulty: 9}"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'p.yaml'}:5: data.reasoning.difficulty: Input should be less "
        "than or equal to 5 (got 9)"], proc.stderr


def test_errors_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(FIVE_MISTAKES)
    with pytest.raises(ConfigError) as info:
        load(path)
    assert isinstance(info.value, ConfigErrors) and len(info.value.errors) == 5
    assert [e.line for e in info.value.errors] == [2, 6, 10, 13, 16]
    assert str(info.value) == info.value.one_line()
