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
    """The generator `gen_cfg.backend` names, for `model` (a Hub id, folder or model spec).

    For `openai` the model is the name the server serves (`gen_cfg.model_name` if set):
    `vllm serve /path/to/model` serves it as "/path/to/model".
    """
    if gen_cfg.backend == "hf":
        from r1pipe.generation.hf import HFGenerator

        return HFGenerator(model, gen_cfg, seed=seed)
    if gen_cfg.backend == "vllm":
        from r1pipe.generation.vllm import VLLMGenerator

        return VLLMGenerator(model, gen_cfg, seed=seed)
    if gen_cfg.backend == "openai":
        from r1pipe.generation.openai import OpenAIGenerator

        return OpenAIGenerator(model, gen_cfg, seed=seed)
    raise ValueError(f"unknown generation backend {gen_cfg.backend!r}; use hf, vllm or openai")
