"""The store's notification outbox (migration 6): enqueue inside the event's transaction,
dedupe keys, claims, settling, stale claims, held rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pairlib.edges.store import OUTBOX_STATES, OutboxEntry, Store
from pairlib.errors import StoreError

T0 = datetime(2025, 2, 4, 8, tzinfo=UTC)


def _entry(key: str = "k1", **kw: object) -> OutboxEntry:
    fields: dict[str, object] = {"kind": "entry", "title": "enter_long A~B", "body": "why",
                                 "dedupe_key": key, "run": "2025-02-04T08:00:00Z",
                                 "report": "/x/outputs/ticks/a.ipynb"}
    fields.update(kw)
    return OutboxEntry(**fields)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Store:
    return Store(tmp_path / "pairlib.db")


def test_migration_creates_the_outbox_and_counts_every_state(db: Store) -> None:
    from pairlib.edges import store as store_mod

    assert "outbox" in db.tables()
    assert db.schema_version == len(store_mod.MIGRATIONS) >= 6
    assert db.outbox_counts() == dict.fromkeys(OUTBOX_STATES, 0)


def test_enqueue_is_deduplicated_by_key(db: Store) -> None:
    assert db.enqueue(_entry("same"), T0) == 1
    assert db.enqueue([_entry("same", body="other"), _entry("new")], T0) == 1
    rows = db.outbox()
    assert [r.dedupe_key for r in rows] == ["same", "new"]
    assert rows[0].body == "why" and rows[0].state == "pending" and rows[0].attempts == 0
    assert rows[0].next_attempt_at == "2025-02-04T08:00:00Z"


def test_pair_state_and_its_notification_commit_or_roll_back_together(db: Store) -> None:
    state = {"pair_id": "A~B", "y": "A", "x": "B", "beta": 1.0, "alpha": 0.0, "position": 1}
    db.save_pair_state(state, [_entry("entry:1")], T0)
    assert db.pair_state("A~B") is not None and len(db.outbox()) == 1
    # A failing statement in the same transaction (a pair state without its table's NOT NULL
    # beta) takes the notification with it: nothing reports an event that was not stored.
    bad = {**state, "pair_id": "C~D", "beta": None}
    with pytest.raises(StoreError):
        db.save_pair_state(bad, [_entry("entry:2")], T0)
    assert db.pair_state("C~D") is None
    assert [r.dedupe_key for r in db.outbox()] == ["entry:1"]


def test_incident_enqueues_its_notification_with_the_ticks_report(db: Store) -> None:
    db.start_tick(T0, T0, "normal", None, "/x/outputs/ticks/t.ipynb")
    db.add_incident(T0, "second_leg_failed", "B", "B rejected; unwound", T0)
    db.add_incident(T0, "second_leg_failed", "B", "B rejected; unwound", T0)  # a re-run
    db.add_incident(T0, "late_fill", None, "quiet", T0, notify=False)
    rows = db.outbox()
    assert len(rows) == 1
    r = rows[0]
    assert (r.kind, r.run, r.report) == ("second_leg_failed", "2025-02-04T08:00:00Z",
                                         "/x/outputs/ticks/t.ipynb")
    assert r.title == "incident second_leg_failed B" and r.body == "B rejected; unwound"
    assert len(db.incidents()) == 3


def test_tick_start_and_finish_carry_their_notifications(db: Store) -> None:
    db.start_tick(T0, T0, "exits_only: kill switch", notify=[_entry("kill")])
    db.finish_tick(T0, "degraded", T0, 1.0, notify=[_entry("deg", kind="tick_degraded")])
    assert [r.dedupe_key for r in db.outbox()] == ["kill", "deg"]


def test_claim_settle_and_retry(db: Store) -> None:
    db.enqueue([_entry("a"), _entry("b")], T0)
    assert db.claim_outbox(T0 - timedelta(seconds=1)) == []  # not due yet
    first = db.claim_outbox(T0, limit=1)
    assert [r.dedupe_key for r in first] == ["a"]
    assert first[0].state == "sending" and first[0].attempts == 1
    assert [r.dedupe_key for r in db.claim_outbox(T0)] == ["b"]  # "a" is taken
    db.mark_outbox_target(first[0].id, "t1")
    db.mark_outbox_target(first[0].id, "t1")
    db.finish_outbox(first[0].id, "pending", T0, error="t2: failure",
                     next_attempt_at=T0 + timedelta(seconds=30))
    row = db.outbox(["pending"])[0]
    assert row.targets_done == {"t1"} and row.last_error == "t2: failure"
    assert db.claim_outbox(T0 + timedelta(seconds=29)) == []
    again = db.claim_outbox(T0 + timedelta(seconds=30))
    assert again[0].attempts == 2
    db.finish_outbox(again[0].id, "delivered", T0 + timedelta(seconds=31))
    done = db.outbox(["delivered"])[0]
    assert done.delivered_at == "2025-02-04T08:00:31Z"
    with pytest.raises(StoreError, match="not being sent"):
        db.finish_outbox(again[0].id, "delivered", T0)  # settled once only
    with pytest.raises(StoreError, match="allowed"):
        db.finish_outbox(again[0].id, "bogus", T0)
    with pytest.raises(StoreError, match="next_attempt_at"):
        db.finish_outbox(again[0].id, "pending", T0)


def test_stale_claims_become_in_doubt_and_are_never_claimed_again(tmp_path: Path) -> None:
    path = tmp_path / "pairlib.db"
    with Store(path) as one:
        one.enqueue(_entry("a"), T0)
        assert len(one.claim_outbox(T0)) == 1  # then the process dies before settling
    with Store(path) as two:  # a new process
        assert two.expire_outbox_claims(T0, "died") == 0  # claimed at T0: not older
        assert two.expire_outbox_claims(T0 + timedelta(minutes=5), "died") == 1
        assert two.claim_outbox(T0 + timedelta(days=1)) == []
        assert two.outbox_counts()["in_doubt"] == 1


def test_hold_pending_rows_without_destination(db: Store) -> None:
    db.enqueue([_entry("a"), _entry("b")], T0)
    db.claim_outbox(T0, limit=1)
    assert db.hold_outbox("no_destination", "no destination") == 1
    assert db.outbox_counts()["no_destination"] == 1
    assert db.outbox_counts()["sending"] == 1
    with pytest.raises(StoreError, match="allowed"):
        db.hold_outbox("delivered", "x")


def test_a_version_5_database_gains_the_outbox(tmp_path: Path) -> None:
    from pairlib.edges import store as store_mod

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for v, script in enumerate(store_mod.MIGRATIONS[:5], start=1):
        con.executescript(script)
        con.execute("INSERT INTO schema_version VALUES (?, 'x')", (v,))
    con.commit()
    con.close()
    with Store(path) as s:
        assert s.schema_version == len(store_mod.MIGRATIONS) and s.outbox() == []
