"""pairlib.venue.exchange against the simulated exchange (real ccxt over loopback HTTP).

Covers: markets and precision, error translation (with the ccxt exception chained), retried
reads, never-retried order creation, key hygiene, venue construction rules, and the async
batch reader (also from inside a running event loop, as in Jupyter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import ccxt
import pytest

from pairlib import errors
from pairlib.clock import to_ms
from pairlib.config import Secrets, VenueParams
from pairlib.sim.market import GENESIS, Market, MarketSpec
from pairlib.venue.exchange import Exchange, rewrite_api_urls, translate_error
from pairlib.venue.ratelimit import RetryPolicy
from pairlib.venue.records import OhlcvRequest

KEY = "pk_test_KEY_0123456789abcdef"
SECRET = "sk_test_SECRET_fedcba9876543210"
NOW = GENESIS + timedelta(hours=4 * 1200, minutes=30)
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(MarketSpec(seed=7, n_symbols=6, n_pairs=1))


@pytest.fixture(scope="module")
def sim(market: Market) -> Iterator[Any]:
    from pairlib.sim.server import SimServer

    srv = SimServer(market, state_path=None, now=NOW, host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _venue(**kw: Any) -> VenueParams:
    base: dict[str, Any] = {"timeout_ms": 1_500, "max_retries": 3}
    return VenueParams(**{**base, **kw})


@pytest.fixture()
def ex(sim: Any) -> Iterator[Exchange]:
    sim.faults.clear()
    sim.set_now(NOW)
    with Exchange.from_params(_venue(), sim_url=sim.url, retry_base_delay=0.001) as e:
        yield e
    sim.faults.clear()


# --------------------------------------------------------------------------- construction


def test_refuses_live_and_demo_without_keys() -> None:
    with pytest.raises(errors.LiveTradingRefused, match="PAIRLIB_API_KEY"):
        Exchange.from_params(VenueParams(kind="live"))
    with pytest.raises(errors.LiveTradingRefused):
        Exchange.from_params(VenueParams(kind="live"), Secrets(api_key=KEY))  # no secret
    with pytest.raises(errors.ConfigError, match="demo"):
        Exchange.from_params(VenueParams(kind="demo"), Secrets())
    with pytest.raises(errors.ConfigError, match="sim_url"):
        Exchange.from_params(VenueParams(kind="sim"))
    with pytest.raises(errors.ConfigError, match="loopback"):
        Exchange.from_params(VenueParams(kind="sim"), sim_url="http://10.0.0.1:80")
    with pytest.raises(errors.ConfigError, match="not an exchange"):
        Exchange.from_params(VenueParams(kind="paper", exchange_id="nonesuch"))


def test_demo_uses_the_sandbox_and_live_the_real_urls_without_network() -> None:
    secrets = Secrets(api_key=KEY, api_secret=SECRET)
    with Exchange.from_params(VenueParams(kind="demo"), secrets) as demo:
        assert "testnet" in demo._client.urls["api"]["fapiPublic"]
        assert demo.venue_key == "demo-binanceusdm"
    with Exchange.from_params(VenueParams(kind="live"), secrets) as live:
        assert live._client.urls["api"]["fapiPublic"].startswith("https://fapi.binance.com")
        assert live._client.enableRateLimit
    with Exchange.from_params(VenueParams(kind="paper"), secrets) as paper:
        assert not paper._client.apiKey  # public data only: keys never sent
        with pytest.raises(errors.AuthenticationFailed, match="paper"):
            paper.fetch_balance()


def test_keys_never_in_repr_logs_or_errors(
    sim: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secrets = Secrets(api_key=KEY, api_secret=SECRET)
    caplog.set_level(logging.DEBUG)
    with Exchange.from_params(_venue(max_retries=1), secrets, sim_url=sim.url,
                              retry_base_delay=0.001) as e:
        text = f"{e!r} {e!s} {e._recipe!r} {secrets!r}"
        assert KEY not in text and SECRET not in text
        assert "keys=set" in repr(e)
        sim.faults.fail_next(5, status=503)
        with pytest.raises(errors.ExchangeError) as info:
            e.fetch_balance()
        sim.faults.clear()
        chain = [info.value, info.value.__cause__]
        for exc in chain:
            assert KEY not in str(exc) and SECRET not in str(exc)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged and SECRET not in logged


def test_rewrite_api_urls_keeps_paths_and_covers_every_key() -> None:
    client = ccxt.binanceusdm()
    api = client.urls["api"]
    got = rewrite_api_urls(api, "http://127.0.0.1:9/")
    assert set(got) == set(api)
    assert got["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
    assert got["fapiPrivateV2"] == "http://127.0.0.1:9/fapi/v2"
    assert all(v.startswith("http://127.0.0.1:9/") for v in got.values())
    nested = rewrite_api_urls({"rest": {"a": "https://x.y/z"}, "n": None}, "http://h")
    assert nested == {"rest": {"a": "http://h/z"}, "n": None}


@pytest.mark.parametrize(
    ("ccxt_error", "ours"),
    [
        (ccxt.AuthenticationError, errors.AuthenticationFailed),
        (ccxt.PermissionDenied, errors.AuthenticationFailed),
        (ccxt.InvalidNonce, errors.AuthenticationFailed),
        (ccxt.InsufficientFunds, errors.InsufficientFunds),
        (ccxt.InvalidOrder, errors.InvalidOrder),
        (ccxt.OrderNotFound, errors.OrderNotFound),
        (ccxt.RateLimitExceeded, errors.RateLimited),
        (ccxt.DDoSProtection, errors.RateLimited),
        (ccxt.NetworkError, errors.ExchangeUnavailable),
        (ccxt.ExchangeNotAvailable, errors.ExchangeUnavailable),
        (ccxt.OnMaintenance, errors.ExchangeUnavailable),
        (ccxt.RequestTimeout, errors.ExchangeUnavailable),
        (ccxt.BadSymbol, errors.MarketNotListed),
        (ccxt.ExchangeError, errors.ExchangeError),
    ],
)
def test_translate_error_table(ccxt_error: type[Exception], ours: type[Exception]) -> None:
    got = translate_error(ccxt_error(f"boom {KEY}"), "ctx", (KEY, SECRET))
    assert type(got) is ours
    assert str(got).startswith("ctx: ") and KEY not in str(got)


def test_retry_policy_backoff_is_capped_jittered_and_deterministic() -> None:
    import random

    p = RetryPolicy(max_retries=5, base_delay=0.1, max_delay=0.5)
    a = [p.delay(k, random.Random(0)) for k in range(6)]
    b = [p.delay(k, random.Random(0)) for k in range(6)]
    assert a == b
    for k, d in enumerate(a):
        raw = min(0.5, 0.1 * 2**k)
        assert 0.5 * raw <= d <= raw


# --------------------------------------------------------------------------- markets


def test_markets_and_precision(ex: Exchange, market: Market) -> None:
    mk = ex.markets()
    assert sorted(mk) == sorted(market.unified(s) for s in market.symbols)
    sent = ex.requests_sent
    assert ex.markets() is mk and ex.requests_sent == sent  # loaded once
    for sym, info in mk.items():
        rules = market.rules(info.id)
        assert info.symbol == sym == market.unified(info.id)
        assert info.amount_step == pytest.approx(rules["stepSize"])
        assert info.min_amount == pytest.approx(rules["minQty"])
        assert info.price_step == pytest.approx(rules["tickSize"])
        assert info.min_notional == pytest.approx(rules["minNotional"])
        assert info.contract_size == 1.0
    step = mk[BTC].amount_step
    assert ex.amount_to_precision(BTC, 7.9 * step) == pytest.approx(7 * step)  # rounds down
    assert ex.amount_to_precision(BTC, -7.9 * step) == pytest.approx(-7 * step)
    assert ex.amount_to_precision(BTC, 0.4 * step) == 0.0
    tick = mk[BTC].price_step
    assert ex.price_to_precision(BTC, 1000 + 0.3 * tick) == pytest.approx(1000.0)
    assert ex.timeframe_ms("4h") == 14_400_000
    with pytest.raises(errors.ConfigError):
        ex.timeframe_ms("7m")
    with pytest.raises(errors.InvalidOrder, match="not an active"):
        ex.market("NOPE/USDT:USDT")


def test_fetch_ohlcv_and_prices(ex: Exchange, market: Market) -> None:
    since = to_ms(GENESIS)
    rows = ex.fetch_ohlcv(BTC, "4h", since, 1000)
    assert len(rows) == 1000 and rows[0][0] == since
    assert rows[-1][0] - rows[0][0] == 999 * 14_400_000
    until = since + 9 * 14_400_000
    assert len(ex.fetch_ohlcv(BTC, "4h", since, 1000, until_ms=until)) == 10
    prices = ex.fetch_prices([BTC, ETH])
    assert prices[BTC] == pytest.approx(market.price("BTCUSDT", to_ms(NOW)))
    assert set(ex.fetch_quote_volumes()) == set(ex.markets())


# --------------------------------------------------------------------------- error translation


# Bad credentials against a simulator: tests/test_secrets_venue.py (a sim venue never sends
# keys other than the simulator's own).


def test_insufficient_margin_is_translated(ex: Exchange, sim: Any) -> None:
    sim.faults.reject_next_orders(1, code=-2019)
    with pytest.raises(errors.InsufficientFunds) as info:
        ex.create_order(BTC, "buy", 0.01, "t-margin-1")
    assert isinstance(info.value.__cause__, ccxt.InsufficientFunds)
    assert ex.fetch_order_by_client_id(BTC, "t-margin-1") is None


def test_duplicate_client_id_is_invalid_order(ex: Exchange, market: Market) -> None:
    # Binance (and the simulator) reject a client id already used by an *open* order (-4116)
    price = ex.price_to_precision(ETH, market.price("ETHUSDT", to_ms(NOW)) * 0.5)
    resting = ex.create_order(ETH, "buy", 0.05, "t-dup-1", type="limit", price=price)
    assert resting.client_id == "t-dup-1" and resting.status == "open"
    with pytest.raises(errors.InvalidOrder) as info:
        ex.create_order(ETH, "buy", 0.05, "t-dup-1", type="limit", price=price)
    assert isinstance(info.value.__cause__, ccxt.InvalidOrder)
    assert "-4116" in str(info.value) or "duplicated" in str(info.value)
    assert ex.cancel_order(ETH, resting.id).status == "canceled"


def test_unknown_order_is_order_not_found(ex: Exchange) -> None:
    with pytest.raises(errors.OrderNotFound) as info:
        ex.cancel_order(BTC, "999999999")
    assert isinstance(info.value.__cause__, ccxt.OrderNotFound)
    assert ex.fetch_order_by_client_id(BTC, "never-sent") is None


def _short_retry_after(sim: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the simulator's 429 ask for ``Retry-After: 1`` (it asks for the rest of its
    wall-clock minute, which reads honour): its wall clock stands at second 59. Only for
    public reads (a signed request is checked against this clock)."""
    from pairlib.clock import SettableClock

    monkeypatch.setattr(sim, "wall_clock", SettableClock(GENESIS + timedelta(seconds=59)))


def test_rate_limit_is_translated_after_retries(
    ex: Exchange, sim: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _short_retry_after(sim, monkeypatch)
    sim.faults.rate_limit_next(10)
    sent = ex.requests_sent
    with pytest.raises(errors.RateLimited) as info:
        ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 5)
    assert isinstance(info.value.__cause__, ccxt.DDoSProtection | ccxt.RateLimitExceeded)
    assert ex.requests_sent - sent == 1 + ex.retry_policy.max_retries


def test_invalid_orders_are_refused_before_sending(ex: Exchange) -> None:
    sent = ex.requests_sent
    for kwargs in (
        {"side": "long"}, {"amount": 0.0}, {"client_id": "has space"}, {"client_id": "x" * 37},
        {"type": "stop"}, {"type": "limit"},
    ):
        args: dict[str, Any] = {"symbol": BTC, "side": "buy", "amount": 0.01,
                                "client_id": "ok-1", **kwargs}
        with pytest.raises(errors.InvalidOrder):
            ex.create_order(**args)
    assert ex.requests_sent == sent


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize("fault", ["503", "502", "429", "timeout"])
def test_reads_are_retried_then_succeed(
    sim: Any, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.faults.clear()
    _short_retry_after(sim, monkeypatch)
    venue = _venue(timeout_ms=300)
    with Exchange.from_params(venue, sim_url=sim.url, retry_base_delay=0.001) as ex:
        ex.markets()
        if fault == "429":
            sim.faults.rate_limit_next(2)
        elif fault == "timeout":
            sim.faults.timeout_next(1, seconds=0.6)
        else:
            sim.faults.fail_next(2, status=int(fault))
        sent = ex.requests_sent
        rows = ex.fetch_ohlcv(BTC, "4h", to_ms(GENESIS), 3)
        assert len(rows) == 3
        assert ex.requests_sent - sent == (2 if fault == "timeout" else 3)


def test_reads_fail_with_exchange_unavailable_after_max_retries(ex: Exchange, sim: Any) -> None:
    ex.markets()
    sim.faults.fail_next(ex.retry_policy.max_retries + 1, status=503)
    sent = ex.requests_sent
    with pytest.raises(errors.ExchangeUnavailable) as info:
        ex.fetch_positions()
    assert not isinstance(info.value, errors.RateLimited)
    assert isinstance(info.value.__cause__, ccxt.ExchangeNotAvailable)
    assert ex.requests_sent - sent == ex.retry_policy.max_retries + 1
    assert ex.fetch_positions() is not None  # the fault is consumed: the venue is back


def _position(ex: Exchange, symbol: str) -> float:
    return sum(p.contracts for p in ex.fetch_positions() if p.symbol == symbol)


@pytest.mark.parametrize("fault", ["503", "drop-close", "drop-5xx"])
def test_create_order_is_never_retried(ex: Exchange, sim: Any, fault: str) -> None:
    cid = f"t-noretry-{fault}"
    before = _position(ex, BTC)
    if fault == "503":
        sim.faults.fail_next(1, status=503, path="/fapi/v1/order")
    else:
        sim.faults.drop_response_next_orders(1, mode=fault.removeprefix("drop-"))
    with pytest.raises(errors.ExchangeUnavailable) as info:
        ex.create_order(BTC, "buy", 0.01, cid)
    assert isinstance(info.value.__cause__, ccxt.NetworkError)
    found = ex.fetch_order_by_client_id(BTC, cid)
    booked = [o for o in sim.account.orders() if o["clientOrderId"] == cid]
    assert len(booked) == (0 if fault == "503" else 1)
    if fault == "503":  # refused before booking, and not sent again
        assert found is None
        assert _position(ex, BTC) == pytest.approx(before)
    else:  # booked once, response lost, not sent again
        assert found is not None and found.client_id == cid and found.status == "closed"
        assert found.filled == pytest.approx(0.01)
        assert _position(ex, BTC) == pytest.approx(before + 0.01)
    left = _position(ex, BTC)
    if left:
        ex.create_order(BTC, "sell" if left > 0 else "buy", abs(left), f"{cid}-x",
                        reduce_only=True)


# --------------------------------------------------------------------------- account


def test_orders_positions_and_balance(ex: Exchange, market: Market) -> None:
    bal = ex.fetch_balance()
    assert bal.currency == "USDT" and bal.equity > 0 and bal.free > 0
    o = ex.create_order(ETH, "sell", 0.1, "t-acct-1")
    assert (o.symbol, o.side, o.type, o.status) == (ETH, "sell", "market", "closed")
    assert o.filled == pytest.approx(0.1) and o.average is not None and o.average > 0
    pos = {p.symbol: p for p in ex.fetch_positions()}
    assert pos[ETH].contracts == pytest.approx(-0.1) and pos[ETH].notional < 0
    assert all(p.contracts != 0 for p in pos.values())
    price = market.price("ETHUSDT", to_ms(NOW))
    limit = ex.price_to_precision(ETH, price * 0.5)
    lo = ex.create_order(ETH, "buy", 0.1, "t-acct-2", type="limit", price=limit)
    assert lo.status == "open"
    assert [x.client_id for x in ex.fetch_open_orders(ETH)] == ["t-acct-2"]
    assert "t-acct-2" in [x.client_id for x in ex.fetch_open_orders()]
    canceled = ex.cancel_order(ETH, lo.id)
    assert canceled.status == "canceled"
    with pytest.raises(errors.OrderNotFound):
        ex.cancel_order(ETH, lo.id)
    closed = ex.create_order(ETH, "buy", 0.1, "t-acct-3", reduce_only=True)
    assert closed.reduce_only
    assert ETH not in {p.symbol for p in ex.fetch_positions()}
    trades = ex.fetch_my_trades(ETH, None)
    assert {t.side for t in trades} >= {"buy", "sell"}


def test_funding_payments_are_reported(ex: Exchange, sim: Any) -> None:
    ex.create_order(ETH, "buy", 0.2, "t-fund-1")
    sim.set_now(NOW + timedelta(hours=9))  # passes at least one 8h funding time
    paid = ex.fetch_funding_history(ETH, to_ms(NOW))
    assert paid and all(p.symbol == ETH and p.amount != 0 for p in paid)
    assert all(to_ms(NOW) <= (p.timestamp or 0) <= to_ms(NOW + timedelta(hours=9)) for p in paid)
    ex.create_order(ETH, "sell", 0.2, "t-fund-2", reduce_only=True)


def test_venue_keys_name_where_data_comes_from(sim: Any) -> None:
    secrets = Secrets(api_key=KEY, api_secret=SECRET)
    with Exchange.from_params(VenueParams(sim_seed=3, sim_symbols=10), sim_url=sim.url) as s:
        assert s.venue_key == "sim-s3-n10"
    with Exchange.from_params(VenueParams(kind="paper")) as p, \
            Exchange.from_params(VenueParams(kind="live"), secrets) as live:
        assert p.venue_key == live.venue_key == "binanceusdm"


# --------------------------------------------------------------------------- async batch


def test_batch_reader_fetches_concurrently_and_reports_failures(
    ex: Exchange, sim: Any
) -> None:
    since = to_ms(GENESIS)
    reqs = [OhlcvRequest(s, "4h", since, 100) for s in ex.markets()]
    reqs.append(OhlcvRequest(BTC, "4h", since, 7, since + 6 * 14_400_000))
    sim.faults.fail_next(2, status=503, path="/fapi/v1/klines")
    got = ex.fetch_ohlcv_batch(reqs, max_concurrency=4)
    assert not got.errors
    assert all(len(got.rows[r]) == min(r.limit, 100) for r in reqs)
    assert got.requests_sent == len(reqs) + 2
    assert "candles" in repr(got)
    sim.faults.fail_next(100, status=503, path="/fapi/v1/klines")
    bad = ex.fetch_ohlcv_batch(reqs[:2], max_concurrency=2)
    sim.faults.clear()
    assert set(bad.errors) == set(reqs[:2]) and not bad.rows
    assert all(isinstance(e, errors.ExchangeUnavailable) for e in bad.errors.values())
    assert all(isinstance(e.__cause__, ccxt.ExchangeNotAvailable) for e in bad.errors.values())


def test_batch_reader_works_inside_a_running_event_loop(ex: Exchange) -> None:
    req = OhlcvRequest(BTC, "4h", to_ms(GENESIS), 10)

    async def notebook_cell() -> int:  # a Jupyter kernel already runs a loop
        return len(ex.fetch_ohlcv_batch([req]).rows[req])

    assert asyncio.run(notebook_cell()) == 10

    async def native() -> int:
        return len((await ex.fetch_ohlcv_many([req])).rows[req])

    assert asyncio.run(native()) == 10
