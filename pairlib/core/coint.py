"""Exact, batched Engle–Granger cointegration tests for every pair of a price panel.

:func:`scan` runs statsmodels' augmented Engle–Granger test ``coint(y, x)`` for many ordered
pairs at once and returns the same t-statistics, lags and p-values (typically within 1e-11; tested
to 1e-8). :func:`adf_pvalues` is the same machinery for the augmented Dickey–Fuller test with
a constant on each column (``adfuller(col)``), and :func:`mackinnon_pvalue` is the vectorised
MacKinnon (1994) p-value.

Where agreement cannot hold: a constant ``y`` (statsmodels tests the rounding noise of its
fit; here NaN); series whose every ADF regression fits exactly, such as a short window in
which a price moved only once or twice (statsmodels then picks the lag from SSRs of ~1e-31,
i.e. from rounding noise); and near-exact fits of a few bars, where ``|t|`` runs into the
hundreds and statsmodels' own first-stage rounding moves it by ~1e-9 relative.

Algorithm
---------
statsmodels fits ``maxlag + 2`` least-squares problems per pair from explicit design matrices.
Here every one of them comes from a handful of sums:

1. *Cointegrating regression.* With centred columns ``yc, xc``: ``beta = <yc, xc> / <xc, xc>``
   and the residual is ``e = yc - beta * xc``.
2. *Gram matrices of every ADF design from full-sample sums.* An ADF design over the window of
   rows ``t = s .. n-2`` has the dependent ``d[t] = e[t+1] - e[t]`` and the regressors
   ``e[t]``, ``d[t-1] .. d[t-k]`` (and a constant for :func:`adf_pvalues`). Its cross-products
   are full-sample sums minus at most ``maxlag`` boundary terms at each end (see
   :class:`_WindowSums`), so the full-sample autocovariances of ``d`` at lags ``0..maxlag``,
   ``<e, d>`` and ``<e, e>`` plus the first and last ``2 * maxlag + 1`` values of ``e`` give
   the Gram matrix of *any* window and lag.
3. *Those sums for all pairs at once.* ``e`` and ``d`` are linear in the pair's legs, so each
   full-sample sum is ``S[y, y] - beta * (S[y, x] + S[x, y]) + beta**2 * S[x, x]`` where ``S``
   is a symbol-by-symbol matrix computed once with a matrix product (``maxlag + 3`` of them,
   multithreaded BLAS). Per pair this is O(maxlag) work instead of O(maxlag * nobs). The
   combination cancels when the legs are nearly collinear, so each pair carries its
   cancellation factor (gross sum over net sum); pairs whose factor, times the conditioning of
   their ADF regression, could cost more than about 1e-10 are recomputed from their explicit
   residual series (and, if still ill-conditioned, from explicit designs with a
   pseudo-inverse, exactly as statsmodels). So the fast path never trades accuracy.
4. *Lag selection.* Ordered ``[const?, e[t], d[t-1], .., d[t-maxlag]]``, the lag-k design is a
   prefix of the lag-maxlag design: one Cholesky factor of the augmented common-sample Gram
   matrix (dependent last) gives every nested SSR, ``ssr_k = y'y - |w[:k]|^2``, hence every
   AIC/BIC and every last-regressor t-value.
5. *Refit* at the chosen lag on its own, longer sample, ordered
   ``[const?, d[t-1], .., d[t-k], e[t], y]``: the ADF statistic is the t-value of the last
   regressor, ``w[-1] / sqrt(ssr / dof)``. One factorisation serves every lag: the lags a
   pair does not use are replaced by orthogonal unit columns, which change nothing else.

Chunks of pairs run on ``n_jobs`` threads (numpy releases the GIL), so memory stays bounded
by the chunk size. Two threads measured 1.3-1.45x one on this 2-core machine (OpenBLAS calls
from several threads partly serialise); a fork-based process pool measured 1.55x, but forking
a threaded host process (scheduler, Jupyter kernel) can deadlock, so threads it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from pairlib.errors import ConfigError, DataError

__all__ = ["adf_pvalues", "mackinnon_pvalue", "scan"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
_T = TypeVar("_T")
_R = TypeVar("_R")

# --- MacKinnon (1994), Table 3, regression with a constant ("c"), N = 1..6 -----------------
# Published response-surface coefficients, scaled as in the paper (and as in statsmodels'
# ``adfvalues``): small-p polynomials by [1, 1, 1e-2], large-p polynomials by
# [1, 1e-1, 1e-1, 1e-2]. The cut-offs are tau_max, tau_min and tau_star.
_TAU_MAX_C: Final = np.array([2.74, 0.92, 0.55, 0.61, 0.79, 1.0])
_TAU_MIN_C: Final = np.array([-18.83, -18.86, -23.48, -28.07, -25.96, -23.27])
_TAU_STAR_C: Final = np.array([-1.61, -2.62, -3.13, -3.47, -3.78, -3.93])
_TAU_SMALLP_C: Final = np.array(
    [
        [2.1659, 1.4412, 3.8269],
        [2.92, 1.5012, 3.9796],
        [3.4699, 1.4856, 3.164],
        [3.9673, 1.4777, 2.6315],
        [4.5509, 1.5338, 2.9545],
        [5.1399, 1.6036, 3.4445],
    ]
) * np.array([1, 1, 1e-2])
_TAU_LARGEP_C: Final = np.array(
    [
        [1.7339, 9.3202, -1.2745, -1.0368],
        [2.1945, 6.4695, -2.9198, -4.2377],
        [2.5893, 4.5168, -3.6529, -5.0074],
        [3.0387, 4.5452, -3.3666, -4.1921],
        [3.5049, 5.2098, -2.9158, -3.3468],
        [3.9489, 5.8933, -2.5359, -2.721],
    ]
) * np.array([1, 1e-1, 1e-1, 1e-2])

#: Engle–Granger treats (almost) perfectly collinear legs as cointegrated: R^2 of the
#: cointegrating regression at or above this bound gives t = -inf, p = 0 (as statsmodels).
_COLLINEAR_RSQ: Final = 1.0 - 100.0 * float(np.sqrt(np.finfo(np.float64).eps))
#: Critical value of the "t-stat" lag rule (one-sided 5 %), as statsmodels.
_TSTAT_STOP: Final = 1.6448536269514722
_AUTOLAG_METHODS: Final = ("aic", "bic", "t-stat")
#: Error budget of the normal equations, as an amplification of eps: the cancellation factor
#: of the sums (1 for sums over an explicit series, gross over net for sums combined from
#: symbol matrices) times max(condition number of the regressors' correlation matrix,
#: y'y / SSR). Above it a pair takes the next, more explicit path; at 1e6 the t-statistic
#: stays within about 1e-10 of the exact least-squares value.
_AMPLIFICATION_BUDGET: float = 1e6
#: Condition-number bounds above this are replaced by the exact value (eigenvalues).
_COND_EXACT_ABOVE: Final = 1e3
#: Largest cancellation factor (gross over net) accepted in sums combined from symbol matrices.
_MAX_CANCELLATION: Final = 1e4
#: Default chunk: the pairs whose Gram matrices fill about 2 MiB (they stay in cache; larger
#: chunks measured up to 2x slower here), within these bounds.
_CHUNK_BYTES: Final = 2 * 2**20
_CHUNK_PAIRS: Final = (64, 4096)
#: Largest symbol-by-symbol autocovariance tensor (bytes) the fast path may allocate.
_PANEL_MAX_BYTES: int = 256 * 2**20


def mackinnon_pvalue(tstat: npt.ArrayLike, n_vars: int = 2) -> FloatArray:
    """MacKinnon's (1994) approximate asymptotic p-value of a (co)integration t-statistic.

    Parameters
    ----------
    tstat : array_like
        ADF t-statistics (any shape). ``-inf`` gives 0, ``+inf`` gives 1, NaN gives NaN.
    n_vars : int, default 2
        Number of I(1) series in the test: 1 for a Dickey–Fuller test, 2 for an Engle–Granger
        test of one pair (at most 6).

    Returns
    -------
    numpy.ndarray
        P-values, same shape as ``tstat``.

    Notes
    -----
    Regression with a constant ("c"). Equals ``statsmodels.tsa.adfvalues.mackinnonp(t,
    regression="c", N=n_vars)`` element by element: 1 above tau_max, 0 below tau_min, else
    the normal cdf of the small-p polynomial (t <= tau_star) or of the large-p polynomial.
    """
    from scipy.special import ndtr  # deferred: importing scipy.special costs ~0.2 s

    if isinstance(n_vars, bool) or not isinstance(n_vars, int) or not 1 <= n_vars <= 6:
        raise ConfigError(f"n_vars must be an int between 1 and 6, got {n_vars!r}")
    t = np.asarray(tstat, dtype=np.float64)
    small = _TAU_SMALLP_C[n_vars - 1]
    large = _TAU_LARGEP_C[n_vars - 1]
    with np.errstate(invalid="ignore", over="ignore"):
        # Horner's rule in numpy.polyval's order, so the values are bit-identical.
        p_small = ndtr((small[2] * t + small[1]) * t + small[0])
        p_large = ndtr(((large[3] * t + large[2]) * t + large[1]) * t + large[0])
    inner = np.where(t <= _TAU_STAR_C[n_vars - 1], p_small, p_large)
    low = np.where(t < _TAU_MIN_C[n_vars - 1], 0.0, inner)
    return np.asarray(np.where(t > _TAU_MAX_C[n_vars - 1], 1.0, low), dtype=np.float64)


def scan(
    log_prices: pd.DataFrame,
    maxlag: int | None = None,
    autolag: str | None = "aic",
    pairs: Sequence[tuple[str, str]] | None = None,
    chunk_size: int | None = None,
    n_jobs: int = 2,
) -> pd.DataFrame:
    """Engle–Granger cointegration test of every ordered pair of columns (or of ``pairs``).

    Parameters
    ----------
    log_prices : pandas.DataFrame
        One column per symbol (unique labels), one row per bar, log prices, all finite.
    maxlag : int, optional
        Largest ADF lag. Default: statsmodels' ``ceil(12 * (nobs / 100) ** 0.25)``, capped at
        ``nobs // 2 - 1``, which is also the largest value allowed.
    autolag : {"aic", "bic", "t-stat", None}, default "aic"
        Lag selection over ``0..maxlag`` on the common sample of ``nobs - 1 - maxlag`` rows,
        then a refit at the chosen lag on its own sample. ``None`` uses ``maxlag`` lags.
    pairs : sequence of (y, x), optional
        Ordered pairs of column labels to test, in this order (duplicates allowed). Default:
        every ordered pair ``(y, x)`` with ``y != x``, ``y`` in column order, then ``x``.
    chunk_size : int, optional
        Pairs per batch. Default: as many as have 2 MiB of Gram matrices (359 at the default
        maxlag 24 of 1,500 bars), between 64 and 4096. Working memory is a few such batches
        per thread, plus ``n_symbols**2 * (maxlag + 3)`` floats of symbol-by-symbol sums
        (50 MB for 500 symbols at maxlag 24; above 256 MiB, or for a few pairs of many
        symbols, pairs are computed from their explicit residual series instead, about
        ``5 * chunk_size * nobs`` floats per thread).
    n_jobs : int, default 2
        Threads over chunks; ``-1`` means one per CPU.

    Returns
    -------
    pandas.DataFrame
        One row per pair and a default RangeIndex, with columns ``y``, ``x`` (labels),
        ``beta``, ``alpha``, ``tstat``, ``pvalue`` (float), ``lags`` and ``nobs`` (int).

    Raises
    ------
    pairlib.errors.DataError
        Non-finite values, non-numeric or duplicate columns, or too few bars.
    pairlib.errors.ConfigError
        Invalid ``maxlag``, ``autolag``, ``pairs``, ``chunk_size`` or ``n_jobs``.

    See Also
    --------
    adf_pvalues : unit-root p-value of each leg.

    Notes
    -----
    Conventions, per row ``(y, x)``:

    - beta, alpha: OLS of log y on log x with a constant, ``log y = alpha + beta * log x + e``.
    - tstat: ADF t-statistic of ``e`` (regression without constant) at the chosen lag; equals
      ``statsmodels.tsa.stattools.coint(y, x, maxlag=maxlag, autolag=autolag)[0]``.
    - pvalue: MacKinnon (1994) p-value for a constant and two variables, as ``coint``. Small
      values reject "no cointegration". The test is not symmetric in ``y`` and ``x``.
    - lags: lagged differences in the final ADF regression; -1 when no ADF was run.
    - nobs: bars in the cointegrating regression (rows of ``log_prices``).
    - Almost perfectly collinear legs (R^2 >= 1 - 100 * sqrt(eps)) give ``tstat = -inf``,
      ``pvalue = 0``, as statsmodels, without its ``CollinearityWarning``. A constant ``y``
      gives NaN (statsmodels tests the rounding noise of its fit there). A constant ``x`` gives
      ``beta = 0``, ``alpha = mean(y)`` and the test of the demeaned ``y``, as statsmodels.
    """
    values, names = _as_matrix(log_prices)
    nobs = values.shape[0]
    spec = _AdfSpec(_resolve_maxlag(nobs, 0, maxlag), _check_autolag(autolag), const=False)
    iy, ix = _pair_indices(names, pairs)
    workers = _check_jobs(n_jobs)
    if chunk_size is None:
        fit = _CHUNK_BYTES // (8 * (spec.maxlag + 3) ** 2)
        chunk_size = min(max(fit, _CHUNK_PAIRS[0]), _CHUNK_PAIRS[1])
    elif isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive int, got {chunk_size!r}")

    means = values.mean(axis=0)
    used, where = np.unique(np.concatenate([iy, ix]), return_inverse=True)
    local_y, local_x = where[: iy.size], where[iy.size :]
    centred = np.ascontiguousarray((values[:, used] - means[used]).T)  # (symbols, bars)
    # a constant column centres to rounding noise (its mean is not exact): make it exactly 0
    centred[np.ptp(values[:, used], axis=0) == 0.0] = 0.0
    # symbol-by-symbol sums pay off unless few pairs are asked of many symbols
    panel_bytes = used.size**2 * (spec.maxlag + 3) * 8
    fast = iy.size * 32 >= used.size**2 and panel_bytes <= _PANEL_MAX_BYTES
    panel = _Panel.build(centred, spec.maxlag) if fast else None

    def work(bounds: tuple[int, int]) -> tuple[FloatArray, FloatArray, IntArray]:
        lo, hi = bounds
        if panel is None:
            return _direct_chunk(centred, local_y[lo:hi], local_x[lo:hi], spec)
        return _fast_chunk(panel, local_y[lo:hi], local_x[lo:hi], spec)

    bounds = [(lo, min(lo + chunk_size, iy.size)) for lo in range(0, iy.size, chunk_size)]
    parts = _map(work, bounds, workers)
    beta = np.concatenate([p[0] for p in parts]) if parts else np.empty(0)
    tstat = np.concatenate([p[1] for p in parts]) if parts else np.empty(0)
    lags = np.concatenate([p[2] for p in parts]) if parts else np.empty(0, dtype=np.int64)
    labels = np.asarray(names, dtype=object)
    return pd.DataFrame(
        {
            "y": labels[iy],
            "x": labels[ix],
            "beta": beta,
            "alpha": means[iy] - beta * means[ix],
            "tstat": tstat,
            "pvalue": mackinnon_pvalue(tstat, 2),
            "lags": lags,
            "nobs": np.full(iy.size, nobs, dtype=np.int64),
        }
    )


def adf_pvalues(
    log_prices: pd.DataFrame, *, maxlag: int | None = None, autolag: str | None = "aic"
) -> pd.Series:
    """ADF unit-root p-value of each column (regression with a constant).

    Parameters
    ----------
    log_prices : pandas.DataFrame
        One column per symbol, one row per bar, all finite.
    maxlag : int, optional
        Largest lag; default as statsmodels, capped at ``nobs // 2 - 2``.
    autolag : {"aic", "bic", "t-stat", None}, default "aic"
        Lag selection, as in :func:`scan`.

    Returns
    -------
    pandas.Series
        P-values named ``"pvalue"``, indexed by column label. NaN for a constant column
        (statsmodels raises there).

    Notes
    -----
    Equals ``statsmodels.tsa.stattools.adfuller(col, maxlag=maxlag, autolag=autolag)[1]``
    (regression "c", MacKinnon p-value with N = 1). Small p-values reject a unit root, so an
    I(1) leg should have a *large* p-value here.
    """
    values, names = _as_matrix(log_prices)
    nobs = values.shape[0]
    spec = _AdfSpec(_resolve_maxlag(nobs, 1, maxlag), _check_autolag(autolag), const=True)
    # The constant absorbs any shift: centre each column so the Gram matrix is well scaled.
    series = np.ascontiguousarray((values - values.mean(axis=0)).T)
    varying = np.ptp(values, axis=0) > 0.0
    tstat = np.full(series.shape[0], np.nan)
    if varying.any():
        tstat[varying] = _adf_batch(series[varying], spec)[0]
    pvalue = np.where(varying, mackinnon_pvalue(tstat, 1), np.nan)
    return pd.Series(pvalue, index=pd.Index(names), name="pvalue")


# --- input handling --------------------------------------------------------------------------


@dataclass(frozen=True)
class _AdfSpec:
    """ADF settings shared by a batch: largest lag, selection rule, constant or not."""

    maxlag: int
    autolag: str | None
    const: bool


def _as_matrix(frame: pd.DataFrame) -> tuple[FloatArray, list[object]]:
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"log_prices must be a pandas DataFrame, got {type(frame).__name__}")
    if not frame.columns.is_unique:
        dup = frame.columns[frame.columns.duplicated()].unique().tolist()
        raise DataError(f"log_prices has duplicate column labels: {dup}")
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"log_prices must be numeric: {e}") from e
    bad = ~np.isfinite(values).all(axis=0)
    if bad.any():
        raise DataError(
            f"log_prices has NaN or infinite values in columns {frame.columns[bad].tolist()}; "
            "align and trim the panel first"
        )
    return values, frame.columns.tolist()


def _resolve_maxlag(nobs: int, ntrend: int, maxlag: int | None) -> int:
    cap = nobs // 2 - ntrend - 1
    if maxlag is None:
        if cap < 0:
            raise DataError(f"{nobs} bars are too few for the ADF regression")
        # Schwert (1989), as statsmodels: the same float expression, so the same integer.
        return min(cap, int(np.ceil(12.0 * np.power(nobs / 100.0, 1 / 4.0))))
    if isinstance(maxlag, bool) or not isinstance(maxlag, int | np.integer) or maxlag < 0:
        raise ConfigError(f"maxlag must be a non-negative int, got {maxlag!r}")
    if maxlag > cap:
        raise ConfigError(
            f"maxlag must be at most nobs // 2 - {ntrend + 1} = {cap} for {nobs} bars, "
            f"got {maxlag}"
        )
    return int(maxlag)


def _check_autolag(autolag: str | None) -> str | None:
    if autolag is None:
        return None
    method = autolag.lower() if isinstance(autolag, str) else autolag
    if method not in _AUTOLAG_METHODS:
        raise ConfigError(f"autolag must be one of {_AUTOLAG_METHODS} or None, got {autolag!r}")
    return str(method)


def _check_jobs(n_jobs: int) -> int:
    if n_jobs == -1:
        return os.cpu_count() or 1
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ConfigError(f"n_jobs must be a positive int or -1, got {n_jobs!r}")
    return n_jobs


def _pair_indices(
    names: list[object], pairs: Sequence[tuple[str, str]] | None
) -> tuple[IntArray, IntArray]:
    n_sym = len(names)
    if pairs is None:
        grid_y, grid_x = np.divmod(np.arange(n_sym * n_sym, dtype=np.int64), n_sym)
        keep = grid_y != grid_x
        return grid_y[keep], grid_x[keep]
    where = {name: i for i, name in enumerate(names)}
    iy = np.empty(len(pairs), dtype=np.int64)
    ix = np.empty(len(pairs), dtype=np.int64)
    for k, pair in enumerate(pairs):
        try:
            y, x = pair
        except (TypeError, ValueError) as e:
            raise ConfigError(f"pairs[{k}] must be a (y, x) tuple, got {pair!r}") from e
        missing = [s for s in (y, x) if s not in where]
        if missing:
            raise ConfigError(f"pairs[{k}] = {pair!r}: unknown columns {missing}")
        if y == x:
            raise ConfigError(f"pairs[{k}] = {pair!r}: y and x must differ")
        iy[k], ix[k] = where[y], where[x]
    return iy, ix


def _map(fn: Callable[[_T], _R], items: list[_T], workers: int) -> list[_R]:
    if workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


# --- the cointegrating regression, per chunk of pairs -----------------------------------------


@dataclass(frozen=True)
class _Panel:
    """Symbol-by-symbol sums from which every pair's residual sums follow (fast path).

    With ``c`` the centred series (symbols x bars), ``D`` their differences and
    ``nd = bars - 1``: ``cross = c c'``; ``acov[h, u, v] = sum_{t=h}^{nd-1} D[u,t] D[v,t-h]``;
    ``level_diff[u, v] = sum_{t<nd} c[u,t] D[v,t]``; ``first``/``last`` are the first
    ``maxlag + 1`` and last ``2 * maxlag + 1`` bars of ``c`` (bars x symbols).
    """

    centred: FloatArray
    sq: FloatArray
    cross: FloatArray
    acov: FloatArray
    acov_own: FloatArray
    level_diff: FloatArray
    level_diff_own: FloatArray
    first: FloatArray
    last: FloatArray

    @classmethod
    def build(cls, centred: FloatArray, maxlag: int) -> _Panel:
        n_sym, nobs = centred.shape
        nd = nobs - 1
        diff = np.diff(centred, axis=1)
        cross = centred @ centred.T
        acov = np.empty((maxlag + 1, n_sym, n_sym))
        for h in range(maxlag + 1):
            np.matmul(diff[:, h:], diff[:, : nd - h].T, out=acov[h])
        level_diff = centred[:, :nd] @ diff.T
        own = np.arange(n_sym)
        return cls(
            centred=centred,
            sq=np.diagonal(cross).copy(),
            cross=cross,
            acov=acov,
            acov_own=acov[:, own, own],
            level_diff=level_diff,
            level_diff_own=np.diagonal(level_diff).copy(),
            first=np.ascontiguousarray(centred[:, : maxlag + 1].T),
            last=np.ascontiguousarray(centred[:, nobs - 2 * maxlag - 1 :].T),
        )


def _fast_chunk(
    panel: _Panel, iy: IntArray, ix: IntArray, spec: _AdfSpec
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Beta, ADF t-statistic and lag of the pairs ``(iy[k], ix[k])`` from the panel sums.

    Each residual sum is ``S[y,y] - beta * (S[y,x] + S[x,y]) + beta**2 * S[x,x]``. Its
    rounding error, relative to the residual's own norm, is at most about eps times the
    cancellation factor ``kappa``; pairs whose ``kappa`` times the conditioning of their ADF
    fits exceeds the error budget (and near-collinear pairs) go through :func:`_direct_chunk`.
    """
    syy, sxx, sxy = panel.sq[iy], panel.sq[ix], panel.cross[iy, ix]
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(sxx > 0.0, sxy / sxx, 0.0)
    a_yy, a_xx = panel.acov_own[:, iy], panel.acov_own[:, ix]
    a_yx, a_xy = panel.acov[:, iy, ix], panel.acov[:, ix, iy]
    ssr = syy - 2.0 * beta * sxy + beta**2 * sxx
    acov = a_yy - beta * (a_yx + a_xy) + beta**2 * a_xx
    level_diff = (
        panel.level_diff_own[iy]
        - beta * (panel.level_diff[iy, ix] + panel.level_diff[ix, iy])
        + beta**2 * panel.level_diff_own[ix]
    )
    first = panel.first[:, iy] - beta * panel.first[:, ix]
    last = panel.last[:, iy] - beta * panel.last[:, ix]
    level_sq = ssr - last[-1] ** 2  # sum of e[t]**2 over t < nd
    # Rounding in a combined sum is at most ~eps times the same combination of the legs'
    # norms, (|y| + |beta| |x|)**2 by Cauchy-Schwarz; relative to the residual's own squared
    # norm (levels for the level sums, differences for the autocovariances, both for the
    # mixed sum, whose bound is the geometric mean) that is the cancellation factor.
    gross_level = (np.sqrt(syy) + np.abs(beta) * np.sqrt(sxx)) ** 2
    gross_diff = (np.sqrt(a_yy[0]) + np.abs(beta) * np.sqrt(a_xx[0])) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.maximum(gross_level / level_sq, gross_diff / acov[0])
        rsquared = 1.0 - ssr / syy
    exact = (ssr > 0.0) & (level_sq > 0.0) & (acov[0] > 0.0) & (kappa <= _MAX_CANCELLATION)
    testable = exact & (rsquared < _COLLINEAR_RSQ)
    tstat = np.where(exact, -np.inf, np.nan)
    lags = np.full(iy.size, -1, dtype=np.int64)
    if testable.any():
        rows = np.flatnonzero(testable)
        sums = _FullSums(
            acov[:, rows], level_diff[rows], level_sq[rows], None, first[:, rows], last[:, rows]
        )
        nobs = panel.centred.shape[1]
        t_fit, lag_fit, suspect = _adf_sums(sums, nobs, spec, kappa[rows])
        tstat[rows], lags[rows] = t_fit, lag_fit
        exact[rows[suspect]] = False
    redo = np.flatnonzero(~exact)
    if redo.size:
        beta[redo], tstat[redo], lags[redo] = _direct_chunk(
            panel.centred, iy[redo], ix[redo], spec
        )
    return beta, tstat, lags


def _direct_chunk(
    centred: FloatArray, iy: IntArray, ix: IntArray, spec: _AdfSpec
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Beta, ADF t-statistic and lag of the pairs from their explicit residual series."""
    resid = np.take(centred, ix, axis=0)
    legs_y = np.take(centred, iy, axis=0)
    sxx = np.vecdot(resid, resid)
    syy = np.vecdot(legs_y, legs_y)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = np.where(sxx > 0.0, np.vecdot(legs_y, resid) / sxx, 0.0)
    resid *= -beta[:, None]
    resid += legs_y
    del legs_y
    with np.errstate(divide="ignore", invalid="ignore"):
        rsquared = 1.0 - np.vecdot(resid, resid) / syy
    testable = rsquared < _COLLINEAR_RSQ  # NaN (constant y) is not testable
    tstat = np.where(syy > 0.0, -np.inf, np.nan)
    lags = np.full(iy.size, -1, dtype=np.int64)
    if testable.any():
        batch = resid if testable.all() else resid[testable]
        tstat[testable], lags[testable] = _adf_batch(batch, spec)
    return beta, tstat, lags


# --- the ADF regression from sums ------------------------------------------------------------


@dataclass(frozen=True)
class _FullSums:
    """Full-sample sums and boundary values of a batch of series ``e`` (n bars each).

    With ``d[u] = e[u+1] - e[u]`` and ``nd = n - 1``: ``acov[h] = sum_{u=h}^{nd-1}
    d[u] d[u-h]`` (h = 0..maxlag), ``level_diff = sum_{u<nd} e[u] d[u]``, ``level_sq =
    sum_{u<nd} e[u]**2``, ``level_sum = sum_{u<nd} e[u]`` (only with a constant), ``first =
    e[:maxlag+1]`` and ``last = e[n-2*maxlag-1:]``. Arrays are series-last.
    """

    acov: FloatArray
    level_diff: FloatArray
    level_sq: FloatArray
    level_sum: FloatArray | None
    first: FloatArray
    last: FloatArray

    @classmethod
    def of(cls, series: FloatArray, maxlag: int, const: bool) -> _FullSums:
        nd = series.shape[1] - 1
        d = np.diff(series, axis=1)
        lead = series[:, :nd]
        acov = np.empty((maxlag + 1, series.shape[0]))
        for h in range(maxlag + 1):
            acov[h] = np.vecdot(d[:, h:], d[:, : nd - h])
        return cls(
            acov=acov,
            level_diff=np.vecdot(lead, d),
            level_sq=np.vecdot(lead, lead),
            level_sum=lead.sum(axis=1) if const else None,
            first=np.ascontiguousarray(series[:, : maxlag + 1].T),
            last=np.ascontiguousarray(series[:, nd - 2 * maxlag :].T),
        )


class _WindowSums:
    """Gram matrices of ADF designs over any trailing window, from :class:`_FullSums`.

    The window starting at ``s`` has rows ``t = s .. nd-1``, the dependent ``d[t]`` and the
    regressors ``e[t]``, ``d[t-j]`` (``1 <= j <= s``) and possibly a constant. Its sums are:

    - ``sum_t d[t-i] d[t-j] = acov[h] - head[s-m, h] - tail[m, h]`` with ``h = |i-j|``,
      ``m = min(i, j)``, ``head[a, h] = sum_{u=h}^{a-1} d[u] d[u-h]`` and
      ``tail[m, h] = sum_{r=1}^{m} d[nd-r] d[nd-r-h]``;
    - ``sum_t e[t] d[t-j] = sum_{u=s-j}^{nd-1-j} e[u] d[u] + sum_{r=1}^{j} sum_t d[t-r] d[t-j]``
      because ``e[t] = e[t-j] + d[t-j] + ... + d[t-1]``;
    - ``sum_t d[t-j] = e[nd-j] - e[s-j]``; ``sum_t e[t]`` and ``sum_t e[t]**2`` by removing
      the first ``s`` terms from the full sums.

    Tables are stored series-last, so every step is a long contiguous vector operation.
    """

    def __init__(self, sums: _FullSums, nobs: int, maxlag: int, const: bool) -> None:
        big = maxlag
        self.nd, self.maxlag, self.const = nobs - 1, big, const
        first, last = sums.first, sums.last  # e[0 .. maxlag], e[nd-2*maxlag .. nd]
        d_first = first[1:] - first[:-1]  # d[0 .. maxlag-1]
        d_last = last[1:] - last[:-1]  # d[nd-2*maxlag .. nd-1]
        uu = np.arange(big)[:, None]
        hh = np.arange(big + 1)[None, :]
        head_terms = d_first[:, None] * d_first[np.maximum(uu - hh, 0)]
        head_terms *= (uu >= hh)[:, :, None]
        tail_terms = d_last[2 * big - 1 - uu] * d_last[2 * big - 1 - uu - hh]
        # flat (a * (maxlag + 1) + h, series) for one ``take`` per Gram matrix
        self.head = _prefix_sums(head_terms).reshape((big + 1) ** 2, -1)
        self.tail = _prefix_sums(tail_terms).reshape((big + 1) ** 2, -1)
        self.acov = sums.acov
        self.level_diff = sums.level_diff
        self.ld_head = _prefix_sums(first[:big] * d_first)
        self.ld_tail = _prefix_sums((last[big : 2 * big] * d_last[big:])[::-1])
        self.level_sq = sums.level_sq
        self.sq_head = _prefix_sums(first[:big] ** 2)
        if const:
            assert sums.level_sum is not None
            self.level_sum = sums.level_sum
            self.sum_head = _prefix_sums(first[:big])
            self.first, self.last = first, last

    def gram(self, start: int | IntArray, level_last: bool) -> FloatArray:
        """Augmented Gram matrices (k, k, series) of the lag-``maxlag`` design over a window.

        ``start`` is the first row of the window, one for all series or one per series. The
        regressors are ``[1?, e[t], d[t-1], .., d[t-maxlag]]`` (``level_last=False``) or
        ``[1?, d[t-1], .., d[t-maxlag], e[t]]`` (``level_last=True``); the dependent ``d[t]``
        is the last row and column. Entries of lags ``j > start`` are meaningless (the window
        has no such lag): mask them.
        """
        big, n_series = self.maxlag, self.level_sq.size
        s = np.asarray(start, dtype=np.int64).reshape(-1)  # (1,) or (series,)
        c = int(self.const)
        size = c + big + 2
        j = np.arange(big + 1)
        pos_delta = np.concatenate(([size - 1], c + j[1:] - int(level_last)))
        pos_level = c + big if level_last else c
        h = np.abs(j[:, None] - j[None, :])
        low = np.minimum(j[:, None], j[None, :])

        def at(table: FloatArray, index: IntArray) -> FloatArray:
            """``table[index[..., k], k]`` for each series k (index clipped to the table)."""
            index = np.clip(index, 0, table.shape[0] - 1)
            if np.ndim(start) == 0:  # the same row for every series
                return np.take(table, index[..., 0], axis=0)
            flat = index.reshape(-1, n_series)
            return np.take_along_axis(table, flat, axis=0).reshape(index.shape)

        dd = np.take(self.acov, h, axis=0)
        dd -= at(self.head, (s - low[:, :, None]) * (big + 1) + h[:, :, None])
        dd -= np.take(self.tail, low * (big + 1) + h, axis=0)
        ld = self.level_diff - at(self.ld_head, s - j[:, None]) - self.ld_tail
        upper = np.triu(np.ones((big + 1, big + 1)))
        upper[0] = 0.0
        ld += np.einsum("rjp,rj->jp", dd, upper)  # sum_{r=1}^{j} dd[r, j]
        gram = np.empty((size, size, n_series))
        gram[pos_delta[:, None], pos_delta[None, :]] = dd
        gram[pos_delta, pos_level] = ld
        gram[pos_level, pos_delta] = ld
        gram[pos_level, pos_level] = self.level_sq - at(self.sq_head, s[None, :])[0]
        if self.const:
            gram[pos_delta, 0] = self.last[2 * big - j] - at(self.first, s - j[:, None])
            gram[0, pos_delta] = gram[pos_delta, 0]
            gram[pos_level, 0] = self.level_sum - at(self.sum_head, s[None, :])[0]
            gram[0, pos_level] = gram[pos_level, 0]
            gram[0, 0] = self.nd - s
        return gram


def _prefix_sums(x: FloatArray) -> FloatArray:
    """Prefix sums along the first axis with a leading 0: ``out[a] = sum(x[:a])``."""
    out = np.empty((x.shape[0] + 1, *x.shape[1:]))
    out[0] = 0.0
    for a in range(x.shape[0]):
        np.add(out[a], x[a], out=out[a + 1])
    return out


def _factor(gram: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray]:
    """Cholesky factors of augmented Gram matrices (k, k, series; dependent last).

    Returns ``w``, the last row of each factor without its diagonal (so the SSR on the first
    ``m`` regressors is ``y'y - sum(w[:m]**2)``), series last; ``y'y``; the condition number
    of the regressors' correlation matrix (an upper bound, exact where the bound is large),
    which bounds the relative error of the normal equations in units of eps; and the series
    whose factorisation failed.
    """
    yy = gram[-1, -1].copy()
    # The last pivot, y'y - |w|^2, is 0 for an exact fit: raise y'y (it enters nothing else)
    # so the factorisation cannot fail on it; SSRs are formed from the true y'y.
    gram[-1, -1] = 2.0 * yy + 1.0
    stack = np.ascontiguousarray(np.moveaxis(gram, -1, 0))
    failed = np.zeros(stack.shape[0], dtype=bool)
    try:
        chol = np.asarray(np.linalg.cholesky(stack), dtype=np.float64)
    except np.linalg.LinAlgError:
        chol = np.zeros_like(stack)
        for k in range(stack.shape[0]):
            try:
                chol[k] = np.linalg.cholesky(stack[k])
            except np.linalg.LinAlgError:
                chol[k] = np.eye(stack.shape[1])
                failed[k] = True
    return np.ascontiguousarray(chol[:, -1, :-1].T), yy, _condition(stack, chol), failed


def _condition(stack: FloatArray, chol: FloatArray) -> FloatArray:
    """Condition number (bound) of each regressor block's correlation matrix ``C = L L'``.

    ``L`` (the scaled Cholesky factor) has unit rows and diagonal ``sqrt(q)``, ``q`` the share
    of each regressor's squared norm not explained by the previous ones. With ``L = D + N``:
    ``|D^-1 N|_F^2 = sum(1/q - 1) = e^2``, so for ``e < 1``,
    ``cond(C) <= k * max(1/q) / (1 - e)**2`` (``|C| <= k``, Neumann series for ``L^-1``).
    Where that bound is loose or fails (short series, many lags), ``cond`` is computed from
    the eigenvalues.
    """
    k = stack.shape[1] - 1
    norms = np.diagonal(stack, axis1=1, axis2=2)[:, :-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_share = norms / np.diagonal(chol, axis1=1, axis2=2)[:, :-1] ** 2
        excess = np.sqrt(np.sum(inv_share - 1.0, axis=1))
        cond = k * inv_share.max(axis=1) / (1.0 - excess) ** 2
    cond[~(excess < 0.9)] = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 1.0 / np.sqrt(norms)
    loose = np.flatnonzero(~(cond <= _COND_EXACT_ABOVE) & np.isfinite(scale).all(axis=1))
    if loose.size:
        corr = stack[loose, :-1, :-1] * scale[loose, :, None] * scale[loose, None, :]
        try:
            eig = np.linalg.eigvalsh(corr)
        except np.linalg.LinAlgError:  # one did not converge: keep its bound (inf)
            eig = np.full(corr.shape[:2], np.nan)
            for k in range(corr.shape[0]):
                with contextlib.suppress(np.linalg.LinAlgError):
                    eig[k] = np.linalg.eigvalsh(corr[k])
        with np.errstate(divide="ignore", invalid="ignore"):
            cond[loose] = np.where(eig[:, 0] > 0.0, eig[:, -1] / eig[:, 0], np.inf)
    return cond


def _adf_sums(
    sums: _FullSums, nobs: int, spec: _AdfSpec, rounding: FloatArray | float
) -> tuple[FloatArray, IntArray, BoolArray]:
    """ADF t-statistics and lags from full-sample sums, and the series to recompute.

    ``rounding`` is the cancellation factor already in the sums (see
    ``_AMPLIFICATION_BUDGET``).
    """
    window = _WindowSums(sums, nobs, spec.maxlag, spec.const)
    n_series = sums.level_sq.size
    if spec.autolag is None:
        lags = np.full(n_series, spec.maxlag, dtype=np.int64)
        amp_select = np.ones(n_series)
        failed = np.zeros(n_series, dtype=bool)
    else:
        lags, amp_select, failed = _select_lags(window, spec)
    tstat, amp_refit, failed_refit = _refit(window, lags, spec)
    amplification = np.maximum(amp_select, amp_refit)
    suspect = failed | failed_refit | ~(rounding * amplification <= _AMPLIFICATION_BUDGET)
    return tstat, lags, suspect


def _amplification(
    cond: FloatArray, ssr: FloatArray, yy: FloatArray, dof: IntArray
) -> FloatArray:
    """Rounding amplification of a least-squares fit: max(cond, y'y / SSR).

    ``ssr`` is (models, series) and ``dof`` broadcasts against it; exact fits (``dof == 0``)
    are not counted; non-positive SSRs and NaNs give inf or NaN (both over budget).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        fit = np.where(ssr > 0.0, yy / ssr, np.inf)
        return np.maximum(cond, np.where(dof > 0, fit, 0.0).max(axis=0))


def _select_lags(
    window: _WindowSums, spec: _AdfSpec
) -> tuple[IntArray, FloatArray, BoolArray]:
    """Lag chosen on the common sample (window start = maxlag), as statsmodels' ``_autolag``."""
    big = spec.maxlag
    k0 = 1 + int(spec.const)
    nrows = window.nd - big
    w, yy, cond, failed = _factor(window.gram(big, level_last=False))
    nreg = (k0 + np.arange(big + 1))[:, None]
    dof = nrows - nreg
    ssr = yy - np.cumsum(w**2, axis=0)[k0 - 1 :]  # (lag, series)
    amplification = _amplification(cond, ssr, yy, dof)
    with np.errstate(divide="ignore", invalid="ignore"):
        ssr = np.where(dof > 0, np.maximum(ssr, 0.0), 0.0)
        if spec.autolag == "t-stat":
            # t-value of the last regressor of each nested model: w[k] / sqrt(ssr_k / dof_k);
            # an exact fit has an infinite scale, so statsmodels' t-value is 0.
            scale = np.sqrt(ssr / np.maximum(dof, 1))
            tlast = np.where(dof > 0, w[k0 - 1 :] / scale, 0.0)
            significant = np.abs(tlast) >= _TSTAT_STOP
            top = big - np.argmax(significant[::-1], axis=0)
            lags = np.where(significant.any(axis=0), top, 0).astype(np.int64)
            return lags, amplification, failed
        loglik = nrows * np.log(ssr) + nrows * (1.0 + np.log(2.0 * np.pi / nrows))
    penalty = 2.0 * nreg if spec.autolag == "aic" else np.log(nrows) * nreg
    crit = loglik + penalty
    # statsmodels keeps the first strict minimum scanning lags upwards (NaN never wins).
    best = crit[0].copy()
    lags = np.zeros(w.shape[1], dtype=np.int64)
    for k in range(1, big + 1):
        better = crit[k] < best
        best = np.where(better, crit[k], best)
        lags[better] = k
    return lags, amplification, failed


def _refit(
    window: _WindowSums, lags: IntArray, spec: _AdfSpec
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """ADF t-statistic at each series' lag, on that lag's own sample (window start = lag).

    One factorisation of the full-size design for all series: lags beyond a series' own are
    replaced by orthogonal unit columns (their ``w`` is 0, the rest is unchanged).
    """
    big = spec.maxlag
    c = int(spec.const)
    gram = window.gram(lags, level_last=True)
    keep = np.ones((gram.shape[0], lags.size), dtype=bool)
    keep[c : c + big] = np.arange(1, big + 1)[:, None] <= lags
    mask = keep[:, None, :] & keep[None, :, :]
    gram = np.where(mask, gram, np.eye(gram.shape[0])[:, :, None])
    w, yy, cond, failed = _factor(gram)
    ssr = yy - np.sum(w**2, axis=0)
    dof = (window.nd - lags) - (1 + c + lags)
    with np.errstate(divide="ignore", invalid="ignore"):
        # an exact fit (dof 0) has an infinite scale, so statsmodels' t-value is 0
        tstat = np.where(dof > 0, w[-1] / np.sqrt(np.maximum(ssr, 0.0) / dof), 0.0)
    amplification = _amplification(cond, ssr[None, :], yy, dof[None, :])
    return tstat, amplification, failed


def _adf_batch(series: FloatArray, spec: _AdfSpec) -> tuple[FloatArray, IntArray]:
    """ADF t-statistic and lag of each row of ``series`` (series x bars), exactly."""
    sums = _FullSums.of(series, spec.maxlag, spec.const)
    tstat, lags, suspect = _adf_sums(sums, series.shape[1], spec, 1.0)
    for k in np.flatnonzero(suspect).tolist():
        tstat[k], lags[k] = _adf_explicit(series[k], spec)
    return tstat, lags


# --- explicit designs, for the rare ill-conditioned series -----------------------------------


def _adf_explicit(series: FloatArray, spec: _AdfSpec) -> tuple[float, int]:
    """ADF of one series from explicit designs and a pseudo-inverse, as statsmodels."""
    e = series
    d = np.diff(e)
    nd = d.size
    big = spec.maxlag

    def design(start: int, nlags: int, level_last: bool) -> tuple[FloatArray, FloatArray]:
        cols = [d[start - j : nd - j] for j in range(1, nlags + 1)]
        cols = [*cols, e[start:nd]] if level_last else [e[start:nd], *cols]
        if spec.const:
            cols.insert(0, np.ones(nd - start))
        return d[start:], np.column_stack(cols)

    def ols(y: FloatArray, x: FloatArray) -> tuple[float, float, int]:
        """SSR, t-value of the last column and rank, as statsmodels' OLS (pinv)."""
        pinv = np.linalg.pinv(x, rcond=1e-15)
        params = pinv @ y
        resid = y - x @ params
        ssr = float(resid @ resid)
        sv = np.linalg.svd(x, compute_uv=False)
        rank = int(np.sum(sv > sv.max() * x.shape[1] * np.finfo(np.float64).eps))
        dof = x.shape[0] - rank
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = ssr / dof if dof > 0 else np.inf
            tlast = float(params[-1] / np.sqrt(scale * (pinv[-1] @ pinv[-1])))
        return ssr, tlast, rank

    lag = big
    if spec.autolag is not None:
        nrows = nd - big
        fits = [ols(*design(big, k, level_last=False)) for k in range(big + 1)]
        if spec.autolag == "t-stat":
            significant = [k for k in range(big + 1) if abs(fits[k][1]) >= _TSTAT_STOP]
            lag = max(significant, default=0)
        else:
            pen = 2.0 if spec.autolag == "aic" else float(np.log(nrows))
            with np.errstate(divide="ignore"):
                crit = [
                    nrows * np.log(f[0]) + nrows * (1 + np.log(2 * np.pi / nrows)) + pen * f[2]
                    for f in fits
                ]
            lag = 0
            for k in range(1, big + 1):
                if crit[k] < crit[lag]:
                    lag = k
    tstat = ols(*design(lag, lag, level_last=True))[1]
    return tstat, lag
