"""The counter's domain tables (DESIGN §5), appended after the store's own migrations.

Identity fields are sealed (AES-GCM, see :mod:`appliance.store.sealing`) and looked up through blind
indexes; amounts are integer cents; a serial number can be dispensed once (a UNIQUE index, so even a
bug in the workflow cannot hand the same box out twice).
"""

from __future__ import annotations

from appliance.store.database import Migration

COUNTER_TABLES = Migration(
    6,
    "counter domain",
    """
    CREATE TABLE patients (
        id                    INTEGER PRIMARY KEY,
        card_index            TEXT UNIQUE,      -- blind index of NIR|rank|birth date (card beneficiary)
        ins_index             TEXT UNIQUE,      -- blind index of the INS matricule
        traits_index          TEXT,             -- blind index of the traits (search without a card)
        nir                   BLOB,
        rank                  INTEGER,
        matricule             BLOB,
        oid                   TEXT,
        birth_name            BLOB NOT NULL,
        first_names           BLOB NOT NULL,
        sex                   BLOB NOT NULL,
        birth_date            BLOB NOT NULL,
        birth_place           BLOB,
        status                TEXT NOT NULL CHECK (status IN ('PROV', 'RECUP', 'VALI', 'QUAL')),
        qualification_prompts INTEGER NOT NULL DEFAULT 0,
        created_at            REAL NOT NULL,
        updated_at            REAL NOT NULL
    );
    CREATE INDEX patients_traits ON patients(traits_index);

    CREATE TABLE identity_history (
        id          INTEGER PRIMARY KEY,
        patient_id  INTEGER NOT NULL REFERENCES patients(id),
        status      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        operator_id INTEGER REFERENCES operators(id),
        at          REAL NOT NULL
    );

    CREATE TABLE amo_rights (
        id         INTEGER PRIMARY KEY,
        patient_id INTEGER NOT NULL REFERENCES patients(id),
        regime     TEXT NOT NULL,
        fund       TEXT NOT NULL,
        valid_from TEXT NOT NULL,
        valid_to   TEXT NOT NULL,
        ald        INTEGER NOT NULL,
        c2s        INTEGER NOT NULL,
        at         REAL NOT NULL
    );

    CREATE TABLE amc_rights (
        id            INTEGER PRIMARY KEY,
        patient_id    INTEGER NOT NULL REFERENCES patients(id),
        amc_number    TEXT NOT NULL,
        member_number BLOB NOT NULL,
        valid_from    TEXT NOT NULL,
        valid_to      TEXT NOT NULL,
        coverage_pct  INTEGER NOT NULL,
        accreditation TEXT,
        conventions   TEXT NOT NULL DEFAULT '',
        at            REAL NOT NULL
    );

    CREATE TABLE prescriptions (
        prescription_id TEXT PRIMARY KEY NOT NULL,
        patient_id      INTEGER NOT NULL REFERENCES patients(id),
        prescriber      TEXT NOT NULL,
        prescribed_on   TEXT,
        renewals        INTEGER NOT NULL DEFAULT 0,
        status          TEXT NOT NULL CHECK (status IN ('dispensed', 'dispensed-degraded')),
        at              REAL NOT NULL
    );
    CREATE TABLE prescription_lines (
        prescription_id TEXT NOT NULL REFERENCES prescriptions(prescription_id),
        line_no         INTEGER NOT NULL,
        label           TEXT NOT NULL,
        quantity        INTEGER NOT NULL CHECK (quantity > 0),
        cip13           TEXT,
        ald             INTEGER NOT NULL DEFAULT 0,
        entered         INTEGER NOT NULL DEFAULT 0,  -- typed from paper in degraded mode
        PRIMARY KEY (prescription_id, line_no)
    );

    CREATE TABLE batches (
        id        INTEGER PRIMARY KEY,
        number    INTEGER NOT NULL UNIQUE,
        status    TEXT NOT NULL CHECK (status IN ('open', 'closed', 'accepted', 'rejected')),
        opened_at REAL NOT NULL,
        closed_at REAL
    );
    CREATE UNIQUE INDEX batches_one_open ON batches(status) WHERE status = 'open';

    CREATE TABLE dispensations (
        id              INTEGER PRIMARY KEY,
        patient_id      INTEGER NOT NULL REFERENCES patients(id),
        prescription_id TEXT REFERENCES prescriptions(prescription_id),
        operator_id     INTEGER NOT NULL REFERENCES operators(id),
        renewal         INTEGER NOT NULL DEFAULT 0,
        annotation      TEXT NOT NULL DEFAULT '',
        discrepancies   TEXT NOT NULL DEFAULT '[]',
        at              REAL NOT NULL
    );
    CREATE TABLE dispensation_lines (
        id              INTEGER PRIMARY KEY,
        dispensation_id INTEGER NOT NULL REFERENCES dispensations(id),
        line_no         INTEGER,
        cip13           TEXT NOT NULL,
        gtin            TEXT NOT NULL,
        serial          TEXT,
        lot             TEXT,
        expiry          TEXT,
        substitution    INTEGER NOT NULL DEFAULT 0,
        total_cents     INTEGER NOT NULL,
        amo_cents       INTEGER NOT NULL,
        amc_cents       INTEGER NOT NULL,
        patient_cents   INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX dispensation_lines_serial ON dispensation_lines(gtin, serial) WHERE serial IS NOT NULL;

    CREATE TABLE claims (
        id              INTEGER PRIMARY KEY,
        number          INTEGER NOT NULL UNIQUE,
        batch_id        INTEGER NOT NULL REFERENCES batches(id),
        dispensation_id INTEGER NOT NULL UNIQUE REFERENCES dispensations(id),
        patient_id      INTEGER NOT NULL REFERENCES patients(id),
        total_cents     INTEGER NOT NULL,
        amo_cents       INTEGER NOT NULL,
        amc_cents       INTEGER NOT NULL,
        patient_cents   INTEGER NOT NULL,
        to_pay_cents    INTEGER NOT NULL,
        amo_tiers_payant INTEGER NOT NULL,
        amc_tiers_payant INTEGER NOT NULL,
        amc_accreditation TEXT,
        status          TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'rejected')),
        created_at      REAL NOT NULL
    );

    CREATE TABLE acknowledgements (
        id       INTEGER PRIMARY KEY,
        batch_id INTEGER NOT NULL REFERENCES batches(id),
        positive INTEGER NOT NULL,
        reason   TEXT NOT NULL DEFAULT '',
        at       REAL NOT NULL
    );

    CREATE TABLE rejections (
        id       INTEGER PRIMARY KEY,
        claim_id INTEGER NOT NULL REFERENCES claims(id),
        reason   TEXT NOT NULL,
        action   TEXT NOT NULL DEFAULT '',
        at       REAL NOT NULL
    );

    CREATE TABLE execution_data (
        prescription_id TEXT NOT NULL,
        renewal         INTEGER NOT NULL DEFAULT 0,
        claim_id        INTEGER NOT NULL REFERENCES claims(id),
        step1           TEXT NOT NULL CHECK (step1 IN ('sent', 'queued')),
        step2           TEXT CHECK (step2 IN ('queued', 'sent')),
        PRIMARY KEY (prescription_id, renewal)
    );

    CREATE TABLE dmp_documents (
        id         INTEGER PRIMARY KEY,
        patient_id INTEGER NOT NULL REFERENCES patients(id),
        kind       TEXT NOT NULL,
        visibility TEXT NOT NULL,
        status     TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'refused')),
        at         REAL NOT NULL
    );
    """,
)


COUNTER_LOOKUP_INDEXES = Migration(
    7,
    "indexes for per-session look-ups",
    """
    -- Found by bench/session.py on a five-year database (600,000 sessions): without them the stored
    -- mutuelle rights, the renewals already dispensed and a batch's claims were full-table scans
    -- (40 to 70 ms each at p95, once or twice per session).
    CREATE INDEX amc_rights_patient ON amc_rights(patient_id, id);
    CREATE INDEX dispensations_prescription ON dispensations(prescription_id);
    CREATE INDEX claims_batch ON claims(batch_id);
    """,
)


IDENTITY_CHECKS = Migration(
    10,
    "identity document checks and doubtful identities",
    """
    -- What came of each request for an identity document (RNIV): which document (and, for a minor
    -- shown with a family record book or a birth certificate, the guardian's), or that none was at
    -- hand, or that the patient refused, or that it contradicted the INS traits; always with the
    -- professional who looked. A contradiction flags the identity as doubtful: never qualified while
    -- the flag stands.
    ALTER TABLE patients ADD COLUMN doubtful INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE identity_checks (
        id                INTEGER PRIMARY KEY,
        patient_id        INTEGER NOT NULL REFERENCES patients(id),
        outcome           TEXT NOT NULL CHECK (outcome IN ('checked', 'absent', 'refused', 'contradicts')),
        document          TEXT,
        guardian_document TEXT,
        operator_id       INTEGER NOT NULL REFERENCES operators(id),
        at                REAL NOT NULL
    );
    CREATE INDEX identity_checks_patient ON identity_checks(patient_id, id);
    """,
)


DP_AND_MESSAGES = Migration(
    13,
    "Dossier Pharmaceutique consent and secure messages",
    """
    -- The patient's answer about their Dossier Pharmaceutique (latest row wins), with who recorded it.
    CREATE TABLE dp_consents (
        id          INTEGER PRIMARY KEY,
        patient_id  INTEGER NOT NULL REFERENCES patients(id),
        agreed      INTEGER NOT NULL CHECK (agreed IN (0, 1)),
        operator_id INTEGER NOT NULL REFERENCES operators(id),
        at          REAL NOT NULL
    );
    CREATE INDEX dp_consents_patient ON dp_consents(patient_id, id);
    -- Messages sent over MSSanté: the receipt and the DMP documents to the patient's Mon Espace Santé
    -- mailbox, the dispensing summary to the prescriber. The row names what to send; the mail itself
    -- is built when it is sent, from the sealed records (no identity in the outbox).
    CREATE TABLE secure_messages (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL CHECK (kind IN ('receipt', 'dmp-document', 'prescriber-summary')),
        patient_id      INTEGER NOT NULL REFERENCES patients(id),
        claim_id        INTEGER REFERENCES claims(id),
        dmp_document_id INTEGER REFERENCES dmp_documents(id),
        status          TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'sent', 'refused')),
        at              REAL NOT NULL
    );
    CREATE INDEX secure_messages_claim ON secure_messages(claim_id);
    """,
)
