"""A throw-away certificate authority for the sandbox, the tests and the benchmarks (never shipped).

The fleet's real PKI issues one client certificate per box whose common name is
``<pharmacy>/<device>``: the broker takes that name as the MQTT user (``use_identity_as_username``)
and its ACL lets the user publish only under ``comptoir/<pharmacy>/<device>/``. This module makes the
same shapes with ``cryptography`` so TLS and the ACL are exercised for real on 127.0.0.1:

- :func:`make_ca` — a self-signed CA (ECDSA P-256, fast to make and to handshake);
- :func:`issue` — a server certificate (SAN 127.0.0.1 and localhost) or a client certificate
  (``clientAuth``) with the given common name, signed by a CA;
- :class:`Pki` — a directory holding a CA and the files issued from it, by name.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key as PEM files."""

    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "comptoir sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _write(directory: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return Issued(cert_path, key_path)


def make_ca(directory: Path, name: str = "comptoir test CA") -> Issued:
    """A self-signed CA written as ``ca.crt``/``ca.key`` in ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, "ca", cert, key)


def issue(ca: Issued, directory: Path, stem: str, common_name: str, *, server: bool = False) -> Issued:
    """A leaf certificate for ``common_name`` signed by ``ca``: a server one (SAN 127.0.0.1, localhost)
    or a client one (the MQTT user / the pharmacy's teleservice identity)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError("the sandbox CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
            ),
            critical=False,
        )
    return _write(directory, stem, builder.sign(ca_key, hashes.SHA256()), key)


class Pki:
    """A CA in ``directory`` and the certificates issued from it, cached by file stem."""

    def __init__(self, directory: Path, name: str = "comptoir test CA") -> None:
        self.directory = directory
        self.ca = make_ca(directory, name)
        self._issued: dict[str, Issued] = {}

    def server(self, stem: str = "server") -> Issued:
        """The server certificate (broker, HTTPS sandbox) for 127.0.0.1."""
        if stem not in self._issued:
            self._issued[stem] = issue(self.ca, self.directory, stem, "127.0.0.1", server=True)
        return self._issued[stem]

    def client(self, common_name: str) -> Issued:
        """A client certificate whose common name is ``common_name`` (``<pharmacy>/<device>`` for a box)."""
        stem = "client-" + common_name.replace("/", "_")
        if stem not in self._issued:
            self._issued[stem] = issue(self.ca, self.directory, stem, common_name)
        return self._issued[stem]
