"""Back-office commands: signed, idempotent, answered, refusals say why; end to end over the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.store import audit, outbox
from appliance.store.database import get_setting, open_database, set_setting, transaction
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.service import BackOffice
from sync.commands import CommandProcessor, make_command
from tests.sync.harness import make_device_db, running, write_sync_config

DEVICE = "ph1/c1"
NOW = 1_800_000_000.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite_utils.Database]:
    database = open_database(tmp_path / "comptoir.db")
    audit.use_key(database, bytes(32))  # the box's journal key (comptoir sync opens the db with its key file)
    yield database
    database.close()


@pytest.fixture
def processor(db: sqlite_utils.Database, signing_key: Ed25519PrivateKey) -> CommandProcessor:
    return CommandProcessor(db, signing_key.public_key(), DEVICE, clock=lambda: NOW, diagnostics=lambda: {"ok": 1})


def _raw(key: Ed25519PrivateKey, kind: str, args: dict[str, object], **extra: object) -> bytes:
    command = make_command(
        key,
        command_id=str(extra.get("command_id", "c1")),
        device=str(extra.get("device", DEVICE)),
        kind=kind,
        args=args,
        now=float(extra.get("now", NOW)),  # type: ignore[arg-type]
        ttl=600,
    )
    return json.dumps(command).encode()


def _acks(db: sqlite_utils.Database) -> list[dict[str, object]]:
    return [
        json.loads(row[0]) for row in db.conn.execute("SELECT payload FROM outbox WHERE stream = 'acks' ORDER BY id")
    ]


def test_config_command_is_applied_once_and_answered_once(
    db: sqlite_utils.Database, processor: CommandProcessor, signing_key: Ed25519PrivateKey
) -> None:
    raw = _raw(signing_key, "config", {"settings": {"qualification_visits": 5}})
    first = processor.handle(raw)
    assert first.queued and first.applied
    assert first.payload == {
        "command": "c1",
        "status": "done",
        "result": {"changed": {"qualification_visits": 5}},
        "at": NOW,
    }
    assert get_setting(db, "config.qualification_visits") == "5"
    with transaction(db) as conn:
        set_setting(conn, "config.qualification_visits", "7")  # changed locally since
    again = processor.handle(raw)
    assert not again.queued and not again.applied and again.payload == first.payload
    assert get_setting(db, "config.qualification_visits") == "7", "a repeated command must not apply again"
    assert _acks(db) == [first.payload]
    audit = db.conn.execute("SELECT action, subject FROM audit_journal WHERE action = 'backoffice.command'").fetchall()
    assert audit == [("backoffice.command", "c1")]


@pytest.mark.parametrize(
    ("kind", "args", "extra", "reason"),
    [
        ("config", {"settings": {"pharmacy_name": "x"}}, {}, "bad-arguments"),
        ("config", {"settings": {"qualification_visits": 99}}, {}, "bad-arguments"),
        ("reboot", {}, {}, "unknown-type"),
        ("resync", {}, {"device": "ph1/other"}, "wrong-device"),
        ("resync", {}, {"now": NOW - 3600}, "expired"),
        ("update-offer", {"version": "1.2.0"}, {}, "bad-arguments"),
    ],
)
def test_authenticated_but_refused_commands_say_why_and_are_recorded(
    db: sqlite_utils.Database,
    processor: CommandProcessor,
    signing_key: Ed25519PrivateKey,
    kind: str,
    args: dict[str, object],
    extra: dict[str, object],
    reason: str,
) -> None:
    answer = processor.handle(_raw(signing_key, kind, args, **extra))
    assert answer.queued and not answer.applied
    assert answer.payload["status"] == "refused" and answer.payload["reason"] == reason
    assert answer.payload.get("detail")
    assert _acks(db) == [answer.payload]
    assert get_setting(db, "config.qualification_visits") is None


def test_unauthenticated_commands_change_nothing(db: sqlite_utils.Database, processor: CommandProcessor) -> None:
    forged = _raw(Ed25519PrivateKey.generate(), "config", {"settings": {"qualification_visits": 5}})
    tampered = json.loads(_raw(Ed25519PrivateKey.generate(), "resync", {}))
    for raw, reason in ((forged, "bad-signature"), (b"not json", "malformed"), (b"{}", "bad-signature")):
        answer = processor.handle(raw)
        assert not answer.queued and answer.payload["status"] == "refused" and answer.payload["reason"] == reason
    tampered["type"] = "diagnostics"
    assert processor.handle(json.dumps(tampered).encode()).payload["reason"] == "bad-signature"
    assert _acks(db) == [] and get_setting(db, "config.qualification_visits") is None


def test_a_signed_command_cannot_be_retargeted(processor: CommandProcessor, signing_key: Ed25519PrivateKey) -> None:
    command = json.loads(_raw(signing_key, "resync", {}, device="ph1/other"))
    command["device"] = DEVICE
    assert processor.handle(json.dumps(command).encode()).payload["reason"] == "bad-signature"


def test_resync_update_offer_and_diagnostics(
    db: sqlite_utils.Database, processor: CommandProcessor, signing_key: Ed25519PrivateKey
) -> None:
    with transaction(db) as conn:
        ident = outbox.enqueue(conn, stream="events", key="e1", payload={"type": "x"}, now=NOW)
        outbox.mark_failed(conn, ident, "down", NOW + 500)
    resync = processor.handle(_raw(signing_key, "resync", {}, command_id="r1"))
    assert resync.payload["result"] == {"due_now": 1}
    assert outbox.get(db, ident).next_attempt_at == NOW
    offer = processor.handle(
        _raw(signing_key, "update-offer", {"version": "1.2.0", "url": "https://updates/1.2.0"}, command_id="u1")
    )
    assert offer.applied and json.loads(get_setting(db, "update.offer") or "{}")["version"] == "1.2.0"
    diagnostics = processor.handle(_raw(signing_key, "diagnostics", {}, command_id="d1"))
    assert diagnostics.payload["result"] == {"ok": 1}


def test_commands_end_to_end_including_one_sent_while_the_box_was_offline(
    tmp_path: Path,
    pki: Pki,
    broker: MosquittoBroker,
    backoffice: BackOffice,
    command_key: Path,
) -> None:
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=broker.port, command_key=command_key
    )

    with running(config):
        assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("online") is True, 10)
        done = backoffice.send_command(DEVICE, "config", {"settings": {"telemetry_interval_s": 30}})
        assert backoffice.wait_for(lambda: (backoffice.store.command(done) or {}).get("status") == "done", 10)
        diag = backoffice.send_command(DEVICE, "diagnostics")
        assert backoffice.wait_for(lambda: (backoffice.store.command(diag) or {}).get("status") == "done", 10)
        answer = json.loads((backoffice.store.command(diag) or {})["answer"])
        assert answer["result"]["versions"]["comptoir"] and "heads" in answer["result"]
        refused = backoffice.send_command(DEVICE, "config", {"settings": {"nope": 1}})
        assert backoffice.wait_for(lambda: (backoffice.store.command(refused) or {}).get("status") == "refused", 10)
        assert (backoffice.store.command(refused) or {})["reason"] == "bad-arguments"
        fleet = backoffice.store.device(DEVICE)
        assert fleet is not None and [r["command"] for r in fleet["rejections"]] == [refused]
    assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("state") == "offline", 10)
    queued = backoffice.send_command(DEVICE, "config", {"settings": {"qualification_visits": 4}})
    with running(config):
        assert backoffice.wait_for(lambda: (backoffice.store.command(queued) or {}).get("status") == "done", 15)
    check = open_database(db)
    try:
        assert get_setting(check, "config.qualification_visits") == "4"
        assert get_setting(check, "config.telemetry_interval_s") == "30"
        pending = check.conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0]
        assert pending == 0
    finally:
        check.close()


def test_a_command_the_broker_lost_while_the_box_was_away_is_sent_again_when_it_comes_back(
    tmp_path: Path,
    pki: Pki,
    broker: MosquittoBroker,
    backoffice: BackOffice,
    command_key: Path,
) -> None:
    """The broker queues a command for an absent box; if the broker crashes and comes back without its
    state, nothing would bring the command: the back office sends it again when the box says online."""
    db, key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "sync.toml", db=db, key=key, pki=pki, broker_port=broker.port, command_key=command_key
    )
    with running(config):
        assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("online") is True, 10)
    assert backoffice.wait_for(lambda: (backoffice.store.device(DEVICE) or {}).get("state") == "offline", 10)
    queued = backoffice.send_command(DEVICE, "config", {"settings": {"qualification_visits": 5}})
    broker.kill()
    for saved in broker.files.persistence_dir.glob("*.db"):
        saved.unlink()  # the broker comes back with nothing: no queued command, no session
    broker.start()
    with running(config):
        assert backoffice.wait_for(lambda: (backoffice.store.command(queued) or {}).get("status") == "done", 20)
    check = open_database(db)
    try:
        assert get_setting(check, "config.qualification_visits") == "5"
    finally:
        check.close()
