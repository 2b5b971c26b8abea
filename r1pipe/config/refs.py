"""References between stages and data sources: the `Ref` marker, `ModelRef`/`DataRef`,
the resolved `Input`s of a section, and the cycle check over them.

Why a marker on the annotation: the engine finds every dependency of a stage by walking its
section's fields, without knowing the stage. `find_cycle` lives here (re-exported by
`r1pipe.graph`) so the config's own cycle check needs nothing from a module that imports
the config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel

BASE = "base"


@dataclass(frozen=True)
class Ref:
    """Marks a config field whose value names an input.

    kind "model": "base" or the name of a stage whose `model/` is used.
    kind "data":  the name of an entry of `data:`, or `<stage>:<artifact>` for a JSONL
                  artifact a stage wrote under `<stage>/data/<artifact>/`.
    """

    kind: Literal["model", "data"]


ModelRef = Annotated[str, Ref("model")]
DataRef = Annotated[str, Ref("data")]


@dataclass(frozen=True)
class Input:
    """One resolved dependency of a stage: which field asked for it and what it names."""

    field: str  # key path inside the stage section, e.g. "from" or "data.1"
    kind: Literal["model", "data"]
    value: str

    @property
    def stage(self) -> str | None:
        """The upstream stage this input comes from, or None for base model / data sources."""
        if self.kind == "model":
            return None if self.value == BASE else self.value
        return self.value.split(":", 1)[0] if ":" in self.value else None

    @property
    def artifact(self) -> str:
        """Artifact path relative to the upstream stage folder."""
        if self.kind == "model":
            return "model"
        return "data/" + self.value.split(":", 1)[1]


def _ref_of(annotation: Any) -> Ref | None:
    for meta in getattr(annotation, "__metadata__", ()):
        if isinstance(meta, Ref):
            return meta
    return None


def collect_refs(model: BaseModel, prefix: str):
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        ref = next((m for m in field.metadata if isinstance(m, Ref)), None)
        if ref is None:
            # list[DataRef] / dict[str, DataRef] / nested sections
            for arg in get_args(field.annotation):
                ref = ref or _ref_of(arg)
        path = f"{prefix}{key}"
        if isinstance(value, BaseModel):
            yield from collect_refs(value, path + ".")
        elif ref is not None and isinstance(value, str):
            yield Input(path, ref.kind, value)
        elif ref is not None and isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, str):
                    yield Input(f"{path}.{i}", ref.kind, v)
        elif ref is not None and isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, str):
                    yield Input(f"{path}.{k}", ref.kind, v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                if isinstance(v, BaseModel):
                    yield from collect_refs(v, f"{path}.{i}.")


def find_cycle(edges: Mapping[str, Iterable[str | None]]) -> list[str] | None:
    """A cycle as [a, b, ..., a] if the `stage -> inputs` graph has one, else None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in edges.get(node, ()):
            if dep is None or dep not in edges:
                continue
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None
