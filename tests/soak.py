"""The simulated year (issue 12 §6): a library the soak tests and ``make soak`` run.

A campaign replays ``N`` 4h ticks, one per bar from :data:`START`, against the simulated
exchange running **in its own process** (this file's ``serve`` command: a
:class:`~pairlib.sim.server.SimServer` on 127.0.0.1, reached through ``venue.sim_url`` by the
real ccxt client). Pair generation runs at every month's first bar (monthly pair sets,
``selection.top_k`` = the market's planted pairs, 20 in the year), then the tick.

Processes
---------
* **simulator** -- ``python tests/soak.py serve``: the market of :func:`soak_market_spec`
  (planted pairs with half-lives the strategy can trade, so the pair sets are full enough),
  random faults armed over HTTP (``POST /sim/faults {"random_faults": ...}``, see
  :meth:`pairlib.sim.faults.Faults.random_faults`): about ``fault_rate`` of all exchange
  requests get a latency spike, a 5xx, a timeout, a 429, maintenance, or (orders only) a
  rejection, a partial fill, a lost response or a late booking.
* **worker** -- ``python tests/soak.py worker PARAMS_JSON``: a long-lived process that runs
  ``pairlib.engine.generate.run`` and ``pairlib.engine.tick.run`` in-process, one JSON
  command per stdin line (what ``pairlib tick`` runs, without its papermill report, which
  costs seconds per tick: a year of report notebooks would take hours). The driver SIGKILLs
  it about every ``kill_every`` ticks, alternately (a) through ``PAIRLIB_FAILPOINT`` (the
  worker kills itself at a named point: :data:`KILL_POINTS`) and (b) with ``os.kill`` from
  the driver at a random delay into the tick; then a fresh worker reruns the same tick.
* **driver** -- :func:`run_soak` (the test process): advances the simulator's clock, sends
  the commands, kills and restarts, and after every tick that returned checks the store
  against the venue per symbol, for naked legs and for orders whose outcome is unknown.

A tick that ends ``degraded`` or ``failed`` (faults can leave an order unknown or a close
incomplete at its end) is rerun for the same bar, as the operator or the scheduler would,
at most :data:`MAX_RERUNS` times; every tick end counts towards the figures, and the minutes
of naked exposure count each tick end with a naked leg, an unknown order or a mismatch as
exposed until the next tick end.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np

from pairlib.sim import GENESIS
from pairlib.sim.market import MarketSpec

__all__ = ["BAR", "KILL_POINTS", "START", "SoakReport", "SoakSpec", "backtest_equity",
           "run_soak", "soak_market_spec", "soak_params"]

SOAK_FILE = Path(__file__).resolve()
START = GENESIS + timedelta(days=400)  # 2025-02-04 00:00 UTC: enough history for formation
BAR = timedelta(hours=4)
MAX_RERUNS = 3
"""Reruns of a bar whose tick ended degraded or failed (after a kill, one more is allowed)."""

KILL_POINTS = (
    "tick.after_start", "tick.after_resolve_pending", "tick.after_reconcile",
    "tick.after_plan", "tick.after_closes", "tick.after_entries", "tick.after_finish",
    "tick.after_account", "tick.before_commit", "tick.after_commit",
    "tick.exit_after_closing_mark", "tick.exit_before_flat", "tick.entry_before_persist",
    "exec.order_planned", "exec.before_send", "exec.after_send", "exec.fill_before_store",
    "exec.after_fill_store", "exec.between_legs", "exec.after_close_leg",
    "store.before_fill_commit",
)
"""Failpoints a soak kill may pick (those a tick with orders passes); a point not reached by
one tick stays armed in the same worker until a later tick reaches it."""

_REPLY_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class SoakSpec:
    """One campaign.

    Attributes
    ----------
    ticks : int
        4h bars replayed from ``start``.
    n_pairs : int
        Planted pairs of the market, and ``selection.top_k``.
    fault_rate : float
        Probability that an exchange request gets a random fault.
    kill_every : int
        Mean ticks between two SIGKILLs (each gap drawn from 0.5 to 1.5 times it).
    seed : int
        Seeds the kill schedule, the kill points and delays, and the simulator's fault draw.
    n_symbols, market_seed : int
        The simulated universe.
    start : datetime
        The first tick (a 4h close).
    """

    ticks: int
    n_pairs: int = 20
    fault_rate: float = 0.01
    kill_every: int = 100
    seed: int = 2026
    n_symbols: int = 48
    market_seed: int = 7
    start: datetime = START

    @property
    def end(self) -> datetime:
        """The last tick."""
        return self.start + (self.ticks - 1) * BAR


@dataclass
class SoakReport:
    """What a campaign did and found (see :meth:`markdown`)."""

    spec: SoakSpec
    ticks_run: int = 0
    tick_runs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reruns: int = 0
    generations: int = 0
    pairs_per_set: list[int] = field(default_factory=list)
    orders: int = 0
    fills: int = 0
    venue_orders: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    kills_by: Counter[str] = field(default_factory=Counter)
    kills_missed: int = 0
    inconsistencies: list[str] = field(default_factory=list)
    duplicate_client_ids: list[str] = field(default_factory=list)
    orders_unknown_to_store: list[str] = field(default_factory=list)
    naked_minutes: float = 0.0
    exposed_tick_ends: list[str] = field(default_factory=list)
    incidents: Counter[str] = field(default_factory=Counter)
    live_equity: float = float("nan")
    backtest_equity: float = float("nan")
    live_trades: int = 0
    backtest_trades: int = 0
    elapsed_s: float = 0.0

    @property
    def faults_injected(self) -> int:
        """Every random fault the simulator injected."""
        return int(sum(self.faults.values()))

    def markdown(self, title: str) -> str:
        """The campaign's figures as a Markdown section for ``docs/RELIABILITY.md``."""
        s = self.spec
        diff = self.live_equity - self.backtest_equity
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        kill_kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.kills_by.items())) or "none"
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        incidents = ", ".join(f"{k} {v}" for k, v in sorted(self.incidents.items())) or "none"
        sets = self.pairs_per_set or [0]
        return "\n".join([
            f"### {title}",
            "",
            f"{s.ticks:,} 4h ticks from {s.start:%Y-%m-%d} to {s.end:%Y-%m-%d %H:%MZ} against "
            f"the simulator in its own process over the real ccxt client ({s.n_symbols} "
            f"symbols, {s.n_pairs} planted pairs, `selection.top_k` {s.n_pairs}, a pair set "
            f"each month), random faults on {s.fault_rate:.0%} of requests, a SIGKILL of the "
            f"tick process about every {s.kill_every} ticks followed by a rerun "
            f"(`tests/soak.py`, seed {s.seed}). Ran in {self.elapsed_s / 60:.1f} min.",
            "",
            "| figure | value |",
            "|---|---|",
            f"| ticks run (bars) | {self.ticks_run:,} |",
            f"| tick runs (with reruns after kills and non-ok ends) | {self.tick_runs:,} |",
            f"| tick ends by status | {statuses} |",
            f"| pair generations (pairs per set: min / mean / max) | {self.generations} "
            f"({min(sets)} / {np.mean(sets):.1f} / {max(sets)}) |",
            f"| orders (store) / booked at the venue | {self.orders:,} / "
            f"{self.venue_orders:,} |",
            f"| fills | {self.fills:,} |",
            f"| faults injected | {self.faults_injected:,} ({kinds}) |",
            f"| kills (SIGKILL mid-tick) | {self.kills} ({kill_kinds}) |",
            f"| timer kills that landed after the tick had ended | {self.kills_missed} |",
            f"| inconsistencies, store vs venue per symbol at tick ends (must be 0) | "
            f"{len(self.inconsistencies)} |",
            f"| duplicate client ids at the venue (must be 0) | "
            f"{len(self.duplicate_client_ids)} |",
            f"| venue orders the store does not know (must be 0) | "
            f"{len(self.orders_unknown_to_store)} |",
            f"| minutes of naked exposure at tick ends (must be 0) | "
            f"{self.naked_minutes:,.0f} |",
            f"| incidents recorded by the ticks | {incidents} |",
            f"| final equity, live | {self.live_equity:,.2f} USDT |",
            f"| final equity, backtest over the same bars | {self.backtest_equity:,.2f} USDT |",
            f"| difference | {diff:+,.2f} USDT ({diff / self.backtest_equity:+.2%}) |",
            f"| completed trades, live / backtest | {self.live_trades} / "
            f"{self.backtest_trades} |",
            "",
            "Live and backtest take the same rules on the same bars; the live book differs "
            "where a fault or a kill moved a fill: a partial fill completed by a remainder "
            "order, a lost or late-booked order resolved by look-ups, a rejected leg unwound, "
            "an interrupted entry resumed or flattened by the rerun, each filling at the "
            "simulator's price of that moment with its own fees, instead of the backtest's "
            "one fill at the close plus slippage; and the venue marks open positions at its "
            "mark price where the backtest uses the close.",
        ])


# ----------------------------------------------------------------------------- setup

def soak_market_spec(spec: SoakSpec) -> MarketSpec:
    """The soak's market: ``n_pairs`` planted pairs with half-lives from 3 to 24 bars (the
    strategy's 60-bar z window trades them), some breaking down (stops)."""
    return MarketSpec(seed=spec.market_seed, n_symbols=spec.n_symbols, n_pairs=spec.n_pairs,
                      half_lives=tuple(float(h) for h in np.geomspace(3, 24, spec.n_pairs)))


def soak_params(tmp: Path, url: str, spec: SoakSpec) -> Any:
    """The campaign's params: state, cache and kill file under ``tmp``; short venue timeouts
    (1 s per request, a 2 s recvWindow) so that injected timeouts cost seconds, not
    minutes; ``selection.top_k`` = ``n_pairs``."""
    from tick_fixtures import trading_params

    return trading_params(
        tmp, url,
        venue={"timeout_ms": 1000, "recv_window_ms": 2000, "max_retries": 3,
               "sim_seed": spec.market_seed, "sim_symbols": spec.n_symbols},
        data={"universe_size": spec.n_symbols},
        selection={"top_k": spec.n_pairs},
        risk={"risk_per_trade": 0.01, "max_positions": 10, "max_gross_leverage": 4.0},
    )


def _http(url: str, body: Mapping[str, Any] | None = None) -> Any:
    """GET (or POST ``body`` as JSON to) a simulator admin endpoint; the parsed answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@contextmanager
def simulator(tmp: Path, spec: SoakSpec) -> Iterator[str]:
    """Run the soak's simulator in its own process; yields its URL, stops it after."""
    log = open(tmp / "sim.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, str(SOAK_FILE), "serve", str(tmp / "sim_state.json"),
         spec.start.isoformat(), str(spec.market_seed), str(spec.n_symbols),
         str(spec.n_pairs)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the soak simulator did not start: {line!r}; see "
                               f"{tmp / 'sim.log'}")
        yield line.removeprefix("listening on ")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()
        log.close()


class Worker:
    """A tick worker process (``tests/soak.py worker``), optionally armed with a failpoint
    that makes it SIGKILL itself."""

    def __init__(self, params_file: Path, log: IO[str], failpoint: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "PAIRLIB_FAILPOINT"}
        if failpoint:
            env["PAIRLIB_FAILPOINT"] = failpoint
        self.failpoint = failpoint
        self.proc = subprocess.Popen(
            [sys.executable, str(SOAK_FILE), "worker", str(params_file)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env)

    def send(self, op: str, when: datetime) -> None:
        """Send one command (``tick`` or ``generate`` for ``when``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, "as_of": when.isoformat()}) + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout_s: float = _REPLY_TIMEOUT_S) -> dict[str, Any] | None:
        """The answer to the last command; None if the worker died (killed) first, or
        nothing came within ``timeout_s`` (``{}``)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            return {}
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            return None
        got: dict[str, Any] = json.loads(line)
        return got

    def kill(self) -> None:
        """SIGKILL the worker and reap it (its pipes are closed by :meth:`close`)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def close(self) -> None:
        """End the worker (closing its input ends its loop) and close its pipes; also
        after it was killed."""
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with suppress(BrokenPipeError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        for f in (self.proc.stdin, self.proc.stdout):
            if f is not None and not f.closed:
                with suppress(BrokenPipeError):  # unflushed input to a killed worker
                    f.close()


# ----------------------------------------------------------------------------- checks

def _venue_id(symbol: str) -> str:
    """The simulator's id of a unified symbol (``GRT/USDT:USDT`` -> ``GRTUSDT``)."""
    return symbol.split("/")[0] + "USDT"


def check_tick_end(store: Any, url: str, when: datetime, steps: Mapping[str, float]) -> list[str]:
    """What is exposed or inconsistent at a tick's end: a symbol where the store's expected
    position differs from the venue's by half an amount step or more, a pair holding one
    leg only, an order whose outcome is unknown (``sent``/``unknown``). Empty when the
    book is hedged and matches the venue."""
    from pairlib.engine.reconcile import expected_positions

    problems: list[str] = []
    states = store.pair_states()
    expected = expected_positions(states, store.accepted_positions())
    venue = {p["symbol"]: float(p["amount"])
             for p in _http(f"{url}/sim/account")["positions"]}
    by_id = {_venue_id(s): (s, amt) for s, amt in expected.items()}
    for vid in set(by_id) | set(venue):
        sym, want = by_id.get(vid, (vid, 0.0))
        have = venue.get(vid, 0.0)
        tol = 0.5 * steps.get(sym, 1e-9)
        if abs(have - want) >= max(tol, 1e-12):
            problems.append(f"{when:%Y-%m-%dT%H:%MZ} {sym}: store {want:+.10g}, venue "
                            f"{have:+.10g}")
    for r in states.to_dict("records"):
        if (float(r["amount_y"]) == 0.0) != (float(r["amount_x"]) == 0.0):
            problems.append(f"{when:%Y-%m-%dT%H:%MZ} naked leg of {r['pair_id']}: "
                            f"{r['amount_y']} / {r['amount_x']}")
    orders = store.orders()
    if len(orders):
        open_ = orders[orders["status"].isin(["sent", "unknown"])]
        problems.extend(f"{when:%Y-%m-%dT%H:%MZ} order {cid} is {st}"
                        for cid, st in zip(open_["client_id"], open_["status"], strict=True))
    return problems


def venue_orders(state_file: Path) -> list[dict[str, Any]]:
    """Every order the simulator booked, read from its account file."""
    for _ in range(20):
        try:
            return list(json.loads(state_file.read_text())["orders"].values())
        except (json.JSONDecodeError, FileNotFoundError):
            time.sleep(0.1)
    raise RuntimeError(f"cannot read the simulator's account file {state_file}")


# ----------------------------------------------------------------------------- the campaign

def run_soak(spec: SoakSpec, tmp: Path, progress: Any = None) -> SoakReport:
    """Run one campaign under ``tmp``; returns its figures (the backtest comparison
    included). ``progress(k, report)`` is called after every bar when given."""
    from pairlib.edges.store import Store
    from pairlib.venue.exchange import Exchange

    t0 = time.monotonic()
    tmp.mkdir(parents=True, exist_ok=True)
    report = SoakReport(spec)
    rng = random.Random(spec.seed)
    log = open(tmp / "worker.log", "w")  # noqa: SIM115 - closed below
    with simulator(tmp, spec) as url:
        params = soak_params(tmp, url, spec)
        params_file = tmp / "params.json"
        params_file.write_text(json.dumps(params.model_dump(mode="json")))
        with Exchange.from_params(params.venue) as ex:
            steps = {s: m.amount_step for s, m in ex.markets().items()}
        _http(f"{url}/sim/faults", {"clear": True, "random_faults": {
            "rate": spec.fault_rate, "seed": spec.seed, "timeout_s": 1.5,
            "latency_s": 0.3, "late_delay_s": 0.5}})
        gaps = [max(1, round(spec.kill_every * rng.uniform(0.5, 1.5)))]
        next_kill = gaps[0] if spec.kill_every > 0 else -1
        kill_kind = 0
        durations: list[float] = []
        worker = Worker(params_file, log)
        month: tuple[int, int] | None = None
        store = Store.at(params.state_dir)
        try:
            for k in range(spec.ticks):
                t = spec.start + k * BAR
                _http(f"{url}/sim/clock", {"now": t.isoformat()})
                if month != (t.year, t.month):
                    month = (t.year, t.month)
                    worker = _generate(worker, params_file, log, t, report)
                armed_kill: str | None = None
                if k >= next_kill >= 0 and (worker.failpoint is None):
                    kill_kind += 1
                    if kill_kind % 2 == 1:
                        armed_kill = f"{rng.choice(KILL_POINTS)}:1"
                        worker.close()
                        worker = Worker(params_file, log, failpoint=armed_kill)
                    else:
                        armed_kill = "timer"
                runs = 0
                while True:
                    runs += 1
                    report.tick_runs += 1
                    started = time.monotonic()
                    worker.send("tick", t)
                    if armed_kill == "timer":
                        typical = float(np.median(durations[-50:])) if durations else 0.5
                        got = worker.reply(rng.uniform(0.02, 0.9) * typical)
                        if got == {}:  # still running: kill it mid-tick
                            worker.kill()
                            got = None
                        elif got is not None:
                            report.kills_missed += 1
                    else:
                        got = worker.reply()
                    if got is None:  # killed (by its failpoint or by the timer)
                        report.kills += 1
                        report.kills_by[(worker.failpoint or "timer:").split(":")[0]] += 1
                        armed_kill = None
                        worker.close()
                        worker = Worker(params_file, log)
                        next_kill = k + max(1, round(spec.kill_every * rng.uniform(0.5, 1.5)))
                        continue
                    if got == {}:
                        raise RuntimeError(f"tick {t} did not answer within "
                                           f"{_REPLY_TIMEOUT_S:.0f} s")
                    if armed_kill == "timer":
                        armed_kill = None
                        next_kill = k + max(1, round(spec.kill_every * rng.uniform(0.5, 1.5)))
                    durations.append(time.monotonic() - started)
                    status = str(got["status"])
                    report.statuses[status] += 1
                    report.incidents.update(got.get("incidents", []))
                    problems = check_tick_end(store, url, t, steps)
                    report.exposed_tick_ends.extend(problems)
                    report.inconsistencies.extend(p for p in problems if ": store " in p)
                    if status in ("ok", "already_ran") or runs > MAX_RERUNS:
                        break
                    report.reruns += 1
                report.ticks_run += 1
                if problems:  # exposed from this bar's last tick end to the next bar's
                    report.naked_minutes += BAR.total_seconds() / 60
                if progress is not None:
                    progress(k, report)
        finally:
            worker.close()
            log.close()
        _http(f"{url}/sim/faults", {"clear": True})
        report.faults = {k: int(v) for k, v in _http(f"{url}/sim/faults")
                         .get("random_injected", {}).items()}
        booked = venue_orders(tmp / "sim_state.json")
        ids = Counter(str(o.get("clientOrderId")) for o in booked)
        report.venue_orders = len(booked)
        report.duplicate_client_ids = sorted(c for c, n in ids.items() if n > 1)
        orders = store.orders()
        known = set(orders["client_id"]) if len(orders) else set()
        report.orders_unknown_to_store = sorted(c for c in ids if c not in known)
        report.orders = len(orders)
        report.fills = len(store.fills())
        report.live_equity = float(store.equity_history()["equity"].iloc[-1])
        report.live_trades = _live_trades(store)
        report.pairs_per_set = _pairs_per_set(store)
        store.close()
        report.backtest_equity, report.backtest_trades = backtest_equity(params, spec)
    report.elapsed_s = time.monotonic() - t0
    return report


def _generate(worker: Worker, params_file: Path, log: IO[str], t: datetime,
              report: SoakReport) -> Worker:
    """Generate the month's pair set (retried: a random fault can fail its reads)."""
    for _ in range(5):
        worker.send("generate", t)
        got = worker.reply()
        if got is None:  # an armed failpoint cannot fire here; a crash is a crash
            worker.close()
            worker = Worker(params_file, log)
            continue
        if got.get("ok"):
            report.generations += 1
            return worker
    raise RuntimeError(f"pair generation at {t} failed 5 times: {got}")


def _pairs_per_set(store: Any) -> list[int]:
    sets = store.query("SELECT pair_set_id, COUNT(*) AS n FROM pair_set_pairs "
                       "GROUP BY pair_set_id")
    return [int(n) for n in sets["n"]]


def _live_trades(store: Any) -> int:
    """Completed round trips in the store's decisions (an entry, then an exit or stop)."""
    d = store.decisions()
    open_: set[str] = set()
    done = 0
    for r in d.sort_values(["tick_as_of", "pair_id"]).to_dict("records"):
        pid, action = str(r["pair_id"]), str(r["action"])
        if action in ("enter_long", "enter_short"):
            open_.add(pid)
        elif pid in open_ and action in ("exit", "stop", "exit_no_data", "loss_limit"):
            open_.discard(pid)
            done += 1
    return done


def backtest_equity(params: Any, spec: SoakSpec) -> tuple[float, int]:
    """The backtest's equity at the soak's last bar (before it closes its open pairs) and
    its completed trades, over the same bars, market, rules and funding."""
    import inspect

    from pairlib.core.risk import MarketRules
    from pairlib.engine import backtest
    from pairlib.sim import Market
    from pairlib.venue.exchange import Exchange

    end = spec.end
    with Exchange.from_params(params.venue) as ex:
        markets = ex.markets()
        rules = {s: MarketRules(s, m.amount_step, m.min_amount, m.min_notional,
                                m.contract_size) for s, m in markets.items()}
        since, until = int((spec.start - BAR).timestamp() * 1000), int(end.timestamp() * 1000)
        extra: dict[str, Any] = {}
        if hasattr(backtest, "funding_tables") and "funding_marks" in inspect.signature(
                backtest.simulate).parameters:
            rates, marks = backtest.funding_tables(
                {s: ex.fetch_funding_rate_history(s, since, until) for s in markets})
            extra["funding_marks"] = marks
        else:
            rates = {s: ex.fetch_funding_rates(s, since, until) for s in markets}
    m = Market(soak_market_spec(spec))
    warm = params.selection.formation_bars + params.strategy.lookback
    closes = m.closes(spec.start - (warm + 5) * BAR, end)
    qv = m.quote_volumes(spec.start - (warm + 5) * BAR, end)
    names = {c: m.unified(c) for c in closes.columns}
    bt = backtest.simulate(
        params, closes.rename(columns=names), spec.start, end, rules,
        quote_volume=qv.rename(columns=names), funding_rates=rates,
        fill=backtest.FillModel(slippage_bps=params.venue.sim_slippage_bps),
        price_steps={s: mk.price_step for s, mk in markets.items()}, **extra)
    done = bt.trades[bt.trades["exit_reason"] != "end of test"]
    return float(bt.equity.iloc[-2]), len(done)


# ----------------------------------------------------------------------------- processes

def _serve(state: str, now: str, seed: str, symbols: str, pairs: str) -> None:
    """The soak's simulator process: serve until SIGTERM (as ``pairlib exchange serve``,
    with the soak's planted pairs)."""
    import threading

    from pairlib.clock import parse_time
    from pairlib.sim import Market, SimServer

    spec = SoakSpec(ticks=1, n_pairs=int(pairs), n_symbols=int(symbols),
                    market_seed=int(seed))
    server = SimServer(Market(soak_market_spec(spec)), Path(state), now=parse_time(now),
                       weight_limit=10**9)
    url = server.start()
    print(f"listening on {url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def _orphaned() -> None:  # the driver died: its end of our stdin closed
        sys.stdin.read()
        stop.set()

    threading.Thread(target=_orphaned, daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


def _worker(params_file: str) -> None:
    """The tick worker process: one JSON command per stdin line, one JSON answer per line."""
    import logging

    from pairlib.clock import SettableClock, parse_time
    from pairlib.config import TradingParams, validate_params
    from pairlib.edges.store import Store
    from pairlib.engine import generate, tick
    from pairlib.venue import exchange

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(name)s %(message)s")
    exchange._WEIGHT_PER_MINUTE["binanceusdm"] = 1e9  # the simulator allows any weight
    params = validate_params(json.loads(Path(params_file).read_text()), TradingParams)
    store = Store.at(params.state_dir)
    clock = SettableClock(START)
    for line in sys.stdin:
        cmd = json.loads(line)
        when = parse_time(cmd["as_of"])
        clock.set(when)
        answer: dict[str, Any]
        if cmd["op"] == "generate":
            try:
                g = generate.run(params, when, store=store, clock=clock)
                answer = {"ok": True, "pairs": len(g.selection.chosen)}
            except Exception as e:  # noqa: BLE001 - reported to the driver, which retries
                answer = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        else:
            r = tick.run(params, when, store=store, clock=clock)
            answer = {"status": str(r.status), "error": r.error, "mode": str(r.mode),
                      "orders": len(r.orders), "fills": len(r.fills),
                      "incidents": [str(i.get("kind")) for i in r.incidents]}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    store.close()


if __name__ == "__main__":
    sys.path.insert(0, str(SOAK_FILE.parent))
    if sys.argv[1] == "serve":
        _serve(*sys.argv[2:7])
    elif sys.argv[1] == "worker":
        _worker(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} serve STATE NOW SEED SYMBOLS PAIRS | worker PARAMS")
