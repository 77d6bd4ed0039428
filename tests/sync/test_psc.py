"""The e-CPS login over HTTP against the sandbox Pro Santé Connect on 127.0.0.1: the whole CIBA flow.

Most tests share one clock between the client and the provider (``FakeClock``): the client's pauses
move it, so the polling pace, ``slow_down`` and expiry are exact and take no real time. One test
waits for real, with the phone answering from another thread while the kiosk polls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from appliance.psc import PendingLogin, national_id, rpps_from_national_id
from sandbox.psc import CLIENT_ID, CLIENT_SECRET, ISSUER_PATH, PscProvider
from sandbox.server import SandboxServer
from sync.psc import (
    PscCancelled,
    PscClient,
    PscDenied,
    PscExpired,
    PscInvalidToken,
    PscMismatch,
    PscRefused,
    PscSettings,
    PscUnavailable,
    PscUnknownUser,
)

ALICE = "10000000007"


class FakeClock:
    """Monotonic time that only the client's pauses move."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    def pause(self, seconds: float, cancelled: threading.Event | None) -> bool:
        self.pauses.append(seconds)
        self.now += seconds
        return bool(cancelled and cancelled.is_set())


@pytest.fixture(scope="module")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server(clock: FakeClock) -> Iterator[SandboxServer]:
    sandbox = SandboxServer(port=0, psc=PscProvider(clock=clock))
    sandbox.start()
    yield sandbox
    sandbox.stop()


@pytest.fixture
def phone(server: SandboxServer, clock: FakeClock) -> Iterator[httpx.Client]:
    """The sandbox's control of the professional's phone (reset for each test)."""
    clock.pauses.clear()
    with httpx.Client(base_url=f"{server.url}/_sandbox/psc", timeout=2.0) as control:
        control.post("/reset").raise_for_status()
        yield control


def settings(server: SandboxServer, **options: Any) -> PscSettings:
    values: dict[str, Any] = {
        "issuer": server.url + ISSUER_PATH,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "timeout_s": 2.0,
    }
    return PscSettings(**{**values, **options})


@pytest.fixture
def client(server: SandboxServer, clock: FakeClock, phone: httpx.Client) -> Iterator[PscClient]:
    with PscClient(settings(server), clock=clock, pause=clock.pause) as psc:
        yield psc


def configure(phone: httpx.Client, **values: Any) -> None:
    phone.post("/settings", json=values).raise_for_status()


# ------------------------------------------------------------------------------------------- the flow
def test_discovery_names_the_ciba_endpoints_of_the_configured_issuer(client: PscClient, server: SandboxServer) -> None:
    metadata = client.metadata()
    assert metadata["issuer"] == server.url + ISSUER_PATH
    assert metadata["backchannel_authentication_endpoint"].endswith("/protocol/openid-connect/ext/ciba/auth")
    assert "poll" in metadata["backchannel_token_delivery_modes_supported"]


def test_the_professional_validates_on_the_phone_while_the_kiosk_polls() -> None:
    """Real time: the request, the phone answering 1.3 s later from another thread, the token verified."""
    with (
        SandboxServer(port=0) as server,
        httpx.Client(base_url=f"{server.url}/_sandbox/psc", timeout=2.0) as phone,
        PscClient(settings(server, max_wait_s=10.0)) as psc,
    ):
        started = time.monotonic()
        pending = psc.start(ALICE)
        assert pending.rpps == ALICE and pending.interval == 1.0
        assert pending.binding_message.startswith("Comptoir ") and len(pending.binding_message) == len("Comptoir 0000")
        shown = phone.get("/requests").json()["requests"]
        assert [(r["rpps"], r["binding_message"], r["status"]) for r in shown] == [
            (ALICE, pending.binding_message, "pending")
        ]
        answer = threading.Timer(1.3, lambda: phone.post("/approve", json={"rpps": ALICE}).raise_for_status())
        answer.start()
        try:
            identity = psc.wait(pending)
        finally:
            answer.join()
        took = time.monotonic() - started
        polls = phone.get("/requests").json()["requests"][0]
    assert (identity.rpps, identity.national_id, identity.acr) == (ALICE, "8" + ALICE, "eidas1")
    assert identity.display_name == "Alice MARTIN"
    assert 1.9 <= took < 6.0, took
    assert polls["status"] == "delivered" and polls["polls"] >= 2, "pending first, then the tokens"


def test_the_phone_answering_after_three_polls(client: PscClient, phone: httpx.Client, clock: FakeClock) -> None:
    configure(phone, auto="approve", after_polls=3)
    identity = client.login(ALICE)
    assert identity.rpps == ALICE
    assert clock.pauses == [1.0, 1.0, 1.0], "one interval before each poll"


def test_a_refusal_on_the_phone_is_access_denied(client: PscClient, phone: httpx.Client) -> None:
    pending = client.start(ALICE)
    phone.post("/deny", json={"auth_req_id": pending.auth_req_id}).raise_for_status()
    with pytest.raises(PscDenied) as refused:
        client.wait(pending)
    assert refused.value.message == "Connexion e-CPS refusée sur le téléphone"


def test_nobody_answering_expires(client: PscClient, phone: httpx.Client, clock: FakeClock) -> None:
    configure(phone, expires_in=5)
    with pytest.raises(PscExpired) as expired:
        client.login(ALICE)
    assert expired.value.message.startswith("Connexion e-CPS expirée")
    assert sum(clock.pauses) <= 5.0, "the wait never goes past the request's expires_in"


def test_the_wait_is_bounded_by_max_wait_s(server: SandboxServer, phone: httpx.Client, clock: FakeClock) -> None:
    with PscClient(settings(server, max_wait_s=3.5), clock=clock, pause=clock.pause) as psc, pytest.raises(PscExpired):
        psc.login(ALICE)
    assert sum(clock.pauses) == pytest.approx(3.5)


def test_slow_down_adds_five_seconds_to_every_later_poll(
    client: PscClient, phone: httpx.Client, clock: FakeClock
) -> None:
    configure(phone, slow_down=1, auto="approve", after_polls=2)
    assert client.login(ALICE).rpps == ALICE
    assert clock.pauses == [1.0, 6.0, 6.0]


def test_polling_faster_than_the_interval_is_told_to_slow_down(client: PscClient, phone: httpx.Client) -> None:
    pending = client.start(ALICE)
    slower = client.poll(pending)  # no pause at all: too soon
    assert isinstance(slower, PendingLogin) and slower.interval == pending.interval + 5


def test_cancelling_stops_the_wait_at_once(client: PscClient) -> None:
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(PscCancelled):
        client.login(ALICE, cancelled)


def test_the_rpps_can_come_from_userinfo(client: PscClient, phone: httpx.Client) -> None:
    configure(phone, identifier_in_id_token=False, auto="approve")
    identity = client.login(ALICE)
    assert identity.national_id == "810000000007" and identity.family_name == "MARTIN"


def test_an_es256_provider_and_client_secret_post(clock: FakeClock) -> None:
    with SandboxServer(port=0, psc=PscProvider(clock=clock, algorithm="ES256")) as sandbox:
        sandbox.psc.configure({"auto": "approve"})
        with PscClient(settings(sandbox, auth_method="client_secret_post"), clock=clock, pause=clock.pause) as psc:
            assert psc.login(ALICE).rpps == ALICE


def test_a_rotated_signing_key_is_fetched_again(client: PscClient, server: SandboxServer, phone: httpx.Client) -> None:
    configure(phone, auto="approve")
    assert client.login(ALICE).rpps == ALICE
    server.psc._key = server.psc._new_key("sandbox-rotated")
    assert client.login(ALICE).rpps == ALICE


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    "forge", ["signature", "unknown-key", "audience", "issuer", "expired", "auth_req_id", "hs256", "none"]
)
def test_a_forged_or_misaddressed_id_token_is_refused(client: PscClient, phone: httpx.Client, forge: str) -> None:
    configure(phone, auto="approve", forge=forge)
    with pytest.raises(PscInvalidToken) as refused:
        client.login(ALICE)
    assert refused.value.message == "Réponse de Pro Santé Connect invalide : connexion refusée"


def test_an_unknown_kid_makes_the_client_fetch_the_keys_once_more(
    server: SandboxServer, phone: httpx.Client, clock: FakeClock
) -> None:
    fetched: list[str] = []
    http = httpx.Client(timeout=2.0, event_hooks={"request": [lambda r: fetched.append(r.url.path)]})
    configure(phone, auto="approve", forge="unknown-key")
    with (
        http,
        PscClient(settings(server), client=http, clock=clock, pause=clock.pause) as psc,
        pytest.raises(PscInvalidToken),
    ):
        psc.login(ALICE)
    assert sum(path.endswith("/certs") for path in fetched) == 2


def test_a_token_for_another_professional_is_refused(client: PscClient, phone: httpx.Client) -> None:
    configure(phone, auto="approve", forge="other-professional")
    with pytest.raises(PscMismatch):
        client.login(ALICE)


def test_a_token_signed_with_an_algorithm_the_kiosk_does_not_allow(
    server: SandboxServer, phone: httpx.Client, clock: FakeClock
) -> None:
    configure(phone, auto="approve")
    with (
        PscClient(settings(server, algorithms=("ES256",)), clock=clock, pause=clock.pause) as psc,
        pytest.raises(PscInvalidToken),
    ):
        psc.login(ALICE)


def test_an_rpps_without_e_cps(client: PscClient) -> None:
    with pytest.raises(PscUnknownUser) as unknown:
        client.start("10000000999")
    assert unknown.value.message == "Pas d'e-CPS active pour ce RPPS : connectez-vous avec votre code"


def test_a_wrong_client_secret_is_a_set_up_problem(
    server: SandboxServer, clock: FakeClock, phone: httpx.Client
) -> None:
    with (
        PscClient(settings(server, client_secret="wrong"), clock=clock, pause=clock.pause) as psc,
        pytest.raises(PscRefused) as refused,
    ):
        psc.start(ALICE)
    assert "invalid_client" in refused.value.detail


def test_not_an_rpps(client: PscClient) -> None:
    with pytest.raises(PscRefused) as refused:
        client.start("1234")
    assert refused.value.message == "RPPS invalide : 11 chiffres"


def test_a_discovery_document_of_another_issuer_is_refused(server: SandboxServer, clock: FakeClock) -> None:
    other = settings(server, discovery_url=server.url + ISSUER_PATH + "/.well-known/openid-configuration")
    other = PscSettings(**{**other.__dict__, "issuer": server.url + "/psc/auth/realms/other"})
    with PscClient(other, clock=clock, pause=clock.pause) as psc, pytest.raises(PscUnavailable):
        psc.start(ALICE)


# ------------------------------------------------------------------------------------------- provider down
def test_the_provider_down(client: PscClient, phone: httpx.Client) -> None:
    configure(phone, down=True)
    with pytest.raises(PscUnavailable) as down:
        client.start(ALICE)
    assert down.value.message == "Pro Santé Connect injoignable : connectez-vous avec votre code"


def test_the_provider_going_down_while_the_kiosk_waits(
    client: PscClient, phone: httpx.Client, clock: FakeClock
) -> None:
    pending = client.start(ALICE)
    configure(phone, down=True)
    with pytest.raises(PscUnavailable):
        client.wait(pending)
    assert len(clock.pauses) == 3, "three polls lost in a row, then the kiosk says so"


def test_no_provider_at_all_answers_quickly(clock: FakeClock) -> None:
    with SandboxServer(port=0) as sandbox:
        closed = settings(sandbox)
    started = time.monotonic()
    with PscClient(closed, clock=clock, pause=clock.pause) as psc, pytest.raises(PscUnavailable):
        psc.start(ALICE)
    assert time.monotonic() - started < 2.5


# ------------------------------------------------------------------------------------------- small parts
def test_national_identifiers() -> None:
    assert national_id("10000000007") == "810000000007"
    assert rpps_from_national_id("810000000007") == "10000000007"
    assert rpps_from_national_id("0123456789") is None  # an ADELI-based identifier
    with pytest.raises(ValueError):
        national_id("1000")


def test_settings_refuse_what_cannot_work() -> None:
    base: dict[str, Any] = {
        "issuer": "https://psc.example/auth/realms/esante-wallet",
        "client_id": "c",
        "client_secret": "s",
    }
    PscSettings(**base)
    bads: tuple[dict[str, Any], ...] = (
        {"issuer": "ftp://x"},
        {"client_id": ""},
        {"auth_method": "private_key_jwt"},
        {"auth_method": "tls_client_auth"},
        {"client_secret": None},
        {"algorithms": ("HS256",)},
        {"timeout_s": 0},
    )
    for bad in bads:
        with pytest.raises(ValueError):
            PscSettings(**{**base, **bad})
