"""The four training loops the stages share, thin glue over TRL: `grpo(...)` (RL),
`sft(...)` and `on_policy_distill(...)` (supervised), and `reward(...)` (a preference reward
model); plus `grpo_stage(...)`, everything an RL stage does around `grpo`.

A stage decides *what* to train (model, data, rewards); this package decides *how* in one
place: TRL config from the YAML `trainer:` mapping over r1pipe's CPU/GPU-aware defaults,
LoRA through PEFT, resuming from the stage's last trainer checkpoint, TRL's logs streamed
into `metrics.jsonl`, and the final model saved as a Hub-compatible checkpoint with a card.

The parts: `arguments` (TRL config, LoRA, callbacks), `saving` (the final checkpoint and its
card, shared by every loop), `rl`, `supervised` and `reward_model` (the loops). Every name
stays importable from `r1pipe.train`.
"""

from __future__ import annotations

from r1pipe.train.arguments import (
    CPU_DEFAULTS,
    DEFAULT_SAVE_STEPS,
    LONG_DDP_TIMEOUT,
    LONG_SEQUENCE_TOKENS,
    MAX_DATASET_PROCS,
    build_args,
    cpu_defaults,
    dataset_processes,
    hardware_defaults,
    long_run_defaults,
    long_sequence_timeout,
    metrics_callback,
    peft_config,
    training_callbacks,
    watch_first,
)
from r1pipe.train.reward_model import REWARD_DEFAULTS, reward
from r1pipe.train.rl import (
    GRPO_DEFAULTS,
    grpo,
    grpo_stage,
    process_left_as_found,
    rollouts_without_vllm,
)
from r1pipe.train.saving import CardText, SaveTo, TrainOutput, finish, save_final_weights
from r1pipe.train.supervised import (
    SFT_DEFAULTS,
    check_stop_token_trained,
    has_chat_template,
    on_policy_distill,
    same_tokenizer,
    sft,
    sft_data,
    sft_trainer,
)

__all__ = [
    "CPU_DEFAULTS",
    "DEFAULT_SAVE_STEPS",
    "GRPO_DEFAULTS",
    "LONG_DDP_TIMEOUT",
    "LONG_SEQUENCE_TOKENS",
    "MAX_DATASET_PROCS",
    "REWARD_DEFAULTS",
    "SFT_DEFAULTS",
    "CardText",
    "SaveTo",
    "TrainOutput",
    "build_args",
    "check_stop_token_trained",
    "cpu_defaults",
    "dataset_processes",
    "finish",
    "grpo",
    "grpo_stage",
    "hardware_defaults",
    "has_chat_template",
    "long_run_defaults",
    "long_sequence_timeout",
    "metrics_callback",
    "on_policy_distill",
    "peft_config",
    "process_left_as_found",
    "reward",
    "rollouts_without_vllm",
    "same_tokenizer",
    "save_final_weights",
    "sft",
    "sft_data",
    "sft_trainer",
    "training_callbacks",
    "watch_first",
]
