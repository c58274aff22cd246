"""The crash matrix (issue 12 §1): the tick killed at every named failpoint, then re-run.

For entry, exit, stop and unwind ticks, and every failpoint such a tick passes
(:data:`pairlib.failpoints.NAMES`), the tick dies there and the same tick is run again. After
the re-run: the store equals the venue per symbol, no client id was used for two orders at
the venue, no leg is naked, no order is left unresolved, the pair ends where an uninterrupted
tick leaves it, and the re-run says what happened (``tick_resumed`` incident, or
``already_ran`` after the final commit).

Two kinds of death:

* **in-process**: the failpoint raises :class:`~pairlib.failpoints.SimulatedCrash` (a
  BaseException the tick does not catch); the "restart" opens a new Store (the tick opens a
  new Exchange each run) against the same in-process simulator;
* **real SIGKILL**: ``pairlib tick`` runs as a subprocess with ``PAIRLIB_FAILPOINT`` set, against
  ``pairlib exchange serve`` in its own process; the kill lands in the notebook kernel (tick
  points) or in the ``pairlib tick`` process itself (runner/jobs points).

``make test`` runs the first hit of every point the four tick kinds pass in-process, and a
representative set of real kills of an entry tick. ``PAIRLIB_SOAK=1`` runs every hit of every
point in-process and every point of the entry and exit ticks as real kills. The matrix is
written into ``docs/RELIABILITY.md`` (section ``crash-matrix``, or ``crash-matrix-soak``).
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import yaml
from reliability_doc import selected, write_section
from tick_fixtures import (
    BAR,
    GRT_RUNE,
    START,
    TickEnv,
    assert_hedged_and_matching,
    assert_unique_client_ids,
    make_env,
    planted_pairs,
    trading_params,
)

from pairlib import failpoints as fp
from pairlib.clock import iso
from pairlib.edges.store import Store
from pairlib.sim import Market
from pairlib.sim.faults import Faults

SOAK = os.environ.get("PAIRLIB_SOAK") == "1"
GRT, RUNE = "GRT/USDT:USDT", "RUNE/USDT:USDT"
ENTRY = START + 7 * BAR  # GRT~RUNE enters short (z 1.28)
STOP_BAR = START + 8 * BAR  # z 0.86: a stop at 0.8 (entry 0.5, exit 0.2)
EXIT = START + 13 * BAR  # z 0.28: exit
VENUE = {"timeout_ms": 1500, "recv_window_ms": 1000}
IN_PROCESS_POINTS = tuple(n for n in fp.NAMES if n.split(".")[0] in ("tick", "exec", "store"))
"""Failpoints a tick passes inside ``tick.run`` (the runner/jobs ones need a process)."""
UNRESOLVED = ("planned", "sent", "unknown", "open")


@dataclass(frozen=True)
class Kind:
    """A kind of tick: the ticks that set it up, the tick itself, and faults armed for it."""

    name: str
    setup: tuple[datetime, ...]
    when: datetime
    strategy: dict[str, float] = field(default_factory=dict)
    arm: Callable[[Faults], None] | None = None
    expect_position: int = 0


def _unwind_faults(f: Faults) -> None:
    f.reject_next_orders(1, -2019, match="-x-es")  # the second leg: insufficient margin
    f.reject_next_orders(1, -2019, match="-y-uw")  # the first unwind attempt: retried


KINDS = {
    "entry": Kind("entry", (), ENTRY, expect_position=-1),
    "exit": Kind("exit", (ENTRY,), EXIT),
    "stop": Kind("stop", (ENTRY,), STOP_BAR, {"entry": 0.5, "exit": 0.2, "stop": 0.8}),
    "unwind": Kind("unwind", (), ENTRY, arm=_unwind_faults),
}

RESULTS: dict[tuple[str, str], str] = {}
REAL: dict[str, str] = {}
REACHED: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One candle cache for every case: the same market, fetched once."""
    return tmp_path_factory.mktemp("crash-cache")


def _env(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch,
         cache: Path) -> Iterator[TickEnv]:
    return make_env(market, tmp, monkeypatch, venue=VENUE, data={"cache_dir": str(cache)})


def _params(env: TickEnv, kind: Kind) -> Any:
    return env.params_with(strategy=kind.strategy) if kind.strategy else env.params


def _prepare(env: TickEnv, kind: Kind) -> None:
    env.save_pairs([GRT_RUNE])
    for when in kind.setup:
        r = env.run(when)
        assert r.status == "ok", r.error
    if kind.arm is not None:
        kind.arm(env.server.faults)


def _restart(env: TickEnv) -> None:
    """What a restarted process has: a new store connection (the tick opens its exchange)."""
    env.store.close()
    env.store = Store.at(env.params.state_dir)


def _check_consistent(env: TickEnv, kind: Kind) -> None:
    """The invariants every case ends with."""
    assert_unique_client_ids(env)
    assert_hedged_and_matching(env, (GRT, RUNE))
    for r in env.store.pair_states().to_dict("records"):
        assert not r["closing"], f"a close left incomplete: {r}"
    left = env.store.orders(statuses=list(UNRESOLVED))
    assert left.empty, f"orders left unresolved: {left.to_dict('records')}"
    state = env.store.pair_state(GRT_RUNE)
    assert state is not None and state.position == kind.expect_position, state


def _probe(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch, cache: Path,
           kind: Kind) -> dict[str, int]:
    """Run the tick uninterrupted, counting the hits of every failpoint."""
    if kind.name in REACHED:
        return REACHED[kind.name]
    for env in _env(market, tmp / f"probe-{kind.name}", monkeypatch, cache):
        _prepare(env, kind)
        for name in IN_PROCESS_POINTS:
            fp.arm(name, lambda: None)
        try:
            r = env.run(kind.when, _params(env, kind))
            counts = {n: fp.hits(n) for n in IN_PROCESS_POINTS}
        finally:
            fp.disarm()
        assert r.status == "ok", r.error
        _check_consistent(env, kind)
    REACHED[kind.name] = {n: c for n, c in counts.items() if c}
    return REACHED[kind.name]


def _crash_case(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch, cache: Path,
                kind: Kind, point: str, nth: int) -> str:
    """Kill ``kind``'s tick at the ``nth`` hit of ``point``, re-run it, check; the outcome."""
    for env in _env(market, tmp, monkeypatch, cache):
        _prepare(env, kind)
        params = _params(env, kind)
        fp.arm(point, fp.SimulatedCrash, nth)
        try:
            with pytest.raises(fp.SimulatedCrash):
                env.run(kind.when, params)
        finally:
            fp.disarm()
        _restart(env)
        died_running = env.store.tick_row(kind.when).status == "running"
        r = env.run(kind.when, params)
        kinds = [i["kind"] for i in r.incidents]
        if died_running:
            assert r.status == "ok", f"{kind.name} {point}:{nth}: {r.status} {r.error}"
            assert "tick_resumed" in kinds, r.incidents
            line = next(i["detail"] for i in r.incidents if i["kind"] == "tick_resumed")
            assert "stopped without finishing" in line
        else:  # died after the final commit: the tick is done
            assert r.status == "already_ran", f"{kind.name} {point}:{nth}: {r.status}"
        _check_consistent(env, kind)
        extra = sorted(set(kinds) - {"tick_resumed"})
        return (f"{r.status}" + (" (resumed)" if died_running else "")
                + (f"; {', '.join(extra)}" if extra else ""))
    raise AssertionError("no environment")


@pytest.mark.parametrize("kind_name", list(KINDS))
def test_crash_matrix_in_process(kind_name: str, sim_market: Market, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    kind = KINDS[kind_name]
    reached = _probe(sim_market, tmp_path, monkeypatch, cache_dir, kind)
    assert len(reached) >= 12, reached  # the kind passes the points its work needs
    failures = []
    for point, hits in reached.items():
        for nth in range(1, (hits if SOAK else 1) + 1):
            try:
                out = _crash_case(sim_market, tmp_path / f"{point}-{nth}", monkeypatch,
                                  cache_dir, kind, point, nth)
            except AssertionError as e:
                out = f"FAILED: {str(e).splitlines()[0]}"
                failures.append(f"{point}:{nth}: {e}")
            RESULTS[(kind_name, point if nth == 1 else f"{point}:{nth}")] = out
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- real kills


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``pairlib exchange serve`` in its own process, at START; yields its URL."""
    cmd = [sys.executable, "-m", "pairlib", "exchange", "serve", "--port", "0",
           "--now", iso(START), "--state", str(tmp_path / "sim_state.json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line: list[str] = []
        assert proc.stdout is not None
        out = proc.stdout
        reader = threading.Thread(target=lambda: line.append(out.readline()))
        reader.start()
        reader.join(timeout=60)
        assert line and line[0].startswith("listening on http://127.0.0.1:"), line
        yield line[0].split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _pairlib_tick(params_file: Path, when: datetime, outputs: Path, cwd: Path,
                  failpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != fp.ENV_VAR}
    if failpoint:
        env[fp.ENV_VAR] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "pairlib", "tick", "--params", str(params_file), "--as-of",
         iso(when), "--outputs", str(outputs), "--wait", "60"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _set_clock(url: str, when: datetime) -> None:
    r = requests.post(url + "/sim/clock", json={"now": iso(when)}, timeout=10)
    assert r.status_code == 200, r.text


REAL_POINTS = ("exec.after_send:2", "exec.between_legs", "runner.after_execute")
REAL_SOAK_POINTS = (*(n for n in fp.NAMES if n.split(".")[0] in ("tick", "exec", "store")
                      and not n.startswith(("tick.exit", "exec.before_unwind",
                                            "exec.close_retry", "exec.after_close_leg"))),
                    "exec.before_send:2", "exec.after_send:2", "exec.fill_before_store:2",
                    "runner.before_execute", "runner.after_execute", "jobs.after_reserve",
                    "jobs.after_run")


@pytest.mark.parametrize("point", REAL_SOAK_POINTS if SOAK else REAL_POINTS)
def test_crash_matrix_real_sigkill_of_pairlib_tick(
    point: str, served: str, tmp_path: Path, sim_market: Market
) -> None:
    """An entry tick as ``pairlib tick`` SIGKILLed at ``point``, then run again."""
    params = trading_params(tmp_path, served, venue=VENUE)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params.model_dump(mode="json")))
    rows = [r for r in planted_pairs(sim_market) if f"{r['y']}~{r['x']}" == GRT_RUNE]
    with Store.at(params.state_dir) as db:
        db.save_pair_set(START, "test", pd.DataFrame(rows), None, START)
    _set_clock(served, ENTRY)
    outputs = tmp_path / "outputs"
    killed = _pairlib_tick(params_file, ENTRY, outputs, tmp_path, point)
    in_parent = point.startswith(("runner.", "jobs."))
    if in_parent:
        assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
    elif point == "tick.after_commit":
        # The tick had committed when its kernel died: the command reports the stored outcome
        # (ok, exit 0) and says the report notebook is incomplete.
        assert killed.returncode == 0, (killed.returncode, killed.stdout, killed.stderr[-2000:])
        assert killed.stdout.splitlines()[1].startswith("tick ok"), killed.stdout
        assert "report notebook is incomplete" in killed.stdout + killed.stderr
    else:  # the kernel died: pairlib tick reports it and what the store says
        assert killed.returncode == 1, (killed.returncode, killed.stdout, killed.stderr[-2000:])
        assert "running" in killed.stdout + killed.stderr or "stopped" in killed.stderr, \
            killed.stderr[-2000:]
    with Store.at(params.state_dir) as db:
        died_running = db.tick_row(ENTRY) is not None and db.tick_row(ENTRY).status == "running"
    rerun = _pairlib_tick(params_file, ENTRY, outputs, tmp_path, None)
    assert rerun.returncode == 0, (rerun.stdout, rerun.stderr[-2000:])
    first = rerun.stdout.splitlines()[0]
    assert first.endswith(".ipynb") and Path(first).is_file()
    said = rerun.stdout.splitlines()[1]
    assert said.startswith(("tick ok", "tick already_ran")), said
    # Invariants, from the venue's own process and the store.
    account = requests.get(served + "/sim/account", timeout=10).json()
    venue = {p["symbol"]: float(p["amount"]) for p in account["positions"]}
    assert not account["open_orders"]
    orders = json.loads((tmp_path / "sim_state.json").read_text())["orders"].values()
    cids = collections.Counter(o["clientOrderId"] for o in orders)
    assert all(n == 1 for n in cids.values()), cids
    with Store.at(params.state_dir) as db:
        state = db.pair_state(GRT_RUNE)
        assert state is not None and state.position == -1
        assert state.amount_y != 0 and state.amount_x != 0
        assert venue.get("GRTUSDT", 0.0) == pytest.approx(state.amount_y, abs=1e-9)
        assert venue.get("RUNEUSDT", 0.0) == pytest.approx(state.amount_x, abs=1e-9)
        assert db.orders(statuses=list(UNRESOLVED)).empty
        inc = db.incidents(ENTRY)
        resumed = list(inc.loc[inc["kind"] == "tick_resumed", "detail"]) if len(inc) else []
        ticks = db.ticks()
    if died_running:
        assert resumed and "stopped without finishing" in resumed[0], inc
    assert list(ticks["status"]) == ["ok"]
    REAL[point] = (f"killed (exit {killed.returncode}); rerun: {said.split(' in ')[0]}"
                   + ("; tick_resumed" if resumed else ""))


def test_a_rerun_of_a_failed_tick_says_what_the_earlier_run_left(
    sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    from tick_fixtures import crash_on_order

    from pairlib.venue.exchange import Exchange

    for env in _env(sim_market, tmp_path, monkeypatch, cache_dir):
        env.save_pairs([GRT_RUNE])
        original = crash_on_order(monkeypatch, 2, "simulated failure between the legs")
        assert env.run(ENTRY).status == "failed"
        monkeypatch.setattr(Exchange, "create_order", original)
        r = env.run(ENTRY)
        assert r.status == "ok", r.error
        line = next(i["detail"] for i in r.incidents if i["kind"] == "tick_rerun")
        assert "ended failed: unexpected RuntimeError: simulated failure" in line
        assert "orders recorded: 1 closed, 1 sent" in line
        _check_consistent(env, KINDS["entry"])


# ----------------------------------------------------------------------------- registry


def test_every_failpoint_name_is_placed_once_in_the_code() -> None:
    import re

    pkg = Path(fp.__file__).parent
    used: collections.Counter[str] = collections.Counter()
    for path in pkg.rglob("*.py"):
        if path.name == "failpoints.py":  # the registry itself (its docstring shows a call)
            continue
        used.update(re.findall(r'failpoint\("([a-z_.]+)"\)', path.read_text()))
    assert set(used) == set(fp.NAMES), set(used) ^ set(fp.NAMES)
    assert all(n == 1 for n in used.values()), used
    assert len(fp.NAMES) >= 20


def test_failpoints_refuse_unknown_names_and_count_hits() -> None:
    from pairlib.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown failpoint 'tick.nope'; known: tick"):
        fp.arm("tick.nope", fp.SimulatedCrash)
    with pytest.raises(ConfigError, match="PAIRLIB_FAILPOINT='tick.nope:2'"):
        fp.load_env({fp.ENV_VAR: "tick.nope:2"})
    with pytest.raises(ConfigError, match="whole number >= 1, got '0'"):
        fp.parse_env("tick.after_start:0")
    assert fp.parse_env("exec.before_send:3") == ("exec.before_send", 3)
    assert fp.load_env({}) is None
    seen: list[int] = []
    with fp.armed("tick.after_plan", lambda: seen.append(1), nth=2):
        fp.failpoint("tick.after_plan")
        assert seen == [] and fp.hits("tick.after_plan") == 1
        fp.failpoint("tick.after_plan")
        assert seen == [1]
        with pytest.raises(ConfigError, match="unknown failpoint"):
            fp.failpoint("tick.typo")
    fp.failpoint("tick.typo")  # nothing armed: a dict lookup, nothing checked
    with fp.armed("exec.before_send", fp.SimulatedCrash), pytest.raises(fp.SimulatedCrash):
        fp.failpoint("exec.before_send")
    assert not issubclass(fp.SimulatedCrash, Exception)  # the tick's guards do not catch it


def test_a_real_sigkill_from_the_environment_kills_the_process() -> None:
    code = ("from pairlib import failpoints as fp\n"
            "fp.failpoint('tick.after_plan')\nprint('first hit passed', flush=True)\n"
            "fp.failpoint('tick.after_plan')\nprint('not reached')\n")
    env = {**os.environ, fp.ENV_VAR: "tick.after_plan:2"}
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == -9 and p.stdout == "first hit passed\n", (p.returncode, p.stdout)


# ----------------------------------------------------------------------------- the document


def test_write_the_crash_matrix_into_reliability_md(request: pytest.FixtureRequest) -> None:
    """Runs last in this module: the matrix of what the cases above found."""
    if not RESULTS:
        pytest.skip("the matrix cases did not run in this session")
    if why := selected(request.config):
        pytest.skip(f"a selection ({why}): the matrix of the last whole run is kept")
    kinds = list(KINDS)
    points = [p for p in dict.fromkeys(p for _, p in RESULTS)]
    lines = [
        f"### Crash matrix ({'`make soak`' if SOAK else '`make test`'})",
        "",
        "Each cell: the tick killed at that failpoint (in-process `SimulatedCrash`), then the "
        "same tick re-run; the re-run's status and the incidents it recorded. Every cell also "
        "checked: store == venue per symbol, no client id used twice at the venue, no naked "
        "leg, no unresolved order, the pair where an uninterrupted tick leaves it. `-`: the "
        "tick kind does not pass that point. "
        + ("Every hit of every point (`PAIRLIB_SOAK=1`)." if SOAK
           else "First hit of every point (`make test`; every hit under `PAIRLIB_SOAK=1`)."),
        "",
        "| failpoint | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for p in points:
        lines.append(f"| `{p}` | " + " | ".join(RESULTS.get((k, p), "-") for k in kinds) + " |")
    n = len(RESULTS)
    bad = sum(1 for v in RESULTS.values() if v.startswith("FAILED"))
    lines += ["", f"{n} in-process cases, {bad} failed."]
    if REAL:
        lines += ["", "Real SIGKILL of `pairlib tick` (entry tick; the simulator in its own "
                  "process, `pairlib exchange serve`; `PAIRLIB_FAILPOINT=point[:nth]`):", "",
                  "| failpoint | outcome |", "|---|---|"]
        lines += [f"| `{p}` | {o} |" for p, o in REAL.items()]
    write_section("crash-matrix" + ("-soak" if SOAK else ""), "\n".join(lines))
    assert bad == 0
