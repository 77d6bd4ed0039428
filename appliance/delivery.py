"""Moving the outbox: deferred teleservice calls and messages that must leave the box (DESIGN §5, §6).

``deliver_pending`` takes the head of each outbox stream in order and hands it to the teleservices;
what comes back is applied to the records (a late INSi answer, an acknowledgement, a fetched
prescription). A stream stops at its first message that cannot be delivered now and is retried with
a growing delay; a refusal is final for that message (recorded, audited) so it never blocks its
stream. The background sync (``comptoir sync``, :mod:`sync.service`) calls the same function from its
own loop.

``deliver_published`` moves the back-office streams (``events``: what happened at the counter;
``acks``: answers to the back office's commands) through a :class:`Publisher` (MQTT in
:mod:`sync.mqtt`). Those messages are many and small, so they go in windows: a run of consecutive
messages of one stream is published, and the longest prefix the receiver acknowledged (MQTT: by the
back office, end to end) is marked delivered in one transaction; the first message not acknowledged is retried later and
everything behind it waits (head of line). A message whose acknowledgement was lost is sent again:
receivers deduplicate by key, so order per stream and "applied once" hold.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from appliance.dmp import KINDS, submission
from appliance.dmp.source import document_from
from appliance.domain import InsiOutcome
from appliance.messaging import STREAM as MAIL_STREAM
from appliance.messaging import MailSettings, compose
from appliance.ports import SecureMail
from appliance.store import outbox
from appliance.store.database import transaction
from appliance.store.records import CounterRecords
from appliance.teleservices import TeleserviceRefused, Teleservices, TeleserviceUnavailable

if TYPE_CHECKING:
    import sqlite_utils

log = logging.getLogger(__name__)

DMP_TITLES = {name: kind.title for name, kind in KINDS.items()}
RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0
PUBLISH_RETRY_BASE_S = 1.0
PUBLISH_RETRY_MAX_S = 60.0
"""Back-off of the back-office streams: shorter than the teleservices', and cut short anyway when the
connection comes back (:func:`retry_now`)."""

TELESERVICE_STREAMS: frozenset[str] = frozenset({"call", "execution", "batch", "dmp", "dp"})
"""Streams delivered through the :class:`~appliance.teleservices.Teleservices` port."""
EVENT_STREAM = "events"
"""What happened at the counter, for the pharmacy's back office (ids and amounts, no identities)."""
ACK_STREAM = "acks"
"""Answers to the back office's commands, written in the same transaction as the command's effect."""
UPDATE_STREAM = "updates"
"""Stage events of update transactions (:mod:`appliance.updates.events`): the back office's staged
roll-outs advance or pause on them, so they must reach it like the other back-office streams."""
BACKOFFICE_STREAMS: tuple[str, ...] = (EVENT_STREAM, ACK_STREAM, UPDATE_STREAM)
MAIL_STREAMS: tuple[str, ...] = (MAIL_STREAM,)
"""Secure messages (MSSanté): through a :class:`~appliance.ports.SecureMail` (SMTP), not the
teleservices (:func:`deliver_mail`)."""


@dataclass
class DeliveryReport:
    delivered: int = 0
    refused: int = 0
    deferred: int = 0
    notes: list[str] = field(default_factory=list)


def _retry_delay(attempts: int) -> float:
    return float(min(RETRY_MAX_S, RETRY_BASE_S * 2.0 ** min(attempts, 10)))


def _publish_retry_delay(attempts: int) -> float:
    return float(min(PUBLISH_RETRY_MAX_S, PUBLISH_RETRY_BASE_S * 2.0 ** min(attempts, 10)))


def deliver_pending(
    records: CounterRecords,
    teleservices: Teleservices,
    *,
    clock: Callable[[], float],
    rounds: int = 50,
    qualification_visits: int = 3,
    streams: Collection[str] = TELESERVICE_STREAMS,
) -> DeliveryReport:
    """Deliver what is due, stream by stream, until nothing more can go now.

    ``qualification_visits`` is the counter's setting: an identity retrieved late gets the
    qualification prompt at that many next visits. Only ``streams`` are touched (the teleservice
    ones by default): the back-office streams belong to :func:`deliver_published`, and a
    teleservice must never be handed a message it has no service for.
    """
    report = DeliveryReport()
    for _ in range(rounds):
        due = [m for m in outbox.pending(records.db, now=clock()) if m.stream in streams]
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
        return _deliver_dmp(records, teleservices, key, payload, clock)
    if stream == "dp":
        return _deliver_dp(records, teleservices, key, payload)
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


def deliver_mail(
    records: CounterRecords,
    mail: SecureMail,
    settings: MailSettings,
    *,
    clock: Callable[[], float],
    product_name: Callable[[str], str | None] | None = None,
    rounds: int = 50,
) -> DeliveryReport:
    """Send the waiting secure messages (stream ``mssante``) in order, each once.

    Each mail is composed now from the store (:meth:`CounterRecords.secure_message_facts`, then
    :func:`appliance.messaging.compose`): the outbox holds ids only. Accepted by the operator: the
    message is marked sent with its outbox message, in one transaction; one already marked sent (the
    operator accepted it but the box stopped before the outbox knew) is not sent again. Unavailable:
    the stream waits with the teleservices' back-off. Refused (no qualified identity, no prescriber
    address, an unknown recipient): marked refused, journalled as ``mssante.refused`` for the
    pharmacist, never retried, and the stream carries on.
    """
    report = DeliveryReport()
    for _ in range(rounds):
        due = outbox.pending(records.db, MAIL_STREAM, now=clock())
        if not due:
            break
        message = due[0]
        message_id = int(message.payload["message"])
        facts = records.secure_message_facts(message_id, product_name=product_name)
        status = None if facts is None else str(facts["status"])
        try:
            if facts is None:
                raise TeleserviceRefused("mss-unknown", "Message sécurisé introuvable dans les enregistrements")
            if status in ("sent", "refused"):
                response: dict[str, Any] = {"already": status}
            else:
                composed = compose(facts, settings)
                mail.send(composed)
                response, status = {"sent": str(composed["Message-ID"])}, "sent"
        except TeleserviceUnavailable as exc:
            with transaction(records.db) as conn:
                outbox.mark_failed(
                    conn, message.id, str(exc) or "unavailable", clock() + _retry_delay(message.attempts)
                )
            report.deferred += 1
            report.notes.append(f"{MAIL_STREAM}: {exc}")
            break
        except TeleserviceRefused as refusal:
            response = {"refused": refusal.code, "message": refusal.message}
            report.refused += 1
            report.notes.append(refusal.message)
            log.info("mssante: message %s refused (%s)", message_id, refusal.code)
            with transaction(records.db) as conn:
                if facts is not None:
                    records.mark_secure_message(message_id, "refused", reason=refusal.message)
                outbox.mark_delivered(conn, message.id, response, now=clock())
            continue
        with transaction(records.db) as conn:
            if facts is not None and status == "sent" and facts["status"] != "sent":
                records.mark_secure_message(message_id, "sent")
            outbox.mark_delivered(conn, message.id, response, now=clock())
        report.delivered += 1
    return report


def _deliver_dmp(
    records: CounterRecords,
    teleservices: Teleservices,
    key: str,
    payload: dict[str, Any],
    clock: Callable[[], float],
) -> dict[str, Any]:
    """An ITI-41 submission of the document, built now from the store (:mod:`appliance.dmp`)."""
    document_id = int(payload["document"])
    operator = payload.get("operator")
    facts = records.dmp_facts(document_id, None if operator is None else int(operator))
    doc = document_from(facts)
    request = submission(doc, submitted_at=datetime.fromtimestamp(clock(), tz=UTC))
    answer = teleservices.deliver("dmp", key, request.wire())
    records.mark_dmp(document_id, "sent")
    return {**answer, "document_unique_id": request.document_unique_id}


def _deliver_dp(
    records: CounterRecords, teleservices: Teleservices, key: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """A dispensation fed to the Dossier Pharmaceutique, its body built now from the store (the outbox
    holds ids only). The service's key names this box as well: another box's ``dp:1`` is another one."""
    dispensation_id = int(payload["dispensation"])
    wire = records.dp_wire(dispensation_id)
    if wire is None:
        raise TeleserviceRefused("dp-no-card", "Dossier pharmaceutique : délivrance sans carte Vitale, non transmise")
    answer = teleservices.deliver("dp", f"{key}:{records.box_id()}", wire)
    records.audit(None, "dp.fed", str(dispensation_id), {"lines": len(wire["lines"])})
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
    subject = payload.get("prescription_id", payload.get("batch", payload.get("dispensation", "")))
    records.audit(None, f"{stream}.refused", str(subject), {})


# ---------------------------------------------------------------------------------- back office


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What the receiver acknowledged of a run of messages handed to :meth:`Publisher.publish`."""

    acknowledged: int
    """How many messages, counted from the first, were acknowledged (MQTT: by the back office, end to end)."""
    error: str | None = None
    """Why the next one was not (no patient data: a transport or broker reason)."""
    resend: bool = False
    """Send the rest again at once, without back-off: the receiver is up but an earlier message was
    lost on the way (it holds back what came after it)."""


class Publisher(Protocol):
    """Carries back-office messages (the MQTT link in :mod:`sync.mqtt`; fakes in tests)."""

    def publish(self, stream: str, messages: Sequence[outbox.OutboxMessage]) -> PublishOutcome:
        """Send ``messages`` (consecutive, in order) and wait, bounded, for their acknowledgements.

        Must not raise for transport trouble: report it in :attr:`PublishOutcome.error`.
        """
        ...


_RUN_COLUMNS = "id, stream, key, payload, created_at, attempts, next_attempt_at, last_error, delivered_at"


def pending_run(db: sqlite_utils.Database, stream: str, limit: int, *, now: float) -> list[outbox.OutboxMessage]:
    """The next ``limit`` undelivered messages of ``stream`` in order, or none if its head is not due.

    :func:`appliance.store.outbox.pending` hands out one head per stream, which is right for
    teleservice calls (each answer may change what comes next) but would cost one round trip and one
    fsync per event; back-office messages are independent, so a whole run can be in flight.
    """
    cursor = db.conn.execute(
        f"SELECT {_RUN_COLUMNS} FROM outbox WHERE stream = ? AND delivered_at IS NULL ORDER BY id LIMIT ?",  # noqa: S608
        (stream, limit),
    )
    found = [
        outbox.OutboxMessage(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            json.loads(r[3]),
            float(r[4]),
            int(r[5]),
            float(r[6]),
            None if r[7] is None else str(r[7]),
            None if r[8] is None else float(r[8]),
        )
        for r in cursor.fetchall()
    ]
    if found and found[0].next_attempt_at > now:
        return []
    return found


def deliver_published(
    db: sqlite_utils.Database,
    publisher: Publisher,
    *,
    clock: Callable[[], float],
    streams: Sequence[str] = BACKOFFICE_STREAMS,
    window: int = 200,
    max_windows: int = 1000,
) -> DeliveryReport:
    """Drain the back-office ``streams`` through ``publisher``, ``window`` messages at a time.

    Marks delivered only what was acknowledged, as a prefix of the run, in one transaction per
    window (one fsync for up to ``window`` messages, not one each); the first unacknowledged message
    gets its back-off and its stream stops there for this call. A stream that failed is not tried
    again in the same call; the others carry on. The first try after a failure sends the head alone;
    windows resume once it is acknowledged.
    """
    report = DeliveryReport()
    blocked: set[str] = set()
    for _ in range(max_windows):
        progressed = False
        for stream in streams:
            if stream in blocked:
                continue
            run = pending_run(db, stream, window, now=clock())
            if not run:
                continue
            if run[0].attempts > 0:
                # after a failure, one message probes the receiver: a back office that is down gets one
                # copy per back-off from each box, not a whole window each time (the broker queues them)
                run = run[:1]
            outcome = publisher.publish(stream, run)
            done = max(0, min(outcome.acknowledged, len(run)))
            with transaction(db) as conn:
                when = clock()
                for message in run[:done]:
                    outbox.mark_delivered(conn, message.id, {"ack": "puback"}, now=when)
                if done < len(run) and not outcome.resend:  # a resend is no failure: due again at once
                    head = run[done]
                    outbox.mark_failed(
                        conn, head.id, outcome.error or "not acknowledged", when + _publish_retry_delay(head.attempts)
                    )
            report.delivered += done
            if done < len(run):
                report.deferred += 1
                report.notes.append(f"{stream}: {outcome.error or 'not acknowledged'}")
                blocked.add(stream)
            progressed = progressed or done > 0
        if not progressed:
            break
    return report


def retry_now(db: sqlite_utils.Database, streams: Collection[str], *, now: float) -> int:
    """Make the waiting messages of ``streams`` due at once; returns how many were waiting.

    Called when the link comes back (MQTT reconnected) or on a "resynchronise" command: the back-off
    exists to spare a receiver that is down, not to wait once it is known to be up again.
    """
    if not streams:
        return 0
    marks = ",".join("?" for _ in streams)
    with transaction(db) as conn:
        cursor = conn.execute(
            f"UPDATE outbox SET next_attempt_at = ? WHERE delivered_at IS NULL AND next_attempt_at > ?"  # noqa: S608
            f" AND stream IN ({marks})",
            (now, now, *streams),
        )
        return int(cursor.rowcount)
