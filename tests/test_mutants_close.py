"""What a close does when a leg's market is not listed (delisted or suspended), pinned at the
executor (:meth:`Executor.close` and its ``_check_listed``, ``_close_blocked`` and
``_close_naked``), where the mutation run (``tests/mutation.py``) found them left loose.

A leg on a market missing from the tick's ``rules``, already found unlisted this tick, or that
the venue's ``check_listed`` says it no longer lists (asked for every held leg after the
first) blocks the whole close before anything is sent; a leg the venue refuses as an unknown
symbol mid-close (look-up or send) blocks it when nothing had filled, and is reported naked
when something had. Each test pins the whole outcome (ok, every LegFill field with its order's
amount and reduce-only flag, message, blocked), the incidents (kind, symbol, exact detail, also
in the store), every venue call and order sent, the store's rows and leg amounts, and the
executor's ``unlisted`` set. Also: a venue without ``check_listed``, a ``check_listed`` that
fails with a plain ExchangeError (the close goes on), legs held ~0 (never closed, never a
reason to block, even on a market found unlisted earlier in the tick), and the
``<action>_incomplete`` incident of a close that leaves legs open."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pytest
from test_mutants_execution import PAIR, RULES, T0, Venue, X, Y

from pairlib.clock import SettableClock
from pairlib.core.risk import MarketRules
from pairlib.edges.store import Store
from pairlib.engine.execution import Executor, LegFill, LegOrder, PairOutcome
from pairlib.errors import ExchangeError, ExchangeUnavailable, MarketNotListed
from pairlib.venue.records import OrderResult

CID = "pl-2601312000-068ccbb659"  # client ids of PAIR's orders at T0: CID-<leg>-<code>[-r<k>]
CODE = {"exit": "ex", "stop": "st", "exit_no_data": "nd", "flatten": "fl"}


@dataclass
class Delisting(Venue):
    """The in-memory venue, with a market list that can change: ``gone`` maps a symbol to the
    calls on which the venue answers "unknown symbol" (``check``: check_listed, ``lookup``:
    fetch_order_by_client_id, ``create``: create_order); ``delist`` maps n to what goes
    ``gone`` once the n-th create call has been answered. ``calls`` records every such call
    as (call, symbol); ``check_error`` is raised by every check_listed of a listed market."""

    gone: dict[str, set[str]] = field(default_factory=dict)
    delist: dict[int, dict[str, set[str]]] = field(default_factory=dict)
    check_error: ExchangeError | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _ask(self, call: str, symbol: str) -> None:
        self.calls.append((call, symbol))
        if call in self.gone.get(symbol, set()):
            raise MarketNotListed(f"{call} {symbol}: Invalid symbol.")

    def check_listed(self, symbol: str) -> None:
        self._ask("check", symbol)
        if self.check_error is not None:
            raise self.check_error

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        self._ask("lookup", symbol)
        return super().fetch_order_by_client_id(symbol, client_id)

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        self._ask("create", symbol)
        try:
            return super().create_order(symbol, side, amount, client_id, type, price,
                                        reduce_only)
        finally:
            self.gone.update(self.delist.pop(sum(c == "create" for c, _ in self.calls), {}))


EVERYWHERE = {"check", "lookup", "create"}


def _legs(action: str, ay: float, ax: float) -> list[LegOrder]:
    """The close orders of both legs held as ``ay``, ``ax`` (the caller's expectation)."""
    return [LegOrder(PAIR, "y", action, Y, "sell" if ay > 0 else "buy", abs(ay)),
            LegOrder(PAIR, "x", action, X, "sell" if ax > 0 else "buy", abs(ax))]


def _closing(venue: Venue, amounts: tuple[float, float], action: str = "exit",
             rules: dict[str, MarketRules] | None = None, unlisted: tuple[str, ...] = (),
             legs: list[LegOrder] | None = None, **kw: Any
             ) -> tuple[PairOutcome, Store, Executor, list[float]]:
    """A close of PAIR held as ``amounts`` on ``venue`` (``unlisted``: symbols this tick
    already found unlisted; ``kw``: more Executor settings)."""
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": amounts[0], "amount_x": amounts[1], "position": 1})
    venue.positions = {Y: amounts[0], X: amounts[1]}
    sleeps: list[float] = []
    ex = Executor(venue, store, T0, SettableClock(T0), RULES if rules is None else rules,
                  lookup_delay_s=0.0, recv_window_s=0.0, sleep=sleeps.append,
                  monotonic=lambda: 0.0, **kw)
    ex.unlisted.update(unlisted)
    return ex.close(PAIR, action, legs or _legs(action, *amounts)), store, ex, sleeps


def _incidents(ex: Executor, store: Store) -> list[tuple[str, str, str]]:
    """The executor's incidents, checked to be the store's too."""
    mine = [(i["kind"], i["symbol"], i["detail"]) for i in ex.incidents]
    stored = store.incidents()
    assert [tuple(r) for r in stored[["kind", "symbol", "detail"]].itertuples(index=False)] \
        == mine
    return mine


def _rows(store: Store) -> list[tuple[Any, ...]]:
    """The store's order rows (client id, side, amount, status, filled, reduce-only, error)."""
    cols = ["client_id", "side", "amount", "status", "filled", "reduce_only", "error"]
    return [(*r[:-1], None if pd.isna(r[-1]) else r[-1])
            for r in store.orders()[cols].itertuples(index=False)]


def _amounts(store: Store) -> tuple[float, float]:
    st = store.pair_state(PAIR)
    assert st is not None
    return st.amount("y"), st.amount("x")


def _blocked_detail(action: str, sym: str, held: str, others: str | None) -> str:
    """The close_blocked_delisted incident's sentence: ``sym`` held ``held``; ``others`` the
    other held legs (None: no other leg held)."""
    kept = (f"the other leg ({others}) is NOT closed either, so the pair stays hedged (closing "
            "it alone would leave the unlisted leg naked)" if others else "no other leg is held")
    return (f"{PAIR} {action}: {sym} {held} cannot be closed: the venue does not list {sym} "
            "among its active markets (delisted or suspended), so no order can be sent on it; "
            f"{kept}. The pair stays open and closing. Operator: close {sym} on the venue by "
            f"hand (unless the venue has settled it), then run `pairlib reconcile --accept {sym} "
            "--reason TEXT --force`: the pair is marked flat and the next tick closes its other "
            "leg reduce-only")


def _naked_detail(action: str, sym: str, after: str, held: str, now: str) -> str:
    """The close_naked_delisted incident's sentence."""
    return (f"{PAIR} {action}: the venue stopped listing {sym} during this close (it was "
            "listed when the tick loaded its markets: delisted or suspended since), after "
            f"{after}. {sym} {held} cannot be closed through the API and the pair is NOT hedged "
            f"any more (legs now: {now}): {sym} is held NAKED. Operator: close {sym} on the "
            "venue by hand now (unless the venue has settled it), then run `pairlib reconcile "
            f"--accept {sym} --reason TEXT --force`: the pair is marked flat and the next tick "
            "closes whatever is left of its other leg reduce-only")


def _unsent(leg: str, action: str, side: str, amount: float, why: str) -> LegFill:
    """A leg reported unfilled and never sent, as a blocked or stopped close reports it."""
    sym = Y if leg == "y" else X
    return LegFill(LegOrder(PAIR, leg, action, sym, side, amount, True), 0.0, None, 0.0, False,
                   (), why)


def _why_blocked(*syms: str) -> str:
    return f"not sent: {', '.join(syms)} not listed by the venue (delisted or suspended)"


def _blocked_message(*syms: str) -> str:
    return (f"close blocked: {', '.join(syms)} not listed by the venue (delisted or suspended), "
            "nothing sent so the pair stays hedged; close it on the venue by hand, then "
            + ", ".join(f"`pairlib reconcile --accept {s} --reason TEXT --force`" for s in syms))


# ------------------------------------------------------------------ blocked before any order


@pytest.mark.parametrize(("action", "ay", "ax", "others", "x_fill"), [
    ("exit", 5.0, -3.0, f"{X} -3", ("buy", 3.0)),
    ("stop", 0.8, -0.5, f"{X} -0.5", ("buy", 0.5)),  # small legs are held legs too
    ("exit_no_data", 5.0, 1e-12, None, None),  # x held ~0: not held, not reported
    ("flatten", 5.0, 1e-13, None, None),
], ids=["exit", "small legs", "other leg at 1e-12", "other leg at 1e-13"])
def test_a_leg_missing_from_the_market_list_blocks_the_close_before_any_venue_call(
    action: str, ay: float, ax: float, others: str | None, x_fill: tuple[str, float] | None
) -> None:
    venue = Delisting()
    out, store, ex, sleeps = _closing(venue, (ay, ax), action, rules={X: RULES[X]})
    why = _why_blocked(Y)
    legs = (_unsent("y", action, "sell", ay, why),)
    if x_fill is not None:
        legs += (_unsent("x", action, *x_fill, why),)
    assert out == PairOutcome(PAIR, action, False, legs, (), _blocked_message(Y), blocked=(Y,))
    assert _incidents(ex, store) == [
        ("close_blocked_delisted", Y, _blocked_detail(action, Y, f"+{ay:g}", others))]
    assert venue.calls == [] and venue.sent == []  # not even asked: the rules say it is gone
    assert ex.unlisted == set()  # only symbols found unlisted at the venue are kept there
    assert _rows(store) == [] and _amounts(store) == (ay, ax) and sleeps == []


@pytest.mark.parametrize("order", ["y first", "x first"])
def test_both_legs_missing_from_the_market_list_name_both_sorted(order: str) -> None:
    venue = Delisting()
    legs = _legs("exit", -2.0, 4.0)  # short y, long x
    out, store, ex, _ = _closing(venue, (-2.0, 4.0), rules={},
                                 legs=legs if order == "y first" else legs[::-1])
    why = _why_blocked(Y, X)
    fills = (_unsent("y", "exit", "buy", 2.0, why), _unsent("x", "exit", "sell", 4.0, why))
    assert out == PairOutcome(PAIR, "exit", False,
                              fills if order == "y first" else fills[::-1], (),
                              _blocked_message(Y, X), blocked=(Y, X))
    incidents = [("close_blocked_delisted", Y, _blocked_detail("exit", Y, "-2", None)),
                 ("close_blocked_delisted", X, _blocked_detail("exit", X, "+4", None))]
    assert _incidents(ex, store) == (incidents if order == "y first" else incidents[::-1])
    assert venue.calls == [] and venue.sent == [] and _rows(store) == []
    assert _amounts(store) == (-2.0, 4.0)


@pytest.mark.parametrize("gone", [Y, X])
def test_a_leg_found_unlisted_earlier_in_the_tick_blocks_the_close_without_asking(
    gone: str
) -> None:
    venue = Delisting()  # the venue would now answer that both are listed
    out, store, ex, _ = _closing(venue, (5.0, -3.0), "stop", unlisted=(gone,))
    why = _why_blocked(gone)
    assert out == PairOutcome(
        PAIR, "stop", False,
        (_unsent("y", "stop", "sell", 5.0, why), _unsent("x", "stop", "buy", 3.0, why)), (),
        _blocked_message(gone), blocked=(gone,))
    detail = (_blocked_detail("stop", Y, "+5", f"{X} -3") if gone == Y
              else _blocked_detail("stop", X, "-3", f"{Y} +5"))
    assert _incidents(ex, store) == [("close_blocked_delisted", gone, detail)]
    assert venue.calls == [] and venue.sent == [] and _rows(store) == []
    assert ex.unlisted == {gone} and _amounts(store) == (5.0, -3.0)


@pytest.mark.parametrize(("ax", "x_amount", "others"), [
    (-3.0, 3.0, f"{Y} +5"),
    (-0.4, 0.4, f"{Y} +5"),
])
def test_the_later_leg_is_checked_at_the_venue_and_found_unlisted_blocks_the_close(
    ax: float, x_amount: float, others: str
) -> None:
    venue = Delisting(gone={X: {"check"}})
    out, store, ex, _ = _closing(venue, (5.0, ax))
    why = _why_blocked(X)
    assert out == PairOutcome(
        PAIR, "exit", False,
        (_unsent("y", "exit", "sell", 5.0, why), _unsent("x", "exit", "buy", x_amount, why)),
        (), _blocked_message(X), blocked=(X,))
    assert _incidents(ex, store) == [
        ("close_blocked_delisted", X, _blocked_detail("exit", X, f"{ax:+g}", others))]
    assert venue.calls == [("check", X)]  # the first leg is not asked: its look-up would tell
    assert venue.sent == [] and _rows(store) == []
    assert ex.unlisted == {X} and _amounts(store) == (5.0, ax)


# ------------------------------------------------------------------ found unlisted at the send


@pytest.mark.parametrize("refused", ["lookup", "create"])
def test_the_first_leg_refused_as_unlisted_at_its_send_blocks_the_close(refused: str) -> None:
    venue = Delisting(gone={Y: {refused}})
    out, store, ex, sleeps = _closing(venue, (5.0, -3.0), "stop")
    why = _why_blocked(Y)
    assert out == PairOutcome(
        PAIR, "stop", False,
        (_unsent("y", "stop", "sell", 5.0, why), _unsent("x", "stop", "buy", 3.0, why)), (),
        _blocked_message(Y), blocked=(Y,))
    assert _incidents(ex, store) == [
        ("close_blocked_delisted", Y, _blocked_detail("stop", Y, "+5", f"{X} -3"))]
    cid = f"{CID}-y-st"
    if refused == "lookup":  # nothing sent, no trace left
        assert venue.calls == [("check", X), ("lookup", Y)]
        assert _rows(store) == []
    else:  # never retried, and the x leg is not sent either
        assert venue.calls == [("check", X), ("lookup", Y), ("create", Y)]
        assert _rows(store) == [(cid, "sell", 5.0, "rejected", 0.0, 1,
                                 f"MarketNotListed: create {Y}: Invalid symbol.")]
    assert venue.sent == [] and sleeps == []
    assert ex.unlisted == {Y} and _amounts(store) == (5.0, -3.0)


@pytest.mark.parametrize("refused", ["lookup", "create"])
def test_the_only_held_leg_is_not_checked_first_and_refused_at_its_send_blocks_the_close(
    refused: str
) -> None:
    venue = Delisting(gone={X: {refused, "check"}})
    out, store, ex, _ = _closing(venue, (1e-13, -3.0))  # y held ~0: x is the first held leg
    assert out == PairOutcome(PAIR, "exit", False,
                              (_unsent("x", "exit", "buy", 3.0, _why_blocked(X)),), (),
                              _blocked_message(X), blocked=(X,))
    assert _incidents(ex, store) == [
        ("close_blocked_delisted", X, _blocked_detail("exit", X, "-3", None))]
    assert venue.calls == ([("lookup", X)] if refused == "lookup"
                           else [("lookup", X), ("create", X)])
    assert venue.sent == [] and ex.unlisted == {X} and _amounts(store) == (1e-13, -3.0)


def _naked_message(sym: str, after: str) -> str:
    return (f"close stopped: {sym} not listed by the venue (delisted during the tick) after "
            f"{after}; {sym} is held NAKED: close it on the venue by hand now, then "
            f"`pairlib reconcile --accept {sym} --reason TEXT --force`")


@pytest.mark.parametrize("refused", ["lookup", "create"])
def test_the_later_leg_delisted_after_the_first_closed_is_reported_naked(refused: str) -> None:
    venue = Delisting(delist={1: {X: {refused}}})  # gone once the y order is answered
    out, store, ex, sleeps = _closing(venue, (5.0, -3.0))
    cy, cx = f"{CID}-y-ex", f"{CID}-x-ex"
    x_error = (f"not sent: {X} is not listed by the venue any more: lookup {X}: Invalid symbol."
               if refused == "lookup" else f"MarketNotListed: create {X}: Invalid symbol.")
    after = f"{Y} 5 of 5 closed reduce-only"
    assert out == PairOutcome(PAIR, "exit", False, (
        LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 5.0, 101.0, 0.05, True,
                (cy,)),
        LegFill(LegOrder(PAIR, "x", "exit", X, "buy", 3.0, True), 0.0, None, 0.0, False, (cx,),
                x_error),
    ), (), _naked_message(X, after), blocked=(X,))
    assert _incidents(ex, store) == [("close_naked_delisted", X, _naked_detail(
        "exit", X, after, "-3", f"{Y} +0, {X} -3"))]
    assert venue.sent == [(cy, "sell", 5.0, Y, True)]
    assert venue.calls == [("check", X), ("lookup", Y), ("create", Y), ("lookup", X)] + (
        [("create", X)] if refused == "create" else [])  # never retried
    y_row = (cy, "sell", 5.0, "closed", 5.0, 1, None)
    assert _rows(store) == ([y_row] if refused == "lookup" else [
        y_row, (cx, "buy", 3.0, "rejected", 0.0, 1, x_error)])
    assert ex.unlisted == {X} and _amounts(store) == (0.0, -3.0) and sleeps == []


def test_the_later_leg_delisted_after_its_own_partial_fill_names_both_closed_parts() -> None:
    venue = Delisting(script=[1.0, 0.5], delist={2: {X: {"create"}}})  # x: 1.5 of 3, then gone
    out, store, ex, sleeps = _closing(venue, (5.0, -3.0))
    cy, cx, cx1 = f"{CID}-y-ex", f"{CID}-x-ex", f"{CID}-x-ex-r1"
    x_error = f"MarketNotListed: create {X}: Invalid symbol."
    after = f"{Y} 5 of 5 closed reduce-only; {X} 1.5 of 3 closed reduce-only"
    assert out == PairOutcome(PAIR, "exit", False, (
        LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 5.0, 101.0, 0.05, True,
                (cy,)),
        LegFill(LegOrder(PAIR, "x", "exit", X, "buy", 3.0, True), 1.5, 102.0, 0.015, False,
                (cx, cx1), x_error),
    ), (), _naked_message(X, after), blocked=(X,))
    assert _incidents(ex, store) == [("close_naked_delisted", X, _naked_detail(
        "exit", X, after, "-1.5", f"{Y} +0, {X} -1.5"))]
    assert venue.sent == [(cy, "sell", 5.0, Y, True), (cx, "buy", 3.0, X, True)]
    assert venue.calls == [("check", X), ("lookup", Y), ("create", Y), ("lookup", X),
                           ("create", X), ("lookup", X), ("create", X)]
    assert _rows(store) == [(cy, "sell", 5.0, "closed", 5.0, 1, None),
                            (cx, "buy", 3.0, "expired", 1.5, 1, None),
                            (cx1, "buy", 1.5, "rejected", 0.0, 1, x_error)]
    assert ex.unlisted == {X} and _amounts(store) == (0.0, -1.5) and sleeps == [0.1]


@pytest.mark.parametrize(("ax", "rest", "now", "checked"), [
    (-3.0, ("buy", 3.0), f"{Y} +4.5, {X} -3", True),
    (0.5, ("sell", 0.5), f"{Y} +4.5, {X} +0.5", True),
    (1e-12, None, f"{Y} +4.5, {X} +1e-12", False),  # x held ~0: not checked, not reported
], ids=["x held 3", "x held 0.5", "x held 1e-12"])
def test_the_first_leg_delisted_after_a_partial_fill_is_reported_naked(
    ax: float, rest: tuple[str, float] | None, now: str, checked: bool
) -> None:
    venue = Delisting(script=[0.1], delist={1: {Y: {"create"}}})  # 0.5 of 5 fills, then gone
    out, store, ex, sleeps = _closing(venue, (5.0, ax), "stop")
    c0, c1 = f"{CID}-y-st", f"{CID}-y-st-r1"
    y_error = f"MarketNotListed: create {Y}: Invalid symbol."
    after = f"{Y} 0.5 of 5 closed reduce-only"
    legs: tuple[LegFill, ...] = (
        LegFill(LegOrder(PAIR, "y", "stop", Y, "sell", 5.0, True), 0.5, 101.0, 0.005, False,
                (c0, c1), y_error),)
    if rest is not None:  # the leg not attempted, reported unfilled
        legs += (_unsent("x", "stop", *rest,
                         f"not sent: {Y} not listed by the venue (delisted during the tick)"),)
    assert out == PairOutcome(PAIR, "stop", False, legs, (), _naked_message(Y, after),
                              blocked=(Y,))
    assert _incidents(ex, store) == [("close_naked_delisted", Y, _naked_detail(
        "stop", Y, after, "+4.5", now))]
    assert venue.sent == [(c0, "sell", 5.0, Y, True)]
    assert venue.calls == [("check", X)] * checked + [
        ("lookup", Y), ("create", Y), ("lookup", Y), ("create", Y)]
    assert _rows(store) == [(c0, "sell", 5.0, "expired", 0.5, 1, None),
                            (c1, "sell", 4.5, "rejected", 0.0, 1, y_error)]
    assert ex.unlisted == {Y} and _amounts(store) == (4.5, ax)
    assert sleeps == [0.1]  # the one wait before the second attempt


def test_the_later_leg_delisted_after_the_first_leg_went_unknown_is_reported_naked() -> None:
    # y's order is booked but its response is lost and every look-up fails: unknown.
    venue = Delisting(script=["drop-blind"], delist={1: {X: EVERYWHERE}})
    out, store, ex, _ = _closing(venue, (5.0, -3.0), "exit_no_data")
    cy, cx = f"{CID}-y-nd", f"{CID}-x-nd"
    y_error = ("ExchangeUnavailable: response lost; outcome UNKNOWN: look-ups of client id "
               f"{cy} failed (ExchangeUnavailable: look-up timed out) and the venue's position "
               "does not rule out a fill")
    x_error = f"not sent: {X} is not listed by the venue any more: lookup {X}: Invalid symbol."
    after = f"{Y} 0 of 5 closed reduce-only (an order's outcome is still unknown)"
    assert out == PairOutcome(PAIR, "exit_no_data", False, (
        LegFill(LegOrder(PAIR, "y", "exit_no_data", Y, "sell", 5.0, True), 0.0, None, 0.0,
                False, (cy,), y_error, unknown=True),
        LegFill(LegOrder(PAIR, "x", "exit_no_data", X, "buy", 3.0, True), 0.0, None, 0.0,
                False, (cx,), x_error),
    ), (), _naked_message(X, after), blocked=(X,))
    assert out.unknown
    assert _incidents(ex, store) == [("close_naked_delisted", X, _naked_detail(
        "exit_no_data", X, after, "-3", f"{Y} +5, {X} -3"))]
    assert venue.sent == [(cy, "sell", 5.0, Y, True)]
    assert venue.calls[:3] == [("check", X), ("lookup", Y), ("create", Y)]
    assert venue.calls[-1] == ("lookup", X) and venue.calls.count(("lookup", X)) == 1
    assert _rows(store) == [(cy, "sell", 5.0, "unknown", 0.0, 1, y_error)]
    assert ex.unlisted == {X} and _amounts(store) == (5.0, -3.0)


# ------------------------------------------------------------------ the close goes on


def _closed_both(action: str = "exit") -> PairOutcome:
    code = CODE[action]
    return PairOutcome(PAIR, action, True, (
        LegFill(LegOrder(PAIR, "y", action, Y, "sell", 5.0, True), 5.0, 101.0, 0.05, True,
                (f"{CID}-y-{code}",)),
        LegFill(LegOrder(PAIR, "x", action, X, "buy", 3.0, True), 3.0, 102.0, 0.03, True,
                (f"{CID}-x-{code}",)),
    ), (), "closed")


def test_a_close_goes_on_when_the_venue_cannot_say_whether_it_lists_the_later_leg() -> None:
    venue = Delisting(check_error=ExchangeUnavailable("check timed out"))
    out, store, ex, _ = _closing(venue, (5.0, -3.0))
    assert out == _closed_both()
    assert venue.calls == [("check", X), ("lookup", Y), ("create", Y), ("lookup", X),
                           ("create", X)]
    assert venue.sent == [(f"{CID}-y-ex", "sell", 5.0, Y, True),
                          (f"{CID}-x-ex", "buy", 3.0, X, True)]
    assert ex.incidents == [] and ex.unlisted == set() and _amounts(store) == (0.0, 0.0)


def test_a_close_on_a_venue_without_check_listed_goes_on() -> None:
    venue = Venue()
    assert not hasattr(venue, "check_listed")
    out, store, ex, _ = _closing(venue, (5.0, -3.0), "stop")
    assert out == _closed_both("stop")
    assert venue.sent == [(f"{CID}-y-st", "sell", 5.0, Y, True),
                          (f"{CID}-x-st", "buy", 3.0, X, True)]
    assert ex.incidents == [] and ex.unlisted == set() and _amounts(store) == (0.0, 0.0)


@pytest.mark.parametrize("tiny", [1e-13, 1e-12])
@pytest.mark.parametrize("how", ["missing from the rules", "unlisted at the venue"])
def test_a_leg_held_at_about_zero_is_not_closed_and_never_blocks_the_close(
    how: str, tiny: float
) -> None:
    venue = Delisting(gone={X: EVERYWHERE} if how == "unlisted at the venue" else {})
    out, store, ex, _ = _closing(
        venue, (5.0, -tiny), rules={Y: RULES[Y]} if how == "missing from the rules" else None)
    assert out == PairOutcome(PAIR, "exit", True, (
        LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 5.0, 101.0, 0.05, True,
                (f"{CID}-y-ex",)),
        LegFill(LegOrder(PAIR, "x", "exit", X, "buy", tiny, True), 0.0, None, 0.0, True, ()),
    ), (), "closed")
    assert venue.calls == [("lookup", Y), ("create", Y)]  # x: neither checked nor sent
    assert venue.sent == [(f"{CID}-y-ex", "sell", 5.0, Y, True)]
    assert ex.incidents == [] and ex.unlisted == set() and _amounts(store) == (0.0, -tiny)


def test_a_first_leg_held_at_about_zero_is_skipped_and_the_other_closes() -> None:
    venue = Delisting(gone={Y: EVERYWHERE})
    out, store, ex, _ = _closing(venue, (1e-13, -3.0), "stop", rules={X: RULES[X]})
    assert out == PairOutcome(PAIR, "stop", True, (
        LegFill(LegOrder(PAIR, "y", "stop", Y, "sell", 1e-13, True), 0.0, None, 0.0, True, ()),
        LegFill(LegOrder(PAIR, "x", "stop", X, "buy", 3.0, True), 3.0, 101.0, 0.03, True,
                (f"{CID}-x-st",)),
    ), (), "closed")
    assert venue.calls == [("lookup", X), ("create", X)]  # the one held leg is not checked
    assert ex.incidents == [] and ex.unlisted == set() and _amounts(store) == (1e-13, 0.0)


@pytest.mark.parametrize("tiny_leg", ["x", "y"])
def test_a_leg_held_at_about_zero_on_a_market_found_unlisted_earlier_does_not_stop_the_close(
    tiny_leg: str
) -> None:
    venue = Delisting()
    gone, amounts = (X, (5.0, -1e-13)) if tiny_leg == "x" else (Y, (1e-13, -3.0))
    out, store, ex, _ = _closing(venue, amounts, unlisted=(gone,))
    if tiny_leg == "x":
        legs = (LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 5.0, True), 5.0, 101.0, 0.05,
                        True, (f"{CID}-y-ex",)),
                LegFill(LegOrder(PAIR, "x", "exit", X, "buy", 1e-13, True), 0.0, None, 0.0,
                        True, ()))
    else:
        legs = (LegFill(LegOrder(PAIR, "y", "exit", Y, "sell", 1e-13, True), 0.0, None, 0.0,
                        True, ()),
                LegFill(LegOrder(PAIR, "x", "exit", X, "buy", 3.0, True), 3.0, 101.0, 0.03,
                        True, (f"{CID}-x-ex",)))
    assert ex.incidents == []
    assert out == PairOutcome(PAIR, "exit", True, legs, (), "closed")
    assert _amounts(store) == ((0.0, -1e-13) if tiny_leg == "x" else (1e-13, 0.0))


@pytest.mark.parametrize("path", ["blocked", "naked"])
def test_legs_not_sent_are_reported_at_the_amounts_the_store_holds_not_the_callers(
    path: str
) -> None:
    stale = [LegOrder(PAIR, "y", "exit", Y, "sell", 4.0),  # the store holds 5 and -3
             LegOrder(PAIR, "x", "exit", X, "buy", 2.0)]
    if path == "blocked":
        out, _, _, _ = _closing(Delisting(), (5.0, -3.0), rules={X: RULES[X]}, legs=stale)
        why = _why_blocked(Y)
        assert out.legs == (_unsent("y", "exit", "sell", 5.0, why),
                            _unsent("x", "exit", "buy", 3.0, why))
    else:  # y: 0.5 of 5 fills, then the venue refuses Y
        out, _, _, _ = _closing(Delisting(script=[0.1], delist={1: {Y: {"create"}}}),
                                (5.0, -3.0), legs=stale)
        assert [(f.order.amount, f.filled) for f in out.legs] == [(5.0, 0.5), (3.0, 0.0)]
        assert out.legs[1] == _unsent(
            "x", "exit", "buy", 3.0,
            f"not sent: {Y} not listed by the venue (delisted during the tick)")


# ------------------------------------------------------------------ a close left incomplete

REJECTED = "InvalidOrder: rejected by the venue"


@pytest.mark.parametrize(("action", "script", "legs", "incident"), [
    ("exit", [1.0, "reject"], (
        (5.0, 101.0, 0.05, None),
        (0.0, None, 0.0, f"3 still open after 1 reduce-only orders (last: {REJECTED})"),
    ), (X, f"{X} buy 3 filled 0 (3 still open after 1 reduce-only orders (last: {REJECTED}))")),
    ("stop", ["reject", "reject"], (
        (0.0, None, 0.0, f"5 still open after 1 reduce-only orders (last: {REJECTED})"),
        (0.0, None, 0.0, f"3 still open after 1 reduce-only orders (last: {REJECTED})"),
    ), (Y, f"{Y} sell 5 filled 0 (5 still open after 1 reduce-only orders (last: {REJECTED})); "
           f"{X} buy 3 filled 0 (3 still open after 1 reduce-only orders (last: {REJECTED}))")),
    ("flatten", [0.5, 1.0], (
        (2.5, 101.0, 0.025, "2.5 still open after 1 reduce-only orders"),
        (3.0, 102.0, 0.03, None),
    ), (Y, f"{Y} sell 5 filled 2.5 (2.5 still open after 1 reduce-only orders)")),
], ids=["second leg rejected", "both rejected", "first leg partly filled"])
def test_a_close_with_legs_left_open_is_an_incident_naming_each_open_leg(
    action: str, script: list[Any], legs: tuple[tuple[Any, ...], ...], incident: tuple[str, str]
) -> None:
    venue = Delisting(script=list(script))
    out, store, ex, _ = _closing(venue, (5.0, -3.0), action, close_attempts=1)
    code = CODE[action]
    orders = (LegOrder(PAIR, "y", action, Y, "sell", 5.0, True),
              LegOrder(PAIR, "x", action, X, "buy", 3.0, True))
    cids = (f"{CID}-y-{code}", f"{CID}-x-{code}")
    assert out == PairOutcome(PAIR, action, False, tuple(
        LegFill(o, filled, avg, fee, error is None, (cid,), error)
        for o, cid, (filled, avg, fee, error) in zip(orders, cids, legs, strict=True)),
        (), "incomplete: legs still open")
    symbol, what = incident
    assert _incidents(ex, store) == [
        (f"{action}_incomplete", symbol, f"{PAIR} {action}: {what}; still open at the venue")]
    assert venue.calls == [("check", X)] + [  # a rejected order is looked up once more
        call for sym, step in zip((Y, X), script, strict=True)
        for call in [("lookup", sym), ("create", sym)] + [("lookup", sym)] * (step == "reject")]
    assert ex.unlisted == set()
