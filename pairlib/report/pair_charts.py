"""Plotly figures and display helpers for the pair-generation report
(``notebooks/generate_pairs.ipynb``).

Pure functions of frames and of :class:`~pairlib.engine.generate.PairGeneration`: they build
figures,
Markdown and scraps, and never fetch or store anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pairlib.core.strategy import spread as spread_of
from pairlib.core.strategy import zscore as zscore_of

if TYPE_CHECKING:
    from pairlib.config import StrategyParams
    from pairlib.engine.generate import PairGeneration

__all__ = ["QUALITY_PROBLEM_COUNTS", "dropped_line", "funnel", "glue_result", "pair_figure",
           "pair_figures", "pvalue_histogram", "quality_issues", "quality_line",
           "rejection_counts", "rejection_examples", "stats_heatmap", "summary_line"]

QUALITY_PROBLEM_COUNTS = ("gaps", "duplicates", "nans", "nonpositive", "masked", "jumps",
                          "lag_bars")
"""Quality-report counts (:data:`pairlib.edges.data.QUALITY_COLUMNS`) of which any non-zero value
makes a symbol worth a look (:func:`quality_issues`)."""

_HEAT_COLUMNS = ("pvalue", "qvalue", "half_life", "crossings", "spread_std", "hurst",
                 "oos_pvalue", "johansen_trace")


def funnel(counts: pd.DataFrame) -> go.Figure:
    """Funnel of how many symbols/pairs survived each stage (columns ``stage``, ``count``)."""
    fig = go.Figure(go.Funnel(y=list(counts["stage"]), x=[int(c) for c in counts["count"]],
                              textinfo="value"))
    fig.update_layout(title="Selection funnel", height=420, margin={"l": 220})
    return fig


def pvalue_histogram(pvalues: np.ndarray, bins: int = 40) -> go.Figure:
    """Histogram (as a density) of the scan's combined p-values against the uniform line.

    Under no cointegration at all, p-values are close to uniform on [0, 1]; a spike near 0
    above the line is the signal the FDR control separates from noise.
    """
    p = np.asarray(pvalues, dtype=float)
    p = p[np.isfinite(p)]
    fig = go.Figure(go.Histogram(x=p, xbins={"start": 0.0, "end": 1.0, "size": 1.0 / bins},
                                 histnorm="probability density", name="p-values"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[1, 1], mode="lines", name="uniform (no pairs)",
                             line={"dash": "dash", "color": "black"}))
    fig.update_layout(title=f"Engle–Granger p-values of {p.size} tested pairs",
                      xaxis_title="combined p-value", yaxis_title="density", height=380)
    return fig


def stats_heatmap(chosen: pd.DataFrame) -> go.Figure:
    """Heat map of the chosen pairs' statistics, each column scaled to [0, 1] for colour;
    the cell text shows the raw value."""
    cols = [c for c in _HEAT_COLUMNS if c in chosen.columns]
    labels = [f"{y} ~ {x}" for y, x in zip(chosen["y"], chosen["x"], strict=True)]
    raw = chosen[cols].astype(float)
    span = (raw.max() - raw.min()).replace(0.0, 1.0)
    scaled = (raw - raw.min()) / span
    fig = go.Figure(go.Heatmap(z=scaled.to_numpy(), x=cols, y=labels, colorscale="Viridis",
                               text=raw.map(lambda v: f"{v:.3g}").to_numpy(),
                               texttemplate="%{text}", showscale=False))
    fig.update_layout(title="Chosen pairs", height=120 + 32 * len(labels),
                      margin={"l": 260})
    return fig


def pair_figure(
    prices: pd.DataFrame,
    y: str,
    x: str,
    beta: float,
    alpha: float,
    strategy: StrategyParams,
    bars: int | None = None,
) -> go.Figure:
    """Normalized prices of both legs, and the rolling z-score the tick trades with its
    ±entry, ±exit and ±stop bands.

    Parameters
    ----------
    prices : DataFrame
        Close prices, one column per symbol, oldest row first (candle open times as index).
        Rows before the shown window serve as the z-score's warm-up.
    y, x : str
        The pair's legs (columns of ``prices``).
    beta, alpha : float
        Hedge ratio and intercept of the pair.
    strategy : StrategyParams
        The params' strategy section (what the tick trades): ``lookback`` for the z-score,
        ``entry``, ``exit`` and ``stop`` for the bands.
    bars : int, optional
        Show only the last ``bars`` rows (e.g. the formation window); default all rows.

    Returns
    -------
    plotly.graph_objects.Figure
        Row 1: both legs divided by their first shown close. Row 2: the trace ``z`` and
        horizontal lines at ``±entry``, ``±exit``, ``±stop`` and 0.

    Raises
    ------
    KeyError
        ``y`` or ``x`` is not a column of ``prices``.
    ValueError
        ``bars`` is not a positive integer.

    Notes
    -----
    z is :func:`pairlib.core.strategy.zscore` of :func:`pairlib.core.strategy.spread` of the legs'
    log
    closes over ``strategy.lookback`` bars: the same functions and window the tick decides
    with, so a bar beyond a band here is a bar the tick acts on (given the same candles).
    It is computed over all of ``prices`` before the last ``bars`` rows are cut, so the shown
    window starts with a full lookback when the rows before it exist.
    """
    for leg in (y, x):
        if leg not in prices.columns:
            raise KeyError(f"{leg!r} is not a column of prices; columns: "
                           + ", ".join(map(str, prices.columns)))
    if bars is not None and (isinstance(bars, bool) or not isinstance(bars, int) or bars < 1):
        raise ValueError(f"bars must be a positive int or None (all rows), got {bars!r}")
    lookback = strategy.lookback
    py, px = prices[y].astype(float), prices[x].astype(float)
    z = pd.Series(zscore_of(spread_of(np.log(py.to_numpy()), np.log(px.to_numpy()), beta, alpha),
                            lookback), index=prices.index)
    if bars is not None:
        py, px, z = py.iloc[-bars:], px.iloc[-bars:], z.iloc[-bars:]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("normalized prices",
                                        f"z-score ({lookback}-bar lookback, as the tick trades)"
                                        " and entry, exit, stop bands"))
    fig.add_trace(go.Scatter(x=py.index, y=py / py.iloc[0], name=y), row=1, col=1)
    fig.add_trace(go.Scatter(x=px.index, y=px / px.iloc[0], name=x), row=1, col=1)
    fig.add_trace(go.Scatter(x=z.index, y=z.to_numpy(), name="z", line={"color": "black"},
                             hovertemplate="z=%{y:.2f}<br>%{x}<extra></extra>"), row=2, col=1)
    for k, colour, label in ((strategy.entry, "orange", "entry"),
                             (strategy.exit, "green", "exit"),
                             (strategy.stop, "red", "stop")):
        for sign in (1, -1):
            fig.add_hline(y=sign * k, line={"dash": "dot", "color": colour},
                          annotation_text=f"{label} ±{k:g}" if sign > 0 else None,
                          row=2, col=1)
    fig.add_hline(y=0.0, line={"color": "grey"}, row=2, col=1)
    fig.update_yaxes(title_text="z", row=2, col=1)
    fig.update_layout(title=f"{y} ~ {x} (beta {beta:.3f})", height=520,
                      legend={"orientation": "h"})
    return fig


def pair_figures(result: PairGeneration) -> list[go.Figure]:
    """One :func:`pair_figure` per chosen pair, best first, over the formation window, with
    the strategy's lookback and bands (what the tick trades)."""
    rule, bars = result.params.strategy, result.params.selection.formation_bars
    return [pair_figure(result.data.closes, str(pair.y), str(pair.x), float(pair.beta),
                        float(pair.alpha), rule, bars=bars)
            for pair in result.selection.chosen.itertuples()]


def quality_issues(quality: pd.DataFrame) -> pd.DataFrame:
    """The rows of a data-quality report worth a look: a symbol that is not ``ok`` (dropped),
    has ``notes`` (masked bars, jumps), is ``stale`` or ``too_short``, or has any non-zero
    count of :data:`QUALITY_PROBLEM_COUNTS`. Same columns and order; empty when every
    symbol is clean."""
    flag = pd.Series(False, index=quality.index)
    if "ok" in quality.columns:
        flag |= ~quality["ok"].astype(bool)
    if "notes" in quality.columns:
        flag |= quality["notes"].fillna("").astype(str).str.strip() != ""
    for col in ("stale", "too_short"):
        if col in quality.columns:
            flag |= quality[col].fillna(False).astype(bool)
    for col in QUALITY_PROBLEM_COUNTS:
        if col in quality.columns:
            flag |= pd.to_numeric(quality[col], errors="coerce").fillna(0) != 0
    return quality.loc[flag]


def quality_line(result: PairGeneration) -> str:
    """The data quality in one Markdown line: how many symbols are clean, how many are
    listed (:func:`quality_issues`) and how many were dropped."""
    quality = result.data.quality
    issues = quality_issues(quality)
    total, listed = len(quality), len(issues)
    if not listed:
        return f"**Data quality:** all {total} symbols clean (the full table is at the end)."
    return (f"**Data quality:** {total - listed} of {total} symbols clean; {listed} with "
            f"something to note, {len(result.data.dropped)} of them dropped (the full table "
            "is at the end).")


def rejection_counts(rejected: pd.DataFrame) -> pd.DataFrame:
    """Rejected symbols and pairs per selection stage (index ``stage``, column ``rejected``)."""
    return rejected.groupby("stage").size().rename("rejected").to_frame()


def rejection_examples(rejected: pd.DataFrame, per_stage: int = 3) -> pd.DataFrame:
    """The first ``per_stage`` rejections of each stage, with their reasons."""
    return rejected.groupby("stage").head(per_stage)


def summary_line(result: PairGeneration) -> str:
    """The run in one Markdown line: as_of, pair set, params hash, venue and market, the
    candles' timeframe and range, the z lookback, the code version, counts, scan time."""
    sel, meta = result.selection, result.meta
    return (f"**as of** {result.as_of:%Y-%m-%d %H:%M} UTC · **pair set** #{result.pair_set_id} · "
            f"**params** `{result.params_hash}` · **venue** {meta.venue_kind} "
            f"(`{meta.venue_key}`) · **candles** {meta.timeframe}, {meta.data_start} to "
            f"{meta.data_end} · **z lookback** {meta.lookback} · **code** `{meta.code_version}` · "
            f"**pairs tested** {len(sel.pvalues)} · **chosen** {len(sel.chosen)} · "
            f"**scan** {sel.scan_seconds:.2f} s")


def dropped_line(result: PairGeneration) -> str:
    """The symbols the data layer dropped, with why, as one Markdown line."""
    dropped = ", ".join(f"{s} ({r})" for s, r in result.data.dropped.items())
    return "**Dropped:** " + (dropped or "none")


def glue_result(result: PairGeneration) -> None:
    """Glue the run's scraps into the running notebook: ``chosen_pairs`` (table),
    ``funnel`` ({stage: count}), ``scan_seconds``, ``pair_set_id`` (0: not saved), ``as_of``."""
    from pairlib.report.notebook import glue

    sel = result.selection
    glue("chosen_pairs", sel.chosen, encoder="pandas")
    glue("funnel", {str(s): int(c)
                    for s, c in zip(sel.funnel["stage"], sel.funnel["count"], strict=True)})
    glue("scan_seconds", float(sel.scan_seconds))
    glue("pair_set_id", int(result.pair_set_id or 0))
    glue("as_of", result.as_of.isoformat())
