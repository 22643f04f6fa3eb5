"""bench/RESULTS.md is shared: each benchmark owns one section between its begin and end markers.

A benchmark rewrites only its own section, so running one benchmark keeps every other's figures.
"""

from __future__ import annotations

from pathlib import Path


def markers(script: str) -> tuple[str, str]:
    """The begin and end markers of ``script``'s section (an HTML comment: invisible when rendered)."""
    return f"<!-- {script}: begin -->", f"<!-- {script}: end -->"


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Replace the section between ``begin`` and ``end`` in ``path`` (or append it), keeping everything else."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
