"""Helpers of the live-tick tests: a simulated venue, a store with a pair set built from the
simulator's ground truth, and a settable clock, advanced together.

Not a conftest: test modules build their fixture with :func:`make_env`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
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


def assert_hedged_and_matching(env: TickEnv) -> None:
    """The store equals the venue per symbol, and no pair holds one leg only."""
    expected: dict[str, float] = {}
    for r in env.store.pair_states().to_dict("records"):
        assert (r["amount_y"] == 0) == (r["amount_x"] == 0), f"naked leg: {r}"
        expected[r["y"]] = expected.get(r["y"], 0.0) + r["amount_y"]
        expected[r["x"]] = expected.get(r["x"], 0.0) + r["amount_x"]
    for sym, amt in expected.items():
        assert env.venue_position(sym) == pytest.approx(amt, abs=1e-9), sym


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
