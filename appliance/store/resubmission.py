"""Claims refused by an acknowledgement, corrected and sent again with their numbers (DESIGN §3 step 8-9).

A negative ARL refuses a whole batch: :meth:`~appliance.store.records.CounterRecords.apply_acknowledgement`
marks its claims ``rejected`` and writes their ``rejections`` rows with the reason and the advised
action. What the pharmacist does next is what SESAM-Vitale does with a batch refused by a negative
ARL: the very same invoices (FSE), corrected where they were wrong, go again in a new batch. So:

- a claim keeps its number (it is the same invoice; no claim number is consumed or skipped), and
  joins the open batch, or a new one that takes the next batch number;
- the correction is the one the advised action asks for and the store can make: the claim is
  addressed again (``amo_regime``, ``amo_fund``: the *organisme destinataire*) to the newest AMO
  rights on file for its patient, which the caller has just read again from ADRi. A claim that was
  refused only because it travelled in a refused batch goes as it was. The amounts are not
  recomputed: they are what the patient paid at the counter and what the mutuelle was billed;
  changing them is a new invoice, not a resend;
- the history stays: ``claim_resubmissions`` says which batch each trip left and joined, who decided
  and what changed; the ``rejections`` rows are kept.

The functions here run inside the caller's transaction; :class:`CounterRecords` wraps them with
their audit row and back-office events.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.store.database import StoreError, require_transaction, rows


class ResubmissionRefused(StoreError):
    """A claim that cannot be sent again; nothing was changed."""

    def __init__(self, number: int, message: str) -> None:
        super().__init__(message)
        self.number = number


class UnknownClaim(ResubmissionRefused):
    def __init__(self, number: int) -> None:
        super().__init__(number, f"no claim number {number} in this database")


class ClaimNotRejected(ResubmissionRefused):
    """The claim is pending or accepted: only a claim an acknowledgement refused goes again."""

    def __init__(self, number: int, status: str, batch_number: int) -> None:
        super().__init__(
            number,
            f"claim {number} is {status} in batch {batch_number}, not rejected: only a claim refused by an"
            " acknowledgement can be sent again",
        )
        self.status = status
        self.batch_number = batch_number


class ClaimAlreadyResubmitted(ClaimNotRejected):
    """The claim was already sent again and has not been refused since."""

    def __init__(self, number: int, status: str, batch_number: int) -> None:
        ResubmissionRefused.__init__(
            self,
            number,
            f"claim {number} was already sent again: it is {status} in batch {batch_number}",
        )
        self.status = status
        self.batch_number = batch_number


@dataclass(frozen=True, slots=True)
class RejectedClaim:
    """A claim refused by its batch's acknowledgement, waiting to be corrected and sent again."""

    number: int
    patient_id: int
    batch_number: int
    reason: str
    action: str


@dataclass(frozen=True, slots=True)
class Resubmission:
    """What :meth:`CounterRecords.resubmit_rejected` did."""

    batch_number: int
    """The batch the claims joined (open, to be closed and sent with ``close_batch``)."""
    claims: tuple[int, ...]
    """Their numbers, unchanged."""
    corrected: tuple[int, ...]
    """Those whose destination changed; the others go as they were."""
    from_batches: tuple[int, ...]
    """The refused batches they left."""


def rejected(conn: sqlite3.Connection, numbers: Sequence[int] | None) -> list[RejectedClaim]:
    """The rejected claims ``numbers`` (None: every claim currently rejected), in number order, with
    the reason and action of their latest rejection. Raises :class:`UnknownClaim`,
    :class:`ClaimAlreadyResubmitted` or :class:`ClaimNotRejected` for the first number that cannot
    go again."""
    select = (
        "SELECT c.id, c.number, c.patient_id, c.status, b.number AS batch,"
        " (SELECT r.reason FROM rejections r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1) AS reason,"
        " (SELECT r.action FROM rejections r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1) AS action,"
        " EXISTS (SELECT 1 FROM claim_resubmissions s WHERE s.claim_id = c.id AND s.to_batch_id = c.batch_id)"
        " AS resubmitted FROM claims c JOIN batches b ON b.id = c.batch_id"
    )
    if numbers is None:
        found = rows(conn, f"{select} WHERE c.status = 'rejected' ORDER BY c.number")
    else:
        found = []
        for number in sorted(set(int(n) for n in numbers)):
            hit = rows(conn, f"{select} WHERE c.number = ?", (number,))
            if not hit:
                raise UnknownClaim(number)
            row = hit[0]
            if row["status"] != "rejected":
                refusal = ClaimAlreadyResubmitted if row["resubmitted"] else ClaimNotRejected
                raise refusal(number, str(row["status"]), int(row["batch"]))
            found.append(row)
    return [
        RejectedClaim(int(r["number"]), int(r["patient_id"]), int(r["batch"]), r["reason"] or "", r["action"] or "")
        for r in found
    ]


def _destination(conn: sqlite3.Connection, patient_id: int) -> dict[str, Any] | None:
    """The regime and fund of the newest AMO rights on file for the patient (None when there are none)."""
    found = rows(
        conn, "SELECT regime, fund FROM amo_rights WHERE patient_id = ? ORDER BY id DESC LIMIT 1", (patient_id,)
    )
    return {"amo_regime": found[0]["regime"], "amo_fund": found[0]["fund"]} if found else None


def move(
    conn: sqlite3.Connection,
    claims: Sequence[RejectedClaim],
    *,
    batch_id: int,
    batch_number: int,
    operator_id: int,
    now: float,
) -> Resubmission:
    """Correct ``claims`` (their destination, from the newest AMO rights on file) and move them, status
    pending, to the batch ``batch_id``, one ``claim_resubmissions`` row each."""
    require_transaction(conn, "resubmission.move")
    corrected: list[int] = []
    for claim in claims:
        row = conn.execute(
            "SELECT id, batch_id, status, amo_regime, amo_fund FROM claims WHERE number = ?", (claim.number,)
        ).fetchone()
        if row is None:
            raise UnknownClaim(claim.number)
        claim_id, from_batch_id, status = int(row[0]), int(row[1]), str(row[2])
        if status != "rejected":  # changed since it was read: judged again under the write lock
            raise ClaimNotRejected(claim.number, status, claim.batch_number)
        before = {"amo_regime": row[3], "amo_fund": row[4]}
        after = _destination(conn, claim.patient_id) or before
        changes = {column: [before[column], after[column]] for column in before if before[column] != after[column]}
        if changes:
            corrected.append(claim.number)
        conn.execute(
            "UPDATE claims SET batch_id = ?, status = 'pending', amo_regime = ?, amo_fund = ? WHERE id = ?",
            (batch_id, after["amo_regime"], after["amo_fund"], claim_id),
        )
        conn.execute(
            "INSERT INTO claim_resubmissions(claim_id, from_batch_id, to_batch_id, operator_id, corrections, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (claim_id, from_batch_id, batch_id, operator_id, json.dumps(changes, sort_keys=True), now),
        )
    return Resubmission(
        batch_number=batch_number,
        claims=tuple(c.number for c in claims),
        corrected=tuple(corrected),
        from_batches=tuple(sorted({c.batch_number for c in claims})),
    )


def batches_of(conn: sqlite3.Connection, number: int) -> list[int]:
    """The batch numbers claim ``number`` travelled in, first to current (empty for an unknown claim)."""
    found = conn.execute(
        "SELECT c.id, b.number FROM claims c JOIN batches b ON b.id = c.batch_id WHERE c.number = ?", (number,)
    ).fetchone()
    if found is None:
        return []
    trips = conn.execute(
        "SELECT f.number, t.number FROM claim_resubmissions s JOIN batches f ON f.id = s.from_batch_id"
        " JOIN batches t ON t.id = s.to_batch_id WHERE s.claim_id = ? ORDER BY s.id",
        (found[0],),
    ).fetchall()
    if not trips:
        return [int(found[1])]
    return [int(trips[0][0]), *(int(t[1]) for t in trips)]
