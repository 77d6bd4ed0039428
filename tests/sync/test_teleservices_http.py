"""The HTTP teleservices adapter against the sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest

from appliance.domain import IdentityStatus, InsiOutcome, Traits
from appliance.teleservices import TeleserviceRefused, Teleservices, TeleserviceUnavailable
from sandbox import population as pop
from sandbox.server import SandboxServer
from sync.teleservices_http import HttpTeleservices, ssl_context

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
    card = pop.person("traits-differ").beneficiary.traits
    found = ts.insi_search_traits(card)
    assert found.outcome is InsiOutcome.FOUND
    assert found.identities[0].traits != card and found.identities[0].traits.birth_name == "LE ROUX"
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
        ts.deliver("dmp", "d1", {"type": "vaccination"})
    assert sleeps == [0.2, 0.4, 0.8]
    assert server.state.requests["dmp"] == 4
    with pytest.raises(TeleserviceUnavailable):
        ts.deliver("dmp", "d1", {"type": "vaccination"}, attempts=1)
    assert server.state.requests["dmp"] == 5 and len(sleeps) == 3


def test_refusals_are_not_retried(ts: HttpTeleservices, server: SandboxServer, sleeps: list[float]) -> None:
    ins = pop.person("le-goff").ins
    assert ins is not None
    doc = {
        "type": "medication-review",
        "ins": {"matricule": ins.matricule, "oid": ins.oid},
        "ins_status": IdentityStatus.RECUP.value,
        "visibility": "all",
    }
    with pytest.raises(TeleserviceRefused) as info:
        ts.deliver("dmp", "d2", doc)
    assert info.value.code == "INS_NOT_QUALIFIED" and sleeps == [] and server.state.requests["dmp"] == 1
    accepted = ts.deliver("dmp", "d3", {**doc, "ins_status": IdentityStatus.QUAL.value})
    assert accepted["status"] == "accepted"


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
        _mock(200, b'{"outcome": "07"}').insi_search_traits(Traits("A", "B", "F", date(2000, 1, 1)))
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
