"""Sections of docs/benchmarks.md that belong to one benchmark module (or to the team's
notes), between two HTML comment marks: found in the page's text, and put in place of their
old text, so that rewriting the page or one section keeps the others."""

from __future__ import annotations

from pathlib import Path


def marks(name: str) -> tuple[str, str]:
    """The opening and closing marks of section ``name``."""
    return f"<!-- {name} -->", f"<!-- /{name} -->"


def section_of(text: str, name: str) -> str | None:
    """Section ``name`` in a page's text, marks included; None when it has none."""
    start_mark, end_mark = marks(name)
    start, end = text.find(start_mark), text.find(end_mark)
    if start < 0 or end < start:
        return None
    return text[start:end + len(end_mark)]


def section_write(path: Path, name: str, new: str) -> None:
    """Put ``new`` in place of section ``name`` of the page, or at its end when it has none."""
    text = path.read_text()
    old = section_of(text, name)
    path.write_text(text.replace(old, new) if old else text.rstrip("\n") + "\n\n" + new + "\n")
