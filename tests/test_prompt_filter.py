"""Pass-rate prompt filtering of GRPO stages (`prompt_filter:`), through the engine on the
tiny model with the hf backend: what the filter keeps agrees with the pass rates it wrote,
training sees only the kept prompts, and a filter killed mid-way resumes from its finished
chunks to the same result as an uninterrupted run.

A random tiny model solves nothing, so the test data decides the pass rates: the reward
`solved` below (a plugin reward, `reward: "tests.test_prompt_filter:solved"`, scored by the
real pipeline) passes every answer to an arithmetic prompt, none to a multiplication prompt,
and answers to the other tasks by the parity of their length, which varies from sample to
sample. So both sides of the range are exercised on every run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from r1pipe.config import ConfigError, PromptFilterSettings, load
from r1pipe.pipeline import execute, plan
from r1pipe.prompt_filter import ARTIFACT, DESCRIPTION, verdict
from tests.helpers import cli_env, kill_cli_when, read_jsonl, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

REASONING = ("{builtin: reasoning, size: PROMPTS, test_size: 0, difficulty: 1, "
             "tasks: [arithmetic, multiplication, countdown, linear_equation, code]}")
GENERATION = "{backend: hf, max_new_tokens: 16, batch_size: 8}"
STAGES = """\
stages:
  r1_zero:
    from: base
    data: reasoning
    rewards:
      solved: {reward: "tests.test_prompt_filter:solved"}
      format: {weight: 0.1, variant: r1_zero}
    prompt_filter: {samples: 4, reward: solved, chunk_size: 2}
    trainer: {max_steps: 1, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 16, save_steps: 1}
"""


def solved(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
    """Test data's verdict: arithmetic always right, multiplication never, the rest by the
    parity of the answer's length."""
    out = []
    for task, text in zip(columns["task"], completions, strict=True):
        if task == "arithmetic":
            out.append(1.0)
        elif task == "multiplication":
            out.append(0.0)
        else:
            out.append(float(len(text) % 2))
    return out


def solved_after_think(prompts: list[Any], completions: list[Any], **columns: Any
                       ) -> list[float]:
    """`solved`, but every answer fails unless the prompt ends with the response prefix and
    the answer starts with it (the rewards get the prefix put back, as in training)."""
    verdicts = solved(prompts, completions, **columns)
    return [v if p.endswith("<think>") and c.startswith("<think>") else 0.0
            for v, p, c in zip(verdicts, prompts, completions, strict=True)]


def _pipeline(folder: Path, prompts: int = 12, stages: str = STAGES) -> Path:
    return write_pipeline(folder, "pftest", stages, seed=5, generation=GENERATION,
                          data={"reasoning": REASONING.replace("PROMPTS", str(prompts))})


def _rates(run: Path) -> dict[str, dict[str, Any]]:
    folder = run / "r1_zero/data" / ARTIFACT
    records = [json.loads(line) for shard in sorted(folder.glob("train-*.jsonl"))
               for line in shard.read_text().splitlines()]
    return {r["id"]: r for r in records}


def test_verdict_defaults_keep_neither_always_nor_never_solved() -> None:
    default = PromptFilterSettings()
    assert [verdict(r, default) for r in (0.0, 0.125, 0.5, 0.875, 1.0)] == [
        "too_hard", "kept", "kept", "kept", "too_easy"]
    assert verdict(None, default) == "kept"  # no pass reward scored it: nothing to judge
    bounded = PromptFilterSettings(min_pass_rate=0.25, max_pass_rate=0.75)  # inclusive
    assert [verdict(r, bounded) for r in (0.125, 0.25, 0.75, 0.875)] == [
        "too_hard", "kept", "kept", "too_easy"]
    everything = PromptFilterSettings(min_pass_rate=0, max_pass_rate=1)
    assert {verdict(r, everything) for r in (0.0, 1.0)} == {"kept"}


@pytest.mark.parametrize(("section", "error"), [
    ("prompt_filter: {reward: nope}", "prompt_filter.reward: 'nope' is not one of"),
    ("rewards: {format: 1.0}\n    prompt_filter: {}", "no accuracy or code reward"),
    ("prompt_filter: {min_pass_rate: 0.8, max_pass_rate: 0.2}", "above max_pass_rate"),
    ("prompt_filter: {samples: 1}", "samples"),
])
def test_bad_prompt_filter_is_refused_at_load(tmp_path: Path, section: str, error: str) -> None:
    body = f"stages:\n  r1_zero:\n    from: base\n    {section}\n"
    with pytest.raises(ConfigError, match=error) as info:
        load(_pipeline(tmp_path, stages=body))
    assert "p.yaml" in str(info.value)


def test_kept_and_removed_counts_agree_with_the_pass_rates(tmp_path: Path) -> None:
    results = execute(plan(load(_pipeline(tmp_path))))
    summary = results["r1_zero"].summary
    run = tmp_path / "run"
    rates = _rates(run)
    assert len(rates) == summary["prompt filter candidates"] == summary["prompts"] == 12
    for record in rates.values():
        assert record["samples"] == record["scored"] == 4 == len(record["rewards"])
        assert record["passed"] == sum(v == 1.0 for v in record["rewards"])
        assert record["pass_rate"] == record["passed"] / 4
        expected = ("too_hard" if record["pass_rate"] == 0 else
                    "too_easy" if record["pass_rate"] == 1 else "kept")
        assert record["verdict"] == expected, record
    by_verdict = {v: {i for i, r in rates.items() if r["verdict"] == v}
                  for v in ("kept", "too_easy", "too_hard")}
    assert summary["prompt filter kept"] == len(by_verdict["kept"]) >= 1
    assert summary["prompt filter too easy"] == len(by_verdict["too_easy"])
    assert summary["prompt filter too hard"] == len(by_verdict["too_hard"])
    assert by_verdict["too_easy"] and by_verdict["too_hard"]  # the data exercises both sides
    folder = run / "r1_zero/data" / ARTIFACT
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["complete"] and len(manifest["shards"]) == 6  # 12 prompts, 2 a chunk
    assert manifest["meta"]["counts"] == {k: v for k, v in summary.items()
                                          if k.startswith("prompt filter")}
    card = (folder / "README.md").read_text()
    assert f"| kept | {len(by_verdict['kept'])} |" in card and "pass rate" in card
    state = json.loads((run / "r1_zero/stage.json").read_text())
    assert state["artifacts"]["pass_rates"] == "data/pass_rates"
    # training saw the kept prompts only: one prompt a step, so step 1 is 1/kept of an epoch
    logged = [m for m in read_jsonl(run / "r1_zero/metrics.jsonl") if "reward" in m]
    assert logged[0]["epoch"] == pytest.approx(1 / len(by_verdict["kept"]))

    # the report: the funnel of the filter, and the zero-spread share TRL logged per step
    from r1pipe.report import metric_steps, prompt_filter_funnel, render, rl_figure, series

    funnel = render(prompt_filter_funnel("r1_zero", summary), tmp_path / "funnel.png")
    assert funnel.bars["counts"] == [12, 12 - len(by_verdict["too_hard"]),
                                     len(by_verdict["kept"])]
    steps = metric_steps(read_jsonl(run / "r1_zero/metrics.jsonl"))
    curves = rl_figure("r1_zero", steps)
    flat = {p.title: p for p in curves.panels}["zero-spread groups (no signal)"]
    assert flat.series["zero reward spread"] == series(steps, "frac_reward_zero_std")
    assert len(flat.series["zero reward spread"][0]) == 1
    assert "response length (band: min–max)" in {p.title for p in curves.panels}


def test_candidates_caps_the_prompts_measured(tmp_path: Path) -> None:
    """`candidates: N` measures the first N prompts only, and training draws from those."""
    stages = STAGES.replace("chunk_size: 2}", "chunk_size: 2, candidates: 6}")
    results = execute(plan(load(_pipeline(tmp_path, stages=stages))))
    summary = results["r1_zero"].summary
    rates = _rates(tmp_path / "run")
    assert len(rates) == summary["prompt filter candidates"] == 6
    assert summary["prompt filter kept"] == sum(r["verdict"] == "kept" for r in rates.values())


@pytest.mark.slow
def test_filter_killed_mid_way_resumes_to_the_same_kept_set(tmp_path: Path) -> None:
    def cli_run(cfg: Path) -> None:
        done = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)],
                              cwd=cfg.parent, env=cli_env(), capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir()
    killed.mkdir()
    cli_run(_pipeline(whole, prompts=24))

    cfg = _pipeline(killed, prompts=24)
    folder = killed / "run/r1_zero/data" / ARTIFACT
    kill_cli_when("run", cfg, cwd=killed,
                  condition=lambda: len(list(folder.glob("train-*.jsonl"))) >= 2,
                  message="the filter wrote no pass-rate shard")
    manifest = json.loads((folder / "manifest.json").read_text())
    on_disk = len(list(folder.glob("train-*.jsonl")))
    assert not manifest["complete"] and 2 <= on_disk < 12  # killed mid-filter
    assert plan(load(cfg))["r1_zero"].action == "resume"
    cli_run(cfg)

    chunks = [m["chunk"] for m in read_jsonl(killed / "run/r1_zero/metrics.jsonl")
              if m.get("job") == DESCRIPTION]
    assert len(chunks) == len(set(chunks))  # no chunk sampled twice
    assert set(chunks) <= set(range(12)) and len(chunks) <= 12
    a, b = _rates(whole / "run"), _rates(killed / "run")
    assert a.keys() == b.keys() and len(a) == 24
    assert {i: (r["pass_rate"], r["verdict"]) for i, r in a.items()} == {
        i: (r["pass_rate"], r["verdict"]) for i, r in b.items()}
    summary = json.loads((killed / "run/r1_zero/stage.json").read_text())["summary"]
    reference = json.loads((whole / "run/r1_zero/stage.json").read_text())["summary"]
    assert {k: v for k, v in summary.items() if k.startswith("prompt filter")} == {
        k: v for k, v in reference.items() if k.startswith("prompt filter")}


def test_response_prefix_is_sampled_and_scored_as_in_training(tmp_path: Path) -> None:
    stages = STAGES.replace('"tests.test_prompt_filter:solved"',
                            '"tests.test_prompt_filter:solved_after_think"').replace(
        "    prompt_filter:", "    response_prefix: <think>\n    prompt_filter:")
    assert "response_prefix: <think>" in stages
    summary = execute(plan(load(_pipeline(tmp_path, stages=stages))))["r1_zero"].summary
    # without the prefix on the prompts and put back before scoring, every answer would fail
    assert summary["prompt filter too easy"] >= 1 and summary["prompt filter kept"] >= 1
