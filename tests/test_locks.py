"""One lock protocol for normal, sharded and evaluation runs: a sharded run and a normal run
of the same run dir never write together, shards of one stage do, and every refusal names the
holder (a refused contender never erases the holder's line)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r1pipe.artifacts import RunLayout
from r1pipe.contract import Shard
from r1pipe.state import RunLocked, run_lock


def test_sharded_and_normal_runs_exclude_each_other(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    me = f"pid {os.getpid()}"
    with run_lock(layout, Shard(0, 2)):
        with run_lock(layout, Shard(1, 2)):  # the other machine's part runs beside it
            for _ in range(2):  # the second refusal still names both holders
                with pytest.raises(RunLocked) as err, run_lock(layout):
                    pass
                assert f"{me} (shard 0/2)" in str(err.value)
                assert f"{me} (shard 1/2)" in str(err.value)
        with pytest.raises(RunLocked, match=r"shard 0/2"), run_lock(layout, Shard(0, 2)):
            pass  # the same part twice: refused
    with run_lock(layout):
        for _ in range(2):
            with pytest.raises(RunLocked) as err, run_lock(layout, Shard(0, 2)):
                pass
            assert me in str(err.value) and "unknown" not in str(err.value)
    with run_lock(layout):  # released: free again, for either kind
        pass
    with run_lock(layout, Shard(1, 2)):
        pass


def test_engine_refuses_a_normal_run_beside_a_sharded_one(tmp_path: Path) -> None:
    from r1pipe.config import load
    from r1pipe.pipeline import execute, plan

    path = tmp_path / "p.yaml"
    path.write_text(f"name: locks\nrun_dir: {tmp_path / 'run'}\nbase_model: my-org/tiny\n"
                    "stage_modules: [tests.stage_squares]\nstages:\n  squares: {count: 20}\n")
    the_plan = plan(load(path))
    with run_lock(the_plan.layout, Shard(0, 2)), pytest.raises(RunLocked, match="shard 0/2"):
        execute(the_plan)
    assert not (tmp_path / "run" / "squares").exists()


def test_lock_wait_gives_up_after_the_wait_naming_the_holder(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    with run_lock(layout), pytest.raises(RunLocked, match=f"pid {os.getpid()}"), \
            run_lock(layout, wait=1.5):
        pass


def test_lock_wait_takes_the_lock_once_the_holder_is_done(tmp_path: Path) -> None:
    """What an evaluation does when `r1pipe eval` and `r1pipe run` meet on one model: the
    later one waits for the earlier one (and then finds its results) instead of failing."""
    import threading
    import time

    layout = RunLayout(tmp_path / "eval")
    held = threading.Event()

    def hold() -> None:
        with run_lock(layout):
            held.set()
            time.sleep(1.5)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    with run_lock(layout, wait=60):
        pass  # got it after the holder let go
    holder.join()
