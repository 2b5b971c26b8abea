"""Run-directory layout, atomic writes, and sharded JSONL artifacts with manifests and cards.

Shards are named `train-NNNNN.jsonl`: `datasets` then reads the folder as one "train"
split and ignores `manifest.json` and `README.md` beside them.

Why shards: a stage killed at any moment must resume without losing or duplicating a record.
A shard is written to a hidden temp file, fsynced and renamed into place, so a reader (or
`datasets.load_dataset("json", data_dir=...)`) only ever sees whole shards. Producers number
shards by their input chunk, so a re-run knows exactly which chunks are done. The manifest
records each shard's count and sha256; a shard that was renamed but not yet entered in the
manifest (a kill between the two steps) is adopted on the next open, because a visible shard
is by construction whole.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from r1pipe.contract import StageContext

MANIFEST = "manifest.json"
CARD = "README.md"
SHARD_PATTERN = re.compile(r"^train-(\d{5})\.jsonl$")
FORMAT = "r1pipe-jsonl/1"

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------
# Atomic files and fingerprints
# ---------------------------------------------------------------------------------------


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the directory that holds it (POSIX)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TEMP_OWNER = re.compile(r"\.w(\d+)@([A-Za-z0-9._-]+)@(\d*)\.[^.]+\.tmp$")


@functools.lru_cache(maxsize=1)
def _host_tag() -> tuple[str, str]:
    """(this machine's name, this process's pid namespace) as they go into temp names."""
    import socket

    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"
    try:  # containers on one host share its name but not its pids
        namespace = re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    except OSError:
        namespace = ""
    return host, namespace


def temp_owner() -> str:
    """Who writes a temp file, in its name: `w<pid>@<host>@<pid namespace>`."""
    host, namespace = _host_tag()
    return f"w{os.getpid()}@{host}@{namespace}"


def temp_file_is_orphan(path: Path) -> bool:
    """Whether the temp file `path` was left by a dead process of this machine, so that no
    writer can still rename it into place. Temp files of another machine (a `--shard` part
    on a shared run dir), of a live process, or without an owner in their name never are."""
    match = _TEMP_OWNER.search(path.name)
    if match is None or (match.group(2), match.group(3)) != _host_tag():
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def temp_file(directory: str | Path, name: str) -> tuple[int, str]:
    """A hidden temp file beside `name` for an atomic write, with the permissions a plain
    `open()` would give (mkstemp's 0600 would make a shared run dir unreadable to others).

    Its name carries its writer (`temp_owner`), so a writer opening the folder later removes
    only what a dead process of this machine left (`temp_file_is_orphan`), never the file
    another machine's `--shard` part is writing at that moment."""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{temp_owner()}.", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
    return fd, tmp


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file that appears at `path` whole or not at all.

    Written to a hidden temp file beside `path`, fsynced and renamed into place when the
    block ends; if the block raises, the temp file is removed and `path` is left as it was.
    Every file r1pipe must never show half-written (shards, manifests, state) goes through
    here. The folder must exist.
    """
    path = Path(path)
    fd, tmp = temp_file(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if exc.filename is None and exc.errno is not None:
            # a failed write() names no file (a full disk): say which file it was
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)


def remove_tree(path: str | Path) -> bool:
    """Delete the folder `path`, so that no half-deleted folder is ever visible there.

    The folder is first renamed (atomic) to a hidden `.<name>.removing-<random>` beside it,
    then deleted: a reader, or a run resuming after a kill during the delete, finds the
    folder whole or absent, never with some of its files gone. Returns whether there was
    one to remove.
    """
    path = Path(path)
    if not path.exists():
        return False
    trash = path.with_name(f".{path.name}.removing-{uuid.uuid4().hex[:8]}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def fingerprint(obj: Any) -> str:
    """Stable sha256 of a JSON-able object (keys sorted), used to decide what must re-run."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read `chunk` bytes at a time (flat memory for any size).

    Shards are checked with it before they are read; `models.file_sha256` remembers it per
    file state for model files."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Run directory layout
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunLayout:
    """Where everything of one run lives (docs/architecture.md, "The run directory")."""

    root: Path

    @property
    def pipeline_yaml(self) -> Path:
        return self.root / "pipeline.yaml"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def imports(self) -> Path:
        """Converted inputs (GGUF → safetensors) shared by every stage of the run."""
        return self.root / "_imports"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def stage_json(self, stage: str) -> Path:
        return self.stage_dir(stage) / "stage.json"

    def model_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "model"

    def checkpoints_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "checkpoints"

    def data_dir(self, stage: str, artifact: str) -> Path:
        return self.stage_dir(stage) / "data" / artifact

    def metrics_file(self, stage: str) -> Path:
        return self.stage_dir(stage) / "metrics.jsonl"

    def eval_dir(self, stage: str) -> Path:
        return self.stage_dir(stage) / "eval"


# ---------------------------------------------------------------------------------------
# Sharded JSONL
# ---------------------------------------------------------------------------------------


class ArtifactError(Exception):
    """An artifact on disk is missing, incomplete or does not match its manifest."""


def shard_name(index: int) -> str:
    return f"train-{index:05d}.jsonl"


@dataclass
class ShardInfo:
    records: int
    sha256: str
    bytes: int


@dataclass
class Manifest:
    shards: dict[str, ShardInfo] = field(default_factory=dict)
    complete: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(s.records for s in self.shards.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "complete": self.complete,
            "records": self.records,
            "shards": {k: vars(v) for k, v in sorted(self.shards.items())},
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Manifest:
        return cls(
            shards={k: ShardInfo(**v) for k, v in obj.get("shards", {}).items()},
            complete=bool(obj.get("complete", False)),
            meta=dict(obj.get("meta", {})),
        )


class ShardSink:
    """Writes records as JSON lines to an open shard file, counting and hashing them as it
    goes, so the manifest entry (`info`) needs no second read of the file.

    `ShardedJsonlWriter.shard` gives one; a worker process writing a shard for a parent's
    writer to adopt (`generation.shard_steps.map_shards`) makes its own over `atomic_file`.
    """

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self._digest = hashlib.sha256()
        self.records = 0
        self.bytes = 0

    def write(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        self._fh.write(line)
        self._digest.update(line)
        self.records += 1
        self.bytes += len(line)

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self.write(record)

    def info(self) -> ShardInfo:
        """The manifest entry of what was written so far."""
        return ShardInfo(self.records, self._digest.hexdigest(), self.bytes)


class ShardedJsonlWriter:
    """Writes an artifact folder shard by shard; safe to kill at any instant and re-open.

    >>> w = ShardedJsonlWriter(path)
    >>> for i, chunk in enumerate(chunks):
    ...     if i in w.finished: continue          # resume: skip done work
    ...     with w.shard(i) as sink:
    ...         sink.write_many(process(chunk))
    >>> w.finalize(card=...)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._clean_temp_files()
        self.manifest = self._load_and_adopt()

    @property
    def finished(self) -> set[int]:
        """Indices of the shards already on disk (whole, by construction)."""
        return {int(SHARD_PATTERN.match(name).group(1)) for name in self.manifest.shards}

    @contextlib.contextmanager
    def shard(self, index: int) -> Iterator[ShardSink]:
        """Collect one shard; it appears on disk only if the block finishes without error."""
        if index in self.finished:
            raise ArtifactError(f"{self.path}: shard {index} is already written")
        name = shard_name(index)
        with atomic_file(self.path / name) as fh:
            sink = ShardSink(fh)
            yield sink
        self.manifest.shards[name] = sink.info()
        self._save()

    def write_records(self, records: Iterable[dict[str, Any]], shard_size: int = 10_000) -> int:
        """Write a stream as consecutive shards (for producers with no natural chunks).

        Resumable only if `records` is deterministic: shards already on disk are skipped by
        count, so the same stream re-run continues where it stopped.
        """
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        done = self.finished
        index, buffered, total = 0, [], 0
        for record in records:
            buffered.append(record)
            if len(buffered) == shard_size:
                total += self._flush_buffer(index, buffered, done)
                index, buffered = index + 1, []
        if buffered:
            total += self._flush_buffer(index, buffered, done)
        return total

    def _flush_buffer(self, index: int, buffered: list[dict[str, Any]], done: set[int]) -> int:
        if index not in done:
            with self.shard(index) as sink:
                sink.write_many(buffered)
        return len(buffered)

    def finalize(self, *, card: DatasetCard | None = None, meta: dict[str, Any] | None = None,
                 expected_shards: int | None = None) -> Manifest:
        """Mark the artifact complete (after checking no shard is missing) and write its card."""
        if expected_shards is not None:
            missing = sorted(set(range(expected_shards)) - self.finished)
            if missing:
                raise ArtifactError(f"{self.path}: shards missing: {missing[:10]}"
                                    f"{' ...' if len(missing) > 10 else ''}")
        if meta:
            self.manifest.meta.update(meta)
        self.manifest.complete = True
        if card is not None:
            features = shard_features(self.path, sorted(self.manifest.shards))
            atomic_write(self.path / CARD, card.render(self.manifest, features))
        self._save()
        return self.manifest

    # -- internals ---------------------------------------------------------------------

    def _clean_temp_files(self) -> None:
        """Remove the temp shards a killed writer of this machine left (see `temp_file`):
        unlaunched `--shard` parts share the folder, and removing every `.train-*.tmp`
        would delete the shard another part is about to rename into place."""
        for tmp in self.path.glob(".train-*.tmp"):
            if temp_file_is_orphan(tmp):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()

    def _load_and_adopt(self) -> Manifest:
        raw = read_json(self.path / MANIFEST)
        manifest = Manifest.from_json(raw) if raw else Manifest()
        on_disk = {p.name for p in self.path.iterdir() if SHARD_PATTERN.match(p.name)}
        changed = False
        for name in sorted(on_disk - set(manifest.shards)):
            manifest.shards[name] = _scan_shard(self.path / name)
            changed = True
        for name in sorted(set(manifest.shards) - on_disk):
            del manifest.shards[name]  # shard removed by hand: it will be produced again
            changed = True
        if changed:
            manifest.complete = False
        self.manifest = manifest
        if changed or raw is None:
            self._save()
        return manifest

    def _save(self) -> None:
        atomic_write_json(self.path / MANIFEST, self.manifest.to_json())


def _scan_shard(path: Path) -> ShardInfo:
    records = 0
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for line in fh:
            digest.update(line)
            size += len(line)
            records += 1
    return ShardInfo(records, digest.hexdigest(), size)


def read_manifest(path: str | Path) -> Manifest:
    raw = read_json(Path(path) / MANIFEST)
    if raw is None:
        raise ArtifactError(f"{path}: no {MANIFEST}; is this an r1pipe artifact folder?")
    return Manifest.from_json(raw)


def iter_records(path: str | Path, *, verify: bool = True,
                 require_complete: bool = True) -> Iterator[dict[str, Any]]:
    """Stream the records of an artifact, shard by shard, checking each against the manifest.

    A shard is hashed before any of its records is handed out, so a consumer never acts on
    data that later turns out to be corrupt. Memory stays at one line.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if require_complete and not manifest.complete:
        raise ArtifactError(f"{path}: artifact is not complete (its stage did not finish); "
                            "run the stage that writes it")
    for name, info in sorted(manifest.shards.items()):
        shard = path / name
        if not shard.exists():
            raise ArtifactError(f"{shard}: listed in {MANIFEST} but missing")
        yield from read_shard(shard, info.sha256 if verify else None)


def read_shard(shard: Path, sha256: str | None) -> Iterator[dict[str, Any]]:
    """The records of one shard file, hashed first against `sha256` (unless None), so no
    record of a file changed after writing is ever handed out."""
    if sha256 is not None:
        actual = sha256_file(shard)
        if actual != sha256:
            raise ArtifactError(f"{shard}: sha256 {actual[:12]}… does not match the manifest "
                                f"({sha256[:12]}…); the file was changed after writing")
    with open(shard, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{shard}:{lineno}: not valid JSON ({exc.msg})") from None


def count_records(path: str | Path) -> int:
    return read_manifest(path).records


# ---------------------------------------------------------------------------------------
# Dataset card
# ---------------------------------------------------------------------------------------


@dataclass
class DatasetCard:
    """README.md with the YAML header the Hub and `datasets` read (`configs:` → data files)."""

    title: str
    description: str
    stage: str | None = None
    pipeline: str | None = None
    fingerprint: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)

    def render(self, manifest: Manifest, features: list[dict[str, Any]] | None = None) -> str:
        header: dict[str, Any] = {
            "configs": [{"config_name": "default",
                         "data_files": [{"split": "train", "path": "train-*.jsonl"}]}],
            "tags": ["r1pipe", *([self.stage] if self.stage else []), *self.tags],
            "size_categories": [_size_category(manifest.records)],
        }
        if features:
            header["dataset_info"] = {"features": features}
        lines = ["---", _yaml_dump(header).rstrip(), "---", "", f"# {self.title}", "",
                 self.description, ""]
        lines += ["| | |", "|---|---|", f"| records | {manifest.records} |",
                  f"| shards | {len(manifest.shards)} |"]
        for label, value in (("pipeline", self.pipeline), ("stage", self.stage),
                             ("config fingerprint", self.fingerprint)):
            if value:
                lines.append(f"| {label} | `{value}` |")
        for label, value in self.stats.items():
            lines.append(f"| {label} | {value} |")
        if self.fields:
            lines += ["", "## Fields", ""]
            lines += [f"- `{name}`: {desc}" for name, desc in self.fields.items()]
        lines += ["", "## Load", "", "```python", "from datasets import load_dataset",
                  'ds = load_dataset("<this folder or its Hub id>", split="train")', "```",
                  "", "The column types come from this card (`dataset_info`), unified over "
                  "every shard. `load_dataset(\"json\", data_dir=...)` reads the shards too, but "
                  "infers the types from the first shard alone.",
                  "", f"Shards are listed with their sha256 in `{MANIFEST}`.", ""]
        from r1pipe.secrets import scrub

        return scrub("\n".join(lines))


def stage_card(ctx: StageContext[Any], title: str, description: str, *,
               fields: Mapping[str, str] | None = None, stats: Mapping[str, Any] | None = None,
               tags: Sequence[str] = ()) -> DatasetCard:
    """The card of a data artifact a stage writes: titled `<pipeline name>: <title>`, and
    naming the pipeline, the stage and its config fingerprint, so whoever finds the folder (or
    its Hub copy) can tell which run and settings made it. Only what differs per artifact is
    given; pass the card to `ShardedJsonlWriter.finalize` (or a job that finalizes)."""
    return DatasetCard(title=f"{ctx.pipeline.name}: {title}", description=description,
                       stage=ctx.name, pipeline=ctx.pipeline.name, fingerprint=ctx.fingerprint,
                       fields=dict(fields or {}), stats=dict(stats or {}), tags=list(tags))


def shard_features(folder: Path, shards: list[str]) -> list[dict[str, Any]] | None:
    """The artifact's columns and types unified over all its shards, as the card's
    `dataset_info.features` (None if they cannot be inferred).

    `datasets` infers JSON column types from the first file alone, so a column that is null all
    through the first shard (a countdown-only field, `removed_by` in a shard where every sample
    was kept) would fail to load from the later shards. With the types in the card,
    `load_dataset(<folder or Hub id>)` casts every shard to them. One shard is read at a time.
    """
    import pyarrow as pa
    import pyarrow.json as paj

    try:
        schemas = [paj.read_json(folder / name).schema for name in shards
                   if (folder / name).stat().st_size]
        if not schemas:
            return None
        from datasets import Features

        unified = pa.unify_schemas(schemas, promote_options="permissive")
        return Features.from_arrow_schema(unified)._to_yaml_list()
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        logger.warning("%s: column types not written to the card (%s)", folder, exc)
        return None


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                         (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "1M<n<10M"


def _yaml_dump(obj: Any) -> str:
    import io

    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(obj, buf)
    return buf.getvalue()
