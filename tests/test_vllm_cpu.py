"""r1pipe's adapters for vLLM on CPU: nucleus sampling without a vocabulary sort (a vLLM
plugin, so it reaches the engine process) and TRL's colocated engine without torch.compile.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

import pytest
import torch

from r1pipe import vllm_sampling
from r1pipe.vllm_cpu import eager_colocated_engine_on_cpu

ops = pytest.importorskip("vllm.v1.sample.ops.topk_topp_sampler")


def _vllm_mask(logits: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return torch.isinf(ops.apply_top_k_top_p_pytorch(logits.clone(), None, p.clone(),
                                                      allow_cpu_sync=True))


@pytest.mark.parametrize("pool", [8, 64, 4096])
def test_nucleus_keeps_what_vllms_sort_keeps(pool: int) -> None:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for scale in (0.1, 1.0, 3.0, 8.0, 30.0):  # flat rows (the pool misses p) to peaked ones
        rows.append(torch.randn(12, 4096, generator=gen) * scale)
    logits = torch.cat(rows)
    p = torch.rand(logits.shape[0], generator=gen) * 0.5 + 0.45
    p[::7] = 1.0  # rows of a batch that asked for no top-p
    p[3] = 0.999
    expected = _vllm_mask(logits, p)
    got = torch.isinf(vllm_sampling.nucleus_logits(logits.clone(), p, pool=pool))
    nucleus = p < 1
    assert torch.equal(got[nucleus], expected[nucleus])
    # p = 1 leaves the row alone; vLLM's sort also drops the tokens whose probability
    # underflows to 0 in float32, which no sampler can draw anyway
    assert not got[~nucleus].any()
    assert torch.softmax(logits[~nucleus], -1)[expected[~nucleus]].max() == 0
    assert (~got).sum(dim=-1).min() >= 1  # every row keeps a token


def test_nucleus_with_bf16_logits_and_a_single_row() -> None:
    logits = (torch.randn(1, 1000) * 5).to(torch.bfloat16)
    p = torch.tensor([0.9])
    got = vllm_sampling.nucleus_logits(logits.clone(), p)
    assert got.dtype == torch.bfloat16
    kept = torch.softmax(logits.float(), -1)[~torch.isinf(got)].sum()
    assert kept >= 0.9


def test_plugin_is_registered_and_routes_only_top_p(monkeypatch: pytest.MonkeyPatch) -> None:
    names = {ep.value for ep in entry_points(group="vllm.general_plugins")}
    assert "r1pipe.vllm_sampling:register" in names  # what vLLM's processes load
    calls: list[Any] = []

    def original(logits: Any, k: Any, p: Any) -> Any:
        calls.append((k, p))
        return logits

    monkeypatch.setattr(ops, "apply_top_k_top_p", original)
    vllm_sampling.register()
    vllm_sampling.register()  # idempotent: wraps once
    patched = ops.apply_top_k_top_p
    assert patched is not original and getattr(patched, "_r1pipe", False)
    logits = torch.randn(4, 100) * 4
    out = patched(logits.clone(), None, torch.full((4,), 0.5))
    assert torch.isinf(out).any() and calls == []  # top-p only: the nucleus path
    patched(logits.clone(), torch.full((4,), 5), torch.full((4,), 0.5))
    patched(logits.clone(), None, None)
    assert len(calls) == 2  # top-k, or nothing to do: vLLM's own function


def test_trl_colocated_engine_is_eager_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from trl.generation import vllm_generation

    seen: list[dict[str, Any]] = []

    def engine(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "engine"

    monkeypatch.setattr(vllm_generation, "LLM", engine)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert eager_colocated_engine_on_cpu() is True
    assert eager_colocated_engine_on_cpu() is True  # idempotent
    assert vllm_generation.LLM(model="m") == "engine"
    vllm_generation.LLM(model="m", enforce_eager=False)  # an explicit choice stands
    assert seen == [{"model": "m", "enforce_eager": True, "dtype": "float32"},
                    {"model": "m", "enforce_eager": False, "dtype": "float32"}]
    import os

    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_cpu_training_defaults_turn_off_gradient_checkpointing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """TRL's GRPOConfig checkpoints activations by default; on CPU that re-forward only costs
    time, so r1pipe's GRPO and SFT defaults turn it off there, and leave GPUs to TRL."""
    from r1pipe.train import arguments as train  # where cpu_defaults reads hardware_defaults

    assert train.cpu_defaults() == {"gradient_checkpointing": False}
    monkeypatch.setattr(train, "hardware_defaults", lambda: {"use_cpu": False})
    assert train.cpu_defaults() == {}
