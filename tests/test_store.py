"""The state store: WAL, versioned schema, forward migrations, one transaction per change."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from pairlib import store as store_mod
from pairlib.errors import StoreError
from pairlib.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pairs_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"y": ["A/USDT:USDT", "C/USDT:USDT"], "x": ["B/USDT:USDT", "D/USDT:USDT"],
         "beta": [1.1, 0.7], "alpha": [0.01, -0.2], "pvalue": [0.001, 0.002],
         "half_life": [5.0, 12.0], "spread_std": [0.02, 0.03], "crossings": [20, 15]}
    )


def test_wal_schema_version_and_tables(tmp_path: Path) -> None:
    s = Store(tmp_path / "state" / "pairlib.db")
    mode = s.query("PRAGMA journal_mode").iloc[0, 0]
    assert mode == "wal"
    assert s.schema_version == len(store_mod.MIGRATIONS)
    for table in ("pair_sets", "pair_set_pairs", "ticks", "pair_state", "orders", "fills",
                  "funding", "equity", "decisions", "incidents", "schema_version"):
        assert table in s.tables()
    s.close()
    again = Store(tmp_path / "state" / "pairlib.db")  # reopening does not re-migrate
    assert again.schema_version == len(store_mod.MIGRATIONS)
    assert len(again.query("SELECT * FROM schema_version")) == len(store_mod.MIGRATIONS)


def test_forward_migration_applies_new_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    Store(db).close()
    monkeypatch.setattr(
        store_mod, "MIGRATIONS", (*store_mod.MIGRATIONS, "CREATE TABLE extra (a INTEGER)")
    )
    s = Store(db)
    assert "extra" in s.tables()
    assert s.schema_version == len(store_mod.MIGRATIONS)


def test_newer_schema_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("INSERT INTO schema_version VALUES (99, 'x')")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this pairlib knows"):
        Store(db)


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    with pytest.raises(RuntimeError), s.tx() as c:
        c.execute("INSERT INTO incidents (kind, detail, created_at) VALUES ('x', 'y', 'z')")
        raise RuntimeError("boom")
    assert s.query("SELECT COUNT(*) AS n FROM incidents").n[0] == 0


def test_pair_sets_are_versioned_and_kept(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    assert s.latest_pair_set() is None
    first = s.save_pair_set(T0, "h1", pairs_frame(), "outputs/pairs/a.ipynb", T0)
    later = datetime(2026, 2, 1, tzinfo=UTC)
    second = s.save_pair_set(later, "h2", pairs_frame().iloc[:1], None, later)
    latest = s.latest_pair_set()
    assert latest is not None and latest.id == second and len(latest.pairs) == 1
    older = s.latest_pair_set(as_of=datetime(2026, 1, 15, tzinfo=UTC))
    assert older is not None and older.id == first
    assert list(older.pairs.pair_id) == ["A/USDT:USDT~B/USDT:USDT", "C/USDT:USDT~D/USDT:USDT"]
    assert older.notebook_path == "outputs/pairs/a.ipynb"
    stats = s.query("SELECT stats_json FROM pair_set_pairs WHERE pair_set_id=?", (first,))
    assert '"crossings": 20' in stats.stats_json[0]
    assert len(s.query("SELECT * FROM pair_sets")) == 2


def test_pair_set_missing_columns_rejected(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    with pytest.raises(StoreError, match="missing columns"):
        s.save_pair_set(T0, "h", pd.DataFrame({"y": ["A"]}), None, T0)
    assert s.latest_pair_set() is None
