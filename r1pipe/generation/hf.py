"""transformers `generate`: the backend that needs nothing but the model itself.

It runs where the model already lives (a stage can sample from the policy it just trained,
with `HFGenerator.from_loaded`) and on any machine, which makes it the default for the CPU
demo and the reference the other backends are compared with. It is slower than vLLM: no
continuous batching, so a batch runs until its longest member ends.

Prompts are sorted by length before batching (less padding) and put back in order after.
Finish reasons and token counts are read from the generated ids, not assumed: a row ends at
its first end-of-sequence token, or at a stop string (cut from the text, like vLLM does), or
it ran out of `max_new_tokens`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from r1pipe.generation.base import (
    Completion,
    GenerationError,
    Generator,
    Prompt,
    Sampling,
    chunks,
    cut_at_stop,
    encode_prompt,
)
from r1pipe.progress import track

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig
    from r1pipe.models import ModelSpec


def _as_set(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


class HFGenerator(Generator):
    """Batched sampling with `model.generate`, left-padded, seeded per call."""

    backend = "hf"

    def __init__(self, model: str | ModelSpec, gen_cfg: GenerationConfig, *, seed: int,
                 device: str | None = None) -> None:
        import torch

        from r1pipe.models import ModelSpec, load_model_and_tokenizer
        from r1pipe.precision import engine_dtype

        if device is None and torch.cuda.is_available():
            device = "cuda"
        # `auto` on a CPU: bf16 where it has bf16 kernels, else float32 (a bf16 checkpoint
        # would otherwise be sampled in emulated bf16); on a GPU the checkpoint's dtype
        wanted = gen_cfg.dtype if gen_cfg.dtype != "auto" else ModelSpec.parse(model).dtype
        dtype = engine_dtype(wanted, on_cpu=device in (None, "cpu"), where="generation.dtype")
        loaded, tokenizer = load_model_and_tokenizer(
            model, dtype=None if dtype == "auto" else dtype, device=device)  # type: ignore[arg-type]
        self._setup(loaded, tokenizer, gen_cfg, seed, owns_model=True)

    @classmethod
    def from_loaded(cls, model: Any, tokenizer: Any, gen_cfg: GenerationConfig, *,
                    seed: int) -> HFGenerator:
        """Sample from a model already in memory (e.g. the policy a stage just trained).

        The model is switched to eval mode only while generating and the tokenizer is not
        modified, so training can continue afterwards.
        """
        self = cls.__new__(cls)
        self._setup(model, tokenizer, gen_cfg, seed, owns_model=False)
        return self

    def _setup(self, model: Any, tokenizer: Any, gen_cfg: GenerationConfig, seed: int, *,
               owns_model: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.seed = seed
        self.batch_size = gen_cfg.batch_size
        self._owns_model = owns_model
        gen = getattr(model, "generation_config", None)
        self.eos_ids = _as_set(getattr(gen, "eos_token_id", None)) | _as_set(tokenizer.eos_token_id)
        if not self.eos_ids:
            raise ValueError("the model and tokenizer define no end-of-sequence token; "
                             "generation could never stop before max_new_tokens")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)

    # ------------------------------------------------------------------------ generation

    def _generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        import torch

        if self.model is None:
            raise GenerationError("this hf generator was closed")
        encoded = [encode_prompt(self.tokenizer, p) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        results: list[list[Completion]] = [[] for _ in prompts]
        batches = list(chunks(order, self.batch_size))
        seed = self.seed if sampling.seed is None else sampling.seed
        with self._generating(), torch.inference_mode():
            torch.manual_seed(seed)
            for _, index in track(batches, total=len(batches), description="hf generate",
                                        unit="batches", min_steps=2):
                outs = self._batch([encoded[i] for i in index], sampling)
                for i, completions in zip(index, outs, strict=True):
                    results[i] = completions
        return results

    @contextlib.contextmanager
    def _generating(self) -> Iterator[None]:
        """Eval mode and a forked RNG: sampling must not move the caller's training RNG."""
        import torch

        device = next(self.model.parameters()).device
        devices = [device.index or 0] if device.type == "cuda" else []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.random.fork_rng(devices=devices):
                yield
        finally:
            if was_training:
                self.model.train()

    def _batch(self, ids: list[list[int]], sampling: Sampling) -> list[list[Completion]]:
        import torch
        from transformers import GenerationConfig as HFGenerationConfig

        device = next(self.model.parameters()).device
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids],
                                 device=device)
        per_prompt = 1 if sampling.greedy else sampling.n
        settings: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "num_return_sequences": per_prompt,
            "eos_token_id": sorted(self.eos_ids),
            "pad_token_id": self.pad_id,
            "use_cache": True,
            # Explicit, so the model's own defaults (top_k=50, repetition penalties) do not
            # slip in: the same knobs mean the same sampling in every backend.
            "repetition_penalty": 1.0,
            "stop_strings": sampling.stop,
        }
        if sampling.greedy:
            settings["do_sample"] = False
        else:
            settings.update(do_sample=True, temperature=sampling.temperature,
                            top_p=sampling.top_p, top_k=0)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            generation_config=HFGenerationConfig(**settings),
            tokenizer=self.tokenizer if sampling.stop else None,
        )
        rows = out[:, width:].tolist()
        results = []
        for p in range(len(ids)):
            done = [self._completion(rows[p * per_prompt + j], sampling)
                    for j in range(per_prompt)]
            if sampling.greedy:  # one greedy decode stands for all n identical ones
                done = [replace(done[0]) for _ in range(sampling.n)]
            results.append(done)
        return results

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _completion(self, ids: list[int], sampling: Sampling) -> Completion:
        """Text, token count and finish reason of one generated row (padding included)."""
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
        body = ids if end is None else ids[:end]
        text, hit = cut_at_stop(self._decode(body), sampling.stop)
        if hit:
            return Completion(text, self._tokens_until_stop(body, sampling.stop), "stop")
        if end is not None:
            return Completion(text, end + 1, "stop")  # the EOS token was generated too
        return Completion(text, len(ids), "length")

    def _tokens_until_stop(self, ids: list[int], stop: list[str] | None) -> int:
        """The fewest tokens whose text contains a stop string (where generation stopped)."""
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if cut_at_stop(self._decode(ids[:mid]), stop)[1]:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def close(self) -> None:
        """Drop the model if this generator loaded it (a borrowed one stays with its owner)."""
        if getattr(self, "model", None) is None:
            return
        owned = self._owns_model
        self.model = None
        if owned:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
