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

Nothing here talks to the venue or the store: functions take frames and records, except the
operator's tools at the end (``pairlib reconcile``): :func:`snapshot` reads the venue,
:func:`report` lists every symbol, and :func:`accept_venue` aligns the store with the venue
on one symbol in one transaction.

Accepting the venue
-------------------
After ``accept_venue(store, symbol, amount, ...)`` the store expects ``amount`` on the
symbol: residual legs of flat pairs there are zeroed (the tick stops flattening them), open
pairs' legs are kept when the venue still holds them (same sign, at least as large), and the
rest is recorded as an *accepted* position held outside any pair (``Store.accepted_positions``),
which :func:`expected_positions` adds. An open pair whose leg the venue no longer holds is
refused unless ``force``: the pair is then marked flat (and locked out until ``|z| < entry``)
with its leg on the symbol zeroed; its other leg becomes a residual the next tick closes
reduce-only. Nothing is deleted: an ``operator_accept`` incident records who, why and the
amounts before and after.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pairlib.errors import AcceptRefused
from pairlib.failpoints import failpoint

if TYPE_CHECKING:
    from pairlib.config import Params, Secrets
    from pairlib.edges.store import Store

__all__ = [
    "MISMATCH_COLUMNS",
    "REPORT_COLUMNS",
    "AcceptRefused",
    "AcceptResult",
    "Mismatch",
    "VenueSnapshot",
    "accept_venue",
    "expected_positions",
    "mismatch_frame",
    "realized_pnl",
    "reconcile",
    "report",
    "report_frame",
    "snapshot",
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


def expected_positions(
    pair_states: pd.DataFrame, accepted: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Net signed amount per symbol the store expects at the venue.

    Parameters
    ----------
    pair_states : DataFrame
        ``pair_state`` rows (columns ``y``, ``x``, ``amount_y``, ``amount_x``).
    accepted : mapping, optional
        Symbol -> amount an operator accepted outside any pair
        (:meth:`pairlib.edges.store.Store.accepted_positions`); default none.

    Returns
    -------
    dict
        Symbol -> sum of the signed leg amounts on it plus its accepted amount (symbols
        with a zero sum included when some pair holds them, so a venue position there is
        caught).
    """
    out: dict[str, float] = {}
    for sym, amt in (accepted or {}).items():
        out[str(sym)] = float(amt)
    if pair_states.empty:
        return {s: round(v, 12) for s, v in out.items()}
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


# ----------------------------------------------------------------------------- operator tools

REPORT_COLUMNS = ("symbol", "expected", "venue", "difference", "status", "pairs", "accepted",
                  "open_incidents", "detail")
_DUST = 1e-9
_UNCONFIRMED = ("planned", "sent", "unknown", "open")  # orders a tick has yet to resolve


@dataclass(frozen=True)
class VenueSnapshot:
    """What the venue holds: net ``positions`` per symbol, open orders not placed by this
    store (``foreign_orders``) and ours still resting (``own_orders``), amount ``steps``."""

    positions: dict[str, float]
    foreign_orders: list[Any] = field(default_factory=list)
    own_orders: list[Any] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)

    def tolerance(self, symbol: str) -> float:
        """Half the symbol's amount step (``1e-9`` without one), as :func:`reconcile`."""
        return max(1e-9, 0.5 * float(self.steps.get(symbol, 0.0)))


@dataclass(frozen=True)
class AcceptResult:
    """What :func:`accept_venue` changed (``changed`` False: the store already matched)."""

    symbol: str
    venue: float
    expected_before: float
    expected_after: float
    accepted_before: float
    accepted_after: float
    leg_changes: list[dict[str, Any]]
    resolved_incidents: int
    incident_id: int | None
    notes: list[str]

    @property
    def changed(self) -> bool:
        return self.incident_id is not None

    def lines(self) -> list[str]:
        """Human-readable summary, one change per line."""
        if not self.changed:
            return [f"{self.symbol}: store already expects {self.expected_before:+.12g} and the "
                    f"venue holds {self.venue:+.12g}; nothing changed"]
        out = [f"{self.symbol}: store expected {self.expected_before:+.12g}, now expects "
               f"{self.expected_after:+.12g} (venue {self.venue:+.12g}); operator_accept incident "
               f"#{self.incident_id}"]
        for ch in self.leg_changes:
            flat = " (pair marked flat)" if ch["position_before"] != ch["position_after"] else ""
            out.append(f"  pair {ch['pair_id']} leg {ch['leg']}: {ch['before']:+.12g} -> "
                       f"{ch['after']:+.12g}{flat}")
        if self.accepted_before != self.accepted_after:
            out.append(f"  held outside any pair (accepted): {self.accepted_before:+.12g} -> "
                       f"{self.accepted_after:+.12g}")
        out.append(f"  reconcile_mismatch incidents resolved: {self.resolved_incidents}")
        out.extend(f"  note: {n}" for n in self.notes)
        return out


def snapshot(
    params: Params, now: datetime, *, live: bool = False, secrets: Secrets | None = None
) -> VenueSnapshot:
    """Read the venue's positions, open orders and amount steps (no order is sent).

    Opens the venue with :func:`pairlib.venue.open.open_exchange` (the tick's live guard:
    :class:`~pairlib.errors.LiveTradingRefused` before any network call). ``secrets`` (by
    default the environment's) are used for ``demo`` and ``live`` only: a simulated venue,
    including a simulator at ``venue.sim_url``, is read with the simulator's own keys.
    """
    from pairlib.engine.execution import is_own_client_id
    from pairlib.venue.open import open_exchange

    with open_exchange(params.venue, now, live=live, secrets=secrets) as ex:
        steps = {s: float(m.amount_step) for s, m in ex.markets().items()}
        positions = ex.fetch_positions()
        orders = ex.fetch_open_orders()
    net: dict[str, float] = {}
    for pos in positions:
        net[str(pos.symbol)] = net.get(str(pos.symbol), 0.0) + float(pos.contracts)
    own = [o for o in orders if is_own_client_id(o.client_id)]
    foreign = [o for o in orders if not is_own_client_id(o.client_id)]
    return VenueSnapshot(net, foreign, own, steps)


def _holders(pair_states: pd.DataFrame, symbol: str) -> Iterator[dict[str, Any]]:
    """Every non-zero leg on ``symbol``: ``pair_id``, ``leg``, ``amount``, ``position``."""
    for r in pair_states.to_dict("records") if len(pair_states) else []:
        for leg in ("y", "x"):
            amt = float(r[f"amount_{leg}"] or 0.0)
            if str(r[leg]) == symbol and abs(amt) > _DUST:
                yield {"pair_id": str(r["pair_id"]), "leg": leg, "amount": amt,
                       "position": int(r["position"]), "other": str(r["x" if leg == "y" else "y"]),
                       "other_amount": float(r[f"amount_{'x' if leg == 'y' else 'y'}"] or 0.0)}


def report_frame(
    pair_states: pd.DataFrame,
    venue: VenueSnapshot,
    incidents: pd.DataFrame | None = None,
    accepted: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Per symbol: the store's expected amount, the venue's, their difference, a status
    (``ok``, ``mismatch``, ``foreign_order``), which pairs hold it, the accepted amount, the
    number of open incidents, and a detail (pure; columns :data:`REPORT_COLUMNS`).

    Symbols listed: any held by the store or the venue, or with an open order or an open
    incident; mismatches first.
    """
    expected = expected_positions(pair_states, accepted)
    found = reconcile(expected, [_Pos(s, a) for s, a in venue.positions.items()],
                      venue.foreign_orders, venue.steps)
    by_symbol: dict[str, list[Mismatch]] = {}
    for m in found:
        by_symbol.setdefault(m.symbol, []).append(m)
    open_inc = (incidents.loc[incidents["resolved"] == 0]
                if incidents is not None and len(incidents) else pd.DataFrame())
    inc_count = (open_inc.groupby("symbol").size().to_dict() if len(open_inc) else {})
    symbols = ({s for s, v in expected.items() if v != 0.0} | set(venue.positions)
               | set(by_symbol) | {str(s) for s in inc_count if s is not None})
    rows = []
    for sym in sorted(symbols):
        e, a = float(expected.get(sym, 0.0)), float(venue.positions.get(sym, 0.0))
        ms = by_symbol.get(sym, [])
        status = ("mismatch" if any(m.kind == "position" for m in ms)
                  else "foreign_order" if ms else "ok")
        held = [f"{h['pair_id']} {h['leg']} {h['amount']:+.12g}"
                + (" (open)" if h["position"] else " (residual)")
                for h in _holders(pair_states, sym)]
        rows.append({
            "symbol": sym, "expected": e, "venue": a, "difference": a - e, "status": status,
            "pairs": "; ".join(held), "accepted": float((accepted or {}).get(sym, 0.0)),
            "open_incidents": int(inc_count.get(sym, 0)),
            "detail": "; ".join(m.detail for m in ms),
        })
    frame = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    order = frame["status"].map({"mismatch": 0, "foreign_order": 1, "ok": 2})
    return frame.iloc[order.argsort(kind="stable")].reset_index(drop=True)


@dataclass(frozen=True)
class _Pos:
    symbol: str
    contracts: float


def report(
    params: str | Path | Params,
    now: datetime,
    *,
    store: Store | None = None,
    live: bool = False,
    secrets: Secrets | None = None,
    venue: VenueSnapshot | None = None,
) -> pd.DataFrame:
    """The reconciliation report (:func:`report_frame`) of the store against the venue.

    Parameters
    ----------
    params : path or Params
        ``params/pairlib.yaml`` or a validated tree.
    now : datetime
        The run's time (an in-process simulator's clock is set to it).
    store : Store, optional
        Default ``Store.at(params.state_dir)``.
    live, secrets
        As for the tick: ``--live`` and credentials (see :mod:`pairlib.venue.open`).
    venue : VenueSnapshot, optional
        An already-read venue (default: :func:`snapshot`).
    """
    from pairlib.config import Params, load_params
    from pairlib.edges.store import Store

    p = params if isinstance(params, Params) else load_params(params)
    snap = venue if venue is not None else snapshot(p, now, live=live, secrets=secrets)
    db = store if store is not None else Store.at(p.state_dir)
    try:
        return report_frame(db.pair_states(), snap, db.incidents(unresolved_only=True),
                            db.accepted_positions())
    finally:
        if store is None:
            db.close()


def accept_venue(
    store: Store,
    symbol: str,
    venue_amount: float,
    now: datetime,
    reason: str,
    *,
    force: bool = False,
    step: float = 0.0,
    operator: str | None = None,
) -> AcceptResult:
    """Align the store with the venue's ``venue_amount`` on ``symbol`` (one transaction).

    See the module docstring for the rule. ``step`` is the symbol's amount step (differences
    within half of it are rounding); ``operator`` names who accepted (recorded).

    Raises
    ------
    AcceptRefused
        No reason given; orders on the symbol still unconfirmed (a tick resolves them
        first); or an open pair's leg the venue no longer holds, without ``force``.
    """
    why = (reason or "").strip()
    if not why:
        raise AcceptRefused("a reason is required to accept the venue's position")
    v = float(venue_amount)
    if not math.isfinite(v):
        raise AcceptRefused(f"venue amount must be finite, got {venue_amount!r}")
    tol = max(1e-9, 0.5 * float(step))
    pending = store.orders(statuses=list(_UNCONFIRMED))
    pending = pending.loc[pending["symbol"] == symbol] if len(pending) else pending
    if len(pending):
        raise AcceptRefused(
            f"{symbol} has {len(pending)} unconfirmed order(s) "
            f"({', '.join(map(str, pending['client_id']))}); run a tick first so they are "
            "resolved against the venue, then reconcile again")
    states = store.pair_states()
    accepted_before = float(store.accepted_positions().get(symbol, 0.0))
    holders = list(_holders(states, symbol))
    expected_before = round(sum(h["amount"] for h in holders) + accepted_before, 12)
    unresolved = store.incidents(unresolved_only=True)
    n_open = int(((unresolved["kind"] == "reconcile_mismatch")
                  & (unresolved["symbol"] == symbol)).sum()) if len(unresolved) else 0
    if abs(v - expected_before) <= tol and n_open == 0:
        return AcceptResult(symbol, v, expected_before, expected_before, accepted_before,
                            accepted_before, [], 0, None, [])
    open_legs = [h for h in holders if h["position"] != 0]
    o = sum(h["amount"] for h in open_legs)
    intact = abs(o) <= tol or (v * o > 0 and abs(v) >= abs(o) - tol)
    if not intact and not force:
        names = ", ".join(f"{h['pair_id']} (leg {h['leg']} {h['amount']:+.12g})" for h in open_legs)
        raise AcceptRefused(
            f"{symbol}: the venue holds {v:+.12g} but open pair(s) {names} need {o:+.12g} there; "
            "accepting would silently change an open position. Close the pair through a tick "
            "(it exits reduce-only; the kill switch makes ticks exits-only), or pass --force "
            "to mark it flat (its other leg is then closed reduce-only by the next tick)")
    changes: list[dict[str, Any]] = []
    notes: list[str] = []
    for h in holders:
        if h["position"] != 0 and intact:
            continue
        changes.append({"pair_id": h["pair_id"], "leg": h["leg"], "before": h["amount"],
                        "after": 0.0, "position_before": h["position"], "position_after": 0})
        if h["position"] != 0 and abs(h["other_amount"]) > _DUST:
            notes.append(f"pair {h['pair_id']} is now flat with a residual {h['other']} leg "
                         f"{h['other_amount']:+.12g}: the next tick closes it reduce-only")
    kept = o if intact else 0.0
    accepted_after = round(v - kept, 12)
    if abs(accepted_after) <= tol:
        accepted_after = 0.0
    if accepted_after != 0.0:
        notes.append(f"{accepted_after:+.12g} on {symbol} is now held outside any pair: the bot "
                     "neither closes it nor counts it as a mismatch")
    expected_after = round(kept + accepted_after, 12)
    who = operator or "operator"
    payload = {"operator": who, "reason": why, "venue": v, "expected_before": expected_before,
               "expected_after": expected_after, "accepted_before": accepted_before,
               "accepted_after": accepted_after, "force": bool(force), "legs": changes}
    detail = (f"{who} accepted the venue's {v:+.12g} on {symbol} (store expected "
              f"{expected_before:+.12g}): {why}; {json.dumps(payload, sort_keys=True)}")
    failpoint("reconcile.accept_before_write")
    incident_id, resolved = store.accept_venue_position(
        symbol, changes, accepted_before, accepted_after, detail, now)
    return AcceptResult(symbol, v, expected_before, expected_after, accepted_before,
                        accepted_after, changes, resolved, incident_id, notes)
