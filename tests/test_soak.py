"""The simulated year under faults and kills (issue 12 §6), and the simulator's random-fault
mode it runs on.

``test_soak_short`` (100 ticks, in ``make test``) and ``test_soak_year`` (2,190 ticks, only
with ``PAIRLIB_SOAK=1``: ``make soak``) run :func:`soak.run_soak` and write their figures
into ``docs/RELIABILITY.md`` (sections ``soak-short`` and ``soak``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ccxt
import pytest
from reliability_doc import write_section
from soak import SoakReport, SoakSpec, run_soak

from pairlib.sim import DEFAULT_API_KEY, DEFAULT_API_SECRET, SimServer, ccxt_urls
from pairlib.sim.faults import RANDOM_KINDS, Faults

YEAR_TICKS = int(os.environ.get("PAIRLIB_SOAK_TICKS", "2190"))


def _client(server: SimServer) -> Any:
    ex = ccxt.binanceusdm({"apiKey": DEFAULT_API_KEY, "secret": DEFAULT_API_SECRET,
                           "timeout": 800, "enableRateLimit": False})
    ex.urls["api"] = ccxt_urls(server.url)
    return ex


def _post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ----------------------------------------------------------------------------- random faults

def test_random_faults_hit_about_rate_of_requests_and_count_each_kind(
        sim_server: SimServer) -> None:
    sim_server.faults.random_faults(0.3, seed=5, kinds=["5xx", "rate_limit", "maintenance"])
    ex = _client(sim_server)
    failures = 0
    for _ in range(200):
        try:
            ex.fapiPublicGetTime()
        except ccxt.BaseError:
            failures += 1
    injected = sim_server.faults.random_injected()
    assert set(injected) <= {"5xx", "rate_limit", "maintenance"}
    assert sum(injected.values()) == failures  # each drawn fault failed its request
    assert 35 <= failures <= 85, failures  # 30% of 200 = 60, binomial sd 6.5
    assert len(injected) == 3


def test_random_faults_are_seeded_and_rate_zero_disarms() -> None:
    draws = []
    for _ in range(2):
        f = Faults()
        f.random_faults(0.5, seed=11, kinds=["5xx", "timeout"])
        draws.append([f.roll("/fapi/v1/time", False) for _ in range(50)])
        f.clear()  # consume nothing further: disarmed
    assert draws[0] == draws[1] and any(draws[0]) and None in draws[0]
    f = Faults()
    f.random_faults(0.0)
    assert all(f.roll("/fapi/v1/time", False) is None for _ in range(100))
    f.random_faults(1.0, seed=1)
    f.clear()
    assert f.roll("/fapi/v1/time", False) is None


def test_random_order_faults_hit_only_new_orders_and_only_that_order() -> None:
    f = Faults()
    f.random_faults(1.0, seed=3, kinds=["reject"])
    assert f.roll("/fapi/v1/klines", False) is None  # a read never gets an order fault
    assert f.roll("/fapi/v1/order", True, "pl-a") == "reject"
    assert f.take_rejection("pl-b") is None  # armed for pl-a alone
    assert f.take_rejection("pl-a") == (-2019, None)
    assert f.random_injected() == {"reject": 1}


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_every_random_kind_arms_a_fault_its_request_consumes(kind: str) -> None:
    f = Faults()
    f.random_faults(1.0, seed=2, kinds=[kind])
    assert f.roll("/fapi/v1/order", True, "pl-c") == kind
    took = [f.take_http("/fapi/v1/order"), f.take_late("pl-c"), f.take_rejection("pl-c"),
            f.take_partial("pl-c"), f.take_drop("pl-c")]
    assert sum(t is not None for t in took) == 1, took
    assert f.take_http("/fapi/v1/order") is None  # one use only


def test_random_faults_over_http_validated_and_shown(sim_server: SimServer) -> None:
    url = f"{sim_server.url}/sim/faults"
    code, body = _post(url, {"random_faults": {"rate": 1.5}})
    assert code == 400 and "rate" in body["error"]
    code, body = _post(url, {"random_faults": {"rate": 0.1, "kinds": ["meteor"]}})
    assert code == 400 and "meteor" in body["error"] and "latency" in body["error"]
    code, body = _post(url, {"random_faults": {"rate": 0.1, "kinds": "5xx"}})
    assert code == 400
    code, body = _post(url, {"random_faults": {"rate": 1.0, "seed": 4, "kinds": ["5xx"]}})
    assert code == 200 and body["random_faults"]["rate"] == 1.0
    with pytest.raises(ccxt.ExchangeNotAvailable):
        _client(sim_server).fapiPublicGetTime()
    code, body = _post(url, {"clear": True})
    assert body["random_injected"] == {"5xx": 1} and "random_faults" not in body
    _client(sim_server).fapiPublicGetTime()  # disarmed
    assert _post(url, body)[0] == 200  # what GET/POST shows is accepted back


# ----------------------------------------------------------------------------- the campaigns

def _assert_campaign(report: SoakReport, spec: SoakSpec) -> None:
    """What a campaign must show: nothing lost, nothing twice, nothing naked."""
    assert report.ticks_run == spec.ticks
    assert report.kills >= 1 and report.faults_injected >= 1, report
    assert report.orders > 0 and report.fills > 0
    assert report.inconsistencies == [], report.inconsistencies[:10]
    assert report.duplicate_client_ids == []
    assert report.orders_unknown_to_store == []
    assert report.naked_minutes == 0, report.exposed_tick_ends[:10]
    # Faults and kills delay some trades by a tick or a rerun; the book ends close to the
    # backtest's over the same bars.
    assert abs(report.live_equity - report.backtest_equity) <= 0.05 * report.backtest_equity


@pytest.mark.slow
def test_soak_short(tmp_path: Path) -> None:
    spec = SoakSpec(ticks=100, kill_every=40)
    report = run_soak(spec, tmp_path)
    write_section("soak-short", report.markdown("A simulated fortnight (`make test`)"))
    _assert_campaign(report, spec)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PAIRLIB_SOAK") != "1",
                    reason="the simulated year runs in `make soak` (PAIRLIB_SOAK=1)")
def test_soak_year(tmp_path: Path) -> None:
    spec = SoakSpec(ticks=YEAR_TICKS)

    def progress(k: int, r: SoakReport) -> None:
        if k % 100 == 0:
            print(f"soak: tick {k}/{spec.ticks}, kills {r.kills}, statuses "
                  f"{dict(r.statuses)}, exposed tick ends {len(r.exposed_tick_ends)}",
                  flush=True)

    report = run_soak(spec, tmp_path, progress)
    write_section("soak", report.markdown("A simulated year (`make soak`)"))
    _assert_campaign(report, spec)
