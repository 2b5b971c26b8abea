"""What the trainers do not log, sent to the pipeline's experiment tracker, and eval results
written into the model cards.

TRL's trainers report their own steps (rewards, KL, loss ...) to the trackers of the
`tracking:` block (`r1pipe.train.build_args`). What happens around them never reached a
tracker: evaluation results, the rejection-sampling funnel, generation throughput, stage
wall time. `before_stages` and `after_stage` are an engine hook's two events (the CLI passes
`Hook.of(r1pipe.tracking)` after evaluation's): they read
what the stages and the evaluation already wrote (`stage.json` summaries, `metrics.jsonl`,
`eval/<benchmark>/summary.json`) and logs it to the same run of the same tracker, one run
per stage named `<pipeline>/<stage>`. A ledger (`<run_dir>/tracking/logged.json`) makes each
number go out once, whether the stage ran now or an earlier run did.

Only numbers are logged, under fixed tag names: no config values, paths or summaries as
text, so no secret can reach a tracker through this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import atomic_write_json, read_json
from r1pipe.config import tensorboard_dir, tracker_environment
from r1pipe.state import read_metrics, read_state

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig
    from r1pipe.contract import Shard
    from r1pipe.pipeline import Plan

LEDGER = "tracking/logged.json"
"""Under the run dir: which stage runs and evaluations were already logged."""

EVAL_METRICS = ("pass@1", "pass@1_stderr", "cons@k", "format_rate", "mean_length",
                "truncated_rate")
"""What an evaluation's summary.json contributes, per benchmark."""

_FUNNEL = re.compile(r"^(reasoning|general) (samples|kept|removed by (.+))$")

Scalars = dict[str, float]


# ---------------------------------------------------------------------------------------
# The hook
# ---------------------------------------------------------------------------------------


def before_stages(plan_: Plan, shard: Shard | None = None) -> None:
    """Engine hook, before the first stage (after evaluation's): log the base model's
    evaluation to the tracker. Does nothing for a `--shard` part."""
    _record(plan_, None, shard)


def after_stage(plan_: Plan, stage: str, shard: Shard | None = None) -> None:
    """Engine hook: after a stage (and its evaluation), put its eval results into its model
    card and log what it produced to the tracker. Does nothing for a `--shard` part or an
    unfinished stage."""
    _record(plan_, stage, shard)


def _record(plan_: Plan, stage: str | None, shard: Shard | None) -> None:
    """Cards and tracker for `stage`'s models, or for the base model (`stage=None`)."""
    if shard is not None:
        return
    config, layout = plan_.config, plan_.layout
    if stage is not None and plan_[stage].action in ("disabled", "not selected"):
        return
    from r1pipe.evaluation.targets import base_target, stage_targets

    label = stage or "base"
    targets = [base_target(config, layout)] if stage is None else stage_targets(
        config, layout, stage)
    _cards(config, targets)
    if not config.tracking.report_to:
        return
    ledger_path = layout.root / LEDGER
    ledger: dict[str, Any] = read_json(ledger_path) or {}
    scalars: Scalars = {}
    keys: list[str] = []
    state = read_state(layout, stage) if stage else None
    if state is not None and state.get("status") == "finished":
        key = f"stage:{stage}:{state.get('run_id')}"
        if key not in ledger:
            scalars.update(stage_scalars(state, layout.stage_dir(stage) / "metrics.jsonl"))
            scalars.update(check_scalars(layout, stage))
            keys.append(key)
    for target in targets:
        prefix = "eval/" + (target.label.split("/", 1)[1] + "/" if "/" in target.label else "")
        for benchmark, summary in eval_summaries(config, target.eval_dir):
            key = f"eval:{target.label}:{benchmark}:{summary.get('fingerprint')}"
            if key in ledger:
                continue
            for metric in EVAL_METRICS:
                value = summary.get(metric)
                if _is_number(value):
                    scalars[f"{prefix}{benchmark}/{metric}"] = float(value)
            keys.append(key)
    if not scalars:
        return
    step = last_step(layout.stage_dir(stage) / "metrics.jsonl") if stage else 0
    log_scalars(config, label, scalars, step=step,
                run_key=str((state or {}).get("fingerprint", "")))
    ledger.update(dict.fromkeys(keys, True))
    atomic_write_json(ledger_path, ledger)


def refresh_cards(config: PipelineConfig) -> None:
    """Eval results into the model card of every finished stage (after `r1pipe eval`)."""
    from r1pipe.artifacts import RunLayout
    from r1pipe.evaluation.targets import stage_targets

    layout = RunLayout(config.resolved_run_dir())
    for stage in config.stages:
        _cards(config, stage_targets(config, layout, stage))


def _cards(config: PipelineConfig, targets: list[Any]) -> None:
    for target in targets:
        results = eval_results(config, target.eval_dir)
        if results and Path(target.model).is_dir():
            try:
                write_eval_card(Path(target.model), f"{config.name}/{target.label}", results)
            except (OSError, ValueError) as exc:  # a hand-edited card; the run goes on
                _warn(f"could not add eval results to {target.model}/README.md: {exc}")


# ---------------------------------------------------------------------------------------
# What is logged
# ---------------------------------------------------------------------------------------


def stage_scalars(state: dict[str, Any], metrics_path: Path) -> Scalars:
    """A finished stage's numbers: wall time, the rejection-sampling funnel (generated,
    kept, removed by each filter), generation tokens/s, and its numeric summary."""
    out: Scalars = {}
    started, ended = state.get("started"), state.get("ended")
    if _is_number(started) and _is_number(ended):
        out["stage/wall_time_s"] = float(ended) - float(started)
    for key, value in (state.get("summary") or {}).items():
        if not _is_number(value):
            continue
        match = _FUNNEL.match(key)
        if match:
            kind, what, filt = match.groups()
            name = "generated" if what == "samples" else "kept" if what == "kept" else \
                "removed_by/" + _tag(filt)
            out[f"funnel/{kind}/{name}"] = float(value)
        else:
            out[f"summary/{_tag(key)}"] = float(value)
    tokens = seconds = 0.0
    for line in read_metrics(metrics_path) if metrics_path.is_file() else []:
        if _is_number(line.get("tokens")) and _is_number(line.get("seconds")) and \
                "tokens_per_second" in line:
            tokens += float(line["tokens"])
            seconds += float(line["seconds"])
    if seconds > 0:
        out["generation/tokens_per_s"] = tokens / seconds
        out["generation/tokens"] = tokens
    return out


def check_scalars(layout: Any, stage: str) -> Scalars:
    """The stage's training-health verdicts (`health/<rule>`: 0 ok, 1 warned, 2 stopped),
    its gate (`gate/passed`, `gate/delta`, `gate/delta_se`), as `r1pipe.health` and
    `r1pipe.gates` recorded them. Dynamic-sampling counts are summary numbers
    (`summary/dynamic_sampling_*`) and, per step, the trainer's own logs."""
    from r1pipe import gates, health

    return {**health.scalars(layout.stage_dir(stage)), **gates.scalars(layout, stage)}


def eval_summaries(config: PipelineConfig, eval_dir: Path) -> Iterator[tuple[str, dict]]:
    """(benchmark, summary.json) of each finished evaluation of the `eval:` block."""
    for benchmark in config.eval.benchmarks:
        summary = read_json(eval_dir / benchmark / "summary.json")
        if isinstance(summary, dict):
            yield benchmark, summary


def eval_results(config: PipelineConfig, eval_dir: Path) -> list[tuple[str, str, float]]:
    """(benchmark, metric, value) of the finished evaluations, for a model card."""
    out = []
    for benchmark, summary in eval_summaries(config, eval_dir):
        for metric in ("pass@1", "cons@k", "format_rate"):
            if _is_number(summary.get(metric)):
                out.append((benchmark, metric, float(summary[metric])))
    return out


def last_step(metrics_path: Path) -> int:
    """The last trainer step a stage logged (0 for a stage that trains nothing), so numbers
    logged after training sit at the end of its curves."""
    steps = [int(m["step"]) for m in (read_metrics(metrics_path) if metrics_path.is_file()
                                      else []) if _is_number(m.get("step"))]
    return max(steps, default=0)


def write_eval_card(model_dir: Path, model_name: str,
                    results: list[tuple[str, str, float]]) -> None:
    """Put the results into the model card's `model-index` (the Hub shows them)."""
    from r1pipe.checkpoints import set_card_eval_results

    set_card_eval_results(model_dir, model_name, results)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_./@-]+", "_", str(text)).strip("_")


# ---------------------------------------------------------------------------------------
# Trackers
# ---------------------------------------------------------------------------------------


def log_scalars(config: PipelineConfig, stage: str, scalars: Scalars, *, step: int = 0,
                run_key: str = "") -> None:
    """Log `scalars` to every tracker of `tracking.report_to`, in the stage's run."""
    tr = config.tracking
    run_name = tr.run_name(config.name, stage)
    for tracker in tr.report_to:
        try:
            if tracker == "tensorboard":
                _tensorboard(config, stage, scalars, step)
            elif tracker == "trackio":
                _trackio(tr.project_name(config.name), run_name, tr.group_name(config.name),
                         scalars, step)
            elif tracker == "wandb":
                _wandb(config, stage, scalars, step, run_key)
            elif tracker == "mlflow":
                _mlflow(tr.project_name(config.name), run_name, tr.group_name(config.name),
                        scalars, step)
            # other trackers get the trainers' own logs (transformers' integrations) only
        except Exception as exc:  # noqa: BLE001 - a tracker outage must not stop a long run
            _warn(f"could not log {stage}'s results to {tracker}: {type(exc).__name__}: {exc}")


def _warn(message: str) -> None:
    from r1pipe.secrets import scrub
    from r1pipe.terminal import warning

    warning(scrub(message))


def _tensorboard(config: PipelineConfig, stage: str, scalars: Scalars, step: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tensorboard_dir(config.resolved_run_dir().resolve(),
                                                       config.name, stage)))
    try:
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
    finally:
        writer.close()


def _trackio(project: str, run_name: str, group: str, scalars: Scalars, step: int) -> None:
    import contextlib
    import io
    import logging

    import trackio

    chatter = io.StringIO()  # trackio prints where its files are, once per init: to the log
    with contextlib.redirect_stdout(chatter):
        trackio.init(project=project, name=run_name, group=group, resume="allow",
                     auto_log_gpu=False, auto_log_cpu=False)
        try:
            trackio.log(dict(scalars), step=step)
        finally:
            trackio.finish()
    logging.getLogger("trackio").info(chatter.getvalue().strip())


def _wandb(config: PipelineConfig, stage: str, scalars: Scalars, step: int,
           run_key: str) -> None:
    import wandb

    env = tracker_environment(config, stage, run_key)
    run = wandb.init(project=env["WANDB_PROJECT"], group=env["WANDB_RUN_GROUP"],
                     name=config.tracking.run_name(config.name, stage),
                     id=env["WANDB_RUN_ID"], resume="allow",
                     # the trainer's run may still be open in this process: without this,
                     # wandb hands it back and drops our earlier steps as out of order
                     reinit="finish_previous")
    try:
        run.log(dict(scalars), step=step)
    finally:
        run.finish()


def _mlflow(project: str, run_name: str, group: str, scalars: Scalars, step: int) -> None:
    import mlflow

    if mlflow.active_run() is not None:  # the trainer's run, left open in this process
        mlflow.end_run()
    mlflow.set_experiment(project)
    found = mlflow.search_runs(filter_string=f"tags.mlflow.runName = '{run_name}'",
                               max_results=1, output_format="list")
    with mlflow.start_run(run_id=found[0].info.run_id if found else None,
                          run_name=None if found else run_name, tags={"group": group}):
        # MLflow refuses some characters in metric names ("pass@1"): spelled out
        mlflow.log_metrics({re.sub(r"[^A-Za-z0-9_\-. :/]", "_", k.replace("@", "_at_")): v
                            for k, v in scalars.items()}, step=step)
