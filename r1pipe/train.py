"""The two training loops every stage shares: `grpo(...)` and `sft(...)`, thin glue over TRL.

A stage decides *what* to train (model, data, rewards); this module decides *how* in one
place: TRL config from the YAML `trainer:` mapping over r1pipe's CPU/GPU-aware defaults,
LoRA through PEFT, resuming from the stage's last trainer checkpoint, TRL's logs streamed
into `metrics.jsonl`, and the final model saved as a Hub-compatible checkpoint with a card.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1pipe.config import LoraSection

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
    """CPU-safe precision: bf16 where the GPU has it, fp32 on CPU (fp16/bf16 AMP is slow or
    unsupported there)."""
    import torch

    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "use_cpu": False}
    return {"bf16": False, "fp16": False, "use_cpu": True}


def build_args(config_class: str, ctx: Any, defaults: Mapping[str, Any] | None = None) -> Any:
    """TRL config = r1pipe's defaults < the stage's defaults < the YAML `trainer:` mapping."""
    import trl

    merged: dict[str, Any] = {
        "output_dir": str(ctx.checkpoints_dir),
        "seed": ctx.pipeline.seed,
        "data_seed": ctx.pipeline.seed,
        "report_to": "none",
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": DEFAULT_SAVE_STEPS,
        "save_total_limit": 2,
        "disable_tqdm": not ctx.is_main_process,
        **hardware_defaults(),
        **(defaults or {}),
        **ctx.config.trainer,
    }
    return getattr(trl, config_class)(**merged)


def peft_config(lora: LoraSection | None, task_type: str = "CAUSAL_LM") -> Any:
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type=task_type)


def metrics_callback(ctx: Any) -> Any:
    """A TrainerCallback writing every TRL log (rewards/<name>, kl, lengths, ...) to
    metrics.jsonl, so the report and `status` read one file whatever the trainer."""
    from transformers import TrainerCallback

    class _Metrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if state.is_world_process_zero and logs:
                ctx.metrics.log({"step": state.global_step, "epoch": state.epoch, **logs})

    return _Metrics()


def _resume_arg(ctx: Any) -> str | None:
    ckpt = ctx.resume.last_checkpoint
    return str(ckpt) if ckpt is not None else None


def _headline(log_history: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    """The last logged value of each key, plus the first, so cards show the change."""
    out: dict[str, float] = {}
    for key in keys:
        values = [h[key] for h in log_history if isinstance(h.get(key), (int, float))]
        if values:
            out[f"{key} (first)"] = float(values[0])
            out[f"{key} (last)"] = float(values[-1])
    return out


def _finish(trainer: Any, tokenizer: Any, ctx: Any, *, parent: str, data: dict[str, int | None],
            headline_keys: tuple[str, ...], description: str,
            generation_config: Mapping[str, Any] | None) -> TrainOutput:
    """Save the final model (merged if LoRA) with its card; push it if the YAML says so."""
    from r1pipe.checkpoints import ModelCardInfo, push_to_hub, save_checkpoint

    metrics = _headline(trainer.state.log_history, headline_keys)
    steps = int(trainer.state.global_step)
    if not ctx.is_main_process:
        return TrainOutput(ctx.model_dir, steps, metrics)
    model = trainer.model
    state_dict = None
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        state_dict = trainer.accelerator.get_state_dict(trainer.deepspeed or model)
    model = trainer.accelerator.unwrap_model(model)
    if hasattr(model, "peft_config"):
        model.save_pretrained(ctx.stage_dir / "adapter")
        tokenizer.save_pretrained(ctx.stage_dir / "adapter")
        model = model.merge_and_unload()
        state_dict = None
    base = ctx.pipeline.base_model
    card = ModelCardInfo(
        stage=ctx.name,
        pipeline=ctx.pipeline.name,
        base_model=base.hub_id or base.describe(),
        parent_model=parent,
        config_fingerprint=ctx.fingerprint,
        data=data,
        metrics={"steps": steps, **{k: round(v, 4) for k, v in metrics.items()}},
        description=description,
        repo_id=ctx.config.push_to_hub,
    )
    save_checkpoint(model, tokenizer, ctx.model_dir, card=card,
                    generation_config=dict(generation_config or {}), state_dict=state_dict)
    if ctx.config.push_to_hub:
        push_to_hub(ctx.model_dir, ctx.config.push_to_hub)
    return TrainOutput(ctx.model_dir, steps, metrics, _resume_arg(ctx))


# r1pipe's GRPO defaults where they differ from TRL's: the paper's KL coefficient (TRL's
# default is no KL term) and completions kept in the logs so people can read them.
GRPO_DEFAULTS: dict[str, Any] = {"beta": 0.001, "log_completions": True,
                                 "num_completions_to_print": 2}


def grpo(ctx: Any, *, model: str, args: Any, train_dataset: Any,
         reward_funcs: list[Callable[..., Any]], data: dict[str, int | None], description: str,
         lora: LoraSection | None = None,
         generation_config: Mapping[str, Any] | None = None) -> TrainOutput:
    """GRPO with TRL's GRPOTrainer: group-relative advantages, clipped ratio, KL to the
    reference. `train_dataset` has a `prompt` column plus the columns the rewards read."""
    from trl import GRPOTrainer

    from r1pipe.models import load_model_and_tokenizer

    policy, tokenizer = load_model_and_tokenizer(model, for_training=True)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward_funcs, args=args,
                          train_dataset=train_dataset, processing_class=tokenizer,
                          callbacks=[metrics_callback(ctx)], peft_config=peft_config(lora))
    trainer.train(resume_from_checkpoint=_resume_arg(ctx))
    keys = ("reward", *(f"rewards/{f.__name__}/mean" for f in reward_funcs),
            "completions/mean_length", "kl")
    return _finish(trainer, tokenizer, ctx, parent=model, data=data, headline_keys=keys,
                   description=description, generation_config=generation_config)


def grpo_stage(ctx: Any, *, description: str) -> Any:
    """Everything an RL stage does once it has chosen its model, data, template and rewards
    (`GRPOStageConfig`): render prompts, build the rewards, train, report."""
    from r1pipe.data.prepare import prompt_dataset
    from r1pipe.models import load_tokenizer
    from r1pipe.pipeline import StageResult
    from r1pipe.rewards import build_reward_funcs

    cfg = ctx.config
    model = ctx.input("from")
    tokenizer = load_tokenizer(model)
    dataset, report = prompt_dataset(ctx.pipeline, ctx.input("data"), cfg.prompts, tokenizer)
    args = build_args("GRPOConfig", ctx, GRPO_DEFAULTS)
    funcs, weights = build_reward_funcs(cfg.rewards, special_token=cfg.special_token,
                                        max_completion_length=args.max_completion_length)
    args.reward_weights = weights
    out = grpo(ctx, model=model, args=args, train_dataset=dataset, reward_funcs=funcs,
               data={cfg.data: report.kept}, description=description, lora=cfg.lora)
    summary = {"steps": out.steps, "prompts": report.kept,
               "prompts dropped (too long)": report.dropped,
               "prompts truncated": report.truncated, **out.metrics}
    return StageResult(summary=summary, artifacts={"model": "model"})


def sft(ctx: Any, *, model: str, train_dataset: Any, data: dict[str, int | None],
        description: str, defaults: Mapping[str, Any] | None = None,
        lora: LoraSection | None = None,
        generation_config: Mapping[str, Any] | None = None) -> TrainOutput:
    """Supervised fine-tuning with TRL's SFTTrainer on prompt/completion (or messages) data,
    loss on the completion only, EOS trained so the model learns to stop."""
    from trl import SFTTrainer

    from r1pipe.models import load_model_and_tokenizer

    args = build_args("SFTConfig", ctx, {"completion_only_loss": None, **(defaults or {})})
    student, tokenizer = load_model_and_tokenizer(model, for_training=True)
    trainer = SFTTrainer(model=student, args=args, train_dataset=train_dataset,
                         processing_class=tokenizer, callbacks=[metrics_callback(ctx)],
                         peft_config=peft_config(lora))
    trainer.train(resume_from_checkpoint=_resume_arg(ctx))
    return _finish(trainer, tokenizer, ctx, parent=model, data=data,
                   headline_keys=("loss", "mean_token_accuracy"), description=description,
                   generation_config=generation_config)
