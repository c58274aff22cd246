"""The simulated exchange: a Binance USD-M futures REST venue served over loopback.

A plain ``ccxt.binanceusdm`` whose ``urls['api']`` is replaced by :func:`ccxt_urls` loads
markets, fetches candles and funding, and trades against it. The market is a pure function of
the seed and the simulated clock; the account persists in a JSON state file.

Clocks
------
Two clocks, never mixed:

* **Sim time** (``now``) drives everything market-related: candles (never one closing after
  ``now``; the forming one opens at or before ``now``), prices, fills, order timestamps and
  funding. It is *set* (:meth:`SimServer.set_now`, ``POST /sim/clock``), never read from the
  wall.
* **Wall time** (an injected :class:`~pairlib.clock.Clock`, the system clock by default) is
  used only for request authentication and rate limiting: ``/fapi/v1/time`` returns it, the
  signed-request ``timestamp`` must be within ``recvWindow`` of it (as ccxt signs with the
  local wall clock), and request weight is counted per wall-clock minute.

Errors
------
Binance's codes and HTTP statuses: -1022 bad signature, -2014/-2015 bad API key (401), -1021
timestamp outside recvWindow, -1121 unknown symbol, -2013 unknown order, -2011 cancelling a
closed order, -2019 insufficient margin, -2022 reduce-only rejected, -4116 duplicate client
order id, -4164 notional too small, HTTP 429 with -1003 over the weight limit (with
``Retry-After``), 404 with -5000 for an unknown path.

ccxt 4.5.90 picks its futures error table (-2019, -4116, -2022, -4164 ...) by URL prefix
``https://fapi.binance.com``; against any other URL only its host-independent table applies.
So with rewritten URLs: -1022 -> AuthenticationError, -2013 -> OrderNotFound and (thanks to
the message, see :data:`~pairlib.sim.account.INSUFFICIENT_MARGIN_MSG`) -2019 ->
InsufficientFunds as against Binance, but -4116 -> plain ExchangeError unless the client
merges ``exchange.exceptions['linear']['exact']`` into ``exchange.exceptions['exact']``.
HTTP 429 raises ccxt's DDoSProtection (binance's ``handle_errors`` checks 418/429 first),
exactly as against Binance.

Admin endpoints (loopback clients only, unsigned, JSON): ``GET|POST /sim/clock``
(``{"now": ISO or ms}`` or ``{"advance_ms": n}``), ``GET|POST /sim/faults`` (see
:meth:`Faults.apply`), ``GET /sim/truth``, ``GET /sim/account``. Their inputs are validated
(finite numbers, times inside the market's history, known fault arguments): a bad one answers
400 with ``{"error": "..."}`` naming it, and changes nothing.

Late booking
------------
``faults.book_late_next_orders`` makes the matching engine accept an order after its request
was answered with a timeout, a closed connection or a 503: a background thread books it
``delay_s`` seconds (wall clock) later at the then-current sim time, unless the wall clock is
then past the request's ``timestamp + recvWindow`` (Binance refuses it then). Pending bookings
live in memory only (:meth:`SimServer.late_bookings`, :meth:`SimServer.wait_late_bookings`);
stopping the server abandons them.

HTTP limits
-----------
A request body is at most ``max_body_bytes`` (64 KiB; HTTP 413 above); a non-numeric or
negative ``Content-Length`` or a chunked body answers 400 and closes the connection. Every
read and write on a connection times out after ``idle_timeout_s`` (30 s), so an idle
keep-alive connection, or a client that connects and sends nothing, is closed by the server
instead of holding a thread.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import socket
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

from pairlib.clock import Clock, SystemClock, from_ms, parse_time, to_ms
from pairlib.config import SIM_API_KEY, SIM_API_SECRET
from pairlib.sim.account import (
    DEFAULT_LEVERAGE,
    INSUFFICIENT_MARGIN_MSG,
    Account,
    ExchangeReject,
)
from pairlib.sim.endpoints import ROUTES, Route, Venue
from pairlib.sim.faults import Faults, LateBooking
from pairlib.sim.market import Market
from pairlib.sim.source import MarketSource

__all__ = ["DEFAULT_API_KEY", "DEFAULT_API_SECRET", "SimServer", "ccxt_urls"]

DEFAULT_API_KEY = SIM_API_KEY
"""The simulator's fixed local API key (not a secret: it only opens a loopback simulator)."""
DEFAULT_API_SECRET = SIM_API_SECRET
"""The simulator's fixed local API secret (HMAC-SHA256 key, as Binance uses)."""

_REJECT_MESSAGES = {
    -1008: "Server is currently overloaded with other requests. Please try again in a few "
           "minutes.",
    -2010: "NEW_ORDER_REJECTED",
    -2019: INSUFFICIENT_MARGIN_MSG,
    -2022: "ReduceOnly Order is rejected.",
    -4116: "ClientOrderId is duplicated.",
    -4164: "Order's notional must be no smaller than 5 (unless you choose reduce only).",
}


DEFAULT_IDLE_TIMEOUT_S = 30.0
"""Seconds a connection may stay idle (or stall mid-request) before the server closes it."""
DEFAULT_MAX_BODY_BYTES = 64 * 1024
"""Largest request body accepted (HTTP 413 above)."""
_DEFAULT_RECV_WINDOW_MS = 5_000


def _deadline(params: dict[str, str]) -> int:
    """``timestamp + recvWindow`` of an authenticated request: the last wall-clock ms at
    which Binance still accepts it."""
    return int(params["timestamp"]) + int(params.get("recvWindow") or _DEFAULT_RECV_WINDOW_MS)


def ccxt_urls(base_url: str) -> dict[str, str]:
    """Every ``urls['api']`` entry of ccxt's binance/binanceusdm pointed at ``base_url``.

    All entries are rewritten (not only the futures ones) so that no call can leak to the
    real exchange. Use as ``exchange.urls['api'] = ccxt_urls(server.url)``.
    """
    b = base_url.rstrip("/")
    return {
        "sapi": f"{b}/sapi/v1", "sapiV2": f"{b}/sapi/v2", "sapiV3": f"{b}/sapi/v3",
        "sapiV4": f"{b}/sapi/v4",
        "dapiPublic": f"{b}/dapi/v1", "dapiPrivate": f"{b}/dapi/v1",
        "dapiPrivateV2": f"{b}/dapi/v2", "dapiData": f"{b}/futures/data",
        "eapiPublic": f"{b}/eapi/v1", "eapiPrivate": f"{b}/eapi/v1",
        "fapiPublic": f"{b}/fapi/v1", "fapiPublicV2": f"{b}/fapi/v2",
        "fapiPublicV3": f"{b}/fapi/v3", "fapiPrivate": f"{b}/fapi/v1",
        "fapiPrivateV2": f"{b}/fapi/v2", "fapiPrivateV3": f"{b}/fapi/v3",
        "fapiData": f"{b}/futures/data",
        "public": f"{b}/api/v3", "private": f"{b}/api/v3", "v1": f"{b}/api/v1",
        "papi": f"{b}/papi/v1", "papiV2": f"{b}/papi/v2",
    }


def _book(market: MarketSource) -> Market:
    """``market`` as the account and endpoints annotate it: they use only the
    :class:`~pairlib.sim.source.MarketSource` surface."""
    return cast(Market, market)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _strip_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if not p.startswith("signature=")) if raw else ""


class _WeightMeter:
    """Request weight used in the current wall-clock minute (Binance's fixed window)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._minute = -1
        self._used = 0

    def charge(self, wall_ms: int, weight: int) -> tuple[bool, int]:
        minute = wall_ms // 60_000
        with self._lock:
            if minute != self._minute:
                self._minute, self._used = minute, 0
            if self._used + weight > self.limit:
                return False, self._used
            self._used += weight
            return True, self._used


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    sim: SimServer


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Keep-alive responses are small writes: without TCP_NODELAY every request waits
    # ~40 ms for the delayed ACK (Nagle).
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        # Every read and write on the connection times out after the server's idle timeout:
        # http.server then closes the connection, so an idle keep-alive client or one that
        # connects and sends nothing does not hold a thread forever.
        super().setup()
        self.connection.settimeout(self.server.sim.idle_timeout_s)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.server.sim._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.sim._handle(self, "POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.sim._handle(self, "PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.sim._handle(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence per-request logging."""


class SimServer:
    """The simulated Binance USD-M futures venue.

    Parameters
    ----------
    market : MarketSource
        Where prices, candles, rules and funding come from: the simulated
        :class:`~pairlib.sim.market.Market` (a pure function of its spec) or, for the
        ``paper`` venue, :class:`~pairlib.venue.paper.PublicMarket`.
    state_path : Path or None
        The account's JSON state file (created if missing, continued if present); None keeps
        the account in memory.
    now : datetime
        Initial sim time (within the market's history).
    host, port : str, int
        Where to listen; port 0 picks a free port. Non-loopback hosts need
        ``allow_remote=True``.
    api_key, api_secret : str
        The only accepted key pair (HMAC-SHA256 signatures).
    slippage_bps, taker_fee, maker_fee, starting_balance : float
        Fill model and the fresh account's USDT balance.
    weight_limit : int
        Request weight allowed per wall-clock minute (Binance: 2400).
    default_leverage : int
        Leverage of symbols never set through ``/fapi/v1/leverage`` (Binance: 20).
    wall_clock : Clock, optional
        Wall clock for recvWindow and rate limits (default: the system clock).
    allow_remote : bool
        Permit a non-loopback ``host``.
    idle_timeout_s : float
        A connection idle this long (no request, or a request stalled mid-way) is closed by
        the server (keep-alive clients reconnect transparently).
    max_body_bytes : int
        Largest request body accepted; a longer ``Content-Length`` answers HTTP 413.

    Examples
    --------
    >>> with SimServer(Market(), None, now=GENESIS + timedelta(days=30)) as sim:  # doctest: +SKIP
    ...     ex = ccxt.binanceusdm({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET})
    ...     ex.urls["api"] = ccxt_urls(sim.url)
    ...     sim.faults.fail_next(1, status=503)
    """

    def __init__(
        self,
        market: MarketSource,
        state_path: Path | None,
        now: datetime,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        api_secret: str = DEFAULT_API_SECRET,
        slippage_bps: float = 2.0,
        taker_fee: float = 0.0005,
        maker_fee: float = 0.0002,
        starting_balance: float = 10_000.0,
        weight_limit: int = 2400,
        *,
        default_leverage: int = DEFAULT_LEVERAGE,
        wall_clock: Clock | None = None,
        allow_remote: bool = False,
        idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if not _is_loopback(host) and not allow_remote:
            raise ValueError(f"refusing to listen on non-loopback host {host!r} "
                             "(pass allow_remote=True to override)")
        if not (math.isfinite(idle_timeout_s) and 0 < idle_timeout_s <= 3600):
            raise ValueError(f"idle_timeout_s must be in (0, 3600] seconds, got {idle_timeout_s}")
        if not 1 <= max_body_bytes <= 64 * 1024 * 1024:
            raise ValueError(f"max_body_bytes must be in [1, 67108864], got {max_body_bytes}")
        self.idle_timeout_s = float(idle_timeout_s)
        self.max_body_bytes = int(max_body_bytes)
        self.market = market
        self.host = host
        self.port = port
        self.api_key = api_key
        self._secret = api_secret.encode()
        self.faults = Faults()
        self.wall_clock: Clock = wall_clock or SystemClock()
        self._weights = _WeightMeter(weight_limit)
        self._stopping = threading.Event()
        self._clock_lock = threading.Lock()
        now_ms = to_ms(parse_time(now))
        self._check_time(now_ms)
        self.account = Account(
            _book(market), Path(state_path) if state_path is not None else None, now_ms,
            starting_balance=starting_balance, taker_fee=taker_fee, maker_fee=maker_fee,
            slippage_bps=slippage_bps, default_leverage=default_leverage,
        )
        self._now_ms = now_ms
        self.account.advance(now_ms)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._late_lock = threading.Lock()
        self._late: list[dict[str, Any]] = []
        self._late_threads: list[threading.Thread] = []
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Start serving in a daemon thread; returns the base URL ``http://HOST:PORT``."""
        if self._httpd is not None:
            return self.url
        cls = _HTTPServer6 if ":" in self.host.strip("[]") else _HTTPServer
        httpd = cls((self.host.strip("[]"), self.port), _Handler)
        httpd.sim = self
        self._httpd = httpd
        self.port = int(httpd.server_address[1])
        host = f"[{self.host.strip('[]')}]" if cls is _HTTPServer6 else self.host
        self.url = f"http://{host}:{self.port}"
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"sim-server-{self.port}", daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._late_lock:
            pending, self._late_threads = self._late_threads, []
        for t in pending:
            t.join(timeout=5)

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ clock
    @property
    def now(self) -> datetime:
        """The current sim time."""
        return from_ms(self._now_ms)

    @property
    def now_ms(self) -> int:
        """The current sim time in ms since the epoch."""
        return self._now_ms

    def _check_time(self, ms: int) -> None:
        genesis, end = to_ms(self.market.spec.genesis), to_ms(self.market.horizon_end)
        if not genesis <= ms <= end:
            raise ValueError(
                f"sim time {from_ms(ms).isoformat()} is outside the market's history "
                f"[{from_ms(genesis).isoformat()}, {from_ms(end).isoformat()}]"
            )

    def set_now(self, when: datetime) -> None:
        """Set the sim clock; moving forward settles resting limit orders and funding.

        Moving backwards is allowed (replays) but never settles anything twice.
        """
        ms = to_ms(parse_time(when))
        self._check_time(ms)
        with self._clock_lock:
            self.account.advance(ms)
            self._now_ms = ms

    def advance(self, delta: timedelta) -> datetime:
        """Move the sim clock forward by ``delta``; returns the new time."""
        if delta < timedelta(0):
            raise ValueError(f"advance needs a non-negative delta, got {delta}")
        self.set_now(self.now + delta)
        return self.now

    # ------------------------------------------------------------------ HTTP
    def _send(self, h: _Handler, status: int, body: bytes, ctype: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            h.close_connection = True

    def _json(self, h: _Handler, status: int, payload: Any,
              headers: dict[str, str] | None = None) -> None:
        self._send(h, status, json.dumps(payload, separators=(",", ":")).encode(),
                   headers=headers)

    def _error(self, h: _Handler, e: ExchangeReject, headers: dict[str, str]) -> None:
        self._json(h, e.status, {"code": e.code, "msg": e.msg}, headers)

    def _handle(self, h: _Handler, method: str) -> None:
        try:
            parts = urlsplit(h.path)
            admin = parts.path.startswith("/sim/")
            body = self._read_body(h, admin)
            if body is None:
                return
            if admin:
                self._admin(h, method, parts.path, body)
            else:
                self._exchange(h, method, parts.path, parts.query, body)
        except Exception:  # never kill the server thread; report as Binance does
            traceback.print_exc(file=sys.stderr)
            self._json(h, 500, {"code": -1000, "msg": "An unknown error occurred while "
                                                      "processing the request."})

    def _refuse(self, h: _Handler, admin: bool, status: int, msg: str) -> None:
        """Answer a malformed HTTP request and close the connection (its body is unread,
        so the stream cannot be resynchronised)."""
        h.close_connection = True
        payload = {"error": msg} if admin else {"code": -1000 if status == 413 else -1102,
                                                "msg": msg}
        self._json(h, status, payload, {"Connection": "close"})

    def _read_body(self, h: _Handler, admin: bool) -> str | None:
        """The request body, or None after refusing the request: a chunked or
        non-numeric/negative ``Content-Length`` body (400), or one over
        :attr:`max_body_bytes` (413)."""
        if h.headers.get("Transfer-Encoding"):
            self._refuse(h, admin, 400, "Transfer-Encoding is not supported; send the body "
                                        "with a Content-Length")
            return None
        raw = (h.headers.get("Content-Length") or "").strip()
        if not raw:
            return ""
        if not raw.isdigit():
            self._refuse(h, admin, 400, f"Content-Length must be a non-negative whole "
                                        f"number of bytes, got {raw[:40]!r}")
            return None
        length = int(raw)
        if length > self.max_body_bytes:
            self._refuse(h, admin, 413, f"request body of {length} bytes is over the "
                                        f"{self.max_body_bytes}-byte limit")
            return None
        try:
            data = h.rfile.read(length) if length else b""
        except (TimeoutError, ConnectionError):  # stalled past the idle timeout, or gone
            data = b""
        if len(data) < length:
            h.close_connection = True
            return None
        try:
            return data.decode()
        except UnicodeDecodeError:
            self._refuse(h, admin, 400, "request body is not valid UTF-8")
            return None

    def _exchange(self, h: _Handler, method: str, path: str, query: str, body: str) -> None:
        if self.faults.latency_ms > 0 and self._stopping.wait(self.faults.latency_ms / 1000):
            return
        known = ROUTES.get((method, path))  # a random fault (Faults.random_faults), if drawn
        self.faults.roll(path, known is not None and known.is_order,
                         dict(parse_qsl(f"{query}&{body}")).get("newClientOrderId"))
        fault = self.faults.take_http(path)
        if fault is not None and fault.kind == "timeout":
            if self._stopping.wait(fault.seconds):
                return
        elif fault is not None and fault.kind == "status":
            self._send(h, fault.status, b"Service Unavailable", ctype="text/plain")
            return
        elif fault is not None and fault.kind == "maintenance":
            self._json(h, 503, {"code": 1, "msg": "System is under maintenance."})
            return
        wall_ms = to_ms(self.wall_clock.now())
        route = ROUTES.get((method, path))
        if route is None:
            self._json(h, 404, {"code": -5000, "msg": f"Path {path}, Method {method} is "
                                                      "invalid"})
            return
        params = dict(parse_qsl(query, keep_blank_values=True))
        params.update(parse_qsl(body, keep_blank_values=True))
        weight = route.weight(params)
        ok, used = self._weights.charge(wall_ms, weight)
        if fault is not None and fault.kind == "rate_limit":
            ok = False
        if not ok:
            retry = (str(int(fault.seconds)) if fault is not None and fault.seconds
                     else str(60 - (wall_ms // 1000) % 60))
            self._json(h, 429, {"code": -1003, "msg": (
                f"Too many requests; current limit of IP(127.0.0.1) is "
                f"{self._weights.limit} requests per minute. Please use the websocket for "
                "live updates to avoid polling the API.")},
                {"Retry-After": retry, "X-MBX-USED-WEIGHT-1M": str(used)})
            return
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        venue = Venue(_book(self.market), self.account, self._now_ms, wall_ms, self._weights.limit)
        try:
            if route.signed:
                self._authenticate(h, params, query, body, wall_ms)
            if route.is_order:
                cid = params.get("newClientOrderId")
                late = self.faults.take_late(cid)
                if late is not None:
                    self._answer_late(h, route, params, late, wall_ms)
                    return
                rejection = self.faults.take_rejection(cid)
                if rejection is not None:
                    code, msg = rejection
                    raise ExchangeReject(code, msg or _REJECT_MESSAGES.get(
                        code, "Order rejected by the simulator (injected fault)."))
                venue.fill_ratio = self.faults.take_partial(cid)
            payload = route.handler(params, venue)
        except ExchangeReject as e:
            self._error(h, e, headers)
            return
        except KeyError as e:
            self._error(h, ExchangeReject(-1121, f"Invalid symbol. ({e})"), headers)
            return
        except ValueError as e:
            self._error(h, ExchangeReject(-1000, str(e)), headers)
            return
        if route.is_order:
            drop = self.faults.take_drop(params.get("newClientOrderId"))
            if drop == "close":
                h.close_connection = True
                return
            if drop == "5xx":
                self._send(h, 503, b"Service Unavailable", ctype="text/plain")
                return
        self._json(h, 200, payload, headers)

    # ------------------------------------------------------------------ late booking
    def _answer_late(self, h: _Handler, route: Route, params: dict[str, str],
                     late: LateBooking, wall_ms: int) -> None:
        """Schedule a new order to be booked ``late.delay_s`` from now and answer its
        request per ``late.mode`` (without booking anything now)."""
        record: dict[str, Any] = {
            "clientOrderId": params.get("newClientOrderId") or None,
            "symbol": params.get("symbol"), "received_wall_ms": wall_ms,
            "due_wall_ms": wall_ms + round(late.delay_s * 1000),
            "expires_wall_ms": _deadline(params), "status": "PENDING", "detail": "",
            "orderId": None,
        }
        thread = threading.Thread(
            target=self._book_late, args=(route, dict(params), late.delay_s, record),
            name=f"sim-late-booking-{self.port}", daemon=True,
        )
        with self._late_lock:
            self._late.append(record)
            self._late_threads.append(thread)
        thread.start()
        if late.mode == "5xx":
            self._send(h, 503, b"Service Unavailable", ctype="text/plain")
            return
        if late.mode == "timeout":
            self._stopping.wait(late.hold_s)
        h.close_connection = True

    def _book_late(self, route: Route, params: dict[str, str], delay_s: float,
                   record: dict[str, Any]) -> None:
        """The matching engine accepting an order late: after ``delay_s`` (wall clock),
        book it at the current sim time unless its ``timestamp + recvWindow`` has passed."""
        outcome: tuple[str, str, int | None]
        if self._stopping.wait(delay_s):
            outcome = ("ABANDONED", "the server stopped before the booking moment", None)
        else:
            wall_ms = to_ms(self.wall_clock.now())
            if wall_ms > record["expires_wall_ms"]:
                outcome = ("EXPIRED", f"booking moment {wall_ms} is past timestamp + "
                                      f"recvWindow = {record['expires_wall_ms']}", None)
            else:
                venue = Venue(_book(self.market), self.account, self._now_ms, wall_ms,
                              self._weights.limit)
                try:
                    order = route.handler(params, venue)
                    outcome = ("BOOKED", str(order.get("status")), int(order["orderId"]))
                except ExchangeReject as e:
                    outcome = ("REJECTED", f"{e.code}: {e.msg}", None)
                except (KeyError, ValueError) as e:
                    outcome = ("REJECTED", str(e), None)
        with self._late_lock:
            record["status"], record["detail"], record["orderId"] = outcome
            record["booked_wall_ms"] = to_ms(self.wall_clock.now())
            me = threading.current_thread()
            self._late_threads = [t for t in self._late_threads if t is not me]

    def late_bookings(self) -> list[dict[str, Any]]:
        """Every late booking so far (copies), oldest first.

        Each has ``clientOrderId``, ``symbol``, ``received_wall_ms``, ``due_wall_ms``,
        ``expires_wall_ms`` (the request's ``timestamp + recvWindow``), ``status``
        (``PENDING``, ``BOOKED``, ``EXPIRED`` past recvWindow, ``REJECTED`` by the account
        at booking time, ``ABANDONED`` when the server stopped first), ``detail``,
        ``orderId`` (once booked) and ``booked_wall_ms`` (when resolved).
        """
        with self._late_lock:
            return [dict(r) for r in self._late]

    def wait_late_bookings(self, timeout_s: float = 10.0) -> bool:
        """Block until no late booking is pending (or ``timeout_s`` passed); True if none
        is pending. Lets a test wait for the booking moment instead of sleeping."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._late_lock:
                pending = list(self._late_threads)
            if not pending:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pending[0].join(timeout=remaining)

    def _authenticate(self, h: _Handler, params: dict[str, str], query: str, body: str,
                      wall_ms: int) -> None:
        key = h.headers.get("X-MBX-APIKEY")
        if not key:
            raise ExchangeReject(-2014, "API-key format invalid.", status=401)
        if not hmac.compare_digest(key.encode(), self.api_key.encode()):
            raise ExchangeReject(-2015, "Invalid API-key, IP, or permissions for action.",
                                 status=401)
        signature = params.get("signature")
        if not signature:
            raise ExchangeReject(-1102, "Mandatory parameter 'signature' was not sent, was "
                                        "empty/null, or malformed.")
        payload = (_strip_signature(query) + _strip_signature(body)).encode()
        expected = hmac.new(self._secret, payload, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ExchangeReject(-1022, "Signature for this request is not valid.")
        try:
            ts = int(params.get("timestamp") or "")
            recv = int(params.get("recvWindow") or _DEFAULT_RECV_WINDOW_MS)
        except ValueError:
            raise ExchangeReject(-1102, "Mandatory parameter 'timestamp' was not sent, was "
                                        "empty/null, or malformed.") from None
        if recv > 60_000:
            raise ExchangeReject(-1131, "recvWindow must be less than 60000")
        if ts >= wall_ms + 1000 or wall_ms - ts > recv:
            raise ExchangeReject(-1021, "Timestamp for this request is outside of the "
                                        "recvWindow.")

    # ------------------------------------------------------------------ admin
    def _admin(self, h: _Handler, method: str, path: str, body: str) -> None:
        if not _is_loopback(str(h.client_address[0])):
            self._json(h, 403, {"error": "the /sim/ admin endpoints are loopback-only"})
            return
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            if path == "/sim/clock" and method == "POST":
                if "now" in data:
                    self.set_now(self._admin_time(data["now"]))
                elif "advance_ms" in data:
                    self.advance(timedelta(milliseconds=self._admin_advance(data["advance_ms"])))
                else:
                    raise ValueError("POST /sim/clock needs 'now' (ISO-8601 or ms) or "
                                     "'advance_ms'")
                self._json(h, 200, self._clock_json())
            elif path == "/sim/clock" and method == "GET":
                self._json(h, 200, self._clock_json())
            elif path == "/sim/faults" and method == "POST":
                self.faults.apply(data)
                self._json(h, 200, self.faults.to_dict())
            elif path == "/sim/faults" and method == "GET":
                self._json(h, 200, self.faults.to_dict())
            elif path == "/sim/truth" and method == "GET":
                self._json(h, 200, self.truth())
            elif path == "/sim/account" and method == "GET":
                self._json(h, 200, self._account_json())
            else:
                self._json(h, 404, {"error": f"no admin endpoint {method} {path}"})
        except (ValueError, TypeError, OverflowError) as e:
            self._json(h, 400, {"error": str(e)})
        except RecursionError:
            self._json(h, 400, {"error": "JSON nested too deeply"})

    def _admin_time(self, when: Any) -> datetime:
        """A ``/sim/clock`` ``now``: ms since the epoch (a finite number) or ISO-8601 text,
        within the market's history."""
        genesis, end = self.market.spec.genesis, self.market.horizon_end
        allowed = f"allowed: ms since the epoch or ISO-8601 within [{genesis.isoformat()}, " \
                  f"{end.isoformat()}]"
        if isinstance(when, bool) or not isinstance(when, int | float | str):
            raise ValueError(f"'now' must be a number or a string; {allowed}; got {when!r}")
        if isinstance(when, str):
            try:
                return parse_time(when)
            except (ValueError, TypeError, OverflowError):
                raise ValueError(f"'now' is not a time: {when[:60]!r}; {allowed}") from None
        lo, hi = to_ms(genesis), to_ms(end)
        if not (math.isfinite(when) and lo <= when <= hi):
            raise ValueError(f"'now' = {when!r} is outside the market's history; {allowed}")
        return from_ms(int(when))

    def _admin_advance(self, value: Any) -> int:
        """A ``/sim/clock`` ``advance_ms``: a finite whole number of ms, 0 up to the rest of
        the market's history."""
        room = to_ms(self.market.horizon_end) - self._now_ms
        if isinstance(value, bool) or not isinstance(value, int | float) or not (
                math.isfinite(value) and value == math.floor(value) and 0 <= value <= room):
            raise ValueError(f"'advance_ms' must be a whole number of ms in [0, {room}] (the "
                             f"rest of the market's history), got {value!r}")
        return int(value)

    def _clock_json(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "now_ms": self._now_ms,
                "genesis": self.market.spec.genesis.isoformat(),
                "horizon_end": self.market.horizon_end.isoformat()}

    def truth(self) -> dict[str, Any]:
        """The market spec and planted pairs, JSON-ready (``GET /sim/truth``)."""
        s = self.market.spec
        return {
            "spec": {"seed": s.seed, "n_symbols": s.n_symbols, "n_pairs": s.n_pairs,
                     "genesis": s.genesis.isoformat(), "horizon_bars": s.horizon_bars,
                     "half_lives": list(s.half_lives) if s.half_lives else None,
                     "breakdowns": s.breakdowns},
            "pairs": [{"y": p.y, "x": p.x, "beta": p.beta, "alpha": p.alpha,
                       "half_life_bars": p.half_life_bars,
                       "break_time": p.break_time.isoformat() if p.break_time else None}
                      for p in self.market.ground_truth],
        }

    def _account_json(self) -> dict[str, Any]:
        m = self.account.margin(self._now_ms)
        return {
            "now": self.now.isoformat(), "margin": m,
            "positions": [{"symbol": p.symbol, "amount": p.amount, "entry_price": p.entry_price,
                           "leverage": p.leverage} for p in self.account.positions().values()],
            "open_orders": self.account.open_orders(),
            "funding": self.account.funding_paid(),
        }
