"""Binance USD-M futures REST payloads built from the simulated market and account.

Each handler takes the request parameters (strings, as sent) and a :class:`Venue` (market,
account, sim time) and returns the JSON-ready response, or raises
:class:`~pairlib.sim.account.ExchangeReject` with the code Binance would send. Field names
and string formatting follow Binance's documented responses (numbers as strings with the
symbol's precision) because that is what ccxt's ``binanceusdm`` parses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pairlib.sim.account import Account, ExchangeReject
from pairlib.sim.market import FUNDING_MS, INTERVALS, Market

__all__ = ["INCOME_DEFAULT_WINDOW_MS", "ROUTES", "Route", "Venue"]

Params = dict[str, str]

INCOME_DEFAULT_WINDOW_MS = 7 * 86_400_000
"""What ``/fapi/v1/income`` covers without ``startTime``: the last 7 days (Binance)."""


@dataclass
class Venue:
    """What a handler may touch: the market, the account, the sim time and the wall time."""

    market: Market
    account: Account
    now_ms: int
    wall_ms: int
    weight_limit: int
    fill_ratio: float | None = None


@dataclass(frozen=True)
class Route:
    """An endpoint: its handler, request weight and whether it must be signed."""

    handler: Callable[[Params, Venue], Any]
    weight: Callable[[Params], int]
    signed: bool = False
    is_order: bool = False


def _w(n: int) -> Callable[[Params], int]:
    return lambda p: n


def _w_symbol(with_symbol: int, without: int) -> Callable[[Params], int]:
    return lambda p: with_symbol if p.get("symbol") else without


def _w_klines(p: Params) -> int:
    limit = int(p.get("limit") or 500) if (p.get("limit") or "500").isdigit() else 500
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


# ---------------------------------------------------------------------- parameter helpers
def _missing(name: str) -> ExchangeReject:
    return ExchangeReject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                                 "or malformed.")


def _symbol(p: Params, v: Venue, required: bool = True) -> str | None:
    sym = p.get("symbol")
    if not sym:
        if required:
            raise _missing("symbol")
        return None
    if sym not in v.market.symbols:
        raise ExchangeReject(-1121, "Invalid symbol.")
    return sym


def _int(p: Params, name: str, default: int | None = None) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ExchangeReject(-1100, f"Illegal characters found in parameter '{name}'; "
                                    f"legal range is '^[0-9]{{1,20}}$'.") from None


def _float(p: Params, name: str) -> float | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise ExchangeReject(-1100, f"Illegal characters found in parameter '{name}'.") from None


def _limit(p: Params, default: int, maximum: int) -> int:
    limit = _int(p, "limit", default)
    assert limit is not None
    if not 1 <= limit <= maximum:
        raise ExchangeReject(-1130, "Data sent for parameter 'limit' is not valid.")
    return limit


def _px(v: Venue, sym: str, x: float) -> str:
    return f"{x:.{v.market.rules(sym)['pricePrecision']}f}"


def _qty(v: Venue, sym: str, x: float) -> str:
    return f"{x:.{v.market.rules(sym)['quantityPrecision']}f}"


def _usd(x: float) -> str:
    return f"{x:.8f}"


def _mark(x: float) -> str:
    """A mark price as Binance sends it: 8 decimals, not rounded to the tick."""
    return f"{x:.8f}"


# ---------------------------------------------------------------------- market data
def ping(p: Params, v: Venue) -> dict:
    """``GET /fapi/v1/ping``."""
    return {}


def server_time(p: Params, v: Venue) -> dict:
    """``GET /fapi/v1/time``: the *wall* clock (recvWindow is checked against it)."""
    return {"serverTime": v.wall_ms}


def exchange_info(p: Params, v: Venue) -> dict:
    """``GET /fapi/v1/exchangeInfo``."""
    m = v.market
    genesis_ms = int(m.spec.genesis.timestamp() * 1000)
    symbols = []
    for sym in m.symbols:
        r = m.rules(sym)
        tick, step = f"{r['tickSize']:.{r['pricePrecision']}f}", _qty(v, sym, r["stepSize"])
        symbols.append({
            "symbol": sym, "pair": sym, "contractType": "PERPETUAL",
            "deliveryDate": 4133404800000, "onboardDate": genesis_ms - 86_400_000 * 30,
            "status": "TRADING", "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000", "baseAsset": m.base_asset(sym),
            "quoteAsset": "USDT", "marginAsset": "USDT",
            "pricePrecision": r["pricePrecision"], "quantityPrecision": r["quantityPrecision"],
            "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
            "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
            "liquidationFee": "0.012500", "marketTakeBound": "0.05",
            "maxMoveOrderLimit": 10000,
            "filters": [
                {"filterType": "PRICE_FILTER", "minPrice": tick,
                 "maxPrice": f"{r['tickSize'] * 1e9:.{r['pricePrecision']}f}", "tickSize": tick},
                {"filterType": "LOT_SIZE", "minQty": step,
                 "maxQty": _qty(v, sym, r["maxQty"]), "stepSize": step},
                {"filterType": "MARKET_LOT_SIZE", "minQty": step,
                 "maxQty": _qty(v, sym, r["marketMaxQty"]), "stepSize": step},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                {"filterType": "MIN_NOTIONAL", "notional": f"{r['minNotional']:g}"},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500",
                 "multiplierDown": "0.9500", "multiplierDecimal": "4"},
            ],
            "orderTypes": ["LIMIT", "MARKET"],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        })
    return {
        "timezone": "UTC", "serverTime": v.wall_ms, "futuresType": "U_MARGINED",
        "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
             "limit": v.weight_limit},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
        ],
        "exchangeFilters": [],
        "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
        "symbols": symbols,
    }


def klines(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/klines`` (includes the forming candle; nothing opens after now)."""
    sym = _symbol(p, v)
    assert sym is not None
    interval = p.get("interval")
    if not interval:
        raise _missing("interval")
    if interval not in INTERVALS:
        raise ExchangeReject(-1120, "Invalid interval.")
    limit = _limit(p, 500, 1500)
    start, end = _int(p, "startTime"), _int(p, "endTime")
    if start is not None and end is not None and start > end:
        raise ExchangeReject(-1023, "Start time is greater than end time.")
    return v.market.klines(sym, interval, start, end, limit, v.now_ms)


def ticker_price(p: Params, v: Venue) -> Any:
    """``GET /fapi/v1/ticker/price`` and ``/fapi/v2/ticker/price``."""
    sym = _symbol(p, v, required=False)
    rows = [{"symbol": s, "price": _px(v, s, v.market.price(s, v.now_ms)), "time": v.now_ms}
            for s in ([sym] if sym else v.market.symbols)]
    return rows[0] if sym else rows


def ticker_24hr(p: Params, v: Venue) -> Any:
    """``GET /fapi/v1/ticker/24hr`` from the hourly candles of the last 24 h."""
    sym = _symbol(p, v, required=False)
    start = max(v.now_ms - 86_400_000, int(v.market.spec.genesis.timestamp() * 1000))
    rows = []
    for s in [sym] if sym else v.market.symbols:
        k = v.market.klines(s, "1h", start - start % 3_600_000, None, 30, v.now_ms)
        last = v.market.price(s, v.now_ms)
        first = v.market.price(s, start)
        vol = sum(float(r[5]) for r in k)
        quote = sum(float(r[7]) for r in k)
        rows.append({
            "symbol": s, "priceChange": _px(v, s, last - first),
            "priceChangePercent": f"{(last / first - 1) * 100:.3f}",
            "weightedAvgPrice": _px(v, s, quote / vol if vol else last),
            "lastPrice": _px(v, s, last), "lastQty": _qty(v, s, v.market.rules(s)["minQty"]),
            "openPrice": _px(v, s, first), "highPrice": _px(v, s, max(float(r[2]) for r in k)),
            "lowPrice": _px(v, s, min(float(r[3]) for r in k)),
            "volume": _qty(v, s, vol), "quoteVolume": f"{quote:.4f}",
            "openTime": start, "closeTime": v.now_ms, "firstId": 1,
            "lastId": 1 + sum(int(r[8]) for r in k), "count": sum(int(r[8]) for r in k),
        })
    return rows[0] if sym else rows


def premium_index(p: Params, v: Venue) -> Any:
    """``GET /fapi/v1/premiumIndex``: mark price and the predicted funding rate.

    ``markPrice`` is the market's own mark series; ``indexPrice`` (the spot index, not
    modelled separately) is the last price.
    """
    sym = _symbol(p, v, required=False)
    nxt = (v.now_ms // FUNDING_MS + 1) * FUNDING_MS
    rows = []
    for s in [sym] if sym else v.market.symbols:
        mark = v.market.mark_price(s, v.now_ms)
        rows.append({
            "symbol": s, "markPrice": _mark(mark),
            "indexPrice": _mark(v.market.price(s, v.now_ms)),
            "estimatedSettlePrice": _mark(mark),
            "lastFundingRate": f"{v.market.predicted_funding_rate(s, v.now_ms):.8f}",
            "interestRate": "0.00010000", "nextFundingTime": nxt, "time": v.now_ms,
        })
    return rows[0] if sym else rows


def funding_rate_history(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/fundingRate`` (settled rates up to now, ascending)."""
    sym = _symbol(p, v, required=False)
    limit = _limit(p, 100, 1000)
    start, end = _int(p, "startTime"), _int(p, "endTime")
    end = v.now_ms if end is None else min(end, v.now_ms)
    times = v.market.funding_times(start if start is not None else 0, end)
    times = times[:limit] if start is not None else times[-limit:]
    out = []
    for t in times:
        for s in [sym] if sym else v.market.symbols:
            out.append({"symbol": s, "fundingTime": t,
                        "fundingRate": f"{v.market.funding_rate(s, t):.8f}",
                        "markPrice": _mark(v.market.mark_price(s, t))})
    return out[:limit] if start is not None else out[-limit:]


# ---------------------------------------------------------------------- account
def _brackets(sym: str) -> dict:
    return {"symbol": sym, "notionalCoef": 1.0, "brackets": [
        {"bracket": 1, "initialLeverage": 125, "notionalCap": 1_000_000, "notionalFloor": 0,
         "maintMarginRatio": 0.01, "cum": 0.0},
        {"bracket": 2, "initialLeverage": 20, "notionalCap": 1_000_000_000,
         "notionalFloor": 1_000_000, "maintMarginRatio": 0.025, "cum": 15000.0},
    ]}


def leverage_bracket(p: Params, v: Venue) -> Any:
    """``GET /fapi/v1/leverageBracket`` (a simplified two-bracket table)."""
    sym = _symbol(p, v, required=False)
    rows = [_brackets(s) for s in ([sym] if sym else v.market.symbols)]
    return rows[0] if sym else rows


def set_leverage(p: Params, v: Venue) -> dict:
    """``POST /fapi/v1/leverage``."""
    sym = _symbol(p, v)
    assert sym is not None
    lev = _int(p, "leverage")
    if lev is None:
        raise _missing("leverage")
    v.account.set_leverage(sym, lev)
    return {"leverage": lev, "maxNotionalValue": "1000000", "symbol": sym}


def _position_rows(v: Venue, symbol: str | None, version: int) -> list[dict]:
    acct, rows = v.account, []
    positions = acct.positions()
    syms = [symbol] if symbol else sorted(positions)
    for s in syms:
        pos = acct.position(s)
        if version == 3 and symbol is None and pos.amount == 0:
            continue
        mark = v.market.mark_price(s, v.now_ms)
        notional = pos.amount * mark
        im = abs(notional) / pos.leverage
        row = {
            "symbol": s, "positionSide": "BOTH", "positionAmt": _qty(v, s, pos.amount),
            "entryPrice": f"{pos.entry_price:.8f}", "breakEvenPrice": f"{pos.entry_price:.8f}",
            "markPrice": _mark(mark),
            "unRealizedProfit": _usd(pos.amount * (mark - pos.entry_price)),
            "liquidationPrice": "0", "isolatedMargin": "0", "notional": _usd(notional),
            "marginAsset": "USDT", "isolatedWallet": "0", "initialMargin": _usd(im),
            "maintMargin": _usd(abs(notional) * (0.01 if abs(notional) < 1e6 else 0.025)),
            "positionInitialMargin": _usd(im), "openOrderInitialMargin": "0", "adl": 0,
            "bidNotional": "0", "askNotional": "0", "updateTime": v.now_ms,
        }
        if version == 2:
            row.update({"leverage": str(pos.leverage), "marginType": "cross",
                        "isAutoAddMargin": "false", "maxNotionalValue": "1000000"})
        rows.append(row)
    return rows


def position_risk_v2(p: Params, v: Venue) -> list:
    """``GET /fapi/v2/positionRisk``."""
    return _position_rows(v, _symbol(p, v, required=False), 2)


def position_risk_v3(p: Params, v: Venue) -> list:
    """``GET /fapi/v3/positionRisk`` (only symbols with a position unless one is named)."""
    return _position_rows(v, _symbol(p, v, required=False), 3)


def _asset_row(v: Venue, m: dict[str, float]) -> dict:
    return {
        "asset": "USDT", "walletBalance": _usd(m["wallet"]),
        "unrealizedProfit": _usd(m["unrealized"]), "marginBalance": _usd(m["margin_balance"]),
        "maintMargin": _usd(m["maint_margin"]), "initialMargin": _usd(m["initial_margin"]),
        "positionInitialMargin": _usd(m["position_im"]),
        "openOrderInitialMargin": _usd(m["order_im"]), "crossWalletBalance": _usd(m["wallet"]),
        "crossUnPnl": _usd(m["unrealized"]), "availableBalance": _usd(m["available"]),
        "maxWithdrawAmount": _usd(max(0.0, min(m["available"], m["wallet"]))),
        "marginAvailable": True, "updateTime": v.now_ms,
    }


def account_info(p: Params, v: Venue) -> dict:
    """``GET /fapi/v2/account`` and ``/fapi/v3/account``."""
    m = v.account.margin(v.now_ms)
    asset = _asset_row(v, m)
    return {
        "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
        "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1,
        "totalInitialMargin": asset["initialMargin"], "totalMaintMargin": asset["maintMargin"],
        "totalWalletBalance": asset["walletBalance"],
        "totalUnrealizedProfit": asset["unrealizedProfit"],
        "totalMarginBalance": asset["marginBalance"],
        "totalPositionInitialMargin": asset["positionInitialMargin"],
        "totalOpenOrderInitialMargin": asset["openOrderInitialMargin"],
        "totalCrossWalletBalance": asset["crossWalletBalance"],
        "totalCrossUnPnl": asset["crossUnPnl"], "availableBalance": asset["availableBalance"],
        "maxWithdrawAmount": asset["maxWithdrawAmount"],
        "assets": [asset],
        "positions": [
            {k: r[k] for k in ("symbol", "positionSide", "positionAmt", "unRealizedProfit",
                               "isolatedMargin", "notional", "isolatedWallet", "initialMargin",
                               "maintMargin", "updateTime")}
            for r in _position_rows(v, None, 3)
        ],
    }


def balance(p: Params, v: Venue) -> list:
    """``GET /fapi/v2/balance`` and ``/fapi/v3/balance``."""
    m = v.account.margin(v.now_ms)
    return [{
        "accountAlias": "SimFutures", "asset": "USDT", "balance": _usd(m["wallet"]),
        "crossWalletBalance": _usd(m["wallet"]), "crossUnPnl": _usd(m["unrealized"]),
        "availableBalance": _usd(m["available"]),
        "maxWithdrawAmount": _usd(max(0.0, min(m["available"], m["wallet"]))),
        "marginAvailable": True, "updateTime": v.now_ms,
    }]


def dual_side(p: Params, v: Venue) -> dict:
    """``GET /fapi/v1/positionSide/dual``: always one-way mode."""
    return {"dualSidePosition": False}


# ---------------------------------------------------------------------- orders
def order_json(v: Venue, o: dict[str, Any], with_time: bool = True) -> dict:
    """An order as Binance futures serialises it."""
    s = o["symbol"]
    pdec = v.market.rules(s)["pricePrecision"]
    out = {
        "orderId": o["orderId"], "symbol": s, "status": o["status"],
        "clientOrderId": o["clientOrderId"], "price": _px(v, s, o["price"]),
        "avgPrice": f"{o['avgPrice']:.{pdec + 2}f}", "origQty": _qty(v, s, o["origQty"]),
        "executedQty": _qty(v, s, o["executedQty"]), "cumQty": _qty(v, s, o["executedQty"]),
        "cumQuote": _usd(o["cumQuote"]), "timeInForce": o["timeInForce"], "type": o["type"],
        "reduceOnly": o["reduceOnly"], "closePosition": False, "side": o["side"],
        "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE",
        "priceProtect": False, "origType": o["type"], "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0,
        "updateTime": o["updateTime"],
    }
    if with_time:
        out["time"] = o["time"]
    return out


def _bool(p: Params, name: str) -> bool:
    raw = (p.get(name) or "false").lower()
    if raw not in ("true", "false"):
        raise ExchangeReject(-1100, f"Illegal characters found in parameter '{name}'.")
    return raw == "true"


def new_order(p: Params, v: Venue) -> dict:
    """``POST /fapi/v1/order`` (MARKET and LIMIT; GTC, IOC, FOK, GTX)."""
    sym = _symbol(p, v)
    assert sym is not None
    for name in ("side", "type", "quantity"):
        if not p.get(name):
            raise _missing(name)
    if p.get("positionSide", "BOTH") != "BOTH":
        raise ExchangeReject(-4061, "Order's position side does not match user's setting.")
    quantity = _float(p, "quantity")
    assert quantity is not None
    order = v.account.new_order(
        symbol=sym, side=p["side"].upper(), order_type=p["type"].upper(), quantity=quantity,
        price=_float(p, "price"), time_in_force=p.get("timeInForce"),
        reduce_only=_bool(p, "reduceOnly"), client_id=p.get("newClientOrderId") or None,
        now_ms=v.now_ms, fill_ratio=v.fill_ratio,
    )
    return order_json(v, order, with_time=False)


def _order_ref(p: Params) -> tuple[int | None, str | None]:
    oid = _int(p, "orderId")
    cid = p.get("origClientOrderId") or None
    if oid is None and cid is None:
        raise ExchangeReject(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but "
                                    "both were empty/null!")
    return oid, cid


def get_order(p: Params, v: Venue) -> dict:
    """``GET /fapi/v1/order`` by ``orderId`` or ``origClientOrderId``."""
    sym = _symbol(p, v)
    oid, cid = _order_ref(p)
    return order_json(v, v.account.find_order(sym, oid, cid))


def cancel_order(p: Params, v: Venue) -> dict:
    """``DELETE /fapi/v1/order``."""
    sym = _symbol(p, v)
    assert sym is not None
    oid, cid = _order_ref(p)
    return order_json(v, v.account.cancel(sym, oid, cid, v.now_ms), with_time=False)


def cancel_all(p: Params, v: Venue) -> dict:
    """``DELETE /fapi/v1/allOpenOrders``."""
    sym = _symbol(p, v)
    assert sym is not None
    v.account.cancel_all(sym, v.now_ms)
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def open_orders(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/openOrders``."""
    return [order_json(v, o) for o in v.account.open_orders(_symbol(p, v, required=False))]


def all_orders(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/allOrders``."""
    sym = _symbol(p, v)
    limit = _limit(p, 500, 1000)
    start, end, oid = _int(p, "startTime"), _int(p, "endTime"), _int(p, "orderId")
    rows = [o for o in v.account.orders(sym)
            if (oid is None or o["orderId"] >= oid)
            and (start is None or o["time"] >= start) and (end is None or o["time"] <= end)]
    rows = rows[:limit] if (oid is not None or start is not None) else rows[-limit:]
    return [order_json(v, o) for o in rows]


def user_trades(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/userTrades``."""
    sym = _symbol(p, v)
    assert sym is not None
    limit = _limit(p, 500, 1000)
    start, end = _int(p, "startTime"), _int(p, "endTime")
    from_id, oid = _int(p, "fromId"), _int(p, "orderId")
    rows = [t for t in v.account.trades(sym)
            if (from_id is None or t["id"] >= from_id) and (oid is None or t["orderId"] == oid)
            and (start is None or t["time"] >= start) and (end is None or t["time"] <= end)]
    rows = rows[:limit] if (from_id is not None or start is not None) else rows[-limit:]
    return [{
        "symbol": t["symbol"], "id": t["id"], "orderId": t["orderId"], "side": t["side"],
        "price": _px(v, t["symbol"], t["price"]), "qty": _qty(v, t["symbol"], t["qty"]),
        "realizedPnl": _usd(t["realizedPnl"]), "quoteQty": _usd(t["quoteQty"]),
        "commission": _usd(t["commission"]), "commissionAsset": "USDT", "time": t["time"],
        "positionSide": "BOTH", "buyer": t["buyer"], "maker": t["maker"],
    } for t in rows]


def income(p: Params, v: Venue) -> list:
    """``GET /fapi/v1/income`` (REALIZED_PNL, COMMISSION, FUNDING_FEE).

    Without ``startTime`` only the last 7 days (by the sim clock) are covered, as on
    Binance: records from ``now - 7 days`` on (and up to ``endTime`` if sent), the newest
    ``limit`` of them. With ``startTime`` the first ``limit`` records from it.
    """
    sym = _symbol(p, v, required=False)
    kind = p.get("incomeType") or None
    limit = _limit(p, 100, 1000)
    start, end = _int(p, "startTime"), _int(p, "endTime")
    if start is not None and end is not None and start > end:
        raise ExchangeReject(-1023, "Start time is greater than end time.")
    lo = start if start is not None else v.now_ms - INCOME_DEFAULT_WINDOW_MS
    rows = [i for i in v.account.income(kind)
            if (sym is None or i["symbol"] == sym)
            and i["time"] >= lo and (end is None or i["time"] <= end)]
    rows = rows[:limit] if start is not None else rows[-limit:]
    return [{**i, "income": _usd(i["income"])} for i in rows]


def capital_config(p: Params, v: Venue) -> list:
    """``GET /sapi/v1/capital/config/getall`` and ``/sapi/v1/margin/allPairs`` (called by
    ccxt's fetchCurrencies when keys are set): a futures-only account has none."""
    return []


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/fapi/v1/ping"): Route(ping, _w(1)),
    ("GET", "/fapi/v1/time"): Route(server_time, _w(1)),
    ("GET", "/fapi/v1/exchangeInfo"): Route(exchange_info, _w(1)),
    ("GET", "/fapi/v1/klines"): Route(klines, _w_klines),
    ("GET", "/fapi/v1/ticker/price"): Route(ticker_price, _w_symbol(1, 2)),
    ("GET", "/fapi/v2/ticker/price"): Route(ticker_price, _w_symbol(1, 2)),
    ("GET", "/fapi/v1/ticker/24hr"): Route(ticker_24hr, _w_symbol(1, 40)),
    ("GET", "/fapi/v1/premiumIndex"): Route(premium_index, _w_symbol(1, 10)),
    ("GET", "/fapi/v1/fundingRate"): Route(funding_rate_history, _w(1)),
    ("GET", "/fapi/v1/leverageBracket"): Route(leverage_bracket, _w(1), signed=True),
    ("POST", "/fapi/v1/leverage"): Route(set_leverage, _w(1), signed=True),
    ("GET", "/fapi/v2/account"): Route(account_info, _w(5), signed=True),
    ("GET", "/fapi/v3/account"): Route(account_info, _w(5), signed=True),
    ("GET", "/fapi/v2/balance"): Route(balance, _w(5), signed=True),
    ("GET", "/fapi/v3/balance"): Route(balance, _w(5), signed=True),
    ("GET", "/fapi/v2/positionRisk"): Route(position_risk_v2, _w(5), signed=True),
    ("GET", "/fapi/v3/positionRisk"): Route(position_risk_v3, _w(5), signed=True),
    ("GET", "/fapi/v1/positionSide/dual"): Route(dual_side, _w(30), signed=True),
    ("POST", "/fapi/v1/order"): Route(new_order, _w(1), signed=True, is_order=True),
    ("GET", "/fapi/v1/order"): Route(get_order, _w(1), signed=True),
    ("DELETE", "/fapi/v1/order"): Route(cancel_order, _w(1), signed=True),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route(cancel_all, _w(1), signed=True),
    ("GET", "/fapi/v1/openOrders"): Route(open_orders, _w_symbol(1, 40), signed=True),
    ("GET", "/fapi/v1/allOrders"): Route(all_orders, _w(5), signed=True),
    ("GET", "/fapi/v1/userTrades"): Route(user_trades, _w(5), signed=True),
    ("GET", "/fapi/v1/income"): Route(income, _w(30), signed=True),
    ("GET", "/sapi/v1/capital/config/getall"): Route(capital_config, _w(10), signed=True),
    ("GET", "/sapi/v1/margin/allPairs"): Route(capital_config, _w(1), signed=True),
}
