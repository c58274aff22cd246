"""Performance and overfitting statistics of an equity curve (pure; numpy and scipy only).

Conventions
-----------
* Returns are simple per-bar returns of the equity curve, ``equity[t] / equity[t-1] - 1``.
* Crypto trades 24/7: a year has ``365 * 24 h / timeframe`` bars (2,190 at 4h), from
  :func:`bars_per_year`, never 252 trading days.
* Sharpe and Sortino are per-bar ratios (risk-free rate 0) scaled by ``sqrt(bars_per_year)``;
  the standard deviation uses ``ddof=1``. Sortino's downside deviation is the root mean square
  of ``min(r, 0)`` over all bars (the target is 0), as empyrical computes it.
* Drawdown is measured from the running peak of equity; its duration is the longest run of
  bars spent below a previous peak.
* The deflated Sharpe ratio follows Bailey & López de Prado (2014), "The Deflated Sharpe
  Ratio", J. Portfolio Management 40(5); the probability of backtest overfitting follows
  Bailey, Borwein, López de Prado & Zhu (2017), "The Probability of Backtest Overfitting",
  J. Computational Finance 20(4), by combinatorially symmetric cross-validation (CSCV). No
  well-kept Python package implements either, so they are written here and tested against the
  papers' worked example and their defining properties.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "EULER_GAMMA",
    "Performance",
    "bars_per_year",
    "deflated_sharpe",
    "drawdowns",
    "expected_max_sharpe",
    "performance",
    "probabilistic_sharpe",
    "probability_of_backtest_overfitting",
    "returns_of",
]

EULER_GAMMA = 0.5772156649015329
_YEAR_MS = 365 * 24 * 3_600_000


def bars_per_year(timeframe_ms: int) -> float:
    """Bars in a 365-day year of 24/7 trading (2,190 for 4h candles)."""
    if timeframe_ms <= 0:
        raise ValueError(f"timeframe_ms must be positive, got {timeframe_ms}")
    return _YEAR_MS / timeframe_ms


def returns_of(equity: ArrayLike) -> NDArray[np.float64]:
    """Simple per-bar returns of an equity curve (one fewer than the curve)."""
    e = np.asarray(equity, dtype=float)
    if e.ndim != 1 or len(e) < 2:
        raise ValueError("equity must be a 1-d curve of at least 2 values")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError("equity must be finite and positive")
    return e[1:] / e[:-1] - 1.0


def drawdowns(equity: ArrayLike) -> tuple[float, int]:
    """``(max_drawdown, longest_duration_bars)``: the deepest fall from a running peak as a
    negative fraction (``-0.25`` = 25% below the peak), and the longest run of bars spent
    below a previous peak."""
    e = np.asarray(equity, dtype=float)
    peak = np.maximum.accumulate(e)
    dd = e / peak - 1.0
    below = dd < 0
    longest = run = 0
    for b in below:
        run = run + 1 if b else 0
        longest = max(longest, run)
    return float(dd.min()), int(longest)


@dataclass(frozen=True)
class Performance:
    """Metrics of one equity curve (see the module docstring for conventions)."""

    total_return: float
    annual_return: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_bars: int
    calmar: float
    bars: int


def performance(equity: ArrayLike, timeframe_ms: int) -> Performance:
    """Return, risk-adjusted return and drawdown of an equity curve sampled once a bar."""
    e = np.asarray(equity, dtype=float)
    r = returns_of(e)
    ppy = bars_per_year(timeframe_ms)
    total = float(e[-1] / e[0] - 1.0)
    years = len(r) / ppy
    annual = float((1.0 + total) ** (1.0 / years) - 1.0)
    sd = float(np.std(r, ddof=1)) if len(r) > 1 else math.nan
    mean = float(np.mean(r))
    sharpe = mean / sd * math.sqrt(ppy) if sd and sd > 0 else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    sortino = mean / downside * math.sqrt(ppy) if downside > 0 else math.nan
    mdd, mdd_bars = drawdowns(e)
    calmar = annual / -mdd if mdd < 0 else math.nan
    return Performance(total, annual, sharpe, sortino, mdd, mdd_bars, calmar, len(r))


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """The expected maximum of ``n_trials`` Sharpe ratios whose true value is 0, given the
    variance of the Sharpe ratios across trials (Bailey & López de Prado 2014, eq. 6):
    ``sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))``."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if n_trials == 1:
        return 0.0
    z1 = stats.norm.ppf(1.0 - 1.0 / n_trials)
    z2 = stats.norm.ppf(1.0 - 1.0 / (n_trials * math.e))
    return float(math.sqrt(sharpe_variance) * ((1 - EULER_GAMMA) * z1 + EULER_GAMMA * z2))


def probabilistic_sharpe(
    sharpe: float, benchmark: float, n_obs: int, skew: float, kurtosis: float
) -> float:
    """The probability that the true Sharpe exceeds ``benchmark`` given an observed
    per-bar ``sharpe`` over ``n_obs`` bars with the returns' ``skew`` and (non-excess)
    ``kurtosis`` (Bailey & López de Prado 2012)."""
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n_obs < 2 or denom <= 0:
        raise ValueError("need n_obs >= 2 and a positive variance term")
    z = (sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return float(stats.norm.cdf(z))


def deflated_sharpe(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, n_trials: int,
    sharpe_variance: float,
) -> float:
    """The deflated Sharpe ratio: the probabilistic Sharpe of the best of ``n_trials``
    against the expected maximum Sharpe of as many trials with no skill.

    All Sharpe quantities are per bar (not annualized): ``sharpe`` is the selected trial's,
    ``sharpe_variance`` the variance of the per-bar Sharpe ratios across the trials.
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    return probabilistic_sharpe(sharpe, sr0, n_obs, skew, kurtosis)


def probability_of_backtest_overfitting(
    performance_matrix: ArrayLike, n_splits: int = 16, metric: str = "sharpe"
) -> float:
    """PBO by combinatorially symmetric cross-validation.

    Parameters
    ----------
    performance_matrix : array (T, N)
        Per-bar returns of N trials (parameter combinations) over the same T bars.
    n_splits : int
        S, an even number of equal row blocks; every choice of S/2 blocks is a training set
        and the rest its test set (C(S, S/2) combinations).
    metric : {"sharpe", "mean"}
        How a trial is ranked within a set.

    Returns
    -------
    float
        The fraction of combinations in which the trial that was best in training ranks at
        or below the median out of sample (its logit ``log(w / (1 - w)) <= 0``).
    """
    m = np.asarray(performance_matrix, dtype=float)
    if m.ndim != 2 or m.shape[1] < 2:
        raise ValueError("performance_matrix must be (T bars, N >= 2 trials)")
    if n_splits < 2 or n_splits % 2:
        raise ValueError(f"n_splits must be an even number >= 2, got {n_splits}")
    blocks = np.array_split(np.arange(m.shape[0] - m.shape[0] % n_splits), n_splits)
    if min(len(b) for b in blocks) < 2:
        raise ValueError(f"{m.shape[0]} bars are too few for {n_splits} splits")

    def score(rows: NDArray[np.int64]) -> NDArray[np.float64]:
        x = m[rows]
        if metric == "mean":
            return x.mean(axis=0)
        sd = x.std(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sd > 0, x.mean(axis=0) / sd, 0.0)

    n = m.shape[1]
    logits: list[float] = []
    for train in itertools.combinations(range(n_splits), n_splits // 2):
        test = [k for k in range(n_splits) if k not in train]
        is_rows = np.concatenate([blocks[k] for k in train])
        oos_rows = np.concatenate([blocks[k] for k in test])
        best = int(np.argmax(score(is_rows)))
        oos = score(oos_rows)
        rank = float(stats.rankdata(oos)[best])  # 1 = worst, n = best
        w = rank / (n + 1.0)
        logits.append(math.log(w / (1.0 - w)))
    return float(np.mean(np.asarray(logits) <= 0.0))

