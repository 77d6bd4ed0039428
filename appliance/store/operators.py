"""Operators and their personal PINs (DESIGN §5: personal access codes, no shared account).

Each person at the counter has their own name and a 4-to-8-digit PIN, so the audit journal says who
validated a dispensation. PINs are stored as memory-hard KDF hashes, never in clear:

- **Argon2id** (cryptography's implementation, when the installed build has it): the OWASP Password
  Storage Cheat Sheet's first setting, 19 MiB of memory, 2 passes, 1 lane, 16-byte random salt, 32-byte
  output (20 ms on a desktop core). A PIN is checked at every validation, on the answer's path: RFC 9106's
  64 MiB, 3 passes, 4 lanes (the default until issue 15) cost 140 ms here and up to a second on a
  Raspberry Pi 4 each time, and a 64 MiB jump of the kiosk's memory, for no protection that matters
  (below: the lock-out, not the KDF, is what protects a PIN);
- otherwise **scrypt**: N = 2^15, r = 8, p = 1 (32 MiB), same salt and output sizes.

The algorithm and its parameters are stored with each hash (``argon2id$m=19456,t=2,p=1$salt$hash``),
so they can be raised later: a successful login with older parameters re-hashes the PIN with the
current ones. A 4-digit PIN has only 10 000 values, so the KDF alone cannot protect a stolen database
against an offline search; what protects the PIN at the counter is the lock-out, which grows with the
failures so that nobody can walk through the PINs at the screen:

- the first :data:`MAX_FAILED_ATTEMPTS` - 1 consecutive wrong PINs (4) only count down;
- the :data:`MAX_FAILED_ATTEMPTS`-th (5th) locks the operator for :data:`LOCKOUT_BASE_SECONDS` (1 min);
- the count is *not* reset when a lock ends, so every further wrong PIN locks again, each time for
  double the previous lock (``LOCKOUT_BASE_SECONDS * 2 ** (failures - MAX_FAILED_ATTEMPTS)``: 1, 2, 4,
  8 … min), up to :data:`LOCKOUT_MAX_SECONDS` (24 h) from the 16th on;
- while locked, no PIN is even checked; only a success, a new PIN (:func:`set_pin`) or an explicit
  :func:`clear_lock` resets the count.

The walk, for someone trying a new PIN the second each lock ends: 5 PINs at once, the 15th after
17 h 03 min, so **15 PINs in the first day**, then one a day: **21 in a week**, 44 in 30 days,
**379 in a year**; the 10 000 PINs of 4 digits would take 27 years (13.7 on average to hit the right
one), and one chance in 26 of finding a 4-digit PIN within a year (one in 2 600 for 6 digits). The old
rule (5 tries per 15 min, then a fresh set) allowed 480 a day: all 10 000 in three weeks. These figures
hold while nobody resets the count: a success or :func:`clear_lock` gives the free attempts back, so
an attacker who can wait for the real operator to log in between their tries gets up to 15 more each
time — the ``operator.auth.failed`` and ``operator.locked`` rows of the journal are where that shows.

Because the lock can reach a day, a patient at the patient-facing screen must not be able to lock a
pharmacist out for good: :func:`clear_lock` is called when the same person proves who they are
otherwise (their CPS card and its PIN) or by a colleague, and ``comptoir operator unlock NAME`` does it
from the command line. Every attempt — success, failure, refusal while locked, the lock itself, the
unlock — is written to the audit journal in the same transaction as the counter change.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import sqlite_utils
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from appliance.domain import Role
from appliance.store import audit
from appliance.store.database import StoreError, transaction

MAX_FAILED_ATTEMPTS = 5
"""Consecutive wrong PINs that lock an operator the first time; every wrong PIN after it locks again."""
LOCKOUT_BASE_SECONDS = 60
"""How long the first lock lasts; each further wrong PIN doubles it (see :func:`lockout_seconds`)."""
LOCKOUT_MAX_SECONDS = 24 * 60 * 60
"""The longest a lock lasts, however many wrong PINs came before."""

_PIN_RE = re.compile(r"[0-9]{4,8}")
_RPPS_RE = re.compile(r"[0-9]{11}")
_SALT_SIZE = 16
_HASH_SIZE = 32


@dataclass(frozen=True, slots=True)
class Argon2idParams:
    """Argon2id cost: memory in KiB, passes, lanes (OWASP's m=19 MiB, t=2, p=1; see the module's text)."""

    memory_kib: int = 19 * 1024
    iterations: int = 2
    lanes: int = 1

    def encode(self) -> str:
        return f"argon2id$m={self.memory_kib},t={self.iterations},p={self.lanes}"


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost: N = 2**log2_n, block size r, parallelism p (32 MiB with the defaults)."""

    log2_n: int = 15
    r: int = 8
    p: int = 1

    def encode(self) -> str:
        return f"scrypt$ln={self.log2_n},r={self.r},p={self.p}"


PinKdfParams = Argon2idParams | ScryptParams

PIN_KDF: PinKdfParams | None = None
"""Parameters for new PIN hashes; None means the best available (Argon2id, else scrypt) with the
defaults above. Tests lower it to keep the suite fast; production leaves it alone."""


class AuthenticationError(StoreError):
    """Base of the refusals of :func:`authenticate`."""


class UnknownOperator(AuthenticationError):
    """No active operator with that id."""


class PinRejected(AuthenticationError):
    """Wrong PIN; ``attempts_left``: how many more wrong PINs before one locks the operator (1 means the
    next wrong PIN locks). Raised only for the free failures; once past them there are none left and
    every wrong PIN raises :class:`OperatorLocked` instead."""

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong PIN; {attempts_left} attempt(s) left before the account is locked")
        self.attempts_left = attempts_left


class OperatorLocked(AuthenticationError):
    """Too many wrong PINs; no attempt is checked until ``until`` (epoch seconds)."""

    def __init__(self, until: float) -> None:
        when = datetime.fromtimestamp(until).strftime("%H:%M")
        super().__init__(f"too many wrong PINs: locked until {when}")
        self.until = until


class InvalidPin(ValueError):
    """A new PIN that is not 4 to 8 digits."""


@dataclass(frozen=True, slots=True)
class Operator:
    """A person at the counter, as the workflow needs them (no secret in it)."""

    id: int
    name: str
    role: Role


@cache
def argon2id_available() -> bool:
    """Whether the installed cryptography can compute Argon2id (it needs cryptography >= 44 and an
    OpenSSL/backend that provides it)."""
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\x00" * 8, length=16, iterations=1, lanes=1, memory_cost=8).derive(b"probe")
    except (ImportError, UnsupportedAlgorithm):
        return False
    return True


def current_pin_kdf() -> PinKdfParams:
    """The parameters new hashes get."""
    if PIN_KDF is not None:
        return PIN_KDF
    return Argon2idParams() if argon2id_available() else ScryptParams()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(params: PinKdfParams, pin: str, salt: bytes) -> bytes:
    secret = pin.encode("utf-8")
    if isinstance(params, Argon2idParams):
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt,
            length=_HASH_SIZE,
            iterations=params.iterations,
            lanes=params.lanes,
            memory_cost=params.memory_kib,
        ).derive(secret)
    return Scrypt(salt=salt, length=_HASH_SIZE, n=2**params.log2_n, r=params.r, p=params.p).derive(secret)


def hash_pin(pin: str, params: PinKdfParams | None = None) -> str:
    """An encoded hash ``<algorithm>$<params>$<salt>$<hash>`` of ``pin`` with a fresh random salt, so
    two operators choosing the same PIN get different hashes."""
    params = params or current_pin_kdf()
    salt = os.urandom(_SALT_SIZE)
    return f"{params.encode()}${_b64(salt)}${_b64(_derive(params, pin, salt))}"


def _parse(encoded: str) -> tuple[PinKdfParams, bytes, bytes]:
    try:
        algorithm, settings, salt, digest = encoded.split("$")
        values = {k: int(v) for k, v in (item.split("=") for item in settings.split(","))}
        params: PinKdfParams
        if algorithm == "argon2id":
            params = Argon2idParams(values["m"], values["t"], values["p"])
        elif algorithm == "scrypt":
            params = ScryptParams(values["ln"], values["r"], values["p"])
        else:
            raise ValueError(algorithm)
        return params, _unb64(salt), _unb64(digest)
    except (ValueError, KeyError) as exc:
        raise StoreError("stored PIN hash is malformed") from exc


def verify_pin(pin: str, encoded: str) -> bool:
    """Whether ``pin`` matches the encoded hash (constant-time comparison)."""
    params, salt, digest = _parse(encoded)
    if not _PIN_RE.fullmatch(pin):
        return False
    return hmac.compare_digest(_derive(params, pin, salt), digest)


def needs_rehash(encoded: str) -> bool:
    """Whether the hash was made with parameters other than the current ones."""
    return _parse(encoded)[0] != current_pin_kdf()


def lockout_seconds(consecutive_failures: int) -> int:
    """How long the operator is locked after their ``consecutive_failures``-th wrong PIN in a row: 0
    before :data:`MAX_FAILED_ATTEMPTS`, then :data:`LOCKOUT_BASE_SECONDS` doubled for each failure
    beyond it, at most :data:`LOCKOUT_MAX_SECONDS`."""
    beyond = consecutive_failures - MAX_FAILED_ATTEMPTS
    if beyond < 0:
        return 0
    # the exponent is bounded so a huge count costs nothing; 2**32 minutes is far above any cap
    return min(LOCKOUT_MAX_SECONDS, LOCKOUT_BASE_SECONDS << min(beyond, 32))


def _check_pin(pin: str) -> None:
    if not _PIN_RE.fullmatch(pin):
        raise InvalidPin("a PIN is 4 to 8 digits")


def add_operator(db: sqlite_utils.Database, name: str, role: Role, pin: str, *, by: int | None = None) -> int:
    """Create an operator and return their id. ``by`` is the operator who did it (None: installation).

    Names are unique regardless of case (no two "Marie"), which with personal PINs rules out a shared
    account. The creation is audited (without the PIN or its hash).
    """
    name = name.strip()
    if not name:
        raise ValueError("an operator needs a name")
    role = Role(role)
    _check_pin(pin)
    encoded = hash_pin(pin)  # slow: outside the write lock
    with transaction(db) as conn:
        try:
            cursor = conn.execute(
                "INSERT INTO operators(name, role, pin_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role.value, encoded, time.time()),
            )
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"an operator named {name!r} already exists") from exc
        operator_id = int(cursor.lastrowid or 0)
        audit.append(
            conn,
            operator_id=by,
            action="operator.added",
            subject=f"operator:{operator_id}",
            details={"role": role.value},
        )
    return operator_id


def set_pin(db: sqlite_utils.Database, operator_id: int, pin: str, *, by: int | None) -> None:
    """Replace an operator's PIN (and clear a lock); audited."""
    _check_pin(pin)
    encoded = hash_pin(pin)
    with transaction(db) as conn:
        changed = conn.execute(
            "UPDATE operators SET pin_hash = ?, failed_attempts = 0, locked_until = NULL WHERE id = ?",
            (encoded, operator_id),
        ).rowcount
        if not changed:
            raise UnknownOperator(f"no operator {operator_id}")
        audit.append(conn, operator_id=by, action="operator.pin_changed", subject=f"operator:{operator_id}")


def clear_lock(
    db: sqlite_utils.Database, operator_id: int, *, by: int | None, reason: str, now: float | None = None
) -> bool:
    """Reset an operator's wrong-PIN count and lift their lock, if any; return whether there was
    anything to clear (a count above 0 or a lock, even an expired one).

    Called when the same person proves who they are otherwise (their CPS card and its PIN), or by a
    colleague (``by``; None for the command line and the installation), so a patient at the screen
    cannot keep a pharmacist locked out. ``reason`` says which, in the ``operator.unlocked`` audit row
    (with the count and lock it cleared), written in the same transaction — only when something was
    cleared, so a CPS login that finds nothing to clear adds no row. ``now`` is the audit time
    (default: the wall clock). Composes into a caller's transaction.
    """
    reason = reason.strip()
    if not reason:
        raise ValueError("an unlock needs a reason")
    with transaction(db) as conn:
        row = conn.execute(
            "SELECT failed_attempts, locked_until FROM operators WHERE id = ?", (operator_id,)
        ).fetchone()
        if row is None:
            raise UnknownOperator(f"no operator {operator_id}")
        failed, locked_until = int(row[0]), row[1]
        if failed == 0 and locked_until is None:
            return False
        conn.execute("UPDATE operators SET failed_attempts = 0, locked_until = NULL WHERE id = ?", (operator_id,))
        audit.append(
            conn,
            operator_id=by,
            action="operator.unlocked",
            subject=f"operator:{operator_id}",
            details={"reason": reason, "consecutive_failures": failed, "locked_until": locked_until},
            at=now,
        )
    return True


def set_rpps(db: sqlite_utils.Database, operator_id: int, rpps: str | None, *, by: int | None) -> None:
    """Record (or, with None, clear) the RPPS number of an operator's CPS; audited.

    The CPS login maps the card's RPPS to exactly one active operator, so a number already given to
    someone else is refused rather than moved silently.
    """
    if rpps is not None:
        rpps = rpps.strip()
        if not _RPPS_RE.fullmatch(rpps):
            raise ValueError("an RPPS number is 11 digits")
    with transaction(db) as conn:
        try:
            changed = conn.execute("UPDATE operators SET rpps = ? WHERE id = ?", (rpps, operator_id)).rowcount
        except sqlite3.IntegrityError as exc:
            raise StoreError(f"RPPS {rpps} already belongs to another operator") from exc
        if not changed:
            raise UnknownOperator(f"no operator {operator_id}")
        audit.append(
            conn,
            operator_id=by,
            action="operator.rpps_set" if rpps is not None else "operator.rpps_cleared",
            subject=f"operator:{operator_id}",
        )


def operator_by_rpps(db: sqlite_utils.Database, rpps: str) -> Operator | None:
    """The active operator whose CPS carries ``rpps``, or None (unknown card, or a departed colleague)."""
    row = db.conn.execute("SELECT id, name, role FROM operators WHERE rpps = ? AND active = 1", (rpps,)).fetchone()
    return None if row is None else Operator(int(row[0]), str(row[1]), Role(row[2]))


def rpps_by_name(db: sqlite_utils.Database) -> dict[str, str]:
    """The RPPS on record of each active operator who has one, by name (the panel's e-CPS login)."""
    rows = db.conn.execute("SELECT name, rpps FROM operators WHERE active = 1 AND rpps IS NOT NULL ORDER BY name")
    return {str(name): str(rpps) for name, rpps in rows.fetchall()}


def operator_by_name(db: sqlite_utils.Database, name: str) -> Operator | None:
    """The active operator called ``name`` (regardless of case, as names are unique), or None."""
    row = db.conn.execute(
        "SELECT id, name, role FROM operators WHERE name = ? AND active = 1", (name.strip(),)
    ).fetchone()
    return None if row is None else Operator(int(row[0]), str(row[1]), Role(row[2]))


def list_operators(db: sqlite_utils.Database, *, include_inactive: bool = False) -> list[Operator]:
    """Operators for the login screen, by name."""
    where = "" if include_inactive else "WHERE active = 1"
    cursor = db.conn.execute(f"SELECT id, name, role FROM operators {where} ORDER BY name")  # noqa: S608
    return [Operator(int(i), str(n), Role(r)) for i, n, r in cursor.fetchall()]


def _load(conn: sqlite3.Connection, operator_id: int) -> tuple[str, Role, str, int, float | None, bool] | None:
    row = conn.execute(
        "SELECT name, role, pin_hash, failed_attempts, locked_until, active FROM operators WHERE id = ?",
        (operator_id,),
    ).fetchone()
    if row is None:
        return None
    name, role, pin_hash, failed, locked_until, active = row
    return (
        str(name),
        Role(role),
        str(pin_hash),
        int(failed),
        None if locked_until is None else float(locked_until),
        bool(active),
    )


def authenticate(db: sqlite_utils.Database, operator_id: int, pin: str, *, now: float) -> Operator:
    """Check an operator's PIN at time ``now`` (epoch seconds, injected so tests and the clock port
    decide) and return the operator, or raise.

    Raises :class:`PinRejected` (with the attempts left), :class:`OperatorLocked` (on the wrong PIN
    that reaches :data:`MAX_FAILED_ATTEMPTS`, on every wrong PIN after it — each locking for
    :func:`lockout_seconds` of the count — and on every attempt until the lock ends, the PIN then not
    even checked), or :class:`UnknownOperator`. A lock ending does not reset the failure count; a
    success does (and :func:`set_pin`, :func:`clear_lock`).

    It commits its own transaction *before* raising, so a refused attempt is recorded even though
    the caller sees an exception; for the same reason it refuses to run inside an open transaction
    (the caller's rollback would erase the failure count and let a PIN be guessed without limit).
    """
    if db.conn.in_transaction:
        raise StoreError("authenticate() must not run inside a transaction: refusals must be committed")
    subject = f"operator:{operator_id}"
    before = _load(db.conn, operator_id)
    matched: bool | None = None
    if before is not None and before[5] and not (before[4] is not None and now < before[4]):
        matched = verify_pin(pin, before[2])  # slow: outside the write lock
    outcome: Operator | AuthenticationError
    with transaction(db) as conn:
        row = _load(conn, operator_id)
        if row is None or not row[5]:
            audit.append(conn, operator_id=None, action="operator.auth.unknown", subject=subject, at=now)
            outcome = UnknownOperator(f"no active operator {operator_id}")
        else:
            name, role, pin_hash, failed, locked_until, _ = row
            if locked_until is not None and now < locked_until:
                audit.append(
                    conn,
                    operator_id=operator_id,
                    action="operator.auth.refused_locked",
                    subject=subject,
                    details={"locked_until": locked_until},
                    at=now,
                )
                outcome = OperatorLocked(locked_until)
            else:
                # the lock, if any, has ended; the count is kept, so the next wrong PIN locks longer
                if matched is None or before is None or before[2] != pin_hash:  # state changed meanwhile
                    matched = verify_pin(pin, pin_hash)
                if matched:
                    new_hash = hash_pin(pin) if needs_rehash(pin_hash) else pin_hash
                    conn.execute(
                        "UPDATE operators SET failed_attempts = 0, locked_until = NULL, pin_hash = ? WHERE id = ?",
                        (new_hash, operator_id),
                    )
                    audit.append(conn, operator_id=operator_id, action="operator.auth.ok", subject=subject, at=now)
                    outcome = Operator(operator_id, name, role)
                else:
                    failed += 1
                    left = max(0, MAX_FAILED_ATTEMPTS - failed)
                    seconds = lockout_seconds(failed)
                    until = now + seconds if seconds else None
                    conn.execute(
                        "UPDATE operators SET failed_attempts = ?, locked_until = ? WHERE id = ?",
                        (failed, until, operator_id),
                    )
                    audit.append(
                        conn,
                        operator_id=operator_id,
                        action="operator.auth.failed",
                        subject=subject,
                        details={"consecutive_failures": failed},
                        at=now,
                    )
                    if until is not None:
                        audit.append(
                            conn,
                            operator_id=operator_id,
                            action="operator.locked",
                            subject=subject,
                            details={"locked_until": until, "seconds": seconds},
                            at=now,
                        )
                        outcome = OperatorLocked(until)
                    else:
                        outcome = PinRejected(left)
    if isinstance(outcome, AuthenticationError):
        raise outcome
    return outcome
