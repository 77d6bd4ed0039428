"""The back office's store: the fleet, the boxes' events (applied once, in order), commands, roll-outs.

On SQLite (one worker, the embedded default) or PostgreSQL (several workers sharing the load), with
the same schema and migrations (:mod:`sync.backoffice.migrations`) and the same SQL
(:mod:`sync.backoffice.engines`).

**Applied once.** A keyed message (``events``, ``events/update``, ``cmd/ack``: each carries the
``key`` of the box's outbox message) is applied at most once: the ``events`` row and every effect of
the message (the stream's last ``seq``, a command's answer, the counters) are written in one
transaction, and ``events`` has ``UNIQUE (device, key)`` with ``INSERT … ON CONFLICT DO NOTHING``,
so a repeat (the box sent it again, the broker redelivered it, another worker got the other copy)
is counted in ``duplicates`` and changes nothing. The worker acknowledges a message (PUBACK to the
broker, ``events/ack`` to the box) only after that transaction committed.

**In order, per box.** Each message carries ``seq`` (its outbox id) and, when the box knows it,
``prev`` (the ``seq`` before it in the same stream). A message whose ``prev`` is newer than the last
one applied (or whose stream has nothing applied yet) is not applied yet: it waits in ``pending``, and
whoever applies its predecessor applies it right after, in the same transaction. A message without
``prev`` (the first a box sends after it starts, or a run it sends again because the back office did
not know its predecessor: a restored database) is applied as it comes. So the events of a stream are
applied in the box's order even when two workers each get half of a box's messages (MQTT shared
subscriptions deal them round robin). What one batch touches of a box is done under that box's lock
(:meth:`~sync.backoffice.engines.Database.lock_devices`: advisory locks on PostgreSQL, the file lock
on SQLite), taken in sorted order of boxes: two workers never apply the same box at the same time and
never wait on each other in a cycle. A message still pending when its batch commits is reported in
:attr:`Applied.held`; the worker tells the box (at once with one worker, after a short grace with
several, since the predecessor may be in another worker's open transaction), and the box sends the
run again from the missing one. ``out_of_order`` counts keys applied with a ``seq`` lower than one
already applied (only a box that forgot its ``prev``, after a restart, can cause it; the tests expect
zero).

**States and telemetry** are last-writer-wins by the time the worker received them
(``state_at``/``telemetry_at``): an older ``online`` handled late by another worker cannot overwrite a
newer ``offline``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.updates.events import TERMINAL as TERMINAL_STAGES
from sync.backoffice.engines import Database, open_database
from sync.backoffice.migrations import migrate

KEYED_KINDS = ("events", "events/update", "cmd/ack")
"""Topics (under a box's prefix) whose messages are outbox messages with a key."""


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
    """``(device, key)`` now applied (new, repeated, or a pending one whose predecessor came in this
    batch, whichever worker received it): the box may mark them delivered."""
    held: list[tuple[str, str, bytes | None]] = field(default_factory=list)
    """``(device, key, correlation)`` of this batch's messages left pending: the message before them
    in their stream has not been applied."""
    commands: list[tuple[str, bytes]] = field(default_factory=list)
    """``(device, signed command)`` to send again: the box just came online and has not answered them
    (a broker that crashed may have lost what it queued for the box; the box applies a command once)."""


@dataclass(slots=True)
class _Keyed:
    device: str
    kind: str
    stream: str
    key: str
    seq: int
    prev: int | None
    type: str | None
    payload: str
    received_at: float


class BackOfficeStore:
    """Thread-safe (one lock, one connection) access to the back office's database.

    ``target``: a :class:`~pathlib.Path` for a SQLite file, a string for a PostgreSQL connection
    string or URL. Opening migrates the schema forward (:func:`sync.backoffice.migrations.migrate`).
    """

    def __init__(self, target: Path | str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._db: Database = open_database(target)
        try:
            migrate(self._db)
        except BaseException:
            self._db.close()
            raise

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- applying messages (one transaction for a batch, committed before the PUBACKs go out)

    def apply(self, messages: Iterable[Incoming]) -> Applied:
        """Apply a batch of messages in one transaction (the caller acknowledges them afterwards).

        Returns ``(device, key)`` of the outbox messages now applied (new or repeated) and of this
        batch's messages left pending, for the end-to-end acknowledgement to the boxes.

        The statements do not grow with the boxes in the batch: the boxes' locks, their last ``seq``,
        their pending messages, the ``last_seen``, the events and the streams each take one statement
        (multi-row ``VALUES``, ``IN`` lists); which keyed message applies is decided in memory, under the
        locks, from what those reads returned.
        """
        by_device: dict[str, list[tuple[str, Incoming]]] = {}
        for message in messages:
            where = split_topic(message.topic)
            if where is not None:
                by_device.setdefault(where[0], []).append((where[1], message))
        applied = Applied()
        if not by_device:
            return applied
        devices = sorted(by_device)  # one order for every worker: no lock cycle
        with self._lock, self._db.transaction():
            self._db.lock_devices(devices)
            self._many(
                "INSERT INTO devices(device, last_seen) VALUES {} ON CONFLICT(device) DO UPDATE"
                " SET last_seen = excluded.last_seen"
                " WHERE devices.last_seen IS NULL OR devices.last_seen < excluded.last_seen",
                [(d, max(m.received_at for _, m in by_device[d])) for d in devices],
            )
            keyed: list[tuple[_Keyed, bytes | None]] = []
            for device in devices:
                for kind, message in by_device[device]:
                    found = self._plain(device, kind, message, applied)
                    if found is not None:
                        keyed.append((found, message.correlation))
            if keyed:
                self._apply_keyed(devices, keyed, applied)
        return applied

    def _plain(self, device: str, kind: str, message: Incoming, applied: Applied) -> _Keyed | None:
        """Apply a state, telemetry or direct answer; return a keyed message for :meth:`_apply_keyed`."""
        at = message.received_at
        if kind == "state":
            self._state(device, message.payload.decode("utf-8", "replace")[:32], at, applied)
            return None
        try:
            body = json.loads(message.payload)
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        if kind == "telemetry":
            fresh = self._db.execute(
                "UPDATE devices SET telemetry = ?, telemetry_at = ?"
                " WHERE device = ? AND (telemetry_at IS NULL OR telemetry_at <= ?)",
                (json.dumps(body), at, device, at),
            ).rowcount
            version = (body.get("versions") or {}).get("comptoir") if isinstance(body.get("versions"), dict) else None
            if fresh and isinstance(version, str) and version:
                # the version history of the fleet page's chart: a row only when the box's version changed
                self._db.execute(
                    "INSERT INTO version_changes(device, version, at) SELECT ?, ?, ? WHERE COALESCE(("
                    "SELECT version FROM version_changes WHERE device = ? ORDER BY at DESC LIMIT 1), '') <> ?"
                    " ON CONFLICT(device, at) DO NOTHING",
                    (device, version[:64], at, device, version[:64]),
                )
            return None
        if kind == "cmd/ack" and "key" not in body:
            self._answer(body, at)  # an answer sent directly (refusal, repeated answer)
            return None
        if kind not in KEYED_KINDS or not isinstance(body.get("key"), str):
            return None
        prev = body.get("prev")
        return _Keyed(
            device=device,
            kind=kind,
            stream=str(body.get("stream") or kind),
            key=body["key"],
            seq=int(body.get("seq") or 0),
            prev=prev if isinstance(prev, int) and not isinstance(prev, bool) else None,
            type=body.get("type") if isinstance(body.get("type"), str) else None,
            payload=json.dumps(body),
            received_at=at,
        )

    def _apply_keyed(self, devices: list[str], keyed: list[tuple[_Keyed, bytes | None]], applied: Applied) -> None:
        db = self._db
        wanted = sorted({m.device for m, _ in keyed})
        marks = ", ".join("?" * len(wanted))
        last: dict[tuple[str, str], int] = {
            (str(d), str(st)): int(seq)
            for d, st, seq in db.execute(
                f"SELECT device, stream, last_seq FROM streams WHERE device IN ({marks})",  # noqa: S608 - placeholders only
                wanted,
            ).fetchall()
        }
        stored_pending: list[_Keyed] = [
            _Keyed(str(d), str(k), str(st), str(key), int(seq), int(prev), t, str(p), float(at))
            for d, st, key, seq, prev, k, t, p, at in db.execute(
                "SELECT device, stream, key, seq, prev, kind, type, payload, received_at FROM pending"  # noqa: S608
                f" WHERE device IN ({marks}) ORDER BY device, stream, seq",
                wanted,
            ).fetchall()
        ]
        in_pending = {(m.device, m.key) for m in stored_pending}
        # The decision, in memory: the batch's messages in the order they came, then the pending ones,
        # again and again while one more applies (each applied one may be the predecessor of another).
        candidates = [m for m, _ in keyed] + stored_pending
        taken: list[_Keyed] = []
        taken_keys: set[tuple[str, str]] = set()
        behind: set[tuple[str, str]] = set()  # applied with a seq not above the stream's last: out of order
        repeats: dict[str, int] = {}
        decided = [False] * len(candidates)
        progress = True
        while progress:
            progress = False
            for n, m in enumerate(candidates):
                if decided[n]:
                    continue
                where = (m.device, m.stream)
                before = last.get(where)
                if m.prev is not None and (before is None or m.prev > before):
                    continue  # its predecessor is not applied: not yet
                decided[n] = progress = True
                if (m.device, m.key) in taken_keys:
                    if n < len(keyed):  # the same message twice in this batch: a repeat, applied once
                        repeats[m.device] = repeats.get(m.device, 0) + 1
                    continue
                taken.append(m)
                taken_keys.add((m.device, m.key))
                if before is not None and m.seq <= before:
                    behind.add((m.device, m.key))
                if before is None or m.seq > before:
                    last[where] = m.seq
        inserted: set[tuple[str, str]] = set()
        for rows in self._chunks(taken):
            inserted.update(
                (str(d), str(k))
                for d, k in self._returning(
                    "INSERT INTO events(device, stream, key, seq, type, payload, received_at) VALUES {}"
                    " ON CONFLICT(device, key) DO NOTHING RETURNING device, key",
                    [(m.device, m.stream, m.key, m.seq, m.type, m.payload, m.received_at) for m in rows],
                )
            )
        counters: dict[str, list[int]] = {device: [count, 0] for device, count in repeats.items()}
        for m in taken:
            new = (m.device, m.key) in inserted
            if not new or (m.device, m.key) in behind:
                counts = counters.setdefault(m.device, [0, 0])
                counts[0 if not new else 1] += 1
            if new and m.kind == "cmd/ack":
                self._answer(json.loads(m.payload), m.received_at)
        for device, (duplicates, out_of_order) in sorted(counters.items()):
            db.execute(
                "UPDATE devices SET duplicates = duplicates + ?, out_of_order = out_of_order + ? WHERE device = ?",
                (duplicates, out_of_order, device),
            )
        done = [(m.device, m.key) for m in taken if (m.device, m.key) in in_pending]
        for device in sorted({d for d, _ in done}):
            keys = [k for d, k in done if d == device]
            db.execute(
                f"DELETE FROM pending WHERE device = ? AND key IN ({', '.join('?' * len(keys))})",  # noqa: S608
                [device, *keys],
            )
        waiting = [
            (m, correlation) for (m, correlation), ok in zip(keyed, decided[: len(keyed)], strict=True) if not ok
        ]
        new_pending = {(m.device, m.key): m for m, _ in waiting if (m.device, m.key) not in in_pending}
        self._many(
            "INSERT INTO pending(device, stream, key, seq, prev, kind, type, payload, received_at) VALUES {}"
            " ON CONFLICT(device, key) DO NOTHING",
            [
                (m.device, m.stream, m.key, m.seq, m.prev, m.kind, m.type, m.payload, m.received_at)
                for m in new_pending.values()
            ],
        )
        moved = sorted({(m.device, m.stream) for m in taken if (m.device, m.key) in inserted})
        self._many(
            "INSERT INTO streams(device, stream, last_seq) VALUES {} ON CONFLICT(device, stream)"
            " DO UPDATE SET last_seq = excluded.last_seq WHERE streams.last_seq < excluded.last_seq",
            [(d, st, last[(d, st)]) for d, st in moved],
        )
        applied.stored.extend((m.device, m.key) for m in taken)
        applied.held.extend((m.device, m.key, correlation) for m, correlation in waiting)

    @staticmethod
    def _chunks(rows: list[_Keyed], size: int = 500) -> Iterator[list[_Keyed]]:
        for start in range(0, len(rows), size):
            yield rows[start : start + size]

    def _values(self, sql: str, rows: list[tuple[Any, ...]]) -> tuple[str, list[Any]]:
        """``sql`` with its ``VALUES {}`` filled for ``rows`` (one ``(?, …)`` group each)."""
        group = "(" + ", ".join("?" * len(rows[0])) + ")"
        return sql.format(", ".join([group] * len(rows))), [v for row in rows for v in row]

    def _many(self, sql: str, rows: list[tuple[Any, ...]], size: int = 500) -> None:
        """One multi-row statement per ``size`` rows (nothing for none)."""
        for start in range(0, len(rows), size):
            text, params = self._values(sql, rows[start : start + size])
            self._db.execute(text, params)

    def _returning(self, sql: str, rows: list[tuple[Any, ...]]) -> list[Any]:
        if not rows:
            return []
        text, params = self._values(sql, rows)
        return self._db.execute(text, params).fetchall()

    def _state(self, device: str, state: str, at: float, applied: Applied) -> None:
        fresh = self._db.execute(
            "UPDATE devices SET state = ?, state_at = ? WHERE device = ? AND (state_at IS NULL OR state_at <= ?)",
            (state, at, device, at),
        ).rowcount
        if fresh and state == "online":
            unanswered = self._db.execute(
                "SELECT signed FROM commands WHERE device = ? AND status = 'sent' AND signed IS NOT NULL"
                " AND expires_at > ? ORDER BY sent_at",
                (device, time.time()),
            ).fetchall()
            applied.commands.extend((device, str(row[0]).encode("utf-8")) for row in unanswered)

    def _answer(self, body: dict[str, Any], at: float) -> None:
        command = body.get("command")
        if not isinstance(command, str):
            return
        self._db.execute(
            "UPDATE commands SET status = ?, reason = ?, answer = ?, answered_at = ? WHERE id = ?",
            (str(body.get("status")), body.get("reason"), json.dumps(body), at, command),
        )

    def still_pending(self, device: str, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` of ``device`` are still waiting for their predecessor."""
        wanted = set(keys)
        if not wanted:
            return set()
        rows = self._rows("SELECT key FROM pending WHERE device = ?", (device,))
        return {r["key"] for r in rows} & wanted

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
            self._db.execute(
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

    # --- leases (one worker at a time runs a periodic job)

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``ttl`` seconds; False while another holder has it."""
        with self._lock:
            return bool(
                self._db.execute(
                    "INSERT INTO leases(name, holder, expires_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE"
                    " SET holder = excluded.holder, expires_at = excluded.expires_at"
                    " WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
                    (name, holder, now + ttl, now),
                ).rowcount
            )

    # --- small statements of the other modules (accounts, journal)

    def write(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One statement in its own transaction; returns the rows it changed."""
        with self._lock:
            return int(self._db.execute(sql, params).rowcount)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """The rows of a query, as dicts."""
        return self._rows(sql, params)

    def version_changes(self) -> list[dict[str, Any]]:
        """Every change of a box's version (device, version, at), oldest first: the chart's data."""
        return self._rows("SELECT device, version, at FROM version_changes ORDER BY at, device")

    # --- reading

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._db.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def events(self, device: str | None = None, stream: str = "events") -> list[dict[str, Any]]:
        """Applied events, in the order they were applied (per box: the box's order)."""
        columns = "SELECT device, stream, key, seq, type, payload, received_at FROM events WHERE stream = ?"
        if device is None:
            rows = self._rows(columns + " ORDER BY id", (stream,))
        else:
            rows = self._rows(columns + " AND device = ? ORDER BY id", (stream, device))
        for row in rows:
            row["payload"] = json.loads(row["payload"])
        return rows

    def event_keys(self, device: str, stream: str = "events") -> list[str]:
        return [
            r["key"]
            for r in self._rows("SELECT key FROM events WHERE device = ? AND stream = ? ORDER BY id", (device, stream))
        ]

    def commands(self, device: str | None = None) -> list[dict[str, Any]]:
        columns = "SELECT id, device, type, status, reason, answer, sent_at, answered_at FROM commands"
        if device is None:
            return self._rows(columns + " ORDER BY sent_at")
        return self._rows(columns + " WHERE device = ? ORDER BY sent_at", (device,))

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
                    "events": int(events[0]["n"]),
                    "duplicates": int(row["duplicates"]),
                    "out_of_order": int(row["out_of_order"]),
                    "rejections": self.rejections(row["device"]),
                }
            )
        return devices

    def device_ids(self) -> list[str]:
        """Every box the back office has heard from: the fleet a roll-out is spread over."""
        return [r["device"] for r in self._rows("SELECT device FROM devices ORDER BY device")]

    # --- staged roll-outs (the policy is :mod:`appliance.updates.rollout`; the loop is sync.backoffice.rollouts)

    def create_rollout(self, version: str, url: str, now: float) -> int:
        """A new roll-out, running from stage 0. Raises ``ValueError`` if this version already has one
        (the boxes' buckets depend on the version, so a second roll-out would offer the same boxes)."""
        with self._lock:
            row = self._db.execute(
                "INSERT INTO rollouts(version, url, started_at, stage_started_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(version) DO NOTHING RETURNING id",
                (version, url, now, now, now),
            ).fetchone()
        if row is None:
            raise ValueError(f"a roll-out of {version} already exists")
        return int(row[0])

    def rollouts(self, state: str | None = None) -> list[dict[str, Any]]:
        if state is None:
            return self._rows("SELECT * FROM rollouts ORDER BY id")
        return self._rows("SELECT * FROM rollouts WHERE state = ? ORDER BY id", (state,))

    def save_rollout(
        self, rollout: int, *, state: str, stage: int, stage_started_at: float, pause_reason: str, now: float
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE rollouts SET state = ?, stage = ?, stage_started_at = ?, pause_reason = ?, updated_at = ?"
                " WHERE id = ?",
                (state, stage, stage_started_at, pause_reason, now, rollout),
            )

    def record_offer(self, rollout: int, device: str, command: str, now: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO rollout_offers(rollout, device, command, offered_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(rollout, device) DO NOTHING",
                (rollout, device, command, now),
            )

    def set_offer_status(self, rollout: int, statuses: dict[str, str]) -> None:
        with self._lock, self._db.transaction():
            for device, status in statuses.items():
                self._db.execute(
                    "UPDATE rollout_offers SET status = ? WHERE rollout = ? AND device = ?", (status, rollout, device)
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
