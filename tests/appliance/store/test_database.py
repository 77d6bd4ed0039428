"""The database file: durable settings, forward-only migrations, and transactions that compose."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from appliance.store import Migration, StoreError, migrate, open_database, schema_version, transaction
from appliance.store.database import get_setting, set_setting, split_statements
from appliance.store.migrations import MIGRATIONS


def test_a_new_file_gets_every_migration_once_and_a_reopen_applies_nothing(db_path: Path) -> None:
    db = open_database(db_path)
    assert schema_version(db) == len(MIGRATIONS)
    assert {"pharmacy", "operators", "audit_journal", "outbox", "numbering"} <= set(db.table_names())
    assert migrate(db, MIGRATIONS) == []
    db.close()
    again = open_database(db_path)
    assert schema_version(again) == len(MIGRATIONS)
    again.close()


def test_migrations_run_forward_from_the_version_in_the_file(db_path: Path) -> None:
    first = [Migration(1, "a", "CREATE TABLE a (x INTEGER)")]
    more = [*first, Migration(2, "b", "CREATE TABLE b (y INTEGER); INSERT INTO b VALUES (1)")]
    db = open_database(db_path, migrations=first)
    assert schema_version(db) == 1
    assert migrate(db, more) == [2]
    assert migrate(db, more) == []
    assert db.execute("SELECT y FROM b").fetchall() == [(1,)]
    db.close()


def test_a_database_a_newer_release_migrated_is_still_used_after_a_roll_back(db_path: Path) -> None:
    db = open_database(db_path)
    db.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    conn.close()
    again = open_database(db_path)
    assert schema_version(again) == len(MIGRATIONS) + 1
    again.close()


def test_a_database_that_needs_a_newer_release_is_refused(db_path: Path) -> None:
    db = open_database(db_path)
    db.close()
    conn = sqlite3.connect(db_path)
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 2}")
    conn.execute("INSERT INTO pharmacy(key, value) VALUES ('schema.readable_from', ?)", (len(MIGRATIONS) + 2,))
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="newer than this software"):
        open_database(db_path)


def test_a_failing_migration_leaves_nothing_behind(db_path: Path) -> None:
    broken = [
        Migration(1, "fine", "CREATE TABLE a (x INTEGER)"),
        Migration(2, "broken", "CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1)"),
    ]
    with pytest.raises(StoreError, match="migration 2 \\(broken\\) failed"):
        open_database(db_path, migrations=broken)
    db = sqlite_utils.Database(db_path)
    assert schema_version(db) == 1
    assert db.table_names() == ["a"]
    db.close()


def test_a_migration_list_with_a_hole_is_refused(db_path: Path) -> None:
    with pytest.raises(StoreError, match=r"numbered 1\.\.N"):
        open_database(db_path, migrations=[Migration(1, "a", "SELECT 1"), Migration(3, "c", "SELECT 1")])


def test_the_file_is_in_wal_mode_with_full_sync_foreign_keys_a_busy_timeout_and_a_small_cache(
    db: sqlite_utils.Database,
) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert db.execute("PRAGMA cache_size").fetchone()[0] == -512  # KiB: the kernel caches the file already


def test_scripts_split_on_statements_not_on_every_semicolon() -> None:
    script = """
        CREATE TABLE t (x TEXT);
        INSERT INTO t VALUES ('a;b');
        CREATE TRIGGER t_no_delete BEFORE DELETE ON t BEGIN SELECT RAISE(ABORT, 'no; never'); END;
    """
    statements = split_statements(script)
    assert len(statements) == 3
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")


def test_a_transaction_commits_or_rolls_back_as_a_whole(db: sqlite_utils.Database) -> None:
    with transaction(db) as conn:
        set_setting(conn, "finess", "750000001")
    assert get_setting(db, "finess") == "750000001"
    with pytest.raises(RuntimeError), transaction(db) as conn:
        set_setting(conn, "finess", "changed")
        raise RuntimeError("boom")
    assert get_setting(db, "finess") == "750000001"
    assert not db.conn.in_transaction


def test_a_nested_transaction_is_a_savepoint_of_the_outer_one(db: sqlite_utils.Database) -> None:
    with transaction(db) as conn:
        set_setting(conn, "outer", "1")
        with pytest.raises(RuntimeError), transaction(db) as inner:
            set_setting(inner, "inner-failed", "1")
            raise RuntimeError("inner failure")
        with transaction(db) as inner:
            set_setting(inner, "inner-ok", "1")
        assert conn.in_transaction  # the inner blocks committed nothing by themselves
    assert get_setting(db, "outer") == "1"
    assert get_setting(db, "inner-ok") == "1"
    assert get_setting(db, "inner-failed") is None

    with pytest.raises(RuntimeError), transaction(db) as conn:
        with transaction(db) as inner:
            set_setting(inner, "lost-with-outer", "1")
        raise RuntimeError("outer failure")
    assert get_setting(db, "lost-with-outer") is None


def test_settings_cannot_be_written_outside_a_transaction(db: sqlite_utils.Database) -> None:
    with pytest.raises(StoreError, match="inside the caller's transaction"):
        set_setting(db.conn, "finess", "1")


def test_a_read_only_open_never_migrates(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    db = open_database(path, readonly=True)
    assert schema_version(db) == 0
    db.close()
    with pytest.raises(StoreError, match="not found"):
        open_database(tmp_path / "missing.db", readonly=True)
