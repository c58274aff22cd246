"""``pairlib sweep``: registered on :data:`pairlib.app.cli.app` when the CLI module loads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from pairlib.app.cli import PARAMS, _one_line_errors, app

__all__ = ["sweep"]


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
) -> None:
    """Sweep parameters: run notebooks/sweep.ipynb into outputs/sweeps/. The first line
    printed is the report's path, the second a summary (best cell, DSR, PBO).

    \b
    Exit codes:
      0  the sweep ran (an interrupted sweep says so and keeps what finished)
      1  the notebook failed (the report is kept, the error at its top)
      2  rejected before any kernel started: bad params, window, grid or options
    """
    from pairlib.app.cli import _fail
    from pairlib.app.sweep_job import load_grid, run_sweep_job
    from pairlib.errors import ConfigError, PairlibError

    try:
        g: dict[str, Any] | None = load_grid(grid) if grid is not None else None
        for name, text in (("entry", entry), ("exit", exit), ("stop", stop),
                           ("lookback", lookback)):
            if text is not None:
                g = dict(g or {})
                g[name] = _values(name, text)
        with _progress():
            result = run_sweep_job(params, start, end, outputs, grid=g, shortlist=shortlist,
                                   workers=workers, dask_address=dask)
    except (ConfigError, PairlibError) as e:
        raise _fail(str(e)) from None
    typer.echo(str(result.path))
    if not result.ok:
        typer.secho(f"sweep failed: {result.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    typer.echo(summary_line(result.scraps, result.duration_s))


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


@contextlib.contextmanager
def _progress(poll_s: float = 0.2) -> Iterator[None]:
    """A rich progress bar on stderr (a terminal only) following the kernel's progress file
    (:data:`pairlib.report.backtest_charts.PROGRESS_FILE_ENV`, ``"<done> <total>"``)."""
    import os
    import tempfile
    import threading

    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from pairlib.report.backtest_charts import PROGRESS_FILE_ENV

    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="pairlib-sweep-") as tmp:
        path = Path(tmp) / "sweep.progress"
        before = os.environ.get(PROGRESS_FILE_ENV)
        os.environ[PROGRESS_FILE_ENV] = str(path)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("combinations"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("sweep: starting the kernel, selecting pairs", total=None)

            def read() -> None:
                try:
                    done, total = (int(v) for v in path.read_text().split())
                except (OSError, ValueError):
                    return
                bar.update(task, description="sweep", completed=done, total=total)

            def poll() -> None:
                while not stop.wait(poll_s):
                    read()

            t = threading.Thread(target=poll, name="sweep-progress", daemon=True)
            t.start()
            try:
                yield
            finally:
                stop.set()
                t.join()
                read()
                if before is None:
                    os.environ.pop(PROGRESS_FILE_ENV, None)
                else:
                    os.environ[PROGRESS_FILE_ENV] = before
