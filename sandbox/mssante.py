"""A simulated MSSanté operator: an SMTP submission server on 127.0.0.1 (never shipped).

For development, the scenarios and the tests: a real SMTP server (aiosmtpd, a development
dependency) that behaves as an operator's submission service does towards a professional's software:

- STARTTLS is required before anything else (``530`` otherwise), or the whole session is TLS
  (``implicit_tls``, as on port 465);
- the TLS handshake requires a client certificate issued by the sandbox CA (the pharmacy's
  certificate): a client without one never gets to say ``MAIL FROM``;
- only addresses of the MSSanté trust space are accepted (a domain ending in ``mssante.fr``: Mon
  Espace Santé's ``patient.mssante.fr`` and the professionals' domains), closed mailboxes are refused
  with ``550 5.1.1`` (:data:`sandbox.population.CLOSED_MAILBOXES`, and any :meth:`close_mailbox`);
- what it accepted is kept in :attr:`SandboxMailServer.received`, with the client certificate's
  common name, for the tests and the scenario runner to read.

:meth:`SandboxMailServer.stop` and :meth:`SandboxMailServer.start` again on the same port play an
operator that goes down and comes back.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from sandbox.backoffice.pki import Issued, Pki

SANDBOX_SENDER = "comptoir@pharmacie-bac-a-sable.mssante.fr"
"""The sandbox pharmacy's MSSanté mailbox (the rig's ``From``)."""
TRUST_SPACE_SUFFIX = "mssante.fr"


@dataclass(frozen=True, slots=True)
class ReceivedMail:
    """One message the operator accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    content: bytes
    client: str | None
    """Common name of the client certificate presented in the TLS handshake."""

    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)  # noqa: S101 - policy.default always builds EmailMessage
        return parsed


def _common_name(peercert: Any) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


class _Operator:
    """aiosmtpd handler: the trust space, closed mailboxes, and the mailbox of what arrived."""

    def __init__(self, owner: SandboxMailServer) -> None:
        self.owner = owner

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if not (domain == TRUST_SPACE_SUFFIX or domain.endswith("." + TRUST_SPACE_SUFFIX)):
            return "550 5.7.1 Domaine hors de l'espace de confiance MSSante"
        if address.lower() in self.owner.closed:
            return "550 5.1.1 Boite aux lettres inconnue ou fermee"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        peercert = transport.get_extra_info("peercert") if transport is not None else None
        content = envelope.original_content or (
            envelope.content if isinstance(envelope.content, bytes) else str(envelope.content or "").encode()
        )
        mail = ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), bytes(content), _common_name(peercert))
        with self.owner.lock:
            self.owner.received.append(mail)
        return "250 2.0.0 Message accepte"


class SandboxMailServer:
    """The operator's submission server on ``127.0.0.1``: :meth:`start`, read :attr:`received`, :meth:`stop`.

    Certificates come from ``pki`` (a sandbox :class:`~sandbox.backoffice.pki.Pki`, made in
    ``directory`` when not given): :meth:`client_certificate` issues the pharmacy's.
    """

    def __init__(
        self,
        directory: Path,
        pki: Pki | None = None,
        *,
        implicit_tls: bool = False,
        starttls: bool = True,
        closed: Iterable[str] | None = None,
        port: int = 0,
    ) -> None:
        from sandbox.population import CLOSED_MAILBOXES

        self.pki = pki or Pki(directory / "mssante-pki", "comptoir sandbox MSSanté CA")
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        """False: a server that offers no TLS at all (what a client must refuse to talk to)."""
        self.closed = {a.lower() for a in (CLOSED_MAILBOXES if closed is None else closed)}
        self.port = port
        self.received: list[ReceivedMail] = []
        self.lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        server = self.pki.server("mssante-server")
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.ca.cert))
        self.context.load_cert_chain(str(server.cert), str(server.key))
        self.context.verify_mode = ssl.CERT_REQUIRED  # the pharmacy's certificate, or no session
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        # aiosmtpd warns on every connection that CERT_REQUIRED "might cause client problems": it is the point
        logging.getLogger("mail.log").setLevel(logging.ERROR)

    @property
    def ca(self) -> Path:
        """The CA the server certificate is issued by (the client verifies the operator against it)."""
        return self.pki.ca.cert

    def client_certificate(self, name: str = "pharmacie-bac-a-sable") -> Issued:
        return self.pki.client(name)

    def close_mailbox(self, address: str) -> None:
        self.closed.add(address.lower())

    def messages(self) -> list[ReceivedMail]:
        with self.lock:
            return list(self.received)

    def _factory(self) -> SMTP:
        return SMTP(
            _Operator(self),
            hostname="mssante.sandbox",
            tls_context=self.context if self.starttls and not self.implicit_tls else None,
            require_starttls=self.starttls and not self.implicit_tls,
            timeout=30,
            data_size_limit=10 * 1024 * 1024,
            loop=self._loop,
        )

    def start(self) -> int:
        """Listen (on the same port as before after a :meth:`stop`); returns the port."""
        if self._thread is not None:
            return self.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(16)
        self.port = int(sock.getsockname()[1])
        loop = asyncio.new_event_loop()
        self._loop = loop
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                loop.create_server(self._factory, sock=sock, ssl=self.context if self.implicit_tls else None)
            )
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="sandbox-mssante", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the sandbox MSSanté server did not start")
        return self.port

    def stop(self) -> None:
        """Stop listening and drop the sessions (the port can be listened on again by :meth:`start`)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread, self._loop, self._server = None, None, None

    def __enter__(self) -> SandboxMailServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
