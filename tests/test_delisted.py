"""A symbol delisted while an open pair holds it (simulator on 127.0.0.1, real adapter).

The venue drops the symbol from its market list (``exchangeInfo``) and stops its candles,
while it and the store still hold the position. What must hold:

* the adapter reports that position under the unified symbol the store uses, so
  reconciliation compares it once (and finds store and venue matching);
* the close of the unevaluable pair (``exit_no_data``) sends **no** leg: closing the healthy
  leg alone would leave the delisted one naked. The pair stays open and closing, a
  ``close_blocked_delisted`` incident tells the operator what to do, and the tick is
  ``degraded`` naming the symbol;
* after the operator closes the delisted leg by hand and accepts the venue's position, the
  next tick closes the other leg and the book is flat and matching again;
* a market delisted *during* a tick (after it loaded its market list) is caught too: the
  adapter reports it as ``MarketNotListed``; a close checks the later leg at the venue before
  sending the first, so nothing is sent; a leg found unlisted at send time is not retried;
  and when the other leg had already closed, the tick says that the leg is naked and what
  to do;
* the reasons and the ``pair_unevaluable`` incident say what the plan decided and, apart,
  what became of the close (never "closed" for a close that was blocked).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import ccxt
import pytest
from tick_fixtures import (
    INJ_SOL,
    START,
    SpoiltMarket,
    TickEnv,
    assert_hedged_and_matching,
    make_env,
    signal_of,
)

from pairlib import failpoints
from pairlib.clock import to_ms
from pairlib.engine.reconcile import accept_venue, report, snapshot
from pairlib.errors import MarketNotListed
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange, translate_error

BAR = timedelta(hours=4)
INJ, SOL = "INJ/USDT:USDT", "SOL/USDT:USDT"
LEGS = {"INJUSDT": INJ, "SOLUSDT": SOL}  # venue id -> unified symbol (y, x of INJ~SOL)


def _delist(market: SpoiltMarket, venue_id: str) -> None:
    """Delist ``venue_id`` after the candle the tick at START acted on: gone from the market
    list (and so from ``exchangeInfo``), its candles stopped; the account still holds what it
    held in it."""
    market.delisted.add(venue_id)
    market.stop_after[venue_id] = to_ms(START - BAR)


@pytest.fixture
def market(sim_market: Market) -> SpoiltMarket:
    return SpoiltMarket(sim_market)


@pytest.fixture
def env(market: SpoiltMarket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> Iterator[TickEnv]:
    """INJ~SOL entered long at START on clean data (INJ +45.5, SOL short)."""
    for e in make_env(market, tmp_path, monkeypatch):  # type: ignore[arg-type]
        e.save_pairs([INJ_SOL])
        first = e.run(START)
        assert first.status == "ok", first.error
        assert signal_of(first, INJ_SOL)["action"] == "enter_long"
        yield e


def _held(env: TickEnv) -> dict[str, float]:
    return {s: env.venue_position(s) for s in (INJ, SOL)}


def test_adapter_reports_a_position_in_an_unlisted_market_under_its_unified_symbol(
    env: TickEnv, market: SpoiltMarket
) -> None:
    held = _held(env)
    assert held[INJ] > 0 > held[SOL]
    _delist(market, "INJUSDT")
    with Exchange.from_params(env.params.venue, sim_url=env.params.venue.sim_url) as ex:
        assert INJ not in ex.markets()  # the venue no longer lists it
        positions = {p.symbol: p.contracts for p in ex.fetch_positions()}
    assert "INJUSDT" not in positions
    assert positions == pytest.approx(held)


def test_reconciliation_compares_a_delisted_holding_once(env: TickEnv,
                                                         market: SpoiltMarket) -> None:
    _delist(market, "INJUSDT")
    held = env.run(START + BAR)  # the pair cannot be evaluated: held, one incident
    kinds = [i["kind"] for i in held.incidents]
    assert "reconcile_mismatch" not in kinds, held.incidents
    assert held.mismatches.empty, held.mismatches
    assert "pair_unevaluable" in kinds
    assert held.status == "degraded" and "store and venue differ" not in str(held.error)
    frame = report(env.params, START + BAR, store=env.store)
    rows = frame.set_index("symbol")
    assert "INJUSDT" not in rows.index
    assert rows.loc[INJ, "status"] == "ok" and rows.loc[INJ, "venue"] == pytest.approx(45.5)


@pytest.mark.parametrize("venue_id", ["INJUSDT", "SOLUSDT"], ids=["y delisted", "x delisted"])
def test_close_with_a_delisted_leg_sends_no_leg_and_keeps_the_pair_hedged(
    env: TickEnv, market: SpoiltMarket, venue_id: str
) -> None:
    gone = LEGS[venue_id]
    other = SOL if gone == INJ else INJ
    before = _held(env)
    booked = len(env.venue_orders())
    _delist(market, venue_id)
    env.run(START + BAR)  # held one tick (risk.unevaluable_exit_bars: 1)
    for k in (2, 3):  # the close is due, then retried: blocked both times
        r = env.run(START + k * BAR)
        assert signal_of(r, INJ_SOL)["action"] == "exit_no_data"
        assert len(env.venue_orders()) == booked, "an order was sent on a blocked close"
        assert _held(env) == before  # both legs still held: hedged, nothing naked
        assert r.status == "degraded"
        assert "exit_no_data BLOCKED" in str(r.error) and gone in str(r.error)
        assert f"pairlib reconcile --accept {gone}" in str(r.error)
        blocked = [i for i in r.incidents if i["kind"] == "close_blocked_delisted"]
        assert [i["symbol"] for i in blocked] == [gone]
        detail = blocked[0]["detail"]
        assert "by hand" in detail and f"pairlib reconcile --accept {gone}" in detail
        assert other in detail and "NOT closed" in detail
        st = env.store.pair_state(INJ_SOL)
        assert st is not None and st.closing == "exit_no_data" and st.position == 1
        assert (st.amount("y"), st.amount("x")) == pytest.approx((before[INJ], before[SOL]))
        assert not env.store.orders(tick_as_of=START + k * BAR).shape[0]
        assert_hedged_and_matching(env)


def test_hand_close_and_accept_let_the_next_tick_close_the_other_leg(
    env: TickEnv, market: SpoiltMarket
) -> None:
    _delist(market, "INJUSDT")
    env.run(START + BAR)
    blocked = env.run(START + 2 * BAR)
    assert blocked.status == "degraded"
    assert env.venue_position(SOL) < 0  # the healthy leg was kept: still hedged
    # The operator closes INJ on the venue by hand (the venue's own book, not the API list).
    amount = env.venue_position(INJ)
    env.server.account.new_order(
        symbol="INJUSDT", side="SELL", order_type="MARKET", quantity=amount, price=None,
        time_in_force=None, reduce_only=True, client_id="by-hand-1", now_ms=env.server.now_ms)
    assert env.venue_position(INJ) == 0.0
    snap = snapshot(env.params, START + 2 * BAR)
    assert snap.positions.get(INJ, 0.0) == 0.0
    done = accept_venue(env.store, INJ, snap.positions.get(INJ, 0.0), START + 2 * BAR,
                        "INJ delisted; closed by hand", force=True,
                        step=snap.steps.get(INJ, 0.0))
    assert done.changed
    after = env.run(START + 3 * BAR)
    assert after.status == "ok", after.error
    assert signal_of(after, INJ_SOL)["action"] == "exit_no_data"
    assert _held(env) == {INJ: 0.0, SOL: 0.0}
    st = env.store.pair_state(INJ_SOL)
    assert st is not None and st.closing is None and st.position == 0
    assert (st.amount("y"), st.amount("x")) == (0.0, 0.0)
    assert_hedged_and_matching(env)


# ------------------------------------------------------------------ delisted during a tick


def _venue_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Record, per adapter call, the symbols of every order look-up, order send and listing
    check made from now on."""
    calls: dict[str, list[str]] = {"lookup": [], "create": [], "check": []}
    for name, key in (("fetch_order_by_client_id", "lookup"), ("create_order", "create"),
                      ("check_listed", "check")):
        real = getattr(Exchange, name)

        def wrapped(self: Exchange, symbol: str, *args: Any, _real: Any = real,
                    _key: str = key, **kw: Any) -> Any:
            calls[_key].append(symbol)
            return _real(self, symbol, *args, **kw)

        monkeypatch.setattr(Exchange, name, wrapped)
    return calls


def test_the_adapter_reports_a_symbol_delisted_after_its_market_list_loaded(
    env: TickEnv, market: SpoiltMarket
) -> None:
    got = translate_error(ccxt.BadSymbol('binance {"code":-1121,"msg":"Invalid symbol."}'),
                          "fetch_order X")
    assert type(got) is MarketNotListed and str(got).startswith("fetch_order X: BadSymbol")
    with Exchange.from_params(env.params.venue, sim_url=env.params.venue.sim_url) as ex:
        assert INJ in ex.markets()  # loaded while INJ was listed
        ex.check_listed(INJ)  # listed: no error
        _delist(market, "INJUSDT")
        assert INJ in ex.markets()  # the loaded list does not know yet ...
        with pytest.raises(MarketNotListed, match="check_listed INJ/USDT:USDT"):
            ex.check_listed(INJ)  # ... the venue does
        with pytest.raises(MarketNotListed):
            ex.fetch_order_by_client_id(INJ, "pl-any")
        with pytest.raises(MarketNotListed):
            ex.create_order(INJ, "sell", 1.0, "pl-any", reduce_only=True)
        ex.check_listed(SOL)


@pytest.mark.parametrize("venue_id", ["INJUSDT", "SOLUSDT"], ids=["y delisted", "x delisted"])
def test_a_leg_delisted_after_the_market_load_blocks_the_close_before_any_order(
    env: TickEnv, market: SpoiltMarket, monkeypatch: pytest.MonkeyPatch, venue_id: str
) -> None:
    gone = LEGS[venue_id]
    other = SOL if gone == INJ else INJ
    before = _held(env)
    booked = len(env.venue_orders())
    calls = _venue_calls(monkeypatch)
    # The tick loads its markets and candles with both listed; the venue delists one leg
    # once the plan (an exit: the spread reverted) is made, before any order.
    with failpoints.armed("tick.after_plan", lambda: _delist(market, venue_id)):
        r = env.run(START + BAR)
    row = signal_of(r, INJ_SOL)
    assert row["action"] == "exit"
    assert len(env.venue_orders()) == booked, "an order was sent on a blocked close"
    assert calls["create"] == []
    assert _held(env) == before  # both legs still held: hedged, nothing naked
    assert calls["check"] == [SOL]  # the later leg is asked before the first is sent
    # The first leg is refused at its one pre-send look-up, never retried.
    assert calls["lookup"] == ([INJ] if gone == INJ else [])
    assert r.status == "degraded"
    assert "exit BLOCKED" in str(r.error) and gone in str(r.error)
    assert "NAKED" not in str(r.error)
    assert f"pairlib reconcile --accept {gone}" in str(r.error)
    kinds = [i["kind"] for i in r.incidents]
    assert "close_naked_delisted" not in kinds and "exit_incomplete" not in kinds
    blocked = [i for i in r.incidents if i["kind"] == "close_blocked_delisted"]
    assert [i["symbol"] for i in blocked] == [gone]
    assert other in blocked[0]["detail"] and "NOT closed" in blocked[0]["detail"]
    assert "close blocked" in row["reason"] and "stays open and closing" in row["reason"]
    st = env.store.pair_state(INJ_SOL)
    assert st is not None and st.closing == "exit" and st.position == 1
    assert (st.amount("y"), st.amount("x")) == pytest.approx((before[INJ], before[SOL]))
    assert_hedged_and_matching(env)


def test_a_leg_delisted_after_the_other_leg_closed_is_reported_naked_not_retried(
    env: TickEnv, market: SpoiltMarket, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _held(env)
    booked = len(env.venue_orders())
    calls = _venue_calls(monkeypatch)
    # SOL is delisted in the moment between INJ's close and SOL's: the one case where a
    # naked leg cannot be avoided.
    with failpoints.armed("exec.after_close_leg", lambda: _delist(market, "SOLUSDT")):
        r = env.run(START + BAR)
    assert signal_of(r, INJ_SOL)["action"] == "exit"
    assert _held(env) == {INJ: 0.0, SOL: before[SOL]}
    assert len(env.venue_orders()) == booked + 1 and calls["create"] == [INJ]
    assert calls["lookup"].count(SOL) == 1, "the unlisted leg was retried"
    assert r.status == "degraded"
    error = str(r.error)
    assert "exit BLOCKED" in error and "NAKED" in error and SOL in error
    assert f"pairlib reconcile --accept {SOL}" in error
    naked = [i for i in r.incidents if i["kind"] == "close_naked_delisted"]
    assert [i["symbol"] for i in naked] == [SOL]
    detail = naked[0]["detail"]
    assert "NAKED" in detail and "NOT hedged" in detail and "by hand" in detail
    assert f"{INJ} {before[INJ]:g} of {before[INJ]:g} closed" in detail
    assert f"pairlib reconcile --accept {SOL}" in detail
    assert "exit_incomplete" not in [i["kind"] for i in r.incidents]
    reason = signal_of(r, INJ_SOL)["reason"]
    assert "close stopped" in reason and "NAKED" in reason
    st = env.store.pair_state(INJ_SOL)
    assert st is not None and st.closing == "exit"
    assert (st.amount("y"), st.amount("x")) == pytest.approx((0.0, before[SOL]))
    assert env.venue_position(SOL) == pytest.approx(st.amount("x"))  # store = venue


# ------------------------------------------------------------------ what the texts say


def _unevaluable_close(r: Any) -> tuple[str, str]:
    """The ``pair_unevaluable`` incident's detail and the decision's reason of INJ~SOL."""
    details = [i["detail"] for i in r.incidents if i["kind"] == "pair_unevaluable"]
    assert len(details) == 1, r.incidents
    return details[0], str(signal_of(r, INJ_SOL)["reason"])


def test_a_blocked_unevaluable_close_is_not_called_closed(env: TickEnv,
                                                          market: SpoiltMarket) -> None:
    _delist(market, "INJUSDT")
    env.run(START + BAR)
    r = env.run(START + 2 * BAR)
    assert signal_of(r, INJ_SOL)["action"] == "exit_no_data"
    detail, reason = _unevaluable_close(r)
    for text in (detail, reason):
        assert "closed" not in text.replace("NOT closed", ""), text
        assert "close both legs reduce-only" in text  # the decision ...
        assert "close blocked" in text and "nothing sent" in text  # ... and what came of it


def test_a_completed_unevaluable_close_says_it_is_done(env: TickEnv,
                                                       market: SpoiltMarket) -> None:
    market.stop_after["INJUSDT"] = to_ms(START - BAR)  # no candles, still listed
    env.run(START + BAR)
    r = env.run(START + 2 * BAR)
    assert r.status == "ok", r.error
    assert signal_of(r, INJ_SOL)["action"] == "exit_no_data"
    assert _held(env) == {INJ: 0.0, SOL: 0.0}
    detail, reason = _unevaluable_close(r)
    assert "close both legs reduce-only" in detail and detail.endswith("done: the pair is flat")
    assert "close both legs reduce-only" in reason and "blocked" not in reason
