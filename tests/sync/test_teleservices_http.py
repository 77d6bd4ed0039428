"""The HTTP teleservices adapter against the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.domain import Ins, InsiOutcome, InsiResult, Traits
from appliance.teleservices import TeleserviceRefused, Teleservices, TeleserviceUnavailable
from sandbox import insi_soap as sandbox_soap
from sandbox import population as pop
from sandbox.backoffice.pki import Pki
from sandbox.server import SandboxServer
from sync.insi_soap import InsiSettings
from sync.teleservices_http import HttpTeleservices, ssl_context
from tests.appliance.dmp.documents import document as dmp_document
from tests.appliance.dmp.documents import patient as dmp_patient
from tests.appliance.dmp.documents import wire as dmp_wire

DAY = pop.REFERENCE_DAY


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = SandboxServer(port=0, today=lambda: DAY, max_hang=5.0)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def ts(server: SandboxServer, sleeps: list[float]) -> Iterator[HttpTeleservices]:
    server.state.reset()
    with HttpTeleservices(server.url, timeout=1.0, sleep=sleeps.append) as adapter:
        yield adapter


def _fault(server: SandboxServer, **fault: Any) -> None:
    assert httpx.post(server.url + "/_sandbox/faults", json=fault, timeout=2).status_code == 200


def _claim(key: str, number: str) -> dict[str, Any]:
    nir = pop.person(key).beneficiary.nir
    return {
        "claim_number": number,
        "nir": nir,
        "total_cents": 1000,
        "amo_cents": 650,
        "amc_cents": 0,
        "patient_cents": 350,
    }


def test_it_is_a_teleservices_port(ts: HttpTeleservices) -> None:
    port: Teleservices = ts
    assert port is ts


def test_apcv_context_maps_to_domain_types(ts: HttpTeleservices) -> None:
    context = ts.apcv_context(pop.APCV_TOKENS["twins"])
    assert [b.rank for b in context.beneficiaries] == [1, 1, 2]
    assert context.beneficiaries == tuple(p.beneficiary for p in pop.members("twins"))
    for person in pop.members("twins"):
        assert context.ins[person.beneficiary.nir] == person.ins
    assert context.expires_at > time.time()


def test_expired_apcv_context_is_a_refusal_with_a_french_message(ts: HttpTeleservices) -> None:
    with pytest.raises(TeleserviceRefused) as info:
        ts.apcv_context(pop.APCV_TOKENS["expired"])
    assert info.value.code == "APCV_EXPIRED"
    assert "appli carte Vitale a expiré" in info.value.message


def test_insi_by_card_tells_twins_apart_and_reports_01_and_02(ts: HttpTeleservices) -> None:
    lucas, noah = (
        ts.insi_search_card(pop.person("petit-lucas").beneficiary),
        ts.insi_search_card(pop.person("petit-noah").beneficiary),
    )
    assert lucas.outcome is noah.outcome is InsiOutcome.FOUND
    assert lucas.identities[0].traits.first_names == "LUCAS" and noah.identities[0].traits.first_names == "NOAH"
    assert ts.insi_search_card(pop.person("insi-none").beneficiary).outcome is InsiOutcome.NONE
    two = ts.insi_search_card(pop.person("insi-two").beneficiary)
    assert two.outcome is InsiOutcome.SEVERAL and len(two.identities) == 2


def test_insi_by_traits(ts: HttpTeleservices) -> None:
    leroux = pop.person("traits-differ")
    card = leroux.beneficiary.traits
    found = ts.insi_search_traits(card)
    assert found.outcome is InsiOutcome.FOUND
    assert found.identities[0].traits != card and found.identities[0].traits.birth_name == "LE ROUX"
    assert found.history == leroux.ins_history and found.history[0].valid_to == date(2019, 2, 28)
    homonyms = Traits("DUBOIS", "JEAN", "M", date(1970, 1, 15))
    assert ts.insi_search_traits(homonyms).outcome is InsiOutcome.SEVERAL
    corsica = pop.person("corsica")
    assert ts.insi_search_traits(corsica.beneficiary.traits).identities == (corsica.ins,)


def test_adri_rights(ts: HttpTeleservices) -> None:
    assert ts.adri(pop.person("ald").beneficiary, DAY).ald
    c2s = ts.adri(pop.person("c2s-child").beneficiary, DAY)
    assert c2s.c2s and c2s.covers(DAY)
    assert ts.adri(pop.person("provisional").beneficiary, DAY) == pop.person("provisional").amo


def test_expired_mutuelle_then_dld(ts: HttpTeleservices) -> None:
    claire = pop.person("expired-amc")
    assert claire.amc is not None
    args = (claire.amc.amc_number, claire.amc.member_number, claire.beneficiary.nir, DAY)
    with pytest.raises(TeleserviceRefused, match=r"(?i)droits mutuelle expirés") as info:
        ts.idb(*args)
    assert info.value.code == "AMC_EXPIRED"
    renewed = ts.dld(*args)
    assert renewed.covers(DAY) and renewed.accreditation and renewed.coverage_pct == 100
    durand = pop.person("durand")
    assert durand.amc is not None
    rights = ts.idb("88888888", "0012345678", durand.beneficiary.nir, DAY)
    assert rights.accreditation and rights.conventions == ("SP", "ISANTE")


def test_prescription_round_trips_to_the_domain(ts: HttpTeleservices) -> None:
    for rx_id in ("EP7K2Q-9XWM-4TDA-LR8C", "EP9ALD-2MRC-5RSS-3B8E", "EP8DCI-5PCM-1DBS-7DCI"):
        assert ts.fetch_prescription(rx_id) == pop.PRESCRIPTIONS[rx_id]
    with pytest.raises(TeleserviceRefused) as info:
        ts.fetch_prescription("EP0000-0000-0000-0000")
    assert info.value.code == "EP_UNKNOWN"


def test_a_second_dispensing_of_the_same_prescription_is_refused(ts: HttpTeleservices) -> None:
    step1 = {"step": 1, "prescription_id": "EP5LEA-4PED-7CLX-0A2B", "renewal": 0, "lines": []}
    first = ts.deliver("execution", "disp-1", step1)
    assert first["status"] == "recorded"
    assert ts.deliver("execution", "disp-1", step1) == first
    with pytest.raises(TeleserviceRefused, match="déjà délivrée") as info:
        ts.deliver("execution", "disp-2", step1)
    assert info.value.code == "ALREADY_DISPENSED"


def test_execution_step_two_after_the_acknowledgement(ts: HttpTeleservices) -> None:
    rx_id = "EP2C2S-7AMD-6DLL-4XQP"
    ts.deliver("execution", "e1", {"step": 1, "prescription_id": rx_id, "renewal": 0, "lines": []})
    ack = ts.deliver("batch", "batch-7", {"batch_number": "7", "claims": [_claim("c2s", "70")]})
    assert ack["ack"] == "positive"
    step2 = {"step": 2, "prescription_id": rx_id, "renewal": 0, "claim_number": "70", "batch_number": "7"}
    assert ts.deliver("execution", "e2", step2)["status"] == "completed"


def test_negative_acknowledgement_is_returned_not_raised(ts: HttpTeleservices) -> None:
    ack = ts.deliver("batch", "neg", {"batch_number": "8", "claims": [_claim("arl-rejected", "80")]})
    assert ack["ack"] == "negative"
    assert ack["rejected_claims"][0]["claim_number"] == "80" and ack["reason"]


def test_lost_response_is_retried_with_the_same_key_and_counts_one_batch(
    ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]
) -> None:
    _fault(server, service="batch", drop_response=True, times=1)
    ack = ts.deliver("batch", "batch-9", {"batch_number": "9", "claims": [_claim("durand", "90")]})
    assert ack["ack"] == "positive"
    state = server.state.snapshot()
    assert len(state["batches"]) == 1 and state["batches"][0]["ack"] == ack
    assert state["requests"]["batch"] == 2 and sleeps == [0.2]


def test_lost_response_then_a_later_delivery_gets_the_same_acknowledgement(server: SandboxServer) -> None:
    server.state.reset()
    _fault(server, service="batch", drop_response=True, times=1)
    batch = {"batch_number": "10", "claims": [_claim("durand", "100")]}
    with HttpTeleservices(server.url, timeout=1.0, deliver_attempts=1) as once:
        with pytest.raises(TeleserviceUnavailable):
            once.deliver("batch", "batch-10", batch)
        ack = once.deliver("batch", "batch-10", batch)
    state = server.state.snapshot()
    assert [b["ack"] for b in state["batches"]] == [ack]


def test_delivery_gives_up_after_bounded_retries_with_backoff(
    ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]
) -> None:
    _fault(server, service="dmp", error_status=503)
    with pytest.raises(TeleserviceUnavailable, match="HTTP 503"):
        ts.deliver("dmp", "d1", dmp_wire())
    assert sleeps == [0.2, 0.4, 0.8]
    assert server.state.requests["dmp"] == 4
    with pytest.raises(TeleserviceUnavailable):
        ts.deliver("dmp", "d1", dmp_wire(), attempts=1)
    assert server.state.requests["dmp"] == 5 and len(sleeps) == 3


def test_refusals_are_not_retried(ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]) -> None:
    ins = dmp_patient("le-goff")
    not_a_test_ins = Ins(ins.matricule, "1.2.250.1.213.1.4.8", ins.traits)
    with pytest.raises(TeleserviceRefused) as info:
        ts.deliver("dmp", "d2", dmp_wire(dmp_document("medication-review", ins=not_a_test_ins, number=2)))
    assert info.value.code == "XDSUnknownPatientId" and sleeps == [] and server.state.requests["dmp"] == 1
    accepted = ts.deliver("dmp", "d3", dmp_wire(dmp_document("medication-review", ins=ins, number=3)))
    assert accepted["status"] == "Success"


def test_interactive_calls_are_not_retried(ts: HttpTeleservices, server: SandboxServer) -> None:
    _fault(server, service="insi", error_status=500)
    with pytest.raises(TeleserviceUnavailable, match="insi: HTTP 500"):
        ts.insi_search_card(pop.person("martin-lea").beneficiary)
    assert server.state.requests["insi"] == 1


def test_latency_beyond_the_timeout_is_unavailable_quickly(server: SandboxServer) -> None:
    server.state.reset()
    _fault(server, service="eprescription", latency_ms=2000)
    started = time.monotonic()
    with (
        HttpTeleservices(server.url, timeout=0.2) as quick,
        pytest.raises(TeleserviceUnavailable, match=r"0\.2 s"),
    ):
        quick.fetch_prescription(pop.SAMPLE_PRESCRIPTION_ID)
    assert time.monotonic() - started < 0.8


def test_a_closed_port_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = HttpTeleservices(f"http://127.0.0.1:{port}", timeout=0.5)
    with nowhere, pytest.raises(TeleserviceUnavailable, match="ConnectError"):
        nowhere.adri(pop.person("ald").beneficiary, DAY)


def test_a_stopping_server_with_a_hanging_call_leaves_the_caller_unavailable() -> None:
    sandbox = SandboxServer(port=0, max_hang=30.0)
    url = sandbox.start()
    _fault(sandbox, service="adri", hang=True)
    errors: list[Exception] = []

    def call() -> None:
        with HttpTeleservices(url, timeout=5.0) as slow:
            try:
                slow.adri(pop.person("ald").beneficiary, DAY)
            except TeleserviceUnavailable as exc:
                errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while sandbox.state.requests["adri"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sandbox.stop()
    caller.join(2.0)
    assert time.monotonic() - started < 1.5 and len(errors) == 1


def test_remittances_since_a_day(ts: HttpTeleservices) -> None:
    ts.deliver("batch", "r1", {"batch_number": "11", "claims": [_claim("payment-rejected", "110")]})
    found = ts.remittances(DAY)
    rejected = found[0]["claims"][0]
    assert rejected["status"] == "rejected" and rejected["action"]
    assert ts.remittances(date(2026, 6, 16)) == []


def _mock(status: int, content: bytes, content_type: str = "application/json") -> HttpTeleservices:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return HttpTeleservices("http://sandbox.invalid", client=httpx.Client(transport=httpx.MockTransport(answer)))


def test_answers_that_are_not_the_expected_json() -> None:
    with pytest.raises(TeleserviceRefused) as info:
        _mock(403, b"<html>forbidden</html>", "text/html").fetch_prescription("EP0000-0000-0000-0000")
    assert info.value.code == "HTTP_403" and "HTTP 403" in info.value.message
    with pytest.raises(TeleserviceUnavailable, match="expected shape"):
        _mock(200, b'{"outcome": "07"}').adri(pop.person("ald").beneficiary, DAY)
    with pytest.raises(TeleserviceUnavailable, match="not JSON"):
        _mock(200, b"ok", "text/plain").fetch_prescription("EP0000-0000-0000-0000")
    with pytest.raises(TeleserviceUnavailable, match="HTTP 429"):
        _mock(429, b"{}").idb("1", "2", "3", DAY)


def test_deliver_checks_its_arguments(ts: HttpTeleservices) -> None:
    with pytest.raises(ValueError, match="unknown outbox stream"):
        ts.deliver("fax", "k", {})
    with pytest.raises(ValueError, match="idempotency key"):
        ts.deliver("batch", "", {})


def test_tls_is_verified_by_default() -> None:
    context = ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert ssl_context(False) is False


def test_the_clients_of_one_process_share_a_tls_context_until_its_files_change(tmp_path: Path) -> None:
    """The CA bundle is parsed once for the teleservices and Pro Santé Connect clients; a renewed file
    (new version on disk) gives a new context."""
    import os

    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    first = ssl_context(str(bundle))
    assert ssl_context(str(bundle)) is first and ssl_context() is ssl_context()
    os.utime(bundle, ns=(1, 1))
    renewed = ssl_context(str(bundle))
    assert isinstance(renewed, ssl.SSLContext) and renewed is not first


# --- INSi: SOAP 1.2 on the wire


def test_insi_is_soap_on_the_configured_endpoint_with_the_configured_context() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        envelope = sandbox_soap.result_envelope(InsiResult(InsiOutcome.NONE))
        return httpx.Response(200, content=envelope, headers={"Content-Type": "application/soap+xml; charset=utf-8"})

    settings = InsiSettings(endpoint="https://insi.example.fr/lps", emitter="750000001", idam="AM-42")
    client = httpx.Client(transport=httpx.MockTransport(answer))
    with HttpTeleservices("https://teleservices.example.fr", client=client, insi=settings) as ts:
        assert ts.insi_search_traits(Traits("A", "B", "F", date(2000, 1, 1))).outcome is InsiOutcome.NONE
        assert ts.insi_search_card(pop.person("martin-lea").beneficiary).outcome is InsiOutcome.NONE
    traits_call, card_call = seen
    assert str(traits_call.url) == "https://insi.example.fr/lps" and traits_call.method == "POST"
    action = "urn:ServiceIdentiteCertifiee:1.0.0:rechercherInsAvecTraitsIdentite"
    assert traits_call.headers["content-type"] == f'application/soap+xml; charset=utf-8; action="{action}"'
    assert "rechercherInsAvecCarteVitale" in card_call.headers["content-type"]
    call = sandbox_soap.read_request(card_call.content, card_call.headers["content-type"])
    assert (call.emitter, call.idam) == ("750000001", "AM-42")


def _soap_mock(status: int, content: bytes, content_type: str = "application/soap+xml") -> HttpTeleservices:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content, headers={"Content-Type": content_type})

    return HttpTeleservices("http://sandbox.invalid", client=httpx.Client(transport=httpx.MockTransport(answer)))


TRAITS = Traits("A", "B", "F", date(2000, 1, 1))


def test_a_sender_fault_is_a_refusal_even_with_http_500() -> None:
    fault = sandbox_soap.RequestFault(
        "L'accès par ce progiciel au service n'est pas autorisé.",
        subcode="siram:siram_100",
        error_code="desir_550",
        detail="Numéro d'autorisation du logiciel inconnu.",
    )
    with pytest.raises(TeleserviceRefused) as info:
        _soap_mock(500, sandbox_soap.fault_envelope(fault)).insi_search_traits(TRAITS)
    assert info.value.code == "desir_550"
    assert info.value.message == (
        "L'accès par ce progiciel au service n'est pas autorisé. (Numéro d'autorisation du logiciel inconnu.)"
    )


def test_what_is_not_an_insi_answer_is_unavailable() -> None:
    with pytest.raises(TeleserviceUnavailable, match=r"insi: HTTP 503 \(SOAP fault Receiver siram_40\)"):
        _soap_mock(503, sandbox_soap.unavailable_envelope()).insi_search_traits(TRAITS)
    with pytest.raises(TeleserviceUnavailable, match="insi: HTTP 502"):
        _soap_mock(502, b"<html>bad gateway</html>", "text/html").insi_search_traits(TRAITS)
    with pytest.raises(TeleserviceUnavailable, match="not an INSi RESULTAT"):
        _soap_mock(200, b'{"outcome": "00"}', "application/json").insi_search_traits(TRAITS)
    with pytest.raises(TeleserviceUnavailable, match="HTTP 429"):
        _soap_mock(429, b"").insi_search_traits(TRAITS)
    with pytest.raises(TeleserviceRefused) as info:
        _soap_mock(403, b"<html>forbidden</html>", "text/html").insi_search_card(pop.person("ald").beneficiary)
    assert info.value.code == "HTTP_403"


def test_the_sandbox_refuses_software_without_an_authorisation_number(server: SandboxServer) -> None:
    server.state.reset()
    with (
        HttpTeleservices(server.url, timeout=1.0, insi=InsiSettings(idam="")) as unknown_software,
        pytest.raises(TeleserviceRefused) as info,
    ):
        unknown_software.insi_search_traits(pop.person("durand").beneficiary.traits)
    assert info.value.code == "desir_550" and "n'est pas autorisé" in info.value.message
    assert server.state.requests["insi"] == 1


def test_malformed_insi_requests_get_soap_faults(server: SandboxServer) -> None:
    server.state.reset()
    soap11 = b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>'
    answer = httpx.post(server.url + "/lps", content=soap11, headers={"Content-Type": "application/soap+xml"})
    assert answer.status_code == 500 and answer.headers["content-type"].startswith("application/soap+xml")
    assert b"VersionMismatch" in answer.content
    wrong_type = httpx.post(server.url + "/lps", content=soap11, headers={"Content-Type": "text/xml"})
    assert wrong_type.status_code == 415 and b"application/soap+xml" in wrong_type.content


@pytest.fixture
def https_sandbox(pki: Pki) -> Iterator[tuple[SandboxServer, str]]:
    """The sandbox behind TLS that requires a client certificate from the test CA (as the CNAM gateway)."""
    sandbox = SandboxServer(port=0, today=lambda: DAY, max_hang=3.0)
    sandbox.start()
    server_cert = pki.server("insi")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca.cert))
    context.load_cert_chain(str(server_cert.cert), str(server_cert.key))
    context.verify_mode = ssl.CERT_REQUIRED
    httpd = sandbox._httpd
    assert httpd is not None
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    yield sandbox, sandbox.url.replace("http://", "https://")
    sandbox.stop()


def test_insi_over_mutual_tls_with_the_pharmacy_certificate(pki: Pki, https_sandbox: tuple[SandboxServer, str]) -> None:
    sandbox, url = https_sandbox
    client = pki.client("ph1/c1")
    settings = InsiSettings(endpoint=url + "/lps", emitter="750000001", idam="AM-42")
    with HttpTeleservices(
        "https://unused.invalid", verify=str(pki.ca.cert), cert=(str(client.cert), str(client.key)), insi=settings
    ) as ts:
        twins = ts.insi_search_card(pop.person("petit-lucas").beneficiary)
        assert twins.outcome is InsiOutcome.FOUND and twins.identities == (pop.person("petit-lucas").ins,)
        assert ts.insi_search_traits(pop.person("insi-none").beneficiary.traits).outcome is InsiOutcome.NONE
    with (
        HttpTeleservices("https://unused.invalid", verify=str(pki.ca.cert), timeout=1.0, insi=settings) as anonymous,
        pytest.raises(TeleserviceUnavailable),
    ):
        anonymous.insi_search_card(pop.person("petit-lucas").beneficiary)
    assert sandbox.state.requests["insi"] == 2


# --- Dossier Pharmaceutique (invented JSON: the real protocol is not public)


def _dp_feed(key: str, **changes: Any) -> dict[str, Any]:
    b = pop.person(key).beneficiary
    return {
        "nir": b.nir,
        "holder_nir": b.holder_nir,
        "rank": b.rank,
        "birth_date": b.traits.birth_date.isoformat(),
        "dispensed_on": DAY.isoformat(),
        "pharmacy": {"finess": "750000010", "name": "Pharmacie du Bac à sable"},
        "lines": [{"cip13": pop.DOLIPRANE_1000, "quantity": 2, "lot": "L1"}],
        **changes,
    }


def test_dp_consult_lists_the_dispensations_since_the_day_asked(ts: HttpTeleservices, server: SandboxServer) -> None:
    durand = pop.person("durand").beneficiary
    recent = ts.dp_consult(durand, date(2026, 2, 11))
    assert [(e.day, e.cip13, e.quantity) for e in recent] == [
        (date(2026, 5, 22), pop.CETIRIZINE_10, 1),
        (date(2026, 4, 9), pop.OMEPRAZOLE_20, 2),
        (date(2026, 3, 2), pop.DOLIPRANE_1000, 2),
    ]
    assert recent[0].label == "CETIRIZINE ARROW 10 mg cp B/7" and recent[0].pharmacy == "Pharmacie de la Gare, Lyon"
    assert len(ts.dp_consult(durand, date(2025, 6, 1))) == 5  # the older ones, in Paris
    assert ts.dp_consult(pop.person("corsica").beneficiary, date(2025, 1, 1)) == []
    assert server.state.requests["dp"] == 3


def test_dp_consult_refuses_a_card_it_does_not_know_and_is_not_retried(
    ts: HttpTeleservices, server: SandboxServer
) -> None:
    import dataclasses

    durand = pop.person("durand").beneficiary
    stranger = dataclasses.replace(durand, traits=dataclasses.replace(durand.traits, birth_date=date(1990, 1, 1)))
    with pytest.raises(TeleserviceRefused) as info:
        ts.dp_consult(stranger, DAY)
    assert info.value.code == "DP_UNKNOWN" and "carte Vitale" in info.value.message
    # a child on their mother's card, named by her NIR: told apart by birth date and rank (the twins)
    noah = pop.person("petit-noah").beneficiary
    assert ts.dp_consult(dataclasses.replace(noah, nir=noah.holder_nir), DAY) == []
    twin = dataclasses.replace(noah, nir=noah.holder_nir, rank=3)
    with pytest.raises(TeleserviceRefused):
        ts.dp_consult(twin, DAY)
    _fault(server, service="dp", error_status=503, times=1)
    with pytest.raises(TeleserviceUnavailable, match="HTTP 503"):
        ts.dp_consult(pop.person("durand").beneficiary, DAY)
    assert server.state.requests["dp"] == 4


def test_a_fed_dispensation_is_recorded_once_and_shows_in_the_next_consult(
    ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]
) -> None:
    _fault(server, service="dp", drop_response=True, times=1)
    answer = ts.deliver("dp", "dp:1:box-a", _dp_feed("durand"))
    assert answer["status"] == "recorded" and answer["lines"] == 1 and sleeps == [0.2]
    assert ts.deliver("dp", "dp:1:box-a", _dp_feed("durand")) == answer  # replayed, not recorded again
    state = server.state.snapshot()
    assert len(state["dp_dispensations"]) == 1 and state["dp_dispensations"][0]["key"] == "dp:1:box-a"
    today = ts.dp_consult(pop.person("durand").beneficiary, DAY)
    assert [(e.day, e.label, e.quantity, e.pharmacy) for e in today] == [
        (DAY, "DOLIPRANE 1000 mg cp B/8", 2, "Pharmacie du Bac à sable")
    ]


def test_dp_feed_refusals_are_not_retried(ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]) -> None:
    with pytest.raises(TeleserviceRefused) as unknown:
        ts.deliver("dp", "dp:2", _dp_feed("durand", birth_date="1990-01-01"))
    assert unknown.value.code == "DP_UNKNOWN"
    with pytest.raises(TeleserviceRefused) as anonymous:
        ts.deliver("dp", "dp:3", _dp_feed("durand", pharmacy={"finess": "", "name": "?"}))
    assert anonymous.value.code == "DP_PHARMACY_UNKNOWN"
    with pytest.raises(TeleserviceRefused) as reused:
        ts.deliver("dp", "dp:4", _dp_feed("durand"))
        ts.deliver("dp", "dp:4", _dp_feed("ald"))
    assert reused.value.code == "KEY_REUSED"
    assert sleeps == [] and server.state.requests["dp"] == 4
