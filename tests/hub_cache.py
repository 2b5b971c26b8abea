"""A Hugging Face cache holding what `r1pipe preflight` reads of configs/r1.yaml's models and
datasets: each model's `config.json` (the shape fields as published on the Hub), each
dataset's card header (`dataset_info` split sizes) and, for the one dataset-script repo, its
script. Laid out as `huggingface_hub` writes its cache (refs/main -> snapshots/<commit>, and
`.no_exist` markers for files the Hub answered 404 for), so the code under test reads it
with the library's own `try_to_load_from_cache`, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COMMIT = "0" * 39 + "1"

_QWEN = {"model_type": "qwen2", "torch_dtype": "bfloat16", "vocab_size": 152064,
         "tie_word_embeddings": False, "architectures": ["Qwen2ForCausalLM"]}
_LLAMA_8B = {"model_type": "llama", "torch_dtype": "bfloat16", "vocab_size": 128256,
             "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
             "num_attention_heads": 32, "num_key_value_heads": 8,
             "max_position_embeddings": 131072, "tie_word_embeddings": False,
             "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192,
                              "rope_type": "llama3"}}


def _qwen(hidden: int, intermediate: int, layers: int, heads: int, kv: int, context: int,
          **extra: Any) -> dict[str, Any]:
    return {**_QWEN, "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "max_position_embeddings": context, **extra}


MODELS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-7B": _qwen(3584, 18944, 28, 28, 4, 131072),
    "Qwen/Qwen2.5-1.5B": _qwen(1536, 8960, 28, 12, 2, 131072, vocab_size=151936,
                               tie_word_embeddings=True),
    "Qwen/Qwen2.5-Math-7B": _qwen(3584, 18944, 28, 28, 4, 4096, rope_theta=10000.0),
    "Qwen/Qwen2.5-Math-1.5B": _qwen(1536, 8960, 28, 12, 2, 4096, vocab_size=151936,
                                    tie_word_embeddings=True, rope_theta=10000.0),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": _qwen(5120, 13824, 48, 40, 8, 131072),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B": _qwen(5120, 27648, 64, 40, 8, 131072),
    "Qwen/Qwen2.5-72B-Instruct": _qwen(8192, 29568, 80, 64, 8, 32768),
    "meta-llama/Llama-3.1-8B": _LLAMA_8B,
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA_8B,
    "Skywork/Skywork-Reward-V2-Llama-3.1-8B": {
        **_LLAMA_8B, "architectures": ["LlamaForSequenceClassification"],
        "id2label": {"0": "LABEL_0"}},
}

_SPLITS = {  # dataset -> (config, {split: records}) as their cards list them
    "DigitalLearningGmbH/MATH-lighteval": ("default", {"train": 7500, "test": 5000}),
    "AI-MO/NuminaMath-TIR": ("default", {"train": 72441, "test": 99}),
    "AI-MO/NuminaMath-1.5": ("default", {"train": 896215}),
    "open-r1/verifiable-coding-problems-python": ("default", {"train": 35735}),
    "HuggingFaceH4/ultrachat_200k": ("default", {"train_sft": 207865, "test_sft": 23110}),
    "HuggingFaceH4/aime_2024": ("default", {"train": 30}),
    "HuggingFaceH4/MATH-500": ("default", {"test": 500}),
    "Idavidrein/gpqa": ("gpqa_diamond", {"train": 198}),
    "lighteval/code_generation_lite": ("v4_v5", {"test": 268}),
}
SCRIPT_REPOS = {"livecodebench/code_generation_lite": "code_generation_lite.py"}


def _card(config: str, splits: dict[str, int]) -> str:
    import yaml

    header = {"dataset_info": [{"config_name": config, "splits": [
        {"name": name, "num_examples": count} for name, count in splits.items()]}]}
    return "---\n" + yaml.safe_dump(header) + "---\n# card\n"


def _repo(cache: Path, kind: str, repo: str) -> Path:
    folder = cache / f"{kind}s--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(COMMIT)
    snapshot = folder / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _missing(snapshot: Path, filename: str) -> None:
    marker = snapshot.parents[1] / ".no_exist" / COMMIT / filename
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()


def seed_hub_cache(cache: Path, models: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write the cache under `cache` (HF_HUB_CACHE) and return it."""
    for repo, config in {**MODELS, **(models or {})}.items():
        (_repo(cache, "model", repo) / "config.json").write_text(json.dumps(config))
    for repo, (config, splits) in _SPLITS.items():
        snapshot = _repo(cache, "dataset", repo)
        (snapshot / "README.md").write_text(_card(config, splits))
        _missing(snapshot, repo.rsplit("/", 1)[1] + ".py")
    for repo, script in SCRIPT_REPOS.items():
        snapshot = _repo(cache, "dataset", repo)
        (snapshot / script).write_text("import datasets  # a loading script\n")
        (snapshot / "README.md").write_text("---\nlicense: cc\n---\n")
    return cache
