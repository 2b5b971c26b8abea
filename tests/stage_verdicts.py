"""A small real stage writing rejection-sampling verdicts, for the all-scenario RL tests.

It writes `data/filtered/` in the shape the reject-sample stage gives it (records with
`prompt_id`, `prompt`, `completion`, `verdict`: kept | rejected), so all-scenario RL can
build its reward model's preference pairs from it through the engine, ordered and
fingerprinted like the real upstream stage.
"""

from __future__ import annotations

from pydantic import Field

from r1pipe.artifacts import DatasetCard, ShardedJsonlWriter
from r1pipe.config import StageConfig
from r1pipe.contract import StageContext, StageResult

NAME = "verdicts"


class Config(StageConfig):
    prompts: int = Field(6, gt=0)
    kept: int = Field(2, ge=0, description="kept answers per prompt")
    rejected: int = Field(2, ge=0, description="rejected answers per prompt")


def records(cfg: Config) -> list[dict]:
    """Answers to "What is a + b?": kept ones right and in the cold-start format, rejected
    ones wrong; they alternate, as sampled answers would."""
    out = []
    for p in range(cfg.prompts):
        a, b = p + 2, 3 * p + 1
        prompt = f"What is {a} + {b}?"
        answers = [("kept", f"|special_token|{a} + {b} = {a + b}|special_token|"
                    f"The answer is {a + b}.")] * cfg.kept
        answers += [("rejected", f"I think it is {a * b + 7}.")] * cfg.rejected
        order = sorted(range(len(answers)), key=lambda i: (i % 2, i))  # interleave verdicts
        for k, i in enumerate(order):
            verdict, completion = answers[i]
            out.append({"id": f"q{p}-s{k}", "prompt_id": f"q{p}", "prompt": prompt,
                        "completion": f"{completion} (sample {k})", "verdict": verdict,
                        "source": "verdicts-test"})
    return out


def run(ctx: StageContext) -> StageResult:
    writer = ShardedJsonlWriter(ctx.data_dir("filtered"))
    writer.write_records(records(ctx.config), shard_size=5)
    writer.finalize(card=DatasetCard(title="verdicts", description="test verdicts",
                                     stage=ctx.name))
    return StageResult(summary={"records": writer.manifest.records},
                       artifacts={"filtered": "data/filtered"})
