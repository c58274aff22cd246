"""Position sizing, portfolio caps, slot allocation and the kill switch (pure).

Conventions
-----------
- Money is in the quote currency (USDT). ``equity`` is the account's current equity.
- A leg's notional is ``amount * contract_size * price``; amounts are non-negative numbers
  of contracts in the market's units. The *direction* of each leg comes from the strategy's
  position: long the spread (+1) buys y and sells x, short the spread (-1) the reverse.
- The spread is in log units: ``spread = log y - beta log x - alpha`` with ``beta > 0``.
- Caps: gross leverage counts every open leg's notional plus the new pair's two legs;
  per-leg notional applies to each leg separately.

Nothing here reads files, the clock or the network, except that :func:`kill_switch_active`
checks a path through an injected ``exists`` callable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

from pairlib.checks import finite
from pairlib.config import RiskParams

__all__ = [
    "CAP_GROSS",
    "CAP_LEG",
    "Candidate",
    "MarketRules",
    "Sizing",
    "allocate_slots",
    "kill_switch_active",
    "round_amount",
    "size_pair",
]

CAP_GROSS: Final = "max_gross_leverage"
"""``Sizing.capped_by`` when the gross leverage cap bound (named after the RiskParams key)."""
CAP_LEG: Final = "max_leg_notional"
"""``Sizing.capped_by`` when the per-leg notional cap bound."""

# Quotients within this many steps below an integer count as that integer (0.3 / 0.1).
_STEP_TOL: Final = 1e-9




def _positive(name: str, value: float) -> float:
    f = finite(name, value)
    if f <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return f


def _non_negative(name: str, value: float) -> float:
    f = finite(name, value)
    if f < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return f


@dataclass(frozen=True)
class MarketRules:
    """A market's order-size rules (from the exchange's market description).

    Parameters
    ----------
    symbol : str
        Unified symbol, e.g. ``"BTC/USDT:USDT"``.
    amount_step : float
        Amount precision: orders are whole multiples of this (> 0).
    min_amount : float
        Smallest order amount (>= 0).
    min_notional : float
        Smallest order notional in quote currency (>= 0).
    contract_size : float
        Base units per contract (> 0; 1 for Binance USDⓈ-M linear perpetuals).

    Raises
    ------
    ValueError
        Any field out of range or not finite, or an empty symbol.
    """

    symbol: str
    amount_step: float
    min_amount: float
    min_notional: float
    contract_size: float = 1.0

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must be a non-empty string")
        _positive(f"{self.symbol}: amount_step", self.amount_step)
        _non_negative(f"{self.symbol}: min_amount", self.min_amount)
        _non_negative(f"{self.symbol}: min_notional", self.min_notional)
        _positive(f"{self.symbol}: contract_size", self.contract_size)


@dataclass(frozen=True)
class Sizing:
    """The sized legs of one new pair position.

    Attributes
    ----------
    amount_y, amount_x : float
        Order amounts (contracts, >= 0) for the y and x legs, already rounded to each
        market's step. Both 0 when ``skipped``.
    notional_y, notional_x : float
        ``amount * contract_size * price`` of each leg (quote currency).
    risk_amount : float
        Loss if the spread moves from the entry z to the stop z with these amounts:
        ``notional_y * |stop_z - z_entry| * spread_std``. At most ``risk_per_trade * equity``.
    capped_by : str or None
        :data:`CAP_GROSS` or :data:`CAP_LEG` when a cap shrank the position below the risk
        target, else None.
    skipped : str or None
        Why no order should be placed (a leg rounds to zero, below a minimum, no room under
        the gross cap), or None when the pair can be traded.
    """

    amount_y: float
    amount_x: float
    notional_y: float
    notional_x: float
    risk_amount: float
    capped_by: str | None
    skipped: str | None

    @property
    def gross_notional(self) -> float:
        """``notional_y + notional_x``."""
        return self.notional_y + self.notional_x


def _step_decimals(step: float) -> int:
    """Decimal places of ``step`` as written (0.001 -> 3, 0.5 -> 1, 10 -> 0)."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


def round_amount(amount: float, rules: MarketRules) -> float:
    """Floor an order amount to the market's amount step.

    Parameters
    ----------
    amount : float
        Desired amount in contracts (>= 0, finite).
    rules : MarketRules
        The market's step.

    Returns
    -------
    float
        The largest whole multiple of ``rules.amount_step`` not above ``amount``, written
        with the step's decimals (``round_amount(0.3, step 0.1) == 0.3``, not 0.2 or
        0.30000000000000004). Minimums are not applied here (see :func:`size_pair`).

    Raises
    ------
    ValueError
        ``amount`` negative or not finite.

    Notes
    -----
    Flooring never rounds risk up. A quotient ``amount / step`` within 1e-9 steps below an
    integer (float error, as in ``0.3 / 0.1 == 2.9999999999999996``) counts as that
    integer, so a result may exceed ``amount`` by at most ~1e-9 of a step.
    """
    a = _non_negative("amount", amount)
    step = rules.amount_step
    q = a / step
    k = math.floor(q + max(_STEP_TOL, 4.0 * q * 2.0**-52))
    if k <= 0:
        return 0.0
    return round(k * step, _step_decimals(step))


def _skip(reason: str, capped_by: str | None) -> Sizing:
    return Sizing(0.0, 0.0, 0.0, 0.0, 0.0, capped_by=capped_by, skipped=reason)


def _leg(
    label: str, target_notional: float, price: float, rules: MarketRules
) -> tuple[float, float, str | None]:
    """Round one leg: ``(amount, notional, skip_reason)``."""
    unit = price * rules.contract_size
    wanted = target_notional / unit
    amount = round_amount(wanted, rules)
    notional = amount * unit
    where = f"{label} leg {rules.symbol}"
    why = None
    if amount <= 0.0:
        why = f"{where}: {wanted:.6g} contracts rounds to 0 (step {rules.amount_step:g})"
    elif amount < rules.min_amount:
        why = f"{where}: amount {amount:g} below the market minimum {rules.min_amount:g}"
    elif notional < rules.min_notional:
        why = f"{where}: notional {notional:.2f} below the market minimum {rules.min_notional:.2f}"
    if why is not None:
        return 0.0, 0.0, why
    return amount, notional, None


def size_pair(
    equity: float,
    z_entry: float,
    stop_z: float,
    spread_std: float,
    beta: float,
    price_y: float,
    price_x: float,
    rules_y: MarketRules,
    rules_x: MarketRules,
    risk: RiskParams,
    open_gross_notional: float = 0.0,
) -> Sizing:
    """Size a new pair position so that being stopped out loses ``risk_per_trade`` of equity.

    Parameters
    ----------
    equity : float
        Current account equity (> 0).
    z_entry : float
        z-score at entry (non-zero).
    stop_z : float
        Stop z on the same side, further out: ``+stop`` for a short-spread entry at
        ``z_entry > 0``, ``-stop`` for a long-spread entry at ``z_entry < 0``.
    spread_std : float
        The spread's rolling std at entry, in log units (> 0).
    beta : float
        Hedge ratio (> 0): the x leg's notional is ``beta`` times the y leg's.
    price_y, price_x : float
        Current prices (> 0).
    rules_y, rules_x : MarketRules
        Amount step and minimums of each leg's market.
    risk : RiskParams
        ``risk_per_trade``, ``max_gross_leverage``, ``max_leg_notional``.
    open_gross_notional : float
        Gross notional of legs already open (>= 0), counted against the leverage cap.

    Returns
    -------
    Sizing
        Rounded amounts and notionals, the money at risk, which cap bound (if any), and a
        skip reason when the pair should not be traded.

    Raises
    ------
    ValueError
        Non-positive or non-finite equity, std, beta or price; negative or non-finite open
        gross; ``stop_z`` not beyond ``z_entry`` on the same side.

    Notes
    -----
    With the spread in log units, a long-spread position holding ``N_y`` of y and short
    ``N_x = beta * N_y`` of x (notional) has PnL ``N_y * dlog y - N_x * dlog x =
    N_y * d(spread)`` to first order; likewise, with opposite sign, for a short spread. A move
    from the entry z to the stop z changes the spread by ``|stop_z - z_entry| * spread_std``
    (std held fixed), so the loss at the stop is ``N_y * |stop_z - z_entry| * spread_std``
    and the risk target is::

        N_y = risk_per_trade * equity / (|stop_z - z_entry| * spread_std),  N_x = beta * N_y

    Caps scale both legs down together, keeping ``N_x = beta * N_y``:

    - gross leverage: ``open_gross_notional + N_y * (1 + beta) <= max_gross_leverage * equity``
    - per leg: ``N_y <= max_leg_notional`` and ``beta * N_y <= max_leg_notional``.

    ``capped_by`` names the tightest binding cap. Amounts are floored to each market's step:
    y first, then x is sized to ``beta`` times the *rounded* y notional (the best hedge of
    what is actually bought) and floored. Rounding only ever shrinks legs, so the loss at
    the stop stays at most the target and caps stay satisfied (to ~1e-9 relative float
    tolerance, see :func:`round_amount`). A leg that rounds to zero or falls below the
    market's minimum amount or notional skips the pair, with the reason.
    """
    eq = _positive("equity", equity)
    ze = finite("z_entry", z_entry)
    zs = finite("stop_z", stop_z)
    if ze == 0.0 or ze * zs <= 0.0 or abs(zs) <= abs(ze):
        raise ValueError(
            f"stop_z ({stop_z!r}) must lie beyond z_entry ({z_entry!r}) on the same side of "
            "zero (e.g. z_entry=1.2, stop_z=3.5 or z_entry=-1.2, stop_z=-3.5)"
        )
    std = _positive("spread_std", spread_std)
    b = _positive("beta", beta)
    py = _positive("price_y", price_y)
    px = _positive("price_x", price_x)
    open_gross = _non_negative("open_gross_notional", open_gross_notional)

    budget = risk.risk_per_trade * eq
    move = abs(zs - ze) * std  # spread move (log units) from entry to stop
    target_y = budget / move

    room = risk.max_gross_leverage * eq - open_gross
    if room <= 0.0:
        return _skip(
            f"gross leverage cap reached: open gross {open_gross:.2f} >= "
            f"{risk.max_gross_leverage:g}x equity {eq:.2f}",
            CAP_GROSS,
        )
    caps = (
        (room / (1.0 + b), CAP_GROSS),
        (risk.max_leg_notional / max(1.0, b), CAP_LEG),
    )
    n_y, capped_by = target_y, None
    for limit, name in caps:
        if limit < n_y:
            n_y, capped_by = limit, name

    amount_y, notional_y, why = _leg("y", n_y, py, rules_y)
    if why is not None:
        return _skip(why, capped_by)
    amount_x, notional_x, why = _leg("x", b * notional_y, px, rules_x)
    if why is not None:
        return _skip(why, capped_by)
    return Sizing(
        amount_y=amount_y,
        amount_x=amount_x,
        notional_y=notional_y,
        notional_x=notional_x,
        risk_amount=notional_y * move,
        capped_by=capped_by,
        skipped=None,
    )


@dataclass(frozen=True)
class Candidate:
    """A pair whose strategy signals a new entry this tick.

    Attributes
    ----------
    pair_id : str
        The pair's id in the pair set.
    z : float
        The entry z-score (ranking key: larger ``|z|`` first).
    symbols : tuple of str
        ``(y_symbol, x_symbol)``.
    """

    pair_id: str
    z: float
    symbols: tuple[str, str]


def allocate_slots(
    candidates: Sequence[Candidate],
    open_pairs: int,
    max_positions: int,
    blocked_symbols: Collection[str] = (),
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Choose which signalling pairs may open, by largest ``|z|``, within the free slots.

    Parameters
    ----------
    candidates : sequence of Candidate
        Pairs signalling an entry this tick.
    open_pairs : int
        Pairs already open (>= 0).
    max_positions : int
        Maximum open pairs (>= 1), ``RiskParams.max_positions``.
    blocked_symbols : collection of str
        Symbols that must not be traded: legs of open pairs, or symbols whose exchange
        position does not match the store.

    Returns
    -------
    chosen : list of Candidate
        In order of decreasing ``|z|``; no symbol appears in two chosen pairs.
    rejected : list of (Candidate, str)
        Every other candidate with the reason, in ranking order.

    Raises
    ------
    ValueError
        ``open_pairs`` negative or ``max_positions`` < 1.

    Notes
    -----
    Ranking: ``|z|`` descending, ties by ``pair_id`` then ``symbols`` (deterministic,
    independent of input order). Candidates are taken greedily; checks in order: non-finite
    z, duplicate pair id, same symbol on both legs, blocked symbol, symbol already used by
    a chosen pair, no free slot.
    """
    if isinstance(open_pairs, bool) or not isinstance(open_pairs, int) or open_pairs < 0:
        raise ValueError(f"open_pairs must be an integer >= 0, got {open_pairs!r}")
    if isinstance(max_positions, bool) or not isinstance(max_positions, int) or max_positions < 1:
        raise ValueError(f"max_positions must be an integer >= 1, got {max_positions!r}")
    blocked = set(blocked_symbols)

    def key(c: Candidate) -> tuple[float, str, tuple[str, str]]:
        mag = abs(c.z) if math.isfinite(c.z) else -1.0
        return (-mag, c.pair_id, c.symbols)

    chosen: list[Candidate] = []
    rejected: list[tuple[Candidate, str]] = []
    used: dict[str, str] = {}  # symbol -> chosen pair id
    seen: set[str] = set()
    for c in sorted(candidates, key=key):
        reason = None
        if not math.isfinite(c.z):
            reason = f"z is not finite ({c.z})"
        elif c.pair_id in seen:
            reason = f"duplicate candidate for pair {c.pair_id}"
        elif c.symbols[0] == c.symbols[1]:
            reason = f"same symbol {c.symbols[0]} on both legs"
        else:
            for s in c.symbols:
                if s in blocked:
                    reason = f"symbol {s} already in an open pair or mismatched"
                    break
                if s in used:
                    reason = f"symbol {s} already used by chosen pair {used[s]}"
                    break
        if reason is None and open_pairs + len(chosen) >= max_positions:
            reason = f"no free slot ({open_pairs + len(chosen)}/{max_positions} open)"
        seen.add(c.pair_id)
        if reason is not None:
            rejected.append((c, reason))
            continue
        chosen.append(c)
        for s in c.symbols:
            used[s] = c.pair_id
    return chosen, rejected


def kill_switch_active(
    risk: RiskParams, exists: Callable[[Path], bool] = Path.exists
) -> tuple[bool, str]:
    """Whether the kill switch is on; if so every tick is exits-only (no new entries).

    Parameters
    ----------
    risk : RiskParams
        ``kill_switch`` (flag) and ``kill_switch_file`` (a path, or None for no file).
    exists : callable
        ``exists(path) -> bool``; injected so tests (and replays) need no file system.

    Returns
    -------
    active : bool
    reason : str
        Which switch is on, or that both are off.

    Notes
    -----
    Either switch suffices; the params flag is reported first. Exits and stops still run
    while the switch is on.
    """
    if risk.kill_switch:
        return True, "kill switch on: risk.kill_switch is true in params; exits only"
    path = risk.kill_switch_file
    if path is not None and exists(Path(path)):
        return True, f"kill switch on: file {path} exists; exits only"
    where = f" (no file at {path})" if path is not None else ""
    return False, "kill switch off" + where
