"""``Exchange.fetch_funding_history`` pages through the venue's whole income history, and
``Exchange.fetch_funding_rate_history`` through the public funding-rate history.

The simulator's account holds 37 positions across 60 funding times: 2,220 funding payments,
37 sharing each funding time, so pages of 1,000 end in the middle of a funding time. Every
payment must arrive exactly once, with the tick's call shape ``(None, since)``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tick_fixtures import START, unthrottle

from pairlib import errors
from pairlib.clock import to_ms
from pairlib.config import VenueParams
from pairlib.sim import GENESIS, Market, SimServer
from pairlib.venue import exchange
from pairlib.venue.exchange import Exchange

HOLDERS = 37  # positions held: 1000 % 37 != 0, so a page ends inside a funding time
FUNDINGS = 60  # funding times crossed (8 h apart: 20 days)
FUNDING_MS = 8 * 3_600_000
FIRST = to_ms(START) + FUNDING_MS  # the first funding time after START (a 00:00 UTC close)


@pytest.fixture(scope="module")
def funded(sim_market: Market) -> Iterator[SimServer]:
    """A simulator whose account paid or received funding 2,220 times."""
    mp = pytest.MonkeyPatch()
    unthrottle(mp)
    server = SimServer(sim_market, None, now=START, weight_limit=10**9,
                       starting_balance=1_000_000.0)
    server.start()
    try:
        now = server.now_ms
        for sym in sim_market.symbols[:HOLDERS]:
            rules = sim_market.rules(sym)
            step = rules["stepSize"]
            price = sim_market.price(sym, now)
            qty = max(rules["minQty"], math.ceil(2 * rules["minNotional"] / price / step) * step)
            server.account.new_order(
                symbol=sym, side="BUY", order_type="MARKET",
                quantity=round(qty, rules["quantityPrecision"]), price=None,
                time_in_force=None, reduce_only=False, client_id=None, now_ms=now)
        assert len(server.account.positions()) == HOLDERS
        server.set_now(START + timedelta(milliseconds=FUNDINGS * FUNDING_MS))
        yield server
    finally:
        server.stop()
        mp.undo()


@pytest.fixture
def ex(funded: SimServer) -> Iterator[Exchange]:
    with Exchange.from_params(VenueParams(max_retries=0), sim_url=funded.url) as e:
        e.markets()
        yield e


def _venue_rows(sim: SimServer, market: Market, since: int = 0,
                symbol: str | None = None) -> Counter[tuple[str, int]]:
    """(unified symbol, time) of every funding payment the account recorded."""
    return Counter(
        (market.unified(r["symbol"]), int(r["time"]))
        for r in sim.account.income("FUNDING_FEE")
        if r["time"] >= since and (symbol is None or r["symbol"] == symbol)
    )


def _requests(ex: Exchange, fn: Any) -> tuple[Any, int]:
    before = ex.requests_sent
    out = fn()
    return out, ex.requests_sent - before


def test_every_payment_arrives_exactly_once_across_pages(
    ex: Exchange, funded: SimServer, sim_market: Market
) -> None:
    want = _venue_rows(funded, sim_market)
    assert sum(want.values()) == HOLDERS * FUNDINGS == 2220
    assert set(want.values()) == {1}  # one payment per symbol and funding time
    got, sent = _requests(ex, lambda: ex.fetch_funding_history(None, to_ms(START)))
    assert Counter((p.symbol, p.timestamp) for p in got) == want
    assert len(got) == 2220
    # pages start at row 0, 999 (the last page's time, 27 * 37) and 1998 (54 * 37): the
    # second re-reads 1 row of a funding time cut in two, the third 37, the third is short
    assert sent == 3
    assert ex.funding_page_limit == 1000
    assert [p.timestamp for p in got] == sorted(p.timestamp or 0 for p in got)
    total = sum(r["income"] for r in funded.account.income("FUNDING_FEE"))
    # amounts travel as 8-decimal strings: each differs from the account's by < 5e-9
    assert sum(p.amount for p in got) == pytest.approx(total, abs=5e-9 * len(got))


def test_since_inside_the_history_and_one_symbol(
    ex: Exchange, funded: SimServer, sim_market: Market
) -> None:
    since = FIRST + 10 * FUNDING_MS  # a funding time itself: inclusive
    got = ex.fetch_funding_history(None, since)
    assert Counter((p.symbol, p.timestamp) for p in got) == _venue_rows(
        funded, sim_market, since)
    assert len(got) == HOLDERS * (FUNDINGS - 10)
    sym = sim_market.symbols[5]
    one = ex.fetch_funding_history(sim_market.unified(sym), to_ms(START))
    assert Counter((p.symbol, p.timestamp) for p in one) == _venue_rows(
        funded, sim_market, 0, sym)
    assert len(one) == FUNDINGS


def test_small_pages_cut_every_funding_time_and_still_lose_nothing(
    ex: Exchange, funded: SimServer, sim_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With pages of 64 (every page ends inside a funding time of 37 payments) the result
    is the same set, each payment once."""
    monkeypatch.setitem(exchange._FUNDING_PAGE_LIMIT, "binanceusdm", 64)
    since = FIRST + 40 * FUNDING_MS
    got, sent = _requests(ex, lambda: ex.fetch_funding_history(None, since))
    assert Counter((p.symbol, p.timestamp) for p in got) == _venue_rows(
        funded, sim_market, since)
    assert len(got) == HOLDERS * (FUNDINGS - 40)
    assert sent > math.ceil(len(got) / 64)  # boundary rows were read again, then dropped


def test_a_funding_time_larger_than_a_page_is_an_error_not_a_loss(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    """37 payments at one instant and pages of 20: paging by time cannot get past it, so the
    read fails loudly instead of skipping the rest."""
    monkeypatch.setitem(exchange._FUNDING_PAGE_LIMIT, "binanceusdm", 20)
    with pytest.raises(errors.ExchangeError, match="cannot be paged past that time"):
        ex.fetch_funding_history(None, FIRST)


# ------------------------------------------------------------------ funding-rate history


def test_rate_history_longer_than_a_page_is_read_whole_with_its_mark_prices(
    ex: Exchange, funded: SimServer, sim_market: Market
) -> None:
    """The public funding-rate history of one symbol over more funding times than one page
    (1,000 on Binance): every time once, each rate and mark price as the venue settled it
    (what the simulator's account paid funding with)."""
    sym = sim_market.symbols[3]
    unified = sim_market.unified(sym)
    since = to_ms(GENESIS)
    until = funded.now_ms
    want = sim_market.funding_times(since, until)
    assert len(want) > ex.funding_rate_page_limit == 1000
    got, sent = _requests(ex, lambda: ex.fetch_funding_rate_history(unified, since, until))
    assert [r.timestamp for r in got] == want
    assert sent == math.ceil(len(want) / 1000)
    assert [r.rate for r in got] == [sim_market.funding_rate(sym, t) for t in want]
    assert [r.mark_price for r in got] == [sim_market.mark_price(sym, t) for t in want]
    assert any(r.mark_price != sim_market.price(sym, r.timestamp) for r in got)
    # The rates-only view covers the same times (no page cut off).
    assert ex.fetch_funding_rates(unified, since, until) == {r.timestamp: r.rate for r in got}


def test_rate_history_small_pages_and_a_window_inside_the_history(
    ex: Exchange, sim_market: Market, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(exchange._FUNDING_RATE_PAGE_LIMIT, "binanceusdm", 7)
    sym = sim_market.symbols[0]
    since, until = FIRST + 3 * FUNDING_MS, FIRST + 40 * FUNDING_MS  # both funding times
    got, sent = _requests(
        ex, lambda: ex.fetch_funding_rate_history(sim_market.unified(sym), since, until))
    assert [r.timestamp for r in got] == list(range(since, until + 1, FUNDING_MS))
    assert sent == math.ceil(38 / 7)
    assert all(r.mark_price == sim_market.mark_price(sym, r.timestamp) for r in got)


def test_funding_rates_are_cached_and_fetched_once(
    ex: Exchange, sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``data.load_funding_rates``: a second read of the same window sends nothing, a longer
    window asks only for what the cache lacks, and a damaged file is read again."""
    from pairlib.edges.data import FundingRateCache, load_funding_rates

    monkeypatch.setitem(exchange._FUNDING_RATE_PAGE_LIMIT, "binanceusdm", 50)
    syms = [sim_market.unified(s) for s in sim_market.symbols[:3]]
    since, until = FIRST, FIRST + 30 * FUNDING_MS
    first, sent = _requests(ex, lambda: load_funding_rates(ex, syms, since, until, tmp_path))
    assert sent == 3
    direct = {s: ex.fetch_funding_rate_history(s, since, until) for s in syms}
    assert first == direct
    again, sent = _requests(ex, lambda: load_funding_rates(ex, syms, since, until, tmp_path))
    assert (again, sent) == (first, 0)
    # A window 20 funding times earlier and 10 later: one ask before, one after, per symbol.
    lo, hi = since - 20 * FUNDING_MS, until + 10 * FUNDING_MS
    wider, sent = _requests(ex, lambda: load_funding_rates(ex, syms, lo, hi, tmp_path))
    assert sent == 2 * 3
    assert wider == {s: ex.fetch_funding_rate_history(s, lo, hi) for s in syms}
    assert [r.timestamp for r in wider[syms[0]]] == list(range(lo, hi + 1, FUNDING_MS))
    # A file whose rows went out of order is not trusted: read again from the venue.
    cache = FundingRateCache(tmp_path, ex.venue_key)
    import pyarrow.parquet as pq

    table = pq.read_table(cache.path(syms[0]))
    pq.write_table(table.take(list(reversed(range(table.num_rows)))), cache.path(syms[0]))
    assert cache.read(syms[0]) is None
    healed, sent = _requests(ex, lambda: load_funding_rates(ex, syms[:1], lo, hi, tmp_path))
    assert sent == 2 and healed[syms[0]] == wider[syms[0]]  # 61 rates, pages of 50
    assert cache.read(syms[0]) is not None
