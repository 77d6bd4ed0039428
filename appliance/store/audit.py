"""The audit journal: who did what, append-only and hash-chained so tampering is detected (DESIGN §5).

Each row carries ``prev_hash`` (the previous row's hash, 64 zeros for the first) and
``hash = SHA-256(prev_hash + canonical JSON of {seq, at, operator_id, action, subject, details})``.
Changing, deleting or reordering a row breaks the chain from that row on, and :func:`verify` says
where. Triggers refuse UPDATE and DELETE, so tampering takes a deliberate bypass (dropping the
triggers, editing the file); the chain is what catches it. What the chain alone cannot prove is
that nobody removed the newest rows *and* rewound ``sqlite_sequence``: anchor the head hash
elsewhere (the back office via the outbox, backups) for that.

**No patient identity in ``subject`` or ``details``** (no name, birth date, NIR, INS, address): the
journal is never encrypted, is kept for years and is read by support staff. Refer to patients and
documents by internal ids (``"patient:42"``, ``"claim:1234"``). Operator names are not needed either:
``operator_id`` says who.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from appliance.store.database import require_transaction

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first row."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One journal row, as stored."""

    seq: int
    at: float
    operator_id: int | None
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The outcome of :func:`verify`: ``ok`` and, when not, problems in plain English, first broken
    row first."""

    ok: bool
    rows_checked: int
    problems: list[str] = field(default_factory=list)
    first_broken_seq: int | None = None
    head_hash: str = GENESIS_HASH
    """Hash of the last row: publish it elsewhere to anchor the chain."""


def canonical_json(value: Any) -> str:
    """The one JSON text of a value: sorted keys, no spaces, UTF-8 kept, no NaN. Hash input must not
    depend on dict order or formatting."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def row_hash(
    prev_hash: str,
    *,
    seq: int,
    at: float,
    operator_id: int | None,
    action: str,
    subject: str,
    details_json: str,
) -> str:
    """SHA-256 (hex) of ``prev_hash`` followed by the canonical JSON of the row's content.

    ``details`` enters as its stored JSON text, so any byte changed in it is detected.
    """
    content = canonical_json(
        {
            "seq": seq,
            "at": float(at),
            "operator_id": operator_id,
            "action": action,
            "subject": subject,
            "details": details_json,
        }
    )
    return hashlib.sha256((prev_hash + content).encode("utf-8")).hexdigest()


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(highest seq ever used, hash of the last row) — the seq counts deleted tail rows too."""
    last = conn.execute("SELECT seq, hash FROM audit_journal ORDER BY seq DESC LIMIT 1").fetchone()
    used = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_journal'").fetchone()
    top = max(int(last[0]) if last else 0, int(used[0]) if used else 0)
    return top, str(last[1]) if last else GENESIS_HASH


def append(
    conn: sqlite3.Connection,
    *,
    operator_id: int | None,
    action: str,
    subject: str = "",
    details: Mapping[str, Any] | None = None,
    at: float | None = None,
) -> int:
    """Append one row inside the caller's transaction and return its seq.

    It commits (or rolls back) with the change it records, so the journal never claims something
    that did not happen, nor misses something that did. ``operator_id`` is None only for actions of
    the system itself (migrations, scheduled backups, sync). ``details`` must be JSON-serialisable and
    must not contain patient identity (see the module docstring). Run it in a ``BEGIN IMMEDIATE``
    transaction (:func:`appliance.store.transaction`) so two writers cannot read the same chain head.
    """
    require_transaction(conn, "audit.append")
    if not action:
        raise ValueError("an audit action is required")
    when = time.time() if at is None else float(at)
    if not math.isfinite(when):
        raise ValueError("audit time must be a finite number")
    details_json = canonical_json(dict(details or {}))
    top, prev_hash = _head(conn)
    seq = top + 1
    digest = row_hash(
        prev_hash,
        seq=seq,
        at=when,
        operator_id=operator_id,
        action=action,
        subject=subject,
        details_json=details_json,
    )
    conn.execute(
        "INSERT INTO audit_journal(seq, at, operator_id, action, subject, details, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, when, operator_id, action, subject, details_json, prev_hash, digest),
    )
    return seq


_COLUMNS = "seq, at, operator_id, action, subject, details, prev_hash, hash"


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, operator_id, action, subject, details, prev_hash, digest = row
    try:
        parsed = json.loads(details)
    except (TypeError, ValueError):
        parsed = {"_unparseable": str(details)}
    return AuditEntry(
        int(seq),
        float(at),
        None if operator_id is None else int(operator_id),
        str(action),
        str(subject),
        parsed if isinstance(parsed, dict) else {"_value": parsed},
        str(prev_hash),
        str(digest),
    )


def entries(db: sqlite_utils.Database, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
    """Journal rows with seq > ``after``, oldest first (for screens and exports)."""
    cursor = db.conn.execute(
        f"SELECT {_COLUMNS} FROM audit_journal WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
        (after, limit),
    )
    return [_entry(row) for row in cursor.fetchall()]


def _recomputed(row: tuple[Any, ...], *, seq: int | None = None) -> str:
    stored_seq, at, operator_id, action, subject, details, prev_hash, _ = row
    return row_hash(
        str(prev_hash),
        seq=int(stored_seq) if seq is None else seq,
        at=float(at),
        operator_id=None if operator_id is None else int(operator_id),
        action=str(action),
        subject=str(subject),
        details_json=str(details),
    )


class _ChainPositions:
    """Where a row sits in the chain as written: follow ``prev_hash`` links back to the genesis.

    A row whose stored seq differs from its position in the chain was moved (reordered).
    """

    def __init__(self, prev_of: dict[str, str]) -> None:
        self._prev_of = prev_of
        self._depth: dict[str, int | None] = {GENESIS_HASH: 0}

    def depth(self, digest: str) -> int | None:
        """Rows from the genesis to the row with hash ``digest`` included (None: the chain is cut)."""
        path: list[str] = []
        current = digest
        while current not in self._depth:
            if current not in self._prev_of or current in path:
                self._depth[current] = None
                break
            path.append(current)
            current = self._prev_of[current]
        depth = self._depth[current]
        for item in reversed(path):
            depth = None if depth is None else depth + 1
            self._depth[item] = depth
        return self._depth[digest]

    def written_as(self, prev_hash: str) -> int | None:
        """The seq a row following ``prev_hash`` was written with."""
        depth = self.depth(prev_hash)
        return None if depth is None else depth + 1


def verify(db: sqlite_utils.Database) -> AuditReport:
    """Walk the whole chain and report every break, naming the seq where it starts.

    Detected: a row whose content changed (its hash no longer matches), rows deleted in the middle
    (a hole in seq) or at the end (seq below the highest ever used), rows moved to another seq
    (reordered), and rows rewritten with recomputed hashes (the next row's link no longer matches).
    Each row is checked against its stored neighbours, so one edit gives one problem, not a cascade.
    """
    conn = db.conn
    all_rows = conn.execute(f"SELECT {_COLUMNS} FROM audit_journal ORDER BY seq").fetchall()  # noqa: S608
    seq_of_hash = {str(row[7]): int(row[0]) for row in all_rows}
    positions = _ChainPositions({str(row[7]): str(row[6]) for row in all_rows})
    problems: list[tuple[int, str]] = []
    expected_seq, expected_prev = 1, GENESIS_HASH
    for row in all_rows:
        seq, prev_hash, stored_hash = int(row[0]), str(row[6]), str(row[7])
        gap = seq > expected_seq
        if gap:
            missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq} to {seq - 1}"
            problems.append((expected_seq, f"row {missing} deleted: the journal jumps to seq {seq}"))
        if _recomputed(row) != stored_hash:
            origin = positions.written_as(prev_hash)
            if origin is not None and origin != seq and _recomputed(row, seq=origin) == stored_hash:
                problems.append((seq, f"row seq {seq} reordered: it was written as seq {origin}"))
            else:
                problems.append((seq, f"row seq {seq} changed after it was written: its hash does not match"))
        elif prev_hash != expected_prev and not gap:
            if prev_hash in seq_of_hash and seq_of_hash[prev_hash] != seq - 1:
                problems.append((seq, f"rows reordered: seq {seq} was written after seq {seq_of_hash[prev_hash]}"))
            else:
                problems.append(
                    (
                        seq,
                        f"chain broken at seq {seq}: it does not link to seq {seq - 1} "
                        f"(seq {seq - 1} rewritten, or rows inserted or removed before it)",
                    )
                )
        expected_seq, expected_prev = seq + 1, stored_hash
    top, _ = _head(conn)
    if top >= expected_seq:
        missing = f"seq {expected_seq}" if top == expected_seq else f"seq {expected_seq} to {top}"
        problems.append((expected_seq, f"row {missing} deleted: the journal ends at seq {expected_seq - 1}"))
    problems.sort(key=lambda item: item[0])
    return AuditReport(
        ok=not problems,
        rows_checked=len(all_rows),
        problems=[text for _, text in problems],
        first_broken_seq=problems[0][0] if problems else None,
        head_hash=expected_prev,
    )
