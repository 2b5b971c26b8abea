"""Data checks for preflight: does the installed `datasets` load a source, how many records it
has (from the dataset card, no download), and how many samples a rejection-sampling `mix:`
can reach from its prompts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from r1pipe.config import PipelineConfig
from r1pipe.data.sources import DataSourceConfig
from r1pipe.preflight.models import hub_reachable, offline_hint
from r1pipe.preflight.table import Status


@dataclass(frozen=True)
class Ceiling:
    """How many samples of one part of a rejection-sampling `mix:` the prompts can give."""

    stage: str
    part: str                 # reasoning / general
    wanted: int               # mix.<part>
    reachable: int | None     # prompts x per-prompt kept; None when not countable
    prompts: int
    how: str
    key: str                  # what to change when short
    why: str


def mix_ceilings(config: PipelineConfig, stages: list[str] | None = None, *,
                 online: bool = True) -> list[Ceiling]:
    """The reachable sample counts beside every `mix:` (R2 of issue 30): a stage keeps at
    most `keep_per_prompt` samples of each reasoning prompt and one answer per general
    prompt, so `mix:` beyond prompts x that is never reached. `online=False` reads dataset
    cards from the Hugging Face cache only (`run --dry-run` downloads nothing)."""
    out = []
    for name in stages if stages is not None else config.enabled_stages():
        section = config.stages[name]
        mix = getattr(section, "mix", None)
        if mix is None:
            continue
        keep = int(getattr(section, "keep_per_prompt", None)
                   or getattr(section, "samples_per_prompt", 1))
        parts = [("reasoning", getattr(section, "data", None), mix.reasoning, keep,
                  f"keep_per_prompt {keep}", f"stages.{name}.data",
                  "a mixture stops when its first source runs out: add a larger prompt "
                  "source, or lower mix.reasoning"),
                 ("general", getattr(section, "general_data", None), mix.general, 1,
                  "one answer per prompt", f"stages.{name}.mix.general",
                  "fewer general prompts than mix.general")]
        for part, data, wanted, per_prompt, how, key, short in parts:
            if not wanted or not isinstance(data, str) or data not in config.data:
                continue
            prompts, why = reachable_prompts(config, data, online=online)
            out.append(Ceiling(name, part, wanted, None if prompts is None else
                               prompts * per_prompt, prompts or 0, how, key,
                               why if prompts is None else short))
    return out


def _hub_file(repo: str, filename: str, revision: str | None, online: bool = True
              ) -> tuple[Path | None, bool]:
    """(local path of a dataset repo's file, whether the Hub was asked): the cache first,
    then the Hub unless offline. (None, True): the Hub says the file does not exist."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError

    cached = try_to_load_from_cache(repo, filename, revision=revision, repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached), False
    if cached is not None:  # the cache knows the file does not exist
        return None, True
    if not online or not hub_reachable():
        return None, False
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, repo_type="dataset",
                                    etag_timeout=10)), True
    except RemoteEntryNotFoundError:
        return None, True
    except Exception:  # noqa: BLE001 - gated, missing repo: not answered here
        return None, False


def loadable(source: DataSourceConfig, name: str = "") -> tuple[Status, str]:
    """Whether `datasets` (as installed) loads the source, without downloading its data.

    datasets >= 4 refuses a Hub repo holding a loading script named after the repo
    ("Dataset scripts are no longer supported"), whatever `data_files` says: the repo's
    `<name>.py` is looked up in the Hugging Face cache, else on the Hub (one small file).
    """
    if source.kind != "hub":
        if source.kind == "path":
            from r1pipe.data.loading import DataSourceError, local_files

            try:
                local_files(source, source.path or "")
            except DataSourceError as exc:
                return "FAIL", str(exc)
        return "ok", source.kind
    assert source.hub is not None
    repo = source.hub
    script = repo.rstrip("/").rsplit("/", 1)[-1] + ".py"
    path, asked = _hub_file(repo, script, source.revision)
    if path is not None:
        from r1pipe.data.loading import script_repo_message

        return "FAIL", script_repo_message(name, repo)
    if asked:
        return "ok", "no loading script"
    return "n/a", "not checked: " + offline_hint(repo, script, "dataset")


def reachable_prompts(config: PipelineConfig, name: str, depth: int = 0, *,
                      online: bool = True) -> tuple[int | None, str]:
    """How many prompts a source yields: a mixture stops when its first component runs out
    (`r1pipe.data.mixture`), so it yields min(count_i / weight_i)."""
    source = config.data.get(name)
    if source is None or depth > len(config.data):
        return None, f"{name}: not a source of data:"
    if source.kind == "mixture":
        from r1pipe.data.mixture import normalise_weights

        parts = source.mixture or []
        weights = normalise_weights([p.weight for p in parts])
        total: float | None = None
        for part, weight in zip(parts, weights, strict=True):
            if not isinstance(part.source, str):
                return None, "an inline mixture component"
            count, why = reachable_prompts(config, part.source, depth + 1, online=online)
            if count is None:
                return None, why
            if weight > 0:
                total = count / weight if total is None else min(total, count / weight)
        return (int(total) if total is not None else 0), "mixture"
    count, why = record_count(source, online=online)
    if count is not None and source.limit:
        count = min(count, source.limit)
    return count, why


def record_count(source: DataSourceConfig, *, online: bool = True) -> tuple[int | None, str]:
    """Records of a source's split: `size` of a built-in, the lines of local JSONL files,
    the `dataset_info` of a Hub dataset's card (README.md: metadata, not data)."""
    if source.kind == "builtin":
        return (source.size if source.split == "train" else source.test_size), "built-in"
    if source.kind == "path":
        from r1pipe.data.loading import DataSourceError, local_files

        try:
            _, files = local_files(source, source.path or "")
        except DataSourceError as exc:
            return None, str(exc)
        if all(f.endswith(".jsonl") for f in files):
            count = 0
            for f in files:
                with open(f, "rb") as fh:
                    count += sum(1 for line in fh if line.strip())
            return count, "lines"
        return None, "not JSONL: not counted"
    if source.kind != "hub" or source.hub is None:
        return None, "not counted"
    path, _ = _hub_file(source.hub, "README.md", source.revision, online)
    if path is None:
        return None, "not counted: " + offline_hint(source.hub, "README.md", "dataset")
    return split_count(path.read_text(encoding="utf-8"), source.subset, source.split)


def split_count(card: str, subset: str | None, split: str) -> tuple[int | None, str]:
    """`num_examples` of `split` in a dataset card's YAML header (`dataset_info:`)."""
    import yaml

    if not card.startswith("---"):
        return None, "the dataset card has no metadata"
    header = yaml.safe_load(card.split("---", 2)[1]) or {}
    infos = header.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    for info in infos:
        if subset not in (None, info.get("config_name", "default")) and len(infos) > 1:
            continue
        for entry in info.get("splits") or []:
            if entry.get("name") == split:
                return int(entry["num_examples"]), "dataset card"
    return None, f"the dataset card lists no split {split!r}"
