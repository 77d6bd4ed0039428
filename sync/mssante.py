"""The MSSanté transport: SMTP submission to the pharmacy's MSSanté operator (the
:class:`~appliance.ports.SecureMail` port).

MSSanté operators take mail from a professional's software over SMTP protected by TLS, the sending
structure authenticated by its certificate (the ANS MSSanté DST: submission with STARTTLS on port
587, mutual TLS authentication; implicit TLS on 465 where the operator offers it). So here:

- the server certificate is always verified, against ``ca`` (the operator's chain, IGC-Santé in the
  field) or the system's store, with its host name checked; TLS 1.2 at least;
- the pharmacy's client certificate and key are presented in the handshake;
- with ``tls = "starttls"`` the session must offer STARTTLS, else nothing is sent (never in clear);
- connect, read and write are bounded by ``timeout``.

What comes back maps onto the port's two errors: no connection, a TLS failure, a 4xx answer or the
operator refusing the sender (a configuration matter, every message would fail) are
:class:`~appliance.teleservices.TeleserviceUnavailable` (the outbox retries later); a 5xx answer to
the recipient (unknown or closed mailbox) or to the content is
:class:`~appliance.teleservices.TeleserviceRefused` (the message is marked refused, the pharmacist
told through the journal). Error texts name codes, never an address (a patient's address is their INS).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from appliance.messaging import MailSettings, envelope
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable

log = logging.getLogger("comptoir.mssante")

TLS_MODES = ("starttls", "implicit")


class MssanteSettingsError(ValueError):
    """The ``[mssante]`` table is missing something or is malformed (the message says what)."""


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The operator's SMTP submission service and the pharmacy's identity there."""

    host: str
    sender: str
    """The pharmacy's MSSanté mailbox (``From`` and ``MAIL FROM``)."""
    port: int = 587
    tls: str = "starttls"
    """``starttls`` (submission, port 587) or ``implicit`` (SMTPS, port 465)."""
    ca: Path | None = None
    """CA bundle the operator's certificate is verified against (None: the system's store)."""
    cert: Path | None = None
    """The pharmacy's certificate (PEM) presented to the operator; operators refuse a session without one."""
    key: Path | None = None
    timeout: float = 10.0
    local_hostname: str | None = None
    """EHLO name (None: this machine's fully qualified name)."""
    product_reference: str | None = None
    """``X-MSS-NIL`` on every message (the reference of the software declared to the ANS)."""
    patient_replies: bool = False
    products: Path | None = None
    """The product table the receipts name boxes from (None: the sandbox's, as the kiosk)."""

    def mail_settings(self) -> MailSettings:
        return MailSettings(
            sender=self.sender, product_reference=self.product_reference, patient_replies=self.patient_replies
        )


def settings_from_table(table: Mapping[str, Any], base: Path) -> SmtpSettings:
    """``[mssante]`` of the sync configuration; relative paths are relative to ``base``."""

    def path(name: str) -> Path | None:
        value = table.get(name)
        if value is None:
            return None
        found = Path(str(value))
        return found if found.is_absolute() else base / found

    for name in ("host", "sender", "cert", "key"):
        if not table.get(name):
            raise MssanteSettingsError(f"[mssante] {name} is required")
    tls = str(table.get("tls", "starttls"))
    if tls not in TLS_MODES:
        raise MssanteSettingsError(f"[mssante] tls must be one of {', '.join(TLS_MODES)}, not {tls!r}")
    timeout = float(table.get("timeout", 10.0))
    if not 0 < timeout <= 120:
        raise MssanteSettingsError("[mssante] timeout must be between 0 and 120 seconds")
    return SmtpSettings(
        host=str(table["host"]),
        sender=str(table["sender"]),
        port=int(table.get("port", 587 if tls == "starttls" else 465)),
        tls=tls,
        ca=path("ca"),
        cert=path("cert"),
        key=path("key"),
        timeout=timeout,
        local_hostname=str(table["local_hostname"]) if table.get("local_hostname") else None,
        product_reference=str(table["product_reference"]) if table.get("product_reference") else None,
        patient_replies=bool(table.get("patient_replies", False)),
        products=path("products"),
    )


def client_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Verified server, host name checked, TLS 1.2 or later, the pharmacy's certificate when given."""
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if settings.ca is None else str(settings.ca)
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert is not None:
        context.load_cert_chain(str(settings.cert), None if settings.key is None else str(settings.key))
    return context


def _answer(code: int, text: bytes | str) -> str:
    """``code text`` of an SMTP answer, for support screens (the operator's words, shortened)."""
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {words.splitlines()[0][:120] if words else ''}".strip()


class SmtpSecureMail:
    """:class:`~appliance.ports.SecureMail` over SMTP: one session per message, bounded in time."""

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.tls not in TLS_MODES:
            raise MssanteSettingsError(f"tls must be one of {', '.join(TLS_MODES)}")
        self.settings = settings
        self.context = client_context(settings)

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        if s.tls == "implicit":
            return smtplib.SMTP_SSL(
                s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout, context=self.context
            )
        session = smtplib.SMTP(s.host, s.port, local_hostname=s.local_hostname, timeout=s.timeout)
        try:
            session.ehlo()
            if not session.has_extn("starttls"):
                raise TeleserviceUnavailable("mssante: the operator does not offer STARTTLS; nothing sent in clear")
            session.starttls(context=self.context)
        except BaseException:
            session.close()
            raise
        try:
            session.ehlo()
        except (OSError, smtplib.SMTPException):
            session.close()
            # TLS 1.3: a server that does not accept the client certificate says so after the handshake
            raise TeleserviceUnavailable("mssante: the operator closed the TLS session (client certificate?)") from None
        return session

    def send(self, message: EmailMessage) -> None:
        sender, recipients = envelope(message)
        try:
            session = self._connect()
        except TeleserviceUnavailable:
            raise
        except ssl.SSLError as exc:
            raise TeleserviceUnavailable(f"mssante: TLS refused ({exc.reason or exc.__class__.__name__})") from None
        except smtplib.SMTPResponseException as exc:
            raise TeleserviceUnavailable(f"mssante: {_answer(exc.smtp_code, exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TeleserviceUnavailable(f"mssante: operator unreachable ({exc.__class__.__name__})") from None
        try:
            session.send_message(message, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (550, b""))
            reason = _answer(code, text)
            if code >= 500:
                raise TeleserviceRefused("mss-recipient", f"Destinataire MSSanté refusé ({reason})") from None
            raise TeleserviceUnavailable(f"mssante: recipient deferred ({reason})") from None
        except smtplib.SMTPSenderRefused as exc:
            log.warning("mssante: the operator refuses the sender mailbox (%s)", exc.smtp_code)
            reason = _answer(exc.smtp_code, exc.smtp_error)
            raise TeleserviceUnavailable(f"mssante: sender refused ({reason})") from None
        except smtplib.SMTPDataError as exc:
            reason = _answer(exc.smtp_code, exc.smtp_error)
            if exc.smtp_code >= 500:
                raise TeleserviceRefused("mss-content", f"Message refusé par l'opérateur MSSanté ({reason})") from None
            raise TeleserviceUnavailable(f"mssante: message deferred ({reason})") from None
        except smtplib.SMTPResponseException as exc:
            raise TeleserviceUnavailable(f"mssante: {_answer(exc.smtp_code, exc.smtp_error)}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TeleserviceUnavailable(f"mssante: connection lost ({exc.__class__.__name__})") from None
        finally:
            try:
                session.quit()
            except (OSError, smtplib.SMTPException):
                session.close()

    def close(self) -> None:
        """Nothing stays open between messages."""
