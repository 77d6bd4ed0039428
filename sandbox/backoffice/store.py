"""The reference back office's own SQLite: the fleet, the events (deduplicated by key), commands.

Applying a message is idempotent: an event whose ``(device, key)`` is already stored is counted as a
duplicate and dropped (at-least-once delivery from the boxes becomes "applied once" here). The order
of each box's streams is checked with the ``seq`` the box puts in every message (its outbox id): a new
key arriving with a ``seq`` lower than one already stored is counted in ``out_of_order`` (the tests
expect zero).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.updates.events import TERMINAL as TERMINAL_STAGES

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device        TEXT PRIMARY KEY,
    state         TEXT,
    state_at      REAL,
    telemetry     TEXT,
    telemetry_at  REAL,
    last_seen     REAL,
    duplicates    INTEGER NOT NULL DEFAULT 0,
    out_of_order  INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id          INTEGER PRIMARY KEY,
    device      TEXT NOT NULL,
    stream      TEXT NOT NULL,
    key         TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    type        TEXT,
    payload     TEXT NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (device, key)
);
CREATE INDEX IF NOT EXISTS events_by_type ON events(type, id);
CREATE TABLE IF NOT EXISTS streams (
    device   TEXT NOT NULL,
    stream   TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (device, stream)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commands (
    id          TEXT PRIMARY KEY,
    device      TEXT NOT NULL,
    type        TEXT NOT NULL,
    args        TEXT NOT NULL,
    sent_at     REAL NOT NULL,
    status      TEXT NOT NULL DEFAULT 'sent',
    reason      TEXT,
    answer      TEXT,
    answered_at REAL,
    signed      TEXT,
    expires_at  REAL
);
CREATE TABLE IF NOT EXISTS rollouts (
    id               INTEGER PRIMARY KEY,
    version          TEXT NOT NULL UNIQUE,
    url              TEXT NOT NULL,
    started_at       REAL NOT NULL,
    state            TEXT NOT NULL DEFAULT 'running',
    stage            INTEGER NOT NULL DEFAULT 0,
    stage_started_at REAL NOT NULL,
    pause_reason     TEXT NOT NULL DEFAULT '',
    updated_at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rollout_offers (
    rollout    INTEGER NOT NULL REFERENCES rollouts(id),
    device     TEXT NOT NULL,
    command    TEXT NOT NULL,
    offered_at REAL NOT NULL,
    status     TEXT NOT NULL DEFAULT 'offered',
    PRIMARY KEY (rollout, device)
) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message as the broker handed it over."""

    topic: str
    payload: bytes
    received_at: float
    correlation: bytes | None = None
    """MQTT 5 correlation data of the box's send (echoed with a held-back notice, so the box can tell
    a notice about this send from a late one about an earlier send)."""


def split_topic(topic: str) -> tuple[str, str] | None:
    """``comptoir/<pharmacy>/<device>/<kind>`` -> (``<pharmacy>/<device>``, ``<kind>``)."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "comptoir":
        return None
    return f"{parts[1]}/{parts[2]}", "/".join(parts[3:])


@dataclass(slots=True)
class Applied:
    """What a batch did to the boxes' outbox messages, for their end-to-end acknowledgement."""

    stored: list[tuple[str, str]] = field(default_factory=list)
    """``(device, key)`` now stored (new or repeated): the box may mark them delivered."""
    held: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    """``(device, key, correlation)`` held back because the message before it in its stream is missing."""
    commands: list[tuple[str, bytes]] = field(default_factory=list)
    """``(device, signed command)`` to send again: the box just came online and has not answered them
    (a broker that crashed may have lost what it queued for the box; the box applies a command once)."""


class BackOfficeStore:
    """Thread-safe (one lock) access to the back office's database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = FULL")
        with self._lock:
            self._conn.execute("BEGIN")
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(commands)")}
            for column, kind in (("signed", "TEXT"), ("expires_at", "REAL")):  # files from before re-sending
                if column not in columns:
                    self._conn.execute(f"ALTER TABLE commands ADD COLUMN {column} {kind}")
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- applying messages (one transaction for a batch, committed before the PUBACKs go out)

    def apply(self, messages: Iterable[Incoming]) -> Applied:
        """Store a batch of messages in one transaction (the caller acknowledges them afterwards).

        Returns ``(device, key)`` of the outbox messages now stored (new or repeated) and of those
        held back, for the end-to-end acknowledgement to the boxes. A message whose ``prev`` (the seq
        before it in its stream) is newer than the last one stored is held back (not stored): its
        predecessor was lost on the way, and telling the box lets it send both again, in order, at once.
        """
        applied = Applied()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for message in messages:
                    self._apply_one(conn, message, applied)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return applied

    def _touch(self, conn: sqlite3.Connection, device: str, at: float) -> None:
        conn.execute(
            "INSERT INTO devices(device, last_seen) VALUES (?, ?) ON CONFLICT(device) DO UPDATE SET last_seen = ?",
            (device, at, at),
        )

    def _apply_one(self, conn: sqlite3.Connection, message: Incoming, applied: Applied) -> None:
        where = split_topic(message.topic)
        if where is None:
            return
        device, kind = where
        at = message.received_at
        if kind == "state":
            state = message.payload.decode("utf-8", "replace")[:32]
            self._touch(conn, device, at)
            conn.execute("UPDATE devices SET state = ?, state_at = ? WHERE device = ?", (state, at, device))
            if state == "online":
                unanswered = conn.execute(
                    "SELECT signed FROM commands WHERE device = ? AND status = 'sent' AND signed IS NOT NULL"
                    " AND expires_at > ? ORDER BY sent_at",
                    (device, time.time()),
                )
                applied.commands.extend((device, str(row[0]).encode("utf-8")) for row in unanswered)
            return
        try:
            body = json.loads(message.payload)
        except (UnicodeDecodeError, ValueError):
            return
        if not isinstance(body, dict):
            return
        self._touch(conn, device, at)
        if kind == "telemetry":
            conn.execute(
                "UPDATE devices SET telemetry = ?, telemetry_at = ? WHERE device = ?",
                (json.dumps(body), at, device),
            )
            return
        if kind == "cmd/ack" and "key" not in body:
            self._answer(conn, body, at)  # an answer sent directly (refusal, repeated answer)
            return
        if kind not in ("events", "events/update", "cmd/ack") or not isinstance(body.get("key"), str):
            return
        seq = int(body.get("seq") or 0)
        stream = str(body.get("stream") or kind)
        prev = body.get("prev")
        last = conn.execute("SELECT last_seq FROM streams WHERE device = ? AND stream = ?", (device, stream)).fetchone()
        if (
            isinstance(prev, int)
            and last is not None
            and prev > int(last[0])
            and conn.execute("SELECT 1 FROM events WHERE device = ? AND key = ?", (device, body["key"])).fetchone()
            is None
        ):
            applied.held.append(
                (device, body["key"], message.correlation)
            )  # its predecessor has not arrived: the box sends both again
            return
        inserted = conn.execute(
            "INSERT INTO events(device, stream, key, seq, type, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(device, key) DO NOTHING",
            (device, stream, body["key"], seq, body.get("type"), json.dumps(body), at),
        ).rowcount
        if not inserted:
            conn.execute("UPDATE devices SET duplicates = duplicates + 1 WHERE device = ?", (device,))
            applied.stored.append((device, body["key"]))
            return
        if last is not None and seq <= int(last[0]):
            conn.execute("UPDATE devices SET out_of_order = out_of_order + 1 WHERE device = ?", (device,))
        conn.execute(
            "INSERT INTO streams(device, stream, last_seq) VALUES (?, ?, ?)"
            " ON CONFLICT(device, stream) DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)",
            (device, stream, seq),
        )
        if kind == "cmd/ack":
            self._answer(conn, body, at)
        applied.stored.append((device, body["key"]))

    @staticmethod
    def _answer(conn: sqlite3.Connection, body: dict[str, Any], at: float) -> None:
        command = body.get("command")
        if not isinstance(command, str):
            return
        conn.execute(
            "UPDATE commands SET status = ?, reason = ?, answer = ?, answered_at = ? WHERE id = ?",
            (str(body.get("status")), body.get("reason"), json.dumps(body), at, command),
        )

    def record_command(
        self,
        command_id: str,
        device: str,
        kind: str,
        args: dict[str, Any],
        *,
        signed: bytes | None = None,
        expires_at: float | None = None,
    ) -> None:
        """Record a command sent; with its signed form it is sent again each time the box comes online
        until it answers or expires."""
        with self._lock:
            self._conn.execute(
                "INSERT INTO commands(id, device, type, args, sent_at, signed, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(id) DO NOTHING",
                (
                    command_id,
                    device,
                    kind,
                    json.dumps(args),
                    time.time(),
                    None if signed is None else signed.decode("utf-8"),
                    expires_at,
                ),
            )

    # --- reading

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def events(self, device: str | None = None, stream: str = "events") -> list[dict[str, Any]]:
        """Stored events, in the order they were first received."""
        rows = self._rows(
            "SELECT device, stream, key, seq, type, payload, received_at FROM events"
            " WHERE stream = ? AND (? IS NULL OR device = ?) ORDER BY id",
            (stream, device, device),
        )
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def event_keys(self, device: str, stream: str = "events") -> list[str]:
        return [
            r["key"]
            for r in self._rows("SELECT key FROM events WHERE device = ? AND stream = ? ORDER BY id", (device, stream))
        ]

    def commands(self, device: str | None = None) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT id, device, type, status, reason, answer, sent_at, answered_at FROM commands"
            " WHERE (? IS NULL OR device = ?) ORDER BY sent_at",
            (device, device),
        )

    def command(self, command_id: str) -> dict[str, Any] | None:
        found = self._rows("SELECT * FROM commands WHERE id = ?", (command_id,))
        return found[0] if found else None

    def rejections(self, device: str, limit: int = 20) -> list[dict[str, Any]]:
        """Recent claim rejections (from the boxes' ``batch.acknowledged`` events) and refused commands."""
        out: list[dict[str, Any]] = []
        for row in self._rows(
            "SELECT payload, received_at FROM events WHERE device = ? AND type = 'batch.acknowledged'"
            " ORDER BY id DESC LIMIT ?",
            (device, limit),
        ):
            body = json.loads(row["payload"])
            for item in body.get("rejected") or []:
                out.append({"kind": "claim", "batch": body.get("batch"), **item, "at": row["received_at"]})
        for row in self._rows(
            "SELECT id, type, reason, answered_at FROM commands WHERE device = ? AND status = 'refused'"
            " ORDER BY answered_at DESC LIMIT ?",
            (device, limit),
        ):
            out.append(
                {
                    "kind": "command",
                    "command": row["id"],
                    "type": row["type"],
                    "reason": row["reason"],
                    "at": row["answered_at"],
                }
            )
        return out[:limit]

    def fleet(self) -> list[dict[str, Any]]:
        """Every box: online state, version, outbox depth, last sync, counters, recent rejections."""
        devices = []
        for row in self._rows("SELECT * FROM devices ORDER BY device"):
            tele = json.loads(row["telemetry"]) if row["telemetry"] else {}
            events = self._rows(
                "SELECT count(*) AS n FROM events WHERE device = ? AND stream = 'events'", (row["device"],)
            )
            devices.append(
                {
                    "device": row["device"],
                    "online": row["state"] == "online",
                    "state": row["state"],
                    "state_at": row["state_at"],
                    "version": (tele.get("versions") or {}).get("comptoir"),
                    "outbox_depth": (tele.get("outbox") or {}).get("depth"),
                    "last_sync": tele.get("last_sync"),
                    "telemetry_at": row["telemetry_at"],
                    "last_seen": row["last_seen"],
                    "events": events[0]["n"],
                    "duplicates": row["duplicates"],
                    "out_of_order": row["out_of_order"],
                    "rejections": self.rejections(row["device"]),
                }
            )
        return devices

    def device_ids(self) -> list[str]:
        """Every box the back office has heard from: the fleet a roll-out is spread over."""
        return [r["device"] for r in self._rows("SELECT device FROM devices ORDER BY device")]

    # --- staged roll-outs (the policy is :mod:`appliance.updates.rollout`; the loop is sandbox.backoffice.rollouts)

    def create_rollout(self, version: str, url: str, now: float) -> int:
        """A new roll-out, running from stage 0. Raises ``ValueError`` if this version already has one
        (the boxes' buckets depend on the version, so a second roll-out would offer the same boxes)."""
        with self._lock:
            try:
                cursor = self._conn.execute(
                    "INSERT INTO rollouts(version, url, started_at, stage_started_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (version, url, now, now, now),
                )
            except sqlite3.IntegrityError:
                raise ValueError(f"a roll-out of {version} already exists") from None
            return int(cursor.lastrowid or 0)

    def rollouts(self, state: str | None = None) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM rollouts WHERE (? IS NULL OR state = ?) ORDER BY id", (state, state))

    def save_rollout(
        self, rollout: int, *, state: str, stage: int, stage_started_at: float, pause_reason: str, now: float
    ) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE rollouts SET state = ?, stage = ?, stage_started_at = ?, pause_reason = ?, updated_at = ?"
                " WHERE id = ?",
                (state, stage, stage_started_at, pause_reason, now, rollout),
            )

    def record_offer(self, rollout: int, device: str, command: str, now: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO rollout_offers(rollout, device, command, offered_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(rollout, device) DO NOTHING",
                (rollout, device, command, now),
            )

    def set_offer_status(self, rollout: int, statuses: dict[str, str]) -> None:
        with self._lock:
            self._conn.executemany(
                "UPDATE rollout_offers SET status = ? WHERE rollout = ? AND device = ?",
                [(status, rollout, device) for device, status in statuses.items()],
            )

    def offers(self, rollout: int) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT device, command, offered_at, status FROM rollout_offers WHERE rollout = ? ORDER BY device",
            (rollout,),
        )

    def update_results(self, version: str) -> dict[str, str]:
        """box -> last terminal stage it reported for an update *to* ``version`` (``committed``,
        ``rolled_back``, ``aborted``, ``refused``), in order of arrival: a retry after a roll-back that
        then commits counts as committed."""
        out: dict[str, str] = {}
        for row in self._rows(
            "SELECT device, payload FROM events WHERE stream = 'updates' AND type = 'update.stage' ORDER BY id"
        ):
            body = json.loads(row["payload"])
            if body.get("to") == version and body.get("stage") in TERMINAL_STAGES:
                out[row["device"]] = str(body["stage"])
        return out

    def device(self, device: str) -> dict[str, Any] | None:
        for row in self.fleet():
            if row["device"] == device:
                return row
        return None
