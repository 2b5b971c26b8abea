"""Per-benchmark evaluation settings, multiple-choice, exact and code answers, the published
settings of configs/r1.yaml, and the lighteval cross-check (where lighteval can run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1pipe.evaluation.answers import (
    choice_letter,
    choice_question,
    code_verdicts,
    gold_letter,
    with_instruction,
)
from r1pipe.evaluation.scoring import exact_match, judge_sample, sample_builder
from r1pipe.generation.base import Completion

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path_factory.getbasetemp() / "r1pipe-cache"))


# ---------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("region", "letter"), [
    ("The answer is \\boxed{C}.", "C"),
    ("\\boxed{\\text{(B)}}", "B"),
    ("So... Answer: D", "D"),
    ("I pick (A) because it is the only stable one.", "A"),
    ("  b. ", "B"),
    ("The answer is option c", "C"),
    ("Answer: A, no wait, Answer: C", "C"),
    ("\\boxed{42}", None),  # a number, not a letter
    ("I think it is the second one.", None),
    ("", None),
])
def test_choice_letter_reads_the_chosen_option(region: str, letter: str | None) -> None:
    assert choice_letter(region) == letter


def test_choice_letter_ignores_letters_beyond_the_options() -> None:
    assert choice_letter("\\boxed{E}", letters=4) is None
    assert choice_letter("\\boxed{E}", letters=5) == "E"


def test_gold_letter_from_letters_indices_and_option_text() -> None:
    options = ["4", "5", "6", "7"]
    assert gold_letter("C", options) == "C"
    assert gold_letter("(b)", options) == "B"
    assert gold_letter(3, options) == "D"
    assert gold_letter("6", options) == "C"  # option text wins over a digit index
    assert gold_letter(None, options, first_is_correct=True) == "A"
    assert gold_letter(None, options) is None
    assert gold_letter("Z", options) is None


def test_choice_question_lists_and_shuffles_options_reproducibly() -> None:
    record = {"id": "q1", "prompt": "Which is prime?", "answer": None,
              "right": "7", "w1": "4", "w2": "6", "w3": "8"}
    cols = ["right", "w1", "w2", "w3"]
    plain, gold, n = choice_question(record, choices=cols, shuffle=False, seed=1)
    assert plain == "Which is prime?\n\nA) 7\nB) 4\nC) 6\nD) 8" and gold == "A" and n == 4
    shuffled, gold, _ = choice_question(record, choices=cols, shuffle=True, seed=1)
    again, gold_again, _ = choice_question(record, choices=cols, shuffle=True, seed=1)
    assert (shuffled, gold) == (again, gold_again)
    assert f"{gold}) 7" in shuffled  # the gold letter follows the correct option
    golds = {choice_question({**record, "id": f"q{i}"}, choices=cols, shuffle=True, seed=1)[1]
             for i in range(40)}
    assert len(golds) > 1  # the correct option does not stay first
    listed = {"id": "x", "prompt": "Pick", "answer": "7", "opts": ["4", "7"]}
    assert choice_question(listed, choices="opts", shuffle=False, seed=0)[1:] == ("B", 2)
    with pytest.raises(ValueError, match="option column"):
        choice_question({"id": "y", "prompt": "p"}, choices=cols, shuffle=False, seed=0)


def test_instruction_goes_on_its_own_line() -> None:
    assert with_instruction("What is 2+2? ", "Please reason.") == "What is 2+2?\nPlease reason."
    assert with_instruction("Q", None) == "Q"


def test_choice_and_exact_verdicts() -> None:
    right = judge_sample({"completion": "<think>B fits</think> \\boxed{B}", "answer": "B",
                          "options": 4}, answer_type="choice")
    assert right == {"verdict": 1.0, "extracted": "B", "format": 1.0}
    wrong = judge_sample({"completion": "<think>x</think> Answer: C", "answer": "B"},
                         answer_type="choice")
    assert wrong["verdict"] == 0.0 and wrong["extracted"] == "C"
    none = judge_sample({"completion": "<think>x</think> no idea", "answer": "B"},
                        answer_type="choice")
    assert none["verdict"] == 0.0 and none["extracted"] is None
    assert exact_match("\\boxed{\\text{Paris}}.", "paris") == 1.0
    assert exact_match("Lyon", "Paris") == 0.0
    assert exact_match("Paris", None) is None
    ex = judge_sample({"completion": "<think>x</think> <answer>Paris</answer>",
                       "answer": "Paris"}, answer_type="exact")
    assert ex["verdict"] == 1.0


SUM = "a, b = map(int, input().split())\nprint(a + b)"


def _program(body: str) -> str:
    return f"<think>add them</think>\n```python\n{body}\n```\n"


def test_code_answers_run_against_the_records_tests_in_the_sandbox() -> None:
    info = json.dumps({"language": "python", "test_cases": [
        {"type": "stdin_stdout", "input": "1 2\n", "output": "3\n"},
        {"type": "stdin_stdout", "input": "10 5\n", "output": "15\n"}]})
    record = {"id": "p1", "prompt": "Add two numbers.", "verification_info": info}
    params = {"timeout": 3.0, "memory_mb": 256, "workers": 1}
    texts = [_program(SUM), _program("print(3)"), "no code at all"]
    assert code_verdicts(texts, record, params, "|special_token|") == [1.0, 0.0, 0.0]
    build = sample_builder("lcb", "any", "|special_token|", "code", params)
    samples = build(record, [Completion(text=t, token_count=5, finish_reason="stop")
                             for t in texts])
    assert [s["correct"] for s in samples] == [1.0, 0.0, 0.0]
    assert [s["verdict"] for s in samples] == ["correct", "wrong", "wrong"]
    assert all("verification_info" not in s for s in samples)  # tests stay out of samples


# ---------------------------------------------------------------------------------------
# Config: plain sources stay valid, overrides, resolved settings, fingerprints
# ---------------------------------------------------------------------------------------

CFG = """\
name: bench
run_dir: {run}
seed: 3
base_model: {{builtin: tiny-llama}}
generation: {{batch_size: 8}}
data:
  shared: {{builtin: arithmetic, split: test, test_size: 3}}
eval:
  samples: 2
  max_new_tokens: 12
  chunk_size: 2
  benchmarks:
    arith: {{builtin: arithmetic, split: test, test_size: 3}}
    quiz:
      source: {{path: {quiz}}}
      choices: opts
      samples: 3
      temperature: 0.9
      answer: choice
      instruction: "Answer with the letter within \\\\boxed{{}}."
{extra}"""


def _quiz(tmp_path: Path) -> Path:
    rows = [{"id": f"c{i}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i),
             "opts": [str(2 * i + 1), str(2 * i), str(2 * i + 2)]} for i in range(3)]
    path = tmp_path / "quiz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(CFG.format(run=tmp_path / "run", quiz=_quiz(tmp_path), extra=extra))
    return path


def test_a_benchmark_setting_inside_the_source_is_named(tmp_path: Path) -> None:
    from r1pipe.config import ConfigError, load

    path = _config(tmp_path)
    path.write_text(path.read_text().replace("}\n      choices: opts", ", choices: opts}"))
    with pytest.raises(ConfigError, match="eval.benchmarks.quiz.source.*choices"):
        load(path)


def test_benchmark_settings_resolve_over_the_eval_block(tmp_path: Path) -> None:
    from r1pipe.config import ConfigError, load
    from r1pipe.data.sources import DataSourceConfig
    from r1pipe.evaluation import eval_fingerprint, eval_settings
    from r1pipe.evaluation.targets import Target

    cfg = load(_config(tmp_path))
    arith, quiz = cfg.eval.benchmark("arith"), cfg.eval.benchmark("quiz")
    assert (arith.samples, arith.temperature, arith.answer, arith.instruction) == (
        2, 0.6, "math", None)
    assert (quiz.samples, quiz.temperature, quiz.top_p, quiz.answer, quiz.choices) == (
        3, 0.9, 0.95, "choice", "opts")
    assert isinstance(cfg.eval.benchmarks["arith"].source, DataSourceConfig)
    # the settings of one benchmark do not touch the other's fingerprint
    target = Target("base", "m", tmp_path / "e", "model:x")
    before = {b: eval_fingerprint(cfg, target, b) for b in ("arith", "quiz")}
    more = load(_config(tmp_path), ["eval.benchmarks.quiz.samples=5"])
    assert eval_fingerprint(more, target, "arith") == before["arith"]
    assert eval_fingerprint(more, target, "quiz") != before["quiz"]
    assert eval_settings(more, "quiz")["samples"] == 5
    # an unchanged default benchmark records no new keys (older results stay current)
    assert not {"instruction", "answer", "choices", "code"} & set(eval_settings(cfg, "arith"))
    # settings beside a plain source, and a source named from `data:`
    extra_path = _config(tmp_path)
    text = extra_path.read_text().replace(
        "    arith: {builtin: arithmetic, split: test, test_size: 3}",
        "    arith: {builtin: arithmetic, split: test, test_size: 3, samples: 7}\n"
        "    named: shared\n    wrong: nope")
    extra_path.write_text(text)
    cfg2 = load(extra_path)
    assert cfg2.eval.benchmark("arith").samples == 7
    assert cfg2.eval.benchmark_source("named", cfg2.data).builtin == "arithmetic"
    with pytest.raises(ConfigError, match="eval.benchmarks.wrong.source.*'nope'.*not under"):
        eval_settings(cfg2, "wrong")


def test_published_settings_in_r1_yaml() -> None:
    from r1pipe.config import load

    cfg = load(REPO / "configs/r1.yaml")
    got = {b: (cfg.eval.benchmark(b).samples, cfg.eval.benchmark(b).answer)
           for b in cfg.eval.benchmarks}
    assert got == {"aime24": (64, "math"), "math500": (4, "math"),
                   "gpqa_diamond": (8, "choice"), "livecodebench": (16, "code"),
                   "humaneval": (16, "code")}
    for b in cfg.eval.benchmarks:
        s = cfg.eval.benchmark(b)
        assert (s.temperature, s.top_p, s.prompts.template, s.prompts.system_prompt) == (
            0.6, 0.95, "chat", None)
        assert "\\boxed{}" in (s.instruction or "") or s.answer == "code"
    assert cfg.eval.benchmark("aime24").instruction == (
        "Please reason step by step, and put your final answer within \\boxed{}.")
    assert cfg.eval.decontamination.ngram == 8 and cfg.eval.decontamination.drop


# ---------------------------------------------------------------------------------------
# Two benchmarks, each with its own settings, on the tiny model
# ---------------------------------------------------------------------------------------


def test_two_benchmarks_are_evaluated_with_their_own_settings(tmp_path: Path) -> None:
    from r1pipe.artifacts import iter_records
    from r1pipe.config import load
    from r1pipe.evaluation import comparison, markdown_table, run_eval

    cfg = load(_config(tmp_path))
    results = run_eval(cfg)["base"]
    arith, quiz = results["arith"], results["quiz"]
    assert (arith["k"], arith["completions"], arith["settings"]["temperature"]) == (2, 6, 0.6)
    assert (quiz["k"], quiz["completions"], quiz["settings"]["temperature"]) == (3, 9, 0.9)
    assert quiz["settings"]["answer"] == "choice" and "answer" not in arith["settings"]
    samples = list(iter_records(tmp_path / "run/base/eval/quiz/samples"))
    assert len(samples) == 9
    for s in samples:
        # the question lists the options and carries the instruction; the gold is a letter
        assert "\nA) " in s["prompt"] and s["prompt"].endswith("within \\boxed{}.")
        assert s["answer"] == "B" and s["options"] == 3
        again = judge_sample(s, answer_type="choice")
        assert again["verdict"] == s["correct"] and again["extracted"] == s["extracted"]
        assert s["extracted"] in (None, "A", "B", "C")
    arith_samples = list(iter_records(tmp_path / "run/base/eval/arith/samples"))
    assert all("\nA) " not in s["prompt"] for s in arith_samples)
    table = markdown_table(comparison(cfg))
    assert "| quiz | 3 | 0.9 | 0.95 | 12 | `r1_zero` | choice |" in table
    assert "| arith | 2 | 0.6 | 0.95 | 12 | `r1_zero` | math |" in table

    # `--model`: any folder, evaluated with the same per-benchmark settings, is a row after
    # the run's own in `eval --compare`
    from typer.testing import CliRunner

    from r1pipe.cli import app

    folder = next(p.parent for p in (tmp_path / "run/_imports").rglob("config.json"))
    mine = run_eval(cfg, model=str(folder), name="mine")["mine"]
    assert (mine["quiz"]["k"], mine["arith"]["k"]) == (3, 2)
    assert mine["quiz"]["settings"] == quiz["settings"]
    comp = comparison(cfg)
    assert list(comp.rows) == ["base", "mine"] and not comp.stale
    out = CliRunner().invoke(app, ["eval", "--compare", str(tmp_path / "p.yaml")],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    assert "mine" in out.output and "k=3 · choice" in out.output


# ---------------------------------------------------------------------------------------
# lighteval cross-check
# ---------------------------------------------------------------------------------------

LIGHTEVAL_WHY = (
    "lighteval cannot run beside r1pipe's pins: lighteval 0.13.0 pins "
    "latex2sympy2_extended==1.0.6 against math-verify 0.9.0's ==1.11.0, and the version pip "
    "falls back to (0.9.2) pins numpy<2, which pyarrow>=21 (trl 1.16, datasets 5.2) cannot "
    "import with; with an older pyarrow it still fails loading a custom task "
    "(datasets 5 dropped `trust_remote_code`: TypeError in DownloadConfig)")


@pytest.mark.skip(reason=LIGHTEVAL_WHY)
def test_pass_at_1_agrees_with_lighteval() -> None:
    """Would score one tiny local checkpoint on one small local task with r1pipe and with
    lighteval (a custom task over a local JSONL, `lighteval accelerate`) and compare pass@1
    within two standard errors; it cannot run until the two pins agree."""
