"""`response_prefix`: the answer's first words written into the prompt (TinyZero's `<think>`
after the R1-Zero template), and put back in front of each completion for the rewards."""

from __future__ import annotations

from pathlib import Path

import pytest

from r1pipe.config import load, load_text
from r1pipe.rewards import build_reward_funcs
from r1pipe.rewards.compose import Prefixed
from tests.helpers import read_jsonl, write_pipeline

QUESTION = "What is 2 + 3 * 4?"


def test_rewards_score_the_prefix_and_the_completion_together() -> None:
    funcs, weights = build_reward_funcs({"accuracy": 1.0, "format": 0.1})
    wrapped = [Prefixed(f, "<think>") for f in funcs]
    assert [f.__name__ for f in wrapped] == ["accuracy", "format"]
    completions = ["3 * 4 = 12, 2 + 12 = 14</think> <answer>14</answer>",
                   "<think>2 + 3 = 5</think> <answer>20</answer>"]  # tag written twice: no format
    kwargs = {"prompts": [QUESTION] * 2, "completions": completions, "answer": ["14"] * 2,
              "task": ["arithmetic"] * 2, "task_type": ["reasoning"] * 2}
    scores = [f(**kwargs) for f in wrapped]
    totals = [sum(w * s[i] for w, s in zip(weights, scores, strict=True)) for i in range(2)]
    assert totals == pytest.approx([1.1, 0.0])
    plain = [f(**kwargs) for f in funcs]  # without the prefix the layout is broken
    assert plain[1][0] == 0.0
    chat = wrapped[1](prompts=[QUESTION], completions=[[{"role": "assistant", "content":
                      "r</think> <answer>14</answer>"}]], answer=["14"], task_type=["reasoning"])
    assert chat == [1.0]


def test_chat_prompts_take_a_prefix_as_the_start_of_the_assistant_turn() -> None:
    from r1pipe.data.templates import with_response_prefix
    from r1pipe.generation.base import prompt_as_text, render_prompt
    from r1pipe.testing import build_tiny_tokenizer

    cfg = load_text("name: p\nbase_model: {builtin: tiny-llama}\ndata: {reasoning: {builtin: arithmetic}}\nstages:\n  r1_zero:\n"
                    "    prompts: {template: chat}\n    response_prefix: <think>\n")
    assert cfg.stages["r1_zero"].response_prefix == "<think>"
    assert with_response_prefix("Q: 1+1?", "<think>") == "Q: 1+1?<think>"
    asked = [{"role": "user", "content": QUESTION}]
    messages = with_response_prefix(asked, "<think>")
    assert messages[-1] == {"role": "assistant", "content": "<think>"} and asked[-1]["role"] == "user"
    tokenizer = build_tiny_tokenizer()
    text, special = render_prompt(tokenizer, messages)
    opened = tokenizer.apply_chat_template(asked, tokenize=False, add_generation_prompt=True)
    assert not special and text.startswith(opened) and text.endswith("<think>")
    assert text.count("assistant") == opened.count("assistant")  # continued, not a new turn
    trained = prompt_as_text(tokenizer, messages)
    ids = tokenizer(trained, add_special_tokens=True)["input_ids"]
    rendered = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids[-len(rendered) + 1:] == rendered[1:]  # the same prompt, ...
    bos = tokenizer.bos_token_id
    assert bos is None or ids.count(bos) == max(1, rendered.count(bos))  # ... with one BOS


@pytest.mark.slow
@pytest.mark.parametrize("template", ["r1_zero", "chat"])
def test_r1_zero_trains_with_a_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      template: str) -> None:
    from r1pipe.pipeline import execute, plan

    monkeypatch.setenv("R1PIPE_CACHE", str(tmp_path / "cache"))
    path = write_pipeline(tmp_path, "prefix", f"""stages:
  r1_zero:
    prompts: {{template: {template}}}
    response_prefix: "<think>"
    rewards: {{accuracy: 1.0, format: {{weight: 0.5, variant: tag_count}}}}
    trainer: {{max_steps: 2, per_device_train_batch_size: 4, num_generations: 4,
              max_completion_length: 8, save_steps: 2}}
""", data={"reasoning": "{builtin: arithmetic, size: 8, test_size: 0}"})
    execute(plan(load(path)))
    lines = read_jsonl(tmp_path / "run/r1_zero/metrics.jsonl")
    steps = [m for m in lines if "rewards/format/mean" in m]
    assert [m["step"] for m in steps] == [1, 2]
    # the written "<think>" counts for the tag-count format (0.25 each) in every answer
    # that does not write a second one: a random tiny model scores near 0.25, not 0
    assert all(m["rewards/format/mean"] > 0.1 for m in steps)
