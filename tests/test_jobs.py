"""The generation-job toolkit (`r1pipe.generation.jobs`): one `GenerationJob` value and the
one `run_job` helper every generating step uses, on a stand-in generator (no model), plus
the size rules of issue 31 for the files that carry it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from r1pipe.contract import ResumeInfo, Shard, StageFailed
from r1pipe.generation.base import Completion, Sampling
from r1pipe.generation.jobs import (
    GenerationJob,
    JobReport,
    Placement,
    Ranks,
    is_complete,
    rank_device,
    run_generation_job,
    run_job,
    tensor_parallel_of,
    tensor_parallel_problem,
)
from r1pipe.generation.lazy import Engine, LazyGenerator, as_generator
from tests.helpers import wide_functions

PACKAGE = Path(__file__).resolve().parents[1] / "r1pipe"
PROMPTS = [{"id": f"p{i}", "prompt": f"question {i}"} for i in range(7)]


class Echo:
    """A generator that answers each prompt with its text and the chunk's seed."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.closed = False

    def generate(self, prompts: list[Any], sampling: Sampling) -> list[list[Completion]]:
        self.calls.append(len(prompts))
        return [[Completion(f"{p} @{sampling.seed}", 3, "stop")] * sampling.n for p in prompts]

    def close(self) -> None:
        self.closed = True


def _build(record: dict[str, Any], outs: list[Any]) -> list[dict[str, Any]]:
    return [{"id": f"{record['id']}-s{k}", "completion": c.text} for k, c in enumerate(outs)]


def _job(out: Path, generator: Any, **fields: Any) -> GenerationJob:
    return GenerationJob(PROMPTS, out, generator=generator, sampling=Sampling(n=2, seed=10),
                         build=_build, chunk_size=3, **fields)


def _records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted(out.glob("train-*.jsonl"))
            for line in p.read_text().splitlines()]


def test_a_job_samples_chunk_by_chunk_and_a_rerun_loads_nothing(tmp_path: Path) -> None:
    gen = Echo()
    report = run_job(_job(tmp_path / "out", gen, meta={"why": "test"}))
    assert report.complete and report.chunks == 3 and report.generated == 3
    assert gen.calls == [3, 3, 1] and not gen.closed  # a generator handed over is the caller's
    records = _records(tmp_path / "out")
    assert len(records) == 14 and records[0]["completion"] == "question 0 @10"
    assert records[-1]["completion"] == "question 6 @12"  # chunk k: seed + k
    meta = json.loads((tmp_path / "out/manifest.json").read_text())["meta"]
    assert meta == {"chunk_size": 3, "chunks": 3, "prompts": 7, "why": "test"}

    made: list[Echo] = []
    again = run_job(_job(tmp_path / "out", lambda: made.append(Echo()) or made[-1]))
    assert again.complete and again.generated == 0 and not made  # no engine for a done job
    assert again == JobReport(chunks=3, done_before=3, prompts=7, records=14, complete=True)


def test_an_engine_is_made_only_when_a_chunk_is_left_and_closed_after(tmp_path: Path) -> None:
    made: list[Echo] = []

    def factory() -> Echo:
        made.append(Echo())
        return made[-1]

    gen, owned = as_generator(factory)
    assert owned and isinstance(gen, LazyGenerator) and not gen.loaded
    run_job(_job(tmp_path / "out", factory))
    assert len(made) == 1 and made[0].closed
    engine = Engine("some/model", SimpleNamespace(backend="hf"), 3)
    assert callable(engine) and not hasattr(engine, "generate")  # a factory: the job owns it
    assert repr(engine) == "Engine('some/model', backend='hf', seed=3)"


def test_shard_parts_then_a_merge_equal_one_run(tmp_path: Path) -> None:
    run_job(_job(tmp_path / "one", Echo()))
    for index in (0, 1):
        part = run_job(_job(tmp_path / "parts", Echo(), place=Placement(shard=Shard(index, 2))))
        assert not part.complete
    merged = run_job(_job(tmp_path / "parts", Echo(), place=Placement(merge=True)))
    assert merged.complete and merged.generated == 0
    assert _records(tmp_path / "parts") == _records(tmp_path / "one")


def test_a_merge_missing_a_part_fails_the_stage_naming_the_chunks(tmp_path: Path) -> None:
    run_job(_job(tmp_path / "out", Echo(), place=Placement(shard=Shard(0, 2))))
    with pytest.raises(StageFailed, match=r"1 of 3 chunks were never generated \(chunks 1\)"
                       r".*run this command once more"):
        run_job(_job(tmp_path / "out", Echo(), place=Placement(merge=True)))
    assert not is_complete(tmp_path / "out")


def test_ranks_split_the_chunks_and_rank_zero_finalizes(tmp_path: Path) -> None:
    """Two ranks in one process, one after the other: rank 1 leaves its chunk unfinished,
    rank 0 (polling) finds it on disk and writes the manifest with the rank count."""
    out = tmp_path / "out"
    second = run_generation_job(_job(out, Echo(), place=Placement(ranks=Ranks(1, 2))))
    assert not second.complete and second.generated == 1  # chunk 1 of 0, 1, 2
    first = run_generation_job(_job(out, Echo(), place=Placement(ranks=Ranks(0, 2), poll=0.01)))
    assert first.complete and first.generated == 2
    meta = json.loads((out / "manifest.json").read_text())["meta"]
    assert meta["ranks"] == 2 and meta["chunks"] == 3
    assert _records(out) == _records_of_one_run(tmp_path)


def _records_of_one_run(tmp_path: Path) -> list[dict[str, Any]]:
    run_job(_job(tmp_path / "single", Echo()))
    return _records(tmp_path / "single")


def _ctx(shard: Shard | None, status: str | None, **generation: Any) -> Any:
    pipeline = SimpleNamespace(generation=SimpleNamespace(**({"backend": "hf"} | generation)))
    return SimpleNamespace(shard=shard, resume=ResumeInfo(previous_status=status),
                           pipeline=pipeline)


def test_placement_of_a_stage_merges_after_a_partial_run(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "2")
    partial = _ctx(None, "partial")
    assert Placement.of(partial) == Placement(merge=True, ranks=Ranks(2, 4, 2))
    part = _ctx(Shard(1, 2), "partial")
    assert Placement.of(part) == Placement(shard=Shard(1, 2), ranks=Ranks(2, 4, 2))
    assert Placement.launched(part) == Placement(ranks=Ranks(2, 4, 2))
    assert Placement.of(_ctx(None, "failed")) == Placement(ranks=Ranks(2, 4, 2))


# ---------------------------------------------------------------------------------------
# Engines of several GPUs under `launch:` (S4 of issue 30): ranks r..r+tp-1 form one engine
# ---------------------------------------------------------------------------------------


def test_tensor_parallel_groups_of_ranks() -> None:
    ranks = [Ranks(r, 8, r % 4, tensor_parallel=2) for r in range(8)]
    assert [r.engine for r in ranks] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r.leads for r in ranks] == [True, False] * 4
    assert {r.engines for r in ranks} == {4}
    assert [list(r.devices) for r in ranks[:4]] == [[0, 1], [0, 1], [2, 3], [2, 3]]
    assert [list(r.devices) for r in ranks[4:6]] == [[0, 1], [0, 1]]  # machine 2's GPUs
    # chunk k goes to engine k mod 4, sampled by its leader; the followers sample nothing
    owner = {k: [r.rank for r in ranks if r.owns(k)] for k in range(8)}
    assert owner == {0: [0], 1: [2], 2: [4], 3: [6], 4: [0], 5: [2], 6: [4], 7: [6]}
    # inside `--shard 1/2` (chunks 1, 3, 5, 7), the part's j-th chunk goes to engine j mod 4
    shard = Shard(1, 2)
    assert {k: [r.rank for r in ranks if r.owns(k, shard)] for k in (1, 3, 5, 7)} == {
        1: [0], 3: [2], 5: [4], 7: [6]}
    # tensor parallel 1 is what it always was: every rank an engine of its own GPU
    assert [list(Ranks(r, 4, r).devices) for r in range(4)] == [[0], [1], [2], [3]]
    assert [k for k in range(6) if Ranks(1, 2).owns(k)] == [1, 3, 5]


@pytest.mark.parametrize(("world", "per_node", "tp", "why"), [
    (4, 4, 3, "3 does not divide the 4 GPU"),
    (4, 4, 8, "8 is more than the 4 GPU"),
    (8, 4, 8, "one engine cannot span machines"),
    (6, 2, 4, "4 is more than the 2 GPU"),
])
def test_tensor_parallel_that_cannot_be_honoured_names_the_key(
        monkeypatch: pytest.MonkeyPatch, world: int, per_node: int, tp: int, why: str) -> None:
    monkeypatch.setenv("WORLD_SIZE", str(world))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(per_node))
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(ValueError, match="^generation.vllm.tensor_parallel_size: ") as err:
        Ranks.from_env(tp)
    assert why in str(err.value)
    assert tensor_parallel_problem(tp, world, world // per_node) == str(err.value)
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        Placement.of(_ctx(None, None, backend="vllm", vllm={"tensor_parallel_size": tp}))


def test_tensor_parallel_that_fits_groups_the_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert tensor_parallel_problem(4, 8, 2) is None and tensor_parallel_problem(2, 8, 2) is None
    assert Ranks.from_env(4) == Ranks(5, 8, 1, tensor_parallel=4)
    vllm = _ctx(None, None, backend="vllm", vllm={"tensor_parallel_size": 2})
    assert Placement.of(vllm).ranks == Ranks(5, 8, 1, tensor_parallel=2)
    assert tensor_parallel_of(vllm.pipeline.generation) == 2
    hf = _ctx(None, None, vllm={"tensor_parallel_size": 2})  # hf: one device per model
    assert tensor_parallel_of(hf.pipeline.generation) == 1
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert Ranks.from_env(4) == Ranks(0, 1, 1)  # one process: nothing to group


@pytest.mark.parametrize(("visible", "local_rank", "tp", "expected"), [
    (None, 3, 1, "3"), (None, 3, 2, "2,3"), (None, 1, 4, "0,1,2,3"),
    ("4,5,6,7", 3, 2, "6,7"), ("4,5,6,7", 0, 1, "4")])
def test_rank_device_shows_the_engine_its_groups_gpus(
        monkeypatch: pytest.MonkeyPatch, visible: str | None, local_rank: int, tp: int,
        expected: str) -> None:
    """Fake device counts: four GPUs, torch told CUDA is there; what the engine's processes
    would see while the block runs, and the variable put back after."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with rank_device(Ranks(local_rank, 4, local_rank, tensor_parallel=tp)):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == expected
    assert current == [local_rank]
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == visible


def test_a_tensor_parallel_leader_samples_while_its_follower_waits(tmp_path: Path) -> None:
    out = tmp_path / "out"
    follower = run_job(_job(out, Echo(), place=Placement(ranks=Ranks(1, 2, 1, 2))))
    assert follower == JobReport() and not list(out.glob("train-*"))
    leader = run_job(_job(out, Echo(), place=Placement(ranks=Ranks(0, 2, 0, 2), poll=0.01)))
    assert leader.complete and leader.generated == 3
    meta = json.loads((out / "manifest.json").read_text())["meta"]
    assert meta["ranks"] == 2 and meta["tensor_parallel"] == 2
    assert _records(out) == _records_of_one_run(tmp_path)


TOOLKIT = ["generation/jobs.py", "generation/shard_steps.py", "generation/lazy.py",
           "stages/reject_sample.py", "stages/cold_start/__init__.py", "prompt_filter.py",
           "evaluation/runner.py", "stages/all_scenario_rl/general_reward.py"]


@pytest.mark.parametrize("name", TOOLKIT)
def test_the_toolkit_has_no_function_over_eight_parameters(name: str) -> None:
    """Issue 31: a job is one value (`GenerationJob`), not 16 keywords handed down."""
    wide = [f"{fn}: {count}" for _, fn, count in
            wide_functions((PACKAGE / name).read_text(encoding="utf-8"))]
    assert not wide, f"{name}: {wide}"


def test_the_stages_share_the_toolkit_instead_of_copies() -> None:
    for name in ("stages/reject_sample.py", "stages/cold_start/__init__.py"):
        text = (PACKAGE / name).read_text(encoding="utf-8")
        assert "def _wait_for" not in text and "def _job(" not in text
        assert "previous_status" not in text  # the merge decision is `Placement.of`'s
    assert (PACKAGE / "generation/jobs.py").read_text(encoding="utf-8").count("\n") <= 600
