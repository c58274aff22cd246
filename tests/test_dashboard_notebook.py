"""``notebooks/dashboard.ipynb`` and :mod:`pairlib.report.dashboard`: equity, positions over
time, signals per pair and run health, read from a store and the outputs without writing."""

from __future__ import annotations

import ast
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import plotly.graph_objects as go
import pytest
import yaml
from test_notebooks_interactive import _logic

from pairlib.app.runner import run_notebook
from pairlib.config import load_params
from pairlib.edges.store import Store
from pairlib.report import dashboard

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "dashboard.ipynb"
T0 = datetime(2026, 6, 1, 4, tzinfo=UTC)
BAR = timedelta(hours=4)
PAIR, OTHER = "A/USDT:USDT~B/USDT:USDT", "C/USDT:USDT~D/USDT:USDT"


def _fill(db: Store, k: int, tick: datetime, leg: str, side: str, amount: float,
          action: str) -> None:
    order = {"client_id": f"c{k}", "tick_as_of": tick, "pair_id": PAIR, "leg": leg,
             "action": action, "symbol": f"{leg.upper()}/USDT:USDT", "side": side,
             "amount": amount, "filled": amount, "status": "closed", "created_at": tick,
             "updated_at": tick}
    fill = {"client_id": f"c{k}", "symbol": order["symbol"], "side": side, "amount": amount,
            "price": 1.0, "fee": 0.0, "ts": tick}
    db.apply_order_fill(order, fill, 0.0)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose store holds three ticks: PAIR entered short at the first (sell y, buy
    x), held, exited at the third; OTHER never signalled; and one run listed under outputs."""
    (tmp_path / "params").mkdir()
    raw = yaml.safe_load((ROOT / "params" / "pairlib.yaml").read_text())
    raw["state_dir"] = "state"
    (tmp_path / "params" / "pairlib.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    params = load_params("params/pairlib.yaml")
    with Store.at(params.state_dir) as db:
        for i, (z, signal, action, equity) in enumerate(
                [(2.1, -1, "enter_short", 10_000.0), (1.2, -1, "hold", 10_040.0),
                 (0.3, 0, "exit", 10_025.0)]):
            tick = T0 + i * BAR
            db.start_tick(tick, tick, "normal")
            db.save_decision(tick, PAIR, z, signal, action, "why")
            db.save_decision(tick, OTHER, 0.1, 0, "none", "flat")
            db.save_equity(tick, equity, gross_notional=200.0 if i < 2 else 0.0)
            db.finish_tick(tick, "ok", tick + timedelta(seconds=3), 3.0)
        _fill(db, 1, T0, "y", "sell", 100.0, "enter_short")
        _fill(db, 2, T0, "x", "buy", 2.0, "enter_short")
        _fill(db, 3, T0 + 2 * BAR, "y", "buy", 100.0, "exit")
        _fill(db, 4, T0 + 2 * BAR, "x", "sell", 2.0, "exit")
    run = nbformat.v4.new_notebook()
    run.metadata["papermill"] = {"start_time": "2026-11-30T00:00:00+00:00", "end_time": None,
                                 "duration": None, "exception": True, "parameters": {}}
    (tmp_path / "outputs" / "ticks").mkdir(parents=True)
    nbformat.write(run, tmp_path / "outputs" / "ticks" / "t-tick.ipynb")
    return tmp_path


def test_positions_over_time_follow_the_fills(project: Path) -> None:
    data = dashboard.load_dashboard()
    pos = dashboard.positions_over_time(data)
    mine = pos[pos["pair_id"] == PAIR]
    assert list(mine["position"]) == [-1, -1, 0]  # short the spread: y sold
    assert list(mine["amount_y"]) == [-100.0, -100.0, 0.0]
    assert list(mine["amount_x"]) == [2.0, 2.0, 0.0]
    assert list(mine["tick_as_of"]) == [T0, T0 + BAR, T0 + 2 * BAR]


def test_signals_equity_and_run_health(project: Path) -> None:
    data = dashboard.load_dashboard()
    sig = dashboard.signals_per_pair(data).set_index("pair_id")
    assert sig.loc[PAIR, ["ticks", "long_signals", "short_signals", "entries", "closes"]
                   ].tolist() == [3, 0, 2, 1, 1]
    assert sig.loc[PAIR, "last_action"] == "exit" and sig.index[0] == PAIR
    assert sig.loc[OTHER, "short_signals"] == 0
    line = dashboard.summary_line(data)
    assert "**3 ticks**" in line and "10,025.00" in line and "+25.00" in line
    assert "**0 pairs open**" in line and "**1 failed or incomplete**" in line
    health = dashboard.run_health(data)
    assert health.to_dict("records")[0] | {"last_run": None} == {
        "kind": "tick", "runs": 1, "ok": 0, "failed": 1, "median_s": None, "max_s": None,
        "last_run": None, "last_status": "failed"}
    assert "1 of 1 runs failed" in dashboard.health_line(data)
    for spec in (dashboard.equity_figure(data), dashboard.positions_figure(data),
                 dashboard.signals_figure(data), dashboard.runs_figure(data)):
        go.Figure(spec)  # valid plotly
    assert dashboard.equity_figure(data)["data"][0]["y"] == [10_000.0, 10_040.0, 10_025.0]


def test_no_store_yet_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.chdir(tmp_path)
    data = dashboard.load_dashboard()
    assert not (tmp_path / ".state").exists() and not (tmp_path / "outputs").exists()
    assert "No state database" in dashboard.summary_line(data)
    assert len(dashboard.positions_over_time(data)) == 0
    assert len(dashboard.signals_per_pair(data)) == 0
    go.Figure(dashboard.positions_figure(data))


def test_notebook_is_thin_with_headings_and_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.get("tags", [])
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert not any("sqlite3" in c.source for c in code)
    for cell in code:  # the project's own check: no definitions, no loops or branches
        assert _logic(ast.parse(cell.source)) == [], cell.source
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    assert headings == ["# Dashboard", "## Equity", "## Positions over time",
                        "## Signals per pair", "## Run health"]


@pytest.mark.slow
def test_notebook_runs_headless_and_writes_nothing(project: Path) -> None:
    def snapshot() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in project.rglob("*")
                if p.is_file() and "-wal" not in p.name and "-shm" not in p.name}

    before = snapshot()
    out = project.parent / "dashboard-run.ipynb"
    res = run_notebook(NOTEBOOK, out, {}, cwd=project / "outputs")  # any folder of the project
    assert res.ok, res.error
    assert snapshot() == before
    nb = json.loads(out.read_text())
    figures = [o["data"]["application/vnd.plotly.v1+json"] for c in nb["cells"]
               for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get(
                   "data", {})]
    assert len(figures) == 4
    text = out.read_text()
    assert "**3 ticks**" in text and "1 of 1 runs failed" in text
