"""The live tick: one run per closed candle, from the pair set to orders, fills and a report.

At every candle close (4h by default) :func:`run` is gather -> plan -> execute -> persist:

1. **validate** params and ``as_of`` (and the live safeguards) before any network call;
2. **idempotency**: a tick is identified by ``as_of``, the close time of the candle it acts
   on; a tick already ``ok`` in the store returns ``already_ran`` without touching the venue;
   a failed, crashed or degraded tick re-run resumes (pairs already processed by it are
   skipped, and deterministic client order ids make every order exactly-once);
3. **gather**: orders earlier runs left unconfirmed are resolved, the store's net position per
   symbol is reconciled with the venue's (:mod:`pairlib.engine.reconcile`; a mismatched symbol
   takes no new entry), the pair set is checked against the venue, timeframe and lookback it
   was built for, and the closed candles of every pair's legs give each pair its z-score
   (:func:`pairlib.core.strategy.latest_signal`, gated on the bars the decision uses);
4. **plan**: :func:`pairlib.core.portfolio.plan`, the one portfolio rule the backtest uses too,
   decides closes, flattens and entries with their sizes, and every other pair's reason;
5. **execute** through :class:`pairlib.engine.execution.Executor` (closes first, reduce-only
   and retried; then entries, two legs each), then re-check orders of unknown outcome and
   close legs an incomplete entry left;
6. **persist and report**: decisions, orders, fills, pair state, equity, funding, incidents and
   one ``ticks`` row, and a :class:`~pairlib.engine.tick_result.TickResult`. The status is
   ``ok`` only when the book is hedged and matches the venue, re-read at the end; anything
   exposed makes it ``degraded``.

A preview (``preview=True``) gathers and plans, and shows the plan without sending an order
or writing anything.

Modes: a tick acts on exits only (``exits_only: ...``) when the kill switch is on, when it
is a missed tick (``as_of`` older than the last closed candle by the venue's clock; override
with ``missed_tick_entries: true`` or ``allow_missed_entries=True``), when there is no pair
set, or when the pair set was built for another market, timeframe or lookback. No order is
placed on bad data: a pair whose legs are unusable takes no entry; an open one is reported at
once and closed reduce-only after ``risk.unevaluable_exit_bars`` ticks.

The clock: ``clock`` defaults to the system clock; for a running simulator (``sim_url``) it is
the simulator's clock, and for the in-process simulator with an explicit ``as_of`` it is
``as_of`` itself (the simulator is started there), so a replay acts as if each tick ran on
time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairlib.clock import (
    Clock,
    SettableClock,
    SystemClock,
    floor_time,
    from_ms,
    iso,
    last_close,
    parse_time,
    to_ms,
)
from pairlib.config import (
    PARAMS_FILE,
    Secrets,
    TradingParams,
    load_params,
    load_secrets,
    timeframe_ms,
)
from pairlib.core.portfolio import Book, PairView, Plan, plan
from pairlib.core.risk import MarketRules, Sizing, kill_switch_active
from pairlib.core.strategy import Action, Decision, PairState, latest_signal
from pairlib.core.strategy import spread as spread_of
from pairlib.core.strategy import zscore as zscore_of
from pairlib.edges.store import DB_NAME, OutboxEntry, PairStateRow, Store
from pairlib.engine.execution import (
    UNRESOLVED_STATUSES,
    Executor,
    LegOrder,
    PairOutcome,
    is_own_client_id,
)
from pairlib.engine.reconcile import expected_positions, mismatch_frame, realized_pnl, reconcile
from pairlib.engine.tick_result import (
    SIGNAL_COLUMNS,
    Z_HISTORY_BARS,
    TickFailed,
    TickMode,
    TickResult,
    TickStatus,
    already_ran_result,
    empty_result,
    incident_list,
    positions_frame,
)
from pairlib.errors import (
    ConfigError,
    ExchangeError,
    LiveTradingRefused,
    PairlibError,
)
from pairlib.failpoints import failpoint
from pairlib.venue.open import check_live, open_exchange, scratch_account, simulator_now

__all__ = [  # the result types are defined in pairlib.engine.tick_result and re-exported here
    "SIGNAL_COLUMNS",
    "Z_HISTORY_BARS",
    "TickFailed",
    "TickResult",
    "run",
]

log = logging.getLogger(__name__)

_LOCK_TIMEOUT_S = 600.0
_FUNDING_MS = 8 * 3_600_000
_DUST = 1e-9  # leg amounts below this are float dust, not positions
_CLOSE_KINDS = frozenset(str(a) for a in Action if a.closes)  # notification kinds of closes


# ----------------------------------------------------------------------------- public API


def run(
    params: str | Path | TradingParams = PARAMS_FILE,
    as_of: str | datetime | None = None,
    *,
    store: Store | None = None,
    clock: Clock | None = None,
    live: bool = False,
    notebook_path: str | None = None,
    allow_missed_entries: bool | None = None,
    preview: bool = False,
) -> TickResult:
    """Run one tick, or preview it.

    Parameters
    ----------
    params : path or TradingParams
        ``params/pairlib.yaml`` or an already-validated model.
    as_of : str or datetime, optional
        Close time of the candle to act on (ISO-8601; on a candle boundary); default: the
        last closed candle by ``clock``.
    store : Store, optional
        Default ``Store.at(params.state_dir)``.
    clock : Clock, optional
        Default: the system clock (see the module docstring for the simulator).
    live : bool
        ``--live``: required, with ``venue.kind: live`` and keys, to trade live.
    notebook_path : str, optional
        The executed notebook reporting this tick (recorded in the ``ticks`` row).
    allow_missed_entries : bool, optional
        Override ``missed_tick_entries`` for a missed tick.
    preview : bool
        Compute every decision and the sizes this tick would use, and return them (status
        ``preview``, the planned orders in ``orders``), without sending an order or writing
        anything to the store. The venue is only read.

    Returns
    -------
    TickResult
        Never raises for bad params, refusals, venue or data failures: those come back as
        ``status`` ``refused`` or ``failed`` with ``error`` set.
    """
    t0 = time.perf_counter()
    when: datetime | None = None
    p: TradingParams | None = None
    try:
        p = params if isinstance(params, TradingParams) else load_params(params, TradingParams)
        if clock is None:
            if p.venue.kind == "sim" and p.venue.sim_url is not None:
                clock = SettableClock(simulator_now(p.venue))
            elif p.venue.kind == "sim" and as_of is not None:
                clock = SettableClock(parse_time(as_of))  # the in-process simulator's present
            else:
                clock = SystemClock()
        when, missed = _resolve_as_of(as_of, clock.now(), p.data.timeframe)
        secrets = load_secrets() if p.venue.kind in ("live", "demo") else Secrets()
        check_live(p.venue, live, secrets)
    except ExchangeError as e:  # the venue's clock could not be read
        log.error("tick not run: %s", e)
        asked = _parse_or_none(as_of)
        return _unrun(p, asked, store, SystemClock(), TickStatus.FAILED, TickMode.NORMAL,
                      f"{type(e).__name__}: {e}", time.perf_counter() - t0, notebook_path)
    except (ConfigError, LiveTradingRefused, ValueError) as e:
        log.error("tick refused: %s", e)
        return _unrun(p, when, store, clock, TickStatus.REFUSED, TickMode.REFUSED,
                      f"{type(e).__name__}: {e}",
                      time.perf_counter() - t0, notebook_path)
    assert clock is not None
    entries_when_missed = (allow_missed_entries if allow_missed_entries is not None
                           else p.missed_tick_entries)
    own = store is None
    try:
        if store is not None:
            db = store
        elif preview and not (Path(p.state_dir) / DB_NAME).exists():
            db = Store(":memory:")  # a preview writes nothing, not even an empty database
        else:
            db = Store.at(p.state_dir)
    except PairlibError as e:  # StoreError: corrupt, locked or read-only database
        log.error("tick %s not run: %s", iso(when), e)
        return empty_result(p, when, TickStatus.FAILED, TickMode.NORMAL,
                            f"{type(e).__name__}: {e}",
                            time.perf_counter() - t0, notebook_path)
    try:
        from filelock import FileLock, Timeout

        if not preview:
            Path(p.state_dir).mkdir(parents=True, exist_ok=True)
        # A preview only reads: it takes no lock (it may run beside a tick).
        lock: Any = (contextlib.nullcontext() if preview
                     else FileLock(str(Path(p.state_dir) / "tick.lock"), timeout=_LOCK_TIMEOUT_S))
        try:
            with lock:
                prev = db.tick_row(when)
                if prev is not None and prev.status == TickStatus.OK and not preview:
                    log.info("tick %s already ran (ok): nothing to do", iso(when))
                    return already_ran_result(p, db, when, prev, time.perf_counter() - t0)
                tick = _Tick(p, db, when, clock, live, secrets, notebook_path,
                             missed=missed, missed_entries=bool(entries_when_missed), t0=t0,
                             preview=preview)
                return tick.run()
        except PairlibError as e:  # the store failed before or after the tick's own guard
            log.error("tick %s failed: %s", iso(when), e)
            return empty_result(p, when, TickStatus.FAILED, TickMode.NORMAL,
                                f"{type(e).__name__}: {e}",
                                time.perf_counter() - t0, notebook_path)
        except Timeout:
            msg = (f"another tick holds {Path(p.state_dir) / 'tick.lock'} "
                   f"(waited {_LOCK_TIMEOUT_S:.0f} s)")
            log.error("tick %s not run: %s", iso(when), msg)
            return empty_result(p, when, TickStatus.FAILED, TickMode.NORMAL, msg,
                                time.perf_counter() - t0,
                                 notebook_path)
    finally:
        if own:
            db.close()


# ----------------------------------------------------------------------------- helpers


def _resolve_as_of(
    as_of: str | datetime | None, now: datetime, timeframe: str
) -> tuple[datetime, bool]:
    """``(as_of, missed)``: validated candle close time and whether it is a missed tick."""
    tf = timedelta(milliseconds=timeframe_ms(timeframe))
    last = last_close(now, timeframe)
    if as_of is None:
        return last, False
    when = parse_time(as_of)
    if floor_time(when, tf) != when:
        raise ConfigError(
            f"as_of {iso(when)} is not a {timeframe} candle close "
            f"(e.g. {iso(floor_time(when, tf))})"
        )
    if when > last:
        raise ConfigError(
            f"as_of {iso(when)} is after the last closed {timeframe} candle ({iso(last)}) by "
            "the clock: that candle has not closed yet"
        )
    return when, when < last


PLANNED_ORDER_COLUMNS = ("pair_id", "leg", "action", "symbol", "side", "amount", "reduce_only",
                         "status")
"""Columns of :attr:`TickResult.orders` in a preview."""


def _sizing_text(sizing: Sizing) -> str:
    """The sizes and risk of an entry, for its reason."""
    return (f"notional {sizing.notional_y:.2f}/{sizing.notional_x:.2f}, risk "
            f"{sizing.risk_amount:.2f}"
            + (f", capped by {sizing.capped_by}" if sizing.capped_by else ""))


def _close_text(out: PairOutcome | None) -> str:
    """What became of a close the plan decided, for its incident: closed, not needed,
    blocked or stopped (the outcome's own message), or incomplete."""
    if out is None:
        return "no leg was held: nothing to send"
    if out.ok:
        return "done: the pair is flat"
    if out.blocked:
        return out.message
    return f"close {out.message}: retried next tick"


def _side_of(amounts: tuple[float, float]) -> int:
    """The spread side that leg amounts (y, x) belong to: +1 long y / short x, -1 the
    reverse, 0 none."""
    ay, ax = amounts
    if abs(ay) > _DUST:
        return 1 if ay > 0 else -1
    if abs(ax) > _DUST:
        return -1 if ax > 0 else 1
    return 0


def _parse_or_none(as_of: str | datetime | None) -> datetime | None:
    """``as_of`` as a time, or None when absent or unreadable."""
    try:
        return None if as_of is None else parse_time(as_of)
    except ValueError:
        return None


def _unrun(
    p: TradingParams | None,
    when: datetime | None,
    store: Store | None,
    clock: Clock | None,
    status: str,
    mode: str,
    error: str,
    duration: float,
    notebook_path: str | None,
) -> TickResult:
    """A tick refused or failed before it started: recorded in the store when params and
    as_of are known (never over an ``ok`` row)."""
    if p is not None and when is not None:
        try:
            db = store if store is not None else Store.at(p.state_dir)
            try:
                prev = db.tick_row(when)
                if prev is None or prev.status != TickStatus.OK:
                    db.finish_tick(when, status, (clock or SystemClock()).now(), duration,
                                   mode=mode, message=error, notebook_path=notebook_path)
            finally:
                if store is None:
                    db.close()
        except PairlibError:
            log.exception("could not record the %s tick", status)
    return empty_result(p, when, status, mode, error, duration, notebook_path)


@dataclass
class _Pair:
    """One pair the tick looks at: from the pair set, or an open pair no longer in it."""

    pair_id: str
    y: str
    x: str
    beta: float
    alpha: float
    in_set: bool
    state: PairStateRow | None
    z: float = math.nan
    spread_std: float = math.nan
    problem: str | None = None
    data_note: str | None = None  # unusual data the venue served (jumps, masked old bars)
    z_series: pd.Series | None = None

    @property
    def position(self) -> int:
        return int(self.state.position) if self.state else 0

    @property
    def amounts(self) -> tuple[float, float]:
        if not self.state:
            return 0.0, 0.0
        return self.state.amount("y"), self.state.amount("x")

    @property
    def closing(self) -> Action | None:
        """The close (exit, stop, flatten, exit_no_data) begun and not yet completed."""
        return Action(self.state.closing) if self.state and self.state.closing else None

    @property
    def residual(self) -> bool:
        """Flat by the strategy but with leg amounts left (an incomplete order)."""
        return (self.position == 0 and not self.closing
                and any(abs(a) > _DUST for a in self.amounts))

    @property
    def strategy_state(self) -> PairState:
        if not self.state:
            return PairState()
        pos = int(self.state.position)
        return PairState(position=pos, locked_out=bool(self.state.locked_out) and pos == 0)


class _Tick:
    """One tick's run (internal; see :func:`run`)."""

    def __init__(
        self,
        p: TradingParams,
        db: Store,
        when: datetime,
        clock: Clock,
        live: bool,
        secrets: Secrets,
        notebook_path: str | None,
        *,
        missed: bool,
        missed_entries: bool,
        t0: float,
        preview: bool = False,
    ) -> None:
        self.p, self.db, self.when, self.clock = p, db, when, clock
        self.preview = preview
        self.live, self.secrets, self.notebook_path = live, secrets, notebook_path
        self.t0 = t0
        self.tf = timedelta(milliseconds=timeframe_ms(p.data.timeframe))
        self.pair_set = db.latest_pair_set(when)
        reasons = []
        self.exits_only_why: list[str] = []
        kill, why = kill_switch_active(p.risk)
        if kill:
            reasons.append("kill switch")
            self.exits_only_why.append(why)
        if missed and not missed_entries:
            reasons.append("missed tick")
            self.exits_only_why.append(
                f"missed tick: {iso(when)} is older than the last closed candle; exits only "
                "(missed_tick_entries: true or allow_missed_entries=True to enter)")
        if self.pair_set is None:
            reasons.append("no pair set")
            self.exits_only_why.append("no pair set in the store: exits only")
        self.reasons = reasons
        self.pair_set_refused: str | None = None
        self._set_mode()
        self.signals: dict[str, dict[str, Any]] = {}
        self.mismatches = mismatch_frame([])
        self.z_history = pd.DataFrame()
        self.account: dict[str, float] = {}
        self.touched: set[str] = set()  # pairs whose decision this run has persisted
        self.last_close: dict[str, float] = {}
        self.held_at_start = False
        self.venue_positions: list[Any] = []
        self.unevaluable: dict[str, str] = {}  # open pairs this tick could not evaluate
        self.planned_orders: list[dict[str, Any]] = []

    def _set_mode(self) -> None:
        self.entries_allowed = not self.reasons
        self.mode = (str(TickMode.NORMAL) if not self.reasons
                     else f"{TickMode.EXITS_ONLY}: " + ", ".join(self.reasons))
        if self.preview:
            self.mode = f"{TickMode.PREVIEW} ({self.mode}): no order sent, nothing recorded"

    def _venue(self, stack: contextlib.ExitStack) -> Any:
        """The venue params; a preview runs an in-process simulator on a copy of its account
        file, so that nothing of the venue's state changes either."""
        return scratch_account(self.p.venue, stack) if self.preview else self.p.venue

    def _check_pair_set(self, venue_key: str) -> None:
        """Refuse a pair set built for another market, timeframe or lookback: exits only
        (open pairs keep their own hedge ratios), an incident, and the tick says so."""
        from pairlib.engine.generate import check_pair_set

        if self.pair_set is None:
            return
        try:
            check_pair_set(self.pair_set, self.p, venue_key)
        except ConfigError as e:
            self.pair_set_refused = str(e)
            self._incident("pair_set_refused", None, str(e))
            self.pair_set = None
            self.reasons.append("pair set refused")
            self.exits_only_why.append(f"pair set refused: {e}")
            self._set_mode()

    # ------------------------------------------------------------------ run
    def run(self) -> TickResult:
        p, db, when = self.p, self.db, self.when
        log.info("tick %s starting (%s, venue %s)", iso(when), self.mode, p.venue.kind)
        if not self.preview:
            earlier = db.tick_row(when)
            db.start_tick(when, self.clock.now(), self.mode,
                          self.pair_set.id if self.pair_set else None, self.notebook_path,
                          notify=self._kill_note())
            failpoint("tick.after_start")
            self._note_rerun(earlier)
        status, error = (TickStatus.PREVIEW if self.preview else TickStatus.OK), None
        try:
            with contextlib.ExitStack() as stack:
                ex = stack.enter_context(open_exchange(
                    self._venue(stack), when, live=self.live, secrets=self.secrets))
                exposed = self._body(ex)
            if exposed:
                status = TickStatus.DEGRADED
                error = "EXPOSED: " + "; ".join(exposed)
                log.error("tick %s degraded: %s", iso(when), error)
        except PairlibError as e:
            status, error = TickStatus.FAILED, f"{type(e).__name__}: {e}"
            log.error("tick %s failed: %s", iso(when), error)
        except Exception as e:  # noqa: BLE001 - an unattended run reports, never dies silently
            status, error = TickStatus.FAILED, f"unexpected {type(e).__name__}: {e}"
            log.exception("tick %s failed unexpectedly", iso(when))
        duration = time.perf_counter() - self.t0
        if self.preview:
            return self._result(status, error, duration)
        failpoint("tick.before_commit")
        try:
            db.finish_tick(when, status, self.clock.now(), duration, mode=self.mode,
                           message=error, notebook_path=self.notebook_path,
                           notify=self._outcome_note(status, error))
        except PairlibError as e:  # the store itself failed: say so, never raise
            status = TickStatus.FAILED
            error = f"{error + '; ' if error else ''}{type(e).__name__}: {e}"
            log.error("tick %s could not be recorded: %s", iso(when), e)
            return empty_result(p, when, status, self.mode, error, duration,
                                self.notebook_path)
        log.info("tick %s %s in %.2f s", iso(when), status, duration)
        failpoint("tick.after_commit")
        return self._result(status, error, duration)

    def _result(self, status: str, error: str | None, duration: float) -> TickResult:
        rows = list(self.signals.values())
        signals = pd.DataFrame(rows, columns=list(SIGNAL_COLUMNS))
        states = self.db.pair_states()
        return TickResult(
            as_of=self.when, status=status, mode=self.mode, signals=signals,
            z_history=self.z_history,
            orders=(pd.DataFrame(self.planned_orders, columns=list(PLANNED_ORDER_COLUMNS))
                    if self.preview else self.db.orders(tick_as_of=self.when)),
            fills=self.db.fills(self.when), positions=positions_frame(states),
            equity=float(self.account.get("equity", math.nan)), account=dict(self.account),
            equity_history=self.db.equity_history()[["tick_as_of", "equity"]],
            incidents=incident_list(self.db, self.when), mismatches=self.mismatches,
            duration_s=duration,
            error=error,
            thresholds=(self.p.strategy.entry, self.p.strategy.exit, self.p.strategy.stop),
            notebook_path=self.notebook_path,
            pair_set_id=self.pair_set.id if self.pair_set else None, venue=self.p.venue.kind,
        )

    # ------------------------------------------------------------------ body
    def _body(self, ex: Any) -> list[str]:
        """Gather, decide, act, account; returns what is left exposed (empty when the book
        is hedged and matches the venue)."""
        from pairlib.edges.data import load_market_data

        p, db, when = self.p, self.db, self.when
        markets = ex.markets()
        self.rules = {
            s: MarketRules(s, m.amount_step, m.min_amount, m.min_notional, m.contract_size)
            for s, m in markets.items()
        }
        self.ex = ex
        self._check_pair_set(str(ex.venue_key))
        self.executor = Executor(ex, db, when, self.clock, self.rules,
                                 recv_window_s=float(getattr(ex, "recv_window_ms", 5000)) / 1000)
        if not self.preview:
            for note in self.executor.resolve_pending():
                log.info("pending order: %s", note)
            failpoint("tick.after_resolve_pending")

        blocked = self._reconcile(ex)
        failpoint("tick.after_reconcile")

        pairs = self._pairs()
        symbols = sorted({s for pr in pairs for s in (pr.y, pr.x)})
        if symbols:
            bars = max(p.data.min_history_bars, p.strategy.lookback + Z_HISTORY_BARS)
            # Only the bars a decision uses gate a symbol: an older defect cannot freeze
            # an open pair.
            md = load_market_data(ex, symbols, p.data, now=when, bars=bars,
                                  decision_bars=p.strategy.lookback)
            self._signals(pairs, md)

        by_id = {pr.pair_id: pr for pr in pairs}
        views = [self._view(pr) for pr in pairs]
        book = self._book(ex, blocked)
        the_plan = plan(views, book, p.strategy, p.risk)
        if self.preview:
            self._show(the_plan, by_id)
            self._account(ex)
            return []
        failpoint("tick.after_plan")
        self._execute(the_plan, by_id)
        failpoint("tick.after_entries")

        self._finish(by_id)
        failpoint("tick.after_finish")
        self._account(ex)
        failpoint("tick.after_account")
        return self._exposure(ex, by_id)

    # ------------------------------------------------------------------ reconcile
    def _reconcile(self, ex: Any) -> set[str]:
        """Compare the store with the venue; returns the symbols blocked from entries."""
        positions = ex.fetch_positions()
        open_orders = ex.fetch_open_orders()
        foreign = [
            o for o in open_orders
            if not (is_own_client_id(o.client_id)
                    and (self.preview or self.executor.cancel_resting(str(o.client_id), o)))
        ]
        if len(foreign) < len(open_orders):  # own resting orders were settled: fresh view
            positions = ex.fetch_positions()
        steps = {s: r.amount_step for s, r in self.rules.items()}
        self.held_at_start = bool(positions)
        self.venue_positions = positions
        accepted = self.db.accepted_positions()
        found = reconcile(expected_positions(self.db.pair_states(), accepted), positions,
                          foreign, steps)
        self.mismatches = mismatch_frame(found)
        for m in found:
            self._incident("reconcile_mismatch", m.symbol,
                           f"{m.detail}; no new entry on {m.symbol} until resolved")
        # A symbol with an operator-accepted holding outside any pair takes no new pair
        # entry: a pair trading against it would net out and break its reduce-only exit.
        outside = {s for s, a in accepted.items() if a != 0.0}
        for sym in sorted(outside):
            log.info("reconciliation: %s holds %g outside any pair (operator-accepted); "
                     "no new entry on it", sym, accepted[sym])
        blocked = {m.symbol for m in found} | outside
        open_inc = self.db.incidents(unresolved_only=True)
        if len(open_inc):
            for sym in set(open_inc.loc[open_inc["kind"] == "reconcile_mismatch", "symbol"]):
                if sym not in blocked and not self.preview:
                    self.db.resolve_incidents("reconcile_mismatch", sym)
                    log.info("reconciliation: %s matches again; unblocked", sym)
        return blocked

    def _note_rerun(self, earlier: Any) -> None:
        """Say that this run resumes an earlier run of the same tick, and what that run left.

        A ``running`` row means the earlier run stopped without finishing (killed, crashed,
        the machine lost): ``tick_resumed``. A ``failed`` or ``degraded`` row: ``tick_rerun``.
        Either names the earlier run's start and the orders of this tick it recorded, by
        status, so the operator sees what the re-run took over.
        """
        if earlier is None or earlier.status not in ("running", TickStatus.FAILED,
                                                     TickStatus.DEGRADED):
            return
        orders = self.db.orders(tick_as_of=self.when)
        counts = orders["status"].value_counts().sort_index() if len(orders) else None
        left = ("no order recorded" if counts is None else
                "orders recorded: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        if earlier.status == "running":
            self._incident("tick_resumed", None,
                           f"an earlier run of this tick (started {earlier.started_at}) "
                           f"stopped without finishing (killed or crashed); {left}; this run "
                           "resumes it")
        else:
            why = f": {earlier.message}" if earlier.message else ""
            self._incident("tick_rerun", None,
                           f"the earlier run of this tick (started {earlier.started_at}) ended "
                           f"{earlier.status}{why}; {left}; this run resumes it")

    def _incident(self, kind: str, symbol: str | None, detail: str) -> None:
        log.warning("incident %s %s: %s", kind, symbol or "", detail)
        if not self.preview:
            self.db.add_incident(self.when, kind, symbol, detail, self.clock.now())

    # ------------------------------------------------------------------ notifications
    # The tick only enqueues, in the transaction of the event (pairlib.app.notify delivers
    # after the job); incidents are enqueued by Store.add_incident itself.
    def _pair_note(self, pr: _Pair, action: str, note: str | None) -> tuple[OutboxEntry, ...]:
        """An entry's or a completed close's notification, keyed by tick, pair and action
        (a resumed tick does not repeat it)."""
        if note is None or self.preview:
            return ()
        z = "" if not math.isfinite(pr.z) else f" at z {pr.z:+.2f}"
        return (OutboxEntry(kind=action if action in _CLOSE_KINDS else "entry",
                            title=f"{action} {pr.pair_id}{z}", body=note,
                            dedupe_key=f"{action}:{iso(self.when)}:{pr.pair_id}",
                            run=iso(self.when), report=self.notebook_path),)

    def _kill_note(self) -> tuple[OutboxEntry, ...]:
        """"Kill switch engaged", once per engagement: only when the last tick before this
        one did not run under it."""
        if "kill switch" not in self.reasons:
            return ()
        prev = self.db.last_tick(before=self.when)
        if prev is not None and "kill switch" in str(prev.mode or ""):
            return ()
        return (OutboxEntry(kind="kill_switch", title="kill switch engaged",
                            body=f"{self.exits_only_why[0]}; ticks act on exits only until it "
                                 "is off", dedupe_key=f"kill_switch:{iso(self.when)}",
                            run=iso(self.when), report=self.notebook_path),)

    def _outcome_note(self, status: str, error: str | None) -> tuple[OutboxEntry, ...]:
        """A failed or degraded tick's notification, keyed like
        :func:`pairlib.app.notify.job_failed` (report path and status), so the job reporting
        the same run adds no second message."""
        if status not in (TickStatus.FAILED, TickStatus.DEGRADED):
            return ()
        key = (f"run:{Path(self.notebook_path).resolve()}:{status}" if self.notebook_path
               else f"tick:{iso(self.when)}:{status}:{iso(self.clock.now())}")
        return (OutboxEntry(kind=f"tick_{status}", title=f"tick {status}",
                            body=error or status, dedupe_key=key, run=iso(self.when),
                            report=self.notebook_path),)

    # ------------------------------------------------------------------ pairs and data
    def _pairs(self) -> list[_Pair]:
        by_id = {st.pair_id: st for st in self.db.pair_state_rows()}
        out: list[_Pair] = []
        seen: set[str] = set()
        if self.pair_set is not None:
            for r in self.pair_set.pairs.to_dict("records"):
                pid = str(r["pair_id"])
                st = by_id.get(pid)
                # An open pair keeps the hedge ratio it was opened with until it is flat.
                kept = st if st is not None and st.held else None
                beta = float(kept.beta) if kept else float(r["beta"])
                alpha = float(kept.alpha) if kept else float(r["alpha"])
                out.append(_Pair(pid, str(r["y"]), str(r["x"]), beta, alpha, True, st))
                seen.add(pid)
        for pid, st in by_id.items():
            if pid not in seen and st.held:
                out.append(_Pair(pid, st.y, st.x, float(st.beta), float(st.alpha), False, st))
        return out

    def _signals(self, pairs: list[_Pair], md: Any) -> None:
        closes: pd.DataFrame = md.closes
        quality: pd.DataFrame = md.quality
        last_open = self.when - self.tf
        lookback = self.p.strategy.lookback
        history: dict[str, pd.Series] = {}
        for pr in pairs:
            problem = None
            for leg in (pr.y, pr.x):
                if leg in md.dropped:
                    problem = f"{leg} dropped from the data: {md.dropped[leg]}"
                elif leg in quality.index and int(quality.loc[leg, "lag_bars"] or 0) > 0:
                    problem = (f"{leg} is stale: its last {int(quality.loc[leg, 'lag_bars'])} "
                               "candle(s) missing")
                elif leg not in closes.columns:
                    problem = f"{leg} has no data"
                if problem:
                    break
            if problem is None and (len(closes) == 0 or closes.index[-1] != last_open):
                problem = f"data does not reach the candle closing at {iso(self.when)}"
            if problem is None:
                self.last_close[pr.y] = float(closes[pr.y].iloc[-1])
                self.last_close[pr.x] = float(closes[pr.x].iloc[-1])
                s = spread_of(np.log(closes[pr.y].to_numpy()), np.log(closes[pr.x].to_numpy()),
                              pr.beta, pr.alpha)
                z = zscore_of(s, lookback)  # the history shown in the report
                pr.z, pr.spread_std = latest_signal(s, lookback)  # what is traded
                if not math.isfinite(pr.z):
                    problem = "z-score is NaN (too little or flat history)"
                zs = pd.Series(z, index=closes.index + self.tf)
                history[pr.pair_id] = zs.iloc[-Z_HISTORY_BARS:]
            pr.problem = problem
            notes = [f"{leg}: {quality.loc[leg, 'notes']}" for leg in (pr.y, pr.x)
                     if leg in quality.index and "notes" in quality.columns
                     and str(quality.loc[leg, "notes"] or "")]
            pr.data_note = "; ".join(notes) or None
        if history:
            self.z_history = pd.DataFrame(history)
            self.z_history.index.name = "close_time"

    # ------------------------------------------------------------------ decisions
    def _view(self, pr: _Pair) -> PairView:
        """The pair as :func:`pairlib.core.portfolio.plan` sees it. A pair already decided by an
        earlier run of this tick keeps that run's signal row."""
        decided = (pr.closing is None and pr.state is not None
                   and pr.state.updated_tick == iso(self.when))
        if decided:
            prev = self.db.decisions(self.when)
            row = prev.loc[prev["pair_id"] == pr.pair_id]
            if len(row):
                r = row.iloc[0]
                self._signal_row(pr, r["z"], r["signal"], str(r["action"]), str(r["reason"]),
                                 pr.position)
            log.info("tick %s %s: already processed by an earlier run of this tick",
                     iso(self.when), pr.pair_id)
        resumed = None
        if pr.residual:
            for action in (Action.ENTER_LONG, Action.ENTER_SHORT):
                if self._entry_started_this_tick(pr, action):
                    resumed = action
        return PairView(
            pr.pair_id, pr.y, pr.x, pr.beta, pr.alpha, pr.strategy_state, pr.amounts,
            z=pr.z, spread_std=pr.spread_std, in_set=pr.in_set, problem=pr.problem,
            closing=pr.closing, unevaluable_before=self._unevaluable_before(pr),
            resumed_entry=resumed, decided=decided, note=pr.data_note,
            risk_budget=float(pr.state.risk_budget or 0.0) if pr.state else 0.0,
            pnl=self._pnl_at_close(pr))

    def _pnl_at_close(self, pr: _Pair) -> float:
        """The pair's PnL at the close acted on, its legs valued from their entry prices."""
        st = pr.state
        cy, cx = self.last_close.get(pr.y), self.last_close.get(pr.x)
        if st is None or not st.entry_price_y or not st.entry_price_x or cy is None \
                or cx is None:
            return math.nan
        return (st.amount("y") * (cy - float(st.entry_price_y))
                + st.amount("x") * (cx - float(st.entry_price_x)))

    def _unevaluable_before(self, pr: _Pair) -> int:
        """Consecutive earlier ticks whose decision for this open pair had no z."""
        if pr.problem is None or pr.position == 0:
            return 0
        streak = 0
        for z in self.db.recent_decision_z(pr.pair_id, self.when,
                                           self.p.risk.unevaluable_exit_bars + 1):
            if z is not None and z == z:
                break
            streak += 1
        return streak

    def _book(self, ex: Any, blocked: set[str]) -> Book:
        """The account as the plan sees it, valued at the close of the candle acted on.

        The venue values open positions at its mark price; sizing uses the close the z-score
        saw (as the backtest does, so research and live size alike): equity is the venue's
        wallet plus each position's PnL at that close, gross exposure each position's size at
        that close. A symbol without a close keeps the venue's valuation.
        """
        balance = ex.fetch_balance()
        equity = float(balance.equity)
        gross = 0.0
        for pos in self.venue_positions:
            close = self.last_close.get(pos.symbol)
            if close is None:
                gross += abs(float(pos.notional))
                continue
            equity += (float(pos.contracts) * (close - float(pos.entry_price))
                       - float(pos.unrealized_pnl))
            gross += abs(float(pos.contracts)) * close
        return Book(
            equity=equity, gross_notional=gross, prices=dict(self.last_close), rules=self.rules,
            blocked=frozenset(blocked), entries_allowed=self.entries_allowed,
            exits_only_why="; ".join(self.exits_only_why))

    def _show(self, the_plan: Plan, by_id: Mapping[str, _Pair]) -> None:
        """A preview: every pair's planned action and reason, and the orders the tick would
        send (closes at the legs held, entries at the plan's sizes)."""
        for c in (*the_plan.closes, *the_plan.flattens):
            pr = by_id[c.pair_id]
            d = c.decision
            self._signal_row(pr, pr.z, d.position, str(d.action), d.reason, d.state.position)
            for leg in self._close_legs(pr, str(d.action)):
                self._plan_order(leg)
        for e in the_plan.entries:
            pr = by_id[e.pair_id]
            d = e.decision
            long_spread = d.position > 0
            self._signal_row(pr, pr.z, d.position, str(d.action),
                             f"{d.reason}; {_sizing_text(e.sizing)}", d.position)
            self._plan_order(LegOrder(pr.pair_id, "y", str(d.action), pr.y,
                                      "buy" if long_spread else "sell", e.sizing.amount_y))
            self._plan_order(LegOrder(pr.pair_id, "x", str(d.action), pr.x,
                                      "sell" if long_spread else "buy", e.sizing.amount_x))
        for sk in the_plan.skips:
            pr = by_id[sk.pair_id]
            self._signal_row(pr, pr.z, sk.decision.position, sk.action, sk.reason,
                             sk.state.position)

    def _plan_order(self, leg: LegOrder) -> None:
        self.planned_orders.append({
            "pair_id": leg.pair_id, "leg": leg.leg, "action": leg.action, "symbol": leg.symbol,
            "side": leg.side, "amount": leg.amount, "reduce_only": int(leg.reduce_only),
            "status": TickStatus.PREVIEW})

    def _execute(self, the_plan: Plan, by_id: Mapping[str, _Pair]) -> None:
        """Carry out the plan: closes, then flattens, then entries; record the rest."""
        for c in the_plan.closes:
            pr = by_id[c.pair_id]
            out = self._exit(pr, c.decision)
            if c.decision.action == Action.EXIT_NO_DATA:
                self._incident("pair_unevaluable", pr.y,
                               f"{pr.pair_id}: {c.decision.reason}; {_close_text(out)}")
        for f in the_plan.flattens:
            pr = by_id[f.pair_id]
            self._exit(pr, f.decision)
            if f.abandoned:
                after = self.db.pair_state(pr.pair_id)
                left = after is not None and any(abs(after.amount(leg)) > _DUST
                                                 for leg in ("y", "x"))
                self._incident("resumed_entry_abandoned", pr.y,
                               f"{pr.pair_id}: an earlier run of this tick filled part of an "
                               f"entry that this run does not complete; {f.decision.reason}"
                               + ("; flattening INCOMPLETE" if left else "; flattened"))
        failpoint("tick.after_closes")
        for e in the_plan.entries:
            self._enter(by_id[e.pair_id], e.decision, e.sizing)
        for sk in the_plan.skips:
            pr = by_id[sk.pair_id]
            if sk.alert:
                self._incident("pair_unevaluable", pr.y, f"{pr.pair_id}: {sk.reason}")
                self.unevaluable[pr.pair_id] = str(pr.problem)
            self._persist(pr, sk.state, sk.decision, sk.action, sk.reason)

    def _signal_row(self, pr: _Pair, z: Any, signal: Any, action: str, reason: str,
                    position: int) -> None:
        zf = float(z) if z is not None and np.isfinite(float(z)) else math.nan
        st = pr.state
        self.signals[pr.pair_id] = {
            "pair_id": pr.pair_id, "y": pr.y, "x": pr.x, "z": zf,
            "signal": None if signal is None or signal != signal else int(signal),
            "action": action, "reason": reason, "position": int(position),
            "entry_time": st.entry_time if st else None, "entry_z": st.entry_z if st else None,
        }

    def _persist(self, pr: _Pair, state: PairState, d: Decision, action: str, reason: str,
                 extra: Mapping[str, Any] | None = None, note: str | None = None) -> None:
        """Store the pair's new state and its decision (one row each); ``note`` (an
        entry's or a completed close's text) is enqueued as a notification in the state's
        transaction."""
        row: dict[str, Any] = {
            "pair_id": pr.pair_id, "y": pr.y, "x": pr.x, "beta": pr.beta, "alpha": pr.alpha,
            "position": int(state.position), "locked_out": int(state.locked_out),
            "updated_tick": iso(self.when),
        }
        if pr.in_set and self.pair_set is not None:
            row["pair_set_id"] = self.pair_set.id
        if extra:
            row.update(extra)
        self.db.save_pair_state(row, self._pair_note(pr, action, note), self.clock.now())
        z = pr.z if pr.problem is None else None
        self.db.save_decision(self.when, pr.pair_id, z, d.position, action, reason)
        log.info("tick %s %s z=%s %s: %s", iso(self.when), pr.pair_id,
                 "nan" if z is None else f"{z:.3f}", action, reason)
        self.touched.add(pr.pair_id)
        pr.state = self.db.pair_state(pr.pair_id)
        self._signal_row(pr, z, d.position, action, reason, state.position)

    def _ensure_state_row(self, pr: _Pair) -> None:
        """A pair_state row must exist before any of the pair's orders fill."""
        if pr.state is None:
            self.db.save_pair_state({"pair_id": pr.pair_id, "y": pr.y, "x": pr.x,
                                     "beta": pr.beta, "alpha": pr.alpha})
            pr.state = self.db.pair_state(pr.pair_id)

    def _close_legs(self, pr: _Pair, action: str) -> list[LegOrder]:
        st = self.db.pair_state(pr.pair_id)
        legs = []
        for leg, sym in (("y", pr.y), ("x", pr.x)):
            amt = st.amount(leg) if st is not None else 0.0
            if abs(amt) > _DUST:
                legs.append(LegOrder(pr.pair_id, leg, action, sym, "sell" if amt > 0 else "buy",
                                     abs(amt), reduce_only=True))
        return legs

    # ------------------------------------------------------------------ actions
    def _exit(self, pr: _Pair, d: Decision) -> PairOutcome | None:
        """Close both legs reduce-only (exit, stop, closing an unevaluable pair, or
        completing an earlier close); returns the executor's outcome (None when no leg was
        held, so nothing was sent).

        The pair is recorded as *closing* before any order (a crash leaves a close that the
        next run completes) and as flat only once the venue holds none of its legs; a close
        that stays incomplete after the executor's retries keeps the pair open and closing.

        A leg on a market the venue no longer lists (delisted) blocks the whole close: no
        leg is sent, because closing the healthy leg alone would leave the delisted one
        naked, whereas the pair as it stands is hedged (:meth:`Executor.close`). The pair
        stays open and closing, a ``close_blocked_delisted`` incident names the symbol and
        what the operator must do (close it on the venue by hand, then
        ``pairlib reconcile --accept SYMBOL --force``), and the tick ends ``degraded``;
        every later tick tries the close again and stays blocked until the operator acts.
        The same holds for a market delisted after the tick loaded its market list; if it
        is found only once another leg of the close has filled, the remaining leg is naked
        (a ``close_naked_delisted`` incident) and the tick ends ``degraded`` saying so.
        """
        self._ensure_state_row(pr)
        opened = pr.position if pr.position != 0 else _side_of(pr.amounts)
        closing = PairState(opened) if opened != 0 else PairState()
        self._persist(pr, closing, d, d.action, d.reason, extra={"closing": d.action})
        failpoint("tick.exit_after_closing_mark")
        legs = self._close_legs(pr, d.action)
        out = self.executor.close(pr.pair_id, d.action, legs) if legs else None
        failpoint("tick.exit_before_flat")
        if out is None or out.ok:
            pnl = self._pnl_at_close(pr)
            self._persist(pr, d.state, d, d.action, d.reason, extra={"closing": None},
                          note=d.reason + ("" if math.isnan(pnl) else
                                           f"; PnL at the bar's close {pnl:+,.2f} USDT"))
        elif out.blocked:
            self._persist(pr, closing, d, d.action,
                          f"{d.reason}; {out.message}: the pair stays open and closing",
                          extra={"closing": d.action})
        else:
            self._persist(pr, closing, d, d.action,
                          f"{d.reason}; {out.message}: the pair stays open and its close is "
                          "retried next tick", extra={"closing": d.action})
        return out

    def _finish(self, by_id: Mapping[str, _Pair]) -> None:
        """Before the tick ends: re-check every order whose outcome is unknown, then close
        the legs an incomplete entry left (now that nothing may still fill) or mark them
        for closing next tick."""
        for note in self.executor.recheck_unresolved():
            log.info("re-check: %s", note)
        pending = self.db.orders(statuses=sorted(UNRESOLVED_STATUSES))
        waiting = set(pending["pair_id"]) if len(pending) else set()
        for pid, pr in by_id.items():
            pr.state = self.db.pair_state(pid)
            if pid not in self.touched or not pr.residual:
                continue
            prior = self.signals.get(pid, {}).get("reason") or ""
            if pid in waiting:
                d = Decision(0, Action.FLATTEN, prior, PairState())
                self._persist(pr, PairState(_side_of(pr.amounts)), d, Action.FLATTEN,
                              f"{prior}; legs left while an order's outcome is unknown: "
                              "closed once it is known", extra={"closing": Action.FLATTEN})
                continue
            self._exit(pr, Decision(0, Action.FLATTEN,
                                    f"{prior}; closing the legs an incomplete entry left",
                                    pr.strategy_state if pr.position == 0 else PairState()))

    def _exposure(self, ex: Any, by_id: Mapping[str, _Pair]) -> list[str]:
        """What the book has exposed at the end of the tick: orders of unknown outcome,
        pairs with a leg missing or a close incomplete, open pairs not evaluated, and any
        difference between the store and the venue's positions (re-read now). A market
        counts as unlisted when the market list loaded at the start of the tick lacks it or
        the venue stopped listing it during the tick (:attr:`Executor.unlisted`)."""
        out: list[str] = []
        gone = self.executor.unlisted
        if self.pair_set_refused:
            out.append(f"no entries: {self.pair_set_refused}")
        pending = self.db.orders(statuses=sorted(UNRESOLVED_STATUSES))
        for r in pending.to_dict("records") if len(pending) else []:
            out.append(f"order {r['client_id']} ({r['action']} {r['side']} {r['amount']:g} "
                       f"{r['symbol']}) outcome unknown")
        states = self.db.pair_states()
        for r in states.to_dict("records") if len(states) else []:
            ay, ax = float(r["amount_y"] or 0.0), float(r["amount_x"] or 0.0)
            legs = f"{r['y']} {ay:+g}, {r['x']} {ax:+g}"
            unlisted = [s for s, a in ((r["y"], ay), (r["x"], ax))
                        if abs(a) > _DUST and (s not in self.rules or s in gone)]
            naked = (abs(ay) > _DUST) != (abs(ax) > _DUST)
            if r.get("closing") and unlisted:
                out.append(f"{r['pair_id']}: {r['closing']} BLOCKED, legs open ({legs})"
                           + (", one leg only, NAKED" if naked else "") + ": "
                           f"{', '.join(unlisted)} not listed by the venue (delisted); close "
                           "it on the venue by hand, then "
                           + ", ".join(f"`pairlib reconcile --accept {s} --reason TEXT "
                                       "--force`" for s in unlisted))
            elif r.get("closing"):
                out.append(f"{r['pair_id']}: {r['closing']} incomplete, legs open ({legs})")
            elif (abs(ay) > _DUST) != (abs(ax) > _DUST):
                out.append(f"{r['pair_id']}: one leg only, NAKED ({legs})")
            elif int(r["position"]) == 0 and (abs(ay) > _DUST or abs(ax) > _DUST):
                out.append(f"{r['pair_id']}: flat with legs still open ({legs})")
        for pid, why in sorted(self.unevaluable.items()):
            out.append(f"{pid}: open but not evaluated ({why})")
        try:
            positions = ex.fetch_positions()
        except ExchangeError as e:
            out.append(f"the venue's positions could not be re-read: {e}")
            return out
        steps = {s: r.amount_step for s, r in self.rules.items()}
        found = reconcile(expected_positions(states, self.db.accepted_positions()), positions,
                          (), steps)
        out.extend(f"{m.symbol}: store and venue differ ({m.detail})" for m in found)
        return out

    def _entry_started_this_tick(self, pr: _Pair, action: str) -> bool:
        orders = self.db.orders(tick_as_of=self.when)
        if orders.empty:
            return False
        mine = orders[(orders["pair_id"] == pr.pair_id) & (orders["action"] == action)]
        return not mine.empty

    def orders_sent(self) -> bool:
        """Whether this run has recorded any order of this tick."""
        return not self.db.orders(tick_as_of=self.when).empty

    def _enter(self, pr: _Pair, d: Decision, sizing: Sizing) -> None:
        amount_y, amount_x = sizing.amount_y, sizing.amount_x
        self._ensure_state_row(pr)
        long_spread = d.position > 0
        legs = (
            LegOrder(pr.pair_id, "y", d.action, pr.y, "buy" if long_spread else "sell",
                     amount_y),
            LegOrder(pr.pair_id, "x", d.action, pr.x, "sell" if long_spread else "buy",
                     amount_x),
        )
        out = self.executor.enter(pr.pair_id, d.action, legs)
        failpoint("tick.entry_before_persist")
        detail = f"y {legs[0].side} {amount_y:g}, x {legs[1].side} {amount_x:g}, " \
            + _sizing_text(sizing)
        if out.ok:
            fy, fx = out.legs
            self._persist(pr, d.state, d, d.action, f"{d.reason}; {detail}", extra={
                "entry_z": pr.z, "entry_time": iso(self.when),
                "entry_price_y": fy.average, "entry_price_x": fx.average,
                "spread_std": pr.spread_std, "risk_budget": sizing.risk_amount,
            }, note=f"{d.reason}; filled y {fy.filled:g} {pr.y} at {fy.average}, "
                    f"x {fx.filled:g} {pr.x} at {fx.average}; {_sizing_text(sizing)}")
        else:
            self._persist(pr, pr.strategy_state, d, "none",
                          f"{d.reason}; entry failed: {out.message}")

    # ------------------------------------------------------------------ account
    def _account(self, ex: Any) -> None:
        balance = ex.fetch_balance()
        positions = ex.fetch_positions() if self.orders_sent() else self.venue_positions
        funding = (self._funding(ex, self.held_at_start or bool(positions))
                   if not self.preview else self._funding_total())
        fills = self.db.fills()
        self.account = {
            "equity": float(balance.equity), "free": float(balance.free),
            "used": float(balance.used),
            "realized_pnl": realized_pnl(fills) + funding,
            "unrealized_pnl": float(sum(pos.unrealized_pnl for pos in positions)),
            "gross_notional": float(sum(abs(pos.notional) for pos in positions)),
            "funding": funding,
        }
        a = self.account
        if self.preview:
            return
        self.db.save_equity(self.when, a["equity"], a["free"], a["used"], a["realized_pnl"],
                            a["unrealized_pnl"], a["gross_notional"])

    def _funding(self, ex: Any, held: bool) -> float:
        """Record new funding payments; returns the total recorded so far.

        The venue is asked only when positions were held and a funding time (every 8 h
        from 00:00 UTC) fell within the candle acted on; each ask covers everything since
        the last payment recorded, so skipped ticks lose nothing.
        """
        end = to_ms(self.when)
        tf_ms = int(self.tf.total_seconds() * 1000)
        crossed = (end // _FUNDING_MS) * _FUNDING_MS > end - tf_ms  # in (as_of - tf, as_of]
        payments: list[Any] = []
        if held and crossed:
            seen = self.db.funding()
            since = to_ms(parse_time(str(seen["ts"].max()))) + 1 if len(seen) else None
            try:
                payments = ex.fetch_funding_history(None, since)
            except (ExchangeError, AttributeError) as e:
                log.warning("funding history unavailable: %s", e)
        for f in payments:
            if f.timestamp is not None:
                self.db.add_funding(f.symbol, f.amount, from_ms(int(f.timestamp)))
        return self._funding_total()

    def _funding_total(self) -> float:
        """Funding recorded so far (all ticks)."""
        return self.db.funding_total()

