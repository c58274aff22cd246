"""Venue-neutral records that :class:`pairlib.venue.exchange.Exchange` returns: frozen dataclasses
with floats, millisecond ints and unified symbols (``"BTC/USDT:USDT"``). Nothing here imports
ccxt, so the simulator, execution and tests can use them without it."""

from __future__ import annotations

from dataclasses import dataclass, field

from pairlib import errors

__all__ = [
    "Balance",
    "FundingPayment",
    "FundingRate",
    "MarketInfo",
    "OhlcvBatch",
    "OhlcvRequest",
    "OrderResult",
    "PositionInfo",
    "TradeInfo",
]


@dataclass(frozen=True)
class MarketInfo:
    """Trading rules of one USDT-margined linear perpetual.

    Attributes
    ----------
    symbol : str
        Unified symbol, e.g. ``"BTC/USDT:USDT"``.
    id : str
        Venue id, e.g. ``"BTCUSDT"``.
    amount_step : float
        Order quantity step (in contracts).
    min_amount : float
        Smallest order quantity.
    min_notional : float
        Smallest order notional in USDT (0 when the venue has none).
    price_step : float
        Price tick.
    contract_size : float
        Base units per contract (1 on Binance USDⓈ-M).
    """

    symbol: str
    id: str
    amount_step: float
    min_amount: float
    min_notional: float
    price_step: float
    contract_size: float


@dataclass(frozen=True)
class OrderResult:
    """An order as the venue reports it.

    ``status`` is ccxt's unified status: ``"open"``, ``"closed"`` (fully filled),
    ``"canceled"``, ``"expired"`` or ``"rejected"``. ``fee`` is in the quote currency (0 when
    the venue does not report it with the order). ``timestamp`` is in ms.
    """

    id: str
    client_id: str | None
    symbol: str
    side: str
    type: str
    amount: float
    filled: float
    average: float | None
    status: str
    fee: float
    timestamp: int | None
    reduce_only: bool


@dataclass(frozen=True)
class PositionInfo:
    """One open position; ``contracts`` and ``notional`` are signed (+ long, − short)."""

    symbol: str
    contracts: float
    entry_price: float
    unrealized_pnl: float
    notional: float


@dataclass(frozen=True)
class Balance:
    """Account balance in the settlement currency.

    ``equity`` is the margin balance (wallet balance plus unrealized PnL), ``free`` the
    balance available for new orders, ``used`` the initial margin in use.
    """

    equity: float
    free: float
    used: float
    currency: str = "USDT"


@dataclass(frozen=True)
class TradeInfo:
    """One fill of one of our orders (``fee`` in the quote currency, ``timestamp`` in ms)."""

    id: str
    order_id: str | None
    symbol: str
    side: str
    amount: float
    price: float
    fee: float
    timestamp: int | None


@dataclass(frozen=True)
class FundingPayment:
    """A funding payment: ``amount`` > 0 received, < 0 paid (quote currency)."""

    symbol: str
    amount: float
    timestamp: int | None


@dataclass(frozen=True)
class FundingRate:
    """One settled funding rate of a perpetual (public history).

    Attributes
    ----------
    timestamp : int
        Funding time, ms (rounded to the minute).
    rate : float
        The rate settled then; a long position pays ``amount * mark_price * rate``.
    mark_price : float or None
        The venue's mark price the payments were valued at; ``None`` when the venue did not
        send it.
    """

    timestamp: int
    rate: float
    mark_price: float | None


@dataclass(frozen=True)
class OhlcvRequest:
    """One OHLCV page to fetch: candles opening in ``[since_ms, until_ms]``, at most ``limit``.

    Hashable, so a batch answer is keyed by its requests.
    """

    symbol: str
    timeframe: str
    since_ms: int | None
    limit: int
    until_ms: int | None = None


@dataclass(frozen=True)
class OhlcvBatch:
    """Answer of :meth:`Exchange.fetch_ohlcv_batch`.

    Attributes
    ----------
    rows : dict
        Candles ``[open_ms, open, high, low, close, volume]`` per successful request.
    errors : dict
        pairlib :class:`~pairlib.errors.ExchangeError` per failed request (after retries).
    requests_sent : int
        HTTP requests made, retries included.
    """

    rows: dict[OhlcvRequest, list[list[float]]] = field(repr=False)
    errors: dict[OhlcvRequest, errors.ExchangeError] = field(repr=False)
    requests_sent: int = 0

    def __repr__(self) -> str:
        n = sum(len(r) for r in self.rows.values())
        return (
            f"OhlcvBatch({len(self.rows)} ok, {len(self.errors)} failed, {n} candles, "
            f"requests_sent={self.requests_sent})"
        )
