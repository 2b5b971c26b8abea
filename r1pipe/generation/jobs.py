"""Resumable, shardable "generate into a sharded artifact" jobs, and shard-by-shard transforms.

Every stage that samples at scale (rejection sampling, cold-start collection, evaluation)
does the same thing: walk a deterministic list of prompt records in chunks, sample
completions for each chunk, turn (record, completions) into output records, and write
chunk k as shard k of a JSONL artifact. Doing it in one place gives every such stage:

- **Resume without duplicates.** A shard appears on disk whole or not at all
  (`ShardedJsonlWriter`), and shard k holds exactly chunk k, so a re-run skips the finished
  chunks and can neither lose nor repeat a record. Chunk k is sampled with seed
  `sampling.seed + k`, so on a backend that takes a seed per call (hf) a chunk re-done after
  a kill, or by another machine, is sampled exactly as it would have been (vLLM and servers
  are seeded once per engine: there ids and prompts match, sampled texts may not).
- **Many machines.** With `--shard i/N` a process does only the chunks it owns
  (chunk k belongs to part k mod N) and leaves the artifact unfinished; a later run without
  `--shard` finds every chunk done and finalizes, after checking none is missing
  (`merge=True` makes that run generate nothing itself).
- **Every rank of a launched stage.** Under `accelerate launch` (RANK/WORLD_SIZE set; pass
  `ranks=Ranks.from_env()`) each process loads its own engine on its own device
  (`rank_device`) and samples its own chunks: within a `--shard` part, the part's j-th
  chunk belongs to rank j mod WORLD_SIZE. Ranks write whole shard files side by side; rank
  0 alone writes the manifest, once every chunk is on disk.
- **Flat memory.** Records are read as a stream and one chunk is held at a time; the model
  is loaded only if some chunk is actually left to do.
- **A progress bar** with prompts/s and tokens/s, and one metrics line per chunk.

Two companions for the steps after generation: `map_shards` (filtering, scoring: output
shard k is a function of input shard k, so those steps resume shard by shard too) and
`sample_and_shuffle` (draw exact counts from several streams and shuffle them by seed,
with memory bounded by one output shard however large the artifact).

    from r1pipe.generation import make_generator
    from r1pipe.generation.jobs import run_generation_job

    report = run_generation_job(
        prompts,                                  # dicts in a deterministic order
        ctx.data_dir("generated"),
        generator=lambda: make_generator(model, ctx.pipeline.generation, seed=seed),
        sampling=Sampling(n=4, temperature=0.6, top_p=0.95, max_new_tokens=512, seed=seed),
        prompt_of=lambda r: r["messages"],
        build=lambda r, outs: [{"id": f"{r['id']}-s{k}", "completion": c.text} for k, c in
                               enumerate(outs)],
        chunk_size=64, shard=ctx.shard, metrics=ctx.metrics)
    if not report.complete:      # a --shard part: stop here, a later run merges
        return StageResult(...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from r1pipe.artifacts import (
    SHARD_PATTERN,
    ArtifactError,
    DatasetCard,
    ShardedJsonlWriter,
    ShardSink,
    atomic_file,
    read_manifest,
    read_shard,
    shard_name,
)
from r1pipe.generation.lazy import as_generator
from r1pipe.progress import ProgressBar, track

Record = dict[str, Any]
Prompt = str | list[dict[str, str]]


class _Owns(Protocol):
    def owns(self, chunk: int) -> bool: ...


class MissingChunks(ArtifactError):
    """A merge found chunks that no sharded run produced."""

    def __init__(self, path: Path, missing: list[int], chunks: int) -> None:
        self.path = path
        self.missing = missing
        self.chunks = chunks
        shown = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        super().__init__(
            f"{path}: {len(missing)} of {chunks} chunks were never generated (chunks {shown}); "
            "with --shard i/N, chunk k belongs to part k mod N: run the missing parts again")


@dataclass(frozen=True)
class Ranks:
    """The processes of a launched stage generating one artifact together: this process is
    `rank` of `world` (global, across machines), on GPU `local_rank` of its machine.

    Chunk ownership nests inside `--shard i/N` (`Shard.owns`: chunk k belongs to part
    k mod N), so a merge finds chunks exactly where it always did: within the part, its j-th
    chunk (k // N = j) belongs to rank j mod world.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """This process's place under `accelerate launch`/torchrun (one process otherwise)."""
        def read(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        world = max(1, read("WORLD_SIZE", 1))
        return cls(rank=min(read("RANK", 0), world - 1), world=world,
                   local_rank=read("LOCAL_RANK", 0))

    def owns(self, chunk: int, shard: _Owns | None = None) -> bool:
        """Whether this rank samples `chunk` (given the chunk is its `--shard` part's)."""
        parts = int(getattr(shard, "count", 1) or 1)
        return (chunk // parts) % self.world == self.rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@contextlib.contextmanager
def rank_device(ranks: Ranks) -> Iterator[None]:
    """Put this rank's engine on this rank's GPU while the block runs.

    torch's current device becomes `cuda:LOCAL_RANK` (the hf backend's `"cuda"` means it),
    and `CUDA_VISIBLE_DEVICES` names that GPU alone for processes started meanwhile (vLLM's
    engine core, which would otherwise take GPU 0 on every rank); the variable is put back
    afterwards, and this process's own CUDA context, made before, still sees every GPU for
    the training that follows. Nothing changes on one process or without CUDA.
    """
    if ranks.world == 1:
        yield
        return
    import torch

    if not torch.cuda.is_available():
        yield
        return
    torch.cuda.set_device(ranks.local_rank)  # initializes CUDA here with every GPU visible
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [d for d in (saved or "").split(",") if d.strip()] or [
        str(i) for i in range(torch.cuda.device_count())]
    os.environ["CUDA_VISIBLE_DEVICES"] = visible[ranks.local_rank % len(visible)]
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


@dataclass
class JobReport:
    """What a generation job found and did."""

    chunks: int = 0            # chunks in the input (known once the input was read through)
    done_before: int = 0       # chunks already on disk when the job started
    generated: int = 0         # chunks generated by this call
    not_owned: int = 0         # chunks left to other --shard parts
    prompts: int = 0           # prompts in the input
    prompts_generated: int = 0
    samples_generated: int = 0
    tokens_generated: int = 0
    records: int = 0           # records in the artifact now
    seconds: float = 0.0
    complete: bool = False     # the artifact was finalized (every chunk present)

    @property
    def prompts_per_second(self) -> float:
        return self.prompts_generated / self.seconds if self.seconds else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_generated / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["prompts_per_second"] = round(self.prompts_per_second, 3)
        out["tokens_per_second"] = round(self.tokens_per_second, 1)
        out["seconds"] = round(self.seconds, 2)
        return out


def chunked(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Consecutive lists of `size` records (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def chunk_sampling(sampling: Any, chunk: int) -> Any:
    """The sampling settings of chunk `chunk`: seed + chunk, so each chunk is reproducible
    on its own whichever run (or machine) generates it."""
    seed = getattr(sampling, "seed", None)
    if seed is None or not dataclasses.is_dataclass(sampling):
        return sampling
    return dataclasses.replace(sampling, seed=int(seed) + chunk)


def run_generation_job(
    records: Iterable[Record],
    out_dir: str | Path,
    *,
    generator: Any | Callable[[], Any],
    sampling: Any,
    prompt_of: Callable[[Record], Prompt],
    build: Callable[[Record, list[Any]], Iterable[Record]],
    chunk_size: int,
    shard: _Owns | None = None,
    merge: bool = False,
    card: DatasetCard | None = None,
    meta: dict[str, Any] | None = None,
    description: str = "generating",
    total: int | None = None,
    metrics: Any | None = None,
    ranks: Ranks | None = None,
    poll: float = 2.0,
) -> JobReport:
    """Sample completions for `records` into the sharded artifact `out_dir`; resumable.

    records:    prompt records in a deterministic order (the same on every run and machine).
    generator:  a `Generator`, or a zero-argument factory for one; a factory is called only
                if some chunk is left to do, and the generator it made is closed at the end.
    sampling:   a `Sampling`; chunk k uses seed `sampling.seed + k` (see `chunk_sampling`).
    prompt_of:  record -> what the generator is given (text, or chat messages).
    build:      (record, its completions) -> the output records for that prompt.
    chunk_size: prompts per chunk; chunk k is written as shard k.
    shard:      `ctx.shard`: do only the chunks it owns and do not finalize.
    merge:      generate nothing; only check that every chunk exists, then finalize
                (the run that joins the parts of a sharded generation).
    card, meta: written by `finalize` (meta also gets the job's counts).
    total:      number of records, for the progress bar (taken from len(records) if it has
                one); metrics: a `MetricsLogger`, given one line per generated chunk.
    ranks:      `Ranks.from_env()` in a launched stage: sample only this rank's chunks; rank
                0 waits (polling every `poll` s: generation outlasts collective timeouts)
                until the other ranks' chunks are on disk and finalizes. Other ranks return
                an unfinished report: wait for what you need next (`wait_complete`).

    Returns a `JobReport`; `report.complete` is False for a `--shard` part. Raises
    `MissingChunks` when a merge finds chunks no part produced.
    """
    out_dir = Path(out_dir)
    if ranks is not None and ranks.world > 1:
        return _run_on_ranks(records, out_dir, generator=generator, sampling=sampling,
                             prompt_of=prompt_of, build=build, chunk_size=chunk_size,
                             shard=shard, merge=merge, card=card, meta=meta,
                             description=description, total=total, metrics=metrics,
                             ranks=ranks, poll=poll)
    started = time.perf_counter()
    writer = ShardedJsonlWriter(out_dir)
    report = JobReport(done_before=len(writer.finished))
    if writer.manifest.complete and shard is None:
        report.chunks = report.done_before
        report.records = writer.manifest.records
        report.prompts = int(writer.manifest.meta.get("prompts", 0))
        report.complete = True
        return report
    missing = _sample_chunks(
        records, chunk_size, report, done=writer.finished, generator=generator,
        sampling=sampling, prompt_of=prompt_of, build=build, shard=shard, merge=merge,
        open_shard=writer.shard, description=description, total=total, metrics=metrics)
    report.seconds = time.perf_counter() - started
    report.records = writer.manifest.records
    if missing:
        raise MissingChunks(out_dir, missing, report.chunks)
    if shard is not None:
        return report
    writer.finalize(card=card, expected_shards=report.chunks,
                    meta={"chunk_size": chunk_size, "chunks": report.chunks,
                          "prompts": report.prompts, **(meta or {})})
    report.records = writer.manifest.records
    report.complete = True
    return report


def shards_on_disk(path: str | Path) -> set[int]:
    """Indices of the whole shard files in an artifact folder, whether or not a manifest
    lists them yet (each appears by an atomic rename, so a file present is whole)."""
    path = Path(path)
    if not path.is_dir():
        return set()
    return {int(m.group(1)) for p in path.iterdir() if (m := SHARD_PATTERN.match(p.name))}


def wait_complete(path: str | Path, poll: float = 5.0) -> None:
    """Block until the artifact at `path` is finalized (by rank 0 of a launched stage).

    Polls the manifest rather than joining a collective barrier: sampling takes hours,
    longer than a process group's timeout. A rank that fails ends the whole launch."""
    while not is_complete(path):
        time.sleep(poll)


def _sample_chunks(records: Iterable[Record], chunk_size: int, report: JobReport, *,
                   done: set[int], generator: Any, sampling: Any,
                   prompt_of: Callable[[Record], Prompt],
                   build: Callable[[Record, list[Any]], Iterable[Record]],
                   shard: _Owns | None, merge: bool,
                   open_shard: Callable[[int], contextlib.AbstractContextManager[ShardSink]],
                   description: str, total: int | None, metrics: Any | None,
                   ranks: Ranks | None = None) -> list[int]:
    """The chunk loop both job paths share: skip what is done or another part's or rank's,
    sample the rest chunk by chunk into `open_shard(k)`, count it into `report`, and return
    the chunks a merge found missing. `ranks` (several processes) adds this rank's device,
    its name on the progress bar and a `rank` on each metrics line."""
    if total is None and hasattr(records, "__len__"):
        total = len(records)  # type: ignore[arg-type]
    ranks = ranks or Ranks()
    several = ranks.world > 1
    label = f"{description} (rank {ranks.rank})" if several else description
    tags = {"rank": ranks.rank} if several else {}
    gen, owned = as_generator(generator)
    missing: list[int] = []
    try:
        with rank_device(ranks), ProgressBar(label, total,
                                             rates={"prompts": ",.2f", "tokens": ",.0f"}) as bar:
            for index, chunk in enumerate(chunked(records, chunk_size)):
                report.chunks = index + 1
                report.prompts += len(chunk)
                if index in done:
                    bar.skip(len(chunk))
                    continue
                if shard is not None and not shard.owns(index):
                    report.not_owned += 1
                    bar.skip(len(chunk))
                    continue
                if merge:
                    missing.append(index)
                    continue
                if not ranks.owns(index, shard):
                    bar.skip(len(chunk))
                    continue
                tick = time.perf_counter()
                outputs = gen.generate([prompt_of(r) for r in chunk],
                                       chunk_sampling(sampling, index))
                if len(outputs) != len(chunk):
                    raise RuntimeError(f"generator returned {len(outputs)} results for "
                                       f"{len(chunk)} prompts (chunk {index})")
                tokens = sum(int(getattr(c, "token_count", 0) or 0)
                             for outs in outputs for c in outs)
                samples = sum(len(outs) for outs in outputs)
                with open_shard(index) as sink:
                    for record, outs in zip(chunk, outputs, strict=True):
                        sink.write_many(build(record, list(outs)))
                seconds = time.perf_counter() - tick
                report.generated += 1
                report.prompts_generated += len(chunk)
                report.samples_generated += samples
                report.tokens_generated += tokens
                bar.advance(len(chunk), tokens=tokens)
                if metrics is not None:
                    metrics.log({"job": description, "chunk": index, **tags,
                                 "prompts": len(chunk), "samples": samples, "tokens": tokens,
                                 "seconds": round(seconds, 3),
                                 "tokens_per_second": round(tokens / seconds, 1) if seconds
                                 else None})
    finally:
        if owned:
            gen.close()
    return missing


def _run_on_ranks(records: Iterable[Record], out_dir: Path, *, generator: Any,
                  sampling: Any, prompt_of: Callable[[Record], Prompt],
                  build: Callable[[Record, list[Any]], Iterable[Record]], chunk_size: int,
                  shard: _Owns | None, merge: bool, card: DatasetCard | None,
                  meta: dict[str, Any] | None, description: str, total: int | None,
                  metrics: Any | None, ranks: Ranks, poll: float) -> JobReport:
    """`run_generation_job` on one rank of several (see there)."""
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_complete(out_dir) and shard is None:
        manifest = read_manifest(out_dir)
        return JobReport(chunks=len(manifest.shards), done_before=len(manifest.shards),
                         records=manifest.records, prompts=int(manifest.meta.get("prompts", 0)),
                         complete=True)
    if merge and not ranks.is_main:  # the merge only checks and finalizes: rank 0's job
        return JobReport()
    # No ShardedJsonlWriter here while others write: it would clear their temp files and
    # race on the manifest. Shards go straight to disk; rank 0's writer adopts them at the end.
    done = shards_on_disk(out_dir)
    report = JobReport(done_before=len(done))

    @contextlib.contextmanager
    def open_shard(index: int) -> Iterator[ShardSink]:
        with atomic_file(out_dir / shard_name(index)) as fh:
            yield ShardSink(fh)

    missing = _sample_chunks(
        records, chunk_size, report, done=done, generator=generator, sampling=sampling,
        prompt_of=prompt_of, build=build, shard=shard, merge=merge, open_shard=open_shard,
        description=description, total=total, metrics=metrics, ranks=ranks)
    report.seconds = time.perf_counter() - started
    if missing:
        raise MissingChunks(out_dir, missing, report.chunks)
    if shard is not None or not ranks.is_main:
        return report
    wanted = set(range(report.chunks))
    while not wanted <= shards_on_disk(out_dir):  # the other ranks' chunks
        time.sleep(poll)
    writer = ShardedJsonlWriter(out_dir)  # adopts every rank's shards; nobody writes now
    writer.finalize(card=card, expected_shards=report.chunks,
                    meta={"chunk_size": chunk_size, "chunks": report.chunks,
                          "prompts": report.prompts, "ranks": ranks.world, **(meta or {})})
    report.records = writer.manifest.records
    report.complete = True
    return report


# ---------------------------------------------------------------------------------------
# Shard-to-shard steps
# ---------------------------------------------------------------------------------------


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


def is_complete(path: str | Path) -> bool:
    """Whether an artifact folder exists and was finalized."""
    try:
        return read_manifest(path).complete
    except ArtifactError:
        return False


def stable_hash(*parts: Any) -> int:
    """A 64-bit hash of `parts` that is the same in every process (unlike `hash`)."""
    blob = "\x1f".join(map(str, parts)).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big")
