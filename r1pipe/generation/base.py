"""One interface for every generation engine: prompts in, n completions per prompt out.

Rejection sampling, data collection and evaluation all ask the same question ("sample n
answers to each of these prompts") of very different engines: transformers in the training
process, vLLM's offline engine, or a fleet of OpenAI-compatible servers. Stages talk to a
`Generator` only, so a pipeline switches engines with `generation.backend` and nothing else.

Everything heavy (torch, transformers, vllm, openai) is imported inside the backends'
functions: the CLI imports this package and `r1pipe --help` must stay instant.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig

Messages = list[dict[str, Any]]
Prompt = str | Messages
FinishReason = Literal["stop", "length"]


class GenerationError(RuntimeError):
    """A generation job failed in a way the caller should report as is (bad server, bad model)."""


@dataclass
class Completion:
    """One sampled continuation.

    `token_count` counts generated tokens (the end-of-sequence token included when the model
    emitted it), which is what length rewards and throughput numbers need. `finish_reason` is
    "stop" (end of sequence or a stop string, which is cut from `text`) or "length" (the
    `max_new_tokens` budget ran out: the answer is truncated).
    """

    text: str
    token_count: int
    finish_reason: FinishReason


@dataclass
class Sampling:
    """How to sample: the knobs every backend understands, with the recipe's defaults.

    `temperature == 0` means greedy decoding (the n completions are then identical).
    `seed` overrides the generator's seed for this call where the engine allows it (hf);
    vLLM is seeded once per engine, servers by their own `--seed`.
    """

    n: int = 1
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 512
    stop: list[str] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Sampling.n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ValueError(f"Sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"Sampling.top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"Sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.stop is not None:
            self.stop = [s for s in self.stop if s] or None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_config(cls, gen_cfg: GenerationConfig, *, n: int = 1, stop: list[str] | None = None,
                    seed: int | None = None, **overrides: Any) -> Sampling:
        """The pipeline's `generation:` defaults, with a stage's n, stop strings and overrides."""
        values: dict[str, Any] = {
            "temperature": gen_cfg.temperature,
            "top_p": gen_cfg.top_p,
            "max_new_tokens": gen_cfg.max_new_tokens,
        }
        values.update(overrides)
        return cls(n=n, stop=stop, seed=seed, **values)


def is_chat(prompt: Prompt) -> bool:
    """Whether a prompt is a list of chat messages (rendered with the chat template)."""
    return not isinstance(prompt, str)


def check_prompts(prompts: Sequence[Prompt]) -> list[Prompt]:
    """Reject what no backend can render, naming the prompt, before any engine time is spent."""
    if isinstance(prompts, (str, dict)):
        raise TypeError("generate() takes a list of prompts, not a single prompt")
    out = list(prompts)
    for i, prompt in enumerate(out):
        if isinstance(prompt, str):
            continue
        if (not isinstance(prompt, list) or not prompt
                or not all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)):
            raise TypeError(f"prompt {i} must be a string or a non-empty list of "
                            f"{{'role', 'content'}} messages, got {type(prompt).__name__}")
    return out


def render_prompt(tokenizer: Any, prompt: Prompt) -> tuple[str, bool]:
    """(text, add_special_tokens) for a prompt, the way every local backend tokenizes it.

    Chat messages go through the tokenizer's chat template with the generation prompt; the
    template already writes BOS where the model wants one, so the text must then be encoded
    without special tokens (a second BOS changes what the model sees).
    """
    if isinstance(prompt, str):
        return prompt, True
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise GenerationError(f"tokenizer {name!r} has no chat template, so chat prompts "
                              "cannot be rendered; give plain string prompts")
    if prompt[-1].get("role") == "assistant":  # the answer's opening (`response_prefix`)
        text = tokenizer.apply_chat_template(prompt, tokenize=False, continue_final_message=True)
    else:
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    return text, False


def prompt_as_text(tokenizer: Any, prompt: Prompt) -> str:
    """A prompt as the text a trainer tokenizes with special tokens (TRL's GRPOTrainer does
    for text prompts): chat messages rendered by `render_prompt`, less a leading BOS that
    the tokenizer would add again. Why: TRL renders conversations with the generation
    prompt only, so an answer's opening written into the assistant turn
    (`response_prefix`) can reach it only as text."""
    text, special = render_prompt(tokenizer, prompt)
    if special:
        return text
    bos = getattr(tokenizer, "bos_token", None)
    adds_bos = bos is not None and tokenizer("", add_special_tokens=True)["input_ids"][:1] == [
        getattr(tokenizer, "bos_token_id", None)]
    return text.removeprefix(bos) if adds_bos else text


def encode_prompt(tokenizer: Any, prompt: Prompt) -> list[int]:
    """Token ids of a rendered prompt (see `render_prompt`)."""
    text, special = render_prompt(tokenizer, prompt)
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def chunks(items: Sequence[Any], size: int) -> Iterator[tuple[int, Sequence[Any]]]:
    """(start index, slice) pairs of at most `size` items."""
    for start in range(0, len(items), max(1, size)):
        yield start, items[start:start + size]


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, bool]:
    """Text before the earliest stop string (excluded, as vLLM and OpenAI do), and whether one hit."""
    if not stop:
        return text, False
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    if not hits:
        return text, False
    return text[: min(hits)], True


class Generator(abc.ABC):
    """A generation engine. Use as a context manager so engine memory is given back.

    `generate` returns, for each prompt in order, `sampling.n` completions. A prompt is a
    string (used as is) or a list of chat messages (rendered with the chat template and the
    assistant generation prompt).
    """

    backend: str = ""

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[Completion]]:
        prompts = check_prompts(prompts)
        if not prompts:
            return []
        out = self._generate(prompts, sampling)
        if len(out) != len(prompts) or any(len(c) != sampling.n for c in out):
            raise GenerationError(f"{self.backend} backend returned {[len(c) for c in out]} "
                                  f"completions for {len(prompts)} prompts × n={sampling.n}")
        return out

    @abc.abstractmethod
    def _generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        """Backend work on validated, non-empty prompts."""

    @abc.abstractmethod
    def close(self) -> None:
        """Give back the engine's memory (and processes). Safe to call twice."""

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
