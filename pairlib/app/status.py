"""What ``pairlib status`` shows: the state of the book and of the runs, read from the store.

:func:`collect` reads everything once into a plain dict with stable keys (``--json`` prints
it); :func:`render` draws it as rich tables; :func:`check` is the dead-man's switch of
``pairlib status --check``.

Nothing here sends an order or calls the venue: open pairs are marked at the closes of the
candle the last tick acted on, read from the local candle cache (the market the pair set was
built on), so the status works with the venue down and never needs a key.

The ``--check`` rule
    Exit 0 with one line ``ok: ...`` while the last *successful* tick's candle closed at most
    one bar plus ``schedule.stale_grace_seconds`` ago; otherwise exit 1 with one line
    ``stale: ...`` saying why: no store, no successful tick ever, or the last one too old.
    A failed or degraded tick does not fail the check by itself (the next tick may succeed
    within the grace, and it was notified), nor does the kill switch: a tick under the kill
    switch still runs and manages exits, which is what the check watches; the line says
    when the switch is on. The heartbeat ping follows the same rule
    (:func:`pairlib.app.notify.tick_fresh`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from pairlib.app.notify import tick_fresh
from pairlib.clock import iso, parse_time
from pairlib.config import Params, timeframe_ms
from pairlib.core.risk import kill_switch_active
from pairlib.edges.store import DB_NAME, PairStateRow, Store

__all__ = ["STATUS_KEYS", "check", "collect", "next_tick", "render"]

STATUS_KEYS = ("now", "state_dir", "check", "kill_switch", "equity", "open_pairs", "pair_set",
               "last_tick", "last_ok_tick", "next_tick", "incidents", "outbox")
"""The top-level keys of :func:`collect` (and of ``pairlib status --json``), in order."""


def next_tick(params: Params, now: datetime) -> datetime:
    """When the scheduler runs its next tick: the next candle close (by ``data.timeframe``)
    plus ``schedule.tick_delay_seconds`` that is still ahead of ``now``, as
    :func:`pairlib.app.schedule.next_runs` computes it for the scheduler itself."""
    from pairlib.app.schedule import next_runs

    return next_runs(params, now)["tick"]


def collect(params: Params, now: datetime) -> dict[str, Any]:
    """The status as plain data (JSON-ready; keys :data:`STATUS_KEYS`).

    Parameters
    ----------
    params : Params
        The params tree (state folder, timeframe, schedule, kill switch, candle cache).
    now : datetime
        The present (the CLI passes the system clock).

    Returns
    -------
    dict
        ``check`` (``ok``, ``line``), ``kill_switch`` (``on``, ``why``), ``equity`` (the
        last recorded: ``equity``, ``as_of``, ``realized_pnl``, ``unrealized_pnl``, or
        None), ``open_pairs`` (one dict per held pair: ``pair_id``, ``side``, ``amount_y``,
        ``amount_x``, ``entry_time``, ``entry_z``, ``closing``, ``unrealized_pnl`` and
        ``marked_at``, None where no mark is cached), ``pair_set`` (``id``, ``as_of``,
        ``age_days``, ``n_pairs``, or None), ``last_tick`` and ``last_ok_tick`` (``as_of``,
        ``status``, ``mode``, ``finished_at``, ``report``, ``message``, or None),
        ``next_tick`` (ISO time), ``incidents`` (unresolved: ``id``, ``tick_as_of``,
        ``kind``, ``symbol``, ``detail``), ``outbox`` (rows per delivery state). A missing
        store gives the empty status; nothing is created.
    """
    kill, why = kill_switch_active(params.risk)
    out: dict[str, Any] = {
        "now": iso(now), "state_dir": str(params.state_dir),
        "check": None, "kill_switch": {"on": bool(kill), "why": why},
        "equity": None, "open_pairs": [], "pair_set": None, "last_tick": None,
        "last_ok_tick": None, "next_tick": iso(next_tick(params, now)), "incidents": [],
        "outbox": {},
    }
    if not _has_store(params):
        out["check"] = {"ok": False, "line": _no_store_line(params)}
        return out
    with Store.at(params.state_dir) as db:
        out["check"] = _verdict(params, now, db, kill)
        last, last_ok = db.last_tick(), db.last_tick(status="ok")
        out["last_tick"] = _tick(last)
        out["last_ok_tick"] = _tick(last_ok)
        eq = db.equity_history()
        if len(eq):
            r = eq.iloc[-1]
            out["equity"] = {"as_of": str(r["tick_as_of"]), "equity": _num(r["equity"]),
                             "realized_pnl": _num(r["realized_pnl"]),
                             "unrealized_pnl": _num(r["unrealized_pnl"])}
        ps = db.latest_pair_set()
        if ps is not None:
            out["pair_set"] = {"id": ps.id, "as_of": ps.as_of, "n_pairs": len(ps.pairs),
                               "age_days": round((now - parse_time(ps.as_of))
                                                 .total_seconds() / 86_400, 2)}
        held = [r for r in db.pair_state_rows() if r.held]
        marks = _marks(params, ps.meta.venue_key if ps is not None and ps.meta else None,
                       None if last is None else parse_time(last.as_of),
                       {s for r in held for s in (r.y, r.x)})
        out["open_pairs"] = [_open_pair(r, marks) for r in held]
        inc = db.incidents(unresolved_only=True)
        out["incidents"] = [
            {"id": int(r["id"]), "tick_as_of": r["tick_as_of"], "kind": r["kind"],
             "symbol": r["symbol"], "detail": r["detail"]}
            for r in (inc.to_dict("records") if len(inc) else [])]
        out["outbox"] = db.outbox_counts()
    return out


def _has_store(params: Params) -> bool:
    return (Path(params.state_dir) / DB_NAME).exists()


def _no_store_line(params: Params) -> str:
    return f"stale: no store at {Path(params.state_dir) / DB_NAME} (no tick has run)"


def _verdict(params: Params, now: datetime, db: Store, kill: bool) -> dict[str, Any]:
    """The ``--check`` verdict and its one line (see the module docstring): the freshness
    rule the heartbeat also follows (:func:`pairlib.app.notify.tick_fresh`), plus what the
    line adds about the last tick and the kill switch."""
    fresh, line = tick_fresh(params, now, db)
    extra = []
    last = db.last_tick()
    if fresh and last is not None and last.status not in ("ok", "already_ran"):
        extra.append(f"the last tick {last.as_of} is {last.status}")
    if kill:
        extra.append("kill switch ON: exits only")
    text = line + ("; " + "; ".join(extra) if extra else "")
    return {"ok": fresh, "line": ("ok: " if fresh else "stale: ") + text}


def check(params: Params, now: datetime) -> tuple[int, str]:
    """The dead-man's switch: ``(exit code, one line)`` by the module docstring's rule;
    0 and ``ok: ...`` when fresh, 1 and ``stale: ...`` otherwise."""
    if not _has_store(params):
        return 1, _no_store_line(params)
    kill, _ = kill_switch_active(params.risk)
    with Store.at(params.state_dir) as db:
        verdict = _verdict(params, now, db, kill)
    return (0 if verdict["ok"] else 1), str(verdict["line"])


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _tick(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"as_of": row.as_of, "status": row.status, "mode": row.mode,
            "finished_at": row.finished_at, "report": row.notebook_path,
            "message": row.message}


def _marks(params: Params, venue_key: str | None, as_of: datetime | None,
           symbols: set[str]) -> dict[str, tuple[float, str]]:
    """Symbol -> (close, candle close time) of the candle the last tick acted on (or the
    newest cached before it), from the local candle cache of ``venue_key``."""
    if venue_key is None or as_of is None:
        return {}
    from pairlib.clock import from_ms
    from pairlib.edges.data import CandleCache

    cache = CandleCache(Path(params.data.cache_dir), venue_key, params.data.timeframe)
    tf_ms = timeframe_ms(params.data.timeframe)
    limit = int(as_of.timestamp() * 1000) - tf_ms  # the open of the candle closing at as_of
    out: dict[str, tuple[float, str]] = {}
    for symbol in sorted(symbols):
        cached = cache.read(symbol)
        if cached is None or not len(cached.open_ms):
            continue
        i = int(np.searchsorted(cached.open_ms, limit, side="right")) - 1
        if i >= 0:
            out[symbol] = (float(cached.values[i, 3]),
                           iso(from_ms(int(cached.open_ms[i]) + tf_ms)))
    return out


def _open_pair(r: PairStateRow, marks: Mapping[str, tuple[float, str]]) -> dict[str, Any]:
    """One held pair, its unrealized PnL at the marks (None without both marks and entry
    prices)."""
    pnl: float | None = None
    marked_at: str | None = None
    try:
        (cy, ty), (cx, _) = marks[r.y], marks[r.x]
        if r.entry_price_y and r.entry_price_x:
            pnl = (r.amount("y") * (cy - float(r.entry_price_y))
                   + r.amount("x") * (cx - float(r.entry_price_x)))
            marked_at = ty
    except KeyError:
        pass
    side = "long" if r.position > 0 else "short" if r.position < 0 else "legs"
    return {"pair_id": r.pair_id, "side": side, "amount_y": r.amount("y"),
            "amount_x": r.amount("x"), "entry_time": r.entry_time, "entry_z": r.entry_z,
            "closing": r.closing, "unrealized_pnl": pnl, "marked_at": marked_at}


def render(status: Mapping[str, Any], console: Any) -> None:
    """Print ``status`` (from :func:`collect`) as rich tables on ``console``."""
    from rich.table import Table

    from pairlib.app.notify import report_link

    chk = status["check"] or {}
    console.print(chk.get("line", ""), style="green" if chk.get("ok") else "red",
                  highlight=False)
    top = Table(show_header=False, box=None, pad_edge=False)
    top.add_column(style="bold")
    top.add_column()
    eq = status["equity"]
    top.add_row("equity", "-" if eq is None else
                f"{eq['equity']:,.2f} USDT at {eq['as_of']} (unrealized "
                f"{_fmt(eq['unrealized_pnl'])})")
    ks = status["kill_switch"]
    top.add_row("kill switch", ("ON: " + ks["why"]) if ks["on"] else "off")
    ps = status["pair_set"]
    top.add_row("pair set", "none" if ps is None else
                f"#{ps['id']} as of {ps['as_of']}, {ps['n_pairs']} pairs, "
                f"{ps['age_days']:g} days old")
    lt = status["last_tick"]
    if lt is None:
        top.add_row("last tick", "none")
    else:
        top.add_row("last tick", f"{lt['as_of']} {lt['status']} ({lt['mode'] or '-'})")
        top.add_row("report", report_link(lt["report"]) or "-")
        if lt["message"]:
            top.add_row("message", str(lt["message"]))
    lok = status["last_ok_tick"]
    top.add_row("last ok tick", "none" if lok is None else str(lok["as_of"]))
    top.add_row("next tick", str(status["next_tick"]))
    ob = status["outbox"]
    top.add_row("notifications", ", ".join(f"{n} {k.replace('_', ' ')}"
                                           for k, n in ob.items() if n) or "none")
    console.print(top)
    pairs = Table(title=f"open pairs ({len(status['open_pairs'])})", title_justify="left")
    for col in ("pair", "side", "amount y", "amount x", "entry", "unrealized PnL", "marked at"):
        pairs.add_column(col, overflow="fold")
    for p in status["open_pairs"]:
        pairs.add_row(p["pair_id"], p["side"] + (f" (closing: {p['closing']})"
                                                 if p["closing"] else ""),
                      f"{p['amount_y']:g}", f"{p['amount_x']:g}", str(p["entry_time"] or "-"),
                      _fmt(p["unrealized_pnl"]), str(p["marked_at"] or "-"))
    console.print(pairs)
    if status["incidents"]:
        inc = Table(title=f"unresolved incidents ({len(status['incidents'])})",
                    title_justify="left")
        for col in ("id", "tick", "kind", "symbol", "detail"):
            inc.add_column(col, overflow="fold")
        for i in status["incidents"]:
            inc.add_row(str(i["id"]), str(i["tick_as_of"] or "-"), i["kind"],
                        str(i["symbol"] or "-"), i["detail"])
        console.print(inc)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:+,.2f}"
