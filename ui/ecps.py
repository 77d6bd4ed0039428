"""The pharmacist panel's e-CPS login: the CIBA wait runs on a job of its own, never on the UI thread
nor on the counter's worker.

A professional validating on their phone can take a minute; the counter must meanwhile go on serving
scans, cards and ticks, so :class:`EcpsLogin` waits on a short-lived thread of its own (started when a
login starts, never at import). It tells the panel when the phone was asked (the binding message) or
why the login did not happen (a short French sentence), and only once the provider's ID token was
verified does it send the core's ``psc_login`` intent through the controller, like every other event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from appliance.psc import ProfessionalLogin, PscCancelled, PscError
from ui.worker import Post

log = logging.getLogger(__name__)

FAILED = "Connexion e-CPS impossible : connectez-vous avec votre code"


class EcpsListener(Protocol):
    """The panel (the view model), called on the UI thread."""

    def ecps_started(self, binding_message: str) -> None: ...

    def ecps_failed(self, message: str) -> None: ...


class EcpsLogin:
    """One e-CPS login at a time: a new one, or :meth:`cancel`, ends the wait of the previous."""

    def __init__(self, provider: ProfessionalLogin, send_login: Callable[[str, str], None], post: Post) -> None:
        """``send_login(rpps, name)`` hands the verified identity to the core (``psc_login``, on the
        controller's worker); ``post`` runs a callback on the UI thread."""
        self._provider = provider
        self._send_login = send_login
        self._post = post
        self._lock = threading.Lock()
        self._cancelled: threading.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def start(self, rpps: str, listener: EcpsListener) -> None:
        """Ask the professional's phone, then wait for it, off the UI thread."""
        cancelled = threading.Event()
        thread = threading.Thread(target=self._run, args=(rpps, listener, cancelled), name="ecps-login", daemon=True)
        with self._lock:
            if self._cancelled is not None:
                self._cancelled.set()
            self._cancelled, self._thread = cancelled, thread
        thread.start()

    def cancel(self) -> None:
        """Stop waiting: nothing of this login reaches the core any more."""
        with self._lock:
            if self._cancelled is not None:
                self._cancelled.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Cancel and let the job end (its HTTP call in hand is bounded by the client's timeout)."""
        self.cancel()
        with self._lock:
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self, rpps: str, listener: EcpsListener, cancelled: threading.Event) -> None:
        try:
            pending = self._provider.start(rpps)
            if cancelled.is_set():
                return
            binding = pending.binding_message
            self._post(lambda: listener.ecps_started(binding))
            identity = self._provider.wait(pending, cancelled)
        except PscCancelled:
            return
        except PscError as refusal:
            log.info("e-CPS login did not happen: %s", refusal.detail or type(refusal).__name__)
            if not cancelled.is_set():
                message = refusal.message
                self._post(lambda: listener.ecps_failed(message))
            return
        except Exception:  # a bug must not leave the panel waiting for ever
            log.exception("e-CPS login failed")
            if not cancelled.is_set():
                self._post(lambda: listener.ecps_failed(FAILED))
            return
        if cancelled.is_set():
            return  # validated on the phone, but the kiosk no longer waits: no session
        self._send_login(identity.rpps, identity.display_name)
