"""`r1pipe preflight`: the shipped configs/r1.yaml fits 8 x 80 GiB; each defect issue 30 found
in the config it shipped before (S1, S2, S4, S9, R2) is refused with exit 2 and the YAML key
to change; the memory formula agrees with measured peaks of real CPU training steps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.hub_cache import MODELS, seed_hub_cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The models' configs and datasets' cards of configs/r1.yaml in an offline HF cache."""
    from huggingface_hub import constants

    cache = seed_hub_cache(tmp_path / "hub")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(ROOT)  # configs/r1.yaml names configs/accelerate/zero3.yaml
    return cache


def preflight(*args: str) -> tuple[int, str]:
    from r1pipe.cli import app

    result = CliRunner().invoke(app, ["preflight", "configs/r1.yaml", "--gpus-per-node", "8",
                                      "--gpu-memory", "80", *args],
                                env={"COLUMNS": "250"})
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes else "")


def test_the_shipped_r1_config_fits_8_h100s(hub_cache: Path) -> None:
    code, out = preflight()
    assert code == 0, out[-3000:]
    assert "preflight OK" in out and "FAIL" not in out
    assert "memory per GPU (zero3, 8 GPUs)" in out  # the table was printed
    assert "reasoning samples reachable" in out


def test_r1_yaml_reaches_what_its_stages_are_meant_to_see() -> None:
    """R4: prompts of up to 2,048 tokens (long code problems) in the RL and sampling stages,
    within max_model_len with the 32k answers; R5: harmlessness scores the whole response;
    W5: rejection sampling's SFT checkpoints every 100 steps."""
    from r1pipe.config import load

    cfg = load(ROOT / "configs/r1.yaml")
    max_model_len = cfg.generation.vllm["max_model_len"]
    for name in ("r1_zero", "reasoning_rl", "all_scenario_rl"):
        section = cfg.stages[name]
        budget = section.prompts.max_prompt_tokens
        assert budget >= 1024
        assert budget + section.trainer["max_completion_length"] <= max_model_len
    sampling = cfg.stages["reject_sample"]
    assert sampling.prompts.max_prompt_tokens + cfg.generation.max_new_tokens <= max_model_len
    assert sampling.prompts.max_prompt_tokens >= 2048
    harmless = cfg.stages["all_scenario_rl"].rewards["harmlessness"]
    assert harmless["max_length"] >= 2048 + 32768
    assert sampling.trainer["save_steps"] <= 100


def test_micro_batch_16_of_32k_tokens_is_refused(hub_cache: Path) -> None:
    code, out = preflight("stages.r1_zero.trainer.per_device_train_batch_size=16")
    assert code == 2, out[-3000:]
    assert "error: stages.r1_zero.trainer.per_device_train_batch_size:" in out
    assert "per_device_train_batch_size 2 fits" in out  # and what does


def test_a_math_base_with_a_4k_context_is_refused(hub_cache: Path, tmp_path: Path) -> None:
    folder = tmp_path / "qwen-math-7b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MODELS["Qwen/Qwen2.5-Math-7B"]))
    code, out = preflight(f"base_model={folder}")
    assert code == 2, out[-3000:]
    assert "error: generation.vllm.max_model_len:" in out and "has 4096" in out
    # GRPO's 33.8k-token sequences are past the base's context too (R6)
    assert "error: stages.r1_zero.trainer.max_completion_length:" in out


@pytest.mark.parametrize(("item", "override", "key"), [
    ("S1", "eval.benchmarks.livecodebench.source.hub=livecodebench/code_generation_lite",
     "eval.benchmarks.livecodebench.source.hub"),
    ("S2", "stages.reasoning_rl.trainer.per_device_train_batch_size=16",
     "stages.reasoning_rl.trainer.per_device_train_batch_size"),
    ("S4", "stages.cold_start.collect.r1_zero.refiner=Qwen/Qwen2.5-72B-Instruct",
     "stages.cold_start.collect.r1_zero.refiner"),
    ("S4", "generation.vllm.tensor_parallel_size=2", "generation.vllm.tensor_parallel_size"),
    ("S9", "stages.distill.students.qwen-7b=Qwen/Qwen2.5-Math-7B",
     "stages.distill.students.qwen-7b.trainer.max_length"),
    ("R2", "stages.reject_sample.data=reasoning", "stages.reject_sample.data"),
])
def test_each_defect_of_the_old_config_is_refused_by_key(hub_cache: Path, item: str,
                                                        override: str, key: str) -> None:
    code, out = preflight(override)
    assert code == 2, f"{item}: {out[-3000:]}"
    assert f"error: {key}:" in out or f"error: <command line override>: {key}:" in out, \
        f"{item}: {out[-3000:]}"


def test_r2_ceiling_is_the_mixtures_first_exhausted_source(hub_cache: Path) -> None:
    """MATH's 7,500 prompts at weight 0.35 end the old mixture: 21,428 prompts x 4."""
    code, out = preflight("stages.reject_sample.data=reasoning")
    assert code == 2
    assert "has 85,712 (21,428 prompts)" in out


def test_dry_run_prints_the_reachable_ceiling_beside_mix(hub_cache: Path) -> None:
    from r1pipe.cli import app

    out = CliRunner().invoke(app, ["run", "configs/r1.yaml", "--dry-run"]).output
    assert "reject_sample: mix.reasoning 600,000 of at most 952,932" in out
    short = CliRunner().invoke(app, ["run", "configs/r1.yaml", "--dry-run",
                                     "stages.reject_sample.data=reasoning"]).output
    assert ("warning: reject_sample: mix.reasoning 600,000 is out of reach: at most 85,712 "
            "(21,428 prompts, keep_per_prompt 4)") in short


def test_offline_with_nothing_cached_is_incomplete_not_ok(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(ROOT)
    code, out = preflight()
    assert code == 0, out[-3000:]
    assert "preflight incomplete" in out and "preflight OK" not in out
    from r1pipe.config import load
    from r1pipe.preflight import Preflight, cluster_from

    rows = Preflight(load("configs/r1.yaml"), cluster_from(8, 80)).run().rows
    base = next(r for r in rows if r.status == "n/a" and "Qwen/Qwen2.5-7B" in r.check)
    assert "hf download Qwen/Qwen2.5-7B --include 'config.json'" in base.have


# ---------------------------------------------------------------------------------------
# The arithmetic: shapes and contexts
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llama", "qwen2", "llama-classifier"])
def test_parameter_count_matches_the_model_transformers_builds(kind: str) -> None:
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        LlamaForSequenceClassification,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    from r1pipe.memory import ModelShape

    dims = dict(vocab_size=320, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2)
    if kind == "qwen2":
        config, model_cls = Qwen2Config(**dims, tie_word_embeddings=False), Qwen2ForCausalLM
    elif kind == "llama":
        config, model_cls = LlamaConfig(**dims, tie_word_embeddings=True), LlamaForCausalLM
    else:
        config = LlamaConfig(**dims, num_labels=1)
        model_cls = LlamaForSequenceClassification
    model = model_cls(config)
    shape = ModelShape.from_config(config.to_dict(), classifier=kind == "llama-classifier")
    assert shape.params == sum(p.numel() for p in model.parameters())


def test_context_follows_vllms_rules() -> None:
    from r1pipe.memory import context_length

    assert context_length(MODELS["meta-llama/Llama-3.1-8B"]) == 131072  # llama3: counted
    assert context_length(MODELS["Qwen/Qwen2.5-Math-7B"]) == 4096
    yarn = {**MODELS["Qwen/Qwen2.5-72B-Instruct"], "rope_scaling": {
        "type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}
    assert context_length(yarn) == 131072


def test_a_stage_launch_is_merged_over_the_global_one(tmp_path: Path) -> None:
    """S5: `launch: {num_machines: 2}` on a stage keeps the global ZeRO-3 config and its
    8 processes (it used to replace them: one DDP process per node)."""
    from r1pipe.config import load_text
    from r1pipe.pipeline import stage_launch

    cfg = load_text(
        "name: m\nbase_model: my-org/tiny\ndata: {reasoning: {builtin: arithmetic}}\n"
        "launch: {num_processes: 8, accelerate_config: configs/accelerate/zero3.yaml}\n"
        "stages:\n  r1_zero: {launch: {num_machines: 2, main_process_ip: node0}}\n"
        "  cold_start: {launch: {accelerate_config: null, num_processes: 1}}\n")
    merged = stage_launch(cfg, "r1_zero")
    assert (merged.num_processes, merged.num_machines) == (8, 2)
    assert merged.accelerate_config == "configs/accelerate/zero3.yaml"
    assert merged.main_process_ip == "node0"
    cleared = stage_launch(cfg, "cold_start")
    assert cleared.accelerate_config is None and not cleared.distributed


# ---------------------------------------------------------------------------------------
# The memory formula against measurement
# ---------------------------------------------------------------------------------------

MEASURE = r'''
import json, sys
from pathlib import Path
import torch
from torch.profiler import ProfilerActivity, profile
from transformers import LlamaConfig, LlamaForCausalLM
from datasets import Dataset
from r1pipe.testing import build_tiny_tokenizer
from r1pipe.trl_cpu import dense_lm_head_on_cpu

kind, folder, batch, length, ckpt = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), \
    int(sys.argv[4]), sys.argv[5] == "1"
tok = build_tiny_tokenizer(1024)
if not (folder / "config.json").exists():
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=768,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=64, max_position_embeddings=2048, tie_word_embeddings=False,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
dense_lm_head_on_cpu()  # the CPU path r1pipe's trainers take
common = dict(output_dir=str(folder / "out"), per_device_train_batch_size=batch, max_steps=2,
              use_cpu=True, gradient_checkpointing=ckpt, report_to="none", save_strategy="no",
              bf16=False, disable_tqdm=True, seed=0)
words = "the quick brown fox jumps over the lazy dog and then ".split()
prompt = " ".join(words[:9])
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    if kind == "sft":
        from trl import SFTConfig, SFTTrainer
        data = Dataset.from_list([{"prompt": prompt, "completion": " ".join(words * 200)}] * 4 * batch)
        trainer = SFTTrainer(model=model, args=SFTConfig(**common, max_length=length),
                             train_dataset=data, processing_class=tok)
    else:
        from trl import GRPOConfig, GRPOTrainer
        data = Dataset.from_list([{"prompt": prompt}] * 4 * batch)
        def length_reward(completions, **kwargs):
            return [float(len(c)) for c in completions]
        trainer = GRPOTrainer(model=model, reward_funcs=[length_reward], train_dataset=data,
                              processing_class=tok, args=GRPOConfig(
                                  **common, num_generations=4, max_completion_length=length,
                                  beta=0.04, use_vllm=False, temperature=1.0))
    trainer.train()
trace = folder / f"trace-{kind}.json"
prof.export_chrome_trace(str(trace))
events = json.loads(trace.read_text())["traceEvents"]
peak = max(e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]")
print(json.dumps({"peak": peak, "prompt_tokens": len(tok(prompt)["input_ids"])}))
'''


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "batch", "length", "ckpt"), [
    ("sft", 4, 512, False), ("sft", 4, 512, True), ("grpo", 4, 256, False),
    ("grpo", 8, 256, True)])
def test_estimate_is_within_25_percent_of_the_measured_peak(tmp_path_factory, kind: str,
                                                            batch: int, length: int,
                                                            ckpt: bool) -> None:
    """The CPU allocator's own total (torch.profiler's `Total Allocated`) over model load,
    trainer set-up and two steps (optimizer states exist from the first), against
    `r1pipe.memory.training_memory` for the same settings (world 1, fp32, dense logits)."""
    import subprocess
    import sys

    from r1pipe.memory import MicroBatch, ModelShape, Parallelism, Precision, training_memory

    folder = tmp_path_factory.getbasetemp() / "measured-model"
    folder.mkdir(exist_ok=True)
    script = folder.parent / "measure.py"
    script.write_text(MEASURE)
    proc = subprocess.run([sys.executable, str(script), kind, str(folder), str(batch),
                           str(length), "1" if ckpt else "0"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    shape = ModelShape.from_config(json.loads((folder / "config.json").read_text()))
    grpo = kind == "grpo"
    seq = measured["prompt_tokens"] + length if grpo else length
    estimate = training_memory(shape, parallel=Parallelism(1, "none", deepspeed=False),
                               batch=MicroBatch(batch, seq, length if grpo else length - 16),
                               precision=Precision(4), checkpointing=ckpt, reference=grpo,
                               fused_lm_head=False)
    ratio = estimate.total / measured["peak"]
    print(f"{kind} batch {batch} x {seq} checkpointing {ckpt}: estimate "
          f"{estimate.total / 2**20:.1f} MiB, measured {measured['peak'] / 2**20:.1f} MiB")
    assert 0.75 <= ratio <= 1.25, (ratio, estimate, measured)
