"""Staged roll-outs in the back office: canaries first, advance on success, pause on failures.

Most tests feed the back office's store directly (the MQTT path of events is tested elsewhere) and
call :meth:`RolloutRunner.tick` with a chosen clock; one runs a real broker and a real box to check
that the ``update-offer`` really reaches the box and its stage events come back on ``events/update``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.updates.events import OutboxStageReporter, make_event
from appliance.updates.rollout import RolloutPlan, eligible
from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.rollouts import RolloutRunner
from sync.backoffice.service import BackOffice, BackOfficeSettings
from sync.backoffice.store import BackOfficeStore, Incoming
from sync.backoffice.web import page
from sync.service import SyncService, load_config
from tests.sync.backoffice.web_login import signed_in
from tests.sync.harness import make_device_db, write_sync_config

VERSION, URL = "0.3.0", "https://updates.example/0.3.0"
T0 = 1_700_000_000.0
PLAN = RolloutPlan(VERSION)
FLEET = [f"ph{n:03d}/c1" for n in range(400)]


class Sent:
    """A fake command sender: records (device, type, args) and returns an id."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, device: str, kind: str, args: dict[str, Any]) -> str:
        self.commands.append((device, kind, args))
        return f"cmd-{len(self.commands)}"


def _telemetry(device: str) -> Incoming:
    return Incoming(f"comptoir/{device}/telemetry", json.dumps({"versions": {"comptoir": "0.2.0"}}).encode(), T0)


def _stage(device: str, stage: str, seq: int) -> Incoming:
    body = {
        "key": f"update:{VERSION}-{device}:{stage}",
        "seq": seq,
        "stream": "updates",
        **make_event(device, f"{VERSION}-x", "0.2.0", VERSION, stage, ok=stage == "committed").to_json(),
    }
    return Incoming(f"comptoir/{device}/events/update", json.dumps(body).encode(), T0)


@pytest.fixture
def fleet(store_target: Path | str) -> Iterator[tuple[BackOfficeStore, RolloutRunner, Sent]]:
    store = BackOfficeStore(store_target)
    store.apply(_telemetry(d) for d in FLEET)
    sent = Sent()
    try:
        yield store, RolloutRunner(store, sent), sent
    finally:
        store.close()


def test_first_tick_offers_only_the_canaries_once(fleet: tuple[BackOfficeStore, RolloutRunner, Sent]) -> None:
    _, runner, sent = fleet
    canaries = eligible(PLAN, 0, FLEET)
    assert 2 <= len(canaries) < 20  # about 1 % of 400
    runner.start(VERSION, URL, T0)
    assert runner.tick(T0 + 1) == {VERSION: sorted(canaries)}
    assert {c[0] for c in sent.commands} == canaries
    assert all(kind == "update-offer" and args == {"version": VERSION, "url": URL} for _, kind, args in sent.commands)
    assert runner.tick(T0 + 2) == {VERSION: []}  # offered once, not again
    (listed,) = runner.list()
    assert listed["state"] == "running" and listed["stage"] == 0 and listed["offered"] == len(canaries)
    with pytest.raises(ValueError):
        runner.start(VERSION, URL, T0)


def test_successes_advance_the_stage_after_the_soak(fleet: tuple[BackOfficeStore, RolloutRunner, Sent]) -> None:
    store, runner, sent = fleet
    runner.start(VERSION, URL, T0)
    canaries = set(runner.tick(T0)[VERSION])
    store.apply(_stage(d, "committed", 1) for d in canaries)
    assert runner.tick(T0 + 60) == {VERSION: []}  # all committed, but the soak is not over
    second = set(runner.tick(T0 + PLAN.min_soak)[VERSION])
    assert second == eligible(PLAN, 1, FLEET) - canaries and second
    (listed,) = runner.list()
    assert listed["stage"] == 1 and listed["share"] == 0.10 and listed["state"] == "running"
    assert listed["succeeded"] == len(canaries) and listed["failed"] == 0
    assert listed["offered"] == len(canaries) + len(second) == len(sent.commands)


def test_failures_past_the_threshold_pause_and_stop_the_offers(
    fleet: tuple[BackOfficeStore, RolloutRunner, Sent],
) -> None:
    store, runner, sent = fleet
    runner.start(VERSION, URL, T0)
    canaries = sorted(runner.tick(T0)[VERSION])
    store.apply([_stage(canaries[0], "rolled_back", 1), _stage(canaries[1], "aborted", 1)])
    store.apply(_stage(d, "committed", 1) for d in canaries[2:])
    offered = len(sent.commands)
    assert runner.tick(T0 + PLAN.min_soak) == {VERSION: []}
    assert runner.tick(T0 + 10 * PLAN.stage_timeout) == {}  # paused: no longer stepped
    assert len(sent.commands) == offered
    (listed,) = runner.list()
    assert listed["state"] == "paused" and listed["stage"] == 0 and listed["failed"] == 2
    assert "2 of" in listed["paused_reason"] and "threshold" in listed["paused_reason"]
    statuses = {o["device"]: o["status"] for o in listed["offers"]}
    assert statuses[canaries[0]] == "rolled_back" and statuses[canaries[1]] == "aborted"
    shown = page(store.fleet(), runner.list())
    assert "Déploiements" in shown and "en pause" in shown and VERSION in shown


def test_api_starts_and_lists_rollouts(tmp_path: Path, pki: Pki) -> None:
    issued = pki.client("backoffice")
    # No broker: the API and the store do not need it; commands go to a fake sender.
    settings = BackOfficeSettings(
        "127.0.0.1", 9, pki.ca.cert, issued.cert, issued.key, tmp_path / "bo.db", Ed25519PrivateKey.generate()
    )
    office = BackOffice(settings)
    office.store.apply(_telemetry(d) for d in FLEET)
    office.rollouts.send = sent = Sent()
    office.start()
    try:
        with signed_in(office) as http:
            created = http.post("/api/rollouts", json={"version": VERSION, "url": URL})
            assert created.status_code == 201
            assert http.post("/api/rollouts", json={"version": VERSION, "url": URL}).status_code == 409
            assert http.post("/api/rollouts", json={"version": VERSION}).status_code == 400
            office.rollouts.tick(office.store.rollouts()[0]["started_at"])
            (listed,) = http.get("/api/rollouts").json()["rollouts"]
            assert listed["id"] == created.json()["id"] and listed["version"] == VERSION
            assert listed["state"] == "running" and listed["offered"] == len(sent.commands) > 0
            assert listed["paused_reason"] is None
            assert "Déploiements" in http.get("/").text
    finally:
        office.stop()


def test_offer_reaches_a_real_box_and_its_stage_events_come_back(tmp_path: Path, pki: Pki) -> None:
    key = Ed25519PrivateKey.generate()
    public = tmp_path / "cmd.pub"
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    issued = pki.client("backoffice")
    office = BackOffice(
        BackOfficeSettings(
            "127.0.0.1", broker.port, pki.ca.cert, issued.cert, issued.key, tmp_path / "bo.db", key, rollout_interval=0
        )
    )
    office.rollouts.plan = lambda version: RolloutPlan(version, stages=(1.0,))  # one box: offer it at once
    office.start()
    db, field_key = make_device_db(tmp_path / "box")
    config = write_sync_config(
        tmp_path / "s.toml", db=db, key=field_key, pki=pki, broker_port=broker.port, command_key=public, device="ph5/c1"
    )
    stop = threading.Event()
    thread = threading.Thread(target=lambda: SyncService(load_config(config)).run(stop), daemon=True)
    try:
        assert office.wait_connected(10)
        thread.start()
        assert office.wait_for(lambda: office.store.device_ids() == ["ph5/c1"], 10)
        office.rollouts.start(VERSION, URL, T0)
        assert office.rollouts.tick(T0) == {VERSION: ["ph5/c1"]}
        (command,) = office.store.commands("ph5/c1")
        assert command["type"] == "update-offer"
        assert office.wait_for(lambda: (office.store.command(command["id"]) or {}).get("status") == "done", 10)
        OutboxStageReporter(db)(make_event("ph5/c1", f"{VERSION}-1", "0.2.0", VERSION, "committed"))
        assert office.wait_for(lambda: office.store.update_results(VERSION) == {"ph5/c1": "committed"}, 10)
        office.rollouts.tick(T0 + 2 * RolloutPlan(VERSION).min_soak)
        (listed,) = office.rollouts.list()
        assert listed["state"] == "done" and listed["succeeded"] == 1
    finally:
        stop.set()
        thread.join(10)
        office.stop()
        broker.kill()
