"""Fault injection for the simulated exchange.

A :class:`Faults` object is shared by the server's request threads. Tests arm it in-process
(``server.faults.fail_next(2)``) or over HTTP (``POST /sim/faults`` with the JSON produced by
:meth:`Faults.to_dict`). Each armed fault is consumed by the requests it hits:

=========================  ================================================================
``latency_ms``             added to every exchange request (not ``/sim/`` admin calls)
``fail_next``              the next N matching requests answer HTTP ``status`` (5xx) with a
                           text body, so ccxt maps it by status (503 -> ExchangeNotAvailable)
``rate_limit_next``        the next N matching requests answer HTTP 429 with code -1003
``timeout_next``           the next N matching requests sleep ``seconds`` before being
                           handled (longer than the client's timeout -> ccxt RequestTimeout;
                           shorter: a latency spike)
``maintenance_next``       the next N matching requests answer HTTP 503 with Binance's
                           ``{"code": 1, "msg": "System is under maintenance."}`` (ccxt
                           OnMaintenance); nothing is done (an order is not booked)
``reject_next_orders``     the next N new orders are rejected with a Binance error ``code``
``partial_fill_next``      the next N new orders fill only ``ratio`` of their quantity; the
                           rest of a MARKET order expires at once (EXPIRED, as Binance does
                           when a market order runs out of liquidity), the rest of a
                           marketable GTC LIMIT order stays open as PARTIALLY_FILLED
``drop_response_next``     the next N new orders are booked, then the connection is closed
``_orders``                without a response (``mode="close"``) or answered 503 (``"5xx"``)
``book_late_next_orders``  the next N new orders are *not* booked when they arrive: the
                           request is answered late (``mode="timeout"``: held ``hold_s``
                           seconds, then the connection is closed), not at all (``"close"``)
                           or with 503 (``"5xx"``); the order is booked ``delay_s`` seconds
                           (wall clock) later in the background, at the then-current sim
                           price, unless that moment is past the request's ``timestamp +
                           recvWindow`` (then it is never booked)
``random_faults``          each exchange request, with probability ``rate``, gets one fault
                           of a kind drawn (seeded) from ``kinds`` (:data:`RANDOM_KINDS`;
                           the order kinds only for new orders): see
                           :meth:`Faults.random_faults`; ``random_injected`` counts them
=========================  ================================================================

``path`` filters match when the request path starts with them (e.g. ``/fapi/v1/klines``).
The order faults (``reject_next_orders``, ``partial_fill_next``, ``drop_response_next_orders``,
``book_late_next_orders``) take ``match``: only orders whose client id contains it are
affected (e.g. ``"-x-e"`` the second leg of an entry, ``"-uw"`` an unwind, ``"-ex"`` an exit),
and other orders pass them by.
Every argument is validated (counts are whole numbers >= 1, durations finite and bounded),
so a bad ``POST /sim/faults`` answers 400 naming the argument instead of arming a fault
that breaks the server.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RANDOM_KINDS", "Faults", "HttpFault", "LateBooking"]

MAX_COUNT = 1_000_000
"""Largest ``n`` a fault accepts."""
MAX_SECONDS = 3_600.0
"""Longest delay (``seconds``, ``delay_s``, ``hold_s``) a fault accepts."""
MAX_LATENCY_MS = 60_000.0
"""Largest ``latency_ms`` accepted."""
LATE_MODES = ("timeout", "close", "5xx")
RANDOM_KINDS = ("latency", "5xx", "timeout", "rate_limit", "maintenance", "reject",
                "partial_fill", "drop_response", "book_late")
"""The kinds :meth:`Faults.random_faults` draws from (the last four hit only new orders)."""
_ORDER_KINDS = frozenset({"reject", "partial_fill", "drop_response", "book_late"})
"""How a late-booked order's request is answered (see :meth:`Faults.book_late_next_orders`)."""


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    """``value`` as a finite float in ``[lo, hi]``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return x


def _count(value: Any, name: str = "n") -> int:
    """A fault's repeat count: a whole number in ``[1, MAX_COUNT]``."""
    x = _number(value, name, 1, MAX_COUNT)
    if x != math.floor(x):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(x)


def _seconds(value: Any, name: str) -> float:
    return _number(value, name, 0.0, MAX_SECONDS)


def _match(value: Any) -> str | None:
    """An order fault's client-id filter: None (every order) or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 36:
        raise ValueError(f"match must be None or a client-id substring (1-36 characters), "
                         f"got {value!r}")
    return value


def _matched(entry: dict[str, Any], match: str | None) -> dict[str, Any]:
    """An order fault's JSON entry, with its ``match`` only when it has one."""
    return entry if match is None else {**entry, "match": match}


def _path(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"path must be None or a string starting with '/', got {value!r}")
    return value


@dataclass
class _Counted:
    n: int
    path: str | None = None
    status: int = 503
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.n > 0 and (self.path is None or path.startswith(self.path))


@dataclass(frozen=True)
class HttpFault:
    """A fault to apply to one request: ``kind`` is ``"status"``, ``"rate_limit"``,
    ``"timeout"`` or ``"maintenance"``."""

    kind: str
    status: int = 503
    seconds: float = 0.0


@dataclass(frozen=True)
class LateBooking:
    """How one new order is booked late: ``delay_s`` after arrival (wall clock), its request
    answered per ``mode`` (``"timeout"`` holds it ``hold_s`` seconds, then closes)."""

    delay_s: float
    mode: str
    hold_s: float


@dataclass
class _RandomFaults:
    """The settings, seeded draw and counts of :meth:`Faults.random_faults`."""

    rate: float
    seed: int
    kinds: tuple[str, ...]
    latency_s: float
    timeout_s: float
    late_delay_s: float
    rng: random.Random = field(init=False)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def spec(self) -> dict[str, Any]:
        """The arguments of :meth:`Faults.random_faults` that armed this."""
        return {"rate": self.rate, "seed": self.seed, "kinds": list(self.kinds),
                "latency_s": self.latency_s, "timeout_s": self.timeout_s,
                "late_delay_s": self.late_delay_s}


class Faults:
    """Armed faults; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency_ms: float = 0.0
        self._fail: list[_Counted] = []
        self._rate: list[_Counted] = []
        self._timeout: list[_Counted] = []
        self._maintenance: list[_Counted] = []
        # Order faults: (n, *payload, match); match None or a client-id substring.
        self._reject: list[tuple[int, int, str | None, str | None]] = []  # [n, code, msg, m]
        self._partial: list[tuple[int, float, str | None]] = []
        self._drop: list[tuple[int, str, str | None]] = []
        self._late: list[tuple[int, LateBooking, str | None]] = []
        self._random: _RandomFaults | None = None

    # ------------------------------------------------------------------ arming
    @property
    def latency_ms(self) -> float:
        """Delay added to every exchange request, in ms (0 to :data:`MAX_LATENCY_MS`)."""
        return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self._latency_ms = _number(value, "latency_ms", 0.0, MAX_LATENCY_MS)

    def fail_next(self, n: int = 1, status: int = 503, path: str | None = None) -> None:
        """Answer the next ``n`` requests (matching ``path``) with HTTP ``status``."""
        st = _number(status, "status", 500, 599)
        if st != math.floor(st):
            raise ValueError(f"fail_next needs a 5xx status, got {status!r}")
        item = _Counted(_count(n), _path(path), status=int(st))
        with self._lock:
            self._fail.append(item)

    def rate_limit_next(self, n: int = 1, path: str | None = None,
                        retry_after_s: int | None = None) -> None:
        """Answer the next ``n`` requests with HTTP 429 (code -1003). Their ``Retry-After`` is
        ``retry_after_s`` seconds when given, else (as Binance) the rest of the current
        wall-clock minute."""
        seconds = 0.0 if retry_after_s is None else _seconds(retry_after_s, "retry_after_s")
        if retry_after_s is not None and (seconds < 1 or seconds != math.floor(seconds)):
            raise ValueError(f"retry_after_s must be a whole number of seconds >= 1, "
                             f"got {retry_after_s!r}")
        item = _Counted(_count(n), _path(path), seconds=seconds)
        with self._lock:
            self._rate.append(item)

    def timeout_next(self, n: int = 1, seconds: float = 5.0, path: str | None = None) -> None:
        """Delay the next ``n`` requests by ``seconds`` (then handle them normally)."""
        item = _Counted(_count(n), _path(path), seconds=_seconds(seconds, "seconds"))
        with self._lock:
            self._timeout.append(item)

    def maintenance_next(self, n: int = 1, path: str | None = None) -> None:
        """The venue is under maintenance for the next ``n`` exchange requests (matching
        ``path``): each answers HTTP 503 with Binance's ``{"code": 1, "msg": "System is
        under maintenance."}`` (ccxt: OnMaintenance) and does nothing (an order is not
        booked)."""
        item = _Counted(_count(n), _path(path), status=503)
        with self._lock:
            self._maintenance.append(item)

    def reject_next_orders(self, n: int = 1, code: int = -2019, msg: str | None = None,
                           match: str | None = None) -> None:
        """Reject the next ``n`` new orders (whose client id contains ``match``, when given)
        with Binance error ``code`` (-2019: insufficient margin)."""
        c = _number(code, "code", -99_999, 99_999)
        if c != math.floor(c):
            raise ValueError(f"code must be a whole number, got {code!r}")
        if msg is not None and not isinstance(msg, str):
            raise ValueError(f"msg must be None or a string, got {msg!r}")
        item = (_count(n), int(c), msg, _match(match))
        with self._lock:
            self._reject.append(item)

    def partial_fill_next(self, n: int = 1, ratio: float = 0.5, match: str | None = None) -> None:
        """Fill only ``ratio`` (0 < ratio < 1) of the next ``n`` orders' quantity (orders
        whose client id contains ``match``, when given)."""
        r = _number(ratio, "ratio", 0.0, 1.0)
        if not 0.0 < r < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio!r}")
        item = (_count(n), r, _match(match))
        with self._lock:
            self._partial.append(item)

    def drop_response_next_orders(self, n: int = 1, mode: str = "close",
                                  match: str | None = None) -> None:
        """Book the next ``n`` orders (whose client id contains ``match``, when given) but
        lose the response (``"close"`` or ``"5xx"``)."""
        if mode not in ("close", "5xx"):
            raise ValueError(f"mode must be 'close' or '5xx', got {mode!r}")
        item = (_count(n), mode, _match(match))
        with self._lock:
            self._drop.append(item)

    def book_late_next_orders(
        self, n: int = 1, delay_s: float = 2.0, mode: str = "timeout", hold_s: float = 30.0,
        match: str | None = None,
    ) -> None:
        """Book the next ``n`` new orders ``delay_s`` seconds late, answering them per ``mode``.

        The order is not booked when its request arrives (a lookup by client id answers
        -2013 until then). ``delay_s`` seconds later (wall clock) it is booked in the
        background exactly as if the matching engine accepted it then: validated and filled
        at the then-current sim price like any new order. If that moment is past the
        request's ``timestamp + recvWindow`` (checked against the server's wall clock, as
        Binance does), it is never booked. The request itself is answered by ``mode``:

        * ``"timeout"``: held ``hold_s`` seconds (longer than the client's timeout), then
          the connection is closed without a response;
        * ``"close"``: the connection is closed at once without a response;
        * ``"5xx"``: HTTP 503 with a text body (ccxt: ExchangeNotAvailable).

        With ``match``, only orders whose client id contains it are affected.

        Raises
        ------
        ValueError
            Bad ``n``, ``delay_s``/``hold_s`` (finite, 0..3600 s), ``mode`` or ``match``.
        """
        if mode not in LATE_MODES:
            raise ValueError(f"mode must be one of {', '.join(LATE_MODES)}, got {mode!r}")
        item = (_count(n), LateBooking(_seconds(delay_s, "delay_s"), mode,
                                       _seconds(hold_s, "hold_s")), _match(match))
        with self._lock:
            self._late.append(item)

    def clear(self) -> None:
        """Disarm everything, including latency (late bookings already scheduled stay)."""
        with self._lock:
            self._latency_ms = 0.0
            self._fail.clear()
            self._rate.clear()
            self._timeout.clear()
            self._reject.clear()
            self._partial.clear()
            self._drop.clear()
            self._late.clear()
            self._maintenance.clear()
            if self._random is not None:
                self._random.rate = 0.0

    def random_faults(
        self, rate: float, seed: int = 0, kinds: Sequence[str] | None = None,
        latency_s: float = 0.3, timeout_s: float = 2.0, late_delay_s: float = 0.5,
    ) -> None:
        """Inject faults at random: each exchange request, with probability ``rate``, gets
        one fault of a kind drawn uniformly from ``kinds`` (default all of
        :data:`RANDOM_KINDS`); the order kinds are drawn only for new orders and hit that
        order alone (matched by its client id). ``rate=0`` disarms; arming again restarts
        the seeded draw and the counts (:meth:`random_injected`).

        The kinds: ``latency`` (the request is held ``latency_s``, then handled: a spike
        shorter than the client's timeout), ``5xx`` (503), ``timeout`` (held ``timeout_s``,
        longer than the client's timeout, then handled: an order is still booked),
        ``rate_limit`` (429 with ``Retry-After: 1``: a minute's wait per fault would only
        slow a soak), ``maintenance`` (503, code 1), ``reject`` (-2019 insufficient
        margin), ``partial_fill`` (20-80% filled), ``drop_response`` (booked, the response
        lost: closed or 503) and ``book_late`` (booked ``late_delay_s`` later, the request
        answered per a drawn late mode).

        A soak test uses it to spread rare faults over a long run, as a real venue does,
        instead of arming each one at a chosen request.

        Raises
        ------
        ValueError
            ``rate`` outside [0, 1], an unknown kind, or a delay outside 0..3600 s.
        """
        r = _number(rate, "rate", 0.0, 1.0)
        s = _number(seed, "seed", 0, 2**63 - 1)
        if s != math.floor(s):
            raise ValueError(f"seed must be a whole number, got {seed!r}")
        chosen = tuple(RANDOM_KINDS if kinds is None else kinds)
        bad = [k for k in chosen if k not in RANDOM_KINDS]
        if bad or not chosen or isinstance(kinds, str):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(RANDOM_KINDS)}; "
                             f"got {kinds!r}")
        state = _RandomFaults(r, int(s), chosen, _seconds(latency_s, "latency_s"),
                              _seconds(timeout_s, "timeout_s"),
                              _seconds(late_delay_s, "late_delay_s"))
        with self._lock:
            self._random = state

    def random_injected(self) -> dict[str, int]:
        """How many faults of each kind :meth:`random_faults` has injected since armed."""
        with self._lock:
            return {} if self._random is None else dict(self._random.injected)

    def roll(self, path: str, is_order: bool, client_id: str | None = None) -> str | None:
        """Draw the random fault of one exchange request (the server calls this first):
        with probability ``rate`` arm a one-use fault of a drawn kind for it (an order
        fault matches ``client_id``) and return the kind; None when nothing is drawn."""
        with self._lock:
            rnd = self._random
            if rnd is None or rnd.rate <= 0.0 or rnd.rng.random() >= rnd.rate:
                return None
            options = [k for k in rnd.kinds if is_order or k not in _ORDER_KINDS]
            if not options:
                return None
            kind = rnd.rng.choice(options)
            ratio = round(rnd.rng.uniform(0.2, 0.8), 2)
            mode = rnd.rng.choice(LATE_MODES)
            rnd.injected[kind] = rnd.injected.get(kind, 0) + 1
        if kind == "latency":
            self.timeout_next(1, rnd.latency_s, path)
        elif kind == "timeout":
            self.timeout_next(1, rnd.timeout_s, path)
        elif kind == "5xx":
            self.fail_next(1, 503, path)
        elif kind == "rate_limit":
            self.rate_limit_next(1, path, retry_after_s=1)
        elif kind == "maintenance":
            self.maintenance_next(1, path)
        elif kind == "reject":
            self.reject_next_orders(1, -2019, match=client_id)
        elif kind == "partial_fill":
            self.partial_fill_next(1, ratio, match=client_id)
        elif kind == "drop_response":
            self.drop_response_next_orders(1, "5xx" if mode == "5xx" else "close",
                                           match=client_id)
        else:
            self.book_late_next_orders(1, rnd.late_delay_s, mode, rnd.timeout_s,
                                       match=client_id)
        return kind

    # ------------------------------------------------------------------ consuming
    @staticmethod
    def _take(items: list[_Counted], path: str) -> _Counted | None:
        for item in items:
            if item.matches(path):
                item.n -= 1
                if item.n <= 0:
                    items.remove(item)
                return item
        return None

    @staticmethod
    def _take_first(items: list[Any], client_id: str | None = None) -> Any:
        """The payload of the first ``(n, *payload, match)`` entry whose ``match`` is None or
        part of ``client_id``, consuming one use of it."""
        for i, (n, *rest) in enumerate(items):
            *payload, match = rest
            if match is not None and (client_id is None or match not in client_id):
                continue
            items[i] = (n - 1, *rest)
            if n - 1 <= 0:
                items.pop(i)
            return payload[0] if len(payload) == 1 else tuple(payload)
        return None

    def take_http(self, path: str) -> HttpFault | None:
        """The HTTP-level fault for a request to ``path``, if one is armed (consumes it)."""
        with self._lock:
            if self._take(self._maintenance, path) is not None:
                return HttpFault("maintenance", status=503)
            if (t := self._take(self._timeout, path)) is not None:
                return HttpFault("timeout", seconds=t.seconds)
            if (r := self._take(self._rate, path)) is not None:
                return HttpFault("rate_limit", status=429, seconds=r.seconds)
            if (f := self._take(self._fail, path)) is not None:
                return HttpFault("status", status=f.status)
        return None

    def take_rejection(self, client_id: str | None = None) -> tuple[int, str | None] | None:
        """``(code, msg)`` for a new order with ``client_id`` if a rejection for it is
        armed (consumes one use)."""
        with self._lock:
            got: tuple[int, str | None] | None = self._take_first(self._reject, client_id)
            return got

    def take_partial(self, client_id: str | None = None) -> float | None:
        """Fill ratio for a new order with ``client_id`` if a partial fill is armed."""
        with self._lock:
            got: float | None = self._take_first(self._partial, client_id)
            return got

    def take_drop(self, client_id: str | None = None) -> str | None:
        """Drop mode for a new order's response (``client_id``) if armed."""
        with self._lock:
            got: str | None = self._take_first(self._drop, client_id)
            return got

    def take_late(self, client_id: str | None = None) -> LateBooking | None:
        """How to book a new order with ``client_id`` late, if a late booking is armed."""
        with self._lock:
            got: LateBooking | None = self._take_first(self._late, client_id)
            return got

    # ------------------------------------------------------------------ JSON control
    def to_dict(self) -> dict[str, Any]:
        """The armed faults as JSON-ready data (the shape :meth:`apply` accepts)."""
        with self._lock:
            return {
                "latency_ms": self._latency_ms,
                "fail_next": [{"n": f.n, "status": f.status, "path": f.path} for f in self._fail],
                "rate_limit_next": [
                    {"n": f.n, "path": f.path}
                    | ({"retry_after_s": int(f.seconds)} if f.seconds else {})
                    for f in self._rate
                ],
                "timeout_next": [
                    {"n": f.n, "seconds": f.seconds, "path": f.path} for f in self._timeout
                ],
                "maintenance_next": [{"n": f.n, "path": f.path} for f in self._maintenance],
                "reject_next_orders": [
                    _matched({"n": n, "code": c, "msg": m}, x) for n, c, m, x in self._reject
                ],
                "partial_fill_next": [
                    _matched({"n": n, "ratio": r}, x) for n, r, x in self._partial
                ],
                "drop_response_next_orders": [
                    _matched({"n": n, "mode": m}, x) for n, m, x in self._drop
                ],
                "book_late_next_orders": [
                    _matched({"n": n, "delay_s": b.delay_s, "mode": b.mode, "hold_s": b.hold_s},
                             x)
                    for n, b, x in self._late
                ],
                **({} if self._random is None or self._random.rate <= 0 else {
                    "random_faults": self._random.spec()}),
                "random_injected": {} if self._random is None else dict(self._random.injected),
            }

    def apply(self, spec: dict[str, Any]) -> None:
        """Arm faults from JSON, e.g. ``{"clear": true, "latency_ms": 20, "fail_next":
        {"n": 2, "status": 503}}``; each fault key takes an object or a list of objects.

        Everything is validated before anything is armed, so a bad spec changes nothing.

        Raises
        ------
        ValueError
            On an unknown key or bad arguments (naming them and what is allowed).
        """
        if not isinstance(spec, dict):
            raise ValueError(f"faults must be a JSON object, got {spec!r}")
        arms: dict[str, Callable[..., None]] = {
            "fail_next": self.fail_next,
            "rate_limit_next": self.rate_limit_next,
            "timeout_next": self.timeout_next,
            "maintenance_next": self.maintenance_next,
            "reject_next_orders": self.reject_next_orders,
            "partial_fill_next": self.partial_fill_next,
            "drop_response_next_orders": self.drop_response_next_orders,
            "book_late_next_orders": self.book_late_next_orders,
            "random_faults": self.random_faults,
        }
        unknown = set(spec) - set(arms) - {"clear", "latency_ms", "random_injected"}
        if unknown:
            raise ValueError(
                f"unknown fault keys {sorted(unknown)}; allowed: clear, latency_ms, "
                + ", ".join(arms)
            )
        latency = (_number(spec["latency_ms"], "latency_ms", 0.0, MAX_LATENCY_MS)
                   if "latency_ms" in spec else None)
        staged = Faults()  # validate every entry on a scratch object first
        calls: list[tuple[str, dict[str, Any]]] = []
        for key in arms:
            if key not in spec:
                continue
            value = spec[key]
            for kwargs in value if isinstance(value, list) else [value]:
                if not isinstance(kwargs, dict):
                    raise ValueError(f"{key} takes an object of arguments, got {kwargs!r}")
                try:
                    getattr(staged, key)(**kwargs)
                except TypeError as e:
                    raise ValueError(f"bad arguments for {key}: {e}") from None
                except ValueError as e:
                    raise ValueError(f"{key}: {e}") from None
                calls.append((key, kwargs))
        if spec.get("clear"):
            self.clear()
        if latency is not None:
            self.latency_ms = latency
        for key, kwargs in calls:
            arms[key](**kwargs)
