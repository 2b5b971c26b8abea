"""Generation backends on real engines: transformers, vLLM's CPU engine, and a real
`vllm serve` process spoken to over HTTP. No mocks: the tiny random model is small enough
for all three, and its greedy decodes (float32 everywhere) must agree across backends.

The vLLM and server tests are marked slow (an engine start is 15-45 s on 2 cores).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from r1pipe.config import GenerationConfig
from r1pipe.generation import Completion, GenerationError, Sampling, make_generator
from tests.helpers import free_port, vllm_openai_server

PROMPTS: list = [
    "What is 2 + 3?",
    [{"role": "user", "content": "What is the capital of France?"}],
    "<think>",
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
    "Summary: the result follows from the steps above.",
]


def _check_shape(out: list[list[Completion]], n_prompts: int, n: int, max_new: int) -> None:
    assert len(out) == n_prompts
    for completions in out:
        assert len(completions) == n
        for c in completions:
            assert isinstance(c.text, str)
            assert c.finish_reason in ("stop", "length")
            assert 0 < c.token_count <= max_new
            if c.finish_reason == "length":
                assert c.token_count == max_new


def _greedy(out: list[list[Completion]]) -> list[tuple[str, int, str]]:
    return [(c[0].text, c[0].token_count, c[0].finish_reason) for c in out]


# -------------------------------------------------------------------------------- basics


def test_sampling_validates_and_reads_config() -> None:
    with pytest.raises(ValueError, match="n must be"):
        Sampling(n=0)
    with pytest.raises(ValueError, match="top_p"):
        Sampling(top_p=0)
    cfg = GenerationConfig(temperature=0.9, top_p=0.5, max_new_tokens=7)
    s = Sampling.from_config(cfg, n=4, stop=["</answer>", ""], seed=3)
    assert (s.n, s.temperature, s.top_p, s.max_new_tokens, s.stop, s.seed) == (
        4, 0.9, 0.5, 7, ["</answer>"], 3)
    assert Sampling.from_config(cfg, temperature=0).greedy


def test_bad_prompts_are_rejected_before_any_work(tiny_model_dir: Path) -> None:
    with make_generator(str(tiny_model_dir), GenerationConfig(), seed=0) as gen:
        with pytest.raises(TypeError, match="list of prompts"):
            gen.generate("one prompt", Sampling())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="prompt 1"):
            gen.generate(["ok", [{"content": "no role"}]], Sampling())
        assert gen.generate([], Sampling()) == []


def test_generation_package_imports_no_engine() -> None:
    code = ("import sys, r1pipe.generation, r1pipe.generation.hf, r1pipe.generation.vllm, "
            "r1pipe.generation.openai\n"
            "heavy = [m for m in ('torch', 'transformers', 'vllm', 'openai') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------ hf


def test_hf_generates_n_completions_per_prompt(tiny_model_dir: Path) -> None:
    cfg = GenerationConfig(backend="hf", batch_size=2)
    with make_generator(str(tiny_model_dir), cfg, seed=0) as gen:
        assert gen.backend == "hf"
        sampling = Sampling(n=3, temperature=1.0, top_p=0.95, max_new_tokens=12)
        out = gen.generate(PROMPTS, sampling)
        _check_shape(out, len(PROMPTS), 3, 12)
        assert len({c.text for c in out[0]}) > 1  # sampled, not copies
        # Same seed, same samples; another seed (per call), other samples.
        assert gen.generate(PROMPTS, sampling) == out
        other = gen.generate(PROMPTS, Sampling(n=3, temperature=1.0, max_new_tokens=12, seed=1))
        assert other != out


def test_hf_is_reproducible_across_generators(tiny_model_dir: Path) -> None:
    sampling = Sampling(n=2, temperature=0.8, max_new_tokens=10)
    runs = []
    for _ in range(2):
        with make_generator(str(tiny_model_dir), GenerationConfig(batch_size=4), seed=7) as gen:
            runs.append(gen.generate(PROMPTS, sampling))
    assert runs[0] == runs[1]


def test_hf_greedy_matches_per_prompt_and_chat_template(tiny_model_dir: Path) -> None:
    """Batching with left padding changes nothing, and chat prompts are the template's text."""
    from transformers import AutoTokenizer

    greedy = Sampling(n=2, temperature=0, max_new_tokens=10)
    with make_generator(str(tiny_model_dir), GenerationConfig(batch_size=8), seed=0) as gen:
        batched = gen.generate(PROMPTS, greedy)
        alone = [gen.generate([p], greedy)[0] for p in PROMPTS]
        tok = AutoTokenizer.from_pretrained(tiny_model_dir)
        rendered = tok.apply_chat_template(PROMPTS[1], tokenize=False, add_generation_prompt=True)
        as_text = gen.generate([rendered], greedy)[0]
    assert _greedy(batched) == _greedy(alone)
    assert all(c[0] == c[1] for c in batched)  # greedy: the n completions are the same
    assert as_text == batched[1]


def test_hf_stop_strings_cut_text_and_count_tokens(tiny_model_dir: Path) -> None:
    stop = ["1", "a"]
    with make_generator(str(tiny_model_dir), GenerationConfig(), seed=0) as gen:
        out = gen.generate(PROMPTS, Sampling(n=4, temperature=1.0, max_new_tokens=40,
                                             stop=stop))
    _check_shape(out, len(PROMPTS), 4, 40)
    stopped = [c for cs in out for c in cs if c.finish_reason == "stop"]
    assert stopped, "a random model writes '1' or 'a' within 40 tokens"
    assert not any(s in c.text for c in stopped for s in stop)
    assert any(c.token_count < 40 for c in stopped)


def test_hf_end_of_sequence_finishes_with_stop(tiny_model_dir: Path) -> None:
    """A row ends at its first EOS id: text without it, EOS counted, reason "stop".

    The random model never chooses its real EOS, so the token greedy decoding picks after
    the first prompt is declared an extra EOS id (models with several EOS ids do this).
    """
    import torch

    from r1pipe.generation.hf import HFGenerator
    from r1pipe.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    with torch.no_grad():
        logits = model(**tok(PROMPTS[0], return_tensors="pt")).logits
    first_id = int(logits[0, -1].argmax())  # what greedy decoding writes first
    model.generation_config.eos_token_id = [tok.eos_token_id, first_id]
    gen = HFGenerator.from_loaded(model, tok, GenerationConfig(), seed=0)
    out = gen.generate(PROMPTS[:3], Sampling(n=2, temperature=0, max_new_tokens=6))
    assert out[0] == [Completion("", 1, "stop")] * 2
    _check_shape(out, 3, 2, 6)


def test_hf_from_loaded_leaves_training_state_alone(tiny_model_dir: Path) -> None:
    import torch

    from r1pipe.generation.hf import HFGenerator
    from r1pipe.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(tiny_model_dir), for_training=True)
    padding_side = tok.padding_side
    model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    gen = HFGenerator.from_loaded(model, tok, GenerationConfig(), seed=0)
    out = gen.generate(PROMPTS[:2], Sampling(n=2, temperature=1.0, max_new_tokens=5))
    gen.close()
    _check_shape(out, 2, 2, 5)
    assert torch.equal(torch.rand(3), expected)  # the caller's RNG did not move
    assert model.training and tok.padding_side == padding_side
    assert next(model.parameters()) is not None  # close() did not take a borrowed model


# -------------------------------------------------------------- openai: failure handling


def test_openai_needs_base_urls() -> None:
    with pytest.raises(ValueError, match="base_urls"):
        make_generator("m", GenerationConfig(backend="openai"), seed=0)


def test_openai_dead_url_fails_clearly_and_keeps_key_secret(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-r1pipe-test-secret-4242"
    monkeypatch.setenv("R1PIPE_TEST_KEY", secret)
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    cfg = GenerationConfig(backend="openai", base_urls=[url], max_retries=2,
                           api_key_env="R1PIPE_TEST_KEY")
    start = time.monotonic()
    with caplog.at_level(logging.DEBUG), make_generator("m", cfg, seed=0) as gen, \
            pytest.raises(GenerationError, match="no server answered after 3") as err:
        gen.generate(["a", "b"], Sampling(max_new_tokens=4))
    assert time.monotonic() - start < 15
    assert url in str(err.value) and "cannot connect" in str(err.value)
    assert "retry 1/2" in caplog.text
    assert secret not in caplog.text and secret not in str(err.value)


def test_openai_silent_server_times_out_instead_of_hanging() -> None:
    """A server that accepts connections and never answers is a timeout, then a failure."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        cfg = GenerationConfig(backend="openai", base_urls=[url], timeout=1.0, max_retries=1)
        start = time.monotonic()
        with make_generator("m", cfg, seed=0) as gen, \
                pytest.raises(GenerationError, match="timed out"):
            gen.generate(["a"], Sampling(max_new_tokens=4))
        assert time.monotonic() - start < 10


# ----------------------------------------------------------------------- vllm (offline)


@pytest.fixture
def restore_environ() -> Iterator[None]:
    """vLLM's CPU platform writes process-wide env vars; keep them out of later tests."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        try:  # an engine started in this process froze vLLM's view of the environment
            import vllm.envs

            vllm.envs.disable_envs_cache()
        except ImportError:
            pass


@pytest.mark.slow
def test_vllm_offline_generates_matches_hf_and_frees_engine(
        tiny_model_dir: Path, restore_environ: None, tmp_path: Path) -> None:
    import psutil

    from r1pipe.generation.vllm import SMALL_MACHINE_CPUS, VLLMGenerator

    cfg = GenerationConfig(backend="vllm", dtype="float32", vllm={"max_model_len": 512})
    greedy = Sampling(n=2, temperature=0, max_new_tokens=10)
    with make_generator(str(tiny_model_dir), GenerationConfig(), seed=0) as hf:
        hf_greedy = hf.generate(PROMPTS, greedy)

    # The engine in a child process, as on GPUs (asked for here: small machines run it
    # in-process, see the end). vLLM caches its environment once an engine has started.
    import vllm.envs

    vllm.envs.disable_envs_cache()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1"
    start = time.monotonic()
    gen = make_generator(str(tiny_model_dir), cfg, seed=0)
    assert isinstance(gen, VLLMGenerator)
    print(f"vLLM engine start: {time.monotonic() - start:.1f} s")
    pids = gen.engine_pids
    assert pids and all(psutil.pid_exists(p) for p in pids)  # the engine runs in a child
    with gen:
        out = gen.generate(PROMPTS, Sampling(n=3, temperature=1.0, max_new_tokens=12))
        _check_shape(out, len(PROMPTS), 3, 12)
        assert len({c.text for c in out[0]}) > 1
        stop = gen.generate(PROMPTS, Sampling(n=4, temperature=1.0, max_new_tokens=40,
                                              stop=["1", "a"]))
        _check_shape(stop, len(PROMPTS), 4, 40)
        stopped = [c for cs in stop for c in cs if c.finish_reason == "stop"]
        assert stopped and not any("1" in c.text or "a" in c.text for c in stopped)
        # Same weights in float32, same template, same greedy decode as transformers.
        assert gen.generate(PROMPTS, greedy) == hf_greedy

    # close() shut the engine down: its processes are gone, their memory with them.
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)
    with pytest.raises(GenerationError, match="closed"):
        gen.generate(PROMPTS, greedy)
    gen.close()  # twice is fine

    # ... and a new engine can start in the same process afterwards. A process group that
    # was open before it (accelerate's, a colocated trainer's) is still open after close().
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0,
                            world_size=1)
    try:
        with make_generator(str(tiny_model_dir), cfg, seed=0) as again:
            assert _greedy(again.generate(PROMPTS[:1], greedy)) == _greedy(hf_greedy[:1])
        assert dist.is_initialized()
        dist.barrier()
    finally:
        dist.destroy_process_group()

    # Left to r1pipe, a machine with few cores runs the engine in this process (no child to
    # spawn and kill), and the environment is as it was afterwards.
    vllm.envs.disable_envs_cache()
    del os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"]
    with make_generator(str(tiny_model_dir), cfg, seed=0) as local:
        small = len(os.sched_getaffinity(0)) < SMALL_MACHINE_CPUS
        assert (local.engine_pids == ()) == small
        assert _greedy(local.generate(PROMPTS[:1], greedy)) == _greedy(hf_greedy[:1])
    assert "VLLM_ENABLE_V1_MULTIPROCESSING" not in os.environ


# --------------------------------------------------------------- openai: real vllm serve


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path) -> Iterator[str]:
    """`vllm serve` on the tiny model, on loopback, for this module; always terminated."""
    with vllm_openai_server(tiny_model_dir,
                            log_path=tiny_model_dir.parent / "generation-vllm-serve.log",
                            timeout=180) as port:
        yield str(port)


@pytest.mark.slow
def test_openai_round_robin_over_two_urls(vllm_server: str, tiny_model_dir: Path) -> None:
    port = vllm_server
    urls = [f"http://127.0.0.1:{port}/v1", f"http://localhost:{port}/v1"]
    cfg = GenerationConfig(backend="openai", base_urls=urls, max_concurrency=3)
    with make_generator(str(tiny_model_dir), cfg, seed=0) as gen:
        out = gen.generate(PROMPTS[:4], Sampling(n=3, temperature=1.0, max_new_tokens=12))
        _check_shape(out, 4, 3, 12)
        assert len({c.text for c in out[0]}) > 1
        assert dict(gen.requests_per_url) == {urls[0]: 2, urls[1]: 2}  # type: ignore[attr-defined]

        stop = gen.generate(PROMPTS, Sampling(n=4, temperature=1.0, max_new_tokens=40,
                                              stop=["1", "a"]))
        _check_shape(stop, len(PROMPTS), 4, 40)
        stopped = [c for cs in stop for c in cs if c.finish_reason == "stop"]
        assert stopped and not any("1" in c.text or "a" in c.text for c in stopped)

        greedy = Sampling(n=2, temperature=0, max_new_tokens=10)
        served = gen.generate(PROMPTS, greedy)
    with make_generator(str(tiny_model_dir), GenerationConfig(), seed=0) as hf:
        assert served == hf.generate(PROMPTS, greedy)  # the server renders chats the same way


@pytest.mark.slow
def test_openai_fails_over_from_a_dead_url(vllm_server: str, tiny_model_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    live = f"http://127.0.0.1:{vllm_server}/v1"
    cfg = GenerationConfig(backend="openai", base_urls=[dead, live], max_retries=2)
    with make_generator(str(tiny_model_dir), cfg, seed=0) as gen:
        out = gen.generate(PROMPTS, Sampling(n=2, temperature=1.0, max_new_tokens=8))
        _check_shape(out, len(PROMPTS), 2, 8)
        assert gen.requests_per_url[live] == len(PROMPTS)  # type: ignore[attr-defined]
        assert gen.requests_per_url[dead] == 0  # type: ignore[attr-defined]
        assert gen.failures_per_url[dead] >= 1  # type: ignore[attr-defined]

    # A wrong model name is the server's answer, not a network problem: no retries.
    bad = GenerationConfig(backend="openai", base_urls=[live], model_name="no-such-model")
    with make_generator(str(tiny_model_dir), bad, seed=0) as gen, \
            pytest.raises(GenerationError, match="refused the request.*404"):
        gen.generate(PROMPTS[:1], Sampling(max_new_tokens=4))


def test_vllm_cpu_binding_uses_every_core_of_a_small_machine(monkeypatch):
    """vLLM's auto binding keeps a core for its scheduler: on 2 cores the worker got one
    thread (152 vs 259 tokens/s). Small machines bind the worker to all usable cores."""
    from r1pipe.generation.vllm import SMALL_MACHINE_CPUS, cpu_thread_binding

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert cpu_thread_binding({}) == "0,1"
    assert cpu_thread_binding({"tensor_parallel_size": 2}) is None  # one list per worker
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(SMALL_MACHINE_CPUS)))
    assert cpu_thread_binding({}) is None  # vLLM's reserved core costs little here
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {2, 3})
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    assert cpu_thread_binding({}) is None  # the user's choice stands
