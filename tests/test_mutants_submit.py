"""What one order's placement does, pinned (``Executor._submit``, ``_row``, ``_save``,
``client_order_id``, ``is_own_client_id``): the exact client id of every leg, action and
attempt and the errors refusing a bad one; an order already final in the store is reported
from the store and never sent again; a failed look-up sends nothing and leaves no row (an
unlisted market is marked so); an order found at the venue is settled, not sent; one left
``sent``/``unknown``/``open`` by an earlier run is awaited and sent only if never booked; an
order is saved ``sent`` (every column) before it is created; and each answer of the create
call (lost in transit, unknown symbol, rejected, duplicate client id, any other venue error)
ends in the report, store row and error text written out here by hand."""

from __future__ import annotations

import doctest
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from test_mutants_execution import PAIR, RULES, T0, Venue, X, Y

from pairlib.clock import SettableClock
from pairlib.edges.store import Store
from pairlib.engine.execution import (
    Executor,
    LegOrder,
    _Report,
    client_order_id,
    is_own_client_id,
)
from pairlib.errors import (
    ExchangeUnavailable,
    InsufficientFunds,
    InvalidOrder,
    MarketNotListed,
)
from pairlib.venue.records import OrderResult

T1 = T0 + timedelta(minutes=2, seconds=30)  # the executor's clock: rows are stamped with it
TICK, AT1, AT2 = "2026-01-31T20:00:00Z", "2026-01-31T20:02:30Z", "2026-01-31T20:02:37Z"
BASE = "pl-2601312000-068ccbb659"  # the tick 2026-01-31 20:00, sha1(PAIR)[:10]
CID = f"{BASE}-y-el"  # attempt 0 of the y leg of an enter_long
BUY5 = LegOrder(PAIR, "y", "enter_long", Y, "buy", 5.0)
COLUMNS = ("client_id", "exchange_id", "tick_as_of", "pair_id", "leg", "action", "symbol",
           "side", "amount", "filled", "average", "fee", "status", "reduce_only",
           "created_at", "updated_at", "error")


# ----------------------------------------------------------------------------- client ids

@pytest.mark.parametrize(("action", "code"), [
    ("enter_long", "el"), ("enter_short", "es"), ("exit", "ex"), ("stop", "st"),
    ("unwind", "uw"), ("flatten", "fl"), ("exit_no_data", "nd"), ("loss_limit", "ll"),
])
@pytest.mark.parametrize("leg", ["y", "x"])
def test_the_client_id_of_every_leg_and_action(leg: str, action: str, code: str) -> None:
    assert client_order_id(T0, PAIR, leg, action) == f"{BASE}-{leg}-{code}"


@pytest.mark.parametrize(("when", "pair", "attempt", "cid"), [
    (T0, PAIR, 0, "pl-2601312000-068ccbb659-x-ex"),
    (T0, PAIR, 1, "pl-2601312000-068ccbb659-x-ex-r1"),
    (T0, PAIR, 7, "pl-2601312000-068ccbb659-x-ex-r7"),
    (T0, PAIR, 99, "pl-2601312000-068ccbb659-x-ex-r99"),
    # year, month, day, hour and minute, each two digits (UTC)
    (datetime(2027, 3, 5, 7, 45, tzinfo=UTC), PAIR, 0, "pl-2703050745-068ccbb659-x-ex"),
    # an aware time of another zone is the same instant in UTC
    (datetime(2027, 3, 5, 9, 45, tzinfo=timezone(timedelta(hours=2))), PAIR, 0,
     "pl-2703050745-068ccbb659-x-ex"),
    (T0, "A/USDT:USDT~B/USDT:USDT", 2, "pl-2601312000-92f2640f68-x-ex-r2"),
    (T0, "CCC/USDT:USDT~DDD/USDT:USDT", 0, "pl-2601312000-6a84605eb2-x-ex"),
])
def test_the_client_id_names_tick_pair_and_attempt(when: datetime, pair: str, attempt: int,
                                                   cid: str) -> None:
    assert client_order_id(when, pair, "x", "exit", attempt) == cid
    assert is_own_client_id(cid)


def test_the_first_attempt_is_the_default() -> None:
    assert client_order_id(T0, PAIR, "y", "stop") == f"{BASE}-y-st"


@pytest.mark.parametrize(("leg", "action", "attempt", "message"), [
    ("z", "exit", 0, "leg must be 'y' or 'x', got 'z'"),
    ("Y", "exit", 0, "leg must be 'y' or 'x', got 'Y'"),
    ("", "exit", 0, "leg must be 'y' or 'x', got ''"),
    ("y", "buy", 0, "action 'buy' unknown; allowed: enter_long, enter_short, exit, stop, "
                    "unwind, flatten, exit_no_data, loss_limit"),
    ("x", "hold", 0, "action 'hold' unknown; allowed: enter_long, enter_short, exit, stop, "
                     "unwind, flatten, exit_no_data, loss_limit"),  # an Action, not an order's
    ("y", "exit", -1, "attempt must be in 0..99, got -1"),
    ("y", "exit", 100, "attempt must be in 0..99, got 100"),
])
def test_a_bad_client_id_request_is_refused_with_its_reason(leg: str, action: str,
                                                             attempt: int, message: str) -> None:
    with pytest.raises(ValueError) as err:
        client_order_id(T0, PAIR, leg, action, attempt)
    assert str(err.value) == message


@pytest.mark.parametrize(("client_id", "own"), [
    ("pl-2601312000-068ccbb659-y-el", True),
    ("pl-", True),
    ("manual-1", False),
    ("xpl-2601312000", False),
    ("pl2601312000", False),
    ("PL-2601312000", False),
    ("", False),
    (None, False),
])
def test_own_client_ids_are_those_starting_pl_dash(client_id: str | None, own: bool) -> None:
    assert is_own_client_id(client_id) is own


def test_the_client_id_docstring_example_holds() -> None:
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for t in finder.find(client_order_id, "client_order_id",
                         globs={"client_order_id": client_order_id}):
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


# ----------------------------------------------------------------------------- a desk

@dataclass
class Desk(Venue):
    """:class:`Venue` that also records every look-up, answers look-ups from a script
    (an exception is raised, ``"miss"`` answers None even for a booked order; past the script
    the booked order is returned), raises a scripted exception from a create call, refuses a
    client id it has booked already (duplicate) and notes the store's row of each order when
    it is created (its clock moves 7 s per create call)."""

    lookups: list[Any] = field(default_factory=list)
    asked: list[tuple[str, str]] = field(default_factory=list)
    at_send: list[dict[str, Any] | None] = field(default_factory=list)
    store: Store | None = None
    clock: SettableClock | None = None

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        self.asked.append((symbol, client_id))
        step = self.lookups.pop(0) if self.lookups else None
        if isinstance(step, Exception):
            raise step
        if step == "miss":
            return None
        return super().fetch_order_by_client_id(symbol, client_id)

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        assert self.store is not None and self.clock is not None
        row = self.store.order(client_id)
        self.at_send.append(None if row is None else row.as_dict())
        self.clock.advance(timedelta(seconds=7))
        if client_id in self.orders:
            self.sent.append((client_id, side, amount, symbol, reduce_only))
            raise InvalidOrder("duplicate client id (-4116)")
        if self.script and isinstance(self.script[0], Exception):
            self.sent.append((client_id, side, amount, symbol, reduce_only))
            raise self.script.pop(0)
        return super().create_order(symbol, side, amount, client_id, type, price,
                                    reduce_only)


def _desk(script: list[Any] | None = None, lookups: list[Any] | None = None,
          amounts: tuple[float, float] = (0.0, 0.0)
          ) -> tuple[Desk, Store, Executor, list[float]]:
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": amounts[0], "amount_x": amounts[1],
                           "position": 1 if amounts[0] else 0})
    clock = SettableClock(T1)
    desk = Desk(script=list(script or []), lookups=list(lookups or []),
                positions={Y: amounts[0], X: amounts[1]}, store=store, clock=clock)
    sleeps: list[float] = []
    ex = Executor(desk, store, T0, clock, RULES, lookup_delay_s=0.0, recv_window_s=0.0,
                  sleep=sleeps.append, monotonic=lambda: 0.0)
    return desk, store, ex, sleeps


def _rows(store: Store) -> list[dict[str, Any]]:
    """Every column of every order row (None for SQL NULL)."""
    out = []
    for r in store.orders().to_dict("records"):
        assert set(r) == set(COLUMNS)
        out.append({k: None if isinstance(r[k], float) and math.isnan(r[k]) else r[k]
                    for k in COLUMNS})
    return out


def _row(cid: str = CID, status: str = "sent", order: LegOrder = BUY5, *,
         exchange_id: str | None = None, filled: float = 0.0, average: float | None = None,
         fee: float = 0.0, created: str = AT1, updated: str = AT1,
         error: str | None = None) -> dict[str, Any]:
    """An order row written out column by column."""
    return {"client_id": cid, "exchange_id": exchange_id, "tick_as_of": TICK,
            "pair_id": order.pair_id, "leg": order.leg, "action": order.action,
            "symbol": order.symbol, "side": order.side, "amount": order.amount,
            "filled": filled, "average": average, "fee": fee, "status": status,
            "reduce_only": int(order.reduce_only), "created_at": created,
            "updated_at": updated, "error": error}


def _store_row(store: Store, cid: str, order: LegOrder, status: str, filled: float = 0.0,
               average: float | None = None, fee: float = 0.0,
               error: str | None = None) -> None:
    """A row as an earlier run left it (saved at the tick's time)."""
    early = Executor(Venue(), store, T0, SettableClock(T0), RULES)
    early._save(cid, order, status)
    with store.tx() as db:
        db.execute("UPDATE orders SET filled = ?, average = ?, fee = ?, error = ? "
                   "WHERE client_id = ?", (filled, average, fee, error, cid))


def _booked(cid: str, filled: float = 5.0, average: float | None = 101.0,
            status: str = "closed", fee: float = 0.05) -> OrderResult:
    return OrderResult(id="900", client_id=cid, symbol=Y, side="buy", type="market",
                       amount=5.0, filled=filled, average=average, status=status, fee=fee,
                       timestamp=1_769_889_600_000, reduce_only=False)


# ----------------------------------------------------------------------------- the store first

@pytest.mark.parametrize(("status", "filled", "average", "fee", "error"), [
    ("closed", 5.0, 101.0, 0.05, None),
    ("expired", 2.0, 101.5, 0.02, None),
    ("rejected", 0.0, None, 0.0, "InvalidOrder: rejected by the venue"),
    ("failed", 0.0, None, 0.0, "ExchangeUnavailable: lost; not booked"),
    ("canceled", 1.5, 99.5, 0.015, None),
    ("skipped", 0.0, None, 0.0, "planned by an earlier tick, never sent"),
])
def test_an_order_final_in_the_store_is_reported_from_it_and_not_sent_again(
        status: str, filled: float, average: float | None, fee: float,
        error: str | None) -> None:
    desk, store, ex, sleeps = _desk()
    _store_row(store, CID, BUY5, status, filled, average, fee, error)
    before = _rows(store)
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, filled, average, fee, status, error)
    assert (desk.asked, desk.sent, sleeps) == ([], [], [])  # not even looked up at the venue
    assert _rows(store) == before
    store.close()


# ----------------------------------------------------------------------------- look-up fails

@pytest.mark.parametrize(("failure", "message", "unlisted"), [
    (ExchangeUnavailable("look-up timed out"),
     "not sent: look-up by client id failed: look-up timed out", set()),
    (MarketNotListed("AAA/USDT:USDT: unknown symbol (-1121)"),
     "not sent: AAA/USDT:USDT is not listed by the venue any more: AAA/USDT:USDT: unknown "
     "symbol (-1121)", {Y}),
])
def test_a_failed_look_up_sends_nothing_and_leaves_no_row(failure: Exception, message: str,
                                                          unlisted: set[str]) -> None:
    desk, store, ex, sleeps = _desk(lookups=[failure])
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, 0.0, None, 0.0, "failed", message, unlisted=bool(unlisted))
    assert desk.asked == [(Y, CID)]
    assert (desk.sent, sleeps, _rows(store), ex.unlisted) == ([], [], [], unlisted)
    # a re-run can still send it: nothing in the store says it was ever tried
    again = ex._submit(BUY5, 0)
    assert (again.status, again.filled, desk.sent) == ("closed", 5.0,
                                                       [(CID, "buy", 5.0, Y, False)])
    store.close()


def test_a_failed_look_up_is_the_entry_legs_error() -> None:
    desk, store, ex, _ = _desk(lookups=[ExchangeUnavailable("look-up timed out")])
    fill = ex.fill_leg(BUY5)
    assert (fill.filled, fill.complete, fill.client_ids, fill.error, fill.unknown) == (
        0.0, False, (CID,), "not sent: look-up by client id failed: look-up timed out", False)
    assert desk.sent == [] and _rows(store) == []
    store.close()


@pytest.mark.parametrize(("failure", "message", "unlisted"), [
    (ExchangeUnavailable("look-up timed out"),
     "not sent: look-up by client id failed: look-up timed out", set()),
    (MarketNotListed("unknown symbol (-1121)"),
     "not sent: AAA/USDT:USDT is not listed by the venue any more: unknown symbol (-1121)",
     {Y}),
])
@pytest.mark.parametrize(("status", "filled", "average", "fee"), [
    ("open", 2.0, 101.5, 0.02),  # partly filled, the rest resting
    ("sent", 0.0, None, 0.0),
    ("unknown", 0.0, None, 0.0),
    ("planned", 0.0, None, 0.0),
])
def test_a_failed_look_up_of_a_stored_order_reports_the_row_as_it_is(
        status: str, filled: float, average: float | None, fee: float, failure: Exception,
        message: str, unlisted: set[str]) -> None:
    desk, store, ex, sleeps = _desk(lookups=[failure])
    _store_row(store, CID, BUY5, status, filled, average, fee)
    before = _rows(store)
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, filled, average, fee, status, message, unlisted=bool(unlisted))
    assert (desk.asked, desk.sent, sleeps) == ([(Y, CID)], [], [])
    assert _rows(store) == before and ex.unlisted == unlisted
    store.close()


# ----------------------------------------------------------------------------- found at the venue

@pytest.mark.parametrize("stored", [None, "planned", "sent", "unknown", "open"])
def test_an_order_found_at_the_venue_is_settled_not_sent(stored: str | None) -> None:
    desk, store, ex, sleeps = _desk()
    if stored is not None:
        _store_row(store, CID, BUY5, stored)
    desk.orders[CID] = _booked(CID)
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, 5.0, 101.0, 0.05, "closed")
    assert (desk.asked, desk.sent, sleeps) == ([(Y, CID)], [], [])
    assert _rows(store) == [_row(status="closed", exchange_id="900", filled=5.0,
                                 average=101.0, fee=0.05,
                                 created=TICK if stored else AT1)]
    assert store.pair_state(PAIR)["amount_y"] == 5.0
    store.close()


# ----------------------------------------------------------------------------- earlier runs

@pytest.mark.parametrize("stored", ["sent", "unknown", "open"])
def test_an_earlier_runs_order_never_booked_is_awaited_then_sent(stored: str) -> None:
    desk, store, ex, sleeps = _desk()
    _store_row(store, CID, BUY5, stored)
    rep = ex._submit(BUY5, 0)
    # looked up until a full recvWindow (0 s) plus the 1 s clock-skew margin had passed
    assert sum(sleeps) == pytest.approx(1.0) and len(desk.asked) > 2
    assert set(desk.asked) == {(Y, CID)}
    assert desk.sent == [(CID, "buy", 5.0, Y, False)]  # then sent once, under its own id
    assert desk.at_send == [_row(created=TICK)]  # saved as sent again, its error cleared
    assert rep == _Report(CID, 5.0, 101.0, 0.05, "closed")
    assert _rows(store) == [_row(status="closed", exchange_id="1000", filled=5.0,
                                 average=101.0, fee=0.05, created=TICK, updated=AT2)]
    store.close()


@pytest.mark.parametrize("stored", ["sent", "unknown", "open"])
def test_an_earlier_runs_order_booked_meanwhile_is_settled_not_sent(stored: str) -> None:
    desk, store, ex, sleeps = _desk(lookups=["miss", "miss"])
    _store_row(store, CID, BUY5, stored)
    desk.orders[CID] = _booked(CID, filled=3.0, average=102.0, status="expired", fee=0.03)
    rep = ex._submit(BUY5, 0)
    assert desk.asked == [(Y, CID)] * 3 and desk.sent == [] and len(sleeps) == 1
    assert rep == _Report(CID, 3.0, 102.0, 0.03, "expired")
    assert _rows(store) == [_row(status="expired", exchange_id="900", filled=3.0,
                                 average=102.0, fee=0.03, created=TICK)]
    store.close()


def test_an_earlier_runs_order_still_unknown_is_not_sent_and_says_why() -> None:
    fails = [ExchangeUnavailable("look-up timed out")] * 50
    desk, store, ex, _ = _desk(lookups=[None, *fails], amounts=(0.0, 0.0))
    desk.positions[Y] = 2.0  # the venue holds what the store does not: it may have filled
    _store_row(store, CID, BUY5, "sent")
    rep = ex._submit(BUY5, 0)
    why = (f"order {CID} left sent by an earlier run; outcome UNKNOWN: look-ups of client id "
           f"{CID} failed (ExchangeUnavailable: look-up timed out) and the venue's position "
           "does not rule out a fill")
    assert rep == _Report(CID, 0.0, None, 0.0, "unknown", why)
    assert desk.sent == []
    assert _rows(store) == [_row(status="unknown", created=TICK, updated=TICK, error=why)]
    store.close()


def test_a_planned_order_is_sent_at_once() -> None:
    desk, store, ex, sleeps = _desk()
    ex._planned(BUY5)
    rep = ex._submit(BUY5, 0)
    assert (desk.asked, sleeps) == ([(Y, CID)], [])  # one look-up, no wait
    assert desk.sent == [(CID, "buy", 5.0, Y, False)]
    assert desk.at_send == [_row()]
    assert rep == _Report(CID, 5.0, 101.0, 0.05, "closed")
    store.close()


# ----------------------------------------------------------------------------- sending

@pytest.mark.parametrize(("order", "attempt", "cid"), [
    (BUY5, 0, CID),
    (LegOrder(PAIR, "x", "exit", X, "buy", 3.0, reduce_only=True), 2, f"{BASE}-x-ex-r2"),
    (LegOrder(PAIR, "y", "unwind", Y, "sell", 0.7, reduce_only=True), 1, f"{BASE}-y-uw-r1"),
])
def test_an_order_is_saved_as_sent_then_created(order: LegOrder, attempt: int,
                                                cid: str) -> None:
    desk, store, ex, sleeps = _desk()
    rep = ex._submit(order, attempt)
    assert desk.asked == [(order.symbol, cid)] and sleeps == []
    assert desk.sent == [(cid, order.side, order.amount, order.symbol, order.reduce_only)]
    assert desk.at_send == [_row(cid, "sent", order)]  # in the store before the venue saw it
    fee = round(order.amount * 0.01, 6)
    assert rep == _Report(cid, order.amount, 101.0, fee, "closed")
    assert _rows(store) == [_row(cid, "closed", order, exchange_id="1000",
                                 filled=order.amount, average=101.0, fee=fee, updated=AT2)]
    signed = order.amount if order.side == "buy" else -order.amount
    assert store.pair_state(PAIR)[f"amount_{order.leg}"] == signed
    store.close()


def test_a_partly_filled_order_reports_what_filled() -> None:
    desk, store, ex, _ = _desk(script=[0.4])
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, 2.0, 101.0, 0.02, "expired")
    assert _rows(store) == [_row(status="expired", exchange_id="1000", filled=2.0,
                                 average=101.0, fee=0.02, updated=AT2)]
    store.close()


def test_an_order_whose_response_is_lost_but_was_booked_is_settled() -> None:
    desk, store, ex, sleeps = _desk(script=["drop"])
    rep = ex._submit(BUY5, 0)
    assert desk.sent == [(CID, "buy", 5.0, Y, False)]  # never sent twice
    assert desk.asked == [(Y, CID), (Y, CID)] and sleeps == []
    assert rep == _Report(CID, 5.0, 101.0, 0.05, "closed")
    assert _rows(store) == [_row(status="closed", exchange_id="1000", filled=5.0,
                                 average=101.0, fee=0.05, updated=AT2)]
    store.close()


def test_an_order_lost_before_the_venue_saw_it_fails_after_its_window() -> None:
    desk, store, ex, sleeps = _desk(script=["lose"])
    rep = ex._submit(BUY5, 0)
    why = (f"ExchangeUnavailable: connection reset before the venue saw it; not booked: the "
           f"venue does not know client id {CID} after its recvWindow passed")
    assert desk.sent == [(CID, "buy", 5.0, Y, False)]
    assert sum(sleeps) == pytest.approx(1.0)  # recvWindow 0 s + the 1 s clock-skew margin
    assert rep == _Report(CID, 0.0, None, 0.0, "failed", why)
    assert _rows(store) == [_row(status="failed", updated=AT2, error=why)]
    store.close()


def test_an_order_lost_in_transit_that_stays_unconfirmed_is_unknown() -> None:
    fails = [ExchangeUnavailable("look-up timed out")] * 50
    desk, store, ex, _ = _desk(script=[ExchangeUnavailable("read timeout")],
                               lookups=[None, *fails])
    desk.positions[Y] = 5.0  # as if it had filled
    rep = ex._submit(BUY5, 0)
    why = (f"ExchangeUnavailable: read timeout; outcome UNKNOWN: look-ups of client id {CID} "
           "failed (ExchangeUnavailable: look-up timed out) and the venue's position does not "
           "rule out a fill")
    assert rep == _Report(CID, 0.0, None, 0.0, "unknown", why)
    assert desk.sent == [(CID, "buy", 5.0, Y, False)]
    assert _rows(store) == [_row(status="unknown", error=why)]
    store.close()


def test_an_order_on_a_market_the_venue_no_longer_lists_is_rejected_and_marked() -> None:
    desk, store, ex, sleeps = _desk(script=[MarketNotListed("unknown symbol (-1121)")])
    rep = ex._submit(BUY5, 0)
    why = "MarketNotListed: unknown symbol (-1121)"
    assert rep == _Report(CID, 0.0, None, 0.0, "rejected", why, unlisted=True)
    assert (desk.asked, sleeps, ex.unlisted) == ([(Y, CID)], [], {Y})  # not looked up again
    assert _rows(store) == [_row(status="rejected", updated=AT2, error=why)]
    store.close()


def test_an_unlisted_market_stops_the_entry_leg() -> None:
    desk, store, ex, _ = _desk(script=[MarketNotListed("unknown symbol (-1121)")])
    fill = ex.fill_leg(BUY5)
    assert (fill.filled, fill.complete, fill.error) == (
        0.0, False, "MarketNotListed: unknown symbol (-1121)")
    assert len(desk.sent) == 1
    store.close()


def test_a_rejected_order_is_looked_up_once_then_recorded_rejected() -> None:
    desk, store, ex, sleeps = _desk(script=["reject"])
    rep = ex._submit(BUY5, 0)
    why = "InvalidOrder: rejected by the venue"
    assert rep == _Report(CID, 0.0, None, 0.0, "rejected", why)
    assert (desk.asked, sleeps, ex.unlisted) == ([(Y, CID), (Y, CID)], [], set())
    assert _rows(store) == [_row(status="rejected", updated=AT2, error=why)]
    store.close()


def test_a_rejected_order_whose_look_up_fails_is_rejected() -> None:
    desk, store, ex, _ = _desk(script=["reject"],
                               lookups=[None, ExchangeUnavailable("look-up timed out")])
    rep = ex._submit(BUY5, 0)
    assert rep == _Report(CID, 0.0, None, 0.0, "rejected", "InvalidOrder: rejected by the venue")
    assert len(desk.asked) == 2 and len(desk.sent) == 1
    store.close()


@pytest.mark.parametrize("order", [
    BUY5, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, reduce_only=True)])
def test_a_duplicate_client_id_means_the_order_exists(order: LegOrder) -> None:
    # booked, but the look-up before sending did not see it yet: the venue refuses the
    # duplicate id and one more look-up finds it
    cid = client_order_id(T0, PAIR, "y", order.action)
    desk, store, ex, sleeps = _desk(lookups=["miss"], amounts=(5.0, 0.0) if order.reduce_only
                                    else (0.0, 0.0))
    desk.orders[cid] = OrderResult(id="900", client_id=cid, symbol=Y, side=order.side,
                                   type="market", amount=5.0, filled=5.0, average=101.0,
                                   status="closed", fee=0.05, timestamp=1_769_889_600_000,
                                   reduce_only=order.reduce_only)
    rep = ex._submit(order, 0)
    assert desk.sent == [(cid, order.side, 5.0, Y, order.reduce_only)]
    assert (desk.asked, sleeps) == ([(Y, cid), (Y, cid)], [])
    assert rep == _Report(cid, 5.0, 101.0, 0.05, "closed")
    assert _rows(store) == [_row(cid, "closed", order, exchange_id="900", filled=5.0,
                                 average=101.0, fee=0.05, updated=AT2)]
    assert store.pair_state(PAIR)["amount_y"] == (0.0 if order.reduce_only else 5.0)
    store.close()


def test_any_other_venue_error_rejects_the_order_without_a_look_up() -> None:
    desk, store, ex, sleeps = _desk(script=[InsufficientFunds("margin is insufficient "
                                                              "(-2019)")])
    rep = ex._submit(BUY5, 0)
    why = "InsufficientFunds: margin is insufficient (-2019)"
    assert rep == _Report(CID, 0.0, None, 0.0, "rejected", why)
    assert (desk.asked, sleeps, ex.unlisted) == ([(Y, CID)], [], set())
    assert _rows(store) == [_row(status="rejected", updated=AT2, error=why)]
    store.close()


# ----------------------------------------------------------------------------- rows

def test_a_saved_row_holds_every_column_of_the_order() -> None:
    desk, store, ex, _ = _desk()
    short = LegOrder(PAIR, "x", "flatten", X, "sell", 2, reduce_only=True)
    ex._save(f"{BASE}-x-fl", short, "planned")
    ex._save(f"{BASE}-x-fl-r1", short, "skipped", error="nothing left to flatten")
    assert _rows(store) == [
        _row(f"{BASE}-x-fl", "planned", short),
        _row(f"{BASE}-x-fl-r1", "skipped", short, error="nothing left to flatten"),
    ]
    assert isinstance(_rows(store)[0]["amount"], float)
    desk.clock.advance(timedelta(seconds=7))  # type: ignore[union-attr]
    ex._save(f"{BASE}-x-fl", short, "failed", error="refused")  # saved again: same creation
    assert _rows(store)[0] == _row(f"{BASE}-x-fl", "failed", short, updated=AT2,
                                   error="refused")
    ex._save(f"{BASE}-x-fl", short, "sent")  # and saving clears an earlier error
    assert _rows(store)[0] == _row(f"{BASE}-x-fl", "sent", short, updated=AT2)
    assert desk.sent == []
    store.close()
