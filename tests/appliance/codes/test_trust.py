"""The 2D-DOC trust list: which public keys may sign, and how a directory of PEM files becomes one."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from appliance.codes.trust import TrustList, TrustListError
from sandbox.twoddoc_issuer import SANDBOX_CERTIFICATES, TEST_CA_ID, write_trust_dir


def _pem(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


P256 = ec.derive_private_key(0x1234_5678_9ABC, ec.SECP256R1())


def test_an_empty_trust_list_knows_no_key() -> None:
    trust = TrustList()
    assert len(trust) == 0
    assert trust.get("FR00", "0001") is None


def test_a_key_added_under_ca_and_certificate_ids_is_found_under_exactly_those_ids() -> None:
    trust = TrustList()
    trust.add("FR03", "AB04", P256.public_key())
    assert len(trust) == 1
    assert trust.get("FR03", "AB04") == P256.public_key()
    assert ("FR03", "AB04") in trust
    assert trust.get("FR03", "AB05") is None
    assert trust.get("FR04", "AB04") is None
    assert list(trust) == [("FR03", "AB04")]


def test_adding_the_same_ids_again_replaces_the_key() -> None:
    other = ec.derive_private_key(0xFEED, ec.SECP256R1()).public_key()
    trust = TrustList()
    trust.add("FR03", "AB04", P256.public_key())
    trust.add("FR03", "AB04", other)
    assert len(trust) == 1
    assert trust.get("FR03", "AB04") == other


@pytest.mark.parametrize(("ca_id", "cert_id"), [("FR0", "0001"), ("fr00", "0001"), ("FR00", "00 1"), ("FR00", "")])
def test_ids_that_are_not_four_capital_letters_or_digits_are_refused(ca_id: str, cert_id: str) -> None:
    with pytest.raises(TrustListError, match="is not 4 capital letters or digits"):
        TrustList().add(ca_id, cert_id, P256.public_key())


def test_a_key_that_is_not_an_elliptic_curve_key_is_refused() -> None:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(TrustListError, match="not an elliptic-curve"):
        TrustList().add("FR00", "0001", key)  # type: ignore[arg-type]


def test_a_curve_that_2d_doc_does_not_use_is_refused() -> None:
    key = ec.derive_private_key(0xBEEF, ec.SECP256K1()).public_key()
    with pytest.raises(TrustListError, match="curve secp256k1 is not one of P-256, P-384, P-521"):
        TrustList().add("FR00", "0001", key)


def test_the_sandbox_trust_directory_loads_one_key_per_pem_file(tmp_path: Path) -> None:
    written = write_trust_dir(tmp_path)
    assert sorted(p.name for p in written) == ["FR00-TS01.pem", "FR00-TS02.pem", "FR00-TS03.pem"]
    trust = TrustList.from_directory(tmp_path)
    assert len(trust) == 3
    for cert_id, cert in SANDBOX_CERTIFICATES.items():
        assert trust.get(TEST_CA_ID, cert_id) == cert.public_key


def test_a_directory_may_hold_certificates_as_the_ants_publishes_them(tmp_path: Path) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test 2D-DOC signer")])
    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(P256.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(P256, hashes.SHA256())
    )
    (tmp_path / "FR03-AB04.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    trust = TrustList.from_directory(tmp_path)
    assert trust.get("FR03", "AB04") == P256.public_key()


def test_hidden_files_and_sub_directories_are_skipped(tmp_path: Path) -> None:
    (tmp_path / ".gitkeep").write_text("")
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "whatever.txt").write_text("old keys")
    (tmp_path / "FR00-0001.pem").write_bytes(_pem(P256.public_key()))
    assert len(TrustList.from_directory(tmp_path)) == 1


def test_an_empty_directory_gives_an_empty_trust_list(tmp_path: Path) -> None:
    assert len(TrustList.from_directory(tmp_path)) == 0


@pytest.mark.parametrize("name", ["FR00_0001.pem", "fr00-0001.pem", "FR00-001.pem", "FR00-0001.PEM", "README.txt"])
def test_a_badly_named_file_is_refused_and_named(tmp_path: Path, name: str) -> None:
    (tmp_path / "FR00-0001.pem").write_bytes(_pem(P256.public_key()))
    (tmp_path / name).write_bytes(_pem(P256.public_key()))
    with pytest.raises(TrustListError, match=r"is not named <CA id>-<certificate id>\.pem") as caught:
        TrustList.from_directory(tmp_path)
    assert name in str(caught.value)


def test_a_file_that_is_not_pem_is_refused_and_named(tmp_path: Path) -> None:
    (tmp_path / "FR00-0002.pem").write_text("not a key\n")
    with pytest.raises(TrustListError, match=r"FR00-0002\.pem does not hold a PEM public key or certificate"):
        TrustList.from_directory(tmp_path)


def test_a_file_that_cannot_be_read_is_refused_and_named(tmp_path: Path) -> None:
    (tmp_path / "FR00-0003.pem").symlink_to(tmp_path / "gone.pem")
    with pytest.raises(TrustListError, match=r"cannot read trust list file .*FR00-0003\.pem"):
        TrustList.from_directory(tmp_path)


def test_a_non_ec_key_file_is_refused_and_named(tmp_path: Path) -> None:
    (tmp_path / "FR00-0004.pem").write_bytes(_pem(ed25519.Ed25519PrivateKey.generate().public_key()))
    with pytest.raises(TrustListError, match=r"FR00-0004\.pem: .* is not an elliptic-curve"):
        TrustList.from_directory(tmp_path)


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TrustListError, match="does not exist or is not a directory"):
        TrustList.from_directory(tmp_path / "nowhere")
