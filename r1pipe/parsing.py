"""Split a model completion into its reasoning and its final answer.

One parser serves the rewards, the rejection filters and the templates, so that "what the
model reasoned" and "what it answered" mean the same thing everywhere. It never raises on
model output: malformed tags simply leave a part empty.

The tags are found with `str.find`, not regular expressions: a lazy `<think>(.*?)</think>`
rescans the rest of the text from every `<think>` that has no closing tag, which is
quadratic on adversarial output (a megabyte of `<think>`), and rewards run on every sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_SPECIAL_TOKEN = "|special_token|"

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


@dataclass(frozen=True)
class ParsedCompletion:
    """A completion cut into parts; `None` means the part is absent, not empty."""

    reasoning: str | None
    answer: str | None
    summary: str | None  # the cold-start format's closing summary


def completion_text(completion: Any) -> str:
    """Text of a completion as TRL passes it: a string, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", "")
        if content is None:
            return ""
        return content if isinstance(content, str) else str(content)
    if isinstance(completion, (list, tuple)):
        return "".join(
            completion_text(m)
            for m in completion
            if not isinstance(m, dict) or m.get("role", "assistant") == "assistant"
        )
    return "" if completion is None else str(completion)


def find_enclosed(text: str, open_tag: str, close_tag: str, start: int = 0) -> tuple[int, int] | None:
    """`(begin, end)` of the content of the first `open_tag … close_tag` pair, or None.

    Equivalent to the first match of `open_tag(.*?)close_tag` (DOTALL), in linear time.
    """
    begin = text.find(open_tag, start)
    if begin < 0:
        return None
    begin += len(open_tag)
    end = text.find(close_tag, begin)
    if end < 0:
        return None
    return begin, end


def split_completion(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> ParsedCompletion:
    """Find the reasoning (`<think>` or the cold-start section) and the answer.

    Accepted shapes: `<think>r</think> <answer>a</answer>`; `<think>r</think> summary`;
    `|special_token|r|special_token|summary`. A completion that opens `<think>` but never
    closes it has reasoning and no answer (a truncated generation).
    """
    reasoning: str | None = None
    summary: str | None = None
    think = find_enclosed(text, THINK_OPEN, THINK_CLOSE)
    if think:
        reasoning = text[think[0]:think[1]]
        summary = text[think[1] + len(THINK_CLOSE):]
    elif special_token and (first := text.find(special_token)) >= 0 and (
        second := text.find(special_token, first + len(special_token))
    ) >= 0:
        reasoning = text[first + len(special_token):second]
        summary = text[second + len(special_token):]
    elif THINK_OPEN in text and THINK_CLOSE not in text:
        reasoning = text.split(THINK_OPEN, 1)[1]
    region = summary if summary is not None else text
    answer_span = find_enclosed(region, ANSWER_OPEN, ANSWER_CLOSE)
    answer = region[answer_span[0]:answer_span[1]] if answer_span else None
    if summary is not None:
        summary = summary.strip() or None
    return ParsedCompletion(reasoning=reasoning, answer=answer, summary=summary)


def final_response(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
    """What the user is shown: the answer, the summary after the reasoning, or the whole text.

    The paper judges helpfulness on this part only. A completion cut off inside its
    reasoning has shown the user nothing: "".
    """
    parsed = split_completion(text, special_token)
    if parsed.answer is not None:
        return parsed.answer.strip()
    if parsed.summary is not None:
        return parsed.summary
    if parsed.reasoning is not None:
        return ""
    return text.strip()
