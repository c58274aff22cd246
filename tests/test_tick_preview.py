"""A preview computes every decision and size the tick would use, sends no order and writes
nothing (``pairlib.engine.tick.run(..., preview=True)``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from tick_fixtures import BAR, GRT_RUNE, START, TickEnv, make_env

from pairlib.sim import Market

ENTRY = START + 7 * BAR


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch)


def _dump(env: TickEnv) -> dict[str, pd.DataFrame]:
    tables = env.store.query("SELECT name FROM sqlite_master WHERE type = 'table'")["name"]
    return {t: env.store.query(f"SELECT * FROM {t}") for t in tables}


def test_preview_shows_the_ticks_orders_without_sending_or_recording_them(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    before = _dump(env)
    shown = env.run(ENTRY, preview=True)
    assert shown.status == "preview" and shown.ok, shown.error
    assert "no order sent" in shown.mode
    assert len(env.venue_orders()) == 0
    after = _dump(env)
    assert before.keys() == after.keys()
    for t in before:
        pd.testing.assert_frame_equal(before[t], after[t], check_dtype=False, obj=t)
    row = shown.signals.set_index("pair_id").loc[GRT_RUNE]
    assert row["action"] == "enter_short" and "risk" in row["reason"]
    planned = shown.orders.set_index("leg")
    # The real tick then sends exactly what the preview showed.
    real = env.run(ENTRY)
    assert real.status == "ok", real.error
    sent = real.orders[real.orders["action"] == "enter_short"].set_index("leg")
    for leg in ("y", "x"):
        assert planned.loc[leg, "side"] == sent.loc[leg, "side"]
        assert planned.loc[leg, "amount"] == pytest.approx(sent.loc[leg, "amount"])


def test_preview_of_an_exit_lists_reduce_only_closes(env: TickEnv) -> None:
    env.save_pairs([GRT_RUNE])
    assert env.run(ENTRY).status == "ok"
    booked = len(env.venue_orders())
    shown = env.run(START + 13 * BAR, preview=True)
    assert shown.signals.set_index("pair_id").loc[GRT_RUNE, "action"] == "exit"
    assert set(shown.orders["reduce_only"]) == {1} and len(shown.orders) == 2
    assert len(env.venue_orders()) == booked
    assert env.store.pair_state(GRT_RUNE)["position"] == -1
    assert env.store.tick_row(START + 13 * BAR) is None


def test_preview_of_the_in_process_simulator_changes_no_file(env: TickEnv, tmp_path: Path) -> None:
    from pairlib.edges.store import Store
    from pairlib.engine import tick

    params = env.params_with(venue={"sim_url": None,
                                    "sim_state": str(tmp_path / "inproc" / "sim.json")},
                             state_dir=str(tmp_path / "inproc"))
    real = tick.run(params, ENTRY - BAR)  # creates the account file and the database
    assert real.status == "ok", real.error
    account = (tmp_path / "inproc" / "sim.json").read_bytes()
    with Store.at(params.state_dir) as db:
        before = {t: db.query(f"SELECT * FROM {t}") for t in db.tables()}
    shown = tick.run(params, ENTRY, preview=True)
    assert shown.status == "preview", shown.error
    assert (tmp_path / "inproc" / "sim.json").read_bytes() == account
    with Store.at(params.state_dir) as db:
        for t, frame in before.items():
            pd.testing.assert_frame_equal(frame, db.query(f"SELECT * FROM {t}"), obj=t)
    fresh = env.params_with(venue={"sim_url": None,
                                   "sim_state": str(tmp_path / "fresh" / "sim.json")},
                            state_dir=str(tmp_path / "fresh"))
    assert tick.run(fresh, ENTRY, preview=True).status == "preview"
    assert not (tmp_path / "fresh").exists()  # not even an empty database or a lock
