"""Tests for pairlib.core.coint: pinned to statsmodels' coint / adfuller / mackinnonp on seeded
data.

Agreement is asserted to 1e-8 in the t-statistic and the p-value (relative 1e-9 on top for the
few near-exact fits of very short series, where |t| runs into the hundreds and statsmodels' own
rounding of the first-stage fit moves its t by ~1e-7), with the same chosen lag.
"""

from __future__ import annotations

import warnings
from itertools import permutations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from statsmodels.tools.sm_exceptions import CollinearityWarning
from statsmodels.tsa.adfvalues import mackinnonp
from statsmodels.tsa.stattools import adfuller, coint

import pairlib.core.coint as pc
from pairlib.core.coint import adf_pvalues, mackinnon_pvalue, scan
from pairlib.errors import ConfigError, DataError

ATOL = 1e-8
RTOL = 1e-9


def panel(n: int, seed: int, k: int = 4) -> pd.DataFrame:
    """Log prices: random walks, a cointegrated leg, a near-unit-root spread, a fast one."""
    rng = np.random.default_rng(seed)
    walks = np.cumsum(rng.normal(scale=0.02, size=(n, k)), axis=0) + rng.uniform(-2, 5, k)
    cols = {f"W{i}": walks[:, i] for i in range(k)}
    ar = np.zeros(n)
    slow = np.zeros(n)
    shock = rng.normal(scale=0.01, size=(n, 2))
    for t in range(1, n):
        ar[t] = 0.8 * ar[t - 1] + shock[t, 0]
        slow[t] = 0.995 * slow[t - 1] + shock[t, 1]
    cols["C"] = 1.3 * walks[:, 0] + 0.4 + ar
    cols["U"] = -0.7 * walks[:, 1] + 1.0 + slow
    return pd.DataFrame(cols)


def sm_coint(y: np.ndarray, x: np.ndarray, **kw: object) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollinearityWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        t, p, _ = coint(y, x, **kw)  # type: ignore[arg-type]
    return float(t), float(p)


def sm_lag(y: np.ndarray, x: np.ndarray, maxlag: int | None, autolag: str | None) -> int:
    """Lag statsmodels' coint uses: adfuller on the first-stage residuals."""
    design = np.column_stack([x, np.ones_like(x)])
    resid = y - design @ np.linalg.lstsq(design, y, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # log(0) of an exact fit
        res = adfuller(resid, maxlag=maxlag, regression="n", autolag=autolag, result_object=True)
    return int(res.lags)


def assert_matches(
    frame: pd.DataFrame,
    result: pd.DataFrame,
    maxlag: int | None = None,
    autolag: str | None = "aic",
    check_lags: bool = True,
) -> None:
    ref = [
        sm_coint(frame[y].to_numpy(), frame[x].to_numpy(), maxlag=maxlag, autolag=autolag)
        for y, x in zip(result["y"], result["x"], strict=True)
    ]
    t_ref = np.array([r[0] for r in ref])
    p_ref = np.array([r[1] for r in ref])
    np.testing.assert_allclose(result["tstat"], t_ref, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(result["pvalue"], p_ref, rtol=0, atol=ATOL)
    if check_lags:
        finite = np.isfinite(t_ref)
        lag_ref = [
            sm_lag(frame[y].to_numpy(), frame[x].to_numpy(), maxlag, autolag)
            for y, x in zip(result["y"][finite], result["x"][finite], strict=True)
        ]
        assert result["lags"][finite].tolist() == lag_ref


# --------------------------------------------------------------------------------------
# Agreement with statsmodels
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "seed", "k"), [(500, 2, 4), (250, 3, 4), (120, 4, 4), (60, 5, 4), (41, 6, 4)]
)
def test_scan_matches_coint(n: int, seed: int, k: int) -> None:
    frame = panel(n, seed, k)
    assert_matches(frame, scan(frame))


@pytest.mark.parametrize("seed", [0, 1])
def test_scan_matches_coint_at_1500_bars(seed: int) -> None:
    frame = panel(1500, seed, k=2)
    result = scan(frame)  # all 12 ordered pairs, checked on 6 (statsmodels is slow here)
    assert_matches(frame, result.iloc[seed::2])


@pytest.mark.parametrize("n", [*range(3, 41), 47, 64, 99, 100, 101])
def test_short_series_match_coint(n: int) -> None:
    frame = panel(n, seed=100 + n, k=2)
    assert_matches(frame, scan(frame))


@pytest.mark.parametrize("autolag", ["bic", "t-stat", None, "AIC"])
@pytest.mark.parametrize("n", [30, 300])
def test_autolag_variants_match_coint(autolag: str | None, n: int) -> None:
    frame = panel(n, seed=7)
    sm_autolag = autolag.lower() if autolag else None
    assert_matches(frame, scan(frame, autolag=autolag), autolag=sm_autolag)


@pytest.mark.parametrize(
    ("maxlag", "autolag"),
    [(m, a) for m in (0, 1, 3, 11, 24, 45) for a in ("aic", None)] + [(149, None)],
)
def test_explicit_maxlag_matches_coint(maxlag: int, autolag: str | None) -> None:
    frame = panel(300, seed=8, k=2)
    pairs = [("C", "W0"), ("W0", "C"), ("U", "W1"), ("W1", "W0")]
    result = scan(frame, maxlag=maxlag, autolag=autolag, pairs=pairs)
    assert_matches(frame, result, maxlag=maxlag, autolag=autolag)
    if autolag is None:
        assert (result["lags"] == maxlag).all()


def test_near_unit_root_and_overdifferenced_spreads() -> None:
    rng = np.random.default_rng(11)
    n = 500
    x = np.cumsum(rng.normal(scale=0.02, size=n)) + 3.0
    cols = {"x": x}
    for name, phi in [("phi_0999", 0.999), ("phi_0990", 0.99), ("phi_m09", -0.9)]:
        e = np.zeros(n)
        for t in range(1, n):
            e[t] = phi * e[t - 1] + rng.normal(scale=0.01)
        cols[name] = 0.6 * x + e
    cols["ma"] = x + np.diff(rng.normal(scale=0.01, size=n + 1))  # unit MA root in the spread
    frame = pd.DataFrame(cols)
    pairs = [(c, "x") for c in frame.columns[1:]] + [("x", c) for c in frame.columns[1:]]
    assert_matches(frame, scan(frame, pairs=pairs))


def test_collinear_pairs_give_minus_inf_and_zero_like_statsmodels() -> None:
    rng = np.random.default_rng(12)
    x = np.cumsum(rng.normal(scale=0.02, size=400)) + 4.0
    frame = pd.DataFrame(
        {
            "x": x,
            "exact": 2.0 * x - 1.0,
            "scaled": x * (1 + 1e-7),
            "tiny_noise": x + rng.normal(scale=1e-7, size=400),
            "noisy": x + rng.normal(scale=0.01, size=400),
        }
    )
    result = scan(frame)
    with pytest.warns(CollinearityWarning):
        t_sm, p_sm, _ = coint(frame["exact"], frame["x"])
    assert (t_sm, p_sm) == (-np.inf, 0.0)
    collinear = result[(result["y"] != "noisy") & (result["x"] != "noisy")]
    assert np.isneginf(collinear["tstat"]).all()
    assert (collinear["pvalue"] == 0.0).all()
    assert (collinear["lags"] == -1).all()
    assert_matches(frame, result, check_lags=False)


def test_almost_collinear_pair_just_below_the_bound_matches() -> None:
    """R^2 just under 1 - 100 sqrt(eps): the sums cancel hard and must be recomputed exactly."""
    rng = np.random.default_rng(13)
    x = np.cumsum(rng.normal(scale=0.02, size=300)) + 4.0
    bound = 100 * np.sqrt(np.finfo(float).eps)
    noise = rng.normal(size=300)
    frames = {
        f: pd.DataFrame({"y": x + noise * np.std(x) * np.sqrt(bound) * f, "x": x})
        for f in (0.98, 1.05, 2.0, 30.0)
    }
    for frame in frames.values():
        assert_matches(frame, scan(frame, pairs=[("y", "x")]))


@pytest.mark.parametrize("noise", [1e-3, 1e-5])
def test_smooth_series_with_ill_conditioned_lags(noise: float) -> None:
    """Almost deterministic series make the lagged differences nearly collinear (condition
    numbers up to ~1e12): those pairs must leave the normal equations for explicit designs."""
    rng = np.random.default_rng(26)
    t = np.arange(400)
    frame = pd.DataFrame(
        {
            "sin": np.sin(0.07 * t) + noise * rng.normal(size=400) + 3,
            "sin2": 0.5 * np.sin(0.07 * t + 1) + np.sin(0.011 * t) + noise * rng.normal(size=400),
            "rw": np.cumsum(rng.normal(scale=0.02, size=400)),
        }
    )
    assert_matches(frame, scan(frame))
    ref = [adfuller(frame[c], autolag="AIC", result_object=True).pvalue for c in frame]
    np.testing.assert_allclose(adf_pvalues(frame).to_numpy(), ref, rtol=0, atol=ATOL)


def test_constant_legs() -> None:
    rng = np.random.default_rng(14)
    frame = pd.DataFrame({"w": np.cumsum(rng.normal(size=200)), "flat": np.full(200, 2.5)})
    result = scan(frame).set_index(["y", "x"])
    # constant x: statsmodels tests the demeaned y
    row = result.loc[("w", "flat")]
    t_sm, p_sm = sm_coint(frame["w"].to_numpy(), frame["flat"].to_numpy())
    assert row["tstat"] == pytest.approx(t_sm, abs=ATOL)
    assert row["pvalue"] == pytest.approx(p_sm, abs=ATOL)
    assert row["beta"] == 0.0
    assert row["alpha"] == pytest.approx(frame["w"].mean())
    # constant y: statsmodels tests its rounding noise; we report NaN
    assert np.isnan(result.loc[("flat", "w"), ["tstat", "pvalue"]].astype(float)).all()


def test_constant_leg_whose_mean_is_inexact() -> None:
    """mean(full(29, v)) != v for this v: the centred column must still be exactly flat."""
    value = 0.6369616873214543
    assert np.full(29, value).mean() != value
    rng = np.random.default_rng(25)
    frame = pd.DataFrame({"w": np.cumsum(rng.normal(size=29)), "flat": np.full(29, value)})
    result = scan(frame).set_index(["y", "x"])
    assert np.isnan(result.loc[("flat", "w"), "tstat"])
    assert result.loc[("w", "flat"), "beta"] == 0.0
    t_sm, _ = sm_coint(frame["w"].to_numpy(), frame["flat"].to_numpy())
    assert result.loc[("w", "flat"), "tstat"] == pytest.approx(t_sm, abs=ATOL)
    assert np.isnan(adf_pvalues(frame)["flat"])


def test_pairs_subset_in_given_order_with_duplicates() -> None:
    frame = panel(400, seed=15)
    pairs = [("C", "W0"), ("W0", "C"), ("U", "W1"), ("C", "W0"), ("W3", "W2")]
    result = scan(frame, pairs=pairs)
    assert list(zip(result["y"], result["x"], strict=True)) == pairs
    assert_matches(frame, result)
    full = scan(frame).set_index(["y", "x"])
    for col in ["tstat", "pvalue", "beta", "alpha", "lags"]:
        np.testing.assert_allclose(
            result[col].to_numpy(dtype=float),
            full.loc[pairs, col].to_numpy(dtype=float),
            rtol=1e-12,
            atol=1e-12,
        )


def test_slow_paths_match_statsmodels(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-pair residual path and the explicit pseudo-inverse path, forced."""
    frame = panel(300, seed=16)
    fast = scan(frame)
    monkeypatch.setattr(pc, "_PANEL_MAX_BYTES", 0)
    direct = scan(frame)
    np.testing.assert_allclose(direct["tstat"], fast["tstat"], rtol=1e-12, atol=1e-12)
    assert direct["lags"].tolist() == fast["lags"].tolist()
    monkeypatch.setattr(pc, "_AMPLIFICATION_BUDGET", 0.0)
    explicit = scan(frame, pairs=[("C", "W0"), ("U", "W1"), ("W2", "W3")])
    assert_matches(frame, explicit)
    monkeypatch.setattr(pc, "_PANEL_MAX_BYTES", 256 * 2**20)
    assert_matches(frame, scan(frame, pairs=[("W1", "U"), ("W3", "C")], autolag="t-stat"),
                   autolag="t-stat")


# --------------------------------------------------------------------------------------
# Invariants of the output
# --------------------------------------------------------------------------------------


def test_all_ordered_pairs_once_in_column_order() -> None:
    frame = panel(200, seed=17, k=5)
    result = scan(frame)
    names = list(frame.columns)
    assert list(zip(result["y"], result["x"], strict=True)) == list(permutations(names, 2))
    assert (result["y"] != result["x"]).all()
    assert list(result.columns) == ["y", "x", "beta", "alpha", "tstat", "pvalue", "lags", "nobs"]
    assert result.index.equals(pd.RangeIndex(len(names) * (len(names) - 1)))
    assert (result["nobs"] == 200).all()
    assert result["lags"].dtype == np.int64
    assert ((result["pvalue"] >= 0) & (result["pvalue"] <= 1)).all()


def test_beta_alpha_are_ols_of_y_on_x_with_constant() -> None:
    frame = panel(300, seed=18)
    result = scan(frame, pairs=[("C", "W0"), ("W2", "U")])
    for _, row in result.iterrows():
        slope, intercept = np.polyfit(frame[row["x"]], frame[row["y"]], 1)
        assert row["beta"] == pytest.approx(slope, rel=1e-10)
        assert row["alpha"] == pytest.approx(intercept, rel=1e-10, abs=1e-10)
    assert result["beta"].iloc[0] == pytest.approx(1.3, abs=0.05)


def test_chunking_and_threads_do_not_change_results() -> None:
    frame = panel(250, seed=19, k=6)
    base = scan(frame, n_jobs=1)
    for chunk_size, n_jobs in [(1, 1), (7, 2), (1000, 2), (13, -1)]:
        other = scan(frame, chunk_size=chunk_size, n_jobs=n_jobs)
        pd.testing.assert_frame_equal(other, base, check_exact=False, rtol=1e-12, atol=1e-12)


def test_empty_pairs_list() -> None:
    result = scan(panel(100, seed=20), pairs=[])
    assert len(result) == 0
    assert list(result.columns) == ["y", "x", "beta", "alpha", "tstat", "pvalue", "lags", "nobs"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    scale=st.floats(0.05, 20.0),
    shift=st.floats(-50.0, 50.0),
)
def test_affine_maps_of_a_leg_leave_the_test_unchanged(
    seed: int, scale: float, shift: float
) -> None:
    """Residuals of y on (a + b x) do not depend on a, b; scaling y scales them (t unchanged)."""
    frame = panel(120, seed=seed, k=2)
    moved = frame.copy()
    moved["W0"] = scale * frame["W0"] + shift
    moved["C"] = scale * frame["C"] - shift
    pairs = [("C", "W0"), ("W0", "C"), ("U", "W0"), ("C", "W1")]
    before, after = scan(frame, pairs=pairs), scan(moved, pairs=pairs)
    np.testing.assert_allclose(after["tstat"], before["tstat"], rtol=1e-8, atol=1e-8)
    assert after["lags"].tolist() == before["lags"].tolist()
    np.testing.assert_allclose(after["beta"].iloc[0], before["beta"].iloc[0], rtol=1e-9)


# --------------------------------------------------------------------------------------
# adf_pvalues and mackinnon_pvalue
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "seed"), [(1500, 0), (400, 1), (60, 2), (25, 3), (9, 4), (4, 5)])
def test_adf_pvalues_match_adfuller(n: int, seed: int) -> None:
    frame = panel(n, seed)
    frame["level"] = frame["W0"] + 10.0  # large level, tiny variance: needs centring
    result = adf_pvalues(frame)
    assert list(result.index) == list(frame.columns)
    assert result.name == "pvalue"
    ref = [adfuller(frame[c], autolag="AIC", result_object=True).pvalue for c in frame]
    np.testing.assert_allclose(result.to_numpy(), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize(("maxlag", "autolag"), [(0, "aic"), (5, None), (12, "bic"), (8, "t-stat")])
def test_adf_pvalues_options_match_adfuller(maxlag: int, autolag: str | None) -> None:
    frame = panel(200, seed=21)
    result = adf_pvalues(frame, maxlag=maxlag, autolag=autolag)
    ref = [
        adfuller(frame[c], maxlag=maxlag, autolag=autolag, result_object=True).pvalue
        for c in frame
    ]
    np.testing.assert_allclose(result.to_numpy(), ref, rtol=0, atol=ATOL)


def test_adf_pvalues_constant_column_is_nan() -> None:
    frame = panel(100, seed=22, k=2)
    frame["flat"] = 1.0
    result = adf_pvalues(frame)
    assert np.isnan(result["flat"])
    assert np.isfinite(result.drop("flat")).all()


def test_mackinnon_pvalue_matches_statsmodels() -> None:
    grid = np.concatenate(
        [np.linspace(-25, 5, 601), [-np.inf, np.inf, -18.86, -18.83, -2.62, -1.61, 0.92, 2.74]]
    )
    for n_vars in range(1, 7):
        ours = mackinnon_pvalue(grid, n_vars)
        ref = [mackinnonp(t, regression="c", N=n_vars) for t in grid]
        np.testing.assert_array_equal(ours, ref)
    assert np.isnan(mackinnon_pvalue(np.nan))
    assert mackinnon_pvalue(np.array([[-3.0]])).shape == (1, 1)
    with pytest.raises(ConfigError):
        mackinnon_pvalue(-3.0, n_vars=7)


# --------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------


def test_bad_data_is_rejected() -> None:
    frame = panel(100, seed=23, k=2)
    with_nan = frame.copy()
    with_nan.iloc[5, 1] = np.nan
    with pytest.raises(DataError, match="W1"):
        scan(with_nan)
    with pytest.raises(DataError, match="duplicate"):
        scan(frame.rename(columns={"W1": "W0"}))
    with pytest.raises(DataError, match="too few"):
        scan(frame.iloc[:1])
    with pytest.raises(DataError, match="too few"):
        adf_pvalues(frame.iloc[:3])
    with pytest.raises(DataError):
        scan(frame.to_numpy())  # type: ignore[arg-type]


def test_bad_arguments_are_rejected() -> None:
    frame = panel(100, seed=24, k=2)
    with pytest.raises(ConfigError, match="maxlag"):
        scan(frame, maxlag=50)
    with pytest.raises(ConfigError, match="maxlag"):
        scan(frame, maxlag=-1)
    with pytest.raises(ConfigError, match="maxlag"):
        adf_pvalues(frame, maxlag=49)
    with pytest.raises(ConfigError, match="autolag"):
        scan(frame, autolag="hqic")
    with pytest.raises(ConfigError, match="unknown"):
        scan(frame, pairs=[("W0", "nope")])
    with pytest.raises(ConfigError, match="differ"):
        scan(frame, pairs=[("W0", "W0")])
    with pytest.raises(ConfigError, match="chunk_size"):
        scan(frame, chunk_size=0)
    with pytest.raises(ConfigError, match="n_jobs"):
        scan(frame, n_jobs=0)
