"""A generator that loads its engine only when first asked to generate.

Loading a model (or starting a vLLM engine) takes minutes and most of an accelerator's
memory. A resumed stage or evaluation often finds every chunk already written and needs no
engine at all, and jobs that sample the same model in turn should share one engine rather
than load it again each. `LazyGenerator` is what they pass around instead of a generator:
nothing is loaded until `generate` is called, and `close` gives the engine back (a later
`generate` loads a fresh one), so a stage can hold one engine in memory at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig
    from r1pipe.generation.base import Completion, Generator, Prompt, Sampling
    from r1pipe.models import ModelSpec


@dataclass(frozen=True, eq=False)
class Engine:
    """The model and engine settings a job samples with: a zero-argument factory of the
    backend `generation` names for `model`, as `make_generator` builds it.

    A value rather than an engine, so a job can be described (and a resumed job finished)
    without loading anything: a job given an `Engine` makes the generator only when some
    chunk is left to do, and closes it when done. `r1pipe.generation.make_generator` is
    looked up when called, so a stand-in patched there applies."""

    model: str | ModelSpec
    generation: GenerationConfig
    seed: int

    def __call__(self) -> Generator:
        from r1pipe.generation import make_generator

        return make_generator(self.model, self.generation, seed=self.seed)

    def __repr__(self) -> str:
        backend = getattr(self.generation, "backend", None)
        return f"Engine({self.model!r}, backend={backend!r}, seed={self.seed})"


class LazyGenerator:
    """A `Generator` made by `factory` on the first `generate` call, closed by `close`."""

    def __init__(self, factory: Callable[[], Generator]) -> None:
        self._factory = factory
        self._gen: Generator | None = None

    @classmethod
    def for_model(cls, model: str | ModelSpec, gen_cfg: GenerationConfig, *,
                  seed: int) -> LazyGenerator:
        """The backend `gen_cfg` names for `model`, as `make_generator` builds it, made on
        first use (`r1pipe.generation.make_generator` is looked up then, so a stand-in
        patched there applies): a generator over an `Engine`, shared by the jobs that
        sample the same model in turn."""
        return cls(Engine(model, gen_cfg, seed))

    @property
    def loaded(self) -> bool:
        """Whether an engine is held now."""
        return self._gen is not None

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[Completion]]:
        if self._gen is None:
            self._gen = self._factory()
        return self._gen.generate(prompts, sampling)

    def close(self) -> None:
        """Give back the engine, if one was made; safe to call twice or before any use."""
        gen, self._gen = self._gen, None
        if gen is not None and hasattr(gen, "close"):
            gen.close()

    def __enter__(self) -> LazyGenerator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "loaded" if self._gen is not None else "not loaded"
        return f"<LazyGenerator {state}: {self._factory!r}>"


def as_generator(generator: Any) -> tuple[Any, bool]:
    """`generator` (anything with `generate`) as is, or a zero-argument factory of one
    wrapped in a `LazyGenerator`; and whether the caller made that wrapper, and so must
    close it (a generator it was handed belongs to whoever handed it over)."""
    if callable(generator) and not hasattr(generator, "generate"):
        return LazyGenerator(generator), True
    return generator, False
