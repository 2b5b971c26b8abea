"""Smaller students by dropping decoder layers of a trained model: the cheap way to a
student that starts from the teacher's embeddings and representations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _decoder_layers(model: Any, n_layers: int) -> tuple[Any, str, str]:
    """Find the ModuleList of decoder layers: (parent module, attribute name, dotted path)."""
    import torch

    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers and name.endswith("layers")
    ]
    if len(found) != 1:
        names = [n for n, _ in found]
        raise ValueError(f"cannot identify the decoder layers of {type(model).__name__}: {names}")
    name = found[0][0]
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, name


def keep_layers(model: Any, layers: list[int], *, source: str | Path = "the model") -> None:
    """Cut a loaded causal LM, in memory, down to its decoder `layers` (the rest as is).

    Per-layer config lists (`layer_types` and any other list with one entry per layer) are
    cut to match, and each kept layer's `layer_idx` is renumbered so KV caches index the right
    slot. `derive_student` saves the result; `scripts/layer_drop_scan.py` measures it unsaved,
    so what it ranks is the student distill trains.
    """
    import torch

    text_config = model.config.get_text_config()
    n = int(text_config.num_hidden_layers)
    bad = [i for i in layers if i >= n]
    if bad:
        raise ValueError(f"layers {bad} out of range: {source} has {n} decoder layers (0..{n - 1})")
    parent, attr, _ = _decoder_layers(model, n)
    old = getattr(parent, attr)
    kept = torch.nn.ModuleList([old[i] for i in layers])
    for new_idx, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    setattr(parent, attr, kept)
    for key, value in list(vars(text_config).items()):
        if key.startswith("_") or key == "num_hidden_layers":
            continue
        if isinstance(value, (list, tuple)) and len(value) == n:
            setattr(text_config, key, type(value)(value[i] for i in layers))
    text_config.num_hidden_layers = len(layers)


def derive_student(
    source: str | Path,
    layers: list[int],
    out_dir: str | Path,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    tokenizer_source: str | None = None,
) -> Path:
    """Save a copy of `source` keeping only decoder `layers` (`keep_layers`).

    Dropping layers from a trained model is the cheap way to get a student that starts from
    the teacher's embeddings and representations.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(source), revision=revision, dtype="auto", trust_remote_code=trust_remote_code
    )
    keep_layers(model, layers, source=source)
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_source or str(source), revision=revision, trust_remote_code=trust_remote_code
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
