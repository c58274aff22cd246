"""``pairlib sweep``: registered on :data:`pairlib.app.cli.app` when the CLI module loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from pairlib.app.cli import PARAMS, _one_line_errors, app

__all__ = ["INTERRUPTED_EXIT", "sweep"]

INTERRUPTED_EXIT = 130
"""``pairlib sweep``'s exit code after Ctrl-C (128 + SIGINT, as a shell reports it)."""


@app.command()
@_one_line_errors
def sweep(
    params: Path = typer.Option(PARAMS, help="Params file (the base of every combination)."),
    start: str | None = typer.Option(None, help="First bar traded: a candle close, ISO-8601 "
                                     "(e.g. 2025-02-04T00:00Z) or a date; default: the "
                                     "notebook's."),
    end: str | None = typer.Option(None, help="Last bar traded, as --start."),
    grid: Path | None = typer.Option(None, help="Grid file (YAML/JSON): {axis: [values]}, "
                                     "axes entry, exit, stop, lookback, max_loss_multiple, "
                                     "formation_bars; default: the notebook's grid."),
    entry: str | None = typer.Option(None, help="Comma-separated entry values (instead of or "
                                     "on top of --grid)."),
    exit: str | None = typer.Option(None, help="Comma-separated exit values."),
    stop: str | None = typer.Option(None, help="Comma-separated stop values."),
    lookback: str | None = typer.Option(None, help="Comma-separated lookbacks (bars)."),
    workers: int | None = typer.Option(None, min=1, help="Local Dask worker processes."),
    dask: str | None = typer.Option(None, help="An existing Dask scheduler, tcp://HOST:PORT."),
    shortlist: int | None = typer.Option(None, min=0, help="Best cells run through the "
                                         "full-portfolio backtest."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks."),
    reports: bool = typer.Option(False, "--reports", help="Also run one backtest report per "
                                 "shortlisted combination into outputs/backtests/ (on the "
                                 "Dask cluster when --workers or --dask is given)."),
) -> None:
    """Sweep parameters: run notebooks/sweep.ipynb into outputs/sweeps/. The first line
    printed is the report's path, the second a summary (best cell, DSR, PBO). The results
    (CSV tables, summary.json) are kept in the folder of the report's name without .ipynb,
    checkpointed while the sweep runs.

    Ctrl-C interrupts the sweep in its kernel: the combinations that finished are saved
    and reported, and the command exits 130. A second Ctrl-C stops at once; the last
    checkpoint stays in the results folder, which is printed.

    \b
    Exit codes:
      0    the sweep ran (and, with --reports, every backtest report)
      1    the notebook (or a --reports backtest) failed; reports are kept
      2    rejected before any kernel started: bad params, window, grid or options
      130  interrupted by Ctrl-C (what finished is kept and its folder printed)
    """
    from pairlib.app.cli import _fail
    from pairlib.app.progress import kernel_progress
    from pairlib.app.sweep_job import (
        SweepInterrupted,
        load_grid,
        run_shortlist_reports,
        run_sweep_job,
        sweep_results_dir,
    )
    from pairlib.errors import ConfigError, PairlibError

    try:
        g: dict[str, Any] | None = load_grid(grid) if grid is not None else None
        for name, text in (("entry", entry), ("exit", exit), ("stop", stop),
                           ("lookback", lookback)):
            if text is not None:
                g = dict(g or {})
                g[name] = _values(name, text)
        with kernel_progress("sweep", "combinations",
                             "sweep: starting the kernel, selecting pairs"):
            result = run_sweep_job(params, start, end, outputs, grid=g, shortlist=shortlist,
                                   workers=workers, dask_address=dask,
                                   interrupt_on_sigint=True)
    except (ConfigError, PairlibError) as e:
        raise _fail(str(e)) from None
    except SweepInterrupted as e:
        kept = (e.results_dir / "summary.json").is_file()
        typer.secho("sweep interrupted: " + (
            f"the last checkpoint of the finished combinations is in {e.results_dir}"
            if kept else "no combination had finished"), fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=INTERRUPTED_EXIT) from None
    typer.echo(str(result.path))
    results = sweep_results_dir(result.path)
    if result.interrupted:
        if result.scraps.get("summary"):
            typer.echo(summary_line(result.scraps, result.duration_s))
        where = (f"the finished results are in {results}"
                 if (results / "summary.json").is_file() else "no combination had finished")
        typer.secho(f"sweep interrupted: {where}", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(code=INTERRUPTED_EXIT)
    if not result.ok:
        typer.secho(f"sweep failed: {result.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    typer.echo(summary_line(result.scraps, result.duration_s))
    if reports:
        try:
            backtests = run_shortlist_reports(result, outputs, workers=workers,
                                              dask_address=dask)
        except (ConfigError, PairlibError) as e:
            raise _fail(str(e)) from None
        for bt in backtests:
            typer.echo(f"backtest report: {bt.path}"
                       + ("" if bt.ok else f" (failed: {bt.error})"))
        if not all(bt.ok for bt in backtests):
            raise typer.Exit(code=1)


def _values(name: str, text: str) -> list[float | int]:
    """``"1,1.5"`` as numbers (integers for lookback), or a ConfigError naming the option."""
    from pairlib.errors import ConfigError

    out: list[float | int] = []
    for part in text.split(","):
        try:
            out.append(int(part) if name == "lookback" else float(part))
        except ValueError:
            raise ConfigError(f"--{name} {text!r}: {part.strip()!r} is not a number; give "
                              "comma-separated values, e.g. 1.0,1.5") from None
    return out


def summary_line(scraps: dict[str, Any], duration_s: float) -> str:
    """``sweep: N combinations (K skipped), best entry=.. exit=.. stop=.. lookback=..
    Sharpe .., DSR .., PBO .., in T s`` from the report's scraps."""
    s = scraps.get("summary") or {}
    best = s.get("best") or {}

    def num(v: Any, fmt: str = ".2f") -> str:
        return "n/a" if v is None else format(float(v), fmt)

    cell = " ".join(f"{k}={best[k]}" for k in ("entry", "exit", "stop", "lookback")
                    if k in best)
    stopped = " (interrupted: kept what finished)" if s.get("interrupted") else ""
    return (f"sweep{stopped}: {s.get('n_trials', '?')} combinations ({s.get('skipped', '?')} "
            f"skipped), best {cell or 'n/a'} Sharpe {num(best.get('sharpe'))}, DSR "
            f"{num(s.get('deflated_sharpe'), '.3f')}, PBO {num(s.get('pbo'), '.2f')}, "
            f"{s.get('shortlisted', 0)} shortlisted, in {duration_s:.1f} s")
