"""Display helpers of the sweep report (``notebooks/sweep.ipynb``): heat maps over two axes,
the spread of results across the grid next to the best cell, the shortlist and the overfitting
statistics. Pure functions of a :class:`~pairlib.engine.sweep.SweepResult`; figures are plotly
figure specs (plain JSON dicts, as in :mod:`pairlib.report.backtest_charts`), shown with
:func:`pairlib.report.notebook.show`.

Conventions
-----------
* A heat map shows one metric over two chosen axes; every other axis is aggregated by taking
  the *best* cell among them (highest Sharpe or return, shallowest drawdown), said in the
  title, so a square is what the best setting of the other axes reached.
* Returns and drawdowns are fractions (shown in %); Sharpe is annualised (24/7 bars).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pairlib.report.backtest_charts import ProgressDisplay
from pairlib.report.tick_charts import Spec, spec_values

if TYPE_CHECKING:
    from pairlib.engine.sweep import SweepResult

__all__ = ["LABELS", "distribution_figure", "glue_result", "heatmap", "overfitting_line",
           "notes_markdown", "progress", "shortlist_frame", "summary_line"]

LABELS = {"sharpe": "Sharpe (annualised)", "total_return": "total return",
          "annual_return": "annual return", "max_drawdown": "max drawdown"}
"""Display name of each level-1 metric."""

_PCT = ("total_return", "annual_return", "max_drawdown")


def heatmap(result: SweepResult, metric: str = "sharpe", x: str = "entry",
            y: str = "lookback") -> Spec:
    """``metric`` over axes ``x`` and ``y`` of the level-1 table, the best cell over the
    other axes in each square (the maximum: for drawdown, the shallowest).

    Raises
    ------
    ValueError
        An unknown metric or axis, naming what is allowed.
    """
    from pairlib.engine.sweep import AXES

    if metric not in LABELS:
        raise ValueError(f"metric {metric!r} is not known; allowed: {', '.join(LABELS)}")
    for a in (x, y):
        if a not in AXES:
            raise ValueError(f"axis {a!r} is not known; allowed: {', '.join(AXES)}")
    t = result.table.copy()
    t[[x, y]] = t[[x, y]].astype(str).where(t[[x, y]].notna(), "off")
    grid = t.pivot_table(index=y, columns=x, values=metric, aggfunc="max")
    scale = 100.0 if metric in _PCT else 1.0
    z = [spec_values(row * scale, 2) for row in grid.to_numpy()]
    others = [a for a in AXES if a not in (x, y) and result.table[a].nunique(dropna=False) > 1]
    over = f"; best over {', '.join(others)}" if others else ""
    return {
        "data": [{"type": "heatmap", "x": [str(v) for v in grid.columns],
                  "y": [str(v) for v in grid.index], "z": z, "colorscale": "RdYlGn",
                  "texttemplate": "%{z}", "colorbar": {"title": {"text": "%" if scale > 1
                                                                 else ""}}}],
        "layout": {"title": {"text": f"{LABELS[metric]} by {x} and {y}{over}"},
                   "xaxis": {"title": {"text": x}, "type": "category"},
                   "yaxis": {"title": {"text": y}, "type": "category"}, "height": 420},
    }


def distribution_figure(result: SweepResult, metric: str = "sharpe") -> Spec:
    """The spread of ``metric`` across every combination tried, with the best cell and the
    median marked."""
    vals = result.table[metric].to_numpy(dtype=float)
    vals = vals[np.isfinite(vals)]
    best = result.best
    shapes = []
    if best is not None and math.isfinite(float(best[metric])):
        shapes.append({"type": "line", "xref": "x", "x0": float(best[metric]),
                       "x1": float(best[metric]), "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": "red", "dash": "dash"}})
    if len(vals):
        med = float(np.median(vals))
        shapes.append({"type": "line", "xref": "x", "x0": med, "x1": med, "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"color": "grey", "dash": "dot"}})
    return {
        "data": [{"type": "histogram", "x": spec_values(vals, 4), "nbinsx": 30,
                  "name": "combinations"}],
        "layout": {"title": {"text": f"{LABELS.get(metric, metric)} across the grid: best "
                             "cell (red dashes) and median (grey dots)"},
                   "xaxis": {"title": {"text": LABELS.get(metric, metric)}},
                   "yaxis": {"title": {"text": "combinations"}}, "shapes": shapes,
                   "height": 360},
    }


def shortlist_frame(result: SweepResult) -> pd.DataFrame:
    """The shortlisted combinations' full-portfolio metrics next to their level-1 Sharpe,
    returns and drawdowns in %."""
    s = result.shortlist.copy()
    for c in _PCT:
        if c in s:
            s[c] = (s[c] * 100).round(2)
    return s.rename(columns={c: f"{c} %" for c in _PCT})


def overfitting_line(result: SweepResult) -> str:
    """One Markdown line: the deflated Sharpe ratio and the PBO, with what they mean."""
    def show(v: float) -> str:
        return "n/a" if not math.isfinite(v) else f"{v:.3f}"

    return (f"**Deflated Sharpe ratio** of the best cell given {result.n_trials} combinations "
            f"tried: {show(result.deflated_sharpe)} (the probability that its true Sharpe "
            "beats the best of as many skill-less trials; above 0.95 is significant). "
            f"**Probability of backtest overfitting** (CSCV): {show(result.pbo)} (how often "
            "the in-sample best cell ranks below the median out of sample; near 0 is good).")


def summary_line(result: SweepResult) -> str:
    """One Markdown line: combinations run and skipped, the best cell and whether the sweep
    was interrupted."""
    best = result.best
    cell = "none" if best is None else ", ".join(
        f"{a}={best[a]}" for a in ("entry", "exit", "stop", "lookback", "max_loss_multiple",
                                   "formation_bars"))
    sharpe = "n/a" if best is None else f"{float(best['sharpe']):.2f}"
    stop = " **Interrupted: the tables hold what finished.**" if result.interrupted else ""
    return (f"{len(result.table)} combinations evaluated, {len(result.skipped)} skipped; best "
            f"cell {cell} (Sharpe {sharpe}); {len(result.shortlist)} shortlisted for the "
            f"full-portfolio backtest.{stop}")


def glue_result(result: SweepResult) -> None:
    """Glue the sweep's scraps: ``summary`` (:meth:`SweepResult.summary`), ``overfitting``
    (``deflated_sharpe``, ``pbo``: null when not computed, ``n_trials``), ``interrupted``,
    and the ``table``, ``skipped`` and ``shortlist`` tables."""
    from pairlib.report.notebook import glue

    summary = result.summary()
    glue("summary", summary)
    glue("overfitting", {"deflated_sharpe": summary["deflated_sharpe"], "pbo": summary["pbo"],
                         "n_trials": int(result.n_trials)})
    glue("interrupted", bool(result.interrupted))
    for name, frame in (("table", result.table), ("skipped", result.skipped),
                        ("shortlist", result.shortlist)):
        glue(name, _plain_frame(frame), encoder="pandas")


def _plain_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns (the loss multiple with None) as strings, for Parquet."""
    out = frame.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: "off" if v is None else str(v))
    return out



def progress(min_interval_s: float = 0.25) -> ProgressDisplay:
    """The sweep's progress callback in a notebook: a bar of combinations done, updated in
    place (and written to the file named by
    :data:`~pairlib.report.backtest_charts.PROGRESS_FILE_ENV`, which ``pairlib sweep`` reads
    for its own bar)."""
    return ProgressDisplay("Sweep", min_interval_s, unit="combinations")


def notes_markdown(result: SweepResult) -> str:
    """The sweep's notes as a Markdown list."""
    return "\n".join(f"- {n}" for n in result.notes)
