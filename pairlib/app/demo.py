"""The offline demo and the data summary, printed with rich.

The demo runs the whole system end to end on the simulated exchange, in its own state folder:
fetch and quality-check the universe's candles, generate a pair set with the pairs notebook,
replay days of 4h ticks as executed notebooks (the simulator's clock advanced between them),
backtest the months before, run a small parameter sweep, and build the offline report index.

Each finished step is recorded in ``<state>/demo-progress.json``; a rerun with the same plan
(time, ticks) continues after the last finished step, so an interrupted demo resumes without
repeating trades or reports. A different plan, or ``fresh=True``, starts over from an empty
state folder. A rich progress bar shows the steps while they run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from pairlib.clock import parse_time
from pairlib.config import (
    PARAMS_FILE,
    load_params,
    project_path,
    timeframe_ms,
    validate_params,
)

__all__ = ["DEMO_PROGRESS", "data_summary", "demo_params", "demo_steps", "run_demo"]

DEMO_PROGRESS = "demo-progress.json"
"""The demo's record of its finished steps, in its state folder."""


def data_summary(
    params_file: str | Path, as_of: str | datetime | None, console: Console | None = None
) -> None:
    """Fetch the universe's closed candles (cached) and print a per-symbol quality table.

    The window is the one pair generation fetches (:attr:`pairlib.config.Params.history_bars`),
    so the run also fills the cache for ``pairlib pairs``.
    """
    from pairlib.app.jobs import resolve_as_of
    from pairlib.edges.data import load_market_data
    from pairlib.venue.open import open_exchange

    console = console or Console()
    params = load_params(params_file)
    when = resolve_as_of(as_of, params.data.timeframe, None)
    with open_exchange(params.venue, when) as ex:
        md = load_market_data(ex, params.data.universe, params.data, now=when,
                              bars=params.history_bars)
    q = md.quality
    table = Table(title=f"data quality at {when:%Y-%m-%d %H:%M} UTC ({params.data.timeframe})")
    for col in ("symbol", "rows", "first", "last", "ok", "reason"):
        table.add_column(col)
    for sym, row in q.iterrows():
        table.add_row(str(row.get("symbol", sym)), str(row.get("rows", "")),
                      str(row.get("first", ""))[:16], str(row.get("last", ""))[:16],
                      "yes" if bool(row.get("ok", False)) else "[red]no[/red]",
                      str(row.get("reason", "") or ""))
    console.print(table)
    console.print(
        f"{md.closes.shape[1]} symbols kept, {len(md.dropped)} dropped; "
        f"{md.closes.shape[0]} aligned closed candles; cache: {md.cache_dir.resolve()}"
    )


def demo_params(state: Path, source: str | Path = PARAMS_FILE) -> Path:
    """Write the demo's params file, ``<state>/pairlib.yaml``: ``source`` (the shipped
    params) with ``state_dir`` set to ``state`` and the in-process simulator as venue. The
    simulator's account file and the kill file follow ``state_dir`` unless ``source`` sets
    them explicitly."""
    raw = load_params(source).model_dump(mode="json")
    raw["state_dir"] = str(state)
    raw["venue"].update(kind="sim", sim_url=None)
    params = validate_params(raw, source=f"demo params (from {source})")
    path = state / "pairlib.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
    load_params(path)
    return path


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: ``run`` returns the line printed under it, or raises
    :class:`DemoStepFailed`."""

    key: str
    title: str
    run: Callable[[], str]


class DemoStepFailed(Exception):
    """A demo step did not finish; its message says why and where its report is."""


def _plan_of(as_of: datetime, ticks: int) -> dict[str, Any]:
    return {"as_of": as_of.isoformat(), "ticks": ticks}


def _load_progress(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _save_progress(path: Path, progress: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(progress, indent=1))
    tmp.replace(path)  # atomic: a killed demo leaves the old record or the new one


def demo_steps(start: datetime, ticks: int, params_file: Path, outputs: Path,
               console: Console) -> list[DemoStep]:
    """The demo's steps, in order: data, pairs, ``ticks`` 4h ticks after ``start``, a
    backtest of the three months before ``start``, a small sweep over the same window, the
    report index (built once at the end, so the jobs skip their after-job hook)."""
    from pairlib.app.jobs import run_backtest_job, run_pairs_job, run_tick_job

    params = load_params(params_file)
    step = timedelta(milliseconds=timeframe_ms(params.data.timeframe))

    def data() -> str:
        data_summary(params_file, start, console)
        return "candles cached"

    def pairs() -> str:
        res = run_pairs_job(params_file, start, outputs, after=False)
        if not res.ok:
            raise DemoStepFailed(f"pair generation failed: {res.error} (report: {res.path})")
        chosen = res.scraps.get("chosen_pairs")
        return (f"pair set #{res.scraps.get('pair_set_id')}: "
                f"{0 if chosen is None else len(chosen)} pairs chosen; report: {res.path}")

    def tick_at(when: datetime) -> Callable[[], str]:
        def run() -> str:
            res = run_tick_job(params_file, when, outputs, after=False)
            sc = res.scraps
            status = sc.get("status", "failed" if not res.ok else "?")
            signals = sc.get("signals")
            acted = ([] if signals is None else
                     [f"{r.pair_id} {r.action}".replace("/USDT:USDT", "")
                      for r in signals.itertuples() if r.action not in ("none", "hold")])
            line = (f"tick {when:%Y-%m-%d %H:%M}Z  {status}  {sc.get('mode', '')}  "
                    f"orders {sc.get('n_orders', 0)}  equity "
                    f"{sc.get('equity', float('nan')):.2f}  "
                    f"{'; '.join(acted) or 'no action'}\n  report: {res.path}")
            if not res.ok:
                raise DemoStepFailed(f"{line}\ntick failed: {res.error}")
            return line
        return run

    bt_start, bt_end = start - timedelta(days=90), start - step

    def backtest() -> str:
        res = run_backtest_job(params_file, bt_start, bt_end, outputs)
        if not res.ok:
            raise DemoStepFailed(f"backtest failed: {res.error} (report: {res.path})")
        m = res.scraps.get("metrics") or {}
        trades = res.scraps.get("trades")
        return (f"backtest {bt_start:%Y-%m-%d} to {bt_end:%Y-%m-%d}: "
                f"{0 if trades is None else len(trades)} trades, total return "
                f"{float(m.get('total_return', float('nan'))):+.2%}; report: {res.path}")

    def sweep() -> str:
        from pairlib.app.sweep_job import run_sweep_job

        res = run_sweep_job(params_file, bt_start, bt_end, outputs, shortlist=2,
                            grid={"entry": [1.0, 1.5], "exit": [0.25, 0.5],
                                  "lookback": [params.strategy.lookback]})
        if not res.ok:
            raise DemoStepFailed(f"sweep failed: {res.error} (report: {res.path})")
        summary = res.scraps.get("summary") or {}
        best = summary.get("best") or {}
        return (f"sweep of {summary.get('combinations', '?')} combinations: best entry "
                f"{best.get('entry', '?')}, exit {best.get('exit', '?')}, Sharpe "
                f"{float(best.get('sharpe', float('nan'))):.2f}; deflated Sharpe "
                f"{float(summary.get('deflated_sharpe') or float('nan')):.2f}; "
                f"report: {res.path}")

    def report() -> str:
        from pairlib.report.site import build_site

        index = build_site(project_path(outputs))
        return f"report index: {index}"

    steps = [DemoStep("data", "market data from the simulated exchange", data),
             DemoStep("pairs", f"pair generation as of {start:%Y-%m-%d %H:%M}Z", pairs)]
    steps += [DemoStep(f"tick-{start + i * step:%Y%m%dT%H%M}",
                       f"tick {i} of {ticks}: {start + i * step:%Y-%m-%d %H:%M}Z",
                       tick_at(start + i * step)) for i in range(1, ticks + 1)]
    steps += [DemoStep("backtest", "walk-forward backtest of the three months before", backtest),
              DemoStep("sweep", "a small parameter sweep over the same months", sweep),
              DemoStep("report", "the offline report index", report)]
    return steps


def run_demo(as_of: str, ticks: int, state: Path, outputs: Path, fresh: bool = False) -> bool:
    """Run the demo's steps with a progress bar, skipping those a previous run of the same
    plan finished; print each step's line, the open positions and where to look.

    Returns
    -------
    bool
        True when every step finished.
    """
    console = Console()
    start = parse_time(as_of)
    state = project_path(state)  # the same folder the params' state_dir resolves to
    record = state / DEMO_PROGRESS
    progress = _load_progress(record)
    if fresh or progress.get("plan") != _plan_of(start, ticks):
        if state.exists():
            shutil.rmtree(state)
        progress = {"plan": _plan_of(start, ticks), "done": {}}
    elif progress.get("done"):
        console.print(f"[bold]resuming[/bold]: {len(progress['done'])} steps already done "
                      f"(recorded in {record}; --fresh starts over)")
    state.mkdir(parents=True, exist_ok=True)
    params_file = demo_params(state)
    done: dict[str, str] = progress.setdefault("done", {})
    steps = demo_steps(start, ticks, params_file, outputs, console)

    ok = True
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("demo", total=len(steps), completed=sum(s.key in done for s in steps))
        for s in steps:
            if s.key in done:
                continue
            bar.update(task, description=s.title)
            console.rule(s.title)
            try:
                line = s.run()
            except DemoStepFailed as e:
                console.print(f"[red]{e}[/red]", soft_wrap=True)
                ok = False
                break
            console.print(line, soft_wrap=True)
            done[s.key] = line
            _save_progress(record, progress)
            bar.advance(task)

    _print_positions(state, console)
    index = project_path(outputs) / "index.html"
    console.rule("where to look")
    console.print(f"reports: {index} (open it in a browser; works offline)", soft_wrap=True)
    console.print("notebooks: make lab (JupyterLab on 127.0.0.1)")
    if not ok:
        console.print("[red]the demo stopped at a failed step; run it again to continue[/red]")
    return ok


def _print_positions(state: Path, console: Console) -> None:
    """The open positions and the equity path of the demo's store."""
    from pairlib.edges.store import Store
    from pairlib.engine.tick_result import positions_frame

    if not (state / "pairlib.db").exists():
        return
    with Store.at(state) as db:
        positions = positions_frame(db.pair_states())
        positions = positions[positions["position"] != 0]
        equity = db.equity_history()[["tick_as_of", "equity"]]
    table = Table(title="open positions after the replay")
    for col in ("pair (y~x)", "side", "amount y", "amount x", "entry z", "entered"):
        table.add_column(col, no_wrap=True)
    for r in positions.itertuples(index=False):
        table.add_row(
            str(r.pair_id).replace("/USDT:USDT", ""),
            "long spread" if r.position > 0 else "short spread",
            f"{r.amount_y:g}", f"{r.amount_x:g}", f"{r.entry_z:+.2f}", str(r.entry_time)[:16],
        )
    console.print(table)
    if len(equity):
        console.print(f"equity: {equity.equity.iloc[0]:.2f} -> {equity.equity.iloc[-1]:.2f} USDT")
