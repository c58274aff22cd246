"""The walk-forward backtest on the live rules (``pairlib.engine.backtest``): accounting identities,
funding, and no lookahead (a planted future-only signal, truncation invariance)."""

from __future__ import annotations

from datetime import datetime, timedelta

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
