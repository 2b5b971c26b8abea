"""Worked solutions of the multiplication task: long multiplication with partial products and
their sum, checked by splitting the other factor (or by rounding) and by the last digit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from r1pipe.data.solutions.voice import Voice, listing

_PLACES = ("ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands")


def _place_parts(n: int) -> list[int]:
    """347 -> [300, 40, 7] (zero digits left out)."""
    digits = str(n)
    return [int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]


def _row(top: int, digit: int) -> str | None:
    """How one digit times the top number is worked out, place by place ("300 * 4 = 1200,
    40 * 4 = 160 and 7 * 4 = 28, and 1200 + 160 + 28 = 1388"); None when there is nothing
    to split (a digit 1, or a top number with one non-zero digit)."""
    parts = _place_parts(top)
    if digit == 1 or len(parts) == 1:
        return None
    pieces = ", ".join(f"{p} * {digit} = {p * digit}" for p in parts[:-1])
    pieces += f" and {parts[-1]} * {digit} = {parts[-1] * digit}"
    total = " + ".join(str(p * digit) for p in parts)
    return f"{pieces}, and {total} = {top * digit}"


def _running_sum(values: list[int]) -> str:
    """"1041 + 13880 = 14921, and 14921 + 52000 = 66921"."""
    total, parts = values[0], []
    for v in values[1:]:
        parts.append(f"{total} + {v} = {total + v}")
        total += v
    return ", and ".join(parts)


def _question_factors(prompt: str) -> tuple[int, int]:
    match = re.search(r"(-?\d+)\s*[*×x]\s*(-?\d+)", prompt)
    if not match:
        raise ValueError(f"cannot find two factors in {prompt!r}")
    return int(match.group(1)), int(match.group(2))


def solve_multiplication(record: Mapping[str, Any], voice: Voice
                          ) -> tuple[list[str], str, str]:
    a, b = _question_factors(str(record["prompt"]))
    if a <= 0 or b <= 0:
        raise ValueError(f"record {record.get('id')!r}: long multiplication needs positive "
                         "factors")
    # the factor with fewer digits is the multiplier, written below
    top, bottom = (a, b) if len(str(a)) >= len(str(b)) else (b, a)
    paragraphs = [voice.say("mul-intro", (
        "I need to compute {a} * {b}. I will use long multiplication: multiply {t} by each "
        "digit of {m}, shift each partial product to the place of its digit, and add the "
        "partial products.",
        "To find {a} * {b}, I'll multiply {t} by one digit of {m} at a time, starting with "
        "the ones digit, and then add up the rows.",
        "Let me work out {a} * {b} by long multiplication, with {t} on top and {m} below, "
        "going through the digits of {m} from right to left.",
    ), a=a, b=b, t=top, m=bottom)]
    digits = str(bottom)[::-1]
    partials: list[int] = []
    for k, ch in enumerate(digits):
        d, place = int(ch), _PLACES[k] if k < len(_PLACES) else f"10^{k}"
        if d == 0:
            paragraphs.append(voice.say(f"mul-zero-{k}", (
                "The {p} digit of {m} is 0, so this row adds nothing.",
                "The {p} digit of {m} is 0; that row is all zeros and I can skip it.",
            ), p=place, m=bottom))
            continue
        row = top * d
        partial = row * 10**k
        partials.append(partial)
        detail = _row(top, d)
        if detail is None:
            sentence = f"The {place} digit of {bottom} is {d}, and {top} * {d} = {row}."
        else:
            sentence = voice.say(f"mul-row-{k}", (
                "The {p} digit of {m} is {d}. Working out {t} * {d}: {r}. So this row is "
                "{t} * {d} = {q}.",
                "{n} the {p} digit, {d}. Splitting {t} by place: {r}, so {t} * {d} = {q}.",
                "Row for the {p} digit {d}: {r}, which makes {t} * {d} = {q}.",
            ), p=place, m=bottom, d=d, t=top, r=detail, q=row,
                n="Next comes" if k else "I start with")
        if k:
            sentence += voice.say(f"mul-shift-{k}", (
                " This digit stands for {v}, so the partial product is {r} * {s} = {q}.",
                " Shifted {k} to the left, it becomes {q}.",
            ), v=d * 10**k, r=row, s=10**k, q=partial,
                k={1: "one place", 2: "two places", 3: "three places"}.get(k, f"{k} places"))
        paragraphs.append(sentence)
    product = sum(partials)
    if len(partials) == 1:
        paragraphs.append(voice.say("mul-one-row", (
            "There is only one non-zero row, so the product is {q}.",
            "With a single row there is nothing to add: {a} * {b} = {q}.",
        ), q=product, a=a, b=b))
    else:
        paragraphs.append(voice.say("mul-add", (
            "Now I add the partial products: {s}. So {a} * {b} = {q}.",
            "Adding the rows: {s}. That gives {a} * {b} = {q}.",
        ), s=_running_sum(partials), a=a, b=b, q=product))
    paragraphs.append(_multiplication_check(top, bottom, product, voice))
    answer = str(product)
    if len(partials) == 1:
        summary = voice.say("mul-summary-one", (
            "Multiplying {t} by the single digit {m} place by place gives {q}, and a second "
            "method gives the same.",
            "Long multiplication with the one-digit factor {m} gives {a} * {b} = {q}; the "
            "check by rounding agrees.",
        ), q=product, t=top, m=bottom, a=a, b=b)
    else:
        summary = voice.say("mul-summary", (
            "Long multiplication gives the partial products {p}, which add up to {q}; a "
            "second method gives the same.",
            "Multiplying {t} by each digit of {m} and adding the partial products {p} gives "
            "{q}, and the check agrees.",
            "The rows of the long multiplication are {p}; their sum is {a} * {b} = {q}.",
        ), p=listing([str(p) for p in partials]), q=product, t=top, m=bottom, a=a, b=b)
    return paragraphs, summary, answer


def _multiplication_check(top: int, bottom: int, product: int, voice: Voice) -> str:
    last = (top % 10) * (bottom % 10)
    last_digit = voice.say("mul-last", (
        " The last digits agree too: {x} * {y} = {z} ends in {u}, and so does {q}.",
        " As a quick extra test, {x} * {y} = {z} ends in {u}, and {q} also ends in {u}.",
    ), x=top % 10, y=bottom % 10, z=last, u=last % 10, q=product)
    if bottom >= 10:
        # split the top number by place and multiply the bottom one by each part
        parts = _place_parts(top)
        terms = " + ".join(f"{bottom} * {p}" for p in parts)
        values = " + ".join(str(bottom * p) for p in parts)
        check = sum(bottom * p for p in parts)
        route = f"{bottom} * {top} = {terms} = {values} = {check}"
    elif top % 10:
        rounded = top + (10 - top % 10)
        gap = rounded - top
        check = rounded * bottom - gap * bottom
        route = (f"{top} is {rounded} - {gap}, so {top} * {bottom} = {rounded} * {bottom} - "
                 f"{gap} * {bottom} = {rounded * bottom} - {gap * bottom} = {check}")
    else:
        tens = top // 10
        check = tens * bottom * 10
        route = (f"{top} * {bottom} = {tens} * {bottom} * 10 = {tens * bottom} * 10 = {check}")
    if check != product:
        raise AssertionError(f"multiplication check of {top} * {bottom} disagrees")
    opener = voice.pick("mul-check", (
        "Wait, let me check this another way, so that I do not rely on one calculation: "
        "{r}. Both methods give {q}.",
        "Wait, let me double-check by a different route: {r}. That is the same result, "
        "{q}.",
        "Let me verify it another way: {r}. It matches {q}.",
    ))
    return opener.format(r=route, q=product) + last_digit
