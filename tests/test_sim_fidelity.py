"""The simulator behaves as Binance USDⓈ-M does where the executor depends on it.

Late booking (an order accepted by the matching engine after its request timed out), market
orders that run out of liquidity, client-id validation, the income window, the mark price,
and HTTP robustness (body limits, admin input validation, idle connections). Trading checks
go through the real ccxt client, via :class:`pairlib.venue.exchange.Exchange` or plain
``ccxt.binanceusdm``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import ccxt
import numpy as np
import pytest
import requests

from pairlib import errors
from pairlib.clock import to_ms
from pairlib.config import VenueParams
from pairlib.sim import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    GENESIS,
    Market,
    MarketSpec,
    SimServer,
    ccxt_urls,
)
from pairlib.venue.exchange import Exchange

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
SOL, LTC = "SOL/USDT:USDT", "LTC/USDT:USDT"


def _adapter(server: SimServer, **venue: Any) -> Exchange:
    """The project's adapter (real ccxt) on ``server``, fast timeouts."""
    params: dict[str, Any] = {"timeout_ms": 400, "recv_window_ms": 3_000, "max_retries": 2,
                              **venue}
    return Exchange.from_params(VenueParams(**params), sim_url=server.url,
                                retry_base_delay=0.001)


def _amount(ex: Exchange, symbol: str, notional: float) -> float:
    price = ex.fetch_prices([symbol])[symbol]
    return ex.amount_to_precision(symbol, notional / price)


@pytest.fixture
def ex(sim_server: SimServer) -> Iterator[Exchange]:
    with _adapter(sim_server) as adapter:
        adapter.markets()
        yield adapter


# ---------------------------------------------------------------------- late booking
@pytest.mark.parametrize("mode", ["timeout", "close", "5xx"])
def test_late_booked_order_appears_after_delay_filled(
    ex: Exchange, sim_server: SimServer, mode: str
) -> None:
    amount = _amount(ex, ETH, 500)
    cid = f"late-{mode}"
    sim_server.faults.book_late_next_orders(1, delay_s=1.0, mode=mode)
    with pytest.raises(errors.ExchangeUnavailable):
        ex.create_order(ETH, "buy", amount, cid)
    assert ex.fetch_order_by_client_id(ETH, cid) is None  # -2013: not booked yet
    assert sim_server.account.position("ETHUSDT").amount == 0
    assert sim_server.wait_late_bookings(10)
    found = ex.fetch_order_by_client_id(ETH, cid)
    assert found is not None and found.status == "closed" and found.filled == amount
    assert sim_server.account.position("ETHUSDT").amount == amount
    (record,) = sim_server.late_bookings()
    assert record["status"] == "BOOKED" and record["clientOrderId"] == cid
    assert record["booked_wall_ms"] >= record["received_wall_ms"] + 1_000
    assert sim_server.faults.to_dict()["book_late_next_orders"] == []  # consumed


def test_late_booking_fills_at_the_sim_price_of_the_booking_moment(
    ex: Exchange, sim_server: SimServer
) -> None:
    amount = _amount(ex, SOL, 500)
    sim_server.faults.book_late_next_orders(1, delay_s=0.5, mode="close")
    with pytest.raises(errors.ExchangeUnavailable):
        ex.create_order(SOL, "sell", amount, "late-px")
    sim_server.set_now(sim_server.now.replace(hour=3, minute=17))  # the clock moves on
    assert sim_server.wait_late_bookings(10)
    order = sim_server.account.find_order("SOLUSDT", None, "late-px")
    assert order["time"] == sim_server.now_ms
    last = sim_server.market.price("SOLUSDT", sim_server.now_ms)
    assert order["avgPrice"] == pytest.approx(last * (1 - 2e-4), rel=2e-4)


def test_late_booking_past_recv_window_is_never_booked(sim_server: SimServer) -> None:
    with _adapter(sim_server, recv_window_ms=500) as ex:
        amount = _amount(ex, LTC, 300)
        sim_server.faults.book_late_next_orders(1, delay_s=1.0, mode="timeout")
        with pytest.raises(errors.ExchangeUnavailable):
            ex.create_order(LTC, "buy", amount, "late-expired")
        assert sim_server.wait_late_bookings(10)
        assert ex.fetch_order_by_client_id(LTC, "late-expired") is None
        (record,) = sim_server.late_bookings()
        assert record["status"] == "EXPIRED"
        assert record["expires_wall_ms"] - record["received_wall_ms"] <= 500
    assert sim_server.account.orders() == []
    assert sim_server.account.position("LTCUSDT").amount == 0


def test_late_booking_fault_is_serialisable(sim_server: SimServer) -> None:
    f = sim_server.faults
    f.book_late_next_orders(2, delay_s=1.5, mode="5xx")
    snapshot = f.to_dict()
    assert snapshot["book_late_next_orders"] == [
        {"n": 2, "delay_s": 1.5, "mode": "5xx", "hold_s": 30.0}]
    f.clear()
    f.apply(snapshot)
    assert f.to_dict() == snapshot
    for bad in ({"mode": "slow"}, {"delay_s": float("inf")}, {"n": 0}, {"hold_s": -1}):
        with pytest.raises(ValueError, match="book_late_next_orders"):
            f.apply({"book_late_next_orders": bad})
    assert f.to_dict() == snapshot  # a refused spec arms nothing


def test_late_booking_over_http_admin(sim_server: SimServer) -> None:
    r = requests.post(sim_server.url + "/sim/faults", timeout=5, json={
        "book_late_next_orders": {"n": 1, "delay_s": 0.3, "mode": "close"}})
    assert r.status_code == 200
    assert r.json()["book_late_next_orders"][0]["delay_s"] == 0.3
    with _adapter(sim_server) as ex:
        amount = _amount(ex, ETH, 300)
        with pytest.raises(errors.ExchangeUnavailable):
            ex.create_order(ETH, "buy", amount, "late-admin")
        assert sim_server.wait_late_bookings(10)
        assert ex.fetch_order_by_client_id(ETH, "late-admin") is not None


# ---------------------------------------------------------------------- market orders
def test_partly_filled_market_order_expires(ex: Exchange, sim_server: SimServer) -> None:
    amount = _amount(ex, ETH, 1000)
    sim_server.faults.partial_fill_next(1, ratio=0.5)
    order = ex.create_order(ETH, "buy", amount, "part-mkt")
    assert order.status == "expired"  # the unfilled rest expired at once, as on Binance
    assert 0 < order.filled < amount
    assert ex.fetch_open_orders(ETH) == []
    again = ex.fetch_order_by_client_id(ETH, "part-mkt")
    assert again is not None and again.status == "expired" and again.filled == order.filled
    assert sim_server.account.position("ETHUSDT").amount == order.filled


def test_partly_filled_marketable_gtc_limit_rests(ex: Exchange, sim_server: SimServer) -> None:
    amount = _amount(ex, SOL, 1000)
    price = ex.price_to_precision(SOL, ex.fetch_prices([SOL])[SOL] * 1.01)
    sim_server.faults.partial_fill_next(1, ratio=0.5)
    order = ex.create_order(SOL, "buy", amount, "part-lmt", type="limit", price=price)
    assert order.status == "open" and 0 < order.filled < amount
    assert [o.client_id for o in ex.fetch_open_orders(SOL)] == ["part-lmt"]


# ---------------------------------------------------------------------- client ids
def _ccxt(server: SimServer) -> ccxt.binanceusdm:
    client = ccxt.binanceusdm({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET,
                               "timeout": 5_000, "enableRateLimit": False})
    client.urls["api"] = ccxt_urls(server.url)
    client.load_markets()
    return client


@pytest.mark.parametrize("cid", ["ordér-1", "id٣", "ｆull", "a" * 37, "tab\tid", "sp ace"])
def test_client_id_outside_binance_range_is_refused(sim_server: SimServer, cid: str) -> None:
    client = _ccxt(sim_server)
    with pytest.raises(ccxt.BadRequest, match="-1100") as info:
        client.create_order(ETH, "market", "buy", 0.1, params={"clientOrderId": cid})
    body = json.loads(str(info.value).split(" ", 1)[1])
    assert body == {"code": -1100, "msg": "Illegal characters found in parameter "
                    "'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'."}
    assert sim_server.account.orders() == []
    ok = client.create_order(ETH, "market", "buy", 0.1,
                             params={"clientOrderId": "Az09.:/_-" + "x" * 27})
    assert ok["clientOrderId"] == "Az09.:/_-" + "x" * 27


# ---------------------------------------------------------------------- income window
def test_income_without_start_time_covers_the_last_seven_days(sim_server: SimServer) -> None:
    client = _ccxt(sim_server)
    client.create_order(BTC, "market", "buy", 0.01)
    t0 = sim_server.now_ms
    sim_server.advance(timedelta(days=10))
    now = sim_server.now_ms
    week = now - 7 * 86_400_000
    recent = client.fapiPrivateGetIncome({})
    assert recent and all(int(r["time"]) >= week for r in recent)
    assert len([r for r in recent if r["incomeType"] == "FUNDING_FEE"]) == 7 * 3 + 1
    assert not any(r["incomeType"] == "COMMISSION" for r in recent)  # opened 10 days ago
    everything = client.fapiPrivateGetIncome({"startTime": t0})
    assert len([r for r in everything if r["incomeType"] == "FUNDING_FEE"]) == 10 * 3
    assert [r["incomeType"] for r in everything][0] == "COMMISSION"
    capped = client.fapiPrivateGetIncome({"endTime": now - 86_400_000})
    assert all(week <= int(r["time"]) <= now - 86_400_000 for r in capped)
    assert len(capped) == 6 * 3 + 1
    assert len(client.fapiPrivateGetIncome({"limit": 5})) == 5
    assert [h["timestamp"] for h in client.fetch_funding_history(BTC)] == [
        int(r["time"]) for r in recent if r["incomeType"] == "FUNDING_FEE"]
    with pytest.raises(ccxt.ExchangeError, match="-1023"):
        client.fapiPrivateGetIncome({"startTime": now, "endTime": t0})
    with pytest.raises(ccxt.ExchangeError, match="-1130"):
        client.fapiPrivateGetIncome({"limit": 1001})


# ---------------------------------------------------------------------- mark price
def test_mark_price_is_its_own_mean_reverting_series(sim_market: Market) -> None:
    start = to_ms(GENESIS) + 100 * 86_400_000
    times = [start + k * 3_600_000 + 1_234_567 for k in range(600)]
    last = np.array([sim_market.price("ETHUSDT", t) for t in times])
    mark = np.array([sim_market.mark_price("ETHUSDT", t) for t in times])
    basis = mark / last - 1
    assert np.mean(mark != last) > 0.95  # close to, but not equal to, the last price
    assert np.all(np.abs(basis) <= 16e-4) and 0.5e-4 < float(np.std(basis)) < 8e-4
    ac1 = float(np.corrcoef(basis[:-1], basis[1:])[0, 1])
    ac24 = float(np.corrcoef(basis[:-24], basis[24:])[0, 1])
    assert ac1 > 0.5 and abs(ac24) < 0.3  # persistent hour to hour, mean-reverting
    assert sim_market.mark_price("ETHUSDT", times[7]) == Market(
        MarketSpec()).mark_price("ETHUSDT", times[7])  # deterministic per seed
    other = Market(MarketSpec(seed=8)).mark_price("ETHUSDT", times[7])
    assert other / Market(MarketSpec(seed=8)).price("ETHUSDT", times[7]) - 1 != basis[7]


def test_mark_price_served_and_used_for_pnl(sim_server: SimServer) -> None:
    client = _ccxt(sim_server)
    amount = 0.5
    client.create_order(ETH, "market", "buy", amount)
    sim_server.set_now(sim_server.now + timedelta(hours=3, minutes=10))
    now, m = sim_server.now_ms, sim_server.market
    mark, last = m.mark_price("ETHUSDT", now), m.price("ETHUSDT", now)
    assert mark != last
    prem = client.fapiPublicGetPremiumIndex({"symbol": "ETHUSDT"})
    assert float(prem["markPrice"]) == pytest.approx(mark, abs=1e-8)
    assert float(client.fetch_ticker(ETH)["last"]) == last
    (pos,) = client.fetch_positions()
    assert pos["markPrice"] == pytest.approx(mark, abs=1e-8)
    entry = sim_server.account.position("ETHUSDT").entry_price
    assert pos["unrealizedPnl"] == pytest.approx(amount * (mark - entry), abs=1e-6)
    assert pos["notional"] == pytest.approx(amount * mark, abs=1e-6)
    upnl = float(client.fetch_balance()["info"]["totalUnrealizedProfit"])
    assert upnl == pytest.approx(amount * (mark - entry), abs=1e-6)
    history = client.fapiPublicGetFundingRate({"symbol": "ETHUSDT", "limit": 1})
    t = int(history[0]["fundingTime"])
    assert float(history[0]["markPrice"]) == pytest.approx(m.mark_price("ETHUSDT", t), abs=1e-8)


def test_funding_is_paid_on_notional_at_mark(sim_server: SimServer) -> None:
    m, acct = sim_server.market, sim_server.account
    client = _ccxt(sim_server)
    client.create_order(SOL, "market", "sell", 20)
    start = sim_server.now_ms
    sim_server.advance(timedelta(hours=24))
    times = m.funding_times(start + 1, sim_server.now_ms)
    paid = [i["income"] for i in acct.income("FUNDING_FEE")]
    at_mark = [20 * m.mark_price("SOLUSDT", t) * m.funding_rate("SOLUSDT", t) for t in times]
    at_last = [20 * m.price("SOLUSDT", t) * m.funding_rate("SOLUSDT", t) for t in times]
    assert paid == pytest.approx(at_mark, rel=1e-12, abs=1e-12)
    assert max(abs(a - b) for a, b in zip(paid, at_last, strict=True)) > 1e-9


# ---------------------------------------------------------------------- HTTP robustness
def _raw(server: SimServer, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; everything the server answers until it
    closes the connection (``socket.timeout`` if it never does)."""
    with socket.create_connection((server.host, server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


@pytest.mark.parametrize("path", ["/fapi/v1/order", "/sim/faults"])
def test_request_body_limits(sim_server: SimServer, path: str) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    big = _raw(sim_server, (head + "Content-Length: 70000\r\n\r\n").encode())
    assert _status(big) == 413 and b"65536-byte limit" in big
    for bad in ("-5", "abc", "1e3"):
        r = _raw(sim_server, (head + f"Content-Length: {bad}\r\n\r\n").encode())
        assert _status(r) == 400 and b"Content-Length" in r, r
    chunked = _raw(sim_server, (head + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode())
    assert _status(chunked) == 400 and b"Transfer-Encoding" in chunked
    assert requests.get(sim_server.url + "/fapi/v1/ping", timeout=5).status_code == 200


def test_admin_inputs_are_validated(sim_server: SimServer) -> None:
    url = sim_server.url
    before = sim_server.faults.to_dict()
    bad_faults = ['{"latency_ms": Infinity}', '{"latency_ms": NaN}', '{"latency_ms": -1}',
                  '{"latency_ms": "soon"}', '{"fail_next": {"n": Infinity}}',
                  '{"timeout_next": {"seconds": NaN}}', '{"fail_next": {"n": -2}}',
                  '{"partial_fill_next": {"ratio": NaN}}', '{"rate_limit_next": {"n": 1.5}}',
                  '{"fail_next": {"path": 7}}', '[1, 2]']
    for body in bad_faults:
        r = requests.post(url + "/sim/faults", data=body, timeout=5,
                          headers={"Content-Type": "application/json"})
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] and "Traceback" not in r.text
    assert sim_server.faults.to_dict() == before
    now = sim_server.now_ms
    bad_clock = ['{"now": 1e30}', '{"now": Infinity}', '{"now": NaN}', '{"now": -1}',
                 '{"now": true}', '{"now": "tomorrow"}', '{"now": [1]}',
                 '{"advance_ms": 1e30}', '{"advance_ms": NaN}', '{"advance_ms": -5}',
                 '{"advance_ms": 0.5}', '{}']
    for body in bad_clock:
        r = requests.post(url + "/sim/clock", data=body, timeout=5)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] and "Traceback" not in r.text
    assert sim_server.now_ms == now
    assert "outside the market's history" in requests.post(
        url + "/sim/clock", data='{"now": 1e30}', timeout=5).json()["error"]
    assert requests.get(url + "/fapi/v1/time", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="latency_ms"):
        sim_server.faults.latency_ms = float("inf")


def test_idle_connections_are_closed(sim_market: Market) -> None:
    with SimServer(sim_market, None, now=GENESIS + timedelta(days=30),
                   idle_timeout_s=0.3) as server:
        assert _raw(server, b"") == b""  # connected, sent nothing: closed by the server
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET /fapi/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = sock.makefile("rb")
            assert _status(reader.readline()) == 200
            headers = dict(line.decode().strip().split(": ", 1)
                           for line in iter(reader.readline, b"\r\n"))
            assert "close" not in headers.get("Connection", "")  # kept alive ...
            assert reader.read(int(headers["Content-Length"])) == b"{}"
            assert reader.read() == b""  # ... until idle too long: closed by the server
        stalled = _raw(server, b"POST /sim/faults HTTP/1.1\r\nHost: x\r\n"
                               b"Content-Length: 100\r\n\r\n{")
        assert stalled == b""  # a body that never arrives does not hold the thread
        with requests.Session() as s:  # keep-alive clients just reconnect
            assert s.get(server.url + "/fapi/v1/ping", timeout=5).status_code == 200
            threading.Event().wait(0.6)
            assert s.get(server.url + "/fapi/v1/ping", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SimServer(sim_market, None, now=GENESIS, idle_timeout_s=float("inf"))
