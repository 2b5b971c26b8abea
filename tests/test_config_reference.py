"""docs/config.md is generated from the config models (`scripts/config_reference.py`) and
must be current: a model edited without regenerating it fails here, with the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "config_reference.py"


def test_config_reference_is_current() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def test_config_reference_needs_no_torch(tmp_path: Path) -> None:
    """The reference reads the models only: neither torch nor TRL is imported for it."""
    out = tmp_path / "config.md"
    code = (f"import runpy, sys\nsys.argv = ['config_reference', '--out', {str(out)!r}]\n"
            f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print([m for m in ('torch', 'transformers', 'trl', 'vllm') if m in sys.modules])\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
    assert out.read_text(encoding="utf-8").startswith("# Configuration reference")
