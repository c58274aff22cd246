"""The state store: WAL, versioned schema, forward migrations, one transaction per change;
what a pair set records about how it was built, and the check a tick makes of it."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pairlib.config import Params, validate_params
from pairlib.edges import store as store_mod
from pairlib.edges.store import PairSet, PairSetMeta, Store
from pairlib.engine.generate import check_pair_set, code_version
from pairlib.errors import ConfigError, StoreError

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


# --------------------------------------------------------------------------------------
# What a pair set was built on (migration 4) and the check the tick makes
# --------------------------------------------------------------------------------------

META = PairSetMeta(venue_kind="sim", venue_key="sim-s7-n48", timeframe="4h", lookback=60,
                   code_version="0123abcd", data_start="2025-10-04T00:00:00Z",
                   data_end="2026-01-01T00:00:00Z")


def test_pair_set_records_what_it_was_built_on(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    set_id = s.save_pair_set(T0, "h1", pairs_frame(), None, T0, meta=META)
    latest = s.latest_pair_set()
    assert latest is not None and latest.id == set_id
    assert latest.meta == META and latest.params_hash == "h1"
    row = s.query("SELECT venue_kind, venue_key, timeframe, zscore_lookback, code_version,"
                  " data_start, data_end FROM pair_sets").iloc[0].to_dict()
    assert row == {"venue_kind": "sim", "venue_key": "sim-s7-n48", "timeframe": "4h",
                   "zscore_lookback": 60, "code_version": "0123abcd",
                   "data_start": "2025-10-04T00:00:00Z", "data_end": "2026-01-01T00:00:00Z"}
    s.save_pair_set(datetime(2026, 2, 1, tzinfo=UTC), "h2", pairs_frame(), None, T0)
    newest = s.latest_pair_set()
    assert newest is not None and newest.meta is None  # stored without metadata


def test_migration_4_keeps_older_pair_sets_without_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "s.db"
    with monkeypatch.context() as m:  # a database as pairlib left it before migration 4
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:3])
        old = Store(db)
        assert old.schema_version == 3
        old._conn.execute(
            "INSERT INTO pair_sets (as_of, params_hash, notebook_path, created_at, n_pairs)"
            " VALUES ('2025-12-01T00:00:00Z', 'old', NULL, '2025-12-01T00:00:00Z', 0)")
        old.close()
    s = Store(db)
    assert s.schema_version == len(store_mod.MIGRATIONS) >= 4
    legacy = s.latest_pair_set()
    assert legacy is not None and legacy.params_hash == "old" and legacy.meta is None


def test_read_only_open_never_creates_migrates_or_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard's way in: nothing is created where no database is, a database that
    needs a migration is refused (not migrated), and a current one reads but never writes."""
    with pytest.raises(StoreError, match="no state database"):
        Store.at(tmp_path / "none", read_only=True)
    assert not (tmp_path / "none").exists()

    old_db = tmp_path / "old" / "pairlib.db"
    with monkeypatch.context() as m:
        m.setattr(store_mod, "MIGRATIONS", store_mod.MIGRATIONS[:3])
        Store(old_db).close()
    before = old_db.read_bytes()
    with pytest.raises(StoreError):
        Store.at(old_db.parent, read_only=True)
    assert old_db.read_bytes() == before

    with Store.at(tmp_path / "cur") as rw:
        rw.save_pair_set(T0, "h", pairs_frame(), None, T0)
    with Store.at(tmp_path / "cur", read_only=True) as ro:
        assert ro.read_only and ro.latest_pair_set() is not None
        with pytest.raises(StoreError, match="read-only"):
            ro.save_pair_set(T0, "h", pairs_frame(), None, T0)
    with Store.at(tmp_path / "cur") as rw:
        assert len(rw.query("SELECT id FROM pair_sets")) == 1


def _set(meta: PairSetMeta | None) -> PairSet:
    return PairSet(id=7, as_of="2026-01-01T00:00:00Z", params_hash="h", notebook_path=None,
                   pairs=pairs_frame(), meta=meta)


def test_check_pair_set_accepts_a_matching_set() -> None:
    check_pair_set(_set(META), Params(), "sim-s7-n48")
    paper_built = dataclasses.replace(META, venue_kind="paper", venue_key="binanceusdm")
    live = validate_params({"venue": {"kind": "live"}})
    check_pair_set(_set(paper_built), live, "binanceusdm")  # same market: the kind may differ


@pytest.mark.parametrize(("params", "venue_key", "needles"), [
    ({}, "sim-s3-n48", ["market 'sim-s7-n48' (venue.kind sim)",
                        "this run trades 'sim-s3-n48' (venue.kind sim)"]),
    ({"venue": {"kind": "live"}}, "binanceusdm",
     ["market 'sim-s7-n48'", "trades 'binanceusdm' (venue.kind live)"]),
    ({"data": {"timeframe": "1h"}}, "sim-s7-n48",
     ["timeframe 4h, but params say data.timeframe: 1h"]),
    ({"strategy": {"lookback": 90}}, "sim-s7-n48",
     ["z lookback 60 bars, but params say strategy.lookback: 90"]),
])
def test_check_pair_set_refuses_another_market_timeframe_or_lookback(
    params: dict[str, Any], venue_key: str, needles: list[str]
) -> None:
    with pytest.raises(ConfigError) as info:
        check_pair_set(_set(META), validate_params(params), venue_key)
    msg = str(info.value)
    assert msg.startswith("pair set #7 (as of 2026-01-01T00:00:00Z) was built for ")
    for needle in needles:
        assert needle in msg, msg
    assert "pairlib pairs --as-of 2026-01-01T00:00:00Z" in msg


def test_check_pair_set_accepts_a_set_without_metadata_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="pairlib.engine.generate"):
        check_pair_set(_set(None), validate_params({"strategy": {"lookback": 90}}), "anything")
    assert any("pair set #7" in r.getMessage() and "not checked" in r.getMessage()
               and "pairlib pairs --as-of" in r.getMessage() for r in caplog.records)


def test_code_version_is_the_commit_else_the_package(tmp_path: Path) -> None:
    import subprocess
    from importlib import metadata

    root = Path(__file__).resolve().parents[1]
    if (root / ".git").exists():
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        assert code_version().removesuffix("-dirty") == head
    assert code_version(tmp_path) == f"pairlib {metadata.version('pairlib')}"  # no checkout


def test_rows_are_frozen_records_and_reads_need_no_sql(tmp_path: Path) -> None:
    from pairlib.edges.store import OrderRow, PairStateRow, TickRow

    s = Store.at(tmp_path)
    when = datetime(2026, 1, 1, 4, tzinfo=UTC)
    s.save_pair_state({"pair_id": "A~B", "y": "A", "x": "B", "beta": 1.5, "alpha": 0.1,
                       "position": -1, "amount_y": -2.0, "amount_x": 3.0})
    st = s.pair_state("A~B")
    assert isinstance(st, PairStateRow) and st.held and st.amount("x") == 3.0
    assert st["position"] == -1 and st.get("nope", 7) == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.position = 0  # type: ignore[misc]
    with pytest.raises(KeyError):
        st["nope"]
    assert [r.pair_id for r in s.pair_state_rows()] == ["A~B"]
    s.start_tick(when, when, "normal", None, None)
    assert isinstance(s.tick_row(when), TickRow) and s.tick_row(when).status == "running"
    s.save_order({"client_id": "pl-1", "tick_as_of": "2026-01-01T04:00:00Z", "pair_id": "A~B",
                  "leg": "y", "action": "exit", "symbol": "A", "side": "buy", "amount": 2.0,
                  "status": "planned", "created_at": "x", "updated_at": "x"})
    assert isinstance(s.order("pl-1"), OrderRow) and s.order("pl-1").amount == 2.0
    assert s.funding_total() == 0.0
    s.add_funding("A", -1.25, when)
    s.add_funding("B", 0.5, when)
    assert s.funding_total() == pytest.approx(-0.75)
    assert s.equity_at(when) == {}
    s.save_equity(when, 100.0, free=60.0)
    assert s.equity_at(when) == {"equity": 100.0, "free": 60.0}
    for k, z in enumerate((None, 1.5, None)):
        s.save_decision(when + timedelta(hours=4 * k), "A~B", z, -1, "hold", "r")
    assert s.recent_decision_z("A~B", when + timedelta(hours=12), 5) == [None, 1.5, None]
    assert s.recent_decision_z("A~B", when + timedelta(hours=8), 1) == [1.5]
    s.close()
