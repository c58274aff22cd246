"""The live tick: library call, notebook end to end, import time.

Setup: the simulated exchange (10 planted pairs) served in this process on 127.0.0.1, a pair
set of its 10 planted pairs, params with the venue's production settings (nothing patched).

* ``tick library call, warm cache``: ``pairlib.engine.tick.run`` on a fresh store for a candle
  whose closes are already in the Parquet cache (best of 3). Target <= 0.5 s.
* ``tick library call, next candle``: the following ticks, each fetching one new candle per
  symbol and trading (median of 4; for information).
* ``tick notebook / empty notebook, papermill end to end``: the ``papermill`` command running
  ``notebooks/tick.ipynb`` (a fresh account and store, warm cache, 10 pairs trading) over the
  ``papermill`` command running an empty notebook on the same kernel, best of 3 each.
  Target <= 1.5. For information: the floor, a notebook that only imports pandas, ccxt and
  ``pairlib.engine.tick`` (importing them, and the kernel's exit tearing them down, cost more than
  the
  target leaves); the same ratio with papermill imported once in this process (kernel start and
  notebook only); and ``pairlib tick`` over ``papermill empty.ipynb``.
* ``import pairlib.engine.tick``: in a fresh interpreter, minus the interpreter's own start-up; the
  tick's import path must not load papermill, plotly or statsmodels.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

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
FLOOR_CODE = "import pandas, ccxt, pairlib.engine.tick"
"""What any tick notebook must import: the data frames, the one exchange client, the tick."""


def _setup(tmp: Path) -> tuple[Market, TradingParams]:
    """The simulated market (10 planted pairs) and production params (nothing patched)."""
    from pairlib.config import TradingParams, validate_params
    from pairlib.sim import Market, MarketSpec

    market = Market(MarketSpec(seed=7, n_symbols=48, n_pairs=10))
    raw = {
        "venue": {"kind": "sim", "sim_url": "http://127.0.0.1:1"},  # replaced per account
        "data": {"cache_dir": str(tmp / "data")},
        "risk": {"risk_per_trade": 0.005, "max_positions": 10, "max_gross_leverage": 6.0,
                 "kill_switch_file": None},
        "state_dir": str(tmp / "state"),
    }
    return market, validate_params(raw, TradingParams)


def _pairs(market: Market) -> pd.DataFrame:
    return pd.DataFrame([{"y": market.unified(g.y), "x": market.unified(g.x),
                          "beta": g.beta, "alpha": g.alpha} for g in market.ground_truth])


def _account(stack: ExitStack, tmp: Path, market: Market, params: TradingParams,
             start: datetime, tag: str) -> tuple[SimServer, TradingParams, Path]:
    """A fresh simulated account on its own loopback server, and a params file whose state
    folder holds the pair set of the 10 planted pairs: the tick then opens positions."""
    from pairlib.edges.store import Store
    from pairlib.sim import SimServer

    server = SimServer(market, tmp / f"sim-{tag}.json", now=start)
    url = server.start()
    stack.callback(server.stop)
    state = tmp / f"state-{tag}"
    p = params.model_copy(update={
        "venue": params.venue.model_copy(update={"sim_url": url,
                                                 "sim_state": str(tmp / f"sim-{tag}.json")}),
        "state_dir": state})
    path = tmp / f"trading-{tag}.yaml"
    path.write_text(yaml.safe_dump(p.model_dump(mode="json")))
    with Store.at(state) as db:
        db.save_pair_set(start, "bench", _pairs(market), None, start)
    return server, p, path


def _best(runs: list[tuple[float, int]], what: str) -> float:
    """Best time of runs that each placed orders (a tick that traded nothing is no figure)."""
    assert all(n > 0 for _, n in runs), f"{what}: a run placed no orders: {runs}"
    return min(t for t, _ in runs)


def _import_time() -> tuple[float, list[str]]:
    code = ("import sys, time; t = time.perf_counter(); import pairlib.engine.tick; "
            "print(time.perf_counter() - t); "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    times, heavy = [], ""
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=ROOT).stdout.splitlines()
        times.append(float(out[0]))
        heavy = out[1] if len(out) > 1 else ""
    return min(times), [m for m in heavy.split(",") if m]


def _empty_notebook(path: Path, code: str = "pass") -> Path:
    nb = new_notebook(cells=[new_code_cell(code)])
    nb.metadata = {"kernelspec": {"display_name": "pairlib", "language": "python",
                                  "name": "pairlib"}}
    nbformat.write(nb, path)
    return path


def _cli(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, cwd=cwd)
    return time.perf_counter() - t0


def run() -> list[Row]:
    """Measure; see the module docstring."""
    from pairlib.app.runner import ensure_kernel, read_scraps, run_notebook
    from pairlib.clock import SettableClock
    from pairlib.edges.store import Store
    from pairlib.engine import tick
    from pairlib.sim import GENESIS

    rows: list[Row] = []
    start = GENESIS + timedelta(days=400) + timedelta(hours=28)
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as d, ExitStack() as stack:
        tmp = Path(d)
        market, params = _setup(tmp)
        clock = SettableClock(start)
        counter = iter(range(1000))

        def account() -> tuple[SimServer, TradingParams, Path]:
            return _account(stack, tmp, market, params, start, f"a{next(counter)}")

        def library_tick() -> tuple[float, int]:
            _, p, _ = account()
            with Store.at(p.state_dir) as db:
                t0 = time.perf_counter()
                r = tick.run(p, start, store=db, clock=clock)
                elapsed = time.perf_counter() - t0
            assert r.status == "ok", r.error
            return elapsed, len(r.orders)

        library_tick()  # fills the candle cache
        warm = _best([library_tick() for _ in range(3)], "library tick")
        rows.append(Row("tick library call, 10 pairs, warm cache", warm, "s", "<= 0.5 s",
                        warm <= 0.5, "sim over loopback, fresh account"))

        server, p, _ = account()
        times = []
        with Store.at(p.state_dir) as db:
            tick.run(p, start, store=db, clock=clock)
            for i in range(1, 5):
                when = start + i * timedelta(hours=4)
                server.set_now(when)
                clock.set(when)
                t0 = time.perf_counter()
                r = tick.run(p, when, store=db, clock=clock)
                times.append(time.perf_counter() - t0)
                assert r.status == "ok", r.error
        rows.append(Row("tick library call, next candle (fetch + trade)",
                        statistics.median(times), "s", "info", True,
                        f"median of {len(times)}"))

        empty = _empty_notebook(tmp / "empty.ipynb")
        tick_nb = ROOT / "notebooks" / "tick.ipynb"
        out = tmp / "out"
        kernel = ensure_kernel()

        def notebook_tick(k: int) -> tuple[float, int]:
            _, _, path = account()
            target = out / f"tick-{k}.ipynb"
            t0 = time.perf_counter()
            res = run_notebook(tick_nb, target, {"as_of": start.isoformat(),
                                                 "params_file": str(path), "trade": True,
                                                 "notebook_path": str(target)}, cwd=tmp)
            elapsed = time.perf_counter() - t0
            assert res.ok, res.error
            return elapsed, int(res.scraps["n_orders"])

        run_notebook(empty, out / "warm-up.ipynb", {}, cwd=tmp)  # papermill imported once
        def notebook_empty(k: int) -> float:
            t0 = time.perf_counter()
            res = run_notebook(empty, out / f"empty-{k}.ipynb", {}, cwd=tmp)
            assert res.ok, res.error
            return time.perf_counter() - t0

        t_empty = min(notebook_empty(k) for k in range(3))
        t_tick = _best([notebook_tick(k) for k in range(3)], "notebook tick")

        papermill = [str(bin_dir / "papermill"), "--no-progress-bar", "-k", kernel]
        cli_empty = min(_cli([*papermill, str(empty), str(out / f"empty-cli-{k}.ipynb")], tmp)
                        for k in range(3))

        def cli_tick(k: int) -> tuple[float, int]:
            _, _, path = account()
            target = out / f"tick-cli-{k}.ipynb"
            elapsed = _cli([*papermill, str(tick_nb), str(target), "-p", "as_of",
                            start.isoformat(), "-p", "params_file", str(path),
                            "-p", "notebook_path", str(target), "-p", "trade", "True"], tmp)
            return elapsed, int(read_scraps(target)["n_orders"])

        t_cli = _best([cli_tick(k) for k in range(3)], "papermill tick")
        ratio = t_cli / cli_empty
        rows.append(Row("tick notebook / empty notebook, papermill end to end", ratio, "x",
                        "<= 1.5", ratio <= 1.5, f"{t_cli:.2f} s vs {cli_empty:.2f} s"))
        floor = _empty_notebook(tmp / "imports.ipynb", FLOOR_CODE)
        t_floor = min(_cli([*papermill, str(floor), str(out / f"imports-cli-{k}.ipynb")], tmp)
                      for k in range(3))
        rows.append(Row("floor: notebook that only imports the tick / empty, papermill",
                        t_floor / cli_empty, "x", "info", True,
                        f"{t_floor:.2f} s vs {cli_empty:.2f} s ({FLOOR_CODE})"))
        rows.append(Row("same, papermill imported once (kernel + notebook only)",
                        t_tick / t_empty, "x", "info", True,
                        f"{t_tick:.2f} s vs {t_empty:.2f} s"))

        def pairlib_tick(k: int) -> tuple[float, int]:
            _, _, path = account()
            folder = tmp / f"out-pairlib-{k}"
            elapsed = _cli([str(bin_dir / "pairlib"), "tick", "--params", str(path),
                            "--as-of", start.isoformat(), "--outputs", str(folder)], tmp)
            (report,) = folder.rglob("*-tick.ipynb")
            return elapsed, int(read_scraps(report)["n_orders"])

        t_pairlib = _best([pairlib_tick(k) for k in range(2)], "pairlib tick")
        rows.append(Row("`pairlib tick` / `papermill empty.ipynb`", t_pairlib / cli_empty, "x",
                        "info", True, f"{t_pairlib:.2f} s vs {cli_empty:.2f} s"))

    t_import, heavy = _import_time()
    rows.append(Row("import pairlib.engine.tick", t_import, "s", "no papermill/plotly/statsmodels",
                    not heavy, "loaded: " + (", ".join(heavy) or "none of them")))
    return rows

