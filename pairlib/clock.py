"""Clocks: the only place the library reads wall time.

Live code gets a :class:`SystemClock`; replays and tests get a :class:`SettableClock`.
Times are timezone-aware UTC :class:`datetime.datetime` objects; milliseconds since the
epoch (``int``) are used at the exchange edge, as ccxt and Binance do.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from pairlib.errors import ConfigError

__all__ = [
    "Clock",
    "SettableClock",
    "SystemClock",
    "floor_time",
    "last_close",
    "from_ms",
    "parse_time",
    "to_ms",
]


class Clock(Protocol):
    """Anything that can tell the current UTC time."""

    def now(self) -> datetime:
        """Return the current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock (live runs only)."""

    def now(self) -> datetime:
        """Return the wall-clock time in UTC."""
        return datetime.now(UTC)


class SettableClock:
    """A clock that only moves when told to (replays, simulator, tests).

    Parameters
    ----------
    start : datetime
        Initial time; naive datetimes are taken as UTC.
    """

    def __init__(self, start: datetime) -> None:
        self._now = _utc(start)

    def now(self) -> datetime:
        """Return the clock's current time."""
        return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (may go backwards: a replay can rewind)."""
        self._now = _utc(when)

    def advance(self, delta: timedelta) -> datetime:
        """Move forward by ``delta`` and return the new time."""
        if delta < timedelta(0):
            raise ValueError(f"advance needs a non-negative delta, got {delta}")
        self._now = self._now + delta
        return self._now


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_time(text: str | datetime) -> datetime:
    """Parse an ISO-8601 string (``Z`` allowed) into an aware UTC datetime.

    Raises
    ------
    ConfigError
        If ``text`` is not ISO-8601 (a ``ValueError`` too); the message shows the value and
        an example.
    """
    if isinstance(text, datetime):
        return _utc(text)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as e:
        raise ConfigError(
            f"not an ISO-8601 time: {text!r} (expected e.g. 2026-01-31T20:00:00Z)"
        ) from e
    return _utc(parsed)


def to_ms(when: datetime) -> int:
    """Milliseconds since the Unix epoch."""
    return int(round(_utc(when).timestamp() * 1000))


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime from milliseconds since the Unix epoch."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def last_close(now: datetime, timeframe: str) -> datetime:
    """Close time of the last fully closed candle of ``timeframe`` at ``now``."""
    from pairlib.config import timeframe_ms

    return floor_time(now, timedelta(milliseconds=timeframe_ms(timeframe)))


def floor_time(when: datetime, step: timedelta) -> datetime:
    """Floor ``when`` to a multiple of ``step`` since the epoch (e.g. the last 4h boundary)."""
    step_ms = int(step.total_seconds() * 1000)
    ms = to_ms(when)
    return from_ms(ms - ms % step_ms)


def iso(when: datetime) -> str:
    """ISO-8601 UTC string with a trailing ``Z`` (the store's time format; naive = UTC)."""
    aware = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")
