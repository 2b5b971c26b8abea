"""What preflight answers with: the cluster it checks against, one `Row` per check, the
`Report` that collects them and the printed table. Kept apart from the checks so the data
and model lookups can return a `Status` without importing the stage walk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from r1pipe.memory import (
    DEFAULT_BANDWIDTH_BYTES,
    GIB,
)

Status = Literal["ok", "warn", "FAIL", "n/a"]
"""ok; warn: fits, but close to a limit; FAIL: cannot run as configured; n/a: not checked
(a model's config or a dataset's card could not be read)."""


@dataclass(frozen=True)
class Cluster:
    """The machines a run gets: `nodes` x `gpus_per_node` GPUs of `gpu_bytes` each."""

    gpus_per_node: int
    gpu_bytes: int
    nodes: int = 1
    bandwidth: float = DEFAULT_BANDWIDTH_BYTES


@dataclass
class Row:
    """One line of the preflight table: what was checked, what it needs and what there is."""

    stage: str
    check: str
    need: str
    have: str
    status: Status
    key: str = ""
    fix: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def print_report(report: Report, *, width: int | None = None) -> None:
    """The table (user text as `Text`, never markup) on stdout, `width` columns wide."""
    from rich.table import Table
    from rich.text import Text

    from r1pipe.terminal import show

    table = Table(title="preflight", show_lines=False)
    for col in ("stage", "check", "need", "have", "", "key / detail"):
        table.add_column(col, overflow="fold")
    colour = {"ok": "green", "warn": "yellow", "FAIL": "red", "n/a": "yellow"}
    for row in report.rows:
        table.add_row(Text(row.stage), Text(row.check), Text(row.need), Text(row.have),
                      Text(row.status, style=colour[row.status]),
                      Text(" ".join(p for p in (row.key, row.fix) if p)))
    show(table, stdout=True, width=width)


def cluster_from(gpus_per_node: int, gpu_memory_gib: float, nodes: int = 1,
                 bandwidth_tbs: float | None = None) -> Cluster:
    return Cluster(gpus_per_node=gpus_per_node, gpu_bytes=int(gpu_memory_gib * GIB),
                   nodes=nodes, bandwidth=(bandwidth_tbs * 1e12 * 0.6) if bandwidth_tbs
                   else DEFAULT_BANDWIDTH_BYTES)
