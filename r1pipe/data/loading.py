"""Turn a validated `DataSourceConfig` into a `datasets` object with r1pipe's columns.

Whatever a source looks like on disk or on the Hub, stages see the same columns: `id`,
`prompt`, `answer` (None without a checkable answer), `task_type` ("reasoning" or
"general"), and every other column the source had (`task`, `numbers`, `target`,
`reference`, ...). A small source is a `datasets.Dataset`; a large one (or one configured
with `streaming: true`) is a `datasets.IterableDataset` read lazily, so memory stays flat
however big the file is.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.contract import BadInput
from r1pipe.data.sources import BUILTIN_TASKS, TASK_TYPES, DataSourceConfig

if TYPE_CHECKING:
    from datasets import Dataset, Features, IterableDataset

STREAM_THRESHOLD_BYTES = 256 * 2**20
"""Local files larger than this (in total) stream unless `streaming:` says otherwise."""

CORE_COLUMNS = ("id", "prompt", "answer", "task_type")

_FORMATS = {
    ".jsonl": "json",
    ".json": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "csv",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_SPLIT_WORD = re.compile(r"(?:^|[-_./])(train|test|validation|valid|dev|eval)(?:[-_.]|$)")
_SPLIT_ALIASES = {"valid": "validation", "dev": "validation", "eval": "validation"}


class DataSourceError(BadInput):
    """A source that cannot be loaded as configured; the message names the source."""


# ---------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------


def load_source(
    source: DataSourceConfig | str,
    sources: Mapping[str, DataSourceConfig] | None = None,
    *,
    seed: int = 0,
    name: str | None = None,
) -> Dataset | IterableDataset:
    """Load one source (a config, or the name of one in `sources`) with r1pipe's columns.

    `seed` is the pipeline seed, used when the source sets none: it drives the built-in
    generators, shuffling and mixture order, so the same config always gives the same data.
    """
    sources = sources or {}
    if isinstance(source, str):
        if source not in sources:
            raise DataSourceError(
                f"data source {source!r} is not defined; defined: {', '.join(sources) or 'none'}"
            )
        name = name or source
        source = sources[source]
    name = name or _default_name(source)
    seed = source.seed if source.seed is not None else seed
    if source.kind == "mixture":
        return _load_mixture(source, sources, seed=seed, name=name)
    if source.kind == "builtin":
        try:
            data: Any = builtin_dataset(source, seed=seed)
        except ValueError as exc:
            raise DataSourceError(f"data source {name!r}: {exc}") from exc
    else:
        data = _load_files(source, name)
        data = _normalise(data, source, name)
    return _shuffle_and_limit(data, source, seed)


def builtin_records(source: DataSourceConfig, *, seed: int = 0) -> list[dict[str, Any]]:
    """The records of a `builtin:` source, as plain dicts.

    With `solutions: true` each reasoning record also carries `completion`, its worked
    solution (`r1pipe.data.solutions`): the cold-start stage can then train on correct
    chains of thought that no model had to produce. `builtin: general` with `pairs: true`
    gives preference pairs instead (`r1pipe.data.general.general_preferences`).
    """
    from r1pipe.data.general import general_preferences, generate_general
    from r1pipe.data.tasks import generate_reasoning, generate_task

    assert source.builtin is not None
    explicit = source.model_fields_set
    if source.builtin == "humaneval":
        from r1pipe.data.humaneval import humaneval_records

        return humaneval_records()
    if source.pairs:
        return [{**r, "answer": None} for r in general_preferences(
            source.split, size=source.size if "size" in explicit else None, seed=seed)]
    if source.builtin == "general":
        return [
            {**r, "answer": None}
            for r in generate_general(
                source.split,
                size=source.size if "size" in explicit else None,
                test_size=source.test_size if "test_size" in explicit else None,
            )
        ]
    params = {
        "size": source.size,
        "test_size": source.test_size,
        "difficulty": source.difficulty,
        "seed": seed,
    }
    if source.builtin == "reasoning":
        records = generate_reasoning(source.split, tasks=source.tasks, **params)
    else:
        records = generate_task(source.builtin, source.split, **params)
    if source.solutions:
        from r1pipe.data.solutions import worked_solution

        records = [{**r, "completion": worked_solution(r)} for r in records]
    return records


def builtin_dataset(source: DataSourceConfig, *, seed: int = 0) -> Dataset:
    """A `builtin:` source as an in-memory `datasets.Dataset` with a fixed schema."""
    from datasets import Dataset

    records = builtin_records(source, seed=seed)
    features = _builtin_features(source)
    columns = list(features)
    return Dataset.from_list([{c: r.get(c) for c in columns} for r in records], features=features)


def iter_records(data: Iterable[dict[str, Any]], n: int | None = None) -> Iterator[dict[str, Any]]:
    """The first `n` records of a Dataset, IterableDataset or list, without loading the rest."""
    for i, record in enumerate(data):
        if n is not None and i >= n:
            return
        yield record


# ---------------------------------------------------------------------------------------
# built-in schema
# ---------------------------------------------------------------------------------------


def _builtin_features(source: DataSourceConfig) -> Features:
    from datasets import Features, List, Value

    if source.builtin == "humaneval":
        from r1pipe.data.humaneval import COLUMNS

        return Features({name: Value("string") for name in COLUMNS})
    if source.builtin == "general":
        return Features(
            {
                "id": Value("string"),
                "prompt": Value("string"),
                "answer": Value("string"),
                "task_type": Value("string"),
                "category": Value("string"),
                "reference": Value("string"),
                "language": Value("string"),
                **({"chosen": Value("string"), "rejected": Value("string"),
                    "rejection": Value("string")} if source.pairs else {}),
            }
        )
    tasks = source.tasks or (BUILTIN_TASKS if source.builtin == "reasoning" else [source.builtin])
    columns: dict[str, Any] = {
        "id": Value("string"),
        "prompt": Value("string"),
        "answer": Value("string"),
        "task_type": Value("string"),
        "task": Value("string"),
        "difficulty": Value("int32"),
    }
    if "countdown" in tasks:
        columns["numbers"] = List(Value("int64"))
        columns["target"] = Value("int64")
    if "code" in tasks:  # open-r1's test cases, as a JSON string; the rule they came from
        columns["verification_info"] = Value("string")
        columns["spec"] = Value("string")
    if source.solutions:
        columns["completion"] = Value("string")
    return Features(columns)


# ---------------------------------------------------------------------------------------
# files and the Hub
# ---------------------------------------------------------------------------------------


def _default_name(source: DataSourceConfig) -> str:
    if source.hub:
        return source.hub.replace("/", "_")
    if source.path:
        stem = Path(source.path.rstrip("/")).name
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.split(".")[0]) or "data"
    if source.builtin:
        return source.builtin
    return "mixture"


def _format_of(path: str) -> str | None:
    lowered = path.lower()
    for ext in _COMPRESSION:
        if lowered.endswith(ext):
            lowered = lowered[: -len(ext)]
    return _FORMATS.get(os.path.splitext(lowered)[1])


def local_files(source: DataSourceConfig, name: str) -> tuple[str, list[str]]:
    """The builder name ("json", "parquet", "csv") and the files a `path:` source means.

    In a folder whose file names carry split words (train/test/validation), the files of
    the configured split are chosen; otherwise every data file in it belongs to "train".
    """
    assert source.path is not None
    path = os.path.expanduser(source.path)
    split = _base_split(source.split)
    if os.path.isdir(path):
        files = sorted(
            str(p)
            for p in Path(path).rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and (source.format or _format_of(p.name))
        )
        tagged = {f: _split_of(os.path.relpath(f, path)) for f in files}
        if any(tagged.values()):
            wanted = _SPLIT_ALIASES.get(split, split)
            files = [f for f in files if tagged[f] == wanted]
        elif split != "train":
            files = []
    elif any(ch in path for ch in "*?["):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
    elif os.path.isfile(path):
        files = [path]
    else:
        raise DataSourceError(f"data source {name!r}: {source.path!r} does not exist")
    if not files:
        raise DataSourceError(
            f"data source {name!r}: no data files for split {split!r} under {source.path!r}"
        )
    if source.format:
        return source.format, files
    formats: set[str] = set()
    for f in files:
        fmt = _format_of(f)
        if fmt is None:
            raise DataSourceError(
                f"data source {name!r}: cannot tell the format of {f!r}; set `format:` to "
                "json, parquet or csv"
            )
        formats.add(fmt)
    if len(formats) > 1:
        raise DataSourceError(
            f"data source {name!r}: mixes file formats {sorted(formats)}; point it at one"
        )
    return formats.pop(), files


def _split_of(relative: str) -> str | None:
    match = _SPLIT_WORD.search(relative.lower())
    if not match:
        return None
    word = match.group(1)
    return _SPLIT_ALIASES.get(word, word)


def _base_split(split: str) -> str:
    """"train" for "train[:10%]" and "train+test" style split expressions."""
    return re.split(r"[\[+]", split, maxsplit=1)[0].strip() or "train"


def script_repo_message(name: str, hub: str) -> str:
    """One line for a Hub repo that `datasets` >= 4 refuses: it holds a loading script."""
    import datasets

    return (f"data source {name!r}: hub {hub!r} is a dataset-script repo, which datasets "
            f"{datasets.__version__} no longer loads (with or without data_files); set "
            "`hub:` to a parquet mirror (LiveCodeBench: lighteval/code_generation_lite, "
            "subset v4_v5), or download its data files and load them with `path:`")


def _load_files(source: DataSourceConfig, name: str) -> Dataset | IterableDataset:
    from datasets import load_dataset

    if source.hub:
        streaming = bool(source.streaming)
        try:
            return load_dataset(
                source.hub,
                source.subset,
                revision=source.revision,
                data_files=source.data_files,
                split=source.split,
                streaming=streaming,
            )
        except Exception as exc:
            if "Dataset scripts are no longer supported" in str(exc):
                raise DataSourceError(script_repo_message(name, source.hub)) from None
            raise DataSourceError(
                f"data source {name!r}: cannot load Hub dataset {source.hub!r} "
                f"(split {source.split!r}): {exc}"
            ) from exc
    builder, files = local_files(source, name)
    streaming = source.streaming
    if streaming is None:
        streaming = sum(os.path.getsize(f) for f in files) > STREAM_THRESHOLD_BYTES
    kwargs: dict[str, Any] = {}
    if builder == "csv" and all(re.search(r"\.tsv(\.\w+)?$", f.lower()) for f in files):
        kwargs["sep"] = "\t"
    base = _base_split(source.split)
    split = base if streaming else source.split
    if builder == "json" and not streaming:
        _check_json_files(files, name)  # a bad line named by file and line, before datasets
    try:
        return load_dataset(
            builder, data_files={base: files}, split=split, streaming=streaming, **kwargs
        )
    except Exception as exc:
        if builder == "json":
            _check_json_files(files, name)
        raise DataSourceError(
            f"data source {name!r}: cannot read {source.path!r} as {builder}: {exc}"
        ) from exc


def _check_json_files(files: list[str], name: str) -> None:
    """Name the first problem of local JSON/JSONL files by file and line: bytes that are not
    UTF-8, a line that is not a JSON object (a torn last line, a stray word), an empty file.
    datasets' own message ("An error occurred while generating the dataset") names neither."""
    import json

    for file in files:
        if file.endswith(_COMPRESSION):
            continue
        with open(file, "rb") as fh:
            head = fh.read(1)
            fh.seek(0)
            if not head:
                raise DataSourceError(f"data source {name!r}: {file} is empty (no records); "
                                      "write one JSON object per line")
            if head == b"[" or file.endswith(".json"):
                raw = fh.read()
                fh.seek(0)
                try:
                    whole = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    line = raw.count(b"\n", 0, exc.start) + 1
                    raise DataSourceError(f"data source {name!r}: {file}:{line}: not UTF-8 "
                                          f"(byte 0x{raw[exc.start]:02x}); save it as UTF-8"
                                          ) from None
                except json.JSONDecodeError as exc:
                    if head == b"[" and raw.count(b"\n") <= 1:
                        raise DataSourceError(f"data source {name!r}: {file}:{exc.lineno}: "
                                              f"invalid JSON: {exc.msg}") from None
                    whole = None  # JSON lines (perhaps under a .json name): checked below
                if isinstance(whole, list):
                    bad = next((i for i, r in enumerate(whole) if not isinstance(r, dict)), None)
                    if bad is not None:
                        raise DataSourceError(
                            f"data source {name!r}: {file}:1: item {bad} of the JSON array is "
                            f"a {type(whole[bad]).__name__}, not an object like "
                            '{"prompt": ..., "answer": ...}')
                    continue
                if isinstance(whole, dict):
                    continue  # one object (datasets reads a `data` field or the object)
            for number, raw_line in enumerate(fh, start=1):
                if not raw_line.strip():
                    continue
                try:
                    record = json.loads(raw_line.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    raise DataSourceError(
                        f"data source {name!r}: {file}:{number}: not UTF-8 (byte "
                        f"0x{raw_line[exc.start]:02x}); save the file as UTF-8") from None
                except json.JSONDecodeError as exc:
                    torn = "" if raw_line.endswith(b"\n") else " (a torn last line?)"
                    raise DataSourceError(
                        f"data source {name!r}: {file}:{number}: not a JSON object: "
                        f"{exc.msg}{torn}; fix or remove the line") from None
                if not isinstance(record, dict):
                    raise DataSourceError(
                        f"data source {name!r}: {file}:{number}: a JSON {type(record).__name__}"
                        ", not an object; each line must be one record like "
                        '{"prompt": ..., "answer": ...}')


# ---------------------------------------------------------------------------------------
# column mapping
# ---------------------------------------------------------------------------------------


def _columns(data: Dataset | IterableDataset) -> list[str]:
    names = data.column_names
    if names is None:  # a stream whose schema is only known once read
        first = next(iter(data.take(1)), None)  # type: ignore[union-attr]
        names = list(first) if first is not None else []
    return list(names)


def _missing(name: str, source: DataSourceConfig, option: str, column: str, have: list[str]) -> str:
    return (
        f"data source {name!r} ({source.describe()}): {option} {column!r} is not a column of "
        f"the source; its columns are: {', '.join(have) or '(none)'}"
    )


def answer_text(value: Any) -> str | None:
    """A reference answer as the string the verifiers expect ("14", not 14 or 14.0)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _normalise(
    data: Dataset | IterableDataset, source: DataSourceConfig, name: str
) -> Dataset | IterableDataset:
    """Map the configured columns to `id`, `prompt`, `answer`, `task_type`; keep the rest."""
    from datasets import Features, Value

    have = _columns(data)
    explicit = source.model_fields_set
    prompt_col = source.prompt_column
    if prompt_col not in have:
        raise DataSourceError(_missing(name, source, "prompt_column", prompt_col, have))
    answer_col = source.answer_column
    if answer_col is not None and answer_col not in have:
        if "answer_column" in explicit:
            raise DataSourceError(_missing(name, source, "answer_column", answer_col, have))
        answer_col = None
    id_col = source.id_column
    if id_col is not None and id_col not in have:
        raise DataSourceError(_missing(name, source, "id_column", id_col, have))
    if id_col is None and "id" in have:
        id_col = "id"
    fixed_type: str | None = None
    type_col: str | None = None
    if source.task_type in TASK_TYPES:
        fixed_type = source.task_type
    elif source.task_type is not None:
        if source.task_type not in have:
            raise DataSourceError(
                _missing(name, source, "task_type column", source.task_type, have)
            )
        type_col = source.task_type
    elif "task_type" in have:
        type_col = "task_type"
    else:
        fixed_type = "reasoning" if answer_col is not None else "general"

    split = _base_split(source.split)

    def convert(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        # batched: per-record map calls cost more than reading the file when streaming
        types = [fixed_type] * len(indices) if type_col is None else batch[type_col]
        for index, task_type in zip(indices, types, strict=True):
            if task_type not in TASK_TYPES:
                raise DataSourceError(
                    f"data source {name!r}: record {index} has task_type {task_type!r}; "
                    f"expected one of {', '.join(TASK_TYPES)}"
                )
        raw_ids = batch[id_col] if id_col is not None else [None] * len(indices)
        answers = batch[answer_col] if answer_col is not None else [None] * len(indices)
        for index, prompt, answer in zip(indices, batch[prompt_col], answers, strict=True):
            if prompt is None or (isinstance(prompt, (str, list)) and not
                                  (prompt.strip() if isinstance(prompt, str) else prompt)):
                raise DataSourceError(
                    f"data source {name!r} ({source.describe()}): record {index} has "
                    f"{'no' if prompt is None else 'an empty'} prompt (column "
                    f"{prompt_col!r}); remove the record or fill it in")
            if isinstance(answer, dict):
                raise DataSourceError(
                    f"data source {name!r} ({source.describe()}): record {index} has a "
                    f"mapping as its answer (column {answer_col!r}); an answer is text or a "
                    "number: map the right field with answer_column")
        return {
            "id": [
                str(raw) if raw is not None else f"{name}-{split}-{index:06d}"
                for raw, index in zip(raw_ids, indices, strict=True)
            ],
            "prompt": batch[prompt_col],
            "answer": [answer_text(a) for a in answers],
            "task_type": types,
        }

    consumed = [c for c in (prompt_col, answer_col, id_col, type_col) if c is not None]
    remove = [c for c in dict.fromkeys(consumed) if c not in CORE_COLUMNS]
    features = None
    if data.features is not None:
        kept = {k: v for k, v in data.features.items() if k not in remove and k not in CORE_COLUMNS}
        features = Features(
            {
                "id": Value("string"),
                "prompt": data.features[prompt_col],
                "answer": Value("string"),
                "task_type": Value("string"),
                **kept,
            }
        )
    return data.map(
        convert, with_indices=True, batched=True, remove_columns=remove, features=features
    )


def _shuffle_and_limit(
    data: Dataset | IterableDataset, source: DataSourceConfig, seed: int
) -> Dataset | IterableDataset:
    from datasets import Dataset

    if isinstance(data, Dataset):
        if source.shuffle:
            data = data.shuffle(seed=seed)
        if source.limit is not None and source.limit < len(data):
            data = data.select(range(source.limit))
        return data
    if source.shuffle:
        data = data.shuffle(seed=seed, buffer_size=source.shuffle_buffer)
    if source.limit is not None:
        data = data.take(source.limit)
    return data


# ---------------------------------------------------------------------------------------
# mixtures
# ---------------------------------------------------------------------------------------


def _load_mixture(
    source: DataSourceConfig,
    sources: Mapping[str, DataSourceConfig],
    *,
    seed: int,
    name: str,
) -> Dataset | IterableDataset:
    from datasets import Dataset

    from r1pipe.data.mixture import MixtureError, mix_in_memory, mix_streams

    parts: list[Any] = []
    names: list[str] = []
    weights: list[float] = []
    for i, component in enumerate(source.mixture or []):
        if isinstance(component.source, str):
            part_name = component.source
            part = load_source(component.source, sources, seed=seed)
        else:
            part_name = f"{name}.{i}"
            part = load_source(component.source, sources, seed=seed, name=part_name)
        parts.append(part)
        names.append(part_name)
        weights.append(component.weight)
    try:
        if all(isinstance(p, Dataset) for p in parts):
            mixed: Any = mix_in_memory(parts, names, weights, seed, source.limit)
            return mixed.shuffle(seed=seed) if source.shuffle else mixed
        mixed = mix_streams(parts, names, weights, seed, source.limit)
    except MixtureError as exc:
        raise DataSourceError(f"data source {name!r}: {exc}") from exc
    if source.shuffle:
        mixed = mixed.shuffle(seed=seed, buffer_size=source.shuffle_buffer)
    return mixed
