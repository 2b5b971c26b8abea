"""`load`: read a pipeline file (or a shipped one by name), apply overrides, validate every
section and the checks across them, collecting all independent problems in one pass; and
`dump`, which writes the resolved config back as YAML that `load` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from r1pipe.config.checks import (
    check_data,
    check_gates,
    check_inputs,
    check_stages,
    check_tensor_parallel,
)
from r1pipe.config.errors import ConfigError, ConfigErrors
from r1pipe.config.locate import Locator
from r1pipe.config.pipeline import PipelineConfig
from r1pipe.config.reader import apply_override, parse_override, parse_yaml

SHIPPED_CONFIGS = ("demo", "smoke", "r1")
"""Pipelines shipped inside the package (`r1pipe/configs`, the repository's `configs/`)."""


def resolve_path(path: str | Path) -> Path:
    """A pipeline file, or a shipped one by name: `demo`, `smoke.yaml` or `configs/r1.yaml`
    work from any directory once r1pipe is installed (a file on disk comes first)."""
    given = Path(path)
    if given.is_file():
        return given
    name = given.name.removesuffix(".yaml")
    if name in SHIPPED_CONFIGS and str(given.parent) in (".", "configs"):
        from importlib import resources

        shipped = resources.files("r1pipe").joinpath("configs", f"{name}.yaml")
        if shipped.is_file():
            return Path(str(shipped))
    return given


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Read, override and validate a pipeline file; raise `ConfigError` with a location."""
    path = resolve_path(path)
    file = str(path)
    return load_text(read_config_text(path), file=file, overrides=overrides, check_paths=True)


def read_config_text(path: str | Path) -> str:
    """A pipeline file's text, or a `ConfigError` that says why it cannot be read (missing,
    a folder, not UTF-8 text: with the line of the first bad byte)."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline file: {exc.strerror or exc}",
                          file=file) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                          "save the file as UTF-8", file=file, line=line) from None


def load_text(text: str, *, file: str = "<config>",
              overrides: list[str] | tuple[str, ...] = (),
              check_paths: bool = False) -> PipelineConfig:
    """Parse, override and validate a pipeline's text. `check_paths`: local data files must
    exist (what `load` asks for a file on disk; a config held in memory may describe files
    of another machine)."""
    tree, lines = parse_yaml(text, file)
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError("the pipeline file must be a mapping (name:, base_model:, stages: ...)",
                          file=file, line=1)
    overridden: set[tuple[str, ...]] = set()
    for item in overrides:
        opath, value = parse_override(item)
        apply_override(tree, opath, value)
        overridden.add(tuple(opath))
    from r1pipe.secrets import register_config_secrets

    register_config_secrets(tree)
    locate = Locator(file, lines, overridden)
    # Every independent problem is collected before anything is raised, so a file with five
    # mistakes is fixed in one round trip; checks that need a valid config (inputs, cycles)
    # run only once the sections themselves are valid.
    problems: list[ConfigError] = []
    config: PipelineConfig | None = None
    try:
        config = PipelineConfig.model_validate(tree)
    except ValidationError as exc:
        problems += locate.all_from_validation(exc, PipelineConfig, ())
    if config is not None:
        config._source_path = file
        check_data(config, locate, problems, check_paths)
        modules, raw_stages = config.stage_modules, config.stages
    else:  # the stage sections are still worth checking when, say, `seed:` is wrong
        modules = [m for m in tree.get("stage_modules") or [] if isinstance(m, str)] \
            if isinstance(tree.get("stage_modules"), list) else []
        raw_stages = tree.get("stages") if isinstance(tree.get("stages"), dict) else {}
    sections = check_stages(modules, raw_stages, locate, problems)
    if problems or config is None:
        raise ConfigErrors.of(problems)
    config.stages = sections
    check_inputs(config, locate)
    check_gates(config, locate)
    check_tensor_parallel(config, locate)
    return config


def config_tree(config: PipelineConfig) -> dict[str, Any]:
    """The resolved config as plain data (what `dump` writes)."""
    tree = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
    tree["stages"] = {name: section.model_dump(mode="json", by_alias=True, exclude_unset=True)
                      for name, section in config.stages.items()}
    return tree


def secret_values(config: PipelineConfig) -> dict[str, str]:
    """`key.path -> value` of the secrets a config holds (for `--override`-style replay)."""
    from r1pipe.secrets import config_secrets

    return config_secrets(config_tree(config))


def dump(config: PipelineConfig, *, mask_secrets: bool = False) -> str:
    """The resolved config as YAML that `load` reads back (the run dir's pipeline.yaml).

    `mask_secrets` replaces the values of secret-named keys (and any known secret value) by
    `***`: what goes into a file. `secret_values(config)` gives them back to a process that
    needs them (a launched worker)."""
    import io

    from ruamel.yaml import YAML

    tree = config_tree(config)
    if mask_secrets:
        from r1pipe.secrets import mask_secret_keys

        tree = mask_secret_keys(tree)
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(tree, buf)
    return buf.getvalue()
