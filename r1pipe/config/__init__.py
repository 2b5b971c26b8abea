"""The pipeline YAML: pydantic models, `key.path=value` overrides, and errors a person can act on.

Why a loader of our own around pydantic: a config error must name the YAML file, the line
and the key path, suggest the nearest valid key, and never print a traceback. So the YAML
is read with ruamel (which keeps line numbers), overrides are applied to the plain tree,
and pydantic's errors are translated back to lines before anyone sees them.

Stage sections are validated by the `Config` class each stage module declares (see
`r1pipe.registry`). Fields that point at other stages or at data sources are annotated with
`Ref`, so the engine can find every dependency without knowing the stage.

This package is imported as one module (`from r1pipe.config import ...`); every name other
modules use is re-exported here. Its modules, one job each, lowest first:

- `errors`: `BadInput`, `ConfigError`, `ConfigErrors`
- `refs`: `Ref`, `ModelRef`, `DataRef`, `Input`, `BASE`, the references of a section and
  their cycle check
- `sections`: the strict `Section` base, `generation:`, `launch:`, LoRA, prompts
- `fingerprint`: the operational keys left out of stage fingerprints
- `health`: `health:` rules and `gate:`
- `stage`: `StageConfig`, `GRPOStageConfig`, `SFTStageConfig` and their sections
- `eval`: `eval:` and its benchmarks; `tracking`: `tracking:`
- `pipeline`: `PipelineConfig`, the whole file
- `reader`: safe YAML with line numbers, overrides; `locate`: errors at `file:line: key:`
- `trainer`: `trainer:` against TRL's fields; `checks`: checks across sections
- `loader`: `load`, `load_text`, `dump`

The package imports only the foundations and the configuration layer (docs/architecture.md;
`tests/test_architecture.py` checks it).
"""

from __future__ import annotations

from r1pipe.config.errors import BadInput, ConfigError, ConfigErrors
from r1pipe.config.eval import (
    BENCHMARK_DEFAULTS,
    BenchmarkConfig,
    BenchmarkSettings,
    DecontaminationConfig,
    EvalConfig,
)
from r1pipe.config.fingerprint import (
    OPERATIONAL_GENERATION_KEYS,
    OPERATIONAL_STAGE_KEYS,
    OPERATIONAL_TRAINER_KEYS,
    OPERATIONAL_VLLM_KEYS,
    UNHASHED_WHEN_UNSET,
    operational_settings,
    result_settings,
)
from r1pipe.config.health import GateSettings, HealthAction, HealthRule, HealthSettings
from r1pipe.config.loader import (
    SHIPPED_CONFIGS,
    config_tree,
    dump,
    load,
    load_text,
    read_config_text,
    resolve_path,
    secret_values,
)
from r1pipe.config.pipeline import PipelineConfig
from r1pipe.config.reader import (
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    LineMap,
    apply_override,
    parse_override,
)
from r1pipe.config.refs import BASE, DataRef, Input, ModelRef, Ref, find_cycle
from r1pipe.config.sections import (
    GenerationConfig,
    LaunchConfig,
    LoraSection,
    PromptSettings,
    Section,
    merge_launch,
)
from r1pipe.config.stage import (
    PASS_REWARD_FAMILIES,
    DynamicSamplingSettings,
    GRPOStageConfig,
    PromptFilterSettings,
    SFTStageConfig,
    StageConfig,
    VLLMServerSection,
    check_rewards,
    reward_family,
)
from r1pipe.config.tracking import TRACKERS, TrackingConfig, tensorboard_dir, tracker_environment
from r1pipe.config.trainer import (
    BOTH_PRECISIONS,
    TRAINER_RANGES,
    trainer_fields,
    trainer_problem,
)
from r1pipe.data.sources import DataSourceConfig
from r1pipe.models import ModelSpec

__all__ = [
    "BASE", "BENCHMARK_DEFAULTS", "BOTH_PRECISIONS", "MAX_YAML_DEPTH", "MAX_YAML_VALUES", "OPERATIONAL_GENERATION_KEYS",
    "OPERATIONAL_STAGE_KEYS", "OPERATIONAL_TRAINER_KEYS", "OPERATIONAL_VLLM_KEYS",
    "PASS_REWARD_FAMILIES", "SHIPPED_CONFIGS", "TRACKERS", "TRAINER_RANGES",
    "UNHASHED_WHEN_UNSET", "BadInput", "BenchmarkConfig", "BenchmarkSettings", "ConfigError",
    "ConfigErrors", "DataRef", "DataSourceConfig", "DecontaminationConfig",
    "DynamicSamplingSettings", "EvalConfig", "GRPOStageConfig", "GateSettings",
    "GenerationConfig", "HealthAction", "HealthRule", "HealthSettings", "Input", "LaunchConfig",
    "LineMap", "LoraSection", "ModelRef", "ModelSpec", "PipelineConfig",
    "PromptFilterSettings", "PromptSettings", "Ref", "SFTStageConfig", "Section", "StageConfig",
    "TrackingConfig", "VLLMServerSection", "apply_override", "check_rewards",
    "config_tree", "dump", "find_cycle", "load", "load_text", "merge_launch",
    "operational_settings", "parse_override", "read_config_text", "reward_family",
    "resolve_path", "result_settings", "secret_values", "tensorboard_dir", "tracker_environment",
    "trainer_fields", "trainer_problem",
]
