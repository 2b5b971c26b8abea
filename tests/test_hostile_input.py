"""Hostile but realistic pipeline files and overrides: each gets exit code 2 and one line that
names the file (and the line or key where there is one), never a traceback, and a YAML bomb is
refused fast in bounded memory. Each row is a case someone hit; keep them so none comes back."""

from __future__ import annotations

import subprocess
import tracemalloc
from pathlib import Path

import pytest

from r1pipe.cli import main
from r1pipe.config import ConfigError, load
from tests.helpers import MINIMAL_PIPELINE, yaml_bomb

GOOD = MINIMAL_PIPELINE


# (case, file bytes, what the one line must contain)
BAD_FILES: list[tuple[str, bytes, list[str]]] = [
    ("not utf-8", GOOD.replace("tiny", "caf\xe9").encode("latin-1"), [":2:", "not UTF-8"]),
    ("nul byte", GOOD.replace("t\n", "t\x00\n", 1).encode(), [":1:", "not allowed"]),
    ("control character", GOOD.replace("t\n", "t\x07\n", 1).encode(), [":1:", "not allowed"]),
    ("python tag on a list", (GOOD + "stage_modules: !!python/tuple [a]\n").encode(),
     [":7:", "stage_modules", "tag"]),
    ("python object tag", (GOOD + "seed: !!python/object:os.system {x: 1}\n").encode(),
     ["seed", "tag"]),
    ("null key", (GOOD + "~: 1\n").encode(), [":7:", "key must be a name"]),
    ("5000-deep list", (GOOD + "x: " + "[" * 5000 + "]" * 5000 + "\n").encode(),
     [":7:", "nested more than"]),
    ("alias bomb", yaml_bomb(9).encode(), ["expands to more than"]),
    ("unknown module", (GOOD + "stage_modules: [no_such_mod]\n").encode(),
     [":7:", "stage_modules.0", "not found"]),
    ("stdlib module", (GOOD + "stage_modules: [os]\n").encode(),
     [":7:", "stage_modules.0", "not a stage module"]),
    ("module with import-time code", (GOOD + "stage_modules: [this]\n").encode(),
     [":7:", "not a stage module"]),
    ("relative module", (GOOD + "stage_modules: ['..bad']\n").encode(),
     [":7:", "not a module name"]),
    ("module name not a string", (GOOD + "stage_modules: [{a: 1}]\n").encode(),
     ["stage_modules.0"]),
    ("negative seed", GOOD.replace("name: t\n", "name: t\nseed: -1\n").encode(),
     [":2:", "seed", "greater than or equal to 0"]),
    ("huge seed", GOOD.replace("name: t\n", "name: t\nseed: 1e23\n").encode(), [":2:", "seed"]),
    ("negative learning rate",
     GOOD.replace("r1_zero: {}", "r1_zero: {trainer: {learning_rate: -1}}").encode(),
     [":6:", "stages.r1_zero.trainer.learning_rate", "at least 0"]),
    ("negative max_steps",
     GOOD.replace("r1_zero: {}", "r1_zero: {trainer: {max_steps: -5}}").encode(),
     [":6:", "trainer.max_steps", "at least -1"]),
    ("infinite temperature", (GOOD + "generation: {temperature: .inf}\n").encode(),
     [":7:", "generation.temperature", "finite"]),
    ("mapping for an int", GOOD.replace("name: t\n", "name: t\nseed: {a: 1}\n").encode(),
     [":2:", "seed", "(got a mapping)"]),
    ("value error shows no dict",
     GOOD.replace("{builtin: arithmetic}", "{builtin: arithmetic, hub: x/y}").encode(),
     [":4:", "data.reasoning"]),
    ("not a mapping", b"- a\n- b\n", [":1:", "must be a mapping"]),
    ("binary garbage", bytes(range(256)) * 4, ["not UTF-8"]),
]

BAD_OVERRIDES: list[tuple[str, list[str]]] = [
    ("name.x=1", ["<command line override>", "name.x", "not a mapping"]),
    ("data.reasoning.mixture.x=1", ["<command line override>", "data.reasoning.mixture"]),
    ("mixture.9=1", ["<command line override>", "mixture", "unknown key"]),
    ("stages.r1_zero.nosuch=1", ["<command line override>", "stages.r1_zero.nosuch"]),
    ("seed", ["<command line>", "key.path=value"]),
    ("=3", ["<command line>", "empty key"]),
    ("seed=[[[[", ["<command line>", "invalid YAML"]),
]


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(("case", "content", "words"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
@pytest.mark.parametrize("command", ["validate", "run", "status"])
def test_bad_pipeline_file_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             case: str, content: bytes, words: list[str],
                                             command: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(content)
    code, out = _run_cli([command, str(path)], capsys)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2, out
    assert len(lines) == 1 and "Traceback" not in out, out
    assert str(path) in lines[0], lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Zen of Python" not in out and "Beautiful is better" not in out
    assert not (tmp_path / "runs").exists()  # nothing was written for a file that is wrong


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES, ids=[o[0] for o in BAD_OVERRIDES])
def test_bad_override_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         override: str, words: list[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    code, out = _run_cli(["validate", str(path), override], capsys)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out, out
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("command", [["eval"], ["report"], ["data", "preview"]])
def test_other_commands_refuse_a_non_utf8_file_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(b"name: t\nbase_model: caf\xe9\n")
    code, out = _run_cli([*command, str(path)], capsys)
    assert code == 2 and "not UTF-8" in out and "Traceback" not in out, out


def test_alias_bomb_is_refused_in_bounded_memory() -> None:
    """Memory only: the time (well under a second) is measured by bench/bench_config.py."""
    from r1pipe.config import MAX_YAML_VALUES, load_text

    text = yaml_bomb(9)  # 9^10 values if expanded
    assert len(text.encode()) < 700
    tracemalloc.start()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_text(text, file="bomb.yaml")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 200 * 2**20, peak
    # a real pipeline is far below the cap: the shipped full-scale one holds a few hundred
    from r1pipe.config import resolve_path

    full = resolve_path("r1").read_text(encoding="utf-8")
    assert full.count("\n") * 4 < MAX_YAML_VALUES


def test_validate_does_not_import_a_module_that_is_not_a_stage(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A module named in stage_modules runs no code unless it defines the stage contract."""
    marker = tmp_path / "ran"
    (tmp_path / "sneaky.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    (tmp_path / "sneaky_pkg").mkdir()
    (tmp_path / "sneaky_pkg/__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('package ran')\n")
    (tmp_path / "sneaky_pkg/mod.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in ("sneaky", "sneaky_pkg.mod"):
        path = tmp_path / "p.yaml"
        path.write_text(GOOD + f"stage_modules: [{module}]\n")
        with pytest.raises(ConfigError, match="not a stage module"):
            load(path)
        assert not marker.exists()


def test_import_error_inside_a_stage_module_is_one_line(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_stage.py").write_text(
        "NAME = 'broken'\nConfig = None\ndef run(ctx):\n    pass\nraise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "p.yaml"
    path.write_text(GOOD + "stage_modules: [broken_stage]\n")
    with pytest.raises(ConfigError, match=r"stage_modules.0: importing stage module "
                                          r"'broken_stage' failed: RuntimeError: boom"):
        load(path)


# ---------------------------------------------------------------------------------------
# Run dirs: r1pipe's own only; read-only and full disks
# ---------------------------------------------------------------------------------------

ENGINE = """\
name: hostile
run_dir: {run}
base_model: my-org/tiny
stage_modules: [tests.stage_squares]
stages:
  squares: {{count: {count}, shard_size: 100}}
"""
REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*prefix, sys.executable, "-m", "r1pipe.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _error_lines(out: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in out.stderr.splitlines() if line.strip()]


def test_run_never_touches_a_folder_it_did_not_make(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    (victim / "r1_zero").mkdir(parents=True)
    (victim / "r1_zero" / "important.txt").write_text("precious")
    (victim / "pipeline.yaml").write_text("mine")
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    out = _cli("run", str(path), f"run_dir={victim}", "--input", "from=/x", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = _error_lines(out)
    assert len(lines) == 1 and str(victim) in lines[0] and "r1_zero/" in lines[0], lines
    assert (victim / "r1_zero" / "important.txt").read_text() == "precious"
    assert (victim / "pipeline.yaml").read_text() == "mine"
    assert sorted(p.name for p in victim.iterdir()) == ["pipeline.yaml", "r1_zero"]


def test_a_run_dir_from_before_the_marker_is_still_used(tmp_path: Path) -> None:
    from r1pipe.state import RUN_MARKER, claim_run_dir

    run = tmp_path / "run"
    path = tmp_path / "p.yaml"
    path.write_text(ENGINE.format(run=run, count=50))
    assert _cli("run", str(path), cwd=REPO).returncode == 0
    (run / RUN_MARKER).unlink()  # as an older r1pipe left it
    out = _cli("run", str(path), cwd=REPO)
    assert out.returncode == 0 and "nothing to do" in out.stdout, out.stderr
    claim_run_dir(run)
    assert (run / RUN_MARKER).is_file()


def _namespace_or_skip() -> tuple[str, ...]:
    import shutil
    import subprocess

    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-U", "-r", "-m", "true"]).returncode != 0:
        pytest.skip("needs user and mount namespaces (unshare -U -r -m) to make a read-only "
                    "or full file system without root")
    return (unshare, "-U", "-r", "-m")


def test_read_only_run_dir_is_one_line_and_resumes_after(tmp_path: Path) -> None:
    import shlex
    import sys

    prefix = _namespace_or_skip()
    run = tmp_path / "run"
    path = tmp_path / "p.yaml"
    path.write_text(ENGINE.format(run=run, count=50))
    assert _cli("run", str(path), cwd=REPO).returncode == 0
    cli = f"{shlex.quote(sys.executable)} -m r1pipe.cli"
    script = (f"mount --bind {run} {run} && mount -o remount,bind,ro {run} && "
              f"{cli} run {path}; echo rc=$? >&2; "  # finished: nothing to do, no write
              f"{cli} run {path} --force; echo rc=$? >&2")
    out = _cli_shell(prefix, script)
    codes = [line for line in out.stderr.splitlines() if line.startswith("rc=")]
    assert codes == ["rc=0", "rc=1"], out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Read-only file system" in errors[0] and str(run) in errors[0]
    assert "Traceback" not in out.stderr
    again = _cli("run", str(path), "--force", cwd=REPO)  # writable again: it runs
    assert again.returncode == 0, again.stderr


def test_full_disk_is_one_line_and_resumes_after(tmp_path: Path) -> None:
    import json
    import shlex
    import sys

    prefix = _namespace_or_skip()
    run = tmp_path / "run"
    run.mkdir()
    path = tmp_path / "p.yaml"
    path.write_text(ENGINE.format(run=run, count=20000))
    cli = f"{shlex.quote(sys.executable)} -m r1pipe.cli"
    script = (f"mount -t tmpfs -o size=256k tmpfs {run} && {cli} run {path}; echo rc=$? >&2; "
              f"mount -o remount,size=64m {run} && {cli} run {path}; echo rc=$? >&2; "
              f"cat {run}/squares/stage.json")
    out = _cli_shell(prefix, script)
    codes = [line for line in out.stderr.splitlines() if line.startswith("rc=")]
    assert codes == ["rc=1", "rc=0"], out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], out.stderr
    assert str(run) in errors[0] and "Traceback" not in out.stderr
    state = json.loads(out.stdout[out.stdout.index("{"):])
    assert state["status"] == "finished" and state["summary"] == {"records": 20000}


def _cli_shell(prefix: tuple[str, ...], script: str) -> subprocess.CompletedProcess[str]:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    return subprocess.run([*prefix, "sh", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)


# ---------------------------------------------------------------------------------------
# Bad data files
# ---------------------------------------------------------------------------------------

# (case, file name, bytes, what the one line must contain)
BAD_DATA: list[tuple[str, str, bytes, list[str]]] = [
    ("torn last line", "d.jsonl", b'{"prompt": "1+1", "answer": "2"}\n{"prompt": "2+2", "ans',
     ["d.jsonl:2:", "torn last line"]),
    ("malformed line", "d.jsonl", b'{"prompt": "1+1", "answer": "2"}\nnot json\n',
     ["d.jsonl:2:", "not a JSON object"]),
    ("a list, not an object", "d.jsonl", b'["1+1", "2"]\n', ["d.jsonl:1:", "not an object"]),
    ("empty file", "d.jsonl", b"", ["d.jsonl is empty"]),
    ("not utf-8", "d.jsonl", b'{"prompt": "caf\xe9", "answer": "2"}\n', ["d.jsonl:1:", "UTF-8"]),
    ("null prompt", "d.jsonl", b'{"prompt": null, "answer": "2"}\n', ["record 0", "no prompt"]),
    ("empty prompt", "d.jsonl", b'{"prompt": "  ", "answer": "2"}\n',
     ["record 0", "empty prompt"]),
    ("mapping answer", "d.jsonl", b'{"prompt": "1+1", "answer": {"a": 2}}\n',
     ["record 0", "mapping as its answer"]),
    ("bad json array file", "d.json", b'[{"prompt": "1+1"},', ["d.json:1:", "invalid JSON"]),
]


def _data_config(tmp_path: Path, file: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace("{builtin: arithmetic}", f"{{path: {tmp_path / file}}}"))
    return path


@pytest.mark.parametrize(("case", "file", "content", "words"), BAD_DATA,
                         ids=[c[0] for c in BAD_DATA])
def test_bad_data_file_is_one_line_naming_file_and_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, file: str,
        content: bytes, words: list[str]) -> None:
    (tmp_path / file).write_bytes(content)
    code, out = _run_cli(["data", "preview", str(_data_config(tmp_path, file)),
                          "--source", "reasoning", "-n", "2"], capsys)
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out, out
    assert "'reasoning'" in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_validate_refuses_a_data_path_that_does_not_exist(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run_cli(["validate", str(_data_config(tmp_path, "missing.jsonl"))], capsys)
    assert code == 2 and ":4: data.reasoning.path:" in out and "does not exist" in out, out


@pytest.mark.slow
def test_run_with_a_bad_data_file_is_exit_2_and_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"prompt": "1+1", "answer": "2"}\nnot json\n')
    path = tmp_path / "p.yaml"
    path.write_text(f"name: bad\nrun_dir: {tmp_path / 'run'}\nbase_model: {{builtin: tiny-llama}}"
                    f"\ndata:\n  reasoning: {{path: {tmp_path / 'd.jsonl'}}}\n"
                    "stages:\n  r1_zero: {trainer: {max_steps: 1}}\n")
    out = _cli("run", str(path), cwd=tmp_path)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2, out.stderr[-2000:]
    assert len(errors) == 1 and "d.jsonl:2:" in errors[0] and "Traceback" not in out.stderr
    state = (tmp_path / "run" / "r1_zero" / "stage.json").read_text()
    assert '"failed"' in state  # the next run resumes once the file is fixed
