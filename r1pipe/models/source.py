"""Turning a `ModelSpec` into a folder or Hub id `from_pretrained` loads (`materialize`:
GGUF imported, built-in model built, `layers:` student derived, once per cache), and the
fingerprint that tells the engine when a model source changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from r1pipe.checkpoints import staged_dir
from r1pipe.models.gguf import file_sha256, import_gguf, locked, read_record, resolve_gguf
from r1pipe.models.layers import derive_student
from r1pipe.models.spec import SOURCE_RECORD, ModelSpec, as_spec

# ------------------------------------------------------------------------------ materialize


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "model"


def materialize(spec: ModelSpec | str | dict[str, Any], cache_dir: str | Path) -> str:
    """Return something `from_pretrained` loads: the id/folder itself, or a cached import.

    GGUF sources are imported once under `cache_dir/gguf/`; students (`layers`) are derived
    once under `cache_dir/students/`, keyed by the source's fingerprint and the layers, so a
    changed source gives a new student instead of a stale one.
    """
    spec = as_spec(spec)
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
    with locked(dest):
        if read_record(dest) is None or not (dest / "config.json").is_file():
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
    with locked(dest):
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
    spec = as_spec(spec)
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
