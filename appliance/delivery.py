"""Moving the outbox: deferred teleservice calls and messages that must leave the box (DESIGN §5, §6).

``deliver_pending`` takes the head of each outbox stream in order and hands it to the teleservices;
what comes back is applied to the records (a late INSi answer, an acknowledgement, a fetched
prescription). A stream stops at its first message that cannot be delivered now and is retried with
a growing delay; a refusal is final for that message (recorded, audited) so it never blocks its
stream. The background sync of issue 6 calls the same function from its own loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.domain import InsiOutcome
from appliance.store import outbox
from appliance.store.database import transaction
from appliance.store.records import CounterRecords
from appliance.teleservices import TeleserviceRefused, Teleservices, TeleserviceUnavailable

log = logging.getLogger(__name__)

DMP_TITLES = {
    "vaccination": "Note de vaccination",
    "pharmaceutical-interview": "Compte rendu d'entretien pharmaceutique",
    "medication-review": "Bilan partagé de médication",
}
RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0


@dataclass
class DeliveryReport:
    delivered: int = 0
    refused: int = 0
    deferred: int = 0
    notes: list[str] = field(default_factory=list)


def _retry_delay(attempts: int) -> float:
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2.0 ** min(attempts, 10)))


def deliver_pending(
    records: CounterRecords,
    teleservices: Teleservices,
    *,
    clock: Callable[[], float],
    rounds: int = 50,
    qualification_visits: int = 3,
) -> DeliveryReport:
    """Deliver what is due, stream by stream, until nothing more can go now.

    ``qualification_visits`` is the counter's setting: an identity retrieved late gets the
    qualification prompt at that many next visits.
    """
    report = DeliveryReport()
    for _ in range(rounds):
        due = outbox.pending(records.db, now=clock())
        if not due:
            break
        progressed = False
        for message in due:
            try:
                response = _send(
                    records, teleservices, message.stream, message.key, message.payload, clock, qualification_visits
                )
            except TeleserviceUnavailable as exc:
                with transaction(records.db) as conn:
                    outbox.mark_failed(
                        conn, message.id, str(exc) or "unavailable", clock() + _retry_delay(message.attempts)
                    )
                report.deferred += 1
                continue
            except TeleserviceRefused as refusal:
                response = {"refused": refusal.code, "message": refusal.message}
                report.refused += 1
                report.notes.append(refusal.message)
                _refused(records, message.stream, message.payload)
            else:
                report.delivered += 1
            with transaction(records.db) as conn:
                outbox.mark_delivered(conn, message.id, response, now=clock())
            progressed = True
        if not progressed:
            break
    return report


def _send(
    records: CounterRecords,
    teleservices: Teleservices,
    stream: str,
    key: str,
    payload: dict[str, Any],
    clock: Callable[[], float],
    qualification_visits: int,
) -> dict[str, Any]:
    if stream == "call":
        return _deferred_call(records, teleservices, payload, clock, qualification_visits)
    if stream == "dmp":
        ins = records.ins_of(int(payload["patient_id"]))
        if ins is None:
            raise TeleserviceRefused("no-ins", "Identité non qualifiée : pas d'envoi au DMP")
        traits = ins.traits
        body = {
            "type": payload["kind"],
            "visibility": payload["visibility"],
            "ins": {
                "matricule": ins.matricule,
                "oid": ins.oid,
                "traits": {
                    "birth_name": traits.birth_name,
                    "first_names": traits.first_names,
                    "sex": traits.sex,
                    "birth_date": traits.birth_date.isoformat(),
                    "birth_place": traits.birth_place,
                },
            },
            "ins_status": records.patient_status(int(payload["patient_id"])).value,
            "title": DMP_TITLES.get(str(payload["kind"]), str(payload["kind"])),
        }
        answer = teleservices.deliver("dmp", key, body)
        records.mark_dmp(int(payload["document"]), "sent")
        return answer
    if stream == "batch":
        answer = teleservices.deliver("batch", key, records.batch_wire(int(payload["batch"])))
        rejected = {
            int(item["claim_number"]): (str(item.get("reason", "")), str(item.get("action", "")))
            for item in answer.get("rejected_claims", [])
        }
        records.apply_acknowledgement(
            int(payload["batch"]), answer.get("ack") == "positive", str(answer.get("reason", "")), rejected
        )
        return answer
    answer = teleservices.deliver(stream, key, payload)
    if stream == "execution":
        records.mark_execution_sent(
            str(payload["prescription_id"]), int(payload.get("renewal", 0)), int(payload["step"])
        )
    return answer


def _deferred_call(
    records: CounterRecords,
    teleservices: Teleservices,
    payload: dict[str, Any],
    clock: Callable[[], float],
    qualification_visits: int,
) -> dict[str, Any]:
    patient_id = int(payload["patient_id"])
    call = payload["call"]
    if call in ("insi_search_card", "insi_search_traits"):
        beneficiary = records.beneficiary_of(patient_id)
        if beneficiary is not None:
            result = teleservices.insi_search_card(beneficiary)
        else:
            ins_traits = records.traits_of_patient(patient_id)
            result = teleservices.insi_search_traits(ins_traits)
        if result.outcome is InsiOutcome.FOUND:
            records.apply_ins(
                patient_id, result.identities[0], "insi-00-deferred", qualification_visits=qualification_visits
            )
        return {"outcome": result.outcome.value}
    if call == "idb":
        stored = records.stored_amc(patient_id)
        beneficiary = records.beneficiary_of(patient_id)
        if stored is None:
            return {"skipped": "no attestation"}
        day = datetime.fromtimestamp(clock(), tz=UTC).date()
        rights = teleservices.idb(stored.amc_number, stored.member_number, beneficiary.nir if beneficiary else "", day)
        records.save_rights(patient_id, amo=None, amc=rights)
        return {"accreditation": rights.accreditation}
    if call == "fetch_prescription":
        prescription = teleservices.fetch_prescription(str(payload["prescription_id"]))
        records.complete_prescription(prescription)
        return {"lines": len(prescription.lines)}
    raise TeleserviceRefused("unknown-call", f"appel inconnu : {call}")


def _refused(records: CounterRecords, stream: str, payload: dict[str, Any]) -> None:
    if stream == "dmp":
        records.mark_dmp(int(payload["document"]), "refused")
    records.audit(None, f"{stream}.refused", str(payload.get("prescription_id", payload.get("batch", ""))), {})
