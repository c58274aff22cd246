"""Performance metrics and overfitting statistics (``pairlib.core.metrics``): values computed by
hand, and the deflated Sharpe ratio against the paper's worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairlib.core.metrics import (
    bars_per_year,
    deflated_sharpe,
    drawdowns,
    expected_max_sharpe,
    performance,
    probability_of_backtest_overfitting,
    returns_of,
)

H4 = 4 * 3_600_000


def test_a_year_of_4h_bars_is_2190() -> None:
    assert bars_per_year(H4) == 2190.0
    assert bars_per_year(24 * 3_600_000) == 365.0
    with pytest.raises(ValueError):
        bars_per_year(0)


def test_metrics_of_a_small_curve_computed_by_hand() -> None:
    equity = [100.0, 110.0, 99.0, 108.9, 130.68]
    # Returns: +10%, -10%, +10%, +20%.
    r = returns_of(equity)
    np.testing.assert_allclose(r, [0.1, -0.1, 0.1, 0.2])
    p = performance(equity, H4)
    assert p.total_return == pytest.approx(0.3068)
    assert p.annual_return == pytest.approx(1.3068 ** (2190 / 4) - 1)
    mean, sd = 0.075, math.sqrt(((0.025**2) + (0.175**2) + (0.025**2) + (0.125**2)) / 3)
    assert p.sharpe == pytest.approx(mean / sd * math.sqrt(2190))
    downside = math.sqrt(0.01 / 4)  # only the -10% bar counts, over all 4 bars
    assert p.sortino == pytest.approx(mean / downside * math.sqrt(2190))
    assert p.max_drawdown == pytest.approx(-0.1)  # 110 -> 99
    assert p.max_drawdown_bars == 2  # 99 and 108.9 are both below the 110 peak
    assert p.calmar == pytest.approx(p.annual_return / 0.1)


def test_drawdown_duration_is_the_longest_run_under_a_peak() -> None:
    assert drawdowns([1, 2, 1.5, 1.8, 1.9, 2.1, 2.0, 2.2]) == (pytest.approx(-0.25), 3)
    assert drawdowns([1, 2, 3]) == (0.0, 0)


def test_deflated_sharpe_matches_the_papers_worked_example() -> None:
    """Bailey & López de Prado (2014), section "A numerical example": N = 100 trials, an
    annualized variance of Sharpe ratios across trials of 1/2, the best trial's annualized
    Sharpe 2.5 over T = 1,250 daily observations (250 a year), skewness -3 and kurtosis 10:
    E[max SR] = 0.1132 per day and DSR = 0.9004."""
    per_day = 250
    sr0 = expected_max_sharpe(100, 0.5 / per_day)
    assert sr0 == pytest.approx(0.1132, abs=5e-5)
    dsr = deflated_sharpe(2.5 / math.sqrt(per_day), 1250, -3.0, 10.0, 100, 0.5 / per_day)
    assert dsr == pytest.approx(0.9004, abs=1e-3)
    # One trial, no selection: the probabilistic Sharpe against 0 is higher.
    assert deflated_sharpe(2.5 / math.sqrt(per_day), 1250, -3.0, 10.0, 1, 0.5 / per_day) > dsr


def test_pbo_is_about_a_half_for_noise_and_zero_for_a_real_edge() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 0.01, size=(800, 40))
    assert 0.25 <= probability_of_backtest_overfitting(noise, n_splits=10) <= 0.75
    edge = noise.copy()
    edge[:, 3] += 0.004  # one trial really is better, in every period
    assert probability_of_backtest_overfitting(edge, n_splits=10) == 0.0


def test_pbo_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="even"):
        probability_of_backtest_overfitting(np.zeros((100, 3)), n_splits=5)
    with pytest.raises(ValueError, match="too few"):
        probability_of_backtest_overfitting(np.zeros((10, 3)), n_splits=8)
