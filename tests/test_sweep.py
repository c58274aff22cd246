"""Parameter sweeps: the vectorised rule equals ``strategy.positions`` on every path
(``pairlib.core.sweep``), the grid's validation, walk-forward pair sets as the backtest's, the
shortlist equals the full-portfolio backtest run directly, and Ctrl-C keeps what finished
(``pairlib.engine.sweep``)."""

from __future__ import annotations

import itertools
import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tick_fixtures import panel_rules, sim_panel

from pairlib.config import Params
from pairlib.core.metrics import performance
from pairlib.core.strategy import PairState, positions, step, zscore
from pairlib.core.sweep import fold_positions, rolling_z, sweep_signals
from pairlib.engine import sweep as sw
from pairlib.engine.backtest import simulate
from pairlib.errors import ConfigError
from pairlib.sim import GENESIS

BAR = timedelta(hours=4)
TF_MS = 4 * 3_600_000
START = GENESIS + timedelta(days=400)  # 2025-02-04, a 4h close
END = START + 200 * BAR  # two month starts: February and March


def _ar_paths(seed: int, n_paths: int, n: int, phi: float = 0.95) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.zeros((n_paths, n))
    for t in range(1, n):
        s[:, t] = phi * s[:, t - 1] + rng.normal(size=n_paths) * 0.01
    return s


def _combos() -> list[tuple[float, float, float]]:
    """Thresholds where entry, exit and stop interact: exit 0, exit just below entry, stop
    just above entry."""
    out = []
    for e, x, s in itertools.product([0.5, 1.0, 1.5, 2.0], [0.0, 0.25, 0.99, 1.49],
                                     [1.01, 1.6, 2.5, 3.5]):
        if 0 <= x < e < s:
            out.append((e, x, s))
    return out


# --------------------------------------------------------------------------------------
# The fast path equals strategy.positions
# --------------------------------------------------------------------------------------


def test_fold_positions_equals_strategy_positions_on_every_path() -> None:
    paths = _ar_paths(3, 24, 1000)
    z = np.array([zscore(p, 30) for p in paths])
    rng = np.random.default_rng(4)
    z[rng.random(z.shape) < 0.02] = np.nan  # gaps: no entry, positions held, lockout kept
    z[:5, :200] = np.nan  # long NaN starts
    z[5:10] *= 3.0  # large swings: stops and lockouts
    combos = _combos()
    e, x, s = (np.array(v) for v in zip(*combos, strict=True))
    got = fold_positions(z, e, x, s)
    stops = 0
    for c, (ce, cx, cs) in enumerate(combos):
        for p in range(len(z)):
            want = positions(z[p], ce, cx, cs)
            np.testing.assert_array_equal(got[c, p], want, err_msg=f"combo {combos[c]} path {p}")
            stops += int(np.sum((np.abs(z[p]) >= cs) & (np.roll(want, 1) != 0)))
    assert stops > 50, "the paths must stop out (and re-arm) often"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-5, 5), st.just(math.nan), st.sampled_from(
    [0.0, 0.5, -0.5, 1.0, -1.0, 3.5, -3.5, 2.0, -2.0])), min_size=1, max_size=80),
    st.sampled_from(_combos()))
def test_fold_positions_on_exact_thresholds_and_nans(z: list[float],
                                                     combo: tuple[float, float, float]) -> None:
    got = fold_positions(np.array(z), *combo)
    np.testing.assert_array_equal(got[0, 0], positions(np.array(z), *combo))


def test_exits_only_outside_can_enter() -> None:
    z = np.array([1.2, 1.3, 0.8, 0.4, 1.5, -1.2, np.nan])
    ce = np.array([True, False, False, False, False, False, False])
    got = fold_positions(z, 1.0, 0.5, 3.5, can_enter=ce)[0, 0]
    assert got.tolist() == [-1, -1, -1, 0, 0, 0, 0]  # held to its exit, then no entry


def test_rolling_z_matches_strategy_zscore() -> None:
    paths = _ar_paths(5, 12, 800) + np.linspace(0, 50, 12)[:, None]  # large levels too
    paths[0, 100:180] = 0.25  # a flat stretch: NaN (zero std)
    paths[1, 300] = np.inf
    paths[2, :40] = np.nan
    for L in (2, 30, 61):
        z, sd = rolling_z(paths, L)
        want = np.array([zscore(p, L) for p in paths])
        np.testing.assert_array_equal(np.isnan(z), np.isnan(want))
        np.testing.assert_allclose(z, want, rtol=2e-6, atol=1e-9)  # the fast path's bound
        ok = ~np.isnan(want)
        i, t = np.nonzero(ok)
        k = (i[::97], t[::97])
        np.testing.assert_allclose(sd[k], [np.std(paths[a, b - L + 1: b + 1], ddof=1)
                                           for a, b in zip(*k, strict=True)], rtol=1e-6)


def test_rolling_z_is_exact_at_the_thresholds_it_is_told() -> None:
    paths = _ar_paths(6, 4, 600)
    want = np.array([zscore(p, 40) for p in paths])
    thresholds = want[:, 100:400:7].ravel()  # z values the fast sums land next to
    thresholds = thresholds[np.isfinite(thresholds)]
    z, _ = rolling_z(paths, 40, exact_at=thresholds)
    for thr in thresholds:
        np.testing.assert_array_equal(z >= thr, want >= thr)
        np.testing.assert_array_equal(z > thr, want > thr)
    entry = float(abs(thresholds[3]))
    for p in range(len(paths)):
        np.testing.assert_array_equal(
            fold_positions(z[p], entry, entry / 2, entry + 2)[0, 0],
            positions(want[p], entry, entry / 2, entry + 2))


def test_sweep_signals_returns_and_metrics_by_hand() -> None:
    spreads = _ar_paths(7, 3, 700)
    rng = np.random.default_rng(8)
    rets = rng.normal(0, 0.01, size=spreads.shape)
    w = np.array([0.5, 0.3, 0.2])
    cost, first = 0.0007, 60
    r = sweep_signals(spreads, rets, [40, 60], [1.0, 1.5], [0.5, 0.0], [3.0, 3.5],
                      timeframe_ms=TF_MS, weights=w, cost=cost, first_bar=first)
    for c, (L, e, x, s) in enumerate([(40, 1.0, 0.5, 3.0), (60, 1.5, 0.0, 3.5)]):
        want = np.zeros(700 - first)
        trades = 0
        for p in range(3):
            z = zscore(spreads[p], L)
            z[:first] = np.nan  # no entry before the first bar traded
            pos = positions(z, e, x, s).astype(float)
            prev = np.r_[0.0, pos[:-1]]
            want += w[p] * (prev * rets[p] - cost * np.abs(pos - prev))[first:]
            trades += int(np.sum((pos != 0) & (pos != prev)))
        np.testing.assert_allclose(r.returns[c], want, rtol=0, atol=1e-15)
        assert r.trades[c] == trades > 0
        perf = performance(np.r_[1.0, np.cumprod(1.0 + want)], TF_MS)
        assert r.metrics["sharpe"][c] == pytest.approx(perf.sharpe, rel=1e-9)
        assert r.metrics["total_return"][c] == pytest.approx(perf.total_return, rel=1e-9)
        assert r.metrics["annual_return"][c] == pytest.approx(perf.annual_return, rel=1e-9)
        assert r.metrics["max_drawdown"][c] == pytest.approx(perf.max_drawdown, rel=1e-9)


def _loss_reference(z: np.ndarray, sd: np.ndarray, spread: np.ndarray, e: float, x: float,
                    s: float, m: float) -> list[int]:
    """The loss limit by hand: strategy.step, then plan's rule on a held bar."""
    state, out, s_entry, budget = PairState(), [], 0.0, math.inf
    for t in range(len(z)):
        d = step(state, z[t], e, x, s)
        new = d.state
        if d.action == "hold" and -state.position * (spread[t] - s_entry) >= m * budget:
            new = PairState(0, locked_out=True)
        elif d.action in ("enter_long", "enter_short"):
            s_entry, budget = spread[t], (s - abs(z[t])) * sd[t]
        state = new
        out.append(new.position)
    return out


def test_loss_limit_matches_a_reference_fold() -> None:
    spreads = _ar_paths(9, 6, 900, phi=0.99)
    r_lim = sweep_signals(spreads, np.zeros_like(spreads), [30, 30], [1.0, 1.0], [0.5, 0.5],
                          [3.5, 3.5], timeframe_ms=TF_MS, loss_multiple=[0.3, np.nan],
                          first_bar=30)
    assert r_lim.trades[0] > r_lim.trades[1], "the loss limit must close trades early"
    z, sd = rolling_z(spreads, 30)
    for p in range(6):
        zp = z[p].copy()
        zp[:30] = np.nan
        want = _loss_reference(zp, sd[p], spreads[p], 1.0, 0.5, 3.5, 0.3)
        free = positions(zp, 1.0, 0.5, 3.5)
        assert want != free.tolist() or p > 0  # path 0 hits the limit
        # Positions are recovered from the trades: compare by re-running with one path.
        one = sweep_signals(spreads[p:p + 1], np.ones((1, 900)), [30], [1.0], [0.5], [3.5],
                            timeframe_ms=TF_MS, loss_multiple=[0.3], first_bar=30, cost=1.0)
        held = np.array(want, dtype=float)
        prev = np.r_[0.0, held[:-1]]
        np.testing.assert_allclose(one.returns[0], (prev - np.abs(held - prev))[30:])


# --------------------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("grid", "words"), [
    ({"entry": [1.0], "speed": [1]}, ["'speed'", "allowed", "entry", "formation_bars"]),
    ({"entry": []}, ["'entry'", "empty"]),
    ({"exit": [0.5, math.nan]}, ["'exit'", "nan", "finite"]),
    ({"entry": [math.inf]}, ["'entry'", "finite"]),
    ({"entry": [1.0, 1.5], "exit": [0.2, 1.5]}, ["'exit'", "1.5", "not below any entry"]),
    ({"entry": [1.0, 1.5], "stop": [1.2, 0.9]}, ["'stop'", "0.9", "not above any entry"]),
    ({"lookback": [60.5]}, ["'lookback'", "integer"]),
    ({"lookback": [1]}, ["'lookback'", "strategy.lookback", "refused"]),
    ({"formation_bars": [10]}, ["'formation_bars'", "selection.formation_bars", "refused"]),
    ({"max_loss_multiple": [-1.0]}, ["'max_loss_multiple'", "refused"]),
    ({"entry": [True]}, ["'entry'", "finite number"]),
    ({"entry": [1.0, 1.0]}, ["'entry'", "repeats"]),
])
def test_a_bad_grid_is_refused_before_anything_runs(grid: dict[str, Any],
                                                    words: list[str]) -> None:
    calls: list[int] = []

    def select(*a: Any) -> Any:
        calls.append(1)
        raise AssertionError("nothing may run for a bad grid")

    with pytest.raises(ConfigError) as info:
        sw.sweep(Params(), pd.DataFrame(), START, END, grid, {}, select=select)
    for w in words:
        assert w in str(info.value)
    assert calls == []


def test_invalid_cells_are_skipped_with_the_reason() -> None:
    g = sw.Grid.parse({"entry": [1.0, 2.0], "exit": [0.5, 1.5],
                       "strategy.stop": [1.8, 3.5], "max_loss_multiple": [None, 2]}, Params())
    valid, skipped = g.combinations()
    assert g.size == 16 and len(valid) + len(skipped) == 16
    reasons = {why for _, why in skipped}
    assert "exit 1.5 >= entry 1.0" in reasons and "stop 1.8 <= entry 2.0" in reasons
    assert all(c.exit < c.entry < c.stop for c in valid)
    assert {c.max_loss_multiple for c in valid} == {None, 2.0}
    assert valid[0].params(Params()).strategy.entry == valid[0].entry


# --------------------------------------------------------------------------------------
# The engine on the simulated market
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def panel() -> tuple[pd.DataFrame, pd.DataFrame]:
    return sim_panel(START, END)


def _params() -> Params:
    return Params.model_validate({"risk": {"risk_per_trade": 0.01, "max_positions": 3}})


GRID = {"entry": [1.0, 1.5], "exit": [0.0, 0.5], "lookback": [60, 80]}


@pytest.fixture(scope="module")
def full(panel: tuple[pd.DataFrame, pd.DataFrame]) -> sw.SweepResult:
    closes, qv = panel
    return sw.sweep(_params(), closes, START, END, GRID, panel_rules(closes), quote_volume=qv,
                    shortlist=1, chunk_size=3)


@pytest.fixture(scope="module")
def direct(panel: tuple[pd.DataFrame, pd.DataFrame], full: sw.SweepResult) -> Any:
    """The shortlisted cell's params through ``backtest.simulate`` directly (its own
    selection)."""
    closes, qv = panel
    row = full.shortlist.iloc[0]
    raw = _params().model_dump(mode="json")
    raw["strategy"] |= {"entry": float(row["entry"]), "exit": float(row["exit"]),
                        "stop": float(row["stop"]), "lookback": int(row["lookback"])}
    return simulate(Params.model_validate(raw), closes, START, END, panel_rules(closes),
                    quote_volume=qv)


def test_walk_forward_pair_sets_are_the_backtests(full: sw.SweepResult, direct: Any) -> None:
    key = (540, 30.0)  # lookback 60 and 80 share the half-life cap min(30, lookback / 2)
    assert list(full.pair_sets) == [key]
    mine = full.pair_sets[key]
    assert list(mine) == list(direct.pair_sets) and len(mine) == 2  # February and March
    for t, chosen in mine.items():
        pd.testing.assert_frame_equal(chosen, direct.pair_sets[t])


def test_sweep_table_shortlist_and_overfitting(full: sw.SweepResult, direct: Any) -> None:
    assert full.n_trials == 8 and len(full.table) == 8 and not full.interrupted
    assert full.table["sharpe"].is_monotonic_decreasing
    assert (full.table["trades"] > 0).all()
    assert list(full.returns.columns) == sorted(full.table["combo"])
    assert 0.0 <= full.pbo <= 1.0 and 0.0 <= full.deflated_sharpe <= 1.0
    row = full.shortlist.iloc[0]
    assert row["combo"] == full.table.iloc[0]["combo"]
    assert len(direct.trades) > 0
    assert row["sharpe"] == direct.metrics.sharpe
    assert row["total_return"] == direct.metrics.total_return
    assert row["max_drawdown"] == direct.metrics.max_drawdown
    assert row["trades"] == len(direct.trades)


def test_ctrl_c_keeps_the_finished_combinations(
    panel: tuple[pd.DataFrame, pd.DataFrame], full: sw.SweepResult, tmp_path: Any,
) -> None:
    closes, qv = panel
    seen: list[tuple[int, int]] = []

    def progress(done: int, total: int) -> None:
        seen.append((done, total))
        if done >= 3:
            raise KeyboardInterrupt

    r = sw.sweep(_params(), closes, START, END, GRID, panel_rules(closes), quote_volume=qv,
                 shortlist=1, chunk_size=3, progress=progress)
    assert r.interrupted and seen[-1] == (3, 9)
    assert len(r.table) == 3 and r.shortlist.empty
    same = full.table.set_index("combo").loc[r.table["combo"]].reset_index()
    pd.testing.assert_frame_equal(r.table, same)
    saved = r.save(tmp_path / "partial")
    summary = (saved / "summary.json").read_text()
    assert '"interrupted": true' in summary
    assert len(pd.read_csv(saved / "table.csv")) == 3
