"""The supervised loops: SFT on prompt/completion data (cold start, rejection sampling,
distillation by SFT), and on-policy distillation, where the student writes its completions
and learns the teacher's distribution on them. Both train the end-of-sequence token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from r1pipe.config import (
    LoraSection,
    SFTStageConfig,
)
from r1pipe.contract import StageContext

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import (
        PreTrainedModel,
        PreTrainedTokenizerBase,
        Trainer,
    )
    from trl import SFTTrainer


from r1pipe.train.arguments import (
    build_args,
    cpu_defaults,
    peft_config,
    training_callbacks,
    watch_first,
)
from r1pipe.train.saving import CardText, TrainOutput, finish, resume_arg

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


def sft(ctx: StageContext[SFTStageConfig], *, model: str, train_dataset: Dataset,
        card: CardText, defaults: Mapping[str, Any] | None = None,
        lora: LoraSection | None = None,
        generation_config: Mapping[str, Any] | None = None) -> TrainOutput:
    """Supervised fine-tuning with TRL's SFTTrainer on prompt/completion (or messages) data,
    loss on the completion only, EOS trained so the model learns to stop.

    `train_dataset` comes from `sft_data` (or has `prompt`/`completion` columns, TRL's
    format, plain or conversational). `card` says what the model card tells beyond the
    stage (the training artifacts with their record counts, a description, tags, a base
    model of another family). The TRL config is r1pipe's defaults < `SFT_DEFAULTS` <
    `defaults` < the YAML `trainer:` mapping (so `packing: true`, `max_length`, ... apply).
    """
    trainer, tokenizer = sft_trainer(ctx, model=model, train_dataset=train_dataset,
                                     defaults=defaults, lora=lora)
    trainer.train(resume_from_checkpoint=resume_arg(ctx))
    return finish(trainer, tokenizer, ctx, parent=model, card=card,
                  headline_keys=("loss", "mean_token_accuracy"),
                  generation_config=generation_config)


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
                      train_dataset: Dataset, card: CardText,
                      lora: LoraSection | None = None) -> TrainOutput:
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
    trainer.train(resume_from_checkpoint=resume_arg(ctx))
    return finish(trainer, tokenizer, ctx, parent=model, card=card, headline_keys=("loss",))
