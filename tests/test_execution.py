"""Idempotent order execution (``pairlib.engine.execution``) against an in-memory venue, and the
pure reconciliation and PnL rules (``pairlib.engine.reconcile``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairlib.clock import SettableClock
from pairlib.core.risk import MarketRules
from pairlib.edges.store import Store
from pairlib.engine.execution import (
    ACTION_CODES,
    Executor,
    LegOrder,
    client_order_id,
    is_own_client_id,
)
from pairlib.engine.reconcile import expected_positions, realized_pnl, reconcile
from pairlib.errors import ExchangeUnavailable, InsufficientFunds, InvalidOrder
from pairlib.venue.records import OrderResult, PositionInfo, TradeInfo

BINANCE_CLIENT_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
T0 = datetime(2026, 1, 31, 20, tzinfo=UTC)
PAIR = "AAA/USDT:USDT~BBB/USDT:USDT"
RULES = {s: MarketRules(s, 0.1, 0.1, 0.0) for s in ("AAA/USDT:USDT", "BBB/USDT:USDT")}


# ----------------------------------------------------------------------------- client ids


@settings(max_examples=200, deadline=None)
@given(
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                      timezones=st.just(UTC)),
    pair=st.text(min_size=1, max_size=80),
    leg=st.sampled_from(["y", "x"]),
    action=st.sampled_from(sorted(ACTION_CODES)),
    attempt=st.integers(0, 99),
)
def test_client_ids_are_valid_binance_ids_and_deterministic(
    when: datetime, pair: str, leg: str, action: str, attempt: int
) -> None:
    cid = client_order_id(when, pair, leg, action, attempt)
    assert BINANCE_CLIENT_ID.match(cid), cid
    assert len(cid) <= 33
    assert cid == client_order_id(when, pair, leg, action, attempt)
    assert is_own_client_id(cid)


def test_client_ids_differ_by_every_component() -> None:
    base = client_order_id(T0, PAIR, "y", "enter_long")
    variants = {
        client_order_id(T0 + timedelta(hours=4), PAIR, "y", "enter_long"),
        client_order_id(T0, "CCC/USDT:USDT~BBB/USDT:USDT", "y", "enter_long"),
        client_order_id(T0, PAIR, "x", "enter_long"),
        client_order_id(T0, PAIR, "y", "enter_short"),
        client_order_id(T0, PAIR, "y", "enter_long", 1),
    }
    assert base not in variants and len(variants) == 5
    assert client_order_id(T0, PAIR, "y", "enter_long", 1) == base + "-r1"
    assert base.startswith("pl-2601312000-")
    with pytest.raises(ValueError, match="leg"):
        client_order_id(T0, PAIR, "z", "exit")
    with pytest.raises(ValueError, match="action"):
        client_order_id(T0, PAIR, "y", "buy")
    assert not is_own_client_id("manual-1") and not is_own_client_id(None)


# ----------------------------------------------------------------------------- a fake venue


@dataclass
class FakeVenue:
    """Books market orders in memory; faults are armed per call."""

    orders: dict[str, OrderResult] = field(default_factory=dict)
    reject: list[type[Exception]] = field(default_factory=list)
    fill_ratio: list[float] = field(default_factory=list)
    drop: int = 0  # book, then raise ExchangeUnavailable
    lose: int = 0  # raise ExchangeUnavailable without booking
    lookup_fails: int = 0
    blind: bool = False  # with ``lose``: every look-up fails from then on
    creates: int = 0
    price: float = 100.0

    def create_order(self, symbol: str, side: str, amount: float, client_id: str,
                     type: str = "market", price: float | None = None,
                     reduce_only: bool = False) -> OrderResult:
        self.creates += 1
        if self.reject:
            raise self.reject.pop(0)("rejected by the fake venue")
        if self.lose:
            self.lose -= 1
            if self.blind:
                self.lookup_fails = 10**6
            raise ExchangeUnavailable("connection reset before the venue saw it")
        ratio = self.fill_ratio.pop(0) if self.fill_ratio else 1.0
        filled = round(amount * ratio, 1)
        res = OrderResult(
            id=str(1000 + len(self.orders)), client_id=client_id, symbol=symbol, side=side,
            type=type, amount=amount, filled=filled, average=self.price if filled else None,
            status="closed" if ratio == 1.0 else "open", fee=0.0, timestamp=1,
            reduce_only=reduce_only,
        )
        self.orders[client_id] = res
        if self.drop:
            self.drop -= 1
            raise ExchangeUnavailable("response lost")
        return res

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        if self.lookup_fails:
            self.lookup_fails -= 1
            raise ExchangeUnavailable("look-up timed out")
        return self.orders.get(client_id)

    def cancel_order(self, symbol: str, order_id: str) -> OrderResult:
        for cid, o in self.orders.items():
            if o.id == order_id:
                self.orders[cid] = OrderResult(**{**o.__dict__, "status": "canceled"})
                return self.orders[cid]
        raise AssertionError("unknown order")

    def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeInfo]:
        return [TradeInfo(f"t{o.id}", o.id, o.symbol, o.side, o.filled, self.price,
                          o.filled * self.price * 0.0005, 1)
                for o in self.orders.values() if o.symbol == symbol and o.filled]

    def net(self, symbol: str) -> float:
        return round(sum((o.filled if o.side == "buy" else -o.filled)
                         for o in self.orders.values() if o.symbol == symbol), 9)


@pytest.fixture
def store() -> Any:
    s = Store(":memory:")
    s.save_pair_state({"pair_id": PAIR, "y": "AAA/USDT:USDT", "x": "BBB/USDT:USDT",
                       "beta": 1.0, "alpha": 0.0})
    yield s
    s.close()


def _executor(venue: FakeVenue, store: Store, when: datetime = T0,
              clock: SettableClock | None = None) -> Executor:
    return Executor(venue, store, when, clock or SettableClock(when), RULES,
                    lookup_delay_s=0.0, sleep=lambda s: None)


def _legs(action: str = "enter_long", ay: float = 5.0, ax: float = 3.0) -> tuple[LegOrder, ...]:
    return (LegOrder(PAIR, "y", action, "AAA/USDT:USDT", "buy", ay),
            LegOrder(PAIR, "x", action, "BBB/USDT:USDT", "sell", ax))


def _amounts(store: Store) -> tuple[float, float]:
    st_ = store.pair_state(PAIR)
    assert st_ is not None
    return st_["amount_y"], st_["amount_x"]


# ----------------------------------------------------------------------------- one order


def test_an_order_is_placed_once_per_client_id(store: Store) -> None:
    venue = FakeVenue()
    leg = _legs()[0]
    first = _executor(venue, store).fill_leg(leg)
    assert first.complete and first.filled == 5.0
    assert first.fee == pytest.approx(5.0 * 100.0 * 0.0005)  # from the order's trades
    again = _executor(venue, store).fill_leg(leg)  # a re-run of the same tick
    assert again.complete and venue.creates == 1
    assert _amounts(store) == (5.0, 0.0)
    row = store.order(first.client_ids[0])
    assert row is not None and row["status"] == "closed" and row["exchange_id"] == "1000"
    fills = store.fills()
    assert len(fills) == 1 and fills.iloc[0]["price"] == 100.0


def test_an_order_the_store_lost_is_found_at_the_venue(store: Store) -> None:
    venue = FakeVenue()
    leg = _legs()[0]
    cid = client_order_id(T0, PAIR, "y", "enter_long")
    venue.create_order(leg.symbol, leg.side, leg.amount, cid)
    out = _executor(venue, store).fill_leg(leg)
    assert out.complete and venue.creates == 1
    assert _amounts(store) == (5.0, 0.0)  # adopted and applied once


def test_lost_response_is_resolved_by_client_id(store: Store) -> None:
    venue = FakeVenue(drop=1)
    out = _executor(venue, store).fill_leg(_legs()[0])
    assert out.complete and venue.creates == 1 and len(venue.orders) == 1
    assert _amounts(store) == (5.0, 0.0)


def test_lost_order_is_looked_up_until_its_recv_window_passed_then_not_booked(
    store: Store,
) -> None:
    venue = FakeVenue(lose=1)
    slept: list[float] = []
    ex = _executor(venue, store)
    ex.sleep = slept.append
    out = ex.fill_leg(_legs()[0])
    # Never read "not found" as final before timestamp + recvWindow (+ skew) has passed.
    assert sum(slept) >= ex.recv_window_s
    assert not out.complete and not out.unknown and venue.creates == 1
    assert store.order(out.client_ids[0])["status"] == "failed"
    assert "recvWindow" in (out.error or "")


def test_order_booked_after_the_timeout_is_found_by_the_backoff(store: Store) -> None:
    venue = FakeVenue(lose=1)
    ex = _executor(venue, store)
    looks = {"n": 0}
    leg = _legs()[0]
    cid = client_order_id(T0, PAIR, "y", "enter_long")

    def late_booking(symbol: str, client_id: str) -> OrderResult | None:
        looks["n"] += 1
        if looks["n"] == 6:  # the venue books it a few seconds after the client gave up
            venue.orders[cid] = OrderResult("55", cid, leg.symbol, "buy", "market", 5.0, 5.0,
                                            100.0, "closed", 0.0, 1, False)
        return venue.orders.get(client_id)

    venue.fetch_order_by_client_id = late_booking  # type: ignore[method-assign]
    out = ex.fill_leg(leg)
    assert out.complete and out.filled == 5.0 and venue.creates == 1
    assert _amounts(store) == (5.0, 0.0)


def test_failed_lookups_are_never_read_as_not_found(store: Store) -> None:
    venue = FakeVenue(lose=1, blind=True)
    out = _executor(venue, store).fill_leg(_legs()[0])  # no positions to consult either
    assert out.unknown and not out.complete and venue.creates == 1
    assert store.order(out.client_ids[0])["status"] == "unknown"


def test_unchanged_position_after_the_window_proves_not_booked(store: Store) -> None:
    venue = FakeVenue(lose=1, blind=True)
    venue.fetch_positions = lambda: []  # type: ignore[attr-defined]
    out = _executor(venue, store).fill_leg(_legs()[0])
    assert not out.unknown and store.order(out.client_ids[0])["status"] == "failed"
    # A position that moved by the order means it may have filled: still unknown.
    venue2 = FakeVenue(lose=1, blind=True)
    venue2.fetch_positions = lambda: [  # type: ignore[attr-defined]
        PositionInfo("BBB/USDT:USDT", -3.0, 100.0, 0.0, -300.0)]
    out2 = _executor(venue2, store).fill_leg(_legs()[1])
    assert out2.unknown and store.order(out2.client_ids[0])["status"] == "unknown"


def test_unknown_second_leg_keeps_the_first_and_records_an_incident(store: Store) -> None:
    venue = FakeVenue()
    ex = _executor(venue, store)
    real = venue.create_order

    def lose_second(*a: Any, **kw: Any) -> OrderResult:
        if venue.creates == 1:
            venue.lookup_fails = 1000
            venue.creates += 1
            raise ExchangeUnavailable("read timed out")
        return real(*a, **kw)

    venue.create_order = lose_second  # type: ignore[method-assign]
    out = ex.enter(PAIR, "enter_long", _legs())  # type: ignore[arg-type]
    assert not out.ok and out.unknown and out.unwinds == ()
    assert venue.net("AAA/USDT:USDT") == 5.0  # the first leg is not unwound blindly
    assert [i["kind"] for i in ex.incidents] == ["order_unknown"]


def test_second_leg_is_sized_from_the_first_legs_fill(store: Store) -> None:
    rules = {**RULES, "AAA/USDT:USDT": MarketRules("AAA/USDT:USDT", 0.1, 0.1, 5.0)}
    venue = FakeVenue(fill_ratio=[0.98])  # 4.9 of 5.0; the 0.1 rest is $10 < ... see below
    ex = Executor(venue, store, T0, SettableClock(T0), rules, lookup_delay_s=0.0,
                  sleep=lambda s: None)
    venue.price = 40.0  # 0.1 x 40 = $4 < the $5 minimum notional: the rest is complete
    out = ex.enter(PAIR, "enter_long", _legs(ay=5.0, ax=3.0))  # type: ignore[arg-type]
    assert out.ok and venue.creates == 2  # no remainder, no unwind
    assert out.legs[0].filled == pytest.approx(4.9)
    assert out.legs[1].filled == pytest.approx(2.9)  # 3.0 x 4.9 / 5.0 = 2.94, floored
    assert _amounts(store) == (pytest.approx(4.9), pytest.approx(-2.9))


def test_failed_lookup_sends_nothing(store: Store) -> None:
    venue = FakeVenue(lookup_fails=1)
    out = _executor(venue, store).fill_leg(_legs()[0])
    assert not out.complete and venue.creates == 0 and "look-up" in (out.error or "")
    assert store.orders().empty  # nothing recorded that would stop a re-run


def test_duplicate_client_id_rejection_is_looked_up(store: Store) -> None:
    venue = FakeVenue()
    leg = _legs()[0]
    cid = client_order_id(T0, PAIR, "y", "enter_long")
    booked = venue.create_order(leg.symbol, leg.side, leg.amount, cid)
    venue.reject = [InvalidOrder]
    calls = {"n": 0}
    real_lookup = venue.fetch_order_by_client_id

    def hide_first(symbol: str, client_id: str) -> OrderResult | None:
        calls["n"] += 1
        return None if calls["n"] == 1 else real_lookup(symbol, client_id)

    venue.fetch_order_by_client_id = hide_first  # type: ignore[method-assign]
    out = _executor(venue, store).fill_leg(leg)
    assert out.complete and venue.orders[cid] == booked


def test_partial_fill_sends_the_remainder_under_a_derived_id(store: Store) -> None:
    venue = FakeVenue(fill_ratio=[0.4, 0.5])
    out = _executor(venue, store).fill_leg(_legs()[0])
    assert out.complete and out.filled == pytest.approx(5.0)
    cid = client_order_id(T0, PAIR, "y", "enter_long")
    assert out.client_ids == (cid, cid + "-r1", cid + "-r2")
    assert venue.orders[cid].status == "canceled"  # the resting rest was cancelled
    assert _amounts(store)[0] == pytest.approx(5.0)


def test_partial_fill_gives_up_after_max_remainders(store: Store) -> None:
    venue = FakeVenue(fill_ratio=[0.2, 0.2, 0.2])
    out = _executor(venue, store).fill_leg(_legs()[0])
    assert not out.complete and 0 < out.filled < 5.0 and len(out.client_ids) == 3
    assert "partial fill" in (out.error or "")


# ----------------------------------------------------------------------------- pairs


def test_second_leg_failure_unwinds_the_first_reduce_only(store: Store) -> None:
    venue = FakeVenue()
    ex = _executor(venue, store)
    real = venue.create_order

    def reject_second(*a: Any, **kw: Any) -> OrderResult:
        if venue.creates == 1:
            venue.creates += 1
            raise InsufficientFunds("margin")
        return real(*a, **kw)

    venue.create_order = reject_second  # type: ignore[method-assign]
    out = ex.enter(PAIR, "enter_long", _legs())  # type: ignore[arg-type]
    assert not out.ok and len(out.unwinds) == 1 and out.unwinds[0].complete
    unwind = out.unwinds[0].order
    assert unwind.reduce_only and unwind.side == "sell" and unwind.action == "unwind"
    assert venue.net("AAA/USDT:USDT") == 0.0 and venue.net("BBB/USDT:USDT") == 0.0
    assert _amounts(store) == (0.0, 0.0)
    assert [i["kind"] for i in ex.incidents] == ["second_leg_failed"]
    assert len(store.incidents()) == 1


def test_first_leg_failure_skips_the_second(store: Store) -> None:
    venue = FakeVenue(reject=[InsufficientFunds])
    ex = _executor(venue, store)
    out = ex.enter(PAIR, "enter_long", _legs())  # type: ignore[arg-type]
    assert not out.ok and venue.creates == 1
    statuses = store.orders().set_index("leg")["status"].to_dict()
    assert statuses == {"y": "rejected", "x": "skipped"}


def test_resumed_entry_keeps_the_planned_amounts(store: Store) -> None:
    venue = FakeVenue()
    _executor(venue, store).fill_leg(_legs()[0])  # first leg went through, then a crash
    store.save_order({"client_id": client_order_id(T0, PAIR, "x", "enter_long"),
                      "tick_as_of": "2026-01-31T20:00:00Z", "pair_id": PAIR, "leg": "x",
                      "action": "enter_long", "symbol": "BBB/USDT:USDT", "side": "sell",
                      "amount": 3.0, "status": "planned", "created_at": "2026-01-31T20:00:00Z",
                      "updated_at": "2026-01-31T20:00:00Z"})
    out = _executor(venue, store).enter(PAIR, "enter_long", _legs(ay=7.0, ax=4.0))  # type: ignore[arg-type]
    assert out.ok and venue.creates == 2
    assert _amounts(store) == (5.0, -3.0)


def test_close_retries_within_the_tick_with_new_ids(store: Store) -> None:
    venue = FakeVenue()
    ex = _executor(venue, store)
    assert ex.enter(PAIR, "enter_long", _legs()).ok  # type: ignore[arg-type]
    venue.reject = [InsufficientFunds, InvalidOrder]
    venue.fill_ratio = [1.0, 1.0, 0.1]  # y fills, then x fills 10%, then the rest
    legs = [LegOrder(PAIR, "y", "exit", "AAA/USDT:USDT", "sell", 5.0, True),
            LegOrder(PAIR, "x", "exit", "BBB/USDT:USDT", "buy", 3.0, True)]
    out = _executor(venue, store, T0 + timedelta(hours=4)).close(PAIR, "exit", legs)
    assert out.ok and _amounts(store) == (0.0, 0.0)
    cid = client_order_id(T0 + timedelta(hours=4), PAIR, "y", "exit")
    assert out.legs[0].client_ids == (cid, cid + "-r1", cid + "-r2")
    assert venue.net("AAA/USDT:USDT") == 0.0 and venue.net("BBB/USDT:USDT") == 0.0


def test_close_that_keeps_failing_is_an_incident_and_leaves_the_legs(store: Store) -> None:
    venue = FakeVenue()
    ex = _executor(venue, store)
    assert ex.enter(PAIR, "enter_long", _legs()).ok  # type: ignore[arg-type]
    venue.reject = [InsufficientFunds] * 20
    legs = [LegOrder(PAIR, "y", "exit", "AAA/USDT:USDT", "sell", 5.0, True),
            LegOrder(PAIR, "x", "exit", "BBB/USDT:USDT", "buy", 3.0, True)]
    closer = _executor(venue, store, T0 + timedelta(hours=4))
    out = closer.close(PAIR, "exit", legs)
    assert not out.ok and [f.complete for f in out.legs] == [False, False]
    assert len(out.legs[0].client_ids) == closer.close_attempts
    assert _amounts(store) == (5.0, -3.0)
    assert [i["kind"] for i in closer.incidents] == ["exit_incomplete"]


def test_resolve_pending_applies_late_fills_and_expires_the_rest(store: Store) -> None:
    venue = FakeVenue(lose=1, blind=True)
    clock = SettableClock(T0)
    out = _executor(venue, store, clock=clock).fill_leg(_legs()[0])
    assert out.unknown
    venue.lookup_fails = 0
    cid = out.client_ids[0]
    # The order did reach the venue after all (e.g. a slow gateway).
    venue.orders[cid] = OrderResult("77", cid, "AAA/USDT:USDT", "buy", "market", 5.0, 5.0,
                                    101.0, "closed", 0.25, 1, False)
    later = T0 + timedelta(hours=4)
    clock.set(later)
    ex = _executor(venue, store, later, clock)
    notes = ex.resolve_pending()
    assert any(cid in n for n in notes)
    assert store.order(cid)["status"] == "closed"
    assert store.order(cid)["tick_as_of"] == "2026-01-31T20:00:00Z"  # keeps its tick
    assert _amounts(store) == (5.0, 0.0)
    assert [i["kind"] for i in ex.incidents] == ["late_fill"]
    # A lost one (never reached the venue) expires after the grace period.
    venue2 = FakeVenue(lose=1, blind=True)
    out2 = _executor(venue2, store, later, clock).fill_leg(_legs()[1])
    venue2.lookup_fails = 0
    clock.set(later + timedelta(hours=4))
    _executor(venue2, store, later + timedelta(hours=4), clock).resolve_pending()
    assert store.order(out2.client_ids[0])["status"] == "failed"


# ----------------------------------------------------------------------------- reconcile


def _states(rows: list[tuple[str, str, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["y", "x", "amount_y", "amount_x"])


def test_expected_positions_sum_every_pairs_signed_legs() -> None:
    exp = expected_positions(_states([("A", "B", 2.0, -3.0), ("C", "B", 0.0, 1.0),
                                      ("D", "E", 0.0, 0.0)]))
    assert exp == {"A": 2.0, "B": -2.0, "C": 0.0, "D": 0.0, "E": 0.0}


def test_reconcile_flags_differences_beyond_half_a_step_and_foreign_orders() -> None:
    pos = [PositionInfo("A", 2.04, 1.0, 0.0, 2.04), PositionInfo("B", -2.0, 1.0, 0.0, -2.0),
           PositionInfo("Z", 1.0, 1.0, 0.0, 1.0)]
    foreign = [OrderResult("9", "manual", "C", "buy", "limit", 1.0, 0.0, None, "open", 0.0,
                           None, False)]
    found = reconcile({"A": 2.0, "B": -2.0, "C": 0.0}, pos, foreign, {"A": 0.1, "Z": 0.1})
    assert [(m.symbol, m.kind) for m in found] == [("Z", "position"), ("C", "open_order")]
    found = reconcile({"A": 2.0}, [PositionInfo("A", 2.1, 1.0, 0.0, 2.1)], (), {"A": 0.1})
    assert len(found) == 1 and found[0].difference == pytest.approx(0.1)


def test_realized_pnl_average_cost() -> None:
    fills = pd.DataFrame(
        [("A", "buy", 1.0, 100.0, 0.1), ("A", "buy", 1.0, 110.0, 0.1),   # avg 105
         ("A", "sell", 1.5, 120.0, 0.2),                                 # +22.5
         ("A", "sell", 1.0, 100.0, 0.1),                                 # +(-2.5), short 0.5
         ("A", "buy", 0.5, 90.0, 0.05),                                  # short +5
         ("B", "sell", 2.0, 50.0, 0.0), ("B", "buy", 2.0, 55.0, 0.0)],   # -10
        columns=["symbol", "side", "amount", "price", "fee"],
    )
    assert realized_pnl(fills) == pytest.approx(22.5 - 2.5 + 5.0 - 10.0 - 0.55)
    assert realized_pnl(fills.iloc[:0]) == 0.0


# ----------------------------------------------------------------------------- store ledger


def test_store_tick_rows_and_order_fills(store: Store) -> None:
    from pairlib.errors import StoreError

    store.start_tick(T0, T0, "normal", 1, None)
    assert store.tick_row(T0)["status"] == "running"
    store.finish_tick(T0, "failed", T0, 1.5, message="boom", notebook_path="a.ipynb")
    store.start_tick(T0, T0 + timedelta(minutes=1), "exits_only: kill switch")  # a re-run
    row = store.tick_row(T0)
    assert (row["status"], row["notebook_path"], row["message"]) == ("running", "a.ipynb", None)
    store.finish_tick(T0, "ok", T0, 2.0)
    assert store.tick_row(T0)["mode"] == "exits_only: kill switch"
    later = T0 + timedelta(hours=4)
    store.finish_tick(later, "refused", later, 0.0, mode="refused", message="no keys")
    assert list(store.ticks()["status"]) == ["ok", "refused"]

    order = {"client_id": "pl-x", "tick_as_of": "2026-01-31T20:00:00Z", "pair_id": PAIR,
             "leg": "y", "action": "enter_long", "symbol": "AAA/USDT:USDT", "side": "buy",
             "amount": 0.3, "filled": 0.1, "status": "open",
             "created_at": "2026-01-31T20:00:00Z", "updated_at": "2026-01-31T20:00:00Z"}
    fill = {"client_id": "pl-x", "symbol": "AAA/USDT:USDT", "side": "buy", "amount": 0.1,
            "price": 10.0, "fee": 0.01, "ts": T0}
    store.apply_order_fill(order, fill, 0.1)
    store.apply_order_fill({**order, "filled": 0.3}, {**fill, "amount": 0.2}, 0.2)
    assert _amounts(store) == (0.3, 0.0)  # 0.1 + 0.2 without float noise
    store.apply_order_fill({**order, "client_id": "pl-y", "side": "sell"}, None,
                           -0.30000000000000004)
    assert _amounts(store) == (0.0, 0.0)  # dust snapped to zero
    store.update_order("pl-x", "closed")
    assert store.order("pl-x")["status"] == "closed"
    assert store.order("pl-x")["updated_at"] == "2026-01-31T20:00:00Z"
    with pytest.raises(StoreError):
        store.update_order("nope", "closed")
    with pytest.raises(StoreError):
        store.apply_order_fill({**order, "pair_id": "nope"}, None, 1.0)
    fills = store.fills(T0)
    assert list(fills["amount"]) == [0.1, 0.2] and set(fills["pair_id"]) == {PAIR}
    assert store.add_funding("AAA/USDT:USDT", -0.5, T0)
    assert not store.add_funding("AAA/USDT:USDT", -0.5, T0)  # recorded once
