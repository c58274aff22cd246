"""Pacing of venue requests: a rolling-window request-weight budget (installed as ccxt's
``throttle`` hook by :mod:`pairlib.venue.exchange`) and the backoff of retried reads."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryPolicy", "RollingWeightLimiter"]


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for retried reads: attempt ``k`` (0-based) waits about ``base * 2**k``.

    The wait is capped at ``max_delay`` and jittered into ``[0.5, 1.0]`` of its value by a
    seeded generator (deterministic sequence per adapter).
    """

    max_retries: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        raw = min(self.max_delay, self.base_delay * (2.0**attempt))
        return raw * (0.5 + 0.5 * rng.random())


class RollingWeightLimiter:
    """Request-weight budget over a rolling window, as a ccxt ``throttle`` hook.

    Waits only when the weight used in the last ``window_s`` seconds plus the next request's
    cost would exceed ``limit`` (Binance: REQUEST_WEIGHT 2400 per minute). Thread-safe.

    Parameters
    ----------
    limit : float
        Weight allowed per window.
    window_s : float
        Window length in seconds.
    clock, sleep : callables
        Monotonic time and sleep (injected for tests).
    """

    def __init__(
        self,
        limit: float,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if limit <= 0:
            raise ValueError(f"weight limit must be positive, got {limit}")
        self.limit, self.window_s = float(limit), float(window_s)
        self._clock, self._sleep = clock, sleep
        self._log: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def used(self) -> float:
        """Weight spent inside the current window."""
        with self._lock:
            self._expire(self._clock())
            return sum(w for _, w in self._log)

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self._log and self._log[0][0] <= cutoff:
            self._log.pop(0)

    def __call__(self, cost: float | None = None) -> None:
        weight = min(float(1 if cost is None else cost), self.limit)
        while True:
            with self._lock:
                now = self._clock()
                self._expire(now)
                used = sum(w for _, w in self._log)
                if used + weight <= self.limit:
                    self._log.append((now, weight))
                    return
                wait = self._log[0][0] + self.window_s - now
            self._sleep(max(wait, 0.001))
