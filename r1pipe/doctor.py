"""`r1pipe doctor`: what this machine is and the precision each stage will run in here.

A run that is fast on one machine and twenty times slower on the next is almost always
precision: bf16 on a CPU that emulates it. The doctor prints the machine class, the probe's
answer and a measured matmul rate in both precisions, then, for a pipeline, each stage's
trainer precision, its engines' weights dtype and backend, and its reward models', all
settled by the same functions the stages call (`r1pipe.precision`), so what it shows is what
will run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from r1pipe import precision

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig


@dataclass(frozen=True)
class StagePrecision:
    """One row of the doctor's table."""

    stage: str
    trainer: str
    engine: str
    reward_models: str


def machine_facts(measure: bool = True) -> list[tuple[str, str]]:
    """(label, value) lines about the device, the probe and, with `measure`, matmul speed."""
    import torch

    from r1pipe.generation.factory import vllm_installed

    m = precision.machine()
    facts = [("device", m.label), ("processor", m.name), ("cpu class", m.cpu_class),
             ("torch", f"{torch.__version__} (ATen kernels: {m.torch_capability or '?'})"),
             ("bf16 native", f"{m.native_bf16} ({'forced by ' + precision.NATIVE_BF16_ENV if m.forced else 'oneDNN probe'})"),
             ("vLLM", "installed" if vllm_installed() else "not installed (backend auto: hf)")]
    if measure and m.device == "cpu":
        fp32 = precision.matmul_gflops("float32")
        bf16 = precision.matmul_gflops("bfloat16")
        facts.append(("matmul 512x512", f"float32 {fp32:.1f} GFLOP/s, bfloat16 {bf16:.1f} "
                                        f"GFLOP/s ({bf16 / fp32:.2f}x)"))
    return facts


def _trainer_label(settings: dict[str, Any], where: str) -> str:
    chosen = precision.trainer_precision(settings, where=where)
    name = "bf16" if chosen["bf16"] else "fp16" if chosen["fp16"] else "float32"
    asked = {k: settings[k] for k in precision.PRECISION_KEYS if k in settings}
    spelled = ", ".join(f"{k}: {str(v).lower()}" for k, v in asked.items())
    return name + (f" ({spelled})" if asked else " (auto)")


def stage_precisions(config: PipelineConfig) -> list[StagePrecision]:
    """Each enabled stage's precision on this machine, as its stage code will settle it."""
    from r1pipe.generation.factory import resolved_backend

    on_cpu = precision.machine().device == "cpu"
    gen = config.generation
    engine = (f"{precision.engine_dtype(gen.dtype, on_cpu=on_cpu, where='generation.dtype')} "
              f"({resolved_backend(gen.backend)}, dtype: {gen.dtype})")
    rows = []
    for name, section in config.stages.items():
        if not getattr(section, "enabled", True):
            continue
        trainer = (_trainer_label(section.trainer, f"stages.{name}.trainer")
                   if section.trainer_config_class() else "-")
        rewards = []
        for key, spec in (getattr(section, "rewards", None) or {}).items():
            if isinstance(spec, dict) and spec.get("reward") == "reward_model":
                from r1pipe.rewards.model import resolve_placement

                device, dtype = resolve_placement(str(spec.get("device", "auto")),
                                                  str(spec.get("dtype", "auto")),
                                                  where=f"stages.{name}.rewards.{key}")
                rewards.append(f"{key}: {dtype} on {device}")
        trained = getattr(getattr(section, "reward_model", None), "train", None)
        if trained is not None:
            rewards.append("trained: " + _trainer_label(
                trained.trainer, f"stages.{name}.reward_model.train.trainer"))
        rows.append(StagePrecision(name, trainer, engine, "; ".join(rewards) or "-"))
    return rows
