"""Weighted mixtures of sources with exact proportions.

`datasets.interleave_datasets` draws each record's source at random, so a 70/30 mixture of
10,000 records is off by about 0.5% on average and by more than 1% now and then. R1's
stage-3 data is a deliberate 600k/200k blend, so r1pipe schedules the sources itself: every
block of `BLOCK` records holds each source in proportion to its weight (carrying the
rounding over to the next block), and the order inside a block is shuffled by the seed.
Any prefix is then within one block of the configured shares, and a block-aligned prefix is
exact to one record.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datasets import Dataset, Features, IterableDataset

BLOCK = 100


class MixtureError(ValueError):
    """Components of a mixture that cannot be combined (empty, clashing column types)."""


def normalise_weights(weights: Sequence[float]) -> list[float]:
    """Weights as shares summing to one."""
    if not weights or any(w <= 0 for w in weights):
        raise MixtureError(f"mixture weights must be positive, got {list(weights)}")
    total = float(sum(weights))
    return [w / total for w in weights]


def schedule(weights: Sequence[float], seed: int, block: int = BLOCK) -> Iterator[int]:
    """Endless sequence of component indices in the configured proportions.

    Each pick goes to the component furthest behind its share (largest deficit), which keeps
    every count within one record of `share × n`; then each block is shuffled so records of
    one source do not arrive in a fixed rhythm.
    """
    shares = normalise_weights(weights)
    rng = random.Random(f"r1pipe:mixture:{seed}")
    counts = [0] * len(shares)
    n = 0
    while True:
        chunk: list[int] = []
        for _ in range(block):
            n += 1
            pick = max(range(len(shares)), key=lambda j: (shares[j] * n - counts[j], -j))
            counts[pick] += 1
            chunk.append(pick)
        rng.shuffle(chunk)
        yield from chunk


def mixture_indices(
    lengths: Sequence[int], weights: Sequence[float], seed: int, limit: int | None
) -> list[tuple[int, int]]:
    """(component, row) pairs of a mixture of in-memory components.

    Without `limit` the mixture ends when its first component runs out (so no record is
    repeated); with `limit` an exhausted component starts over, so small sources can be
    up-weighted, as R1 does with its general data.
    """
    if any(n == 0 for n in lengths):
        raise MixtureError("a mixture component is empty")
    positions = [0] * len(lengths)
    picked: list[tuple[int, int]] = []
    for comp in schedule(weights, seed):
        if limit is not None and len(picked) >= limit:
            break
        if positions[comp] >= lengths[comp]:
            if limit is None:
                break
            positions[comp] = 0
        picked.append((comp, positions[comp]))
        positions[comp] += 1
    return picked


def unify_features(parts: Sequence[Any], names: Sequence[str]) -> Features | None:
    """One schema covering every component: union of columns, null types filled in.

    Returns None when a component's schema is unknown (a stream without features).
    """
    from datasets import Features, Value

    union: dict[str, Any] = {}
    for part, name in zip(parts, names, strict=True):
        features = part.features
        if features is None:
            return None
        for column, feature in features.items():
            known = union.get(column)
            if known is None or known == Value("null"):
                union[column] = feature
            elif feature != Value("null") and feature != known:
                wider = _wider(known, feature)
                if wider is None:
                    raise MixtureError(
                        f"mixture component {name!r}: column {column!r} is {feature}, but an "
                        f"earlier component has it as {known}; map them to one type first"
                    )
                union[column] = wider
    return Features(union)


def _kind(feature: Any) -> str | None:
    """"number", "text", or None for a column type that only matches itself."""
    from datasets import Value

    if not isinstance(feature, Value):
        return None
    if feature.dtype.startswith(("int", "uint", "float")):
        return "number"
    if feature.dtype in ("string", "large_string"):
        return "text"
    return None


def _wider(a: Any, b: Any) -> Any | None:
    """One type both columns can be cast to, or None if they cannot share a column."""
    from datasets import Value

    kind = _kind(a)
    if kind is None or kind != _kind(b):
        return None
    if kind == "text":
        return Value("string")
    return Value("float64") if "float" in a.dtype + b.dtype else Value("int64")


def mix_in_memory(
    parts: Sequence[Dataset],
    names: Sequence[str],
    weights: Sequence[float],
    seed: int,
    limit: int | None,
) -> Dataset:
    """Mixture of map-style datasets: aligned columns, concatenated, rows picked by index."""
    from datasets import concatenate_datasets

    features = unify_features(parts, names)
    assert features is not None
    aligned = []
    for part, name in zip(parts, names, strict=True):
        for column, feature in features.items():
            if column not in part.column_names:
                part = part.add_column(column, [None] * len(part), feature=feature)
        part = part.select_columns(list(features))
        if part.features != features:
            try:
                part = part.cast(features)
            except (ValueError, TypeError) as exc:
                raise MixtureError(
                    f"mixture component {name!r} cannot be cast to the mixture's columns: {exc}"
                ) from exc
        aligned.append(part)
    offsets = [0]
    for part in aligned[:-1]:
        offsets.append(offsets[-1] + len(part))
    picked = mixture_indices([len(p) for p in aligned], weights, seed, limit)
    return concatenate_datasets(aligned).select([offsets[c] + r for c, r in picked])


def mix_streams(
    parts: Sequence[Dataset | IterableDataset],
    names: Sequence[str],
    weights: Sequence[float],
    seed: int,
    limit: int | None,
) -> IterableDataset:
    """Mixture where at least one component streams: same schedule, read lazily."""
    from datasets import Dataset, IterableDataset

    streams = [p.to_iterable_dataset() if isinstance(p, Dataset) else p for p in parts]
    features = unify_features(streams, names)
    columns = list(features) if features is not None else None

    def generate() -> Iterator[dict[str, Any]]:
        iterators = [iter(s) for s in streams]
        for produced, comp in enumerate(schedule(weights, seed)):
            if limit is not None and produced >= limit:
                return
            try:
                record = next(iterators[comp])
            except StopIteration:
                if limit is None:
                    return
                iterators[comp] = iter(streams[comp])
                try:
                    record = next(iterators[comp])
                except StopIteration:
                    raise MixtureError(f"mixture component {names[comp]!r} is empty") from None
            if columns is not None:
                record = {c: record.get(c) for c in columns}
            yield record

    return IterableDataset.from_generator(generate, features=features)
