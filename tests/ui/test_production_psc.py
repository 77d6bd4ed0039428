"""`comptoir kiosk` with a ``[psc]`` table: the settings, and the e-CPS login through the production
composition (no window, no device) against the sandbox Pro Santé Connect on 127.0.0.1."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from appliance.domain import Role
from appliance.store import operators
from appliance.store.sealing import FieldCipher
from sandbox.psc import CLIENT_ID, CLIENT_SECRET, ISSUER_PATH
from sandbox.server import SandboxServer
from ui.production import KioskConfigError, ProductionConfig, build_production, load_config

BASE = "[store]\ndatabase = 'x'\n[teleservices]\nbase_url = 'https://t'\n"
PSC = "[psc]\nissuer = 'https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet'\nclient_id = 'comptoir'\n"


def _load(tmp_path: Path, text: str) -> ProductionConfig:
    (tmp_path / "psc-secret").write_text("s3cret\n", encoding="utf-8")
    path = tmp_path / "kiosk.toml"
    path.write_text(text.replace("SECRET", str(tmp_path / "psc-secret")), encoding="utf-8")
    return load_config(path, env={})


def test_without_a_psc_table_there_is_no_e_cps(tmp_path: Path) -> None:
    assert _load(tmp_path, BASE).psc is None


def test_the_psc_table(tmp_path: Path) -> None:
    text = BASE + PSC + "client_secret_file = 'SECRET'\nca = '/etc/ca.pem'\nmax_wait_s = 90\n"
    psc = _load(tmp_path, text).psc
    assert psc is not None
    assert psc.client_secret == "s3cret" and psc.auth_method == "client_secret_basic"
    assert psc.verify == "/etc/ca.pem" and psc.max_wait_s == 90.0
    assert (psc.scope, psc.acr_values) == ("openid scope_all", "eidas1")
    assert psc.discovery == psc.issuer + "/.well-known/openid-configuration"
    assert _load(tmp_path, BASE + PSC + "enabled = false\n").psc is None


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ("client_secret_file = 'SECRET'\ncolour = 'blue'\n", "unknown key(s): colour"),
        ("", "client_secret_basic needs a client secret"),
        ("client_secret_file = '/nonexistent/secret'\n", "client_secret_file /nonexistent/secret"),
        ("client_secret_file = 'SECRET'\ncert = '/etc/box.pem'\n", "cert and key go together"),
        ("client_secret_file = 'SECRET'\nbinding_message = 'Comptoir'\n", "must contain {code}"),
        ("client_secret_file = 'SECRET'\ntimeout_s = -1\n", "timeout_s must be a positive number"),
        ("client_secret_file = 'SECRET'\nauth_method = 'private_key_jwt'\n", "auth_method must be one of"),
    ],
)
def test_a_wrong_psc_table_is_named(tmp_path: Path, extra: str, said: str) -> None:
    with pytest.raises(KioskConfigError, match=r"\[psc\]") as error:
        _load(tmp_path, BASE + PSC + extra)
    assert said in str(error.value)


def test_a_plain_http_issuer_is_refused(tmp_path: Path) -> None:
    text = BASE + "[psc]\nissuer = 'http://psc.example'\nclient_id = 'c'\nclient_secret_file = 'SECRET'\n"
    with pytest.raises(KioskConfigError, match="https"):
        _load(tmp_path, text)


def _drain_until(posted: queue.Queue[Callable[[], None]], done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        posted.get(timeout=max(0.01, deadline - time.monotonic()))()


def test_the_e_cps_login_through_the_production_kiosk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operators, "PIN_KDF", operators.ScryptParams(log2_n=4, r=8, p=1))
    from appliance.store.database import open_database

    key = tmp_path / "fields.key"
    FieldCipher.create_key(key)
    db = open_database(tmp_path / "c.db", key_file=key)
    alice = operators.add_operator(db, "alice", Role.PHARMACIEN, "2468")
    operators.set_rpps(db, alice, "10000000007", by=None)
    operators.add_operator(db, "claire", Role.PREPARATEUR, "1357")
    db.close()
    (tmp_path / "psc-secret").write_text(CLIENT_SECRET, encoding="utf-8")
    with SandboxServer(port=0) as sandbox:
        path = tmp_path / "kiosk.toml"
        path.write_text(
            f"[store]\ndatabase = '{tmp_path / 'c.db'}'\nkey = '{key}'\n"
            f"[teleservices]\nbase_url = '{sandbox.url}'\n[cards]\nenabled = false\n"
            f"[psc]\nissuer = '{sandbox.url}{ISSUER_PATH}'\nclient_id = '{CLIENT_ID}'\n"
            f"client_secret_file = '{tmp_path / 'psc-secret'}'\n",
            encoding="utf-8",
        )
        posted: queue.Queue[Callable[[], None]] = queue.Queue()
        production = build_production(load_config(path, env={}), posted.put)
        try:
            vm, counter = production.vm, production.controller.counter
            assert vm.ecps_ready and vm.rpps_of == {"alice": "10000000007"}
            _drain_until(posted, lambda: vm.results == 1)
            vm.open_panel()
            vm.choose_operator("alice")
            vm.ecps_login()
            _drain_until(posted, lambda: bool(vm.ecps_code))
            httpx.post(f"{sandbox.url}/_sandbox/psc/approve", json={"rpps": "10000000007"}, timeout=2.0)
            _drain_until(posted, lambda: vm.unlocked)
            assert counter.operator_id == alice and counter.cps_operator is None and vm.operator_name == "alice"
        finally:
            production.close()
