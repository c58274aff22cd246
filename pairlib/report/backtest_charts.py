"""Display helpers of the backtest report (``notebooks/backtest.ipynb``): the metrics beyond
:func:`pairlib.core.metrics.performance`, tables and plotly figure specs. Pure functions of a
:class:`~pairlib.engine.backtest.BacktestResult` or of its frames; nothing here fetches or
stores anything.

The figures are plotly figure specs (plain JSON dicts, as in
:mod:`pairlib.report.tick_charts`), shown with :func:`pairlib.report.notebook.show` and turned
into a ``Figure`` with ``plotly.graph_objects.Figure(spec)``, which validates them.

Conventions
-----------
* An equity point is the equity marked at a bar's close, indexed by that close time (UTC);
  ``initial_equity`` is the equity before the first bar.
* A month's return is its last equity point over the previous month's last one (the initial
  equity for the first month) minus 1. A point marked at 00:00 UTC on the 1st closes the
  previous month (it is the close of that month's last candle).
* Money is in the quote currency (USDT). Fees and funding are *paid* amounts: positive when
  they cost money (the trades table records funding as received, ``-amount * mark * rate``).

Progress
--------
:class:`ProgressDisplay` is the backtest's progress callback in a notebook: one display output
updated in place (a plain HTML ``<progress>`` bar and a text line, no widget and no script,
so the executed report stays readable offline and keeps only the final state). When the
environment names a file in :data:`PROGRESS_FILE_ENV` (``pairlib backtest`` does), the same
updates are written there as ``"<done> <total>"``, which the command line turns into its
progress bar on stderr.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pairlib.report.tick_charts import (
    ENTRY_MARKERS,
    Spec,
    spec_hline,
    spec_times,
    spec_values,
    z_bands,
)

if TYPE_CHECKING:
    from pairlib.config import Params, StrategyParams
    from pairlib.engine.backtest import BacktestResult, FillModel

__all__ = ["EXIT_MARKERS", "MONTHS", "PROGRESS_FILE_ENV", "ProgressDisplay", "TradeStats",
           "drawdown", "equity_figure",
           "fill_model", "fill_model_line", "fill_model_text", "glue_result", "loss_line",
           "loss_multiple_figure", "metrics", "metrics_frame", "monthly_heatmap",
           "monthly_returns", "notes_line", "pair_pnl", "pair_pnl_figure", "pair_sets_frame",
           "summary_line", "trade_list", "trade_stats", "trades_line", "z_figure",
           "z_figures", "z_history"]

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

EXIT_MARKERS: dict[str, tuple[str, str]] = {
    "reverted": ("x", "blue"),
    "stop": ("x", "red"),
    "loss limit": ("x", "darkorange"),
    "no data": ("x", "grey"),
    "end of test": ("square-open", "grey"),
}
"""Exit marker by exit reason: ``(plotly marker symbol, colour)`` (others: grey ``x``)."""

_YEAR = timedelta(days=365)

PROGRESS_FILE_ENV = "PAIRLIB_PROGRESS_FILE"
"""Environment variable naming the file a backtest kernel writes its progress to."""


class ProgressDisplay:
    """A :data:`pairlib.engine.backtest.Progress` callback that shows what is done (bars of a
    backtest, combinations of a sweep) in the running notebook and, when asked, in a progress
    file.

    Parameters
    ----------
    label : str
        What runs, shown before the bar.
    unit : str
        What is counted (``"bars"`` for a backtest, ``"combinations"`` for a sweep), shown
        after the count.
    min_interval_s : float
        Least time between two updates; the first and the last unit always update. A backtest
        calls once per bar (4,380 calls for two years), so updates are throttled to a few
        per second.
    progress_file : path, optional
        Where to write ``"<done> <total>"`` (replaced atomically at each update); default:
        the file named by :data:`PROGRESS_FILE_ENV`, if set.
    display : bool
        Show the notebook output (False: the file only).

    Notes
    -----
    The notebook output is ``text/html`` (a ``<progress>`` element) with a ``text/plain``
    twin, updated through a display id: the saved report keeps the final line, e.g.
    ``Backtest: 4380/4380 bars (100%), 9.2 s elapsed`` (since the display was made, so the
    history read before the first bar counts).
    """

    def __init__(self, label: str = "Backtest", min_interval_s: float = 0.25,
                 progress_file: str | Path | None = None, display: bool = True,
                 unit: str = "bars") -> None:
        self.label = label
        self.unit = unit
        self.min_interval_s = float(min_interval_s)
        env = os.environ.get(PROGRESS_FILE_ENV)
        self.path = Path(progress_file) if progress_file is not None else (
            Path(env) if env else None)
        self._show = display
        self._handle: Any = None
        self._t0 = time.monotonic()
        self._last = -math.inf
        self.updates = 0
        """How many times the display (and the file) were updated."""

    def __call__(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` units; update the outputs when due."""
        now = time.monotonic()
        if done not in (1, total) and now - self._last < self.min_interval_s:
            return
        self._last = now
        self.updates += 1
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(f"{int(done)} {int(total)}\n")
            os.replace(tmp, self.path)
        if self._show:
            self._display(self.output(done, total, now - self._t0))

    def output(self, done: int, total: int, elapsed_s: float) -> dict[str, str]:
        """The display data for ``done`` of ``total`` after ``elapsed_s`` seconds."""
        frac = done / total if total else 1.0
        text = (f"{self.label}: {done}/{total} {self.unit} ({frac:.0%}), {elapsed_s:.1f} s "
                "elapsed")
        html = (f'<progress value="{done}" max="{total}" style="width: 20em"></progress> '
                f"<code>{text}</code>")
        return {"text/plain": text, "text/html": html}

    def _display(self, data: dict[str, str]) -> None:
        from IPython.display import display

        if self._handle is None:
            self._handle = display(data, raw=True, display_id=True)
        else:
            self._handle.update(data, raw=True)


@dataclass(frozen=True)
class TradeStats:
    """What the trades and the exposure say, beyond the equity curve's own metrics.

    Attributes
    ----------
    n_trades : int
        Closed round trips (those closed at the end of the test included).
    hit_rate : float
        Fraction of trades with a positive net PnL (NaN without trades).
    avg_holding_hours : float
        Mean of ``exit_time - entry_time`` in hours (NaN without trades).
    traded_notional : float
        Notional of every fill, both legs, entries and exits: ``sum(fees) / taker_fee``,
        exact under the fill model (each fill pays ``taker_fee`` on its notional); NaN with
        a zero fee.
    turnover : float
        ``traded_notional`` over the mean equity: how many times the equity was traded
        over the test.
    turnover_per_year : float
        ``turnover`` per 365 days of test (the test lasts ``len(equity)`` bars).
    fees_paid : float
        Sum of the trades' fees (entries and exits).
    funding_paid : float
        Net funding paid: minus the sum of the trades' funding (negative when the test
        received funding).
    exposure : float
        Mean over bars of gross exposure (sum of |leg notional| at the close) over equity.
    """

    n_trades: int
    hit_rate: float
    avg_holding_hours: float
    traded_notional: float
    turnover: float
    turnover_per_year: float
    fees_paid: float
    funding_paid: float
    exposure: float


def trade_stats(
    trades: pd.DataFrame,
    equity: pd.Series,
    exposure: pd.Series,
    taker_fee: float,
    bar: timedelta,
) -> TradeStats:
    """Hit rate, holding time, turnover, costs and exposure of a backtest.

    Parameters
    ----------
    trades : DataFrame
        The backtest's trades (:data:`pairlib.engine.backtest.TRADE_COLUMNS`).
    equity : Series
        Equity at each bar's close.
    exposure : Series
        Gross notional at each bar's close, aligned with ``equity``.
    taker_fee : float
        The fill model's fee rate (recovers the traded notional from the fees).
    bar : timedelta
        The candle length (``len(equity)`` bars is the test's length).

    Returns
    -------
    TradeStats
    """
    if len(equity) != len(exposure):
        raise ValueError(f"equity ({len(equity)} bars) and exposure ({len(exposure)} bars) "
                         "must be aligned bar for bar")
    if bar <= timedelta(0):
        raise ValueError(f"bar must be a positive timedelta, got {bar}")
    n = len(trades)
    net = trades["net_pnl"].astype(float).to_numpy()
    held = (pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"]))
    hours = held.dt.total_seconds().to_numpy(dtype=float) / 3600.0
    fees = float(trades["fees"].astype(float).sum())
    funding = float(trades["funding"].astype(float).sum())
    eq = equity.astype(float).to_numpy()
    mean_equity = float(eq.mean()) if len(eq) else math.nan
    notional = fees / taker_fee if taker_fee > 0 else math.nan
    turnover = notional / mean_equity if mean_equity > 0 else math.nan
    years = len(eq) * bar / _YEAR
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = exposure.astype(float).to_numpy() / eq
    return TradeStats(
        n_trades=n,
        hit_rate=float((net > 0).mean()) if n else math.nan,
        avg_holding_hours=float(hours.mean()) if n else math.nan,
        traded_notional=notional,
        turnover=turnover,
        turnover_per_year=turnover / years if years > 0 else math.nan,
        fees_paid=fees,
        funding_paid=-funding + 0.0,  # + 0.0: no -0.0 without funding
        exposure=float(ratio.mean()) if len(ratio) else math.nan,
    )


def drawdown(equity: pd.Series, initial_equity: float | None = None) -> pd.Series:
    """The fall from the running peak at each bar, as a fraction (``-0.1`` = 10% below it).

    ``initial_equity`` (the equity before the first bar) counts as the first peak, as in
    :func:`pairlib.core.metrics.performance`.
    """
    eq = equity.astype(float)
    peak = eq.cummax()
    if initial_equity is not None:
        peak = peak.clip(lower=float(initial_equity))
    return (eq / peak - 1.0).rename("drawdown")


def monthly_returns(equity: pd.Series, initial_equity: float) -> pd.DataFrame:
    """Calendar-month returns of an equity curve: one row per year, one column per month
    (1-12), NaN where the test has no bar.

    Each month's return is its last equity point over the previous month's last point (the
    ``initial_equity`` for the first month) minus 1; a point at 00:00 UTC on the 1st closes
    the month before (see the module's conventions).
    """
    columns = pd.Index(range(1, 13), name="month")
    if equity.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="year"), dtype=float)
    idx = pd.DatetimeIndex(equity.index)
    shifted = idx - pd.Timedelta(microseconds=1)  # a close at 00:00 on the 1st ends a month
    keys = pd.MultiIndex.from_arrays([shifted.year, shifted.month], names=["year", "month"])
    last = pd.Series(equity.astype(float).to_numpy(), index=keys).groupby(level=[0, 1]).last()
    base = last.shift(1)
    base.iloc[0] = float(initial_equity)
    returns = last / base - 1.0
    table = returns.unstack("month").reindex(columns=columns)
    return table.astype(float)


def _pct(v: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(v) else f"{v * 100:+.{digits}f}%"


def _num(v: float, digits: int = 2) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:,.{digits}f}"


def _bar(timeframe: str) -> timedelta:
    from pairlib.config import timeframe_ms

    return timedelta(milliseconds=timeframe_ms(timeframe))


def metrics(result: BacktestResult, timeframe: str) -> dict[str, Any]:
    """Every metric of the report by name, JSON-ready (NaN as None): the equity curve's
    (:class:`~pairlib.core.metrics.Performance`), its longest drawdown in days
    (``max_drawdown_days``) and the trades' (:class:`TradeStats`); ``timeframe`` is the
    candle length the test ran on (``params.data.timeframe``)."""
    bar = _bar(timeframe)
    perf = asdict(result.metrics)
    stats = asdict(trade_stats(result.trades, result.equity, result.exposure,
                               result.fill_model.taker_fee, bar))
    out: dict[str, Any] = {**perf,
                           "max_drawdown_days": perf["max_drawdown_bars"] * bar / timedelta(days=1),
                           **stats}
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                int(v) if isinstance(v, int | np.integer) else float(v))
            for k, v in out.items()}


_METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("total_return", "pct", "total return over the test"),
    ("annual_return", "pct", "annualized (365-day year, compounded)"),
    ("sharpe", "num", "annualized, per-bar returns, risk-free rate 0"),
    ("sortino", "num", "annualized, downside deviation against 0"),
    ("max_drawdown", "pct", "deepest fall from a running peak"),
    ("max_drawdown_days", "days", "longest time spent below a previous peak"),
    ("calmar", "num", "annual return over |max drawdown|"),
    ("n_trades", "int", "round trips (those closed at the end of the test included)"),
    ("hit_rate", "share", "trades with a positive net PnL"),
    ("avg_holding_hours", "hours", "mean time from entry to exit"),
    ("turnover", "times", "traded notional (both legs, in and out) over mean equity"),
    ("turnover_per_year", "times", "turnover per 365 days"),
    ("fees_paid", "usdt", "taker fees, entries and exits"),
    ("funding_paid", "usdt", "net funding paid (negative: received)"),
    ("exposure", "times", "mean gross exposure over equity"),
    ("bars", "int", "bars traded"),
)


def _format(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return _pct(float(value))
    if kind == "share":
        return f"{float(value) * 100:.1f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "days":
        return f"{float(value):.1f} days"
    if kind == "hours":
        return f"{float(value):.1f} h ({float(value) / 24:.2f} days)"
    if kind == "times":
        return f"{float(value):.2f}×"
    if kind == "usdt":
        return f"{float(value):,.2f} USDT"
    return _num(float(value))


def metrics_frame(result: BacktestResult, timeframe: str) -> pd.DataFrame:
    """The report's metrics table (:func:`metrics`): ``metric``, ``value`` (formatted) and
    ``meaning``."""
    values = metrics(result, timeframe)
    return pd.DataFrame([(name, _format(values[name], kind), meaning)
                         for name, kind, meaning in _METRIC_ROWS],
                        columns=["metric", "value", "meaning"])


def fill_model(params: Params, slippage_bps: float | None = None,
               taker_fee: float | None = None) -> FillModel:
    """The backtest's fill model: ``slippage_bps`` (None: the venue params'
    ``sim_slippage_bps``, as :func:`pairlib.engine.backtest.run`) and ``taker_fee`` (None:
    :class:`~pairlib.engine.backtest.FillModel`'s default, the simulator's taker fee)."""
    from pairlib.engine.backtest import FillModel

    slip = params.venue.sim_slippage_bps if slippage_bps is None else float(slippage_bps)
    fee = FillModel().taker_fee if taker_fee is None else float(taker_fee)
    if not (math.isfinite(slip) and slip >= 0):
        raise ValueError(f"slippage_bps must be a finite number >= 0, got {slippage_bps!r}")
    if not (math.isfinite(fee) and 0 <= fee < 0.01):
        raise ValueError(f"taker_fee must be a fraction in [0, 0.01) (0.0005 = 5 bps), "
                         f"got {taker_fee!r}")
    return FillModel(slippage_bps=slip, taker_fee=fee)


def fill_model_line(result: BacktestResult) -> str:
    """The fill model in one Markdown line: slippage, fee and funding (the full text is
    :func:`fill_model_text`)."""
    f = result.fill_model
    return (f"**Fill model:** market orders at the signal bar's close moved "
            f"{f.slippage_bps:g} bps against the order, taker fee {f.taker_fee * 100:.4g}% of "
            "each fill's notional, funding from the venue's rate history at its mark price; "
            "today's market rules applied to the past (details at the end).")


def fill_model_text() -> str:
    """The fill model as :mod:`pairlib.engine.backtest` documents it (the paragraph of its
    docstring that starts with "Fill model"), in Markdown."""
    from pairlib.engine import backtest

    paragraphs = (backtest.__doc__ or "").split("\n\n")
    found = next((p for p in paragraphs if p.lstrip().startswith("Fill model")), "")
    text = " ".join(found.split()).replace("``", "`").replace(" (also in the report)", "")
    if text.startswith("Fill model:"):
        text = "**Fill model:**" + text[len("Fill model:"):]
    return text


def notes_line(result: BacktestResult) -> str:
    """The backtest's notes (survivorship, missing funding rates, dropped symbols) as one
    Markdown line."""
    if not result.notes:
        return "**Notes:** none."
    return "**Notes:** " + "; ".join(result.notes) + "."


def summary_line(result: BacktestResult) -> str:
    """The answer in one Markdown line: window, trades, return, Sharpe, drawdown, equity,
    and how many pairs the month starts chose. When no month chose any pair, it says so in
    bold: a test without pairs cannot trade (often a window too close to the start of the
    venue's history for a formation window)."""
    eq, m = result.equity, result.metrics
    first, last = pd.Timestamp(eq.index[0]), pd.Timestamp(eq.index[-1])
    chosen = [len(p) for p in result.pair_sets.values()]
    line = (f"**Backtest** {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC "
            f"({len(eq)} bars) · **{len(result.trades)} trades** · total return "
            f"**{_pct(m.total_return)}** · Sharpe **{_num(m.sharpe)}** · max drawdown "
            f"**{_pct(m.max_drawdown)}** · final equity {_num(float(eq.iloc[-1]))} USDT · "
            f"pairs chosen per month: {', '.join(map(str, chosen)) or 'none'}")
    if not any(chosen):
        line += (" · **no month chose a pair: nothing could trade** (see *Pair sets by "
                 "month*; a formation window needs the history before the start)")
    return line


def equity_figure(equity: pd.Series, initial_equity: float) -> Spec:
    """Equity (upper panel) and drawdown from the running peak (lower panel, %), as a plotly
    figure spec."""
    dd = drawdown(equity, initial_equity)
    x = spec_times(equity.index)
    return {"data": [
        {"type": "scatter", "x": x, "y": spec_values(equity, 2), "mode": "lines",
         "name": "equity", "line": {"color": "black"}},
        {"type": "scatter", "x": x, "y": spec_values(dd * 100.0, 3), "mode": "lines",
         "name": "drawdown", "fill": "tozeroy", "line": {"color": "firebrick"},
         "xaxis": "x2", "yaxis": "y2"},
    ], "layout": {
        "title": {"text": "Equity (USDT) and drawdown from the running peak (%)"},
        "height": 520, "showlegend": False,
        "xaxis": {"anchor": "y", "showticklabels": False},
        "yaxis": {"domain": [0.36, 1.0], "title": {"text": "equity"}},
        "xaxis2": {"anchor": "y2", "matches": "x"},
        "yaxis2": {"domain": [0.0, 0.28], "title": {"text": "drawdown %"}},
        "shapes": [spec_hline(float(initial_equity), {"dash": "dot", "color": "grey"})],
    }}


def monthly_heatmap(equity: pd.Series, initial_equity: float) -> Spec:
    """:func:`monthly_returns` as a heat map (%, green up, red down), as a plotly figure
    spec."""
    table = monthly_returns(equity, initial_equity)
    z = [spec_values(row * 100.0, 2) for row in table.to_numpy()]
    return {"data": [{
        "type": "heatmap", "z": z, "x": list(MONTHS), "y": [str(y) for y in table.index],
        "colorscale": "RdYlGn", "zmid": 0, "texttemplate": "%{z:.2f}%",
        "hovertemplate": "%{y} %{x}: %{z:.2f}%<extra></extra>",
        "colorbar": {"title": {"text": "%"}},
    }], "layout": {"title": {"text": "Monthly returns (%)"},
                   "height": 160 + 50 * max(1, len(table)),
                   "yaxis": {"type": "category", "autorange": "reversed"},
                   "xaxis": {"type": "category"}}}


def pair_pnl(trades: pd.DataFrame) -> pd.DataFrame:
    """Per pair: ``trades``, ``wins``, ``hit_rate``, ``gross_pnl``, ``fees``, ``funding``
    (received) and ``net_pnl``, best net first."""
    columns = ["trades", "wins", "hit_rate", "gross_pnl", "fees", "funding", "net_pnl"]
    if trades.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="pair_id"))
    t = trades.assign(win=trades["net_pnl"].astype(float) > 0)
    g = t.groupby("pair_id", sort=False)
    out = pd.DataFrame({
        "trades": g.size(), "wins": g["win"].sum().astype(int),
        "gross_pnl": g["gross_pnl"].sum(), "fees": g["fees"].sum(),
        "funding": g["funding"].sum(), "net_pnl": g["net_pnl"].sum(),
    })
    out.insert(2, "hit_rate", out["wins"] / out["trades"])
    return out.sort_values("net_pnl", ascending=False, kind="stable")


def pair_pnl_figure(trades: pd.DataFrame) -> Spec:
    """Net PnL per pair (horizontal bars, best at the top), as a plotly figure spec."""
    table = pair_pnl(trades)
    net = table["net_pnl"].astype(float)
    return {"data": [{
        "type": "bar", "orientation": "h", "x": spec_values(net, 2),
        "y": [str(p) for p in table.index],
        "marker": {"color": ["seagreen" if v > 0 else "firebrick" for v in net]},
        "text": [f"{int(n)} trades" for n in table["trades"]], "textposition": "auto",
    }], "layout": {"title": {"text": "Net PnL per pair (USDT)"},
                   "height": 160 + 28 * max(1, len(table)), "margin": {"l": 260},
                   "yaxis": {"autorange": "reversed"}}}


def trade_list(trades: pd.DataFrame) -> pd.DataFrame:
    """The trades table with ``holding_hours`` after ``exit_time``."""
    held = (pd.to_datetime(trades["exit_time"]) - pd.to_datetime(trades["entry_time"]))
    out = trades.copy()
    out.insert(list(out.columns).index("exit_time") + 1, "holding_hours",
               held.dt.total_seconds().astype(float) / 3600.0)
    return out


def trades_line(trades: pd.DataFrame) -> str:
    """The trades in one Markdown line: count, winners, exit reasons."""
    if trades.empty:
        return "**No trade** in this window."
    wins = int((trades["net_pnl"].astype(float) > 0).sum())
    reasons = ", ".join(f"{r} {n}" for r, n in trades["exit_reason"].value_counts().items())
    return (f"**{len(trades)} trades**, {wins} with a positive net PnL · exits: {reasons}. "
            "`net_pnl = gross_pnl - fees + funding`; `loss_multiple` is the net loss over the "
            "risk budget at entry.")


def loss_line(trades: pd.DataFrame) -> str:
    """The realized losses against the risk budget in one Markdown line."""
    lm = trades["loss_multiple"].astype(float)
    lm = lm[np.isfinite(lm)]
    losers = lm[lm > 0]
    if losers.empty:
        return f"**No losing trade** among {len(trades)}."
    over = int((losers > 1.0).sum())
    return (f"**{len(losers)} of {len(trades)} trades lost money;** the worst lost "
            f"{losers.max():.2f}× its risk budget; {over} lost more than the budget (a stop "
            "beyond the stop z, a gap, costs or funding).")


def loss_multiple_figure(trades: pd.DataFrame, bin_size: float = 0.1) -> Spec:
    """Histogram of the trades' ``loss_multiple`` (realized net loss over the risk budget at
    entry: 1 = lost exactly the budget, negative = a gain) with a line at 1, as a plotly
    figure spec."""
    lm = trades["loss_multiple"].astype(float)
    lm = lm[np.isfinite(lm)]
    return {"data": [{"type": "histogram", "x": spec_values(lm, 4), "name": "trades",
                      "xbins": {"size": bin_size}, "marker": {"color": "steelblue"}}],
            "layout": {
                "title": {"text": "Realized loss / risk budget per trade "
                                  "(1 = the budget lost; below 0 = a gain)"},
                "height": 360, "bargap": 0.05,
                "xaxis": {"title": {"text": "loss multiple"}},
                "yaxis": {"title": {"text": "trades"}},
                "shapes": [{"type": "line", "xref": "x", "x0": 1.0, "x1": 1.0,
                            "yref": "y domain", "y0": 0, "y1": 1,
                            "line": {"color": "red", "dash": "dash"}}],
                "annotations": [{"xref": "x", "x": 1.0, "yref": "y domain", "y": 1.0,
                                 "text": "risk budget", "showarrow": False,
                                 "xanchor": "left", "yanchor": "top"}]}}


def z_history(decisions: pd.DataFrame) -> pd.DataFrame:
    """The z-score of every evaluated pair at every bar, from the backtest's decisions: one
    column per pair, indexed by close time (NaN where the pair was not evaluated)."""
    if decisions.empty:
        return pd.DataFrame(index=pd.DatetimeIndex([], tz="UTC", name="close_time"))
    d = decisions.drop_duplicates(["close_time", "pair_id"], keep="last")
    z = d.pivot(index="close_time", columns="pair_id", values="z").astype(float)
    z.columns.name = None
    return z.sort_index()


def z_figure(z: pd.Series, trades: pd.DataFrame, title: str, entry: float, exit: float,
             stop: float) -> Spec:
    """A pair's z-score over the test with ±entry, ±exit and ±stop bands, each entry
    (long: green triangle-up, short: red triangle-down, as in the tick report) and each exit
    (by reason, :data:`EXIT_MARKERS`), as a plotly figure spec.

    Parameters
    ----------
    z : Series
        The pair's z by close time (:func:`z_history`).
    trades : DataFrame
        That pair's trades (``side``, ``entry_time``, ``entry_z``, ``exit_time``, ``exit_z``,
        ``exit_reason``, ``net_pnl``).
    title : str
        The figure's title.
    entry, exit, stop : float
        The strategy's thresholds.
    """
    traces: list[dict[str, Any]] = [{"type": "scatter", "x": spec_times(z.index),
                                     "y": spec_values(z.to_numpy()), "mode": "lines", "name": "z",
                                     "line": {"color": "black", "width": 1}}]
    for side, key in (("long", 1), ("short", -1)):
        t = trades[trades["side"] == side]
        if t.empty:
            continue
        name, symbol, colour = ENTRY_MARKERS[key]
        traces.append({"type": "scatter", "x": spec_times(t["entry_time"]),
                       "y": spec_values(t["entry_z"]), "mode": "markers", "name": name,
                       "hovertemplate": f"{name} at z=%{{y:.2f}}<br>%{{x}}<extra></extra>",
                       "marker": {"symbol": symbol, "size": 11, "color": colour}})
    for reason, t in trades.groupby("exit_reason", sort=True):
        symbol, colour = EXIT_MARKERS.get(str(reason), ("x", "grey"))
        # An exit at the end of the test has no z (NaN): drawn on the last z instead.
        at = [float(zv) if math.isfinite(zv) else float(z.get(when, math.nan))
              for zv, when in zip(t["exit_z"].astype(float), t["exit_time"], strict=True)]
        traces.append({"type": "scatter", "x": spec_times(t["exit_time"]), "y": spec_values(at),
                       "mode": "markers", "name": f"exit ({reason})",
                       "text": [f"net {v:+,.2f} USDT" for v in t["net_pnl"].astype(float)],
                       "hovertemplate": f"exit ({reason}) at z=%{{y:.2f}}<br>%{{x}}<br>"
                                        "%{text}<extra></extra>",
                       "marker": {"symbol": symbol, "size": 10, "color": colour,
                                  "line": {"width": 2, "color": colour}}})
    shapes, notes = z_bands(entry, exit, stop)
    return {"data": traces, "layout": {
        "title": {"text": title}, "height": 380, "yaxis": {"title": {"text": "z"}},
        "legend": {"orientation": "h"}, "shapes": shapes, "annotations": notes}}


def z_figures(result: BacktestResult, strategy: StrategyParams,
              max_pairs: int = 20) -> list[Spec]:
    """One :func:`z_figure` per traded pair, in :func:`pair_pnl` order (best net first), at
    most ``max_pairs``; the z is the one each bar decided on (the backtest's decisions)."""
    z = z_history(result.decisions)
    figs = []
    table = pair_pnl(result.trades)
    for pid, row in list(table.iterrows())[:max_pairs]:
        if pid not in z.columns:
            continue
        title = (f"{pid}: {int(row['trades'])} trades, net {float(row['net_pnl']):+,.2f} USDT")
        figs.append(z_figure(z[pid], result.trades[result.trades["pair_id"] == pid], title,
                             strategy.entry, strategy.exit, strategy.stop))
    return figs


def pair_sets_frame(result: BacktestResult) -> pd.DataFrame:
    """The pair set chosen at each month start: ``chosen_at``, ``pair_id``, ``beta``,
    ``pvalue``, ``half_life`` (the columns the selection gave)."""
    keep = ["y", "x", "beta", "alpha", "pvalue", "half_life", "crossings", "oos_pvalue"]
    frames = []
    for when, chosen in result.pair_sets.items():
        cols = [c for c in keep if c in chosen.columns]
        f = chosen[cols].copy()
        f.insert(0, "chosen_at", pd.Timestamp(when))
        frames.append(f)
    if not frames:
        return pd.DataFrame(columns=["chosen_at", *keep])
    return pd.concat(frames, ignore_index=True)


def glue_result(result: BacktestResult, timeframe: str, initial_equity: float) -> None:
    """Glue the backtest's scraps into the running notebook: ``metrics`` (the dict of
    :func:`metrics`), ``n_trades``, ``start`` and ``end`` (first and last bar, ISO-8601),
    ``initial_equity``, ``fill_model`` (``slippage_bps``, ``taker_fee``), ``notes``, and the
    ``trades`` and ``equity`` (``close_time``, ``equity``, ``gross_notional``) tables."""
    from pairlib.clock import iso
    from pairlib.report.notebook import glue

    glue("metrics", metrics(result, timeframe))
    glue("n_trades", len(result.trades))
    glue("start", iso(pd.Timestamp(result.equity.index[0]).to_pydatetime()))
    glue("end", iso(pd.Timestamp(result.equity.index[-1]).to_pydatetime()))
    glue("initial_equity", float(initial_equity))
    glue("fill_model", {"slippage_bps": float(result.fill_model.slippage_bps),
                        "taker_fee": float(result.fill_model.taker_fee)})
    glue("notes", list(result.notes))
    glue("trades", result.trades, encoder="pandas")
    equity = pd.DataFrame({"equity": result.equity.astype(float),
                           "gross_notional": result.exposure.astype(float)}).reset_index()
    glue("equity", equity, encoder="pandas")
