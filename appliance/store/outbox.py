"""The durable outbox: everything that must leave the box (DESIGN §5, §6).

A message is written in the *same transaction* as the change that causes it (a claim and its
sending, a dispensation and its execution data), so there is never a change without its message nor
a message without its change. The sync worker then delivers it at least once; receivers apply it
once by deduplicating on its idempotency ``key``.

Order is per ``stream`` (e.g. ``"claims"``, ``"eprescription"``, ``"backoffice"``): within a stream
messages go in enqueue order and a failing message blocks the ones behind it (a claim batch must not
overtake the claims it contains); other streams carry on. :func:`pending` hands out only the head of
each stream, so a worker loops: ``pending`` -> deliver -> ``mark_delivered``/``mark_failed`` ->
``pending`` again.

Payloads are stored in clear JSON: put internal ids and what the receiver needs, and seal identity
fields (:mod:`appliance.store.sealing`) if a payload must carry them while waiting.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from appliance.store.audit import canonical_json
from appliance.store.database import StoreError, require_transaction


class OutboxConflict(StoreError):
    """The idempotency key is already used by a different message: two distinct messages sharing a
    key would make receivers drop one of them, so this is a bug to surface, not to absorb."""


class UnknownMessage(StoreError):
    """No outbox message with that id."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message waiting to be (or already) delivered."""

    id: int
    stream: str
    key: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None
    delivered_at: float | None


_COLUMNS = "id, stream, key, payload, created_at, attempts, next_attempt_at, last_error, delivered_at"


def _message(row: tuple[Any, ...]) -> OutboxMessage:
    ident, stream, key, payload, created_at, attempts, next_at, last_error, delivered_at = row
    return OutboxMessage(
        int(ident),
        str(stream),
        str(key),
        json.loads(payload),
        float(created_at),
        int(attempts),
        float(next_at),
        None if last_error is None else str(last_error),
        None if delivered_at is None else float(delivered_at),
    )


def enqueue(
    conn: sqlite3.Connection,
    *,
    stream: str,
    key: str,
    payload: Mapping[str, Any],
    now: float | None = None,
) -> int:
    """Add a message inside the caller's transaction and return its id.

    Idempotent on ``key`` (unique across all streams — prefix it, e.g. ``"claim:2024-000123"``):
    enqueuing the same key again with the same stream and payload returns the existing message's id
    and adds nothing, so a retried operation cannot send twice. The same key with a different
    stream or payload raises :class:`OutboxConflict`. The message is due at once.
    """
    require_transaction(conn, "outbox.enqueue")
    if not stream or not key:
        raise ValueError("an outbox message needs a stream and a key")
    body = canonical_json(dict(payload))
    when = time.time() if now is None else float(now)
    row = conn.execute(
        "INSERT INTO outbox(stream, key, payload, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT(key) DO NOTHING RETURNING id",
        (stream, key, body, when, when),
    ).fetchone()
    if row is not None:
        return int(row[0])
    ident, old_stream, old_body = conn.execute(
        "SELECT id, stream, payload FROM outbox WHERE key = ?", (key,)
    ).fetchone()
    if old_stream != stream or old_body != body:
        raise OutboxConflict(f"outbox key {key!r} is already used by message {ident} with other content")
    return int(ident)


def pending(
    db: sqlite_utils.Database, stream: str | None = None, limit: int = 100, *, now: float | None = None
) -> list[OutboxMessage]:
    """The head-of-line message of each stream (or of ``stream``), if it is due, oldest first.

    A head that failed and waits for its ``retry_at`` is not due, and nothing behind it is returned:
    a stream never skips a message. At most ``limit`` messages (one per stream).
    """
    when = time.time() if now is None else float(now)
    cursor = db.conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE id IN ("  # noqa: S608
        " SELECT min(id) FROM outbox WHERE delivered_at IS NULL AND (?1 IS NULL OR stream = ?1)"
        " GROUP BY stream"
        ") AND next_attempt_at <= ?2 ORDER BY id LIMIT ?3",
        (stream, when, limit),
    )
    return [_message(row) for row in cursor.fetchall()]


def get(db: sqlite_utils.Database, message_id: int) -> OutboxMessage:
    """One message by id (for support screens and tests)."""
    row = db.conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE id = ?",  # noqa: S608
        (message_id,),
    ).fetchone()
    if row is None:
        raise UnknownMessage(f"no outbox message {message_id}")
    return _message(row)


def mark_delivered(
    conn: sqlite3.Connection,
    message_id: int,
    response: Mapping[str, Any],
    *,
    now: float | None = None,
) -> None:
    """Record the receiver's acceptance (and its response, e.g. an acknowledgement number).

    Delivering an already delivered message again (at-least-once) keeps the first record.
    """
    require_transaction(conn, "outbox.mark_delivered")
    when = time.time() if now is None else float(now)
    cursor = conn.execute(
        "UPDATE outbox SET delivered_at = ?, response = ?, attempts = attempts + 1, last_error = NULL"
        " WHERE id = ? AND delivered_at IS NULL",
        (when, canonical_json(dict(response)), message_id),
    )
    if cursor.rowcount == 0 and conn.execute("SELECT 1 FROM outbox WHERE id = ?", (message_id,)).fetchone() is None:
        raise UnknownMessage(f"no outbox message {message_id}")


def mark_failed(conn: sqlite3.Connection, message_id: int, error: str, retry_at: float) -> int:
    """Record a failed attempt; the message (and its stream behind it) waits until ``retry_at``.

    Returns the number of attempts so far, for the worker's back-off. ``error`` is kept for support
    screens: no patient data in it. A delivered message is left as it is.
    """
    require_transaction(conn, "outbox.mark_failed")
    row = conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
        " WHERE id = ? AND delivered_at IS NULL RETURNING attempts",
        (error[:2000], float(retry_at), message_id),
    ).fetchone()
    if row is not None:
        return int(row[0])
    existing = conn.execute("SELECT attempts FROM outbox WHERE id = ?", (message_id,)).fetchone()
    if existing is None:
        raise UnknownMessage(f"no outbox message {message_id}")
    return int(existing[0])
