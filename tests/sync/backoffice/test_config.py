"""``comptoir backoffice --config``: the shipped example is valid, unknown keys and weak TLS are refused
with a sentence that names them, and the command says what is wrong instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from appliance.cli import main
from sandbox.backoffice.workers import write_signing_key
from sync.backoffice.config import DEFAULT_SQLITE, ConfigError, load_config

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "systemd" / "backoffice.toml.example"
SQLITE = 'engine = "sqlite"\npath = "/var/lib/comptoir-backoffice/backoffice.db"'


def _example(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    """The shipped example with its /etc paths moved into ``tmp_path`` (and a real signing key there)."""
    etc = tmp_path / "etc"
    (etc / "tls").mkdir(parents=True)
    write_signing_key(etc / "commands.key")
    text = EXAMPLE.read_text(encoding="utf-8").replace("/etc/comptoir-backoffice/", f"{etc}/")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    path = etc / "backoffice.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_is_a_valid_single_worker_on_sqlite(tmp_path: Path) -> None:
    settings = load_config(_example(tmp_path))
    assert settings.db == DEFAULT_SQLITE and settings.group is None and settings.client_id == "backoffice"
    assert settings.host == "broker.fleet.example" and settings.port == 8883 and settings.http_port == 8780
    assert settings.ca == tmp_path / "etc" / "tls" / "fleet-ca.pem" and settings.rollout_interval == 60.0


def test_postgresql_is_verified_full_by_default_and_workers_get_their_own_client_id(tmp_path: Path) -> None:
    path = _example(
        tmp_path,
        {
            '# group = "backoffice"': 'group = "backoffice"',
            SQLITE: "",
            '# engine = "postgresql"\n# host = "db.fleet.example"': 'engine = "postgresql"\nhost = "db.fleet.example"',
        },
    )
    settings = load_config(path)
    assert isinstance(settings.db, str)
    assert "sslmode=verify-full" in settings.db and "sslrootcert=system" in settings.db
    assert "host=db.fleet.example" in settings.db and "dbname=comptoir_backoffice" in settings.db
    assert settings.group == "backoffice" and settings.client_id.startswith("backoffice-")
    assert f"application_name={settings.client_id}" in settings.db
    assert settings.grace == 1.0


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ({"port = 8883": "port = 8883\nhots = 1"}, "[mqtt] unknown key(s): hots (known: ca, cert, client_id, group,"),
        ({"[rollouts]": "[rollout]"}, "unknown table(s): rollout (known: commands, database, http, mqtt, rollouts)"),
        ({"port = 8883": 'port = "8883"'}, "[mqtt] port must be an integer"),
        ({'signing_key = "': 'signing_kee = "'}, "[commands] unknown key(s): signing_kee"),
        ({'engine = "sqlite"': 'engine = "mysql"'}, '[database] engine must be "sqlite" or "postgresql"'),
        ({'engine = "sqlite"': 'engine = "sqlite"\nhost = "db"'}, '[database] host is for engine = "postgresql"'),
        (
            {SQLITE: 'engine = "postgresql"\nhost = "db"\nsslmode = "require"'},
            "[database] sslmode must be one of verify-full, verify-ca, disable",
        ),
        (
            {SQLITE: 'engine = "postgresql"\nhost = "db.example"\nsslmode = "disable"'},
            '[database] sslmode = "disable" only for a server on the loopback or a socket, not db.example',
        ),
        ({'# group = "backoffice"': 'group = "a/b"'}, "[mqtt] group must be a non-empty name without"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_with_what_and_where(tmp_path: Path, replace: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(_example(tmp_path, replace))
    assert message in str(caught.value)
    assert "backoffice.toml" in str(caught.value)


def test_a_database_on_the_loopback_may_go_without_tls(tmp_path: Path) -> None:
    path = _example(tmp_path, {SQLITE: 'engine = "postgresql"\nhost = "127.0.0.1"\nsslmode = "disable"'})
    settings = load_config(path)
    assert isinstance(settings.db, str) and "sslmode=disable" in settings.db


def test_the_signing_key_must_be_ed25519(tmp_path: Path) -> None:
    path = _example(tmp_path)
    ec = generate_private_key(SECP256R1())
    (tmp_path / "etc" / "commands.key").write_bytes(ec.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(ConfigError, match="must be an Ed25519 private key"):
        load_config(path)


def test_the_command_says_what_is_wrong_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _example(tmp_path, {"port = 8883": "port = 8883\nverify = false"})
    assert main(["backoffice", "--config", str(bad)]) == 2
    assert "[mqtt] unknown key(s): verify" in capsys.readouterr().err
    assert main(["backoffice", "--db", str(tmp_path / "bo.db")]) == 2
    assert "--ca, --cert, --key, --signing-key required without --config" in capsys.readouterr().err
    done = subprocess.run(
        [sys.executable, "-m", "sync.backoffice", "--config", str(tmp_path / "missing.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "cannot read" in done.stderr


def test_secure_cookies_is_a_boolean_of_http(tmp_path: Path) -> None:
    assert load_config(_example(tmp_path / "a")).secure_cookies is False
    on = _example(tmp_path / "b", {"# secure_cookies = true": "secure_cookies = true"})
    assert load_config(on).secure_cookies is True
    with pytest.raises(ConfigError, match=r"\[http\] secure_cookies must be true or false"):
        load_config(_example(tmp_path / "c", {"# secure_cookies = true": 'secure_cookies = "yes"'}))


def test_comptoir_backoffice_account_add_uses_the_config_s_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from sync.backoffice.accounts import Accounts
    from sync.backoffice.store import BackOfficeStore

    db = tmp_path / "bo.db"
    path = _example(tmp_path, {SQLITE: f'engine = "sqlite"\npath = "{db}"'})
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["backoffice", "account", "add", "eve", "--role", "admin", "--config", str(path)]) == 0
    store = BackOfficeStore(db)
    try:
        assert [(a["name"], a["role"]) for a in Accounts(store).list()] == [("eve", "admin")]
        assert Accounts(store).entries()[0]["action"] == "account.added"
    finally:
        store.close()
