"""The tick never ends ``ok`` with a naked leg, an unknown order or an open pair it could not
evaluate or exit: scenarios from the audit, each against the simulated exchange over the real
ccxt client (``pairlib.engine.tick``, ``pairlib.engine.execution``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tick_fixtures import (
    BAR,
    GRT_RUNE,
    START,
    TickEnv,
    arm_after_orders,
    assert_hedged_and_matching,
    crash_on_order,
    make_env,
    signal_of,
)

from pairlib.edges import data as data_mod
from pairlib.engine import tick
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange

GRT, RUNE = "GRT/USDT:USDT", "RUNE/USDT:USDT"
ENTRY = START + 7 * BAR  # GRT~RUNE enters short here
EXIT = START + 13 * BAR  # ... and exits here


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    # A short client timeout and signed-request window keep the unknown-outcome waits short.
    yield from make_env(sim_market, tmp_path, monkeypatch,
                        venue={"timeout_ms": 1500, "recv_window_ms": 2000})








# ----------------------------------------------------------------------------- A1


def test_second_leg_booked_after_the_client_timed_out_completes_the_entry(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    arm_after_orders(monkeypatch, after=1, arm=lambda: env.server.faults.book_late_next_orders(
        1, delay_s=1.0, mode="timeout", hold_s=2.0))
    r = env.run(ENTRY)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    assert not (r.orders["action"] == "unwind").any()
    assert env.venue_position(RUNE) != 0.0 and env.venue_position(GRT) != 0.0
    assert_hedged_and_matching(env)


def test_first_leg_booked_late_is_found_before_the_second_is_sent(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.book_late_next_orders(1, delay_s=1.0, mode="close")
    r = env.run(ENTRY)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    assert len(env.venue_orders()) == 2
    assert_hedged_and_matching(env)


def test_dropped_response_with_failing_lookups_is_never_read_as_not_found(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])

    # The second leg is booked but its answer is lost; then its look-ups get 5xx for a while.
    faults = env.server.faults
    arm_after_orders(monkeypatch, after=1, arm=lambda: faults.drop_response_next_orders(1))
    arm_after_orders(monkeypatch, after=2,
                     arm=lambda: faults.fail_next(12, 503, path="/fapi/v1/order"))
    r = env.run(ENTRY)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    assert not (r.orders["action"] == "unwind").any()
    assert_hedged_and_matching(env)


# ----------------------------------------------------------------------------- A2


def test_interrupted_entry_not_completed_on_rerun_is_flattened_now(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    original = crash_on_order(monkeypatch, 2, "simulated crash between the legs")
    assert env.run(ENTRY).status == "failed"
    assert env.venue_position(GRT) != 0.0 and env.venue_position(RUNE) == 0.0
    monkeypatch.setattr(Exchange, "create_order", original)
    (env.tmp / "KILL").write_text("operator stop\n")  # the rerun will not complete the entry
    r = env.run(ENTRY)
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    assert "resumed_entry_abandoned" in [i["kind"] for i in r.incidents]
    assert r.status == "ok", r.error  # hedged (flat) and matching the venue again
    assert_hedged_and_matching(env)


# ----------------------------------------------------------------------------- A3


def test_unwind_rejected_twice_is_retried_within_the_tick(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    # The second leg is rejected, then the unwind of the first twice.
    faults = env.server.faults
    arm_after_orders(monkeypatch, after=1, arm=lambda: faults.reject_next_orders(3, -2019))
    r = env.run(ENTRY)
    assert r.status == "ok", r.error
    unwinds = r.orders[r.orders["action"] == "unwind"].sort_values("client_id")
    assert list(unwinds["status"]) == ["rejected", "rejected", "closed"]
    assert unwinds.iloc[2]["client_id"].endswith("-r2")
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    assert_hedged_and_matching(env)


def test_exit_failing_all_tick_keeps_the_pair_open_and_degrades_then_completes(
    env: TickEnv,
) -> None:
    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    env.server.faults.fail_next(500, 503, path="/fapi/v1/order")
    r = env.run(EXIT)
    assert r.status == "degraded" and "exit incomplete" in str(r.error), r.error
    state = env.store.pair_state(GRT_RUNE)
    assert state["position"] == -1 and state["closing"] == "exit"  # never marked flat
    assert env.venue_position(GRT) != 0.0
    assert "exit_incomplete" in [i["kind"] for i in r.incidents]
    assert not r.ok
    env.server.faults.clear()
    nxt = env.run(EXIT + BAR)
    assert nxt.status == "ok", nxt.error
    state = env.store.pair_state(GRT_RUNE)
    assert state["position"] == 0 and state["closing"] is None
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    assert_hedged_and_matching(env)


def test_exit_rejected_reduce_only_is_retried_under_a_new_id(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    env.server.faults.reject_next_orders(1, -2022)
    r = env.run(EXIT)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "exit"
    exits = r.orders[r.orders["action"] == "exit"]
    assert (exits["status"] == "rejected").sum() == 1
    assert exits["client_id"].str.endswith("-r1").sum() == 1
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0


# ----------------------------------------------------------------------------- A4


def test_remainder_below_min_notional_completes_and_sizes_the_hedge(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.partial_fill_next(1, 0.999)
    r = env.run(ENTRY)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    first = r.orders[(r.orders["leg"] == "y")].iloc[0]
    left_notional = (first["amount"] - first["filled"]) * first["average"]
    assert 0 < left_notional < 5.0  # the scenario: what is left cannot be sent
    assert len(r.orders) == 2 and not (r.orders["action"] == "unwind").any()
    x = r.orders[r.orders["leg"] == "x"].iloc[0]
    planned_x = float(env.store.order(x["client_id"])["amount"])
    assert x["filled"] <= planned_x
    state = env.store.pair_state(GRT_RUNE)
    assert state["position"] == -1
    assert abs(state["amount_y"]) == pytest.approx(first["filled"])
    assert_hedged_and_matching(env)


# ----------------------------------------------------------------------------- B7


def test_open_pair_without_usable_data_is_an_incident_then_closed(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    real = data_mod.load_market_data

    def rune_feed_stopped(*args: Any, **kw: Any) -> Any:
        md = real(*args, **kw)
        md.dropped[RUNE] = "test: the feed stopped"
        return md

    monkeypatch.setattr(data_mod, "load_market_data", rune_feed_stopped)
    r1 = env.run(ENTRY + BAR)
    assert r1.status == "degraded" and GRT_RUNE in str(r1.error), r1.error
    assert "pair_unevaluable" in [i["kind"] for i in r1.incidents]
    assert env.store.pair_state(GRT_RUNE)["position"] == -1 and r1.orders.empty
    r2 = env.run(ENTRY + 2 * BAR)  # risk.unevaluable_exit_bars: 1 -> closed now
    assert r2.status == "ok", r2.error
    assert signal_of(r2, GRT_RUNE)["action"] == "exit_no_data"
    assert set(r2.orders["reduce_only"]) == {1}
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    assert env.store.pair_state(GRT_RUNE)["position"] == 0


# ----------------------------------------------------------------------------- D11, E16


def test_late_as_of_against_a_running_simulator_is_a_missed_tick(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.set_now(ENTRY + 2 * BAR)  # the venue's present is two bars later
    r = tick.run(env.params, ENTRY, store=env.store)
    assert r.mode.startswith("exits_only") and "missed tick" in r.mode
    assert r.orders.empty and len(env.venue_orders()) == 0


def test_corrupt_state_database_fails_clearly_without_an_order(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.store.close()
    db = Path(env.params.state_dir) / "pairlib.db"
    for extra in db.parent.glob("pairlib.db-*"):
        extra.unlink()
    db.write_bytes(b"this is not a database" * 100)
    env.at(ENTRY)
    r = tick.run(env.params, ENTRY)
    assert r.status == "failed" and "StoreError" in str(r.error), r.error
    assert str(db) in str(r.error)
    assert len(env.venue_orders()) == 0


def test_rejected_unwind_leaves_the_pair_closing_never_flat_then_closes(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    # The second leg, then every unwind and flatten of the first within the tick (5 + 5).
    faults = env.server.faults
    arm_after_orders(monkeypatch, after=1, arm=lambda: faults.reject_next_orders(11, -2019))
    r = env.run(ENTRY)
    assert r.status == "degraded" and "flatten incomplete" in str(r.error), r.error
    state = env.store.pair_state(GRT_RUNE)
    assert state["closing"] == "flatten" and state["position"] != 0  # not marked flat
    assert env.venue_position(GRT) != 0.0
    assert env.venue_position(GRT) == pytest.approx(state["amount_y"])
    env.server.faults.clear()
    nxt = env.run(ENTRY + BAR)
    assert nxt.status == "ok", nxt.error
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    assert env.store.pair_state(GRT_RUNE)["closing"] is None
    assert_hedged_and_matching(env)


def test_a_defective_candle_older_than_the_decision_window_does_not_stop_trading(
    sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tick_fixtures import SpoiltMarket

    from pairlib.clock import to_ms

    market = SpoiltMarket(sim_market, intervals=("4h",))
    old = to_ms(ENTRY - 101 * BAR)  # inside the 180 bars fetched, outside the 60 used
    market.defects[("RUNEUSDT", old)] = "nan"
    for e in make_env(market, tmp_path, monkeypatch):  # type: ignore[arg-type]
        e.save_pairs([GRT_RUNE])
        r = e.run(ENTRY)
        assert r.status == "ok", r.error
        assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
        # A defect inside the decision window (the newest candle): no order on bad data,
        # and the open pair is reported as not evaluated.
        market.defects[("GRTUSDT", to_ms(ENTRY))] = "nan"
        r2 = e.run(ENTRY + BAR)
        assert r2.orders.empty
        assert r2.status == "degraded" and "not evaluated" in str(r2.error), r2.error


def test_pair_set_built_for_another_lookback_is_refused_but_open_pairs_exit(
    env: TickEnv,
) -> None:
    import pandas as pd
    from tick_fixtures import planted_pairs

    from pairlib.edges.store import PairSetMeta

    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    other = PairSetMeta("sim", "sim-s7-n48", "4h", env.params.strategy.lookback + 40, "test",
                        "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
    rows = pd.DataFrame(planted_pairs(env.market))
    env.store.save_pair_set(ENTRY, "test", rows, None, ENTRY, meta=other)
    r = env.run(EXIT)
    assert "pair set refused" in r.mode
    assert r.status == "degraded" and "lookback" in str(r.error), r.error
    assert str(env.params.strategy.lookback + 40) in str(r.error)
    assert "pairlib pairs" in str(r.error)  # how to regenerate
    assert signal_of(r, GRT_RUNE)["action"] == "exit"  # the open pair is still managed
    assert not r.orders["action"].str.startswith("enter").any()
    assert "pair_set_refused" in [i["kind"] for i in r.incidents]


def test_an_open_pair_keeps_the_beta_it_was_opened_with_in_a_new_pair_set(
    env: TickEnv,
) -> None:
    from tick_fixtures import planted_pairs

    env.save_pairs([GRT_RUNE])
    assert signal_of(env.run(ENTRY), GRT_RUNE)["action"] == "enter_short"
    opened = env.store.pair_state(GRT_RUNE)
    rows = [dict(r) for r in planted_pairs(env.market)
            if f"{r['y']}~{r['x']}" == GRT_RUNE]
    rows[0]["beta"] *= 1.5  # the new set estimates another hedge ratio for the same pair
    env.store.save_pair_set(ENTRY, "test", pd.DataFrame(rows), None, ENTRY)
    r = env.run(ENTRY + BAR)
    held = env.store.pair_state(GRT_RUNE)
    assert held.beta == opened.beta and held.position == opened.position
    expected = env.z_path(GRT_RUNE, ENTRY + BAR, 1).iloc[-1]  # z with the original beta
    assert signal_of(r, GRT_RUNE)["z"] == pytest.approx(expected, abs=1e-9)


def test_the_loss_limit_closes_a_losing_pair_live(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    opened = env.store.pair_state(GRT_RUNE)
    assert opened.risk_budget > 0 and opened.amount_y < 0  # short GRT
    # As if GRT had been sold at half today's price: the position is deep in loss.
    env.store.save_pair_state({**opened.as_dict(),
                               "entry_price_y": float(opened.entry_price_y) / 2})
    r = env.run(ENTRY + BAR, env.params_with(risk={"max_loss_multiple": 2.0}))
    assert r.status == "ok", r.error
    row = signal_of(r, GRT_RUNE)
    assert row["action"] == "loss_limit" and "risk budget" in row["reason"]
    assert set(r.orders["reduce_only"]) == {1}
    assert env.venue_position(GRT) == 0.0 and env.venue_position(RUNE) == 0.0
    state = env.store.pair_state(GRT_RUNE)
    assert state.position == 0 and state.locked_out == 1
