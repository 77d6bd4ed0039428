"""Commands from the back office: authenticated, idempotent, answered, and a refusal says why.

**Authentication: signed by the back office (Ed25519), on top of the broker's certificate ACL.**
The ACL already lets only the ``backoffice`` certificate publish on ``comptoir/+/+/cmd``; the
signature is checked anyway because a command can change the box's configuration or offer it an
update, and the broker is shared infrastructure: whoever controls the broker (an operator's
mistake in the ACL, a stolen broker key, a misrouted bridge in a cluster) must still not be able to
drive the fleet. The signature is end to end: only the holder of the back office's private key can
command, and the box only needs the public key (``[backoffice] command_key`` in its configuration).

Wire form (JSON object; ``signature`` is Base64 Ed25519 over :func:`canonical` of the other fields)::

    {"id": "…", "device": "<pharmacy>/<device>", "type": "config" | "update-offer" | "resync" | "diagnostics",
     "args": {…}, "issued_at": epoch s, "expires_at": epoch s, "signature": "…"}

The target ``device`` is signed, so a command for one box replayed to another is refused; the expiry
bounds how long a captured command stays usable; the ``id`` makes it idempotent.

Answer (on ``<prefix>/cmd/ack``)::

    {"command": id, "status": "done" | "refused", "reason"?: "…", "result"?: {…}, "at": epoch s}

**Idempotency.** An authenticated command's effect, its audit row and its answer (an ``acks`` outbox
message keyed ``ack:<id>``) commit in one transaction, so the answer is delivered at least once
(MQTT QoS 1, marked delivered when the back office acknowledged it) and a command that arrives again
(QoS 1 redelivery, the back office sending it again when the box comes online) finds its key:
nothing is applied twice, the recorded answer is sent again. A
message that is not an authenticated command (unreadable, bad signature) changes nothing on the box:
its refusal is sent once, directly, and not recorded.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.delivery import ACK_STREAM, BACKOFFICE_STREAMS, TELESERVICE_STREAMS, retry_now
from appliance.store import audit as journal
from appliance.store import outbox
from appliance.store.database import set_setting, transaction

if TYPE_CHECKING:
    import sqlite_utils

COMMAND_TYPES = ("config", "update-offer", "resync", "diagnostics")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Setting:
    """A configuration value the back office may change, with its bounds."""

    minimum: int
    maximum: int
    why: str


CONFIG_SETTINGS: dict[str, Setting] = {
    "qualification_visits": Setting(1, 10, "visits the INS qualification prompt comes back (CounterSettings)"),
    "idle_timeout_s": Setting(15, 3600, "seconds before the patient screen is cleared (CounterSettings)"),
    "telemetry_interval_s": Setting(5, 3600, "seconds between two telemetry messages (comptoir sync)"),
}
"""Only these can be set remotely (stored as ``config.<name>`` in the ``pharmacy`` settings): a
command must not be able to write arbitrary settings such as the pharmacy's identity."""
CONFIG_PREFIX = "config."
UPDATE_OFFER_SETTING = "update.offer"


class CommandRefused(Exception):
    """A command that will not be applied; ``reason`` is a short code, ``detail`` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def canonical(command: Mapping[str, Any]) -> bytes:
    """The signed bytes: every field but ``signature``, as sorted compact UTF-8 JSON."""
    body = {k: v for k, v in command.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sign(private_key: Ed25519PrivateKey, command: Mapping[str, Any]) -> dict[str, Any]:
    """The command with its ``signature`` (the back office's side)."""
    signed = dict(command)
    signed["signature"] = base64.b64encode(private_key.sign(canonical(command))).decode("ascii")
    return signed


def make_command(
    private_key: Ed25519PrivateKey,
    *,
    command_id: str,
    device: str,
    kind: str,
    args: Mapping[str, Any] | None = None,
    now: float | None = None,
    ttl: float = 24 * 3600.0,
) -> dict[str, Any]:
    """A signed command for ``device`` (``<pharmacy>/<device>``), valid ``ttl`` seconds."""
    issued = time.time() if now is None else now
    return sign(
        private_key,
        {
            "id": command_id,
            "device": device,
            "type": kind,
            "args": dict(args or {}),
            "issued_at": issued,
            "expires_at": issued + ttl,
        },
    )


def verify(public_key: Ed25519PublicKey, raw: bytes) -> dict[str, Any]:
    """Parse and authenticate a command; raises :class:`CommandRefused` (``malformed``, ``bad-signature``)."""
    try:
        command = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise CommandRefused("malformed", "not JSON") from None
    if not isinstance(command, dict):
        raise CommandRefused("malformed", "not a JSON object")
    signature = command.get("signature")
    if not isinstance(signature, str):
        raise CommandRefused("bad-signature", "no signature")
    try:
        public_key.verify(base64.b64decode(signature, validate=True), canonical(command))
    except (InvalidSignature, binascii.Error, ValueError):
        raise CommandRefused("bad-signature", "not signed by the back office") from None
    return command


@dataclass(frozen=True, slots=True)
class Answer:
    """What to tell the back office about one command."""

    payload: dict[str, Any]
    queued: bool
    """True: the answer is in the outbox (``acks``), the sync loop delivers it. False: publish it now
    (a refusal of something unauthenticated, or the recorded answer of a duplicate)."""
    applied: bool = False
    """True only the first time an authenticated command is applied (so effects run once)."""


class CommandProcessor:
    """Applies the back office's commands to the box's database (on the sync loop's thread)."""

    def __init__(
        self,
        db: sqlite_utils.Database,
        public_key: Ed25519PublicKey,
        device: str,
        *,
        clock: Callable[[], float] = time.time,
        diagnostics: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.db = db
        self.public_key = public_key
        self.device = device
        self.clock = clock
        self.diagnostics = diagnostics

    def handle(self, raw: bytes) -> Answer:
        """Authenticate, deduplicate, apply and answer one command (never raises for bad input)."""
        now = self.clock()
        try:
            command = verify(self.public_key, raw)
        except CommandRefused as refusal:
            return Answer(_refusal(None, refusal, now), queued=False)
        command_id = command.get("id")
        if not isinstance(command_id, str) or not _ID.match(command_id):
            return Answer(_refusal(None, CommandRefused("malformed", "bad command id"), now), queued=False)
        key = f"ack:{command_id}"
        with transaction(self.db) as conn:
            known = conn.execute("SELECT payload FROM outbox WHERE key = ?", (key,)).fetchone()
            if known is not None:
                return Answer(json.loads(known[0]), queued=False)
            try:
                result = self._apply(conn, command, now)
            except CommandRefused as refusal:
                answer = _refusal(command_id, refusal, now)
            else:
                answer = {"command": command_id, "status": "done", "result": result, "at": now}
            outbox.enqueue(conn, stream=ACK_STREAM, key=key, payload=answer, now=now)
            journal.append(
                conn,
                operator_id=None,
                action="backoffice.command",
                subject=command_id,
                details={"type": str(command.get("type")), "status": answer["status"], "reason": answer.get("reason")},
                at=now,
            )
        return Answer(answer, queued=True, applied=answer["status"] == "done")

    def _apply(self, conn: Any, command: dict[str, Any], now: float) -> dict[str, Any]:
        if command.get("device") != self.device:
            raise CommandRefused("wrong-device", "this command is for another box")
        expires = command.get("expires_at")
        if not isinstance(expires, int | float) or expires < now:
            raise CommandRefused("expired", "the command's validity has passed")
        kind = command.get("type")
        args = command.get("args")
        if not isinstance(args, dict):
            raise CommandRefused("bad-arguments", "args must be an object")
        if kind == "config":
            return self._config(conn, args)
        if kind == "update-offer":
            version, url = args.get("version"), args.get("url")
            if not isinstance(version, str) or not version or not isinstance(url, str) or not url:
                raise CommandRefused("bad-arguments", "an update offer needs a version and a url")
            offer = {"version": version, "url": url, "command": command["id"], "offered_at": now}
            set_setting(conn, UPDATE_OFFER_SETTING, json.dumps(offer, sort_keys=True))
            return {"recorded": version, "note": "the updater verifies the release (TUF) before installing it"}
        if kind == "resync":
            streams = [*TELESERVICE_STREAMS, *BACKOFFICE_STREAMS]
            return {"due_now": retry_now(self.db, streams, now=now)}
        if kind == "diagnostics":
            return self.diagnostics()
        raise CommandRefused("unknown-type", f"expected one of {', '.join(COMMAND_TYPES)}")

    @staticmethod
    def _config(conn: Any, args: dict[str, Any]) -> dict[str, Any]:
        settings = args.get("settings")
        if not isinstance(settings, dict) or not settings:
            raise CommandRefused("bad-arguments", "config needs a non-empty 'settings' object")
        for name, value in settings.items():
            rule = CONFIG_SETTINGS.get(name)
            if rule is None:
                raise CommandRefused("bad-arguments", f"setting {name!r} cannot be changed remotely")
            if isinstance(value, bool) or not isinstance(value, int) or not rule.minimum <= value <= rule.maximum:
                raise CommandRefused("bad-arguments", f"{name} must be an integer in [{rule.minimum}, {rule.maximum}]")
        for name, value in sorted(settings.items()):
            set_setting(conn, CONFIG_PREFIX + name, str(value))
        return {"changed": dict(sorted(settings.items()))}


def _refusal(command_id: str | None, refusal: CommandRefused, now: float) -> dict[str, Any]:
    answer: dict[str, Any] = {"command": command_id, "status": "refused", "reason": refusal.reason, "at": now}
    if refusal.detail:
        answer["detail"] = refusal.detail
    return answer
