"""Property tests (hypothesis) for the crisp rules of the pure core.

* the rolling z-score (:func:`pairlib.core.strategy.zscore`): invariant under a shift and a
  positive scale of the spread, odd under a sign flip, each value a function of its own
  window only, NaN exactly where the window is short or holds a NaN;
* the strategy rule (:func:`~pairlib.core.strategy.step`, :func:`~pairlib.core.strategy.positions`):
  the batch fold equals the bar-by-bar one, an entry happens only with
  ``entry <= |z| < stop``, a stop wins over an exit, no bar both closes and enters, a stop
  locks the pair out until ``|z| < entry``, NaN never enters and never closes;
* the portfolio plan (:func:`pairlib.core.portfolio.plan`): never more open pairs than
  ``max_positions``, the gross cap respected after the bar's closes, no symbol in two
  positions, and exits and stops never blocked by slots, caps, blocked symbols or the kill
  switch;
* sizing (:func:`pairlib.core.risk.size_pair`): the loss from the entry z to the stop z is at
  most the risk budget, and within one amount step of it when no cap binds; amounts are whole
  steps above the market's minimums; x is beta times y's rounded notional, never more; caps
  hold.

The budget is modest (``max_examples`` 150, no deadline) so the file runs in seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pairlib.config import RiskParams, StrategyParams
from pairlib.core.portfolio import Book, PairView, plan
from pairlib.core.risk import MarketRules, round_amount, size_pair
from pairlib.core.strategy import Action, PairState, latest_signal, positions, step, zscore

PROPS = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
REL = 1e-9  # float tolerance the sizing promises (see risk.round_amount)


# ----------------------------------------------------------------------------- z-score

values = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False, allow_infinity=False)


@st.composite
def spreads(draw: st.DrawFn, min_size: int = 3) -> tuple[np.ndarray, int]:
    """A spread whose every window has a clear dispersion, and a lookback."""
    lookback = draw(st.integers(min_value=2, max_value=12))
    n = draw(st.integers(min_value=max(min_size, lookback), max_value=40))
    s = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    windows = np.lib.stride_tricks.sliding_window_view(s, lookback)
    assume(bool((windows.std(axis=1, ddof=1) > 1e-3).all()))
    return s, lookback


def _manual_z(s: np.ndarray, lookback: int) -> np.ndarray:
    out = np.full(s.size, np.nan)
    for t in range(lookback - 1, s.size):
        w = s[t - lookback + 1:t + 1]
        out[t] = (s[t] - w.mean()) / w.std(ddof=1)
    return out


@PROPS
@given(spreads())
def test_zscore_is_the_window_formula(case: tuple[np.ndarray, int]) -> None:
    s, lookback = case
    z = zscore(s, lookback)
    assert np.isnan(z[:lookback - 1]).all()
    np.testing.assert_allclose(z[lookback - 1:], _manual_z(s, lookback)[lookback - 1:],
                               rtol=1e-7, atol=1e-7)
    zl, sd = latest_signal(s, lookback)
    assert zl == z[-1]  # the traded value is the batch's last value, to the bit
    assert sd == pytest.approx(float(np.std(s[-lookback:], ddof=1)), rel=1e-12)


@PROPS
@given(spreads(), st.floats(min_value=-1e3, max_value=1e3),
       st.floats(min_value=1e-2, max_value=1e2))
def test_zscore_is_shift_and_scale_invariant_and_odd(
    case: tuple[np.ndarray, int], shift: float, scale: float
) -> None:
    s, lookback = case
    z = zscore(s, lookback)
    np.testing.assert_allclose(zscore(s + shift, lookback), z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(zscore(s * scale, lookback), z, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(zscore(-s, lookback), -z, rtol=1e-9, atol=1e-9)


@PROPS
@given(spreads(min_size=6), st.data())
def test_zscore_depends_only_on_its_window(case: tuple[np.ndarray, int], data: st.DataObject
                                           ) -> None:
    s, lookback = case
    t = data.draw(st.integers(min_value=lookback - 1, max_value=s.size - 1))
    changed = s.copy()
    outside = [i for i in range(s.size) if not t - lookback < i <= t]
    for i in outside:
        changed[i] = data.draw(values)
    assert zscore(changed, lookback)[t] == pytest.approx(zscore(s, lookback)[t], abs=1e-9)


@PROPS
@given(spreads(min_size=4), st.data())
def test_a_nan_spoils_exactly_the_windows_holding_it(case: tuple[np.ndarray, int],
                                                      data: st.DataObject) -> None:
    s, lookback = case
    i = data.draw(st.integers(min_value=0, max_value=s.size - 1))
    bad = s.copy()
    bad[i] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    z, z0 = zscore(bad, lookback), zscore(s, lookback)
    spoilt = np.zeros(s.size, dtype=bool)
    spoilt[i:i + lookback] = True
    assert np.isnan(z[spoilt]).all()
    np.testing.assert_array_equal(z[~spoilt], z0[~spoilt])


def test_flat_spread_gives_nan_not_an_entry() -> None:
    """A window of equal values has no dispersion: z is NaN, so the rule never enters."""
    z = zscore(np.full(10, 123.456), 5)
    assert np.isnan(z).all()
    assert (positions(z) == 0).all()


# ----------------------------------------------------------------------------- strategy


@st.composite
def thresholds(draw: st.DrawFn) -> tuple[float, float, float]:
    """``0 <= exit < entry < stop``."""
    exit_ = draw(st.floats(min_value=0.0, max_value=2.0))
    entry = exit_ + draw(st.floats(min_value=0.05, max_value=2.0))
    stop = entry + draw(st.floats(min_value=0.05, max_value=3.0))
    return entry, exit_, stop


zs = st.one_of(st.floats(min_value=-6.0, max_value=6.0), st.just(math.nan))
states = st.sampled_from([PairState(0), PairState(0, True), PairState(1), PairState(-1)])


@PROPS
@given(thresholds(), st.lists(zs, min_size=1, max_size=60))
def test_positions_fold_step_and_stay_in_range(th: tuple[float, float, float],
                                               path: list[float]) -> None:
    entry, exit_, stop = th
    batch = positions(path, entry, exit_, stop)
    state = PairState()
    for t, z in enumerate(path):
        d = step(state, z, entry, exit_, stop)
        assert d.position == batch[t] == d.state.position
        assert d.position in (-1, 0, 1)
        assert d.reason
        state = d.state


@PROPS
@given(thresholds(), states, zs)
def test_one_bar_obeys_every_rule(th: tuple[float, float, float], state: PairState,
                                  z: float) -> None:
    entry, exit_, stop = th
    d = step(state, z, entry, exit_, stop)
    if d.action.is_entry:  # only from flat, never beyond the stop, never while locked out
        assert state.position == 0 and not state.locked_out
        assert entry <= abs(z) < stop
        assert d.position == (-1 if z > 0 else 1)
    if state.position != 0:
        assert not d.action.is_entry  # no bar both closes and (re-)enters
        beyond_stop = (z >= stop) if state.position < 0 else (z <= -stop)
        reverted = (z <= exit_) if state.position < 0 else (z >= -exit_)
        if math.isnan(z):
            assert d.action == Action.HOLD and d.position == state.position
        elif beyond_stop:  # a stop wins over an exit
            assert d.action == Action.STOP and d.position == 0 and d.state.locked_out
        elif reverted:
            assert d.action == Action.EXIT and d.position == 0 and not d.state.locked_out
        else:
            assert d.action == Action.HOLD and d.position == state.position
    else:
        assert d.action in (Action.NONE, Action.ENTER_LONG, Action.ENTER_SHORT)
        if math.isnan(z):
            assert d.action == Action.NONE and d.state == state  # a lockout stays
        elif state.locked_out:
            assert d.action == Action.NONE
            assert d.state.locked_out == (abs(z) >= entry)


# ----------------------------------------------------------------------------- sizing

steps = st.sampled_from([0.001, 0.01, 0.1, 1.0, 10.0])


@st.composite
def sizing_cases(draw: st.DrawFn) -> dict[str, object]:
    entry = draw(st.floats(min_value=0.5, max_value=3.0))
    stop = entry + draw(st.floats(min_value=0.1, max_value=4.0))
    side = draw(st.sampled_from([1.0, -1.0]))
    z = side * draw(st.floats(min_value=entry, max_value=stop - 0.05))
    risk = RiskParams(
        risk_per_trade=draw(st.floats(min_value=1e-4, max_value=0.1)),
        max_positions=5,
        max_gross_leverage=draw(st.floats(min_value=0.1, max_value=20.0)),
        max_leg_notional=draw(st.floats(min_value=10.0, max_value=1e6)),
    )
    rules = [MarketRules(f"S{i}/USDT:USDT", draw(steps), draw(st.sampled_from([0.0, 0.001, 1.0])),
                         draw(st.sampled_from([0.0, 5.0, 100.0])),
                         draw(st.sampled_from([1.0, 1.0, 0.1, 10.0]))) for i in range(2)]
    return {
        "equity": draw(st.floats(min_value=10.0, max_value=1e7)),
        "z_entry": z, "stop_z": side * stop,
        "spread_std": draw(st.floats(min_value=1e-4, max_value=0.5)),
        "beta": draw(st.floats(min_value=0.05, max_value=20.0)),
        "price_y": draw(st.floats(min_value=1e-3, max_value=1e5)),
        "price_x": draw(st.floats(min_value=1e-3, max_value=1e5)),
        "rules_y": rules[0], "rules_x": rules[1], "risk": risk,
        "open_gross_notional": draw(st.one_of(st.just(0.0),
                                              st.floats(min_value=0.0, max_value=1e7))),
    }


def _is_whole_steps(amount: float, step: float) -> bool:
    q = amount / step
    return abs(q - round(q)) <= 1e-6 * max(1.0, q)


@PROPS
@given(sizing_cases())
def test_sizing_never_risks_more_than_the_budget(case: dict[str, object]) -> None:
    s = size_pair(**case)  # type: ignore[arg-type]
    risk: RiskParams = case["risk"]  # type: ignore[assignment]
    equity, beta = float(case["equity"]), float(case["beta"])  # type: ignore[arg-type]
    ry: MarketRules = case["rules_y"]  # type: ignore[assignment]
    rx: MarketRules = case["rules_x"]  # type: ignore[assignment]
    py, px = float(case["price_y"]), float(case["price_x"])  # type: ignore[arg-type]
    move = abs(float(case["stop_z"]) - float(case["z_entry"])) * float(  # type: ignore[arg-type]
        case["spread_std"])  # type: ignore[arg-type]
    budget = risk.risk_per_trade * equity
    if s.skipped:
        assert (s.amount_y, s.amount_x, s.risk_amount) == (0.0, 0.0, 0.0)
        return
    # The loss from the entry z to the stop z is what is reported, and within the budget.
    assert s.risk_amount == pytest.approx(s.notional_y * move, rel=1e-12)
    assert s.risk_amount <= budget * (1 + REL)
    # Whole steps, at least the minimums, the notional as reported.
    for amount, notional, price, r in ((s.amount_y, s.notional_y, py, ry),
                                       (s.amount_x, s.notional_x, px, rx)):
        assert amount > 0 and _is_whole_steps(amount, r.amount_step)
        assert amount >= r.min_amount and notional >= r.min_notional * (1 - REL)
        assert notional == pytest.approx(amount * r.contract_size * price, rel=1e-12)
    # x hedges y's rounded notional and is floored: never more than beta times it.
    assert s.notional_x <= beta * s.notional_y * (1 + REL)
    assert beta * s.notional_y - s.notional_x <= px * rx.contract_size * rx.amount_step * (
        1 + REL) + 1e-9
    # Caps.
    open_gross = float(case["open_gross_notional"])  # type: ignore[arg-type]
    assert open_gross + s.gross_notional <= risk.max_gross_leverage * equity * (1 + REL)
    assert max(s.notional_y, s.notional_x) <= risk.max_leg_notional * (1 + REL)
    if s.capped_by is None:  # flooring y loses less than one step of the budget
        one_step = py * ry.contract_size * ry.amount_step * move
        assert budget - s.risk_amount <= one_step * (1 + REL) + 1e-9 * budget


@PROPS
@given(st.floats(min_value=0.0, max_value=1e6), steps)
def test_rounding_floors_to_whole_steps(amount: float, step: float) -> None:
    r = MarketRules("A/USDT:USDT", step, 0.0, 0.0)
    out = round_amount(amount, r)
    # Never rounds risk up, but for float error: a quotient within max(1e-9, 4 q 2^-52)
    # steps below an integer counts as that integer (risk.round_amount).
    tol = max(1e-9, 4.0 * (amount / step) * 2.0**-52) * step
    assert out <= amount + tol * (1 + 1e-9)
    assert amount - out < step * (1 + 1e-9)
    assert out == 0.0 or _is_whole_steps(out, step)


# ----------------------------------------------------------------------------- portfolio

SYMBOLS = [f"S{i}/USDT:USDT" for i in range(8)]


@st.composite
def books(draw: st.DrawFn) -> tuple[list[PairView], Book, StrategyParams, RiskParams]:
    strategy = StrategyParams(lookback=60, entry=1.0, exit=0.5, stop=3.0)
    risk = RiskParams(
        risk_per_trade=draw(st.floats(min_value=0.001, max_value=0.1)),
        max_positions=draw(st.integers(min_value=1, max_value=4)),
        max_gross_leverage=draw(st.floats(min_value=0.5, max_value=5.0)),
        max_leg_notional=draw(st.floats(min_value=100.0, max_value=1e5)),
    )
    prices = {s: draw(st.floats(min_value=0.5, max_value=2000.0)) for s in SYMBOLS}
    rules = {s: MarketRules(s, 0.001, 0.0, 0.0) for s in SYMBOLS}
    n = draw(st.integers(min_value=1, max_value=7))
    pairs: list[PairView] = []
    used_by_held: set[str] = set()
    for i in range(n):
        y, x = draw(st.lists(st.sampled_from(SYMBOLS), min_size=2, max_size=2, unique=True))
        state = draw(st.sampled_from([PairState(0), PairState(0), PairState(0),
                                      PairState(0, True), PairState(1), PairState(-1)]))
        if state.position != 0 and (y in used_by_held or x in used_by_held):
            state = PairState()  # one held pair per symbol (the book the tick keeps)
        amounts = (0.0, 0.0)
        if state.position != 0:
            used_by_held.update((y, x))
            amounts = (state.position * draw(st.floats(min_value=0.01, max_value=1.0)),
                       -state.position * draw(st.floats(min_value=0.01, max_value=1.0)))
        z = draw(st.one_of(st.floats(min_value=0.9, max_value=3.2),
                           st.floats(min_value=-3.2, max_value=-0.9),
                           st.floats(min_value=-5.0, max_value=5.0), st.just(math.nan)))
        problem = draw(st.sampled_from([None, None, None, "leg dropped from the data"]))
        pairs.append(PairView(f"P{i}:{y}~{x}", y, x, beta=draw(st.floats(0.2, 5.0)), alpha=0.0,
                              state=state, amounts=amounts, z=z,
                              spread_std=draw(st.floats(min_value=0.005, max_value=0.2)),
                              in_set=draw(st.sampled_from([True, True, True, False])),
                              problem=problem,
                              unevaluable_before=draw(st.integers(0, 2))))
    held_gross = sum(abs(a) * prices[s] for p in pairs for a, s in zip(p.amounts, (p.y, p.x),
                                                                          strict=True))
    book = Book(
        equity=draw(st.floats(min_value=5_000.0, max_value=1e6)),
        gross_notional=held_gross,
        prices=prices, rules=rules,
        blocked=frozenset(draw(st.lists(st.sampled_from(SYMBOLS), max_size=2))),
        entries_allowed=draw(st.sampled_from([True, True, True, False])),
        exits_only_why="kill switch on",
    )
    return pairs, book, strategy, risk


def _closing_now(pr: PairView, strategy: StrategyParams) -> Action | None:
    """The close the strategy orders for a held, evaluable pair at its z (else None)."""
    if pr.state.position == 0 or pr.problem is not None or math.isnan(pr.z):
        return None
    d = step(pr.state, pr.z, strategy.entry, strategy.exit, strategy.stop)
    return d.action if d.action in (Action.EXIT, Action.STOP) else None


@PROPS
@given(books())
def test_plan_respects_slots_caps_symbols_and_never_blocks_exits(
    case: tuple[list[PairView], Book, StrategyParams, RiskParams]
) -> None:
    pairs, book, strategy, risk = case
    p = plan(pairs, book, strategy, risk)
    by_id = {pr.pair_id: pr for pr in pairs}
    closed = {c.pair_id for c in (*p.closes, *p.flattens)}
    entered = [e.pair_id for e in p.entries]
    # Every pair gets exactly one outcome.
    outcomes = [*closed, *entered, *(s.pair_id for s in p.skips)]
    assert sorted(outcomes) == sorted(by_id)
    # Exits and stops are never blocked: not by slots, caps, blocked symbols or the switch.
    for pr in pairs:
        want = _closing_now(pr, strategy)
        if want is not None:
            assert p.action_of(pr.pair_id) == want, (pr, p)
    # Entries: only allowed ones, in the set, from flat, within the slots.
    if entered:
        assert book.entries_allowed
    still_open = [pr for pr in pairs if pr.state.position != 0 and pr.pair_id not in closed]
    assert len(entered) == 0 or len(still_open) + len(entered) <= risk.max_positions
    symbols_in_use = {s for pr in still_open for s in (pr.y, pr.x)}
    taken: set[str] = set()
    gross = book.gross_notional - sum(
        abs(a) * book.prices[s] for pr in pairs if pr.pair_id in closed
        for a, s in zip(pr.amounts, (pr.y, pr.x), strict=True))
    for e in p.entries:
        pr = by_id[e.pair_id]
        assert pr.in_set and pr.problem is None and pr.state.position == 0
        assert strategy.entry <= abs(pr.z) < strategy.stop
        for s in (pr.y, pr.x):
            assert s not in book.blocked and s not in symbols_in_use and s not in taken
            taken.add(s)
        gross += e.sizing.gross_notional
        assert e.sizing.risk_amount <= risk.risk_per_trade * book.equity * (1 + REL)
    if entered:  # the gross cap holds after the bar's closes and entries
        assert gross <= risk.max_gross_leverage * book.equity * (1 + 1e-6)
    # A skipped entry says why.
    for s in p.skips:
        assert s.reason


@PROPS
@given(books())
def test_kill_switch_keeps_every_exit_and_takes_no_entry(
    case: tuple[list[PairView], Book, StrategyParams, RiskParams]
) -> None:
    pairs, book, strategy, risk = case
    off = Book(book.equity, book.gross_notional, book.prices, book.rules, book.blocked,
               entries_allowed=False, exits_only_why="kill switch on")
    tight = RiskParams(risk_per_trade=risk.risk_per_trade, max_positions=1,
                       max_gross_leverage=0.01, max_leg_notional=risk.max_leg_notional)
    free = plan(pairs, book, strategy, risk)
    for b, r in ((off, risk), (off, tight), (book, tight)):
        p = plan(pairs, b, strategy, r)
        assert {c.pair_id for c in p.closes} == {c.pair_id for c in free.closes}
        if not b.entries_allowed:
            assert p.entries == ()
            assert all("kill switch on" in s.reason for s in p.skips
                       if p.decisions.get(s.pair_id) is not None
                       and p.decisions[s.pair_id].action.is_entry)
