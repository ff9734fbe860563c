"""The documentation's cross-references resolve.

The docs and docstrings point at each other by file and section title (``docs/training-log.md,
"Input injection"``) and by relative Markdown links. Sections move between files as the docs
grow; these tests fail when a quoted section or a linked file no longer exists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    + [p for folder in ("pnp_stable", "operators", "denoisers", "cli", "bench") for p in (ROOT / folder).rglob("*.py")]
)
# `docs/training-log.md, "Input injection"`, `training.md ("A budgeted GPU run")`, `section "Idle blocks"`:
# a Markdown file name, then within a few characters a quoted title.
SECTION_REFERENCE = re.compile(r'(?:docs/)?([\w-]+\.md)[,:]?\s*\(?(?:section\s+)?["“]([^"”]{3,80})["”]')
MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def _flat(path: Path) -> str:
    return " ".join(path.read_text(encoding="utf-8").split())


def _titles(path: Path) -> list[str]:
    """Headings and bold paragraph lead-ins (the docs' two ways of titling a section)."""
    text = path.read_text(encoding="utf-8")
    titles = [m.group(1).strip() for m in re.finditer(r"^#+\s+(.+)$", text, re.M)]
    titles += [" ".join(m.group(1).split()) for m in re.finditer(r"(?:^|\n\n)\*\*(.+?)\*\*", text, re.S)]
    return titles


def _document(name: str) -> Path | None:
    for candidate in (ROOT / "docs" / name, ROOT / name, ROOT / "examples" / name):
        if candidate.exists():
            return candidate
    return None


def _section_references() -> list[tuple[str, str, str]]:
    found = []
    for source in SOURCES:
        for m in SECTION_REFERENCE.finditer(_flat(source)):
            found.append((str(source.relative_to(ROOT)), m.group(1), m.group(2)))
    return found


def test_the_docs_quote_sections_by_title():
    # Guards the guard: if the pattern stopped matching, every other test here would pass vacuously.
    assert len(_section_references()) >= 30


@pytest.mark.parametrize("source,document,title", _section_references())
def test_a_quoted_section_exists(source, document, title):
    path = _document(document)
    assert path is not None, f"{source} refers to {document}, which does not exist"
    assert any(title in t for t in _titles(path)), f'{source} refers to {document}, "{title}": no such section'


@pytest.mark.parametrize("source", [p for p in SOURCES if p.suffix == ".md"], ids=lambda p: p.name)
def test_relative_markdown_links_resolve(source):
    text = source.read_text(encoding="utf-8")
    missing = [link for link in MARKDOWN_LINK.findall(text)
               if "://" not in link and not (source.parent / link).exists()]
    assert not missing, f"{source.name} links to missing files: {missing}"
