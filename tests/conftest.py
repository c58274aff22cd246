"""Shared fixtures.

Simulator fixtures (``pairlib.sim``):

* ``sim_market`` -- the default 48-symbol market (seed 7), built once per session; candles
  are generated lazily and cached, so sharing it keeps the suite fast.
* ``sim_now`` -- the sim time the ``sim_server`` starts at: 2025-02-04 00:00 UTC, a 4h bar
  boundary 400 days (2,400 bars) after genesis.
* ``sim_server`` -- a started :class:`~pairlib.sim.server.SimServer` on 127.0.0.1 (free port)
  with its state file in ``tmp_path``; stopped after the test. Use ``sim_server.url`` with
  :func:`pairlib.sim.ccxt_urls`, the default key pair ``pairlib.sim.DEFAULT_API_KEY`` /
  ``DEFAULT_API_SECRET``, ``sim_server.set_now(...)`` and ``sim_server.faults``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from pairlib.sim import GENESIS, Market, SimServer

SIM_NOW = GENESIS + timedelta(days=400)


@pytest.fixture(scope="session")
def sim_market() -> Market:
    """The default simulated market (shared by the whole session)."""
    return Market()


@pytest.fixture
def sim_now() -> datetime:
    """The sim time ``sim_server`` starts at (a 4h boundary)."""
    return SIM_NOW


@pytest.fixture
def sim_server(sim_market: Market, tmp_path: Path) -> Iterator[SimServer]:
    """A running simulated exchange on a free loopback port, state in ``tmp_path``."""
    server = SimServer(sim_market, tmp_path / "sim_state.json", now=SIM_NOW)
    server.start()
    try:
        yield server
    finally:
        server.stop()
