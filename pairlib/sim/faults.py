"""Fault injection for the simulated exchange.

A :class:`Faults` object is shared by the server's request threads. Tests arm it in-process
(``server.faults.fail_next(2)``) or over HTTP (``POST /sim/faults`` with the JSON produced by
:meth:`Faults.to_dict`). Each armed fault is consumed by the requests it hits:

=====================  ====================================================================
``latency_ms``         added to every exchange request (not ``/sim/`` admin calls)
``fail_next``          the next N matching requests answer HTTP ``status`` (5xx) with a text
                       body, so ccxt maps it by status (503 -> ExchangeNotAvailable)
``rate_limit_next``    the next N matching requests answer HTTP 429 with code -1003
``timeout_next``       the next N matching requests sleep ``seconds`` before being handled
                       (longer than the client's timeout -> ccxt RequestTimeout)
``reject_next_orders`` the next N new orders are rejected with a Binance error ``code``
``partial_fill_next``  the next N new orders fill only ``ratio`` of their quantity; the rest
                       stays open as PARTIALLY_FILLED
``drop_response_next`` the next N new orders are booked, then the connection is closed
``_orders``            without a response (``mode="close"``) or answered 503 (``"5xx"``)
=====================  ====================================================================

``path`` filters match when the request path starts with them (e.g. ``/fapi/v1/klines``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Faults", "HttpFault"]


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
    """A fault to apply to one request: ``kind`` is ``"status"``, ``"rate_limit"`` or
    ``"timeout"``."""

    kind: str
    status: int = 503
    seconds: float = 0.0


class Faults:
    """Armed faults; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency_ms: float = 0.0
        self._fail: list[_Counted] = []
        self._rate: list[_Counted] = []
        self._timeout: list[_Counted] = []
        self._reject: list[tuple[int, int, str | None]] = []  # [n, code, msg]
        self._partial: list[tuple[int, float]] = []
        self._drop: list[tuple[int, str]] = []

    # ------------------------------------------------------------------ arming
    def fail_next(self, n: int = 1, status: int = 503, path: str | None = None) -> None:
        """Answer the next ``n`` requests (matching ``path``) with HTTP ``status``."""
        if not 500 <= status <= 599:
            raise ValueError(f"fail_next needs a 5xx status, got {status}")
        with self._lock:
            self._fail.append(_Counted(int(n), path, status=int(status)))

    def rate_limit_next(self, n: int = 1, path: str | None = None) -> None:
        """Answer the next ``n`` requests with HTTP 429 (code -1003)."""
        with self._lock:
            self._rate.append(_Counted(int(n), path))

    def timeout_next(self, n: int = 1, seconds: float = 5.0, path: str | None = None) -> None:
        """Delay the next ``n`` requests by ``seconds`` (then handle them normally)."""
        with self._lock:
            self._timeout.append(_Counted(int(n), path, seconds=float(seconds)))

    def reject_next_orders(self, n: int = 1, code: int = -2019, msg: str | None = None) -> None:
        """Reject the next ``n`` new orders with Binance error ``code``."""
        with self._lock:
            self._reject.append((int(n), int(code), msg))

    def partial_fill_next(self, n: int = 1, ratio: float = 0.5) -> None:
        """Fill only ``ratio`` (0 < ratio < 1) of the next ``n`` orders' quantity."""
        if not 0.0 < ratio < 1.0:
            raise ValueError(f"ratio must be in (0, 1), got {ratio}")
        with self._lock:
            self._partial.append((int(n), float(ratio)))

    def drop_response_next_orders(self, n: int = 1, mode: str = "close") -> None:
        """Book the next ``n`` orders but lose the response (``"close"`` or ``"5xx"``)."""
        if mode not in ("close", "5xx"):
            raise ValueError(f"mode must be 'close' or '5xx', got {mode!r}")
        with self._lock:
            self._drop.append((int(n), mode))

    def clear(self) -> None:
        """Disarm everything, including latency."""
        with self._lock:
            self.latency_ms = 0.0
            self._fail.clear()
            self._rate.clear()
            self._timeout.clear()
            self._reject.clear()
            self._partial.clear()
            self._drop.clear()

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

    def take_http(self, path: str) -> HttpFault | None:
        """The HTTP-level fault for a request to ``path``, if one is armed (consumes it)."""
        with self._lock:
            if (t := self._take(self._timeout, path)) is not None:
                return HttpFault("timeout", seconds=t.seconds)
            if self._take(self._rate, path) is not None:
                return HttpFault("rate_limit", status=429)
            if (f := self._take(self._fail, path)) is not None:
                return HttpFault("status", status=f.status)
        return None

    def take_rejection(self) -> tuple[int, str | None] | None:
        """``(code, msg)`` for the next new order if a rejection is armed."""
        with self._lock:
            if not self._reject:
                return None
            n, code, msg = self._reject[0]
            self._reject[0] = (n - 1, code, msg)
            if n - 1 <= 0:
                self._reject.pop(0)
            return code, msg

    def take_partial(self) -> float | None:
        """Fill ratio for the next new order if a partial fill is armed."""
        with self._lock:
            if not self._partial:
                return None
            n, ratio = self._partial[0]
            self._partial[0] = (n - 1, ratio)
            if n - 1 <= 0:
                self._partial.pop(0)
            return ratio

    def take_drop(self) -> str | None:
        """Drop mode for the next new order's response if armed."""
        with self._lock:
            if not self._drop:
                return None
            n, mode = self._drop[0]
            self._drop[0] = (n - 1, mode)
            if n - 1 <= 0:
                self._drop.pop(0)
            return mode

    # ------------------------------------------------------------------ JSON control
    def to_dict(self) -> dict[str, Any]:
        """The armed faults as JSON-ready data (the shape :meth:`apply` accepts)."""
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "fail_next": [{"n": f.n, "status": f.status, "path": f.path} for f in self._fail],
                "rate_limit_next": [{"n": f.n, "path": f.path} for f in self._rate],
                "timeout_next": [
                    {"n": f.n, "seconds": f.seconds, "path": f.path} for f in self._timeout
                ],
                "reject_next_orders": [
                    {"n": n, "code": c, "msg": m} for n, c, m in self._reject
                ],
                "partial_fill_next": [{"n": n, "ratio": r} for n, r in self._partial],
                "drop_response_next_orders": [{"n": n, "mode": m} for n, m in self._drop],
            }

    def apply(self, spec: dict[str, Any]) -> None:
        """Arm faults from JSON, e.g. ``{"clear": true, "latency_ms": 20, "fail_next":
        {"n": 2, "status": 503}}``; each fault key takes an object or a list of objects.

        Raises
        ------
        ValueError
            On an unknown key or bad arguments.
        """
        arms: dict[str, Callable[..., None]] = {
            "fail_next": self.fail_next,
            "rate_limit_next": self.rate_limit_next,
            "timeout_next": self.timeout_next,
            "reject_next_orders": self.reject_next_orders,
            "partial_fill_next": self.partial_fill_next,
            "drop_response_next_orders": self.drop_response_next_orders,
        }
        unknown = set(spec) - set(arms) - {"clear", "latency_ms"}
        if unknown:
            raise ValueError(
                f"unknown fault keys {sorted(unknown)}; allowed: clear, latency_ms, "
                + ", ".join(arms)
            )
        if spec.get("clear"):
            self.clear()
        if "latency_ms" in spec:
            latency = float(spec["latency_ms"])
            if latency < 0:
                raise ValueError(f"latency_ms must be >= 0, got {latency}")
            self.latency_ms = latency
        for key, arm in arms.items():
            if key not in spec:
                continue
            value = spec[key]
            for kwargs in value if isinstance(value, list) else [value]:
                if not isinstance(kwargs, dict):
                    raise ValueError(f"{key} takes an object of arguments, got {kwargs!r}")
                try:
                    arm(**kwargs)
                except TypeError as e:
                    raise ValueError(f"bad arguments for {key}: {e}") from None
