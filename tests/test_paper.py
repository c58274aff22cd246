"""The ``paper`` venue: public prices of a venue, account kept by the simulator.

The "real exchange" here is a second simulator on loopback (seed 7), reached through
``open_exchange(..., public_url=...)``; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from tick_fixtures import BAR, START, planted_pairs, trading_params, unthrottle

from pairlib.clock import SettableClock, to_ms
from pairlib.config import VenueParams
from pairlib.edges.store import Store
from pairlib.engine import tick
from pairlib.errors import ConfigError
from pairlib.sim import Market, SimServer
from pairlib.venue.exchange import Exchange
from pairlib.venue.open import open_exchange
from pairlib.venue.paper import PaperExchange, PublicMarket
from pairlib.venue.records import FundingRate

ETH = "ETH/USDT:USDT"


@pytest.fixture
def public(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[SimServer]:
    """The stand-in for the real exchange: a simulator on loopback at START."""
    unthrottle(monkeypatch)
    server = SimServer(sim_market, tmp_path / "public_state.json", now=START,
                       weight_limit=10**9)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _venue(tmp_path: Path) -> VenueParams:
    return VenueParams(kind="paper", sim_state=tmp_path / "paper_state.json", max_retries=1)


def _taker(mark: float, tick_size: float, side: str, bps: float = 2.0) -> float:
    if side == "buy":
        return math.ceil(round(mark * (1 + bps / 1e4) / tick_size, 6)) * tick_size
    return math.floor(round(mark * (1 - bps / 1e4) / tick_size, 6)) * tick_size


def test_paper_venue_reads_public_data_and_keeps_its_own_account(
    public: SimServer, sim_market: Market, tmp_path: Path
) -> None:
    venue = _venue(tmp_path)
    since = to_ms(START - 60 * BAR)
    with Exchange.from_params(VenueParams(sim_url=public.url)) as direct:
        want = direct.fetch_ohlcv(ETH, "4h", since, 60)
        want_rules = direct.market(ETH)
    with open_exchange(venue, START, public_url=public.url) as ex:
        assert isinstance(ex, PaperExchange) and ex.kind == "paper"
        assert ex.venue_key == "sim-s7-n48"  # the public venue's data key
        got = ex.fetch_ohlcv(ETH, "4h", since, 60)
        assert got == want and len(got) == 60  # closed candles, byte for byte
        rules = ex.market(ETH)
        assert (rules.amount_step, rules.min_amount, rules.min_notional, rules.price_step) == (
            want_rules.amount_step, want_rules.min_amount, want_rules.min_notional,
            want_rules.price_step)
        assert set(ex.markets()) == {sim_market.unified(s) for s in sim_market.symbols}

        mark = sim_market.price("ETHUSDT", to_ms(START))
        amount = ex.amount_to_precision(ETH, 2000.0 / mark)
        o = ex.create_order(ETH, "buy", amount, "paper-open-1")
        assert o.status == "closed" and o.filled == pytest.approx(amount)
        assert o.average == pytest.approx(_taker(mark, rules.price_step, "buy"))
        assert o.average > mark
        fee = amount * o.average * 0.0005
        (trade,) = ex.fetch_my_trades(ETH)
        assert trade.fee == pytest.approx(fee)
        bal = ex.fetch_balance()
        # START (00:00) is a funding time: positions are valued at the venue's mark then
        at_mark = sim_market.mark_price("ETHUSDT", to_ms(START))
        assert bal.equity == pytest.approx(10_000.0 - fee + amount * (at_mark - o.average))
        (pos,) = ex.fetch_positions()
        assert (pos.symbol, pos.contracts) == (ETH, pytest.approx(amount))

    # next session, one bar later: the position is still there, priced at the new public price
    later = START + BAR
    public.set_now(later)
    with open_exchange(venue, later, public_url=public.url) as ex:
        (pos,) = ex.fetch_positions()
        assert pos.contracts == pytest.approx(amount)
        mark2 = sim_market.price("ETHUSDT", to_ms(later))
        assert pos.unrealized_pnl == pytest.approx(amount * (mark2 - o.average), rel=1e-6)
        c = ex.create_order(ETH, "sell", amount, "paper-close-1", reduce_only=True)
        assert c.average == pytest.approx(_taker(mark2, rules.price_step, "sell"))
        assert ex.fetch_positions() == []
        fee2 = amount * c.average * 0.0005
        pnl = amount * (c.average - o.average)
        assert ex.fetch_balance().equity == pytest.approx(10_000.0 - fee - fee2 + pnl)

    state = json.loads((tmp_path / "paper_state.json").read_text())
    assert len(state["orders"]) == 2 and state["market"]["n_symbols"] == 0
    assert public.account.orders() == [] and public.account.trades() == []


def test_public_url_must_be_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="loopback"), \
            open_exchange(_venue(tmp_path), START, public_url="https://fapi.binance.com"):
        pass
    with pytest.raises(ConfigError, match="paper only"), \
            open_exchange(VenueParams(), START, public_url="http://127.0.0.1:1"):
        pass


def test_historical_prices_and_funding_source(public: SimServer, sim_market: Market) -> None:
    """Before the present a price is the public hour's open; funding comes from the
    injected source (0 without one)."""
    with Exchange.from_params(VenueParams(sim_url=public.url)) as direct:
        t = START - timedelta(hours=5)
        calls: list[tuple[str, int, int]] = []

        def rates(sym: str, start: int, end: int) -> list[FundingRate]:
            calls.append((sym, start, end))
            return [FundingRate(to_ms(t - timedelta(hours=t.hour % 8)), 0.0003, 101.5)]

        src = PublicMarket(direct, START, funding_history=rates)
        assert src.price("BTCUSDT", to_ms(t)) == sim_market.price("BTCUSDT", to_ms(t))
        assert src.price("BTCUSDT", to_ms(START)) == sim_market.price("BTCUSDT", to_ms(START))
        ft = to_ms(datetime(2025, 2, 3, 16, tzinfo=START.tzinfo))
        assert src.funding_rate("BTCUSDT", ft) == 0.0003
        assert src.funding_rate("BTCUSDT", ft - 8 * 3_600_000) == 0.0
        assert len(calls) == 1  # cached
        assert PublicMarket(direct, START).funding_rate("BTCUSDT", ft) == 0.0
        lo, hi = src.price_range("BTCUSDT", to_ms(START - BAR), to_ms(START))
        assert (lo, hi) == sim_market.price_range("BTCUSDT", to_ms(START - BAR), to_ms(START))


def test_tick_on_paper_venue(
    public: SimServer, sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    when = START + 7 * BAR
    public.set_now(when)
    monkeypatch.setattr(tick, "open_exchange", partial(open_exchange, public_url=public.url))
    params = trading_params(tmp_path, None, venue={
        "kind": "paper", "sim_url": None, "sim_state": str(tmp_path / "paper_state.json"),
        "max_retries": 2})
    with Store.at(params.state_dir) as db:
        db.save_pair_set(START, "t", pd.DataFrame(planted_pairs(sim_market)), None, START)
        r = tick.run(params, when, store=db, clock=SettableClock(when))
        assert r.status == "ok", r.error
        assert len(r.orders) > 0
        # the next tick reconciles the store against the persisted paper account
        public.set_now(when + BAR)
        nxt = tick.run(params, when + BAR, store=db, clock=SettableClock(when + BAR))
        assert nxt.status == "ok", nxt.error
        assert nxt.mode == "normal" and nxt.mismatches.empty
    state = json.loads((tmp_path / "paper_state.json").read_text())
    assert any(p["amt"] != 0 for p in state["positions"].values())
    assert public.account.orders() == []


def test_paper_funding_rates_come_from_the_public_venue(
    public: SimServer, sim_market: Market
) -> None:
    """The adapter's public funding history feeds the paper account's funding."""
    with Exchange.from_params(VenueParams(sim_url=public.url)) as direct:
        src = PublicMarket(direct, START, funding_history=direct.fetch_funding_rate_history)
        times = [to_ms(START) - k * 8 * 3_600_000 for k in (1, 2, 5)]
        for ft in times:
            want = sim_market.funding_rate("BTCUSDT", ft)
            assert want != 0.0
            assert src.funding_rate("BTCUSDT", ft) == pytest.approx(want, rel=1e-9, abs=1e-12)
            assert src.mark_price("BTCUSDT", ft) == sim_market.mark_price("BTCUSDT", ft)
        rates = direct.fetch_funding_rates("BTC/USDT:USDT", times[-1], times[0])
        assert sorted(rates) == sorted(
            range(times[-1], times[0] + 1, 8 * 3_600_000)
        )


def test_paper_funding_is_paid_at_the_venues_mark_price(
    public: SimServer, sim_market: Market, tmp_path: Path
) -> None:
    """A position held over a funding time pays ``-amount * mark * rate`` with the mark the
    public venue settled that funding at (its funding-rate history), as the backtest does,
    not the last price."""
    venue = _venue(tmp_path)
    with open_exchange(venue, START, public_url=public.url) as ex:
        amount = ex.amount_to_precision(ETH, 3000.0 / sim_market.price("ETHUSDT", to_ms(START)))
        ex.create_order(ETH, "buy", amount, "paper-funding-1")
    later = START + 2 * BAR  # 08:00, the next funding time
    ft = to_ms(later)
    mark, last = sim_market.mark_price("ETHUSDT", ft), sim_market.price("ETHUSDT", ft)
    rate = sim_market.funding_rate("ETHUSDT", ft)
    assert rate != 0.0 and abs(mark / last - 1) > 1e-6  # the two valuations differ
    public.set_now(later)
    with open_exchange(venue, later, public_url=public.url) as ex, \
            Exchange.from_params(VenueParams(sim_url=public.url)) as direct:
        (paid,) = ex.fetch_funding_history(ETH)
        assert paid.timestamp == ft
        # the venue reports income to 7 decimals: far finer than mark vs last price here
        assert abs(amount * (mark - last) * rate) > 1e-5
        assert paid.amount == pytest.approx(-amount * mark * rate, abs=1e-7)
        # the paper venue's own funding history repeats the public one, marks included
        since = ft - 3 * 8 * 3_600_000
        assert ex.fetch_funding_rate_history(ETH, since, ft) == \
            direct.fetch_funding_rate_history(ETH, since, ft)


def test_funding_without_a_mark_is_valued_at_the_last_price_and_logged(
    public: SimServer, caplog: pytest.LogCaptureFixture
) -> None:
    ft = to_ms(START) - 8 * 3_600_000
    history = [FundingRate(ft - 8 * 3_600_000, 0.0002, 99.25), FundingRate(ft, 0.0004, None)]
    with Exchange.from_params(VenueParams(sim_url=public.url)) as direct:
        src = PublicMarket(direct, START, funding_history=lambda s, a, b: history)
        assert src.mark_price("BTCUSDT", ft - 8 * 3_600_000) == 99.25
        with caplog.at_level(logging.WARNING, logger="pairlib.venue.paper"):
            assert src.mark_price("BTCUSDT", ft) == src.price("BTCUSDT", ft)
            assert src.mark_price("BTCUSDT", ft) == src.price("BTCUSDT", ft)
        (line,) = [r.getMessage() for r in caplog.records if r.name == "pairlib.venue.paper"]
        assert "BTC/USDT:USDT" in line and "without a mark price" in line
        assert "last price" in line
        # between funding times, and at a funding time the history does not list: last price
        off = ft + 3_600_000
        assert src.mark_price("BTCUSDT", off) == src.price("BTCUSDT", off)
        assert src.funding_rate("BTCUSDT", ft - 16 * 3_600_000) == 0.0
        assert src.mark_price("BTCUSDT", ft - 16 * 3_600_000) == \
            src.price("BTCUSDT", ft - 16 * 3_600_000)
