"""The reject-sample stage through the engine on r1pipe's tiny model.

One uninterrupted run (the `baseline` fixture) is the reference the other tests compare
with: a run killed with SIGKILL during generation and resumed, and two `--shard` parts
merged, must both give exactly its generated records. The tiny model is random, so its
reasoning answers are wrong: the filters reject them (and say so), and the mix is made of
general prompts with their reference answers, which is enough to train on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from r1pipe.artifacts import iter_records, read_manifest
from r1pipe.config import load
from r1pipe.contract import Shard, StageFailed
from r1pipe.pipeline import execute, plan
from tests.helpers import REPO, cli_env, sigkill, start_cli, wait_until, write_pipeline

pytestmark = pytest.mark.usefixtures("r1pipe_cache")

PROMPTS = 12
SAMPLES = 2

STAGES = """\
stages:
  reject_sample:
    from: base
    train_from: base
    data: reasoning
    general_data: {general_data}
    samples_per_prompt: {samples}
    keep_per_prompt: 1
    chunk_size: 2
    filters: {{language: null, max_paragraph_words: null}}
    general: {{mode: reference}}
    mix: {{reasoning: 50, general: 5}}
    records_per_shard: 2
    trainer:
      max_steps: 2
      per_device_train_batch_size: 2
      save_steps: 1
      learning_rate: 1.0e-4
"""


def _pipeline(tmp_path: Path, *, general_data: str = "general", tokens: int = 12,
              prompts: int = PROMPTS) -> Path:
    data = {"reasoning": f"{{builtin: reasoning, size: {prompts}, test_size: 4, difficulty: 1}}",
            "general": "{builtin: general, size: 6}"}
    generation = f"{{backend: hf, max_new_tokens: {tokens}, batch_size: 8, temperature: 1.0}}"
    return write_pipeline(tmp_path, "rstest",
                          STAGES.format(general_data=general_data, samples=SAMPLES),
                          seed=5, data=data, generation=generation)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder the `r1pipe_cache` fixture sets, for the module-wide baseline run."""
    return tmp_path_factory.getbasetemp() / "r1pipe-cache"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """An uninterrupted, unsharded run; returns its run dir."""
    tmp = tmp_path_factory.mktemp("baseline")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("R1PIPE_CACHE", str(cache))
        execute(plan(load(_pipeline(tmp))))
    return tmp / "run"


def _records(run: Path, artifact: str) -> list[dict]:
    return list(iter_records(run / "reject_sample" / "data" / artifact))


def _state(run: Path) -> dict:
    return json.loads((run / "reject_sample" / "stage.json").read_text())


def _same_generation(run: Path, baseline: Path) -> None:
    got, want = _records(run, "generated"), _records(baseline, "generated")
    ids = [r["id"] for r in got]
    assert len(ids) == len(set(ids)) == PROMPTS * SAMPLES
    assert ids == [r["id"] for r in want]
    assert [r["completion"] for r in got] == [r["completion"] for r in want]


# ----------------------------------------------------------------- one whole run


def test_end_to_end(baseline: Path) -> None:
    stage = baseline / "reject_sample"
    state = _state(baseline)
    assert state["status"] == "finished"
    generated = _records(baseline, "generated")
    assert len(generated) == PROMPTS * SAMPLES
    first = generated[0]
    assert first["id"] == f"{first['prompt_id']}-s0" and first["sample"] == 0
    assert first["prompt"].startswith(("What is", "Using", "Solve"))  # the raw question
    assert first["finish_reason"] in ("stop", "length") and first["token_count"] > 0
    assert {"task", "answer", "task_type"} <= set(first)
    # samples of a prompt are contiguous, in prompt order
    order = [r["prompt_id"] for r in generated]
    assert order == sorted(order, key=order.index) and Counter(order).most_common(1)[0][1] == 2

    filtered = _records(baseline, "filtered")
    assert [r["id"] for r in filtered] == [r["id"] for r in generated]
    for r in filtered:
        assert r["verdict"] in ("kept", "rejected")
        assert (r["removed_by"] is None) == (r["verdict"] == "kept")
        assert set(r["filters"]) >= {"correct", "tokens", "truncated", "format"}
    summary = read_manifest(stage / "data" / "filtered").meta["summary"]
    assert summary["total"] == len(filtered)
    assert summary["kept"] + sum(summary["removed_by"].values()) == summary["total"]
    assert summary["removed_by"] == dict(Counter(r["removed_by"] for r in filtered
                                                 if r["removed_by"]))
    headline = state["summary"]
    assert headline["reasoning samples"] == summary["total"]
    assert headline["reasoning kept"] == summary["kept"]
    assert {k.removeprefix("reasoning removed by "): v for k, v in headline.items()
            if k.startswith("reasoning removed by ")} == summary["removed_by"]

    general = _records(baseline, "general")
    assert len(general) == 6 and all(r["verdict"] == "kept" for r in general)
    mix = _records(baseline, "mix")
    sources = Counter(r["source"] for r in mix)
    assert sources["general"] == 5 and sources["reasoning"] == min(50, summary["kept"])
    assert state["summary"]["mix general"] == 5
    sample = next(r for r in mix if r["source"] == "general")
    assert sample["prompt"][-1]["role"] == "user"
    (message,) = sample["completion"]
    assert message["role"] == "assistant"
    assert message["content"].startswith("|special_token||special_token|")  # no CoT: reference
    assert "| general samples | 5 |" in (stage / "data" / "mix" / "README.md").read_text()

    assert (stage / "model" / "model.safetensors").exists()
    assert state["summary"]["steps"] == 2
    metrics = [json.loads(line) for line in (stage / "metrics.jsonl").read_text().splitlines()]
    assert sum(1 for m in metrics if m.get("job") == "sampling reasoning prompts") == \
        PROMPTS // 2
    assert any("loss" in m for m in metrics)
    # finished and unchanged: nothing to do
    assert plan(load(baseline.parent / "p.yaml"))["reject_sample"].action == "skip"


def test_filter_summary_is_in_the_card(baseline: Path) -> None:
    data = baseline / "reject_sample" / "data"
    meta = read_manifest(data / "filtered").meta["summary"]
    card = (data / "filtered" / "README.md").read_text()
    assert f"| kept | {meta['kept']} |" in card
    for name, count in meta["removed_by"].items():
        assert f"| removed by {name} | {count} |" in card


# ----------------------------------------------------------------- resume and shards


@pytest.mark.slow
def test_sigkill_during_generate_then_resume(tmp_path: Path, baseline: Path, cache: Path) -> None:
    cfg = _pipeline(tmp_path)
    generated = tmp_path / "run/reject_sample/data/generated"
    proc = start_cli("reject-sample", cfg, cwd=tmp_path, env=cli_env(R1PIPE_CACHE=str(cache)),
                     stderr=subprocess.PIPE)
    wait_until(generated / "train-00001.jsonl", interval=0.02, proc=proc)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    sigkill(proc)
    proc.stderr.close()
    done = sorted(p.name for p in generated.glob("train-*.jsonl"))
    assert 2 <= len(done) < PROMPTS // 2, done  # killed in the middle of generation
    assert not read_manifest(generated).complete
    the_plan = plan(load(cfg))
    assert the_plan["reject_sample"].action == "resume"
    execute(the_plan)
    _same_generation(tmp_path / "run", baseline)
    assert _records(tmp_path / "run", "mix") == _records(baseline, "mix")


def test_two_shards_merged_equal_one_run(tmp_path: Path, baseline: Path) -> None:
    cfg = _pipeline(tmp_path)
    execute(plan(load(cfg), only=["reject_sample"]), shard=Shard(0, 2))
    state = _state(tmp_path / "run")
    assert state["status"] == "partial" and state["shards_done"] == [0]
    assert not (tmp_path / "run/reject_sample/data/filtered").exists()
    # merging before the other part ran: the missing chunks are named, nothing is made up
    with pytest.raises(StageFailed, match=r"chunks 1, 3, 5\b"):
        execute(plan(load(cfg)))
    # the other part, given in the YAML instead of on the command line
    execute(plan(load(cfg, ["stages.reject_sample.shard=1/2"])))
    assert sorted(_state(tmp_path / "run")["shards_done"]) == [0, 1]
    execute(plan(load(cfg)))
    assert _state(tmp_path / "run")["status"] == "finished"
    _same_generation(tmp_path / "run", baseline)
    assert _records(tmp_path / "run", "filtered") == _records(baseline, "filtered")
    assert _records(tmp_path / "run", "mix") == _records(baseline, "mix")


def test_failed_merge_then_rerun_generates_the_rest_here(tmp_path: Path, baseline: Path) -> None:
    cfg = _pipeline(tmp_path)
    execute(plan(load(cfg), only=["reject_sample"]), shard=Shard(1, 3))
    with pytest.raises(StageFailed, match="run this command once more"):
        execute(plan(load(cfg)))
    execute(plan(load(cfg)))  # as the message says: this machine generates the rest
    _same_generation(tmp_path / "run", baseline)


# ----------------------------------------------------------------- nothing to train on


def test_empty_mix_stops_with_the_reason(tmp_path: Path) -> None:
    cfg = _pipeline(tmp_path, general_data="null", prompts=4)
    with pytest.raises(StageFailed) as err:
        execute(plan(load(cfg)))
    message = str(err.value)
    assert "empty" in message and f"{4 * SAMPLES} samples, none kept" in message
    assert "removed by" in message and "general_data is null" in message
    assert not (tmp_path / "run/reject_sample/model").exists()
    # what was generated and filtered stays, with its verdicts, for a look
    filtered = _records(tmp_path / "run", "filtered")
    assert len(filtered) == 4 * SAMPLES and all(r["verdict"] == "rejected" for r in filtered)


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    from r1pipe.config import ConfigError

    cfg = _pipeline(tmp_path)
    with pytest.raises(ConfigError, match="judge"):
        load(cfg, ["stages.reject_sample.judge={model: m, base_url: ftp://x}"])
    with pytest.raises(ConfigError, match="shard"):
        load(cfg, ["stages.reject_sample.shard=3/2"])
    with pytest.raises(ConfigError, match="min_language_consistency"):
        load(cfg, ["stages.reject_sample.filters.min_language_consistency=2"])
    # the shard setting changes who does the work, not the result: same fingerprint
    assert plan(load(cfg)).stages[0].fingerprint == plan(
        load(cfg, ["stages.reject_sample.shard=0/2"])).stages[0].fingerprint


# ----------------------------------------------------------------- vLLM


@pytest.mark.slow
def test_vllm_backend_samples_what_hf_samples(tmp_path: Path, cache: Path) -> None:
    """The stage on vLLM's CPU engine (through the CLI, as a user runs it): greedy samples
    equal those of the hf backend, so the backend is a pure speed choice."""
    runs = {}
    for backend in ("vllm", "hf"):
        root = tmp_path / backend
        root.mkdir()
        cfg = _pipeline(root, prompts=4, general_data="null")
        text = cfg.read_text().replace(
            "generation: {backend: hf, max_new_tokens: 12, batch_size: 8, temperature: 1.0}",
            f"generation: {{backend: {backend}, max_new_tokens: 12, temperature: 0, "
            "dtype: float32, vllm: {max_model_len: 512}}")
        cfg.write_text(text)
        env = {**os.environ, "PYTHONPATH": str(REPO), "R1PIPE_CACHE": str(cache),
               "VLLM_CPU_KVCACHE_SPACE": "1"}
        out = subprocess.run([sys.executable, "-m", "r1pipe.cli", "reject-sample", str(cfg)],
                             cwd=root, env=env, capture_output=True, text=True, timeout=900)
        runs[backend] = (root / "run", out)
    vllm_run, vllm_out = runs["vllm"]
    # A random model answers nothing right: the stage stops before training, and says why.
    assert vllm_out.returncode == 1 and "mix would be empty" in vllm_out.stderr, \
        vllm_out.stderr[-3000:]
    vllm_records = _records(vllm_run, "generated")
    hf_records = _records(runs["hf"][0], "generated")
    assert len(vllm_records) == 4 * SAMPLES
    assert [r["id"] for r in vllm_records] == [r["id"] for r in hf_records]
    assert [(r["completion"], r["token_count"], r["finish_reason"]) for r in vllm_records] == \
        [(r["completion"], r["token_count"], r["finish_reason"]) for r in hf_records]
