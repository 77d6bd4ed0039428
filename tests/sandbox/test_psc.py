"""The sandbox Pro Santé Connect over raw HTTP: discovery, keys, the CIBA endpoints' answers, the phone."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.psc import AUTH_REQ_ID_CLAIM, CIBA_GRANT_TYPE, CLIENT_ID, CLIENT_SECRET, ISSUER_PATH, PscProvider
from sandbox.server import SandboxServer

ALICE = "10000000007"
BASIC = (CLIENT_ID, CLIENT_SECRET)
OIDC = ISSUER_PATH + "/protocol/openid-connect"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def server(clock: Clock) -> Iterator[SandboxServer]:
    with SandboxServer(port=0, psc=PscProvider(clock=clock)) as sandbox:
        yield sandbox


@pytest.fixture
def http(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        client.post("/_sandbox/psc/reset").raise_for_status()
        yield client


def authorize(http: httpx.Client, auth: Any = BASIC, **form: str) -> httpx.Response:
    values = {"scope": "openid scope_all", "acr_values": "eidas1", "login_hint": "8" + ALICE, "binding_message": "A 1"}
    return http.post(OIDC + "/ext/ciba/auth", data={**values, **form}, auth=auth)


def token(http: httpx.Client, auth_req_id: str, auth: Any = BASIC, **form: str) -> httpx.Response:
    return http.post(
        OIDC + "/token", data={"grant_type": CIBA_GRANT_TYPE, "auth_req_id": auth_req_id, **form}, auth=auth
    )


def test_discovery_and_keys(http: httpx.Client, server: SandboxServer) -> None:
    issuer = server.url + ISSUER_PATH
    for name in ("openid-configuration", "wallet-openid-configuration"):
        doc = http.get(f"{ISSUER_PATH}/.well-known/{name}").json()
        assert doc["issuer"] == issuer
        assert doc["backchannel_token_delivery_modes_supported"] == ["poll"]
        assert CIBA_GRANT_TYPE in doc["grant_types_supported"]
    keys = http.get(OIDC + "/certs").json()["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "RSA" and "d" not in keys[0], "public half only"


def test_a_whole_exchange_gives_a_token_the_jwks_verifies(
    http: httpx.Client, server: SandboxServer, clock: Clock
) -> None:
    started = authorize(http)
    assert started.status_code == 200
    request = started.json()
    assert request["expires_in"] == 120 and request["interval"] == 1
    clock.now += 1
    pending = token(http, request["auth_req_id"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    assert http.post("/_sandbox/psc/approve", json={"rpps": ALICE}).json()["status"] == "approved"
    clock.now += 1
    answer = token(http, request["auth_req_id"])
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    body = answer.json()
    keys = KeySet.import_key_set(http.get(OIDC + "/certs").json())
    claims = jwt.decode(body["id_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == server.url + ISSUER_PATH and claims["aud"] == CLIENT_ID
    assert claims[AUTH_REQ_ID_CLAIM] == request["auth_req_id"] and claims["acr"] == "eidas1"
    assert claims["preferred_username"] == "8" + ALICE
    half = hashlib.sha256(body["access_token"].encode()).digest()[:16]
    assert claims["at_hash"] == base64.urlsafe_b64encode(half).rstrip(b"=").decode()
    info = http.get(OIDC + "/userinfo", headers={"Authorization": "Bearer " + body["access_token"]}).json()
    assert info["sub"] == claims["sub"] and info["SubjectNameID"] == "8" + ALICE
    assert info["otherIds"] == [{"identifiant": ALICE, "origine": "RPPS", "qualite": 1}]
    spent = token(http, request["auth_req_id"])
    assert spent.json()["error"] == "invalid_grant", "an auth_req_id gives its tokens once"


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"auth": ("comptoir-sandbox", "wrong")}, 401, "invalid_client"),
        ({"auth": None}, 401, "invalid_client"),
        ({"scope": "scope_all"}, 400, "invalid_scope"),
        ({"login_hint": "899999999999"}, 400, "unknown_user_id"),
        ({"login_hint": ALICE}, 400, "unknown_user_id"),
        ({"acr_values": "eidas3"}, 400, "invalid_request"),
        ({"binding_message": "x" * 80}, 400, "invalid_binding_message"),
        ({"login_hint_token": "abc"}, 400, "invalid_request"),
        ({"requested_expiry": "-5"}, 400, "invalid_request"),
    ],
)
def test_backchannel_refusals(http: httpx.Client, change: dict[str, Any], status: int, error: str) -> None:
    auth = change.pop("auth", BASIC)
    answer = authorize(http, auth, **change)
    assert (answer.status_code, answer.json()["error"]) == (status, error)
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Basic")


def test_client_secret_post_and_requested_expiry(http: httpx.Client) -> None:
    answer = authorize(http, None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, requested_expiry="30")
    assert answer.status_code == 200 and answer.json()["expires_in"] == 30


def test_a_form_is_required(http: httpx.Client) -> None:
    answer = http.post(OIDC + "/ext/ciba/auth", json={"scope": "openid"}, auth=BASIC)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_token_refusals(http: httpx.Client, clock: Clock) -> None:
    auth_req_id = authorize(http).json()["auth_req_id"]
    assert token(http, auth_req_id).json()["error"] == "slow_down", "no wait at all after the request"
    clock.now += 6
    assert token(http, auth_req_id).json()["error"] == "authorization_pending"
    wrong_grant = http.post(OIDC + "/token", data={"grant_type": "client_credentials"}, auth=BASIC)
    assert wrong_grant.json()["error"] == "unsupported_grant_type"
    assert token(http, "nope").json()["error"] == "invalid_grant"
    http.post("/_sandbox/psc/deny", json={"auth_req_id": auth_req_id}).raise_for_status()
    clock.now += 6
    assert token(http, auth_req_id).json()["error"] == "access_denied"


def test_an_unanswered_request_expires(http: httpx.Client, clock: Clock) -> None:
    http.post("/_sandbox/psc/settings", json={"expires_in": 10}).raise_for_status()
    auth_req_id = authorize(http).json()["auth_req_id"]
    clock.now += 11
    assert token(http, auth_req_id).json()["error"] == "expired_token"


def test_the_phone_by_rpps_needs_a_pending_request(http: httpx.Client) -> None:
    assert http.post("/_sandbox/psc/approve", json={"rpps": ALICE}).status_code == 404
    assert http.post("/_sandbox/psc/approve", json={}).status_code == 400
    authorize(http, binding_message="Comptoir 1234")
    requests = http.get("/_sandbox/psc/requests").json()["requests"]
    assert [(r["rpps"], r["binding_message"], r["status"]) for r in requests] == [(ALICE, "Comptoir 1234", "pending")]


def test_userinfo_needs_a_live_bearer_token(http: httpx.Client) -> None:
    assert http.get(OIDC + "/userinfo").status_code == 401
    assert http.get(OIDC + "/userinfo", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_settings_are_checked_and_down_means_503(http: httpx.Client) -> None:
    for bad in ({"interval": 0}, {"auto": "maybe"}, {"forge": "everything"}, {"colour": "blue"}):
        assert http.post("/_sandbox/psc/settings", json=bad).status_code == 400
    assert http.post("/_sandbox/psc/settings", json={"down": True}).json()["down"] is True
    assert http.get(ISSUER_PATH + "/.well-known/openid-configuration").status_code == 503
    http.post("/_sandbox/psc/reset").raise_for_status()
    assert http.get(ISSUER_PATH + "/.well-known/openid-configuration").status_code == 200


def test_a_professional_can_be_added(http: httpx.Client) -> None:
    added = {"rpps": "10000000999", "given_name": "Zoé", "family_name": "ROUX"}
    assert http.post("/_sandbox/psc/professionals", json=added).status_code == 200
    assert authorize(http, login_hint="810000000999").status_code == 200
    assert http.post("/_sandbox/psc/professionals", json={"rpps": "12"}).status_code == 400


def test_the_other_services_are_untouched(http: httpx.Client) -> None:
    assert http.get("/_sandbox/health").json() == {"status": "ok"}
    assert http.get("/psc/nothing").status_code == 404
    assert http.get(OIDC + "/auth").json()["error"] == "unsupported_response_type"
