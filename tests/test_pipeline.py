"""The engine: plan, skip, resume after SIGKILL, stale downstream, locks, CLI, launch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe.artifacts import iter_records
from r1pipe.config import load
from r1pipe.pipeline import execute, plan
from r1pipe.state import RunLocked, read_state, run_lock
from tests.helpers import REPO, cli_env, kill_cli_when, write_pipeline

STAGES = """\
stages:
  squares:
    count: {count}
    shard_size: 10
    delay: {sq_delay}
  steps:
    data: squares:squares
    steps: 8
    save_every: 2
    delay: {st_delay}
"""


def _config(tmp_path: Path, *, count: int = 60, sq_delay: float = 0.0,
            st_delay: float = 0.0, name: str = "p.yaml") -> Path:
    return write_pipeline(tmp_path, "enginetest",
                          STAGES.format(count=count, sq_delay=sq_delay, st_delay=st_delay),
                          filename=name, base_model="my-org/tiny-model",
                          stage_modules=["tests.stage_squares", "tests.stage_steps"])


def _cli(*args: str, cwd: Path, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=cwd,
                          env=cli_env(COLUMNS="200"),
                          capture_output=True, text=True, check=check, timeout=600)


def _actions(cfg_path: Path, **kw) -> dict[str, str]:
    return {s.name: s.action for s in plan(load(cfg_path), **kw).stages}


def test_run_then_skip(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    assert _actions(cfg_path) == {"squares": "run", "steps": "run"}
    results = execute(plan(load(cfg_path)))
    assert results["squares"].summary == {"records": 60}
    expected_total = sum(i * i for i in range(60))
    assert results["steps"].summary["total"] == expected_total
    run = tmp_path / "run"
    state = read_state_at(run, "steps")
    assert state["status"] == "finished" and state["versions"]["r1pipe"]
    assert state["inputs"]["data"].endswith("squares/data/squares")
    assert (run / "pipeline.yaml").exists()
    assert _actions(cfg_path) == {"squares": "skip", "steps": "skip"}


def read_state_at(run: Path, stage: str) -> dict:
    return json.loads((run / stage / "stage.json").read_text())


def test_upstream_change_marks_downstream_stale(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    execute(plan(load(cfg_path)))
    changed = _config(tmp_path, count=70, name="changed.yaml")
    the_plan = plan(load(changed))
    assert the_plan["squares"].action == "stale"
    assert "config changed: count" in the_plan["squares"].reason
    assert the_plan["steps"].action == "stale"
    execute(the_plan)
    assert read_state_at(tmp_path / "run", "steps")["summary"]["total"] == sum(
        i * i for i in range(70))
    assert _actions(changed) == {"squares": "skip", "steps": "skip"}


def test_rerun_of_upstream_alone_makes_downstream_stale(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    execute(plan(load(cfg_path)))
    execute(plan(load(cfg_path), only=["squares"], force=True))
    the_plan = plan(load(cfg_path))
    assert the_plan["squares"].action == "skip"
    assert the_plan["steps"].action == "stale"


def test_only_and_from_and_force(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    assert _actions(cfg_path, only=["squares"]) == {"squares": "run", "steps": "not selected"}
    execute(plan(load(cfg_path)))
    assert _actions(cfg_path, start="steps") == {"squares": "not selected", "steps": "stale"}
    assert _actions(cfg_path, only=["squares"], force=True) == {
        "squares": "stale", "steps": "not selected"}


def test_only_needs_finished_inputs(tmp_path: Path) -> None:
    from r1pipe.contract import StageFailed

    cfg_path = _config(tmp_path)
    with pytest.raises(StageFailed, match="has not finished"):
        execute(plan(load(cfg_path), only=["steps"]))
    assert read_state(plan(load(cfg_path)).layout, "steps")["status"] == "failed"


def test_external_input_replaces_upstream(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    execute(plan(load(cfg_path), only=["squares"]))
    data = str(tmp_path / "run" / "squares" / "data" / "squares")
    results = execute(plan(load(cfg_path), only=["steps"]), external={"data": data,
                                                                       "from": "./elsewhere"})
    assert results["steps"].summary["total"] == sum(i * i for i in range(60))
    assert json.loads((tmp_path / "run/steps/model/result.json").read_text())["from"] == \
        "./elsewhere"


def test_lock_names_the_holder(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path))
    the_plan = plan(cfg)
    script = ("import sys, time; from r1pipe.artifacts import RunLayout; "
              "from r1pipe.state import run_lock\n"
              f"with run_lock(RunLayout(__import__('pathlib').Path({str(the_plan.layout.root)!r}))):\n"
              "    print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLocked, match=f"pid {holder.pid}"), run_lock(the_plan.layout):
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(the_plan.layout):  # released by the kernel when the holder died
        pass


def test_sigkill_during_generation_then_resume(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, count=200, sq_delay=0.01)
    data = tmp_path / "run/squares/data/squares"
    kill_cli_when("run", cfg_path, cwd=tmp_path,
                  condition=lambda: len(list(data.glob("train-*.jsonl"))) >= 3,
                  message="condition not reached in time", timeout=120, interval=0.02)
    assert _actions(cfg_path)["squares"] == "resume"
    dry = _cli("run", str(cfg_path), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "resume" in dry.stdout
    done = _cli("run", str(cfg_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in iter_records(data)]
    assert ids == [f"sq-{i:05d}" for i in range(200)]


def test_sigkill_after_checkpoint_resumes_from_it(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, st_delay=0.3)
    ckpts = tmp_path / "run/steps/checkpoints"
    kill_cli_when("run", cfg_path, cwd=tmp_path,
                  condition=ckpts / "checkpoint-4" / "trainer_state.json",
                  message="condition not reached in time", timeout=120, interval=0.02)
    the_plan = plan(load(cfg_path))
    assert the_plan["squares"].action == "skip"
    assert the_plan["steps"].action == "resume" and "checkpoint-" in the_plan["steps"].reason
    results = execute(the_plan)
    assert results["steps"].summary["resumed_from_step"] >= 4
    assert results["steps"].summary["total"] == sum(i * i for i in range(60))
    assert read_state_at(tmp_path / "run", "steps")["attempts"] == 2


@pytest.mark.parametrize(("old", "new", "where", "words"), [
    ("save_every: 2", "save_evry: 2", ":13: stages.steps.save_evry:", "did you mean 'save_every'"),
    ("steps: 8", "steps: eight", ":12: stages.steps.steps:", "valid integer"),
    ("data: squares:squares", "data: squares2:squares", ":11: stages.steps.data:",
     "not in `stages:`"),
    ("    count: 60", "    count: 60\n    from: steps", ":8: stages.squares.from:", "cycle"),
])
def test_cli_validate_errors_are_one_line_exit_2(tmp_path: Path, old: str, new: str, where: str,
                                                 words: str) -> None:
    bad = _config(tmp_path)
    bad.write_text(bad.read_text().replace(old, new))
    out = _cli("validate", str(bad), cwd=tmp_path)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert f"{bad}{where}" in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def test_cli_validate_accepts_a_good_file(tmp_path: Path) -> None:
    good = _cli("validate", str(_config(tmp_path)), cwd=tmp_path)
    assert good.returncode == 0 and "squares -> steps" in good.stdout


def test_cli_run_status_and_dry_run(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    dry = _cli("run", str(cfg_path), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and dry.stdout.count(" run ") >= 2
    assert not (tmp_path / "run" / "squares").exists()
    out = _cli("run", str(cfg_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    status = json.loads(_cli("status", str(cfg_path), "--json", cwd=tmp_path).stdout)
    assert [s["status"] for s in status["stages"]] == ["finished", "finished"]
    assert status["stages"][1]["summary"]["total"] == sum(i * i for i in range(60))
    status = json.loads(_cli("status", str(cfg_path), "stages.squares.count=61", "--json",
                             cwd=tmp_path).stdout)
    assert [s["status"] for s in status["stages"]] == ["stale", "stale"]
    again = _cli("run", str(cfg_path), cwd=tmp_path)
    assert "nothing to do" in again.stdout


def test_cli_help_does_not_import_torch() -> None:
    code = ("import sys, runpy; sys.argv=['r1pipe','--help']\n"
            "try:\n    runpy.run_module('r1pipe.cli', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'trl', 'datasets', 'vllm') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=cli_env(), check=True)
    assert "HEAVY []" in out.stdout
    assert "reject-sample" in out.stdout and "r1-zero" in out.stdout


@pytest.mark.slow
def test_stage_under_accelerate_launch_two_processes(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path)
    cfg_path.write_text(cfg_path.read_text() + "    launch: {num_processes: 2}\n")
    out = _cli("run", str(cfg_path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    state = read_state_at(tmp_path / "run", "steps")
    assert state["status"] == "finished"
    assert state["summary"]["total"] == sum(i * i for i in range(60))
    assert state["summary"]["world_size"] == 2  # really ran as two ranks, rank 0 reported


def test_shards_run_separately_then_merge(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, count=95)
    for part in ("0/2", "1/2"):
        out = _cli("run", str(cfg_path), "--only", "squares", "--shard", part, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert read_state_at(tmp_path / "run", "squares")["status"] == "partial"
    data = tmp_path / "run/squares/data/squares"
    assert len(list(data.glob("train-*.jsonl"))) == 10
    assert _actions(cfg_path)["squares"] == "resume"
    merged = _cli("run", str(cfg_path), cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    assert [r["id"] for r in iter_records(data)] == [f"sq-{i:05d}" for i in range(95)]
    assert read_state_at(tmp_path / "run", "squares")["shards_done"] == [0, 1]
    both = _cli("run", str(cfg_path), "--shard", "0/2", "--force", cwd=tmp_path)
    assert both.returncode == 2 and "select the stage" in both.stderr


def test_accelerate_command_respects_config_file() -> None:
    from r1pipe.config import LaunchConfig
    from r1pipe.launch import accelerate_command

    two = accelerate_command(LaunchConfig(num_processes=2), Path("s.json"))
    assert two[two.index("--num_processes") + 1] == "2" and "--multi_gpu" in two
    zero3 = accelerate_command(LaunchConfig(accelerate_config="configs/accelerate/zero3.yaml"),
                               Path("s.json"))
    assert "--num_processes" not in zero3 and "--multi_gpu" not in zero3
    assert zero3[zero3.index("--config_file") + 1] == "configs/accelerate/zero3.yaml"
    cluster = accelerate_command(LaunchConfig(accelerate_config="z.yaml", num_processes=8,
                                              num_machines=2, machine_rank=1,
                                              main_process_ip="10.0.0.1"), Path("s.json"))
    assert cluster[cluster.index("--num_processes") + 1] == "16"
    assert cluster[cluster.index("--machine_rank") + 1] == "1"
    assert cluster[-2:] == ["r1pipe.launch", "s.json"]


@pytest.mark.slow
def test_two_machines_on_loopback_rank0_writes_state(tmp_path: Path) -> None:
    """Two 'nodes' (two engines, machine_rank 0 and 1) rendezvous over loopback; only rank 0
    takes the lock and writes stage.json."""
    import socket

    cfg_path = _config(tmp_path)
    _cli("run", str(cfg_path), "--only", "squares", cwd=tmp_path, check=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = []
    for rank in (0, 1):
        args = ["--only", "steps"]
        overrides = ["launch.num_machines=2", f"launch.machine_rank={rank}",
                     "launch.main_process_ip=127.0.0.1", f"launch.main_process_port={port}"]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "r1pipe.cli", "run", str(cfg_path), *overrides, *args],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    state = read_state_at(tmp_path / "run", "steps")
    assert state["status"] == "finished" and state["summary"]["world_size"] == 2
    assert state["pid"] is None and state["attempts"] == 1


def test_hooks_get_two_named_events(tmp_path: Path) -> None:
    """`before_stages` once, before the first stage and under the run lock; `after_stage`
    after every stage in plan order, skipped ones too, always with the stage's name."""
    import types

    from r1pipe.pipeline import Hook

    cfg_path = _config(tmp_path, count=20)
    calls: list[tuple[str, ...]] = []

    def before_stages(plan_, shard) -> None:
        assert (tmp_path / "run" / ".lock").exists()  # under the lock, before any stage
        if plan_["squares"].action == "run":  # the first run: no stage has started yet
            assert read_state(plan_.layout, "squares") is None
        calls.append(("before", plan_.config.name, str(shard)))

    def after_stage(plan_, stage, shard) -> None:
        calls.append(("after", stage, read_state_at(tmp_path / "run", stage)["status"]))

    both = Hook.of(types.SimpleNamespace(before_stages=before_stages, after_stage=after_stage))
    only_after = Hook(after_stage=lambda plan_, stage, shard: calls.append(("only", stage)))
    execute(plan(load(cfg_path)), hooks=[both, only_after])
    assert calls == [("before", "enginetest", "None"),
                     ("after", "squares", "finished"), ("only", "squares"),
                     ("after", "steps", "finished"), ("only", "steps")]
    calls.clear()
    execute(plan(load(cfg_path)), hooks=[both])  # everything skipped: the events still come
    assert [c[:2] for c in calls] == [("before", "enginetest"), ("after", "squares"),
                                      ("after", "steps")]
    with pytest.raises(TypeError, match="neither"):
        Hook.of(types.SimpleNamespace())
