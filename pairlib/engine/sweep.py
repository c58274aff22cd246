"""Parameter sweeps: a grid of strategy, risk and selection settings, evaluated on two levels.

Level 1 (every valid combination, signal level): the walk-forward pair sets are chosen month
by month as :func:`pairlib.engine.backtest.simulate` chooses them, and every chosen pair of
every month is a *path* folded by :func:`pairlib.core.sweep.fold_returns` (all combinations at
once): flat at the month's first bar, entries through the month's last bar, then exits only
until flat or the end of the window (as the tick manages a pair that left the set). A pair
chosen again next month starts a new path with its new hedge ratio. Each path gets an equal
share of capital within its month (``1 / pairs chosen that month``); costs are the fill model's
taker fee plus slippage per unit of notional traded; funding is not charged at this level.
Slots, caps, sizing and the state carried across months are not modelled here: that is level 2.

Level 2 (the shortlist, full portfolio): the top ``shortlist`` combinations by level-1 Sharpe
run through :func:`pairlib.engine.backtest.simulate` with their params (slots and caps binding,
sizes, funding), reusing level 1's pair selections.

Overfitting: the deflated Sharpe ratio of the best level-1 cell given the number of
combinations tried, and the probability of backtest overfitting by CSCV over the per-day
returns of every combination (:mod:`pairlib.core.metrics`).

Scale-out: ``workers=N`` starts a local Dask cluster (N single-threaded worker processes on
127.0.0.1), ``dask_address`` uses an existing scheduler. The path panel is scattered to every
worker once and the combinations go out in chunks; the chunks are the same as in a
single-process run, so the results are identical. ``progress(done, total)`` is called after
every chunk and every shortlisted backtest; a ``KeyboardInterrupt`` (Ctrl-C, or raised by the
progress callback) stops the sweep and returns what finished, with ``interrupted=True``. With
``results_dir`` the finished rows are checkpointed there while the sweep runs (at most every
few seconds) and the final result is saved there at the end, so a process killed mid-sweep
leaves what had finished.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pairlib.config import Params, timeframe_ms, validate_params
from pairlib.core.metrics import deflated_sharpe, probability_of_backtest_overfitting
from pairlib.core.risk import MarketRules
from pairlib.core.sweep import PathArrays, PathPanel, combination_metrics, evaluate_chunk
from pairlib.errors import ConfigError

__all__ = [
    "AXES",
    "Combo",
    "Grid",
    "PathSet",
    "check_scale_out",
    "dask_client",
    "SweepResult",
    "run",
    "sweep",
]

AXES: dict[str, str] = {
    "entry": "strategy.entry",
    "exit": "strategy.exit",
    "stop": "strategy.stop",
    "lookback": "strategy.lookback",
    "max_loss_multiple": "risk.max_loss_multiple",
    "formation_bars": "selection.formation_bars",
}
"""Grid axes and the params key each one sets (a grid may use either name)."""

_INT_AXES = ("lookback", "formation_bars")
_METRICS = ("sharpe", "total_return", "annual_return", "max_drawdown")
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Combo:
    """One cell of the grid: every swept setting."""

    entry: float
    exit: float
    stop: float
    lookback: int
    max_loss_multiple: float | None
    formation_bars: int

    def params(self, base: Params) -> Params:
        """``base`` with this cell's settings (validated as a params file is)."""
        raw = base.model_dump(mode="json")
        for axis, key in AXES.items():
            section, leaf = key.split(".")
            raw[section][leaf] = getattr(self, axis)
        return validate_params(raw, Params, source="sweep combination")

    def selection_key(self, base: Params) -> tuple[int, float]:
        """What the pair selection depends on among the swept settings: the formation window
        and the half-life cap ``min(selection.half_life_max, lookback / 2)``."""
        return self.formation_bars, min(base.selection.half_life_max, self.lookback / 2.0)


@dataclass(frozen=True)
class Grid:
    """The swept values of each axis; axes not given keep the params' value."""

    axes: dict[str, tuple[Any, ...]]

    @classmethod
    def parse(cls, grid: Mapping[str, Any] | str, base: Params) -> Grid:
        """Validate a grid (``{axis or params key: value or list of values}``, or that
        mapping as JSON text).

        Raises
        ------
        ConfigError
            An unknown key, an empty axis, a value that is not a finite number (an integer
            for ``lookback``/``formation_bars``; ``null`` allowed for ``max_loss_multiple``),
            a value the params would refuse, an ``exit`` not below any ``entry`` or a ``stop``
            not above any ``entry``: naming the key and what is allowed.
        """
        if isinstance(grid, str):
            try:
                grid = json.loads(grid)
            except json.JSONDecodeError as e:
                raise ConfigError(f"the grid is not JSON: {e}") from None
        if not isinstance(grid, Mapping):
            raise ConfigError(f"the grid must be a mapping of axis to values, got "
                              f"{type(grid).__name__}; allowed axes: {', '.join(AXES)}")
        by_key = {v: k for k, v in AXES.items()}
        axes: dict[str, tuple[Any, ...]] = {}
        for key, raw in grid.items():
            axis = by_key.get(str(key), str(key))
            if axis not in AXES:
                raise ConfigError(f"grid key {key!r} is not known; allowed: "
                                  + ", ".join(f"{a} ({k})" for a, k in AXES.items()))
            if axis in axes:
                raise ConfigError(f"grid axis {axis!r} is given twice ({key!r} and its other "
                                  "name)")
            values = tuple(raw) if isinstance(raw, list | tuple) else (raw,)
            if not values:
                raise ConfigError(f"grid axis {axis!r} is empty; give at least one value")
            axes[axis] = tuple(_check_value(axis, v, base) for v in values)
            if len(set(axes[axis])) != len(axes[axis]):
                raise ConfigError(f"grid axis {axis!r} repeats a value: {list(values)}")
        for axis, key in AXES.items():
            if axis not in axes:
                section, leaf = key.split(".")
                axes[axis] = (getattr(getattr(base, section), leaf),)
        entries = axes["entry"]
        for x in axes["exit"]:
            if all(x >= e for e in entries):
                raise ConfigError(f"grid axis 'exit' value {x} is not below any entry "
                                  f"{list(entries)}; allowed: 0 <= exit < entry < stop")
        for s in axes["stop"]:
            if all(s <= e for e in entries):
                raise ConfigError(f"grid axis 'stop' value {s} is not above any entry "
                                  f"{list(entries)}; allowed: 0 <= exit < entry < stop")
        return cls(axes)

    def combinations(self) -> tuple[list[Combo], list[tuple[Combo, str]]]:
        """``(valid, skipped)``: every cell in grid order; a cell with ``exit >= entry`` or
        ``stop <= entry`` is skipped with the reason."""
        valid: list[Combo] = []
        skipped: list[tuple[Combo, str]] = []
        for values in itertools.product(*(self.axes[a] for a in AXES)):
            c = Combo(*values)
            if c.exit >= c.entry:
                skipped.append((c, f"exit {c.exit} >= entry {c.entry}"))
            elif c.stop <= c.entry:
                skipped.append((c, f"stop {c.stop} <= entry {c.entry}"))
            else:
                valid.append(c)
        return valid, skipped

    @property
    def size(self) -> int:
        """Cells in the grid, valid or not."""
        return math.prod(len(v) for v in self.axes.values())


def _check_value(axis: str, value: Any, base: Params) -> Any:
    """One grid value, typed and accepted by the params' own validation."""
    key = AXES[axis]
    if value is None and axis == "max_loss_multiple":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        allowed = "an integer" if axis in _INT_AXES else "a finite number"
        if axis == "max_loss_multiple":
            allowed += " or null (off)"
        raise ConfigError(f"grid axis {axis!r} value {value!r} is not {allowed}")
    if not math.isfinite(float(value)):
        raise ConfigError(f"grid axis {axis!r} value {value!r} is not finite; allowed: "
                          "finite numbers")
    if axis in _INT_AXES:
        if float(value) != int(value):
            raise ConfigError(f"grid axis {axis!r} value {value!r} is not an integer")
        value = int(value)
    else:
        value = float(value)
    if axis in ("entry", "exit", "stop"):  # their order is checked per cell
        low, allowed = (0.0, ">= 0") if axis == "exit" else (None, "> 0")
        if (low is None and value <= 0) or (low is not None and value < low):
            raise ConfigError(f"grid axis {axis!r} ({key}) value {value!r} is refused; "
                              f"allowed: a finite number {allowed}")
        return value
    raw = base.model_dump(mode="json")
    section, leaf = key.split(".")
    raw[section][leaf] = value
    try:
        validate_params(raw, Params, source="sweep grid")
    except ConfigError as e:
        raise ConfigError(f"grid axis {axis!r} ({key}) value {value!r} is refused: {e}") from None
    return value


# --------------------------------------------------------------------------------------
# Walk-forward pair sets and paths
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PathSet:
    """Level 1's paths of one selection key: one row per (month, chosen pair).

    ``spreads``/``returns``/``can_enter`` are ``(paths, rows)`` over the candle rows from
    ``first_bar`` rows before the first bar traded to the last; ``bars`` are the close times
    of the rows traded (``rows[first_bar:]``).
    """

    spreads: np.ndarray
    returns: np.ndarray
    can_enter: np.ndarray
    weights: np.ndarray
    first_bar: int
    bars: pd.DatetimeIndex
    pairs: tuple[str, ...]

    @property
    def arrays(self) -> PathArrays:
        """The numpy part, what the workers get."""
        return PathArrays(self.spreads, self.returns, self.can_enter, self.weights,
                          self.first_bar)


def _paths(closes: pd.DataFrame, selections: Mapping[datetime, Any], start: datetime,
           end: datetime, timeframe: str, warm: int) -> PathSet:
    """The paths of one selection key's monthly pair sets (see :class:`PathSet`)."""
    from pairlib.engine.backtest import bar_closes

    tf = timedelta(milliseconds=timeframe_ms(timeframe))
    closes = closes.sort_index()
    bars = bar_closes(closes, start, end, timeframe)
    i0 = int(closes.index.get_loc(bars[0] - tf))
    i1 = int(closes.index.get_loc(bars[-1] - tf))
    lo = max(0, i0 - warm)
    block = closes.iloc[lo: i1 + 1].astype(float)
    logs = np.log(block)
    simple = block.pct_change(fill_method=None)
    first = i0 - lo
    starts = sorted(selections)
    spreads, rets, enter, weights, names = [], [], [], [], []
    for k, t in enumerate(starts):
        chosen = selections[t].chosen
        if len(chosen) == 0:
            continue
        row0 = first + bars.index(t)
        row1 = first + (bars.index(starts[k + 1]) if k + 1 < len(starts) else len(bars))
        for y, x, beta, alpha in zip(chosen["y"], chosen["x"], chosen["beta"], chosen["alpha"],
                                     strict=True):
            b, a = float(beta), float(alpha)
            spreads.append(logs[y].to_numpy() - b * logs[x].to_numpy() - a)
            wy, wx = 1.0 / (1.0 + abs(b)), b / (1.0 + abs(b))
            rets.append(wy * simple[y].to_numpy() - wx * simple[x].to_numpy())
            ce = np.zeros(len(block), dtype=bool)
            ce[row0:row1] = True
            enter.append(ce)
            weights.append(1.0 / len(chosen))
            names.append(f"{t:%Y-%m} {y}~{x}")
    n = len(block)
    return PathSet(
        spreads=np.array(spreads, dtype=float).reshape(-1, n),
        returns=np.array(rets, dtype=float).reshape(-1, n),
        can_enter=np.array(enter, dtype=bool).reshape(-1, n),
        weights=np.array(weights, dtype=float), first_bar=first,
        bars=pd.DatetimeIndex(bars, name="close_time"), pairs=tuple(names))


_Chunk = tuple[tuple[int, float], list[int], list[tuple[int, float, float, float, float]]]


def _chunks(combos: Sequence[Combo], base: Params, size: int) -> list[_Chunk]:
    """Chunks of at most ``size`` combinations, each within one selection key, in a fixed
    order (by key, lookback, then grid order) that does not depend on the executor. Cells
    travel as plain tuples (:func:`pairlib.core.sweep.evaluate_chunk`), so a worker imports
    only numpy and the core rule."""
    order = sorted(range(len(combos)), key=lambda i: (combos[i].selection_key(base),
                                                       combos[i].lookback, i))
    out: list[_Chunk] = []
    for key, members in itertools.groupby(order, key=lambda i: combos[i].selection_key(base)):
        ids = list(members)
        for lo in range(0, len(ids), size):
            part = ids[lo: lo + size]
            out.append((key, part, [
                (combos[i].lookback, combos[i].entry, combos[i].exit, combos[i].stop,
                 _multiple(combos[i])) for i in part]))
    return out


# --------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepResult:
    """A sweep's results.

    Attributes
    ----------
    table : DataFrame
        Level 1, one row per finished valid combination (``combo`` id, the axes, ``sharpe``,
        ``total_return``, ``annual_return``, ``max_drawdown``, ``trades``, ``exposure``),
        best Sharpe first.
    skipped : DataFrame
        Cells not run (the axes and ``reason``).
    returns : DataFrame
        Level-1 per-bar returns, one column per finished combination id.
    shortlist : DataFrame
        Level 2: the shortlisted combinations through the full-portfolio backtest (axes,
        ``sharpe``, ``total_return``, ``annual_return``, ``max_drawdown``, ``calmar``,
        ``trades``, and ``level1_sharpe``).
    deflated_sharpe : float
        Probability that the best level-1 cell's true Sharpe beats the best of
        ``n_trials`` skill-less trials (NaN with fewer than two trials).
    pbo : float
        Probability of backtest overfitting, by CSCV over the per-day returns (NaN if too
        few days or combinations).
    n_trials : int
        Valid combinations evaluated at level 1.
    interrupted : bool
        True when Ctrl-C stopped the sweep: the tables hold what finished.
    notes : tuple of str
        What the reader should know (the level-1 model, skipped cells, PBO splits).
    """

    table: pd.DataFrame
    skipped: pd.DataFrame
    returns: pd.DataFrame
    shortlist: pd.DataFrame
    deflated_sharpe: float
    pbo: float
    n_trials: int
    interrupted: bool = False
    notes: tuple[str, ...] = ()
    pair_sets: dict[tuple[int, float], dict[datetime, pd.DataFrame]] = field(
        default_factory=dict)

    @property
    def best(self) -> pd.Series | None:
        """The best level-1 cell (highest Sharpe), or None."""
        ok = self.table.dropna(subset=["sharpe"])
        return None if ok.empty else ok.iloc[0]

    def summary(self) -> dict[str, Any]:
        """Plain-JSON headline: combinations, trials, best cell, DSR, PBO, interrupted."""
        best = self.best
        return {
            "combinations": int(len(self.table) + len(self.skipped)),
            "n_trials": int(self.n_trials), "skipped": int(len(self.skipped)),
            "interrupted": bool(self.interrupted),
            "best": None if best is None else {
                k: _plain(best[k]) for k in (*AXES, *_METRICS)},
            "deflated_sharpe": _plain(self.deflated_sharpe), "pbo": _plain(self.pbo),
            "shortlisted": int(len(self.shortlist)),
        }

    def save(self, folder: str | Path) -> Path:
        """Write ``table.csv``, ``skipped.csv``, ``shortlist.csv``, ``returns.csv`` and
        ``summary.json`` into ``folder`` (created); returns the folder.

        Each file is written to a temporary name and renamed into place, ``summary.json``
        last, so a reader (or a sweep killed mid-save) never sees a half-written file; a
        folder saved again is replaced file by file."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        _replace(out / "table.csv", lambda f: self.table.to_csv(f, index=False))
        _replace(out / "skipped.csv", lambda f: self.skipped.to_csv(f, index=False))
        _replace(out / "shortlist.csv", lambda f: self.shortlist.to_csv(f, index=False))
        _replace(out / "returns.csv", lambda f: self.returns.to_csv(f))
        _replace(out / "summary.json",
                 lambda f: f.write_text(json.dumps(self.summary(), indent=1)))
        return out


def _replace(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path`` (atomic on one file system)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _plain(v: Any) -> Any:
    """A JSON value: numpy scalars cast, NaN and infinity as None."""
    if v is None:
        return None
    if isinstance(v, np.integer | int) and not isinstance(v, bool):
        return int(v)
    if isinstance(v, np.floating | float):
        return float(v) if math.isfinite(float(v)) else None
    return v


LOCAL_HTTP = "127.0.0.1:0"
"""Where a local Dask scheduler serves its HTTP routes: loopback, a free port (with
``dashboard_address=None`` it still binds every interface on 8787, and a second cluster on the
machine fails to start)."""


@contextlib.contextmanager
def dask_client(workers: int | None, dask_address: str | None) -> Iterator[Any]:
    """A Dask client for ``workers`` local processes or the scheduler at ``dask_address``
    (None when neither is asked for)."""
    if workers is None and dask_address is None:
        yield None
        return
    from distributed import Client, LocalCluster

    if dask_address is not None:
        with Client(dask_address, timeout="30s") as client:
            yield client
        return
    with (LocalCluster(n_workers=int(workers or 1), threads_per_worker=1, processes=True,
                       host="127.0.0.1", dashboard_address=LOCAL_HTTP) as cluster,
          Client(cluster) as client):
        yield client


def check_scale_out(workers: int | None, dask_address: str | None, chunk_size: int,
                    shortlist: int) -> None:
    """Refuse (ConfigError) both or bad scale-out options, a chunk size below 1 or a
    negative shortlist, naming what is allowed."""
    if workers is not None and dask_address is not None:
        raise ConfigError("give workers or dask_address, not both")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if dask_address is not None and not str(dask_address).startswith(("tcp://", "tls://")):
        raise ConfigError(f"dask_address {dask_address!r} is not a scheduler address; "
                          "allowed: tcp://HOST:PORT or tls://HOST:PORT")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if shortlist < 0:
        raise ConfigError(f"shortlist must be >= 0, got {shortlist}")


def sweep(
    params: Params,
    closes: pd.DataFrame,
    start: datetime,
    end: datetime,
    grid: Mapping[str, Any] | Grid | str,
    rules: Mapping[str, MarketRules],
    *,
    quote_volume: pd.DataFrame | None = None,
    shortlist: int = 5,
    workers: int | None = None,
    dask_address: str | None = None,
    chunk_size: int = 64,
    progress: Progress | None = None,
    select: Any = None,
    pbo_splits: int = 10,
    backtest_kwargs: Mapping[str, Any] | None = None,
    results_dir: str | Path | None = None,
    checkpoint_every_s: float = 5.0,
) -> SweepResult:
    """Sweep ``grid`` over ``closes`` from ``start`` to ``end`` (candle close times).

    Parameters
    ----------
    params : Params
        The base params; every axis not in the grid keeps its value.
    closes : DataFrame
        Closes by candle open time, one column per symbol, reaching back the longest
        formation window plus the longest lookback before ``start``.
    start, end : datetime
        First and last bar traded.
    grid : mapping, JSON text or Grid
        ``{axis: values}`` (see :data:`AXES` and :meth:`Grid.parse`).
    rules : mapping
        Market rules for the full-portfolio backtests.
    quote_volume : DataFrame, optional
        For the selection's volume filter.
    shortlist : int
        Combinations (best level-1 Sharpe first) run through the full-portfolio backtest.
    workers, dask_address : optional
        Dask scale-out (see the module docstring); default: in this process.
    chunk_size : int
        Combinations per task.
    progress : callable, optional
        ``progress(done, total)`` in combinations (level-1 chunks, then each shortlisted
        backtest); raising ``KeyboardInterrupt`` from it stops the sweep with what finished.
    select : callable, optional
        The pair selection (default :func:`pairlib.core.pairs.select`).
    pbo_splits : int
        CSCV blocks (even); reduced to what the number of days allows.
    backtest_kwargs : mapping, optional
        Passed to :func:`pairlib.engine.backtest.simulate` for the shortlist (``fill``,
        ``funding_rates``, ``initial_equity``, ``price_steps``, ...). The level-1 cost is
        ``fill``'s taker fee plus its slippage.
    results_dir : path, optional
        Where the results are kept (:meth:`SweepResult.save`): a checkpoint of the finished
        combinations after a chunk or a shortlisted backtest finishes, at most every
        ``checkpoint_every_s`` seconds (``interrupted: true``, no DSR or PBO yet, a note
        saying it is a checkpoint), and the final result at the end, interrupted or not.
        A process killed mid-sweep therefore leaves what had finished up to the last
        checkpoint.
    checkpoint_every_s : float
        Least time between two checkpoints (each rewrites every finished row).

    Returns
    -------
    SweepResult

    Raises
    ------
    ConfigError
        A bad grid or scale-out option, before anything runs.
    """
    from pairlib.engine.backtest import FillModel, bar_closes, simulate, walk_forward_selections

    g = grid if isinstance(grid, Grid) else Grid.parse(grid, params)
    check_scale_out(workers, dask_address, chunk_size, shortlist)
    valid, skipped = g.combinations()
    if not valid:
        raise ConfigError("the grid has no valid combination (each needs "
                          "0 <= exit < entry < stop)")
    kw = dict(backtest_kwargs or {})
    fill = kw.get("fill") or FillModel(slippage_bps=params.venue.sim_slippage_bps)
    kw["fill"] = fill
    cost = fill.taker_fee + fill.slippage_bps / 10_000.0
    tf_ms = timeframe_ms(params.data.timeframe)
    tf = timedelta(milliseconds=tf_ms)
    closes = closes.sort_index()
    traded = bar_closes(closes, start, end, params.data.timeframe)
    if not traded:
        raise ConfigError(f"no bar closes between {start} and {end}")
    warm = max(c.lookback for c in valid)
    need = max(c.formation_bars for c in valid) + warm
    have = int(closes.index.get_loc(traded[0] - tf)) + 1
    if have < need:
        raise ConfigError(f"the sweep needs {need} closed candles up to its first bar (longest "
                          f"formation_bars + longest lookback) but the data has {have}")
    chunks = _chunks(valid, params, chunk_size)
    total = len(valid) + min(shortlist, len(valid))
    done = 0
    interrupted = False
    selections: dict[tuple[int, float], dict[datetime, Any]] = {}
    cols: dict[int, dict[str, float]] = {}
    rets: dict[int, np.ndarray] = {}
    bars_index = pd.DatetimeIndex(traded, name="close_time")
    short_rows: list[dict[str, Any]] = []

    last_saved = -math.inf

    def tick(n: int) -> None:
        nonlocal done, last_saved
        done += n
        if results_dir is not None and time.monotonic() - last_saved >= checkpoint_every_s:
            _result(valid, skipped, cols, rets, bars_index, short_rows, True, pbo_splits,
                    tf_ms, selections, final=False).save(results_dir)
            last_saved = time.monotonic()
        if progress is not None:
            progress(done, total)

    try:
        if progress is not None:
            progress(0, total)
        keys = sorted({c.selection_key(params) for c in valid})
        for key in keys:
            rep = next(c for c in valid if c.selection_key(params) == key)
            selections[key] = walk_forward_selections(rep.params(params), closes, start, end,
                                                      quote_volume, select)
        paths = {k: _paths(closes, selections[k], start, end, params.data.timeframe, warm)
                 for k in keys}
        panel = PathPanel({k: p.arrays for k, p in paths.items()})

        def collect(res: tuple[list[int], np.ndarray, np.ndarray, np.ndarray]) -> None:
            ids, r, trades, exposure = res
            metrics = combination_metrics(r, tf_ms)
            for j, i in enumerate(ids):
                cols[i] = {k: float(v[j]) for k, v in metrics.items()} | {
                    "trades": float(trades[j]), "exposure": float(exposure[j])}
                rets[i] = r[j]
            tick(len(ids))

        with dask_client(workers, dask_address) as client:
            if client is None:
                for chunk in chunks:
                    collect(evaluate_chunk(chunk, panel, cost))
            else:
                from distributed import as_completed

                shared = client.scatter(panel, broadcast=True)
                futures = client.map(evaluate_chunk, chunks, panel=shared, cost=cost,
                                     pure=False)
                try:
                    for fut in as_completed(futures):
                        collect(fut.result())
                except BaseException:
                    client.cancel(futures)
                    raise
        ranked = sorted(cols, key=lambda i: (-cols[i]["sharpe"] if math.isfinite(
            cols[i]["sharpe"]) else math.inf, i))
        cache = _SelectionCache(selections, select)
        for i in ranked[:shortlist]:
            c = valid[i]
            bt = simulate(c.params(params), closes, start, end, rules,
                          quote_volume=quote_volume, select=cache, **kw)
            m = bt.metrics
            short_rows.append({"combo": i, **_axes(c), "sharpe": m.sharpe,
                               "total_return": m.total_return,
                               "annual_return": m.annual_return,
                               "max_drawdown": m.max_drawdown, "calmar": m.calmar,
                               "trades": len(bt.trades),
                               "level1_sharpe": cols[i]["sharpe"]})
            tick(1)
    except KeyboardInterrupt:
        interrupted = True
    result = _result(valid, skipped, cols, rets, bars_index, short_rows, interrupted,
                     pbo_splits, tf_ms, selections)
    if results_dir is not None:
        result.save(results_dir)
    return result


def _multiple(c: Combo) -> float:
    """The cell's loss multiple, NaN for none."""
    return math.nan if c.max_loss_multiple is None else float(c.max_loss_multiple)


class _SelectionCache:
    """A ``select`` for :func:`~pairlib.engine.backtest.simulate` that returns level 1's
    selection of the same selection key and month start (computed the same way), and selects
    afresh for anything else."""

    def __init__(self, selections: Mapping[tuple[int, float], Mapping[datetime, Any]],
                 select: Any) -> None:
        self._by_bar = {(k, t): s for k, months in selections.items()
                        for t, s in months.items()}
        self._select = select

    def __call__(self, window: pd.DataFrame, params: Params, qv: Any) -> Any:
        sel = params.selection
        key = (sel.formation_bars, min(sel.half_life_max, params.strategy.lookback / 2.0))
        tf = timedelta(milliseconds=timeframe_ms(params.data.timeframe))
        hit = self._by_bar.get((key, window.index[-1] + tf))  # the bar it selects for
        if hit is not None:
            return hit
        if self._select is None:
            from pairlib.core.pairs import select as select_pairs

            return select_pairs(window, params, qv)
        return self._select(window, params, qv)


def _axes(c: Combo) -> dict[str, Any]:
    return {a: getattr(c, a) for a in AXES}


def _result(valid: list[Combo], skipped: list[tuple[Combo, str]], cols: Mapping[int, Mapping[
        str, float]], rets: Mapping[int, np.ndarray], bars: pd.DatetimeIndex,
        short_rows: list[dict[str, Any]], interrupted: bool, pbo_splits: int, tf_ms: int,
        selections: Mapping[tuple[int, float], Mapping[datetime, Any]],
        final: bool = True) -> SweepResult:
    """Assemble the tables and the overfitting statistics from what finished (``final``
    False: a checkpoint, without the statistics, which need every combination)."""
    from scipy import stats

    ids = sorted(cols)
    table = pd.DataFrame([{"combo": i, **_axes(valid[i]), **cols[i]} for i in ids],
                         columns=["combo", *AXES, *_METRICS, "trades", "exposure"])
    table = table.sort_values(["sharpe", "combo"], ascending=[False, True],
                              na_position="last").reset_index(drop=True)
    returns = pd.DataFrame({i: rets[i] for i in ids}, index=bars)
    skip = pd.DataFrame([{**_axes(c), "reason": why} for c, why in skipped],
                        columns=[*AXES, "reason"])
    short = pd.DataFrame(short_rows, columns=["combo", *AXES, *_METRICS, "calmar", "trades",
                                              "level1_sharpe"])
    notes = [
        "level 1 (heat maps): every (month, pair) is a path, flat at the month's first bar, "
        "entries within the month, then exits only; equal capital per pair of the month; fee "
        "and slippage per unit traded, no funding, no slots or caps",
        "level 2 (shortlist): the full-portfolio walk-forward backtest with those params",
    ]
    if skipped:
        notes.append(f"{len(skipped)} cell(s) skipped: exit >= entry or stop <= entry")
    dsr = pbo = math.nan
    n = len(ids)
    if not final:
        notes.append(f"checkpoint: {n} of {len(valid)} valid combinations and "
                     f"{len(short_rows)} shortlisted backtest(s) had finished when this was "
                     "written; the deflated Sharpe and the PBO are computed at the end")
    elif n >= 2:
        m = returns.to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            sd = m.std(axis=0, ddof=1)
            per_bar = np.where(sd > 0, m.mean(axis=0) / sd, np.nan)
        finite = np.isfinite(per_bar)
        if finite.sum() >= 2:
            best = int(np.nanargmax(np.where(finite, per_bar, -np.inf)))
            r = m[:, best]
            try:
                dsr = deflated_sharpe(float(per_bar[best]), len(r), float(stats.skew(r)),
                                      float(stats.kurtosis(r, fisher=False)), n,
                                      float(np.var(per_bar[finite], ddof=1)))
            except ValueError as e:
                notes.append(f"deflated Sharpe not computed: {e}")
        daily = (1.0 + returns).groupby(returns.index.floor("D")).prod() - 1.0
        splits = min(pbo_splits, (len(daily) // 2) // 2 * 2)
        if splits >= 2:
            pbo = probability_of_backtest_overfitting(daily.to_numpy(), n_splits=splits)
            notes.append(f"PBO by CSCV over {len(daily)} days of returns in {splits} blocks")
        else:
            notes.append("PBO not computed: too few days")
    if interrupted and final:
        notes.append(f"interrupted: {n} of {len(valid)} valid combinations finished, "
                     f"{len(short_rows)} shortlisted backtest(s)")
    pair_sets = {k: {t: s.chosen for t, s in months.items()} for k, months in selections.items()}
    return SweepResult(table, skip, returns, short, dsr, pbo, n, interrupted, tuple(notes),
                       pair_sets)


def run(
    params: Params,
    start: datetime,
    end: datetime,
    grid: Mapping[str, Any] | Grid | str,
    **kwargs: Any,
) -> SweepResult:
    """:func:`sweep` on the history of the venue named in params, read by
    :func:`pairlib.engine.backtest.gather` (what :func:`pairlib.engine.backtest.run` reads:
    same data layer, caches, market rules and funding history) back to the longest formation
    window plus the longest lookback. ``kwargs`` go to :func:`sweep` (``initial_equity`` and
    ``fill`` go to the shortlist's backtests)."""
    from pairlib.engine import backtest

    g = grid if isinstance(grid, Grid) else Grid.parse(grid, params)
    valid, _ = g.combinations()
    if not valid:
        raise ConfigError("the grid has no valid combination (each needs "
                          "0 <= exit < entry < stop)")
    if end <= start:
        raise ConfigError(f"end ({end}) must be after start ({start})")
    warm = max(c.formation_bars for c in valid) + max(c.lookback for c in valid)
    bt_kw: dict[str, Any] = {k: kwargs.pop(k) for k in ("fill", "initial_equity")
                             if k in kwargs}
    history = backtest.gather(params, start, end, warm_bars=warm)
    bt_kw |= {"funding_rates": history.funding_rates, "funding_marks": history.funding_marks,
              "price_steps": history.price_steps}
    return sweep(params, history.closes, start, end, g, history.rules,
                 quote_volume=history.quote_volume, backtest_kwargs=bt_kw, **kwargs)
