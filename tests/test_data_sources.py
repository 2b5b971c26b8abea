"""Data sources: YAML validation, local files, column mapping, mixtures and streaming."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from r1pipe.data.loading import DataSourceError, load_source
from r1pipe.data.mixture import BLOCK
from r1pipe.data.sources import DataSourceConfig, check_references, parse_sources


def _jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def _qa(n: int, start: int = 0) -> list[dict]:
    return [{"question": f"What is {i} + 1?", "solution": i + 1, "level": i % 3}
            for i in range(start, start + n)]


# ------------------------------------------------------------------------------- the model


def test_a_source_is_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one of `hub:`.*got none of them"):
        DataSourceConfig.model_validate({"split": "train"})
    with pytest.raises(ValidationError, match="exactly one of .*got hub, path"):
        DataSourceConfig.model_validate({"hub": "org/x", "path": "x.jsonl"})
    assert DataSourceConfig(hub="openai/gsm8k", config="main").subset == "main"
    assert DataSourceConfig(builtin="reasoning").kind == "builtin"


def test_options_that_do_not_apply_are_errors() -> None:
    with pytest.raises(ValidationError, match="size do not apply to a `path:` source"):
        DataSourceConfig.model_validate({"path": "x.jsonl", "size": 10})
    with pytest.raises(ValidationError, match="prompt_column do not apply to a `builtin:`"):
        DataSourceConfig.model_validate({"builtin": "arithmetic", "prompt_column": "q"})
    with pytest.raises(ValidationError, match="splits 'train' and 'test'"):
        DataSourceConfig.model_validate({"builtin": "arithmetic", "split": "validation"})
    with pytest.raises(ValidationError, match="unknown built-in task"):
        DataSourceConfig.model_validate({"builtin": "reasoning", "tasks": ["sudoku"]})
    with pytest.raises(ValidationError, match="Extra inputs"):
        DataSourceConfig.model_validate({"builtin": "arithmetic", "sise": 10})


def test_mixture_references_are_checked() -> None:
    sources = parse_sources({
        "a": {"builtin": "arithmetic"},
        "mix": {"mixture": [{"source": "a", "weight": 3},
                            {"source": {"builtin": "general"}, "weight": 1}]},
    })
    assert sources["mix"].referenced_names() == ["a"]
    with pytest.raises(ValueError, match="unknown source 'b'; known sources: a"):
        parse_sources({"a": {"mixture": [{"source": "b", "weight": 1}]}})
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        check_references({
            "a": DataSourceConfig.model_validate({"mixture": [{"source": "b", "weight": 1}]}),
            "b": DataSourceConfig.model_validate({"mixture": [{"source": "a", "weight": 1}]}),
        })
    with pytest.raises(ValidationError, match="greater than 0"):
        DataSourceConfig.model_validate({"mixture": [{"source": "a", "weight": 0}]})


def test_importing_the_data_package_stays_light() -> None:
    code = ("import sys, r1pipe.data, r1pipe.data.cli, r1pipe.data.templates;"
            "print(sorted(m for m in ('datasets', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------ local files


@pytest.mark.parametrize("streaming", [False, True])
def test_a_missing_column_names_the_source_the_column_and_the_columns(
    tmp_path: Path, streaming: bool
) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", _qa(5))
    source = DataSourceConfig(path=str(path), prompt_column="problem", streaming=streaming)
    with pytest.raises(DataSourceError) as info:
        load_source("mathqa", {"mathqa": source})
    message = str(info.value)
    assert "'mathqa'" in message and "'problem'" in message
    assert "question, solution, level" in message


def test_an_explicit_answer_column_must_exist(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", _qa(5))
    source = DataSourceConfig(path=str(path), prompt_column="question", answer_column="gold")
    with pytest.raises(DataSourceError, match="answer_column 'gold' .*question, solution, level"):
        load_source(source, name="qa")
    source = DataSourceConfig(path=str(path), prompt_column="question", task_type="kind")
    with pytest.raises(DataSourceError, match="task_type column 'kind'"):
        load_source(source, name="qa")


def test_columns_are_mapped_and_the_rest_kept(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", _qa(4))
    data = load_source(DataSourceConfig(path=str(path), prompt_column="question",
                                        answer_column="solution"), name="qa")
    assert data.column_names == ["id", "prompt", "answer", "task_type", "level"]
    assert data[0] == {"id": "qa-train-000000", "prompt": "What is 0 + 1?", "answer": "1",
                       "task_type": "reasoning", "level": 0}
    # no answer column: general prompts
    data = load_source(DataSourceConfig(path=str(path), prompt_column="question",
                                        answer_column=None), name="qa")
    assert set(data["task_type"]) == {"general"} and set(data["answer"]) == {None}
    assert "solution" in data.column_names


def test_ids_and_task_types_come_from_columns_when_present(tmp_path: Path) -> None:
    records = [{"uid": f"u{i}", "prompt": f"p{i}", "answer": None if i % 2 else str(i),
                "kind": "general" if i % 2 else "reasoning"} for i in range(6)]
    path = _jsonl(tmp_path / "mixed.jsonl", records)
    data = load_source(DataSourceConfig(path=str(path), id_column="uid", task_type="kind"))
    assert data["id"] == [f"u{i}" for i in range(6)]
    assert data["task_type"] == [r["kind"] for r in records]
    bad = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "task_type": "chat"}])
    with pytest.raises(DataSourceError, match="task_type 'chat'"):
        load_source(DataSourceConfig(path=str(bad)), name="bad")


def test_csv_parquet_folders_and_globs(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(_qa(6))
    frame.to_csv(tmp_path / "qa.csv", index=False)
    frame.to_parquet(tmp_path / "qa.parquet")
    for name in ("qa.csv", "qa.parquet"):
        data = load_source(DataSourceConfig(path=str(tmp_path / name), prompt_column="question",
                                            answer_column="solution"))
        assert data["answer"] == [str(i + 1) for i in range(6)], name
    folder = tmp_path / "folder"
    _jsonl(folder / "train-00000.jsonl", _qa(3))
    _jsonl(folder / "train-00001.jsonl", _qa(3, start=3))
    _jsonl(folder / "test.jsonl", _qa(2, start=100))
    common = {"path": str(folder), "prompt_column": "question"}
    assert len(load_source(DataSourceConfig(**common))) == 6
    test = load_source(DataSourceConfig(**common, split="test"))
    assert test["prompt"] == ["What is 100 + 1?", "What is 101 + 1?"]
    globbed = load_source(DataSourceConfig(path=str(folder / "train-*.jsonl"),
                                           prompt_column="question"))
    assert len(globbed) == 6
    with pytest.raises(DataSourceError, match="does not exist"):
        load_source(DataSourceConfig(path=str(tmp_path / "nope.jsonl")), name="nope")


def test_shuffle_and_limit_are_deterministic_by_seed(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "qa.jsonl", _qa(200))

    def ids(seed: int, streaming: bool) -> list[str]:
        source = DataSourceConfig(path=str(path), prompt_column="question", shuffle=True,
                                  limit=20, streaming=streaming, shuffle_buffer=50)
        return [r["id"] for r in load_source(source, name="qa", seed=seed)]

    for streaming in (False, True):
        first = ids(1, streaming)
        assert len(first) == 20 and first == ids(1, streaming)
        assert first != ids(2, streaming)
        assert first != [f"qa-train-{i:06d}" for i in range(20)]


def test_builtin_sources_load_with_their_splits() -> None:
    sources = parse_sources({
        "train": {"builtin": "reasoning", "size": 40, "difficulty": 2},
        "test": {"builtin": "reasoning", "size": 40, "test_size": 12, "split": "test",
                 "difficulty": 2},
    })
    train = load_source("train", sources, seed=3)
    test = load_source("test", sources, seed=3)
    assert len(train) == 40 and len(test) == 12
    assert {"numbers", "target", "task", "difficulty"} <= set(train.column_names)
    assert not set(train["prompt"]) & set(test["prompt"])
    countdown = [r for r in train if r["task"] == "countdown"]
    assert countdown and all(r["numbers"] and r["target"] for r in countdown)
    with pytest.raises(DataSourceError, match="'train': built-in task 'multiplication'"):
        load_source("train", {"train": DataSourceConfig(builtin="multiplication",
                                                        size=10**6, difficulty=2)})
    with pytest.raises(DataSourceError, match="not defined; defined: train, test"):
        load_source("valid", sources)


# -------------------------------------------------------------------------------- mixtures


@pytest.mark.parametrize("streaming", [False, True])
def test_a_mixture_hits_its_proportions_within_one_percent(tmp_path: Path,
                                                           streaming: bool) -> None:
    path = _jsonl(tmp_path / "general.jsonl",
                  [{"prompt": f"Tell me about topic {i}."} for i in range(3000)])
    sources = parse_sources({
        "reasoning": {"builtin": "arithmetic", "size": 8000, "difficulty": 3},
        "chat": {"path": str(path), "streaming": streaming},
        "mix": {"mixture": [{"source": "reasoning", "weight": 0.7},
                            {"source": "chat", "weight": 0.3}], "limit": 10_000},
    })
    data = load_source("mix", sources, seed=5)
    kinds = Counter(r["task_type"] for r in data)
    assert sum(kinds.values()) == 10_000
    assert abs(kinds["reasoning"] / 10_000 - 0.7) <= 0.01
    assert abs(kinds["general"] / 10_000 - 0.3) <= 0.01
    # any stretch of the mixture is close to the shares, not just the whole
    first = Counter(r["task_type"] for r in list(data)[:1000])
    assert abs(first["reasoning"] - 700) <= 10
    # columns of both sides are kept, missing ones filled with None
    record = next(r for r in data if r["task_type"] == "general")
    assert record["task"] is None and record["answer"] is None
    again = [r["id"] for r in load_source("mix", sources, seed=5)]
    assert again == [r["id"] for r in data]


def test_a_mixture_without_limit_stops_when_a_source_runs_out() -> None:
    source = DataSourceConfig.model_validate({"mixture": [
        {"source": {"builtin": "arithmetic", "size": 500}, "weight": 1},
        {"source": {"builtin": "multiplication", "size": 5000}, "weight": 1},
    ]})
    data = load_source(source)
    counts = Counter(data["task"])
    # order is shuffled within blocks of BLOCK records, so the stop lands within half a block
    assert counts["arithmetic"] == 500 and abs(counts["multiplication"] - 500) <= BLOCK // 2
    assert len(set(data["id"])) == len(data)


def test_mixture_columns_of_clashing_types_are_an_error(tmp_path: Path) -> None:
    a = _jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "extra": "text"}])
    b = _jsonl(tmp_path / "b.jsonl", [{"prompt": "q", "extra": [1, 2]}])
    source = DataSourceConfig.model_validate({"mixture": [
        {"source": {"path": str(a)}, "weight": 1}, {"source": {"path": str(b)}, "weight": 1}]})
    with pytest.raises(DataSourceError, match="column 'extra'"):
        load_source(source, name="clash")


# ------------------------------------------------------------------------------- streaming

_STREAM_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    from r1pipe.data.loading import load_source
    from r1pipe.data.sources import DataSourceConfig

    path, n = sys.argv[1], int(sys.argv[2])
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"question": f"What is {i} + {i % 97}?", "solution": i + i % 97,
                                "origin": "synthetic"}) + "\\n")
    start = time.time()
    source = DataSourceConfig(path=path, prompt_column="question", answer_column="solution",
                              streaming=True)
    count = 0
    for record in load_source(source, name="big"):
        count += 1
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "peak_mb": peak_mb, "seconds": time.time() - start,
                      "last_id": record["id"], "last_answer": record["answer"]}))
""")


def _stream(tmp_path: Path, n: int) -> dict:
    path = tmp_path / f"big-{n}.jsonl"
    out = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(path), str(n)],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["file_mb"] = path.stat().st_size / 2**20
    path.unlink()
    return result


def test_streaming_a_million_records_keeps_memory_flat(tmp_path: Path) -> None:
    """Peak RSS for 1,000,000 records stays within a small margin of that for 100,000."""
    small = _stream(tmp_path, 100_000)
    large = _stream(tmp_path, 1_000_000)
    assert small["count"] == 100_000 and large["count"] == 1_000_000
    assert large["last_id"] == "big-train-999999"
    assert large["last_answer"] == str(999_999 + 999_999 % 97)
    growth = large["peak_mb"] - small["peak_mb"]
    print(f"peak RSS 100k: {small['peak_mb']:.0f} MB, 1M: {large['peak_mb']:.0f} MB "
          f"(file {large['file_mb']:.0f} MB, streamed in {large['seconds']:.1f} s)")
    # Holding the records would cost several times the file; allocator pools and read
    # buffers account for a few tens of MB and stop growing (2M records peak like 1M).
    assert growth < large["file_mb"], (small, large)
