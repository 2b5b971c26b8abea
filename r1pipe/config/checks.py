"""Checks that span sections (data references, stage modules and sections, inputs and
their cycles, gates, tensor parallelism under `launch:`): what one section's model cannot
see on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from r1pipe.config.errors import ConfigError
from r1pipe.config.locate import Locator, nearest
from r1pipe.config.pipeline import PipelineConfig
from r1pipe.config.refs import find_cycle
from r1pipe.config.sections import merge_launch
from r1pipe.config.stage import StageConfig
from r1pipe.config.trainer import check_trainer


def check_tensor_parallel(config: PipelineConfig, locate: Locator) -> None:
    """`generation.vllm.tensor_parallel_size > 1` for a stage that samples under `launch:`:
    each rank's engine gets its own GPU there (`r1pipe.generation.jobs.rank_device`), so the
    setting cannot be honoured (S4 of issue 30)."""
    tp = config.generation.vllm.get("tensor_parallel_size") or 1
    if config.generation.backend != "vllm" or not isinstance(tp, int) or tp <= 1:
        return
    for name in config.enabled_stages():
        section = config.stages[name]
        if "generation" not in getattr(section, "global_sections", ()):
            continue
        if merge_launch(config.launch, section.launch).distributed:
            raise locate.error(
                f"tensor_parallel_size {tp} cannot be honoured: stage {name} samples under "
                "`launch:`, where every rank's vLLM engine gets one GPU; set it to 1 (and a "
                f"model that fits one GPU), or run {name} in one process "
                f"(stages.{name}.launch: {{accelerate_config: null, num_processes: 1}})",
                ("generation", "vllm", "tensor_parallel_size"))


def check_data(config: PipelineConfig, locate: Locator, problems: list[ConfigError],
                check_paths: bool) -> None:
    from r1pipe.data.sources import check_references

    try:
        check_references(config.data)
    except ValueError as exc:
        problems.append(locate.error(str(exc), ("data",)))
    for source_name, source in config.data.items() if check_paths else ():
        if source.path and not any(c in source.path for c in "*?[") and \
                not Path(source.path).expanduser().exists():
            problems.append(locate.error(
                f"{source.path!r} does not exist (relative paths start at the folder r1pipe "
                f"runs in: {Path.cwd()})", ("data", source_name, "path")))


def check_stages(modules: list[str], raw_stages: dict[str, Any], locate: Locator,
                  problems: list[ConfigError]) -> dict[str, StageConfig]:
    """Register `stage_modules:`, then validate each stage section with its stage's
    `Config`; every problem goes to `problems`, the valid sections are returned."""
    from r1pipe import registry

    for index, module in enumerate(modules):
        try:
            registry.check_stage_module(module)
            registry.register_module(module)
        except registry.StageModuleError as exc:
            problems.append(locate.error(str(exc), ("stage_modules", str(index))))
        except Exception as exc:  # the module's own code failed while importing
            problems.append(locate.error(f"importing stage module {module!r} failed: "
                                         f"{type(exc).__name__}: {exc}",
                                         ("stage_modules", str(index))))
    sections: dict[str, StageConfig] = {}
    for name, raw in raw_stages.items():
        key_path = ("stages", name)
        try:
            spec = registry.lookup(name)
        except registry.StageNotAvailable as exc:
            problems.append(locate.error(str(exc), key_path))
            continue
        if spec is None:
            known = registry.known_names()
            hint = nearest(name, known)
            problems.append(locate.error(
                f"unknown stage {name!r}" + (f"; did you mean {hint!r}?" if hint else
                                             f"; known stages: {', '.join(known)}"), key_path))
            continue
        if raw is not None and not isinstance(raw, (dict, StageConfig)):
            continue  # PipelineConfig's own check said so already
        try:
            section = spec.config_class.model_validate(raw or {})
        except ValidationError as exc:
            problems += locate.all_from_validation(exc, spec.config_class, key_path)
            continue
        before = len(problems)
        check_trainer(section, locate, key_path, problems)
        if len(problems) == before:
            sections[name] = section
    return sections


def check_gates(config: PipelineConfig, locate: Locator) -> None:
    """A `gate:` needs its benchmark evaluated after each stage (r1pipe/gates.py)."""
    for name, section in config.stages.items():
        gate = getattr(section, "gate", None)
        if gate is None or not section.enabled:
            continue
        if gate.benchmark not in config.eval.benchmarks:
            known = ", ".join(config.eval.benchmarks) or "none"
            raise locate.error(f"{gate.benchmark!r} is not a benchmark of `eval.benchmarks:` "
                               f"(have: {known}); name one of them",
                               ("stages", name, "gate", "benchmark"))
        if not config.eval.after_each_stage:
            raise locate.error("a gate reads the stage's evaluation, which runs only with "
                               "`eval: {after_each_stage: true}`; set it, or remove the gate",
                               ("stages", name, "gate"))


def check_inputs(config: PipelineConfig, locate: Locator) -> None:
    """Every reference names something that exists, and the stages form no cycle."""
    enabled = config.enabled_stages()  # YAML order, so messages are stable
    for name in enabled:
        section = config.stages[name]
        for inp in section.inputs():
            key_path = ("stages", name, *inp.field.split("."))
            if inp.kind == "data" and inp.stage is None:
                if inp.value not in config.data:
                    hint = nearest(inp.value, list(config.data))
                    raise locate.error(
                        f"data source {inp.value!r} is not defined under `data:`"
                        + (f"; did you mean {hint!r}?" if hint else
                           f" (defined: {', '.join(config.data) or 'none'}); add it there "
                           "or use <stage>:<artifact> for a stage's output"), key_path)
                continue
            upstream = inp.stage
            if upstream is None:
                continue
            if upstream == name:
                raise locate.error(f"stage {name!r} cannot take its own output as input", key_path)
            if upstream not in config.stages:
                hint = nearest(upstream, list(config.stages))
                raise locate.error(
                    f"input {inp.value!r} names stage {upstream!r}, which is not in `stages:`"
                    + (f"; did you mean {hint!r}?" if hint else
                       "; add that stage or point at 'base'"), key_path)
            if upstream not in enabled:
                raise locate.error(
                    f"input {inp.value!r} comes from stage {upstream!r}, which is disabled; "
                    "enable it or give the input on the command line with --input", key_path)
    cycle = find_cycle({n: [i.stage for i in config.stages[n].inputs() if i.stage] for n in enabled})
    if cycle:
        edge = next(i for i in config.stages[cycle[0]].inputs() if i.stage == cycle[1])
        raise locate.error("stage inputs form a cycle: " + " -> ".join(cycle) +
                           "; break it by pointing one of them at an earlier stage or 'base'",
                           ("stages", cycle[0], *edge.field.split(".")))
