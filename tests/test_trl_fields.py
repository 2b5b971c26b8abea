"""`validate` knows TRL's trainer fields from a per-version cache (`r1pipe.trl_fields`): a warm
`validate` imports neither torch nor TRL, and says exactly what the import path says; a
corrupt, foreign or unwritable cache falls back to the import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from r1pipe import trl_fields

REPO = Path(__file__).resolve().parents[1]

# one mistake of each kind, in every `trainer:` mapping the smoke pipeline has (GRPO, SFT,
# the reward model's RewardConfig, the distillation students' SFT)
MISTAKES = ["stages.r1_zero.trainer.learning_rte=1", "stages.cold_start.trainer.max_steps=x",
            "stages.reasoning_rl.trainer.num_generations=1",
            "stages.reject_sample.trainer.bf16=yes",
            "stages.all_scenario_rl.reward_model.train.trainer.bogus=1",
            "stages.distill.trainer.max_lenght=3"]

PROBE = """\
import sys
from r1pipe.cli import main
rc = main(sys.argv[1:])
heavy = sorted(m for m in ("torch", "transformers", "trl", "peft") if m in sys.modules)
print("HEAVY", ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


def _validate(cache: Path, *overrides: str) -> tuple[int, list[str], list[str]]:
    """(exit code, stderr lines without the probe's, heavy modules imported) of one fresh
    `r1pipe validate configs/smoke.yaml` process using `cache` as r1pipe's cache folder."""
    env = {**os.environ, "R1PIPE_CACHE": str(cache), "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-c", PROBE, "validate", "configs/smoke.yaml",
                           *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    lines = proc.stderr.splitlines()
    heavy = [line for line in lines if line.startswith("HEAVY")]
    assert len(heavy) == 1, proc.stderr[-3000:]
    return (proc.returncode, [line for line in lines if not line.startswith("HEAVY")],
            [m for m in heavy[0].removeprefix("HEAVY").strip().split(",") if m])


def _cache_file(cache: Path) -> Path:
    [path] = (cache / "trl-fields").glob("trl-*.json")
    return path


def test_a_warm_validate_imports_no_torch_and_says_the_same(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = _validate(cache, *MISTAKES)
    assert cold[0] == 2 and "torch" in cold[2], cold  # the cold run read TRL's dataclasses
    path = _cache_file(cache)
    assert trl_fields.read_cache(path) is not None
    warm = _validate(cache, *MISTAKES)
    assert warm[2] == [], warm  # neither torch, transformers nor TRL
    assert warm[:2] == cold[:2]
    assert len(warm[1]) == len(MISTAKES)
    for line, word in zip(sorted(warm[1]), ["'bogus' is not a field of TRL's RewardConfig",
                                            "'max_steps' must be int for TRL's SFTConfig",
                                            "did you mean 'max_length'?",
                                            "did you mean 'learning_rate'?",
                                            "'num_generations' must be at least 2",
                                            "'bf16' must be bool for TRL's SFTConfig"],
                          strict=True):
        assert word in line, (word, line)
    ok = _validate(cache)
    assert ok[0] == 0 and ok[2] == [], ok


def test_a_corrupt_cache_falls_back_to_the_import_and_is_rewritten(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    reference = _validate(cache, *MISTAKES)
    path = _cache_file(cache)
    for garbage in ("{not json", json.dumps({"layout": trl_fields.LAYOUT, "classes": []}),
                    path.read_text().replace('"int"', '"complex"')):
        path.write_text(garbage)
        assert trl_fields.read_cache(path) is None
        again = _validate(cache, *MISTAKES)
        assert again[:2] == reference[:2] and "torch" in again[2], again
        assert trl_fields.read_cache(path) is not None  # the import wrote it anew


def test_the_cache_round_trips_the_dataclasses(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """What is stored and read back is what TRL's dataclasses say, field for field."""
    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path))
    monkeypatch.setattr(trl_fields, "_known", {})
    imported = trl_fields.from_trl(list(trl_fields.TRAINER_CLASSES))
    path = trl_fields.cache_file()
    assert path is not None and path.is_relative_to(tmp_path)
    trl_fields.write_cache(path, imported)
    assert trl_fields.read_cache(path) == imported
    assert imported["GRPOConfig"]["learning_rate"] == (float,)
    assert imported["SFTConfig"]["report_to"] is None  # a richer type is not checked
    # a file written for other versions is not used
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "trl": "0.0.1"}))
    assert trl_fields.read_cache(path) is None


def test_an_unwritable_cache_still_validates(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("R1PIPE_CACHE", str(blocker / "cache"))  # below a file: cannot exist
    monkeypatch.setattr(trl_fields, "_known", {})
    from r1pipe.config import trainer_problem

    assert trainer_problem("GRPOConfig", {"learning_rte": 1}) == (
        "learning_rte", "'learning_rte' is not a field of TRL's GRPOConfig; did you mean "
        "'learning_rate'?")
    assert not (blocker / "cache").exists()
