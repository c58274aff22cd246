"""Write a suite's figures into ``docs/RELIABILITY.md`` between its own markers.

Each reliability suite owns one section, delimited by ``<!-- begin:NAME -->`` and
``<!-- end:NAME -->``; the suite rewrites only its section, so the document holds the figures
of the last run and cannot drift from the code. A suite with a long version under
``PAIRLIB_SOAK=1`` (``make soak``) writes that into its own section (``NAME-soak``), so a later
``make test`` does not replace the soak's figures with the short version's. A file lock
serialises writers (pytest-xdist runs suites in parallel).

A section is rewritten only from a whole run of its suite: each suite runs in one pytest-xdist
worker (``make test`` runs pytest-xdist with ``--dist loadfile``), and a selection (``-k``,
``-m`` or node ids) keeps the last whole run's figures (:func:`selected`).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

DOC = Path(__file__).resolve().parents[1] / "docs" / "RELIABILITY.md"


def write_section(name: str, markdown: str, doc: Path = DOC) -> None:
    """Replace section ``name`` of ``doc`` with ``markdown`` (appended if absent)."""
    begin, end = f"<!-- begin:{name} -->", f"<!-- end:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    with FileLock(str(doc) + ".lock"):
        text = doc.read_text() if doc.exists() else "# Reliability\n"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        doc.write_text(text)


def selected(config: pytest.Config) -> str | None:
    """What narrows this pytest run to part of a suite (``-k``, ``-m``, node ids), or None
    for a whole run."""
    opt = config.option
    if getattr(opt, "keyword", ""):
        return f"-k {opt.keyword}"
    if getattr(opt, "markexpr", ""):
        return f"-m {opt.markexpr}"
    ids = [a for a in config.args if "::" in a]
    return " ".join(ids) or None
