"""The walk-forward backtest against replaying the same bars through the live tick.

Figures
-------
* ``backtest 2 years, 48 symbols``: :func:`pairlib.engine.backtest.simulate` over 4,380 4h
  bars of the default simulated universe (48 symbols) with 24 monthly pair selections, from a
  price panel in memory. Target <= 10 s.
* ``live tick replay, per bar``: ``tick.run`` against the in-process simulator over the real
  ccxt client on consecutive bars (the parity test's path), median of a short replay; the
  baseline the backtest is compared with.
* ``backtest speed-up over the live replay``: (tick seconds per bar x 4,380) / backtest
  seconds. Target >= 100x.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.common import Row
from pairlib.config import Params
from pairlib.core.risk import MarketRules
from pairlib.engine.backtest import simulate
from pairlib.sim import GENESIS, Market

__all__ = ["run"]

BAR = timedelta(hours=4)
BARS = 4_380
TARGET_S = 10.0
TARGET_SPEEDUP = 100.0
REPLAY_TICKS = 12


def _backtest() -> tuple[float, int]:
    m = Market()
    p = Params()
    start = GENESIS + (p.selection.formation_bars + p.strategy.lookback + 10) * BAR
    end = start + (BARS - 1) * BAR
    first = start - (p.selection.formation_bars + p.strategy.lookback + 5) * BAR
    names = {c: m.unified(c) for c in m.symbols}
    closes = m.closes(first, end).rename(columns=names)
    qv = m.quote_volumes(first, end).rename(columns=names)
    rules = {s: MarketRules(s, 0.001, 0.001, 5.0) for s in closes.columns}
    t0 = time.perf_counter()
    r = simulate(p, closes, start, end, rules, quote_volume=qv)
    return time.perf_counter() - t0, len(r.trades)


def _tick_per_bar() -> float:
    from pairlib.engine import generate, tick

    start = GENESIS + timedelta(days=400)
    with tempfile.TemporaryDirectory() as tmp:
        raw = {"venue": {"sim_state": str(Path(tmp) / "sim.json")},
               "data": {"cache_dir": str(Path(tmp) / "data")}, "state_dir": str(Path(tmp))}
        p = Params.model_validate(raw)
        generate.run(p, start)
        times = []
        for k in range(REPLAY_TICKS):
            t0 = time.perf_counter()
            r = tick.run(p, start + k * BAR)
            times.append(time.perf_counter() - t0)
            assert r.status == "ok", r.error
    return statistics.median(times[1:])  # the first tick fills the candle cache


def run() -> list[Row]:
    """Measure and return the rows printed by ``python -m benchmarks``."""
    elapsed, trades = _backtest()
    per_tick = _tick_per_bar()
    speedup = per_tick * BARS / elapsed
    return [
        Row("backtest 2 years (4,380 bars), 48 symbols", elapsed, "s", f"<= {TARGET_S:g} s",
            elapsed <= TARGET_S, f"24 monthly selections, {trades} trades"),
        Row("live tick replay, per bar", per_tick, "s", "(baseline)", True,
            f"tick.run on the in-process simulator, median of {REPLAY_TICKS - 1}"),
        Row("backtest speed-up over the live replay", speedup, "x",
            f">= {TARGET_SPEEDUP:g}x", speedup >= TARGET_SPEEDUP,
            f"{per_tick:.3f} s x {BARS:,} bars / {elapsed:.2f} s"),
    ]
