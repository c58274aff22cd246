"""Market data: fetch closed candles, cache them in Parquet, check their quality, align them.

This module returns frames; it never talks to the store, and it never reads the wall clock
(``now`` is always passed in).

Conventions
-----------
* **Closed candles only.** A candle is closed iff ``open_time + timeframe <= now``. The
  still-forming candle the venue serves is dropped at the edge (:func:`closed_candles`) and
  never cached or returned. (Live: run a few seconds after the bar boundary, so that the
  venue has closed the candle our clock says is closed.)
* **Time index = candle open time**, UTC (``datetime64[us, UTC]``, index name
  ``open_time``), as Binance, ccxt and :meth:`pairlib.sim.market.Market.closes` label
  candles. The row labelled ``t`` holds the candle ``[t, t + timeframe)``; its close is known
  at ``t + timeframe``. At ``now`` the last row is the last closed candle, labelled
  ``floor(now, timeframe) - timeframe``.
* **Window.** :func:`load_market_data` returns the last ``bars`` closed candles on a regular
  grid, one column per kept symbol (unified symbols). A symbol listed inside the window has
  NaN before its first candle; a kept symbol lagging by at most ``stale_bars`` candles has its
  last close carried forward over the missing tail (``quality.lag_bars`` shows it).
* **Decision window.** With ``decision_bars=k`` only the last ``k`` candles of the window are
  gated: a defect there (missing, duplicated, NaN, infinite or <= 0 candle) drops the symbol,
  while an older defect keeps it, is counted in ``quality.masked`` and described in
  ``quality.notes``, and leaves the close (and quote volume) of that bar NaN, so a rolling
  statistic over the trailing ``k`` bars is computed exactly as on clean data (and a window
  that holds the NaN bar yields NaN, never a value built on a bad price). With
  ``decision_bars=None`` the whole window is gated, and kept symbols have no NaN other than
  before their listing.
* **quote_volume** per candle is ``volume * (high + low + close) / 3`` (ccxt's unified OHLCV
  carries base volume only); the universe ranking uses the venue's exact 24 h quote volume.

Cache layout
------------
``{cache_dir}/ohlcv/{venue_key}/{timeframe}/{SYMBOL}.parquet``, one file per (venue, symbol,
timeframe); ``venue_key`` is :attr:`pairlib.venue.exchange.Exchange.venue_key` (``binanceusdm``,
``sim-s7-n48``, ...) and ``SYMBOL`` the unified symbol with ``/`` and ``:`` replaced by ``_``
(``BTC_USDT_USDT``). Columns ``open_ms`` (int64) and ``open, high, low, close, volume``
(float64), sorted, unique, closed candles only. The Parquet schema metadata records
``covered_from_ms`` (the earliest open time the venue was asked for: nothing exists before
it that the venue would serve) and ``covered_to_ms`` (the last candle held). The next load
asks only for candles opening after ``covered_to_ms`` -- a closed candle is fetched once --
and, if the window grew backwards, before ``covered_from_ms``. A cache that does not touch
the window is replaced. Files are written atomically (temporary file + :func:`os.replace`),
so a crash or a concurrent reader never sees half a file; an unreadable file is refetched.

Settled funding rates and the mark prices they were paid at (the backtest's funding) are
cached the same way in ``{cache_dir}/funding/{venue_key}/{SYMBOL}.parquet``
(:class:`FundingRateCache`, :func:`load_funding_rates`).

Quality (one row per symbol, :func:`quality_report`)
----------------------------------------------------
``rows`` distinct candles in the window, ``first``/``last`` open times, ``gaps`` (missing
candles between first and last), ``duplicates`` (repeated open times), ``nans`` and
``nonpositive`` (candles with a NaN or infinite price, or a price <= 0, in open/high/low/close),
``masked`` (bars older than the decision window that are missing or defective; their close is
NaN; always 0 without a decision window), ``jumps`` (one-bar close-to-close moves between two
clean adjacent candles with ``|log return| >`` :data:`JUMP_LOG_RETURN`) and
``max_abs_log_return`` (the largest such move, NaN with fewer than two adjacent clean
candles), ``lag_bars`` (closed candles missing at the end), ``stale`` (``lag_bars >
stale_bars``), ``too_short`` (``rows < min_history_bars``), ``ok`` (no gating defect),
``reason`` (why not ok, empty when ok) and ``notes`` (what was found but does not drop the
symbol: masked bars and jumps; empty when there is nothing to say). The counts cover the
whole window; a symbol is dropped for a gap, duplicate, NaN or price <= 0 inside the gated
range (the decision window, or the whole window without one), for being stale, too short or
failing to fetch, and the reason reaches ``MarketData.dropped``. A jump never drops a symbol:
a large move the venue serves on an otherwise valid candle may be real, so it is reported
for the operator rather than silently kept or silently removed.

Cache checks
------------
A cache file is checked on every read, because a file that is trusted as it is would freeze
a bad candle forever (a closed candle is fetched once). A file that cannot be read, or whose
open times are out of order or off the timeframe's grid, is discarded and the window is
fetched again. Rows that repeat an open time, or hold a NaN, infinite or <= 0 price or a NaN,
infinite or negative volume, are dropped; those and the holes between the file's first row
and its recorded end inside the window are fetched again (one range from the earliest to
the latest). The recorded ``covered_to_ms`` is clamped to the last valid row the file holds,
so metadata that claims candles the file lacks (for instance a range pushed past the venue's
clock) cannot stop them from being fetched. Every such finding is logged as a warning.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pairlib.clock import from_ms, to_ms
from pairlib.config import DataParams, timeframe_ms
from pairlib.errors import DataError, ExchangeError
from pairlib.venue.exchange import Exchange, FundingRate
from pairlib.venue.records import OhlcvRequest

__all__ = [
    "OHLCV_COLUMNS",
    "QUALITY_COLUMNS",
    "CandleCache",
    "FundingRateCache",
    "JUMP_LOG_RETURN",
    "MarketData",
    "closed_candles",
    "load_funding_rates",
    "load_market_data",
    "quality_report",
    "select_universe",
]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
"""Columns of a candle frame (index: ``open_time``)."""

QUALITY_COLUMNS: tuple[str, ...] = (
    "rows", "first", "last", "gaps", "duplicates", "nans", "nonpositive", "masked", "jumps",
    "max_abs_log_return", "lag_bars", "stale", "too_short", "ok", "reason", "notes",
)
"""Columns of the quality report (index: ``symbol``)."""

JUMP_LOG_RETURN = 0.2
"""A one-bar close-to-close move with ``|log return|`` above this is a jump (+22 % / -18 %).

Calibrated for the 4h candles the strategy trades: about ten typical 4h standard deviations
of a liquid perpetual, so it flags venue glitches, fat-finger prints and real shocks alike.
Jumps are reported (``quality.jumps``, ``quality.notes``), never dropped: the venue served
them on otherwise valid candles, and only the operator can tell a glitch from a crash.
"""

_PRICE_COLUMNS = ["open", "high", "low", "close"]
_META_KEY = b"pairlib.ohlcv"
_MAX_FOLLOW_UP_ROUNDS = 64
_WRITERS = 4  # cache files written in parallel (file-system latency, not CPU, dominates)
_TMP_SEQ = itertools.count()

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class MarketData:
    """Aligned closed candles of a universe, with their quality report.

    Attributes
    ----------
    closes : DataFrame
        Close prices; index ``open_time`` (UTC candle open times, regular grid), columns
        the kept unified symbols. NaN before a symbol's listing and, with a decision
        window, at bars older than it that are missing or defective (``quality.masked``);
        the last ``decision_bars`` rows of a kept symbol are clean.
    quote_volume : DataFrame
        Quote-currency volume per candle, same shape as ``closes`` (NaN where the close is).
    quality : DataFrame
        One row per requested symbol (index ``symbol``), columns :data:`QUALITY_COLUMNS`.
    dropped : dict
        Symbol -> reason, for every symbol not in ``closes``.
    as_of : datetime
        The ``now`` the data was loaded at.
    cache_dir : Path
        The Parquet cache root.
    requests : int
        HTTP requests made for candles (retries included); 0 when all came from the cache.
    decision_bars : int or None
        The trailing candles that were gated (None: the whole window).
    """

    closes: pd.DataFrame
    quote_volume: pd.DataFrame
    quality: pd.DataFrame
    dropped: dict[str, str]
    as_of: datetime
    cache_dir: Path
    requests: int = 0
    decision_bars: int | None = None


# --------------------------------------------------------------------------- pure helpers


def _index(open_ms: np.ndarray) -> pd.DatetimeIndex:
    idx = pd.to_datetime(np.asarray(open_ms, dtype=np.int64), unit="ms", utc=True)
    idx.name = "open_time"
    return pd.DatetimeIndex(idx)


def _index_ms(index: pd.Index) -> np.ndarray:
    """Open times of a candle frame's index in ms since the epoch."""
    return np.asarray(pd.DatetimeIndex(index).as_unit("ms").asi8, dtype=np.int64)


def _empty_candles() -> pd.DataFrame:
    return pd.DataFrame(
        {c: np.empty(0, dtype=np.float64) for c in OHLCV_COLUMNS},
        index=_index(np.empty(0, dtype=np.int64)),
    )


def closed_candles(
    rows: Sequence[Sequence[float]] | np.ndarray, timeframe_ms: int, now_ms: int
) -> pd.DataFrame:
    """Keep the closed candles of raw OHLCV rows, as a frame indexed by open time.

    Parameters
    ----------
    rows : sequence of rows or 2-D array
        ``[open_ms, open, high, low, close, volume]`` per candle, as ccxt returns them.
    timeframe_ms : int
        Candle length in ms.
    now_ms : int
        The present in ms; candles with ``open_ms + timeframe_ms > now_ms`` are forming
        and dropped.

    Returns
    -------
    DataFrame
        Index ``open_time`` (UTC), columns :data:`OHLCV_COLUMNS` (float64), sorted by open
        time (stable: duplicated open times are kept, in arrival order, for the quality
        report). ``None`` prices become NaN.
    """
    if len(rows) == 0:
        return _empty_candles()
    try:
        arr = np.asarray(rows, dtype=np.float64)  # None -> NaN
    except ValueError:  # ragged rows: keep the first six fields of each
        arr = np.array([list(r[:6]) for r in rows], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] < 6:
        raise DataError(f"OHLCV rows need 6 fields, got shape {arr.shape}")
    arr = arr[:, :6]
    open_ms = arr[:, 0].astype(np.int64)
    keep = open_ms + int(timeframe_ms) <= int(now_ms)
    arr, open_ms = arr[keep], open_ms[keep]
    order = np.argsort(open_ms, kind="stable")
    arr, open_ms = arr[order], open_ms[order]
    return pd.DataFrame(
        {c: arr[:, i + 1] for i, c in enumerate(OHLCV_COLUMNS)}, index=_index(open_ms)
    )


def _last_closed_open_ms(now_ms: int, tf: int) -> int:
    return (now_ms // tf) * tf - tf


@dataclass(frozen=True)
class _Defects:
    """Where the candles of one symbol are missing or defective (open times in ms).

    ``bad_times`` are distinct open times whose candle is duplicated or has a NaN, infinite
    or <= 0 price; ``gap_times`` are grid times between the first and the last candle that
    have none. Row-level flags (``nan_row``, ``nonpos_row``) follow the input rows.
    """

    uniq: np.ndarray
    counts: np.ndarray
    row_of: np.ndarray  # per distinct open time: the index of (the last) row holding it
    bad: np.ndarray  # per distinct open time
    nan_row: np.ndarray
    nonpos_row: np.ndarray
    gap_times: np.ndarray

    @property
    def bad_times(self) -> np.ndarray:
        return self.uniq[self.bad]


def _defects(open_ms: np.ndarray, prices: np.ndarray, tf: int) -> _Defects:
    """Defects of candles given as open times (any order, repeats allowed) and (n, 4) OHLC."""
    open_ms = np.asarray(open_ms, dtype=np.int64)
    uniq, inv, counts = np.unique(open_ms, return_inverse=True, return_counts=True)
    if prices.size:
        finite = np.isfinite(prices)
        nan_row = (~finite).any(axis=1)
        with np.errstate(invalid="ignore"):
            nonpos_row = ((prices <= 0) & finite).any(axis=1)
    else:
        nan_row = nonpos_row = np.zeros(open_ms.size, dtype=bool)
    bad = counts > 1
    np.logical_or.at(bad, inv, nan_row | nonpos_row)
    row_of = np.empty(uniq.size, dtype=np.int64)
    row_of[inv] = np.arange(open_ms.size)
    if uniq.size:
        grid = np.arange(int(uniq[0]), int(uniq[-1]) + tf, tf, dtype=np.int64)
        gap_times = np.setdiff1d(grid, uniq, assume_unique=True)
    else:
        gap_times = np.empty(0, dtype=np.int64)
    return _Defects(uniq, counts, row_of, bad, nan_row, nonpos_row, gap_times)


def _jumps(d: _Defects, close: np.ndarray, tf: int) -> tuple[int, float, int | None]:
    """Jumps between clean adjacent candles: count, largest ``|log return|``, and the open
    time of the candle that ends the largest move (None without a move)."""
    if not d.uniq.size:
        return 0, math.nan, None
    good_t = d.uniq[~d.bad]
    if good_t.size < 2:
        return 0, math.nan, None
    c = close[d.row_of[~d.bad]]  # a clean open time has exactly one row
    adjacent = np.diff(good_t) == tf
    if not adjacent.any():
        return 0, math.nan, None
    r = np.abs(np.diff(np.log(c)))[adjacent]
    ends = good_t[1:][adjacent]
    k = int(np.argmax(r))
    return int((r > JUMP_LOG_RETURN).sum()), float(r[k]), int(ends[k])


def _plural(k: int, what: str) -> str:
    return f"{k} {what}{'s' if k != 1 else ''}"


def _iso(open_ms: int) -> str:
    return from_ms(int(open_ms)).strftime("%Y-%m-%dT%H:%MZ")


def _quality_record(
    symbol: str,
    open_ms: np.ndarray,
    prices: np.ndarray,
    tf: int,
    expected_last: int,
    min_bars: int,
    stale_bars: int,
    decision_bars: int | None = None,
) -> dict[str, Any]:
    """One row of the quality report from open times and (n, 4) OHLC prices.

    With ``decision_bars`` only defects of candles opening in the last ``decision_bars``
    bars up to ``expected_last`` gate the symbol; older ones are counted in ``masked``.
    """
    d = _defects(open_ms, prices, tf)
    rows = int(d.uniq.size)
    duplicates = int(np.asarray(open_ms).size - rows)
    nans = int(d.nan_row.sum())
    nonpos = int(d.nonpos_row.sum())
    gaps = int(d.gap_times.size)
    if rows:
        first_ms, last_ms = int(d.uniq[0]), int(d.uniq[-1])
        lag = max(0, (expected_last - last_ms) // tf)
    else:
        first_ms = last_ms = 0
        lag = -1
    stale = rows == 0 or lag > stale_bars
    too_short = rows < min_bars

    # The gated range: the decision window, or everything without one.
    if decision_bars is None:
        lo = np.iinfo(np.int64).min
        where = ""
    else:
        lo = expected_last - (int(decision_bars) - 1) * tf
        where = f" in the decision window (last {_plural(int(decision_bars), 'candle')})"
    row_in = np.asarray(open_ms, dtype=np.int64) >= lo
    gaps_in = int((d.gap_times >= lo).sum())
    dup_in = int((d.counts[d.uniq >= lo] - 1).sum())
    nans_in = int(d.nan_row[row_in].sum())
    nonpos_in = int(d.nonpos_row[row_in].sum())
    masked = int((d.bad & (d.uniq < lo)).sum() + (d.gap_times < lo).sum())

    reasons: list[str] = []
    if rows == 0:
        reasons.append("no closed candles")
    if gaps_in:
        reasons.append(f"{_plural(gaps_in, 'missing candle')} (gaps){where}")
    if dup_in:
        reasons.append(f"{_plural(dup_in, 'duplicated open time')}{where}")
    if nans_in:
        reasons.append(f"{_plural(nans_in, 'candle')} with NaN or infinite prices{where}")
    if nonpos_in:
        reasons.append(f"{_plural(nonpos_in, 'candle')} with prices <= 0{where}")
    if rows and stale:
        reasons.append(f"stale: last closed candle {lag} bars behind (allowed {stale_bars})")
    if rows and too_short:
        reasons.append(f"too short: {rows} < {min_bars} bars")

    notes: list[str] = []
    if masked:
        notes.append(
            f"{_plural(masked, 'candle')} older than the decision window (last "
            f"{decision_bars}) missing or defective (gaps, duplicated, NaN or <= 0): "
            "close left NaN"
        )
    close = prices[:, 3] if prices.size else np.empty(0)
    jumps, max_move, max_at = _jumps(d, close, tf)
    if jumps and max_at is not None:
        notes.append(
            f"{_plural(jumps, 'one-bar move')} with |log return| > {JUMP_LOG_RETURN} "
            f"(largest {max_move:.3f}, candle opening {_iso(max_at)}): served by the venue, "
            "kept; check it"
        )
    return {
        "symbol": symbol,
        "rows": rows,
        "first": first_ms if rows else None,
        "last": last_ms if rows else None,
        "gaps": gaps,
        "duplicates": duplicates,
        "nans": nans,
        "nonpositive": nonpos,
        "masked": masked,
        "jumps": jumps,
        "max_abs_log_return": max_move,
        "lag_bars": int(lag),
        "stale": bool(stale),
        "too_short": bool(too_short),
        "ok": not reasons,
        "reason": "; ".join(reasons),
        "notes": "; ".join(notes),
    }


def _quality_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    out = pd.DataFrame.from_records(list(records), columns=["symbol", *QUALITY_COLUMNS])
    for col in ("first", "last"):
        out[col] = pd.to_datetime(out[col].astype("float64"), unit="ms", utc=True)
    out = out.astype(
        {"rows": "int64", "gaps": "int64", "duplicates": "int64", "nans": "int64",
         "nonpositive": "int64", "masked": "int64", "jumps": "int64",
         "max_abs_log_return": "float64", "lag_bars": "int64", "stale": "bool",
         "too_short": "bool", "ok": "bool", "reason": "str", "notes": "str"}
    )
    return out.set_index("symbol")


def _check_decision_bars(decision_bars: int | None, n_bars: int | None) -> int | None:
    """``decision_bars`` as an int (or None); an integer in ``[1, n_bars]`` is allowed."""
    if decision_bars is None:
        return None
    upper = "" if n_bars is None else f", at most the window's {n_bars} bars"
    if isinstance(decision_bars, bool) or not isinstance(decision_bars, int | np.integer) \
            or decision_bars < 1 or (n_bars is not None and decision_bars > n_bars):
        raise DataError(
            f"decision_bars must be None or a positive integer{upper}; got {decision_bars!r}"
        )
    return int(decision_bars)


def quality_report(
    frames: Mapping[str, pd.DataFrame],
    timeframe_ms: int,
    now: datetime,
    min_bars: int,
    stale_bars: int,
    decision_bars: int | None = None,
) -> pd.DataFrame:
    """Per-symbol data-quality checks of closed-candle frames (pure).

    Parameters
    ----------
    frames : mapping
        Symbol -> candle frame as from :func:`closed_candles` (index ``open_time``; may
        contain duplicated open times; may be empty).
    timeframe_ms : int
        Candle length in ms.
    now : datetime
        The present; the last closed candle should open at ``floor(now) - timeframe``.
    min_bars : int
        Fewer distinct candles than this is ``too_short``.
    stale_bars : int
        More missing candles at the end than this is ``stale``.
    decision_bars : int, optional
        Gate only the candles opening in the last ``decision_bars`` bars up to the last
        closed candle; older defects are counted in ``masked``. None gates every candle.

    Returns
    -------
    DataFrame
        Index ``symbol`` (in the order of ``frames``), columns :data:`QUALITY_COLUMNS`; see
        the module docstring. ``ok`` is False on a gating defect, and ``reason`` says which;
        ``notes`` describes masked bars and jumps. ``first``/``last`` are NaT and
        ``lag_bars`` is -1 for a symbol without candles.

    Raises
    ------
    DataError
        ``decision_bars`` is not None and not a positive integer.
    """
    tf = int(timeframe_ms)
    decision_bars = _check_decision_bars(decision_bars, None)
    expected_last = _last_closed_open_ms(to_ms(now), tf)
    records = [
        _quality_record(
            sym,
            _index_ms(df.index) if len(df) else np.empty(0, dtype=np.int64),
            df[_PRICE_COLUMNS].to_numpy(dtype=np.float64),
            tf, expected_last, min_bars, stale_bars, decision_bars,
        )
        for sym, df in frames.items()
    ]
    return _quality_frame(records)


# --------------------------------------------------------------------------- cache


def _safe_name(symbol: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", symbol)


def _read_parquet(path: Path, meta_key: bytes) -> tuple[pa.Table, dict[str, Any]]:
    """The table of a cache file and the JSON metadata stored under ``meta_key``.

    Raises ``OSError``, ``KeyError`` (no such metadata), ``ValueError`` (bad JSON) or
    ``pa.ArrowException``; the caller decides how a damaged file is refetched.
    """
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {})[meta_key])
    return table, meta


def _write_parquet_atomic(
    final: Path, table: pa.Table, meta_key: bytes, meta: Mapping[str, Any]
) -> None:
    """Write ``table`` with ``meta`` (JSON under ``meta_key``) and rename it onto ``final``.

    The temporary name is unique per process, thread and call, so concurrent writers never
    share a file, and a reader sees either the old file or the new one, never a partial one;
    the temporary file is removed if the write fails.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    table = table.replace_schema_metadata({meta_key: json.dumps(meta).encode()})
    tmp = final.with_name(
        f".{final.stem}.{os.getpid()}.{threading.get_ident()}.{next(_TMP_SEQ)}.tmp"
    )
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class _Cached:
    open_ms: np.ndarray
    values: np.ndarray  # (n, 5) open, high, low, close, volume
    covered_from_ms: int
    covered_to_ms: int


class CandleCache:
    """Parquet files of closed candles, one per (venue, symbol, timeframe).

    Parameters
    ----------
    root : Path
        The cache folder (``DataParams.cache_dir``).
    venue_key : str
        Where the candles come from (:attr:`pairlib.venue.exchange.Exchange.venue_key`).
    timeframe : str
        Candle length, e.g. ``"4h"``.
    """

    def __init__(self, root: Path, venue_key: str, timeframe: str) -> None:
        self.root = Path(root)
        self.dir = self.root / "ohlcv" / _safe_name(venue_key) / timeframe
        self.timeframe = timeframe

    def path(self, symbol: str) -> Path:
        """The file of one symbol."""
        return self.dir / f"{_safe_name(symbol)}.parquet"

    def read(self, symbol: str) -> _Cached | None:
        """The cached candles of ``symbol``, or None (no file, unreadable file)."""
        p = self.path(symbol)
        if not p.is_file():
            return None
        try:
            table, meta = _read_parquet(p, _META_KEY)
            open_ms = table.column("open_ms").to_numpy().astype(np.int64)
            values = np.column_stack(
                [table.column(c).to_numpy().astype(np.float64) for c in OHLCV_COLUMNS]
            ) if table.num_rows else np.empty((0, len(OHLCV_COLUMNS)))
            return _Cached(
                open_ms, values, int(meta["covered_from_ms"]), int(meta["covered_to_ms"])
            )
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as e:
            log.warning("cache file %s cannot be read (%s: %s); its candles are fetched "
                        "again", p, type(e).__name__, e)
            return None  # a damaged cache file is refetched, never trusted

    def write(self, symbol: str, cached: _Cached) -> None:
        """Replace the file of ``symbol`` atomically."""
        cols: dict[str, Any] = {"open_ms": pa.array(cached.open_ms, type=pa.int64())}
        for i, c in enumerate(OHLCV_COLUMNS):
            cols[c] = pa.array(cached.values[:, i], type=pa.float64())
        meta = {
            "symbol": symbol,
            "timeframe": self.timeframe,
            "covered_from_ms": int(cached.covered_from_ms),
            "covered_to_ms": int(cached.covered_to_ms),
        }
        _write_parquet_atomic(self.path(symbol), pa.table(cols), _META_KEY, meta)


def _merge(
    old_ms: np.ndarray, old_v: np.ndarray, new_ms: np.ndarray, new_v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Union of two candle sets, sorted and unique by open time (new rows win)."""
    ms = np.concatenate([new_ms, old_ms])
    v = np.concatenate([new_v, old_v]) if len(old_v) else new_v
    uniq, first = np.unique(ms, return_index=True)  # first occurrence: new before old
    return uniq, v[first]


def _vet_cached(
    symbol: str, c: _Cached, tf: int, window_lo: int, last_open: int
) -> tuple[_Cached | None, list[tuple[int, int]]]:
    """Check cached candles before they are used (see "Cache checks" in the module doc).

    Returns
    -------
    cached : _Cached or None
        The valid rows, with ``covered_to_ms`` clamped to the last of them; None when the
        file is not usable at all (rows out of order or off the grid): fetch the window.
    repair : list of (int, int)
        At most one range of open times inside ``[window_lo, last_open]`` to fetch again
        (defective rows dropped here, and holes the file has inside its covered range).
    """
    ms, v = c.open_ms, c.values
    if v.shape != (ms.size, len(OHLCV_COLUMNS)):
        log.warning("cache %s: %d open times but values of shape %s; fetching its window "
                    "again", symbol, ms.size, v.shape)
        return None, []
    if ms.size and (np.any(np.diff(ms) < 0) or np.any((ms - last_open) % tf)):
        log.warning("cache %s: open times out of order or off the %d ms grid; fetching its "
                    "window again", symbol, tf)
        return None, []
    problems: list[str] = []
    repeated = np.zeros(ms.size, dtype=bool)
    same = np.diff(ms) == 0
    repeated[1:] |= same
    repeated[:-1] |= same
    if repeated.any():
        problems.append(f"{_plural(int(same.sum()), 'repeated open time')}")
    prices, volume = v[:, :4], v[:, 4]
    with np.errstate(invalid="ignore"):
        bad_price = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
        bad_volume = ~np.isfinite(volume) | (volume < 0)
    if bad_price.any():
        problems.append(f"{_plural(int(bad_price.sum()), 'row')} with a NaN, infinite or "
                        "<= 0 price")
    if bad_volume.any():
        problems.append(f"{_plural(int(bad_volume.sum()), 'row')} with a NaN, infinite or "
                        "negative volume")
    bad = repeated | bad_price | bad_volume
    held = ms[~bad]
    last_held = int(held[-1]) if held.size else c.covered_from_ms - tf
    covered_to = min(c.covered_to_ms, last_held)
    if c.covered_to_ms > last_held:
        problems.append(
            f"metadata says candles up to {_iso(c.covered_to_ms)} are held, the last valid "
            f"row opens {_iso(last_held) if held.size else 'nowhere (no valid row)'}"
        )
    redo = ms[bad]
    if ms.size:  # holes between the file's first row and its (clamped) end
        lo, hi = max(window_lo, int(ms[0])), min(last_open, covered_to)
        if hi >= lo:
            grid = np.arange(lo, hi + tf, tf, dtype=np.int64)
            holes = np.setdiff1d(grid, held, assume_unique=True)
            holes = np.setdiff1d(holes, redo)
            if holes.size:
                problems.append(f"{_plural(int(holes.size), 'missing candle')} inside its "
                                "covered range")
                redo = np.concatenate([redo, holes])
    redo = redo[(redo >= window_lo) & (redo <= last_open)]
    repair = [(int(redo.min()), int(redo.max()))] if redo.size else []
    if problems:
        log.warning(
            "cache %s: %s; %s", symbol, "; ".join(problems),
            f"fetching {_iso(repair[0][0])} .. {_iso(repair[0][1])} again" if repair
            else "nothing of it is in the window"
        )
    vetted = _Cached(held, v[~bad], c.covered_from_ms, covered_to)
    return vetted, repair


def _warn_failed_writes(cache: CandleCache, writes: Sequence[tuple[str, Future[None]]]) -> None:
    """Log each cache write that failed (a full disk, a read-only cache folder), naming the
    file and the error.

    A failed write does not fail the load: the candles are already in memory and checked,
    and the file left in place (the previous version, or none) is validated on the next
    read, so the missing candles are simply fetched again then.
    """
    for sym, fut in writes:
        err = fut.exception()
        if err is not None:
            log.warning("candle cache not written: %s: %s: %s (the candles are used from "
                        "memory and fetched again next time; free space or fix the folder's "
                        "permissions)", cache.path(sym), type(err).__name__, err)


def _coalesce(ranges: Sequence[tuple[int, int]], tf: int) -> list[tuple[int, int]]:
    """Sorted ranges of open times with overlapping or adjacent ones merged (so no candle
    is asked for twice)."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + tf:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


# --------------------------------------------------------------------------- universe


def select_universe(
    exchange: Exchange, symbols: Sequence[str] | None, params: DataParams
) -> tuple[list[str], dict[str, str]]:
    """The symbols to load and the requested ones that are not tradable on the venue.

    ``symbols`` (or ``params.universe``) may hold unified symbols (``"BTC/USDT:USDT"``) or
    venue ids (``"BTCUSDT"``). With neither, the universe is the ``params.universe_size``
    active USDT perpetuals with the largest 24 h quote volume (ties by symbol).
    """
    markets = exchange.markets()
    wanted = symbols if symbols is not None else params.universe
    if wanted is None:
        volumes = exchange.fetch_quote_volumes()
        ranked = sorted(
            (s for s in markets if s.endswith(f"/{params.quote}:{params.quote}")),
            key=lambda s: (-volumes.get(s, 0.0), s),
        )
        return ranked[: params.universe_size], {}
    by_id = {m.id: s for s, m in markets.items()}
    chosen: list[str] = []
    unknown: dict[str, str] = {}
    for s in wanted:
        sym = s if s in markets else by_id.get(s)
        if sym is None:
            unknown[s] = f"not an active {params.quote}-margined perpetual on {exchange.venue_key}"
        elif sym not in chosen:
            chosen.append(sym)
    return chosen, unknown


# --------------------------------------------------------------------------- fetching


def _pages(symbol: str, timeframe: str, lo: int, hi: int, tf: int, page: int) -> list[OhlcvRequest]:
    """Requests covering candles opening in ``[lo, hi]``, ``page`` candles each."""
    out = []
    start = lo
    while start <= hi:
        end = min(hi, start + (page - 1) * tf)
        out.append(OhlcvRequest(symbol, timeframe, start, (end - start) // tf + 1, end))
        start = end + tf
    return out


def _fetch_ranges(
    exchange: Exchange,
    ranges: Mapping[str, list[tuple[int, int]]],
    timeframe: str,
    tf: int,
    max_concurrency: int,
) -> tuple[dict[str, list[list[float]]], dict[str, str], int]:
    """Fetch candles opening in the given ranges, all symbols and pages concurrently.

    Pages are planned from the ranges and sent in one batch. A page that comes back short of
    its end (a venue that serves fewer candles than asked) is followed up from its last
    candle -- the ``since`` loop -- until the venue returns nothing new.
    """
    page = exchange.ohlcv_page_limit
    todo: list[OhlcvRequest] = [
        r
        for sym, rs in ranges.items()
        for lo, hi in rs
        for r in _pages(sym, timeframe, lo, hi, tf, page)
    ]
    rows: dict[str, list[list[float]]] = {s: [] for s in ranges}
    failed: dict[str, str] = {}
    sent = 0
    for _ in range(_MAX_FOLLOW_UP_ROUNDS):
        if not todo:
            break
        batch = exchange.fetch_ohlcv_batch(todo, max_concurrency=max_concurrency)
        sent += batch.requests_sent
        nxt: list[OhlcvRequest] = []
        for req in todo:
            err: ExchangeError | None = batch.errors.get(req)
            if err is not None:
                failed.setdefault(req.symbol, f"fetch failed: {err}")
                continue
            got = batch.rows.get(req, [])
            rows[req.symbol].extend(got)
            if got and req.until_ms is not None:
                last = int(got[-1][0])
                if last < req.until_ms and len(got) < req.limit:
                    since = last + tf
                    nxt.append(OhlcvRequest(req.symbol, timeframe, since,
                                            (req.until_ms - since) // tf + 1, req.until_ms))
        todo = nxt
    return rows, failed, sent


def _merge_and_check(
    universe: Sequence[str],
    cached: Mapping[str, _Cached | None],
    ranges: Mapping[str, list[tuple[int, int]]],
    fetched: Mapping[str, list[list[float]]],
    failed: Mapping[str, str],
    cache: CandleCache,
    submit: Callable[..., Any],
    *,
    tf: int,
    now_ms: int,
    window_lo: int,
    last_open: int,
    params: DataParams,
    decision_bars: int | None,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], list[dict[str, Any]]]:
    """Merge fetched candles into the cache (writes via ``submit``), cut each symbol's window
    and check its quality. Returns the windows ``(open_ms, values, bad_times)`` (the open
    times of the window's duplicated or defective candles) and the quality records."""
    n_fields = len(OHLCV_COLUMNS)
    expected_last = last_open
    windows: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    records: list[dict[str, Any]] = []
    for sym in universe:
        if sym in failed:
            windows[sym] = (np.empty(0, np.int64), np.empty((0, n_fields)),
                            np.empty(0, np.int64))
            rec = _quality_record(sym, windows[sym][0], np.empty((0, 4)), tf, expected_last,
                                  params.min_history_bars, params.stale_bars, decision_bars)
            records.append({**rec, "reason": failed[sym]})
            continue
        c = cached[sym]
        if c is None:
            c = _Cached(np.empty(0, np.int64), np.empty((0, n_fields)), window_lo,
                        window_lo - tf)
        new_ms = np.empty(0, np.int64)
        new_v = np.empty((0, n_fields))
        if sym in ranges:
            new = closed_candles(fetched.get(sym, []), tf, now_ms)
            new_ms = _index_ms(new.index)
            new_v = new.to_numpy(dtype=np.float64)
            all_ms, all_v = _merge(c.open_ms, c.values, new_ms, new_v)
            # covered_to: the last candle actually held, so a candle the venue published
            # late is asked for again next time rather than left as a hole.
            covered_from = min(c.covered_from_ms, window_lo)
            covered_to = int(all_ms[-1]) if len(all_ms) else covered_from - tf
            c = _Cached(all_ms, all_v, covered_from, covered_to)
            submit(cache.write, sym, c)
        lo = int(np.searchsorted(c.open_ms, window_lo, side="left"))
        hi = int(np.searchsorted(c.open_ms, last_open, side="right"))
        win_ms, win_v = c.open_ms[lo:hi], c.values[lo:hi]
        # The cache is unique by open time, so repeated candles can only come from this
        # fetch: count them in the quality report.
        if len(new_ms) and len(np.unique(new_ms)) < len(new_ms):
            in_win = (new_ms >= window_lo) & (new_ms <= last_open)
            _, first_idx = np.unique(new_ms[in_win], return_index=True)
            extra = np.delete(np.flatnonzero(in_win), first_idx)
            q_ms = np.concatenate([win_ms, new_ms[extra]])
            q_v = np.concatenate([win_v, new_v[extra]])
        else:
            q_ms, q_v = win_ms, win_v
        bad_times = _defects(q_ms, q_v[:, :4], tf).bad_times
        windows[sym] = (win_ms, win_v, bad_times)
        records.append(_quality_record(sym, q_ms, q_v[:, :4], tf, expected_last,
                                       params.min_history_bars, params.stale_bars,
                                       decision_bars))
    return windows, records


# --------------------------------------------------------------------------- entry point


def load_market_data(
    exchange: Exchange,
    symbols: Sequence[str] | None,
    params: DataParams,
    now: datetime,
    bars: int,
    max_concurrency: int = 8,
    *,
    decision_bars: int | None = None,
) -> MarketData:
    """Closed candles of a universe as of ``now``: cached, refreshed, checked, aligned.

    Parameters
    ----------
    exchange : Exchange
        The venue adapter.
    symbols : sequence of str, optional
        Unified symbols or venue ids; None: ``params.universe``, else the top
        ``params.universe_size`` by 24 h quote volume.
    params : DataParams
        Timeframe, quality thresholds, cache folder, universe.
    now : datetime
        The present (from a :class:`~pairlib.clock.Clock`); decides which candles are closed.
    bars : int
        Window length in candles: what the caller uses (pair generation
        :attr:`pairlib.config.Params.history_bars`, the tick its z-score window plus the
        bars its report shows).
    max_concurrency : int
        Requests in flight at once (ccxt's rate limiter still applies).
    decision_bars : int, optional
        How many trailing candles (ending at the last closed one) a decision uses and must
        therefore be clean. A missing, duplicated, NaN or <= 0 candle among them drops the
        symbol; an older one keeps it, its close (and quote volume) is NaN and it is counted
        in ``quality.masked``. None (pair generation) gates the whole window.

    Returns
    -------
    MarketData
        ``closes``/``quote_volume`` of the kept symbols on the window's regular grid, the
        quality report of every requested symbol and the dropped symbols with reasons.

    Raises
    ------
    DataError
        When no symbol survives the checks (the message lists the reasons), or when
        ``bars`` is not positive or ``decision_bars`` is not None or an integer in
        ``[1, bars]``.
    ExchangeError
        When the venue cannot list its markets or volumes (per-symbol candle failures drop
        the symbol instead).

    Notes
    -----
    See the module docstring for the time index, cache layout and quality rules.
    """
    n_bars = int(bars)
    if n_bars <= 0:
        raise DataError(f"bars must be positive, got {n_bars}")
    gate = _check_decision_bars(decision_bars, n_bars)
    tf = timeframe_ms(params.timeframe)
    now_ms = to_ms(now)
    last_open = _last_closed_open_ms(now_ms, tf)
    window_lo = last_open - (n_bars - 1) * tf
    cache = CandleCache(Path(params.cache_dir), exchange.venue_key, params.timeframe)

    universe, unknown = select_universe(exchange, symbols, params)
    cached: dict[str, _Cached | None] = {}
    repairs: dict[str, list[tuple[int, int]]] = {}
    for sym in universe:
        raw = cache.read(sym)
        cached[sym], repairs[sym] = (
            _vet_cached(sym, raw, tf, window_lo, last_open) if raw is not None else (None, [])
        )

    # What to ask the venue for, per symbol: the window minus what the cache validly covers.
    ranges: dict[str, list[tuple[int, int]]] = {}
    for sym in universe:
        c = cached[sym]
        rs: list[tuple[int, int]] = []
        if c is None or c.covered_to_ms < window_lo - tf or c.covered_from_ms > last_open + tf:
            cached[sym] = None  # nothing usable, or not contiguous with the window: refetch
            rs.append((window_lo, last_open))
        else:
            if window_lo < c.covered_from_ms:
                rs.append((window_lo, c.covered_from_ms - tf))
            if c.covered_to_ms < last_open:
                rs.append((c.covered_to_ms + tf, last_open))
            rs.extend(repairs[sym])
        if rs:
            ranges[sym] = _coalesce(rs, tf)

    fetched, failed, sent = _fetch_ranges(exchange, ranges, params.timeframe, tf, max_concurrency)

    # Merge with the cache, write back, cut the window; check quality on the window.
    writes: list[tuple[str, Future[None]]] = []

    with ThreadPoolExecutor(_WRITERS, thread_name_prefix="pairlib-cache") as writers:
        def submit(fn: Callable[..., None], sym: str, c: _Cached) -> None:
            writes.append((sym, writers.submit(fn, sym, c)))

        windows, records = _merge_and_check(
            universe, cached, ranges, fetched, failed, cache, submit,
            tf=tf, now_ms=now_ms, window_lo=window_lo, last_open=last_open, params=params,
            decision_bars=gate,
        )  # leaving the block waits for every cache write
    _warn_failed_writes(cache, writes)
    for sym, reason in unknown.items():
        rec = _quality_record(sym, np.empty(0, np.int64), np.empty((0, 4)), tf,
                              last_open, params.min_history_bars, params.stale_bars, gate)
        records.append({**rec, "reason": reason})

    quality = _quality_frame(records)
    dropped = {str(s): str(r) for s, r in quality.loc[~quality["ok"], "reason"].items()}
    kept = [s for s in universe if bool(quality.loc[s, "ok"])]
    if not kept:
        detail = "; ".join(f"{s}: {r}" for s, r in list(dropped.items())[:10])
        raise DataError(f"no symbol has usable {params.timeframe} data as of {now}: {detail}")

    # Align: one regular grid of open times. Kept symbols have no defect in the gated range;
    # a defective bar older than it is left NaN (a missing one is NaN already).
    n_grid = n_bars
    close = np.full((n_grid, len(kept)), np.nan)
    qvol = np.full((n_grid, len(kept)), np.nan)
    for j, sym in enumerate(kept):
        ms, v, bad_times = windows[sym]
        pos = (ms - window_lo) // tf
        close[pos, j] = v[:, 3]
        qvol[pos, j] = v[:, 4] * (v[:, 1] + v[:, 2] + v[:, 3]) / 3.0
        if bad_times.size:
            bad_pos = (bad_times - window_lo) // tf
            close[bad_pos, j] = np.nan
            qvol[bad_pos, j] = np.nan
        if len(pos) and pos[-1] < n_grid - 1:  # lagging within stale_bars: carry forward
            close[pos[-1] + 1:, j] = close[pos[-1], j]
    grid = _index(window_lo + tf * np.arange(n_grid, dtype=np.int64))
    return MarketData(
        closes=pd.DataFrame(close, index=grid, columns=kept),
        quote_volume=pd.DataFrame(qvol, index=grid, columns=kept),
        quality=quality,
        dropped=dropped,
        as_of=now,
        cache_dir=Path(params.cache_dir),
        requests=sent,
        decision_bars=gate,
    )


# --------------------------------------------------------------------------- funding rates

_FUNDING_META_KEY = b"pairlib.funding"


class FundingRateCache:
    """Parquet files of a venue's settled funding rates with their mark prices, one per
    (venue, symbol): ``{cache_dir}/funding/{venue_key}/{SYMBOL}.parquet``.

    Columns ``time_ms`` (int64, sorted, unique), ``rate`` and ``mark`` (float64; ``mark`` NaN
    where the venue sent no mark price). The schema metadata records ``covered_from_ms`` (the
    earliest funding time the venue was asked for) and ``covered_to_ms`` (the last funding
    time held; a later one may not be published yet, so the tail is asked for again).
    """

    def __init__(self, root: Path, venue_key: str) -> None:
        self.dir = Path(root) / "funding" / _safe_name(venue_key)

    def path(self, symbol: str) -> Path:
        """The file of one symbol."""
        return self.dir / f"{_safe_name(symbol)}.parquet"

    def read(self, symbol: str) -> tuple[list[FundingRate], int, int] | None:
        """``(rates, covered_from_ms, covered_to_ms)`` of ``symbol``, or None: no file, or a
        file that cannot be read or fails its checks (times sorted and unique inside the
        covered range ending at the last one, rates finite, marks > 0 or NaN; logged)."""
        p = self.path(symbol)
        if not p.is_file():
            return None
        try:
            table, meta = _read_parquet(p, _FUNDING_META_KEY)
            lo, hi = int(meta["covered_from_ms"]), int(meta["covered_to_ms"])
            times = table.column("time_ms").to_numpy().astype(np.int64)
            rates = table.column("rate").to_numpy().astype(np.float64)
            marks = table.column("mark").to_numpy().astype(np.float64)
            problem = (
                "no rows" if not len(times)
                else "times not sorted and unique" if np.any(np.diff(times) <= 0)
                else "times outside the covered range" if times[0] < lo or times[-1] != hi
                else "a rate is not finite" if not np.all(np.isfinite(rates))
                else "a mark price is not > 0" if np.any(~np.isnan(marks) & ~(marks > 0))
                else None)
            if problem is not None:
                raise ValueError(problem)
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException) as e:
            log.warning("funding cache file %s cannot be used (%s: %s); its rates are "
                        "fetched again", p, type(e).__name__, e)
            return None
        rows = [FundingRate(int(t), float(r), None if math.isnan(m) else float(m))
                for t, r, m in zip(times, rates, marks, strict=True)]
        return rows, lo, hi

    def write(self, symbol: str, rows: Sequence[FundingRate], covered_from_ms: int) -> None:
        """Replace the file of ``symbol`` atomically with ``rows`` (sorted by time, at least
        one), covered from ``covered_from_ms`` to the last row."""
        table = pa.table({
            "time_ms": pa.array([r.timestamp for r in rows], type=pa.int64()),
            "rate": pa.array([r.rate for r in rows], type=pa.float64()),
            "mark": pa.array([math.nan if r.mark_price is None else r.mark_price
                              for r in rows], type=pa.float64()),
        })
        meta = {"symbol": symbol, "covered_from_ms": int(covered_from_ms),
                "covered_to_ms": int(rows[-1].timestamp)}
        _write_parquet_atomic(self.path(symbol), table, _FUNDING_META_KEY, meta)


def load_funding_rates(
    exchange: Exchange,
    symbols: Sequence[str],
    since_ms: int,
    until_ms: int,
    cache_dir: str | Path,
) -> dict[str, list[FundingRate]]:
    """Settled funding rates with their mark prices, funding times in ``[since_ms,
    until_ms]``, per symbol, through the Parquet cache (:class:`FundingRateCache`).

    A settled rate never changes, so each is fetched once: the venue
    (:meth:`~pairlib.venue.exchange.Exchange.fetch_funding_rate_history`, public, paged) is
    asked only for the times before the cached range and after its last row (the range
    therefore stays contiguous).

    Returns
    -------
    dict
        Unified symbol -> rates, oldest first (empty when the venue has none there).
    """
    cache = FundingRateCache(Path(cache_dir), exchange.venue_key)
    out: dict[str, list[FundingRate]] = {}
    for sym in symbols:
        got = cache.read(sym)
        held: dict[int, FundingRate] = {}
        asks = [(since_ms, until_ms)]
        lo = since_ms
        if got is not None:  # ask only around the cached range
            rows, c_from, c_to = got
            held = {r.timestamp: r for r in rows}
            asks = [(since_ms, c_from - 1), (c_to + 1, until_ms)]
            lo = min(c_from, since_ms)
        fetched = False
        for a, b in asks:
            if a <= b:
                fetched = True
                held.update({r.timestamp: r
                             for r in exchange.fetch_funding_rate_history(sym, a, b)})
        merged = [held[t] for t in sorted(held)]
        if fetched and merged:
            cache.write(sym, merged, lo)
        out[sym] = [r for r in merged if since_ms <= r.timestamp <= until_ms]
    return out
