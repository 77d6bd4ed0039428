"""The counter's records: what the workflow remembers between sessions, in one SQLite file.

Every write is one durable transaction that also carries its audit row and, when something must
leave the box, its outbox message (DESIGN §5). Identity fields are sealed; patients are found
through blind indexes. Nothing here logs patient data.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import sqlite_utils

from appliance.domain import (
    AmcRights,
    AmoRights,
    Beneficiary,
    DocumentCheck,
    IdentityDocument,
    IdentityStatus,
    Ins,
    Prescription,
    PrescriptionLine,
    Traits,
)
from appliance.store import audit as journal
from appliance.store import numbering, operators, outbox
from appliance.store import recent_claims as recent
from appliance.store import resubmission as resubmit
from appliance.store.database import StoreError, get_setting, rows, set_setting, transaction
from appliance.store.sealing import FieldCipher

if TYPE_CHECKING:
    from appliance.billing import Bill
    from appliance.workflow.session import DispensedBox

_STATUS_RANK = {
    IdentityStatus.PROV: 0,
    IdentityStatus.VALI: 1,
    IdentityStatus.RECUP: 1,
    IdentityStatus.QUAL: 2,
}
BOX_ID_KEY = "box.id"
"""Setting holding this database's random box id (idempotency keys that must differ between pharmacies)."""
_SEALED = ("nir", "matricule", "birth_name", "first_names", "sex", "birth_date", "birth_place")


@dataclass(frozen=True, slots=True)
class PatientRecord:
    id: int
    status: IdentityStatus
    traits_on_file: Traits | None
    """The traits stored before this visit (None for a new patient), to show differences."""
    new: bool
    doubtful: bool = False
    """A document contradicted the INS traits at an earlier visit: never qualified while it stands."""


@dataclass(frozen=True, slots=True)
class ClaimDraft:
    """Everything a validated dispensation turns into, written in one transaction."""

    patient_id: int
    operator_id: int
    prescription_id: str
    prescription: Prescription | None
    entered_lines: tuple[PrescriptionLine, ...]
    renewal: int
    boxes: tuple[DispensedBox, ...]
    bill: Bill
    amo: AmoRights | None
    amc: AmcRights | None
    annotation: str
    discrepancies: tuple[dict[str, Any], ...]
    execution_sent: bool
    execution_payload: dict[str, Any] | None
    fetch_pending: bool
    day: date
    dp_feed: bool = False
    """The patient agreed to their Dossier Pharmaceutique: the dispensation is fed to it."""
    patient_mailbox: bool = False
    """The INS is qualified: the receipt goes to the patient's Mon Espace Santé mailbox (MSSanté)."""


@dataclass(frozen=True, slots=True)
class ClaimRecord:
    id: int
    number: int
    batch_number: int


class CounterRecords:
    """The workflow's access to the database: small, named operations, each one transaction."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        cipher: FieldCipher,
        clock: Callable[[], float],
        *,
        backoffice_events: bool = False,
    ) -> None:
        self.db = db
        self.cipher = cipher
        self.clock = clock
        journal.use_key(db, cipher.journal_key())  # every audit row written through this db is keyed
        self.backoffice_events = backoffice_events
        """Queue an ``events`` outbox message with each claim, batch and acknowledgement for the
        pharmacy's back office (``comptoir sync`` publishes them over MQTT). Off unless the box is
        enrolled in a back office: nobody would drain the stream and it would grow forever."""

    def _event(self, conn: Any, key: str, payload: Mapping[str, Any]) -> None:
        """A back-office event in the caller's transaction: ids, numbers and amounts only (never an
        identity: the back office matches claims by number with its own records). The payload is a
        function of the change alone (no clock), so replaying the change replays the same message,
        which the outbox deduplicates by key."""
        if self.backoffice_events:
            outbox.enqueue(conn, stream="events", key=key, payload=payload, now=self.clock())

    def unit_of_work(self) -> AbstractContextManager[Any]:
        """One transaction around a whole counter event: the writes of the operations called inside it
        commit together, or not at all (each operation's own transaction becomes a savepoint)."""
        return transaction(self.db)

    def execution_key(self, prescription_id: str, renewal: int) -> str:
        """The idempotency key of execution data step 1 for this dispensation, the same for the live
        call and the outbox's copy. It names this box (a random id made once per database), so that
        another pharmacy dispensing the same prescription is told « déjà délivrée » by the service
        instead of colliding with our key."""
        return f"exec1:{self.box_id()}:{prescription_id}:{renewal}"

    def box_id(self) -> str:
        """This database's random box id (made once, kept in the settings)."""
        box = get_setting(self.db, BOX_ID_KEY)
        if box is None:
            with transaction(self.db) as conn:
                found = conn.execute("SELECT value FROM pharmacy WHERE key = ?", (BOX_ID_KEY,)).fetchone()
                box = str(found[0]) if found else uuid.uuid4().hex
                if found is None:
                    set_setting(conn, BOX_ID_KEY, box)
        return box

    # ------------------------------------------------------------------ audit and operators
    def audit(
        self,
        operator_id: int | None,
        action: str,
        subject: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> None:
        with transaction(self.db) as conn:
            journal.append(
                conn,
                operator_id=operator_id,
                action=action,
                subject=subject,
                details=details,
                at=self.clock(),
            )

    def authenticate(self, operator: int | str, pin: str) -> operators.Operator:
        """Check an operator's personal PIN (by id or name); raises the operators module's errors."""
        operator_id = operator if isinstance(operator, int) else self._operator_id(operator)
        return operators.authenticate(self.db, operator_id, pin, now=self.clock())

    def operator_by_rpps(self, rpps: str) -> operators.Operator | None:
        """The active operator a CPS belongs to (its PIN was already checked by the card)."""
        return operators.operator_by_rpps(self.db, rpps)

    def operators(self) -> list[operators.Operator]:
        """The active operators, by name."""
        return operators.list_operators(self.db)

    def clear_pin_lock(self, operator_id: int, *, by: int, reason: str) -> bool:
        """Lift a PIN lock-out once the person proved who they are otherwise (their CPS), so a patient
        typing wrong PINs at the screen cannot keep the pharmacist out."""
        return operators.clear_lock(self.db, operator_id, by=by, reason=reason, now=self.clock())

    def _operator_id(self, name: str) -> int:
        found = rows(self.db.conn, "SELECT id FROM operators WHERE name = ? AND active = 1", (name,))
        if not found:
            raise operators.UnknownOperator(name)
        return int(found[0]["id"])

    # ------------------------------------------------------------------ patients and identity
    def _seal(self, name: str, value: str | None) -> bytes | None:
        return None if value is None else self.cipher.seal(value, f"patients.{name}")

    def _open(self, name: str, blob: bytes | None) -> str | None:
        return None if blob is None else self.cipher.open(blob, f"patients.{name}")

    def _indexes(self, beneficiary: Beneficiary | None, ins: Ins | None, traits: Traits) -> dict[str, str | None]:
        card = None
        if beneficiary is not None:
            card = self.cipher.index(
                f"{beneficiary.nir}|{beneficiary.rank}|{beneficiary.traits.birth_date.isoformat()}",
                "patients.card",
            )
        return {
            "card_index": card,
            "ins_index": self.cipher.index(ins.matricule, "patients.ins") if ins else None,
            "traits_index": self.cipher.index(
                f"{traits.birth_name}|{traits.first_names}|{traits.sex}|{traits.birth_date.isoformat()}",
                "patients.traits",
            ),
        }

    def _find(self, conn: Any, idx: dict[str, str | None]) -> dict[str, Any] | None:
        for column in ("ins_index", "card_index", "traits_index"):
            value = idx[column]
            if value is None:
                continue
            found = rows(conn, f"SELECT * FROM patients WHERE {column} = ? ORDER BY id LIMIT 1", (value,))  # noqa: S608
            if found:
                return found[0]
        return None

    def _traits_of(self, row: Mapping[str, Any]) -> Traits:
        birth = self._open("birth_date", row["birth_date"])
        return Traits(
            birth_name=self._open("birth_name", row["birth_name"]) or "",
            first_names=self._open("first_names", row["first_names"]) or "",
            sex=self._open("sex", row["sex"]) or "",
            birth_date=date.fromisoformat(birth or "1900-01-01"),
            birth_place=self._open("birth_place", row["birth_place"]),
        )

    def remember_patient(
        self,
        *,
        beneficiary: Beneficiary | None,
        ins: Ins | None,
        traits: Traits,
        status: IdentityStatus,
        reason: str,
        operator_id: int | None,
    ) -> PatientRecord:
        """Find or create the patient; the identity status never goes down (a QUAL identity stays QUAL)."""
        now = self.clock()
        idx = self._indexes(beneficiary, ins, traits)
        sealed = {
            "nir": self._seal("nir", beneficiary.nir if beneficiary else None),
            "matricule": self._seal("matricule", ins.matricule if ins else None),
            "birth_name": self._seal("birth_name", traits.birth_name),
            "first_names": self._seal("first_names", traits.first_names),
            "sex": self._seal("sex", traits.sex),
            "birth_date": self._seal("birth_date", traits.birth_date.isoformat()),
            "birth_place": self._seal("birth_place", traits.birth_place),
        }
        with transaction(self.db) as conn:
            existing = self._find(conn, idx)
            if existing is None:
                cursor = conn.execute(
                    "INSERT INTO patients(card_index, ins_index, traits_index, nir, rank, matricule, oid, birth_name,"
                    " first_names, sex, birth_date, birth_place, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        idx["card_index"],
                        idx["ins_index"],
                        idx["traits_index"],
                        sealed["nir"],
                        beneficiary.rank if beneficiary else None,
                        sealed["matricule"],
                        ins.oid if ins else None,
                        sealed["birth_name"],
                        sealed["first_names"],
                        sealed["sex"],
                        sealed["birth_date"],
                        sealed["birth_place"],
                        status.value,
                        now,
                        now,
                    ),
                )
                patient_id = int(cursor.lastrowid or 0)
                self._history(conn, patient_id, status, reason, operator_id, now)
                journal.append(
                    conn,
                    operator_id=operator_id,
                    action="patient.created",
                    subject=str(patient_id),
                    details={"status": status.value, "reason": reason},
                    at=now,
                )
                return PatientRecord(patient_id, status, None, True)
            patient_id = int(existing["id"])
            old_status = IdentityStatus(existing["status"])
            on_file = self._traits_of(existing)
            doubtful = bool(existing["doubtful"])
            if doubtful and status is IdentityStatus.QUAL:  # even the apCV does not lift a contradiction
                status = IdentityStatus.RECUP
            new_status = status if _STATUS_RANK[status] > _STATUS_RANK[old_status] else old_status
            updates: dict[str, Any] = {"updated_at": now, "status": new_status.value}
            for column in ("card_index", "ins_index"):
                if existing[column] is None and idx[column] is not None:
                    updates[column] = idx[column]
            if ins is not None and existing["matricule"] is None:
                updates.update(matricule=sealed["matricule"], oid=ins.oid)
            if new_status is not old_status and ins is not None:  # the INSi traits become the reference
                updates.update(
                    {k: sealed[k] for k in ("birth_name", "first_names", "sex", "birth_date", "birth_place")}
                )
                updates["traits_index"] = idx["traits_index"]
            assignments = ", ".join(f"{k} = ?" for k in updates)
            conn.execute(f"UPDATE patients SET {assignments} WHERE id = ?", (*updates.values(), patient_id))  # noqa: S608
            if new_status is not old_status:
                self._history(conn, patient_id, new_status, reason, operator_id, now)
            journal.append(
                conn,
                operator_id=operator_id,
                action="patient.visit",
                subject=str(patient_id),
                details={"status": new_status.value, "reason": reason},
                at=now,
            )
            return PatientRecord(patient_id, new_status, on_file, False, doubtful)

    @staticmethod
    def _history(
        conn: Any, patient_id: int, status: IdentityStatus, reason: str, operator_id: int | None, at: float
    ) -> None:
        conn.execute(
            "INSERT INTO identity_history(patient_id, status, reason, operator_id, at) VALUES (?, ?, ?, ?, ?)",
            (patient_id, status.value, reason, operator_id, at),
        )

    def record_identity_check(
        self,
        patient_id: int,
        check: DocumentCheck,
        operator_id: int,
        *,
        document: IdentityDocument | None = None,
        guardian_document: IdentityDocument | None = None,
    ) -> tuple[IdentityStatus, bool]:
        """What came of asking for the identity document, with who looked: the new status and doubt.

        ``checked`` qualifies an identity INSi returned (RECUP -> QUAL; VALI without an INS) and lifts
        an earlier doubt; ``absent`` changes nothing (the prompt comes back at the next visits);
        ``refused`` stops the prompt; ``contradicts`` flags the identity doubtful and takes the
        qualification back. One transaction with its history and audit rows (no identity in them).
        """
        now = self.clock()
        with transaction(self.db) as conn:
            row = conn.execute(
                "SELECT status, matricule, doubtful FROM patients WHERE id = ?", (patient_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no patient {patient_id}")
            status, doubtful = IdentityStatus(row[0]), bool(row[2])
            conn.execute(
                "INSERT INTO identity_checks(patient_id, outcome, document, guardian_document, operator_id, at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    check.value,
                    document.value if document else None,
                    guardian_document.value if guardian_document else None,
                    operator_id,
                    now,
                ),
            )
            new_status = status
            if check is DocumentCheck.CHECKED:
                new_status = IdentityStatus.QUAL if row[1] is not None else IdentityStatus.VALI
                doubtful = False
            elif check is DocumentCheck.CONTRADICTS:
                new_status = IdentityStatus.RECUP if row[1] is not None else IdentityStatus.PROV
                doubtful = True
            prompts = "qualification_prompts" if check is DocumentCheck.ABSENT else "0"
            conn.execute(
                f"UPDATE patients SET status = ?, doubtful = ?, qualification_prompts = {prompts},"  # noqa: S608
                " updated_at = ? WHERE id = ?",
                (new_status.value, int(doubtful), now, patient_id),
            )
            if check is not DocumentCheck.ABSENT:
                self._history(conn, patient_id, new_status, f"document-{check.value}", operator_id, now)
            journal.append(
                conn,
                operator_id=operator_id,
                action="identity.document",
                subject=str(patient_id),
                details={
                    "outcome": check.value,
                    "document": document.value if document else None,
                    "guardian_document": guardian_document.value if guardian_document else None,
                    "status": new_status.value,
                    "doubtful": doubtful,
                },
                at=now,
            )
        return new_status, doubtful

    def identity_checks(self, patient_id: int) -> list[dict[str, Any]]:
        """The document checks of a patient, oldest first (outcome, document, guardian's, who)."""
        return rows(
            self.db.conn,
            "SELECT outcome, document, guardian_document, operator_id FROM identity_checks WHERE patient_id = ?"
            " ORDER BY id",
            (patient_id,),
        )

    def identity_history(self, patient_id: int) -> list[dict[str, Any]]:
        return rows(
            self.db.conn,
            "SELECT status, reason, operator_id FROM identity_history WHERE patient_id = ? ORDER BY id",
            (patient_id,),
        )

    def start_qualification_prompts(self, patient_id: int, visits: int) -> int:
        """A newly retrieved identity: prompt now, and again at the next ``visits`` visits."""
        with transaction(self.db) as conn:
            conn.execute("UPDATE patients SET qualification_prompts = ? WHERE id = ?", (visits, patient_id))
        return 1

    def use_qualification_prompt(self, patient_id: int) -> int:
        """1 when this visit still prompts for the identity document (and one prompt is used), else 0."""
        with transaction(self.db) as conn:
            left = conn.execute("SELECT qualification_prompts FROM patients WHERE id = ?", (patient_id,)).fetchone()
            if left is None or int(left[0]) <= 0:
                return 0
            conn.execute(
                "UPDATE patients SET qualification_prompts = qualification_prompts - 1 WHERE id = ?",
                (patient_id,),
            )
            return 1

    def patient_status(self, patient_id: int) -> IdentityStatus:
        row = self.db.conn.execute("SELECT status FROM patients WHERE id = ?", (patient_id,)).fetchone()
        return IdentityStatus(row[0])

    def apply_ins(self, patient_id: int, ins: Ins, reason: str, *, qualification_visits: int) -> None:
        """An INSi answer that arrived late (degraded mode): the identity becomes RECUP, and the
        qualification prompt will come at the patient's next visits."""
        now = self.clock()
        with transaction(self.db) as conn:
            conn.execute(
                "UPDATE patients SET ins_index = COALESCE(ins_index, ?), matricule = COALESCE(matricule, ?),"
                " oid = COALESCE(oid, ?), status = CASE WHEN status = 'PROV' THEN 'RECUP' ELSE status END,"
                " qualification_prompts = CASE WHEN status = 'PROV' THEN ? ELSE qualification_prompts END,"
                " updated_at = ? WHERE id = ?",
                (
                    self.cipher.index(ins.matricule, "patients.ins"),
                    self._seal("matricule", ins.matricule),
                    ins.oid,
                    qualification_visits,
                    now,
                    patient_id,
                ),
            )
            self._history(conn, patient_id, IdentityStatus.RECUP, reason, None, now)
            journal.append(
                conn,
                operator_id=None,
                action="identity.completed",
                subject=str(patient_id),
                details={"reason": reason},
                at=now,
            )

    # ------------------------------------------------------------------ rights
    def save_rights(self, patient_id: int, *, amo: AmoRights | None, amc: AmcRights | None) -> None:
        now = self.clock()
        with transaction(self.db) as conn:
            if amo is not None:
                conn.execute(
                    "INSERT INTO amo_rights(patient_id, regime, fund, valid_from, valid_to, ald, c2s, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient_id,
                        amo.regime,
                        amo.fund,
                        amo.valid_from.isoformat(),
                        amo.valid_to.isoformat(),
                        int(amo.ald),
                        int(amo.c2s),
                        now,
                    ),
                )
            if amc is not None:
                conn.execute(
                    "INSERT INTO amc_rights(patient_id, amc_number, member_number, valid_from, valid_to, coverage_pct,"
                    " accreditation, conventions, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient_id,
                        amc.amc_number,
                        self.cipher.seal(amc.member_number, "amc_rights.member_number"),
                        amc.valid_from.isoformat(),
                        amc.valid_to.isoformat(),
                        amc.coverage_pct,
                        amc.accreditation,
                        ",".join(amc.conventions),
                        now,
                    ),
                )

    def stored_amc(self, patient_id: int) -> AmcRights | None:
        found = rows(
            self.db.conn,
            "SELECT * FROM amc_rights WHERE patient_id = ? ORDER BY id DESC LIMIT 1",
            (patient_id,),
        )
        if not found:
            return None
        row = found[0]
        return AmcRights(
            amc_number=row["amc_number"],
            member_number=self.cipher.open(row["member_number"], "amc_rights.member_number"),
            valid_from=date.fromisoformat(row["valid_from"]),
            valid_to=date.fromisoformat(row["valid_to"]),
            coverage_pct=int(row["coverage_pct"]),
            accreditation=row["accreditation"],
            conventions=tuple(c for c in row["conventions"].split(",") if c),
        )

    # ------------------------------------------------------------------ prescriptions and boxes
    def dispensed_renewals(self, prescription_id: str) -> set[int]:
        """The renewal numbers of a prescription already dispensed at this counter (0 = the first time)."""
        found = self.db.conn.execute(
            "SELECT renewal FROM dispensations WHERE prescription_id = ?", (prescription_id,)
        ).fetchall()
        return {int(row[0]) for row in found}

    def serial_dispensed(self, gtin: str, serial: str) -> bool:
        return (
            self.db.conn.execute(
                "SELECT 1 FROM dispensation_lines WHERE gtin = ? AND serial = ?", (gtin, serial)
            ).fetchone()
            is not None
        )

    # ------------------------------------------------------------------ the claim
    def record_claim(self, draft: ClaimDraft) -> ClaimRecord:
        """Dispensation, claim (gapless number, open batch), execution data and audit: all or nothing."""
        now = self.clock()
        bill = draft.bill
        with transaction(self.db) as conn:
            if draft.prescription_id:
                p = draft.prescription
                conn.execute(
                    "INSERT OR IGNORE INTO prescriptions(prescription_id, patient_id, prescriber, prescribed_on,"
                    " renewals, status, at, prescriber_mailbox) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        draft.prescription_id,
                        draft.patient_id,
                        p.prescriber if p else "",
                        p.prescribed_on.isoformat() if p else None,
                        p.renewals if p else 0,
                        "dispensed-degraded" if draft.fetch_pending else "dispensed",
                        now,
                        p.prescriber_mailbox if p else None,
                    ),
                )
                lines = p.lines if p else draft.entered_lines
                for line in lines:
                    conn.execute(
                        "INSERT OR IGNORE INTO prescription_lines(prescription_id, line_no, label, quantity, cip13,"
                        " ald, entered) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            draft.prescription_id,
                            line.line_no,
                            line.label,
                            line.quantity,
                            line.cip13,
                            int(line.ald),
                            int(p is None),
                        ),
                    )
            cursor = conn.execute(
                "INSERT INTO dispensations(patient_id, prescription_id, operator_id, renewal, annotation,"
                " discrepancies, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    draft.patient_id,
                    draft.prescription_id or None,
                    draft.operator_id,
                    draft.renewal,
                    draft.annotation,
                    json.dumps(list(draft.discrepancies)),
                    now,
                ),
            )
            dispensation_id = int(cursor.lastrowid or 0)
            for box, billed in zip(draft.boxes, bill.lines, strict=True):
                conn.execute(
                    "INSERT INTO dispensation_lines(dispensation_id, line_no, cip13, gtin, serial, lot, expiry,"
                    " substitution, total_cents, amo_cents, amc_cents, patient_cents)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        dispensation_id,
                        box.line_no,
                        box.cip13,
                        box.gtin,
                        box.serial,
                        box.lot,
                        box.expiry,
                        int(box.substitution),
                        billed.total_cents,
                        billed.amo_cents,
                        billed.amc_cents,
                        billed.patient_cents,
                    ),
                )
            batch_id, batch_number = self._open_batch(conn, now)
            number = numbering.next_number(conn, "claim")
            cursor = conn.execute(
                "INSERT INTO claims(number, batch_id, dispensation_id, patient_id, total_cents, amo_cents, amc_cents,"
                " patient_cents, to_pay_cents, amo_tiers_payant, amc_tiers_payant, amc_accreditation, created_at,"
                " amo_regime, amo_fund) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    number,
                    batch_id,
                    dispensation_id,
                    draft.patient_id,
                    bill.total_cents,
                    bill.amo_cents,
                    bill.amc_cents,
                    bill.patient_share_cents,
                    bill.to_pay_cents,
                    int(bill.amo_tiers_payant),
                    int(bill.amc_tiers_payant),
                    draft.amc.accreditation if draft.amc else None,
                    now,
                    draft.amo.regime if draft.amo else None,
                    draft.amo.fund if draft.amo else None,
                ),
            )
            claim_id = int(cursor.lastrowid or 0)
            if draft.prescription_id and draft.execution_payload is not None:
                step1 = "sent" if draft.execution_sent else "queued"
                conn.execute(
                    "INSERT INTO execution_data(prescription_id, renewal, claim_id, step1) VALUES (?, ?, ?, ?)",
                    (draft.prescription_id, draft.renewal, claim_id, step1),
                )
                if not draft.execution_sent:
                    outbox.enqueue(
                        conn,
                        now=self.clock(),
                        stream="execution",
                        key=self.execution_key(draft.prescription_id, draft.renewal),
                        payload=draft.execution_payload,
                    )
            if draft.dp_feed:
                outbox.enqueue(
                    conn,
                    now=now,
                    stream="dp",
                    key=f"dp:{dispensation_id}",
                    payload={"dispensation": dispensation_id, "patient_id": draft.patient_id},
                )
            if draft.patient_mailbox:
                self._secure_message(conn, "receipt", draft.patient_id, now, claim_id=claim_id)
            if draft.fetch_pending and draft.prescription_id:
                outbox.enqueue(
                    conn,
                    now=self.clock(),
                    stream="call",
                    key=f"fetch:{draft.prescription_id}",
                    payload={
                        "call": "fetch_prescription",
                        "patient_id": draft.patient_id,
                        "prescription_id": draft.prescription_id,
                    },
                )
            journal.append(
                conn,
                operator_id=draft.operator_id,
                action="claim.created",
                subject=str(number),
                details={
                    "batch": batch_number,
                    "total": bill.total_cents,
                    "to_pay": bill.to_pay_cents,
                    "discrepancies": len(draft.discrepancies),
                },
                at=now,
            )
            self._event(
                conn,
                f"event:claim.created:{number}",
                {
                    "type": "claim.created",
                    "claim": number,
                    "batch": batch_number,
                    "at": now,
                    "total_cents": bill.total_cents,
                    "amo_cents": bill.amo_cents,
                    "amc_cents": bill.amc_cents,
                    "to_pay_cents": bill.to_pay_cents,
                    "discrepancies": len(draft.discrepancies),
                },
            )
        return ClaimRecord(claim_id, number, batch_number)

    # ------------------------------------------------------------------ the last claims (pharmacist's panel)
    def recent_claims(self, operator_id: int, limit: int = recent.DEFAULT_LIMIT) -> list[recent.RecentClaim]:
        """The newest claims with their patients' names, for the operator ``operator_id`` who asked.

        The read and its ``claims.listed`` audit row share one transaction: names are opened from the
        sealed fields only if the journal says who looked at them (health data, DESIGN §5). The row
        names claims and patients by number and id, never by name.
        """
        with transaction(self.db) as conn:
            found = recent.latest(conn, self.cipher, limit)
            journal.append(
                conn,
                operator_id=operator_id,
                action="claims.listed",
                subject="",
                details={
                    "claims": [claim.number for claim in found],
                    "patients": sorted({claim.patient_id for claim in found}),
                },
                at=self.clock(),
            )
        return found

    def claim_shown(self, number: int, operator_id: int | None) -> bool:
        """The patient's screen showed claim ``number``: remember it (see :mod:`appliance.store.recent_claims`)."""
        with transaction(self.db) as conn:
            moved = recent.mark_shown(conn, number)
            if moved:
                journal.append(
                    conn, operator_id=operator_id, action="claim.shown", subject=str(number), at=self.clock()
                )
        return moved

    def interrupted_claim(self) -> recent.InterruptedClaim | None:
        """The claim a stop between its COMMIT and its screen left unseen (None most of the time)."""
        return recent.interrupted(self.db.conn, self.clock())

    @staticmethod
    def _open_batch(conn: Any, now: float) -> tuple[int, int]:
        found = conn.execute("SELECT id, number FROM batches WHERE status = 'open'").fetchone()
        if found is not None:
            return int(found[0]), int(found[1])
        number = numbering.next_number(conn, "batch")
        cursor = conn.execute("INSERT INTO batches(number, status, opened_at) VALUES (?, 'open', ?)", (number, now))
        return int(cursor.lastrowid or 0), number

    def close_batch(self, operator_id: int | None) -> int | None:
        """Close the open batch and queue it for the claims service; None when there is nothing to send."""
        now = self.clock()
        with transaction(self.db) as conn:
            found = conn.execute("SELECT id, number FROM batches WHERE status = 'open'").fetchone()
            if found is None:
                return None
            batch_id, number = int(found[0]), int(found[1])
            claims = rows(conn, "SELECT number FROM claims WHERE batch_id = ?", (batch_id,))
            conn.execute("UPDATE batches SET status = 'closed', closed_at = ? WHERE id = ?", (now, batch_id))
            # The claims carry NIRs: the message names the batch and the wire body is built when it is
            # sent, from the sealed records, so no identity sits in clear in the outbox.
            outbox.enqueue(conn, stream="batch", key=f"batch:{number}", payload={"batch": number}, now=now)
            journal.append(
                conn,
                operator_id=operator_id,
                action="batch.closed",
                subject=str(number),
                details={"claims": len(claims)},
                at=now,
            )
            self._event(
                conn,
                f"event:batch.closed:{number}",
                {"type": "batch.closed", "batch": number, "at": now, "claims": len(claims)},
            )
            if self.backoffice_events:  # anchor the journal's head (this close included) off the box
                journal.enqueue_anchor(conn, now=now)
        return number

    def batch_wire(self, batch_number: int) -> dict[str, Any]:
        """The batch as the claims service receives it (FSE with the beneficiary's NIR and amounts)."""
        claims = rows(
            self.db.conn,
            "SELECT c.number, c.total_cents, c.amo_cents, c.amc_cents, c.patient_cents, c.patient_id,"
            " c.amo_regime, c.amo_fund,"
            " (SELECT amc_number FROM amc_rights a WHERE a.patient_id = c.patient_id ORDER BY a.id DESC LIMIT 1)"
            " AS amc_number FROM claims c JOIN batches b ON b.id = c.batch_id WHERE b.number = ? ORDER BY c.number",
            (batch_number,),
        )
        wire = []
        for claim in claims:
            beneficiary = self.beneficiary_of(int(claim["patient_id"]))
            ins = self.ins_of(int(claim["patient_id"]))
            nir = beneficiary.nir if beneficiary else (ins.matricule if ins else "")
            wire.append(
                {
                    "claim_number": str(claim["number"]),
                    "nir": nir,
                    "total_cents": claim["total_cents"],
                    "amo_cents": claim["amo_cents"],
                    "amc_cents": claim["amc_cents"],
                    "patient_cents": claim["patient_cents"],
                    "amc_number": claim["amc_number"] if claim["amc_cents"] else None,
                    "amo_regime": claim["amo_regime"],
                    "amo_fund": claim["amo_fund"],
                }
            )
        return {"batch_number": str(batch_number), "claims": wire}

    def apply_acknowledgement(
        self, batch_number: int, positive: bool, reason: str, rejected: Mapping[int, tuple[str, str]]
    ) -> None:
        """The ARL of a batch: accepted claims get their execution data completed (step 2)."""
        now = self.clock()
        with transaction(self.db) as conn:
            found = conn.execute("SELECT id FROM batches WHERE number = ?", (batch_number,)).fetchone()
            if found is None:
                return
            batch_id = int(found[0])
            refused: list[dict[str, Any]] = []
            conn.execute(
                "UPDATE batches SET status = ? WHERE id = ?",
                ("accepted" if positive else "rejected", batch_id),
            )
            conn.execute(
                "INSERT INTO acknowledgements(batch_id, positive, reason, at) VALUES (?, ?, ?, ?)",
                (batch_id, int(positive), reason, now),
            )
            for claim in rows(conn, "SELECT id, number FROM claims WHERE batch_id = ?", (batch_id,)):
                if positive and claim["number"] not in rejected:
                    conn.execute("UPDATE claims SET status = 'accepted' WHERE id = ?", (claim["id"],))
                    for ex in rows(
                        conn,
                        "SELECT prescription_id, renewal FROM execution_data WHERE claim_id = ? AND step2 IS NULL",
                        (claim["id"],),
                    ):
                        conn.execute(
                            "UPDATE execution_data SET step2 = 'queued' WHERE prescription_id = ? AND renewal = ?",
                            (ex["prescription_id"], ex["renewal"]),
                        )
                        outbox.enqueue(
                            conn,
                            now=self.clock(),
                            stream="execution",
                            key=f"exec2:{ex['prescription_id']}:{ex['renewal']}",
                            payload={
                                "prescription_id": ex["prescription_id"],
                                "step": 2,
                                "renewal": ex["renewal"],
                                "claim_number": str(claim["number"]),
                                "batch_number": str(batch_number),
                            },
                        )
                else:
                    why, action = rejected.get(
                        claim["number"], (reason, "Corriger puis refacturer dans un nouveau lot")
                    )
                    conn.execute("UPDATE claims SET status = 'rejected' WHERE id = ?", (claim["id"],))
                    refused.append({"claim": int(claim["number"]), "reason": why, "action": action})
                    conn.execute(
                        "INSERT INTO rejections(claim_id, reason, action, at) VALUES (?, ?, ?, ?)",
                        (claim["id"], why, action, now),
                    )
            journal.append(
                conn,
                operator_id=None,
                action="batch.acknowledged",
                subject=str(batch_number),
                details={"positive": positive, "rejected": len(rejected)},
                at=now,
            )
            self._event(
                conn,
                f"event:batch.acknowledged:{batch_number}",
                {
                    "type": "batch.acknowledged",
                    "batch": batch_number,
                    "positive": positive,
                    "reason": reason,
                    "rejected": sorted(refused, key=lambda r: int(r["claim"])),
                },
            )

    # ------------------------------------------------------------------ claims refused, sent again
    def rejected_claims(self, claim_numbers: Sequence[int] | None = None) -> list[resubmit.RejectedClaim]:
        """The claims an acknowledgement refused and nobody sent again yet (None: all of them), with
        their patients (whose rights to read again) and the latest reason and advised action. Raises
        :class:`~appliance.store.resubmission.ResubmissionRefused` for a number that cannot go again."""
        return resubmit.rejected(self.db.conn, claim_numbers)

    def resubmit_rejected(
        self,
        claim_numbers: Sequence[int] | None,
        operator_id: int,
        *,
        rights: Mapping[int, AmoRights] | None = None,
    ) -> resubmit.Resubmission | None:
        """Correct claims refused by an acknowledgement and put them, with their numbers, in the open
        batch (opened with the next batch number if none), status pending; None when there is none.

        ``claim_numbers`` None takes every claim currently rejected. ``rights`` are the AMO rights of
        their patients (by patient id) just read again from ADRi, as the rejection advises: they are
        saved with the patient's rights, and each claim is addressed to its patient's newest rights
        (see :mod:`appliance.store.resubmission` for what is corrected and what is not). Nothing else
        changes: no claim number is consumed, the rejection rows stay, and ``claim_resubmissions``
        keeps the trip. One transaction with its audit row (numbers and ids, never a name) and the
        back-office events. A number that is unknown, not rejected or already sent again raises a
        :class:`~appliance.store.resubmission.ResubmissionRefused` and changes nothing.
        """
        now = self.clock()
        with transaction(self.db) as conn:
            claims = resubmit.rejected(conn, claim_numbers)
            if not claims:
                return None
            patients = {c.patient_id for c in claims}
            strangers = set(rights or {}) - patients
            if strangers:
                raise ValueError(f"rights given for patients {sorted(strangers)} who have none of these claims")
            for patient_id, amo in sorted((rights or {}).items()):
                self.save_rights(patient_id, amo=amo, amc=None)
            batch_id, batch_number = self._open_batch(conn, now)
            done = resubmit.move(
                conn, claims, batch_id=batch_id, batch_number=batch_number, operator_id=operator_id, now=now
            )
            journal.append(
                conn,
                operator_id=operator_id,
                action="claims.resubmitted",
                subject=str(batch_number),
                details={
                    "claims": list(done.claims),
                    "corrected": list(done.corrected),
                    "from_batches": list(done.from_batches),
                    "rights_read_again": sorted(patients & set(rights or {})),
                },
                at=now,
            )
            for claim in claims:
                self._event(
                    conn,
                    f"event:claim.resubmitted:{claim.number}:{claim.batch_number}",
                    {
                        "type": "claim.resubmitted",
                        "claim": claim.number,
                        "batch": batch_number,
                        "from_batch": claim.batch_number,
                        "at": now,
                        "corrected": claim.number in done.corrected,
                    },
                )
        return done

    def claim_batches(self, number: int) -> list[int]:
        """The batch numbers claim ``number`` travelled in, first to current (empty if unknown)."""
        return resubmit.batches_of(self.db.conn, number)

    # ------------------------------------------------------------------ deferred calls and the DMP
    def enqueue_call(self, call: str, patient_id: int, **args: str) -> None:
        """A teleservice call that could not be made (offline): made again when the network returns.

        The payload names the patient by id only: identity stays sealed in ``patients`` and is read
        back when the call is made.
        """
        with transaction(self.db) as conn:
            key = f"{call}:{patient_id}:{json.dumps(args, sort_keys=True)}"
            outbox.enqueue(
                conn, stream="call", key=key, payload={"call": call, "patient_id": patient_id, **args}, now=self.clock()
            )

    def beneficiary_of(self, patient_id: int) -> Beneficiary | None:
        """The card beneficiary a patient was identified as (None if identified without a card)."""
        found = rows(self.db.conn, "SELECT * FROM patients WHERE id = ?", (patient_id,))
        if not found or found[0]["nir"] is None:
            return None
        nir = self._open("nir", found[0]["nir"]) or ""
        return Beneficiary(nir=nir, rank=int(found[0]["rank"] or 1), traits=self._traits_of(found[0]), holder_nir=nir)

    def traits_of_patient(self, patient_id: int) -> Traits:
        found = rows(self.db.conn, "SELECT * FROM patients WHERE id = ?", (patient_id,))
        return self._traits_of(found[0])

    def complete_prescription(self, prescription: Prescription) -> list[str]:
        """The ePrescription fetched after a degraded dispensation: store it and list what differs
        from the lines typed from paper (audited for the pharmacist to review)."""
        now = self.clock()
        pid = prescription.prescription_id
        with transaction(self.db) as conn:
            entered = {
                r["line_no"]: r
                for r in rows(conn, "SELECT * FROM prescription_lines WHERE prescription_id = ?", (pid,))
            }
            differences = []
            for line in prescription.lines:
                typed = entered.get(line.line_no)
                if typed is None or typed["cip13"] != line.cip13 or typed["quantity"] != line.quantity:
                    differences.append(f"ligne {line.line_no}")
            conn.execute(
                "UPDATE prescriptions SET prescriber = ?, prescribed_on = ?, renewals = ?, status = 'dispensed',"
                " prescriber_mailbox = ? WHERE prescription_id = ?",
                (
                    prescription.prescriber,
                    prescription.prescribed_on.isoformat(),
                    prescription.renewals,
                    prescription.prescriber_mailbox,
                    pid,
                ),
            )
            journal.append(
                conn,
                operator_id=None,
                action="prescription.fetched-late",
                subject=pid,
                details={"differences": differences},
                at=now,
            )
        return differences

    def ins_of(self, patient_id: int) -> Ins | None:
        found = rows(self.db.conn, "SELECT * FROM patients WHERE id = ?", (patient_id,))
        if not found or found[0]["matricule"] is None:
            return None
        return Ins(
            self._open("matricule", found[0]["matricule"]) or "",
            found[0]["oid"] or "",
            self._traits_of(found[0]),
        )

    # ------------------------------------------------------------------ DP consent and secure messages
    def set_dp_consent(self, patient_id: int, agreed: bool, operator_id: int) -> None:
        """The patient's answer about their Dossier Pharmaceutique, recorded with who asked."""
        now = self.clock()
        with transaction(self.db) as conn:
            conn.execute(
                "INSERT INTO dp_consents(patient_id, agreed, operator_id, at) VALUES (?, ?, ?, ?)",
                (patient_id, int(agreed), operator_id, now),
            )
            journal.append(
                conn,
                operator_id=operator_id,
                action="dp.consent",
                subject=str(patient_id),
                details={"agreed": agreed},
                at=now,
            )

    def dp_consent(self, patient_id: int) -> bool | None:
        """The patient's latest answer (None: never asked)."""
        row = self.db.conn.execute(
            "SELECT agreed FROM dp_consents WHERE patient_id = ? ORDER BY id DESC LIMIT 1", (patient_id,)
        ).fetchone()
        return None if row is None else bool(row[0])

    def audit_dp_consulted(self, patient_id: int, operator_id: int, entries: int) -> None:
        self.audit(operator_id, "dp.consulted", str(patient_id), {"entries": entries})

    def dp_wire(self, dispensation_id: int) -> dict[str, Any] | None:
        """Dispensation ``dispensation_id`` as the Dossier Pharmaceutique receives it, built when it is
        sent (the outbox names ids only): the carte Vitale beneficiary (NIR, rank, birth date opened
        from the sealed fields), the day, the pharmacy (settings ``finess``, ``name``) and the boxes
        grouped by product and lot (CIP13, quantity, lot). None when the dispensation is unknown or its
        patient was identified without a card (the DP is opened with the carte Vitale)."""
        from datetime import UTC, datetime

        found = self.db.conn.execute(
            "SELECT patient_id, at FROM dispensations WHERE id = ?", (dispensation_id,)
        ).fetchone()
        if found is None:
            return None
        beneficiary = self.beneficiary_of(int(found[0]))
        if beneficiary is None:
            return None
        lines = self.db.conn.execute(
            "SELECT cip13, lot, count(*), min(id) AS first FROM dispensation_lines WHERE dispensation_id = ?"
            " GROUP BY cip13, lot ORDER BY first",
            (dispensation_id,),
        ).fetchall()
        return {
            "nir": beneficiary.nir,
            "holder_nir": beneficiary.holder_nir or beneficiary.nir,
            "rank": beneficiary.rank,
            "birth_date": beneficiary.traits.birth_date.isoformat(),
            "dispensed_on": datetime.fromtimestamp(float(found[1]), tz=UTC).date().isoformat(),
            "pharmacy": {"finess": get_setting(self.db, "finess") or "", "name": get_setting(self.db, "name") or ""},
            "lines": [{"cip13": str(cip13), "quantity": int(n), "lot": lot} for cip13, lot, n, _ in lines],
        }

    def _secure_message(
        self,
        conn: Any,
        kind: str,
        patient_id: int,
        now: float,
        *,
        claim_id: int | None = None,
        dmp_document_id: int | None = None,
    ) -> int:
        """One MSSanté message in the caller's transaction: a row naming what to send, and its outbox
        message (delivered once; the mail is built when it is sent)."""
        cursor = conn.execute(
            "INSERT INTO secure_messages(kind, patient_id, claim_id, dmp_document_id, at) VALUES (?, ?, ?, ?, ?)",
            (kind, patient_id, claim_id, dmp_document_id, now),
        )
        message_id = int(cursor.lastrowid or 0)
        outbox.enqueue(conn, now=now, stream="mssante", key=f"mss:{message_id}", payload={"message": message_id})
        return message_id

    def enqueue_prescriber_summary(self, claim_number: int, operator_id: int) -> int:
        """The dispensing summary of claim ``claim_number`` to its prescriber (the patient agreed)."""
        now = self.clock()
        with transaction(self.db) as conn:
            row = conn.execute("SELECT id, patient_id FROM claims WHERE number = ?", (claim_number,)).fetchone()
            if row is None:
                raise StoreError(f"no claim number {claim_number}")
            message_id = self._secure_message(conn, "prescriber-summary", int(row[1]), now, claim_id=int(row[0]))
            journal.append(
                conn,
                operator_id=operator_id,
                action="mssante.prescriber-summary",
                subject=str(claim_number),
                details={"message": message_id},
                at=now,
            )
        return message_id

    def secure_message_facts(
        self, message_id: int, *, product_name: Callable[[str], str | None] | None = None
    ) -> dict[str, Any] | None:
        """What MSSanté message ``message_id`` says, read back from the store when it is sent.

        The outbox names the message's id only; here come its ``kind`` and ``status``, the time it was
        queued (``at``), the recipient (``to``): the patient's Mon Espace Santé address derived from
        their INS, opened from the sealed fields, for a qualified and undoubted identity only (else
        None), or the prescriber's MSSanté address stored with the prescription; the ``subject`` and
        the body ``lines`` (the receipt as the kiosk shows it, the DMP document, the dispensing summary
        line by line), the patient's ``traits`` and ``ins`` (None unless qualified), the DMP document's
        facts (``dmp``, :meth:`dmp_facts`) and the pharmacy's settings. ``product_name`` names a box by
        its CIP13 (the product table: the receipt names boxes as the bill did), else the prescription
        line's label, else the CIP13. None when the message is unknown.
        """
        from appliance import messaging

        found = rows(self.db.conn, "SELECT * FROM secure_messages WHERE id = ?", (message_id,))
        if not found:
            return None
        row = found[0]
        kind, patient_id = str(row["kind"]), int(row["patient_id"])
        patient = rows(self.db.conn, "SELECT * FROM patients WHERE id = ?", (patient_id,))[0]
        status = IdentityStatus(patient["status"])
        ins = self.ins_of(patient_id)
        qualified = ins is not None and status is IdentityStatus.QUAL and not patient.get("doubtful")
        pharmacy_name = get_setting(self.db, "name") or ""
        finess = get_setting(self.db, "finess")
        facts: dict[str, Any] = {
            "message": message_id,
            "kind": kind,
            "status": str(row["status"]),
            "at": float(row["at"]),
            "patient_id": patient_id,
            "traits": self._traits_of(patient),
            "ins": ins if qualified else None,
            "qualified": qualified,
            "pharmacy_name": pharmacy_name,
            "finess": finess,
            "box_id": self.box_id(),
            "claim": None,
            "dmp": None,
            "to": messaging.patient_address(ins.matricule) if qualified and ins is not None else None,
        }
        claim = None
        if row["claim_id"] is not None:
            claim = rows(self.db.conn, "SELECT * FROM claims WHERE id = ?", (int(row["claim_id"]),))[0]
            facts["claim"] = int(claim["number"])
        if kind == "dmp-document":
            dmp = self.dmp_facts(int(row["dmp_document_id"]), None) if row["dmp_document_id"] is not None else None
            facts["dmp"] = dmp
            title = messaging.dmp_title(str(dmp["kind"])) if dmp else "Document"
            facts["subject"] = f"{title} – {pharmacy_name}" if pharmacy_name else title
            facts["lines"] = messaging.dmp_lines(dmp, pharmacy_name) if dmp else []
            return facts
        if claim is None:
            facts.update(subject="", lines=[])
            return facts
        boxes = []
        for box in rows(
            self.db.conn,
            "SELECT l.line_no, l.cip13, l.substitution, l.total_cents, pl.label FROM dispensation_lines l"
            " JOIN dispensations d ON d.id = l.dispensation_id"
            " LEFT JOIN prescription_lines pl ON pl.prescription_id = d.prescription_id AND pl.line_no = l.line_no"
            " WHERE d.id = ? ORDER BY l.id",
            (int(claim["dispensation_id"]),),
        ):
            cip13 = str(box["cip13"])
            name = (product_name(cip13) if product_name else None) or box["label"] or cip13
            boxes.append({**box, "name": str(name)})
        if kind == "receipt":
            facts["subject"] = f"Votre facture n° {claim['number']}" + (f" – {pharmacy_name}" if pharmacy_name else "")
            facts["lines"] = messaging.receipt_lines(
                int(claim["number"]),
                [(b["name"], int(b["total_cents"])) for b in boxes],
                amo_cents=int(claim["amo_cents"]),
                amc_cents=int(claim["amc_cents"]),
                to_pay_cents=int(claim["to_pay_cents"]),
            )
            return facts
        dispensation = rows(self.db.conn, "SELECT * FROM dispensations WHERE id = ?", (int(claim["dispensation_id"]),))
        prescription = rows(
            self.db.conn,
            "SELECT * FROM prescriptions WHERE prescription_id = ?",
            (dispensation[0]["prescription_id"] if dispensation else None,),
        )
        rx = prescription[0] if prescription else {}
        d = dispensation[0] if dispensation else {}
        facts["to"] = rx.get("prescriber_mailbox") or None
        facts["prescriber"] = rx.get("prescriber") or ""
        facts["subject"] = f"Synthèse de dispensation {messaging.patient_label(facts['traits'])}"
        facts["lines"] = messaging.summary_lines(
            traits=facts["traits"],
            ins=facts["ins"],
            prescription_id=str(rx.get("prescription_id") or ""),
            prescribed_on=rx.get("prescribed_on"),
            renewal=int(d.get("renewal") or 0),
            dispensed_at=float(d.get("at") or row["at"]),
            pharmacy_name=pharmacy_name,
            finess=finess,
            boxes=boxes,
            discrepancies=json.loads(d.get("discrepancies") or "[]"),
            annotation=str(d.get("annotation") or ""),
        )
        return facts

    def mark_secure_message(self, message_id: int, status: str, *, reason: str = "") -> None:
        """Record what came of sending message ``message_id``: ``sent``, or ``refused`` (final: journalled
        for the pharmacist with its kind and the reason, never the address)."""
        if status not in ("queued", "sent", "refused"):
            raise ValueError(f"unknown secure message status {status!r}")
        now = self.clock()
        with transaction(self.db) as conn:
            found = conn.execute("SELECT kind FROM secure_messages WHERE id = ?", (message_id,)).fetchone()
            if found is None:
                raise StoreError(f"no secure message {message_id}")
            conn.execute("UPDATE secure_messages SET status = ? WHERE id = ?", (status, message_id))
            if status == "refused":
                journal.append(
                    conn,
                    operator_id=None,
                    action="mssante.refused",
                    subject=str(message_id),
                    details={"kind": str(found[0]), "reason": reason},
                    at=now,
                )

    def enqueue_dmp(
        self, patient_id: int, kind: str, visibility: Any, operator_id: int | None, *, patient_mailbox: bool = False
    ) -> None:
        """A document for the DMP, and (``patient_mailbox``) a copy to the patient's Mon Espace Santé
        mailbox, unless they chose to hide it from themselves."""
        now = self.clock()
        with transaction(self.db) as conn:
            cursor = conn.execute(
                "INSERT INTO dmp_documents(patient_id, kind, visibility, at) VALUES (?, ?, ?, ?)",
                (patient_id, kind, str(visibility.value), now),
            )
            doc_id = int(cursor.lastrowid or 0)
            if patient_mailbox and str(visibility.value) != "hidden-from-patient":
                self._secure_message(conn, "dmp-document", patient_id, now, dmp_document_id=doc_id)
            outbox.enqueue(
                conn,
                now=self.clock(),
                stream="dmp",
                key=f"dmp:{doc_id}",
                payload={
                    "document": doc_id,
                    "patient_id": patient_id,
                    "kind": kind,
                    "visibility": str(visibility.value),
                    "operator": operator_id,
                },
            )
            journal.append(
                conn,
                operator_id=operator_id,
                action="dmp.queued",
                subject=str(doc_id),
                details={"kind": kind},
                at=now,
            )

    def dmp_facts(self, doc_id: int, operator_id: int | None) -> dict[str, Any] | None:
        """What DMP document ``doc_id`` says, read back from the store when it is delivered.

        The outbox message names ids only; here come the document row (kind, visibility, time), the
        patient's INS opened from the sealed fields and their status, the operator who fed it (from the
        message, else from the journal) with their RPPS, the pharmacy's settings (``finess``, ``name``)
        and the boxes dispensed to the patient: ``visit`` (the dispensation nearest the document,
        within an hour: the vaccine, the interview's treatment) with its annotation, and ``history``
        (the last twelve months, for the medication review). None when the document is unknown.
        """
        found = rows(self.db.conn, "SELECT * FROM dmp_documents WHERE id = ?", (doc_id,))
        if not found:
            return None
        doc = found[0]
        patient_id, at = int(doc["patient_id"]), float(doc["at"])
        if operator_id is None:
            row = self.db.conn.execute(
                "SELECT operator_id FROM audit_journal WHERE action = 'dmp.queued' AND subject = ? ORDER BY seq DESC",
                (str(doc_id),),
            ).fetchone()
            operator_id = None if row is None or row[0] is None else int(row[0])
        operator = None
        if operator_id is not None:
            op = rows(self.db.conn, "SELECT id, name, role, rpps FROM operators WHERE id = ?", (operator_id,))
            operator = op[0] if op else None
        visit = self.db.conn.execute(
            "SELECT id, annotation FROM dispensations WHERE patient_id = ? AND at BETWEEN ? AND ?"
            " ORDER BY abs(at - ?) LIMIT 1",
            (patient_id, at - 3600, at + 3600, at),
        ).fetchone()
        visit_lines = [] if visit is None else self._dispensed_lines("d.id = ?", (int(visit[0]),))
        history = self._dispensed_lines(
            "d.patient_id = ? AND d.at BETWEEN ? AND ?", (patient_id, at - 365 * 86400, at + 3600)
        )
        return {
            "document": doc_id,
            "kind": str(doc["kind"]),
            "visibility": str(doc["visibility"]),
            "at": at,
            "patient_id": patient_id,
            "ins": self.ins_of(patient_id),
            "status": self.patient_status(patient_id),
            "operator": operator,
            "finess": get_setting(self.db, "finess"),
            "pharmacy_name": get_setting(self.db, "name"),
            "box_id": self.box_id(),
            "visit": visit_lines,
            "note": "" if visit is None else str(visit[1] or ""),
            "history": history,
        }

    def _dispensed_lines(self, where: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        """Boxes dispensed, oldest first, with the label of the prescription line they filled."""
        # ``where`` is one of the two fixed clauses of dmp_facts, never data
        sql = (
            "SELECT l.cip13, l.gtin, l.lot, l.expiry, d.at, pl.label FROM dispensation_lines l"  # noqa: S608
            " JOIN dispensations d ON d.id = l.dispensation_id"
            " LEFT JOIN prescription_lines pl ON pl.prescription_id = d.prescription_id AND pl.line_no = l.line_no"
            f" WHERE {where} ORDER BY d.at, l.id LIMIT 500"
        )
        return rows(self.db.conn, sql, params)

    def mark_dmp(self, doc_id: int, status: str) -> None:
        with transaction(self.db) as conn:
            conn.execute("UPDATE dmp_documents SET status = ? WHERE id = ?", (status, doc_id))

    def mark_execution_sent(self, prescription_id: str, renewal: int, step: int) -> None:
        with transaction(self.db) as conn:
            statement = (
                "UPDATE execution_data SET step1 = 'sent' WHERE prescription_id = ? AND renewal = ?"
                if step == 1
                else "UPDATE execution_data SET step2 = 'sent' WHERE prescription_id = ? AND renewal = ?"
            )
            conn.execute(statement, (prescription_id, renewal))
