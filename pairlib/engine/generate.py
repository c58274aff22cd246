"""Pair generation, orchestrated: params → venue → closed candles → selection → store.

``notebooks/generate_pairs.ipynb`` calls :func:`run` and draws the report; the chosen pairs
are written to the store as a new versioned pair set (as_of, params hash, notebook path, and
what it was built on: :class:`~pairlib.edges.store.PairSetMeta`) that the tick reads. Earlier
sets stay for the record. :func:`check_pair_set` tells whether a stored set fits the params
and the venue a tick runs with.

Importing this module is light (no statsmodels): the selection and the data layer are
imported when :func:`run` runs, so the tick can import :func:`check_pair_set`.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from pairlib.clock import Clock, SettableClock, SystemClock, iso, last_close, parse_time
from pairlib.config import (
    PARAMS_FILE,
    Params,
    apply_overrides,
    load_params,
    params_hash,
    timeframe_ms,
)
from pairlib.edges.store import PairSet, PairSetMeta, Store
from pairlib.errors import ConfigError

if TYPE_CHECKING:
    from pairlib.core.pairs import Selection
    from pairlib.edges.data import MarketData

__all__ = ["PairGeneration", "apply_overrides", "check_pair_set", "code_version", "run"]

log = logging.getLogger(__name__)

_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PairGeneration:
    """Everything one pair-generation run produced (for the report)."""

    as_of: datetime
    params: Params
    params_hash: str
    data: MarketData
    selection: Selection
    pair_set_id: int | None
    meta: PairSetMeta

    @property
    def formation_prices(self) -> pd.DataFrame:
        """Close prices of the formation window (the last ``formation_bars`` rows)."""
        return self.data.closes.iloc[-self.params.selection.formation_bars:]


def code_version(root: Path | None = None) -> str:
    """The version of the code that runs: the git commit of ``root`` (the repository this
    package lives in by default), with ``-dirty`` when tracked files have uncommitted
    changes; without a git checkout, the installed package version (``pairlib <version>``).

    Only reads git (``rev-parse`` and ``status`` without optional locks): nothing in the
    repository is changed.
    """
    folder = _REPO if root is None else Path(root)
    if (folder / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(folder), "rev-parse", "HEAD"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
            changes = subprocess.run(
                ["git", "--no-optional-locks", "-C", str(folder), "status", "--porcelain",
                 "--untracked-files=no"],
                capture_output=True, text=True, timeout=10, check=True,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            commit = changes = ""
        if commit:
            return commit + ("-dirty" if changes else "")
    try:
        return f"pairlib {metadata.version('pairlib')}"
    except metadata.PackageNotFoundError:
        return "pairlib (version unknown)"


def check_pair_set(pair_set: PairSet, params: Params, venue_key: str) -> None:
    """Refuse a pair set built for another market, timeframe or z lookback.

    Parameters
    ----------
    pair_set : PairSet
        The set the tick would trade (:meth:`pairlib.edges.store.Store.latest_pair_set`).
    params : Params
        The params the tick runs with (``data.timeframe``, ``strategy.lookback``).
    venue_key : str
        The market the tick trades: :attr:`pairlib.venue.exchange.Exchange.venue_key` of the
        opened venue (``sim-s<seed>-n<symbols>`` for the simulator, the ccxt id such as
        ``binanceusdm`` for ``paper`` and ``live``, ``demo-<id>`` for ``demo``). The venue
        kind itself is not compared: a set built on ``paper`` (the real market's public
        data) fits ``live`` on the same market.

    Raises
    ------
    ConfigError
        Naming the pair set, each value it was built with and the one now in use, and how
        to regenerate it (``pairlib pairs --as-of ...``).

    Notes
    -----
    A set stored before pair sets recorded what they were built on (``meta`` is None) is
    accepted with a logged warning.
    """
    meta = pair_set.meta
    if meta is None:
        log.warning(
            "pair set #%d (as of %s) does not record the venue, timeframe or z lookback it "
            "was built for (stored before pair sets recorded them): not checked; regenerate "
            "it with `pairlib pairs --as-of %s` to have it checked",
            pair_set.id, pair_set.as_of, pair_set.as_of)
        return
    problems = []
    if meta.venue_key != venue_key:
        problems.append(f"market {meta.venue_key!r} (venue.kind {meta.venue_kind}), but this "
                        f"run trades {venue_key!r} (venue.kind {params.venue.kind})")
    if meta.timeframe != params.data.timeframe:
        problems.append(f"timeframe {meta.timeframe}, but params say data.timeframe: "
                        f"{params.data.timeframe}")
    if meta.lookback != params.strategy.lookback:
        problems.append(f"z lookback {meta.lookback} bars, but params say strategy.lookback: "
                        f"{params.strategy.lookback}")
    if problems:
        raise ConfigError(
            f"pair set #{pair_set.id} (as of {pair_set.as_of}) was built for "
            + "; ".join(problems)
            + f". Regenerate it with these params: pairlib pairs --as-of {pair_set.as_of} "
            "(or the last candle close), then run the tick again"
        )


def run(
    params: str | Path | Params = PARAMS_FILE,
    as_of: str | datetime | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    store: Store | None = None,
    clock: Clock | None = None,
    notebook_path: str | None = None,
    save: bool = True,
) -> PairGeneration:
    """Generate and store a pair set.

    Parameters
    ----------
    params : path or Params
        ``params/pairlib.yaml`` or an already-validated tree.
    as_of : str or datetime, optional
        Candle close the selection is formed at; default the last closed candle by ``clock``.
    overrides : mapping, optional
        Dotted keys (e.g. ``"selection.top_k"``, ``"data.universe_size"``), as
        :func:`pairlib.config.notebook_overrides` reads them from notebook parameters.
    store : Store, optional
        Where the pair set goes; default ``Store.at(params.state_dir)``.
    clock : Clock, optional
        Default: the system clock.
    notebook_path : str, optional
        The executed notebook that reports this run (recorded with the pair set).
    save : bool
        Write the pair set to the store (default True).

    Returns
    -------
    PairGeneration

    Notes
    -----
    Fetches :attr:`Params.history_bars` closed candles per symbol (the formation window
    plus one z lookback, the warm-up of the report's rolling z) and records with the set
    the venue kind and market key, timeframe, z lookback, params hash, code version and the
    candles' range.
    """
    from pairlib.core.pairs import select
    from pairlib.edges.data import load_market_data
    from pairlib.venue.open import open_exchange, simulator_now

    p = params if isinstance(params, Params) else load_params(params)
    p = apply_overrides(p, overrides, source="notebook parameters")
    if clock is None:  # a running simulator's clock is the present, as for the tick
        clock = (SettableClock(simulator_now(p.venue)) if p.venue.kind == "sim"
                 and p.venue.sim_url is not None and as_of is None else SystemClock())
    when = parse_time(as_of) if as_of is not None else last_close(clock.now(), p.data.timeframe)
    with open_exchange(p.venue, when) as ex:
        venue_key = ex.venue_key
        data = load_market_data(ex, p.data.universe, p.data, now=when, bars=p.history_bars)
    selection = select(data.closes, p, data.quote_volume)
    step = timedelta(milliseconds=timeframe_ms(p.data.timeframe))
    closes = data.closes.index
    meta = PairSetMeta(
        venue_kind=p.venue.kind, venue_key=venue_key, timeframe=p.data.timeframe,
        lookback=p.strategy.lookback, code_version=code_version(),
        data_start=iso(closes[0]) if len(closes) else iso(when),
        data_end=iso(closes[-1] + step) if len(closes) else iso(when),
    )
    digest = params_hash(p)
    pair_set_id = None
    if save:
        own = store is None
        db = store or Store.at(p.state_dir)
        try:
            pair_set_id = db.save_pair_set(
                when, digest, selection.chosen, notebook_path, clock.now(), meta=meta
            )
        finally:
            if own:
                db.close()
    return PairGeneration(
        as_of=when, params=p, params_hash=digest, data=data, selection=selection,
        pair_set_id=pair_set_id, meta=meta,
    )
