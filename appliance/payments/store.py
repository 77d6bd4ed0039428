"""Reconciliation in the counter's database: imports (idempotent), the claims expected to be paid,
manual matches with their audit trail, and the last run's results.

Every write is one transaction (:func:`appliance.store.transaction`); a manual match commits with its
audit row (:func:`appliance.store.audit.append`), so the journal says who linked what, and when.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.payments.matcher import Reconciliation, reconcile
from appliance.payments.model import (
    Adjustment,
    AdjustmentKind,
    BankCredit,
    BankStatement,
    ExpectedPart,
    LineStatus,
    ManualMatch,
    MatchConfig,
    Part,
    Remittance,
    RemittanceLine,
)
from appliance.store import audit
from appliance.store.database import StoreError, open_database, rows, transaction

if TYPE_CHECKING:
    import sqlite_utils


def open_payments_database(path: Path, key_file: Path | None = None) -> sqlite_utils.Database:
    """The counter database, migrated forward (the payments tables are migrations 8 and 12).

    ``key_file`` (the field key file) keys the audit rows the import writes; without it the import
    refuses to write them (:class:`~appliance.store.audit.JournalKeyMissing`)."""
    return open_database(path, key_file=key_file)


@dataclass(frozen=True, slots=True)
class Imported:
    remittances: int
    lines: int
    credits: int


def _line_key(line: RemittanceLine) -> str:
    return "|".join(
        str(v)
        for v in (
            line.remittance_id,
            line.claim_number,
            line.part.value,
            line.paid_cents,
            line.billed_cents,
            line.status.value,
            line.reason_code,
        )
    )


def _adjustment_key(a: Adjustment) -> str:
    recorded = a.recorded_on.isoformat() if a.recorded_on else ""
    fields = (a.remittance_id, a.kind.value, a.amount_cents, a.reference, a.nature, a.operation, recorded)
    return "|".join(str(v) for v in (*fields, a.balance_cents))


def import_remittances(conn: sqlite3.Connection, remittances: Sequence[Remittance], now: float) -> tuple[int, int]:
    """Store remittances, their lines and adjustments (withholdings...); those already there are left as
    they are. Returns (new remittances, new lines and adjustments)."""
    new_remittances = new_lines = 0
    for r in remittances:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO payment_remittances(id, payer, payer_name, paid_on, payment_reference, source,"
            " imported_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (r.remittance_id, r.payer, r.payer_name, r.paid_on.isoformat(), r.payment_reference, r.source, now),
        )
        new_remittances += cursor.rowcount
        for line in r.lines:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO payment_remittance_lines(remittance_id, claim_number, part, payer_code,"
                " batch_number, billed_cents, paid_cents, status, reason_code, reason, action, source, line_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.remittance_id,
                    line.claim_number,
                    line.part.value,
                    line.payer_code,
                    line.batch_number,
                    line.billed_cents,
                    line.paid_cents,
                    line.status.value,
                    line.reason_code,
                    line.reason,
                    line.action,
                    line.source,
                    _line_key(line),
                ),
            )
            new_lines += cursor.rowcount
        for a in r.adjustments:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO payment_adjustments(remittance_id, kind, amount_cents, reference, nature,"
                " operation, label, recorded_on, balance_cents, source, adjustment_key)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.remittance_id,
                    a.kind.value,
                    a.amount_cents,
                    a.reference,
                    a.nature,
                    a.operation,
                    a.label,
                    a.recorded_on.isoformat() if a.recorded_on else None,
                    a.balance_cents,
                    a.source,
                    _adjustment_key(a),
                ),
            )
            new_lines += cursor.rowcount
    return new_remittances, new_lines


def import_statement(conn: sqlite3.Connection, statement: BankStatement, now: float) -> int:
    """Store a statement's credits (overlapping statements share credits by key). Returns new credits."""
    new = 0
    for c in statement.credits:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO bank_credits(key, booked_on, value_on, amount_cents, text, debtor, bank_reference,"
            " account, source, imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                c.key,
                c.booked_on.isoformat(),
                c.value_on.isoformat() if c.value_on else None,
                c.amount_cents,
                c.text,
                c.debtor,
                c.bank_reference,
                c.account,
                c.source,
                now,
            ),
        )
        new += cursor.rowcount
    conn.execute(
        "INSERT OR REPLACE INTO payment_statements(source, format, start_on, end_on, credits) VALUES (?, ?, ?, ?, ?)",
        (
            statement.source,
            statement.format,
            statement.start.isoformat() if statement.start else None,
            statement.end.isoformat() if statement.end else None,
            len(statement.credits),
        ),
    )
    return new


def stored_remittances(db: sqlite_utils.Database) -> list[Remittance]:
    lines: dict[str, list[RemittanceLine]] = {}
    for row in rows(db.conn, "SELECT * FROM payment_remittance_lines ORDER BY id"):
        lines.setdefault(row["remittance_id"], []).append(
            RemittanceLine(
                remittance_id=row["remittance_id"],
                claim_number=int(row["claim_number"]),
                part=Part(row["part"]),
                paid_cents=int(row["paid_cents"]),
                status=LineStatus(row["status"]),
                billed_cents=None if row["billed_cents"] is None else int(row["billed_cents"]),
                batch_number=row["batch_number"],
                payer_code=row["payer_code"],
                reason_code=row["reason_code"],
                reason=row["reason"],
                action=row["action"],
                source=row["source"],
            )
        )
    adjustments: dict[str, list[Adjustment]] = {}
    for row in rows(db.conn, "SELECT * FROM payment_adjustments ORDER BY id"):
        adjustments.setdefault(row["remittance_id"], []).append(
            Adjustment(
                remittance_id=row["remittance_id"],
                kind=AdjustmentKind(row["kind"]),
                amount_cents=int(row["amount_cents"]),
                reference=row["reference"],
                nature=row["nature"],
                operation=row["operation"],
                label=row["label"],
                recorded_on=date.fromisoformat(row["recorded_on"]) if row["recorded_on"] else None,
                balance_cents=None if row["balance_cents"] is None else int(row["balance_cents"]),
                source=row["source"],
            )
        )
    return [
        Remittance(
            remittance_id=row["id"],
            payer=row["payer"],
            payer_name=row["payer_name"],
            paid_on=date.fromisoformat(row["paid_on"]),
            payment_reference=row["payment_reference"],
            lines=tuple(lines.get(row["id"], [])),
            source=row["source"],
            adjustments=tuple(adjustments.get(row["id"], [])),
        )
        for row in rows(db.conn, "SELECT * FROM payment_remittances ORDER BY paid_on, id")
    ]


def stored_credits(db: sqlite_utils.Database) -> list[BankCredit]:
    return [
        BankCredit(
            key=row["key"],
            booked_on=date.fromisoformat(row["booked_on"]),
            amount_cents=int(row["amount_cents"]),
            text=row["text"],
            value_on=date.fromisoformat(row["value_on"]) if row["value_on"] else None,
            debtor=row["debtor"],
            bank_reference=row["bank_reference"],
            account=row["account"],
            source=row["source"],
        )
        for row in rows(db.conn, "SELECT * FROM bank_credits ORDER BY booked_on, key")
    ]


def statement_end(db: sqlite_utils.Database) -> date | None:
    row = db.conn.execute("SELECT max(end_on) FROM payment_statements").fetchone()
    return date.fromisoformat(row[0]) if row and row[0] else None


def expected_parts(db: sqlite_utils.Database) -> list[ExpectedPart]:
    """What the pharmacy expects to be paid: the tiers-payant parts of its claims; the AMC part names
    the patient's latest mutuelle (as the batch sent it); a claim rejected by its batch's acknowledgement carries the
    reason and action recorded then."""
    found = rows(
        db.conn,
        "SELECT c.number, c.amo_cents, c.amc_cents, c.amo_tiers_payant, c.amc_tiers_payant, c.status, c.created_at,"
        " b.number AS batch,"
        " (SELECT a.amc_number FROM amc_rights a WHERE a.patient_id = c.patient_id ORDER BY a.id DESC LIMIT 1)"
        " AS amc_number,"
        " (SELECT r.reason FROM rejections r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1) AS reason,"
        " (SELECT r.action FROM rejections r WHERE r.claim_id = c.id ORDER BY r.id DESC LIMIT 1) AS action"
        " FROM claims c JOIN batches b ON b.id = c.batch_id ORDER BY c.number",
    )
    parts = []
    for row in found:
        billed_on = datetime.fromtimestamp(float(row["created_at"])).date()
        rejected = row["status"] == "rejected"
        reason = (row["reason"] or "Rejeté par l'accusé de réception du lot") if rejected else ""
        action = (row["action"] or "") if rejected else ""
        common = {"billed_on": billed_on, "batch_number": str(row["batch"]), "rejected_reason": reason}
        if row["amo_tiers_payant"] and row["amo_cents"] > 0:
            parts.append(
                ExpectedPart(int(row["number"]), Part.AMO, int(row["amo_cents"]), rejected_action=action, **common)  # type: ignore[arg-type]
            )
        if row["amc_tiers_payant"] and row["amc_cents"] > 0:
            parts.append(
                ExpectedPart(
                    int(row["number"]),
                    Part.AMC,
                    int(row["amc_cents"]),
                    payer=row["amc_number"] or "",
                    rejected_action=action,
                    **common,  # type: ignore[arg-type]
                )
            )
    return parts


def manual_matches(db: sqlite_utils.Database) -> list[ManualMatch]:
    """The latest decision per remittance."""
    found = rows(
        db.conn,
        "SELECT m.remittance_id, m.credit_key, m.operator_id, m.note FROM payment_manual_matches m"
        " WHERE m.id = (SELECT max(id) FROM payment_manual_matches n WHERE n.remittance_id = m.remittance_id)"
        " ORDER BY m.id",
    )
    return [ManualMatch(r["remittance_id"], r["credit_key"], r["operator_id"], r["note"]) for r in found]


def record_manual_match(
    db: sqlite_utils.Database,
    *,
    remittance_id: str,
    credit_key: str | None,
    operator_id: int | None,
    note: str = "",
    now: float | None = None,
) -> int:
    """A pharmacist's decision: ``remittance_id`` was paid by ``credit_key`` (None: by no credit of the
    statements). Stored with its audit row in one transaction; returns the audit seq."""
    at = time.time() if now is None else now
    with transaction(db) as conn:
        if conn.execute("SELECT 1 FROM payment_remittances WHERE id = ?", (remittance_id,)).fetchone() is None:
            raise StoreError(f"unknown remittance {remittance_id!r}: import its file first")
        if credit_key is not None:
            credit = conn.execute("SELECT amount_cents FROM bank_credits WHERE key = ?", (credit_key,)).fetchone()
            if credit is None:
                raise StoreError(f"unknown bank credit {credit_key!r}: import its statement first")
        seq = audit.append(
            conn,
            operator_id=operator_id,
            action="payments.manual-match" if credit_key else "payments.manual-unlink",
            subject=f"remittance:{remittance_id}",
            details={"credit": credit_key, "note": note},
            at=at,
        )
        conn.execute(
            "INSERT INTO payment_manual_matches(remittance_id, credit_key, operator_id, note, audit_seq, at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (remittance_id, credit_key, operator_id, note, seq, at),
        )
    return seq


def save_results(conn: sqlite3.Connection, result: Reconciliation) -> None:
    """Replace the last run's matches and part statuses (inside the caller's transaction)."""
    conn.execute("DELETE FROM payment_matches")
    conn.executemany(
        "INSERT INTO payment_matches(remittance_id, credit_key, rule) VALUES (?, ?, ?)",
        [(rid, key, rule) for rid, (key, rule) in sorted(result.matches.items())],
    )
    conn.execute("DELETE FROM payment_part_status")
    conn.executemany(
        "INSERT INTO payment_part_status(claim_number, part, status, expected_cents, remitted_cents, credited_cents,"
        " reason, action, as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                p.claim_number,
                p.part.value,
                p.status.value,
                p.expected_cents,
                p.remitted_cents,
                p.credited_cents,
                p.reason,
                p.action,
                result.as_of.isoformat(),
            )
            for p in result.parts
        ],
    )


def run(
    db: sqlite_utils.Database,
    remittances: Sequence[Remittance],
    statements: Sequence[BankStatement],
    *,
    config: MatchConfig | None = None,
    as_of: date | None = None,
    now: float | None = None,
) -> tuple[Reconciliation, Imported]:
    """Import, then reconcile everything the database holds, and store the results. Running it again
    with the same files changes nothing (and journals nothing: only imports that add rows are audited)."""
    at = time.time() if now is None else now
    with transaction(db) as conn:
        new_remittances, new_lines = import_remittances(conn, remittances, at)
        new_credits = sum(import_statement(conn, s, at) for s in statements)
        if new_remittances or new_lines or new_credits:
            audit.append(
                conn,
                operator_id=None,
                action="payments.imported",
                subject="reconciliation",
                details={"remittances": new_remittances, "lines": new_lines, "credits": new_credits},
                at=at,
            )
        result = reconcile(
            stored_remittances(db),
            stored_credits(db),
            expected=expected_parts(db),
            manual=manual_matches(db),
            config=config,
            as_of=as_of,
            statement_end=statement_end(db),
            warnings=[w for s in statements for w in s.warnings],
        )
        save_results(conn, result)
    return result, Imported(new_remittances, new_lines, new_credits)
