"""The command line's progress bar for a notebook kernel's work (``pairlib backtest``,
``pairlib sweep``).

A report's notebook runs in a separate kernel process under papermill, so what is done
crosses the process boundary through a file: :func:`kernel_progress` sets
:data:`pairlib.report.backtest_charts.PROGRESS_FILE_ENV` to a fresh temporary file (the kernel
inherits the environment), the notebook's
:class:`~pairlib.report.backtest_charts.ProgressDisplay` writes ``"<done> <total>"`` there,
and a thread polls it and draws a rich bar on stderr.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["kernel_progress"]


@contextlib.contextmanager
def kernel_progress(
    what: str,
    unit: str,
    starting: str,
    *,
    force: bool = False,
    poll_s: float = 0.2,
) -> Iterator[Any]:
    """Show the kernel's progress as a rich bar on stderr while the block runs.

    Parameters
    ----------
    what : str
        The bar's label while work is under way (``"backtest"``, ``"sweep"``); once done
        equals total it reads ``"<what> done, writing the report"``.
    unit : str
        What is counted, shown after ``done/total`` (``"bars"``, ``"combinations"``).
    starting : str
        The label until the kernel writes its first count (kernel start, history read).
    force : bool
        Draw even when stderr is not a terminal (tests).
    poll_s : float
        Seconds between two reads of the progress file.

    Yields
    ------
    rich.progress.Progress or None
        The bar (one task), or None when stderr is not a terminal and ``force`` is off: then
        the block runs as it is and no variable is set.

    Notes
    -----
    The environment variable is restored and the temporary folder removed on exit, however
    the block ends; the last state the kernel wrote is drawn before the bar closes.
    """
    import os
    import tempfile
    import threading

    from rich.console import Console

    console = Console(stderr=True)
    if not (force or console.is_terminal):
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from pairlib.report.backtest_charts import PROGRESS_FILE_ENV

    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="pairlib-progress-") as tmp:
        path = Path(tmp) / f"{what}.progress"
        before = os.environ.get(PROGRESS_FILE_ENV)
        os.environ[PROGRESS_FILE_ENV] = str(path)
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn(),
                   TimeRemainingColumn())
        try:
            with Progress(*columns, console=console, transient=False) as bar:
                task = bar.add_task(starting, total=None)

                def read() -> None:
                    try:
                        done, total = (int(v) for v in path.read_text().split())
                    except (OSError, ValueError):
                        return  # not written yet
                    label = what if done < total else f"{what} done, writing the report"
                    bar.update(task, description=label, completed=done, total=total)

                def poll() -> None:
                    while not stop.wait(poll_s):
                        read()

                poller = threading.Thread(target=poll, name=f"{what}-progress", daemon=True)
                poller.start()
                try:
                    yield bar
                finally:
                    stop.set()
                    poller.join()
                    read()  # the last state written
        finally:
            if before is None:
                os.environ.pop(PROGRESS_FILE_ENV, None)
            else:
                os.environ[PROGRESS_FILE_ENV] = before
