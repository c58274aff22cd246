"""Pair selection: from close prices to a small set of confirmed cointegrated pairs (pure).

:func:`select` runs the whole pipeline on a frame of close prices and returns a frozen
:class:`Selection`: the chosen pairs, one row per rejected symbol or pair with the stage and
reason, the funnel of counts, every scanned p-value and the scan time. No I/O, no clock, no
randomness: the same prices and params give the same selection.

Pipeline (each stage only sees what passed the previous one)::

    symbols in
      -> universe filter      full formation window (no NaN), non-constant, liquidity floor
    pairs tested              every unordered pair of the remaining symbols
      -> corr prefilter       |corr of per-bar log returns| >= min_abs_corr (not scanned)
      -> I(1) legs            no leg looks stationary in levels (ADF, confirmed by KPSS)
      -> EG+FDR               Engle-Granger both ways; combined p <= max_pvalue;
                              BH q <= fdr_q; beta > 0; legs not collinear
      -> half-life            half_life_min <= half-life <= min(half_life_max, lookback/2)
      -> crossings            >= min_crossings crossings of the in-sample mean
      -> Hurst                hurst <= hurst_max (only when hurst_max is set)
      -> OOS                  the held-out tail confirms mean reversion (see below)
      -> one pair per symbol  greedy by rank (when one_pair_per_symbol)
      -> top_k                chosen

Conventions
-----------
- Windows: the formation window is the last ``formation_bars`` rows of ``prices``; older rows
  are ignored. Its first ``n_is = formation_bars - n_oos`` rows (``n_oos =
  round(oos_fraction * formation_bars)``) are *in-sample*: the Engle-Granger scan, the
  hedge ratio and the half-life use only them. The last ``n_oos`` rows are the held-out
  *tail*, which must confirm the pair. The prefilters describe the assets, not the pair's
  cointegration, and use the whole formation window, as do the crossings count, the Hurst
  exponent, ``spread_mean``/``spread_std`` and the Johansen statistic.
- beta, alpha: OLS of log y on log x with a constant, in-sample (what ``coint(y, x)`` fits).
  The pair is oriented in the direction whose Engle-Granger p-value is smaller (y is
  regressed on x); ``pvalue_yx`` is that direction's p-value, ``pvalue_xy`` the other's.
- spread: ``s_t = log(y_t) - beta * log(x_t) - alpha`` (natural logs); its in-sample mean
  is zero by construction.
- Engle-Granger: each direction is ``statsmodels.tsa.stattools.coint(y, x, autolag='bic')``
  on the in-sample log prices (via :func:`pairlib.core.coint.scan`). BIC rather than
  statsmodels' default AIC: at a few hundred bars the AIC-selected test's MacKinnon
  p-values are anti-conservative in the tail that FDR control uses (measured on 100,000
  pairs of independent Gaussian walks of 378 bars: p <= 1e-3 occurs 1.63x as often as it
  should with AIC, 1.10x with BIC), and BIC also chose more planted pairs on the simulator.
- Combined p-value: ``min(1, 2 * min(p_yx, p_xy))`` (Bonferroni over the two directions).
- Benjamini-Hochberg counts every pair passed to the scan (the ``after I(1) legs`` row of
  the funnel); pairs dropped by the prefilters are not tested and not counted.
- I(1) legs: a leg counts as stationary when the ADF p-value of its log price (constant,
  AIC lags) is ``<= leg_adf_min_pvalue`` *and* the KPSS statistic does not reject level
  stationarity at 5 %. The KPSS confirmation is needed because a planted leg
  ``y = beta * x + s`` (a random walk plus a large, fast mean-reverting spread) makes the ADF
  test reject far more often than its level (Schwert 1989): measured on the simulator, ADF
  alone flags 39 % of such legs at p <= 0.10; with the KPSS confirmation, 8 %.
- Half-life in bars, from the AR(1) fit ``ds_t = a + b * s_{t-1} + e_t`` on the in-sample
  spread: ``hl = -ln 2 / ln(1 + b)`` (``inf`` when ``b >= 0``, ``0`` when ``1 + b <= 0``).
- Crossings: sign changes of the spread over the formation window (level 0 = in-sample mean).
- OOS rule: Dickey-Fuller test *without* a constant on the tail spread (computed with the
  in-sample beta and alpha), with the lag order the in-sample Engle-Granger regression
  chose; the tail confirms the pair when that p-value (MacKinnon, ``regression='n'``) is
  ``<= oos_max_pvalue``. Without a constant the test asks whether the tail reverts to the
  *in-sample* mean (zero), so a level shift or a drift in the tail fails it; nothing is
  re-estimated on the tail and no lag search is done there. Measured on the simulator, it
  passes about 11 % of spurious pairs that passed the in-sample scan (at 0.10), and it is
  more powerful on true pairs than an ADF with a constant on the tail (87 % vs 71 % at a
  half-life of 8 bars).
- Ranking: combined p-value, then half-life (ascending); ``score = -log10(pvalue)``.
- Johansen (second opinion, chosen pairs only, not a filter): ``coint_johansen`` on the two
  log prices over the formation window, ``det_order=0``, ``k_ar_diff=1``; the trace
  statistic for ``r = 0`` and its 95 % critical value.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from statsmodels.tsa.stattools import adfuller
from statsmodels.tsa.vector_ar.vecm import coint_johansen

from pairlib.config import Params, timeframe_ms
from pairlib.core.coint import adf_pvalues, scan
from pairlib.errors import ConfigError, DataError

__all__ = [
    "CHOSEN_COLUMNS",
    "FUNNEL_STAGES",
    "KPSS_CRIT_5PCT",
    "REJECTED_COLUMNS",
    "Selection",
    "benjamini_hochberg",
    "count_crossings",
    "half_life",
    "hurst_exponent",
    "kpss_stat",
    "select",
]

CHOSEN_COLUMNS: Final[tuple[str, ...]] = (
    "y", "x", "beta", "alpha", "pvalue", "pvalue_yx", "pvalue_xy", "qvalue", "tstat",
    "lags", "half_life", "crossings", "spread_mean", "spread_std", "hurst", "oos_pvalue",
    "johansen_trace", "johansen_crit95", "formation_start", "oos_start", "formation_end",
    "score", "rank",
)
"""Columns of :attr:`Selection.chosen`, in order."""

REJECTED_COLUMNS: Final[tuple[str, ...]] = ("symbol", "y", "x", "stage", "reason")
"""Columns of :attr:`Selection.rejected`: ``symbol`` for a symbol, ``y``/``x`` for a pair."""

FUNNEL_STAGES: Final[tuple[tuple[str, str], ...]] = (
    ("symbols in", "symbols"),
    ("after universe filter", "symbols"),
    ("pairs tested", "pairs"),
    ("after corr prefilter", "pairs"),
    ("after I(1) legs", "pairs"),
    ("after EG+FDR", "pairs"),
    ("after half-life", "pairs"),
    ("after crossings", "pairs"),
    ("after Hurst", "pairs"),
    ("after OOS", "pairs"),
    ("after one pair per symbol", "pairs"),
    ("chosen", "pairs"),
)
"""Rows of :attr:`Selection.funnel` as ``(stage, unit)``. A rejection's ``stage`` is the
funnel stage it failed to reach without the ``"after "`` prefix (``"top_k"`` for the last)."""

_MIN_IS_BARS: Final = 40
_MIN_OOS_BARS: Final = 20
_HURST_MAX_LAG: Final = 100
_MIN_SCORE_P: Final = 1e-300


@dataclass(frozen=True)
class Selection:
    """The outcome of :func:`select`.

    Attributes
    ----------
    chosen : DataFrame
        One row per chosen pair, best first, columns :data:`CHOSEN_COLUMNS`.
    rejected : DataFrame
        One row per rejected symbol (``symbol`` set) or pair (``y``, ``x`` set), columns
        :data:`REJECTED_COLUMNS`; ``reason`` states the measured value and the threshold.
    funnel : DataFrame
        Columns ``stage``, ``count``, ``unit`` (``"symbols"`` or ``"pairs"``), rows
        :data:`FUNNEL_STAGES`; counts never increase within a unit.
    pvalues : ndarray
        Combined Engle-Granger p-values of every scanned pair, in scan order (for a
        histogram against the uniform distribution). Without cointegration the two
        directions' p-values are close, so ``min(1, 2 * min(...))`` sits at 1 for roughly
        half the pairs and has a density between 1/2 and 1 below that.
    scan_seconds : float
        Wall time spent in :func:`pairlib.core.coint.scan`.
    params : Params
        The params used.
    notes : tuple of str
        Adjustments made to the params (e.g. a clipped ``half_life_max``), for the report.
    """

    chosen: pd.DataFrame
    rejected: pd.DataFrame
    funnel: pd.DataFrame
    pvalues: NDArray[np.float64]
    scan_seconds: float
    params: Params
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------------------
# Building blocks (public: each has a unit test against a known answer)
# --------------------------------------------------------------------------------------


def benjamini_hochberg(pvalues: ArrayLike, n_tests: int | None = None) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (q-values).

    Parameters
    ----------
    pvalues : array_like
        Raw p-values, any order. NaN counts as 1.
    n_tests : int, optional
        Number of hypotheses tested (default: ``len(pvalues)``). A larger value treats the
        missing tests as p = 1.

    Returns
    -------
    ndarray
        ``q_i = min(1, min_{j: p_j >= p_i} p_j * m / rank_j)``, in the input order; a pair
        is a discovery at level ``q`` when ``q_i <= q``. Equal to
        ``statsmodels.stats.multitest.multipletests(p, method='fdr_bh')[1]``.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    n = p.size
    m = n if n_tests is None else int(n_tests)
    if m < n:
        raise ValueError(f"n_tests ({m}) must be at least the number of p-values ({n})")
    if n == 0:
        return np.empty(0, dtype=np.float64)
    p = np.where(np.isnan(p), 1.0, p)
    if np.any((p < 0.0) | (p > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    order = np.argsort(p, kind="mergesort")
    ranked = p[order] * m / np.arange(1, n + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(n, dtype=np.float64)
    q[order] = np.minimum(q_sorted, 1.0)
    return q


def half_life(spread: ArrayLike) -> float:
    """Mean-reversion half-life of a spread, in bars (AR(1) / discretised OU).

    Parameters
    ----------
    spread : array_like
        The spread, one value per bar, no NaN.

    Returns
    -------
    float
        ``-ln 2 / ln(1 + b)`` where ``b`` is the OLS slope of ``s_t - s_{t-1}`` on
        ``s_{t-1}`` with a constant. ``inf`` when ``b >= 0`` (no mean reversion), ``0.0``
        when ``1 + b <= 0`` (over-shooting every bar), NaN when fewer than 3 values or a
        constant spread.

    Notes
    -----
    Half-life in bars; for an AR(1) ``s_t = phi s_{t-1} + e_t`` it estimates
    ``ln 2 / -ln(phi)``.
    """
    s = np.asarray(spread, dtype=np.float64).ravel()
    if s.size < 3:
        return math.nan
    lag = s[:-1] - s[:-1].mean()
    ds = np.diff(s)
    sxx = float(lag @ lag)
    if not sxx > 0.0:
        return math.nan
    b = float(lag @ (ds - ds.mean())) / sxx
    if b >= 0.0:
        return math.inf
    if 1.0 + b <= 0.0:
        return 0.0
    return -math.log(2.0) / math.log1p(b)


def count_crossings(spread: ArrayLike, level: float = 0.0) -> int:
    """Number of times a series crosses ``level``.

    Parameters
    ----------
    spread : array_like
        The series.
    level : float
        The level (for a spread, its mean).

    Returns
    -------
    int
        Sign changes of ``spread - level``. Values exactly at the level carry no sign:
        ``1, 0, -1`` is one crossing and ``1, 0, 1`` none. NaN values are skipped.
    """
    d = np.asarray(spread, dtype=np.float64).ravel() - level
    sign = np.sign(d[np.isfinite(d)])
    sign = sign[sign != 0.0]
    return int(np.count_nonzero(sign[1:] != sign[:-1]))


def hurst_exponent(spread: ArrayLike, max_lag: int = _HURST_MAX_LAG) -> float:
    """Hurst exponent from the scaling of lagged differences.

    Parameters
    ----------
    spread : array_like
        The series.
    max_lag : int
        Largest lag used (capped at a quarter of the series' length).

    Returns
    -------
    float
        Slope of ``log std(s_{t+k} - s_t)`` on ``log k`` for ``k = 2 .. max_lag``: about 0.5
        for a random walk, below 0.5 for a mean-reverting series. NaN when fewer than 16
        values or a constant series.

    Notes
    -----
    A report-only statistic by default: at a few hundred bars it cannot tell a spurious
    spread from a slow mean-reverting one (both come out well below 0.5).
    """
    s = np.asarray(spread, dtype=np.float64).ravel()
    top = min(int(max_lag), s.size // 4)
    if top < 4:
        return math.nan
    lags = np.arange(2, top + 1)
    sd = np.array([np.std(s[k:] - s[:-k]) for k in lags])
    if not np.all(sd > 0.0):
        return math.nan
    slope = np.polyfit(np.log(lags), np.log(sd), 1)[0]
    return float(slope)


KPSS_CRIT_5PCT: Final = 0.463
"""5 % critical value of the level-stationarity KPSS statistic (Kwiatkowski et al. 1992)."""


def kpss_stat(series: ArrayLike) -> float:
    """KPSS statistic for level stationarity (null: the series is stationary).

    Parameters
    ----------
    series : array_like
        The series (e.g. a log price), no NaN.

    Returns
    -------
    float
        ``sum(S_t^2) / (n^2 * lrv)`` with ``S_t`` the partial sums of the demeaned series
        and ``lrv`` its Newey-West long-run variance (Bartlett kernel, bandwidth of Hobijn,
        Franses and Ooms 1998). Equal to ``statsmodels.tsa.stattools.kpss(x, 'c',
        nlags='auto')`` statistic. Large values reject stationarity (5 %: 0.463).
    """
    x = np.asarray(series, dtype=np.float64).ravel()
    n = x.size
    e = x - x.mean()
    # Hobijn et al. (1998) automatic bandwidth
    covlags = int(n ** (2.0 / 9.0))
    s0 = float(e @ e) / n
    s1 = 0.0
    for i in range(1, covlags + 1):
        g = float(e[i:] @ e[: n - i]) / (n / 2.0)
        s0 += g
        s1 += i * g
    if s0 == 0.0:
        return math.nan
    lags = min(int(1.1447 * ((s1 / s0) ** 2) ** (1.0 / 3.0) * n ** (1.0 / 3.0)), n - 1)
    lrv = float(e @ e)
    for i in range(1, lags + 1):
        lrv += 2.0 * float(e[i:] @ e[: n - i]) * (1.0 - i / (lags + 1.0))
    lrv /= n
    if not lrv > 0.0:
        return math.nan
    return float(np.sum(np.cumsum(e) ** 2) / n**2 / lrv)


# --------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------


def _check_prices(prices: object, formation_bars: int) -> pd.DataFrame:
    if not isinstance(prices, pd.DataFrame):
        raise DataError(f"prices must be a pandas DataFrame, got {type(prices).__name__}")
    if prices.shape[1] < 2:
        raise DataError(f"prices has {prices.shape[1]} column(s); need at least 2 symbols")
    not_str = [repr(c) for c in prices.columns if not isinstance(c, str)]
    if not_str:
        raise DataError(f"prices column labels must be symbol strings, got {', '.join(not_str)}")
    if not prices.columns.is_unique:
        dup = sorted({str(c) for c in prices.columns[prices.columns.duplicated()]})
        raise DataError(f"prices has duplicate columns: {', '.join(dup)}")
    if not isinstance(prices.index, pd.DatetimeIndex):
        raise DataError(
            f"prices must have a DatetimeIndex (UTC bar times), got {type(prices.index).__name__}"
        )
    if not (prices.index.is_unique and prices.index.is_monotonic_increasing):
        raise DataError("prices index must be strictly increasing (sorted, no duplicate bars)")
    if len(prices) < formation_bars:
        raise DataError(
            f"prices has {len(prices)} rows but formation_bars={formation_bars} are needed; "
            "fetch more history or lower formation_bars"
        )
    bad_dtype = [str(c) for c, t in prices.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad_dtype:
        raise DataError(f"prices columns must be numeric; not numeric: {', '.join(bad_dtype)}")
    values = prices.to_numpy(dtype=np.float64, na_value=np.nan)
    nan = np.isnan(values)
    all_nan = [str(c) for c, flag in zip(prices.columns, nan.all(axis=0), strict=True) if flag]
    if all_nan:
        raise DataError(f"prices column(s) with no prices at all (all NaN): {', '.join(all_nan)}")
    if np.isinf(values).any():
        cols = [str(c) for c, f in zip(prices.columns, np.isinf(values).any(0), strict=True) if f]
        raise DataError(f"prices must be finite; infinite values in: {', '.join(cols)}")
    with np.errstate(invalid="ignore"):
        nonpos = (values <= 0.0) & ~nan
    if nonpos.any():
        parts = []
        for j in np.flatnonzero(nonpos.any(axis=0)):
            i = int(np.argmax(nonpos[:, j]))
            parts.append(
                f"{prices.columns[j]} ({int(nonpos[:, j].sum())} value(s), first "
                f"{values[i, j]:g} at {prices.index[i]})"
            )
        raise DataError(
            "prices must be positive (log prices are taken); non-positive in: " + "; ".join(parts)
        )
    return prices


def _check_quote_volume(qv: object, prices: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(qv, pd.DataFrame):
        raise DataError(f"quote_volume must be a pandas DataFrame, got {type(qv).__name__}")
    if not qv.columns.is_unique:
        raise DataError("quote_volume has duplicate columns")
    out = qv.reindex(index=prices.index, columns=prices.columns)
    vals = out.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        neg = vals < 0.0
    if neg.any():
        cols = [str(c) for c, f in zip(out.columns, neg.any(axis=0), strict=True) if f]
        raise DataError(f"quote_volume must be >= 0; negative values in: {', '.join(cols)}")
    return out


def _windows(params: Params) -> tuple[int, int]:
    sel = params.selection
    n_oos = int(round(sel.oos_fraction * sel.formation_bars))
    n_is = sel.formation_bars - n_oos
    if n_oos < _MIN_OOS_BARS or n_is < _MIN_IS_BARS:
        raise ConfigError(
            f"formation_bars={sel.formation_bars} with oos_fraction={sel.oos_fraction} "
            f"gives {n_is} in-sample and {n_oos} held-out bars; need at least {_MIN_IS_BARS} "
            f"and {_MIN_OOS_BARS}"
        )
    return n_is, n_oos


def _half_life_bounds(params: Params) -> tuple[float, float, list[str]]:
    sel = params.selection
    notes: list[str] = []
    cap = params.strategy.lookback / 2.0
    hi = sel.half_life_max
    if hi > cap:
        notes.append(
            f"half_life_max={sel.half_life_max:g} clipped to {cap:g} bars "
            f"(half of strategy.lookback={params.strategy.lookback}): a slower spread is mostly "
            "absorbed by the rolling mean of the z-score"
        )
        hi = cap
    if sel.half_life_min >= hi:
        raise ConfigError(
            f"half_life_min={sel.half_life_min:g} must be below the effective "
            f"half_life_max={hi:g} (min of half_life_max={sel.half_life_max:g} and "
            f"strategy.lookback/2={cap:g})"
        )
    return sel.half_life_min, hi, notes


# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------


class _Rejections:
    """Collects rejection rows; one list per column so building the frame is cheap."""

    def __init__(self) -> None:
        self.cols: dict[str, list[str | None]] = {c: [] for c in REJECTED_COLUMNS}

    def symbol(self, sym: str, stage: str, reason: str) -> None:
        self._add(sym, None, None, stage, reason)

    def pair(self, y: str, x: str, stage: str, reason: str) -> None:
        self._add(None, y, x, stage, reason)

    def _add(
        self, sym: str | None, y: str | None, x: str | None, stage: str, reason: str
    ) -> None:
        for k, v in zip(REJECTED_COLUMNS, (sym, y, x, stage, reason), strict=True):
            self.cols[k].append(v)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.cols, columns=list(REJECTED_COLUMNS), dtype=object)


@dataclass
class _Run:
    """What every stage of one :func:`select` call shares (local to the call)."""

    params: Params
    syms: list[str]  # the universe, in column order
    logp: NDArray[np.float64]  # formation-window log prices, one column per symbol
    n_is: int
    rej: _Rejections

    def spread(self, yi: int, xi: int, beta: float, alpha: float) -> NDArray[np.float64]:
        return self.logp[:, yi] - beta * self.logp[:, xi] - alpha

    def drop_pairs(
        self, cand: pd.DataFrame, ok: NDArray[np.bool_], stage: str, reasons: Sequence[str]
    ) -> pd.DataFrame:
        """Keep ``cand[ok]``; record one rejection per dropped row (reasons in row order)."""
        for k, why in zip(np.flatnonzero(~ok), reasons, strict=True):
            self.rej.pair(self.syms[int(cand.yi.iat[k])], self.syms[int(cand.xi.iat[k])],
                          stage, why)
        return cand[ok].reset_index(drop=True)


def _fmt_p(p: float) -> str:
    return f"{p:.3g}" if p >= 1e-3 or p == 0.0 or not math.isfinite(p) else f"{p:.2e}"


def _universe(
    form: pd.DataFrame,
    qv: pd.DataFrame | None,
    params: Params,
    rej: _Rejections,
) -> list[str]:
    """Symbols with a full formation window, moving prices and enough quote volume."""
    sel = params.selection
    n = len(form)
    values = form.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values).sum(axis=0)
    per_day = 86_400_000 / timeframe_ms(params.data.timeframe)
    qv_vals = None if qv is None else qv.to_numpy(dtype=np.float64, na_value=np.nan)
    keep: list[str] = []
    for j, sym in enumerate(form.columns):
        if missing[j]:
            rej.symbol(
                sym, "universe filter",
                f"{int(missing[j])} of {n} formation bars missing (listed, delisted or "
                f"halted inside the window); need all formation_bars={n}",
            )
            continue
        col = values[:, j]
        if not np.ptp(col) > 0.0:
            rej.symbol(sym, "universe filter", f"price constant ({col[0]:g}) over the window")
            continue
        if qv_vals is not None:
            q = qv_vals[:, j]
            q = q[~np.isnan(q)]
            if q.size == 0:
                rej.symbol(sym, "universe filter", "no quote volume in the formation window")
                continue
            daily = float(np.median(q)) * per_day
            if daily < sel.min_quote_volume:
                rej.symbol(
                    sym, "universe filter",
                    f"median quote volume {daily:,.0f} per day < min_quote_volume "
                    f"{sel.min_quote_volume:,.0f}",
                )
                continue
        keep.append(sym)
    return keep


Pairs = tuple[NDArray[np.intp], NDArray[np.intp]]


def _corr_prefilter(run: _Run, iu: NDArray[np.intp], ju: NDArray[np.intp]) -> Pairs:
    """Pairs whose per-bar log returns are correlated enough to be worth a scan."""
    sel = run.params.selection
    if not iu.size:
        return iu, ju
    corr = np.atleast_2d(np.corrcoef(np.diff(run.logp, axis=0), rowvar=False))
    c = corr[iu, ju]
    ok = np.abs(c) >= sel.min_abs_corr
    for i, j, cij in zip(iu[~ok], ju[~ok], c[~ok], strict=True):
        run.rej.pair(
            run.syms[i], run.syms[j], "corr prefilter",
            f"|corr of log returns| {abs(cij):.3f} < min_abs_corr {sel.min_abs_corr:g}",
        )
    return iu[ok], ju[ok]


def _legs_prefilter(
    run: _Run, iu: NDArray[np.intp], ju: NDArray[np.intp], kpss_confirm: bool
) -> Pairs:
    """Pairs whose legs both look I(1) (a stationary leg makes "cointegration" trivial)."""
    sel = run.params.selection
    if not iu.size:
        return iu, ju
    n_sym = len(run.syms)
    thr = sel.leg_adf_min_pvalue
    legs = np.unique(np.concatenate([iu, ju]))
    leg_p = np.full(n_sym, np.nan)
    frame = pd.DataFrame(run.logp[:, legs], columns=[run.syms[k] for k in legs])
    leg_p[legs] = adf_pvalues(frame).reindex(frame.columns).to_numpy(dtype=np.float64)
    stationary = np.zeros(n_sym, dtype=bool)
    stationary[legs] = ~(leg_p[legs] > thr)  # a NaN p-value does not show a unit root
    leg_kpss = np.full(n_sym, np.inf)
    if kpss_confirm:
        for k in np.flatnonzero(stationary):
            leg_kpss[k] = kpss_stat(run.logp[:, k])
        stationary &= ~(leg_kpss >= KPSS_CRIT_5PCT)

    def why(k: int) -> str:
        out = (f"leg {run.syms[k]} looks stationary in levels: ADF p={_fmt_p(leg_p[k])} <= "
               f"leg_adf_min_pvalue {thr:g}")
        if kpss_confirm:
            out += f" and KPSS {leg_kpss[k]:.3f} < {KPSS_CRIT_5PCT} (stationarity not rejected)"
        return out

    ok = ~(stationary[iu] | stationary[ju])
    for i, j in zip(iu[~ok], ju[~ok], strict=True):
        reason = "; ".join(why(k) for k in (int(i), int(j)) if stationary[k])
        run.rej.pair(run.syms[i], run.syms[j], "I(1) legs", reason)
    return iu[ok], ju[ok]


def _eg_fdr(
    run: _Run, iu: NDArray[np.intp], ju: NDArray[np.intp], autolag: str
) -> tuple[pd.DataFrame, NDArray[np.float64], float]:
    """Engle-Granger both ways in-sample, oriented by the smaller p; BH over all scanned."""
    sel = run.params.selection
    n_scan = iu.size
    if not n_scan:
        return pd.DataFrame(), np.empty(0, dtype=np.float64), 0.0
    log_df = pd.DataFrame(run.logp[: run.n_is], columns=run.syms)
    a = [run.syms[k] for k in iu]
    b = [run.syms[k] for k in ju]
    t0 = time.perf_counter()
    res = scan(log_df, autolag=autolag, pairs=list(zip(a + b, b + a, strict=True)))
    scan_seconds = time.perf_counter() - t0
    fwd = res.iloc[:n_scan].reset_index(drop=True)  # (a, b): a regressed on b
    rev = res.iloc[n_scan:].reset_index(drop=True)  # (b, a)
    if fwd["y"].tolist() != a or rev["y"].tolist() != b:  # pragma: no cover - scan contract
        raise RuntimeError("pairlib.core.coint.scan returned pairs out of order")
    p_ab = fwd["pvalue"].to_numpy(dtype=np.float64)
    p_ba = rev["pvalue"].to_numpy(dtype=np.float64)
    p_ab1 = np.where(np.isnan(p_ab), 1.0, p_ab)
    p_ba1 = np.where(np.isnan(p_ba), 1.0, p_ba)
    flip = p_ba1 < p_ab1  # orient as the direction with the smaller p-value
    pvalues = np.minimum(1.0, 2.0 * np.minimum(p_ab1, p_ba1))
    qvalues = benjamini_hochberg(pvalues)

    def pick(col: str) -> NDArray[np.float64]:
        return np.where(flip, rev[col].to_numpy(dtype=np.float64),
                        fwd[col].to_numpy(dtype=np.float64))

    cand = pd.DataFrame({
        "yi": np.where(flip, ju, iu),
        "xi": np.where(flip, iu, ju),
        "beta": pick("beta"),
        "alpha": pick("alpha"),
        "pvalue": pvalues,
        "pvalue_yx": np.where(flip, p_ba, p_ab),
        "pvalue_xy": np.where(flip, p_ab, p_ba),
        "qvalue": qvalues,
        "tstat": pick("tstat"),
        "lags": pick("lags"),
    })
    undefined = np.isnan(p_ab) & np.isnan(p_ba)
    collinear = np.isneginf(fwd["tstat"].to_numpy(dtype=np.float64)) | np.isneginf(
        rev["tstat"].to_numpy(dtype=np.float64)
    )
    beta = cand["beta"].to_numpy(dtype=np.float64)
    bad_p = pvalues > sel.max_pvalue
    bad_q = qvalues > sel.fdr_q
    bad_b = ~(beta > 0.0)
    ok = ~(undefined | collinear | bad_p | bad_q | bad_b)
    reasons = []
    for k in np.flatnonzero(~ok):
        if undefined[k]:
            reasons.append("Engle-Granger test undefined (degenerate regression)")
            continue
        if collinear[k]:
            reasons.append("legs (almost) perfectly collinear in-sample: no spread to trade")
            continue
        why = []
        if bad_p[k]:
            why.append(f"combined p={_fmt_p(pvalues[k])} > max_pvalue {sel.max_pvalue:g}")
        if bad_q[k]:
            why.append(f"BH q={_fmt_p(qvalues[k])} > fdr_q {sel.fdr_q:g} "
                       f"({n_scan} pairs scanned)")
        if bad_b[k]:
            why.append(f"beta={beta[k]:.3g} <= 0 (legs move in opposite ways)")
        reasons.append("; ".join(why))
    return run.drop_pairs(cand, ok, "EG+FDR", reasons), pvalues, scan_seconds


def _spread_stats(run: _Run, cand: pd.DataFrame) -> pd.DataFrame:
    """Half-life (in-sample), crossings, mean, std and Hurst (formation window)."""
    cols: dict[str, list[float]] = {
        "half_life": [], "crossings": [], "spread_mean": [], "spread_std": [], "hurst": []
    }
    for r in cand.itertuples(index=False):
        s = run.spread(int(r.yi), int(r.xi), float(r.beta), float(r.alpha))
        cols["half_life"].append(half_life(s[: run.n_is]))
        cols["crossings"].append(count_crossings(s, 0.0))
        cols["spread_mean"].append(float(np.mean(s)))
        cols["spread_std"].append(float(np.std(s, ddof=1)))
        cols["hurst"].append(hurst_exponent(s))
    return cand.assign(**cols)


def _oos_pvalues(run: _Run, cand: pd.DataFrame) -> NDArray[np.float64]:
    """The held-out confirmation p-value of each candidate (see the module docstring)."""
    out = []
    for r in cand.itertuples(index=False):
        s = run.spread(int(r.yi), int(r.xi), float(r.beta), float(r.alpha))
        out.append(_tail_pvalue(s[run.n_is:], int(r.lags)))
    return np.array(out, dtype=np.float64)


def _tail_pvalue(tail: NDArray[np.float64], lags: int) -> float:
    """Dickey-Fuller p-value, no constant, fixed lag order, of a held-out spread."""
    lags = max(0, min(int(lags), tail.size // 4))
    if not np.ptp(tail) > 0.0:
        return math.nan
    res = adfuller(tail, maxlag=lags, regression="n", autolag=None, result_object=True)
    return float(res.pvalue)


def _one_pair_per_symbol(run: _Run, cand: pd.DataFrame) -> pd.DataFrame:
    """Greedy by rank: a pair is kept when neither symbol is in a higher-ranked kept pair."""
    used: dict[int, str] = {}
    ok = np.ones(len(cand), dtype=bool)
    reasons = []
    for k, (yi, xi) in enumerate(zip(cand.yi.astype(int), cand.xi.astype(int), strict=True)):
        clash = [i for i in (yi, xi) if i in used]
        if clash:
            ok[k] = False
            reasons.append(
                "; ".join(f"{run.syms[i]} already in higher-ranked pair {used[i]}" for i in clash)
                + " (one_pair_per_symbol)"
            )
        else:
            used[yi] = used[xi] = f"{run.syms[yi]}/{run.syms[xi]}"
    return run.drop_pairs(cand, ok, "one pair per symbol", reasons)


def _johansen(ly: NDArray[np.float64], lx: NDArray[np.float64]) -> tuple[float, float]:
    res = coint_johansen(np.column_stack([ly, lx]), 0, 1)
    return float(res.lr1[0]), float(res.cvt[0, 1])


_INT_COLUMNS: Final = frozenset({"lags", "crossings", "rank"})
_TIME_COLUMNS: Final = frozenset({"formation_start", "oos_start", "formation_end"})


def _chosen_frame(run: _Run, cand: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """The public ``chosen`` frame (columns :data:`CHOSEN_COLUMNS`)."""
    if not len(cand):
        def dtype(c: str) -> object:
            if c in ("y", "x"):
                return object
            if c in _INT_COLUMNS:
                return np.int64
            if c in _TIME_COLUMNS:
                return index.dtype
            return np.float64

        return pd.DataFrame({c: pd.Series(dtype=dtype(c)) for c in CHOSEN_COLUMNS})
    yi = cand.yi.astype(int).to_numpy()
    xi = cand.xi.astype(int).to_numpy()
    jo = [_johansen(run.logp[:, a], run.logp[:, b]) for a, b in zip(yi, xi, strict=True)]
    pv = cand.pvalue.to_numpy(dtype=np.float64)
    out = cand.drop(columns=["yi", "xi"]).assign(
        y=[run.syms[k] for k in yi],
        x=[run.syms[k] for k in xi],
        lags=cand.lags.astype(np.int64),
        crossings=cand.crossings.astype(np.int64),
        johansen_trace=[t for t, _ in jo],
        johansen_crit95=[c for _, c in jo],
        formation_start=index[0],
        oos_start=index[run.n_is],
        formation_end=index[-1],
        score=-np.log10(np.maximum(pv, _MIN_SCORE_P)),
        rank=np.arange(1, len(cand) + 1, dtype=np.int64),
    )
    return out[list(CHOSEN_COLUMNS)].reset_index(drop=True)


def select(
    prices: pd.DataFrame,
    params: Params,
    quote_volume: pd.DataFrame | None = None,
) -> Selection:
    """Select cointegrated pairs from close prices.

    Parameters
    ----------
    prices : DataFrame
        Close prices, one column per symbol (string labels), index the bar times (UTC,
        strictly increasing). The last ``params.selection.formation_bars`` rows are the formation
        window; older rows are ignored. Prices must be positive.
    params : Params
        The params tree: its ``selection`` section (thresholds and windows),
        ``strategy.lookback`` (the z-score window that caps the half-life) and
        ``data.timeframe`` (bars per day).
    quote_volume : DataFrame, optional
        Quote volume per bar (USDT), same columns and index as ``prices`` (aligned by
        label). When given, a symbol needs a median quote volume per bar times bars per day
        (``data.timeframe``) of at least ``min_quote_volume``.
        ``selection.leg_kpss_confirm``: a leg counts as stationary only when its ADF p-value
        is ``<= leg_adf_min_pvalue`` *and* the KPSS test does not reject level-stationarity
        at 5 % (default). ``selection.eg_autolag``: lag selection of the Engle-Granger ADF
        regressions (default ``"bic"``; see the module docstring).

    Returns
    -------
    Selection
        Chosen pairs (best first), every rejection with its stage and reason, the funnel,
        the scanned p-values and the scan time.

    Raises
    ------
    DataError
        ``prices`` is not a DataFrame with string column labels and a sorted
        DatetimeIndex, has fewer than ``formation_bars`` rows or fewer than 2 columns, a
        column with no price at all, a non-numeric column, or a non-positive or infinite
        price; ``quote_volume`` has a negative value.
    ConfigError
        The params leave fewer than 40 in-sample or 20 held-out bars, or no admissible
        half-life (``half_life_min`` at or above the effective maximum); a bad ``autolag``.

    Notes
    -----
    See the module docstring for windows and conventions: beta is the OLS slope of log y on
    log x with a constant (in-sample); half-life in bars; p-values are probabilities.
    ``half_life_max`` above ``strategy.lookback / 2`` is clipped to it (recorded in
    :attr:`Selection.notes`). Fewer than 2 symbols left after the universe filter is not an
    error: the selection is empty and the rejections say why.
    """
    if not isinstance(params, Params):
        raise TypeError(f"params must be Params, got {type(params).__name__}")
    sel = params.selection
    n_is, n_oos = _windows(params)
    hl_min, hl_max, notes = _half_life_bounds(params)
    _check_prices(prices, sel.formation_bars)
    qv = None if quote_volume is None else _check_quote_volume(quote_volume, prices)

    form = prices.iloc[-sel.formation_bars:]
    rej = _Rejections()
    funnel: dict[str, int] = dict.fromkeys((s for s, _ in FUNNEL_STAGES), 0)
    funnel["symbols in"] = prices.shape[1]
    qv_form = None if qv is None else qv.iloc[-sel.formation_bars:]
    syms = _universe(form, qv_form, params, rej)
    funnel["after universe filter"] = len(syms)
    logp = np.log(form[syms].to_numpy(dtype=np.float64)) if syms else np.empty((len(form), 0))
    run = _Run(params=params, syms=syms, logp=logp, n_is=n_is, rej=rej)

    iu, ju = np.triu_indices(len(syms), k=1)  # every unordered pair, in column order
    funnel["pairs tested"] = iu.size
    iu, ju = _corr_prefilter(run, iu, ju)
    funnel["after corr prefilter"] = iu.size
    iu, ju = _legs_prefilter(run, iu, ju, sel.leg_kpss_confirm)
    funnel["after I(1) legs"] = iu.size
    cand, pvalues, scan_seconds = _eg_fdr(run, iu, ju, sel.eg_autolag)
    funnel["after EG+FDR"] = len(cand)

    if len(cand):
        cand = _spread_stats(run, cand)
        hl = cand["half_life"].to_numpy(dtype=np.float64)
        ok = (hl >= hl_min) & (hl <= hl_max)
        clip = "" if hl_max == sel.half_life_max else " (clipped to strategy.lookback/2)"
        cand = run.drop_pairs(cand, ok, "half-life", [
            f"half-life {h:.3g} bars outside [half_life_min {hl_min:g}, "
            f"half_life_max {hl_max:g}{clip}]" for h in hl[~ok]
        ])
    funnel["after half-life"] = len(cand)

    if len(cand):
        cr = cand["crossings"].to_numpy(dtype=np.int64)
        ok = cr >= sel.min_crossings
        cand = run.drop_pairs(cand, ok, "crossings", [
            f"{int(v)} crossings of the in-sample mean in {sel.formation_bars} bars "
            f"< min_crossings {sel.min_crossings}" for v in cr[~ok]
        ])
    funnel["after crossings"] = len(cand)

    if len(cand) and sel.hurst_max is not None:
        hu = cand["hurst"].to_numpy(dtype=np.float64)
        ok = hu <= sel.hurst_max
        cand = run.drop_pairs(cand, ok, "Hurst", [
            f"Hurst {v:.3f} > hurst_max {sel.hurst_max:g}" for v in hu[~ok]
        ])
    funnel["after Hurst"] = len(cand)

    if len(cand):
        oos = _oos_pvalues(run, cand)
        cand = cand.assign(oos_pvalue=oos)
        ok = oos <= sel.oos_max_pvalue
        cand = run.drop_pairs(cand, ok, "OOS", [
            f"held-out {n_oos} bars do not confirm: Dickey-Fuller (no constant: reversion to "
            f"the in-sample mean) p={_fmt_p(v)} > oos_max_pvalue {sel.oos_max_pvalue:g}"
            for v in oos[~ok]
        ])
    funnel["after OOS"] = len(cand)

    if len(cand):
        cand = cand.sort_values(["pvalue", "half_life"], kind="stable").reset_index(drop=True)
        if sel.one_pair_per_symbol:
            cand = _one_pair_per_symbol(run, cand)
    funnel["after one pair per symbol"] = len(cand)

    if len(cand) > sel.top_k:
        ok = np.arange(len(cand)) < sel.top_k
        cand = run.drop_pairs(cand, ok, "top_k", [
            f"rank {k + 1} beyond top_k {sel.top_k}" for k in range(sel.top_k, len(cand))
        ])
    funnel["chosen"] = len(cand)

    return Selection(
        chosen=_chosen_frame(run, cand, form.index),
        rejected=rej.frame(),
        funnel=pd.DataFrame({
            "stage": [s for s, _ in FUNNEL_STAGES],
            "count": [funnel[s] for s, _ in FUNNEL_STAGES],
            "unit": [u for _, u in FUNNEL_STAGES],
        }),
        pvalues=pvalues,
        scan_seconds=scan_seconds,
        params=params,
        notes=tuple(notes),
    )
