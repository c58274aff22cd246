"""The simulated exchange at the HTTP level: auth, weights, admin, account model, faults."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from pairlib.clock import SettableClock, to_ms
from pairlib.sim import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    GENESIS,
    Market,
    MarketSpec,
    SimServer,
)

H = 3_600_000


class Client:
    """A minimal signed Binance client (what ccxt does, spelled out)."""

    def __init__(self, server: SimServer, key: str = DEFAULT_API_KEY,
                 secret: str = DEFAULT_API_SECRET) -> None:
        self.server, self.key, self.secret = server, key, secret
        self.session = requests.Session()

    def public(self, path: str, **params: Any) -> requests.Response:
        return self.session.get(self.server.url + path, params=params, timeout=5)

    def signed(self, method: str, path: str, timeout: float = 5, ts: int | None = None,
               **params: Any) -> requests.Response:
        params["timestamp"] = ts if ts is not None else to_ms(self.server.wall_clock.now())
        query = urlencode(params)
        sig = hmac.new(self.secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        query += f"&signature={sig}"
        headers = {"X-MBX-APIKEY": self.key}
        if method in ("GET", "DELETE"):
            return self.session.request(method, f"{self.server.url}{path}?{query}",
                                        headers=headers, timeout=timeout)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return self.session.request(method, self.server.url + path, data=query,
                                    headers=headers, timeout=timeout)

    def order(self, symbol: str, side: str, qty: float, **extra: Any) -> requests.Response:
        params = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": qty, **extra}
        return self.signed("POST", "/fapi/v1/order", **params)


@pytest.fixture
def client(sim_server: SimServer) -> Client:
    return Client(sim_server)


def _qty(server: SimServer, symbol: str, notional: float) -> float:
    rules = server.market.rules(symbol)
    price = server.market.price(symbol, server.now_ms)
    step = rules["stepSize"]
    return round(max(rules["minQty"], round(notional / price / step) * step),
                 rules["quantityPrecision"])


# ---------------------------------------------------------------------- public endpoints
def test_time_is_the_wall_clock_and_market_uses_sim_time(sim_market: Market) -> None:
    wall = SettableClock(GENESIS + timedelta(days=900))
    now = GENESIS + timedelta(days=10, hours=2)
    with SimServer(sim_market, None, now=now, wall_clock=wall) as server:
        c = Client(server)
        assert c.public("/fapi/v1/time").json() == {"serverTime": to_ms(wall.now())}
        price = c.public("/fapi/v1/ticker/price", symbol="BTCUSDT").json()
        assert price["time"] == to_ms(now)
        assert float(price["price"]) == sim_market.price("BTCUSDT", to_ms(now))


def test_klines_over_http(client: Client, sim_server: SimServer) -> None:
    sim_server.set_now(sim_server.now + timedelta(hours=1, minutes=15))
    now = sim_server.now_ms
    r = client.public("/fapi/v1/klines", symbol="ETHUSDT", interval="4h", limit=1500)
    rows = r.json()
    assert r.status_code == 200 and len(rows) == 1500
    assert rows[-1][0] <= now < rows[-1][6]  # the forming candle
    assert all(row[6] < now for row in rows[:-1])
    assert rows == sim_server.market.klines("ETHUSDT", "4h", None, None, 1500, now)
    assert int(r.headers["X-MBX-USED-WEIGHT-1M"]) >= 10
    bad = client.public("/fapi/v1/klines", symbol="ETHUSDT", interval="4h", limit=1501)
    assert bad.status_code == 400 and bad.json()["code"] == -1130
    bad = client.public("/fapi/v1/klines", symbol="ETHUSDT", interval="7h")
    assert bad.json()["code"] == -1120
    bad = client.public("/fapi/v1/klines", symbol="NOPEUSDT", interval="4h")
    assert bad.json() == {"code": -1121, "msg": "Invalid symbol."}
    missing = client.public("/fapi/v1/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == -5000


def test_exchange_info_filters(client: Client, sim_server: SimServer) -> None:
    info = client.public("/fapi/v1/exchangeInfo").json()
    assert len(info["symbols"]) == len(sim_server.market.symbols)
    btc = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    assert btc["contractType"] == "PERPETUAL" and btc["status"] == "TRADING"
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert {"PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "MIN_NOTIONAL"} <= set(filters)
    assert float(filters["PRICE_FILTER"]["tickSize"]) == sim_server.market.rules("BTCUSDT")[
        "tickSize"]


def test_funding_history_and_premium_index(client: Client, sim_server: SimServer) -> None:
    rows = client.public("/fapi/v1/fundingRate", symbol="BTCUSDT", limit=5).json()
    assert len(rows) == 5
    assert rows[-1]["fundingTime"] <= sim_server.now_ms
    assert [r["fundingTime"] for r in rows] == sorted(r["fundingTime"] for r in rows)
    assert all(r["fundingTime"] % (8 * H) == 0 for r in rows)
    prem = client.public("/fapi/v1/premiumIndex", symbol="BTCUSDT").json()
    assert prem["nextFundingTime"] > sim_server.now_ms
    assert prem["nextFundingTime"] % (8 * H) == 0


# ---------------------------------------------------------------------- auth and weights
def test_signed_request_checks(sim_server: SimServer) -> None:
    good = Client(sim_server)
    assert good.signed("GET", "/fapi/v3/account").status_code == 200
    r = Client(sim_server, secret="wrong").signed("GET", "/fapi/v3/account")
    assert r.status_code == 400 and r.json()["code"] == -1022
    r = Client(sim_server, key="wrong").signed("GET", "/fapi/v3/account")
    assert r.status_code == 401 and r.json()["code"] == -2015
    stale = to_ms(sim_server.wall_clock.now()) - 70_000
    r = good.signed("GET", "/fapi/v3/account", ts=stale)
    assert r.json()["code"] == -1021
    r = requests.get(sim_server.url + "/fapi/v3/account", timeout=5)
    assert r.status_code == 401 and r.json()["code"] == -2014


def test_weight_limit_per_wall_minute(sim_market: Market) -> None:
    wall = SettableClock(GENESIS + timedelta(days=900, seconds=5))
    with SimServer(sim_market, None, now=GENESIS + timedelta(days=5), weight_limit=12,
                   wall_clock=wall) as server:
        c = Client(server)
        used = [int(c.public("/fapi/v1/time").headers["X-MBX-USED-WEIGHT-1M"])
                for _ in range(12)]
        assert used == list(range(1, 13))
        r = c.public("/fapi/v1/time")
        assert r.status_code == 429 and r.json()["code"] == -1003
        assert 0 < int(r.headers["Retry-After"]) <= 60
        wall.advance(timedelta(minutes=1))
        assert c.public("/fapi/v1/time").headers["X-MBX-USED-WEIGHT-1M"] == "1"


def test_non_loopback_host_is_refused(sim_market: Market) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        SimServer(sim_market, None, now=GENESIS, host="0.0.0.0")


# ---------------------------------------------------------------------- admin
def test_admin_clock_truth_and_faults(sim_server: SimServer) -> None:
    url = sim_server.url
    target = sim_server.now + timedelta(hours=8)
    r = requests.post(url + "/sim/clock", json={"now": target.isoformat()}, timeout=5)
    assert r.json()["now_ms"] == to_ms(target) == sim_server.now_ms
    r = requests.post(url + "/sim/clock", json={"advance_ms": 4 * H}, timeout=5)
    assert r.json()["now_ms"] == to_ms(target) + 4 * H
    bad = requests.post(url + "/sim/clock", json={"now": "2001-01-01T00:00:00Z"}, timeout=5)
    assert bad.status_code == 400 and "outside" in bad.json()["error"]
    truth = requests.get(url + "/sim/truth", timeout=5).json()
    assert [p["y"] for p in truth["pairs"]] == [p.y for p in sim_server.market.ground_truth]
    r = requests.post(url + "/sim/faults", json={"latency_ms": 5, "fail_next": {"n": 2}},
                      timeout=5)
    assert r.json()["latency_ms"] == 5 and r.json()["fail_next"][0]["n"] == 2
    assert sim_server.faults.latency_ms == 5
    r = requests.post(url + "/sim/faults", json={"explode": 1}, timeout=5)
    assert r.status_code == 400 and "unknown fault keys" in r.json()["error"]
    requests.post(url + "/sim/faults", json={"clear": True}, timeout=5)
    assert sim_server.faults.to_dict()["fail_next"] == []


def test_set_now_outside_history_raises(sim_server: SimServer) -> None:
    with pytest.raises(ValueError, match="outside"):
        sim_server.set_now(sim_server.market.horizon_end + timedelta(hours=1))


# ---------------------------------------------------------------------- account model
def test_round_trip_accounts_pnl_and_fees(client: Client, sim_server: SimServer) -> None:
    acct, m = sim_server.account, sim_server.market
    qty = _qty(sim_server, "SOLUSDT", 2000)
    r = client.order("SOLUSDT", "BUY", qty, newClientOrderId="rt-open")
    assert r.status_code == 200, r.text
    opened = r.json()
    buy_px = float(opened["avgPrice"])
    mark = m.price("SOLUSDT", sim_server.now_ms)
    assert buy_px > mark  # slippage against the taker
    assert buy_px == pytest.approx(mark * 1.0002, rel=1e-3)
    sim_server.advance(timedelta(hours=3))  # no funding time crossed
    r = client.order("SOLUSDT", "SELL", qty, reduceOnly="true", newClientOrderId="rt-close")
    sell_px = float(r.json()["avgPrice"])
    assert acct.position("SOLUSDT").amount == 0
    fees = sum(t["commission"] for t in acct.trades("SOLUSDT"))
    assert fees == pytest.approx(qty * (buy_px + sell_px) * 0.0005)
    pnl = qty * (sell_px - buy_px)
    assert acct.wallet_balance == pytest.approx(10_000 + pnl - fees, abs=1e-6)
    trades = client.signed("GET", "/fapi/v1/userTrades", symbol="SOLUSDT").json()
    assert float(trades[-1]["realizedPnl"]) == pytest.approx(pnl, abs=1e-6)


def test_reduce_only_never_increases(client: Client, sim_server: SimServer) -> None:
    r = client.order("ADAUSDT", "SELL", _qty(sim_server, "ADAUSDT", 100), reduceOnly="true")
    assert r.json()["code"] == -2022
    qty = _qty(sim_server, "ADAUSDT", 100)
    client.order("ADAUSDT", "BUY", qty)
    r = client.order("ADAUSDT", "SELL", qty * 3, reduceOnly="true")
    assert float(r.json()["executedQty"]) == qty
    assert r.json()["status"] == "EXPIRED"
    assert sim_server.account.position("ADAUSDT").amount == 0


def test_insufficient_margin_and_leverage(client: Client, sim_server: SimServer) -> None:
    big = _qty(sim_server, "BTCUSDT", 10_000 * 25)  # above 20x leverage
    r = client.order("BTCUSDT", "BUY", big)
    assert r.status_code == 400 and r.json()["code"] == -2019
    assert client.signed("POST", "/fapi/v1/leverage", symbol="BTCUSDT",
                         leverage=50).json()["leverage"] == 50
    assert client.order("BTCUSDT", "BUY", big).status_code == 200
    assert client.signed("POST", "/fapi/v1/leverage", symbol="BTCUSDT",
                         leverage=500).json()["code"] == -4028
    small = client.order("BTCUSDT", "BUY", 0.001)  # below BTC's 100 USDT min notional
    assert small.json()["code"] == -4164


def test_duplicate_client_id_among_open_orders(client: Client, sim_server: SimServer) -> None:
    px = sim_server.market.price("ETHUSDT", sim_server.now_ms)
    tick = sim_server.market.rules("ETHUSDT")["tickSize"]
    low = round(round(px * 0.8 / tick) * tick, 2)
    qty = _qty(sim_server, "ETHUSDT", 200)
    params = {"type": "LIMIT", "price": low, "timeInForce": "GTC", "newClientOrderId": "dup-1"}
    first = client.order("ETHUSDT", "BUY", qty, **params)
    assert first.json()["status"] == "NEW"
    again = client.order("ETHUSDT", "BUY", qty, **params)
    assert again.json() == {"code": -4116, "msg": "ClientOrderId is duplicated."}
    client.signed("DELETE", "/fapi/v1/order", symbol="ETHUSDT", origClientOrderId="dup-1")
    assert client.order("ETHUSDT", "BUY", qty, **params).json()["status"] == "NEW"
    gone = client.signed("GET", "/fapi/v1/order", symbol="ETHUSDT", orderId=1)
    assert gone.json()["code"] == -2013


def test_resting_limit_fills_as_maker_when_crossed(client: Client,
                                                  sim_server: SimServer) -> None:
    m, sym = sim_server.market, "LINKUSDT"
    t0 = sim_server.now_ms
    # find the lowest price of the next 5 days, rest a buy just above it
    lo, _ = m.price_range(sym, t0, t0 + 120 * H)
    tick = m.rules(sym)["tickSize"]
    limit = round(lo + 2 * tick, m.rules(sym)["pricePrecision"])
    assert limit < m.price(sym, t0)
    qty = _qty(sim_server, sym, 300)
    r = client.order(sym, "BUY", qty, type="LIMIT", price=limit, timeInForce="GTC")
    oid = r.json()["orderId"]
    assert r.json()["status"] == "NEW"
    for _ in range(30):  # step the clock 4h at a time until it fills
        sim_server.advance(timedelta(hours=4))
        status = client.signed("GET", "/fapi/v1/order", symbol=sym, orderId=oid).json()
        if status["status"] == "FILLED":
            break
    assert status["status"] == "FILLED" and float(status["avgPrice"]) == limit
    fill = sim_server.account.trades(sym)[-1]
    assert fill["maker"] and fill["commission"] == pytest.approx(qty * limit * 0.0002)
    assert sim_server.account.position(sym).amount == qty


def test_marketable_limit_fills_as_taker(client: Client, sim_server: SimServer) -> None:
    m, sym = sim_server.market, "DOGEUSDT"
    px = m.price(sym, sim_server.now_ms)
    tick = m.rules(sym)["tickSize"]
    limit = round(round(px * 1.01 / tick) * tick, m.rules(sym)["pricePrecision"])
    r = client.order(sym, "BUY", _qty(sim_server, sym, 100), type="LIMIT", price=limit,
                     timeInForce="GTC").json()
    assert r["status"] == "FILLED" and float(r["avgPrice"]) < limit
    assert not sim_server.account.trades(sym)[-1]["maker"]


def test_funding_is_settled_for_open_positions(client: Client, sim_server: SimServer) -> None:
    m, sym = sim_server.market, "AVAXUSDT"
    qty = _qty(sim_server, sym, 3000)
    client.order(sym, "SELL", qty)  # short
    wallet0 = sim_server.account.wallet_balance
    start = sim_server.now_ms
    sim_server.advance(timedelta(hours=48))
    times = m.funding_times(start + 1, sim_server.now_ms)
    assert len(times) == 6
    expected = sum(qty * m.mark_price(sym, t) * m.funding_rate(sym, t) for t in times)
    assert sim_server.account.funding_paid() == pytest.approx(expected)
    assert sim_server.account.wallet_balance == pytest.approx(wallet0 + expected)
    income = client.signed("GET", "/fapi/v1/income", incomeType="FUNDING_FEE").json()
    assert [i["time"] for i in income] == times
    # rewinding then replaying never settles twice
    sim_server.set_now(sim_server.now - timedelta(hours=24))
    sim_server.advance(timedelta(hours=24))
    assert len(sim_server.account.income("FUNDING_FEE")) == 6


def test_restart_on_same_state_file_continues(sim_market: Market, tmp_path: Path) -> None:
    state = tmp_path / "acct.json"
    now = GENESIS + timedelta(days=60)
    with SimServer(sim_market, state, now=now) as first:
        Client(first).order("XRPUSDT", "BUY", _qty(first, "XRPUSDT", 500))
        first.advance(timedelta(hours=12))
        before = (first.account.positions(), first.account.wallet_balance,
                  first.account.income())
        later = first.now
    assert [p.name for p in tmp_path.iterdir()] == ["acct.json"]  # atomic writes, no leftovers
    with SimServer(sim_market, state, now=later) as second:
        assert (second.account.positions(), second.account.wallet_balance,
                second.account.income()) == before
        pos = Client(second).signed("GET", "/fapi/v3/positionRisk").json()
        assert [p["symbol"] for p in pos] == ["XRPUSDT"]
    with pytest.raises(ValueError, match="state was written for market"):
        SimServer(Market(MarketSpec(seed=8, horizon_bars=500)), state, now=GENESIS)


# ---------------------------------------------------------------------- faults
def test_latency_fault(client: Client, sim_server: SimServer) -> None:
    sim_server.faults.latency_ms = 80
    t0 = time.perf_counter()
    client.public("/fapi/v1/time")
    assert time.perf_counter() - t0 >= 0.08
    requests.get(sim_server.url + "/sim/clock", timeout=5)  # admin calls are not delayed


def test_fail_next_with_path_filter(client: Client, sim_server: SimServer) -> None:
    sim_server.faults.fail_next(2, status=502, path="/fapi/v1/klines")
    assert client.public("/fapi/v1/time").status_code == 200
    statuses = [client.public("/fapi/v1/klines", symbol="BTCUSDT", interval="4h",
                              limit=2).status_code for _ in range(3)]
    assert statuses == [502, 502, 200]


def test_rate_limit_and_timeout_faults(client: Client, sim_server: SimServer) -> None:
    sim_server.faults.rate_limit_next(1)
    r = client.public("/fapi/v1/time")
    assert r.status_code == 429 and r.json()["code"] == -1003
    sim_server.faults.timeout_next(1, seconds=1.0)
    with pytest.raises(requests.Timeout):
        client.session.get(sim_server.url + "/fapi/v1/time", timeout=0.2)
    assert client.public("/fapi/v1/time").status_code == 200


def test_reject_and_partial_fill_faults(client: Client, sim_server: SimServer) -> None:
    sim_server.faults.reject_next_orders(1, code=-2010)
    assert client.order("DOTUSDT", "BUY", _qty(sim_server, "DOTUSDT", 100)).json()[
        "code"] == -2010
    sim_server.faults.partial_fill_next(1, ratio=0.5)
    qty = _qty(sim_server, "DOTUSDT", 1000)
    r = client.order("DOTUSDT", "BUY", qty, newClientOrderId="part-1").json()
    assert r["status"] == "EXPIRED"  # a market order's unfilled rest expires at once
    assert float(r["executedQty"]) == pytest.approx(qty / 2, rel=0.01)
    assert client.signed("GET", "/fapi/v1/openOrders", symbol="DOTUSDT").json() == []
    canceled = client.signed("DELETE", "/fapi/v1/order", symbol="DOTUSDT",
                             origClientOrderId="part-1").json()
    assert canceled["code"] == -2011
    assert sim_server.account.position("DOTUSDT").amount == float(r["executedQty"])


@pytest.mark.parametrize("mode", ["close", "5xx"])
def test_dropped_order_response_is_still_booked(client: Client, sim_server: SimServer,
                                                mode: str) -> None:
    sim_server.faults.drop_response_next_orders(1, mode=mode)
    qty = _qty(sim_server, "LTCUSDT", 200)
    if mode == "close":
        with pytest.raises(requests.ConnectionError):
            client.order("LTCUSDT", "BUY", qty, newClientOrderId=f"drop-{mode}")
    else:
        assert client.order("LTCUSDT", "BUY", qty,
                            newClientOrderId=f"drop-{mode}").status_code == 503
    found = Client(sim_server).signed("GET", "/fapi/v1/order", symbol="LTCUSDT",
                                      origClientOrderId=f"drop-{mode}").json()
    assert found["status"] == "FILLED"
    assert sim_server.account.position("LTCUSDT").amount == qty


def test_faults_json_round_trip(sim_server: SimServer) -> None:
    f = sim_server.faults
    f.apply({"latency_ms": 3, "timeout_next": [{"n": 1, "seconds": 2}],
             "reject_next_orders": {"n": 2, "code": -2019},
             "partial_fill_next": {"ratio": 0.25},
             "drop_response_next_orders": {"mode": "5xx"}})
    snapshot = f.to_dict()
    f.clear()
    f.apply(snapshot)
    assert f.to_dict() == snapshot
    with pytest.raises(ValueError):
        f.apply({"partial_fill_next": {"ratio": 2}})
    with pytest.raises(ValueError):
        f.apply({"fail_next": {"status": 404}})
    assert json.dumps(f.to_dict())
