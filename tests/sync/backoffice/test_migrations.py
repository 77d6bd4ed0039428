"""One list of migrations for SQLite and PostgreSQL, applied and versioned the same way on both."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sandbox.backoffice.postgres import PostgresCluster
from sync.backoffice.engines import open_database
from sync.backoffice.migrations import LATEST, MIGRATIONS, TYPES, Migration, SchemaError, applied_versions, migrate
from sync.backoffice.store import BackOfficeStore

# The sandbox back office's schema before versioning (its oldest files lacked commands.signed/expires_at).
UNVERSIONED = """
CREATE TABLE devices (device TEXT PRIMARY KEY, state TEXT, state_at REAL, telemetry TEXT, telemetry_at REAL,
    last_seen REAL, duplicates INTEGER NOT NULL DEFAULT 0, out_of_order INTEGER NOT NULL DEFAULT 0);
CREATE TABLE events (id INTEGER PRIMARY KEY, device TEXT NOT NULL, stream TEXT NOT NULL, key TEXT NOT NULL,
    seq INTEGER NOT NULL, type TEXT, payload TEXT NOT NULL, received_at REAL NOT NULL, UNIQUE (device, key));
CREATE INDEX events_by_type ON events(type, id);
CREATE TABLE streams (device TEXT NOT NULL, stream TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (device, stream)) WITHOUT ROWID;
CREATE TABLE commands (id TEXT PRIMARY KEY, device TEXT NOT NULL, type TEXT NOT NULL, args TEXT NOT NULL,
    sent_at REAL NOT NULL, status TEXT NOT NULL DEFAULT 'sent', reason TEXT, answer TEXT, answered_at REAL);
INSERT INTO devices(device, last_seen) VALUES ('ph1/c1', 1.0);
INSERT INTO events(device, stream, key, seq, type, payload, received_at)
    VALUES ('ph1/c1', 'events', 'k1', 1, 'claim.created', '{"key": "k1"}', 1.0);
INSERT INTO streams VALUES ('ph1/c1', 'events', 1);
"""


def test_every_migration_is_written_for_both_engines() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    assert set(TYPES) == {"sqlite", "postgresql"}
    for migration in MIGRATIONS:
        for dialect in TYPES:
            for statement in migration.sql(dialect):
                assert "{" not in statement and " REAL" not in statement.upper(), (migration.version, statement)


def test_a_new_database_gets_every_version_once(store_target: Path | str) -> None:
    db = open_database(store_target)
    try:
        assert migrate(db) == list(range(1, LATEST + 1))
        assert migrate(db) == []
        assert applied_versions(db) == list(range(1, LATEST + 1))
    finally:
        db.close()
    BackOfficeStore(store_target).close()  # opening again changes nothing


def test_a_failing_migration_leaves_the_database_as_it_was(store_target: Path | str) -> None:
    broken = (*MIGRATIONS, Migration(LATEST + 1, "broken", ("CREATE TABLE extra (x TEXT)", "NOT SQL AT ALL")))
    db = open_database(store_target)
    try:
        with pytest.raises(Exception):  # noqa: B017 - each engine has its own syntax error class
            migrate(db, broken)
        assert applied_versions(db) == []
        assert migrate(db) == list(range(1, LATEST + 1))
    finally:
        db.close()


def test_a_database_newer_than_the_code_is_refused(store_target: Path | str) -> None:
    BackOfficeStore(store_target).close()
    db = open_database(store_target)
    try:
        db.execute(
            "INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)", (LATEST + 1, "future", 0.0)
        )
    finally:
        db.close()
    with pytest.raises(SchemaError, match=f"schema version {LATEST + 1}, newer than this back office knows"):
        BackOfficeStore(store_target)


def test_a_sandbox_file_from_before_versioning_is_adopted_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(UNVERSIONED)
    conn.close()
    store = BackOfficeStore(path)
    try:
        assert store.event_keys("ph1/c1") == ["k1"]
        store.record_command("c1", "ph1/c1", "resync", {}, signed=b"{}", expires_at=9e9)  # the added columns
        assert (store.command("c1") or {})["signed"] == "{}"
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, LATEST + 1))
    finally:
        conn.close()


def test_workers_starting_together_migrate_once(postgres: PostgresCluster) -> None:
    conninfo = postgres.create_database()
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            BackOfficeStore(conninfo).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    db = open_database(conninfo)
    try:
        assert applied_versions(db) == list(range(1, LATEST + 1))
    finally:
        db.close()
