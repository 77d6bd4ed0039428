"""The expand-only rule: the real migration list obeys it, every breaking statement is caught, and the
previous release's code really runs on a database migrated by the next one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.store import audit
from appliance.store.database import Migration, StoreError, migrate, open_database, transaction
from appliance.store.migrations import MIGRATIONS
from appliance.updates.compat import READABLE_FROM_KEY, open_compatible
from appliance.updates.migration_rule import CONTRACTIONS, check_migrations, readable_from
from tests.appliance.updates.releases import ROOT

NEXT = Migration(
    len(MIGRATIONS) + 1,
    "next release",
    """
    -- a new table with its own index, trigger and rows; a nullable column and a defaulted one
    CREATE TABLE update_probe (id INTEGER PRIMARY KEY, note TEXT NOT NULL DEFAULT '');
    CREATE UNIQUE INDEX update_probe_note ON update_probe(note);
    CREATE TRIGGER update_probe_no_delete BEFORE DELETE ON update_probe BEGIN SELECT RAISE(ABORT, 'no'); END;
    INSERT INTO update_probe(note) VALUES ('hello; world');
    ALTER TABLE operators ADD COLUMN nickname TEXT;
    ALTER TABLE operators ADD COLUMN theme TEXT NOT NULL DEFAULT 'light';
    CREATE INDEX operators_nickname ON operators(nickname);
    INSERT INTO pharmacy(key, value) VALUES ('kiosk.theme', 'light');
    """,
)


def test_the_real_migration_list_is_expand_only():
    assert check_migrations(MIGRATIONS, exempt=CONTRACTIONS) == []
    assert readable_from(MIGRATIONS) == 1
    assert CONTRACTIONS == {}


def test_an_expand_only_migration_passes():
    assert check_migrations([*MIGRATIONS, NEXT]) == []


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("DROP TABLE numbering", "DROP"),
        ("DROP INDEX outbox_undelivered", "DROP"),
        ("ALTER TABLE operators RENAME TO staff", "RENAME"),
        ("ALTER TABLE operators RENAME COLUMN name TO full_name", "RENAME"),
        ("ALTER TABLE operators DROP COLUMN locked_until", "DROP COLUMN"),
        ("ALTER TABLE operators ADD COLUMN badge TEXT NOT NULL", "without a DEFAULT"),
        ("ALTER TABLE operators ADD COLUMN badge TEXT UNIQUE", "UNIQUE"),
        ("CREATE UNIQUE INDEX operators_pin ON operators(pin_hash)", "UNIQUE INDEX"),
        ("CREATE TRIGGER t BEFORE INSERT ON claims BEGIN SELECT RAISE(ABORT, 'x'); END", "TRIGGER"),
        ("UPDATE operators SET role = 'pharmacien'", "UPDATE/DELETE"),
        ("DELETE FROM outbox WHERE delivered_at IS NOT NULL", "UPDATE/DELETE"),
        ("INSERT INTO numbering(series, last) VALUES ('x', 0)", "INSERT into a table"),
        ("INSERT OR REPLACE INTO pharmacy(key, value) VALUES ('a', 'b')", "REPLACE"),
        ("PRAGMA user_version = 99", "PRAGMA"),
        ("CREATE TABLE operators (id INTEGER PRIMARY KEY)", "exists in an earlier migration"),
        ("VACUUM", "maintenance"),
    ],
)
def test_each_breaking_statement_is_refused(sql: str, reason: str):
    bad = Migration(len(MIGRATIONS) + 1, "bad", f"-- a comment; with a semicolon\n{sql};")
    problems = check_migrations([*MIGRATIONS, bad])
    assert len(problems) == 1 and reason in problems[0].reason, problems
    assert problems[0].version == bad.version and "bad" in str(problems[0])


def test_a_unique_index_on_columns_the_old_code_never_writes_passes():
    """Old rows and old inserts hold NULL in a column added here, and NULLs are never duplicates."""
    fine = Migration(
        len(MIGRATIONS) + 1,
        "badge",
        "ALTER TABLE operators ADD COLUMN badge TEXT;\n"
        "CREATE UNIQUE INDEX operators_badge ON operators(badge) WHERE badge IS NOT NULL;",
    )
    assert check_migrations([*MIGRATIONS, fine]) == []


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE operators ADD COLUMN badge TEXT DEFAULT 'x'; CREATE UNIQUE INDEX b ON operators(badge)",
        "ALTER TABLE operators ADD COLUMN badge TEXT; CREATE UNIQUE INDEX b ON operators(badge, name)",
        "ALTER TABLE operators ADD COLUMN badge TEXT; CREATE UNIQUE INDEX b ON operators(coalesce(badge, name))",
        "ALTER TABLE claims ADD COLUMN badge TEXT; CREATE UNIQUE INDEX b ON operators(badge)",
    ],
)
def test_a_unique_index_that_old_rows_could_break_is_refused(sql: str):
    bad = Migration(len(MIGRATIONS) + 1, "bad", sql + ";")
    problems = check_migrations([*MIGRATIONS, bad])
    assert len(problems) == 1 and "UNIQUE INDEX" in problems[0].reason, problems


def test_the_previous_release_runs_on_the_migrated_database(tmp_path: Path):
    db_path = tmp_path / "comptoir.db"
    db = open_database(db_path, migrations=[*MIGRATIONS, NEXT])  # the new release migrated it
    db.close()
    old = open_compatible(db_path, migrations=MIGRATIONS)  # the previous release
    audit.use_key(old, bytes(32))  # its audit rows are keyed, as on a box
    try:
        from appliance.domain import Role
        from appliance.store.operators import add_operator  # the old code's own write path

        add_operator(old, "Camille", Role.PHARMACIEN, "482193")
        with transaction(old) as conn:
            conn.execute("INSERT INTO numbering(series, last) VALUES ('claims', 0)")
        row = old.conn.execute("SELECT name, nickname, theme FROM operators").fetchone()
        assert row == ("Camille", None, "light")
    finally:
        old.close()


def test_a_contracted_schema_is_refused_by_older_code(tmp_path: Path):
    db_path = tmp_path / "comptoir.db"
    contraction = Migration(
        len(MIGRATIONS) + 1,
        "contraction",
        f"INSERT INTO pharmacy(key, value) VALUES ('{READABLE_FROM_KEY}', '{len(MIGRATIONS) + 1}');",  # noqa: S608
    )
    db = open_database(db_path, migrations=[*MIGRATIONS, contraction])
    db.close()
    with pytest.raises(StoreError, match=f"needs a release that knows schema {len(MIGRATIONS) + 1}"):
        open_compatible(db_path, migrations=MIGRATIONS)


def test_migrate_still_runs_forward_through_open_compatible(tmp_path: Path):
    db = open_compatible(tmp_path / "new.db")
    try:
        assert migrate(db, MIGRATIONS) == []
    finally:
        db.close()


def test_the_core_never_inserts_by_position():
    """Old code keeps working when a column is added only if it names its columns."""
    offenders = []
    for path in (ROOT / "appliance").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"INSERT\s+(OR\s+\w+\s+)?INTO\s+\w+\s+(VALUES|SELECT)", line, re.IGNORECASE):
                offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []
