"""Helper process for verifications requested from non-main threads (see `limits`).

Reads one JSON request per line on stdin, answers one JSON line on stdout. It verifies in
its own main thread, so the SIGALRM deadline applies; the parent kills it if even that fails.
It exits when stdin closes (the parent went away).
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    """Serve verification requests until stdin closes."""
    from r1pipe.rewards import verifiers

    verifiers.verify_here(None, "1", "1", timeout=30.0)  # warm math-verify before "ready"
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            req = json.loads(line)
            verdict = verifiers.verify_here(
                req.get("task"), req["gold"], req["region"], req.get("numbers"),
                req.get("target"), req.get("timeout"),
            )
        except Exception:  # a malformed request must not take the helper down
            verdict = verifiers.WRONG
        out.write(json.dumps({"verdict": verdict}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
