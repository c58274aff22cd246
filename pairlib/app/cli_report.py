"""``pairlib report``: registered on :data:`pairlib.app.cli.app` when the CLI module loads.

Renders every new executed notebook under ``outputs/`` to HTML and rebuilds
``outputs/index.html`` (:func:`pairlib.report.site.update_site`), then prints the index path
and one summary line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from pairlib.app.cli import PARAMS, _fail, _one_line_errors, app

__all__ = ["report"]


@app.command()
@_one_line_errors
def report(
    params: Path | None = typer.Option(None, help=f"Params file, validated when given (the "
                                       f"report reads only the notebooks; default {PARAMS} "
                                       "when it exists)."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder of executed notebooks; a "
                                 "relative one is relative to the project root."),
    force: bool = typer.Option(False, "--force", help="Render every report again, even "
                               "those already up to date."),
    open_browser: bool = typer.Option(False, "--open", help="Open the index in the "
                                      "default browser afterwards."),
) -> None:
    """Render executed notebooks to HTML and build outputs/index.html (offline, incremental).

    Prints the index path, then one line: rendered N new, M unchanged, K skipped (notebooks
    still being written are skipped, and picked up by the next run).
    """
    from pairlib.config import load_params, project_path
    from pairlib.report.site import update_site

    if params is not None or project_path(PARAMS).is_file():
        load_params(PARAMS if params is None else params)  # refused as everywhere else
    folder = project_path(outputs)
    if not folder.is_dir():
        raise _fail(f"--outputs {folder} is not a folder; run a job first (pairlib pairs, "
                    "pairlib tick, pairlib backtest) or pass --outputs DIR")
    build = update_site(folder, force=force)
    typer.echo(str(build.index))
    typer.echo(build.summary())
    if open_browser:
        import webbrowser

        webbrowser.open(build.index.resolve().as_uri())
