"""Concurrency (issue 12 §5), with real ``pairlib`` processes against a simulator on
127.0.0.1: two ticks for the same candle at once, two for different candles, a tick during
``pairlib reconcile --accept``, the scheduler beside a manual tick (and a second scheduler run),
two scheduler daemons. In every case one job runs at a time; the others wait (``--wait``) or
exit with a message naming the holder; every run that wrote a report keeps it. The outcomes are
written to ``docs/RELIABILITY.md`` (section ``concurrency``)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from reliability_doc import selected, write_section
from tick_fixtures import BAR, START, trading_params, unthrottle

from pairlib.app.schedule import STATE_NAME
from pairlib.clock import iso
from pairlib.edges.store import Store
from pairlib.sim import Market, SimServer
from pairlib.venue.exchange import Exchange

pytestmark = pytest.mark.slow

HBAR = "HBAR/USDT:USDT"
DEADLINE_S = 180.0  # a liveness bound for each process, not a speed requirement
ROWS: list[tuple[str, str, str]] = []  # (scenario, what happened, reports)


@dataclass
class Env:
    tmp: Path
    server: SimServer
    params_file: Path
    state: Path
    outputs: Path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    unthrottle(monkeypatch)
    server = SimServer(Market(), tmp_path / "sim_state.json", now=START, weight_limit=10**9)
    url = server.start()
    params = trading_params(tmp_path, url, schedule={"heartbeat_seconds": 0.2})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    try:
        yield Env(tmp_path, server, path, Path(params.state_dir), tmp_path / "out")
    finally:
        server.stop()


def _start(env: Env, *args: str) -> subprocess.Popen[str]:
    """``python -m pairlib ARGS`` in the env's folder, without notification destinations."""
    environ = {k: v for k, v in os.environ.items()
               if k not in ("PAIRLIB_NOTIFY_URLS", "PAIRLIB_HEARTBEAT_URL")}
    return subprocess.Popen([sys.executable, "-m", "pairlib", *args, "--params",
                             str(env.params_file)], cwd=env.tmp, env=environ, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _tick(env: Env, when: datetime, wait: float) -> subprocess.Popen[str]:
    return _start(env, "tick", "--as-of", iso(when), "--outputs", "out", "--wait", str(wait))


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def _wait_for(what: str, ready: object, procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not ready():  # type: ignore[operator]
        for p in procs:
            assert p.poll() is None, f"exited before {what}: {p.communicate()}"
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def _holder(env: Env, name: str) -> dict[str, object]:
    try:
        return dict(json.loads((env.state / f"{name}.holder.json").read_text()))
    except (OSError, ValueError):
        return {}


def _flock_held(path: Path) -> bool:
    """Whether another process holds ``path``'s flock (probed without waiting)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _reports(env: Env) -> list[Path]:
    return sorted(p.resolve() for p in env.outputs.rglob("*.ipynb"))


def _tick_rows(env: Env) -> list[dict[str, object]]:
    with Store.at(env.state) as db:
        return list(db.ticks().to_dict("records"))


def _record_done(env: Env, **done: datetime) -> None:
    env.state.mkdir(parents=True, exist_ok=True)
    (env.state / STATE_NAME).write_text(json.dumps({k: iso(v) for k, v in done.items()}))


def _complete(report: Path) -> bool:
    nb = json.loads(report.read_text())
    return bool(nb["cells"]) and "papermill" in nb["metadata"]


# ------------------------------------------------------------------ scenarios


def test_two_ticks_for_the_same_candle_run_one_after_the_other(env: Env) -> None:
    env.server.set_now(START + BAR)
    a, b = _tick(env, START + BAR, 120), _tick(env, START + BAR, 120)
    (ca, oa, ea), (cb, ob, eb) = _finish(a), _finish(b)
    assert (ca, cb) == (0, 0), (ea, eb)
    said = sorted(out.splitlines()[1].split(" ")[1] for out in (oa, ob))
    assert said == ["already_ran", "ok"], (oa, ob)
    waited = [(p, e) for p, e in ((a, ea), (b, eb)) if "waiting up to 120 s" in e]
    assert len(waited) == 1, (ea, eb)  # the second waited, saying who held the lock
    (waiter, line), = waited
    other = b if waiter is a else a
    assert f"tick by pid {other.pid} on {socket.gethostname()}" in line
    assert "as_of 2025-02-04T04:00Z" in line
    paths = {env.tmp / oa.splitlines()[0], env.tmp / ob.splitlines()[0]}
    assert len(paths) == 2 and all(_complete(p) for p in paths)  # two reports, both kept
    assert [r["status"] for r in _tick_rows(env)] == ["ok"]
    ROWS.append(("2 `pairlib tick` for the same candle at once", "one ran (ok), the other "
                 "waited for the job lock naming the holder, then `already_ran`",
                 "2 of 2 kept"))


def test_a_tick_for_another_candle_exits_with_the_holder_when_it_may_not_wait(
    env: Env,
) -> None:
    env.server.set_now(START + 2 * BAR)
    first = _tick(env, START + BAR, 120)
    _wait_for("the first tick holds the job lock",
              lambda: _holder(env, "tick-job.lock").get("pid") == first.pid
              and _flock_held(env.state / "tick-job.lock"), [first])
    second = _tick(env, START + 2 * BAR, 0)
    c2, o2, e2 = _finish(second)
    c1, o1, e1 = _finish(first)
    assert c1 == 0, e1
    assert c2 == 2 and o2 == "", (o2, e2)
    assert "another pairlib job holds" in e2 and "tick-job.lock" in e2
    assert f"tick by pid {first.pid} on {socket.gethostname()}" in e2
    assert "as_of 2025-02-04T04:00Z" in e2 and "Traceback" not in e2
    assert _reports(env) == [(env.tmp / o1.splitlines()[0]).resolve()]  # the refused run
    # reserved nothing
    ROWS.append(("2 `pairlib tick` for different candles, the second with `--wait 0`",
                 "one ran (ok); the other exited 2 at once: `another pairlib job holds "
                 "…tick-job.lock (tick by pid N on HOST, as_of …, started …)`",
                 "1 of 1 kept (the refused run wrote none)"))


def test_a_tick_during_reconcile_accept_waits_for_it(env: Env) -> None:
    """``reconcile --accept`` holds ``tick.lock`` while it reads the venue and writes the
    store (slowed here by venue latency); a tick started meanwhile runs after it: its
    reconciliation already sees the accepted holding, so it records no mismatch."""
    env.server.set_now(START + BAR)
    with Exchange.from_params(trading_params(env.tmp, env.server.url).venue) as ex:
        ex.create_order(HBAR, "buy", 1000.0, "manual-1")  # a position behind the store's back
    env.server.faults.latency_ms = 700
    accept = _start(env, "reconcile", "--as-of", iso(START + BAR), "--accept", HBAR,
                    "--reason", "concurrency test")
    _wait_for("the accept holds tick.lock", lambda: _flock_held(env.state / "tick.lock"),
              [accept])
    tick = _tick(env, START + BAR, 120)
    ca, oa, ea = _finish(accept)
    env.server.faults.latency_ms = 0
    ct, ot, et = _finish(tick)
    assert ca == 0, (oa, ea)
    assert "accepted" in oa
    assert ct == 0, (ot, et)
    with Store.at(env.state) as db:
        inc = db.incidents()
        assert db.accepted_positions() == {HBAR: 1000.0}
    kinds = list(inc["kind"])
    assert "operator_accept" in kinds and "reconcile_mismatch" not in kinds, inc
    assert [r["status"] for r in _tick_rows(env)] == ["ok"]
    ROWS.append(("`pairlib tick` started during `pairlib reconcile --accept`",
                 "the tick's kernel waited for `tick.lock` until the accept had committed, then "
                 "ran (ok) and saw the accepted holding (no mismatch recorded)",
                 "1 of 1 kept"))


def test_the_scheduler_and_a_manual_tick_and_a_second_scheduler_run(env: Env) -> None:
    """``pairlib schedule --once`` twice and ``pairlib tick`` for the same candle, at once:
    the tick runs once; the others wait, then find it done (``already_ran`` for the manual
    tick, which keeps its own report; nothing due for a scheduler)."""
    _record_done(env, tick=START, pairs=START, summary=START)
    env.server.set_now(START + BAR + timedelta(seconds=40))
    procs = [_start(env, "schedule", "--once", "--outputs", "out", "--wait", "120"),
             _tick(env, START + BAR, 120),
             _start(env, "schedule", "--once", "--outputs", "out", "--wait", "120")]
    done = [_finish(p) for p in procs]
    assert [c for c, _, _ in done] == [0, 0, 0], done
    assert [r["status"] for r in _tick_rows(env)] == ["ok"]  # one tick, once
    schedulers = [done[0][1], done[2][1]]
    ran_scheduled = [out for out in schedulers if out.startswith("tick 2025-02-04T04:00Z ok")]
    idle = [out for out in schedulers if out.startswith("nothing due")]
    assert len(ran_scheduled) + len(idle) == 2, schedulers
    manual = done[1][1].splitlines()
    assert manual[1].startswith(("tick ok", "tick already_ran")), manual
    assert len(ran_scheduled) + manual[1].startswith("tick ok") == 1  # exactly one ran it
    printed = [env.tmp / out.strip().rsplit(": ", 1)[1] for out in ran_scheduled]
    printed.append(env.tmp / manual[0])
    reports = _reports(env)
    assert sorted(p.resolve() for p in printed) == [p.resolve() for p in reports]
    assert all(_complete(p) for p in reports)  # each run's own report, kept
    assert json.loads((env.state / STATE_NAME).read_text())["tick"] == iso(START + BAR)
    ROWS.append(("2 `pairlib schedule --once` and 1 `pairlib tick` for the same candle at once",
                 "the tick ran once (ok); the others waited for the job lock, then found it "
                 "done (`nothing due` / `already_ran`)",
                 f"{len(reports)} of {len(reports)} kept"))


def test_a_second_scheduler_exits_naming_the_first(env: Env) -> None:
    _record_done(env, tick=START + BAR, pairs=START, summary=START)
    env.server.set_now(START + BAR + timedelta(seconds=40))  # nothing due
    first = _start(env, "schedule", "--outputs", "out")
    try:
        _wait_for("the first scheduler holds scheduler.lock",
                  lambda: _holder(env, "scheduler.lock").get("pid") == first.pid
                  and _flock_held(env.state / "scheduler.lock"), [first])
        c2, o2, e2 = _finish(_start(env, "schedule", "--outputs", "out"))
    finally:
        first.send_signal(signal.SIGTERM)
    c1, _, e1 = _finish(first)
    assert c2 == 2, (o2, e2)
    assert "another pairlib scheduler holds" in e2 and "scheduler.lock" in e2
    assert f"scheduler by pid {first.pid} on {socket.gethostname()}" in e2
    assert c1 == 0 and "scheduler stopped" in e1, e1
    assert _reports(env) == []
    ROWS.append(("2 `pairlib schedule` daemons on one state folder",
                 "the second exited 2 at once: `another pairlib scheduler holds "
                 "…scheduler.lock (scheduler by pid N on HOST, started …)`; the first "
                 "ran on and stopped cleanly on SIGTERM", "no job was due: none"))


def test_zz_write_the_summary(request: pytest.FixtureRequest) -> None:
    """Write the scenarios into ``docs/RELIABILITY.md`` when all of them ran in this session
    (not for a selection such as ``-k``)."""
    if why := selected(request.config):
        pytest.skip(f"a selection ({why}): the summary of the last whole run is kept")
    if len(ROWS) < 5:
        pytest.skip(f"only {len(ROWS)} of the 5 scenarios ran: the summary is not rewritten")
    assert len({s for s, _, _ in ROWS}) == 5, ROWS
    table = ["| scenario | outcome | reports |", "|---|---|---|"]
    table += [f"| {s} | {o} | {r} |" for s, o, r in ROWS]
    write_section("concurrency", "## Concurrency\n\nReal `pairlib` processes against the "
                  "simulator on 127.0.0.1 (`tests/test_concurrency.py`). One job runs at a "
                  "time per state folder (`tick-job.lock`, held by the job and its kernel); "
                  "the others wait (`--wait`) or exit 2 naming the holder.\n\n"
                  + "\n".join(table))
