"""The two training loops every stage shares: `grpo(...)` and `sft(...)`, thin glue over TRL.

A stage decides *what* to train (model, data, rewards); this module decides *how* in one
place: TRL config from the YAML `trainer:` mapping over r1pipe's CPU/GPU-aware defaults,
LoRA through PEFT, resuming from the stage's last trainer checkpoint, TRL's logs streamed
into `metrics.jsonl`, and the final model saved as a Hub-compatible checkpoint with a card.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.config import (
    GRPOStageConfig,
    LoraSection,
    SFTStageConfig,
    StageConfig,
    tracker_environment,
)
from r1pipe.contract import StageContext
from r1pipe.precision import trainer_precision

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from peft import LoraConfig
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from trl import SFTTrainer

    from r1pipe.models import ModelSpec

# How often a trainer checkpoint is written unless the YAML says otherwise: often enough that
# a killed stage loses little, rarely enough not to dominate small runs.
DEFAULT_SAVE_STEPS = 50


@dataclass
class TrainOutput:
    """What a training loop reports back to its stage."""

    model_dir: Path
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)  # headline numbers for the card
    resumed_from: str | None = None


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
    from r1pipe.health import callback

    return [callback(ctx), metrics_callback(ctx)]


def watch_first(trainer: Trainer) -> Trainer:
    """The health watch before the trainer's own callbacks; see `training_callbacks`."""
    from r1pipe.health import watch_first as first

    return first(trainer)


def _resume_arg(ctx: StageContext[Any]) -> str | None:
    ckpt = ctx.resume.last_checkpoint
    return str(ckpt) if ckpt is not None else None


def _headline(log_history: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each key, plus the first, so cards show the change.

    NaN is skipped: a reward routed to one task type logs NaN on steps without that type."""
    out: dict[str, float] = {}
    for key in keys:
        values = [h[key] for h in log_history
                  if isinstance(h.get(key), (int, float)) and h[key] == h[key]]
        if values:
            out[f"{key} (first)"] = float(values[0])
            out[f"{key} (last)"] = float(values[-1])
    return out


def _finish(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, ctx: StageContext[Any], *, parent: str, data: dict[str, int | None],
            headline_keys: tuple[str, ...], description: str,
            generation_config: Mapping[str, Any] | None, out_dir: Path | None = None,
            adapter_dir: Path | None = None, pipeline_tag: str = "text-generation",
            tags: tuple[str, ...] = (), push: bool = True,
            base_model: ModelSpec | None = None) -> TrainOutput:
    """Save the final model (merged if LoRA) with its card; push it if the YAML says so.

    Every rank calls this: the weights go through the trainer's own `save_model`, which
    under DeepSpeed ZeRO-3 and FSDP (full state dict) is a collective gathering the shards
    (a rank that skipped it would leave the others waiting forever). One route for ZeRO-3,
    FSDP, DDP, LoRA and a single process: the trainer writes a staging folder, then the main
    process turns it into the Hub-compatible `model/` (`save_checkpoint`: safetensors,
    tokenizer, generation config, card) and pushes. See `save_final_weights`.

    `base_model` (a `ModelSpec`) is what the card names as the base model when it is not the
    pipeline's (a distillation student of another family).

    `out_dir`/`adapter_dir` default to the stage's `model/` and `adapter/`; a second model of
    the stage (the reward model of all-scenario RL) goes elsewhere, with its own
    `pipeline_tag` and tags, and is not pushed as the stage's model.
    """
    from r1pipe.checkpoints import ModelCardInfo, push_to_hub, save_checkpoint

    out_dir = out_dir or ctx.model_dir
    metrics = _headline(trainer.state.log_history, headline_keys)
    steps = int(trainer.state.global_step)
    model, state_dict = save_final_weights(trainer, out_dir, parent=parent,
                                           adapter_dir=adapter_dir or ctx.stage_dir / "adapter")
    if model is None:  # not the main process: the gathered weights are rank 0's to write
        return TrainOutput(out_dir, steps, metrics)
    base = base_model or ctx.pipeline.base_model
    card = ModelCardInfo(
        stage=ctx.name,
        pipeline=ctx.pipeline.name,
        base_model=base.hub_id or base.describe(),
        parent_model=parent,
        config_fingerprint=ctx.fingerprint,
        data=data,
        metrics={"steps": steps, **{k: round(v, 4) for k, v in metrics.items()}},
        description=description,
        tags=list(tags),
        pipeline_tag=pipeline_tag,
        repo_id=ctx.config.push_to_hub if push else None,
    )
    save_checkpoint(model, tokenizer, out_dir, card=card,
                    generation_config=dict(generation_config or {}), state_dict=state_dict)
    if push and ctx.config.push_to_hub:
        push_to_hub(out_dir, ctx.config.push_to_hub)
    return TrainOutput(out_dir, steps, metrics, _resume_arg(ctx))


def save_final_weights(trainer: Trainer, out_dir: Path, *, parent: str, adapter_dir: Path
                       ) -> tuple[PreTrainedModel | None, dict[str, Any] | None]:
    """Run the trainer's `save_model` on every rank; on the main process return the model
    and full state dict to write as the final checkpoint (`(None, None)` elsewhere).

    The trainer writes `.<out_dir>.trainer-save/` beside `out_dir` (rank 0 only, after the
    gather every rank joins). A full model's weights are read back from it as the state
    dict, since under ZeRO-3/FSDP the module itself holds only this rank's shard. A LoRA
    adapter becomes `adapter_dir` and is merged into its base: in memory when the module is
    whole, else into the base reloaded from `parent`.
    """
    import shutil

    accelerator = trainer.accelerator
    staging = out_dir.parent / f".{out_dir.name}.trainer-save"
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # a collective under ZeRO-3 / FSDP: every rank joins
    accelerator.wait_for_everyone()
    if not main:
        return None, None
    (staging / "training_args.bin").unlink(missing_ok=True)  # pickled args: not for the Hub
    model = accelerator.unwrap_model(trainer.model)
    sharded = bool(trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled)
    if hasattr(model, "peft_config"):
        from r1pipe.checkpoints import replace_dir

        adapter_dir.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(staging, adapter_dir)
        if not sharded:
            return model.merge_and_unload(), None
        return _merged_from_disk(model, parent, adapter_dir), None
    state_dict = _read_safetensors(staging)
    shutil.rmtree(staging, ignore_errors=True)
    return model, state_dict


def _read_safetensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    state_dict: dict[str, Any] = {}
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise RuntimeError(f"the trainer's save_model wrote no safetensors under {folder} "
                           "(under DeepSpeed ZeRO-3 set `zero3_save_16bit_model: true` in the "
                           "accelerate config, as configs/accelerate/zero3.yaml does)")
    for file in files:
        state_dict.update(load_file(file))
    return state_dict


def _merged_from_disk(peft_model: Any, parent: str, adapter_dir: Path) -> PreTrainedModel:
    """A sharded LoRA run's merged model: the base reloaded whole on this process, with
    the saved adapter merged in (the in-memory module holds only this rank's shards)."""
    from peft import PeftModel

    from r1pipe.models import remote_code_allowed

    with contextlib.suppress(ImportError):  # ZeRO-3 would partition the reload: training's done
        from transformers.integrations.deepspeed import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    base = peft_model.get_base_model()
    whole = type(base).from_pretrained(parent, config=base.config,
                                       trust_remote_code=remote_code_allowed())
    return PeftModel.from_pretrained(whole, adapter_dir).merge_and_unload()


# r1pipe's GRPO defaults where they differ from TRL's: the paper's KL coefficient (TRL's
# default is no KL term) and completions kept in the logs so people can read them.
GRPO_DEFAULTS: dict[str, Any] = {"beta": 0.001, "log_completions": True,
                                 "num_completions_to_print": 2}
# On CPU memory is plentiful and compute is not: recomputing activations only costs time.
# TRL's GRPOConfig turns gradient checkpointing on by default; on 2 cores that re-forward was
# about a fifth of a GRPO step (SmolLM2-135M, 8 x 250 tokens: forward 2.4 s, backward 8 s).
CPU_DEFAULTS: dict[str, Any] = {"gradient_checkpointing": False}


def cpu_defaults() -> dict[str, Any]:
    """`CPU_DEFAULTS` when training runs on the CPU, else nothing (GPUs keep TRL's choice)."""
    return {} if hardware_defaults().get("use_cpu") is False else dict(CPU_DEFAULTS)


_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def process_left_as_found() -> Iterator[None]:
    """Undo what TRL's colocated vLLM does to a process that was not launched distributed.

    To start its in-process engine TRL sets RANK/LOCAL_RANK/WORLD_SIZE/MASTER_* and vLLM
    opens a torch process group. The engine process runs the next stages too: with LOCAL_RANK
    set, accelerate then takes one process for a distributed job, and once a vLLM engine's
    cleanup has closed that group its barriers fail ("Default process group has not been
    initialized"). Outside a launch, put the variables back, close the group and reset
    accelerate's state when the stage is done. Under `accelerate launch` it does nothing.
    """
    import torch.distributed as dist

    saved = {k: os.environ.get(k) for k in _DIST_ENV}
    launched = saved["WORLD_SIZE"] is not None or saved["LOCAL_RANK"] is not None
    had_group = dist.is_available() and dist.is_initialized()
    try:
        yield
    finally:
        opened = dist.is_available() and dist.is_initialized()
        changed = any(os.environ.get(k) != v for k, v in saved.items())
        if not launched and not had_group and (opened or changed):
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            gc.collect()
            from accelerate.state import AcceleratorState

            from r1pipe.generation.vllm import release_distributed

            release_distributed(keep_process_group=False)
            AcceleratorState._reset_state(reset_partial_state=True)


def grpo(ctx: StageContext[GRPOStageConfig], *, model: str, args: TrainingArguments,
         train_dataset: Dataset | IterableDataset,
         reward_funcs: list[Callable[..., Any]], data: dict[str, int | None], description: str,
         lora: LoraSection | None = None,
         generation_config: Mapping[str, Any] | None = None) -> TrainOutput:
    """GRPO with TRL's GRPOTrainer: group-relative advantages, clipped ratio, KL to the
    reference. `train_dataset` has a `prompt` column plus the columns the rewards read.
    The process is left as found (`process_left_as_found`) for the stages after it."""
    from trl import GRPOTrainer

    from r1pipe.models import load_model_and_tokenizer
    from r1pipe.trl_cpu import dense_lm_head_on_cpu
    from r1pipe.vllm_server import stage_server

    dense_lm_head_on_cpu()  # CPU tensors only; see r1pipe/trl_cpu.py
    if args.use_vllm and args.vllm_mode == "colocate" and ctx.config.vllm_server is None:
        from r1pipe.vllm_cpu import eager_colocated_engine_on_cpu, patch_vllm_cpu_weight_sync

        patch_vllm_cpu_weight_sync()  # both no-ops on GPUs; see r1pipe/vllm_cpu.py
        eager_colocated_engine_on_cpu(ctx.pipeline.generation.dtype)
    # `vllm_server:` in the section: a `trl vllm-serve` for the stage, stopped however it ends
    with process_left_as_found(), stage_server(ctx, args, model):
        policy, tokenizer = load_model_and_tokenizer(model, for_training=True)
        sampling = getattr(ctx.config, "dynamic_sampling", None)
        trainer_cls = GRPOTrainer
        if sampling is not None and sampling.enabled:  # see r1pipe/dynamic_sampling.py
            from r1pipe.dynamic_sampling import trainer_class

            trainer_cls = trainer_class(sampling)
        trainer = trainer_cls(model=policy, reward_funcs=reward_funcs, args=args,
                              train_dataset=train_dataset, processing_class=tokenizer,
                              callbacks=training_callbacks(ctx), peft_config=peft_config(lora))
        watch_first(trainer)
        trainer.train(resume_from_checkpoint=_resume_arg(ctx))
        keys = ("reward", *(f"rewards/{f.__name__}/mean" for f in reward_funcs),
                "completions/mean_length", "kl")
        out = _finish(trainer, tokenizer, ctx, parent=model, data=data, headline_keys=keys,
                      description=description, generation_config=generation_config)
        totals = getattr(trainer, "ds_totals", None)
        if totals is not None:
            out.metrics.update({f"dynamic sampling {k.replace('_', ' ')}": float(v)
                                for k, v in vars(totals).items() if k != "prompts_drawn"})
        del trainer, policy  # the colocated engine goes with them, before the teardown
    return out


def rollouts_without_vllm(ctx: StageContext[GRPOStageConfig], args: TrainingArguments) -> None:
    """`use_vllm: true` under `generation.backend: auto` where vLLM is not installed (macOS,
    non-x86 Linux): TRL's transformers rollouts instead, said once, rather than TRL's
    ImportError. With `backend: vllm` (or hf) the trainer's setting stands as written."""
    from r1pipe.generation.factory import vllm_installed

    if not getattr(args, "use_vllm", False) or ctx.pipeline.generation.backend != "auto":
        return
    if vllm_installed():
        return
    import logging

    logging.getLogger(__name__).warning(
        "stages.%s.trainer.use_vllm: true, but vLLM is not installed here and "
        "generation.backend is auto: rollouts use transformers' generate (slower)", ctx.name)
    args.use_vllm = False


def grpo_stage(ctx: StageContext[GRPOStageConfig], *, description: str, rewards: Mapping[str, Any] | None = None,
               summary: Mapping[str, Any] | None = None) -> Any:
    """Everything an RL stage does once it has chosen its model, data, template and rewards
    (`GRPOStageConfig`): render prompts, build the rewards, train, report.

    `rewards` replaces the section's `rewards:` when the stage completes it at run time (all-
    scenario RL fills in the reward model it trained); `summary` adds headline lines."""
    from r1pipe.contract import StageResult
    from r1pipe.data.prepare import prompt_dataset
    from r1pipe.models import load_tokenizer
    from r1pipe.rewards import build_reward_funcs

    cfg = ctx.config
    model = ctx.input("from")
    tokenizer = load_tokenizer(model)
    dataset, report = prompt_dataset(ctx.pipeline, ctx.input("data"), cfg.prompts, tokenizer)
    args = build_args("GRPOConfig", ctx, {**GRPO_DEFAULTS, **cpu_defaults()})
    rollouts_without_vllm(ctx, args)
    funcs, weights = build_reward_funcs(cfg.rewards if rewards is None else rewards,
                                        special_token=cfg.special_token,
                                        max_completion_length=args.max_completion_length)
    args.reward_weights = weights
    if cfg.response_prefix:
        from r1pipe.rewards.compose import Prefixed

        prefix = cfg.response_prefix
        dataset = dataset.map(lambda r: {"prompt": r["prompt"] + prefix})
        funcs = [Prefixed(f, prefix) for f in funcs]
    prompts, filtered = report.kept, {}
    if cfg.prompt_filter is not None:  # sample the prompts as training will, keep the useful
        from r1pipe.prompt_filter import apply

        dataset, counts = apply(ctx, dataset, model=model, rewards=cfg.rewards if rewards is None
                                else rewards, args=args)
        prompts, filtered = counts.kept, counts.summary()
    out = grpo(ctx, model=model, args=args, train_dataset=dataset, reward_funcs=funcs,
               data={cfg.data: prompts}, description=description, lora=cfg.lora)
    lines = {"steps": out.steps, "prompts": report.kept,
             "prompts dropped (too long)": report.dropped,
             "prompts truncated": report.truncated, **filtered, **(summary or {}),
             **out.metrics}
    artifacts = {"model": "model", **({"pass_rates": "data/pass_rates"} if filtered else {})}
    return StageResult(summary=lines, artifacts=artifacts)


# r1pipe's SFT defaults where they differ from TRL's: the paper fine-tunes for two epochs, and
# the loss is on the completion only whatever shape the data had.
SFT_DEFAULTS: dict[str, Any] = {"num_train_epochs": 2, "completion_only_loss": True}


def has_chat_template(model: str, trainer: Mapping[str, Any] | None = None) -> bool:
    """Whether SFT data for `model` should be chat messages: its tokenizer has a chat
    template, or the `trainer:` mapping gives it one (`chat_template_path`)."""
    from r1pipe.models import load_tokenizer

    if (trainer or {}).get("chat_template_path"):
        return True
    return bool(getattr(load_tokenizer(model), "chat_template", None))


def sft_data(ctx: StageContext[Any], value: str, *, model: str,
             where: Mapping[str, Any] | None = None) -> Dataset:
    """The prompt/completion dataset of a data input (artifact folder or source name), in the
    shape `model` trains on (see `r1pipe.data.sft`); cached under the stage folder, so a
    resumed stage does not rebuild it and a re-run stage (whose folder is cleared) does."""
    from r1pipe.data.sft import sft_dataset

    chat = has_chat_template(model, ctx.config.trainer)
    cache = ctx.layout.stage_dir(ctx.name) / ".sft-data"
    return sft_dataset(value, chat=chat, cache_dir=cache, where=where, pipeline=ctx.pipeline)


def _eos_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if declared is not None:
        ids |= {declared} if isinstance(declared, int) else set(declared)
    return ids


def check_stop_token_trained(trainer: Trainer, tokenizer: PreTrainedTokenizerBase,
                             sample: int = 32) -> None:
    """Fail before training when no example's loss covers an end-of-sequence token.

    A model trained without it never learns to stop, and the loss looks healthy all the
    while; a chat template that leaves the end-of-turn token out of the completion does that.
    Examples cut at `max_length` are not counted (their EOS was cut off).
    """
    import itertools

    data = trainer.train_dataset
    columns = getattr(data, "column_names", None) or []
    if "labels" not in columns:
        return  # packed or pre-processed data: nothing to read the mask from
    eos = _eos_ids(trainer.model, tokenizer)
    max_length = getattr(trainer.args, "max_length", None)
    checked = 0
    for example in itertools.islice(iter(data), sample):
        if max_length and len(example["input_ids"]) >= max_length:
            continue
        checked += 1
        if any(label in eos for label in example["labels"] if label != -100):
            return
    if checked:
        names = ", ".join(repr(tokenizer.convert_ids_to_tokens(i)) for i in sorted(eos))
        raise ValueError(
            f"SFT: the loss of none of the first {checked} examples covers an end-of-sequence "
            f"token ({names}), so the model would never learn to stop. The chat template "
            "probably leaves the end-of-turn token out of the assistant's turn: set "
            "`trainer: {eos_token: <the end-of-turn token>}` or give the model a template that "
            "ends the assistant's turn with it (`trainer: {chat_template_path: ...}`)")


def sft_trainer(ctx: StageContext[SFTStageConfig], *, model: str, train_dataset: Dataset,
                defaults: Mapping[str, Any] | None = None,
                lora: LoraSection | None = None) -> tuple[SFTTrainer, PreTrainedTokenizerBase]:
    """(SFTTrainer, tokenizer) ready to train: data tokenized with the loss mask on the
    completion, checked to train an end-of-sequence token. See `sft`."""
    from trl import SFTTrainer

    from r1pipe.models import load_model_and_tokenizer
    from r1pipe.trl_cpu import dense_lm_head_on_cpu

    dense_lm_head_on_cpu()  # CPU tensors only; see r1pipe/trl_cpu.py
    args = build_args("SFTConfig", ctx, {**SFT_DEFAULTS, **cpu_defaults(), **(defaults or {})})
    columns = set(getattr(train_dataset, "column_names", None) or [])
    if "messages" in columns and "completion" not in columns:
        from r1pipe.data.sft import sft_example

        chat = has_chat_template(model, ctx.config.trainer)
        train_dataset = train_dataset.map(lambda r: sft_example(r, chat=chat),
                                          remove_columns=sorted(columns))
    student, tokenizer = load_model_and_tokenizer(model, for_training=True)
    trainer = SFTTrainer(model=student, args=args, train_dataset=train_dataset,
                         processing_class=tokenizer, callbacks=training_callbacks(ctx),
                         peft_config=peft_config(lora))
    watch_first(trainer)
    if args.completion_only_loss:
        check_stop_token_trained(trainer, tokenizer)
    return trainer, tokenizer


def sft(ctx: StageContext[SFTStageConfig], *, model: str, train_dataset: Dataset, data: dict[str, int | None],
        description: str, defaults: Mapping[str, Any] | None = None,
        lora: LoraSection | None = None,
        generation_config: Mapping[str, Any] | None = None,
        tags: tuple[str, ...] = (), base_model: ModelSpec | None = None) -> TrainOutput:
    """Supervised fine-tuning with TRL's SFTTrainer on prompt/completion (or messages) data,
    loss on the completion only, EOS trained so the model learns to stop.

    `train_dataset` comes from `sft_data` (or has `prompt`/`completion` columns, TRL's
    format, plain or conversational). `data` names the training artifacts and their record
    counts for the model card. The TRL config is r1pipe's defaults < `SFT_DEFAULTS` <
    `defaults` < the YAML `trainer:` mapping (so `packing: true`, `max_length`, ... apply).
    `tags` and `base_model` (a `ModelSpec`) go on the model card.
    """
    trainer, tokenizer = sft_trainer(ctx, model=model, train_dataset=train_dataset,
                                     defaults=defaults, lora=lora)
    trainer.train(resume_from_checkpoint=_resume_arg(ctx))
    return _finish(trainer, tokenizer, ctx, parent=model, data=data,
                   headline_keys=("loss", "mean_token_accuracy"), description=description,
                   generation_config=generation_config, tags=tags, base_model=base_model)


def same_tokenizer(student: PreTrainedTokenizerBase, teacher: PreTrainedTokenizerBase
                   ) -> str | None:
    """Why two tokenizers differ (None when they map the same tokens to the same ids)."""
    a, b = student.get_vocab(), teacher.get_vocab()
    if a == b:
        return None
    if len(a) != len(b):
        return f"the student's vocabulary has {len(a):,} tokens, the teacher's {len(b):,}"
    token = next(t for t in sorted(a) if b.get(t) != a[t])
    return (f"token {token!r} has id {a[token]} for the student and "
            f"{b.get(token, 'none')} for the teacher")


def on_policy_distill(ctx: StageContext[SFTStageConfig], *, model: str, teacher: str,
                      train_dataset: Dataset,
                      data: dict[str, int | None], description: str,
                      lora: LoraSection | None = None, tags: tuple[str, ...] = (),
                      base_model: ModelSpec | None = None) -> TrainOutput:
    """On-policy distillation with TRL's DistillationTrainer: the student writes the
    completions for the `prompt` column itself and is trained to match the teacher's
    next-token distribution on them (generalized JSD, `beta` in `trainer:`).

    The teacher scores the student's tokens, so both must share one tokenizer; a
    `ValueError` says how they differ otherwise.
    """
    from trl import DistillationTrainer

    from r1pipe.models import load_model_and_tokenizer, load_tokenizer

    student, tokenizer = load_model_and_tokenizer(model, for_training=True)
    why = same_tokenizer(tokenizer, load_tokenizer(teacher))
    if why:
        raise ValueError(
            f"on-policy distillation needs the student and the teacher to share a tokenizer, "
            f"and {model} and {teacher} do not: {why}. Pick a student of the teacher's family "
            "(or derive one with `layers:`), or use `method: sft`, which trains on the "
            "teacher's text and works across tokenizers")
    tokenizer.padding_side = "left"  # the trainer generates with this tokenizer
    args = build_args("DistillationConfig", ctx, cpu_defaults())
    trainer = DistillationTrainer(model=student, teacher_model=teacher, args=args,
                                  train_dataset=train_dataset, processing_class=tokenizer,
                                  callbacks=training_callbacks(ctx),
                                  peft_config=peft_config(lora))
    watch_first(trainer)
    trainer.train(resume_from_checkpoint=_resume_arg(ctx))
    return _finish(trainer, tokenizer, ctx, parent=model, data=data, headline_keys=("loss",),
                   description=description, generation_config=None, tags=tags,
                   base_model=base_model)


# r1pipe's reward-model defaults where they differ from TRL's RewardConfig: one epoch over the
# pairs (more overfits a preference model quickly), in batches of pairs of similar length
# (r1pipe.batching: padded tokens in the demo 17,700 -> 8,100 an epoch).
REWARD_DEFAULTS: dict[str, Any] = {"num_train_epochs": 1,
                                   "train_sampling_strategy": "group_by_length"}


def reward(ctx: StageContext[StageConfig], *, model: str, train_dataset: Dataset, out_dir: Path,
           data: dict[str, int | None], description: str,
           trainer: Mapping[str, Any] | None = None, lora: LoraSection | None = None,
           trainer_where: str | None = None) -> TrainOutput:
    """Train a preference reward model with TRL's RewardTrainer (Bradley-Terry loss on
    chosen/rejected pairs) and save it at `out_dir` as a Hub-compatible sequence classifier.

    `model` is the checkpoint the reward model starts from: its body is kept and a fresh
    one-score head is put on top. `train_dataset` has `chosen`/`rejected` (and optionally
    `prompt`) columns, plain or conversational. Trainer checkpoints go to
    `checkpoints/<out_dir name>/` (not where the stage's main trainer resumes from), and an
    interrupted run resumes from the last one.
    """
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardTrainer

    from r1pipe.batching import length_bucketed
    from r1pipe.models import load_tokenizer, remote_code_allowed
    from r1pipe.state import latest_checkpoint

    checkpoints = ctx.checkpoints_dir / out_dir.name
    args = build_args("RewardConfig", ctx, {**REWARD_DEFAULTS, **cpu_defaults(),
                                            "output_dir": str(checkpoints)}, trainer=trainer or {},
                      trainer_where=trainer_where)
    set_seed(args.seed)  # the new score head is random: same seed, same head
    scorer = AutoModelForSequenceClassification.from_pretrained(
        model, num_labels=1, trust_remote_code=remote_code_allowed())
    tokenizer = load_tokenizer(model)
    trainer_ = length_bucketed(RewardTrainer)(
        model=scorer, args=args, train_dataset=train_dataset, processing_class=tokenizer,
        callbacks=[metrics_callback(ctx, prefix=f"{out_dir.name}/")],
        peft_config=peft_config(lora, task_type="SEQ_CLS"))
    last = latest_checkpoint(checkpoints)
    trainer_.train(resume_from_checkpoint=str(last) if last else None)
    out = _finish(trainer_, tokenizer, ctx, parent=model, data=data,
                  headline_keys=("loss", "accuracy", "margin"), description=description,
                  generation_config=None, out_dir=out_dir,
                  adapter_dir=ctx.stage_dir / f"{out_dir.name}_adapter",
                  pipeline_tag="text-classification", tags=("reward-model",), push=False)
    out.resumed_from = str(last) if last else None
    trainer_.accelerator.wait_for_everyone()  # every rank loads the saved model next
    return out
