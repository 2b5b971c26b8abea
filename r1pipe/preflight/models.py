"""Model configs for preflight: a model's `config.json` from a local folder, the Hugging Face
cache or the Hub (a few kilobytes, never weights), which model a stage trains, and TRL's
trainer defaults the YAML leaves out.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from r1pipe.config import BASE, PipelineConfig
from r1pipe.memory import (
    ModelShape,
)
from r1pipe.models import ModelSpec

_REACHABLE: dict[str, bool] = {}


def hub_reachable() -> bool:
    """Whether the Hub answers (asked once per process, 5 s at most): offline, every
    download would retry for minutes before failing. HF_HUB_OFFLINE=1 says no at once."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if constants.ENDPOINT not in _REACHABLE:
        import httpx

        try:
            httpx.head(constants.ENDPOINT, timeout=5.0)
            _REACHABLE[constants.ENDPOINT] = True
        except httpx.HTTPError:
            _REACHABLE[constants.ENDPOINT] = False
    return _REACHABLE[constants.ENDPOINT]


def offline_hint(repo: str, filename: str, repo_type: str = "model") -> str:
    from huggingface_hub import constants

    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    return (f"offline and {filename} of {repo} is not in the Hugging Face cache "
            f"({constants.HF_HUB_CACHE}): `hf download {repo} --include '{filename}'{kind}` "
            "where the Hub is reachable")


class ModelConfigs:
    """`config.json` of each model the pipeline names, read once: from a local folder, the
    Hugging Face cache, or (when online) the Hub. What cannot be read says why."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[dict[str, Any] | None, str]] = {}

    def read(self, spec: ModelSpec) -> tuple[dict[str, Any] | None, str]:
        name = spec.describe()
        if name not in self._seen:
            self._seen[name] = self._read(spec)
        return self._seen[name]

    def shape(self, spec: ModelSpec, *, classifier: bool = False
              ) -> tuple[ModelShape | None, str]:
        config, why = self.read(spec)
        if config is None:
            return None, why
        try:
            return ModelShape.from_config(config, classifier=classifier), why
        except (KeyError, TypeError, ValueError) as exc:
            return None, f"{name_of(spec)}: config.json has no decoder shape ({exc})"

    @staticmethod
    def _read(spec: ModelSpec) -> tuple[dict[str, Any] | None, str]:
        if spec.gguf:
            return None, f"{name_of(spec)}: a GGUF file (its shape is read when r1pipe imports it)"
        if spec.builtin:
            from r1pipe.models import default_cache_dir, materialize

            folder = Path(materialize(spec, default_cache_dir()))
            return _json(folder / "config.json"), f"built-in {spec.builtin}"
        assert spec.id is not None
        if spec.is_local:
            path = Path(spec.id) / "config.json"
            if not path.is_file():
                return None, f"{spec.id}: no config.json in the folder"
            return _json(path), str(path)
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(spec.id, "config.json", revision=spec.revision)
        if isinstance(cached, str):
            return _json(Path(cached)), "HF cache"
        if not hub_reachable():
            return None, offline_hint(spec.id, "config.json") + " (or name a local folder)"
        try:
            path = hf_hub_download(spec.id, "config.json", revision=spec.revision,
                                   etag_timeout=10)
        except Exception as exc:  # noqa: BLE001 - offline, gated, missing: all say why
            return None, (f"{spec.id}: cannot read config.json from the Hub "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); offline? "
                          f"run `hf download {spec.id} config.json` where the Hub is reachable")
        return _json(Path(path)), "Hub"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def name_of(spec: ModelSpec) -> str:
    return spec.id or spec.gguf or spec.builtin or spec.describe()


# ---------------------------------------------------------------------------------------
# What runs where: launch, sharding, the model a stage trains
# ---------------------------------------------------------------------------------------


def trained_spec(config: PipelineConfig, name: str, depth: int = 0) -> ModelSpec | None:
    """The model stage `name` trains (what its `from`/`train_from` resolves to)."""
    section = config.stages.get(name)
    if section is None or depth > len(config.stages):
        return None
    ref = getattr(section, "train_from", None) or getattr(section, "from_", None)
    return model_ref(config, ref, depth + 1)


def model_ref(config: PipelineConfig, ref: Any, depth: int = 0) -> ModelSpec | None:
    """A `ModelRef` value (base, a stage, a folder or Hub id) as the model it names."""
    if ref is None:
        return None
    if isinstance(ref, ModelSpec):
        return ref
    if ref == BASE:
        return config.base_model
    if isinstance(ref, str) and ref in config.stages:
        return trained_spec(config, ref, depth)
    return ModelSpec.parse(ref)


def trainer_defaults(trainer_class: str) -> dict[str, Any]:
    """TRL's defaults for `trainer_class` (GRPOConfig, SFTConfig, ...)."""
    import trl

    cls = getattr(trl, trainer_class)
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
    return out
