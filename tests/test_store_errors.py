"""A broken state database fails as one StoreError naming the file and what to do.

Corrupt, truncated, locked, read-only and full databases are real SQLite conditions here:
random bytes, a cut file, a second connection holding an exclusive transaction, a file with
its write bits cleared (which the store honours even for root), and ``max_page_count``
(SQLite's own "database or disk is full").
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pairlib.edges import store as store_mod
from pairlib.edges.store import DB_NAME, Store
from pairlib.errors import PairlibError, StoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)
REMEDY_CORRUPT = "restore it from a backup or move it aside to start fresh"


def real_db(path: Path, incidents: int = 200) -> Path:
    """A closed, healthy store with some rows, spread over many pages."""
    with Store(path) as s:
        for i in range(incidents):
            s.add_incident(T0, "test", f"S{i}", "x" * 200, T0)
    return path


def one_line_store_error(info: pytest.ExceptionInfo[StoreError], path: Path) -> str:
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    assert isinstance(info.value, PairlibError)
    assert not isinstance(info.value, sqlite3.Error)
    assert isinstance(info.value.__cause__, sqlite3.Error)  # the original stays attached
    return msg


def test_random_bytes_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    db.write_bytes(os.urandom(8192))
    with pytest.raises(StoreError) as info:
        Store.at(tmp_path)
    msg = one_line_store_error(info, db)
    assert "is not a SQLite database (corrupt or truncated)" in msg
    assert REMEDY_CORRUPT in msg


def test_truncated_database_is_refused_when_opening(tmp_path: Path) -> None:
    db = real_db(tmp_path / DB_NAME)
    data = db.read_bytes()
    assert len(data) > 8 * 4096
    db.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError) as info:
        Store(db)
    msg = one_line_store_error(info, db)
    assert "corrupt or truncated" in msg
    assert REMEDY_CORRUPT in msg


def test_corrupt_page_found_by_a_later_query(tmp_path: Path) -> None:
    db = real_db(tmp_path / "s.db")
    con = sqlite3.connect(db)
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'incidents'").fetchone()
    con.close()
    with db.open("r+b") as f:  # overwrite the incidents table's root page, keep the size
        f.seek((int(root[0]) - 1) * page_size)
        f.write(os.urandom(page_size))
    s = Store(db)  # the schema and schema_version pages are intact: opening works
    assert s.tick_row(T0) is None
    with pytest.raises(StoreError) as info:
        s.incidents()
    msg = one_line_store_error(info, db)
    assert "corrupt or truncated" in msg and REMEDY_CORRUPT in msg
    s.close()


def test_locked_when_opening(tmp_path: Path) -> None:
    db = real_db(tmp_path / DB_NAME, incidents=1)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("PRAGMA locking_mode=EXCLUSIVE")
    locker.execute("BEGIN EXCLUSIVE")
    locker.execute("INSERT INTO incidents (kind, detail, created_at) VALUES ('a', 'b', 'c')")
    try:
        with pytest.raises(StoreError) as info:
            Store.at(tmp_path, busy_timeout_s=0.1)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    msg = one_line_store_error(info, db)
    assert "is locked by another process (waited 0.1 s)" in msg
    assert "rerun" in msg


def test_locked_on_a_later_write_then_usable_again(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    s = Store(db, busy_timeout_s=0.1)
    locker = sqlite3.connect(db, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        assert s.ticks().empty  # WAL: reads go on while another process writes
        with pytest.raises(StoreError) as info:
            s.save_decision(T0, "A~B", 0.1, 0, "hold", "test")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    msg = one_line_store_error(info, db)
    assert "is locked by another process" in msg and "nothing was committed" in msg
    s.save_decision(T0, "A~B", 0.1, 0, "hold", "test")  # the store is still usable
    assert len(s.decisions()) == 1
    s.close()


def test_read_only_file_reads_but_refuses_writes(tmp_path: Path) -> None:
    db = real_db(tmp_path / DB_NAME, incidents=3)
    db.chmod(0o444)  # root may still write such a file: the store must not
    try:
        s = Store.at(tmp_path)
        assert s.read_only
        assert len(s.incidents()) == 3
        with pytest.raises(StoreError) as info:
            s.add_incident(T0, "test", None, "more", T0)
        msg = one_line_store_error(info, db)
        assert "is read-only" in msg and "chmod u+w" in msg
        s.close()
        con = sqlite3.connect(db)
        assert con.execute("SELECT COUNT(*) FROM incidents").fetchone()[0] == 3
        con.close()
    finally:
        db.chmod(0o644)
    with Store.at(tmp_path) as again:
        assert not again.read_only


def test_read_only_file_with_a_migration_due_is_refused_when_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = real_db(tmp_path / DB_NAME, incidents=1)
    db.chmod(0o444)
    monkeypatch.setattr(
        store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, "CREATE TABLE extra (a INTEGER)")
    )
    try:
        with pytest.raises(StoreError) as info:
            Store(db)
    finally:
        db.chmod(0o644)
    assert "is read-only" in one_line_store_error(info, db)


def test_disk_full_rolls_back_and_says_so(tmp_path: Path) -> None:
    db = tmp_path / DB_NAME
    s = Store(db)
    pages = int(s.query("PRAGMA page_count").iloc[0, 0])
    s.query(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL past this size
    assert s.query("SELECT 1 AS one").one[0] == 1  # reads still work
    with pytest.raises(StoreError) as info, s.tx() as c:
        for i in range(50):
            c.execute(
                "INSERT INTO incidents (kind, detail, created_at) VALUES ('k', ?, 'z')",
                ("x" * 1000 + str(i),),
            )
    msg = one_line_store_error(info, db)
    assert f"disk full while writing {db}" in msg
    assert "free space and rerun the tick" in msg and "not committed" in msg
    assert s.query("SELECT COUNT(*) AS n FROM incidents").n[0] == 0
    s.close()


def test_failed_commit_is_rolled_back_and_the_store_stays_usable(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    s = Store(db)
    # A deferred foreign key fails at COMMIT, not at the INSERT.
    with pytest.raises(StoreError) as info, s.tx() as c:
        c.execute("PRAGMA defer_foreign_keys = ON")
        c.execute(
            "INSERT INTO accepted_positions (symbol, amount, incident_id, created_at)"
            " VALUES ('A/USDT:USDT', 1.0, 999, 'z')"
        )
    assert "FOREIGN KEY" in one_line_store_error(info, db)
    assert s.accepted_positions() == {}
    assert s.add_incident(T0, "test", None, "after", T0) == 1  # no transaction left open
    s.close()


def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    s = Store(db)
    s.close()
    with pytest.raises(StoreError) as info:
        s.ticks()
    assert str(db) in str(info.value) and "closed" in str(info.value)
