"""Small argument checks shared by the pure modules (never a silent bad number)."""

from __future__ import annotations

import math

__all__ = ["finite"]


def finite(name: str, value: float) -> float:
    """``value`` as a finite float, or a ValueError naming ``name`` and the value."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return f
