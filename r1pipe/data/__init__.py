"""Data for the R1 stages: sources, built-in verifiable tasks, general prompts, templates.

Importing this package is cheap: nothing is loaded eagerly, not even the pydantic source
model. The functions stages call are re-exported lazily, so `from r1pipe.data import
load_source` works without `import r1pipe.data` pulling in `datasets` for everyone else.

Modules: `sources` (the YAML model), `loading` (source -> datasets object), `mixture`
(exact weighted mixtures), `tasks` and `expressions` (built-in verifiable tasks),
`general` (the shipped general prompts), `templates` (prompts and completion formats),
`length` (prompt token limit), `cli` (`r1pipe data preview`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    # the pydantic source model too: `r1pipe --help` mounts `r1pipe data`, which needs none
    # of it, and building the model is a third of the CLI's start-up time
    "BUILTIN_SOURCES": "r1pipe.data.sources",
    "BUILTIN_TASKS": "r1pipe.data.sources",
    "DataSourceConfig": "r1pipe.data.sources",
    "MixtureComponent": "r1pipe.data.sources",
    "check_references": "r1pipe.data.sources",
    "parse_sources": "r1pipe.data.sources",
    "DataSourceError": "r1pipe.data.loading",
    "load_source": "r1pipe.data.loading",
    "builtin_records": "r1pipe.data.loading",
    "iter_records": "r1pipe.data.loading",
    "generate_task": "r1pipe.data.tasks",
    "generate_reasoning": "r1pipe.data.tasks",
    "normalise_prompt": "r1pipe.data.tasks",
    "general_prompts": "r1pipe.data.general",
    "generate_general": "r1pipe.data.general",
    "R1_ZERO_TEMPLATE": "r1pipe.data.templates",
    "R1_ZERO_INSTRUCTION": "r1pipe.data.templates",
    "render_prompt": "r1pipe.data.templates",
    "render_dataset": "r1pipe.data.templates",
    "format_completion": "r1pipe.data.templates",
    "parse_completion": "r1pipe.data.templates",
    "reasoning_and_answer": "r1pipe.data.templates",
    "PromptLengthReport": "r1pipe.data.length",
    "limit_prompt_length": "r1pipe.data.length",
}

__all__ = [*_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'r1pipe.data' has no attribute {name!r}")
