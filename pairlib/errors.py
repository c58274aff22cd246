"""pairlib's exception tree.

Every error the library raises on purpose derives from :class:`PairlibError`::

    PairlibError
    ├── ConfigError              bad params file: names file, key, value and what is allowed
    ├── DataError                unusable market data (too short, no symbols left, ...)
    ├── StoreError               state database unusable: corrupt, locked, read-only, disk full, ...
    ├── LiveTradingRefused       live venue requested without every required flag and key
    ├── AcceptRefused            ``pairlib reconcile --accept`` refused; the store is unchanged
    ├── JobLocked                another tick job (or its kernel) holds the job lock
    ├── TickFailed               a failed, refused or degraded tick (``raise_for_status``)
    └── ExchangeError            anything that went wrong talking to a venue
        ├── ExchangeUnavailable  network failure, timeout, 5xx, maintenance (retryable)
        │   └── RateLimited      HTTP 429 / 418 (retryable, after backoff)
        ├── AuthenticationFailed bad key, bad signature, timestamp outside recvWindow
        ├── InsufficientFunds    not enough margin for the order (-2019)
        ├── InvalidOrder         rejected order: duplicate client id (-4116), bad amount, ...
        ├── OrderNotFound        no order with that id / client id
        └── MarketNotListed      the venue does not know the symbol (-1121): delisted

Exchange errors are raised by ``pairlib.venue.exchange`` only, translated from ccxt's exceptions
with ``raise ... from e`` so the original stays attached.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "DataError",
    "ExchangeError",
    "ExchangeUnavailable",
    "InsufficientFunds",
    "InvalidOrder",
    "LiveTradingRefused",
    "MarketNotListed",
    "OrderNotFound",
    "PairlibError",
    "RateLimited",
    "StoreError",
    "AcceptRefused",
    "JobLocked",
    "TickFailed",
]


class PairlibError(Exception):
    """Base class of every error pairlib raises on purpose."""


class ConfigError(PairlibError, ValueError):
    """A params file or argument is invalid; the message names what and what is allowed."""


class DataError(PairlibError):
    """Market data is unusable for the requested operation."""


class StoreError(PairlibError):
    """The state database cannot be opened, migrated, read or written (corrupt or truncated
    file, locked by another process, read-only, disk full, schema too new, ...) or a store
    call was given inconsistent data; the message names the file and what to do."""


class LiveTradingRefused(PairlibError):
    """Live trading was requested without every required safeguard."""


class ExchangeError(PairlibError):
    """A venue call failed."""


class ExchangeUnavailable(ExchangeError):
    """Network error, timeout, 5xx or maintenance: safe to retry a read."""


class RateLimited(ExchangeUnavailable):
    """The venue's request-weight limit was hit (HTTP 429/418)."""


class AuthenticationFailed(ExchangeError):
    """Bad API key, signature, or timestamp."""


class InsufficientFunds(ExchangeError):
    """Not enough margin for the order."""


class InvalidOrder(ExchangeError):
    """The venue rejected the order (duplicate client id, bad amount, ...)."""


class OrderNotFound(ExchangeError):
    """No order with the given id or client order id."""


class MarketNotListed(ExchangeError):
    """The venue does not know the symbol (Binance -1121 "Invalid symbol", ccxt's
    ``BadSymbol``): the market was delisted or never existed, so no order, look-up or quote
    on it can succeed and retrying will not change that. Raised also when the symbol was
    listed when the market list was loaded and the venue stopped listing it since."""


class AcceptRefused(PairlibError):
    """``pairlib reconcile --accept`` refused: the store was left unchanged (the message says
    why)."""


class JobLocked(PairlibError):
    """Another tick job of the same state folder (or a kernel it started) holds the job lock;
    the message names the holder's pid, ``as_of`` and start time."""


class TickFailed(PairlibError):
    """Raised by :meth:`pairlib.engine.tick_result.TickResult.raise_for_status` for a failed,
    refused or degraded tick."""
