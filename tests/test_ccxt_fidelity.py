"""Proof of fidelity: a plain ``ccxt.binanceusdm`` trades against the simulator.

Only ``exchange.urls['api']`` is rewritten (to :func:`pairlib.sim.ccxt_urls`); everything
else is ccxt's own code path -- signing, parsing, error mapping.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import ccxt
import pytest
import requests

from pairlib.clock import to_ms
from pairlib.sim import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    GENESIS,
    Market,
    MarketSpec,
    SimServer,
    ccxt_urls,
)

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"
H = 3_600_000


def _client(url: str, secret: str = DEFAULT_API_SECRET, **config: object) -> ccxt.binanceusdm:
    ex = ccxt.binanceusdm({"apiKey": DEFAULT_API_KEY, "secret": secret,
                           "enableRateLimit": True, **config})
    ex.urls["api"] = ccxt_urls(url)
    return ex


@pytest.fixture
def ex(sim_server: SimServer) -> Iterator[ccxt.binanceusdm]:
    client = _client(sim_server.url)
    client.load_markets()
    yield client
    client.session.close()


def _amount(ex: ccxt.binanceusdm, symbol: str, notional: float) -> float:
    price = ex.fetch_ticker(symbol)["last"]
    return float(ex.amount_to_precision(symbol, notional / price))


def test_every_ccxt_api_url_is_rewritten() -> None:
    keys = set(ccxt.binanceusdm().urls["api"])
    assert keys <= set(ccxt_urls("http://127.0.0.1:1"))


def test_load_markets(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    markets = ex.markets
    assert len(markets) == len(sim_server.market.symbols)
    btc = markets[BTC]
    assert btc["swap"] and btc["linear"] and btc["settle"] == "USDT" and btc["active"]
    rules = sim_server.market.rules("BTCUSDT")
    assert btc["precision"]["price"] == rules["tickSize"]
    assert btc["precision"]["amount"] == rules["stepSize"]
    assert btc["limits"]["cost"]["min"] == rules["minNotional"]
    assert btc["limits"]["market"]["max"] == rules["marketMaxQty"]


def test_fetch_ohlcv_has_forming_candle_and_nothing_after_now(
    ex: ccxt.binanceusdm, sim_server: SimServer
) -> None:
    sim_server.set_now(sim_server.now + timedelta(hours=2, minutes=30))
    now = sim_server.now_ms
    candles = ex.fetch_ohlcv(ETH, "4h", limit=1000)
    assert len(candles) == 1000
    assert all(c[0] <= now for c in candles)
    forming = candles[-1]
    assert forming[0] <= now < forming[0] + 4 * H
    assert forming[4] == sim_server.market.price("ETHUSDT", now)
    closed = sim_server.market.closes(GENESIS, sim_server.now, now=sim_server.now)["ETHUSDT"]
    assert [c[4] for c in candles[:-1]] == closed.iloc[-999:].tolist()
    since = to_ms(GENESIS) + 10 * 4 * H
    paged = ex.fetch_ohlcv(ETH, "4h", since=since, limit=3)
    assert [c[0] for c in paged] == [since, since + 4 * H, since + 8 * H]
    hourly = ex.fetch_ohlcv(ETH, "1h", limit=3)
    assert hourly[-1][0] <= now < hourly[-1][0] + H


def test_fetch_funding_rate_history(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    rows = ex.fetch_funding_rate_history(BTC, limit=10)
    assert len(rows) == 10
    m = sim_server.market
    for r in rows:
        assert r["timestamp"] <= sim_server.now_ms and r["timestamp"] % (8 * H) == 0
        assert r["fundingRate"] == m.funding_rate("BTCUSDT", r["timestamp"])
    current = ex.fetch_funding_rate(BTC)
    assert current["fundingTimestamp"] > sim_server.now_ms


def test_trading_round_trip(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    assert ex.fetch_balance()["USDT"]["total"] == 10_000
    amount = _amount(ex, SOL, 1500)
    order = ex.create_order(SOL, "market", "buy", amount, params={"clientOrderId": "fid-open"})
    assert order["status"] == "closed" and order["filled"] == amount
    assert order["clientOrderId"] == "fid-open"
    found = ex.fetch_order(None, SOL, params={"origClientOrderId": "fid-open"})
    assert found["id"] == order["id"] and found["status"] == "closed"
    positions = ex.fetch_positions()
    assert [(p["symbol"], p["side"], p["contracts"]) for p in positions] == [
        (SOL, "long", amount)]
    # a resting limit order far below the market
    price = float(ex.price_to_precision(SOL, ex.fetch_ticker(SOL)["last"] * 0.7))
    limit = ex.create_order(SOL, "limit", "buy", amount, price,
                            params={"clientOrderId": "fid-limit"})
    assert limit["status"] == "open" and limit["price"] == price
    assert [o["clientOrderId"] for o in ex.fetch_open_orders(SOL)] == ["fid-limit"]
    assert ex.cancel_order(limit["id"], SOL)["status"] == "canceled"
    sim_server.advance(timedelta(hours=4))
    close = ex.create_order(SOL, "market", "sell", amount,
                            params={"reduceOnly": True, "clientOrderId": "fid-close"})
    assert close["status"] == "closed" and close["reduceOnly"] is True
    assert ex.fetch_positions() == []
    trades = ex.fetch_my_trades(SOL)
    assert [t["order"] for t in trades] == [order["id"], close["id"]]
    fees = sum(t["fee"]["cost"] for t in trades)
    pnl = amount * (trades[1]["price"] - trades[0]["price"])
    assert float(trades[1]["info"]["realizedPnl"]) == pytest.approx(pnl, abs=1e-6)
    assert ex.fetch_balance()["USDT"]["total"] == pytest.approx(10_000 + pnl - fees, abs=1e-6)


def test_bad_signature_is_authentication_error(sim_server: SimServer) -> None:
    bad = _client(sim_server.url, secret="not-the-secret")
    with pytest.raises(ccxt.AuthenticationError, match="-1022"):
        bad.fetch_balance()


def test_insufficient_margin_is_insufficient_funds(ex: ccxt.binanceusdm) -> None:
    amount = _amount(ex, BTC, 10_000 * 30)  # beyond 20x default leverage
    # the -2019 response carries a message from ccxt's host-independent table (see server.py)
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        ex.create_order(BTC, "market", "buy", amount)


def test_duplicate_client_id(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    price = float(ex.price_to_precision(ETH, ex.fetch_ticker(ETH)["last"] * 0.8))
    amount = _amount(ex, ETH, 100)
    ex.create_order(ETH, "limit", "buy", amount, price, params={"clientOrderId": "dup"})
    # ccxt keys its futures error table (-4116 -> InvalidOrder) by the fapi.binance.com URL;
    # for any other host only the generic table applies, so a plain client gets the base
    # ExchangeError carrying the Binance code ...
    with pytest.raises(ccxt.ExchangeError, match="-4116") as info:
        ex.create_order(ETH, "limit", "buy", amount, price, params={"clientOrderId": "dup"})
    assert not isinstance(info.value, ccxt.InvalidOrder)
    # ... and with ccxt's own linear table applied (as it is against Binance) InvalidOrder.
    ex.exceptions["exact"].update(ex.exceptions["linear"]["exact"])
    with pytest.raises(ccxt.InvalidOrder, match="-4116"):
        ex.create_order(ETH, "limit", "buy", amount, price, params={"clientOrderId": "dup"})


def test_over_weight_limit_is_rate_limited(sim_market: Market) -> None:
    with SimServer(sim_market, None, now=GENESIS + timedelta(days=3), weight_limit=5) as srv:
        ex = _client(srv.url, enableRateLimit=False)
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            for _ in range(6):
                ex.fetch_time()
        # binance's handle_errors raises DDoSProtection for HTTP 418 and 429 before it reads
        # the -1003 body (as against Binance); -1003 alone maps to RateLimitExceeded.
        srv.faults.clear()


def test_unknown_order_is_order_not_found(ex: ccxt.binanceusdm) -> None:
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order("123", BTC)
    with pytest.raises(ccxt.OrderNotFound):
        ex.fetch_order(None, BTC, params={"origClientOrderId": "never-sent"})
    with pytest.raises(ccxt.OrderNotFound):
        ex.cancel_order("123", BTC)


def test_fault_types_through_ccxt(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    faults = sim_server.faults
    faults.fail_next(1, status=503)
    with pytest.raises(ccxt.ExchangeNotAvailable):
        ex.fetch_ticker(BTC)
    faults.rate_limit_next(1)
    with pytest.raises(ccxt.DDoSProtection):
        ex.fetch_ticker(BTC)
    faults.timeout_next(1, seconds=1.5)
    ex.timeout = 300
    with pytest.raises(ccxt.RequestTimeout):
        ex.fetch_ticker(BTC)
    ex.timeout = 10_000
    faults.reject_next_orders(1, code=-2019)
    with pytest.raises(ccxt.InsufficientFunds):
        ex.create_order(BTC, "market", "buy", 0.01)
    amount = _amount(ex, ETH, 1000)
    faults.partial_fill_next(1, ratio=0.5)
    part = ex.create_order(ETH, "market", "buy", amount, params={"clientOrderId": "fid-part"})
    assert part["status"] == "expired" and part["info"]["status"] == "EXPIRED"
    assert 0 < part["filled"] < amount and part["remaining"] > 0
    faults.drop_response_next_orders(1)
    with pytest.raises(ccxt.NetworkError):
        ex.create_order(ETH, "market", "buy", amount, params={"clientOrderId": "fid-lost"})
    lost = ex.fetch_order(None, ETH, params={"origClientOrderId": "fid-lost"})
    assert lost["status"] == "closed" and lost["filled"] == amount
    faults.latency_ms = 50
    ex.fetch_time()
    assert float(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) > 0


def test_market_is_byte_for_byte_deterministic(sim_market: Market) -> None:
    now = GENESIS + timedelta(days=100, minutes=90)
    bodies = []
    for market in (sim_market, Market(MarketSpec()), Market(MarketSpec(seed=8))):
        with SimServer(market, None, now=now) as srv:
            r = requests.get(srv.url + "/fapi/v1/klines", timeout=5, params={
                "symbol": "BTCUSDT", "interval": "4h", "limit": 1000})
            bodies.append(r.content)
    assert bodies[0] == bodies[1]
    assert bodies[0] != bodies[2]


def test_restarted_server_keeps_positions(sim_market: Market, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    now = GENESIS + timedelta(days=50)
    with SimServer(sim_market, state, now=now) as first:
        ex = _client(first.url)
        ex.create_order(BTC, "market", "sell", 0.01, params={"clientOrderId": "keep"})
        before = ex.fetch_positions()
    with SimServer(sim_market, state, now=now) as second:
        ex = _client(second.url)
        after = ex.fetch_positions()
        assert [(p["symbol"], p["side"], p["contracts"], p["entryPrice"]) for p in after] == [
            (p["symbol"], p["side"], p["contracts"], p["entryPrice"]) for p in before]
        assert ex.fetch_order(None, BTC, params={"origClientOrderId": "keep"})["filled"] == 0.01


def test_funding_payments_are_charged(ex: ccxt.binanceusdm, sim_server: SimServer) -> None:
    amount = _amount(ex, BTC, 5000)
    ex.create_order(BTC, "market", "buy", amount)
    wallet0 = float(ex.fetch_balance()["info"]["totalWalletBalance"])
    start = sim_server.now_ms
    sim_server.advance(timedelta(days=2))
    m = sim_server.market
    expected = sum(-amount * m.mark_price("BTCUSDT", t) * m.funding_rate("BTCUSDT", t)
                   for t in m.funding_times(start + 1, sim_server.now_ms))
    history = ex.fetch_funding_history(BTC)
    assert len(history) == 6
    assert sum(h["amount"] for h in history) == pytest.approx(expected, abs=1e-6)
    wallet = float(ex.fetch_balance()["info"]["totalWalletBalance"])
    assert wallet == pytest.approx(wallet0 + expected, abs=1e-6)


@contextmanager
def _serve(*args: str) -> Iterator[str]:
    """Run ``pairlib exchange serve`` in a subprocess; yield the URL from its first line."""
    cmd = [sys.executable, "-m", "pairlib", "exchange", "serve", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line: list[str] = []
        assert proc.stdout is not None
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout=30)
        assert line and line[0].startswith("listening on http://127.0.0.1:"), line
        yield line[0].split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 0


def test_cli_serve_prints_listening_line_first(tmp_path: Path) -> None:
    state = str(tmp_path / "cli_state.json")
    with _serve("--now", "2025-03-01T00:00:00Z", "--state", state) as url:
        r = requests.get(url + "/fapi/v1/time", timeout=5)
        assert r.status_code == 200 and "serverTime" in r.json()
        clock = requests.get(url + "/sim/clock", timeout=5).json()
        assert clock["now"] == "2025-03-01T00:00:00+00:00"
        requests.post(url + "/sim/clock", json={"advance_ms": 8 * H}, timeout=5)
    with _serve("--state", state) as url:  # resumes where the state file stopped
        clock = requests.get(url + "/sim/clock", timeout=5).json()
        assert clock["now"] == "2025-03-01T08:00:00+00:00"
    refused = subprocess.run(
        [sys.executable, "-m", "pairlib", "exchange", "serve", "--host", "0.0.0.0",
         "--port", "0", "--state", state], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "non-loopback" in refused.stderr
