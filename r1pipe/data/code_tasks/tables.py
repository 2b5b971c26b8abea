"""The parts a code problem is made of: the steps of the numbers and text families (each
with its statement phrase, its interpreter and the Python line of the solution program),
the final prints, and which of them each difficulty level may draw. One table per part, so
the statement, the expected output and the program cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CODE_TASK = "code"
LANGUAGE = "python"

TESTS = {1: 3, 2: 4, 3: 4, 4: 5, 5: 5}
"""Test cases per problem by difficulty; the first is shown in the prompt as the example."""
# difficulty -> (steps range, count range, value range)
NUM_LEVELS: dict[int, tuple[tuple[int, int], tuple[int, int], int]] = {
    1: ((0, 1), (3, 8), 20),
    2: ((1, 2), (4, 10), 30),
    3: ((2, 3), (5, 12), 50),
    4: ((3, 4), (6, 15), 100),
    5: ((4, 5), (8, 20), 1000),
}
TEXT_STEPS_BY_LEVEL = {1: (0, 1), 2: (1, 2), 3: (2, 3), 4: (3, 4), 5: (3, 5)}
FAMILIES = {1: (("nums", 4), ("text", 4), ("fizz", 2)), 2: (("nums", 4), ("text", 4), ("fizz", 2)),
             3: (("nums", 1), ("text", 1)), 4: (("nums", 1), ("text", 1)),
             5: (("nums", 1), ("text", 1))}
WORDS = ("apple", "river", "stone", "green", "light", "music", "table", "house", "water",
          "paper", "cloud", "tiger", "bread", "chair", "dream", "earth", "field", "glass",
          "heart", "lemon", "night", "ocean", "plant", "queen", "radio", "smile", "train",
          "voice", "world", "zebra", "level", "noon", "kayak", "radar", "civic", "moon")
FIZZ_WORDS = ("Fizz", "Buzz", "Bang", "Pop", "Zap", "Boom", "Ping", "Pong")
VOWELS = "aeiou"
MODULI = (7, 97, 1000, 10007)


class SpecError(ValueError):
    """A `spec` string that no rule of this module produced."""


# ---------------------------------------------------------------------------------------
# Steps: the phrase the prompt uses, the program line, and the reference behaviour
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    phrase: Callable[[str], str]
    """Imperative phrase for the prompt, from the step's argument."""
    line: Callable[[str], str]
    """The program line that performs it."""
    apply: Callable[[Any, str], Any]
    """Reference behaviour (what the expected outputs are computed with)."""
    why: Callable[[str], str]
    """How the worked solution explains it."""


def _digit_sum(x: int) -> int:
    return sum(int(d) for d in str(abs(x)))


def _take(xs: list[int], k: str) -> list[int]:
    return xs[: int(k)]


NUM_STEPS: dict[str, Step] = {
    "gt": Step(lambda a: f"keep only the numbers greater than {a}",
                lambda a: f"nums = [x for x in nums if x > {a}]",
                lambda xs, a: [x for x in xs if x > int(a)],
                lambda a: f"keeping the numbers greater than {a} is a filter with a strict "
                          "comparison, so a number equal to it is dropped"),
    "lt": Step(lambda a: f"keep only the numbers less than {a}",
                lambda a: f"nums = [x for x in nums if x < {a}]",
                lambda xs, a: [x for x in xs if x < int(a)],
                lambda a: f"keeping the numbers less than {a} is a strict comparison too, so "
                          f"{a} itself goes"),
    "ge": Step(lambda a: f"keep only the numbers that are at least {a}",
                lambda a: f"nums = [x for x in nums if x >= {a}]",
                lambda xs, a: [x for x in xs if x >= int(a)],
                lambda a: f"at least {a} includes {a} itself, so the comparison is not strict"),
    "le": Step(lambda a: f"keep only the numbers that are at most {a}",
                lambda a: f"nums = [x for x in nums if x <= {a}]",
                lambda xs, a: [x for x in xs if x <= int(a)],
                lambda a: f"at most {a} includes {a} itself"),
    "div": Step(lambda a: f"keep only the multiples of {a}",
                 lambda a: f"nums = [x for x in nums if x % {a} == 0]",
                 lambda xs, a: [x for x in xs if x % int(a) == 0],
                 lambda a: f"a multiple of {a} leaves remainder zero when divided by {a}; zero "
                           "and negative multiples count too"),
    "ndiv": Step(lambda a: f"remove the multiples of {a}",
                  lambda a: f"nums = [x for x in nums if x % {a} != 0]",
                  lambda xs, a: [x for x in xs if x % int(a) != 0],
                  lambda a: f"removing the multiples of {a} keeps the numbers with a nonzero "
                            f"remainder, and zero is a multiple of {a}, so it goes"),
    "even": Step(lambda a: "keep only the even numbers",
                  lambda a: "nums = [x for x in nums if x % 2 == 0]",
                  lambda xs, a: [x for x in xs if x % 2 == 0],
                  lambda a: "even means remainder zero modulo two, which also holds for "
                            "negative even numbers and zero"),
    "odd": Step(lambda a: "keep only the odd numbers",
                 lambda a: "nums = [x for x in nums if x % 2 == 1]",
                 lambda xs, a: [x for x in xs if x % 2 == 1],
                 lambda a: "odd means remainder one modulo two; in Python that also holds "
                           "for negative odd numbers, because the remainder takes the sign "
                           "of the divisor"),
    "add": Step(lambda a: (f"add {a} to each number" if int(a) >= 0
                            else f"subtract {-int(a)} from each number"),
                 lambda a: f"nums = [x + {a} for x in nums]" if int(a) >= 0
                 else f"nums = [x - {-int(a)} for x in nums]",
                 lambda xs, a: [x + int(a) for x in xs],
                 lambda a: "shifting every number is a simple map over the list"),
    "mul": Step(lambda a: f"multiply each number by {a}",
                 lambda a: f"nums = [x * {a} for x in nums]",
                 lambda xs, a: [x * int(a) for x in xs],
                 lambda a: f"multiplying by {a} is a map; the values can grow, but Python "
                           "integers do not overflow"),
    "sq": Step(lambda a: "replace each number by its square",
                lambda a: "nums = [x * x for x in nums]",
                lambda xs, a: [x * x for x in xs],
                lambda a: "squaring makes every number zero or positive"),
    "abs": Step(lambda a: "replace each number by its absolute value",
                 lambda a: "nums = [abs(x) for x in nums]",
                 lambda xs, a: [abs(x) for x in xs],
                 lambda a: "the absolute value drops the minus sign"),
    "mod": Step(lambda a: f"replace each number by its remainder after division by {a} "
                           f"(a number from 0 to {int(a) - 1})",
                 lambda a: f"nums = [x % {a} for x in nums]",
                 lambda xs, a: [x % int(a) for x in xs],
                 lambda a: f"the remainder must lie between 0 and {int(a) - 1} even for a "
                           "negative number, which is exactly what the Python remainder "
                           "operator gives for a positive divisor"),
    "dsum": Step(lambda a: "replace each number by the sum of its decimal digits "
                            "(ignoring any minus sign)",
                  lambda a: "nums = [sum(int(d) for d in str(abs(x))) for x in nums]",
                  lambda xs, a: [_digit_sum(x) for x in xs],
                  lambda a: "the digit sum of a negative number uses its absolute value, so "
                            "I take that before turning the number into its digits"),
    "sort": Step(lambda a: "sort the numbers in increasing order",
                  lambda a: "nums.sort()",
                  lambda xs, a: sorted(xs),
                  lambda a: "sorting in increasing order is the built-in sort"),
    "rsort": Step(lambda a: "sort the numbers in decreasing order",
                   lambda a: "nums.sort(reverse=True)",
                   lambda xs, a: sorted(xs, reverse=True),
                   lambda a: "decreasing order is the same sort, reversed"),
    "rev": Step(lambda a: "reverse their order",
                 lambda a: "nums.reverse()",
                 lambda xs, a: xs[::-1],
                 lambda a: "reversing the order does not sort anything, it only flips the list"),
    "uniq": Step(lambda a: "remove repeated numbers, keeping the first occurrence of each",
                  lambda a: "nums = list(dict.fromkeys(nums))",
                  lambda xs, a: list(dict.fromkeys(xs)),
                  lambda a: "removing repeats while keeping the first occurrence needs an "
                            "order-preserving method; a dictionary keeps insertion order, "
                            "a set would not"),
    "first": Step(lambda a: f"keep only the first {a} numbers (all of them if there are "
                             "fewer)",
                   lambda a: f"nums = nums[:{a}]",
                   _take,
                   lambda a: f"a slice up to position {a} never fails on a shorter list"),
    "skip": Step(lambda a: f"drop the first {a} numbers (leaving none if there are fewer)",
                  lambda a: f"nums = nums[{a}:]",
                  lambda xs, a: xs[int(a):],
                  lambda a: f"a slice from position {a} gives an empty list when fewer "
                            "numbers are left, which is what the statement asks"),
}
FILTERS = ("gt", "lt", "ge", "le", "div", "ndiv", "even", "odd")
MAPS = ("add", "mul", "sq", "abs", "mod")
LATE_STEPS = ("dsum", "sort", "rsort", "rev", "uniq", "first", "skip")


@dataclass(frozen=True)
class Final:
    phrase: Callable[[str], str]
    lines: Callable[[str], list[str]]
    result: Callable[[list[Any], str], str]
    """Reference output (without the final newline)."""
    empty: str
    """What the worked solution says about nothing being left."""


def _product_mod(xs: list[int], m: str) -> str:
    out = 1
    for x in xs:
        out = out * x % int(m)
    return str(out)


NUM_FINALS: dict[str, Final] = {
    "sum": Final(lambda a: "print their sum (0 if no numbers are left)",
                  lambda a: ["print(sum(nums))"], lambda xs, a: str(sum(xs)),
                  "the sum of no numbers is 0, which the built-in sum already gives"),
    "count": Final(lambda a: "print how many numbers are left",
                    lambda a: ["print(len(nums))"], lambda xs, a: str(len(xs)),
                    "the count is simply 0 when nothing is left"),
    "max": Final(lambda a: "print the largest of them (NONE if no numbers are left)",
                  lambda a: ["print(max(nums) if nums else \"NONE\")"],
                  lambda xs, a: str(max(xs)) if xs else "NONE",
                  "the largest of nothing does not exist and max would raise an error, so "
                  "the empty case must print NONE explicitly"),
    "min": Final(lambda a: "print the smallest of them (NONE if no numbers are left)",
                  lambda a: ["print(min(nums) if nums else \"NONE\")"],
                  lambda xs, a: str(min(xs)) if xs else "NONE",
                  "min of an empty list raises an error, so the empty case prints NONE"),
    "list": Final(lambda a: "print the numbers on one line, separated by single spaces (an "
                             "empty line if no numbers are left)",
                   lambda a: ["print(\" \".join(map(str, nums)))"],
                   lambda xs, a: " ".join(map(str, xs)),
                   "joining no numbers gives an empty line, as asked"),
    "distinct": Final(lambda a: "print how many different values are left",
                       lambda a: ["print(len(set(nums)))"], lambda xs, a: str(len(set(xs))),
                       "a set of nothing has size 0"),
    "prod": Final(lambda a: f"print their product modulo {a} (1 if no numbers are left; the "
                             f"result is between 0 and {int(a) - 1})",
                   lambda a: ["result = 1", "for x in nums:", f"    result = result * x % {a}",
                              "print(result)"],
                   _product_mod,
                   "the empty product is 1; reducing after every multiplication keeps the "
                   "numbers small and gives a remainder that is never negative"),
}
NUM_FINALS_BY_LEVEL = {1: ("sum", "count", "max", "min"),
                        2: ("sum", "count", "max", "min", "list"),
                        3: ("sum", "count", "max", "min", "list", "distinct"),
                        4: tuple(NUM_FINALS), 5: tuple(NUM_FINALS)}


def _shift(text: str, k: str) -> str:
    return "".join(chr((ord(c) - 97 + int(k)) % 26 + 97) if "a" <= c <= "z" else c
                   for c in text)


def _letters_only(text: str) -> str:
    return "".join(c for c in text if c.isalpha() or c == " ")


TEXT_STEPS: dict[str, Step] = {
    "lower": Step(lambda a: "convert it to lowercase", lambda a: "text = text.lower()",
                   lambda t, a: t.lower(),
                   lambda a: "lowercasing is one string method"),
    "upper": Step(lambda a: "convert it to uppercase", lambda a: "text = text.upper()",
                   lambda t, a: t.upper(),
                   lambda a: "uppercasing is one string method"),
    "swap": Step(lambda a: "swap the case of every letter", lambda a: "text = text.swapcase()",
                  lambda t, a: t.swapcase(),
                  lambda a: "swapping the case of each letter is also a single method"),
    "reverse": Step(lambda a: "reverse it", lambda a: "text = text[::-1]",
                     lambda t, a: t[::-1],
                     lambda a: "reversing the characters is a slice with step minus one"),
    "words": Step(lambda a: "reverse the order of its words (words are separated by single "
                             "spaces)",
                   lambda a: "text = \" \".join(text.split(\" \")[::-1])",
                   lambda t, a: " ".join(t.split(" ")[::-1]),
                   lambda a: "reversing the words means splitting on single spaces, "
                             "reversing the pieces and joining them again with single spaces"),
    "drop": Step(lambda a: f"remove every letter from \"{a}\", in either case",
                  lambda a: f"text = \"\".join(c for c in text if c.lower() not in \"{a}\")",
                  lambda t, a: "".join(c for c in t if c.lower() not in a),
                  lambda a: "removing letters in either case means comparing the lowercase "
                            "form of each character with the given letters"),
    "replace": Step(lambda a: f"replace every lowercase \"{a[0]}\" with \"{a[1]}\"",
                     lambda a: f"text = text.replace(\"{a[0]}\", \"{a[1]}\")",
                     lambda t, a: t.replace(a[0], a[1]),
                     lambda a: "replacing one lowercase letter by another is a single string "
                               "method, and uppercase letters are left alone"),
    "shift": Step(lambda a: f"shift every lowercase letter {a} places forward in the "
                             "alphabet, wrapping around from z to a (other characters stay "
                             "as they are)",
                   lambda a: f"text = \"\".join(chr((ord(c) - 97 + {a}) % 26 + 97) if "
                             "\"a\" <= c <= \"z\" else c for c in text)",
                   _shift,
                   lambda a: "the shift works on the position of each lowercase letter in the "
                             "alphabet, taken modulo twenty-six so that it wraps around"),
    "letters": Step(lambda a: "remove every character that is not a letter or a space",
                     lambda a: "text = \"\".join(c for c in text if c.isalpha() or c == \" \")",
                     lambda t, a: _letters_only(t),
                     lambda a: "keeping only letters and spaces is a filter over the "
                               "characters"),
}
TEXT_EARLY = ("lower", "upper", "reverse", "drop", "replace")


def _common_letter(text: str) -> str:
    counts = Counter(c for c in text.lower() if "a" <= c <= "z")
    if not counts:
        return "NONE"
    best = max(counts.values())
    return min(c for c, n in counts.items() if n == best)


TEXT_FINALS: dict[str, Final] = {
    "print": Final(lambda a: "print the result", lambda a: ["print(text)"],
                    lambda t, a: t, "an empty result is printed as an empty line"),
    "len": Final(lambda a: "print its length in characters, spaces included",
                  lambda a: ["print(len(text))"], lambda t, a: str(len(t)),
                  "an empty text has length 0"),
    "count": Final(lambda a: f"print how many of its characters are letters from \"{a}\", in "
                              "either case",
                    lambda a: [f"print(sum(1 for c in text if c.lower() in \"{a}\"))"],
                    lambda t, a: str(sum(1 for c in t if c.lower() in a)),
                    "with no matching letters the count is 0"),
    "words": Final(lambda a: "print how many words it has (a word is a run of characters "
                              "other than spaces)",
                    lambda a: ["print(len(text.split()))"], lambda t, a: str(len(t.split())),
                    "splitting on any run of spaces ignores empty pieces, so an empty text "
                    "has 0 words"),
    "pal": Final(lambda a: "print YES if it reads the same forwards and backwards (every "
                            "character counts, spaces and case included), otherwise NO",
                  lambda a: ["print(\"YES\" if text == text[::-1] else \"NO\")"],
                  lambda t, a: "YES" if t == t[::-1] else "NO",
                  "an empty text reads the same both ways, so it is a palindrome"),
    "common": Final(lambda a: "print the letter that appears most often in it, ignoring case, "
                               "as a lowercase letter (the alphabetically first one on a tie, "
                               "NONE if it has no letters)",
                     lambda a: ["letters = [c for c in text.lower() if \"a\" <= c <= \"z\"]",
                                "if letters:",
                                "    best = max(letters.count(c) for c in set(letters))",
                                "    print(min(c for c in set(letters) if "
                                "letters.count(c) == best))",
                                "else:",
                                "    print(\"NONE\")"],
                     lambda t, a: _common_letter(t),
                     "without any letter there is no most common one, hence NONE"),
}
TEXT_FINALS_BY_LEVEL = {1: ("print", "len", "count"), 2: ("print", "len", "count", "words"),
                         3: tuple(TEXT_FINALS), 4: tuple(TEXT_FINALS),
                         5: tuple(TEXT_FINALS)}
