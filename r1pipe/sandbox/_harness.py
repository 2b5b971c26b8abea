"""Calls one function of a program for a functional test (LiveCodeBench's "call-based" tests).

Copied next to the program as `harness.py` and run as `python -I harness.py FUNC_NAME`, inside
the sandbox. stdin holds the arguments, one JSON value per line; the result goes to stdout as
one JSON line. What the program itself prints goes to stderr, so its debugging output cannot
be mistaken for the result. The program gets LiveCodeBench's usual preamble (`typing`,
`collections`, `math`, ... names) because LeetCode-style starter code uses `List[int]`
without importing it. A `class Solution` method wins over a module-level function of the
same name, as on LeetCode.

Standard library only, and nothing from r1pipe: the sandbox hides everything but the
interpreter.
"""

import json
import sys

PREAMBLE = (
    "from typing import *\n"
    "from collections import *\n"
    "from itertools import *\n"
    "from functools import *\n"
    "from heapq import *\n"
    "from bisect import *\n"
    "import math, string, re, collections, itertools, functools, heapq, bisect\n"
)


def main() -> None:
    func_name = sys.argv[1]
    args = [json.loads(line) for line in sys.stdin.read().split("\n") if line.strip()]
    with open("main.py", encoding="utf-8") as f:
        source = f.read()
    result_out = sys.stdout
    sys.stdout = sys.stderr
    namespace = {"__name__": "solution", "__builtins__": __builtins__}
    exec(compile(PREAMBLE, "<preamble>", "exec"), namespace)
    exec(compile(source, "main.py", "exec"), namespace)
    solution = namespace.get("Solution")
    if isinstance(solution, type) and hasattr(solution, func_name):
        target = getattr(solution(), func_name)
    elif callable(namespace.get(func_name)):
        target = namespace[func_name]
    else:
        raise SystemExit(f"no function or Solution method named {func_name!r}")
    result = target(*args)
    sys.stdout = result_out
    result_out.write(json.dumps(result) + "\n")
    result_out.flush()


if __name__ == "__main__":
    main()
