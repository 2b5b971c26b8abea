"""The GPU memory a training step really used, beside what `r1pipe preflight` estimated.

`r1pipe.memory` adds up a step's memory from the model's config (docs/scale.md); on CPU that
arithmetic is checked against the allocator's peak, on GPUs only a run can check it. This
callback measures each step on this process's GPU with `torch.cuda.max_memory_allocated`
(every tensor torch allocated, the colocated vLLM engine's weights and KV cache included; not
the CUDA context nor the caching allocator's spare reserve). The peak is read and reset when
a step ends, not reset when one begins: each reading then covers the whole step from the end
of the one before, GRPO's generation and every accumulated micro-batch included, whatever
micro-batch transformers calls `on_step_begin` at; the first covers training's start. The
step's log gets it as `gpu/max_memory_allocated_gib`, so it lands in `metrics.jsonl` with the
step. It is the GPU of the process that logs (rank 0); ranks differ by their share of
uneven batches only.

Where CUDA is not available it does nothing: no key is logged, nothing is imported beyond
the check, so CPU runs and their metrics are unchanged.
"""

from __future__ import annotations

from typing import Any

GIB = 1024**3
KEY = "gpu/max_memory_allocated_gib"


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


class StepPeak:
    """The peak of one step, from the previous `end` (or `begin`) to this `end`; the logic of
    the callback, without transformers (so it is tested alone)."""

    def __init__(self, enabled: bool | None = None) -> None:
        self.enabled = cuda_available() if enabled is None else enabled
        self.peak_bytes: int | None = None

    def begin(self) -> None:
        if self.enabled:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def end(self) -> None:
        if self.enabled:
            import torch

            peak = int(torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()  # the next step starts from what is held
            # a step logged after several optimizer steps (logging_steps > 1) keeps the
            # largest of them
            self.peak_bytes = peak if self.peak_bytes is None else max(self.peak_bytes, peak)

    def into(self, logs: dict[str, Any] | None) -> None:
        """Add the peak since the last log to `logs` (the dict every callback sees)."""
        if self.enabled and logs is not None and self.peak_bytes is not None:
            logs[KEY] = round(self.peak_bytes / GIB, 3)
            self.peak_bytes = None


def callback() -> Any:
    """A transformers `TrainerCallback` logging each step's peak GPU memory (see the module).

    Put it before r1pipe's metrics callback in a trainer's callbacks: callbacks see one logs
    dict in order, so the key reaches `metrics.jsonl` (and the trackers) with its step."""
    from transformers import TrainerCallback

    peak = StepPeak()

    class _GpuMemory(TrainerCallback):
        step_peak = peak

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            peak.begin()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN202
            peak.end()

        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202
            peak.into(logs)

    return _GpuMemory()
