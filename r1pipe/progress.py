"""Progress bars and end-of-stage tables, one look for every long job.

Only rank 0 draws (several processes under `accelerate launch` would garble the terminal);
with no terminal (CI, logs) rich falls back to plain lines.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def console():
    from rich.console import Console

    return Console(stderr=True)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def track(items: Iterable[T], *, total: int | None = None, description: str = "working",
          unit: str = "items") -> Iterator[T]:
    """Iterate with a bar that shows done/total, rate and time left."""
    if not _is_main():
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class _Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task):  # type: ignore[override]
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.1f} {unit}/s" if speed else f"- {unit}/s", style="cyan")

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  _Rate(), TimeElapsedColumn(), TimeRemainingColumn(), console=console(),
                  transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def summary_table(title: str, rows: Mapping[str, Any]) -> None:
    """Print a two-column table of headline numbers (the end of every stage)."""
    if not _is_main():
        return
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(str(key), format_value(value))
    console().print(table)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
