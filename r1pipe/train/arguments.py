"""How TRL is configured for every training loop, in one place: the trainer config from the
YAML `trainer:` mapping over r1pipe's CPU/GPU-aware and long-run defaults, LoRA through
PEFT, and the callbacks that stream TRL's logs into `metrics.jsonl` and watch the run's
health. The loops (`r1pipe.train.rl`, `.supervised`, `.reward_model`) only pick defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1pipe.config import (
    LoraSection,
    tracker_environment,
)
from r1pipe.contract import StageContext
from r1pipe.precision import trainer_precision

if TYPE_CHECKING:
    from peft import LoraConfig
    from transformers import (
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )


# How often a trainer checkpoint is written unless the YAML says otherwise: often enough that
# a killed stage loses little, rarely enough not to dominate small runs.
DEFAULT_SAVE_STEPS = 50


def hardware_defaults() -> dict[str, Any]:
    """Where training runs: the GPU when there is one, else the CPU. Precision is settled
    apart, from the merged `trainer:` mapping (`r1pipe.precision.trainer_precision`)."""
    from r1pipe.precision import machine

    return {"use_cpu": machine().device == "cpu"}


# Long sequences make ranks wait for each other far longer than transformers' 30 minutes
# (`ddp_timeout` 1,800 s): GRPO rollouts of 32k-token answers skew ranks by up to an hour
# (every answer to the limit: `r1pipe preflight` estimates 40-50 min per rank and round for
# a 7B at 32k on an H100), and TRL tokenizes an 800k-sample SFT mix on the main process
# while the others wait at a barrier. From `LONG_SEQUENCE_TOKENS` on the default is 4 hours.
LONG_SEQUENCE_TOKENS = 8192
LONG_DDP_TIMEOUT = 4 * 3600
# Processes for TRL's dataset tokenization per training process, at most: beyond this the
# map is bound by writing Arrow files, not by the tokenizer.
MAX_DATASET_PROCS = 16


def long_sequence_timeout(trainer: Mapping[str, Any]) -> int | None:
    """`ddp_timeout` for a trainer mapping whose sequences are long, else None (TRL's)."""
    length = max(int(trainer.get("max_completion_length") or 0),
                 int(trainer.get("max_length") or 0))
    return LONG_DDP_TIMEOUT if length >= LONG_SEQUENCE_TOKENS else None


def dataset_processes(local_processes: int | None = None) -> int | None:
    """`dataset_num_proc` from this machine's CPUs shared by its training processes; None
    below 4 per process (a pool costs more than it saves there, and on CPU-only runs)."""
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    per_process = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                   else os.cpu_count() or 1) // max(1, local_processes)
    return min(MAX_DATASET_PROCS, per_process) if per_process >= 4 else None


def long_run_defaults(config_class: str, trainer: Mapping[str, Any]) -> dict[str, Any]:
    """r1pipe's defaults for long, multi-GPU runs (S3 of issue 30), under the YAML's."""
    import dataclasses

    import trl

    fields = {f.name for f in dataclasses.fields(getattr(trl, config_class))}
    out: dict[str, Any] = {}
    timeout = long_sequence_timeout(trainer)
    if timeout is not None and "ddp_timeout" in fields:
        out["ddp_timeout"] = timeout
    procs = dataset_processes() if not hardware_defaults()["use_cpu"] else None
    if procs is not None and "dataset_num_proc" in fields:
        out["dataset_num_proc"] = procs
    return out


def build_args(config_class: str, ctx: StageContext[Any], defaults: Mapping[str, Any] | None = None,
               trainer: Mapping[str, Any] | None = None,
               trainer_where: str | None = None) -> TrainingArguments:
    """TRL config = r1pipe's defaults < the stage's defaults < the YAML `trainer:` mapping.

    `trainer` replaces the stage's own `trainer:` mapping, for a second trainer inside a stage
    (all-scenario RL trains its reward model from `reward_model.train.trainer`);
    `trainer_where` is its YAML path, named by the precision warning.
    """
    import trl

    merged: dict[str, Any] = {
        "output_dir": str(ctx.checkpoints_dir),
        "seed": ctx.pipeline.seed,
        "data_seed": ctx.pipeline.seed,
        # the pipeline's `tracking:` block: one run per stage, `<pipeline>/<stage>`
        "report_to": ctx.pipeline.tracking.report_to or "none",
        "run_name": ctx.pipeline.tracking.run_name(ctx.pipeline.name, ctx.name),
        "project": ctx.pipeline.tracking.project_name(ctx.pipeline.name),
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": DEFAULT_SAVE_STEPS,
        "save_total_limit": 2,
        "disable_tqdm": not ctx.is_main_process,
        **hardware_defaults(),
        **long_run_defaults(config_class, {**(defaults or {}), **(
            ctx.config.trainer if trainer is None else trainer)}),
        **(defaults or {}),
        **(ctx.config.trainer if trainer is None else trainer),
    }
    # `bf16`/`fp16` may be `auto` (the default): bf16 where this machine runs it natively
    merged.update(trainer_precision(merged, where=trainer_where or f"stages.{ctx.name}.trainer"))
    os.environ.update(tracker_environment(ctx.pipeline, ctx.name, ctx.fingerprint))
    # The trainer pickles its arguments into every checkpoint (training_args.bin): a Hub
    # token must not ride along. r1pipe pushes itself, with the token from the environment.
    hub_token = merged.pop("hub_token", None)
    if hub_token and not os.environ.get("HF_TOKEN"):
        os.environ["HF_TOKEN"] = hub_token
    return getattr(trl, config_class)(**merged)


def peft_config(lora: LoraSection | None, task_type: str = "CAUSAL_LM") -> LoraConfig | None:
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type=task_type)


def metrics_callback(ctx: StageContext[Any], prefix: str = "") -> TrainerCallback:
    """A TrainerCallback writing every TRL log (rewards/<name>, kl, lengths, ...) to
    metrics.jsonl, so the report and `status` read one file whatever the trainer.

    `prefix` namespaces the keys of a second trainer in the same stage (`reward_model/loss`),
    so its lines never pass for the main trainer's steps."""
    from transformers import TrainerCallback

    class _Metrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero and logs:
                record = {"step": state.global_step, "epoch": state.epoch, **logs}
                if prefix:
                    record = {f"{prefix}{k}": v for k, v in record.items()}
                ctx.metrics.log(record)

    return _Metrics()


def training_callbacks(ctx: StageContext[Any]) -> list[TrainerCallback]:
    """The callbacks of a stage's main trainer: its logs to metrics.jsonl, and the same
    logs to the training-health watch (`health:`, r1pipe/health.py). The watch puts itself
    before the trainer's own callbacks (`health.callback`): the verdicts it adds to a
    step's logs reach the trackers and metrics.jsonl with the step."""
    from r1pipe.gpu_memory import callback as gpu_memory_callback
    from r1pipe.health import callback

    # the GPU's peak memory per step (a no-op on CPU) before the metrics callback, so that
    # `gpu/max_memory_allocated_gib` reaches metrics.jsonl with its step (make gpu-check)
    return [callback(ctx), gpu_memory_callback(), metrics_callback(ctx)]


def watch_first(trainer: Trainer) -> Trainer:
    """The health watch before the trainer's own callbacks; see `training_callbacks`."""
    from r1pipe.health import watch_first as first

    return first(trainer)


# On CPU memory is plentiful and compute is not: recomputing activations only costs time.
# TRL's GRPOConfig turns gradient checkpointing on by default; on 2 cores that re-forward was
# about a fifth of a GRPO step (SmolLM2-135M, 8 x 250 tokens: forward 2.4 s, backward 8 s).
CPU_DEFAULTS: dict[str, Any] = {"gradient_checkpointing": False}


def cpu_defaults() -> dict[str, Any]:
    """`CPU_DEFAULTS` when training runs on the CPU, else nothing (GPUs keep TRL's choice)."""
    return {} if hardware_defaults().get("use_cpu") is False else dict(CPU_DEFAULTS)
