"""GRPO, the RL loop of R1-Zero, reasoning RL and all-scenario RL: TRL's GRPOTrainer with
r1pipe's defaults, the stage's rewards, the optional prompt filter and dynamic sampling,
and the process left as TRL's colocated vLLM found it.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from r1pipe.config import (
    GRPOStageConfig,
    LoraSection,
)
from r1pipe.contract import StageContext

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset
    from transformers import (
        TrainingArguments,
    )


from r1pipe.train.arguments import (
    build_args,
    cpu_defaults,
    peft_config,
    training_callbacks,
    watch_first,
)
from r1pipe.train.saving import CardText, TrainOutput, finish, resume_arg

# r1pipe's GRPO defaults where they differ from TRL's: the paper's KL coefficient (TRL's
# default is no KL term) and completions kept in the logs so people can read them.
GRPO_DEFAULTS: dict[str, Any] = {"beta": 0.001, "log_completions": True,
                                 "num_completions_to_print": 2}


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
         train_dataset: Dataset | IterableDataset, reward_funcs: list[Callable[..., Any]],
         card: CardText, lora: LoraSection | None = None,
         generation_config: Mapping[str, Any] | None = None) -> TrainOutput:
    """GRPO with TRL's GRPOTrainer: group-relative advantages, clipped ratio, KL to the
    reference. `train_dataset` has a `prompt` column plus the columns the rewards read;
    `card` is what the model card says of the data. The process is left as found
    (`process_left_as_found`) for the stages after it."""
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
        trainer.train(resume_from_checkpoint=resume_arg(ctx))
        keys = ("reward", *(f"rewards/{f.__name__}/mean" for f in reward_funcs),
                "completions/mean_length", "kl")
        out = finish(trainer, tokenizer, ctx, parent=model, card=card, headline_keys=keys,
                     generation_config=generation_config)
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

    # the logger of r1pipe.train, as before the loops were split into modules
    logging.getLogger("r1pipe.train").warning(
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
        from r1pipe.data.templates import with_response_prefix
        from r1pipe.generation.base import prompt_as_text
        from r1pipe.rewards.compose import Prefixed

        prefix = cfg.response_prefix
        dataset = dataset.map(lambda r: {"prompt": prompt_as_text(
            tokenizer, with_response_prefix(r["prompt"], prefix))})
        funcs = [Prefixed(f, prefix) for f in funcs]
    prompts, filtered = report.kept, {}
    if cfg.prompt_filter is not None:  # sample the prompts as training will, keep the useful
        from r1pipe.prompt_filter import apply

        dataset, counts = apply(ctx, dataset, model=model, rewards=cfg.rewards if rewards is None
                                else rewards, args=args)
        prompts, filtered = counts.kept, counts.summary()
    out = grpo(ctx, model=model, args=args, train_dataset=dataset, reward_funcs=funcs,
               card=CardText({cfg.data: prompts}, description), lora=cfg.lora)
    lines = {"steps": out.steps, "prompts": report.kept,
             "prompts dropped (too long)": report.dropped,
             "prompts truncated": report.truncated, **filtered, **(summary or {}),
             **out.metrics}
    artifacts = {"model": "model", **({"pass_rates": "data/pass_rates"} if filtered else {})}
    return StageResult(summary=lines, artifacts=artifacts)
