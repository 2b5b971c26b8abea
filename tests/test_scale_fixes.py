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
