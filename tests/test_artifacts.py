"""Sharded JSONL artifacts: atomic shards, manifests, cards, `datasets` compatibility."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from r1pipe.artifacts import (
    MANIFEST,
    ArtifactError,
    DatasetCard,
    ShardedJsonlWriter,
    atomic_write,
    count_records,
    fingerprint,
    iter_records,
    read_manifest,
)
from tests.helpers import cli_env, sigkill, wait_until


def _records(n: int, start: int = 0) -> list[dict]:
    return [{"id": f"r-{i:05d}", "prompt": f"What is {i} + {i}?", "answer": str(2 * i)}
            for i in range(start, start + n)]


def test_round_trip_manifest_and_card(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    for index in range(3):
        with writer.shard(index) as sink:
            sink.write_many(_records(4, index * 4))
    manifest = writer.finalize(card=DatasetCard(title="Test data", description="sums",
                                                stage="demo", pipeline="p",
                                                fields={"id": "record id"}))
    assert manifest.records == 12
    assert [r["id"] for r in iter_records(tmp_path / "art")] == [f"r-{i:05d}" for i in range(12)]
    on_disk = json.loads((tmp_path / "art" / MANIFEST).read_text())
    assert on_disk["complete"] is True and on_disk["records"] == 12
    assert set(on_disk["shards"]) == {"train-00000.jsonl", "train-00001.jsonl",
                                      "train-00002.jsonl"}
    card = (tmp_path / "art" / "README.md").read_text()
    assert card.startswith("---\n") and "train-*.jsonl" in card and "| records | 12 |" in card
    assert count_records(tmp_path / "art") == 12


def test_datasets_loads_the_folder(tmp_path: Path) -> None:
    from datasets import load_dataset

    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(25), shard_size=10)
    writer.finalize(card=DatasetCard(title="t", description="d"))
    by_dir = load_dataset("json", data_dir=str(tmp_path / "art"), split="train")
    by_card = load_dataset(str(tmp_path / "art"), split="train")
    assert by_dir.num_rows == by_card.num_rows == 25
    assert sorted(by_dir["id"]) == [f"r-{i:05d}" for i in range(25)]


def test_failed_shard_leaves_nothing_and_can_be_retried(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    with pytest.raises(RuntimeError), writer.shard(0) as sink:
        sink.write_many(_records(3))
        raise RuntimeError("generation crashed")
    assert writer.finished == set()
    assert not list((tmp_path / "art").glob("*.jsonl")) and not list((tmp_path / "art").glob(".*tmp"))
    with writer.shard(0) as sink:
        sink.write_many(_records(3))
    assert writer.finished == {0}
    with pytest.raises(ArtifactError, match="already written"), writer.shard(0):
        pass


def test_reader_detects_tampering_and_incomplete(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(5), shard_size=5)
    with pytest.raises(ArtifactError, match="not complete"):
        list(iter_records(tmp_path / "art"))
    writer.finalize()
    shard = tmp_path / "art" / "train-00000.jsonl"
    shard.write_text(shard.read_text().replace("r-00003", "r-99999"))
    with pytest.raises(ArtifactError, match="does not match the manifest"):
        list(iter_records(tmp_path / "art"))


def test_write_records_resumes_by_count(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(20), shard_size=10)
    (tmp_path / "art" / "train-00001.jsonl").unlink()  # as if killed before shard 1
    again = ShardedJsonlWriter(tmp_path / "art")
    assert again.finished == {0}
    again.write_records(_records(35), shard_size=10)
    again.finalize(expected_shards=4)
    ids = [r["id"] for r in iter_records(tmp_path / "art")]
    assert ids == [f"r-{i:05d}" for i in range(35)]


def test_unlisted_whole_shard_is_adopted(tmp_path: Path) -> None:
    """A kill between the shard rename and the manifest update loses nothing."""
    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(10), shard_size=5)
    manifest = json.loads((tmp_path / "art" / MANIFEST).read_text())
    del manifest["shards"]["train-00001.jsonl"]
    atomic_write(tmp_path / "art" / MANIFEST, json.dumps(manifest))
    again = ShardedJsonlWriter(tmp_path / "art")
    assert again.finished == {0, 1}
    assert read_manifest(tmp_path / "art").records == 10


def test_finalize_refuses_missing_shards(tmp_path: Path) -> None:
    writer = ShardedJsonlWriter(tmp_path / "art")
    with writer.shard(1) as sink:
        sink.write_many(_records(2))
    with pytest.raises(ArtifactError, match=r"shards missing: \[0, 2\]"):
        writer.finalize(expected_shards=3)


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from r1pipe.artifacts import ShardedJsonlWriter
    out, n_shards, per_shard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    writer = ShardedJsonlWriter(out)
    for index in range(n_shards):
        if index in writer.finished:
            continue
        with writer.shard(index) as sink:
            for i in range(per_shard):
                sink.write({"id": f"{index}-{i}", "pad": "x" * 200})
                time.sleep(0.002)
    writer.finalize(expected_shards=n_shards)
""")


def test_sigkill_mid_shard_leaves_only_whole_shards_and_resume_completes(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER_SCRIPT)
    out = tmp_path / "art"
    env = cli_env()
    n_shards, per_shard = 12, 50
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(n_shards), str(per_shard)],
                            env=env)
    # kill once a few shards are done and one is in progress
    wait_until(lambda: len(list(out.glob("train-*.jsonl"))) >= 3
               and bool(list(out.glob(".train-*.tmp"))), timeout=60, interval=0.01)
    sigkill(proc)
    visible = sorted(out.glob("train-*.jsonl"))
    assert 3 <= len(visible) < n_shards
    for shard in visible:  # every visible shard is whole and parses
        lines = shard.read_text().splitlines()
        assert len(lines) == per_shard
        assert all(json.loads(line)["id"] for line in lines)
    subprocess.run([sys.executable, str(script), str(out), str(n_shards), str(per_shard)],
                   env=env, check=True)
    ids = [r["id"] for r in iter_records(out)]
    expected = [f"{s}-{i}" for s in range(n_shards) for i in range(per_shard)]
    assert ids == expected  # no duplicate, no missing record, in order
    assert not list(out.glob(".*.tmp"))


def test_fingerprint_is_order_independent() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_card_never_holds_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefghijklmnopqrstuvwxyz")
    writer = ShardedJsonlWriter(tmp_path / "art")
    writer.write_records(_records(1))
    writer.finalize(card=DatasetCard(title="t", description="pushed with hf_abcdefghijklmnopqrstuvwxyz"))
    assert "hf_abcdefghijklmnopqrstuvwxyz" not in (tmp_path / "art" / "README.md").read_text()


def test_written_files_get_the_usual_permissions(tmp_path: Path) -> None:
    """Atomic writes go through mkstemp (0600); the files must end up as open() would make
    them, so a run dir on a shared filesystem stays readable to the team."""
    import os
    import stat

    from r1pipe.artifacts import ShardedJsonlWriter, atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "state.json", "{}")
        writer = ShardedJsonlWriter(tmp_path / "data")
        writer.write_records([{"id": "a"}], shard_size=1)
        writer.finalize()
    finally:
        os.umask(old)
    for path in (tmp_path / "state.json", *sorted((tmp_path / "data").iterdir())):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_card_types_let_datasets_read_a_column_null_in_the_first_shard(tmp_path: Path) -> None:
    """`datasets` infers JSON types from the first file; the card carries the types unified
    over all shards, so a field that only later shards fill (countdown's `numbers`) loads."""
    from datasets import load_dataset

    from r1pipe.artifacts import DatasetCard, ShardedJsonlWriter
    from r1pipe.checkpoints import read_card

    writer = ShardedJsonlWriter(tmp_path / "data")
    writer.write_records([{"id": "a", "numbers": None, "removed_by": None},
                          {"id": "b", "numbers": None, "removed_by": None},
                          {"id": "c", "numbers": [3, 4], "removed_by": "correct"}], shard_size=2)
    writer.finalize(card=DatasetCard(title="t", description="d"))
    header = read_card(tmp_path / "data")
    types = {f["name"]: f for f in header["dataset_info"]["features"]}
    assert types["numbers"]["list"] == "int64" and types["removed_by"]["dtype"] == "string"
    ds = load_dataset(str(tmp_path / "data"), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds["numbers"] == [None, None, [3, 4]] and ds["id"] == ["a", "b", "c"]
