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
  next tick closes the other leg and the book is flat and matching again.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tick_fixtures import INJ_SOL, START, TickEnv, assert_hedged_and_matching, make_env, signal_of

from pairlib.clock import to_ms
from pairlib.engine.reconcile import accept_venue, report, snapshot
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange

BAR = timedelta(hours=4)
INJ, SOL = "INJ/USDT:USDT", "SOL/USDT:USDT"
LEGS = {"INJUSDT": INJ, "SOLUSDT": SOL}  # venue id -> unified symbol (y, x of INJ~SOL)


class Delisting:
    """The session's market with some symbols delisted: gone from the market list (and so
    from ``exchangeInfo``) and their candles stopped at a given open time. The account
    still holds what it held in them (a :class:`~pairlib.sim.source.MarketSource`)."""

    def __init__(self, market: Market) -> None:
        self._market = market
        self.delisted: set[str] = set()
        self.last_open: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._market, name)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s for s in self._market.symbols if s not in self.delisted)

    def klines(self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None,
               limit: int, now_ms: int) -> list[list[Any]]:
        rows = self._market.klines(symbol, interval, start_ms, end_ms, limit, now_ms)
        stop = self.last_open.get(symbol)
        return rows if stop is None else [r for r in rows if int(r[0]) <= stop]

    def delist(self, venue_id: str) -> None:
        """Delist ``venue_id`` after the candle the tick at START acted on."""
        self.delisted.add(venue_id)
        self.last_open[venue_id] = to_ms(START - BAR)


@pytest.fixture
def market(sim_market: Market) -> Delisting:
    return Delisting(sim_market)


@pytest.fixture
def env(market: Delisting, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    env: TickEnv, market: Delisting
) -> None:
    held = _held(env)
    assert held[INJ] > 0 > held[SOL]
    market.delist("INJUSDT")
    with Exchange.from_params(env.params.venue, sim_url=env.params.venue.sim_url) as ex:
        assert INJ not in ex.markets()  # the venue no longer lists it
        positions = {p.symbol: p.contracts for p in ex.fetch_positions()}
    assert "INJUSDT" not in positions
    assert positions == pytest.approx(held)


def test_reconciliation_compares_a_delisted_holding_once(env: TickEnv,
                                                         market: Delisting) -> None:
    market.delist("INJUSDT")
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
    env: TickEnv, market: Delisting, venue_id: str
) -> None:
    gone = LEGS[venue_id]
    other = SOL if gone == INJ else INJ
    before = _held(env)
    booked = len(env.venue_orders())
    market.delist(venue_id)
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
    env: TickEnv, market: Delisting
) -> None:
    market.delist("INJUSDT")
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
