"""Every relative link in README.md and docs/*.md points at a file that exists (or one of the
pages other branches write), and every docs page is linked from the README or the docs index."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Written in other branches at the same time; linked ahead of the merge.
ELSEWHERE = {"docs/units.md", "docs/packaging.md", "docs/security.md", "docs/benchmarks.md"}
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_relative_links_resolve():
    broken = []
    for page in pages():
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target, _ in LINK.findall(text):
            if re.match(r"^[a-z]+:", target):
                continue
            path = (page.parent / target).resolve()
            rel = path.relative_to(REPO).as_posix() if REPO in path.parents or path == REPO else str(path)
            if not path.exists() and rel not in ELSEWHERE:
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken


def test_every_docs_page_is_linked_from_the_readme_or_the_index():
    linked = set()
    for page in (REPO / "README.md", REPO / "docs" / "README.md"):
        for target, _ in LINK.findall(page.read_text()):
            linked.add((page.parent / target).resolve())
    orphans = [p.name for p in (REPO / "docs").glob("*.md") if p.name != "README.md" and p.resolve() not in linked]
    assert not orphans, orphans
