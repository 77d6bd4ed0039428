"""The outbox: written with the change, idempotent on its key, delivered in order per stream."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.store import StoreError, transaction
from appliance.store.outbox import OutboxConflict, enqueue, get, mark_delivered, mark_failed, pending

T0 = 1_750_000_000.0


def put(db: sqlite_utils.Database, stream: str, key: str, **payload: object) -> int:
    with transaction(db) as conn:
        return enqueue(conn, stream=stream, key=key, payload=payload, now=T0)


def test_the_same_key_twice_is_one_message(db: sqlite_utils.Database) -> None:
    first = put(db, "claims", "claim:1", number=1)
    again = put(db, "claims", "claim:1", number=1)
    assert first == again
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1


def test_the_same_key_with_other_content_is_a_bug_and_is_refused(db: sqlite_utils.Database) -> None:
    put(db, "claims", "claim:1", number=1)
    with pytest.raises(OutboxConflict, match="claim:1"):
        put(db, "claims", "claim:1", number=2)
    with pytest.raises(OutboxConflict):
        put(db, "batches", "claim:1", number=1)


def test_a_message_commits_or_rolls_back_with_its_change(db: sqlite_utils.Database) -> None:
    with pytest.raises(RuntimeError), transaction(db) as conn:
        enqueue(conn, stream="claims", key="claim:1", payload={"number": 1})
        raise RuntimeError("the claim was not written")
    assert pending(db, now=T0) == []
    with pytest.raises(StoreError, match="inside the caller's transaction"):
        enqueue(db.conn, stream="claims", key="claim:1", payload={})


def test_each_stream_hands_out_its_oldest_message_first(db: sqlite_utils.Database) -> None:
    a1, b1, a2 = put(db, "a", "a1"), put(db, "b", "b1"), put(db, "a", "a2")
    assert [m.id for m in pending(db, now=T0)] == [a1, b1]
    assert [m.key for m in pending(db, "a", now=T0)] == ["a1"]
    with transaction(db) as conn:
        mark_delivered(conn, a1, {"ack": "ok"}, now=T0)
    assert [m.id for m in pending(db, now=T0)] == [b1, a2]


def test_a_failed_head_blocks_its_stream_but_not_the_others(db: sqlite_utils.Database) -> None:
    a1, a2, b1 = put(db, "a", "a1"), put(db, "a", "a2"), put(db, "b", "b1")
    with transaction(db) as conn:
        assert mark_failed(conn, a1, "HTTP 503", retry_at=T0 + 60) == 1
    assert [m.id for m in pending(db, now=T0 + 10)] == [b1]  # a2 does not overtake a1
    retried = pending(db, now=T0 + 60)
    assert [m.id for m in retried] == [a1, b1]
    assert retried[0].attempts == 1 and retried[0].last_error == "HTTP 503"
    with transaction(db) as conn:
        assert mark_failed(conn, a1, "timeout", retry_at=T0 + 120) == 2
        mark_delivered(conn, b1, {}, now=T0 + 60)
    with transaction(db) as conn:
        mark_delivered(conn, a1, {"ack": 1}, now=T0 + 120)
    assert [m.id for m in pending(db, now=T0 + 120)] == [a2]
    assert get(db, a1).attempts == 3 and get(db, a1).delivered_at == T0 + 120


def test_delivering_twice_keeps_the_first_record(db: sqlite_utils.Database) -> None:
    a1 = put(db, "a", "a1")
    with transaction(db) as conn:
        mark_delivered(conn, a1, {"ack": 1}, now=T0)
        mark_delivered(conn, a1, {"ack": 2}, now=T0 + 5)
    assert get(db, a1).delivered_at == T0


def test_pending_respects_the_limit(db: sqlite_utils.Database) -> None:
    for n in range(5):
        put(db, f"s{n}", f"k{n}")
    assert len(pending(db, limit=3, now=T0)) == 3


def test_the_payload_comes_back_as_written(db: sqlite_utils.Database) -> None:
    put(db, "dmp", "dmp:1", document=1, visibility="all", lines=[1, 2])
    message = pending(db, now=T0)[0]
    assert message.payload == {"document": 1, "visibility": "all", "lines": [1, 2]}
    assert (message.stream, message.key) == ("dmp", "dmp:1")
