"""The XDS.b metadata of an ITI-41 submission: ebRIM-valid, with what ITI-41 and the DMP require."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from appliance.dmp import KINDS, xds
from appliance.domain import Visibility
from sandbox import dmp_registry
from tests.appliance.dmp.documents import PHARMACIST, PHARMACY, built, document, patient

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
NS = {"rim": RIM, "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"}
SCHEMAS = Path(dmp_registry.__file__).parent / "data" / "schemas"
CASES = [(kind, visibility) for kind in KINDS for visibility in Visibility]


@pytest.fixture(scope="module")
def rim_schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(SCHEMAS / "ebRS" / "rim.xsd")))


def _metadata(kind: str = "vaccination", visibility: Visibility = Visibility.ALL) -> etree._Element:
    return etree.fromstring(built(document(kind, visibility)).metadata)


def _codes(entry: etree._Element, scheme: str) -> list[tuple[str, str]]:
    return [
        (
            str(c.get("nodeRepresentation")),
            str(c.findtext("rim:Slot[@name='codingScheme']/rim:ValueList/rim:Value", namespaces=NS)),
        )
        for c in entry.iterfind(f"{{{RIM}}}Classification")
        if c.get("classificationScheme") == scheme
    ]


def _slot(el: etree._Element, name: str) -> list[str]:
    return [str(v.text) for v in el.xpath(f"rim:Slot[@name='{name}']/rim:ValueList/rim:Value", namespaces=NS)]


def _external(el: etree._Element, scheme: str) -> str:
    found = [
        e.get("value") for e in el.iterfind(f"{{{RIM}}}ExternalIdentifier") if e.get("identificationScheme") == scheme
    ]
    assert len(found) == 1
    return str(found[0])


@pytest.mark.parametrize(("kind", "visibility"), CASES)
def test_metadata_is_valid_ebrim_and_has_what_iti41_requires(
    kind: str, visibility: Visibility, rim_schema: etree.XMLSchema
) -> None:
    submit = _metadata(kind, visibility)
    assert submit.tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest"
    objects = submit.find(f"{{{RIM}}}RegistryObjectList")
    assert objects is not None
    assert rim_schema.validate(objects), rim_schema.error_log
    submission = built(document(kind, visibility))
    request = dmp_registry.Request("urn:uuid:test", submit, {xds.DOCUMENT_SYMBOL: submission.document})
    errors, entries, submission_set = dmp_registry.metadata_errors(request)
    assert errors == [] and len(entries) == 1 and submission_set["unique_id"] == submission.submission_unique_id
    assert dmp_registry.document_errors(entries[0], submission.document) == []


@pytest.mark.parametrize(
    ("visibility", "codes"),
    [
        (Visibility.ALL, {("N", "2.16.840.1.113883.5.25")}),
        (
            Visibility.HIDDEN_FROM_PATIENT,
            {("N", "2.16.840.1.113883.5.25"), ("INVISIBLE_PATIENT", "1.2.250.1.213.1.1.4.13")},
        ),
        (
            Visibility.HIDDEN_FROM_PROFESSIONALS,
            {("N", "2.16.840.1.113883.5.25"), ("MASQUE_PS", "1.2.250.1.213.1.1.4.13")},
        ),
    ],
)
def test_the_visibility_the_patient_chose_is_the_dmp_confidentiality_codes(
    visibility: Visibility, codes: set[tuple[str, str]]
) -> None:
    entry = _metadata("medication-review", visibility).find("rim:RegistryObjectList/rim:ExtrinsicObject", NS)
    assert entry is not None
    assert set(_codes(entry, xds.DE_CONFIDENTIALITY_CODE)) == codes


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_document_entry_codes(kind: str) -> None:
    entry = _metadata(kind).find("rim:RegistryObjectList/rim:ExtrinsicObject", NS)
    assert entry is not None and entry.get("objectType") == xds.DOCUMENT_ENTRY and entry.get("mimeType") == "text/xml"
    spec = KINDS[kind]
    assert _codes(entry, xds.DE_TYPE_CODE) == [(spec.type_code.code, "2.16.840.1.113883.6.1")]
    assert _codes(entry, xds.DE_CLASS_CODE) == [(spec.class_code.code, "1.2.250.1.213.1.1.4.1")]
    assert _codes(entry, xds.DE_FORMAT_CODE) == [(spec.format_code.code, "1.2.250.1.213.1.1.4.2.282")]
    assert _codes(entry, xds.DE_FACILITY_TYPE_CODE) == [("SA33", "1.2.250.1.71.4.2.4")]
    assert _codes(entry, xds.DE_PRACTICE_SETTING_CODE) == [("AMBULATOIRE", "1.2.250.1.213.1.1.4.9")]
    assert _slot(entry, "languageCode") == ["fr-FR"] and _slot(entry, "creationTime") == ["20250314093000"]
    if kind == "vaccination":
        assert spec.format_code.code == "urn:asip:ci-sis:vac-note:2021"


def test_patient_id_is_the_ins_with_its_oid_everywhere() -> None:
    ins = patient("durand")
    cx = f"{ins.matricule}^^^&1.2.250.1.213.1.4.10&ISO^NH"
    objects = _metadata().find("rim:RegistryObjectList", NS)
    assert objects is not None
    entry, package = objects.find("rim:ExtrinsicObject", NS), objects.find("rim:RegistryPackage", NS)
    assert entry is not None and package is not None
    assert _external(entry, xds.DE_PATIENT_ID) == cx == _external(package, xds.SS_PATIENT_ID)
    assert _slot(entry, "sourcePatientId") == [cx]
    info = _slot(entry, "sourcePatientInfo")
    assert f"PID-7|{ins.traits.birth_date.strftime('%Y%m%d')}" in info and f"PID-8|{ins.traits.sex}" in info


def test_the_author_is_the_pharmacist_and_the_submission_set_is_complete() -> None:
    objects = _metadata().find("rim:RegistryObjectList", NS)
    assert objects is not None
    package = objects.find("rim:RegistryPackage", NS)
    assert package is not None
    for owner, scheme in ((objects.find("rim:ExtrinsicObject", NS), xds.DE_AUTHOR), (package, xds.SS_AUTHOR)):
        assert owner is not None
        author = next(c for c in owner.iterfind(f"{{{RIM}}}Classification") if c.get("classificationScheme") == scheme)
        person = _slot(author, "authorPerson")[0]
        assert person.startswith(f"8{PHARMACIST.rpps}^{PHARMACIST.name}^") and person.endswith(
            "&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"
        )
        assert _slot(author, "authorInstitution") == [
            f"{PHARMACY.name}^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1{PHARMACY.finess}"
        ]
        assert _slot(author, "authorSpecialty") == ["G15_21^Pharmacien^1.2.250.1.213.1.1.4.5"]
    assert _slot(package, "submissionTime") == ["20250314093000"]
    assert _codes(package, xds.SS_CONTENT_TYPE_CODE) == [("SA33", "1.2.250.1.71.4.2.4")]
    doc = document()
    assert _external(package, xds.SS_UNIQUE_ID) == doc.ids.submission
    assert _external(package, xds.SS_SOURCE_ID) == doc.ids.source
    classified = objects.find("rim:Classification", NS)
    assert classified is not None and classified.get("classificationNode") == xds.SUBMISSION_SET
    association = objects.find("rim:Association", NS)
    assert association is not None and association.get("associationType") == xds.HAS_MEMBER
    assert _slot(association, "SubmissionSetStatus") == ["Original"]


def test_the_entry_unique_id_is_the_cda_id() -> None:
    submission = built()
    cda = etree.fromstring(submission.document)
    entry = etree.fromstring(submission.metadata).find("rim:RegistryObjectList/rim:ExtrinsicObject", NS)
    assert entry is not None
    assert (
        _external(entry, xds.DE_UNIQUE_ID)
        == cda.find("{urn:hl7-org:v3}id").get("root")
        == submission.document_unique_id
    )  # type: ignore[union-attr]


def test_names_with_hl7_delimiters_are_escaped() -> None:
    from appliance.dmp.model import Pharmacy

    doc = document(pharmacy=Pharmacy("750000010", "Pharmacie A^B & C"))
    assert xds.author_institution(doc).startswith("Pharmacie A\\S\\B \\T\\ C^")
