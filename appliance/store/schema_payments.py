"""Payments reconciliation tables (issue 8), appended after the counter's migrations.

Imports are idempotent: remittance lines, bank credits and remittances have natural keys (``INSERT OR
IGNORE``), so importing the same files again adds nothing. ``payment_matches`` and
``payment_part_status`` hold the last run's results and are replaced as a whole by each run, in one
transaction. ``payment_manual_matches`` is append-only (a trigger refuses UPDATE and DELETE): the
latest decision per remittance is the one that counts, and every decision also has its row in the
audit journal. Amounts are integer cents.
"""

from __future__ import annotations

from appliance.store.database import Migration

PAYMENTS_TABLES = Migration(
    8,
    "payments reconciliation",
    """
    CREATE TABLE payment_remittances (
        id                TEXT PRIMARY KEY NOT NULL,  -- payer code:payment reference
        payer             TEXT NOT NULL,
        payer_name        TEXT NOT NULL DEFAULT '',
        paid_on           TEXT NOT NULL,
        payment_reference TEXT NOT NULL,
        source            TEXT NOT NULL DEFAULT '',
        imported_at       REAL NOT NULL
    );

    CREATE TABLE payment_remittance_lines (
        id            INTEGER PRIMARY KEY,
        remittance_id TEXT NOT NULL REFERENCES payment_remittances(id),
        claim_number  INTEGER NOT NULL,
        part          TEXT NOT NULL CHECK (part IN ('AMO', 'AMC')),
        payer_code    TEXT NOT NULL DEFAULT '',
        batch_number  TEXT NOT NULL DEFAULT '',
        billed_cents  INTEGER,
        paid_cents    INTEGER NOT NULL CHECK (paid_cents >= 0),
        status        TEXT NOT NULL CHECK (status IN ('paid', 'partial', 'rejected')),
        reason_code   TEXT NOT NULL DEFAULT '',
        reason        TEXT NOT NULL DEFAULT '',
        action        TEXT NOT NULL DEFAULT '',
        source        TEXT NOT NULL DEFAULT '',
        line_key      TEXT NOT NULL UNIQUE  -- remittance|claim|part|paid|billed|status|code: read twice, kept once
    );
    CREATE INDEX payment_remittance_lines_claim ON payment_remittance_lines(claim_number, part);

    CREATE TABLE bank_credits (
        key            TEXT PRIMARY KEY NOT NULL,
        booked_on      TEXT NOT NULL,
        value_on       TEXT,
        amount_cents   INTEGER NOT NULL CHECK (amount_cents > 0),
        text           TEXT NOT NULL DEFAULT '',
        debtor         TEXT NOT NULL DEFAULT '',
        bank_reference TEXT NOT NULL DEFAULT '',
        account        TEXT NOT NULL DEFAULT '',
        source         TEXT NOT NULL DEFAULT '',
        imported_at    REAL NOT NULL
    );
    CREATE INDEX bank_credits_booked ON bank_credits(booked_on);

    CREATE TABLE payment_statements (
        source     TEXT NOT NULL,
        format     TEXT NOT NULL,
        start_on   TEXT,
        end_on     TEXT,
        credits    INTEGER NOT NULL,
        PRIMARY KEY (source, start_on, end_on)
    );

    CREATE TABLE payment_matches (
        remittance_id TEXT PRIMARY KEY NOT NULL REFERENCES payment_remittances(id),
        credit_key    TEXT NOT NULL REFERENCES bank_credits(key),
        rule          TEXT NOT NULL
    );
    CREATE INDEX payment_matches_credit ON payment_matches(credit_key);

    CREATE TABLE payment_part_status (
        claim_number   INTEGER NOT NULL,
        part           TEXT NOT NULL CHECK (part IN ('AMO', 'AMC')),
        status         TEXT NOT NULL,
        expected_cents INTEGER NOT NULL,
        remitted_cents INTEGER NOT NULL,
        credited_cents INTEGER NOT NULL,
        reason         TEXT NOT NULL DEFAULT '',
        action         TEXT NOT NULL DEFAULT '',
        as_of          TEXT NOT NULL,
        PRIMARY KEY (claim_number, part)
    ) WITHOUT ROWID;

    CREATE TABLE payment_manual_matches (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        remittance_id TEXT NOT NULL REFERENCES payment_remittances(id),
        credit_key    TEXT REFERENCES bank_credits(key),  -- NULL: "not paid by any credit" (unlinked)
        operator_id   INTEGER REFERENCES operators(id),
        note          TEXT NOT NULL DEFAULT '',
        audit_seq     INTEGER NOT NULL,
        at            REAL NOT NULL
    );
    CREATE INDEX payment_manual_matches_remittance ON payment_manual_matches(remittance_id, id);
    CREATE TRIGGER payment_manual_matches_no_update BEFORE UPDATE ON payment_manual_matches
    BEGIN
        SELECT RAISE(ABORT, 'manual matches are append-only: record a new decision instead');
    END;
    CREATE TRIGGER payment_manual_matches_no_delete BEFORE DELETE ON payment_manual_matches
    BEGIN
        SELECT RAISE(ABORT, 'manual matches are append-only: record a new decision instead');
    END;
    """,
)

PAYMENTS_ADJUSTMENTS = Migration(
    12,
    "payments: withholdings and other adjustments of a remittance",
    """
    -- What a payment adds or takes besides the parts it pays (NOEMIE PS): debts withheld (250
    -- retenues, negative), flat-rate payments (261), parts paid back (a part paid with sign N). The
    -- remittance's transfer is its lines' paid_cents plus these amount_cents. Additive only: an older
    -- release ignores the table (and then sees the payment's parts only). adjustment_key is the natural
    -- key, so importing the same file again adds nothing.
    CREATE TABLE payment_adjustments (
        id             INTEGER PRIMARY KEY,
        remittance_id  TEXT NOT NULL REFERENCES payment_remittances(id),
        kind           TEXT NOT NULL CHECK (kind IN ('withholding', 'lump-sum', 'correction')),
        amount_cents   INTEGER NOT NULL,
        reference      TEXT NOT NULL DEFAULT '',
        nature         TEXT NOT NULL DEFAULT '',
        operation      TEXT NOT NULL DEFAULT '',
        label          TEXT NOT NULL DEFAULT '',
        recorded_on    TEXT,
        balance_cents  INTEGER,
        source         TEXT NOT NULL DEFAULT '',
        adjustment_key TEXT NOT NULL UNIQUE
    );
    CREATE INDEX payment_adjustments_remittance ON payment_adjustments(remittance_id);
    """,
)
