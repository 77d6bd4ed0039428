"""What reconciliation works on and what it says: remittances, bank credits, claims expected to be paid,
the tolerances, and the statuses of the result. Amounts are integer cents everywhere.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import date


class PaymentsFileError(ValueError):
    """A remittance or bank file that cannot be read: the message names the file and the line."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source = source
        self.line = line
        self.problem = problem
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


class Part(enum.StrEnum):
    """Which share of a claim a payer pays the pharmacy (tiers payant)."""

    AMO = "AMO"
    AMC = "AMC"


class LineStatus(enum.StrEnum):
    """What a remittance says about one part of one claim."""

    PAID = "paid"
    PARTIAL = "partial"  # paid less than billed (a rejection entity may say why)
    REJECTED = "rejected"  # nothing paid


class Status(enum.StrEnum):
    """The outcome for one expected part of one claim (and for credits and unknown remittance lines)."""

    MATCHED = "matched"
    """Remitted in full and every remittance that paid it found on the bank statement."""
    PAID_NOT_CREDITED = "paid-not-credited"
    """The payer says it paid, but no bank credit for it came within the window the statement covers."""
    AWAITING_CREDIT = "awaiting-credit"
    """Remitted recently: the bank credit may still come (the statement does not cover the window yet)."""
    PARTIAL = "partial"
    """Paid less than expected; the remainder is outstanding."""
    REJECTED = "rejected"
    """Rejected by the payer (in the remittance, or by the batch's acknowledgement)."""
    UNPAID_OVERDUE = "unpaid-overdue"
    """No remittance after the configured delay."""
    PENDING = "pending"
    """No remittance yet, still within the delay."""
    CREDIT_UNKNOWN = "credited-unknown"
    """A payer's bank credit that no remittance explains."""
    REMITTED_UNKNOWN_CLAIM = "remitted-unknown-claim"
    """A remittance line for a claim this pharmacy does not know (or for a part it did not bill)."""


@dataclass(frozen=True, slots=True)
class RemittanceLine:
    """One part (AMO or AMC) of one claim in one remittance."""

    remittance_id: str
    claim_number: int
    part: Part
    paid_cents: int
    status: LineStatus
    billed_cents: int | None = None
    batch_number: str = ""
    payer_code: str = ""
    """The fund (AMO) or AMC number the part was billed to, when the remittance says."""
    reason_code: str = ""
    reason: str = ""
    action: str = ""
    source: str = ""
    """File and line (or ``sandbox:<id>``) it was read from."""


class AdjustmentKind(enum.StrEnum):
    """A movement of a payment that pays or takes back money outside the claims' parts."""

    WITHHOLDING = "withholding"
    """A debt recovered on the payment (NOEMIE PS entity 250, *retenue*): usually negative."""
    LUMP_SUM = "lump-sum"
    """A one-off or flat-rate payment not tied to a claim (entity 261: ROSP, forfaits...)."""
    CORRECTION = "correction"
    """A claim part paid back (an AMO or AMC part whose paid amount is negative, sign ``N``)."""


@dataclass(frozen=True, slots=True)
class Adjustment:
    """What a payment adds to (positive) or takes from (negative) the transfer besides the parts it pays."""

    remittance_id: str
    kind: AdjustmentKind
    amount_cents: int
    """Signed: the transfer is the parts paid plus every adjustment."""
    reference: str = ""
    """The debt's reference (250), the payment code (261), the claim number (correction)."""
    nature: str = ""
    """The debt's nature code (250, e.g. ``IND`` indu sur prestations), the part (correction)."""
    operation: str = ""
    """The recovery operation code (250, e.g. ``RPR`` retenue sur prestation)."""
    label: str = ""
    recorded_on: date | None = None
    """When the debt was recorded (250)."""
    balance_cents: int | None = None
    """What is left of the debt after this recovery (250), when the payer says."""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Remittance:
    """A payer's payment notice (one payment reference): the lines it pays or rejects.

    ``total_cents`` is what the payer transferred for it: the parts paid plus the adjustments
    (withholdings are negative); a remittance of rejections only has 0 and needs no bank credit, nor
    does one whose withholdings take all it paid.
    """

    remittance_id: str
    payer: str
    payer_name: str
    paid_on: date
    payment_reference: str
    lines: tuple[RemittanceLine, ...]
    source: str = ""
    adjustments: tuple[Adjustment, ...] = ()

    @property
    def paid_cents(self) -> int:
        """What the parts of the claims were paid."""
        return sum(line.paid_cents for line in self.lines)

    @property
    def adjusted_cents(self) -> int:
        """What the withholdings, flat-rate payments and corrections add (negative: take)."""
        return sum(a.amount_cents for a in self.adjustments)

    @property
    def total_cents(self) -> int:
        return self.paid_cents + self.adjusted_cents


@dataclass(frozen=True, slots=True)
class BankCredit:
    """One credit on the bank statement (debits are not kept)."""

    key: str
    """Stable identity across re-imports and overlapping statements."""
    booked_on: date
    amount_cents: int
    text: str
    """Everything the bank says about it (labels, references, debtor name), to search references in."""
    value_on: date | None = None
    debtor: str = ""
    bank_reference: str = ""
    account: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class BankStatement:
    credits: tuple[BankCredit, ...]
    debits: int
    """How many debit entries were skipped."""
    start: date | None
    end: date | None
    """Last day the statement covers (closing balance date, or the last booking)."""
    source: str
    format: str
    warnings: tuple[str, ...] = ()
    """What was skipped and why (a statement of a non-EUR account), for the report."""


@dataclass(frozen=True, slots=True)
class ExpectedPart:
    """A claim part the pharmacy expects a payer to pay (tiers payant)."""

    claim_number: int
    part: Part
    expected_cents: int
    billed_on: date
    batch_number: str = ""
    payer: str = ""
    """AMC number for the AMC part; empty for the AMO (any compulsory fund)."""
    rejected_reason: str = ""
    """Set when the batch's acknowledgement (ARL) already rejected the claim."""
    rejected_action: str = ""


@dataclass(frozen=True, slots=True)
class ManualMatch:
    """A pharmacist's decision, stronger than the automatic rules: this remittance was paid by this
    credit (``credit_key``), or was not paid by any credit of the statement (``credit_key`` None)."""

    remittance_id: str
    credit_key: str | None
    operator_id: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class MatchConfig:
    """Tolerances. Every one is configurable (``[payments]`` table of a TOML file)."""

    amount_tolerance_cents: int = 0
    """How far a credit may differ from the remittances it pays (bank charges, rounding)."""
    credit_days_before: int = 1
    """A credit may be booked this many days before the remittance's payment date..."""
    credit_days_after: int = 10
    """...and this many days after it."""
    unpaid_after_days: int = 30
    """A claim part with no remittance this many days after billing is overdue (AMO)."""
    amc_unpaid_after_days: int = 45
    """Same for the mutuelles, which pay later."""
    max_group: int = 24
    """Most remittances one credit is searched to pay (grouped transfers)."""
    search_budget: int = 200_000
    """Most combinations tried per credit; beyond, the credit is left for a manual match."""
    min_reference_length: int = 6
    """Shorter payment references are not searched in bank labels (too many accidental hits)."""
    payer_aliases: tuple[tuple[str, str], ...] = ()
    """Extra (payer code, name found on bank labels) pairs, e.g. ("88888888", "HARMONIE")."""

    @classmethod
    def from_mapping(cls, values: dict[str, object]) -> MatchConfig:
        """From a ``[payments]`` TOML table; unknown keys are refused (a typo must not pass silently)."""
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown [payments] settings: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        kwargs: dict[str, object] = {}
        for name, value in values.items():
            if name == "payer_aliases":
                if not isinstance(value, dict):
                    raise ValueError("payer_aliases is a table of payer code = name or [names]")
                pairs: list[tuple[str, str]] = []
                for code, names in value.items():
                    for alias in [names] if isinstance(names, str) else list(names):
                        pairs.append((str(code), str(alias)))
                kwargs[name] = tuple(pairs)
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"[payments] {name} must be a non-negative integer, not {value!r}")
            else:
                kwargs[name] = value
        return cls(**kwargs)  # type: ignore[arg-type]

    def unpaid_after(self, part: Part) -> int:
        return self.amc_unpaid_after_days if part is Part.AMC else self.unpaid_after_days


@dataclass(frozen=True, slots=True)
class Advice:
    reason: str
    action: str
    resubmit: bool


REJECTION_CODES: dict[str, Advice] = {
    "TARI": Advice(
        "Table de prix de l'organisme non à jour (prix ou taux différent de celui facturé)",
        "Ne pas refacturer : attendre la mise à jour de la table de l'organisme, le complément sera versé"
        " sur un prochain retour ; réclamer s'il n'est pas venu après le délai",
        False,
    ),
    "DROI": Advice(
        "Droits du bénéficiaire non ouverts à la date des soins",
        "Vérifier les droits (ADRi ou attestation), corriger la FSE puis la refacturer dans un nouveau lot",
        True,
    ),
    "PRES": Advice(
        "Date de prescription incohérente avec la date d'exécution",
        "Corriger la date de prescription puis refacturer la FSE",
        True,
    ),
    "DOUB": Advice(
        "Facture déjà payée (doublon)",
        "Ne pas refacturer : retrouver le premier paiement de cette facture",
        False,
    ),
    "ADHE": Advice(
        "Assuré inconnu ou non couvert par l'organisme complémentaire",
        "Vérifier l'attestation mutuelle ; refacturer la part complémentaire à l'organisme qui couvre,"
        " ou la demander au patient",
        True,
    ),
    "PIEC": Advice(
        "Pièce justificative manquante ou illisible",
        "Numériser et transmettre de nouveau l'ordonnance (SCOR) ; ne pas refacturer",
        False,
    ),
}
"""Rejection codes (as the sandbox's payers write them in the 294 entity) -> reason and advised action; a
code not listed keeps the payer's own label (:func:`advice_for`)."""

GENERIC_ACTION = "Lire le motif, corriger la FSE si besoin puis la refacturer dans un nouveau lot"
PARTIAL_ACTION = "Réclamer le complément à l'organisme s'il n'est pas versé sur un prochain retour"
OVERDUE_ACTION = "Relancer l'organisme : aucun retour de paiement pour cette facture"
NOT_CREDITED_ACTION = "Demander à la banque ou à l'organisme la date et la référence du virement"
UNKNOWN_CREDIT_ACTION = (
    "Retrouver le retour de l'organisme (NOEMIE) qui explique ce virement, ou le rapprocher à la main"
)


def advice_for(code: str, reason: str = "", action: str = "") -> Advice:
    """The reason and advised action of a rejection: the code's table entry, else what the payer wrote."""
    known = REJECTION_CODES.get(code.strip().upper())
    if known is not None:
        return Advice(reason or known.reason, action or known.action, known.resubmit)
    return Advice(reason or f"Rejet {code}".strip(), action or GENERIC_ACTION, True)


def normalise(text: str) -> str:
    """Upper-case ASCII letters and digits only: how references and names are compared with bank labels."""
    stripped = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Z0-9]", "", stripped.upper())
