"""The reports chart what the tick trades: the pair report's z is the strategy's rolling z with
the trading params' bands, and the tick report's entry marker says long or short."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from pairlib.config import StrategyParams
from pairlib.core import strategy
from pairlib.engine.tick_result import SIGNAL_COLUMNS, TickResult
from pairlib.report import pair_charts, tick_charts

RULE = StrategyParams(lookback=20, entry=1.25, exit=0.4, stop=3.0)
BETA, ALPHA = 0.8, 0.1


def _prices(n: int = 200, seed: int = 3) -> pd.DataFrame:
    """Two cointegrated legs and a bystander column, 4h candles by open time."""
    rng = np.random.default_rng(seed)
    log_x = 3.0 + np.cumsum(rng.normal(0.0, 0.02, n))
    noise = np.zeros(n)
    for t in range(1, n):  # a mean-reverting spread, so z crosses the bands
        noise[t] = 0.8 * noise[t - 1] + rng.normal(0.0, 0.03)
    log_y = ALPHA + BETA * log_x + noise
    idx = pd.date_range("2025-01-01", periods=n, freq="4h", tz="UTC")
    return pd.DataFrame({"Y/USDT:USDT": np.exp(log_y), "X/USDT:USDT": np.exp(log_x),
                         "Z/USDT:USDT": np.exp(log_x + 0.5)}, index=idx)


def _trace(fig: go.Figure, name: str) -> go.Scatter:
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def _z_panel_lines(fig: go.Figure) -> list[float]:
    return sorted(float(s.y0) for s in fig.layout.shapes if s.yref == "y2" and s.y0 == s.y1)


@pytest.mark.parametrize("bars", [None, 120])
def test_pair_figure_plots_the_z_the_tick_trades_and_its_bands(bars: int | None) -> None:
    prices = _prices()
    fig = pair_charts.pair_figure(prices, "Y/USDT:USDT", "X/USDT:USDT", BETA, ALPHA, RULE,
                                  bars=bars)

    s = strategy.spread(np.log(prices["Y/USDT:USDT"].to_numpy()),
                        np.log(prices["X/USDT:USDT"].to_numpy()), BETA, ALPHA)
    expected = pd.Series(strategy.zscore(s, RULE.lookback), index=prices.index)
    if bars is not None:
        expected = expected.iloc[-bars:]
    z = _trace(fig, "z")
    assert z.yaxis == "y2"  # the lower panel
    np.testing.assert_array_equal(np.asarray(z.y, dtype=float), expected.to_numpy())
    assert list(pd.DatetimeIndex(z.x)) == list(expected.index)
    assert np.isfinite(expected).sum() > 50 and (np.abs(expected) >= RULE.entry).any()
    if bars is not None:  # the shown window starts after a full lookback of earlier rows
        assert math.isfinite(float(z.y[0]))
        assert len(_trace(fig, "Y/USDT:USDT").y) == bars

    e, x, st = RULE.entry, RULE.exit, RULE.stop
    assert _z_panel_lines(fig) == sorted([-st, -e, -x, 0.0, x, e, st])


def test_pair_figure_bands_follow_the_trading_params() -> None:
    prices = _prices()
    other = StrategyParams(lookback=40, entry=2.0, exit=0.0, stop=4.5)
    fig = pair_charts.pair_figure(prices, "Y/USDT:USDT", "X/USDT:USDT", BETA, ALPHA, other)
    assert _z_panel_lines(fig) == [-4.5, -2.0, 0.0, 0.0, 0.0, 2.0, 4.5]
    s = strategy.spread(np.log(prices["Y/USDT:USDT"]), np.log(prices["X/USDT:USDT"]),
                        BETA, ALPHA)
    np.testing.assert_array_equal(np.asarray(_trace(fig, "z").y, dtype=float),
                                  strategy.zscore(s, 40))


def test_pair_figure_names_a_bad_leg_or_window() -> None:
    prices = _prices(30)
    with pytest.raises(KeyError, match="'Q/USDT:USDT' is not a column of prices"):
        pair_charts.pair_figure(prices, "Q/USDT:USDT", "X/USDT:USDT", BETA, ALPHA, RULE)
    with pytest.raises(ValueError, match="bars must be a positive int or None"):
        pair_charts.pair_figure(prices, "Y/USDT:USDT", "X/USDT:USDT", BETA, ALPHA, RULE, bars=0)


def _tick(rows: list[tuple], z: dict[str, list[float]]) -> TickResult:
    idx = pd.date_range("2025-02-01", periods=5, freq="4h", tz="UTC", name="close_time")
    return TickResult(as_of=idx[-1].to_pydatetime(), status="ok", mode="normal",
                      signals=pd.DataFrame(rows, columns=list(SIGNAL_COLUMNS)),
                      z_history=pd.DataFrame(z, index=idx), orders=pd.DataFrame(),
                      fills=pd.DataFrame(), positions=pd.DataFrame(), equity=10_000.0,
                      error=None, thresholds=(1.0, 0.5, 3.5), venue="sim")


def _entry_marker(spec: tick_charts.Spec) -> go.Scatter:
    fig = go.Figure(spec)  # plotly validates the spec
    (marker,) = [t for t in fig.data if t.mode == "markers"]
    return marker


def test_tick_entry_markers_tell_long_from_short() -> None:
    last = "2025-02-01T16:00:00Z"
    result = _tick(
        [("A~B", "A", "B", -1.3, 1, "enter_long", "long the spread", 1, last, -1.3),
         ("C~D", "C", "D", 1.4, -1, "enter_short", "short the spread", -1, last, 1.4)],
        {"A~B": [0.0, -0.4, -0.8, -1.1, -1.3], "C~D": [0.2, 0.6, 0.9, 1.2, 1.4]},
    )
    long_spec, short_spec = tick_charts.z_figures(result)
    long_m, short_m = _entry_marker(long_spec), _entry_marker(short_spec)
    assert long_m.marker.symbol != short_m.marker.symbol
    assert long_m.marker.color != short_m.marker.color
    assert long_m.name != short_m.name
    assert (long_m.name, long_m.marker.symbol) == ("entry (long)", "triangle-up")
    assert (short_m.name, short_m.marker.symbol) == ("entry (short)", "triangle-down")
    assert long_m.hovertemplate.startswith("entry (long)") and long_m.y == (-1.3,)
    assert short_m.hovertemplate.startswith("entry (short)") and short_m.y == (1.4,)


def test_a_closed_pairs_entry_side_comes_from_its_entry_z() -> None:
    result = _tick(
        [("E~F", "E", "F", -0.2, 0, "exit", "reverted", 0, "2025-02-01T00:00:00Z", -1.5),
         ("G~H", "G", "H", 3.6, 0, "stop", "stop loss", 0, "2025-02-01T04:00:00Z", 1.1)],
        {"E~F": [-1.5, -1.0, -0.8, -0.6, -0.2], "G~H": [0.5, 1.1, 1.9, 2.8, 3.6]},
    )
    exited, stopped = (_entry_marker(s) for s in tick_charts.z_figures(result))
    assert exited.name == "entry (long)" and exited.marker.symbol == "triangle-up"
    assert stopped.name == "entry (short)" and stopped.marker.symbol == "triangle-down"
