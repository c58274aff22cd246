"""``pairlib status``: the dead-man's switch (``--check``), the JSON keys scripts rely on,
and open pairs marked at the closes the last tick acted on (from the candle cache, no venue
call)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from tick_fixtures import BAR, INJ_SOL, START, TickEnv, make_env, planted_pairs, trading_params
from typer.testing import CliRunner, Result

from pairlib.app import status as status_mod
from pairlib.app.cli import app
from pairlib.clock import SystemClock, iso
from pairlib.edges.store import PairSetMeta, Store
from pairlib.sim import Market

GRACE = timedelta(seconds=1800)  # schedule.stale_grace_seconds' default


def _params_file(tmp_path: Path, params: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))  # type: ignore[attr-defined]
    return path


def _status(path: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["status", "--params", str(path), *args])


def _one_line(res: Result) -> str:
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    return lines[0]


def test_check_exit_codes_and_lines(tmp_path: Path) -> None:
    params = trading_params(tmp_path, None)
    path = _params_file(tmp_path, params)
    res = _status(path, "--check")
    assert res.exit_code == 1 and _one_line(res).startswith("stale: no store at ")
    assert not (Path(params.state_dir) / "pairlib.db").exists()  # nothing created

    now = SystemClock().now().replace(microsecond=0)
    # ticks placed relative to the wall clock the command reads (not to the bar grid), so
    # each one's age against one bar + 30 min of grace is the same at any time of day
    fresh = now - timedelta(minutes=10)
    with Store.at(params.state_dir) as db:
        db.finish_tick(fresh, "failed", now, 1.0, message="venue down")
    res = _status(path, "--check")
    assert res.exit_code == 1
    assert _one_line(res) == "stale: no successful tick recorded"

    with Store.at(params.state_dir) as db:
        db.finish_tick(fresh - 2 * BAR, "ok", now, 1.0)
    res = _status(path, "--check")
    assert res.exit_code == 1
    line = _one_line(res)
    assert line.startswith(f"stale: last successful tick {iso(fresh - 2 * BAR)} is ")
    assert "more than one bar + grace = 4h30m" in line

    with Store.at(params.state_dir) as db:
        db.finish_tick(fresh - BAR, "ok", now, 1.0)
    res = _status(path, "--check")
    assert res.exit_code == 0, res.output
    line = _one_line(res)
    assert line.startswith(f"ok: last successful tick {iso(fresh - BAR)} (")
    assert f"the last tick {iso(fresh)} is failed" in line  # said, but not stale yet

    (tmp_path / "KILL").write_text("stop\n")  # the kill file of trading_params
    res = _status(path, "--check")
    assert res.exit_code == 0 and "kill switch ON: exits only" in _one_line(res)


def test_check_boundary_is_one_bar_plus_grace(tmp_path: Path) -> None:
    params = trading_params(tmp_path, None)
    with Store.at(params.state_dir) as db:
        db.finish_tick(START, "ok", START, 1.0)
    code, line = status_mod.check(params, START + BAR + GRACE)
    assert code == 0 and line.startswith("ok: ")
    code, line = status_mod.check(params, START + BAR + GRACE + timedelta(seconds=1))
    assert code == 1 and line.startswith("stale: ")
    longer = params.model_copy(update={"schedule": params.schedule.model_copy(
        update={"stale_grace_seconds": 7200.0})})
    assert status_mod.check(longer, START + BAR + GRACE + timedelta(seconds=1))[0] == 0


def test_next_tick_is_the_next_close_plus_the_delay(tmp_path: Path) -> None:
    params = trading_params(tmp_path, None)  # tick_delay_seconds: 30
    assert status_mod.next_tick(params, START + timedelta(seconds=10)) == (
        START + timedelta(seconds=30))
    assert status_mod.next_tick(params, START + timedelta(seconds=31)) == (
        START + BAR + timedelta(seconds=30))


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch)


def test_status_after_a_real_tick(env: TickEnv, tmp_path: Path) -> None:
    row = next(r for r in planted_pairs(env.market) if f"{r['y']}~{r['x']}" == INJ_SOL)
    import pandas as pd

    meta = PairSetMeta(venue_kind="sim", venue_key="sim-s7-n48", timeframe="4h",
                       lookback=env.params.strategy.lookback, code_version="test",
                       data_start="x", data_end="y")
    env.store.save_pair_set(START - timedelta(days=1), "test", pd.DataFrame([row]), None,
                            START - timedelta(days=1), meta=meta)
    report = str(tmp_path / "outputs" / "ticks" / "t-tick.ipynb")
    r = env.run(START, notebook_path=report)
    assert r.status == "ok", r.error
    assert (tmp_path / "data" / "ohlcv" / "sim-s7-n48" / "4h").is_dir()  # what it marks from

    now = START + timedelta(hours=1)
    data = status_mod.collect(env.params, now)
    assert tuple(data) == status_mod.STATUS_KEYS
    assert data["last_tick"]["as_of"] == iso(START) and data["last_tick"]["status"] == "ok"
    assert data["last_tick"]["report"] == report
    assert data["check"] == {"ok": True, "line": data["check"]["line"]}
    assert data["check"]["line"].startswith(f"ok: last successful tick {iso(START)}")
    assert data["kill_switch"]["on"] is False
    assert data["next_tick"] == iso(START + BAR + timedelta(seconds=30))
    assert data["pair_set"]["n_pairs"] == 1 and data["pair_set"]["age_days"] == pytest.approx(
        1 + 1 / 24, abs=0.01)
    assert data["equity"]["as_of"] == iso(START) and data["equity"]["equity"] > 0
    assert data["outbox"]["pending"] >= 1  # the entry's notification waits for delivery

    [held] = data["open_pairs"]
    state = env.store.pair_state(INJ_SOL)
    assert state is not None and held["pair_id"] == INJ_SOL and held["side"] == "long"
    # Marked independently: the simulator's own closes of the candle the tick acted on.
    closes = env.market.closes(START - 2 * BAR, START)
    ids = {s: s.split("/")[0] + "USDT" for s in (state.y, state.x)}
    cy = float(closes[ids[state.y]].loc[START - BAR])
    cx = float(closes[ids[state.x]].loc[START - BAR])
    expected = (state.amount_y * (cy - state.entry_price_y)
                + state.amount_x * (cx - state.entry_price_x))
    assert held["unrealized_pnl"] == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert held["marked_at"] == iso(START)

    path = _params_file(tmp_path, env.params)
    res = _status(path, "--json")
    assert res.exit_code == 0, res.output
    parsed = json.loads(res.output)
    assert tuple(parsed) == status_mod.STATUS_KEYS
    assert parsed["open_pairs"][0]["pair_id"] == INJ_SOL
    table = CliRunner().invoke(app, ["status", "--params", str(path)], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    for text in (INJ_SOL, "unrealized PnL", f"{expected:+,.2f}", "next tick",
                 "outputs" if "outputs" in report else "t-tick.html"):
        assert text in table.output, (text, table.output)
