"""``pairlib status`` and ``pairlib notify``: registered on :data:`pairlib.app.cli.app` when
the CLI module loads.

``pairlib status`` shows the book and the runs (:mod:`pairlib.app.status`); with ``--check``
it is the dead-man's switch for cron, systemd or any monitor. ``pairlib notify test`` sends a
test message through the outbox; ``pairlib notify deliver`` sends what is due (for a cron line
when nothing else runs the delivery).
"""

from __future__ import annotations

from pathlib import Path

import typer

from pairlib.app.cli import PARAMS, _one_line_errors, app

__all__ = ["notify_app", "status"]

notify_app = typer.Typer(help="Notifications (destinations: apprise URLs in the "
                         "PAIRLIB_NOTIFY_URLS environment variable).", no_args_is_help=True)
app.add_typer(notify_app, name="notify")


@app.command()
@_one_line_errors
def status(
    params: Path = typer.Option(PARAMS, help="Params file (state_dir, timeframe, schedule, "
                                "kill switch, candle cache)."),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON (stable "
                                 "keys, for scripts) instead of tables."),
    check_only: bool = typer.Option(False, "--check", help="Dead-man's switch: print one "
                                    "line and exit 1 when the last successful tick is older "
                                    "than one bar + schedule.stale_grace_seconds (or there "
                                    "never was one), else 0."),
) -> None:
    """Show the book and the runs; --check is the dead-man's switch.

    Open pairs with unrealized PnL (at the closes the last tick acted on), equity, the pair
    set and its age, the last tick and its report, the next scheduled tick, unresolved
    incidents, the kill switch and the notification outbox. Reads the store and the candle
    cache only: no order, no venue call.

    \b
    Exit codes:
      0  shown; with --check: the last successful tick is fresh ("ok: ...")
      1  with --check: stale, never ran, or no store ("stale: ..."); or the store is unreadable
    """
    import json

    from pairlib.app.status import check, collect, render
    from pairlib.clock import SystemClock
    from pairlib.config import load_params

    p = load_params(params)
    now = SystemClock().now()
    if check_only:
        code, line = check(p, now)
        typer.echo(line)
        raise typer.Exit(code=code)
    data = collect(p, now)
    if as_json:
        typer.echo(json.dumps(data, indent=2, sort_keys=False))
        return
    from rich.console import Console

    render(data, Console(highlight=False, soft_wrap=False))


@notify_app.command("test")
@_one_line_errors
def notify_test(
    params: Path = typer.Option(PARAMS, help="Params file (state_dir, notify section)."),
) -> None:
    """Send a test message to every destination of PAIRLIB_NOTIFY_URLS (through the outbox)
    and print what happened; exit 1 unless it was delivered."""
    from pairlib.app.notify import send_test
    from pairlib.config import load_params

    stats = send_test(load_params(params))
    typer.echo(str(stats))
    for line in stats.errors:
        typer.secho(line, fg=typer.colors.RED, err=True)
    if not stats.delivered:
        raise typer.Exit(code=1)


@notify_app.command("deliver")
@_one_line_errors
def notify_deliver(
    params: Path = typer.Option(PARAMS, help="Params file (state_dir, notify section)."),
) -> None:
    """Send every notification that is due (retries included) and print one line."""
    from pairlib.app.notify import deliver_pending
    from pairlib.config import load_params

    stats = deliver_pending(load_params(params))
    typer.echo(str(stats))
    for line in stats.errors:
        typer.secho(line, fg=typer.colors.RED, err=True)
