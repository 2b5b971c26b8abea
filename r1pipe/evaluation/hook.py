"""The engine's hook: evaluate each stage's model as the pipeline runs.

With `eval.after_each_stage` on, `r1pipe run` passes this module's two events to the engine
(`r1pipe.pipeline.execute(..., hooks=[Hook.of(r1pipe.evaluation)])`): `before_stages`
evaluates the base model, `after_stage` each stage's model. The engine knows nothing of
evaluation; this module is the only place that ties the two together, and `pending` tells
the CLI whether a run whose stages are all up to date still has evaluations to finish.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from r1pipe.evaluation.runner import evaluate_target, is_done
from r1pipe.evaluation.table import print_results, write_table
from r1pipe.evaluation.targets import base_target, stage_targets

if TYPE_CHECKING:
    from r1pipe.contract import Shard
    from r1pipe.evaluation.targets import Target
    from r1pipe.pipeline import Plan


def before_stages(plan_: Plan, shard: Shard | None = None) -> None:
    """Evaluate the base model (the "before" row), once before the first stage; the same
    conditions as `after_stage`."""
    if _evaluating(plan_, shard):
        _evaluate(plan_, [base_target(plan_.config, plan_.layout)])


def after_stage(plan_: Plan, stage: str, shard: Shard | None = None) -> None:
    """Evaluate what a stage produced.

    Called by the engine for every selected stage; does nothing unless
    `eval.after_each_stage` is on, for a `--shard` part, or for a stage that did not finish
    or has no model. A finished evaluation is skipped; an interrupted one resumes. An
    evaluation that fails stops the run with a one-line error but leaves the stage finished:
    the next `r1pipe run` skips the stage and evaluates again.
    """
    if _evaluating(plan_, shard) and plan_[stage].action not in ("disabled", "not selected"):
        _evaluate(plan_, stage_targets(plan_.config, plan_.layout, stage))


def _evaluating(plan_: Plan, shard: Shard | None) -> bool:
    """Whether the run evaluates as it goes: `eval.after_each_stage` with benchmarks, and
    not a `--shard` part (its process holds a share of one stage's generation only)."""
    config = plan_.config
    return shard is None and config.eval.after_each_stage and bool(config.eval.benchmarks)


def _evaluate(plan_: Plan, targets: list[Target]) -> None:
    config, layout = plan_.config, plan_.layout
    from r1pipe.contract import StageFailed

    ran = False
    for target in targets:
        if all(is_done(config, target, b) for b in config.eval.benchmarks):
            continue
        from r1pipe.terminal import rule

        rule(("eval", "bold"), f" · {target.label} · {', '.join(config.eval.benchmarks)}")
        try:
            results = evaluate_target(config, target)
        except Exception as exc:
            raise StageFailed(f"evaluation of {target.label} failed: {type(exc).__name__}: "
                              f"{exc}; run `r1pipe eval` (or `r1pipe run`) again to resume") \
                from exc
        ran = True
        print_results(target.label, results)
    if ran:
        write_table(config, layout)


def pending(plan_: Plan) -> bool:
    """Whether `after_each_stage` evaluations of the plan's finished stages are missing
    (so `r1pipe run` has work even when every stage is up to date)."""
    config, layout = plan_.config, plan_.layout
    if not config.eval.after_each_stage or not config.eval.benchmarks:
        return False
    targets = [base_target(config, layout)]
    for st in plan_.stages:
        if st.action not in ("disabled", "not selected"):
            targets += stage_targets(config, layout, st.name)
    return any(not is_done(config, t, b) for t in targets for b in config.eval.benchmarks)
