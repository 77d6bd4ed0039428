"""appliance.delivery's back-office side: windows, prefix marking, head of line, streams kept apart;
and the back-office events written by the records in the same transaction as their change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import sqlite_utils

from appliance.delivery import PublishOutcome, deliver_pending, deliver_published, retry_now
from appliance.store import outbox
from appliance.store.database import open_database, transaction
from appliance.store.outbox import OutboxMessage
from appliance.store.records import CounterRecords
from appliance.store.sealing import FieldCipher

NOW = 1_800_000_000.0


class FakePublisher:
    def __init__(self, acknowledge: list[int | None]) -> None:
        self.acknowledge = acknowledge
        self.sent: list[list[str]] = []

    def publish(self, stream: str, messages: Sequence[OutboxMessage]) -> PublishOutcome:
        self.sent.append([m.key for m in messages])
        limit = self.acknowledge.pop(0) if self.acknowledge else None
        if limit is None:
            return PublishOutcome(len(messages))
        return PublishOutcome(min(limit, len(messages)), "no PUBACK")


def _db(tmp_path: Path, events: int, acks: int = 0) -> sqlite_utils.Database:
    db = open_database(tmp_path / "c.db")
    with transaction(db) as conn:
        for n in range(events):
            outbox.enqueue(conn, stream="events", key=f"e{n}", payload={"n": n}, now=NOW)
        for n in range(acks):
            outbox.enqueue(conn, stream="acks", key=f"a{n}", payload={"n": n}, now=NOW)
    return db


def _delivered(db: sqlite_utils.Database) -> list[str]:
    return [r[0] for r in db.conn.execute("SELECT key FROM outbox WHERE delivered_at IS NOT NULL ORDER BY id")]


def test_windows_are_marked_delivered_as_an_acknowledged_prefix(tmp_path: Path) -> None:
    db = _db(tmp_path, 25, acks=2)
    publisher = FakePublisher([None, None, 3])
    report = deliver_published(db, publisher, clock=lambda: NOW, window=10)
    assert publisher.sent[0] == [f"e{n}" for n in range(10)]
    assert publisher.sent[1] == ["a0", "a1"]
    assert publisher.sent[2] == [f"e{n}" for n in range(10, 20)]
    assert report.delivered == 10 + 2 + 3 and report.deferred == 1
    delivered = set(_delivered(db))
    assert delivered == {f"e{n}" for n in range(13)} | {"a0", "a1"}
    head = outbox.get(db, 14)
    assert head.key == "e13" and head.last_error == "no PUBACK" and head.next_attempt_at > NOW
    # the stream waits for its head's back-off...
    assert deliver_published(db, FakePublisher([]), clock=lambda: NOW, window=10).delivered == 0
    # ...unless the link came back
    assert retry_now(db, ["events"], now=NOW) == 1
    again = FakePublisher([])
    assert deliver_published(db, again, clock=lambda: NOW, window=10).delivered == 12
    assert again.sent[0] == ["e13"], "after a failure the head goes alone, so a receiver that is down gets one copy"
    assert again.sent[1] == [f"e{n}" for n in range(14, 24)], "then windows again"
    db.close()


def test_a_gap_the_receiver_reports_is_filled_at_once_without_back_off(tmp_path: Path) -> None:
    """The back office holds back what follows a lost message and says so: the box sends the rest
    again on its next pass instead of waiting out a back-off (the receiver is known to be up)."""
    db = _db(tmp_path, 6)

    class GapPublisher:
        def __init__(self) -> None:
            self.sent: list[list[str]] = []

        def publish(self, stream: str, messages: Sequence[OutboxMessage]) -> PublishOutcome:
            self.sent.append([m.key for m in messages])
            if len(self.sent) == 1:
                return PublishOutcome(2, "the back office is missing an earlier message", resend=True)
            return PublishOutcome(len(messages))

    publisher = GapPublisher()
    first = deliver_published(db, publisher, clock=lambda: NOW, window=10)
    assert first.delivered == 2 and first.deferred == 1
    head = outbox.get(db, 3)
    assert head.key == "e2" and head.next_attempt_at <= NOW and head.attempts == 0
    assert deliver_published(db, publisher, clock=lambda: NOW, window=10).delivered == 4
    assert publisher.sent[1] == ["e2", "e3", "e4", "e5"]
    db.close()


def test_teleservice_delivery_leaves_back_office_streams_alone(tmp_path: Path) -> None:
    db = _db(tmp_path, 3)

    class NoTeleservices:
        def deliver(self, *args: object, **kwargs: object) -> dict[str, object]:
            raise AssertionError("the events stream must not reach the teleservices")

    key = tmp_path / "k"
    FieldCipher.create_key(key)
    records = CounterRecords(db, FieldCipher.load(key), lambda: NOW)
    report = deliver_pending(records, NoTeleservices(), clock=lambda: NOW)  # type: ignore[arg-type]
    assert report.delivered == 0 and _delivered(db) == []
    db.close()


def _records(tmp_path: Path, events: bool) -> CounterRecords:
    db = open_database(tmp_path / f"r{events}.db")
    key = tmp_path / f"k{events}"
    FieldCipher.create_key(key)
    return CounterRecords(db, FieldCipher.load(key), lambda: NOW, backoffice_events=events)


def _events(records: CounterRecords) -> list[tuple[str, dict[str, object]]]:
    return [
        (r[0], json.loads(r[1]))
        for r in records.db.conn.execute("SELECT key, payload FROM outbox WHERE stream = 'events' ORDER BY id")
    ]


def test_records_queue_back_office_events_with_the_change_only_when_enrolled(tmp_path: Path) -> None:
    for enrolled in (False, True):
        records = _records(tmp_path, enrolled)
        with transaction(records.db) as conn:
            conn.execute("INSERT INTO batches(number, status, opened_at) VALUES (7, 'open', ?)", (NOW,))
        assert records.close_batch(None) == 7
        records.apply_acknowledgement(7, False, "lot illisible", {})
        records.apply_acknowledgement(7, False, "lot illisible", {})  # a replayed ARL: same event, once
        found = _events(records)
        anchors = [payload for key, payload in found if payload["type"] == "audit.anchor"]
        found = [(key, payload) for key, payload in found if payload["type"] != "audit.anchor"]
        if not enrolled:
            assert found == [] and anchors == []
        else:
            assert len(anchors) == 1, "the batch close anchors the journal's head outside the box"
            assert found == [
                ("event:batch.closed:7", {"type": "batch.closed", "batch": 7, "at": NOW, "claims": 0}),
                (
                    "event:batch.acknowledged:7",
                    {
                        "type": "batch.acknowledged",
                        "batch": 7,
                        "positive": False,
                        "reason": "lot illisible",
                        "rejected": [],
                    },
                ),
            ]
        records.db.close()
