"""A progress bar only where there is progress to show.

A call that fits in one batch finishes before a bar means anything, and stages call
`generate` chunk by chunk; a bar per chunk would flood logs with finished one-step bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def maybe_track(items: Iterable[T], *, total: int, description: str, unit: str) -> Iterator[T]:
    """`r1pipe.progress.track` when there are at least two steps, plain iteration otherwise."""
    if total < 2:
        yield from items
        return
    from r1pipe.progress import track

    yield from track(items, total=total, description=description, unit=unit)
