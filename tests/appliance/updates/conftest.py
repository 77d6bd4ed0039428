"""Fixtures of the update tests: test releases, a TUF repository, an HTTPS server on 127.0.0.1 with a
test CA, and a box layout provisioned with release 0.1.0."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import shutil
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.updates.layout import Layout
from appliance.updates.repository import Repository, generate_keys
from tests.appliance.updates.fakes import FakeRestarter, make_agent
from tests.appliance.updates.releases import build_release


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """0.1.0 (today's schema), 0.2.0 and 0.3.0 (one more migration), 0.2.1 (broken selftest)."""
    out = tmp_path_factory.mktemp("releases")
    return {
        "0.1.0": build_release(out, "0.1.0"),
        "0.2.0": build_release(out, "0.2.0", extra_migration=True),
        "0.2.1": build_release(out, "0.2.1", extra_migration=True, broken=True),
        "0.3.0": build_release(out, "0.3.0", extra_migration=True),
    }


@pytest.fixture(scope="session")
def provisioned_template(tmp_path_factory: pytest.TempPathFactory, releases: dict[str, Path]) -> Path:
    """A box directory with 0.1.0 provisioned (current = good = 0.1.0) and its database."""
    root = tmp_path_factory.mktemp("box-template")
    layout = Layout.under(root)
    agent = make_agent(layout, root / "comptoir.db", FakeRestarter(layout), source=None)
    agent.provision(releases["0.1.0"])
    return root


@pytest.fixture
def box(tmp_path: Path, provisioned_template: Path) -> tuple[Layout, Path]:
    """A fresh copy of the provisioned box: (layout, database path)."""
    root = tmp_path / "box"
    shutil.copytree(provisioned_template, root, symlinks=True)
    return Layout.under(root), root / "comptoir.db"


# -- TLS and the repository -----------------------------------------------------------------------


@dataclass
class Tls:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A test CA and a server certificate for 127.0.0.1, made with cryptography."""
    d = tmp_path_factory.mktemp("tls")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("comptoir test CA"))
        .issuer_name(_name("comptoir test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tls = Tls(d / "ca.pem", d / "server.pem", d / "server.key")
    tls.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tls


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class Served:
    url: str
    directory: Path


@pytest.fixture
def https_dir(tmp_path: Path, tls: Tls) -> Iterator[Served]:
    """An HTTPS static server on 127.0.0.1 serving ``tmp_path / "www"`` (stops with the test)."""
    www = tmp_path / "www"
    www.mkdir()

    def handler(*args: object, **kwargs: object) -> _Quiet:
        return _Quiet(*args, directory=str(www), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)  # type: ignore[arg-type]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls.cert_file, tls.key_file)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Served(f"https://127.0.0.1:{server.server_address[1]}", www)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Repo:
    repo: Repository
    keys: Path
    served: Served

    @property
    def path(self) -> Path:
        return self.repo.path


@pytest.fixture(scope="session")
def keys_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("keys")
    generate_keys(keys)
    return keys


@pytest.fixture
def repo(tmp_path: Path, https_dir: Served, keys_template: Path) -> Repo:
    """An initialised repository in the served directory (``<url>/metadata/``, ``<url>/targets/``)."""
    keys = tmp_path / "keys"
    shutil.copytree(keys_template, keys)
    repository = Repository(https_dir.directory, keys)
    repository.init()
    return Repo(repository, keys, https_dir)
