"""Reward-model reward: a sequence classifier scores (prompt, response) pairs.

All-scenario RL (the paper's last stage) scores general prompts with preference reward
models: helpfulness on the final summary only, so the reward does not shape the reasoning;
harmlessness on the whole response, reasoning included, so no harmful content hides in it.
`part: summary` / `part: full` chooses which. Any checkpoint that loads with
`AutoModelForSequenceClassification` works (a Hub id, a folder, the specs `r1pipe.models`
understands); it is loaded once per process, on first use, and scores in batches.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, Literal

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, completion_text, final_response
from r1pipe.rewards.base import Batch, RewardFunc, Score

_MODELS: dict[str, tuple[Any, Any]] = {}
_LOCK = threading.Lock()


DTYPES = ("auto", "float32", "bfloat16", "float16")


def resolve_placement(device: str, dtype: str, where: str = "reward model") -> tuple[str, str]:
    """Where and in what precision a reward model is loaded, `auto` settled for this process.

    `auto`/`cuda` mean this rank's own GPU (`cuda:LOCAL_RANK`: under `accelerate launch`
    eight ranks must not all load onto GPU 0), or the CPU without one; `cuda:N` pins a GPU.
    dtype `auto` is bfloat16 on a GPU that has it (float16 on one that has not); on the CPU
    bfloat16 where it has bf16 matrix instructions (AVX512-BF16 or AMX: a 350-token
    SmolLM2-135M score takes 0.49 s instead of 0.87 s on 2 EPYC cores) and float32 where
    half precision is emulated and slower (`r1pipe.precision`).
    """
    import os

    import torch

    from r1pipe.precision import engine_dtype, native_bf16

    if device in ("auto", "cuda"):
        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0') or 0)}"
        elif device == "auto":
            device = "cpu"
    if dtype == "auto" and device.startswith("cuda"):
        return device, "bfloat16" if native_bf16(device) else "float16"
    return device, engine_dtype(dtype, on_cpu=device == "cpu", where=f"{where}.dtype")


def load_reward_model(model: str | dict[str, Any], dtype: str, device: str) -> tuple[Any, Any]:
    """(model, tokenizer) for a reward-model spec, cached per process."""
    device, dtype = resolve_placement(device, dtype)
    key = json.dumps([model, dtype, device], sort_keys=True, default=str)
    with _LOCK:
        if key not in _MODELS:
            from r1pipe.models import load_model_and_tokenizer

            loaded, tokenizer = load_model_and_tokenizer(
                model, dtype=dtype, device=device, task="sequence-classification"  # type: ignore[arg-type]
            )
            tokenizer.truncation_side = "left"  # keep the end of the response
            _MODELS[key] = (loaded, tokenizer)
        return _MODELS[key]


@dataclass
class RewardModel(RewardFunc):
    """The classifier's score (logit `label_index`, optionally squashed) for each sample."""

    family = "reward_model"
    default_task_types = ("general",)
    scores_every_sample = True

    model: str | dict[str, Any] | None = None
    """Hub id, folder, or an r1pipe model spec mapping."""
    part: Literal["summary", "full"] = "summary"
    """`summary` for helpfulness (the final response), `full` for harmlessness."""
    batch_size: int = 8
    max_length: int = 2048
    dtype: str = "auto"
    """`auto` (bfloat16 on a GPU and on a CPU with bf16 instructions, else float32),
    `bfloat16`, `float16` or `float32`."""
    device: str = "auto"
    """`auto` or `cuda` (this rank's GPU, `cuda:LOCAL_RANK`; the CPU without one), `cuda:1`
    (pinned), or `cpu`. See `resolve_placement`."""
    label_index: int = 0
    activation: Literal["none", "sigmoid", "softmax"] = "none"
    use_chat_template: bool = True
    """Format (prompt, response) with the reward model's chat template when it has one."""
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def problems(self) -> list[str]:
        out = []
        if not self.model:
            out.append("reward_model needs `model` (a Hub id or a folder)")
        if self.batch_size < 1:
            out.append("batch_size must be at least 1")
        if self.dtype not in DTYPES:
            out.append(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            out.append(f"device {self.device!r}: use auto, cpu, cuda or cuda:N")
        return out

    def _response(self, text: str) -> str:
        response = final_response(text, self.special_token) if self.part == "summary" else text
        # Tokens are cut from the left to fit max_length anyway, and a token rarely spans
        # more than 8 characters: a megabyte response is not tokenized whole to be dropped.
        return response[-self.max_length * 8:]

    def _input_text(self, tokenizer: Any, batch: Batch, i: int) -> tuple[str, bool]:
        """The text to score and whether it already carries special tokens."""
        response = self._response(batch.texts[i])
        prompt = batch.prompts[i] if i < len(batch.prompts) else ""
        if self.use_chat_template and getattr(tokenizer, "chat_template", None):
            if isinstance(prompt, (list, tuple)):
                messages = [
                    {"role": m.get("role", "user"), "content": completion_text(m.get("content"))}
                    for m in prompt if isinstance(m, dict)
                ]
            else:
                messages = [{"role": "user", "content": completion_text(prompt)}]
            messages.append({"role": "assistant", "content": response})
            return tokenizer.apply_chat_template(messages, tokenize=False), True
        return batch.prompt_text(i) + response, False

    def score_batch(self, batch: Batch) -> list[Score]:
        import torch

        model, tokenizer = load_reward_model(self.model or "", self.dtype, self.device)
        scores: list[Score] = [None] * len(batch)
        for start in range(0, len(batch), self.batch_size):
            idx = list(range(start, min(start + self.batch_size, len(batch))))
            try:
                texts = [self._input_text(tokenizer, batch, i) for i in idx]
                templated = all(t[1] for t in texts)
                enc = tokenizer(
                    [t[0] for t in texts], return_tensors="pt", padding=True, truncation=True,
                    max_length=self.max_length, add_special_tokens=not templated,
                ).to(model.device)
                with torch.inference_mode():
                    logits = model(**enc).logits.float()
            except Exception as exc:  # e.g. an out-of-memory batch: lose it, not the run
                self.report_error(exc)
                continue
            if self.activation == "softmax":
                logits = logits.softmax(dim=-1)
            elif self.activation == "sigmoid":
                logits = logits.sigmoid()
            column = logits[:, min(self.label_index, logits.shape[-1] - 1)]
            for i, value in zip(idx, column.tolist(), strict=True):
                scores[i] = float(value)
        return scores
