"""The reliability document's writer: a suite rewrites only its own section, and only from a
whole run (a ``-k``/``-m``/node-id selection keeps the last whole run's figures)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from reliability_doc import selected, write_section


def _config(args: list[str], keyword: str = "", markexpr: str = "") -> Any:
    return SimpleNamespace(args=args, option=SimpleNamespace(keyword=keyword,
                                                             markexpr=markexpr))


@pytest.mark.parametrize(("args", "keyword", "markexpr", "why"), [
    (["tests"], "", "", None),
    (["tests/test_fault_matrix.py"], "", "", None),
    (["tests/test_fault_matrix.py"], "pairs", "", "-k pairs"),
    (["tests"], "", "not slow", "-m not slow"),
    (["tests/test_fault_matrix.py::test_faults_in_pairs"], "", "",
     "tests/test_fault_matrix.py::test_faults_in_pairs"),
])
def test_a_selection_is_told_apart_from_a_whole_run(args: list[str], keyword: str,
                                                     markexpr: str, why: str | None) -> None:
    assert selected(_config(args, keyword, markexpr)) == why


def test_a_section_is_replaced_in_place_and_a_new_one_appended(tmp_path: Path) -> None:
    doc = tmp_path / "R.md"
    doc.write_text("# R\n\n<!-- begin:a -->\nold a\n<!-- end:a -->\n\n"
                   "<!-- begin:a-soak -->\nsoak a\n<!-- end:a-soak -->\n")
    write_section("a", "new a\n", doc)
    write_section("b", "b\n", doc)
    assert doc.read_text() == ("# R\n\n<!-- begin:a -->\nnew a\n<!-- end:a -->\n\n"
                               "<!-- begin:a-soak -->\nsoak a\n<!-- end:a-soak -->\n\n"
                               "<!-- begin:b -->\nb\n<!-- end:b -->\n")
