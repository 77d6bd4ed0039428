"""Opening the counter's SQLite database, running its migrations and scoping its transactions (DESIGN §5).

Why these settings:

- **WAL** lets the kiosk read while the sync worker writes, and survives a power cut (the box has no
  UPS) without a rollback journal to replay by hand.
- **synchronous=FULL**: in WAL mode the default NORMAL may lose the last committed transactions on a
  power cut. Claims, numbers and the audit journal are financial and legal records: a number handed
  to a patient must still be there after the lights go out, so every commit is fsynced.
- **foreign_keys=ON**: SQLite leaves them off per connection unless asked.
- **busy timeout**: several processes (kiosk, sync, CLI) share the file; a writer waits for another
  instead of failing at once.

Connections are opened with ``isolation_level=None``: the Python driver never opens a transaction
behind our back, so a transaction exists exactly where :func:`transaction` (or sqlite-utils'
``atomic``) says. sqlite-utils' own write helpers (``db.execute``, ``table.insert``) then commit each
statement on its own when no transaction is open, and join the open one otherwise.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.lean_import import import_without

import_without("sqlite_utils", optional=("numpy", "pandas"))  # before anyone imports it: 20 MB less
import sqlite_utils  # noqa: E402  (the module imported just above)

log = logging.getLogger(__name__)

_savepoints = itertools.count(1)

PAGE_CACHE_KIB = 512
"""SQLite's own page cache per connection (its default is 2 MiB). The kernel's page cache already holds
the file, so SQLite's copy saves system calls, not disk reads: a look-up walks a handful of B-tree pages.
The default filled up over a few hundred sessions and was 2 MB of the kiosk's memory (issue 15)."""
BUSY_TIMEOUT_SECONDS = 10.0
"""How long a writer waits for another process's write lock before giving up with ``database is locked``."""


class StoreError(Exception):
    """Base of the store's errors: something about the database itself, with a message a support
    engineer can act on."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One forward step of the schema.

    ``sql`` may hold several statements (including ``CREATE TRIGGER ... BEGIN ...; END``). It runs in
    one transaction together with the ``user_version`` bump, so a migration is either fully applied
    or not at all. Migrations are never edited once shipped: a change is a new migration.
    """

    version: int
    name: str
    sql: str


def split_statements(sql: str) -> list[str]:
    """Split a script into complete SQL statements.

    ``sqlite3.Connection.executescript`` would COMMIT the open transaction first, which would break
    "one migration, one transaction"; so statements are executed one by one. A ``;`` inside a string
    or a trigger body does not end a statement: :func:`sqlite3.complete_statement` decides.
    """
    statements: list[str] = []
    buffer = ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.strip(";").strip():
                statements.append(statement)
            buffer = ""
    if buffer.rstrip(";").strip():
        raise StoreError(f"incomplete SQL statement at the end of the script: {buffer.strip()[:80]!r}")
    return statements


def schema_version(db: sqlite_utils.Database) -> int:
    """The schema version recorded in the file (``PRAGMA user_version``; 0 for a new file)."""
    row = db.conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def _check_sequence(migrations: Sequence[Migration]) -> None:
    """Versions must be 1, 2, 3…: a hole or a duplicate is a merge mistake that must not reach a box."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migration list is not numbered 1..N: found version {migration.version} "
                f"({migration.name!r}) where {expected} was expected"
            )


def migrate(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> list[int]:
    """Run forward the migrations above the file's ``user_version``; return the versions applied.

    Each migration runs in its own ``BEGIN IMMEDIATE`` transaction with its ``user_version`` bump, and
    re-reads the version under the write lock, so two processes starting together apply it once.
    Foreign keys are checked before the commit. A file newer than the code (a downgrade of the
    software) is refused rather than used: old code would misread or corrupt the new schema.
    """
    _check_sequence(migrations)
    latest = migrations[-1].version if migrations else 0
    current = schema_version(db)
    if current > latest:
        raise StoreError(
            f"database schema version {current} is newer than this software knows ({latest}); "
            "install the newer comptoir release or restore a matching backup"
        )
    conn = db.conn
    if conn.in_transaction:
        raise StoreError("migrate() must run outside a transaction")
    applied: list[int] = []
    for migration in migrations:
        if migration.version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            if schema_version(db) >= migration.version:  # another process got there first
                conn.execute("ROLLBACK")
                continue
            for statement in split_statements(migration.sql):
                conn.execute(statement)
            problems = conn.execute("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise StoreError(f"foreign key violations after migration: {problems[:5]}")
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error | StoreError):
                raise StoreError(
                    f"migration {migration.version} ({migration.name}) failed and was rolled back: {exc}"
                ) from exc
            raise
        log.info("store: applied migration %d (%s)", migration.version, migration.name)
        applied.append(migration.version)
        current = migration.version
    return applied


READABLE_FROM_KEY = "schema.readable_from"
"""``pharmacy`` setting: the oldest schema a release must know to use this file (absent: 1).

Migrations are expand-only (:mod:`appliance.updates.migration_rule`), so a release keeps working on a
file a newer release has migrated — which is what lets an update roll back. A contraction, two
releases later, raises this floor, and releases below it refuse the file."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """The schema of a file against the code reading it."""

    file_version: int
    code_version: int
    readable_from: int

    @property
    def newer_than_code(self) -> bool:
        return self.file_version > self.code_version

    @property
    def readable(self) -> bool:
        return self.readable_from <= self.code_version


def schema_state(db: sqlite_utils.Database, migrations: Sequence[Migration]) -> SchemaState:
    """Where the file stands for code that knows ``migrations``."""
    file_version = schema_version(db)
    code_version = migrations[-1].version if migrations else 0
    floor = 1
    has_settings = db.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pharmacy'").fetchone()
    if has_settings:
        row = db.conn.execute("SELECT value FROM pharmacy WHERE key = ?", (READABLE_FROM_KEY,)).fetchone()
        if row is not None:
            floor = int(row[0])
    return SchemaState(file_version, code_version, floor)


class StoreConnection(sqlite3.Connection):
    """The connections :func:`connect` opens: a plain SQLite connection that can also carry the audit
    journal's chain key (:func:`appliance.store.audit.use_key`), so every ``audit.append`` on it finds
    the key without each caller passing it around."""

    journal_key: bytes | None = None


DATABASE_MODE = 0o600
"""The database holds prescriptions, prescribers and ALD/C2S flags: readable by its owner only.
SQLite gives the ``-wal`` and ``-shm`` files the database file's mode (whatever the umask)."""


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (SQLite would create it 0644 minus the
    umask), and take group/other access away from an existing database and its WAL/SHM files."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_MODE)
    except FileExistsError:
        pass
    else:
        try:
            os.fchmod(fd, DATABASE_MODE)  # the umask can only narrow the mode, but be explicit
        finally:
            os.close(fd)
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
            if mode & 0o077:
                os.chmod(candidate, mode & 0o700)
                log.warning("store: %s was readable by other users; mode set to %04o", candidate.name, mode & 0o700)
        except FileNotFoundError:
            continue
        except PermissionError:  # not our file: SQLite will say what it can do with it
            continue


def connect(path: Path, *, readonly: bool = False) -> StoreConnection:
    """A raw connection with the store's per-connection settings (see the module docstring).

    ``readonly`` opens the file with ``mode=ro`` (it must exist): for checks and backups that must
    never change the file, not even by migrating it. Otherwise the file is created (or kept) 0600.
    """
    if readonly:
        if not path.exists():
            raise StoreError(f"database file not found: {path}")
        uri = path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(
            uri, uri=True, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, factory=StoreConnection
        )
    else:
        if str(path) != ":memory:":
            _private_file(path)
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, factory=StoreConnection)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"could not switch {path} to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def open_database(
    path: Path,
    *,
    migrations: Sequence[Migration] | None = None,
    readonly: bool = False,
    key_file: Path | None = None,
) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    ``migrations`` defaults to the project's list (:data:`appliance.store.migrations.MIGRATIONS`,
    store tables first, then the domain's). A file a newer release already migrated is used as it is
    when this code can still read it (see :data:`READABLE_FROM_KEY`: the roll-back case), refused
    otherwise. ``readonly`` skips migrations and writes nothing; it is for ``audit verify`` and
    backups. ``key_file`` (the field key file) registers the audit journal's chain key on the
    connection (:func:`appliance.store.audit.use_key`): without it the database can be read, but
    ``audit.append`` refuses to write (a :class:`~appliance.store.records.CounterRecords` registers the
    key of its cipher too). The caller closes the database (``db.close()``).
    """
    journal_key: bytes | None = None
    if key_file is not None:
        from appliance.store.sealing import JOURNAL_INFO, derive_key, read_key_file

        journal_key = derive_key(read_key_file(key_file), JOURNAL_INFO)
    conn = connect(path, readonly=readonly)
    try:
        if journal_key is not None:
            conn.journal_key = journal_key
        db = sqlite_utils.Database(conn, execute_plugins=False)
        if not readonly:
            if migrations is None:
                from appliance.store.migrations import MIGRATIONS

                migrations = MIGRATIONS
            state = schema_state(db, migrations)
            if not state.newer_than_code:
                migrate(db, migrations)
            elif not state.readable:
                raise StoreError(
                    f"database schema version {state.file_version} is newer than this software knows "
                    f"({state.code_version}) and needs a release that knows schema {state.readable_from}; "
                    "install the newer comptoir release or restore a matching backup"
                )
    except BaseException:
        conn.close()
        raise
    return db


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """Run a block as one durable transaction: ``BEGIN IMMEDIATE`` … ``COMMIT``, ``ROLLBACK`` on exception.

    IMMEDIATE takes the write lock up front, so a read-then-write block (next number, audit chain
    head) cannot be overtaken by another process between its read and its write, and lock waits
    happen at the start (within the busy timeout) rather than as a failure halfway.

    Nesting rule: a ``transaction`` opened while one is already open on the same connection does not
    commit anything; it becomes a SAVEPOINT inside the outer transaction. If the inner block raises,
    only its own changes are undone and the exception propagates; whatever the inner block did is
    committed, or rolled back, with the outermost transaction. So library functions may open a
    transaction freely and still compose into a caller's larger one. (An outer transaction opened
    with a plain ``BEGIN`` — e.g. sqlite-utils' ``atomic`` — is joined the same way, but without the
    up-front write lock.)
    """
    conn = db.conn
    if conn.in_transaction:
        name = f"comptoir_sp_{next(_savepoints)}"
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # a RAISE(ROLLBACK) may already have ended everything
                conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            conn.execute(f"RELEASE SAVEPOINT {name}")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    else:
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def require_transaction(conn: sqlite3.Connection, what: str) -> None:
    """Refuse to run ``what`` outside a transaction.

    Audit rows, outbox messages and numbers must commit together with the change that causes them;
    a call in autocommit mode would commit them alone, which is exactly the bug this prevents.
    """
    if not conn.in_transaction:
        raise StoreError(f"{what} must run inside the caller's transaction (use store.transaction(db))")


def get_setting(db: sqlite_utils.Database, key: str, default: str | None = None) -> str | None:
    """A value of the ``pharmacy`` key/value settings table (identity of the pharmacy, options)."""
    row = db.conn.execute("SELECT value FROM pharmacy WHERE key = ?", (key,)).fetchone()
    return default if row is None else str(row[0])


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Set a ``pharmacy`` setting inside the caller's transaction (so its audit row commits with it)."""
    require_transaction(conn, "set_setting")
    conn.execute(
        "INSERT INTO pharmacy(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts (column name -> value), without changing the
    connection's row factory, which other code may rely on."""
    cursor = conn.execute(sql, tuple(params))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
