"""`pairlib demo`: data, a pair set and a replay of ticks, offline on the simulator."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pairlib.app.cli import app
from pairlib.edges.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_replays_ticks_and_reports_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--ticks", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "48 symbols kept" in out
    assert "pairs notebook: outputs/pairs/2026-06-01T0000Z-generate_pairs.ipynb" in out
    reports = re.findall(r"report: (\S+)", out)
    assert reports == [
        "outputs/ticks/2026/06/2026-06-01T0400Z-tick.ipynb",
        "outputs/ticks/2026/06/2026-06-01T0800Z-tick.ipynb",
    ]
    for path in reports:
        assert (tmp_path / path).exists()
    assert len(re.findall(r"tick 2026-06-01 \d\d:00Z  ok", out)) == 2
    assert "open positions after the replay" in out
    with Store.at(tmp_path / ".state" / "demo") as db:
        ticks = db.query("SELECT as_of, status, notebook_path FROM ticks ORDER BY as_of")
    assert list(ticks.status) == ["ok", "ok"]
    assert list(ticks.notebook_path) == reports
    # the shipped params are untouched: the demo keeps its state apart
    assert not (tmp_path / ".state" / "pairlib.db").exists()
