"""The ``pairlib`` console script (typer). Every subcommand has ``--help``.

The CLI is the outer shell: it parses arguments, calls the library, prints results and
turns :class:`~pairlib.errors.PairlibError` into a clear message and a non-zero exit.
Heavy imports happen inside the commands so ``pairlib --help`` stays fast.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    help="pairlib: research-to-live pairs trading for crypto perpetual futures.",
    no_args_is_help=True,
    add_completion=False,
)
exchange_app = typer.Typer(help="The simulated exchange (the embedded default venue).",
                           no_args_is_help=True)
app.add_typer(exchange_app, name="exchange")


def main() -> None:
    """Entry point for ``python -m pairlib``."""
    app()
