"""Generation backends behind one interface: hf (transformers), vllm (offline engine) and
openai (any OpenAI-compatible server). See `base` for the contract; `factory.make_generator` picks
the backend named by the pipeline's `generation.backend`.

Only the light interface is imported here; each backend imports its engine when built.
"""

from r1pipe.generation.base import (
    Completion,
    GenerationError,
    Generator,
    Prompt,
    Sampling,
)
from r1pipe.generation.factory import make_generator

__all__ = ["Completion", "GenerationError", "Generator", "Prompt", "Sampling", "make_generator"]
