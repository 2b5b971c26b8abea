"""Precision on any machine (r1pipe.precision): `auto` is bf16 where bf16 is native and
float32 where it is emulated, for every consumer; an explicit bf16 is kept and warned about.

The probe is forced both ways (`R1PIPE_NATIVE_BF16`, what a user can set too), so these tests
check the decisions on whichever CPU class runs them; `test_probe_*` checks the probe itself
against what the kernels do here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from r1pipe import precision
from r1pipe.artifacts import RunLayout
from r1pipe.config import GenerationConfig, GRPOStageConfig, SFTStageConfig, load_text
from r1pipe.contract import ResumeInfo, StageContext
from tests.helpers import pipeline_header

REPO = Path(__file__).resolve().parents[1]
CLASSES = [pytest.param(True, id="native-bf16"), pytest.param(False, id="no-native-bf16")]


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch):
    """Force the CPU probe: `probe(True)` = a CPU with bf16 kernels, `probe(False)` = AVX2."""
    precision._WARNED.clear()

    def force(native: bool) -> None:
        monkeypatch.setenv(precision.NATIVE_BF16_ENV, "1" if native else "0")
        precision._WARNED.clear()

    yield force
    precision._WARNED.clear()


def _ctx(tmp_path: Path, config: Any, name: str = "stage") -> StageContext:
    pipeline = load_text(pipeline_header("prec", tmp_path / "run"))
    return StageContext(name, config, pipeline, RunLayout(tmp_path / "run"), {}, ResumeInfo(),
                        "fp")


def _expected(native: bool) -> str:
    return "bfloat16" if native else "float32"


# ------------------------------------------------------------------------------ the probe


def test_probe_matches_what_the_kernels_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unforced, the probe is oneDNN's own answer, and a native answer means bf16 matmuls are
    not the 40-90x emulation: at least a third of float32's speed (native: 1-3x faster)."""
    monkeypatch.delenv(precision.NATIVE_BF16_ENV, raising=False)
    m = precision.machine()
    assert m.device == "cpu" and not m.forced
    assert m.native_bf16 == precision.probe_cpu_bf16()
    assert m.cpu_class in ("AMX", "AVX512-BF16", "AVX-512", "AVX2", "ARM BF16", "ARM") or m.cpu_class
    if m.native_bf16:
        assert precision.bf16_slowdown() < 3.0
    assert m.label.startswith("cpu · ")


def test_probe_sees_an_avx2_only_cpu_as_emulated() -> None:
    """oneDNN capped at AVX2 (what an AVX2-only CPU offers) makes the probe say "emulated",
    whatever this machine is: the probe follows the kernels, not the CPU's name."""
    code = ("from r1pipe import precision; m = precision.machine(); "
            "print(m.native_bf16, m.forced)")
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "PATH": "/usr/bin:/bin", "HOME": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_cpu_class_from_flags() -> None:
    assert precision.cpu_class({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}) == "AMX"
    assert precision.cpu_class({"avx2", "avx512f", "avx512_bf16"}) == "AVX512-BF16"
    assert precision.cpu_class({"avx2", "avx512f"}) == "AVX-512"
    assert precision.cpu_class({"avx2", "fma"}) == "AVX2"
    assert precision.cpu_class({"asimd", "bf16"}) == "ARM BF16"
    assert precision.cpu_class({"asimd"}) == "ARM"


# ------------------------------------------------------------------- trainer arguments


@pytest.mark.parametrize("native", CLASSES)
def test_sft_and_grpo_trainer_args_follow_the_machine(tmp_path: Path, probe, native: bool) -> None:
    from r1pipe.train import GRPO_DEFAULTS, SFT_DEFAULTS, build_args, cpu_defaults

    probe(native)
    sft = _ctx(tmp_path, SFTStageConfig(trainer={"max_steps": 1}), "sft")
    args = build_args("SFTConfig", sft, {**SFT_DEFAULTS, **cpu_defaults()})
    assert (args.bf16, args.fp16, args.use_cpu) == (native, False, True)
    grpo = _ctx(tmp_path, GRPOStageConfig(trainer={"max_steps": 1, "bf16": "auto",
                                                   "num_generations": 2,
                                                   "per_device_train_batch_size": 2}), "rl")
    args = build_args("GRPOConfig", grpo, {**GRPO_DEFAULTS, **cpu_defaults()})
    assert (args.bf16, args.fp16) == (native, False)


@pytest.mark.parametrize("native", CLASSES)
def test_explicit_bf16_is_kept_and_warned_about_once_where_emulated(
        tmp_path: Path, probe, native: bool, caplog: pytest.LogCaptureFixture) -> None:
    from r1pipe.train import SFT_DEFAULTS, build_args

    probe(native)
    ctx = _ctx(tmp_path, SFTStageConfig(trainer={"max_steps": 1, "bf16": True}), "cold_start")
    with caplog.at_level(logging.WARNING, logger="r1pipe.precision"):
        assert build_args("SFTConfig", ctx, SFT_DEFAULTS).bf16 is True
        assert build_args("SFTConfig", ctx, SFT_DEFAULTS).bf16 is True
    warnings = [r.getMessage() for r in caplog.records if r.name == "r1pipe.precision"]
    if native:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warnings[0].startswith("stages.cold_start.trainer.bf16: true on a CPU without "
                                      "bf16 kernels")
        assert "R1PIPE_NATIVE_BF16=0 says so" in warnings[0]


def test_explicit_false_and_fp16(probe) -> None:
    probe(True)
    assert precision.trainer_precision({"bf16": False}, where="t") == {"bf16": False,
                                                                       "fp16": False}
    assert precision.trainer_precision({"fp16": True}, where="t") == {"bf16": False, "fp16": True}
    with pytest.raises(ValueError, match="t.bf16 and t.fp16 are both true"):
        precision.trainer_precision({"bf16": True, "fp16": True}, where="t")


def test_gpu_auto_is_bf16_or_fp16(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU `auto` is bf16 where the GPU has it, fp16 (AMP) on one that has not; the CPU
    override does not apply to GPUs. (CUDA answered as such a GPU would; gpu-check runs it.)"""
    import torch

    monkeypatch.setenv(precision.NATIVE_BF16_ENV, "0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for supported, expected in ((True, {"bf16": True, "fp16": False}),
                                (False, {"bf16": False, "fp16": True})):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, s=supported, **k: s)
        assert precision.trainer_precision({}, where="t") == expected
        assert precision.engine_dtype("auto", on_cpu=False, where="g") == "auto"


# ------------------------------------------------------------------------- the engines


@pytest.mark.parametrize("native", CLASSES)
def test_r1pipes_vllm_engine_and_the_eval_engine_get_the_resolved_dtype(
        tiny_model_dir: Path, probe, native: bool) -> None:
    """r1pipe's vLLM generator (rejection sampling, collection, prompt filter) and the
    evaluation (the same generator, from `generation:`) get float32 or bf16 as the probe says;
    an explicit dtype stands."""
    from r1pipe.generation.vllm import _engine_kwargs

    probe(native)
    demo = load_text((REPO / "configs/demo.yaml").read_text(), file="configs/demo.yaml")
    assert demo.generation.dtype == "auto"
    assert _engine_kwargs(str(tiny_model_dir), demo.generation, 0, True)["dtype"] == \
        _expected(native)
    assert _engine_kwargs(str(tiny_model_dir), GenerationConfig(dtype="float32"), 0,
                          True)["dtype"] == "float32"
    assert _engine_kwargs(str(tiny_model_dir), GenerationConfig(), 0, False)["dtype"] == "auto"


@pytest.mark.parametrize("native", CLASSES)
def test_the_hf_engine_loads_weights_in_the_resolved_dtype(tiny_model_dir: Path, probe,
                                                           native: bool) -> None:
    import torch

    from r1pipe.generation.hf import HFGenerator

    probe(native)
    gen = HFGenerator(str(tiny_model_dir), GenerationConfig(backend="hf"), seed=0)
    assert {p.dtype for p in gen.model.parameters()} == {getattr(torch, _expected(native))}


@pytest.mark.parametrize("native", CLASSES)
def test_trls_colocated_engine_gets_the_resolved_dtype(monkeypatch: pytest.MonkeyPatch, probe,
                                                       native: bool) -> None:
    """TRL builds the colocated `vllm.LLM` with no dtype; on CPU r1pipe's wrapper adds the
    stage's resolved `generation.dtype` (an explicit one in TRL's call would stand)."""
    from trl.generation import vllm_generation

    from r1pipe.vllm_cpu import eager_colocated_engine_on_cpu

    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(vllm_generation, "LLM", lambda **kw: seen.append(kw))
    probe(native)
    assert eager_colocated_engine_on_cpu("auto") is True
    vllm_generation.LLM(model="m")
    vllm_generation.LLM(model="m", dtype="float16")
    assert [s["dtype"] for s in seen] == [_expected(native), "float16"]
    eager_colocated_engine_on_cpu("float32")  # the next stage's setting reaches the wrapper
    vllm_generation.LLM(model="m")
    assert seen[-1]["dtype"] == "float32"


@pytest.mark.parametrize("native", CLASSES)
def test_reward_models_follow_the_machine(probe, native: bool) -> None:
    from r1pipe.rewards.model import resolve_placement

    probe(native)
    assert resolve_placement("auto", "auto") == ("cpu", _expected(native))
    assert resolve_placement("cpu", "float32") == ("cpu", "float32")
    assert resolve_placement("cpu", "bfloat16") == ("cpu", "bfloat16")  # asked for: kept


def test_engine_bf16_asked_for_on_an_emulating_cpu_is_warned(
        probe, caplog: pytest.LogCaptureFixture) -> None:
    probe(False)
    with caplog.at_level(logging.WARNING, logger="r1pipe.precision"):
        assert precision.engine_dtype("bfloat16", on_cpu=True, where="generation.dtype") == \
            "bfloat16"
    assert any(r.getMessage().startswith("generation.dtype: bfloat16 on a CPU without bf16")
               for r in caplog.records)


# ------------------------------------------------------------------- config and backend


def test_validate_takes_auto_and_refuses_both_precisions(tmp_path: Path) -> None:
    from r1pipe.config import ConfigError, trainer_problem

    assert trainer_problem("SFTConfig", {"bf16": "auto", "fp16": "auto"}) is None
    key, message = trainer_problem("SFTConfig", {"bf16": "maybe"})  # type: ignore[misc]
    assert key == "bf16" and "must be bool" in message
    body = """
stages:
  cold_start:
    from: base
    data: reasoning
    trainer: {bf16: true, fp16: true}
"""
    with pytest.raises(ConfigError, match=r"p.yaml:\d+: stages.cold_start.trainer.fp16: 'bf16' "
                                          r"and 'fp16' are both true"):
        load_text(pipeline_header("both", tmp_path / "run") + body, file="p.yaml")


def test_no_shipped_config_hard_codes_bf16() -> None:
    """The shipped configs leave precision to `auto` (r1.yaml keeps bf16 on GPUs through it)."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        text = path.read_text()
        assert "bf16: true" not in text and "dtype: bfloat16" not in text, path.name


def test_backend_auto_is_vllm_where_installed_and_hf_where_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from r1pipe.generation.factory import resolved_backend, vllm_installed

    assert resolved_backend("hf") == "hf" and resolved_backend("openai") == "openai"
    assert resolved_backend("auto") == ("vllm" if vllm_installed() else "hf")
    monkeypatch.setitem(sys.modules, "vllm", None)  # as `import vllm` fails without it
    assert not vllm_installed()
    assert resolved_backend("auto") == "hf"


def test_grpo_rollouts_fall_back_to_transformers_without_vllm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from r1pipe.train import build_args, rollouts_without_vllm

    trainer = {"max_steps": 1, "use_vllm": True, "num_generations": 2,
               "per_device_train_batch_size": 2}
    ctx = _ctx(tmp_path, GRPOStageConfig(trainer=trainer), "r1_zero")
    args = build_args("GRPOConfig", ctx)
    monkeypatch.setitem(sys.modules, "vllm", None)
    rollouts_without_vllm(ctx, args)  # backend hf (the default): the setting stands
    assert args.use_vllm is True
    ctx.pipeline.generation.backend = "auto"
    with caplog.at_level(logging.WARNING):
        rollouts_without_vllm(ctx, args)
    assert args.use_vllm is False
    assert any("stages.r1_zero.trainer.use_vllm" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------- doctor


@pytest.mark.parametrize("native", CLASSES)
def test_doctor_names_the_class_and_each_stages_precision(
        probe, native: bool, capsys: pytest.CaptureFixture[str]) -> None:
    from r1pipe.cli import main

    probe(native)
    assert main(["doctor", str(REPO / "configs/demo.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("bf16 native" if native else "bf16 emulated") in out
    want = "bf16" if native else "float32"
    for stage in ("r1_zero", "cold_start", "reasoning_rl", "reject_sample", "all_scenario_rl",
                  "distill"):
        line = next(line for line in out.splitlines() if line.lstrip("│ ").startswith(stage))
        assert want in line, line


# --------------------------------------------------------------- no vLLM at all (macOS)

BLOCK_VLLM = """\
import sys

class _WithoutVLLM:
    # each import finder, as if vLLM were not installed: its spec is None, importing fails
    def __init__(self, inner):
        self.inner = inner

    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            return None
        return self.inner.find_spec(name, path, target)

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

sys.meta_path[:] = [_WithoutVLLM(finder) for finder in sys.meta_path]
"""


@pytest.mark.slow
def test_a_machine_without_vllm_runs_grpo_and_eval_on_hf(tmp_path: Path) -> None:
    """`generation.backend: auto` and `use_vllm: true` (what the demo says) where vLLM does
    not import: R1-Zero's rollouts and the evaluation run with transformers, each said once,
    and vLLM is never imported."""
    from tests.helpers import cli_env, write_pipeline

    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(BLOCK_VLLM)
    body = """
generation: {backend: auto, max_new_tokens: 8, batch_size: 4}
eval:
  after_each_stage: true
  samples: 1
  max_new_tokens: 8
  benchmarks:
    arithmetic: {builtin: arithmetic, split: test, test_size: 2, difficulty: 1}
stages:
  r1_zero:
    from: base
    data: reasoning
    trainer: {max_steps: 1, per_device_train_batch_size: 2, num_generations: 2,
              max_completion_length: 8, use_vllm: true, vllm_mode: colocate}
"""
    config = write_pipeline(tmp_path, "novllm", body,
                            data={"reasoning": "{builtin: arithmetic, size: 4, test_size: 0}"})
    env = cli_env(PYTHONPATH=f"{hide}{os.pathsep}{REPO}")
    done = subprocess.run([sys.executable, "-m", "r1pipe.cli", "run", str(config)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "stages.r1_zero.trainer.use_vllm: true, but vLLM is not installed" in done.stderr
    summary = json.loads((tmp_path / "run/r1_zero/eval/arithmetic/summary.json").read_text())
    assert summary  # the trained model was evaluated, on hf
    settings = json.loads((tmp_path / "run/r1_zero/eval/arithmetic/settings.json").read_text())
    assert settings["backend"] == "hf"
