"""TRL's fused LM head on CPU: the log-probabilities from dense logits of the labelled tokens.

TRL 1.16's SFT and GRPO trainers patch the model with a fused LM head
(`trl.trainer.utils.add_fused_lm_head`) that never materialises the `[tokens, vocabulary]`
logits: it projects in tiles and folds each tile into running log-sum-exp statistics. On a
GPU that is a Triton kernel over the completion tokens only. Without Triton (the CPU) TRL
scores *every* position, prompt and padding included ("the number of valid positions would
change the tile shapes ... and trigger a recompilation", a concern of compiled devices), and
its backward recomputes each tile and accumulates the two gradient GEMMs in float32, which on
a CPU forgoes the bf16 (AMX) kernels autocast would use.

Measured on 2 cores (SmolLM2-135M, vocabulary 49,152, 8 x 250 tokens, 190 labelled per row,
bf16 autocast): forward + backward 13.5 s with TRL's CPU path, 9.5 s with this one, the same
as the model's own `labels=` loss (9 s). That is about a third of every SFT step and a sixth
of a GRPO step on CPU.

The replacement keeps TRL's contract (same arguments, same five per-token outputs, gradients
for `log_probs` and `entropy`) and its precision in the forward: TRL's CPU tiles are also
computed in the autocast dtype and upcast before the softmax. Its backward is the ordinary
autograd of `linear -> float -> log_softmax`, as in every `model(labels=...)` loss: one GEMM
per gradient, accumulated in float32 inside the kernel and rounded once (TRL's float32
accumulation guards against rounding each vocabulary chunk's partial product, which a single
GEMM does not do). Only positions with a label are projected (TRL's own "compact" layout).

Dense logits cost memory, `labelled tokens x vocabulary` floats a few times over: above
`DENSE_LIMIT` elements (1 GiB of float32 logits) a call goes to TRL's tiled function, as do
calls on every other device. Installed by `dense_lm_head_on_cpu()`, which SFT and GRPO call
before they build their trainers (it changes nothing for tensors off the CPU).
"""

from __future__ import annotations

from typing import Any

DENSE_LIMIT = 1 << 28
"""Largest `tokens x vocabulary` scored with dense logits; larger calls use TRL's tiles."""


def dense_logprobs(hidden: Any, weight: Any, bias: Any, targets: Any, temperature: float,
                   final_logit_softcapping: float | None = None, logit_scale: float = 1.0,
                   outputs: tuple[str, ...] = ("log_probs",)) -> tuple[Any, ...]:
    """(log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1) of `targets` under
    `hidden @ weight.T (+ bias)`, scaled, soft-capped and divided by `temperature` as TRL's
    kernel does; each optional output is None unless named in `outputs`."""
    import torch
    import torch.nn.functional as F

    z = F.linear(hidden, weight, bias).float()  # the autocast dtype, as TRL's tiles, then fp32
    if logit_scale != 1.0:
        z = z * logit_scale
    if final_logit_softcapping is not None:
        z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
    if temperature != 1.0:
        z = z / temperature
    log_z = torch.logsumexp(z, dim=-1)
    log_probs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = log_sum_sq = mean_logits = is_top1 = None
    if "entropy" in outputs:
        entropy = log_z - (torch.softmax(z, dim=-1) * z).sum(-1)
    if "log_sum_sq_probs" in outputs:
        log_sum_sq = torch.logsumexp(2 * z, dim=-1) - 2 * log_z
    if "mean_logits" in outputs:
        mean_logits = z.mean(-1)
    if "is_top1" in outputs:
        with torch.no_grad():  # argmax is the first maximum: a tie with an earlier token loses
            is_top1 = z.argmax(-1) == targets
    return log_probs, entropy, log_sum_sq, mean_logits, is_top1


class CpuLogProbFunction:
    """Stands in for `trl.kernels.ChunkedLogProbFunction` in `trl.trainer.utils`: dense on
    CPU within `DENSE_LIMIT`, TRL's tiled function otherwise."""

    tiled: Any = None  # TRL's class, set on install

    # TRL calls `_ChunkedLogProbFunction.apply` with these nine arguments, by position: the
    # stand-in keeps that signature as it is, so TRL's call reaches it unchanged.
    @classmethod
    def apply(cls, hidden: Any, weight: Any, bias: Any, targets: Any, temperature: float,
              chunk_size: int, final_logit_softcapping: float | None = None,
              logit_scale: float = 1.0, outputs: tuple[str, ...] = ("log_probs",)
              ) -> tuple[Any, ...]:
        if hidden.device.type == "cpu" and hidden.shape[0] * weight.shape[0] <= DENSE_LIMIT:
            return dense_logprobs(hidden, weight, bias, targets, temperature,
                                  final_logit_softcapping, logit_scale, outputs)
        return cls.tiled.apply(hidden, weight, bias, targets, temperature, chunk_size,
                               final_logit_softcapping, logit_scale, outputs)


def dense_lm_head_on_cpu() -> bool:
    """Route TRL's fused LM head through `CpuLogProbFunction` and let it score only the
    labelled positions on CPU; True once installed. Idempotent. Other devices keep TRL's
    kernels: the wrapper hands them the call unchanged, and `compact` was already on for
    Triton devices."""
    from trl.trainer import utils

    if utils.__dict__.get("_ChunkedLogProbFunction") is CpuLogProbFunction:
        return True
    if not hasattr(utils, "_ChunkedLogProbFunction") or not hasattr(utils, "_use_triton"):
        return False  # another TRL layout: leave it as it is
    CpuLogProbFunction.tiled = utils._ChunkedLogProbFunction
    on_triton = utils._use_triton
    utils._ChunkedLogProbFunction = CpuLogProbFunction
    # `compact` (only labelled positions) for CPU tensors too; the other devices keep TRL's
    utils._use_triton = lambda device: device.type == "cpu" or on_triton(device)
    return True
