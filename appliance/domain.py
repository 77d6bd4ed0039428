"""The counter's domain vocabulary (DESIGN §1): people, identities, rights, prescriptions, products.

Plain frozen dataclasses with no behaviour that needs a store or a network, so the workflow, the
store, the teleservice adapters and the sandbox all speak the same types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum


class Role(StrEnum):
    """Operator roles; only pharmacists (titulaire, pharmacien) may validate a dispensation."""

    TITULAIRE = "titulaire"
    PHARMACIEN = "pharmacien"
    PREPARATEUR = "preparateur"

    @property
    def may_validate(self) -> bool:
        return self is not Role.PREPARATEUR


class Act(StrEnum):
    """The kinds of professional act the counter asks a logged-in operator for, so that what each role
    may do is a setting (a préparateur acts under a pharmacist's responsibility). Validating a
    dispensation is not among them: it stays a pharmacist's (:attr:`Role.may_validate`)."""

    IDENTITY = "identity"
    """Search, choice among INSi identities, traits confirmation, identity document."""
    PRESCRIPTION = "prescription"
    """Confirm, reject, accept a prescription written with other traits, type paper lines."""
    DISPENSATION = "dispensation"
    """Box to line, box removed, annotation."""
    DMP = "dmp"
    """Feed a document to the patient's DMP."""
    DP = "dp"
    """Record the Dossier Pharmaceutique consent, consult it."""
    MESSAGING = "messaging"
    """Send the dispensing summary to the prescriber (with the patient's agreement)."""
    CLAIMS = "claims"
    """The last claims, with the patients' initials."""
    BATCH = "batch"
    """Close and send a batch, resubmit rejected claims."""
    UNLOCK = "unlock"
    """Lift a colleague's PIN lock-out."""


DEFAULT_ACTS: dict[Role, frozenset[Act]] = {
    Role.TITULAIRE: frozenset(Act),
    Role.PHARMACIEN: frozenset(Act),
    Role.PREPARATEUR: frozenset(Act) - {Act.DMP, Act.MESSAGING, Act.UNLOCK},
}
"""What each role may do unless the pharmacy configures otherwise: préparateurs handle identities,
prescriptions, boxes, the DP and batches; the DMP, the prescriber's summary and unlocking colleagues
stay with the pharmacists."""


class IdentityStatus(StrEnum):
    """RNIV statuses of a patient identity."""

    PROV = "PROV"
    """Provisional: typed or read from a card, not confirmed by INSi."""
    RECUP = "RECUP"
    """Retrieved from INSi, no identity document checked."""
    VALI = "VALI"
    """Identity document checked, INS not retrieved."""
    QUAL = "QUAL"
    """Qualified: INSi + document checked, or apCV."""


class IdentityDocument(StrEnum):
    """Identity documents of high trust the RNIV accepts for qualifying an identity.

    A minor may also show a family record book or a birth certificate, together with an identity
    document of their legal guardian (:attr:`for_minor_only`).
    """

    PASSEPORT = "passeport"
    CNI = "cni"
    TITRE_SEJOUR = "titre-sejour"
    LIVRET_FAMILLE = "livret-famille"
    ACTE_NAISSANCE = "acte-naissance"

    @property
    def for_minor_only(self) -> bool:
        return self in (IdentityDocument.LIVRET_FAMILLE, IdentityDocument.ACTE_NAISSANCE)

    @property
    def label(self) -> str:
        return _DOCUMENT_LABELS[self]


_DOCUMENT_LABELS = {
    IdentityDocument.PASSEPORT: "Passeport",
    IdentityDocument.CNI: "Carte nationale d'identité",
    IdentityDocument.TITRE_SEJOUR: "Titre de séjour",
    IdentityDocument.LIVRET_FAMILLE: "Livret de famille",
    IdentityDocument.ACTE_NAISSANCE: "Extrait d'acte de naissance",
}


class DocumentCheck(StrEnum):
    """What came of asking for the identity document (RNIV): four outcomes the journal keeps apart."""

    CHECKED = "checked"
    """A document was shown and agrees with the INS traits: the identity is qualified."""
    ABSENT = "absent"
    """No document at hand: the prompt comes back at the next visits."""
    REFUSED = "refused"
    """The patient declines to show one: recorded as their refusal, the prompt stops."""
    CONTRADICTS = "contradicts"
    """The document contradicts the INS traits: the identity is doubtful and never qualified."""


class Visibility(StrEnum):
    """Who may see a document fed to the DMP, as the patient chose."""

    ALL = "all"
    HIDDEN_FROM_PATIENT = "hidden-from-patient"
    HIDDEN_FROM_PROFESSIONALS = "hidden-from-professionals"


@dataclass(frozen=True, slots=True)
class Traits:
    """The five INS identity traits (birth place may be unknown on a card read)."""

    birth_name: str
    first_names: str
    sex: str
    birth_date: date
    birth_place: str | None = None


@dataclass(frozen=True, slots=True)
class Beneficiary:
    """A person covered on a card (family members share one card)."""

    nir: str
    """The beneficiary's own NIR (15 characters), or the card holder's for a child without one."""
    rank: int
    """Birth-order rank of the beneficiary on the card (rang gémellaire for twins)."""
    traits: Traits
    holder_nir: str = ""
    """The card holder's NIR (ouvrant droit)."""


@dataclass(frozen=True, slots=True)
class Ins:
    """A national health identity: matricule + OID + traits."""

    matricule: str
    oid: str
    traits: Traits


@dataclass(frozen=True, slots=True)
class AmoRights:
    """Compulsory insurance rights for one beneficiary."""

    nir: str
    regime: str
    fund: str
    valid_from: date
    valid_to: date
    ald: bool = False
    """Long-term illness (affection de longue durée): ALD lines are covered at 100 %."""
    c2s: bool = False
    """Complémentaire santé solidaire: everything reimbursable is covered, nothing to pay."""

    def covers(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to


@dataclass(frozen=True, slots=True)
class AmcRights:
    """Complementary (mutuelle) rights, as returned by IDB or DLD."""

    amc_number: str
    member_number: str
    valid_from: date
    valid_to: date
    coverage_pct: int
    """Share of the AMO-reimbursable remainder the mutuelle pays (100 = the whole ticket modérateur)."""
    accreditation: str | None = None
    """Number returned by IDB/DLD that goes into the claim; None until a look-up succeeded."""
    conventions: tuple[str, ...] = ()

    def covers(self, day: date) -> bool:
        return self.valid_from <= day <= self.valid_to


@dataclass(frozen=True, slots=True)
class Product:
    """A line of the product reference table."""

    cip13: str
    name: str
    price_cents: int
    rate_pct: int
    """AMO reimbursement rate: 65, 30, 15 or 100; 0 for a product that is not reimbursable."""
    list: str = ""
    """Prescription list: "I", "II", "stupefiant" or empty."""


@dataclass(frozen=True, slots=True)
class PrescriptionLine:
    line_no: int
    label: str
    quantity: int
    cip13: str | None = None
    ald: bool = False


@dataclass(frozen=True, slots=True)
class Prescription:
    prescription_id: str
    prescriber: str
    prescribed_on: date
    renewals: int
    lines: tuple[PrescriptionLine, ...]
    patient_nir: str | None = None
    patient: PrescribedFor | None = None
    """The patient as the prescriber wrote them (compared with the identified patient)."""
    prescriber_mailbox: str | None = None
    """The prescriber's MSSanté address, when the ePrescription gives one (the dispensing summary goes
    there once the patient agrees)."""


@dataclass(frozen=True, slots=True)
class PrescribedFor:
    """Who a prescription is for, as written on it: the traits the pharmacist compares."""

    birth_name: str
    first_names: str
    birth_date: date


@dataclass(frozen=True, slots=True)
class DpEntry:
    """One dispensation the patient's Dossier Pharmaceutique lists, from any pharmacy."""

    day: date
    label: str
    quantity: int
    cip13: str | None = None
    pharmacy: str = ""
    """Where it was dispensed, as the DP names it (town and pharmacy)."""


@dataclass(frozen=True, slots=True)
class ApcvContext:
    """What the apCV teleservice returns for a phone's QR context."""

    beneficiaries: tuple[Beneficiary, ...]
    ins: dict[str, Ins] = field(default_factory=dict)
    """Qualified INS by beneficiary NIR."""
    expires_at: float = 0.0


class InsiOutcome(StrEnum):
    FOUND = "00"
    NONE = "01"
    SEVERAL = "02"


@dataclass(frozen=True, slots=True)
class PastIns:
    """A matricule the INS register knew the person under before (INSi's INS history, ``INSHISTO``)."""

    matricule: str
    oid: str
    valid_from: date | None = None
    valid_to: date | None = None


@dataclass(frozen=True, slots=True)
class InsiResult:
    outcome: InsiOutcome
    identities: tuple[Ins, ...] = ()
    history: tuple[PastIns, ...] = ()
    """With FOUND: the identity's former matricules, as the register lists them (a stored patient may be
    filed under one of them)."""
