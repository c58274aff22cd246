"""Stochastic building blocks of the simulated market, and a pure price generator.

Student-t innovations (fat tails), sticky regime-switching volatility, AR(1)/OU spreads and
exact decimal rounding, shared by :class:`pairlib.sim.market.Market` and
:func:`simulate_prices` (independent random walks plus planted OU pairs, for statistics
tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = [
    "BAR_MS",
    "FUNDING_MS",
    "GENESIS",
    "HOURS_PER_YEAR",
    "HOUR_MS",
    "PlantedPair",
    "dt_from_ms",
    "ms",
    "ou_path",
    "regimes",
    "round_to",
    "simulate_prices",
    "student_t",
]

GENESIS = datetime(2024, 1, 1, tzinfo=UTC)
"""Open time of the first 4h bar of every default market."""

HOUR_MS = 3_600_000
BAR_MS = 4 * HOUR_MS
FUNDING_MS = 8 * HOUR_MS
HOURS_PER_YEAR = 24 * 365
_T_DF = 5.0


@dataclass(frozen=True)
class PlantedPair:
    """Ground truth of one planted cointegrated pair.

    Notes
    -----
    ``log y = alpha + beta * log x + s`` where ``s`` is an AR(1) on 4h closes with
    ``phi = 0.5 ** (1 / half_life_bars)`` (before rounding to ticks). ``break_time``, if set,
    is the open time of the first 4h bar from which ``s`` is a random walk. ``y`` and ``x``
    are Binance ids such as ``"SOLUSDT"``.
    """

    y: str
    x: str
    beta: float
    alpha: float
    half_life_bars: float
    break_time: datetime | None = None
    spread_sigma: float = field(default=0.0, compare=False)


def ms(when: datetime) -> int:
    """Milliseconds since the epoch of an aware datetime."""
    return int(round(when.timestamp() * 1000))


def dt_from_ms(ms: int) -> datetime:
    """Aware UTC datetime from milliseconds since the epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def student_t(rng: np.random.Generator, n: int) -> np.ndarray:
    """Student-t innovations with unit variance (fat tails)."""
    return rng.standard_t(_T_DF, size=n) / math.sqrt(_T_DF / (_T_DF - 2.0))


def regimes(
    rng: np.random.Generator, n: int, spec: tuple[tuple[float, ...], tuple[float, ...], int]
) -> np.ndarray:
    """A sticky regime-switching volatility multiplier with mean square 1."""
    levels = np.asarray(spec[0])
    probs = np.asarray(spec[1])
    levels = levels / math.sqrt(float(np.sum(probs * levels**2)))
    mean_len = spec[2]
    k = int(3 * n / mean_len) + 16
    lens = rng.geometric(1.0 / mean_len, size=k)
    states = rng.choice(len(levels), size=k, p=probs)
    out = np.repeat(levels[states], lens)
    while out.size < n:  # pragma: no cover - astronomically unlikely
        out = np.concatenate([out, out])
    return out[:n]


def ou_path(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """n+1 values of a stationary AR(1) with stationary sd ``sigma`` (t innovations)."""
    s0 = sigma * float(rng.standard_normal())
    innov = sigma * math.sqrt(1.0 - phi * phi) * student_t(rng, n)
    # The AR(1) recursion as a plain loop: a few thousand steps, and it keeps scipy.signal
    # (0.9 s to import) off the tick's import path.
    out = np.empty(n + 1)
    out[0] = prev = s0
    for i, e in enumerate(innov.tolist(), start=1):
        prev = e + phi * prev
        out[i] = prev
    return out


def round_to(values: np.ndarray, decimals: int) -> np.ndarray:
    """Round to ``decimals`` as exact decimal floats (``k / 10**d``, never below one unit)."""
    scale = 10.0**decimals
    return np.maximum(np.rint(values * scale), 1.0) / scale



def simulate_prices(
    seed: int,
    n_walks: int,
    half_lives: tuple[float, ...] | list[float],
    n_bars: int,
    start: datetime = GENESIS,
) -> tuple[pd.DataFrame, tuple[PlantedPair, ...]]:
    """4h close prices of independent random walks plus planted OU pairs (for statistics).

    Parameters
    ----------
    seed : int
        Random seed.
    n_walks : int
        Independent random walks (columns ``W0USDT``, ``W1USDT``, ...).
    half_lives : sequence of float
        One planted pair per half-life in bars (columns ``Y{k}USDT``, ``X{k}USDT``).
    n_bars : int
        Number of 4h bars.
    start : datetime
        Open time of the first bar.

    Returns
    -------
    closes : DataFrame
        Index: bar open times (UTC); columns: the walks, then each pair's y and x.
    pairs : tuple of PlantedPair
        Ground truth (never broken: ``break_time`` is None).

    Notes
    -----
    Walks and x legs have annualised vol 50-110 %, Student-t innovations and
    regime-switching volatility; spreads are AR(1) with stationary sd 2.5-6 %.
    """
    if n_bars < 1 or n_walks < 0:
        raise ValueError(f"need n_bars >= 1 and n_walks >= 0, got {n_bars}, {n_walks}")
    bars_per_year = HOURS_PER_YEAR / 4.0
    cols: dict[str, np.ndarray] = {}

    def walk(rng: np.random.Generator) -> np.ndarray:
        p0 = math.exp(float(rng.uniform(math.log(0.05), math.log(60000.0))))
        sd = float(rng.uniform(0.5, 1.1)) / math.sqrt(bars_per_year)
        steps = sd * regimes(rng, n_bars - 1, ((0.6, 1.0, 1.8), (0.3, 0.5, 0.2), 60)) \
            * student_t(rng, n_bars - 1)
        return math.log(p0) + np.concatenate([[0.0], np.cumsum(steps)])

    for w in range(n_walks):
        cols[f"W{w}USDT"] = np.exp(walk(np.random.default_rng([seed, 10, w])))
    pairs = []
    for k, hl in enumerate(half_lives):
        if not hl > 0:
            raise ValueError(f"half-lives must be positive, got {hl}")
        rng = np.random.default_rng([seed, 11, k])
        logx = walk(rng)
        beta = float(round(rng.uniform(0.6, 1.5), 4))
        sigma = float(round(rng.uniform(0.025, 0.06), 4))
        p0y = math.exp(float(rng.uniform(math.log(0.05), math.log(60000.0))))
        alpha = math.log(p0y) - beta * float(logx[0])
        s = ou_path(rng, n_bars - 1, 0.5 ** (1.0 / float(hl)), sigma)
        cols[f"Y{k}USDT"] = np.exp(alpha + beta * logx + s)
        cols[f"X{k}USDT"] = np.exp(logx)
        pairs.append(PlantedPair(f"Y{k}USDT", f"X{k}USDT", beta, alpha, float(hl), None, sigma))
    start_ms = ms(start)
    idx = pd.to_datetime(start_ms + BAR_MS * np.arange(n_bars, dtype=np.int64),
                         unit="ms", utc=True)
    idx.name = "open_time"
    return pd.DataFrame(cols, index=idx, dtype=np.float64), tuple(pairs)
