"""The adapter honours the venue's ``Retry-After`` on retried reads, never retries an order.

The simulator answers its ``rate_limit_next`` fault as Binance answers a used-up weight
window: HTTP 429, code -1003, ``Retry-After`` = the seconds left in its wall-clock minute.
Its wall clock is set to second 58 or 59 of a minute here, so the venue asks for 2 or 1 s
(public reads only: a signed request is checked against that clock). A 418 ban is served by
a tiny server of this test on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import ccxt
import pytest

from pairlib import errors
from pairlib.clock import SettableClock, to_ms
from pairlib.config import VenueParams
from pairlib.sim.market import GENESIS, Market, MarketSpec
from pairlib.sim.server import SimServer
from pairlib.venue.exchange import MAX_RETRY_AFTER_S, Exchange, retry_after_s
from pairlib.venue.records import OhlcvRequest

NOW = GENESIS + timedelta(hours=4 * 1200)
BTC = "BTC/USDT:USDT"
KLINES = "/fapi/v1/klines"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    wall = SettableClock(GENESIS + timedelta(seconds=59))
    srv = SimServer(Market(MarketSpec(seed=7, n_symbols=6, n_pairs=1)), state_path=None,
                    now=NOW, wall_clock=wall)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _asks(sim: SimServer, seconds: int) -> None:
    """Set the simulator's wall clock so that its 429 asks for ``Retry-After: seconds``."""
    assert isinstance(sim.wall_clock, SettableClock)
    sim.wall_clock.set(GENESIS + timedelta(seconds=60 - seconds))


@pytest.fixture()
def ex(sim: SimServer) -> Iterator[Exchange]:
    sim.faults.clear()
    with Exchange.from_params(VenueParams(max_retries=3), sim_url=sim.url,
                              retry_base_delay=0.001) as e:
        e.markets()
        yield e
    sim.faults.clear()


def _waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    """The waits the adapter's retry log lines announce, in seconds."""
    return [float(m.group(1)) for r in caplog.records if r.name == "pairlib.venue.exchange"
            and (m := re.search(r"retry \d+/\d+ in ([0-9.]+)s", r.getMessage()))]


def test_a_read_waits_the_retry_after_of_a_429(
    ex: Exchange, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The backoff alone would retry after about a millisecond; the venue asked for 2 s."""
    _asks(sim, 2)
    sim.faults.rate_limit_next(1, path=KLINES)
    sent = ex.requests_sent
    with caplog.at_level(logging.WARNING, logger="pairlib.venue.exchange"):
        t0 = time.monotonic()
        rows = ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)
        waited = time.monotonic() - t0
    assert len(rows) == 3 and ex.requests_sent - sent == 2
    assert _waits(caplog) == [2.0]
    assert waited >= 2.0
    assert any("Retry-After 2 s" in r.getMessage() for r in caplog.records)


def test_the_async_batch_reader_waits_the_retry_after_too(
    ex: Exchange, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    _asks(sim, 1)
    sim.faults.rate_limit_next(1, path=KLINES)
    req = OhlcvRequest(BTC, "4h", to_ms(GENESIS), 3)
    with caplog.at_level(logging.WARNING, logger="pairlib.venue.exchange"):
        t0 = time.monotonic()
        batch = ex.fetch_ohlcv_batch([req])
        waited = time.monotonic() - t0
    assert not batch.errors and len(batch.rows[req]) == 3 and batch.requests_sent == 2
    assert _waits(caplog) == [1.0] and waited >= 1.0


def test_retry_after_still_counts_against_max_retries(ex: Exchange, sim: SimServer) -> None:
    _asks(sim, 1)
    sim.faults.rate_limit_next(10, path=KLINES)
    sent = ex.requests_sent
    with pytest.raises(errors.RateLimited) as info:
        ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)
    assert isinstance(info.value.__cause__, ccxt.DDoSProtection)
    assert ex.requests_sent - sent == 1 + ex.retry_policy.max_retries


def test_a_retry_after_over_the_maximum_fails_at_once(
    ex: Exchange, sim: SimServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pairlib.venue import exchange

    monkeypatch.setattr(exchange, "MAX_RETRY_AFTER_S", 1.5)
    _asks(sim, 2)
    sim.faults.rate_limit_next(1, path=KLINES)
    sent = ex.requests_sent
    with pytest.raises(errors.RateLimited, match=r"wait 2 s \(Retry-After\).* 1\.5 s a read waits"):
        ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)
    assert ex.requests_sent - sent == 1
    assert ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)  # nothing else is armed


def test_an_order_answered_429_is_not_retried(ex: Exchange, sim: SimServer) -> None:
    """A 429 on an order keeps the order path: one request, RateLimited (an
    ExchangeUnavailable: the caller looks the order up by its client id), no wait."""
    _asks(sim, 1)
    sim.faults.rate_limit_next(1, path="/fapi/v1/order")
    sent = ex.requests_sent
    with pytest.raises(errors.RateLimited) as info:
        ex.create_order(BTC, "buy", 0.01, "t-429-order")
    assert isinstance(info.value, errors.ExchangeUnavailable)
    assert ex.requests_sent - sent == 1
    assert not [o for o in sim.account.orders() if o["clientOrderId"] == "t-429-order"]


class _Banned(http.server.BaseHTTPRequestHandler):
    """Answers every request as Binance answers a banned IP: 418 with Retry-After."""

    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        body = json.dumps({"code": -1003, "msg": "Way too many requests; IP banned."}).encode()
        self.send_response(418)
        self.send_header("Retry-After", "7200")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_418_ban_is_not_slept_through_nor_retried() -> None:
    _Banned.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Banned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        with Exchange.from_params(VenueParams(max_retries=3), sim_url=url,
                                  retry_base_delay=0.001) as ex, \
                pytest.raises(errors.RateLimited) as info:
            ex.markets()
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Banned.hits) == 1 and ex.requests_sent == 1
    msg = str(info.value)
    assert "418" in msg and "wait 7200 s (Retry-After)" in msg
    assert f"longer than the {MAX_RETRY_AFTER_S:g} s a read waits" in msg
    assert isinstance(info.value.__cause__, ccxt.DDoSProtection)


@pytest.mark.parametrize(("headers", "want"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": " 0 "}, 0.0),
    ({"RETRY-AFTER": "1.5"}, 1.5),
    ({"Retry-After": "-3"}, None),
    ({"Retry-After": "nan"}, None),
    ({"Retry-After": "inf"}, None),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
    ({"X-MBX-USED-WEIGHT-1M": "2400"}, None),
    ({}, None),
    (None, None),
])
def test_retry_after_header_parsing(headers: dict[str, str] | None, want: float | None) -> None:
    assert retry_after_s(headers) == want


def test_an_armed_retry_after_is_what_the_venue_sends(
    ex: Exchange, sim: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    """``rate_limit_next(retry_after_s=...)`` fixes the header (the fault matrix and the soak
    use 1 s so a 429 does not cost the rest of a minute); it survives the admin JSON shape,
    and a bad value is refused."""
    _asks(sim, 40)  # the window alone would ask for 40 s
    sim.faults.rate_limit_next(1, path=KLINES, retry_after_s=1)
    assert sim.faults.to_dict()["rate_limit_next"] == [
        {"n": 1, "path": KLINES, "retry_after_s": 1}]
    with caplog.at_level(logging.WARNING, logger="pairlib.venue.exchange"):
        rows = ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)
    assert len(rows) == 3 and _waits(caplog) == [1.0]
    with pytest.raises(ValueError, match="retry_after_s"):
        sim.faults.rate_limit_next(1, retry_after_s=0.5)  # type: ignore[arg-type]
