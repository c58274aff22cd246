"""The sweep job: what ``pairlib sweep`` runs. It validates the params, the window, the grid
and the scale-out options before any kernel starts, reserves
``outputs/sweeps/<start>-<end>-sweep.ipynb`` (a re-run gets ``-2``, ``-3``, ...) and runs
``notebooks/sweep.ipynb`` there with papermill (a failed report is kept)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from pairlib.app.jobs import NOTEBOOKS, backtest_window, notebook_defaults
from pairlib.app.runner import RunResult, run_notebook, stamp, unique_path
from pairlib.clock import Clock
from pairlib.config import PARAMS_FILE, load_params, project_path
from pairlib.errors import ConfigError

__all__ = ["load_grid", "run_sweep_job", "sweep_output_path"]


def sweep_output_path(outputs: Path, start: datetime, end: datetime) -> Path:
    """``outputs/sweeps/<start>-<end>-sweep.ipynb``, each time as ``YYYY-MM-DDTHHMMZ``."""
    return outputs / "sweeps" / f"{stamp(start)}-{stamp(end)}-sweep.ipynb"


def load_grid(path: str | Path) -> dict[str, Any]:
    """A grid file: YAML or JSON, ``{axis: value or [values]}`` (see
    :data:`pairlib.engine.sweep.AXES`).

    Raises
    ------
    ConfigError
        The file is missing, unreadable, or not a mapping.
    """
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError(f"grid file {p}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"grid file {p} is not YAML or JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"grid file {p} must hold a mapping of axis to values, e.g. "
                          "{entry: [1.0, 1.5], exit: [0.0, 0.5], lookback: [60, 90]}")
    return raw


def run_sweep_job(
    params_file: str | Path = PARAMS_FILE,
    start: str | datetime | None = None,
    end: str | datetime | None = None,
    outputs: str | Path = "outputs",
    clock: Clock | None = None,
    *,
    grid: dict[str, Any] | None = None,
    shortlist: int | None = None,
    workers: int | None = None,
    dask_address: str | None = None,
) -> RunResult:
    """Run ``sweep.ipynb`` into ``outputs/sweeps/``.

    Parameters
    ----------
    params_file : path
        The params file; validated here.
    start, end : str or datetime, optional
        The first and last bar traded (see :func:`pairlib.app.jobs.backtest_window`);
        default: the notebook's own.
    outputs : path
        Folder for executed notebooks (a relative one is relative to the project root).
    clock : Clock, optional
        Default: the system clock (only a non-simulated venue's ``end`` is checked).
    grid : mapping, optional
        ``{axis: values}``; default: the notebook's grid. Validated here
        (:meth:`pairlib.engine.sweep.Grid.parse`).
    shortlist, workers, dask_address : optional
        The notebook's parameters of the same names; default: the notebook's.

    Raises
    ------
    ConfigError
        Bad params, window, grid or scale-out options, before any kernel starts.
    """
    from pairlib.engine.sweep import Grid, check_scale_out

    params = load_params(params_file)
    notebook = NOTEBOOKS / "sweep.ipynb"
    defaults = notebook_defaults(notebook)
    first, last = backtest_window(defaults["start"] if start is None else start,
                                  defaults["end"] if end is None else end,
                                  params.data.timeframe, clock, params.venue.kind)
    g = defaults["grid"] if grid is None else grid
    Grid.parse(g, params)
    check_scale_out(workers, dask_address, int(defaults["chunk_size"]),
                 int(defaults["shortlist"] if shortlist is None else shortlist))
    given = {"shortlist": shortlist, "workers": workers, "dask_address": dask_address}
    out = unique_path(sweep_output_path(project_path(outputs), first, last))
    parameters = {"start": first.isoformat(), "end": last.isoformat(),
                  "params_file": str(params_file), "grid_json": json.dumps(g),
                  **{k: v for k, v in given.items() if v is not None}}
    try:
        return run_notebook(notebook, out, parameters, cwd=Path.cwd())
    except BaseException:
        if out.is_file() and out.stat().st_size == 0:
            out.unlink()
        raise
