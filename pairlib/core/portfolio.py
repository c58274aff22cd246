"""The portfolio rule: what one bar does with all pairs together (pure; no I/O, no clock).

:func:`plan` is the one place that decides, given every pair's z-score and state, the book
(equity, gross exposure, prices, market rules, symbols that must not be traded) and the
params, which pairs close, which leftover legs are flattened and which pairs open, with what
sizes; every pair not acted on comes back with its reason. The live tick calls it once per
tick (gather -> plan -> execute -> persist) and a backtest calls the same function on each
bar, so the two cannot drift apart.

Order of the rule
-----------------
1. A pair whose close began earlier and did not complete is closed first, whatever its z.
2. The strategy (:func:`pairlib.core.strategy.step`) decides every evaluable pair; exits and stops
   close both legs. An open pair that cannot be evaluated is held (an alert) for
   ``risk.unevaluable_exit_bars`` bars, then closed (``exit_no_data``).
3. Leftover legs of a flat pair (an incomplete order) are flattened; no entry on top of them.
   The legs of an entry begun earlier in the same tick are kept only when that entry is
   completed now; otherwise they are flattened (``abandoned``).
4. Entries: exits-only modes, pairs no longer in the pair set and residual legs refuse
   entries; then the free slots go to the largest ``|z|`` (:func:`pairlib.core.risk.allocate_slots`)
   with symbols held by other pairs or blocked by reconciliation excluded; then each chosen
   pair is sized (:func:`pairlib.core.risk.size_pair`) at the close of the bar acted on, against the
   gross exposure that remains after this plan's closes, accumulating as pairs are added. The
   stop z is on the entry's side (``+stop`` for a short-spread entry at ``z > 0``). An open
   pair keeps the hedge ratio it was opened with (the caller passes it).

Reasons state what the plan decides ("close both legs reduce-only"), never what came of it:
only the caller knows whether the orders were sent and filled (the tick adds that).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pairlib.config import RiskParams, StrategyParams
from pairlib.core.risk import Candidate, MarketRules, Sizing, allocate_slots, size_pair
from pairlib.core.strategy import Action, Decision, PairState, step

__all__ = ["Book", "Close", "Entry", "PairView", "Plan", "Skip", "pair_id", "plan"]

_DUST = 1e-9


def pair_id(y: str, x: str) -> str:
    """Stable identifier of a pair: ``"Y~X"`` with the unified symbols."""
    return f"{y}~{x}"


@dataclass(frozen=True)
class PairView:
    """One pair as the plan sees it.

    Attributes
    ----------
    pair_id, y, x : str
        The pair and its legs (unified symbols).
    beta, alpha : float
        The hedge ratio in use: an open pair keeps the one it was opened with.
    state : PairState
        The strategy's persisted state (position, locked out).
    amounts : (float, float)
        Signed leg amounts held (contracts of y and x).
    z, spread_std : float
        This bar's z-score and the spread's rolling std (NaN when unusable).
    in_set : bool
        Whether the pair is in the current pair set (else: exits only).
    problem : str or None
        Why the pair cannot be evaluated this bar (its data), or None.
    closing : str or None
        A close (``exit``, ``stop``, ``flatten``, ``exit_no_data``) begun and not completed.
    unevaluable_before : int
        Consecutive earlier bars on which this open pair could not be evaluated.
    resumed_entry : str or None
        The action of an entry begun earlier in this same bar (live re-runs only).
    decided : bool
        The strategy already decided this pair on this bar (an earlier run of the same
        tick): only leftover legs are acted on.
    note : str or None
        Unusual data to mention in the reason (served jumps, masked old bars).
    risk_budget : float
        The loss the open position was sized to risk (0 when unknown).
    pnl : float
        The open position's PnL at this bar's close, its legs valued from their entry prices
        (NaN when unknown).
    """

    pair_id: str
    y: str
    x: str
    beta: float
    alpha: float
    state: PairState = PairState()
    amounts: tuple[float, float] = (0.0, 0.0)
    z: float = math.nan
    spread_std: float = math.nan
    in_set: bool = True
    problem: str | None = None
    closing: Action | None = None
    unevaluable_before: int = 0
    resumed_entry: Action | None = None
    decided: bool = False
    note: str | None = None
    risk_budget: float = 0.0
    pnl: float = math.nan

    @property
    def held(self) -> bool:
        """Whether the pair holds a position or any leg."""
        return self.state.position != 0 or any(abs(a) > _DUST for a in self.amounts)

    @property
    def residual(self) -> bool:
        """Flat by the strategy but with legs left (an incomplete order)."""
        return (self.state.position == 0 and self.closing is None
                and any(abs(a) > _DUST for a in self.amounts))


@dataclass(frozen=True)
class Book:
    """The account as the plan sees it.

    Attributes
    ----------
    equity : float
        Account equity (quote currency).
    gross_notional : float
        Sum of ``|notional|`` of every position held now.
    prices : mapping
        Symbol -> the close of the bar acted on (the price the z-score saw; sizing uses it).
    rules : mapping
        Symbol -> :class:`~pairlib.core.risk.MarketRules`.
    blocked : frozenset of str
        Symbols that take no new entry (a reconciliation mismatch, a holding outside pairs).
    entries_allowed : bool
        False in exits-only modes (kill switch, missed bar, no pair set).
    exits_only_why : str
        Why entries are not allowed (the reason recorded for refused entries).
    """

    equity: float
    gross_notional: float = 0.0
    prices: Mapping[str, float] = field(default_factory=dict)
    rules: Mapping[str, MarketRules] = field(default_factory=dict)
    blocked: frozenset[str] = frozenset()
    entries_allowed: bool = True
    exits_only_why: str = ""


@dataclass(frozen=True)
class Close:
    """Close both legs of a pair, reduce-only (``decision.action`` names why)."""

    pair_id: str
    decision: Decision
    abandoned: bool = False  # flattening the legs of an entry this bar will not complete


@dataclass(frozen=True)
class Entry:
    """Open a pair with these sizes."""

    pair_id: str
    decision: Decision
    sizing: Sizing


@dataclass(frozen=True)
class Skip:
    """A pair not acted on: the state to keep, the action to record and why."""

    pair_id: str
    decision: Decision
    action: Action
    reason: str
    state: PairState
    alert: bool = False  # an open pair that could not be evaluated


@dataclass(frozen=True)
class Plan:
    """The bar's plan, in execution order: ``closes``, then ``flattens``, then ``entries``;
    ``skips`` are every other pair with its reason. ``decisions`` has each pair's strategy
    decision (absent for pairs already decided on this bar)."""

    decisions: Mapping[str, Decision]
    closes: tuple[Close, ...] = ()
    flattens: tuple[Close, ...] = ()
    entries: tuple[Entry, ...] = ()
    skips: tuple[Skip, ...] = ()

    def action_of(self, pair_id: str) -> Action | None:
        """The action this plan takes or records for one pair."""
        for c in (*self.closes, *self.flattens):
            if c.pair_id == pair_id:
                return c.decision.action
        for e in self.entries:
            if e.pair_id == pair_id:
                return e.decision.action
        for s in self.skips:
            if s.pair_id == pair_id:
                return s.action
        return None


def _decision(action: Action, reason: str, state: PairState) -> Decision:
    """A decision the portfolio rule makes on its own (closing, flattening)."""
    return Decision(state.position, action, reason, state)


def _notional(pr: PairView, prices: Mapping[str, float]) -> float:
    """Gross notional of a pair's legs at ``prices`` (0 for a leg without a price)."""
    return sum(abs(a) * prices.get(sym, 0.0) for a, sym in zip(pr.amounts, (pr.y, pr.x),
                                                              strict=True))


def plan(
    pairs: Sequence[PairView], book: Book, strategy: StrategyParams, risk: RiskParams
) -> Plan:
    """Decide one bar for every pair; see the module docstring for the rule.

    Parameters
    ----------
    pairs : sequence of PairView
        Every pair of the current pair set and every held pair outside it.
    book : Book
        Equity, exposure, prices, rules and the symbols blocked from entries.
    strategy, risk : StrategyParams, RiskParams
        Thresholds; sizing, caps and slots.

    Returns
    -------
    Plan
        Pure data: the caller executes it.
    """
    decisions: dict[str, Decision] = {}
    closes: list[Close] = []
    flattens: list[Close] = []
    skips: list[Skip] = []
    wanting: list[tuple[PairView, Decision]] = []
    closed_ids: set[str] = set()
    for pr in sorted(pairs, key=lambda p: p.pair_id):
        if pr.closing is not None:
            locked = pr.closing in (Action.STOP, Action.LOSS_LIMIT)
            d = _decision(pr.closing, f"completing the {pr.closing} begun earlier: its legs are "
                          "still open", PairState(0, locked_out=locked))
            decisions[pr.pair_id] = d
            closes.append(Close(pr.pair_id, d))
            closed_ids.add(pr.pair_id)
            continue
        if pr.decided:
            if pr.residual:
                d = _decision(Action.FLATTEN, _flatten_reason(pr), pr.state)
                flattens.append(Close(pr.pair_id, d))
                closed_ids.add(pr.pair_id)
            continue
        z = pr.z if pr.problem is None else math.nan
        d = step(pr.state, z, strategy.entry, strategy.exit, strategy.stop)
        if pr.problem is not None:
            d = Decision(d.position, d.action, f"{pr.problem}: no order; {d.reason}", d.state)
        elif pr.note:
            d = Decision(d.position, d.action, f"{d.reason} (data: {pr.note})", d.state)
        decisions[pr.pair_id] = d
        if d.action in (Action.EXIT, Action.STOP):
            closes.append(Close(pr.pair_id, d))
            closed_ids.add(pr.pair_id)
            continue
        limit = risk.max_loss_multiple
        if (d.action == Action.HOLD and limit is not None and pr.risk_budget > 0
                and math.isfinite(pr.pnl) and -pr.pnl >= limit * pr.risk_budget):
            why = (f"loss {-pr.pnl:.2f} is {-pr.pnl / pr.risk_budget:.2f} x the risk budget "
                   f"{pr.risk_budget:.2f} (risk.max_loss_multiple: {limit:g}): close both "
                   f"legs reduce-only; {d.reason}")
            closes.append(Close(pr.pair_id, _decision(Action.LOSS_LIMIT, why,
                                                      PairState(0, locked_out=True))))
            closed_ids.add(pr.pair_id)
            continue
        if pr.problem is not None and pr.state.position != 0:
            streak = pr.unevaluable_before + 1
            limit = risk.unevaluable_exit_bars
            if streak > limit:
                why = (f"{pr.problem}: the open pair could not be evaluated for {streak} bar(s) "
                       f"(risk.unevaluable_exit_bars: {limit}): close both legs reduce-only")
                closes.append(Close(pr.pair_id, _decision(Action.EXIT_NO_DATA, why, PairState())))
                closed_ids.add(pr.pair_id)
            else:
                why = (f"{pr.problem}: open but cannot be evaluated; held with no exit or stop "
                       f"({streak} of {limit} bar(s)), closed after that")
                skips.append(Skip(pr.pair_id, d, d.action, why, d.state, alert=True))
            continue
        if pr.residual:
            if d.action.is_entry and pr.resumed_entry == d.action:
                wanting.append((pr, d))  # the entry begun earlier this bar: complete it
                continue
            state = d.state if d.position == 0 else pr.state
            flattens.append(Close(pr.pair_id, _decision(
                Action.FLATTEN, f"{d.reason}; {_flatten_reason(pr)}", state)))
            closed_ids.add(pr.pair_id)
            continue
        if d.action.is_entry:
            wanting.append((pr, d))
            continue
        skips.append(Skip(pr.pair_id, d, d.action, d.reason, d.state))

    entries, refused = _entries(pairs, wanting, closed_ids, book, strategy, risk)
    for pr, d, why in refused:
        if pr.residual:  # an entry begun earlier this bar that this plan does not complete
            why = f"{d.reason}; not entered: {why}; the interrupted entry's leftover legs are " \
                "flattened now"
            flattens.append(Close(pr.pair_id, _decision(Action.FLATTEN, why, pr.state),
                                  abandoned=True))
        else:
            skips.append(Skip(pr.pair_id, d, Action.NONE, f"{d.reason}; not entered: {why}",
                              pr.state))
    return Plan(decisions, tuple(closes), tuple(flattens), tuple(entries),
                tuple(sorted(skips, key=lambda s: s.pair_id)))


def _flatten_reason(pr: PairView) -> str:
    legs = ", ".join(f"{sym} {a:+g}" for a, sym in zip(pr.amounts, (pr.y, pr.x), strict=True)
                     if abs(a) > _DUST)
    return f"flat with residual legs {legs} left by an incomplete order: flattening reduce-only"


def _entries(
    pairs: Sequence[PairView],
    wanting: list[tuple[PairView, Decision]],
    closed_ids: set[str],
    book: Book,
    strategy: StrategyParams,
    risk: RiskParams,
) -> tuple[list[Entry], list[tuple[PairView, Decision, str]]]:
    """Slots, caps and sizes for the pairs whose strategy signals an entry."""
    refused: list[tuple[PairView, Decision, str]] = []
    candidates: list[Candidate] = []
    by_id: dict[str, tuple[PairView, Decision]] = {}
    for pr, d in wanting:
        if not book.entries_allowed:
            refused.append((pr, d, book.exits_only_why))
        elif not pr.in_set:
            refused.append((pr, d, "pair is no longer in the current pair set: exits only"))
        else:
            candidates.append(Candidate(pr.pair_id, pr.z, (pr.y, pr.x)))
            by_id[pr.pair_id] = (pr, d)
    if not candidates:
        return [], refused
    open_pairs = sum(1 for p in pairs if p.state.position != 0 and p.pair_id not in closed_ids)
    busy = set(book.blocked)
    for p in pairs:
        if p.held and p.pair_id not in closed_ids and p.pair_id not in by_id:
            busy.update((p.y, p.x))
    chosen, rejected = allocate_slots(candidates, open_pairs, risk.max_positions, busy)
    for c, why in rejected:
        pr, d = by_id[c.pair_id]
        if any(sym in book.blocked for sym in c.symbols):
            why = f"{why} (reconciliation mismatch)"
        refused.append((pr, d, why))
    # What stays open after this plan's closes counts against the gross cap.
    gross = book.gross_notional - sum(_notional(p, book.prices) for p in pairs
                                      if p.pair_id in closed_ids)
    entries: list[Entry] = []
    for c in chosen:
        pr, d = by_id[c.pair_id]
        py, px = book.prices.get(pr.y), book.prices.get(pr.x)
        ry, rx = book.rules.get(pr.y), book.rules.get(pr.x)
        if py is None or px is None or ry is None or rx is None:
            refused.append((pr, d, "no current price or market rules for a leg"))
            continue
        stop_z = strategy.stop if pr.z > 0 else -strategy.stop
        own = _notional(pr, book.prices)  # a resumed entry's filled leg is part of it
        try:
            sizing = size_pair(book.equity, pr.z, stop_z, pr.spread_std, pr.beta, py, px, ry,
                               rx, risk, max(gross - own, 0.0))
        except ValueError as e:
            refused.append((pr, d, f"cannot size: {e}"))
            continue
        if sizing.skipped:
            refused.append((pr, d, f"sizing skipped the pair: {sizing.skipped}"))
            continue
        entries.append(Entry(pr.pair_id, d, sizing))
        gross += sizing.gross_notional
    return entries, refused

