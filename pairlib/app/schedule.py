"""``pairlib schedule``: the tick at every candle close, pair generation once a month, the
daily summary, on APScheduler 3 with UTC triggers from the params tree.

What runs when (all UTC, so daylight saving time never moves anything):

* **tick**: at every close of a ``data.timeframe`` candle plus ``schedule.tick_delay_seconds``
  (``00:00:30``, ``04:00:30``, ... for 4h candles), for the candle that closed;
* **pairs**: on day ``schedule.pairs_day`` of each month, at that day's first candle close plus
  the same delay, run *before* that bar's tick in the same job sequence (the order the
  backtest assumes: the new pair set is traded from that bar on);
* **summary**: the daily summary (:func:`pairlib.app.notify.enqueue_daily_summary`) at
  ``notify.daily_summary_hour`` plus the delay, after that hour's tick.

The triggers only wake the main loop; what runs is decided by :meth:`Scheduler.run_due` from
the clock, so a wake-up that comes late (the machine slept, the process restarted,
APScheduler's wait overshot after a suspend) runs each job once, for the latest time it was
due (coalesced), and a heartbeat every ``schedule.heartbeat_seconds`` re-reads the clock and
runs whatever is due. A tick run more than one bar late is a missed tick and acts on exits
only: the tick itself decides that from its venue's clock (:mod:`pairlib.engine.tick`).

Each job runs at most once per due time: the scheduler records what it ran in
``<state_dir>/scheduler-state.json`` (written under the job lock), and skips a tick the store
already has ``ok`` or a pair generation the store already has a pair set for (a manual run did
it). A job that failed is not retried until its next due time; it is notified.

Locks: every job sequence holds the job lock ``<state_dir>/tick-job.lock``
(:func:`pairlib.app.jobs.tick_job_lock`), the lock ``pairlib tick`` and ``pairlib pairs`` take
too, so a scheduled and a manual job never run at the same time; the one that has to wait says
who holds the lock. A running scheduler also holds ``<state_dir>/scheduler.lock`` for its
lifetime, so a second scheduler of the same state folder exits at once naming the first.

SIGTERM and SIGINT stop the scheduler after the job that is running (the kernel runs in a
session of its own, so a Ctrl-C in the terminal does not reach it). Everything is logged to
``schedule.log_file`` (rotating) and to stderr.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pairlib.clock import Clock, SystemClock, iso, last_close, parse_time
from pairlib.config import (
    PARAMS_FILE,
    Params,
    VenueParams,
    load_params,
    project_path,
    timeframe_ms,
)
from pairlib.errors import JobLocked, PairlibError

__all__ = [
    "JOBS",
    "SCHEDULER_LOCK_NAME",
    "STATE_NAME",
    "JobRun",
    "Scheduler",
    "SimulatorClock",
    "due_times",
    "log_to_file",
    "next_runs",
    "scheduler_clock",
    "triggers",
]

log = logging.getLogger(__name__)

JOBS: tuple[str, ...] = ("pairs", "tick", "summary")
"""The scheduled jobs, in the order one wake-up runs them (pairs before that bar's tick)."""
STATE_NAME = "scheduler-state.json"
"""In ``state_dir``: the due time each job last ran for (``{"tick": "...Z", ...}``)."""
SCHEDULER_LOCK_NAME = "scheduler.lock"
"""In ``state_dir``: held by a running ``pairlib schedule`` for its whole life."""
_LOG_BYTES = 5_000_000
_LOG_BACKUPS = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- pure timing


def _step(params: Params) -> timedelta:
    return timedelta(milliseconds=timeframe_ms(params.data.timeframe))


def _delay(params: Params) -> timedelta:
    return timedelta(seconds=params.schedule.tick_delay_seconds)


def _pairs_as_of(params: Params, year: int, month: int) -> datetime:
    """The candle close pair generation acts on in that month: the last close at or before
    day ``schedule.pairs_day`` 00:00 UTC (that day's first bar for candles of a day or less)."""
    return last_close(datetime(year, month, params.schedule.pairs_day, tzinfo=UTC),
                      params.data.timeframe)


def _month_shift(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


def _latest_pairs(params: Params, t: datetime) -> tuple[datetime, int, int]:
    """The latest pair-generation ``as_of`` at or before ``t``, with its month."""
    year, month = t.year, t.month
    when = _pairs_as_of(params, year, month)
    if when > t:
        year, month = _month_shift(year, month, -1)
        when = _pairs_as_of(params, year, month)
    return when, year, month


def due_times(params: Params, now: datetime) -> dict[str, datetime]:
    """For each job, the latest time it was due at ``now``: what it acts on.

    Parameters
    ----------
    params : Params
        ``data.timeframe``, the ``schedule`` section and ``notify.daily_summary_hour``.
    now : datetime
        The present (aware).

    Returns
    -------
    dict
        ``tick``: the close of the last candle whose tick time (close + delay) has passed;
        ``pairs``: the candle close of the last pair generation whose time has passed;
        ``summary``: the last ``daily_summary_hour`` (whole hour, UTC) whose time (+ delay)
        has passed. A job runs at its due time plus ``schedule.tick_delay_seconds``.
    """
    t = parse_time(now) - _delay(params)
    summary = t.replace(hour=params.notify.daily_summary_hour, minute=0, second=0,
                        microsecond=0)
    if summary > t:
        summary -= timedelta(days=1)
    return {
        "tick": last_close(t, params.data.timeframe),
        "pairs": _latest_pairs(params, t)[0],
        "summary": summary,
    }


def next_runs(params: Params, now: datetime) -> dict[str, datetime]:
    """When the scheduler next runs each job: the first run time strictly after ``now``.

    A pure function of the params and ``now`` (``pairlib status`` shows it).

    Parameters
    ----------
    params : Params
        ``data.timeframe`` and the ``schedule`` section.
    now : datetime
        The present (aware).

    Returns
    -------
    dict
        ``tick``: the next candle close plus ``schedule.tick_delay_seconds``; ``pairs``: the
        next pair generation (day ``schedule.pairs_day``, that day's first candle close plus
        the delay; it runs just before that bar's tick).
    """
    delay = _delay(params)
    t = parse_time(now) - delay
    _, year, month = _latest_pairs(params, t)
    year, month = _month_shift(year, month, 1)
    return {
        "tick": last_close(t, params.data.timeframe) + _step(params) + delay,
        "pairs": _pairs_as_of(params, year, month) + delay,
    }


def triggers(params: Params) -> dict[str, Any]:
    """The APScheduler triggers that wake the scheduler, by job (UTC).

    ``tick``: a :class:`~apscheduler.triggers.cron.CronTrigger` at every candle close plus the
    delay (rounded up to a whole second) for timeframes that divide a day (``1m`` ... ``1d``);
    an :class:`~apscheduler.triggers.interval.IntervalTrigger` aligned on the epoch for longer
    ones (candles are multiples of the timeframe since 1970-01-01, as
    :func:`pairlib.clock.last_close` counts them). ``pairs``: a CronTrigger on day
    ``schedule.pairs_day`` at the delay past midnight. ``summary``: a CronTrigger at
    ``notify.daily_summary_hour`` plus the delay. They only wake the loop: what runs is
    decided by :func:`due_times`.
    """
    from apscheduler.triggers.cron import CronTrigger

    offset = math.ceil(params.schedule.tick_delay_seconds)
    hour_of_day = (params.notify.daily_summary_hour + offset // 3600) % 24
    return {
        "tick": _every(timeframe_ms(params.data.timeframe) // 1000, offset),
        "pairs": CronTrigger(day=params.schedule.pairs_day, hour=offset // 3600,
                             minute=(offset % 3600) // 60, second=offset % 60, timezone=UTC),
        "summary": CronTrigger(hour=hour_of_day, minute=(offset % 3600) // 60,
                               second=offset % 60, timezone=UTC),
    }


def _every(step_s: int, offset_s: int) -> Any:
    """A trigger firing at every multiple of ``step_s`` since the epoch plus ``offset_s``."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    o = offset_s % step_s
    if step_s <= 86_400 and 86_400 % step_s == 0:
        if step_s % 3600 == 0:
            k = step_s // 3600
            hours = str(o // 3600) if k == 24 else f"{o // 3600}-23/{k}"
            return CronTrigger(hour=hours, minute=(o % 3600) // 60,
                               second=o % 60, timezone=UTC)
        if 3600 % step_s == 0 and step_s % 60 == 0:
            k = step_s // 60
            return CronTrigger(minute=f"{o // 60}-59/{k}", second=o % 60, timezone=UTC)
    return IntervalTrigger(seconds=step_s, start_date=_EPOCH + timedelta(seconds=o),
                           timezone=UTC)


# ----------------------------------------------------------------------------- clocks


class SimulatorClock:
    """The present of a running simulator (``venue.sim_url``): ``GET /sim/clock`` on every
    call, so a scheduler against a simulator is on time, or late, exactly as the tick sees it.

    Parameters
    ----------
    venue : VenueParams
        A ``sim`` venue with ``sim_url``.
    """

    def __init__(self, venue: VenueParams) -> None:
        self.venue = venue

    def now(self) -> datetime:
        """The simulator's clock.

        Raises
        ------
        ExchangeUnavailable
            The simulator's clock cannot be read.
        """
        from pairlib.venue.open import simulator_now

        return simulator_now(self.venue)


def scheduler_clock(params: Params) -> Clock:
    """The scheduler's present: a running simulator's clock for ``venue.sim_url`` (the
    simulator's time is only ever set), else the wall clock."""
    if params.venue.kind == "sim" and params.venue.sim_url is not None:
        return SimulatorClock(params.venue)
    return SystemClock()


# ----------------------------------------------------------------------------- the scheduler


@dataclass(frozen=True)
class JobRun:
    """One job the scheduler ran.

    Attributes
    ----------
    job : str
        ``pairs``, ``tick`` or ``summary``.
    as_of : datetime
        The due time it ran for (a candle close; the summary's day end).
    status : str
        The tick's status; ``ok``/``failed`` for pair generation and the summary;
        ``refused`` when the job was refused before its notebook started (bad params, the
        live guard).
    message : str or None
        The error or exposure line, or the tick's mode when it was not normal.
    report : Path or None
        The executed notebook (kept when the run failed).
    duration_s : float
        Wall time of the run.
    """

    job: str
    as_of: datetime
    status: str
    message: str | None = None
    report: Path | None = None
    duration_s: float = 0.0

    def line(self) -> str:
        """``tick 2025-02-04T08:00Z ok (exits_only: missed tick) in 5.1 s: <report>``."""
        what = f" ({self.message})" if self.message else ""
        where = f": {self.report}" if self.report is not None else ""
        return (f"{self.job} {self.as_of:%Y-%m-%dT%H:%MZ} {self.status}{what} in "
                f"{self.duration_s:.1f} s{where}")


_GOOD = ("ok", "already_ran")


class Scheduler:
    """Runs the due jobs of one params file: :meth:`run_due` once, or :meth:`serve` until
    SIGTERM/SIGINT.

    Parameters
    ----------
    params_file : path
        The params file; validated here. The jobs re-read it when they run.
    outputs : path
        Folder for executed notebooks (a relative one is relative to the project root).
    clock : Clock, optional
        The present; default :func:`scheduler_clock`. Tests pass a
        :class:`~pairlib.clock.SettableClock`.
    live : bool
        ``--live``: passed to the tick (the live guard still applies).
    lock_wait_s : float
        How long one :meth:`run_due` waits for a job lock held by another process.
    """

    def __init__(
        self,
        params_file: str | Path = PARAMS_FILE,
        *,
        outputs: str | Path = "outputs",
        clock: Clock | None = None,
        live: bool = False,
        lock_wait_s: float = 1.0,
    ) -> None:
        self.params_file = Path(params_file)
        self.params = load_params(params_file)
        self.outputs = outputs
        self.clock = clock or scheduler_clock(self.params)
        self.live = live
        self.lock_wait_s = lock_wait_s
        self.state_dir = Path(self.params.state_dir)
        self.state_file = self.state_dir / STATE_NAME
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._running: str | None = None
        self._last_wait: str | None = None

    # -- what is due

    def run_due(self) -> list[JobRun]:
        """Run every job due at the clock's present that has not run for its due time, in
        the order pairs, tick, summary, under one hold of the job lock; then, with the lock
        released, the after-job steps (:func:`pairlib.app.jobs.after_job`: notifications,
        the report index).

        Returns
        -------
        list of JobRun
            What ran (empty when nothing was due, or the present could not be read).

        Raises
        ------
        JobLocked
            Jobs are due and another process held the job lock for ``lock_wait_s``; the
            message names the holder. They stay due.
        """
        from pairlib.app.jobs import tick_job_lock

        try:
            now = self.clock.now()
        except PairlibError as e:  # a simulator whose clock cannot be read
            log.warning("cannot read the clock: %s; trying again at the next heartbeat", e)
            return []
        due = due_times(self.params, now)
        state = self._read_state()
        todo = [job for job in JOBS if not _recorded(state, job, due[job])]
        if not todo or self._stopping.is_set():
            return []
        runs: list[JobRun] = []
        with tick_job_lock(self.state_dir, due["tick"], self.lock_wait_s,
                           job="schedule: " + "+".join(todo)) as fd:
            self._last_wait = None
            state = self._read_state()  # another process may have run them meanwhile
            for job in JOBS:
                if self._stopping.is_set():
                    break
                when = due[job]
                if _recorded(state, job, when):
                    continue
                if self._done_in_store(job, when):
                    log.info("%s %s already done (the store has it): skipped", job, iso(when))
                else:
                    runs.append(self._run(job, when, now, fd))
                state[job] = iso(when)
                self._write_state(state)
        for run in runs:
            self._after(run)
        return runs

    def _run(self, job: str, when: datetime, now: datetime, fd: int) -> JobRun:
        """Run one job for ``when`` under the held job lock ``fd``; never raises."""
        from pairlib.app import jobs

        late = (last_close(now, self.params.data.timeframe) - when) // _step(self.params)
        if job == "tick" and late > 0:
            log.info("tick %s runs %d bar(s) late (now %s): a missed tick acts on exits only",
                     iso(when), late, iso(now))
        log.info("running %s for %s", job, iso(when))
        self._running = job
        t0 = time.perf_counter()
        try:
            if job == "tick":
                r = jobs.run_tick_job(self.params_file, when, self.outputs, live=self.live,
                                      clock=self.clock, lock_timeout_s=0, job_lock=fd,
                                      after=False)
                mode = r.scraps.get("mode")
                message = r.message or (r.error if r.status not in _GOOD else None)
                if message is None and isinstance(mode, str) and mode != "normal":
                    message = mode
                run = JobRun(job, when, r.status, message, r.path, r.duration_s)
            elif job == "pairs":
                p = jobs.run_pairs_job(self.params_file, when, self.outputs, self.clock,
                                       lock_timeout_s=0, job_lock=fd, after=False)
                run = JobRun(job, when, "ok" if p.ok else "failed", p.error, p.path,
                             p.duration_s)
            else:
                from pairlib.app.notify import enqueue_daily_summary

                enqueue_daily_summary(self.params, when)
                run = JobRun(job, when, "ok", None, None, time.perf_counter() - t0)
        except PairlibError as e:  # refused before its notebook: params, live guard
            run = JobRun(job, when, "refused", f"{type(e).__name__}: {e}", None,
                         time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - one failed job never stops the scheduler
            log.exception("%s %s raised", job, iso(when))
            run = JobRun(job, when, "failed", f"{type(e).__name__}: {e}", None,
                         time.perf_counter() - t0)
        finally:
            self._running = None
        level = logging.INFO if run.status in _GOOD else logging.ERROR
        log.log(level, "%s", run.line())
        return run

    def _after(self, run: JobRun) -> None:
        """Notifications and the report index after a job (never raises)."""
        from pairlib.app.jobs import after_job

        if run.job == "summary":
            try:
                from pairlib.app.notify import deliver_pending

                deliver_pending(self.params)
            except Exception as e:  # noqa: BLE001 - delivery never stops the scheduler
                log.warning("delivering notifications failed: %s", type(e).__name__)
            return
        after_job(self.params, job=run.job, status=run.status, message=run.message,
                  report=run.report, outputs=project_path(self.outputs))

    def _done_in_store(self, job: str, when: datetime) -> bool:
        """Whether the store already has ``job`` for ``when``: an ``ok`` tick, or a pair set
        generated at or after ``when`` (a manual run did it)."""
        if job == "summary":
            return False
        import sqlite3

        from pairlib.edges.store import DB_NAME, Store

        if not (self.state_dir / DB_NAME).exists():
            return False
        try:
            with Store.at(self.state_dir) as db:
                if job == "tick":
                    row = db.tick_row(when)
                    return row is not None and row.status == "ok"
                latest = db.latest_pair_set()
                return latest is not None and parse_time(latest.as_of) >= when
        except (PairlibError, sqlite3.Error) as e:
            log.warning("cannot read the store (%s): running %s %s", e, job, iso(when))
            return False

    # -- state

    def _read_state(self) -> dict[str, str]:
        try:
            raw = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable %s (%s): due jobs run again", self.state_file, e)
            return {}
        return {k: str(v) for k, v in raw.items() if k in JOBS} if isinstance(raw, dict) \
            else {}

    def _write_state(self, state: dict[str, str]) -> None:
        tmp = self.state_file.with_name(f"{self.state_file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    # -- the main loop

    def request_stop(self, why: str = "asked to stop") -> None:
        """Stop after the running job (from a signal handler or another thread)."""
        if self._stopping.is_set():
            log.info("%s: already stopping", why)
        elif self._running is not None:
            log.info("%s: stopping after the running %s job", why, self._running)
        else:
            log.info("%s: stopping", why)
        self._stopping.set()
        self._wake.set()

    def serve(self) -> int:
        """Run until SIGTERM or SIGINT: the jobs at their times, what is due at start and at
        every heartbeat. Returns 0 after a requested stop.

        Raises
        ------
        JobLocked
            Another scheduler of the same ``state_dir`` is running (named).
        LiveTradingRefused
            A live venue without ``live`` or its keys.
        """
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.interval import IntervalTrigger

        from pairlib.app.jobs import exclusive_lock
        from pairlib.config import load_secrets
        from pairlib.venue.open import check_live

        check_live(self.params.venue, self.live, load_secrets())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        info = {"job": "scheduler", "params": str(self.params_file)}
        with exclusive_lock(self.state_dir / SCHEDULER_LOCK_NAME, info, 0,
                            what="pairlib scheduler"), log_to_file(self.params), \
                _signals(self.request_stop):
            aps = BackgroundScheduler(timezone=UTC, job_defaults={
                "coalesce": True, "max_instances": 1, "misfire_grace_time": None})
            heartbeat = self.params.schedule.heartbeat_seconds
            wakers = {**triggers(self.params),
                      "heartbeat": IntervalTrigger(seconds=heartbeat, timezone=UTC)}
            for name, trigger in wakers.items():
                aps.add_job(self._wake.set, trigger, id=name, name=name)
            aps.start()
            try:
                nxt = next_runs(self.params, self.clock.now())
                log.info("scheduler started (pid %d): next tick %s, next pair generation %s; "
                         "heartbeat every %g s; log %s", os.getpid(), iso(nxt["tick"]),
                         iso(nxt["pairs"]), heartbeat, self.params.schedule.log_file)
            except PairlibError as e:
                log.warning("scheduler started (pid %d); the clock cannot be read yet: %s",
                            os.getpid(), e)
            try:
                while not self._stopping.is_set():
                    self._once_logged()
                    self._wake.wait(timeout=heartbeat)
                    self._wake.clear()
            finally:
                aps.shutdown(wait=False)
                log.info("scheduler stopped (pid %d)", os.getpid())
        return 0

    def _once_logged(self) -> None:
        """:meth:`run_due`, with a held job lock logged once per holder (the jobs stay due
        and run at a later wake-up)."""
        try:
            self.run_due()
        except JobLocked as e:
            if str(e) != self._last_wait:
                log.info("due jobs wait: %s", e)
                self._last_wait = str(e)


def _recorded(state: dict[str, str], job: str, when: datetime) -> bool:
    """Whether the state file says ``job`` ran for ``when`` (or later)."""
    text = state.get(job)
    if text is None:
        return False
    try:
        return parse_time(text) >= when
    except ValueError:
        return False


@contextmanager
def log_to_file(params: Params, *, stderr: bool = True) -> Iterator[None]:
    """Log ``pairlib`` (INFO) and APScheduler (WARNING) to ``schedule.log_file`` (rotating,
    5 MB x 5) and, with ``stderr``, to stderr, with UTC timestamps, while the block runs."""
    path = Path(params.schedule.log_file or Path(params.state_dir) / "scheduler.log")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%Y-%m-%dT%H:%M:%SZ")
    fmt.converter = time.gmtime
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(path, maxBytes=_LOG_BYTES,
                                             backupCount=_LOG_BACKUPS, encoding="utf-8"),
    ]
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    loggers = {logging.getLogger("pairlib"): logging.INFO,
               logging.getLogger("apscheduler"): logging.WARNING}
    before = {lg: lg.level for lg in loggers}
    for handler in handlers:
        handler.setFormatter(fmt)
    for lg, level in loggers.items():
        lg.setLevel(level)
        for handler in handlers:
            lg.addHandler(handler)
    try:
        yield
    finally:
        for lg, level in before.items():
            for handler in handlers:
                lg.removeHandler(handler)
            lg.setLevel(level)
        for handler in handlers:
            handler.close()


@contextmanager
def _signals(stop: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call ``stop`` (with the signal's name) while the block runs."""
    def handler(signum: int, frame: object) -> None:
        stop(f"received {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
