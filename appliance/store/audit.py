"""The audit journal: who did what, append-only and hash-chained so tampering is detected (DESIGN §5).

Each row carries ``prev_hash`` (the previous row's hash, 64 zeros for the first) and
``hash = HMAC-SHA256(journal key, "comptoir.audit/v1" NUL prev_hash + canonical JSON of {seq, at,
operator_id, action, subject, details})`` (``hash_version`` 1). Rows written before schema 15 have
``hash_version`` 0: a plain ``SHA-256(prev_hash + canonical JSON)``, still checked that way; a plain
row *after* a keyed one (or at or after the ``audit.keyed_from`` setting) is reported as written
without the key. Changing, deleting or reordering a row breaks the chain from that row on, and
:func:`verify` says where; recomputing the chain needs the journal key, which lives outside the
database (an HKDF sub-key of the field key file, see :mod:`appliance.store.sealing`). The key is
registered on the connection (:func:`use_key`, ``open_database(..., key_file=...)``, or
:class:`~appliance.store.records.CounterRecords`); :func:`append` refuses to write without it.

Triggers refuse UPDATE and DELETE, and :func:`verify` checks they are still there with their SQL.
What the chain alone cannot prove is that nobody removed the newest rows *and* rewound
``sqlite_sequence`` (or replaced the whole journal): the head hash and row count are **anchored**
outside the box — :func:`enqueue_anchor` sends them to the back office on the ``events`` stream (at
each batch close and periodically by ``comptoir sync``), and :func:`verify` compares the journal with
an anchor given by the operator from the back office (authoritative) and with the last anchor the
back office acknowledged (kept in the outbox: a check against a careless tamperer only, since the
outbox is in the same file).

**No patient identity in ``subject`` or ``details``** (no name, birth date, NIR, INS, address): the
journal is never encrypted, is kept for years and is read by support staff. Refer to patients and
documents by internal ids (``"patient:42"``, ``"claim:1234"``). Operator names are not needed either:
``operator_id`` says who.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.store.database import StoreError, require_transaction

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first row."""
HASH_PLAIN, HASH_KEYED = 0, 1
"""``hash_version``: 0 plain SHA-256 (rows before schema 15), 1 HMAC-SHA256 under the journal key."""
KEYED_FROM_KEY = "audit.keyed_from"
"""``pharmacy`` setting written by migration 15: the first seq that must be keyed."""
ANCHOR_TYPE = "audit.anchor"
"""Type of the back-office event carrying the journal's head (stream ``events``)."""
ANCHOR_STREAM = "events"
_KEYED_PREFIX = b"comptoir.audit/v1\x00"


class JournalKeyMissing(StoreError):
    """An append on a connection without the journal key: refused rather than writing an unkeyed row."""


def load_key(key_file: Path) -> bytes:
    """The journal key from the field key file (checked: present, 32 bytes, mode 0600)."""
    from appliance.store.sealing import JOURNAL_INFO, derive_key, read_key_file

    return derive_key(read_key_file(key_file), JOURNAL_INFO)


def _connection(target: sqlite_utils.Database | sqlite3.Connection) -> sqlite3.Connection:
    return target.conn if isinstance(target, sqlite_utils.Database) else target


def use_key(target: sqlite_utils.Database | sqlite3.Connection, key: bytes) -> None:
    """Register the journal key on a connection opened by :func:`appliance.store.database.connect`,
    so that every :func:`append` on it is keyed. Registering the same key again is harmless; another
    key is refused (two keys on one journal would break its chain)."""
    conn = _connection(target)
    if len(key) != 32:
        raise ValueError("the journal key must be 32 bytes")
    current = getattr(conn, "journal_key", None)
    if current is not None and not hmac.compare_digest(current, key):
        raise StoreError("another journal key is already registered on this connection")
    try:
        conn.journal_key = key  # type: ignore[attr-defined]
    except AttributeError:
        raise StoreError(
            "this connection cannot carry the journal key: open it with appliance.store.open_database"
        ) from None


def key_of(target: sqlite_utils.Database | sqlite3.Connection) -> bytes | None:
    """The journal key registered on the connection, if any."""
    key = getattr(_connection(target), "journal_key", None)
    return key if isinstance(key, bytes) else None


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
    hash_version: int = HASH_PLAIN


@dataclass(frozen=True, slots=True)
class Anchor:
    """The journal's head as published outside the box: ``count`` rows (the head's seq) ending with
    the row whose hash is ``head``. Written ``<head-hash>:<count>``."""

    head: str
    count: int

    def __str__(self) -> str:
        return f"{self.head}:{self.count}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        head, sep, count = text.strip().rpartition(":")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", head) or not count.isdigit() or int(count) < 1:
            raise ValueError(f"an anchor is <head-hash>:<count> (64 hex digits, a positive count), not {text!r}")
        return cls(head, int(count))


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
    keyed_rows: int = 0
    anchors_checked: list[str] = field(default_factory=list)
    """The anchors the journal was compared with (and matched when ``ok``), e.g. ``"operator"``."""


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
    key: bytes | None = None,
) -> str:
    """The row's hash (hex): with ``key``, HMAC-SHA256 of a version prefix, ``prev_hash`` and the
    canonical JSON of the row's content (``hash_version`` 1); without, the plain SHA-256 of
    ``prev_hash`` and the JSON (``hash_version`` 0, rows written before schema 15).

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
    message = (prev_hash + content).encode("utf-8")
    if key is not None:
        return hmac.new(key, _KEYED_PREFIX + message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


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
    key = key_of(conn)
    if key is None:
        raise JournalKeyMissing(
            "audit.append: no journal key on this connection; open the database with its key file "
            "(open_database(path, key_file=...) or CounterRecords with its cipher): refusing to write "
            "an audit row that anyone could recompute"
        )
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
        key=key,
    )
    conn.execute(
        "INSERT INTO audit_journal(seq, at, operator_id, action, subject, details, prev_hash, hash, hash_version)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (seq, when, operator_id, action, subject, details_json, prev_hash, digest, HASH_KEYED),
    )
    return seq


_BASE_COLUMNS = "seq, at, operator_id, action, subject, details, prev_hash, hash"


def _columns(conn: sqlite3.Connection) -> str:
    """The columns to read; a file not yet migrated to schema 15 (read-only verify) has no
    ``hash_version``: its rows are all plain."""
    names = {str(row[1]) for row in conn.execute("PRAGMA table_info(audit_journal)")}
    return _BASE_COLUMNS + (", hash_version" if "hash_version" in names else ", 0 AS hash_version")


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, operator_id, action, subject, details, prev_hash, digest, version = row
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
        int(version),
    )


def entries(db: sqlite_utils.Database, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
    """Journal rows with seq > ``after``, oldest first (for screens and exports)."""
    cursor = db.conn.execute(
        f"SELECT {_columns(db.conn)} FROM audit_journal WHERE seq > ? ORDER BY seq LIMIT ?",  # noqa: S608
        (after, limit),
    )
    return [_entry(row) for row in cursor.fetchall()]


def _recomputed(row: tuple[Any, ...], key: bytes | None, *, seq: int | None = None) -> str:
    stored_seq, at, operator_id, action, subject, details, prev_hash, _, version = row
    return row_hash(
        str(prev_hash),
        seq=int(stored_seq) if seq is None else seq,
        at=float(at),
        operator_id=None if operator_id is None else int(operator_id),
        action=str(action),
        subject=str(subject),
        details_json=str(details),
        key=key if int(version) == HASH_KEYED else None,
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


def _normalised(sql: str) -> str:
    return " ".join(sql.split()).rstrip(";").strip()


def expected_triggers() -> dict[str, str]:
    """The append-only triggers of ``audit_journal`` as the migrations create them (name -> SQL)."""
    from appliance.store.database import split_statements
    from appliance.store.migrations import AUDIT

    found: dict[str, str] = {}
    for statement in split_statements(AUDIT.sql):
        text = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
        match = re.match(r"\s*CREATE\s+TRIGGER\s+(\w+)", text, re.IGNORECASE)
        if match:
            found[match.group(1)] = _normalised(text)
    return found


def _trigger_problems(conn: sqlite3.Connection) -> list[str]:
    actual = {
        str(name): _normalised(str(sql or ""))
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_journal'"
        )
    }
    problems = []
    for name, sql in expected_triggers().items():
        if name not in actual:
            problems.append(f"trigger {name} is missing: the append-only protection was dropped")
        elif actual[name] != sql:
            problems.append(f"trigger {name} was replaced: its SQL is not the one the migrations create")
    problems.extend(
        f"unexpected trigger {name} on audit_journal" for name in sorted(set(actual) - set(expected_triggers()))
    )
    return problems


def _keyed_from(conn: sqlite3.Connection) -> int | None:
    try:
        row = conn.execute("SELECT value FROM pharmacy WHERE key = ?", (KEYED_FROM_KEY,)).fetchone()
    except sqlite3.OperationalError:
        return None
    try:
        return None if row is None else int(row[0])
    except ValueError:
        return 1  # an edited setting: treat every row as one that must be keyed


def _head_row(conn: sqlite3.Connection) -> tuple[int, str, float] | None:
    row = conn.execute("SELECT seq, hash, at FROM audit_journal ORDER BY seq DESC LIMIT 1").fetchone()
    return None if row is None else (int(row[0]), str(row[1]), float(row[2]))


def enqueue_anchor(conn: sqlite3.Connection, *, now: float | None = None) -> int | None:
    """Queue the journal's head (seq, hash) for the back office on the ``events`` stream, inside the
    caller's transaction; return the outbox id (None for an empty journal).

    The key names the head's seq and the payload depends on the head only, so anchoring an unchanged
    head again adds nothing. Needs no journal key: the head is public, forging it is what needs one.
    """
    from appliance.store import outbox

    require_transaction(conn, "audit.enqueue_anchor")
    head = _head_row(conn)
    if head is None:
        return None
    seq, digest, at = head
    return outbox.enqueue(
        conn,
        stream=ANCHOR_STREAM,
        key=f"event:{ANCHOR_TYPE}:{seq}",
        payload={"type": ANCHOR_TYPE, "seq": seq, "count": seq, "head": digest, "at": at},
        now=now,
    )


ANCHOR_INTERVAL_SECONDS = 15 * 60.0
"""How often ``comptoir sync`` anchors a head that moved (besides every batch close)."""


def enqueue_anchor_if_due(
    conn: sqlite3.Connection, *, now: float, interval: float = ANCHOR_INTERVAL_SECONDS
) -> int | None:
    """:func:`enqueue_anchor` when the head moved since the last anchor and that one is ``interval``
    seconds old (the periodic anchor); None otherwise."""
    require_transaction(conn, "audit.enqueue_anchor_if_due")
    head = _head_row(conn)
    if head is None:
        return None
    last = conn.execute(
        "SELECT key, created_at FROM outbox WHERE stream = ? AND key LIKE ? ORDER BY id DESC LIMIT 1",
        (ANCHOR_STREAM, f"event:{ANCHOR_TYPE}:%"),
    ).fetchone()
    if last is not None and (str(last[0]) == f"event:{ANCHOR_TYPE}:{head[0]}" or now - float(last[1]) < interval):
        return None
    return enqueue_anchor(conn, now=now)


def acknowledged_anchor(db: sqlite_utils.Database) -> Anchor | None:
    """The last anchor the back office acknowledged (a delivered ``audit.anchor`` outbox message)."""
    try:
        row = db.conn.execute(
            "SELECT payload FROM outbox WHERE stream = ? AND key LIKE ? AND delivered_at IS NOT NULL"
            " ORDER BY id DESC LIMIT 1",
            (ANCHOR_STREAM, f"event:{ANCHOR_TYPE}:%"),
        ).fetchone()
    except sqlite3.OperationalError:  # no outbox table
        return None
    if row is None:
        return None
    try:
        payload = json.loads(row[0])
        return Anchor(str(payload["head"]), int(payload["count"]))
    except (ValueError, KeyError, TypeError):
        return Anchor("", 0)  # an edited anchor message: compared, it reports a mismatch


def _anchor_problem(anchor: Anchor, source: str, hash_at: dict[int, str], last_seq: int) -> tuple[int, str] | None:
    if anchor.count < 1:
        return (1, f"the {source} anchor in the outbox is unreadable (edited)")
    if anchor.count not in hash_at:
        if anchor.count > last_seq:
            return (
                last_seq + 1,
                f"journal truncated: the {source} anchor counts {anchor.count} rows, "
                f"the journal ends at seq {last_seq}",
            )
        return (anchor.count, f"row seq {anchor.count}, the {source} anchor's head, is missing")
    if not hmac.compare_digest(hash_at[anchor.count], anchor.head):
        return (
            anchor.count,
            f"journal rewritten: row seq {anchor.count} is not the head the {source} anchor names "
            f"({anchor.head[:16]}…)",
        )
    return None


def verify(
    db: sqlite_utils.Database,
    *,
    key: bytes | None = None,
    anchor: Anchor | None = None,
    check_acknowledged: bool = True,
) -> AuditReport:
    """Walk the whole chain and report every break, naming the seq where it starts.

    Detected: a row whose content changed (its hash no longer matches), rows deleted in the middle
    (a hole in seq) or at the end (seq below the highest ever used), rows moved to another seq
    (reordered), rows rewritten with recomputed hashes (the next row's link no longer matches, and a
    keyed hash cannot be recomputed without the key), plain rows where keyed ones are due, missing or
    replaced append-only triggers, and — against ``anchor`` (from the back office, given by the
    operator) and the last anchor the back office acknowledged — truncation and whole-chain rewrites.
    Each row is checked against its stored neighbours, so one edit gives one problem, not a cascade.
    ``key`` defaults to the one registered on the connection; keyed rows without a key are reported
    as unchecked (not ok).
    """
    conn = db.conn
    key = key if key is not None else key_of(conn)
    all_rows = conn.execute(f"SELECT {_columns(conn)} FROM audit_journal ORDER BY seq").fetchall()  # noqa: S608
    seq_of_hash = {str(row[7]): int(row[0]) for row in all_rows}
    positions = _ChainPositions({str(row[7]): str(row[6]) for row in all_rows})
    problems: list[tuple[int, str]] = [(0, text) for text in _trigger_problems(conn)]
    keyed_from = _keyed_from(conn)
    expected_seq, expected_prev = 1, GENESIS_HASH
    seen_keyed, keyed_rows, unchecked = False, 0, 0
    for row in all_rows:
        seq, prev_hash, stored_hash, version = int(row[0]), str(row[6]), str(row[7]), int(row[8])
        gap = seq > expected_seq
        if gap:
            missing = f"seq {expected_seq}" if seq == expected_seq + 1 else f"seq {expected_seq} to {seq - 1}"
            problems.append((expected_seq, f"row {missing} deleted: the journal jumps to seq {seq}"))
        content_ok = True
        if version == HASH_KEYED:
            seen_keyed = True
            keyed_rows += 1
            if key is None:
                unchecked += 1
                content_ok = False
        elif version != HASH_PLAIN:
            problems.append((seq, f"row seq {seq} has an unknown hash version {version}"))
            content_ok = False
        elif seen_keyed or (keyed_from is not None and seq >= keyed_from):
            problems.append(
                (
                    seq,
                    f"row seq {seq} has a plain SHA-256 hash where a keyed one is due: written without the "
                    "journal key (forged, or by a release older than schema 15)",
                )
            )
            content_ok = False
        if content_ok and _recomputed(row, key) != stored_hash:
            origin = positions.written_as(prev_hash)
            if origin is not None and origin != seq and _recomputed(row, key, seq=origin) == stored_hash:
                problems.append((seq, f"row seq {seq} reordered: it was written as seq {origin}"))
            else:
                problems.append(
                    (
                        seq,
                        f"row seq {seq} changed after it was written: its hash does not match"
                        + (" (or forged without the journal key)" if version == HASH_KEYED else ""),
                    )
                )
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
    if unchecked:
        problems.append((0, f"{unchecked} keyed rows cannot be checked without the journal key (give --key)"))
    top, _ = _head(conn)
    if top >= expected_seq:
        missing = f"seq {expected_seq}" if top == expected_seq else f"seq {expected_seq} to {top}"
        problems.append((expected_seq, f"row {missing} deleted: the journal ends at seq {expected_seq - 1}"))
    hash_at = {int(row[0]): str(row[7]) for row in all_rows}
    checked: list[str] = []
    candidates: list[tuple[Anchor, str]] = []
    if anchor is not None:
        candidates.append((anchor, "operator"))
    if check_acknowledged:
        acknowledged = acknowledged_anchor(db)
        if acknowledged is not None:
            candidates.append((acknowledged, "acknowledged"))
    for candidate, source in candidates:
        checked.append(source)
        problem = _anchor_problem(candidate, source, hash_at, expected_seq - 1)
        if problem is not None:
            problems.append(problem)
    problems.sort(key=lambda item: item[0])
    broken = [seq for seq, _ in problems if seq > 0]
    return AuditReport(
        ok=not problems,
        rows_checked=len(all_rows),
        problems=[text for _, text in problems],
        first_broken_seq=broken[0] if broken else None,
        head_hash=expected_prev,
        keyed_rows=keyed_rows,
        anchors_checked=checked,
    )
