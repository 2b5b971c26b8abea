"""A small real stage that makes its input model worse on purpose, for the gate tests.

It loads the model of `from:`, adds Gaussian noise of standard deviation `scale` to every
weight (seeded, so the same config gives the same model) and saves it as the stage's
`model/`, where evaluation after the stage finds it. `scale: 0` copies the model.
"""

from __future__ import annotations

from pydantic import Field

from r1pipe.config import StageConfig
from r1pipe.contract import StageContext, StageResult

NAME = "noise"


class Config(StageConfig):
    scale: float = Field(1.0, ge=0)


def run(ctx: StageContext[Config]) -> StageResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = ctx.input("from")
    model = AutoModelForCausalLM.from_pretrained(source)
    generator = torch.Generator().manual_seed(ctx.pipeline.seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * ctx.config.scale)
    model.save_pretrained(ctx.model_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(ctx.model_dir)
    (ctx.model_dir / "README.md").write_text(f"# {ctx.name}\n\nNoise of scale "
                                             f"{ctx.config.scale} on {source}.\n")
    return StageResult(summary={"noise scale": ctx.config.scale}, artifacts={"model": "model"})
