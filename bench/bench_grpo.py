"""Benchmark: r1pipe's per-step overhead over a plain TRL GRPO script, on the tiny model.

The same GRPO run is done twice, each in a fresh process:

- **r1pipe**: `r1pipe r1-zero pipeline.yaml`, the CLI on a real pipeline file
  (`base_model: {builtin: tiny-llama}`, built-in arithmetic data, the stage's default
  rewards: accuracy 1.0 + format 0.1 with the R1-Zero template), so everything r1pipe adds
  is in: config and engine, prompt rendering, rewards with routing and crash guards,
  the metrics callback, the model card.
- **plain TRL**: a script as a TRL user would write it: `GRPOTrainer` on the same model
  folder and the same rendered prompts (exported from r1pipe's data, so both see identical
  prompts in identical order), with two small reward functions (the last number of the
  `<answer>` text against the gold answer, as r1pipe checks arithmetic; a format regex) and
  the same `reward_weights`.

Both use the same GRPOConfig values (batch, group size, lengths, learning rate, beta,
seeds, fp32 on CPU, no completion logging, no checkpoint within the measured steps). The
figure is wall time per step after warm-up, taken from the time stamp each process logs at
every step (r1pipe's `metrics.jsonl`, the plain script's own log), with TRL's `step_time`
(generation + rewards + forward/backward, without the optimizer step and logging) beside
it. Rounds alternate r1pipe and plain so that load from other processes on the machine hits
both alike, both run torch on one thread by default (`--threads`), and medians over all
measured steps are compared.

    python bench/bench_grpo.py --out bench/grpo.json [--steps 40 --warmup 2 --rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

SEED = 0

GRPO_SETTINGS: dict[str, Any] = {
    "per_device_train_batch_size": 8,
    "num_generations": 4,
    "max_completion_length": 32,
    "learning_rate": 1.0e-5,
    "beta": 0.001,
    "temperature": 1.0,
    "logging_steps": 1,
    "save_steps": 1000,
    "log_completions": False,
}
"""The GRPOConfig values both runs share (besides steps and seeds)."""

STAGES = """\
stages:
  r1_zero:
    from: base
    data: reasoning
    trainer: {trainer}
"""


def _pipeline_yaml(run_dir: Path, trainer: dict[str, Any]) -> str:
    """The pipeline file of one r1pipe run: built-in arithmetic data, the tiny model."""
    from tests.helpers import pipeline_header  # the repository root is on sys.path (above)

    data = {"reasoning": "{builtin: arithmetic, size: 256, test_size: 8, difficulty: 1}"}
    return (pipeline_header("bench-grpo", run_dir, seed=SEED, data=data)
            + STAGES.format(trainer=json.dumps(trainer)))

PLAIN_SCRIPT = textwrap.dedent('''\
    """A plain TRL GRPO script: what a user writes without r1pipe."""
    import json, re, sys, time

    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    args = json.loads(sys.argv[1])
    ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
    NUMBER = re.compile(r"-?\\d+(?:\\.\\d+)?")
    FORMAT = re.compile(r"^<think>.*?</think>\\s*<answer>.*?</answer>$", re.DOTALL)


    def accuracy(completions, answer, **kwargs):
        """Arithmetic answers are numbers: the last number of the answer, compared."""
        scores = []
        for completion, gold in zip(completions, answer):
            found = ANSWER.search(completion)
            numbers = NUMBER.findall(found.group(1) if found else completion)
            scores.append(1.0 if numbers and float(numbers[-1]) == float(gold) else 0.0)
        return scores


    def format_reward(completions, **kwargs):
        return [1.0 if FORMAT.match(c.strip()) else 0.0 for c in completions]


    class Log(TrainerCallback):
        def __init__(self, path):
            self.fh = open(path, "a")

        def on_log(self, a, state, control, logs=None, **kwargs):
            if logs:
                record = {"time": time.time(), "step": state.global_step, **logs}
                self.fh.write(json.dumps(record) + "\\n")
                self.fh.flush()


    dataset = load_dataset("json", data_files=args["prompts"], split="train")
    config = GRPOConfig(output_dir=args["output_dir"], seed=args["seed"],
                        data_seed=args["seed"], report_to="none", use_cpu=True, bf16=False,
                        fp16=False, reward_weights=[1.0, 0.1], max_steps=args["steps"],
                        **args["settings"])
    trainer = GRPOTrainer(model=args["model"], reward_funcs=[accuracy, format_reward],
                          args=config, train_dataset=dataset, callbacks=[Log(args["log"])])
    trainer.train()
    trainer.save_model(args["output_dir"] + "/final")
''')


def _r1pipe_command() -> list[str]:
    """`r1pipe` as installed beside this Python (the console script), else the module."""
    script = Path(sys.executable).parent / "r1pipe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "r1pipe.cli"]


def _env(cache: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "R1PIPE_CACHE": str(cache),
            "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def _run(cmd: list[str], env: dict[str, str], cwd: Path, label: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{label} failed with exit code {proc.returncode}")
    return seconds


def _steps(log: Path, warmup: int) -> dict[str, list[float]]:
    """Per-step wall time (between consecutive step logs) and TRL's step_time, after
    warm-up. Wall time of step k is the gap between the logs of steps k-1 and k."""
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
    steps = [m for m in lines if "step_time" in m]
    times = [m["time"] for m in steps]
    wall = [b - a for a, b in zip(times, times[1:], strict=False)]  # wall[i] is step i + 2
    return {"wall": wall[max(warmup - 1, 0):],
            "step_time": [m["step_time"] for m in steps][warmup:]}


def _export_prompts(pipeline_file: Path, out: Path) -> str:
    """The model folder and the rendered prompts exactly as r1pipe's r1_zero stage sees
    them, for the plain script."""
    from r1pipe.config import load
    from r1pipe.data.prepare import prompt_dataset
    from r1pipe.models import load_tokenizer, materialize

    cfg = load(pipeline_file)
    model = materialize(cfg.base_model, out.parent / "model-import")
    section = cfg.stages["r1_zero"]
    data, _ = prompt_dataset(cfg, section.data, section.prompts, load_tokenizer(model))
    data.select_columns(["prompt", "answer"]).to_json(str(out))
    return model


def _summary(runs: list[dict[str, list[float]]]) -> dict[str, Any]:
    wall = [x for r in runs for x in r["wall"]]
    step_time = [x for r in runs for x in r["step_time"]]
    return {"steps_measured": len(wall),
            "wall_per_step_s": {"median": statistics.median(wall), "mean": statistics.fmean(wall),
                                "min": min(wall), "max": max(wall)},
            "trl_step_time_s": {"median": statistics.median(step_time),
                                "mean": statistics.fmean(step_time)}}


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("trl", "transformers", "torch", "datasets", "accelerate"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/grpo.json")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out")
    parser.add_argument("--rounds", type=int, default=3, help="r1pipe/plain pairs, alternated")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of both runs (1: least disturbed by other load)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    opts = parser.parse_args()
    if opts.steps <= opts.warmup + 1:
        raise SystemExit("--steps must exceed --warmup + 1")

    work = Path(tempfile.mkdtemp(prefix="bench-grpo-"))
    env = _env(work / "cache", opts.threads)
    trainer = {**GRPO_SETTINGS, "max_steps": opts.steps}
    r1pipe_runs: list[dict[str, list[float]]] = []
    plain_runs: list[dict[str, list[float]]] = []
    process_s: dict[str, list[float]] = {"r1pipe": [], "plain": []}
    load_before = os.getloadavg()
    try:
        os.environ["R1PIPE_CACHE"] = str(work / "cache")
        first_yaml = work / "pipeline-0.yaml"
        first_yaml.write_text(_pipeline_yaml(work / "run-0", trainer))
        model = _export_prompts(first_yaml, work / "prompts.jsonl")
        (work / "plain.py").write_text(PLAIN_SCRIPT)
        for round_ in range(opts.rounds):
            yaml_file = work / f"pipeline-{round_}.yaml"
            run_dir = work / f"run-{round_}"
            yaml_file.write_text(_pipeline_yaml(run_dir, trainer))
            print(f"round {round_ + 1}/{opts.rounds}: r1pipe r1-zero ...", flush=True)
            process_s["r1pipe"].append(_run([*_r1pipe_command(), "r1-zero", str(yaml_file)],
                                            env, work, "r1pipe r1-zero"))
            r1pipe_runs.append(_steps(run_dir / "r1_zero/metrics.jsonl", opts.warmup))
            print(f"round {round_ + 1}/{opts.rounds}: plain TRL script ...", flush=True)
            log = work / f"plain-{round_}.jsonl"
            args = {"model": model, "prompts": str(work / "prompts.jsonl"),
                    "output_dir": str(work / f"plain-out-{round_}"), "seed": SEED,
                    "steps": opts.steps, "settings": GRPO_SETTINGS, "log": str(log)}
            process_s["plain"].append(_run([sys.executable, str(work / "plain.py"),
                                            json.dumps(args)], env, work, "plain TRL script"))
            plain_runs.append(_steps(log, opts.warmup))
    finally:
        if not opts.keep:
            shutil.rmtree(work, ignore_errors=True)

    r1, plain = _summary(r1pipe_runs), _summary(plain_runs)
    ratio = r1["wall_per_step_s"]["median"] / plain["wall_per_step_s"]["median"]
    result = {
        "benchmark": "GRPO per-step time: r1pipe r1-zero (CLI) vs a plain TRL script",
        "model": "r1pipe builtin tiny-llama (2 layers, hidden 64)",
        "settings": {**GRPO_SETTINGS, "max_steps": opts.steps, "warmup_steps_dropped":
                     opts.warmup, "rounds": opts.rounds, "seed": SEED,
                     "torch_threads": opts.threads,
                     "rewards": "accuracy 1.0 + format 0.1", "data": "builtin arithmetic",
                     "prompt template": "r1_zero"},
        "r1pipe": {**r1, "process_wall_s": process_s["r1pipe"],
                   "per_run_wall_per_step_s": [r["wall"] for r in r1pipe_runs]},
        "plain_trl": {**plain, "process_wall_s": process_s["plain"],
                      "per_run_wall_per_step_s": [r["wall"] for r in plain_runs]},
        "ratio_wall_per_step": round(ratio, 4),
        "ratio_trl_step_time": round(r1["trl_step_time_s"]["median"]
                                     / plain["trl_step_time_s"]["median"], 4),
        "ratio_process_wall": round(statistics.median(process_s["r1pipe"])
                                    / statistics.median(process_s["plain"]), 4),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "loadavg_before": load_before,
                    "loadavg_after": os.getloadavg()},
        "versions": _versions(),
    }
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wall per step: r1pipe {r1['wall_per_step_s']['median'] * 1000:.0f} ms, plain TRL "
          f"{plain['wall_per_step_s']['median'] * 1000:.0f} ms, ratio {ratio:.3f} -> {out}")


if __name__ == "__main__":
    main()
