"""Supervised fine-tuning examples from the records stages write.

Every SFT stage (cold start, distillation) trains on records that carry a question and an
answer in one of three shapes: `prompt` + `completion` (strings, or chat messages as TRL
writes them), or `messages` (a conversation ending with the assistant's turn). TRL's
SFTTrainer computes the loss on the completion only when it is given *prompt/completion*
pairs, so every shape is turned into that one:

- chat models get `prompt` as messages and `completion` as one assistant message, so TRL
  applies the model's own chat template, whose end-of-turn token then closes the completion
  and is trained (the model learns to stop);
- a model without a chat template gets plain text (`prompt` ending in a newline), and TRL
  appends the EOS token to the completion.

A string `prompt` is the question as the user asked it, not a prompt already rendered with
a template: it becomes the user's message. Records marked `verdict: rejected` (the audit
trail of a filter step) are never trained on. The dataset is built by streaming the records
into Arrow files under a cache folder, so an artifact of any size costs flat memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.parsing import completion_text

if TYPE_CHECKING:
    from datasets import Dataset

    from r1pipe.config import PipelineConfig

Messages = list[dict[str, str]]


class SFTDataError(ValueError):
    """A record that cannot be turned into a prompt/completion pair; names the record."""


def _messages(value: Any) -> Messages | None:
    if isinstance(value, (list, tuple)) and all(isinstance(m, Mapping) for m in value):
        return [{"role": str(m.get("role", "")), "content": completion_text(m.get("content", ""))}
                for m in value]
    return None


def _split_conversation(messages: Messages, where: str) -> tuple[Messages, Messages]:
    """(every turn before the last assistant turn, [that turn])."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 1:
        raise SFTDataError(f"{where}: `messages` needs a user turn followed by an assistant turn")
    return messages[:last], [messages[last]]


def sft_example(record: Mapping[str, Any], *, chat: bool = True) -> dict[str, Any]:
    """One record as TRL's prompt/completion pair (conversational when `chat`)."""
    where = f"record {record.get('id', '?')!r}"
    prompt: Any = record.get("prompt")
    completion: Any = record.get("completion")
    if completion is None:
        conversation = _messages(record.get("messages")) or _messages(prompt)
        if conversation is None:
            raise SFTDataError(f"{where}: needs `prompt` and `completion`, or `messages`")
        prompt, completion = _split_conversation(conversation, where)
    prompt_messages = _messages(prompt)
    if prompt_messages is None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise SFTDataError(f"{where}: `prompt` must be a question or a list of messages")
        prompt_messages = [{"role": "user", "content": prompt}]
    completion_messages = _messages(completion)
    if completion_messages is None:
        if not isinstance(completion, str):
            raise SFTDataError(f"{where}: `completion` must be text or a list of messages")
        completion_messages = [{"role": "assistant", "content": completion}]
    if not completion_text(completion_messages).strip():
        raise SFTDataError(f"{where}: the completion is empty")
    if chat:
        return {"prompt": prompt_messages, "completion": completion_messages}
    if len(prompt_messages) != 1 or prompt_messages[0]["role"] != "user":
        raise SFTDataError(f"{where}: a conversation needs a model with a chat template; this "
                           "model has none (give it one with `trainer: {chat_template_path: ...}`)")
    return {"prompt": prompt_messages[0]["content"].rstrip() + "\n",
            "completion": completion_text(completion_messages)}


def matches(record: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    """Whether a record passes a `where:` filter: each field equals the value, or one of the
    values when a list is given (`{task_type: reasoning}`, `{source: [a, b]}`)."""
    if record.get("verdict") == "rejected":
        return False
    for key, wanted in (where or {}).items():
        value = record.get(key)
        if isinstance(wanted, (list, tuple)):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def stream_records(value: str, pipeline: PipelineConfig | None) -> Iterator[Mapping[str, Any]]:
    """Stream the records of an artifact folder, a source under `data:`, or JSONL files."""
    from r1pipe.artifacts import MANIFEST, iter_records

    path = Path(value)
    if (path / MANIFEST).is_file():
        yield from iter_records(path)
    elif pipeline is not None and value in pipeline.data:
        from r1pipe.data.prepare import load_input

        yield from load_input(pipeline, value)
    elif path.exists():
        from datasets import load_dataset

        files = {"data_files": str(path)} if path.is_file() else {"data_dir": str(path)}
        yield from load_dataset("json", split="train", **files)
    else:
        raise FileNotFoundError(f"SFT data {value!r} is neither an artifact folder, a JSONL "
                                "file, nor a source under `data:`")


def _generate(value: str, where: dict[str, Any] | None, chat: bool, identity: str,
              pipeline: Any) -> Iterator[dict[str, Any]]:
    """The rows of the SFT dataset. `identity` only keys the `datasets` cache."""
    del identity
    for record in stream_records(value, pipeline):
        if matches(record, where):
            yield sft_example(record, chat=chat)


def _identity(value: str) -> str:
    """What the cached dataset depends on: the artifact's shard hashes, or file stamps."""
    from r1pipe.artifacts import MANIFEST, fingerprint, read_json

    path = Path(value)
    manifest = read_json(path / MANIFEST)
    if manifest is not None:
        return fingerprint(manifest.get("shards", {}))
    if path.exists():
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        return fingerprint([(str(f), f.stat().st_size, f.stat().st_mtime_ns)
                            for f in files if f.is_file()])
    return fingerprint(value)


def sft_dataset(value: str, *, chat: bool, cache_dir: str | Path,
                where: Mapping[str, Any] | None = None,
                pipeline: PipelineConfig | None = None) -> Dataset:
    """A prompt/completion `datasets.Dataset` of the records of `value` that pass `where`.

    `value` is a resolved data input: an artifact folder (`<stage>:<artifact>`), the name of
    a source under the pipeline's `data:`, or a JSONL file/folder. Raises `SFTDataError`
    when no record is left.
    """
    from datasets import Dataset

    where = dict(where or {})
    source_pipeline = pipeline if pipeline is not None and value in pipeline.data else None
    if not any(matches(r, where) for r in stream_records(value, source_pipeline)):
        what = f" matching {where}" if where else ""
        raise SFTDataError(f"SFT data {value!r} has no records{what} to train on")
    try:
        data = Dataset.from_generator(
            _generate, cache_dir=str(cache_dir),
            gen_kwargs={"value": value, "where": where, "chat": chat,
                        "identity": _identity(value), "pipeline": source_pipeline})
    except Exception as exc:  # datasets wraps generator errors; show the real one
        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, SFTDataError):
            cause = cause.__cause__
        if isinstance(cause, (SFTDataError, FileNotFoundError)):
            raise cause from None
        raise
    return data
