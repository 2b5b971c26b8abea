"""Rewards for every RL stage and the rejection-sampling filters, selected by name in YAML.

One module per family: `accuracy`, `format`, `language`, `length` (cosine, overlong,
repetition), `steps` (reasoning steps, code blocks), `code` (programs run against test cases
in `r1pipe.sandbox`, and their format), `model` (reward model), `judge` (OpenAI-compatible
LLM judge). `registry` knows them by name and validates a `rewards:` section, where
`plugins` adds rewards from other packages ("module:attribute"); `compose` builds TRL reward
functions and scores offline.

Importing this package is cheap: torch, transformers, math-verify, lingua and openai are
imported inside the functions that use them, so the CLI and the config loader stay fast.
"""

from r1pipe.rewards.accuracy import answer_region, check_completion
from r1pipe.rewards.code import extract_program, fenced_blocks
from r1pipe.rewards.compose import Routed, Scores, build_reward_funcs, score
from r1pipe.rewards.judge import parse_judge_score
from r1pipe.rewards.language import detect_language, language_consistency
from r1pipe.rewards.length import repeated_ngram_share
from r1pipe.rewards.registry import (
    REWARDS,
    available_rewards,
    resolve_spec,
    validate_reward_spec,
)
from r1pipe.rewards.steps import count_reasoning_steps, has_code_block, longest_paragraph_words

__all__ = [
    "REWARDS",
    "Routed",
    "Scores",
    "answer_region",
    "available_rewards",
    "build_reward_funcs",
    "check_completion",
    "count_reasoning_steps",
    "detect_language",
    "extract_program",
    "fenced_blocks",
    "has_code_block",
    "language_consistency",
    "longest_paragraph_words",
    "parse_judge_score",
    "repeated_ngram_share",
    "resolve_spec",
    "score",
    "validate_reward_spec",
]
