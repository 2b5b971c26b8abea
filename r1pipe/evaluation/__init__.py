"""Evaluation: pass@1 over k samples, cons@k, format rate and lengths, per stage and benchmark.

Without measurement no stage can claim it helped. Every model of a run is evaluated the
same way, by the paper's protocol (k samples per question at temperature 0.6 / top-p 0.95,
scored by rules): the base model once, each stage's `model/` after the stage
(`eval.after_each_stage`), each distillation student, or any folder with `--model`.

The package is split by job, each module importing the ones below it directly:

- `scoring`: answers, votes, verdicts and the numbers of a benchmark (no files, no model);
- `targets`: which models a run has and where their results live;
- `runner`: one benchmark on one model, resumable (the only part that loads models);
- `table`: the before/after table, one model rendered to markdown, the terminal and HTML;
- `hook`: the engine hook (`before_stages`: the base model, `after_stage`: each stage's)
  that evaluates as `r1pipe run` goes;
- `command`: `r1pipe eval`.

Layout:

    runs/<name>/<stage>/eval/<benchmark>/samples/   per-sample JSONL with verdicts
    runs/<name>/<stage>/eval/<benchmark>/summary.json
    runs/<name>/base/eval/<benchmark>/...           the base model (no stage owns it)
    runs/<name>/distill/<student>/eval/<benchmark>/  one per distillation student
    runs/<name>/eval_table.md                       `r1pipe eval --compare`

This module only re-exports the public names, so `from r1pipe.evaluation import X` keeps
working; modules of the package never import from here (that would be a cycle).
"""

from __future__ import annotations

from r1pipe.evaluation.command import run_eval
from r1pipe.evaluation.hook import after_stage, before_stages, pending
from r1pipe.evaluation.runner import (
    SAMPLES_DIR,
    SETTINGS_FILE,
    SUMMARY_FILE,
    eval_fingerprint,
    eval_settings,
    evaluate_benchmark,
    evaluate_target,
    is_done,
    read_summary,
)
from r1pipe.evaluation.scoring import (
    FORMATS,
    PromptScores,
    format_score,
    judge_sample,
    majority_vote,
    mean_and_stderr,
    normalize_answer,
    sample_builder,
    scores_from_samples,
    summarize,
)
from r1pipe.evaluation.table import (
    METRIC_TABLES,
    TABLE_FILE,
    Cell,
    Comparison,
    cell_text,
    comparison,
    html_table,
    markdown_table,
    print_comparison,
    print_results,
    write_table,
)
from r1pipe.evaluation.targets import (
    BASE_LABEL,
    EXTERNAL_DIR,
    Target,
    all_targets,
    base_target,
    external_target,
    select_targets,
    stage_targets,
)

__all__ = [
    "BASE_LABEL",
    "EXTERNAL_DIR",
    "FORMATS",
    "METRIC_TABLES",
    "SAMPLES_DIR",
    "SETTINGS_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "Cell",
    "Comparison",
    "PromptScores",
    "Target",
    "after_stage",
    "all_targets",
    "base_target",
    "before_stages",
    "cell_text",
    "comparison",
    "eval_fingerprint",
    "eval_settings",
    "evaluate_benchmark",
    "evaluate_target",
    "external_target",
    "format_score",
    "html_table",
    "is_done",
    "judge_sample",
    "majority_vote",
    "markdown_table",
    "mean_and_stderr",
    "normalize_answer",
    "pending",
    "print_comparison",
    "print_results",
    "read_summary",
    "run_eval",
    "sample_builder",
    "scores_from_samples",
    "select_targets",
    "stage_targets",
    "summarize",
    "write_table",
]
