"""Orders for pair legs, idempotently, through the one exchange adapter.

Every order carries a deterministic client order id (:func:`client_order_id`) derived from
the tick, the pair, the leg, the action and the attempt, so a retried or re-run tick can
never place the same order twice: before anything is sent, the id is looked up in the store
and then at the venue (:meth:`Exchange.fetch_order_by_client_id`); only an order found in
neither place is sent. Order creation is never retried blindly. An order whose outcome is
unknown (a timeout, a lost response) is treated as possibly filled: it is looked up by its
client id with backoff until its ``timestamp + recvWindow`` has passed, after which the
venue can no longer accept it. A failed look-up is never read as "not found"; if the
look-ups keep failing, the venue's positions are re-read: an unchanged position after the
window proves the order was never booked, anything else leaves it ``unknown`` (an incident,
re-checked before the tick ends), and the other leg is not unwound blindly.

A pair's legs go one after the other. The second leg of an entry is sized from what the
first actually filled. If the second leg fails after the first filled, the first is unwound
and an incident is recorded. A remainder below the market's minimum amount or notional
counts as filled. Exits, stops, flattening and unwinds are reduce-only and retried within
the tick (each attempt under a new client id, sent only once every earlier attempt is known
to be final); whatever is still open after the retries is an incident. A close with a leg
held on a market the venue no longer lists (delisted) sends nothing at all, so the pair stays
hedged rather than leaving that leg naked, and tells the operator what to do
(:meth:`Executor.close`). A market the venue stops listing during the tick is caught too: the
legs after the first are checked at the venue before the first is sent, and a venue answer
"unknown symbol" at send time stops the close at once (never retried).

Store conventions (see :class:`pairlib.edges.store.Store`): an order row is written *before* the
order is sent (status ``sent``), its ``filled`` is what has been applied to the pair's
signed leg amount in ``pair_state``, so a venue report can be applied any number of times.

Order statuses in the store: ``planned`` (intent recorded, not sent), ``sent`` (create
call made, no answer recorded yet), ``unknown`` (create failed and the venue could not
confirm it), ``open``, and the final ``closed``, ``canceled``, ``expired``, ``rejected``,
``failed`` (refused by the venue or by a pre-check) and ``skipped`` (planned, never sent).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Protocol

from pairlib.clock import Clock, from_ms, iso, parse_time
from pairlib.core.risk import MarketRules, round_amount
from pairlib.core.strategy import Action
from pairlib.edges.store import OrderRow, Store
from pairlib.errors import (
    ExchangeError,
    ExchangeUnavailable,
    InvalidOrder,
    MarketNotListed,
    OrderNotFound,
)
from pairlib.failpoints import failpoint

__all__ = [
    "ACTION_CODES",
    "FINAL_STATUSES",
    "Executor",
    "LegFill",
    "LegOrder",
    "OrderStatus",
    "OrderVenue",
    "PairOutcome",
    "UNRESOLVED_STATUSES",
    "client_order_id",
    "is_own_client_id",
]

log = logging.getLogger(__name__)

CLIENT_ID_PREFIX: Final = "pl"
ACTION_CODES: Final[dict[Action, str]] = {
    Action.ENTER_LONG: "el",
    Action.ENTER_SHORT: "es",
    Action.EXIT: "ex",
    Action.STOP: "st",
    Action.UNWIND: "uw",
    Action.FLATTEN: "fl",
    Action.EXIT_NO_DATA: "nd",
    Action.LOSS_LIMIT: "ll",
}
"""Two-letter code of each order action in client ids."""


class OrderStatus(StrEnum):
    """An order's status in the store (members are stored as their string values)."""

    PLANNED = "planned"  # intent recorded, not sent
    SENT = "sent"  # create call made, no answer recorded yet
    UNKNOWN = "unknown"  # the create failed in transit and the venue could not confirm it
    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"  # refused by the venue or a pre-check, or never booked
    SKIPPED = "skipped"  # planned, never sent


FINAL_STATUSES: Final = frozenset({OrderStatus.CLOSED, OrderStatus.CANCELED,
                                   OrderStatus.EXPIRED, OrderStatus.REJECTED,
                                   OrderStatus.FAILED, OrderStatus.SKIPPED})
"""Order statuses that will not change any more (the store never asks the venue again)."""
_PENDING: Final = frozenset({OrderStatus.PLANNED, OrderStatus.SENT, OrderStatus.UNKNOWN,
                             OrderStatus.OPEN})
_UNRESOLVED: Final = frozenset({OrderStatus.SENT, OrderStatus.UNKNOWN, OrderStatus.OPEN})
UNRESOLVED_STATUSES: Final = _UNRESOLVED
"""Statuses of an order whose outcome is not known yet (it may still fill)."""
_CLOCK_SKEW_S: Final = 1.0  # margin on recvWindow for the client/venue clock difference


def client_order_id(
    as_of: datetime, pair_id: str, leg: str, action: str, attempt: int = 0
) -> str:
    """The deterministic client order id of one order.

    Parameters
    ----------
    as_of : datetime
        The tick (close time of the candle it acts on).
    pair_id : str
        The pair, ``"Y~X"``.
    leg : {"y", "x"}
    action : str
        A key of :data:`ACTION_CODES`.
    attempt : int
        0 for the first order, ``k`` for the ``k``-th remainder of a partial fill.

    Returns
    -------
    str
        ``pl-YYMMDDHHMM-<10 hex of sha1(pair_id)>-<leg>-<code>[-r<k>]``, at most 33
        characters of ``[.A-Z:/a-z0-9_-]`` (Binance allows 36).

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> client_order_id(datetime(2026, 1, 31, 20, tzinfo=UTC), "A/USDT:USDT~B/USDT:USDT",
    ...                 "y", "enter_long")
    'pl-2601312000-92f2640f68-y-el'
    """
    if leg not in ("y", "x"):
        raise ValueError(f"leg must be 'y' or 'x', got {leg!r}")
    try:
        code = ACTION_CODES[Action(action)]
    except (KeyError, ValueError):
        raise ValueError(f"action {action!r} unknown; allowed: "
                         f"{', '.join(str(a) for a in ACTION_CODES)}") \
            from None
    if attempt < 0 or attempt > 99:
        raise ValueError(f"attempt must be in 0..99, got {attempt}")
    stamp = parse_time(as_of).strftime("%y%m%d%H%M")
    digest = hashlib.sha1(pair_id.encode()).hexdigest()[:10]
    cid = f"{CLIENT_ID_PREFIX}-{stamp}-{digest}-{leg}-{code}"
    return cid if attempt == 0 else f"{cid}-r{attempt}"


def is_own_client_id(client_id: str | None) -> bool:
    """True when a client id has the shape :func:`client_order_id` produces."""
    return bool(client_id) and str(client_id).startswith(f"{CLIENT_ID_PREFIX}-")


class OrderVenue(Protocol):
    """The part of :class:`pairlib.venue.exchange.Exchange` that execution uses.

    Also used when the venue has them (looked up with ``getattr``, so a venue without them
    still works): ``fetch_my_trades(symbol, since_ms)`` and ``check_listed(symbol)``
    (raises :class:`~pairlib.errors.MarketNotListed` for a market the venue no longer lists).
    """

    def create_order(
        self,
        symbol: str,
        side: str,
        amount: float,
        client_id: str,
        type: str = "market",
        price: float | None = None,
        reduce_only: bool = False,
    ) -> Any:
        """Send one order (never retried)."""
        ...

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> Any | None:
        """The order with this client id, or None."""
        ...

    def cancel_order(self, symbol: str, order_id: str) -> Any:
        """Cancel an open order."""
        ...

    def fetch_positions(self) -> list[Any]:
        """Open positions (``symbol``, signed ``amount``)."""
        ...


@dataclass(frozen=True)
class LegOrder:
    """One intended order on one leg of a pair.

    ``amount`` is a positive number of contracts; ``side`` is ``buy`` or ``sell``.
    """

    pair_id: str
    leg: str
    action: str
    symbol: str
    side: str
    amount: float
    reduce_only: bool = False


@dataclass(frozen=True)
class LegFill:
    """What one leg achieved, over its first order and any remainders.

    ``complete`` is True when what is left is less than one amount step (or below the
    market's minimum, so cannot be sent); an entry leg that filled nothing is never complete.
    ``error`` says why whenever ``complete`` is False.
    ``unknown`` is True when an order's outcome could not be confirmed (it may still fill at
    the venue; the next tick resolves it).
    """

    order: LegOrder
    filled: float
    average: float | None
    fee: float
    complete: bool
    client_ids: tuple[str, ...]
    error: str | None = None
    unknown: bool = False

    @property
    def signed_filled(self) -> float:
        """Filled amount, + for buys and - for sells."""
        return self.filled if self.order.side == "buy" else -self.filled


@dataclass(frozen=True)
class PairOutcome:
    """The result of one pair action (entry, exit, stop or flattening)."""

    pair_id: str
    action: str
    ok: bool
    legs: tuple[LegFill, ...]
    unwinds: tuple[LegFill, ...] = ()
    message: str = ""
    blocked: tuple[str, ...] = ()
    """Symbols whose market the venue does not list: the close was not sent (see
    :meth:`Executor.close`)."""

    @property
    def unknown(self) -> bool:
        """Whether an order of this action has an outcome the venue could not confirm."""
        return any(f.unknown for f in (*self.legs, *self.unwinds))


@dataclass
class _Report:
    """One order's current truth (from the store or the venue)."""

    client_id: str
    filled: float
    average: float | None
    fee: float
    status: str
    error: str | None = None
    unlisted: bool = False  # the venue does not list the symbol: nothing was sent


@dataclass
class Executor:
    """Places the orders of one tick.

    Parameters
    ----------
    exchange : OrderVenue
        The adapter (:class:`pairlib.venue.exchange.Exchange`).
    store : Store
        Where orders, fills and leg amounts are recorded.
    as_of : datetime
        The tick; part of every client id.
    clock : Clock
        Time stamps of store rows and the age of unresolved orders.
    rules : mapping of symbol to MarketRules
        Amount steps and minimums (remainders are rounded with them).
    max_remainders : int
        How many remainder orders a partially filled entry leg may send.
    close_attempts : int
        How many reduce-only orders one leg of an exit, stop, flattening or unwind may
        send within the tick (rejections, partial fills and failed sends are retried).
    recv_window_s : float
        The venue's signed-request window (:attr:`Exchange.recv_window_ms`): an order
        whose request failed in transit may still be booked until this long after it was
        signed, so its look-ups go on at least that long.
    lookup_delay_s, lookup_max_delay_s : float
        First wait between look-ups and its cap (the wait doubles).
    unknown_grace : timedelta
        An earlier tick's order unknown to the venue for longer than this (by ``clock``) is
        declared lost (``failed``).
    sleep, monotonic : callable
        ``time.sleep`` and ``time.monotonic`` (injected for tests). Time counts as passed
        when either says so, so a test's no-op ``sleep`` still ends every wait.

    Attributes
    ----------
    incidents : list of dict
        The incidents recorded by this executor (also in the store).
    unlisted : set of str
        Symbols found unlisted at the venue during this tick although they were in
        ``rules`` (delisted since the market list was loaded): no order is sent on them.
    """

    exchange: OrderVenue
    store: Store
    as_of: datetime
    clock: Clock
    rules: Mapping[str, MarketRules]
    max_remainders: int = 2
    close_attempts: int = 5
    recv_window_s: float = 5.0
    lookup_delay_s: float = 0.2
    lookup_max_delay_s: float = 2.0
    unknown_grace: timedelta = timedelta(minutes=10)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    incidents: list[dict[str, Any]] = field(default_factory=list)
    unlisted: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ incidents
    def incident(self, kind: str, symbol: str | None, detail: str) -> None:
        """Record an incident in the store and in :attr:`incidents`."""
        log.warning("incident %s %s: %s", kind, symbol or "", detail)
        self.store.add_incident(self.as_of, kind, symbol, detail, self.clock.now())
        self.incidents.append({"kind": kind, "symbol": symbol, "detail": detail})

    # ------------------------------------------------------------------ pair actions
    def enter(
        self, pair_id: str, action: str, legs: tuple[LegOrder, LegOrder]
    ) -> PairOutcome:
        """Open a pair: leg y, then leg x sized from what y filled.

        If the first leg fails, nothing else is sent (a partial first fill is unwound). If
        the second fails for certain, both legs are unwound (reduce-only, retried). If the
        second's outcome is unknown, the first leg is kept (the second may have filled): an
        ``order_unknown`` incident, and the tick re-checks it before it ends. A re-run of
        the same tick reuses the amounts recorded for its first orders, so a resumed entry
        completes the original plan.
        """
        legs = (self._planned(legs[0]), self._planned(legs[1]))
        first = self.fill_leg(legs[0])
        if not first.complete:
            if not first.client_ids:  # nothing sent (below the minimum): not pending either
                self._skip(legs[0], str(first.error))
            self._skip(legs[1], f"first leg incomplete: {first.error}")
            if first.unknown:
                self.incident("order_unknown", legs[0].symbol,
                              f"{pair_id} {action}: first leg {legs[0].side} "
                              f"{legs[0].amount:g} {legs[0].symbol}: {first.error}; the "
                              "second leg was not sent; re-checked before the tick ends")
                return PairOutcome(pair_id, action, False, (first,), (),
                                   f"first leg outcome unknown: {first.error}")
            unwinds = self._unwind_all([first])
            kind = "partial_fill_unwound" if first.filled > 0 else "entry_failed"
            self.incident(kind, legs[0].symbol,
                          f"{pair_id} {action}: first leg {legs[0].side} {legs[0].amount:g} "
                          f"{legs[0].symbol} filled {first.filled:g} "
                          f"({first.error}); "
                          + _unwind_text(unwinds))
            return PairOutcome(pair_id, action, False, (first,), unwinds,
                               f"first leg failed: {first.error}")
        failpoint("exec.between_legs")
        second_order = self._hedge_for(legs[1], legs[0].amount, first.filled)
        second = self.fill_leg(second_order)
        if second.unknown:
            self.incident("order_unknown", legs[1].symbol,
                          f"{pair_id} {action}: second leg {second_order.side} "
                          f"{second_order.amount:g} {legs[1].symbol}: {second.error}; first "
                          f"leg {legs[0].symbol} filled {first.filled:g} is kept (the second "
                          "may have filled); re-checked before the tick ends")
            return PairOutcome(pair_id, action, False, (first, second), (),
                               f"second leg outcome unknown: {second.error}")
        if not second.complete:
            if not second.client_ids:  # nothing sent (below the minimum): not pending either
                self._skip(legs[1], str(second.error))
            unwinds = self._unwind_all([second, first])
            self.incident("second_leg_failed", legs[1].symbol,
                          f"{pair_id} {action}: second leg {second_order.side} "
                          f"{second_order.amount:g} {legs[1].symbol} filled {second.filled:g} "
                          f"({second.error}) after first leg "
                          f"{legs[0].symbol} filled {first.filled:g}; "
                          + _unwind_text(unwinds))
            undone = "unwound" if all(u.complete for u in unwinds) else "unwind INCOMPLETE"
            return PairOutcome(pair_id, action, False, (first, second), unwinds,
                               f"second leg failed: {second.error}; "
                               f"filled legs {undone}")
        return PairOutcome(pair_id, action, True, (first, second), (), "entered")

    def _hedge_for(self, order: LegOrder, planned_first: float, filled_first: float) -> LegOrder:
        """The second leg sized from the first leg's actual fill (same ratio as planned)."""
        if planned_first <= 0 or filled_first >= planned_first:
            return order
        amount = _sendable(order.amount * filled_first / planned_first,
                           self.rules.get(order.symbol))
        log.info("second leg %s %s sized from the first leg's fill: %g of %g planned",
                 order.pair_id, order.symbol, amount, order.amount)
        return replace(order, amount=amount)

    def close(self, pair_id: str, action: str, legs: Iterable[LegOrder]) -> PairOutcome:
        """Close legs with reduce-only orders (exit, stop, flattening or closing an
        unevaluable pair), each retried within the tick (:meth:`close_leg`); every leg is
        tried even when another fails. What stays open is an incident.

        A leg held on a market the venue does not list (not in :attr:`rules`, the tick's
        active USDT-margined perpetuals: delisted or suspended) cannot be closed through
        the API, and retrying will not change that. Then **no leg is sent**: closing the
        healthy leg alone would leave the unlisted one naked (unhedged), while the pair
        as it stands is still hedged, and a delisted perpetual is usually settled by the
        venue against its settlement price. The outcome is not ok with ``blocked``
        naming the symbols, a ``close_blocked_delisted`` incident per such symbol says
        what the operator must do (close it on the venue by hand, then
        ``pairlib reconcile --accept SYMBOL --force``, which marks the pair flat so that
        the next tick closes the other leg reduce-only), and the caller keeps the pair
        open and closing.

        ``rules`` is the market list loaded at the start of the tick; a market can be
        delisted after that. So, before the first leg is sent, every later held leg's
        market is checked at the venue (``check_listed``, one light request per leg, when
        the venue has it): the first leg needs no such check, because its own look-up by
        client id before sending already fails on an unlisted market. A leg found unlisted
        then blocks the close as above. If the venue answers "unknown symbol"
        (:class:`~pairlib.errors.MarketNotListed`) while a leg is being closed anyway
        (delisted in the moment between), that leg is not retried and no later leg is
        sent: when nothing of this close has filled, the close is blocked as above; when
        an earlier leg (or earlier attempts of this one) already filled, the pair is no
        longer hedged and that cannot be undone, so a ``close_naked_delisted`` incident
        names the unlisted leg, the legs as they now stand and what the operator must do
        (the outcome's ``blocked`` names the symbol too). Symbols found unlisted this way
        are kept in :attr:`unlisted`.
        """
        legs = tuple(legs)
        held = [leg for leg in legs if abs(self._leg_amount(leg)) > 1e-12]
        unlisted = [leg for leg in held
                    if leg.symbol not in self.rules or leg.symbol in self.unlisted]
        if not unlisted:
            unlisted = self._check_listed(held[1:])
        if unlisted:
            return self._close_blocked(pair_id, action, legs, unlisted)
        done: list[LegFill] = []
        for leg in legs:
            done.append(self.close_leg(leg))
            if leg not in held or leg.symbol not in self.unlisted:
                continue  # a leg not held sends nothing: an unlisted market cannot stop it
            if any(f.filled > 0 or f.unknown for f in done):
                return self._close_naked(pair_id, action, legs, tuple(done), leg)
            return self._close_blocked(pair_id, action, legs, [leg])
        fills = tuple(done)
        ok = all(f.complete for f in fills)
        if not ok:
            bad = [f for f in fills if not f.complete]
            self.incident(
                f"{action}_incomplete", bad[0].order.symbol,
                f"{pair_id} {action}: " + "; ".join(
                    f"{f.order.symbol} {f.order.side} {f.order.amount:g} filled {f.filled:g}"
                    f" ({f.error})" for f in bad
                ) + "; still open at the venue",
            )
        return PairOutcome(pair_id, action, ok, fills, (),
                           "closed" if ok else "incomplete: legs still open")

    def _close_blocked(self, pair_id: str, action: str, legs: tuple[LegOrder, ...],
                       unlisted: list[LegOrder]) -> PairOutcome:
        """Send nothing for a close with a leg on an unlisted market (:meth:`close`): one
        incident per unlisted symbol, every leg reported unfilled."""
        gone = {leg.symbol for leg in unlisted}
        held = {leg.leg: self._leg_amount(leg) for leg in legs}
        others = [f"{leg.symbol} {held[leg.leg]:+g}" for leg in legs
                  if leg.symbol not in gone and abs(held[leg.leg]) > 1e-12]
        kept = (f"the other leg ({', '.join(others)}) is NOT closed either, so the pair stays "
                "hedged (closing it alone would leave the unlisted leg naked)" if others
                else "no other leg is held")
        for leg in unlisted:
            sym = leg.symbol
            self.incident(
                "close_blocked_delisted", sym,
                f"{pair_id} {action}: {sym} {held[leg.leg]:+g} cannot be closed: the venue does "
                f"not list {sym} among its active markets (delisted or suspended), so no "
                f"order can be sent on it; {kept}. The pair stays open and closing. "
                f"Operator: close {sym} on the venue by hand (unless the venue has settled "
                f"it), then run `pairlib reconcile --accept {sym} --reason TEXT --force`: the "
                "pair is marked flat and the next tick closes its other leg reduce-only")
        why = (f"not sent: {', '.join(sorted(gone))} not listed by the venue (delisted or "
               "suspended)")
        fills = tuple(LegFill(replace(leg, amount=abs(held[leg.leg]), reduce_only=True),
                              0.0, None, 0.0, False, (), why)
                      for leg in legs if abs(held[leg.leg]) > 1e-12)
        return PairOutcome(
            pair_id, action, False, fills, (),
            f"close blocked: {', '.join(sorted(gone))} not listed by the venue (delisted or "
            "suspended), nothing sent so the pair stays hedged; close it on the venue by "
            "hand, then " + ", ".join(f"`pairlib reconcile --accept {s} --reason TEXT --force`"
                                      for s in sorted(gone)),
            blocked=tuple(sorted(gone)))

    def _close_naked(self, pair_id: str, action: str, legs: tuple[LegOrder, ...],
                     done: tuple[LegFill, ...], stopped: LegOrder) -> PairOutcome:
        """A close stopped at ``stopped`` because the venue no longer lists its market,
        after some of this close (``done``) had filled (:meth:`close`): the pair is not
        hedged any more. One ``close_naked_delisted`` incident naming the unlisted leg, the
        legs as they stand and what the operator must do; the legs not attempted are
        reported unfilled."""
        sym = stopped.symbol
        held = {leg.leg: self._leg_amount(leg) for leg in legs}
        now = ", ".join(f"{leg.symbol} {held[leg.leg]:+g}" for leg in legs)
        closed = "; ".join(
            f"{f.order.symbol} {f.filled:g} of {f.order.amount:g} closed reduce-only"
            + (" (an order's outcome is still unknown)" if f.unknown else "")
            for f in done if f.filled > 0 or f.unknown)
        self.incident(
            "close_naked_delisted", sym,
            f"{pair_id} {action}: the venue stopped listing {sym} during this close (it was "
            "listed when the tick loaded its markets: delisted or suspended since), after "
            f"{closed}. {sym} {held[stopped.leg]:+g} cannot be closed through the API and "
            f"the pair is NOT hedged any more (legs now: {now}): {sym} is held NAKED. "
            f"Operator: close {sym} on the venue by hand now (unless the venue has settled "
            f"it), then run `pairlib reconcile --accept {sym} --reason TEXT --force`: the "
            "pair is marked flat and the next tick closes whatever is left of its other leg "
            "reduce-only")
        why = f"not sent: {sym} not listed by the venue (delisted during the tick)"
        rest = tuple(LegFill(replace(leg, amount=abs(held[leg.leg]), reduce_only=True),
                             0.0, None, 0.0, False, (), why)
                     for leg in legs[len(done):] if abs(held[leg.leg]) > 1e-12)
        return PairOutcome(
            pair_id, action, False, (*done, *rest), (),
            f"close stopped: {sym} not listed by the venue (delisted during the tick) after "
            f"{closed}; {sym} is held NAKED: close it on the venue by hand now, then "
            f"`pairlib reconcile --accept {sym} --reason TEXT --force`",
            blocked=(sym,))

    def _check_listed(self, legs: Iterable[LegOrder]) -> list[LegOrder]:
        """The legs whose market the venue says, asked now, it no longer lists (its
        ``check_listed``; none when the venue has no such call). A question the venue
        cannot answer (network, rate limit) does not block the close: the close is
        risk-reducing, and an unlisted market still stops it at that leg's send."""
        check = getattr(self.exchange, "check_listed", None)
        if check is None:
            return []
        gone: list[LegOrder] = []
        for leg in legs:
            try:
                check(leg.symbol)
            except MarketNotListed as e:
                log.warning("%s is no longer listed by the venue: %s", leg.symbol, e)
                self.unlisted.add(leg.symbol)
                gone.append(leg)
            except ExchangeError as e:
                log.warning("could not ask the venue whether it still lists %s (%s): closing "
                            "anyway", leg.symbol, e)
        return gone

    # ------------------------------------------------------------------ one leg
    def fill_leg(self, order: LegOrder) -> LegFill:
        """Fill one entry leg: its first order, then remainders of a partial fill (derived
        ids). A remainder below the market's minimum amount or notional counts as filled; a
        leg that fills nothing is incomplete, also when its amount is below the minimum (so
        it cannot be sent): a pair is never "entered" with one leg only."""
        rules = self.rules.get(order.symbol)
        step = rules.amount_step if rules is not None else 0.0
        tol = step * 1e-6 if step else 1e-12
        filled, notional, fee = 0.0, 0.0, 0.0
        cids: list[str] = []
        error: str | None = None
        unknown = False
        remaining = order.amount
        price: float | None = None
        for attempt in range(self.max_remainders + 1):
            amount = _sendable(remaining, rules)
            if amount <= tol or _below_minimum(amount, price, rules):
                if not cids:
                    error = (f"not sent: {remaining:g} {order.symbol} is below the market's "
                             f"minimum amount {rules.min_amount:g} (step {rules.amount_step:g})"
                             if rules is not None else
                             f"not sent: {remaining:g} {order.symbol} is too small to send")
                break
            rep = self._submit(replace(order, amount=amount), attempt)
            cids.append(rep.client_id)
            if rep.filled > 0:
                filled += rep.filled
                notional += rep.filled * (rep.average or 0.0)
                fee += rep.fee
                price = rep.average or price
            if rep.status in _UNRESOLVED:
                unknown = True
                error = rep.error or f"order {rep.client_id} outcome unknown"
                break
            if rep.unlisted or (rep.error is not None and rep.filled <= 0):
                error = rep.error
                break
            remaining = order.amount - filled
            if remaining <= max(tol, step / 2):
                break
            log.info("leg %s %s partially filled: %g of %g; sending the remainder",
                     order.pair_id, order.symbol, filled, order.amount)
        left = order.amount - filled
        complete = not unknown and filled > 0 and (
            left <= max(tol, step / 2)
            or (rules is not None and (
                round_amount(left, rules) < max(rules.min_amount, tol)
                or _below_minimum(round_amount(left, rules), price, rules)))
        )
        if not complete and not error:
            error = f"partial fill: {filled:g} of {order.amount:g} after {len(cids)} orders"
        average = notional / filled if filled > 0 and notional > 0 else None
        return LegFill(order, filled, average, fee, complete, tuple(cids),
                       None if complete else error, unknown)

    def close_leg(self, order: LegOrder) -> LegFill:
        """Close one leg of a pair to zero with reduce-only orders, retried within the tick.

        The amount to close is the pair's leg amount in the store (``order`` gives the
        pair, leg, symbol and action; its amount is only what the caller expected). Before
        each new attempt every earlier order of this tick for the same leg and action is
        resolved (:meth:`_await_outcome`): a new order is sent only when none may still be
        booked. Each attempt has its own client id (``-r<k>``). Rejections and failed sends
        are retried after a backoff, up to :attr:`close_attempts` orders.
        """
        rules = self.rules.get(order.symbol)
        step = rules.amount_step if rules is not None else 0.0
        tol = step * 1e-6 if step else 1e-12
        start = abs(self._leg_amount(order))
        cids: list[str] = []
        fee, notional = 0.0, 0.0
        error: str | None = None
        unknown = False
        delay = max(self.lookup_delay_s, 0.1)
        price: float | None = None
        sent = 0
        while True:
            blocked = self._resolve_earlier_attempts(order)
            if blocked is not None:
                unknown, error = True, blocked
                break
            held = self._leg_amount(order)
            left = abs(held)
            if left <= max(tol, step / 2):
                break
            side = "sell" if held > 0 else "buy"
            amount = _sendable(left, rules)
            if amount <= tol or (rules is not None and amount < rules.min_amount):
                error = f"{left:g} left is below the market's minimum amount: cannot be sent"
                break
            if sent >= self.close_attempts:
                error = (f"{left:g} still open after {sent} reduce-only orders"
                         + (f" (last: {error})" if error else ""))
                break
            if sent:
                self.sleep(delay)
                delay = min(delay * 2, self.lookup_max_delay_s)
            attempt = self._next_attempt(order)
            rep = self._submit(replace(order, side=side, amount=amount, reduce_only=True),
                               attempt)
            sent += 1
            cids.append(rep.client_id)
            fee += rep.fee
            if rep.filled > 0 and rep.average:
                notional += rep.filled * rep.average
                price = rep.average
            if rep.status in _UNRESOLVED:
                unknown = True
                error = rep.error or f"order {rep.client_id} outcome unknown"
                break
            if rep.unlisted:  # retrying cannot help: the market is gone
                error = rep.error
                break
            if rep.error is not None:
                error = rep.error
                log.warning("reduce-only %s %s %s attempt %d: %s; retrying", order.action,
                            order.pair_id, order.symbol, attempt, rep.error)
                failpoint("exec.close_retry")
        left = abs(self._leg_amount(order))
        closed = max(start - left, 0.0)
        complete = not unknown and left <= max(tol, step / 2)
        average = notional / closed if closed > 0 and notional > 0 else price
        failpoint("exec.after_close_leg")
        return LegFill(replace(order, amount=start, reduce_only=True), closed, average, fee,
                       complete, tuple(cids), None if complete else error, unknown)

    def _leg_amount(self, order: LegOrder) -> float:
        """The pair's signed amount on this leg, as the store holds it."""
        st = self.store.pair_state(order.pair_id)
        return st.amount(order.leg) if st is not None else 0.0

    def _next_attempt(self, order: LegOrder) -> int:
        """The first attempt number whose client id this tick has not used."""
        for k in range(100):
            cid = client_order_id(self.as_of, order.pair_id, order.leg, order.action, k)
            if self.store.order(cid) is None:
                return k
        raise InvalidOrder(f"{order.pair_id} {order.leg} {order.action}: all 100 "
                                   "client ids of this tick are used")

    def _resolve_earlier_attempts(self, order: LegOrder) -> str | None:
        """Resolve this tick's unresolved orders for the same pair, leg and action; returns
        why a new order may not be sent (one may still be booked), or None."""
        rows = self.store.orders(tick_as_of=self.as_of, statuses=sorted(_UNRESOLVED))
        if rows.empty:
            return None
        mine = rows[(rows["pair_id"] == order.pair_id) & (rows["leg"] == order.leg)
                    & (rows["action"] == order.action)]
        for row in mine.to_dict("records"):
            cid = str(row["client_id"])
            earlier = _order_of(row)
            rep = self._await_outcome(cid, earlier, self.monotonic(),
                                      f"order {cid} left {row['status']} by an earlier run")
            if rep.status in _UNRESOLVED:
                return rep.error or f"order {cid} outcome unknown"
        return None

    # ------------------------------------------------------------------ one order
    def _submit(self, order: LegOrder, attempt: int) -> _Report:
        """Place one order exactly once: store, then venue, then (only then) send."""
        cid = client_order_id(self.as_of, order.pair_id, order.leg, order.action, attempt)
        row = self.store.order(cid)
        if row is not None and row.status in FINAL_STATUSES:
            log.info("order %s already %s in the store (filled %g): not sent again",
                     cid, row.status, row.filled)
            return _Report(cid, float(row.filled), row.average, float(row.fee), row.status,
                           row.error)
        try:
            found = self.exchange.fetch_order_by_client_id(order.symbol, cid)
        except ExchangeError as e:
            # Nothing sent: leave no trace that would stop a re-run from sending it.
            gone = isinstance(e, MarketNotListed)
            if gone:
                self.unlisted.add(order.symbol)
                msg = f"not sent: {order.symbol} is not listed by the venue any more: {e}"
            else:
                msg = f"not sent: look-up by client id failed: {e}"
            if row is None:
                return _Report(cid, 0.0, None, 0.0, "failed", msg, unlisted=gone)
            return _Report(cid, float(row.filled), row.average, float(row.fee), row.status, msg,
                           unlisted=gone)
        if found is not None:
            log.info("order %s found at the venue (%s): not sent again", cid, found.status)
            return self._settle(cid, order, found)
        if row is not None and row.status in _UNRESOLVED:
            # Left by an earlier run of this tick: it may have been sent at any moment
            # before now, so it may be booked until a full window from now.
            rep = self._await_outcome(cid, order, self.monotonic(),
                                      f"order {cid} left {row.status} by an earlier run")
            if rep.status != OrderStatus.FAILED:
                return rep
            log.warning("order %s was never booked: sending it now", cid)
        self._save(cid, order, status="sent")
        failpoint("exec.before_send")
        log.info("order %s: %s %s %g %s%s", cid, order.action, order.side, order.amount,
                 order.symbol, " reduce-only" if order.reduce_only else "")
        sent_at = self.monotonic()
        try:
            res = self.exchange.create_order(order.symbol, order.side, order.amount, cid,
                                             reduce_only=order.reduce_only)
        except ExchangeUnavailable as e:
            log.warning("order %s: %s: %s; outcome unknown, looking it up by client id", cid,
                        type(e).__name__, e)
            return self._await_outcome(cid, order, sent_at, f"{type(e).__name__}: {e}")
        except MarketNotListed as e:  # refused: the venue does not know the symbol
            self.unlisted.add(order.symbol)
            rep = self._fail(cid, order, "rejected", f"{type(e).__name__}: {e}")
            rep.unlisted = True
            return rep
        except InvalidOrder as e:
            # A duplicate client id means the order exists after all: look it up.
            found = self._lookup_once(order.symbol, cid)
            if found is not None:
                return self._settle(cid, order, found)
            return self._fail(cid, order, "rejected", f"{type(e).__name__}: {e}")
        except ExchangeError as e:
            return self._fail(cid, order, "rejected", f"{type(e).__name__}: {e}")
        failpoint("exec.after_send")
        return self._settle(cid, order, res)

    def _await_outcome(self, cid: str, order: LegOrder, sent_at: float, error: str) -> _Report:
        """Resolve an order whose outcome is unknown; ``sent_at`` is :attr:`monotonic` at
        (or after) its signing.

        It is looked up by client id with backoff until ``sent_at + recvWindow`` (plus a
        clock-skew margin) has passed; a look-up that fails is never read as "not found".
        Found -> its report is applied. Not found by a look-up made after the window ->
        ``failed`` (the venue can no longer accept it). Look-ups failing throughout ->
        the venue's positions decide: the leg's position unchanged proves it was never
        booked; otherwise (or positions unreadable) it stays ``unknown``.
        """
        deadline = sent_at + self.recv_window_s + _CLOCK_SKEW_S
        give_up = deadline + self.recv_window_s + _CLOCK_SKEW_S
        delay = max(self.lookup_delay_s, 0.1)
        waited = 0.0
        last_failure: str | None = None
        while True:
            now = max(self.monotonic(), sent_at + waited)
            try:
                found = self.exchange.fetch_order_by_client_id(order.symbol, cid)
            except ExchangeError as e:
                last_failure = f"{type(e).__name__}: {e}"
                log.warning("look-up of %s failed: %s", cid, last_failure)
            else:
                if found is not None:
                    log.info("order %s found by client id after %s", cid, error)
                    return self._settle(cid, order, found)
                if now >= deadline:
                    msg = (f"{error}; not booked: the venue does not know client id {cid} "
                           "after its recvWindow passed")
                    return self._fail(cid, order, "failed", msg)
            if now >= give_up:
                break
            pause = min(delay, max(deadline - now, 0.0) or delay)
            self.sleep(pause)
            waited += pause
            delay = min(delay * 2, self.lookup_max_delay_s)
        if self._position_unchanged(order):
            msg = (f"{error}; look-ups failed ({last_failure}) but the venue's "
                   f"{order.symbol} position is unchanged after the recvWindow: not booked")
            return self._fail(cid, order, "failed", msg)
        msg = (f"{error}; outcome UNKNOWN: look-ups of client id {cid} failed "
               f"({last_failure}) and the venue's position does not rule out a fill")
        self.store.update_order(cid, "unknown", msg)
        return _Report(cid, 0.0, None, 0.0, "unknown", msg)

    def _position_unchanged(self, order: LegOrder) -> bool:
        """Whether the venue's position in the order's symbol equals what the store expects
        without the order (False when positions cannot be read)."""
        from pairlib.engine.reconcile import expected_positions

        fetch = getattr(self.exchange, "fetch_positions", None)
        if fetch is None:
            return False
        try:
            positions = fetch()
        except ExchangeError as e:
            log.warning("positions unavailable while resolving an order: %s", e)
            return False
        held = sum(float(p.contracts) for p in positions if p.symbol == order.symbol)
        expected = expected_positions(self.store.pair_states(),
                                      self.store.accepted_positions()).get(order.symbol, 0.0)
        rules = self.rules.get(order.symbol)
        tol = (rules.amount_step / 2) if rules is not None else 1e-9
        return abs(held - expected) <= tol

    def _lookup_once(self, symbol: str, cid: str) -> Any | None:
        """One look-up by client id; None when not found or when the look-up failed."""
        try:
            return self.exchange.fetch_order_by_client_id(symbol, cid)
        except ExchangeError as e:
            log.warning("look-up of %s failed: %s", cid, e)
            return None

    def _settle(self, cid: str, order: LegOrder, res: Any) -> _Report:
        """Record a venue report; an order still open (a resting remainder of a market
        order) is cancelled and its final state recorded."""
        rep = self._record(cid, order, res)
        if rep.status != "open":
            return rep
        try:
            res = self.exchange.cancel_order(order.symbol, str(res.id))
        except OrderNotFound:
            res = self._lookup_once(order.symbol, cid) or res
        except ExchangeError as e:
            log.warning("cancelling the rest of %s failed: %s", cid, e)
            rep.error = f"could not cancel the unfilled rest: {e}"
            return rep
        if res.status == "open":  # cancel acknowledged but not yet final
            res = self._lookup_once(order.symbol, cid) or res
        return self._record(cid, order, res)

    def _record(self, cid: str, order: LegOrder, res: Any) -> _Report:
        """Apply a venue report to the store: order row, new fill, leg amount (one tx)."""
        prev = self.store.order(cid)
        prev_filled = float(prev.filled) if prev is not None else 0.0
        prev_avg = prev.average if prev is not None else None
        prev_fee = float(prev.fee) if prev is not None else 0.0
        filled = float(res.filled or 0.0)
        # An older report (less filled than recorded, e.g. a stale look-up) keeps the
        # recorded average, as it keeps the recorded filled amount and fee.
        stale = filled < prev_filled
        average = prev_avg if res.average is None or stale else res.average
        fee = float(res.fee or 0.0)
        if filled > prev_filled + 1e-12 and fee <= 0.0:
            fee = self._trade_fees(order.symbol, res)
        fee = max(fee, prev_fee)
        now = self.clock.now()
        status = str(res.status)
        if prev is not None and prev.status in FINAL_STATUSES and status not in FINAL_STATUSES:
            status = prev.status  # a stale report (e.g. "open") never reopens a final order
        row = self._row(cid, order, status=status, now=now)
        if prev is not None and prev.tick_as_of:  # an order of an earlier tick keeps its tick
            row["tick_as_of"] = prev.tick_as_of
        row.update(exchange_id=str(res.id), filled=max(filled, prev_filled), average=average,
                   fee=fee, error=None)
        delta = filled - prev_filled
        if delta > 1e-12:
            price = _delta_price(prev_filled, prev_avg, filled, average)
            ts = res.timestamp
            fill = {"client_id": cid, "symbol": order.symbol, "side": order.side,
                    "amount": delta, "price": price, "fee": fee - prev_fee,
                    "ts": iso(now) if ts is None else _ms_iso(int(ts))}
            sign = 1.0 if order.side == "buy" else -1.0
            failpoint("exec.fill_before_store")
            self.store.apply_order_fill(row, fill, sign * delta)
            failpoint("exec.after_fill_store")
            log.info("order %s %s: filled %g @ %s (fee %.6g)", cid, res.status, delta,
                     f"{price:.8g}", fee - prev_fee)
        else:
            self.store.save_order(row)
        return _Report(cid, max(filled, prev_filled), average, fee, status)

    def _trade_fees(self, symbol: str, res: Any) -> float:
        """Fees of an order from its trades, when the order report carries none (Binance
        order responses have no commission). 0 when the venue cannot tell."""
        fetch = getattr(self.exchange, "fetch_my_trades", None)
        if fetch is None:
            return 0.0
        since = None if res.timestamp is None else int(res.timestamp) - 60_000
        try:
            trades = fetch(symbol, since)
        except ExchangeError as e:
            log.warning("fees of order %s unknown (trades unavailable: %s)", res.id, e)
            return 0.0
        return float(sum(t.fee for t in trades if str(t.order_id) == str(res.id)))

    def _fail(self, cid: str, order: LegOrder, status: str, error: str) -> _Report:
        log.warning("order %s %s: %s", cid, status, error)
        self._save(cid, order, status=status, error=error)
        return _Report(cid, 0.0, None, 0.0, status, error)

    def _row(self, cid: str, order: LegOrder, status: str, now: datetime) -> dict[str, Any]:
        return {
            "client_id": cid, "tick_as_of": iso(self.as_of), "pair_id": order.pair_id,
            "leg": order.leg, "action": order.action, "symbol": order.symbol,
            "side": order.side, "amount": float(order.amount), "status": status,
            "reduce_only": int(order.reduce_only), "created_at": iso(now),
            "updated_at": iso(now),
        }

    def _save(self, cid: str, order: LegOrder, status: str, error: str | None = None) -> None:
        row = self._row(cid, order, status=status, now=self.clock.now())
        row["error"] = error
        self.store.save_order(row)

    def _planned(self, order: LegOrder) -> LegOrder:
        """Record the intent of a first order, or reuse the amount recorded by an earlier
        run of this tick (a resumed entry completes the original plan)."""
        cid = client_order_id(self.as_of, order.pair_id, order.leg, order.action, 0)
        row = self.store.order(cid)
        if row is not None:
            return replace(order, amount=float(row["amount"]))
        self._save(cid, order, status="planned")
        failpoint("exec.order_planned")
        return order

    def _skip(self, order: LegOrder, why: str) -> None:
        cid = client_order_id(self.as_of, order.pair_id, order.leg, order.action, 0)
        row = self.store.order(cid)
        if row is not None and row["status"] == "planned":
            self._save(cid, order, status="skipped", error=why)

    def _unwind_all(self, fills: list[LegFill]) -> tuple[LegFill, ...]:
        """Close, reduce-only, what the given entry legs filled (:meth:`close_leg`)."""
        out = []
        for f in fills:
            if f.filled <= 0:
                continue
            o = f.order
            unwind = LegOrder(o.pair_id, o.leg, "unwind", o.symbol,
                              "sell" if o.side == "buy" else "buy", f.filled, reduce_only=True)
            failpoint("exec.before_unwind")
            out.append(self.close_leg(unwind))
        return tuple(out)

    # ------------------------------------------------------------------ start of tick
    def cancel_resting(self, client_id: str, venue_order: Any) -> bool:
        """Cancel the unfilled rest of one of our orders found resting at the venue and
        record its final state. Returns False when the store does not know the order."""
        row = self.store.order(client_id)
        if row is None:
            return False
        order = _order_of(row)
        log.warning("own order %s rests at the venue: cancelling the rest", client_id)
        self._settle(client_id, order, venue_order)
        return True

    def resolve_pending(self) -> list[str]:
        """Resolve orders left ``sent``, ``unknown``, ``open`` or ``planned`` by earlier runs.

        Each is looked up by client id: found -> its fills are applied (they become the
        pair's residual, flattened by the tick, unless this tick's resumed run completes
        them); an earlier tick's order not found and older than :attr:`unknown_grace` ->
        ``failed`` (never arrived); ``planned`` of an earlier tick -> ``skipped``. Returns
        one line per order looked at.
        """
        pending = self.store.orders(statuses=sorted(_PENDING))
        notes: list[str] = []
        for row in pending.to_dict("records"):
            cid = str(row["client_id"])
            order = _order_of(row)
            mine = row["tick_as_of"] == iso(self.as_of)
            if row["status"] == "planned":
                if not mine:
                    self._save_as(row, "skipped", "planned by an earlier tick, never sent")
                    notes.append(f"{cid}: planned, never sent -> skipped")
                continue
            try:
                found = self.exchange.fetch_order_by_client_id(order.symbol, cid)
            except ExchangeError as e:
                notes.append(f"{cid}: still unknown ({e})")
                continue
            if found is not None:
                rep = self._settle(cid, order, found)
                notes.append(f"{cid}: found at the venue, {rep.status}, filled {rep.filled:g}")
                if not mine and rep.filled > 0:
                    self.incident("late_fill", order.symbol,
                                  f"order {cid} of tick {row['tick_as_of']} ({order.action} "
                                  f"{order.side} {order.symbol}) turned out {rep.status} with "
                                  f"{rep.filled:g} filled; applied to {order.pair_id}")
                continue
            if mine:  # this tick's own order: a resumed run decides (see _submit)
                notes.append(f"{cid}: not at the venue; left to this tick's resumed run")
                continue
            age = self.clock.now() - parse_time(str(row["updated_at"]))
            if age >= self.unknown_grace:
                self._save_as(row, "failed", f"unknown to the venue {age} after sending: lost")
                notes.append(f"{cid}: unknown to the venue after {age} -> failed")
        return notes

    def recheck_unresolved(self) -> list[str]:
        """Before the tick ends: look up once more every order of this tick whose outcome
        is still unknown (:meth:`_await_outcome`, its window long passed). Returns one
        line per order looked at."""
        rows = self.store.orders(tick_as_of=self.as_of, statuses=sorted(_UNRESOLVED))
        notes: list[str] = []
        for row in rows.to_dict("records"):
            cid = str(row["client_id"])
            past = self.monotonic() - self.recv_window_s - _CLOCK_SKEW_S
            rep = self._await_outcome(cid, _order_of(row), past, f"re-check of {cid}")
            notes.append(f"{cid}: {rep.status}, filled {rep.filled:g}")
        return notes

    def _save_as(self, row: Mapping[str, Any], status: str, error: str) -> None:
        self.store.update_order(str(row["client_id"]), status, error, self.clock.now())


def _order_of(row: OrderRow | Mapping[str, Any]) -> LegOrder:
    """The intended order of a stored order row."""
    return LegOrder(str(row["pair_id"]), str(row["leg"]), str(row["action"]),
                    str(row["symbol"]), str(row["side"]), float(row["amount"]),
                    bool(row["reduce_only"]))


def _sendable(amount: float, rules: MarketRules | None) -> float:
    """``amount`` as it can be sent: floored to the market's amount step, or, on a market
    without rules, rounded to 12 decimals (``5 - 4.6`` is sent as 0.4, not
    0.3999999999999999)."""
    return round_amount(amount, rules) if rules is not None else round(amount, 12)


def _below_minimum(amount: float, price: float | None, rules: MarketRules | None) -> bool:
    """Whether an order of ``amount`` is below the market's minimum amount or (at
    ``price``, when known) its minimum notional: the venue would refuse it."""
    if rules is None:
        return False
    if amount < rules.min_amount:
        return True
    return bool(price and rules.min_notional
                and amount * price * rules.contract_size < rules.min_notional)


def _unwind_text(unwinds: tuple[LegFill, ...]) -> str:
    if not unwinds:
        return "nothing to unwind"
    return "; ".join(
        f"unwound {u.filled:g} of {u.order.amount:g} {u.order.symbol} reduce-only"
        + ("" if u.complete else f" (INCOMPLETE: {u.error})") for u in unwinds
    )


def _delta_price(
    prev_filled: float, prev_avg: float | None, filled: float, average: float | None
) -> float:
    """Average price of the newly filled part of an order."""
    if average is None:
        log.warning("a fill without an average price: recorded at price 0")
        return 0.0
    if prev_filled <= 0 or prev_avg is None:
        return float(average)
    delta = filled - prev_filled
    price = (float(average) * filled - float(prev_avg) * prev_filled) / delta
    return price if math.isfinite(price) and price > 0 else float(average)


def _ms_iso(ms: int) -> str:
    return iso(from_ms(ms))

