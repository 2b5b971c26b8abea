"""scripts/layer_drop_scan.py: the layer ranking that chose the demo student's layers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("layer_drop_scan",
                                                  REPO / "scripts" / "layer_drop_scan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(path: Path, n: int = 4) -> Path:
    rows = [{"id": f"arithmetic-{i}", "prompt": [{"role": "user", "content": f"What is {i} + 2?"}],
             "completion": [{"role": "assistant", "content": f"{i} + 2 = {i + 2}. "
                             f"The answer is \\boxed{{{i + 2}}}."}]} for i in range(n)]
    rows.append({"id": "general-0", "prompt": [{"role": "user", "content": "Hi"}],
                 "completion": [{"role": "assistant", "content": "Hello!"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_scan_matches_the_cut_student(tmp_path, capsys):
    """Dropping layers in the forward pass gives the loss of the student r1pipe derives with
    `layers:` (the real cut model), so the ranking is about the model distill trains."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1pipe.models import ModelSpec, materialize
    from r1pipe.testing import build_tiny_model

    teacher = build_tiny_model(tmp_path / "teacher", num_hidden_layers=4, seed=3)
    data = _records(tmp_path / "mix.jsonl")
    scan = _script()
    assert scan.main(["--model", str(teacher), "--data", str(data), "--limit", "3",
                      "--id-prefix", "arithmetic", "--drop", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["records"] == 3 and out["layers"] == 4
    assert set(out["without_one"]) == {"0", "1", "2", "3"}
    assert sorted(out["least_needed"]) == [0, 1, 2, 3]
    assert out["without_sets"][0]["drop"] == [1, 2]

    student = materialize(ModelSpec.parse({"id": str(teacher), "layers": [0, 3]}),
                          tmp_path / "cache")
    model = AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 2
    tokenizer = AutoTokenizer.from_pretrained(student)
    records = scan.read_records(data, 3, "arithmetic")
    examples = scan.completion_examples(tokenizer, records)
    expected = scan.completion_loss(model, examples)
    assert out["without_sets"][0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["full"] != pytest.approx(expected, rel=1e-3)


def test_bad_input_names_file_line_and_fix(tmp_path):
    from r1pipe.testing import build_tiny_model

    scan = _script()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": [], "completion": []}\n{not json\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"bad\.jsonl:2: not valid JSON"):
        scan.read_records(bad, None, None)
    flat = tmp_path / "flat.jsonl"
    flat.write_text('{"prompt": "What?", "completion": "This."}\n', encoding="utf-8")
    with pytest.raises(SystemExit, match=r"flat\.jsonl: record 1 needs conversational"):
        scan.read_records(flat, None, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no manifest.json; is this an r1pipe artifact folder"):
        scan.read_records(tmp_path / "empty", None, None)
    with pytest.raises(SystemExit):
        scan.main(["--model", "x", "--data", str(bad), "--drop", "1,a"])
    with pytest.raises(SystemExit):
        scan.main(["--model", "x", "--data", str(bad), "--limit", "1", "--limit", "2"])
    good = _records(tmp_path / "good.jsonl")
    teacher = build_tiny_model(tmp_path / "teacher", num_hidden_layers=4, seed=3)
    with pytest.raises(SystemExit, match=r"--drop \[1, 7\]: .*out of range.*0\.\.3"):
        scan.main(["--model", str(teacher), "--data", str(good), "--drop", "1,7"])
