"""`r1pipe data preview`: rendered prompts and answers for each template."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from r1pipe.data.cli import app

CONFIG = """\
name: data-preview
seed: 7
base_model: my-org/tiny-model
data:
  reasoning: {builtin: reasoning, size: 40, difficulty: 1}
  general: {builtin: general}
  mix:
    mixture:
      - {source: reasoning, weight: 0.7}
      - {source: general, weight: 0.3}
    limit: 50
  local: {path: qa.jsonl, prompt_column: problem}
"""


@pytest.fixture()
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qa.jsonl").write_text('{"question": "q", "solution": "1"}\n')
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(CONFIG))
    return path


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def test_preview_shows_every_template_with_answers(config: Path) -> None:
    result = _run("preview", str(config), "--source", "reasoning", "-n", "5")
    assert result.exit_code == 0, result.output
    out = result.output
    for title in ("reasoning: r1_zero", "reasoning: chat", "reasoning: plain"):
        assert title in out
    assert "A conversation between User and Assistant." in out
    assert '{"role": "user", "content": "What is' in out  # chat without a tokenizer
    assert "arithmetic-d1-train-000000" in out and "countdown-d1-train-000000" in out
    assert "builtin:reasoning (train) · seed 7 · 40 records" in out
    # the answers of the records shown are in the table
    from r1pipe.data.loading import load_source
    from r1pipe.data.sources import DataSourceConfig

    first = load_source(DataSourceConfig(builtin="reasoning", size=40), seed=7)[0]
    assert first["answer"] in out


def test_preview_renders_chat_with_a_tokenizer(config: Path, tmp_path: Path) -> None:
    from r1pipe.testing import build_tiny_tokenizer

    build_tiny_tokenizer().save_pretrained(tmp_path / "tok")
    result = _run("preview", str(config), "-s", "general", "-n", "2", "-t", "chat",
                  "--tokenizer", str(tmp_path / "tok"), "--system-prompt", "Be kind.")
    assert result.exit_code == 0, result.output
    assert "<|im_start|>system" in result.output and "Be kind." in result.output
    assert "(reference)" in result.output  # general prompts show their reference answer


def test_preview_of_a_mixture_and_of_overrides(config: Path) -> None:
    result = _run("preview", str(config), "data.mix.limit=20", "-s", "mix", "-t", "plain")
    assert result.exit_code == 0, result.output
    assert "mixture(0.7×reasoning, 0.3×general) · seed 7 · 20 records" in result.output


def test_preview_errors_name_the_problem(config: Path) -> None:
    result = _run("preview", str(config), "-s", "missing")
    assert result.exit_code == 2 and "no data source 'missing'" in result.output
    result = _run("preview", str(config), "-s", "local")
    assert result.exit_code == 2
    assert "prompt_column 'problem'" in result.output and "question, solution" in result.output
    result = _run("preview", str(config), "-t", "alpaca")
    assert result.exit_code == 2 and "unknown template" in result.output


def test_mounted_under_the_main_cli(config: Path) -> None:
    from r1pipe.cli import app as main_app

    result = CliRunner().invoke(main_app, ["data", "preview", str(config), "-n", "1",
                                           "-t", "plain"], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert "reasoning: plain" in result.output
