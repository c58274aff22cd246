"""The simulated exchange: a deterministic market and a Binance-compatible HTTP venue.

``pairlib.sim.market`` is the pure market model (seeded, with planted cointegrated pairs and
known ground truth); ``pairlib.sim.server`` serves it over loopback with the subset of the
Binance USD-M futures REST API that ccxt's ``binanceusdm`` uses, so the real ccxt client
trades against it (``account`` keeps the book, ``faults`` injects failures).
"""

from pairlib.sim.account import Account, Position
from pairlib.sim.faults import Faults
from pairlib.sim.market import GENESIS, Market, MarketSpec, PlantedPair, simulate_prices
from pairlib.sim.server import DEFAULT_API_KEY, DEFAULT_API_SECRET, SimServer, ccxt_urls

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "GENESIS",
    "Account",
    "Faults",
    "Market",
    "MarketSpec",
    "PlantedPair",
    "Position",
    "SimServer",
    "ccxt_urls",
    "simulate_prices",
]
