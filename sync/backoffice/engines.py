"""The back office's two database engines behind one small interface.

- **SQLite** (the standard library's ``sqlite3``): the embedded default, one file, one worker (a
  pharmacy group's own back office, development, the tests). WAL and ``synchronous=FULL``; a
  transaction is ``BEGIN IMMEDIATE``, so writers are serialised by the file lock.
- **PostgreSQL** (psycopg 3): several workers on several machines against one server. A transaction is
  ``BEGIN`` … ``COMMIT`` at READ COMMITTED; what SQLite's file lock gives for free is taken explicitly
  with transaction-scoped advisory locks (:meth:`Database.lock_devices`, :meth:`Database.lock_migrations`).

The store writes its SQL once, in the subset both engines speak, with ``?`` placeholders
(:func:`pg_sql` turns them into psycopg's ``%s``). Both cursors answer ``fetchone``, ``fetchall``,
``rowcount`` and ``description`` the same way, which is all the store uses.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import psycopg

DEVICE_LOCKS = 0x636F  # advisory lock namespace of the devices' streams ("co")
MIGRATION_LOCK = (0x636F, -1)  # one lock for whoever migrates


class Cursor(Protocol):
    """What the store reads from a cursor (sqlite3's and psycopg's both have it)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """One connection to the back office's database, used under the store's lock."""

    dialect: str
    """``"sqlite"`` or ``"postgresql"``: picks the per-dialect pieces of a migration."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    def transaction(self) -> AbstractContextManager[None]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        ...

    def lock_devices(self, devices: Sequence[str]) -> None:
        """Inside a transaction: wait until no other worker's transaction holds one of ``devices``
        (sorted: every worker takes them in the same order), then hold them until it ends."""

    def lock_migrations(self) -> None:
        """Inside a transaction: one migrating process at a time."""

    def close(self) -> None: ...


class SqliteDatabase:
    """A SQLite file (WAL, ``synchronous=FULL``, 10 s busy timeout)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, tuple(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: takes the write lock at once, so a batch never fails half-way on it."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def lock_devices(self, devices: Sequence[str]) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already serialises every writer of the file."""

    def lock_migrations(self) -> None:
        """Nothing to do (same reason)."""

    def close(self) -> None:
        self._conn.close()


@functools.lru_cache(maxsize=256)
def pg_sql(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresDatabase:
    """One psycopg connection (autocommit outside explicit transactions), reopened when it broke.

    ``conninfo`` is a libpq connection string or URL; :mod:`sync.backoffice.config` builds it with
    ``sslmode=verify-full`` unless told otherwise.
    """

    dialect = "postgresql"

    def __init__(self, conninfo: str, *, connect_timeout: float = 10.0) -> None:
        import psycopg

        self._psycopg = psycopg
        self.conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._conn: psycopg.Connection[Any] = self._connect()
        self._in_transaction = threading.local()

    def _connect(self) -> psycopg.Connection[Any]:
        return self._psycopg.connect(self.conninfo, autocommit=True, connect_timeout=int(self._connect_timeout))

    def _usable(self) -> psycopg.Connection[Any]:
        """The connection, reopened first if the server closed it (restart, failover, idle timeout)."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._conn if getattr(self._in_transaction, "on", False) else self._usable()
        return conn.execute(pg_sql(sql), tuple(params))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._usable()
        self._in_transaction.on = True
        try:
            with conn.transaction():
                yield
        finally:
            self._in_transaction.on = False

    def lock_devices(self, devices: Sequence[str]) -> None:
        """``pg_advisory_xact_lock`` on each box, held until this transaction ends, taken in one statement
        in sorted order (the sort feeds the aggregate that calls the function row by row), so two
        batches never wait on each other in a cycle. Should they ever (a hash collision between two
        boxes' names only makes them share a lock), PostgreSQL's deadlock detection fails one batch,
        which is then neither committed nor acknowledged: its boxes send it again."""
        self.execute(
            f"SELECT count(pg_advisory_xact_lock({DEVICE_LOCKS}, hashtext(d)))"  # noqa: S608 - a constant
            " FROM (SELECT unnest(?::text[]) AS d ORDER BY 1) AS boxes",
            (sorted(devices),),
        )

    def lock_migrations(self) -> None:
        self.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK[0]}, {MIGRATION_LOCK[1]})")

    def close(self) -> None:
        self._conn.close()


def open_database(target: Path | str) -> SqliteDatabase | PostgresDatabase:
    """A :class:`Path` is a SQLite file; a string is a PostgreSQL connection string or URL."""
    if isinstance(target, Path):
        return SqliteDatabase(target)
    return PostgresDatabase(target)
