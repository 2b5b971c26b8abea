"""Progress bars and end-of-stage tables, one look for every long job.

Only rank 0 draws (several processes under `accelerate launch` would garble the terminal);
with no terminal (CI, logs) rich falls back to plain lines.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

T = TypeVar("T")


def console() -> Any:
    """The console every bar and table prints to: stderr, so stdout stays for results;
    `r1pipe.terminal`'s, so job descriptions and table cells print as they are."""
    from r1pipe.terminal import console as terminal_console

    return terminal_console()


def is_main_process() -> bool:
    """Whether this is rank 0 (or not launched at all): the one process that draws."""
    return int(os.environ.get("RANK", "0")) == 0


class ProgressBar(AbstractContextManager["ProgressBar"]):
    """A rich bar: done/total, live rates, elapsed and time left; nothing at all off rank 0.

    `advance(n, tokens=...)` counts work done now; its rates (per second since the bar
    started) are shown for the bar's own unit and for every other unit named in `rates`.
    `skip(n)` moves the bar for work found already done (a resumed job's finished chunks)
    without counting it in the rates, which would otherwise promise a speed the machine
    does not have. `rates` maps each unit to its number format, the bar's unit first.
    """

    def __init__(self, description: str, total: int | None, *,
                 rates: Mapping[str, str] | None = None) -> None:
        self.description = description
        self.total = total
        self.rates = dict(rates or {"items": ",.1f"})
        self.counts = dict.fromkeys(self.rates, 0)
        self.started = time.perf_counter()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if not is_main_process():
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        # markup=False: a description names user things (a stage, a benchmark) that rich
        # would otherwise read as markup
        self._bar = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[rates]}", style="cyan", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(), console=console(), transient=False)
        self._bar.__enter__()
        self._task = self._bar.add_task(
            self.description, total=self.total,
            rates=" · ".join(f"- {unit}/s" for unit in self.rates))
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def skip(self, n: int) -> None:
        """Move the bar by `n` steps found done, leaving the rates alone."""
        if self._bar is not None:
            self._bar.update(self._task, advance=n)

    def advance(self, n: int = 1, **counts: int) -> None:
        """`n` steps done now, and how much of the other `rates` units they made."""
        first, *others = self.rates
        unknown = counts.keys() - set(others)
        if unknown:
            raise TypeError(f"{self.description}: no rate is shown for {sorted(unknown)}")
        self.counts[first] += n
        for unit in others:
            self.counts[unit] += counts.get(unit, 0)
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rates = " · ".join(f"{self.counts[unit] / elapsed:{spec}} {unit}/s"
                           for unit, spec in self.rates.items())
        self._bar.update(self._task, advance=n, rates=rates)


def track(items: Iterable[T], *, total: int | None = None, description: str = "working",
          unit: str = "items", min_steps: int = 0) -> Iterator[T]:
    """Iterate with a bar that shows done/total, rate and time left.

    With fewer than `min_steps` steps (known from `total` or `len(items)`) no bar is drawn:
    work called piece by piece (a generator's batches inside a job's chunk) would otherwise
    flood logs with finished one-step bars.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not is_main_process() or (total is not None and total < min_steps):
        yield from items
        return
    with ProgressBar(description, total, rates={unit: ",.1f"}) as bar:
        for item in items:
            yield item
            bar.advance()


def summary_table(title: str, rows: Mapping[str, Any]) -> None:
    """Print a two-column table of headline numbers (the end of every stage)."""
    if not is_main_process():
        return
    from rich.table import Table

    from r1pipe.terminal import show

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(str(key), format_value(value))
    show(table)  # cells are printed as they are: keys and values may hold `[` or `:x:`


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
