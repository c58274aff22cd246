"""The signal-level parameter sweep: the rule of :mod:`pairlib.core.strategy` folded over many
parameter combinations and pair paths at once (pure numpy).

A sweep evaluates a grid of thresholds (``entry``, ``exit``, ``stop``), z-score windows
(``lookback``) and loss limits over many pair paths. :func:`strategy.positions` folds one path
for one combination in a Python loop; here the loop runs once over the bars with every
combination and every path in one array, and each bar costs two numpy operations:

1. Before the loop, each bar's z of each path is placed among the grid's distinct thresholds
   (two ``searchsorted`` calls), and a per-combination table turns that place into the bar's
   *zone* for that combination (one gather for all bars): which side of each of ``-stop <
   -entry < -exit <= exit < entry < stop`` the z lies on, inclusive exactly as
   :func:`strategy.step` compares, or NaN.
2. The loop applies a transition table ``next[state, zone]`` (states: flat, flat locked out
   after a stop, long, short) to the whole ``(combinations, paths)`` array.

Loss limits (``risk.max_loss_multiple``) need the spread since entry, so combinations with one
take a slower loop with a few more operations per bar.

Conventions
-----------
- z: :func:`rolling_z` has the definition of :func:`strategy.zscore` (window includes the
  current bar, sample std, NaN for short, non-finite or flat windows). It uses running sums
  (O(n)) and recomputes exactly, with :func:`strategy.zscore` itself, every window whose fast
  value lies within its error bound of a threshold it is compared with (or whose variance is
  ill-conditioned), so every comparison, and therefore every position, equals the rule's.
- Positions: ``pos[t]`` is held after bar t's close and earns bar t+1's return (as
  :func:`strategy.positions`). A path can only *enter* where ``can_enter`` is True; outside
  it an open position is still managed (exits, stops, loss limit) until flat, which is how
  the tick manages a pair that has left the pair set.
- Returns: a path's per-bar return per unit of position is
  ``w_y * r_y - w_x * r_x`` with ``w_y = 1 / (1 + |beta|)`` and ``w_x = beta / (1 + |beta|)``
  (one unit of gross notional: long y, short ``beta`` x), simple close-to-close returns.
  Each change of position costs ``cost`` per unit of notional traded (fee plus slippage).
  A combination's return per bar is the weighted sum over paths (``weights``).
- Loss limit (signal level): an open path whose loss in spread units since entry,
  ``-pos * (spread_t - spread_entry)``, reaches ``multiple * (stop - |z_entry|) * std_entry``
  (the risk budget per unit of y notional, as :func:`pairlib.core.risk.size_pair` sizes it)
  on a bar it would hold is closed and locked out until ``|z| < entry``, as
  :func:`pairlib.core.portfolio.plan` does with dollar PnL.
- Metrics per combination: Sharpe (per-bar mean over sample std, times
  ``sqrt(bars_per_year)``), total and annual return and max drawdown of the compounded
  curve, as :func:`pairlib.core.metrics.performance` computes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pairlib.core.strategy import zscore

__all__ = [
    "PathArrays",
    "PathPanel",
    "SignalSweep",
    "combination_metrics",
    "evaluate_chunk",
    "fold_positions",
    "fold_returns",
    "rolling_z",
    "sweep_signals",
]

# States, premultiplied by 16 so that ``state + zone`` indexes the transition table directly.
_FLAT, _LOCKED, _LONG, _SHORT = 0, 16, 32, 48
_NAN_ZONE: Final = 7
_NO_ENTRY: Final = 8  # added to the zone where the path may not enter
_EPS: Final = float(np.finfo(np.float64).eps)
_ZERO_STD_REL: Final = 1e-12  # strategy.zscore's flat-window rule


def _transition_table() -> NDArray[np.int8]:
    """``next[state + zone]`` for the 4 states x 16 zones (zones 8-15: entries not allowed).

    Zones: 0 ``z <= -stop``, 1 ``-stop < z <= -entry``, 2 ``-entry < z < -exit``,
    3 ``-exit <= z <= exit``, 4 ``exit < z < entry``, 5 ``entry <= z < stop``, 6 ``z >= stop``,
    7 NaN. The rule is :func:`pairlib.core.strategy.step`'s.
    """
    table = np.zeros(64, dtype=np.int8)
    for zone in range(16):
        z, can_enter = zone % 8, zone < 8
        # flat: enter short in 5, long in 1; nothing else (NaN, beyond stop, inside entry)
        table[_FLAT + zone] = (_SHORT if z == 5 else _LONG if z == 1 else _FLAT) if can_enter \
            else _FLAT
        # locked out after a stop: released by |z| < entry (zones 2, 3, 4); NaN keeps it
        table[_LOCKED + zone] = _FLAT if z in (2, 3, 4) else _LOCKED
        # long the spread: stop at z <= -stop (0), exit at z >= -exit (3-6), else hold
        table[_LONG + zone] = _LOCKED if z == 0 else _FLAT if z in (3, 4, 5, 6) else _LONG
        # short the spread: stop at z >= stop (6), exit at z <= exit (0-3), else hold
        table[_SHORT + zone] = _LOCKED if z == 6 else _FLAT if z in (0, 1, 2, 3) else _SHORT
    return table


_NEXT: Final = _transition_table()
_POSITION: Final = np.zeros(64, dtype=np.int8)
_POSITION[_LONG], _POSITION[_SHORT] = 1, -1


def _thresholds(entry: ArrayLike, exit: ArrayLike, stop: ArrayLike) -> tuple[
        NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """The combinations' thresholds as 1-D float arrays, checked ``0 <= exit < entry < stop``."""
    e, x, s = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (entry, exit, stop))
    if not (e.ndim == x.ndim == s.ndim == 1 and e.shape == x.shape == s.shape):
        raise ValueError(f"entry, exit and stop must be 1-D and of one length, got shapes "
                         f"{e.shape}, {x.shape} and {s.shape}")
    bad = ~(np.isfinite(e) & np.isfinite(x) & np.isfinite(s) & (x >= 0) & (x < e) & (e < s))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"combination {i} (entry={e[i]}, exit={x[i]}, stop={s[i]}) is out of "
                         "order; allowed: finite 0 <= exit < entry < stop")
    return e, x, s


def _zone_table(entry: NDArray[np.float64], exit: NDArray[np.float64],
                stop: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int8]]:
    """The grid's sorted distinct thresholds ``vals`` and ``table[c, code]``: the zone of a z
    whose place among ``vals`` is ``code`` (see :func:`_codes`) for combination ``c``."""
    vals = np.unique(np.concatenate([-stop, -entry, -exit, exit, entry, stop]))
    k = len(vals)
    code = np.arange(2 * k + 2)
    r2 = code // 2  # number of thresholds < z
    r1 = r2 + code % 2  # number of thresholds <= z

    def at(v: NDArray[np.float64]) -> NDArray[np.int64]:
        return np.searchsorted(vals, v)[:, None]

    zone = ((r2 > at(-stop)).astype(np.int8) + (r2 > at(-entry)) + (r1 > at(-exit))
            + (r2 > at(exit)) + (r1 > at(entry)) + (r1 > at(stop))).astype(np.int8)
    zone[:, 2 * k + 1] = _NAN_ZONE
    return vals, zone


def _codes(z: NDArray[np.float64], vals: NDArray[np.float64]) -> NDArray[np.int16]:
    """The place of each z among the sorted thresholds: ``2 * #(vals < z) + [z in vals]``,
    ``2 * len(vals) + 1`` for NaN."""
    left = np.searchsorted(vals, z, side="left")
    right = np.searchsorted(vals, z, side="right")
    code = (2 * left + (right - left)).astype(np.int16)
    code[np.isnan(z)] = 2 * len(vals) + 1
    return code


def rolling_z(
    spreads: ArrayLike, lookback: int, exact_at: ArrayLike = (),
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Rolling z-score and std of many spreads at once, as :func:`strategy.zscore` defines them.

    Parameters
    ----------
    spreads : array_like of float, (paths, bars) or (bars,)
        Spreads, one row per path (NaN and inf allowed).
    lookback : int
        Window length, > 1 (includes the current bar).
    exact_at : array_like of float
        Thresholds the z will be compared with. A z whose fast value lies within its error
        bound of one of them is recomputed exactly (``strategy.zscore`` on that window), so
        comparisons with these thresholds agree with :func:`strategy.zscore` exactly.

    Returns
    -------
    (z, std) : two arrays shaped like ``spreads``
        ``z`` NaN where :func:`strategy.zscore` is NaN (short, non-finite or flat windows);
        ``std`` the window's sample std (``ddof=1``), NaN where ``z`` is.

    Notes
    -----
    Running sums of the values centred on each row's median give every window's mean and
    variance in O(n). The error of a window's variance is bounded by
    ``2 * eps * n * max|x - c|^2 / lookback`` (n the row's length), which sets each z's error
    bound; windows with an ill-conditioned variance (flat or nearly flat) are recomputed
    exactly as well.
    """
    x = np.asarray(spreads, dtype=np.float64)
    one = x.ndim == 1
    x = np.atleast_2d(x)
    if x.ndim != 2:
        raise ValueError(f"spreads must be (paths, bars) or (bars,), got shape {x.shape}")
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer) or lookback <= 1:
        raise ValueError(f"lookback must be an integer > 1, got {lookback!r}")
    L = int(lookback)
    p, n = x.shape
    z = np.full((p, n), np.nan)
    sd = np.full((p, n), np.nan)
    if n < L:
        return (z[0], sd[0]) if one else (z, sd)
    ok = np.isfinite(x)
    centre = np.zeros(p)
    has = ok.any(axis=1)
    if has.any():
        centre[has] = np.nanmedian(np.where(ok[has], x[has], np.nan), axis=1)
    c = np.where(ok, x - centre[:, None], 0.0)
    zero = np.zeros((p, 1))
    s1 = np.concatenate([zero, np.cumsum(c, axis=1)], axis=1)
    s2 = np.concatenate([zero, np.cumsum(c * c, axis=1)], axis=1)
    bad = np.concatenate([np.zeros((p, 1), np.int64), np.cumsum(~ok, axis=1)], axis=1)
    w1 = s1[:, L:] - s1[:, :-L]
    w2 = s2[:, L:] - s2[:, :-L]
    nbad = bad[:, L:] - bad[:, :-L]
    mean = w1 / L
    var = np.maximum(w2 - w1 * mean, 0.0) / (L - 1)
    last = c[:, L - 1:]
    big = np.max(np.abs(c), axis=1, keepdims=True) if n else zero
    var_err = 2.0 * _EPS * (n + L) * big * big / (L - 1) + _EPS * np.abs(w2) / (L - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(var)
        zz = (last - mean) / s
        rel = var_err / var  # relative error of the variance
        z_err = np.abs(zz) * rel + (_EPS * (n + L) * big + _EPS * np.abs(last)) / s
    finite_w = nbad == 0
    level = np.abs(mean + centre[:, None])
    shaky = finite_w & ~(rel < 1e-6) | finite_w & ~(s > 1e3 * _ZERO_STD_REL * level)
    thr = np.unique(np.asarray(exact_at, dtype=np.float64))
    if thr.size:
        i = np.searchsorted(thr, zz)
        lo = thr[np.maximum(i - 1, 0)]
        hi = thr[np.minimum(i, thr.size - 1)]
        near = np.minimum(np.abs(zz - lo), np.abs(zz - hi)) <= 8.0 * z_err + 1e-300
        shaky |= finite_w & near
    zz = np.where(finite_w, zz, np.nan)
    s = np.where(finite_w & np.isfinite(zz), s, np.nan)
    for r, t in zip(*np.nonzero(shaky), strict=True):
        window = x[r, t: t + L]
        zz[r, t] = zscore(window, L)[-1]
        s[r, t] = float(np.std(window, ddof=1)) if math.isfinite(zz[r, t]) else math.nan
    z[:, L - 1:] = zz
    sd[:, L - 1:] = s
    return (z[0], sd[0]) if one else (z, sd)


def _fold_states(zones: NDArray[np.int8]) -> NDArray[np.int8]:
    """States after each bar (premultiplied codes) from zones ``(bars, combos, paths)``."""
    out = np.empty_like(zones)
    state = np.zeros(zones.shape[1:], dtype=np.int8)
    for t in range(zones.shape[0]):
        np.take(_NEXT, state + zones[t], out=out[t])
        state = out[t]
    return out


def _fold_states_loss(
    zones: NDArray[np.int8], z: NDArray[np.float64], sd: NDArray[np.float64],
    spread: NDArray[np.float64], stop: NDArray[np.float64], multiple: NDArray[np.float64],
) -> NDArray[np.int8]:
    """As :func:`_fold_states`, with the loss limit. ``z`` and ``sd`` are ``(bars, combos,
    paths)`` or broadcastable; ``spread`` ``(bars, paths)``; ``stop``/``multiple`` per combo."""
    out = np.empty_like(zones)
    state = np.zeros(zones.shape[1:], dtype=np.int8)
    s_entry = np.zeros(zones.shape[1:])
    budget = np.full(zones.shape[1:], np.inf)
    m = multiple[:, None]
    st = stop[:, None]
    for t in range(zones.shape[0]):
        new = np.take(_NEXT, state + zones[t])
        held = (new == state) & (state >= _LONG)
        pos = np.where(state == _LONG, 1.0, -1.0)
        with np.errstate(invalid="ignore"):
            hit = held & (-pos * (spread[t] - s_entry) >= m * budget)
        new[hit] = _LOCKED
        entered = (state == _FLAT) & (new >= _LONG)
        if entered.any():
            zt, sdt = np.broadcast_to(z[t], new.shape), np.broadcast_to(sd[t], new.shape)
            sp = np.broadcast_to(spread[t], new.shape)
            s_entry = np.where(entered, sp, s_entry)
            budget = np.where(entered, (np.broadcast_to(st, new.shape) - np.abs(zt)) * sdt,
                              budget)
        out[t] = new
        state = new
    return out


def fold_positions(
    z: ArrayLike,
    entry: ArrayLike,
    exit: ArrayLike,
    stop: ArrayLike,
    can_enter: ArrayLike | None = None,
) -> NDArray[np.int8]:
    """Positions of every combination on every path, starting flat (the rule of
    :func:`strategy.positions`, vectorised).

    Parameters
    ----------
    z : array_like of float, (paths, bars) or (bars,)
        z-scores (NaN allowed), shared by all combinations.
    entry, exit, stop : array_like of float, (combos,) or scalars
        Thresholds per combination, ``0 <= exit < entry < stop``.
    can_enter : array_like of bool, shaped like ``z``, optional
        Where a flat path may enter (default everywhere).

    Returns
    -------
    numpy.ndarray of int8, (combos, paths, bars)
        ``out[c, p]`` equals ``strategy.positions(z[p], entry[c], exit[c], stop[c])`` when
        entries are allowed everywhere.
    """
    e, x, s = _thresholds(entry, exit, stop)
    zz = np.atleast_2d(np.asarray(z, dtype=np.float64))
    vals, table = _zone_table(e, x, s)
    zones = table[:, _codes(zz.T, vals)]  # (combos, bars, paths)
    zones = np.ascontiguousarray(zones.transpose(1, 0, 2))
    if can_enter is not None:
        ce = np.atleast_2d(np.asarray(can_enter, dtype=bool))
        zones += (_NO_ENTRY * ~ce.T)[:, None, :].astype(np.int8)
    return np.ascontiguousarray(_POSITION[_fold_states(zones)].transpose(1, 2, 0))


@dataclass(frozen=True)
class SignalSweep:
    """Per-bar returns and metrics of each combination of a signal-level sweep.

    Attributes
    ----------
    returns : ndarray (combos, bars)
        The weighted sum over paths of each bar's return after costs.
    trades : ndarray of int (combos,)
        Entries over all paths.
    exposure : ndarray (combos,)
        Mean over bars of the weighted share of paths holding a position.
    metrics : dict of str to ndarray (combos,)
        :func:`combination_metrics` of ``returns``.
    """

    returns: NDArray[np.float64]
    trades: NDArray[np.int64]
    exposure: NDArray[np.float64]
    metrics: dict[str, NDArray[np.float64]]


def sweep_signals(
    spreads: ArrayLike,
    path_returns: ArrayLike,
    lookback: ArrayLike,
    entry: ArrayLike,
    exit: ArrayLike,
    stop: ArrayLike,
    *,
    timeframe_ms: int,
    weights: ArrayLike | None = None,
    can_enter: ArrayLike | None = None,
    cost: float = 0.0,
    loss_multiple: ArrayLike | None = None,
    first_bar: int = 0,
) -> SignalSweep:
    """Fold the rule over every combination and path and measure each combination:
    :func:`fold_returns` (same parameters) and :func:`combination_metrics` of its returns
    (annualised with ``timeframe_ms``)."""
    returns, trades, exposure = fold_returns(
        spreads, path_returns, lookback, entry, exit, stop, weights=weights,
        can_enter=can_enter, cost=cost, loss_multiple=loss_multiple, first_bar=first_bar)
    return SignalSweep(returns=returns, trades=trades, exposure=exposure,
                       metrics=combination_metrics(returns, timeframe_ms))


def fold_returns(
    spreads: ArrayLike,
    path_returns: ArrayLike,
    lookback: ArrayLike,
    entry: ArrayLike,
    exit: ArrayLike,
    stop: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    can_enter: ArrayLike | None = None,
    cost: float = 0.0,
    loss_multiple: ArrayLike | None = None,
    first_bar: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """Fold the rule over every combination and path: each combination's returns per bar.

    Parameters
    ----------
    spreads : array_like of float, (paths, bars)
        Each path's spread, ``log y - beta log x - alpha``, from far enough back for the
        longest lookback.
    path_returns : array_like of float, (paths, bars)
        Each path's return over bar t per unit of long-spread position (see the module
        Notes); ``path_returns[:, t]`` is earned by the position held after bar t-1.
    lookback : array_like of int, (combos,)
        z window per combination.
    entry, exit, stop : array_like of float, (combos,)
        Thresholds per combination, ``0 <= exit < entry < stop``.
    weights : array_like of float, (paths,), optional
        Capital share of each path (default ``1 / paths``).
    can_enter : array_like of bool, (paths, bars), optional
        Where a flat path may enter (default from ``first_bar`` on).
    cost : float
        Cost per unit of notional traded (taker fee plus slippage, as fractions).
    loss_multiple : array_like of float, (combos,), optional
        ``risk.max_loss_multiple`` per combination; NaN or inf: no loss limit.
    first_bar : int
        The first bar traded; earlier bars only warm the z-scores up, and the returns,
        trades and metrics cover ``bars[first_bar:]``.

    Returns
    -------
    (returns, trades, exposure)
        ``returns`` (combos, bars traded): the weighted sum over paths of each bar's return
        after costs; ``trades`` (combos,): entries over all paths; ``exposure`` (combos,):
        the mean over bars of the weighted share of paths holding a position.
    """
    e, x, s = _thresholds(entry, exit, stop)
    lb = np.atleast_1d(np.asarray(lookback))
    if lb.shape != e.shape:
        raise ValueError(f"lookback must have one value per combination ({e.size}), got "
                         f"shape {lb.shape}")
    sp = np.atleast_2d(np.asarray(spreads, dtype=np.float64))
    rets = np.atleast_2d(np.asarray(path_returns, dtype=np.float64))
    if rets.shape != sp.shape:
        raise ValueError(f"path_returns {rets.shape} must be shaped like spreads {sp.shape}")
    n_paths, n_bars = sp.shape
    if not 0 <= first_bar < n_bars:
        raise ValueError(f"first_bar must be in [0, {n_bars}), got {first_bar}")
    w = (np.full(n_paths, 1.0 / n_paths) if weights is None
         else np.asarray(weights, dtype=np.float64))
    if can_enter is None:
        ce = np.zeros((n_paths, n_bars), dtype=bool)
        ce[:, first_bar:] = True
    else:
        ce = np.asarray(can_enter, dtype=bool)
    ce = ce.copy()
    ce[:, :first_bar] = False
    lm = (np.full(e.size, np.inf) if loss_multiple is None
          else np.asarray(loss_multiple, dtype=np.float64))
    lm = np.where(np.isfinite(lm), lm, np.inf)
    # Combinations without a loss limit first, each part sorted by lookback: every lookback's
    # columns are then one slice, and the plain ones fold in a single loop.
    limited = np.isfinite(lm)
    order = np.lexsort((lb, limited))
    e, x, s, lb, lm, limited = e[order], x[order], s[order], lb[order], lm[order], limited[order]
    vals, table = _zone_table(e, x, s)
    by_code = np.ascontiguousarray(table.T)  # (codes, combos)
    zones = np.empty((n_bars, e.size, n_paths), dtype=np.int8)
    zs: dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    cuts = np.flatnonzero((np.diff(lb) != 0) | (np.diff(limited) != 0)) + 1
    groups = list(zip(np.r_[0, cuts].tolist(), np.r_[cuts, e.size].tolist(), strict=True))
    for lo, hi in groups:
        L = int(lb[lo])
        if L not in zs:
            zs[L] = rolling_z(sp, L, exact_at=vals)
        codes = _codes(np.ascontiguousarray(zs[L][0].T), vals)
        zones[:, lo:hi, :] = np.take(by_code[:, lo:hi], codes, axis=0).transpose(0, 2, 1)
    zones += (_NO_ENTRY * ~ce.T).astype(np.int8)[:, None, :]
    states = np.empty_like(zones)
    n_free = int((~limited).sum())
    if n_free:
        states[:, :n_free, :] = _fold_states(np.ascontiguousarray(zones[:, :n_free, :]))
    for lo, hi in groups:
        if limited[lo]:
            z, sd = zs[int(lb[lo])]
            states[:, lo:hi, :] = _fold_states_loss(
                np.ascontiguousarray(zones[:, lo:hi, :]), z.T[:, None, :], sd.T[:, None, :],
                sp.T, s[lo:hi], lm[lo:hi])
    pos = _POSITION[states]  # (bars, combos, paths)
    del states, zones
    out = np.zeros((e.size, n_bars))
    trades = np.zeros(e.size, dtype=np.int64)
    exposure = np.zeros(e.size)
    rw = np.nan_to_num(rets, nan=0.0, posinf=0.0, neginf=0.0).T * w  # (bars, paths)
    step = 512
    padded = np.concatenate([np.zeros((1, *pos.shape[1:]), np.int8), pos])  # flat before
    for lo in range(first_bar, n_bars, step):
        hi = min(n_bars, lo + step)
        before = padded[lo:hi]  # held after the bar before
        now = padded[lo + 1:hi + 1]
        pnl = np.einsum("tcp,tp->ct", before, rw[lo:hi])
        turnover = np.einsum("tcp,p->ct", np.abs(now - before), w)
        out[:, lo:hi] = pnl - cost * turnover
        trades += ((now != 0) & (now != before)).sum(axis=(0, 2))
        exposure += np.einsum("tcp,p->c", np.abs(now), w)
    back = np.argsort(order, kind="stable")
    out, trades, exposure = out[back], trades[back], exposure[back]
    exposure /= max(1, n_bars - first_bar)
    return out[:, first_bar:], trades, exposure


def combination_metrics(returns: ArrayLike, timeframe_ms: int) -> dict[str, NDArray[np.float64]]:
    """Sharpe, total and annual return and max drawdown of each row of per-bar returns.

    The same definitions as :func:`pairlib.core.metrics.performance` on the compounded curve
    ``cumprod(1 + r)`` starting at 1: Sharpe is ``mean / std(ddof=1) * sqrt(bars_per_year)``
    (NaN for a zero std), max drawdown a negative fraction of the running peak.
    """
    from pairlib.core.metrics import bars_per_year  # scipy: not needed by fold_returns

    r = np.atleast_2d(np.asarray(returns, dtype=np.float64))
    ppy = bars_per_year(timeframe_ms)
    n = r.shape[1]
    curve = np.concatenate([np.ones((r.shape[0], 1)), np.cumprod(1.0 + r, axis=1)], axis=1)
    total = curve[:, -1] - 1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        annual = np.where(curve[:, -1] > 0, (1.0 + total) ** (ppy / max(n, 1)) - 1.0, -1.0)
        sd = r.std(axis=1, ddof=1) if n > 1 else np.full(r.shape[0], np.nan)
        sharpe = np.where(sd > 0, r.mean(axis=1) / sd * math.sqrt(ppy), np.nan)
        peak = np.maximum.accumulate(curve, axis=1)
        mdd = (curve / peak - 1.0).min(axis=1)
    return {"sharpe": sharpe, "total_return": total, "annual_return": annual,
            "max_drawdown": mdd}



@dataclass(frozen=True)
class PathArrays:
    """The paths of one pair-set history, as :func:`fold_returns` takes them (plain numpy, so
    a Dask worker unpickles it without importing pandas)."""

    spreads: NDArray[np.float64]
    returns: NDArray[np.float64]
    can_enter: NDArray[np.bool_]
    weights: NDArray[np.float64]
    first_bar: int


class PathPanel:
    """Every path set of a sweep by key, as one object (``Client.scatter`` ships it whole
    to each worker; a plain dict would be scattered key by key)."""

    def __init__(self, paths: Mapping[Any, PathArrays]) -> None:
        self.paths = dict(paths)


def evaluate_chunk(
    chunk: tuple[Any, list[int], list[tuple[int, float, float, float, float]]],
    panel: PathPanel,
    cost: float,
) -> tuple[list[int], NDArray[np.float64], NDArray[np.int64], NDArray[np.float64]]:
    """One task of a sweep: ``chunk = (paths key, ids, [(lookback, entry, exit, stop,
    loss multiple or NaN), ...])`` folded over ``panel.paths[key]`` with
    :func:`fold_returns`; returns ``(ids, returns, trades, exposure)``. A key with no path
    gives zeros. Imports only numpy and the core rule, so a Dask worker starts it fast."""
    key, ids, cells = chunk
    ps = panel.paths[key]
    if ps.spreads.shape[0] == 0:
        n, bars = len(cells), ps.spreads.shape[1] - ps.first_bar
        return ids, np.zeros((n, bars)), np.zeros(n, np.int64), np.zeros(n)
    lb, e, x, s, m = (list(v) for v in zip(*cells, strict=True))
    r, t, x_ = fold_returns(ps.spreads, ps.returns, lb, e, x, s, weights=ps.weights,
                            can_enter=ps.can_enter, cost=cost, loss_multiple=m,
                            first_bar=ps.first_bar)
    return ids, r, t, x_
