"""Keep prompts within a token budget, and say how many did not fit.

TRL 1.16's GRPOConfig has no `max_prompt_length`, so an over-long prompt would eat the
generation budget (or the memory) silently. r1pipe checks the *rendered* prompt (after the
template) against the tokenizer and either drops it or truncates it, keeping the end by
default because that is where the question and the "Assistant:" cue are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datasets import Dataset, IterableDataset

Mode = Literal["drop", "truncate"]
Side = Literal["left", "right"]

_BATCH = 1_000


@dataclass
class PromptLengthReport:
    """What the length limit did. For a stream, the counts grow as the stream is read."""

    max_tokens: int
    mode: str
    total: int = 0
    kept: int = 0
    dropped: int = 0
    truncated: int = 0
    longest: int = 0  # longest prompt seen, in tokens, before the limit

    def as_dict(self) -> dict[str, Any]:
        """For stage summaries and metrics."""
        return asdict(self)

    def __str__(self) -> str:
        action = "dropped" if self.mode == "drop" else "truncated"
        count = self.dropped if self.mode == "drop" else self.truncated
        extra = f" (and dropped {self.dropped} that could not be cut)" if (
            self.mode == "truncate" and self.dropped
        ) else ""
        return (
            f"{action} {count} of {self.total} prompts over {self.max_tokens} tokens{extra}; "
            f"longest was {self.longest}"
        )


def _ids(result: Any) -> list[int]:
    """Token ids from whatever `apply_chat_template(tokenize=True)` returned."""
    if isinstance(result, dict) or hasattr(result, "keys"):
        result = result["input_ids"]
    if result and isinstance(result[0], list):
        result = result[0]
    return list(result)


def prompt_token_count(
    prompt: str | list[dict[str, Any]], tokenizer: Any, add_special_tokens: bool = False
) -> int:
    """Tokens of one rendered prompt; a messages list is measured through the chat template."""
    if isinstance(prompt, str):
        return len(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    encoded = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    return len(_ids(encoded))


def _batch_counts(prompts: list[Any], tokenizer: Any, add_special_tokens: bool) -> list[int]:
    if all(isinstance(p, str) for p in prompts):
        encoded = tokenizer(prompts, add_special_tokens=add_special_tokens)["input_ids"]
        return [len(ids) for ids in encoded]
    return [prompt_token_count(p, tokenizer, add_special_tokens) for p in prompts]


def _cut_text(text: str, tokenizer: Any, budget: int, side: Side) -> str:
    """`text` cut to about `budget` tokens, from the left or the right."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if budget <= 0:
        return ""
    if len(ids) <= budget:
        return text
    kept = ids[-budget:] if side == "left" else ids[:budget]
    return tokenizer.decode(kept, skip_special_tokens=False)


def truncate_prompt(
    prompt: str | list[dict[str, Any]],
    tokenizer: Any,
    max_tokens: int,
    side: Side = "left",
    add_special_tokens: bool = False,
) -> str | list[dict[str, Any]] | None:
    """The prompt cut to fit `max_tokens`, or None if it cannot be made to fit.

    For a conversation only the last user turn is cut: the system prompt and the chat
    template's own tokens are what the model needs to answer at all.
    """
    for _ in range(4):  # decode/encode round trips can shift a token or two
        count = prompt_token_count(prompt, tokenizer, add_special_tokens)
        excess = count - max_tokens
        if excess <= 0:
            return prompt
        if isinstance(prompt, str):
            budget = len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) - excess
            prompt = _cut_text(prompt, tokenizer, budget, side)
            continue
        messages = [dict(m) for m in prompt]
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            return None
        last = users[-1]
        content = str(messages[last].get("content", ""))
        own = len(tokenizer(content, add_special_tokens=False)["input_ids"])
        if own - excess <= 0:
            return None
        messages[last]["content"] = _cut_text(content, tokenizer, own - excess, side)
        prompt = messages
    fits = prompt_token_count(prompt, tokenizer, add_special_tokens) <= max_tokens
    return prompt if fits else None


def limit_prompt_length(
    data: Dataset | IterableDataset | Iterable[dict[str, Any]],
    tokenizer: Any,
    max_tokens: int,
    mode: Mode = "drop",
    *,
    column: str = "prompt",
    side: Side = "left",
    add_special_tokens: bool = False,
) -> tuple[Any, PromptLengthReport]:
    """Drop or truncate records whose prompt is over `max_tokens` tokens.

    Returns the data of the same kind (a `Dataset` is filtered now and the report is
    final; an `IterableDataset` or other iterable is filtered lazily and the report fills in
    as it is read) and the report.
    """
    if mode not in ("drop", "truncate"):
        raise ValueError(f"prompt length mode must be 'drop' or 'truncate', not {mode!r}")
    if max_tokens <= 0:
        raise ValueError(f"max prompt tokens must be positive, not {max_tokens}")
    report = PromptLengthReport(max_tokens=max_tokens, mode=mode)

    from datasets import Dataset, IterableDataset

    if isinstance(data, Dataset):
        return _limit_dataset(data, tokenizer, report, column, side, add_special_tokens), report

    def limited(records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            report.total += 1
            count = prompt_token_count(record[column], tokenizer, add_special_tokens)
            report.longest = max(report.longest, count)
            if count <= max_tokens:
                report.kept += 1
                yield record
                continue
            if mode == "drop":
                report.dropped += 1
                continue
            cut = truncate_prompt(record[column], tokenizer, max_tokens, side, add_special_tokens)
            if cut is None:
                report.dropped += 1
                continue
            report.truncated += 1
            report.kept += 1
            yield {**record, column: cut}

    if isinstance(data, IterableDataset):
        source = data
        return IterableDataset.from_generator(
            lambda: limited(source), features=source.features
        ), report
    if isinstance(data, list):
        return list(limited(data)), report
    return limited(data), report


def _limit_dataset(
    data: Dataset,
    tokenizer: Any,
    report: PromptLengthReport,
    column: str,
    side: Side,
    add_special_tokens: bool,
) -> Dataset:
    over: list[int] = []
    for start in range(0, len(data), _BATCH):
        prompts = data[start : start + _BATCH][column]
        for offset, count in enumerate(_batch_counts(prompts, tokenizer, add_special_tokens)):
            report.longest = max(report.longest, count)
            if count > report.max_tokens:
                over.append(start + offset)
    report.total = len(data)
    if not over:
        report.kept = report.total
        return data
    if report.mode == "drop":
        report.dropped = len(over)
        report.kept = report.total - report.dropped
        over_set = set(over)
        return data.select([i for i in range(len(data)) if i not in over_set])
    cuts: dict[int, Any] = {}
    for i in over:
        cuts[i] = truncate_prompt(
            data[i][column], tokenizer, report.max_tokens, side, add_special_tokens
        )
    unfit = {i for i, cut in cuts.items() if cut is None}
    report.dropped = len(unfit)
    report.truncated = len(cuts) - len(unfit)
    report.kept = report.total - report.dropped

    def apply(record: dict[str, Any], index: int) -> dict[str, Any]:
        cut = cuts.get(index)
        return {column: cut if cut is not None else record[column]}

    if report.truncated:
        data = data.map(apply, with_indices=True)
    if unfit:
        data = data.select([i for i in range(len(data)) if i not in unfit])
    return data
