"""Rejection-sampling filters: keep only correct, readable samples, and say why others went.

The paper's third stage samples several answers per prompt from the converged RL model and
keeps "only the correct ones", then filters out chains of thought "with mixed languages,
long paragraphs, and code blocks". r1pipe adds the checks any large sampling run needs:
truncated generations, the `|special_token|reasoning|special_token|summary` layout, length
bounds, duplicates, and at most k samples per prompt.

Code answers (records with tests in any layout the `code` reward reads: open-r1's
`verification_info`, LiveCodeBench's `public_test_cases`/`private_test_cases`, APPS's
`input_output`, MBPP's `test_list`, HumanEval's or pytest-style `test`) are correct when
the program of their summary
passes every test, run in the `code` reward's sandbox (`code_tests:` sets its parameters);
a failing one is removed by `tests`. Their code lives in the summary, so the `code_block`
filter, which is about code inside the chain of thought of a math or prose answer, does
not apply to them.

Every check is a plain function over one record or one text, built on the detectors of
`r1pipe.rewards` (the same code the RL rewards run, so "correct" and "mixed language" mean
the same thing in RL and here). `apply_filters` streams records through them and annotates
every record instead of dropping it:

    verdict    "kept" | "rejected"
    removed_by the first failing filter in `FILTERS` order (None when kept)
    failed     every filter the record failed (a record can fail several)
    filters    {name: measured value}: correctness, tokens, language share, paragraph words...
    reward     the correctness score (1.0 / 0.0, a judge's verdict, or None if unknown)

Keeping the rejected records is what lets the all-scenario RL stage build preference pairs
(kept vs rejected answers to one prompt) and lets a person audit the filters.

Memory stays flat: records of a prompt are contiguous in the generated artifact, so
deduplication and keep-k-per-prompt need to remember one prompt's samples at a time.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator

from r1pipe.config import Section
from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, final_response, split_completion

FILTERS: tuple[str, ...] = (
    "truncated",     # the generation hit max_new_tokens: no complete answer
    "format",        # no reasoning section or no final answer/summary
    "correct",       # the final answer is wrong (rules, or the judge)
    "tests",         # a code answer's program fails one of its tests (run in the sandbox)
    "unverifiable",  # neither rules nor a judge could tell (no reference answer)
    "length",        # outside [min_tokens, max_tokens]
    "language",      # chain of thought mixes languages
    "paragraphs",    # a chain-of-thought paragraph is too long
    "code_block",    # the chain of thought of a non-code answer holds a fenced code block
    "duplicate",     # same text as a sample already kept for this prompt
    "per_prompt",    # keep_per_prompt samples already kept for this prompt
)
"""Filter names in the order they are checked; `removed_by` is the first that fails."""

Verdict = Literal["kept", "rejected"]
Judge = Callable[[list[dict[str, Any]]], list[float | None]]
"""Scores records rules could not check: 1.0 right, 0.0 wrong, None unknown."""


class FilterSettings(Section):
    """The `filters:` section of a sampling stage. Each check can be switched off."""

    drop_truncated: bool = Field(True, description="reject generations cut off at the limit")
    require_format: bool = Field(
        True, description="require a reasoning section and a final answer/summary")
    unverifiable: Literal["reject", "keep"] = Field(
        "reject", description="samples whose correctness nobody could check")
    min_tokens: int = Field(1, ge=0, description="fewest completion tokens kept")
    max_tokens: int | None = Field(None, gt=0, description="most completion tokens kept")
    language: str | None = Field(
        "auto", description="target language of the chain of thought: an ISO 639-1 code, "
        "'auto' (the record's `language`, else the prompt's), or null to skip the check")
    min_language_consistency: float = Field(
        0.95, ge=0, le=1, description="least share of target-language words in the CoT")
    max_paragraph_words: int | None = Field(
        300, gt=0, description="longest CoT paragraph allowed, in words (null: no limit)")
    allow_code_blocks: bool = Field(
        False, description="keep non-code answers whose CoT holds fenced code blocks")
    dedup: bool = Field(True, description="drop repeats of a sample kept for the same prompt")
    code_tests: dict[str, Any] = Field(
        default_factory=dict, description="how code answers are checked: parameters of the "
        "`code` reward (`isolation`, `workers`, `timeout`, `memory_mb`, `tests_column`, ...); "
        "`mode` defaults to binary (every test must pass)")

    @field_validator("code_tests")
    @classmethod
    def _valid_code_tests(cls, value: dict[str, Any]) -> dict[str, Any]:
        from r1pipe.rewards.registry import validate_reward_spec

        errors = [e.replace("rewards.code", "code_tests", 1)
                  for e in validate_reward_spec({"code": code_params(value)})]
        if errors:
            raise ValueError("; ".join(errors))
        return value

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        from r1pipe.rewards.language import normalise_language, supported_languages

        code = normalise_language(value)
        if code not in supported_languages():
            raise ValueError(f"{value!r} is not an ISO 639-1 language code (or 'auto', or null)")
        return code


# ---------------------------------------------------------------------------------------
# One record
# ---------------------------------------------------------------------------------------


def is_truncated(record: dict[str, Any]) -> bool:
    """Whether the generation stopped at the token limit (finish_reason "length")."""
    return record.get("finish_reason") == "length"


def has_format(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> bool:
    """A non-empty reasoning section and a non-empty final answer or summary."""
    reasoning = split_completion(text, special_token).reasoning
    return bool(reasoning and reasoning.strip()) and bool(final_response(text, special_token))


def correctness(record: dict[str, Any], special_token: str = DEFAULT_SPECIAL_TOKEN) -> float | None:
    """1.0 / 0.0 for a right / wrong final answer by the rules; None when rules cannot tell."""
    from r1pipe.rewards.accuracy import check_completion

    numbers = record.get("numbers")
    return check_completion(
        record["completion"], record.get("answer"), task=record.get("task"),
        numbers=list(numbers) if isinstance(numbers, (list, tuple)) else None,
        target=record.get("target"), record_id=record.get("prompt_id", record.get("id")),
        special_token=special_token)


def code_params(code_tests: dict[str, Any]) -> dict[str, Any]:
    """The `code` reward's parameters for the filters: binary unless `mode` says otherwise,
    scoring every sample (routing is the RL stages' business)."""
    return {"mode": "binary", **code_tests, "task_types": "all"}


_CODE_CHECKERS: dict[str, Any] = {}
"""One `code` reward per settings and process: its sandbox pool is built once."""


def _code_checker(settings: FilterSettings, special_token: str) -> Any:
    import json

    key = json.dumps([settings.code_tests, special_token], sort_keys=True, default=str)
    checker = _CODE_CHECKERS.get(key)
    if checker is None:
        from r1pipe.rewards import build_reward_funcs

        funcs, _ = build_reward_funcs({"code": code_params(settings.code_tests)},
                                      special_token=special_token, route=False)
        checker = _CODE_CHECKERS[key] = funcs[0]  # route=False: the `Code` reward itself
    return checker


def is_code_record(record: dict[str, Any], settings: FilterSettings,
                   special_token: str = DEFAULT_SPECIAL_TOKEN) -> bool:
    """Whether a record's correctness is its tests: it has a test column with a value (any
    layout the `code` reward reads, under the names `code_tests` gives)."""
    columns = _code_checker(settings, special_token).columns()
    return any(record.get(column) not in (None, "", "[]") for column in columns)


def code_correctness(records: list[dict[str, Any]], settings: FilterSettings,
                     special_token: str = DEFAULT_SPECIAL_TOKEN) -> list[float | None]:
    """1.0 / 0.0 per code record: whether its answer's program passes every test (run in
    the sandbox, tests of all the records in parallel); None when its tests are unusable
    or the sandbox failed."""
    if not records:
        return []
    checker = _code_checker(settings, special_token)
    columns = {name: [r.get(name) for r in records] for name in checker.read_columns()}
    columns["id"] = [r.get("prompt_id", r.get("id")) for r in records]
    scores = checker(prompts=[r.get("prompt") for r in records],
                     completions=[r.get("completion") or "" for r in records], **columns)
    return [None if s is None or math.isnan(s) else (1.0 if s >= 1.0 else 0.0) for s in scores]


def language_target(record: dict[str, Any], setting: str | None) -> str | None:
    """The language the chain of thought should be in: the setting, else the record's
    `language`, else the language of its question (None: skip the check)."""
    if setting is None:
        return None
    if setting != "auto":
        return setting
    language = record.get("language")
    if isinstance(language, str) and language.strip():
        from r1pipe.rewards.language import normalise_language

        return normalise_language(language)
    from r1pipe.rewards.language import detect_language

    prompt = record.get("prompt")
    return detect_language(prompt) if isinstance(prompt, str) else None


def language_share(reasoning: str, target: str | None) -> float | None:
    """Share of target-language words in the chain of thought (None: not checked)."""
    if target is None:
        return None
    from r1pipe.rewards.language import language_consistency

    return round(language_consistency(reasoning, target), 4)


def reasoning_of(text: str, special_token: str = DEFAULT_SPECIAL_TOKEN) -> str:
    """The chain of thought of a completion ("" when it has none)."""
    return split_completion(text, special_token).reasoning or ""


def paragraph_words(reasoning: str) -> int:
    """Words in the longest chain-of-thought paragraph."""
    from r1pipe.rewards.steps import longest_paragraph_words

    return longest_paragraph_words(reasoning)


def code_block(reasoning: str) -> bool:
    """Whether the chain of thought holds a fenced code block."""
    from r1pipe.rewards.steps import has_code_block

    return has_code_block(reasoning)


_SPACE = re.compile(r"\s+")


def dedup_key(text: str) -> bytes:
    """What counts as the same sample: the text with case and spacing normalised."""
    normal = _SPACE.sub(" ", text).strip().lower()
    return hashlib.blake2b(normal.encode("utf-8"), digest_size=12).digest()


def measure(record: dict[str, Any], settings: FilterSettings,
            special_token: str = DEFAULT_SPECIAL_TOKEN) -> dict[str, Any]:
    """Every per-record measurement the filters decide on (the record's `filters` field)."""
    text = record.get("completion") or ""
    reasoning = reasoning_of(text, special_token)
    code = is_code_record(record, settings, special_token)
    return {
        "truncated": is_truncated(record),
        "format": has_format(text, special_token),
        # a code answer's correctness is its tests, run for a whole group in apply_filters
        "correct": None if code else correctness(record, special_token),
        "code": code,
        "tokens": int(record.get("token_count") or 0),
        "language": language_share(reasoning, language_target(record, settings.language)),
        "paragraph_words": paragraph_words(reasoning),
        "code_block": code_block(reasoning),
    }


def failures(values: dict[str, Any], settings: FilterSettings) -> list[str]:
    """Names of the per-record filters (all but duplicate and per_prompt) that fail."""
    out = []
    if settings.drop_truncated and values["truncated"]:
        out.append("truncated")
    if settings.require_format and not values["format"]:
        out.append("format")
    correct = values["correct"]
    if correct is not None and correct < 1.0:
        out.append("tests" if values.get("code") else "correct")
    if correct is None and settings.unverifiable == "reject":
        out.append("unverifiable")
    tokens = values["tokens"]
    if tokens < settings.min_tokens or (settings.max_tokens and tokens > settings.max_tokens):
        out.append("length")
    share = values["language"]
    if share is not None and share < settings.min_language_consistency:
        out.append("language")
    if settings.max_paragraph_words and values["paragraph_words"] > settings.max_paragraph_words:
        out.append("paragraphs")
    if values["code_block"] and not settings.allow_code_blocks and not values.get("code"):
        out.append("code_block")
    return out


# ---------------------------------------------------------------------------------------
# A stream of records
# ---------------------------------------------------------------------------------------


@dataclass
class FilterSummary:
    """What the filters did: `kept + sum(removed) == total`, always.

    `removed` counts each rejected record once, under its first failing filter; `failed`
    counts every filter each record failed, so it shows e.g. how many wrong answers also
    mixed languages.
    """

    total: int = 0
    kept: int = 0
    removed: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    prompts: int = 0
    prompts_kept: int = 0  # prompts with at least one kept sample
    _last_prompt: Any = None
    _last_prompt_kept: bool = False

    def add(self, record: dict[str, Any]) -> None:
        """Count one filtered record (one that `apply_filters` produced)."""
        prompt_id = record.get("prompt_id")
        if self.total == 0 or prompt_id != self._last_prompt:
            self.prompts += 1
            self._last_prompt, self._last_prompt_kept = prompt_id, False
        self.total += 1
        self.failed.update(record.get("failed") or ())
        if record["verdict"] == "kept":
            self.kept += 1
            if not self._last_prompt_kept:
                self.prompts_kept += 1
                self._last_prompt_kept = True
        else:
            self.removed[record["removed_by"]] += 1

    def add_all(self, records: Iterable[dict[str, Any]]) -> FilterSummary:
        for record in records:
            self.add(record)
        return self

    @property
    def adds_up(self) -> bool:
        return self.kept + sum(self.removed.values()) == self.total

    def as_dict(self) -> dict[str, Any]:
        """For stage.json and the manifest: plain numbers, filters in checking order."""
        return {
            "total": self.total,
            "kept": self.kept,
            "prompts": self.prompts,
            "prompts with a kept sample": self.prompts_kept,
            "removed_by": {name: self.removed[name] for name in FILTERS if self.removed[name]},
            "failed": {name: self.failed[name] for name in FILTERS if self.failed[name]},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FilterSummary:
        """The inverse of `as_dict` (a summary stored in a manifest or stage.json)."""
        return cls(total=int(data.get("total", 0)), kept=int(data.get("kept", 0)),
                   removed=Counter(data.get("removed_by", {})),
                   failed=Counter(data.get("failed", {})),
                   prompts=int(data.get("prompts", 0)),
                   prompts_kept=int(data.get("prompts with a kept sample", 0)))

    def rows(self) -> dict[str, Any]:
        """Rows of the summary table: total, removed by each filter, kept."""
        rows: dict[str, Any] = {"samples": self.total}
        for name in FILTERS:
            if self.removed[name] or self.failed[name]:
                failed = self.failed[name]
                rows[f"removed by {name}"] = (f"{self.removed[name]:,}" + (
                    f" ({failed:,} failed it in all)" if failed != self.removed[name] else ""))
        rows["kept"] = self.kept
        rows["prompts with a kept sample"] = f"{self.prompts_kept:,} of {self.prompts:,}"
        return rows

    def print(self, title: str) -> None:
        from r1pipe.progress import summary_table

        summary_table(title, self.rows())

    def explain_empty(self) -> str:
        """Why nothing was kept, in one sentence (for the empty-mix error)."""
        if not self.total:
            return "no samples at all"
        top = ", ".join(f"{name} {n:,}" for name, n in self.removed.most_common())
        return f"{self.total:,} samples, none kept; removed by {top}"


def groups(records: Iterable[dict[str, Any]], key: str = "prompt_id") -> Iterator[list[dict[str, Any]]]:
    """Runs of consecutive records with the same `key` (one prompt's samples)."""
    group: list[dict[str, Any]] = []
    for record in records:
        if group and record.get(key) != group[0].get(key):
            yield group
            group = []
        group.append(record)
    if group:
        yield group


def apply_filters(records: Iterable[dict[str, Any]], settings: FilterSettings, *,
                  keep_per_prompt: int | None = None, judge: Judge | None = None,
                  special_token: str = DEFAULT_SPECIAL_TOKEN,
                  summary: FilterSummary | None = None) -> Iterator[dict[str, Any]]:
    """Annotate every record with its verdict (see the module docstring), lazily.

    Records of one prompt must be contiguous (they are in a generated artifact): duplicates
    and the per-prompt cap are judged within that run, the first samples being kept.
    `judge` scores the samples the rules could not check, one prompt's samples per call.
    Code answers are run against their tests, one prompt's samples per sandbox batch.
    """
    for group in groups(records):
        values = [measure(record, settings, special_token) for record in group]
        code = [i for i, v in enumerate(values) if v["code"]]
        for i, value in zip(code, code_correctness([group[i] for i in code], settings,
                                                   special_token), strict=True):
            values[i]["correct"] = value
        if judge is not None:
            unknown = [i for i, v in enumerate(values) if v["correct"] is None]
            if unknown:
                scores = judge([group[i] for i in unknown])
                for i, value in zip(unknown, scores, strict=True):
                    values[i]["correct"] = value
                    values[i]["judged"] = value is not None
        seen: set[bytes] = set()
        kept = 0
        for record, measured in zip(group, values, strict=True):
            failed = failures(measured, settings)
            if not failed and settings.dedup:
                key = dedup_key(record.get("completion") or "")
                if key in seen:
                    failed.append("duplicate")
                seen.add(key)
            if not failed and keep_per_prompt is not None and kept >= keep_per_prompt:
                failed.append("per_prompt")
            if not failed:
                kept += 1
            out = {**record, "verdict": "rejected" if failed else "kept",
                   "removed_by": failed[0] if failed else None, "failed": failed,
                   "filters": measured, "reward": measured["correct"]}
            if summary is not None:
                summary.add(out)
            yield out


def make_judge(spec: dict[str, Any], special_token: str = DEFAULT_SPECIAL_TOKEN) -> Judge:
    """A `Judge` from a `judge:` section: the rewards' LLM judge (its parameters, default
    rubric `correctness`) plus `threshold`, the least score counted as correct.

    The judge sees the question, the sample's final answer and the record's `reference`
    (or `answer`), over any OpenAI-compatible endpoint.
    """
    from r1pipe.rewards import build_reward_funcs

    params = dict(spec)
    threshold = float(params.pop("threshold", 0.5))
    params.setdefault("rubric", "correctness")
    params["task_types"] = "all"
    funcs, _ = build_reward_funcs({"judge": params}, special_token=special_token)
    func = funcs[0]

    def judge(records: list[dict[str, Any]]) -> list[float | None]:
        columns = {name: [r.get(name) for r in records]
                   for name in ("reference", "answer", "id", "task", "task_type")}
        scores = func(prompts=[r.get("prompt") for r in records],
                      completions=[r.get("completion") or "" for r in records], **columns)
        return [None if s is None or (isinstance(s, float) and math.isnan(s))
                else (1.0 if s >= threshold else 0.0) for s in scores]

    return judge


def judge_problems(spec: dict[str, Any] | None) -> list[str]:
    """Errors of a `judge:` section (its keys are the rewards' judge parameters plus
    `threshold`); empty when valid. Calls no server."""
    if spec is None:
        return []
    from r1pipe.rewards.registry import validate_reward_spec

    params = dict(spec)
    threshold = params.pop("threshold", 0.5)
    errors = []
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not (
            0 <= threshold <= 1):
        errors.append(f"judge.threshold: expected a number in [0, 1], got {threshold!r}")
    params.setdefault("rubric", "correctness")
    errors += [e.replace("rewards.judge", "judge", 1)
               for e in validate_reward_spec({"judge": params})]
    return errors
