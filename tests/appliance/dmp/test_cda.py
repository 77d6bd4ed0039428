"""The CDA R2 documents the counter feeds to the DMP: CI-SIS header, INS, author, body."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lxml import etree

from appliance.dmp import KINDS, cda
from appliance.dmp.model import RPPS_OID, STRUCTURE_OID, DmpDocument, Pharmacist, document_ids
from appliance.domain import Visibility
from sandbox import dmp_registry
from tests.appliance.dmp.documents import PHARMACIST, PHARMACY, document, patient

V3 = "urn:hl7-org:v3"
NS = {"v3": V3}
CASES = [(kind, visibility) for kind in KINDS for visibility in Visibility]


def _root(doc: DmpDocument) -> etree._Element:
    return etree.fromstring(cda.document_bytes(doc))


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.xpath(path, namespaces=NS)
    assert isinstance(found, list) and len(found) == 1, path
    el = found[0]
    assert isinstance(el, etree._Element)
    return el


def _schema_problems(root: etree._Element) -> list[str]:
    """The CDA R2 schema when the sandbox has it, and the structural POCD_MT000040 / CI-SIS check."""
    schema = dmp_registry._cda_schema()
    if schema is not None and not schema.validate(root):
        return [str(schema.error_log)]
    return dmp_registry.cda_problems(root)


@pytest.mark.parametrize(("kind", "visibility"), CASES)
def test_each_kind_and_visibility_is_a_valid_cda_with_the_ci_sis_header(kind: str, visibility: Visibility) -> None:
    root = _root(document(kind, visibility))
    assert root.tag == f"{{{V3}}}ClinicalDocument" and root.nsmap[None] == V3
    assert _schema_problems(root) == []
    assert _one(root, "v3:realmCode").get("code") == "FR"
    type_id = _one(root, "v3:typeId")
    assert (type_id.get("root"), type_id.get("extension")) == ("2.16.840.1.113883.1.3", "POCD_HD000040")
    templates = [t.get("root") for t in root.iterfind(f"{{{V3}}}templateId")]
    assert templates[:2] == ["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"]
    code = _one(root, "v3:code")
    assert (code.get("code"), code.get("codeSystem")) == (KINDS[kind].type_code.code, "2.16.840.1.113883.6.1")
    assert _one(root, "v3:title").text == KINDS[kind].title
    assert _one(root, "v3:effectiveTime").get("value") == "20250314093000+0000"
    # the patient's choice goes in the XDS metadata; the CDA stays N as the CI-SIS asks
    confidentiality = _one(root, "v3:confidentialityCode")
    assert (confidentiality.get("code"), confidentiality.get("codeSystem")) == ("N", "2.16.840.1.113883.5.25")
    assert _one(root, "v3:languageCode").get("code") == "fr-FR"
    assert _one(root, "v3:versionNumber").get("value") == "1"
    assert (
        _one(root, "v3:componentOf/v3:encompassingEncounter/v3:location/v3:healthCareFacility/v3:code").get("code")
        == "SA33"
    )
    setting = "v3:documentationOf/v3:serviceEvent/v3:performer/v3:assignedEntity/v3:representedOrganization"
    assert _one(root, setting + "/v3:standardIndustryClassCode").get("code") == "AMBULATOIRE"


def test_the_vaccination_note_declares_the_vac_note_model() -> None:
    root = _root(document("vaccination"))
    vac = _one(root, "v3:templateId[@root='1.2.250.1.213.1.1.1.46']")
    assert vac.get("extension") == "2021.01"
    assert root.xpath("v3:templateId[@root='1.3.6.1.4.1.19376.1.5.3.1.1.18.1.2']", namespaces=NS)


def test_the_patient_is_the_ins_with_its_oid_and_the_five_traits() -> None:
    ins = patient("durand")
    root = _root(document(ins=ins))
    pid = _one(root, "v3:recordTarget/v3:patientRole/v3:id")
    assert (pid.get("root"), pid.get("extension")) == ("1.2.250.1.213.1.4.10", ins.matricule)
    person = _one(root, "v3:recordTarget/v3:patientRole/v3:patient")
    assert _one(person, "v3:name/v3:family[@qualifier='BR']").text == ins.traits.birth_name
    assert _one(person, "v3:name/v3:given[@qualifier='BR']").text == ins.traits.first_names
    assert _one(person, "v3:administrativeGenderCode").get("code") == ins.traits.sex
    assert _one(person, "v3:birthTime").get("value") == ins.traits.birth_date.strftime("%Y%m%d")
    if ins.traits.birth_place:
        assert _one(person, "v3:birthplace/v3:place/v3:addr/v3:county").text == ins.traits.birth_place


def test_the_author_and_legal_authenticator_are_the_pharmacist_of_the_pharmacy() -> None:
    root = _root(document())
    for path in ("v3:author/v3:assignedAuthor", "v3:legalAuthenticator/v3:assignedEntity"):
        who = _one(root, path)
        ident = _one(who, "v3:id")
        assert (ident.get("root"), ident.get("extension")) == (RPPS_OID, "8" + str(PHARMACIST.rpps))
        profession = _one(who, "v3:code")
        assert (profession.get("code"), profession.get("codeSystem")) == ("21", "1.2.250.1.71.1.2.7")
        assert _one(who, "v3:assignedPerson/v3:name/v3:family").text == PHARMACIST.name
        org = _one(who, "v3:representedOrganization/v3:id")
        assert (org.get("root"), org.get("extension")) == (STRUCTURE_OID, "1" + PHARMACY.finess)
    custodian = _one(root, "v3:custodian/v3:assignedCustodian/v3:representedCustodianOrganization")
    assert _one(custodian, "v3:name").text == PHARMACY.name
    assert _one(root, "v3:author/v3:time").get("value") == "20250314093000+0000"
    assert _one(root, "v3:legalAuthenticator/v3:signatureCode").get("code") == "S"


def test_a_pharmacist_without_a_known_rpps_gets_the_box_local_identifier() -> None:
    doc = document(author=Pharmacist(operator_id=7, name="alice", rpps=None))
    ident = _one(_root(doc), "v3:author/v3:assignedAuthor/v3:id")
    assert (ident.get("root"), ident.get("extension")) == (doc.ids.source + ".1", "7")


def test_the_vaccination_body_lists_the_vaccine_with_its_gtin_and_lot() -> None:
    root = _root(document("vaccination"))
    section = _one(root, "v3:component/v3:structuredBody/v3:component/v3:section[v3:code/@code='11369-6']")
    administration = _one(section, "v3:entry/v3:substanceAdministration")
    assert administration.get("moodCode") == "EVN" and _one(administration, "v3:code").get("code") == "IMMUNIZ"
    material = _one(administration, "v3:consumable/v3:manufacturedProduct/v3:manufacturedMaterial")
    assert _one(material, "v3:code/v3:translation").get("code") == "03400930000120"
    assert _one(material, "v3:lotNumberText").text == "FLU24A"
    ref = _one(administration, "v3:text/v3:reference").get("value")
    assert ref is not None and section.xpath(f".//v3:td[@ID='{ref[1:]}']", namespaces=NS)
    comment = _one(root, "v3:component/v3:structuredBody/v3:component/v3:section[v3:code/@code='48767-8']")
    assert "effets indésirables" in "".join(comment.itertext())


@pytest.mark.parametrize("kind", ["pharmaceutical-interview", "medication-review"])
def test_interview_and_review_list_the_medicines(kind: str) -> None:
    root = _root(document(kind))
    section = _one(root, "v3:component/v3:structuredBody/v3:component/v3:section[v3:code/@code='10160-0']")
    assert len(section.findall(f"{{{V3}}}entry")) == 1


def test_a_visit_without_products_still_says_so_in_the_narrative() -> None:
    root = _root(document("vaccination", products=()))
    assert dmp_registry.cda_problems(root) == []
    assert "Aucun vaccin" in "".join(_one(root, "v3:component//v3:section[v3:code/@code='11369-6']/v3:text").itertext())


def test_ids_are_stable_per_message_and_fit_xds() -> None:
    first, again, other = document_ids("ab" * 16, 5), document_ids("ab" * 16, 5), document_ids("ab" * 16, 6)
    assert first == again and first.document != other.document and first.submission != other.submission
    assert len({first.document, first.set_id, first.submission, first.source}) == 4
    assert all(len(oid) <= 64 and oid.startswith("2.25.") for oid in (first.document, first.submission))
    root = _root(replace(document(), ids=first))
    assert _one(root, "v3:id").get("root") == first.document and _one(root, "v3:setId").get("root") == first.set_id
