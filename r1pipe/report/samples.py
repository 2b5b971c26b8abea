"""Sample completions for the report: a few from training (TRL's completion logs) and from
evaluation, so a person can read what the model wrote, not only the curves.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:

    pass


SAMPLES_PER_SOURCE = 3
MAX_SAMPLE_CHARS = 1_500


def training_samples(stage_dir: Path, n: int = 2) -> list[dict[str, Any]]:
    """Completions TRL logged during GRPO (`checkpoints/completions/completions_*.parquet`,
    written when `log_completions` is on, as r1pipe's default is): the first and the last
    logged step, `n` of each, with their rewards."""
    files = sorted((stage_dir / "checkpoints" / "completions").glob("completions_*.parquet"))
    if not files:
        return []
    import pandas as pd

    chosen = [files[0]] if len(files) == 1 else [files[0], files[-1]]
    out = []
    for path in chosen:
        try:
            frame = pd.read_parquet(path)
        except Exception:  # a file being written right now, or torn by a kill
            continue
        fixed = {"step", "prompt", "completion", "advantage"}
        for record in frame.head(n).to_dict("records"):
            rewards = {k: v for k, v in record.items() if k not in fixed}
            out.append({"source": f"training step {record.get('step')}",
                        "prompt": _text(record.get("prompt")),
                        "completion": _text(record.get("completion")),
                        "scores": {k: _num(v) for k, v in rewards.items()}})
    return out


def eval_samples(eval_dir: Path, n: int = SAMPLES_PER_SOURCE) -> list[dict[str, Any]]:
    """The first sample of the first `n` prompts of each benchmark, with its verdict."""
    from r1pipe.artifacts import ArtifactError, iter_records

    out: list[dict[str, Any]] = []
    if not eval_dir.is_dir():
        return out
    for bench_dir in sorted(p for p in eval_dir.iterdir() if p.is_dir()):
        samples = bench_dir / "samples"
        if not (samples / "manifest.json").exists():
            continue
        try:
            for record in iter_records(samples, require_complete=False):
                if record.get("sample", 0) != 0:
                    continue
                out.append({"source": f"eval {bench_dir.name}",
                            "prompt": _text(record.get("prompt")),
                            "completion": _text(record.get("completion")),
                            "scores": {"verdict": record.get("verdict"),
                                       "answer": record.get("answer"),
                                       "extracted": record.get("extracted"),
                                       "tokens": record.get("token_count")}})
                if sum(s["source"] == f"eval {bench_dir.name}" for s in out) >= n:
                    break
        except ArtifactError:
            continue
    return out


def _text(value: Any) -> str:
    from r1pipe.parsing import completion_text

    if isinstance(value, (list, tuple)) and value and isinstance(value[0], dict):
        return "\n".join(f"[{m.get('role', '?')}] {completion_text(m)}" for m in value)
    if hasattr(value, "tolist"):  # numpy arrays of messages from parquet
        return _text(value.tolist())
    return completion_text(value)


def _num(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(f) else round(f, 4)
