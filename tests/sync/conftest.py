"""Fixtures for the sync tests: a test PKI, a real mosquitto (TLS + the shipped ACL), the back office."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sandbox.backoffice.broker import MosquittoBroker
from sandbox.backoffice.pki import Pki
from sync.backoffice.service import BackOffice, BackOfficeSettings


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="session")
def command_key(signing_key: Ed25519PrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cmdkey") / "backoffice-commands.pub"
    path.write_bytes(
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[MosquittoBroker]:
    mosquitto = MosquittoBroker(tmp_path / "broker", pki)
    mosquitto.start()
    yield mosquitto
    mosquitto.kill()


def start_backoffice(
    directory: Path, pki: Pki, broker_port: int, signing_key: Ed25519PrivateKey, *, client_id: str = "backoffice"
) -> BackOffice:
    issued = pki.client("backoffice")
    office = BackOffice(
        BackOfficeSettings(
            "127.0.0.1",
            broker_port,
            pki.ca.cert,
            issued.cert,
            issued.key,
            directory / "backoffice.db",
            signing_key,
            client_id=client_id,
        )
    )
    office.start()
    assert office.wait_connected(10), "the back office did not connect"
    return office


@pytest.fixture
def backoffice(
    tmp_path: Path, pki: Pki, broker: MosquittoBroker, signing_key: Ed25519PrivateKey
) -> Iterator[BackOffice]:
    office = start_backoffice(tmp_path, pki, broker.port, signing_key)
    yield office
    office.stop()
