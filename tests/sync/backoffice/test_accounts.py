"""Operator accounts of the back office: hashes, lock-out, sessions (SQLite and PostgreSQL), the HTTP
rules (no anonymous access, CSRF, roles, cookie flags), the journal, ``account add``, the versions' history."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.backoffice.pki import Pki
from sync.backoffice import accounts as accounts_module
from sync.backoffice.accounts import AccountError, Accounts, LoginRefused, hash_password, lockout_seconds
from sync.backoffice.service import BackOffice, BackOfficeSettings
from sync.backoffice.store import BackOfficeStore, Incoming
from sync.backoffice.web import version_points
from tests.sync.backoffice.web_login import PASSWORD, signed_in

T0 = 1_700_000_000.0


@pytest.fixture
def store(store_target: Path | str) -> Iterator[BackOfficeStore]:
    opened = BackOfficeStore(store_target)
    try:
        yield opened
    finally:
        opened.close()


def test_passwords_are_hashed_with_a_memory_hard_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "KDF", None)
    assert accounts_module.current_kdf() in ("argon2id$m=65536,t=3,p=4", "scrypt$ln=15,r=8,p=1")
    monkeypatch.setattr(accounts_module, "KDF", "scrypt$ln=8,r=8,p=1")
    one, two = hash_password(PASSWORD), hash_password(PASSWORD)
    assert one != two and PASSWORD not in one  # a salt each
    assert accounts_module.verify_password(PASSWORD, one) and not accounts_module.verify_password("x" * 12, one)
    assert [lockout_seconds(n) for n in (1, 4, 5, 6, 7, 40)] == [0, 0, 60, 120, 240, 24 * 3600]


def test_login_lock_out_session_and_journal(store: BackOfficeStore) -> None:
    accounts = Accounts(store)
    accounts.add("alice", "operator", PASSWORD)
    with pytest.raises(AccountError):
        accounts.add("alice", "viewer", PASSWORD)
    with pytest.raises(AccountError):
        accounts.add("bob", "root", PASSWORD)
    with pytest.raises(AccountError):
        accounts.add("bob", "viewer", "short")
    with pytest.raises(LoginRefused):
        accounts.login("nobody", PASSWORD, T0)
    for n in range(4):
        with pytest.raises(LoginRefused) as refused:
            accounts.login("alice", "wrong password!", T0 + n)
        assert refused.value.until is None
    with pytest.raises(LoginRefused) as locked:
        accounts.login("alice", "wrong password!", T0 + 5)
    assert locked.value.until == T0 + 5 + 60
    with pytest.raises(LoginRefused):  # locked: even the right password is not checked
        accounts.login("alice", PASSWORD, T0 + 30)
    with pytest.raises(LoginRefused) as longer:  # the 6th failure locks for twice as long
        accounts.login("alice", "wrong password!", T0 + 70)
    assert longer.value.until == T0 + 70 + 120
    token, session = accounts.login("alice", PASSWORD, T0 + 200)
    assert session.account == "alice" and session.may("operator") and not session.may("admin")
    stored = store.rows("SELECT token_hash, csrf FROM sessions")
    assert len(stored) == 1 and token not in json.dumps(stored), "only the token's hash is kept"
    assert accounts.session(token, T0 + 201) == session
    assert accounts.session(token, T0 + 200 + accounts_module.SESSION_SECONDS + 1) is None, "expired"
    assert accounts.session("forged", T0 + 201) is None
    assert store.rows("SELECT failures FROM accounts WHERE name = 'alice'") == [{"failures": 0}]
    accounts.logout(token, T0 + 202)
    assert accounts.session(token, T0 + 203) is None
    actions = [(e["account"], e["action"]) for e in reversed(accounts.entries())]
    assert actions == [
        (None, "account.added"),
        (None, "login.failed"),
        *[("alice", "login.failed")] * 5,
        ("alice", "login.refused"),
        ("alice", "login.failed"),
        ("alice", "login"),
        ("alice", "logout"),
    ]


def test_each_version_change_of_a_box_is_kept_for_the_chart(store: BackOfficeStore) -> None:
    def telemetry(device: str, version: str, at: float) -> Incoming:
        body = {"versions": {"comptoir": version}, "outbox": {"depth": 0}}
        return Incoming(f"comptoir/{device}/telemetry", json.dumps(body).encode(), at)

    store.apply([telemetry("ph1/c1", "0.1.0", T0), telemetry("ph1/c2", "0.1.0", T0)])
    store.apply([telemetry("ph1/c1", "0.1.0", T0 + 10)])  # the same version: no new row
    store.apply([telemetry("ph1/c1", "0.2.0", T0 + 100)])
    store.apply([telemetry("ph1/c2", "0.3.0", T0 + 50)])
    assert [(c["device"], c["version"]) for c in store.version_changes()] == [
        ("ph1/c1", "0.1.0"),
        ("ph1/c2", "0.1.0"),
        ("ph1/c2", "0.3.0"),
        ("ph1/c1", "0.2.0"),
    ]
    points = version_points(store.version_changes(), T0 + 100, buckets=4)
    assert [p["versions"] for p in points] == [
        {"0.1.0": 2},
        {"0.1.0": 1, "0.3.0": 1},
        {"0.1.0": 1, "0.3.0": 1},
        {"0.2.0": 1, "0.3.0": 1},
    ]


@pytest.fixture
def office(tmp_path: Path, pki: Pki) -> Iterator[BackOffice]:
    issued = pki.client("backoffice")
    # No broker: the page and its accounts do not need it.
    settings = BackOfficeSettings(
        "127.0.0.1", 9, pki.ca.cert, issued.cert, issued.key, tmp_path / "bo.db", Ed25519PrivateKey.generate()
    )
    made = BackOffice(settings)
    made.rollouts.send = lambda device, kind, args: "cmd"
    made.start()
    try:
        yield made
    finally:
        made.stop()


def test_no_anonymous_access_and_the_post_rules(office: BackOffice) -> None:
    with httpx.Client(base_url=office.url, timeout=5) as anonymous:
        for path in ("/", "/reconciliation"):
            refused = anonymous.get(path)
            assert refused.status_code == 303 and refused.headers["location"] == "/login"
        for path in ("/api/fleet", "/api/rollouts", "/api/health", "/api/worker", "/api/versions", "/api/session"):
            assert anonymous.get(path).status_code == 401, path
        assert anonymous.post("/api/rollouts", json={"version": "1", "url": "u"}).status_code == 401
        assert anonymous.post("/rollouts", data={"version": "1", "url": "u"}).status_code == 303
        assert anonymous.get("/login").status_code == 200
        wrong = anonymous.post("/login", data={"name": "alice", "password": "nope"})
        assert wrong.status_code == 401 and "incorrect" in wrong.text and "set-cookie" not in wrong.headers
    with signed_in(office, "alice", "operator") as http:
        cookie = http.cookies.jar
        assert [c.name for c in cookie] == ["comptoir_bo"]
        csrf = http.headers.pop("X-CSRF-Token")
        assert http.post("/api/rollouts", json={"version": "0.3.0", "url": "https://u/0.3.0"}).status_code == 403
        http.headers["X-CSRF-Token"] = "not-the-token"
        assert http.post("/api/rollouts", json={"version": "0.3.0", "url": "https://u/0.3.0"}).status_code == 403
        http.headers["X-CSRF-Token"] = csrf
        evil = {"Origin": "https://evil.example"}
        assert http.post("/api/rollouts", json={"version": "0.3.0", "url": "u"}, headers=evil).status_code == 403
        assert office.store.rollouts() == []
        created = http.post("/api/rollouts", json={"version": "0.3.0", "url": "https://u/0.3.0"})
        assert created.status_code == 201
        ident = created.json()["id"]
        assert http.post(f"/api/rollouts/{ident}/resume").status_code == 409, "not paused"
        assert http.post(f"/api/rollouts/{ident}/pause", json={"reason": "test"}).status_code == 200
        assert office.store.rollouts()[0]["state"] == "paused"
        assert office.store.rollouts()[0]["pause_reason"] == "test"
        assert http.post(f"/api/rollouts/{ident}/resume").status_code == 200
        assert office.store.rollouts()[0]["state"] == "running"
        assert http.get("/api/journal").status_code == 403, "admin only"
        assert http.post("/api/accounts", json={"name": "x", "role": "admin", "password": PASSWORD}).status_code == 403
        assert http.post("/logout", data={"csrf": csrf}).status_code == 303
        assert http.get("/api/fleet").status_code == 401, "logged out"
    with signed_in(office, "val", "viewer") as viewer:
        assert viewer.post("/api/rollouts/1/pause").status_code == 403
        assert viewer.post("/api/rollouts", json={"version": "9", "url": "u"}).status_code == 403
        assert viewer.post("/api/commands", json={"device": "ph1/c1", "type": "resync"}).status_code == 403
        assert viewer.get("/api/rollouts").json()["rollouts"][0]["state"] == "running"
    with signed_in(office, "root", "admin") as admin:
        made = admin.post("/api/accounts", json={"name": "bob", "role": "viewer", "password": PASSWORD})
        assert made.status_code == 201
        journal = [(e["account"], e["action"]) for e in admin.get("/api/journal").json()["journal"]]
        assert ("alice", "rollout.started") in journal and ("alice", "rollout.paused") in journal
        assert ("alice", "rollout.resumed") in journal and ("root", "account.added") in journal
        assert ("alice", "logout") in journal
        assert {a["name"]: a["role"] for a in admin.get("/api/accounts").json()["accounts"]} == {
            "alice": "operator",
            "bob": "viewer",
            "root": "admin",
            "val": "viewer",
        }


def test_the_session_cookie_flags(office: BackOffice) -> None:
    Accounts(office.store).add("alice", "viewer", PASSWORD)
    form = {"name": "alice", "password": PASSWORD}
    plain = httpx.post(f"{office.url}/login", data=form, timeout=5).headers["set-cookie"]
    assert "HttpOnly" in plain and "SameSite=Strict" in plain and "Secure" not in plain and "Max-Age=28800" in plain
    proxied = httpx.post(f"{office.url}/login", data=form, headers={"X-Forwarded-Proto": "https"}, timeout=5)
    assert "; Secure" in proxied.headers["set-cookie"]


def test_account_add_reads_the_password_from_stdin_never_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sync.backoffice.cli import main

    db = tmp_path / "bo.db"
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main(["account", "add", "carla", "--role", "operator", "--db", str(db)]) == 0
    assert "carla added" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["account", "add", "dan", "--role", "viewer", "--db", str(db)]) == 2
    assert "12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["account", "add", "dan", "--role", "viewer", "--password", PASSWORD, "--db", str(db)])
    store = BackOfficeStore(db)
    try:
        _, session = Accounts(store).login("carla", PASSWORD, time.time())
        assert session.role == "operator"
    finally:
        store.close()
