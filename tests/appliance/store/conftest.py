"""Shared fixtures: a real SQLite file and a key file in ``tmp_path``, and cheap PIN hashing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlite_utils

from appliance.store import open_database
from appliance.store import operators as operators_module
from appliance.store.sealing import FieldCipher


@pytest.fixture(autouse=True)
def cheap_pin_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production PIN hashing costs 19 MiB and ~20 ms per hash; the tests hash dozens of PINs, so they
    use the same algorithm at its minimum cost. The CLI tests, in subprocesses, use the real cost."""
    cheap: operators_module.PinKdfParams
    if operators_module.argon2id_available():
        cheap = operators_module.Argon2idParams(memory_kib=8, iterations=1, lanes=1)
    else:
        cheap = operators_module.ScryptParams(log2_n=4, r=8, p=1)
    monkeypatch.setattr(operators_module, "PIN_KDF", cheap)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "comptoir.db"


@pytest.fixture
def db(db_path: Path, key_path: Path) -> Iterator[sqlite_utils.Database]:
    """The database opened with its key file, as the box opens it (audit rows are keyed)."""
    database = open_database(db_path, key_file=key_path)
    yield database
    database.close()


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "comptoir.key"
    path.parent.mkdir()
    FieldCipher.create_key(path)
    return path
