"""The backtest report: its metrics beyond the equity curve's, drawdown and monthly returns
checked against values computed by hand; its figure specs valid plotly; the notebook thin;
``pairlib backtest`` runs it into ``outputs/backtests/`` (window and costs checked before any
kernel, a failed report kept, exit 1); and the notebook runs from ``notebooks/`` with no
injected parameter.

The notebook runs are hermetic: a temporary project (``params/``, ``notebooks/`` and a
``pyproject.toml`` marker) is the project root, shared by the module's runs so that the
candle cache is fetched once.
"""

from __future__ import annotations

import ast
import json
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from test_notebooks_interactive import _logic
from typer.testing import CliRunner

from pairlib.app import jobs
from pairlib.app.cli import app
from pairlib.app.jobs import backtest_window, notebook_defaults, run_backtest_job
from pairlib.app.runner import RunResult, backtest_output_path, read_scraps, run_notebook
from pairlib.clock import SettableClock
from pairlib.config import Params, apply_overrides, load_params
from pairlib.core.metrics import performance
from pairlib.engine.backtest import TRADE_COLUMNS, BacktestResult, FillModel
from pairlib.errors import ConfigError
from pairlib.report import backtest_charts as bc
from pairlib.report.tick_charts import ENTRY_MARKERS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "backtest.ipynb"
H = timedelta(hours=1)
BAR = 4 * H
T0 = datetime(2025, 2, 4, tzinfo=UTC)


def _ts(*hours: float) -> list[pd.Timestamp]:
    return [pd.Timestamp(T0 + h * H) for h in hours]


def _trades() -> pd.DataFrame:
    """Three round trips: +10 held 8 h, -5 held 4 h, 0 held 12 h."""
    rows = [
        ("A~B", "long", 0, 8, -1.2, -0.3, "reverted", 10.0, 2.0, -1.0, 100.0),
        ("C~D", "short", 4, 8, 1.5, np.nan, "end of test", -5.0, 1.0, 0.5, 50.0),
        ("A~B", "short", 12, 24, 1.1, 3.6, "stop", 0.0, 1.0, 0.0, 0.0),
    ]
    out = []
    for pid, side, t_in, t_out, z_in, z_out, why, net, fees, funding, budget in rows:
        out.append({"pair_id": pid, "side": side, "entry_time": _ts(t_in)[0],
                    "exit_time": _ts(t_out)[0], "entry_z": z_in, "exit_z": z_out,
                    "exit_reason": why, "amount_y": 1.0, "amount_x": -1.0,
                    "gross_pnl": net + fees - funding, "fees": fees, "funding": funding,
                    "net_pnl": net, "risk_budget": budget,
                    "loss_multiple": -net / budget if budget > 0 else np.nan})
    return pd.DataFrame(out, columns=list(TRADE_COLUMNS))


def _series(values: Sequence[float], name: str) -> pd.Series:
    index = pd.DatetimeIndex(_ts(*(4 * k for k in range(1, len(values) + 1))),
                             name="close_time")
    return pd.Series(list(values), index=index, name=name, dtype=float)


def _result(trades: pd.DataFrame | None = None, taker_fee: float = 0.001) -> BacktestResult:
    """A small result: 4 bars, two pairs' decisions, the trades of :func:`_trades`."""
    equity = _series([1000.0, 1100.0, 900.0, 1000.0], "equity")
    exposure = _series([0.0, 550.0, 900.0, 0.0], "gross_notional")
    decisions = pd.DataFrame({
        "close_time": list(equity.index) * 2,
        "pair_id": ["A~B"] * 4 + ["C~D"] * 4,
        "z": [-1.2, -0.3, 0.4, 1.1, 0.2, 1.5, 1.7, 1.9],
        "action": ["enter_long", "exit", "none", "enter_short", "none", "enter_short",
                   "hold", "hold"],
        "reason": [""] * 8,
    })
    curve = np.concatenate([[1000.0], equity.to_numpy()])
    chosen = pd.DataFrame({"y": ["A", "C"], "x": ["B", "D"], "beta": [1.0, 0.5],
                           "alpha": [0.0, 0.1], "pvalue": [0.001, 0.002],
                           "half_life": [3.0, 4.0]})
    return BacktestResult(
        trades=_trades() if trades is None else trades, equity=equity,
        pair_sets={T0: chosen}, metrics=performance(curve, int(BAR.total_seconds() * 1000)),
        fill_model=FillModel(slippage_bps=2.0, taker_fee=taker_fee),
        notes=("universe chosen by today's volume (survivorship bias)",),
        exposure=exposure, decisions=decisions)


# ------------------------------------------------------------------ metrics by hand


def test_trade_stats_by_hand() -> None:
    r = _result()
    s = bc.trade_stats(r.trades, r.equity, r.exposure, taker_fee=0.001, bar=BAR)
    assert s.n_trades == 3
    assert s.hit_rate == pytest.approx(1 / 3)  # a net PnL of 0 is no win
    assert s.avg_holding_hours == pytest.approx((8 + 4 + 12) / 3)
    assert s.fees_paid == pytest.approx(4.0)
    assert s.funding_paid == pytest.approx(0.5)  # received -1 + 0.5 + 0 -> paid 0.5
    assert s.traded_notional == pytest.approx(4000.0)  # 4 USDT of fees at 0.1%
    assert s.turnover == pytest.approx(4.0)  # over a mean equity of 1,000
    assert s.turnover_per_year == pytest.approx(4.0 * 365 * 24 / 16)  # 4 bars of 4 h
    assert s.exposure == pytest.approx((0 + 0.5 + 1.0 + 0) / 4)


def test_trade_stats_without_trades_or_fees() -> None:
    r = _result(trades=pd.DataFrame(columns=list(TRADE_COLUMNS)))
    s = bc.trade_stats(r.trades, r.equity, r.exposure, taker_fee=0.0005, bar=BAR)
    assert s.n_trades == 0 and math.isnan(s.hit_rate) and math.isnan(s.avg_holding_hours)
    assert s.fees_paid == 0.0 and s.funding_paid == 0.0 and s.turnover == 0.0
    free = bc.trade_stats(_trades(), r.equity, r.exposure, taker_fee=0.0, bar=BAR)
    assert math.isnan(free.traded_notional) and math.isnan(free.turnover)
    with pytest.raises(ValueError, match="aligned"):
        bc.trade_stats(_trades(), r.equity, r.exposure.iloc[:-1], 0.001, BAR)


def test_metrics_merge_the_curve_and_the_trades_as_json() -> None:
    m = bc.metrics(_result(), "4h")
    assert m["total_return"] == pytest.approx(0.0)
    assert m["max_drawdown"] == pytest.approx(900 / 1100 - 1)
    assert m["max_drawdown_bars"] == 2 and m["max_drawdown_days"] == pytest.approx(8 / 24)
    assert m["hit_rate"] == pytest.approx(1 / 3) and m["n_trades"] == 3
    json.dumps(m, allow_nan=False)  # glue-able: NaN became None
    empty = bc.metrics(_result(trades=pd.DataFrame(columns=list(TRADE_COLUMNS))), "4h")
    assert empty["hit_rate"] is None and empty["avg_holding_hours"] is None
    frame = bc.metrics_frame(_result(), "4h")
    values = dict(zip(frame["metric"], frame["value"], strict=True))
    assert values["hit_rate"] == "33.3%" and values["fees_paid"] == "4.00 USDT"
    assert values["avg_holding_hours"] == "8.0 h (0.33 days)"


def test_drawdown_counts_the_initial_equity_as_the_first_peak() -> None:
    eq = _series([110.0, 99.0, 121.0, 100.0], "equity")
    np.testing.assert_allclose(bc.drawdown(eq, 100.0), [0.0, -0.1, 0.0, 100 / 121 - 1])
    np.testing.assert_allclose(bc.drawdown(eq, 120.0),
                               [110 / 120 - 1, 99 / 120 - 1, 0.0, 100 / 121 - 1])
    # The curve's deepest point is the metrics' max drawdown.
    curve = np.array([120.0, *eq])
    assert bc.drawdown(eq, 120.0).min() == pytest.approx(performance(curve, 14_400_000)
                                                         .max_drawdown)


def test_monthly_returns_by_hand() -> None:
    points = {
        "2025-01-20T00:00Z": 1050.0,
        "2025-02-01T00:00Z": 1100.0,  # the close of January's last candle
        "2025-02-15T00:00Z": 1300.0,
        "2025-03-01T00:00Z": 990.0,  # February ends at 990
        "2025-03-01T04:00Z": 1000.0,
        "2025-04-01T00:00Z": 1089.0,  # March ends at 1,089
        "2026-01-10T00:00Z": 544.5,
    }
    eq = pd.Series(points.values(), index=pd.DatetimeIndex(list(points)), dtype=float)
    table = bc.monthly_returns(eq, 1000.0)
    assert list(table.index) == [2025, 2026] and list(table.columns) == list(range(1, 13))
    np.testing.assert_allclose(table.loc[2025, [1, 2, 3]], [0.10, -0.10, 0.10])
    assert table.loc[2026, 1] == pytest.approx(-0.5)  # on March 2025's end
    assert table.loc[2025, 4:].isna().all() and table.loc[2026, 2:].isna().all()
    spec = bc.monthly_heatmap(eq, 1000.0)
    go.Figure(spec)  # valid plotly
    (heat,) = spec["data"]
    assert heat["y"] == ["2025", "2026"] and heat["x"][:3] == ["Jan", "Feb", "Mar"]
    assert heat["z"][0][:4] == [10.0, -10.0, 10.0, None] and heat["z"][1][0] == -50.0
    assert bc.monthly_returns(eq.iloc[:0], 1000.0).empty


# ------------------------------------------------------------------ tables and figures


def test_pair_pnl_trade_list_and_losses() -> None:
    t = _trades()
    table = bc.pair_pnl(t)
    assert list(table.index) == ["A~B", "C~D"]  # best net first
    assert table.loc["A~B", "trades"] == 2 and table.loc["A~B", "wins"] == 1
    assert table.loc["A~B", "net_pnl"] == pytest.approx(10.0)
    assert table.loc["C~D", "hit_rate"] == 0.0
    assert list(bc.trade_list(t)["holding_hours"]) == [8.0, 4.0, 12.0]
    assert bc.loss_line(t).startswith("**1 of 3 trades lost money;** the worst lost 0.10×")
    spec = bc.loss_multiple_figure(t)
    go.Figure(spec)
    assert spec["data"][0]["x"] == [-0.1, 0.1]  # the trade without a budget is left out
    assert spec["layout"]["shapes"][0]["x0"] == 1.0  # the budget line
    assert "lost more than" not in bc.loss_line(t.iloc[:1])
    go.Figure(bc.pair_pnl_figure(t))
    assert "3 trades" in bc.trades_line(t) and "stop 1" in bc.trades_line(t)


def test_equity_figure_shows_equity_and_drawdown() -> None:
    r = _result()
    spec = bc.equity_figure(r.equity, 1000.0)
    go.Figure(spec)
    eq, dd = spec["data"]
    assert eq["y"] == [1000.0, 1100.0, 900.0, 1000.0]
    assert dd["yaxis"] == "y2" and dd["y"] == pytest.approx([0.0, 0.0, -18.182, -9.091])


def test_z_figures_mark_every_entry_and_exit() -> None:
    r = _result()
    z = bc.z_history(r.decisions)
    assert list(z.columns) == ["A~B", "C~D"] and z.loc[r.equity.index[3], "A~B"] == 1.1
    figs = bc.z_figures(r, Params().strategy)
    assert [f["layout"]["title"]["text"].split(":")[0] for f in figs] == ["A~B", "C~D"]
    for f in figs:
        go.Figure(f)
    traces = {t["name"]: t for t in figs[0]["data"]}
    long_name, long_symbol, _ = ENTRY_MARKERS[1]
    short_name, short_symbol, _ = ENTRY_MARKERS[-1]
    assert traces[long_name]["marker"]["symbol"] == long_symbol
    assert traces[long_name]["y"] == [-1.2] and traces[short_name]["y"] == [1.1]
    assert traces[short_name]["marker"]["symbol"] == short_symbol
    assert traces["exit (reverted)"]["y"] == [-0.3]
    assert traces["exit (stop)"]["y"] == [3.6]
    assert traces["exit (stop)"]["marker"]["color"] == bc.EXIT_MARKERS["stop"][1]
    # An exit at the end of the test has no z: it is drawn on the z of its bar.
    end = {t["name"]: t for t in figs[1]["data"]}["exit (end of test)"]
    assert end["y"] == [1.5] and end["text"] == ["net -5.00 USDT"]
    bands = sorted(s["y0"] for s in figs[0]["layout"]["shapes"])
    rule = Params().strategy
    assert bands == sorted([0.0, *(k * s for k in (rule.entry, rule.exit, rule.stop)
                                   for s in (1, -1))])
    assert len(bc.z_figures(r, rule, max_pairs=1)) == 1


def test_fill_model_comes_from_params_and_is_stated() -> None:
    params = Params.model_validate({"venue": {"sim_slippage_bps": 3.5}})
    assert bc.fill_model(params) == FillModel(slippage_bps=3.5, taker_fee=FillModel().taker_fee)
    assert bc.fill_model(params, 0.0, 0.001) == FillModel(slippage_bps=0.0, taker_fee=0.001)
    with pytest.raises(ValueError, match=r"taker_fee must be a fraction in \[0, 0.01\)"):
        bc.fill_model(params, taker_fee=0.5)
    with pytest.raises(ValueError, match="slippage_bps"):
        bc.fill_model(params, slippage_bps=-1.0)
    r = _result()
    assert "moved 2 bps against the order, taker fee 0.1% of each fill" in bc.fill_model_line(r)
    text = bc.fill_model_text()
    assert text.startswith("**Fill model:**") and "`slippage_bps`" in text
    assert "`taker_fee`" in text and "funding" in text and "``" not in text
    assert "survivorship" in bc.notes_line(r)
    summary = bc.summary_line(r)
    assert "**3 trades**" in summary and "pairs chosen per month: 2" in summary
    none = BacktestResult(r.trades.iloc[:0], r.equity, {T0: pd.DataFrame()}, r.metrics,
                          r.fill_model)
    assert "no month chose a pair" in bc.summary_line(none)


def test_pair_sets_frame_lists_each_month() -> None:
    frame = bc.pair_sets_frame(_result())
    assert list(frame["chosen_at"]) == [pd.Timestamp(T0)] * 2
    assert list(frame["y"]) == ["A", "C"] and "half_life" in frame.columns


# ------------------------------------------------------------------ the notebook's shape


def _cells() -> list[nbformat.NotebookNode]:
    return list(nbformat.read(NOTEBOOK, as_version=4).cells)


def test_notebook_is_thin_with_markdown_headings() -> None:
    cells = _cells()
    headings = [line.lstrip("#").strip() for c in cells if c.cell_type == "markdown"
                for line in c.source.splitlines() if line.startswith("#")]
    assert headings[:5] == ["Backtest", "Metrics", "Equity and drawdown", "Monthly returns",
                            "PnL per pair"]
    assert {"Trades", "Realized loss against the risk budget",
            "z-scores with entries and exits", "Fill model and notes"} <= set(headings)
    for cell in cells:
        if cell.cell_type == "code":
            assert _logic(ast.parse(cell.source)) == [], f"logic in\n{cell.source}"
            assert "Markdown(\"#" not in cell.source


def test_parameters_are_literals_papermill_reads_and_params_keys() -> None:
    """Every parameter is a literal papermill can inspect, and every ``<section>__<key>``
    names a key of the params tree (a misspelt one would fail every run)."""
    import papermill as pm

    defaults = notebook_defaults(NOTEBOOK)
    assert list(pm.inspect_notebook(str(NOTEBOOK))) == list(defaults)
    assert {"start", "end", "params_file", "slippage_bps", "taker_fee"} <= set(defaults)
    params = load_params(ROOT / "params" / "pairlib.yaml")
    overrides = {k.replace("__", "."): getattr(getattr(params, k.split("__")[0]),
                                                k.split("__")[1])
                 for k in defaults if "__" in k}
    assert len(overrides) >= 5 and all(defaults[k] is None for k in defaults if "__" in k)
    assert apply_overrides(params, overrides, "notebook parameters") == params
    first, last = backtest_window(defaults["start"], defaults["end"], params.data.timeframe)
    assert timedelta(days=28) <= last - first <= timedelta(days=62)


# ------------------------------------------------------------------ the job, before a kernel


@pytest.mark.parametrize(("start", "end", "says"), [
    ("2025-02-04T00:00", "2025-03-01", ["start '2025-02-04T00:00'", "no timezone"]),
    ("2025-02-04T01:00Z", "2025-03-01", ["not a 4h candle close", "2025-02-04T00:00Z or "
                                         "2025-02-04T04:00Z"]),
    ("2025-03-01", "2025-02-04", ["end 2025-02-04T00:00Z must be after start"]),
    ("yesterday", "2025-03-01", ["start 'yesterday' is not an ISO-8601 time or date"]),
])
def test_backtest_window_names_what_is_wrong(start: str, end: str, says: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        backtest_window(start, end, "4h")
    for text in says:
        assert text in str(err.value)


def test_backtest_window_accepts_dates_and_checks_a_real_venue_end() -> None:
    first, last = backtest_window("2025-02-04", "2025-03-01T00:00+00:00", "4h")
    assert (first, last) == (T0, datetime(2025, 3, 1, tzinfo=UTC))
    clock = SettableClock(datetime(2025, 3, 1, 2, tzinfo=UTC))
    assert backtest_window("2025-02-04", "2025-03-01", "4h", clock, "live")[1] == last
    with pytest.raises(ConfigError, match="has not closed yet"):
        backtest_window("2025-02-04", "2025-03-01T04:00Z", "4h", clock, "live")
    backtest_window("2025-02-04", "2025-03-01T04:00Z", "4h", clock, "sim")  # its history


class FakeNotebook:
    """Stands in for :func:`pairlib.app.runner.run_notebook`: records the call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, notebook: Path, output: Path, parameters: Mapping[str, Any],
                 **kwargs: Any) -> RunResult:
        self.calls.append({"notebook": Path(notebook), "output": Path(output),
                           "parameters": dict(parameters),
                           "reserved": Path(output).is_file()})
        return RunResult(Path(output), True, 0.1)


def test_job_passes_the_window_and_only_the_costs_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    shutil.copytree(ROOT / "params", tmp_path / "params")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "scratch"\n')
    monkeypatch.chdir(tmp_path)
    fake = FakeNotebook()
    monkeypatch.setattr(jobs, "run_notebook", fake)
    run_backtest_job()
    run_backtest_job(start="2025-02-04", end="2025-03-01", taker_fee=0.0004)
    defaults = notebook_defaults(NOTEBOOK)
    first, last = backtest_window(defaults["start"], defaults["end"], "4h")
    (a, b) = fake.calls
    assert a["notebook"] == NOTEBOOK and a["reserved"]
    assert a["output"].resolve() == backtest_output_path(tmp_path / "outputs", first, last)
    assert a["parameters"] == {"start": first.isoformat(), "end": last.isoformat(),
                               "params_file": "params/pairlib.yaml"}
    assert b["parameters"]["start"] == "2025-02-04T00:00:00+00:00"
    assert b["parameters"]["taker_fee"] == 0.0004 and "slippage_bps" not in b["parameters"]
    assert b["output"].name == "2025-02-04T0000Z-2025-03-01T0000Z-backtest.ipynb"
    run_backtest_job(start="2025-02-04", end="2025-03-01")  # the same window again
    assert fake.calls[-1]["output"].name.endswith("-backtest-2.ipynb")


@pytest.mark.parametrize("args", [
    ["--start", "2025-02-04T00:00", "--end", "2025-03-01"],
    ["--start", "2025-03-01", "--end", "2025-02-04"],
    ["--taker-fee", "0.5"],
    ["--slippage-bps", "-2"],
])
def test_cli_rejects_before_any_kernel(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_kernel(*a: object, **k: object) -> RunResult:
        raise AssertionError("a kernel was started for a rejected command")

    shutil.copytree(ROOT / "params", tmp_path / "params")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(jobs, "run_notebook", no_kernel)
    res = CliRunner().invoke(app, ["backtest", *args])
    assert res.exit_code == 2, res.output
    assert res.output.startswith("error: ") and "Traceback" not in res.output
    assert not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------ notebook runs


def _snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(f): (f.stat().st_size, f.stat().st_mtime_ns)
            for folder in folders if folder.exists()
            for f in folder.rglob("*") if f.is_file()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A temporary project shared by the module's notebook runs (one candle cache); the
    module fails if anything was written into this repository meanwhile."""
    proj = tmp_path_factory.mktemp("backtest") / "project"
    proj.mkdir()
    shutil.copytree(ROOT / "params", proj / "params")
    shutil.copytree(ROOT / "notebooks", proj / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (proj / "pyproject.toml").write_text('[project]\nname = "analyst-scratch"\n')
    repo = (ROOT / ".state", ROOT / "outputs", ROOT / ".data")
    before = _snapshot(*repo)
    yield proj
    assert _snapshot(*repo) == before, "a backtest run wrote into the repository"


@pytest.mark.slow
def test_backtest_command_writes_a_report_with_metrics_and_trades(
    project: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    res = CliRunner().invoke(app, ["backtest", "--start", "2025-02-04T00:00Z",
                                   "--end", "2025-03-04T00:00Z"])
    assert res.exit_code == 0, res.output
    path_line, summary = res.output.strip().splitlines()[-2:]
    out = Path(path_line)
    assert out == Path("outputs/backtests/2025-02-04T0000Z-2025-03-04T0000Z-backtest.ipynb")
    assert summary.startswith("backtest 2025-02-04T00:00:00Z → 2025-03-04T00:00:00Z: ")
    scraps = read_scraps(out)
    trades, metrics = scraps["trades"], scraps["metrics"]
    assert isinstance(trades, pd.DataFrame) and list(trades.columns) == list(TRADE_COLUMNS)
    assert len(trades) > 0 and scraps["n_trades"] == metrics["n_trades"] == len(trades)
    assert f"{len(trades)} trades" in summary
    assert {"total_return", "annual_return", "sharpe", "sortino", "max_drawdown",
            "max_drawdown_bars", "calmar", "hit_rate", "avg_holding_hours", "turnover",
            "fees_paid", "funding_paid", "exposure"} <= set(metrics)
    # The scraps agree with each other and with the metrics' definitions.
    equity = scraps["equity"]
    final = 10_000.0 + float(trades["net_pnl"].sum())
    assert float(equity["equity"].iloc[-1]) == pytest.approx(final)
    assert metrics["total_return"] == pytest.approx(final / 10_000.0 - 1.0)
    assert metrics["hit_rate"] == pytest.approx(float((trades["net_pnl"] > 0).mean()))
    assert metrics["fees_paid"] == pytest.approx(float(trades["fees"].sum()))
    assert metrics["bars"] == len(equity) == 6 * 28 + 1
    assert scraps["fill_model"] == {"slippage_bps": 2.0, "taker_fee": 0.0005}
    text = out.read_text()
    assert "moved 2 bps against the order" in text and "survivorship" in text
    nb = json.loads(text)
    figures = [o["data"]["application/vnd.plotly.v1+json"] for c in nb["cells"]
               if c["cell_type"] == "code" for o in c.get("outputs", [])
               if "application/vnd.plotly.v1+json" in o.get("data", {})]
    titles = [f["layout"]["title"]["text"] for f in figures]
    assert "Monthly returns (%)" in titles and any(t.startswith("Equity") for t in titles)
    assert any(t.startswith("Realized loss") for t in titles)
    assert sum(" trades, net " in t for t in titles) == trades["pair_id"].nunique()


@pytest.mark.slow
def test_failed_backtest_is_kept_and_exits_non_zero(
    project: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(project)
    res = CliRunner().invoke(app, ["backtest", "--start", "2030-01-01", "--end",
                                   "2030-02-01"])  # after the simulator's history
    assert res.exit_code == 1
    out = project / "outputs/backtests/2030-01-01T0000Z-2030-02-01T0000Z-backtest.ipynb"
    assert out.is_file() and "An Exception was encountered" in out.read_text()
    assert "backtest failed: " in res.output and "outside the market's history" in res.output


@pytest.mark.slow
def test_notebook_opened_without_parameters_runs(project: Path, tmp_path: Path) -> None:
    """As JupyterLab runs it: kernel in ``notebooks/``, no parameter, the project's params
    and cache found from the root."""
    out = tmp_path / "backtest.ipynb"
    res = run_notebook(project / "notebooks" / "backtest.ipynb", out, {},
                       cwd=project / "notebooks")
    assert res.ok, res.error
    nb = json.loads(out.read_text())
    assert not [c for c in nb["cells"]
                if "injected-parameters" in c.get("metadata", {}).get("tags", [])]
    defaults = notebook_defaults(NOTEBOOK)
    first, last = backtest_window(defaults["start"], defaults["end"], "4h")
    assert res.scraps["start"] == first.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert res.scraps["end"] == last.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert res.scraps["n_trades"] > 0
    assert not (project / "notebooks" / ".data").exists()
    assert not (project / "notebooks" / ".state").exists()
