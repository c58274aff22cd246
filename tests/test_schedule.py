"""``pairlib schedule``: UTC run times from the params tree (pure, and agreeing with the
APScheduler triggers), what one wake-up runs at a settable time (late runs coalesced, pair
generation before that bar's tick, a manual run not repeated, a held job lock named and
waited out), real notebooks (a missed tick acts on exits only; a failing tick is kept with its
error banner, notified, and the next tick still runs), and a real ``pairlib schedule`` process
stopped by SIGTERM after its running job."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from tick_fixtures import BAR, START, signal_when, trading_params, unthrottle

from pairlib.app import jobs
from pairlib.app.jobs import JOB_LOCK_NAME, tick_job_lock
from pairlib.app.runner import RunResult
from pairlib.app.schedule import (
    STATE_NAME,
    Scheduler,
    due_times,
    next_runs,
    triggers,
)
from pairlib.clock import SettableClock, iso
from pairlib.config import TIMEFRAMES, validate_params
from pairlib.edges.store import Store
from pairlib.errors import JobLocked
from pairlib.sim import Market, SimServer


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _params(**sections: Any) -> Any:
    return validate_params(sections)


# ------------------------------------------------------------------ pure timing


def test_next_runs_are_the_candle_closes_plus_the_delay_in_utc() -> None:
    p = _params()  # 4h candles, 30 s delay, pairs on day 1
    assert next_runs(p, _utc("2025-02-04T03:00:00Z")) == {
        "tick": _utc("2025-02-04T04:00:30Z"), "pairs": _utc("2025-03-01T00:00:30Z")}
    # strictly after now: at a run time, the next one
    assert next_runs(p, _utc("2025-02-04T04:00:30Z"))["tick"] == _utc("2025-02-04T08:00:30Z")
    assert next_runs(p, _utc("2025-02-04T04:00:29Z"))["tick"] == _utc("2025-02-04T04:00:30Z")
    assert next_runs(p, _utc("2025-03-01T00:00:29Z"))["pairs"] == _utc("2025-03-01T00:00:30Z")
    assert next_runs(p, _utc("2025-03-01T00:00:30Z"))["pairs"] == _utc("2025-04-01T00:00:30Z")
    assert next_runs(p, _utc("2025-12-31T23:00:00Z"))["pairs"] == _utc("2026-01-01T00:00:30Z")
    q = _params(schedule={"tick_delay_seconds": 90, "pairs_day": 15}, data={"timeframe": "1h"})
    assert next_runs(q, _utc("2025-02-04T03:01:00Z")) == {
        "tick": _utc("2025-02-04T03:01:30Z"), "pairs": _utc("2025-02-15T00:01:30Z")}
    assert due_times(q, _utc("2025-02-15T00:01:29Z"))["pairs"] == _utc("2025-01-15T00:00Z")
    assert due_times(q, _utc("2025-02-15T00:01:30Z"))["pairs"] == _utc("2025-02-15T00:00Z")


@pytest.mark.parametrize("timeframe", [tf for tf, ms in TIMEFRAMES.items() if ms >= 60_000])
@pytest.mark.parametrize("delay", [0, 30, 90, 3600])
def test_the_triggers_fire_when_next_runs_says(timeframe: str, delay: int) -> None:
    """The APScheduler triggers that wake the scheduler and the pure :func:`next_runs` (what
    ``pairlib status`` shows) agree for every timeframe, including across the 2025 daylight
    saving changes in Europe and the US (UTC throughout, so nothing moves)."""
    p = _params(data={"timeframe": timeframe}, schedule={"tick_delay_seconds": delay})
    trig = triggers(p)
    rng = random.Random(f"{timeframe}-{delay}")
    nows = [_utc("2025-03-09T01:00:00Z"), _utc("2025-03-30T00:59:59Z"),
            _utc("2025-10-26T00:30:00Z"), _utc("2025-11-02T05:59:59Z")]
    nows += [_utc("2025-01-01T00:00:00Z") + timedelta(seconds=rng.uniform(0, 3e7))
             for _ in range(25)]
    for now in nows:
        now = now.replace(microsecond=123_456)  # never exactly on a run time
        nxt = next_runs(p, now)
        assert trig["tick"].get_next_fire_time(None, now) == nxt["tick"], (timeframe, now)
        if TIMEFRAMES[timeframe] <= 86_400_000:
            assert trig["pairs"].get_next_fire_time(None, now) == nxt["pairs"], now
    start = _utc("2025-03-29T00:00:00Z")  # the Europe switch lies inside these two days
    fires = [start]
    for _ in range(12):
        fires.append(next_runs(p, fires[-1])["tick"])
    step = timedelta(milliseconds=TIMEFRAMES[timeframe])
    assert all(b - a == step for a, b in zip(fires[1:], fires[2:], strict=False))


def test_a_fractional_delay_wakes_at_the_next_whole_second() -> None:
    p = _params(schedule={"tick_delay_seconds": 30.25})
    now = _utc("2025-02-04T03:00:00Z")
    assert next_runs(p, now)["tick"] == _utc("2025-02-04T04:00:30.250Z")
    assert triggers(p)["tick"].get_next_fire_time(None, now) == _utc("2025-02-04T04:00:31Z")


# ------------------------------------------------------------------ one wake-up, no kernel


class Notebooks:
    """Stands in for papermill in the jobs (``jobs.run_notebook``): records which notebook
    ran for which ``as_of``, with which inherited lock and who the lock's holder file named;
    a tick glues ``status`` ``ok``."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.calls: list[dict[str, Any]] = []

    def __call__(self, notebook: Path, output: Path, parameters: Mapping[str, Any],
                 cwd: Path | None = None, timeout_s: int = 1800, kernel: str = "pairlib",
                 kernel_fds: Sequence[int] = ()) -> RunResult:
        holder = json.loads((self.state / (JOB_LOCK_NAME + ".holder.json")).read_text())
        self.calls.append({"notebook": Path(notebook).stem, "as_of": parameters["as_of"],
                           "fds": tuple(kernel_fds), "holder": holder["job"],
                           "timeout_s": timeout_s})
        Path(output).write_text("{}")
        scraps = {"status": "ok", "mode": "normal"} if "tick" in Path(notebook).stem else {}
        return RunResult(Path(output), True, 0.1, None, scraps)

    def ran(self) -> list[tuple[str, str]]:
        return [(c["notebook"], c["as_of"][:16]) for c in self.calls]


@pytest.fixture
def quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Notebooks,
                                                                        list[dict[str, Any]]]]:
    """A params file on the in-process simulator (nothing is contacted: the notebooks are
    recorded), the recorder, and the after-job calls."""
    monkeypatch.chdir(tmp_path)
    params = trading_params(tmp_path, None, schedule={"job_timeout_seconds": 77})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    book = Notebooks(params.state_dir)
    monkeypatch.setattr(jobs, "run_notebook", book)
    after: list[dict[str, Any]] = []
    monkeypatch.setattr(jobs, "after_job", lambda params, **kw: after.append(kw))
    yield path, book, after


def test_a_late_wake_up_runs_each_job_once_for_its_latest_due_time(
    quiet: tuple[Path, Notebooks, list[dict[str, Any]]],
) -> None:
    path, book, after = quiet
    clock = SettableClock(START + timedelta(seconds=30))  # 2025-02-04T00:00:30Z
    s = Scheduler(path, outputs="out", clock=clock)
    first = s.run_due()
    # first start: this month's pair generation (as of Feb 1st), then the bar's tick
    assert book.ran() == [("generate_pairs", "2025-02-01T00:00"), ("tick", "2025-02-04T00:00")]
    assert [r.job for r in first] == ["pairs", "tick", "summary"]
    assert all(c["timeout_s"] == 77 for c in book.calls)  # schedule.job_timeout_seconds
    assert s.run_due() == [] and len(book.calls) == 2  # nothing twice
    clock.set(START + 3 * BAR + timedelta(seconds=10))  # down across the 04:00 and 08:00 closes
    late = s.run_due()
    assert [(r.job, r.as_of) for r in late] == [("tick", START + 2 * BAR)]  # coalesced: once
    assert book.ran()[-1] == ("tick", "2025-02-04T08:00")
    clock.set(START + 3 * BAR + timedelta(seconds=30))
    assert [(r.job, r.as_of) for r in s.run_due()] == [("tick", START + 3 * BAR)]
    assert len(book.calls) == 4
    state = json.loads((s.state_dir / STATE_NAME).read_text())
    assert state["tick"] == "2025-02-04T12:00:00Z" and state["pairs"] == "2025-02-01T00:00:00Z"
    # the after-job steps ran once per notebook job, after the lock was released
    assert [(a["job"], a["status"]) for a in after] == [("pairs", "ok"), ("tick", "ok"),
                                                       ("tick", "ok"), ("tick", "ok")]
    # a restarted scheduler (new process, same state folder) does not repeat anything
    assert Scheduler(path, outputs="out", clock=clock).run_due() == []


def test_pair_generation_runs_before_that_bars_tick_under_one_lock_hold(
    quiet: tuple[Path, Notebooks, list[dict[str, Any]]],
) -> None:
    path, book, _ = quiet
    clock = SettableClock(_utc("2025-02-28T20:00:30Z"))
    s = Scheduler(path, outputs="out", clock=clock)
    s.run_due()
    book.calls.clear()
    clock.set(_utc("2025-03-01T00:00:30Z"))
    runs = s.run_due()
    assert [(r.job, r.as_of) for r in runs][:2] == [("pairs", _utc("2025-03-01T00:00Z")),
                                                    ("tick", _utc("2025-03-01T00:00Z"))]
    assert book.ran() == [("generate_pairs", "2025-03-01T00:00"), ("tick", "2025-03-01T00:00")]
    pairs_call, tick_call = book.calls
    assert pairs_call["fds"] == tick_call["fds"] and len(pairs_call["fds"]) == 1
    assert pairs_call["holder"] == tick_call["holder"] == "schedule: pairs+tick+summary"


def test_a_tick_the_store_has_ok_is_not_run_again(
    quiet: tuple[Path, Notebooks, list[dict[str, Any]]],
) -> None:
    """A manual ``pairlib tick`` ran the bar: the scheduler records it and runs nothing."""
    path, book, _ = quiet
    clock = SettableClock(START + timedelta(seconds=30))
    s = Scheduler(path, outputs="out", clock=clock)
    with Store.at(s.state_dir) as db:
        db.start_tick(START, START, "normal", None, "manual.ipynb")
        db.finish_tick(START, "ok", START, 0.5, mode="normal", notebook_path="manual.ipynb")
    runs = s.run_due()
    assert ("tick", "2025-02-04T00:00") not in book.ran()
    assert "tick" not in [r.job for r in runs]
    assert json.loads((s.state_dir / STATE_NAME).read_text())["tick"] == iso(START)


def test_a_held_job_lock_is_named_and_the_jobs_run_once_it_is_free(
    quiet: tuple[Path, Notebooks, list[dict[str, Any]]],
) -> None:
    path, book, _ = quiet
    clock = SettableClock(START + timedelta(seconds=30))
    s = Scheduler(path, outputs="out", clock=clock, lock_wait_s=0.3)
    with tick_job_lock(s.state_dir, START - BAR, job="tick"), pytest.raises(JobLocked) as err:
        s.run_due()
    text = str(err.value)
    assert f"tick by pid {os.getpid()} on {socket.gethostname()}" in text
    assert "as_of 2025-02-03T20:00Z" in text and "started 20" in text
    assert "tick-job.lock" in text and "waited 0 s" in text
    assert book.calls == []  # nothing ran beside the holder
    assert [r.job for r in s.run_due()] == ["pairs", "tick", "summary"]  # still due


def test_a_refused_job_is_reported_and_the_scheduler_goes_on(
    quiet: tuple[Path, Notebooks, list[dict[str, Any]]],
) -> None:
    """The params file turned bad after the scheduler started: each job is ``refused`` with
    the reason, notified through the after-job step, and the scheduler keeps running."""
    path, book, after = quiet
    clock = SettableClock(START + timedelta(seconds=30))
    s = Scheduler(path, outputs="out", clock=clock)
    path.write_text(path.read_text().replace("lookback:", "lookbak:"))
    runs = s.run_due()
    assert [(r.job, r.status) for r in runs][:2] == [("pairs", "refused"), ("tick", "refused")]
    assert "lookbak" in str(runs[1].message)
    assert book.calls == []
    assert ("tick", "refused") in [(a["job"], a["status"]) for a in after]


# ------------------------------------------------------------------ real notebooks


def _write_params(tmp: Path, url: str | None, **schedule: Any) -> Path:
    params = trading_params(tmp, url, schedule=schedule)
    path = tmp / "p.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return path


def _record_done(state_dir: Path, **jobs_done: datetime) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_NAME).write_text(json.dumps({k: iso(v) for k, v in jobs_done.items()}))


@pytest.fixture
def indexed(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The outputs folders the report index was asked to update (the index itself, which
    renders every report, is tested with the report site)."""
    from pairlib.report import site

    calls: list[Path] = []
    monkeypatch.setattr(site, "build_site", lambda outputs: calls.append(outputs))
    return calls


@pytest.fixture
def sim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimServer]:
    unthrottle(monkeypatch)
    monkeypatch.chdir(tmp_path)
    server = SimServer(Market(), tmp_path / "sim_state.json", now=START, weight_limit=10**9)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
def test_a_tick_more_than_one_bar_late_acts_on_exits_only(tmp_path: Path, sim: SimServer,
                                                          indexed: list[Path]) -> None:
    """Against a running simulator the scheduler's present is the simulator's clock: down
    across two closes, it runs one tick (the 08:00 bar) at 12:00:10, which the tick itself
    sees as missed (exits only); the 12:00 tick at 12:00:30 is a normal one."""
    path = _write_params(tmp_path, sim.url)
    s = Scheduler(path, outputs="out")  # default clock: the simulator's
    _record_done(s.state_dir, tick=START, pairs=START, summary=START)
    sim.set_now(START + 3 * BAR + timedelta(seconds=10))
    (late,) = s.run_due()
    assert (late.job, late.as_of, late.status) == ("tick", START + 2 * BAR, "ok")
    assert "missed tick" in str(late.message), late
    sim.set_now(START + 3 * BAR + timedelta(seconds=30))
    (on_time,) = s.run_due()
    assert (on_time.job, on_time.as_of, on_time.status) == ("tick", START + 3 * BAR, "ok")
    assert "missed" not in str(on_time.message)
    assert [p.resolve() for p in indexed] == [(tmp_path / "out").resolve()] * 2  # the index
    with Store.at(s.state_dir) as db:
        assert [r["as_of"] for r in db.ticks().to_dict("records")] == [
            iso(START + 2 * BAR), iso(START + 3 * BAR)]  # 04:00 was never run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_failing_tick_is_kept_notified_and_the_next_tick_still_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, indexed: list[Path]
) -> None:
    unthrottle(monkeypatch)
    monkeypatch.chdir(tmp_path)
    port = _free_port()  # nothing listens there yet: the venue is down
    path = _write_params(tmp_path, f"http://127.0.0.1:{port}")
    clock = SettableClock(START + timedelta(seconds=30))
    s = Scheduler(path, outputs="out", clock=clock)
    _record_done(s.state_dir, tick=START - BAR, pairs=START, summary=START)
    (failed,) = s.run_due()
    assert (failed.job, failed.status) == ("tick", "failed"), failed
    assert failed.report is not None and failed.report.is_file()
    banner = json.loads(failed.report.read_text())["cells"][0]
    assert "papermill-error-cell-tag" in banner["metadata"].get("tags", [])  # error banner
    with Store.at(s.state_dir) as db:
        (note,) = [r for r in db.outbox() if r.kind == "job_failed"]
    assert note.title == "tick failed" and note.report == str(failed.report)
    assert "cannot read the simulator's clock" in note.body

    server = SimServer(Market(), tmp_path / "sim_state.json", now=START + BAR + timedelta(
        seconds=30), port=port, weight_limit=10**9)
    server.start()
    try:
        clock.set(START + BAR + timedelta(seconds=30))
        (nxt,) = s.run_due()
    finally:
        server.stop()
    assert (nxt.job, nxt.as_of, nxt.status) == ("tick", START + BAR, "ok"), nxt
    assert nxt.report is not None and nxt.report != failed.report
    assert failed.report.is_file()  # the failed report is still there


@pytest.mark.slow
def test_sigterm_stops_a_real_scheduler_after_its_running_job(tmp_path: Path,
                                                              sim: SimServer) -> None:
    path = _write_params(tmp_path, sim.url, heartbeat_seconds=0.2)
    state = tmp_path / "state"
    _record_done(state, tick=START, pairs=START, summary=START)
    sim.set_now(START + BAR + timedelta(seconds=30))  # the 04:00 tick is due
    log_file = state / "scheduler.log"
    proc = subprocess.Popen([sys.executable, "-m", "pairlib", "schedule", "--params",
                             str(path), "--outputs", "out"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = signal_when(
        proc, lambda: "running tick for" in (log_file.read_text() if log_file.exists() else ""),
        signal.SIGTERM, waiting_for="the scheduler starting the tick", within_s=60)
    text = log_file.read_text()
    assert proc.returncode == 0, err.decode()
    assert "received SIGTERM: stopping after the running tick job" in text
    assert "tick 2025-02-04T04:00Z ok" in text  # the running job finished ...
    assert text.rstrip().splitlines()[-1].endswith(f"scheduler stopped (pid {proc.pid})")
    with Store.at(state) as db:
        row = db.tick_row(START + BAR)
    assert row is not None and row.status == "ok"  # ... and recorded its outcome
    assert json.loads((state / STATE_NAME).read_text())["tick"] == iso(START + BAR)
