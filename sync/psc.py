"""Pro Santé Connect over HTTPS: an e-CPS login by OpenID Connect CIBA in poll mode.

Implements :class:`appliance.psc.ProfessionalLogin`. The flow (OpenID Connect Client-Initiated
Backchannel Authentication Flow - Core 1.0, as Pro Santé Connect runs it: poll mode only, client
authentication by HTTP Basic, forms in ``application/x-www-form-urlencoded``):

1. discovery: ``GET {issuer}/.well-known/openid-configuration`` (``discovery_url`` for another name:
   the ANS documents ``.well-known/wallet-openid-configuration`` for the e-CPS realm), checked with
   authlib's :class:`OpenIDProviderMetadata`; the ``issuer`` must be the configured one, and the
   document must name a ``backchannel_authentication_endpoint`` with the ``poll`` delivery mode;
2. ``POST backchannel_authentication_endpoint`` with ``scope`` (``openid scope_all``), ``acr_values``
   (``eidas1``), ``login_hint`` (the national identifier: ``8`` + RPPS) and a short ``binding_message``
   shown on the phone → ``auth_req_id``, ``expires_in``, ``interval`` (5 s when absent);
3. ``POST token_endpoint`` with ``grant_type=urn:openid:params:grant-type:ciba`` and ``auth_req_id``
   every ``interval`` seconds: ``authorization_pending`` waits, ``slow_down`` adds 5 s to the interval
   for good, ``expired_token`` / ``access_denied`` end it (:class:`PscExpired`, :class:`PscDenied`);
4. the ID token is verified: JWS signature against the provider's JWKS (``kid``; fetched again once
   for a key it does not know, rotation), an asymmetric ``alg`` only (RS256, PS256, ES256), ``iss``,
   ``aud`` (and ``azp``), ``exp``, ``iat`` (not in the future, not older than ``max_token_age_s``),
   ``at_hash`` against the access token, the ``urn:openid:params:jwt:claim:auth_req_id`` claim
   against this request when present (CIBA has no ``nonce``), ``acr`` among the values asked;
5. the RPPS is read from ``SubjectNameID`` (or ``preferred_username``) of the token, else of the
   userinfo answer, whose ``sub`` must be the token's; it must be the RPPS the request named.

Every HTTP call is bounded by ``timeout_s`` and the whole wait by the request's ``expires_in`` and
``max_wait_s``. Nothing connects before the first call; no thread is started here (the kiosk runs
:meth:`PscClient.wait` on a job of its own).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urlencode

import httpx
from authlib.oauth2.auth import ClientAuth
from authlib.oidc.core.claims import IDToken
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from appliance.psc import (
    PendingLogin,
    ProfessionalIdentity,
    PscCancelled,
    PscDenied,
    PscError,
    PscExpired,
    PscInvalidToken,
    PscMismatch,
    PscRefused,
    PscUnavailable,
    PscUnknownUser,
    national_id,
    rpps_from_national_id,
)
from sync.teleservices_http import ssl_context

__all__ = [
    "CIBA_GRANT_TYPE",
    "PendingLogin",
    "ProfessionalIdentity",
    "PscCancelled",
    "PscClient",
    "PscDenied",
    "PscError",
    "PscExpired",
    "PscInvalidToken",
    "PscMismatch",
    "PscRefused",
    "PscSettings",
    "PscSettingsError",
    "PscUnavailable",
    "PscUnknownUser",
    "settings_from_table",
]

log = logging.getLogger(__name__)

CIBA_GRANT_TYPE = "urn:openid:params:grant-type:ciba"
AUTH_REQ_ID_CLAIM = "urn:openid:params:jwt:claim:auth_req_id"
"""The ID token claim that binds it to the backchannel request (CIBA Core §10.3.1)."""
PSC_SCOPE = "openid scope_all"
PSC_ACR = "eidas1"
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "tls_client_auth")
ASYMMETRIC_ALGORITHMS = ("RS256", "PS256", "ES256")
SLOW_DOWN_S = 5.0
"""``slow_down``: the interval grows by at least 5 seconds for this and every later poll."""
DEFAULT_INTERVAL_S = 5.0
"""``interval`` when the provider gives none (CIBA Core §7.3)."""
UNAVAILABLE_POLLS = 3
"""Consecutive unreachable polls after which the wait gives up (one lost answer is not the end)."""


@dataclass(frozen=True)
class PscSettings:
    """The pharmacy's Pro Santé Connect client. The secret is read from a file by the composition root
    and kept in memory only; certificate paths name files (mutual TLS, ``tls_client_auth``)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    auth_method: str = "client_secret_basic"
    discovery_url: str | None = None
    """None: ``{issuer}/.well-known/openid-configuration``."""
    scope: str = PSC_SCOPE
    acr_values: str = PSC_ACR
    binding_message: str = "Comptoir {code}"
    """Shown on the phone and on the panel; ``{code}`` is a fresh 4-digit number for each request."""
    requested_expiry: int | None = None
    """Seconds the request may stay open (``requested_expiry``); None: the provider's default."""
    timeout_s: float = 5.0
    """Each HTTP call."""
    max_wait_s: float = 180.0
    """The whole wait for the phone, whatever ``expires_in`` says."""
    leeway_s: int = 60
    """Clock skew allowed on ``exp``, ``iat`` and ``nbf``."""
    max_token_age_s: int = 600
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    verify: bool | str = True
    """TLS server verification: True (system store), a CA bundle path; False only for tests."""
    cert: tuple[str, str] | None = None
    """Client certificate and key (mutual TLS)."""
    userinfo: bool = True
    """Ask the userinfo endpoint for the names (and the identifier when the ID token lacks it)."""

    def __post_init__(self) -> None:
        if not self.issuer.startswith(("https://", "http://")):
            raise ValueError("issuer must be an https:// URL")
        if not self.client_id:
            raise ValueError("client_id is required")
        if self.auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {', '.join(AUTH_METHODS)}")
        if self.auth_method == "tls_client_auth" and self.cert is None:
            raise ValueError("tls_client_auth needs a client certificate and key")
        if self.auth_method != "tls_client_auth" and not self.client_secret:
            raise ValueError(f"{self.auth_method} needs a client secret")
        if not set(self.algorithms) <= set(ASYMMETRIC_ALGORITHMS):
            raise ValueError(f"algorithms: only {', '.join(ASYMMETRIC_ALGORITHMS)}")
        for name in ("timeout_s", "max_wait_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        try:
            self.binding_message.format(code="0000")
        except (KeyError, IndexError, ValueError):
            raise ValueError("binding_message: {code} is the only name it may hold in braces") from None

    @property
    def discovery(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"


class PscSettingsError(ValueError):
    """A ``[psc]`` table that cannot be used; the message names the table and the key."""


_TABLE_KEYS = (
    "enabled",
    "issuer",
    "discovery_url",
    "client_id",
    "client_secret_file",
    "auth_method",
    "ca",
    "cert",
    "key",
    "scope",
    "acr_values",
    "binding_message",
    "requested_expiry",
    "timeout_s",
    "max_wait_s",
)


def settings_from_table(table: Mapping[str, Any], where: str = "psc") -> PscSettings | None:
    """The kiosk's ``[psc]`` table (``systemd/kiosk.toml.example``); None when ``enabled = false``.

    The client secret is read from ``client_secret_file`` now (a file of the box, mode 0600), so a
    missing one stops the kiosk before any window opens. TLS is always verified: against ``ca`` when
    given, else the system's trust store; ``cert``/``key`` add the pharmacy's client certificate.
    """
    unknown = sorted(set(table) - set(_TABLE_KEYS))
    if unknown:
        raise PscSettingsError(f"[{where}] unknown key(s): {', '.join(unknown)} (known: {', '.join(_TABLE_KEYS)})")
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PscSettingsError(f"[{where}] enabled must be true or false")
    if not enabled:
        return None

    def text(key: str, default: str | None = None) -> str | None:
        value = table.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise PscSettingsError(f"[{where}] {key} must be a non-empty string")
        return value.strip() if isinstance(value, str) else None

    issuer, client_id = text("issuer"), text("client_id")
    if issuer is None or client_id is None:
        raise PscSettingsError(f"[{where}] issuer and client_id are required (given by the ANS for this service)")
    loopback = issuer.startswith(("http://127.0.0.1", "http://localhost"))
    if not issuer.startswith("https://") and not loopback:
        raise PscSettingsError(f"[{where}] issuer must be an https:// URL")
    secret = None
    secret_file = text("client_secret_file")
    if secret_file is not None:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PscSettingsError(f"[{where}] client_secret_file {secret_file}: {exc.strerror or exc}") from None
        if not secret:
            raise PscSettingsError(f"[{where}] client_secret_file {secret_file} is empty")
    cert, key = text("cert"), text("key")
    if (cert is None) != (key is None):
        raise PscSettingsError(f"[{where}] cert and key go together (client certificate and its key)")
    options: dict[str, Any] = {}
    for name in ("discovery_url", "auth_method", "scope", "acr_values", "binding_message"):
        if (value := text(name)) is not None:
            options[name] = value
    for name in ("timeout_s", "max_wait_s", "requested_expiry"):
        if name in table:
            value = table[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise PscSettingsError(f"[{where}] {name} must be a positive number of seconds")
            options[name] = int(value) if name == "requested_expiry" else float(value)
    if "{code}" not in options.get("binding_message", "{code}"):
        raise PscSettingsError(f"[{where}] binding_message must contain {{code}} (the number the phone shows)")
    ca = text("ca")
    try:
        return PscSettings(
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            verify=ca if ca is not None else True,
            cert=(cert, key) if cert is not None and key is not None else None,
            **options,
        )
    except ValueError as exc:
        raise PscSettingsError(f"[{where}] {exc}") from None


Pause = Callable[[float, "threading.Event | None"], bool]
"""Wait ``seconds``; True when the event was set meanwhile (cancelled)."""


def _pause(seconds: float, cancelled: threading.Event | None) -> bool:
    if cancelled is not None:
        return cancelled.wait(seconds)
    time.sleep(seconds)
    return False


class PscClient:
    """A Pro Santé Connect CIBA client (:class:`appliance.psc.ProfessionalLogin`); thread-safe."""

    def __init__(
        self,
        settings: PscSettings,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        pause: Pause = _pause,
    ) -> None:
        self.settings = settings
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(settings.timeout_s),
            verify=ssl_context(settings.verify, settings.cert),
            headers={"Accept": "application/json", "User-Agent": "comptoir"},
            follow_redirects=False,
        )
        self._clock, self._now, self._pause = clock, now, pause
        self._auth = ClientAuth(settings.client_id, settings.client_secret, self._auth_method())
        self._lock = threading.Lock()
        self._metadata: OpenIDProviderMetadata | None = None
        self._keys: KeySet | None = None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> PscClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the flow
    def login(self, rpps: str, cancelled: threading.Event | None = None) -> ProfessionalIdentity:
        """The whole login: the request, then the wait for the phone."""
        return self.wait(self.start(rpps), cancelled)

    def start(self, rpps: str) -> PendingLogin:
        """The backchannel authentication request for ``rpps``: the professional's e-CPS is asked."""
        try:
            hint = national_id(rpps)
        except ValueError:
            raise PscRefused("not an RPPS number", message="RPPS invalide : 11 chiffres") from None
        metadata = self.metadata()
        binding = self.settings.binding_message.format(code=f"{secrets.randbelow(10_000):04d}")
        form = {
            "scope": self.settings.scope,
            "acr_values": self.settings.acr_values,
            "login_hint": hint,
            "binding_message": binding,
        }
        if self.settings.requested_expiry is not None:
            form["requested_expiry"] = str(self.settings.requested_expiry)
        started = self._clock()
        status, body = self._post(str(metadata["backchannel_authentication_endpoint"]), form)
        if status != 200:
            raise _authentication_error(status, body)
        auth_req_id = body.get("auth_req_id")
        expires_in = body.get("expires_in")
        interval = body.get("interval", DEFAULT_INTERVAL_S)
        if not isinstance(auth_req_id, str) or not auth_req_id:
            raise PscUnavailable("backchannel answer without auth_req_id")
        if not _positive_number(expires_in) or not _positive_number(interval):
            raise PscUnavailable("backchannel answer with a bad expires_in or interval")
        log.info("psc: backchannel request accepted (expires in %s s, interval %s s)", expires_in, interval)
        return PendingLogin(auth_req_id, rpps, binding, started + float(expires_in), float(interval))

    def poll(self, pending: PendingLogin) -> ProfessionalIdentity | PendingLogin:
        """One token request: the identity once the phone said yes, or the request still pending (with
        a longer ``interval`` after ``slow_down``)."""
        if self._clock() >= pending.expires_at:
            raise PscExpired("the request expired before the professional answered")
        metadata = self.metadata()
        form = {"grant_type": CIBA_GRANT_TYPE, "auth_req_id": pending.auth_req_id}
        status, body = self._post(str(metadata["token_endpoint"]), form)
        if status == 200:
            return self._identity(pending, body)
        error = body.get("error")
        if status == 400 and error == "authorization_pending":
            return pending
        if status == 400 and error == "slow_down":
            return PendingLogin(
                pending.auth_req_id,
                pending.rpps,
                pending.binding_message,
                pending.expires_at,
                pending.interval + SLOW_DOWN_S,
            )
        raise _token_error(status, body)

    def wait(self, pending: PendingLogin, cancelled: threading.Event | None = None) -> ProfessionalIdentity:
        """Poll every ``interval`` until the phone answered, the request expired, or ``cancelled``."""
        deadline = min(pending.expires_at, self._clock() + self.settings.max_wait_s)
        unreachable = 0
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise PscExpired("no answer from the phone in time")
            if self._pause(min(pending.interval, remaining), cancelled) or (cancelled and cancelled.is_set()):
                raise PscCancelled("cancelled at the kiosk")
            try:
                answer = self.poll(pending)
            except PscUnavailable:
                unreachable += 1
                if unreachable >= UNAVAILABLE_POLLS:
                    raise
                log.warning("psc: a poll failed (%d in a row), trying again", unreachable)
                continue
            unreachable = 0
            if isinstance(answer, ProfessionalIdentity):
                return answer
            pending = answer

    # ------------------------------------------------------------------ discovery and keys
    def metadata(self) -> OpenIDProviderMetadata:
        """The provider's discovery document, fetched once and checked."""
        with self._lock:
            if self._metadata is not None:
                return self._metadata
        status, body = self._get(self.settings.discovery)
        if status != 200:
            raise PscUnavailable(f"discovery answered {status}")
        metadata = OpenIDProviderMetadata(body)
        try:
            metadata.validate()
        except (ValueError, TypeError) as exc:
            raise PscUnavailable(f"discovery document rejected: {exc}") from None
        if metadata.get("issuer") != self.settings.issuer:
            raise PscUnavailable(f"discovery issuer {metadata.get('issuer')!r} is not the configured issuer")
        if not isinstance(metadata.get("backchannel_authentication_endpoint"), str):
            raise PscUnavailable("the provider offers no backchannel authentication endpoint")
        modes = metadata.get("backchannel_token_delivery_modes_supported")
        if modes is not None and "poll" not in modes:
            raise PscUnavailable("the provider does not offer the CIBA poll mode")
        if not isinstance(metadata.get("jwks_uri"), str):
            raise PscUnavailable("the discovery document has no jwks_uri")
        with self._lock:
            self._metadata = metadata
        return metadata

    def _key_set(self, *, refresh: bool = False) -> KeySet:
        with self._lock:
            if self._keys is not None and not refresh:
                return self._keys
        status, body = self._get(str(self.metadata()["jwks_uri"]))
        if status != 200:
            raise PscUnavailable(f"jwks answered {status}")
        try:
            keys = KeySet.import_key_set(body)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise PscUnavailable(f"jwks unreadable: {exc}") from None
        with self._lock:
            self._keys = keys
        return keys

    # ------------------------------------------------------------------ the ID token
    def _identity(self, pending: PendingLogin, body: Mapping[str, Any]) -> ProfessionalIdentity:
        raw, access_token = body.get("id_token"), body.get("access_token")
        if not isinstance(raw, str) or not raw:
            raise PscInvalidToken("token answer without id_token")
        if not isinstance(access_token, str) or str(body.get("token_type", "")).lower() != "bearer":
            raise PscInvalidToken("token answer without a bearer access token")
        claims = self._verified_claims(raw, pending, access_token)
        subject = str(claims["sub"])
        info: Mapping[str, Any] = {}
        identifier = _identifier(claims)
        endpoint = self.metadata().get("userinfo_endpoint")
        if self.settings.userinfo and isinstance(endpoint, str):
            try:
                info = self._userinfo(endpoint, access_token, subject)
            except PscUnavailable as exc:
                if identifier is None:
                    raise
                log.warning("psc: userinfo unavailable (%s); the ID token alone names the professional", exc.detail)
        identifier = identifier or _identifier(info)
        rpps = rpps_from_national_id(identifier) if identifier else None
        if identifier is None or rpps is None:
            raise PscInvalidToken("neither the ID token nor userinfo names an RPPS professional")
        if rpps != pending.rpps:
            raise PscMismatch("the token names another professional than the request")
        names = {**claims, **info}
        acr = claims.get("acr")
        return ProfessionalIdentity(
            rpps=rpps,
            national_id=identifier,
            subject=subject,
            given_name=str(names.get("given_name") or ""),
            family_name=str(names.get("family_name") or ""),
            acr=str(acr) if acr is not None else None,
        )

    def _verified_claims(self, raw: str, pending: PendingLogin, access_token: str) -> dict[str, Any]:
        settings = self.settings
        supported = self.metadata().get("id_token_signing_alg_values_supported") or settings.algorithms
        algorithms = [alg for alg in settings.algorithms if alg in supported]
        token = self._decode(raw, algorithms)
        options: dict[str, Any] = {
            "iss": {"essential": True, "value": settings.issuer},
            "aud": {"essential": True, "value": settings.client_id},
            "sub": {"essential": True},
            "exp": {"essential": True},
            "iat": {"essential": True},
        }
        claims = IDToken(
            token.claims, token.header, options, {"client_id": settings.client_id, "access_token": access_token}
        )
        now = int(self._now())
        try:
            claims.validate(now=now, leeway=settings.leeway_s)
        except JoseError as exc:
            raise PscInvalidToken(f"ID token claims rejected: {exc}") from None
        if float(claims["iat"]) < now - settings.max_token_age_s - settings.leeway_s:
            raise PscInvalidToken("ID token too old")
        bound = claims.get(AUTH_REQ_ID_CLAIM)
        if bound is not None and bound != pending.auth_req_id:
            raise PscInvalidToken("ID token bound to another backchannel request")
        acr = claims.get("acr")
        if settings.acr_values and acr is not None and acr not in settings.acr_values.split():
            raise PscInvalidToken(f"ID token acr {acr!r} is not among {settings.acr_values!r}")
        return dict(claims)

    def _decode(self, raw: str, algorithms: list[str]) -> jwt.Token:
        """Signature check against the JWKS; a key id it does not know makes it fetch the keys once more."""
        if not algorithms:
            raise PscInvalidToken("no signing algorithm in common with the provider")
        for refresh in (False, True):
            keys = self._key_set(refresh=refresh)
            try:
                return jwt.decode(raw, keys, algorithms=algorithms)
            except (InvalidKeyIdError, ValueError) as exc:  # no key of that kid: the provider rotated its keys?
                if refresh:
                    raise PscInvalidToken(f"no provider key verifies the ID token: {exc}") from None
            except JoseError as exc:
                raise PscInvalidToken(f"ID token signature rejected: {exc}") from None
        raise AssertionError("unreachable")

    def _userinfo(self, endpoint: str, access_token: str, subject: str) -> dict[str, Any]:
        try:
            response = self._client.get(endpoint, headers={"Authorization": f"Bearer {access_token}"})
        except httpx.HTTPError as exc:
            raise PscUnavailable(f"userinfo: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise PscUnavailable(f"userinfo answered {response.status_code}")
        if response.headers.get("content-type", "").startswith("application/jwt"):
            token = self._decode(response.text.strip(), list(self.settings.algorithms))
            info = dict(token.claims)
        else:
            info = _json_object(response)
        if info.get("sub") != subject:
            raise PscInvalidToken("userinfo sub differs from the ID token's")
        return info

    # ------------------------------------------------------------------ HTTP
    def _auth_method(self) -> Any:
        if self.settings.auth_method != "tls_client_auth":
            return self.settings.auth_method

        def tls_client_auth(client: ClientAuth, method: str, uri: str, headers: Any, body: str) -> Any:
            # RFC 8705: the certificate authenticates the client; the form names it
            return uri, headers, (body + "&" if body else "") + urlencode({"client_id": client.client_id})

        return tls_client_auth

    def _post(self, url: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        url, headers, body = self._auth.prepare("POST", url, headers, urlencode(form))
        try:
            response = self._client.post(url, content=body.encode("ascii"), headers=headers)
        except httpx.HTTPError as exc:
            raise PscUnavailable(f"POST {url}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise PscUnavailable(f"POST {url} answered {response.status_code}")
        return response.status_code, _json_object(response)

    def _get(self, url: str) -> tuple[int, dict[str, Any]]:
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            raise PscUnavailable(f"GET {url}: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise PscUnavailable(f"GET {url} answered {response.status_code}")
        return response.status_code, _json_object(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PscUnavailable(f"{response.request.url} answered {response.status_code} without JSON") from None
    if not isinstance(body, dict):
        raise PscUnavailable(f"{response.request.url} answered a JSON that is not an object")
    return body


def _positive_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _identifier(claims: Mapping[str, Any]) -> str | None:
    for name in ("SubjectNameID", "preferred_username"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _described(body: Mapping[str, Any]) -> str:
    error = body.get("error", "?")
    description = body.get("error_description")
    return f"{error}: {description}" if description else str(error)


def _authentication_error(status: int, body: Mapping[str, Any]) -> PscError:
    """The backchannel authentication endpoint's refusals (CIBA Core §13)."""
    error = body.get("error")
    detail = f"backchannel {status} {_described(body)}"
    if error == "unknown_user_id":
        return PscUnknownUser(detail)
    if error == "access_denied":
        return PscDenied(detail)
    if error == "expired_login_hint_token":
        return PscExpired(detail)
    return PscRefused(detail)


def _token_error(status: int, body: Mapping[str, Any]) -> PscError:
    """The token endpoint's refusals while polling (CIBA Core §11)."""
    error = body.get("error")
    detail = f"token {status} {_described(body)}"
    if error == "access_denied":
        return PscDenied(detail)
    if error in ("expired_token", "invalid_grant"):
        return PscExpired(detail)
    return PscRefused(detail)
