"""What the mutation run (``tests/mutation.py``) showed the rule tests left loose, pinned: the
exact decision, reason, state and size the portfolio plan gives in each branch of its rule,
the window :func:`latest_signal` uses, the argument each input error names, the kill switch's
reason. Reasons are pinned word for word because the operator reads them in every report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairlib.config import RiskParams, StrategyParams
from pairlib.core.portfolio import Book, Close, Entry, PairView, Skip, plan
from pairlib.core.risk import (
    CAP_GROSS,
    CAP_LEG,
    Candidate,
    MarketRules,
    allocate_slots,
    kill_switch_active,
    round_amount,
    size_pair,
)
from pairlib.core.strategy import (
    Action,
    Decision,
    PairState,
    decisions,
    latest_signal,
    positions,
    spread,
    step,
    zscore,
)

S = StrategyParams()  # entry 1.0, exit 0.5, stop 3.5
SYMS = ("A", "B", "C", "D", "E", "F")
RULES = {s: MarketRules(s, 0.001, 0.001, 5.0) for s in SYMS}
PRICES = dict.fromkeys(SYMS, 100.0)
STD = 0.02
FLAT_LEGS = "flat with residual legs A +2 left by an incomplete order: flattening reduce-only"


def _risk(**kw: object) -> RiskParams:
    base: dict[str, object] = {"risk_per_trade": 0.01, "max_positions": 5,
                               "max_gross_leverage": 4.0}
    return RiskParams.model_validate({**base, **kw})


def _pair(y: str, x: str, z: float, **kw: object) -> PairView:
    args: dict[str, object] = {"z": z, "spread_std": STD}
    args.update(kw)
    return PairView(f"{y}~{x}", y, x, 1.0, 0.0, **args)  # type: ignore[arg-type]


def _book(**kw: object) -> Book:
    args: dict[str, object] = {"equity": 10_000.0, "prices": PRICES, "rules": RULES}
    args.update(kw)
    return Book(**args)  # type: ignore[arg-type]


def _sizing(z: float, gross: float, risk: RiskParams, stop: float = 3.5) -> object:
    """The size plan() must give an entry of C~D at ``z`` with ``gross`` already open."""
    return size_pair(10_000.0, z, stop if z > 0 else -stop, STD, 1.0, 100.0, 100.0,
                     RULES["C"], RULES["D"], risk, gross)


def _step(state: PairState, z: float, s: StrategyParams = S) -> Decision:
    return step(state, z, s.entry, s.exit, s.stop)


# ----------------------------------------------------------------------------- strategy, risk

def test_input_errors_name_the_argument() -> None:
    flat, square = np.zeros(3), np.zeros((2, 2))
    with pytest.raises(ValueError, match=r"^log_y must be one-dimensional"):
        spread(square, flat, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"^log_x must be one-dimensional"):
        spread(flat, square, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"^spread must be one-dimensional"):
        latest_signal(square, 2)
    with pytest.raises(ValueError, match=r"^spread must be one-dimensional"):
        zscore(square, 2)


@pytest.mark.parametrize(("open_pairs", "max_positions"),
                         [(True, 2), (1.5, 2), (-1, 2), (0, True), (0, 2.0), (0, 0)])
def test_slot_counts_must_be_whole_numbers(open_pairs: object, max_positions: object) -> None:
    with pytest.raises(ValueError, match="open_pairs|max_positions"):
        allocate_slots([], open_pairs, max_positions, set())  # type: ignore[arg-type]


def test_a_candidate_without_a_finite_z_ranks_after_every_finite_one() -> None:
    cands = [Candidate("A~B", math.nan, ("A", "B")), Candidate("C~D", 0.5, ("C", "D"))]
    chosen, rejected = allocate_slots(cands, 0, 1, set())
    assert [c.pair_id for c in chosen] == ["C~D"]
    assert [c.pair_id for c, _ in rejected] == ["A~B"]


def test_latest_signal_is_the_last_z_and_sample_std_of_the_last_lookback_values() -> None:
    s = np.random.default_rng(1).normal(size=50).cumsum()
    w = s[-20:]
    z, sd = latest_signal(s, 20)
    assert z == pytest.approx((w[-1] - w.mean()) / w.std(ddof=1), rel=1e-12)
    assert sd == pytest.approx(w.std(ddof=1), rel=1e-12)
    exact = latest_signal(s[:20], 20)  # exactly lookback values: a signal, not NaN
    assert exact[0] == pytest.approx((s[19] - s[:20].mean()) / s[:20].std(ddof=1), rel=1e-12)
    assert all(math.isnan(v) for v in latest_signal(s[:19], 20))


def test_kill_switch_flag_reason() -> None:
    risk = _risk(kill_switch=True)
    assert kill_switch_active(risk, lambda p: False) == (
        True, "kill switch on: risk.kill_switch is true in params; exits only")


# ----------------------------------------------------------------------------- closes first

@pytest.mark.parametrize(("closing", "locked"), [(Action.STOP, True), (Action.EXIT, False)])
def test_a_close_begun_earlier_completes_first_and_frees_its_slot_and_gross(
        closing: Action, locked: bool) -> None:
    risk = _risk(max_positions=1, max_gross_leverage=0.4)
    old = _pair("A", "B", 0.0, state=PairState(1), amounts=(5.0, -5.0), closing=closing)
    p = plan([old, _pair("C", "D", 1.5)], _book(gross_notional=1_500.0), S, risk)
    d = Decision(0, closing, f"completing the {closing} begun earlier: its legs are still open",
                 PairState(0, locked_out=locked))
    assert p.closes == (Close("A~B", d),)
    assert p.decisions["A~B"] == d
    assert p.entries == (Entry("C~D", _step(PairState(), 1.5), _sizing(1.5, 500.0, risk)),)


def test_a_decided_pair_only_flattens_its_leftover_legs_named_in_the_reason() -> None:
    risk = _risk(max_gross_leverage=0.4)
    left = _pair("A", "B", 2.0, decided=True, amounts=(2.0, 1e-9))  # 1e-9 is dust
    p = plan([left, _pair("C", "D", 1.5)], _book(gross_notional=200.0), S, risk)
    assert p.flattens == (Close("A~B", Decision(0, Action.FLATTEN, FLAT_LEGS, PairState())),)
    assert "A~B" not in p.decisions
    assert p.entries[0].sizing == _sizing(1.5, 0.0, risk)  # the flattened legs free gross


def test_a_price_missing_for_a_closed_leg_counts_as_zero_gross_freed() -> None:
    risk = _risk(max_gross_leverage=0.4)
    unpriced = PairView("Y~Z", "Y", "Z", 1.0, 0.0, state=PairState(1), amounts=(10.0, -10.0),
                        closing=Action.EXIT)
    p = plan([unpriced, _pair("C", "D", 1.5)], _book(gross_notional=3_000.0), S, risk)
    assert p.entries[0].sizing == _sizing(1.5, 3_000.0, risk)


# ----------------------------------------------------------------------------- the strategy's turn

def test_a_pair_with_a_data_problem_is_not_traded_on_its_z() -> None:
    p = plan([_pair("A", "B", 5.0, problem="stale candles")], _book(), S, _risk())
    base = _step(PairState(), math.nan)
    d = Decision(0, base.action, f"stale candles: no order; {base.reason}", base.state)
    assert p.skips == (Skip("A~B", d, base.action, d.reason, base.state),)
    assert p.decisions["A~B"] == d and p.entries == ()


def test_a_data_note_is_appended_to_the_reason() -> None:
    p = plan([_pair("A", "B", 0.2, note="jump served")], _book(), S, _risk())
    base = _step(PairState(), 0.2)
    d = Decision(0, base.action, f"{base.reason} (data: jump served)", base.state)
    assert p.skips == (Skip("A~B", d, base.action, d.reason, base.state),)


def _losing(pnl: float, budget: float) -> PairView:
    return _pair("A", "B", -0.8, state=PairState(1), amounts=(5.0, -5.0), risk_budget=budget,
                 pnl=pnl)


@pytest.mark.parametrize(("pnl", "budget"), [(-100.0, 50.0), (-1.0, 0.5)])
def test_the_loss_limit_closes_at_exactly_its_multiple(pnl: float, budget: float) -> None:
    risk = _risk(max_loss_multiple=2.0, max_positions=1, max_gross_leverage=0.4)
    p = plan([_losing(pnl, budget), _pair("C", "D", 1.5)], _book(gross_notional=1_000.0), S,
             risk)
    hold = _step(PairState(1), -0.8)
    why = (f"loss {-pnl:.2f} is 2.00 x the risk budget {budget:.2f} "
           f"(risk.max_loss_multiple: 2): close both legs reduce-only; {hold.reason}")
    assert p.closes == (Close("A~B", Decision(0, Action.LOSS_LIMIT, why,
                                              PairState(0, locked_out=True))),)
    assert p.entries[0].sizing == _sizing(1.5, 0.0, risk)  # its slot and gross are free


@pytest.mark.parametrize(("pnl", "budget"), [(-99.99, 50.0), (-10.0, 0.0)])
def test_the_loss_limit_holds_below_its_multiple_or_without_a_budget(
        pnl: float, budget: float) -> None:
    p = plan([_losing(pnl, budget)], _book(), S, _risk(max_loss_multiple=2.0))
    assert p.closes == () and p.action_of("A~B") == Action.HOLD


def test_an_unevaluable_open_pair_is_held_with_an_alert_then_closed() -> None:
    risk = _risk(max_positions=1, max_gross_leverage=0.4)
    held = _pair("A", "B", math.nan, state=PairState(1), amounts=(5.0, -5.0),
                 problem="no candles")
    base = _step(PairState(1), math.nan)
    d = Decision(1, base.action, f"no candles: no order; {base.reason}", base.state)
    p = plan([held, _pair("C", "D", 1.5)], _book(gross_notional=1_000.0), S, risk)
    why = ("no candles: open but cannot be evaluated; held with no exit or stop (1 of 1 "
           "bar(s)), closed after that")
    assert p.skips[0] == Skip("A~B", d, base.action, why, base.state, alert=True)
    assert p.entries == ()  # it keeps its slot

    later = PairView(**{**held.__dict__, "unevaluable_before": 1})
    p = plan([later, _pair("C", "D", 1.5)], _book(gross_notional=1_000.0), S, risk)
    why = ("no candles: the open pair could not be evaluated for 2 bar(s) "
           "(risk.unevaluable_exit_bars: 1): close both legs reduce-only")
    assert p.closes == (Close("A~B", Decision(0, Action.EXIT_NO_DATA, why, PairState())),)
    assert p.entries[0].sizing == _sizing(1.5, 0.0, risk)


# ----------------------------------------------------------------------------- leftover legs

def test_leftover_legs_of_a_flat_pair_are_flattened_keeping_the_new_lock_state() -> None:
    pr = _pair("A", "B", 0.2, state=PairState(0, locked_out=True), amounts=(2.0, 0.0))
    d = _step(pr.state, 0.2)  # |z| < entry: the stop's lock is lifted
    assert d.state == PairState(0, locked_out=False)
    p = plan([pr], _book(), S, _risk())
    assert p.flattens == (Close("A~B", Decision(0, Action.FLATTEN, f"{d.reason}; {FLAT_LEGS}",
                                                d.state)),)


def test_leftover_legs_under_a_new_entry_signal_are_flattened_not_entered() -> None:
    pr = _pair("A", "B", 1.5, amounts=(2.0, 0.0))
    d = _step(PairState(), 1.5)
    p = plan([pr], _book(), S, _risk())
    assert p.flattens == (Close("A~B", Decision(0, Action.FLATTEN, f"{d.reason}; {FLAT_LEGS}",
                                                PairState())),)
    assert p.entries == ()


def test_a_resumed_entry_is_sized_without_its_own_filled_leg() -> None:
    risk = _risk(max_gross_leverage=0.4)
    pr = _pair("C", "D", 1.5, amounts=(2.0, 0.0), resumed_entry=Action.ENTER_SHORT)
    p = plan([pr], _book(gross_notional=1_200.0), S, risk)
    assert p.entries == (Entry("C~D", _step(PairState(), 1.5), _sizing(1.5, 1_000.0, risk)),)


def test_a_resumed_entry_that_is_refused_flattens_its_legs_as_abandoned() -> None:
    pr = _pair("A", "B", 1.5, amounts=(2.0, 0.0), resumed_entry=Action.ENTER_SHORT)
    d = _step(PairState(), 1.5)
    p = plan([pr], _book(entries_allowed=False, exits_only_why="kill switch on"), S, _risk())
    why = (f"{d.reason}; not entered: kill switch on; the interrupted entry's leftover legs "
           "are flattened now")
    assert p.flattens == (Close("A~B", Decision(0, Action.FLATTEN, why, PairState()),
                                abandoned=True),)


# ----------------------------------------------------------------------------- entries

def _refused(p: object, pid: str) -> Skip:
    return next(s for s in p.skips if s.pair_id == pid)  # type: ignore[attr-defined]


def test_an_entry_outside_the_pair_set_is_refused_with_its_reason() -> None:
    d = _step(PairState(), 1.5)
    p = plan([_pair("A", "B", 1.5, in_set=False)], _book(), S, _risk())
    assert p.skips == (Skip("A~B", d, Action.NONE, f"{d.reason}; not entered: pair is no "
                            "longer in the current pair set: exits only", PairState()),)


def test_only_a_blocked_symbol_says_reconciliation_mismatch() -> None:
    held = _pair("E", "F", -0.8, state=PairState(1), amounts=(5.0, -5.0))
    p = plan([_pair("A", "B", 1.5), _pair("C", "E", 1.6), held],
             _book(blocked=frozenset({"A"})), S, _risk())
    assert _refused(p, "A~B").reason.endswith("(reconciliation mismatch)")
    assert _refused(p, "A~B").action == Action.NONE
    assert "C~E" not in [e.pair_id for e in p.entries]
    assert not _refused(p, "C~E").reason.endswith("(reconciliation mismatch)")


@pytest.mark.parametrize("missing", ["price y", "price x", "rules y", "rules x"])
def test_an_entry_without_a_price_or_rules_for_either_leg_is_refused(missing: str) -> None:
    what, leg = missing.split()
    sym = "C" if leg == "y" else "D"
    prices = {s: v for s, v in PRICES.items() if not (what == "price" and s == sym)}
    rules = {s: r for s, r in RULES.items() if not (what == "rules" and s == sym)}
    d = _step(PairState(), 1.5)
    p = plan([_pair("C", "D", 1.5)], _book(prices=prices, rules=rules), S, _risk())
    assert p.skips == (Skip("C~D", d, Action.NONE, f"{d.reason}; not entered: no current "
                            "price or market rules for a leg", PairState()),)


def test_the_stop_is_on_the_side_of_the_entry_for_any_positive_z() -> None:
    s = StrategyParams(entry=0.5, exit=0.2, stop=3.5)
    risk = _risk()
    p = plan([_pair("C", "D", 0.8)], _book(), s, risk)
    assert p.entries == (Entry("C~D", _step(PairState(), 0.8, s), _sizing(0.8, 0.0, risk)),)
    p = plan([_pair("C", "D", -0.8)], _book(), s, risk)
    assert p.entries[0].sizing == _sizing(-0.8, 0.0, risk)


def test_an_entry_that_cannot_be_sized_is_refused_with_the_error() -> None:
    d = _step(PairState(), 1.5)
    p = plan([_pair("C", "D", 1.5, spread_std=0.0)], _book(), S, _risk())
    skip = _refused(p, "C~D")
    assert skip.reason.startswith(f"{d.reason}; not entered: cannot size: ")
    assert "spread_std" in skip.reason and skip.decision == d


NAN = math.nan
STEPS = [  # position, locked out, z -> position, locked out, action, reason (entry 1, exit 0.5,
    # stop 3.5); a z that rounds onto its threshold shows the digits that tell it apart
    (0, False, NAN, 0, False, "none", "z is NaN: no entry"),
    (0, True, NAN, 0, True, "none", "z is NaN: no entry (still locked out after a stop)"),
    (-1, False, NAN, -1, False, "hold", "z is NaN: hold short spread"),
    (1, False, NAN, 1, False, "hold", "z is NaN: hold long spread"),
    (0, False, 1.5, -1, False, "enter_short", "z=1.50 >= entry 1.00: short the spread"),
    (0, False, 1.0, -1, False, "enter_short", "z=1.00 >= entry 1.00: short the spread"),
    (0, False, -1.5, 1, False, "enter_long", "z=-1.50 <= -entry -1.00: long the spread"),
    (0, True, 1.5, 0, True, "none", "locked out after stop: |z|=1.50 not yet < entry 1.00"),
    (0, True, 0.5, 0, False, "none", "|z|=0.50 < entry 1.00: lockout released, flat"),
    (0, False, 4.0, 0, False, "none", "|z|=4.00 >= stop 3.50: beyond stop, no entry"),
    (0, False, -4.0, 0, False, "none", "|z|=4.00 >= stop 3.50: beyond stop, no entry"),
    (0, False, 3.5, 0, False, "none", "|z|=3.50 >= stop 3.50: beyond stop, no entry"),
    (0, False, 0.3, 0, False, "none", "|z|=0.30 < entry 1.00: stay flat"),
    (0, False, 0.9999, 0, False, "none", "|z|=0.9999 < entry 1.00: stay flat"),
    (-1, False, 0.2, 0, False, "exit", "z=0.20 <= exit 0.50: short spread reverted, exit"),
    (-1, False, 0.5, 0, False, "exit", "z=0.50 <= exit 0.50: short spread reverted, exit"),
    (1, False, -0.2, 0, False, "exit", "z=-0.20 >= -exit -0.50: long spread reverted, exit"),
    (-1, False, 3.6, 0, True, "stop", "z=3.60 >= stop 3.50: stop loss on short spread; locked "
     "out until |z| < entry 1.00"),
    (1, False, -3.6, 0, True, "stop", "z=-3.60 <= -stop -3.50: stop loss on long spread; "
     "locked out until |z| < entry 1.00"),
    (-1, False, 1.2, -1, False, "hold", "z=1.20 between exit 0.50 and stop 3.50: hold short "
     "spread"),
    (-1, False, 3.4999, -1, False, "hold", "z=3.4999 between exit 0.50 and stop 3.50: hold "
     "short spread"),
    (1, False, -1.2, 1, False, "hold", "z=-1.20 between -stop -3.50 and -exit -0.50: hold long "
     "spread"),
    (1, False, -0.5001, 1, False, "hold", "z=-0.5001 between -stop -3.50 and -exit -0.50: hold "
     "long spread"),
]


@pytest.mark.parametrize(("pos", "locked", "z", "new_pos", "new_locked", "action", "reason"),
                         STEPS)
def test_every_transition_of_the_rule_and_its_reason(
        pos: int, locked: bool, z: float, new_pos: int, new_locked: bool, action: str,
        reason: str) -> None:
    d = step(PairState(pos, locked_out=locked), z, 1.0, 0.5, 3.5)
    assert d == Decision(new_pos, Action(action), reason, PairState(new_pos, new_locked))


# ----------------------------------------------------------------------------- rule inputs

def test_threshold_errors_name_the_threshold_and_the_allowed_order() -> None:
    with pytest.raises(ValueError, match=r"^exit must be a finite number, got nan$"):
        step(PairState(), 1.0, 1.0, math.nan, 3.5)
    allowed = "allowed: 0 <= exit < entry < stop"
    for entry, exit, stop in [(1.0, -0.1, 3.5), (1.0, 1.0, 3.5), (1.0, 0.5, 1.0)]:
        with pytest.raises(ValueError, match=f"; {allowed}$"):
            step(PairState(), 1.0, entry, exit, stop)


@pytest.mark.parametrize("fold", [positions, decisions])
def test_a_z_path_that_is_not_one_dimensional_is_named_z(fold: object) -> None:
    with pytest.raises(ValueError, match=r"^z must be one-dimensional, got shape \(1, 1\)$"):
        fold([[1.5]])  # type: ignore[operator]


# short at 1.5, held at 1.2, stopped at 4.0, lock released at 0.0, no entry beyond the stop
DEFAULT_PATH = ([1.5, 1.2, 4.0, 0.0, 4.0], [-1, -1, 0, 0, 0])


def test_the_batch_folds_default_to_the_params_thresholds() -> None:
    z, want = DEFAULT_PATH
    assert (S.entry, S.exit, S.stop) == (1.0, 0.5, 3.5)
    assert positions(z).tolist() == want
    assert [d.position for d in decisions(z)] == want


def test_a_missing_z_counts_as_nan_in_the_batch_folds() -> None:
    z = [1.5, None, 0.0]  # None: no z for that bar, held like NaN
    assert positions(z).tolist() == [-1, -1, 0]  # type: ignore[arg-type]
    assert [d.action for d in decisions(z)] == [  # type: ignore[arg-type]
        Action.ENTER_SHORT, Action.HOLD, Action.EXIT]


def test_a_z_off_its_threshold_by_less_than_ten_decimals_is_shown_with_ten() -> None:
    d = step(PairState(), 1.0 + 1e-11, 1.0, 0.5, 3.5)
    assert d.reason == "z=1.0000000000 >= entry 1.00: short the spread"


def test_a_window_whose_deviations_underflow_has_no_z_and_no_warning() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's divide-by-zero warning would be raised here
        z = zscore([1e-170, -1e-170], 2)  # (1e-170)**2 underflows: the std computes as 0
    assert np.isnan(z).all()


# ----------------------------------------------------------------------------- sizing

def _rules(sym: str, step: float = 0.001, min_amount: float = 0.0,
           min_notional: float = 0.0) -> MarketRules:
    return MarketRules(sym, step, min_amount, min_notional)


def test_market_rules_errors_name_the_symbol_and_field() -> None:
    with pytest.raises(ValueError, match=r"^symbol must be a non-empty string$"):
        MarketRules("", 0.1, 0.0, 0.0)
    with pytest.raises(ValueError, match=r"^X: min_amount "):
        MarketRules("X", 0.1, -1.0, 0.0)


@pytest.mark.parametrize(("amount", "step"), [(71006720.3, 0.1), (649622587.953, 0.001),
                                              (4132949907.49, 0.01)])
def test_a_large_whole_number_of_steps_is_kept_whole(amount: float, step: float) -> None:
    # amount / step lands a few ulps below the integer, more than the fixed 1e-9 tolerance
    assert round_amount(amount, _rules("X", step)) == amount


def _size(z: float, stop: float, risk: RiskParams | None = None, gross: float = 0.0,
          std: float = 0.5, ry: MarketRules | None = None,
          rx: MarketRules | None = None) -> object:
    return size_pair(10_000.0, z, stop, std, 1.0, 1.0, 1.0, ry or _rules("Y"),
                     rx or _rules("X"), risk or _risk(), gross)


def test_stop_z_errors_name_stop_z() -> None:
    with pytest.raises(ValueError, match=r"^stop_z must be a finite number"):
        _size(1.0, math.nan)


@pytest.mark.parametrize(("z", "stop"), [(1.0, 0.0), (1.0, 1.0), (-1.0, -1.0), (1.0, -3.5),
                                         (0.0, 3.5)])
def test_a_stop_not_beyond_the_entry_on_its_side_is_refused(z: float, stop: float) -> None:
    with pytest.raises(ValueError, match=r"must lie beyond z_entry .* same side of zero"):
        _size(z, stop)


@pytest.mark.parametrize(("z", "stop"), [(1.0, 3.5), (0.5, 1.5), (-0.5, -1.5)])
def test_any_stop_beyond_the_entry_sizes_to_the_risk_budget(z: float, stop: float) -> None:
    s = _size(z, stop)  # budget 0.01 * 10000 = 100 over |stop - z| * 0.5
    assert s.skipped is None  # type: ignore[attr-defined]
    assert s.risk_amount == pytest.approx(100.0, rel=1e-3)  # type: ignore[attr-defined]


def test_the_last_bit_of_gross_room_is_used() -> None:
    risk = _risk(max_gross_leverage=1.0)
    s = _size(1.0, 3.5, risk, gross=10_000.0 - 0.5)  # 0.5 of room: 0.25 per leg
    assert (s.amount_y, s.amount_x, s.capped_by) == (0.25, 0.25, CAP_GROSS)  # type: ignore


def test_a_target_exactly_at_the_leg_cap_is_not_capped() -> None:
    s = _size(1.0, 3.5, _risk(max_leg_notional=80.0))  # target 100 / (2.5 * 0.5) = 80
    assert (s.notional_y, s.capped_by) == (80.0, None)  # type: ignore[attr-defined]


@pytest.mark.parametrize("leg", ["y", "x"])
def test_a_capped_pair_skipped_for_a_minimum_says_which_cap(leg: str) -> None:
    small = _rules("S", min_notional=10.0)  # above the 5.0 the leg cap leaves
    s = _size(1.0, 3.5, _risk(max_leg_notional=5.0), ry=small if leg == "y" else None,
              rx=small if leg == "x" else None)
    assert s.skipped is not None and "below the market minimum" in s.skipped  # type: ignore
    assert s.capped_by == CAP_LEG  # type: ignore[attr-defined]


@pytest.mark.parametrize("field", ["min_amount", "min_notional"])
def test_a_leg_exactly_at_the_market_minimum_is_traded(field: str) -> None:
    rules = _rules("Y", **{field: 80.0})  # the target: 80 contracts at price 1
    s = _size(1.0, 3.5, ry=rules)
    assert (s.skipped, s.amount_y) == (None, 80.0)  # type: ignore[attr-defined]


def test_an_infinite_z_ranks_after_every_finite_one() -> None:
    cands = [Candidate("A~B", math.inf, ("A", "B")), Candidate("C~D", 0.5, ("C", "D"))]
    chosen, rejected = allocate_slots(cands, 0, 1, set())
    assert [c.pair_id for c in chosen] == ["C~D"]
    assert [c.pair_id for c, _ in rejected] == ["A~B"]


# ----------------------------------------------------------------------------- one pair's
# outcome never stops the plan from deciding the pairs after it

def _entered(p: object) -> list[str]:
    return [e.pair_id for e in p.entries]  # type: ignore[attr-defined]


@pytest.mark.parametrize("first", [
    _pair("A", "B", 0.0, state=PairState(-1), amounts=(-5.0, 5.0)),  # exits
    _pair("A", "B", 0.2, amounts=(2.0, 0.0)),  # leftover legs flattened
    _pair("A", "B", 1.5, amounts=(2.0, 0.0), resumed_entry=Action.ENTER_SHORT),  # resumed
])
def test_pairs_after_a_closed_flattened_or_resumed_pair_are_still_decided(
        first: PairView) -> None:
    p = plan([first, _pair("C", "D", 1.2), _pair("E", "F", 0.2)], _book(), S, _risk())
    assert set(p.decisions) >= {"C~D", "E~F"}
    assert "C~D" in _entered(p)


def test_flattened_leftover_legs_free_their_gross_for_entries() -> None:
    risk = _risk(max_gross_leverage=0.4)
    left = _pair("A", "B", 0.2, amounts=(2.0, 0.0))
    p = plan([left, _pair("C", "D", 1.5)], _book(gross_notional=200.0), S, risk)
    assert p.entries[0].sizing == _sizing(1.5, 0.0, risk)


@pytest.mark.parametrize("refusal", ["no price", "cannot size", "sizing skipped"])
def test_an_entry_refused_at_sizing_does_not_stop_the_next_one(refusal: str) -> None:
    first = {"no price": _pair("A", "G", 2.0),  # no price or rules for G
             "cannot size": _pair("A", "B", 2.0, spread_std=0.0),
             "sizing skipped": _pair("A", "B", 2.0, spread_std=1e9)}[refusal]  # rounds to 0
    p = plan([first, _pair("C", "D", 1.5)], _book(), S, _risk())
    assert _entered(p) == ["C~D"]
    assert refusal.split()[0] in _refused(p, first.pair_id).reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_duplicate_with_a_non_finite_z_never_displaces_the_finite_candidate(
        bad: float) -> None:
    cands = [Candidate("A~B", bad, ("A", "B")), Candidate("A~B", 0.5, ("A", "B"))]
    chosen, rejected = allocate_slots(cands, 0, 2, set())
    assert [c.z for c in chosen] == [0.5]
    assert [why for _, why in rejected] == [f"z is not finite ({bad})"]


# A z within 2 decimals of a threshold is shown with the digits that tell it from that one.
NEAR_THRESHOLD = [
    (0, False, 1.0001, "z=1.0001 >= entry 1.00: short the spread"),
    (0, False, -1.0001, "z=-1.0001 <= -entry -1.00: long the spread"),
    (0, True, 1.0001, "locked out after stop: |z|=1.0001 not yet < entry 1.00"),
    (0, True, -0.9999, "|z|=0.9999 < entry 1.00: lockout released, flat"),
    (0, False, -3.5001, "|z|=3.5001 >= stop 3.50: beyond stop, no entry"),
    (-1, False, 0.4999, "z=0.4999 <= exit 0.50: short spread reverted, exit"),
    (1, False, -0.4999, "z=-0.4999 >= -exit -0.50: long spread reverted, exit"),
    (-1, False, 3.5001, "z=3.5001 >= stop 3.50: stop loss on short spread; locked out until "
     "|z| < entry 1.00"),
    (1, False, -3.5001, "z=-3.5001 <= -stop -3.50: stop loss on long spread; locked out until "
     "|z| < entry 1.00"),
    (-1, False, 0.5001, "z=0.5001 between exit 0.50 and stop 3.50: hold short spread"),
    (1, False, -3.4999, "z=-3.4999 between -stop -3.50 and -exit -0.50: hold long spread"),
]


@pytest.mark.parametrize(("pos", "locked", "z", "reason"), NEAR_THRESHOLD)
def test_a_z_near_its_threshold_is_told_apart_in_the_reason(
        pos: int, locked: bool, z: float, reason: str) -> None:
    assert step(PairState(pos, locked_out=locked), z, 1.0, 0.5, 3.5).reason == reason


def test_both_leftover_legs_are_named_in_the_flatten_reason() -> None:
    pr = _pair("A", "B", 0.2, amounts=(2.0, -1.5))
    d = _step(PairState(), 0.2)
    p = plan([pr], _book(), S, _risk())
    assert p.flattens[0].decision.reason == (
        f"{d.reason}; flat with residual legs A +2, B -1.5 left by an incomplete order: "
        "flattening reduce-only")
