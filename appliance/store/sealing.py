"""Patient identity fields encrypted at rest, with the key outside the database (DESIGN §5).

A stolen database file, or a backup copied from a USB stick, must not reveal who the patients are.
Identity columns (names, birth date, NIR, INS) are stored as AES-256-GCM blobs; lookups by NIR or
INS use a *blind index* (a keyed HMAC of the value) so the clear value is never stored.

One 32-byte key file (mode 0600, outside the database directory ideally on another partition) is the
root; HKDF-SHA256 derives independent sub-keys from it, one per purpose, so that the field key, the
index key and the backup key never coincide and a leak of one derived key does not give the others:

- ``comptoir/field-seal/v1``   AES-GCM key for :meth:`FieldCipher.seal`
- ``comptoir/blind-index/v1``  HMAC-SHA256 key for :meth:`FieldCipher.index`
- ``comptoir/backup/v1``       AES-GCM key for :mod:`appliance.store.backup`
- ``comptoir/audit-chain/v1``  HMAC-SHA256 key of the audit journal's chain (:mod:`appliance.store.audit`)

Losing the key file loses every sealed field *and* every backup: it must be escrowed (printed or
copied to the titulaire's safe) when the box is installed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.store.database import StoreError

KEY_SIZE = 32
"""Bytes in the key file (256 bits)."""
NONCE_SIZE = 12
"""96-bit random nonces, the size GCM is designed for. With random nonces one key stays safe far beyond
the number of fields a pharmacy will ever seal (NIST's 2^32 messages per key)."""
SEAL_VERSION = 1
"""First byte of every sealed blob, so the format (or the key) can change later without guessing."""

_FIELD_INFO = b"comptoir/field-seal/v1"
_INDEX_INFO = b"comptoir/blind-index/v1"
BACKUP_INFO = b"comptoir/backup/v1"
JOURNAL_INFO = b"comptoir/audit-chain/v1"


class SealError(StoreError):
    """A sealed field could not be opened: tampered, truncated, swapped from another column, or
    sealed with another key. Never carries the field's content."""


class KeyFileError(SealError):
    """The key file is missing, the wrong size, or readable by other users."""


def derive_key(root: bytes, info: bytes) -> bytes:
    """A 32-byte sub-key of the root key for one purpose (HKDF-SHA256, no salt: the root is uniform)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=info).derive(root)


def fsync_directory(directory: Path) -> None:
    """Make a file's creation or rename durable (its directory entry is data too)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_key_file(path: Path) -> None:
    """Write 32 random bytes to a new file readable by its owner only; never overwrite a key.

    Overwriting would make every sealed field and backup unreadable, so an existing file is an error.
    The file is created with O_EXCL and mode 0600 from the start (no window where it is world-readable).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    try:
        os.fchmod(fd, 0o600)  # the umask cannot have widened it, but be explicit
        os.write(fd, os.urandom(KEY_SIZE))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_directory(path.parent)


def read_key_file(path: Path) -> bytes:
    """The root key, after checking that the file exists, has the right size and is private (0600)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} not found; create it once with FieldCipher.create_key (and escrow it)"
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise KeyFileError(f"key file {path} is not a regular file")
    if info.st_mode & 0o077:
        raise KeyFileError(
            f"key file {path} is accessible by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            "run: chmod 600 " + str(path)
        )
    if info.st_size != KEY_SIZE:
        raise KeyFileError(f"key file {path} has {info.st_size} bytes, expected {KEY_SIZE}")
    data = path.read_bytes()
    if len(data) != KEY_SIZE:
        raise KeyFileError(f"key file {path} has {len(data)} bytes, expected {KEY_SIZE}")
    return data


def _check_context(context: str) -> bytes:
    if not context:
        raise ValueError("a context naming the column (e.g. 'patient.birth_name') is required")
    if "\x00" in context:
        raise ValueError("a context cannot contain NUL")
    return context.encode("utf-8")


class FieldCipher:
    """Seals and opens identity fields, and computes blind indexes, with sub-keys of one key file."""

    __slots__ = ("_aead", "_index_key", "_journal_key")

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) != KEY_SIZE:
            raise KeyFileError(f"root key must be {KEY_SIZE} bytes, got {len(root_key)}")
        self._aead = AESGCM(derive_key(root_key, _FIELD_INFO))
        self._index_key = derive_key(root_key, _INDEX_INFO)
        self._journal_key = derive_key(root_key, JOURNAL_INFO)

    def journal_key(self) -> bytes:
        """The audit journal's chain key (HKDF sub-key ``comptoir/audit-chain/v1`` of the same root), for
        :func:`appliance.store.audit.use_key`. Never log it."""
        return self._journal_key

    def __repr__(self) -> str:
        return "FieldCipher(<key hidden>)"

    @staticmethod
    def create_key(path: Path) -> None:
        """Create the key file (32 random bytes, mode 0600); refuses to overwrite an existing one."""
        create_key_file(path)

    @classmethod
    def load(cls, path: Path) -> FieldCipher:
        """A cipher from the key file; :class:`KeyFileError` if it is missing, mis-sized or too open."""
        return cls(read_key_file(path))

    @staticmethod
    def _aad(context: bytes) -> bytes:
        return bytes([SEAL_VERSION]) + b"comptoir.seal\x00" + context

    def seal(self, plaintext: str, context: str) -> bytes:
        """Encrypt one field value. ``context`` names the column and is authenticated (not stored):
        a blob copied into another column, or another table, will not open there.

        Layout: version (1 byte) | nonce (12) | ciphertext + 16-byte tag.
        """
        ctx = _check_context(context)
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), self._aad(ctx))
        return bytes([SEAL_VERSION]) + nonce + sealed

    def open(self, blob: bytes, context: str) -> str:
        """Decrypt a blob sealed for ``context``; :class:`SealError` if anything does not match."""
        ctx = _check_context(context)
        if len(blob) < 1 + NONCE_SIZE + 16:
            raise SealError(f"sealed value for {context} is truncated ({len(blob)} bytes)")
        if blob[0] != SEAL_VERSION:
            raise SealError(f"sealed value for {context} has unknown format version {blob[0]}")
        nonce, sealed = blob[1 : 1 + NONCE_SIZE], blob[1 + NONCE_SIZE :]
        try:
            plaintext = self._aead.decrypt(nonce, sealed, self._aad(ctx))
        except InvalidTag:
            raise SealError(
                f"sealed value for {context} does not open: tampered, moved from another column, "
                "or sealed with another key"
            ) from None
        return plaintext.decode("utf-8")

    def index(self, value: str, context: str) -> str:
        """A blind index: hex HMAC-SHA256 of ``value`` under the index key, separated by ``context``.

        Equal values give equal indexes within one context (so ``WHERE nir_index = ?`` finds a
        patient), different ones across contexts (a NIR index says nothing about an INS index). The
        value is used as given: callers normalise it first (NIR/INS without spaces, upper case).
        Without the key file the index cannot be recomputed, so a 15-digit NIR cannot be brute-forced
        from the database alone.
        """
        ctx = _check_context(context)
        message = ctx + b"\x00" + value.encode("utf-8")
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()
