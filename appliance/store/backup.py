"""Encrypted backups and a checked restore (DESIGN §5: daily encrypted backup, and a tested restore).

**Backup**: SQLite's online backup API copies a consistent snapshot while the kiosk and the sync
worker keep writing; the copy is made in memory (no clear copy of the database ever touches the
disk), compressed, encrypted with AES-256-GCM under a key derived from the key file with HKDF
(``comptoir/backup/v1``, distinct from the field key) and written atomically (temporary file, fsync,
rename, fsync of the directory) as ``comptoir-<UTC timestamp>.cbk``. A backup is as large in memory
as the database: fine for a counter's database (tens of MB), to revisit beyond that.

File layout: ``MAGIC`` (8 bytes) | nonce (12) | AES-GCM(zlib(database image)) with ``MAGIC`` as
associated data. Sealed identity fields stay sealed inside: the backup holds no identity in clear.

**Restore** decrypts and checks the image *before* touching the live database: it must decrypt
(right key file, not tampered), pass ``PRAGMA integrity_check``, not come from a newer software and
have an intact audit chain. Only then is the live database set aside (``<db>.pre-restore-<ts>``, with
its -wal/-shm) and the image renamed into place. Run it with the kiosk and sync stopped.

Without the key file a backup cannot be read: escrow the key file apart from the backup medium.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.store import audit
from appliance.store.database import StoreError, connect, open_database, transaction
from appliance.store.sealing import BACKUP_INFO, NONCE_SIZE, derive_key, fsync_directory, read_key_file

log = logging.getLogger(__name__)

MAGIC = b"CMPTBK\x00\x01"
"""First bytes of a backup file: format name and version."""
SUFFIX = ".cbk"


class BackupError(StoreError):
    """A backup could not be written, or a backup file was refused for restore (and nothing was
    changed)."""


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either nothing or the whole file."""
    tmp = path.with_name(f".{path.name}.tmp")
    _write_file(tmp, data)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def _write_file(path: Path, data: bytes) -> None:
    """Write and fsync a new private file (mode 0600: a backup or a database image)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot(db_path: Path) -> bytes:
    """A consistent image of the database file, taken with the online backup API.

    The image is marked as a rollback-journal database (header bytes 18-19), the form an in-memory or
    stand-alone copy must have; opening it with :func:`open_database` switches it back to WAL.
    """
    src = connect(db_path, readonly=True)
    mem = sqlite3.connect(":memory:")
    try:
        src.backup(mem)  # all pages in one step: one read transaction, one snapshot
        image = bytearray(mem.serialize())
    finally:
        mem.close()
        src.close()
    image[18] = image[19] = 1
    return bytes(image)


def _aead(key_path: Path) -> AESGCM:
    return AESGCM(derive_key(read_key_file(key_path), BACKUP_INFO))


def backup(db_path: Path, key_path: Path, to_dir: Path, *, now: datetime | None = None) -> Path:
    """Write an encrypted backup of ``db_path`` into ``to_dir`` and return its path.

    The backup is recorded in the audit journal of the live database afterwards (system action),
    so "when was the last backup" is answerable and auditable.
    """
    aead = _aead(key_path)  # fail on a bad key file before doing any work
    if not db_path.exists():
        raise BackupError(f"database file not found: {db_path}")
    try:
        image = snapshot(db_path)
    except sqlite3.Error as exc:
        raise BackupError(f"could not read {db_path}: {exc}") from exc
    nonce = os.urandom(NONCE_SIZE)
    blob = MAGIC + nonce + aead.encrypt(nonce, zlib.compress(image, 6), MAGIC)
    to_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = to_dir / f"comptoir-{stamp}{SUFFIX}"
    counter = 1
    while target.exists():
        target = to_dir / f"comptoir-{stamp}-{counter}{SUFFIX}"
        counter += 1
    _write_atomically(target, blob)
    db = sqlite_utils.Database(connect(db_path), execute_plugins=False)
    try:
        audit.use_key(db, audit.load_key(key_path))
        with transaction(db) as conn:
            audit.append(
                conn,
                operator_id=None,
                action="store.backup",
                subject=target.name,
                details={"bytes": len(blob)},
            )
    finally:
        db.close()
    log.info("store: backup written (%d bytes)", len(blob))
    return target


def read_backup(backup_file: Path, key_path: Path) -> bytes:
    """The checked database image inside a backup file, or :class:`BackupError`."""
    from appliance.store.migrations import MIGRATIONS

    aead = _aead(key_path)
    try:
        blob = backup_file.read_bytes()
    except OSError as exc:
        raise BackupError(f"cannot read backup {backup_file}: {exc}") from exc
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE_SIZE + 16:
        raise BackupError(f"{backup_file} is not a comptoir backup")
    nonce = blob[len(MAGIC) : len(MAGIC) + NONCE_SIZE]
    try:
        image = zlib.decompress(aead.decrypt(nonce, blob[len(MAGIC) + NONCE_SIZE :], MAGIC))
    except InvalidTag:
        raise BackupError(f"{backup_file} does not decrypt: it was altered, or made with another key file") from None
    except zlib.error as exc:
        raise BackupError(f"{backup_file} is corrupt after decryption: {exc}") from exc
    mem = sqlite3.connect(":memory:", isolation_level=None)
    try:
        try:
            mem.deserialize(image)
            result = [row[0] for row in mem.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{backup_file} does not hold a valid database: {exc}") from exc
        if result != ["ok"]:
            raise BackupError(f"{backup_file} fails the integrity check: {'; '.join(result[:5])}")
        version = int(mem.execute("PRAGMA user_version").fetchone()[0])
        if version > len(MIGRATIONS):
            raise BackupError(f"{backup_file} comes from a newer comptoir (schema {version} > {len(MIGRATIONS)})")
        report = audit.verify(sqlite_utils.Database(mem, execute_plugins=False), key=audit.load_key(key_path))
        if not report.ok:
            raise BackupError(f"{backup_file} has a broken audit journal: {'; '.join(report.problems)}")
    finally:
        mem.close()
    return image


def _set_aside(db_path: Path, stamp: str) -> Path | None:
    """Move the live database (and its WAL files) aside, after folding the WAL into it when possible.

    Refuses when another process is using it: replacing a file under an open connection corrupts
    what that process writes next.
    """
    if not db_path.exists():
        return None
    try:
        conn = sqlite3.connect(str(db_path), timeout=2.0, isolation_level=None)
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(f"{db_path} is in use; stop the kiosk and sync before restoring") from exc
        busy = 0  # unreadable database (why one restores): set it aside as it is
    except sqlite3.DatabaseError:
        busy = 0
    if busy:
        raise BackupError(f"{db_path} is in use; stop the kiosk and sync before restoring")
    kept = db_path.with_name(f"{db_path.name}.pre-restore-{stamp}")
    for suffix in ("-wal", "-shm", ""):
        src = Path(str(db_path) + suffix)
        if src.exists():
            os.replace(src, Path(str(kept) + suffix))
    return kept


def restore(backup_file: Path, key_path: Path, db_path: Path) -> None:
    """Replace ``db_path`` with the database in ``backup_file``, after checking it (see module docstring).

    On refusal (:class:`BackupError`) nothing is changed. The replaced database is kept next to it
    as ``<name>.pre-restore-<timestamp>``. The restored database is migrated forward if it is older
    than the software, and the restore is recorded in its audit journal.
    """
    image = read_backup(backup_file, key_path)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = db_path.with_name(f".{db_path.name}.restore.tmp")
    _write_file(tmp, image)
    try:
        kept = _set_aside(db_path, stamp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, db_path)
    fsync_directory(db_path.parent)
    try:
        db = open_database(db_path, key_file=key_path)
    except StoreError as exc:
        raise BackupError(f"restored {db_path}, but it could not be brought up to date: {exc}") from exc
    try:
        with transaction(db) as conn:
            audit.append(
                conn,
                operator_id=None,
                action="store.restored",
                subject=backup_file.name,
                details={"previous_kept_as": kept.name if kept else None},
            )
    finally:
        db.close()
    log.info("store: database restored from a backup")
