"""The fingerprint policy: which settings are operational (how a stage runs) and so left
out of a stage's fingerprint, and the result settings that are hashed (`r1pipe.pipeline`).
"""

from __future__ import annotations

from typing import Any, Literal

# ---------------------------------------------------------------------------------------
# The one list of settings left out of stage fingerprints (`r1pipe.pipeline`): changing one
# of them never re-runs a finished stage. Everything not listed here is a result setting
# (learning rate, steps, generations, lengths, seeds, sampling, data, rewards ...): when in
# doubt a setting stays a result setting, since a needless re-run costs time and a missed
# one gives wrong results. Each entry says why it cannot change what the stage produces.

OPERATIONAL_STAGE_KEYS: dict[str, str] = {
    "enabled": "whether the stage runs at all, not what it makes",
    "launch": "processes and machines; the same training on more GPUs",
    "push_to_hub": "where the finished model is copied to",
    "shard": "which machine generates which part; the merged result is the same",
    "filter_workers": "processes that run the rejection filters in parallel",
    "vllm_server": "where the rollout server runs (devices, host, port); the same sampling",
    "health": "which training-health rules warn or stop; a stopped stage resumes as it was",
    "gate": "whether the run goes on after the stage's evaluation, not what the stage makes",
}
"""Top-level keys of a stage section that are operational."""

UNHASHED_WHEN_UNSET = frozenset({"dynamic_sampling"})
"""Stage keys added after runs existed: left out of the fingerprint while unset (None), so
a run dir of the version before them is not re-run for a key it never had."""

OPERATIONAL_TRAINER_KEYS: dict[str, str] = {
    **dict.fromkeys(("logging_strategy", "logging_steps", "logging_first_step",
                     "logging_nan_inf_filter", "log_level", "log_level_replica",
                     "log_on_each_node", "log_completions", "log_completions_hub_repo",
                     "log_unique_prompts", "log_multimodal", "num_completions_to_print",
                     "include_num_input_tokens_seen", "skip_memory_metrics"),
                    "what is logged and how often"),
    **dict.fromkeys(("report_to", "run_name", "project", "trackio_space_id",
                     "trackio_bucket_id", "trackio_static_space_id"),
                    "which experiment tracker receives the logs"),
    **dict.fromkeys(("save_strategy", "save_steps", "save_total_limit", "save_on_each_node",
                     "save_only_model", "output_dir"),
                    "where and how often checkpoints are written (resume points)"),
    **dict.fromkeys(("push_to_hub", "hub_model_id", "hub_strategy", "hub_token",
                     "hub_private_repo", "hub_always_push", "hub_revision"),
                    "copies of the model on the Hub"),
    **dict.fromkeys(("dataloader_num_workers", "dataloader_prefetch_factor",
                     "dataloader_persistent_workers", "dataloader_pin_memory",
                     "dataloader_multiprocessing_context"),
                    "processes that load batches; the batches are the same"),
    "disable_tqdm": "progress bars",
    "ddp_timeout": "how long processes wait for each other",
}
"""Keys of any `trainer:` mapping (TRL's GRPOConfig/SFTConfig fields) that are operational;
`dataloader_drop_last`, by contrast, changes the batches and is a result setting."""

OPERATIONAL_GENERATION_KEYS: dict[str, str] = {
    "base_urls": "which servers answer; the same model answers",
    "api_key_env": "where the API key is read from",
    "max_concurrency": "requests in flight per server URL",
    "timeout": "how long one request may take before it is retried",
    "max_retries": "how often a failed request is retried",
}
"""Keys of the global `generation:` block that are transport, not sampling."""

OPERATIONAL_VLLM_KEYS: dict[str, str] = {
    "gpu_memory_utilization": "how much memory vLLM reserves for its cache",
}
"""Keys of `generation.vllm` that are operational."""


def result_settings(tree: dict[str, Any], kind: Literal["stage", "generation"]
                    ) -> dict[str, Any]:
    """A stage section (or the `generation:` block) as plain data, without the operational
    keys: what the fingerprint of a stage hashes. `trainer:` mappings at any depth (a
    stage's, a reward model's, a student's) lose their operational TRL fields."""
    table = OPERATIONAL_STAGE_KEYS if kind == "stage" else OPERATIONAL_GENERATION_KEYS
    out = _strip_trainers({k: v for k, v in tree.items() if k not in table
                           and not (k in UNHASHED_WHEN_UNSET and v is None)})
    if kind == "generation" and isinstance(out.get("vllm"), dict):
        out["vllm"] = {k: v for k, v in out["vllm"].items() if k not in OPERATIONAL_VLLM_KEYS}
    return out


def operational_settings(tree: dict[str, Any], kind: Literal["stage", "generation"]
                         ) -> dict[str, Any]:
    """The complement of `result_settings`: only the operational keys, by key path (what
    `status` compares to say which settings changed without affecting results)."""
    flat_all = _flatten(tree, "")
    flat_result = _flatten(result_settings(tree, kind), "")
    return {k: v for k, v in flat_all.items() if k not in flat_result}


def _strip_trainers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ({tk: tv for tk, tv in _strip_trainers(v).items()
                     if tk not in OPERATIONAL_TRAINER_KEYS}
                    if k == "trainer" and isinstance(v, dict) else _strip_trainers(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_trainers(v) for v in value]
    return value


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    items = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, list) else ())
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}{k}."))
    return out or {prefix.rstrip("."): value}
