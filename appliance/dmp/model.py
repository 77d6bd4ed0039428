"""What a DMP document is made of, read from the store when it is delivered (never from the outbox).

The outbox message of a DMP document carries ids only (document, patient, operator); the delivery
reads the patient's INS and traits from the sealed fields, the pharmacist from the operators table,
the pharmacy from its settings and the products from the dispensations, and hands them here as a
:class:`DmpDocument`. :mod:`appliance.dmp.cda` turns it into the CDA R2 document and
:mod:`appliance.dmp.xds` into the IHE XDS.b metadata of the ITI-41 submission.

Codes and OIDs are those the ANS publishes for the French DMP (CI-SIS terminologies and the DMP
integrator's kit); each constant names the table it comes from.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from appliance.domain import Ins, Visibility

# --- identifiers (ANS)

RPPS_OID = "1.2.250.1.71.4.2.1"
"""Identifiant national des professionnels de santé (IDNPS): ``8`` + the RPPS number."""
STRUCTURE_OID = "1.2.250.1.71.4.2.2"
"""Identifiant national de structure (IDNST): ``1`` + the FINESS number for a pharmacy."""
GTIN_OID = "1.3.160"
"""GS1 GTIN, the code on the box's DataMatrix (the CIP13 behind a leading 0)."""

# --- code systems (CI-SIS terminologies)

LOINC = "2.16.840.1.113883.6.1"
CONFIDENTIALITY = "2.16.840.1.113883.5.25"
"""HL7 v3 Confidentiality: ``N`` normal."""
DMP_MASKING = "1.2.250.1.213.1.1.4.13"
"""The DMP's own confidentiality codes (``INVISIBLE_PATIENT``, ``MASQUE_PS``...)."""
CLASSE_DOCUMENT = "1.2.250.1.213.1.1.4.1"
"""TRE_A03-ClasseDocument (XDS classCode)."""
FORMAT_CISIS = "1.2.250.1.213.1.1.4.2.282"
"""TRE_A06-FormatCodeComplementaire (XDS formatCode of the CI-SIS content models)."""
SECTEUR_ACTIVITE = "1.2.250.1.71.4.2.4"
"""TRE_R02-SecteurActivite (healthcareFacilityTypeCode, contentTypeCode): SA33 pharmacie d'officine."""
CADRE_EXERCICE = "1.2.250.1.213.1.1.4.9"
"""TRE_A01-CadreExercice (practiceSettingCode): AMBULATOIRE."""
PROFESSION = "1.2.250.1.71.1.2.7"
"""TRE_G15-ProfessionSante: 21 pharmacien."""
AUTHOR_SPECIALTY = "1.2.250.1.213.1.1.4.5"
"""XDS authorSpecialty (JDV_J01-XdsAuthorSpecialty-CISIS): ``G15_21`` pharmacien."""
GENDER = "2.16.840.1.113883.5.1"


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    system: str
    display: str


NORMAL = Code("N", CONFIDENTIALITY, "Normal")
INVISIBLE_PATIENT = Code("INVISIBLE_PATIENT", DMP_MASKING, "Non visible par le patient")
MASQUE_PS = Code("MASQUE_PS", DMP_MASKING, "Masqué aux professionnels de santé")
PHARMACIE_OFFICINE = Code("SA33", SECTEUR_ACTIVITE, "Pharmacie d'officine")
AMBULATOIRE = Code("AMBULATOIRE", CADRE_EXERCICE, "Ambulatoire")
PHARMACIEN = Code("21", PROFESSION, "Pharmacien")
PHARMACIEN_SPECIALTY = Code("G15_21", AUTHOR_SPECIALTY, "Pharmacien")


def confidentiality(visibility: Visibility) -> tuple[Code, ...]:
    """The XDS confidentialityCode values for the visibility the patient chose.

    ``N`` always; the DMP masks a document from the patient with ``INVISIBLE_PATIENT`` and from the
    other professionals with ``MASQUE_PS`` (never both: the DMP refuses the combination).
    """
    if visibility is Visibility.HIDDEN_FROM_PATIENT:
        return (NORMAL, INVISIBLE_PATIENT)
    if visibility is Visibility.HIDDEN_FROM_PROFESSIONALS:
        return (NORMAL, MASQUE_PS)
    return (NORMAL,)


@dataclass(frozen=True, slots=True)
class Template:
    root: str
    extension: str | None = None


@dataclass(frozen=True, slots=True)
class Kind:
    """One of the three documents the counter feeds, with its CI-SIS codes."""

    name: str
    type_code: Code
    """XDS typeCode = CDA ``code`` (LOINC, JDV_J07-XdsTypeCode-CISIS)."""
    title: str
    class_code: Code
    format_code: Code
    templates: tuple[Template, ...]
    """Content-model conformance declared after the CI-SIS header ones."""


HEADER_TEMPLATES = (
    Template("2.16.840.1.113883.2.8.2.1"),  # HL7 France: en-tête CDA
    Template("1.2.250.1.213.1.1.1.1"),  # CI-SIS: structuration minimale des documents de santé
)

KINDS: dict[str, Kind] = {
    "vaccination": Kind(
        "vaccination",
        Code("87273-9", LOINC, "Note de vaccination"),
        "Note de vaccination",
        Code("10", CLASSE_DOCUMENT, "Compte rendu"),
        Code("urn:asip:ci-sis:vac-note:2021", FORMAT_CISIS, "Note de vaccination"),
        (
            Template("1.3.6.1.4.1.19376.1.5.3.1.1.18.1.2"),  # IHE PCC Immunization Content
            Template("1.2.250.1.213.1.1.1.46", "2021.01"),  # CI-SIS VAC-NOTE
        ),
    ),
    "pharmaceutical-interview": Kind(
        "pharmaceutical-interview",
        Code("78601-2", LOINC, "CR d'entretien pharmaceutique"),
        "Compte rendu d'entretien pharmaceutique",
        Code("10", CLASSE_DOCUMENT, "Compte rendu"),
        Code("urn:asipSante:modelesHorsProfils:2011", FORMAT_CISIS, "Document non référencé IHE ou CI-SIS"),
        (),
    ),
    "medication-review": Kind(
        "medication-review",
        Code("56445-0", LOINC, "Bilan médicamenteux (Officine)"),
        "Bilan partagé de médication",
        Code("11", CLASSE_DOCUMENT, "Synthèse"),
        Code("urn:asipSante:modelesHorsProfils:2011", FORMAT_CISIS, "Document non référencé IHE ou CI-SIS"),
        (),
    ),
}


@dataclass(frozen=True, slots=True)
class Pharmacist:
    """The author and legal authenticator: the operator who fed the document."""

    operator_id: int
    name: str
    rpps: str | None
    """11 digits when their CPS is known; the DMP identifies professionals by it."""


@dataclass(frozen=True, slots=True)
class Pharmacy:
    """The structure the pharmacist works in, and the custodian of the document."""

    finess: str
    name: str


@dataclass(frozen=True, slots=True)
class Product:
    """A box handed out: what the document says was dispensed or administered."""

    gtin: str
    cip13: str
    label: str | None
    lot: str | None
    expiry: str | None
    """YYYY-MM-DD."""
    dispensed_at: datetime


@dataclass(frozen=True, slots=True)
class DmpDocument:
    """Everything one CDA document and its XDS metadata say."""

    kind: Kind
    visibility: Visibility
    patient: Ins
    author: Pharmacist
    pharmacy: Pharmacy
    written_at: datetime
    """When the pharmacist fed it (timezone-aware): effectiveTime, creationTime, author time."""
    ids: DocumentIds
    products: tuple[Product, ...] = ()
    """Vaccination and interview: the boxes of that visit. Medication review: the last twelve months."""
    note: str = ""
    """The pharmacist's annotation of the visit, if any."""


@dataclass(frozen=True, slots=True)
class DocumentIds:
    """OIDs that make a delivery idempotent: the same outbox message always gets the same ones."""

    source: str
    """This box (XDSSubmissionSet.sourceId, root of local identifiers)."""
    document: str
    """ClinicalDocument/id and XDSDocumentEntry.uniqueId."""
    set_id: str
    """ClinicalDocument/setId (first version of the document)."""
    submission: str
    """XDSSubmissionSet.uniqueId."""


def uuid_oid(value: uuid.UUID) -> str:
    """The OID of a UUID under the joint ISO/ITU-T arc 2.25 (ITU-T X.667), at most 44 characters."""
    return f"2.25.{value.int}"


def document_ids(box_id: str, document_id: int) -> DocumentIds:
    """Stable OIDs for document ``document_id`` of box ``box_id`` (a random hex id kept in the store)."""
    box = uuid.UUID(hex=box_id) if re.fullmatch(r"[0-9a-f]{32}", box_id) else uuid.uuid5(uuid.NAMESPACE_OID, box_id)

    def derived(what: str) -> str:
        return uuid_oid(uuid.uuid5(box, f"dmp:{document_id}:{what}"))

    return DocumentIds(
        source=uuid_oid(box), document=derived("document"), set_id=derived("set"), submission=derived("submission")
    )


_FINESS_RE = re.compile(r"[0-9]{9}|2[AB][0-9]{7}")


def finess_problem(finess: str) -> str | None:
    """Why ``finess`` is not a FINESS number (9 characters, Luhn key on the last one), or None.

    Corsican numbers (``2A``/``2B`` department) are only checked for their shape.
    """
    if not _FINESS_RE.fullmatch(finess):
        return f"FINESS {finess!r} : 9 chiffres attendus"
    if not finess.isdigit():
        return None
    total = 0
    for i, ch in enumerate(reversed(finess)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return None if total % 10 == 0 else f"FINESS {finess} : clé de contrôle invalide"
