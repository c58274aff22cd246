"""Named failpoints: places where a test can make the process die (or misbehave) on purpose.

Code that hands state from one place to another (store to venue, venue to store, one leg to
the next) calls ``failpoint("name")`` there. Unless that name is armed the call is a dict
lookup and does nothing. A failpoint is armed in two ways:

* in-process, for tests: :func:`arm` with an action, either an exception to raise (a
  :class:`SimulatedCrash`, a :class:`BaseException` the tick does not catch, simulates the
  process dying there) or a callable run at the point;
* across processes, through the environment: ``PAIRLIB_FAILPOINT=name[:nth]`` makes the
  process send itself ``SIGKILL`` at the ``nth`` hit of ``name`` (default 1st). It is read
  once, at import; :func:`load_env` re-reads it.

Every name is registered in :data:`NAMES`: an unknown name in :func:`failpoint`, :func:`arm`
or the environment variable raises :class:`~pairlib.errors.ConfigError`, so the code and
the tests cannot drift apart.

Notes
-----
Foundation layer: imports nothing from pairlib but :mod:`pairlib.errors`.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from pairlib.errors import ConfigError

__all__ = [
    "ENV_VAR",
    "NAMES",
    "SimulatedCrash",
    "arm",
    "armed",
    "disarm",
    "failpoint",
    "hits",
    "load_env",
    "parse_env",
]

ENV_VAR: Final = "PAIRLIB_FAILPOINT"
"""``name[:nth]``: SIGKILL this process at the ``nth`` hit of failpoint ``name``."""

NAMES: Final[tuple[str, ...]] = (
    # engine/tick.py: the tick's phases
    "tick.after_start",            # the ticks row says 'running', nothing else done
    "tick.after_resolve_pending",  # orders left by earlier runs resolved
    "tick.after_reconcile",        # store compared with the venue, incidents written
    "tick.after_plan",             # the plan is decided, no order of it sent
    "tick.after_closes",           # the plan's closes and flattens done, entries not begun
    "tick.after_entries",          # every entry done, the end-of-tick checks not begun
    "tick.after_finish",           # unknown orders re-checked, incomplete entries closed
    "tick.after_account",          # equity and funding recorded
    "tick.before_commit",          # exposure known, the final ticks row not written
    "tick.after_commit",           # the final ticks row written, the result not returned
    "tick.exit_after_closing_mark",  # a close recorded as begun (closing set), no order yet
    "tick.exit_before_flat",       # a close's orders done, the pair not yet marked flat
    "tick.entry_before_persist",   # both legs of an entry filled, the pair not yet recorded
    # engine/execution.py: one order, one leg, one pair
    "exec.order_planned",          # an entry's first order recorded 'planned'
    "exec.before_send",            # an order recorded 'sent', the request not yet made
    "exec.after_send",             # the venue answered, the answer not yet read or stored
    "exec.fill_before_store",      # a fill read from the venue, not yet in the store
    "exec.after_fill_store",       # a fill and the leg amount stored (one transaction)
    "exec.between_legs",           # an entry's first leg done, its second not begun
    "exec.before_unwind",          # an entry failed, its filled legs not yet unwound
    "exec.close_retry",            # a reduce-only close attempt failed, the retry not sent
    "exec.after_close_leg",        # one leg of a close done, the other not begun
    # engine/reconcile.py
    "reconcile.accept_before_write",  # an operator's accept decided, the store not written
    # edges/store.py
    "store.before_fill_commit",    # a fill's transaction begun, not committed
    # app/runner.py and app/jobs.py
    "runner.before_execute",       # parameters checked, the kernel not started
    "runner.after_execute",        # the report written (tick done), its scraps not read
    "jobs.after_reserve",          # the job lock held and the report path reserved
    "jobs.after_run",              # the notebook run returned, the outcome not read
)
"""Every failpoint name, with where it sits."""

_KNOWN: Final = frozenset(NAMES)
_lock = threading.Lock()
_armed: dict[str, Callable[[], None]] = {}
_hits: dict[str, int] = {}


class SimulatedCrash(BaseException):  # noqa: N818 - a crash, not an error to handle
    """Raised by an armed failpoint to simulate the process dying there.

    A :class:`BaseException` (not an :class:`Exception`), so the tick's ``except Exception``
    guards do not catch it: nothing after the point runs, as after a SIGKILL (``finally``
    blocks and context managers still unwind, which a real kill skips; the matrix also
    kills real processes for that reason).
    """


def _check(name: str) -> None:
    if name not in _KNOWN:
        raise ConfigError(f"unknown failpoint {name!r}; known: {', '.join(NAMES)}")


def failpoint(name: str) -> None:
    """Run the action armed at ``name``, if any; otherwise do nothing.

    Raises
    ------
    ConfigError
        ``name`` is not in :data:`NAMES` (checked only when some failpoint is armed, so
        the unarmed cost is one dict lookup; the registry test calls every site's name).
    SimulatedCrash
        When armed with it.
    """
    if not _armed:
        return
    _check(name)
    action = _armed.get(name)
    if action is not None:
        action()


def arm(name: str, action: Callable[[], None] | BaseException | type[BaseException],
        nth: int = 1) -> None:
    """Arm ``name``: at its ``nth`` hit (and every hit after it) run ``action``.

    Parameters
    ----------
    name : str
        One of :data:`NAMES`.
    action : callable, exception instance or exception class
        A callable is called with no arguments; an exception (or class) is raised, e.g.
        ``SimulatedCrash``.
    nth : int
        The first hit that acts (1 = the first). Earlier hits only count.

    Raises
    ------
    ConfigError
        Unknown name or ``nth`` below 1.
    """
    _check(name)
    if isinstance(nth, bool) or not isinstance(nth, int) or nth < 1:
        raise ConfigError(f"failpoint {name!r}: nth must be a whole number >= 1, got {nth!r}")

    def act() -> None:
        with _lock:
            _hits[name] = _hits.get(name, 0) + 1
            count = _hits[name]
        if count < nth:
            return
        if isinstance(action, BaseException):
            raise action
        if isinstance(action, type) and issubclass(action, BaseException):
            raise action(f"failpoint {name} (hit {count})")
        action()

    with _lock:
        _hits[name] = 0
        _armed[name] = act


def disarm(name: str | None = None) -> None:
    """Disarm ``name`` (every failpoint when None) and reset its hit count."""
    with _lock:
        if name is None:
            _armed.clear()
            _hits.clear()
        else:
            _check(name)
            _armed.pop(name, None)
            _hits.pop(name, None)


def hits(name: str) -> int:
    """How many times ``name`` was reached since it was armed (0 when not armed)."""
    _check(name)
    with _lock:
        return _hits.get(name, 0)


@contextmanager
def armed(name: str, action: Callable[[], None] | BaseException | type[BaseException],
          nth: int = 1) -> Iterator[None]:
    """:func:`arm` for the duration of a ``with`` block, then :func:`disarm`."""
    arm(name, action, nth)
    try:
        yield
    finally:
        disarm(name)


def _kill_self() -> None:
    """SIGKILL this process: no handler, no ``finally``, no flush runs (a real crash)."""
    os.kill(os.getpid(), signal.SIGKILL)


def parse_env(value: str) -> tuple[str, int]:
    """``(name, nth)`` from a ``PAIRLIB_FAILPOINT`` value ``name[:nth]``.

    Raises
    ------
    ConfigError
        Unknown name, or ``nth`` not a whole number >= 1.
    """
    name, _, nth_text = value.strip().partition(":")
    if name not in _KNOWN:
        raise ConfigError(f"{ENV_VAR}={value!r}: unknown failpoint {name!r}; known: "
                          f"{', '.join(NAMES)}")
    if not nth_text:
        return name, 1
    if not nth_text.isdigit() or int(nth_text) < 1:
        raise ConfigError(f"{ENV_VAR}={value!r}: the hit count after ':' must be a whole "
                          f"number >= 1, got {nth_text!r}")
    return name, int(nth_text)


def load_env(environ: dict[str, str] | None = None) -> str | None:
    """Arm the failpoint named by ``PAIRLIB_FAILPOINT`` (if set) to SIGKILL this process;
    returns the armed name, or None when the variable is unset or empty.

    Raises
    ------
    ConfigError
        A malformed value (see :func:`parse_env`).
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip()
    if not value:
        return None
    name, nth = parse_env(value)
    arm(name, _kill_self, nth)
    return name


load_env()
