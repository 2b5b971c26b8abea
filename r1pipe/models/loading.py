"""Loading a model and its tokenizer for generation or training, from whatever a spec names
(through `materialize`), outside DeepSpeed ZeRO-3's partitioned init where a whole model
is wanted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from r1pipe.models.source import materialize
from r1pipe.models.spec import Dtype, ModelSpec, as_spec, default_cache_dir


def _tokenizer_from(spec: ModelSpec, source: str, padding_side: str | None) -> Any:
    from transformers import AutoTokenizer

    if spec.tokenizer:
        source, revision = spec.tokenizer, None
    else:
        revision = spec.revision if not (spec.gguf or spec.builtin or spec.layers is not None) else None
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=revision, trust_remote_code=spec.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def load_tokenizer(
    spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any],
    *,
    cache_dir: str | Path | None = None,
    padding_side: Literal["left", "right"] | None = None,
) -> Any:
    """The spec's tokenizer, with a pad token (falling back to eos) so batching works."""
    spec = as_spec(spec_or_path)
    source = "" if spec.tokenizer else materialize(spec, cache_dir or default_cache_dir())
    return _tokenizer_from(spec, source, padding_side)


@contextlib.contextmanager
def outside_zero3_init() -> Iterator[None]:
    """Load models whole while the block runs, even where a ZeRO-3 trainer's config exists.

    Once a `TrainingArguments` with a ZeRO-3 DeepSpeed config exists, transformers' global
    flag (`is_deepspeed_zero3_enabled`) makes every `from_pretrained` build the model inside
    `deepspeed.zero.Init`: its weights are split across ranks, and only a DeepSpeed engine
    gathers them. A reward model or any other model used outside the trainer's engine then
    holds empty shards and every forward fails. accelerate's
    `zero3_init_context_manager(enable=False)` does the same for its plugin's config.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers always has it
        yield
        return
    if not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    # transformers keeps the config behind a module-level weak reference; put it back after
    config = hf_deepspeed._hf_deepspeed_config_weak_ref()
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def load_model_and_tokenizer(
    spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any],
    *,
    dtype: Dtype | None = None,
    device: str | None = None,
    for_training: bool = False,
    cache_dir: str | Path | None = None,
    task: Literal["causal-lm", "sequence-classification"] = "causal-lm",
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for any model spec.

    `dtype` overrides the spec's. For generation the tokenizer pads on the left (what
    batched decoder-only generation needs) and the model is in eval mode; for training the
    model is in train mode with the KV cache off. Remote code runs only if the spec allows it.
    `task="sequence-classification"` loads a reward model (one score per sequence).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    spec = as_spec(spec_or_path)
    source = materialize(spec, cache_dir or default_cache_dir())
    revision = spec.revision if not (spec.gguf or spec.builtin or spec.layers is not None) else None
    wanted = dtype or spec.dtype
    if wanted == "auto" and for_training and device in (None, "cpu") \
            and not torch.cuda.is_available():
        # float32 master weights on a CPU: a bf16 Hub checkpoint would otherwise train in
        # bf16 weights, emulated on CPUs without bf16 kernels; trainer `bf16` (autocast)
        # gives the bf16 speed where it is native (r1pipe.precision)
        wanted = "float32"
    torch_dtype: Any = "auto" if wanted == "auto" else getattr(torch, wanted)
    cls = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    # a model only used for inference (reward model, filter, hf sampling) is whole on this
    # rank: under ZeRO-3 it would be partitioned by zero.Init and never gathered (R1)
    with contextlib.nullcontext() if for_training else outside_zero3_init():
        model = cls.from_pretrained(
            source, revision=revision, dtype=torch_dtype,
            trust_remote_code=spec.trust_remote_code)
    tokenizer = _tokenizer_from(spec, source, None if for_training else "left")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    if for_training:
        model.train()
        model.config.use_cache = False
    else:
        model.eval()
    return model, tokenizer
