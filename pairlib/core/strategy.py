"""The trading rule: spread, rolling z-score and positions (pure; live tick and backtest).

One rule, two runtimes. :func:`step` is the whole rule for one bar: given the persisted
:class:`PairState` and the bar's z-score it returns a :class:`Decision` (new position, action,
a human-readable reason, and the state to persist). :func:`positions` and :func:`decisions`
fold :func:`step`'s transition over an array of z-scores, so the backtest's batch run and the
live tick's bar-by-bar run cannot disagree (a test replays one against the other).

Conventions
-----------
- ``spread_t = log(y_t) - beta * log(x_t) - alpha`` (natural logs; ``beta``, ``alpha`` from
  the pair set: OLS of log y on log x with a constant).
- ``z_t = (spread_t - mean) / std`` over the last ``lookback`` spreads *including* bar t,
  sample std (``ddof=1``). NaN before ``lookback`` values exist, when the window holds a
  non-finite value, or when the window's std is zero.
- Position ``+1`` is long the spread (long y, short ``beta`` x in notional), ``-1`` short
  the spread, ``0`` flat. Decisions are taken at each bar's close.
- Thresholds satisfy ``0 <= exit < entry < stop``; comparisons are inclusive at the
  threshold (``z == entry`` enters, ``z == exit`` exits, ``z == stop`` stops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from pairlib.checks import finite

__all__ = [
    "ACTIONS",
    "Action",
    "Decision",
    "PairState",
    "decisions",
    "positions",
    "latest_signal",
    "spread",
    "step",
    "zscore",
]

class Action(StrEnum):
    """What happens to a pair on a bar.

    The strategy (:func:`step`) decides ``enter_long``, ``enter_short``, ``exit`` (reverted),
    ``stop`` (stop loss), ``hold`` (position kept) and ``none`` (flat, stays flat). The
    portfolio rule adds ``flatten`` (leftover legs of an incomplete order) and
    ``exit_no_data`` (an open pair that could not be evaluated for too long) and
    ``loss_limit`` (an open pair losing ``risk.max_loss_multiple`` budgets); execution adds
    ``unwind`` (undoing the first leg of a failed entry). Members are strings (``StrEnum``):
    they compare equal to, and are stored as, their values.
    """

    ENTER_LONG = "enter_long"
    ENTER_SHORT = "enter_short"
    EXIT = "exit"
    STOP = "stop"
    HOLD = "hold"
    NONE = "none"
    FLATTEN = "flatten"
    EXIT_NO_DATA = "exit_no_data"
    LOSS_LIMIT = "loss_limit"
    UNWIND = "unwind"

    @property
    def is_entry(self) -> bool:
        """``enter_long`` or ``enter_short``."""
        return self in (Action.ENTER_LONG, Action.ENTER_SHORT)

    @property
    def closes(self) -> bool:
        """An action that closes both legs reduce-only."""
        return self in (Action.EXIT, Action.STOP, Action.FLATTEN, Action.EXIT_NO_DATA,
                        Action.LOSS_LIMIT)


ACTIONS: Final[tuple[Action, ...]] = (Action.ENTER_LONG, Action.ENTER_SHORT, Action.EXIT,
                                      Action.STOP, Action.HOLD, Action.NONE)
"""The actions :func:`step` can decide."""

# A window's std counts as zero (z = NaN) below this fraction of |rolling mean|: an all-equal
# window's computed std is rounding noise of order 1e-16 * |mean|, not a real dispersion.
_ZERO_STD_REL: Final = 1e-12
_CHUNK: Final = 1 << 22  # window elements per chunk (bounds memory)


# --------------------------------------------------------------------------------------
# State and decisions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairState:
    """What the rule remembers between bars for one pair (persisted by the live tick).

    Parameters
    ----------
    position : int
        ``-1`` short the spread, ``0`` flat, ``+1`` long the spread.
    locked_out : bool
        True after a stop loss until a bar with ``|z| < entry``; no entries meanwhile.
        Only meaningful when flat.

    Raises
    ------
    ValueError
        ``position`` not in {-1, 0, 1}, or ``locked_out`` with an open position.
    """

    position: int = 0
    locked_out: bool = False

    def __post_init__(self) -> None:
        if self.position not in (-1, 0, 1) or isinstance(self.position, bool):
            raise ValueError(f"position must be -1, 0 or 1, got {self.position!r}")
        if self.locked_out and self.position != 0:
            raise ValueError(
                f"locked_out=True requires a flat position (0), got position {self.position}"
            )


@dataclass(frozen=True)
class Decision:
    """The outcome of one bar.

    Attributes
    ----------
    position : int
        Target position after this bar's close (-1, 0, +1); equals ``state.position``.
    action : str
        One of :data:`ACTIONS`: ``enter_long``, ``enter_short``, ``exit`` (reverted),
        ``stop`` (stop loss), ``hold`` (position kept) or ``none`` (flat, stays flat).
    reason : str
        A short sentence with the numbers, e.g. ``"z=1.23 >= entry 1.00: short the spread"``.
    state : PairState
        The state to persist and pass to the next bar's :func:`step`.
    """

    position: int
    action: Action
    reason: str
    state: PairState


# Transition codes (internal). The action of each code is in _ACTION_OF.
_NONE, _NAN_FLAT, _LOCKED, _UNLOCK, _BEYOND_STOP = 0, 1, 2, 3, 4
_ENTER_LONG, _ENTER_SHORT, _EXIT, _STOP, _HOLD, _NAN_HOLD = 5, 6, 7, 8, 9, 10
_ACTION_OF: Final[dict[int, Action]] = {
    _NONE: Action.NONE,
    _NAN_FLAT: Action.NONE,
    _LOCKED: Action.NONE,
    _UNLOCK: Action.NONE,
    _BEYOND_STOP: Action.NONE,
    _ENTER_LONG: Action.ENTER_LONG,
    _ENTER_SHORT: Action.ENTER_SHORT,
    _EXIT: Action.EXIT,
    _STOP: Action.STOP,
    _HOLD: Action.HOLD,
    _NAN_HOLD: Action.HOLD,
}


def _transition(
    pos: int, locked: bool, z: float, entry: float, exit: float, stop: float
) -> tuple[int, bool, int]:
    """The rule for one bar: ``(position, locked_out, code)`` after the bar's close.

    The single source of truth behind :func:`step`, :func:`positions` and :func:`decisions`.
    Exactly one action per bar: an exit or stop never enters on the same bar.
    """
    if pos == 0:
        if z != z:  # NaN: never enter; a lockout stays
            return 0, locked, _NAN_FLAT
        if locked:
            if abs(z) < entry:
                return 0, False, _UNLOCK
            return 0, True, _LOCKED
        if entry <= z < stop:
            return -1, False, _ENTER_SHORT
        if -stop < z <= -entry:
            return 1, False, _ENTER_LONG
        if abs(z) >= stop:
            return 0, False, _BEYOND_STOP
        return 0, False, _NONE
    if z != z:  # NaN: hold the open position
        return pos, False, _NAN_HOLD
    if pos < 0:  # short the spread: profits as z falls
        if z >= stop:
            return 0, True, _STOP
        if z <= exit:
            return 0, False, _EXIT
        return pos, False, _HOLD
    if z <= -stop:  # long the spread: profits as z rises
        return 0, True, _STOP
    if z >= -exit:
        return 0, False, _EXIT
    return pos, False, _HOLD


def _num(value: float, *against: float) -> str:
    """Format ``value`` with 2 decimals, more if needed to tell it from a threshold."""
    digits = 2
    while digits < 10 and any(
        o != value and f"{value:.{digits}f}" == f"{o:.{digits}f}" for o in against
    ):
        digits += 1
    return f"{value:.{digits}f}"


def _reason(code: int, prev: PairState, z: float, entry: float, exit: float, stop: float) -> str:
    """Human sentence for a transition ``code`` taken from state ``prev`` at ``z``."""
    pos = prev.position
    side = "long" if pos > 0 else "short"
    if code == _NAN_FLAT:
        locked = " (still locked out after a stop)" if prev.locked_out else ""
        return "z is NaN: no entry" + locked
    if code == _NAN_HOLD:
        return f"z is NaN: hold {side} spread"
    if code == _ENTER_SHORT:
        return f"z={_num(z, entry)} >= entry {entry:.2f}: short the spread"
    if code == _ENTER_LONG:
        return f"z={_num(z, -entry)} <= -entry {-entry:.2f}: long the spread"
    if code == _LOCKED:
        return f"locked out after stop: |z|={_num(abs(z), entry)} not yet < entry {entry:.2f}"
    if code == _UNLOCK:
        return f"|z|={_num(abs(z), entry)} < entry {entry:.2f}: lockout released, flat"
    if code == _BEYOND_STOP:
        return f"|z|={_num(abs(z), stop)} >= stop {stop:.2f}: beyond stop, no entry"
    if code == _NONE:
        return f"|z|={_num(abs(z), entry)} < entry {entry:.2f}: stay flat"
    if code == _EXIT:
        if pos < 0:
            return f"z={_num(z, exit)} <= exit {exit:.2f}: short spread reverted, exit"
        return f"z={_num(z, -exit)} >= -exit {-exit:.2f}: long spread reverted, exit"
    if code == _STOP:
        lock = f"; locked out until |z| < entry {entry:.2f}"
        if pos < 0:
            return f"z={_num(z, stop)} >= stop {stop:.2f}: stop loss on short spread" + lock
        return f"z={_num(z, -stop)} <= -stop {-stop:.2f}: stop loss on long spread" + lock
    # _HOLD
    if pos < 0:
        return (
            f"z={_num(z, exit, stop)} between exit {exit:.2f} and stop {stop:.2f}: "
            "hold short spread"
        )
    return (
        f"z={_num(z, -exit, -stop)} between -stop {-stop:.2f} and -exit {-exit:.2f}: "
        "hold long spread"
    )


def _check_thresholds(entry: float, exit: float, stop: float) -> tuple[float, float, float]:
    """Validate ``0 <= exit < entry < stop`` (all finite); return them as floats."""
    e, x, s = finite("entry", entry), finite("exit", exit), finite("stop", stop)
    allowed = "allowed: 0 <= exit < entry < stop"
    if x < 0:
        raise ValueError(f"exit ({x}) must be >= 0; {allowed}")
    if x >= e:
        raise ValueError(f"exit ({x}) must be less than entry ({e}); {allowed}")
    if s <= e:
        raise ValueError(f"stop ({s}) must be greater than entry ({e}); {allowed}")
    return e, x, s


def step(state: PairState, z: float, entry: float, exit: float, stop: float) -> Decision:
    """Apply the rule to one bar from the persisted state.

    Parameters
    ----------
    state : PairState
        The state after the previous bar (``PairState()`` for a new pair).
    z : float
        This bar's z-score (NaN allowed: no entry, an open position is held).
    entry, exit, stop : float
        Thresholds, ``0 <= exit < entry < stop``.

    Returns
    -------
    Decision
        New position, action, reason and the state to persist.

    Raises
    ------
    ValueError
        Thresholds out of order or not finite.

    Notes
    -----
    The rule, decided at the bar's close (one action per bar):

    - flat: ``entry <= z < stop`` -> short the spread (-1); ``-stop < z <= -entry`` -> long
      the spread (+1);
    - short exits when ``z <= exit`` (reverted) or ``z >= stop`` (stop loss); long exits
      when ``z >= -exit`` or ``z <= -stop``;
    - no entry on the bar of an exit or stop, even if z is beyond the other side's entry;
    - after a stop loss the pair stays out (``locked_out``) until a bar with ``|z| < entry``;
    - NaN z: no entry, an open position is held, a lockout persists.

    Examples
    --------
    >>> d = step(PairState(), 1.23, entry=1.0, exit=0.5, stop=3.5)
    >>> d.position, d.action, d.reason
    (-1, 'enter_short', 'z=1.23 >= entry 1.00: short the spread')
    """
    e, x, s = _check_thresholds(entry, exit, stop)
    zf = float(z)
    pos, locked, code = _transition(state.position, state.locked_out, zf, e, x, s)
    return Decision(
        position=pos,
        action=_ACTION_OF[code],
        reason=_reason(code, state, zf, e, x, s),
        state=PairState(position=pos, locked_out=locked),
    )


def _as_1d_float(values: ArrayLike, name: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def positions(
    z: ArrayLike, entry: float = 1.0, exit: float = 0.5, stop: float = 3.5
) -> NDArray[np.int8]:
    """Positions from a z-score path, starting flat (the batch fold of :func:`step`).

    Parameters
    ----------
    z : array_like of float, 1-D
        z-scores, one per bar (NaN allowed).
    entry, exit, stop : float
        Thresholds, ``0 <= exit < entry < stop``.

    Returns
    -------
    numpy.ndarray of int8
        Position held after each bar's close: -1, 0 or +1. ``out[t]`` is decided with
        ``z[t]`` at bar t's close; a backtest earns ``out[t]`` over bar t+1.

    Raises
    ------
    ValueError
        Thresholds out of order, or ``z`` not 1-D.

    Notes
    -----
    Same rule as :func:`step` from ``PairState()``; O(n), a plain loop over Python floats
    (about 0.15 s per million bars).
    """
    e, x, s = _check_thresholds(entry, exit, stop)
    zs = _as_1d_float(z, "z").tolist()
    out: list[int] = []
    append = out.append
    pos, locked = 0, False
    for zi in zs:
        pos, locked, _ = _transition(pos, locked, zi, e, x, s)
        append(pos)
    return np.array(out, dtype=np.int8)


def decisions(
    z: ArrayLike,
    entry: float = 1.0,
    exit: float = 0.5,
    stop: float = 3.5,
    state: PairState = PairState(),  # noqa: B008 - frozen, immutable default
) -> list[Decision]:
    """Bar-by-bar decisions from a persisted state (what the live tick runs).

    Parameters
    ----------
    z : array_like of float, 1-D
        z-scores of the bars not yet processed, oldest first.
    entry, exit, stop : float
        Thresholds, ``0 <= exit < entry < stop``.
    state : PairState
        State after the bar before ``z[0]`` (default: a new, flat pair).

    Returns
    -------
    list of Decision
        One per bar; ``result[-1].state`` is the state to persist.

    Notes
    -----
    ``[d.position for d in decisions(z)]`` equals ``positions(z)``.
    """
    e, x, s = _check_thresholds(entry, exit, stop)
    out: list[Decision] = []
    for zi in _as_1d_float(z, "z").tolist():
        d = step(state, zi, e, x, s)
        out.append(d)
        state = d.state
    return out


# --------------------------------------------------------------------------------------
# Spread and z-score
# --------------------------------------------------------------------------------------




def spread(log_y: ArrayLike, log_x: ArrayLike, beta: float, alpha: float) -> NDArray[np.float64]:
    """The pair's spread in log units.

    Parameters
    ----------
    log_y, log_x : array_like of float, 1-D, same length
        Natural logs of the y and x close prices, aligned bar by bar.
    beta, alpha : float
        Hedge ratio and intercept from the pair set (finite).

    Returns
    -------
    numpy.ndarray of float64
        ``log_y - beta * log_x - alpha``; NaN where either input is NaN.

    Raises
    ------
    ValueError
        Inputs not 1-D or of different lengths; ``beta`` or ``alpha`` not finite.
    """
    y = _as_1d_float(log_y, "log_y")
    x = _as_1d_float(log_x, "log_x")
    if y.shape != x.shape:
        raise ValueError(f"log_y and log_x must have the same length, got {y.size} and {x.size}")
    b = finite("beta", beta)
    a = finite("alpha", alpha)
    return y - b * x - a


def latest_signal(spread: ArrayLike, lookback: int) -> tuple[float, float]:
    """The z-score of the last bar and the spread's std over the last ``lookback`` bars.

    The one computation both runtimes use for the bar they act on (the live tick and the
    backtest), so their signals agree to the last bit: ``zscore(window, lookback)[-1]`` and
    ``std(window, ddof=1)`` with ``window`` the last ``lookback`` values of ``spread``. NaN for
    both when fewer than ``lookback`` values are given.
    """
    s = _as_1d_float(spread, "spread")
    if s.size < lookback:
        return math.nan, math.nan
    window = s[-lookback:]
    return float(zscore(window, lookback)[-1]), float(np.std(window, ddof=1))


def zscore(spread: ArrayLike, lookback: int) -> NDArray[np.float64]:
    """Rolling z-score of the spread over the last ``lookback`` bars including the current.

    Parameters
    ----------
    spread : array_like of float, 1-D
        The spread (see :func:`spread`).
    lookback : int
        Window length, > 1.

    Returns
    -------
    numpy.ndarray of float64
        ``(s_t - mean(w_t)) / std(w_t, ddof=1)`` with ``w_t = s[t-lookback+1 : t+1]``.
        NaN for the first ``lookback - 1`` bars, for windows holding a NaN or inf, and where
        the std is zero.

    Raises
    ------
    ValueError
        ``lookback`` not an integer > 1, or ``spread`` not 1-D.

    Notes
    -----
    A std counts as zero when it is at most ``1e-12 * |window mean|`` (an all-equal window's
    computed std is rounding noise, not dispersion), so a flat spread never enters.

    Each window is computed by the two-pass formula ``np.std`` uses, on values shifted by the
    window's last value (exact for nearby values, so a large common level costs no digits).
    Windows are processed in chunks over a strided view: O(n * lookback) time, bounded memory.
    """
    x = _as_1d_float(spread, "spread")
    if isinstance(lookback, bool) or not isinstance(lookback, int | np.integer):
        raise ValueError(f"lookback must be an integer > 1, got {lookback!r}")
    L = int(lookback)
    if L <= 1:
        raise ValueError(f"lookback must be an integer > 1, got {lookback!r}")
    out = np.full(x.size, np.nan)
    if x.size < L:
        return out
    windows = sliding_window_view(x, L)
    per = max(1, _CHUNK // L)
    for lo in range(0, len(windows), per):
        w = windows[lo : lo + per]
        ref = w[:, -1:]
        with np.errstate(divide="ignore", invalid="ignore"):  # NaN/inf windows -> NaN
            shifted = w - ref
            mu = shifted.mean(axis=1)
            dev = shifted - mu[:, None]
            sd = np.sqrt((dev * dev).sum(axis=1) / (L - 1))
            z = -mu / sd  # the last value's deviation from the mean: 0 - mu
        z[~(sd > _ZERO_STD_REL * np.abs(ref[:, 0] + mu))] = np.nan
        z[~np.isfinite(w).all(axis=1)] = np.nan
        out[lo + L - 1 : lo + L - 1 + len(w)] = z
    return out
