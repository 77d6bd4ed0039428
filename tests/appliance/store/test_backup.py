"""Backups: a consistent, encrypted copy taken while the counter writes, and a restore that checks first."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from appliance.store import audit, open_database, transaction
from appliance.store.backup import MAGIC, BackupError, backup, restore
from appliance.store.sealing import FieldCipher


def add_claim(db: sqlite_utils.Database, amount: int) -> None:
    """A stand-in for a domain write: a row and its audit row, in one transaction."""
    with transaction(db) as conn:
        conn.execute("INSERT INTO test_sales(amount) VALUES (?)", (amount,))
        audit.append(conn, operator_id=None, action="claim.created", details={"amount": amount})


def table(db_path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def live(db: sqlite_utils.Database) -> sqlite_utils.Database:
    db.execute("CREATE TABLE test_sales (id INTEGER PRIMARY KEY, amount INTEGER NOT NULL)")
    db.execute("CREATE TABLE test_people (id INTEGER PRIMARY KEY, birth_name BLOB NOT NULL, note TEXT)")
    for amount in range(1, 11):
        add_claim(db, amount)
    return db


def test_a_backup_taken_while_another_connection_writes_restores_a_consistent_database(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    written = threading.Semaphore(0)

    def writer() -> None:
        db = open_database(db_path, key_file=key_path)
        try:
            amount = 100
            while not stop.is_set():
                add_claim(db, amount)
                written.release()
                amount += 1
                stop.wait(0.002)  # a busy counter, not a tight loop that would starve the backup
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    files = []
    try:
        for _ in range(3):
            for _ in range(5):  # the writer is busy before and between backups
                assert written.acquire(timeout=10)
            files.append(backup(db_path, key_path, tmp_path / "backups"))
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert len(set(files)) == 3
    counts = []
    for number, file in enumerate(files):
        target = tmp_path / f"restored-{number}.db"
        restore(file, key_path, target)
        test_sales = table(target, "SELECT count(*) FROM test_sales")[0][0]
        created = table(target, "SELECT count(*) FROM audit_journal WHERE action = 'claim.created'")[0][0]
        assert test_sales == created  # every claim came with its audit row: one snapshot
        counts.append(test_sales)
        restored = open_database(target, key_file=key_path)
        assert audit.verify(restored).ok
        restored.close()
    assert 15 <= counts[0] < counts[1] < counts[2] <= table(db_path, "SELECT count(*) FROM test_sales")[0][0]


def test_restore_gives_back_the_same_rows(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    before = table(db_path, "SELECT * FROM test_sales ORDER BY id")
    file = backup(db_path, key_path, tmp_path / "backups")
    journal = table(db_path, "SELECT * FROM audit_journal ORDER BY seq")  # includes the backup's own row
    target = tmp_path / "elsewhere" / "comptoir.db"
    restore(file, key_path, target)
    assert table(target, "SELECT * FROM test_sales ORDER BY id") == before
    after = table(target, "SELECT * FROM audit_journal ORDER BY seq")
    assert after[: len(journal) - 1] == journal[:-1]
    assert [row[3] for row in after[len(journal) - 1 :]] == ["store.restored"]


def test_restore_replaces_the_live_database_and_keeps_the_old_one_aside(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    file = backup(db_path, key_path, tmp_path / "backups")
    add_claim(live, 999)
    live.close()
    restore(file, key_path, db_path)
    assert (999,) not in table(db_path, "SELECT amount FROM test_sales")
    (kept,) = [
        path for path in db_path.parent.glob("comptoir.db.pre-restore-*") if path.name[-4:] not in ("-wal", "-shm")
    ]
    assert (999,) in table(kept, "SELECT amount FROM test_sales")


def test_the_backup_is_encrypted_and_holds_no_sealed_plaintext(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    cipher = FieldCipher.load(key_path)
    with transaction(live) as conn:
        conn.execute(
            "INSERT INTO test_people(birth_name, note) VALUES (?, ?)",
            (cipher.seal("BERTHELOT-VASSEUR", "test_people.birth_name"), "CLEAR-TEXT-MARKER"),
        )
    file = backup(db_path, key_path, tmp_path / "backups")
    data = file.read_bytes()
    assert data.startswith(MAGIC)
    assert b"BERTHELOT" not in data and b"CLEAR-TEXT-MARKER" not in data and b"SQLite format" not in data
    assert file.name.startswith("comptoir-") and file.suffix == ".cbk"
    assert file.stat().st_mode & 0o777 == 0o600
    assert not list(file.parent.glob(".*.tmp"))


def test_a_tampered_backup_is_refused_and_nothing_changes(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    file = backup(db_path, key_path, tmp_path / "backups")
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    target = tmp_path / "target.db"
    with pytest.raises(BackupError, match="altered, or made with another key file"):
        restore(file, key_path, target)
    assert not target.exists()


def test_a_backup_made_with_another_key_is_refused(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    file = backup(db_path, key_path, tmp_path / "backups")
    other = tmp_path / "other.key"
    FieldCipher.create_key(other)
    with pytest.raises(BackupError, match="another key file"):
        restore(file, other, tmp_path / "target.db")


def test_a_file_that_is_not_a_backup_is_refused(key_path: Path, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.cbk"
    bogus.write_bytes(b"SQLite format 3\x00" + bytes(100))
    with pytest.raises(BackupError, match="not a comptoir backup"):
        restore(bogus, key_path, tmp_path / "target.db")


def test_a_backup_with_a_broken_audit_chain_is_refused(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_journal_no_delete")
    conn.execute("DELETE FROM audit_journal WHERE seq = 3")
    conn.close()
    file = backup(db_path, key_path, tmp_path / "backups")
    with pytest.raises(BackupError, match=r"broken audit journal: .*row seq 3 deleted"):
        restore(file, key_path, tmp_path / "target.db")


def test_two_backups_in_the_same_second_get_two_files(
    live: sqlite_utils.Database, db_path: Path, key_path: Path, tmp_path: Path
) -> None:
    first = backup(db_path, key_path, tmp_path / "backups")
    second = backup(db_path, key_path, tmp_path / "backups")
    assert first != second and first.exists() and second.exists()
