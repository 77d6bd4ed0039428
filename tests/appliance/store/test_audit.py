"""The audit journal: append-only by trigger, hash-chained, and any tampering named by its seq."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from appliance.store import StoreError, audit, open_database, transaction
from appliance.store.audit import GENESIS_HASH


def write_journal(db: sqlite_utils.Database, count: int = 5) -> None:
    for n in range(1, count + 1):
        with transaction(db) as conn:
            audit.append(conn, operator_id=None, action="test.action", subject=f"thing:{n}", details={"n": n}, at=n)


def bypass(db_path: Path, *statements: str) -> None:
    """What a careful tamperer would do: drop the protective triggers, change the table, and put the
    triggers back as they were (so only the chain can tell)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_journal_no_update")
    conn.execute("DROP TRIGGER audit_journal_no_delete")
    for statement in statements:
        conn.execute(statement)
    for sql in audit.expected_triggers().values():
        conn.execute(sql)
    conn.close()


def test_rows_are_chained_and_the_chain_verifies(db: sqlite_utils.Database) -> None:
    write_journal(db)
    rows = audit.entries(db)
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(rows))
    assert rows[2].details == {"n": 3} and rows[2].subject == "thing:3"
    report = audit.verify(db)
    assert report.ok and report.problems == [] and report.rows_checked == 5
    assert report.head_hash == rows[-1].hash


def test_an_empty_journal_verifies(db: sqlite_utils.Database) -> None:
    assert audit.verify(db).ok


def test_append_must_run_inside_the_callers_transaction(db: sqlite_utils.Database) -> None:
    with pytest.raises(StoreError, match="inside the caller's transaction"):
        audit.append(db.conn, operator_id=None, action="test.action")


def test_a_rolled_back_change_leaves_no_audit_row(db: sqlite_utils.Database) -> None:
    write_journal(db, 2)
    with pytest.raises(RuntimeError), transaction(db) as conn:
        audit.append(conn, operator_id=None, action="test.lost")
        raise RuntimeError("the change failed")
    write_journal(db, 1)
    assert [row.seq for row in audit.entries(db)] == [1, 2, 3]
    assert audit.verify(db).ok


def test_triggers_refuse_update_and_delete(db: sqlite_utils.Database) -> None:
    write_journal(db, 2)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit_journal SET action = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit_journal WHERE seq = 2")
    assert audit.verify(db).ok


def test_a_changed_row_is_named(db: sqlite_utils.Database, db_path: Path) -> None:
    write_journal(db)
    bypass(db_path, "UPDATE audit_journal SET details = '{\"n\":30}' WHERE seq = 3")
    report = audit.verify(db)
    assert not report.ok
    assert report.first_broken_seq == 3
    assert report.problems == [
        "row seq 3 changed after it was written: its hash does not match (or forged without the journal key)"
    ]


def test_a_row_rewritten_with_a_recomputed_hash_breaks_the_next_link(db: sqlite_utils.Database, db_path: Path) -> None:
    write_journal(db)
    row = audit.entries(db)[2]
    forged = audit.row_hash(
        row.prev_hash,
        seq=3,
        at=row.at,
        operator_id=None,
        action="forged",
        subject=row.subject,
        details_json='{"n":3}',
        key=audit.key_of(db),  # even with the key, the next row's link gives it away
    )
    bypass(db_path, f"UPDATE audit_journal SET action = 'forged', hash = '{forged}' WHERE seq = 3")  # noqa: S608
    report = audit.verify(db)
    assert report.first_broken_seq == 4
    assert "chain broken at seq 4" in report.problems[0]


def test_a_deleted_row_is_named(db: sqlite_utils.Database, db_path: Path) -> None:
    write_journal(db)
    bypass(db_path, "DELETE FROM audit_journal WHERE seq = 2")
    report = audit.verify(db)
    assert report.first_broken_seq == 2
    assert report.problems == ["row seq 2 deleted: the journal jumps to seq 3"]


def test_deleted_last_rows_are_named(db: sqlite_utils.Database, db_path: Path) -> None:
    write_journal(db)
    bypass(db_path, "DELETE FROM audit_journal WHERE seq >= 4")
    report = audit.verify(db)
    assert report.first_broken_seq == 4
    assert report.problems == ["row seq 4 to 5 deleted: the journal ends at seq 3"]


def test_reordered_rows_are_named(db: sqlite_utils.Database, db_path: Path) -> None:
    write_journal(db)
    bypass(
        db_path,
        "UPDATE audit_journal SET seq = 100 WHERE seq = 2",
        "UPDATE audit_journal SET seq = 2 WHERE seq = 3",
        "UPDATE audit_journal SET seq = 3 WHERE seq = 100",
    )
    report = audit.verify(db)
    assert report.first_broken_seq == 2
    assert report.problems[0] == "row seq 2 reordered: it was written as seq 3"
    assert "row seq 3 reordered: it was written as seq 2" in report.problems


def test_bytes_edited_in_the_file_are_detected(db_path: Path, key_path: Path) -> None:
    db = open_database(db_path, key_file=key_path)
    with transaction(db) as conn:
        for n in range(1, 4):
            audit.append(conn, operator_id=None, action=f"test.action-{n}", at=n)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = db_path.read_bytes()
    assert data.count(b"test.action-2") == 1
    db_path.write_bytes(data.replace(b"test.action-2", b"test.actioN-2"))
    reopened = open_database(db_path, key_file=key_path)
    report = audit.verify(reopened)
    reopened.close()
    assert not report.ok
    assert report.first_broken_seq == 2
    assert "row seq 2 changed" in report.problems[0]


def test_details_must_be_plain_json(db: sqlite_utils.Database) -> None:
    with pytest.raises(TypeError), transaction(db) as conn:
        audit.append(conn, operator_id=None, action="test.action", details={"when": object()})
