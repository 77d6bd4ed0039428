"""Sealed identity fields: AES-GCM bound to their column, blind indexes, and a private key file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.store.sealing import FieldCipher, KeyFileError, SealError


@pytest.fixture
def cipher(key_path: Path) -> FieldCipher:
    return FieldCipher.load(key_path)


def test_a_sealed_field_opens_back_to_its_value(cipher: FieldCipher) -> None:
    blob = cipher.seal("DUPONT-LÉGER", "patient.birth_name")
    assert b"DUPONT" not in blob
    assert cipher.open(blob, "patient.birth_name") == "DUPONT-LÉGER"


def test_sealing_twice_gives_different_blobs(cipher: FieldCipher) -> None:
    assert cipher.seal("MARTIN", "patient.birth_name") != cipher.seal("MARTIN", "patient.birth_name")


def test_a_blob_moved_to_another_column_does_not_open(cipher: FieldCipher) -> None:
    blob = cipher.seal("MARTIN", "patient.birth_name")
    with pytest.raises(SealError, match=r"patient\.first_names"):
        cipher.open(blob, "patient.first_names")


@pytest.mark.parametrize("position", [0, 5, 20, -1])
def test_a_tampered_blob_does_not_open(cipher: FieldCipher, position: int) -> None:
    blob = bytearray(cipher.seal("1840575123456", "patient.nir"))
    blob[position] ^= 0x01
    with pytest.raises(SealError):
        cipher.open(bytes(blob), "patient.nir")


def test_a_truncated_blob_or_another_key_does_not_open(cipher: FieldCipher, tmp_path: Path) -> None:
    blob = cipher.seal("MARTIN", "patient.birth_name")
    with pytest.raises(SealError, match="truncated"):
        cipher.open(blob[:10], "patient.birth_name")
    other_key = tmp_path / "other.key"
    FieldCipher.create_key(other_key)
    with pytest.raises(SealError):
        FieldCipher.load(other_key).open(blob, "patient.birth_name")


def test_the_error_never_contains_the_value(cipher: FieldCipher) -> None:
    blob = cipher.seal("SECRET-NAME", "patient.birth_name")
    with pytest.raises(SealError) as caught:
        cipher.open(blob, "patient.nir")
    assert "SECRET" not in str(caught.value)


def test_the_blind_index_is_stable_keyed_and_separated_by_context(cipher: FieldCipher, tmp_path: Path) -> None:
    nir = "184057512345678"
    index = cipher.index(nir, "patient.nir")
    assert index == cipher.index(nir, "patient.nir")
    assert len(index) == 64 and nir not in index
    assert index != cipher.index(nir, "patient.ins")
    assert index != cipher.index("284057512345678", "patient.nir")
    other_key = tmp_path / "other.key"
    FieldCipher.create_key(other_key)
    assert FieldCipher.load(other_key).index(nir, "patient.nir") != index


def test_the_key_file_is_32_random_bytes_readable_by_its_owner_only(key_path: Path) -> None:
    assert key_path.stat().st_size == 32
    assert key_path.stat().st_mode & 0o777 == 0o600


def test_an_existing_key_file_is_never_overwritten(key_path: Path) -> None:
    before = key_path.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        FieldCipher.create_key(key_path)
    assert key_path.read_bytes() == before


def test_a_missing_short_or_too_open_key_file_is_refused_with_the_reason(tmp_path: Path, key_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        FieldCipher.load(tmp_path / "missing.key")
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(16))
    short.chmod(0o600)
    with pytest.raises(KeyFileError, match="16 bytes, expected 32"):
        FieldCipher.load(short)
    key_path.chmod(0o644)
    with pytest.raises(KeyFileError, match="other users"):
        FieldCipher.load(key_path)


def test_the_cipher_does_not_show_its_key(cipher: FieldCipher) -> None:
    assert "hidden" in repr(cipher)
