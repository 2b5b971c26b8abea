"""Stage dependency graph: order and downstream stages for the engine; the cycle check
(`find_cycle`) is the config's own (`r1pipe.config.refs`), re-exported here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

# The config checks inputs for cycles at validate time: the algorithm lives in the config
# (which must not import this module, which imports it), and is re-exported here.
from r1pipe.config.refs import find_cycle as find_cycle

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig


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
