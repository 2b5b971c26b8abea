"""Evaluation: the metrics on hand-computed verdicts, answer votes, scoring real completions,
eval on the tiny model (samples + summary), kill and resume, and the engine's hook."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1pipe.evaluation import (
    PromptScores,
    judge_sample,
    majority_vote,
    mean_and_stderr,
    normalize_answer,
    summarize,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------
# Metrics on fixed verdicts
# ---------------------------------------------------------------------------------------


def _prompt(pid: str, verdicts, answers, fmt=None, lengths=None, truncated=None) -> PromptScores:
    p = PromptScores(pid)
    k = len(verdicts)
    for i in range(k):
        p.add(verdicts[i], answers[i], (fmt or [1.0] * k)[i], (lengths or [10] * k)[i],
              (truncated or [False] * k)[i])
    return p


def test_pass_at_1_and_cons_at_k_match_hand_computed_values() -> None:
    prompts = [
        # 3 of 4 right; "14" wins the vote and is right
        _prompt("a", [1.0, 0.0, 1.0, 1.0], ["14", "20", "14", "14"], lengths=[10, 20, 30, 40]),
        # 1 of 4 right; the wrong "7" wins the vote
        _prompt("b", [0.0, 0.0, 1.0, 0.0], ["7", "7", "9", "8"], fmt=[1.0, 0.0, 0.0, 0.0]),
        # 2 of 4 right, a 2-2 tie: the answer seen first ("3", wrong) wins
        _prompt("c", [0.0, 1.0, 0.0, 1.0], ["3", "5", "3", "5"], truncated=[True] * 4),
        # nothing answered: no vote at all, consensus wrong
        _prompt("d", [0.0, 0.0, 0.0, 0.0], [None, None, None, None], fmt=[0.0] * 4),
        # reference unusable: left out of pass@1 and cons@k
        _prompt("e", [None, None, None, None], ["1", "1", "2", None]),
    ]
    s = summarize(prompts)
    per_prompt = [0.75, 0.25, 0.5, 0.0]
    assert s["prompts"] == 5 and s["scored_prompts"] == 4 and s["unverifiable_prompts"] == 1
    assert s["k"] == 4 and s["completions"] == 20
    assert s["pass@1"] == pytest.approx(sum(per_prompt) / 4)  # 0.375
    mean = 0.375
    var = sum((v - mean) ** 2 for v in per_prompt) / 3
    assert s["pass@1_stderr"] == pytest.approx(math.sqrt(var / 4))  # 0.16137...
    assert s["pass@1_stderr"] == pytest.approx(0.161374, abs=1e-6)
    assert s["cons@k"] == pytest.approx(0.25)  # only prompt a
    assert s["cons@k_stderr"] == pytest.approx(math.sqrt((3 * 0.0625 + 0.5625) / 3 / 4))
    # format over all 20 samples: 4 (a) + 1 (b) + 4 (c) + 0 (d) + 4 (e)
    assert s["format_rate"] == pytest.approx(13 / 20)
    assert s["mean_length"] == pytest.approx((100 + 16 * 10) / 20)
    assert s["truncated_rate"] == pytest.approx(4 / 20)


def test_single_sample_and_empty_edge_cases() -> None:
    assert mean_and_stderr([]) == (None, None)
    assert mean_and_stderr([1.0]) == (1.0, None)
    s = summarize([_prompt("a", [1.0], ["2"])])
    assert s["pass@1"] == 1.0 and s["cons@k"] == 1.0 and s["pass@1_stderr"] is None
    empty = summarize([])
    assert empty["pass@1"] is None and empty["format_rate"] is None


def test_majority_vote_is_deterministic() -> None:
    assert majority_vote([None, None]) is None
    assert majority_vote(["a", "b", "b", "a"]) == 0  # tie: first seen wins
    assert majority_vote(["b", "a", "a", "b"]) == 0
    assert majority_vote([None, "x", "y", "y"]) == 2
    assert majority_vote(["x", None, "y", "y", "x", "y"]) == 2


# ---------------------------------------------------------------------------------------
# Answers and scoring of real completions
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "task"), [
    ("x = 7/2", "\\boxed{\\frac{7}{2}}", "linear_equation"),
    ("3.5", "The answer is 7/2.", "linear_equation"),
    ("1,234", "1234", "arithmetic"),
    ("\\boxed{\\text{Paris}}.", " paris ", None),
    ("$\\frac{1}{2}$", "0.5", None),
    ("(3 + 5) * 2 = 16", "(3+5)*2", "countdown"),
])
def test_equal_answers_normalise_alike(a: str, b: str, task: str | None) -> None:
    assert normalize_answer(a, task) == normalize_answer(b, task) is not None


@pytest.mark.parametrize(("a", "b", "task"), [
    ("7", "-7", "arithmetic"),
    ("\\boxed{[0, 1)}", "\\boxed{[0, 1]}", None),
    ("(3+5)*2", "(3*5)+2", "countdown"),
])
def test_different_answers_stay_apart(a: str, b: str, task: str | None) -> None:
    assert normalize_answer(a, task) != normalize_answer(b, task)


def test_an_unreadable_number_casts_no_vote() -> None:
    # the accuracy rule finds no number after the last "=", so neither does the vote
    assert normalize_answer("The answer is 2 * 7 = ", "arithmetic") is None
    assert normalize_answer("The answer is 2 * 7 = 14.", "arithmetic") == "14"
    assert normalize_answer("   ", None) is None


def test_judge_sample_uses_the_accuracy_rules_and_formats() -> None:
    right = judge_sample({"completion": "<think>3 * 4 = 12, 2 + 12 = 14</think> "
                          "<answer>14</answer>", "answer": "14", "task": "arithmetic"})
    assert right == {"verdict": 1.0, "extracted": "14", "format": 1.0}
    wrong = judge_sample({"completion": "<think>2 + 3 = 5, 5 * 4 = 20</think> <answer> 20"
                          "</answer>", "answer": "14", "task": "arithmetic"})
    assert wrong["verdict"] == 0.0 and wrong["extracted"] == "20"
    bare = judge_sample({"completion": "<answer>14</answer>", "answer": "14",
                         "task": "arithmetic"})
    assert bare["verdict"] == 1.0 and bare["format"] == 0.0
    cold = judge_sample({"completion": "|special_token|3*4=12|special_token|It is 14.",
                         "answer": "14", "task": "arithmetic"})
    assert cold == {"verdict": 1.0, "extracted": "14", "format": 1.0}
    cut = judge_sample({"completion": "<think>3 * 4 = 12, then", "answer": "14",
                        "task": "arithmetic"})
    assert cut == {"verdict": 0.0, "extracted": None, "format": 0.0}
    general = judge_sample({"completion": "Hello!", "answer": None})
    assert general["verdict"] is None
    strict = judge_sample({"completion": "<think>x</think> <answer>14</answer> extra",
                           "answer": "14", "task": "arithmetic"}, format_variant="r1_zero")
    assert strict["format"] == 0.0 and strict["verdict"] == 1.0


# ---------------------------------------------------------------------------------------
# Evaluating the tiny model
# ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path_factory.getbasetemp() / "r1pipe-cache"))


EVAL_ONLY = """\
name: evaltest
run_dir: {run}
seed: 5
base_model: {{builtin: tiny-llama}}
generation: {{batch_size: {batch}}}
eval:
  samples: {k}
  max_new_tokens: {tokens}
  chunk_size: {chunk}
  benchmarks:
    arith: {{builtin: arithmetic, split: test, test_size: {n}}}
{extra}"""


def _eval_config(tmp_path: Path, *, k: int = 2, tokens: int = 16, chunk: int = 2, n: int = 4,
                 batch: int = 8, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(EVAL_ONLY.format(run=tmp_path / "run", k=k, tokens=tokens, chunk=chunk, n=n,
                                     batch=batch, extra=extra))
    return path


def _records(folder: Path) -> list[dict]:
    from r1pipe.artifacts import iter_records

    return list(iter_records(folder))


def test_eval_on_the_tiny_model_writes_samples_and_summary(tmp_path: Path) -> None:
    from r1pipe.config import load
    from r1pipe.evaluation import run_eval, scores_from_samples

    rows = [{"question": f"What is {a} + {a}?", "solution": str(2 * a), "uid": f"q{a}"}
            for a in range(3)]
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = (f"    mine: {{path: {jsonl}, prompt_column: question, answer_column: solution, "
             "id_column: uid}\n")
    cfg = load(_eval_config(tmp_path, extra=extra))
    results = run_eval(cfg)
    assert set(results) == {"base"} and set(results["base"]) == {"arith", "mine"}
    for bench, prompts in (("arith", 4), ("mine", 3)):
        folder = tmp_path / "run/base/eval" / bench
        records = _records(folder / "samples")
        assert len(records) == prompts * 2
        assert [r["sample"] for r in records[:2]] == [0, 1]
        for r in records:
            assert r["verdict"] in ("correct", "wrong") and r["correct"] in (0.0, 1.0)
            assert r["answer"] is not None and r["completion"] is not None
            assert r["token_count"] <= 16 and r["finish_reason"] in ("stop", "length")
            # the verdict is the accuracy rule's on the stored completion
            again = judge_sample(r)
            assert again["verdict"] == r["correct"] and again["format"] == r["format"]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary == results["base"][bench]
        assert summary["prompts"] == prompts and summary["k"] == 2
        assert summary["completions"] == prompts * 2
        expected = summarize(scores_from_samples(records))
        for key in ("pass@1", "pass@1_stderr", "cons@k", "format_rate", "mean_length"):
            assert summary[key] == expected[key], key
        assert summary["settings"]["temperature"] == 0.6 and summary["settings"]["top_p"] == 0.95
    mine = _records(tmp_path / "run/base/eval/mine/samples")
    assert [r["prompt_id"] for r in mine[::2]] == ["q0", "q1", "q2"]
    assert mine[0]["prompt"] == "What is 0 + 0?" and mine[0]["answer"] == "0"
    table = (tmp_path / "run/eval_table.md").read_text()
    assert "| model | arith | mine |" in table and "\n| base | " in table

    # done is done: a second call samples nothing and returns the same numbers
    again = run_eval(cfg)
    assert again == results


@pytest.mark.slow
def test_killed_eval_resumes_without_resampling_finished_prompts(tmp_path: Path) -> None:
    from r1pipe.config import load
    from r1pipe.evaluation import run_eval

    # 4 prompts, one per shard, 8 samples of up to 128 tokens one at a time: seconds per shard
    cfg_path = _eval_config(tmp_path, k=8, tokens=128, chunk=1, n=4, batch=1)
    samples = tmp_path / "run/base/eval/arith/samples"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "r1pipe.cli", "eval", str(cfg_path)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    first = samples / "train-00000.jsonl"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert first.exists(), "no samples shard was written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (samples.parent / "summary.json").exists()
    finished = sorted(p.name for p in samples.glob("train-*.jsonl"))
    assert 1 <= len(finished) < 4, finished
    before = {name: ((samples / name).stat().st_mtime_ns, (samples / name).read_bytes())
              for name in finished}

    summary = run_eval(load(cfg_path))["base"]["arith"]
    assert summary["prompts"] == 4 and summary["completions"] == 32
    # only the prompts of the shards the killed run had not written were sampled again
    assert summary["generated_now"]["prompts"] == 4 - len(finished)
    for name, (mtime, data) in before.items():
        assert (samples / name).stat().st_mtime_ns == mtime
        assert (samples / name).read_bytes() == data
    records = _records(samples)
    assert [r["prompt_id"] for r in records[::8]] == sorted({r["prompt_id"] for r in records})
    assert len({r["id"] for r in records}) == 32


def test_other_settings_start_over_and_missing_benchmarks_are_named(tmp_path: Path) -> None:
    from r1pipe.config import ConfigError, load
    from r1pipe.evaluation import run_eval

    cfg_path = _eval_config(tmp_path, n=2)
    first = run_eval(load(cfg_path))["base"]["arith"]
    changed = run_eval(load(cfg_path, ["eval.samples=3"]))["base"]["arith"]
    assert first["k"] == 2 and changed["k"] == 3 and changed["completions"] == 6
    assert changed["fingerprint"] != first["fingerprint"]
    assert changed["generated_now"]["prompts"] == 2
    # any model folder, next to the run's own rows
    from r1pipe.evaluation import comparison

    tiny = tmp_path / "run/_imports"  # where the base model was materialised
    folder = next(p.parent for p in tiny.rglob("config.json"))
    mine = run_eval(load(cfg_path), model=str(folder), name="my model")
    assert set(mine) == {"my-model"}
    assert (tmp_path / "run/external/my-model/eval/arith/summary.json").exists()
    assert list(comparison(load(cfg_path)).rows) == ["base", "my-model"]
    with pytest.raises(ConfigError, match="nope.*not under `eval.benchmarks:`"):
        run_eval(load(cfg_path), benchmarks=["nope"])
    with pytest.raises(ConfigError, match="stage 'r1_zero' is not in `stages:`|--stage"):
        run_eval(load(cfg_path), stages=["r1_zero"])


# ---------------------------------------------------------------------------------------
# The engine hook and the before/after table
# ---------------------------------------------------------------------------------------

WITH_STAGE = """\
  after_each_stage: true
data:
  reasoning: {builtin: reasoning, size: 16, test_size: 4, difficulty: 1}
stages:
  r1_zero:
    data: reasoning
    trainer: {max_steps: 2, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 16, save_steps: 2}
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_engine_evaluates_the_base_model_and_each_stage(tmp_path: Path) -> None:
    from r1pipe import evaluation
    from r1pipe.config import load
    from r1pipe.evaluation import comparison, pending
    from r1pipe.pipeline import Hook, execute, plan
    from r1pipe.state import read_state

    cfg_path = _eval_config(tmp_path, n=4, chunk=2, extra=WITH_STAGE)
    run = tmp_path / "run"
    execute(plan(load(cfg_path)), hooks=[Hook.of(evaluation)])
    base = json.loads((run / "base/eval/arith/summary.json").read_text())
    stage = json.loads((run / "r1_zero/eval/arith/summary.json").read_text())
    assert base["label"] == "base" and stage["label"] == "r1_zero"
    assert stage["model"] == str(run / "r1_zero/model")
    assert stage["completions"] == 8

    # eval results are not part of the stage: same fingerprint, nothing to re-run or re-eval
    state = read_state(plan(load(cfg_path)).layout, "r1_zero")
    again = plan(load(cfg_path))
    assert again["r1_zero"].action == "skip" and state["fingerprint"] == again["r1_zero"].fingerprint
    assert "eval" not in json.dumps(state["summary"])
    assert not pending(again)

    # an evaluation killed after its stage finished: `r1pipe run` finishes it, resuming
    (run / "r1_zero/eval/arith/summary.json").unlink()
    (run / "r1_zero/eval/arith/samples/train-00001.jsonl").unlink()
    assert pending(plan(load(cfg_path)))
    out = _cli("run", str(cfg_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "finishing their evaluations" in out.stdout
    redone = json.loads((run / "r1_zero/eval/arith/summary.json").read_text())
    assert redone["generated_now"]["prompts"] == 2  # only the removed shard's prompts
    assert json.loads((run / "base/eval/arith/summary.json").read_text()) == base

    comp = comparison(load(cfg_path))
    assert list(comp.rows) == ["base", "r1_zero"]
    assert comp.value("r1_zero", "arith", "pass@1") == redone["pass@1"]
    out = _cli("eval", "--compare", str(cfg_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "r1_zero" in out.stdout and "base" in out.stdout and "arith" in out.stdout
    table = (run / "eval_table.md").read_text()
    assert "| base | " in table and "| r1_zero | " in table and "## cons@2" in table


def test_each_distillation_student_is_a_row(tmp_path: Path) -> None:
    from r1pipe.artifacts import RunLayout, atomic_write_json
    from r1pipe.evaluation import stage_targets

    layout = RunLayout(tmp_path / "run")
    for student in ("qwen-1.5b", "llama-8b"):
        (layout.stage_dir("distill") / student / "model").mkdir(parents=True)
        (layout.stage_dir("distill") / student / "model" / "config.json").write_text("{}")
    (layout.stage_dir("distill") / "data").mkdir()
    assert stage_targets(None, layout, "distill") == []  # not finished: nothing to evaluate
    atomic_write_json(layout.stage_json("distill"), {"status": "finished", "fingerprint": "f",
                                                     "run_id": "r"})
    targets = stage_targets(None, layout, "distill")
    assert [t.label for t in targets] == ["distill/llama-8b", "distill/qwen-1.5b"]
    assert targets[0].eval_dir == layout.stage_dir("distill") / "llama-8b" / "eval"
    assert targets[0].model == str(layout.stage_dir("distill") / "llama-8b" / "model")
    assert len({t.identity for t in targets}) == 2
