"""Write `configs/benchmarks/arithmetic_words.jsonl`: the demo's outside benchmark.

The demo trains and evaluates on r1pipe's own arithmetic generator (`r1pipe.data.tasks`),
so its eval rows say how well a model learned *that generator's* distribution. This set is
made independently of it (nothing here imports r1pipe): word problems and spelled-out
operations, parentheses and negative numbers, in three bands of difficulty, so that a gain
that only holds for "What is 2 + 3 * 4?" shows as such. Fixed seed; run it again to get the
same file:

    python scripts/arithmetic_words.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "configs" / "benchmarks" / "arithmetic_words.jsonl"
PER_BAND = 20

# (template, answer) with a, b, c drawn per band; every template is a different phrasing
TEMPLATES = [
    ("Sam has {a} apples. He buys {b} bags with {c} apples in each. How many apples does he "
     "have now?", lambda a, b, c: a + b * c),
    ("A shelf holds {a} rows of {b} books. {c} books are taken away. How many books are left "
     "on the shelf?", lambda a, b, c: a * b - c),
    ("What is {a} plus {b} times {c}?", lambda a, b, c: a + b * c),
    ("Subtract {b} from the product of {a} and {c}.", lambda a, b, c: a * c - b),
    ("Compute ({a} + {b}) * {c}.", lambda a, b, c: (a + b) * c),
    ("What is -{a} + {b} * {c}?", lambda a, b, c: -a + b * c),
    ("Calculate {a} - {b} - {c}.", lambda a, b, c: a - b - c),
    ("The temperature was {a} degrees. It fell by {b} degrees each hour for {c} hours. What "
     "is the temperature now?", lambda a, b, c: a - b * c),
    ("Find {a} times the sum of {b} and {c}.", lambda a, b, c: a * (b + c)),
    ("Tickets cost {a} dollars each. Ana buys {b} tickets and pays with a {c}-dollar coupon "
     "off the total. How much does she pay?", lambda a, b, c: a * b - c),
]

BANDS = {1: (1, 9), 2: (2, 20), 3: (10, 50)}


def main() -> None:
    rng = random.Random(20261202)
    lines = []
    for band, (lo, hi) in BANDS.items():
        for i in range(PER_BAND):
            template, solve = TEMPLATES[(i + band) % len(TEMPLATES)]
            a, b, c = (rng.randint(lo, hi) for _ in range(3))
            lines.append(json.dumps({
                "id": f"words-{band}-{i:02d}",
                "prompt": template.format(a=a, b=b, c=c),
                "answer": str(solve(a, b, c)),
                "band": band,
            }))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} problems to {OUT}")


if __name__ == "__main__":
    main()
