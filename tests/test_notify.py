"""Notifications end to end: real ticks against the simulator enqueue their events, and
:func:`pairlib.app.notify.deliver_pending` sends them through apprise's ``json://`` plugin to
a receiver on 127.0.0.1 started here, which counts every request it gets."""

from __future__ import annotations

import http.server
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tick_fixtures import (
    BAR,
    EGLD_HBAR,
    GRT_RUNE,
    INJ_SOL,
    START,
    TickEnv,
    arm_after_orders,
    make_env,
    trading_params,
)

from pairlib.app import notify
from pairlib.clock import iso
from pairlib.edges.store import OutboxEntry, Store
from pairlib.sim import Market
from pairlib.venue.exchange import Exchange

TOKEN = "Zq9tokenXYZ31337secret"  # a distinctive fake token in every destination URL
REPO = Path(__file__).resolve().parents[1]


class Receiver:
    """A JSON webhook on 127.0.0.1: records every request (POST body or GET path) as it
    arrives; ``mode`` ``ok`` answers 200, ``error`` 500, ``hang`` never answers (until
    :meth:`stop`)."""

    def __init__(self, port: int = 0) -> None:
        self.got: list[dict[str, Any]] = []
        self.gets: list[str] = []
        self.mode = "ok"
        self.release = threading.Event()
        self.port = port
        self.server: http.server.ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append({"path": self.path, **json.loads(body)})
                self._answer()

            def do_GET(self) -> None:
                outer.gets.append(self.path)
                self._answer()

            def _answer(self) -> None:
                if outer.mode == "hang":
                    outer.release.wait(30)
                    return
                self.send_response(500 if outer.mode == "error" else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{TOKEN}"

    def titles(self) -> list[str]:
        return [str(m["title"]) for m in self.got]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    r = Receiver().start()
    monkeypatch.setenv(notify.ENV_URLS, r.url)
    yield r
    r.stop()


@pytest.fixture
def env(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TickEnv]:
    yield from make_env(sim_market, tmp_path, monkeypatch,
                        notify={"timeout_seconds": 2.0, "retry_base_seconds": 30.0})


def _report(env: TickEnv, when: Any) -> str:
    return str(env.tmp / "outputs" / "ticks" / f"{iso(when)[:13]}-tick.ipynb")


def _run(env: TickEnv, when: Any, **kw: Any) -> Any:
    r = env.run(when, notebook_path=_report(env, when), **kw)
    return r


def _one(receiver: Receiver, prefix: str) -> dict[str, Any]:
    found = [m for m in receiver.got if str(m["title"]).startswith(prefix)]
    assert len(found) == 1, (prefix, receiver.titles())
    return found[0]


def _assert_names_run_and_report(msg: dict[str, Any], env: TickEnv, when: Any) -> None:
    body = str(msg["message"])
    assert f"run: {iso(when)}" in body, body
    assert f"report: {_report(env, when)[:-len('.ipynb')]}.html" in body, body


# ----------------------------------------------------------------------------- events


def test_tick_events_arrive_once_each_naming_the_run_and_its_report(
    env: TickEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entry, exit, loss limit, a reconciliation mismatch (and the degraded tick it makes),
    the kill switch (once per engagement), a failed job and the daily summary."""
    env.save_pairs([INJ_SOL, EGLD_HBAR])
    assert _run(env, START).status == "ok"  # INJ~SOL enters long
    assert _run(env, START + BAR).status == "ok"  # INJ~SOL exits, EGLD~HBAR enters short
    opened = env.store.pair_state(EGLD_HBAR)
    assert opened is not None and opened.position == -1
    # As if EGLD had been sold at half today's price: the held pair is deep in loss.
    env.store.save_pair_state({**opened.as_dict(),
                               "entry_price_y": float(opened.entry_price_y) / 2})
    r2 = _run(env, START + 2 * BAR, params=env.params_with(risk={"max_loss_multiple": 2.0}))
    assert r2.status == "ok", r2.error
    env.at(START + 3 * BAR)
    with Exchange.from_params(env.params.venue) as ex:  # a position behind the store's back
        ex.create_order("HBAR/USDT:USDT", "buy", 1000.0, "manual-1")
    r3 = _run(env, START + 3 * BAR)
    assert r3.status == "degraded"
    with Exchange.from_params(env.params.venue) as ex:
        ex.create_order("HBAR/USDT:USDT", "sell", 1000.0, "manual-2", reduce_only=True)
    killed = env.params_with(risk={"kill_switch": True})
    for k in (4, 5):
        assert _run(env, START + k * BAR, params=killed).mode == "exits_only: kill switch"
    assert _run(env, START + 6 * BAR).status == "ok"  # off again ...
    assert _run(env, START + 7 * BAR, params=killed).status == "ok"  # ... and on again
    # Nothing was sent by the ticks themselves: they only enqueue.
    assert receiver.got == []
    # The job reporting the degraded tick adds no second message (same run, same status).
    notify.job_failed(env.params, job="tick", status="degraded", message="EXPOSED: ...",
                      report=Path(_report(env, START + 3 * BAR)), now=START + 3 * BAR)
    notify.job_failed(env.params, job="pairs", status="failed", message="kernel died",
                      report=env.tmp / "outputs" / "pairs" / "p.ipynb", now=START + 8 * BAR)
    notify.enqueue_daily_summary(env.params, START + 6 * BAR + timedelta(hours=1))
    notify.enqueue_daily_summary(env.params, START + 6 * BAR + timedelta(hours=2))

    stats = notify.deliver_pending(env.params, now=START + 8 * BAR)
    assert stats.errors == () and stats.retrying == 0 and stats.in_doubt == 0

    entry = _one(receiver, f"pairlib: enter_long {INJ_SOL}")
    _assert_names_run_and_report(entry, env, START)
    assert "filled y" in entry["message"] and entry["type"] == "info"
    _assert_names_run_and_report(_one(receiver, f"pairlib: exit {INJ_SOL}"), env, START + BAR)
    loss = _one(receiver, f"pairlib: loss_limit {EGLD_HBAR}")
    _assert_names_run_and_report(loss, env, START + 2 * BAR)
    assert "risk budget" in loss["message"] and "PnL" in loss["message"]
    assert loss["type"] == "failure"
    mismatch = _one(receiver, "pairlib: incident reconcile_mismatch HBAR/USDT:USDT")
    _assert_names_run_and_report(mismatch, env, START + 3 * BAR)
    degraded = _one(receiver, "pairlib: tick degraded")
    _assert_names_run_and_report(degraded, env, START + 3 * BAR)
    assert "EXPOSED" in degraded["message"]
    kills = [m for m in receiver.got if m["title"] == "pairlib: kill switch engaged"]
    assert len(kills) == 2  # ticks 4 and 7: once per engagement, not at tick 5
    _assert_names_run_and_report(kills[0], env, START + 4 * BAR)
    _assert_names_run_and_report(kills[1], env, START + 7 * BAR)
    assert "risk.kill_switch" in kills[0]["message"]
    failed = _one(receiver, "pairlib: pairs failed")
    assert "kernel died" in failed["message"] and "p.html" in failed["message"]
    summary = _one(receiver, "pairlib: daily summary to 2025-02-05T00:00:00Z")
    held = [r.pair_id for r in env.store.pair_state_rows() if r.held]
    assert f"open pairs: {len(held)}" in summary["message"] and held
    assert all(pid in summary["message"] for pid in held)
    eq = env.store.equity_history().set_index("tick_as_of")["equity"]
    day_pnl = eq["2025-02-05T00:00:00Z"] - eq["2025-02-04T00:00:00Z"]
    assert f"equity {eq['2025-02-05T00:00:00Z']:,.2f} USDT" in summary["message"]
    assert f"PnL over the day {day_pnl:+,.2f} USDT" in summary["message"]
    assert "ticks in the day: 6 run, 1 not ok" in summary["message"]  # 04:00 ... 00:00

    # Delivered once: a second run (and a later one) sends nothing again.
    n = len(receiver.got)
    notify.deliver_pending(env.params, now=START + 9 * BAR)
    notify.deliver_pending(env.params, now=START + 30 * BAR)
    assert len(receiver.got) == n
    assert env.store.outbox_counts()["delivered"] == n
    assert all(m["path"] == f"/hook/{TOKEN}" for m in receiver.got)


def test_a_stop_loss_and_a_leg_unwind_arrive(
    env: TickEnv, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.save_pairs([GRT_RUNE])
    # Bar 7: the second leg is rejected and the first unwound.
    arm_after_orders(monkeypatch, lambda: env.server.faults.reject_next_orders(1, -2019))
    r7 = _run(env, START + 7 * BAR)
    assert "second leg failed" in str(r7.signals["reason"].iloc[0])
    monkeypatch.undo()
    monkeypatch.setenv(notify.ENV_URLS, receiver.url)
    from tick_fixtures import unthrottle

    unthrottle(monkeypatch)
    # Bar 10 (z 1.03) enters short; bar 11 (z 0.67) is a stop once the stop is at 0.65.
    assert _run(env, START + 10 * BAR).signals.set_index("pair_id").loc[
        GRT_RUNE, "action"] == "enter_short"
    tight = env.params_with(strategy={"entry": 0.6, "stop": 0.65, "exit": 0.5})
    r11 = _run(env, START + 11 * BAR, params=tight)
    assert r11.signals.set_index("pair_id").loc[GRT_RUNE, "action"] == "stop", r11.signals
    notify.deliver_pending(env.params, now=START + 12 * BAR)
    unwind = _one(receiver, "pairlib: incident second_leg_failed")
    _assert_names_run_and_report(unwind, env, START + 7 * BAR)
    assert "unwound" in unwind["message"] and unwind["type"] == "failure"
    _one(receiver, f"pairlib: enter_short {GRT_RUNE}")
    stop = _one(receiver, f"pairlib: stop {GRT_RUNE}")
    _assert_names_run_and_report(stop, env, START + 11 * BAR)
    assert stop["type"] == "failure"


# ----------------------------------------------------------------------------- delivery


def _outbox_params(tmp_path: Path, **notify_keys: Any) -> Any:
    return trading_params(tmp_path, None, notify={"timeout_seconds": 1.0,
                                                  "retry_base_seconds": 30.0, **notify_keys})


def _enqueue(params: Any, key: str) -> None:
    with Store.at(params.state_dir) as db:
        db.enqueue(OutboxEntry(kind="entry", title=f"msg {key}", body="b", dedupe_key=key,
                               run="2025-02-04T00:00:00Z"), START)


def test_receiver_down_gets_it_after_coming_back_and_after_a_restart_never_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outbox_params(tmp_path)
    port = _free_port()
    down = Receiver(port)
    monkeypatch.setenv(notify.ENV_URLS, down.url)
    _enqueue(params, "a")
    first = notify.deliver_pending(params, now=START)  # nothing listens: refused
    assert first.retrying == 1 and first.delivered == 0
    with Store.at(params.state_dir) as db:
        row = db.outbox()[0]
    assert row.state == "pending" and row.attempts == 1
    assert row.next_attempt_at == iso(START + timedelta(seconds=30))
    assert "127.0.0.1" in str(row.last_error) and TOKEN not in str(row.last_error)
    # Second attempt, still down: the wait doubles.
    notify.deliver_pending(params, now=START + timedelta(seconds=30))
    with Store.at(params.state_dir) as db:
        assert db.outbox()[0].next_attempt_at == iso(START + timedelta(seconds=90))
    up = Receiver(port).start()
    try:
        assert notify.deliver_pending(params, now=START + timedelta(seconds=89)).delivered == 0
        assert up.got == []  # not due yet
        assert notify.deliver_pending(params, now=START + timedelta(seconds=90)).delivered == 1
        assert up.titles() == ["pairlib: msg a"]
        up.stop()
        # Down again for the next message; after a restart (a new Store: the outbox is the
        # only state) it is delivered once the receiver is back, and the earlier one is not
        # sent again. (test_a_delivery_killed_mid_send_is_never_sent_twice restarts a real
        # process.)
        _enqueue(params, "b")
        assert notify.deliver_pending(params, now=START + timedelta(seconds=100)).retrying == 1
        back = Receiver(port).start()
        try:
            with Store.at(params.state_dir) as db:
                assert db.outbox_counts()["pending"] == 1
            again = notify.deliver_pending(params, now=START + timedelta(minutes=5))
            assert again.delivered == 1, again
            assert back.titles() == ["pairlib: msg b"]
            notify.deliver_pending(params, now=START + timedelta(hours=5))
            assert back.titles() == ["pairlib: msg b"] and up.titles() == ["pairlib: msg a"]
        finally:
            back.stop()
    finally:
        up.stop()


def test_a_delivery_killed_mid_send_is_never_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real process is SIGKILLed while its message is at the receiver (which has it, and
    has not answered): after the restart the message is in doubt and not sent again."""
    params = _outbox_params(tmp_path, timeout_seconds=30.0)
    hang = Receiver().start()
    hang.mode = "hang"
    try:
        _enqueue(params, "a")
        proc = subprocess.Popen(
            [sys.executable, "-c",
             "import sys, json; from datetime import datetime;"
             "from pairlib.config import validate_params, TradingParams;"
             "from pairlib.app.notify import deliver_pending;"
             "p = validate_params(json.loads(sys.argv[1]), TradingParams);"
             "deliver_pending(p, now=datetime.fromisoformat(sys.argv[2]))",
             json.dumps(params.model_dump(mode="json")), START.isoformat()],
            cwd=REPO, env={**os.environ, notify.ENV_URLS: hang.url},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not hang.got and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(hang.got) == 1
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        hang.mode = "ok"
        monkeypatch.setenv(notify.ENV_URLS, hang.url)
        # Too early to tell a dead sender from a slow one: left alone.
        early = notify.deliver_pending(params, now=START + timedelta(seconds=10))
        assert early.in_doubt == 0 and len(hang.got) == 1
        late = notify.deliver_pending(params, now=START + timedelta(hours=1))
        assert late.in_doubt == 1 and late.delivered == 0
        with Store.at(params.state_dir) as db:
            assert db.outbox_counts()["in_doubt"] == 1
        notify.deliver_pending(params, now=START + timedelta(days=1))
        assert len(hang.got) == 1
    finally:
        hang.stop()


def test_a_hanging_receiver_costs_one_timeout_and_is_not_resent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outbox_params(tmp_path, timeout_seconds=0.5)
    hang = Receiver().start()
    hang.mode = "hang"
    monkeypatch.setenv(notify.ENV_URLS, hang.url)
    try:
        _enqueue(params, "a")
        _enqueue(params, "b")
        t0 = time.monotonic()
        stats = notify.deliver_pending(params, now=START)
        # Bounded by the timeout, not by the receiver (which would hold it 30 s), and the
        # dead destination costs one timeout per run: "b" was not even tried.
        assert time.monotonic() - t0 < 15
        assert stats.in_doubt == 1 and len(hang.got) == 1
        assert "no answer within 0.5 s" in stats.errors[0]
        with Store.at(params.state_dir) as db:
            assert db.outbox_counts()["pending"] == 1
        hang.mode = "ok"
        assert notify.deliver_pending(params, now=START + timedelta(days=1)).delivered == 1
        # "a" may have been delivered: it is never sent twice.
        assert [m["title"] for m in hang.got] == ["pairlib: msg a", "pairlib: msg b"]
    finally:
        hang.stop()


def test_a_failing_delivery_never_touches_the_tick(
    env: TickEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = Receiver().start()
    hang.mode = "hang"
    monkeypatch.setenv(notify.ENV_URLS, hang.url)
    try:
        env.save_pairs([INJ_SOL])
        r = _run(env, START)
        assert r.status == "ok" and hang.got == []  # the tick sends nothing itself
        stats = notify.deliver_pending(env.params.model_copy(
            update={"notify": env.params.notify.model_copy(update={"timeout_seconds": 0.3})}),
            now=START)
        assert stats.in_doubt == 1
        row = env.store.tick_row(START)
        assert row is not None and row.status == "ok"
    finally:
        hang.stop()


def test_refusals_are_retried_until_max_attempts_then_failed(
    tmp_path: Path, receiver: Receiver
) -> None:
    params = _outbox_params(tmp_path, max_attempts=2, retry_base_seconds=1.0)
    receiver.mode = "error"
    _enqueue(params, "a")
    assert notify.deliver_pending(params, now=START).retrying == 1
    last = notify.deliver_pending(params, now=START + timedelta(seconds=1))
    assert last.failed == 1 and "undeliverable" in last.errors[0]
    assert len(receiver.got) == 2
    with Store.at(params.state_dir) as db:
        row = db.outbox()[0]
    assert row.state == "failed" and "gave up after 2 attempts" in str(row.last_error)


def test_two_destinations_one_refusing_the_other_is_not_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outbox_params(tmp_path)
    good, bad = Receiver().start(), Receiver().start()
    bad.mode = "error"
    monkeypatch.setenv(notify.ENV_URLS, f"{good.url}, {bad.url}")
    try:
        _enqueue(params, "a")
        assert notify.deliver_pending(params, now=START).retrying == 1
        bad.mode = "ok"
        assert notify.deliver_pending(params, now=START + timedelta(minutes=1)).delivered == 1
        assert len(good.got) == 1 and len(bad.got) == 2
    finally:
        good.stop()
        bad.stop()


def test_without_destinations_rows_are_held_and_never_sent_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outbox_params(tmp_path)
    monkeypatch.delenv(notify.ENV_URLS, raising=False)
    _enqueue(params, "a")
    stats = notify.deliver_pending(params, now=START)
    assert stats.no_destination == 1 and str(stats) == "notifications: 1 no destination"
    r = Receiver().start()
    try:
        monkeypatch.setenv(notify.ENV_URLS, r.url)
        assert notify.deliver_pending(params, now=START + timedelta(hours=1)).delivered == 0
        assert r.got == []
        with Store.at(params.state_dir) as db:
            row = db.outbox()[0]
        assert row.state == "no_destination" and "PAIRLIB_NOTIFY_URLS" in str(row.last_error)
    finally:
        r.stop()


def test_no_store_no_file_and_nothing_raises(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    params = _outbox_params(tmp_path)
    monkeypatch.setenv(notify.ENV_URLS, "json://127.0.0.1:1/x")
    assert notify.deliver_pending(params, now=START) == notify.DeliveryStats()
    notify.enqueue_daily_summary(params, START)
    assert not (Path(params.state_dir) / "pairlib.db").exists()


def test_heartbeat_is_pinged_only_while_the_last_ok_tick_is_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = _outbox_params(tmp_path)
    r = Receiver().start()
    monkeypatch.setenv(notify.ENV_HEARTBEAT, f"http://127.0.0.1:{r.port}/ping/{TOKEN}")
    try:
        notify.ping_heartbeat(params, now=START)  # no store: nothing to vouch for
        with Store.at(params.state_dir) as db:
            db.finish_tick(START, "ok", START, 1.0)
        notify.ping_heartbeat(params, now=START + timedelta(minutes=1))
        assert r.gets == [f"/ping/{TOKEN}"]
        # One bar + the grace (30 min) later, the tick is stale: no ping.
        notify.ping_heartbeat(params, now=START + BAR + timedelta(minutes=31))
        assert len(r.gets) == 1
        r.mode = "hang"  # a hanging monitor costs one timeout, and nothing raises
        notify.ping_heartbeat(params, now=START + timedelta(minutes=2))
        assert len(r.gets) == 2
    finally:
        r.stop()


# ----------------------------------------------------------------------------- secrets


def test_the_urls_appear_in_no_log_error_store_or_status_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import yaml
    from typer.testing import CliRunner

    from pairlib.app.cli import app

    params = _outbox_params(tmp_path, timeout_seconds=0.3)
    file = tmp_path / "params.yaml"
    file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    hang = Receiver().start()
    hang.mode = "hang"
    port = _free_port()
    monkeypatch.setenv(notify.ENV_URLS, " ".join([
        f"json://127.0.0.1:{port}/{TOKEN}",  # refused
        f"json://user:{TOKEN}@127.0.0.1:{hang.port}/x",  # hangs (a password in it)
        f"nosuchscheme://{TOKEN}/a",  # not an apprise URL
    ]))
    monkeypatch.setenv(notify.ENV_HEARTBEAT, f"http://127.0.0.1:{port}/{TOKEN}")
    caplog.set_level(logging.DEBUG)
    try:
        with Store.at(params.state_dir) as db:
            db.finish_tick(START, "ok", START, 1.0)
        _enqueue(params, "a")
        stats = notify.deliver_pending(params, now=START)
        notify.ping_heartbeat(params, now=START + timedelta(minutes=1))
        runner = CliRunner()
        outs = [runner.invoke(app, ["status", "--params", str(file), *extra])
                for extra in ([], ["--json"], ["--check"])]
        outs.append(runner.invoke(app, ["notify", "test", "--params", str(file)]))
        outs.append(runner.invoke(app, ["notify", "deliver", "--params", str(file)]))
    finally:
        hang.stop()
    assert stats.errors and any("not a valid apprise URL" in e for e in stats.errors)
    with Store.at(params.state_dir) as db:
        row = db.outbox()[0]
    assert "json://127.0.0.1:***" in str(row.last_error), row.last_error
    texts = [caplog.text, " ".join(stats.errors), str(stats)]
    texts += [o.output + (o.stderr if o.stderr_bytes is not None else "") for o in outs]
    assert "urllib3" in caplog.text or "apprise" in caplog.text  # the HTTP stack did log
    for text in texts:
        assert TOKEN not in text
    with Store.at(params.state_dir) as db:
        assert all(TOKEN not in str(r.as_dict()) for r in db.outbox())
    for f in Path(params.state_dir).iterdir():
        assert TOKEN.encode() not in f.read_bytes(), f


def test_redaction_and_links() -> None:
    assert notify.redact_url(f"json://127.0.0.1:8080/{TOKEN}") == "json://127.0.0.1:***"
    assert notify.redact_url(f"slack://{TOKEN}/B/C") == "slack://***"
    assert notify.redact_url(f"mailto://me:{TOKEN}@example.com") == "mailto://example.com:***"
    assert notify.notify_urls({notify.ENV_URLS: " a://x, b://y\n a://x "}) == ["a://x", "b://y"]
    assert notify.target_id("a://x") != notify.target_id("b://y")
    from pairlib.config import project_path

    inside = project_path("outputs") / "ticks" / "2025" / "02" / "t-tick.ipynb"
    assert notify.report_link(inside) == "outputs/ticks/2025/02/t-tick.html"
    assert notify.report_link("/elsewhere/r.ipynb") == "/elsewhere/r.html"
    assert notify.report_link(None) is None
