"""Pipeline YAML: validation, overrides, and errors that name the file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from r1pipe.config import ConfigError, dump, load, load_text
from r1pipe.graph import stage_order

GOOD = """\
name: cfgtest
seed: 7
base_model: my-org/tiny-model
stage_modules: [tests.stage_squares, tests.stage_steps]
data:
  reasoning: {builtin: arithmetic, size: 50}
stages:
  steps:
    data: squares:squares
    steps: 4
  squares:
    count: 30
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def _error(tmp_path: Path, text: str, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), list(overrides))
    return info.value


def test_good_config_orders_stages_by_inputs(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, GOOD))
    assert cfg.name == "cfgtest" and cfg.seed == 7
    assert stage_order(cfg) == ["squares", "steps"]
    assert cfg.stages["squares"].count == 30
    assert [(i.field, i.value) for i in cfg.stages["steps"].inputs()] == [
        ("from", "base"), ("data", "squares:squares")]


def test_override_sets_nested_values_with_yaml_types(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, GOOD), ["stages.squares.count=12", "seed=3",
                                        "stages.steps.delay=1e-3"])
    assert cfg.stages["squares"].count == 12 and cfg.seed == 3
    assert cfg.stages["steps"].delay == pytest.approx(1e-3)


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("    count: 30", "    cuont: 30"))
    assert err.line == 12 and err.key == "stages.squares.cuont"
    assert "did you mean 'count'" in err.message
    assert err.one_line().startswith(f"{tmp_path / 'pipeline.yaml'}:12: stages.squares.cuont:")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD + "sede: 3\n")
    assert err.key == "sede" and "did you mean 'seed'" in err.message and err.line == 13


def test_wrong_type_names_line(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("steps: 4", "steps: four"))
    assert err.key == "stages.steps.steps" and err.line == 10
    assert "integer" in err.message and "'four'" in err.message


def test_missing_stage_input(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("data: squares:squares", "data: sqaures:squares"))
    assert err.key == "stages.steps.data" and err.line == 9
    assert "not in `stages:`" in err.message and "did you mean 'squares'" in err.message


def test_missing_data_source(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("data: squares:squares", "data: reasonin"))
    assert "not defined under `data:`" in err.message and "did you mean 'reasoning'" in err.message


def test_cycle_is_reported_with_its_path(tmp_path: Path) -> None:
    text = GOOD.replace("  squares:\n    count: 30", "  squares:\n    count: 30\n    from: steps")
    err = _error(tmp_path, text)
    assert "cycle" in err.message and "steps -> squares -> steps" in err.message or \
        "squares -> steps -> squares" in err.message


def test_unknown_stage_suggests(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD + "  r1_zeor: {}\n")
    assert err.key == "stages.r1_zeor" and "did you mean 'r1_zero'" in err.message


def test_override_error_points_at_command_line(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD, "stages.squares.cont=5")
    assert err.file == "<command line override>" and "did you mean 'count'" in err.message


def test_invalid_yaml_reports_line(tmp_path: Path) -> None:
    err = _error(tmp_path, GOOD.replace("seed: 7", "seed: [7"))
    assert "invalid YAML" in err.message and err.line is not None


def test_trainer_keys_checked_against_trl(tmp_path: Path) -> None:
    from r1pipe import registry
    from r1pipe.config import StageConfig

    class GrpoLike(StageConfig):
        trainer_class = "GRPOConfig"

    class Mod:
        NAME = "grpo_like"
        Config = GrpoLike
        __name__ = "grpo_like"

        @staticmethod
        def run(ctx):
            return None

    registry.register_module(Mod)  # type: ignore[arg-type]
    try:
        base = "name: t\nbase_model: x/y\nstages:\n  grpo_like:\n    trainer:\n"
        ok = load_text(base + "      learning_rate: 3.0e-6\n      num_generations: 16\n"
                       "      beta: 0.001\n")
        assert ok.stages["grpo_like"].trainer["num_generations"] == 16
        with pytest.raises(ConfigError) as info:
            load_text(base + "      learning_rate: 3.0e-6\n      num_generation: 16\n",
                      file="x.yaml")
        assert info.value.line == 7 and "did you mean 'num_generations'" in info.value.message
        assert "GRPOConfig" in info.value.message
        with pytest.raises(ConfigError) as info:
            load_text(base + "      num_generations: many\n", file="x.yaml")
        assert "must be int" in info.value.message
    finally:
        registry.unregister("grpo_like")


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, GOOD), ["stages.squares.count=11"])
    again = load_text(dump(cfg))
    assert again.stages["squares"].count == 11
    assert again.model_dump() == cfg.model_dump()


def test_mixture_naming_unknown_source(tmp_path: Path) -> None:
    text = GOOD.replace("  reasoning: {builtin: arithmetic, size: 50}",
                        "  reasoning: {builtin: arithmetic, size: 50}\n"
                        "  mix: {mixture: [{source: reasoning, weight: 1}, {source: genral, weight: 1}]}")
    err = _error(tmp_path, text)
    assert err.key == "data" and "unknown source 'genral'" in err.message
