"""Walk-forward backtest on the live rules: the same pair selection, ``strategy.step`` and
``portfolio.plan`` as the tick, folded over history bar by bar.

At each month start the pair set is chosen by :func:`pairlib.core.pairs.select` from the formation
window that ends at that bar only, before that bar is traded (the order the scheduler runs
pair generation and the tick in). A new pair set is handled exactly as the tick handles it:
pairs that leave the set but are open keep being managed (exits only) with the hedge ratio they
were opened with. Each bar, every pair's z-score comes from
:func:`pairlib.core.strategy.latest_signal` (the tick's own computation) and
:func:`pairlib.core.portfolio.plan` decides closes, flattens and entries with their sizes.

Fill model (also in the report): the tick sends market orders just after the candle close,
so every order fills at the signal bar's close moved against the order by ``slippage_bps``
(buys higher, sells lower) and pays ``taker_fee`` on its notional. Amounts are the plan's,
already rounded to the market's precision and minimums as live (today's market rules applied to
the past). Funding is paid on open legs at every funding time that falls in a bar, from the
venue's funding-rate history, valued as the venue values it: ``-amount * mark * rate``, where
``mark`` is the venue's mark price at that funding time (sent with each rate of its history;
the bar's close where it sent none, reported), and longs pay a positive rate, as on the venue;
a missing rate counts as 0 and is reported. Equity is marked at the bar's close.
Exit reasons: ``reverted`` (|z| back inside the exit band), ``stop``, ``loss limit`` (the loss
reached ``risk.max_loss_multiple`` risk budgets), ``no data`` (the pair could not be evaluated
for ``risk.unevaluable_exit_bars`` bars) and ``end of test`` (open when the test ends; closed at
the last close with costs). There is no rotation exit: like the tick, the backtest keeps
managing an open pair that leaves the pair set until its own exit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pairlib.config import Params, timeframe_ms
from pairlib.core.metrics import Performance, performance
from pairlib.core.portfolio import Book, PairView, pair_id, plan
from pairlib.core.risk import MarketRules
from pairlib.core.strategy import Action, PairState, latest_signal
from pairlib.core.strategy import spread as spread_of

if TYPE_CHECKING:
    from pairlib.venue.exchange import FundingRate

__all__ = ["FUNDING_MS", "TRADE_COLUMNS", "BacktestResult", "FillModel", "History", "Progress",
           "bar_closes", "funding_tables", "gather", "run", "simulate", "walk_forward_selections"]

FUNDING_MS = 8 * 3_600_000
TRADE_COLUMNS = (
    "pair_id", "side", "entry_time", "exit_time", "entry_z", "exit_z", "exit_reason",
    "amount_y", "amount_x", "gross_pnl", "fees", "funding", "net_pnl", "risk_budget",
    "loss_multiple",
)
Progress = Callable[[int, int], None]
"""A progress callback: ``(bars done, bars in total)``, called once per bar traded."""
_REASONS = {Action.EXIT: "reverted", Action.STOP: "stop", Action.EXIT_NO_DATA: "no data",
            Action.LOSS_LIMIT: "loss limit", Action.FLATTEN: "flatten"}


@dataclass(frozen=True)
class FillModel:
    """How the backtest fills: the close of the signal bar, slippage and the taker fee."""

    slippage_bps: float = 2.0
    taker_fee: float = 0.0005

    def price(self, close: float, side: str, tick: float | None = None) -> float:
        """The fill price of a market order of ``side`` at a bar whose close is ``close``:
        moved against the order by the slippage, then to the market's price ``tick`` away
        from the taker (as the venue fills)."""
        move = self.slippage_bps / 10_000.0
        raw = close * (1.0 + move if side == "buy" else 1.0 - move)
        if not tick:
            return raw
        units = round(raw / tick, 6)
        return (math.ceil(units) if side == "buy" else math.floor(units)) * tick


@dataclass
class _Open:
    """One open pair position in the backtest's book."""

    pair_id: str
    y: str
    x: str
    beta: float
    alpha: float
    position: int
    amount_y: float
    amount_x: float
    price_y: float
    price_x: float
    entry_time: datetime
    entry_z: float
    risk_budget: float
    fees: float = 0.0
    funding: float = 0.0


@dataclass(frozen=True)
class BacktestResult:
    """Trades, the equity curve per bar, the pair sets used and the metrics."""

    trades: pd.DataFrame
    equity: pd.Series
    pair_sets: Mapping[datetime, pd.DataFrame]
    metrics: Performance
    fill_model: FillModel
    notes: tuple[str, ...] = ()
    exposure: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)


def bar_closes(closes: pd.DataFrame, start: datetime, end: datetime,
               timeframe: str) -> list[datetime]:
    """The close times of the candles of ``closes`` (indexed by open time) that close
    between ``start`` and ``end`` (both included): the bars a backtest trades."""
    tf = timedelta(milliseconds=timeframe_ms(timeframe))
    return [t for t in closes.index + tf if start <= t <= end]


def _select_or_default(select: Any) -> Any:
    """``select``, or :func:`pairlib.core.pairs.select` when None."""
    if select is None:
        from pairlib.core.pairs import select as select_pairs

        return select_pairs
    return select


def _month_start_selections(
    params: Params,
    closes: pd.DataFrame,
    bars: Sequence[datetime],
    quote_volume: pd.DataFrame | None,
    select: Any,
) -> Iterator[tuple[datetime, Any]]:
    """``(bar, selection)`` at the first of ``bars`` in each calendar month, lazily (the
    backtest selects a month's pairs only when it reaches that month). ``closes`` must be
    sorted; the window is the ``formation_bars + lookback`` candles that close at the bar."""
    tf = timedelta(milliseconds=timeframe_ms(params.data.timeframe))
    need = params.selection.formation_bars + params.strategy.lookback
    select = _select_or_default(select)
    month = None
    for t in bars:
        if month == (t.year, t.month):
            continue
        month = (t.year, t.month)
        i_last = int(closes.index.get_loc(t - tf))
        window = closes.iloc[max(0, i_last + 1 - need): i_last + 1]
        qv = None if quote_volume is None else quote_volume.loc[window.index]
        yield t, select(window, params, qv)


def walk_forward_selections(
    params: Params,
    closes: pd.DataFrame,
    start: datetime,
    end: datetime,
    quote_volume: pd.DataFrame | None = None,
    select: Any = None,
) -> dict[datetime, Any]:
    """The pair selection of every month start between ``start`` and ``end``, exactly as
    :func:`simulate` makes it: at the first bar of each calendar month, ``select`` on the
    ``formation_bars + lookback`` candles that close at that bar (nothing later).

    Parameters
    ----------
    params : Params
        Its ``selection`` section, ``strategy.lookback`` and ``data.timeframe`` are used.
    closes : DataFrame
        Closes by candle open time, one column per symbol.
    start, end : datetime
        The first and last bar traded (candle close times).
    quote_volume : DataFrame, optional
        Aligned with ``closes``, for the selection's volume filter.
    select : callable, optional
        ``select(prices, params, quote_volume) -> Selection``; default
        :func:`pairlib.core.pairs.select`.

    Returns
    -------
    dict
        Month-start bar (close time) -> the :class:`~pairlib.core.pairs.Selection`, in time
        order.
    """
    closes = closes.sort_index()
    bars = bar_closes(closes, start, end, params.data.timeframe)
    return dict(_month_start_selections(params, closes, bars, quote_volume, select))


def simulate(
    params: Params,
    closes: pd.DataFrame,
    start: datetime,
    end: datetime,
    rules: Mapping[str, MarketRules],
    *,
    quote_volume: pd.DataFrame | None = None,
    funding_rates: Mapping[str, Mapping[int, float]] | None = None,
    fill: FillModel = FillModel(),
    initial_equity: float = 10_000.0,
    select: Any = None,
    price_steps: Mapping[str, float] | None = None,
    funding_marks: Mapping[str, Mapping[int, float]] | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Trade ``closes`` from ``start`` to ``end`` (close times) with the live rules.

    Parameters
    ----------
    params : Params
        Strategy, risk and selection settings (the one params tree).
    closes : DataFrame
        Closed candles' closes, indexed by candle open time (UTC), one column per unified
        symbol; it must reach back a formation window plus a lookback before ``start``.
    start, end : datetime
        The first and last bar traded, as candle close times.
    rules : mapping
        Symbol -> :class:`~pairlib.core.risk.MarketRules` (today's precision and minimums).
    quote_volume : DataFrame, optional
        Per-bar quote volume, aligned with ``closes`` (for the selection's volume filter).
    funding_rates : mapping, optional
        Symbol -> {funding time in ms: rate}.
    funding_marks : mapping, optional
        Symbol -> {funding time in ms: the venue's mark price then}; a funding payment is
        valued at it, as the venue values it. Without it (or where a time is missing, which
        is reported when marks were given) the bar's close is used.
    fill : FillModel
        Slippage and fee.
    initial_equity : float
        Starting equity (quote currency).
    select : callable, optional
        The pair selection, ``select(prices, params, quote_volume) -> Selection``; default
        :func:`pairlib.core.pairs.select` (injectable for tests).
    price_steps : mapping, optional
        Symbol -> price tick; fills are rounded to it away from the taker, as the venue's.
    progress : callable, optional
        Called as ``progress(bars done, bars in total)`` after every bar (see
        :data:`Progress`); the caller throttles its own display.

    Returns
    -------
    BacktestResult
    """
    tf = timedelta(milliseconds=timeframe_ms(params.data.timeframe))
    lookback = params.strategy.lookback
    formation = params.selection.formation_bars
    closes = closes.sort_index()
    bars = bar_closes(closes, start, end, params.data.timeframe)
    if not bars:
        raise ValueError(f"no bar closes between {start} and {end}")
    need = formation + lookback
    have = int(closes.index.get_loc(bars[0] - tf)) + 1
    if have < need:
        raise ValueError(
            f"a backtest from {bars[0]:%Y-%m-%dT%H:%MZ} needs {need} closed candles up to its "
            f"first bar (selection.formation_bars + strategy.lookback) but the data has {have} "
            f"(from {closes.index[0]:%Y-%m-%dT%H:%MZ}): start later, or shorten the windows")
    log_closes = np.log(closes.astype(float))
    rates = funding_rates or {}
    marks = funding_marks
    ticks = price_steps or {}
    notes: list[str] = []
    missing_rates: set[str] = set()
    missing_marks: set[str] = set()

    cash = initial_equity
    book: dict[str, _Open] = {}
    states: dict[str, PairState] = {}
    unevaluable: dict[str, int] = {}
    members: dict[str, dict[str, Any]] = {}  # the pair set's rows by pair id
    pair_sets: dict[datetime, pd.DataFrame] = {}
    trades: list[dict[str, Any]] = []
    decided: list[tuple[datetime, str, float, str, str]] = []
    equity_points: list[float] = []
    exposure_points: list[float] = []
    selections = _month_start_selections(params, closes, bars, quote_volume, select)
    next_start: datetime | None
    next_start, next_selection = next(selections)

    def mark(prices: Mapping[str, float]) -> float:
        unreal = sum(o.amount_y * (prices.get(o.y, o.price_y) - o.price_y)
                     + o.amount_x * (prices.get(o.x, o.price_x) - o.price_x)
                     for o in book.values())
        return cash + unreal

    def close_position(o: _Open, when: datetime, prices: Mapping[str, float], z: float,
                       reason: str) -> None:
        nonlocal cash
        gross = 0.0
        fees = 0.0
        for sym, amt, entry in ((o.y, o.amount_y, o.price_y), (o.x, o.amount_x, o.price_x)):
            side = "sell" if amt > 0 else "buy"
            px = fill.price(prices[sym], side, ticks.get(sym))
            gross += amt * (px - entry)
            fees += abs(amt) * px * fill.taker_fee
        cash += gross - fees
        total_fees = o.fees + fees
        net = gross - total_fees + o.funding
        trades.append({
            "pair_id": o.pair_id, "side": "long" if o.position > 0 else "short",
            "entry_time": o.entry_time, "exit_time": when, "entry_z": o.entry_z, "exit_z": z,
            "exit_reason": reason, "amount_y": o.amount_y, "amount_x": o.amount_x,
            "gross_pnl": gross, "fees": total_fees, "funding": o.funding, "net_pnl": net,
            "risk_budget": o.risk_budget,
            "loss_multiple": (-net / o.risk_budget) if o.risk_budget > 0 else math.nan,
        })
        del book[o.pair_id]

    for k_bar, t in enumerate(bars, 1):
        i_last = closes.index.get_loc(t - tf)  # the candle closing at t
        row = closes.iloc[i_last]
        prices = {s: float(v) for s, v in row.items() if np.isfinite(v) and v > 0}
        # Month start: the pair set chosen from the formation window that ends here.
        if t == next_start:
            chosen = next_selection.chosen
            pair_set = chosen.assign(
                pair_id=[pair_id(str(y), str(x)) for y, x in zip(chosen["y"], chosen["x"],
                                                                  strict=True)]
            )[["pair_id", "y", "x", "beta", "alpha"]]
            members = {str(r["pair_id"]): r for r in pair_set.to_dict("records")}
            pair_sets[t] = chosen
            next_start, next_selection = next(selections, (None, None))
        # Funding at every funding time in (t - tf, t].
        for ft in range(((int((t - tf).timestamp() * 1000)) // FUNDING_MS + 1) * FUNDING_MS,
                        int(t.timestamp() * 1000) + 1, FUNDING_MS):
            for o in book.values():
                for sym, amt in ((o.y, o.amount_y), (o.x, o.amount_x)):
                    rate = rates.get(sym, {}).get(ft)
                    if rate is None:
                        missing_rates.add(sym)
                        continue
                    at = None if marks is None else marks.get(sym, {}).get(ft)
                    if at is None:
                        if marks is not None:
                            missing_marks.add(sym)
                        at = prices.get(sym, 0.0)
                    pay = -amt * at * rate
                    cash += pay
                    o.funding += pay
        # Gather: the pair set's pairs and every open pair outside it.
        views: list[PairView] = []
        zs: dict[str, float] = {}
        ids = sorted(set(members) | set(book))
        for pid in ids:
            held = book.get(pid)
            if held is not None:
                y, x, beta, alpha = held.y, held.x, held.beta, held.alpha
            else:
                r = members[pid]
                y, x, beta, alpha = str(r["y"]), str(r["x"]), float(r["beta"]), float(r["alpha"])
            problem = None
            z = sd = math.nan
            if y not in log_closes.columns or x not in log_closes.columns:
                problem = f"{y if y not in log_closes.columns else x} has no data"
            else:
                ly = log_closes[y].to_numpy()[i_last + 1 - lookback: i_last + 1]
                lx = log_closes[x].to_numpy()[i_last + 1 - lookback: i_last + 1]
                if len(ly) < lookback or not (np.all(np.isfinite(ly)) and np.all(np.isfinite(lx))):
                    problem = "a leg's data is missing in the decision window"
                else:
                    z, sd = latest_signal(spread_of(ly, lx, beta, alpha), lookback)
                    if not math.isfinite(z):
                        problem = "z-score is NaN (too little or flat history)"
            zs[pid] = z
            state = states.get(pid, PairState())
            views.append(PairView(
                pid, y, x, beta, alpha, state,
                (held.amount_y, held.amount_x) if held else (0.0, 0.0), z=z, spread_std=sd,
                in_set=pid in members, problem=problem,
                unevaluable_before=unevaluable.get(pid, 0) if held else 0,
                risk_budget=held.risk_budget if held else 0.0,
                pnl=(held.amount_y * (prices[y] - held.price_y)
                     + held.amount_x * (prices[x] - held.price_x))
                if held and y in prices and x in prices else math.nan))
        gross = sum(abs(o.amount_y) * prices.get(o.y, o.price_y)
                    + abs(o.amount_x) * prices.get(o.x, o.price_x) for o in book.values())
        the_plan = plan(views, Book(equity=mark(prices), gross_notional=gross, prices=prices,
                                    rules=rules), params.strategy, params.risk)
        for c in (*the_plan.closes, *the_plan.flattens):
            decided.append((t, c.pair_id, zs.get(c.pair_id, math.nan), str(c.decision.action),
                            c.decision.reason))
        for e in the_plan.entries:
            capped = f", capped by {e.sizing.capped_by}" if e.sizing.capped_by else ""
            decided.append((t, e.pair_id, zs.get(e.pair_id, math.nan), str(e.decision.action),
                            f"{e.decision.reason}; risk {e.sizing.risk_amount:.2f}{capped}"))
        for sk in the_plan.skips:
            decided.append((t, sk.pair_id, zs.get(sk.pair_id, math.nan), str(sk.action),
                            sk.reason))
        # Execute: closes (and flattens: none arise here, fills are complete), then entries.
        for c in (*the_plan.closes, *the_plan.flattens):
            closing = book.get(c.pair_id)
            if closing is not None:
                close_position(closing, t, prices, zs.get(c.pair_id, math.nan),
                               _REASONS.get(c.decision.action, str(c.decision.action)))
            states[c.pair_id] = c.decision.state
            unevaluable.pop(c.pair_id, None)
        for e in the_plan.entries:
            v = next(v for v in views if v.pair_id == e.pair_id)
            long_spread = e.decision.position > 0
            ay = e.sizing.amount_y if long_spread else -e.sizing.amount_y
            ax = -e.sizing.amount_x if long_spread else e.sizing.amount_x
            py = fill.price(prices[v.y], "buy" if ay > 0 else "sell", ticks.get(v.y))
            px = fill.price(prices[v.x], "buy" if ax > 0 else "sell", ticks.get(v.x))
            fees = (abs(ay) * py + abs(ax) * px) * fill.taker_fee
            cash -= fees
            book[e.pair_id] = _Open(e.pair_id, v.y, v.x, v.beta, v.alpha, e.decision.position,
                                    ay, ax, py, px, t, v.z, e.sizing.risk_amount, fees=fees)
            states[e.pair_id] = e.decision.state
        for sk in the_plan.skips:
            states[sk.pair_id] = sk.state
            unevaluable[sk.pair_id] = unevaluable.get(sk.pair_id, 0) + 1 if sk.alert else 0
        equity_points.append(mark(prices))
        exposure_points.append(sum(abs(o.amount_y) * prices.get(o.y, o.price_y)
                                   + abs(o.amount_x) * prices.get(o.x, o.price_x)
                                   for o in book.values()))
        if progress is not None:
            progress(k_bar, len(bars))
    last = bars[-1]
    last_prices = {s: float(v) for s, v in closes.loc[last - tf].items() if np.isfinite(v)}
    for o in list(book.values()):
        close_position(o, last, last_prices, math.nan, "end of test")
    equity_points[-1] = cash
    if missing_rates:
        notes.append("no funding rate for " + ", ".join(sorted(missing_rates))
                     + " at some funding times: counted as 0")
    if missing_marks:
        notes.append("no mark price from the venue for " + ", ".join(sorted(missing_marks))
                     + " at some funding times: funding valued at the bar's close")
    equity = pd.Series(equity_points, index=pd.DatetimeIndex(bars, name="close_time"),
                       name="equity")
    curve = np.concatenate([[initial_equity], equity.to_numpy()])
    return BacktestResult(
        trades=pd.DataFrame(trades, columns=list(TRADE_COLUMNS)),
        equity=equity, pair_sets=pair_sets,
        metrics=performance(curve, timeframe_ms(params.data.timeframe)),
        fill_model=fill, notes=tuple(notes),
        exposure=pd.Series(exposure_points, index=equity.index, name="gross_notional"),
        decisions=pd.DataFrame(decided, columns=["close_time", "pair_id", "z", "action",
                                                 "reason"]),
    )


@dataclass(frozen=True)
class History:
    """What a backtest reads from a venue: :func:`gather`'s result.

    Attributes
    ----------
    closes, quote_volume : DataFrame
        Closed candles' closes and quote volumes by candle open time, one column per symbol
        kept by the data layer.
    rules : mapping
        Symbol -> :class:`~pairlib.core.risk.MarketRules` (today's precision and minimums).
    price_steps : mapping
        Symbol -> price tick (every market of the venue).
    funding_rates, funding_marks : mapping
        :func:`funding_tables` of the venue's funding history over the window.
    dropped : mapping
        Symbol -> why the data layer dropped it.
    """

    closes: pd.DataFrame
    quote_volume: pd.DataFrame
    rules: Mapping[str, MarketRules]
    price_steps: Mapping[str, float]
    funding_rates: Mapping[str, Mapping[int, float]]
    funding_marks: Mapping[str, Mapping[int, float]]
    dropped: Mapping[str, str] = field(default_factory=dict)

    def simulate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`simulate` this history supplies besides the
        closes and the rules (``quote_volume``, ``funding_rates``, ``funding_marks``,
        ``price_steps``)."""
        return {"quote_volume": self.quote_volume, "funding_rates": self.funding_rates,
                "funding_marks": self.funding_marks, "price_steps": self.price_steps}


def gather(
    params: Params,
    start: datetime,
    end: datetime,
    *,
    warm_bars: int | None = None,
    public_url: str | None = None,
) -> History:
    """Read what a backtest from ``start`` to ``end`` (candle close times) trades on, from the
    venue named in params.

    Candles come through the same data layer as the tick
    (:func:`pairlib.edges.data.load_market_data`, Parquet cache included) and funding rates
    with their mark prices through the same adapter
    (:func:`pairlib.edges.data.load_funding_rates`, cached too), so a backtest runs on the
    simulator offline and on a real venue's public history where there is network. The
    universe is ``data.universe``, else the venue's top ``data.universe_size`` symbols by
    volume *today*. Today's market rules (precision, minimums) are returned for the past.

    Parameters
    ----------
    params : Params
        The params tree; ``venue`` names where the history comes from.
    start, end : datetime
        The first and last bar traded.
    warm_bars : int, optional
        Closed candles needed before the first bar; default the params' own
        ``selection.formation_bars + strategy.lookback`` (a sweep asks for its longest).
    public_url : str, optional
        **Tests only**, for ``paper``, ``demo`` and ``live`` (see :func:`run`).

    Raises
    ------
    ValueError
        ``end`` not after ``start``, or ``public_url`` for a ``sim`` venue.

    Notes
    -----
    Nothing changes on any venue and no key is needed: ``sim`` is opened as the tick opens it
    on a scratch copy of its account file; ``paper``, ``demo`` and ``live`` are read through
    a keyless public client (:func:`pairlib.venue.paper.public_exchange`), never through the
    live guard.
    """
    from pairlib.edges.data import load_funding_rates, load_market_data
    from pairlib.venue.open import open_exchange, scratch_account
    from pairlib.venue.paper import public_exchange

    tf = timedelta(milliseconds=timeframe_ms(params.data.timeframe))
    if end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    public = params.venue.kind in ("paper", "demo", "live")
    if public_url is not None and not public:
        raise ValueError("public_url is for venue.kind paper, demo or live, not "
                         f"{params.venue.kind}")
    warm = params.history_bars if warm_bars is None else int(warm_bars)
    bars = int((end - start) / tf) + 1 + warm
    with contextlib.ExitStack() as stack:  # only public data is read: no venue state changes
        if public:
            ex = stack.enter_context(public_exchange(params.venue, public_url))
        else:
            ex = stack.enter_context(open_exchange(scratch_account(params.venue, stack), end))
        data = load_market_data(ex, params.data.universe, params.data, now=end, bars=bars)
        markets = ex.markets()
        rules = {s: MarketRules(s, m.amount_step, m.min_amount, m.min_notional, m.contract_size)
                 for s, m in markets.items() if s in data.closes.columns}
        since, until = int((start - tf).timestamp() * 1000), int(end.timestamp() * 1000)
        history = load_funding_rates(ex, list(data.closes.columns), since, until,
                                     params.data.cache_dir)
    rates, marks = funding_tables(history)
    return History(data.closes, data.quote_volume, rules,
                   {s: m.price_step for s, m in markets.items()}, rates, marks,
                   dict(data.dropped))


def run(
    params: Params,
    start: datetime,
    end: datetime,
    *,
    fill: FillModel | None = None,
    initial_equity: float = 10_000.0,
    progress: Progress | None = None,
    public_url: str | None = None,
) -> BacktestResult:
    """A backtest from ``start`` to ``end`` (candle close times) on the venue named in params:
    :func:`gather`, then :func:`simulate`.

    The universe is ``data.universe``, else the venue's top ``data.universe_size`` symbols
    by volume *today* (a survivorship bias the report states). Today's market rules
    (precision, minimums) are applied to the past.

    Parameters
    ----------
    params : Params
        The params tree; ``venue`` names where the history comes from.
    start, end : datetime
        The first and last bar traded (candle close times).
    fill : FillModel, optional
        Default: ``venue.sim_slippage_bps`` and the simulator's taker fee.
    initial_equity : float
        Starting equity (quote currency).
    progress : callable, optional
        ``progress(bars done, bars in total)`` after every bar (:func:`simulate`).
    public_url : str, optional
        **Tests only**, for ``paper``, ``demo`` and ``live``: read the public history from
        this loopback Binance-compatible venue (a :class:`~pairlib.sim.server.SimServer`)
        instead of the real exchange (see :func:`pairlib.venue.paper.public_exchange`).

    Notes
    -----
    A backtest changes no venue state and never needs keys. ``sim`` opens its venue as the
    tick does (in-process: on a scratch copy of its account file). ``paper``, ``demo`` and
    ``live`` are not opened through the live guard at all: the history is read from
    ``venue.exchange_id``'s public endpoints with a keyless client
    (:func:`pairlib.venue.paper.public_exchange`, the real venue's market, which paper
    trading also reads), which cannot sign a request, so no key is read or sent and no order
    or account endpoint can be called. Funding rates and their mark prices come through
    :func:`pairlib.edges.data.load_funding_rates` (Parquet cache included).
    """
    h = gather(params, start, end, public_url=public_url)
    result = simulate(params, h.closes, start, end, h.rules, fill=fill or FillModel(
                          slippage_bps=params.venue.sim_slippage_bps),
                      initial_equity=initial_equity, progress=progress, **h.simulate_kwargs())
    dropped = [f"{s}: {why}" for s, why in sorted(h.dropped.items())]
    notes = (*result.notes,
             "universe chosen by today's volume (survivorship bias)",
             *(["symbols dropped by the data layer: " + "; ".join(dropped)] if dropped else []))
    return BacktestResult(result.trades, result.equity, result.pair_sets, result.metrics,
                          result.fill_model, notes, result.exposure, result.decisions)


def funding_tables(
    history: Mapping[str, Sequence[FundingRate]],
) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, float]]]:
    """Split a venue's funding-rate history into :func:`simulate`'s ``funding_rates`` and
    ``funding_marks``: symbol -> {funding time in ms: rate}, and symbol -> {funding time in
    ms: mark price} for the times the venue sent a mark price."""
    rates = {s: {r.timestamp: r.rate for r in rows} for s, rows in history.items()}
    marks = {s: {r.timestamp: r.mark_price for r in rows if r.mark_price is not None}
             for s, rows in history.items()}
    return rates, marks
