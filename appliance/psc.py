"""Pro Santé Connect port: logging a professional in with their e-CPS (the phone app), whoever implements it.

On a kiosk the fitting flow is OpenID Connect CIBA in poll mode (Client-Initiated Backchannel
Authentication): the kiosk asks the national identity provider to authenticate the professional
named by their RPPS, the provider pushes the request to their e-CPS, they validate on the phone, and
the kiosk polls until it gets an ID token it can verify. :mod:`sync.psc` implements this port over
HTTPS; the kiosk sends the core's ``psc_login`` intent only with the RPPS such a verified token proves.

No network library here (DESIGN §2): plain dataclasses, a protocol and exceptions. Every exception
carries a short French ``message`` the kiosk shows as is; the logs get the English ``detail``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

NATIONAL_ID_RPPS_PREFIX = "8"
"""Pro Santé Connect names a professional by their national identifier: the identifier type, ``8`` for
an RPPS number, followed by the number (``8`` + 11 digits)."""


def national_id(rpps: str) -> str:
    """The national identifier Pro Santé Connect knows an RPPS professional by (``login_hint``)."""
    rpps = rpps.strip()
    if not (len(rpps) == 11 and rpps.isdigit()):
        raise ValueError("an RPPS number is 11 digits")
    return NATIONAL_ID_RPPS_PREFIX + rpps


def rpps_from_national_id(value: str) -> str | None:
    """The RPPS inside a national identifier (``8`` + 11 digits), or None for another kind (ADELI...)."""
    value = value.strip()
    if len(value) == 12 and value.isdigit() and value.startswith(NATIONAL_ID_RPPS_PREFIX):
        return value[1:]
    return None


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A backchannel authentication request the provider accepted: the professional's phone is asked."""

    auth_req_id: str
    """The provider's handle of the request (never shown: it is what the token endpoint is polled with)."""
    rpps: str
    binding_message: str
    """The short text shown on the phone, and on the panel, so the professional knows it is this counter."""
    expires_at: float
    """Monotonic time after which the request is dead (``expires_in`` from its start)."""
    interval: float
    """Seconds to wait between two polls (``interval``; raised by ``slow_down``)."""


@dataclass(frozen=True, slots=True)
class ProfessionalIdentity:
    """Who validated on the phone, as the verified ID token (and the userinfo bound to it) say."""

    rpps: str
    national_id: str
    subject: str
    """The token's ``sub``."""
    given_name: str = ""
    family_name: str = ""
    acr: str | None = None
    """The level of assurance the provider reached (``eidas1`` for the e-CPS)."""

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.given_name.strip().title(), self.family_name.strip().upper()) if part)


class ProfessionalLogin(Protocol):
    """What the kiosk expects from a Pro Santé Connect client. Both calls block (bounded): the kiosk
    runs them off the UI thread and off the counter's worker."""

    def start(self, rpps: str) -> PendingLogin:
        """Send the backchannel authentication request for this RPPS; the phone rings."""
        ...

    def wait(self, pending: PendingLogin, cancelled: threading.Event | None = None) -> ProfessionalIdentity:
        """Poll until the professional answered and the ID token checked out; raise a :class:`PscError`
        otherwise (:class:`PscCancelled` as soon as ``cancelled`` is set)."""
        ...


# ---------------------------------------------------------------------------------------------------------
# Errors, with the sentence the kiosk shows
# ---------------------------------------------------------------------------------------------------------


class PscError(Exception):
    """An e-CPS login did not happen; ``message`` is French, for the person at the counter."""

    default_message = "Connexion e-CPS impossible"

    def __init__(self, detail: str = "", message: str | None = None) -> None:
        self.message = message or self.default_message
        self.detail = detail
        """English technical detail for the logs."""
        super().__init__(f"{self.message} ({detail})" if detail else self.message)


class PscDenied(PscError):
    """The professional refused on the phone (``access_denied``)."""

    default_message = "Connexion e-CPS refusée sur le téléphone"


class PscExpired(PscError):
    """Nobody answered in time (``expired_token``, or the request's ``expires_in`` ran out)."""

    default_message = "Connexion e-CPS expirée : validez plus vite sur votre téléphone"


class PscUnknownUser(PscError):
    """The provider knows no active e-CPS for this RPPS (``unknown_user_id``)."""

    default_message = "Pas d'e-CPS active pour ce RPPS : connectez-vous avec votre code"


class PscUnavailable(PscError):
    """Pro Santé Connect cannot be reached, or answers nonsense (network, timeout, 5xx, bad discovery)."""

    default_message = "Pro Santé Connect injoignable : connectez-vous avec votre code"


class PscRefused(PscError):
    """The provider turned the kiosk's request down (client credentials, parameters): a set-up problem."""

    default_message = "Pro Santé Connect refuse la demande : appelez le support"


class PscInvalidToken(PscError):
    """The ID token failed a check (signature, issuer, audience, expiry, binding to the request): nobody
    is logged in on its word."""

    default_message = "Réponse de Pro Santé Connect invalide : connexion refusée"


class PscMismatch(PscInvalidToken):
    """The token proves another professional than the one the request named."""

    default_message = "L'e-CPS validée n'est pas celle demandée : connexion refusée"


class PscCancelled(PscError):
    """The kiosk stopped waiting (Annuler, the panel closed)."""

    default_message = "Connexion e-CPS annulée"
