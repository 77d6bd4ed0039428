"""The sandbox teleservices over real HTTP on 127.0.0.1: every service, idempotency, faults, stopping."""

from __future__ import annotations

import argparse
import base64
import threading
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import httpx
import pytest
from lxml import etree

from appliance.domain import Ins, Traits, Visibility
from sandbox import population as pop
from sandbox.server import SandboxServer, add_command
from sync import dmp_xds
from sync.insi_soap import InsiSettings, card_request, traits_request
from tests.appliance.dmp.documents import document as dmp_document
from tests.appliance.dmp.documents import wire as dmp_wire

DAY = pop.REFERENCE_DAY.isoformat()


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY, max_hang=5.0)
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    server.state.reset()
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        yield client


def _token(key: str) -> dict[str, str]:
    return {"token": base64.b64encode(pop.APCV_TOKENS[key]).decode()}


RESULT = {"s": "http://www.w3.org/2003/05/soap-envelope", "r": "http://www.cnamts.fr/INSiResultat"}


def _insi(http: httpx.Client, request: Any) -> httpx.Response:
    return http.post("/lps", content=request.envelope, headers={"Content-Type": request.content_type})


def _card(http: httpx.Client, key: str) -> httpx.Response:
    return _insi(http, card_request(pop.person(key).beneficiary, InsiSettings()))


def _traits(http: httpx.Client, traits: Traits) -> httpx.Response:
    return _insi(http, traits_request(traits, InsiSettings()))


def _outcome(answer: httpx.Response) -> tuple[str, list[etree._Element]]:
    assert answer.headers["content-type"].startswith("application/soap+xml")
    root = etree.fromstring(answer.content)
    return root.findtext("s:Body/r:RESULTAT/r:CR/r:CodeCR", namespaces=RESULT) or "", root.findall(
        "s:Body/r:RESULTAT/r:INDIVIDU", RESULT
    )


def _claim(key: str, number: str, *, total: int = 1000, amo: int = 650, amc: int = 350, patient: int = 0) -> Any:
    p = pop.person(key)
    amc_number = p.amc.amc_number if p.amc else None
    return {
        "claim_number": number,
        "nir": p.beneficiary.nir,
        "total_cents": total,
        "amo_cents": amo,
        "amc_cents": amc,
        "patient_cents": patient,
        "amc_number": amc_number,
    }


def test_nothing_listens_before_start() -> None:
    sandbox = SandboxServer()
    with pytest.raises(RuntimeError, match="not started"):
        _ = sandbox.url
    sandbox.stop()  # harmless


def test_health_and_unknown_paths(http: httpx.Client) -> None:
    assert http.get("/_sandbox/health").json() == {"status": "ok"}
    answer = http.get("/nowhere")
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"
    bad = http.post("/adri", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST"


def test_apcv_context_gives_the_family_with_a_qualified_ins_each(http: httpx.Client) -> None:
    answer = http.post("/apcv/context", json=_token("martin-family"))
    assert answer.status_code == 200
    body = answer.json()
    nirs = [b["nir"] for b in body["beneficiaries"]]
    assert nirs == [p.beneficiary.nir for p in pop.members("martin-family")]
    assert set(body["ins"]) == set(nirs)
    assert {i["oid"] for i in body["ins"].values()} == {"1.2.250.1.213.1.4.10"}
    assert body["expires_at"] > time.time()


def test_apcv_expired_and_unknown_contexts_are_refused_in_french(http: httpx.Client) -> None:
    expired = http.post("/apcv/context", json=_token("expired"))
    assert expired.status_code == 410
    assert expired.json()["code"] == "APCV_EXPIRED" and "expiré" in expired.json()["message"]
    unknown = http.post("/apcv/context", json={"token": base64.b64encode(b"APCV01:bm9ib2R5LWF0LWFsbC14eXo").decode()})
    assert unknown.status_code == 404 and unknown.json()["code"] == "APCV_UNKNOWN"


@pytest.mark.parametrize(
    ("key", "outcome", "count"), [("petit-noah", "00", 1), ("insi-none", "01", 0), ("insi-two", "02", 2)]
)
def test_insi_card_search_outcomes(http: httpx.Client, key: str, outcome: str, count: int) -> None:
    answer = _card(http, key)
    assert answer.status_code == 200
    code, found = _outcome(answer)
    assert (code, len(found)) == (outcome, count)
    if outcome == "00":
        assert found[0].findtext("r:TIQ/r:ListePrenom", namespaces=RESULT) == "NOAH"


def test_insi_traits_search_outcomes_and_the_ins_history(http: httpx.Client) -> None:
    dubois = Traits("Dubois", "Jean", "M", date(1970, 1, 15))
    assert _outcome(_traits(http, dubois))[0] == "02"
    code, (one,) = _outcome(_traits(http, Traits("Dubois", "Jean", "M", date(1970, 1, 15), "13055")))
    assert code == "00" and one.findtext("r:TIQ/r:LieuNaissance", namespaces=RESULT) == "13055"
    assert _outcome(_traits(http, Traits("KOWALSKI", "ANNA", "F", date(1992, 12, 1)))) == ("01", [])
    leroux = pop.person("traits-differ")
    _, (found,) = _outcome(_traits(http, leroux.beneficiary.traits))
    (past,) = found.findall("r:INSHISTO", RESULT)
    number = past.findtext("r:IdIndividu/r:NumIdentifiant", namespaces=RESULT)
    key = past.findtext("r:IdIndividu/r:Cle", namespaces=RESULT)
    assert f"{number}{key}" == leroux.ins_history[0].matricule
    assert past.findtext("r:DateFin", namespaces=RESULT) == "2019-02-28"


@pytest.mark.parametrize(
    ("envelope", "content_type", "status", "says"),
    [
        (b"<not xml", "application/soap+xml", 500, "XML illisible"),
        (b"{}", "application/json", 415, "application/soap+xml"),
        (
            b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Header/><e:Body/></e:Envelope>',
            "application/soap+xml",
            500,
            "wsa:Action absent",
        ),
    ],
)
def test_malformed_insi_requests_get_a_soap_fault(
    http: httpx.Client, envelope: bytes, content_type: str, status: int, says: str
) -> None:
    answer = http.post("/lps", content=envelope, headers={"Content-Type": content_type})
    assert answer.status_code == status and answer.headers["content-type"].startswith("application/soap+xml")
    fault = etree.fromstring(answer.content).find("s:Body/s:Fault", RESULT)
    assert fault is not None and fault.findtext("s:Code/s:Value", namespaces=RESULT) == "soap:Sender"
    assert says in (fault.findtext("s:Reason/s:Text", namespaces=RESULT) or "")


def test_an_insi_request_whose_body_is_not_the_action_is_refused(http: httpx.Client) -> None:
    request = card_request(pop.person("martin-lea").beneficiary, InsiSettings())
    swapped = request.envelope.replace(b"rechercherInsAvecCarteVitale", b"rechercherInsAvecTraitsIdentite")
    answer = http.post("/lps", content=swapped, headers={"Content-Type": "application/soap+xml"})
    assert answer.status_code == 500 and b"ne correspond pas" in answer.content
    unknown = request.envelope.replace(b"rechercherInsAvecCarteVitale", b"rechercherTout")
    answer = http.post("/lps", content=unknown, headers={"Content-Type": "application/soap+xml"})
    assert answer.status_code == 500 and b"ActionNotSupported" in answer.content


def test_adri_returns_amo_rights_and_refuses_strangers(http: httpx.Client) -> None:
    rossi = pop.person("ald").beneficiary
    body = {
        "nir": rossi.nir,
        "holder_nir": rossi.holder_nir,
        "birth_date": "1958-02-27",
        "rank": 1,
        "day": DAY,
    }
    rights = http.post("/adri", json=body).json()
    assert rights["ald"] is True and rights["c2s"] is False and rights["regime"] == "01"
    stranger = {**body, "nir": "199999999999999", "holder_nir": "199999999999999"}
    refused = http.post("/adri", json=stranger)
    assert refused.status_code == 404 and refused.json()["code"] == "ADRI_UNKNOWN"


def test_idb_refuses_expired_rights_and_dld_renews_them(http: httpx.Client) -> None:
    claire = pop.person("expired-amc")
    assert claire.amc is not None
    body = {
        "amc_number": claire.amc.amc_number,
        "member_number": claire.amc.member_number,
        "nir": claire.beneficiary.nir,
        "day": DAY,
    }
    refused = http.post("/amc/idb", json=body)
    assert refused.status_code == 422
    assert refused.json()["code"] == "AMC_EXPIRED" and "expirés" in refused.json()["message"]
    renewed = http.post("/amc/dld", json=body).json()
    assert (renewed["valid_from"], renewed["valid_to"]) == ("2026-01-01", "2027-12-31")
    assert renewed["accreditation"].startswith("DLD")
    thomas = pop.person("amc-terminated")
    assert thomas.amc is not None
    ended = {**body, "member_number": thomas.amc.member_number, "nir": thomas.beneficiary.nir}
    assert http.post("/amc/dld", json=ended).json()["code"] == "AMC_TERMINATED"


def test_idb_gives_an_accreditation_for_current_rights_and_checks_the_beneficiary(http: httpx.Client) -> None:
    lea = pop.person("martin-lea")
    assert lea.amc is not None
    body = {
        "amc_number": "77777777",
        "member_number": lea.amc.member_number,
        "nir": lea.beneficiary.nir,
        "day": DAY,
    }
    rights = http.post("/amc/idb", json=body).json()
    assert rights["coverage_pct"] == 100 and rights["accreditation"].startswith("IDB")
    assert http.post("/amc/idb", json=body).json()["accreditation"] == rights["accreditation"]
    other = {**body, "nir": pop.person("c2s").beneficiary.nir}
    assert http.post("/amc/idb", json=other).json()["code"] == "AMC_NOT_COVERED"
    assert http.post("/amc/idb", json={**body, "member_number": "X"}).json()["code"] == "AMC_UNKNOWN"


def test_prescription_fetch(http: httpx.Client) -> None:
    rx = http.get("/eprescription/prescriptions/EP9ALD-2MRC-5RSS-3B8E").json()
    assert rx["renewals"] == 2 and [li["ald"] for li in rx["lines"]] == [True, True, True, False]
    missing = http.get("/eprescription/prescriptions/EP0000-0000-0000-0000")
    assert missing.status_code == 404 and missing.json()["code"] == "EP_UNKNOWN"


def _execute(http: httpx.Client, key: str, **body: Any) -> httpx.Response:
    return http.post("/eprescription/executions", json=body, headers={"Idempotency-Key": key})


def test_execution_data_two_steps_idempotent_and_single_use(http: httpx.Client) -> None:
    rx_id = pop.SAMPLE_PRESCRIPTION_ID
    lines = [{"line_no": 1, "cip13": pop.DOLIPRANE_1000, "quantity": 2}]
    early = _execute(http, "k-step2-early", step=2, prescription_id=rx_id, renewal=0, claim_number="1")
    assert early.status_code == 409 and early.json()["code"] == "STEP1_MISSING"
    first = _execute(http, "k-step1", step=1, prescription_id=rx_id, renewal=0, lines=lines)
    assert first.status_code == 201 and first.json()["status"] == "recorded"
    replay = _execute(http, "k-step1", step=1, prescription_id=rx_id, renewal=0, lines=lines)
    assert replay.json() == first.json() and replay.headers["Idempotent-Replay"] == "true"
    again = _execute(http, "k-other", step=1, prescription_id=rx_id, renewal=0, lines=lines)
    assert again.status_code == 409 and "déjà délivrée" in again.json()["message"].lower()
    reused = _execute(http, "k-step1", step=1, prescription_id=rx_id, renewal=0, lines=[])
    assert reused.status_code == 422 and reused.json()["code"] == "KEY_REUSED"
    not_acked = _execute(http, "k-step2", step=2, prescription_id=rx_id, claim_number="1", batch_number="B404")
    assert not_acked.json()["code"] == "BATCH_NOT_ACKNOWLEDGED"
    batch = {"batch_number": "B1", "claims": [_claim("durand", "1")]}
    http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "k-b1"})
    done = _execute(http, "k-step2", step=2, prescription_id=rx_id, claim_number="1", batch_number="B1")
    assert done.status_code == 201 and done.json()["execution_id"] == first.json()["execution_id"]
    state = http.get("/_sandbox/state").json()
    assert [e["step"] for e in state["executions"]] == [1, 2]
    assert state["requests"]["execution"] == 7


def test_renewals_are_each_dispensed_once(http: httpx.Client) -> None:
    rx_id = "EP3MRT-8HJQ-2WZC-91KD"
    assert _execute(http, "r0", step=1, prescription_id=rx_id, renewal=0).status_code == 201
    assert _execute(http, "r1", step=1, prescription_id=rx_id, renewal=1).status_code == 201
    assert _execute(http, "r1b", step=1, prescription_id=rx_id, renewal=1).json()["code"] == "ALREADY_DISPENSED"
    assert _execute(http, "r3", step=1, prescription_id=rx_id, renewal=3).json()["code"] == "RENEWAL_UNKNOWN"
    missing_key = http.post("/eprescription/executions", json={"step": 1, "prescription_id": rx_id})
    assert missing_key.status_code == 400


def test_batches_acknowledged_positively_then_remitted(http: httpx.Client) -> None:
    batch = {"batch_number": "B10", "claims": [_claim("durand", "101"), _claim("payment-rejected", "102")]}
    ack = http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "b10"}).json()
    assert ack["ack"] == "positive" and ack["claims"] == 2 and ack["received_on"] == DAY
    dup = http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "b10-again"})
    assert dup.status_code == 409 and dup.json()["code"] == "BATCH_DUPLICATE"
    remittances = http.get("/claims/remittances", params={"since": DAY}).json()["remittances"]
    amo = next(r for r in remittances if r["payer"] == "AMO")
    by_claim = {c["claim_number"]: c for c in amo["claims"]}
    assert by_claim["101"] == {"claim_number": "101", "status": "paid", "paid_cents": 650}
    assert by_claim["102"]["status"] == "rejected" and by_claim["102"]["reason"] and by_claim["102"]["action"]
    assert amo["total_paid_cents"] == 650
    assert {r["payer"] for r in remittances} == {"AMO", "88888888"}
    assert http.get("/claims/remittances", params={"since": "2026-06-16"}).json() == {"remittances": []}


@pytest.mark.parametrize(
    "claim",
    [
        _claim("arl-rejected", "201"),
        _claim("durand", "202", total=1000, amo=650, amc=300, patient=0),
        {**_claim("durand", "203"), "lines": [{"amount_cents": 400}, {"amount_cents": 500}]},
    ],
)
def test_negative_acknowledgement_with_a_reason(http: httpx.Client, claim: dict[str, Any]) -> None:
    batch = {"batch_number": "B20", "claims": [_claim("martin-jean", "200"), claim]}
    answer = http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "b20"})
    assert answer.status_code == 201
    ack = answer.json()
    assert ack["ack"] == "negative" and ack["reason"]
    assert [r["claim_number"] for r in ack["rejected_claims"]] == [claim["claim_number"]]
    assert http.get("/claims/remittances").json() == {"remittances": []}


def test_a_claim_refused_for_its_fund_goes_again_in_a_new_batch_with_its_number(http: httpx.Client) -> None:
    """arl-rejected: her card names her former fund; the register (ADRi) her current one. The same claim
    number, addressed to the right fund, is accepted in a later batch; a number already accepted is a
    duplicate."""
    julie = pop.person("arl-rejected")
    assert julie.card_amo.fund == "751" != julie.amo.fund == "311"
    to_card = {**_claim("arl-rejected", "301"), "amo_regime": julie.card_amo.regime, "amo_fund": julie.card_amo.fund}
    first = http.post(
        "/claims/batches", json={"batch_number": "1", "claims": [to_card]}, headers={"Idempotency-Key": "l1"}
    )
    assert first.json()["ack"] == "negative"
    assert first.json()["rejected_claims"][0]["reason"] == pop.CLAIM_REJECTIONS["arl-negative"][0]
    fixed = {**to_card, "amo_fund": julie.amo.fund}
    again = http.post(
        "/claims/batches",
        json={"batch_number": "2", "claims": [fixed, _claim("durand", "302")]},
        headers={"Idempotency-Key": "l2"},
    )
    assert again.status_code == 201 and again.json()["ack"] == "positive", again.json()
    paid = [c["claim_number"] for r in http.get("/claims/remittances").json()["remittances"] for c in r["claims"]]
    assert "301" in paid
    twice = http.post(
        "/claims/batches", json={"batch_number": "3", "claims": [fixed]}, headers={"Idempotency-Key": "l3"}
    )
    refused = twice.json()
    assert refused["ack"] == "negative" and "doublon" in refused["rejected_claims"][0]["reason"]
    assert "lot 2" in refused["rejected_claims"][0]["reason"]
    other = {**_claim("durand", "303"), "amo_fund": "999"}  # any beneficiary, addressed to a fund not theirs
    wrong = http.post(
        "/claims/batches", json={"batch_number": "4", "claims": [other]}, headers={"Idempotency-Key": "l4"}
    )
    assert wrong.json()["ack"] == "negative"


def test_dmp_accepts_an_iti41_submission_for_a_test_ins_only(http: httpx.Client) -> None:
    ins = pop.person("durand").ins
    assert ins is not None
    doc = dmp_document("vaccination", Visibility.HIDDEN_FROM_PROFESSIONALS, ins=ins)
    request = dmp_xds.package(dmp_wire(doc), to=str(http.base_url) + "/dmp/repository")
    accepted = http.post("/dmp/repository", content=request.body, headers={"Content-Type": request.content_type})
    assert accepted.status_code == 200 and accepted.headers["content-type"].startswith("multipart/related")
    assert b"ResponseStatusType:Success" in accepted.content
    nir_oid = Ins(ins.matricule, "1.2.250.1.213.1.4.8", ins.traits)
    request = dmp_xds.package(dmp_wire(dmp_document(ins=nir_oid, number=2)), to="http://sandbox/dmp/repository")
    refused = http.post("/dmp/repository", content=request.body, headers={"Content-Type": request.content_type})
    assert b"ResponseStatusType:Failure" in refused.content and b'errorCode="XDSUnknownPatientId"' in refused.content
    state = http.get("/_sandbox/state").json()
    assert len(state["dmp_documents"]) == 1
    assert state["dmp_documents"][0]["visibility"] == "hidden-from-professionals"


def _fault(http: httpx.Client, **fault: Any) -> None:
    assert http.post("/_sandbox/faults", json=fault).status_code == 200


def test_error_fault_for_a_number_of_requests(http: httpx.Client) -> None:
    _fault(http, service="insi", error_status=503, times=2)
    unavailable = _card(http, "martin-lea")
    assert unavailable.status_code == 503 and b"soap:Receiver" in unavailable.content
    assert http.post("/adri", json={}).status_code == 400  # other services unaffected
    assert _card(http, "martin-lea").status_code == 503
    assert _outcome(_card(http, "martin-lea"))[0] == "00"
    _fault(http, service="*", error_status=502)
    assert http.get("/eprescription/prescriptions/" + pop.SAMPLE_PRESCRIPTION_ID).status_code == 502
    assert http.delete("/_sandbox/faults").json() == {"faults": {}}
    assert http.get("/eprescription/prescriptions/" + pop.SAMPLE_PRESCRIPTION_ID).status_code == 200
    assert http.post("/_sandbox/faults", json={"service": "nope"}).status_code == 400


def test_committed_but_response_lost_then_replayed(http: httpx.Client) -> None:
    _fault(http, service="batch", drop_response=True, times=1)
    batch = {"batch_number": "B30", "claims": [_claim("durand", "301")]}
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "b30"})
    state = http.get("/_sandbox/state").json()
    assert len(state["batches"]) == 1
    retry = http.post("/claims/batches", json=batch, headers={"Idempotency-Key": "b30"})
    assert retry.json() == state["batches"][0]["ack"] and retry.json()["ack"] == "positive"
    state = http.get("/_sandbox/state").json()
    assert len(state["batches"]) == 1 and state["requests"]["batch"] == 2


def test_latency_and_hang_faults_time_the_client_out(http: httpx.Client) -> None:
    _fault(http, service="adri", latency_ms=1500)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/adri", json={}, timeout=0.2)
    _fault(http, service="adri", hang=True)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/adri", json={}, timeout=0.2)
    assert time.monotonic() - started < 1.5
    state = http.get("/_sandbox/state").json()
    assert state["requests"]["adri"] == 2 and state["faults"]["adri"]["hang"] is True


def test_stop_is_prompt_with_a_hanging_request_and_an_idle_connection() -> None:
    sandbox = SandboxServer(port=0, max_hang=30.0)
    url = sandbox.start()
    idle = httpx.Client(base_url=url, timeout=5.0)
    idle.post("/_sandbox/faults", json={"service": "apcv", "hang": True})
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            httpx.post(url + "/apcv/context", json=_token("twins"), timeout=5.0)
            outcome.append(None)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 2
    while sandbox.state.requests["apcv"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    sandbox.stop()
    caller.join(2.0)
    assert time.monotonic() - started < 1.5
    assert not caller.is_alive() and isinstance(outcome[0], httpx.HTTPError)
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/_sandbox/health", timeout=1.0)
    idle.close()


def test_remittance_dates_follow_the_server_clock() -> None:
    today = [date(2026, 7, 1)]
    with (
        SandboxServer(port=0, today=lambda: today[0]) as sandbox,
        httpx.Client(base_url=sandbox.url, timeout=2) as c,
    ):
        for n, day in enumerate((date(2026, 7, 1), date(2026, 7, 3))):
            today[0] = day
            batch = {"batch_number": f"B{n}", "claims": [_claim("martin-lea", str(n), amc=0, patient=350)]}
            assert c.post("/claims/batches", json=batch, headers={"Idempotency-Key": f"k{n}"}).status_code == 201
        since = c.get("/claims/remittances", params={"since": "2026-07-02"}).json()["remittances"]
        assert [r["batch_number"] for r in since] == ["B1"]
        assert c.get("/claims/remittances", params={"since": "juillet"}).status_code == 400


def test_the_cli_command_is_registered() -> None:
    parser = argparse.ArgumentParser()
    add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sandbox", "--port", "0"])
    assert (args.port, args.host, args.func.__name__) == (0, "127.0.0.1", "cmd_sandbox")


# --- Dossier Pharmaceutique (invented JSON: the real protocol is not public)


def _dp_card(key: str, **more: Any) -> dict[str, Any]:
    b = pop.person(key).beneficiary
    card = {"nir": b.nir, "holder_nir": b.holder_nir, "rank": b.rank, "birth_date": b.traits.birth_date.isoformat()}
    return card | more


def test_dp_consult_lists_the_other_pharmacies_since_the_day_asked(http: httpx.Client) -> None:
    recent = http.post("/dp/consult", json=_dp_card("durand", since="2026-02-11"))
    assert recent.status_code == 200
    found = recent.json()["dispensations"]
    assert [e["day"] for e in found] == ["2026-05-22", "2026-04-09", "2026-03-02"]
    assert found[0] == {
        "day": "2026-05-22",
        "cip13": pop.CETIRIZINE_10,
        "label": "CETIRIZINE ARROW 10 mg cp B/7",
        "quantity": 1,
        "pharmacy": "Pharmacie de la Gare, Lyon",
    }
    older = http.post("/dp/consult", json=_dp_card("durand", since="2025-01-01")).json()["dispensations"]
    assert [e["day"] for e in older][-2:] == ["2025-12-10", "2025-09-18"]
    # a child of a family card, by the card holder's NIR, birth date and rank: his own (empty) DP
    hugo = _dp_card("martin-hugo", nir=pop.person("martin-jean").beneficiary.nir, since="2025-01-01")
    assert http.post("/dp/consult", json=hugo).json() == {"dispensations": []}
    assert http.get("/_sandbox/state").json()["requests"]["dp"] == 3


def test_dp_refuses_an_unknown_card_and_a_malformed_request(http: httpx.Client) -> None:
    stranger = _dp_card("durand", birth_date="1990-01-01", since=DAY)
    answer = http.post("/dp/consult", json=stranger)
    assert answer.status_code == 404 and answer.json()["code"] == "DP_UNKNOWN"
    assert "carte Vitale" in answer.json()["message"]
    assert http.post("/dp/consult", json=_dp_card("durand", since="15/06/2026")).status_code == 400
    assert http.post("/dp/consult", json=_dp_card("durand")).status_code == 400  # no "since"


def test_dp_feed_is_idempotent_and_shows_in_the_next_consult(http: httpx.Client) -> None:
    feed = _dp_card(
        "ald",
        dispensed_on=DAY,
        pharmacy={"finess": "750000010", "name": "Pharmacie du Bac à sable"},
        lines=[{"cip13": pop.METFORMINE_850, "quantity": 1, "lot": "M42"}],
    )
    assert http.post("/dp/dispensations", json=feed).status_code == 400  # no Idempotency-Key
    first = http.post("/dp/dispensations", json=feed, headers={"Idempotency-Key": "dp:7:box"})
    assert first.status_code == 201 and first.json()["status"] == "recorded"
    again = http.post("/dp/dispensations", json=feed, headers={"Idempotency-Key": "dp:7:box"})
    assert again.json() == first.json() and again.headers["Idempotent-Replay"] == "true"
    state = http.get("/_sandbox/state").json()
    assert len(state["dp_dispensations"]) == 1 and state["dp_dispensations"][0]["lines"][0]["lot"] == "M42"
    found = http.post("/dp/consult", json=_dp_card("ald", since="2026-06-01")).json()["dispensations"]
    assert found == [
        {
            "day": DAY,
            "cip13": pop.METFORMINE_850,
            "label": "METFORMINE ARROW 850 mg cp B/90",
            "quantity": 1,
            "pharmacy": "Pharmacie du Bac à sable",
        }
    ]
    anonymous = http.post(
        "/dp/dispensations", json={**feed, "pharmacy": {"name": "?"}}, headers={"Idempotency-Key": "dp:8:box"}
    )
    assert anonymous.status_code == 422 and anonymous.json()["code"] == "DP_PHARMACY_UNKNOWN"
    empty = http.post("/dp/dispensations", json={**feed, "lines": []}, headers={"Idempotency-Key": "dp:9:box"})
    assert empty.status_code == 400
    assert http.post("/_sandbox/reset").status_code == 200
    assert http.get("/_sandbox/state").json()["dp_dispensations"] == []


def test_dp_has_the_usual_fault_switches(http: httpx.Client) -> None:
    _fault(http, service="dp", error_status=503, times=1)
    assert http.post("/dp/consult", json=_dp_card("durand", since=DAY)).status_code == 503
    assert http.post("/dp/consult", json=_dp_card("durand", since=DAY)).status_code == 200
    _fault(http, service="dp", latency_ms=1500)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/dp/consult", json=_dp_card("durand", since=DAY), timeout=0.2)
    assert http.get("/_sandbox/state").json()["requests"]["dp"] == 3
