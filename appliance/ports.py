"""Ports the adapters implement or call: plain callables and protocols, no adapter imports."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

from appliance.scan import ScanEvent

ScanSink = Callable[[ScanEvent], None]
"""Where drivers deliver scans. Called from the driver's thread: it must not block."""

Clock = Callable[[], float]
"""Monotonic seconds, injectable so that timing rules (scanner vs person, idle gaps) test exactly."""


class DeviceStatusSink(Protocol):
    """Told when a device is lost (unplugged) or found again, so the kiosk can say so."""

    def device_lost(self, source: str, reason: str) -> None: ...

    def device_found(self, source: str) -> None: ...


class SecureMail(Protocol):
    """Sends one composed MSSanté message (:func:`appliance.messaging.compose`); SMTP with STARTTLS and
    the pharmacy's certificate in :mod:`sync.mssante`, a test server's client in the sandbox.

    Raises :class:`~appliance.teleservices.TeleserviceUnavailable` when it could not be handed over now
    (operator unreachable, TLS refused, a 4xx answer: the outbox retries later) and
    :class:`~appliance.teleservices.TeleserviceRefused` for a permanent refusal of this message (a 5xx
    answer to its recipient or its content: the message is marked refused). Returns once the operator
    accepted the message (250 after DATA). Messages never name the recipient in an error.
    """

    def send(self, message: EmailMessage) -> None: ...
