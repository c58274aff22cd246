"""Real public market data as the simulator's market: the ``paper`` venue's price source.

:class:`PublicMarket` implements :class:`~pairlib.sim.source.MarketSource` over a keyless
:class:`~pairlib.venue.exchange.Exchange` (public endpoints only): the symbols and trading rules
come from the venue's markets, candles from its OHLCV, the current price from its last-price
ticker. A :class:`~pairlib.sim.server.SimServer` over it keeps a simulated account (fills,
fees, slippage, margin, persisted state) at real prices; :func:`pairlib.venue.open.open_exchange`
wires it for ``venue.kind: paper`` and yields a :class:`PaperExchange` pointed at that
server.

Conventions
-----------
* Symbols are presented with Binance ids, ``<BASE>USDT`` (``BTC/USDT:USDT`` -> ``BTCUSDT``),
  because the simulator speaks Binance's API; the unified symbol seen through the paper
  venue is the public venue's own.
* The source's *present* is the ``now`` it was built with (the session's sim time). Prices
  at or after it are the public venue's last price (cached ``ticker_ttl_s`` seconds);
  earlier prices (funding settlements, the 24 h ticker, resting-order ranges) are the open
  of the public 1h candle containing that time.
* The mark price at a funding time is the venue's own, the one its funding-rate history
  sends with that time's rate (``FundingRate.mark_price``), so a funding payment is
  ``-amount * mark * rate`` exactly as the venue (and the backtest) compute it. At any other
  time, and at a funding time whose rate came without a mark (said in a log line), it is
  the last price of :meth:`PublicMarket.price` (the adapter has no live mark-price read):
  unrealised PnL between funding times is valued at the last price.
* Candles are the public venue's, cut at the sim time (nothing opening after it). The
  public OHLCV carries no quote volume, trade count or taker volumes: quote volume is
  estimated as ``volume * (o + h + l + c) / 4``, the others are 0.
* Amounts are in base units: a venue with ``contract_size != 1`` has its amount step and
  minimum scaled by it.
* Funding settles every 8 h (00:00, 08:00, 16:00 UTC). Rates and their marks come from
  ``funding_history`` (a callable ``(unified_symbol, start_ms, end_ms) -> [FundingRate]``,
  e.g. :meth:`Exchange.fetch_funding_rate_history`) when one is given; without one every
  rate is 0. A funding time the history does not list has rate 0.

Everything fetched is cached for the life of the object (a paper session is one tick): the
markets once, candle pages per request (LRU), hourly opens per hour, the ticker for
``ticker_ttl_s``. Calls are serialized (the simulator serves requests on many threads and
ccxt's synchronous client is not meant to be shared between them).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from pairlib import errors
from pairlib.checks import loopback_url
from pairlib.config import Secrets, VenueParams
from pairlib.sim.market import FUNDING_MS, HOUR_MS, INTERVALS
from pairlib.sim.paths import PlantedPair
from pairlib.venue.exchange import Exchange
from pairlib.venue.records import FundingRate, MarketInfo

__all__ = [
    "PUBLIC_GENESIS",
    "PaperExchange",
    "PublicMarket",
    "PublicSpec",
    "public_exchange",
]

PUBLIC_GENESIS = datetime(2019, 1, 1, tzinfo=UTC)
"""Earliest time a paper venue accepts (before any USDT perpetual we trade)."""
_HORIZON_END = datetime(2100, 1, 1, tzinfo=UTC)
_MAX_QTY = 1e12  # the adapter's MarketInfo carries no maximum: effectively unlimited
_CACHE_PAGES = 512

log = logging.getLogger(__name__)

FundingHistory = Callable[[str, int, int], Sequence[FundingRate]]
"""``(unified_symbol, start_ms, end_ms) -> [FundingRate]``: the settled rates with funding
times in ``[start_ms, end_ms]``, each with the venue's mark price then (or ``None``)."""


@dataclass(frozen=True)
class PublicSpec:
    """The account-file identity of a public source (the simulator's spec fields).

    ``n_symbols = 0`` never occurs for a synthetic market, so a ``sim`` account file is
    never continued by a ``paper`` venue, nor the reverse.
    """

    seed: int = 0
    n_symbols: int = 0
    n_pairs: int = 0
    genesis: datetime = PUBLIC_GENESIS
    horizon_bars: int = 0
    half_lives: tuple[float, ...] | None = None
    breakdowns: bool = False


def _decimals(step: float) -> int:
    """Decimal places of a step: 0.01 -> 2, 0.005 -> 3, 1e-08 -> 8, 10 -> 0."""
    exp = Decimal(repr(float(step))).normalize().as_tuple().exponent
    return max(0, -int(exp))


def _num(x: float) -> str:
    """Shortest positional decimal that parses back to exactly ``x``."""
    return np.format_float_positional(float(x), trim="-")


class PublicMarket:
    """A real venue's public data behind the simulator's market interface.

    Parameters
    ----------
    exchange : Exchange
        A keyless adapter (public endpoints only); not closed by this object.
    now : datetime
        The present of this session (see the module docstring).
    funding_history : callable, optional
        The venue's funding-rate history with its mark prices (:data:`FundingHistory`);
        default: none (every rate is 0).
    ticker_ttl_s : float
        How long a fetched last price stays fresh.
    monotonic : callable
        Monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        exchange: Exchange,
        now: datetime,
        *,
        funding_history: FundingHistory | None = None,
        ticker_ttl_s: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if now.tzinfo is None:
            raise ValueError(f"now must be timezone-aware, got {now!r}")
        self._ex = exchange
        self._present_ms = int(round(now.timestamp() * 1000))
        self._funding_history = funding_history
        self._ttl = float(ticker_ttl_s)
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self.spec = PublicSpec()
        self.ground_truth: tuple[PlantedPair, ...] = ()
        self._info: dict[str, MarketInfo] = {}
        self._rules: dict[str, dict[str, Any]] = {}
        for sym, info in sorted(exchange.markets().items()):
            rules = _rules(info)
            sid = f"{sym.split('/')[0]}USDT"
            if rules is None or sid in self._info:
                continue
            self._info[sid] = info
            self._rules[sid] = rules
        self.symbols: tuple[str, ...] = tuple(self._info)
        self._pages: OrderedDict[tuple[Any, ...], list[list[float]]] = OrderedDict()
        self._hour_open: dict[tuple[str, int], float] = {}
        self._ticker: dict[str, float] = {}
        self._ticker_at = -math.inf
        self._funding: dict[tuple[str, int], FundingRate | None] = {}
        self._markless: set[tuple[str, int]] = set()  # funding times logged without a mark

    # ------------------------------------------------------------------ structure
    @property
    def horizon_end(self) -> datetime:
        """Open-ended: any later sim time is served with the latest public prices."""
        return _HORIZON_END

    def unified(self, symbol_id: str) -> str:
        """The public venue's unified symbol of an id (``KeyError`` if unknown)."""
        try:
            return self._info[symbol_id].symbol
        except KeyError:
            raise KeyError(f"unknown symbol {symbol_id!r}") from None

    def base_asset(self, symbol_id: str) -> str:
        """Base asset of an id: ``"BTCUSDT"`` -> ``"BTC"``."""
        return self.unified(symbol_id).split("/")[0]

    def rules(self, symbol: str) -> dict[str, Any]:
        """Trading rules in the simulator's format (see :meth:`Market.rules`)."""
        try:
            return self._rules[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    # ------------------------------------------------------------------ candles
    def _page(self, sym: str, interval: str, since: int, until: int, limit: int
              ) -> list[list[float]]:
        """Candles of ``sym`` opening in ``[since, until]``, at most ``limit`` (cached)."""
        key = (sym, interval, since, until, limit)
        with self._lock:
            got = self._pages.get(key)
            if got is not None:
                self._pages.move_to_end(key)
                return got
            iv = INTERVALS[interval] * HOUR_MS
            rows: dict[int, list[float]] = {}
            cursor = since
            while len(rows) < limit and cursor <= until:
                page = self._ex.fetch_ohlcv(sym, interval, cursor, limit - len(rows), until)
                fresh = [r for r in page if since <= int(r[0]) <= until and int(r[0]) not in rows]
                if not fresh:
                    break
                for r in fresh:
                    rows[int(r[0])] = r
                cursor = max(rows) + iv
            got = [rows[k] for k in sorted(rows)][:limit]
            self._pages[key] = got
            if len(self._pages) > _CACHE_PAGES:
                self._pages.popitem(last=False)
            return got

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[list[Any]]:
        """Binance kline rows of the public candles opening at or before ``now_ms``.

        Same contract as :meth:`pairlib.sim.market.Market.klines` (with ``start_ms`` the
        first ``limit`` rows from it, else the last ``limit`` up to ``end_ms`` or now).
        """
        sym = self.unified(symbol)
        if interval not in INTERVALS:
            raise ValueError(f"unsupported interval {interval!r}; allowed: {', '.join(INTERVALS)}")
        if limit <= 0:
            return []
        iv = INTERVALS[interval] * HOUR_MS
        until = now_ms if end_ms is None else min(end_ms, now_ms)
        last_open = until - until % iv
        since = start_ms if start_ms is not None else last_open - (limit - 1) * iv
        if since > until:
            return []
        rows = self._page(sym, interval, since, until, limit)
        if start_ms is None:
            rows = rows[-limit:]
        rules = self._rules[symbol]
        out: list[list[Any]] = []
        for r in rows:
            t, o, h, low, c, v = (int(r[0]), *(float(x) for x in r[1:6]))
            quote = v * (o + h + low + c) / 4.0
            out.append([t, _num(o), _num(h), _num(low), _num(c),
                        f"{v:.{rules['quantityPrecision']}f}", t + iv - 1, f"{quote:.4f}", 0,
                        "0", "0", "0"])
        return out

    # ------------------------------------------------------------------ prices
    def _last_prices(self) -> dict[str, float]:
        with self._lock:
            if self._monotonic() - self._ticker_at > self._ttl:
                unified = [i.symbol for i in self._info.values()]
                self._ticker = self._ex.fetch_prices(unified)
                self._ticker_at = self._monotonic()
            return self._ticker

    def _open_at(self, symbol: str, t_ms: int) -> float:
        """Open of the public 1h candle containing ``t_ms`` (cached per hour)."""
        hour = t_ms - t_ms % HOUR_MS
        key = (symbol, hour)
        got = self._hour_open.get(key)
        if got is None:
            rows = self._page(self.unified(symbol), "1h", hour, hour, 1)
            if not rows:
                raise ValueError(
                    f"{symbol}: the public venue has no 1h candle at "
                    f"{datetime.fromtimestamp(hour / 1000, tz=UTC).isoformat()}"
                )
            got = float(rows[0][1])
            self._hour_open[key] = got
        return got

    def price(self, symbol: str, now_ms: int) -> float:
        """The public last price at or after the present; earlier, the hour's open."""
        sym = self.unified(symbol)
        if now_ms >= self._present_ms:
            p = self._last_prices().get(sym)
            if p is not None:
                return p
        return self._open_at(symbol, min(now_ms, self._present_ms))

    def mark_price(self, symbol: str, now_ms: int) -> float:
        """The mark price at ``now_ms``.

        At a funding time, the venue's mark price sent with that time's rate in its
        funding-rate history, so funding is paid at the mark the venue paid it at. Otherwise
        (no funding time, no history, no rate listed, or a rate sent without a mark: the
        last logged once per symbol and time) the last price of :meth:`price`, because the
        adapter has no live mark-price read.
        """
        if now_ms % FUNDING_MS == 0 and self._funding_history is not None:
            row = self._funding_row(symbol, now_ms)
            if row is not None and row.mark_price is not None:
                return row.mark_price
            last = self.price(symbol, now_ms)
            key = (symbol, now_ms)
            if row is not None and key not in self._markless:
                self._markless.add(key)
                log.warning(
                    "%s funding at %s: the venue sent rate %g without a mark price; funding "
                    "is valued at the last price %g instead", self.unified(symbol),
                    datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(), row.rate, last,
                )
            return last
        return self.price(symbol, now_ms)

    def price_range(self, symbol: str, start_ms: int, end_ms: int) -> tuple[float, float]:
        """Lowest and highest price in ``[start_ms, end_ms]`` from the prices at both ends
        and the public 1h candles lying wholly inside (no look-ahead)."""
        if end_ms < start_ms:
            raise ValueError("end_ms must not be before start_ms")
        pa, pb = self.price(symbol, start_ms), self.price(symbol, end_ms)
        lo, hi = min(pa, pb), max(pa, pb)
        first = -(-start_ms // HOUR_MS) * HOUR_MS
        last = end_ms - HOUR_MS  # the last hour ending inside the range opens at or before
        if last >= first:
            n = (last - first) // HOUR_MS + 1
            for r in self._page(self.unified(symbol), "1h", first, last, int(n)):
                lo, hi = min(lo, float(r[3])), max(hi, float(r[2]))
        return lo, hi

    # ------------------------------------------------------------------ funding
    def funding_times(self, start_ms: int, end_ms: int) -> list[int]:
        """Funding times (every 8 h from 00:00 UTC) in ``[start_ms, end_ms]``."""
        first = -(-max(start_ms, 0) // FUNDING_MS) * FUNDING_MS
        return list(range(first, end_ms + 1, FUNDING_MS))

    def funding_rate(self, symbol: str, funding_time_ms: int) -> float:
        """The settled rate at a funding time (0 without a ``funding_history`` source, or
        when the history lists no rate then)."""
        if funding_time_ms % FUNDING_MS:
            raise ValueError(f"{funding_time_ms} is not a funding time")
        row = self._funding_row(symbol, funding_time_ms)
        return 0.0 if row is None else row.rate

    def _funding_row(self, symbol: str, funding_time_ms: int) -> FundingRate | None:
        """The history's row at a funding time (None without a source or a row).

        Read with the 30 funding times before it in one request, and cached: the account
        settles consecutive funding times and asks for each rate and mark in turn.
        """
        if self._funding_history is None:
            return None
        key = (symbol, funding_time_ms)
        with self._lock:
            if key not in self._funding:
                start = funding_time_ms - 30 * FUNDING_MS
                rows = {r.timestamp: r for r in
                        self._funding_history(self.unified(symbol), start, funding_time_ms)}
                for t in range(start - start % FUNDING_MS, funding_time_ms + 1, FUNDING_MS):
                    self._funding[(symbol, t)] = rows.get(t)
            return self._funding[key]

    def predicted_funding_rate(self, symbol: str, now_ms: int) -> float:
        """The last settled rate at or before ``now_ms`` (the venue's prediction is not
        read)."""
        return self.funding_rate(symbol, now_ms - now_ms % FUNDING_MS)


def _rules(info: MarketInfo) -> dict[str, Any] | None:
    """The simulator's rules of one public market, or None when it cannot be traded."""
    cs = info.contract_size if info.contract_size > 0 else 1.0
    step = info.amount_step * cs
    tick = info.price_step
    if not (step > 0 and tick > 0 and math.isfinite(step) and math.isfinite(tick)):
        return None
    qdec, pdec = _decimals(step), _decimals(tick)
    step, tick = round(step, qdec), round(tick, pdec)
    min_qty = max(round(info.min_amount * cs, qdec), step)
    return {
        "tickSize": tick, "stepSize": step, "minQty": min_qty, "maxQty": _MAX_QTY,
        "marketMaxQty": _MAX_QTY, "minNotional": float(info.min_notional),
        "pricePrecision": pdec, "quantityPrecision": qdec,
    }


def public_exchange(venue: VenueParams, public_url: str | None = None) -> Exchange:
    """The keyless adapter a paper venue reads public data from.

    Parameters
    ----------
    venue : VenueParams
        ``exchange_id``, ``timeout_ms``, ``max_retries``.
    public_url : str, optional
        **Tests only**: a loopback Binance-compatible venue (a second
        :class:`~pairlib.sim.server.SimServer`) standing in for the real exchange. Its
        public endpoints are the only ones called.

    Raises
    ------
    ConfigError
        ``public_url`` is not a loopback URL.
    """
    if public_url is None:
        return Exchange.from_params(venue.model_copy(update={"kind": "paper"}), Secrets())
    try:
        public_url = loopback_url("public_url", public_url)
    except ValueError as e:
        raise errors.ConfigError(str(e)) from None
    return Exchange.from_params(
        venue.model_copy(update={"kind": "sim", "sim_url": public_url.rstrip("/")}),
        Secrets(),
    )


class PaperExchange(Exchange):
    """The adapter of a paper venue: ccxt against the in-process simulator on loopback.

    Its account is the simulator's; its ``kind`` is ``"paper"`` and its ``venue_key`` is
    the public venue's (the candles are the public venue's, so they share its data cache).
    Build it with :meth:`connect`.
    """

    _data_key = ""

    @classmethod
    def connect(cls, venue: VenueParams, sim_url: str, data_key: str) -> PaperExchange:
        """An adapter on the paper simulator at ``sim_url`` (its fixed local keys)."""
        ex = cls.from_params(venue.model_copy(update={"kind": "sim", "sim_url": None}),
                             sim_url=sim_url)
        assert isinstance(ex, cls)
        ex._data_key = data_key
        return ex

    @property
    def kind(self) -> str:
        """Always ``"paper"``."""
        return "paper"

    @property
    def venue_key(self) -> str:
        """The public venue's data key (e.g. ``binanceusdm``)."""
        return self._data_key or super().venue_key

    def __repr__(self) -> str:
        return f"PaperExchange(data={self.venue_key!r}, {super().__repr__()})"
