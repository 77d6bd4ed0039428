"""Claims refused by a negative acknowledgement, corrected and sent again in a new batch, on real SQLite
files: the claim keeps its number, no claim or batch number is skipped, and the history stays."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from appliance.billing import BillItem, compute_bill
from appliance.domain import AmoRights, IdentityStatus, Role
from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
from appliance.store import audit, numbering, operators
from appliance.store.database import StoreError
from appliance.store.records import ClaimDraft, CounterRecords
from appliance.store.resubmission import (
    ClaimAlreadyResubmitted,
    ClaimNotRejected,
    ResubmissionRefused,
    UnknownClaim,
)
from appliance.store.sealing import FieldCipher
from appliance.workflow.session import DispensedBox
from sandbox import population as pop

DAY = pop.REFERENCE_DAY
CETIRIZINE = pop.CETIRIZINE_10
REASON, ACTION = pop.CLAIM_REJECTIONS["arl-negative"]


class Clock:
    def __init__(self) -> None:
        self.now = 1_781_510_400.0  # 2026-06-15

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def records(db: sqlite_utils.Database, key_path: Path) -> CounterRecords:
    return CounterRecords(db, FieldCipher.load(key_path), Clock(), backoffice_events=True)


@pytest.fixture
def alice(db: sqlite_utils.Database) -> int:
    return operators.add_operator(db, "alice", Role.PHARMACIEN, "2468")


def _patient(records: CounterRecords, key: str) -> int:
    person = pop.person(key)
    return records.remember_patient(
        beneficiary=person.beneficiary,
        ins=person.ins,
        traits=person.beneficiary.traits,
        status=IdentityStatus.RECUP,
        reason="test",
        operator_id=None,
    ).id


def _bill(records: CounterRecords, patient_id: int, operator_id: int, serial: str, amo: AmoRights | None) -> int:
    """A claim as the counter writes it (card rights ``amo``, one box, execution data step 1 sent)."""
    records.save_rights(patient_id, amo=amo, amc=None)
    product = ProductTable.load(DEFAULT_PRODUCTS_PATH).get(CETIRIZINE)
    assert product is not None
    bill = compute_bill([BillItem(product, 1)], amo=amo, amc=None, day=DAY)
    box = DispensedBox(CETIRIZINE, "0" + CETIRIZINE, serial, "L1", "2027-12-31", 1)
    prescription_id = f"RX-{serial}"
    draft = ClaimDraft(
        patient_id=patient_id,
        operator_id=operator_id,
        prescription_id=prescription_id,
        prescription=None,
        entered_lines=(),
        renewal=0,
        boxes=(box,),
        bill=bill,
        amo=amo,
        amc=None,
        annotation="",
        discrepancies=(),
        execution_sent=True,
        execution_payload={"step": 1, "prescription_id": prescription_id, "renewal": 0},
        fetch_pending=False,
        day=DAY,
    )
    return records.record_claim(draft).number


def _claims(db: sqlite_utils.Database) -> dict[int, dict[str, Any]]:
    found = db.conn.execute(
        "SELECT c.number, c.status, b.number, c.amo_regime, c.amo_fund"
        " FROM claims c JOIN batches b ON b.id = c.batch_id"
    ).fetchall()
    return {int(r[0]): {"status": r[1], "batch": r[2], "regime": r[3], "fund": r[4]} for r in found}


def _count(db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> int:
    return int(db.conn.execute(sql, params).fetchone()[0])


def _everything(db: sqlite_utils.Database) -> list[Any]:
    """What a refused resubmission must leave exactly as it was."""
    tables = ("claims", "batches", "numbering", "claim_resubmissions", "rejections", "amo_rights", "outbox")
    return [db.conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables] + [  # noqa: S608
        _count(db, "SELECT count(*) FROM audit_journal")
    ]


@pytest.fixture
def refused_batch(records: CounterRecords, alice: int) -> dict[str, int]:
    """Batch 1 with Julie's claim (addressed to the fund on her out-of-date card) and Marie's, refused by
    a negative ARL that names Julie's claim."""
    julie, marie = _patient(records, "arl-rejected"), _patient(records, "durand")
    first = _bill(records, julie, alice, "ARL1", pop.person("arl-rejected").card_amo)
    second = _bill(records, marie, alice, "DUR1", pop.person("durand").card_amo)
    assert records.close_batch(alice) == 1
    records.apply_acknowledgement(1, False, "Lot rejeté : 1 FSE en anomalie", {first: (REASON, ACTION)})
    return {"julie": julie, "marie": marie, "first": first, "second": second}


def test_the_rejected_claims_go_again_with_their_numbers_in_the_next_batch(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    julie = pop.person("arl-rejected")
    assert _claims(db) == {
        1: {"status": "rejected", "batch": 1, "regime": "01", "fund": "751"},
        2: {"status": "rejected", "batch": 1, "regime": "01", "fund": "751"},
    }
    waiting = records.rejected_claims()
    assert [(c.number, c.batch_number, c.reason) for c in waiting] == [
        (1, 1, REASON),
        (2, 1, "Lot rejeté : 1 FSE en anomalie"),
    ]
    assert waiting[0].action == ACTION and waiting[1].action == "Corriger puis refacturer dans un nouveau lot"

    done = records.resubmit_rejected(None, alice, rights={refused_batch["julie"]: julie.amo})  # ADRi read again

    assert done is not None
    assert (done.batch_number, done.claims, done.corrected, done.from_batches) == (2, (1, 2), (1,), (1,))
    assert _claims(db) == {
        1: {"status": "pending", "batch": 2, "regime": "01", "fund": "311"},  # re-addressed to her current fund
        2: {"status": "pending", "batch": 2, "regime": "01", "fund": "751"},  # Marie's was right: as it was
    }
    assert numbering.current_number(db, "claim") == 2, "no claim number consumed"
    assert numbering.current_number(db, "batch") == 2
    assert _count(db, "SELECT count(*) FROM rejections") == 2, "the rejections stay"
    assert records.claim_batches(1) == [1, 2] and records.claim_batches(2) == [1, 2]
    assert records.claim_batches(99) == []
    assert records.rejected_claims() == []
    corrections = db.conn.execute(
        "SELECT c.number, s.corrections, s.operator_id FROM claim_resubmissions s JOIN claims c ON c.id = s.claim_id"
        " ORDER BY c.number"
    ).fetchall()
    assert [(n, json.loads(text), who) for n, text, who in corrections] == [
        (1, {"amo_fund": ["751", "311"]}, alice),
        (2, {}, alice),
    ]
    fresh = db.conn.execute(
        "SELECT fund FROM amo_rights WHERE patient_id = ? ORDER BY id DESC LIMIT 1", (refused_batch["julie"],)
    ).fetchone()
    assert fresh[0] == "311", "the rights read again are the patient's newest"

    row = db.conn.execute(
        "SELECT operator_id, subject, details FROM audit_journal WHERE action = 'claims.resubmitted'"
    ).fetchall()
    assert len(row) == 1 and row[0][0] == alice and row[0][1] == "2"
    details = json.loads(row[0][2])
    assert details == {"claims": [1, 2], "corrected": [1], "from_batches": [1], "rights_read_again": [1]}
    for secret in (julie.beneficiary.nir, julie.beneficiary.traits.birth_name, "MOREAU", "DURAND"):
        assert secret not in row[0][2]
    events = [
        json.loads(r[0])
        for r in db.conn.execute("SELECT payload FROM outbox WHERE stream = 'events' AND key LIKE 'event:claim.resub%'")
    ]
    assert [(e["claim"], e["batch"], e["from_batch"], e["corrected"]) for e in events] == [
        (1, 2, 1, True),
        (2, 2, 1, False),
    ]
    assert audit.verify(db).ok


def test_the_next_batch_carries_them_and_a_positive_ack_completes_their_execution_data(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    julie = pop.person("arl-rejected")
    records.resubmit_rejected([1], alice, rights={refused_batch["julie"]: julie.amo})
    third = _bill(records, refused_batch["marie"], alice, "DUR2", pop.person("durand").card_amo)
    assert third == 3, "a claim made after the resubmission takes the next number"
    assert records.close_batch(alice) == 2
    wire = records.batch_wire(2)
    assert [c["claim_number"] for c in wire["claims"]] == ["1", "3"]
    assert wire["claims"][0]["amo_fund"] == "311" and wire["claims"][0]["nir"] == julie.beneficiary.nir
    assert records.batch_wire(1)["claims"][0]["claim_number"] == "2", "claim 2 still waits in the refused batch"
    message = db.conn.execute("SELECT payload FROM outbox WHERE key = 'batch:2'").fetchone()
    assert json.loads(message[0]) == {"batch": 2}

    records.apply_acknowledgement(2, True, "", {})

    assert _claims(db)[1]["status"] == "accepted" and _claims(db)[3]["status"] == "accepted"
    assert _claims(db)[2] == {"status": "rejected", "batch": 1, "regime": "01", "fund": "751"}
    step2 = db.conn.execute("SELECT payload FROM outbox WHERE key = 'exec2:RX-ARL1:0'").fetchone()
    assert json.loads(step2[0]) == {
        "prescription_id": "RX-ARL1",
        "step": 2,
        "renewal": 0,
        "claim_number": "1",
        "batch_number": "2",
    }
    assert _count(db, "SELECT count(*) FROM execution_data WHERE step2 = 'queued'") == 2
    assert _count(db, "SELECT count(*) FROM outbox WHERE key = 'exec2:RX-DUR1:0'") == 0, "claim 2 is not accepted"
    assert [r[0] for r in db.conn.execute("SELECT number FROM batches ORDER BY number")] == [1, 2]


def test_they_join_the_batch_already_open(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    assert _bill(records, refused_batch["marie"], alice, "DUR2", None) == 3  # opens batch 2
    done = records.resubmit_rejected([2, 1, 2], alice)
    assert done is not None and done.batch_number == 2 and done.claims == (1, 2)
    assert done.corrected == (), "no fresher rights on file: both go as they were"
    assert numbering.current_number(db, "batch") == 2
    assert {n: c["batch"] for n, c in _claims(db).items()} == {1: 2, 2: 2, 3: 2}


def test_refused_again_then_sent_a_third_time(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    records.resubmit_rejected([1], alice)
    assert records.close_batch(alice) == 2
    records.apply_acknowledgement(2, False, "Lot rejeté", {1: (REASON, ACTION)})
    done = records.resubmit_rejected([1], alice, rights={refused_batch["julie"]: pop.person("arl-rejected").amo})
    assert done is not None and done.batch_number == 3 and done.from_batches == (2,) and done.corrected == (1,)
    assert records.claim_batches(1) == [1, 2, 3]
    assert _count(db, "SELECT count(*) FROM rejections WHERE claim_id = (SELECT id FROM claims WHERE number = 1)") == 2
    assert numbering.current_number(db, "claim") == 2 and numbering.current_number(db, "batch") == 3


def test_a_claim_that_cannot_go_again_is_refused_and_nothing_changes(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    with pytest.raises(UnknownClaim, match="no claim number 42") as unknown:
        records.resubmit_rejected([1, 42], alice)
    assert unknown.value.number == 42
    records.resubmit_rejected([1], alice)
    third = _bill(records, refused_batch["marie"], alice, "DUR2", None)
    before = _everything(db)

    with pytest.raises(ClaimAlreadyResubmitted, match="claim 1 was already sent again: it is pending in batch 2"):
        records.resubmit_rejected([2, 1], alice)
    with pytest.raises(ClaimNotRejected, match=f"claim {third} is pending in batch 2, not rejected") as pending:
        records.resubmit_rejected([third], alice)
    assert not isinstance(pending.value, ClaimAlreadyResubmitted)
    with pytest.raises(ValueError, match="who have none of these claims"):
        records.resubmit_rejected([2], alice, rights={refused_batch["julie"]: pop.person("arl-rejected").amo})
    assert _everything(db) == before

    records.close_batch(alice)
    records.apply_acknowledgement(2, True, "", {})
    with pytest.raises(ClaimAlreadyResubmitted, match="it is accepted in batch 2"):
        records.resubmit_rejected([1], alice)
    with pytest.raises(ClaimNotRejected, match="is accepted in batch 2, not rejected"):
        records.resubmit_rejected([third], alice)
    for error in (UnknownClaim, ClaimNotRejected, ClaimAlreadyResubmitted):
        assert issubclass(error, ResubmissionRefused) and issubclass(error, StoreError)


def test_nothing_rejected_opens_no_batch_and_writes_nothing(
    db: sqlite_utils.Database, records: CounterRecords, alice: int
) -> None:
    before = _everything(db)
    assert records.rejected_claims() == []
    assert records.resubmit_rejected(None, alice) is None
    assert records.resubmit_rejected([], alice) is None
    assert _everything(db) == before


def test_a_claim_written_before_the_migration_is_addressed_on_resubmission(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    """An older release wrote no destination: the newest rights on file give it one."""
    db.conn.execute("UPDATE claims SET amo_regime = NULL, amo_fund = NULL WHERE number = 2")
    assert records.batch_wire(1)["claims"][1]["amo_fund"] is None
    done = records.resubmit_rejected([2], alice)
    assert done is not None and done.corrected == (2,)
    assert _claims(db)[2]["fund"] == pop.person("durand").amo.fund


def test_the_history_cannot_be_rewritten(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    records.resubmit_rejected(None, alice)
    with pytest.raises(sqlite3.DatabaseError, match="history"):
        db.conn.execute("UPDATE claim_resubmissions SET to_batch_id = from_batch_id")
    with pytest.raises(sqlite3.DatabaseError, match="history"):
        db.conn.execute("DELETE FROM claim_resubmissions")
    assert _count(db, "SELECT count(*) FROM claim_resubmissions") == 2


def test_fresh_rights_that_name_the_same_fund_change_nothing_but_the_batch(
    db: sqlite_utils.Database, records: CounterRecords, alice: int, refused_batch: dict[str, int]
) -> None:
    same = replace(pop.person("durand").amo, valid_to=date(2030, 12, 31))
    done = records.resubmit_rejected([2], alice, rights={refused_batch["marie"]: same})
    assert done is not None and done.corrected == ()
    assert _claims(db)[2] == {"status": "pending", "batch": 2, "regime": "01", "fund": "751"}
