"""Resumable, shardable "generate into a sharded artifact" jobs.

Every step that samples at scale (rejection sampling, cold-start collection, the prompt
filter, evaluation) does the same thing: walk a deterministic list of prompt records in
chunks, sample completions for each chunk, turn (record, completions) into output records,
and write chunk k as shard k of a JSONL artifact. Doing it in one place gives every such
step:

- **Resume without duplicates.** A shard appears on disk whole or not at all
  (`ShardedJsonlWriter`), and shard k holds exactly chunk k, so a re-run skips the finished
  chunks and can neither lose nor repeat a record. Chunk k is sampled with seed
  `sampling.seed + k`, so on a backend that takes a seed per call (hf) a chunk re-done after
  a kill, or by another machine, is sampled exactly as it would have been (vLLM and servers
  are seeded once per engine: there ids and prompts match, sampled texts may not).
- **Many machines.** With `--shard i/N` a process does only the chunks it owns
  (chunk k belongs to part k mod N) and leaves the artifact unfinished; a later run without
  `--shard` finds every chunk done and finalizes, after checking none is missing
  (`Placement(merge=True)` makes that run generate nothing itself).
- **Every rank of a launched stage.** Under `accelerate launch` (RANK/WORLD_SIZE set;
  `Placement.of(ctx)` or `Placement.launched(ctx)` read them) each process loads its own
  engine on its own device (`rank_device`) and samples its own chunks: within a `--shard`
  part, the part's j-th chunk belongs to rank j mod WORLD_SIZE. Ranks write whole shard
  files side by side; rank 0 alone writes the manifest, once every chunk is on disk.
- **Flat memory.** Records are read as a stream and one chunk is held at a time; the model
  is loaded only if some chunk is actually left to do (`Engine` is a factory, not a model).
- **A progress bar** with prompts/s and tokens/s, and one metrics line per chunk.

A job is a value, `GenerationJob`: what to sample (records, prompt, sampling), with what
(`generator`: an `Engine`, or a generator shared between jobs), into what (the artifact,
its card and meta, how each prompt's completions become records) and which share of it
this process does (`Placement`). `run_job` runs one for a stage or an evaluation; the steps
after generation are in `r1pipe.generation.shard_steps`.

    from r1pipe.generation.jobs import GenerationJob, Placement, run_job
    from r1pipe.generation.lazy import Engine

    report = run_job(GenerationJob(
        prompts,                                  # dicts in a deterministic order
        ctx.data_dir("generated"),
        generator=Engine(model, ctx.pipeline.generation, seed=seed),
        sampling=Sampling(n=4, temperature=0.6, top_p=0.95, max_new_tokens=512, seed=seed),
        build=lambda r, outs: [{"id": f"{r['id']}-s{k}", "completion": c.text} for k, c in
                               enumerate(outs)],
        chunk_size=64, place=Placement.of(ctx), metrics=ctx.metrics))
    if not report.complete:      # a --shard part, or a rank other than 0
        return StageResult(...)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from r1pipe.artifacts import (
    SHARD_PATTERN,
    ArtifactError,
    DatasetCard,
    Manifest,
    ShardedJsonlWriter,
    ShardSink,
    atomic_file,
    read_manifest,
    shard_name,
)
from r1pipe.generation.lazy import as_generator
from r1pipe.progress import ProgressBar

if TYPE_CHECKING:
    from r1pipe.contract import StageContext

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
    chunk (k // N = j) belongs to engine j mod `engines`.

    An engine spans `tensor_parallel` GPUs (vLLM's `tensor_parallel_size`): ranks
    r..r+tp-1 (r a multiple of tp, all on one machine) form one engine, whose leader (rank
    r) loads it on the group's GPUs and samples its chunks while the others lend their GPU
    and wait. With tp 1, every rank is an engine of its own.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    tensor_parallel: int = 1

    @classmethod
    def from_env(cls, tensor_parallel: int = 1) -> Ranks:
        """This process's place under `accelerate launch`/torchrun (one process otherwise).
        Raises ValueError when engines of `tensor_parallel` GPUs cannot tile the ranks of a
        machine (`tensor_parallel_problem`)."""
        def read(name: str, default: int) -> int:
            try:
                return int(os.environ.get(name, default))
            except ValueError:
                return default

        world = max(1, read("WORLD_SIZE", 1))
        tp = max(1, tensor_parallel)
        if world > 1 and tp > 1:
            per_node = max(1, read("LOCAL_WORLD_SIZE", world))  # set by torchrun/accelerate
            problem = tensor_parallel_problem(tp, world, max(1, world // per_node))
            if problem:
                raise ValueError(problem)
        return cls(rank=min(read("RANK", 0), world - 1), world=world,
                   local_rank=read("LOCAL_RANK", 0), tensor_parallel=tp if world > 1 else 1)

    @property
    def engine(self) -> int:
        """The index of the engine (tensor-parallel group) this rank belongs to."""
        return self.rank // self.tensor_parallel

    @property
    def engines(self) -> int:
        """How many engines the ranks form (world / tensor_parallel)."""
        return max(1, self.world // self.tensor_parallel)

    @property
    def leads(self) -> bool:
        """Whether this rank runs its group's engine (with tp 1: every rank)."""
        return self.rank % self.tensor_parallel == 0

    @property
    def devices(self) -> range:
        """The local GPUs of this rank's engine: its group's consecutive local ranks."""
        first = self.local_rank - self.local_rank % self.tensor_parallel
        return range(first, first + self.tensor_parallel)

    def owns(self, chunk: int, shard: _Owns | None = None) -> bool:
        """Whether this rank samples `chunk` (given the chunk is its `--shard` part's): its
        engine's chunk, and this rank leads the engine."""
        parts = int(getattr(shard, "count", 1) or 1)
        return self.leads and (chunk // parts) % self.engines == self.engine

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def tensor_parallel_problem(tp: int, processes: int, machines: int = 1,
                            key: str = "generation.vllm.tensor_parallel_size") -> str | None:
    """Why engines of `tp` GPUs cannot be made from `processes` ranks (one GPU each) over
    `machines` machines, naming `key`; None when they can. An engine's GPUs must be on one
    machine (tensor parallelism needs NVLink-class bandwidth), and the groups must tile
    each machine's GPUs, or some rank would be left without an engine."""
    per_node = max(1, processes // max(1, machines))
    if tp > per_node:
        return (f"{key}: {tp} is more than the {per_node} GPU(s) of a machine (num_processes "
                f"{processes} over num_machines {machines}); one engine cannot span machines: "
                f"set it to at most {per_node}")
    if per_node % tp:
        return (f"{key}: {tp} does not divide the {per_node} GPU(s) of a machine (num_processes "
                f"{processes} over num_machines {machines}); ranks r..r+{tp - 1} form one "
                f"engine, so use a divisor of {per_node}")
    return None


@contextlib.contextmanager
def rank_device(ranks: Ranks) -> Iterator[None]:
    """Put this rank's engine on this rank's GPU (its group's GPUs, for an engine of
    tensor parallel size > 1) while the block runs.

    torch's current device becomes `cuda:LOCAL_RANK` (the hf backend's `"cuda"` means it),
    and `CUDA_VISIBLE_DEVICES` names the engine's GPUs alone for processes started meanwhile
    (vLLM's engine core and workers, which would otherwise take GPU 0 on every rank); the
    variable is put back
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
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(visible[d % len(visible)]
                                                  for d in ranks.devices)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved


@dataclass(frozen=True)
class Placement:
    """Which share of a job this process does: its `--shard` part (`shard`), whether it is
    the run that joins the parts (`merge`: check every chunk is there and finalize, generate
    nothing), and its rank among the processes of a launched stage (`ranks`; rank 0 polls
    every `poll` s for the others' chunks before it finalizes).

    One value for all three because they are decided together, once per stage run, and
    every job of that run shares them (`Placement.of(ctx)`). The ranks are grouped into
    engines of the pipeline's tensor parallel size (`tensor_parallel_of`)."""

    shard: _Owns | None = None
    merge: bool = False
    ranks: Ranks = Ranks()
    poll: float = 2.0

    @classmethod
    def of(cls, ctx: StageContext[Any]) -> Placement:
        """The share of a stage's process: `--shard i/N` (or the YAML's `shard:`), this rank,
        and merge when a run without `--shard` follows one that left the stage `partial`
        (the sharded parts wrote every chunk; this run only joins them)."""
        shard = ctx.shard
        return cls(shard=shard, merge=shard is None and ctx.resume.previous_status == "partial",
                   ranks=Ranks.from_env(tensor_parallel_of(ctx.pipeline.generation)))

    @classmethod
    def launched(cls, ctx: StageContext[Any]) -> Placement:
        """Every rank of a launched stage, no `--shard` part: for steps the shards of a
        stage do not split (the prompt filter before GRPO, the general reward after it)."""
        return cls(ranks=Ranks.from_env(tensor_parallel_of(ctx.pipeline.generation)))


def tensor_parallel_of(generation: Any) -> int:
    """GPUs one engine spans: `generation.vllm.tensor_parallel_size` where vLLM samples,
    else 1 (the hf backend puts a model on one device; a server is not ours to split)."""
    from r1pipe.generation.factory import resolved_backend

    if resolved_backend(str(getattr(generation, "backend", "hf"))) != "vllm":
        return 1
    tp = (getattr(generation, "vllm", None) or {}).get("tensor_parallel_size") or 1
    return tp if isinstance(tp, int) and tp > 1 else 1


def prompt_field(record: Record) -> Prompt:
    """A record's rendered `prompt`: what most jobs give the generator."""
    return record["prompt"]


@dataclass(frozen=True)
class GenerationJob:
    """What one generation job is, as a value the stages build and `run_job` runs.

    records:    prompt records in a deterministic order (the same on every run and machine).
    out_dir:    the sharded artifact written; chunk k (`chunk_size` prompts) is shard k.
    generator:  an `Engine` (or any zero-argument factory of a `Generator`), made only if
                some chunk is left to do and closed at the end; or a `Generator` /
                `LazyGenerator` shared with other jobs, which its owner closes.
    sampling:   a `Sampling`; chunk k uses seed `sampling.seed + k` (see `chunk_sampling`).
    build:      (record, its completions) -> the output records for that prompt.
    prompt_of:  record -> what the generator is given (text, or chat messages).
    card, meta: written by `finalize` (meta also gets the job's counts).
    total:      number of records, for the progress bar (taken from len(records) if it has
                one); description names the job on the bar and in `metrics`, a
                `MetricsLogger` given one line per generated chunk.
    place:      this process's share (`Placement`): `--shard` part, merge run, rank.
    """

    records: Iterable[Record]
    out_dir: Path
    generator: Any
    sampling: Any
    build: Callable[[Record, list[Any]], Iterable[Record]]
    chunk_size: int
    prompt_of: Callable[[Record], Prompt] = prompt_field
    description: str = "generating"
    card: DatasetCard | None = None
    meta: Mapping[str, Any] | None = None
    total: int | None = None
    place: Placement = Placement()
    metrics: Any | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))  # a str is welcome too

    def finalize_meta(self, chunks: int, prompts: int, **extra: Any) -> dict[str, Any]:
        """The manifest meta of the finished artifact: the chunking a resume must match,
        the counts, the caller's meta."""
        return {"chunk_size": self.chunk_size, "chunks": chunks, "prompts": prompts, **extra,
                **(self.meta or {})}


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

    @classmethod
    def finished(cls, manifest: Manifest) -> JobReport:
        """The report of an artifact finalized before (nothing generated now), read from its
        manifest, so a resumed stage knows its counts without loading data or a model."""
        shards = len(manifest.shards)
        return cls(chunks=shards, done_before=shards, records=manifest.records,
                   prompts=int(manifest.meta.get("prompts", 0)), complete=True)

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


def run_job(job: GenerationJob, *, wait: bool = False) -> JobReport:
    """Run `job` the way every stage (and evaluation) does; the one helper they share.

    A merge that finds chunks no `--shard` part produced fails the stage (`StageFailed`),
    naming the parts to run again, or offering to generate them here. `wait=True`, for a
    step whose artifact every rank reads next, makes the ranks other than 0 wait until rank
    0 finalized it (a `--shard` part never waits: a later run merges).

    Returns a `JobReport`; `report.complete` is False for a `--shard` part and, unless
    `wait`, for the ranks other than 0.
    """
    from r1pipe.contract import StageFailed

    try:
        report = run_generation_job(job)
    except MissingChunks as exc:
        raise StageFailed(f"{exc}, or run this command once more to generate them on this "
                          "machine") from None
    if wait and not report.complete and job.place.shard is None:
        wait_complete(job.out_dir)
    return report


def run_generation_job(job: GenerationJob) -> JobReport:
    """Sample completions for `job.records` into the sharded artifact `job.out_dir`;
    resumable (see the module's docstring and `GenerationJob`).

    With a `--shard` part (`job.place.shard`) only the chunks it owns are done and the
    artifact is not finalized; a merge (`place.merge`) generates nothing, only checks that
    every chunk exists, then finalizes. On several ranks each samples only its own chunks;
    rank 0 waits (polling: generation outlasts collective timeouts) until the other ranks'
    chunks are on disk and finalizes, the others return an unfinished report: wait for
    what you need next (`wait_complete`).

    Returns a `JobReport`; `report.complete` is False for a `--shard` part. Raises
    `MissingChunks` when a merge finds chunks no part produced.
    """
    if job.place.ranks.world > 1:
        return _run_on_ranks(job)
    shard = job.place.shard
    started = time.perf_counter()
    writer = ShardedJsonlWriter(job.out_dir)
    if writer.manifest.complete and shard is None:
        return JobReport.finished(writer.manifest)
    report = JobReport(done_before=len(writer.finished))
    missing = _sample_chunks(job, report, writer.finished, writer.shard)
    report.seconds = time.perf_counter() - started
    report.records = writer.manifest.records
    if missing:
        raise MissingChunks(job.out_dir, missing, report.chunks)
    if shard is not None:
        return report
    writer.finalize(card=job.card, expected_shards=report.chunks,
                    meta=job.finalize_meta(report.chunks, report.prompts))
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


def _sample_chunks(job: GenerationJob, report: JobReport, done: set[int],
                   open_shard: Callable[[int], contextlib.AbstractContextManager[ShardSink]]
                   ) -> list[int]:
    """The chunk loop both job paths share: skip what is done or another part's or rank's,
    sample the rest chunk by chunk into `open_shard(k)`, count it into `report`, and return
    the chunks a merge found missing. Several ranks add this rank's device, its name on the
    progress bar and a `rank` on each metrics line."""
    records, total = job.records, job.total
    if total is None and hasattr(records, "__len__"):
        total = len(records)  # type: ignore[arg-type]
    shard, ranks = job.place.shard, job.place.ranks
    several = ranks.world > 1
    label = f"{job.description} (rank {ranks.rank})" if several else job.description
    tags = {"rank": ranks.rank} if several else {}
    gen, owned = as_generator(job.generator)
    missing: list[int] = []
    try:
        with rank_device(ranks), ProgressBar(label, total,
                                             rates={"prompts": ",.2f", "tokens": ",.0f"}) as bar:
            for index, chunk in enumerate(chunked(records, job.chunk_size)):
                report.chunks = index + 1
                report.prompts += len(chunk)
                if index in done:
                    bar.skip(len(chunk))
                    continue
                if shard is not None and not shard.owns(index):
                    report.not_owned += 1
                    bar.skip(len(chunk))
                    continue
                if job.place.merge:
                    missing.append(index)
                    continue
                if not ranks.owns(index, shard):
                    bar.skip(len(chunk))
                    continue
                tick = time.perf_counter()
                outputs = gen.generate([job.prompt_of(r) for r in chunk],
                                       chunk_sampling(job.sampling, index))
                if len(outputs) != len(chunk):
                    raise RuntimeError(f"generator returned {len(outputs)} results for "
                                       f"{len(chunk)} prompts (chunk {index})")
                tokens = sum(int(getattr(c, "token_count", 0) or 0)
                             for outs in outputs for c in outs)
                samples = sum(len(outs) for outs in outputs)
                with open_shard(index) as sink:
                    for record, outs in zip(chunk, outputs, strict=True):
                        sink.write_many(job.build(record, list(outs)))
                seconds = time.perf_counter() - tick
                report.generated += 1
                report.prompts_generated += len(chunk)
                report.samples_generated += samples
                report.tokens_generated += tokens
                bar.advance(len(chunk), tokens=tokens)
                if job.metrics is not None:
                    job.metrics.log({"job": job.description, "chunk": index, **tags,
                                     "prompts": len(chunk), "samples": samples,
                                     "tokens": tokens, "seconds": round(seconds, 3),
                                     "tokens_per_second": round(tokens / seconds, 1)
                                     if seconds else None})
    finally:
        if owned:
            gen.close()
    return missing


def _run_on_ranks(job: GenerationJob) -> JobReport:
    """`run_generation_job` on one rank of several (see there)."""
    started = time.perf_counter()
    out_dir, place = job.out_dir, job.place
    out_dir.mkdir(parents=True, exist_ok=True)
    if is_complete(out_dir) and place.shard is None:
        return JobReport.finished(read_manifest(out_dir))
    if place.merge and not place.ranks.is_main:  # the merge only checks and finalizes
        return JobReport()
    if not place.ranks.leads:  # its GPU serves the group leader's engine; rank 0 always leads
        return JobReport()
    # No ShardedJsonlWriter here while others write: it would clear their temp files and
    # race on the manifest. Shards go straight to disk; rank 0's writer adopts them at the end.
    done = shards_on_disk(out_dir)
    report = JobReport(done_before=len(done))

    @contextlib.contextmanager
    def open_shard(index: int) -> Iterator[ShardSink]:
        with atomic_file(out_dir / shard_name(index)) as fh:
            yield ShardSink(fh)

    missing = _sample_chunks(job, report, done, open_shard)
    report.seconds = time.perf_counter() - started
    if missing:
        raise MissingChunks(out_dir, missing, report.chunks)
    if place.shard is not None or not place.ranks.is_main:
        return report
    wanted = set(range(report.chunks))
    while not wanted <= shards_on_disk(out_dir):  # the other ranks' chunks
        time.sleep(place.poll)
    writer = ShardedJsonlWriter(out_dir)  # adopts every rank's shards; nobody writes now
    writer.finalize(card=job.card, expected_shards=report.chunks,
                    meta=job.finalize_meta(report.chunks, report.prompts,
                                           ranks=place.ranks.world, **_tp_meta(place.ranks)))
    report.records = writer.manifest.records
    report.complete = True
    return report


def _tp_meta(ranks: Ranks) -> dict[str, int]:
    """The engine size in the manifest, only where it is not 1 (manifests stay as they were)."""
    return {"tensor_parallel": ranks.tensor_parallel} if ranks.tensor_parallel > 1 else {}


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
