"""Gapless, never-repeating numbers (claim/FSE numbers, batch numbers) (DESIGN §3 step 8, §5).

A number is the counter row of its series, incremented *in the caller's transaction*: it commits
with the claim that uses it or rolls back with it. So a claim abandoned halfway does not consume a
number (no gap), and two claims can never get the same one (the increment holds the database write
lock until commit: no repeat, even across processes). A sequence or a ``max()+1`` would give one or
the other of these bugs.

The price is that the series' number is held by the open transaction: keep the transaction that
claims a number short, and do network calls before or after it, never inside.
"""

from __future__ import annotations

import sqlite3

import sqlite_utils

from appliance.store.database import StoreError, require_transaction


def next_number(conn: sqlite3.Connection, series: str) -> int:
    """Claim the next number of ``series`` (1 for a new series) inside the caller's transaction."""
    require_transaction(conn, "next_number")
    if not series:
        raise ValueError("a numbering series needs a name")
    row = conn.execute(
        "INSERT INTO numbering(series, last) VALUES (?, 1)"
        " ON CONFLICT(series) DO UPDATE SET last = last + 1 RETURNING last",
        (series,),
    ).fetchone()
    return int(row[0])


def current_number(db: sqlite_utils.Database, series: str) -> int:
    """The last number handed out in ``series`` (0 if none yet); committed numbers only."""
    row = db.conn.execute("SELECT last FROM numbering WHERE series = ?", (series,)).fetchone()
    return 0 if row is None else int(row[0])


def start_series(conn: sqlite3.Connection, series: str, last: int) -> None:
    """Set where a series continues from (e.g. the last claim number of the previous software), so the
    next number is ``last + 1``. Refused if it would move a series backwards (a repeat)."""
    require_transaction(conn, "start_series")
    if last < 0:
        raise ValueError("a series cannot start below 0")
    row = conn.execute("SELECT last FROM numbering WHERE series = ?", (series,)).fetchone()
    if row is not None and int(row[0]) > last:
        raise StoreError(f"series {series!r} is already at {row[0]}; moving it back to {last} would repeat numbers")
    conn.execute(
        "INSERT INTO numbering(series, last) VALUES (?, ?) ON CONFLICT(series) DO UPDATE SET last = excluded.last",
        (series, last),
    )
