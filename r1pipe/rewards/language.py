"""Language consistency: the share of the chain of thought written in the target language.

The paper's definition (reasoning-oriented RL): the proportion of target-language words in
the CoT, summed with accuracy to discourage language mixing. How words are counted:

- **CJK by script.** Chinese and Japanese do not separate words with spaces; each Han or
  kana character counts as one word (a Chinese CoT of 200 characters weighs like 200 English
  words, roughly its information content). Hangul counts by space-separated word.
- **Latin script by a language-ID library.** "die" or "also" is English, German and more,
  so single words cannot be classified. Latin words are grouped into sentence-like segments
  (broken at punctuation, line breaks and any other script) and each segment of three or more
  words is identified by lingua (`lingua-language-detector`), restricted to a few candidate
  languages (`languages`). Shorter or ambiguous segments get the benefit of the doubt.
- **Other scripts** (Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai) count by script.
- **Not words:** digits, symbols, LaTeX math (`$…$`, `\\frac`), code spans and fences,
  URLs, and one-letter Latin tokens (variables such as `x`). A CoT with no words at all
  ("2 + 3 = 5") mixes nothing and scores 1.0.

Why lingua rather than py3langid: measured here on short CoT sentences ("x plus y
equals", "so the answer is"), py3langid (naive Bayes over byte n-grams, ~9 µs a sentence)
mislabels a good share as French or German, lingua's n-gram models (~80 µs a sentence,
~150 MB with four languages loaded, loaded once) get them right or abstain. Segments are
cached, and a target outside the Latin script needs no language ID at all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from r1pipe.parsing import DEFAULT_SPECIAL_TOKEN, split_completion
from r1pipe.rewards.base import Batch, RewardFunc, Score

DEFAULT_LANGUAGES = ("en", "fr", "de", "es")
"""Candidate languages for Latin-script segments (the target is always added)."""
MIN_SEGMENT_WORDS = 3
MAX_SEGMENT_WORDS = 40
"""Latin segments are identified in pieces of at most this many words."""
MAX_CHARS = 200_000
"""Text analysed per call; longer chains of thought are judged on their first part."""

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_KANA = "\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_HANGUL = "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
_TOKENS = re.compile(
    rf"(?P<han>[{_HAN}])|(?P<kana>[{_KANA}])|(?P<hangul>[{_HANGUL}]+)"
    rf"|(?P<word>[^\W\d_{_HAN}{_KANA}{_HANGUL}]+)"
    r"|(?P<brk>[.!?;:\n\u3002\uff01\uff1f\uff1b\uff1a]+)"
)
_NOT_WORDS = re.compile(
    r"```.*?(?:```|\Z)|`[^`\n]*`|\$\$[^$]*\$\$|\$[^$\n]*\$|\\[A-Za-z]+|https?://\S+",
    re.DOTALL,
)

# script of each language whose words can be recognised without language ID
_SCRIPT_LANGUAGES = {
    "han": ("zh", "ja"),
    "kana": ("ja",),
    "hangul": ("ko",),
    "cyrillic": ("ru", "uk", "bg", "sr", "mk", "be", "kk"),
    "greek": ("el",),
    "arabic": ("ar", "fa", "ur"),
    "hebrew": ("he",),
    "devanagari": ("hi", "mr", "ne"),
    "thai": ("th",),
}
_NON_LATIN = {code for codes in _SCRIPT_LANGUAGES.values() for code in codes}


def _word_script(word: str) -> str:
    cp = ord(word[0])
    if cp <= 0x024F or 0x1E00 <= cp <= 0x1EFF:
        return "latin"
    for script, lo, hi in (
        ("greek", 0x0370, 0x03FF), ("cyrillic", 0x0400, 0x052F), ("hebrew", 0x0590, 0x05FF),
        ("arabic", 0x0600, 0x077F), ("devanagari", 0x0900, 0x097F), ("thai", 0x0E00, 0x0E7F),
    ):
        if lo <= cp <= hi:
            return script
    return "other"


def normalise_language(code: str) -> str:
    """ISO 639-1 code, lower case ("EN" -> "en", "zh-CN" -> "zh")."""
    return code.strip().lower().replace("_", "-").split("-")[0]


@dataclass
class _Segment:
    words: int = 0
    parts: list[str] = field(default_factory=list)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    """(kind, token) pairs, kind in han/kana/hangul/<script>/brk; math and code removed."""
    cleaned = _NOT_WORDS.sub(" ", text[:MAX_CHARS])
    for m in _TOKENS.finditer(cleaned):
        kind = m.lastgroup or "brk"
        token = m.group()
        if kind == "word":
            kind = _word_script(token)
            if kind == "latin" and len(token) < 2:
                continue
        yield kind, token


@lru_cache(maxsize=8)
def _detector(languages: tuple[str, ...]) -> Any:
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    chosen = [Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
              for code in languages if hasattr(IsoCode639_1, code.upper())]
    if not chosen:
        chosen = [Language.ENGLISH]
    if len(chosen) < 2:  # lingua needs two candidates; English is the usual other one
        chosen.append(Language.ENGLISH if chosen[0] != Language.ENGLISH else Language.FRENCH)
    return LanguageDetectorBuilder.from_languages(*chosen).with_minimum_relative_distance(
        0.1).build()


@lru_cache(maxsize=65_536)
def _identify(segment: str, languages: tuple[str, ...]) -> str | None:
    found = _detector(languages).detect_language_of(segment)
    return None if found is None else found.iso_code_639_1.name.lower()


def _candidates(target: str, languages: Iterable[str] | None) -> tuple[str, ...]:
    pool = {normalise_language(c) for c in (languages or DEFAULT_LANGUAGES)}
    pool.add(target)
    return tuple(sorted(c for c in pool if c not in _NON_LATIN))


def word_counts(text: str, target: str, languages: Iterable[str] | None = None) -> tuple[int, int]:
    """(target-language words, all words) in `text`; see the module docstring."""
    target = normalise_language(target)
    latin_target = target not in _NON_LATIN
    candidates = _candidates(target, languages) if latin_target else ()
    hits = total = 0
    segment = _Segment()

    def flush() -> None:
        nonlocal hits, total
        if segment.words:
            total += segment.words
            if latin_target:
                if segment.words < MIN_SEGMENT_WORDS:
                    hits += segment.words
                else:
                    found = _identify(" ".join(segment.parts), candidates)
                    if found is None or found == target:
                        hits += segment.words
        segment.words = 0
        segment.parts = []

    for kind, token in _tokens(text):
        if kind == "latin":
            segment.words += 1
            segment.parts.append(token)
            if segment.words >= MAX_SEGMENT_WORDS:
                flush()
            continue
        flush()
        if kind == "brk":
            continue
        count = len(token) if kind in ("han", "kana") else 1
        total += count
        if target in _SCRIPT_LANGUAGES.get(kind, ()):
            hits += count
    flush()
    return hits, total


def language_consistency(text: str, lang: str, languages: Iterable[str] | None = None) -> float:
    """Share of the words of `text` written in language `lang` (1.0 when it has no words).

    The function rejection-sampling filters call to drop mixed-language chains of thought.
    """
    hits, total = word_counts(text, lang, languages)
    return 1.0 if total == 0 else hits / total


def _user_part(prompt: str) -> str:
    """The question inside an R1-Zero style template ("... User: {q}. Assistant:")."""
    at = prompt.rfind("User:")
    if at < 0:
        return prompt
    part = prompt[at + len("User:"):]
    end = part.rfind("Assistant:")
    return part[:end] if end >= 0 else part


@lru_cache(maxsize=4_096)
def detect_language(text: str, languages: tuple[str, ...] = DEFAULT_LANGUAGES) -> str | None:
    """The main language of `text` (ISO 639-1), or None if it has no words.

    Script decides for CJK and other non-Latin scripts; lingua decides among `languages`
    for Latin script. A template's own English is skipped by reading only the user's part.
    """
    counts: dict[str, int] = {}
    latin: list[str] = []
    for kind, token in _tokens(_user_part(text)):
        if kind == "brk":
            continue
        if kind == "latin":
            latin.append(token)
        counts[kind] = counts.get(kind, 0) + (len(token) if kind in ("han", "kana") else 1)
    if not counts:
        return None
    script = max(counts, key=lambda k: counts[k])
    if script == "latin":
        pool = tuple(sorted({normalise_language(c) for c in languages if c} - _NON_LATIN))
        found = _identify(" ".join(latin[:200]), pool) if pool else None
        # too short to tell ("What is 2 + 3?"): English if it is a candidate
        return found or ("en" if "en" in pool or not pool else pool[0])
    if script == "han" and counts.get("kana", 0):
        return "ja"
    codes = _SCRIPT_LANGUAGES.get(script)
    return codes[0] if codes else None


@dataclass
class LanguageConsistency(RewardFunc):
    """Share of target-language words in the chain of thought (0.0 when there is none).

    `target` is an ISO 639-1 code, or `auto`: the dataset's `language` column if it has
    one, else the language of the prompt's question (None when the question has no words).
    """

    family = "language"

    target: str = "en"
    languages: list[str] = field(default_factory=lambda: list(DEFAULT_LANGUAGES))
    """Candidate languages for Latin-script segments."""
    special_token: str = DEFAULT_SPECIAL_TOKEN

    def problems(self) -> list[str]:
        from lingua import IsoCode639_1  # a small compiled extension; no model is loaded

        out = []
        target = normalise_language(self.target)
        if target != "auto" and not (hasattr(IsoCode639_1, target.upper()) or target in _NON_LATIN):
            out.append(f"target {self.target!r} is not an ISO 639-1 code lingua knows, nor 'auto'")
        unknown = [c for c in self.languages if not hasattr(IsoCode639_1, normalise_language(c).upper())]
        if unknown:
            out.append(f"languages: unknown ISO 639-1 codes {unknown}")
        return out

    def _target(self, batch: Batch, i: int) -> str | None:
        if self.target != "auto":
            return normalise_language(self.target)
        column = batch.column("language", i)
        if isinstance(column, str) and column.strip():
            return normalise_language(column)
        return detect_language(batch.user_text(i), tuple(self.languages))

    def score_one(self, batch: Batch, i: int) -> Score:
        reasoning = split_completion(batch.texts[i], self.special_token).reasoning
        if reasoning is None:
            return 0.0  # no chain of thought to be consistent in
        target = self._target(batch, i)
        if target is None:
            return None
        return language_consistency(reasoning, target, self.languages)


def supported_languages() -> Sequence[str]:
    """ISO 639-1 codes a target may use: lingua's 75 plus the script-only ones."""
    from lingua import Language

    return sorted({lang.iso_code_639_1.name.lower() for lang in Language.all()} | _NON_LATIN)
