"""Rejection-sampling filters, shard-by-shard steps and the streaming mix, on synthetic
records (the end-to-end stage is in test_reject_sample.py)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r1pipe.artifacts import ShardedJsonlWriter, iter_records, read_manifest
from r1pipe.filters import (
    FILTERS,
    FilterSettings,
    FilterSummary,
    apply_filters,
    dedup_key,
    judge_problems,
    make_judge,
    measure,
)
from r1pipe.generation.jobs import chunked
from r1pipe.generation.shard_steps import MixSource, map_shards, sample_and_shuffle
from tests.helpers import http_server, send_json

ST = "|special_token|"
GOOD = f"{ST}First, 3 * 4 = 12. Then 2 + 12 = 14. So the result is fourteen.{ST}The answer is 14."
WRONG = GOOD.replace("14.", "20.")
GERMAN = (f"{ST}Zuerst rechnen wir drei mal vier, das ergibt zwölf, und dann addieren wir "
          f"zwei dazu, also vierzehn.{ST}14")
CODE = f"{ST}Now I will write the calculation in a short program.\n```python\nprint(2 + 3 * 4)\n```\nIt prints 14.{ST}14"
LONG = f"{ST}" + " ".join(["we check the sum again"] * 80) + f".{ST}The answer is 14."
NO_FORMAT = "The answer is 14."
CUT = f"{ST}First, 3 * 4 = 12. Then 2 +"


def rec(pid: str, k: int, text: str, *, answer: Any = "14", finish: str = "stop",
        tokens: int = 30, task: str = "arithmetic", **extra: Any) -> dict[str, Any]:
    return {"id": f"{pid}-s{k}", "prompt_id": pid, "sample": k, "prompt": "What is 2 + 3 * 4?",
            "completion": text, "answer": answer, "task": task, "token_count": tokens,
            "finish_reason": finish, **extra}


def run(records: list[dict], settings: FilterSettings | None = None, **kw: Any):
    summary = FilterSummary()
    out = list(apply_filters(records, settings or FilterSettings(), summary=summary, **kw))
    return out, summary


# ----------------------------------------------------------------- one filter at a time


@pytest.mark.parametrize(("text", "extra", "removed_by"), [
    (GOOD, {}, None),
    (WRONG, {}, "correct"),
    (GERMAN, {}, "language"),
    (CODE, {}, "code_block"),
    (LONG, {}, "paragraphs"),
    (NO_FORMAT, {}, "format"),
    (CUT, {"finish": "length"}, "truncated"),
    (GOOD, {"tokens": 900}, "length"),
    (GOOD, {"answer": None}, "unverifiable"),
])
def test_each_filter_removes_what_it_names(text: str, extra: dict, removed_by: str | None) -> None:
    out, summary = run([rec("p", 0, text, **extra)],
                       FilterSettings(max_tokens=512, max_paragraph_words=100))
    assert out[0]["removed_by"] == removed_by
    assert out[0]["verdict"] == ("kept" if removed_by is None else "rejected")
    assert summary.adds_up and summary.total == 1


def test_record_keeps_its_fields_values_and_reward() -> None:
    out, _ = run([rec("p", 0, GOOD, task_type="reasoning"), rec("p", 1, WRONG)])
    kept, wrong = out
    assert kept["completion"] == GOOD and kept["task_type"] == "reasoning"  # input kept
    assert kept["reward"] == 1.0 and wrong["reward"] == 0.0
    assert kept["filters"]["correct"] == 1.0 and kept["filters"]["language"] == 1.0
    assert kept["filters"]["paragraph_words"] > 10 and kept["filters"]["code_block"] is False
    assert wrong["failed"] == ["correct"] and kept["failed"] == []


def test_every_failure_is_listed_first_one_decides() -> None:
    text = f"{ST}Zuerst rechnen wir drei mal vier.\n```\nx\n```\n{ST}The answer is 20."
    out, summary = run([rec("p", 0, text)])
    assert out[0]["failed"] == ["correct", "language", "code_block"]
    assert out[0]["removed_by"] == "correct"
    assert summary.removed == Counter({"correct": 1})
    assert summary.failed == Counter({"correct": 1, "language": 1, "code_block": 1})


def test_switches_turn_filters_off() -> None:
    relaxed = FilterSettings(drop_truncated=False, require_format=False, unverifiable="keep",
                             min_tokens=0, language=None, max_paragraph_words=None,
                             allow_code_blocks=True, dedup=False)
    texts = [GERMAN, CODE, LONG, NO_FORMAT, GOOD, GOOD]
    out, _ = run([rec("p", k, t) for k, t in enumerate(texts)] + [rec("q", 0, GOOD, answer=None)],
                 relaxed)
    assert [r["verdict"] for r in out] == ["kept"] * 7
    assert out[0]["filters"]["language"] is None  # not measured when off


def test_language_target_from_setting_record_or_prompt() -> None:
    english = rec("p", 0, GOOD)
    assert measure(english, FilterSettings(language="de"))["language"] < 0.5
    assert measure({**english, "language": "de"}, FilterSettings())["language"] < 0.5
    assert measure(english, FilterSettings())["language"] == 1.0  # auto: the English question
    with pytest.raises(ValueError, match="ISO 639-1"):
        FilterSettings(language="klingon")


def test_countdown_uses_numbers_and_target() -> None:
    text = f"{ST}13 minus 5 is 8.{ST}<answer>13 - (4 + 1)</answer>"
    out, _ = run([rec("c", 0, text, task="countdown", answer="13 - (4 + 1)",
                      numbers=[4, 1, 13], target=8)])
    assert out[0]["verdict"] == "kept"


# ----------------------------------------------------------------- per prompt: dedup, k


def test_dedup_and_keep_k_are_per_prompt() -> None:
    spaced = GOOD.replace(" ", "  ").upper().replace("|SPECIAL_TOKEN|", ST)
    records = [rec("p", 0, WRONG), rec("p", 1, GOOD), rec("p", 2, spaced),
               rec("p", 3, GOOD + " Sure."), rec("p", 4, GOOD + " Done."),
               rec("q", 0, GOOD), rec("q", 1, GOOD + " Yes.")]
    out, summary = run(records, keep_per_prompt=2)
    assert [r["removed_by"] for r in out] == ["correct", None, "duplicate", None, "per_prompt",
                                              None, None]
    assert summary.prompts == 2 and summary.prompts_kept == 2 and summary.kept == 4
    assert dedup_key("A  b\n") == dedup_key("a b")


def test_apply_filters_is_lazy() -> None:
    """A stream is consumed one prompt at a time: memory holds one prompt's samples."""
    consumed = []

    def stream() -> Iterator[dict]:
        for p in range(1000):
            for k in range(2):
                consumed.append(p)
                yield rec(f"p{p}", k, GOOD)

    it = apply_filters(stream(), FilterSettings())
    first = next(it)
    assert first["id"] == "p0-s0" and max(consumed) <= 1


# ----------------------------------------------------------------- the summary adds up

_TEXTS = [GOOD, WRONG, GERMAN, CODE, LONG, NO_FORMAT, CUT, GOOD + " Extra."]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, len(_TEXTS) - 1),
                          st.booleans(), st.integers(0, 900)), max_size=40),
       st.one_of(st.none(), st.integers(1, 3)))
def test_summary_adds_up(samples: list[tuple[int, int, bool, int]], k: int | None) -> None:
    samples = sorted(samples, key=lambda s: s[0])  # contiguous per prompt, as generated
    records = [rec(f"p{p}", i, _TEXTS[t], finish="length" if cut else "stop", tokens=tok,
                   answer=None if t == 7 and p == 3 else "14")
               for i, (p, t, cut, tok) in enumerate(samples)]
    out, summary = run(records, FilterSettings(max_tokens=600), keep_per_prompt=k)
    assert summary.adds_up and summary.total == len(records)
    assert summary.kept == sum(r["verdict"] == "kept" for r in out)
    assert set(summary.removed) <= set(FILTERS)
    for r in out:
        assert (r["removed_by"] is None) == (r["verdict"] == "kept") == (not r["failed"])
    per_prompt = Counter(r["prompt_id"] for r in out if r["verdict"] == "kept")
    assert k is None or all(n <= k for n in per_prompt.values())
    again = FilterSummary.from_dict(json.loads(json.dumps(summary.as_dict())))
    assert again.as_dict() == summary.as_dict()
    rows = summary.rows()
    assert rows["samples"] == summary.total and rows["kept"] == summary.kept


def test_empty_explanation_names_the_filters() -> None:
    _, summary = run([rec("p", 0, WRONG), rec("p", 1, WRONG), rec("p", 2, NO_FORMAT)])
    assert summary.kept == 0
    assert summary.explain_empty() == "3 samples, none kept; removed by correct 2, format 1"
    assert FilterSummary().explain_empty() == "no samples at all"


# ----------------------------------------------------------------- the judge, over HTTP


class _Grader(BaseHTTPRequestHandler):
    """An OpenAI-compatible grader: "Rating: [[1]]" when the response contains the reference."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        reference = prompt.split("[Reference answer]\n", 1)[1].split("\n", 1)[0]
        response = prompt.split("[Response]\n", 1)[1]
        verdict = 1 if reference.strip().lower() in response.lower() else 0
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                     "role": "assistant", "content": f"Compared. Rating: [[{verdict}]]"}}]}
        send_json(self, json.dumps(reply).encode())


@pytest.fixture(scope="module")
def grader_url() -> Iterator[str]:
    with http_server(_Grader) as url:
        yield url


def test_judge_decides_what_rules_cannot(grader_url: str) -> None:
    judge = make_judge({"base_url": grader_url, "model": "grader", "threshold": 0.5})
    paris = f"{ST}The capital of France is a well known fact.{ST}It is Paris."
    records = [rec("f", 0, paris, answer=None, reference="Paris", task="factual"),
               rec("f", 1, paris.replace("Paris", "Lyon"), answer=None, reference="Paris",
                   task="factual"),
               rec("f", 2, GOOD)]  # checked by rules: the judge is not asked
    out, summary = run(records, judge=judge)
    assert [r["reward"] for r in out] == [1.0, 0.0, 1.0]
    assert [r["removed_by"] for r in out] == [None, "correct", None]
    assert out[0]["filters"]["judged"] is True and "judged" not in out[2]["filters"]
    assert summary.adds_up


def test_judge_section_is_checked_without_a_server() -> None:
    assert judge_problems(None) == []
    assert judge_problems({"base_url": "http://x/v1", "model": "m"}) == []
    errors = judge_problems({"base_url": "ftp://x", "model": "", "threshold": 3, "colour": 1})
    text = " | ".join(errors)
    assert "threshold" in text and "colour" in text


# ----------------------------------------------------------------- shard steps and the mix


def _artifact(path: Path, records: list[dict], per_shard: int) -> None:
    writer = ShardedJsonlWriter(path)
    for i, chunk in enumerate(chunked(records, per_shard)):
        with writer.shard(i) as sink:
            sink.write_many(chunk)
    writer.finalize(expected_shards=-(-len(records) // per_shard))


def test_map_shards_resumes_shard_by_shard(tmp_path: Path) -> None:
    records = [rec(f"p{p}", k, GOOD if k else WRONG) for p in range(10) for k in range(2)]
    _artifact(tmp_path / "src", records, per_shard=4)
    calls = []

    def transform(recs: Iterator[dict]) -> Iterator[dict]:
        for r in recs:
            calls.append(r["id"])
            yield {**r, "seen": True}

    # a first attempt stops after two shards (a kill, as far as the artifact can tell)
    writer = ShardedJsonlWriter(tmp_path / "dst")
    for i, chunk in enumerate(chunked(records[:8], 4)):
        with writer.shard(i) as sink:
            sink.write_many({**r, "seen": True} for r in chunk)
    skipped: list[str] = []
    total = map_shards(tmp_path / "src", tmp_path / "dst", transform,
                       on_skip=lambda rs: skipped.extend(r["id"] for r in rs),
                       meta=lambda: {"done": len(calls)})
    assert total == 20 and calls == [r["id"] for r in records[8:]]
    assert skipped == [r["id"] for r in records[:8]]
    assert [r["id"] for r in iter_records(tmp_path / "dst")] == [r["id"] for r in records]
    assert read_manifest(tmp_path / "dst").meta["done"] == 12


def _mix(tmp_path: Path, seed: int, take: tuple[int, int], n: tuple[int, int] = (500, 200),
         per_shard: int = 64) -> list[dict]:
    a = [{"id": f"a{i}"} for i in range(n[0])]
    b = [{"id": f"b{i}"} for i in range(n[1])]
    out = tmp_path / f"mix-{seed}-{take}"
    drawn = sample_and_shuffle(
        [MixSource("a", lambda: iter(a), len(a), take[0], lambda r: {**r, "source": "a"}),
         MixSource("b", lambda: iter(b), len(b), take[1], lambda r: {**r, "source": "b"})],
        out, seed=seed, records_per_shard=per_shard)
    assert drawn == {"a": take[0], "b": take[1]}
    assert not (tmp_path / f".{out.name}.buckets").exists()
    return list(iter_records(out))


def test_sample_and_shuffle_draws_exact_counts_in_a_seeded_order(tmp_path: Path) -> None:
    mixed = _mix(tmp_path, 1, (300, 200))
    ids = [r["id"] for r in mixed]
    assert len(ids) == 500 == len(set(ids))
    assert Counter(r["source"] for r in mixed) == {"a": 300, "b": 200}
    assert ids == [r["id"] for r in _mix(tmp_path / "again", 1, (300, 200))]  # seeded
    assert ids != [r["id"] for r in _mix(tmp_path, 2, (300, 200))]
    # shuffled: the sources are interleaved, not one after the other
    first = [r["source"] for r in mixed[:100]]
    assert 40 <= first.count("a") <= 80
    # the draw covers the whole source, not its beginning
    numbers = sorted(int(i[1:]) for i in ids if i.startswith("a"))
    assert numbers[0] < 20 and numbers[-1] > 480


def test_sample_and_shuffle_is_uniform(tmp_path: Path) -> None:
    """Over many seeds every record is drawn about equally often and lands anywhere."""
    hits: Counter[str] = Counter()
    first: Counter[str] = Counter()
    for seed in range(60):
        mixed = _mix(tmp_path, seed, (10, 0), n=(20, 0), per_shard=4)  # 3 buckets
        hits.update(r["id"] for r in mixed)
        first[mixed[0]["id"]] += 1
    assert set(hits) == {f"a{i}" for i in range(20)}
    assert all(14 <= n <= 46 for n in hits.values())  # 30 each, 4 standard deviations
    assert len(first) >= 12


def test_sample_and_shuffle_refuses_wrong_counts(tmp_path: Path) -> None:
    from r1pipe.artifacts import ArtifactError

    with pytest.raises(ValueError, match="cannot take 5 of 3"):
        sample_and_shuffle([MixSource("a", list, 3, 5)], tmp_path / "m", seed=0)
    with pytest.raises(ArtifactError, match="ran out"):
        sample_and_shuffle([MixSource("a", partial(iter, [{"id": 1}]), 3, 3)],
                           tmp_path / "m", seed=0)


def test_map_shards_in_worker_processes_gives_the_same_artifact(tmp_path: Path) -> None:
    texts = [GOOD, WRONG, GERMAN, CODE, NO_FORMAT, GOOD + " Again."]
    records = [rec(f"p{p}", k, texts[(p + k) % len(texts)]) for p in range(12) for k in range(3)]
    _artifact(tmp_path / "src", records, per_shard=6)  # 2 prompts a shard
    summaries = {}
    for workers in (1, 2):
        summary = FilterSummary()
        transform = partial(apply_filters, settings=FilterSettings(), keep_per_prompt=1,
                            summary=summary if workers == 1 else None)
        map_shards(tmp_path / "src", tmp_path / f"out{workers}", transform,
                   on_skip=summary.add_all, workers=workers)
        summaries[workers] = summary.as_dict()
    assert list(iter_records(tmp_path / "out2")) == list(iter_records(tmp_path / "out1"))
    assert summaries[2] == summaries[1] and summaries[1]["total"] == 36
    assert not list((tmp_path / "out2").glob(".*.tmp"))
