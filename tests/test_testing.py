"""The tiny test models: deterministic, and accepted by transformers, TRL and vLLM (CPU)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from r1pipe.testing import TAG_TOKENS, build_tiny_model

from .conftest import vllm_generate


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_deterministic_for_a_seed(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json", "chat_template.jinja"):
        assert _sha(again / name) == _sha(tiny_model_dir / name), name
    other = build_tiny_model(tmp_path / "other", seed=1)
    assert _sha(other / "model.safetensors") != _sha(tiny_model_dir / "model.safetensors")
    assert _sha(other / "tokenizer.json") == _sha(tiny_model_dir / "tokenizer.json")


def test_shapes_fit_vllm_cpu(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] == config["head_dim"] == 32
    assert config["num_hidden_layers"] == 2 and config["tie_word_embeddings"] is True
    assert config["max_position_embeddings"] == 2048


def test_tokenizer(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    )
    assert len({tok.pad_token_id, tok.eos_token_id, tok.bos_token_id}) == 3
    for tag in TAG_TOKENS:  # each tag is one token, and survives skip_special_tokens
        assert len(tok(tag, add_special_tokens=False).input_ids) == 1, tag
    text = "<think>3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer> 法国的首都是巴黎。"
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_chat_template_marks_assistant_turns(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": "<answer>5</answer>"},
    ]
    prompt = tok.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n")
    out = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    # The assistant's words and its end-of-turn token are trained on; nothing else is.
    assert tok.decode(masked) == "<answer>5</answer><|im_end|>"


def test_loads_and_generates_with_transformers(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    enc = tok(["What is 2 + 3?", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=6, do_sample=False)
    assert out.shape[0] == 2 and out.shape[1] > enc["input_ids"].shape[1]


def test_reward_model_scores(tiny_reward_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_reward_model_dir)
    enc = tok(
        ["a good answer", "a much longer and worse answer"], return_tensors="pt", padding=True
    )
    with torch.no_grad():
        scores = model(**enc).logits
    assert scores.shape == (2, 1) and torch.isfinite(scores).all()
    assert model.config.pad_token_id == tok.pad_token_id


# --------------------------------------------------------------------------- real trainers


def _length_reward(completions: list, **_: object) -> list[float]:
    """A trivial verifiable reward: longer completions score higher."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [len(t) / 100.0 for t in texts]


@pytest.mark.slow
def test_one_sft_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is {a} + 3?"},
                {
                    "role": "assistant",
                    "content": f"<think>{a} + 3 = {a + 3}</think> <answer>{a + 3}</answer>",
                },
            ]
        }
        for a in range(4)
    ]
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=1,
        per_device_train_batch_size=2,
        max_length=128,
        assistant_only_loss=True,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    trainer = SFTTrainer(
        model=str(tiny_model_dir),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    result = trainer.train()
    assert result.global_step == 1 and result.training_loss > 0


@pytest.mark.slow
def test_one_grpo_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    prompts = [{"prompt": [{"role": "user", "content": f"What is {a} + 3?"}]} for a in range(4)]
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=16,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
    )
    trainer = GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=_length_reward,
        args=args,
        train_dataset=Dataset.from_list(prompts),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    result = trainer.train()
    assert result.global_step == 1
    logged = trainer.state.log_history[0]
    assert "rewards/_length_reward/mean" in logged and logged["completions/mean_length"] > 0


# -------------------------------------------------------------------------------- vLLM CPU


@pytest.mark.slow
def test_vllm_cpu_serves_tiny_model(tiny_model_dir: Path) -> None:
    result = vllm_generate(
        tiny_model_dir,
        prompts=["What is 2 + 3?", "Hello"],
        chat=[{"role": "user", "content": "What is 2 + 3?"}],
        max_tokens=8,
        dtype="float32",
    )
    print(f"vLLM tiny model: {result}")
    assert all(1 <= n <= 8 for n in result["n_tokens"])
    assert all(isinstance(t, str) for t in result["texts"]) and isinstance(result["chat"], str)
