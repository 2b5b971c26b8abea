"""Prompt templates, completion formats and the prompt length limit."""

from __future__ import annotations

import pytest

from r1pipe.data.length import limit_prompt_length, prompt_token_count, truncate_prompt
from r1pipe.data.templates import (
    R1_ZERO_INSTRUCTION,
    R1_ZERO_TEMPLATE,
    format_completion,
    parse_completion,
    reasoning_and_answer,
    render_dataset,
    render_prompt,
    to_messages,
)
from r1pipe.rewards.format import cold_start_format, r1_zero_format, think_format

PAPER_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>. User: {prompt}. Assistant:"
)
RECORD = {"id": "arithmetic-d1-train-000000", "prompt": "What is 2 + 3 * 4?", "answer": "14"}


@pytest.fixture(scope="module")
def tokenizer():
    from r1pipe.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


def test_r1_zero_template_is_the_papers_word_for_word() -> None:
    assert R1_ZERO_TEMPLATE == PAPER_TEMPLATE
    assert render_prompt(RECORD, "r1_zero") == PAPER_TEMPLATE.format(prompt="What is 2 + 3 * 4?")
    assert R1_ZERO_TEMPLATE.startswith(R1_ZERO_INSTRUCTION)


def test_r1_zero_does_not_double_a_final_full_stop() -> None:
    rendered = render_prompt("Write a haiku about tea.", "r1_zero")
    assert rendered.endswith("User: Write a haiku about tea. Assistant:")


def test_plain_and_system_prompt() -> None:
    assert render_prompt(RECORD, "plain") == "What is 2 + 3 * 4?"
    assert render_prompt(RECORD, "plain", system_prompt="Be brief.") == (
        "Be brief.\n\nWhat is 2 + 3 * 4?"
    )
    with pytest.raises(ValueError, match="unknown prompt template"):
        render_prompt(RECORD, "alpaca")


def test_chat_without_tokenizer_gives_trl_conversational_messages() -> None:
    assert render_prompt(RECORD, "chat") == [{"role": "user", "content": "What is 2 + 3 * 4?"}]
    assert render_prompt(RECORD, "chat", system_prompt="S") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "What is 2 + 3 * 4?"},
    ]
    conversation = [{"role": "system", "content": "own"}, {"role": "user", "content": "hi"}]
    assert to_messages(conversation, "ignored") == conversation
    assert render_prompt({"prompt": conversation}, "r1_zero").endswith("User: hi. Assistant:")


def test_chat_with_tokenizer_applies_its_template_with_generation_prompt(tokenizer) -> None:
    text = render_prompt(RECORD, "chat", tokenizer, system_prompt=R1_ZERO_INSTRUCTION)
    assert text == tokenizer.apply_chat_template(
        [{"role": "system", "content": R1_ZERO_INSTRUCTION},
         {"role": "user", "content": "What is 2 + 3 * 4?"}],
        tokenize=False, add_generation_prompt=True,
    )
    assert text.endswith("<|im_start|>assistant\n")


def test_chat_with_a_base_tokenizer_says_what_to_use_instead(tokenizer) -> None:
    import copy

    base = copy.deepcopy(tokenizer)
    base.chat_template = None
    with pytest.raises(ValueError, match="no chat template; use template 'r1_zero'"):
        render_prompt(RECORD, "chat", base)


def test_render_dataset_keeps_the_raw_question() -> None:
    from datasets import Dataset

    data = render_dataset(Dataset.from_list([RECORD]), "r1_zero")
    assert data[0]["question"] == "What is 2 + 3 * 4?"
    assert data[0]["prompt"].endswith("User: What is 2 + 3 * 4?. Assistant:")
    assert data[0]["answer"] == "14"


@pytest.mark.parametrize("token", ["|special_token|", "<sep>"])
def test_cold_start_format_round_trips_and_earns_the_format_reward(token: str) -> None:
    text = format_completion("3 * 4 = 12, 2 + 12 = 14.", "The answer is 14.", "special_token",
                             special_token=token)
    assert text == f"{token}3 * 4 = 12, 2 + 12 = 14.{token}The answer is 14."
    assert cold_start_format(text, token) == 1.0
    parsed = parse_completion(text, token)
    assert parsed.reasoning == "3 * 4 = 12, 2 + 12 = 14." and parsed.summary == "The answer is 14."
    assert reasoning_and_answer(text, token) == ("3 * 4 = 12, 2 + 12 = 14.", "The answer is 14.")


def test_think_answer_and_think_styles_round_trip() -> None:
    text = format_completion("3 * 4 = 12, 2 + 12 = 14", "14", "think_answer")
    assert r1_zero_format(text) == 1.0 and think_format(text) == 1.0
    assert reasoning_and_answer(text) == ("3 * 4 = 12, 2 + 12 = 14", "14")
    text = format_completion("Add after multiplying.", "It is 14.", "think")
    assert think_format(text) == 1.0
    assert reasoning_and_answer([{"role": "assistant", "content": text}]) == (
        "Add after multiplying.", "It is 14.")
    with pytest.raises(ValueError, match="unknown completion style"):
        format_completion("r", "s", "markdown")


def test_a_simple_query_gets_an_empty_reasoning_section() -> None:
    text = format_completion(None, "Hello! How can I help?", "special_token")
    assert text == "|special_token||special_token|Hello! How can I help?"
    assert reasoning_and_answer(text) == ("", "Hello! How can I help?")


def test_a_truncated_completion_has_no_answer() -> None:
    assert reasoning_and_answer("<think>3 * 4 = 12, then") == ("3 * 4 = 12, then", "")


# --------------------------------------------------------------------------- prompt length


def _prompts(tokenizer) -> list[dict]:
    short = "What is 2 + 3 * 4?"
    long = " ".join(["Please think about this question very carefully."] * 30) + " " + short
    return [{"id": str(i), "prompt": long if i % 4 == 0 else short} for i in range(20)]


@pytest.mark.parametrize("kind", ["dataset", "stream", "list"])
def test_long_prompts_are_dropped_and_counted(tokenizer, kind: str) -> None:
    from datasets import Dataset

    records = _prompts(tokenizer)
    data = {"dataset": Dataset.from_list(records),
            "stream": Dataset.from_list(records).to_iterable_dataset(),
            "list": records}[kind]
    kept, report = limit_prompt_length(data, tokenizer, 64, "drop")
    kept = list(kept)  # a stream is filtered as it is read
    assert [r["id"] for r in kept] == [str(i) for i in range(20) if i % 4]
    assert (report.total, report.kept, report.dropped, report.truncated) == (20, 15, 5, 0)
    assert report.longest > 64 and "dropped 5 of 20 prompts over 64 tokens" in str(report)


@pytest.mark.parametrize("kind", ["dataset", "stream"])
def test_long_prompts_are_truncated_from_the_left(tokenizer, kind: str) -> None:
    from datasets import Dataset

    data = Dataset.from_list(_prompts(tokenizer))
    if kind == "stream":
        data = data.to_iterable_dataset()
    cut, report = limit_prompt_length(data, tokenizer, 64, "truncate")
    cut = list(cut)
    assert len(cut) == 20 and report.truncated == 5 and report.dropped == 0
    for record in cut:
        assert prompt_token_count(record["prompt"], tokenizer) <= 64
        assert record["prompt"].endswith("What is 2 + 3 * 4?")  # the question survives


def test_chat_prompts_are_measured_through_the_template(tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": " ".join(["Tell me more about tea."] * 40)}]
    full = prompt_token_count(messages, tokenizer)
    assert full > len(tokenizer(messages[1]["content"], add_special_tokens=False)["input_ids"])
    cut = truncate_prompt(messages, tokenizer, 48)
    assert cut is not None and cut[0] == messages[0]
    assert prompt_token_count(cut, tokenizer) <= 48
    assert truncate_prompt(messages, tokenizer, 5) is None  # the template alone is longer
    kept, report = limit_prompt_length([{"prompt": messages}], tokenizer, 5, "truncate")
    assert kept == [] and report.dropped == 1


def test_bad_mode_is_refused(tokenizer) -> None:
    with pytest.raises(ValueError, match="'drop' or 'truncate'"):
        limit_prompt_length([], tokenizer, 10, "cut")
