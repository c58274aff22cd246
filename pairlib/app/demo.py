"""The offline demo and the data summary, printed with rich.

The demo runs the main job end to end on the simulated exchange, in its own state folder
(reset at the start of each demo run, so a second run replays the same day): fetch and
quality-check the universe's candles, generate a pair set with the pairs notebook, then
replay a day of 4h ticks as executed notebooks, the simulator's clock advanced between them.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from pairlib.clock import parse_time
from pairlib.config import (
    PARAMS_FILE,
    load_params,
    project_path,
    timeframe_ms,
    validate_params,
)

__all__ = ["data_summary", "demo_params", "run_demo"]


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


def run_demo(as_of: str, ticks: int, state: Path, outputs: Path) -> bool:
    """Run the demo; print every notebook path and the resulting positions.

    Returns
    -------
    bool
        True when every notebook ran.
    """
    from pairlib.app.jobs import run_pairs_job, run_tick_job
    from pairlib.edges.store import Store
    from pairlib.engine.tick_result import positions_frame

    console = Console()
    start = parse_time(as_of)
    state = project_path(state)  # the same folder the params' state_dir resolves to
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    params_file = demo_params(state)

    console.rule("1. market data from the simulated exchange")
    data_summary(params_file, start, console)

    console.rule("2. pair generation")
    res = run_pairs_job(params_file, start, outputs)
    console.print(f"pairs notebook: {res.path}  ({res.duration_s:.1f} s)")
    if not res.ok:
        console.print(f"[red]pair generation failed: {res.error}[/red]")
        return False
    chosen = res.scraps.get("chosen_pairs")
    console.print(f"pair set #{res.scraps.get('pair_set_id')}: "
                  f"{0 if chosen is None else len(chosen)} pairs chosen")

    console.rule(f"3. a replay of {ticks} 4h ticks")
    step = timedelta(milliseconds=timeframe_ms(load_params(params_file).data.timeframe))
    ok = True
    for i in range(1, ticks + 1):
        when = start + i * step
        tick = run_tick_job(params_file, when, outputs)
        sc = tick.scraps
        status = sc.get("status", "failed" if not tick.ok else "?")
        signals = sc.get("signals")
        acted = (
            []
            if signals is None
            else [f"{r.pair_id} {r.action}" for r in signals.itertuples()
                  if r.action not in ("none", "hold")]
        )
        console.print(
            f"tick {when:%Y-%m-%d %H:%M}Z  {status}  {sc.get('mode', '')}  "
            f"orders {sc.get('n_orders', 0)}  equity {sc.get('equity', float('nan')):.2f}  "
            f"{'; '.join(acted) or 'no action'}",
            soft_wrap=True,
        )
        console.print(f"  report: {tick.path}", soft_wrap=True)
        if not tick.ok:
            console.print(f"[red]tick failed: {tick.error}[/red]")
            ok = False

    with Store.at(state) as db:
        states = db.pair_states()
        positions = positions_frame(states)
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
    return ok
