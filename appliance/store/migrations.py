"""The schema, as an ordered list of forward migrations (DESIGN §5: versioned, run forward on start).

Rules for whoever appends here (the domain tables come after the store's):

- the list is plain and module-level, numbered 1, 2, 3… without holes; :func:`migrate` refuses
  anything else;
- a shipped migration is never edited or removed; a change is a new migration appended at the end;
- each migration runs in one transaction with foreign keys ON (SQLite cannot switch them off inside a
  transaction), and must leave no foreign-key violation behind.
"""

from __future__ import annotations

from appliance.store.database import Migration

PHARMACY = Migration(
    1,
    "pharmacy settings",
    """
    -- Key/value settings of this pharmacy (FINESS, name, options such as the number of visits the
    -- identity-qualification prompt returns). Values are text; callers encode/decode.
    CREATE TABLE pharmacy (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
)

OPERATORS = Migration(
    2,
    "operators",
    """
    -- One row per person at the counter: no shared account. Names are unique regardless of case.
    -- Rows are never deleted (the audit journal refers to them); a departed colleague is deactivated.
    CREATE TABLE operators (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE COLLATE NOCASE CHECK (length(trim(name)) > 0),
        role            TEXT NOT NULL,
        pin_hash        TEXT NOT NULL,
        failed_attempts INTEGER NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
        locked_until    REAL,
        active          INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
        created_at      REAL NOT NULL
    );
    """,
)

AUDIT = Migration(
    3,
    "audit journal",
    """
    -- Append-only, hash-chained journal of who did what (see appliance.store.audit).
    -- AUTOINCREMENT keeps the highest seq ever used in sqlite_sequence, so deleting the last rows
    -- leaves a trace that verify() reports.
    CREATE TABLE audit_journal (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        at          REAL NOT NULL,
        operator_id INTEGER REFERENCES operators(id),
        action      TEXT NOT NULL CHECK (length(action) > 0),
        subject     TEXT NOT NULL DEFAULT '',
        details     TEXT NOT NULL DEFAULT '{}',
        prev_hash   TEXT NOT NULL,
        hash        TEXT NOT NULL UNIQUE
    );
    CREATE INDEX audit_journal_operator ON audit_journal(operator_id, seq);
    CREATE TRIGGER audit_journal_no_update BEFORE UPDATE ON audit_journal
    BEGIN
        SELECT RAISE(ABORT, 'audit journal is append-only: rows cannot be updated');
    END;
    CREATE TRIGGER audit_journal_no_delete BEFORE DELETE ON audit_journal
    BEGIN
        SELECT RAISE(ABORT, 'audit journal is append-only: rows cannot be deleted');
    END;
    """,
)

OUTBOX = Migration(
    4,
    "outbox",
    """
    -- Messages that must leave the box, written with the change that causes them (see
    -- appliance.store.outbox). `key` is the idempotency key receivers dedupe on.
    CREATE TABLE outbox (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        stream          TEXT NOT NULL CHECK (length(stream) > 0),
        key             TEXT NOT NULL UNIQUE CHECK (length(key) > 0),
        payload         TEXT NOT NULL,
        created_at      REAL NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error      TEXT,
        delivered_at    REAL,
        response        TEXT
    );
    CREATE INDEX outbox_undelivered ON outbox(stream, id) WHERE delivered_at IS NULL;
    """,
)

NUMBERING = Migration(
    5,
    "numbering counters",
    """
    -- Gapless counters (claim numbers, batch numbers…): one row per series, last number handed out.
    CREATE TABLE numbering (
        series TEXT PRIMARY KEY NOT NULL,
        last   INTEGER NOT NULL CHECK (last >= 0)
    ) WITHOUT ROWID;
    """,
)

from appliance.store.schema_counter import (  # noqa: E402 - the domain comes after the store
    COUNTER_LOOKUP_INDEXES,
    COUNTER_TABLES,
    DP_AND_MESSAGES,
    IDENTITY_CHECKS,
)
from appliance.store.schema_payments import PAYMENTS_ADJUSTMENTS, PAYMENTS_TABLES  # noqa: E402

OPERATOR_RPPS = Migration(
    9,
    "operator RPPS",
    """
    -- The RPPS number on a pharmacist's CPS, so a card at the reader maps to one operator (CPS login).
    -- Optional (preparers have no CPS) and unique where set: one card, one person. Additive only.
    ALTER TABLE operators ADD COLUMN rpps TEXT;
    CREATE UNIQUE INDEX operators_rpps ON operators(rpps) WHERE rpps IS NOT NULL;
    """,
)

CLAIM_RESUBMISSIONS = Migration(
    11,
    "claims sent again after a negative acknowledgement",
    """
    -- A claim (FSE) refused by a negative ARL is corrected and sent again, with its number, in a later
    -- batch: claims.batch_id moves to that batch, and this table keeps every trip (which batch it left,
    -- which it joined, who decided, what the correction changed). Rows are never changed or removed.
    -- The claim keeps its number and its rejections rows; no claim or batch number is skipped.
    CREATE TABLE claim_resubmissions (
        id            INTEGER PRIMARY KEY,
        claim_id      INTEGER NOT NULL REFERENCES claims(id),
        from_batch_id INTEGER NOT NULL REFERENCES batches(id),
        to_batch_id   INTEGER NOT NULL REFERENCES batches(id),
        operator_id   INTEGER NOT NULL REFERENCES operators(id),
        corrections   TEXT NOT NULL DEFAULT '{}',  -- JSON: column -> [before, after], {} when sent as it was
        at            REAL NOT NULL,
        UNIQUE (claim_id, from_batch_id),           -- a claim leaves a refused batch once
        CHECK (to_batch_id <> from_batch_id)
    );
    CREATE INDEX claim_resubmissions_to ON claim_resubmissions(to_batch_id);
    CREATE TRIGGER claim_resubmissions_no_update BEFORE UPDATE ON claim_resubmissions
    BEGIN
        SELECT RAISE(ABORT, 'claim resubmissions are history: rows cannot be updated');
    END;
    CREATE TRIGGER claim_resubmissions_no_delete BEFORE DELETE ON claim_resubmissions
    BEGIN
        SELECT RAISE(ABORT, 'claim resubmissions are history: rows cannot be deleted');
    END;
    -- The compulsory-insurance fund the claim is addressed to (organisme destinataire: regime + fund
    -- code of the rights it was billed with), sent with the batch. A resubmission re-addresses it to
    -- the rights read again (ADRi). NULL for claims written before this migration or by an older
    -- release (the batch then names no fund, as before).
    ALTER TABLE claims ADD COLUMN amo_regime TEXT;
    ALTER TABLE claims ADD COLUMN amo_fund TEXT;
    """,
)

PRESCRIBER_MAILBOX = Migration(
    14,
    "the prescriber's MSSanté address",
    """
    -- The prescriber's MSSanté mailbox as the ePrescription gives it: the dispensing summary goes there
    -- when the patient agrees (secure_messages kind 'prescriber-summary'). NULL for a prescription typed
    -- from paper, stored before this migration, or whose prescriber has none. Additive only.
    ALTER TABLE prescriptions ADD COLUMN prescriber_mailbox TEXT;
    """,
)

AUDIT_KEYED = Migration(
    15,
    "keyed audit chain",
    """
    -- The audit chain becomes keyed: HMAC-SHA256 under a sub-key of the field key file, kept outside
    -- the database (see appliance.store.audit). hash_version 0 = the plain SHA-256 rows written
    -- before, still checked the old way; 1 = keyed. An older release (after a roll-back) writes 0.
    ALTER TABLE audit_journal ADD COLUMN hash_version INTEGER NOT NULL DEFAULT 0;
    -- The first seq that must be keyed: a plain row at or after it was written without the key.
    INSERT INTO pharmacy(key, value)
    SELECT 'audit.keyed_from', COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_journal'), 0) + 1;
    """,
)

MIGRATIONS: list[Migration] = [
    PHARMACY,
    OPERATORS,
    AUDIT,
    OUTBOX,
    NUMBERING,
    COUNTER_TABLES,
    COUNTER_LOOKUP_INDEXES,
    PAYMENTS_TABLES,
    OPERATOR_RPPS,
    IDENTITY_CHECKS,
    CLAIM_RESUBMISSIONS,
    PAYMENTS_ADJUSTMENTS,
    DP_AND_MESSAGES,
    PRESCRIBER_MAILBOX,
    AUDIT_KEYED,
]
"""All migrations, in order. The domain's migrations are appended after these (versions 6…)."""
