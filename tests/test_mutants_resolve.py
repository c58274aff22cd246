"""What the mutation run (``tests/mutation.py``) showed the tests left loose in resolving orders
whose outcome is not known, pinned: the look-ups of a lost order by client id and the exact
pauses between them (backoff, capped by the time left to ``sent_at + recvWindow + 1 s``, then
one more window before giving up; time passing by the injected monotonic or by the sleeps),
the venue's positions deciding when every look-up failed (half an amount step of tolerance,
1e-9 without market rules, expected amounts from the pairs and the operator's accepted
positions), the start-of-tick resolution of earlier runs' orders (``resolve_pending``: skipped,
settled, late fills, lost after ``unknown_grace``) and the end-of-tick re-check
(``recheck_unresolved``): statuses, errors and notes word for word, the store rows and their
``updated_at``, and the incidents (in the store and on the executor, with the clock's time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from test_mutants_execution import PAIR, RULES, T0, Venue, X, Y

from pairlib.clock import SettableClock, iso
from pairlib.core.risk import MarketRules
from pairlib.edges.store import Store
from pairlib.engine.execution import Executor, LegFill, LegOrder, client_order_id
from pairlib.errors import ExchangeUnavailable
from pairlib.venue.records import OrderResult, PositionInfo

H4 = timedelta(hours=4)
NOW = T0 + timedelta(minutes=30)  # the executor's clock (store rows, incidents, ages)
OTHER = "CCC/USDT:USDT~DDD/USDT:USDT"  # a pair the store does not hold
C = "CCC/USDT:USDT"
TIMEOUT = "ExchangeUnavailable: look-up timed out"


@dataclass
class Timer:
    """The executor's ``monotonic`` and ``sleep``: ``readings`` are what successive
    ``monotonic()`` calls return (the last one sticks: no time passes but the sleeps), or,
    ``ticking``, the clock moves on by each sleep; a wait that never ends is stopped."""

    readings: list[float] = field(default_factory=lambda: [10.0])
    sleeps: list[float] = field(default_factory=list)
    ticking: bool = False

    def monotonic(self) -> float:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        if self.ticking:
            self.readings[-1] += s
        if len(self.sleeps) > 60:
            raise RuntimeError("the wait never ends")


@dataclass
class LookupVenue(Venue):
    """:class:`Venue` that records every look-up by client id; ``blind_after_create``: that
    many look-ups fail after each create call; ``unreachable``: client ids whose look-up
    always fails; ``positions_fail``: positions cannot be read."""

    lookups: list[tuple[str, str]] = field(default_factory=list)
    blind_after_create: int = 0
    unreachable: set[str] = field(default_factory=set)
    positions_fail: bool = False

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        try:
            return super().create_order(symbol, side, amount, client_id, type, price,
                                        reduce_only)
        finally:
            if self.blind_after_create:
                self.lookup_fails = self.blind_after_create

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        self.lookups.append((symbol, client_id))
        if client_id in self.unreachable:
            raise ExchangeUnavailable("look-up timed out")
        return super().fetch_order_by_client_id(symbol, client_id)

    def fetch_positions(self) -> list[PositionInfo]:
        if self.positions_fail:
            raise ExchangeUnavailable("positions timed out")
        return super().fetch_positions()


class BlindVenue:
    """A venue whose look-ups all fail and that has no positions call at all."""

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> None:
        raise ExchangeUnavailable("look-up timed out")


def _store(amount_y: float = 0.0, amount_x: float = 0.0) -> Store:
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": amount_y, "amount_x": amount_x,
                           "position": 1 if amount_y else 0})
    return store


def _executor(venue: Any, store: Store, timer: Timer, rules: Any = RULES,
              **kw: Any) -> Executor:
    args: dict[str, Any] = {"recv_window_s": 2.0, "lookup_delay_s": 0.5,
                            "lookup_max_delay_s": 1.0, **kw}
    return Executor(venue, store, T0, SettableClock(NOW), rules, sleep=timer.sleep,
                    monotonic=timer.monotonic, **args)


def _row(store: Store, cid: str) -> tuple[Any, ...]:
    r = store.order(cid)
    assert r is not None
    return (r.status, r.filled, r.error)


def _result(cid: str, symbol: str, side: str, amount: float, filled: float, status: str,
            average: float | None = 100.0) -> OrderResult:
    return OrderResult(id=f"v-{cid[-5:]}", client_id=cid, symbol=symbol, side=side,
                       type="market", amount=amount, filled=filled,
                       average=average if filled else None, status=status,
                       fee=round(filled * 0.01, 6), timestamp=1_769_889_600_000,
                       reduce_only=False)


BUY_Y = LegOrder(PAIR, "y", "enter_long", Y, "buy", 5.0)
CID_EL = client_order_id(T0, PAIR, "y", "enter_long")
CID_EX = client_order_id(T0, PAIR, "y", "exit")
LOST = "ExchangeUnavailable: connection reset before the venue saw it"


# ------------------------------------------------------------------ _await_outcome
def test_a_lost_order_not_at_the_venue_fails_once_its_window_passed() -> None:
    """Sent at 10 with a 2 s window: looked up until 10 + 2 + 1 = 13, the pauses doubling
    from 0.5 but never past the deadline (0.5, 1, then the 1.5 left, not 2)."""
    venue, store, timer = LookupVenue(script=["lose"]), _store(), Timer()
    ex = _executor(venue, store, timer, lookup_max_delay_s=2.0)
    fill = ex.fill_leg(BUY_Y)
    err = (f"{LOST}; not booked: the venue does not know client id {CID_EL} after its "
           "recvWindow passed")
    assert timer.sleeps == [0.5, 1.0, 1.5]
    assert venue.sent == [(CID_EL, "buy", 5.0, Y, False)]
    assert venue.lookups == [(Y, CID_EL)] * 5  # before sending, then at 10, 10.5, 11.5, 13
    assert fill == LegFill(BUY_Y, 0.0, None, 0.0, False, (CID_EL,), err, False)
    assert _row(store, CID_EL) == ("failed", 0.0, err)
    assert store.pair_state(PAIR).amount_y == 0.0  # type: ignore[union-attr]
    assert ex.incidents == []
    store.close()


def test_the_monotonic_clock_alone_can_end_the_wait() -> None:
    """The look-up itself took 4 s (monotonic 10 -> 14): the second look-up is past the
    deadline 13 after a single pause."""
    venue, store = LookupVenue(script=["lose"]), _store()
    timer = Timer(readings=[10.0, 10.0, 14.0])  # the send, the first look-up, then later
    fill = _executor(venue, store, timer).fill_leg(BUY_Y)
    assert timer.sleeps == [0.5]
    assert venue.lookups == [(Y, CID_EL)] * 3
    assert (fill.error or "").endswith(f"not booked: the venue does not know client id "
                                       f"{CID_EL} after its recvWindow passed")
    assert _row(store, CID_EL)[0] == "failed"
    store.close()


# deadline 10 + 2 + 1 = 13, give-up 13 + 2 + 1 = 16: pauses 0.5, 1, 1 (capped at 1), the 0.5
# left to 13, then 1 s pauses (the deadline is past); the look-up at 16.0 exactly is the last
BLIND_SLEEPS = [0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0]


@pytest.mark.parametrize(("script", "status", "unknown", "why"), [
    (["lose"], "failed", False,
     f"{LOST}; look-ups failed ({TIMEOUT}) but the venue's {Y} position is unchanged after "
     "the recvWindow: not booked"),
    (["drop-blind"], "unknown", True,
     f"ExchangeUnavailable: response lost; outcome UNKNOWN: look-ups of client id {CID_EL} "
     f"failed ({TIMEOUT}) and the venue's position does not rule out a fill"),
], ids=["never booked: position unchanged", "booked: position moved"])
def test_when_every_look_up_fails_the_position_decides(script: list[Any], status: str,
                                                       unknown: bool, why: str) -> None:
    venue = LookupVenue(script=list(script), blind_after_create=10**6)
    store, timer = _store(), Timer()
    fill = _executor(venue, store, timer).fill_leg(BUY_Y)
    assert timer.sleeps == BLIND_SLEEPS
    # before sending; then at 10, 10.5, 11.5, 12.5, 13, 14, 15 and 16 (the give-up)
    assert venue.lookups == [(Y, CID_EL)] * 9
    assert fill == LegFill(BUY_Y, 0.0, None, 0.0, False, (CID_EL,), why, unknown)
    assert _row(store, CID_EL) == (status, 0.0, why)
    assert store.pair_state(PAIR).amount_y == 0.0  # type: ignore[union-attr]
    store.close()


def test_an_order_found_after_failed_look_ups_is_settled() -> None:
    venue, store, timer = LookupVenue(script=["drop"], blind_after_create=2), _store(), Timer()
    fill = _executor(venue, store, timer).fill_leg(BUY_Y)
    assert timer.sleeps == [0.5, 1.0]  # failed at 10 and 10.5, found at 11.5
    assert venue.lookups == [(Y, CID_EL)] * 4
    assert fill == LegFill(BUY_Y, 5.0, 101.0, 0.05, True, (CID_EL,), None, False)
    r = store.order(CID_EL)
    assert r is not None and (r.status, r.filled, r.average, r.fee, r.exchange_id, r.error) == (
        "closed", 5.0, 101.0, 0.05, "1000", None)
    assert store.pair_state(PAIR).amount_y == 5.0  # type: ignore[union-attr]
    store.close()


def test_a_close_whose_outcome_stays_unknown_reports_nothing_filled_and_no_fee() -> None:
    venue = LookupVenue(script=["drop-blind"], positions={Y: 5.0, X: -3.0})
    store, timer = _store(5.0, -3.0), Timer()
    fill = _executor(venue, store, timer).close_leg(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0))
    why = (f"ExchangeUnavailable: response lost; outcome UNKNOWN: look-ups of client id "
           f"{CID_EX} failed ({TIMEOUT}) and the venue's position does not rule out a fill")
    assert timer.sleeps == BLIND_SLEEPS
    assert venue.sent == [(CID_EX, "sell", 5.0, Y, True)]
    assert fill == LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 0.0, None, 0.0,
                           False, (CID_EX,), why, True)
    assert _row(store, CID_EX) == ("unknown", 0.0, why)
    store.close()


def test_a_close_not_booked_is_retried_and_the_failed_order_adds_no_fee() -> None:
    venue = LookupVenue(script=["lose", 1.0], blind_after_create=8, positions={Y: 5.0, X: -3.0})
    store, timer = _store(5.0, -3.0), Timer()
    fill = _executor(venue, store, timer).close_leg(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0))
    retry = f"{CID_EX}-r1"
    why = (f"{LOST}; look-ups failed ({TIMEOUT}) but the venue's {Y} position is unchanged "
           "after the recvWindow: not booked")
    assert timer.sleeps == [*BLIND_SLEEPS, 0.5]  # then the close's own backoff
    assert venue.sent == [(CID_EX, "sell", 5.0, Y, True), (retry, "sell", 5.0, Y, True)]
    assert fill == LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 5.0, 101.0,
                           0.05, True, (CID_EX, retry), None, False)
    assert _row(store, CID_EX) == ("failed", 0.0, why)
    assert _row(store, retry) == ("closed", 5.0, None)
    store.close()


# ------------------------------------------------------------------ recheck_unresolved
def test_the_re_check_looks_up_only_this_ticks_unresolved_orders_without_waiting() -> None:
    venue, store, timer = LookupVenue(), _store(), Timer(readings=[100.0])
    w = Executor(venue, store, T0, SettableClock(T0), RULES)
    found = CID_EL
    w._save(found, BUY_Y, "unknown")
    venue.orders[found] = _result(found, Y, "buy", 5.0, 5.0, "closed", 101.0)
    gone = client_order_id(T0, PAIR, "x", "enter_long")
    w._save(gone, LegOrder(PAIR, "x", "enter_long", X, "sell", 3.0), "sent")
    done = client_order_id(T0, PAIR, "y", "exit")
    w._save(done, LegOrder(PAIR, "y", "exit", Y, "sell", 1.0), "closed")
    earlier = client_order_id(T0 - H4, PAIR, "x", "exit")
    Executor(venue, store, T0 - H4, SettableClock(T0 - H4), RULES)._save(
        earlier, LegOrder(PAIR, "x", "exit", X, "buy", 3.0), "unknown")
    ex = _executor(venue, store, timer, recv_window_s=5.0)
    assert ex.recheck_unresolved() == [f"{found}: closed, filled 5", f"{gone}: failed, filled 0"]
    assert timer.sleeps == []  # the window is long past: one look-up each
    assert venue.lookups == [(Y, found), (X, gone)]
    assert _row(store, found) == ("closed", 5.0, None)
    assert _row(store, gone) == ("failed", 0.0, f"re-check of {gone}; not booked: the venue "
                                 f"does not know client id {gone} after its recvWindow passed")
    assert _row(store, done) == ("closed", 0.0, None)
    assert _row(store, earlier) == ("unknown", 0.0, None)
    assert store.pair_state(PAIR).amount_y == 5.0  # type: ignore[union-attr]
    store.close()


def test_the_re_check_of_an_order_whose_look_ups_fail_waits_one_window() -> None:
    """Re-checked at 100 with a 5 s window: look-ups until 100 + 5 + 1 = 106, then the
    unchanged position proves it was never booked."""
    venue = LookupVenue(lookup_fails=10**6, positions={Y: 5.0, X: -3.0})
    store, timer = _store(5.0, -3.0), Timer(readings=[100.0], ticking=True)
    Executor(venue, store, T0, SettableClock(T0), RULES)._save(
        CID_EX, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "unknown")
    ex = _executor(venue, store, timer, recv_window_s=5.0)
    assert ex.recheck_unresolved() == [f"{CID_EX}: failed, filled 0"]
    assert timer.sleeps == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert len(venue.lookups) == 8
    assert _row(store, CID_EX) == ("failed", 0.0, (
        f"re-check of {CID_EX}; look-ups failed ({TIMEOUT}) but the venue's {Y} position is "
        "unchanged after the recvWindow: not booked"))
    store.close()


def test_the_re_check_with_nothing_unresolved_looks_up_nothing() -> None:
    venue, store, timer = LookupVenue(), _store(), Timer()
    Executor(venue, store, T0, SettableClock(T0), RULES)._save(CID_EL, BUY_Y, "closed")
    assert _executor(venue, store, timer).recheck_unresolved() == []
    assert (venue.lookups, timer.sleeps) == ([], [])
    store.close()


# ------------------------------------------------------------------ _position_unchanged
STEP_HALF = {Y: MarketRules(Y, 0.5, 0.5, 0.0), X: RULES[X]}
NO_Y_RULES = {X: RULES[X]}


@pytest.mark.parametrize(("venue_y", "rules", "decided"), [
    (5.0, RULES, "failed"),  # unchanged
    (4.9, RULES, "unknown"),  # one amount step less
    (5.04, RULES, "failed"),  # within half a step (0.05)
    (4.96, RULES, "failed"),
    (5.06, RULES, "unknown"),  # just over half a step
    (5.25, STEP_HALF, "failed"),  # exactly half a step of 0.5
    (5.3, STEP_HALF, "unknown"),
    (5.0000000005, NO_Y_RULES, "failed"),  # no market rules: within 1e-9
    (5.000000002, NO_Y_RULES, "unknown"),
    (5.5, NO_Y_RULES, "unknown"),
    (-5.0, RULES, "unknown"),  # the opposite position is not the same
])
def test_the_venues_position_against_the_stores(venue_y: float, rules: Any,
                                                decided: str) -> None:
    """An unresolved exit of 5 Y that the store still holds; every look-up fails."""
    venue = LookupVenue(lookup_fails=10**6, positions={Y: venue_y, X: -1.0})  # X moved: no matter
    store, timer = _store(5.0, -3.0), Timer(readings=[100.0])
    Executor(venue, store, T0, SettableClock(T0), rules)._save(
        CID_EX, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "unknown")
    ex = _executor(venue, store, timer, rules=rules, recv_window_s=0.0)
    assert ex.recheck_unresolved() == [f"{CID_EX}: {decided}, filled 0"]
    assert _row(store, CID_EX)[0] == decided
    store.close()


def test_a_position_the_operator_accepted_outside_any_pair_is_expected() -> None:
    """2 Y accepted by the operator plus the pair's 5: a venue position of 7 is unchanged."""
    for venue_y, decided in ((7.0, "failed"), (5.0, "unknown")):
        venue = LookupVenue(lookup_fails=10**6, positions={Y: venue_y, X: -3.0})
        store, timer = _store(5.0, -3.0), Timer(readings=[100.0])
        store.accept_venue_position(Y, [], 0.0, 2.0, "held by hand", T0)
        Executor(venue, store, T0, SettableClock(T0), RULES)._save(
            CID_EX, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "unknown")
        ex = _executor(venue, store, timer, recv_window_s=0.0)
        assert ex.recheck_unresolved() == [f"{CID_EX}: {decided}, filled 0"]
        store.close()


@pytest.mark.parametrize(("held", "decided"), [(0.0, "failed"), (1.0, "unknown")])
def test_a_symbol_no_pair_holds_is_expected_flat(held: float, decided: str) -> None:
    venue = LookupVenue(lookup_fails=10**6, positions={Y: 0.0, X: 0.0, C: held})
    store, timer = _store(), Timer(readings=[100.0])
    cid = client_order_id(T0, OTHER, "y", "exit")
    Executor(venue, store, T0, SettableClock(T0), RULES)._save(
        cid, LegOrder(OTHER, "y", "exit", C, "sell", 1.0), "unknown")
    ex = _executor(venue, store, timer, recv_window_s=0.0)
    assert ex.recheck_unresolved() == [f"{cid}: {decided}, filled 0"]
    store.close()


@pytest.mark.parametrize("readable", [False, None], ids=["positions unreadable",
                                                          "no positions call"])
def test_without_the_venues_positions_the_order_stays_unknown(readable: bool | None) -> None:
    venue: Any = BlindVenue() if readable is None else LookupVenue(
        lookup_fails=10**6, positions={Y: 5.0, X: -3.0}, positions_fail=True)
    store, timer = _store(5.0, -3.0), Timer(readings=[100.0])
    Executor(venue, store, T0, SettableClock(T0), RULES)._save(
        CID_EX, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "unknown")
    ex = _executor(venue, store, timer, recv_window_s=0.0)
    assert ex.recheck_unresolved() == [f"{CID_EX}: unknown, filled 0"]
    assert _row(store, CID_EX) == ("unknown", 0.0, (
        f"re-check of {CID_EX}; outcome UNKNOWN: look-ups of client id {CID_EX} failed "
        f"({TIMEOUT}) and the venue's position does not rule out a fill"))
    store.close()


# ------------------------------------------------------------------ resolve_pending
def test_orders_left_by_earlier_runs_are_each_resolved_as_their_state_says() -> None:
    venue, store, timer = LookupVenue(), _store(), Timer()
    before = T0 - H4
    rows: list[tuple[datetime, LegOrder, str]] = [
        (before, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "planned"),  # a
        (before, LegOrder(PAIR, "x", "exit", X, "buy", 3.0), "sent"),  # b: look-up fails
        (before, LegOrder(PAIR, "y", "enter_long", Y, "buy", 1.0), "sent"),  # c: filled 1
        (before, LegOrder(PAIR, "x", "enter_long", X, "sell", 3.0), "sent"),  # d: nothing
        (before, LegOrder(PAIR, "y", "stop", Y, "sell", 5.0), "unknown"),  # e: grace exactly
        (before, LegOrder(PAIR, "x", "stop", X, "buy", 3.0), "sent"),  # f: within grace
        (before, LegOrder(PAIR, "y", "flatten", Y, "sell", 5.0), "open"),  # g: long lost
        (before, LegOrder(PAIR, "y", "unwind", Y, "sell", 5.0), "closed"),  # h: final
        (T0, LegOrder(PAIR, "y", "exit", Y, "sell", 5.0), "planned"),  # i: this tick's
        (T0, LegOrder(PAIR, "x", "exit", X, "buy", 3.0), "sent"),  # j: not at the venue
        (T0, LegOrder(PAIR, "y", "enter_short", Y, "sell", 2.0), "sent"),  # k: filled 2
    ]
    cids = []
    for n, (tick, order, status) in enumerate(rows):
        cid = client_order_id(tick, order.pair_id, order.leg, order.action)
        created = tick + timedelta(minutes=n + 1)
        Executor(venue, store, tick, SettableClock(created), RULES)._save(cid, order, status)
        cids.append(cid)
    a, b, c, d, e, f, g, h, i, j, k = cids
    venue.unreachable.add(b)
    venue.orders[c] = _result(c, Y, "buy", 1.0, 1.0, "closed")
    venue.orders[d] = _result(d, X, "sell", 3.0, 0.0, "canceled")
    venue.orders[k] = _result(k, Y, "sell", 2.0, 2.0, "closed", 99.0)
    store.update_order(e, "unknown", None, NOW - timedelta(minutes=10))
    store.update_order(f, "sent", None, NOW - timedelta(minutes=9, seconds=59))
    ex = _executor(venue, store, timer)

    assert ex.resolve_pending() == [
        f"{a}: planned, never sent -> skipped",
        f"{b}: still unknown (look-up timed out)",
        f"{c}: found at the venue, closed, filled 1",
        f"{d}: found at the venue, canceled, filled 0",
        f"{e}: unknown to the venue after 0:10:00 -> failed",
        f"{g}: unknown to the venue after 4:23:00 -> failed",
        f"{j}: not at the venue; left to this tick's resumed run",
        f"{k}: found at the venue, closed, filled 2",
    ]
    assert venue.lookups == [(X, b), (Y, c), (X, d), (Y, e), (X, f), (Y, g), (X, j), (Y, k)]
    assert (timer.sleeps, venue.sent) == ([], [])
    got = {cid: (r.status, r.filled, r.error, r.updated_at)
           for cid in cids if (r := store.order(cid)) is not None}
    now = iso(NOW)
    assert got == {
        a: ("skipped", 0.0, "planned by an earlier tick, never sent", now),
        b: ("sent", 0.0, None, "2026-01-31T16:02:00Z"),
        c: ("closed", 1.0, None, now),
        d: ("canceled", 0.0, None, now),
        e: ("failed", 0.0, "unknown to the venue 0:10:00 after sending: lost", now),
        f: ("sent", 0.0, None, "2026-01-31T20:20:01Z"),
        g: ("failed", 0.0, "unknown to the venue 4:23:00 after sending: lost", now),
        h: ("closed", 0.0, None, "2026-01-31T16:08:00Z"),
        i: ("planned", 0.0, None, "2026-01-31T20:09:00Z"),
        j: ("sent", 0.0, None, "2026-01-31T20:10:00Z"),
        k: ("closed", 2.0, None, now),
    }
    st = store.pair_state(PAIR)
    assert st is not None and (st.amount_y, st.amount_x) == (-1.0, 0.0)  # +1 late, -2 now
    detail = (f"order {c} of tick 2026-01-31T16:00:00Z (enter_long buy {Y}) turned out "
              f"closed with 1 filled; applied to {PAIR}")
    assert ex.incidents == [{"kind": "late_fill", "symbol": Y, "detail": detail}]
    inc = store.incidents()
    assert [tuple(r) for r in inc[["tick_as_of", "kind", "symbol", "detail", "created_at"]]
            .itertuples(index=False)] == [("2026-01-31T20:00:00Z", "late_fill", Y, detail, now)]
    store.close()


def test_with_nothing_pending_nothing_is_looked_up() -> None:
    venue, store, timer = LookupVenue(), _store(), Timer()
    assert _executor(venue, store, timer).resolve_pending() == []
    assert venue.lookups == []
    store.close()
