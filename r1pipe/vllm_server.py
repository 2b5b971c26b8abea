"""A `trl vllm-serve` process for one GRPO stage: TRL's server-mode rollouts, managed.

In TRL's `vllm_mode: server` the rollouts come from a separate vLLM server (its own GPUs,
its own tensor parallelism) and the trainer pushes its weights to it after each step. That
is the layout for large policies and several nodes, where colocating the engine in every
training process does not fit. A GRPO stage with a `vllm_server:` section gets one:

    stages:
      r1_zero:
        vllm_server: {devices: [7], port: 8000, args: [--gpu_memory_utilization, "0.85"]}
        launch: {num_processes: 7}          # the trainers take GPUs 0-6

`stage_server` starts `trl vllm-serve --model <policy>` (on the main process only: it is
the one TRL connects), waits until `GET /health` answers, points the trainer's
`GRPOConfig` at it (`use_vllm`, `vllm_mode: server`, `vllm_server_base_url`), and stops the
server's whole process group when the stage ends, failed or not. Its output goes to
`<stage>/vllm-server.log`; a server that exits or never becomes healthy fails the stage
with the last lines of that log. `trl vllm-serve` needs CUDA (its weight sync is NCCL): on a
CPU machine the command line and the lifecycle are what can be exercised.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from r1pipe.config import VLLMServerSection
from r1pipe.contract import StageFailed

HEALTH_PATH = "/health"
STOP_GRACE_S = 30.0  # SIGTERM, then this long, then SIGKILL
LOG_TAIL_LINES = 15


class ServerFailed(StageFailed):
    """The stage's vLLM server exited, never became healthy, or could not start."""


def serve_command(section: VLLMServerSection, model: str) -> list[str]:
    """`trl vllm-serve` for `model` as the section asks (run with this interpreter, so the
    server comes from the same environment as the trainer)."""
    return [sys.executable, "-m", "trl.cli.main", "vllm-serve", "--model", str(model),
            "--host", section.host, "--port", str(section.port),
            "--tensor_parallel_size", str(section.tensor_parallel_size), *section.args]


def client_host(host: str) -> str:
    """Where a client reaches a server listening on `host` (a wildcard means this machine)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def server_env(section: VLLMServerSection, base: Mapping[str, str] | None = None
               ) -> dict[str, str]:
    """The server's environment: the caller's, with the section's GPUs as the visible ones
    and none of the torchrun variables of a launched rank (the server is not one)."""
    env = dict(os.environ if base is None else base)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT", "GROUP_RANK", "ROLE_RANK", "TORCHELASTIC_RUN_ID"):
        env.pop(key, None)
    if section.devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in section.devices)
    return env


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((client_host(host), port)) == 0


def _tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text[-lines:]) or "(no output)"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + HEALTH_PATH, timeout=2.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def stop(proc: subprocess.Popen[Any], grace: float = STOP_GRACE_S) -> None:
    """End the server and every process it started (its own process group): SIGTERM, then
    SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers that outlived the leader


@contextlib.contextmanager
def running_server(command: Sequence[str], *, host: str, port: int, log: Path,
                   timeout: float, env: Mapping[str, str] | None = None,
                   where: str = "vllm_server", poll: float = 1.0) -> Iterator[str]:
    """Run `command` (a server on host:port) while the block runs; yield its base URL.

    Refuses a port something already answers on (the trainer would talk to a stranger),
    waits up to `timeout` s for `GET /health` to answer 200, and stops the server's process
    group when the block ends, whether it returned or raised. `where` names the YAML key in
    the error messages."""
    url = f"http://{client_host(host)}:{port}"
    if port_in_use(host, port):
        raise ServerFailed(f"{where}.port: {port} on {client_host(host)} is already in use; "
                           "stop what listens there or set another port")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        try:
            proc = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(env) if env is not None else None,
                                    start_new_session=True)
        except OSError as exc:
            raise ServerFailed(f"{where}: could not start {command[0]}: {exc}") from None
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            code = proc.poll()
            if code is not None:
                raise ServerFailed(
                    f"{where}: the vLLM server exited with code {code} before it was healthy "
                    f"(command: {' '.join(command)}); last lines of {log}:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise ServerFailed(
                    f"{where}: the vLLM server did not answer {url}{HEALTH_PATH} within "
                    f"{timeout:g} s; raise {where}.timeout if it is still loading, or read "
                    f"{log}:\n{_tail(log)}")
            time.sleep(poll)
        yield url
    finally:
        stop(proc)


@contextlib.contextmanager
def stage_server(ctx: Any, args: Any, model: str) -> Iterator[str | None]:
    """Serve `model` for a GRPO stage whose section has `vllm_server:` and point the TRL
    config `args` at it; yields the server URL (None when the stage asks for no server).

    Only the main process starts the server (it is the one TRL's `VLLMClient` talks to);
    every process gets the same `args`."""
    section: VLLMServerSection | None = getattr(ctx.config, "vllm_server", None)
    if section is None:
        yield None
        return
    url = f"http://{client_host(section.host)}:{section.port}"
    args.use_vllm = True
    args.vllm_mode = "server"
    args.vllm_server_base_url = url
    args.vllm_server_host = client_host(section.host)
    args.vllm_server_port = section.port
    if not ctx.is_main_process:
        yield url
        return
    with running_server(serve_command(section, model), host=section.host, port=section.port,
                        log=ctx.stage_dir / "vllm-server.log", timeout=section.timeout,
                        env=server_env(section),
                        where=f"stages.{ctx.name}.vllm_server") as served:
        yield served
