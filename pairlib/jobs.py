"""The scheduled jobs as notebook runs: what ``pairlib pairs`` / ``pairlib tick`` / the demo
execute. Each job validates its params before anything else, picks the run's ``as_of``, and
runs its notebook with papermill into ``outputs/`` (failed notebooks are kept)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pairlib.clock import Clock, SystemClock, last_close, parse_time
from pairlib.config import PairsParams, TradingParams, load_params
from pairlib.runner import (
    RunResult,
    pairs_output_path,
    run_notebook,
    tick_output_path,
    unique_path,
)

__all__ = ["NOTEBOOKS", "resolve_as_of", "run_pairs_job", "run_tick_job"]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def resolve_as_of(as_of: str | datetime | None, timeframe: str, clock: Clock | None) -> datetime:
    """``as_of`` parsed, or the close of the last closed candle by ``clock``."""
    if as_of is not None:
        return parse_time(as_of)
    return last_close((clock or SystemClock()).now(), timeframe)


def run_pairs_job(
    params_file: str | Path = "params/pairs.yaml",
    as_of: str | datetime | None = None,
    outputs: str | Path = "outputs",
    trading_params_file: str | Path = "params/trading.yaml",
    clock: Clock | None = None,
) -> RunResult:
    """Run ``generate_pairs.ipynb`` into ``outputs/pairs/<stamp>Z-generate_pairs.ipynb``."""
    params = load_params(params_file, PairsParams)  # fail fast, before any kernel starts
    load_params(trading_params_file, TradingParams)
    when = resolve_as_of(as_of, params.data.timeframe, clock)
    out = unique_path(pairs_output_path(Path(outputs), when))
    return run_notebook(
        NOTEBOOKS / "generate_pairs.ipynb",
        out,
        {
            "as_of": when.isoformat(),
            "params_file": str(params_file),
            "trading_params_file": str(trading_params_file),
            "notebook_path": str(out),
        },
        cwd=Path.cwd(),
    )


def run_tick_job(
    params_file: str | Path = "params/trading.yaml",
    as_of: str | datetime | None = None,
    outputs: str | Path = "outputs",
    live: bool = False,
    clock: Clock | None = None,
) -> RunResult:
    """Run ``tick.ipynb`` into ``outputs/ticks/YYYY/MM/<stamp>Z-tick.ipynb``."""
    from pairlib.config import load_secrets
    from pairlib.venue import check_live

    params = load_params(params_file, TradingParams)
    check_live(params.venue, live, load_secrets())  # refuse before any kernel or network
    when = resolve_as_of(as_of, params.data.timeframe, clock)
    out = unique_path(tick_output_path(Path(outputs), when))
    return run_notebook(
        NOTEBOOKS / "tick.ipynb",
        out,
        {
            "as_of": when.isoformat(),
            "params_file": str(params_file),
            "live": live,
            "notebook_path": str(out),
        },
        cwd=Path.cwd(),
    )
