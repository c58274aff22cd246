"""Tests for pairlib.core.risk: sizing at the stop distance, caps, rounding, slots, kill switch."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pairlib.config import Params, RiskParams
from pairlib.core.risk import (
    CAP_GROSS,
    CAP_LEG,
    Candidate,
    MarketRules,
    Sizing,
    allocate_slots,
    kill_switch_active,
    round_amount,
    size_pair,
)

FINE_Y = MarketRules("YYY/USDT:USDT", amount_step=1e-6, min_amount=0.0, min_notional=0.0)
FINE_X = MarketRules("XXX/USDT:USDT", amount_step=1e-6, min_amount=0.0, min_notional=0.0)
RISK = RiskParams()  # 2% per trade, 2x gross, 50k per leg, 5 positions
NO_LEG_CAP = RiskParams(max_leg_notional=1e12)


def size(**kw: object) -> Sizing:
    args: dict[str, object] = dict(
        equity=100_000.0,
        z_entry=1.5,
        stop_z=3.5,
        spread_std=0.05,
        beta=0.8,
        price_y=100.0,
        price_x=50.0,
        rules_y=FINE_Y,
        rules_x=FINE_X,
        risk=RISK,
    )
    args.update(kw)
    return size_pair(**args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# Sizing
# --------------------------------------------------------------------------------------


def test_loss_from_entry_to_stop_is_risk_fraction_of_equity() -> None:
    s = size()
    # N_y = 0.02 * 100k / (|3.5 - 1.5| * 0.05) = 20k notional
    move = 2.0 * 0.05
    assert s.skipped is None and s.capped_by is None
    assert s.notional_y == pytest.approx(20_000.0, abs=100.0 * 1e-6)
    assert s.notional_y * move == pytest.approx(2_000.0, abs=100.0 * 1e-6 * move)
    assert s.risk_amount == pytest.approx(s.notional_y * move)
    assert s.risk_amount <= 0.02 * 100_000.0
    assert s.amount_y == pytest.approx(200.0, abs=1e-6)


def test_long_spread_entry_is_sized_the_same() -> None:
    a, b = size(z_entry=1.5, stop_z=3.5), size(z_entry=-1.5, stop_z=-3.5)
    assert a == b


def test_risk_scales_with_stop_distance_and_std() -> None:
    near = size(z_entry=3.0, risk=NO_LEG_CAP)  # stop 0.5 z away: 4x the notional of 2 z
    assert near.capped_by is None
    assert near.notional_y == pytest.approx(4 * size().notional_y, rel=1e-6)
    assert size(spread_std=0.1).notional_y == pytest.approx(size().notional_y / 2, rel=1e-6)


def test_legs_are_beta_weighted_in_notional() -> None:
    for beta in (0.3, 0.8, 1.0, 1.7):
        s = size(beta=beta)
        assert s.notional_x == pytest.approx(beta * s.notional_y, abs=50.0 * 1e-6)
        assert s.notional_x <= beta * s.notional_y * (1 + 1e-12)
        assert s.amount_x == pytest.approx(s.notional_x / 50.0)


def test_contract_size_enters_notional() -> None:
    rules_y = MarketRules("YYY/USDT:USDT", 1e-6, 0.0, 0.0, contract_size=10.0)
    s = size(rules_y=rules_y)
    assert s.notional_y == pytest.approx(20_000.0, abs=1e-2)
    assert s.amount_y == pytest.approx(20.0, abs=1e-6)


def test_gross_leverage_cap_binds_and_is_reported() -> None:
    # risk target N_y = 2000 / (2 * 0.005) = 200k; gross room 2 * 100k -> N_y = 200k / 1.8
    s = size(spread_std=0.005, risk=NO_LEG_CAP)
    assert s.capped_by == CAP_GROSS == "max_gross_leverage"
    assert s.skipped is None
    assert s.gross_notional <= 200_000.0 * (1 + 1e-12)
    assert s.gross_notional == pytest.approx(200_000.0, abs=1e-3)
    assert s.notional_x == pytest.approx(0.8 * s.notional_y, abs=1e-4)
    assert s.risk_amount < 2_000.0


def test_gross_leverage_cap_counts_open_gross() -> None:
    s = size(spread_std=0.005, risk=NO_LEG_CAP, open_gross_notional=150_000.0)
    assert s.capped_by == CAP_GROSS
    assert 150_000.0 + s.gross_notional <= 200_000.0 * (1 + 1e-12)
    assert s.notional_y == pytest.approx(50_000.0 / 1.8, abs=1e-3)
    # without the open gross the same trade is not capped
    assert size(risk=NO_LEG_CAP).capped_by is None
    assert size(risk=NO_LEG_CAP, open_gross_notional=180_000.0).capped_by == CAP_GROSS


def test_gross_cap_already_reached_skips() -> None:
    s = size(open_gross_notional=200_000.0)
    assert s.skipped == "gross leverage cap reached: open gross 200000.00 >= 2x equity 100000.00"
    assert s.capped_by == CAP_GROSS
    assert (s.amount_y, s.amount_x, s.risk_amount) == (0.0, 0.0, 0.0)


def test_leg_notional_cap_binds_on_y_leg() -> None:
    s = size(risk=RiskParams(max_leg_notional=10_000.0))
    assert s.capped_by == CAP_LEG == "max_leg_notional"
    assert s.notional_y == pytest.approx(10_000.0, abs=1e-3) and s.notional_y <= 10_000.0
    assert s.notional_x == pytest.approx(8_000.0, abs=1e-3)


def test_leg_notional_cap_binds_on_x_leg_when_beta_above_one() -> None:
    s = size(beta=2.0, risk=RiskParams(max_leg_notional=30_000.0))
    assert s.capped_by == CAP_LEG
    assert s.notional_x <= 30_000.0 and s.notional_x == pytest.approx(30_000.0, abs=1e-3)
    assert s.notional_y == pytest.approx(15_000.0, abs=1e-3)


def test_tightest_cap_is_reported() -> None:
    risk = RiskParams(max_leg_notional=5_000.0, max_gross_leverage=2.0)
    assert size(spread_std=0.005, risk=risk).capped_by == CAP_LEG
    risk = RiskParams(max_leg_notional=100_000.0, max_gross_leverage=0.1)
    assert size(spread_std=0.005, risk=risk).capped_by == CAP_GROSS


def test_leg_rounding_to_zero_skips_with_reason() -> None:
    coarse = MarketRules("BTC/USDT:USDT", amount_step=0.001, min_amount=0.001, min_notional=5.0)
    s = size(price_y=60_000.0, rules_y=coarse, equity=100.0)  # N_y = 20 USDT -> 0.00033 BTC
    assert s.skipped == "y leg BTC/USDT:USDT: 0.000333333 contracts rounds to 0 (step 0.001)"
    assert (s.amount_y, s.amount_x, s.notional_y, s.notional_x) == (0.0, 0.0, 0.0, 0.0)


def test_leg_below_min_amount_skips_with_reason() -> None:
    rules_x = MarketRules("ETH/USDT:USDT", amount_step=0.001, min_amount=0.01, min_notional=0.0)
    s = size(equity=100.0, price_x=3_000.0, rules_x=rules_x)  # N_x = 16 USDT -> 0.005 ETH
    assert s.skipped == "x leg ETH/USDT:USDT: amount 0.005 below the market minimum 0.01"


def test_leg_below_min_notional_skips_with_reason() -> None:
    rules_y = MarketRules("DOGE/USDT:USDT", amount_step=1.0, min_amount=1.0, min_notional=5.0)
    s = size(equity=10.0, price_y=0.1, rules_y=rules_y)  # N_y = 2 USDT -> 20 DOGE
    assert s.skipped == "y leg DOGE/USDT:USDT: notional 2.00 below the market minimum 5.00"


def test_x_leg_is_hedged_against_the_rounded_y_leg() -> None:
    coarse_y = MarketRules("YYY/USDT:USDT", amount_step=1.0, min_amount=0.0, min_notional=0.0)
    s = size(rules_y=coarse_y, price_y=3_000.0)  # 6.67 contracts -> 6
    assert s.amount_y == 6.0 and s.notional_y == 18_000.0
    assert s.notional_x == pytest.approx(0.8 * 18_000.0, abs=1e-4)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"equity": 0.0}, r"equity must be > 0, got 0.0"),
        ({"equity": -5.0}, r"equity must be > 0"),
        ({"equity": math.nan}, r"equity must be a finite number, got nan"),
        ({"price_y": math.inf}, r"price_y must be a finite number, got inf"),
        ({"price_x": 0.0}, r"price_x must be > 0"),
        ({"spread_std": 0.0}, r"spread_std must be > 0, got 0.0"),
        ({"spread_std": math.nan}, r"spread_std must be a finite number"),
        ({"beta": 0.0}, r"beta must be > 0, got 0.0"),
        ({"beta": -1.0}, r"beta must be > 0"),
        ({"beta": math.inf}, r"beta must be a finite number"),
        ({"z_entry": math.nan}, r"z_entry must be a finite number"),
        ({"stop_z": -3.5}, r"stop_z \(-3.5\) must lie beyond z_entry \(1.5\)"),
        ({"stop_z": 1.0}, r"stop_z \(1.0\) must lie beyond"),
        ({"z_entry": 0.0}, r"must lie beyond z_entry \(0.0\)"),
        ({"open_gross_notional": -1.0}, r"open_gross_notional must be >= 0"),
    ],
)
def test_bad_inputs_raise(kw: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        size(**kw)


def test_market_rules_validated() -> None:
    with pytest.raises(ValueError, match="BTC: amount_step must be > 0, got 0"):
        MarketRules("BTC", 0, 0.0, 0.0)
    with pytest.raises(ValueError, match="min_notional must be >= 0"):
        MarketRules("BTC", 0.001, 0.0, -1.0)
    with pytest.raises(ValueError, match="contract_size must be a finite number"):
        MarketRules("BTC", 0.001, 0.0, 0.0, contract_size=math.nan)
    with pytest.raises(ValueError, match="symbol must be a non-empty"):
        MarketRules("", 0.001, 0.0, 0.0)


# --------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------


def rules(step: float) -> MarketRules:
    return MarketRules("S", amount_step=step, min_amount=0.0, min_notional=0.0)


@pytest.mark.parametrize(
    ("amount", "step", "expected"),
    [
        (0.3, 0.1, 0.3),  # 0.3 / 0.1 == 2.9999999999999996
        (0.7, 0.1, 0.7),
        (0.39, 0.1, 0.3),  # floor, never up
        (0.299999, 0.1, 0.2),
        (1.0, 0.001, 1.0),
        (0.0049, 0.001, 0.004),
        (123.456789, 0.01, 123.45),
        (17.0, 5.0, 15.0),
        (4.99, 5.0, 0.0),
        (0.0, 0.001, 0.0),
        (3 * 0.1, 0.1, 0.3),  # 0.30000000000000004 in, clean 0.3 out
        (1e-8 * 7, 1e-8, 7e-8),
        (2.5, 0.5, 2.5),
        (0.75, 0.25, 0.75),
    ],
)
def test_round_amount_floors_to_step(amount: float, step: float, expected: float) -> None:
    assert round_amount(amount, rules(step)) == expected


def test_round_amount_rejects_negative_and_non_finite() -> None:
    with pytest.raises(ValueError, match="amount must be >= 0, got -1.0"):
        round_amount(-1.0, rules(0.1))
    with pytest.raises(ValueError, match="amount must be a finite number, got nan"):
        round_amount(math.nan, rules(0.1))


@settings(deadline=None, max_examples=200)
@given(st.integers(0, 10**7), st.sampled_from([1e-8, 1e-4, 0.001, 0.01, 0.1, 0.5, 1.0, 10.0]))
def test_property_round_amount_exact_multiples_are_kept(k: int, step: float) -> None:
    r = round_amount(k * step, rules(step))
    assert math.isclose(r, k * step, rel_tol=1e-12, abs_tol=0.0) or r == k * step


# --------------------------------------------------------------------------------------
# Property tests of sizing
# --------------------------------------------------------------------------------------

steps = st.sampled_from([1e-6, 1e-3, 0.01, 0.1, 1.0, 10.0])


@st.composite
def market(draw: st.DrawFn, symbol: str) -> MarketRules:
    step = draw(steps)
    return MarketRules(
        symbol,
        amount_step=step,
        min_amount=draw(st.sampled_from([0.0, step, 5 * step])),
        min_notional=draw(st.sampled_from([0.0, 5.0, 100.0])),
        contract_size=draw(st.sampled_from([1.0, 0.1, 10.0])),
    )


@settings(deadline=None, max_examples=300)
@given(
    equity=st.floats(10.0, 1e7),
    z_abs=st.floats(0.5, 3.4),
    side=st.sampled_from([1.0, -1.0]),
    stop=st.floats(3.5, 6.0),
    spread_std=st.floats(1e-4, 0.5),
    beta=st.floats(0.05, 20.0),
    price_y=st.floats(1e-3, 1e5),
    price_x=st.floats(1e-3, 1e5),
    rules_y=market("Y"),
    rules_x=market("X"),
    risk_per_trade=st.floats(0.001, 0.1),
    lev=st.floats(0.1, 20.0),
    leg_cap=st.floats(10.0, 1e7),
    open_frac=st.floats(0.0, 1.1),
)
def test_property_sized_loss_and_caps_never_exceeded(
    equity: float,
    z_abs: float,
    side: float,
    stop: float,
    spread_std: float,
    beta: float,
    price_y: float,
    price_x: float,
    rules_y: MarketRules,
    rules_x: MarketRules,
    risk_per_trade: float,
    lev: float,
    leg_cap: float,
    open_frac: float,
) -> None:
    assume(stop > z_abs)
    risk = RiskParams(
        risk_per_trade=risk_per_trade, max_gross_leverage=lev, max_leg_notional=leg_cap
    )
    open_gross = open_frac * lev * equity
    s = size_pair(
        equity, side * z_abs, side * stop, spread_std, beta, price_y, price_x,
        rules_y, rules_x, risk, open_gross,
    )  # fmt: skip
    tol = 1 + 1e-9
    if s.skipped is not None:
        assert (s.amount_y, s.amount_x, s.notional_y, s.notional_x, s.risk_amount) == (
            0.0, 0.0, 0.0, 0.0, 0.0,
        )  # fmt: skip
        return
    move = abs(stop - z_abs) * spread_std
    budget = risk_per_trade * equity
    # the sized loss from entry to stop never exceeds risk * equity
    assert s.risk_amount <= budget * tol
    assert s.notional_y * move <= budget * tol
    # gross (incl. open) never exceeds the leverage cap; each leg within the leg cap
    assert open_gross + s.notional_y + s.notional_x <= lev * equity * tol
    assert s.notional_y <= leg_cap * tol and s.notional_x <= leg_cap * tol
    # legs keep the beta ratio up to rounding of the x leg (never over-hedged)
    assert s.notional_x <= beta * s.notional_y * tol
    unit_x = price_x * rules_x.contract_size
    assert beta * s.notional_y - s.notional_x <= rules_x.amount_step * unit_x * tol
    # amounts are whole steps, at or above the minimums
    for amount, r, price in ((s.amount_y, rules_y, price_y), (s.amount_x, rules_x, price_x)):
        k = amount / r.amount_step
        assert abs(k - round(k)) <= 1e-6 * max(1.0, k)
        assert amount > 0 and amount >= r.min_amount
        assert amount * r.contract_size * price >= r.min_notional
    assert s.capped_by in (None, CAP_GROSS, CAP_LEG)
    if s.capped_by is None:
        # uncapped: the loss is the budget up to one y step
        unit_y = price_y * rules_y.contract_size
        assert budget - s.risk_amount <= rules_y.amount_step * unit_y * move * tol + 1e-9


# --------------------------------------------------------------------------------------
# Slots
# --------------------------------------------------------------------------------------


def cand(pair_id: str, z: float, y: str, x: str) -> Candidate:
    return Candidate(pair_id, z, (y, x))


def test_allocate_takes_largest_abs_z_into_free_slots() -> None:
    cs = [
        cand("a", 1.1, "A", "B"),
        cand("b", -2.5, "C", "D"),
        cand("c", 1.9, "E", "F"),
        cand("d", -1.4, "G", "H"),
    ]
    chosen, rejected = allocate_slots(cs, open_pairs=3, max_positions=5)
    assert [c.pair_id for c in chosen] == ["b", "c"]
    assert [(c.pair_id, r) for c, r in rejected] == [
        ("d", "no free slot (5/5 open)"),
        ("a", "no free slot (5/5 open)"),
    ]


def test_allocate_ties_are_deterministic() -> None:
    cs = [cand("zz", 2.0, "A", "B"), cand("aa", -2.0, "C", "D"), cand("mm", 2.0, "E", "F")]
    for order in (cs, cs[::-1], [cs[1], cs[2], cs[0]]):
        chosen, rejected = allocate_slots(order, open_pairs=0, max_positions=2)
        assert [c.pair_id for c in chosen] == ["aa", "mm"]
        assert [c.pair_id for c, _ in rejected] == ["zz"]


def test_allocate_no_free_slot() -> None:
    chosen, rejected = allocate_slots([cand("a", 3.0, "A", "B")], 5, 5)
    assert chosen == [] and rejected[0][1] == "no free slot (5/5 open)"


def test_allocate_blocked_symbols() -> None:
    cs = [cand("a", 3.0, "A", "B"), cand("b", 2.0, "C", "D")]
    chosen, rejected = allocate_slots(cs, 0, 5, blocked_symbols={"B"})
    assert [c.pair_id for c in chosen] == ["b"]
    assert rejected == [(cs[0], "symbol B already in an open pair or mismatched")]


def test_allocate_symbol_never_in_two_chosen_pairs() -> None:
    cs = [cand("a", 3.0, "A", "B"), cand("b", 2.5, "B", "C"), cand("c", 2.0, "C", "D")]
    chosen, rejected = allocate_slots(cs, 0, 5)
    assert [c.pair_id for c in chosen] == ["a", "c"]
    assert rejected == [(cs[1], "symbol B already used by chosen pair a")]


def test_allocate_rejects_bad_candidates() -> None:
    cs = [cand("a", math.nan, "A", "B"), cand("b", 2.0, "C", "C"), cand("c", 2.0, "D", "E")]
    chosen, rejected = allocate_slots([*cs, cand("c", 1.5, "F", "G")], 0, 5)
    assert [c.pair_id for c in chosen] == ["c"]
    reasons = {c.pair_id + str(c.z): r for c, r in rejected}
    assert reasons == {
        "anan": "z is not finite (nan)",
        "b2.0": "same symbol C on both legs",
        "c1.5": "duplicate candidate for pair c",
    }


def test_allocate_validates_counts() -> None:
    with pytest.raises(ValueError, match="open_pairs must be an integer >= 0, got -1"):
        allocate_slots([], -1, 5)
    with pytest.raises(ValueError, match="max_positions must be an integer >= 1, got 0"):
        allocate_slots([], 0, 0)


pair_names = st.sampled_from("ABCDEFGH")


@settings(deadline=None, max_examples=200)
@given(
    st.lists(
        st.tuples(st.floats(-5, 5), pair_names, pair_names).filter(lambda t: t[1] != t[2]),
        max_size=12,
    ),
    st.integers(0, 6),
    st.integers(1, 6),
    st.sets(pair_names, max_size=3),
)
def test_property_allocation(
    raw: list[tuple[float, str, str]], open_pairs: int, max_positions: int, blocked: set[str]
) -> None:
    cs = [cand(f"p{i}", z, y, x) for i, (z, y, x) in enumerate(raw)]
    chosen, rejected = allocate_slots(cs, open_pairs, max_positions, blocked)
    assert len(chosen) + len(rejected) == len(cs)
    assert len(chosen) <= max(0, max_positions - open_pairs)
    syms = [s for c in chosen for s in c.symbols]
    assert len(syms) == len(set(syms)) and not set(syms) & blocked
    zs = [abs(c.z) for c in chosen]
    assert zs == sorted(zs, reverse=True)


# --------------------------------------------------------------------------------------
# Kill switch
# --------------------------------------------------------------------------------------


def test_kill_switch_flag() -> None:
    active, reason = kill_switch_active(RiskParams(kill_switch=True), exists=lambda p: False)
    assert active and "risk.kill_switch is true" in reason and "exits only" in reason


def test_kill_switch_file() -> None:
    risk = RiskParams(kill_switch_file=Path("/state/KILL"))
    seen: list[Path] = []

    def exists(p: Path) -> bool:
        seen.append(p)
        return True

    active, reason = kill_switch_active(risk, exists=exists)
    assert active and reason == "kill switch on: file /state/KILL exists; exits only"
    assert seen == [Path("/state/KILL")]


def test_kill_switch_off() -> None:
    # In the params tree the file defaults to <state_dir>/KILL.
    active, reason = kill_switch_active(Params().risk, exists=lambda p: False)
    assert not active and reason == "kill switch off (no file at .state/KILL)"
    # A risk section on its own has no state_dir, hence no file to check.
    active, reason = kill_switch_active(RiskParams(), exists=lambda p: True)
    assert not active and reason == "kill switch off"


def test_kill_switch_default_checks_the_real_path(tmp_path: Path) -> None:
    flag = tmp_path / "KILL"
    risk = RiskParams(kill_switch_file=flag)
    assert kill_switch_active(risk)[0] is False
    flag.touch()
    assert kill_switch_active(risk)[0] is True
