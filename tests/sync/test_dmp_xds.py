"""The DMP feed as IHE ITI-41 over SOAP 1.2 with MTOM/XOP, against the sandbox on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlite_utils
from lxml import etree

from appliance.delivery import deliver_pending
from appliance.domain import IdentityStatus, Ins, Role, Visibility
from appliance.store import open_database, operators
from appliance.store.database import set_setting, transaction
from appliance.store.records import CounterRecords
from appliance.store.sealing import FieldCipher
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from sandbox import dmp_registry
from sandbox import population as pop
from sandbox.server import SandboxServer
from sync import dmp_xds
from sync.teleservices_http import HttpTeleservices
from tests.appliance.dmp.documents import document, patient, wire

SOAP = "{http://www.w3.org/2003/05/soap-envelope}"
WSA = "{http://www.w3.org/2005/08/addressing}"
XDSB = "{urn:ihe:iti:xds-b:2007}"
XOP = "{http://www.w3.org/2004/08/xop/include}"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY, max_hang=5.0)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def ts(server: SandboxServer) -> Iterator[HttpTeleservices]:
    server.state.reset()
    with HttpTeleservices(server.url, timeout=2.0, sleep=lambda _s: None) as adapter:
        yield adapter


# --- MTOM/XOP packaging


def test_the_request_is_soap_12_with_mtom_xop() -> None:
    payload = wire()
    request = dmp_xds.package(payload, to="https://dmp.example/repository", message_id="urn:uuid:m-1")
    assert request.content_type.startswith("multipart/related;")
    for part in ('type="application/xop+xml"', 'start-info="application/soap+xml"', f'action="{dmp_xds.ACTION}"'):
        assert part in request.content_type
    root, parts = dmp_xds.mime_parts(request.content_type, request.body)
    envelope = etree.fromstring(root)
    assert envelope.tag == f"{SOAP}Envelope"
    action = envelope.find(f"{SOAP}Header/{WSA}Action")
    assert action is not None and action.text == dmp_xds.ACTION and action.get(f"{SOAP}mustUnderstand") == "true"
    assert envelope.findtext(f"{SOAP}Header/{WSA}MessageID") == "urn:uuid:m-1"
    assert envelope.findtext(f"{SOAP}Header/{WSA}To") == "https://dmp.example/repository"
    body = envelope.find(f"{SOAP}Body/{XDSB}ProvideAndRegisterDocumentSetRequest")
    assert body is not None
    assert body[0].tag == "{urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0}SubmitObjectsRequest"
    document_el = body.find(f"{XDSB}Document")
    assert document_el is not None and document_el.get("id") == "Document01"
    include = document_el.find(f"{XOP}Include")
    assert include is not None and str(include.get("href")).startswith("cid:")
    # the CDA travels as a binary MIME part, byte for byte, not base64 inside the envelope
    assert parts[str(include.get("href"))[4:]] == payload["documents"][0]["content"]
    assert b"ClinicalDocument" not in root
    # the sandbox reads the same request back
    read = dmp_registry.read_request(request.content_type, request.body)
    assert read.message_id == "urn:uuid:m-1" and read.documents == {"Document01": payload["documents"][0]["content"]}


def test_only_iti41_submissions_travel_on_the_dmp_stream() -> None:
    with pytest.raises(ValueError, match="ITI-41"):
        dmp_xds.package({"type": "vaccination"}, to="http://x")


# --- against the sandbox over HTTP


def test_the_sandbox_accepts_the_submission_and_stores_the_document(
    ts: HttpTeleservices, server: SandboxServer
) -> None:
    doc = document("vaccination", Visibility.HIDDEN_FROM_PATIENT)
    answer = ts.deliver("dmp", "dmp:1", wire(doc))
    assert answer["status"] == "Success" and answer["document_unique_id"] == doc.ids.document
    stored = server.state.snapshot()["dmp_documents"]
    assert len(stored) == 1
    assert stored[0]["unique_id"] == doc.ids.document and stored[0]["ins"] == doc.patient.matricule
    assert stored[0]["type"] == "vaccination" and stored[0]["visibility"] == "hidden-from-patient"
    assert stored[0]["confidentiality"] == ["INVISIBLE_PATIENT", "N"]
    assert stored[0]["format_code"] == "urn:asip:ci-sis:vac-note:2021"


def test_a_repeat_after_a_lost_answer_is_one_document(ts: HttpTeleservices, server: SandboxServer) -> None:
    server.state.reset()
    httpx.post(server.url + "/_sandbox/faults", json={"service": "dmp", "drop_response": True, "times": 1}, timeout=2)
    payload = wire(document("medication-review"))
    with HttpTeleservices(server.url, timeout=2.0, deliver_attempts=2, sleep=lambda _s: None) as twice:
        assert twice.deliver("dmp", "dmp:2", payload)["status"] == "Success"
    assert server.state.requests["dmp"] == 2 and len(server.state.snapshot()["dmp_documents"]) == 1


def test_a_failure_answer_is_a_refusal_with_a_french_message(ts: HttpTeleservices, server: SandboxServer) -> None:
    ins = patient("durand")
    production = Ins(ins.matricule, "1.2.250.1.213.1.4.8", ins.traits)
    with pytest.raises(TeleserviceRefused) as refused:
        ts.deliver("dmp", "dmp:3", wire(document(ins=production, number=3)))
    assert refused.value.code == "XDSUnknownPatientId"
    assert "DMP" in refused.value.message and "OID 1.2.250.1.213.1.4.8" in refused.value.message
    assert server.state.requests["dmp"] == 1  # a refusal is not retried
    assert server.state.snapshot()["dmp_documents"] == []


def test_an_unavailable_repository_keeps_the_document(ts: HttpTeleservices, server: SandboxServer) -> None:
    httpx.post(server.url + "/_sandbox/faults", json={"service": "dmp", "error_status": 503, "times": 1}, timeout=2)
    with pytest.raises(TeleserviceUnavailable, match="HTTP 503"):
        ts.deliver("dmp", "dmp:4", wire(), attempts=1)


def _answer(status: int, envelope: bytes, content_type: str = "application/soap+xml") -> HttpTeleservices:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=envelope, headers={"Content-Type": content_type})

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return HttpTeleservices("http://dmp.invalid", client=client, deliver_attempts=1)


def test_registry_errors_map_to_refusals_and_faults_to_unavailable() -> None:
    failure = dmp_registry.registry_response(
        [dmp_registry.RegistryError("XDSRegistryMetadataError", "XDSDocumentEntry.typeCode manquant", "Document01")],
        "urn:uuid:other",
    )
    # a RegistryResponse that relates to another message is not our answer
    with pytest.raises(TeleserviceUnavailable, match="another message"):
        _answer(200, failure).deliver("dmp", "k", wire())
    unrelated = failure.replace(b"<a:RelatesTo>urn:uuid:other</a:RelatesTo>", b"")
    with pytest.raises(TeleserviceRefused) as refused:
        _answer(200, unrelated).deliver("dmp", "k", wire())
    assert refused.value.code == "XDSRegistryMetadataError"
    assert refused.value.message == "Métadonnées du document refusées par le DMP : XDSDocumentEntry.typeCode manquant"
    sender = dmp_registry.fault_envelope(dmp_registry.Fault("action inconnue"))
    with pytest.raises(TeleserviceRefused, match="action inconnue"):
        _answer(400, sender).deliver("dmp", "k", wire())
    receiver = dmp_registry.fault_envelope(dmp_registry.Fault("indisponible", code="Receiver", status=500))
    with pytest.raises(TeleserviceUnavailable, match="Receiver"):
        _answer(500, receiver).deliver("dmp", "k", wire())
    with pytest.raises(TeleserviceUnavailable, match="not a SOAP"):
        _answer(200, b"{}", "application/json").deliver("dmp", "k", wire())


# --- from the store, through the outbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_781_510_400.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def records(tmp_path: Path) -> Iterator[CounterRecords]:
    key = tmp_path / "k.key"
    FieldCipher.create_key(key)
    db: sqlite_utils.Database = open_database(tmp_path / "c.db")
    yield CounterRecords(db, FieldCipher.load(key), Clock())
    db.close()


def _qualified(records: CounterRecords, key: str) -> int:
    person = pop.person(key)
    return records.remember_patient(
        beneficiary=person.beneficiary,
        ins=person.ins,
        traits=person.beneficiary.traits,
        status=IdentityStatus.QUAL,
        reason="apcv",
        operator_id=None,
    ).id


def _pharmacy(records: CounterRecords) -> None:
    with transaction(records.db) as conn:
        for k, v in dmp_registry.TEST_PHARMACY.items():
            set_setting(conn, k, v)


def test_the_outbox_message_holds_ids_and_the_delivery_reads_the_store(
    records: CounterRecords, server: SandboxServer, ts: HttpTeleservices
) -> None:
    operator = operators.add_operator(records.db, "dupont", Role.PHARMACIEN, "2468")
    operators.set_rpps(records.db, operator, "10001234567", by=None)
    patient_id = _qualified(records, "durand")
    records.enqueue_dmp(patient_id, "pharmaceutical-interview", Visibility.HIDDEN_FROM_PROFESSIONALS, operator)
    (payload,) = [row[0] for row in records.db.conn.execute("SELECT payload FROM outbox WHERE stream = 'dmp'")]
    ins = pop.person("durand").ins
    assert ins is not None and ins.matricule not in payload and ins.traits.birth_name not in payload
    # not configured: the document waits in the outbox
    report = deliver_pending(records, ts, clock=records.clock)
    assert report.deferred == 1 and server.state.requests["dmp"] == 0
    _pharmacy(records)
    report = deliver_pending(records, ts, clock=lambda: records.clock() + 3600)
    assert report.delivered == 1, report.notes
    (stored,) = server.state.snapshot()["dmp_documents"]
    assert stored["type"] == "pharmaceutical-interview" and stored["visibility"] == "hidden-from-professionals"
    assert stored["ins"] == ins.matricule
    status = records.db.conn.execute("SELECT status FROM dmp_documents").fetchone()[0]
    assert status == "sent"


def test_a_refused_document_is_marked_and_does_not_block_the_stream(
    records: CounterRecords, server: SandboxServer, ts: HttpTeleservices
) -> None:
    _pharmacy(records)
    operator = operators.add_operator(records.db, "dupont", Role.PHARMACIEN, "2468")
    unknown = _qualified(records, "durand")
    # the INS of a person the test DMP has no record for
    with transaction(records.db) as conn:
        conn.execute("UPDATE patients SET oid = ? WHERE id = ?", ("1.2.250.1.213.1.4.8", unknown))
    records.enqueue_dmp(unknown, "vaccination", Visibility.ALL, operator)
    report = deliver_pending(records, ts, clock=records.clock)
    assert report.refused == 1 and "DMP" in report.notes[0]
    assert records.db.conn.execute("SELECT status FROM dmp_documents").fetchone()[0] == "refused"
