"""What the simulated venue needs from a market: the :class:`MarketSource` protocol.

:class:`~pairlib.sim.server.SimServer`, its account book and its endpoints read prices,
candles, rules and funding through this surface only. Two implementations:
:class:`~pairlib.sim.market.Market` (the seeded synthetic market) and
:class:`~pairlib.sim.live_source.PublicMarket` (a real venue's public data, for ``paper``).

Notes
-----
Symbols are Binance ids (``"BTCUSDT"``); times are milliseconds since the epoch.
``spec`` identifies the market an account file was written for (the account refuses to
continue a file written for another spec).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from pairlib.sim.paths import PlantedPair

__all__ = ["MarketSource", "SpecLike"]


class SpecLike(Protocol):
    """The identity of a market (the fields of :class:`~pairlib.sim.market.MarketSpec`)."""

    @property
    def seed(self) -> int: ...
    @property
    def n_symbols(self) -> int: ...
    @property
    def n_pairs(self) -> int: ...
    @property
    def genesis(self) -> datetime: ...
    @property
    def horizon_bars(self) -> int: ...
    @property
    def half_lives(self) -> tuple[float, ...] | None: ...
    @property
    def breakdowns(self) -> bool: ...


class MarketSource(Protocol):
    """Prices, candles, rules and funding of USDT perpetuals, as the simulator uses them."""

    @property
    def spec(self) -> SpecLike: ...
    @property
    def symbols(self) -> tuple[str, ...]: ...
    @property
    def ground_truth(self) -> tuple[PlantedPair, ...]: ...
    @property
    def horizon_end(self) -> datetime: ...

    def unified(self, symbol_id: str) -> str: ...
    def base_asset(self, symbol_id: str) -> str: ...
    def rules(self, symbol: str) -> dict[str, Any]: ...
    def price(self, symbol: str, now_ms: int) -> float: ...
    def price_range(self, symbol: str, start_ms: int, end_ms: int) -> tuple[float, float]: ...
    def klines(
        self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None,
        limit: int, now_ms: int,
    ) -> list[list[Any]]: ...
    def funding_times(self, start_ms: int, end_ms: int) -> list[int]: ...
    def funding_rate(self, symbol: str, funding_time_ms: int) -> float: ...
    def predicted_funding_rate(self, symbol: str, now_ms: int) -> float: ...
