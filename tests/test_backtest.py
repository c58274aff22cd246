"""The walk-forward backtest on the live rules (``pairlib.engine.backtest``): accounting identities,
funding at the venue's mark price, no lookahead (a planted future-only signal, truncation
invariance), progress, and keyless public reads for a live venue's params."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pairlib.config import Params
from pairlib.core.risk import MarketRules
from pairlib.engine.backtest import FillModel, simulate
from pairlib.sim import GENESIS, Market

BAR = timedelta(hours=4)
START = GENESIS + timedelta(days=400)  # 2025-02-04, a 4h close


@pytest.fixture(scope="module")
def panel(sim_market_module: Market) -> tuple[pd.DataFrame, pd.DataFrame]:
    m = sim_market_module
    first = START - 700 * BAR
    closes = m.closes(first, START + 60 * 4 * 6 * BAR)  # about two months after START
    qv = m.quote_volumes(first, START + 60 * 4 * 6 * BAR)
    rename = {c: m.unified(c) for c in closes.columns}
    return closes.rename(columns=rename), qv.rename(columns=rename)


@pytest.fixture(scope="module")
def sim_market_module() -> Market:
    return Market()


def _rules(closes: pd.DataFrame) -> dict[str, MarketRules]:
    return {s: MarketRules(s, 0.001, 0.001, 5.0) for s in closes.columns}


def _params() -> Params:
    return Params.model_validate({"risk": {"risk_per_trade": 0.01, "max_positions": 5}})


def _run(panel: tuple[pd.DataFrame, pd.DataFrame], end: datetime, **kw: object):  # type: ignore[no-untyped-def]
    closes, qv = panel
    return simulate(_params(), closes, START, end, _rules(closes), quote_volume=qv, **kw)  # type: ignore[arg-type]


def test_equity_is_initial_plus_every_trades_net_pnl(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    r = _run(panel, START + 300 * BAR)
    assert len(r.trades) > 0, "the scenario must trade"
    assert r.equity.iloc[-1] == pytest.approx(10_000.0 + r.trades["net_pnl"].sum())
    t = r.trades
    np.testing.assert_allclose(t["net_pnl"], t["gross_pnl"] - t["fees"] + t["funding"])
    assert set(t["exit_reason"]) <= {"reverted", "stop", "no data", "end of test"}
    assert (t["fees"] > 0).all()
    assert len(r.pair_sets) >= 2  # a month start inside the test re-selects
    assert r.metrics.bars == len(r.equity)


def test_costs_lower_the_result(panel: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    cheap = _run(panel, START + 200 * BAR, fill=FillModel(slippage_bps=0.0, taker_fee=0.0))
    dear = _run(panel, START + 200 * BAR, fill=FillModel(slippage_bps=10.0, taker_fee=0.001))
    assert len(cheap.trades) == len(dear.trades)  # costs do not change the decisions here
    assert dear.equity.iloc[-1] < cheap.equity.iloc[-1]
    assert cheap.trades["fees"].sum() == 0.0


def test_funding_is_paid_by_longs_at_a_positive_rate(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    closes, _ = panel
    rate = 0.0001
    every = {s: {int((START + k * BAR).timestamp() * 1000): rate
                 for k in range(-10, 400) if ((START + k * BAR).hour % 8 == 0)}
             for s in closes.columns}
    r = _run(panel, START + 300 * BAR, funding_rates=every)
    none = _run(panel, START + 300 * BAR)
    assert len(r.trades) == len(none.trades)
    # A pair is long one leg and short the other: funding is -sum(amount * price * rate).
    assert not np.allclose(r.trades["funding"], 0.0)
    assert none.notes and "no funding rate" in none.notes[0]


def test_truncation_invariance(panel: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    short = _run(panel, START + 250 * BAR)
    long = _run(panel, START + 400 * BAR)
    done = short.trades[short.trades["exit_reason"] != "end of test"]
    same = long.trades[long.trades["exit_time"] <= START + 250 * BAR]
    same = same[same["exit_reason"] != "end of test"]
    pd.testing.assert_frame_equal(done.reset_index(drop=True), same.reset_index(drop=True))
    np.testing.assert_allclose(short.equity.iloc[:-1], long.equity.iloc[:len(short.equity) - 1])


def test_a_planted_future_only_signal_is_not_used(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    closes, qv = panel
    cut = START + 150 * BAR
    base = _run(panel, START + 300 * BAR)
    spiked = closes.copy()
    # After the cut, every symbol's price doubles: any pair would signal there.
    later = spiked.index + BAR > cut
    spiked.loc[later, spiked.columns[::2]] *= 2.0
    planted = simulate(_params(), spiked, START, START + 300 * BAR, _rules(closes),
                       quote_volume=qv)
    before = base.trades[base.trades["entry_time"] <= cut]
    seen = planted.trades[planted.trades["entry_time"] <= cut]
    pd.testing.assert_frame_equal(
        before[["pair_id", "side", "entry_time", "entry_z"]].reset_index(drop=True),
        seen[["pair_id", "side", "entry_time", "entry_z"]].reset_index(drop=True))
    np.testing.assert_allclose(base.equity[base.equity.index <= cut],
                               planted.equity[planted.equity.index <= cut])


def test_run_goes_through_the_venue_and_data_layer(tmp_path: object) -> None:
    from pathlib import Path

    from pairlib.engine.backtest import run

    tmp = Path(str(tmp_path))
    params = Params.model_validate({
        "venue": {"sim_state": str(tmp / "sim.json")}, "data": {"cache_dir": str(tmp / "d")},
        "state_dir": str(tmp / "state"), "risk": {"risk_per_trade": 0.01}})
    r = run(params, START, START + 120 * BAR)
    assert len(r.equity) == 121 and len(r.trades) > 0
    assert r.fill_model.slippage_bps == params.venue.sim_slippage_bps
    assert any("survivorship" in n for n in r.notes)
    assert not any("no funding rate" in n for n in r.notes)  # the venue's history was used
    assert (r.trades["funding"] != 0).any()
    # The cache makes the second run read nothing new from the venue.
    again = run(params, START, START + 120 * BAR)
    pd.testing.assert_frame_equal(r.trades, again.trades)


def test_the_loss_limit_is_applied_by_the_shared_plan(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    closes, qv = panel
    base = _params().model_dump(mode="json")
    limited = Params.model_validate({**base, "risk": {**base["risk"],
                                                      "max_loss_multiple": 0.3}})
    r = simulate(limited, closes, START, START + 300 * BAR, _rules(closes), quote_volume=qv)
    hit = r.trades[r.trades["exit_reason"] == "loss limit"]
    assert len(hit) > 0
    assert (-hit["gross_pnl"] >= 0.3 * hit["risk_budget"] - 1e-9).all()
    free = _run(panel, START + 300 * BAR)
    assert not (free.trades["exit_reason"] == "loss limit").any()


def test_a_window_without_its_formation_history_is_refused(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    closes, qv = panel
    early = closes.index[100] + BAR
    with pytest.raises(ValueError, match="needs 600 closed candles"):
        simulate(_params(), closes, early, early + 50 * BAR, _rules(closes), quote_volume=qv)


def test_run_changes_no_venue_state(tmp_path: object) -> None:
    from pathlib import Path

    from pairlib.engine.backtest import run

    tmp = Path(str(tmp_path))
    account = tmp / "sim.json"
    params = Params.model_validate({
        "venue": {"sim_state": str(account)}, "data": {"cache_dir": str(tmp / "d")},
        "state_dir": str(tmp / "state")})
    run(params, START, START + 30 * BAR)
    assert not account.exists()  # the in-process simulator ran on a scratch copy


def test_funding_is_valued_at_the_venues_mark_price(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    """The venue pays ``-amount * mark * rate`` at each funding time a position is held
    through (after the entry bar, up to and including the exit bar): each trade's funding
    equals that sum, recomputed here from the trade's amounts and the marks given (marks 1%
    above the close, so valuing at the close would be off by 1%)."""
    closes, _ = panel
    times = [START + k * BAR for k in range(-10, 400) if (START + k * BAR).hour % 8 == 0]
    rate = 0.0001
    rates = {s: {int(t.timestamp() * 1000): rate for t in times} for s in closes.columns}
    # The funding time t is the close of the candle that opened at t - BAR.
    marks = {s: {int(t.timestamp() * 1000): 1.01 * float(closes.loc[t - BAR, s])
                 for t in times} for s in closes.columns}
    r = _run(panel, START + 300 * BAR, funding_rates=rates, funding_marks=marks)
    assert (r.trades["funding"] != 0).any()
    for tr in r.trades.to_dict("records"):
        y, x = str(tr["pair_id"]).split("~")
        held = [int(t.timestamp() * 1000) for t in times
                if tr["entry_time"] < t <= tr["exit_time"]]
        want = sum(-(tr["amount_y"] * marks[y][ft] + tr["amount_x"] * marks[x][ft]) * rate
                   for ft in held)
        assert tr["funding"] == pytest.approx(want, rel=1e-9, abs=1e-12), tr
    assert not any("mark price" in n for n in r.notes)
    # A mark the venue did not send: that payment falls back to the close, and it is said.
    some = str(r.trades["pair_id"].iloc[0]).split("~")[0]  # a traded leg
    partial = {**marks, some: {}}
    gaps = _run(panel, START + 300 * BAR, funding_rates=rates, funding_marks=partial)
    assert any("no mark price" in n and some in n for n in gaps.notes)


def test_progress_is_reported_once_per_bar_and_changes_nothing(
    panel: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    calls: list[tuple[int, int]] = []
    watched = _run(panel, START + 60 * BAR, progress=lambda d, n: calls.append((d, n)))
    plain = _run(panel, START + 60 * BAR)
    assert calls == [(k, 61) for k in range(1, 62)]
    pd.testing.assert_frame_equal(watched.trades, plain.trades)
    pd.testing.assert_series_equal(watched.equity, plain.equity)


def test_progress_display_throttles_and_writes_the_progress_file(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pathlib import Path

    from pairlib.report import backtest_charts as bc

    path = Path(str(tmp_path)) / "progress"
    monkeypatch.setenv(bc.PROGRESS_FILE_ENV, str(path))
    shown = bc.ProgressDisplay("Backtest", min_interval_s=3600.0, display=False)
    assert shown.path == path  # named by the environment, as the CLI sets it
    for k in range(1, 1001):
        shown(k, 1000)
        if k == 1:
            assert path.read_text() == "1 1000\n"
    assert shown.updates == 2  # the first and the last bar only, within the interval
    assert path.read_text() == "1000 1000\n"
    out = shown.output(1000, 1000, 7.71)
    assert out["text/plain"] == "Backtest: 1000/1000 bars (100%), 7.7 s elapsed"
    assert '<progress value="1000" max="1000"' in out["text/html"]
    assert "<script" not in out["text/html"]  # readable offline, no widget
    monkeypatch.delenv(bc.PROGRESS_FILE_ENV)
    assert bc.ProgressDisplay(display=False).path is None


@pytest.mark.parametrize(("what", "unit", "label", "display_unit"), [
    ("backtest", "bars", "Backtest", "bars"),
    ("sweep", "combinations", "Sweep", "combinations"),
])
def test_the_cli_progress_bar_follows_the_kernels_progress_file(
    monkeypatch: pytest.MonkeyPatch, what: str, unit: str, label: str, display_unit: str,
) -> None:
    """``pairlib backtest`` and ``pairlib sweep`` share one helper: it hands the kernel a
    progress file through the environment and draws what the kernel writes there; the
    variable is restored afterwards."""
    import os
    from pathlib import Path

    from pairlib.app.progress import kernel_progress
    from pairlib.report.backtest_charts import PROGRESS_FILE_ENV, ProgressDisplay
    from pairlib.report.sweep_charts import progress as sweep_progress

    monkeypatch.setenv(PROGRESS_FILE_ENV, "/nonexistent/before")
    with kernel_progress(what, unit, f"{what}: starting", force=True, poll_s=0.01) as bar:
        named = Path(os.environ[PROGRESS_FILE_ENV])
        assert named != Path("/nonexistent/before") and named.parent.is_dir()
        # what each notebook builds, in the kernel
        kernel = (ProgressDisplay(display=False) if what == "backtest"
                  else sweep_progress())
        kernel._show = False
        for k in range(1, 121):
            kernel(k, 120)
    assert os.environ[PROGRESS_FILE_ENV] == "/nonexistent/before"
    assert not named.parent.exists()  # the temporary folder is gone
    task = bar.tasks[0]
    assert (task.completed, task.total) == (120, 120)
    assert task.description == f"{what} done, writing the report"
    shown = [c.text_format for c in bar.columns if hasattr(c, "text_format")]
    assert unit in shown  # the unit counted is drawn after done/total
    assert kernel.output(120, 120, 1.0)["text/plain"] == (
        f"{label}: 120/120 {display_unit} (100%), 1.0 s elapsed")
    # Not a terminal (pytest captures stderr): no bar and no variable.
    monkeypatch.delenv(PROGRESS_FILE_ENV)
    with kernel_progress(what, unit, "starting") as nothing:
        assert nothing is None and PROGRESS_FILE_ENV not in os.environ


@pytest.mark.parametrize("kind", ["live", "demo", "paper"])
def test_a_real_venue_backtest_reads_public_history_keyless(
    kind: str, sim_market_module: Market, tmp_path: object, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Params for a real venue (``live``, ``demo``, ``paper``) backtest without the live
    guard and without keys: every request the (loopback stand-in for the) venue receives is
    a public endpoint, carries no API-key header and no signature, and no key from the
    environment appears anywhere."""
    from pathlib import Path
    from urllib.parse import parse_qs, urlsplit

    from pairlib.engine.backtest import run
    from pairlib.sim import SimServer
    from pairlib.sim.endpoints import ROUTES

    tmp = Path(str(tmp_path))
    key, secret = "LIVEKEY" + "k" * 57, "LIVESECRET" + "s" * 54
    monkeypatch.setenv("PAIRLIB_API_KEY", key)
    monkeypatch.setenv("PAIRLIB_API_SECRET", secret)
    seen: list[tuple[str, str, dict[str, str]]] = []
    original = SimServer._handle

    def record(self: SimServer, h: Any, method: str) -> None:
        seen.append((method, h.path, {k.lower(): v for k, v in h.headers.items()}))
        original(self, h, method)

    monkeypatch.setattr(SimServer, "_handle", record)
    end = START + 30 * BAR
    params = Params.model_validate({
        "venue": {"kind": kind, "exchange_id": "binanceusdm"},
        "data": {"cache_dir": str(tmp / "d"), "universe_size": 12},
        "state_dir": str(tmp / "state"), "risk": {"risk_per_trade": 0.01}})
    with SimServer(sim_market_module, None, now=end) as server:
        r = run(params, START, end, public_url=server.url)
    assert len(r.equity) == 31
    assert not any("no funding rate" in n for n in r.notes)
    paths = {urlsplit(p).path for _, p, _ in seen}
    assert {"/fapi/v1/klines", "/fapi/v1/fundingRate"} <= paths
    for method, raw, headers in seen:
        path, query = urlsplit(raw).path, urlsplit(raw).query
        assert not ROUTES[(method, path)].signed, f"private endpoint called: {method} {path}"
        assert "x-mbx-apikey" not in headers, (method, path)
        assert "signature" not in parse_qs(query), (method, path)
        assert key not in raw and secret not in raw
        assert not any(key in v or secret in v for v in headers.values())
    assert not (tmp / "state").exists()  # no store, no account: nothing was written
