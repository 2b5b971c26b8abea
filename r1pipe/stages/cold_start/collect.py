"""Cold-start data: a few thousand readable long chains of thought, and where each came from.

The paper collects its cold-start data three ways, "using few-shot prompting with a long
CoT as an example, directly prompting models to generate detailed answers with reflection
and verification, gathering DeepSeek-R1-Zero outputs in a readable format, and refining
the results through post-processing by human annotators". r1pipe does each way as a
switchable step, plus an external dataset that can be added or used alone:

- `few_shot`: the question after a few worked exemplars in the cold-start format, each
  with reflection ("wait, let me check…") and a checked answer (the exemplars ship in
  `r1pipe/data/resources/cold_start_exemplars.jsonl`, two per built-in task);
- `direct`: the question with an instruction to reason step by step, reflect and verify;
- `r1_zero`: the R1-Zero model's answers under its own template, refined into the readable
  layout by rules and, when configured, rewritten by a refiner model (the annotators' part);
- `external`: records of a data source or artifact (`prompt` + `completion`, or `messages`).

Every sample is then put in the cold-start layout `|special_token|reasoning|special_token|
summary` by the same rules (`refine_by_rules`) and judged by the rejection-sampling filters
(`r1pipe.filters`): correct, one language, no code blocks, length bounds, no duplicates.
Each step leaves an artifact under the stage's `data/` and is skipped once complete:

    generated/<way>/     raw samples (`run_generation_job`: resumable, `--shard i/N`)
    generated/r1_zero-refined/   the refiner model's rewrites of correct R1-Zero samples
    filtered/<way>/      every sample in the cold-start layout, with its verdict and why
    samples/             the kept samples of every way: the SFT data

A kept record says which way produced it (`way`, `source`, `generator`, `refined_by`) and
why it passed (`verdict`, `filters`: the measured correctness, language share, tokens...).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from importlib import resources
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from r1pipe.config import DataRef, ModelRef, Section
from r1pipe.filters import FILTERS, FilterSettings, FilterSummary, apply_filters, dedup_key
from r1pipe.models import ModelSpec
from r1pipe.parsing import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    DEFAULT_SPECIAL_TOKEN,
    THINK_CLOSE,
    THINK_OPEN,
    completion_text,
    split_completion,
)

GENERATING_WAYS: tuple[str, ...] = ("few_shot", "direct", "r1_zero")

EXEMPLARS_RESOURCE = "cold_start_exemplars.jsonl"
Prompt = str | list[dict[str, str]]

FEW_SHOT_INSTRUCTION = (
    "Solve the problem. Reason step by step, stop to check your work and correct it when "
    "something is wrong, then end with a short summary that states the final answer.")

DIRECT_INSTRUCTION = (
    "{question}\n\n"
    "Solve this problem step by step, in detail. After each step, reflect on it: check the "
    "calculation and say so if something is wrong, then fix it. Before you finish, verify "
    "the final answer, for example by substituting it back or computing it another way. "
    "Write all of this reasoning inside <think> </think>, then give a short summary of the "
    "solution that ends with the final answer in \\boxed{}.")

REFINE_INSTRUCTION = (
    "Below is a problem and a correct but hard-to-read solution. Rewrite the solution so "
    "that it is easy to read: keep every reasoning step and the final answer, write it all "
    "in {language}, remove repetitions and stray tags, and use short paragraphs. Put the "
    "reasoning inside <think> </think>, then a short summary that ends with the final answer "
    "in \\boxed{}.\n\nProblem: {question}\n\nSolution:\n{solution}")


# ---------------------------------------------------------------------------------------
# Settings (the `collect:` section of the cold-start stage)
# ---------------------------------------------------------------------------------------


class WaySettings(Section):
    """What every generating way has: how many prompts, samples and tokens."""

    enabled: bool = True
    prompts: int = Field(500, gt=0, description="the first N records of `data` this way answers")
    samples_per_prompt: int = Field(2, ge=1)
    max_new_tokens: int | None = Field(None, gt=0, description="default: `generation:`")
    temperature: float | None = Field(None, ge=0, description="default: `generation:`")


class FewShotSettings(WaySettings):
    """(a) Few-shot prompting with long-CoT exemplars in the cold-start format."""

    exemplars: int = Field(2, ge=1, le=8, description="worked examples before the question")
    instruction: str = FEW_SHOT_INSTRUCTION


class DirectSettings(WaySettings):
    """(b) Direct prompting for detailed answers with reflection and verification."""

    instruction: str = Field(DIRECT_INSTRUCTION, description="`{question}` is replaced")

    @field_validator("instruction")
    @classmethod
    def _has_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("the instruction must contain {question}")
        return value


class R1ZeroSettings(WaySettings):
    """(c) The R1-Zero model's correct answers, refined into the readable layout.

    `model` is an input only while the way is enabled: a disabled way depends on nothing.
    """

    enabled: bool = False
    model: ModelRef | None = Field(None, description="the stage whose model answers "
                                   "(default when enabled: r1_zero)")
    refiner: ModelSpec | None = Field(
        None, description="a model that rewrites correct answers readably (Hub id, folder, "
        "GGUF, or an OpenAI-served name); null: rules only")
    refiner_instruction: str = Field(REFINE_INSTRUCTION, description="`{question}`, "
                                     "`{solution}` and `{language}` are replaced")
    refiner_max_new_tokens: int | None = Field(None, gt=0)
    language: str = Field("English", description="the language the refiner writes in")
    response_prefix: str | None = Field(
        None, description="text the R1-Zero model's answers start with: appended to its prompt "
        "and put back in front of each sample; default: the `response_prefix` of the stage "
        "named by `model` (so the model is asked the way it was trained)")

    @model_validator(mode="after")
    def _model_only_when_enabled(self) -> R1ZeroSettings:
        if not self.enabled:
            self.model = None
            self.refiner = None
        elif self.model is None:
            self.model = "r1_zero"
        return self


class CollectSettings(Section):
    """How cold-start samples are collected; each way can be switched off."""

    teacher: ModelSpec | None = Field(
        None, description="the model that answers ways few_shot and direct (Hub id, folder, "
        "GGUF, or a name served by an OpenAI-compatible `generation:` backend); default: the "
        "stage's `from` model")
    prompt_style: Literal["auto", "chat", "plain"] = Field(
        "auto", description="chat messages or plain text for the teacher and refiner; auto: "
        "chat when the model has a chat template (always with the openai backend)")
    chunk_size: int = Field(16, ge=1, description="prompts per generated shard (resume unit)")
    few_shot: FewShotSettings = Field(default_factory=FewShotSettings)
    direct: DirectSettings = Field(default_factory=DirectSettings)
    r1_zero: R1ZeroSettings = Field(default_factory=R1ZeroSettings)
    external: DataRef | None = Field(
        None, description="a data source or <stage>:<artifact> of finished samples "
        "(prompt + completion, or messages), filtered like the rest")

    def enabled_ways(self) -> list[str]:
        ways = [w for w in GENERATING_WAYS if getattr(self, w).enabled]
        return ways + (["external"] if self.external is not None else [])

    def generating(self) -> bool:
        return any(getattr(self, w).enabled for w in GENERATING_WAYS)


# ---------------------------------------------------------------------------------------
# Exemplars and prompts
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exemplar:
    """A worked example in the cold-start format: question, reasoning with reflection,
    summary, and the checked answer."""

    task: str
    prompt: str
    reasoning: str
    summary: str
    answer: str
    extra: dict[str, Any] = field(default_factory=dict)

    def completion(self, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
        from r1pipe.data.templates import format_completion

        return format_completion(self.reasoning, self.summary, "special_token", special_token)


@lru_cache(maxsize=1)
def exemplars() -> tuple[Exemplar, ...]:
    """The shipped exemplars (two per built-in task)."""
    text = resources.files("r1pipe.data").joinpath("resources", EXEMPLARS_RESOURCE).read_text(
        "utf-8")
    out = []
    for line in text.splitlines():
        if line.strip():
            raw = json.loads(line)
            known = {k: raw.pop(k) for k in ("task", "prompt", "reasoning", "summary", "answer")}
            out.append(Exemplar(**known, extra=raw))
    return tuple(out)


def choose_exemplars(record: Mapping[str, Any], count: int) -> list[Exemplar]:
    """`count` exemplars for a record: its own task's first (rotated by the record's id, so
    prompts see different ones), then the others; never the record's own question."""
    from r1pipe.generation.jobs import stable_hash

    pool = [e for e in exemplars() if e.prompt.strip() != str(record.get("prompt", "")).strip()]
    same = [e for e in pool if e.task == record.get("task")]
    other = [e for e in pool if e.task != record.get("task")]
    shift = stable_hash(record.get("id", record.get("prompt", "")))
    same = same[shift % len(same):] + same[:shift % len(same)] if same else []
    other = other[shift % len(other):] + other[:shift % len(other)] if other else []
    return (same + other)[:count]


def few_shot_prompt(record: Mapping[str, Any], settings: FewShotSettings, *, chat: bool,
                    special_token: str = DEFAULT_SPECIAL_TOKEN) -> Prompt:
    """(a): worked exemplars as earlier turns of the conversation, then the question."""
    chosen = choose_exemplars(record, settings.exemplars)
    question = str(record["prompt"])
    if chat:
        messages = [{"role": "system", "content": settings.instruction}]
        for ex in chosen:
            messages += [{"role": "user", "content": ex.prompt},
                         {"role": "assistant", "content": ex.completion(special_token)}]
        return [*messages, {"role": "user", "content": question}]
    shots = "".join(f"Problem: {ex.prompt}\nSolution: {ex.completion(special_token)}\n\n"
                    for ex in chosen)
    return f"{settings.instruction}\n\n{shots}Problem: {question}\nSolution:"


def direct_prompt(record: Mapping[str, Any], settings: DirectSettings, *, chat: bool) -> Prompt:
    """(b): the question with the instruction to reason, reflect and verify."""
    text = settings.instruction.replace("{question}", str(record["prompt"]))
    return [{"role": "user", "content": text}] if chat else f"{text}\n\n"


def r1_zero_prompt(record: Mapping[str, Any], prefix: str = "", template: str = "r1_zero",
                   system_prompt: str | None = None) -> Prompt:
    """(c): the prompt the R1-Zero model was trained on (the paper's template unless its
    stage used another, e.g. the instruction as a chat system prompt for an instruct model),
    and the answer's opening (`response_prefix`) if it was trained with one. Asked any other
    way, the model answers as it never learned to and few answers survive the filters."""
    from r1pipe.data.templates import render_prompt, with_response_prefix

    return with_response_prefix(render_prompt(dict(record), template, None, system_prompt),
                                prefix)


def refiner_prompt(record: Mapping[str, Any], settings: R1ZeroSettings, *, chat: bool) -> Prompt:
    """The refiner model's task: rewrite one correct R1-Zero answer readably."""
    text = (settings.refiner_instruction.replace("{question}", str(record["prompt"]))
            .replace("{solution}", str(record["raw"])).replace("{language}", settings.language))
    return [{"role": "user", "content": text}] if chat else f"{text}\n\nRewritten solution:\n"


# ---------------------------------------------------------------------------------------
# Rules: any answer -> the cold-start layout
# ---------------------------------------------------------------------------------------

_STRAY = re.compile("|".join(re.escape(t) for t in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN,
                                                    ANSWER_CLOSE)))
_SUMMARY_MARK = re.compile(
    r"^[ \t]*(?:\*\*|#+[ \t]*)?(?:summary|final answer|conclusion)(?:\*\*)?[ \t]*[:：]",
    re.IGNORECASE | re.MULTILINE)
_ANSWER_PARAGRAPH = re.compile(
    r"\n[ \t]*\n(?=[ \t]*(?:(?:so|therefore|thus|hence),?[ \t]+)?(?:the[ \t]+)?(?:final[ \t]+)?"
    r"answer[ \t]+is\b)", re.IGNORECASE)
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SPACE_RUNS = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)")
_SHORT_ANSWER_CHARS = 120


def _tidy(text: str, special_token: str) -> str:
    """Stray tags and separators removed; runs of spaces inside a line, trailing spaces and
    runs of blank lines collapsed."""
    text = _STRAY.sub("", text.replace(special_token, ""))
    text = "\n".join(_SPACE_RUNS.sub(" ", line.rstrip()) for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", text).strip()


def refine_by_rules(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
    """An answer in any of the usual layouts rewritten as `|tok|reasoning|tok|summary`.

    Reads `<think>r</think> <answer>a</answer>` (R1-Zero: the summary becomes "The answer
    is \\boxed{a}."), `<think>r</think> summary`, the cold-start layout itself (unchanged
    but tidied), and plain text whose last "Summary:"/"Final answer:" line, or else whose
    last paragraph "(So) the answer is ...", starts the summary. Text with no recognisable
    reasoning is returned tidied but unchanged, so the `format` filter rejects it.
    """
    from r1pipe.data.templates import format_completion

    parsed = split_completion(text, special_token)
    reasoning = parsed.reasoning
    if parsed.answer is not None:
        answer = parsed.answer.strip()
        short = len(answer) <= _SHORT_ANSWER_CHARS and "\n" not in answer
        summary = (f"The answer is \\boxed{{{answer}}}." if short and "\\boxed" not in answer
                   else answer)
    else:
        summary = parsed.summary
    if reasoning is None:
        marks = list(_SUMMARY_MARK.finditer(text))
        paragraphs = list(_ANSWER_PARAGRAPH.finditer(text))
        if marks:
            reasoning, summary = text[:marks[-1].start()], text[marks[-1].end():]
        elif paragraphs:
            reasoning, summary = text[:paragraphs[-1].start()], text[paragraphs[-1].end():]
        else:
            return _tidy(text, special_token)
    reasoning, summary = _tidy(reasoning, special_token), _tidy(summary or "", special_token)
    if not reasoning or not summary:
        return _tidy(text, special_token)
    return format_completion(reasoning, summary, "special_token", special_token)


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------

PROMPT_FIELDS = ("answer", "task", "task_type", "difficulty", "numbers", "target", "language",
                 "category", "reference", "verification_info", "public_test_cases",
                 "private_test_cases", "metadata")
"""Columns of a prompt record carried into its samples (the filters read them; code samples
are checked against their test cases)."""


def sample_records(record: Mapping[str, Any], completions: list[Any], *, way: str,
                   generator: str, prefix: str = "") -> list[dict[str, Any]]:
    """The raw samples of one prompt: id `<prompt id>-<way>-s<k>`, the question, the text
    (after `prefix`, the part of the answer the prompt already wrote)."""
    prompt_id = str(record["id"])
    carried = {k: record[k] for k in PROMPT_FIELDS if record.get(k) is not None}
    return [{"id": f"{prompt_id}-{way}-s{k}", "prompt_id": prompt_id, "way": way, "sample": k,
             "prompt": str(record["prompt"]), "raw": prefix + c.text, "token_count": int(c.token_count),
             "finish_reason": c.finish_reason, "generator": generator, **carried}
            for k, c in enumerate(completions)]


def refined_records(record: Mapping[str, Any], completions: list[Any], *,
                    refiner: str) -> list[dict[str, Any]]:
    """A correct R1-Zero sample with the refiner model's rewrite as its new raw text."""
    (c,) = completions
    return [{**record, "raw": c.text, "r1_zero_raw": record["raw"],
             "finish_reason": c.finish_reason, "token_count": int(c.token_count),
             "refined_by": [f"refiner:{refiner}"]}]


def external_records(records: Iterable[Mapping[str, Any]], name: str) -> Iterator[dict[str, Any]]:
    """Records of an external source as raw samples of way `external`."""
    from r1pipe.data.sft import sft_example

    for index, record in enumerate(records):
        example = sft_example(record, chat=True)
        users = [m["content"] for m in example["prompt"] if m["role"] == "user"]
        record_id = str(record.get("id") or f"{name}-{index:06d}")
        carried = {k: record[k] for k in PROMPT_FIELDS if record.get(k) is not None}
        yield {"id": record_id, "prompt_id": record_id, "way": "external", "sample": 0,
               "prompt": users[-1] if users else "", "raw": completion_text(example["completion"]),
               "finish_reason": record.get("finish_reason"), "generator": name, **carried}


def readable(record: Mapping[str, Any], *, special_token: str,
             count_tokens: Callable[[str], int]) -> dict[str, Any]:
    """A raw sample in the cold-start layout, ready for the filters: `completion` is the
    rule-refined text, `token_count` its length in the trained model's tokens."""
    completion = refine_by_rules(str(record.get("raw") or ""), special_token)
    return {**record, "completion": completion, "token_count": count_tokens(completion),
            "refined_by": [*(record.get("refined_by") or []), "rules"]}


def sft_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """A kept sample as SFT data (TRL's conversational prompt/completion), with its
    provenance and the filters' measurements."""
    drop = {"prompt", "completion", "raw", "r1_zero_raw", "failed", "removed_by"}
    return {"id": record["id"], "prompt": [{"role": "user", "content": record["prompt"]}],
            "completion": [{"role": "assistant", "content": record["completion"]}],
            "source": f"{record['way']}:{record.get('generator')}",
            **{k: v for k, v in record.items() if k not in drop}}


# ---------------------------------------------------------------------------------------
# Counting what the filters did, way by way
# ---------------------------------------------------------------------------------------


@dataclass
class Collection:
    """Per-way filter summaries and the total; serialisable into the artifact's manifest."""

    ways: dict[str, FilterSummary] = field(default_factory=dict)

    def add(self, record: Mapping[str, Any]) -> None:
        self.ways.setdefault(record["way"], FilterSummary()).add(dict(record))

    @property
    def total(self) -> int:
        return sum(s.total for s in self.ways.values())

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.ways.values())

    def removed(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for name in FILTERS:
            n = sum(s.removed[name] for s in self.ways.values())
            if n:
                out[name] = n
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"generated": self.total, "kept": self.kept, "removed_by": self.removed(),
                "ways": {w: s.as_dict() for w, s in self.ways.items()}}

    def explain_empty(self) -> str:
        """Why nothing is left: how many samples each way produced and what removed them."""
        if not self.total:
            return "no samples were generated or read"
        parts = []
        for way, summary in self.ways.items():
            removed = ", ".join(f"{name} {n:,}" for name, n in summary.removed.most_common())
            parts.append(f"{way}: {summary.total:,} samples" +
                         (f", removed by {removed}" if removed else ""))
        removed = ", ".join(f"{name} {n:,}" for name, n in self.removed().items())
        return f"{self.total:,} samples, none kept; removed by {removed} ({'; '.join(parts)})"


def _answer_key(record: Mapping[str, Any]) -> bytes:
    return dedup_key(f"{record['prompt']}\x00{record['completion']}")


def dedup_across(records: Iterable[dict[str, Any]], seen: set[bytes]) -> Iterator[dict[str, Any]]:
    """Mark a kept sample `duplicate` when an earlier one (of any way) kept the same answer
    to the same question; the filters alone compare the samples of one prompt in one way."""
    for record in records:
        if record.get("verdict") == "kept":
            key = _answer_key(record)
            if key in seen:
                record = {**record, "verdict": "rejected", "removed_by": "duplicate",
                          "failed": ["duplicate"]}
            seen.add(key)
        yield record


def remember_kept(records: Iterable[Mapping[str, Any]], seen: set[bytes]) -> None:
    """Add the kept samples of an already filtered shard to `seen` (on resume)."""
    seen.update(_answer_key(r) for r in records if r.get("verdict") == "kept")


def filter_way(records: Iterable[dict[str, Any]], settings: FilterSettings, *,
               special_token: str, count_tokens: Callable[[str], int],
               seen: set[bytes]) -> Iterator[dict[str, Any]]:
    """Raw samples of one way -> every sample in the cold-start layout with its verdict,
    duplicates of answers kept earlier (`seen`, updated) rejected."""
    ready = (readable(r, special_token=special_token, count_tokens=count_tokens)
             for r in records)
    return dedup_across(apply_filters(ready, settings, special_token=special_token), seen)


def kept_stream(filtered: Iterable[Iterable[dict[str, Any]]],
                collection: Collection) -> Iterator[dict[str, Any]]:
    """The SFT samples of every way in order, counting every verdict into `collection`."""
    for records in filtered:
        for record in records:
            collection.add(record)
            if record["verdict"] == "kept":
                yield sft_sample(record)


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    return partial(_count, tokenizer)


def _count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])
