"""What one tick did: :class:`TickResult` (the tick notebook's input and
:func:`pairlib.engine.tick.run`'s answer) and the results built from the store alone: a tick that
did not trade (refused, locked out) and a tick that already ran."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import pandas as pd

from pairlib.clock import iso
from pairlib.config import TradingParams
from pairlib.edges.store import Store, TickRow
from pairlib.engine.reconcile import mismatch_frame
from pairlib.errors import TickFailed

__all__ = [
    "OK_STATUSES",
    "POSITION_COLUMNS",
    "SIGNAL_COLUMNS",
    "Z_HISTORY_BARS",
    "TickFailed",
    "TickMode",
    "TickResult",
    "TickStatus",
    "already_ran_result",
    "empty_result",
    "incident_list",
    "positions_frame",
]

Z_HISTORY_BARS = 120
"""Bars of z-score history kept per pair for the report's charts."""
SIGNAL_COLUMNS = ("pair_id", "y", "x", "z", "signal", "action", "reason", "position",
                  "entry_time", "entry_z")
"""Columns of :attr:`TickResult.signals`."""
POSITION_COLUMNS = ("pair_id", "y", "x", "position", "closing", "amount_y", "amount_x", "entry_z",
                    "entry_time", "entry_price_y", "entry_price_x", "beta", "updated_tick")
"""Columns of :attr:`TickResult.positions`."""


class TickStatus(StrEnum):
    """How a tick ended (stored in ``ticks.status`` as the string value)."""

    OK = "ok"  # the book is hedged and matches the venue
    ALREADY_RAN = "already_ran"  # an ok tick for this candle exists: nothing done
    DEGRADED = "degraded"  # finished, but something is exposed (see the error)
    FAILED = "failed"
    REFUSED = "refused"  # bad params or as_of, or a live-guard refusal: nothing sent
    PREVIEW = "preview"  # decisions and sizes computed; no order, nothing recorded
    RUNNING = "running"  # in the store only: started and not finished (or crashed)


class TickMode(StrEnum):
    """What a tick may do; an exits-only mode's reasons follow after ``": "``."""

    NORMAL = "normal"
    EXITS_ONLY = "exits_only"
    REFUSED = "refused"
    PREVIEW = "preview"


OK_STATUSES: Final = frozenset({TickStatus.OK, TickStatus.ALREADY_RAN, TickStatus.PREVIEW})
"""Statuses after which nothing is exposed and the run counts as successful."""


@dataclass(frozen=True, eq=False)
class TickResult:
    """Everything one tick did, for the report and the caller.

    Attributes
    ----------
    as_of : datetime or None
        The tick (close time of the candle acted on); None when ``as_of`` was invalid.
    status : str
        ``ok``, ``already_ran``, ``failed`` or ``refused``.
    mode : str
        ``normal`` or ``exits_only: <why>`` (kill switch, missed tick, no pair set).
    signals : DataFrame
        One row per pair: :data:`SIGNAL_COLUMNS` (``signal`` is the strategy's target
        position, ``action`` what was done, ``position`` the position after the tick,
        ``entry_time``/``entry_z`` the pair's latest entry, if any).
    z_history : DataFrame
        z-scores of the last :data:`Z_HISTORY_BARS` candles, one column per pair; index:
        candle close times.
    orders, fills : DataFrame
        This tick's orders (client ids, exchange ids, statuses) and fills.
    positions : DataFrame
        Open pairs (and residual legs) after the tick, from the store.
    equity : float
        Account equity at the end of the tick (NaN when unknown).
    account : dict
        ``equity``, ``free``, ``used``, ``realized_pnl`` (fills, net of fees, plus
        funding), ``unrealized_pnl``, ``gross_notional``, ``funding``.
    equity_history : DataFrame
        ``tick_as_of``, ``equity`` of every tick so far (from the store).
    incidents : list of dict
        ``kind``, ``symbol``, ``detail`` of every incident of this tick.
    mismatches : DataFrame
        Reconciliation mismatches found at the start of the tick
        (:data:`pairlib.engine.reconcile.MISMATCH_COLUMNS`).
    duration_s : float
    error : str or None
        Why the tick failed or was refused.
    thresholds : tuple of float
        ``(entry, exit, stop)`` for the charts.
    notebook_path : str or None
    pair_set_id : int or None
    venue : str
        The venue kind.
    """

    as_of: datetime | None
    status: str
    mode: str
    signals: pd.DataFrame
    z_history: pd.DataFrame
    orders: pd.DataFrame
    fills: pd.DataFrame
    positions: pd.DataFrame
    equity: float
    account: dict[str, float] = field(default_factory=dict)
    equity_history: pd.DataFrame = field(default_factory=pd.DataFrame)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    mismatches: pd.DataFrame = field(default_factory=lambda: mismatch_frame([]))
    duration_s: float = 0.0
    error: str | None = None
    thresholds: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    notebook_path: str | None = None
    pair_set_id: int | None = None
    venue: str = ""

    @property
    def ok(self) -> bool:
        """True for ``ok``, ``already_ran`` and ``preview``."""
        return self.status in OK_STATUSES

    def raise_for_status(self) -> None:
        """Raise :class:`TickFailed` when the tick failed or was refused."""
        if not self.ok:
            raise TickFailed(f"tick {self.status}: {self.error}")

    def scraps(self) -> dict[str, Any]:
        """Summary values for scrapbook: Python scalars, None when unknown (glue the dict
        whole, or the non-None values one by one: scrapbook cannot glue a bare None)."""
        return {
            "status": self.status,
            "mode": self.mode,
            "as_of": None if self.as_of is None else iso(self.as_of),
            "equity": None if not math.isfinite(self.equity) else float(self.equity),
            "duration_s": float(self.duration_s),
            "error": self.error,
            "n_orders": int(len(self.orders)),
            "n_incidents": int(len(self.incidents)),
            "n_mismatches": int(len(self.mismatches)),
        }



def empty_result(
    p: TradingParams | None,
    when: datetime | None,
    status: str,
    mode: str,
    error: str | None,
    duration: float,
    notebook_path: str | None,
) -> TickResult:
    """A result with no signals, orders or positions: a refused tick, or one locked out."""
    th = (p.strategy.entry, p.strategy.exit, p.strategy.stop) if p is not None else (
        math.nan, math.nan, math.nan)
    return TickResult(
        as_of=when, status=status, mode=mode,
        signals=pd.DataFrame(columns=list(SIGNAL_COLUMNS)), z_history=pd.DataFrame(),
        orders=pd.DataFrame(), fills=pd.DataFrame(),
        positions=pd.DataFrame(columns=list(POSITION_COLUMNS)), equity=math.nan,
        duration_s=duration, error=error, thresholds=th, notebook_path=notebook_path,
        venue=p.venue.kind if p is not None else "",
    )


def already_ran_result(
    p: TradingParams, db: Store, when: datetime, row: TickRow, duration: float
) -> TickResult:
    """The report of a tick that already ran, from the store (no venue call)."""
    states = db.pair_states()
    dec = db.decisions(when)
    signals = dec.rename(columns={"tick_as_of": "as_of"})
    if len(signals) and len(states):
        info = states.set_index("pair_id")
        for col in ("y", "x", "position", "entry_time", "entry_z"):
            signals[col] = signals["pair_id"].map(info[col])
    signals = signals.reindex(columns=list(SIGNAL_COLUMNS))
    account = db.equity_at(when)
    return TickResult(
        as_of=when, status=TickStatus.ALREADY_RAN, mode=str(row.mode or TickMode.NORMAL),
        signals=signals, z_history=pd.DataFrame(), orders=db.orders(tick_as_of=when),
        fills=db.fills(when), positions=positions_frame(states),
        equity=account.get("equity", math.nan), account=account,
        equity_history=db.equity_history()[["tick_as_of", "equity"]],
        incidents=incident_list(db, when), duration_s=duration,
        error=None, thresholds=(p.strategy.entry, p.strategy.exit, p.strategy.stop),
        notebook_path=row.notebook_path, pair_set_id=row.pair_set_id,
        venue=p.venue.kind,
    )


def incident_list(db: Store, when: datetime) -> list[dict[str, Any]]:
    """Every incident recorded for this tick (by any run of it)."""
    inc = db.incidents(when)
    return inc[["kind", "symbol", "detail"]].to_dict("records") if len(inc) else []


def positions_frame(states: pd.DataFrame) -> pd.DataFrame:
    """Open pairs and residual legs of the store's pair states (:data:`POSITION_COLUMNS`)."""
    if states.empty:
        return pd.DataFrame(columns=list(POSITION_COLUMNS))
    held = (states["position"] != 0) | (states["amount_y"] != 0) | (states["amount_x"] != 0)
    return states.loc[held, list(POSITION_COLUMNS)].reset_index(drop=True)
