"""The sweep job: what ``pairlib sweep`` runs. It validates the params, the window, the grid
and the scale-out options before any kernel starts, reserves
``outputs/sweeps/<start>-<end>-sweep.ipynb`` (a re-run gets ``-2``, ``-3``, ...) and runs
``notebooks/sweep.ipynb`` there with papermill (a failed report is kept). The results are kept
next to the report, in the folder of the same name without ``.ipynb``
(:func:`sweep_results_dir`): checkpointed while the sweep runs, then the final result, also
when Ctrl-C interrupted it."""

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

__all__ = ["SweepInterrupted", "load_grid", "run_shortlist_reports", "run_sweep_job",
           "sweep_output_path", "sweep_results_dir"]


def sweep_output_path(outputs: Path, start: datetime, end: datetime) -> Path:
    """``outputs/sweeps/<start>-<end>-sweep.ipynb``, each time as ``YYYY-MM-DDTHHMMZ``."""
    return outputs / "sweeps" / f"{stamp(start)}-{stamp(end)}-sweep.ipynb"


def sweep_results_dir(report: Path) -> Path:
    """The folder a sweep report keeps its results in: the report's path without
    ``.ipynb`` (``table.csv``, ``skipped.csv``, ``shortlist.csv``, ``returns.csv``,
    ``summary.json``; :meth:`pairlib.engine.sweep.SweepResult.save`)."""
    return report.with_suffix("")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a sweep job before its notebook finished (a second Ctrl-C, or one
    before the kernel started): ``report`` is the report's path (possibly partial or
    removed when empty) and ``results_dir`` the folder with the last checkpoint, if any was
    written."""

    def __init__(self, report: Path, results_dir: Path) -> None:
        super().__init__(f"sweep interrupted; results so far in {results_dir}")
        self.report = report
        self.results_dir = results_dir


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
    interrupt_on_sigint: bool = False,
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
    interrupt_on_sigint : bool
        Ctrl-C interrupts the kernel (:func:`pairlib.app.runner.run_notebook`): the sweep
        stops, and the notebook saves and reports what finished (``RunResult.interrupted``).

    Returns
    -------
    RunResult
        The report; its results are in :func:`sweep_results_dir` of its path.

    Raises
    ------
    ConfigError
        Bad params, window, grid or scale-out options, before any kernel starts.
    SweepInterrupted
        A ``KeyboardInterrupt`` here (a second Ctrl-C, or one before the kernel started),
        naming the report and the results folder.
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
    results = sweep_results_dir(out)
    parameters = {"start": first.isoformat(), "end": last.isoformat(),
                  "params_file": str(params_file), "grid_json": json.dumps(g),
                  "results_dir": str(results),
                  **{k: v for k, v in given.items() if v is not None}}
    try:
        return run_notebook(notebook, out, parameters, cwd=Path.cwd(),
                            interrupt_on_sigint=interrupt_on_sigint)
    except BaseException as e:
        if out.is_file() and out.stat().st_size == 0:
            out.unlink()
        if isinstance(e, KeyboardInterrupt) and not isinstance(e, SweepInterrupted):
            raise SweepInterrupted(out, results) from None
        raise


def run_shortlist_reports(
    report: RunResult | Path,
    outputs: str | Path = "outputs",
    *,
    workers: int | None = None,
    dask_address: str | None = None,
) -> list[RunResult]:
    """One papermill backtest report (:func:`pairlib.app.jobs.run_backtest_job`) per
    shortlisted combination of a finished sweep report, on the sweep's window.

    Each combination's params (the sweep's params file with the cell's settings, validated
    as a params file is) are written to ``<results folder>/params-combo-<id>.yaml`` and
    backtested into ``outputs/backtests/``. With ``dask_address`` the reports run as tasks
    of that Dask scheduler (the cluster the sweep used), with ``workers`` on a local cluster
    of that many single-threaded worker processes (the sweep's own cluster lived in its
    kernel and is gone), else one after another in this process.

    Parameters
    ----------
    report : RunResult or path
        The sweep's report (its papermill metadata gives the params file and the window;
        its results folder the shortlist, :func:`sweep_results_dir`).
    outputs : path
        Folder for the backtest reports (a relative one is relative to the project root).
    workers, dask_address : optional
        Scale-out as for the sweep (:func:`pairlib.engine.sweep.check_scale_out`).

    Returns
    -------
    list of RunResult
        In shortlist order (best level-1 Sharpe first); empty for an empty shortlist.

    Raises
    ------
    ConfigError
        The report has no results folder or shortlist (it did not finish), or bad options.
    """
    import math

    import pandas as pd
    import yaml

    from pairlib.app.jobs import run_backtest_job
    from pairlib.engine.sweep import Combo, check_scale_out

    check_scale_out(workers, dask_address, 1, 0)
    path = report.path if isinstance(report, RunResult) else Path(report)
    results = sweep_results_dir(path)
    shortlist = results / "shortlist.csv"
    if not shortlist.is_file():
        raise ConfigError(f"{path} has no shortlist at {shortlist}: run the sweep to its "
                          "end first")
    given = json.loads(path.read_text())["metadata"]["papermill"]["parameters"]
    base = load_params(given.get("params_file", PARAMS_FILE))
    jobs: list[tuple[str, dict[str, Any]]] = []
    for row in pd.read_csv(shortlist).to_dict("records"):
        loss = row["max_loss_multiple"]
        combo = Combo(float(row["entry"]), float(row["exit"]), float(row["stop"]),
                      int(row["lookback"]),
                      None if loss is None or (isinstance(loss, float) and math.isnan(loss))
                      else float(loss), int(row["formation_bars"]))
        file = results / f"params-combo-{int(row['combo'])}.yaml"
        file.write_text(yaml.safe_dump(combo.params(base).model_dump(mode="json"),
                                       sort_keys=False))
        jobs.append((str(file), {"start": given["start"], "end": given["end"],
                                 "outputs": str(project_path(outputs))}))
    if not jobs:
        return []
    if workers is None and dask_address is None:
        return [run_backtest_job(file, **kw) for file, kw in jobs]
    from pairlib.engine.sweep import dask_client

    with dask_client(workers, dask_address) as client:
        futures = [client.submit(run_backtest_job, file, pure=False, **kw) for file, kw in jobs]
        return list(client.gather(futures))
