"""A PostgreSQL cluster for the back office's tests (TLS verified, as shipped), and ``store_target``:
each store test runs on SQLite and on PostgreSQL.

PostgreSQL comes from Debian's ``postgresql`` (``make test`` installs it). Where it cannot start, the
PostgreSQL cases are skipped saying why, except in CI (``$CI`` set), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.backoffice.pki import Pki
from sandbox.backoffice.postgres import PostgresCluster, PostgresUnavailable

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def fast_password_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Operator passwords hashed with a cheap scrypt in the tests (production: Argon2id, 64 MiB)."""
    from sync.backoffice import accounts

    monkeypatch.setattr(accounts, "KDF", "scrypt$ln=8,r=8,p=1")


@pytest.fixture(scope="session")
def postgres(pki: Pki) -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster(pki=pki).start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL must start in CI: {exc}")
        pytest.skip(f"PostgreSQL could not start here: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=ENGINES)
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a store lives: a SQLite file, or a new database of the test cluster."""
    if request.param == "sqlite":
        return tmp_path / "bo.db"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()
