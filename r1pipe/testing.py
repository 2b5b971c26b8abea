"""Tiny local models for tests and demos, under the name tests and notebooks import.

The builders live in `r1pipe.builtin_models`, which production code uses for
`base_model: {builtin: tiny-llama}`; nothing in `r1pipe/` imports this module.
"""

from __future__ import annotations

from r1pipe.builtin_models import (
    BOS_TOKEN,
    CHAT_TEMPLATE,
    EOS_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    TAG_TOKENS,
    TINY_MODEL_VERSION,
    build_tiny_model,
    build_tiny_reward_model,
    build_tiny_tokenizer,
)

__all__ = ["BOS_TOKEN", "CHAT_TEMPLATE", "EOS_TOKEN", "PAD_TOKEN", "SPECIAL_TOKENS", "TAG_TOKENS",
           "TINY_MODEL_VERSION", "build_tiny_model", "build_tiny_reward_model",
           "build_tiny_tokenizer"]
