"""Tests for pairlib.core.strategy: the rule (one test per bullet), NaNs, lockout, properties."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pairlib.core.strategy import (
    ACTIONS,
    Decision,
    PairState,
    decisions,
    positions,
    spread,
    step,
    zscore,
)

NAN = math.nan
E, X, S = 1.0, 0.5, 3.5  # entry, exit, stop


def pos(z: list[float], entry: float = E, exit: float = X, stop: float = S) -> list[int]:
    return positions(np.array(z, dtype=float), entry, exit, stop).tolist()


def acts(z: list[float], state: PairState | None = None) -> list[str]:
    return [d.action for d in decisions(z, E, X, S, state or PairState())]


# --------------------------------------------------------------------------------------
# The rule, bullet by bullet
# --------------------------------------------------------------------------------------


def test_flat_enters_short_when_z_at_or_above_entry_and_below_stop() -> None:
    assert pos([0.0, 0.99, 1.0]) == [0, 0, -1]
    assert pos([3.49]) == [-1]
    assert acts([1.2]) == ["enter_short"]


def test_flat_enters_long_when_z_at_or_below_minus_entry_and_above_minus_stop() -> None:
    assert pos([0.0, -0.99, -1.0]) == [0, 0, 1]
    assert pos([-3.49]) == [1]
    assert acts([-1.2]) == ["enter_long"]


def test_flat_no_entry_at_or_beyond_stop() -> None:
    assert pos([3.5, 5.0, -3.5, -9.0]) == [0, 0, 0, 0]
    assert acts([4.0]) == ["none"]


def test_short_exits_when_z_at_or_below_exit() -> None:
    assert pos([1.2, 0.8, 0.51, 0.5, 0.2]) == [-1, -1, -1, 0, 0]
    assert acts([1.2, 0.8, 0.5]) == ["enter_short", "hold", "exit"]


def test_short_stops_when_z_at_or_above_stop() -> None:
    assert pos([1.2, 3.49, 3.5]) == [-1, -1, 0]
    assert acts([1.2, 3.5]) == ["enter_short", "stop"]


def test_long_exits_when_z_at_or_above_minus_exit() -> None:
    assert pos([-1.2, -0.8, -0.51, -0.5, -0.2]) == [1, 1, 1, 0, 0]
    assert acts([-1.2, -0.8, -0.5]) == ["enter_long", "hold", "exit"]


def test_long_stops_when_z_at_or_below_minus_stop() -> None:
    assert pos([-1.2, -3.49, -3.5]) == [1, 1, 0]
    assert acts([-1.2, -3.5]) == ["enter_long", "stop"]


def test_one_action_per_bar_no_entry_on_exit_bar() -> None:
    # short exits at z=-1.5 (reverted through zero); the long entry waits for the next bar
    assert pos([1.2, -1.5, -1.5]) == [-1, 0, 1]
    assert acts([1.2, -1.5, -1.5]) == ["enter_short", "exit", "enter_long"]
    assert pos([-1.2, 1.5, 1.5]) == [1, 0, -1]


def test_lockout_after_stop_until_abs_z_below_entry() -> None:
    z = [1.2, 4.0, 2.0, 1.5, 1.0, 0.99, 1.1]
    assert pos(z) == [-1, 0, 0, 0, 0, 0, -1]
    ds = decisions(z, E, X, S)
    assert [d.state.locked_out for d in ds] == [False, True, True, True, True, False, False]
    assert ds[5].reason.endswith("lockout released, flat")


def test_lockout_blocks_the_other_side_too() -> None:
    # stopped out of a long at -4; z swings to +2: still no short until |z| < entry
    assert pos([-1.2, -4.0, 2.0, -2.0, 0.3, 2.0]) == [1, 0, 0, 0, 0, -1]


def test_no_lockout_after_a_plain_exit_or_a_flat_pass_beyond_stop() -> None:
    assert pos([1.2, 0.3, 1.2]) == [-1, 0, -1]
    # flat and beyond stop is not a stop loss: entry allowed once z is back inside
    assert pos([5.0, 3.0]) == [0, -1]


def test_nan_z_means_no_entry() -> None:
    assert pos([NAN, NAN, 1.2]) == [0, 0, -1]
    assert acts([NAN]) == ["none"]
    assert step(PairState(), NAN, E, X, S).reason == "z is NaN: no entry"


def test_nan_z_holds_an_open_position() -> None:
    assert pos([1.2, NAN, NAN, 0.3]) == [-1, -1, -1, 0]
    assert pos([-1.2, NAN, -0.3]) == [1, 1, 0]
    assert acts([1.2, NAN]) == ["enter_short", "hold"]


def test_nan_z_keeps_a_lockout() -> None:
    assert pos([1.2, 4.0, NAN, 2.0, 0.1, 1.2]) == [-1, 0, 0, 0, 0, -1]
    d = step(PairState(0, locked_out=True), NAN, E, X, S)
    assert d.state.locked_out and "locked out" in d.reason


def test_zero_exit_threshold() -> None:
    assert pos([1.2, 0.01, 0.0], exit=0.0) == [-1, -1, 0]


def test_reasons_carry_the_numbers() -> None:
    assert step(PairState(), 1.23, E, X, S).reason == "z=1.23 >= entry 1.00: short the spread"
    assert step(PairState(), -1.5, E, X, S).reason == "z=-1.50 <= -entry -1.00: long the spread"
    short = PairState(-1)
    assert step(short, 0.4, E, X, S).reason == "z=0.40 <= exit 0.50: short spread reverted, exit"
    assert step(short, 3.6, E, X, S).reason.startswith(
        "z=3.60 >= stop 3.50: stop loss on short spread"
    )
    assert "hold short spread" in step(short, 1.0, E, X, S).reason
    # a z just below a threshold is printed with enough digits to tell them apart
    assert step(PairState(), 0.999, E, X, S).reason == "|z|=0.999 < entry 1.00: stay flat"


def test_decision_fields_consistent() -> None:
    for d in decisions([0.0, 1.2, 1.1, NAN, 4.0, 0.2, -1.3, -0.1], E, X, S):
        assert isinstance(d, Decision)
        assert d.action in ACTIONS
        assert d.position == d.state.position
        assert d.reason


def test_decisions_resume_from_persisted_state() -> None:
    ds = decisions([0.8, 0.4], E, X, S, state=PairState(-1))
    assert [d.position for d in ds] == [-1, 0]
    ds = decisions([2.0], E, X, S, state=PairState(0, locked_out=True))
    assert ds[0].position == 0 and ds[0].state.locked_out


def test_positions_dtype_and_empty() -> None:
    out = positions(np.array([0.0, 1.5]))
    assert out.dtype == np.int8
    assert positions([]).shape == (0,)
    assert decisions([], E, X, S) == []


@pytest.mark.parametrize(
    ("entry", "exit", "stop", "match"),
    [
        (1.0, 1.0, 3.5, r"exit \(1.0\) must be less than entry \(1.0\)"),
        (1.0, -0.1, 3.5, r"exit \(-0.1\) must be >= 0"),
        (1.0, 0.5, 1.0, r"stop \(1.0\) must be greater than entry \(1.0\)"),
        (NAN, 0.5, 3.5, r"entry must be a finite number"),
        (1.0, 0.5, math.inf, r"stop must be a finite number"),
    ],
)
def test_thresholds_validated(entry: float, exit: float, stop: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        positions([0.0], entry, exit, stop)
    with pytest.raises(ValueError, match=match):
        step(PairState(), 0.0, entry, exit, stop)
    with pytest.raises(ValueError, match=match):
        decisions([0.0], entry, exit, stop)


def test_pair_state_validated() -> None:
    with pytest.raises(ValueError, match="position must be -1, 0 or 1, got 2"):
        PairState(2)
    with pytest.raises(ValueError, match="locked_out=True requires a flat position"):
        PairState(1, locked_out=True)


def test_positions_rejects_2d() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        positions(np.zeros((2, 2)))


# --------------------------------------------------------------------------------------
# Properties of the rule
# --------------------------------------------------------------------------------------

z_values = st.one_of(
    st.floats(-6.0, 6.0),
    st.sampled_from([E, -E, X, -X, S, -S, 0.0, NAN]),
)
z_paths = st.lists(z_values, max_size=200)


@settings(deadline=None, max_examples=200)
@given(z_paths)
def test_property_positions_valid_no_flip_no_entry_on_exit_bar(z: list[float]) -> None:
    p = positions(np.array(z, dtype=float), E, X, S)
    assert set(p.tolist()) <= {-1, 0, 1}
    prev = np.concatenate(([0], p[:-1])).astype(int)
    cur = p.astype(int)
    # never from +1 to -1 (or back) in one bar
    assert not np.any(prev * cur < 0)
    # never enters on a bar where it exited: every change touches zero
    changed = prev != cur
    assert np.all((prev[changed] == 0) | (cur[changed] == 0))
    ds = decisions(z, E, X, S)
    for d in ds:
        if d.action in ("exit", "stop"):
            assert d.position == 0


@settings(deadline=None, max_examples=200)
@given(z_paths, st.integers(0, 200))
def test_property_bar_by_bar_step_equals_batch(z: list[float], split: int) -> None:
    batch = positions(np.array(z, dtype=float), E, X, S).tolist()
    # the live tick: step one bar at a time from the persisted state
    state = PairState()
    live = []
    for zi in z:
        d = step(state, zi, E, X, S)
        live.append(d.position)
        state = d.state
    assert live == batch
    # ... and resuming decisions() from a state persisted mid-way changes nothing
    k = min(split, len(z))
    first = decisions(z[:k], E, X, S)
    mid = first[-1].state if first else PairState()
    rest = decisions(z[k:], E, X, S, state=mid)
    assert [d.position for d in first + rest] == batch


@settings(deadline=None, max_examples=100)
@given(
    z_paths,
    st.floats(0.0, 2.0),
    st.floats(0.01, 2.0),
    st.floats(0.01, 4.0),
)
def test_property_any_valid_thresholds(
    z: list[float], exit: float, gap: float, gap2: float
) -> None:
    entry, stop = exit + gap, exit + gap + gap2
    p = positions(z, entry, exit, stop)
    assert [d.position for d in decisions(z, entry, exit, stop)] == p.tolist()
    zz = np.array(z, dtype=float)
    entered = (p != 0) & (np.concatenate(([0], p[:-1])) == 0)
    assert np.all(np.abs(zz[entered]) >= entry)
    assert np.all(np.abs(zz[entered]) < stop)


# --------------------------------------------------------------------------------------
# spread and zscore
# --------------------------------------------------------------------------------------


def test_spread_formula() -> None:
    y = np.log([100.0, 110.0, 99.0])
    x = np.log([10.0, 10.5, 9.8])
    np.testing.assert_allclose(spread(y, x, 1.5, 0.2), y - 1.5 * x - 0.2, rtol=0, atol=0)


def test_spread_validates() -> None:
    with pytest.raises(ValueError, match="same length, got 2 and 3"):
        spread([0.0, 1.0], [0.0, 1.0, 2.0], 1.0, 0.0)
    with pytest.raises(ValueError, match="beta must be a finite number, got nan"):
        spread([0.0], [0.0], NAN, 0.0)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        spread([0.0], [0.0], 1.0, math.inf)


def naive_z(s: np.ndarray, lookback: int) -> np.ndarray:
    """Per-window reference: np.std(ddof=1), NaN for short/non-finite/zero-std windows."""
    out = np.full(s.size, np.nan)
    for t in range(lookback - 1, s.size):
        w = s[t - lookback + 1 : t + 1]
        if not np.all(np.isfinite(w)):
            continue
        sd, mu = np.std(w, ddof=1), np.mean(w)
        if sd > 1e-12 * abs(mu):
            out[t] = (s[t] - mu) / sd
    return out


def assert_same_z(a: np.ndarray, b: np.ndarray, atol: float = 1e-9) -> None:
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=atol, equal_nan=True)


def test_zscore_nan_until_lookback_values() -> None:
    z = zscore(np.arange(10.0) ** 1.5, 4)
    assert np.isnan(z[:3]).all() and np.isfinite(z[3:]).all()
    assert np.isnan(zscore([1.0, 2.0], 3)).all()
    assert zscore([], 3).shape == (0,)


def test_zscore_known_value() -> None:
    # window [1, 2, 3, 10]: mean 4, deviations -3 -2 -1 6, sample std sqrt(50/3)
    z = zscore([1.0, 2.0, 3.0, 10.0], 4)
    assert z[-1] == pytest.approx(6.0 / math.sqrt(50.0 / 3.0), abs=1e-15)


def test_zscore_zero_std_is_nan() -> None:
    s = np.r_[np.linspace(0.0, 1.0, 10), np.full(6, 0.1), [0.2, 0.3]]
    z = zscore(s, 5)
    # windows ending at 14, 15 are five copies of 0.1 (whose computed std is not exactly 0)
    assert np.isnan(z[14:16]).all()
    assert np.isfinite(z[16:]).all() and np.isfinite(z[4:14]).all()
    assert np.isnan(zscore(np.zeros(20), 5)).all()


def test_zscore_non_finite_inputs_poison_only_their_windows() -> None:
    s = np.sin(np.arange(30.0))
    s[10], s[20] = np.nan, np.inf
    z = zscore(s, 4)
    bad = np.zeros(30, bool)
    bad[:3] = True
    bad[10:14] = True
    bad[20:24] = True
    assert np.array_equal(np.isnan(z), bad)
    assert_same_z(z, naive_z(s, 4))


def test_zscore_validates_lookback() -> None:
    for bad in (1, 0, -3, 2.5, True):
        with pytest.raises(ValueError, match="lookback must be an integer > 1"):
            zscore([1.0, 2.0, 3.0], bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one-dimensional"):
        zscore(np.zeros((3, 3)), 2)


@pytest.mark.parametrize("lookback", [2, 3, 7, 60, 250])
def test_zscore_matches_naive_reference_on_random_walks(lookback: int) -> None:
    rng = np.random.default_rng(lookback)
    s = np.cumsum(rng.normal(0.0, 0.01, 1500)) + 0.3
    s[400:420] = s[399]  # a flat stretch
    s[700] = np.nan
    assert_same_z(zscore(s, lookback), naive_z(s, lookback))


def test_zscore_stable_far_from_zero_and_after_outliers() -> None:
    """Golden values from exact rational arithmetic (fractions), not from the naive formula.

    At a level of 1e6 with 1e-2 noise the naive two-pass np.std already loses ~1e-8 in z;
    the blockwise demeaning keeps z near machine precision. After a 1e8 outlier leaves the
    window, tiny-dispersion windows are recomputed exactly.
    """
    rng = np.random.default_rng(3)
    lookback = 20
    s = 1e6 + rng.normal(0.0, 1e-2, 120)
    s[50] = 1e8
    z = zscore(s, lookback)

    def exact(t: int) -> float:
        w = [Fraction(v) for v in s[t - lookback + 1 : t + 1]]
        mu = sum(w, Fraction(0)) / lookback
        ss = sum(((v - mu) ** 2 for v in w), Fraction(0))
        return float(w[-1] - mu) / math.sqrt(float(ss / (lookback - 1)))

    for t in range(lookback - 1, s.size):
        assert z[t] == pytest.approx(exact(t), abs=1e-9), t


def test_zscore_exact_fallback_matches_reference() -> None:
    # huge values then tiny dispersion inside the same block: forces the exact path
    rng = np.random.default_rng(5)
    s = rng.normal(0.0, 1e-3, 400)
    s[30:35] = 1e9
    s[200] = -1e9
    assert_same_z(zscore(s, 10), naive_z(s, 10))


@pytest.mark.parametrize("lookback", [2, 3, 5, 8])
def test_zscore_chunked_pass_matches_reference(
    monkeypatch: pytest.MonkeyPatch, lookback: int
) -> None:
    import pairlib.core.strategy as strategy_mod

    monkeypatch.setattr(strategy_mod, "_CHUNK", 7)  # many tiny chunks
    rng = np.random.default_rng(11)
    s = np.cumsum(rng.normal(0.0, 1.0, 203))
    s[50] = np.nan
    assert_same_z(zscore(s, lookback), naive_z(s, lookback))


grid_values = st.integers(-10_000, 10_000).map(lambda i: i / 1000.0)


@settings(deadline=None, max_examples=150)
@given(st.lists(grid_values, min_size=2, max_size=120), st.integers(2, 40))
def test_property_zscore_equals_naive(values: list[float], lookback: int) -> None:
    s = np.array(values)
    assert_same_z(zscore(s, lookback), naive_z(s, lookback))


@settings(deadline=None, max_examples=100)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(2, 50),
    st.floats(-100.0, 100.0),
    st.floats(0.1, 100.0),
)
def test_property_zscore_invariant_to_shift_and_positive_scale(
    seed: int, lookback: int, shift: float, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    s = np.cumsum(rng.normal(0.0, 1.0, 150))
    base = zscore(s, lookback)
    assert_same_z(zscore(s + shift, lookback), base, atol=1e-8)
    assert_same_z(zscore(s * scale, lookback), base, atol=1e-8)
    assert_same_z(zscore(s * scale + shift, lookback), base, atol=1e-8)
