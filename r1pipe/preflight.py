"""`r1pipe preflight`: will this pipeline fit the cluster? Answered before a GPU is spent.

A full-scale run fails where a CPU never looks: a micro-batch whose activations need more
than a GPU has, a vLLM engine whose model has no room left for one `max_model_len` sequence,
a length past the model's context, a benchmark the installed `datasets` refuses to load, a
mixture that runs out of prompts long before `mix:` is reached. Each check here is arithmetic
over the YAML, the models' `config.json` (a local folder, the Hugging Face cache, or the Hub:
a few kilobytes) and the datasets' cards: no weights, no data. `r1pipe.memory` holds the
memory formulas; this module walks the stages, and says for anything that cannot fit which
YAML key to change.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from r1pipe.config import BASE, PipelineConfig, StageConfig, reward_family
from r1pipe.data.sources import DataSourceConfig
from r1pipe.launch import accelerate_file, sharding_of, world_size
from r1pipe.memory import (
    CUDA_RESERVE_BYTES,
    DEFAULT_BANDWIDTH_BYTES,
    GIB,
    ModelShape,
    Sharding,
    decode_seconds,
    engine_memory,
    gib,
    training_memory,
)
from r1pipe.models import ModelSpec

Status = Literal["ok", "warn", "FAIL", "n/a"]
"""ok; warn: fits, but close to a limit; FAIL: cannot run as configured; n/a: not checked
(a model's config or a dataset's card could not be read)."""

TRANSFORMERS_DDP_TIMEOUT = 1800  # TrainingArguments.ddp_timeout's default
# Above this share of a GPU an estimate is flagged: allocator fragmentation and the spikes
# of a long-tail batch are not in the arithmetic.
CLOSE_TO_FULL = 0.9


@dataclass(frozen=True)
class Cluster:
    """The machines a run gets: `nodes` x `gpus_per_node` GPUs of `gpu_bytes` each."""

    gpus_per_node: int
    gpu_bytes: int
    nodes: int = 1
    bandwidth: float = DEFAULT_BANDWIDTH_BYTES


@dataclass
class Row:
    """One line of the preflight table: what was checked, what it needs and what there is."""

    stage: str
    check: str
    need: str
    have: str
    status: Status
    key: str = ""
    fix: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.status == "FAIL"]

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


# ---------------------------------------------------------------------------------------
# Model configs: a local folder, the Hugging Face cache, or the Hub
# ---------------------------------------------------------------------------------------


_REACHABLE: dict[str, bool] = {}


def hub_reachable() -> bool:
    """Whether the Hub answers (asked once per process, 5 s at most): offline, every
    download would retry for minutes before failing. HF_HUB_OFFLINE=1 says no at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if constants.ENDPOINT not in _REACHABLE:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=5.0)
            _REACHABLE[constants.ENDPOINT] = True
        except httpx.HTTPError:
            _REACHABLE[constants.ENDPOINT] = False
    return _REACHABLE[constants.ENDPOINT]


def offline_hint(repo: str, filename: str, repo_type: str = "model") -> str:
    from huggingface_hub import constants

    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return (f"offline and {filename} of {repo} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}): `hf download {repo} --include '{filename}'{kind}` "
            "where the Hub is reachable")


class ModelConfigs:
    """`config.json` of each model the pipeline names, read once: from a local folder, the
    Hugging Face cache, or (when online) the Hub. What cannot be read says why."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[dict[str, Any] | None, str]] = {}

    def read(self, spec: ModelSpec) -> tuple[dict[str, Any] | None, str]:
        name = spec.describe()
        if name not in self._seen:
            self._seen[name] = self._read(spec)
        return self._seen[name]

    def shape(self, spec: ModelSpec, *, classifier: bool = False
              ) -> tuple[ModelShape | None, str]:
        config, why = self.read(spec)
        if config is None:
            return None, why
        try:
            return ModelShape.from_config(config, classifier=classifier), why
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"{name_of(spec)}: config.json has no decoder shape ({exc})"

    @staticmethod
    def _read(spec: ModelSpec) -> tuple[dict[str, Any] | None, str]:
        if spec.gguf:
            return None, f"{name_of(spec)}: a GGUF file (its shape is read when r1pipe imports it)"
        if spec.builtin:
            from r1pipe.models import default_cache_dir, materialize

            folder = Path(materialize(spec, default_cache_dir()))
            return _json(folder / "config.json"), f"built-in {spec.builtin}"
        assert spec.id is not None
        if spec.is_local:
            path = Path(spec.id) / "config.json"
            if not path.is_file():
                return None, f"{spec.id}: no config.json in the folder"
            return _json(path), str(path)
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(spec.id, "config.json", revision=spec.revision)
        if isinstance(cached, str):
            return _json(Path(cached)), "HF cache"
        if not hub_reachable():
            return None, offline_hint(spec.id, "config.json") + " (or name a local folder)"
        try:
            path = hf_hub_download(spec.id, "config.json", revision=spec.revision,
                                   etag_timeout=10)
        except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all say why
            return None, (f"{spec.id}: cannot read config.json from the Hub "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); offline? "
                          f"run `hf download {spec.id} config.json` where the Hub is reachable")
        return _json(Path(path)), "Hub"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def name_of(spec: ModelSpec) -> str:
    return spec.id or spec.gguf or spec.builtin or spec.describe()


# ---------------------------------------------------------------------------------------
# What runs where: launch, sharding, the model a stage trains
# ---------------------------------------------------------------------------------------


def trained_spec(config: PipelineConfig, name: str, depth: int = 0) -> ModelSpec | None:
    """The model stage `name` trains (what its `from`/`train_from` resolves to)."""
    section = config.stages.get(name)
    if section is None or depth > len(config.stages):
        return None
    ref = getattr(section, "train_from", None) or getattr(section, "from_", None)
    return model_ref(config, ref, depth + 1)


def model_ref(config: PipelineConfig, ref: Any, depth: int = 0) -> ModelSpec | None:
    """A `ModelRef` value (base, a stage, a folder or Hub id) as the model it names."""
    if ref is None:
        return None
    if isinstance(ref, ModelSpec):
        return ref
    if ref == BASE:
        return config.base_model
    if isinstance(ref, str) and ref in config.stages:
        return trained_spec(config, ref, depth)
    return ModelSpec.parse(ref)


def trainer_defaults(trainer_class: str) -> dict[str, Any]:
    """TRL's defaults for `trainer_class` (GRPOConfig, SFTConfig, ...)."""
    import trl

    cls = getattr(trl, trainer_class)
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


class Preflight:
    """Every check of one pipeline against one cluster; `run()` returns the table."""

    def __init__(self, config: PipelineConfig, cluster: Cluster) -> None:
        self.config = config
        self.cluster = cluster
        self.models = ModelConfigs()
        self.report = Report()

    def run(self) -> Report:
        for name in self.config.enabled_stages():
            section = self.config.stages[name]
            self._stage(name, section)
        self._eval()
        self._data()
        return self.report

    # -- per stage -------------------------------------------------------------------------

    def _stage(self, name: str, section: StageConfig) -> None:
        from r1pipe.pipeline import stage_launch

        launch = stage_launch(self.config, name)
        accel = accelerate_file(launch, self.config)
        world, machines = world_size(launch, accel)
        gpus = self.cluster.gpus_per_node * self.cluster.nodes
        if world > gpus:
            self.report.add(name, "processes", f"{world} GPUs", f"{gpus} GPUs", "FAIL",
                            f"stages.{name}.launch.num_processes",
                            f"the stage starts {world} processes on {gpus} GPUs")
        per_node = world // max(1, machines)
        if per_node > self.cluster.gpus_per_node:
            self.report.add(name, "processes per node", str(per_node),
                            str(self.cluster.gpus_per_node), "FAIL",
                            f"stages.{name}.launch.num_processes")
        trainer_class = section.trainer_config_class()
        sharding, deepspeed = sharding_of(accel)
        if trainer_class in ("GRPOConfig", "SFTConfig"):
            students = getattr(section, "students", None)
            if students:
                for student_name, student in students.items():
                    trainer = {**section.trainer, **student.trainer}
                    self._training(name, trainer_class, trainer, student.model, world=world,
                                   sharding=sharding, deepspeed=deepspeed,
                                   key=f"stages.{name}.students.{student_name}.trainer",
                                   section=section, lora=student.lora is not None)
            else:
                spec = trained_spec(self.config, name)
                if spec is not None:
                    self._training(name, trainer_class, section.trainer, spec, world=world,
                                   sharding=sharding, deepspeed=deepspeed,
                                   key=f"stages.{name}.trainer", section=section,
                                   lora=getattr(section, "lora", None) is not None)
        prompts = getattr(getattr(section, "prompts", None), "max_prompt_tokens", 0)
        for label, spec, key, new_tokens in self._engines_of(name, section):
            self._engine(name, label, spec, key=key, world=world, new_tokens=new_tokens,
                         prompt_tokens=prompts if label == "sampling" else 0)
        self._reachable(name, section)

    def _training(self, name: str, trainer_class: str, trainer: dict[str, Any],
                  spec: ModelSpec, *, world: int, sharding: Sharding, deepspeed: bool,
                  key: str, section: StageConfig, lora: bool) -> None:
        shape, why = self.models.shape(spec)
        if shape is None:
            self.report.add(name, f"training {name_of(spec)}", "?", why, "n/a")
            return
        from r1pipe.train import long_sequence_timeout

        settings = {**trainer_defaults(trainer_class), **trainer}
        if "ddp_timeout" not in trainer:  # r1pipe's default for long sequences, else TRL's
            settings["ddp_timeout"] = (long_sequence_timeout(settings)
                                       or TRANSFORMERS_DDP_TIMEOUT)
        grpo = trainer_class == "GRPOConfig"
        micro = int(settings.get("per_device_train_batch_size") or 8)
        accumulation = int(settings.get("gradient_accumulation_steps") or 1)
        ckpt = bool(settings.get("gradient_checkpointing"))
        if grpo:
            prompt = section.prompts.max_prompt_tokens  # type: ignore[attr-defined]
            completion = int(settings.get("max_completion_length") or 512)
            seq, labelled = prompt + completion, completion
            length_key = f"{key}.max_completion_length"
        else:
            seq = labelled = int(settings.get("max_length") or 1024)
            length_key = f"{key}.max_length"
        if shape.context is not None:
            self.report.add(name, f"length vs context of {name_of(spec)}", str(seq),
                            str(shape.context), "ok" if seq <= shape.context else "FAIL",
                            length_key if seq > shape.context else "",
                            "" if seq <= shape.context else
                            f"the model was trained for {shape.context} tokens: lower "
                            f"{length_key.rsplit('.', 1)[1]}, or start from a long-context "
                            "variant (e.g. open-r1/Qwen2.5-Math-7B-RoPE-300k: rope_theta "
                            "300000, 32,768 positions)")
        bf16 = settings.get("bf16") is not False and settings.get("fp16") is not True
        weight_bytes = 2 if (bf16 or settings.get("fp16")) else 4
        beta = float(settings.get("beta") or 0.0) if grpo else 0.0
        colocate = grpo and settings.get("use_vllm") and settings.get("vllm_mode",
                                                                      "colocate") == "colocate"

        def estimate(mb: int):
            return training_memory(shape, world=world, sharding=sharding,
                                   deepspeed=deepspeed, weight_bytes=weight_bytes,
                                   micro_batch=mb, seq_len=seq, labelled_len=labelled,
                                   checkpointing=ckpt, reference=beta != 0.0, lora=lora)

        mem = estimate(micro)
        engine_share = 0
        if colocate:
            util = float(settings.get("vllm_gpu_memory_utilization") or 0.3)
            engine_share = int(util * self.cluster.gpu_bytes)
            self._colocated_engine(name, shape, spec, settings, seq=seq, key=key, world=world,
                                   micro=micro, accumulation=accumulation)
        rewards = self._reward_models(name, section)
        fixed = engine_share + rewards + CUDA_RESERVE_BYTES
        need = mem.total + fixed
        fits = need <= self.cluster.gpu_bytes
        detail = (f"states {gib(mem.states)} + activations {gib(mem.activations + mem.recompute)}"
                  f" (micro-batch {micro} x {seq} tokens, checkpointing "
                  f"{'on' if ckpt else 'off'}) + vLLM {gib(engine_share)} + reward models "
                  f"{gib(rewards)} + reserve {gib(CUDA_RESERVE_BYTES)}")
        close = fits and need > CLOSE_TO_FULL * self.cluster.gpu_bytes
        if close and engine_share:
            detail += (f"; within {100 - 100 * CLOSE_TO_FULL:.0f} % of the GPU: "
                       "vllm_enable_sleep_mode: true frees the engine's share while training "
                       "(its weights are reloaded every rollout)")
        row = self.report.add(name, f"memory per GPU ({sharding}, {world} GPUs)",
                              f"{gib(need)} GiB", f"{gib(self.cluster.gpu_bytes)} GiB",
                              "FAIL" if not fits else "warn" if close else "ok", fix=detail)
        if fits:
            return
        best = next((mb for mb in range(micro - 1, 0, -1)
                     if estimate(mb).total + fixed <= self.cluster.gpu_bytes), None)
        if best is not None:
            row.key = f"{key}.per_device_train_batch_size"
            outputs = micro * accumulation  # per GPU per optimizer step: keep it
            best = max(mb for mb in range(1, best + 1) if outputs % mb == 0)
            row.fix = (f"{detail}; per_device_train_batch_size {best} fits: keep "
                       f"{outputs} per GPU per step with gradient_accumulation_steps "
                       f"{outputs // best}")
        elif not ckpt:
            row.key = f"{key}.gradient_checkpointing"
            row.fix = f"{detail}; set gradient_checkpointing: true"
        elif sharding != "zero3" and sharding != "fsdp":
            row.key = "launch.accelerate_config"
            row.fix = f"{detail}; shard the model states: configs/accelerate/zero3.yaml"
        else:
            row.key = length_key
            row.fix = f"{detail}; even one sequence does not fit: shorten it or add GPUs"

    def _colocated_engine(self, name: str, shape: ModelShape, spec: ModelSpec,
                          settings: dict[str, Any], *, seq: int, key: str, world: int,
                          micro: int, accumulation: int) -> None:
        tp = int(settings.get("vllm_tensor_parallel_size") or 1)
        util = float(settings.get("vllm_gpu_memory_utilization") or 0.3)
        max_len = int(settings.get("vllm_max_model_length") or shape.context or seq)
        if max_len < seq:
            self.report.add(name, "colocated vLLM max_model_len", str(seq), str(max_len),
                            "FAIL", f"{key}.vllm_max_model_length",
                            "prompt + completion do not fit the engine's length; answers "
                            "would be cut silently")
        engine = engine_memory(shape, gpu_bytes=self.cluster.gpu_bytes, utilization=util,
                               max_model_len=max_len, tensor_parallel=tp)
        ok = engine.sequences >= 1
        self.report.add(name, f"colocated vLLM KV room ({max_len} tokens)",
                        f"{gib(engine.kv_per_sequence)} GiB/seq",
                        f"{gib(max(0, engine.kv_room))} GiB ({engine.sequences:.1f} seqs)",
                        "ok" if ok else "FAIL", "" if ok else f"{key}.vllm_gpu_memory_utilization",
                        f"share {gib(engine.budget)} GiB - weights {gib(engine.weights)} GiB")
        per_round = micro * int(settings.get("steps_per_generation") or accumulation)
        # the batch the cache holds at once: sequences of this stage's length, not max_len
        concurrent = engine.kv_room / max(1, shape.kv_bytes_per_token() * seq // tp)
        seconds = decode_seconds(shape, sequences=per_round, max_tokens=seq,
                                 concurrent=max(concurrent, 1.0), tensor_parallel=tp,
                                 bandwidth=self.cluster.bandwidth)
        self._timeout_row(name, f"rollout of {per_round} answers per GPU", seconds, settings,
                          key)

    def _timeout_row(self, name: str, what: str, seconds: float, settings: dict[str, Any],
                     key: str) -> None:
        timeout = float(settings.get("ddp_timeout") or TRANSFORMERS_DDP_TIMEOUT)
        ok = seconds < timeout
        self.report.add(name, f"{what} (worst case) vs ddp_timeout", f"{seconds:,.0f} s",
                        f"{timeout:,.0f} s", "ok" if ok else "FAIL",
                        "" if ok else f"{key}.ddp_timeout",
                        "" if ok else "ranks wait for the slowest rollout in the next "
                        f"collective: set ddp_timeout above {2 * seconds:,.0f}")

    def _reward_models(self, name: str, section: StageConfig) -> int:
        """Bytes per GPU of the stage's reward models placed on each rank's GPU."""
        weights_of: dict[str, int] = {}
        acts_of: dict[str, int] = {}
        for reward, value in (getattr(section, "rewards", None) or {}).items():
            if reward_family(reward, value) != "reward_model" or not isinstance(value, dict):
                continue
            device = str(value.get("device", "auto"))
            if device == "cpu" or not value.get("model"):
                continue
            dtype = str(value.get("dtype", "auto"))
            # loaded once per process for every entry naming it (r1pipe.rewards.model);
            # the entries score one after another: the largest forward counts
            ident = json.dumps([value["model"], dtype], sort_keys=True, default=str)
            spec = ModelSpec.parse(value["model"])
            shape, why = self.models.shape(spec, classifier=True)
            if shape is None:
                self.report.add(name, f"reward model {name_of(spec)}", "?", why, "n/a")
                continue
            weights = shape.params * (4 if dtype == "float32" else 2)
            tokens = int(value.get("batch_size", 8)) * int(value.get("max_length", 2048))
            acts = tokens * (shape.hidden * 4 + shape.intermediate * 2) * 2
            weights_of[ident] = weights
            acts_of[ident] = max(acts, acts_of.get(ident, 0))
            self.report.add(name, f"reward model {name_of(spec)} ({reward})",
                            f"{gib(weights)} + {gib(acts)} GiB", "each GPU", "ok",
                            fix=f"weights + a forward of {tokens} tokens, unsharded beside "
                            "the policy (one copy per rank)")
        return sum(weights_of.values()) + sum(acts_of.values())

    def _engines_of(self, name: str, section: StageConfig
                    ) -> Iterator[tuple[str, ModelSpec, str, int]]:
        """(label, model, key to change, new tokens) of every vLLM engine a stage starts
        itself, besides GRPO's colocated one."""
        gen = self.config.generation
        if gen.backend != "vllm":
            return
        collect = getattr(section, "collect", None)
        if collect is not None:
            teacher = getattr(collect, "teacher", None)
            for way in ("few_shot", "direct"):
                settings = getattr(collect, way, None)
                if teacher is not None and settings is not None and settings.enabled:
                    yield (f"teacher ({way})", teacher, f"stages.{name}.collect.teacher",
                           settings.max_new_tokens or gen.max_new_tokens)
            zero = getattr(collect, "r1_zero", None)
            if zero is not None and zero.enabled and zero.refiner is not None:
                yield ("refiner", zero.refiner, f"stages.{name}.collect.r1_zero.refiner",
                       zero.refiner_max_new_tokens or zero.max_new_tokens or gen.max_new_tokens)
        if hasattr(section, "samples_per_prompt") and hasattr(section, "keep_per_prompt"):
            spec = model_ref(self.config, getattr(section, "from_", None))
            if spec is not None:
                yield ("sampling", spec, f"stages.{name}.from", gen.max_new_tokens)

    def _engine(self, stage: str, label: str, spec: ModelSpec, *, key: str, world: int,
                new_tokens: int, prompt_tokens: int = 0) -> None:
        """One vLLM engine of a stage: tensor parallelism it can have, its lengths, and the
        KV room for `max_model_len` (`prompt_tokens`: the stage's prompt budget, where the
        stage has one)."""
        vllm = self.config.generation.vllm
        tp = int(vllm.get("tensor_parallel_size") or 1)
        util = float(vllm.get("gpu_memory_utilization") or 0.9)
        if world > 1 and tp > 1:
            self.report.add(stage, f"{label}: tensor parallel", f"TP {tp}", "1 GPU per rank",
                            "FAIL", "generation.vllm.tensor_parallel_size",
                            f"the stage runs on {world} ranks and each rank's engine gets "
                            "its own GPU: set it to 1, or run the stage in one process "
                            f"(stages.{stage}.launch: {{num_processes: 1}})")
            tp = 1
        if world == 1 and tp > self.cluster.gpus_per_node:
            self.report.add(stage, f"{label}: tensor parallel", f"TP {tp}",
                            f"{self.cluster.gpus_per_node} GPUs", "FAIL",
                            "generation.vllm.tensor_parallel_size")
        shape, why = self.models.shape(spec)
        if shape is None:
            self.report.add(stage, f"{label} {name_of(spec)}", "?", why, "n/a")
            return
        max_len = int(vllm.get("max_model_len") or shape.context or 0)
        self._lengths(stage, label, spec, shape, max_len=max_len)
        if max_len and prompt_tokens + new_tokens > max_len:
            self.report.add(stage, f"{label}: prompt budget + max_new_tokens",
                            str(prompt_tokens + new_tokens), str(max_len), "warn",
                            "generation.vllm.max_model_len",
                            "answers of the longest prompts stop at max_model_len")
        engine = engine_memory(shape, gpu_bytes=self.cluster.gpu_bytes, utilization=util,
                               max_model_len=max_len, tensor_parallel=tp)
        ok = engine.sequences >= 1
        fix = (f"share {gib(engine.budget)} GiB - weights {gib(engine.weights)} GiB on {tp} "
               f"GPU(s)")
        if not ok:
            needed = next((t for t in (2, 4, 8) if engine_memory(
                shape, gpu_bytes=self.cluster.gpu_bytes, utilization=util,
                max_model_len=max_len, tensor_parallel=t).sequences >= 1), None)
            fix += (f"; needs tensor parallel {needed}, which a launched stage cannot give: "
                    "name a smaller model" if needed and world > 1 else
                    f"; set generation.vllm.tensor_parallel_size: {needed}" if needed else
                    "; name a smaller model")
        status: Status = "FAIL" if not ok else "warn" if engine.sequences < 2 else "ok"
        if status == "warn":
            fix += ("; fewer than 2 max-length sequences fit: long answers are sampled "
                    "nearly one at a time, and vLLM's own overhead may take the rest")
        self.report.add(stage, f"{label} {name_of(spec)}: KV room ({max_len} tokens)",
                        f"{gib(engine.kv_per_sequence)} GiB/seq",
                        f"{gib(max(0, engine.kv_room))} GiB ({engine.sequences:.1f} seqs)",
                        status, "" if status == "ok" else key, fix)

    def _lengths(self, stage: str, label: str, spec: ModelSpec, shape: ModelShape, *,
                 max_len: int) -> None:
        if shape.context is None:
            return
        ok = max_len <= shape.context
        self.report.add(stage, f"{label} {name_of(spec)}: max_model_len vs context",
                        str(max_len), str(shape.context), "ok" if ok else "FAIL",
                        "" if ok else "generation.vllm.max_model_len",
                        "" if ok else "vLLM refuses a max_model_len above the model's context "
                        "(max_position_embeddings): lower it, or use a long-context variant "
                        "of the model (e.g. open-r1/Qwen2.5-Math-7B-RoPE-300k)")

    # -- evaluation ------------------------------------------------------------------------

    def _eval(self) -> None:
        ev = self.config.eval
        if not ev.benchmarks or self.config.generation.backend != "vllm":
            return
        models: dict[str, ModelSpec] = {"base": self.config.base_model}
        if ev.after_each_stage:
            for name in self.config.enabled_stages():
                students = getattr(self.config.stages[name], "students", None)
                if students:
                    models.update({f"{name}/{s}": st.model for s, st in students.items()})
                else:
                    spec = trained_spec(self.config, name)
                    if spec is not None:
                        models[name] = spec
        longest = max(ev.benchmark(b).max_new_tokens + ev.benchmark(b).prompts.max_prompt_tokens
                      for b in ev.benchmarks)
        vllm = self.config.generation.vllm
        if vllm.get("max_model_len") and longest > int(vllm["max_model_len"]):
            self.report.add("eval", "prompt budget + max_new_tokens vs max_model_len",
                            str(longest), str(vllm["max_model_len"]), "warn",
                            "eval.prompts.max_prompt_tokens",
                            "answers to prompts longer than "
                            f"{int(vllm['max_model_len']) - longest + ev.prompts.max_prompt_tokens}"
                            " tokens stop at max_model_len")
        seen: set[str] = set()
        for row, spec in models.items():
            if spec.describe() in seen:
                continue
            seen.add(spec.describe())
            shape, why = self.models.shape(spec)
            if shape is None:
                self.report.add("eval", f"{row} {name_of(spec)}", "?", why, "n/a")
                continue
            max_len = int(vllm.get("max_model_len") or shape.context or longest)
            self._lengths("eval", row, spec, shape, max_len=max_len)

    # -- data ------------------------------------------------------------------------------

    def _data(self) -> None:
        for name, source in self.config.data.items():
            self._source(f"data.{name}", name, source)
        for name in self.config.eval.benchmarks:
            bench = self.config.eval.benchmarks[name]
            if isinstance(bench.source, DataSourceConfig):
                self._source(f"eval.benchmarks.{name}.source", name, bench.source)

    def _source(self, key: str, name: str, source: DataSourceConfig) -> None:
        status, why = loadable(source, name)
        if status != "ok" or source.kind in ("hub",):
            self.report.add("data", f"{name}: loads with datasets", source.describe(), why,
                            status, f"{key}.hub" if status == "FAIL" else "")

    def _reachable(self, name: str, section: StageConfig) -> None:
        for c in mix_ceilings(self.config, [name]):
            if c.reachable is None:
                self.report.add(name, f"{c.part} samples reachable", f"{c.wanted:,}", c.why,
                                "n/a")
                continue
            short = c.reachable < c.wanted
            self.report.add(name, f"{c.part} samples reachable ({c.how})", f"{c.wanted:,}",
                            f"{c.reachable:,} ({c.prompts:,} prompts)",
                            ("FAIL" if c.part == "reasoning" else "warn") if short else "ok",
                            c.key if short else "", c.why if short else "")


@dataclass(frozen=True)
class Ceiling:
    """How many samples of one part of a rejection-sampling `mix:` the prompts can give."""

    stage: str
    part: str                 # reasoning / general
    wanted: int               # mix.<part>
    reachable: int | None     # prompts x per-prompt kept; None when not countable
    prompts: int
    how: str
    key: str                  # what to change when short
    why: str


def mix_ceilings(config: PipelineConfig, stages: list[str] | None = None, *,
                 online: bool = True) -> list[Ceiling]:
    """The reachable sample counts beside every `mix:` (R2 of issue 30): a stage keeps at
    most `keep_per_prompt` samples of each reasoning prompt and one answer per general
    prompt, so `mix:` beyond prompts x that is never reached. `online=False` reads dataset
    cards from the Hugging Face cache only (`run --dry-run` downloads nothing)."""
    out = []
    for name in stages if stages is not None else config.enabled_stages():
        section = config.stages[name]
        mix = getattr(section, "mix", None)
        if mix is None:
            continue
        keep = int(getattr(section, "keep_per_prompt", None)
                   or getattr(section, "samples_per_prompt", 1))
        parts = [("reasoning", getattr(section, "data", None), mix.reasoning, keep,
                  f"keep_per_prompt {keep}", f"stages.{name}.data",
                  "a mixture stops when its first source runs out: add a larger prompt "
                  "source, or lower mix.reasoning"),
                 ("general", getattr(section, "general_data", None), mix.general, 1,
                  "one answer per prompt", f"stages.{name}.mix.general",
                  "fewer general prompts than mix.general")]
        for part, data, wanted, per_prompt, how, key, short in parts:
            if not wanted or not isinstance(data, str) or data not in config.data:
                continue
            prompts, why = reachable_prompts(config, data, online=online)
            out.append(Ceiling(name, part, wanted, None if prompts is None else
                               prompts * per_prompt, prompts or 0, how, key,
                               why if prompts is None else short))
    return out


# ---------------------------------------------------------------------------------------
# Data sources: does the installed `datasets` load them, and how many records they have
# ---------------------------------------------------------------------------------------


def _hub_file(repo: str, filename: str, revision: str | None, online: bool = True
              ) -> tuple[Path | None, bool]:
    """(local path of a dataset repo's file, whether the Hub was asked): the cache first,
    then the Hub unless offline. (None, True): the Hub says the file does not exist."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import RemoteEntryNotFoundError

    cached = try_to_load_from_cache(repo, filename, revision=revision, repo_type="dataset")
    if isinstance(cached, str):
        return Path(cached), False
    if cached is not None:  # the cache knows the file does not exist
        return None, True
    if not online or not hub_reachable():
        return None, False
    try:
        return Path(hf_hub_download(repo, filename, revision=revision, repo_type="dataset",
                                    etag_timeout=10)), True
    except RemoteEntryNotFoundError:
        return None, True
    except Exception:  # noqa: BLE001 - gated, missing repo: not answered here
        return None, False


def loadable(source: DataSourceConfig, name: str = "") -> tuple[Status, str]:
    """Whether `datasets` (as installed) loads the source, without downloading its data.

    datasets >= 4 refuses a Hub repo holding a loading script named after the repo
    ("Dataset scripts are no longer supported"), whatever `data_files` says: the repo's
    `<name>.py` is looked up in the Hugging Face cache, else on the Hub (one small file).
    """
    if source.kind != "hub":
        if source.kind == "path":
            from r1pipe.data.loading import DataSourceError, local_files

            try:
                local_files(source, source.path or "")
            except DataSourceError as exc:
                return "FAIL", str(exc)
        return "ok", source.kind
    assert source.hub is not None
    repo = source.hub
    script = repo.rstrip("/").rsplit("/", 1)[-1] + ".py"
    path, asked = _hub_file(repo, script, source.revision)
    if path is not None:
        from r1pipe.data.loading import script_repo_message

        return "FAIL", script_repo_message(name, repo)
    if asked:
        return "ok", "no loading script"
    return "n/a", "not checked: " + offline_hint(repo, script, "dataset")


def reachable_prompts(config: PipelineConfig, name: str, depth: int = 0, *,
                      online: bool = True) -> tuple[int | None, str]:
    """How many prompts a source yields: a mixture stops when its first component runs out
    (`r1pipe.data.mixture`), so it yields min(count_i / weight_i)."""
    source = config.data.get(name)
    if source is None or depth > len(config.data):
        return None, f"{name}: not a source of data:"
    if source.kind == "mixture":
        from r1pipe.data.mixture import normalise_weights

        parts = source.mixture or []
        weights = normalise_weights([p.weight for p in parts])
        total: float | None = None
        for part, weight in zip(parts, weights, strict=True):
            if not isinstance(part.source, str):
                return None, "an inline mixture component"
            count, why = reachable_prompts(config, part.source, depth + 1, online=online)
            if count is None:
                return None, why
            if weight > 0:
                total = count / weight if total is None else min(total, count / weight)
        return (int(total) if total is not None else 0), "mixture"
    count, why = record_count(source, online=online)
    if count is not None and source.limit:
        count = min(count, source.limit)
    return count, why


def record_count(source: DataSourceConfig, *, online: bool = True) -> tuple[int | None, str]:
    """Records of a source's split: `size` of a built-in, the lines of local JSONL files,
    the `dataset_info` of a Hub dataset's card (README.md: metadata, not data)."""
    if source.kind == "builtin":
        return (source.size if source.split == "train" else source.test_size), "built-in"
    if source.kind == "path":
        from r1pipe.data.loading import DataSourceError, local_files

        try:
            _, files = local_files(source, source.path or "")
        except DataSourceError as exc:
            return None, str(exc)
        if all(f.endswith(".jsonl") for f in files):
            count = 0
            for f in files:
                with open(f, "rb") as fh:
                    count += sum(1 for line in fh if line.strip())
            return count, "lines"
        return None, "not JSONL: not counted"
    if source.kind != "hub" or source.hub is None:
        return None, "not counted"
    path, _ = _hub_file(source.hub, "README.md", source.revision, online)
    if path is None:
        return None, "not counted: " + offline_hint(source.hub, "README.md", "dataset")
    return split_count(path.read_text(encoding="utf-8"), source.subset, source.split)


def split_count(card: str, subset: str | None, split: str) -> tuple[int | None, str]:
    """`num_examples` of `split` in a dataset card's YAML header (`dataset_info:`)."""
    import yaml

    if not card.startswith("---"):
        return None, "the dataset card has no metadata"
    header = yaml.safe_load(card.split("---", 2)[1]) or {}
    infos = header.get("dataset_info") or []
    infos = [infos] if isinstance(infos, dict) else infos
    for info in infos:
        if subset not in (None, info.get("config_name", "default")) and len(infos) > 1:
            continue
        for entry in info.get("splits") or []:
            if entry.get("name") == split:
                return int(entry["num_examples"]), "dataset card"
    return None, f"the dataset card lists no split {split!r}"


# ---------------------------------------------------------------------------------------
# The command's output
# ---------------------------------------------------------------------------------------


def print_report(report: Report, *, width: int | None = None) -> None:
    """The table (user text as `Text`, never markup) on stdout, `width` columns wide."""
    from rich.table import Table
    from rich.text import Text

    from r1pipe.terminal import show

    table = Table(title="preflight", show_lines=False)
    for col in ("stage", "check", "need", "have", "", "key / detail"):
        table.add_column(col, overflow="fold")
    colour = {"ok": "green", "warn": "yellow", "FAIL": "red", "n/a": "yellow"}
    for row in report.rows:
        table.add_row(Text(row.stage), Text(row.check), Text(row.need), Text(row.have),
                      Text(row.status, style=colour[row.status]),
                      Text(" ".join(p for p in (row.key, row.fix) if p)))
    show(table, stdout=True, width=width)


def cluster_from(gpus_per_node: int, gpu_memory_gib: float, nodes: int = 1,
                 bandwidth_tbs: float | None = None) -> Cluster:
    return Cluster(gpus_per_node=gpus_per_node, gpu_bytes=int(gpu_memory_gib * GIB),
                   nodes=nodes, bandwidth=(bandwidth_tbs * 1e12 * 0.6) if bandwidth_tbs
                   else DEFAULT_BANDWIDTH_BYTES)


