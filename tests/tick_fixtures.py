"""Helpers of the live-tick tests: a simulated venue, a store with a pair set built from the
simulator's ground truth, and a settable clock, advanced together.

Not a conftest: test modules build their fixture with :func:`make_env`.
"""

from __future__ import annotations

import collections
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pairlib.clock import SettableClock
from pairlib.config import TradingParams, validate_params
from pairlib.core.portfolio import pair_id
from pairlib.core.risk import MarketRules
from pairlib.core.strategy import spread, zscore
from pairlib.edges.store import Store
from pairlib.engine import tick
from pairlib.sim import GENESIS, Market, SimServer

START = GENESIS + timedelta(days=400)  # 2025-02-04 00:00 UTC, a 4h close
BAR = timedelta(hours=4)

# Planted pairs of the default market (seed 7), unified symbols.
GRT_RUNE = "GRT/USDT:USDT~RUNE/USDT:USDT"  # enters short at bar 7, exits at bar 13
EGLD_HBAR = "EGLD/USDT:USDT~HBAR/USDT:USDT"  # enters short at bar 1
INJ_SOL = "INJ/USDT:USDT~SOL/USDT:USDT"  # enters long at bar 0, exits at bar 1


def unthrottle(monkeypatch: pytest.MonkeyPatch) -> None:
    """No client-side request pacing for these tests (the simulator runs with a generous
    weight limit here), so many ticks can run inside one minute. Correctness is unaffected."""
    from pairlib.venue import exchange

    monkeypatch.setitem(exchange._WEIGHT_PER_MINUTE, "binanceusdm", 1e9)


def trading_params(tmp: Path, url: str | None, base: Mapping[str, Any] | None = None,
                   **sections: Any) -> TradingParams:
    """Test params: state, cache and kill file under ``tmp``; roomy risk limits so that
    every signalling pair can open (override any section's keys, or a top-level key).

    ``base``: the raw params these settings go on top of (e.g. a params file's, as
    ``yaml.safe_load`` reads it); default none, i.e. the model's defaults. The scenarios pin
    nothing else, so they hold for any thresholds the base carries."""
    fixture: dict[str, Any] = {
        "venue": {"kind": "sim", "sim_url": url, "sim_state": str(tmp / "sim_state.json"),
                  "max_retries": 2},
        "data": {"cache_dir": str(tmp / "data")},
        "risk": {"risk_per_trade": 0.005, "max_positions": 8, "max_gross_leverage": 6.0,
                 "kill_switch_file": str(tmp / "KILL")},
        "state_dir": str(tmp / "state"),
    }
    raw = _merge(_merge({}, dict(base or {})), fixture)
    return _merged(raw, sections)


def _merge(raw: dict[str, Any], sections: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with each section's keys (or a top-level key) overridden."""
    for name, values in sections.items():
        if isinstance(raw.get(name), dict) and isinstance(values, dict):
            raw[name] = {**raw[name], **values}
        else:
            raw[name] = values
    return raw


def _merged(raw: dict[str, Any], sections: Mapping[str, Any]) -> TradingParams:
    """``raw`` params with each section's keys overridden, validated."""
    return validate_params(_merge(raw, sections), TradingParams)


@dataclass
class TickEnv:
    """A simulator, its params, a store and a clock for tick tests."""

    market: Market
    server: SimServer
    params: TradingParams
    store: Store
    clock: SettableClock
    tmp: Path

    def at(self, when: datetime) -> None:
        """Move the venue's sim clock and the tick's clock to ``when``."""
        self.server.set_now(when)
        self.clock.set(when)

    def run(self, when: datetime, params: TradingParams | None = None,
            **kw: Any) -> tick.TickResult:
        """Run the tick for ``when`` with both clocks at ``when`` (unless told otherwise)."""
        self.at(kw.pop("now", when))
        return tick.run(params or self.params, when, store=self.store, clock=self.clock, **kw)

    def params_with(self, **sections: Any) -> TradingParams:
        """This env's params with some keys changed (a section's keys, or a top-level key
        such as ``state_dir``)."""
        return _merged(self.params.model_dump(mode="json"), sections)

    def save_pairs(self, pair_ids: Sequence[str] | None = None,
                   extra: Sequence[dict[str, Any]] = ()) -> int:
        """Store a pair set of planted pairs (all, or those named) plus ``extra`` rows."""
        rows = [r for r in planted_pairs(self.market)
                if pair_ids is None or pair_id(r["y"], r["x"]) in pair_ids]
        frame = pd.DataFrame([*rows, *extra])
        return self.store.save_pair_set(START - timedelta(days=1), "test", frame, None,
                                        START - timedelta(days=1))

    def venue_orders(self) -> list[dict[str, Any]]:
        """Every order the simulator has booked."""
        return list(self.server.account.orders())

    def venue_position(self, symbol: str) -> float:
        """Signed position at the venue (unified symbol)."""
        pos = self.server.account.positions()
        venue_id = symbol.split("/")[0] + "USDT"
        p = pos.get(venue_id)
        return 0.0 if p is None else float(p.amount)

    def z_path(self, pid: str, end: datetime, bars: int,
               lookback: int | None = None) -> pd.Series:
        """Batch z-scores of a planted pair on the ``bars`` candles closing up to ``end``
        (computed from the market's own closes, independently of the tick), over
        ``lookback`` bars (default: this env's ``strategy.lookback``)."""
        row = next(r for r in planted_pairs(self.market) if pair_id(r["y"], r["x"]) == pid)
        lookback = lookback or self.params.strategy.lookback
        closes = self.market.closes(end - (bars + lookback + 5) * BAR, end)
        closes.index = closes.index + BAR  # label by close time
        y, x = row["y"].split("/")[0] + "USDT", row["x"].split("/")[0] + "USDT"
        s = spread(np.log(closes[y].to_numpy()), np.log(closes[x].to_numpy()),
                   row["beta"], row["alpha"])
        z = pd.Series(zscore(s, lookback), index=closes.index)
        return z.iloc[-bars:]


def planted_pairs(market: Market) -> list[dict[str, Any]]:
    """The market's planted pairs as pair-set rows (unified symbols)."""
    return [
        {"y": market.unified(g.y), "x": market.unified(g.x), "beta": g.beta, "alpha": g.alpha,
         "half_life": g.half_life_bars}
        for g in market.ground_truth
    ]


def make_env(
    market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch, **sections: dict[str, Any]
) -> Iterator[TickEnv]:
    """Start a simulator at :data:`START` and yield a :class:`TickEnv` (stopped after)."""
    unthrottle(monkeypatch)
    server = SimServer(market, tmp / "sim_state.json", now=START, weight_limit=10**9)
    url = server.start()
    params = trading_params(tmp, url, **sections)
    store = Store.at(params.state_dir)
    try:
        yield TickEnv(market, server, params, store, SettableClock(START), tmp)
    finally:
        store.close()
        server.stop()


def signal_of(result: tick.TickResult, pid: str) -> dict[str, Any]:
    """The tick's signal row of one pair."""
    rows = result.signals.loc[result.signals["pair_id"] == pid]
    assert len(rows) == 1, result.signals
    return dict(rows.iloc[0].to_dict())


def assert_hedged_and_matching(env: TickEnv, symbols: Sequence[str] = ()) -> None:
    """The store equals the venue per symbol, and no pair holds one leg only.

    ``symbols``: unified symbols checked as well, holding nothing at the venue where the store
    has no pair on them (the stored pairs' symbols are always checked)."""
    expected: dict[str, float] = dict.fromkeys(symbols, 0.0)
    for r in env.store.pair_states().to_dict("records"):
        assert (r["amount_y"] == 0) == (r["amount_x"] == 0), f"naked leg: {r}"
        expected[r["y"]] = expected.get(r["y"], 0.0) + r["amount_y"]
        expected[r["x"]] = expected.get(r["x"], 0.0) + r["amount_x"]
    for sym, amt in expected.items():
        assert env.venue_position(sym) == pytest.approx(amt, abs=1e-9), sym


def assert_unique_client_ids(env: TickEnv) -> None:
    """No client order id was used for two orders the venue booked."""
    cids = collections.Counter(o["clientOrderId"] for o in env.venue_orders())
    twice = {c: n for c, n in cids.items() if n > 1}
    assert not twice, f"client ids used for two orders at the venue: {twice}"


def arm_after_orders(monkeypatch: pytest.MonkeyPatch, arm: Any, after: int = 1) -> None:
    """Arm a simulator fault right after the ``after``-th create_order call returned or
    failed (wrappers stack: call it twice to arm two faults at two points)."""
    from pairlib.venue.exchange import Exchange

    original = Exchange.create_order
    calls = {"n": 0}

    def wrapped(self: Exchange, *args: Any, **kw: Any) -> Any:
        try:
            return original(self, *args, **kw)
        finally:
            calls["n"] += 1
            if calls["n"] == after:
                arm()

    monkeypatch.setattr(Exchange, "create_order", wrapped)


def crash_on_order(monkeypatch: pytest.MonkeyPatch, n: int, message: str) -> Any:
    """Make the ``n``-th create_order call raise before its request leaves (a process dying
    between two orders); returns the original method, to put back for the re-run."""
    from pairlib.venue.exchange import Exchange

    original = Exchange.create_order
    calls = {"n": 0}

    def crash(self: Exchange, *args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == n:
            raise RuntimeError(message)
        return original(self, *args, **kw)

    monkeypatch.setattr(Exchange, "create_order", crash)
    return original


def sim_panel(start: datetime, end: datetime,
              warmup_bars: int = 700) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The default market's 4h closes and quote volumes from ``warmup_bars`` bars before
    ``start`` to ``end``, columns by unified symbol (the panel a backtest or sweep takes)."""
    m = Market()
    first = start - warmup_bars * BAR
    closes = m.closes(first, end)
    qv = m.quote_volumes(first, end)
    rename = {c: m.unified(c) for c in closes.columns}
    return closes.rename(columns=rename), qv.rename(columns=rename)


def panel_rules(closes: pd.DataFrame) -> dict[str, MarketRules]:
    """Market rules for every column of a panel: amount and price steps 0.001, 5 USDT
    minimum notional."""
    return {s: MarketRules(s, 0.001, 0.001, 5.0) for s in closes.columns}


def signal_when(proc: subprocess.Popen[Any], ready: Callable[[], bool], sig: int, *,
                waiting_for: str, within_s: float = 120.0) -> tuple[Any, Any]:
    """Send ``sig`` to ``proc`` once ``ready()`` holds; its ``(stdout, stderr)`` after it exits.

    Fails the test if the process ends first or ``ready`` does not hold within ``within_s``
    (a liveness bound, not a speed requirement); the process is killed if it is still running
    when this returns or fails."""
    try:
        deadline = time.monotonic() + within_s
        while not ready():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{waiting_for} not within {within_s:g} s"
            time.sleep(0.05)
        proc.send_signal(sig)
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class SpoiltMarket:
    """A simulated market served with chosen defects (a
    :class:`~pairlib.sim.source.MarketSource`; everything else is the wrapped market's).

    Attributes
    ----------
    defects : dict
        ``(binance id, open_ms)`` -> what is served for that candle: ``"missing"`` (nothing),
        ``"nan"`` (close NaN), ``"zero"`` (every price 0), ``"negative"`` (low and close
        -1.5), ``"duplicate"`` (the candle twice, the second close 1 % higher) or a float (a
        jump: the close, and the high if needed, multiplied by it; the candle stays valid).
    stop_after : dict
        Binance id -> the last open time served (a feed that stopped), every interval.
    delisted : set
        Binance ids gone from the market list (and so from ``exchangeInfo``).
    intervals : tuple of str or None
        The intervals whose candles ``defects`` spoils (None: every interval).
    """

    def __init__(self, market: Market, intervals: tuple[str, ...] | None = None) -> None:
        self._market = market
        self.intervals = intervals
        self.defects: dict[tuple[str, int], str | float] = {}
        self.stop_after: dict[str, int] = {}
        self.delisted: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._market, name)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(s for s in self._market.symbols if s not in self.delisted)

    def klines(self, symbol: str, interval: str, start_ms: int | None, end_ms: int | None,
               limit: int, now_ms: int) -> list[list[Any]]:
        stop = self.stop_after.get(symbol)
        spoil = self.intervals is None or interval in self.intervals
        out: list[list[Any]] = []
        for row in self._market.klines(symbol, interval, start_ms, end_ms, limit, now_ms):
            if stop is not None and int(row[0]) > stop:
                continue
            kind = self.defects.get((symbol, int(row[0]))) if spoil else None
            out.extend(_spoilt(list(row), kind))
        return out


def _spoilt(row: list[Any], kind: str | float | None) -> list[list[Any]]:
    """The rows served for one kline row with defect ``kind`` (see :class:`SpoiltMarket`)."""
    if kind is None:
        return [row]
    if kind == "missing":
        return []
    if kind == "nan":
        row[4] = "NaN"
    elif kind == "zero":
        row[1:5] = ["0", "0", "0", "0"]
    elif kind == "negative":
        row[3] = row[4] = "-1.5"
    elif kind == "duplicate":  # the same open time twice, with different closes
        again = list(row)
        again[4] = f"{float(row[4]) * 1.01:.6f}"
        return [row, again]
    elif isinstance(kind, float):
        decimals = len(row[4].split(".")[1]) if "." in row[4] else 0
        close = float(row[4]) * kind
        row[4] = f"{close:.{decimals}f}"
        row[2] = f"{max(float(row[2]), close):.{decimals}f}"
    else:
        raise ValueError(f"unknown candle defect {kind!r}: missing, nan, zero, negative, "
                         "duplicate or a float factor")
    return [row]
