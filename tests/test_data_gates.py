"""pairlib.edges.data gates: a defect only drops a symbol where a decision uses it.

Everything runs against the simulator (a real HTTP server on 127.0.0.1 behind the real ccxt
adapter). The simulated market serves clean candles; :class:`tick_fixtures.SpoiltMarket`
wraps it as a :class:`~pairlib.sim.source.MarketSource` and spoils chosen 4h klines the way a
venue can (a missing candle, a NaN, zero or negative price, a one-bar jump), and the cache
tests corrupt the Parquet files on disk.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tick_fixtures import SpoiltMarket

from pairlib.clock import to_ms
from pairlib.config import DataParams, VenueParams
from pairlib.core.strategy import zscore
from pairlib.edges.data import (
    JUMP_LOG_RETURN,
    CandleCache,
    MarketData,
    load_market_data,
    quality_report,
)
from pairlib.errors import DataError
from pairlib.sim.market import GENESIS, Market, MarketSpec
from pairlib.sim.server import SimServer
from pairlib.venue.exchange import Exchange
from pairlib.venue.records import OhlcvBatch, OhlcvRequest

H4 = 4 * 3_600_000
BARS = 180  # what the tick fetches (lookback 60 + 120 bars of z history)
DECISION = 60  # the strategy's lookback: the bars a decision uses
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
SYMBOLS = [BTC, ETH]


def _now_after(n_bars: int, minutes_into_forming: int = 20) -> datetime:
    """A time ``minutes_into_forming`` into the candle after ``n_bars`` closed ones."""
    return GENESIS + timedelta(hours=4 * n_bars, minutes=minutes_into_forming)


NOW = _now_after(2000)
LAST_OPEN = to_ms(GENESIS) + 1999 * H4  # the last closed candle at NOW


def _ts(open_ms: int) -> pd.Timestamp:
    return pd.Timestamp(open_ms, unit="ms", tz="UTC")


# --------------------------------------------------------------------------- the venue


@pytest.fixture(scope="module")
def market() -> SpoiltMarket:
    return SpoiltMarket(Market(MarketSpec(seed=7, n_symbols=6, n_pairs=1)), intervals=("4h",))


@pytest.fixture(scope="module")
def sim(market: SpoiltMarket) -> Iterator[SimServer]:
    srv = SimServer(market, state_path=None, now=NOW, host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture()
def exchange(sim: SimServer, market: SpoiltMarket) -> Iterator[Exchange]:
    sim.faults.clear()
    sim.set_now(NOW)
    market.defects.clear()
    ex = Exchange.from_params(
        VenueParams(timeout_ms=2_000, max_retries=2), sim_url=sim.url, retry_base_delay=0.001
    )
    with ex:
        yield ex
    market.defects.clear()


class Spy:
    """Record the adapter's OHLCV requests."""

    def __init__(self, ex: Exchange) -> None:
        self.calls: list[OhlcvBatch] = []
        self._orig = ex.fetch_ohlcv_batch
        ex.fetch_ohlcv_batch = self  # type: ignore[method-assign]

    def __call__(self, requests: Sequence[OhlcvRequest], max_concurrency: int = 8) -> OhlcvBatch:
        got = self._orig(requests, max_concurrency=max_concurrency)
        self.calls.append(got)
        return got

    def requests(self, symbol: str) -> list[OhlcvRequest]:
        return [r for b in self.calls for r in [*b.rows, *b.errors] if r.symbol == symbol]


def _params(tmp_path: Path) -> DataParams:
    return DataParams(cache_dir=tmp_path, min_history_bars=120)


def _expected(market: SpoiltMarket, now: datetime, symbol: str) -> pd.Series:
    got = market.closes(GENESIS, now, now)[symbol.split("/")[0] + "USDT"].iloc[-BARS:]
    got.name = symbol
    return got


def _load(ex: Exchange, tmp_path: Path, now: datetime = NOW,
          decision_bars: int | None = DECISION) -> MarketData:
    """Load BTC and ETH as the tick does; ``decision_bars=None`` loads as pair generation
    does (without the keyword)."""
    if decision_bars is None:
        return load_market_data(ex, SYMBOLS, _params(tmp_path), now, bars=BARS)
    return load_market_data(ex, SYMBOLS, _params(tmp_path), now, bars=BARS,
                            decision_bars=decision_bars)


# what each served defect counts as in the quality report, and the word of its reason
DEFECTS = {
    "missing": ("gaps", "missing candle"),
    "nan": ("nans", "NaN or infinite prices"),
    "zero": ("nonpositive", "prices <= 0"),
    "negative": ("nonpositive", "prices <= 0"),
}


# --------------------------------------------------------------------------- decision window


@pytest.mark.parametrize("kind", list(DEFECTS))
def test_defect_older_than_the_decision_window_keeps_the_symbol(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path, kind: str
) -> None:
    bad = LAST_OPEN - 100 * H4
    market.defects[("ETHUSDT", bad)] = kind
    column, word = DEFECTS[kind]

    md = _load(exchange, tmp_path)
    assert list(md.closes.columns) == SYMBOLS and md.dropped == {}
    assert md.decision_bars == DECISION
    q = md.quality.loc[ETH]
    assert bool(q["ok"]) and q["reason"] == ""
    assert q["masked"] == 1 and q[column] == 1
    assert "older than the decision window" in q["notes"]
    # the bad bar is NaN, every other bar is the market's close
    eth = md.closes[ETH]
    assert math.isnan(eth[_ts(bad)]) and math.isnan(md.quote_volume.loc[_ts(bad), ETH])
    exp = _expected(market, NOW, ETH)
    pd.testing.assert_series_equal(eth.drop(_ts(bad)), exp.drop(_ts(bad)), check_freq=False)
    assert eth.iloc[-DECISION:].notna().all()
    # a z-score over the trailing window is the one clean data gives
    spread = np.log(eth.to_numpy()) - np.log(md.closes[BTC].to_numpy())
    clean = np.log(exp.to_numpy()) - np.log(_expected(market, NOW, BTC).to_numpy())
    assert zscore(spread, DECISION)[-1] == zscore(clean, DECISION)[-1]
    assert md.quality.loc[BTC, "masked"] == 0 and md.quality.loc[BTC, "notes"] == ""

    # pair generation gates the whole window: the same defect drops the symbol there
    gen = _load(exchange, tmp_path, decision_bars=None)
    assert ETH in gen.dropped and word in gen.dropped[ETH]
    assert "decision window" not in gen.dropped[ETH]
    assert gen.quality.loc[ETH, "masked"] == 0
    assert gen.decision_bars is None


@pytest.mark.parametrize("kind", list(DEFECTS))
def test_defect_inside_the_decision_window_drops_the_symbol(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path, kind: str
) -> None:
    market.defects[("ETHUSDT", LAST_OPEN - 10 * H4)] = kind
    column, word = DEFECTS[kind]
    md = _load(exchange, tmp_path)
    assert list(md.closes.columns) == [BTC]
    reason = md.dropped[ETH]
    assert word in reason and "in the decision window (last 60 candles)" in reason
    q = md.quality.loc[ETH]
    assert not bool(q["ok"]) and q["reason"] == reason and q[column] == 1
    assert q["masked"] == 0


def test_a_served_defect_is_asked_for_again_on_the_next_load(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path
) -> None:
    bad = LAST_OPEN - 100 * H4
    market.defects[("ETHUSDT", bad)] = "nan"
    _load(exchange, tmp_path)
    market.defects.clear()  # the venue has repaired its candle
    spy = Spy(exchange)
    md = _load(exchange, tmp_path)
    assert [(r.since_ms, r.until_ms) for r in spy.requests(ETH)] == [(bad, bad)]
    assert spy.requests(BTC) == [] and md.requests == 1
    assert md.quality.loc[ETH, "masked"] == 0 and md.quality.loc[ETH, "nans"] == 0
    pd.testing.assert_series_equal(md.closes[ETH], _expected(market, NOW, ETH),
                                   check_freq=False)


def test_decision_bars_must_fit_the_window(exchange: Exchange, tmp_path: Path) -> None:
    for bad in (0, BARS + 1, True, 2.5):
        with pytest.raises(DataError, match=r"decision_bars must be None or a positive integer"):
            load_market_data(exchange, SYMBOLS, _params(tmp_path), NOW, bars=BARS,
                             decision_bars=bad)  # type: ignore[arg-type]


def test_quality_report_gates_infinite_prices_and_the_decision_window() -> None:
    n = 10
    open_ms = [to_ms(GENESIS) + i * H4 for i in range(n)]
    now = datetime.fromtimestamp((open_ms[-1] + H4) / 1000, GENESIS.tzinfo)

    def frame(close: list[float]) -> pd.DataFrame:
        idx = pd.DatetimeIndex(pd.to_datetime(open_ms, unit="ms", utc=True), name="open_time")
        return pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                             "volume": 1.0}, index=idx)

    old = frame([1.0, math.inf] + [1.0] * (n - 2))
    new = frame([1.0] * (n - 2) + [math.inf, 1.0])
    q = quality_report({"OLD": old, "NEW": new}, H4, now, 5, 1, decision_bars=3)
    assert bool(q.loc["OLD", "ok"]) and q.loc["OLD", "nans"] == 1 and q.loc["OLD", "masked"] == 1
    assert not bool(q.loc["NEW", "ok"])
    assert "NaN or infinite prices in the decision window" in q.loc["NEW", "reason"]
    assert not bool(quality_report({"OLD": old}, H4, now, 5, 1).loc["OLD", "ok"])


# --------------------------------------------------------------------------- the cache


def _rewrite(path: Path, edit: Any = None, meta_edit: Any = None) -> None:
    """Rewrite a cache file with its rows (a DataFrame) and/or metadata (a dict) edited."""
    table = pq.read_table(path)
    meta = dict(table.schema.metadata or {})
    df = table.to_pandas()
    if edit is not None:
        df = edit(df)
    if meta_edit is not None:
        key = b"pairlib.ohlcv"
        meta[key] = json.dumps(meta_edit(json.loads(meta[key]))).encode()
    out = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(meta)
    pq.write_table(out, path)


def _set(row_of: int, column: str, value: float) -> Any:
    def edit(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df.loc[df["open_ms"] == row_of, column] = value
        return df
    return edit


CORRUPT = LAST_OPEN - 100 * H4  # a row of the cached window

CORRUPTIONS: dict[str, Any] = {
    "nan": _set(CORRUPT, "close", math.nan),
    "zero": _set(CORRUPT, "low", 0.0),
    "negative": _set(CORRUPT, "open", -3.0),
    "inf": _set(CORRUPT, "high", math.inf),
    "volume": _set(CORRUPT, "volume", -1.0),
    "duplicate": lambda df: pd.concat([df, df[df["open_ms"] == CORRUPT].assign(close=1.0)])
    .sort_values("open_ms", kind="stable").reset_index(drop=True),
    "unordered": lambda df: df.iloc[::-1].reset_index(drop=True),
    "hole": lambda df: df[df["open_ms"] != CORRUPT].reset_index(drop=True),
}


@pytest.mark.parametrize("how", list(CORRUPTIONS))
def test_corrupted_cache_is_fetched_again(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path, how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _load(exchange, tmp_path, decision_bars=None)
    path = CandleCache(tmp_path, exchange.venue_key, "4h").path(ETH)
    _rewrite(path, CORRUPTIONS[how])
    spy = Spy(exchange)
    with caplog.at_level(logging.WARNING, logger="pairlib.edges.data"):
        md = _load(exchange, tmp_path, decision_bars=None)
    asked = spy.requests(ETH)
    assert len(asked) == 1 and asked[0].since_ms is not None and asked[0].until_ms is not None
    assert asked[0].since_ms <= CORRUPT <= asked[0].until_ms
    assert spy.requests(BTC) == []
    assert any("ETH/USDT:USDT" in r.getMessage() for r in caplog.records)
    assert md.dropped == {} and bool(md.quality.loc[ETH, "ok"])
    pd.testing.assert_series_equal(md.closes[ETH], _expected(market, NOW, ETH),
                                   check_freq=False)
    # the file is repaired: sorted, unique, valid, holding the venue's candle
    fixed = pq.read_table(path).to_pandas()
    assert fixed["open_ms"].is_monotonic_increasing and fixed["open_ms"].is_unique
    assert np.isfinite(fixed[["open", "high", "low", "close", "volume"]]).all().all()
    assert (fixed[["open", "high", "low", "close"]] > 0).all().all()
    assert fixed.loc[fixed["open_ms"] == CORRUPT, "close"].item() == md.closes[ETH][_ts(CORRUPT)]


def test_cache_claiming_coverage_past_the_venue_clock_is_clamped(
    exchange: Exchange, market: SpoiltMarket, sim: SimServer, tmp_path: Path
) -> None:
    _load(exchange, tmp_path, decision_bars=None)
    path = CandleCache(tmp_path, exchange.venue_key, "4h").path(ETH)
    _rewrite(path, meta_edit=lambda m: {**m, "covered_to_ms": LAST_OPEN + 500 * H4})
    later = NOW + timedelta(hours=4 * 5)
    sim.set_now(later)
    spy = Spy(exchange)
    md = _load(exchange, tmp_path, now=later, decision_bars=None)
    assert [(r.since_ms, r.until_ms) for r in spy.requests(ETH)] == [
        (LAST_OPEN + H4, LAST_OPEN + 5 * H4)
    ]
    assert md.dropped == {} and md.quality.loc[ETH, "lag_bars"] == 0
    assert md.closes.index[-1] == _ts(LAST_OPEN + 5 * H4)
    pd.testing.assert_series_equal(md.closes[ETH], _expected(market, later, ETH),
                                   check_freq=False)
    meta = json.loads(pq.read_schema(path).metadata[b"pairlib.ohlcv"])
    assert meta["covered_to_ms"] == LAST_OPEN + 5 * H4


def test_cache_missing_the_rows_its_metadata_claims_fetches_them(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path
) -> None:
    _load(exchange, tmp_path, decision_bars=None)
    path = CandleCache(tmp_path, exchange.venue_key, "4h").path(ETH)
    _rewrite(path, lambda df: df.iloc[:-7].reset_index(drop=True))  # metadata unchanged
    spy = Spy(exchange)
    md = _load(exchange, tmp_path, decision_bars=None)
    assert [(r.since_ms, r.until_ms) for r in spy.requests(ETH)] == [
        (LAST_OPEN - 6 * H4, LAST_OPEN)
    ]
    assert md.dropped == {} and md.quality.loc[ETH, "lag_bars"] == 0
    pd.testing.assert_series_equal(md.closes[ETH], _expected(market, NOW, ETH),
                                   check_freq=False)


# --------------------------------------------------------------------------- jumps


@pytest.mark.parametrize("decision_bars", [DECISION, None])
def test_a_jump_the_venue_serves_is_flagged_and_kept(
    exchange: Exchange, market: SpoiltMarket, tmp_path: Path, decision_bars: int | None
) -> None:
    spike = LAST_OPEN - 5 * H4
    market.defects[("ETHUSDT", spike)] = 1.4  # a 40 % one-bar spike on a valid candle
    md = _load(exchange, tmp_path, decision_bars=decision_bars)
    assert list(md.closes.columns) == SYMBOLS and md.dropped == {}
    q = md.quality.loc[ETH]
    assert bool(q["ok"]) and q["reason"] == ""
    assert q["jumps"] == 2  # up into the spike, down out of it
    assert q["max_abs_log_return"] > JUMP_LOG_RETURN
    assert "2 one-bar moves with |log return| > 0.2" in q["notes"]
    exp = _expected(market, NOW, ETH)
    assert md.closes[ETH][_ts(spike)] == pytest.approx(1.4 * exp[_ts(spike)], rel=1e-6)
    clean = md.quality.loc[BTC]
    assert clean["jumps"] == 0 and 0 < clean["max_abs_log_return"] < JUMP_LOG_RETURN
