"""The simulated USD-M futures account: wallet, one-way positions, orders, fills, funding.

Model
-----
* One asset (USDT), cross margin, one-way mode (``positionSide`` is always ``BOTH``).
* Leverage per symbol, default :data:`DEFAULT_LEVERAGE` (20x, Binance's default for a new
  symbol); ``POST /fapi/v1/leverage`` changes it (1..125). Initial margin of a position or
  an open order is ``notional / leverage``. A new order that would increase exposure needs
  ``increase_notional / leverage + taker fee <= available`` where ``available = wallet +
  unrealised PnL - position margin - open-order margin``; otherwise Binance error -2019.
  Unrealised PnL and position notional use the *mark* price (:meth:`Market.mark_price`), as
  Binance does. There is no liquidation engine.
* MARKET orders fill at once at the current simulated last price moved against the taker by
  ``slippage_bps`` (rounded to the tick, away from the taker). A MARKET order that fills
  only in part (the ``partial_fill_next`` fault: the book ran out of liquidity) ends
  ``EXPIRED`` with its filled part, as on Binance; market orders never rest. LIMIT orders
  that are marketable fill at once as taker at the better of that price and the limit;
  others rest and fill in full as maker at their limit price when the clock advances and
  the traded price range crosses them (see :meth:`Market.price_range`).
* ``reduceOnly`` orders never increase a position: they are cut to the position size and
  rejected (-2022) when there is nothing to reduce; a resting one expires when the position
  is gone.
* Fees: ``notional * fee`` charged to the wallet at each fill. Realised PnL is credited at
  each reducing fill. Funding: at each 8h funding time the clock passes, every open
  position pays ``amount * mark * rate`` (the position's notional at the mark price; longs
  pay positive rates), recorded as income.
* State is one JSON document written atomically (temp file, fsync, ``os.replace``) after
  every change, so a server restarted on the same file continues where it stopped. Events
  (resting fills, funding) are processed once: the account keeps a high-water mark of the
  clock, so rewinding the clock never settles anything twice.
* ``newClientOrderId`` must match ``^[.A-Z:/a-z0-9_-]{1,36}$`` (ASCII only; -1100 otherwise,
  checked before anything else) and be unique among *open* orders (as on Binance); -4116
  otherwise.
  Reusing the id of a filled order is accepted, as Binance does: do not rely on -4116 for
  idempotency, look the order up first.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pairlib.sim.market import Market

__all__ = [
    "DEFAULT_LEVERAGE",
    "INSUFFICIENT_MARGIN_MSG",
    "Account",
    "ExchangeReject",
    "Position",
]

DEFAULT_LEVERAGE = 20
INSUFFICIENT_MARGIN_MSG = "Account has insufficient balance for requested action."
"""Message sent with -2019. Binance futures says "Margin is insufficient."; ccxt maps -2019
to InsufficientFunds only for URLs under ``https://fapi.binance.com``, so against a loopback
URL it would raise a bare ExchangeError. This Binance message is in ccxt's host-independent
table (-> InsufficientFunds), so a plain ccxt client behaves as it does against Binance."""
MAX_LEVERAGE = 125
CLIENT_ID_RE = re.compile(r"[.A-Z:/a-z0-9_-]{1,36}")
"""Binance's legal ``newClientOrderId`` (matched in full; ASCII letters and digits only)."""
_CLIENT_ID_MSG = ("Illegal characters found in parameter 'newClientOrderId'; legal range is "
                  "'^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
_STATE_VERSION = 1
_OPEN = ("NEW", "PARTIALLY_FILLED")


class ExchangeReject(Exception):
    """A request refused with a Binance error code (sent as ``{"code", "msg"}``)."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True)
class Position:
    """A one-way position: ``amount`` > 0 long, < 0 short (base units)."""

    symbol: str
    amount: float
    entry_price: float
    leverage: int


def _spec_key(market: Market) -> dict[str, Any]:
    s = market.spec
    return {"seed": s.seed, "n_symbols": s.n_symbols, "n_pairs": s.n_pairs,
            "genesis": s.genesis.isoformat(), "horizon_bars": s.horizon_bars,
            "half_lives": list(s.half_lives) if s.half_lives else None,
            "breakdowns": s.breakdowns}


class Account:
    """The simulator's account book (thread-safe; every method takes the sim time).

    Parameters
    ----------
    market : Market
        Prices, rules and funding rates.
    state_path : Path or None
        JSON state file; loaded if it exists, rewritten after every change. None keeps the
        account in memory only.
    now_ms : int
        Sim time at creation (the start of event processing for a fresh account).
    starting_balance, taker_fee, maker_fee, slippage_bps, default_leverage
        See the module docstring.
    """

    def __init__(
        self,
        market: Market,
        state_path: Path | None,
        now_ms: int,
        *,
        starting_balance: float = 10_000.0,
        taker_fee: float = 0.0005,
        maker_fee: float = 0.0002,
        slippage_bps: float = 2.0,
        default_leverage: int = DEFAULT_LEVERAGE,
    ) -> None:
        self.market = market
        self.state_path = Path(state_path) if state_path is not None else None
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slippage_bps = slippage_bps
        self.default_leverage = default_leverage
        self._lock = threading.RLock()
        if self.state_path is not None and self.state_path.exists():
            self._s = json.loads(self.state_path.read_text())
            if self._s.get("version") != _STATE_VERSION:
                raise ValueError(f"{self.state_path}: unsupported state version "
                                 f"{self._s.get('version')!r}")
            if self._s.get("market") != _spec_key(market):
                raise ValueError(
                    f"{self.state_path}: state was written for market {self._s.get('market')}, "
                    f"not {_spec_key(market)}"
                )
        else:
            self._s = {
                "version": _STATE_VERSION,
                "market": _spec_key(market),
                "wallet": float(starting_balance),
                "processed_ms": int(now_ms),
                "next_order_id": 8_389_765_001,
                "next_trade_id": 512_001,
                "next_tran_id": 9_001,
                "leverage": {},
                "positions": {},
                "orders": {},
                "trades": [],
                "income": [],
            }
            self._save()

    @staticmethod
    def saved_clock(state_path: Path) -> int | None:
        """The sim time (ms) a state file was last settled to, or None if there is none."""
        try:
            return int(json.loads(Path(state_path).read_text())["processed_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    # ------------------------------------------------------------------ persistence
    def _save(self) -> None:
        if self.state_path is None:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        blob = json.dumps(self._s, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(dir=self.state_path.parent, prefix=".sim-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(blob)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ read access
    @property
    def wallet_balance(self) -> float:
        """Wallet balance in USDT (deposits + realised PnL - fees + funding)."""
        return float(self._s["wallet"])

    @property
    def processed_ms(self) -> int:
        """Sim time up to which resting fills and funding have been settled."""
        return int(self._s["processed_ms"])

    def leverage(self, symbol: str) -> int:
        """Leverage of a symbol."""
        return int(self._s["leverage"].get(symbol, self.default_leverage))

    def positions(self) -> dict[str, Position]:
        """Non-zero positions by symbol id."""
        with self._lock:
            return {
                s: Position(s, p["amt"], p["entry"], self.leverage(s))
                for s, p in self._s["positions"].items() if p["amt"] != 0
            }

    def position(self, symbol: str) -> Position:
        """The position in ``symbol`` (amount 0 when flat)."""
        p = self._s["positions"].get(symbol, {"amt": 0.0, "entry": 0.0})
        return Position(symbol, p["amt"], p["entry"], self.leverage(symbol))

    def orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """All orders (copies), oldest first."""
        with self._lock:
            return [dict(o) for o in self._s["orders"].values()
                    if symbol is None or o["symbol"] == symbol]

    def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Open (NEW or PARTIALLY_FILLED) orders, oldest first."""
        return [o for o in self.orders(symbol) if o["status"] in _OPEN]

    def trades(self, symbol: str | None = None) -> list[dict[str, Any]]:
        """Fills (copies), oldest first."""
        with self._lock:
            return [dict(t) for t in self._s["trades"] if symbol is None or t["symbol"] == symbol]

    def income(self, income_type: str | None = None) -> list[dict[str, Any]]:
        """Income records (REALIZED_PNL, COMMISSION, FUNDING_FEE), oldest first."""
        with self._lock:
            return [dict(i) for i in self._s["income"]
                    if income_type is None or i["incomeType"] == income_type]

    def funding_paid(self) -> float:
        """Net funding received (negative when paid) since the account was opened."""
        return sum(i["income"] for i in self.income("FUNDING_FEE"))

    def find_order(
        self, symbol: str | None, order_id: int | None, client_id: str | None
    ) -> dict[str, Any]:
        """An order by id or client id (the newest with that client id).

        Raises
        ------
        ExchangeReject
            -2013 when there is no such order.
        """
        with self._lock:
            found: dict[str, Any] | None = None
            if order_id is not None:
                found = self._s["orders"].get(str(order_id))
            elif client_id is not None:
                for o in reversed(self._s["orders"].values()):
                    if o["clientOrderId"] == client_id:
                        found = o
                        break
            if found is None or (symbol is not None and found["symbol"] != symbol):
                raise ExchangeReject(-2013, "Order does not exist.")
            return dict(found)

    def margin(self, now_ms: int) -> dict[str, float]:
        """Margin summary at ``now_ms``: wallet, unrealised PnL, margins, available."""
        with self._lock:
            upnl = pos_im = maint = 0.0
            for s, p in self._s["positions"].items():
                if p["amt"] == 0:
                    continue
                mark = self.market.mark_price(s, now_ms)
                upnl += p["amt"] * (mark - p["entry"])
                notional = abs(p["amt"]) * mark
                pos_im += notional / self.leverage(s)
                maint += notional * _maint_ratio(notional)
            ord_im = sum(
                (o["origQty"] - o["executedQty"]) * o["price"] / self.leverage(o["symbol"])
                for o in self._s["orders"].values()
                if o["status"] in _OPEN and o["type"] == "LIMIT" and not o["reduceOnly"]
            )
            wallet = self.wallet_balance
            available = wallet + upnl - pos_im - ord_im
            return {
                "wallet": wallet, "unrealized": upnl, "margin_balance": wallet + upnl,
                "position_im": pos_im, "order_im": ord_im, "initial_margin": pos_im + ord_im,
                "maint_margin": maint, "available": available,
            }

    # ------------------------------------------------------------------ mutations
    def set_leverage(self, symbol: str, leverage: int) -> int:
        """Set a symbol's leverage (1..125); -4028 otherwise."""
        if not 1 <= leverage <= MAX_LEVERAGE:
            raise ExchangeReject(-4028, f"Leverage {leverage} is not valid")
        with self._lock:
            self._s["leverage"][symbol] = int(leverage)
            self._save()
        return leverage

    def new_order(
        self,
        *,
        symbol: str,
        side: str,
        order_type: str,
        quantity: float,
        price: float | None,
        time_in_force: str | None,
        reduce_only: bool,
        client_id: str | None,
        now_ms: int,
        fill_ratio: float | None = None,
    ) -> dict[str, Any]:
        """Validate, book and (if marketable) fill a new order; returns the order.

        Raises
        ------
        ExchangeReject
            With the Binance code Binance would send.
        """
        if client_id is not None and not CLIENT_ID_RE.fullmatch(client_id):
            raise ExchangeReject(-1100, _CLIENT_ID_MSG)
        rules = self.market.rules(symbol)
        step, tick = rules["stepSize"], rules["tickSize"]
        qdec, pdec = rules["quantityPrecision"], rules["pricePrecision"]
        if side not in ("BUY", "SELL"):
            raise ExchangeReject(-1117, "Invalid side.")
        if order_type not in ("MARKET", "LIMIT"):
            raise ExchangeReject(-1116, "Invalid orderType.")
        if not quantity > 0:
            raise ExchangeReject(-4003, "Quantity less than or equal to zero.")
        if not _on_grid(quantity, step):
            raise ExchangeReject(-1111, "Precision is over the maximum defined for this asset.")
        quantity = round(quantity, qdec)
        if quantity < rules["minQty"]:
            raise ExchangeReject(-1013, "Filter failure: LOT_SIZE")
        max_qty = rules["marketMaxQty"] if order_type == "MARKET" else rules["maxQty"]
        if quantity > max_qty:
            raise ExchangeReject(-4005, "Quantity greater than max quantity.")
        tif = time_in_force or ("GTC" if order_type == "LIMIT" else None)
        if order_type == "LIMIT":
            if price is None:
                raise ExchangeReject(-1102, "Mandatory parameter 'price' was not sent, was "
                                            "empty/null, or malformed.")
            if not price > 0:
                raise ExchangeReject(-4013, "Price less than min price.")
            if not _on_grid(price, tick):
                raise ExchangeReject(-4014, "Price not increased by tick size.")
            if tif not in ("GTC", "IOC", "FOK", "GTX"):
                raise ExchangeReject(-1115, "Invalid timeInForce.")
            price = round(price, pdec)
        with self._lock:
            if client_id is not None and any(
                o["clientOrderId"] == client_id and o["status"] in _OPEN
                for o in self._s["orders"].values()
            ):
                raise ExchangeReject(-4116, "ClientOrderId is duplicated.")
            last = self.market.price(symbol, now_ms)
            taker_px = self._taker_price(side, last, tick, pdec)
            marketable = order_type == "MARKET" or (
                price is not None and (price >= last if side == "BUY" else price <= last)
            )
            if marketable and tif == "GTX":
                raise ExchangeReject(-5022, "Due to the order could not be executed as maker, "
                                            "the Post Only order will be rejected.")
            pos = self._s["positions"].get(symbol, {"amt": 0.0})["amt"]
            signed = quantity if side == "BUY" else -quantity
            if reduce_only:
                if pos == 0 or (pos > 0) == (signed > 0):
                    raise ExchangeReject(-2022, "ReduceOnly Order is rejected.")
            else:
                ref = taker_px if order_type == "MARKET" else float(price or last)
                if marketable and order_type == "LIMIT":
                    ref = min(ref, taker_px) if side == "BUY" else max(ref, taker_px)
                if quantity * ref < rules["minNotional"]:
                    raise ExchangeReject(
                        -4164, f"Order's notional must be no smaller than "
                               f"{rules['minNotional']:g} (unless you choose reduce only).")
                increase = quantity if pos == 0 or (pos > 0) == (signed > 0) else max(
                    0.0, quantity - abs(pos))
                need = increase * ref / self.leverage(symbol) + quantity * ref * self.taker_fee
                if increase > 0 and need > self.margin(now_ms)["available"] + 1e-9:
                    raise ExchangeReject(-2019, INSUFFICIENT_MARGIN_MSG)
            oid = self._s["next_order_id"]
            self._s["next_order_id"] = oid + 1
            order = {
                "orderId": oid, "symbol": symbol, "status": "NEW",
                "clientOrderId": client_id or f"sim-{oid}", "price": float(price or 0.0),
                "avgPrice": 0.0, "origQty": quantity, "executedQty": 0.0, "cumQuote": 0.0,
                "timeInForce": tif or "GTC", "type": order_type, "reduceOnly": reduce_only,
                "side": side, "time": now_ms, "updateTime": now_ms,
            }
            self._s["orders"][str(oid)] = order
            if marketable:
                qty = quantity
                if fill_ratio is not None:
                    qty = max(step, math.floor(quantity * fill_ratio / step) * step)
                    qty = round(min(qty, quantity), qdec)
                fill_px = taker_px
                if order_type == "LIMIT":
                    assert price is not None
                    fill_px = min(price, taker_px) if side == "BUY" else max(price, taker_px)
                self._fill(order, qty, fill_px, maker=False, now_ms=now_ms)
                if order["status"] in _OPEN and (order_type == "MARKET" or tif in ("IOC", "FOK")):
                    order["status"] = "EXPIRED"  # the unfilled rest never rests
            elif tif in ("IOC", "FOK"):
                order["status"] = "EXPIRED"
            self._save()
            return dict(order)

    def cancel(self, symbol: str, order_id: int | None, client_id: str | None,
               now_ms: int) -> dict[str, Any]:
        """Cancel an open order; -2011 if it is not open, -2013 if unknown."""
        with self._lock:
            found = self.find_order(symbol, order_id, client_id)
            order = self._s["orders"][str(found["orderId"])]
            if order["status"] not in _OPEN:
                raise ExchangeReject(-2011, "Unknown order sent.")
            order["status"] = "CANCELED"
            order["updateTime"] = now_ms
            self._save()
            return dict(order)

    def cancel_all(self, symbol: str, now_ms: int) -> int:
        """Cancel every open order of a symbol; returns how many."""
        with self._lock:
            n = 0
            for order in self._s["orders"].values():
                if order["symbol"] == symbol and order["status"] in _OPEN:
                    order["status"] = "CANCELED"
                    order["updateTime"] = now_ms
                    n += 1
            self._save()
            return n

    def advance(self, now_ms: int) -> None:
        """Settle resting fills and funding from the high-water mark up to ``now_ms``."""
        with self._lock:
            start = self.processed_ms
            if now_ms <= start:
                return
            t = start
            for ft in self.market.funding_times(start + 1, now_ms):
                self._fill_resting(t, ft)
                self._settle_funding(ft)
                t = ft
            self._fill_resting(t, now_ms)
            self._s["processed_ms"] = int(now_ms)
            self._save()

    # ------------------------------------------------------------------ internals
    def _taker_price(self, side: str, last: float, tick: float, pdec: int) -> float:
        slip = self.slippage_bps / 1e4
        if side == "BUY":
            px = math.ceil(round(last * (1 + slip) / tick, 6)) * tick
        else:
            px = math.floor(round(last * (1 - slip) / tick, 6)) * tick
        return round(max(px, tick), pdec)

    def _fill_resting(self, t0: int, t1: int) -> None:
        if t1 <= t0:
            return
        ranges: dict[str, tuple[float, float]] = {}
        for order in list(self._s["orders"].values()):
            if order["status"] not in _OPEN or order["type"] != "LIMIT":
                continue
            sym = order["symbol"]
            if sym not in ranges:
                ranges[sym] = self.market.price_range(sym, t0, t1)
            lo, hi = ranges[sym]
            crossed = lo <= order["price"] if order["side"] == "BUY" else hi >= order["price"]
            if not crossed:
                continue
            qty = round(order["origQty"] - order["executedQty"],
                        self.market.rules(sym)["quantityPrecision"])
            self._fill(order, qty, order["price"], maker=True, now_ms=t1)

    def _fill(self, order: dict[str, Any], qty: float, px: float, *, maker: bool,
              now_ms: int) -> None:
        sym = order["symbol"]
        qdec = self.market.rules(sym)["quantityPrecision"]
        pos = self._s["positions"].setdefault(sym, {"amt": 0.0, "entry": 0.0, "update": now_ms})
        amt, entry = pos["amt"], pos["entry"]
        signed = qty if order["side"] == "BUY" else -qty
        if order["reduceOnly"]:
            if amt == 0 or (amt > 0) == (signed > 0):
                order["status"] = "EXPIRED"
                order["updateTime"] = now_ms
                return
            qty = min(qty, abs(amt))
            signed = math.copysign(qty, signed)
        fee = qty * px * (self.maker_fee if maker else self.taker_fee)
        pnl = 0.0
        new_amt = round(amt + signed, qdec)
        if amt == 0 or (amt > 0) == (signed > 0):
            entry = (abs(amt) * entry + qty * px) / abs(new_amt)
        else:
            closed = min(qty, abs(amt))
            pnl = closed * (px - entry) * (1.0 if amt > 0 else -1.0)
            if new_amt == 0:
                entry = 0.0
            elif (new_amt > 0) != (amt > 0):
                entry = px
        pos.update(amt=new_amt, entry=entry, update=now_ms)
        self._s["wallet"] = round(self._s["wallet"] + pnl - fee, 10)
        order["executedQty"] = round(order["executedQty"] + qty, qdec)
        order["cumQuote"] = order["cumQuote"] + qty * px
        order["avgPrice"] = order["cumQuote"] / order["executedQty"]
        if order["executedQty"] >= order["origQty"] - 1e-12:
            order["status"] = "FILLED"
        elif order["reduceOnly"] and new_amt == 0:
            order["status"] = "EXPIRED"  # nothing left to reduce
        else:
            order["status"] = "PARTIALLY_FILLED"
        order["updateTime"] = now_ms
        tid = self._s["next_trade_id"]
        self._s["next_trade_id"] = tid + 1
        self._s["trades"].append({
            "id": tid, "orderId": order["orderId"], "symbol": sym, "side": order["side"],
            "price": px, "qty": qty, "quoteQty": qty * px, "commission": fee,
            "commissionAsset": "USDT", "realizedPnl": pnl, "buyer": order["side"] == "BUY",
            "maker": maker, "positionSide": "BOTH", "time": now_ms,
        })
        if pnl:
            self._income(sym, "REALIZED_PNL", pnl, now_ms, str(tid))
        self._income(sym, "COMMISSION", -fee, now_ms, str(tid))
        if new_amt == 0:  # a flat position leaves no resting reduce-only orders behind
            for other in self._s["orders"].values():
                if (other["symbol"] == sym and other["reduceOnly"]
                        and other["status"] in _OPEN and other is not order):
                    other["status"] = "EXPIRED"
                    other["updateTime"] = now_ms

    def _settle_funding(self, funding_ms: int) -> None:
        for sym, pos in self._s["positions"].items():
            if pos["amt"] == 0:
                continue
            mark = self.market.mark_price(sym, funding_ms)
            rate = self.market.funding_rate(sym, funding_ms)
            payment = -pos["amt"] * mark * rate
            self._s["wallet"] = round(self._s["wallet"] + payment, 10)
            self._income(sym, "FUNDING_FEE", payment, funding_ms, "")

    def _income(self, symbol: str, kind: str, amount: float, t: int, trade_id: str) -> None:
        tran = self._s["next_tran_id"]
        self._s["next_tran_id"] = tran + 1
        self._s["income"].append({
            "symbol": symbol, "incomeType": kind, "income": amount, "asset": "USDT",
            "info": kind, "time": t, "tranId": tran, "tradeId": trade_id,
        })


def _on_grid(value: float, step: float) -> bool:
    k = value / step
    return abs(k - round(k)) < 1e-6


def _maint_ratio(notional: float) -> float:
    """Maintenance margin ratio of the simplified bracket table (see the server)."""
    return 0.01 if notional < 1_000_000 else 0.025
