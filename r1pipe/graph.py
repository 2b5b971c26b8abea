"""Stage dependency graph: order and cycles. Kept apart so config checks and the engine share it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig


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


def topological_order(edges: Mapping[str, Iterable[str | None]], preferred: list[str]) -> list[str]:
    """Stages with their inputs first; ties follow `preferred` (the paper's order), then names.

    Assumes no cycle (config loading rejects cycles before this is called).
    """
    rank = {name: i for i, name in enumerate(preferred)}
    deps = {n: {d for d in edges[n] if d is not None and d in edges} for n in edges}
    order: list[str] = []
    done: set[str] = set()
    while len(order) < len(deps):
        ready = [n for n in deps if n not in done and deps[n] <= done]
        ready.sort(key=lambda n: (rank.get(n, len(rank)), n))
        order.append(ready[0])
        done.add(ready[0])
    return order


def downstream(edges: Mapping[str, Iterable[str | None]], start: str) -> set[str]:
    """Every stage that reads, directly or not, from `start`."""
    out: set[str] = set()
    frontier = {start}
    while frontier:
        nxt = {n for n, ds in edges.items() if set(ds) & frontier and n not in out}
        out |= nxt
        frontier = nxt
    return out


def stage_edges(config: PipelineConfig) -> dict[str, list[str | None]]:
    """`stage -> the stages it reads from` for a pipeline (None for base model and data)."""
    return {n: [i.stage for i in config.stages[n].inputs()] for n in config.stages}


def stage_order(config: PipelineConfig) -> list[str]:
    """A pipeline's stages, inputs first, ties in the paper's order (`r1pipe.stages.RECIPE`)."""
    from r1pipe.stages import RECIPE

    return topological_order(stage_edges(config), list(RECIPE))
