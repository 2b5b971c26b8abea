"""Model-based rewards: a real (tiny, random) reward model, and a judge over real HTTP.

The reward model is a two-layer Llama sequence classifier built on the spot with a locally
trained tokenizer (`r1pipe.testing`). The judge is exercised against two servers on
loopback: a small scripted OpenAI-compatible stub (replies chosen per test: echo, HTTP
errors, garbage, slowness) for the failure paths and for hostile input in volume, and vLLM's
own OpenAI server on a tiny random model (slow test) for the real path end to end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r1pipe.rewards import build_reward_funcs, parse_judge_score, score
from r1pipe.rewards.base import INTERNAL_ERRORS
from tests.helpers import http_server, send_json, vllm_openai_server
from tests.test_rewards_props import samples

_SETTINGS = {"deadline": None, "database": None, "derandomize": True,
             "suppress_health_check": list(HealthCheck)}

# ----------------------------------------------------------------- reward model


def _rm_spec(path: Path, **params: Any) -> dict[str, Any]:
    # float32: these tests compare scores to 1e-5 (padding, summary vs full), finer than
    # bf16, which `dtype: auto` picks on CPUs with bf16 instructions (tests/test_scale_out.py)
    return {"helpful": {"reward": "reward_model", "model": str(path), "dtype": "float32",
                        **params}}


def test_reward_model_scores_a_batch(tiny_reward_model_dir: Path) -> None:
    prompts = ["Say hello.", "What is 2 + 3?", "Write a poem.", "Translate 'cat'.", "hi"]
    completions = [
        "|special_token|The user greets.|special_token|Hello!",
        "<think>2 + 3 = 5</think> <answer>5</answer>",
        "The sea, the wind and the morning light.",
        "",
        "<think>cut off",
    ]
    kinds = ["general", "reasoning", "general", "general", "general"]
    batched = score(_rm_spec(tiny_reward_model_dir, batch_size=4), prompts, completions,
                    task_type=kinds).per_reward["helpful"]
    single = score(_rm_spec(tiny_reward_model_dir, batch_size=1), prompts, completions,
                   task_type=kinds).per_reward["helpful"]
    assert batched[1] is None  # routed: reasoning samples get rule rewards
    values = [v for v in batched if v is not None]
    assert len(values) == 4 and all(isinstance(v, float) for v in values)
    assert len(set(values)) > 1  # different inputs, different scores
    # padding inside a batch must not change any sample's score
    for a, b in zip(batched, single, strict=True):
        assert (a is None and b is None) or a == pytest.approx(b, abs=1e-4)


def test_reward_model_summary_versus_full(tiny_reward_model_dir: Path) -> None:
    completion = "|special_token|Some long private reasoning here.|special_token|Hello!"
    summary = score(_rm_spec(tiny_reward_model_dir, part="summary"), ["hi"], [completion])
    plain = score(_rm_spec(tiny_reward_model_dir, part="summary"), ["hi"], ["Hello!"])
    full = score(_rm_spec(tiny_reward_model_dir, part="full"), ["hi"], [completion])
    helpful = summary.per_reward["helpful"][0]
    assert helpful == pytest.approx(plain.per_reward["helpful"][0], abs=1e-5)
    assert full.per_reward["helpful"][0] != pytest.approx(helpful, abs=1e-5)
    squashed = score(_rm_spec(tiny_reward_model_dir, activation="sigmoid"), ["hi"], ["Hello!"])
    assert 0.0 < squashed.per_reward["helpful"][0] < 1.0


def test_reward_model_with_chat_prompts(tiny_reward_model_dir: Path) -> None:
    prompts = [[{"role": "user", "content": "Say hello."}]] * 2
    completions = [[{"role": "assistant", "content": c}] for c in ("Hello!", "Go away.")]
    out = score(_rm_spec(tiny_reward_model_dir), prompts, completions).per_reward["helpful"]
    assert all(isinstance(v, float) for v in out)


def _hostile_rm(batch: list[dict[str, Any]], funcs: list[Any]) -> None:
    out = funcs[0](prompts=[s["prompt"] for s in batch],
                   completions=[s["completion"] for s in batch],
                   task_type=[s["task_type"] for s in batch])
    assert len(out) == len(batch)
    for value, sample in zip(out, batch, strict=True):
        if sample["task_type"] == "reasoning":
            assert value is None
        else:
            assert isinstance(value, float) and value == value
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


@pytest.fixture(scope="module")
def rm_funcs(tiny_reward_model_dir: Path) -> Iterator[list[Any]]:
    """The reward model for volume tests: short inputs (robustness does not depend on
    length; truncation still happens) and one torch thread (no oversubscription)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield build_reward_funcs(_rm_spec(tiny_reward_model_dir, batch_size=40, max_length=64))[0]
    finally:
        torch.set_num_threads(threads)


def test_reward_model_survives_hostile_output(rm_funcs: list[Any]) -> None:
    @settings(max_examples=5, **_SETTINGS)
    @given(st.lists(samples(), min_size=20, max_size=20))
    def run(batch: list[dict[str, Any]]) -> None:
        _hostile_rm(batch, rm_funcs)

    run()


@pytest.mark.slow
def test_reward_model_survives_hostile_output_10k(rm_funcs: list[Any]) -> None:
    @settings(max_examples=250, **_SETTINGS)
    @given(st.lists(samples(), min_size=40, max_size=40))
    def run(batch: list[dict[str, Any]]) -> None:
        _hostile_rm(batch, rm_funcs)

    run()  # 250 batches of 40 = 10,000 completions


# ----------------------------------------------------------------- judge: the parser


@pytest.mark.parametrize(
    ("reply", "max_score", "expected"),
    [
        ("The response is clear and correct. Rating: [[8]]", 10, 0.8),
        ("Rating: [[3]] ... on reflection, Rating: [[7]]", 10, 0.7),
        ("**Rating:** 9/10", 10, 0.9),
        ("Score: 6.5", 10, 0.65),
        ("I would give it 4 out of 10.", 10, 0.4),
        ("Equivalent to the reference. Rating: [[1]]", 1, 1.0),
        ("Not equivalent. Rating: [[0]]", 1, 0.0),
        ("Rating: [[11]]", 10, None),
        ("Rating: [[-2]]", 10, None),
        ("I cannot rate this.", 10, None),
        ("", 10, None),
        (None, 10, None),
        ("\n\n\n\n\n\n", 10, None),
    ],
)
def test_parse_judge_score(reply: str | None, max_score: float, expected: float | None) -> None:
    got = parse_judge_score(reply, max_score)
    assert got == (pytest.approx(expected) if expected is not None else None)


# ----------------------------------------------------------------- judge: a scripted server


class _Stub(BaseHTTPRequestHandler):
    """Minimal OpenAI-compatible endpoint; the `model` field picks the behaviour."""

    seen_keys: list[str] = []
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall between headers and body
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen_keys.append(self.headers.get("Authorization", ""))
        mode = body["model"]
        if mode == "error":
            self.send_error(500, "boom")
            return
        if mode == "slow":
            time.sleep(3)
        if mode == "garbage":
            payload = b"this is not json"
        else:
            prompt = (body["messages"][-1]["content"] if "messages" in body else body["prompt"])
            reply = {"echo": prompt[-300:], "rate": "Good. Rating: [[7]]"}.get(mode, "")
            choice = ({"index": 0, "message": {"role": "assistant", "content": reply},
                       "finish_reason": "stop"} if "messages" in body
                      else {"index": 0, "text": reply, "finish_reason": "stop"})
            payload = json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                  "model": mode, "choices": [choice]}).encode()
        # the client may have given up first (the "slow" mode's point)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            send_json(self, payload)


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with http_server(_Stub) as url:
        yield url


def _judge_spec(url: str, model: str, **params: Any) -> dict[str, Any]:
    return {"judge": {"base_url": url, "model": model, "api_key_env": "R1PIPE_TEST_JUDGE_KEY",
                      "timeout": 1.0, **params}}


def test_judge_rates_routes_and_keeps_the_key_secret(
    stub_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("R1PIPE_TEST_JUDGE_KEY", secret)
    _Stub.seen_keys.clear()
    with caplog.at_level(logging.DEBUG):
        for api in ("chat", "completions"):
            out = score(_judge_spec(stub_url, "rate", api=api), ["q1", "q2", "q3"],
                        ["Hello!", "<think>r</think> 5", "x"],
                        task_type=["general", "reasoning", "general"],
                        reference=["Hi", None, None]).per_reward["judge"]
            assert out == [pytest.approx(0.7), None, pytest.approx(0.7)]
        failed = score(_judge_spec(stub_url, "error"), ["q"], ["a"]).per_reward["judge"]
        garbage = score(_judge_spec(stub_url, "garbage"), ["q"], ["a"]).per_reward["judge"]
        start = time.perf_counter()
        slow = score(_judge_spec(stub_url, "slow"), ["q"], ["a"]).per_reward["judge"]
        assert time.perf_counter() - start < 6
        unreadable = score(_judge_spec(stub_url, "empty"), ["q"], ["a"]).per_reward["judge"]
    assert failed == garbage == slow == unreadable == [None]
    assert f"Bearer {secret}" in _Stub.seen_keys  # the key was used...
    assert all(secret not in r.getMessage() for r in caplog.records)  # ...and never logged
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


def test_judge_prompt_has_question_response_and_reference(stub_url: str) -> None:
    funcs, _ = build_reward_funcs(_judge_spec(stub_url, "echo", rubric="correctness"))
    judge = funcs[0].inner
    from r1pipe.rewards.base import make_batch

    batch = make_batch(["What is 2 + 3?"], ["|special_token|thinking|special_token|It is 5."],
                       None, {"reference": ["5"]})
    prompt = judge.build_prompt(batch, 0)
    assert "What is 2 + 3?" in prompt and "It is 5." in prompt and "5" in prompt
    assert "thinking" not in prompt  # correctness and helpfulness see the summary only
    harmless = build_reward_funcs(_judge_spec(stub_url, "echo", rubric="harmlessness"))[0][0]
    assert "thinking" in harmless.inner.build_prompt(batch, 0)  # harmlessness: everything


def _hostile_judge(batch: list[dict[str, Any]], funcs: list[Any]) -> None:
    out = funcs[0](prompts=[s["prompt"] for s in batch],
                   completions=[s["completion"] for s in batch],
                   reference=[s["answer"] for s in batch])
    assert len(out) == len(batch)
    assert all(v is None or 0.0 <= v <= 1.0 for v in out)
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


def test_judge_survives_hostile_output(stub_url: str) -> None:
    funcs, _ = build_reward_funcs(_judge_spec(stub_url, "echo", task_types="all"))

    @settings(max_examples=5, **_SETTINGS)
    @given(st.lists(samples(), min_size=20, max_size=20))
    def run(batch: list[dict[str, Any]]) -> None:
        _hostile_judge(batch, funcs)

    run()


@pytest.mark.slow
def test_judge_survives_hostile_output_10k(stub_url: str) -> None:
    funcs, _ = build_reward_funcs(_judge_spec(stub_url, "echo", task_types="all",
                                              concurrency=16))

    @settings(max_examples=250, **_SETTINGS)
    @given(st.lists(samples(), min_size=40, max_size=40))
    def run(batch: list[dict[str, Any]]) -> None:
        _hostile_judge(batch, funcs)

    run()  # 250 batches of 40 = 10,000 completions


# ----------------------------------------------------------------- judge: real vLLM server


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path) -> Iterator[str]:
    """vLLM's OpenAI-compatible server (what `vllm serve` runs) on the tiny model, serving it
    as "tiny-judge"; yields its base URL."""
    with vllm_openai_server(tiny_model_dir, log_path=tiny_model_dir.parent / "vllm-serve.log",
                            args=["--served-model-name", "tiny-judge"],
                            env={"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}, timeout=300) as port:
        yield f"http://127.0.0.1:{port}/v1"


@pytest.mark.slow
@pytest.mark.parametrize("api", ["chat", "completions"])
def test_judge_against_vllm_server(vllm_server: str, api: str) -> None:
    spec = _judge_spec(vllm_server, "tiny-judge", api=api, max_tokens=16, timeout=120.0)
    funcs, _ = build_reward_funcs(spec)
    judge = funcs[0].inner
    from r1pipe.rewards.base import make_batch

    batch = make_batch(["Say hello."], ["Hello!"], None, {})
    reply = judge._ask(judge.build_prompt(batch, 0))
    assert isinstance(reply, str)  # a real completion came back over HTTP
    out = score(spec, ["Say hello.", "What is 2 + 3?", "Write a poem."],
                ["Hello!", "<think>2 + 3 = 5</think> <answer>5</answer>", "Sea and wind."],
                task_type=["general", "reasoning", "general"]).per_reward["judge"]
    # a random-weight model does not write "Rating: [[N]]": unreadable means None, no crash
    assert out[1] is None
    assert all(v is None or 0.0 <= v <= 1.0 for v in out)
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)


# ----------------------------------------------------------------- TRL


@pytest.mark.slow
def test_reward_funcs_train_a_grpo_step(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The functions and weights go straight into GRPOTrainer; TRL logs rewards/<name>."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    funcs, weights = build_reward_funcs(
        {"accuracy": 1.0, "format": 0.1, "language": 0.2, "overlong": 0.1,
         "tags": {"reward": "format", "variant": "tag_count"}},
        max_completion_length=16,
    )
    records = [{"prompt": "What is 2 + 3 * 4?", "answer": "14", "task": "arithmetic",
                "task_type": "reasoning", "id": f"a{i}"} for i in range(8)]
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4,
                      num_generations=4, max_completion_length=16, max_steps=1,
                      logging_steps=1, reward_weights=weights, report_to=[], use_cpu=True,
                      save_strategy="no")
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=funcs, args=args,
                          train_dataset=Dataset.from_list(records))
    trainer.train()
    logged = trainer.state.log_history[0]
    for name in ("accuracy", "format", "language", "overlong", "tags"):
        assert f"rewards/{name}/mean" in logged
    assert not INTERNAL_ERRORS, dict(INTERNAL_ERRORS)
