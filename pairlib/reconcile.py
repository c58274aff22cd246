"""Reconciliation of the store's book with the venue, and the book's realized PnL (pure).

The rule
--------
The store's expected net position per symbol is the sum, over every pair in ``pair_state``,
of that pair's signed leg amounts on the symbol (open pairs and residual legs alike). The
venue's net position is ``PositionInfo.contracts``. A symbol mismatches when the two differ
by more than half the market's amount step (or ``1e-9`` without a known step), or when it
has an open order that is not one of ours (ours are market orders that never rest; the tick
cancels and records any that do). A mismatched symbol takes no new entry until the mismatch
is gone; exits on it still run (they are reduce-only, so they can only shrink exposure).

Nothing here talks to the venue or the store: functions take frames and records.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

__all__ = [
    "MISMATCH_COLUMNS",
    "Mismatch",
    "expected_positions",
    "mismatch_frame",
    "realized_pnl",
    "reconcile",
]

MISMATCH_COLUMNS = ("symbol", "kind", "expected", "actual", "difference", "detail")


@dataclass(frozen=True)
class Mismatch:
    """One symbol where the store and the venue disagree.

    ``kind`` is ``"position"`` (net amounts differ) or ``"open_order"`` (an order the store
    does not know rests on the symbol).
    """

    symbol: str
    kind: str
    expected: float
    actual: float
    detail: str

    @property
    def difference(self) -> float:
        """``actual - expected`` (contracts)."""
        return self.actual - self.expected


def expected_positions(pair_states: pd.DataFrame) -> dict[str, float]:
    """Net signed amount per symbol the store expects at the venue.

    Parameters
    ----------
    pair_states : DataFrame
        ``pair_state`` rows (columns ``y``, ``x``, ``amount_y``, ``amount_x``).

    Returns
    -------
    dict
        Symbol -> sum of the signed leg amounts on it (symbols with a zero sum included
        when some pair holds them, so a venue position there is caught).
    """
    out: dict[str, float] = {}
    if pair_states.empty:
        return out
    for row in pair_states[["y", "x", "amount_y", "amount_x"]].itertuples(index=False):
        for sym, amt in ((row.y, row.amount_y), (row.x, row.amount_x)):
            a = float(amt or 0.0)
            if a != 0.0 or sym not in out:
                out[str(sym)] = out.get(str(sym), 0.0) + a
    return {s: round(v, 12) for s, v in out.items()}


def reconcile(
    expected: Mapping[str, float],
    positions: Iterable[Any],
    foreign_orders: Iterable[Any] = (),
    steps: Mapping[str, float] | None = None,
) -> list[Mismatch]:
    """Compare the store's expected net positions with the venue's.

    Parameters
    ----------
    expected : mapping
        Symbol -> expected signed amount (:func:`expected_positions`).
    positions : iterable of PositionInfo
        The venue's open positions (``symbol``, signed ``contracts``).
    foreign_orders : iterable of OrderResult
        Open orders at the venue that are not ours (any such order is a mismatch).
    steps : mapping, optional
        Symbol -> amount step; differences within half a step are rounding, not mismatch.

    Returns
    -------
    list of Mismatch
        Sorted by symbol, position mismatches before open-order ones.
    """
    actual: dict[str, float] = {}
    for p in positions:
        actual[str(p.symbol)] = actual.get(str(p.symbol), 0.0) + float(p.contracts)
    steps = steps or {}
    out: list[Mismatch] = []
    for sym in sorted(set(expected) | set(actual)):
        e, a = float(expected.get(sym, 0.0)), float(actual.get(sym, 0.0))
        tol = max(1e-9, 0.5 * float(steps.get(sym, 0.0)))
        if abs(a - e) > tol:
            out.append(Mismatch(sym, "position", e, a,
                                f"store expects {e:+g}, venue holds {a:+g} ({a - e:+g})"))
    for o in sorted(foreign_orders, key=lambda o: (str(o.symbol), str(o.id))):
        sym = str(o.symbol)
        e, a = float(expected.get(sym, 0.0)), float(actual.get(sym, 0.0))
        out.append(Mismatch(sym, "open_order", e, a,
                            f"open order {o.id} ({o.side} {o.amount:g}, client id "
                            f"{o.client_id}) not placed by this store"))
    return out


def mismatch_frame(mismatches: Iterable[Mismatch]) -> pd.DataFrame:
    """Mismatches as a frame with columns :data:`MISMATCH_COLUMNS`."""
    rows = [
        {"symbol": m.symbol, "kind": m.kind, "expected": m.expected, "actual": m.actual,
         "difference": m.difference, "detail": m.detail}
        for m in mismatches
    ]
    return pd.DataFrame(rows, columns=list(MISMATCH_COLUMNS))


def realized_pnl(fills: pd.DataFrame) -> float:
    """Realized trading PnL of a sequence of fills, net of their fees (average cost).

    Parameters
    ----------
    fills : DataFrame
        Columns ``symbol``, ``side`` (``buy``/``sell``), ``amount`` (> 0), ``price``,
        ``fee``, in execution order.

    Returns
    -------
    float
        Sum over symbols of the PnL of closed quantity (closing price minus the open
        quantity's average cost, times the closed amount, signed), minus every fee paid.

    Notes
    -----
    Average-cost accounting per symbol: adding to a position moves its average cost;
    reducing realizes ``(price - avg_cost) * closed`` for a long (the opposite for a
    short); crossing through zero opens the rest at the fill price. Funding is not included.
    """
    if fills.empty:
        return 0.0
    pnl = 0.0
    book: dict[str, tuple[float, float]] = {}  # symbol -> (signed qty, average cost)
    for row in fills[["symbol", "side", "amount", "price", "fee"]].itertuples(index=False):
        q, cost = book.get(row.symbol, (0.0, 0.0))
        s = float(row.amount) if row.side == "buy" else -float(row.amount)
        p = float(row.price)
        pnl -= float(row.fee or 0.0)
        if q == 0.0 or (q > 0) == (s > 0):
            total = abs(q) + abs(s)
            cost = (abs(q) * cost + abs(s) * p) / total if total > 0 else 0.0
            q += s
        else:
            closed = min(abs(s), abs(q))
            pnl += closed * (p - cost) * (1.0 if q > 0 else -1.0)
            q += s
            if abs(q) < 1e-12:
                q, cost = 0.0, 0.0
            elif (q > 0) == (s > 0):  # crossed zero: the rest opens at this price
                cost = p
        book[row.symbol] = (q, cost)
    return pnl if math.isfinite(pnl) else 0.0
