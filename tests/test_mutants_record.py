"""How a venue report is applied to the store, pinned at the executor (``_record``, ``_settle``,
``_trade_fees``, ``_delta_price``, ``_lookup_once``, ``cancel_resting``), found what the
mutation run (``tests/mutation.py``) left loose.

A report is applied idempotently: the order row (every column: exchange id, filled, average,
fee, status, its tick, cleared error, created/updated times), one fill row per newly filled
part (amount, price of that part by difference, fee of that part, time from the report's
``timestamp`` in ms or else the clock) and the pair's signed leg amount. A report never lowers
what is recorded (filled, fee), keeps an earlier tick's ``tick_as_of``, and keeps the recorded
average when it carries none. A report without a fee takes the fee from the order's own
trades since 60 s before it (``fetch_my_trades(symbol, since_ms)``), 0 when the venue lacks
that call or it fails; nothing new filled -> no trades asked. An order report still ``open``
is cancelled: an ``OrderNotFound`` on cancel looks the order up, a failed cancel is the leg's
error, a cancel answered still open looks the order up again. Each test pins every venue
request made (look-ups, sends, cancels, trade queries), the rows and the leg amounts.
A stale report (fewer filled than recorded) keeps the recorded average, so the next part is
priced right."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import pytest
from test_mutants_execution import H4, PAIR, RULES, T0, X, Y

from pairlib.clock import SettableClock
from pairlib.edges.store import Store
from pairlib.engine.execution import Executor, LegFill, LegOrder, _delta_price, client_order_id
from pairlib.errors import ExchangeUnavailable, OrderNotFound
from pairlib.venue.records import OrderResult, TradeInfo

NOW = T0 + timedelta(minutes=5)  # the executor's clock: the rows' created/updated times
TS = 1_769_889_690_000  # a report's timestamp: T0 + 90 s
TICK, TICK_EARLIER = "2026-01-31T20:00:00Z", "2026-01-31T16:00:00Z"
AT_TS, AT_NOW = "2026-01-31T20:01:30Z", "2026-01-31T20:05:00Z"
BUY_Y = LegOrder(PAIR, "y", "enter_long", Y, "buy", 5.0)
CID = client_order_id(T0, PAIR, "y", "enter_long")
CID_EARLIER = client_order_id(T0 - H4, PAIR, "y", "enter_long")  # BUY_Y of the tick before


def _res(status: str, filled: float | None, average: float | None, fee: float = 0.0, *,
         ts: int | None = TS, order: LegOrder = BUY_Y, oid: str = "77") -> OrderResult:
    """The venue's report of ``order`` (exchange id ``oid``)."""
    cid = client_order_id(T0, order.pair_id, order.leg, order.action)
    return OrderResult(id=oid, client_id=cid, symbol=order.symbol, side=order.side,
                       type="market", amount=order.amount, filled=filled,  # type: ignore[arg-type]
                       average=average, status=status, fee=fee, timestamp=ts,
                       reduce_only=order.reduce_only)


def _trade(oid: str, amount: float, price: float, fee: float, symbol: str = Y) -> TradeInfo:
    return TradeInfo(f"t{oid}-{amount}", oid, symbol, "buy", amount, price, fee, TS)


@dataclass
class Desk:
    """A venue answering from scripts (an exception in a script is raised), logging every
    request in ``calls``: ``created`` answers create_order in turn, ``lookups`` the look-ups
    by client id in turn (then ``booked``, by client id; an order of another symbol is not
    found), ``cancels`` cancel_order in turn. No ``fetch_my_trades``."""

    created: list[Any] = field(default_factory=list)
    lookups: list[Any] = field(default_factory=list)
    booked: dict[str, OrderResult] = field(default_factory=dict)
    cancels: list[Any] = field(default_factory=list)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        self.calls.append(("create", symbol, side, amount, client_id, reduce_only))
        return _answer(self.created.pop(0))  # type: ignore[no-any-return]

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        self.calls.append(("lookup", symbol, client_id))
        found = _answer(self.lookups.pop(0)) if self.lookups else self.booked.get(client_id)
        return found if found is not None and found.symbol == symbol else None

    def cancel_order(self, symbol: str, order_id: str) -> OrderResult:
        self.calls.append(("cancel", symbol, order_id))
        return _answer(self.cancels.pop(0))  # type: ignore[no-any-return]

    def fetch_positions(self) -> list[Any]:
        return []


@dataclass
class TradingDesk(Desk):
    """A :class:`Desk` that also lists our trades (``trades``: the list, or an exception to
    raise), those of the symbol asked since ``since_ms``."""

    trades: list[TradeInfo] | Exception = field(default_factory=list)

    def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeInfo]:
        self.calls.append(("trades", symbol, since_ms))
        trades = _answer(self.trades)
        return [t for t in trades if t.symbol == symbol
                and (since_ms is None or t.timestamp is None or t.timestamp >= since_ms)]


def _answer(a: Any) -> Any:
    if isinstance(a, Exception):
        raise a
    return a


def _executor(venue: Desk) -> Executor:
    """An executor of tick T0 (clock at NOW) over a fresh store where PAIR holds nothing."""
    store = Store(":memory:")
    store.save_pair_state({"pair_id": PAIR, "y": Y, "x": X, "beta": 1.0, "alpha": 0.0,
                           "amount_y": 0.0, "amount_x": 0.0, "position": 0})
    return Executor(venue, store, T0, SettableClock(NOW), RULES, lookup_delay_s=0.0,
                    sleep=lambda s: None, monotonic=lambda: 0.0, recv_window_s=0.0)


def _stored(ex: Executor, status: str, filled: float = 0.0, average: float | None = None,
            fee: float = 0.0, *, tick: str = TICK, error: str | None = None,
            order: LegOrder = BUY_Y) -> str:
    """What an earlier run recorded of ``order``: its row and, when it had filled, one fill
    (at ``average``, or 0 without one) already in the leg amount. Returns its client id."""
    cid = client_order_id(T0 if tick == TICK else T0 - H4, order.pair_id, order.leg,
                          order.action)
    row = {"client_id": cid, "exchange_id": "77", "tick_as_of": tick, "pair_id": order.pair_id,
           "leg": order.leg, "action": order.action, "symbol": order.symbol,
           "side": order.side, "amount": order.amount, "filled": filled, "average": average,
           "fee": fee, "status": status, "reduce_only": int(order.reduce_only),
           "created_at": tick, "updated_at": tick, "error": error}
    fill = None if not filled else {
        "client_id": cid, "symbol": order.symbol, "side": order.side, "amount": filled,
        "price": average or 0.0, "fee": fee, "ts": tick}
    ex.store.apply_order_fill(row, fill, filled if order.side == "buy" else -filled)
    return cid


def _row(ex: Executor, cid: str = CID) -> dict[str, Any]:
    row = ex.store.order(cid)
    assert row is not None
    out = row.as_dict()
    out["fee"] = round(out["fee"], 9)
    return out


def _fills(ex: Executor) -> list[tuple[Any, ...]]:
    """(client id, its tick, side, amount, price, fee, time) of every fill row, oldest first."""
    return [(r["client_id"], r["tick_as_of"], r["side"], r["amount"], round(r["price"], 9),
             round(r["fee"], 9), r["ts"]) for r in ex.store.fills().to_dict("records")]


def _amounts(ex: Executor) -> tuple[float, float]:
    st = ex.store.pair_state(PAIR)
    assert st is not None
    return st.amount_y, st.amount_x


def _order_row(cid: str, status: str, filled: float, average: float | None, fee: float, *,
               order: LegOrder = BUY_Y, tick: str = TICK, created: str = AT_NOW,
               error: str | None = None) -> dict[str, Any]:
    """The order row expected (exchange id 77, updated at NOW)."""
    return {"client_id": cid, "tick_as_of": tick, "pair_id": order.pair_id, "leg": order.leg,
            "action": order.action, "symbol": order.symbol, "side": order.side,
            "amount": order.amount, "status": status, "created_at": created,
            "updated_at": AT_NOW, "exchange_id": "77", "filled": filled, "average": average,
            "fee": fee, "reduce_only": int(order.reduce_only), "error": error}


# ------------------------------------------------------------------ a first report
@pytest.mark.parametrize(("order", "amounts"), [
    (BUY_Y, (5.0, 0.0)),
    (LegOrder(PAIR, "x", "enter_long", X, "sell", 3.0), (0.0, -3.0)),
])
def test_an_order_the_venue_already_has_is_recorded_from_its_report_and_not_sent(
        order: LegOrder, amounts: tuple[float, float]) -> None:
    cid = client_order_id(T0, PAIR, order.leg, "enter_long")
    venue = TradingDesk(booked={cid: _res("closed", order.amount, 101.5, 0.05, order=order)})
    ex = _executor(venue)
    got = ex.fill_leg(order)
    assert got == LegFill(order, order.amount, 101.5, 0.05, True, (cid,), None, False)
    assert venue.calls == [("lookup", order.symbol, cid)]  # not sent, no cancel, no trades
    assert _row(ex, cid) == _order_row(cid, "closed", order.amount, 101.5, 0.05, order=order)
    assert _fills(ex) == [(cid, TICK, order.side, order.amount, 101.5, 0.05, AT_TS)]
    assert _amounts(ex) == amounts


def test_a_resting_order_is_cancelled_and_each_new_part_recorded_at_its_own_price() -> None:
    venue = TradingDesk(cancels=[_res("canceled", 4.0, 101.0, 0.04)])
    ex = _executor(venue)
    _stored(ex, "sent")
    assert ex.cancel_resting(CID, _res("open", 2.0, 100.0, 0.02)) is True
    assert venue.calls == [("cancel", Y, "77")]
    assert _row(ex) == _order_row(CID, "canceled", 4.0, 101.0, 0.04, created=TICK)
    assert _fills(ex) == [(CID, TICK, "buy", 2.0, 100.0, 0.02, AT_TS),
                          (CID, TICK, "buy", 2.0, 102.0, 0.02, AT_TS)]  # (404 - 200) / 2
    assert _amounts(ex) == (4.0, 0.0)


def test_a_resting_order_the_store_does_not_know_is_left_alone() -> None:
    venue = TradingDesk()
    ex = _executor(venue)
    assert ex.cancel_resting(CID, _res("open", 2.0, 100.0, 0.02)) is False
    assert venue.calls == []
    assert ex.store.order(CID) is None and _fills(ex) == [] and _amounts(ex) == (0.0, 0.0)


# ------------------------------------------------------------------ what a report may not change
def test_an_older_report_never_lowers_what_is_recorded() -> None:
    # Recorded: 4 filled @ 101, fee 0.04 (from trades). The venue's look-up answers an older
    # state (2 filled), and the cancel's answer carries no fee (as Binance's does not).
    venue = TradingDesk(lookups=[_res("open", 2.0, 100.0, 0.0)],
                        cancels=[_res("canceled", 4.0, 101.0, 0.0)],
                        trades=[_trade("77", 4.0, 101.0, 0.04)])
    ex = _executor(venue)
    _stored(ex, "open", 4.0, 101.0, 0.04)
    assert ex.resolve_pending() == [f"{CID}: found at the venue, canceled, filled 4"]
    assert venue.calls == [("lookup", Y, CID), ("cancel", Y, "77")]  # nothing new: no trades
    assert _row(ex) == _order_row(CID, "canceled", 4.0, 101.0, 0.04, created=TICK)
    assert _fills(ex) == [(CID, TICK, "buy", 4.0, 101.0, 0.04, TICK)]
    assert _amounts(ex) == (4.0, 0.0)


def test_an_older_report_does_not_change_the_price_of_the_next_part() -> None:
    venue = TradingDesk(lookups=[_res("open", 2.0, 100.0, 0.0)],
                        cancels=[_res("canceled", 5.0, 101.2, 0.0)],
                        trades=[_trade("77", 4.0, 101.0, 0.04), _trade("77", 1.0, 102.0, 0.01)])
    ex = _executor(venue)
    _stored(ex, "open", 4.0, 101.0, 0.04)
    assert ex.resolve_pending() == [f"{CID}: found at the venue, canceled, filled 5"]
    assert _fills(ex) == [(CID, TICK, "buy", 4.0, 101.0, 0.04, TICK),
                          (CID, TICK, "buy", 1.0, 102.0, 0.01, AT_TS)]
    assert _amounts(ex) == (5.0, 0.0)


def test_a_stale_open_report_never_reopens_a_final_order() -> None:
    # The store has the order closed, 5 filled; a look-up answers an older state (open, 2
    # filled): the row stays closed with its fill, and nothing is cancelled.
    venue = TradingDesk(lookups=[_res("open", 2.0, 100.0, 0.0)])
    ex = _executor(venue)
    _stored(ex, "closed", 5.0, 101.0, 0.05)
    report = ex._settle(CID, BUY_Y, venue.fetch_order_by_client_id(Y, CID))
    assert (report.status, report.filled, report.average) == ("closed", 5.0, 101.0)
    assert [c[0] for c in venue.calls] == ["lookup"]  # no cancel
    row = ex.store.order(CID)
    assert row is not None and (row.status, row.filled, row.average) == ("closed", 5.0, 101.0)
    assert _amounts(ex) == (5.0, 0.0)


@pytest.mark.parametrize(("filled", "average", "kept"), [
    (5.0, 101.5, (5.0, 101.5)),  # as filled as recorded: the venue's average stands
    (4.6, 100.0, (5.0, 101.0)),  # less filled (stale): the recorded fill and average stand
])
def test_only_a_report_at_least_as_filled_as_recorded_sets_the_average(
        filled: float, average: float, kept: tuple[float, float]) -> None:
    venue = TradingDesk()
    ex = _executor(venue)
    _stored(ex, "closed", 5.0, 101.0, 0.05)
    report = ex._settle(CID, BUY_Y, _res("closed", filled, average, 0.05))
    row = ex.store.order(CID)
    assert row is not None and (row.filled, row.average) == kept
    assert (report.filled, report.average) == kept
    assert _amounts(ex) == (5.0, 0.0)


def test_an_earlier_ticks_order_keeps_its_tick_and_loses_its_error_once_found() -> None:
    venue = TradingDesk(booked={CID_EARLIER: _res("closed", 5.0, 101.5, 0.05)})
    ex = _executor(venue)
    cid = _stored(ex, "unknown", tick=TICK_EARLIER,
                  error="ExchangeUnavailable: response lost; outcome UNKNOWN")
    assert cid == CID_EARLIER
    assert ex.resolve_pending() == [f"{cid}: found at the venue, closed, filled 5"]
    assert [i["kind"] for i in ex.incidents] == ["late_fill"]
    assert venue.calls == [("lookup", Y, cid)]
    assert _row(ex, cid) == _order_row(cid, "closed", 5.0, 101.5, 0.05, tick=TICK_EARLIER,
                                       created=TICK_EARLIER)
    assert _fills(ex) == [(cid, TICK_EARLIER, "buy", 5.0, 101.5, 0.05, AT_TS)]
    assert _amounts(ex) == (5.0, 0.0)


@pytest.mark.parametrize("filled", [0.0, None])
def test_a_report_of_nothing_filled_records_its_status_and_no_fill(
        filled: float | None) -> None:
    venue = TradingDesk(lookups=[_res("canceled", filled, None, 0.0)],
                        trades=[_trade("77", 1.0, 100.0, 0.01)])
    ex = _executor(venue)
    _stored(ex, "sent")
    assert ex.resolve_pending() == [f"{CID}: found at the venue, canceled, filled 0"]
    assert venue.calls == [("lookup", Y, CID)]
    assert _row(ex) == _order_row(CID, "canceled", 0.0, None, 0.0, created=TICK)
    assert _fills(ex) == [] and _amounts(ex) == (0.0, 0.0)


def test_float_noise_in_filled_is_not_a_fill() -> None:
    venue = TradingDesk(lookups=[_res("canceled", 1e-12, 100.0, 0.0)],
                        trades=[_trade("77", 1.0, 100.0, 0.01)])
    ex = _executor(venue)
    _stored(ex, "sent")
    assert ex.resolve_pending() == [f"{CID}: found at the venue, canceled, filled 1e-12"]
    assert venue.calls == [("lookup", Y, CID)]  # no trades asked for it
    assert _row(ex) == _order_row(CID, "canceled", 1e-12, 100.0, 0.0, created=TICK)
    assert _fills(ex) == [] and _amounts(ex) == (0.0, 0.0)


# ------------------------------------------------------------------ prices
def test_a_report_without_an_average_keeps_the_recorded_one() -> None:
    venue = TradingDesk(lookups=[_res("canceled", 2.0, None, 0.0)])
    ex = _executor(venue)
    _stored(ex, "open", 2.0, 100.0, 0.02)
    assert ex.resolve_pending() == [f"{CID}: found at the venue, canceled, filled 2"]
    assert _row(ex) == _order_row(CID, "canceled", 2.0, 100.0, 0.02, created=TICK)
    assert _fills(ex) == [(CID, TICK, "buy", 2.0, 100.0, 0.02, TICK)]


def test_a_fill_without_any_price_is_recorded_at_price_0() -> None:
    venue = TradingDesk(lookups=[_res("closed", 5.0, None, 0.05)])
    ex = _executor(venue)
    _stored(ex, "sent")
    ex.resolve_pending()
    assert _row(ex) == _order_row(CID, "closed", 5.0, None, 0.05, created=TICK)
    assert _fills(ex) == [(CID, TICK, "buy", 5.0, 0.0, 0.05, AT_TS)]
    assert _amounts(ex) == (5.0, 0.0)


def test_a_part_after_an_unpriced_one_is_recorded_at_the_orders_average() -> None:
    venue = TradingDesk(lookups=[_res("closed", 5.0, 101.0, 0.05)])
    ex = _executor(venue)
    _stored(ex, "open", 2.0, None, 0.02)
    ex.resolve_pending()
    assert _row(ex) == _order_row(CID, "closed", 5.0, 101.0, 0.05, created=TICK)
    assert _fills(ex) == [(CID, TICK, "buy", 2.0, 0.0, 0.02, TICK),
                          (CID, TICK, "buy", 3.0, 101.0, 0.03, AT_TS)]
    assert _amounts(ex) == (5.0, 0.0)


@pytest.mark.parametrize("prev_avg", [None, 101.6])
def test_a_first_part_is_priced_exactly_at_the_orders_average(prev_avg: float | None) -> None:
    # (3 * 101.6) / 3 would be 101.59999999999998: the average is taken as it is
    assert _delta_price(0.0, prev_avg, 3.0, 101.6) == 101.6


@pytest.mark.parametrize(("prev_filled", "prev_avg", "filled", "average", "price"), [
    (0.5, 100.0, 1.5, 101.0, 101.5),  # (1.5 * 101 - 0.5 * 100) / 1
    (2.0, 101.0, 5.0, 101.6, 102.0),  # (5 * 101.6 - 2 * 101) / 3
    (2.0, None, 5.0, 101.0, 101.0),  # the earlier part had no price: the order's average
    (2.0, 100.0, 4.0, 50.25, 0.5),  # a small but positive price is kept
    (2.0, 150.0, 3.0, 100.0, 100.0),  # 0 from inconsistent reports: the average
    (2.0, 200.0, 3.0, 100.0, 100.0),  # negative: the average
    (2.0, 100.0, 3.0, None, 0.0),  # no price at all
])
def test_each_new_part_is_priced_by_difference(prev_filled: float, prev_avg: float | None,
                                               filled: float, average: float | None,
                                               price: float) -> None:
    assert _delta_price(prev_filled, prev_avg, filled, average) == pytest.approx(price,
                                                                                 abs=1e-9)


# ------------------------------------------------------------------ fees
@pytest.mark.parametrize(("ts", "since", "at"), [
    (TS, TS - 60_000, AT_TS),  # trades since a minute before the order
    (None, None, AT_NOW),  # no time on the report: all the trades listed, the fill at NOW
])
def test_a_report_without_a_fee_takes_the_fee_of_the_orders_own_trades(
        ts: int | None, since: int | None, at: str) -> None:
    order = replace(BUY_Y, amount=0.5)
    venue = TradingDesk(created=[_res("closed", 0.5, 100.0, 0.0, ts=ts, order=order)],
                        trades=[_trade("77", 0.3, 100.0, 0.003), _trade("77", 0.2, 100.0, 0.002),
                                _trade("78", 0.5, 99.0, 0.5),  # another order's
                                _trade("77", 0.5, 99.0, 0.7, symbol=X)])  # another market's
    ex = _executor(venue)
    got = ex.fill_leg(order)
    assert got == LegFill(order, 0.5, 100.0, 0.005, True, (CID,), None, False)
    assert venue.calls == [("lookup", Y, CID), ("create", Y, "buy", 0.5, CID, False),
                           ("trades", Y, since)]
    assert _row(ex) == _order_row(CID, "closed", 0.5, 100.0, 0.005, order=order)
    assert _fills(ex) == [(CID, TICK, "buy", 0.5, 100.0, 0.005, at)]
    assert _amounts(ex) == (0.5, 0.0)


def test_a_reports_own_fee_is_kept_and_no_trades_are_asked() -> None:
    venue = TradingDesk(created=[_res("closed", 5.0, 100.0, 0.2)],
                        trades=[_trade("77", 5.0, 100.0, 0.05)])
    ex = _executor(venue)
    assert ex.fill_leg(BUY_Y) == LegFill(BUY_Y, 5.0, 100.0, 0.2, True, (CID,), None, False)
    assert venue.calls == [("lookup", Y, CID), ("create", Y, "buy", 5.0, CID, False)]
    assert _row(ex)["fee"] == 0.2
    assert _fills(ex) == [(CID, TICK, "buy", 5.0, 100.0, 0.2, AT_TS)]


@pytest.mark.parametrize("trading", [False, True])
def test_the_fee_is_0_when_the_venue_cannot_tell(trading: bool) -> None:
    created = [_res("closed", 5.0, 100.0, 0.0)]
    venue = (TradingDesk(created=created, trades=ExchangeUnavailable("trades timed out"))
             if trading else Desk(created=created))
    ex = _executor(venue)
    assert ex.fill_leg(BUY_Y) == LegFill(BUY_Y, 5.0, 100.0, 0.0, True, (CID,), None, False)
    assert venue.calls == [("lookup", Y, CID), ("create", Y, "buy", 5.0, CID, False)] + (
        [("trades", Y, TS - 60_000)] if trading else [])
    assert _row(ex)["fee"] == 0.0
    assert _fills(ex) == [(CID, TICK, "buy", 5.0, 100.0, 0.0, AT_TS)]


# ------------------------------------------------------------------ cancelling a resting rest
CLOSED_5 = _res("closed", 5.0, 101.2, 0.05)  # the rest filled before the cancel
FILLS_2 = [(CID, TICK, "buy", 2.0, 100.0, 0.02, AT_TS)]


@pytest.mark.parametrize(("cancels", "lookups", "asked", "row", "fills"), [
    pytest.param(  # the rest filled meanwhile: looked up once, final
        [OrderNotFound("Unknown order sent.")], [CLOSED_5, ExchangeUnavailable("timeout")],
        ["cancel", "lookup"], ("closed", 5.0, 101.2, 0.05),
        [*FILLS_2, (CID, TICK, "buy", 3.0, 102.0, 0.03, AT_TS)], id="not found: looked up"),
    pytest.param(  # the cancel acknowledged, not final yet: looked up again
        [_res("open", 2.0, 100.0, 0.02)], [_res("canceled", 3.0, 100.5, 0.03)],
        ["cancel", "lookup"], ("canceled", 3.0, 100.5, 0.03),
        [*FILLS_2, (CID, TICK, "buy", 1.0, 101.5, 0.01, AT_TS)], id="still open: looked up"),
    pytest.param(  # still open and the look-up fails: what the cancel answered
        [_res("open", 3.0, 100.5, 0.03)], [ExchangeUnavailable("timeout")],
        ["cancel", "lookup"], ("open", 3.0, 100.5, 0.03),
        [*FILLS_2, (CID, TICK, "buy", 1.0, 101.5, 0.01, AT_TS)], id="still open, look-up fails"),
    pytest.param(  # not found and every look-up fails: the resting report stands
        [OrderNotFound("Unknown order sent.")], [ExchangeUnavailable("timeout")] * 2,
        ["cancel", "lookup", "lookup"], ("open", 2.0, 100.0, 0.02), FILLS_2,
        id="not found, look-ups fail"),
])
def test_the_cancel_of_a_resting_rest_and_its_final_state(
        cancels: list[Any], lookups: list[Any], asked: list[str],
        row: tuple[str, float, float, float], fills: list[tuple[Any, ...]]) -> None:
    venue = TradingDesk(cancels=list(cancels), lookups=list(lookups))
    ex = _executor(venue)
    _stored(ex, "sent")
    assert ex.cancel_resting(CID, _res("open", 2.0, 100.0, 0.02)) is True
    assert venue.calls == [{"cancel": ("cancel", Y, "77"), "lookup": ("lookup", Y, CID)}[a]
                           for a in asked]
    assert _row(ex) == _order_row(CID, *row, created=TICK)
    assert _fills(ex) == fills
    assert _amounts(ex) == (row[1], 0.0)


def test_a_rest_that_cannot_be_cancelled_leaves_the_leg_unknown_with_the_reason() -> None:
    venue = TradingDesk(created=[_res("open", 2.0, 100.0, 0.02)],
                        cancels=[ExchangeUnavailable("venue busy")])
    ex = _executor(venue)
    assert ex.fill_leg(BUY_Y) == LegFill(BUY_Y, 2.0, 100.0, 0.02, False, (CID,),
                                         "could not cancel the unfilled rest: venue busy", True)
    assert venue.calls == [("lookup", Y, CID), ("create", Y, "buy", 5.0, CID, False),
                           ("cancel", Y, "77")]
    assert _row(ex) == _order_row(CID, "open", 2.0, 100.0, 0.02)
    assert _fills(ex) == FILLS_2
    assert _amounts(ex) == (2.0, 0.0)
