"""The last claims billed at this counter, and the one a crash may have hidden from its patient.

Two questions a pharmacist asks at a busy counter: "what did I just bill?" and, after the kiosk went
dark (power cut, crash), "did the patient see the last bill?". Both are answered from the claims
themselves; the answer to the second needs one more fact, kept durably here.

**When is a claim "shown"?** The claim transaction (:meth:`CounterRecords.record_claim`) commits
before any screen can show its number. The kiosk reports back once the patient's screen has been
showing the result for at least one frame (``ResultShown`` in :mod:`appliance.workflow.events`), and
:func:`mark_shown` records the highest claim number so reported in the ``pharmacy`` settings table
(:data:`SHOWN_SETTING`), in one transaction with a ``claim.shown`` audit row. At start,
:func:`interrupted` compares the newest claim with that number.

Why this rather than "the last claim committed after the last ``session.closed`` audit event": a
session can end without ``close`` (the idle timeout on the payment screen, a power cut while the
patient reads the amount and pays), and the audit journal has no index on actions; one settings row
is read in microseconds and says exactly what the screen did. The rule errs on the safe side: a kill
after the screen changed but before the report commits flags a claim the patient did see (the
pharmacist checks for nothing), never the reverse. A single number suffices because claims are
numbered without gaps in the order they commit and one counter shows them in that order; it only
ever goes up (a late report of an older claim changes nothing). On the first start after this
feature is installed the setting is absent and counts as 0: a claim billed in the last
:data:`RECOVERY_WINDOW_S` before that start is flagged once, which is harmless.

Only the newest claim matters: an older one was necessarily followed by another bill at the same
counter, so the kiosk was running after it.

Patient names are opened from the sealed fields for the listing only; the caller writes the audit
row that names the operator who looked (DESIGN §5), in the same transaction as the read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from appliance.store.database import require_transaction, rows, set_setting
from appliance.store.sealing import FieldCipher

SHOWN_SETTING = "counter.last_claim_shown"
"""``pharmacy`` setting: the highest claim number the patient's screen has shown (absent: none)."""
RECOVERY_WINDOW_S = 15 * 60.0
"""A claim committed longer than this before the kiosk starts is not pointed out any more: the
patient has left, and the claim is in the list like any other."""
DEFAULT_LIMIT = 10
MAX_LIMIT = 50
"""The panel shows a handful; the back office has the full history."""


@dataclass(frozen=True, slots=True)
class RecentClaim:
    """One line of the pharmacist's "Dernières factures": amounts in cents, names opened."""

    number: int
    at: float
    """When the claim committed (Unix time)."""
    total_cents: int
    amo_cents: int
    amc_cents: int
    patient_cents: int
    to_pay_cents: int
    operator: str
    """Who validated the dispensation."""
    patient_id: int
    first_names: str
    birth_name: str
    status: str
    """``pending``, ``accepted`` or ``rejected`` (after the batch's acknowledgement)."""


@dataclass(frozen=True, slots=True)
class InterruptedClaim:
    """The newest claim, committed shortly before this start, whose result no screen showed."""

    number: int
    at: float


def latest(conn: sqlite3.Connection, cipher: FieldCipher, limit: int = DEFAULT_LIMIT) -> list[RecentClaim]:
    """The ``limit`` newest claims, newest first (claim numbers follow commit order)."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    found = rows(
        conn,
        "SELECT c.number, c.created_at, c.total_cents, c.amo_cents, c.amc_cents, c.patient_cents, c.to_pay_cents,"
        " c.status, c.patient_id, o.name AS operator, p.first_names, p.birth_name"
        " FROM claims c JOIN dispensations d ON d.id = c.dispensation_id"
        " JOIN operators o ON o.id = d.operator_id JOIN patients p ON p.id = c.patient_id"
        " ORDER BY c.number DESC LIMIT ?",
        (limit,),
    )
    return [
        RecentClaim(
            number=int(row["number"]),
            at=float(row["created_at"]),
            total_cents=int(row["total_cents"]),
            amo_cents=int(row["amo_cents"]),
            amc_cents=int(row["amc_cents"]),
            patient_cents=int(row["patient_cents"]),
            to_pay_cents=int(row["to_pay_cents"]),
            operator=str(row["operator"]),
            patient_id=int(row["patient_id"]),
            first_names=cipher.open(row["first_names"], "patients.first_names"),
            birth_name=cipher.open(row["birth_name"], "patients.birth_name"),
            status=str(row["status"]),
        )
        for row in found
    ]


def last_shown(conn: sqlite3.Connection) -> int:
    """The highest claim number a screen reported shown (0: none yet)."""
    row = conn.execute("SELECT value FROM pharmacy WHERE key = ?", (SHOWN_SETTING,)).fetchone()
    return int(row[0]) if row is not None else 0


def mark_shown(conn: sqlite3.Connection, number: int) -> bool:
    """Record, inside the caller's transaction, that claim ``number`` reached the patient's screen.

    True when this moved the mark (the caller audits it); False for a number already covered or one
    that is not a claim of this database (a confused caller must not hide a later claim).
    """
    require_transaction(conn, "recent_claims.mark_shown")
    if number <= last_shown(conn):
        return False
    if conn.execute("SELECT 1 FROM claims WHERE number = ?", (number,)).fetchone() is None:
        return False
    set_setting(conn, SHOWN_SETTING, str(number))
    return True


def interrupted(conn: sqlite3.Connection, now: float, window_s: float = RECOVERY_WINDOW_S) -> InterruptedClaim | None:
    """The newest claim if it committed within ``window_s`` before ``now`` and no screen showed it."""
    newest = conn.execute("SELECT number, created_at FROM claims ORDER BY number DESC LIMIT 1").fetchone()
    if newest is None:
        return None
    number, at = int(newest[0]), float(newest[1])
    if number <= last_shown(conn) or not 0.0 <= now - at < window_s:
        return None
    return InterruptedClaim(number, at)
