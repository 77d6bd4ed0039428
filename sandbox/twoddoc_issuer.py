"""The sandbox's test 2D-DOC issuer: fixed test keys, signed C40 payloads, and their trust directory.

Test keys (never to be trusted outside the sandbox; they are derived from fixed numbers in this file):

=========  ==============  =====  =======================
CA id      certificate id  curve  hash
=========  ==============  =====  =======================
``FR00``   ``TS01``        P-256  SHA-256 (the default)
``FR00``   ``TS02``        P-384  SHA-384
``FR00``   ``TS03``        P-521  SHA-512
=========  ==============  =====  =======================

``FR00`` is the CA id the ANTS uses on its specimen documents; the ``TS`` certificate ids are ours and
cannot be mistaken for an ANTS certificate (theirs are 4 hexadecimal digits such as ``0001``).

Signatures are deterministic (RFC 6979), so the same inputs always give the same bytes, and the same
DataMatrix image. This module imports only the core and ``cryptography``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from appliance.codes.trust import TrustList
from appliance.codes.twoddoc import (
    ANTS_PERIMETER,
    GS,
    HEADER_LENGTHS,
    MARKER,
    RS,
    US,
    data_identifiers,
    encode_date,
)

TEST_CA_ID = "FR00"
DEFAULT_CERT_ID = "TS01"
DEFAULT_COUNTRY = "FR"

_FIELD_ID = re.compile(r"[A-Z0-9]{2}")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


@dataclass(frozen=True, slots=True)
class SandboxCertificate:
    """One sandbox signing key and the ids a 2D-DOC header names it by."""

    ca_id: str
    cert_id: str
    curve_name: str
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()


def _certificate(cert_id: str, curve: ec.EllipticCurve, label: str, secret: int) -> SandboxCertificate:
    return SandboxCertificate(TEST_CA_ID, cert_id, label, ec.derive_private_key(secret, curve))


SANDBOX_CERTIFICATES: dict[str, SandboxCertificate] = {
    "TS01": _certificate(
        "TS01",
        ec.SECP256R1(),
        "P-256",
        0x2D0C_5A4D_B0C5_0001_C0A7_7015_2D0C_5A4D_B0C5_0001_C0A7_7015_2D0C_0256,
    ),
    "TS02": _certificate(
        "TS02",
        ec.SECP384R1(),
        "P-384",
        0x2D0C_5A4D_B0C5_0002_C0A7_7015_2D0C_5A4D_B0C5_0002_C0A7_7015_2D0C_0384,
    ),
    "TS03": _certificate(
        "TS03",
        ec.SECP521R1(),
        "P-521",
        0x2D0C_5A4D_B0C5_0003_C0A7_7015_2D0C_5A4D_B0C5_0003_C0A7_7015_2D0C_0521,
    ),
}
"""The sandbox keys by certificate id, all under :data:`TEST_CA_ID`."""


def sandbox_certificate(cert_id: str = DEFAULT_CERT_ID) -> SandboxCertificate:
    """The sandbox key named ``cert_id`` (``TS01``, ``TS02`` or ``TS03``)."""
    try:
        return SANDBOX_CERTIFICATES[cert_id]
    except KeyError:
        known = ", ".join(SANDBOX_CERTIFICATES)
        raise ValueError(f"no sandbox 2D-DOC key {cert_id!r} (known: {known})") from None


def trust_list() -> TrustList:
    """A trust list holding the public keys of every sandbox certificate."""
    trust = TrustList()
    for cert in SANDBOX_CERTIFICATES.values():
        trust.add(cert.ca_id, cert.cert_id, cert.public_key)
    return trust


def write_trust_dir(path: Path | str) -> list[Path]:
    """Write the sandbox public keys as ``<CA>-<CERT>.pem`` files into ``path`` (created if needed)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for cert in SANDBOX_CERTIFICATES.values():
        target = directory / f"{cert.ca_id}-{cert.cert_id}.pem"
        target.write_bytes(
            cert.public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        written.append(target)
    return written


def encode_header(
    *,
    version: str,
    ca_id: str,
    cert_id: str,
    issue_date: date | None,
    signature_date: date | None,
    doc_type: str,
    perimeter: str | None = None,
    country: str | None = None,
) -> str:
    """The C40 header; perimeter (03, 04) and country (04) default to ``01`` and ``FR``."""
    if version not in HEADER_LENGTHS:
        raise ValueError(f"2D-DOC version {version!r} cannot be issued (02, 03, 04)")
    if version == "02" and (perimeter is not None or country is not None):
        raise ValueError("a version 02 2D-DOC has neither perimeter nor country")
    if version == "03" and country is not None:
        raise ValueError("a version 03 2D-DOC has no country")
    header = MARKER + version + ca_id + cert_id + encode_date(issue_date) + encode_date(signature_date)
    header += doc_type
    if version in ("03", "04"):
        header += perimeter if perimeter is not None else ANTS_PERIMETER
    if version == "04":
        header += country if country is not None else DEFAULT_COUNTRY
    if len(header) != HEADER_LENGTHS[version]:
        raise ValueError(f"2D-DOC header {header!r} is not {HEADER_LENGTHS[version]} characters long")
    return header


def encode_fields(
    fields: Sequence[tuple[str, str]],
    *,
    perimeter: str | None = ANTS_PERIMETER,
    truncated: Collection[str] = (),
) -> str:
    """Data fields in the C40 message format, with the terminators the specification asks for.

    Fixed-length values get no terminator; a variable-length value gets <GS> unless it is at its
    maximum length or is the last field; a value whose id is in ``truncated`` ends with <RS> instead.
    Raises ValueError for values that the identifier table does not allow.
    """
    table = data_identifiers(perimeter)
    parts = []
    for index, (ident, value) in enumerate(fields):
        if _FIELD_ID.fullmatch(ident) is None:
            raise ValueError(f"data identifier {ident!r} is not 2 capital letters or digits")
        if any(not " " <= char <= "~" for char in value):
            raise ValueError(f"value of field {ident} is not printable ASCII: {value!r}")
        spec = table.get(ident)
        last = index == len(fields) - 1
        cut = ident in truncated
        if spec is not None and spec.fixed:
            if cut:
                raise ValueError(f"field {ident} has a fixed length and cannot be truncated")
            if len(value) != spec.min_length:
                raise ValueError(f"field {ident} needs exactly {spec.min_length} characters, not {len(value)}")
            parts.append(ident + value)
            continue
        if spec is not None and spec.max_length is not None and len(value) > spec.max_length:
            raise ValueError(f"field {ident} holds at most {spec.max_length} characters, not {len(value)}")
        if spec is not None and not cut and len(value) < spec.min_length:
            raise ValueError(f"field {ident} needs at least {spec.min_length} characters, not {len(value)}")
        at_max = spec is not None and spec.max_length is not None and len(value) == spec.max_length
        if cut:
            terminator = RS
        elif at_max or last:
            terminator = ""
        else:
            terminator = GS
        parts.append(ident + value + terminator)
    return "".join(parts)


def sign(signed: bytes, key: ec.EllipticCurvePrivateKey) -> str:
    """Base32 (no padding) of the raw r||s ECDSA signature of ``signed``, hash chosen by the curve."""
    hash_type = _HASHES[key.curve.name]
    der = key.sign(signed, ec.ECDSA(hash_type(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return base64.b32encode(raw).decode("ascii").rstrip("=")


def issue_2d_doc(
    fields: Sequence[tuple[str, str]],
    *,
    doc_type: str,
    version: str = "04",
    cert_id: str = DEFAULT_CERT_ID,
    ca_id: str = TEST_CA_ID,
    issue_date: date | None = None,
    signature_date: date | None = None,
    perimeter: str | None = None,
    country: str | None = None,
    truncated: Collection[str] = (),
    annex: Sequence[tuple[str, str]] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> bytes:
    """A signed C40 2D-DOC: header, fields, <US>, signature, and for version 04 an optional annex.

    ``key`` defaults to the sandbox key of ``cert_id``; pass another key to sign as someone else
    (the header still names ``ca_id``/``cert_id``).
    """
    if annex and version != "04":
        raise ValueError("only a version 04 2D-DOC has an annex")
    header = encode_header(
        version=version,
        ca_id=ca_id,
        cert_id=cert_id,
        issue_date=issue_date,
        signature_date=signature_date,
        doc_type=doc_type,
        perimeter=perimeter,
        country=country,
    )
    table_perimeter = ANTS_PERIMETER if version == "02" else (perimeter or ANTS_PERIMETER)
    signed = (header + encode_fields(fields, perimeter=table_perimeter, truncated=truncated)).encode("ascii")
    signer = key if key is not None else sandbox_certificate(cert_id).private_key
    payload = signed + US.encode("ascii") + sign(signed, signer).encode("ascii")
    if annex:
        payload += (GS + encode_fields(annex, perimeter=table_perimeter)).encode("ascii")
    return payload
