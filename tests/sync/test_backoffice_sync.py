"""The sync loop against a real mosquitto (mutual TLS, shipped ACL) and the reference back office."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.service import BackOffice
from tests.sync.harness import TcpProxy, enqueue_events, make_device_db, running, write_sync_config

DEVICE = "ph1/c1"


def test_events_reach_the_back_office_once_in_order_with_state_and_telemetry(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, backoffice: BackOffice, command_key: Path
) -> None:
    db, key = make_device_db(tmp_path / "box")
    keys = enqueue_events(db, 50)
    config = write_sync_config(tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=broker.port)
    with running(config):
        assert backoffice.wait_for(lambda: len(backoffice.store.event_keys(DEVICE)) == 50, 15)
        assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("last_sync") is not None, 10)
        device = backoffice.store.device(DEVICE)
        assert device is not None and device["online"] and device["version"]
    assert backoffice.store.event_keys(DEVICE) == keys
    assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("state") == "offline", 10)
    device = backoffice.store.device(DEVICE)
    assert device is not None
    assert device["duplicates"] == 0 and device["out_of_order"] == 0
    events = backoffice.store.events(DEVICE)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert events[0]["payload"] == {
        "key": keys[0],
        "seq": events[0]["seq"],
        "stream": "events",
        "type": "claim.created",
        "claim": 0,
        "total_cents": 100,
    }


def _depth(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0])
    finally:
        conn.close()


def _assert_exactly_once_in_order(backoffice: BackOffice, keys: list[str]) -> None:
    assert backoffice.store.event_keys(DEVICE) == keys
    device = backoffice.store.device(DEVICE)
    assert device is not None and device["out_of_order"] == 0


def test_ten_thousand_events_queued_offline_drain_when_the_network_returns(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, backoffice: BackOffice
) -> None:
    proxy = TcpProxy(broker.port)
    proxy.down()
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=proxy.port, window=500)
    try:
        with running(config):
            keys = enqueue_events(db, 10_000)
            time.sleep(1.0)
            assert backoffice.store.event_keys(DEVICE) == []
            assert _depth(db) == 10_000
            started = time.monotonic()
            proxy.up()
            assert backoffice.wait_for(lambda: _depth(db) == 0, 60), f"{_depth(db)} left"
            assert backoffice.wait_for(lambda: len(backoffice.store.event_keys(DEVICE)) >= 10_000, 30)
            drained = time.monotonic() - started
    finally:
        proxy.close()
    _assert_exactly_once_in_order(backoffice, keys)
    assert drained < 60


def test_lost_pubacks_mean_resending_and_the_back_office_applies_once(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, backoffice: BackOffice
) -> None:
    """'Committed but the response was lost', MQTT flavour: the broker took the events (the back office
    has them) but the PUBACKs never reach the box; the box must not mark them delivered, sends them
    again later, and the back office keeps one of each."""
    proxy = TcpProxy(broker.port)
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=proxy.port, publish_timeout=1.0
    )
    try:
        with running(config):
            assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("online") is True, 10)
            proxy.swallow_downstream = True
            keys = enqueue_events(db, 30)
            assert backoffice.wait_for(lambda: len(backoffice.store.event_keys(DEVICE)) == 30, 10)
            time.sleep(1.5)  # the box's wait for PUBACKs runs out
            assert _depth(db) == 30, "nothing may be marked delivered without its acknowledgement"
            proxy.swallow_downstream = False
            proxy.cut()  # the box notices, reconnects and sends again
            assert backoffice.wait_for(lambda: _depth(db) == 0, 20)
            assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {})["duplicates"] > 0, 10)
    finally:
        proxy.close()
    _assert_exactly_once_in_order(backoffice, keys)


@pytest.mark.parametrize(
    "crash",
    [
        pytest.param(False, id="stopped"),
        pytest.param(True, id="killed"),
    ],
)
def test_broker_killed_and_restarted_in_the_middle_of_traffic(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, backoffice: BackOffice, crash: bool
) -> None:
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=broker.port)
    keys: list[str] = []

    def produce() -> None:
        for n in range(40):
            keys.extend(enqueue_events(db, 50, start=n * 50, per_transaction=50))
            time.sleep(0.05)

    with running(config):
        producer = threading.Thread(target=produce)
        producer.start()
        time.sleep(0.6)
        broker.restart(crash=crash, down_for=0.5)
        time.sleep(0.8)
        broker.restart(crash=crash, down_for=0.2)
        producer.join(30)
        assert backoffice.wait_for(lambda: _depth(db) == 0, 40), f"{_depth(db)} left"
        assert backoffice.wait_for(lambda: len(backoffice.store.event_keys(DEVICE)) >= 2000, 20), (
            f"{len(backoffice.store.event_keys(DEVICE))} of 2000 reached the back office"
        )
    assert len(keys) == 2000
    _assert_exactly_once_in_order(backoffice, keys)
