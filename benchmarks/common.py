"""Shared helpers for benchmarks: one row per measured figure, printed side by side."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Row", "best_of"]


@dataclass(frozen=True)
class Row:
    """One benchmark figure.

    ``measured`` and ``baseline`` share ``unit``; ``target`` is a human-readable goal such as
    ``"<= 10 s"``; ``ok`` says whether the target was met.
    """

    name: str
    measured: float
    unit: str
    target: str
    ok: bool
    baseline: str = ""


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Best wall time in seconds of ``repeat`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
