"""Notifications: the store's outbox delivered through apprise, and the heartbeat ping.

The tick, the jobs and the daily summary only *enqueue* (a row in the store's ``outbox``,
written in the transaction of the event it reports); :func:`deliver_pending` sends what is
due afterwards, outside any tick, so a slow or dead destination never delays or fails a
tick.

Destinations
    Apprise URLs (Slack, Telegram, Discord, e-mail, a JSON webhook, ...) from the environment
    variable ``PAIRLIB_NOTIFY_URLS`` only (whitespace- or comma-separated), never from params
    or notebooks. They carry tokens: they are never printed, logged or stored. Logs and
    errors show :func:`redact_url` (``json://127.0.0.1:***``), the store keeps a one-way id
    per destination (:func:`target_id`), and the log records of apprise and urllib3 are
    scrubbed of every part of a configured URL before any handler sees them.

Delivery guarantee: at most once per destination, and exactly once unless an attempt's
outcome is unknown
    A delivery run claims one due row (``pending`` -> ``sending``, committed) before sending
    it. Each destination it reaches is recorded at once (``delivered_to``). A destination
    that refused the message for certain (connection refused, an HTTP error status) is
    retried later, with exponential backoff (``notify.retry_base_seconds`` doubled per
    attempt, at most ``notify.max_attempts`` attempts, then ``failed``). A destination that
    did not answer within ``notify.timeout_seconds`` *may* have received the message: it is
    marked in doubt and never sent that message again. A delivery run that died between
    sending and recording (a crash, a kill) leaves its row ``sending``; once that claim is
    older than any send could take, the next run marks it ``in_doubt`` instead of resending.
    ``pairlib status`` counts ``in_doubt`` and ``failed`` rows. Without any destination
    configured, due rows become ``no_destination`` (never sent later by surprise when a URL
    appears).

The heartbeat
    :func:`ping_heartbeat` GETs ``PAIRLIB_HEARTBEAT_URL`` (any http(s) URL of a dead-man's
    switch service) only while the last successful tick is fresh, by the same rule as
    ``pairlib status --check``: a caller pinging after every job, failed ones included, still
    signals health only when there is some.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pairlib.clock import SystemClock, iso, parse_time
from pairlib.config import Params, project_path, timeframe_ms
from pairlib.edges.store import DB_NAME, OutboxEntry, OutboxRow, Store

__all__ = [
    "ENV_HEARTBEAT",
    "ENV_URLS",
    "DeliveryStats",
    "deliver_pending",
    "enqueue_daily_summary",
    "job_failed",
    "notify_urls",
    "ping_heartbeat",
    "redact_url",
    "report_link",
    "send_test",
    "target_id",
    "tick_fresh",
]

log = logging.getLogger(__name__)

ENV_URLS = "PAIRLIB_NOTIFY_URLS"
"""The environment variable holding the apprise destination URLs."""
ENV_HEARTBEAT = "PAIRLIB_HEARTBEAT_URL"
"""The environment variable holding the heartbeat URL (a plain http(s) GET)."""

_MAX_ROWS = 100  # rows one delivery run sends at most (the rest wait for the next run)
_CLAIM_GRACE_S = 60.0  # a claim older than the longest possible send plus this is stale
_DOUBT = "?"  # prefix of a destination id in ``delivered_to`` whose send is in doubt
_INFO_KINDS = frozenset({"entry", "exit", "daily_summary", "test"})  # sent as "info"
_WARNING_KINDS = frozenset({"flatten", "exit_no_data"})  # sent as "warning"; others "failure"


@dataclass(frozen=True)
class DeliveryStats:
    """What one :func:`deliver_pending` run did.

    Attributes
    ----------
    delivered : int
        Messages that reached every destination.
    retrying : int
        Messages refused by a destination, put back to ``pending`` with a later attempt.
    failed : int
        Messages whose attempts are exhausted.
    in_doubt : int
        Messages with a destination that did not answer in time (or a delivery run that
        died mid-send): never sent there again.
    no_destination : int
        Messages held because ``PAIRLIB_NOTIFY_URLS`` is not set.
    errors : tuple of str
        One line per problem (destinations redacted).
    """

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    in_doubt: int = 0
    no_destination: int = 0
    errors: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [f"{n} {name.replace('_', ' ')}" for name, n in (
            ("delivered", self.delivered), ("retrying", self.retrying),
            ("failed", self.failed), ("in_doubt", self.in_doubt),
            ("no_destination", self.no_destination)) if n]
        return "notifications: " + (", ".join(parts) if parts else "nothing due")


# ----------------------------------------------------------------------------- destinations


def notify_urls(environ: Mapping[str, str] | None = None) -> list[str]:
    """The apprise URLs of ``PAIRLIB_NOTIFY_URLS`` (whitespace- or comma-separated), in
    order, without duplicates; empty when the variable is unset or blank."""
    raw = (os.environ if environ is None else environ).get(ENV_URLS, "")
    out: list[str] = []
    for part in re.split(r"[\s,]+", raw):
        if part and part not in out:
            out.append(part)
    return out


def redact_url(url: str) -> str:
    """A URL fit for logs and messages: its scheme and, when it is a host name or address
    (not a token, as in ``slack://TokenA/...``), its host; everything else is ``***``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return "<unreadable URL>:***"
    scheme = parts.scheme or "?"
    shown = host if ("." in host or host == "localhost" or ":" in host) else ""
    return f"{scheme}://{shown}:***" if shown else f"{scheme}://***"


def target_id(url: str) -> str:
    """A stable id of one destination, stored in the outbox instead of the URL: 12 hex
    digits of its SHA-256 (one-way; the URL's token cannot be read back from it)."""
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def _secret_parts(urls: list[str]) -> list[str]:
    """Every piece of the URLs that may be a secret, longest first: each URL, and each of
    its components (user, password, a host that is not a plain host name, path segments,
    query values) of 4 characters or more, raw and percent-decoded and -encoded. A host
    name :func:`redact_url` shows, and a port, stay readable."""
    parts: set[str] = set()
    for url in urls:
        parts.add(url)
        shown = redact_url(url).split("://", 1)[-1].removesuffix(":***")
        rest = url.split("://", 1)[-1]
        for piece in re.split(r"[/:@?&=#,;]+", rest):
            if len(piece) >= 4 and piece != shown and not (piece.isdigit() and len(piece) <= 5):
                parts.update({piece, unquote(piece), quote(piece, safe="")})
    return sorted((p for p in parts if len(p) >= 4), key=len, reverse=True)


class _Scrub(logging.Filter):
    """Replaces every configured destination secret in a log record with ``***`` (apprise
    logs the request URL, urllib3 the request path, both at DEBUG level)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self._lock = threading.Lock()

    def add(self, urls: list[str]) -> None:
        with self._lock:
            self.secrets = sorted(set(self.secrets) | set(_secret_parts(urls)), key=len,
                                  reverse=True)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is left to logging itself
            return True
        clean = self.scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_SCRUB = _Scrub()
for _name in ("apprise", "urllib3.connectionpool", "urllib3.util.retry", __name__):
    logging.getLogger(_name).addFilter(_SCRUB)


# ----------------------------------------------------------------------------- messages


def report_link(report: str | Path | None) -> str | None:
    """Where a run's rendered report is: ``<name>.html`` beside its notebook, as a path
    under ``outputs/`` when the notebook is in the project's ``outputs`` folder, else the
    full path; None without a report."""
    if not report:
        return None
    html = Path(report).with_suffix(".html")
    try:
        return "outputs/" + html.resolve().relative_to(project_path("outputs").resolve()).as_posix()
    except ValueError:
        return str(html)


def _message(row: OutboxRow) -> tuple[str, str]:
    """The title and body sent for one outbox row: the body ends with the run and the
    link to its rendered report."""
    lines = [row.body]
    if row.run:
        lines.append(f"run: {row.run}")
    link = report_link(row.report)
    if link:
        lines.append(f"report: {link}")
    return f"pairlib: {row.title}", "\n".join(lines)


def job_failed(params: Params, *, job: str, status: str, message: str,
               report: Path | None, now: datetime | None = None) -> None:
    """Enqueue the notification of a failed, refused or degraded job run (never raises).

    Parameters
    ----------
    params : Params
        Its ``state_dir`` holds the outbox.
    job : str
        ``tick``, ``pairs``, ``backtest``, ...
    status : str
        The run's status (``failed``, ``refused``, ``degraded``, ...).
    message : str
        Why (one line; shown as the body).
    report : Path, optional
        The run's report notebook (linked as its rendered HTML).
    now : datetime, optional
        When (the message is due from then); default the system clock.

    Notes
    -----
    The dedupe key is the report path and status, which is the key the tick itself uses
    for its own failed or degraded outcome, so a tick reported by both the tick and its job
    is sent once. Without a report each call is a message of its own.
    """
    try:
        now = parse_time(now) if now is not None else SystemClock().now()
        key = (f"run:{Path(report).resolve()}:{status}" if report is not None
               else f"job:{job}:{status}:{iso(now)}:"
               f"{hashlib.sha1(message.encode()).hexdigest()[:12]}")
        run = Path(report).stem if report is not None else None
        entry = OutboxEntry(kind="job_failed", title=f"{job} {status}", body=message or status,
                            dedupe_key=key, run=run,
                            report=None if report is None else str(report))
        with Store.at(params.state_dir) as db:
            db.enqueue(entry, now)
    except Exception as e:  # noqa: BLE001 - a notification never fails its job
        log.error("could not enqueue the %s %s notification: %s", job, status,
                  _SCRUB.scrub(f"{type(e).__name__}: {e}"))


def enqueue_daily_summary(params: Params, now: datetime) -> None:
    """Enqueue the daily summary of the UTC day ending at ``notify.daily_summary_hour``
    last passed by ``now`` (never raises).

    The summary states the equity at the last tick, the PnL over the day (the change of
    the recorded equity), the open pairs, and the ticks run and failed (any status but
    ``ok``/``already_ran``) whose candle closed in the day. Its dedupe key is the day's end,
    so calling this any number of times (after every job, on a timer) sends it once.
    """
    try:
        end = parse_time(now).replace(minute=0, second=0, microsecond=0)
        end = end.replace(hour=params.notify.daily_summary_hour)
        if end > parse_time(now):
            end -= timedelta(days=1)
        start = end - timedelta(days=1)
        db_file = Path(params.state_dir) / DB_NAME
        if not db_file.exists():
            log.info("no store at %s: no daily summary", db_file)
            return
        with Store.at(params.state_dir) as db:
            entry = OutboxEntry(kind="daily_summary",
                                title=f"daily summary to {iso(end)}",
                                body=_summary_body(db, start, end),
                                dedupe_key=f"daily_summary:{iso(end)}", run=iso(end),
                                report=_last_report(db, end))
            db.enqueue(entry, parse_time(now))
    except Exception as e:  # noqa: BLE001 - a summary never fails the job that asks for it
        log.error("could not enqueue the daily summary: %s: %s", type(e).__name__, e)


def _summary_body(db: Store, start: datetime, end: datetime) -> str:
    """Equity, the day's PnL, open pairs and tick counts between ``start`` and ``end``."""
    ticks = db.ticks_between(start, end)
    bad = [t for t in ticks if t.status not in ("ok", "already_ran")]
    eq = db.equity_history()
    eq = eq[eq["tick_as_of"] <= iso(end)] if len(eq) else eq
    before = eq[eq["tick_as_of"] <= iso(start)] if len(eq) else eq
    lines = []
    if len(eq):
        last = float(eq["equity"].iloc[-1])
        base = float(before["equity"].iloc[-1]) if len(before) else float(eq["equity"].iloc[0])
        lines.append(f"equity {last:,.2f} USDT at {eq['tick_as_of'].iloc[-1]}; "
                     f"PnL over the day {last - base:+,.2f} USDT")
        un = eq["unrealized_pnl"].iloc[-1]
        if un is not None and not (isinstance(un, float) and math.isnan(un)):
            lines.append(f"unrealized PnL {float(un):+,.2f} USDT")
    else:
        lines.append("no equity recorded yet")
    held = [r for r in db.pair_state_rows() if r.held]
    lines.append(f"open pairs: {len(held)}" + (
        " (" + ", ".join(f"{r.pair_id} {'long' if r.position > 0 else 'short'}"
                         for r in held) + ")" if held else ""))
    lines.append(f"ticks in the day: {len(ticks)} run, {len(bad)} not ok"
                 + (" (" + ", ".join(f"{t.as_of} {t.status}" for t in bad) + ")"
                    if bad else ""))
    return "\n".join(lines)


def _last_report(db: Store, end: datetime) -> str | None:
    """The report of the last tick at or before ``end``."""
    row = db.last_tick(before=end + timedelta(seconds=1))
    return None if row is None else row.notebook_path


# ----------------------------------------------------------------------------- delivery


@dataclass
class _Counts:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    in_doubt: int = 0
    no_destination: int = 0
    errors: list[str] = field(default_factory=list)
    down: set[str] = field(default_factory=set)  # destinations that failed in this run

    def frozen(self) -> DeliveryStats:
        return DeliveryStats(self.delivered, self.retrying, self.failed, self.in_doubt,
                             self.no_destination, tuple(self.errors))


def deliver_pending(params: Params, *, now: datetime | None = None) -> DeliveryStats:
    """Send every due outbox message to every destination of ``PAIRLIB_NOTIFY_URLS``.

    Parameters
    ----------
    params : Params
        ``state_dir`` (the outbox) and the ``notify`` section (timeout, attempts, backoff).
    now : datetime, optional
        The present (rows due at or before it are sent; backoff counts from it); default
        the system clock.

    Returns
    -------
    DeliveryStats
        Never raises: a problem is a line in ``errors``. A run sends at most 100 messages,
        each attempt to each destination bounded by ``notify.timeout_seconds`` (plus about
        0.1 s of apprise's own grace), so it never blocks longer than that times the rows
        and destinations; once every destination has failed in a run, the run stops and
        the remaining messages wait for the next (a dead destination costs one timeout per
        run, not one per message).

    Notes
    -----
    See the module docstring for the delivery guarantee. Without a store file nothing is
    created and nothing is sent.
    """
    counts = _Counts()
    try:
        _deliver(params, parse_time(now) if now is not None else SystemClock().now(), counts)
    except Exception as e:  # noqa: BLE001 - delivery never fails its caller
        line = _SCRUB.scrub(f"delivery stopped: {type(e).__name__}: {e}")
        counts.errors.append(line)
        log.error("%s", line)
    stats = counts.frozen()
    if stats.delivered or stats.retrying or stats.failed or stats.in_doubt or stats.errors:
        log.info("%s", stats)
    return stats


def _deliver(params: Params, now: datetime, counts: _Counts) -> None:
    db_file = Path(params.state_dir) / DB_NAME
    if not db_file.exists():
        return
    urls = notify_urls()
    _SCRUB.add(urls)
    cfg = params.notify
    with Store.at(params.state_dir) as db:
        lease = max(1, len(urls)) * (cfg.timeout_seconds + 5.0) + _CLAIM_GRACE_S
        stale = db.expire_outbox_claims(
            now - timedelta(seconds=lease),
            "a delivery run stopped while sending it: it may have been delivered, so it is "
            "not sent again")
        if stale:
            counts.in_doubt += stale
            counts.errors.append(f"{stale} message(s) left mid-send by a stopped delivery run "
                                 "are in doubt and not resent")
        if not urls:
            held = db.hold_outbox("no_destination",
                                  f"no destination: {ENV_URLS} is not set")
            counts.no_destination += held
            return
        services = _services(urls, cfg.timeout_seconds, counts)
        if not services:
            return  # every URL is invalid: the rows wait for a usable destination
        for _ in range(_MAX_ROWS):
            if all(s.target in counts.down for s in services):
                break  # every destination failed in this run: the rest waits for the next
            claimed = db.claim_outbox(now, limit=1)
            if not claimed:
                break
            _send_row(db, claimed[0], services, params, now, counts)


@dataclass(frozen=True)
class _Service:
    """One destination: its apprise object, stored id and redacted name."""

    apprise: Any
    target: str
    shown: str


def _services(urls: list[str], timeout_s: float, counts: _Counts) -> list[_Service]:
    """One apprise object per URL (so each destination's outcome is known on its own), its
    connect timeout inside the attempt's bound and its read timeout just past it, so a
    destination that accepted the connection but did not answer ends as a timeout (in
    doubt), never as a retryable failure."""
    import apprise

    out = []
    for i, url in enumerate(urls, start=1):
        asset = apprise.AppriseAsset(storage_mode="memory")
        with warnings.catch_warnings():  # its plugins import the deprecated imghdr module
            warnings.simplefilter("ignore", DeprecationWarning)
            svc = apprise.Apprise.instantiate(url, asset=asset)
        if svc is None:
            line = (f"destination #{i} of {ENV_URLS} ({redact_url(url)}) is not a valid "
                    "apprise URL; skipped")
            counts.errors.append(line)
            log.error("%s", line)
            continue
        svc.socket_connect_timeout = max(0.1, timeout_s * 0.8)
        svc.socket_read_timeout = timeout_s + 1.0
        obj = apprise.Apprise(asset=asset)
        obj.add(svc)
        out.append(_Service(obj, target_id(url), redact_url(url)))
    return out


def _send_row(db: Store, row: OutboxRow, services: list[_Service], params: Params,
              now: datetime, counts: _Counts) -> None:
    """One attempt of one claimed row to every destination it has not reached; then the
    row is settled."""
    import apprise

    cfg = params.notify
    title, body = _message(row)
    kind = (apprise.NotifyType.INFO if row.kind in _INFO_KINDS
            else apprise.NotifyType.WARNING if row.kind in _WARNING_KINDS
            else apprise.NotifyType.FAILURE)  # stops, loss limits, incidents, failed runs
    done = set(row.targets_done)
    refused: list[str] = []
    doubt: list[str] = []
    for s in services:
        if s.target in done or _DOUBT + s.target in done:
            continue
        try:
            result = s.apprise.notify(body=body, title=title, notify_type=kind,
                                      timeout=cfg.timeout_seconds)
            status = result.status
        except Exception as e:  # noqa: BLE001 - apprise failed in an unknown state
            doubt.append(f"{s.shown}: {type(e).__name__}")
            counts.down.add(s.target)
            db.mark_outbox_target(row.id, _DOUBT + s.target)
            continue
        if status == apprise.AppriseResultStatus.SUCCESS:
            db.mark_outbox_target(row.id, s.target)
        elif status == apprise.AppriseResultStatus.TIMEOUT:
            doubt.append(f"{s.shown}: no answer within {cfg.timeout_seconds:g} s")
            counts.down.add(s.target)
            db.mark_outbox_target(row.id, _DOUBT + s.target)
        else:
            refused.append(f"{s.shown}: {status.name.lower()}")
            counts.down.add(s.target)
    if refused and row.attempts < cfg.max_attempts:
        wait = cfg.retry_base_seconds * 2 ** (row.attempts - 1)
        error = "; ".join([*refused, *doubt]) + f"; attempt {row.attempts} of {cfg.max_attempts}"
        db.finish_outbox(row.id, "pending", now, error=error,
                         next_attempt_at=now + timedelta(seconds=wait))
        counts.retrying += 1
    elif refused:
        db.finish_outbox(row.id, "failed", now,
                         error="; ".join([*refused, *doubt]) + f"; gave up after "
                         f"{row.attempts} attempts")
        counts.failed += 1
        counts.errors.append(f"message {row.id} ({row.kind}) undeliverable: "
                             + "; ".join(refused))
    elif doubt:
        db.finish_outbox(row.id, "in_doubt", now,
                         error="; ".join(doubt) + ": may have been delivered, not resent")
        counts.in_doubt += 1
        counts.errors.append(f"message {row.id} ({row.kind}) in doubt: " + "; ".join(doubt))
    else:
        db.finish_outbox(row.id, "delivered", now)
        counts.delivered += 1


def send_test(params: Params, *, now: datetime | None = None) -> DeliveryStats:
    """Enqueue a test message and deliver what is due (``pairlib notify test``)."""
    when = parse_time(now) if now is not None else SystemClock().now()
    with Store.at(params.state_dir) as db:
        db.enqueue(OutboxEntry(kind="test", title="test message",
                               body="pairlib can reach this destination.",
                               dedupe_key=f"test:{iso(when)}:{os.getpid()}"), when)
    return deliver_pending(params, now=when)


# ----------------------------------------------------------------------------- heartbeat


def tick_fresh(params: Params, now: datetime, db: Store | None = None) -> tuple[bool, str]:
    """Whether the last successful tick is recent enough: its candle closed at most one bar
    plus ``schedule.stale_grace_seconds`` before ``now`` (the rule of ``pairlib status
    --check``). Returns ``(fresh, one line saying why)``."""
    bar = timedelta(milliseconds=timeframe_ms(params.data.timeframe))
    grace = timedelta(seconds=params.schedule.stale_grace_seconds)
    with _store_or(params, db) as store:
        last = None if store is None else store.last_tick(status="ok")
    if last is None:
        return False, "no successful tick recorded"
    age = now - parse_time(last.as_of)
    limit = bar + grace
    if age > limit:
        return False, (f"last successful tick {last.as_of} is {_age(age)} old (more than one "
                       f"bar + grace = {_age(limit)})")
    return True, f"last successful tick {last.as_of} ({_age(age)} ago)"


@contextlib.contextmanager
def _store_or(params: Params, db: Store | None) -> Iterator[Store | None]:
    """``db``, or the project's store opened for the block (None when it does not exist:
    nothing is created)."""
    if db is not None:
        yield db
        return
    if not (Path(params.state_dir) / DB_NAME).exists():
        yield None
        return
    with Store.at(params.state_dir) as opened:
        yield opened


def _age(delta: timedelta) -> str:
    s = int(delta.total_seconds())
    if s < 0:
        return f"-{_age(-delta)}"
    h, rem = divmod(s, 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def ping_heartbeat(params: Params, *, now: datetime | None = None) -> None:
    """GET ``PAIRLIB_HEARTBEAT_URL`` (bounded by ``notify.timeout_seconds``) when the last
    successful tick is fresh (:func:`tick_fresh`); never raises, never logs the URL.

    Nothing happens when the variable is unset. A URL that is not http(s) is refused with a
    log line naming the variable, not its value.
    """
    url = os.environ.get(ENV_HEARTBEAT, "").strip()
    if not url:
        return
    _SCRUB.add([url])
    shown = redact_url(url)
    try:
        when = parse_time(now) if now is not None else SystemClock().now()
        fresh, why = tick_fresh(params, when)
        if not fresh:
            log.warning("heartbeat not sent: %s", why)
            return
        if urlsplit(url).scheme not in ("http", "https"):
            log.error("%s is not an http(s) URL: no heartbeat sent", ENV_HEARTBEAT)
            return
        req = urllib.request.Request(url, method="GET",
                                     headers={"User-Agent": "pairlib-heartbeat"})
        with urllib.request.urlopen(req, timeout=params.notify.timeout_seconds) as resp:  # noqa: S310 - http(s) checked above
            log.info("heartbeat %s: HTTP %s", shown, resp.status)
    except urllib.error.HTTPError as e:
        log.warning("heartbeat %s failed: HTTP %s", shown, e.code)
    except Exception as e:  # noqa: BLE001 - a missed ping is the monitor's to notice
        reason = getattr(e, "reason", None)
        log.warning("heartbeat %s failed: %s", shown,
                    _SCRUB.scrub(f"{type(e).__name__}: {reason or e}"))
