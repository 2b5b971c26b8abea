"""The small shared pieces every stage leans on: a generator loaded on first use, folders
removed without ever being half-deleted, files that appear whole or not at all, stage cards,
and the one progress bar."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from r1pipe.artifacts import atomic_file, remove_tree, stage_card
from r1pipe.generation.lazy import LazyGenerator, as_generator
from r1pipe.progress import ProgressBar


class _Recorder:
    """A generator that records what happened to it."""

    made = 0

    def __init__(self) -> None:
        type(self).made += 1
        self.closed = 0

    def generate(self, prompts: Any, sampling: Any) -> list[list[str]]:
        return [[f"{p}!"] for p in prompts]

    def close(self) -> None:
        self.closed += 1


def test_lazy_generator_loads_on_first_use_and_closes_once() -> None:
    _Recorder.made = 0
    made: list[_Recorder] = []

    def factory() -> _Recorder:
        made.append(_Recorder())
        return made[-1]

    with LazyGenerator(factory) as gen:
        gen.close()  # before any use: nothing to close, nothing made
        assert not gen.loaded and _Recorder.made == 0
        assert gen.generate(["a", "b"], None) == [["a!"], ["b!"]]
        assert gen.generate(["c"], None) == [["c!"]]
        assert gen.loaded and _Recorder.made == 1  # one engine for both calls
    assert made[0].closed == 1 and not gen.loaded
    gen.close()
    assert made[0].closed == 1  # closing twice gives nothing back twice
    gen.generate(["d"], None)  # a later use makes a fresh engine
    assert _Recorder.made == 2


def test_as_generator_wraps_factories_only() -> None:
    ready = _Recorder()
    assert as_generator(ready) == (ready, False)  # the caller's: not ours to close
    wrapped, owned = as_generator(lambda: _Recorder())
    assert owned and isinstance(wrapped, LazyGenerator) and not wrapped.loaded


def test_remove_tree_never_leaves_a_half_deleted_folder(tmp_path: Path) -> None:
    folder = tmp_path / "stage"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "x.jsonl").write_text("{}\n")
    assert remove_tree(folder) is True
    assert not folder.exists() and list(tmp_path.iterdir()) == []
    assert remove_tree(folder) is False


def test_atomic_file_leaves_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temp file left
    with atomic_file(target) as fh:
        fh.write(b"new")
    assert target.read_text() == "new"


def test_stage_card_names_run_stage_and_fingerprint() -> None:
    ctx = SimpleNamespace(name="reject_sample", fingerprint="abc123",
                          pipeline=SimpleNamespace(name="demo"))
    card = stage_card(ctx, "kept samples", "what sampling kept", fields={"id": "record id"},
                      tags=["r1"])
    assert card.title == "demo: kept samples"
    assert (card.stage, card.pipeline, card.fingerprint) == ("reject_sample", "demo", "abc123")
    assert card.fields == {"id": "record id"} and card.tags == ["r1"]


def test_progress_bar_rates_count_new_work_only(monkeypatch: pytest.MonkeyPatch) -> None:
    with ProgressBar("sampling", total=10, rates={"prompts": ",.1f", "tokens": ",.0f"}) as bar:
        bar.skip(4)  # found done: moves the bar, not the rates
        bar.advance(2, tokens=300)
        assert bar.counts == {"prompts": 2, "tokens": 300}
        with pytest.raises(TypeError, match="no rate is shown"):
            bar.advance(1, bytes=5)
    monkeypatch.setenv("RANK", "1")  # other ranks draw nothing but still count
    with ProgressBar("sampling", total=3) as quiet:
        quiet.advance(3)
        assert quiet.counts == {"items": 3}


@pytest.mark.parametrize("message", [
    "CPU backend doesn't allow to use `torch.set_num_threads` after the thread binding, skip it.",
    "OMP_NUM_THREADS=2 is set; leaving Torch threads at 2 for serving.",
    "Unknown vLLM environment variable detected: VLLM_DIST_IDENT",
    "Kernel vllm.v1.worker.block_table.ComputeSlotMappingKernel.kernel is already registered. "
    "Overwriting.",
])
def test_vllm_cpu_engine_chatter_is_harmless(message: str) -> None:
    """The lines one `make demo` printed most often (70 of the first) stay off the terminal;
    a real warning from the same modules still shows."""
    from r1pipe.quiet import is_harmless

    assert is_harmless(message)
    assert not is_harmless("CPU KV cache is too small for one request")
