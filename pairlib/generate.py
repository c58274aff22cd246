"""Pair generation, orchestrated: params → venue → closed candles → selection → store.

``notebooks/generate_pairs.ipynb`` calls :func:`run` and draws the report; the chosen pairs
are written to the store as a new versioned pair set (as_of, params hash, notebook path)
that the tick reads. Earlier sets stay for the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pairlib.clock import Clock, SystemClock, last_close, parse_time
from pairlib.config import PairsParams, load_params, params_hash, validate_params
from pairlib.data import MarketData, load_market_data
from pairlib.pairs import Selection, select
from pairlib.store import Store
from pairlib.venue import open_exchange

__all__ = ["PairGeneration", "apply_overrides", "run"]


@dataclass(frozen=True)
class PairGeneration:
    """Everything one pair-generation run produced (for the report)."""

    as_of: datetime
    params: PairsParams
    params_hash: str
    data: MarketData
    selection: Selection
    pair_set_id: int | None

    @property
    def formation_prices(self) -> pd.DataFrame:
        """Close prices of the formation window (the last ``formation_bars`` rows)."""
        return self.data.closes.iloc[-self.params.formation_bars:]


def apply_overrides(params: PairsParams, overrides: Mapping[str, Any] | None) -> PairsParams:
    """Return ``params`` with dotted-key overrides applied (``None`` values are skipped).

    The result is validated again, so a bad override gives the same clear
    :class:`~pairlib.errors.ConfigError` as a bad params file.
    """
    raw = params.model_dump(mode="json")
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return validate_params(raw, PairsParams, source="notebook parameters")


def run(
    params: str | Path | PairsParams = "params/pairs.yaml",
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
    params : path or PairsParams
        ``params/pairs.yaml`` or an already-validated model.
    as_of : str or datetime, optional
        Candle close the selection is formed at; default the last closed candle by ``clock``.
    overrides : mapping, optional
        Dotted keys (e.g. ``"top_k"``, ``"data.universe_size"``) from notebook parameters.
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
    """
    p = params if isinstance(params, PairsParams) else load_params(params, PairsParams)
    p = apply_overrides(p, overrides)
    clock = clock or SystemClock()
    when = parse_time(as_of) if as_of is not None else last_close(clock.now(), p.data.timeframe)
    with open_exchange(p.venue, when) as ex:
        data = load_market_data(ex, p.data.universe, p.data, now=when, bars=p.data.history_bars)
    selection = select(data.closes, p, data.quote_volume)
    pair_set_id = None
    if save:
        own = store is None
        db = store or Store.at(p.state_dir)
        try:
            pair_set_id = db.save_pair_set(
                when, params_hash(p), selection.chosen, notebook_path, clock.now()
            )
        finally:
            if own:
                db.close()
    return PairGeneration(
        as_of=when, params=p, params_hash=params_hash(p), data=data, selection=selection,
        pair_set_id=pair_set_id,
    )
