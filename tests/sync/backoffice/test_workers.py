"""Several back-office workers against one PostgreSQL and one real mosquitto (mutual TLS, shipped ACL):
the load is shared (MQTT 5 shared subscriptions), every event is applied once and in order per box,
and a worker killed in the middle of a batch loses nothing.

The kill is made to land mid-batch for certain: the test holds an exclusive lock on ``devices``, so
every worker's batch transaction stops at its first write, with its messages received and neither
committed nor acknowledged (``pg_stat_activity`` shows it waiting); then one worker gets SIGKILL and
the lock is released. The broker drops what it had dealt to the dead worker (its session was clean);
the boxes did not get those keys acknowledged, send them again, and the surviving workers apply
them once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sandbox.backoffice.postgres import PostgresCluster
from sandbox.backoffice.workers import WorkerProcess, postgres_table, write_signing_key
from sync.backoffice.store import BackOfficeStore
from tests.sync.harness import enqueue_events, make_device_db, running, write_sync_config

BOXES = ("ph1/c1", "ph2/c1", "ph3/c1")
EVENTS = 300


def _depth(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])
    finally:
        conn.close()


def _wait(predicate: object, timeout: float, interval: float = 0.05) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture
def workers(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, postgres: PostgresCluster
) -> Iterator[tuple[list[WorkerProcess], str]]:
    conninfo = postgres.create_database()
    BackOfficeStore(conninfo).close()  # migrated once before the workers race for it (they also may)
    key = write_signing_key(tmp_path / "commands.key")
    procs = [
        WorkerProcess.make(
            tmp_path / "workers",
            f"w{n}",
            pki=pki,
            broker_port=broker.port,
            signing_key=key,
            database=postgres_table(conninfo),
        )
        for n in (1, 2, 3)
    ]
    try:
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.wait_ready()
        yield procs, conninfo
    finally:
        for proc in procs:
            proc.stop()


def test_three_workers_share_the_load_and_a_killed_one_loses_nothing(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, workers: tuple[list[WorkerProcess], str]
) -> None:
    procs, conninfo = workers
    boxes = []
    for device in BOXES:
        db, key = make_device_db(tmp_path / device.replace("/", "_"))
        keys = enqueue_events(db, EVENTS)
        config = write_sync_config(
            tmp_path / f"{device.replace('/', '_')}.toml",
            db=db,
            key=key,
            pki=pki,
            broker_port=broker.port,
            device=device,
            publish_timeout=2.0,
            window=100,
        )
        boxes.append((device, db, keys, config))

    blocker = psycopg.connect(conninfo, autocommit=True)
    try:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE devices IN EXCLUSIVE MODE")
        with contextlib.ExitStack() as stack:
            for _, _, _, config in boxes:
                stack.enter_context(running(config))

            def waiting() -> set[str]:
                rows = blocker.execute(
                    "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                ).fetchall()
                return {str(r[0]) for r in rows}

            assert _wait(lambda: "w1" in waiting(), 15), f"w1 never got a batch: {waiting()}"
            # more than the boxes' three "online" states: events of the boxes are in w1's hands
            assert _wait(lambda: (procs[0].info() or {}).get("received", 0) > len(BOXES) + 10, 15)
            procs[0].kill()  # received, mid-transaction, not committed, not acknowledged
            blocker.execute("COMMIT")

            assert _wait(lambda: all(_depth(db) == 0 for _, db, _, _ in boxes), 60), [
                _depth(db) for _, db, _, _ in boxes
            ]
            infos = [p.info() for p in procs[1:]]
    finally:
        blocker.close()

    assert all(info is not None and info["messages"] > 0 for info in infos), infos
    store = BackOfficeStore(conninfo)
    try:
        for device, _, keys, _ in boxes:
            assert store.event_keys(device) == keys, f"{device}: every event once, in the box's order"
            row = store.device(device)
            assert row is not None and row["out_of_order"] == 0
            events = store.events(device)
            assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        assert store.still_pending(BOXES[0], keys) == set()
    finally:
        store.close()
