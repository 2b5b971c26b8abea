"""`r1pipe preflight`: will this pipeline fit the cluster? Answered before a GPU is spent.

A full-scale run fails where a CPU never looks: a micro-batch whose activations need more
than a GPU has, a vLLM engine whose model has no room left for one `max_model_len` sequence,
a length past the model's context, a benchmark the installed `datasets` refuses to load, a
mixture that runs out of prompts long before `mix:` is reached. Each check here is arithmetic
over the YAML, the models' `config.json` (a local folder, the Hugging Face cache, or the Hub:
a few kilobytes) and the datasets' cards: no weights, no data. `r1pipe.memory` holds the
memory formulas; this module walks the stages, and says for anything that cannot fit which
YAML key to change.

The parts: `table` (cluster, rows, the printed table), `models` (model configs),
`data` (sources and `mix:` ceilings); every name stays importable from `r1pipe.preflight`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from r1pipe.config import PipelineConfig, StageConfig, reward_family
from r1pipe.data.sources import DataSourceConfig
from r1pipe.launch import accelerate_file, sharding_of, world_size
from r1pipe.memory import (
    CUDA_RESERVE_BYTES,
    MicroBatch,
    ModelShape,
    Parallelism,
    Precision,
    decode_seconds,
    engine_memory,
    gib,
    training_memory,
)
from r1pipe.models import ModelSpec
from r1pipe.preflight.data import (
    Ceiling,
    loadable,
    mix_ceilings,
    reachable_prompts,
    record_count,
    split_count,
)
from r1pipe.preflight.models import (
    ModelConfigs,
    hub_reachable,
    model_ref,
    name_of,
    offline_hint,
    trained_spec,
    trainer_defaults,
)
from r1pipe.preflight.table import Cluster, Report, Row, Status, cluster_from, print_report

TRANSFORMERS_DDP_TIMEOUT = 1800  # TrainingArguments.ddp_timeout's default
# Above this share of a GPU an estimate is flagged: allocator fragmentation and the spikes
# of a long-tail batch are not in the arithmetic.
CLOSE_TO_FULL = 0.9


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
        parallel = Parallelism(world, sharding, deepspeed)
        if trainer_class in ("GRPOConfig", "SFTConfig"):
            students = getattr(section, "students", None)
            if students:
                for student_name, student in students.items():
                    trainer = {**section.trainer, **student.trainer}
                    self._training(name, trainer_class, trainer, student.model,
                                   parallel=parallel, key=f"stages.{name}.students.{student_name}.trainer",
                                   section=section, lora=student.lora is not None)
            else:
                spec = trained_spec(self.config, name)
                if spec is not None:
                    self._training(name, trainer_class, section.trainer, spec,
                                   parallel=parallel, key=f"stages.{name}.trainer", section=section,
                                   lora=getattr(section, "lora", None) is not None)
        prompts = getattr(getattr(section, "prompts", None), "max_prompt_tokens", 0)
        for label, spec, key, new_tokens in self._engines_of(name, section):
            self._engine(name, label, spec, key=key, world=world, new_tokens=new_tokens,
                         prompt_tokens=prompts if label == "sampling" else 0)
        self._reachable(name, section)

    def _training(self, name: str, trainer_class: str, trainer: dict[str, Any],
                  spec: ModelSpec, *, parallel: Parallelism, key: str, section: StageConfig,
                  lora: bool) -> None:
        """The rows of one trainer of a stage: its length against the model's context, its
        memory per GPU (`parallel`: how the stage's launch spreads it, worked out once per
        stage by the caller) and, for GRPO, a colocated vLLM engine."""
        world, sharding = parallel.world, parallel.sharding
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
            return training_memory(shape, parallel=parallel,
                                   batch=MicroBatch(mb, seq, labelled),
                                   precision=Precision(weight_bytes), checkpointing=ckpt,
                                   reference=beta != 0.0, lora=lora)

        mem = estimate(micro)
        engine_share = 0
        if colocate:
            util = float(settings.get("vllm_gpu_memory_utilization") or 0.3)
            engine_share = int(util * self.cluster.gpu_bytes)
            self._colocated_engine(name, shape, settings, seq=seq, key=key, micro=micro,
                                   accumulation=accumulation)
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

    def _colocated_engine(self, name: str, shape: ModelShape, settings: dict[str, Any], *,
                          seq: int, key: str, micro: int, accumulation: int) -> None:
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


__all__ = [
    "CLOSE_TO_FULL",
    "TRANSFORMERS_DDP_TIMEOUT",
    "Ceiling",
    "Cluster",
    "ModelConfigs",
    "Preflight",
    "Report",
    "Row",
    "Status",
    "cluster_from",
    "hub_reachable",
    "loadable",
    "mix_ceilings",
    "model_ref",
    "name_of",
    "offline_hint",
    "print_report",
    "reachable_prompts",
    "record_count",
    "split_count",
    "trained_spec",
    "trainer_defaults",
]
