"""The 2D-DOC trust list: the public keys that may sign the 2D-DOCs read at the counter.

A 2D-DOC header names the certification authority (CA id, 4 characters, e.g. ``FR00``) and the
certificate (4 characters, e.g. ``0001``) whose key signed it. The trust list maps that pair to an
elliptic-curve public key on P-256, P-384 or P-521, the curves the ANTS specification allows.

On disk a trust list is a directory of PEM files named ``<CA id>-<certificate id>.pem`` (for example
``FR00-0001.pem``), each holding a public key (``BEGIN PUBLIC KEY``) or an X.509 certificate
(``BEGIN CERTIFICATE``, as the ANTS publishes them) whose key is used. Hidden files (``.gitkeep``)
and sub-directories are skipped; any other file that is badly named, unreadable, not PEM, or not an
EC key on a supported curve stops the loading with a :class:`TrustListError` naming the file: a
trust list is configuration, and half-loading it would silently turn valid documents into
"unknown key".
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SUPPORTED_CURVES: frozenset[str] = frozenset({"secp256r1", "secp384r1", "secp521r1"})
"""Curve names (as ``cryptography`` spells them) of P-256, P-384 and P-521."""

_ID = re.compile(r"[A-Z0-9]{4}")
_FILE_NAME = re.compile(r"(?P<ca>[A-Z0-9]{4})-(?P<cert>[A-Z0-9]{4})\.pem")


class TrustListError(ValueError):
    """A trust list entry or file that cannot be used; the message names the entry or the file."""


class TrustList:
    """Public keys keyed by ``(CA id, certificate id)``."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], ec.EllipticCurvePublicKey] = {}

    def add(self, ca_id: str, cert_id: str, key: ec.EllipticCurvePublicKey) -> None:
        """Trust ``key`` for documents signed under ``ca_id``/``cert_id``.

        Raises :class:`TrustListError` for ids that are not 4 capital letters or digits, or for a key
        that is not an EC public key on P-256, P-384 or P-521. Adding the same pair again replaces
        the key.
        """
        for label, value in (("CA id", ca_id), ("certificate id", cert_id)):
            if not isinstance(value, str) or _ID.fullmatch(value) is None:
                raise TrustListError(f"{label} {value!r} is not 4 capital letters or digits")
        self._keys[(ca_id, cert_id)] = _checked_key(key, f"key for {ca_id}/{cert_id}")

    def update(self, other: TrustList) -> None:
        """Trust every key of ``other`` too (several trust directories make one list)."""
        self._keys.update(other._keys)

    def get(self, ca_id: str, cert_id: str) -> ec.EllipticCurvePublicKey | None:
        """The key trusted for this CA and certificate, or None."""
        return self._keys.get((ca_id, cert_id))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, ids: object) -> bool:
        return ids in self._keys

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """The ``(CA id, certificate id)`` pairs, sorted."""
        return iter(sorted(self._keys))

    def __repr__(self) -> str:
        names = ", ".join(f"{ca}/{cert}" for ca, cert in self)
        return f"TrustList([{names}])"

    @classmethod
    def from_directory(cls, path: Path | str) -> TrustList:
        """Load every ``<CA id>-<certificate id>.pem`` file of a directory (see the module doc)."""
        directory = Path(path)
        if not directory.is_dir():
            raise TrustListError(f"trust list directory {directory} does not exist or is not a directory")
        trust = cls()
        try:
            entries = sorted(directory.iterdir())
        except OSError as exc:
            raise TrustListError(f"cannot list trust list directory {directory}: {exc.strerror}") from exc
        for entry in entries:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            match = _FILE_NAME.fullmatch(entry.name)
            if match is None:
                raise TrustListError(
                    f"trust list file {entry} is not named <CA id>-<certificate id>.pem "
                    "(4 capital letters or digits each, e.g. FR00-0001.pem)"
                )
            trust._keys[(match["ca"], match["cert"])] = load_pem_key(entry)
        return trust


def load_pem_key(path: Path) -> ec.EllipticCurvePublicKey:
    """The EC public key of a PEM file holding a public key or an X.509 certificate."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TrustListError(f"cannot read trust list file {path}: {exc.strerror}") from exc
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise TrustListError(f"trust list file {path} does not hold a PEM public key or certificate: {exc}") from exc
    except Exception as exc:  # unsupported algorithms surface as cryptography's own exceptions
        raise TrustListError(f"trust list file {path} holds a key that cannot be used: {exc}") from exc
    return _checked_key(key, f"trust list file {path}")


def _checked_key(key: object, where: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        kind = type(key).__name__
        raise TrustListError(f"{where}: {kind} is not an elliptic-curve (ECDSA) public key")
    if key.curve.name not in SUPPORTED_CURVES:
        raise TrustListError(f"{where}: curve {key.curve.name} is not one of P-256, P-384, P-521 used by 2D-DOC")
    return key
