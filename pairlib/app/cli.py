"""The ``pairlib`` console script (typer). Every subcommand has ``--help``.

The CLI is the outer shell: it parses arguments, calls the library, prints results and
turns :class:`~pairlib.errors.PairlibError` into a clear message and a non-zero exit.
Heavy imports happen inside the commands so ``pairlib --help`` stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer

__all__ = ["TICK_EXIT_CODES", "app"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    help="pairlib: research-to-live pairs trading for crypto perpetual futures.",
    no_args_is_help=True,
    add_completion=False,
)
exchange_app = typer.Typer(help="The simulated exchange (the embedded default venue).",
                           no_args_is_help=True)
app.add_typer(exchange_app, name="exchange")

PARAMS = Path("params/pairlib.yaml")
"""Every command's default ``--params`` (:data:`pairlib.config.PARAMS_FILE`; not imported
from there so that ``pairlib --help`` loads no pydantic)."""


TICK_EXIT_CODES = {"ok": 0, "already_ran": 0, "preview": 0, "degraded": 3, "failed": 1,
                   "refused": 2}
"""``pairlib tick``'s exit code by tick status (any other status exits 1)."""


def _fail(message: str) -> typer.Exit:
    """Print ``error: message`` in red on stderr; the exit for a refused command (2)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def _one_line_errors(command: F) -> F:
    """Turn what a command did not handle itself into ``error: ...`` and exit 1, never a
    traceback: any :class:`~pairlib.errors.PairlibError` (a corrupt, locked or read-only
    state database raises :class:`~pairlib.errors.StoreError`), and the operating system's
    and SQLite's own errors about the state folder."""
    import sqlite3

    from pairlib.errors import PairlibError

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PairlibError as e:
            message = str(e)
        except sqlite3.Error as e:
            message = f"state database: {type(e).__name__}: {e}"
        except OSError as e:
            message = f"{type(e).__name__}: {e}"
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)

    return wrapper  # type: ignore[return-value]


@app.command()
@_one_line_errors
def data(
    params: Path = typer.Option(PARAMS, help="Params file (its venue and data sections; "
                                "the pairs job's window of candles)."),
    as_of: str | None = typer.Option(None, help="ISO-8601 time; default: last closed candle."),
) -> None:
    """Fetch the universe's closed candles into the cache and print a data-quality summary."""
    from pairlib.app.demo import data_summary
    from pairlib.errors import PairlibError

    try:
        data_summary(params, as_of)
    except PairlibError as e:
        raise _fail(str(e)) from None


@app.command()
@_one_line_errors
def pairs(
    params: Path = typer.Option(PARAMS, help="Params file (its selection section and "
                                "strategy.lookback)."),
    as_of: str | None = typer.Option(None, help="ISO-8601 candle close; default: last closed."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks "
                                 "(a relative one is relative to the project root)."),
) -> None:
    """Generate a pair set: run notebooks/generate_pairs.ipynb into outputs/pairs/."""
    from pairlib.app.jobs import run_pairs_job
    from pairlib.errors import PairlibError

    try:
        result = run_pairs_job(params, as_of, outputs)
    except PairlibError as e:
        raise _fail(str(e)) from None
    typer.echo(str(result.path))
    if not result.ok:
        typer.secho(f"pair generation failed: {result.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)


@app.command()
@_one_line_errors
def backtest(
    params: Path = typer.Option(PARAMS, help="Params file (strategy, risk, selection, venue "
                                "and data sections)."),
    start: str | None = typer.Option(
        None, help="First bar traded: a candle close, ISO-8601 with Z or an offset (e.g. "
        "2025-02-04T00:00Z), or a date (00:00 UTC); default: the notebook's start."),
    end: str | None = typer.Option(None, help="Last bar traded, as --start; default: the "
                                   "notebook's end."),
    slippage_bps: float | None = typer.Option(
        None, help="Fill slippage against each order, bps; default: venue.sim_slippage_bps."),
    taker_fee: float | None = typer.Option(
        None, help="Fee on each fill's notional (0.0005 = 5 bps); default: the simulator's."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks "
                                 "(a relative one is relative to the project root)."),
) -> None:
    """Backtest the live rules walk-forward: run notebooks/backtest.ipynb into
    outputs/backtests/ (failed reports are kept). The first line printed is the report's
    path, the second its headline metrics. On a terminal, a progress bar on stderr shows
    the bars backtested so far (nothing is drawn when stderr is not a terminal).

    \b
    Exit codes:
      0  the backtest ran; its report holds the metrics and the trades
      1  the notebook failed (the report is kept, the error at its top)
      2  rejected before any kernel started: bad params, window or costs
    """
    from pairlib.app.jobs import run_backtest_job
    from pairlib.app.progress import kernel_progress
    from pairlib.errors import PairlibError

    try:
        with kernel_progress("backtest", "bars",
                             "backtest: starting the kernel, reading the history"):
            result = run_backtest_job(params, start, end, outputs, slippage_bps=slippage_bps,
                                      taker_fee=taker_fee)
    except PairlibError as e:
        raise _fail(str(e)) from None
    typer.echo(str(result.path))
    if not result.ok:
        typer.secho(f"backtest failed: {result.error}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1)
    typer.echo(_backtest_line(result.scraps, result.duration_s))


def _backtest_line(scraps: dict[str, Any], duration_s: float) -> str:
    """``backtest <start> → <end>: N trades, total return …, Sharpe …, max drawdown … in
    T s`` from the report's scraps (``n/a`` for a metric the report did not give)."""
    m = scraps.get("metrics") or {}

    def pct(key: str) -> str:
        v = m.get(key)
        return "n/a" if v is None else f"{float(v):+.2%}"

    sharpe = m.get("sharpe")
    return (f"backtest {scraps.get('start', '?')} → {scraps.get('end', '?')}: "
            f"{scraps.get('n_trades', '?')} trades, total return {pct('total_return')}, "
            f"Sharpe {'n/a' if sharpe is None else f'{float(sharpe):.2f}'}, max drawdown "
            f"{pct('max_drawdown')} in {duration_s:.1f} s")


@app.command()
@_one_line_errors
def demo(
    as_of: str = typer.Option("2026-06-01T00:00:00Z", help="Pair-generation time (ISO-8601)."),
    ticks: int = typer.Option(12, min=1, max=60, help="4h ticks to replay after it."),
    state: Path = typer.Option(Path(".state/demo"), help="Demo state folder."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks "
                                 "(a relative one is relative to the project root)."),
    fresh: bool = typer.Option(False, "--fresh", help="Start over (default: continue after "
                               "the last finished step of the same plan)."),
) -> None:
    """Run the whole system offline on the simulated exchange: data, pairs, two days of
    ticks, a backtest, a small sweep and the report index. A rerun continues where the last
    one stopped."""
    from pairlib.app.demo import run_demo
    from pairlib.errors import PairlibError

    try:
        ok = run_demo(as_of, ticks, state, outputs, fresh=fresh)
    except PairlibError as e:
        raise _fail(str(e)) from None
    if not ok:
        raise typer.Exit(code=1)


@exchange_app.command("serve")
@_one_line_errors
def exchange_serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback only "
                                               "unless --allow-remote)."),
    port: int = typer.Option(8765, min=0, max=65535, help="Port; 0 picks a free one."),
    seed: int = typer.Option(7, min=0, help="Market seed (same seed, same market)."),
    symbols: int = typer.Option(48, min=4, max=1000, help="Number of simulated perpetuals."),
    now: str | None = typer.Option(None, help="Initial sim time, ISO-8601; default: where the "
                                              "--state file stopped, else the last 4h "
                                              "boundary of the wall clock."),
    state: Path = typer.Option(Path(".state/sim_account.json"),
                               help="Account state file (JSON), continued if it exists."),
    api_key: str | None = typer.Option(None, help="Accepted API key; default: the "
                                                  "simulator's fixed local key."),
    api_secret: str | None = typer.Option(None, help="Accepted API secret; default: the "
                                                     "simulator's fixed local secret."),
    allow_remote: bool = typer.Option(False, "--allow-remote",
                                      help="Permit a non-loopback --host."),
) -> None:
    """Serve the simulated Binance USD-M futures venue until SIGINT/SIGTERM.

    The first line printed is ``listening on http://HOST:PORT``. Set its clock with
    ``POST /sim/clock {"now": ...}``; faults with ``POST /sim/faults``.
    """
    import signal
    import sys
    import threading
    from datetime import timedelta

    from pairlib.clock import SystemClock, floor_time, from_ms, parse_time
    from pairlib.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET, Market, MarketSpec, SimServer
    from pairlib.sim.account import Account

    try:
        saved = Account.saved_clock(state)
        if now:
            start = parse_time(now)
        elif saved is not None:
            start = from_ms(saved)
        else:
            start = floor_time(SystemClock().now(), timedelta(hours=4))
        market = Market(MarketSpec(seed=seed, n_symbols=symbols))
        server = SimServer(
            market, state, now=start, host=host, port=port,
            api_key=api_key or DEFAULT_API_KEY, api_secret=api_secret or DEFAULT_API_SECRET,
            allow_remote=allow_remote,
        )
        url = server.start()
    except (ValueError, OSError) as e:
        raise _fail(str(e)) from None
    typer.echo(f"listening on {url}")
    sys.stdout.flush()
    typer.echo(f"sim time {server.now.isoformat()}, seed {seed}, {symbols} symbols, "
               f"state {state}", err=True)
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    typer.echo("stopped", err=True)


@app.command()
@_one_line_errors
def tick(
    params: Path = typer.Option(PARAMS, help="Params file."),
    as_of: str | None = typer.Option(
        None, help="Candle close to act on, ISO-8601 with Z or an offset, on a "
        "params.data.timeframe boundary (e.g. 2026-01-31T20:00Z); default: the last closed "
        "candle."),
    live: bool = typer.Option(False, "--live", help="Trade a live venue (also needs "
                              "venue.kind: live in params and keys in the environment)."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks "
                                 "(a relative one is relative to the project root)."),
    wait: float = typer.Option(600.0, min=0.0, help="Seconds to wait for another tick job "
                               "of the same state_dir to finish."),
    preview: bool = typer.Option(False, "--preview", help="Compute every decision and the "
                                 "orders the tick would send, and report them, without "
                                 "sending an order or recording anything (report: "
                                 "...Z-tick-preview.ipynb)."),
) -> None:
    """Run one tick: notebooks/tick.ipynb into outputs/ticks/ (failed reports are kept).
    The first line printed is the report's path. With --preview nothing is traded.

    \b
    Exit codes:
      0  ok or already_ran; with --preview, the preview ran
      1  failed: the tick ran into an error (see the report)
      2  rejected before any network call: bad params, a bad --as-of,
         the live guard, or another tick job of the same state_dir
         still running after --wait
      3  degraded: the tick finished but something is exposed (a naked
         leg, an unknown order, an open pair it could not evaluate);
         the line printed says what
    """
    from pairlib.app.jobs import JobLocked, run_tick_job
    from pairlib.errors import ConfigError, LiveTradingRefused

    def waiting(line: str) -> None:
        typer.secho(line, fg=typer.colors.YELLOW, err=True)

    try:
        result = run_tick_job(params, as_of, outputs, live=live, trade=not preview,
                              lock_timeout_s=wait, on_wait=waiting)
    except (ConfigError, LiveTradingRefused, JobLocked) as e:
        raise _fail(str(e)) from None
    typer.echo(str(result.path))
    status = result.status
    code = TICK_EXIT_CODES.get(status, 1)
    if not result.report_complete:
        typer.secho(f"warning: the report notebook is incomplete ({result.error})"
                    + ("" if preview else "; the tick's outcome below is what the tick "
                       "recorded"), fg=typer.colors.YELLOW, err=True)
    if status == "preview":
        duration = result.scraps.get("duration_s") or result.duration_s
        shown = str(result.scraps.get("mode") or "")
        what = (shown if shown.startswith("preview")
                else "preview: no order sent, nothing recorded")
        typer.echo(f"tick {what}; {result.scraps.get('n_orders', '?')} order(s) planned, in "
                   f"{float(duration):.2f} s")
    elif code == 0:
        duration = result.scraps.get("duration_s") or result.duration_s
        mode = result.scraps.get("mode")
        typer.echo(f"tick {status}{f' ({mode})' if mode else ''} in {float(duration):.2f} s")
    elif status == "degraded":
        typer.secho(f"tick degraded: {result.message or 'something is exposed; see the report'}",
                    fg=typer.colors.YELLOW, bold=True, err=True)
    else:
        typer.secho(f"tick {status}: {result.message or result.error}",
                    fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


@app.command("reconcile")
@_one_line_errors
def reconcile_cmd(
    params: Path = typer.Option(PARAMS, help="Params file."),
    as_of: str | None = typer.Option(None, help="ISO-8601 time of the run; default: now."),
    accept: str | None = typer.Option(None, help="Unified symbol whose venue position the "
                                      "store accepts (e.g. HBAR/USDT:USDT)."),
    reason: str | None = typer.Option(None, help="Why (required with --accept; recorded)."),
    force: bool = typer.Option(False, "--force", help="With --accept: mark open pairs whose "
                               "leg the venue no longer holds flat."),
    live: bool = typer.Option(False, "--live", help="Read a live venue (same guard as tick)."),
) -> None:
    """Show store/venue mismatches per symbol (exit 1 if any), or --accept one symbol's."""
    import getpass

    from rich.console import Console
    from rich.table import Table

    from pairlib.clock import SystemClock, parse_time
    from pairlib.config import load_params
    from pairlib.edges.store import Store
    from pairlib.engine.reconcile import AcceptRefused, accept_venue, report, snapshot
    from pairlib.errors import ConfigError, LiveTradingRefused, PairlibError

    if accept is not None and not (reason or "").strip():
        raise _fail("--accept needs --reason TEXT (it is recorded with the change)")
    if accept is None and (reason is not None or force):
        raise _fail("--reason and --force are for --accept SYMBOL")
    try:
        p = load_params(params)
        now = parse_time(as_of) if as_of else SystemClock().now()
    except (ConfigError, ValueError) as e:
        raise _fail(str(e)) from None
    console = Console(width=160)
    try:
        if accept is None:
            frame = report(p, now, live=live)
            table = Table(title=f"reconciliation {p.venue.kind} at {now:%Y-%m-%dT%H:%MZ}")
            for col in frame.columns:
                table.add_column(col, overflow="fold")
            for row in frame.itertuples(index=False):
                table.add_row(*(f"{v:+.12g}" if isinstance(v, float) else str(v) for v in row),
                              style=None if row.status == "ok" else "red")
            console.print(table)
            bad = int((frame["status"] != "ok").sum())
            console.print(f"{bad} symbol(s) need attention" if bad else "store matches venue")
            raise typer.Exit(code=1 if bad else 0)
        from filelock import FileLock, Timeout

        Path(p.state_dir).mkdir(parents=True, exist_ok=True)
        try:  # never while a tick runs: it holds the same lock
            with FileLock(str(Path(p.state_dir) / "tick.lock"), timeout=10):
                snap = snapshot(p, now, live=live)
                with Store.at(p.state_dir) as db:
                    result = accept_venue(
                        db, accept, snap.positions.get(accept, 0.0), now, str(reason),
                        force=force, step=snap.steps.get(accept, 0.0),
                        operator=getpass.getuser())
        except Timeout:
            raise _fail("a tick is running (tick.lock is held); try again after it") from None
        for line in result.lines():
            console.print(line, highlight=False)
        if any(str(o.symbol) == accept for o in snap.foreign_orders):
            console.print(f"note: {accept} still has open orders not placed by pairlib; it "
                          "stays blocked until they are cancelled", style="yellow")
    except (ConfigError, LiveTradingRefused) as e:
        raise _fail(str(e)) from None
    except AcceptRefused as e:
        typer.secho(f"refused: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    except PairlibError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


# Commands defined in their own modules (each imports `app` from here and registers itself).
from pairlib.app import cli_report, cli_schedule, cli_status, cli_sweep  # noqa: E402,F401,I001


def main() -> None:
    """Entry point for ``python -m pairlib``."""
    app()
