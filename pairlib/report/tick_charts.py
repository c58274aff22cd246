"""Display helpers of the tick report (``notebooks/tick.ipynb``): a status banner and plotly
figures. Pure functions of a :class:`~pairlib.engine.tick.TickResult`; nothing here fetches or
stores anything, and the tick itself never imports this module.

The figures are plotly figure specs: plain JSON dicts (``data`` and ``layout``) in plotly's
schema, shown with :func:`pairlib.report.notebook.show` and turned into a ``Figure`` with
``plotly.graph_objects.Figure(spec)`` (which validates them, as the tests do). Building
``Figure`` objects would import and run plotly's validators in every scheduled tick, about a
fifth of a second of a sub-second report; a spec costs nothing and draws the same chart.
"""

from __future__ import annotations

import html
import io
import logging
import math
import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pairlib.engine.tick_result import TickResult

__all__ = ["ACTED", "ENTRY_MARKERS", "Spec", "account_line", "actions_frame", "actions_line",
    "capture_logs", "equity_figure", "glue_result", "incidents_frame", "log_problems",
    "orders_line", "reported_pairs", "spec_hline", "spec_times", "spec_values", "status_banner",
    "z_bands", "z_figure", "z_figures"]

Spec = dict[str, Any]
"""A plotly figure spec: ``{"data": [trace, ...], "layout": {...}}``, JSON values only."""

_CAPTURE = "pairlib.report.tick_charts.capture"
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The start of one record as _LOG_FORMAT writes it (logging's default asctime), with its level.
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) ", re.M)
_PROBLEM_LEVELS = frozenset({"WARNING", "ERROR", "CRITICAL"})

ACTED = frozenset({"enter_long", "enter_short", "exit", "stop", "flatten"})
"""Actions that placed (or tried to place) orders."""

ENTRY_MARKERS: dict[int, tuple[str, str, str]] = {
    1: ("entry (long)", "triangle-up", "green"),
    -1: ("entry (short)", "triangle-down", "red"),
    0: ("entry (side unknown)", "diamond", "grey"),
}
"""Entry marker by side (``+1`` long the spread, ``-1`` short, ``0`` unknown):
``(legend and hover label, plotly marker symbol, colour)``."""


def capture_logs(name: str = "pairlib", level: int = logging.INFO) -> io.StringIO:
    """Collect the library's log records in a buffer (shown at the end of the report, so
    the status banner stays the first output); returns the buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    handler.set_name(_CAPTURE)
    logger = logging.getLogger(name)
    for old in [h for h in logger.handlers if h.get_name() == _CAPTURE]:
        logger.removeHandler(old)  # a re-run in JupyterLab replaces, never duplicates
    logger.addHandler(handler)
    logger.setLevel(level)
    return buffer


def status_banner(result: TickResult) -> str:
    """HTML shown first in the report: red with the error when the tick failed or was
    refused, amber for exits-only modes or incidents, green otherwise."""
    when = "?" if result.as_of is None else f"{result.as_of:%Y-%m-%d %H:%M} UTC"
    facts = (f"<b>tick {html.escape(when)}</b> · status <b>{html.escape(result.status)}</b> · "
             f"mode {html.escape(result.mode)} · venue {html.escape(result.venue)} · "
             f"{len(result.orders)} orders · {len(result.incidents)} incidents · "
             f"{len(result.mismatches)} mismatches · {result.duration_s:.2f} s")
    if math.isfinite(result.equity):
        facts += f" · equity {result.equity:,.2f} USDT"
    if not result.ok:
        colour, body = "#b00020", (f"{facts}<br><b>ERROR:</b> "
                                   f"<pre style='white-space:pre-wrap'>"
                                   f"{html.escape(str(result.error))}</pre>")
    elif result.mode != "normal" or result.incidents or len(result.mismatches):
        colour, body = "#b26a00", facts
    else:
        colour, body = "#1b5e20", facts
    return (f"<div style='border:3px solid {colour};color:{colour};padding:8px;"
            f"margin:4px 0'>{body}</div>")


def log_problems(text: str) -> str:
    """The warning, error and critical records of a log captured by :func:`capture_logs`
    (each with its continuation lines, e.g. a traceback), in order; empty when there are
    none."""
    starts = list(_RECORD_START.finditer(text))
    records = [(m.group("level"), text[m.start():nxt.start() if nxt else len(text)])
               for m, nxt in zip(starts, [*starts[1:], None], strict=True)]
    return "".join(r for level, r in records if level in _PROBLEM_LEVELS)


def _is_preview(result: TickResult) -> bool:
    return str(result.status) == "preview"


def actions_frame(result: TickResult) -> pd.DataFrame:
    """The pairs the tick acted on (in a preview: would act on) or holds after it
    (:func:`reported_pairs`): ``pair_id``, ``z``, ``signal``, ``action``, ``position`` and
    ``reason``, in signal order. Every pair's row is in ``result.signals``."""
    columns = ["pair_id", "z", "signal", "action", "position", "reason"]
    s = result.signals
    if s.empty:
        return pd.DataFrame(columns=columns)
    keep = s["pair_id"].astype(str).isin(reported_pairs(result))
    return s.loc[keep, [c for c in columns if c in s.columns]].reset_index(drop=True)


def actions_line(result: TickResult) -> str:
    """The tick's actions in one Markdown line: how many pairs took each action (or would,
    in a preview), how many are open after it and how many were evaluated."""
    s = result.signals
    if s.empty:
        return "**Actions:** no pair evaluated (see the status above)."
    acted = s.loc[s["action"].isin(ACTED), "action"].astype(str).value_counts()
    what = ", ".join(f"{action} {n}" for action, n in acted.items()) or "none"
    open_ = int((s["position"].fillna(0).astype(int) != 0).sum())
    if _is_preview(result):
        return (f"**Actions this preview would take:** {what} · {open_} pair(s) would be open "
                f"after the tick · {len(s)} pair(s) evaluated.")
    return (f"**Actions:** {what} · {open_} pair(s) open after the tick · {len(s)} pair(s) "
            "evaluated.")


def orders_line(result: TickResult) -> str:
    """What the orders table holds, in one Markdown line: in a preview the orders the tick
    would send (none was sent), else the orders sent and their fills."""
    n = len(result.orders)
    if _is_preview(result):
        return (f"**Preview:** the tick would send these {n} order(s); none was sent and "
                "nothing was recorded." if n else
                "**Preview:** the tick would send no order.")
    return f"**{n} order(s)** and **{len(result.fills)} fill(s)** this tick."


def reported_pairs(result: TickResult) -> list[str]:
    """Pairs that are open after the tick or were acted on by it, in signal order."""
    s = result.signals
    if s.empty:
        return []
    keep = (s["position"].fillna(0).astype(int) != 0) | s["action"].isin(ACTED)
    return [str(p) for p in s.loc[keep, "pair_id"]]


def spec_times(index: Any) -> list[str]:
    """Timestamps as ISO-8601 strings (UTC when naive), as plotly's JSON encoder writes them."""
    idx = pd.DatetimeIndex(index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx
    return [t.isoformat() for t in idx]


def spec_values(values: Any, decimals: int = 4) -> list[float | None]:
    """Floats rounded for the report, NaN and infinities as JSON null (a gap in the line)."""
    arr = np.round(np.asarray(values, dtype=float), decimals)
    return [float(v) if math.isfinite(v) else None for v in arr]


def spec_hline(y: float, line: dict[str, Any]) -> dict[str, Any]:
    """A horizontal line across the plot at ``y`` (what ``Figure.add_hline`` adds)."""
    return {"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "yref": "y", "y0": y,
            "y1": y, "line": line}


def z_bands(entry: float, exit: float, stop: float) -> tuple[list[Spec], list[Spec]]:
    """The z chart's bands (``shapes``: dotted lines at +-entry, +-exit, +-stop and a grey zero
    line) and their labels (``annotations``), shared by the tick and backtest reports."""
    shapes: list[Spec] = []
    notes: list[Spec] = []
    for k, colour, label in ((entry, "orange", "entry"), (exit, "green", "exit"),
                             (stop, "red", "stop")):
        for sign in (1, -1):
            shapes.append(spec_hline(sign * k, {"dash": "dot", "color": colour}))
        notes.append({"xref": "x domain", "x": 0, "yref": "y", "y": k, "showarrow": False,
                      "text": f"{label} ±{k:g}", "xanchor": "left", "yanchor": "bottom"})
    shapes.append(spec_hline(0.0, {"color": "grey", "width": 1}))
    return shapes, notes


def z_figure(
    z: pd.Series,
    title: str,
    entry: float,
    exit: float,
    stop: float,
    entry_time: object = None,
    entry_z: float | None = None,
    action: str | None = None,
    entry_side: int | None = None,
) -> Spec:
    """The z-score with ±entry, ±exit and ±stop bands, the entry marker and this tick's
    action at the last bar, as a plotly figure spec.

    Parameters
    ----------
    z : Series
        z-scores indexed by candle close time.
    title : str
        The figure's title.
    entry, exit, stop : float
        The strategy's thresholds (bands at ± each, and a line at 0).
    entry_time, entry_z : optional
        The pair's latest entry; the marker is drawn when both are known.
    action : str, optional
        This tick's action, written at the last bar.
    entry_side : int, optional
        Side of that entry: ``+1`` long the spread, ``-1`` short. Default: opposite to the
        sign of ``entry_z``, since the rule enters short only at ``z >= entry > 0`` and long
        only at ``z <= -entry < 0``.

    Notes
    -----
    The entry marker tells the side apart in symbol, colour and legend/hover label:
    see :data:`ENTRY_MARKERS`.
    """
    traces: list[dict[str, Any]] = [{"type": "scatter", "x": spec_times(z.index),
                                     "y": spec_values(z.to_numpy()), "mode": "lines", "name": "z",
                                     "line": {"color": "black"}}]
    shapes, notes = z_bands(entry, exit, stop)
    if entry_time is not None and entry_z is not None and not pd.isna(entry_z):
        side = entry_side if entry_side is not None else -int(np.sign(float(entry_z)))
        name, symbol, colour = ENTRY_MARKERS.get(side, ENTRY_MARKERS[0])
        traces.append({"type": "scatter", "x": spec_times([pd.Timestamp(str(entry_time))]),
                       "y": spec_values([entry_z]), "mode": "markers", "name": name,
                       "hovertemplate": f"{name} at z=%{{y:.2f}}<br>%{{x}}<extra></extra>",
                       "marker": {"symbol": symbol, "size": 13, "color": colour}})
    if action and len(z) and pd.notna(z.iloc[-1]):
        traces.append({"type": "scatter", "x": spec_times(z.index[-1:]),
                       "y": spec_values(z.iloc[-1:]), "mode": "markers+text", "name": action,
                       "text": [action], "textposition": "top center",
                       "marker": {"size": 10, "color": "purple"}})
    return {"data": traces, "layout": {
        "title": {"text": title}, "height": 360, "yaxis": {"title": {"text": "z"}},
        "legend": {"orientation": "h"}, "shapes": shapes, "annotations": notes}}


def z_figures(result: TickResult) -> list[Spec]:
    """One :func:`z_figure` per open or acted-on pair with z history.

    The entry marker's side is the open position's side; for a pair closed by this tick it
    comes from the sign of its entry z (see :func:`z_figure`).
    """
    entry, exit, stop = result.thresholds
    figs = []
    signals = result.signals.set_index("pair_id") if len(result.signals) else None
    for pid in reported_pairs(result):
        if signals is None or pid not in result.z_history.columns:
            continue
        row = signals.loc[pid]
        position = int(row["position"])
        figs.append(z_figure(
            result.z_history[pid].dropna(), f"{pid}: {row['action']} (position "
            f"{position})", entry, exit, stop, row.get("entry_time"),
            row.get("entry_z"), str(row["action"]),
            entry_side=int(np.sign(position)) if position else None,
        ))
    return figs


def equity_figure(history: pd.DataFrame) -> Spec:
    """Equity per tick (columns ``tick_as_of``, ``equity``), as a plotly figure spec."""
    return {"data": [{"type": "scatter", "x": spec_times(pd.to_datetime(history["tick_as_of"])),
                      "y": spec_values(history["equity"], 2), "mode": "lines+markers",
                      "name": "equity"}],
            "layout": {"title": {"text": "Equity per tick (USDT)"}, "height": 300}}


def account_line(result: TickResult) -> str:
    """The account after the tick as one Markdown line (``**equity** 10,012.50 · …``)."""
    facts = [f"**{k}** {v:,.2f}" for k, v in result.account.items()]
    return " · ".join(facts) or "no account data"


def incidents_frame(result: TickResult) -> pd.DataFrame:
    """This tick's incidents as a table (``kind``, ``symbol``, ``detail``)."""
    return pd.DataFrame(result.incidents, columns=["kind", "symbol", "detail"])


def glue_result(result: TickResult) -> None:
    """Glue the tick's scraps into the running notebook: ``summary`` (the dict of
    :meth:`~pairlib.engine.tick_result.TickResult.scraps`), each of its known values by name, and
    the
    ``signals``, ``orders``, ``fills`` and ``positions`` tables."""
    from pairlib.report.notebook import glue

    summary = result.scraps()
    glue("summary", summary)
    for name, value in summary.items():
        if value is not None:  # a scrap cannot be None
            glue(name, value)
    for name in ("signals", "orders", "fills", "positions"):
        glue(name, getattr(result, name), encoder="pandas")
