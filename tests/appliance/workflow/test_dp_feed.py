"""The Dossier Pharmaceutique feed: a dispensation of a patient who agreed is queued with its claim
(ids only), its body is built from the store when it is sent, and it is delivered once."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from appliance.delivery import TELESERVICE_STREAMS, deliver_pending
from appliance.scenario import START
from appliance.store import audit, outbox
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from appliance.workflow.events import CardInserted
from sandbox.population import PEOPLE
from tests.appliance.workflow.conftest import PIN, PRODUCTS, Box, Clock

DURAND = PEOPLE["durand"].beneficiary


class FakeDp:
    """The DP service: records what it is handed; ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.fail: list[Exception] = []

    def deliver(self, stream: str, key: str, payload: dict[str, Any], *, attempts: int | None = None) -> dict[str, Any]:
        if self.fail:
            raise self.fail.pop(0)
        self.received.append((stream, key, payload))
        return {"status": "recorded", "dp_id": f"DP-{len(self.received):06d}", "lines": len(payload["lines"])}


def dispense(box: Box, *, consent: bool | None) -> None:
    """An offline session for Marie DURAND's carte Vitale: two identical boxes, one other, validated."""
    box._ok(box.intent("login", operator="alice", pin=PIN))
    box._ok(box.send(CardInserted((DURAND,), {DURAND.nir: PEOPLE["durand"].amo}, START.date())))
    if consent is not None:
        box._ok(box.intent("dp_consent", agreed=consent))
    box._ok(box._scan("EP0001-0000-CLMS-0001"))
    for quantity, cip13 in ((2, PRODUCTS[0]), (1, PRODUCTS[1])):
        box._ok(box.intent("enter_line", label=f"CIP {cip13}", quantity=quantity, cip13=cip13))
    box._ok(box.intent("confirm_prescription"))
    for n, cip13 in enumerate((PRODUCTS[0], PRODUCTS[0], PRODUCTS[1]), start=1):
        box._ok(box._scan(f"010{cip13}17271231" + f"10L{cip13[-2:]}\x1d21DP{n:06d}"))
    box._ok(box.intent("continue"))
    box._ok(box.intent("validate", operator="alice", pin=PIN))


def dp_messages(box: Box) -> list[outbox.OutboxMessage]:
    return [m for m in outbox.pending(box.db, now=float("inf")) if m.stream == "dp"]


def test_the_feed_waits_in_the_outbox_with_ids_only(boot: Callable[[], Box]) -> None:
    box = boot()
    dispense(box, consent=True)
    (message,) = dp_messages(box)
    assert message.key == "dp:1" and message.payload == {"dispensation": 1, "patient_id": 1}
    stored = json.dumps(message.payload)
    assert DURAND.nir not in stored and "1982" not in stored and "DURAND" not in stored
    assert "dp" in TELESERVICE_STREAMS


def test_the_wire_is_built_from_the_store_and_delivered_once(boot: Callable[[], Box], clock: Clock) -> None:
    box = boot()
    dispense(box, consent=True)
    service = FakeDp()
    report = deliver_pending(box.records, service, clock=clock, streams={"dp"})  # type: ignore[arg-type]
    assert (report.delivered, report.refused, report.deferred) == (1, 0, 0)
    ((stream, key, wire),) = service.received
    assert stream == "dp" and key == f"dp:1:{box.records.box_id()}"
    assert wire == {
        "nir": DURAND.nir,
        "holder_nir": DURAND.nir,
        "rank": 1,
        "birth_date": "1982-08-19",
        "dispensed_on": "2026-06-15",
        "pharmacy": {"finess": "", "name": ""},
        "lines": [
            {"cip13": PRODUCTS[0], "quantity": 2, "lot": f"L{PRODUCTS[0][-2:]}"},
            {"cip13": PRODUCTS[1], "quantity": 1, "lot": f"L{PRODUCTS[1][-2:]}"},
        ],
    }
    again = deliver_pending(box.records, service, clock=clock, streams={"dp"})  # type: ignore[arg-type]
    assert again.delivered == 0 and len(service.received) == 1 and dp_messages(box) == []
    fed = [e for e in audit.entries(box.db, limit=1000) if e.action == "dp.fed"]
    assert [(e.subject, e.operator_id) for e in fed] == [("1", None)]


def test_an_unavailable_dp_keeps_the_feed_and_the_retry_has_the_same_key(boot: Callable[[], Box], clock: Clock) -> None:
    box = boot()
    dispense(box, consent=True)
    service = FakeDp()
    service.fail.append(TeleserviceUnavailable("dp: ConnectError"))
    first = deliver_pending(box.records, service, clock=clock, streams={"dp"})  # type: ignore[arg-type]
    assert (first.delivered, first.deferred) == (0, 1) and len(dp_messages(box)) == 1
    clock.now += 3600
    second = deliver_pending(box.records, service, clock=clock, streams={"dp"})  # type: ignore[arg-type]
    assert second.delivered == 1 and [k for _, k, _ in service.received] == [f"dp:1:{box.records.box_id()}"]


def test_a_refusal_is_final_and_journaled(boot: Callable[[], Box], clock: Clock) -> None:
    box = boot()
    dispense(box, consent=True)
    service = FakeDp()
    service.fail.append(TeleserviceRefused("DP_UNKNOWN", "Dossier pharmaceutique introuvable"))
    report = deliver_pending(box.records, service, clock=clock, streams={"dp"})  # type: ignore[arg-type]
    assert (report.refused, report.notes) == (1, ["Dossier pharmaceutique introuvable"])
    assert dp_messages(box) == [] and service.received == []
    refused = [e for e in audit.entries(box.db, limit=1000) if e.action == "dp.refused"]
    assert [e.subject for e in refused] == ["1"]


@pytest.mark.parametrize("consent", [None, False])
def test_without_consent_nothing_is_fed(boot: Callable[[], Box], consent: bool | None) -> None:
    box = boot()
    dispense(box, consent=consent)
    assert dp_messages(box) == []
    assert box.records.dp_wire(1) is not None  # the dispensation is there, it is just not sent
