"""The state store: one SQLite database, the single place for pair sets, positions, orders,
fills, funding, ticks, decisions, incidents and equity.

* WAL journal, ``foreign_keys`` on, a ``schema_version`` table and forward-only migrations
  (:data:`MIGRATIONS`); opening a database written by a newer pairlib fails clearly.
* One transaction per state change: every public mutator runs inside :meth:`Store.tx`.
* The store is passed in (no module-level connection). Times are ISO-8601 UTC strings.
* Every SQLite failure -- when opening, migrating, reading or writing -- surfaces as one
  :class:`~pairlib.errors.StoreError` whose one-line message names the database file and
  what to do (corrupt or truncated file, locked by another process, read-only, disk full),
  never as a bare :mod:`sqlite3` error: the connection itself translates (:class:`_Connection`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from pairlib.clock import iso
from pairlib.core.portfolio import pair_id
from pairlib.errors import StoreError
from pairlib.failpoints import failpoint

__all__ = [
    "DB_NAME", "MIGRATIONS", "OUTBOX_STATES", "OrderRow", "OutboxEntry", "OutboxRow", "PairSet",
    "PairSetMeta", "PairStateRow", "Store", "TickRow", "iso", "pair_id",
]

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
    # 2: venue positions an operator accepted with ``pairlib reconcile --accept`` (append-only;
    # a symbol's accepted amount is its latest row's).
    """
    CREATE TABLE accepted_positions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        amount REAL NOT NULL,
        incident_id INTEGER NOT NULL REFERENCES incidents(id),
        created_at TEXT NOT NULL
    );
    CREATE INDEX accepted_positions_symbol ON accepted_positions(symbol, id);
    """,
    # 3: a close (exit, stop, flatten, exit_no_data) begun and not completed: the pair keeps
    # its position until the venue holds none of its legs.
    """
    ALTER TABLE pair_state ADD COLUMN closing TEXT;
    """,
    # 4: what each pair set was built on (venue and its market key, timeframe, z lookback,
    # code version, data range); NULL for sets stored before (not checked, see
    # pairlib.engine.generate.check_pair_set).
    """
    ALTER TABLE pair_sets ADD COLUMN venue_kind TEXT;
    ALTER TABLE pair_sets ADD COLUMN venue_key TEXT;
    ALTER TABLE pair_sets ADD COLUMN timeframe TEXT;
    ALTER TABLE pair_sets ADD COLUMN zscore_lookback INTEGER;
    ALTER TABLE pair_sets ADD COLUMN code_version TEXT;
    ALTER TABLE pair_sets ADD COLUMN data_start TEXT;
    ALTER TABLE pair_sets ADD COLUMN data_end TEXT;
    """,
    # 5: the risk budget an open pair was sized with (its loss limit is a multiple of it).
    """
    ALTER TABLE pair_state ADD COLUMN risk_budget REAL;
    """,
    # 6: the notification outbox. A row is written in the transaction of the event it reports
    # and delivered afterwards (pairlib.app.notify); ``dedupe_key`` makes a re-run's or a
    # second caller's copy of the same message a no-op. ``state``: pending, sending (claimed
    # by a delivery run), delivered, failed (attempts exhausted), in_doubt (a send that may
    # have reached its destination without being recorded: never resent), no_destination.
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at TEXT NOT NULL,
        kind TEXT NOT NULL,
        run TEXT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        report TEXT,
        dedupe_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at TEXT NOT NULL,
        claimed_at TEXT,
        delivered_at TEXT,
        delivered_to TEXT NOT NULL DEFAULT '',
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
    """,
)


class _Row:
    """A frozen record of one stored row. Read it by attribute; ``row["col"]`` and
    ``row.get("col")`` also work, so a row can stand where a read-only mapping is expected."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The column's value, or ``default`` for a column the row does not have."""
        return getattr(self, key) if key in self.__dataclass_fields__ else default  # type: ignore[attr-defined]

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class TickRow(_Row):
    """One ``ticks`` row: a tick's status and where its report is."""

    as_of: str
    status: str
    started_at: str
    finished_at: str | None = None
    duration_s: float | None = None
    notebook_path: str | None = None
    pair_set_id: int | None = None
    mode: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class PairStateRow(_Row):
    """One pair's persisted state (``pair_state``): amounts are signed contracts filled."""

    pair_id: str
    y: str
    x: str
    beta: float
    alpha: float
    position: int = 0
    locked_out: int = 0
    amount_y: float = 0.0
    amount_x: float = 0.0
    entry_z: float | None = None
    entry_time: str | None = None
    entry_price_y: float | None = None
    entry_price_x: float | None = None
    spread_std: float | None = None
    pair_set_id: int | None = None
    updated_tick: str | None = None
    closing: str | None = None
    risk_budget: float | None = None

    def amount(self, leg: str) -> float:
        """The signed amount held on leg ``y`` or ``x``."""
        return float((self.amount_y if leg == "y" else self.amount_x) or 0.0)

    @property
    def held(self) -> bool:
        """Whether the pair holds a position or any leg."""
        return int(self.position) != 0 or self.amount("y") != 0.0 or self.amount("x") != 0.0


@dataclass(frozen=True)
class OrderRow(_Row):
    """One ``orders`` row: an order's intent and what the venue reported."""

    client_id: str
    tick_as_of: str
    pair_id: str
    leg: str
    action: str
    symbol: str
    side: str
    amount: float
    status: str
    created_at: str
    updated_at: str
    exchange_id: str | None = None
    filled: float = 0.0
    average: float | None = None
    fee: float = 0.0
    reduce_only: int = 0
    error: str | None = None


OUTBOX_STATES = ("pending", "sending", "delivered", "failed", "in_doubt", "no_destination")
"""The states of an outbox row (see migration 6)."""


@dataclass(frozen=True)
class OutboxEntry:
    """A notification to write into the outbox (with the event it reports).

    Attributes
    ----------
    kind : str
        What happened: ``entry``, ``exit``, ``stop``, ``loss_limit``, ``kill_switch``, an
        incident's kind, ``job_failed``, ``daily_summary``, ...
    title, body : str
        The message.
    dedupe_key : str
        Unique per message: a second entry with the same key is ignored, so a re-run or a
        second caller reporting the same event adds nothing.
    run : str, optional
        The run the message is about (a tick's candle close, ISO-8601).
    report : str, optional
        The run's report notebook (its path as the runner reserved it).
    """

    kind: str
    title: str
    body: str
    dedupe_key: str
    run: str | None = None
    report: str | None = None


@dataclass(frozen=True)
class OutboxRow(_Row):
    """One ``outbox`` row: a message and its delivery state (``delivered_to`` holds the
    comma-separated ids of the destinations it reached)."""

    id: int
    created_at: str
    kind: str
    title: str
    body: str
    dedupe_key: str
    state: str
    attempts: int
    next_attempt_at: str
    run: str | None = None
    report: str | None = None
    claimed_at: str | None = None
    delivered_at: str | None = None
    delivered_to: str = ""
    last_error: str | None = None

    @property
    def targets_done(self) -> frozenset[str]:
        """The destination ids this message has reached."""
        return frozenset(t for t in self.delivered_to.split(",") if t)


R = TypeVar("R", bound=_Row)


@dataclass(frozen=True)
class PairSetMeta:
    """What a pair set was built on (stored with it, migration 4).

    Attributes
    ----------
    venue_kind : str
        ``venue.kind`` of the generation run (``sim``, ``paper``, ``demo``, ``live``).
    venue_key : str
        The market the candles came from: the adapter's
        :attr:`~pairlib.venue.exchange.Exchange.venue_key` (``sim-s7-n48``, ``binanceusdm``, ...).
    timeframe : str
        ``data.timeframe`` of the candles.
    lookback : int
        ``strategy.lookback``: the z-score window the selection capped half-lives with.
    code_version : str
        The git commit of the code (``-dirty`` when it had uncommitted changes), else the
        installed package version.
    data_start, data_end : str
        The candles' range: the first candle's open and the last candle's close (ISO-8601,
        ``Z``).
    """

    venue_kind: str
    venue_key: str
    timeframe: str
    lookback: int
    code_version: str
    data_start: str
    data_end: str


@dataclass(frozen=True)
class PairSet:
    """A versioned set of chosen pairs, as the tick reads it; ``meta`` is None for a set
    stored before pair sets recorded what they were built on."""

    id: int
    as_of: str
    params_hash: str
    notebook_path: str | None
    pairs: pd.DataFrame
    meta: PairSetMeta | None = None


class Store:
    """SQLite-backed state store.

    Parameters
    ----------
    path : str or Path
        Database file; its folder is created. ``":memory:"`` for tests.
    busy_timeout_s : float
        How long a statement waits for another process's lock before failing with
        :class:`StoreError` ("locked by another process").

    Raises
    ------
    StoreError
        The file cannot be opened or migrated: not a SQLite database, corrupt or truncated,
        locked, read-only while a migration is due, its folder cannot be created, or its
        schema is newer than this pairlib. Every later method raises it too on any SQLite
        failure.

    Notes
    -----
    A database file that exists but is not writable -- by permission, or because its owner
    write bit is clear (``chmod 0444``), which is honoured even for root, who could write it
    anyway -- is opened read-only (``mode=ro``): reads work and the first write raises
    :class:`StoreError` ("is read-only"). :attr:`read_only` tells which.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0, *,
                 read_only: bool = False) -> None:
        self.path = str(path)
        self.busy_timeout_s = float(busy_timeout_s)
        self.read_only = False
        target = self.path
        if read_only:
            file = Path(self.path)
            if not file.is_file():
                raise StoreError(f"{self.path}: no state database here to read (nothing has "
                                 "run with this state_dir yet)")
            self.read_only = True
            target = f"{file.resolve().as_uri()}?mode=ro"
        elif self.path != ":memory:":
            file = Path(self.path)
            try:
                file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(
                    f"cannot create the folder of {self.path} ({e.strerror}): create it, or "
                    "point state_dir at a writable folder"
                ) from e
            self.read_only = _not_writable(file)
            if self.read_only:
                target = f"{file.resolve().as_uri()}?mode=ro"
        with _translated(self.path, self.busy_timeout_s):
            conn = sqlite3.connect(
                target, isolation_level=None, timeout=self.busy_timeout_s,
                uri=self.read_only, factory=_Connection,
            )
        assert isinstance(conn, _Connection)
        conn.db_path, conn.busy_timeout_s = self.path, self.busy_timeout_s
        self._conn: _Connection = conn
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            conn.close()
            raise

    @classmethod
    def at(cls, state_dir: str | Path, busy_timeout_s: float = 30.0, *,
           read_only: bool = False) -> Store:
        """Open the project's database, ``<state_dir>/pairlib.db`` (created on first use).

        ``read_only=True`` opens an existing database for reading only (``mode=ro``): nothing
        is created or migrated, a database that needs a migration is refused, and every write
        raises :class:`StoreError`. Readers that must never change the state (the dashboard)
        use it."""
        return cls(Path(state_dir) / DB_NAME, busy_timeout_s=busy_timeout_s,
                   read_only=read_only)

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
        """One transaction: committed on success, rolled back on any exception.

        A failed ``COMMIT`` (disk full, I/O error) is rolled back too, so a
        :class:`StoreError` from here always means none of the transaction was committed.
        SQLite may already have rolled back on its own (it does on a full disk): the explicit
        rollback then is skipped, so the original error is the one raised.
        """
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                with suppress(StoreError):  # the error that got us here is the one to report
                    self._conn.execute("ROLLBACK")
            raise

    # -- generic reads -------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read-only query and return a DataFrame (for reports and tests)."""
        cur = self._conn.execute(sql, params)
        cols = [d[0] for d in cur.description or ()]
        return pd.DataFrame([tuple(r) for r in cur.fetchall()], columns=cols)

    def _one(self, kind: type[R], sql: str, params: Sequence[Any]) -> R | None:
        """The first row of a query as a frozen row of ``kind``, or None."""
        row = self._conn.execute(sql, params).fetchone()
        return kind(**dict(row)) if row is not None else None

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
        meta: PairSetMeta | None = None,
    ) -> int:
        """Store a new versioned pair set; earlier sets stay for the record.

        ``pairs`` needs columns y, x, beta, alpha; pvalue, half_life, spread_mean,
        spread_std are stored when present and every other column goes to ``stats_json``.
        ``meta`` records what the set was built on (pair generation always gives it).
        Returns the new pair set id.
        """
        missing = {"y", "x", "beta", "alpha"} - set(pairs.columns)
        if missing:
            raise StoreError(f"pair set is missing columns {sorted(missing)}")
        known = {"y", "x", "beta", "alpha", "pvalue", "half_life", "spread_mean", "spread_std"}
        with self.tx() as c:
            m = meta
            cur = c.execute(
                "INSERT INTO pair_sets (as_of, params_hash, notebook_path, created_at, n_pairs,"
                " venue_kind, venue_key, timeframe, zscore_lookback, code_version, data_start,"
                " data_end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (iso(as_of), params_hash, notebook_path, iso(created_at), len(pairs),
                 *((m.venue_kind, m.venue_key, m.timeframe, int(m.lookback), m.code_version,
                    m.data_start, m.data_end) if m is not None else (None,) * 7)),
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
        meta = None
        if row["venue_key"] is not None:
            meta = PairSetMeta(
                venue_kind=str(row["venue_kind"]), venue_key=str(row["venue_key"]),
                timeframe=str(row["timeframe"]), lookback=int(row["zscore_lookback"]),
                code_version=str(row["code_version"]), data_start=str(row["data_start"]),
                data_end=str(row["data_end"]),
            )
        return PairSet(
            id=int(row["id"]), as_of=row["as_of"], params_hash=row["params_hash"],
            notebook_path=row["notebook_path"], pairs=pairs, meta=meta,
        )

    # -- the live tick: ticks, pair state, orders, fills, decisions, incidents, equity ---
    # Conventions: amounts in pair_state are *signed* contracts (+ long, - short) of what
    # this store's orders actually filled; an order row's ``filled`` is what has been applied
    # to pair_state, so applying a venue report twice never double-counts.

    def tick_row(self, as_of: datetime) -> TickRow | None:
        """The ``ticks`` row of the tick acting on the candle closing at ``as_of``."""
        return self._one(TickRow, "SELECT * FROM ticks WHERE as_of = ?", (iso(as_of),))

    def start_tick(
        self,
        as_of: datetime,
        started_at: datetime,
        mode: str,
        pair_set_id: int | None = None,
        notebook_path: str | None = None,
        notify: Sequence[OutboxEntry] = (),
    ) -> None:
        """Mark the tick ``as_of`` as running (a re-run of a failed tick reuses its row);
        ``notify`` is written into the outbox in the same transaction."""
        with self.tx() as c:
            _enqueue(c, notify, started_at)
            c.execute(
                "INSERT INTO ticks (as_of, status, started_at, mode, pair_set_id, notebook_path)"
                " VALUES (?, 'running', ?, ?, ?, ?)"
                " ON CONFLICT(as_of) DO UPDATE SET status = 'running',"
                " started_at = excluded.started_at, finished_at = NULL, duration_s = NULL,"
                " mode = excluded.mode, pair_set_id = excluded.pair_set_id,"
                " notebook_path = COALESCE(excluded.notebook_path, ticks.notebook_path),"
                " message = NULL",
                (iso(as_of), iso(started_at), mode, pair_set_id, notebook_path),
            )

    def finish_tick(
        self,
        as_of: datetime,
        status: str,
        finished_at: datetime,
        duration_s: float,
        mode: str | None = None,
        message: str | None = None,
        notebook_path: str | None = None,
        notify: Sequence[OutboxEntry] = (),
    ) -> None:
        """Record a tick's outcome (``ok``, ``failed`` or ``refused``); creates the row if
        the tick never started (a refused tick). ``notify`` is written into the outbox in the
        same transaction."""
        with self.tx() as c:
            _enqueue(c, notify, finished_at)
            c.execute(
                "INSERT INTO ticks (as_of, status, started_at, finished_at, duration_s, mode,"
                " message, notebook_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(as_of) DO UPDATE SET status = excluded.status,"
                " finished_at = excluded.finished_at, duration_s = excluded.duration_s,"
                " mode = COALESCE(excluded.mode, ticks.mode), message = excluded.message,"
                " notebook_path = COALESCE(excluded.notebook_path, ticks.notebook_path)",
                (iso(as_of), status, iso(finished_at), iso(finished_at), float(duration_s),
                 mode, message, notebook_path),
            )

    def ticks(self) -> pd.DataFrame:
        """Every tick row, oldest first."""
        return self.query("SELECT * FROM ticks ORDER BY as_of")

    def pair_states(self) -> pd.DataFrame:
        """Every pair's persisted state (one row per pair ever traded or decided)."""
        return self.query("SELECT * FROM pair_state ORDER BY pair_id")

    def pair_state_rows(self) -> list[PairStateRow]:
        """Every pair's persisted state as frozen rows, by pair id."""
        rows = self._conn.execute("SELECT * FROM pair_state ORDER BY pair_id").fetchall()
        return [PairStateRow(**dict(r)) for r in rows]

    def pair_state(self, pair_id: str) -> PairStateRow | None:
        """One pair's persisted state, or None."""
        return self._one(PairStateRow, "SELECT * FROM pair_state WHERE pair_id = ?", (pair_id,))

    def save_pair_state(self, state: Mapping[str, Any],
                        notify: Sequence[OutboxEntry] = (),
                        created_at: datetime | None = None) -> None:
        """Insert or update one pair's state; ``state`` needs ``pair_id``, ``y``, ``x``,
        ``beta``, ``alpha``; other pair_state columns are optional (unchanged if absent on
        an update, defaults on insert). ``notify`` (an entry or exit the new state records)
        is written into the outbox in the same transaction, dated ``created_at``."""
        cols = [k for k in _PAIR_STATE_COLUMNS if k in state]
        for need in ("pair_id", "y", "x", "beta", "alpha"):
            if need not in cols:
                raise StoreError(f"pair state needs {need!r}")
        values = [_sql_value(state[k]) for k in cols]
        updates = ", ".join(f"{k} = excluded.{k}" for k in cols if k != "pair_id")
        with self.tx() as c:
            c.execute(
                f"INSERT INTO pair_state ({', '.join(cols)}) VALUES"
                f" ({', '.join('?' for _ in cols)}) ON CONFLICT(pair_id) DO UPDATE SET {updates}",
                values,
            )
            _enqueue(c, notify, created_at)

    def order(self, client_id: str) -> OrderRow | None:
        """The order with this client id, or None."""
        return self._one(OrderRow, "SELECT * FROM orders WHERE client_id = ?", (client_id,))

    def orders(
        self, tick_as_of: datetime | None = None, statuses: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Orders (of one tick, and/or with the given statuses), in creation order."""
        sql, args = "SELECT * FROM orders WHERE 1 = 1", []
        if tick_as_of is not None:
            sql += " AND tick_as_of = ?"
            args.append(iso(tick_as_of))
        if statuses is not None:
            sql += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args.extend(statuses)
        return self.query(sql + " ORDER BY created_at, rowid", args)

    def save_order(self, order: Mapping[str, Any]) -> None:
        """Insert or update an order row by ``client_id`` without touching fills or pair
        state (intents, statuses, errors). Use :meth:`apply_order_fill` when ``filled``
        grows."""
        with self.tx() as c:
            _upsert_order(c, order)

    def update_order(
        self,
        client_id: str,
        status: str,
        error: str | None = None,
        updated_at: datetime | None = None,
    ) -> None:
        """Change an existing order's status and error (``updated_at`` only if given: the
        age of an unconfirmed order counts from when it was sent)."""
        with self.tx() as c:
            cur = c.execute(
                "UPDATE orders SET status = ?, error = ?, updated_at = COALESCE(?, updated_at)"
                " WHERE client_id = ?",
                (status, error, None if updated_at is None else iso(updated_at), client_id),
            )
            if cur.rowcount != 1:
                raise StoreError(f"no order with client id {client_id!r}")

    def apply_order_fill(
        self,
        order: Mapping[str, Any],
        fill: Mapping[str, Any] | None,
        amount_delta: float,
    ) -> None:
        """One transaction: update the order, record its new fill, and move the pair's
        signed leg amount by ``amount_delta`` (``order['pair_id']``, ``order['leg']``)."""
        leg = str(order["leg"])
        if leg not in ("y", "x"):
            raise StoreError(f"order leg must be 'y' or 'x', got {leg!r}")
        with self.tx() as c:
            _upsert_order(c, order)
            if fill is not None:
                c.execute(
                    "INSERT INTO fills (client_id, symbol, side, amount, price, fee, ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (fill["client_id"], fill["symbol"], fill["side"], float(fill["amount"]),
                     float(fill["price"]), float(fill["fee"]), _sql_value(fill["ts"])),
                )
            if amount_delta:
                # Rounded to 12 decimals, and float dust (|amount| < 1e-9) snapped to zero.
                cur = c.execute(
                    f"UPDATE pair_state SET amount_{leg} = CASE"
                    f" WHEN ABS(amount_{leg} + ?) < 1e-9 THEN 0.0"
                    f" ELSE ROUND(amount_{leg} + ?, 12) END WHERE pair_id = ?",
                    (float(amount_delta), float(amount_delta), order["pair_id"]),
                )
                if cur.rowcount != 1:
                    raise StoreError(f"no pair_state row for pair {order['pair_id']!r}")
            failpoint("store.before_fill_commit")

    def fills(self, tick_as_of: datetime | None = None) -> pd.DataFrame:
        """Fills with their order's tick, pair, leg and action, oldest first."""
        sql = (
            "SELECT f.id, f.client_id, o.tick_as_of, o.pair_id, o.leg, o.action, f.symbol,"
            " f.side, f.amount, f.price, f.fee, f.ts FROM fills f"
            " LEFT JOIN orders o ON o.client_id = f.client_id"
        )
        args: list[Any] = []
        if tick_as_of is not None:
            sql += " WHERE o.tick_as_of = ?"
            args.append(iso(tick_as_of))
        return self.query(sql + " ORDER BY f.id", args)

    def save_decision(
        self,
        tick_as_of: datetime,
        pair_id: str,
        z: float | None,
        signal: int | None,
        action: str,
        reason: str,
    ) -> None:
        """Record (or replace) one pair's decision of one tick."""
        with self.tx() as c:
            c.execute(
                "INSERT INTO decisions (tick_as_of, pair_id, z, signal, action, reason)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(tick_as_of, pair_id) DO UPDATE SET"
                " z = excluded.z, signal = excluded.signal, action = excluded.action,"
                " reason = excluded.reason",
                (iso(tick_as_of), pair_id, _opt_float(z),
                 None if signal is None else int(signal), action, reason),
            )

    def decisions(self, tick_as_of: datetime | None = None) -> pd.DataFrame:
        """Decisions (of one tick), by tick and pair."""
        if tick_as_of is None:
            return self.query("SELECT * FROM decisions ORDER BY tick_as_of, pair_id")
        return self.query(
            "SELECT * FROM decisions WHERE tick_as_of = ? ORDER BY pair_id", (iso(tick_as_of),)
        )

    def add_incident(
        self,
        tick_as_of: datetime | None,
        kind: str,
        symbol: str | None,
        detail: str,
        created_at: datetime,
        notify: bool = True,
    ) -> int:
        """Record an incident (for the operator); returns its id.

        With ``notify`` (the default) the same transaction writes an outbox row of kind
        ``kind``: the title names the kind and symbol, the body is ``detail``, the run is the
        tick and the report its ``ticks.notebook_path``. Its dedupe key is the tick, kind,
        symbol and detail, so a re-run of the tick recording the same incident again adds no
        second message. Every incident is reported this way, whoever records it (the tick,
        the executor), without the caller having to remember to.
        """
        run = None if tick_as_of is None else iso(tick_as_of)
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO incidents (tick_as_of, kind, symbol, detail, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (run, kind, symbol, detail, iso(created_at)),
            )
            if notify:
                report = None if run is None else c.execute(
                    "SELECT notebook_path FROM ticks WHERE as_of = ?", (run,)).fetchone()
                digest = hashlib.sha1(detail.encode()).hexdigest()[:12]
                _enqueue(c, [OutboxEntry(
                    kind=kind, title=f"incident {kind}" + (f" {symbol}" if symbol else ""),
                    body=detail, run=run, report=None if report is None else report[0],
                    dedupe_key=f"incident:{run}:{kind}:{symbol}:{digest}")], created_at)
            return int(cur.lastrowid or 0)

    def incidents(
        self, tick_as_of: datetime | None = None, unresolved_only: bool = False
    ) -> pd.DataFrame:
        """Incidents (of one tick; only unresolved ones if asked), oldest first."""
        sql, args = "SELECT * FROM incidents WHERE 1 = 1", []
        if tick_as_of is not None:
            sql += " AND tick_as_of = ?"
            args.append(iso(tick_as_of))
        if unresolved_only:
            sql += " AND resolved = 0"
        return self.query(sql + " ORDER BY id", args)

    def resolve_incidents(self, kind: str, symbol: str | None = None) -> int:
        """Mark unresolved incidents of ``kind`` (on ``symbol``) resolved; returns how many."""
        sql, args = "UPDATE incidents SET resolved = 1 WHERE resolved = 0 AND kind = ?", [kind]
        if symbol is not None:
            sql += " AND symbol = ?"
            args.append(symbol)
        with self.tx() as c:
            return int(c.execute(sql, args).rowcount)

    # -- operator acceptance of venue positions (``pairlib reconcile --accept``) ----------
    def accepted_positions(self) -> dict[str, float]:
        """Symbol -> the non-zero amount an operator accepted as held outside any pair."""
        rows = self._conn.execute(
            "SELECT symbol, amount FROM accepted_positions WHERE id IN"
            " (SELECT MAX(id) FROM accepted_positions GROUP BY symbol) ORDER BY symbol"
        ).fetchall()
        return {str(r[0]): float(r[1]) for r in rows if float(r[1]) != 0.0}

    def accept_venue_position(
        self,
        symbol: str,
        leg_changes: Sequence[Mapping[str, Any]],
        accepted_before: float,
        accepted_after: float,
        detail: str,
        created_at: datetime,
    ) -> tuple[int, int]:
        """One transaction aligning the store with the venue on ``symbol``; nothing deleted.

        Each of ``leg_changes`` (``pair_id``, ``leg``, ``before``, ``after``,
        ``position_before``, ``position_after``) sets that pair's ``amount_<leg>`` (and
        ``position``; ``locked_out`` when it goes flat) only if the row still holds
        ``before``/``position_before`` (otherwise :class:`StoreError`, and nothing changes).
        Open ``reconcile_mismatch`` incidents on ``symbol`` are marked resolved, an
        ``operator_accept`` incident records ``detail``, and ``accepted_after`` becomes the
        symbol's accepted amount if it differs from ``accepted_before`` (which must still be
        current). Returns ``(operator_accept incident id, incidents resolved)``.
        """
        with self.tx() as c:
            row = c.execute(
                "SELECT amount FROM accepted_positions WHERE symbol = ? ORDER BY id DESC"
                " LIMIT 1", (symbol,)
            ).fetchone()
            if abs((float(row[0]) if row else 0.0) - float(accepted_before)) > 1e-12:
                raise StoreError(f"accepted amount of {symbol} changed meanwhile; re-run")
            for ch in leg_changes:
                leg = str(ch["leg"])
                if leg not in ("y", "x"):
                    raise StoreError(f"leg must be 'y' or 'x', got {leg!r}")
                flat = int(ch["position_after"]) == 0 and int(ch["position_before"]) != 0
                cur = c.execute(
                    f"UPDATE pair_state SET amount_{leg} = ?, position = ?,"
                    f" locked_out = CASE WHEN ? THEN 1 ELSE locked_out END"
                    f" WHERE pair_id = ? AND ABS(amount_{leg} - ?) < 1e-12 AND position = ?",
                    (float(ch["after"]), int(ch["position_after"]), int(flat), ch["pair_id"],
                     float(ch["before"]), int(ch["position_before"])),
                )
                if cur.rowcount != 1:
                    raise StoreError(f"pair {ch['pair_id']} changed meanwhile; re-run")
            resolved = int(c.execute(
                "UPDATE incidents SET resolved = 1 WHERE resolved = 0"
                " AND kind = 'reconcile_mismatch' AND symbol = ?", (symbol,)
            ).rowcount)
            cur = c.execute(
                "INSERT INTO incidents (tick_as_of, kind, symbol, detail, created_at, resolved)"
                " VALUES (NULL, 'operator_accept', ?, ?, ?, 1)",
                (symbol, detail, iso(created_at)),
            )
            incident_id = int(cur.lastrowid or 0)
            if abs(float(accepted_after) - float(accepted_before)) > 1e-12:
                c.execute(
                    "INSERT INTO accepted_positions (symbol, amount, incident_id, created_at)"
                    " VALUES (?, ?, ?, ?)",
                    (symbol, float(accepted_after), incident_id, iso(created_at)),
                )
            return incident_id, resolved

    def save_equity(
        self,
        tick_as_of: datetime,
        equity: float,
        free: float | None = None,
        used: float | None = None,
        realized_pnl: float | None = None,
        unrealized_pnl: float | None = None,
        gross_notional: float | None = None,
    ) -> None:
        """Record (or replace) the account's equity at the end of one tick."""
        with self.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO equity (tick_as_of, equity, free, used, realized_pnl,"
                " unrealized_pnl, gross_notional) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (iso(tick_as_of), float(equity), _opt_float(free), _opt_float(used),
                 _opt_float(realized_pnl), _opt_float(unrealized_pnl),
                 _opt_float(gross_notional)),
            )

    def equity_history(self) -> pd.DataFrame:
        """Equity per tick, oldest first."""
        return self.query("SELECT * FROM equity ORDER BY tick_as_of")

    def add_funding(self, symbol: str, amount: float, ts: datetime) -> bool:
        """Record a funding payment (+ received, - paid); False if already recorded."""
        with self.tx() as c:
            cur = c.execute(
                "INSERT OR IGNORE INTO funding (symbol, amount, ts) VALUES (?, ?, ?)",
                (symbol, float(amount), iso(ts)),
            )
            return cur.rowcount == 1

    def funding(self) -> pd.DataFrame:
        """Funding payments, oldest first."""
        return self.query("SELECT * FROM funding ORDER BY ts, symbol")

    def funding_total(self) -> float:
        """The sum of every funding payment recorded (+ received, - paid)."""
        row = self._conn.execute("SELECT COALESCE(SUM(amount), 0) FROM funding").fetchone()
        return float(row[0])

    def equity_at(self, tick_as_of: datetime) -> dict[str, float]:
        """The account recorded at the end of one tick (equity, free, used, realized and
        unrealized PnL, gross notional); only the values recorded."""
        row = self._conn.execute("SELECT * FROM equity WHERE tick_as_of = ?",
                                 (iso(tick_as_of),)).fetchone()
        if row is None:
            return {}
        return {k: float(row[k]) for k in ("equity", "free", "used", "realized_pnl",
                                            "unrealized_pnl", "gross_notional")
                if row[k] is not None}

    def recent_decision_z(self, pair_id: str, before: datetime, limit: int) -> list[float | None]:
        """The z-scores of a pair's last ``limit`` decisions before ``before``, newest first
        (None where the decision had no z: the pair could not be evaluated)."""
        rows = self._conn.execute(
            "SELECT z FROM decisions WHERE pair_id = ? AND tick_as_of < ? "
            "ORDER BY tick_as_of DESC LIMIT ?", (pair_id, iso(before), int(limit))).fetchall()
        return [None if r[0] is None else float(r[0]) for r in rows]

    # -- ticks for status and summaries ------------------------------------------------
    def last_tick(self, before: datetime | None = None,
                  status: str | None = None) -> TickRow | None:
        """The newest ``ticks`` row (by candle), only those strictly before ``before`` and
        with ``status`` when given."""
        sql, args = "SELECT * FROM ticks WHERE 1 = 1", list[Any]()
        if before is not None:
            sql += " AND as_of < ?"
            args.append(iso(before))
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        return self._one(TickRow, sql + " ORDER BY as_of DESC LIMIT 1", args)

    def ticks_between(self, start: datetime, end: datetime) -> list[TickRow]:
        """The ticks whose candle closed in ``(start, end]``, oldest first."""
        rows = self._conn.execute(
            "SELECT * FROM ticks WHERE as_of > ? AND as_of <= ? ORDER BY as_of",
            (iso(start), iso(end))).fetchall()
        return [TickRow(**dict(r)) for r in rows]

    # -- the notification outbox (delivered by pairlib.app.notify) -----------------------
    def enqueue(self, entries: OutboxEntry | Sequence[OutboxEntry],
                created_at: datetime) -> int:
        """Write messages into the outbox in a transaction of their own (a message that
        reports no other stored change: a failed job, the daily summary). Returns how many
        were new (an entry whose ``dedupe_key`` is already there is ignored)."""
        batch = [entries] if isinstance(entries, OutboxEntry) else list(entries)
        with self.tx() as c:
            return _enqueue(c, batch, created_at)

    def outbox(self, states: Sequence[str] | None = None,
               limit: int | None = None) -> list[OutboxRow]:
        """Outbox rows (with one of ``states``), oldest first (the newest ``limit``)."""
        sql, args = "SELECT * FROM outbox WHERE 1 = 1", list[Any]()
        if states is not None:
            sql += f" AND state IN ({', '.join('?' for _ in states)})"
            args.extend(states)
        sql += " ORDER BY id DESC" + ("" if limit is None else f" LIMIT {int(limit)}")
        rows = self._conn.execute(sql, args).fetchall()
        return [OutboxRow(**dict(r)) for r in reversed(rows)]

    def outbox_counts(self) -> dict[str, int]:
        """How many outbox rows are in each state (every state of :data:`OUTBOX_STATES`)."""
        rows = self._conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        counts = dict.fromkeys(OUTBOX_STATES, 0)
        counts.update({str(r[0]): int(r[1]) for r in rows})
        return counts

    def claim_outbox(self, now: datetime, limit: int = 100) -> list[OutboxRow]:
        """Claim the due messages (``pending`` with ``next_attempt_at`` at or before ``now``),
        oldest first: each becomes ``sending``, its ``attempts`` counts this attempt, and
        the claim is committed before anything is sent. Two delivery runs never claim the
        same row (the claim is one immediate transaction)."""
        with self.tx() as c:
            ids = [int(r[0]) for r in c.execute(
                "SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?"
                " ORDER BY id LIMIT ?", (iso(now), int(limit))).fetchall()]
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            c.execute(f"UPDATE outbox SET state = 'sending', claimed_at = ?,"
                      f" attempts = attempts + 1 WHERE id IN ({marks})", (iso(now), *ids))
            rows = c.execute(f"SELECT * FROM outbox WHERE id IN ({marks}) ORDER BY id",
                             ids).fetchall()
        return [OutboxRow(**dict(r)) for r in rows]

    def mark_outbox_target(self, outbox_id: int, target: str) -> None:
        """Record that the claimed message ``outbox_id`` reached destination ``target`` (an
        id without secrets), at once, so a later attempt never sends it there again."""
        with self.tx() as c:
            row = c.execute("SELECT delivered_to, state FROM outbox WHERE id = ?",
                            (int(outbox_id),)).fetchone()
            if row is None or row[1] != "sending":
                raise StoreError(f"outbox message {outbox_id} is not being sent")
            done = [t for t in str(row[0]).split(",") if t]
            if target not in done:
                done.append(target)
            c.execute("UPDATE outbox SET delivered_to = ? WHERE id = ?",
                      (",".join(done), int(outbox_id)))

    def finish_outbox(
        self,
        outbox_id: int,
        state: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Settle a claimed (``sending``) message: ``delivered`` (stamped ``now``),
        ``pending`` again (retried at ``next_attempt_at``), ``failed``, ``in_doubt`` or
        ``no_destination``; ``error`` is kept as ``last_error``."""
        if state not in OUTBOX_STATES or state == "sending":
            raise StoreError(f"an outbox message cannot be settled as {state!r}; allowed: "
                             + ", ".join(s for s in OUTBOX_STATES if s != "sending"))
        if state == "pending" and next_attempt_at is None:
            raise StoreError("a message put back to pending needs its next_attempt_at")
        with self.tx() as c:
            cur = c.execute(
                "UPDATE outbox SET state = ?, last_error = COALESCE(?, last_error),"
                " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END,"
                " next_attempt_at = COALESCE(?, next_attempt_at)"
                " WHERE id = ? AND state = 'sending'",
                (state, error, state, iso(now),
                 None if next_attempt_at is None else iso(next_attempt_at), int(outbox_id)),
            )
            if cur.rowcount != 1:
                raise StoreError(f"outbox message {outbox_id} is not being sent")

    def expire_outbox_claims(self, claimed_before: datetime, error: str) -> int:
        """Mark ``in_doubt`` every message still ``sending`` that was claimed before
        ``claimed_before`` (its delivery run died between sending and recording the outcome);
        returns how many. Such a message is never sent again automatically."""
        with self.tx() as c:
            return int(c.execute(
                "UPDATE outbox SET state = 'in_doubt', last_error = ?"
                " WHERE state = 'sending' AND claimed_at < ?",
                (error, iso(claimed_before))).rowcount)

    def hold_outbox(self, state: str, error: str) -> int:
        """Move every ``pending`` message to ``state`` (``no_destination`` when no
        destination is configured) with ``error``; returns how many."""
        if state not in ("no_destination", "failed"):
            raise StoreError(f"pending messages cannot be moved to {state!r}; allowed: "
                             "no_destination, failed")
        with self.tx() as c:
            return int(c.execute(
                "UPDATE outbox SET state = ?, last_error = ? WHERE state = 'pending'",
                (state, error)).rowcount)


def _enqueue(c: sqlite3.Connection, entries: Sequence[OutboxEntry],
             created_at: datetime | None) -> int:
    """Insert outbox rows inside the caller's transaction ``c`` (due at once); an entry
    whose ``dedupe_key`` is already stored is skipped. Returns how many were new."""
    if not entries:
        return 0
    if created_at is None:
        raise StoreError("an outbox entry needs its created_at time")
    new = 0
    for e in entries:
        new += int(c.execute(
            "INSERT OR IGNORE INTO outbox (created_at, kind, run, title, body, report,"
            " dedupe_key, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (iso(created_at), e.kind, e.run, e.title, e.body, e.report, e.dedupe_key,
             iso(created_at)),
        ).rowcount)
    return new


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


_PAIR_STATE_COLUMNS = (
    "pair_id", "y", "x", "beta", "alpha", "position", "locked_out", "closing", "amount_y",
    "amount_x",
    "entry_z", "entry_time", "entry_price_y", "entry_price_x", "spread_std", "pair_set_id",
    "updated_tick", "risk_budget",
)
_ORDER_COLUMNS = (
    "client_id", "exchange_id", "tick_as_of", "pair_id", "leg", "action", "symbol", "side",
    "amount", "filled", "average", "fee", "status", "reduce_only", "created_at",
    "updated_at", "error",
)


def _sql_value(v: Any) -> Any:
    """A Python value SQLite can store (datetimes as ISO strings, numpy scalars unwrapped)."""
    if isinstance(v, pd.Timestamp | datetime):
        return iso(v)
    if isinstance(v, bool):
        return int(v)
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and v != v:
        return None
    return v


def _upsert_order(c: sqlite3.Connection, order: Mapping[str, Any]) -> None:
    cols = [k for k in _ORDER_COLUMNS if k in order]
    if "client_id" not in cols:
        raise StoreError("an order needs its 'client_id'")
    values = [_sql_value(order[k]) for k in cols]
    updates = ", ".join(
        f"{k} = excluded.{k}" for k in cols if k not in ("client_id", "created_at")
    )
    c.execute(
        f"INSERT INTO orders ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
        f" ON CONFLICT(client_id) DO UPDATE SET {updates}",
        values,
    )


# -- SQLite errors -> StoreError ------------------------------------------------------------


def _not_writable(file: Path) -> bool:
    """True when ``file`` exists and this process may not, or should not, write it.

    ``os.access`` is always true for root, so a clear owner write bit (``chmod 0444``)
    also counts: whoever cleared it froze the file on purpose.
    """
    try:
        mode = file.stat().st_mode
    except OSError:
        return False
    return not (mode & stat.S_IWUSR) or not os.access(file, os.W_OK)


def _explain(path: str, e: sqlite3.Error, busy_timeout_s: float) -> str:
    """One line naming the database file, what is wrong with it and what to do."""
    code = getattr(e, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == sqlite3.SQLITE_NOTADB:
        return (f"{path} is not a SQLite database (corrupt or truncated): restore it from a "
                "backup or move it aside to start fresh")
    if primary == sqlite3.SQLITE_CORRUPT:
        return (f"{path} is corrupt or truncated ({e}): restore it from a backup or move it "
                "aside to start fresh")
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return (f"{path} is locked by another process (waited {busy_timeout_s:g} s): let the "
                "other pairlib command finish (or stop it) and rerun; nothing was committed")
    if primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM):
        return (f"{path} is read-only: make the file and its folder writable by this user "
                "(e.g. chmod u+w), or point state_dir at a writable copy; nothing was committed")
    if primary == sqlite3.SQLITE_FULL:
        return (f"disk full while writing {path}: free space and rerun the tick (the failed "
                "change was not committed)")
    if primary == sqlite3.SQLITE_CANTOPEN:
        return (f"cannot open {path}: it must be a file, and it and its folder must be "
                "readable and writable by this user")
    if primary == sqlite3.SQLITE_IOERR:
        return f"disk I/O error on {path} ({e}): check the disk, then rerun"
    return f"{path}: SQLite error: {e}"


@contextmanager
def _translated(path: str, busy_timeout_s: float) -> Iterator[None]:
    """Re-raise any :class:`sqlite3.Error` as :class:`StoreError` (original attached)."""
    try:
        yield
    except sqlite3.Error as e:
        raise StoreError(_explain(path, e, busy_timeout_s)) from e


class _Connection(sqlite3.Connection):
    """The store's connection: every SQLite error it or its cursors raise, on a statement or
    a fetch, becomes a :class:`StoreError` naming the file (the one place errors are
    translated, so no store method needs its own handling)."""

    db_path: str = "?"
    busy_timeout_s: float = 0.0

    def _guard(self) -> AbstractContextManager[None]:
        return _translated(self.db_path, self.busy_timeout_s)

    def cursor(self, factory: Any = None) -> Any:
        with self._guard():
            return super().cursor(factory or _Cursor)

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        with self._guard():
            return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        with self._guard():
            return super().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        with self._guard():
            return super().executescript(sql_script)

    def commit(self) -> None:
        with self._guard():
            super().commit()

    def rollback(self) -> None:
        with self._guard():
            super().rollback()


class _Cursor(sqlite3.Cursor):
    """A cursor of :class:`_Connection` whose statements and fetches translate errors too."""

    def _guard(self) -> AbstractContextManager[None]:
        conn = self.connection
        return _translated(getattr(conn, "db_path", "?"), getattr(conn, "busy_timeout_s", 0.0))

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        with self._guard():
            return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Any, /) -> _Cursor:
        with self._guard():
            return super().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        with self._guard():
            return super().executescript(sql_script)

    def fetchone(self) -> Any:
        with self._guard():
            return super().fetchone()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with self._guard():
            return super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        with self._guard():
            return super().fetchall()

    def __next__(self) -> Any:
        with self._guard():
            return super().__next__()
