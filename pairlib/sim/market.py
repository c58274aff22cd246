"""A deterministic market of USDT-margined perpetuals with known cointegrated pairs.

The market is a pure function of a :class:`MarketSpec` (seed, size, horizon): the same spec
gives the same candles, byte for byte, in any process. Nothing here reads the wall clock;
callers pass the simulated ``now``.

Model (hourly base path, every coarser candle aggregated from it)
-----------------------------------------------------------------
* Every free symbol's log price is ``log p0 + b_i F_t + I_t``: a market factor ``F`` (a
  random walk, annualised vol 55 %) with loading ``b_i`` plus an independent idiosyncratic
  random walk ``I``. Innovations are Student-t (5 degrees of freedom, scaled to unit
  variance) multiplied by regime-switching volatility (a market-wide regime and a per-symbol
  regime, each a sticky Markov chain of levels). No two free symbols are cointegrated: each
  carries its own independent I(1) component.
* A planted pair ``(y, x)`` has ``log y = alpha + beta log x + s`` where ``s`` is an AR(1)
  (discretised Ornstein-Uhlenbeck) process with Student-t innovations. On 4h closes it is an
  exact AR(1) with ``phi = 0.5 ** (1 / half_life_bars)``. A pair that breaks down has ``s``
  turn into a random walk from ``break_time`` on (the first 4h bar that is no longer
  mean-reverting).
* Prices are rounded to the symbol's tick (a power of ten), stored as ``k / 10**d`` so that
  the float equals what parsing the decimal string gives. Volumes are whole multiples of the
  step size; quote volumes are whole multiples of 0.0001 USDT, so aggregates are exact.
* Inside an hour the price moves linearly in log space from the hour's open to its close;
  :meth:`Market.price` and the still-forming candle of :meth:`Market.klines` use that path,
  so the forming candle's close always equals ``price(now)``.
* Funding: every 8 h (00:00, 08:00, 16:00 UTC), ``rate = 0.0001 + 0.01 * log(p_T / p_{T-8h})
  + noise``, clipped to +-0.3 % and rounded to 8 decimals. The predicted rate at ``now`` uses
  the same formula with ``T = now`` (no look-ahead); at a funding time both agree.
* Mark price: its own series, ``last * (1 + basis)`` where the basis is a seeded AR(1) per
  symbol on the hourly grid (stationary sd 3 bp, half-life 2 h, clipped to +-15 bp), linear
  within the hour, rounded to 8 decimals as Binance sends it (not to the tick). So the mark
  is close to but not equal to the last price; the account values positions, unrealised
  PnL and funding payments at the mark, as Binance does.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from pairlib.sim.paths import (
    BAR_MS,
    FUNDING_MS,
    GENESIS,
    HOUR_MS,
    HOURS_PER_YEAR,
    PlantedPair,
    dt_from_ms,
    ms,
    ou_path,
    regimes,
    round_to,
    simulate_prices,
    student_t,
)

__all__ = [
    "BAR_MS",
    "FUNDING_INTERVAL",
    "FUNDING_MS",
    "GENESIS",
    "HOUR_MS",
    "INTERVALS",
    "Market",
    "MarketSpec",
    "PlantedPair",
    "simulate_prices",
]

FUNDING_INTERVAL = timedelta(hours=8)

INTERVALS: dict[str, int] = {"1h": 1, "2h": 2, "4h": 4, "6h": 6, "8h": 8, "12h": 12, "1d": 24}
"""Kline intervals served, in hours (candles aligned to multiples of the interval since the
Unix epoch, as Binance does for these intervals)."""

_FACTOR_VOL = 0.55
_MAX_HOURLY_CACHE = 48
_FUNDING_CLIP = 0.003
_BASIS_SD = 3e-4
_BASIS_HALF_LIFE_H = 2.0
_BASIS_CLIP = 1.5e-3
_MARK_DECIMALS = 8

# (base asset, price on 2024-01-01, typical daily quote volume in USDT)
_UNIVERSE: tuple[tuple[str, float, float], ...] = (
    ("BTC", 42300.0, 1.5e10), ("ETH", 2280.0, 8.0e9), ("SOL", 101.0, 3.0e9),
    ("BNB", 312.0, 6.0e8), ("XRP", 0.615, 8.0e8), ("DOGE", 0.0895, 9.0e8),
    ("ADA", 0.59, 4.0e8), ("AVAX", 38.0, 7.0e8), ("LINK", 14.6, 5.0e8),
    ("DOT", 8.1, 2.5e8), ("TRX", 0.108, 1.0e8), ("LTC", 72.0, 3.0e8),
    ("BCH", 250.0, 3.0e8), ("ATOM", 10.5, 1.5e8), ("UNI", 6.6, 1.5e8),
    ("ETC", 23.0, 1.5e8), ("FIL", 5.7, 1.5e8), ("APT", 9.5, 2.0e8),
    ("ARB", 1.9, 3.0e8), ("OP", 3.6, 2.5e8), ("NEAR", 3.5, 2.0e8),
    ("INJ", 38.0, 3.0e8), ("SUI", 0.8, 2.0e8), ("AAVE", 110.0, 1.0e8),
    ("MKR", 1950.0, 8.0e7), ("LDO", 3.1, 1.0e8), ("XLM", 0.13, 6.0e7),
    ("ALGO", 0.23, 5.0e7), ("ICP", 12.0, 1.0e8), ("SAND", 0.58, 8.0e7),
    ("MANA", 0.55, 6.0e7), ("AXS", 8.5, 6.0e7), ("CRV", 0.6, 8.0e7),
    ("DYDX", 2.9, 1.2e8), ("RUNE", 5.7, 1.5e8), ("SNX", 4.0, 5.0e7),
    ("COMP", 58.0, 4.0e7), ("EGLD", 64.0, 3.0e7), ("THETA", 1.15, 3.0e7),
    ("FTM", 0.45, 2.0e8), ("HBAR", 0.085, 5.0e7), ("IMX", 2.4, 6.0e7),
    ("STX", 1.5, 8.0e7), ("KAVA", 0.85, 3.0e7), ("CHZ", 0.095, 4.0e7),
    ("GRT", 0.2, 6.0e7), ("ORDI", 60.0, 5.0e8), ("WLD", 3.7, 2.0e8),
    ("FET", 0.68, 1.5e8), ("SEI", 0.6, 1.5e8),
)

# Volatility regimes: (levels, probabilities, mean duration in hours).
_MARKET_REGIME = ((0.6, 1.0, 1.6, 2.6), (0.30, 0.45, 0.20, 0.05), 240)
_IDIO_REGIME = ((0.7, 1.0, 1.8), (0.30, 0.50, 0.20), 120)


@dataclass(frozen=True)
class MarketSpec:
    """Everything that determines a simulated market.

    Parameters
    ----------
    seed : int
        Random seed; same spec, same market, byte for byte.
    n_symbols : int
        Number of perpetuals (4 to 1000; the first 50 carry real names).
    n_pairs : int
        Planted cointegrated pairs (0 = pure random walks); needs ``2 * n_pairs + 2 <=
        n_symbols`` (BTC and ETH are never planted legs).
    genesis : datetime
        Open time of the first 4h bar; timezone-aware, on a 4h boundary.
    horizon_bars : int
        Number of 4h bars generated from ``genesis``.
    half_lives : tuple of float, optional
        Half-lives of the planted spreads in 4h bars (one per pair); default: geometric from
        3 bars to 120 bars (20 days).
    breakdowns : bool
        Whether some planted pairs (every fourth, starting with the third) break down.
    """

    seed: int = 7
    n_symbols: int = 48
    n_pairs: int = 8
    genesis: datetime = GENESIS
    horizon_bars: int = 8000
    half_lives: tuple[float, ...] | None = None
    breakdowns: bool = True

    def __post_init__(self) -> None:
        if not 4 <= self.n_symbols <= 1000:
            raise ValueError(f"n_symbols must be in [4, 1000], got {self.n_symbols}")
        if self.n_pairs < 0 or 2 * self.n_pairs + 2 > self.n_symbols:
            raise ValueError(
                f"n_pairs must be in [0, (n_symbols - 2) // 2 = {(self.n_symbols - 2) // 2}], "
                f"got {self.n_pairs}"
            )
        if not 1 <= self.horizon_bars <= 200_000:
            raise ValueError(f"horizon_bars must be in [1, 200000], got {self.horizon_bars}")
        if self.genesis.tzinfo is None:
            raise ValueError(f"genesis must be timezone-aware, got {self.genesis!r}")
        if ms(self.genesis) % BAR_MS:
            raise ValueError(f"genesis must be on a 4h boundary, got {self.genesis.isoformat()}")
        if self.half_lives is not None:
            if len(self.half_lives) != self.n_pairs:
                raise ValueError(
                    f"half_lives needs one value per planted pair ({self.n_pairs}), "
                    f"got {len(self.half_lives)}"
                )
            if any(not (h > 0 and math.isfinite(h)) for h in self.half_lives):
                raise ValueError(f"half_lives must be positive, got {self.half_lives}")


class _Hourly(NamedTuple):
    """Hourly candles of one symbol; prices are exact decimal floats."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray  # in steps (whole numbers)
    quote: np.ndarray  # in units of 0.0001 USDT (whole numbers)


class _Agg(NamedTuple):
    """Closed candles of one interval, aligned to multiples of the interval."""

    first_open_ms: int
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote: np.ndarray


@dataclass(frozen=True)
class _SymbolInfo:
    name: str
    p0: float
    daily_quote: float
    annual_vol: float
    loading: float
    price_decimals: int
    qty_decimals: int
    min_notional: float


def _default_half_lives(n: int) -> tuple[float, ...]:
    if n == 0:
        return ()
    if n == 1:
        return (10.0,)
    return tuple(float(round(h, 1)) for h in np.geomspace(3.0, 120.0, n))


class Market:
    """A deterministic simulated market of USDT-margined perpetuals.

    Parameters
    ----------
    spec : MarketSpec
        Seed, size and horizon. Candles are generated lazily per symbol and cached.

    Attributes
    ----------
    spec : MarketSpec
    symbols : tuple of str
        Binance ids (``"BTCUSDT"``, ..., then ``"SIM50USDT"``, ...).
    ground_truth : tuple of PlantedPair
        The planted cointegrated pairs.

    Notes
    -----
    Thread-safe: the HTTP server calls it from many threads. Times are milliseconds since
    the epoch at the exchange-facing methods (``klines``, ``price``, ``funding_rate``) and
    aware datetimes elsewhere.
    """

    def __init__(self, spec: MarketSpec = MarketSpec()) -> None:  # noqa: B008
        self.spec = spec
        self._genesis_ms = ms(spec.genesis)
        self._hours = spec.horizon_bars * 4
        self._lock = threading.RLock()
        self._factor: np.ndarray | None = None
        self._market_regime: np.ndarray = np.ones(0)
        self._paths: dict[int, np.ndarray] = {}  # unrounded log closes, n_hours + 1
        self._closes: dict[int, np.ndarray] = {}  # exact closes, n_hours + 1 (0 = pre-open)
        self._hourly: OrderedDict[int, _Hourly] = OrderedDict()
        self._aggs: dict[tuple[int, int], _Agg] = {}
        self._funding_noise: dict[int, np.ndarray] = {}
        self._basis: dict[int, np.ndarray] = {}
        self._infos = self._make_infos()
        self.symbols: tuple[str, ...] = tuple(i.name for i in self._infos)
        self._index = {s: i for i, s in enumerate(self.symbols)}
        self._pair_of_y: dict[int, tuple[int, int]] = {}
        self.ground_truth: tuple[PlantedPair, ...] = self._make_pairs()

    # ------------------------------------------------------------------ structure
    def _make_infos(self) -> list[_SymbolInfo]:
        spec = self.spec
        infos = []
        for i in range(spec.n_symbols):
            rng = np.random.default_rng([spec.seed, 1, i])
            if i < len(_UNIVERSE):
                base, p0, qv = _UNIVERSE[i]
                p0 *= math.exp(0.08 * float(rng.standard_normal()))
                qv *= math.exp(0.2 * float(rng.standard_normal()))
            else:
                base = f"SIM{i}"
                p0 = math.exp(float(rng.uniform(math.log(0.05), math.log(500.0))))
                qv = math.exp(float(rng.uniform(math.log(2e6), math.log(3e8))))
            if i == 0:
                vol, loading = 0.5, 1.0
            elif i == 1:
                vol, loading = 0.6, 1.1
            else:
                vol = float(rng.uniform(0.7, 1.1))
                loading = float(rng.uniform(0.6, 1.3))
            pdec = int(np.clip(5 - math.floor(math.log10(p0)), 1, 8))
            if p0 < 10:
                pdec = int(np.clip(4 - math.floor(math.log10(p0)), 1, 8))
            step = min(max(10.0 ** math.floor(math.log10(5.0 / p0)), 0.001), 1.0)
            qdec = max(0, -int(round(math.log10(step))))
            min_notional = 100.0 if i == 0 else (20.0 if i == 1 else 5.0)
            p0 = float(round_to(np.array([p0]), pdec)[0])
            infos.append(
                _SymbolInfo(f"{base}USDT", p0, qv, vol, loading, pdec, qdec, min_notional)
            )
        return infos

    def _make_pairs(self) -> tuple[PlantedPair, ...]:
        spec = self.spec
        n = spec.n_pairs
        if n == 0:
            return ()
        rng = np.random.default_rng([spec.seed, 0])
        legs = rng.permutation(np.arange(2, spec.n_symbols))[: 2 * n]
        hls = spec.half_lives if spec.half_lives is not None else _default_half_lives(n)
        out = []
        for k in range(n):
            xi, yi = int(legs[2 * k]), int(legs[2 * k + 1])
            beta = float(round(rng.uniform(0.6, 1.5), 4))
            sigma = float(round(rng.uniform(0.025, 0.06), 4))
            brk_frac = float(rng.uniform(0.45, 0.8))
            brk: datetime | None = None
            if spec.breakdowns and k % 4 == 2:
                bar = max(1, int(brk_frac * spec.horizon_bars))
                brk = spec.genesis + timedelta(hours=4 * bar)
            yinfo, xinfo = self._infos[yi], self._infos[xi]
            alpha = math.log(yinfo.p0) - beta * math.log(xinfo.p0)
            # planted legs are liquid enough for any sensible volume filter
            for j in (xi, yi):
                info = self._infos[j]
                if info.daily_quote < 5e7:
                    self._infos[j] = _SymbolInfo(
                        info.name, info.p0, 5e7 * (1.0 + (j % 5)), info.annual_vol,
                        info.loading, info.price_decimals, info.qty_decimals,
                        info.min_notional,
                    )
            self._pair_of_y[yi] = (xi, k)
            out.append(
                PlantedPair(
                    y=yinfo.name, x=xinfo.name, beta=beta, alpha=alpha,
                    half_life_bars=float(hls[k]), break_time=brk, spread_sigma=sigma,
                )
            )
        return tuple(out)

    # ------------------------------------------------------------------ generation
    def _factor_path(self) -> np.ndarray:
        if self._factor is None:
            rng = np.random.default_rng([self.spec.seed, 5])
            n = self._hours
            reg = regimes(rng, n, _MARKET_REGIME)
            sd = _FACTOR_VOL / math.sqrt(HOURS_PER_YEAR)
            steps = sd * reg * student_t(rng, n)
            self._factor = np.concatenate([[0.0], np.cumsum(steps)])
            self._market_regime = reg
        return self._factor

    def _log_path(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Unrounded log closes (n_hours + 1, index 0 = pre-open) and hourly vol."""
        n = self._hours
        info = self._infos[i]
        factor = self._factor_path()
        reg_m = self._market_regime
        rng = np.random.default_rng([self.spec.seed, 2, i])
        reg_i = regimes(rng, n, _IDIO_REGIME)
        idio_annual = math.sqrt(max(info.annual_vol**2 - (info.loading * _FACTOR_VOL) ** 2,
                                    0.25**2))
        sd_idio = idio_annual / math.sqrt(HOURS_PER_YEAR) * reg_m * reg_i
        idio = np.concatenate([[0.0], np.cumsum(sd_idio * student_t(rng, n))])
        sd_f = info.loading * _FACTOR_VOL / math.sqrt(HOURS_PER_YEAR) * reg_m
        vol = np.sqrt(sd_f**2 + sd_idio**2)
        if i in self._pair_of_y:
            xi, k = self._pair_of_y[i]
            pair = self.ground_truth[k]
            xlog, xvol = self._log_path(xi)
            prng = np.random.default_rng([self.spec.seed, 3, k])
            phi = 0.5 ** (1.0 / (4.0 * pair.half_life_bars))
            s = ou_path(prng, n, phi, pair.spread_sigma)
            if pair.break_time is not None:
                hb = (ms(pair.break_time) - self._genesis_ms) // HOUR_MS
                if hb < n:
                    rw_sd = max(pair.spread_sigma * math.sqrt(1.0 - phi * phi),
                                0.08 * pair.spread_sigma)
                    steps = rw_sd * student_t(prng, n - hb)
                    s[hb + 1:] = s[hb] + np.cumsum(steps)
            logp = pair.alpha + pair.beta * xlog + s
            s_sd = pair.spread_sigma * math.sqrt(1.0 - phi * phi)
            return logp, np.sqrt((pair.beta * xvol) ** 2 + s_sd**2)
        return math.log(info.p0) + info.loading * factor + idio, vol

    def _close_path(self, i: int) -> np.ndarray:
        """Exact closes, n_hours + 1 values (index 0 is the open of the first hour)."""
        got = self._closes.get(i)
        if got is not None:
            return got
        with self._lock:
            got = self._closes.get(i)
            if got is None:
                logp, _ = self._log_path(i)
                got = round_to(np.exp(logp), self._infos[i].price_decimals)
                self._closes[i] = got
            return got

    def _hourly_candles(self, i: int) -> _Hourly:
        with self._lock:
            got = self._hourly.get(i)
            if got is not None:
                self._hourly.move_to_end(i)
                return got
            info = self._infos[i]
            n = self._hours
            logp, vol = self._log_path(i)
            closes = self._closes.get(i)
            if closes is None:
                closes = round_to(np.exp(logp), info.price_decimals)
                self._closes[i] = closes
            rng = np.random.default_rng([self.spec.seed, 4, i])
            o, c = closes[:-1], closes[1:]
            scale = 10.0**info.price_decimals
            up = np.abs(rng.standard_normal(n)) * vol * 0.7
            dn = np.abs(rng.standard_normal(n)) * vol * 0.7
            hi = np.maximum(np.ceil(np.maximum(o, c) * np.exp(up) * scale), np.rint(
                np.maximum(o, c) * scale)) / scale
            lo = np.maximum(np.minimum(np.floor(np.minimum(o, c) * np.exp(-dn) * scale),
                                       np.rint(np.minimum(o, c) * scale)), 1.0) / scale
            hours = (self._genesis_ms // HOUR_MS + np.arange(n)) % 24
            season = 1.0 + 0.3 * np.cos(2.0 * np.pi * (hours - 14) / 24.0)
            reg = vol / float(np.mean(vol))
            r = np.abs(np.diff(np.log(closes)))
            activity = 0.6 + 0.4 * np.minimum(r / np.maximum(vol, 1e-12), 5.0)
            quote_usd = (info.daily_quote / 24.0) * season * reg * activity * np.exp(
                0.35 * rng.standard_normal(n) - 0.06)
            vwap = (o + hi + lo + c) / 4.0
            step = 10.0 ** (-info.qty_decimals)
            volume = np.rint(quote_usd / vwap / step)
            quote = np.rint(volume * step * vwap * 1e4)
            got = _Hourly(o, hi, lo, c, volume, quote)
            self._hourly[i] = got
            while len(self._hourly) > _MAX_HOURLY_CACHE:
                self._hourly.popitem(last=False)
            return got

    def _agg(self, i: int, k: int) -> _Agg:
        key = (i, k)
        got = self._aggs.get(key)
        if got is not None:
            return got
        with self._lock:
            got = self._aggs.get(key)
            if got is not None:
                return got
            hourly = self._hourly_candles(i)
            iv = k * HOUR_MS
            first_open = -(-self._genesis_ms // iv) * iv
            off = (first_open - self._genesis_ms) // HOUR_MS
            m = max(0, (self._hours - off) // k)
            end = off + m * k

            def blocks(a: np.ndarray) -> np.ndarray:
                return a[off:end].reshape(m, k)

            got = _Agg(
                first_open,
                hourly.open[off:end:k].copy(),
                blocks(hourly.high).max(axis=1),
                blocks(hourly.low).min(axis=1),
                hourly.close[off + k - 1:end:k].copy(),
                blocks(hourly.volume).sum(axis=1),
                blocks(hourly.quote).sum(axis=1),
            )
            self._aggs[key] = got
            return got

    def warm(self, symbols: tuple[str, ...] | None = None, interval: str = "4h") -> None:
        """Generate and cache candles ahead of time (e.g. before a benchmark)."""
        for s in symbols or self.symbols:
            self._agg(self._idx(s), INTERVALS[interval])

    # ------------------------------------------------------------------ public API
    @property
    def horizon_end(self) -> datetime:
        """Close time of the last generated 4h bar (the latest allowed ``now``)."""
        return dt_from_ms(self._genesis_ms + self._hours * HOUR_MS)

    def _idx(self, symbol: str) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise KeyError(f"unknown symbol {symbol!r}") from None

    def _check_now(self, now_ms: int) -> None:
        end = self._genesis_ms + self._hours * HOUR_MS
        if not self._genesis_ms <= now_ms <= end:
            raise ValueError(
                f"time {dt_from_ms(now_ms).isoformat()} is outside the simulated history "
                f"[{dt_from_ms(self._genesis_ms).isoformat()}, {dt_from_ms(end).isoformat()}]"
            )

    def unified(self, symbol_id: str) -> str:
        """ccxt unified symbol of a Binance id: ``"BTCUSDT"`` -> ``"BTC/USDT:USDT"``."""
        if not symbol_id.endswith("USDT") or len(symbol_id) <= 4:
            raise KeyError(f"not a USDT perpetual id: {symbol_id!r}")
        return f"{symbol_id[:-4]}/USDT:USDT"

    def base_asset(self, symbol_id: str) -> str:
        """Base asset of a Binance id: ``"BTCUSDT"`` -> ``"BTC"``."""
        return symbol_id[:-4]

    def closes(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> pd.DataFrame:
        """Closes of the closed 4h candles in a time range, all symbols.

        Parameters
        ----------
        start : datetime
            Earliest candle open time (inclusive).
        end : datetime
            Latest close time: a candle is included when its Binance close time
            (``open + 4h - 1 ms``) is ``<= end``.
        now : datetime, optional
            The simulated present; candles closing after it are excluded.

        Returns
        -------
        DataFrame
            Index: candle open times (``datetime64[us, UTC]``, named ``open_time``);
            columns: :attr:`symbols`; values: close prices (exactly the kline closes).
        """
        j0, n = self._bar_window(start, end, now)
        cols = {s: self._close_path(i)[4 * (j0 + 1):4 * (j0 + n) + 1:4][:n]
                for i, s in enumerate(self.symbols)}
        return self._bar_frame(cols, j0, n)

    def quote_volumes(
        self, start: datetime, end: datetime, now: datetime | None = None
    ) -> pd.DataFrame:
        """Quote volumes (USDT) of the closed 4h candles; same shape as :meth:`closes`."""
        j0, n = self._bar_window(start, end, now)
        cols = {s: self._agg(i, 4).quote[j0:j0 + n] / 1e4 for i, s in enumerate(self.symbols)}
        return self._bar_frame(cols, j0, n)

    def _bar_window(self, start: datetime, end: datetime, now: datetime | None
                    ) -> tuple[int, int]:
        """First 4h bar index and count of the closed candles opening in ``[start, end]``
        (and closed by ``now``)."""
        end_ms = ms(end)
        if now is not None:
            end_ms = min(end_ms, ms(now))
        j0 = max(0, -(-(ms(start) - self._genesis_ms) // BAR_MS))
        j1 = min(self.spec.horizon_bars, (end_ms + 1 - self._genesis_ms) // BAR_MS)
        return j0, max(0, j1 - j0)

    def _bar_frame(self, cols: dict[str, Any], j0: int, n: int) -> pd.DataFrame:
        """Columns of ``n`` bars from bar ``j0`` as a frame indexed by candle open time."""
        idx = pd.to_datetime(
            self._genesis_ms + BAR_MS * np.arange(j0, j0 + n, dtype=np.int64),
            unit="ms", utc=True,
        )
        idx.name = "open_time"
        return pd.DataFrame(cols, index=idx, columns=list(self.symbols), dtype=np.float64)

    def price(self, symbol: str, now_ms: int) -> float:
        """Last price at ``now_ms``; equals the forming candle's close (see
        :meth:`mark_price` for the mark)."""
        i = self._idx(symbol)
        self._check_now(now_ms)
        return self._price_at(i, now_ms)

    def mark_price(self, symbol: str, now_ms: int) -> float:
        """Mark price at ``now_ms``: the last price times ``1 + basis`` (a seeded,
        mean-reverting basis of a few bp), rounded to 8 decimals.

        Deterministic like every other series (a function of the seed and the time only);
        used for unrealised PnL, position notional and funding payments.
        """
        i = self._idx(symbol)
        self._check_now(now_ms)
        return round(self._price_at(i, now_ms) * (1.0 + self._basis_at(i, now_ms)),
                     _MARK_DECIMALS)

    def _basis_at(self, i: int, now_ms: int) -> float:
        path = self._basis.get(i)
        if path is None:
            with self._lock:
                path = self._basis.get(i)
                if path is None:
                    rng = np.random.default_rng([self.spec.seed, 7, i])
                    phi = 0.5 ** (1.0 / _BASIS_HALF_LIFE_H)
                    path = np.clip(ou_path(rng, self._hours, phi, _BASIS_SD),
                                   -_BASIS_CLIP, _BASIS_CLIP)
                    self._basis[i] = path
        h, rem = divmod(now_ms - self._genesis_ms, HOUR_MS)
        if rem == 0:
            return float(path[h])
        frac = rem / HOUR_MS
        return float(path[h] + frac * (path[h + 1] - path[h]))

    def _price_at(self, i: int, now_ms: int) -> float:
        closes = self._close_path(i)
        h, rem = divmod(now_ms - self._genesis_ms, HOUR_MS)
        if rem == 0:
            return float(closes[h])
        a, b = float(closes[h]), float(closes[h + 1])
        frac = rem / HOUR_MS
        p = math.exp(math.log(a) + frac * (math.log(b) - math.log(a)))
        return float(round_to(np.array([p]), self._infos[i].price_decimals)[0])

    def klines(
        self,
        symbol: str,
        interval: str,
        start_ms: int | None,
        end_ms: int | None,
        limit: int,
        now_ms: int,
    ) -> list[list]:
        """Binance kline rows, including the still-forming candle at ``now_ms``.

        Parameters
        ----------
        symbol : str
            Binance id.
        interval : str
            One of :data:`INTERVALS`.
        start_ms, end_ms : int or None
            Candle open-time bounds (inclusive), as Binance's ``startTime``/``endTime``.
        limit : int
            Maximum number of rows (1..1500). With ``start_ms`` the first rows from it are
            returned, otherwise the last rows up to ``end_ms`` (or now).
        now_ms : int
            The simulated present; no candle opening after it is returned.

        Returns
        -------
        list of list
            ``[open_time, open, high, low, close, volume, close_time, quote_volume, trades,
            taker_buy_volume, taker_buy_quote_volume, "0"]`` with prices and volumes as
            strings, as Binance sends them.
        """
        i = self._idx(symbol)
        if interval not in INTERVALS:
            raise ValueError(f"unsupported interval {interval!r}; allowed: {', '.join(INTERVALS)}")
        self._check_now(now_ms)
        k = INTERVALS[interval]
        iv = k * HOUR_MS
        agg = self._agg(i, k)
        first = agg.first_open_ms
        if now_ms < first:
            return []
        jf = (now_ms - first) // iv  # the forming candle
        lo = 0 if start_ms is None else max(0, -(-(start_ms - first) // iv))
        hi = jf if end_ms is None else min(jf, (end_ms - first) // iv)
        if hi < lo or limit <= 0:
            return []
        if start_ms is not None:
            hi = min(hi, lo + limit - 1)
        else:
            lo = max(lo, hi - limit + 1)
        info = self._infos[i]
        pd_, qd = info.price_decimals, info.qty_decimals
        step = 10.0 ** (-qd)
        rows: list[list] = []
        closed_hi = min(hi, jf - 1)
        if closed_hi >= lo:
            sl = slice(lo, closed_hi + 1)
            for j, o, h, low, c, v, q in zip(
                range(lo, closed_hi + 1),
                agg.open[sl].tolist(), agg.high[sl].tolist(), agg.low[sl].tolist(),
                agg.close[sl].tolist(), agg.volume[sl].tolist(), agg.quote[sl].tolist(),
                strict=True,
            ):
                rows.append(_row(first + j * iv, iv, o, h, low, c, v, q, pd_, qd, step))
        if hi == jf:
            rows.append(self._forming(i, first + jf * iv, iv, now_ms, pd_, qd, step))
        return rows

    def _forming(
        self, i: int, open_ms: int, iv: int, now_ms: int, pd_: int, qd: int, step: float
    ) -> list:
        hourly = self._hourly_candles(i)
        a = (open_ms - self._genesis_ms) // HOUR_MS
        b, rem = divmod(now_ms - self._genesis_ms, HOUR_MS)
        closes = self._close_path(i)
        o = float(closes[a])
        c = self._price_at(i, now_ms)
        h = max(o, c)
        low = min(o, c)
        v = 0.0
        q = 0.0
        if b > a:
            h = max(h, float(hourly.high[a:b].max()))
            low = min(low, float(hourly.low[a:b].min()))
            v = float(hourly.volume[a:b].sum())
            q = float(hourly.quote[a:b].sum())
        if rem:
            frac = rem / HOUR_MS
            pv = math.floor(float(hourly.volume[b]) * frac)
            v += pv
            if hourly.volume[b] > 0:
                q += math.floor(float(hourly.quote[b]) * pv / float(hourly.volume[b]))
        return _row(open_ms, iv, o, h, low, c, v, q, pd_, qd, step)

    def price_range(self, symbol: str, start_ms: int, end_ms: int) -> tuple[float, float]:
        """Lowest and highest traded price in ``[start_ms, end_ms]`` without look-ahead.

        Uses the highs and lows of the hourly candles lying wholly inside the range and the
        intra-hour path (linear in log price) at both ends, so nothing after ``end_ms``
        leaks in. Used to decide whether resting limit orders were crossed.
        """
        i = self._idx(symbol)
        self._check_now(start_ms)
        self._check_now(end_ms)
        if end_ms < start_ms:
            raise ValueError("end_ms must not be before start_ms")
        pa, pb = self._price_at(i, start_ms), self._price_at(i, end_ms)
        lo, hi = min(pa, pb), max(pa, pb)
        a = -(-(start_ms - self._genesis_ms) // HOUR_MS)  # first whole hour
        b = (end_ms - self._genesis_ms) // HOUR_MS  # hours [a, b) lie inside the range
        closes = self._close_path(i)
        if b > a:
            hourly = self._hourly_candles(i)
            lo = min(lo, float(hourly.low[a:b].min()))
            hi = max(hi, float(hourly.high[a:b].max()))
        if b >= a:  # the hour boundaries inside the range are traded prices too
            lo = min(lo, float(closes[a:b + 1].min()))
            hi = max(hi, float(closes[a:b + 1].max()))
        return lo, hi

    def funding_rate(self, symbol: str, funding_time_ms: int) -> float:
        """Funding rate settled at a funding time (00:00, 08:00, 16:00 UTC)."""
        if funding_time_ms % FUNDING_MS:
            raise ValueError(f"{dt_from_ms(funding_time_ms).isoformat()} is not a funding time")
        return self.predicted_funding_rate(symbol, funding_time_ms)

    def predicted_funding_rate(self, symbol: str, now_ms: int) -> float:
        """The funding rate that would be settled at the next funding time, as of ``now_ms``.

        Uses only prices up to ``now_ms``; equals :meth:`funding_rate` at a funding time.
        """
        i = self._idx(symbol)
        self._check_now(now_ms)
        slot = -(-now_ms // FUNDING_MS)
        noise = self._noise(i)
        prev = max(self._genesis_ms, now_ms - FUNDING_MS)
        r8 = math.log(self._price_at(i, now_ms) / self._price_at(i, prev))
        n0 = -(-self._genesis_ms // FUNDING_MS)
        rate = 1e-4 + 0.01 * r8 + float(noise[(slot - n0) % noise.size])
        return round(min(max(rate, -_FUNDING_CLIP), _FUNDING_CLIP), 8)

    def _noise(self, i: int) -> np.ndarray:
        got = self._funding_noise.get(i)
        if got is None:
            rng = np.random.default_rng([self.spec.seed, 6, i])
            got = 4e-5 * rng.standard_normal(self._hours // 8 + 2)
            self._funding_noise[i] = got
        return got

    def funding_times(self, start_ms: int, end_ms: int) -> list[int]:
        """Funding times in ``[start_ms, end_ms]`` within the simulated history."""
        lo = max(start_ms, self._genesis_ms)
        hi = min(end_ms, self._genesis_ms + self._hours * HOUR_MS)
        first = -(-lo // FUNDING_MS) * FUNDING_MS
        return list(range(first, hi + 1, FUNDING_MS))

    def rules(self, symbol: str) -> dict:
        """Trading rules of a symbol (fixed for the whole history).

        Returns
        -------
        dict
            ``tickSize``, ``stepSize``, ``minQty``, ``maxQty``, ``marketMaxQty``,
            ``minNotional`` (floats) and ``pricePrecision``, ``quantityPrecision`` (ints).
        """
        info = self._infos[self._idx(symbol)]
        step = 10.0 ** (-info.qty_decimals)
        max_qty = 10.0 ** math.floor(math.log10(2e8 / info.p0))
        return {
            "tickSize": 10.0 ** (-info.price_decimals),
            "stepSize": step,
            "minQty": step,
            "maxQty": max(max_qty, step),
            "marketMaxQty": max(max_qty / 10.0, step),
            "minNotional": info.min_notional,
            "pricePrecision": info.price_decimals,
            "quantityPrecision": info.qty_decimals,
        }


def _row(
    open_ms: int, iv: int, o: float, h: float, low: float, c: float, v: float, q: float,
    pd_: int, qd: int, step: float,
) -> list:
    vol = v * step
    quote = q / 1e4
    ratio = 0.5 + 0.08 * math.tanh((c - o) / o * 50.0) if o > 0 else 0.5
    tb = math.floor(v * ratio) * step
    tbq = quote * (tb / vol) if vol > 0 else 0.0
    trades = int(quote / 2500.0) + (1 if v > 0 else 0)
    return [
        open_ms, f"{o:.{pd_}f}", f"{h:.{pd_}f}", f"{low:.{pd_}f}", f"{c:.{pd_}f}",
        f"{vol:.{qd}f}", open_ms + iv - 1, f"{quote:.4f}", trades, f"{tb:.{qd}f}",
        f"{tbq:.4f}", "0",
    ]
