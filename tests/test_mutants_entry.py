"""Entering a pair (``Executor.enter``) and filling one entry leg (``Executor.fill_leg``), pinned.

What the mutation run of ``pairlib/engine/execution.py`` left loose in ``enter``,
``fill_leg``, ``_hedge_for``, ``_planned``, ``_skip``, ``_sendable`` and ``_below_minimum``:

* the order of an entry: both legs' intents recorded ``planned`` before anything is sent,
  leg y first, then leg x sized from what y actually filled (same ratio as planned, floored
  to the market's step; on a market without rules only cleared of float noise), and a re-run
  of the tick reusing the amounts its first run recorded;
* the orders one leg sends: the first order floored to the step, remainders of partial fills
  (``-r<k>``, at most ``max_remainders``), none for a remainder below half a step, below the
  market's minimum amount or (at the price the leg filled at, times the contract size) its
  minimum notional, none after a rejection or an unknown outcome;
* the ``LegFill`` a leg reports (filled, average over the fills, fees, complete, client ids,
  error, unknown) and the ``PairOutcome`` of an entry (ok, legs, unwinds, message);
* the incidents ``entry_failed``, ``partial_fill_unwound``, ``second_leg_failed`` and
  ``order_unknown`` word for word, the unwinds they report, and the second leg's order row
  marked ``skipped`` with the reason when the first leg fails.

The fake venue books market orders at a price that rises by 1 per order (the first at 101)
and charges 1% of the filled amount, unless a script step gives the venue's report
(``("report", filled, average, status, fee)``). Markets have amount step 0.1 and minimum 0.3
unless a test says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from test_mutants_execution import PAIR, RULES, T0, Venue, X, Y, _entry

from pairlib.clock import SettableClock
from pairlib.core.risk import MarketRules
from pairlib.edges.store import Store
from pairlib.engine.execution import (
    Executor,
    LegFill,
    LegOrder,
    PairOutcome,
    _below_minimum,
    _sendable,
)
from pairlib.venue.records import OrderResult

P = "pl-2601312000-068ccbb659"  # the client id prefix of tick T0 and PAIR
CY, CX = f"{P}-y-el", f"{P}-x-el"  # the first orders of an enter_long
UY, UX = f"{P}-y-uw", f"{P}-x-uw"  # the unwinds
REJ = "InvalidOrder: rejected by the venue"
YL = LegOrder(PAIR, "y", "enter_long", Y, "buy", 5.0)
XL = LegOrder(PAIR, "x", "enter_long", X, "sell", 3.0)
FINE = MarketRules(Y, 0.1, 0.1, 0.0)  # a minimum of one step
NO_MIN = MarketRules(Y, 0.1, 0.0, 0.0)  # no minimum at all
NOTIONAL = MarketRules(Y, 0.1, 0.1, 8.0, contract_size=2.0)  # 8 USDT; 2 units per contract


class Crash(BaseException):
    """The process dies here (not an error the executor handles)."""


@dataclass
class _Venue(Venue):
    """The shared fake venue, plus: ``("report", filled, average, status, fee)`` script
    steps (the order is booked as that report), a cancel that is acknowledged while the
    order stays open (``stuck``), a crash at the first look-up on ``crash_on``, and a
    snapshot of the store's order rows taken at the first look-up (``seen``)."""

    stuck: bool = False
    crash_on: str | None = None
    store: Any = None
    seen: dict[str, tuple[Any, ...]] | None = None
    looked: list[str] = field(default_factory=list)

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        if self.seen is None and self.store is not None:
            self.seen = _rows(self.store)
        self.looked.append(client_id)
        if symbol == self.crash_on:
            raise Crash(client_id)
        return super().fetch_order_by_client_id(symbol, client_id)

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        step = self.script[0] if self.script else None
        if not isinstance(step, tuple):
            return super().create_order(symbol, side, amount, client_id, type, price,
                                        reduce_only)
        self.script.pop(0)
        self.sent.append((client_id, side, amount, symbol, reduce_only))
        _, filled, average, status, fee = step
        res = OrderResult(id=str(1000 + len(self.orders)), client_id=client_id, symbol=symbol,
                          side=side, type=type, amount=amount, filled=filled, average=average,
                          status=status, fee=fee, timestamp=1, reduce_only=reduce_only)
        self.orders[client_id] = res
        self.positions[symbol] = self.positions.get(symbol, 0.0) + (
            filled if side == "buy" else -filled)
        return res

    def cancel_order(self, symbol: str, order_id: str) -> OrderResult:
        if self.stuck:  # acknowledged, but the order is still open
            return next(o for o in self.orders.values() if o.id == order_id)
        return super().cancel_order(symbol, order_id)


def _setup(script: list[Any], rules: Any = RULES, price: float = 100.0,
           **kw: Any) -> tuple[_Venue, Store, Executor]:
    """A store with PAIR flat, the venue flat, an executor of tick T0 (no real waits)."""
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": 0.0, "amount_x": 0.0, "position": 0})
    venue = _Venue(script=list(script), positions={Y: 0.0, X: 0.0}, price=price, store=store)
    opts: dict[str, Any] = {"recv_window_s": 0.0, **kw}
    ex = Executor(venue, store, T0, SettableClock(T0), rules, lookup_delay_s=0.0,
                  sleep=lambda s: None, monotonic=lambda: 0.0, **opts)
    return venue, store, ex


def _enter(script: list[Any], legs: tuple[LegOrder, LegOrder] | None = None,
           **kw: Any) -> tuple[PairOutcome, _Venue, Store, Executor]:
    venue, store, ex = _setup(script, **kw)
    return ex.enter(PAIR, "enter_long", legs or _entry()), venue, store, ex


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 9)


def _fill(f: LegFill) -> LegFill:
    """``f`` with its sums rounded to 9 decimals (fees and fills add up in float)."""
    return replace(f, filled=_r(f.filled), average=_r(f.average), fee=_r(f.fee))


def _out(o: PairOutcome) -> PairOutcome:
    return replace(o, legs=tuple(_fill(f) for f in o.legs),
                   unwinds=tuple(_fill(f) for f in o.unwinds))


def _rows(store: Store) -> dict[str, tuple[Any, ...]]:
    """Order rows by client id: side, amount, filled, status, reduce-only, error."""
    def none(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v
    return {r["client_id"]: (r["side"], r["amount"], round(r["filled"], 9), r["status"],
                             r["reduce_only"], none(r["error"]))
            for r in store.orders().to_dict("records")}


def _amounts(store: Store) -> tuple[float, float]:
    st = store.pair_state(PAIR)
    assert st is not None
    return round(st["amount_y"], 9), round(st["amount_x"], 9)


def _uw(leg: str, side: str, amount: float) -> LegOrder:
    return LegOrder(PAIR, leg, "unwind", Y if leg == "y" else X, side, amount, True)


# ------------------------------------------------------------------ entries that succeed
def test_an_entry_sends_leg_y_then_leg_x_and_reports_both() -> None:
    out, venue, store, ex = _enter([])
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (CX, "sell", 3.0, X, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", True, (
        LegFill(YL, 5.0, 101.0, 0.05, True, (CY,)),
        LegFill(XL, 3.0, 102.0, 0.03, True, (CX,)),
    ), (), "entered")
    assert out.legs[0].error is None and out.legs[0].unknown is False
    assert _rows(store) == {CY: ("buy", 5.0, 5.0, "closed", 0, None),
                            CX: ("sell", 3.0, 3.0, "closed", 0, None)}
    assert _amounts(store) == (5.0, -3.0)
    assert ex.incidents == []


def test_both_legs_are_recorded_planned_before_any_order_is_sent() -> None:
    _, venue, _, _ = _enter([])
    assert venue.looked[0] == CY  # the first thing the venue hears of: leg y's look-up
    assert venue.seen == {CY: ("buy", 5.0, 0.0, "planned", 0, None),
                          CX: ("sell", 3.0, 0.0, "planned", 0, None)}


def test_a_partial_first_fill_is_completed_by_a_remainder_order() -> None:
    # 2 of 5 at 101, the remainder 3 at 102: average (2 * 101 + 3 * 102) / 5
    out, venue, _, _ = _enter([0.4, 1.0, 1.0])
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (f"{CY}-r1", "buy", 3.0, Y, False),
                          (CX, "sell", 3.0, X, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", True, (
        LegFill(YL, 5.0, 101.6, 0.05, True, (CY, f"{CY}-r1")),
        LegFill(XL, 3.0, 103.0, 0.03, True, (CX,)),
    ), (), "entered")


def test_the_second_leg_of_a_fully_filled_first_leg_is_the_planned_order() -> None:
    # x planned off the step: 3.0 is what can be sent, the rest (under half a step) is done
    xl = replace(XL, amount=3.05)
    out, venue, _, _ = _enter([], legs=(YL, xl))
    assert venue.sent[1] == (CX, "sell", 3.0, X, False)
    assert _fill(out.legs[1]) == LegFill(xl, 3.0, 102.0, 0.03, True, (CX,))
    assert (out.ok, out.message) == (True, "entered")


@pytest.mark.parametrize(("x_rules", "x_amount"), [
    (RULES[X], 2.2),  # 3 * 0.6 / 0.8 = 2.25, floored to the step
    (None, 2.25),  # no rules: 2.2499999999999996 cleared of its float noise, not floored
])
def test_the_second_leg_is_sized_from_what_the_first_leg_filled(
        x_rules: MarketRules | None, x_amount: float) -> None:
    # y: 0.6 of 0.8 filled; the remainder 0.2 is below the minimum 0.3: y is done
    rules = {Y: RULES[Y]} | ({X: x_rules} if x_rules else {})
    yl, xl = replace(YL, amount=0.8), XL
    out, venue, _, _ = _enter([0.75, ("report", x_amount, 102.0, "closed", 0.01)],
                              legs=(yl, xl), rules=rules)
    assert venue.sent == [(CY, "buy", 0.8, Y, False), (CX, "sell", x_amount, X, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", True, (
        LegFill(yl, 0.6, 101.0, 0.006, True, (CY,)),
        LegFill(replace(xl, amount=x_amount), x_amount, 102.0, 0.01, True, (CX,)),
    ), (), "entered")


def test_a_second_leg_scaled_below_its_minimum_does_not_leave_the_first_naked() -> None:
    # y: 0.8 of 1 filled, the remainder 0.2 under the minimum 0.3, so y is done; x, planned
    # at its minimum 0.3, is scaled to 0.24, floored to 0.2: under the minimum, never sent
    out, _, store, ex = _enter([0.8], legs=(replace(YL, amount=1.0), replace(XL, amount=0.3)))
    ay, ax = _amounts(store)
    # the pair holds both legs or neither, and the entry is ok only when it holds both
    assert (ay != 0.0, out.ok) == (ax != 0.0, ay != 0.0 and ax != 0.0)
    why = f"not sent: 0.2 {X} is below the market's minimum amount 0.3 (step 0.1)"
    assert (out.ok, out.message) == (False, f"second leg failed: {why}; filled legs unwound")
    assert [(i["kind"], i["symbol"]) for i in ex.incidents] == [("second_leg_failed", X)]
    # x's intent is not left pending: skipped with the reason, so nothing waits on it
    assert _rows(store)[CX] == ("sell", 0.3, 0.0, "skipped", 0, why)


def test_a_first_leg_below_its_minimum_is_not_entered_and_its_intent_is_skipped() -> None:
    out, venue, store, ex = _enter([], legs=(replace(YL, amount=0.2), replace(XL, amount=0.3)))
    why = f"not sent: 0.2 {Y} is below the market's minimum amount 0.3 (step 0.1)"
    assert venue.sent == [] and _amounts(store) == (0.0, 0.0)
    assert (out.ok, out.message) == (False, f"first leg failed: {why}")
    assert [(i["kind"], i["symbol"]) for i in ex.incidents] == [("entry_failed", Y)]
    assert _rows(store) == {CY: ("buy", 0.2, 0.0, "skipped", 0, why),
                            CX: ("sell", 0.3, 0.0, "skipped", 0, f"first leg incomplete: {why}")}


def test_a_rerun_of_the_tick_completes_the_plan_its_first_run_recorded() -> None:
    venue, store, ex = _setup([])
    venue.crash_on = X  # the process dies at leg x's look-up: y filled, x only planned
    with pytest.raises(Crash):
        ex.enter(PAIR, "enter_long", _entry())
    assert _rows(store) == {CY: ("buy", 5.0, 5.0, "closed", 0, None),
                            CX: ("sell", 3.0, 0.0, "planned", 0, None)}
    venue.crash_on = None
    again = Executor(venue, store, T0, SettableClock(T0), RULES, lookup_delay_s=0.0,
                     sleep=lambda s: None, monotonic=lambda: 0.0, recv_window_s=0.0)
    # the re-run's strategy sized the pair anew (4 and 2.4): the recorded plan wins
    out = again.enter(PAIR, "enter_long", (replace(YL, amount=4.0), replace(XL, amount=2.4)))
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (CX, "sell", 3.0, X, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", True, (
        LegFill(YL, 5.0, 101.0, 0.05, True, (CY,)),
        LegFill(XL, 3.0, 102.0, 0.03, True, (CX,)),
    ), (), "entered")
    assert _amounts(store) == (5.0, -3.0)


# ------------------------------------------------------------------ first leg fails
def test_a_rejected_first_leg_sends_nothing_else() -> None:
    out, venue, store, ex = _enter(["reject", 1.0])
    assert venue.sent == [(CY, "buy", 5.0, Y, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 0.0, None, 0.0, False, (CY,), REJ),
    ), (), f"first leg failed: {REJ}")
    assert ex.incidents == [{"kind": "entry_failed", "symbol": Y, "detail": (
        f"{PAIR} enter_long: first leg buy 5 {Y} filled 0 ({REJ}); nothing to unwind")}]
    assert _rows(store) == {CY: ("buy", 5.0, 0.0, "rejected", 0, REJ),
                            CX: ("sell", 3.0, 0.0, "skipped", 0,
                                 f"first leg incomplete: {REJ}")}


def test_a_first_leg_rejected_after_a_small_partial_fill_is_unwound() -> None:
    # 0.6 of 5 at 101, the remainder 4.4 rejected: the 0.6 is sold back reduce-only at 102
    out, venue, store, ex = _enter([0.12, "reject", 1.0])
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (f"{CY}-r1", "buy", 4.4, Y, False),
                          (UY, "sell", 0.6, Y, True)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 0.6, 101.0, 0.006, False, (CY, f"{CY}-r1"), REJ),
    ), (LegFill(_uw("y", "sell", 0.6), 0.6, 102.0, 0.006, True, (UY,)),),
        f"first leg failed: {REJ}")
    assert ex.incidents == [{"kind": "partial_fill_unwound", "symbol": Y, "detail": (
        f"{PAIR} enter_long: first leg buy 5 {Y} filled 0.6 ({REJ}); "
        f"unwound 0.6 of 0.6 {Y} reduce-only")}]
    assert _rows(store)[CX] == ("sell", 3.0, 0.0, "skipped", 0, f"first leg incomplete: {REJ}")
    assert _amounts(store) == (0.0, 0.0)


def test_a_first_leg_still_partial_after_its_remainders_is_unwound() -> None:
    # max_remainders 1: 2 of 5 at 101, then 1.5 of the remainder 3 at 102; 3.5 sold back
    out, venue, store, ex = _enter([0.4, 0.5, 1.0], max_remainders=1)
    why = "partial fill: 3.5 of 5 after 2 orders"
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (f"{CY}-r1", "buy", 3.0, Y, False),
                          (UY, "sell", 3.5, Y, True)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 3.5, round((2 * 101 + 1.5 * 102) / 3.5, 9), 0.035, False,
                (CY, f"{CY}-r1"), why),
    ), (LegFill(_uw("y", "sell", 3.5), 3.5, 103.0, 0.035, True, (UY,)),),
        f"first leg failed: {why}")
    assert ex.incidents == [{"kind": "partial_fill_unwound", "symbol": Y, "detail": (
        f"{PAIR} enter_long: first leg buy 5 {Y} filled 3.5 ({why}); "
        f"unwound 3.5 of 3.5 {Y} reduce-only")}]
    assert _rows(store)[CX] == ("sell", 3.0, 0.0, "skipped", 0, f"first leg incomplete: {why}")


def test_a_first_leg_of_unknown_outcome_is_kept_and_the_second_not_sent() -> None:
    # booked, the response lost, every look-up failing: the venue's position moved
    out, venue, store, ex = _enter(["drop-blind"], recv_window_s=1.0)
    err = (f"ExchangeUnavailable: response lost; outcome UNKNOWN: look-ups of client id {CY} "
           "failed (ExchangeUnavailable: look-up timed out) and the venue's position does "
           "not rule out a fill")
    assert venue.sent == [(CY, "buy", 5.0, Y, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 0.0, None, 0.0, False, (CY,), err, True),
    ), (), f"first leg outcome unknown: {err}")
    assert ex.incidents == [{"kind": "order_unknown", "symbol": Y, "detail": (
        f"{PAIR} enter_long: first leg buy 5 {Y}: {err}; the second leg was not sent; "
        "re-checked before the tick ends")}]
    assert _rows(store) == {CY: ("buy", 5.0, 0.0, "unknown", 0, err),
                            CX: ("sell", 3.0, 0.0, "skipped", 0,
                                 f"first leg incomplete: {err}")}


# ------------------------------------------------------------------ second leg fails
def test_a_rejected_second_leg_unwinds_the_first() -> None:
    out, venue, store, ex = _enter([1.0, "reject", 1.0])
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (CX, "sell", 3.0, X, False),
                          (UY, "sell", 5.0, Y, True)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 5.0, 101.0, 0.05, True, (CY,)),
        LegFill(XL, 0.0, None, 0.0, False, (CX,), REJ),
    ), (LegFill(_uw("y", "sell", 5.0), 5.0, 102.0, 0.05, True, (UY,)),),
        f"second leg failed: {REJ}; filled legs unwound")
    assert ex.incidents == [{"kind": "second_leg_failed", "symbol": X, "detail": (
        f"{PAIR} enter_long: second leg sell 3 {X} filled 0 ({REJ}) after first leg {Y} "
        f"filled 5; unwound 5 of 5 {Y} reduce-only")}]
    assert _amounts(store) == (0.0, 0.0)


@pytest.mark.parametrize(("script", "kw", "why", "x_cids"), [
    # 1.5 of 3 at 102, the remainder rejected
    ([1.0, 0.5, "reject", 1.0, 1.0], {}, REJ, (CX, f"{CX}-r1")),
    # no remainder allowed: 1.5 of 3 at 102 is all
    ([1.0, 0.5, 1.0, 1.0], {"max_remainders": 0}, "partial fill: 1.5 of 3 after 1 orders",
     (CX,)),
])
def test_a_partly_filled_second_leg_unwinds_both_legs_second_first(
        script: list[Any], kw: dict[str, Any], why: str, x_cids: tuple[str, ...]) -> None:
    out, venue, store, ex = _enter(script, **kw)
    assert venue.sent[-2:] == [(UX, "buy", 1.5, X, True), (UY, "sell", 5.0, Y, True)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 5.0, 101.0, 0.05, True, (CY,)),
        LegFill(XL, 1.5, 102.0, 0.015, False, x_cids, why),
    ), (LegFill(_uw("x", "buy", 1.5), 1.5, 103.0, 0.015, True, (UX,)),
        LegFill(_uw("y", "sell", 5.0), 5.0, 104.0, 0.05, True, (UY,))),
        f"second leg failed: {why}; filled legs unwound")
    assert ex.incidents == [{"kind": "second_leg_failed", "symbol": X, "detail": (
        f"{PAIR} enter_long: second leg sell 3 {X} filled 1.5 ({why}) after first leg {Y} "
        f"filled 5; unwound 1.5 of 1.5 {X} reduce-only; unwound 5 of 5 {Y} reduce-only")}]
    assert _amounts(store) == (0.0, 0.0)


def test_an_unwind_that_stays_open_makes_the_entry_say_so() -> None:
    out, venue, store, ex = _enter([1.0, "reject", "reject", "reject"], close_attempts=2)
    left = f"5 still open after 2 reduce-only orders (last: {REJ})"
    assert venue.sent[2:] == [(UY, "sell", 5.0, Y, True), (f"{UY}-r1", "sell", 5.0, Y, True)]
    assert out.message == f"second leg failed: {REJ}; filled legs unwind INCOMPLETE"
    assert (out.ok, [_fill(f) for f in out.unwinds]) == (False, [
        LegFill(_uw("y", "sell", 5.0), 0.0, None, 0.0, False, (UY, f"{UY}-r1"), left)])
    assert ex.incidents == [{"kind": "second_leg_failed", "symbol": X, "detail": (
        f"{PAIR} enter_long: second leg sell 3 {X} filled 0 ({REJ}) after first leg {Y} "
        f"filled 5; unwound 0 of 5 {Y} reduce-only (INCOMPLETE: {left})")}]
    assert _amounts(store) == (5.0, 0.0)


def test_a_second_leg_of_unknown_outcome_keeps_the_first_leg() -> None:
    # x: 1.2 of 3 at 120 and still open; the venue acknowledges the cancel but keeps it open
    venue, store, ex = _setup([1.0, ("report", 1.2, 120.0, "open", 0.012)])
    venue.stuck = True
    out = ex.enter(PAIR, "enter_long", _entry())
    err = f"order {CX} outcome unknown"
    assert venue.sent == [(CY, "buy", 5.0, Y, False), (CX, "sell", 3.0, X, False)]
    assert _out(out) == PairOutcome(PAIR, "enter_long", False, (
        LegFill(YL, 5.0, 101.0, 0.05, True, (CY,)),
        LegFill(XL, 1.2, 120.0, 0.012, False, (CX,), err, True),
    ), (), f"second leg outcome unknown: {err}")
    assert ex.incidents == [{"kind": "order_unknown", "symbol": X, "detail": (
        f"{PAIR} enter_long: second leg sell 3 {X}: {err}; first leg {Y} filled 5 is kept "
        "(the second may have filled); re-checked before the tick ends")}]
    assert _amounts(store) == (5.0, -1.2)


# ------------------------------------------------------------------ one leg's orders
def _leg(amount: float, leg: str = "y") -> LegOrder:
    return replace(YL if leg == "y" else XL, amount=amount)


@pytest.mark.parametrize(("rules", "amount", "script", "kw", "sent", "want"), [
    # off the step: 5.0 is sent; the 0.07 left (under one step) cannot be and is done
    (NO_MIN, 5.07, [1.0], {}, [5.0], (5.0, 101.0, 0.05, True, None)),
    # a remainder of exactly one step (the minimum) is sent
    (FINE, 5.0, [("report", 4.9, 101.0, "expired", 0.049), ("report", 0.1, 111.0, "closed",
                                                             0.001)],
     {}, [5.0, 0.1], (5.0, 101.2, 0.05, True, None)),
    # ... but not when no remainder is allowed: one step short is not filled
    (FINE, 5.0, [("report", 4.9, 101.0, "expired", 0.049)], {"max_remainders": 0}, [5.0],
     (4.9, 101.0, 0.049, False, "partial fill: 4.9 of 5 after 1 orders")),
    # the minimum amount left over is not filled either
    (RULES[Y], 5.0, [0.94], {"max_remainders": 0}, [5.0],
     (4.7, 101.0, 0.047, False, "partial fill: 4.7 of 5 after 1 orders")),
    # a remainder below the minimum amount (0.2 < 0.3) is not sent: done
    (RULES[Y], 5.0, [0.96], {}, [5.0], (4.8, 101.0, 0.048, True, None)),
    # max_remainders 2: three orders at most, 1 of 5 filled each time
    (RULES[Y], 5.0, [0.2, 0.25, 1 / 3], {}, [5.0, 4.0, 3.0],
     (3.0, 102.0, 0.03, False, "partial fill: 3 of 5 after 3 orders")),
    # a small fill at a low price still has an average (notional 0.6)
    (RULES[Y], 0.3, [("report", 0.3, 2.0, "closed", 0.003)], {}, [0.3],
     (0.3, 2.0, 0.003, True, None)),
    # a fill the venue reports without a price has no average
    (RULES[Y], 5.0, [("report", 5.0, None, "closed", 0.05)], {}, [5.0],
     (5.0, None, 0.05, True, None)),
])
def test_the_orders_one_entry_leg_sends_and_what_it_reports(
        rules: MarketRules, amount: float, script: list[Any], kw: dict[str, Any],
        sent: list[float], want: tuple[Any, ...]) -> None:
    venue, store, ex = _setup(script, rules={Y: rules}, **kw)
    fill = ex.fill_leg(_leg(amount))
    assert [(c, a) for c, _, a, _, _ in venue.sent] == [
        (CY if k == 0 else f"{CY}-r{k}", a) for k, a in enumerate(sent)]
    filled, average, fee, complete, error = want
    cids = tuple(CY if k == 0 else f"{CY}-r{k}" for k in range(len(sent)))
    assert _fill(fill) == LegFill(_leg(amount), filled, average, fee, complete, cids, error)


@pytest.mark.parametrize(("amount", "script", "sent", "want"), [
    # 0.8 at 20: the remainder 0.1 is worth 0.1 * 20 * 2 = 4 < 8 USDT: not sent, done
    (0.9, [("report", 0.8, 20.0, "expired", 0.016)], [0.9],
     (0.8, 20.0, 0.016, True)),
    # the remainder 0.2 is worth 0.2 * 20 * 2 = 8, the minimum: sent
    (1.0, [("report", 0.8, 20.0, "expired", 0.016), ("report", 0.2, 21.0, "closed", 0.0042)],
     [1.0, 0.2], (1.0, 20.2, 0.0202, True)),
    # that remainder expires unfilled (its report quoting 10): it is judged at the price
    # the leg filled at, 20, and sent again
    (1.0, [("report", 0.8, 20.0, "expired", 0.016), ("report", 0.0, 10.0, "expired", 0.0),
           ("report", 0.2, 21.0, "closed", 0.0042)],
     [1.0, 0.2, 0.2], (1.0, 20.2, 0.0202, True)),
])
def test_a_remainder_below_the_minimum_notional_is_not_sent(
        amount: float, script: list[Any], sent: list[float], want: tuple[Any, ...]) -> None:
    venue, _, ex = _setup(script, rules={Y: NOTIONAL})
    fill = ex.fill_leg(_leg(amount))
    cids = tuple(CY if k == 0 else f"{CY}-r{k}" for k in range(len(sent)))
    assert [(c, a) for c, _, a, _, _ in venue.sent] == list(zip(cids, sent, strict=True))
    filled, average, fee, complete = want
    assert _fill(fill) == LegFill(_leg(amount), filled, average, fee, complete, cids)


@pytest.mark.parametrize(("kw", "script", "sent", "want"), [
    # 0.6 of 0.9, then the remainder 0.3 (0.30000000000000004 cleared of noise): the
    # fills add up to 0.8999999999999999, which is the whole leg
    ({}, [("report", 0.6, 50.0, "expired", 0.006), ("report", 0.3, 53.0, "closed", 0.003)],
     [0.9, 0.3], (0.9, 51.0, 0.009, True, None)),
    ({"max_remainders": 0}, [("report", 0.6, 50.0, "expired", 0.006)], [0.9],
     (0.6, 50.0, 0.006, False, "partial fill: 0.6 of 0.9 after 1 orders")),
])
def test_a_leg_without_market_rules_sends_its_remainder_whatever_its_size(
        kw: dict[str, Any], script: list[Any], sent: list[float],
        want: tuple[Any, ...]) -> None:
    venue, _, ex = _setup(script, rules={Y: RULES[Y]}, **kw)
    fill = ex.fill_leg(_leg(0.9, "x"))
    cids = tuple(CX if k == 0 else f"{CX}-r{k}" for k in range(len(sent)))
    assert [(c, a) for c, _, a, _, _ in venue.sent] == list(zip(cids, sent, strict=True))
    filled, average, fee, complete, error = want
    assert _fill(fill) == LegFill(_leg(0.9, "x"), filled, average, fee, complete, cids, error)


def test_float_noise_on_a_leg_without_market_rules_is_not_sent_and_fills_nothing() -> None:
    venue, _, ex = _setup([], rules={})
    fill = ex.fill_leg(_leg(1e-12, "x"))
    assert venue.sent == []
    assert fill == LegFill(_leg(1e-12, "x"), 0.0, None, 0.0, False, (),
                           f"not sent: 1e-12 {X} is too small to send")


# ------------------------------------------------------------------ helpers
@pytest.mark.parametrize(("amount", "rules", "sendable"), [
    (0.37, RULES[Y], 0.3),  # floored to the step
    (5.07, NO_MIN, 5.0),
    (0.3, RULES[Y], 0.3),  # 0.3 / 0.1 is 2.9999999999999996: still 3 steps
    (5 - 4.6, None, 0.4),  # 0.40000000000000036 without rules: 12 decimals kept
    (1.0000000000004, None, 1.0),
    (2.25, None, 2.25),  # not floored: there is no step
])
def test_an_amount_as_it_can_be_sent(amount: float, rules: MarketRules | None,
                                     sendable: float) -> None:
    assert _sendable(amount, rules) == sendable


@pytest.mark.parametrize(("amount", "price", "below"), [
    (0.05, 20.0, True),  # under the minimum amount 0.1
    (0.1, 20.0, True),  # 0.1 * 20 * 2 = 4 < 8 USDT
    (0.2, 20.0, False),  # 8: the minimum itself
    (0.1, 40.0, False),
    (0.1, None, False),  # no price yet: only the amount counts
    (0.2, 0.0, False),
])
def test_an_order_below_the_minimum_amount_or_notional(amount: float, price: float | None,
                                                       below: bool) -> None:
    assert _below_minimum(amount, price, NOTIONAL) is below
    assert _below_minimum(amount, price, None) is False
    assert _below_minimum(amount, price, NO_MIN) is False  # no minimum notional


def test_an_order_of_this_tick_final_in_the_store_with_a_part_filled_goes_on_to_the_remainder(
) -> None:
    # An earlier run of this tick recorded its first order final: 0.5 of 5 filled, with a
    # note. That part counts, the note is not a failure: the remainder 4.5 is sent.
    venue, store, ex = _setup([1.0])
    store.save_order({**ex._row(CY, YL, status="expired", now=T0), "filled": 0.5,
                      "average": 100.0, "fee": 0.005, "error": "expired after a partial fill"})
    fill = ex.fill_leg(YL)
    assert venue.sent == [(f"{CY}-r1", "buy", 4.5, Y, False)]
    assert _fill(fill) == LegFill(YL, 5.0, 100.9, 0.05, True, (CY, f"{CY}-r1"))
