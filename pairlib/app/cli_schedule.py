"""``pairlib schedule``: registered on :data:`pairlib.app.cli.app` when the CLI module loads."""

from __future__ import annotations

from pathlib import Path

import typer

from pairlib.app.cli import PARAMS, _fail, _one_line_errors, app

__all__ = ["SCHEDULE_EXIT_CODES", "schedule"]

SCHEDULE_EXIT_CODES = {"ok": 0, "already_ran": 0, "failed": 1, "refused": 2, "degraded": 3}
"""``pairlib schedule --once``'s exit code by job status: the worst of the jobs that ran
(any other status exits 1)."""


@app.command()
@_one_line_errors
def schedule(
    params: Path = typer.Option(PARAMS, help="Params file (its schedule section; the jobs "
                                "read it again when they run)."),
    once: bool = typer.Option(False, "--once", help="Run what is due now and exit (for cron "
                              "and tests) instead of running until SIGTERM/SIGINT."),
    wait: float = typer.Option(600.0, min=0.0, help="With --once: seconds to wait for "
                               "another job of the same state_dir to finish."),
    live: bool = typer.Option(False, "--live", help="Trade a live venue (also needs "
                              "venue.kind: live in params and keys in the environment)."),
    outputs: Path = typer.Option(Path("outputs"), help="Folder for executed notebooks "
                                 "(a relative one is relative to the project root)."),
) -> None:
    """Run the tick at every candle close (+ schedule.tick_delay_seconds), pair generation
    on schedule.pairs_day before that bar's tick, and the daily summary, all UTC. A run
    that is late runs once; SIGTERM/SIGINT stop it after the running job. Logs go to
    schedule.log_file and stderr.

    \b
    Exit codes:
      0  stopped by SIGTERM/SIGINT; with --once: every due job ran ok
         (or nothing was due)
      1  with --once: a job failed (its report is kept, the error at its top)
      2  rejected: bad params, the live guard, another scheduler of the
         same state_dir running, or (--once) another job still holding
         the job lock after --wait
      3  with --once: the tick ended degraded (something is exposed)
    """
    from pairlib.app.schedule import Scheduler, log_to_file, next_runs
    from pairlib.clock import iso
    from pairlib.errors import ConfigError, JobLocked, LiveTradingRefused

    try:
        scheduler = Scheduler(params, outputs=outputs, live=live,
                              lock_wait_s=wait if once else 1.0)
        if not once:
            raise typer.Exit(code=scheduler.serve())
        with log_to_file(scheduler.params, stderr=False):
            runs = scheduler.run_due()
    except (ConfigError, LiveTradingRefused, JobLocked) as e:
        raise _fail(str(e)) from None
    if not runs:
        nxt = next_runs(scheduler.params, scheduler.clock.now())
        typer.echo(f"nothing due; next tick {iso(nxt['tick'])}, next pair generation "
                   f"{iso(nxt['pairs'])}")
        return
    code = 0
    for run in runs:
        good = run.status in ("ok", "already_ran")
        typer.secho(run.line(), fg=None if good else typer.colors.RED, err=not good)
        code = max(code, SCHEDULE_EXIT_CODES.get(run.status, 1))
    raise typer.Exit(code=code)
