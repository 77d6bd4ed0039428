"""Teleservices over HTTPS with mutual TLS (a real handshake on 127.0.0.1), lost responses, and the
sync process killed (SIGKILL) at random points of its work: nothing lost, nothing applied twice."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from appliance.store import outbox
from appliance.store.database import open_database, transaction
from sandbox import population as pop
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sandbox.server import SandboxServer
from sync.backoffice.service import BackOffice
from sync.service import SyncService, load_config
from sync.teleservices_http import ssl_context
from tests.sync.harness import enqueue_events, make_device_db, write_sync_config

REPO = Path(__file__).resolve().parents[2]
PRESCRIPTIONS = list(pop.PRESCRIPTIONS)


@pytest.fixture
def https_sandbox(pki: Pki) -> Iterator[tuple[SandboxServer, str]]:
    """The sandbox teleservices behind TLS that requires a client certificate from the test CA."""
    sandbox = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY, max_hang=3.0)
    sandbox.start()
    server = pki.server("teleservices")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca.cert))
    context.load_cert_chain(str(server.cert), str(server.key))
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = sandbox._httpd
    assert httpd is not None
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    yield sandbox, sandbox.url.replace("http://", "https://")
    sandbox.stop()


def _control(pki: Pki, url: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    client = pki.client("ph1/c1")
    context = ssl_context(str(pki.ca.cert), (str(client.cert), str(client.key)))
    with httpx.Client(verify=context, timeout=5) as http:
        response = http.post(url + path, json=body) if body is not None else http.get(url + path)
    assert response.status_code == 200
    result: dict[str, object] = response.json()
    return result


def _tele(pki: Pki, url: str, *, cert: bool = True) -> dict[str, str]:
    client = pki.client("ph1/c1")
    config = {"url": url, "ca": str(pki.ca.cert), "timeout": "2"}
    if cert:
        config |= {"cert": str(client.cert), "key": str(client.key)}
    return config


def _enqueue_executions(db_path: Path, count: int) -> list[str]:
    db = open_database(db_path)
    keys = []
    try:
        with transaction(db) as conn:
            for pid in PRESCRIPTIONS[:count]:
                key = f"exec1:{pid}:0"
                payload = {"step": 1, "prescription_id": pid, "renewal": 0, "lines": []}
                outbox.enqueue(conn, stream="execution", key=key, payload=payload)
                keys.append(key)
    finally:
        db.close()
    return keys


def _undelivered(db_path: Path, stream: str | None = None) -> int:
    conn = sqlite3.connect(db_path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND (? IS NULL OR stream = ?)", (stream, stream)
        ).fetchone()
        return int(row[0])
    finally:
        conn.close()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_lost_https_response_is_retried_with_its_key_and_applied_once(
    tmp_path: Path, pki: Pki, https_sandbox: tuple[SandboxServer, str]
) -> None:
    sandbox, url = https_sandbox
    db, key = make_device_db(tmp_path / "box")
    keys = _enqueue_executions(db, 3)
    _control(pki, url, "/_sandbox/faults", {"service": "execution", "drop_response": True, "times": 1})
    config = write_sync_config(
        tmp_path / "s.toml", db=db, key=key, pki=pki, broker_port=None, teleservices=_tele(pki, url)
    )
    clock = Clock()
    service = SyncService(load_config(config), clock=clock)
    try:
        first = service.run_pass()
        assert first.deferred == 1 and first.delivered == 0  # committed, answer lost: the head waits
        assert _undelivered(db) == 3
        clock.now += 3600  # past the back-off
        second = service.run_pass()
        assert second.delivered == 3
    finally:
        service.close()
    state = sandbox.state.snapshot()
    assert [e["key"] for e in state["executions"]] == keys, "one effect per key, in order"
    assert state["requests"]["execution"] == 4
    check = open_database(db)
    try:
        head = outbox.get(check, 1)
        assert head.attempts == 2 and head.delivered_at is not None
    finally:
        check.close()


def test_https_without_a_client_certificate_delivers_nothing(
    tmp_path: Path, pki: Pki, https_sandbox: tuple[SandboxServer, str]
) -> None:
    sandbox, url = https_sandbox
    db, key = make_device_db(tmp_path / "box")
    _enqueue_executions(db, 1)
    config = write_sync_config(
        tmp_path / "s.toml", db=db, key=key, pki=pki, broker_port=None, teleservices=_tele(pki, url, cert=False)
    )
    service = SyncService(load_config(config))
    try:
        report = service.run_pass()
    finally:
        service.close()
    assert report.deferred == 1 and _undelivered(db) == 1
    assert sandbox.state.snapshot()["executions"] == []


def test_https_refuses_a_server_outside_the_trusted_ca(
    tmp_path: Path, pki: Pki, https_sandbox: tuple[SandboxServer, str]
) -> None:
    _, url = https_sandbox
    other = Pki(tmp_path / "other", "other CA")
    db, key = make_device_db(tmp_path / "box")
    _enqueue_executions(db, 1)
    tele = _tele(pki, url) | {"ca": str(other.ca.cert)}
    config = write_sync_config(tmp_path / "s.toml", db=db, key=key, pki=pki, broker_port=None, teleservices=tele)
    service = SyncService(load_config(config))
    try:
        assert service.run_pass().deferred == 1
    finally:
        service.close()
    assert _undelivered(db) == 1


def test_sync_process_killed_at_random_points_loses_and_doubles_nothing(
    tmp_path: Path,
    pki: Pki,
    broker: MosquittoBroker,
    backoffice: BackOffice,
    https_sandbox: tuple[SandboxServer, str],
) -> None:
    sandbox, url = https_sandbox
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "sync.toml",
        db=db,
        key=key,
        pki=pki,
        broker_port=broker.port,
        teleservices=_tele(pki, url),
        window=100,
    )
    executions = _enqueue_executions(db, len(PRESCRIPTIONS))
    _control(pki, url, "/_sandbox/faults", {"service": "execution", "latency_ms": 150})
    rng = random.Random(6)
    keys: list[str] = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "sync", "--config", str(config), "--log-level", "WARNING"]
    left_behind: list[tuple[int, int]] = []
    for round_ in range(5):
        keys += enqueue_events(db, 600, start=round_ * 600, per_transaction=100)
        pending = _undelivered(db)
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:  # the kill is aimed at a point of the work (a share of it delivered), not of the clock
            target = int(pending * rng.uniform(0.2, 0.8))
            backoffice.wait_for(
                lambda target=target, process=process: _undelivered(db) <= target or process.poll() is not None,
                60,
                interval=0.005,
            )
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        left_behind.append((pending, _undelivered(db)))
    assert all(left < pending for pending, left in left_behind), f"every round delivered some: {left_behind}"
    assert sum(left > 0 for _, left in left_behind) >= 3, f"the kills landed with work in hand: {left_behind}"
    assert backoffice.wait_for(lambda: (backoffice.store.device("ph1/c1") or {}).get("state") == "offline", 10), (
        "the broker publishes the last will of a killed box"
    )
    _control(pki, url, "/_sandbox/faults", {"service": "execution", "latency_ms": 0})
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert backoffice.wait_for(lambda: _undelivered(db, "events") == 0, 40), _undelivered(db)
        assert backoffice.wait_for(lambda: _undelivered(db, "execution") == 0, 30), "executions still pending"
        assert backoffice.wait_for(lambda: len(backoffice.store.event_keys("ph1/c1")) >= len(keys), 20)
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err.decode()[-2000:]
    assert backoffice.store.event_keys("ph1/c1") == keys
    device = backoffice.store.device("ph1/c1")
    assert device is not None and device["out_of_order"] == 0 and device["state"] == "offline"
    state = sandbox.state.snapshot()
    assert sorted(e["key"] for e in state["executions"]) == sorted(executions), "each execution applied once"
