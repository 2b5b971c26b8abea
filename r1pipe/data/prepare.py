"""From a stage's `data` input to the prompts its trainer or generator reads.

A stage's `data:` names a source of the pipeline's `data:` section, or the artifact folder
of an earlier stage (the pipeline resolves `<stage>:<artifact>` to that folder), or, with
`--input data=...`, any local file, folder or Hub id. `load_input` turns each of these
into a `datasets` object with r1pipe's columns; `prompt_dataset` then renders the prompts
with the stage's template and holds them to its token budget, the same steps for every
stage (and for evaluation), so a prompt is built in one place only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.data.sources import DataSourceConfig

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

    from r1pipe.data.length import PromptLengthReport

_MANIFEST = "manifest.json"  # r1pipe.artifacts.MANIFEST, not imported to stay light
_SHARDS = "train-*.jsonl"

DECONTAMINATION_DIR = "decontamination"
"""`runs/<name>/decontamination/`: the report of `r1pipe.decontam` (written before the first
stage trains)."""
CONTAMINATED_FILE = "contaminated.jsonl"
"""One line per contaminated training prompt: {source, id, benchmark, ...}."""


def contaminated_ids(pipeline: Any, source: str) -> frozenset[str]:
    """Ids of source `source`'s prompts that the decontamination report found in a benchmark
    and that are to be dropped (`eval.decontamination.drop`); empty without a report.

    Read here, where training prompts are loaded, so every stage drops the same prompts; the
    report itself is made by `r1pipe.decontam` (an engine hook) before the first stage.
    """
    import json

    ev = getattr(pipeline, "eval", None)
    settings = getattr(ev, "decontamination", None)
    if settings is None or not settings.enabled or not settings.drop:
        return frozenset()
    path = pipeline.resolved_run_dir() / DECONTAMINATION_DIR / CONTAMINATED_FILE
    if not path.is_file():
        return frozenset()
    ids: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                if record.get("source") == source:
                    ids.add(str(record["id"]))
    return frozenset(ids)


def load_input(pipeline: Any, value: str, *, decontaminate: bool = True
               ) -> Dataset | IterableDataset:
    """Records of a stage's data input: a source name, an artifact folder, a path or Hub id.

    `pipeline` is the loaded pipeline config (its `data` sources and `seed` are used). A
    source's prompts that the decontamination report lists are dropped (`decontaminate`
    off: every record, as the decontamination scan itself reads them).
    """
    from r1pipe.data.loading import DataSourceError, load_source

    sources = dict(getattr(pipeline, "data", None) or {})
    seed = int(getattr(pipeline, "seed", 0) or 0)
    if value in sources:
        data = load_source(value, sources, seed=seed)
        drop = contaminated_ids(pipeline, value) if decontaminate else frozenset()
        if drop:
            data = data.filter(lambda record: str(record["id"]) not in drop)
        return data
    path = Path(os.path.expanduser(value))
    if (path / _MANIFEST).is_file():
        return load_source(_artifact_source(path), seed=seed, name=path.name)
    if path.exists() or any(ch in value for ch in "*?["):
        return load_source(DataSourceConfig(path=value), seed=seed)
    if "/" in value and not value.startswith((".", "/", "~")):
        return load_source(DataSourceConfig(hub=value), seed=seed)
    raise DataSourceError(
        f"data input {value!r} is neither a source under `data:` (defined: "
        f"{', '.join(sources) or 'none'}) nor an existing file, folder or Hub dataset id"
    )


def _artifact_source(folder: Path) -> DataSourceConfig:
    """A finished stage artifact (JSONL shards + manifest) as a `path:` source."""
    from r1pipe.artifacts import read_manifest
    from r1pipe.data.loading import DataSourceError

    manifest = read_manifest(folder)
    if not manifest.complete:
        raise DataSourceError(
            f"{folder}: artifact is not complete (its stage did not finish); run that stage first"
        )
    if manifest.records == 0:
        raise DataSourceError(f"{folder}: artifact has no records")
    return DataSourceConfig(path=str(folder / _SHARDS), format="json")


def prompt_dataset(
    pipeline: Any, value: str, prompts: Any, tokenizer: Any
) -> tuple[Any, PromptLengthReport]:
    """Rendered, length-checked prompts of a stage's data input, and what the limit did.

    `prompts` is the stage's `PromptSettings` (`template`, `system_prompt`,
    `max_prompt_tokens`, `prompt_length_mode`). A `chat` prompt stays a messages list, the
    conversational format TRL's trainers template themselves; it is measured through the
    tokenizer's chat template. The raw question is kept in the `question` column. For a
    streamed source the report fills in as the data is read.
    """
    return render_prompts(load_input(pipeline, value), prompts, tokenizer)


def render_prompts(data: Any, prompts: Any, tokenizer: Any) -> tuple[Any, PromptLengthReport]:
    """Loaded records rendered and length-checked as `prompt_dataset` does it, for prompts
    that are no data input of the stage (all-scenario RL's held-out general prompts)."""
    from r1pipe.data.length import limit_prompt_length
    from r1pipe.data.templates import render_dataset

    template = getattr(prompts, "template", "chat")
    if template == "chat" and not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(
            f"prompts.template is 'chat' but tokenizer {name!r} has no chat template; use "
            "'r1_zero' (the paper's template for a base model) or 'plain'"
        )
    rendered = render_dataset(
        data, template, tokenizer=None, system_prompt=getattr(prompts, "system_prompt", None)
    )
    return limit_prompt_length(
        rendered,
        tokenizer,
        int(getattr(prompts, "max_prompt_tokens", 512)),
        getattr(prompts, "prompt_length_mode", "drop"),
    )
