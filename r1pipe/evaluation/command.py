"""`r1pipe eval`: evaluate the models asked about, print each, rewrite the table.

The command sits on top of targets (which models), the runner (evaluate each) and the table
(print and rewrite `eval_table.md`). It has a module of its own because the table reads what
the runner writes: were the command in `runner.py`, runner and table would import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from r1pipe.evaluation.runner import Summary, evaluate_target
from r1pipe.evaluation.table import print_results, write_table
from r1pipe.evaluation.targets import select_targets

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig
    from r1pipe.contract import Shard


def run_eval(config: PipelineConfig, *, stages: Sequence[str] | None = None,
             model: str | None = None, name: str | None = None,
             benchmarks: Sequence[str] | None = None,
             shard: Shard | None = None) -> dict[str, dict[str, Summary | None]]:
    """`r1pipe eval`: evaluate the selected models, print each, rewrite the table."""
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import ConfigError

    if not config.eval.benchmarks:
        raise ConfigError("no benchmarks under `eval.benchmarks:`; add one, e.g. "
                          "`math: {builtin: reasoning, split: test, test_size: 100}`",
                          file=config.source_path, key="eval.benchmarks")
    layout = RunLayout(config.resolved_run_dir())
    from r1pipe.state import claim_run_dir

    claim_run_dir(layout.root)  # evaluations are written into the run dir: r1pipe's only
    out: dict[str, dict[str, Summary | None]] = {}
    for target in select_targets(config, layout, stages=stages, model=model, name=name):
        from r1pipe.terminal import rule

        rule(("eval", "bold"), f" · {target.label} · {target.model}")
        try:
            out[target.label] = evaluate_target(config, target, benchmarks, shard=shard)
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as exc:
            from r1pipe.contract import StageFailed

            raise StageFailed(f"evaluation of {target.label} failed: {type(exc).__name__}: "
                              f"{exc}; run the same command again to resume") from exc
        print_results(target.label, out[target.label])
    if shard is None:
        write_table(config, layout)
    return out
