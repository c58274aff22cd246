"""The fault matrix (issue 12 §2): every fault the simulator injects, alone and in pairs, on
entry, exit and stop ticks.

Each case arms its faults on the simulator (over the real ccxt client), runs the tick, and
checks: the status is one the tick defines (``ok`` only when the book is hedged and matches
the venue, re-checked here; otherwise ``degraded`` or ``failed`` with the reason in
``error``); no client id was used for two orders at the venue; the next tick (faults
cleared) runs normally: ``ok``, hedged, matching, nothing unresolved. The line the result
gives for the fault (an incident or the error) goes into the table.

``make test``: every fault alone on the three tick kinds, and a fixed seeded sample of pairs.
``PAIRLIB_SOAK=1``: every pair on every kind. Table: ``docs/RELIABILITY.md`` section
``fault-matrix`` (or ``fault-matrix-soak``).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from reliability_doc import selected, write_section
from tick_fixtures import (
    BAR,
    GRT_RUNE,
    START,
    TickEnv,
    assert_hedged_and_matching,
    assert_unique_client_ids,
    make_env,
)

from pairlib.sim import Market
from pairlib.sim.faults import Faults

SOAK = os.environ.get("PAIRLIB_SOAK") == "1"
GRT, RUNE = "GRT/USDT:USDT", "RUNE/USDT:USDT"
ENTRY = START + 7 * BAR  # GRT~RUNE enters short
STOP_BAR = START + 8 * BAR  # a stop with entry 0.5 / exit 0.2 / stop 0.8
EXIT = START + 13 * BAR  # exits
VENUE = {"timeout_ms": 1500, "recv_window_ms": 1000}
STRATEGY_STOP = {"entry": 0.5, "exit": 0.2, "stop": 0.8}


@dataclass(frozen=True)
class Kind:
    name: str
    setup: tuple[datetime, ...]
    when: datetime
    close_code: str  # the client-id code of this tick's closes ("" for an entry)
    strategy: dict[str, float] | None = None


KINDS = {
    "entry": Kind("entry", (), ENTRY, ""),
    "exit": Kind("exit", (ENTRY,), EXIT, "ex"),
    "stop": Kind("stop", (ENTRY,), STOP_BAR, "st", STRATEGY_STOP),
}

Arm = Callable[[Faults, Kind], None]


def _close(code: str, leg: str = "y") -> str:
    return f"-{leg}-{code}" if code else "-never-"


FAULTS: dict[str, Arm] = {
    # The entry of GRT~RUNE is short: its legs are "-y-es" and "-x-es".
    "latency spike": lambda f, k: f.timeout_next(4, seconds=0.4),
    "5xx on reads": lambda f, k: f.fail_next(2, 503),
    "read timeout": lambda f, k: f.timeout_next(1, seconds=2.0),
    "order look-up timeout": lambda f, k: f.timeout_next(1, 2.0, path="/fapi/v1/order"),
    "order create timeout, never booked": lambda f, k: f.book_late_next_orders(
        1, delay_s=3.0, mode="timeout", hold_s=2.0),
    "order booked after the client timed out": lambda f, k: f.book_late_next_orders(
        1, delay_s=0.3, mode="timeout", hold_s=2.0),
    "order create 5xx, booked late": lambda f, k: f.book_late_next_orders(
        1, delay_s=0.3, mode="5xx"),
    "dropped response": lambda f, k: f.drop_response_next_orders(1, "close"),
    "429 with Retry-After": lambda f, k: f.rate_limit_next(2, retry_after_s=1),
    "maintenance": lambda f, k: f.maintenance_next(3),
    "first leg rejected": lambda f, k: f.reject_next_orders(1, -2010, match="-y-es"),
    "second leg rejected": lambda f, k: f.reject_next_orders(1, -2010, match="-x-es"),
    "unwind rejected": lambda f, k: (f.reject_next_orders(1, -2010, match="-x-es"),
                                     f.reject_next_orders(2, -2010, match="-uw")),
    "exit/stop rejected": lambda f, k: f.reject_next_orders(2, -2022,
                                                             match=_close(k.close_code)),
    "insufficient margin": lambda f, k: f.reject_next_orders(1, -2019),
    "partial fill, first leg": lambda f, k: f.partial_fill_next(1, 0.5, match="-y-es"),
    "partial fill, second leg": lambda f, k: f.partial_fill_next(1, 0.5, match="-x-es"),
    "partial fill, exit/stop": lambda f, k: f.partial_fill_next(
        1, 0.5, match=_close(k.close_code, "x")),
    "partial fill, unwind": lambda f, k: (f.reject_next_orders(1, -2010, match="-x-es"),
                                          f.partial_fill_next(1, 0.5, match="-uw")),
}

RESULTS: dict[tuple[str, str], str] = {}
PAIRS = list(itertools.combinations(FAULTS, 2))
SAMPLE = random.Random(12).sample(PAIRS, 8)
"""The pairs ``make test`` runs (fixed seed); ``PAIRLIB_SOAK=1`` runs all."""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-cache")


def _env(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch,
         cache: Path) -> Iterator[TickEnv]:
    return make_env(market, tmp, monkeypatch, venue=VENUE, data={"cache_dir": str(cache)})


def _armed(f: Faults) -> int:
    """How many armed fault uses are left (0: every armed fault was hit)."""
    d = f.to_dict()
    return sum(e["n"] for k, v in d.items() if isinstance(v, list) for e in v)


def _case(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch, cache: Path,
          kind: Kind, names: tuple[str, ...]) -> str:
    for env in _env(market, tmp, monkeypatch, cache):
        env.save_pairs([GRT_RUNE])
        for when in kind.setup:
            assert env.run(when).status == "ok"
        params = env.params_with(strategy=kind.strategy) if kind.strategy else env.params
        for name in names:
            FAULTS[name](env.server.faults, kind)
        before = _armed(env.server.faults)
        r = env.run(kind.when, params)
        hit = _armed(env.server.faults) < before
        assert env.server.wait_late_bookings(15)
        env.server.faults.clear()
        assert r.status in ("ok", "degraded", "failed"), (r.status, r.error)
        if r.status == "ok":
            assert_hedged_and_matching(env, (GRT, RUNE))  # ok means hedged and matching
            assert env.store.orders(statuses=["sent", "unknown", "open"]).empty
        else:
            assert r.error, f"{r.status} without a reason"
        assert_unique_client_ids(env)
        errors = [str(e) for e in r.orders.get("error", []) if isinstance(e, str) and e]
        line = "; ".join(f"{i['kind']}" for i in r.incidents) or (
            str(r.error)[:120] if r.error else "") or (
            f"order error: {errors[0][:90]}" if errors else "")
        # The next tick runs normally and ends hedged and matching.
        nxt = env.run(kind.when + BAR, params)
        assert nxt.status == "ok", f"next tick after {names} on {kind.name}: {nxt.error}"
        assert_hedged_and_matching(env, (GRT, RUNE))
        assert_unique_client_ids(env)
        assert env.store.orders(statuses=["planned", "sent", "unknown", "open"]).empty
        cell = r.status + (f" ({line})" if line else "")
        return cell if hit else f"not reached; {cell}"
    raise AssertionError("no environment")


def _run_cases(market: Market, tmp: Path, monkeypatch: pytest.MonkeyPatch, cache: Path,
               cases: list[tuple[str, tuple[str, ...]]]) -> None:
    failures = []
    for i, (kind_name, names) in enumerate(cases):
        key = (kind_name, " + ".join(names))
        try:
            RESULTS[key] = _case(market, tmp / str(i), monkeypatch, cache, KINDS[kind_name],
                                 names)
        except AssertionError as e:
            RESULTS[key] = f"FAILED: {str(e).splitlines()[0][:100]}"
            failures.append(f"{key}: {e}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("kind_name", list(KINDS))
def test_every_fault_alone(kind_name: str, sim_market: Market, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    _run_cases(sim_market, tmp_path, monkeypatch, cache_dir,
               [(kind_name, (name,)) for name in FAULTS])


def test_faults_in_pairs(sim_market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         cache_dir: Path) -> None:
    pairs = PAIRS if SOAK else SAMPLE
    kinds = list(KINDS)
    cases = ([(k, p) for p in pairs for k in kinds] if SOAK
             else [(kinds[i % len(kinds)], p) for i, p in enumerate(pairs)])
    _run_cases(sim_market, tmp_path, monkeypatch, cache_dir, cases)


def test_write_the_fault_matrix_into_reliability_md(request: pytest.FixtureRequest) -> None:
    if not RESULTS:
        pytest.skip("the matrix cases did not run in this session")
    if why := selected(request.config):
        pytest.skip(f"a selection ({why}): the matrix of the last whole run is kept")
    kinds = list(KINDS)
    singles = [n for n in FAULTS]
    lines = [
        f"### Fault matrix ({'`make soak`' if SOAK else '`make test`'})",
        "",
        "Each cell: the tick's status with the faults armed on the simulator, and the "
        "incidents it recorded (or its error). Every case also checked: `ok` only when the "
        "store equals the venue per symbol with no naked leg, no client id used twice at the "
        "venue, and the next tick (faults cleared) `ok`, hedged and matching with nothing "
        "unresolved. `not reached`: the tick made no request the fault applies to.",
        "",
        "| fault | " + " | ".join(kinds) + " |",
        "|---|" + "---|" * len(kinds),
    ]
    for n in singles:
        lines.append(f"| {n} | " + " | ".join(RESULTS.get((k, n), "-") for k in kinds) + " |")
    pair_rows = [(k, f) for (k, f) in RESULTS if "+" in f]
    if pair_rows:
        lines += ["", "Pairs of faults ("
                  + ("all pairs on every kind, `PAIRLIB_SOAK=1`" if SOAK
                     else f"a fixed sample of {len(SAMPLE)} of {len(PAIRS)}, seed 12; all "
                          "under `PAIRLIB_SOAK=1`") + "):", "",
                  "| faults | tick | outcome |", "|---|---|---|"]
        lines += [f"| {f} | {k} | {RESULTS[(k, f)]} |" for k, f in pair_rows]
    bad = sum(1 for v in RESULTS.values() if v.startswith("FAILED"))
    lines += ["", f"{len(RESULTS)} cases, {bad} failed."]
    write_section("fault-matrix" + ("-soak" if SOAK else ""), "\n".join(lines))
    assert bad == 0


# ----------------------------------------------------------------------------- the faults


def test_order_faults_with_match_hit_only_matching_client_ids(sim_server: Any) -> None:
    from pairlib import errors
    from pairlib.config import VenueParams
    from pairlib.venue.exchange import Exchange

    f = sim_server.faults
    f.reject_next_orders(1, -2019, match="-x-es")
    f.partial_fill_next(1, 0.5, match="-uw")
    snapshot = f.to_dict()
    assert snapshot["reject_next_orders"] == [
        {"n": 1, "code": -2019, "msg": None, "match": "-x-es"}]
    with pytest.raises(ValueError, match="match must be None or a client-id substring"):
        f.apply({"reject_next_orders": {"match": ""}})
    ex = Exchange.from_params(VenueParams(max_retries=0), sim_url=sim_server.url,
                              retry_base_delay=0.001)
    with ex:
        eth = "ETH/USDT:USDT"
        amount = 0.05
        first = ex.create_order(eth, "buy", amount, "pl-a-y-es")  # passes both faults
        assert first.status == "closed" and first.filled == pytest.approx(amount)
        with pytest.raises(errors.InsufficientFunds):
            ex.create_order(eth, "buy", amount, "pl-a-x-es")
        part = ex.create_order(eth, "sell", amount, "pl-a-y-uw", reduce_only=True)
        assert part.filled == pytest.approx(amount / 2)
        assert f.to_dict()["reject_next_orders"] == [] == f.to_dict()["partial_fill_next"]


def test_maintenance_answers_binance_maintenance_and_books_nothing(sim_server: Any) -> None:
    import requests

    from pairlib import errors
    from pairlib.config import VenueParams
    from pairlib.venue.exchange import Exchange

    sim_server.faults.apply({"maintenance_next": {"n": 1}})
    r = requests.get(sim_server.url + "/fapi/v1/time", timeout=5)
    assert r.status_code == 503 and r.json() == {"code": 1,
                                                 "msg": "System is under maintenance."}
    ex = Exchange.from_params(VenueParams(max_retries=0), sim_url=sim_server.url,
                              retry_base_delay=0.001)
    with ex:
        ex.markets()
        sim_server.faults.maintenance_next(1, path="/fapi/v1/order")
        with pytest.raises(errors.ExchangeUnavailable, match="maintenance"):
            ex.create_order("ETH/USDT:USDT", "buy", 0.05, "pl-maint")
    assert not sim_server.account.orders()
