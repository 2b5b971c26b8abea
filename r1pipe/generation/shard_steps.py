"""Shard-to-shard steps: what runs on an artifact after a generation job wrote it.

A generation job (`r1pipe.generation.jobs`) writes chunk k as shard k so that it resumes
chunk by chunk; the steps after it keep that property. `map_shards` (filtering, scoring)
makes output shard k a function of input shard k alone, so a killed step redoes only the
shards it had not written. `sample_and_shuffle` draws exact counts from several streams and
shuffles them by seed with memory bounded by one output shard, however large the artifact.
They live apart from the jobs because they never load a model: they are pure data steps,
used as well where nothing is generated.
"""

from __future__ import annotations

import json
import math
import random
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1pipe.artifacts import (
    ArtifactError,
    DatasetCard,
    ShardedJsonlWriter,
    ShardSink,
    atomic_file,
    read_manifest,
    read_shard,
    shard_name,
)
from r1pipe.progress import track

Record = dict[str, Any]

def iter_shard(path: str | Path, name: str, *, verify: bool = True,
               sha256: str | None = None) -> Iterator[Record]:
    """The records of one shard of an artifact, checked against its manifest entry (or
    against `sha256` when given, which spares reading the manifest)."""
    path = Path(path)
    if verify and sha256 is None:
        info = read_manifest(path).shards.get(name)
        if info is None:
            raise ArtifactError(f"{path}: no shard {name} in the manifest")
        sha256 = info.sha256
    yield from read_shard(path / name, sha256 if verify else None)


def map_shards(
    src: str | Path,
    dst: str | Path,
    transform: Callable[[Iterator[Record]], Iterable[Record]],
    *,
    on_skip: Callable[[Iterator[Record]], None] | None = None,
    card: DatasetCard | Callable[[], DatasetCard] | None = None,
    meta: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
    description: str = "processing",
    workers: int = 1,
) -> int:
    """Write `dst` shard k = `transform(records of src shard k)`; resumable shard by shard.

    `src` must be complete. Shards of `dst` already on disk are not redone; `on_skip` is
    given their records instead (to rebuild counts a summary needs). `card` and `meta` may be
    functions, called once every shard is done (so they can report what the transform
    counted). Returns the records in `dst`. Memory: one record at a time, plus whatever
    `transform` keeps.

    `workers > 1` transforms shards in that many processes (spawned, so `transform` must
    pickle: a `functools.partial` of a module-level function). Whatever the transform counts
    in a worker stays there, so `on_skip` is then given the records of every shard the
    workers wrote as well: count from the output, and the totals are the same either way.
    """
    src, dst = Path(src), Path(dst)
    manifest = read_manifest(src)
    if not manifest.complete:
        raise ArtifactError(f"{src}: artifact is not complete; finish the step that writes it")
    writer = ShardedJsonlWriter(dst)
    shards = [(name, int(name.split("-")[1].split(".")[0]), manifest.shards[name].sha256)
              for name in sorted(manifest.shards)]
    for _, index, _ in shards:
        if index in writer.finished and on_skip is not None:
            name = shard_name(index)
            on_skip(iter_shard(dst, name, sha256=writer.manifest.shards[name].sha256))
    todo = [s for s in shards if s[1] not in writer.finished]
    if workers > 1 and len(todo) > 1:
        _map_in_processes(src, dst, todo, transform, workers, on_skip, description)
        writer = ShardedJsonlWriter(dst)  # adopts the shards the workers wrote
    else:
        for name, index, sha in track(todo, description=description, unit="shards"):
            with writer.shard(index) as sink:
                sink.write_many(transform(iter_shard(src, name, sha256=sha)))
    missing = {index for _, index, _ in shards} - writer.finished
    if missing:  # cannot happen unless a shard was removed meanwhile
        raise ArtifactError(f"{dst}: shards missing after processing: {sorted(missing)[:10]}")
    writer.finalize(card=card() if callable(card) else card,
                    meta=meta() if callable(meta) else meta)
    return writer.manifest.records


def _map_in_processes(src: Path, dst: Path, todo: list[tuple[str, int, str]],
                      transform: Callable[[Iterator[Record]], Iterable[Record]], workers: int,
                      on_done: Callable[[Iterator[Record]], None] | None,
                      description: str) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
    with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=context) as pool:
        futures = [pool.submit(_map_one, src, dst, name, index, sha, transform)
                   for name, index, sha in todo]
        for future in track(as_completed(futures), total=len(futures),
                            description=f"{description} ({workers} processes)",
                            unit="shards"):
            name, sha = future.result()
            if on_done is not None:
                on_done(iter_shard(dst, name, sha256=sha))


def _map_one(src: Path, dst: Path, name: str, index: int, sha: str,
             transform: Callable[[Iterator[Record]], Iterable[Record]]) -> tuple[str, str]:
    """One shard in a worker process: written to a temp file, fsynced, renamed into place
    (what `ShardedJsonlWriter.shard` does; the parent's writer adopts it)."""
    out = shard_name(index)
    with atomic_file(dst / out) as fh:
        sink = ShardSink(fh)
        sink.write_many(transform(iter_shard(src, name, sha256=sha)))
    return out, sink.info().sha256


@dataclass
class MixSource:
    """One input of `sample_and_shuffle`: a re-readable stream and how many to draw from it."""

    name: str
    records: Callable[[], Iterable[Record]]  # called once; yields `available` candidates
    available: int
    take: int
    transform: Callable[[Record], Record] = lambda record: record


def sample_and_shuffle(sources: list[MixSource], dst: str | Path, *, seed: int,
                       records_per_shard: int = 10_000, card: DatasetCard | None = None,
                       meta: dict[str, Any] | None = None) -> dict[str, int]:
    """Write `take` records drawn uniformly from each source, shuffled together, to `dst`.

    Streaming in two passes, memory bounded by one output shard:
    1. each source is read once; selection sampling (Knuth's algorithm S) keeps each record
       with probability (still needed) / (still unseen), which draws exactly `take` of
       `available` uniformly; every drawn record goes to a random temporary bucket file;
    2. each bucket is shuffled in memory and written as one shard.
    Scattering into random buckets and shuffling each gives a uniformly random order. The
    seed fixes both the draw and the order. The step is redone from the start if it was
    interrupted (it is cheap next to generation); returns the records drawn per source.
    """
    dst = Path(dst)
    for source in sources:
        if not 0 <= source.take <= source.available:
            raise ValueError(f"mix source {source.name}: cannot take {source.take} of "
                             f"{source.available}")
    total = sum(s.take for s in sources)
    n_buckets = max(1, math.ceil(total / max(records_per_shard, 1)))
    buckets = dst.parent / f".{dst.name}.buckets"
    for path in (dst, buckets):
        shutil.rmtree(path, ignore_errors=True)
    buckets.mkdir(parents=True)
    rng = random.Random(f"r1pipe:sample_and_shuffle:{seed}")
    pending: list[list[str]] = [[] for _ in range(n_buckets)]

    def flush(b: int) -> None:
        with open(buckets / f"{b:05d}.jsonl", "a", encoding="utf-8") as fh:
            fh.writelines(pending[b])
        pending[b].clear()

    drawn: dict[str, int] = {}
    for source in sources:
        needed, unseen = source.take, source.available
        for record in source.records():
            if needed == 0:
                break
            if unseen <= 0:
                raise ArtifactError(f"mix source {source.name} yields more records than the "
                                    f"{source.available} it was said to have")
            if rng.random() * unseen < needed:
                b = rng.randrange(n_buckets)
                pending[b].append(json.dumps(source.transform(record), ensure_ascii=False,
                                             default=str) + "\n")
                if len(pending[b]) >= 64:
                    flush(b)
                needed -= 1
            unseen -= 1
        if needed:
            raise ArtifactError(f"mix source {source.name} ran out with {needed} records still "
                                f"to draw (it was said to have {source.available})")
        drawn[source.name] = source.take
    for b in range(n_buckets):
        flush(b)
    writer = ShardedJsonlWriter(dst)
    for b in range(n_buckets):
        bucket = buckets / f"{b:05d}.jsonl"
        lines = bucket.read_text(encoding="utf-8").splitlines() if bucket.exists() else []
        random.Random(f"r1pipe:sample_and_shuffle:{seed}:{b}").shuffle(lines)
        with writer.shard(b) as sink:
            for line in lines:
                sink.write(json.loads(line))
        bucket.unlink(missing_ok=True)
    writer.finalize(card=card, expected_shards=n_buckets, meta={**(meta or {}), "drawn": drawn})
    shutil.rmtree(buckets, ignore_errors=True)
    return drawn

