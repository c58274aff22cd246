"""Closing one leg of a pair (``Executor.close_leg``) and unwinding entry legs, pinned.

What the mutation run of ``pairlib/engine/execution.py`` left loose in ``close_leg``,
``_resolve_earlier_attempts``, ``_next_attempt``, ``_leg_amount``, ``_unwind_all`` and
``_unwind_text``: the reduce-only orders a close sends (side from the store's signed leg
amount, amount floored to the market's step, client ids ``-r<k>`` from the first unused
attempt number), the waits between attempts (doubling from ``max(lookup_delay_s, 0.1)`` up
to ``lookup_max_delay_s``), where it stops (``close_attempts`` orders, an amount below the
market's minimum, dust of at most half a step, an unlisted market, an unknown outcome), the
``LegFill`` it reports (closed amount, average over what closed, fees, complete / unknown,
error text), how orders left unresolved by an earlier run of the tick are resolved first
(and other ticks', pairs', legs' and actions' rows left alone), and the unwinds of an entry
(side flipped, reduce-only, the incident's text).

Prices in the fake venue rise by 1 per booked order (the first fills at 101); its fees are
1% of the filled amount; markets have amount step 0.1 and minimum amount 0.3.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from typing import Any

import pytest
from test_mutants_execution import OTHERS, PAIR, RULES, T0, Venue, X, Y

from pairlib.clock import SettableClock
from pairlib.edges.store import Store
from pairlib.engine.execution import Executor, LegFill, LegOrder
from pairlib.errors import InvalidOrder, MarketNotListed
from pairlib.venue.records import OrderResult

P = "pl-2601312000-068ccbb659"  # the client id prefix of tick T0 and PAIR
REJECTED = "InvalidOrder: rejected by the venue"


@dataclass
class _Venue(Venue):
    """The shared fake venue, which also records every look-up by client id and knows two
    more script steps: ``"unlisted"`` (the create call answers "unknown symbol") and
    ``("report", filled, average, status, fee)`` (the order is booked as that report)."""

    looked: list[str] = field(default_factory=list)

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        self.looked.append(client_id)
        return super().fetch_order_by_client_id(symbol, client_id)

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        step = self.script[0] if self.script else None
        if step == "unlisted":
            self.script.pop(0)
            self.sent.append((client_id, side, amount, symbol, reduce_only))
            raise MarketNotListed(f"binance does not have market symbol {symbol}")
        if isinstance(step, tuple):
            self.script.pop(0)
            self.sent.append((client_id, side, amount, symbol, reduce_only))
            _, filled, average, status, fee = step
            res = OrderResult(id=str(1000 + len(self.orders)), client_id=client_id,
                              symbol=symbol, side=side, type=type, amount=amount, filled=filled,
                              average=average, status=status, fee=fee, timestamp=1,
                              reduce_only=reduce_only)
            self.orders[client_id] = res
            self.positions[symbol] = self.positions.get(symbol, 0.0) + (
                filled if side == "buy" else -filled)
            return res
        return super().create_order(symbol, side, amount, client_id, type, price, reduce_only)


def _setup(script: list[Any], amounts: tuple[float, float] = (5.0, -3.0),
           **kw: Any) -> tuple[_Venue, Store, Executor, list[float]]:
    """A store holding PAIR's legs as ``amounts``, the venue holding the same, an executor
    of tick T0 whose waits are recorded (and are the only time that passes)."""
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": amounts[0], "amount_x": amounts[1], "position": 1})
    venue = _Venue(script=list(script), positions={Y: amounts[0], X: amounts[1]})
    sleeps: list[float] = []
    opts: dict[str, Any] = {"recv_window_s": 0.0, "lookup_delay_s": 0.0, "rules": RULES, **kw}
    ex = Executor(venue, store, T0, SettableClock(T0), sleep=sleeps.append,
                  monotonic=lambda: 0.0, **opts)
    return venue, store, ex, sleeps


def _exit_y(amount: float = 5.0, **kw: Any) -> LegOrder:
    return LegOrder(PAIR, "y", "exit", Y, "sell", amount, **kw)


def _plain(f: LegFill) -> tuple[Any, ...]:
    """A LegFill as a tuple, its floats rounded to 9 decimals (sums of fees)."""
    return tuple(round(v, 9) if isinstance(v, float) else v
                 for v in (f.order, f.filled, f.average, f.fee, f.complete, f.client_ids,
                           f.error, f.unknown))


def _fill(order: LegOrder, filled: float, average: float | None, fee: float, complete: bool,
          cids: tuple[str, ...], error: str | None = None,
          unknown: bool = False) -> tuple[Any, ...]:
    return (order, filled, average, fee, complete, cids, error, unknown)


def _status(store: Store, cid: str) -> tuple[str, float, str | None]:
    row = store.order(cid)
    assert row is not None
    return row.status, float(row.filled), row.error


# ------------------------------------------------------------------ retries and waits
def test_a_close_retries_partial_fills_and_rejections_with_doubling_capped_waits() -> None:
    venue, store, ex, sleeps = _setup([0.6, "reject", 0.5, 1.0], lookup_delay_s=0.3,
                                      lookup_max_delay_s=1.0)
    fill = ex.close_leg(_exit_y())
    # 3 of 5 at 101, the rest rejected, 1 of 2 at 102, the last 1 at 103: every order is
    # a reduce-only sell of what the store still holds, under the next attempt's client id
    assert venue.sent == [(f"{P}-y-ex", "sell", 5.0, Y, True),
                          (f"{P}-y-ex-r1", "sell", 2.0, Y, True),
                          (f"{P}-y-ex-r2", "sell", 2.0, Y, True),
                          (f"{P}-y-ex-r3", "sell", 1.0, Y, True)]
    assert sleeps == [0.3, 0.6, 1.0]  # 0.3, doubled, then capped at 1.0
    # average (3 * 101 + 102 + 103) / 5; fees 1% of each fill; the earlier rejection is
    # no error once the leg is closed
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 5.0, 101.6, 0.05, True,
                                 (f"{P}-y-ex", f"{P}-y-ex-r1", f"{P}-y-ex-r2", f"{P}-y-ex-r3"))
    assert store.pair_state(PAIR)["amount_y"] == 0.0
    assert _status(store, f"{P}-y-ex-r1") == ("rejected", 0.0, REJECTED)


def test_a_close_stops_after_close_attempts_orders_naming_the_last_error() -> None:
    venue, store, ex, sleeps = _setup(["reject"] * 3 + [1.0], close_attempts=3)
    fill = ex.close_leg(_exit_y())
    assert venue.sent == [(f"{P}-y-ex", "sell", 5.0, Y, True),
                          (f"{P}-y-ex-r1", "sell", 5.0, Y, True),
                          (f"{P}-y-ex-r2", "sell", 5.0, Y, True)]
    assert sleeps == [0.1, 0.2]  # a first wait of 0 s is raised to 0.1 s, then doubled
    assert _plain(fill) == _fill(
        _exit_y(reduce_only=True), 0.0, None, 0.0, False,
        (f"{P}-y-ex", f"{P}-y-ex-r1", f"{P}-y-ex-r2"),
        f"5 still open after 3 reduce-only orders (last: {REJECTED})")
    assert store.pair_state(PAIR)["amount_y"] == 5.0


def test_a_close_out_of_attempts_after_partial_fills_says_what_is_still_open() -> None:
    venue, store, ex, sleeps = _setup([0.6, 0.5], close_attempts=2)
    fill = ex.close_leg(_exit_y())
    assert venue.sent == [(f"{P}-y-ex", "sell", 5.0, Y, True),
                          (f"{P}-y-ex-r1", "sell", 2.0, Y, True)]
    assert sleeps == [0.1]
    # 3 at 101 and 1 at 102 closed: average 405 / 4; no order failed, so no "(last: ...)"
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 4.0, 101.25, 0.04, False,
                                 (f"{P}-y-ex", f"{P}-y-ex-r1"),
                                 "1 still open after 2 reduce-only orders")
    assert store.pair_state(PAIR)["amount_y"] == 1.0


@pytest.mark.parametrize(("held", "half", "first_price", "average"), [
    (0.8, 0.4, 101.0, 101.5),  # 0.4 at 101 and 0.4 at 102: less than one contract closed
    (0.6, 0.3, 1.0, 1.5),  # 0.3 at 1 and 0.3 at 2: a notional below 1
])
def test_the_average_weighs_every_fill_of_a_small_or_cheap_close(
        held: float, half: float, first_price: float, average: float) -> None:
    venue, _, ex, sleeps = _setup([0.5, 1.0], amounts=(held, -3.0))
    venue.price = first_price - 1.0
    fill = ex.close_leg(_exit_y(held))
    assert venue.sent == [(f"{P}-y-ex", "sell", held, Y, True),
                          (f"{P}-y-ex-r1", "sell", half, Y, True)]
    assert sleeps == [0.1]
    assert _plain(fill) == _fill(_exit_y(held, reduce_only=True), held, average,
                                 round(held * 0.01, 6), True, (f"{P}-y-ex", f"{P}-y-ex-r1"))


# ------------------------------------------------------------------ what is sent
@pytest.mark.parametrize(("held", "rules", "sent", "left"), [
    (0.3, RULES, 0.3, 0.0),  # exactly the market's minimum: sent
    (2.25, RULES, 2.2, 0.05),  # floored to the step; the 0.05 left is half a step: closed
    (0.2, {X: RULES[X]}, 0.2, 0.0),  # a market without rules: no minimum to respect
])
def test_a_long_leg_is_closed_by_one_reduce_only_sell_of_what_can_be_sent(
        held: float, rules: Any, sent: float, left: float) -> None:
    venue, store, ex, sleeps = _setup([1.0], amounts=(held, -3.0), rules=rules)
    fill = ex.close_leg(_exit_y(held))
    assert venue.sent == [(f"{P}-y-ex", "sell", sent, Y, True)]
    assert (sleeps, store.pair_state(PAIR)["amount_y"]) == ([], left)
    assert _plain(fill) == _fill(_exit_y(held, reduce_only=True), sent, 101.0,
                                 round(sent * 0.01, 6), True, (f"{P}-y-ex",))


def test_a_short_leg_is_closed_by_a_reduce_only_buy() -> None:
    venue, store, ex, _ = _setup([1.0], amounts=(5.0, -3.0))
    leg = LegOrder(PAIR, "x", "stop", X, "buy", 3.0)
    fill = ex.close_leg(leg)
    assert venue.sent == [(f"{P}-x-st", "buy", 3.0, X, True)]
    assert _plain(fill) == _fill(LegOrder(PAIR, "x", "stop", X, "buy", 3.0, True), 3.0, 101.0,
                                 0.03, True, (f"{P}-x-st",))
    assert (store.pair_state(PAIR)["amount_x"], store.pair_state(PAIR)["amount_y"]) == (0.0, 5.0)


def test_the_side_and_amount_come_from_the_store_not_from_the_callers_order() -> None:
    venue, store, ex, _ = _setup([1.0], amounts=(2.0, -3.0))
    fill = ex.close_leg(LegOrder(PAIR, "y", "exit", Y, "buy", 99.0))  # a stale expectation
    assert venue.sent == [(f"{P}-y-ex", "sell", 2.0, Y, True)]
    assert (fill.order.amount, fill.order.reduce_only, fill.filled, fill.complete) == (
        2.0, True, 2.0, True)


def test_closing_a_pair_the_store_does_not_hold_sends_nothing() -> None:
    venue, _, ex, sleeps = _setup([], amounts=(5.0, -3.0))
    leg = LegOrder("Q~R", "y", "exit", Y, "sell", 5.0)
    fill = ex.close_leg(leg)
    assert (venue.sent, venue.looked, sleeps) == ([], [], [])
    assert _plain(fill) == _fill(LegOrder("Q~R", "y", "exit", Y, "sell", 0.0, True), 0.0, None,
                                 0.0, True, ())


# ------------------------------------------------------------------ what is not sent
@pytest.mark.parametrize("held", [0.1, 0.15, 0.2])
def test_an_amount_below_the_market_minimum_is_refused_without_sending(held: float) -> None:
    venue, store, ex, sleeps = _setup([1.0], amounts=(held, -3.0))
    fill = ex.close_leg(_exit_y(held))
    assert (venue.sent, sleeps, store.pair_state(PAIR)["amount_y"]) == ([], [], held)
    assert _plain(fill) == _fill(
        _exit_y(held, reduce_only=True), 0.0, None, 0.0, False, (),
        f"{held} left is below the market's minimum amount: cannot be sent")


def test_a_leg_without_rules_below_the_sendable_precision_is_refused() -> None:
    venue, _, ex, _ = _setup([1.0], amounts=(1.4e-12, -3.0), rules={X: RULES[X]})
    fill = ex.close_leg(_exit_y(1.4e-12))
    assert venue.sent == []
    assert _plain(fill) == _fill(
        _exit_y(1.4e-12, reduce_only=True), 0.0, None, 0.0, False, (),
        "1.4e-12 left is below the market's minimum amount: cannot be sent")


@pytest.mark.parametrize(("held", "rules"), [
    (0.05, RULES),  # half of the 0.1 step
    (1e-12, {X: RULES[X]}),  # a market without rules: float noise
])
def test_dust_of_at_most_half_a_step_counts_as_closed(held: float, rules: Any) -> None:
    venue, _, ex, _ = _setup([1.0], amounts=(held, -3.0), rules=rules)
    fill = ex.close_leg(_exit_y(held))
    assert venue.sent == []
    assert _plain(fill) == _fill(_exit_y(held, reduce_only=True), 0.0, None, 0.0, True, ())


def test_a_market_the_venue_stops_listing_is_not_retried() -> None:
    venue, store, ex, sleeps = _setup(["unlisted", 1.0])
    fill = ex.close_leg(_exit_y())
    assert (venue.sent, sleeps) == ([(f"{P}-y-ex", "sell", 5.0, Y, True)], [])
    error = f"MarketNotListed: binance does not have market symbol {Y}"
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 0.0, None, 0.0, False,
                                 (f"{P}-y-ex",), error)
    assert ex.unlisted == {Y}
    assert _status(store, f"{P}-y-ex") == ("rejected", 0.0, error)


def test_an_order_whose_outcome_stays_unknown_ends_the_close_unknown() -> None:
    # booked, the response lost, and every look-up fails; the venue's position moved
    venue, store, ex, _ = _setup(["drop-blind", 1.0], recv_window_s=1.0)
    fill = ex.close_leg(_exit_y())
    assert venue.sent == [(f"{P}-y-ex", "sell", 5.0, Y, True)]  # never sent again
    error = (f"ExchangeUnavailable: response lost; outcome UNKNOWN: look-ups of client id "
             f"{P}-y-ex failed (ExchangeUnavailable: look-up timed out) and the venue's "
             "position does not rule out a fill")
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 0.0, None, 0.0, False,
                                 (f"{P}-y-ex",), error, True)
    assert _status(store, f"{P}-y-ex") == ("unknown", 0.0, error)


# ------------------------------------------------------------------ odd venue reports
def test_a_fill_reported_without_a_price_leaves_the_average_unknown() -> None:
    venue, store, ex, _ = _setup([("report", 5.0, None, "closed", 0.05)])
    fill = ex.close_leg(_exit_y())
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 5.0, None, 0.05, True,
                                 (f"{P}-y-ex",))
    assert store.pair_state(PAIR)["amount_y"] == 0.0


def test_an_order_that_filled_nothing_gives_the_close_no_price() -> None:
    # the venue quotes a price on an order that expired unfilled
    venue, _, ex, _ = _setup([("report", 0.0, 105.0, "expired", 0.0)], close_attempts=1)
    fill = ex.close_leg(_exit_y())
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 0.0, None, 0.0, False,
                                 (f"{P}-y-ex",), "5 still open after 1 reduce-only orders")


def test_when_nothing_closed_although_orders_filled_the_average_is_the_last_price() -> None:
    # a venue that fills 10 on a reduce-only sell of 5: the leg goes from +5 to -5, so
    # nothing is closed, yet the close did trade, at 101
    venue, store, ex, _ = _setup([("report", 10.0, 101.0, "closed", 0.1)], close_attempts=1)
    fill = ex.close_leg(_exit_y())
    assert store.pair_state(PAIR)["amount_y"] == -5.0
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 0.0, 101.0, 0.1, False,
                                 (f"{P}-y-ex",), "5 still open after 1 reduce-only orders")


# ------------------------------------------------------------------ earlier runs of the tick
def _with_earlier_rows(status: str, **kw: Any) -> tuple[_Venue, Store, Executor, list[float]]:
    """An earlier run of tick T0 left its first exit order of leg y ``status``; other rows
    left ``unknown`` belong to another tick, pair, leg or action."""
    venue, store, ex, sleeps = _setup([1.0], **kw)
    ex._save(f"{P}-y-ex", _exit_y(reduce_only=True), status)
    for when, order in OTHERS:
        other = Executor(venue, store, when, SettableClock(when), RULES)
        other._save(_cid_of(when, order), order, "unknown")
    return venue, store, ex, sleeps


def _cid_of(when: Any, order: LegOrder) -> str:
    codes = {"exit": "ex", "stop": "st"}
    stamp = when.strftime("%y%m%d%H%M")
    digest = P.split("-")[2] if order.pair_id == PAIR else "other"
    return f"pl-{stamp}-{digest}-{order.leg}-{codes[order.action]}"


def _others(store: Store) -> list[str]:
    return sorted(str(r["status"]) for r in store.orders().to_dict("records")
                  if not str(r["client_id"]).startswith(f"{P}-y-ex"))


@pytest.mark.parametrize("status", ["sent", "unknown", "open"])
def test_an_earlier_runs_order_found_booked_is_applied_and_nothing_is_sent(status: str) -> None:
    venue, store, ex, sleeps = _with_earlier_rows(status)
    venue.orders[f"{P}-y-ex"] = OrderResult(
        id="900", client_id=f"{P}-y-ex", symbol=Y, side="sell", type="market", amount=5.0,
        filled=5.0, average=101.0, status="closed", fee=0.05, timestamp=1, reduce_only=True)
    venue.positions[Y] = 0.0
    fill = ex.close_leg(_exit_y())
    # only this tick's order of the same pair, leg and action is looked up
    assert (venue.looked, venue.sent, sleeps) == ([f"{P}-y-ex"], [], [])
    # the leg is closed, by no order of this call: no client id, fee or price of its own
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 5.0, None, 0.0, True, ())
    assert _status(store, f"{P}-y-ex") == ("closed", 5.0, None)
    assert store.pair_state(PAIR)["amount_y"] == 0.0
    assert _others(store) == ["unknown"] * 4


def test_an_earlier_runs_order_never_booked_is_failed_and_the_next_attempt_is_sent() -> None:
    venue, store, ex, _ = _with_earlier_rows("sent")
    fill = ex.close_leg(_exit_y())
    assert venue.sent == [(f"{P}-y-ex-r1", "sell", 5.0, Y, True)]
    assert set(venue.looked) == {f"{P}-y-ex", f"{P}-y-ex-r1"}
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 5.0, 101.0, 0.05, True,
                                 (f"{P}-y-ex-r1",))
    assert _status(store, f"{P}-y-ex") == (
        "failed", 0.0, f"order {P}-y-ex left sent by an earlier run; not booked: the venue "
        f"does not know client id {P}-y-ex after its recvWindow passed")
    assert _others(store) == ["unknown"] * 4


def test_an_earlier_runs_order_still_unknown_blocks_the_close() -> None:
    venue, store, ex, _ = _with_earlier_rows("unknown")
    venue.lookup_fails = 10**6
    venue.positions[Y] = 0.0  # the venue's position does not rule out that it filled
    fill = ex.close_leg(_exit_y())
    assert venue.sent == []
    assert set(venue.looked) == {f"{P}-y-ex"}
    error = (f"order {P}-y-ex left unknown by an earlier run; outcome UNKNOWN: look-ups of "
             f"client id {P}-y-ex failed (ExchangeUnavailable: look-up timed out) and the "
             "venue's position does not rule out a fill")
    assert _plain(fill) == _fill(_exit_y(reduce_only=True), 0.0, None, 0.0, False, (), error,
                                 True)
    assert _others(store) == ["unknown"] * 4


def test_the_next_attempt_is_the_first_client_id_this_tick_has_not_used() -> None:
    venue, store, ex, _ = _setup([1.0])
    for cid in (f"{P}-y-ex", f"{P}-y-ex-r1", f"{P}-y-ex-r3"):  # r2 unused
        ex._save(cid, _exit_y(reduce_only=True), "rejected", REJECTED)
    stop = LegOrder(PAIR, "y", "stop", Y, "sell", 5.0, True)
    for cid in (f"{P}-y-st", f"{P}-y-st-r1", f"{P}-y-st-r2"):  # another action's
        ex._save(cid, stop, "rejected", REJECTED)
    ex._save(f"{P}-x-ex-r2", LegOrder(PAIR, "x", "exit", X, "buy", 3.0, True), "rejected")
    fill = ex.close_leg(_exit_y())
    assert venue.sent == [(f"{P}-y-ex-r2", "sell", 5.0, Y, True)]
    assert (fill.client_ids, fill.complete) == ((f"{P}-y-ex-r2",), True)


def test_a_close_whose_100_client_ids_are_used_raises() -> None:
    venue, _, ex, _ = _setup([1.0])
    for k in range(100):
        ex._save(f"{P}-y-ex" + (f"-r{k}" if k else ""), _exit_y(reduce_only=True),
                 "rejected", REJECTED)
    with pytest.raises(InvalidOrder) as e:
        ex.close_leg(_exit_y())
    assert str(e.value) == f"{PAIR} y exit: all 100 client ids of this tick are used"
    assert venue.sent == []


# ------------------------------------------------------------------ unwinds of an entry
ENTRY = (LegOrder(PAIR, "y", "enter_long", Y, "buy", 5.0),
         LegOrder(PAIR, "x", "enter_long", X, "sell", 3.0))


def test_an_entry_whose_second_leg_fails_unwinds_both_filled_legs_reduce_only() -> None:
    # y buys 5 at 101; x sells 1 of 3 at 102, its remainder is rejected; the unwinds buy
    # x's 1 back at 103 and sell y's 5 at 104
    venue, store, ex, _ = _setup([1.0, 0.34, "reject", 1.0, 1.0], amounts=(0.0, 0.0))
    out = ex.enter(PAIR, "enter_long", ENTRY)
    assert out.message == f"second leg failed: {REJECTED}; filled legs unwound"
    assert venue.sent[-2:] == [(f"{P}-x-uw", "buy", 1.0, X, True),
                               (f"{P}-y-uw", "sell", 5.0, Y, True)]
    assert [_plain(u) for u in out.unwinds] == [
        _fill(LegOrder(PAIR, "x", "unwind", X, "buy", 1.0, True), 1.0, 103.0, 0.01, True,
              (f"{P}-x-uw",)),
        _fill(LegOrder(PAIR, "y", "unwind", Y, "sell", 5.0, True), 5.0, 104.0, 0.05, True,
              (f"{P}-y-uw",)),
    ]
    assert [u.signed_filled for u in out.unwinds] == [1.0, -5.0]
    assert ex.incidents == [{"kind": "second_leg_failed", "symbol": X, "detail": (
        f"{PAIR} enter_long: second leg sell 3 {X} filled 1 ({REJECTED}) after first leg "
        f"{Y} filled 5; unwound 1 of 1 {X} reduce-only; unwound 5 of 5 {Y} reduce-only")}]
    st = store.pair_state(PAIR)
    assert (st["amount_y"], st["amount_x"]) == (0.0, 0.0)


def test_an_entry_whose_second_leg_fills_nothing_unwinds_only_the_first() -> None:
    venue, _, ex, _ = _setup([1.0, "reject", 1.0], amounts=(0.0, 0.0))
    out = ex.enter(PAIR, "enter_long", ENTRY)
    assert venue.sent[-1:] == [(f"{P}-y-uw", "sell", 5.0, Y, True)]
    assert [_plain(u) for u in out.unwinds] == [
        _fill(LegOrder(PAIR, "y", "unwind", Y, "sell", 5.0, True), 5.0, 102.0, 0.05, True,
              (f"{P}-y-uw",))]
    assert ex.incidents[0]["detail"].endswith(
        f"after first leg {Y} filled 5; unwound 5 of 5 {Y} reduce-only")


def test_a_short_first_leg_is_unwound_by_a_buy() -> None:
    entry = (LegOrder(PAIR, "y", "enter_short", Y, "sell", 5.0),
             LegOrder(PAIR, "x", "enter_short", X, "buy", 3.0))
    venue, _, ex, _ = _setup([1.0, "reject", 1.0], amounts=(0.0, 0.0))
    out = ex.enter(PAIR, "enter_short", entry)
    assert venue.sent[-1:] == [(f"{P}-y-uw", "buy", 5.0, Y, True)]
    assert [astuple(u.order) for u in out.unwinds] == [
        (PAIR, "y", "unwind", Y, "buy", 5.0, True)]


@pytest.mark.parametrize(("script", "kind", "unwound"), [
    (["reject"], "entry_failed", "filled 0 ({r}); nothing to unwind"),
    ([0.6, "reject", "reject", "reject"], "partial_fill_unwound",
     "filled 3 ({r}); unwound 0 of 3 {y} reduce-only (INCOMPLETE: 3 still open after 2 "
     "reduce-only orders (last: {r}))"),
])
def test_the_incident_of_a_failed_first_leg_says_what_was_unwound(
        script: list[Any], kind: str, unwound: str) -> None:
    _, _, ex, _ = _setup(script, amounts=(0.0, 0.0), close_attempts=2)
    ex.enter(PAIR, "enter_long", ENTRY)
    assert ex.incidents == [{"kind": kind, "symbol": Y, "detail": (
        f"{PAIR} enter_long: first leg buy 5 {Y} " + unwound.format(r=REJECTED, y=Y))}]
