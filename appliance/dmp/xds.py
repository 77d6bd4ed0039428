"""The IHE XDS.b metadata of a DMP feed (ITI-41 Provide and Register Document Set-b).

:func:`submit_objects_request` builds the ``lcm:SubmitObjectsRequest`` (ebRIM 3.0) that goes in the
ITI-41 body next to the document: the submission set (``rim:RegistryPackage`` classified as
XDSSubmissionSet, with submissionTime, author, contentTypeCode SA33 and its uniqueId, sourceId and
patientId), the document entry (``rim:ExtrinsicObject`` of the stable-document type, with
creationTime, languageCode, legalAuthenticator, serviceStart/StopTime, sourcePatientId and
sourcePatientInfo slots; author, classCode, confidentialityCode, formatCode,
healthcareFacilityTypeCode, practiceSettingCode and typeCode classifications; patientId and uniqueId
external identifiers) and the HasMember association between them (SubmissionSetStatus Original).

The patient id is the INS as an HL7 v2 CX: ``matricule^^^&OID&ISO^NH``. The patient's choice of
visibility becomes the DMP's extra confidentialityCode values (INVISIBLE_PATIENT, MASQUE_PS, code
system 1.2.250.1.213.1.1.4.13) beside N. The transport (SOAP 1.2, MTOM/XOP) is the adapter's
(:mod:`sync.dmp_xds`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree
from lxml.builder import ElementMaker

from appliance.dmp.cda import pharmacist_id, structure_id
from appliance.dmp.model import (
    AMBULATOIRE,
    PHARMACIE_OFFICINE,
    PHARMACIEN_SPECIALTY,
    Code,
    DmpDocument,
    confidentiality,
)

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"

# IHE ITI TF-3 4.2.5: classification schemes, identification schemes, object types
DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
"""XDSDocumentEntry objectType (stable document)."""
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
"""XDSSubmissionSet classification node."""
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
CLASSIFICATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Classification"
EXTERNAL_IDENTIFIER = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:ExternalIdentifier"
ASSOCIATION = "urn:oasis:names:tc:ebxml-regrep:ObjectType:RegistryObject:Association"

DOCUMENT_SYMBOL = "Document01"
"""The entry's id in the submission; the ITI-41 ``Document`` element carries the same id."""
SUBMISSION_SYMBOL = "SubmissionSet01"

_R = ElementMaker(namespace=RIM, nsmap={"rim": RIM})
_L = ElementMaker(namespace=LCM, nsmap={"lcm": LCM, "rim": RIM})

Element = etree._Element


def dtm(moment: datetime) -> str:
    """An XDS DTM, in UTC: YYYYMMDDHHMMSS."""
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%S")


def patient_cx(matricule: str, oid: str) -> str:
    """The INS as the XDS patientId: ``matricule^^^&OID&ISO^NH``."""
    return f"{matricule}^^^&{oid}&ISO^NH"


def _hl7_escape(text: str) -> str:
    """Escape HL7 v2 delimiters inside a component (names with ``^`` or ``&`` would shift fields)."""
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def author_person(doc: DmpDocument) -> str:
    """XCN of the pharmacist: national id (``8`` + RPPS, assigning authority IDNPS) or the local one."""
    root, ext = pharmacist_id(doc.author, doc.ids.source)
    kind = "IDNPS" if doc.author.rpps else "EI"
    return f"{ext}^{_hl7_escape(doc.author.name)}^^^^^^^&{root}&ISO^D^^^{kind}"


def author_institution(doc: DmpDocument) -> str:
    """XON of the pharmacy: ``name^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1FINESS``."""
    root, ext = structure_id(doc.pharmacy)
    return f"{_hl7_escape(doc.pharmacy.name)}^^^^^&{root}&ISO^IDNST^^^{ext}"


def _slot(name: str, *values: str) -> Element:
    return _R.Slot(_R.ValueList(*(_R.Value(v) for v in values)), name=name)


def _name(text: str) -> Element:
    lang = {"{http://www.w3.org/XML/1998/namespace}lang": "fr-FR"}
    return _R.Name(_R.LocalizedString(value=text, charset="UTF-8", **lang))


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def next(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n:02d}"


def _coded(ids: _Ids, scheme: str, target: str, code: Code) -> Element:
    return _R.Classification(
        _slot("codingScheme", code.system),
        _name(code.display),
        id=ids.next("cl"),
        classificationScheme=scheme,
        classifiedObject=target,
        nodeRepresentation=code.code,
        objectType=CLASSIFICATION,
    )


def _author(ids: _Ids, scheme: str, target: str, doc: DmpDocument) -> Element:
    specialty = PHARMACIEN_SPECIALTY
    return _R.Classification(
        _slot("authorPerson", author_person(doc)),
        _slot("authorInstitution", author_institution(doc)),
        _slot("authorSpecialty", f"{specialty.code}^{specialty.display}^{specialty.system}"),
        id=ids.next("cl"),
        classificationScheme=scheme,
        classifiedObject=target,
        nodeRepresentation="",
        objectType=CLASSIFICATION,
    )


def _external(ids: _Ids, scheme: str, target: str, value: str, label: str) -> Element:
    return _R.ExternalIdentifier(
        _name(label),
        id=ids.next("ei"),
        identificationScheme=scheme,
        registryObject=target,
        value=value,
        objectType=EXTERNAL_IDENTIFIER,
    )


def source_patient_info(doc: DmpDocument) -> tuple[str, ...]:
    traits = doc.patient.traits
    sex = traits.sex if traits.sex in ("M", "F") else "U"
    return (
        f"PID-5|{_hl7_escape(traits.birth_name)}^{_hl7_escape(traits.first_names)}^^^^^L",
        f"PID-7|{traits.birth_date.strftime('%Y%m%d')}",
        f"PID-8|{sex}",
    )


def document_entry(doc: DmpDocument, ids: _Ids | None = None) -> Element:
    """The XDSDocumentEntry of the CDA."""
    ids = ids or _Ids()
    kind = doc.kind
    created = dtm(doc.written_at)
    cx = patient_cx(doc.patient.matricule, doc.patient.oid)
    target = DOCUMENT_SYMBOL
    return _R.ExtrinsicObject(
        _slot("creationTime", created),
        _slot("languageCode", "fr-FR"),
        _slot("legalAuthenticator", author_person(doc)),
        _slot("serviceStartTime", created),
        _slot("serviceStopTime", created),
        _slot("sourcePatientId", cx),
        _slot("sourcePatientInfo", *source_patient_info(doc)),
        _name(kind.title),
        _author(ids, DE_AUTHOR, target, doc),
        _coded(ids, DE_CLASS_CODE, target, kind.class_code),
        *(_coded(ids, DE_CONFIDENTIALITY_CODE, target, c) for c in confidentiality(doc.visibility)),
        _coded(ids, DE_FORMAT_CODE, target, kind.format_code),
        _coded(ids, DE_FACILITY_TYPE_CODE, target, PHARMACIE_OFFICINE),
        _coded(ids, DE_PRACTICE_SETTING_CODE, target, AMBULATOIRE),
        _coded(ids, DE_TYPE_CODE, target, kind.type_code),
        _external(ids, DE_PATIENT_ID, target, cx, "XDSDocumentEntry.patientId"),
        _external(ids, DE_UNIQUE_ID, target, doc.ids.document, "XDSDocumentEntry.uniqueId"),
        id=target,
        mimeType="text/xml",
        objectType=DOCUMENT_ENTRY,
    )


def submit_objects_request(doc: DmpDocument, *, submitted_at: datetime) -> Element:
    """The ``lcm:SubmitObjectsRequest`` of one document; ``submitted_at`` is its submissionTime."""
    ids = _Ids()
    cx = patient_cx(doc.patient.matricule, doc.patient.oid)
    package = _R.RegistryPackage(
        _slot("submissionTime", dtm(submitted_at)),
        _name(doc.kind.title),
        _author(ids, SS_AUTHOR, SUBMISSION_SYMBOL, doc),
        _coded(ids, SS_CONTENT_TYPE_CODE, SUBMISSION_SYMBOL, PHARMACIE_OFFICINE),
        _external(ids, SS_UNIQUE_ID, SUBMISSION_SYMBOL, doc.ids.submission, "XDSSubmissionSet.uniqueId"),
        _external(ids, SS_SOURCE_ID, SUBMISSION_SYMBOL, doc.ids.source, "XDSSubmissionSet.sourceId"),
        _external(ids, SS_PATIENT_ID, SUBMISSION_SYMBOL, cx, "XDSSubmissionSet.patientId"),
        id=SUBMISSION_SYMBOL,
    )
    is_submission_set = _R.Classification(
        id=ids.next("cl"),
        classifiedObject=SUBMISSION_SYMBOL,
        classificationNode=SUBMISSION_SET,
        objectType=CLASSIFICATION,
    )
    member = _R.Association(
        _slot("SubmissionSetStatus", "Original"),
        id=ids.next("as"),
        associationType=HAS_MEMBER,
        sourceObject=SUBMISSION_SYMBOL,
        targetObject=DOCUMENT_SYMBOL,
        objectType=ASSOCIATION,
    )
    request: Element = _L.SubmitObjectsRequest(
        _R.RegistryObjectList(document_entry(doc, ids), package, is_submission_set, member)
    )
    return request
