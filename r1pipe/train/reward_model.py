"""Training a preference reward model (all-scenario RL's helpfulness/harmlessness scorer):
TRL's RewardTrainer on chosen/rejected pairs, batched by length, with its own checkpoints
so it resumes apart from the stage's main trainer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.config import (
    LoraSection,
    StageConfig,
)
from r1pipe.contract import StageContext

if TYPE_CHECKING:
    from datasets import Dataset


from r1pipe.train.arguments import build_args, cpu_defaults, metrics_callback, peft_config
from r1pipe.train.saving import CardText, SaveTo, TrainOutput, finish

# pairs (more overfits a preference model quickly), in batches of pairs of similar length
# (r1pipe.batching: padded tokens in the demo 17,700 -> 8,100 an epoch).
REWARD_DEFAULTS: dict[str, Any] = {"num_train_epochs": 1,
                                   "train_sampling_strategy": "group_by_length"}


def reward(ctx: StageContext[StageConfig], *, model: str, train_dataset: Dataset, out_dir: Path,
           card: CardText, trainer: Mapping[str, Any] | None = None,
           lora: LoraSection | None = None,
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
    card = dataclasses.replace(card, tags=("reward-model", *card.tags),
                               pipeline_tag="text-classification")
    out = finish(trainer_, tokenizer, ctx, parent=model, card=card,
                 headline_keys=("loss", "accuracy", "margin"),
                 save_to=SaveTo(out_dir, ctx.stage_dir / f"{out_dir.name}_adapter"))
    out.resumed_from = str(last) if last else None
    trainer_.accelerator.wait_for_everyone()  # every rank loads the saved model next
    return out
