"""The release repository: TUF metadata written and signed with python-tuf's metadata API.

Runs on the release engineer's machine (``comptoir release …``), never on a box. Layout of a
repository directory, served as it is over HTTPS (any static web server)::

    metadata/1.root.json, 2.root.json …      every root version (boxes walk the chain on rotation)
    metadata/root.json                       the latest root (what a new box is provisioned with)
    metadata/<n>.targets.json                targets: archives and channel pointers, with hashes
    metadata/<n>.snapshot.json               snapshot: the targets version
    metadata/timestamp.json                  timestamp: the snapshot version (short-lived)
    targets/<sha256>.comptoir-<v>.tar        archives (consistent snapshots: content-addressed)
    targets/<sha256>.channels/<c>.json       "channel c is at version v" (a signed target too)

Keys: one Ed25519 key per role in a key directory (``<role>.pem``, PKCS#8; encrypted with the
passphrase in ``COMPTOIR_RELEASE_PASSPHRASE`` when set). ``root``, ``targets`` and ``snapshot`` stay
offline (an air-gapped machine or a hardware token, brought out for a release); only ``timestamp``
lives on the publishing server, which re-signs ``timestamp.json`` every few hours
(:func:`refresh_timestamp`). Expiry: root 1 year, targets 3 months, snapshot 1 month,
timestamp 1 day. Rotation: :func:`rotate_key` (see ``docs/updates.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The public import paths re-export these names without ``__all__``, which mypy --strict refuses.
from securesystemslib.signer import CryptoSigner, SSlibKey  # type: ignore[attr-defined]
from tuf.api.metadata import (  # type: ignore[attr-defined]
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

from appliance.updates.installer import read_manifest
from appliance.updates.manifest import archive_name

ROLES = ("root", "targets", "snapshot", "timestamp")
PASSPHRASE_ENV = "COMPTOIR_RELEASE_PASSPHRASE"  # noqa: S105 - the name of a variable, not a secret
EXPIRY = {
    "root": timedelta(days=365),
    "targets": timedelta(days=90),
    "snapshot": timedelta(days=30),
    "timestamp": timedelta(days=1),
}


class RepositoryError(Exception):
    """The repository or a key cannot be used; the message says which."""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _passphrase() -> bytes | None:
    value = os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def write_key(path: Path) -> SSlibKey:
    """Create a new Ed25519 private key file (mode 0600, never overwritten); return its public key."""
    key = Ed25519PrivateKey.generate()
    phrase = _passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(phrase) if phrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    return SSlibKey.from_crypto(key.public_key())


def load_signer(path: Path) -> CryptoSigner:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=_passphrase())
    except (OSError, ValueError, TypeError) as exc:
        raise RepositoryError(f"cannot load signing key {path}: {exc}") from exc
    return CryptoSigner(key)


def generate_keys(keys_dir: Path) -> dict[str, str]:
    """One key per role in ``keys_dir``; return role -> key id."""
    return {role: write_key(keys_dir / f"{role}.pem").keyid for role in ROLES}


class Repository:
    """A TUF repository directory and the keys at hand (only the roles being signed need a key)."""

    def __init__(self, path: Path, keys_dir: Path | None = None) -> None:
        self.path = path
        self.keys_dir = keys_dir
        self.metadata_dir = path / "metadata"
        self.targets_dir = path / "targets"

    # -- reading and writing ---------------------------------------------------------------------

    def _signer(self, role: str) -> CryptoSigner:
        if self.keys_dir is None:
            raise RepositoryError(f"the {role} key is needed (--keys)")
        return load_signer(self.keys_dir / f"{role}.pem")

    def load(self, role: str) -> Metadata[Any]:
        path = self.metadata_dir / f"{role}.json"
        try:
            return Metadata.from_file(str(path))
        except Exception as exc:
            raise RepositoryError(f"cannot read {path}: {exc}") from exc

    def _write(self, md: Metadata[Any], *, signers: list[CryptoSigner]) -> bytes:
        md.signatures.clear()
        for signer in signers:
            md.sign(signer, append=True)
        data = md.to_bytes(JSONSerializer(compact=False))
        role = md.signed.type
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        names = ["timestamp.json"] if role == "timestamp" else [f"{md.signed.version}.{role}.json", f"{role}.json"]
        for name in names:
            tmp = self.metadata_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.metadata_dir / name)
        return data

    def _bump(self, md: Metadata[Any], role: str, now: datetime, expires: Mapping[str, timedelta] | None) -> None:
        md.signed.version += 1
        md.signed.expires = now + (expires or EXPIRY)[role]

    # -- operations ------------------------------------------------------------------------------

    def init(self, *, now: datetime | None = None, expires: Mapping[str, timedelta] | None = None) -> None:
        """A new repository: root v1 naming one key per role (threshold 1), empty targets."""
        if (self.metadata_dir / "1.root.json").exists():
            raise RepositoryError(f"{self.path} already holds a repository")
        now = now or _now()
        exp = {**EXPIRY, **(expires or {})}
        signers = {role: self._signer(role) for role in ROLES}
        root = Root(expires=now + exp["root"], consistent_snapshot=True)
        for role, signer in signers.items():
            root.add_key(signer.public_key, role)
        self._write(Metadata(root), signers=[signers["root"]])
        targets = Metadata(Targets(expires=now + exp["targets"]))
        self._write(targets, signers=[signers["targets"]])
        self._snapshot_and_timestamp(now, exp, targets_version=1, snapshot_version=1)

    def _snapshot_and_timestamp(
        self, now: datetime, exp: Mapping[str, timedelta], *, targets_version: int, snapshot_version: int | None = None
    ) -> None:
        if snapshot_version is None:
            snapshot = self.load("snapshot")
            self._bump(snapshot, "snapshot", now, exp)
        else:
            snapshot = Metadata(Snapshot(version=snapshot_version, expires=now + exp["snapshot"]))
        snapshot.signed.meta["targets.json"] = MetaFile(version=targets_version)
        self._write(snapshot, signers=[self._signer("snapshot")])
        self._timestamp(now, exp, snapshot.signed.version)

    def _timestamp(self, now: datetime, exp: Mapping[str, timedelta], snapshot_version: int) -> None:
        try:
            timestamp = self.load("timestamp")
            self._bump(timestamp, "timestamp", now, exp)
        except RepositoryError:
            timestamp = Metadata(Timestamp(expires=now + exp["timestamp"]))
        timestamp.signed.snapshot_meta = MetaFile(version=snapshot_version)
        self._write(timestamp, signers=[self._signer("timestamp")])

    def _add_target(self, targets: Targets, name: str, data: bytes, custom: dict[str, Any] | None = None) -> None:
        info = TargetFile.from_data(name, data, ["sha256"])
        if custom:
            info.unrecognized_fields["custom"] = custom
        targets.targets[name] = info
        digest = hashlib.sha256(data).hexdigest()
        dest = self.targets_dir / Path(name).parent / f"{digest}.{Path(name).name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)

    def publish(
        self,
        archive: Path,
        *,
        channel: str | None = None,
        now: datetime | None = None,
        expires: Mapping[str, timedelta] | None = None,
    ) -> dict[str, Any]:
        """Add a release archive (and move ``channel`` to it): targets, snapshot, timestamp re-signed."""
        manifest = read_manifest(archive)
        if archive.name != archive_name(manifest.version):
            raise RepositoryError(f"{archive.name} should be named {archive_name(manifest.version)}")
        now = now or _now()
        exp = {**EXPIRY, **(expires or {})}
        targets_md = self.load("targets")
        targets: Targets = targets_md.signed
        custom = {"comptoir": {"version": manifest.version, "schema_version": manifest.schema_version}}
        self._add_target(targets, archive.name, archive.read_bytes(), custom)
        if channel:
            pointer = json.dumps({"channel": channel, "version": manifest.version}, sort_keys=True).encode()
            self._add_target(targets, f"channels/{channel}.json", pointer)
        self._bump(targets_md, "targets", now, exp)
        self._write(targets_md, signers=[self._signer("targets")])
        self._snapshot_and_timestamp(now, exp, targets_version=targets.version)
        return {"version": manifest.version, "targets_version": targets.version, "channel": channel}

    def refresh_timestamp(self, *, now: datetime | None = None, expires: Mapping[str, timedelta] | None = None) -> int:
        """Re-sign ``timestamp.json`` (the online key's only job); return its new version."""
        now = now or _now()
        exp = {**EXPIRY, **(expires or {})}
        snapshot_version = self.load("snapshot").signed.version
        self._timestamp(now, exp, snapshot_version)
        return int(self.load("timestamp").signed.version)

    def rotate_key(self, role: str, new_key: Path, *, now: datetime | None = None) -> int:
        """Replace ``role``'s key by the one in ``new_key`` in a new root version.

        The new root is signed by the old root key *and*, when ``role`` is root, by the new one (a box
        trusts root N+1 only if N's keys and N+1's own keys sign it). The new key file then replaces
        ``<role>.pem`` in the key directory; metadata of ``role`` is re-signed with it at once (for
        ``targets``, ``snapshot``, ``timestamp``). Returns the new root version."""
        if role not in ROLES:
            raise RepositoryError(f"unknown role {role!r}")
        now = now or _now()
        old_root_signer = self._signer("root")
        new_signer = load_signer(new_key)
        root_md: Metadata[Root] = self.load("root")
        root = root_md.signed
        for keyid in list(root.roles[role].keyids):
            root.revoke_key(keyid, role)
        root.add_key(new_signer.public_key, role)
        self._bump(root_md, "root", now, None)
        signers = [old_root_signer] + ([new_signer] if role == "root" else [])
        self._write(root_md, signers=signers)
        if self.keys_dir is None:
            raise RepositoryError("the key directory is needed (--keys)")
        os.replace(new_key, self.keys_dir / f"{role}.pem")
        if role in ("targets", "snapshot", "timestamp"):
            exp = dict(EXPIRY)
            if role == "targets":
                targets_md = self.load("targets")
                self._bump(targets_md, "targets", now, exp)
                self._write(targets_md, signers=[self._signer("targets")])
                self._snapshot_and_timestamp(now, exp, targets_version=targets_md.signed.version)
            elif role == "snapshot":
                self._snapshot_and_timestamp(now, exp, targets_version=self.load("targets").signed.version)
            else:
                self.refresh_timestamp(now=now)
        return int(root.version)
