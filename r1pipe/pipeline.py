"""The engine: plan the stages like a build system, then run, skip or resume each one.

A stage's fingerprint hashes its resolved section, the global sections it declares, and the
fingerprints of its inputs (upstream stages, the base model, data sources). `stage.json`
remembers the fingerprint a stage ran with. Planning compares the two:

- finished and unchanged               -> skip
- started, unchanged, not finished     -> resume (the stage gets its last trainer checkpoint
                                          and finished shards)
- changed, or an upstream stage runs   -> stale: re-run from scratch
- never ran                            -> run

Only result settings are fingerprinted: the operational ones (logging, saving, tracking,
workers, generation transport; the tables next to the config models, `r1pipe.config.
OPERATIONAL_STAGE_KEYS` and its siblings) can change freely, and the plan says so. A
`stage.json` written by r1pipe before that split is recognised by recomputing its
fingerprint the old way (`legacy_fingerprint`), so upgrading r1pipe re-runs nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from r1pipe import registry
from r1pipe.artifacts import RunLayout, atomic_write, fingerprint, remove_tree
from r1pipe.config import (
    BASE,
    ConfigError,
    Input,
    LaunchConfig,
    PipelineConfig,
    StageConfig,
    dump,
    merge_launch,
    operational_settings,
    result_settings,
)
from r1pipe.contract import (
    BadInput,
    ResumeInfo,
    Shard,
    StageContext,
    StageFailed,
    StageResult,
)
from r1pipe.graph import downstream, stage_edges, stage_order
from r1pipe.launch import accelerate_file, run_launched, wait_for_leader, world_size
from r1pipe.quiet import route_library_logs, stage_log
from r1pipe.secrets import scrub
from r1pipe.state import (
    claim_run_dir,
    latest_checkpoint,
    package_versions,
    read_state,
    run_lock,
    write_state,
)

Action = Literal["run", "skip", "resume", "stale", "disabled", "not selected"]
# Recorded in stage.json; a stage.json without it was fingerprinted the 0.x way.
FINGERPRINT_VERSION = 2
STAGE_LOG = "stage.log"
"""In the stage's folder: every log record and warning of the stage's run, appended."""


# ---------------------------------------------------------------------------------------
# Planning
# ---------------------------------------------------------------------------------------


@dataclass
class PlannedStage:
    name: str
    action: Action
    reason: str
    fingerprint: str
    inputs: list[Input]
    state: dict[str, Any] | None


@dataclass
class Plan:
    config: PipelineConfig
    layout: RunLayout
    stages: list[PlannedStage]

    def __getitem__(self, name: str) -> PlannedStage:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def to_run(self) -> list[PlannedStage]:
        return [s for s in self.stages if s.action in ("run", "resume", "stale")]


def _input_fingerprint(config: PipelineConfig, inp: Input, planned: dict[str, str]) -> str:
    if inp.kind == "model" and inp.value == BASE:
        from r1pipe.models import fingerprint as model_fingerprint

        return "model:" + model_fingerprint(config.base_model)
    if inp.stage is not None:
        return f"stage:{inp.stage}:{planned.get(inp.stage, 'external')}:{inp.artifact}"
    return "data:" + fingerprint(config.data[inp.value].identity())


def section_identity(config: PipelineConfig, name: str) -> dict[str, Any]:
    """The parts of the config that decide what a stage produces (its result settings)."""
    section = config.stages[name]
    ident: dict[str, Any] = {
        "stage": name,
        "section": result_settings(section.model_dump(mode="json", by_alias=True), "stage"),
        "seed": config.seed,
        "trust_remote_code": config.trust_remote_code,
    }
    for global_name in getattr(type(section), "global_sections", ()):
        ident[global_name] = _result_view(global_name,
                                          getattr(config, global_name).model_dump(mode="json"))
    return ident


def _result_view(global_name: str, tree: dict[str, Any]) -> dict[str, Any]:
    return result_settings(tree, "generation") if global_name == "generation" else tree


def section_settings(config: PipelineConfig, name: str) -> dict[str, Any]:
    """The operational settings of a stage (by key path, secrets masked): stored in
    `stage.json` so the plan can say which ones changed without re-running anything."""
    from r1pipe.secrets import mask_secret_keys

    section = config.stages[name]
    out = {f"{k}": v for k, v in operational_settings(
        section.model_dump(mode="json", by_alias=True), "stage").items()}
    for global_name in getattr(type(section), "global_sections", ()):
        if global_name == "generation":
            out.update({f"generation.{k}": v for k, v in operational_settings(
                config.generation.model_dump(mode="json"), "generation").items()})
    return mask_secret_keys(out)


def _legacy_source_identity(source: Any) -> dict[str, Any]:
    """A data source as r1pipe 0.x identified it: settings plus file sizes and mtimes."""
    from pathlib import Path

    ident: dict[str, Any] = {"config": source.model_dump(mode="json")}
    if source.path:
        p = Path(source.path)
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        ident["files"] = [(str(f), f.stat().st_size, int(f.stat().st_mtime))
                          for f in files[:10_000] if f.is_file()]
    return ident


def legacy_fingerprint(config: PipelineConfig, layout: RunLayout, name: str,
                       state: dict[str, Any]) -> str | None:
    """The fingerprint r1pipe 0.x would give this stage now, computed from the identity its
    `stage.json` recorded, when that identity means the same results as today's config
    (it differs from today's at most in operational settings); else None.

    Hashing the recorded identity with the inputs computed the old way checks that the
    inputs are what they were then (upstream stages by the fingerprint they ran with)."""
    old = state.get("identity")
    if not isinstance(old, dict) or "section" not in old:
        return None
    new = section_identity(config, name)
    view = {k: (result_settings(v, "stage") if k == "section" else _result_view(k, v))
            if isinstance(v, dict) else v for k, v in old.items()}
    if view != new:
        return None
    inputs: dict[str, str] = {}
    for inp in config.stages[name].inputs():
        if inp.kind == "model" and inp.value == BASE:
            from r1pipe.models import fingerprint as model_fingerprint

            inputs[inp.field] = "model:" + model_fingerprint(config.base_model)
        elif inp.stage is not None:
            up = read_state(layout, inp.stage) or {}
            up_fp = up.get("legacy_fingerprint") or up.get("fingerprint", "external")
            inputs[inp.field] = f"stage:{inp.stage}:{up_fp}:{inp.artifact}"
        else:
            try:
                inputs[inp.field] = "data:" + fingerprint(
                    _legacy_source_identity(config.data[inp.value]))
            except OSError:
                return None
    return fingerprint({"identity": old, "inputs": inputs})


def plan(config: PipelineConfig, *, only: list[str] | None = None, start: str | None = None,
         force: bool = False, external: dict[str, str] | None = None) -> Plan:
    """Decide for every stage: run, skip, resume or stale, and say why.

    only:  run these stages alone (their inputs must exist, or come from `external`);
    start: this stage and everything after it in order, forced to re-run;
    force: re-run the selected stages even if finished.
    """
    layout = RunLayout(config.resolved_run_dir())
    order = stage_order(config)
    for name in [*(only or []), *([start] if start else [])]:
        if name not in config.stages:
            raise ConfigError(f"stage {name!r} is not in `stages:` (have: {', '.join(order)})",
                              file=config.source_path, key=f"stages.{name}")
    selected = set(only) if only else set(order)
    forced: set[str] = set(selected) if force else set()
    if start:
        after = order[order.index(start):]
        selected &= set(after)
        forced |= set(after)

    planned_fp: dict[str, str] = {}
    actions: dict[str, Action] = {}
    planning = _Planning(config, layout, selected, forced, actions)
    result: list[PlannedStage] = []
    for name in order:
        section = config.stages[name]
        inputs = section.inputs()
        inp_fps = {i.field: _input_fingerprint(config, i, planned_fp) for i in inputs}
        fp = fingerprint({"identity": section_identity(config, name), "inputs": inp_fps})
        planned_fp[name] = fp
        state = read_state(layout, name)
        action, reason = _decide(name, section, state, fp, inputs, planning)
        actions[name] = action
        result.append(PlannedStage(name, action, reason, fp, inputs, state))
    return Plan(config, layout, result)


@dataclass(frozen=True)
class _Planning:
    """What deciding one stage reads besides the stage itself: the pipeline and its run dir,
    the stages the command selected and forced, and the actions decided so far (`actions`
    fills as `plan` goes; stages come in order, so an input's stage is decided first)."""

    config: PipelineConfig
    layout: RunLayout
    selected: set[str]
    forced: set[str]
    actions: dict[str, Action]


def _decide(name: str, section: StageConfig, state: dict[str, Any] | None, fp: str,
            inputs: list[Input], planning: _Planning) -> tuple[Action, str]:
    config, layout, actions = planning.config, planning.layout, planning.actions
    selected, forced = planning.selected, planning.forced
    if not section.enabled:
        return "disabled", "enabled: false"
    if name not in selected:
        return "not selected", "outside --only/--from"
    if name in forced:
        return ("stale" if state else "run"), "forced"
    if state is None:
        return "run", "never ran"
    if state.get("fingerprint") != fp and not (
            state.get("fingerprint_version") is None
            and state.get("fingerprint") == legacy_fingerprint(config, layout, name, state)):
        return "stale", _why_changed(state, config, name, inputs, actions)
    upstream_rerun = [i.stage for i in inputs
                      if i.stage and actions.get(i.stage) in ("run", "resume", "stale")]
    if upstream_rerun:
        return "stale", f"input from {upstream_rerun[0]} will be produced again"
    for inp in inputs:
        if inp.stage is None:
            continue
        up = read_state(layout, inp.stage) or {}
        recorded = state.get("input_runs", {}).get(inp.stage)
        if recorded and up.get("run_id") and up["run_id"] != recorded:
            return "stale", f"{inp.stage} finished again after this stage ran"
    status = state.get("status")
    if status == "finished":
        changed = operational_changes(state, config, name)
        if changed:
            more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
            return "skip", ("finished; settings changed that do not affect results: "
                            + ", ".join(changed[:3]) + more)
        return "skip", "finished; fingerprint matches"
    if status == "stale":
        return "stale", state.get("stale_reason", "an upstream stage re-ran")
    ckpt = latest_checkpoint(layout.checkpoints_dir(name))
    where = f"; from {ckpt.name}" if ckpt else ""
    return "resume", f"{status or 'interrupted'}{where}"


def operational_changes(state: dict[str, Any], config: PipelineConfig, name: str) -> list[str]:
    """Key paths of operational settings that differ from those the stage ran with (none
    for a `stage.json` that recorded no settings: it predates them)."""
    old = state.get("settings")
    if not isinstance(old, dict):
        return []
    new = section_settings(config, name)
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def _why_changed(state: dict[str, Any], config: PipelineConfig, name: str,
                 inputs: list[Input], actions: dict[str, Action]) -> str:
    old = state.get("identity", {})
    new = section_identity(config, name)
    changed = _diff_keys(old.get("section", {}), new["section"], "")
    if changed:
        more = f" (+{len(changed) - 3} more)" if len(changed) > 3 else ""
        return "config changed: " + ", ".join(changed[:3]) + more
    for key in ("seed", "trust_remote_code", "generation"):
        if old.get(key) != new.get(key):
            return f"{key} changed"
    for inp in inputs:
        if inp.stage and actions.get(inp.stage) in ("run", "resume", "stale"):
            return f"input from {inp.stage} will be produced again"
    return "an input changed (" + ", ".join(i.value for i in inputs) + ")"


def _diff_keys(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new)):
            out += _diff_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


# ---------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------


def resolve_inputs(config: PipelineConfig, layout: RunLayout, name: str,
                   external: dict[str, str] | None = None) -> dict[str, str]:
    """Turn a stage's references into what it loads: folders, Hub ids, or source names."""
    external = dict(external or {})
    out: dict[str, str] = {}
    for inp in config.stages[name].inputs():
        if inp.field in external:
            out[inp.field] = external.pop(inp.field)
            continue
        if inp.kind == "model" and inp.value == BASE:
            from r1pipe.models import materialize

            out[inp.field] = materialize(config.base_model, layout.imports)
            continue
        if inp.stage is None:
            out[inp.field] = inp.value  # a data source name; the stage loads it via r1pipe.data
            continue
        path = layout.stage_dir(inp.stage) / inp.artifact
        state = read_state(layout, inp.stage) or {}
        if state.get("status") != "finished" or not path.exists():
            raise StageFailed(
                f"stage {name} needs {inp.artifact} of stage {inp.stage}, which has not finished "
                f"({path}); run `r1pipe run` for the whole pipeline, or pass "
                f"--input {inp.field}=PATH")
        out[inp.field] = str(path)
    if external:
        raise ConfigError(f"--input names no input of stage {name}: {', '.join(external)} "
                          f"(its inputs: {', '.join(i.field for i in config.stages[name].inputs())})")
    return out


def _clear_outputs(layout: RunLayout, name: str) -> None:
    """A stale stage starts from nothing: its old model, data and checkpoints are removed
    (renamed aside first, so no half-deleted stage is ever visible)."""
    remove_tree(layout.stage_dir(name))


def _mark_downstream_stale(plan_: Plan, name: str) -> None:
    for other in downstream(stage_edges(plan_.config), name):
        state = read_state(plan_.layout, other)
        if state and state.get("status") == "finished":
            state["status"] = "stale"
            state["stale_reason"] = f"upstream stage {name} re-ran"
            write_state(plan_.layout, other, state)


def write_resolved_config(config: PipelineConfig, layout: RunLayout) -> None:
    """`runs/<name>/pipeline.yaml`: the config as run (overrides applied, secrets masked)."""
    atomic_write(layout.pipeline_yaml, scrub(dump(config, mask_secrets=True)))


def configured_shard(plan_: Plan) -> Shard | None:
    """`shard: i/N` in the section of a stage about to run: the YAML form of --shard (a
    generating stage declares the field; it is not fingerprinted, like `launch`)."""
    for st in plan_.to_run:
        value = getattr(plan_.config.stages[st.name], "shard", None)
        if value:
            return Shard.parse(value)
    return None


@dataclass(frozen=True)
class Hook:
    """Work the engine does around the stages without knowing what it is, as two events,
    both called under the run lock: `before_stages(plan, shard)` once, before the first
    stage (decontamination, the base model's evaluation); `after_stage(plan, stage, shard)`
    after every stage of the plan in order, whether it ran or was skipped (a hook reads the
    stage's state to decide what to do). Either may be left out."""

    before_stages: Callable[[Plan, Shard | None], None] | None = None
    after_stage: Callable[[Plan, str, Shard | None], None] | None = None

    @classmethod
    def of(cls, handler: object) -> Hook:
        """The hook of a module (or object) whose functions are named for the events:
        `Hook.of(r1pipe.evaluation)` calls its `before_stages` and `after_stage`."""
        hook = cls(before_stages=getattr(handler, "before_stages", None),
                   after_stage=getattr(handler, "after_stage", None))
        if hook.before_stages is None and hook.after_stage is None:
            raise TypeError(f"{handler!r} has neither `before_stages` nor `after_stage`")
        return hook


class Reporter(Protocol):
    """What the CLI shows as stages start and end."""

    def stage_start(self, st: PlannedStage) -> None: ...

    def stage_end(self, st: PlannedStage, result: StageResult,
                  state: dict[str, Any] | None) -> None: ...


def execute(plan_: Plan, *, external: dict[str, str] | None = None,
            reporter: Reporter | None = None, shard: Shard | None = None,
            hooks: Sequence[Hook] = ()) -> dict[str, StageResult]:
    """Run the planned stages in order under the run lock; returns their results."""
    config, layout = plan_.config, plan_.layout
    results: dict[str, StageResult] = {}
    shard = shard or configured_shard(plan_)
    if shard is not None and len(plan_.to_run) > 1:
        raise ConfigError("--shard splits one stage's generation: select the stage "
                          f"(e.g. `r1pipe {plan_.to_run[0].name.replace('_', '-')} ... --shard "
                          f"{shard.index}/{shard.count}`)")
    followers = [st for st in plan_.to_run if _launch_of(config, st.name).machine_rank > 0]
    if followers:
        return {st.name: _run_as_follower(plan_, st, external) for st in followers}

    config.apply_process_settings()
    claim_run_dir(layout.root)  # before the lock file: r1pipe writes only into its own dirs
    with run_lock(layout, shard):
        route_library_logs()
        write_resolved_config(config, layout)
        record_fingerprints(plan_)
        for hook in hooks:
            if hook.before_stages is not None:
                hook.before_stages(plan_, shard)
        for st in plan_.stages:
            if st.action in ("run", "resume", "stale"):
                if reporter:
                    reporter.stage_start(st)
                result = run_stage(plan_, st, external=external, shard=shard)
                results[st.name] = result
                if reporter:
                    reporter.stage_end(st, result, read_state(layout, st.name))
            for hook in hooks:
                if hook.after_stage is not None:
                    hook.after_stage(plan_, st.name, shard)
    return results


def record_fingerprints(plan_: Plan) -> None:
    """Rewrite the `stage.json` of skipped stages recognised by their 0.x fingerprint with
    today's, once (the old one stays as `legacy_fingerprint`: evaluations keyed on it stay
    valid, and downstream stages not yet migrated still find it)."""
    for st in plan_.stages:
        state = st.state
        if st.action != "skip" or not state or state.get("fingerprint") == st.fingerprint:
            continue
        state = {**state, "legacy_fingerprint": state.get("fingerprint"),
                 "fingerprint": st.fingerprint, "fingerprint_version": FINGERPRINT_VERSION,
                 "identity": section_identity(plan_.config, st.name),
                 "settings": section_settings(plan_.config, st.name)}
        write_state(plan_.layout, st.name, state)


def stage_launch(config: PipelineConfig, name: str) -> LaunchConfig:
    """A stage's `launch:` over the global one, field by field: a stage that sets only
    `num_machines` keeps the global accelerate config (ZeRO-3) and process count. A field
    the stage sets to null (`accelerate_config: null`) is cleared."""
    return merge_launch(config.launch, config.stages[name].launch)


def stage_world_size(config: PipelineConfig, name: str) -> int:
    """Processes a stage runs on (1 in-process): it sets GRPO's and SFT's global batch, and
    a trainer checkpoint resumes only at the world size that wrote it (S11 of issue 30)."""
    launch = stage_launch(config, name)
    try:
        accel = accelerate_file(launch, config)
    except ConfigError:
        accel = {}  # `accelerate launch` itself names the missing file
    return world_size(launch, accel)[0]


def _launch_of(config: PipelineConfig, name: str) -> LaunchConfig:
    return stage_launch(config, name)


def _run_as_follower(plan_: Plan, st: PlannedStage, external: dict[str, str] | None
                     ) -> StageResult:
    """Machine rank > 0 of a multi-node stage: start this node's workers, write nothing.

    Rank 0's engine owns the lock and stage.json; on a shared filesystem several engines
    writing them would race. Workers on every node still train and write checkpoints as
    the trainer decides (rank 0 only, by default).
    """
    name = st.name
    wait_for_leader(plan_.layout.root, name)  # node 0 first runs the hooks (decontamination)
    inputs = resolve_inputs(plan_.config, plan_.layout, name, external)
    ctx = StageContext(name, plan_.config.stages[name], plan_.config, plan_.layout, inputs,
                       ResumeInfo(last_checkpoint=latest_checkpoint(
                           plan_.layout.checkpoints_dir(name))), st.fingerprint)
    return run_launched(ctx, _launch_of(plan_.config, name))


def run_stage(plan_: Plan, st: PlannedStage, *, external: dict[str, str] | None = None,
              shard: Shard | None = None) -> StageResult:
    config, layout = plan_.config, plan_.layout
    name = st.name
    previous = read_state(layout, name) or {}
    if shard is not None and previous and previous.get("fingerprint") != st.fingerprint:
        raise StageFailed(f"{layout.stage_dir(name)} holds results of another config; several "
                          "machines cannot clear it at once: remove it (or run the stage once "
                          "without --shard) before sharded generation")
    if st.action in ("run", "stale") and shard is None:
        _clear_outputs(layout, name)
        _mark_downstream_stale(plan_, name)
        previous = {}
    resume = ResumeInfo(previous_status=previous.get("status") if st.action == "resume" else None,
                        last_checkpoint=latest_checkpoint(layout.checkpoints_dir(name)))
    world = stage_world_size(config, name)
    if resume.last_checkpoint is not None and previous.get("world_size") not in (None, world):
        raise StageFailed(
            f"stage {name}: {resume.last_checkpoint} was written by {previous['world_size']} "
            f"processes and this run starts {world}: the global batch would change and a "
            f"ZeRO-3 checkpoint cannot be loaded at another world size; set `launch:` back to "
            f"{previous['world_size']} processes to resume, or run with --force to start the "
            "stage over")
    state: dict[str, Any] = {
        "stage": name,
        "world_size": world,
        "status": "running" if shard is None else "partial",
        "fingerprint": st.fingerprint,
        "fingerprint_version": FINGERPRINT_VERSION,
        "identity": section_identity(config, name),
        "settings": section_settings(config, name),
        "started": previous.get("started") if st.action == "resume" else time.time(),
        "attempts": int(previous.get("attempts", 0)) + 1 if st.action == "resume" else 1,
        "pid": os.getpid(),
        "versions": package_versions(),
        "input_runs": {i.stage: (read_state(layout, i.stage) or {}).get("run_id")
                       for i in st.inputs if i.stage},
    }
    if previous.get("shards_done"):
        state["shards_done"] = previous["shards_done"]
    layout.stage_dir(name).mkdir(parents=True, exist_ok=True)
    write_state(layout, name, state)
    try:
        inputs = resolve_inputs(config, layout, name, external)
        state["inputs"] = inputs
        write_state(layout, name, state)
        ctx = StageContext(name, config.stages[name], config, layout, inputs, resume,
                           st.fingerprint, shard)
        launch_cfg = _launch_of(config, name)
        # every log record and warning, the ones the terminal leaves out included
        with stage_log(layout.stage_dir(name) / STAGE_LOG):
            if launch_cfg.distributed:
                result = run_launched(ctx, launch_cfg)
            else:
                result = registry.lookup(name).run(ctx) or StageResult()
    except KeyboardInterrupt:
        state.update(status="interrupted", ended=time.time())
        write_state(layout, name, state)
        raise
    except BaseException as exc:
        state.update(status="failed", ended=time.time(), error=scrub(f"{type(exc).__name__}: {exc}"),
                     traceback=scrub(traceback.format_exc(limit=20)))
        # on a full or read-only disk this write fails too; stage.json then still says
        # "running" with a dead pid, which the next run resumes all the same
        with contextlib.suppress(OSError):
            write_state(layout, name, state)
        if isinstance(exc, OSError):
            raise  # one line naming the path (the CLI's `explain`), not a chained traceback
        if isinstance(exc, (StageFailed, BadInput)):
            raise
        raise StageFailed(f"stage {name} failed: {type(exc).__name__}: {exc}") from exc
    if shard is not None:  # this machine's part is done; a run without --shard merges
        state.update(status="partial", pid=None,
                     shards_done=sorted({*previous.get("shards_done", []), shard.index}))
        write_state(layout, name, state)
        return result
    from r1pipe.health import summary_lines  # the training-health verdicts, if it trained

    result.summary.update(summary_lines(layout.stage_dir(name)))
    state.update(status="finished", ended=time.time(), summary=result.summary,
                 artifacts=result.artifacts, run_id=uuid.uuid4().hex, pid=None)
    write_state(layout, name, state)
    return result
