"""Any OpenAI-compatible server: `vllm serve`, SGLang, llama.cpp, a hosted API.

The way to generate at scale: start one server per GPU node (or a data-parallel group) and
list their URLs in `generation.base_urls`; requests go round-robin over them, at most
`max_concurrency` in flight *per URL* (64 by default), so every server's continuous
batching stays fed however many servers there are. Size it to what one server batches at
once: vLLM's `--max-num-seqs` (256 by default on a GPU) over the samples per prompt, since
each request asks for all n samples of its prompt (n = 4: 64 requests fill 256 sequences). A server
that is down, overloaded (429) or failing (5xx) is retried with exponential backoff, the
next attempt going to the next URL, so one dead node slows a job down instead of failing
it; only a request that fails on every attempt fails the job, with the URL and the error.

String prompts use the `completions` endpoint (the text goes to the model as is); chat
prompts use `chat.completions` (the server applies the model's chat template). Each request
asks for all n samples of its prompt, so the server shares the prompt's prefix among them.
Per-sample token counts come from the per-token logprobs the server returns (asked for only
when n > 1); with n = 1 `usage.completion_tokens` is exact on its own.

The API key is read from the environment variable `generation.api_key_env` ("EMPTY" if
unset, which vLLM accepts) and never logged. No per-request seed is sent: a vLLM server is
seeded once by its own `--seed`, and on CPU seeded requests all draw the same stream.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from r1pipe.generation.base import (
    Completion,
    FinishReason,
    GenerationError,
    Generator,
    Prompt,
    Sampling,
    is_chat,
)
from r1pipe.progress import track

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig
    from r1pipe.models import ModelSpec

log = logging.getLogger(__name__)

BACKOFF_BASE = 0.5  # seconds before the first retry; doubles every attempt
BACKOFF_CAP = 30.0
RETRY_STATUS = {408, 409, 429}  # and every 5xx
COOLDOWN = 10.0  # seconds a URL that just failed is passed over while others answer
# The slowest decode rate a request is given time for, per sequence: a vLLM server with a
# full continuous batch (64 requests x n = 16 in flight) gives each sequence 20-40 tokens/s
# on a 7B-32B model; 10 leaves room for larger models and tensor-parallel servers. A
# request for n answers of up to 32,768 tokens then may take 3,277 s (600 s,
# `generation.timeout`'s default, ran out on every retry: S10 of issue 30).
MIN_TOKENS_PER_SECOND = 10.0


def request_timeout(timeout: float, max_new_tokens: int) -> float:
    """Seconds one request may take: `generation.timeout` (the floor, which also covers
    queueing and prefill), or the time `max_new_tokens` take at `MIN_TOKENS_PER_SECOND`."""
    return max(timeout, max_new_tokens / MIN_TOKENS_PER_SECOND)


def _model_name(model: str | ModelSpec, gen_cfg: GenerationConfig) -> str:
    if gen_cfg.model_name:
        return gen_cfg.model_name
    if isinstance(model, str):
        return model
    if model.id and not model.gguf:
        return model.id
    raise ValueError(f"model {model.describe()!r} has no name a server would know it by; set "
                     "generation.model_name to the name the server serves it as")


def _finish_reason(value: str | None, url: str) -> FinishReason:
    """"length" means truncated; every other normal end (stop, eos, tool_calls) is a stop."""
    if value == "length":
        return "length"
    if value in (None, "abort", "error"):
        raise GenerationError(f"{url} ended a completion with finish_reason={value!r}")
    return "stop"


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes timeouts
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRY_STATUS or exc.status_code >= 500
    return False


def _describe(exc: Exception) -> str:
    import openai

    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"cannot connect ({type(cause).__name__}: {cause})" if cause else "cannot connect"
    return f"{type(exc).__name__}: {exc}"


class OpenAIGenerator(Generator):
    """Round-robin, bounded-concurrency, retrying client of OpenAI-compatible servers."""

    backend = "openai"

    def __init__(self, model: str | ModelSpec, gen_cfg: GenerationConfig, *, seed: int) -> None:
        from openai import OpenAI

        if not gen_cfg.base_urls:
            raise ValueError("generation.backend=openai needs generation.base_urls: the "
                             "server URLs, e.g. http://localhost:8000/v1")
        self.model_name = _model_name(model, gen_cfg)
        self.seed = seed
        self.base_urls = [u.rstrip("/") for u in gen_cfg.base_urls]
        self.max_concurrency = gen_cfg.max_concurrency  # per URL
        self.max_retries = gen_cfg.max_retries
        api_key = os.environ.get(gen_cfg.api_key_env) or "EMPTY"
        # Retries are ours (with failover to the next URL), so the client's own are off.
        self.timeout = gen_cfg.timeout  # a floor: each request gets `request_timeout`
        self._clients = [OpenAI(base_url=u, api_key=api_key, timeout=gen_cfg.timeout,
                                max_retries=0) for u in self.base_urls]
        self._lock = threading.Lock()
        self.requests_per_url: Counter[str] = Counter()  # successful requests
        self.failures_per_url: Counter[str] = Counter()  # failed attempts
        self._logprobs_ok = True  # cleared if a server refuses logprobs
        self._down_until: dict[int, float] = {}  # URL index -> monotonic time
        # In flight per URL: a request holds its URL's slot for the HTTP call only (not
        # during backoff), so a slow or failed-over-to server never gets more than its share.
        self._slots = [threading.BoundedSemaphore(self.max_concurrency) for _ in self.base_urls]

    def _pick(self, index: int, attempt: int) -> int:
        """Round-robin by prompt, shifted by the attempt; URLs that just failed are skipped
        (unless all did), so a dead node costs one failed attempt per cooldown, not one per
        request."""
        k = len(self._clients)
        start = (index + attempt) % k
        now = time.monotonic()
        with self._lock:
            for step in range(k):
                candidate = (start + step) % k
                if self._down_until.get(candidate, 0.0) <= now:
                    return candidate
        return start

    def _mark(self, url_index: int, ok: bool) -> None:
        with self._lock:
            if ok:
                self._down_until.pop(url_index, None)
            else:
                self._down_until[url_index] = time.monotonic() + COOLDOWN

    # ---------------------------------------------------------------------- one request

    def _request(self, index: int, prompt: Prompt, sampling: Sampling,
                 stop_event: threading.Event) -> list[Completion]:
        """One prompt's n samples, retried over the URLs until it succeeds or attempts run out."""
        attempts = self.max_retries + 1
        attempt = 0
        dropped_logprobs = False
        while True:
            url_index = self._pick(index, attempt)
            url = self.base_urls[url_index]
            try:
                with self._slots[url_index]:
                    result = self._call(self._clients[url_index], url, prompt, sampling)
            except Exception as exc:
                if not dropped_logprobs and self._drop_logprobs(exc):
                    dropped_logprobs = True
                    continue
                with self._lock:
                    self.failures_per_url[url] += 1
                attempt += 1
                retryable = _retryable(exc)
                if retryable:
                    self._mark(url_index, ok=False)
                if isinstance(exc, GenerationError):  # a malformed answer, already explained
                    raise GenerationError(f"prompt {index}: {exc}") from exc
                if not retryable:
                    raise GenerationError(f"prompt {index}: {url} refused the request "
                                          f"({_describe(exc)}){_hint(exc)}") from exc
                if attempt >= attempts or stop_event.is_set():
                    raise GenerationError(
                        f"prompt {index}: no server answered after {attempt} attempt(s); "
                        f"last error from {url}: {_describe(exc)}") from exc
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
                delay *= random.uniform(0.8, 1.2)
                log.warning("prompt %d: %s failed (%s); retry %d/%d in %.1f s", index, url,
                            _describe(exc), attempt, self.max_retries, delay)
                if stop_event.wait(delay):
                    raise GenerationError(f"prompt {index}: cancelled after another request "
                                          "failed") from exc
                continue
            self._mark(url_index, ok=True)
            with self._lock:
                self.requests_per_url[url] += 1
            return result

    def _drop_logprobs(self, exc: Exception) -> bool:
        """A server that rejects `logprobs` is asked again without (token counts from usage)."""
        import openai

        if isinstance(exc, openai.BadRequestError) and "logprob" in str(exc.message).lower():
            self._logprobs_ok = False
            log.warning("the server does not return logprobs; per-sample token counts will be "
                        "estimated from usage when n > 1")
            return True
        return False

    def _call(self, client: Any, url: str, prompt: Prompt, sampling: Sampling) -> list[Completion]:
        if sampling.greedy and sampling.n > 1:  # one greedy decode stands for all n
            one = self._call(client, url, prompt, replace(sampling, n=1))[0]
            return [replace(one) for _ in range(sampling.n)]
        want_counts = sampling.n > 1 and self._logprobs_ok
        common: dict[str, Any] = {
            "model": self.model_name,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "timeout": request_timeout(self.timeout, sampling.max_new_tokens),
        }
        if sampling.stop:
            common["stop"] = sampling.stop
        if is_chat(prompt):
            if want_counts:
                common.update(logprobs=True, top_logprobs=0)
            response = client.chat.completions.create(messages=prompt, **common)
            texts = [_chat_text(c.message) for c in response.choices]
            counts = [len(c.logprobs.content or []) if c.logprobs else None
                      for c in response.choices]
        else:
            if want_counts:
                common["logprobs"] = 0
            response = client.completions.create(prompt=prompt, **common)
            texts = [c.text or "" for c in response.choices]
            counts = [len(c.logprobs.tokens or []) if c.logprobs else None
                      for c in response.choices]
        choices = response.choices
        if len(choices) != sampling.n:
            raise GenerationError(f"{url} returned {len(choices)} choices, asked for n={sampling.n}")
        order = sorted(range(len(choices)), key=lambda k: choices[k].index)
        fallback = _split_usage(response.usage, sampling.n)
        return [
            Completion(texts[k], counts[k] if counts[k] is not None else fallback[pos],
                       _finish_reason(choices[k].finish_reason, url))
            for pos, k in enumerate(order)
        ]

    # ---------------------------------------------------------------------- the whole job

    def _generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        if self._clients is None:
            raise GenerationError("this openai generator was closed")
        results: list[list[Completion]] = [[] for _ in prompts]
        stop_event = threading.Event()
        workers = min(self.max_concurrency * len(self.base_urls), len(prompts))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="r1pipe-openai")
        futures: dict[Future[list[Completion]], int] = {}
        try:
            for i, prompt in enumerate(prompts):
                futures[pool.submit(self._request, i, prompt, sampling, stop_event)] = i
            for future in track(as_completed(futures), total=len(futures),
                                      description="openai generate", unit="prompts", min_steps=2):
                results[futures[future]] = future.result()
        except BaseException:
            # Retries waiting in backoff give up at once; requests in flight end with their
            # HTTP call (bounded by the timeout) without holding the caller here.
            stop_event.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results

    def close(self) -> None:
        clients, self._clients = getattr(self, "_clients", None), None
        for client in clients or []:
            client.close()


def _hint(exc: Exception) -> str:
    import openai

    if isinstance(exc, openai.NotFoundError):
        return ("; the server does not serve that model name: set generation.model_name to "
                "one it lists at GET /v1/models")
    return ""


def _chat_text(message: Any) -> str:
    """The reply; a server that splits reasoning out (a reasoning parser) gets it put back.

    The recipe's rewards read the whole `<think>...</think>` answer, so a server started
    with `--reasoning-parser` must not make the reasoning disappear.
    """
    content = message.content or ""
    extra = getattr(message, "model_extra", None) or {}
    reasoning = extra.get("reasoning_content") or extra.get("reasoning")
    return f"<think>\n{reasoning}\n</think>\n\n{content}" if reasoning else content


def _split_usage(usage: Any, n: int) -> list[int]:
    """Per-sample token counts when only the total is known (exact for n = 1)."""
    total = getattr(usage, "completion_tokens", None) if usage is not None else None
    if total is None:
        return [0] * n
    base, extra = divmod(int(total), n)
    return [base + (1 if k < extra else 0) for k in range(n)]
