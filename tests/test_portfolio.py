"""The portfolio rule, driven directly (``pairlib.core.portfolio.plan``): slots, caps, blocked and
shared symbols, closes before entries, unevaluable pairs, interrupted entries."""

from __future__ import annotations

import math

import pytest

from pairlib.config import RiskParams, StrategyParams
from pairlib.core.portfolio import Book, PairView, plan
from pairlib.core.risk import MarketRules, size_pair
from pairlib.core.strategy import PairState

S = StrategyParams()  # entry 1.0, exit 0.5, stop 3.5
SYMS = ("A", "B", "C", "D", "E", "F", "G", "H")
RULES = {s: MarketRules(s, 0.001, 0.001, 5.0) for s in SYMS}
PRICES = dict.fromkeys(SYMS, 100.0)


def _risk(**kw: object) -> RiskParams:
    base: dict[str, object] = {"risk_per_trade": 0.01, "max_positions": 5,
                               "max_gross_leverage": 4.0}
    return RiskParams.model_validate({**base, **kw})


def _pair(y: str, x: str, z: float, **kw: object) -> PairView:
    args: dict[str, object] = {"z": z, "spread_std": 0.02}
    args.update(kw)
    return PairView(f"{y}~{x}", y, x, 1.0, 0.0, **args)  # type: ignore[arg-type]


def _book(**kw: object) -> Book:
    args: dict[str, object] = {"equity": 10_000.0, "prices": PRICES, "rules": RULES}
    args.update(kw)
    return Book(**args)  # type: ignore[arg-type]


def _entered(p: object) -> list[str]:
    return [e.pair_id for e in p.entries]  # type: ignore[attr-defined]


def _reason(p: object, pid: str) -> str:
    return next(s.reason for s in p.skips if s.pair_id == pid)  # type: ignore[attr-defined]


def test_more_signals_than_free_slots_go_to_the_largest_z() -> None:
    held = _pair("G", "H", -0.8, state=PairState(1), amounts=(5.0, -5.0))  # holds
    pairs = [_pair("A", "B", 1.5), _pair("C", "D", -2.5), _pair("E", "F", 1.2), held]
    p = plan(pairs, _book(), S, _risk(max_positions=2))
    assert _entered(p) == ["C~D"]  # one slot left next to the open pair
    assert "no free slot (2/2 open)" in _reason(p, "A~B")
    assert "no free slot (2/2 open)" in _reason(p, "E~F")
    assert p.action_of("G~H") == "hold"


def test_an_exit_frees_its_slot_and_its_gross_for_an_entry_in_the_same_bar() -> None:
    leaving = _pair("G", "H", 0.1, state=PairState(-1), amounts=(-40.0, 40.0))
    p = plan([leaving, _pair("A", "B", 1.5)],
             _book(gross_notional=8_000.0), S, _risk(max_positions=1, max_gross_leverage=1.0))
    assert [c.decision.action for c in p.closes] == ["exit"]
    assert _entered(p) == ["A~B"]
    # Sized against what stays open once the exit is done (0), not the 8,000 held now.
    full = size_pair(10_000.0, 1.5, 3.5, 0.02, 1.0, 100.0, 100.0, RULES["A"], RULES["B"],
                     _risk(max_gross_leverage=1.0), 0.0)
    assert p.entries[0].sizing == full


def test_the_gross_cap_binds_and_accumulates_across_entries() -> None:
    risk = _risk(risk_per_trade=0.05, max_gross_leverage=1.0)
    p = plan([_pair("A", "B", 1.5), _pair("C", "D", -1.4)], _book(gross_notional=2_000.0), S,
             risk)
    sized = {e.pair_id: e.sizing for e in p.entries}
    first = sized["A~B"]
    assert first.capped_by is not None
    assert 2_000.0 + first.gross_notional <= 10_000.0 + 1e-6
    # The second pair sees the first one's exposure: it gets what is left, or nothing.
    if "C~D" in sized:
        assert 2_000.0 + first.gross_notional + sized["C~D"].gross_notional <= 10_000.0 + 1e-6
    else:
        assert "sizing skipped" in _reason(p, "C~D")


def test_a_symbol_held_outside_any_pair_takes_no_entry() -> None:
    p = plan([_pair("A", "B", 1.5), _pair("C", "D", 1.4)], _book(blocked=frozenset({"B"})),
             S, _risk())
    assert _entered(p) == ["C~D"]
    assert "B" in _reason(p, "A~B") and "reconciliation mismatch" in _reason(p, "A~B")


def test_a_symbol_in_two_signalling_pairs_goes_to_the_larger_z() -> None:
    p = plan([_pair("A", "B", 1.5), _pair("A", "C", -2.0)], _book(), S, _risk())
    assert _entered(p) == ["A~C"]
    assert "already used by chosen pair A~C" in _reason(p, "A~B")


def test_a_symbol_of_an_open_pair_is_busy() -> None:
    held = _pair("A", "H", -0.8, state=PairState(1), amounts=(5.0, -5.0))  # holds
    p = plan([held, _pair("A", "B", 2.0)], _book(), S, _risk())
    assert _entered(p) == []
    assert "symbol A already in an open pair" in _reason(p, "A~B")


def test_stop_z_is_on_the_entry_side() -> None:
    p = plan([_pair("A", "B", 1.5), _pair("C", "D", -1.5)], _book(), S, _risk())
    sized = {e.pair_id: e.sizing for e in p.entries}
    for pid, z in (("A~B", 1.5), ("C~D", -1.5)):
        # Risk = notional_y x |stop_z - z| x std: the stop is 2.0 away, not 5.0.
        assert sized[pid].risk_amount == pytest.approx(sized[pid].notional_y * 2.0 * 0.02)
        assert p.decisions[pid].position == -math.copysign(1, z)


def test_exits_only_and_pairs_out_of_the_set_refuse_entries_but_exit() -> None:
    out_of_set = _pair("C", "D", 2.0, in_set=False)
    leaving = _pair("E", "F", 4.0, state=PairState(-1), amounts=(-5.0, 5.0))
    p = plan([_pair("A", "B", 1.5), out_of_set, leaving],
             _book(entries_allowed=False, exits_only_why="kill switch: exits only"), S, _risk())
    assert _entered(p) == []
    assert "kill switch" in _reason(p, "A~B")
    assert [c.decision.action for c in p.closes] == ["stop"]
    p2 = plan([out_of_set], _book(), S, _risk())
    assert "no longer in the current pair set" in _reason(p2, "C~D")


def test_a_close_begun_earlier_is_completed_whatever_the_z() -> None:
    closing = _pair("A", "B", 2.0, state=PairState(-1), amounts=(-5.0, 5.0), closing="stop")
    p = plan([closing], _book(), S, _risk())
    assert [(c.pair_id, c.decision.action) for c in p.closes] == [("A~B", "stop")]
    assert p.closes[0].decision.state == PairState(0, locked_out=True)


def test_residual_legs_are_flattened_and_block_an_entry_on_that_pair() -> None:
    residual = _pair("A", "B", 2.0, amounts=(3.0, 0.0))
    p = plan([residual], _book(), S, _risk())
    assert [f.decision.action for f in p.flattens] == ["flatten"] and _entered(p) == []
    assert "A +3" in p.flattens[0].decision.reason


def test_an_interrupted_entry_is_completed_or_flattened_now() -> None:
    resumed = _pair("A", "B", 1.5, amounts=(-3.0, 0.0), resumed_entry="enter_short")
    p = plan([resumed], _book(), S, _risk())
    assert _entered(p) == ["A~B"] and not p.flattens
    refused = plan([resumed], _book(entries_allowed=False, exits_only_why="missed tick"), S,
                   _risk())
    assert _entered(refused) == []
    assert [f.abandoned for f in refused.flattens] == [True]
    assert "missed tick" in refused.flattens[0].decision.reason


def test_an_unevaluable_open_pair_is_held_with_an_alert_then_closed() -> None:
    pr = _pair("A", "B", math.nan, state=PairState(1), amounts=(5.0, -5.0),
               problem="B dropped from the data")
    held = plan([pr], _book(), S, _risk(unevaluable_exit_bars=1))
    assert not held.closes and [s.alert for s in held.skips] == [True]
    later = plan([PairView(**{**pr.__dict__, "unevaluable_before": 1})], _book(), S,
                 _risk(unevaluable_exit_bars=1))
    assert [c.decision.action for c in later.closes] == ["exit_no_data"]
    at_once = plan([pr], _book(), S, _risk(unevaluable_exit_bars=0))
    assert [c.decision.action for c in at_once.closes] == ["exit_no_data"]


def test_a_pair_already_decided_this_bar_is_left_alone_but_its_leftovers_are_flattened() -> None:
    done = _pair("A", "B", 2.0, decided=True)
    leftover = _pair("C", "D", 2.0, decided=True, amounts=(1.0, 0.0))
    p = plan([done, leftover], _book(), S, _risk())
    assert "A~B" not in p.decisions and p.action_of("A~B") is None
    assert [f.pair_id for f in p.flattens] == ["C~D"]


def test_the_plan_does_not_depend_on_input_order() -> None:
    pairs = [_pair("A", "B", 1.5), _pair("C", "D", -2.5), _pair("E", "F", 1.2),
             _pair("A", "C", 1.9)]
    a = plan(pairs, _book(), S, _risk(max_positions=2))
    b = plan(list(reversed(pairs)), _book(), S, _risk(max_positions=2))
    assert a == b


def test_the_loss_limit_closes_a_held_pair_losing_too_many_budgets() -> None:
    held = _pair("A", "B", 1.8, state=PairState(-1), amounts=(-5.0, 5.0), risk_budget=100.0,
                 pnl=-250.0)  # z still says hold
    off = plan([held], _book(), S, _risk())
    assert off.action_of("A~B") == "hold"  # off by default
    on = plan([held], _book(), S, _risk(max_loss_multiple=2.0))
    assert [c.decision.action for c in on.closes] == ["loss_limit"]
    assert on.closes[0].decision.state == PairState(0, locked_out=True)
    assert "2.50 x the risk budget" in on.closes[0].decision.reason
    within = plan([PairView(**{**held.__dict__, "pnl": -150.0})], _book(), S,
                  _risk(max_loss_multiple=2.0))
    assert within.action_of("A~B") == "hold"
    stopped = plan([PairView(**{**held.__dict__, "z": 4.0})], _book(), S,
                   _risk(max_loss_multiple=2.0))
    assert stopped.action_of("A~B") == "stop"  # the strategy's own stop comes first
