"""Display helpers of the tick report (``notebooks/tick.ipynb``): a status banner and plotly
figures. Pure functions of a :class:`~pairlib.tick.TickResult`; nothing here fetches or
stores anything, and the tick itself never imports this module (plotly stays off the
scheduled path).
"""

from __future__ import annotations

import html
import io
import logging
import math
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

if TYPE_CHECKING:
    from pairlib.tick import TickResult

__all__ = ["ACTED", "capture_logs", "equity_figure", "reported_pairs", "status_banner",
           "z_figure", "z_figures"]

_CAPTURE = "pairlib.tick_charts.capture"

ACTED = frozenset({"enter_long", "enter_short", "exit", "stop", "flatten"})
"""Actions that placed (or tried to place) orders."""


def capture_logs(name: str = "pairlib", level: int = logging.INFO) -> io.StringIO:
    """Collect the library's log records in a buffer (shown at the end of the report, so
    the status banner stays the first output); returns the buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
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


def reported_pairs(result: TickResult) -> list[str]:
    """Pairs that are open after the tick or were acted on by it, in signal order."""
    s = result.signals
    if s.empty:
        return []
    keep = (s["position"].fillna(0).astype(int) != 0) | s["action"].isin(ACTED)
    return [str(p) for p in s.loc[keep, "pair_id"]]


def z_figure(
    z: pd.Series,
    title: str,
    entry: float,
    exit: float,
    stop: float,
    entry_time: object = None,
    entry_z: float | None = None,
    action: str | None = None,
) -> go.Figure:
    """The z-score with ±entry, ±exit and ±stop bands, the entry marker and this tick's
    action at the last bar."""
    fig = go.Figure(go.Scatter(x=z.index, y=z.to_numpy(), mode="lines", name="z",
                               line={"color": "black"}))
    for k, colour, label in ((entry, "orange", "entry"), (exit, "green", "exit"),
                             (stop, "red", "stop")):
        for sign in (1, -1):
            fig.add_hline(y=sign * k, line={"dash": "dot", "color": colour},
                          annotation_text=f"{label} {sign * k:+g}" if sign > 0 else None)
    fig.add_hline(y=0.0, line={"color": "grey", "width": 1})
    if entry_time is not None and entry_z is not None and not pd.isna(entry_z):
        t = pd.Timestamp(str(entry_time))
        t = t.tz_localize("UTC") if t.tzinfo is None else t
        fig.add_trace(go.Scatter(x=[t], y=[float(entry_z)], mode="markers", name="entry",
                                 marker={"symbol": "triangle-up", "size": 13,
                                         "color": "blue"}))
    if action and len(z) and pd.notna(z.iloc[-1]):
        fig.add_trace(go.Scatter(x=[z.index[-1]], y=[float(z.iloc[-1])], mode="markers+text",
                                 name=action, text=[action], textposition="top center",
                                 marker={"size": 10, "color": "purple"}))
    fig.update_layout(title=title, height=360, yaxis_title="z", legend={"orientation": "h"})
    return fig


def z_figures(result: TickResult) -> list[go.Figure]:
    """One :func:`z_figure` per open or acted-on pair with z history."""
    entry, exit, stop = result.thresholds
    figs = []
    signals = result.signals.set_index("pair_id") if len(result.signals) else None
    for pid in reported_pairs(result):
        if signals is None or pid not in result.z_history.columns:
            continue
        row = signals.loc[pid]
        figs.append(z_figure(
            result.z_history[pid].dropna(), f"{pid}: {row['action']} (position "
            f"{int(row['position'])})", entry, exit, stop, row.get("entry_time"),
            row.get("entry_z"), str(row["action"]),
        ))
    return figs


def equity_figure(history: pd.DataFrame) -> go.Figure:
    """Equity per tick (columns ``tick_as_of``, ``equity``)."""
    fig = go.Figure(go.Scatter(x=pd.to_datetime(history["tick_as_of"]),
                               y=history["equity"].astype(float), mode="lines+markers",
                               name="equity"))
    fig.update_layout(title="Equity per tick (USDT)", height=300)
    return fig
