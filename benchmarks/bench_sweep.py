"""The signal-level parameter sweep against a loop of ``strategy.positions`` and vectorbt.

Figures
-------
* ``sweep signal level``: :func:`pairlib.core.sweep.sweep_signals` on 100 combinations
  (5 entries x 4 exits x 5 lookbacks) x 20 pair paths x 6,000 4h bars, rolling z-scores
  included, costs and metrics per combination. Target <= 0.7 s.
* ``loop of strategy.positions``: ``strategy.zscore`` and ``strategy.positions`` per path and
  combination, the same grid (the baseline the fast path must equal).
* ``vectorbt from_signals``: vectorbt 1.2 ``Portfolio.from_signals`` on the same grid with a
  simpler rule (enter at |z| >= entry, exit at |z| <= exit; no stop, no re-arm), warm, and
  its first (compiling) call. Bench-only dependency.
* ``Dask speed-up, 2 workers``: the same chunks of a 400-combination grid on a local cluster
  of 2 worker processes, against one process.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from benchmarks.common import Row, best_of
from pairlib.core.strategy import positions, zscore
from pairlib.core.sweep import PathArrays, PathPanel, evaluate_chunk, sweep_signals
from pairlib.engine.sweep import LOCAL_HTTP

__all__ = ["run"]

TARGET_S = 0.7
PATHS, BARS = 20, 6_000
TF_MS = 4 * 3_600_000
ENTRIES = (0.8, 1.0, 1.25, 1.5, 2.0)
EXITS = (0.0, 0.25, 0.5, 0.75)
LOOKBACKS = (30, 45, 60, 90, 120)
STOP = 3.5


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    s = np.zeros((PATHS, BARS))
    noise = rng.normal(0, 0.01, size=(PATHS, BARS))
    for t in range(1, BARS):
        s[:, t] = 0.97 * s[:, t - 1] + noise[:, t]
    rets = np.diff(s, axis=1, prepend=0.0) + rng.normal(0, 0.002, size=(PATHS, BARS))
    return s, rets


def _grid() -> tuple[np.ndarray, ...]:
    cells = list(itertools.product(ENTRIES, EXITS, LOOKBACKS))
    e, x, lb = (np.array(v) for v in zip(*cells, strict=True))
    return e, x, lb.astype(int), np.full(len(cells), STOP)


def _loop(spreads: np.ndarray) -> None:
    e, x, lb, s = _grid()
    for L in LOOKBACKS:
        zs = [zscore(p, L) for p in spreads]
        for c in np.flatnonzero(lb == L):
            for z in zs:
                positions(z, e[c], x[c], s[c])


def _vectorbt(spreads: np.ndarray, rets: np.ndarray) -> tuple[float, float] | None:
    try:
        import vectorbt as vbt
    except ImportError:
        print("vectorbt not installed (make bench installs requirements/lock-bench.txt)")
        return None
    e, x, lb, _ = _grid()
    close = 100.0 * np.exp(np.cumsum(rets, axis=1)).T  # (bars, paths)

    def once() -> None:
        entries, exits, prices = [], [], []
        for L in LOOKBACKS:
            z = np.array([zscore(p, L) for p in spreads]).T
            for c in np.flatnonzero(lb == L):
                entries.append(np.abs(z) >= e[c])
                exits.append(np.abs(z) <= x[c])
                prices.append(close)
        vbt.Portfolio.from_signals(np.hstack(prices), np.hstack(entries), np.hstack(exits),
                                   fees=0.0007, freq="4h").sharpe_ratio()

    t0 = time.perf_counter()
    once()
    first = time.perf_counter() - t0
    return first, best_of(once, 2)


def _dask_speedup(spreads: np.ndarray, rets: np.ndarray) -> tuple[float, float, float]:
    from distributed import Client, LocalCluster

    panel = PathPanel({0: PathArrays(spreads, rets, np.ones_like(spreads, dtype=bool),
                                     np.full(PATHS, 1.0 / PATHS), 120)})
    cells = list(itertools.product((0.8, 1.0, 1.25, 1.5, 2.0), (0.0, 0.25, 0.5, 0.75),
                                   (30, 45, 60, 90, 120), (2.5, 3.0, 3.5, 4.0)))
    chunks = [(0, list(range(i, min(i + 50, len(cells)))),
               [(int(lb), e, x, s, float("nan")) for e, x, lb, s in cells[i:i + 50]])
              for i in range(0, len(cells), 50)]
    t0 = time.perf_counter()
    for ch in chunks:
        evaluate_chunk(ch, panel, 0.0007)
    single = time.perf_counter() - t0
    with (LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       dashboard_address=LOCAL_HTTP) as cluster, Client(cluster) as client):
        shared = client.scatter(panel, broadcast=True)
        client.gather(client.map(evaluate_chunk, chunks[:2], panel=shared, cost=0.0007,
                                 pure=False))  # warm the workers' imports
        t0 = time.perf_counter()
        client.gather(client.map(evaluate_chunk, chunks, panel=shared, cost=0.0007,
                                 pure=False))
        dask = time.perf_counter() - t0
    return single, dask, single / dask


def run() -> list[Row]:
    """Measure and return the rows printed by ``python -m benchmarks``."""
    spreads, rets = _data()
    e, x, lb, s = _grid()

    def fast() -> None:
        sweep_signals(spreads, rets, lb, e, x, s, timeframe_ms=TF_MS, cost=0.0007,
                      first_bar=120)

    fast()
    t_fast = best_of(fast, 3)
    t0 = time.perf_counter()
    _loop(spreads)
    t_loop = time.perf_counter() - t0
    rows = [
        Row("sweep signal level: 100 combos x 20 pairs x 6,000 bars", t_fast, "s",
            f"<= {TARGET_S:g} s", t_fast <= TARGET_S, "rolling z, stops, re-arm, costs, metrics"),
        Row("loop of strategy.zscore + positions, same grid", t_loop, "s", "(baseline)", True,
            f"sweep {t_loop / t_fast:.0f}x faster"),
    ]
    vb = _vectorbt(spreads, rets)
    if vb is not None:
        first, warm = vb
        rows += [
            Row("vectorbt 1.2 from_signals, same grid (warm)", warm, "s", "slower than sweep",
                warm > t_fast, f"simpler rule (no stop, no re-arm); sweep {warm / t_fast:.1f}x"
                " faster"),
            Row("vectorbt 1.2 from_signals, first call", first, "s", "(compile, reported)",
                True, "numba compilation included"),
        ]
    single, dask, speedup = _dask_speedup(spreads, rets)
    rows.append(Row("Dask 2 workers speed-up, 400 combos", speedup, "x", "(reported)", True,
                    f"{single:.2f} s in one process, {dask:.2f} s on 2 workers"))
    return rows
