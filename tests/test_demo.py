"""`pairlib demo`: data, a pair set and a replay of ticks, offline on the simulator."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pairlib.app import demo
from pairlib.app.cli import app
from pairlib.app.demo import DemoStep, DemoStepFailed
from pairlib.edges.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_every_step_offline_and_a_rerun_repeats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data, pairs, ticks, a backtest, a sweep and the report index, each a kept report; the
    index links them; a second run finds everything done and writes no new report."""
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["demo", "--ticks", "2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "48 symbols kept" in out
    reports = re.findall(r"report: (\S+\.ipynb)", out)
    assert reports[:3] == [
        "outputs/pairs/2026-06-01T0000Z-generate_pairs.ipynb",
        "outputs/ticks/2026/06/2026-06-01T0400Z-tick.ipynb",
        "outputs/ticks/2026/06/2026-06-01T0800Z-tick.ipynb",
    ]
    assert reports[3].startswith("outputs/backtests/") and reports[4].startswith("outputs/sweeps/")
    assert len(re.findall(r"tick 2026-06-01 \d\d:00Z  ok", out)) == 2
    assert re.search(r"backtest 2026-03-0\d to 2026-05-31: \d+ trades", out)
    assert re.search(r"sweep of 4 combinations: best entry", out)
    index = tmp_path / "outputs" / "index.html"
    assert f"reports: {index.relative_to(tmp_path)}" in out or str(index) in out
    html = index.read_text()
    for path in reports:
        assert (tmp_path / path).exists()
        rendered = Path(path).relative_to("outputs").with_suffix(".html")
        assert (tmp_path / "outputs" / rendered).exists() and str(rendered) in html
    with Store.at(tmp_path / ".state" / "demo") as db:
        ticks = db.query("SELECT as_of, status, notebook_path FROM ticks ORDER BY as_of")
    assert list(ticks.status) == ["ok", "ok"]
    assert list(ticks.notebook_path) == reports[1:3]
    # the shipped params are untouched: the demo keeps its state apart
    assert not (tmp_path / ".state" / "pairlib.db").exists()

    notebooks = sorted((tmp_path / "outputs").rglob("*.ipynb"))
    again = CliRunner().invoke(app, ["demo", "--ticks", "2"])
    assert again.exit_code == 0, again.output
    assert "resuming" in again.output and "report: " not in again.output
    assert sorted((tmp_path / "outputs").rglob("*.ipynb")) == notebooks


def _fake_steps(calls: list[str], fail_at: str | None) -> Any:
    """Stand-in for ``demo_steps``: records each run, fails once at ``fail_at``."""
    failed: set[str] = set()

    def steps(start: Any, ticks: int, params_file: Path, outputs: Path,
              console: Any) -> list[DemoStep]:
        def make(key: str) -> DemoStep:
            def run() -> str:
                calls.append(key)
                if key == fail_at and key not in failed:
                    failed.add(key)
                    raise DemoStepFailed(f"{key} broke")
                return f"{key} done"
            return DemoStep(key, key, run)
        return [make("data"), make("pairs")] + [make(f"tick-{i}") for i in range(ticks)] \
            + [make("report")]
    return steps


def test_a_rerun_continues_after_the_last_finished_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted demo resumes: the steps it finished are not run again (no repeated
    trade or report), the failed one is; a new plan or --fresh starts over."""
    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    calls: list[str] = []
    monkeypatch.setattr(demo, "demo_steps", _fake_steps(calls, fail_at="tick-1"))
    monkeypatch.setattr(demo, "_print_positions", lambda state, console: None)
    first = CliRunner().invoke(app, ["demo", "--ticks", "3"])
    assert first.exit_code == 1 and "tick-1 broke" in first.output
    assert calls == ["data", "pairs", "tick-0", "tick-1"]
    record = json.loads((tmp_path / ".state" / "demo" / demo.DEMO_PROGRESS).read_text())
    assert list(record["done"]) == ["data", "pairs", "tick-0"]

    calls.clear()
    second = CliRunner().invoke(app, ["demo", "--ticks", "3"])
    assert second.exit_code == 0, second.output
    assert "resuming" in second.output
    assert calls == ["tick-1", "tick-2", "report"]

    calls.clear()
    again = CliRunner().invoke(app, ["demo", "--ticks", "3"])
    assert again.exit_code == 0 and calls == []  # everything was done

    (tmp_path / ".state" / "demo" / "marker").touch()
    calls.clear()
    other = CliRunner().invoke(app, ["demo", "--ticks", "2"])  # a different plan
    assert other.exit_code == 0 and calls == ["data", "pairs", "tick-0", "tick-1", "report"]
    assert not (tmp_path / ".state" / "demo" / "marker").exists()  # state started over

    calls.clear()
    fresh = CliRunner().invoke(app, ["demo", "--ticks", "2", "--fresh"])
    assert fresh.exit_code == 0 and calls == ["data", "pairs", "tick-0", "tick-1", "report"]
