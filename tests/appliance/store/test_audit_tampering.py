"""Issue 17: tampering by someone holding a copy of the database file (not the key file).

Each attack is played on a copy of a real database (real SQLite file written through the store's
own functions, real key file), then ``audit.verify`` and ``comptoir audit verify`` must both say so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from appliance.domain import Role
from appliance.store import audit, open_database, outbox, transaction
from appliance.store.audit import Anchor
from appliance.store.database import StoreError
from appliance.store.migrations import MIGRATIONS
from appliance.store.operators import add_operator
from appliance.store.sealing import FieldCipher

ROWS = 8


def _write(db_path: Path, key_path: Path, count: int, *, start: int = 1, operator_id: int | None = 1) -> None:
    db = open_database(db_path, key_file=key_path)
    try:
        for n in range(start, start + count):
            with transaction(db) as conn:
                audit.append(
                    conn, operator_id=operator_id, action="claim.created", subject=f"claim:{n}", details={"n": n}
                )
    finally:
        db.close()


def _checkpoint(db_path: Path) -> None:
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.fixture
def box(tmp_path: Path, key_path: Path) -> tuple[Path, Path, Anchor]:
    """A box's database: two operators, claims, and an anchor the back office acknowledged."""
    db_path = tmp_path / "box" / "comptoir.db"
    db_path.parent.mkdir()
    db = open_database(db_path, key_file=key_path)
    try:
        add_operator(db, "Marie", Role("titulaire"), "4821")
        add_operator(db, "Paul", Role("pharmacien"), "1357")
    finally:
        db.close()
    _write(db_path, key_path, ROWS - 2)
    db = open_database(db_path, key_file=key_path)
    try:
        with transaction(db) as conn:
            message = audit.enqueue_anchor(conn, now=100.0)
            assert message is not None
            outbox.mark_delivered(conn, message, {"ok": True}, now=101.0)
        report = audit.verify(db)
        assert report.ok and report.rows_checked == ROWS and report.anchors_checked == ["acknowledged"]
        anchor = Anchor(report.head_hash, ROWS)
    finally:
        db.close()
    _checkpoint(db_path)
    return db_path, key_path, anchor


@pytest.fixture
def copy(box: tuple[Path, Path, Anchor], tmp_path: Path) -> Path:
    """The attacker's copy of the box's file."""
    target = tmp_path / "stolen" / "comptoir.db"
    target.parent.mkdir()
    shutil.copy2(box[0], target)
    return target


@contextmanager
def tamper(db_path: Path, *, restore_triggers: bool = True) -> Iterator[sqlite3.Connection]:
    """The attacker's raw connection: triggers dropped, put back afterwards unless told otherwise."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("DROP TRIGGER audit_journal_no_update")
    conn.execute("DROP TRIGGER audit_journal_no_delete")
    try:
        yield conn
    finally:
        if restore_triggers:
            for sql in audit.expected_triggers().values():
                conn.execute(sql)
        conn.close()


def plain_rehash(conn: sqlite3.Connection, *, from_seq: int, key: bytes | None, version: int) -> None:
    """Recompute every hash from ``from_seq`` on (and the links), plain or under ``key``."""
    rows = conn.execute(
        "SELECT seq, at, operator_id, action, subject, details FROM audit_journal ORDER BY seq"
    ).fetchall()
    prev = audit.GENESIS_HASH
    for seq, at, operator_id, action, subject, details in rows:
        if seq >= from_seq:
            digest = audit.row_hash(
                prev,
                seq=seq,
                at=at,
                operator_id=operator_id,
                action=action,
                subject=subject,
                details_json=details,
                key=key,
            )
            conn.execute(
                "UPDATE audit_journal SET prev_hash = ?, hash = ?, hash_version = ? WHERE seq = ?",
                (prev, digest, version, seq),
            )
            prev = digest
        else:
            prev = conn.execute("SELECT hash FROM audit_journal WHERE seq = ?", (seq,)).fetchone()[0]


def append_forged(conn: sqlite3.Connection, *, key: bytes | None, version: int) -> None:
    seq, prev = conn.execute("SELECT seq, hash FROM audit_journal ORDER BY seq DESC LIMIT 1").fetchone()
    digest = audit.row_hash(
        prev,
        seq=seq + 1,
        at=1e9,
        operator_id=2,
        action="claim.cancelled",
        subject="claim:3",
        details_json="{}",
        key=key,
    )
    conn.execute(
        "INSERT INTO audit_journal(seq, at, operator_id, action, subject, details, prev_hash, hash, hash_version)"
        " VALUES (?, 1e9, 2, 'claim.cancelled', 'claim:3', '{}', ?, ?, ?)",
        (seq + 1, prev, digest, version),
    )


def truncate(conn: sqlite3.Connection, *, keep: int, drop_anchor: bool = False) -> None:
    conn.execute("DELETE FROM audit_journal WHERE seq > ?", (keep,))
    conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'audit_journal'", (keep,))
    if drop_anchor:
        conn.execute("DELETE FROM outbox WHERE key LIKE 'event:audit.anchor:%'")


def cli_verify(db_path: Path, key_path: Path | None, anchor: Anchor | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COMPTOIR_DB", "COMPTOIR_KEY")}
    args = [sys.executable, "-m", "appliance.store.cli", "audit", "verify", "--db", str(db_path)]
    if key_path is not None:
        args += ["--key", str(key_path)]
    if anchor is not None:
        args += ["--anchor", str(anchor)]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False, env=env)


def verify_copy(db_path: Path, key_path: Path, anchor: Anchor | None = None) -> audit.AuditReport:
    db = open_database(db_path, readonly=True)
    try:
        return audit.verify(db, key=audit.load_key(key_path), anchor=anchor)
    finally:
        db.close()


Attack = Callable[[sqlite3.Connection], None]
GUESSED_KEY = hashlib.sha256(b"a guess").digest()

ATTACKS: dict[str, tuple[Attack, bool, str]] = {
    # name: (what the attacker does, whether the triggers are put back, what verify must say)
    "truncate, rewind sqlite_sequence": (lambda c: truncate(c, keep=ROWS - 3), True, "journal truncated"),
    "append forged row, plain SHA-256": (
        lambda c: append_forged(c, key=None, version=0),
        True,
        "plain SHA-256 hash where a keyed one is due",
    ),
    "append forged row, guessed key": (
        lambda c: append_forged(c, key=GUESSED_KEY, version=1),
        True,
        f"row seq {ROWS + 1} changed after it was written",
    ),
    "edit row, rehash chain (guessed key)": (
        lambda c: (
            c.execute("UPDATE audit_journal SET details = '{\"n\":99}' WHERE seq = 5"),
            plain_rehash(c, from_seq=5, key=GUESSED_KEY, version=1),
        ),
        True,
        "row seq 5 changed after it was written",
    ),
    "edit row, rehash chain (plain)": (
        lambda c: (
            c.execute("UPDATE audit_journal SET details = '{\"n\":99}' WHERE seq = 5"),
            plain_rehash(c, from_seq=1, key=None, version=0),
        ),
        True,
        "plain SHA-256 hash where a keyed one is due",
    ),
    "drop the triggers": (lambda c: None, False, "trigger audit_journal_no_update is missing"),
    "reorder rows": (
        lambda c: (
            c.execute("UPDATE audit_journal SET seq = 100 WHERE seq = 4"),
            c.execute("UPDATE audit_journal SET seq = 4 WHERE seq = 5"),
            c.execute("UPDATE audit_journal SET seq = 5 WHERE seq = 100"),
        ),
        True,
        "row seq 4 reordered",
    ),
    "delete a middle row": (lambda c: c.execute("DELETE FROM audit_journal WHERE seq = 4"), True, "row seq 4 deleted"),
    "change a row's operator": (
        lambda c: c.execute("UPDATE audit_journal SET operator_id = 2 WHERE seq = 6"),
        True,
        "row seq 6 changed after it was written",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_on_a_copy_is_detected_by_verify_and_the_cli(
    name: str, box: tuple[Path, Path, Anchor], copy: Path
) -> None:
    _, key_path, anchor = box
    attack, restore_triggers, expected = ATTACKS[name]
    with tamper(copy, restore_triggers=restore_triggers) as conn:
        attack(conn)
    report = verify_copy(copy, key_path)
    assert not report.ok
    assert any(expected in problem for problem in report.problems), report.problems
    with_anchor = verify_copy(copy, key_path, anchor)
    assert not with_anchor.ok
    shown = cli_verify(copy, key_path, anchor)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "audit journal BROKEN" in shown.stdout and expected in shown.stdout
    assert "Traceback" not in shown.stderr


def test_truncation_with_the_outbox_anchor_removed_is_caught_by_the_operators_anchor(
    box: tuple[Path, Path, Anchor], copy: Path
) -> None:
    _, key_path, anchor = box
    with tamper(copy) as conn:
        truncate(conn, keep=ROWS - 3, drop_anchor=True)
    assert verify_copy(copy, key_path).ok  # the file alone cannot tell: hence the operator's anchor
    report = verify_copy(copy, key_path, anchor)
    assert not report.ok
    assert report.problems == [f"journal truncated: the operator anchor counts {ROWS} rows, the journal ends at seq 5"]
    shown = cli_verify(copy, key_path, anchor)
    assert shown.returncode == 1 and "journal truncated" in shown.stdout


def test_a_whole_plain_rewrite_with_the_markers_removed_is_caught_by_the_operators_anchor(
    box: tuple[Path, Path, Anchor], copy: Path
) -> None:
    _, key_path, anchor = box
    with tamper(copy) as conn:
        conn.execute("UPDATE audit_journal SET operator_id = 2 WHERE seq = 3")
        plain_rehash(conn, from_seq=1, key=None, version=0)
        conn.execute("DELETE FROM pharmacy WHERE key = 'audit.keyed_from'")
        conn.execute("DELETE FROM outbox WHERE key LIKE 'event:audit.anchor:%'")
    report = verify_copy(copy, key_path, anchor)
    assert not report.ok
    assert report.problems == [
        f"journal rewritten: row seq {ROWS} is not the head the operator anchor names ({anchor.head[:16]}…)"
    ]
    assert cli_verify(copy, key_path, anchor).returncode == 1


def test_a_replaced_trigger_is_detected(box: tuple[Path, Path, Anchor], copy: Path) -> None:
    with tamper(copy, restore_triggers=False) as conn:
        conn.execute("CREATE TRIGGER audit_journal_no_update BEFORE UPDATE ON audit_journal BEGIN SELECT 1; END")
        conn.execute("CREATE TRIGGER audit_journal_no_delete BEFORE DELETE ON audit_journal BEGIN SELECT 1; END")
    report = verify_copy(copy, box[1])
    assert (
        "trigger audit_journal_no_update was replaced: its SQL is not the one the migrations create" in report.problems
    )


def test_the_untouched_database_verifies_intact(box: tuple[Path, Path, Anchor], copy: Path) -> None:
    _, key_path, anchor = box
    report = verify_copy(copy, key_path, anchor)
    assert report.ok, report.problems
    assert report.keyed_rows == ROWS and report.anchors_checked == ["operator", "acknowledged"]
    shown = cli_verify(copy, key_path, anchor)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert f"audit journal intact: {ROWS} rows ({ROWS} keyed), head {anchor}" in shown.stdout
    assert "matches the operator and acknowledged anchor" in shown.stdout
    # the journal grew after the anchor: still intact
    _write(copy, key_path, 2, start=100)
    assert verify_copy(copy, key_path, anchor).ok


def test_without_the_key_file_keyed_rows_are_not_declared_intact(box: tuple[Path, Path, Anchor], copy: Path) -> None:
    shown = cli_verify(copy, None)
    assert shown.returncode == 1
    assert f"{ROWS} keyed rows cannot be checked without the journal key" in shown.stdout
    other = copy.parent / "other.key"
    FieldCipher.create_key(other)
    wrong = cli_verify(copy, other)
    assert wrong.returncode == 1 and "changed after it was written" in wrong.stdout


def test_a_bad_anchor_argument_is_refused(box: tuple[Path, Path, Anchor], copy: Path) -> None:
    shown = cli_verify(copy, box[1], None)
    assert shown.returncode == 0
    env = {k: v for k, v in os.environ.items() if k not in ("COMPTOIR_DB", "COMPTOIR_KEY")}
    bad = subprocess.run(
        [sys.executable, "-m", "appliance.store.cli", "audit", "verify", "--db", str(copy), "--anchor", "abc:2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert bad.returncode == 1 and "<head-hash>:<count>" in bad.stderr


def test_pre_migration_plain_rows_still_verify(tmp_path: Path, key_path: Path) -> None:
    """A box written by the release before schema 15: plain SHA-256 rows, then keyed ones."""
    db_path = tmp_path / "old.db"
    old = open_database(db_path, migrations=MIGRATIONS[:14])
    try:
        for n in range(1, 4):  # what the old audit.append wrote
            with transaction(old) as conn:
                prev = conn.execute("SELECT hash FROM audit_journal ORDER BY seq DESC LIMIT 1").fetchone()
                prev_hash = prev[0] if prev else audit.GENESIS_HASH
                digest = audit.row_hash(
                    prev_hash, seq=n, at=float(n), operator_id=None, action="old.action", subject="", details_json="{}"
                )
                conn.execute(
                    "INSERT INTO audit_journal(seq, at, operator_id, action, subject, details, prev_hash, hash)"
                    " VALUES (?, ?, NULL, 'old.action', '', '{}', ?, ?)",
                    (n, float(n), prev_hash, digest),
                )
    finally:
        old.close()
    readonly = open_database(db_path, readonly=True)  # verify before the migration ran
    try:
        assert audit.verify(readonly).ok
    finally:
        readonly.close()
    _write(db_path, key_path, 2, start=10, operator_id=None)
    db = open_database(db_path, key_file=key_path)
    try:
        assert db.conn.execute("SELECT value FROM pharmacy WHERE key = 'audit.keyed_from'").fetchone() == ("4",)
        report = audit.verify(db)
        assert report.ok, report.problems
        assert (report.rows_checked, report.keyed_rows) == (5, 2)
        assert [e.hash_version for e in audit.entries(db)] == [0, 0, 0, 1, 1]
    finally:
        db.close()
    assert cli_verify(db_path, key_path).returncode == 0
    # a plain row appended now is refused by verify
    with tamper(db_path) as conn:
        append_forged(conn, key=None, version=0)
    shown = cli_verify(db_path, key_path)
    assert shown.returncode == 1 and "row seq 6 has a plain SHA-256 hash where a keyed one is due" in shown.stdout


def test_append_without_the_key_is_refused(tmp_path: Path) -> None:
    db = open_database(tmp_path / "nokey.db")
    try:
        with pytest.raises(audit.JournalKeyMissing, match="no journal key"), transaction(db) as conn:
            audit.append(conn, operator_id=None, action="test.action")
        assert db.conn.execute("SELECT count(*) FROM audit_journal").fetchone() == (0,)
    finally:
        db.close()


def test_another_key_on_the_same_connection_is_refused(db_path: Path, key_path: Path) -> None:
    db = open_database(db_path, key_file=key_path)
    try:
        audit.use_key(db, audit.load_key(key_path))  # the same again: fine
        with pytest.raises(StoreError, match="another journal key"):
            audit.use_key(db, GUESSED_KEY)
    finally:
        db.close()


def test_anchors_go_to_the_events_stream_at_batch_close_and_when_due(db_path: Path, key_path: Path) -> None:
    from appliance.store.records import CounterRecords

    db = open_database(db_path)
    try:
        records = CounterRecords(db, FieldCipher.load(key_path), lambda: 1000.0, backoffice_events=True)
        with transaction(db) as conn:
            records._open_batch(conn, 1000.0)
        number = records.close_batch(operator_id=None)
        assert number is not None
        anchors = db.conn.execute(
            "SELECT stream, key, payload FROM outbox WHERE key LIKE 'event:audit.anchor:%'"
        ).fetchall()
        head = audit.verify(db).head_hash
        assert anchors == [
            (
                "events",
                "event:audit.anchor:1",
                f'{{"at":1000.0,"count":1,"head":"{head}","seq":1,"type":"audit.anchor"}}',
            )
        ]
        with transaction(db) as conn:
            assert audit.enqueue_anchor_if_due(conn, now=5000.0) is None  # the head has not moved
            audit.append(conn, operator_id=None, action="test.action", at=1001.0)
            assert audit.enqueue_anchor_if_due(conn, now=1100.0) is None  # too soon
            assert audit.enqueue_anchor_if_due(conn, now=1000.0 + audit.ANCHOR_INTERVAL_SECONDS) is not None
    finally:
        db.close()


def _modes(db_path: Path) -> dict[str, int]:
    return {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (db_path, db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm"))
    }


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_database_wal_shm_and_key_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        key = tmp_path / "field.key"
        FieldCipher.create_key(key)
        db_path = tmp_path / "comptoir.db"
        db = open_database(db_path, key_file=key)
        try:
            with transaction(db) as conn:
                audit.append(conn, operator_id=None, action="test.action")
            assert set(_modes(db_path).values()) == {0o600}, _modes(db_path)
        finally:
            db.close()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        # a file left 0644 by an older release is tightened when the box opens it
        os.chmod(db_path, 0o644)
        open_database(db_path, key_file=key).close()
        assert stat.S_IMODE(db_path.stat().st_mode) == 0o600
    finally:
        os.umask(previous)
