"""scripts/gpu_check.py's own logic on CPU (the script runs on a CUDA machine only): rewards
that scored nothing on a whole step fail a GRPO stage, the per-step GPU memory peak is read
beside preflight's estimate, the versions line with and without nvidia-smi, and the rank
check on more than 8 GPUs. Plus `r1pipe.gpu_memory`'s callback: nothing on CPU, the peak of
each step where CUDA answers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metrics(path: Path, steps: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"time": 0, "step": i + 1, "loss": 0.1, **s}) for i, s in enumerate(steps)]
    lines.append(json.dumps({"step": len(steps), "train_runtime": 9.0}))  # the last log
    path.write_text("\n".join(lines) + "\n")
    return path


ACC, FMT, RM = "rewards/accuracy/mean", "rewards/format/mean", "rewards/reward_model/mean"


# ----------------------------------------------------------------- rewards


def test_a_reward_empty_on_a_whole_step_fails_r1_zero(gpu_check: ModuleType,
                                                      tmp_path: Path) -> None:
    nan = float("nan")
    good = _metrics(tmp_path / "good/metrics.jsonl",
                    [{ACC: 0.25, FMT: 0.5}, {ACC: 0.0, FMT: 1.0}])
    assert gpu_check.reward_problems(good, one_task_type=True) == []
    bad = _metrics(tmp_path / "bad/metrics.jsonl",
                   [{ACC: 0.25, FMT: 0.5}, {ACC: nan, FMT: 0.5}, {ACC: None, FMT: 0.5}])
    assert "NaN" in bad.read_text()  # as json.dumps writes TRL's nan mean
    problems = gpu_check.reward_problems(bad, one_task_type=True)
    assert problems == ["reward 'accuracy' scored no completion (NaN/None) at steps [2, 3]"]


def test_a_mixture_allows_routed_gaps_but_not_a_step_without_any_reward(
        gpu_check: ModuleType, tmp_path: Path) -> None:
    """all_scenario_rl: one prompt a step, so the reward model is None on a reasoning step
    and accuracy on a general one; a step where every reward is empty still fails."""
    nan = float("nan")
    routed = _metrics(tmp_path / "a/metrics.jsonl",
                      [{ACC: 1.0, FMT: 0.5, RM: nan}, {ACC: nan, FMT: nan, RM: 0.3}])
    assert gpu_check.reward_problems(routed, one_task_type=False) == []
    assert len(gpu_check.reward_problems(routed, one_task_type=True)) == 3
    dead = _metrics(tmp_path / "b/metrics.jsonl",
                    [{ACC: 1.0, FMT: 0.5, RM: nan}, {ACC: None, FMT: nan, RM: nan}])
    assert gpu_check.reward_problems(dead, one_task_type=False) == [
        "no reward scored any completion (NaN/None) at steps [2]"]
    assert gpu_check.reward_problems(dead, one_task_type=True) == [
        "no reward scored any completion (NaN/None) at steps [2]",
        "reward 'reward_model' scored no completion (NaN/None) at steps [1, 2]"]


def test_a_grpo_stage_that_logged_no_reward_fails(gpu_check: ModuleType,
                                                  tmp_path: Path) -> None:
    none = _metrics(tmp_path / "n/metrics.jsonl", [{"kl": 0.0}])
    assert gpu_check.reward_problems(none, one_task_type=False)[0].startswith(
        "no rewards/<name>/mean logged")
    assert gpu_check.reward_problems(tmp_path / "missing.jsonl", one_task_type=True)


# ----------------------------------------------------------------- memory


def test_memory_line_puts_the_step_peak_beside_the_estimate(gpu_check: ModuleType,
                                                            tmp_path: Path) -> None:
    key = gpu_check.MEMORY_KEY
    from r1pipe.gpu_memory import KEY

    assert key == KEY
    metrics = _metrics(tmp_path / "m/metrics.jsonl",
                       [{ACC: 1.0, key: 3.25}, {ACC: 1.0, key: 5.5}, {ACC: 1.0, key: 4.0}])
    assert gpu_check.memory_line(metrics, "12.3 GiB (memory per GPU (none, 1 GPUs))") == (
        "max_memory_allocated 5.50 GiB (step 2, 3 steps); "
        "preflight estimate 12.3 GiB (memory per GPU (none, 1 GPUs))")
    bare = _metrics(tmp_path / "b/metrics.jsonl", [{ACC: 1.0}])
    assert gpu_check.memory_line(bare, None).startswith("max_memory_allocated not logged")
    assert gpu_check.memory_line(bare, None).endswith("preflight estimate n/a")


SMOLLM2_135M = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                "num_hidden_layers": 30, "num_key_value_heads": 3, "vocab_size": 49152,
                "max_position_embeddings": 8192, "tie_word_embeddings": True,
                "torch_dtype": "bfloat16"}


def test_memory_estimates_read_the_imported_gguf_model(gpu_check: ModuleType,
                                                       tmp_path: Path) -> None:
    """Preflight reads no GGUF file: the estimate uses the folder r1pipe imported it to."""
    run_dir = tmp_path / "run"
    assert gpu_check.imported_model(run_dir) is None
    folder = run_dir / "_imports" / "gguf-abc" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SMOLLM2_135M))
    assert gpu_check.imported_model(run_dir) == folder
    extra = gpu_check.overrides(2, vllm=True, deepspeed=False, run_dir=run_dir)
    estimates = gpu_check.memory_estimates(extra, 2, 80 * 1024**3, folder)
    assert set(estimates) == {"r1_zero", "reject_sample", "all_scenario_rl"}
    assert all(v.endswith("GiB (memory per GPU (fsdp, 2 GPUs))") for v in estimates.values())


# ----------------------------------------------------------------- versions


FAKE_SMI = """#!/bin/sh
if [ "$1" = "--query-gpu=driver_version" ]; then
  echo "550.54.15"; echo "550.54.15"; exit 0
fi
echo "+-----------------------------------------------------------------------------+"
echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4       |"
echo "|-------------------------------+----------------------+----------------------+"
"""


def _torch(cuda: str | None) -> SimpleNamespace:
    return SimpleNamespace(__version__="2.9.1+cu128", version=SimpleNamespace(cuda=cuda))


def test_versions_line_reads_the_driver_from_nvidia_smi(
        gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert gpu_check.versions(_torch("12.8")) == (
        "torch 2.9.1+cu128, CUDA runtime 12.8, driver 550.54.15 (supports CUDA 12.4)")


def test_versions_line_without_nvidia_smi_says_so(
        gpu_check: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    assert gpu_check.versions(_torch("12.8")) == (
        "torch 2.9.1+cu128, CUDA runtime 12.8, driver ? (no nvidia-smi on PATH)")
    assert "CUDA runtime none (CPU build)" in gpu_check.versions(_torch(None))
    broken = tmp_path / "nvidia-smi"  # a driver that fails: the line still comes
    broken.write_text("#!/bin/sh\nexit 9\n")
    broken.chmod(0o755)
    assert gpu_check.versions(_torch("12.8")).endswith("driver ? (supports CUDA ?)")


# ----------------------------------------------------------------- ranks


@pytest.mark.parametrize("gpus", [1, 2, 8, 16, 24, 100])
def test_every_rank_owns_a_sampling_chunk(gpu_check: ModuleType, gpus: int) -> None:
    """The config's 64 prompts in chunks of 8 are 8 chunks: on 16 GPUs ranks 8-15 sampled
    nothing, and the check, expecting ranks 0-15, failed a working machine."""
    assert gpu_check.expected_ranks(gpus) == set(range(gpus))
    prompts, chunk = gpu_check.sampling_plan(gpus)
    assert math.ceil(prompts / chunk) >= gpus
    extra = gpu_check.overrides(gpus, vllm=True, deepspeed=False, run_dir=Path("/r"))
    changed = [o for o in extra if o.startswith(("data.sampling", "stages.reject_sample.chunk"))]
    assert bool(changed) == (gpus > 8)  # up to 8 GPUs the config as it is
    if gpus == 16:
        assert changed == ["stages.reject_sample.chunk_size=4"]


def test_compact_rank_list(gpu_check: ModuleType) -> None:
    assert gpu_check.compact(set(range(16))) == "0-15"
    assert gpu_check.compact({0, 1}) == "[0, 1]" and gpu_check.compact({0, 2, 3}) == "[0, 2, 3]"


# ----------------------------------------------------------------- r1pipe.gpu_memory


def _run_steps(callback: object, steps: int) -> list[dict]:
    args = state = control = SimpleNamespace()
    logged = []
    callback.on_train_begin(args, state, control)
    for _ in range(steps):
        callback.on_step_end(args, state, control)
        logs = {"loss": 0.5}
        callback.on_log(args, state, control, logs=logs)
        logged.append(logs)
    return logged


def test_gpu_memory_callback_does_nothing_on_cpu() -> None:
    import torch

    from r1pipe.gpu_memory import callback

    assert not torch.cuda.is_available()
    assert _run_steps(callback(), 2) == [{"loss": 0.5}, {"loss": 0.5}]


def test_gpu_memory_callback_logs_each_steps_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA faked: each step's log gets the allocator's peak since the step before (read,
    then reset), in GiB."""
    import torch

    from r1pipe.gpu_memory import GIB, KEY, callback

    peaks = iter([3 * GIB, GIB // 2])
    calls: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: calls.append("read")
                        or next(peaks))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: calls.append("reset"))
    logged = _run_steps(callback(), 2)
    assert logged == [{"loss": 0.5, KEY: 3.0}, {"loss": 0.5, KEY: 0.5}]
    assert calls == ["reset", "read", "reset", "read", "reset"]


def test_the_script_prints_versions_first_and_plans_16_gpus(tmp_path: Path) -> None:
    """`--dry-run --gpus 16` with a fake nvidia-smi on PATH: the versions line comes first,
    and the 16-GPU overrides (chunks of 4) validate and plan."""
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, str(REPO / "scripts/gpu_check.py"), "--dry-run",
                          "--gpus", "16", "--run-dir", str(tmp_path / "run")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    first = out.stdout.splitlines()[0]
    assert first.startswith("versions: torch ") and "driver 550.54.15 (supports CUDA 12.4)" in first
    assert "stages.reject_sample.chunk_size=4" in out.stdout
