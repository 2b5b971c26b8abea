"""The README is the front door: short, and it links every page under docs/."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_and_links_every_docs_page() -> None:
    readme = ROOT / "README.md"
    assert readme.stat().st_size < 12 * 1024, "README.md: keep it under 12 KB; depth goes to docs/"
    text = readme.read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#]+)", text))
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md")}
    assert not pages - linked, f"README.md does not link {sorted(pages - linked)}"
    assert not [p for p in linked if not (ROOT / p).is_file()], "README.md links a missing page"
