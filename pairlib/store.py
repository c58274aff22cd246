"""The state store: one SQLite database, the single place for pair sets, positions, orders,
fills, funding, ticks, decisions, incidents and equity.

* WAL journal, ``foreign_keys`` on, a ``schema_version`` table and forward-only migrations
  (:data:`MIGRATIONS`); opening a database written by a newer pairlib fails clearly.
* One transaction per state change: every public mutator runs inside :meth:`Store.tx`.
* The store is passed in (no module-level connection). Times are ISO-8601 UTC strings.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from pairlib.errors import StoreError

__all__ = ["DB_NAME", "MIGRATIONS", "PairSet", "Store", "iso", "pair_id"]

DB_NAME = "pairlib.db"

MIGRATIONS: tuple[str, ...] = (
    # 1: everything the foundation, pair generation and the live tick need.
    """
    CREATE TABLE pair_sets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        as_of TEXT NOT NULL,
        params_hash TEXT NOT NULL,
        notebook_path TEXT,
        created_at TEXT NOT NULL,
        n_pairs INTEGER NOT NULL
    );
    CREATE TABLE pair_set_pairs (
        pair_set_id INTEGER NOT NULL REFERENCES pair_sets(id),
        rank INTEGER NOT NULL,
        pair_id TEXT NOT NULL,
        y TEXT NOT NULL,
        x TEXT NOT NULL,
        beta REAL NOT NULL,
        alpha REAL NOT NULL,
        pvalue REAL,
        half_life REAL,
        spread_mean REAL,
        spread_std REAL,
        stats_json TEXT,
        PRIMARY KEY (pair_set_id, pair_id)
    );
    CREATE TABLE ticks (
        as_of TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        duration_s REAL,
        notebook_path TEXT,
        pair_set_id INTEGER,
        mode TEXT,
        message TEXT
    );
    CREATE TABLE pair_state (
        pair_id TEXT PRIMARY KEY,
        y TEXT NOT NULL,
        x TEXT NOT NULL,
        beta REAL NOT NULL,
        alpha REAL NOT NULL,
        position INTEGER NOT NULL DEFAULT 0,
        locked_out INTEGER NOT NULL DEFAULT 0,
        amount_y REAL NOT NULL DEFAULT 0,
        amount_x REAL NOT NULL DEFAULT 0,
        entry_z REAL,
        entry_time TEXT,
        entry_price_y REAL,
        entry_price_x REAL,
        spread_std REAL,
        pair_set_id INTEGER,
        updated_tick TEXT
    );
    CREATE TABLE orders (
        client_id TEXT PRIMARY KEY,
        exchange_id TEXT,
        tick_as_of TEXT NOT NULL,
        pair_id TEXT NOT NULL,
        leg TEXT NOT NULL,
        action TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        amount REAL NOT NULL,
        filled REAL NOT NULL DEFAULT 0,
        average REAL,
        fee REAL NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        reduce_only INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        error TEXT
    );
    CREATE TABLE fills (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        amount REAL NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        ts TEXT NOT NULL
    );
    CREATE TABLE funding (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        amount REAL NOT NULL,
        ts TEXT NOT NULL,
        UNIQUE (symbol, ts)
    );
    CREATE TABLE equity (
        tick_as_of TEXT PRIMARY KEY,
        equity REAL NOT NULL,
        free REAL,
        used REAL,
        realized_pnl REAL,
        unrealized_pnl REAL,
        gross_notional REAL
    );
    CREATE TABLE decisions (
        tick_as_of TEXT NOT NULL,
        pair_id TEXT NOT NULL,
        z REAL,
        signal INTEGER,
        action TEXT NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (tick_as_of, pair_id)
    );
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tick_as_of TEXT,
        kind TEXT NOT NULL,
        symbol TEXT,
        detail TEXT NOT NULL,
        created_at TEXT NOT NULL,
        resolved INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX orders_tick ON orders(tick_as_of);
    CREATE INDEX fills_client ON fills(client_id);
    """,
)


def iso(when: datetime) -> str:
    """ISO-8601 UTC string with a trailing ``Z`` (the store's time format; naive = UTC)."""
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class PairSet:
    """A versioned set of chosen pairs, as the tick reads it."""

    id: int
    as_of: str
    params_hash: str
    notebook_path: str | None
    pairs: pd.DataFrame


class Store:
    """SQLite-backed state store.

    Parameters
    ----------
    path : str or Path
        Database file; its folder is created. ``":memory:"`` for tests.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    @classmethod
    def at(cls, state_dir: str | Path) -> Store:
        """Open the project's database, ``<state_dir>/pairlib.db`` (created on first use)."""
        return cls(Path(state_dir) / DB_NAME)

    # -- lifecycle ---------------------------------------------------------------------
    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """The schema version the database is at."""
        row = self._conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        return int(row[0] or 0)

    def _migrate(self) -> None:
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this pairlib knows "
                f"({len(MIGRATIONS)}); upgrade pairlib"
            )
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            with self.tx() as c:
                for statement in script.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(
                    "INSERT INTO schema_version (version, applied_at) "
                    "VALUES (?, strftime('%Y-%m-%dT%H:%M:%SZ','now'))",
                    (version,),
                )

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on success, rolled back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- generic reads -------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read-only query and return a DataFrame (for reports and tests)."""
        cur = self._conn.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return pd.DataFrame([tuple(r) for r in cur.fetchall()], columns=cols)

    def tables(self) -> list[str]:
        """Names of the tables in the database."""
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"
        ).fetchall()
        return [r[0] for r in rows]

    # -- pair sets -----------------------------------------------------------------------
    def save_pair_set(
        self,
        as_of: datetime,
        params_hash: str,
        pairs: pd.DataFrame,
        notebook_path: str | None,
        created_at: datetime,
    ) -> int:
        """Store a new versioned pair set; earlier sets stay for the record.

        ``pairs`` needs columns y, x, beta, alpha; pvalue, half_life, spread_mean,
        spread_std are stored when present and every other column goes to ``stats_json``.
        Returns the new pair set id.
        """
        missing = {"y", "x", "beta", "alpha"} - set(pairs.columns)
        if missing:
            raise StoreError(f"pair set is missing columns {sorted(missing)}")
        known = {"y", "x", "beta", "alpha", "pvalue", "half_life", "spread_mean", "spread_std"}
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO pair_sets (as_of, params_hash, notebook_path, created_at, n_pairs)"
                " VALUES (?, ?, ?, ?, ?)",
                (iso(as_of), params_hash, notebook_path, iso(created_at), len(pairs)),
            )
            set_id = int(cur.lastrowid or 0)
            for rank, row in enumerate(pairs.to_dict("records"), start=1):
                extra = {k: _jsonable(v) for k, v in row.items() if k not in known}
                c.execute(
                    "INSERT INTO pair_set_pairs (pair_set_id, rank, pair_id, y, x, beta, alpha,"
                    " pvalue, half_life, spread_mean, spread_std, stats_json)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        set_id, rank, pair_id(str(row["y"]), str(row["x"])), str(row["y"]),
                        str(row["x"]), float(row["beta"]), float(row["alpha"]),
                        _opt_float(row.get("pvalue")), _opt_float(row.get("half_life")),
                        _opt_float(row.get("spread_mean")), _opt_float(row.get("spread_std")),
                        json.dumps(extra, sort_keys=True),
                    ),
                )
        return set_id

    def latest_pair_set(self, as_of: datetime | None = None) -> PairSet | None:
        """The newest pair set (with ``as_of`` at or before the given time, if given)."""
        sql = "SELECT * FROM pair_sets"
        args: tuple[Any, ...] = ()
        if as_of is not None:
            sql += " WHERE as_of <= ?"
            args = (iso(as_of),)
        row = self._conn.execute(sql + " ORDER BY as_of DESC, id DESC LIMIT 1", args).fetchone()
        if row is None:
            return None
        pairs = self.query(
            "SELECT rank, pair_id, y, x, beta, alpha, pvalue, half_life, spread_mean, spread_std"
            " FROM pair_set_pairs WHERE pair_set_id = ? ORDER BY rank",
            (row["id"],),
        )
        return PairSet(
            id=int(row["id"]), as_of=row["as_of"], params_hash=row["params_hash"],
            notebook_path=row["notebook_path"], pairs=pairs,
        )


def pair_id(y: str, x: str) -> str:
    """Stable identifier of a pair: ``"Y~X"`` with the unified symbols."""
    return f"{y}~{x}"


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if f != f else f


def _jsonable(v: Any) -> Any:
    if isinstance(v, pd.Timestamp | datetime):
        return iso(v)
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v
