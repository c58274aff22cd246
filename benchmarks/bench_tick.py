"""The live tick: library call, notebook end to end, import time.

Setup: the simulated exchange (10 planted pairs) served in this process on 127.0.0.1, a pair
set of its 10 planted pairs, params with the venue's production settings (nothing patched).

* ``tick library call, warm cache``: ``pairlib.tick.run`` on a fresh store for a candle
  whose closes are already in the Parquet cache (best of 3). Target <= 0.5 s.
* ``tick library call, next candle``: the following ticks, each fetching one new candle per
  symbol and trading (median of 4; for information).
* ``tick notebook / empty notebook``: papermill (in this process, imported once) running
  ``notebooks/tick.ipynb`` (a fresh store, warm cache) over papermill running an empty
  notebook on the same kernel, best of 2 each. Target <= 1.5. Also, for information, the
  same from the command line: ``pairlib tick`` over ``papermill empty.ipynb``.
* ``import pairlib.tick``: in a fresh interpreter, minus the interpreter's own start-up; the
  tick's import path must not load papermill, plotly or statsmodels.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat
import pandas as pd
import yaml
from nbformat.v4 import new_code_cell, new_notebook

from benchmarks.common import Row

if TYPE_CHECKING:
    from pairlib.config import TradingParams
    from pairlib.sim import Market, SimServer

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("papermill", "plotly", "statsmodels")


def _setup(tmp: Path) -> tuple[Market, SimServer, Path]:
    from pairlib.config import TradingParams, validate_params
    from pairlib.sim import GENESIS, Market, MarketSpec, SimServer

    market = Market(MarketSpec(seed=7, n_symbols=48, n_pairs=10))
    start = GENESIS + timedelta(days=400)
    server = SimServer(market, tmp / "sim.json", now=start)
    url = server.start()
    raw = {
        "venue": {"kind": "sim", "sim_url": url, "sim_state": str(tmp / "sim.json")},
        "data": {"cache_dir": str(tmp / "data")},
        "risk": {"risk_per_trade": 0.005, "max_positions": 10, "max_gross_leverage": 6.0,
                 "kill_switch_file": None},
        "state_dir": str(tmp / "state"),
    }
    params = validate_params(raw, TradingParams)
    path = tmp / "trading.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    return market, server, path


def _pairs(market: Market) -> pd.DataFrame:
    return pd.DataFrame([{"y": market.unified(g.y), "x": market.unified(g.x),
                          "beta": g.beta, "alpha": g.alpha} for g in market.ground_truth])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    res = fn()
    assert getattr(res, "ok", True), getattr(res, "error", None)
    return time.perf_counter() - t0


def _fresh_params(tmp: Path, params: TradingParams, market: Market, start: datetime,
                  tag: str) -> Path:
    """A params file with its own state folder holding the pair set (a first tick)."""
    from pairlib.store import Store

    raw = params.model_dump(mode="json")
    raw["state_dir"] = str(tmp / f"state-{tag}")
    path = tmp / f"trading-{tag}.yaml"
    path.write_text(yaml.safe_dump(raw))
    with Store.at(tmp / f"state-{tag}") as db:
        db.save_pair_set(start, "bench", _pairs(market), None, start)
    return path


def _tick_notebook(tmp: Path, params: TradingParams, market: Market, start: datetime,
                   k: int) -> Any:
    from pairlib.runner import run_notebook

    path = _fresh_params(tmp, params, market, start, f"nb{k}")
    out = tmp / "out" / f"tick-{k}.ipynb"
    return run_notebook(ROOT / "notebooks" / "tick.ipynb", out,
                        {"as_of": start.isoformat(), "params_file": str(path), "live": False,
                         "notebook_path": str(out)}, cwd=tmp)


def _import_time() -> tuple[float, list[str]]:
    code = ("import sys, time; t = time.perf_counter(); import pairlib.tick; "
            "print(time.perf_counter() - t); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    times, heavy = [], ""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout.splitlines()
        times.append(float(out[0]))
        heavy = out[1] if len(out) > 1 else ""
    return min(times), [m for m in heavy.split(",") if m]


def run() -> list[Row]:
    """Measure; see the module docstring."""
    from pairlib import tick
    from pairlib.clock import SettableClock
    from pairlib.config import TradingParams, load_params
    from pairlib.runner import run_notebook
    from pairlib.sim import GENESIS
    from pairlib.store import Store

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        market, server, params_file = _setup(tmp)
        params = load_params(params_file, TradingParams)
        start = GENESIS + timedelta(days=400) + timedelta(hours=28)
        bar = timedelta(hours=4)
        clock = SettableClock(start)
        try:
            server.set_now(start)

            def fresh_tick(k: int) -> tuple[float, int]:
                """A first tick on a fresh account and store (untimed set-up)."""
                from pairlib.sim import SimServer

                sim = SimServer(market, tmp / f"sim-{k}.json", now=start)
                url = sim.start()
                p = params.model_copy(update={"venue": params.venue.model_copy(
                    update={"sim_url": url})})
                try:
                    with Store(tmp / f"fresh-{k}.db") as db:
                        db.save_pair_set(start, "bench", _pairs(market), None, start)
                        t0 = time.perf_counter()
                        r = tick.run(p, start, store=db, clock=clock)
                        elapsed = time.perf_counter() - t0
                        assert r.status == "ok", r.error
                        return elapsed, len(r.orders)
                finally:
                    sim.stop()

            fresh_tick(0)  # fills the candle cache
            runs = [fresh_tick(k) for k in (1, 2, 3)]
            warm = min(t for t, _ in runs)
            rows.append(Row("tick library call, 10 pairs, warm cache", warm, "s", "<= 0.5 s",
                            warm <= 0.5, f"sim over loopback, {runs[0][1]} orders placed"))

            with Store.at(params.state_dir) as db:
                db.save_pair_set(start, "bench", _pairs(market), None, start)
                tick.run(params, start, store=db, clock=clock)
                times = []
                for i in range(1, 5):
                    when = start + i * bar
                    server.set_now(when)
                    clock.set(when)
                    t0 = time.perf_counter()
                    r = tick.run(params, when, store=db, clock=clock)
                    times.append(time.perf_counter() - t0)
                    assert r.status == "ok", r.error
            med = statistics.median(times)
            rows.append(Row("tick library call, next candle (fetch + trade)", med, "s",
                            "info", True, f"median of {len(times)}"))

            empty = tmp / "empty.ipynb"
            nb = new_notebook(cells=[new_code_cell("pass")])
            nb.metadata = {"kernelspec": {"display_name": "pairlib", "language": "python",
                                          "name": "pairlib"}}
            nbformat.write(nb, empty)
            run_notebook(empty, tmp / "out" / "warm-up.ipynb", {}, cwd=tmp)  # papermill import
            t_empty = min(_timed(partial(run_notebook, empty, tmp / "out" / f"empty-{k}.ipynb",
                                         {}, cwd=tmp)) for k in range(2))
            server.set_now(start)
            t_tick = min(_timed(partial(_tick_notebook, tmp, params, market, start, k))
                         for k in range(2))
            ratio = t_tick / t_empty
            rows.append(Row("tick notebook / empty notebook (papermill, in-process)", ratio, "x",
                            "<= 1.5", ratio <= 1.5, f"{t_tick:.2f} s vs {t_empty:.2f} s"))

            cli_empty = _timed(lambda: subprocess.run(
                [str(Path(sys.executable).with_name("papermill")), "--no-progress-bar", "-k",
                 "pairlib", str(empty), str(tmp / "out" / "empty-cli.ipynb")],
                check=True, capture_output=True, cwd=tmp))
            cli_params = _fresh_params(tmp, params, market, start, "cli")
            cli_tick = _timed(lambda: subprocess.run(
                [str(Path(sys.executable).with_name("pairlib")), "tick", "--params",
                 str(cli_params), "--as-of", start.isoformat(), "--outputs",
                 str(tmp / "out-cli")], check=True, capture_output=True, cwd=tmp))
            rows.append(Row("`pairlib tick` / `papermill empty.ipynb` (CLI)", cli_tick / cli_empty,
                            "x", "info", True, f"{cli_tick:.2f} s vs {cli_empty:.2f} s"))
        finally:
            server.stop()

    t_import, heavy = _import_time()
    rows.append(Row("import pairlib.tick", t_import, "s", "no papermill/plotly/statsmodels",
                    not heavy, "loaded: " + (", ".join(heavy) or "none of them")))
    return rows
