"""`trust_remote_code`: off by default, and when the pipeline says so (at the top or on
`base_model`), it reaches `from_pretrained` for every model the pipeline loads, including
the folders stages pass on, which carry no flag of their own. Tested with a local model folder
that ships its own modelling code (a Llama subclass registered through `auto_map`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1pipe import models

MODELING = '''\
from transformers import LlamaConfig, LlamaForCausalLM


class MarkedConfig(LlamaConfig):
    model_type = "marked_llama"


class MarkedForCausalLM(LlamaForCausalLM):
    config_class = MarkedConfig
    ran_remote_code = True
'''


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from r1pipe.testing import build_tiny_model

    folder = build_tiny_model(tmp_path_factory.mktemp("custom") / "model")
    (folder / "modeling_marked.py").write_text(MODELING)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="marked_llama", architectures=["MarkedForCausalLM"],
                  auto_map={"AutoConfig": "modeling_marked.MarkedConfig",
                            "AutoModelForCausalLM": "modeling_marked.MarkedForCausalLM"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(autouse=True)
def _reset_flag():
    yield
    models.allow_remote_code(False)


def test_remote_code_is_refused_by_default(custom_model: Path) -> None:
    assert not models.remote_code_allowed()
    with pytest.raises(ValueError, match="trust_remote_code"):
        models.load_model_and_tokenizer(str(custom_model))


@pytest.mark.parametrize("where", ["top", "base_model"])
def test_pipeline_flag_reaches_from_pretrained(tmp_path: Path, custom_model: Path,
                                               where: str) -> None:
    from r1pipe.config import load

    base = (f"base_model: {custom_model}\ntrust_remote_code: true\n" if where == "top" else
            f"base_model: {{id: {custom_model}, trust_remote_code: true}}\n")
    path = tmp_path / "p.yaml"
    path.write_text(f"name: rc\n{base}data:\n  reasoning: {{builtin: arithmetic}}\n"
                    "stages:\n  r1_zero: {}\n")
    config = load(path)
    assert config.remote_code
    config.apply_process_settings()
    # a stage hands the next one a folder path: the pipeline's flag still applies to it
    model, _ = models.load_model_and_tokenizer(str(custom_model))
    assert type(model).__name__ == "MarkedForCausalLM" and model.ran_remote_code
    assert models.load_tokenizer(str(custom_model)) is not None


def test_vllm_engine_arguments_carry_the_flag(custom_model: Path) -> None:
    from r1pipe.config import GenerationConfig
    from r1pipe.generation.vllm import _engine_kwargs

    assert _engine_kwargs(str(custom_model), GenerationConfig(), 0, True)[
        "trust_remote_code"] is False
    models.allow_remote_code(True)
    assert _engine_kwargs(str(custom_model), GenerationConfig(), 0, True)[
        "trust_remote_code"] is True
