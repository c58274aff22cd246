"""pairlib.edges.data: closed candles, Parquet cache, quality report, alignment.

Pure parts run on crafted frames; fetching runs against the simulated exchange (a real
HTTP server on 127.0.0.1 behind the real ccxt client) or, for defects the simulator never
produces, against a small in-memory stand-in for the adapter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pairlib.clock import SettableClock, to_ms
from pairlib.config import DataParams, VenueParams
from pairlib.edges.data import (
    QUALITY_COLUMNS,
    CandleCache,
    MarketData,
    closed_candles,
    load_market_data,
    quality_report,
)
from pairlib.errors import DataError, ExchangeUnavailable
from pairlib.sim.market import GENESIS, Market, MarketSpec
from pairlib.venue.exchange import Exchange
from pairlib.venue.records import MarketInfo, OhlcvBatch, OhlcvRequest

H4 = 4 * 3_600_000
ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def _frame(open_ms: Sequence[int], close: Sequence[float]) -> pd.DataFrame:
    rows = [[t, c, c, c, c, 1.0] for t, c in zip(open_ms, close, strict=True)]
    return closed_candles(rows, H4, 10**15)


def _grid(n: int, start: int = to_ms(GENESIS)) -> list[int]:
    return [start + i * H4 for i in range(n)]


def _now_after(n_bars: int, minutes_into_forming: int = 90) -> datetime:
    """A time ``minutes_into_forming`` into the candle after ``n_bars`` closed ones."""
    return GENESIS + timedelta(hours=4 * n_bars, minutes=minutes_into_forming)


def _expected_closes(market: Market, now: datetime, bars: int) -> pd.DataFrame:
    exp = market.closes(GENESIS, now, now).iloc[-bars:]
    exp.columns = [market.unified(c) for c in exp.columns]
    return exp


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(MarketSpec(seed=7, n_symbols=6, n_pairs=1))


@pytest.fixture(scope="module")
def sim(market: Market) -> Iterator[Any]:
    from pairlib.sim.server import SimServer

    srv = SimServer(market, state_path=None, now=_now_after(2200), host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def exchange(sim: Any) -> Iterator[Exchange]:
    sim.faults.clear()
    ex = Exchange.from_params(
        VenueParams(timeout_ms=2_000, max_retries=2), sim_url=sim.url, retry_base_delay=0.001
    )
    with ex:
        yield ex


class Spy:
    """Wrap an adapter's batch reader to record every request and the rows it returned."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self.calls: list[OhlcvBatch] = []
        self._orig = ex.fetch_ohlcv_batch
        ex.fetch_ohlcv_batch = self  # type: ignore[method-assign]

    def __call__(self, requests: Sequence[OhlcvRequest], max_concurrency: int = 8) -> OhlcvBatch:
        got = self._orig(requests, max_concurrency=max_concurrency)
        self.calls.append(got)
        return got

    @property
    def requests(self) -> list[OhlcvRequest]:
        return [r for b in self.calls for r in [*b.rows, *b.errors]]

    def open_times(self, symbol: str) -> list[int]:
        return [int(row[0]) for b in self.calls for r, rows in b.rows.items()
                if r.symbol == symbol for row in rows]


# --------------------------------------------------------------------------- pure


def test_closed_candles_drops_forming_and_sorts() -> None:
    rows = [[H4 * 3, 1, 1, 1, 3, 1], [H4 * 1, 1, 1, 1, 1, 1], [H4 * 2, 1, 1, 1, 2, 1],
            [H4 * 4, 1, 1, 1, 4, 1]]
    now_ms = H4 * 5 - 1  # the candle opening at 4*H4 closes at 5*H4: still forming
    got = closed_candles(rows, H4, now_ms)
    assert list(got["close"]) == [1.0, 2.0, 3.0]
    assert got.index.name == "open_time" and str(got.index.tz) == "UTC"
    exactly = closed_candles(rows, H4, H4 * 5)  # closed at exactly open + tf
    assert list(exactly["close"]) == [1.0, 2.0, 3.0, 4.0]
    dup = closed_candles([*rows, [H4 * 2, 9, 9, 9, 9, 9]], H4, H4 * 5)
    assert int(dup.index.duplicated().sum()) == 1
    assert closed_candles([], H4, H4).empty
    assert list(closed_candles([[0, None, 1, 1, 1, 1]], H4, H4)["open"].isna()) == [True]


def test_quality_report_flags_each_defect() -> None:
    n = 10
    g = _grid(n)
    now = datetime.fromtimestamp((g[-1] + H4) / 1000, UTC) + timedelta(minutes=5)
    frames = {
        "CLEAN": _frame(g, [1.0] * n),
        "GAP": _frame(g[:4] + g[6:], [1.0] * (n - 2)),
        "DUP": _frame(g + [g[3]], [1.0] * (n + 1)),
        "NAN": _frame(g, [1.0, np.nan] + [1.0] * (n - 2)),
        "NONPOS": _frame(g, [1.0, 0.0, -1.0] + [1.0] * (n - 3)),
        "STALE": _frame(g[:-3], [1.0] * (n - 3)),
        "SHORT": _frame(g[-5:], [1.0] * 5),
        "EMPTY": _frame([], []),
    }
    q = quality_report(frames, H4, now, min_bars=6, stale_bars=1)
    assert list(q.columns) == list(QUALITY_COLUMNS)
    assert list(q.index) == list(frames)
    assert bool(q.loc["CLEAN", "ok"]) and q.loc["CLEAN", "reason"] == ""
    assert q.loc["CLEAN", "rows"] == n and q.loc["CLEAN", "lag_bars"] == 0
    assert q.loc["CLEAN", "first"] == pd.Timestamp(g[0], unit="ms", tz="UTC")
    assert q.loc["GAP", "gaps"] == 2 and "gaps" in q.loc["GAP", "reason"]
    assert q.loc["DUP", "duplicates"] == 1 and "duplicated" in q.loc["DUP", "reason"]
    assert q.loc["NAN", "nans"] == 1 and "NaN" in q.loc["NAN", "reason"]
    assert q.loc["NONPOS", "nonpositive"] == 2 and "<= 0" in q.loc["NONPOS", "reason"]
    assert bool(q.loc["STALE", "stale"]) and q.loc["STALE", "lag_bars"] == 3
    assert "stale" in q.loc["STALE", "reason"]
    assert bool(q.loc["SHORT", "too_short"]) and "too short" in q.loc["SHORT", "reason"]
    assert q.loc["EMPTY", "rows"] == 0 and "no closed candles" in q.loc["EMPTY", "reason"]
    assert not q.drop(index="CLEAN")["ok"].any()
    # one bar behind is within stale_bars=1; zero tolerance flags it
    lag1 = {"LAG1": _frame(g[:-1], [1.0] * (n - 1))}
    assert bool(quality_report(lag1, H4, now, 6, stale_bars=1).loc["LAG1", "ok"])
    assert not bool(quality_report(lag1, H4, now, 6, stale_bars=0).loc["LAG1", "ok"])


# --------------------------------------------------------------------------- a stand-in venue


@dataclass
class FakeExchange:
    """Serves crafted candles through the adapter's batch interface (defects on demand)."""

    candles: dict[str, list[list[float]]]
    venue_key: str = "fake"
    ohlcv_page_limit: int = 1000
    failing: set[str] = field(default_factory=set)
    requests: list[OhlcvRequest] = field(default_factory=list)

    def markets(self) -> dict[str, MarketInfo]:
        return {s: MarketInfo(s, s.replace("/USDT:USDT", "USDT"), 0.001, 0.001, 5.0, 0.01, 1.0)
                for s in self.candles}

    def fetch_quote_volumes(self) -> dict[str, float]:
        return {s: float(i) for i, s in enumerate(self.candles)}

    def fetch_ohlcv_batch(
        self, requests: Sequence[OhlcvRequest], max_concurrency: int = 8
    ) -> OhlcvBatch:
        rows: dict[OhlcvRequest, list[list[float]]] = {}
        errors: dict[OhlcvRequest, Any] = {}
        for r in requests:
            self.requests.append(r)
            if r.symbol in self.failing:
                errors[r] = ExchangeUnavailable(f"fetch_ohlcv {r.symbol}: 503")
                continue
            lo = r.since_ms or 0
            hi = r.until_ms if r.until_ms is not None else 10**15
            got = [c for c in self.candles[r.symbol] if lo <= c[0] <= hi]
            rows[r] = got
        return OhlcvBatch(rows=rows, errors=errors, requests_sent=len(requests))


def _candles(open_ms: Sequence[int], close: Sequence[float] | None = None) -> list[list[float]]:
    close = close if close is not None else [100.0 + i for i in range(len(open_ms))]
    return [[t, c, c + 1, c - 1, c, 10.0] for t, c in zip(open_ms, close, strict=True)]


def test_bad_symbols_dropped_with_reasons_and_alignment(tmp_path: Path) -> None:
    n = 40
    g = _grid(n + 1)  # the last one is forming at `now`
    now = datetime.fromtimestamp((g[-1] + 60_000) / 1000, UTC)
    candles = {
        "AAA/USDT:USDT": _candles(g),
        "BBB/USDT:USDT": _candles(g[10:]),  # listed inside the window
        "LAG/USDT:USDT": _candles(g[:-2]),  # one closed candle missing at the end
        "GAP/USDT:USDT": _candles(g[:5] + g[7:]),
        "DUP/USDT:USDT": _candles(g + [g[5]]),
        "NAN/USDT:USDT": _candles(g, [1.0] * 3 + [float("nan")] + [1.0] * (n - 3)),
        "NEG/USDT:USDT": _candles(g, [1.0] * 3 + [-2.0] + [1.0] * (n - 3)),
        "OLD/USDT:USDT": _candles(g[:-6]),
        "NEW/USDT:USDT": _candles(g[-5:]),
        "ERR/USDT:USDT": _candles(g),
    }
    fake = FakeExchange(candles, failing={"ERR/USDT:USDT"})
    params = DataParams(cache_dir=tmp_path, min_history_bars=20, stale_bars=1)
    md = load_market_data(fake, [*candles, "NOPE/USDT:USDT"], params, now, n)  # type: ignore[arg-type]
    assert list(md.closes.columns) == ["AAA/USDT:USDT", "BBB/USDT:USDT", "LAG/USDT:USDT"]
    assert set(md.dropped) == set(candles) - set(md.closes.columns) | {"NOPE/USDT:USDT"}
    expect_words = {"GAP": "gaps", "DUP": "duplicated", "NAN": "NaN", "NEG": "<= 0",
                    "OLD": "stale", "NEW": "too short", "ERR": "fetch failed", "NOPE": "not an"}
    for base, word in expect_words.items():
        sym = f"{base}/USDT:USDT"
        assert word in md.dropped[sym], (sym, md.dropped[sym])
        assert md.quality.loc[sym, "reason"] == md.dropped[sym]
        assert not bool(md.quality.loc[sym, "ok"])
    # aligned on one regular grid of open times, last row = last closed candle
    assert len(md.closes) == n
    assert md.closes.index[-1] == pd.Timestamp(g[-2], unit="ms", tz="UTC")
    assert (np.diff(md.closes.index.asi8) == np.diff(md.closes.index.asi8)[0]).all()
    assert md.closes["BBB/USDT:USDT"].isna().sum() == 10  # before its listing only
    assert md.closes["BBB/USDT:USDT"].iloc[10:].notna().all()
    lag = md.closes["LAG/USDT:USDT"]
    assert lag.iloc[-1] == lag.iloc[-2]  # carried forward over the one missing bar
    assert md.quality.loc["LAG/USDT:USDT", "lag_bars"] == 1
    assert md.quote_volume.shape == md.closes.shape
    assert isinstance(md, MarketData) and md.as_of == now


def test_nothing_usable_raises_data_error(tmp_path: Path) -> None:
    g = _grid(10)
    fake = FakeExchange({"AAA/USDT:USDT": _candles(g)})
    now = datetime.fromtimestamp(g[-1] / 1000, UTC)
    with pytest.raises(DataError, match="too short"):
        load_market_data(fake, None, DataParams(cache_dir=tmp_path,  # type: ignore[arg-type]
                                                min_history_bars=20), now, 50)


def test_cache_is_asked_only_for_what_it_lacks(tmp_path: Path) -> None:
    n = 30
    g = _grid(n + 10)
    fake = FakeExchange({"AAA/USDT:USDT": _candles(g)})
    params = DataParams(cache_dir=tmp_path, min_history_bars=5)

    def at(i: int) -> datetime:  # a minute after candle g[i] opened: g[i - 1] is the last
        return datetime.fromtimestamp((g[i] + 60_000) / 1000, UTC)

    load_market_data(fake, None, params, at(n + 5), n)  # type: ignore[arg-type]
    assert [(r.since_ms, r.until_ms) for r in fake.requests] == [(g[5], g[n + 4])]
    fake.requests.clear()
    # the window grows backwards and moves forwards: only the two missing ends are asked
    md = load_market_data(fake, None, params, at(n + 7), n + 7)  # type: ignore[arg-type]
    assert sorted((r.since_ms, r.until_ms) for r in fake.requests) == [
        (g[0], g[4]), (g[n + 5], g[n + 6])
    ]
    assert len(md.closes) == n + 7 and md.closes.notna().all().all()
    # a rewind is served from the cache without any request
    fake.requests.clear()
    md2 = load_market_data(fake, None, params, at(n + 5), n)  # type: ignore[arg-type]
    assert fake.requests == []
    assert md2.closes.index[-1] == pd.Timestamp(g[n + 4], unit="ms", tz="UTC")
    assert md2.closes.index[0] == pd.Timestamp(g[5], unit="ms", tz="UTC")


def test_damaged_cache_file_is_refetched(tmp_path: Path) -> None:
    g = _grid(21)
    fake = FakeExchange({"AAA/USDT:USDT": _candles(g)})
    params = DataParams(cache_dir=tmp_path, min_history_bars=5)
    now = datetime.fromtimestamp((g[-1] + 1) / 1000, UTC)
    first = load_market_data(fake, None, params, now, 20)  # type: ignore[arg-type]
    path = CandleCache(tmp_path, "fake", "4h").path("AAA/USDT:USDT")
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    path.write_bytes(b"not parquet")
    fake.requests.clear()
    again = load_market_data(fake, None, params, now, 20)  # type: ignore[arg-type]
    assert len(fake.requests) == 1
    pd.testing.assert_frame_equal(first.closes, again.closes)


# --------------------------------------------------------------------------- the simulator


def test_paginates_and_equals_the_market(exchange: Exchange, market: Market, sim: Any,
                                         tmp_path: Path) -> None:
    bars = 2100  # three pages of <= 1000 candles per symbol
    now = _now_after(2150, minutes_into_forming=95)
    sim.set_now(now)
    spy = Spy(exchange)
    params = DataParams(cache_dir=tmp_path, min_history_bars=100)
    md = load_market_data(exchange, list(market.symbols), params, now, bars)  # venue ids too
    n_sym = len(market.symbols)
    assert md.closes.shape == (bars, n_sym)
    per_symbol = {s: [r for r in spy.requests if r.symbol == s] for s in md.closes.columns}
    assert all(len(rs) == 3 for rs in per_symbol.values())
    assert md.requests == 3 * n_sym
    exp = _expected_closes(market, now, bars)[list(md.closes.columns)]
    pd.testing.assert_frame_equal(md.closes, exp, check_freq=False)
    assert md.quality["ok"].all() and md.dropped == {}


def test_forming_candle_is_served_but_never_used(exchange: Exchange, sim: Any,
                                                 tmp_path: Path) -> None:
    now = _now_after(2160, minutes_into_forming=30)
    sim.set_now(now)
    forming_open = to_ms(GENESIS) + 2160 * H4
    raw = exchange.fetch_ohlcv("BTC/USDT:USDT", "4h", forming_open - 2 * H4, 10)
    assert raw[-1][0] == forming_open  # the venue does serve the forming candle
    md = load_market_data(exchange, ["BTC/USDT:USDT", "ETHUSDT"],
                          DataParams(cache_dir=tmp_path, min_history_bars=10), now, 50)
    assert list(md.closes.columns) == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert md.closes.index[-1] == pd.Timestamp(forming_open - H4, unit="ms", tz="UTC")
    cached = CandleCache(tmp_path, exchange.venue_key, "4h").read("BTC/USDT:USDT")
    assert cached is not None and int(cached.open_ms[-1]) == forming_open - H4


def test_incremental_refresh_fetches_each_closed_candle_once(
    exchange: Exchange, market: Market, sim: Any, tmp_path: Path
) -> None:
    clock = SettableClock(_now_after(2170, minutes_into_forming=1))
    sim.set_now(clock.now())
    params = DataParams(cache_dir=tmp_path, min_history_bars=100)
    spy = Spy(exchange)
    symbols = [market.unified(s) for s in market.symbols]
    first = load_market_data(exchange, symbols, params, clock.now(), 1200)
    n_sym = first.closes.shape[1]
    assert first.requests == 2 * n_sym
    prev_last = first.closes.index[-1]
    for step in (timedelta(minutes=30), timedelta(hours=4), timedelta(hours=8)):
        clock.advance(step)
        sim.set_now(clock.now())
        before = len(spy.requests)
        md = load_market_data(exchange, symbols, params, clock.now(), 1200)
        new_requests = spy.requests[before:]
        n_new = step // timedelta(hours=4)  # closed candles added by this step
        if n_new == 0:  # nothing new has closed: nothing is asked
            assert new_requests == []
        else:  # one request per symbol, starting right after the last cached candle
            assert len(new_requests) == n_sym
            assert {r.since_ms for r in new_requests} == {to_ms(prev_last) + H4}
            assert {r.limit for r in new_requests} == {n_new}
        assert md.requests == len(new_requests)
        assert md.closes.index[-1] == prev_last + step // timedelta(hours=4) * timedelta(hours=4)
        prev_last = md.closes.index[-1]
        exp = _expected_closes(market, clock.now(), 1200)[list(md.closes.columns)]
        pd.testing.assert_frame_equal(md.closes, exp, check_freq=False)
    for sym in first.closes.columns:
        times = spy.open_times(sym)
        assert len(times) == len(set(times)), f"{sym}: a closed candle was fetched twice"


def test_cache_survives_a_new_process(exchange: Exchange, market: Market, sim: Any,
                                      tmp_path: Path) -> None:
    now = _now_after(2180, minutes_into_forming=10)
    sim.set_now(now)
    cache = tmp_path / "cache"
    symbols = list(market.symbols)
    params = DataParams(cache_dir=cache, min_history_bars=100)
    fresh = load_market_data(exchange, symbols, params, now, 300)
    out = tmp_path / "reloaded.parquet"
    script = textwrap.dedent(
        f"""
        import json, sys
        from pairlib.config import DataParams, VenueParams
        from pairlib.clock import parse_time
        from pairlib.edges.data import load_market_data
        from pairlib.venue.exchange import Exchange
        params = DataParams(cache_dir={str(cache)!r}, min_history_bars=100)
        with Exchange.from_params(VenueParams(), sim_url={sim.url!r}) as ex:
            md = load_market_data(ex, {symbols!r}, params, parse_time({now.isoformat()!r}), 300)
        md.closes.to_parquet({str(out)!r})
        print(json.dumps({{"requests": md.requests}}))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {"requests": 0}
    reloaded = pd.read_parquet(out)
    pd.testing.assert_frame_equal(reloaded, fresh.closes, check_freq=False)


def test_universe_is_top_by_quote_volume(exchange: Exchange, sim: Any, tmp_path: Path) -> None:
    now = _now_after(2190)
    sim.set_now(now)
    params = DataParams(cache_dir=tmp_path, min_history_bars=100, universe_size=3)
    md = load_market_data(exchange, None, params, now, 200)
    volumes = exchange.fetch_quote_volumes()
    top = sorted(volumes, key=lambda s: (-volumes[s], s))[:3]
    assert list(md.closes.columns) == top
    assert (md.quote_volume > 0).all().all()
