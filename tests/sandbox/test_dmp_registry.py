"""The sandbox DMP (ITI-41): what it refuses, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree

from appliance.dmp import xds
from appliance.domain import Visibility
from sandbox import dmp_registry
from sandbox import population as pop
from sandbox.server import SandboxServer
from sync import dmp_xds
from tests.appliance.dmp.documents import document, wire

RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
NS = {"rim": RIM, "rs": RS, "v3": "urn:hl7-org:v3"}
SCHEMAS = Path(dmp_registry.__file__).parent / "data" / "schemas"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    server.state.reset()
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        yield client


def _post(http: httpx.Client, payload: dict[str, Any]) -> httpx.Response:
    request = dmp_xds.package(payload, to=str(http.base_url) + dmp_registry.PATH)
    return http.post(dmp_registry.PATH, content=request.body, headers={"Content-Type": request.content_type})


def _errors(response: httpx.Response) -> list[tuple[str, str]]:
    root, _ = dmp_xds.mime_parts(response.headers["content-type"], response.content)
    answer = etree.fromstring(root).find(f"{{http://www.w3.org/2003/05/soap-envelope}}Body/{{{RS}}}RegistryResponse")
    assert answer is not None
    return [(str(e.get("errorCode")), str(e.get("codeContext"))) for e in answer.iterfind(f".//{{{RS}}}RegistryError")]


def _edited(edit: Callable[[etree._Element], None], payload: dict[str, Any] | None = None) -> dict[str, Any]:
    payload = dict(payload or wire())
    submit = etree.fromstring(payload["metadata"])
    edit(submit)
    payload["metadata"] = etree.tostring(submit)
    return payload


def _drop(xpath: str) -> Callable[[etree._Element], None]:
    def edit(submit: etree._Element) -> None:
        found = submit.xpath(xpath, namespaces=NS)
        assert isinstance(found, list) and found, xpath
        for el in found:
            assert isinstance(el, etree._Element)
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)

    return edit


def _classification(scheme: str) -> str:
    return f"//rim:ExtrinsicObject/rim:Classification[@classificationScheme='{scheme}']"


def test_a_complete_submission_is_a_success_valid_against_rs_xsd(http: httpx.Client) -> None:
    response = _post(http, wire())
    assert response.status_code == 200 and _errors(response) == []
    root, _ = dmp_xds.mime_parts(response.headers["content-type"], response.content)
    envelope = etree.fromstring(root)
    answer = envelope.find(f"{{http://www.w3.org/2003/05/soap-envelope}}Body/{{{RS}}}RegistryResponse")
    schema = etree.XMLSchema(etree.parse(str(SCHEMAS / "ebRS" / "rs.xsd")))
    assert answer is not None and schema.validate(answer), schema.error_log
    assert answer.get("status") == dmp_registry.SUCCESS
    action = envelope.findtext(
        "{http://www.w3.org/2003/05/soap-envelope}Header/{http://www.w3.org/2005/08/addressing}Action"
    )
    assert action == dmp_registry.RESPONSE_ACTION


@pytest.mark.parametrize(
    ("xpath", "expected"),
    [
        (_classification(xds.DE_TYPE_CODE), "XDSDocumentEntry.typeCode manquant"),
        (_classification(xds.DE_CLASS_CODE), "XDSDocumentEntry.classCode manquant"),
        (_classification(xds.DE_FORMAT_CODE), "XDSDocumentEntry.formatCode manquant"),
        (_classification(xds.DE_FACILITY_TYPE_CODE), "XDSDocumentEntry.healthcareFacilityTypeCode manquant"),
        (_classification(xds.DE_PRACTICE_SETTING_CODE), "XDSDocumentEntry.practiceSettingCode manquant"),
        (_classification(xds.DE_CONFIDENTIALITY_CODE), "XDSDocumentEntry.confidentialityCode manquant"),
        (_classification(xds.DE_AUTHOR), "XDSDocumentEntry.author manquant"),
        ("//rim:ExtrinsicObject/rim:Slot[@name='creationTime']", "XDSDocumentEntry.creationTime manquant"),
        ("//rim:ExtrinsicObject/rim:Slot[@name='sourcePatientId']", "XDSDocumentEntry.sourcePatientId manquant"),
        (
            f"//rim:ExtrinsicObject/rim:ExternalIdentifier[@identificationScheme='{xds.DE_UNIQUE_ID}']",
            "XDSDocumentEntry.uniqueId manquant",
        ),
        (
            f"//rim:ExtrinsicObject/rim:ExternalIdentifier[@identificationScheme='{xds.DE_PATIENT_ID}']",
            "XDSDocumentEntry.patientId manquant",
        ),
        ("//rim:RegistryPackage/rim:Slot[@name='submissionTime']", "XDSSubmissionSet.submissionTime manquant"),
        (
            f"//rim:RegistryPackage/rim:Classification[@classificationScheme='{xds.SS_CONTENT_TYPE_CODE}']",
            "contentTypeCode manquant",
        ),
        (
            f"//rim:RegistryPackage/rim:ExternalIdentifier[@identificationScheme='{xds.SS_SOURCE_ID}']",
            "XDSSubmissionSet.sourceId manquant",
        ),
        ("//rim:RegistryObjectList/rim:Association", "association HasMember"),
        ("//rim:RegistryObjectList/rim:Classification", "lot de soumission"),
        (
            _classification(xds.DE_TYPE_CODE) + "/rim:Slot[@name='codingScheme']",
            "typeCode sans code ou sans codingScheme",
        ),
    ],
)
def test_a_missing_required_metadata_element_is_refused(http: httpx.Client, xpath: str, expected: str) -> None:
    response = _post(http, _edited(_drop(xpath)))
    assert response.status_code == 200
    errors = _errors(response)
    assert errors and errors[0][0] == "XDSRegistryMetadataError"
    assert any(expected in context for _, context in errors), errors
    assert http.get("/_sandbox/state").json()["dmp_documents"] == []


def test_metadata_that_is_not_ebrim_is_refused(http: httpx.Client) -> None:
    def rename(submit: etree._Element) -> None:
        slot = submit.find(f".//{{{RIM}}}Slot")
        assert slot is not None
        del slot.attrib["name"]

    (error,) = _errors(_post(http, _edited(rename)))
    assert error[0] == "XDSRegistryMetadataError" and "ebRIM" in error[1]


def test_both_masks_at_once_are_refused(http: httpx.Client) -> None:
    def both(submit: etree._Element) -> None:
        entry = submit.find(f".//{{{RIM}}}ExtrinsicObject")
        assert entry is not None
        masked = [
            c
            for c in entry.iterfind(f"{{{RIM}}}Classification")
            if c.get("classificationScheme") == xds.DE_CONFIDENTIALITY_CODE and c.get("nodeRepresentation") != "N"
        ]
        extra = etree.fromstring(etree.tostring(masked[0]))
        extra.set("nodeRepresentation", "MASQUE_PS")
        extra.set("id", "cl99")
        masked[0].addnext(extra)

    errors = _errors(_post(http, _edited(both, wire(document(visibility=Visibility.HIDDEN_FROM_PATIENT)))))
    assert any("à la fois" in context for _, context in errors)


def test_the_cda_must_agree_with_its_metadata(http: httpx.Client) -> None:
    payload = wire(document("vaccination"))
    cda = etree.fromstring(payload["documents"][0]["content"])
    code = cda.find("{urn:hl7-org:v3}code")
    assert code is not None
    code.set("code", "78601-2")
    payload["documents"] = [{**payload["documents"][0], "content": etree.tostring(cda)}]
    (error,) = _errors(_post(http, payload))
    assert error == ("XDSRepositoryMetadataError", "ClinicalDocument/code différent de XDSDocumentEntry.typeCode")


def test_a_cda_out_of_the_pocd_order_is_refused(http: httpx.Client) -> None:
    payload = wire()
    cda = etree.fromstring(payload["documents"][0]["content"])
    title = cda.find("{urn:hl7-org:v3}title")
    assert title is not None
    cda.remove(title)
    cda.append(title)
    payload["documents"] = [{**payload["documents"][0], "content": etree.tostring(cda)}]
    (error,) = _errors(_post(http, payload))
    assert error[0] == "XDSRepositoryMetadataError" and "title" in error[1]


def test_a_missing_document_part_is_refused(http: httpx.Client) -> None:
    payload = {**wire(), "documents": []}
    (error,) = _errors(_post(http, payload))
    assert error[0] == "XDSMissingDocument"


def test_another_content_under_a_known_unique_id_is_refused(http: httpx.Client) -> None:
    assert _errors(_post(http, wire(document("vaccination", number=5)))) == []
    assert _errors(_post(http, wire(document("vaccination", number=5)))) == []  # the same again: a replay
    changed = wire(document("vaccination", number=5, note="autre contenu"))
    (error,) = _errors(_post(http, changed))
    assert error[0] == "XDSDuplicateUniqueIdInRegistry"
    assert len(http.get("/_sandbox/state").json()["dmp_documents"]) == 1


def test_what_is_not_iti41_gets_a_soap_fault(http: httpx.Client) -> None:
    request = dmp_xds.package(wire(), to="http://sandbox/dmp/repository")
    root, _ = dmp_xds.mime_parts(request.content_type, request.body)
    plain = http.post(dmp_registry.PATH, content=root, headers={"Content-Type": "application/soap+xml"})
    assert plain.status_code == 415 and b"MTOM" in plain.content and b"s:Sender" in plain.content
    wrong_action = request.body.replace(dmp_xds.ACTION.encode(), b"urn:ihe:iti:2007:RegistryStoredQuery", 1)
    refused = http.post(dmp_registry.PATH, content=wrong_action, headers={"Content-Type": request.content_type})
    assert refused.status_code == 400 and b"RegistryStoredQuery" in refused.content
    soap11 = request.body.replace(
        b"http://www.w3.org/2003/05/soap-envelope", b"http://schemas.xmlsoap.org/soap/envelope/"
    )
    old = http.post(dmp_registry.PATH, content=soap11, headers={"Content-Type": request.content_type})
    assert b"VersionMismatch" in old.content
    assert http.get("/_sandbox/state").json()["requests"]["dmp"] == 3
