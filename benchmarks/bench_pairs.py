"""Pair selection on a small universe: ``pairlib.core.pairs.select`` end to end.

Figures
-------
* ``pairs.select 48 symbols``: the whole selection pipeline (prefilters, Engle-Granger scan,
  FDR, half-life, crossings, out-of-sample check) on the simulator's 48-symbol market with 8
  planted pairs, 600 bars of 4h closes and quote volumes, default ``PairsParams``; best of 3
  after one warm-up call (imports, thread pool). Target <= 2 s: the research notebook and the
  daily reselection run it interactively.

The funnel counts of the same universe are asserted in
``tests/test_pairs.py::test_48_symbol_universe_goes_through_the_funnel``; this file holds the
timing only, so that the unit suite carries no wall-clock assertion.
"""

from __future__ import annotations

import pandas as pd

from benchmarks.common import Row, best_of
from pairlib.config import PairsParams
from pairlib.core.pairs import select
from pairlib.sim.market import GENESIS, Market, MarketSpec

__all__ = ["run", "universe"]

N_SYMBOLS = 48
N_PAIRS = 8
BARS = 600
TARGET_S = 2.0


def universe() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Closes and quote volumes of the simulator's 48-symbol market (seed 3), 600 4h bars."""
    market = Market(MarketSpec(seed=3, n_symbols=N_SYMBOLS, n_pairs=N_PAIRS, horizon_bars=BARS))
    end = GENESIS + pd.Timedelta(hours=4 * BARS)
    return market.closes(GENESIS, end), market.quote_volumes(GENESIS, end)


def run() -> list[Row]:
    """Measure and return the rows printed by ``python -m benchmarks``."""
    prices, qv = universe()
    params = PairsParams()
    sel = select(prices, params, quote_volume=qv)  # warm up imports and the thread pool
    count = dict(zip(sel.funnel["stage"], sel.funnel["count"], strict=True))
    elapsed = best_of(lambda: select(prices, params, quote_volume=qv), repeat=3)
    return [
        Row(f"pairs.select {N_SYMBOLS} symbols", elapsed, "s", f"<= {TARGET_S:g} s",
            elapsed <= TARGET_S,
            f"{count['pairs tested']:,} pairs tested, {len(sel.chosen)} chosen; "
            f"{BARS} bars, best of 3"),
    ]
