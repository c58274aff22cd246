"""The scheduled jobs as notebook runs: what ``pairlib pairs`` / ``pairlib tick`` /
``pairlib backtest`` / the demo execute. Each job validates its params (and, for the tick,
its ``as_of``; for the backtest, its window and costs) before anything else, picks the run's
``as_of``, reserves a fresh report path and runs its notebook with papermill into
``outputs/`` (failed notebooks are kept).

The tick job trades only when asked to (``trade=True``, what ``pairlib tick`` passes); with
``trade=False`` (``pairlib tick --preview``) its notebook previews the tick: every decision and
the orders it would send, none sent and nothing recorded. Relative ``outputs`` folders are
relative to the project root (:func:`pairlib.config.project_path`), as the params' own paths.

The tick job and pair generation hold the job lock ``<state_dir>/tick-job.lock`` for the
whole life of their kernel: the kernel inherits the lock's descriptor, so the lock is free only
once both the job and its kernel are gone, and a second job of the same state folder (a manual
``pairlib tick`` beside ``pairlib schedule``, two ticks, a tick and a pair generation) waits,
saying who holds the lock (pid, host, job, since when), instead of starting a kernel next to
one that may still trade. It is a different file from ``tick.lock``, which
:func:`pairlib.engine.tick.run` takes inside the kernel. When the notebook does not finish (a
dead kernel, a failed report cell), the tick's outcome is read from the store, which is the
record of what the tick did. Each cell of a job's notebook may run for
``schedule.job_timeout_seconds``.

After the lock is released, :func:`after_job` notifies failed, refused and degraded runs,
pings the heartbeat after an ok tick, updates the report index and delivers pending
notifications; none of these can fail the job.
"""

from __future__ import annotations

import ast
import fcntl
import json
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pairlib.app.runner import (
    RunResult,
    backtest_output_path,
    pairs_output_path,
    run_notebook,
    tick_output_path,
    unique_path,
)
from pairlib.clock import Clock, SystemClock, floor_time, last_close, parse_time
from pairlib.config import PARAMS_FILE, Params, load_params, project_path, timeframe_ms
from pairlib.errors import ConfigError, JobLocked, PairlibError
from pairlib.failpoints import failpoint

__all__ = [
    "JOB_LOCK_NAME",
    "NOTEBOOKS",
    "JobLocked",
    "TickJobResult",
    "after_job",
    "backtest_window",
    "exclusive_lock",
    "notebook_defaults",
    "resolve_as_of",
    "run_backtest_job",
    "run_pairs_job",
    "run_tick_job",
    "tick_as_of",
    "tick_job_lock",
]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
JOB_LOCK_NAME = "tick-job.lock"
"""The job lock in ``state_dir``, held by ticks, pair generations and the scheduler's job
sequence (not ``tick.lock``: the tick in the kernel takes that)."""
_HOLDER_SUFFIX = ".holder.json"
_OK = ("ok", "already_ran", "preview")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickJobResult(RunResult):
    """A tick job's notebook run and the tick's outcome.

    Attributes
    ----------
    status : str
        The tick's status: the notebook's ``status`` scrap, else (the notebook stopped before
        gluing it) the store's ``ticks`` row: ``ok``, ``already_ran``, ``degraded``,
        ``failed`` or ``refused``; ``preview`` for a preview (``trade=False``) that ran.
    message : str or None
        The tick's error or exposure line (the scraps' ``error``, or the store's message).
    report_complete : bool
        False when the report notebook stopped early (dead kernel, failed report cell):
        ``status`` then comes from the store.
    """

    status: str = "failed"
    message: str | None = None
    report_complete: bool = True


def resolve_as_of(as_of: str | datetime | None, timeframe: str, clock: Clock | None) -> datetime:
    """``as_of`` parsed, or the close of the last closed candle by ``clock``."""
    if as_of is not None:
        return parse_time(as_of)
    return last_close((clock or SystemClock()).now(), timeframe)


def tick_as_of(
    as_of: str | datetime | None,
    timeframe: str,
    clock: Clock | None = None,
    venue_kind: str = "sim",
) -> datetime:
    """The tick's ``as_of``, validated before any kernel or network call.

    Parameters
    ----------
    as_of : str or datetime, optional
        ISO-8601 with ``Z`` or an offset (a time without a timezone is refused), on a
        candle close of ``timeframe``; default: the last closed candle by ``clock``.
    timeframe : str
        ``params.data.timeframe``.
    clock : Clock, optional
        Default: the system clock.
    venue_kind : str
        For every venue but ``sim`` (whose present is ``as_of`` itself), ``as_of`` may not
        be after the last closed candle by ``clock``.

    Raises
    ------
    ConfigError
        Naming the value and what is allowed.
    """
    clock = clock or SystemClock()
    if as_of is None:
        return last_close(clock.now(), timeframe)
    when = _candle_close(as_of, "as_of", timeframe, example="2026-01-31T20:00Z", dates=False)
    if venue_kind != "sim":
        last = last_close(clock.now(), timeframe)
        if when > last:
            raise ConfigError(
                f"as_of {str(as_of)!r} is after the last closed {timeframe} candle "
                f"({_short(last)}): that candle has not closed yet"
            )
    return when


def _short(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def run_pairs_job(
    params_file: str | Path = PARAMS_FILE,
    as_of: str | datetime | None = None,
    outputs: str | Path = "outputs",
    clock: Clock | None = None,
    *,
    lock_timeout_s: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
    job_lock: int | None = None,
    after: bool = True,
) -> RunResult:
    """Run ``generate_pairs.ipynb`` into ``outputs/pairs/<stamp>Z-generate_pairs.ipynb``.

    The params file is validated here, before any kernel starts; the notebook gets its path
    (``params_file``) and no other params. A relative ``outputs`` is relative to the project
    root. Pair generation writes the pair set the tick reads, so it holds the same job lock as
    the tick (:func:`tick_job_lock`): a generation and a tick of one ``state_dir`` never run
    at the same time.

    Parameters
    ----------
    params_file, as_of, outputs, clock
        As for :func:`run_tick_job` (``as_of`` defaults to the last closed candle).
    lock_timeout_s : float
        How long to wait for another job of the same ``state_dir``.
    on_wait : callable, optional
        Called once with a line naming the holder when the job has to wait.
    job_lock : int, optional
        The descriptor of the job lock, already held by the caller (the scheduler runs pair
        generation and then the tick under one hold); the job then takes no lock itself.
    after : bool
        Run :func:`after_job` (notifications, report index) once the lock is released; the
        scheduler passes False and runs it after its whole job sequence.

    Raises
    ------
    ConfigError
        Bad params, before any kernel starts.
    JobLocked
        Another job still held the lock after ``lock_timeout_s``.
    """
    params = load_params(params_file)  # fail fast, before any kernel starts
    when = resolve_as_of(as_of, params.data.timeframe, clock)
    with _held_or_taken(job_lock, params.state_dir, when, lock_timeout_s, on_wait,
                        "pairs") as fd:
        out = unique_path(pairs_output_path(project_path(outputs), when))
        run = _run_reserved(
            NOTEBOOKS / "generate_pairs.ipynb",
            out,
            {
                "as_of": when.isoformat(),
                "params_file": str(params_file),
                "notebook_path": str(out),
            },
            cwd=Path.cwd(),
            kernel_fds=(fd,),
            timeout_s=_cell_timeout(params),
        )
    if after:
        after_job(params, job="pairs", status="ok" if run.ok else "failed",
                  message=run.error, report=run.path, outputs=project_path(outputs))
    return run


def run_tick_job(
    params_file: str | Path = PARAMS_FILE,
    as_of: str | datetime | None = None,
    outputs: str | Path = "outputs",
    live: bool = False,
    clock: Clock | None = None,
    *,
    trade: bool = True,
    lock_timeout_s: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
    job_lock: int | None = None,
    after: bool = True,
) -> TickJobResult:
    """Run ``tick.ipynb`` into ``outputs/ticks/YYYY/MM/<stamp>Z-tick.ipynb`` (a preview into
    ``<stamp>Z-tick-preview.ipynb``).

    Parameters
    ----------
    params_file : path
        The params file (``params/pairlib.yaml``).
    as_of : str or datetime, optional
        See :func:`tick_as_of`.
    outputs : path
        Folder for executed notebooks (a relative one is relative to the project root).
    live : bool
        ``--live``.
    clock : Clock, optional
        Default: the system clock.
    trade : bool
        The notebook's ``trade`` parameter. True (``pairlib tick``): the tick sends its
        orders and records everything. False (``pairlib tick --preview``): a preview
        (:func:`pairlib.engine.tick.run` with ``preview=True``): every decision and the orders the
        tick would send are reported, no order is sent and nothing is recorded; its status
        is ``preview``.
    lock_timeout_s : float
        How long to wait for another job (tick or pair generation) of the same
        ``state_dir``.
    on_wait : callable, optional
        Called once with a line naming the holder when the job has to wait.
    job_lock : int, optional
        The descriptor of the job lock, already held by the caller (the scheduler's job
        sequence); the job then takes no lock itself and passes this one to its kernel.
    after : bool
        Run :func:`after_job` (notify a failed, refused or degraded tick, ping the heartbeat
        after an ``ok`` one, update the report index, deliver pending notifications) once
        the lock is released; the scheduler passes False and runs it after its sequence.

    Returns
    -------
    TickJobResult
        The notebook run and the tick's outcome (from the store when the notebook stopped
        early; a preview that stopped early is ``failed``, since a preview records
        nothing).

    Raises
    ------
    ConfigError, LiveTradingRefused
        Bad params or ``as_of``, or the live guard, before any kernel or network call.
    JobLocked
        Another tick job still held the lock after ``lock_timeout_s``.
    """
    from pairlib.config import load_secrets
    from pairlib.venue.open import check_live

    params = load_params(params_file)
    check_live(params.venue, live, load_secrets())  # refuse before any kernel or network
    when = tick_as_of(as_of, params.data.timeframe, clock, params.venue.kind)
    with _held_or_taken(job_lock, params.state_dir, when, lock_timeout_s, on_wait,
                        "tick") as fd:
        out = unique_path(tick_output_path(project_path(outputs), when, preview=not trade))
        failpoint("jobs.after_reserve")
        run = _run_reserved(
            NOTEBOOKS / "tick.ipynb",
            out,
            {
                "as_of": when.isoformat(),
                "params_file": str(params_file),
                "trade": trade,
                "live": live,
                "notebook_path": str(out),
            },
            cwd=Path.cwd(),
            kernel_fds=(fd,),
            timeout_s=_cell_timeout(params),
        )
        failpoint("jobs.after_run")
        result = _tick_outcome(run, params, when, trade)
    if after:
        after_job(params, job="tick", status=result.status,
                  message=result.message or result.error, report=result.path,
                  outputs=project_path(outputs))
    return result


_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _candle_close(
    value: str | datetime, name: str, timeframe: str, *, example: str, dates: bool
) -> datetime:
    """``value`` as an aware UTC candle close of ``timeframe`` (with ``dates``, a date alone
    is 00:00 UTC); a :class:`ConfigError` naming ``name``, the value and what is allowed."""
    or_date = ", or a date such as 2025-02-04 (00:00 UTC)" if dates else ""
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        if dates and _DATE_ONLY.fullmatch(text):
            text += "T00:00+00:00"
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(
                f"{name} {value!r} is not an ISO-8601 time{' or date' if dates else ''}; give a "
                f"UTC candle close such as {example}{or_date}"
            ) from None
    if parsed.tzinfo is None:
        raise ConfigError(
            f"{name} {str(value)!r} has no timezone; give UTC with Z or an offset, e.g. "
            f"{example}{or_date}"
        )
    when = parse_time(parsed)
    step = timedelta(milliseconds=timeframe_ms(timeframe))
    floor = floor_time(when, step)
    if floor != when:
        raise ConfigError(
            f"{name} {str(value)!r} is not a {timeframe} candle close; allowed: a multiple of "
            f"{timeframe} since 1970-01-01T00:00Z, e.g. {_short(floor)} or "
            f"{_short(floor + step)}"
        )
    return when


def backtest_window(
    start: str | datetime,
    end: str | datetime,
    timeframe: str,
    clock: Clock | None = None,
    venue_kind: str = "sim",
) -> tuple[datetime, datetime]:
    """The backtest's first and last bar (candle close times), validated before any kernel
    or network call.

    Parameters
    ----------
    start, end : str or datetime
        ISO-8601 with ``Z`` or an offset, or a date alone (00:00 UTC), on a candle close of
        ``timeframe``; ``end`` after ``start``. A time without a timezone is refused.
    timeframe : str
        ``params.data.timeframe``.
    clock : Clock, optional
        Default: the system clock.
    venue_kind : str
        For every venue but ``sim`` (which serves any time of its history), ``end`` may not be
        after the last closed candle by ``clock``.

    Raises
    ------
    ConfigError
        Naming the value and what is allowed.
    """
    first = _candle_close(start, "start", timeframe, example="2025-02-04T00:00Z", dates=True)
    last = _candle_close(end, "end", timeframe, example="2025-02-04T00:00Z", dates=True)
    if last <= first:
        raise ConfigError(f"end {_short(last)} must be after start {_short(first)}")
    if venue_kind != "sim":
        closed = last_close((clock or SystemClock()).now(), timeframe)
        if last > closed:
            raise ConfigError(
                f"end {_short(last)} is after the last closed {timeframe} candle "
                f"({_short(closed)}): that candle has not closed yet"
            )
    return first, last


def notebook_defaults(notebook: str | Path) -> dict[str, Any]:
    """The literal values of a notebook's ``parameters`` cell, by name (what the notebook
    runs with when nothing is injected)."""
    nb = json.loads(Path(notebook).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell["metadata"].get("tags", []):
            source = "".join(cell["source"])
            return {t.id: ast.literal_eval(node.value)
                    for node in ast.parse(source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    raise ConfigError(f"{notebook} has no cell tagged 'parameters'")


def run_backtest_job(
    params_file: str | Path = PARAMS_FILE,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    outputs: str | Path = "outputs",
    clock: Clock | None = None,
    *,
    slippage_bps: float | None = None,
    taker_fee: float | None = None,
) -> RunResult:
    """Run ``backtest.ipynb`` into ``outputs/backtests/<start>-<end>-backtest.ipynb``
    (:func:`~pairlib.app.runner.backtest_output_path`; a re-run of the window gets ``-2``,
    ``-3``, ...; a failed report is kept).

    Parameters
    ----------
    params_file : path
        The params file; validated here, before any kernel starts. The notebook gets its
        path, and its own defaults for every override.
    start, end : str or datetime, optional
        The first and last bar traded (see :func:`backtest_window`); default: the
        notebook's own ``start`` / ``end``.
    outputs : path
        Folder for executed notebooks (a relative one is relative to the project root).
    clock : Clock, optional
        Default: the system clock (only a non-simulated venue's ``end`` is checked by it).
    slippage_bps, taker_fee : float, optional
        The fill model's costs; default: the notebook's (the venue params'
        ``sim_slippage_bps`` and the simulator's taker fee).

    Returns
    -------
    RunResult
        ``ok`` False when the notebook failed; its scraps hold ``metrics`` and ``trades``
        when it got that far.

    Raises
    ------
    ConfigError
        Bad params, window or costs, before any kernel or network call.
    """
    from pairlib.report.backtest_charts import fill_model

    params = load_params(params_file)  # fail fast, before any kernel starts
    notebook = NOTEBOOKS / "backtest.ipynb"
    defaults = notebook_defaults(notebook)
    first, last = backtest_window(defaults["start"] if start is None else start,
                                  defaults["end"] if end is None else end,
                                  params.data.timeframe, clock, params.venue.kind)
    try:
        fill_model(params, slippage_bps, taker_fee)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    costs = {k: float(v) for k, v in (("slippage_bps", slippage_bps),
                                      ("taker_fee", taker_fee)) if v is not None}
    out = unique_path(backtest_output_path(project_path(outputs), first, last))
    return _run_reserved(
        notebook,
        out,
        {"start": first.isoformat(), "end": last.isoformat(), "params_file": str(params_file),
         **costs},
        cwd=Path.cwd(),
    )


def _run_reserved(notebook: Path, out: Path, parameters: Mapping[str, Any],
                  **kwargs: Any) -> RunResult:
    """:func:`~pairlib.app.runner.run_notebook` into the reserved path ``out``; a run refused
    before anything was written (a refused parameter) gives the reservation back."""
    try:
        return run_notebook(notebook, out, parameters, **kwargs)
    except BaseException:
        if out.is_file() and out.stat().st_size == 0:
            out.unlink()
        raise


def _cell_timeout(params: Params) -> int:
    """papermill's execution timeout for one cell of a job's notebook, in whole seconds:
    ``schedule.job_timeout_seconds`` rounded up."""
    return max(1, math.ceil(params.schedule.job_timeout_seconds))


_NOTIFIED = ("failed", "refused", "degraded")
"""Job statuses that are notified (:func:`pairlib.app.notify.job_failed`)."""


def after_job(
    params: Params,
    *,
    job: str,
    status: str,
    message: str | None,
    report: Path | None,
    outputs: Path,
) -> None:
    """What follows every tick and pair generation, scheduled (``pairlib schedule``) or
    manual (``pairlib tick``, ``pairlib pairs``), once the job lock is released.

    1. a ``failed``, ``refused`` or ``degraded`` run is queued as a notification naming the
       job, its status, its message and its report
       (:func:`pairlib.app.notify.job_failed`);
    2. after an ``ok`` tick the heartbeat URL is pinged
       (:func:`pairlib.app.notify.ping_heartbeat`), for monitors that alert on a missed ping;
    3. the report index under ``outputs`` is brought up to date
       (:func:`pairlib.report.site.build_site`, incremental);
    4. pending notifications are delivered (:func:`pairlib.app.notify.deliver_pending`,
       bounded in time).

    Never raises: a step that fails is logged (one line) and the next one runs, because the
    job's own outcome (its report, its exit code) must not depend on the notifications or
    the index.

    Parameters
    ----------
    params : Params
        The job's params.
    job : str
        ``tick`` or ``pairs``.
    status : str
        The run's status (a tick's status; ``ok`` / ``failed`` for pair generation;
        ``refused`` for a run refused before its notebook started).
    message : str or None
        The run's error or exposure line.
    report : Path or None
        The run's executed notebook, if one was written.
    outputs : Path
        The folder of executed notebooks (already resolved from the project root).
    """
    if status in _NOTIFIED:
        def notify_failed() -> None:
            from pairlib.app.notify import job_failed

            job_failed(params, job=job, status=status, message=message or status,
                       report=report)

        _quietly(f"queueing the {job} {status} notification", notify_failed)
    if job == "tick" and status == "ok":
        def ping() -> None:
            from pairlib.app.notify import ping_heartbeat

            ping_heartbeat(params)

        _quietly("the heartbeat ping", ping)

    def index() -> None:
        from pairlib.report.site import build_site

        build_site(outputs)

    _quietly(f"updating the report index under {outputs}", index)

    def deliver() -> None:
        from pairlib.app.notify import deliver_pending

        deliver_pending(params)

    _quietly("delivering pending notifications", deliver)


def _quietly(what: str, step: Callable[[], object]) -> None:
    """Run ``step``; log (one line, no traceback) instead of raising when it fails."""
    try:
        step()
    except Exception as e:  # noqa: BLE001 - after-job steps never fail the job
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        log.warning("%s failed: %s: %s", what, type(e).__name__, text)


def _tick_outcome(run: RunResult, params: Params, when: datetime,
                  trade: bool = True) -> TickJobResult:
    """The tick's status from the notebook's scraps, or from the store when the notebook
    stopped before gluing them (a preview records nothing: without its scraps it failed)."""
    status = run.scraps.get("status")
    message: str | None
    if not isinstance(status, str) and not trade:
        status, complete = "failed", False
        message = (f"the report notebook stopped ({run.error or 'no scraps'}) before the "
                   "preview finished; a preview sends no order and records nothing")
    elif isinstance(status, str):
        error = run.scraps.get("error")
        message = None if error is None else str(error)
        # A failed, refused or degraded tick fails its last cell on purpose; an ok tick
        # whose notebook failed anyway left an incomplete report.
        complete = run.ok or status not in _OK
    else:
        status, message = _stored_outcome(params, when, str(run.path), run.error)
        complete = False
    return TickJobResult(path=run.path, ok=run.ok, duration_s=run.duration_s, error=run.error,
                         scraps=run.scraps, status=status, message=message,
                         report_complete=complete)


def _stored_outcome(
    params: Params, when: datetime, notebook_path: str, error: str | None
) -> tuple[str, str | None]:
    """``(status, message)`` of the tick ``when`` as the store recorded it; ``notebook_path``
    tells this run's row from an earlier run's."""
    import sqlite3

    from pairlib.edges.store import Store

    stopped = f"the report notebook stopped ({error or 'no scraps'})"
    try:
        with Store.at(params.state_dir) as db:
            row = db.tick_row(when)
    except (PairlibError, sqlite3.Error) as e:
        return "failed", f"{stopped}, and the store could not be read: {e}"
    if row is None:
        return "failed", f"{stopped} before the tick recorded anything"
    stored = str(row.get("status"))
    if row.get("notebook_path") != notebook_path:  # this run never started the tick
        if stored == "ok":
            return "already_ran", None
        return "failed", f"{stopped} before the tick ran (last recorded run: {stored})"
    if stored == "running":
        return "failed", (f"{stopped} during the tick: the store still says running; "
                          "a re-run resumes it")
    message = row.get("message")
    return stored, None if message is None else str(message)


@contextmanager
def tick_job_lock(
    state_dir: str | Path,
    as_of: datetime,
    timeout_s: float = 600.0,
    on_wait: Callable[[str], None] | None = None,
    *,
    job: str = "tick",
) -> Iterator[int]:
    """Hold the job lock ``<state_dir>/tick-job.lock`` (an exclusive ``flock``); yields its
    descriptor.

    Every job that may change the trading state takes it: the tick, pair generation and the
    scheduler's job sequence, from any process (``pairlib tick``, ``pairlib pairs``,
    ``pairlib schedule``). Whoever holds it records ``pid``, ``host``, ``job``, ``as_of`` and
    ``started_at`` in ``tick-job.lock.holder.json`` next to it, so a job that has to wait can
    say who holds it. Pass the descriptor to the kernel
    (:func:`pairlib.app.runner.run_notebook`'s ``kernel_fds``): the lock then stays held until
    the kernel has exited too, even if this process is killed first. Leaving the block
    closes this process's descriptor; the lock is released once no process holds it.

    Parameters
    ----------
    state_dir : path
        The state folder the lock guards.
    as_of : datetime
        The candle close the job acts on (recorded for the next waiter).
    timeout_s : float
        How long to wait for the holder; 0 tries once.
    on_wait : callable, optional
        Called once with a line naming the holder when the job has to wait.
    job : str
        What the holder runs (``tick``, ``pairs``, ``schedule: pairs+tick``...), recorded.

    Raises
    ------
    JobLocked
        Still held by another job after ``timeout_s``; names the holder.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    info = {"job": job, "as_of": _short(as_of)}
    with exclusive_lock(state / JOB_LOCK_NAME, info, timeout_s, on_wait,
                        what="pairlib job") as fd:
        yield fd


@contextmanager
def exclusive_lock(
    path: Path,
    info: Mapping[str, Any],
    timeout_s: float,
    on_wait: Callable[[str], None] | None = None,
    *,
    what: str = "pairlib job",
) -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path`` and describe the holder beside it.

    The holder file ``<path>.holder.json`` gets ``pid``, ``host``, ``started_at`` and
    ``info``; a process that finds the lock held reads it to name the holder (and says when
    that pid has exited, which means a child it passed the descriptor to still holds it).
    The lock itself is the ``flock``: the holder file is only a description, and a stale one
    never blocks anybody.

    Parameters
    ----------
    path : Path
        The lock file (created if missing).
    info : mapping
        What the holder runs, written into the holder file.
    timeout_s : float
        How long to wait; 0 tries once.
    on_wait : callable, optional
        Called once with a line naming the holder when the caller has to wait.
    what : str
        What the lock guards, for messages ("pairlib job", "pairlib scheduler").

    Raises
    ------
    JobLocked
        Still held after ``timeout_s``; names the holder.
    """
    holder = path.with_name(path.name + _HOLDER_SUFFIX)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                who = _describe_holder(holder)
                if time.monotonic() >= deadline:
                    raise JobLocked(
                        f"another {what} holds {path} ({who}); waited {timeout_s:.0f} s. "
                        "Wait for it to finish, or stop that process and its kernel"
                    ) from None
                if not told and on_wait is not None:
                    on_wait(f"waiting up to {timeout_s:.0f} s for the {what} holding "
                            f"{path} ({who})")
                    told = True
                time.sleep(0.2)
        record = {"pid": os.getpid(), "host": socket.gethostname(), **dict(info),
                  "started_at": SystemClock().now().strftime("%Y-%m-%dT%H:%M:%SZ")}
        tmp = holder.with_name(f"{holder.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, holder)
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _held_or_taken(
    held: int | None,
    state_dir: str | Path,
    as_of: datetime,
    timeout_s: float,
    on_wait: Callable[[str], None] | None,
    job: str,
) -> Iterator[int]:
    """The job lock: ``held`` (a descriptor the caller already holds) as it is, else taken
    here with :func:`tick_job_lock`."""
    if held is not None:
        yield held
        return
    with tick_job_lock(state_dir, as_of, timeout_s, on_wait, job=job) as fd:
        yield fd


def _describe_holder(holder: Path) -> str:
    """``<job> by pid N on <host>, as_of ..., started ...`` of a lock's holder, and whether
    that pid still runs (if not, a kernel it started still holds the lock)."""
    try:
        info = json.loads(holder.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown: no readable " + holder.name
    host = info.get("host")
    alive = ""
    if host in (None, socket.gethostname()):  # a pid on another host cannot be checked
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            alive = "; that process has exited, so a kernel it started still runs"
        except PermissionError:
            pass
    job = f"{info['job']} by " if info.get("job") else ""
    on = f" on {host}" if host else ""
    as_of = f", as_of {info['as_of']}" if info.get("as_of") else ""
    return f"{job}pid {pid}{on}{as_of}, started {info.get('started_at', '?')}{alive}"
