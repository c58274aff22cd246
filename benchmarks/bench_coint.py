"""Benchmark pairlib.core.coint.scan against a loop of statsmodels' coint, side by side.

Figures (1,500 bars, crypto-like synthetic panel):

- statsmodels per pair: ``coint(y, x)`` looped over 30 pairs, timed twice, in this process
  (OpenBLAS threads as configured) and in a child process with ``OPENBLAS_NUM_THREADS=1``
  (statsmodels' faster setting on a 2-core machine); the faster one is the baseline.
- pairlib per pair: the 200-symbol scan (39,800 ordered pairs) divided by its pair count, and
  the speed-up over the baseline (target >= 200x).
- the 200-symbol scan with one and two threads (target <= 10 s);
- the 500-symbol scan (249,500 pairs): time, and peak traced memory (numpy allocations under
  tracemalloc, a second run) against a 512 MB bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Row, best_of
from pairlib.core.coint import scan

__all__ = ["make_panel", "panels", "run", "sample_pairs", "time_statsmodels"]

BARS = 1_500
SM_PAIRS = 30
ROOT = Path(__file__).resolve().parents[1]


def make_panel(n_symbols: int, bars: int = BARS, seed: int = 42) -> pd.DataFrame:
    """Crypto-like 4h log prices: a market factor, sectors, fat tails, some cointegrated legs."""
    rng = np.random.default_rng(seed)
    market = rng.standard_t(4, size=bars) * 0.012
    sectors = rng.standard_t(4, size=(bars, 8)) * 0.008
    loading = rng.uniform(0.5, 1.5, n_symbols)
    sector = rng.integers(0, 8, n_symbols)
    own = rng.standard_t(4, size=(bars, n_symbols)) * rng.uniform(0.005, 0.02, n_symbols)
    returns = market[:, None] * loading + sectors[:, sector] + own
    prices = np.cumsum(returns, axis=0) + rng.uniform(-3.0, 10.0, n_symbols)
    # every 10th symbol is cointegrated with the previous one (AR(1) spread, half-life ~14 bars)
    for j in range(1, n_symbols, 10):
        spread = np.zeros(bars)
        shocks = rng.normal(scale=0.01, size=bars)
        for t in range(1, bars):
            spread[t] = 0.95 * spread[t - 1] + shocks[t]
        prices[:, j] = 0.8 * prices[:, j - 1] + 1.0 + spread
    return pd.DataFrame(prices, columns=[f"S{i:03d}USDT" for i in range(n_symbols)])


def sample_pairs(names: list[str], n_pairs: int = SM_PAIRS) -> list[tuple[str, str]]:
    """A fixed spread of ordered pairs for the statsmodels loop."""
    return [(names[i], names[(7 * i + 3) % len(names)]) for i in range(n_pairs)]


def panels() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 500-symbol panel and its first 200 symbols."""
    p500 = make_panel(500)
    return p500, p500.iloc[:, :200]


def time_statsmodels() -> dict[str, object]:
    """Seconds per ``coint`` call over :func:`sample_pairs` of the 200-symbol panel, and the
    t-statistics."""
    from statsmodels.tsa.stattools import coint

    frame = panels()[1]
    pairs = sample_pairs(list(frame.columns))
    tstats = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        coint(frame.iloc[:, 0].to_numpy(), frame.iloc[:, 1].to_numpy())  # warm up
        t0 = time.perf_counter()
        for y, x in pairs:
            tstats.append(float(coint(frame[y].to_numpy(), frame[x].to_numpy())[0]))
        elapsed = time.perf_counter() - t0
    return {"per_pair": elapsed / len(pairs), "tstats": tstats}


def _statsmodels_single_blas_thread() -> float:
    """:func:`time_statsmodels` in a child process with one OpenBLAS thread (nan on failure)."""
    code = "import json; from benchmarks.bench_coint import time_statsmodels as f; "
    code += "print(json.dumps(f()['per_pair']))"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        check=False,
    )
    return float(json.loads(done.stdout)) if done.returncode == 0 else float("nan")


def run() -> list[Row]:
    """Measure and return the rows printed by ``python -m benchmarks``."""
    p500, p200 = panels()
    scan(p200.iloc[:, :20])  # warm up imports and BLAS threads

    here = time_statsmodels()
    sm_here = float(here["per_pair"])  # type: ignore[arg-type]
    sm_one = _statsmodels_single_blas_thread()
    sm_pair = float(np.nanmin([sm_here, sm_one]))
    ours_t = scan(p200, pairs=sample_pairs(list(p200.columns)), n_jobs=1)["tstat"].to_numpy()
    worst = float(np.max(np.abs(ours_t - np.asarray(here["tstats"]))))

    t200_1 = best_of(lambda: scan(p200, n_jobs=1), repeat=3)
    t200_2 = best_of(lambda: scan(p200, n_jobs=2), repeat=3)
    n200 = 200 * 199
    ours_pair = t200_2 / n200
    ratio = sm_pair / ours_pair

    n500 = 500 * 499
    t500 = best_of(lambda: scan(p500, n_jobs=2), repeat=2)
    tracemalloc.start()
    scan(p500, n_jobs=2)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()

    sm_note = f"in-process {sm_here * 1e3:.1f} ms, 1 BLAS thread {sm_one * 1e3:.1f} ms"
    return [
        Row("coint per pair: statsmodels loop", sm_pair * 1e3, "ms", "(baseline)", True,
            f"{SM_PAIRS} pairs x {BARS} bars; {sm_note}"),
        Row("coint per pair: pairlib.scan", ours_pair * 1e6, "us", "(measured)", True,
            f"{n200:,} pairs x {BARS} bars, n_jobs=2; max |t - statsmodels| {worst:.1e}"),
        Row("coint speed-up per pair", ratio, "x", ">= 200x", ratio >= 200,
            f"{sm_pair * 1e3:.2f} ms / {ours_pair * 1e6:.2f} us"),
        Row("scan 200 x 1500, n_jobs=1", t200_1, "s", "(1 thread)", True,
            f"{n200:,} regressions, best of 3"),
        Row("scan 200 x 1500, n_jobs=2", t200_2, "s", "<= 10 s", t200_2 <= 10.0,
            f"best of 3; threads {t200_1 / t200_2:.2f}x over 1"),
        Row("scan 500 x 1500, n_jobs=2", t500, "s", "(measured)", True,
            f"{n500:,} pairs, {t500 / n500 * 1e6:.1f} us/pair, best of 2"),
        Row("scan 500 x 1500, peak memory", peak, "MB", "<= 512 MB", peak <= 512,
            "tracemalloc peak of numpy + Python allocations during the scan"),
    ]
