"""Run one stage on several processes (or machines) under `accelerate launch`.

The engine stays the orchestrator: it plans, writes stage.json, and starts
`accelerate launch -m r1pipe.launch <spec.json>`. Every worker rebuilds the stage context
(config, inputs, resume point and `--shard i/N` part) from the spec and runs the stage;
TRL's trainers shard the training, `r1pipe.generation.jobs` the generation (every rank
samples its own chunks).
Only rank 0 writes the result file the engine reads back.

`python -m r1pipe.launch SPEC` is the worker entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from r1pipe.artifacts import atomic_write_json, read_json
from r1pipe.config import ConfigError, LaunchConfig, PipelineConfig
from r1pipe.contract import ResumeInfo, StageContext, StageFailed, StageResult
from r1pipe.memory import Sharding

# Specs live beside the stage folders, not in them: rank 0 clears a stage folder it starts
# afresh, and on a shared filesystem that would delete the spec another node just wrote.
SPEC_DIR = ".launch"
SPEC_FILE = "{stage}.machine{rank}.{pid}.json"
RESULT_FILE = ".result.json"
SECRETS_ENV = "R1PIPE_CONFIG_SECRETS"  # key.path -> value of the config's secrets, as JSON


def accelerate_command(launch: LaunchConfig, spec: Path) -> list[str]:
    """The `accelerate launch` command line for a stage (multi-process on GPUs or CPU).

    With an accelerate config file, only the settings the YAML states explicitly are passed
    on the command line, so the file's own values (num_processes: 8, ...) are not overridden
    by r1pipe's defaults.
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    explicit = launch.model_fields_set if launch.accelerate_config else set(
        LaunchConfig.model_fields)
    if launch.accelerate_config:
        cmd += ["--config_file", launch.accelerate_config]
    elif launch.num_processes > 1 or launch.num_machines > 1:
        # torchrun-based launcher; on a machine without GPUs torch.distributed uses gloo.
        cmd += ["--multi_gpu"]
    if "num_processes" in explicit or "num_machines" in explicit:
        cmd += ["--num_processes", str(launch.num_processes * launch.num_machines)]
    if "num_machines" in explicit:
        cmd += ["--num_machines", str(launch.num_machines)]
    if "machine_rank" in explicit:
        cmd += ["--machine_rank", str(launch.machine_rank)]
    if launch.main_process_ip:
        cmd += ["--main_process_ip", launch.main_process_ip]
    if launch.main_process_port:
        cmd += ["--main_process_port", str(launch.main_process_port)]
    if launch.mixed_precision:
        cmd += ["--mixed_precision", launch.mixed_precision]
    cmd += ["--dynamo_backend", "no", "--module", "r1pipe.launch", str(spec)]
    return cmd


def accelerate_file(launch: LaunchConfig, config: PipelineConfig) -> dict[str, Any]:
    """The stage's accelerate config file as a mapping (where it is found:
    `accelerate_config_path`)."""
    path = accelerate_config_path(launch, config)
    if path is None:
        return {}
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def accelerate_config_path(launch: LaunchConfig, config: PipelineConfig) -> Path | None:
    """Where `launch.accelerate_config` is: an absolute path as it is; a relative one from
    the working directory (as every relative path of the config, and as `accelerate launch`
    itself reads it), else beside the pipeline YAML, else from the folder above it (the
    shipped configs name `configs/accelerate/zero3.yaml` from the repository root, which is
    the folder above `configs/r1.yaml`, installed or not). `run_launched` hands accelerate
    the path found here, so a stage launched from another directory reads the same file
    preflight and the world size were computed from. Missing: a `ConfigError` naming the
    key and every place looked at."""
    if not launch.accelerate_config:
        return None
    given = Path(launch.accelerate_config).expanduser()
    tried = [given]
    if not given.is_absolute() and config.source_path:
        folder = Path(config.source_path).resolve().parent
        tried += [folder / given, folder.parent / given]
    for path in tried:
        if path.is_file():
            return path.resolve()
    raise ConfigError(f"{launch.accelerate_config} does not exist (looked at "
                      f"{', '.join(str(p) for p in dict.fromkeys(tried))})",
                      file=config.source_path, key="launch.accelerate_config")


def sharding_of(accel: dict[str, Any]) -> tuple[Sharding, bool]:
    """(how model states are sharded, whether DeepSpeed runs) from an accelerate config."""
    kind = str(accel.get("distributed_type", "")).upper()
    if kind == "DEEPSPEED":
        ds = accel.get("deepspeed_config") or {}
        stage = ds.get("zero_stage")
        if stage is None and ds.get("deepspeed_config_file"):
            with open(ds["deepspeed_config_file"], encoding="utf-8") as fh:
                stage = (json.load(fh).get("zero_optimization") or {}).get("stage", 0)
        return {0: "none", 1: "zero1", 2: "zero2", 3: "zero3"}.get(int(stage or 0), "none"), True
    if kind == "FSDP":
        return "fsdp", False
    return "none", False


def world_size(launch: LaunchConfig, accel: dict[str, Any]) -> tuple[int, int]:
    """(processes in all, machines) as `r1pipe.launch.accelerate_command` starts them."""
    if not launch.distributed:
        return 1, 1
    explicit = launch.model_fields_set if launch.accelerate_config else set(
        LaunchConfig.model_fields)
    machines = launch.num_machines if "num_machines" in explicit else int(
        accel.get("num_machines", launch.num_machines))
    if "num_processes" in explicit or "num_machines" in explicit:
        return launch.num_processes * launch.num_machines, machines
    return int(accel.get("num_processes", launch.num_processes)), machines


LEADER_POLL_SECONDS = 5.0


def wait_for_leader(run_dir: Path, stage: str, *, poll: float = LEADER_POLL_SECONDS,
                    say: Any = print) -> None:
    """Machine rank > 0: wait until node 0 launches `stage` (its spec file exists).

    Node 0 runs the work before a stage first (decontamination, the base model's
    evaluation: minutes to hours); a follower that started `accelerate launch` at once
    would see torch's rendezvous (600 s) expire before node 0 joins (S6 of issue 30). The
    spec of machine 0 exists exactly while node 0's launch of the stage runs."""
    folder = run_dir / SPEC_DIR
    pattern = SPEC_FILE.format(stage=stage, rank=0, pid="*")
    waited, told = 0.0, -1
    while not list(folder.glob(pattern)):
        if int(waited // 300) > told:  # a line every 5 minutes
            told = int(waited // 300)
            say(f"{stage}: waiting for machine 0 to launch the stage "
                f"({folder / pattern} does not exist yet; {waited:.0f} s so far)")
        time.sleep(poll)
        waited += poll


def run_launched(ctx: StageContext[Any], launch: LaunchConfig) -> StageResult:
    """Run `ctx`'s stage under accelerate and return rank 0's `StageResult`."""
    from r1pipe.config import dump, secret_values

    path = accelerate_config_path(launch, ctx.pipeline)
    if path is not None:  # the file preflight read, wherever the engine runs from
        launch = launch.model_copy(update={"accelerate_config": str(path)})
    ctx.stage_dir.mkdir(parents=True, exist_ok=True)
    spec = ctx.layout.root / SPEC_DIR / SPEC_FILE.format(
        stage=ctx.name, rank=launch.machine_rank, pid=os.getpid())
    result_file = ctx.stage_dir / RESULT_FILE
    if launch.machine_rank == 0:
        result_file.unlink(missing_ok=True)
    # The config travels inside the spec (not as a path to the run dir's pipeline.yaml), so
    # nodes of a multi-node stage need nothing but this file.
    # Secrets stay out of the spec file: workers get them through their environment.
    atomic_write_json(spec, {
        "pipeline": dump(ctx.pipeline, mask_secrets=True),
        "run_dir": str(ctx.layout.root.resolve()),
        "stage": ctx.name,
        "inputs": ctx.inputs,
        "fingerprint": ctx.fingerprint,
        "shard": str(ctx.shard) if ctx.shard is not None else None,  # --shard i/N
        "resume": {"previous_status": ctx.resume.previous_status,
                   "last_checkpoint": str(ctx.resume.last_checkpoint)
                   if ctx.resume.last_checkpoint else None},
    })
    env = dict(os.environ)
    env[SECRETS_ENV] = json.dumps(secret_values(ctx.pipeline))
    server = getattr(ctx.config, "vllm_server", None)
    if server is not None and server.devices and _has_cuda() and "CUDA_VISIBLE_DEVICES" not in env:
        # the stage's vLLM server (r1pipe.vllm_server) takes its GPUs; trainers get the rest
        import torch

        rest = [str(i) for i in range(torch.cuda.device_count()) if i not in server.devices]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(rest)
    if not _has_cuda():
        env.setdefault("ACCELERATE_USE_CPU", "true")
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // launch.num_processes)))
    cmd = accelerate_command(launch, spec)
    try:
        proc = subprocess.run(cmd, env=env, check=False)
    finally:
        spec.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise StageFailed(f"stage {ctx.name}: `accelerate launch` exited with {proc.returncode} "
                          f"(command: {' '.join(cmd)})")
    if launch.machine_rank != 0:
        return StageResult(summary={"note": "non-zero machine rank; rank 0 writes the results"})
    raw = read_json(result_file)
    if raw is None:
        raise StageFailed(f"stage {ctx.name}: workers exited cleanly but rank 0 wrote no "
                          f"{RESULT_FILE}")
    return StageResult(summary=raw.get("summary", {}), artifacts=raw.get("artifacts", {}))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        return False


def worker(spec_path: str) -> None:
    """One launched process: rebuild the context, run the stage, rank 0 reports."""
    from r1pipe import registry
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import load_text
    from r1pipe.contract import Shard

    spec = read_json(spec_path)
    secrets = json.loads(os.environ.get(SECRETS_ENV) or "{}")
    config = load_text(spec["pipeline"], file=spec_path,
                       overrides=[f"{path}={json.dumps(value)}" for path, value in secrets.items()])
    config.run_dir = spec["run_dir"]
    config.apply_process_settings()
    layout = RunLayout(Path(spec["run_dir"]))
    resume = spec["resume"]
    ctx = StageContext(
        name=spec["stage"], config=config.stages[spec["stage"]], pipeline=config, layout=layout,
        inputs=spec["inputs"],
        resume=ResumeInfo(resume["previous_status"],
                          Path(resume["last_checkpoint"]) if resume["last_checkpoint"] else None),
        fingerprint=spec["fingerprint"],
        shard=Shard.parse(spec["shard"]) if spec.get("shard") else None,
    )
    result = registry.lookup(ctx.name).run(ctx) or StageResult()
    if ctx.is_main_process:
        atomic_write_json(ctx.stage_dir / RESULT_FILE,
                          {"summary": result.summary, "artifacts": result.artifacts})


if __name__ == "__main__":
    worker(sys.argv[1])
