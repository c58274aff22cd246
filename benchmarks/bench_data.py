"""Market-data loading from the simulated exchange over loopback HTTP (real ccxt client).

Figures
-------
* first fetch: 200 symbols x 1,500 closed 4h candles into an empty Parquet cache, with 20 ms
  of injected latency per request; target <= 15 s.
* refresh after one new bar (sim clock advanced 4 h): target <= 2 s.
* baseline: the same first fetch with one request in flight at a time (same code path,
  ``max_concurrency=1``), on a fresh simulator and adapter so that neither the venue's nor
  ccxt's per-minute weight budget is shared with the measured run.

Market generation (the simulator's own work before it can answer) is done before timing.
The universe is passed explicitly: ranking by 24 h volume costs one extra request (weight 40,
which ccxt's synchronous limiter spaces by 1 s) and is not what is measured here.
"""

from __future__ import annotations

import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.common import Row
from pairlib.config import DataParams, VenueParams
from pairlib.edges.data import load_market_data
from pairlib.sim.market import GENESIS, Market, MarketSpec
from pairlib.sim.server import SimServer
from pairlib.venue.exchange import Exchange

__all__ = ["run"]

N_SYMBOLS = 200
BARS = 1_500
LATENCY_MS = 20
CONCURRENCY = 32
FIRST_TARGET_S = 15.0
REFRESH_TARGET_S = 2.0


def _first_fetch(
    market: Market, cache: Path, concurrency: int
) -> tuple[float, int, float | None, int]:
    """Seconds and requests of a first fetch (and of a refresh one bar later, if asked)."""
    now = GENESIS + timedelta(hours=4 * (BARS + 100), minutes=7)
    srv = SimServer(market, state_path=None, now=now)
    srv.start()
    srv.faults.latency_ms = LATENCY_MS
    symbols = [market.unified(s) for s in market.symbols]
    params = DataParams(cache_dir=cache, min_history_bars=BARS, universe_size=N_SYMBOLS)
    try:
        with Exchange.from_params(VenueParams(), sim_url=srv.url, retry_base_delay=0.05) as ex:
            t0 = time.perf_counter()
            md = load_market_data(ex, symbols, params, now, BARS, max_concurrency=concurrency)
            first = time.perf_counter() - t0
            if md.closes.shape != (BARS, N_SYMBOLS):
                raise AssertionError(f"expected {(BARS, N_SYMBOLS)}, got {md.closes.shape}")
            refresh = None
            refresh_requests = 0
            if concurrency > 1:
                later = now + timedelta(hours=4)
                srv.set_now(later)
                t0 = time.perf_counter()
                md2 = load_market_data(ex, symbols, params, later, BARS,
                                       max_concurrency=concurrency)
                refresh = time.perf_counter() - t0
                refresh_requests = md2.requests
                if md2.closes.index[-1] - md.closes.index[-1] != timedelta(hours=4):
                    raise AssertionError("refresh did not add exactly one bar")
            return first, md.requests, refresh, refresh_requests
    finally:
        srv.stop()


def run() -> list[Row]:
    """Measure first fetch, refresh and the sequential baseline."""
    market = Market(MarketSpec(n_symbols=N_SYMBOLS))
    market.warm()
    with tempfile.TemporaryDirectory() as d:
        first, n_first, refresh, n_refresh = _first_fetch(market, Path(d) / "a", CONCURRENCY)
        seq, _, _, _ = _first_fetch(market, Path(d) / "b", 1)
    assert refresh is not None
    return [
        Row(
            name=f"data: first fetch {N_SYMBOLS}x{BARS} 4h bars, {LATENCY_MS} ms latency",
            measured=first,
            unit="s",
            target=f"<= {FIRST_TARGET_S:g} s",
            ok=first <= FIRST_TARGET_S,
            baseline=f"sequential {seq:.2f} s ({n_first} requests, {CONCURRENCY} in flight)",
        ),
        Row(
            name="data: refresh after one new 4h bar",
            measured=refresh,
            unit="s",
            target=f"<= {REFRESH_TARGET_S:g} s",
            ok=refresh <= REFRESH_TARGET_S,
            baseline=f"{n_refresh} requests (1 per symbol); first fetch {first:.2f} s",
        ),
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
