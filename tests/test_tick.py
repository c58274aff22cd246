"""The live tick on the simulated exchange: replay, idempotency, faults, reconciliation,
exits-only modes and refusals (``pairlib.engine.tick``)."""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from tick_fixtures import (
    BAR,
    EGLD_HBAR,
    GRT_RUNE,
    INJ_SOL,
    START,
    TickEnv,
    arm_after_orders,
    assert_hedged_and_matching,
    crash_on_order,
    make_env,
    signal_of,
    trading_params,
)

from pairlib.clock import SettableClock
from pairlib.config import TradingParams, load_params
from pairlib.core.risk import MarketRules, size_pair
from pairlib.core.strategy import positions
from pairlib.edges.store import Store
from pairlib.engine import tick
from pairlib.engine.execution import Executor
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch)


def _venue_count(env: TickEnv) -> int:
    return len(env.venue_orders())








# ----------------------------------------------------------------------------- replay


def test_replay_enters_exits_and_equals_batch_positions_bar_by_bar(env: TickEnv) -> None:
    """Fifteen 4h ticks (2.5 days) with the sim clock advanced: pairs enter and exit, the
    store matches the venue after every tick, and every pair's position after every tick
    equals the batch rule (strategy.positions) over the same z-scores."""
    _replay(env, env.params)


def _replay(env: TickEnv, params: TradingParams, n: int = 15) -> dict[str, list[int]]:
    """The replay scenario with ``params``; its expectations come from ``params`` (the
    batch rule at its thresholds), so it holds for any entry, exit and stop. Returns each
    pair's position after each tick."""
    env.save_pairs()
    live: dict[str, list[int]] = {}
    z_seen: dict[str, list[float]] = {}
    actions: list[str] = []
    for i in range(n):
        r = env.run(START + i * BAR, params)
        assert r.status == "ok", r.error
        assert r.mode == "normal"
        assert r.mismatches.empty, r.mismatches
        assert not r.incidents, r.incidents
        assert not r.signals["reason"].str.contains("not entered").any(), r.signals
        for row in r.signals.to_dict("records"):
            live.setdefault(row["pair_id"], []).append(int(row["position"]))
            z_seen.setdefault(row["pair_id"], []).append(row["z"])
        actions.extend(r.signals["action"])
        assert_hedged_and_matching(env)
    assert {"enter_long", "enter_short"} & set(actions)
    assert {"exit", "stop"} & set(actions)
    for pid, pos in live.items():
        z = env.z_path(pid, START + (n - 1) * BAR, n, params.strategy.lookback)
        np.testing.assert_allclose(z_seen[pid], z.to_numpy(), rtol=0, atol=1e-9)
        batch = positions(z.to_numpy(), params.strategy.entry, params.strategy.exit,
                          params.strategy.stop)
        assert pos == batch.tolist(), pid
    # The decisions table holds one row per pair per tick with its reason.
    dec = env.store.decisions()
    assert len(dec) == n * len(live)
    assert dec["reason"].str.len().min() > 0
    ticks = env.store.ticks()
    assert list(ticks["status"]) == ["ok"] * n
    assert env.store.equity_history()["equity"].notna().all()
    assert len(env.store.funding()) > 0  # funding paid on positions held over 8h marks
    fills = env.store.fills()
    assert (fills["fee"] > 0).all() and (fills["price"] > 0).all()
    return live


def test_same_tick_twice_places_no_new_orders(env: TickEnv) -> None:
    env.save_pairs()
    first = env.run(START)
    assert first.status == "ok" and len(first.orders) > 0
    booked = _venue_count(env)
    again = env.run(START)
    assert again.status == "already_ran"
    assert _venue_count(env) == booked
    assert len(again.orders) == len(first.orders)
    assert set(again.signals["action"]) == set(first.signals["action"])
    assert env.store.tick_row(START)["status"] == "ok"


def test_sizing_and_slots_respected_in_placed_orders(env: TickEnv) -> None:
    """With one slot, only the largest |z| pair opens, with size_pair's amounts."""
    env.save_pairs()
    params = env.params_with(risk={"max_positions": 1})
    r = env.run(START, params)
    assert r.status == "ok", r.error
    wanted = r.signals[r.signals["signal"] != 0]
    assert len(wanted) > 1
    best = wanted.loc[wanted["z"].abs().idxmax()]
    entered = r.signals[r.signals["action"].str.startswith("enter")]
    assert list(entered["pair_id"]) == [best["pair_id"]]
    others = wanted[wanted["pair_id"] != best["pair_id"]]
    assert others["reason"].str.contains("no free slot").all()

    with Exchange.from_params(params.venue) as ex:
        markets = ex.markets()
    rules = {s: MarketRules(s, m.amount_step, m.min_amount, m.min_notional, m.contract_size)
             for s, m in markets.items()}
    state = env.store.pair_state(best["pair_id"])
    closes = env.market.closes(START - 2 * BAR, START)
    py = float(closes[best["y"].split("/")[0] + "USDT"].iloc[-1])
    px = float(closes[best["x"].split("/")[0] + "USDT"].iloc[-1])
    stop = params.strategy.stop * np.sign(best["z"])
    sizing = size_pair(10_000.0, best["z"], stop, state["spread_std"], state["beta"], py, px,
                       rules[best["y"]], rules[best["x"]], params.risk)
    assert sizing.skipped is None
    orders = r.orders.set_index("leg")
    assert orders.loc["y", "amount"] == pytest.approx(sizing.amount_y)
    assert orders.loc["x", "amount"] == pytest.approx(sizing.amount_x)
    assert orders.loc["y", "side"] == ("buy" if best["z"] < 0 else "sell")
    assert orders.loc["x", "side"] == ("sell" if best["z"] < 0 else "buy")
    assert sizing.risk_amount <= params.risk.risk_per_trade * 10_000.0 * (1 + 1e-9)
    assert state["amount_y"] == pytest.approx(sizing.amount_y * (1 if best["z"] < 0 else -1))


# ----------------------------------------------------------------------------- faults


def test_second_leg_rejected_is_unwound_reduce_only(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    arm_after_orders(monkeypatch, lambda: env.server.faults.reject_next_orders(1, -2019))
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    row = signal_of(r, GRT_RUNE)
    assert row["signal"] == -1 and row["action"] == "none" and row["position"] == 0
    assert "second leg failed" in row["reason"]
    kinds = [i["kind"] for i in r.incidents]
    assert "second_leg_failed" in kinds
    assert len(env.store.incidents(START + 7 * BAR)) >= 1
    orders = r.orders.set_index("client_id")
    unwind = orders[orders["action"] == "unwind"]
    assert len(unwind) == 1
    assert unwind.iloc[0]["reduce_only"] == 1 and unwind.iloc[0]["status"] == "closed"
    assert unwind.iloc[0]["leg"] == "y" and unwind.iloc[0]["side"] == "buy"
    venue_unwind = [o for o in env.venue_orders() if o["clientOrderId"] == unwind.index[0]]
    assert len(venue_unwind) == 1 and venue_unwind[0]["reduceOnly"]
    assert env.venue_position("GRT/USDT:USDT") == 0.0
    assert env.venue_position("RUNE/USDT:USDT") == 0.0
    state = env.store.pair_state(GRT_RUNE)
    assert (state["position"], state["amount_y"], state["amount_x"]) == (0, 0.0, 0.0)
    nxt = env.run(START + 8 * BAR)
    assert nxt.mismatches.empty


def test_partial_fill_is_completed(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.partial_fill_next(1, 0.5)
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    y = r.orders[r.orders["leg"] == "y"].sort_values("client_id")
    assert len(y) == 2
    first, rest = y.iloc[0], y.iloc[1]
    assert rest["client_id"] == first["client_id"] + "-r1"
    assert first["status"] == "expired" and 0 < first["filled"] < first["amount"]
    assert first["filled"] + rest["filled"] == pytest.approx(first["amount"])
    assert not env.server.account.open_orders()
    state = env.store.pair_state(GRT_RUNE)
    assert state["position"] == -1
    assert state["amount_y"] == pytest.approx(-first["amount"])
    assert_hedged_and_matching(env)


def test_partial_fill_that_cannot_complete_is_unwound(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.partial_fill_next(1, 0.4)
    arm_after_orders(monkeypatch, lambda: env.server.faults.reject_next_orders(5, -2019))
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    row = signal_of(r, GRT_RUNE)
    assert row["action"] == "none" and row["position"] == 0
    assert "partial_fill_unwound" in [i["kind"] for i in r.incidents]
    # reject_next_orders(5) also rejects the unwind: the residual stays, recorded, and the
    # next tick flattens it.
    state = env.store.pair_state(GRT_RUNE)
    residual = state["amount_y"]
    assert residual == pytest.approx(env.venue_position("GRT/USDT:USDT"))
    env.server.faults.clear()
    nxt = env.run(START + 8 * BAR)
    assert nxt.mismatches.empty
    if residual != 0:
        assert signal_of(nxt, GRT_RUNE)["action"] == "flatten"
        assert any(o["action"] == "flatten" and o["reduce_only"] for o in
                   nxt.orders.to_dict("records"))
    assert env.venue_position("GRT/USDT:USDT") == 0.0
    assert env.store.pair_state(GRT_RUNE)["amount_y"] == 0.0


def test_partial_fill_unwound_when_remainder_rejected_once(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.partial_fill_next(1, 0.5)
    arm_after_orders(monkeypatch, lambda: env.server.faults.reject_next_orders(1, -2019))
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    assert "partial_fill_unwound" in [i["kind"] for i in r.incidents]
    unwind = r.orders[r.orders["action"] == "unwind"]
    assert len(unwind) == 1 and unwind.iloc[0]["reduce_only"] == 1
    assert env.venue_position("GRT/USDT:USDT") == 0.0
    assert env.venue_position("RUNE/USDT:USDT") == 0.0  # the second leg was never sent
    x = r.orders[r.orders["leg"] == "x"]
    assert list(x["status"]) == ["skipped"]


def test_dropped_order_response_is_looked_up_by_client_id(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    env.server.faults.drop_response_next_orders(1)
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    for cid in r.orders["client_id"]:
        assert sum(o["clientOrderId"] == cid for o in env.venue_orders()) == 1
    assert _venue_count(env) == 2
    y = r.orders[r.orders["leg"] == "y"].iloc[0]
    assert y["status"] == "closed" and y["exchange_id"]
    assert_hedged_and_matching(env)


def test_crashed_tick_resumes_without_duplicates(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process dies after the first leg is booked but before its answer is recorded;
    the re-run of the same tick finds the order by its client id and completes the pair."""
    env.save_pairs([GRT_RUNE])
    original = Exchange.create_order

    def crash_after_sending(self: Exchange, *args: Any, **kw: Any) -> Any:
        original(self, *args, **kw)
        raise RuntimeError("simulated crash after the request left")

    monkeypatch.setattr(Exchange, "create_order", crash_after_sending)
    when = START + 7 * BAR
    r1 = env.run(when)
    assert r1.status == "failed" and "simulated crash" in (r1.error or "")
    assert env.store.tick_row(when)["status"] == "failed"
    assert _venue_count(env) == 1
    monkeypatch.setattr(Exchange, "create_order", original)
    r2 = env.run(when)
    assert r2.status == "ok", r2.error
    assert r2.mismatches.empty  # the booked order was found and applied before reconciling
    assert signal_of(r2, GRT_RUNE)["action"] == "enter_short"
    assert _venue_count(env) == 2
    cids = [o["clientOrderId"] for o in env.venue_orders()]
    assert len(set(cids)) == 2
    assert_hedged_and_matching(env)
    assert env.run(when).status == "already_ran"


def test_crash_before_sending_resumes_after_grace(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dying before the second leg left (its order recorded as sent): the re-run looks it up
    until its recvWindow has passed, finds nothing, and sends it once."""
    env.save_pairs([GRT_RUNE])
    original = crash_on_order(monkeypatch, 2, "simulated crash before the request left")
    when = START + 7 * BAR
    assert env.run(when).status == "failed"
    monkeypatch.setattr(Exchange, "create_order", original)
    later = when + Executor.unknown_grace + timedelta(minutes=1)
    params = env.params
    env.at(when)
    env.clock.set(later)
    r = tick.run(params, when, store=env.store, clock=env.clock, allow_missed_entries=True)
    assert r.status == "ok", r.error
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"
    assert _venue_count(env) == 2
    assert_hedged_and_matching(env)


# ----------------------------------------------------------------------------- reconciliation


def test_position_behind_the_stores_back_blocks_that_symbol(env: TickEnv) -> None:
    """A position opened directly on the venue is a mismatch: reported, recorded, and no new
    entry on that symbol, while exits elsewhere continue."""
    env.save_pairs()
    r0 = env.run(START)
    assert signal_of(r0, INJ_SOL)["action"] == "enter_long"
    env.at(START + BAR)
    with Exchange.from_params(env.params.venue) as ex:
        ex.create_order("HBAR/USDT:USDT", "buy", 1000.0, "manual-1")
    r1 = env.run(START + BAR)
    # The book does not match the venue: the tick says so (not ``ok``) and names it.
    assert r1.status == "degraded" and "HBAR/USDT:USDT" in str(r1.error), r1.error
    assert list(r1.mismatches["symbol"]) == ["HBAR/USDT:USDT"]
    assert r1.mismatches.iloc[0]["actual"] == 1000.0
    assert "reconcile_mismatch" in [i["kind"] for i in r1.incidents]
    egld = signal_of(r1, EGLD_HBAR)
    assert egld["signal"] == -1 and egld["action"] == "none"
    assert "mismatch" in egld["reason"]
    assert signal_of(r1, INJ_SOL)["action"] == "exit"  # exits on other symbols continue
    assert not env.store.incidents(unresolved_only=True).empty
    # Resolved (the operator closes it): the symbol is free again.
    with Exchange.from_params(env.params.venue) as ex:
        ex.create_order("HBAR/USDT:USDT", "sell", 1000.0, "manual-2", reduce_only=True)
    r2 = env.run(START + 2 * BAR)
    assert r2.mismatches.empty and r2.status == "ok", r2.error
    assert env.store.incidents(unresolved_only=True).empty


def test_open_pair_dropped_from_a_new_pair_set_is_still_managed(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    assert signal_of(env.run(START + 7 * BAR), GRT_RUNE)["action"] == "enter_short"
    env.save_pairs([EGLD_HBAR])  # a newer pair set without the open pair
    r = env.run(START + 8 * BAR)
    assert set(r.signals["pair_id"]) == {GRT_RUNE, EGLD_HBAR}
    assert signal_of(r, GRT_RUNE)["action"] == "hold"
    r = env.run(START + 13 * BAR)
    assert signal_of(r, GRT_RUNE)["action"] == "exit"
    assert env.venue_position("GRT/USDT:USDT") == 0.0
    r = env.run(START + 14 * BAR)
    assert GRT_RUNE not in set(r.signals["pair_id"])  # flat and out of the set: forgotten


# ----------------------------------------------------------------------------- exits-only modes


def test_missed_tick_acts_on_exits_only(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    late = START + 9 * BAR
    r = env.run(START + 7 * BAR, now=late)
    assert r.status == "ok" and r.mode == "exits_only: missed tick"
    row = signal_of(r, GRT_RUNE)
    assert row["signal"] == -1 and row["action"] == "none" and "missed tick" in row["reason"]
    assert r.orders.empty and _venue_count(env) == 0
    assert env.store.tick_row(START + 7 * BAR)["mode"] == "exits_only: missed tick"


def test_missed_tick_entries_when_allowed(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    r = env.run(START + 7 * BAR, now=START + 9 * BAR, allow_missed_entries=True)
    assert r.mode == "normal"
    assert signal_of(r, GRT_RUNE)["action"] == "enter_short"


def test_kill_switch_and_missed_tick_still_exit(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    assert signal_of(env.run(START + 7 * BAR), GRT_RUNE)["action"] == "enter_short"
    (env.tmp / "KILL").write_text("stop\n")
    r = env.run(START + 8 * BAR)
    assert r.mode == "exits_only: kill switch"
    assert signal_of(r, GRT_RUNE)["action"] == "hold"
    # The exit bar, run late and with the kill switch on: the exit goes through.
    r = env.run(START + 13 * BAR, now=START + 15 * BAR)
    assert r.mode == "exits_only: kill switch, missed tick"
    row = signal_of(r, GRT_RUNE)
    assert row["action"] == "exit" and row["position"] == 0
    assert set(r.orders["reduce_only"]) == {1}
    assert env.venue_position("GRT/USDT:USDT") == 0.0
    assert env.venue_position("RUNE/USDT:USDT") == 0.0


def test_kill_switch_blocks_entries(env: TickEnv) -> None:
    env.save_pairs()
    params = env.params_with(risk={"kill_switch": True})
    r = env.run(START, params)
    assert r.mode == "exits_only: kill switch"
    assert r.orders.empty and _venue_count(env) == 0
    wanted = r.signals[r.signals["signal"] != 0]
    assert len(wanted) > 0
    assert wanted["reason"].str.contains("kill switch").all()


def test_kill_file_follows_a_moved_state_dir(
    sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Move the state folder and ``touch <state_dir>/KILL``: the tick (the in-process
    simulator, store and lock all under the new folder) takes no entry; without the file
    the next tick enters."""
    from tick_fixtures import planted_pairs, unthrottle

    unthrottle(monkeypatch)
    moved = tmp_path / "elsewhere" / "state"
    params = trading_params(tmp_path, None, state_dir=str(moved),
                            venue={"sim_state": None}, risk={"kill_switch_file": None})
    assert params.risk.kill_switch_file == moved / "KILL"
    assert params.venue.sim_state == moved / "sim_account.json"
    with Store.at(moved) as db:
        db.save_pair_set(START, "t", pd.DataFrame(planted_pairs(sim_market)), None, START)
    (moved / "KILL").touch()
    killed = tick.run(params, START)
    assert killed.status == "ok", killed.error
    assert killed.mode == "exits_only: kill switch"
    assert killed.orders.empty
    assert signal_of(killed, INJ_SOL)["signal"] == 1  # it wanted to enter
    assert "kill switch" in signal_of(killed, INJ_SOL)["reason"]
    assert (moved / "sim_account.json").exists()  # the account followed state_dir too
    (moved / "KILL").unlink()
    free = tick.run(params, START + BAR)
    assert free.mode == "normal" and len(free.orders) > 0
    with Store.at(moved) as db:
        assert list(db.ticks()["mode"]) == ["exits_only: kill switch", "normal"]


def test_scenarios_hold_when_an_analyst_edits_a_threshold(
    env: TickEnv, tmp_path: Path
) -> None:
    """An analyst raises ``entry`` in (a copy of) params/pairlib.yaml, e.g. 1.0 -> 1.2: tick
    scenarios built on that file hold, because their expectations follow the params they run
    with, and the tick trades the edited threshold (its positions are the batch rule's at
    the new entry, which differ from those at the old one)."""
    shipped_file = Path(__file__).resolve().parents[1] / "params" / "pairlib.yaml"
    shipped = load_params(shipped_file)
    old = shipped.strategy.entry
    new = round(min(old + 0.2, (old + shipped.strategy.stop) / 2), 6)
    text, n = re.subn(r"(?m)^(  entry:\s*)\S+", lambda m: f"{m.group(1)}{new}",
                      shipped_file.read_text())
    assert n == 1
    edited_file = tmp_path / "pairlib.yaml"
    edited_file.write_text(text)
    params = trading_params(env.tmp, env.params.venue.sim_url,
                            base=yaml.safe_load(edited_file.read_text()))
    assert params.strategy.entry == new
    assert params.strategy.model_dump() == {**shipped.strategy.model_dump(), "entry": new}
    n_ticks = 15
    live = _replay(env, params, n_ticks)
    end = START + (n_ticks - 1) * BAR
    at_old = {pid: positions(env.z_path(pid, end, n_ticks, params.strategy.lookback).to_numpy(),
                             old, params.strategy.exit, params.strategy.stop).tolist()
              for pid in live}
    assert at_old != live  # the edit changed what the tick did
    # and the kill-switch scenario on the same file: no entry whatever the thresholds
    blocked = env.run(START + n_ticks * BAR,
                      trading_params(env.tmp, env.params.venue.sim_url,
                                     base=yaml.safe_load(edited_file.read_text()),
                                     risk={"kill_switch": True}))
    assert blocked.mode == "exits_only: kill switch"
    assert not blocked.orders["action"].str.startswith("enter").any()


# ----------------------------------------------------------------------------- bad input


def test_bad_data_never_places_an_order(env: TickEnv) -> None:
    """A leg the venue does not list is dropped: no entry, with the reason; the other pairs
    trade normally."""
    env.save_pairs([GRT_RUNE], extra=[{"y": "NOPE/USDT:USDT", "x": "GRT/USDT:USDT",
                                       "beta": 1.0, "alpha": 0.0}])
    r = env.run(START + 7 * BAR)
    assert r.status == "ok", r.error
    bad = signal_of(r, "NOPE/USDT:USDT~GRT/USDT:USDT")
    assert bad["action"] == "none" and math.isnan(bad["z"])
    assert "NOPE/USDT:USDT" in bad["reason"] and "no order" in bad["reason"]
    assert set(r.orders["pair_id"]) == {GRT_RUNE}


def test_bad_params_and_as_of_are_refused_before_any_order(
    env: TickEnv, tmp_path: Path
) -> None:
    env.save_pairs()
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy:\n  entry: 1.0\n  exit: 2.0\n")
    r = tick.run(bad, START, store=env.store, clock=env.clock)
    assert r.status == "refused" and "ConfigError" in (r.error or "")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("risk:\n  risk_per_trade: 0.01\n  leverage: 3\n")
    assert tick.run(unknown, START, store=env.store).status == "refused"
    env.at(START)
    off_grid = tick.run(env.params, START + BAR / 2, store=env.store, clock=env.clock)
    assert off_grid.status == "refused" and "candle close" in (off_grid.error or "")
    future = tick.run(env.params, START + BAR, store=env.store, clock=env.clock)
    assert future.status == "refused" and "not closed yet" in (future.error or "")
    assert tick.run(env.params, "yesterday", store=env.store).status == "refused"
    assert _venue_count(env) == 0


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) every attempt to open a connection or build a venue."""
    attempts: list[str] = []

    def refuse(*args: Any, **kw: Any) -> Any:
        attempts.append(repr(args[:2]))
        raise AssertionError("network call attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(Exchange, "from_params", classmethod(refuse))
    return attempts


@pytest.mark.parametrize(
    ("kind", "live", "keys", "fragment"),
    [
        ("live", False, True, "--live was not given"),
        ("live", True, False, "PAIRLIB_API_KEY"),
        ("sim", True, True, "--live was given"),
        ("demo", False, False, "PAIRLIB_API_KEY"),
    ],
)
def test_live_is_refused_without_every_safeguard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str],
    kind: str, live: bool, keys: bool, fragment: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.delenv("PAIRLIB_API_KEY", raising=False)
    monkeypatch.delenv("PAIRLIB_API_SECRET", raising=False)
    if keys:
        monkeypatch.setenv("PAIRLIB_API_KEY", "k" * 16)
        monkeypatch.setenv("PAIRLIB_API_SECRET", "s" * 16)
    params = trading_params(tmp_path, None, venue={"kind": kind, "sim_url": None})
    store = Store(tmp_path / "db.sqlite")
    r = tick.run(params, START, store=store, clock=SettableClock(START), live=live)
    assert r.status == "refused"
    assert "LiveTradingRefused" in (r.error or "") and fragment in (r.error or "")
    assert "s" * 16 not in (r.error or "") and "k" * 16 not in (r.error or "")
    assert no_network == []
    assert store.tick_row(START)["status"] == "refused"
    assert store.orders().empty
    store.close()


def test_in_process_simulator_when_no_url(
    sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """venue.sim_url null: the tick starts the simulator itself on its state file, with its
    clock at as_of, and stops it afterwards."""
    from tick_fixtures import planted_pairs, unthrottle

    unthrottle(monkeypatch)
    params = trading_params(tmp_path, None)
    with Store.at(params.state_dir) as db:
        db.save_pair_set(START, "t", pd.DataFrame(planted_pairs(sim_market)), None, START)
        r = tick.run(params, START + 7 * BAR, store=db)
        assert r.status == "ok", r.error
        assert len(r.orders) > 0
    assert (tmp_path / "sim_state.json").exists()
