"""Data for the R1 stages: sources, built-in verifiable tasks, general prompts, templates.

Importing this package is cheap: only the pydantic source model is loaded eagerly. The
functions stages call are re-exported lazily, so `from r1pipe.data import load_source`
works without `import r1pipe.data` pulling in `datasets` for everyone else.

Modules: `sources` (the YAML model), `loading` (source -> datasets object), `mixture`
(exact weighted mixtures), `tasks` and `expressions` (built-in verifiable tasks),
`general` (the shipped general prompts), `templates` (prompts and completion formats),
`length` (prompt token limit), `cli` (`r1pipe data preview`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from r1pipe.data.sources import (
    BUILTIN_SOURCES,
    BUILTIN_TASKS,
    DataSourceConfig,
    MixtureComponent,
    check_references,
    parse_sources,
)

_LAZY = {
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

__all__ = [
    "BUILTIN_SOURCES",
    "BUILTIN_TASKS",
    "DataSourceConfig",
    "MixtureComponent",
    "check_references",
    "parse_sources",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'r1pipe.data' has no attribute {name!r}")
