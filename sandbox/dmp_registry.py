"""The sandbox DMP: an XDS.b Document Repository and Registry answering IHE ITI-41.

``POST /dmp/repository`` takes a Provide and Register Document Set-b request in SOAP 1.2 with MTOM/XOP,
checks it the way the DMP does and answers an ``rs:RegistryResponse`` (also MTOM):

1. transport: ``multipart/related`` with ``type="application/xop+xml"`` (MTOM), a SOAP 1.2 envelope as
   the root part, the WS-Addressing ``Action`` of ITI-41 and a ``MessageID`` → else a SOAP fault
   (``Sender``, HTTP 400; a SOAP 1.1 envelope is a ``VersionMismatch``);
2. the ebRIM metadata: the ``rim:RegistryObjectList`` against the OASIS ``rim.xsd`` (shipped in
   ``sandbox/data/schemas``), then what ITI-41 requires of a submission set (submissionTime, author,
   contentTypeCode, uniqueId, sourceId, patientId, the XDSSubmissionSet classification), of a document
   entry (stable-document objectType, mimeType, creationTime, languageCode, sourcePatientId; author,
   classCode, confidentialityCode, formatCode, healthcareFacilityTypeCode, practiceSettingCode and
   typeCode with their codingScheme; patientId and uniqueId) and of their HasMember association
   (SubmissionSetStatus Original) → ``XDSRegistryMetadataError`` naming the missing element;
3. documents: one ``xdsb:Document`` per entry, its content an ``xop:Include`` of a MIME part
   (``XDSMissingDocument`` / ``XDSMissingDocumentMetadata``);
4. the patient: the same CX everywhere (``XDSPatientIdDoesNotMatch``), the INS test OID
   (1.2.250.1.213.1.4.10) and a DMP opened for that INS in the test population (``XDSUnknownPatientId``);
5. the DMP's rules on confidentialityCode: N, plus at most one of INVISIBLE_PATIENT and MASQUE_PS;
6. the CDA: against the HL7 CDA R2 schema when ``sandbox/data/schemas/cda/CDA.xsd`` is present, else
   structurally (:func:`cda_problems`: the POCD_MT000040 header order and cardinalities, the CI-SIS
   header elements), and consistent with its metadata (id = uniqueId, code = typeCode, patient id =
   patientId) → ``XDSRepositoryMetadataError``.

Accepted documents are kept (``/_sandbox/state`` ``dmp_documents``). The uniqueIds make a repeat
harmless: the same submission again is answered Success without a second document (the answer to a
request whose response was lost); another content under a known document uniqueId is
``XDSNonIdenticalHash``, a known submission set uniqueId with other documents
``XDSDuplicateUniqueIdInRegistry``. Registry errors are answered with HTTP 200 (a RegistryResponse of
status Failure), as XDS does.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from appliance.codes.ins import InsOid
from appliance.domain import Visibility

PATH = "/dmp/repository"
SCHEMAS = Path(__file__).resolve().parent / "data" / "schemas"
TEST_PHARMACY = {"finess": "750000010", "name": "Pharmacie du Bac à sable"}
"""The pharmacy the sandbox knows (a FINESS with a valid key), for development and scenarios."""

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
V3 = "urn:hl7-org:v3"
ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RESPONSE_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
ERROR = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

DOCUMENT_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
DE_CODES = {
    "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a": "classCode",
    "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f": "confidentialityCode",
    "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d": "formatCode",
    "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1": "healthcareFacilityTypeCode",
    "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead": "practiceSettingCode",
    "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983": "typeCode",
}
CONFIDENTIALITY_CODES = {
    ("N", "2.16.840.1.113883.5.25"),
    ("R", "2.16.840.1.113883.5.25"),
    ("V", "2.16.840.1.113883.5.25"),
    ("INVISIBLE_PATIENT", "1.2.250.1.213.1.1.4.13"),
    ("MASQUE_PS", "1.2.250.1.213.1.1.4.13"),
    ("INVISIBLE_REPRESENTANTS_LEGAUX", "1.2.250.1.213.1.1.4.13"),
}
DOCUMENT_TYPES = {"87273-9": "vaccination", "78601-2": "pharmaceutical-interview", "56445-0": "medication-review"}
"""typeCode (LOINC) → the counter's document kind, as the sandbox reports it."""
HEADER_TEMPLATES = ("2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, remove_blank_text=False)
_CX_RE = re.compile(r"(?P<id>[^\^&]+)\^\^\^&(?P<oid>[0-2](\.(0|[1-9][0-9]*))+)&ISO(\^[A-Z]*)?")


class Fault(Exception):
    """A request the sandbox cannot read as ITI-41: answered with a SOAP 1.2 fault."""

    def __init__(self, reason: str, *, code: str = "Sender", status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.status = status


@dataclass(frozen=True)
class RegistryError:
    code: str
    context: str
    location: str = ""


@dataclass
class Request:
    message_id: str
    submit: etree._Element
    documents: dict[str, bytes]
    """Document id (the ExtrinsicObject id) → its content."""


@dataclass
class Entry:
    """One document entry of the submission, as read from its metadata."""

    id: str
    unique_id: str = ""
    patient_id: str = ""
    slots: dict[str, list[str]] = field(default_factory=dict)
    codes: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    """classCode... → [(code, codingScheme, display)]."""
    title: str = ""


# --- reading


def _parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, _PARSER)


def mime_parts(content_type: str, body: bytes) -> tuple[str, bytes, dict[str, bytes]]:
    """(root part's content type, root part, other parts by Content-ID) of an MTOM body."""
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise Fault("corps MIME multipart/related illisible")
    start = str(message.get_param("start", "", header="content-type") or "").strip("<>")
    root: tuple[str, bytes] | None = None
    parts: dict[str, bytes] = {}
    for part in message.iter_parts():
        cid = str(part.get("Content-ID", "")).strip().strip("<>")
        data = part.get_payload(decode=True)
        content = data if isinstance(data, bytes) else b""
        if root is None and (not start or cid == start):
            root = (part.get_content_type(), content)
        else:
            parts[cid] = content
    if root is None:
        raise Fault("partie racine (start) absente du message MTOM")
    return root[0], root[1], parts


def read_request(content_type: str, body: bytes) -> Request:
    """The ITI-41 request in ``body``, or the :class:`Fault` to answer."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "multipart/related":
        raise Fault(f"MTOM/XOP attendu (multipart/related), reçu {media or 'rien'}", status=415)
    if "application/xop+xml" not in content_type:
        raise Fault('MTOM/XOP attendu : type="application/xop+xml" manquant', status=415)
    root_type, root_part, parts = mime_parts(content_type, body)
    if root_type != "application/xop+xml":
        raise Fault(f"la partie racine doit être application/xop+xml, pas {root_type}")
    try:
        envelope = _parse(root_part)
    except etree.XMLSyntaxError:
        raise Fault("enveloppe SOAP : XML mal formé") from None
    if envelope.tag == f"{{{SOAP11}}}Envelope":
        raise Fault("SOAP 1.2 attendu (ITI-41), reçu SOAP 1.1", code="VersionMismatch")
    if envelope.tag != f"{{{SOAP12}}}Envelope":
        raise Fault("enveloppe SOAP 1.2 attendue")
    header = envelope.find(f"{{{SOAP12}}}Header")
    action = None if header is None else header.findtext(f"{{{WSA}}}Action")
    if action is None:
        raise Fault("en-tête WS-Addressing Action manquant")
    if action.strip() != ACTION:
        raise Fault(f"action {action.strip()!r} inconnue du dépôt DMP (attendu {ACTION})")
    message_id = "" if header is None else (header.findtext(f"{{{WSA}}}MessageID") or "").strip()
    if not message_id:
        raise Fault("en-tête WS-Addressing MessageID manquant")
    request = envelope.find(f"{{{SOAP12}}}Body/{{{XDSB}}}ProvideAndRegisterDocumentSetRequest")
    if request is None:
        raise Fault("corps ProvideAndRegisterDocumentSetRequest manquant")
    submit = request.find(f"{{{LCM}}}SubmitObjectsRequest")
    if submit is None:
        raise Fault("SubmitObjectsRequest manquant")
    documents: dict[str, bytes] = {}
    for doc in request.iterfind(f"{{{XDSB}}}Document"):
        doc_id = doc.get("id", "")
        include = doc.find(f"{{{XOP}}}Include")
        if include is not None:
            cid = str(include.get("href", "")).removeprefix("cid:")
            if cid not in parts:
                raise Fault(f"xop:Include {cid!r} sans partie MIME correspondante")
            documents[doc_id] = parts[cid]
        else:
            raise Fault("document en ligne (base64) : MTOM/XOP attendu (xop:Include)")
    return Request(message_id, submit, documents)


@cache
def _rim_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "ebRS" / "rim.xsd")))


@cache
def _cda_schema() -> etree.XMLSchema | None:
    path = SCHEMAS / "cda" / "CDA.xsd"
    return etree.XMLSchema(etree.parse(str(path))) if path.exists() else None


def _slots(el: etree._Element) -> dict[str, list[str]]:
    return {
        str(s.get("name")): [v.text or "" for v in s.iterfind(f"{{{RIM}}}ValueList/{{{RIM}}}Value")]
        for s in el.iterfind(f"{{{RIM}}}Slot")
    }


def _name(el: etree._Element) -> str:
    loc = el.find(f"{{{RIM}}}Name/{{{RIM}}}LocalizedString")
    return "" if loc is None else str(loc.get("value", ""))


def _externals(el: etree._Element) -> dict[str, str]:
    return {
        str(e.get("identificationScheme")): str(e.get("value", "")) for e in el.iterfind(f"{{{RIM}}}ExternalIdentifier")
    }


# --- checking


def metadata_errors(request: Request) -> tuple[list[RegistryError], list[Entry], dict[str, Any]]:
    """What ITI-41 (and the DMP) require of the metadata; the entries and submission set read."""
    errors: list[RegistryError] = []

    def meta(context: str, location: str = "") -> None:
        errors.append(RegistryError("XDSRegistryMetadataError", context, location))

    objects = request.submit.find(f"{{{RIM}}}RegistryObjectList")
    if objects is None:
        meta("RegistryObjectList manquant")
        return errors, [], {}
    if not _rim_schema().validate(objects):
        first = _rim_schema().error_log.last_error
        meta(f"métadonnées non conformes au schéma ebRIM 3.0 : {first.message if first else '?'}", "rim.xsd")
        return errors, [], {}
    packages = list(objects.iterfind(f"{{{RIM}}}RegistryPackage"))
    extrinsic = list(objects.iterfind(f"{{{RIM}}}ExtrinsicObject"))
    top_classifications = list(objects.iterfind(f"{{{RIM}}}Classification"))
    associations = list(objects.iterfind(f"{{{RIM}}}Association"))
    ss_ids = {c.get("classifiedObject") for c in top_classifications if c.get("classificationNode") == SUBMISSION_SET}
    ss_ids |= {
        str(c.get("classifiedObject"))
        for p in packages
        for c in p.iterfind(f"{{{RIM}}}Classification")
        if c.get("classificationNode") == SUBMISSION_SET
    }
    sets = [p for p in packages if p.get("id") in ss_ids]
    submission: dict[str, Any] = {}
    if len(sets) != 1:
        meta("un lot de soumission (RegistryPackage classé XDSSubmissionSet) et un seul est attendu")
    else:
        package = sets[0]
        pid = str(package.get("id"))
        slots = _slots(package)
        if not slots.get("submissionTime"):
            meta("XDSSubmissionSet.submissionTime manquant", pid)
        schemes = {str(c.get("classificationScheme")): c for c in package.iterfind(f"{{{RIM}}}Classification")}
        author = schemes.get(SS_AUTHOR)
        if author is None or not ({"authorPerson", "authorInstitution"} & set(_slots(author))):
            meta("XDSSubmissionSet.author manquant (authorPerson, authorInstitution)", pid)
        content = schemes.get(SS_CONTENT_TYPE)
        if content is None or not content.get("nodeRepresentation") or not _slots(content).get("codingScheme"):
            meta("XDSSubmissionSet.contentTypeCode manquant", pid)
        ext = _externals(package)
        for scheme, label in (
            (SS_UNIQUE_ID, "uniqueId"),
            (SS_SOURCE_ID, "sourceId"),
            (SS_PATIENT_ID, "patientId"),
        ):
            if not ext.get(scheme):
                meta(f"XDSSubmissionSet.{label} manquant", pid)
        submission = {
            "id": pid,
            "unique_id": ext.get(SS_UNIQUE_ID, ""),
            "patient_id": ext.get(SS_PATIENT_ID, ""),
            "source_id": ext.get(SS_SOURCE_ID, ""),
        }
    entries: list[Entry] = []
    if not extrinsic:
        meta("aucun document (ExtrinsicObject) dans la soumission")
    for obj in extrinsic:
        entry = Entry(id=str(obj.get("id")), title=_name(obj))
        entries.append(entry)
        if obj.get("objectType") != DOCUMENT_ENTRY:
            meta("XDSDocumentEntry.objectType : document stable attendu", entry.id)
        if not obj.get("mimeType"):
            meta("XDSDocumentEntry.mimeType manquant", entry.id)
        entry.slots = _slots(obj)
        for slot in ("creationTime", "languageCode", "sourcePatientId"):
            if not entry.slots.get(slot):
                meta(f"XDSDocumentEntry.{slot} manquant", entry.id)
        authors = 0
        for c in obj.iterfind(f"{{{RIM}}}Classification"):
            scheme = str(c.get("classificationScheme"))
            if scheme == DE_AUTHOR:
                authors += 1
                continue
            code_name = DE_CODES.get(scheme)
            if code_name is None:
                continue
            coding = _slots(c).get("codingScheme") or [""]
            if not c.get("nodeRepresentation") or not coding[0]:
                meta(f"XDSDocumentEntry.{code_name} sans code ou sans codingScheme", entry.id)
                continue
            entry.codes.setdefault(code_name, []).append((str(c.get("nodeRepresentation")), coding[0], _name(c)))
        if authors == 0:
            meta("XDSDocumentEntry.author manquant", entry.id)
        for label in DE_CODES.values():
            if label not in entry.codes:
                meta(f"XDSDocumentEntry.{label} manquant", entry.id)
        for label in ("classCode", "formatCode", "healthcareFacilityTypeCode", "practiceSettingCode", "typeCode"):
            if len(entry.codes.get(label, [])) > 1:
                meta(f"XDSDocumentEntry.{label} : une seule valeur attendue", entry.id)
        ext = _externals(obj)
        entry.unique_id, entry.patient_id = ext.get(DE_UNIQUE_ID, ""), ext.get(DE_PATIENT_ID, "")
        if not entry.unique_id:
            meta("XDSDocumentEntry.uniqueId manquant", entry.id)
        if not entry.patient_id:
            meta("XDSDocumentEntry.patientId manquant", entry.id)
        codes = {(c, s) for c, s, _ in entry.codes.get("confidentialityCode", [])}
        unknown = codes - CONFIDENTIALITY_CODES
        if unknown:
            meta(f"confidentialityCode inconnu du DMP : {sorted(c for c, _ in unknown)}", entry.id)
        masks = {c for c, _ in codes} & {"INVISIBLE_PATIENT", "MASQUE_PS"}
        if len(masks) > 1:
            meta("un document ne peut être à la fois invisible au patient et masqué aux professionnels", entry.id)
        if not {c for c, _ in codes} & {"N", "R", "V"}:
            meta("confidentialityCode N (2.16.840.1.113883.5.25) attendu", entry.id)
        linked = [
            a
            for a in associations
            if a.get("associationType") == HAS_MEMBER
            and a.get("targetObject") == entry.id
            and a.get("sourceObject") == submission.get("id")
        ]
        if not linked:
            meta("association HasMember du lot vers le document manquante", entry.id)
        elif _slots(linked[0]).get("SubmissionSetStatus") != ["Original"]:
            meta("SubmissionSetStatus Original attendu sur l'association HasMember", entry.id)
    return errors, entries, submission


def patient_errors(
    entries: Sequence[Entry], submission: dict[str, Any], known: Callable[[str], bool]
) -> list[RegistryError]:
    ids = {submission.get("patient_id", "")} | {e.patient_id for e in entries}
    ids.discard("")
    if len(ids) > 1:
        return [RegistryError("XDSPatientIdDoesNotMatch", "patientId différent entre le lot et ses documents")]
    if not ids:
        return []
    cx = next(iter(ids))
    match = _CX_RE.fullmatch(cx)
    if match is None:
        return [RegistryError("XDSRegistryMetadataError", "patientId : INS au format CX matricule^^^&OID&ISO attendu")]
    if match["oid"] != InsOid.TEST.value:
        return [
            RegistryError(
                "XDSUnknownPatientId", f"OID {match['oid']} non accepté par le DMP de test (INS de test attendue)"
            )
        ]
    if not known(match["id"]):
        return [RegistryError("XDSUnknownPatientId", "aucun DMP ouvert pour cette INS")]
    return []


_HEADER = (
    ("realmCode", 0, None),
    ("typeId", 1, 1),
    ("templateId", 0, None),
    ("id", 1, 1),
    ("code", 1, 1),
    ("title", 0, 1),
    ("effectiveTime", 1, 1),
    ("confidentialityCode", 1, 1),
    ("languageCode", 0, 1),
    ("setId", 0, 1),
    ("versionNumber", 0, 1),
    ("copyTime", 0, 1),
    ("recordTarget", 1, None),
    ("author", 1, None),
    ("dataEnterer", 0, 1),
    ("informant", 0, None),
    ("custodian", 1, 1),
    ("informationRecipient", 0, None),
    ("legalAuthenticator", 0, 1),
    ("authenticator", 0, None),
    ("participant", 0, None),
    ("inFulfillmentOf", 0, None),
    ("documentationOf", 0, None),
    ("relatedDocument", 0, None),
    ("authorization", 0, None),
    ("componentOf", 0, 1),
    ("component", 1, 1),
)
"""POCD_MT000040.ClinicalDocument: its children in order, with their cardinalities (HL7 CDA R2)."""


def _sequence_problems(el: etree._Element, spec: Sequence[tuple[str, int, int | None]]) -> list[str]:
    names = [etree.QName(c).localname if etree.QName(c).namespace == V3 else "?" for c in el if isinstance(c.tag, str)]
    problems: list[str] = []
    i = 0
    for name, low, high in spec:
        count = 0
        while i < len(names) and names[i] == name:
            count += 1
            i += 1
        if count < low:
            problems.append(f"{name} manquant")
        if high is not None and count > high:
            problems.append(f"{name} : au plus {high}")
    if i < len(names):
        problems.append(f"élément {names[i]} inattendu à cette place (ordre POCD_MT000040)")
    return problems


def _v3(path: str) -> str:
    return "/".join(f"{{{V3}}}{p}" for p in path.split("/"))


def cda_problems(root: etree._Element) -> list[str]:
    """What keeps ``root`` from being a CDA R2 document with the CI-SIS header (structural check)."""
    if root.tag != f"{{{V3}}}ClinicalDocument":
        return ["ClinicalDocument (urn:hl7-org:v3) attendu"]
    problems = _sequence_problems(root, _HEADER)
    type_id = root.find(_v3("typeId"))
    if type_id is not None and (
        type_id.get("root") != "2.16.840.1.113883.1.3" or type_id.get("extension") != "POCD_HD000040"
    ):
        problems.append("typeId 2.16.840.1.113883.1.3 / POCD_HD000040 attendu")
    if root.findtext(_v3("realmCode")) is None and root.find(_v3("realmCode")) is None:
        problems.append("realmCode FR manquant (CI-SIS)")
    elif root.find(_v3("realmCode")).get("code") != "FR":  # type: ignore[union-attr]
        problems.append("realmCode FR attendu")
    templates = {t.get("root") for t in root.iterfind(_v3("templateId"))}
    for t in HEADER_TEMPLATES:
        if t not in templates:
            problems.append(f"templateId {t} manquant (CI-SIS)")
    for path in ("title", "languageCode", "setId", "versionNumber", "legalAuthenticator", "documentationOf"):
        if root.find(_v3(path)) is None:
            problems.append(f"{path} manquant (CI-SIS)")
    if root.find(_v3("componentOf/encompassingEncounter/effectiveTime")) is None:
        problems.append("componentOf/encompassingEncounter manquant (CI-SIS)")
    if len(root.findall(_v3("recordTarget"))) != 1:
        problems.append("un seul recordTarget attendu (CI-SIS)")
    for path in (
        "recordTarget/patientRole/id",
        "recordTarget/patientRole/patient/name/family",
        "recordTarget/patientRole/patient/administrativeGenderCode",
        "recordTarget/patientRole/patient/birthTime",
        "author/time",
        "author/assignedAuthor/id",
        "author/assignedAuthor/assignedPerson/name",
        "custodian/assignedCustodian/representedCustodianOrganization/id",
        "documentationOf/serviceEvent/effectiveTime",
    ):
        if root.find(_v3(path)) is None:
            problems.append(f"{path} manquant")
    if (root.findtext(_v3("languageCode")) is not None) and root.find(_v3("languageCode")).get("code") != "fr-FR":  # type: ignore[union-attr]
        problems.append("languageCode fr-FR attendu")
    component = root.find(_v3("component"))
    body = None
    if component is not None:
        body = component.find(_v3("structuredBody"))
        if body is None:
            body = component.find(_v3("nonXMLBody"))
    if component is not None and body is None:
        problems.append("component : structuredBody ou nonXMLBody attendu")
    if body is not None and body.tag == f"{{{V3}}}structuredBody":
        sections = body.findall(_v3("component/section"))
        if not sections:
            problems.append("structuredBody sans section")
        for section in sections:
            if section.find(_v3("code")) is None or section.find(_v3("text")) is None:
                problems.append("section sans code ou sans partie narrative (text)")
    return problems


def document_errors(entry: Entry, content: bytes) -> list[RegistryError]:
    """The CDA of ``entry``: schema (or structure), and its agreement with the metadata."""

    def bad(context: str) -> RegistryError:
        return RegistryError("XDSRepositoryMetadataError", context, entry.id)

    try:
        root = _parse(content)
    except etree.XMLSyntaxError:
        return [bad("document CDA : XML mal formé")]
    schema = _cda_schema()
    if schema is not None and not schema.validate(root):
        last = schema.error_log.last_error
        return [bad(f"document non conforme au schéma CDA R2 : {last.message if last else '?'}")]
    problems = cda_problems(root)
    if problems:
        return [bad("document CDA : " + "; ".join(problems[:5]))]
    errors: list[RegistryError] = []
    doc_id = root.find(_v3("id"))
    unique = "" if doc_id is None else str(doc_id.get("root")) + (f"^{ext}" if (ext := doc_id.get("extension")) else "")
    if unique != entry.unique_id:
        errors.append(bad("ClinicalDocument/id différent de XDSDocumentEntry.uniqueId"))
    code = root.find(_v3("code"))
    type_codes = entry.codes.get("typeCode", [])
    if code is None or not type_codes or (code.get("code"), code.get("codeSystem")) != type_codes[0][:2]:
        errors.append(bad("ClinicalDocument/code différent de XDSDocumentEntry.typeCode"))
    pid = root.find(_v3("recordTarget/patientRole/id"))
    match = _CX_RE.fullmatch(entry.patient_id)
    if pid is None or match is None or (pid.get("extension"), pid.get("root")) != (match["id"], match["oid"]):
        errors.append(bad("recordTarget/patientRole/id différent de XDSDocumentEntry.patientId (INS et OID)"))
    return errors


# --- answers


def _ns() -> tuple[ElementMaker, ElementMaker]:
    return (
        ElementMaker(namespace=SOAP12, nsmap={"s": SOAP12, "a": WSA}),
        ElementMaker(namespace=WSA, nsmap={"a": WSA}),
    )


def registry_response(errors: Sequence[RegistryError], relates_to: str) -> bytes:
    """The SOAP 1.2 envelope of an ``rs:RegistryResponse``: Success, or Failure with its errors."""
    s, a = _ns()
    r = ElementMaker(namespace=RS, nsmap={"rs": RS})
    response = r.RegistryResponse(status=FAILURE if errors else SUCCESS)
    if errors:
        response.append(
            r.RegistryErrorList(
                *(
                    r.RegistryError(errorCode=e.code, codeContext=e.context, location=e.location, severity=ERROR)
                    for e in errors
                ),
                highestSeverity=ERROR,
            )
        )
    envelope = s.Envelope(
        s.Header(a.Action(RESPONSE_ACTION), a.MessageID(f"urn:uuid:{uuid.uuid4()}"), a.RelatesTo(relates_to)),
        s.Body(response),
    )
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return data


def fault_envelope(fault: Fault) -> bytes:
    s, _ = _ns()
    envelope = s.Envelope(
        s.Body(
            s.Fault(
                s.Code(s.Value(f"s:{fault.code}")),
                s.Reason(s.Text(fault.reason, **{"{http://www.w3.org/XML/1998/namespace}lang": "fr"})),
            )
        )
    )
    data: bytes = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return data


def mtom(envelope: bytes) -> tuple[str, bytes]:
    """An envelope as a one-part MTOM message (the answer to an MTOM request): (Content-Type, body)."""
    token = uuid.uuid4().hex
    boundary, cid = f"MIMEBoundary_{token}", f"root.{token}@sandbox"
    body = (
        (
            f'--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
        ).encode("ascii")
        + envelope
        + f"\r\n--{boundary}--\r\n".encode("ascii")
    )
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{cid}>"; '
        f'start-info="application/soap+xml"'
    )
    return content_type, body


# --- the registry


def _visibility(entry: Entry) -> str:
    codes = {c for c, _, _ in entry.codes.get("confidentialityCode", [])}
    if "INVISIBLE_PATIENT" in codes:
        return Visibility.HIDDEN_FROM_PATIENT.value
    if "MASQUE_PS" in codes:
        return Visibility.HIDDEN_FROM_PROFESSIONALS.value
    return Visibility.ALL.value


def provide_and_register(
    content_type: str,
    body: bytes,
    *,
    known_ins: Callable[[str], bool],
    documents: list[dict[str, Any]],
    replies: dict[tuple[str, str], tuple[str, int, dict[str, Any]]],
    next_id: Callable[[str], str],
    today: Callable[[], date],
) -> tuple[int, str, bytes]:
    """Answer one ITI-41 request → (HTTP status, Content-Type, body); ``documents`` and ``replies``
    are the sandbox state it updates (under the caller's lock)."""
    try:
        request = read_request(content_type, body)
    except Fault as fault:
        return fault.status, "application/soap+xml; charset=utf-8", fault_envelope(fault)
    errors, entries, submission = metadata_errors(request)
    if not errors:
        known = {e.id for e in entries}
        for entry in entries:
            if entry.id not in request.documents:
                errors.append(RegistryError("XDSMissingDocument", "document absent de la requête", entry.id))
        for doc_id in request.documents:
            if doc_id not in known:
                errors.append(RegistryError("XDSMissingDocumentMetadata", "document sans métadonnées", doc_id))
    if not errors:
        errors = patient_errors(entries, submission, known_ins)
    if not errors:
        for entry in entries:
            errors += document_errors(entry, request.documents[entry.id])
    if not errors:
        hashes = {e.unique_id: hashlib.sha256(request.documents[e.id]).hexdigest() for e in entries}
        fingerprint = ",".join(f"{k}={v}" for k, v in sorted(hashes.items()))
        slot = ("dmp", str(submission["unique_id"]))
        previous = replies.get(slot)
        if previous is not None:
            if previous[0] != fingerprint:
                errors = [RegistryError("XDSDuplicateUniqueIdInRegistry", "lot de soumission déjà reçu", slot[1])]
            else:
                answer = registry_response([], request.message_id)
                return (200, *mtom(answer))
        stored = {} if errors else {d["unique_id"]: d for d in documents}
        for uid, digest in hashes.items():
            if uid in stored and stored[uid]["hash"] != digest:
                errors.append(RegistryError("XDSNonIdenticalHash", "un autre document porte cet identifiant", uid))
        if not errors:
            for entry in entries:
                type_code = entry.codes["typeCode"][0][0]
                documents.append(
                    {
                        "document_id": next_id("DMP"),
                        "unique_id": entry.unique_id,
                        "submission_set": submission["unique_id"],
                        "source_id": submission["source_id"],
                        "hash": hashes[entry.unique_id],
                        "type": DOCUMENT_TYPES.get(type_code, type_code),
                        "type_code": type_code,
                        "format_code": entry.codes["formatCode"][0][0],
                        "class_code": entry.codes["classCode"][0][0],
                        "confidentiality": sorted(c for c, _, _ in entry.codes["confidentialityCode"]),
                        "visibility": _visibility(entry),
                        "ins": str(_CX_RE.fullmatch(entry.patient_id)["id"]),  # type: ignore[index]
                        "title": entry.title,
                        "received_on": today().isoformat(),
                    }
                )
            replies[slot] = (fingerprint, 200, {"status": "Success"})
    return (200, *mtom(registry_response(errors, request.message_id)))
