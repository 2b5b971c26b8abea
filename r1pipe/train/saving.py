"""The end of every training loop: the final weights saved through the trainer (a collective
under ZeRO-3/FSDP), merged if LoRA, written as a Hub-compatible checkpoint with its card
and pushed if the YAML says so. One route for every loop, so a distributed run saves the
same way whichever trainer ran.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.contract import StageContext

if TYPE_CHECKING:
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        Trainer,
    )

    from r1pipe.models import ModelSpec


@dataclass
class TrainOutput:
    """What a training loop reports back to its stage."""

    model_dir: Path
    steps: int
    metrics: dict[str, float] = field(default_factory=dict)  # headline numbers for the card
    resumed_from: str | None = None


def resume_arg(ctx: StageContext[Any]) -> str | None:
    """The checkpoint an interrupted attempt left, for `trainer.train(resume_from_checkpoint=)`."""
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


@dataclass(frozen=True)
class CardText:
    """What a trained model's card says beyond the stage's identity: the training data with
    its record counts, a description, tags, the Hub pipeline tag, and the base model when it
    is not the pipeline's (a distillation student of another family)."""

    data: dict[str, int | None]
    description: str
    tags: tuple[str, ...] = ()
    base_model: ModelSpec | None = None
    pipeline_tag: str = "text-generation"


@dataclass(frozen=True)
class SaveTo:
    """Where a second model of a stage goes (the reward model of all-scenario RL): its own
    `out_dir` and `adapter_dir` instead of the stage's `model/` and `adapter/`, and whether
    it is pushed as the stage's model (`push_to_hub:`)."""

    out_dir: Path
    adapter_dir: Path
    push: bool = False


def finish(trainer: Trainer, tokenizer: PreTrainedTokenizerBase, ctx: StageContext[Any], *,
           parent: str, card: CardText, headline_keys: tuple[str, ...],
           generation_config: Mapping[str, Any] | None = None, save_to: SaveTo | None = None
           ) -> TrainOutput:
    """Save the final model (merged if LoRA) with its card; push it if the YAML says so.

    Every rank calls this: the weights go through the trainer's own `save_model`, which
    under DeepSpeed ZeRO-3 and FSDP (full state dict) is a collective gathering the shards
    (a rank that skipped it would leave the others waiting forever). One route for ZeRO-3,
    FSDP, DDP, LoRA and a single process: the trainer writes a staging folder, then the main
    process turns it into the Hub-compatible `model/` (`save_checkpoint`: safetensors,
    tokenizer, generation config, card) and pushes. See `save_final_weights`.

    `card.base_model` (a `ModelSpec`) is what the card names as the base model when it is
    not the pipeline's (a distillation student of another family).

    Without `save_to` the model goes to the stage's `model/` (adapter in `adapter/`) and is
    pushed; a second model of the stage (the reward model of all-scenario RL) names its own
    folders in `save_to`, with its own `card.pipeline_tag` and tags, and is not pushed as the
    stage's model.
    """
    from r1pipe.checkpoints import ModelCardInfo, push_to_hub, save_checkpoint

    out_dir = save_to.out_dir if save_to else ctx.model_dir
    adapter_dir = save_to.adapter_dir if save_to else ctx.stage_dir / "adapter"
    push = save_to.push if save_to else True
    metrics = _headline(trainer.state.log_history, headline_keys)
    steps = int(trainer.state.global_step)
    model, state_dict = save_final_weights(trainer, out_dir, parent=parent,
                                           adapter_dir=adapter_dir)
    if model is None:  # not the main process: the gathered weights are rank 0's to write
        return TrainOutput(out_dir, steps, metrics)
    base = card.base_model or ctx.pipeline.base_model
    info = ModelCardInfo(
        stage=ctx.name,
        pipeline=ctx.pipeline.name,
        base_model=base.hub_id or base.describe(),
        parent_model=parent,
        config_fingerprint=ctx.fingerprint,
        data=card.data,
        metrics={"steps": steps, **{k: round(v, 4) for k, v in metrics.items()}},
        description=card.description,
        tags=list(card.tags),
        pipeline_tag=card.pipeline_tag,
        repo_id=ctx.config.push_to_hub if push else None,
    )
    save_checkpoint(model, tokenizer, out_dir, card=info,
                    generation_config=dict(generation_config or {}), state_dict=state_dict)
    if push and ctx.config.push_to_hub:
        push_to_hub(out_dir, ctx.config.push_to_hub)
    return TrainOutput(out_dir, steps, metrics, resume_arg(ctx))


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
