"""Prompt templates and completion formats of the R1 stages.

- **Prompts.** R1-Zero trains a *base* model, so its prompt is the paper's plain-text
  template, word for word (`r1_zero`). Later stages and instruct models use the model's own
  chat template (`chat`), optionally with a system prompt. `plain` is the bare question.
- **Completions.** Cold-start and rejection-sampling data are written as
  `|special_token|reasoning|special_token|summary` (`special_token`, the token
  configurable); R1-Zero's layout is `<think>…</think> <answer>…</answer>`
  (`think_answer`); the released R1 models write `<think>…</think>` then the summary
  (`think`).
- **Parsing** goes through `r1pipe.parsing`, the one parser the rewards and filters use, so
  the inverse of `format_completion` here is exactly what gets rewarded there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from r1pipe.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DEFAULT_SPECIAL_TOKEN,
    THINK_CLOSE,
    THINK_OPEN,
    ParsedCompletion,
    completion_text,
    final_response,
    split_completion,
)

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

Template = Literal["r1_zero", "chat", "plain"]
CompletionStyle = Literal["special_token", "think_answer", "think"]
TEMPLATES: tuple[str, ...] = ("r1_zero", "chat", "plain")
COMPLETION_STYLES: tuple[str, ...] = ("special_token", "think_answer", "think")
Messages = list[dict[str, str]]

R1_ZERO_INSTRUCTION = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning "
    "process here </think> <answer> answer here </answer>."
)
"""The instruction part of the R1-Zero template; also usable as a chat system prompt."""

R1_ZERO_TEMPLATE = R1_ZERO_INSTRUCTION + " User: {prompt}. Assistant:"
"""The R1-Zero prompt template exactly as the paper gives it."""

__all__ = [
    "COMPLETION_STYLES",
    "R1_ZERO_INSTRUCTION",
    "R1_ZERO_TEMPLATE",
    "TEMPLATES",
    "ParsedCompletion",
    "completion_text",
    "format_completion",
    "parse_completion",
    "reasoning_and_answer",
    "render_dataset",
    "render_prompt",
    "to_messages",
    "with_response_prefix",
]


def _question(prompt: str | Messages) -> str:
    """The user's question: the prompt itself, or the last user turn of a conversation."""
    if isinstance(prompt, str):
        return prompt
    for message in reversed(prompt):
        if message.get("role") == "user":
            return completion_text(message.get("content", ""))
    raise ValueError("a prompt given as messages has no user message")


def to_messages(prompt: str | Messages, system_prompt: str | None = None) -> Messages:
    """A prompt as chat messages (TRL's conversational format), with an optional system turn.

    A prompt that is already a conversation keeps its turns; its own system message wins
    over `system_prompt`.
    """
    if isinstance(prompt, str):
        messages: Messages = [{"role": "user", "content": prompt}]
    else:
        messages = [dict(m) for m in prompt]
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system_prompt})
    return messages


def with_response_prefix(prompt: str | Messages, prefix: str) -> str | Messages:
    """The prompt with the answer's opening already written (`response_prefix`).

    A text prompt gets it appended; a conversation gets it as the start of the assistant's
    turn (a last `assistant` message that the model continues: chat templates render it
    with `continue_final_message`, see `r1pipe.generation.base.render_prompt`). Why: a
    small instruct model asked for `<think>` tags in its own chat format almost never
    writes the first one, so the format reward never varies; written for it, the model
    goes on to close it now and then (measured on SmolLM2-135M-Instruct, docs/stages.md)."""
    if not prefix:
        return prompt
    if isinstance(prompt, str):
        return prompt + prefix
    return [*[dict(m) for m in prompt], {"role": "assistant", "content": prefix}]


def render_prompt(
    record: Mapping[str, Any] | str,
    template: Template | str = "r1_zero",
    tokenizer: Any = None,
    system_prompt: str | None = None,
) -> str | Messages:
    """The prompt a stage feeds the model for one record (or a bare prompt string).

    - `r1_zero`: the paper's template around the question (the system prompt, if any, is
      put in front, since a base model has no system turn);
    - `chat`: the model's chat template with the generation prompt appended when a
      tokenizer is given; without one, the messages list, which TRL trainers accept as a
      conversational prompt and template themselves;
    - `plain`: the question alone (after the system prompt, if any).
    """
    prompt = record if isinstance(record, str) else record["prompt"]
    if template == "chat":
        messages = to_messages(prompt, system_prompt)
        if tokenizer is None:
            return messages
        if not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
            raise ValueError(
                f"tokenizer {name!r} has no chat template; use template 'r1_zero' or 'plain' "
                "for a base model"
            )
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    question = _question(prompt)
    if template == "r1_zero":
        # The template supplies the full stop after the question; one the question already
        # ends with would make "..": drop that one (a "?" stays).
        text = R1_ZERO_TEMPLATE.format(prompt=question.rstrip().removesuffix("."))
    elif template == "plain":
        text = question
    else:
        raise ValueError(f"unknown prompt template {template!r}; choose from {list(TEMPLATES)}")
    return f"{system_prompt}\n\n{text}" if system_prompt else text


def render_dataset(
    data: Dataset | IterableDataset,
    template: Template | str = "r1_zero",
    tokenizer: Any = None,
    system_prompt: str | None = None,
    raw_column: str | None = "question",
) -> Dataset | IterableDataset:
    """Replace the `prompt` column by its rendered form, keeping the original in `raw_column`.

    The raw question is kept because rejection sampling and evaluation write it out, and
    reward functions receive every column.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown prompt template {template!r}; choose from {list(TEMPLATES)}")

    def render(record: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"prompt": render_prompt(record, template, tokenizer, system_prompt)}
        if raw_column:
            out[raw_column] = record["prompt"]
        return out

    return data.map(render)


def format_completion(
    reasoning: str | None,
    summary: str,
    style: CompletionStyle | str = "special_token",
    special_token: str = DEFAULT_SPECIAL_TOKEN,
) -> str:
    """A training target in the layout of a stage.

    A simple query ("hello") gets no chain of thought: pass `reasoning=None` or "" and the
    reasoning section is left empty rather than left out, so every target has one layout.
    """
    thought = (reasoning or "").strip()
    summary = summary.strip()
    if style == "special_token":
        if not special_token:
            raise ValueError("the special_token completion style needs a non-empty token")
        return f"{special_token}{thought}{special_token}{summary}"
    if style == "think_answer":
        return f"{THINK_OPEN}\n{thought}\n{THINK_CLOSE}\n{ANSWER_OPEN}\n{summary}\n{ANSWER_CLOSE}"
    if style == "think":
        return f"{THINK_OPEN}\n{thought}\n{THINK_CLOSE}\n\n{summary}"
    raise ValueError(f"unknown completion style {style!r}; choose from {list(COMPLETION_STYLES)}")


def parse_completion(
    completion: Any, special_token: str = DEFAULT_SPECIAL_TOKEN
) -> ParsedCompletion:
    """The inverse of `format_completion`: reasoning, `<answer>` and summary of a completion.

    Accepts a string or TRL's list of messages; the shared parser decides, so this agrees
    with the rewards.
    """
    return split_completion(completion_text(completion), special_token)


def reasoning_and_answer(
    completion: Any, special_token: str = DEFAULT_SPECIAL_TOKEN
) -> tuple[str | None, str]:
    """(reasoning, final answer shown to the user) of a completion, whitespace trimmed.

    The answer is the `<answer>` content, else the summary after the reasoning, else the
    whole text; a completion cut off inside its reasoning has answered "".
    """
    text = completion_text(completion)
    parsed = split_completion(text, special_token)
    reasoning = parsed.reasoning.strip() if parsed.reasoning is not None else None
    return reasoning, final_response(text, special_token)
