"""r1pipe.trl_cpu: TRL's fused LM head on CPU from dense logits, checked against TRL's own
tiled function (values and gradients) and through a real fused forward."""

from __future__ import annotations

import pytest
import torch

from r1pipe import trl_cpu

OUTPUTS = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")


def _inputs(n: int = 37, hidden: int = 16, vocab: int = 300, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, hidden, generator=g, requires_grad=True)
    w = (torch.randn(vocab, hidden, generator=g) * 0.5).requires_grad_()
    b = (torch.randn(vocab, generator=g) * 0.1).requires_grad_()
    t = torch.randint(0, vocab, (n,), generator=g)
    t[0] = 0  # a target at the first token of the vocabulary
    t[1] = vocab - 1
    return h, w, b, t


def _both(temperature: float, softcap: float | None, scale: float, autocast: bool):
    from trl.kernels import ChunkedLogProbFunction

    results = []
    for fn in ("tiled", "dense"):
        h, w, b, t = _inputs()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            if fn == "tiled":  # a vocabulary chunk smaller than the vocabulary: several tiles
                out = ChunkedLogProbFunction.apply(h, w, b, t, temperature, 128, softcap,
                                                   scale, OUTPUTS)
            else:
                out = trl_cpu.dense_logprobs(h, w, b, t, temperature, softcap, scale, OUTPUTS)
        log_probs, entropy = out[0], out[1]
        (log_probs.sum() + 0.3 * entropy.sum()).backward()
        results.append((out, h.grad, w.grad, b.grad))
    return results


@pytest.mark.parametrize(("temperature", "softcap", "scale"),
                         [(1.0, None, 1.0), (0.7, None, 1.0), (1.0, 30.0, 0.5)])
def test_dense_matches_trl_tiles_in_float32(temperature, softcap, scale):
    (tiled, *tiled_grads), (dense, *dense_grads) = _both(temperature, softcap, scale, False)
    for name, a, b in zip(OUTPUTS, tiled, dense, strict=True):
        if name == "is_top1":
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4, msg=name)
    for a, b in zip(tiled_grads, dense_grads, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-4)


def test_dense_under_bf16_autocast_is_as_close_as_trls_own_rounding():
    """Both round the projection to bf16 in the forward (TRL adds the bias after rounding,
    F.linear before); the backward GEMMs differ (TRL: fp32 accumulation per tile, here one
    bf16 GEMM). Within bf16's resolution (8 bits: ~0.4 % relative)."""
    (tiled, *tiled_grads), (dense, *dense_grads) = _both(1.0, None, 1.0, True)
    torch.testing.assert_close(dense[0], tiled[0], rtol=1e-2, atol=2e-2)
    torch.testing.assert_close(dense[1], tiled[1], rtol=1e-2, atol=2e-2)
    for a, b in zip(tiled_grads, dense_grads, strict=True):
        torch.testing.assert_close(b.float(), a.float(), rtol=5e-2, atol=5e-2)


def test_only_requested_outputs_are_computed():
    h, w, b, t = _inputs()
    out = trl_cpu.dense_logprobs(h, w, b, t, 1.0, outputs=("log_probs",))
    assert out[0].shape == t.shape and all(x is None for x in out[1:])


def test_calls_above_the_limit_and_off_cpu_go_to_trls_function(monkeypatch):
    calls = []

    class Tiled:
        @staticmethod
        def apply(*args):
            calls.append(args)
            return ("tiled",)

    monkeypatch.setattr(trl_cpu.CpuLogProbFunction, "tiled", Tiled)
    h, w, b, t = _inputs(n=10, vocab=50)
    monkeypatch.setattr(trl_cpu, "DENSE_LIMIT", 10 * 50)
    assert trl_cpu.CpuLogProbFunction.apply(h, w, b, t, 1.0, 32)[0].shape == (10,)
    monkeypatch.setattr(trl_cpu, "DENSE_LIMIT", 10 * 50 - 1)
    assert trl_cpu.CpuLogProbFunction.apply(h, w, b, t, 1.0, 32) == ("tiled",)
    meta = torch.empty(10, 16, device="meta")
    assert trl_cpu.CpuLogProbFunction.apply(meta, w, b, t, 1.0, 32) == ("tiled",)
    assert len(calls) == 2 and calls[0][5] == 32  # TRL's argument order, chunk size kept


def test_fused_forward_scores_only_labelled_positions_and_matches_the_model_loss():
    """Through TRL's own `add_fused_lm_head` on a tiny Llama: the loss equals the model's
    `labels=` cross-entropy, prompt and padding positions give zero."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer import utils

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
    model = LlamaForCausalLM(config)
    ids = torch.randint(0, 97, (3, 12))
    labels = ids.clone()
    labels[:, :5] = -100
    labels[2, 9:] = -100  # padding at the end of the last row
    reference = model(input_ids=ids, labels=labels).loss

    utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    assert trl_cpu.dense_lm_head_on_cpu() and trl_cpu.dense_lm_head_on_cpu()  # idempotent
    assert utils._ChunkedLogProbFunction is trl_cpu.CpuLogProbFunction
    assert trl_cpu.CpuLogProbFunction.tiled is ChunkedLogProbFunction
    assert utils._use_triton(torch.device("cpu"))
    assert not utils._use_triton(torch.device("meta"))
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)

    torch.testing.assert_close(out.loss, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(out.label_mask, labels[:, 1:] != -100)
    assert (out.log_probs[~out.label_mask] == 0).all()
    assert (out.entropy[~out.label_mask] == 0).all()
    assert (out.entropy[out.label_mask] > 0).all()
    out.loss.backward()
    assert model.lm_head.weight.grad is not None
