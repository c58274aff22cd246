"""The deterministic market simulator: determinism, candles, ground truth, funding, rules."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairlib.clock import to_ms
from pairlib.sim.market import GENESIS, INTERVALS, Market, MarketSpec, simulate_prices

H = 3_600_000
BAR = 4 * H


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(MarketSpec(horizon_bars=3000))


def test_same_seed_same_market_byte_for_byte() -> None:
    spec = MarketSpec(seed=11, horizon_bars=600)
    a, b = Market(spec), Market(spec)
    end = GENESIS + timedelta(hours=4 * 600)
    ca, cb = a.closes(GENESIS, end), b.closes(GENESIS, end)
    assert ca.to_numpy().tobytes() == cb.to_numpy().tobytes()
    now = to_ms(GENESIS) + 500 * BAR + 1234567
    for sym in a.symbols[:5]:
        assert a.klines(sym, "1h", None, None, 1500, now) == b.klines(sym, "1h", None, None, 1500,
                                                                       now)
    assert a.ground_truth == b.ground_truth
    other = Market(MarketSpec(seed=12, horizon_bars=600)).closes(GENESIS, end)
    assert not np.array_equal(ca.to_numpy(), other.to_numpy())


def test_universe_is_realistic(market: Market) -> None:
    assert len(market.symbols) == 48
    assert len(set(market.symbols)) == 48
    assert market.symbols[:2] == ("BTCUSDT", "ETHUSDT")
    assert market.unified("BTCUSDT") == "BTC/USDT:USDT"
    first = market.closes(GENESIS, GENESIS + timedelta(hours=4)).iloc[0]
    assert 0.03 < first.min() < 0.2
    assert 30_000 < first.max() < 70_000
    closes = market.closes(GENESIS, market.horizon_end)
    rets = np.log(closes).diff().dropna()
    vol = rets.std() * math.sqrt(6 * 365)
    assert vol.between(0.3, 2.5).all()
    assert rets.kurt().median() > 1.0  # fat tails
    qv = market.quote_volumes(GENESIS, market.horizon_end).mean()
    assert qv["BTCUSDT"] > 2e8 and qv.min() > 1e5


def test_large_universe_builds() -> None:
    m = Market(MarketSpec(n_symbols=200, horizon_bars=1500))
    closes = m.closes(GENESIS, m.horizon_end)
    assert closes.shape == (1500, 200)
    assert closes.notna().all().all()
    assert m.symbols[60] == "SIM60USDT"


def test_closes_never_after_now_and_match_klines(market: Market) -> None:
    now = GENESIS + timedelta(hours=4 * 100, minutes=90)
    df = market.closes(GENESIS, GENESIS + timedelta(days=365), now=now)
    assert len(df) == 100
    assert isinstance(df.index, pd.DatetimeIndex) and str(df.index.tz) == "UTC"
    assert df.index[-1] + timedelta(hours=4) <= now
    rows = market.klines("SOLUSDT", "4h", None, None, 1500, to_ms(now))
    assert len(rows) == 101  # 100 closed plus the forming one
    assert [float(r[4]) for r in rows[:-1]] == df["SOLUSDT"].tolist()
    # a closed bar whose close time equals `end` exactly is included
    end = GENESIS + timedelta(hours=8) - timedelta(milliseconds=1)
    assert len(market.closes(GENESIS, end)) == 2


def test_klines_forming_candle_and_no_lookahead(market: Market) -> None:
    now = to_ms(GENESIS) + 200 * BAR + 2 * H + 17 * 60_000
    for interval, hours in INTERVALS.items():
        rows = market.klines("ETHUSDT", interval, None, None, 50, now)
        assert rows, interval
        assert all(r[0] <= now for r in rows)
        last = rows[-1]
        assert last[0] <= now < last[6] + 1
        assert last[6] - last[0] + 1 == hours * H
        assert float(last[4]) == market.price("ETHUSDT", now)
        assert all(r[6] < now for r in rows[:-1])
        times = [r[0] for r in rows]
        assert times == sorted(times) and all(t % (hours * H) == 0 for t in times)


def test_four_hour_candles_aggregate_hourly_exactly(market: Market) -> None:
    now = to_ms(GENESIS) + 300 * BAR + 3 * H + 5 * 60_000
    for sym in ("BTCUSDT", "DOGEUSDT", market.ground_truth[0].y):
        h4 = market.klines(sym, "4h", None, None, 20, now)
        h1 = market.klines(sym, "1h", h4[0][0], None, 1500, now)
        assert len(h1) == 4 * 19 + 4
        for k, bar in enumerate(h4):
            sub = h1[4 * k:4 * k + 4] if k < 19 else h1[76:]
            assert bar[1] == sub[0][1]
            assert float(bar[2]) == max(float(r[2]) for r in sub)
            assert float(bar[3]) == min(float(r[3]) for r in sub)
            assert bar[4] == sub[-1][4]
            step = market.rules(sym)["stepSize"]
            assert round(float(bar[5]) / step) == sum(round(float(r[5]) / step) for r in sub)
            for r in sub:
                assert float(r[3]) <= min(float(r[1]), float(r[4]))
                assert float(r[2]) >= max(float(r[1]), float(r[4]))


def test_klines_range_and_limit(market: Market) -> None:
    g = to_ms(GENESIS)
    now = g + 1000 * BAR
    rows = market.klines("BTCUSDT", "4h", g + 10 * BAR, None, 5, now)
    assert [r[0] for r in rows] == [g + k * BAR for k in range(10, 15)]
    rows = market.klines("BTCUSDT", "4h", None, g + 20 * BAR, 3, now)
    assert [r[0] for r in rows] == [g + k * BAR for k in range(18, 21)]
    rows = market.klines("BTCUSDT", "4h", g + 10 * BAR + 1, g + 12 * BAR, 100, now)
    assert [r[0] for r in rows] == [g + 11 * BAR, g + 12 * BAR]
    assert market.klines("BTCUSDT", "4h", now + BAR, None, 10, now) == []
    with pytest.raises(ValueError, match="interval"):
        market.klines("BTCUSDT", "3m", None, None, 10, now)
    with pytest.raises(ValueError, match="outside"):
        market.klines("BTCUSDT", "4h", None, None, 10, g - 1)
    with pytest.raises(KeyError):
        market.klines("NOPEUSDT", "4h", None, None, 10, now)


def test_forming_candle_at_boundary_is_flat(market: Market) -> None:
    now = to_ms(GENESIS) + 50 * BAR
    rows = market.klines("BTCUSDT", "4h", None, None, 2, now)
    assert rows[-1][0] == now
    assert rows[-1][1] == rows[-1][2] == rows[-1][3] == rows[-1][4] == rows[-2][4]
    assert float(rows[-1][5]) == 0.0


def test_prices_are_on_the_tick(market: Market) -> None:
    for sym in ("BTCUSDT", "XRPUSDT", market.symbols[-1]):
        rules = market.rules(sym)
        tick = rules["tickSize"]
        assert math.log10(tick) == round(math.log10(tick))
        closes = market.closes(GENESIS, GENESIS + timedelta(days=30))[sym].to_numpy()
        assert np.allclose(np.rint(closes / tick) * tick, closes, rtol=0, atol=tick * 1e-6)
        assert rules["minQty"] == rules["stepSize"] > 0 and rules["minNotional"] >= 5


def test_planted_pairs_mean_revert_with_their_half_life(market: Market) -> None:
    truth = market.ground_truth
    assert len(truth) == 8
    assert sum(p.break_time is not None for p in truth) == 2
    legs = [s for p in truth for s in (p.y, p.x)]
    assert len(set(legs)) == 16 and "BTCUSDT" not in legs
    logs = np.log(market.closes(GENESIS, market.horizon_end))
    for p in truth:
        s = logs[p.y] - p.alpha - p.beta * logs[p.x]
        if p.break_time is not None:
            s = s[s.index < p.break_time]
        x = s.to_numpy() - s.mean()
        phi = float(np.dot(x[:-1], x[1:]) / np.dot(x[:-1], x[:-1]))
        est = math.log(0.5) / math.log(phi)
        assert est == pytest.approx(p.half_life_bars, rel=0.5), p


def test_breakdown_turns_spread_into_random_walk(market: Market) -> None:
    logs = np.log(market.closes(GENESIS, market.horizon_end))
    broken = [p for p in market.ground_truth if p.break_time is not None]
    for p in broken:
        s = logs[p.y] - p.alpha - p.beta * logs[p.x]
        before = s[s.index < p.break_time]
        after = s[s.index >= p.break_time]
        assert len(after) > 300
        # a random walk wanders much further than the stationary spread did
        assert np.abs(after - after.iloc[0]).max() > 2 * before.std()


def test_half_life_override_and_no_pairs() -> None:
    m = Market(MarketSpec(n_pairs=2, half_lives=(4.0, 40.0), breakdowns=False,
                          horizon_bars=100))
    assert [p.half_life_bars for p in m.ground_truth] == [4.0, 40.0]
    assert all(p.break_time is None for p in m.ground_truth)
    assert Market(MarketSpec(n_pairs=0, horizon_bars=100)).ground_truth == ()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_symbols": 3},
        {"n_pairs": 30},
        {"horizon_bars": 0},
        {"half_lives": (1.0,)},
        {"genesis": GENESIS + timedelta(hours=1)},
        {"genesis": GENESIS.replace(tzinfo=None)},
    ],
)
def test_spec_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MarketSpec(**kwargs)


def test_funding_every_eight_hours(market: Market) -> None:
    g = to_ms(GENESIS)
    rates = [market.funding_rate("BTCUSDT", g + k * 8 * H) for k in range(1, 200)]
    assert all(abs(r) <= 0.003 for r in rates)
    assert 0 < np.mean(rates) < 5e-4 and np.std(rates) > 1e-5
    assert all(round(r, 8) == r for r in rates)
    t = g + 30 * 8 * H
    assert market.predicted_funding_rate("BTCUSDT", t) == market.funding_rate("BTCUSDT", t)
    with pytest.raises(ValueError, match="funding time"):
        market.funding_rate("BTCUSDT", g + 4 * H)
    assert market.funding_times(g + 1, g + 24 * H) == [g + 8 * H, g + 16 * H, g + 24 * H]


def test_price_interpolates_within_the_hour(market: Market) -> None:
    g = to_ms(GENESIS)
    t0 = g + 77 * H
    a, b = market.price("LINKUSDT", t0), market.price("LINKUSDT", t0 + H)
    mid = market.price("LINKUSDT", t0 + H // 2)
    assert min(a, b) <= mid <= max(a, b)
    row = market.klines("LINKUSDT", "1h", t0, t0, 1, t0 + H)[0]
    assert float(row[1]) == a and float(row[4]) == b


def test_simulate_prices_helper() -> None:
    closes, pairs = simulate_prices(3, n_walks=5, half_lives=(5.0, 50.0), n_bars=2000)
    assert closes.shape == (2000, 9)
    assert list(closes.columns[:5]) == [f"W{i}USDT" for i in range(5)]
    assert (closes > 0).all().all()
    assert closes.index[0] == GENESIS
    assert [p.half_life_bars for p in pairs] == [5.0, 50.0]
    again, _ = simulate_prices(3, n_walks=5, half_lives=(5.0, 50.0), n_bars=2000)
    pd.testing.assert_frame_equal(closes, again)
    logs = np.log(closes)
    p = pairs[0]
    s = (logs[p.y] - p.alpha - p.beta * logs[p.x]).to_numpy()
    x = s - s.mean()
    phi = float(np.dot(x[:-1], x[1:]) / np.dot(x[:-1], x[:-1]))
    assert math.log(0.5) / math.log(phi) == pytest.approx(5.0, rel=0.3)
    vol = np.log(closes).diff().std() * math.sqrt(6 * 365)
    assert vol.between(0.3, 2.0).all()


@settings(max_examples=60, deadline=None)
@given(
    bars=st.integers(min_value=0, max_value=2999),
    offset_ms=st.integers(min_value=0, max_value=BAR - 1),
    interval=st.sampled_from(sorted(INTERVALS)),
    limit=st.integers(min_value=1, max_value=1500),
    start_bars=st.one_of(st.none(), st.integers(min_value=-5, max_value=3000)),
)
def test_klines_never_look_ahead(
    market: Market, bars: int, offset_ms: int, interval: str, limit: int,
    start_bars: int | None,
) -> None:
    g = to_ms(GENESIS)
    now = min(g + bars * BAR + offset_ms, to_ms(market.horizon_end))
    start = None if start_bars is None else g + start_bars * BAR
    rows = market.klines("BNBUSDT", interval, start, None, limit, now)
    assert len(rows) <= limit
    step = INTERVALS[interval] * H
    times = [r[0] for r in rows]
    assert all(b - a == step for a, b in zip(times, times[1:], strict=False))
    assert all(t <= now for t in times)
    assert all(r[6] < now for r in rows[:-1])
    if start is not None:
        assert all(t >= start for t in times)
    if rows and rows[-1][6] >= now:
        assert float(rows[-1][4]) == market.price("BNBUSDT", now)
