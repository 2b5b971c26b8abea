"""What this machine computes natively, and every precision choice r1pipe makes from it.

bf16 is the right precision on a GPU that has it and on a CPU with bf16 matrix instructions
(x86 AMX or AVX512-BF16, ARM's BF16): there a bf16 GEMM runs 2-3x faster than float32. On a
CPU without them (AVX2-only x86: most laptops, every AMD CPU before Zen 4) PyTorch and vLLM
emulate bf16 and one GEMM runs 40-90x slower than float32. A config that hard-codes bf16 is
therefore fast on one machine and unusable on the next, so precision keys take `auto`, and
`auto` is settled here, in one place, for every consumer:

- trainer `bf16` / `fp16` (`trainer_precision`, called by `r1pipe.train.build_args` for every
  `trainer:` mapping: GRPO, SFT, reward-model training, students);
- engine weights (`engine_dtype`): r1pipe's vLLM and transformers generators, the evaluation
  engine (the same generators), TRL's colocated vLLM engine (`r1pipe.vllm_cpu`);
- reward models (`r1pipe.rewards.model.resolve_placement`).

The probe is oneDNN's own answer (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`), which
honours `ONEDNN_MAX_CPU_ISA`, so it is what the kernels will really do. `R1PIPE_NATIVE_BF16`
(`1`/`0`) overrides it: for a user who knows better, and for the test suite, which runs
float32 on every CPU class unless a test forces the probe.

An explicit `bf16: true` (or `dtype: bfloat16`) is honoured everywhere; where it will be
emulated it is logged once per key, with the slowdown measured on this machine.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

NATIVE_BF16_ENV = "R1PIPE_NATIVE_BF16"
"""`1` or `0`: whether this CPU's bf16 counts as native, whatever the probe says."""

AUTO = "auto"
PRECISION_KEYS = ("bf16", "fp16")
"""Trainer keys that take `auto` besides true/false (TRL's own fields are plain booleans)."""

_WARNED: set[str] = set()
_WARN_LOCK = threading.Lock()


@dataclass(frozen=True)
class Machine:
    """The device that computes in this process and what it runs natively."""

    device: str
    """`cuda` when a GPU is visible, else `cpu`."""
    name: str
    """The GPU's or the CPU's model name."""
    cpu_class: str
    """The CPU's matrix instruction class: `AMX`, `AVX512-BF16`, `AVX-512`, `AVX2`, `ARM BF16`,
    `ARM`, or the machine's architecture where none of these is known."""
    native_bf16: bool
    """bf16 matrix multiplies run on native kernels on `device`."""
    forced: bool = False
    """`native_bf16` came from `R1PIPE_NATIVE_BF16`, not from the probe."""
    torch_capability: str = ""
    """`torch.backends.cpu.get_cpu_capability()`: the ATen kernels torch dispatches to."""

    @property
    def label(self) -> str:
        """One line for tables and logs, e.g. `cpu · AVX2 (bf16 emulated)`."""
        if self.device == "cuda":
            native = "bf16 native" if self.native_bf16 else "no bf16: fp16"
            return f"cuda · {self.name} · {native}"
        native = "bf16 native" if self.native_bf16 else "bf16 emulated"
        return f"cpu · {self.cpu_class} ({native}{', forced' if self.forced else ''})"


def cpu_flags() -> set[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features`) from /proc/cpuinfo; empty
    where there is none (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


def cpu_name() -> str:
    """The CPU's model name, as /proc/cpuinfo or the platform spells it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_class(flags: set[str] | None = None) -> str:
    """The matrix instruction class that decides bf16 speed on this CPU."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags:
        return "AMX"
    if "avx512_bf16" in flags:
        return "AVX512-BF16"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    if "bf16" in flags:
        return "ARM BF16"
    if "asimd" in flags:
        return "ARM"
    return platform.machine() or "unknown"


def probe_cpu_bf16() -> bool:
    """Whether oneDNN multiplies bf16 matrices natively on this CPU (its own probe, which
    honours ONEDNN_MAX_CPU_ISA); False for a torch built without oneDNN."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _forced() -> bool | None:
    value = os.environ.get(NATIVE_BF16_ENV, "").strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    return None


@functools.lru_cache(maxsize=1)
def _cpu_native() -> bool:
    return probe_cpu_bf16()


def _gpu_name() -> str:
    import torch

    try:
        return str(torch.cuda.get_device_name(0))
    except (AssertionError, RuntimeError):
        return "CUDA device"


def machine() -> Machine:
    """This process's device and its bf16 support. Cheap: the CPU probe runs once; the GPU
    answer and the `R1PIPE_NATIVE_BF16` override are read on every call."""
    import torch

    capability = ""
    with contextlib.suppress(AttributeError, RuntimeError):
        capability = str(torch.backends.cpu.get_cpu_capability())
    if torch.cuda.is_available():
        return Machine("cuda", _gpu_name(), cpu_class(), bool(torch.cuda.is_bf16_supported()),
                       False, capability)
    forced = _forced()
    native = _cpu_native() if forced is None else forced
    return Machine("cpu", cpu_name(), cpu_class(), native, forced is not None, capability)


def native_bf16(device: str | None = None) -> bool:
    """Whether bf16 is native on `device` (`cpu`, `cuda[:N]`; default: this process's).

    `cpu` on a GPU machine asks about the CPU (a reward model placed there beside a GPU
    policy). `R1PIPE_NATIVE_BF16` overrides the CPU's answer only: a GPU's is never in doubt.
    """
    if device is None:
        return machine().native_bf16
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_bf16_supported())
    forced = _forced()
    return _cpu_native() if forced is None else forced


# ---------------------------------------------------------------------------------------
# The decisions
# ---------------------------------------------------------------------------------------


def trainer_precision(settings: dict[str, Any], *, where: str) -> dict[str, bool]:
    """`bf16`/`fp16` for TRL from a merged `trainer:` mapping whose values may be `auto`.

    auto/auto: bf16 where it is native; on a GPU without it fp16; float32 on a CPU without
    it. An explicit true is kept (and warned about where bf16 is emulated); an explicit false
    turns that one off. `where` is the YAML path of the mapping, for the warning.
    """
    bf16, fp16 = settings.get("bf16", AUTO), settings.get("fp16", AUTO)
    m = machine()
    if bf16 is True and fp16 is True:
        raise ValueError(f"{where}.bf16 and {where}.fp16 are both true; choose one "
                         "(or leave both `auto`)")
    if bf16 is True:
        if not m.native_bf16:
            warn_emulated(f"{where}.bf16", "true")
        return {"bf16": True, "fp16": False}
    if fp16 is True:
        return {"bf16": False, "fp16": True}
    want_bf16 = bf16 == AUTO and m.native_bf16
    want_fp16 = fp16 == AUTO and bf16 == AUTO and m.device == "cuda" and not m.native_bf16
    return {"bf16": bool(want_bf16), "fp16": bool(want_fp16)}


def engine_dtype(value: str, *, on_cpu: bool, where: str) -> str:
    """The weights dtype an inference engine gets for `generation.dtype`-like `value`.

    On the CPU `auto` becomes bfloat16 where bf16 is native and float32 where it is not
    (vLLM's CPU platform would otherwise claim bf16 on every x86 CPU and downcast float32
    checkpoints to it). On a GPU `auto` stays `auto`: the engine takes the checkpoint's own
    dtype (vLLM: float32 checkpoints in bf16 or fp16), which is right there.
    """
    if not on_cpu:
        return value
    if value == AUTO:
        return "bfloat16" if native_bf16("cpu") else "float32"
    if value == "bfloat16" and not native_bf16("cpu"):
        warn_emulated(where, "bfloat16")
    return value


# ---------------------------------------------------------------------------------------
# Measurement and the one warning
# ---------------------------------------------------------------------------------------


def matmul_gflops(dtype: str, *, size: int = 512, seconds: float = 0.1) -> float:
    """GFLOP/s of a size x size matmul in `dtype` on this CPU, with torch's threads.

    Small on purpose (it runs inside a warning and `r1pipe doctor`): at 512 one emulated bf16
    product takes ~0.1 s where float32 takes a few ms.
    """
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(size, size).to(dt)
    b = torch.randn(size, size).to(dt)
    a @ b  # warm-up: oneDNN builds its primitive on the first call
    reps, start = 0, time.perf_counter()
    while True:
        a @ b
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or reps >= 200:
            break
    return 2 * size**3 * reps / elapsed / 1e9


@functools.lru_cache(maxsize=1)
def bf16_slowdown() -> float:
    """How many times slower a bf16 matmul runs than a float32 one here (measured once)."""
    fp32 = matmul_gflops("float32")
    bf16 = matmul_gflops("bfloat16")
    return fp32 / bf16 if bf16 > 0 else float("inf")


def warn_emulated(key: str, value: str) -> None:
    """Log, once per key and process, that `key: value` asks for bf16 where it is emulated."""
    with _WARN_LOCK:
        if key in _WARNED:
            return
        _WARNED.add(key)
    m = machine()
    why = (f"{NATIVE_BF16_ENV}={os.environ.get(NATIVE_BF16_ENV)} says so" if m.forced else
           f"a bf16 matmul measured {bf16_slowdown():.0f}x slower than float32 here")
    log.warning("%s: %s on a CPU without bf16 kernels (%s): %s. Kept as asked; `auto` would "
                "use float32 on this CPU and bf16 where it is native.", key, value, m.label, why)
