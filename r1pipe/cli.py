"""`r1pipe`: run the R1 recipe from one YAML file.

Every import of torch, transformers or even pydantic happens inside a command, so that
`r1pipe --help` answers instantly.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

# r1pipe draws its own progress bars (rich, with counts and rates) and stage tables; the
# libraries' per-call tqdm bars ("Map", "Loading weights", "Tokenizing") would bury them.
# The trainer's step bar stays. Set either variable to 0 to get the libraries' bars back.
for _var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
    os.environ.setdefault(_var, "1")

app = typer.Typer(
    name="r1pipe",
    help="Reproduce, adapt and scale the DeepSeek-R1 training recipe: six resumable stages "
    "described in one pipeline YAML.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

VERBOSE = False


@app.callback()
def _options(verbose: bool = typer.Option(
        False, "--verbose", "-v",
        help="show tracebacks of errors, and every library warning and log line")) -> None:
    """Reproduce, adapt and scale the DeepSeek-R1 training recipe: six resumable stages
    described in one pipeline YAML."""
    global VERBOSE
    VERBOSE = verbose
    from r1pipe.quiet import install

    install(verbose)  # known-harmless library warnings off the terminal; -v shows them


ConfigArg = typer.Argument(..., help="pipeline YAML, e.g. configs/smoke.yaml",
                           show_default=False)
OverridesArg = typer.Argument(None, help="key.path=value overrides, e.g. "
                              "stages.r1_zero.trainer.learning_rate=1e-6", show_default=False)
InputOpt = typer.Option(None, "--input", "-i",
                        help="FIELD=PATH: use this model/data instead of the upstream stage's "
                        "(e.g. --input from=./my-model)")

EXIT_CONFIG = 2
EXIT_FAILED = 1


def _fail(message: str, code: int) -> NoReturn:
    from r1pipe.terminal import error

    error(message)
    raise typer.Exit(code)


def _load(config: str, overrides: list[str] | None):
    from r1pipe.config import ConfigError, load

    try:
        cfg = load(config, overrides or [])
    except ConfigError as exc:
        _fail(exc.one_line(), EXIT_CONFIG)
    cfg.apply_process_settings()
    return cfg


def _externals(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        if "=" not in item:
            _fail(f"--input {item!r} must be FIELD=PATH (e.g. from=./model)", EXIT_CONFIG)
        key, value = item.split("=", 1)
        out[key] = value
    return out


def _guarded(fn, *args: Any, **kwargs: Any) -> Any:
    """Turn the engine's expected failures into one-line errors with the right exit code."""
    from r1pipe.config import ConfigError
    from r1pipe.contract import BadInput, StageFailed
    from r1pipe.state import RunLocked

    try:
        return fn(*args, **kwargs)
    except ConfigError as exc:
        _fail(exc.one_line(), EXIT_CONFIG)
    except BadInput as exc:
        _fail(str(exc), EXIT_CONFIG)
    except (StageFailed, RunLocked) as exc:
        _fail(str(exc), EXIT_FAILED)
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume", 130)


# ---------------------------------------------------------------------------------------
# Plans and runs
# ---------------------------------------------------------------------------------------


def _print_plan(plan) -> None:
    from rich.table import Table

    from r1pipe.terminal import show, verbatim

    style = {"run": "green", "resume": "yellow", "stale": "magenta", "skip": "dim",
             "disabled": "dim", "not selected": "dim"}
    table = Table(title=f"plan for {plan.config.name} ({plan.layout.root})")
    for col in ("stage", "action", "why", "fingerprint"):
        table.add_column(col)
    from r1pipe.gates import failed

    for st in plan.stages:
        reason = st.reason + (" · gate failed" if failed(plan.layout, st.name) else "")
        table.add_row(st.name, verbatim(st.action, style[st.action]), reason,
                      st.fingerprint[:12])
    show(table, stdout=True)


def _print_ceilings(cfg) -> None:
    """Beside each `mix:`, the most samples its prompts can give (from the cache's dataset
    cards; nothing is downloaded), with a warning where `mix:` is out of reach."""
    from r1pipe.preflight import mix_ceilings

    for c in mix_ceilings(cfg, online=False):
        if c.reachable is None:
            typer.echo(f"{c.stage}: mix.{c.part} {c.wanted:,}: reachable count unknown "
                       f"({c.why})")
        elif c.reachable < c.wanted:
            typer.echo(f"warning: {c.stage}: mix.{c.part} {c.wanted:,} is out of reach: at "
                       f"most {c.reachable:,} ({c.prompts:,} prompts, {c.how}); {c.why} ({c.key})")
        else:
            typer.echo(f"{c.stage}: mix.{c.part} {c.wanted:,} of at most {c.reachable:,} "
                       f"({c.prompts:,} prompts, {c.how})")


class _Reporter:
    """Prints a rule when a stage starts and its summary table when it ends."""

    def __init__(self) -> None:
        self.started = 0.0

    def stage_start(self, st) -> None:
        from r1pipe.terminal import rule

        self.started = time.time()
        rule((st.name, "bold"), f" · {st.action} · {st.reason}", stdout=True)

    def stage_end(self, st, result, state) -> None:
        from r1pipe.progress import summary_table

        rows = {"status": (state or {}).get("status", "?"),
                "time": f"{time.time() - self.started:.1f} s", **result.summary}
        for name, path in result.artifacts.items():
            rows[f"artifact: {name}"] = path
        summary_table(f"{st.name} finished", rows)


@dataclass(frozen=True)
class RunRequest:
    """What `run`, `plan` and a stage command ask of `_run`, beside the config: the
    selection (`only`, `start`, `force`), `--dry-run`, `--input`, `--shard` and
    `--ignore-gates`, as one value (Typer's options stay flat on the commands)."""

    only: list[str] | None = None
    start: str | None = None
    force: bool = False
    dry_run: bool = False
    inputs: list[str] | None = None
    shard: str | None = None
    ignore_gates: bool = False


def _run(config: str, overrides: list[str] | None, request: RunRequest) -> None:
    from r1pipe.contract import Shard
    from r1pipe.pipeline import execute, plan

    cfg = _load(config, overrides)
    part = _guarded(Shard.parse, request.shard) if request.shard else None
    external = _externals(request.inputs)
    the_plan = _guarded(plan, cfg, only=request.only, start=request.start,
                        force=request.force, external=external)
    _print_plan(the_plan)
    if request.dry_run:
        _print_ceilings(cfg)
        return
    from r1pipe import evaluation

    if not the_plan.to_run:
        if part is not None or not _guarded(evaluation.pending, the_plan):
            typer.echo("nothing to do: every selected stage is finished and up to date")
            return
        typer.echo("every selected stage is up to date; finishing their evaluations")
    # decontamination and evaluation run as engine hooks (before the first stage, after each
    # one): the engine itself knows nothing of them
    # the tracker and the model cards get what a stage and its evaluation wrote
    from r1pipe import decontam, gates, results, tracking
    from r1pipe.pipeline import Hook

    # a stage's gate is checked once its evaluation is in, logged, then enforced
    hooks = [Hook.of(decontam), Hook.of(evaluation), Hook(after_stage=gates.check),
             Hook.of(tracking), Hook(after_stage=gates.enforce(request.ignore_gates))]
    try:
        _guarded(execute, the_plan, external=external, reporter=_Reporter(), shard=part,
                 hooks=hooks)
    finally:
        if part is None:
            results.write_quietly(cfg)  # RESULTS.md/.json: also when a gate stopped the run


@app.command()
def run(
    config: str = ConfigArg,
    overrides: list[str] = OverridesArg,
    start: str = typer.Option(None, "--from", help="re-run this stage and all after it"),
    only: list[str] = typer.Option(None, "--only", help="run only this stage (repeatable)"),
    force: bool = typer.Option(False, "--force", help="re-run selected stages even if finished"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and stop"),
    inputs: list[str] = InputOpt,
    shard: str = typer.Option(None, "--shard", help="i/N: with --only, generate part i of N"),
    ignore_gates: bool = typer.Option(False, "--ignore-gates", help="go on after a stage "
                                      "whose gate failed (docs/health.md)"),
) -> None:
    """Run every stage in order: finished ones are skipped, interrupted ones resume."""
    from r1pipe.registry import key

    _run(config, overrides, RunRequest(
        only=[key(o) for o in only] if only else None, start=key(start) if start else None,
        force=force, dry_run=dry_run, inputs=inputs, shard=shard, ignore_gates=ignore_gates))


@app.command("plan")
def plan_cmd(config: str = ConfigArg, overrides: list[str] = OverridesArg) -> None:
    """Print what `run` would do for each stage, and why (same as `run --dry-run`)."""
    _run(config, overrides, RunRequest(dry_run=True))


@app.command()
def validate(config: str = ConfigArg, overrides: list[str] = OverridesArg) -> None:
    """Check the pipeline file: keys, types, TRL trainer settings, stage inputs, cycles."""
    from r1pipe.graph import stage_order

    cfg = _load(config, overrides)
    order = stage_order(cfg)
    typer.echo(f"{config}: OK: pipeline {cfg.name!r}, {len(order)} stage(s): {' -> '.join(order)}")


@app.command()
def doctor(config: str = typer.Argument(None, help="a pipeline YAML file (optional)",
                                        show_default=False),
           overrides: list[str] = OverridesArg,
           measure: bool = typer.Option(True, help="time a matmul in float32 and bfloat16")
           ) -> None:
    """Show this machine's class (bf16 native or emulated) and each stage's precision here."""
    from rich.table import Table

    from r1pipe.doctor import machine_facts, stage_precisions
    from r1pipe.terminal import show, verbatim

    facts = Table(title="machine", show_header=False)
    facts.add_column("what")
    facts.add_column("value", overflow="fold")
    for label, value in machine_facts(measure=measure):
        facts.add_row(label, verbatim(value))
    show(facts, stdout=True)
    if not config:
        return
    cfg = _load(config, overrides)
    table = Table(title=verbatim(f"{cfg.name} · precision on this machine"))
    for col in ("stage", "trainer", "engines (generation.dtype)", "reward models"):
        table.add_column(col, overflow="fold")
    for row in stage_precisions(cfg):
        table.add_row(verbatim(row.stage), verbatim(row.trainer), verbatim(row.engine),
                      verbatim(row.reward_models))
    show(table, stdout=True)


@app.command()
def preflight(
    config: str = ConfigArg,
    overrides: list[str] = OverridesArg,
    gpus_per_node: int = typer.Option(..., "--gpus-per-node", min=1, help="GPUs per machine"),
    gpu_memory: float = typer.Option(..., "--gpu-memory", min=1.0,
                                     help="memory of one GPU in GiB, e.g. 80 for an H100"),
    nodes: int = typer.Option(1, "--nodes", min=1, help="machines"),
    bandwidth: float = typer.Option(None, "--bandwidth", min=0.1, help="GPU memory bandwidth "
                                    "in TB/s for the rollout-time estimate (default 3.35, an "
                                    "H100 SXM)"),
) -> None:
    """Check, before a GPU is spent, that every stage fits the cluster: memory per GPU
    (model states under the ZeRO stage, activations, the colocated vLLM engine and its KV
    room, reward models), lengths against each model's context, rollout time against the
    collective timeout, data sources that the installed `datasets` loads, and reachable
    sample counts. Exit 2 names the key to change."""
    from r1pipe.preflight import Preflight, cluster_from, print_report

    cfg = _load(config, overrides)
    cluster = cluster_from(gpus_per_node, gpu_memory, nodes, bandwidth)
    report = _guarded(Preflight(cfg, cluster).run)
    # a wide table in files and pipes too: rows name keys and paths that must not wrap
    print_report(report, width=None if sys.stdout.isatty() else 200)
    unchecked = [r for r in report.rows if r.status == "n/a"]
    if report.failures:
        _fail("\n".join(f"{r.key or r.stage}: {r.check}: needs {r.need}, has {r.have}"
                        + (f" ({r.fix})" if r.fix else "") for r in report.failures),
              EXIT_CONFIG)
    if unchecked:
        typer.echo(f"{config}: preflight incomplete: nothing found that cannot fit, but "
                   f"{len(unchecked)} check(s) could not run (the n/a rows say why)")
        return
    warned = sum(r.status == "warn" for r in report.rows)
    typer.echo(f"{config}: preflight OK for {nodes} x {gpus_per_node} GPUs of "
               f"{gpu_memory:g} GiB" + (f"; {warned} warning(s): the warn rows" if warned else ""))


# What `status` shows of a stage's summary, best first: the numbers that say whether the stage
# did its job (final reward and accuracy of RL, final loss of SFT, what sampling kept; for
# all-scenario RL, whether its reward model ranks held-out pairs and what GRPO did to the
# reward of held-out general prompts).
HEADLINE_SUFFIXES = ("reward (last)", "rewards/accuracy/mean (last)",
                     "reward-model held-out accuracy", "general helpfulness change",
                     "rewards/format/mean (last)", "loss (last)", "kept", "mix reasoning",
                     "mix general")


def headline(summary: dict[str, Any], count: int = 4) -> list[tuple[str, Any]]:
    """The `count` most telling entries of a stage summary (stage.json stores it sorted)."""
    chosen = [k for suffix in HEADLINE_SUFFIXES for k in summary if k.endswith(suffix)]
    chosen = list(dict.fromkeys(chosen)) or list(summary)
    return [(k, summary[k]) for k in chosen[:count]]


@app.command()
def status(config: str = ConfigArg, overrides: list[str] = OverridesArg,
           as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """Show every stage's state: finished, running, failed, stale, or not started."""
    from r1pipe.gates import failed as gate_failed
    from r1pipe.pipeline import plan

    cfg = _load(config, overrides)
    the_plan = _guarded(plan, cfg)
    rows = []
    for st in the_plan.stages:
        state = st.state or {}
        recorded = state.get("status", "not started")
        shown = recorded
        if st.action == "stale" and recorded in ("finished", "stale"):
            shown = "stale"
        elif st.action == "disabled":
            shown = "disabled"
        elif recorded == "finished" and gate_failed(the_plan.layout, st.name):
            shown = "gate failed"
        rows.append({
            "stage": st.name, "status": shown, "why": st.reason if shown != recorded or
            shown not in ("finished",) or "do not affect results" in st.reason else "",
            "next": st.action,
            "ended": state.get("ended"), "summary": state.get("summary", {}),
            "artifacts": state.get("artifacts", {}), "fingerprint": st.fingerprint,
        })
    from r1pipe.decontam import counts as contamination

    contaminated = contamination(cfg)  # per training source, from the run's report
    if as_json:
        typer.echo(json.dumps({"pipeline": cfg.name, "run_dir": str(the_plan.layout.root),
                               "stages": rows, "decontamination": contaminated},
                              indent=2, default=str))
        return
    from rich.table import Table

    from r1pipe.progress import format_value
    from r1pipe.terminal import show, verbatim

    table = Table(title=f"{cfg.name} · {the_plan.layout.root}")
    for col in ("stage", "status", "next", "ended", "headline metrics", "artifacts"):
        table.add_column(col, overflow="fold")
    colour = {"finished": "green", "running": "yellow", "failed": "red", "stale": "magenta",
              "interrupted": "yellow", "gate failed": "red"}
    for row in rows:
        ended = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["ended"])) if row["ended"] \
            else ""
        metrics = "\n".join(f"{k} = {format_value(v)}" for k, v in headline(row["summary"]))
        table.add_row(row["stage"], verbatim(row["status"], colour.get(row["status"], "dim")),
                      row["next"] + (f" ({row['why']})" if row["why"] else ""), ended, metrics,
                      "\n".join(row["artifacts"]))
    show(table, stdout=True)
    if contaminated:
        typer.echo("decontamination (prompts matching a benchmark): " + "; ".join(
            f"{source} {c['contaminated']} found, {c['dropped']} dropped"
            for source, c in contaminated.items()))


# ---------------------------------------------------------------------------------------
# Measuring: eval and report
# ---------------------------------------------------------------------------------------


@app.command("eval")
def eval_cmd(
    config: str = ConfigArg,
    overrides: list[str] = OverridesArg,
    stage: list[str] = typer.Option(None, "--stage", "-s", help="evaluate this stage's model "
                                    "(repeatable; 'base' = the base model); default: the base "
                                    "model and every finished stage"),
    model: str = typer.Option(None, "--model", help="evaluate this model folder or Hub id "
                              "instead; results go to runs/<name>/external/<model name>/"),
    name: str = typer.Option(None, "--name", help="row name for --model (default: its folder "
                             "name)"),
    benchmark: list[str] = typer.Option(None, "--benchmark", "-b", help="only this benchmark of "
                                        "the eval: block (repeatable)"),
    compare: bool = typer.Option(False, "--compare", help="sample nothing: print the before/after "
                                 "table of the run and write it to runs/<name>/eval_table.md"),
    shard: str = typer.Option(None, "--shard", help="i/N: sample only part i of N (for N "
                              "machines); run once more without --shard to merge and score"),
) -> None:
    """Sample k answers per benchmark prompt (temperature 0.6, top-p 0.95 by default) and report
    pass@1 ± SE, cons@k, format rate and length, per stage. Resumes where it stopped."""
    from r1pipe import evaluation
    from r1pipe.contract import Shard

    cfg = _load(config, overrides)
    if compare:
        path = _guarded(evaluation.write_table, cfg)
        evaluation.print_comparison(evaluation.comparison(cfg), f"{cfg.name}: evaluation")
        typer.echo(f"wrote {path}")
        return
    if stage and model:
        _fail("give --stage or --model, not both", EXIT_CONFIG)
    part = _guarded(Shard.parse, shard) if shard else None
    _guarded(evaluation.run_eval, cfg, stages=stage, model=model, name=name,
             benchmarks=benchmark, shard=part)
    if part is None:
        from r1pipe.tracking import refresh_cards

        refresh_cards(cfg)  # the stages' model cards show the results (`model-index`)


@app.command()
def report(
    config: str = ConfigArg,
    overrides: list[str] = OverridesArg,
    out: str = typer.Option(None, "--out", help="folder to write (default runs/<name>/report)"),
) -> None:
    """Build the run report: index.html (self-contained) and PNGs of rewards, response length,
    KL, clip ratio, SFT loss, the eval table, the rejection-sampling funnel, and samples."""
    from r1pipe.report import build_report

    cfg = _load(config, overrides)
    built = _guarded(build_report, cfg, out_dir=out)
    typer.echo(f"wrote {built.index} ({len(built.figures)} plots)")


# ---------------------------------------------------------------------------------------
# One command per stage
# ---------------------------------------------------------------------------------------

def _stage_command(stage: str):
    from r1pipe.stages import RECIPE

    def command(
        config: str = ConfigArg,
        overrides: list[str] = OverridesArg,
        force: bool = typer.Option(False, "--force", help="re-run even if finished"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and stop"),
        inputs: list[str] = InputOpt,
        shard: str = typer.Option(None, "--shard", help="i/N: generate only part i of N (for "
                                  "N machines sharing the run dir); run once more without "
                                  "--shard to merge and finish"),
    ) -> None:
        _run(config, overrides, RunRequest(only=[stage], force=force, dry_run=dry_run,
                                           inputs=inputs, shard=shard))

    command.__doc__ = (RECIPE[stage].help + " Its inputs come from earlier stages of the run "
                       "dir, or from --input FIELD=PATH.")
    return command


def _mount_stage_commands() -> None:
    from r1pipe.stages import RECIPE

    for stage in RECIPE:
        app.command(stage.replace("_", "-"))(_stage_command(stage))


_mount_stage_commands()


def _mount_subapps() -> None:
    from r1pipe.data.cli import app as data_app

    app.add_typer(data_app, name="data", help="Look at the pipeline's data sources.")


_mount_subapps()


def explain(exc: BaseException) -> tuple[str, int]:
    """Any exception that escapes a command, as (one line for a person, exit code).

    Bad input (config, data, arguments) exits 2 and says which file, line or key to fix;
    a failed run exits 1; a full or read-only disk names the path. `-v` adds the traceback.
    """
    from r1pipe.artifacts import ArtifactError
    from r1pipe.config import ConfigError
    from r1pipe.contract import BadInput, StageFailed
    from r1pipe.secrets import scrub
    from r1pipe.state import ForeignRunDir, RunLocked

    if isinstance(exc, KeyboardInterrupt):
        return "interrupted; run the same command again to resume", 130
    if isinstance(exc, ConfigError):
        return exc.one_line(), EXIT_CONFIG
    if isinstance(exc, (BadInput, ForeignRunDir)):
        return scrub(str(exc)), EXIT_CONFIG
    if isinstance(exc, ArtifactError):
        return scrub(str(exc)), EXIT_CONFIG
    if isinstance(exc, (StageFailed, RunLocked)):
        return scrub(str(exc)), EXIT_FAILED
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename or "(no path)"
        fix = {30: "the file system is read-only: give r1pipe a writable run_dir",
               28: "the disk is full: free space, then run the same command to resume",
               13: "permission denied: check the folder's owner and mode",
               }.get(exc.errno or 0, "")
        return scrub(f"{where}: {exc.strerror}" + (f"; {fix}" if fix else "")), EXIT_FAILED
    return scrub(f"{type(exc).__name__}: {exc} (run with -v for the traceback)"), EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """The console entry point: the Typer app, with every escaping exception turned into one
    line (`explain`) instead of a traceback."""
    try:
        app(args=argv, prog_name="r1pipe")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - this is the one place that reports them
        message, code = explain(exc)
        from r1pipe.terminal import error, traceback

        if VERBOSE:
            traceback()
        error(message)
        return code
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
