"""What ``notebooks/dashboard.ipynb`` shows: equity, positions over time, signals per pair and
run health, read from the store and the report site's index data, in JupyterLab.

Nothing here writes: the store is opened only when its database exists (opening never creates
one) and only its read methods are called; the runs come from
:func:`pairlib.report.site.read_entries`, which reads the site's manifest and the executed
notebooks without rendering anything. The figures are plotly figure specs (plain JSON, as in
:mod:`pairlib.report.tick_charts`), shown with :func:`pairlib.report.notebook.show`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairlib.report.tick_charts import Spec, spec_times, spec_values

__all__ = [
    "DashboardData",
    "equity_figure",
    "health_line",
    "load_dashboard",
    "positions_figure",
    "positions_over_time",
    "run_health",
    "runs_figure",
    "signals_figure",
    "signals_per_pair",
    "summary_line",
]

_RUN_COLUMNS = ["started", "as_of", "kind", "status", "duration_s", "signals", "orders",
                "trades", "pnl", "equity", "notebook", "report", "detail", "error"]
_BAD = ("failed", "refused", "degraded", "incomplete")
_ENTRIES = ("enter_long", "enter_short")
_CLOSES = ("exit", "stop", "flatten", "loss_limit", "exit_no_data")


@dataclass(frozen=True)
class DashboardData:
    """Everything the dashboard shows, read once.

    Attributes
    ----------
    state_db : Path
        The store read (``<state_dir>/pairlib.db``); it may not exist yet.
    equity : DataFrame
        The store's equity per tick (``tick_as_of`` as UTC times), oldest first.
    fills : DataFrame
        Every fill with its order's tick, pair and leg.
    decisions : DataFrame
        Every pair's decision at every tick: ``z``, ``signal``, ``action``, ``reason``.
    ticks : DataFrame
        The store's tick rows (status, duration, mode, message).
    incidents : DataFrame
        Unresolved incidents.
    runs : DataFrame
        Every executed notebook under ``outputs/`` as the report index lists it, newest first
        (columns ``started``, ``as_of``, ``kind``, ``status``, ``duration_s``, ...).
    """

    state_db: Path
    equity: pd.DataFrame
    fills: pd.DataFrame
    decisions: pd.DataFrame
    ticks: pd.DataFrame
    incidents: pd.DataFrame
    runs: pd.DataFrame


def load_dashboard(params_file: str | Path = "params/pairlib.yaml",
                   outputs: str | Path = "outputs") -> DashboardData:
    """Read the dashboard's data: the store of ``params_file``'s ``state_dir`` and the runs
    under ``outputs`` (relative paths from the project root, as the jobs resolve them).

    A state folder without a database gives empty tables (nothing is created); a missing
    ``outputs`` folder gives no runs.
    """
    from pairlib.config import load_params, project_path
    from pairlib.edges.store import DB_NAME, Store
    from pairlib.report.site import read_entries

    params = load_params(params_file)
    db_path = Path(params.state_dir) / DB_NAME
    empty = pd.DataFrame()
    equity, fills, decisions, ticks, incidents = empty, empty, empty, empty, empty
    if db_path.is_file():
        with Store(db_path, read_only=True) as db:
            equity = db.equity_history()
            fills = db.fills()
            decisions = db.decisions()
            ticks = db.ticks()
            incidents = db.incidents(unresolved_only=True)
    if len(equity):
        equity = equity.assign(tick_as_of=pd.to_datetime(equity["tick_as_of"], utc=True))
    if len(decisions):
        decisions = decisions.assign(
            tick_as_of=pd.to_datetime(decisions["tick_as_of"], utc=True))
    entries = read_entries(project_path(outputs))
    runs = pd.DataFrame([asdict(e) for e in entries]).reindex(columns=_RUN_COLUMNS)
    return DashboardData(state_db=db_path, equity=equity, fills=fills, decisions=decisions,
                         ticks=ticks, incidents=incidents, runs=runs)


def summary_line(data: DashboardData) -> str:
    """One Markdown line: ticks recorded, last equity and its change, open pairs, runs that
    failed, unresolved incidents (or where the store was looked for when there is none)."""
    if not data.state_db.is_file():
        return (f"No state database at `{data.state_db}` yet: run `pairlib tick` (or "
                f"`make demo`); {len(data.runs)} runs found under outputs/.")
    parts = [f"**{len(data.ticks)} ticks** recorded"]
    if len(data.equity):
        first, last = float(data.equity["equity"].iloc[0]), float(data.equity["equity"].iloc[-1])
        parts.append(f"equity **{last:,.2f}** USDT ({last - first:+,.2f} since "
                     f"{data.equity['tick_as_of'].iloc[0]:%Y-%m-%d %H:%M}Z)")
    pos = positions_over_time(data)
    if len(pos):
        latest = pos[pos["tick_as_of"] == pos["tick_as_of"].max()]
        parts.append(f"**{int((latest['position'] != 0).sum())} pairs open**")
    bad = int(data.runs["status"].isin(_BAD).sum()) if len(data.runs) else 0
    parts.append(f"{len(data.runs)} runs, **{bad} failed or incomplete**")
    parts.append(f"{len(data.incidents)} unresolved incidents")
    return " · ".join(parts)


def equity_figure(data: DashboardData) -> Spec:
    """Equity after each tick, and the gross notional held, on a second axis."""
    eq = data.equity
    times = spec_times(eq["tick_as_of"]) if len(eq) else []
    traces: list[dict[str, Any]] = [
        {"type": "scatter", "mode": "lines+markers", "name": "equity (USDT)", "x": times,
         "y": spec_values(eq["equity"], 2) if len(eq) else []},
    ]
    if len(eq) and "gross_notional" in eq:
        traces.append({"type": "bar", "name": "gross notional (USDT)", "x": times,
                       "y": spec_values(eq["gross_notional"], 2), "yaxis": "y2",
                       "opacity": 0.3})
    return {"data": traces, "layout": {
        "title": {"text": "Equity after each tick"}, "height": 380,
        "yaxis": {"title": {"text": "equity (USDT)"}},
        "yaxis2": {"title": {"text": "gross notional"}, "overlaying": "y", "side": "right",
                   "showgrid": False},
        "legend": {"orientation": "h", "y": -0.2}}}


def positions_over_time(data: DashboardData) -> pd.DataFrame:
    """Each pair's legs after every tick, from the fills: ``tick_as_of``, ``pair_id``,
    ``amount_y``, ``amount_x`` (signed, cumulative) and ``position`` (+1 long the spread,
    i.e. long y; -1 short; 0 flat). Every tick the store recorded is a row for every pair
    that ever traded, so a pair stays visible while it is flat."""
    cols = ["tick_as_of", "pair_id", "amount_y", "amount_x", "position"]
    fills = data.fills
    if not len(fills) or "pair_id" not in fills:
        return pd.DataFrame(columns=cols)
    f = fills.dropna(subset=["pair_id", "tick_as_of"])
    signed = np.where(f["side"] == "buy", 1.0, -1.0) * f["amount"].astype(float)
    moves = (pd.DataFrame({"tick_as_of": pd.to_datetime(f["tick_as_of"], utc=True),
                           "pair_id": f["pair_id"], "leg": f["leg"], "amount": signed})
             .groupby(["tick_as_of", "pair_id", "leg"])["amount"].sum()
             .unstack("leg", fill_value=0.0))
    for leg in ("y", "x"):
        if leg not in moves:
            moves[leg] = 0.0
    ticks = sorted(set(moves.index.get_level_values("tick_as_of")) | set(
        pd.to_datetime(data.ticks["as_of"], utc=True) if len(data.ticks) else []))
    pairs = sorted(set(moves.index.get_level_values("pair_id")))
    grid = pd.MultiIndex.from_product([pairs, ticks], names=["pair_id", "tick_as_of"])
    per_pair = moves.reorder_levels(["pair_id", "tick_as_of"]).reindex(grid, fill_value=0.0)
    held = per_pair.groupby(level="pair_id").cumsum().round(12)
    out = held.reset_index().rename(columns={"y": "amount_y", "x": "amount_x"})
    out.columns.name = None
    out["position"] = np.sign(out["amount_y"]).astype(int)
    return out[cols].sort_values(["tick_as_of", "pair_id"]).reset_index(drop=True)


def positions_figure(data: DashboardData) -> Spec:
    """A heat map of each pair's position (+1 long the spread, -1 short, 0 flat) after every
    tick."""
    pos = positions_over_time(data)
    if not len(pos):
        z: list[list[float]] = []
        x: list[str] = []
        y: list[str] = []
    else:
        table = pos.pivot(index="pair_id", columns="tick_as_of", values="position")
        x, y = spec_times(table.columns), [str(p) for p in table.index]
        z = [[float(v) for v in row] for row in table.to_numpy()]
    return {"data": [{"type": "heatmap", "x": x, "y": y, "z": z, "zmin": -1, "zmax": 1,
                      "colorscale": [[0.0, "#d62728"], [0.5, "#f0f0f0"], [1.0, "#2ca02c"]],
                      "colorbar": {"title": {"text": "position"}, "tickvals": [-1, 0, 1]}}],
            "layout": {"title": {"text": "Positions after each tick (green long the spread, "
                                          "red short)"},
                       "height": max(260, 60 + 28 * len(y)), "margin": {"l": 260}}}


def signals_per_pair(data: DashboardData) -> pd.DataFrame:
    """Per pair over every recorded tick: ticks decided, ticks with a long or short signal,
    entries, closes (exits, stops, flattens), the last z and action; most signals first."""
    cols = ["pair_id", "ticks", "long_signals", "short_signals", "entries", "closes",
            "last_z", "last_action", "last_tick"]
    d = data.decisions
    if not len(d):
        return pd.DataFrame(columns=cols)
    d = d.sort_values("tick_as_of")
    sig = d["signal"].fillna(0)
    g = d.assign(long=sig > 0, short=sig < 0, entry=d["action"].isin(_ENTRIES),
                 close=d["action"].isin(_CLOSES)).groupby("pair_id")
    out = pd.DataFrame({
        "ticks": g.size(), "long_signals": g["long"].sum(), "short_signals": g["short"].sum(),
        "entries": g["entry"].sum(), "closes": g["close"].sum(), "last_z": g["z"].last(),
        "last_action": g["action"].last(), "last_tick": g["tick_as_of"].last(),
    }).reset_index()
    out["signals"] = out["long_signals"] + out["short_signals"]
    out = out.sort_values(["signals", "pair_id"], ascending=[False, True])
    return out[cols].reset_index(drop=True)


def signals_figure(data: DashboardData) -> Spec:
    """Each pair's z-score at every tick, one line per pair."""
    d = data.decisions
    traces = []
    if len(d):
        for pair, rows in d.sort_values("tick_as_of").groupby("pair_id"):
            traces.append({"type": "scatter", "mode": "lines+markers", "name": str(pair),
                           "x": spec_times(rows["tick_as_of"]),
                           "y": spec_values(rows["z"], 3)})
    return {"data": traces, "layout": {"title": {"text": "z-score of each pair at each tick"},
                                       "height": 380, "yaxis": {"title": {"text": "z"}},
                                       "legend": {"orientation": "h", "y": -0.25}}}


def run_health(data: DashboardData) -> pd.DataFrame:
    """Runs by kind: how many, how many ``ok``-like and failed or incomplete, median and
    longest duration (s), the last run's time and status."""
    cols = ["kind", "runs", "ok", "failed", "median_s", "max_s", "last_run", "last_status"]
    r = data.runs
    if not len(r):
        return pd.DataFrame(columns=cols)
    rows = []
    for kind, g in r.groupby("kind"):
        g = g.sort_values("started")
        bad = int(g["status"].isin(_BAD).sum())
        dur = pd.to_numeric(g["duration_s"], errors="coerce")
        rows.append({"kind": kind, "runs": len(g), "ok": len(g) - bad, "failed": bad,
                     "median_s": round(float(dur.median()), 2) if dur.notna().any() else None,
                     "max_s": round(float(dur.max()), 2) if dur.notna().any() else None,
                     "last_run": g["started"].iloc[-1], "last_status": g["status"].iloc[-1]})
    return pd.DataFrame(rows, columns=cols)


def health_line(data: DashboardData) -> str:
    """One Markdown line: the runs that failed or did not finish (newest first), or that all
    ran."""
    r = data.runs
    if not len(r):
        return "No executed notebook under outputs/ yet."
    bad = r[r["status"].isin(_BAD)]
    if not len(bad):
        return f"All {len(r)} runs finished without error."
    shown = "; ".join(f"`{n}` {s}" for n, s in zip(bad["notebook"].head(5),
                                                    bad["status"].head(5), strict=True))
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"**{len(bad)} of {len(r)} runs failed or did not finish:** {shown}{more}."


def runs_figure(data: DashboardData) -> Spec:
    """Each run's duration at its start time, coloured by status, one trace per kind."""
    r = data.runs
    traces = []
    if len(r):
        r = r.dropna(subset=["started"]).sort_values("started")
        for kind, g in r.groupby("kind"):
            traces.append({
                "type": "scatter", "mode": "markers", "name": str(kind),
                "x": spec_times(pd.to_datetime(g["started"], utc=True)),
                "y": spec_values(pd.to_numeric(g["duration_s"], errors="coerce"), 2),
                "text": [f"{s}: {n}" for s, n in zip(g["status"], g["notebook"], strict=True)],
                "marker": {"size": 9, "symbol": ["x" if s in _BAD else "circle"
                                                 for s in g["status"]]}})
    return {"data": traces, "layout": {"title": {"text": "Run durations (x: failed or "
                                                         "incomplete)"},
                                       "height": 340, "yaxis": {"title": {"text": "seconds"}},
                                       "xaxis": {"title": {"text": "run started (UTC)"}}}}
