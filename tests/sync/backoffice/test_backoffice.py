"""The back office: dedupe by key, order check (on SQLite and PostgreSQL), fleet page and JSON API, commands."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.service import BackOffice, BackOfficeSettings
from sync.backoffice.store import BackOfficeStore, Incoming
from sync.service import SyncService, load_config
from tests.sync.backoffice.web_login import signed_in
from tests.sync.harness import make_device_db, write_sync_config


def _event(key: str, seq: int, **body: object) -> Incoming:
    payload = {"key": key, "seq": seq, "stream": "events", **body}
    return Incoming("comptoir/ph9/c2/events", json.dumps(payload).encode(), time.time())


def test_store_dedupes_by_key_and_counts_out_of_order(store_target: Path | str) -> None:
    store = BackOfficeStore(store_target)
    try:
        store.apply([_event("a", 1), _event("b", 2), _event("a", 1)])
        store.apply([_event("b", 2), _event("c", 3)])
        assert store.event_keys("ph9/c2") == ["a", "b", "c"]
        device = store.device("ph9/c2")
        assert device is not None and device["duplicates"] == 2 and device["out_of_order"] == 0
        store.apply([_event("z", 1)])
        assert (store.device("ph9/c2") or {})["out_of_order"] == 1
        rejected = {"claim": 12, "reason": "NIR inconnu", "action": "Vérifier la carte"}
        store.apply([_event("ack", 9, type="batch.acknowledged", batch=3, positive=True, rejected=[rejected])])
        assert (store.device("ph9/c2") or {})["rejections"][0] | {"at": 0} == {
            "kind": "claim",
            "batch": 3,
            **rejected,
            "at": 0,
        }
        store.apply([Incoming("not/a/comptoir/topic", b"{}", 0.0), Incoming("comptoir/ph9/c2/events", b"\xff", 0.0)])
    finally:
        store.close()


def test_store_holds_back_a_message_whose_predecessor_is_missing_and_says_so(store_target: Path | str) -> None:
    """A broker that dies after taking a message can lose it while the next ones get through: storing
    those would break the stream's order, so they are held back and reported, and stored once the box
    has sent the missing one again."""
    store = BackOfficeStore(store_target)
    try:
        first = store.apply([_event("a", 1), _event("b", 2, prev=1)])
        assert first.stored == [("ph9/c2", "a"), ("ph9/c2", "b")] and first.held == []
        gap = store.apply([_event("d", 4, prev=3), _event("e", 5, prev=4)])  # "c" (3) was lost
        assert gap.stored == [] and [key for _, key, _ in gap.held] == ["d", "e"]
        assert store.event_keys("ph9/c2") == ["a", "b"]
        again = store.apply(
            [_event("b", 2, prev=1), _event("c", 3, prev=2), _event("d", 4, prev=3), _event("e", 5, prev=4)]
        )
        assert [key for _, key in again.stored] == ["b", "c", "d", "e"], "a repeat is acknowledged again"
        assert store.event_keys("ph9/c2") == ["a", "b", "c", "d", "e"]
        device = store.device("ph9/c2")
        assert device is not None and device["out_of_order"] == 0 and device["duplicates"] == 1
        # a box that restarted knows no predecessor: its first message is taken as it comes
        assert store.apply([_event("f", 6)]).stored == [("ph9/c2", "f")]
    finally:
        store.close()


def test_unanswered_commands_go_again_when_the_box_comes_online_until_answered_or_expired(
    store_target: Path | str,
) -> None:
    store = BackOfficeStore(store_target)
    online = Incoming("comptoir/ph9/c2/state", b"online", time.time())
    try:
        store.record_command("c1", "ph9/c2", "diagnostics", {}, signed=b'{"id":"c1"}', expires_at=time.time() + 60)
        store.record_command("old", "ph9/c2", "diagnostics", {}, signed=b'{"id":"old"}', expires_at=time.time() - 1)
        store.record_command("c3", "ph9/c3", "diagnostics", {}, signed=b'{"id":"c3"}', expires_at=time.time() + 60)
        assert store.apply([online]).commands == [("ph9/c2", b'{"id":"c1"}')], "not the expired one, not another box's"
        answer = {"key": "ack:c1", "seq": 1, "stream": "acks", "command": "c1", "status": "done", "at": 0}
        store.apply([Incoming("comptoir/ph9/c2/cmd/ack", json.dumps(answer).encode(), time.time())])
        assert store.apply([online]).commands == []
        assert store.apply([Incoming("comptoir/ph9/c3/state", b"offline", time.time())]).commands == []
    finally:
        store.close()


@pytest.fixture
def stack(tmp_path: Path, pki: Pki) -> Iterator[tuple[BackOffice, MosquittoBroker, Path]]:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "cmd.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    issued = pki.client("backoffice")
    office = BackOffice(
        BackOfficeSettings("127.0.0.1", broker.port, pki.ca.cert, issued.cert, issued.key, tmp_path / "bo.db", key)
    )
    office.start()
    try:
        assert office.wait_connected(10)
        yield office, broker, public
    finally:
        office.stop()
        broker.kill()


def test_fleet_page_and_api_show_each_box(
    tmp_path: Path, pki: Pki, stack: tuple[BackOffice, MosquittoBroker, Path]
) -> None:
    office, broker, public = stack
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "s.toml", db=db, key=key, pki=pki, broker_port=broker.port, command_key=public, device="ph2/c7"
    )
    stop = threading.Event()
    thread = threading.Thread(target=lambda: SyncService(load_config(config)).run(stop), daemon=True)
    thread.start()
    try:
        assert office.wait_for(lambda: (office.store.device("ph2/c7") or {}).get("version") is not None, 10)
        with signed_in(office) as http:
            fleet = http.get("/api/fleet").json()["devices"]
            assert [d["device"] for d in fleet] == ["ph2/c7"]
            box = fleet[0]
            assert box["online"] is True and box["outbox_depth"] == 0 and box["version"]
            page = http.get("/")
            assert page.status_code == 200 and "ph2/c7" in page.text and "en ligne" in page.text
            sent = http.post("/api/commands", json={"device": "ph2/c7", "type": "resync"})
            assert sent.status_code == 202
            ident = sent.json()["id"]
            assert office.wait_for(lambda: (office.store.command(ident) or {}).get("status") == "done", 10)
            commands = http.get("/api/commands", params={"device": "ph2/c7"}).json()["commands"]
            assert [c["id"] for c in commands] == [ident]
            assert http.post("/api/commands", json={"device": "ph2/c7", "type": "format-disk"}).status_code == 400
            assert http.get("/api/health").json() == {"status": "ok", "connected": True}
            events = http.get("/api/events", params={"device": "ph2/c7"}).json()["events"]
            assert {e["type"] for e in events} <= {"audit.anchor"}  # no claim yet: only the journal's anchor
    finally:
        stop.set()
        thread.join(10)
    assert office.wait_for(lambda: (office.store.device("ph2/c7") or {}).get("online") is False, 10)


def test_the_page_shows_the_payments_reconciliation_written_by_reconcile(tmp_path: Path, pki: Pki) -> None:
    from appliance.cli import main
    from sandbox.payments import generate, write_files

    reports = tmp_path / "reports"
    remittances, camt, _ = write_files(generate(months=1, claims_per_day=8, seed=7), tmp_path / "activity")
    assert main(["reconcile", "--remittances", str(remittances), "--bank", str(camt), "--out", str(reports)]) == 0
    issued = pki.client("backoffice")
    key = Ed25519PrivateKey.generate()
    # No broker: the web page does not need it (the MQTT client keeps trying in the background).
    settings = BackOfficeSettings(
        "127.0.0.1", 9, pki.ca.cert, issued.cert, issued.key, tmp_path / "bo.db", key, reports=reports
    )
    office = BackOffice(settings)
    office.start()
    try:
        assert httpx.get(f"{office.url}/api/reconciliation", timeout=5).status_code == 401
        with signed_in(office, "val", "viewer") as http:
            page = http.get("/reconciliation")
            data = http.get("/api/reconciliation").json()
            fleet = http.get("/").text
    finally:
        office.stop()
    assert page.status_code == 200 and "<svg" in page.text
    assert data == json.loads((reports / "reconciliation.json").read_text(encoding="utf-8"))
    assert "/reconciliation" in fleet
