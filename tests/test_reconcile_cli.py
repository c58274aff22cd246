"""``pairlib reconcile``: the report of store/venue mismatches and the operator's
``--accept`` (``pairlib.engine.reconcile.report``/``accept_venue``), on the simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from tick_fixtures import BAR, EGLD_HBAR, INJ_SOL, START, TickEnv, make_env
from typer.testing import CliRunner, Result

from pairlib.app.cli import app
from pairlib.clock import iso
from pairlib.edges.store import Store
from pairlib.engine.reconcile import AcceptRefused, accept_venue, expected_positions
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange

HBAR = "HBAR/USDT:USDT"
INJ = "INJ/USDT:USDT"
SOL = "SOL/USDT:USDT"


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch)


def _params_file(env: TickEnv) -> Path:
    path = env.tmp / "trading.yaml"
    path.write_text(yaml.safe_dump(env.params.model_dump(mode="json")))
    return path


def _cli(env: TickEnv, when: datetime, *args: str) -> Result:
    return CliRunner().invoke(
        app, ["reconcile", "--params", str(_params_file(env)), "--as-of", iso(when), *args])


def _manual(env: TickEnv, symbol: str, side: str, amount: float, cid: str,
            reduce_only: bool = False) -> None:
    """An order placed by hand on the venue, behind the store's back."""
    with Exchange.from_params(env.params.venue) as ex:
        ex.create_order(symbol, side, amount, cid, reduce_only=reduce_only)


def _incidents(env: TickEnv, kind: str) -> list[dict[str, object]]:
    inc = env.store.incidents()
    return inc.loc[inc["kind"] == kind].to_dict("records")


def test_position_behind_the_stores_back_is_reported_accepted_and_unblocked(
    env: TickEnv,
) -> None:
    env.save_pairs()
    env.run(START)
    env.at(START + BAR)
    _manual(env, HBAR, "buy", 1000.0, "manual-1")
    r1 = env.run(START + BAR)
    assert list(r1.mismatches["symbol"]) == [HBAR]

    shown = _cli(env, START + BAR)
    assert shown.exit_code == 1, shown.output
    assert HBAR in shown.output and "mismatch" in shown.output
    assert "1 symbol(s) need attention" in shown.output

    done = _cli(env, START + BAR, "--accept", HBAR, "--reason", "my manual hedge")
    assert done.exit_code == 0, done.output
    assert "held outside any pair (accepted): +0 -> +1000" in done.output
    assert _cli(env, START + BAR).exit_code == 0
    assert env.store.incidents(unresolved_only=True).empty
    (acc,) = _incidents(env, "operator_accept")
    assert acc["symbol"] == HBAR and "my manual hedge" in str(acc["detail"])
    data = json.loads(str(acc["detail"]).split("; ", 1)[1])
    assert data["expected_before"] == 0.0 and data["expected_after"] == 1000.0
    assert data["reason"] == "my manual hedge"
    assert env.store.accepted_positions() == {HBAR: 1000.0}
    assert expected_positions(env.store.pair_states(), env.store.accepted_positions())[
        HBAR
    ] == 1000.0
    n_mismatch = len(_incidents(env, "reconcile_mismatch"))  # kept, marked resolved

    r2 = env.run(START + 2 * BAR)
    assert r2.status == "ok", r2.error
    assert r2.mismatches.empty, r2.mismatches
    assert len(_incidents(env, "reconcile_mismatch")) == n_mismatch
    assert env.store.incidents(unresolved_only=True).empty


def test_accepted_outside_holding_blocks_new_pair_entries(env: TickEnv) -> None:
    """EGLD~HBAR enters short at bar 1 on its own; with an operator-accepted HBAR holding
    outside any pair, it does not (a pair trading against it would net out)."""
    env.save_pairs([EGLD_HBAR])
    _manual(env, HBAR, "buy", 1000.0, "manual-2")
    done = _cli(env, START, "--accept", HBAR, "--reason", "long-term hold")
    assert done.exit_code == 0, done.output
    r = env.run(START + BAR)
    assert r.status == "ok", r.error
    assert r.mismatches.empty
    egld = r.signals.loc[r.signals["pair_id"] == EGLD_HBAR].iloc[0]
    assert abs(float(egld["z"])) >= 1.0  # it does signal
    assert egld["action"] == "none" and HBAR in str(egld["reason"])
    assert len(r.orders) == 0


def test_residual_leg_of_a_flat_pair_is_accepted(env: TickEnv) -> None:
    env.save_pairs([INJ_SOL])
    env.run(START)
    st = env.store.pair_state(INJ_SOL)
    assert st is not None and st["position"] == 1
    inj, sol = float(st["amount_y"]), float(st["amount_x"])
    # A failed unwind leaves the pair flat with both legs; the operator closes INJ by hand.
    env.store.save_pair_state({**st.as_dict(), "position": 0})
    env.at(START + BAR)
    _manual(env, INJ, "sell", inj, "manual-inj", reduce_only=True)
    assert _cli(env, START + BAR).exit_code == 1

    done = _cli(env, START + BAR, "--accept", INJ, "--reason", "closed INJ by hand")
    assert done.exit_code == 0, done.output
    after = env.store.pair_state(INJ_SOL)
    assert after is not None
    assert after["amount_y"] == 0.0 and after["amount_x"] == sol and after["position"] == 0
    assert env.store.accepted_positions() == {}
    assert _cli(env, START + BAR).exit_code == 0  # SOL's residual still matches the venue

    n_orders = len(env.venue_orders())
    r = env.run(START + BAR)
    assert r.status == "ok" and r.mismatches.empty
    sent = env.venue_orders()[n_orders:]
    assert [o["symbol"] for o in sent] == ["SOLUSDT"]  # only the SOL residual is flattened
    assert env.venue_position(SOL) == 0.0 and env.venue_position(INJ) == 0.0


def test_open_pair_leg_refused_without_force_then_forced_flat(env: TickEnv) -> None:
    env.save_pairs([INJ_SOL])
    env.run(START)
    st = env.store.pair_state(INJ_SOL)
    assert st is not None and st["position"] == 1
    sol = float(st["amount_x"])
    assert sol < 0
    env.at(START + BAR)
    _manual(env, SOL, "buy", -sol, "manual-sol", reduce_only=True)

    refused = _cli(env, START + BAR, "--accept", SOL, "--reason", "closed SOL by hand")
    assert refused.exit_code == 1
    assert INJ_SOL in refused.output and "--force" in refused.output
    assert env.store.pair_state(INJ_SOL) == st  # untouched
    assert not _incidents(env, "operator_accept")

    forced = _cli(env, START + BAR, "--accept", SOL, "--reason", "closed SOL by hand",
                  "--force")
    assert forced.exit_code == 0, forced.output
    assert "pair marked flat" in forced.output and "reduce-only" in forced.output
    after = env.store.pair_state(INJ_SOL)
    assert after is not None
    assert (after["position"], after["locked_out"], after["amount_x"]) == (0, 1, 0.0)
    assert after["amount_y"] == st["amount_y"]  # the INJ leg is now a residual
    assert len(_incidents(env, "operator_accept")) == 1

    r = env.run(START + BAR)
    assert r.status == "ok" and r.mismatches.empty
    assert env.venue_position(INJ) == 0.0 and env.venue_position(SOL) == 0.0
    assert r.signals.loc[r.signals["pair_id"] == INJ_SOL].iloc[0]["action"] == "flatten"


def test_accept_needs_a_reason_and_good_params(env: TickEnv) -> None:
    res = _cli(env, START, "--accept", HBAR)
    assert res.exit_code == 2 and "--reason" in res.output
    res = _cli(env, START, "--accept", HBAR, "--reason", "   ")
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["reconcile", "--params", str(env.tmp / "missing.yaml")])
    assert res.exit_code == 2 and "not found" in res.output
    assert _cli(env, START).exit_code == 0  # empty store, flat venue: clean
    assert env.store.incidents().empty


def test_accept_keeps_an_intact_open_leg_and_refuses_a_netted_one(tmp_path: Path) -> None:
    """Extra on the venue in the open leg's direction is accepted next to it; a venue amount
    that cannot hold the leg (opposite sign, or smaller) is refused, store unchanged."""
    now = START
    with Store(tmp_path / "s.db") as db:
        db.save_pair_state({"pair_id": EGLD_HBAR, "y": "EGLD/USDT:USDT", "x": HBAR,
                            "beta": 1.0, "alpha": 0.0, "position": -1, "amount_y": -2.0,
                            "amount_x": -500.0})
        with pytest.raises(AcceptRefused, match="reason"):
            accept_venue(db, HBAR, -1500.0, now, "")
        for bad in (500.0, -400.0, 0.0):
            with pytest.raises(AcceptRefused, match=EGLD_HBAR):
                accept_venue(db, HBAR, bad, now, "x")
        assert db.incidents().empty
        res = accept_venue(db, HBAR, -1500.0, now, "hedge", operator="ops")
        assert res.changed and res.leg_changes == [] and res.accepted_after == -1000.0
        assert db.pair_state(EGLD_HBAR)["amount_x"] == -500.0  # type: ignore[index]
        assert expected_positions(db.pair_states(), db.accepted_positions())[HBAR] == -1500.0
        again = accept_venue(db, HBAR, -1500.0, now, "hedge")
        assert not again.changed  # already matches: nothing recorded
        assert len(db.incidents()) == 1
