"""Operator accounts of the back office's web page: roles, passwords, lock-out, sessions, journal.

- **Roles**, each with the rights of the one before: ``viewer`` reads the fleet, the roll-outs and the
  chart; ``operator`` also starts, pauses and resumes roll-outs and sends commands; ``admin`` also
  manages accounts. No anonymous access: every page and API needs a session.
- **Passwords** (12 characters at least) are stored as a memory-hard KDF hash with its algorithm and
  parameters (``argon2id$m=65536,t=3,p=4$salt$hash``, RFC 9106's second recommended setting, or
  ``scrypt$ln=15,r=8,p=1$salt$hash`` where the installed cryptography has no Argon2id), as the box's
  PINs are (:mod:`appliance.store.operators`). ``comptoir backoffice account add NAME --role R`` reads
  the password from a prompt or from standard input, never from the command line.
- **Lock-out** growing with consecutive failed logins: the first 4 only count; the 5th locks the account
  for 1 min, each further failure doubles it (2, 4, 8 … min, 24 h at most). While locked no password is
  checked. A success resets the count.
- **Sessions**: a login makes a random 256-bit token (the cookie ``comptoir_bo``, ``HttpOnly``,
  ``SameSite=Strict``, ``Secure`` when the page is served over HTTPS) of which the database keeps only
  the SHA-256, so a read of the database gives no usable session; it expires 8 hours after the login
  (and at logout). Each session has its own CSRF token, which every POST must carry (the form's hidden
  ``csrf`` field or the ``X-CSRF-Token`` header), compared in constant time.
- **Journal**: every login (success, failure, refusal while locked), logout, account change and action
  (roll-out started, paused, resumed; command sent) is a row of ``operator_journal`` with the account's
  name.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from sync.backoffice.store import BackOfficeStore

ROLES = ("viewer", "operator", "admin")
"""In increasing order of rights: each role may do what the ones before it may."""
SESSION_SECONDS = 8 * 3600
MIN_PASSWORD = 12
MAX_FAILED_LOGINS = 5
LOCKOUT_BASE_SECONDS = 60
LOCKOUT_MAX_SECONDS = 24 * 3600
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

KDF: str | None = None
"""Parameters of new hashes (``"scrypt$ln=15,r=8,p=1"``, ``"argon2id$m=65536,t=3,p=4"``); None: the
best available with the defaults. The tests lower it to stay fast."""


class AccountError(ValueError):
    """A bad account name, role or password (the message says which)."""


class LoginRefused(Exception):
    """Wrong name or password, or the account is locked (``until``: epoch seconds, else None)."""

    def __init__(self, message: str, until: float | None = None) -> None:
        super().__init__(message)
        self.until = until


@dataclass(frozen=True, slots=True)
class Session:
    account: str
    role: str
    csrf: str
    expires_at: float

    def may(self, role: str) -> bool:
        """Whether this session's role has the rights of ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


@cache
def _argon2id_available() -> bool:
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\x00" * 8, length=16, iterations=1, lanes=1, memory_cost=8).derive(b"probe")
    except (ImportError, UnsupportedAlgorithm):
        return False
    return True


def current_kdf() -> str:
    if KDF is not None:
        return KDF
    return "argon2id$m=65536,t=3,p=4" if _argon2id_available() else "scrypt$ln=15,r=8,p=1"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _derive(kdf: str, password: str, salt: bytes) -> bytes:
    algorithm, settings = kdf.split("$")
    values = {k: int(v) for k, v in (item.split("=") for item in settings.split(","))}
    secret = password.encode("utf-8")
    if algorithm == "argon2id":
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        return Argon2id(
            salt=salt, length=32, iterations=values["t"], lanes=values["p"], memory_cost=values["m"]
        ).derive(secret)
    if algorithm == "scrypt":
        return Scrypt(salt=salt, length=32, n=2 ** values["ln"], r=values["r"], p=values["p"]).derive(secret)
    raise ValueError(f"unknown KDF {algorithm}")


def hash_password(password: str) -> str:
    kdf = current_kdf()
    salt = os.urandom(16)
    return f"{kdf}${_b64(salt)}${_b64(_derive(kdf, password, salt))}"


def verify_password(password: str, encoded: str) -> bool:
    algorithm, settings, salt, digest = encoded.split("$")
    return hmac.compare_digest(_derive(f"{algorithm}${settings}", password, _unb64(salt)), _unb64(digest))


def lockout_seconds(failures: int) -> int:
    """The lock after the ``failures``-th consecutive failed login: 0 before the 5th, then 1 min doubled
    for each failure beyond it, 24 h at most."""
    beyond = failures - MAX_FAILED_LOGINS
    if beyond < 0:
        return 0
    return min(LOCKOUT_MAX_SECONDS, LOCKOUT_BASE_SECONDS << min(beyond, 32))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_DUMMY = ""


class Accounts:
    """The accounts, sessions and journal in the back office's store (SQLite or PostgreSQL)."""

    def __init__(self, store: BackOfficeStore) -> None:
        self.store = store

    def journal(self, account: str | None, action: str, detail: dict[str, Any] | None = None) -> None:
        self.store.write(
            "INSERT INTO operator_journal(at, account, action, detail) VALUES (?, ?, ?, ?)",
            (time.time(), account, action, json.dumps(detail or {}, ensure_ascii=False)),
        )

    def entries(self, limit: int = 50) -> list[dict[str, Any]]:
        """The journal, newest first."""
        rows = self.store.rows(
            "SELECT at, account, action, detail FROM operator_journal ORDER BY id DESC LIMIT ?", (limit,)
        )
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    def add(self, name: str, role: str, password: str, *, by: str | None = None) -> None:
        if not _NAME.fullmatch(name):
            raise AccountError("account name: lower-case letters, digits, '.', '_' or '-' (64 at most)")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password: {MIN_PASSWORD} characters at least")
        added = self.store.write(
            "INSERT INTO accounts(name, role, password_hash, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name) DO NOTHING",
            (name, role, hash_password(password), time.time()),
        )
        if not added:
            raise AccountError(f"account {name} already exists")
        self.journal(by, "account.added", {"name": name, "role": role})

    def list(self) -> list[dict[str, Any]]:
        return self.store.rows(
            "SELECT name, role, created_at, failures, locked_until, active FROM accounts ORDER BY name"
        )

    def login(self, name: str, password: str, now: float | None = None) -> tuple[str, Session]:
        """Check the password; returns the session's token (for the cookie) and the session."""
        now = time.time() if now is None else now
        found = self.store.rows(
            "SELECT name, role, password_hash, failures, locked_until FROM accounts WHERE name = ? AND active = 1",
            (name,),
        )
        if not found:
            global _DUMMY
            _DUMMY = _DUMMY or hash_password(secrets.token_hex(8))
            verify_password(password, _DUMMY)  # the same time as a wrong password: names are not revealed
            self.journal(None, "login.failed", {"name": name[:64], "reason": "unknown"})
            raise LoginRefused("identifiant ou mot de passe incorrect")
        account = found[0]
        locked_until = account["locked_until"]
        if locked_until is not None and float(locked_until) > now:
            self.journal(name, "login.refused", {"locked_until": locked_until})
            raise LoginRefused("compte verrouillé", float(locked_until))
        if not verify_password(password, str(account["password_hash"])):
            failures = int(account["failures"]) + 1
            lock = lockout_seconds(failures)
            until = now + lock if lock else None
            self.store.write(
                "UPDATE accounts SET failures = ?, locked_until = ? WHERE name = ?", (failures, until, name)
            )
            self.journal(name, "login.failed", {"failures": failures, "locked_until": until})
            if until is not None:
                raise LoginRefused("compte verrouillé", until)
            raise LoginRefused("identifiant ou mot de passe incorrect")
        self.store.write("UPDATE accounts SET failures = 0, locked_until = NULL WHERE name = ?", (name,))
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = now + SESSION_SECONDS
        self.store.write("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self.store.write(
            "INSERT INTO sessions(token_hash, account, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (_token_hash(token), name, csrf, now, expires),
        )
        self.journal(name, "login", {})
        return token, Session(name, str(account["role"]), csrf, expires)

    def session(self, token: str | None, now: float | None = None) -> Session | None:
        """The live session of a cookie's token (None: none, expired, or its account disabled)."""
        if not token:
            return None
        now = time.time() if now is None else now
        found = self.store.rows(
            "SELECT s.account, a.role, s.csrf, s.expires_at FROM sessions s JOIN accounts a ON a.name = s.account"
            " WHERE s.token_hash = ? AND s.expires_at > ? AND a.active = 1",
            (_token_hash(token), now),
        )
        if not found:
            return None
        row = found[0]
        return Session(str(row["account"]), str(row["role"]), str(row["csrf"]), float(row["expires_at"]))

    def logout(self, token: str, now: float | None = None) -> None:
        session = self.session(token, now)
        self.store.write("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
        if session is not None:
            self.journal(session.account, "logout", {})


def csrf_ok(session: Session, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(session.csrf.encode(), (given or "").encode())
