"""The one adapter over ccxt: every venue call in pairlib goes through :class:`Exchange`.

One class serves every venue kind (``sim``, ``paper``, ``demo``, ``live``); they differ only
in how the ccxt client is built (URLs, sandbox mode, keys), never in code paths.

What the adapter guarantees
---------------------------
* ccxt's rate limiter is always on. For Binance USDⓈ-M it runs ccxt's rolling-window limiter
  sized to the venue's documented request-weight budget (2,400 weight per minute per IP), so a
  burst of concurrent reads may use the minute's budget and no more; ccxt's per-endpoint
  weights (e.g. 10 for a 1,500-candle klines page) are charged against it.
* Reads are retried with jittered exponential backoff on transient failures only
  (ccxt ``NetworkError`` and subclasses: ``RequestTimeout``, ``ExchangeNotAvailable``,
  ``RateLimitExceeded``/``DDoSProtection``). After a 418/429 the venue's ``Retry-After`` is
  honoured: the retry waits at least that long, and a read asked to wait longer than
  :data:`MAX_RETRY_AFTER_S` fails at once instead. Order creation is **never** retried: after a
  network failure its outcome is unknown and the caller must look the order up by its client
  id (:meth:`Exchange.fetch_order_by_client_id`).
* Every ccxt exception is translated into pairlib's tree (:mod:`pairlib.errors`) here, with
  ``raise ... from e`` so the original stays attached.
* API keys never appear in ``repr``, log records or error messages, and neither does a
  signed request's query (``timestamp``, ``recvWindow``, ``signature``): translated errors,
  the exceptions chained to them, and the DEBUG logs of ccxt and urllib3 are scrubbed.
* Returned records are frozen dataclasses with floats, millisecond ints and unified symbols
  (``"BTC/USDT:USDT"``).

Notes
-----
The simulated venue (``kind="sim"``) is a real HTTP server speaking Binance's REST API on
loopback; the adapter points ccxt's ``binanceusdm`` at it by rewriting every entry of
``urls['api']`` to the same path under the simulator's base URL (:func:`rewrite_api_urls`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import random
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt

from pairlib import errors
from pairlib.checks import loopback_url
from pairlib.config import SIM_API_KEY, SIM_API_SECRET, Secrets, VenueParams, timeframe_ms
from pairlib.venue.ratelimit import RetryPolicy, RollingWeightLimiter
from pairlib.venue.records import (
    Balance,
    FundingPayment,
    FundingRate,
    MarketInfo,
    OhlcvBatch,
    OhlcvRequest,
    OrderResult,
    PositionInfo,
    TradeInfo,
)

__all__ = [
    "MAX_RETRY_AFTER_S",
    "Exchange",
    "FundingRate",  # re-exported from pairlib.venue.records, where it is defined
    "retry_after_s",
    "rewrite_api_urls",
    "translate_error",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Request-weight budget per minute (per IP) of venues whose ccxt class models weights.
# Binance USDⓈ-M: REQUEST_WEIGHT 2400 / 1 MINUTE (exchangeInfo.rateLimits).
_WEIGHT_PER_MINUTE: dict[str, float] = {"binanceusdm": 2400.0}
# Largest OHLCV page per request. Binance USDⓈ-M serves up to 1500 klines, but ccxt 4.5's
# unified fetch_ohlcv clamps (and truncates its answer) at 1000: pages are 1000 candles.
# Weight is the same per candle (1000 -> 5, 1500 -> 10).
_OHLCV_PAGE_LIMIT: dict[str, int] = {"binanceusdm": 1000}
_DEFAULT_OHLCV_PAGE_LIMIT = 500
# Largest income-history (funding payment) page per request: Binance USDⓈ-M /fapi/v1/income
# serves up to 1000 (default 100). Elsewhere 100, the common default, so that a venue never
# clamps the page below what was asked (a clamped page would look like the last one).
_FUNDING_PAGE_LIMIT: dict[str, int] = {"binanceusdm": 1000}
_DEFAULT_FUNDING_PAGE_LIMIT = 100
# Largest funding-rate-history page per request: Binance USDⓈ-M /fapi/v1/fundingRate serves
# up to 1000 (default 100); elsewhere 100, as above.
_FUNDING_RATE_PAGE_LIMIT: dict[str, int] = {"binanceusdm": 1000}
_DEFAULT_FUNDING_RATE_PAGE_LIMIT = 100
# Binance's newClientOrderId rule.
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
# The venue id of a USDT-margined perpetual (Binance USDⓈ-M, Bybit linear): BASE + "USDT",
# unified as BASE/USDT:USDT (see Exchange._unified_symbol).
_USDT_PERP_ID = re.compile(r"([A-Z0-9]{2,})USDT")
# Transient ccxt errors that make a read worth retrying (InvalidNonce is a NetworkError in
# ccxt but means "clock outside recvWindow": retrying with the same clock will not help).
_RETRYABLE: tuple[type[BaseException], ...] = (ccxt.NetworkError,)
_NOT_RETRYABLE: tuple[type[BaseException], ...] = (ccxt.InvalidNonce,)
MAX_RETRY_AFTER_S = 60.0
"""Longest ``Retry-After`` (seconds) a read waits for before retrying. Binance answers 429
when the IP's one-minute weight window is used up and asks to wait until it ends (at most
60 s); a 418 is an IP ban of 2 minutes to 3 days, which no read should sleep through (and
every request before it ends lengthens it): such a read fails at once with RateLimited."""
# Attribute set on a ccxt error raised for a 418/429 answer: the Retry-After in seconds.
_RETRY_AFTER_ATTR = "pairlib_retry_after_s"
# The query of a URL or path quoted in an error message (see _scrub), and a signing
# parameter standing on its own.
_URL_QUERY = re.compile(r"((?:[A-Za-z][A-Za-z0-9+.-]*://|/)[^\s?#\"'<>]*)\?[^\s\"'<>#,]+")
_SIGNING_PARAM = re.compile(
    r"\b(?:signature|timestamp|recvWindow)=[^&\s\"'<>]*", re.IGNORECASE
)
# A credential header in a quoted headers mapping, as ccxt's debug log prints it
# ({'X-MBX-APIKEY': '...'}).
_SECRET_HEADER = re.compile(
    r"""(['"])([^'"]*(?:key|secret|sign|passphrase|token)[^'"]*)\1(\s*:\s*)(['"])[^'"]*\4""",
    re.IGNORECASE,
)
_MAX_CHAIN = 32  # chained exceptions scrubbed at most (a chain is a handful deep)
# Loggers of the HTTP stack under the adapter that print request URLs, headers and bodies
# at DEBUG level (ccxt's request/response log, urllib3's connection and retry logs).
_HTTP_LOGGERS = ("ccxt.base.exchange", "urllib3.connectionpool", "urllib3.util.retry")


# --------------------------------------------------------------------------- helpers


def rewrite_api_urls(api: Any, base_url: str) -> Any:
    """Point every URL of a ccxt ``urls['api']`` tree at ``base_url``, keeping each path.

    ``"https://fapi.binance.com/fapi/v1"`` becomes ``base_url + "/fapi/v1"``. Nested dicts
    (some exchanges group URLs) are rewritten recursively; the keys come from the ccxt
    instance itself, so new endpoint groups in future ccxt versions are covered.
    """
    base = base_url.rstrip("/")
    if isinstance(api, Mapping):
        return {k: rewrite_api_urls(v, base) for k, v in api.items()}
    if isinstance(api, str):
        path = urlsplit(api).path
        return base + path
    return api


def _scrub(text: str, secrets: Sequence[str | None] = ()) -> str:
    """``text`` fit for a message or log: no key, no signed query.

    Each of ``secrets`` becomes ``***``. A signed request's query (``timestamp``,
    ``recvWindow``, ``signature`` and the order's parameters) is dropped from every URL or
    path quoting one, as ccxt does (``GET https://fapi.binance.com/fapi/v1/order?...``) and
    urllib3 does (``Max retries exceeded with url: /fapi/v2/balance?...``); a signing
    parameter standing anywhere else (a form body quoted in a message) is removed too. A
    signature is a replayable credential until its recvWindow ends, and the query names the
    account's orders: neither belongs in logs or incident records.
    """
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    text = _URL_QUERY.sub(r"\1?<query removed>", text)
    text = _SECRET_HEADER.sub(r"\1\2\1\3\4***\4", text)
    return _SIGNING_PARAM.sub("<signed parameter removed>", text)


class _ScrubLogs(logging.Filter):
    """Scrub (:func:`_scrub`) every record of the HTTP stack's loggers before any handler
    sees it: at DEBUG level ccxt logs each request's full signed URL, its headers (the API
    key among them) and its form body, and urllib3 logs the signed path."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is left to logging's own error handling
            return True
        clean = _scrub(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


_LOG_SCRUBBER = _ScrubLogs()
for _name in _HTTP_LOGGERS:
    logging.getLogger(_name).addFilter(_LOG_SCRUBBER)


def _scrub_chain(e: BaseException, secrets: Sequence[str | None]) -> None:
    """Scrub (:func:`_scrub`) the string arguments of ``e`` and of every exception chained
    to it (``__cause__``, ``__context__``, exceptions among the arguments), in place.

    A traceback of a translated error prints its cause, and ccxt's cause in turn prints the
    ``requests``/``urllib3`` error it was raised from, each quoting the signed URL.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [e]
    while todo and len(seen) < _MAX_CHAIN:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        args = x.args
        clean = tuple(_scrub(a, secrets) if isinstance(a, str) else a for a in args)
        if clean != args:
            with contextlib.suppress(AttributeError, TypeError):  # args it refuses to take
                x.args = clean
        todo.extend([x.__cause__, x.__context__])
        todo.extend(a for a in args if isinstance(a, BaseException))


def translate_error(
    e: BaseException, context: str, secrets: Sequence[str | None] = ()
) -> errors.PairlibError:
    """Map a ccxt exception onto pairlib's tree (the caller raises it ``from e``).

    Parameters
    ----------
    e : BaseException
        The ccxt exception.
    context : str
        What was being done, e.g. ``"fetch_ohlcv BTC/USDT:USDT 4h"``; starts the message.
    secrets : sequence of str
        Strings scrubbed from the message (API key and secret).

    Returns
    -------
    PairlibError
        Its message is scrubbed (:func:`_scrub`): no key, secret, or signed query. ``e``
        and the exceptions chained to it are scrubbed in place as well, so the traceback
        of ``raise translated from e`` quotes none of them either.

    Notes
    -----
    Order matters: ccxt's ``OrderNotFound`` is an ``InvalidOrder``, ``RateLimitExceeded`` and
    ``DDoSProtection`` are ``NetworkError``\\ s, and ``InvalidNonce`` (timestamp outside
    recvWindow) is a ``NetworkError`` in ccxt but an authentication problem here.
    ``BadSymbol`` (the venue's "Invalid symbol", or a symbol missing from ccxt's markets)
    becomes :class:`~pairlib.errors.MarketNotListed`: the market is gone, not the request
    malformed, and callers stop instead of retrying.
    """
    _scrub_chain(e, secrets)
    msg = _scrub(f"{context}: {type(e).__name__}: {e}", secrets)
    kind: type[errors.PairlibError]
    if isinstance(e, ccxt.InvalidNonce | ccxt.AuthenticationError):
        kind = errors.AuthenticationFailed
    elif isinstance(e, ccxt.InsufficientFunds):
        kind = errors.InsufficientFunds
    elif isinstance(e, ccxt.OrderNotFound):
        kind = errors.OrderNotFound
    elif isinstance(e, ccxt.BadSymbol):
        kind = errors.MarketNotListed
    elif isinstance(e, ccxt.InvalidOrder):
        kind = errors.InvalidOrder
    elif isinstance(e, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        kind = errors.RateLimited
    elif isinstance(e, ccxt.NetworkError):
        kind = errors.ExchangeUnavailable
    else:
        kind = errors.ExchangeError
    return kind(msg)


def _retryable(e: BaseException) -> bool:
    return isinstance(e, _RETRYABLE) and not isinstance(e, _NOT_RETRYABLE)


def retry_after_s(headers: Mapping[str, Any] | None) -> float | None:
    """Seconds a response's ``Retry-After`` header asks the client to wait.

    Parameters
    ----------
    headers : mapping, optional
        Response headers (any key case, as ``requests`` and ``aiohttp`` give them).

    Returns
    -------
    float or None
        The header's delta-seconds (Binance sends whole seconds with every 418 and 429);
        ``None`` when it is absent, negative, not finite or not a number (an HTTP-date
        form is not read: it would need the wall clock, and Binance does not send it).
    """
    if not headers:
        return None
    value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
    try:
        secs = float(str(value).strip())
    except ValueError:
        return None
    return secs if math.isfinite(secs) and secs >= 0 else None


def _note_retry_after(handle_errors: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ccxt client's ``handle_errors`` hook so that the error it raises for an HTTP
    418 or 429 carries the answer's ``Retry-After`` (seconds, in the attribute named by
    ``_RETRY_AFTER_ATTR``).

    ccxt's exceptions do not keep the response headers, and its ``last_response_headers``
    is shared by concurrent requests of an async client; this hook sees each response's own
    headers, on the call that raises its error.
    """

    def handle(code: int, reason: str, url: str, method: str, headers: Any, body: Any,
               response: Any, request_headers: Any, request_body: Any) -> Any:
        try:
            return handle_errors(code, reason, url, method, headers, body, response,
                                 request_headers, request_body)
        except ccxt.BaseError as e:
            wait = retry_after_s(headers) if code in (418, 429) else None
            if wait is not None:
                setattr(e, _RETRY_AFTER_ATTR, wait)
            raise

    return handle


def _f(x: Any, default: float = 0.0) -> float:
    v = _opt_f(x)
    return default if v is None else v


def _opt_f(x: Any) -> float | None:
    if x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _opt_i(x: Any) -> int | None:
    return None if x is None else int(x)


def _fee_cost(order: Mapping[str, Any]) -> float:
    fees = order.get("fees") or []
    if fees:
        return float(sum(_f(f.get("cost")) for f in fees if f))
    fee = order.get("fee") or {}
    return _f(fee.get("cost"))


def _order_result(o: Mapping[str, Any]) -> OrderResult:
    info = o.get("info") or {}
    reduce_only = o.get("reduceOnly")
    if reduce_only is None:
        reduce_only = str(info.get("reduceOnly", "false")).lower() == "true"
    return OrderResult(
        id=str(o.get("id")),
        client_id=o.get("clientOrderId"),
        symbol=str(o.get("symbol")),
        side=str(o.get("side")),
        type=str(o.get("type")),
        amount=_f(o.get("amount")),
        filled=_f(o.get("filled")),
        average=_opt_f(o.get("average")),
        status=str(o.get("status")),
        fee=_fee_cost(o),
        timestamp=_opt_i(o.get("timestamp")),
        reduce_only=bool(reduce_only),
    )


def _run_sync(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code.

    Uses :func:`asyncio.run` on this thread, or on a worker thread when this thread already
    runs an event loop (a Jupyter kernel, an async application).
    """

    async def main() -> T:
        return await coro_factory()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pairlib-io") as pool:
        return pool.submit(asyncio.run, main()).result()


# --------------------------------------------------------------------------- adapter


@dataclass(frozen=True)
class _Recipe:
    """How to build a ccxt client (sync or async) for this venue; keys kept out of repr."""

    exchange_id: str
    kind: str
    api_url: str | None
    sandbox: bool
    timeout_ms: int
    weight_per_minute: float | None
    recv_window_ms: int = 5_000
    sim_seed: int = 0
    sim_symbols: int = 0
    api_key: str | None = field(default=None, repr=False)
    api_secret: str | None = field(default=None, repr=False)

    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "enableRateLimit": True,
            "timeout": self.timeout_ms,
            "options": {
                # Account-wide currency list lives on Binance's spot API (sapi), which a
                # futures-only key may not reach, and no pairlib call needs it.
                "fetchCurrencies": False,
                "warnOnFetchOpenOrdersWithoutSymbol": False,
                "defaultType": "swap",
                # A signed request is valid at the venue until timestamp + recvWindow: an
                # order whose request timed out can be booked until then (execution waits
                # that long before calling it unknown).
                "recvWindow": self.recv_window_ms,
            },
        }
        if self.weight_per_minute:
            cfg["rateLimit"] = 60_000.0 / self.weight_per_minute
            cfg["rateLimiterAlgorithm"] = "rollingWindow"
            cfg["rollingWindowSize"] = 60_000.0
        if self.api_key and self.api_secret:
            cfg["apiKey"] = self.api_key
            cfg["secret"] = self.api_secret
        return cfg

    def build(self, module: Any) -> Any:
        cls = getattr(module, self.exchange_id, None)
        if cls is None:
            raise errors.ConfigError(
                f"venue.exchange_id = {self.exchange_id!r}: not an exchange ccxt knows"
            )
        client = cls(self.config())
        if self.sandbox:
            client.set_sandbox_mode(True)
        if self.api_url is not None:
            client.urls["api"] = rewrite_api_urls(client.urls["api"], self.api_url)
        # pairlib trades linear swaps only: let the linear-market error codes (e.g. Binance
        # -2019 margin insufficient, -4116 duplicate client id) apply whatever the host name
        # (ccxt selects them by matching the production/testnet host).
        exc = getattr(client, "exceptions", None)
        if isinstance(exc, dict) and isinstance(exc.get("linear"), dict):
            linear_exact = exc["linear"].get("exact") or {}
            client.exceptions = {**exc, "exact": {**(exc.get("exact") or {}), **linear_exact}}
        # A 418/429 error keeps the Retry-After it came with (reads wait for it, _read).
        client.handle_errors = _note_retry_after(client.handle_errors)
        if module is ccxt and self.weight_per_minute:
            # ccxt's synchronous throttle sleeps rateLimit x cost before *every* request and
            # ignores the rolling window; pace by the venue's real per-minute budget instead,
            # through the same hook ccxt calls before each request.
            client.throttle = RollingWeightLimiter(self.weight_per_minute)
        return client


class Exchange:
    """A venue: market rules, market data, account and orders, through ccxt.

    Build it with :meth:`from_params`. Use it as a context manager, or call :meth:`close`.

    Parameters
    ----------
    recipe : _Recipe
        How to build ccxt clients (internal; use :meth:`from_params`).
    retry : RetryPolicy
        Backoff for reads.
    """

    def __init__(self, recipe: _Recipe, retry: RetryPolicy) -> None:
        self._recipe = recipe
        self._retry = retry
        self._rng = random.Random(0)
        self._secrets = (recipe.api_key, recipe.api_secret)
        self._client = recipe.build(ccxt)
        self._markets: dict[str, MarketInfo] | None = None
        self._lock = threading.Lock()
        self._weight_log: list[dict[str, float]] = []
        self.requests_sent = 0
        """HTTP requests made through this adapter so far, retries included."""

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_params(
        cls,
        venue: VenueParams,
        secrets: Secrets | None = None,
        sim_url: str | None = None,
        retry_base_delay: float = 0.5,
        *,
        weight_per_minute: float | None = None,
    ) -> Exchange:
        """Build the adapter for a venue.

        Parameters
        ----------
        venue : VenueParams
            ``kind``, ``exchange_id``, ``sim_url``, ``timeout_ms``, ``max_retries``.
        secrets : Secrets, optional
            API keys. Required for ``demo`` and ``live``. Never used for a simulated venue:
            ``paper`` reads public data without keys, and ``sim`` always signs with the
            simulator's fixed local pair (:data:`~pairlib.config.SIM_API_KEY`), so keys
            loaded from the environment cannot reach a simulator URL whatever the caller
            passes.
        sim_url : str, optional
            The simulator's base URL (overrides ``venue.sim_url``); ``sim`` only. It must
            pass :func:`pairlib.checks.loopback_url` (http, a loopback IP or ``localhost``,
            no user info).
        retry_base_delay : float
            First backoff in seconds for retried reads (tests use a few ms).
        weight_per_minute : float, optional
            Request-weight budget for ccxt's rolling-window rate limiter. Default: the
            venue's documented budget (2,400 for Binance USDⓈ-M), else ccxt's own limiter.

        Raises
        ------
        ConfigError
            ``sim`` without a URL or with one that is not loopback, ``demo`` without keys,
            unknown exchange id, exchange without a sandbox for ``demo``.
        LiveTradingRefused
            ``live`` without keys.
        """
        if retry_base_delay < 0:
            raise errors.ConfigError(f"retry_base_delay must be >= 0, got {retry_base_delay}")
        kind = venue.kind
        key: str | None = None
        secret: str | None = None
        has_keys = secrets is not None and secrets.present
        if kind in ("demo", "live") and secrets is not None:
            key, secret = secrets.api_key, secrets.api_secret
        api_url: str | None = None
        sandbox = False
        exchange_id = venue.exchange_id
        if kind == "sim":
            url = sim_url or venue.sim_url
            if not url:
                raise errors.ConfigError(
                    "venue.kind = 'sim' needs the simulator's URL: start it "
                    "(pairlib.sim.server.SimServer) and pass sim_url, or set venue.sim_url"
                )
            try:
                api_url = loopback_url("sim_url", url)
            except ValueError as e:
                raise errors.ConfigError(str(e)) from None
            exchange_id = "binanceusdm"
            # The simulator's own fixed pair, never the caller's: whatever reaches a
            # simulator URL is not a real credential.
            key, secret = SIM_API_KEY, SIM_API_SECRET
        elif kind == "paper":
            pass  # public endpoints only: no keys
        elif kind == "demo":
            if not has_keys:
                raise errors.ConfigError(
                    "venue.kind = 'demo' needs the exchange's test-environment API keys in "
                    "PAIRLIB_API_KEY and PAIRLIB_API_SECRET (environment or .env); none found"
                )
            sandbox = True
        elif kind == "live":
            if not has_keys:
                raise errors.LiveTradingRefused(
                    "venue.kind = 'live' needs API keys in PAIRLIB_API_KEY and "
                    "PAIRLIB_API_SECRET (environment or .env); none found, refusing to build "
                    "a live client"
                )
        else:  # pragma: no cover - VenueParams validates kind
            raise errors.ConfigError(f"venue.kind = {kind!r}: unknown")
        if weight_per_minute is None:
            weight_per_minute = _WEIGHT_PER_MINUTE.get(exchange_id)
        recipe = _Recipe(
            exchange_id=exchange_id,
            kind=kind,
            api_url=api_url,
            sandbox=sandbox,
            timeout_ms=venue.timeout_ms,
            recv_window_ms=venue.recv_window_ms,
            weight_per_minute=weight_per_minute or None,
            sim_seed=venue.sim_seed,
            sim_symbols=venue.sim_symbols,
            api_key=key,
            api_secret=secret,
        )
        if sandbox:
            probe = getattr(ccxt, exchange_id, None)
            if probe is not None and not probe().has.get("sandbox"):
                raise errors.ConfigError(
                    f"venue.kind = 'demo': ccxt has no sandbox for {exchange_id!r}"
                )
        retry = RetryPolicy(max_retries=venue.max_retries, base_delay=retry_base_delay)
        return cls(recipe, retry)

    # ------------------------------------------------------------------ dunder

    def __repr__(self) -> str:
        r = self._recipe
        keys = "set" if r.api_key else "none"
        where = f", url={r.api_url!r}" if r.api_url else ""
        return f"Exchange(kind={r.kind!r}, exchange_id={r.exchange_id!r}{where}, keys={keys})"

    def __enter__(self) -> Exchange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP session (idempotent)."""
        try:
            self._client.close()
        except Exception:  # closing must not raise
            log.debug("closing the ccxt session failed", exc_info=True)

    # ------------------------------------------------------------------ properties

    @property
    def kind(self) -> str:
        """Venue kind: ``sim``, ``paper``, ``demo`` or ``live``."""
        return self._recipe.kind

    @property
    def exchange_id(self) -> str:
        """ccxt exchange id, e.g. ``"binanceusdm"``."""
        return self._recipe.exchange_id

    @property
    def venue_key(self) -> str:
        """Short, filesystem-safe name of where market data comes from (cache file names).

        Real venues: the ccxt exchange id (``paper`` and ``live`` read the same public data,
        so they share it), ``demo-<id>`` for the test environment. The simulator's URL
        changes with every start (free port), so it is keyed by what determines its market:
        ``sim-s<seed>-n<symbols>`` from the venue params (a simulator started with another
        spec than the params describe needs its own ``cache_dir``).
        """
        r = self._recipe
        if r.kind == "sim":
            return f"sim-s{r.sim_seed}-n{r.sim_symbols}"
        if r.kind == "demo":
            return f"demo-{r.exchange_id}"
        return r.exchange_id

    @property
    def ohlcv_page_limit(self) -> int:
        """Most candles one OHLCV request returns on this venue."""
        return _OHLCV_PAGE_LIMIT.get(self._recipe.exchange_id, _DEFAULT_OHLCV_PAGE_LIMIT)

    @property
    def recv_window_ms(self) -> int:
        """How long after its signing a request stays valid at the venue (ms)."""
        return self._recipe.recv_window_ms

    @property
    def retry_policy(self) -> RetryPolicy:
        """The backoff used for reads."""
        return self._retry

    # ------------------------------------------------------------------ plumbing

    def _err(self, e: BaseException, context: str) -> errors.PairlibError:
        return translate_error(e, context, self._secrets)

    def _read(self, context: str, fn: Callable[[], T]) -> T:
        """Call a read, retrying transient failures (:meth:`_retry_wait`), translating
        errors."""
        attempt = 0
        while True:
            try:
                self.requests_sent += 1
                return fn()
            except ccxt.BaseError as e:
                time.sleep(self._retry_wait(e, attempt, context))
                attempt += 1

    def _retry_wait(self, e: ccxt.BaseError, attempt: int, context: str) -> float:
        """Seconds to wait before retrying a read that failed with ``e`` on its attempt
        number ``attempt`` (0-based); raises the translated error when it is not retried.

        A transient failure (:func:`_retryable`) is retried up to ``max_retries`` times
        after the policy's jittered backoff. When the venue answered 418 or 429 with a
        ``Retry-After``, the wait is at least that long, because a request before it ends
        is refused again (and repeated ones get the IP banned); a ``Retry-After`` over
        :data:`MAX_RETRY_AFTER_S` is not waited for and the read fails at once.

        Raises
        ------
        PairlibError
            The translated ``e`` (``raise ... from e``) when it is not retryable, the
            retries are used up, or the venue asks for a longer wait than
            :data:`MAX_RETRY_AFTER_S` (then :class:`~pairlib.errors.RateLimited` saying
            how long it asked for).
        """
        asked: float | None = getattr(e, _RETRY_AFTER_ATTR, None)
        if asked is not None and asked > MAX_RETRY_AFTER_S:
            err = self._err(e, context)
            raise type(err)(
                f"{err}; the venue asks to wait {asked:g} s (Retry-After) before the next "
                f"request, longer than the {MAX_RETRY_AFTER_S:g} s a read waits: not retried"
            ) from e
        if not _retryable(e) or attempt >= self._retry.max_retries:
            raise self._err(e, context) from e
        wait = self._retry.delay(attempt, self._rng)
        if asked is not None:
            wait = max(wait, asked)
        log.warning(
            "%s failed (%s%s), retry %d/%d in %.3fs", context, type(e).__name__,
            "" if asked is None else f", Retry-After {asked:g} s", attempt + 1,
            self._retry.max_retries, wait,
        )
        return wait

    def _call(self, context: str, fn: Callable[[], T]) -> T:
        """Call once (writes), translating errors."""
        try:
            self.requests_sent += 1
            return fn()
        except ccxt.BaseError as e:
            raise self._err(e, context) from e

    def _require_account(self, what: str) -> None:
        if self._recipe.kind == "paper":
            raise errors.AuthenticationFailed(
                f"{what}: a paper venue has no exchange account (public data only, no keys)"
            )

    def _account_ready(self, what: str) -> None:
        """Refuse ``what`` on a venue without an account, then make sure markets are loaded."""
        self._require_account(what)
        self._ensure_markets()

    def _ensure_markets(self) -> None:
        with self._lock:
            if not self._client.markets:
                self._read("load_markets", lambda: self._client.load_markets())

    # ------------------------------------------------------------------ market rules

    def markets(self) -> dict[str, MarketInfo]:
        """Active USDT-margined linear perpetuals, keyed by unified symbol (loaded once)."""
        if self._markets is not None:
            return self._markets
        self._ensure_markets()
        tick_mode = getattr(self._client, "precisionMode", ccxt.TICK_SIZE) == ccxt.TICK_SIZE

        def step(p: Any) -> float:
            if p is None:
                return 0.0
            return float(p) if tick_mode else 10.0 ** (-float(p))

        out: dict[str, MarketInfo] = {}
        for sym, m in sorted(self._client.markets.items()):
            if not (m.get("swap") and m.get("linear")):
                continue
            if m.get("settle") != "USDT" or m.get("quote") != "USDT":
                continue
            if m.get("active") is False:
                continue
            prec = m.get("precision") or {}
            lim = m.get("limits") or {}
            amount_step = step(prec.get("amount"))
            out[sym] = MarketInfo(
                symbol=sym,
                id=str(m["id"]),
                amount_step=amount_step,
                min_amount=_f((lim.get("amount") or {}).get("min"), amount_step),
                min_notional=_f((lim.get("cost") or {}).get("min")),
                price_step=step(prec.get("price")),
                contract_size=_f(m.get("contractSize"), 1.0),
            )
        self._markets = out
        return out

    def market(self, symbol: str) -> MarketInfo:
        """Rules of one market.

        Raises
        ------
        InvalidOrder
            If ``symbol`` is not an active USDT linear perpetual on this venue.
        """
        try:
            return self.markets()[symbol]
        except KeyError:
            raise errors.InvalidOrder(
                f"{symbol!r} is not an active USDT-margined perpetual on {self.exchange_id}"
            ) from None

    def check_listed(self, symbol: str) -> None:
        """Ask the venue now whether it still lists ``symbol`` (retried read).

        :meth:`markets` is loaded once; a market delisted since then is still in it. This
        asks the venue itself with one public per-symbol request, the symbol's 24 h ticker
        (Binance USDⓈ-M: weight 1), rather than re-reading the whole market list (on
        Binance through ccxt, the spot, USDⓈ-M and COIN-M ``exchangeInfo``: several MB and
        weight 20 or more). The answer is discarded: only "unknown symbol" matters.

        Raises
        ------
        MarketNotListed
            The venue answers that it does not know the symbol (delisted).
        ExchangeError
            The question could not be answered (network, rate limit, ...): the symbol's
            status is unknown.
        """
        self._ensure_markets()
        self._read(f"check_listed {symbol}", lambda: self._client.fetch_ticker(symbol))

    def amount_to_precision(self, symbol: str, amount: float) -> float:
        """Round an amount *down* (towards zero) to the market's quantity step.

        The sign is kept; amounts below one step give ``0.0``.
        """
        self.market(symbol)
        sign = -1.0 if amount < 0 else 1.0
        a = abs(float(amount))
        try:
            return sign * float(self._client.amount_to_precision(symbol, a))
        except ccxt.InvalidOrder:  # below the precision: nothing tradable
            return 0.0
        except ccxt.BaseError as e:
            raise self._err(e, f"amount_to_precision {symbol}") from e

    def price_to_precision(self, symbol: str, price: float) -> float:
        """Round a price to the market's tick (ccxt's rounding mode for the venue)."""
        self.market(symbol)
        try:
            return float(self._client.price_to_precision(symbol, float(price)))
        except ccxt.BaseError as e:
            raise self._err(e, f"price_to_precision {symbol}") from e

    @staticmethod
    def timeframe_ms(timeframe: str) -> int:
        """Candle length in ms (:class:`~pairlib.errors.ConfigError` if unknown)."""
        return timeframe_ms(timeframe)

    # ------------------------------------------------------------------ market data

    def _ohlcv_args(
        self, symbol: str, timeframe: str, limit: int, until_ms: int | None
    ) -> tuple[int, dict[str, Any]]:
        if limit <= 0:
            raise errors.ConfigError(f"limit must be positive, got {limit}")
        self.timeframe_ms(timeframe)
        limit = min(int(limit), self.ohlcv_page_limit)
        params: dict[str, Any] = {}
        if until_ms is not None:
            params["until"] = int(until_ms)
        return limit, params

    def fetch_ohlcv(
        self,
        symbol: str,
        timeframe: str,
        since_ms: int | None,
        limit: int,
        until_ms: int | None = None,
    ) -> list[list[float]]:
        """One page of candles ``[open_ms, open, high, low, close, volume]`` (retried read).

        At most :attr:`ohlcv_page_limit` candles opening at or after ``since_ms`` (and at or
        before ``until_ms`` when given). The venue may include the still-forming candle:
        filtering closed candles is the data layer's job.
        """
        self._ensure_markets()
        limit, params = self._ohlcv_args(symbol, timeframe, limit, until_ms)
        return self._read(
            f"fetch_ohlcv {symbol} {timeframe}",
            lambda: self._client.fetch_ohlcv(symbol, timeframe, since_ms, limit, params),
        )

    def fetch_ohlcv_batch(
        self, requests: Sequence[OhlcvRequest], max_concurrency: int = 8
    ) -> OhlcvBatch:
        """Fetch many OHLCV pages concurrently (blocking wrapper of :meth:`fetch_ohlcv_many`).

        Runs its own event loop; inside a running loop (Jupyter) it runs on a worker thread.
        """
        self._ensure_markets()
        return _run_sync(lambda: self.fetch_ohlcv_many(requests, max_concurrency))

    async def fetch_ohlcv_many(
        self, requests: Sequence[OhlcvRequest], max_concurrency: int = 8
    ) -> OhlcvBatch:
        """Fetch many OHLCV pages concurrently on an async ccxt client.

        The async client is configured exactly like the synchronous one (same URLs, keys,
        limiter) and lives for this call only (its HTTP session is bound to the running
        loop). At most ``max_concurrency`` requests are in flight; ccxt's rate limiter stays
        on, and its rolling weight window is carried over between calls. Each request is
        retried like :meth:`fetch_ohlcv`; a request that still fails lands in
        ``OhlcvBatch.errors`` instead of failing the batch.
        """
        import ccxt.async_support as accxt

        if max_concurrency < 1:
            raise errors.ConfigError(f"max_concurrency must be >= 1, got {max_concurrency}")
        unique = list(dict.fromkeys(requests))
        prepared = [
            (r, *self._ohlcv_args(r.symbol, r.timeframe, r.limit, r.until_ms)) for r in unique
        ]
        client = self._recipe.build(accxt)
        sent = 0

        def count() -> None:
            nonlocal sent
            sent += 1

        try:
            with self._lock:
                weight_log = list(self._weight_log)
            if client.throttler is not None and weight_log:
                client.throttler.timestamps = weight_log
            if self._client.markets:
                client.set_markets_from_exchange(self._client)
            else:
                await self._aread(client.load_markets, "load_markets", count)
            sem = asyncio.Semaphore(max_concurrency)

            async def one(req: OhlcvRequest, limit: int, params: dict[str, Any]) -> Any:
                async with sem:
                    return await self._aread(
                        lambda: client.fetch_ohlcv(
                            req.symbol, req.timeframe, req.since_ms, limit, params
                        ),
                        f"fetch_ohlcv {req.symbol} {req.timeframe}",
                        count,
                    )

            results = await asyncio.gather(
                *(one(r, lim, p) for r, lim, p in prepared), return_exceptions=True
            )
            if client.throttler is not None:
                with self._lock:
                    self._weight_log = list(client.throttler.timestamps)
        finally:
            await client.close()
        self.requests_sent += sent
        rows: dict[OhlcvRequest, list[list[float]]] = {}
        errs: dict[OhlcvRequest, errors.ExchangeError] = {}
        for (req, _, _), res in zip(prepared, results, strict=True):
            if isinstance(res, errors.ExchangeError):
                errs[req] = res
            elif isinstance(res, BaseException):
                raise res
            else:
                rows[req] = res
        return OhlcvBatch(rows=rows, errors=errs, requests_sent=sent)

    async def _aread(
        self, fn: Callable[[], Awaitable[T]], context: str, on_attempt: Callable[[], None]
    ) -> T:
        """Async twin of :meth:`_read`; ``on_attempt`` is called once per HTTP attempt."""
        attempt = 0
        while True:
            try:
                on_attempt()
                return await fn()
            except ccxt.BaseError as e:
                await asyncio.sleep(self._retry_wait(e, attempt, context))
                attempt += 1

    def _tickers(self, symbols: Sequence[str] | None) -> dict[str, Any]:
        self._ensure_markets()
        syms = list(symbols) if symbols is not None else None
        return self._read("fetch_tickers", lambda: self._client.fetch_tickers(syms))

    def fetch_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        """Last traded price per symbol (retried read); symbols without a price are left out.

        Uses the venue's light last-price endpoint when ccxt has one (Binance: weight 2 for
        all symbols), else the 24 h tickers.
        """
        if not symbols:
            return {}
        self._ensure_markets()
        syms = list(symbols)
        out: dict[str, float] = {}
        if self._client.has.get("fetchLastPrices"):
            raw = self._read("fetch_last_prices", lambda: self._client.fetch_last_prices(syms))
            for s in syms:
                p = _opt_f((raw.get(s) or {}).get("price"))
                if p is not None and p > 0:
                    out[s] = p
            return out
        tickers = self._tickers(syms)
        for s in syms:
            t = tickers.get(s) or {}
            p = _opt_f(t.get("last")) or _opt_f(t.get("close"))
            if p is not None and p > 0:
                out[s] = p
        return out

    def fetch_quote_volumes(self) -> dict[str, float]:
        """24 h quote-currency volume per active USDT perpetual (retried read)."""
        markets = self.markets()
        tickers = self._tickers(None)
        out: dict[str, float] = {}
        for s, t in tickers.items():
            if s not in markets:
                continue
            qv = _opt_f(t.get("quoteVolume"))
            if qv is None:
                base = _opt_f(t.get("baseVolume"))
                last = _opt_f(t.get("last"))
                qv = base * last if base is not None and last is not None else None
            if qv is not None:
                out[s] = qv
        return out

    # ------------------------------------------------------------------ account

    def fetch_balance(self) -> Balance:
        """Margin balance of the settlement currency (USDT) (retried read)."""
        self._account_ready("fetch_balance")
        bal = self._read("fetch_balance", lambda: self._client.fetch_balance())
        acct = bal.get("USDT") or {}
        return Balance(
            equity=_f(acct.get("total")),
            free=_f(acct.get("free")),
            used=_f(acct.get("used")),
            currency="USDT",
        )

    def fetch_positions(self) -> list[PositionInfo]:
        """Open (non-zero) positions, sorted by symbol (retried read)."""
        self._account_ready("fetch_positions")
        raw = self._read("fetch_positions", lambda: self._client.fetch_positions())
        out: list[PositionInfo] = []
        for p in raw:
            contracts = _f(p.get("contracts"))
            if contracts == 0:
                continue
            side = p.get("side")
            if side is None:
                amt = _f((p.get("info") or {}).get("positionAmt"))
                side = "short" if amt < 0 else "long"
            sign = -1.0 if side == "short" else 1.0
            out.append(
                PositionInfo(
                    symbol=self._unified_symbol(p),
                    contracts=sign * abs(contracts),
                    entry_price=_f(p.get("entryPrice")),
                    unrealized_pnl=_f(p.get("unrealizedPnl")),
                    notional=sign * abs(_f(p.get("notional"))),
                )
            )
        return sorted(out, key=lambda p: p.symbol)

    def _unified_symbol(self, record: Mapping[str, Any]) -> str:
        """The unified symbol of a position or income record, also for a market the venue
        no longer lists.

        ccxt maps a venue id to its unified symbol through the loaded market list only: a
        position in a market that was delisted (or suspended and dropped from
        ``exchangeInfo``) while still held comes back under its raw venue id
        (``INJUSDT``). Such an id is mapped by the USDT-margined perpetual convention,
        ``BASE + "USDT"`` -> ``BASE/USDT:USDT`` (Binance USDⓈ-M, and the symbol pairlib
        stored when it traded the market), so reconciliation compares the same position
        once instead of reporting the stored symbol as missing and the raw id as foreign.
        An id that does not follow the convention is returned as it is (and then shows up
        as a mismatch for the operator).
        """
        symbol = str(record.get("symbol"))
        if "/" in symbol:
            return symbol  # ccxt knew the market
        raw = str((record.get("info") or {}).get("symbol") or symbol)
        m = _USDT_PERP_ID.fullmatch(raw)
        if m is None:
            return symbol
        unified = f"{m.group(1)}/USDT:USDT"
        log.warning("%s is not in %s's market list (delisted?): its record is reported as %s",
                    raw, self.exchange_id, unified)
        return unified

    def fetch_open_orders(self, symbol: str | None = None) -> list[OrderResult]:
        """Open orders, of one symbol or all (retried read)."""
        self._account_ready("fetch_open_orders")
        raw = self._read(
            f"fetch_open_orders {symbol or '(all)'}",
            lambda: self._client.fetch_open_orders(symbol),
        )
        return [_order_result(o) for o in raw]

    def fetch_order_by_client_id(self, symbol: str, client_id: str) -> OrderResult | None:
        """The order with this client id, or ``None`` when the venue says it does not exist.

        This is how a caller resolves an order whose creation timed out or lost its
        response (retried read).
        """
        self._account_ready("fetch_order_by_client_id")
        try:
            o = self._read(
                f"fetch_order {symbol} client_id={client_id}",
                lambda: self._client.fetch_order(
                    None, symbol, {"origClientOrderId": client_id}
                ),
            )
        except errors.OrderNotFound:
            return None
        return _order_result(o)

    def create_order(
        self,
        symbol: str,
        side: str,
        amount: float,
        client_id: str,
        type: str = "market",
        price: float | None = None,
        reduce_only: bool = False,
    ) -> OrderResult:
        """Send one order. **Never retried.**

        Parameters
        ----------
        symbol : str
            Unified symbol.
        side : {"buy", "sell"}
        amount : float
            Contracts, > 0, already rounded with :meth:`amount_to_precision`.
        client_id : str
            Idempotency key sent as the venue's client order id (1-36 chars of
            ``[.A-Z:/a-z0-9_-]``). Record it before calling.
        type : {"market", "limit"}
        price : float, optional
            Limit price (required for limit orders).
        reduce_only : bool
            Only reduce an existing position.

        Raises
        ------
        InvalidOrder
            Bad arguments (checked before sending) or rejected by the venue (duplicate
            client id, filters).
        InsufficientFunds
            Not enough margin.
        ExchangeUnavailable
            Network failure, timeout, 5xx: the order may or may not exist; resolve it with
            :meth:`fetch_order_by_client_id` before sending anything else.
        """
        self._require_account("create_order")
        if side not in ("buy", "sell"):
            raise errors.InvalidOrder(f"side must be 'buy' or 'sell', got {side!r}")
        if type not in ("market", "limit"):
            raise errors.InvalidOrder(f"type must be 'market' or 'limit', got {type!r}")
        if type == "limit" and (price is None or not price > 0):
            raise errors.InvalidOrder(f"a limit order needs a positive price, got {price!r}")
        if not (math.isfinite(amount) and amount > 0):
            raise errors.InvalidOrder(f"amount must be positive, got {amount!r}")
        if not _CLIENT_ID_RE.match(client_id):
            raise errors.InvalidOrder(
                f"client_id {client_id!r} must be 1-36 characters of [.A-Z:/a-z0-9_-]"
            )
        self.market(symbol)
        self._ensure_markets()
        params: dict[str, Any] = {"clientOrderId": client_id}
        if reduce_only:
            params["reduceOnly"] = True
        context = f"create_order {symbol} {side} {amount} client_id={client_id}"
        try:
            self.requests_sent += 1
            o = self._client.create_order(
                symbol, type, side, amount, price if type == "limit" else None, params
            )
        except ccxt.BaseError as e:
            err = self._err(e, context)
            if isinstance(err, errors.ExchangeUnavailable):
                log.warning(
                    "%s: outcome unknown (%s); resolve with fetch_order_by_client_id",
                    context, e.__class__.__name__,
                )
            raise err from e
        res = _order_result(o)
        if res.client_id is None:
            res = OrderResult(**{**res.__dict__, "client_id": client_id})
        if reduce_only and not res.reduce_only:
            res = OrderResult(**{**res.__dict__, "reduce_only": True})
        return res

    def cancel_order(self, symbol: str, order_id: str) -> OrderResult:
        """Cancel an open order (not retried; cancelling twice gives OrderNotFound)."""
        self._account_ready("cancel_order")
        o = self._call(
            f"cancel_order {symbol} {order_id}",
            lambda: self._client.cancel_order(order_id, symbol),
        )
        return _order_result(o)

    def fetch_my_trades(self, symbol: str, since_ms: int | None = None) -> list[TradeInfo]:
        """Our fills in ``symbol`` since ``since_ms`` (retried read)."""
        self._account_ready("fetch_my_trades")
        raw = self._read(
            f"fetch_my_trades {symbol}",
            lambda: self._client.fetch_my_trades(symbol, since_ms),
        )
        return [
            TradeInfo(
                id=str(t.get("id")),
                order_id=None if t.get("order") is None else str(t.get("order")),
                symbol=str(t.get("symbol")),
                side=str(t.get("side")),
                amount=_f(t.get("amount")),
                price=_f(t.get("price")),
                fee=_fee_cost(t),
                timestamp=_opt_i(t.get("timestamp")),
            )
            for t in raw
        ]

    def fetch_funding_rates(self, symbol: str, since_ms: int, until_ms: int) -> dict[int, float]:
        """Public funding-rate history of ``symbol``: {funding time (ms): rate}.

        The rates of :meth:`fetch_funding_rate_history` (paged, retried reads); funding
        times are rounded to the minute (venues stamp them a few ms late).
        """
        return {r.timestamp: r.rate
                for r in self.fetch_funding_rate_history(symbol, since_ms, until_ms)}

    @property
    def funding_rate_page_limit(self) -> int:
        """Most funding rates one funding-rate-history request returns on this venue."""
        return _FUNDING_RATE_PAGE_LIMIT.get(self._recipe.exchange_id,
                                            _DEFAULT_FUNDING_RATE_PAGE_LIMIT)

    def fetch_funding_rate_history(
        self, symbol: str, since_ms: int, until_ms: int
    ) -> list[FundingRate]:
        """Public funding-rate history of ``symbol`` with funding times in
        ``[since_ms, until_ms]``, oldest first, each with the mark price it was settled at.

        Keyless (a public endpoint). Pages forward (each page a retried read of
        :attr:`funding_rate_page_limit` rows; Binance ``/fapi/v1/fundingRate``: 1,000, one
        row per funding time of one symbol) from just after the last time read until a page
        comes back short or passes ``until_ms``, so a history longer than a page (a year of
        8-hourly funding is 1,095 rows) is read whole.

        Returns
        -------
        list of FundingRate
            ``timestamp`` rounded to the minute (venues stamp funding times a few ms
            late); ``mark_price`` the venue's mark price at that funding time (Binance sends
            it as ``markPrice``; ``None`` where the venue sends none or an empty one, as
            Binance does for old rows). A funding payment is ``-amount * mark_price * rate``.

        Raises
        ------
        ExchangeError
            A failed page read (retried first, as every read).
        """
        self._ensure_markets()
        limit = self.funding_rate_page_limit
        out: dict[int, FundingRate] = {}
        cursor = since_ms
        while cursor <= until_ms:
            page = self._read(
                f"fetch_funding_rate_history {symbol} since {cursor}",
                partial(self._client.fetch_funding_rate_history, symbol, cursor, limit,
                        {"endTime": until_ms}),
            )
            last: int | None = None
            for r in page:
                ts, rate = _opt_i(r.get("timestamp")), _opt_f(r.get("fundingRate"))
                if ts is None:
                    continue
                last = ts if last is None else max(last, ts)
                info = r.get("info")
                mark = _opt_f(info.get("markPrice")) if isinstance(info, Mapping) else None
                if rate is not None and since_ms <= ts <= until_ms + 60_000:
                    at = round(ts / 60_000) * 60_000
                    out[at] = FundingRate(at, rate, mark if mark and mark > 0 else None)
            if len(page) < limit or last is None or last < cursor:
                break
            cursor = last + 1
        return [out[t] for t in sorted(out)]

    @property
    def funding_page_limit(self) -> int:
        """Most funding payments one income-history request returns on this venue."""
        return _FUNDING_PAGE_LIMIT.get(self._recipe.exchange_id, _DEFAULT_FUNDING_PAGE_LIMIT)

    def fetch_funding_history(
        self, symbol: str | None = None, since_ms: int | None = None
    ) -> list[FundingPayment]:
        """Every funding payment received (+) or paid (−) since ``since_ms``, oldest first.

        Pages through the venue's income history (each page a retried read) with the
        venue's largest page (:attr:`funding_page_limit`; Binance ``/fapi/v1/income``:
        1,000) until a page comes back short, so no payment is cut off however many there
        are.

        Parameters
        ----------
        symbol : str, optional
            One unified symbol; default all.
        since_ms : int, optional
            Earliest payment time (inclusive). Without it the first page is what the venue
            returns without a start time (Binance: the last 7 days), paged forward from
            there.

        Returns
        -------
        list of FundingPayment
            Each payment once, sorted by time.

        Raises
        ------
        ExchangeError
            A full page that cannot be paged past by time: its payments are all at one
            millisecond and all already read (more than a page of symbols paid funding at
            the same instant), or none carries a time. The rest would be lost otherwise.
            Also any failed page read (retried first, as every read).

        Notes
        -----
        Each next page starts *at* the last time read (Binance's ``startTime`` is
        inclusive), not after it: several payments share a funding time (one per symbol
        held), and a page may end in the middle of them. Payments already read are
        recognized by their id (Binance ``tranId``, unique per income type; without an id:
        symbol, time and amount) and dropped, so each is returned exactly once.
        """
        self._account_ready("fetch_funding_history")
        limit = self.funding_page_limit
        context = f"fetch_funding_history {symbol or '(all)'}"
        out: list[FundingPayment] = []
        seen: set[tuple[Any, ...]] = set()
        cursor = since_ms
        while True:
            page = self._read(
                context if cursor is None else f"{context} since {cursor}",
                partial(self._client.fetch_funding_history, symbol, cursor, limit),
            )
            fresh = 0
            last: int | None = None
            for f in page:
                ts = _opt_i(f.get("timestamp"))
                if ts is not None:
                    last = ts if last is None else max(last, ts)
                fid = f.get("id")
                key = ("id", str(fid)) if fid not in (None, "") else (
                    "row", f.get("symbol"), ts, f.get("amount"))
                if key in seen:
                    continue
                seen.add(key)
                fresh += 1
                out.append(FundingPayment(
                    symbol=self._unified_symbol(f), amount=_f(f.get("amount")), timestamp=ts
                ))
            if len(page) < limit:
                break
            if last is None:
                raise errors.ExchangeError(
                    f"{context}: a full page of {limit} funding payments carries no times; "
                    "the venue's history cannot be paged, so later payments would be lost"
                )
            if not fresh:
                raise errors.ExchangeError(
                    f"{context}: a full page of {limit} funding payments at {last} ms were all "
                    "read already; the venue's history cannot be paged past that time, so "
                    "later payments would be lost"
                )
            cursor = last
        return sorted(out, key=lambda p: (p.timestamp is None, p.timestamp or 0))
