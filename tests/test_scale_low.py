"""The low items of issue 30, each shown on CPU: `shards_done` updates lost between the
`--shard` parts of one stage writing stage.json at once, a new `--shard` writer deleting the
temp shard another part is about to rename into place, Slurm's `logs/` folder never
created, `accelerate_config` read from the working directory only, and a file system
without locks (NFS, Lustre) failing with a traceback."""

from __future__ import annotations

import errno
import multiprocessing
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from r1pipe.artifacts import RunLayout, ShardedJsonlWriter, iter_records, read_manifest
from r1pipe.state import (
    LocksUnsupported,
    RunLocked,
    read_state,
    run_lock,
    write_state,
)
from tests.helpers import MINIMAL_PIPELINE, REPO, cli_env

# ----------------------------------------------------------------- shards_done


def _shard_part(root: str, index: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """What `pipeline.run_stage` does for one `--shard` part: read stage.json when the part
    starts, write it when the part ends with this part added to what it read."""
    layout = RunLayout(Path(root))
    previous = read_state(layout, "reject_sample") or {}
    barrier.wait()  # every part has read stage.json before any has written it
    done = sorted({*previous.get("shards_done", []), index})
    write_state(layout, "reject_sample", {"stage": "reject_sample", "status": "partial",
                                          "fingerprint": "f1", "shards_done": done})


def test_concurrent_shard_parts_keep_every_shards_done(tmp_path: Path) -> None:
    """Six parts end at once: before, the last writer's `[i]` replaced the others' (the
    merge run then found five parts missing)."""
    layout = RunLayout(tmp_path / "run")
    layout.stage_dir("reject_sample").mkdir(parents=True)
    parts = 6
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(parts)
    procs = [ctx.Process(target=_shard_part, args=(str(layout.root), i, barrier))
             for i in range(parts)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    assert read_state(layout, "reject_sample")["shards_done"] == list(range(parts))


def test_another_configs_shards_done_is_not_kept(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "run")
    layout.stage_dir("s").mkdir(parents=True)
    write_state(layout, "s", {"fingerprint": "old", "status": "partial", "shards_done": [0, 1]})
    write_state(layout, "s", {"fingerprint": "new", "status": "partial", "shards_done": [2]})
    assert read_state(layout, "s")["shards_done"] == [2]
    write_state(layout, "s", {"fingerprint": "new", "status": "running"})
    assert read_state(layout, "s")["shards_done"] == [2]  # a later write of the same config


# ----------------------------------------------------------------- temp shards


def test_a_new_shard_writer_leaves_another_writers_temp_shard(tmp_path: Path) -> None:
    """Part 1 opens the folder (its `ShardedJsonlWriter`) while part 0 is writing shard 3:
    before, the new writer deleted every `.train-*.tmp`, and part 0's rename failed with
    FileNotFoundError."""
    out = tmp_path / "art"
    writer = ShardedJsonlWriter(out)
    with writer.shard(3) as sink:
        sink.write({"id": "a"})
        assert len(list(out.glob(".train-00003.jsonl.*.tmp"))) == 1
        subprocess.run([sys.executable, "-c", "import sys; from r1pipe.artifacts import "
                        "ShardedJsonlWriter; ShardedJsonlWriter(sys.argv[1])", str(out)],
                       env=cli_env(), check=True, timeout=120)
        sink.write({"id": "b"})
    assert [r["id"] for r in iter_records(out, require_complete=False)] == ["a", "b"]
    assert read_manifest(out).records == 2


def test_only_a_dead_local_writers_temp_shards_are_removed(tmp_path: Path) -> None:
    from r1pipe.artifacts import temp_owner

    out = tmp_path / "art"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    mine = temp_owner()
    host_ns = mine.split("@", 1)[1]
    orphan = out / f".train-00001.jsonl.w{dead.pid}@{host_ns}.abc123.tmp"
    elsewhere = out / f".train-00002.jsonl.w{dead.pid}@another-node@1.abc123.tmp"
    live = out / f".train-00003.jsonl.{mine}.abc123.tmp"
    unowned = out / ".train-00004.jsonl.abc123.tmp"  # written before owners were named
    for path in (orphan, elsewhere, live, unowned):
        path.write_text("{}\n")
    ShardedJsonlWriter(out)
    assert not orphan.exists()
    assert elsewhere.exists() and live.exists() and unowned.exists()


# ----------------------------------------------------------------- Slurm logs/


@pytest.mark.parametrize("script", sorted((REPO / "examples").glob("slurm_*.sh")),
                         ids=lambda p: p.name)
def test_slurm_usage_creates_the_output_folder_before_sbatch(script: Path) -> None:
    """Slurm opens `--output=logs/...` when the job starts and does not create `logs/`: a
    job submitted as the script's usage said ended at once, with no log to say why."""
    text = script.read_text()
    folders = {Path(m).parent.as_posix() for m in re.findall(r"#SBATCH --output=(\S+)", text)}
    usage = [line for line in text.splitlines() if line.startswith("#   ")]
    submit = [i for i, line in enumerate(usage) if "sbatch " in line]
    assert submit, f"{script.name}: no sbatch usage line"
    for folder in folders - {"."}:
        assert any(f"mkdir -p {folder}" in line for line in usage[:submit[0]]), (
            f"{script.name}: usage submits before `mkdir -p {folder}`")
    scale = (REPO / "docs/scale.md").read_text()
    first = scale.index("sbatch ")
    assert "mkdir -p logs" in scale[max(0, first - 200):first]


# ----------------------------------------------------------------- accelerate_config


def _pipeline_beside(tmp_path: Path, accelerate: str) -> object:
    from r1pipe.config import load

    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "p.yaml").write_text(MINIMAL_PIPELINE.replace(
        "stages:", f"run_dir: {tmp_path / 'run'}\nlaunch: {{accelerate_config: {accelerate}}}\n"
                   "stages:"))
    (folder / "acc.yaml").write_text("distributed_type: MULTI_GPU\nnum_processes: 2\n")
    return load(folder / "p.yaml")


def _fake_ctx(config: object, tmp_path: Path) -> SimpleNamespace:
    layout = RunLayout(tmp_path / "run")
    return SimpleNamespace(
        name="r1_zero", pipeline=config, layout=layout, stage_dir=layout.stage_dir("r1_zero"),
        inputs={}, fingerprint="f", shard=None, config=SimpleNamespace(),
        resume=SimpleNamespace(previous_status=None, last_checkpoint=None))


def test_accelerate_config_beside_the_yaml_is_what_accelerate_gets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Started from another folder: before, `accelerate launch --config_file acc.yaml` read
    the working directory, where the file is not (preflight had found it beside the YAML)."""
    import r1pipe.launch as launch_mod
    from r1pipe.contract import StageFailed

    config = _pipeline_beside(tmp_path, "acc.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert launch_mod.accelerate_file(config.launch, config)["num_processes"] == 2
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> SimpleNamespace:
        seen.append(cmd)
        return SimpleNamespace(returncode=3)

    monkeypatch.setattr(launch_mod.subprocess, "run", fake_run)
    with pytest.raises(StageFailed, match="exited with 3"):
        launch_mod.run_launched(_fake_ctx(config, tmp_path), config.launch)
    given = seen[0][seen[0].index("--config_file") + 1]
    assert Path(given) == (tmp_path / "cfg/acc.yaml").resolve()


def test_a_missing_accelerate_config_names_the_key_before_launching(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import r1pipe.launch as launch_mod
    from r1pipe.config import ConfigError

    config = _pipeline_beside(tmp_path, "missing.yaml")
    monkeypatch.setattr(launch_mod.subprocess, "run", lambda *a, **k: pytest.fail("launched"))
    with pytest.raises(ConfigError) as err:
        launch_mod.run_launched(_fake_ctx(config, tmp_path), config.launch)
    line = err.value.one_line()
    assert "launch.accelerate_config:" in line and "missing.yaml does not exist" in line
    assert str(tmp_path / "cfg" / "missing.yaml") in line
    assert not list((tmp_path / "run").glob(".launch/*.json"))  # no spec left behind


# ----------------------------------------------------------------- flock on NFS / Lustre


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP])
def test_a_file_system_without_locks_is_one_line_naming_the_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    import r1pipe.state as state_mod
    from r1pipe.cli import EXIT_FAILED, explain

    def no_locks(fd: int, flags: int) -> None:
        raise OSError(code, "No locks available")

    monkeypatch.setattr(state_mod.fcntl, "flock", no_locks)
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(LocksUnsupported) as err, run_lock(layout):
        pytest.fail("locked")
    message, exit_code = explain(err.value)
    assert isinstance(err.value, RunLocked) and exit_code == EXIT_FAILED
    assert "\n" not in message and str(layout.lock_file) in message
    assert errno.errorcode[code] in message
    assert "local disk" in message and "R1PIPE_NO_LOCKS=1" in message
    # the way out it names works: no lock taken, the run goes on
    monkeypatch.setenv("R1PIPE_NO_LOCKS", "1")
    with run_lock(layout):
        layout.stage_dir("s").mkdir(parents=True)
        write_state(layout, "s", {"fingerprint": "f", "status": "running"})
    assert read_state(layout, "s")["status"] == "running"


def test_the_cli_prints_one_line_for_a_lustre_run_dir(tmp_path: Path) -> None:
    """End to end: `r1pipe run` on a file system whose flock fails (faked by
    sitecustomize) exits 1 with one error line, no traceback."""
    from tests.helpers import write_pipeline

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import errno, fcntl
        def flock(fd, flags):
            raise OSError(errno.ENOLCK, "No locks available")
        fcntl.flock = flock
    """))
    cfg = write_pipeline(tmp_path, "locks", "stages:\n  squares: {count: 3, shard_size: 3}\n",
                         stage_modules=["tests.stage_squares"], base_model="my-org/tiny")
    env = cli_env()
    env["PYTHONPATH"] = f"{site}:{env.get('PYTHONPATH', REPO)}"
    out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(cfg)], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "R1PIPE_NO_LOCKS=1" in out.stderr
    assert "ENOLCK" in out.stderr
