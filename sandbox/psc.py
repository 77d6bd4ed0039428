"""A sandbox Pro Santé Connect: an OpenID provider speaking CIBA (poll mode) on the sandbox server.

It plays the national identity provider for the kiosk's e-CPS login, laid out as Pro Santé Connect
is (a Keycloak realm ``esante-wallet``), under ``{sandbox}/psc/auth/realms/esante-wallet``::

    GET  /.well-known/openid-configuration         discovery (also as wallet-openid-configuration)
    GET  /protocol/openid-connect/certs            JWKS: the signing key made when first needed
    POST /protocol/openid-connect/ext/ciba/auth    backchannel authentication request
         form: scope (with openid), login_hint (8 + RPPS), acr_values (eidas1), binding_message,
         requested_expiry; client authentication client_secret_basic or client_secret_post
         → {"auth_req_id", "expires_in", "interval"}; 400 invalid_request, invalid_scope,
           unknown_user_id, invalid_binding_message; 401 invalid_client
    POST /protocol/openid-connect/token            grant_type=urn:openid:params:grant-type:ciba, auth_req_id
         → {"access_token", "token_type": "Bearer", "expires_in", "id_token"}; 400 authorization_pending,
           slow_down (a poll sooner than the interval; the interval grows by 5 s), expired_token,
           access_denied, invalid_grant (unknown or already used), unsupported_grant_type
    GET  /protocol/openid-connect/userinfo         Bearer access token → sub, SubjectNameID, names, otherIds

ID tokens are RS256 (or ES256) JWS with ``iss``, ``sub``, ``aud``/``azp`` (the client), ``exp``, ``iat``,
``auth_time``, ``acr`` (eidas1), ``at_hash``, ``preferred_username`` (the national identifier) and the
``urn:openid:params:jwt:claim:auth_req_id`` binding. The professionals are :data:`PROFESSIONALS`
(the scenario operators and the population's prescribers) plus those a test adds.

Test controls, to play the phone (not counted, no faults)::

    GET  /_sandbox/psc/requests       → {"requests": [{"auth_req_id", "rpps", "binding_message", "status", "polls"}]}
    POST /_sandbox/psc/approve        {"auth_req_id"} or {"rpps"}: the newest pending request of that
    POST /_sandbox/psc/deny           professional is validated / refused on the phone (404 if none)
    POST /_sandbox/psc/settings       {"interval", "expires_in", "auto": "approve"|"deny"|null,
                                       "after_polls", "slow_down": n, "forge": ..., "down": bool,
                                       "identifier_in_id_token": bool} → the settings now
    POST /_sandbox/psc/professionals  {"rpps", "given_name", "family_name"}
    POST /_sandbox/psc/reset          requests, tokens and settings back to the start

``forge`` makes the next ID tokens wrong on purpose, for the client's refusals: ``signature`` (another
key under the provider's kid), ``unknown-key``, ``audience``, ``issuer``, ``expired``, ``auth_req_id``,
``other-professional``, ``hs256`` (signed with the client secret), ``none`` (unsigned).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, RSAKey

ISSUER_PATH = "/psc/auth/realms/esante-wallet"
PREFIX = "/psc/"
CONTROL_PREFIX = "/_sandbox/psc/"
OIDC = "/protocol/openid-connect"
CLIENT_ID = "comptoir-sandbox"
CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's published test credentials, never a real secret
CIBA_GRANT_TYPE = "urn:openid:params:grant-type:ciba"
AUTH_REQ_ID_CLAIM = "urn:openid:params:jwt:claim:auth_req_id"
ACR = "eidas1"
FORGERIES = ("signature", "unknown-key", "audience", "issuer", "expired", "auth_req_id", "other-professional")
FORGERIES_UNSIGNED = ("hs256", "none")
MAX_BINDING_MESSAGE = 64
Json = dict[str, Any]
Answer = tuple[int, str, bytes, dict[str, str]]
"""HTTP status, content type, body, extra headers."""


@dataclass(frozen=True)
class Professional:
    rpps: str
    given_name: str
    family_name: str
    profession: str = "pharmacien"

    @property
    def national_id(self) -> str:
        return "8" + self.rpps


PROFESSIONALS: dict[str, Professional] = {
    p.rpps: p
    for p in (
        Professional("10000000007", "Alice", "MARTIN", "pharmacien"),
        Professional("10000000015", "Bruno", "LEROY", "preparateur"),
        Professional("10001234567", "Hélène", "VIDAL", "medecin"),
        Professional("10002345678", "Minh", "NGUYEN", "medecin"),
        Professional("10003456789", "Pierre", "COLONNA", "medecin"),
    )
}
"""Who has an e-CPS here: the scenarios' pharmacist (alice) and préparateur (bruno), and the
population's prescribers (an e-CPS this pharmacy does not know: ``operator.psc.unknown``)."""


@dataclass
class PscBehaviour:
    """How the provider and the "phone" behave (``/_sandbox/psc/settings``)."""

    interval: int = 1
    """Seconds between polls (Pro Santé Connect says 5; the sandbox is quicker for the demo)."""
    expires_in: int = 120
    auto: str | None = None
    """``approve`` or ``deny``: the phone answers by itself after ``after_polls`` polls."""
    after_polls: int = 1
    slow_down: int = 0
    """The next ``slow_down`` polls are told ``slow_down`` whatever their pace."""
    forge: str | None = None
    down: bool = False
    """Every provider endpoint answers 503 (the provider is down)."""
    identifier_in_id_token: bool = True
    """False: the ID token carries no national identifier, the client must ask userinfo."""


@dataclass
class CibaRequest:
    auth_req_id: str
    client_id: str
    professional: Professional
    binding_message: str
    expires_at: float
    interval: int
    status: str = "pending"
    """``pending``, ``approved``, ``denied`` or ``delivered`` (tokens issued: the id is spent)."""
    polls: int = 0
    last_poll: float | None = None
    created: float = 0.0


@dataclass
class _Issued:
    professional: Professional
    subject: str
    expires_at: float


class PscRefusal(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


class PscProvider:
    """The provider's state and answers, independent of HTTP (:mod:`sandbox.server` mounts it)."""

    def __init__(
        self,
        professionals: Mapping[str, Professional] = PROFESSIONALS,
        *,
        clients: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
        algorithm: str = "RS256",
    ) -> None:
        if algorithm not in ("RS256", "ES256"):
            raise ValueError("algorithm must be RS256 or ES256")
        self.professionals = dict(professionals)
        self._default_professionals = dict(professionals)
        self.clients = dict(clients or {CLIENT_ID: CLIENT_SECRET})
        self.clock, self.now, self.algorithm = clock, now, algorithm
        self.behaviour = PscBehaviour()
        self.requests: dict[str, CibaRequest] = {}
        self._tokens: dict[str, _Issued] = {}
        self._lock = threading.RLock()
        self._key: Key | None = None

    # ------------------------------------------------------------------ keys
    @property
    def key(self) -> Key:
        """The signing key, made on first use (an RSA key takes a moment; most sandboxes never need one)."""
        with self._lock:
            if self._key is None:
                self._key = self._new_key(f"sandbox-{secrets.token_hex(4)}")
            return self._key

    def _new_key(self, kid: str) -> Key:
        parameters: Any = {"kid": kid, "use": "sig", "alg": self.algorithm}
        if self.algorithm == "ES256":
            return ECKey.generate_key("P-256", parameters)
        return RSAKey.generate_key(2048, parameters)

    def jwks(self) -> Json:
        return {"keys": [self.key.as_dict(private=False)]}

    # ------------------------------------------------------------------ HTTP
    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes, base_url: str) -> Answer:
        """Answer one request under :data:`PREFIX` or :data:`CONTROL_PREFIX`."""
        try:
            if path.startswith(CONTROL_PREFIX):
                return _json(200, self._control(method, path[len(CONTROL_PREFIX) :], _json_body(body)))
            issuer = base_url + ISSUER_PATH
            if not path.startswith(ISSUER_PATH + "/"):
                raise PscRefusal(404, "not_found", f"no endpoint {path}")
            if self.behaviour.down:
                return _json(503, {"error": "temporarily_unavailable", "error_description": "sandbox PSC down"})
            tail = path[len(ISSUER_PATH) :]
            match method, tail:
                case "GET", "/.well-known/openid-configuration" | "/.well-known/wallet-openid-configuration":
                    return _json(200, self.discovery(issuer))
                case "GET", "/protocol/openid-connect/certs":
                    return _json(200, self.jwks())
                case "POST", "/protocol/openid-connect/ext/ciba/auth":
                    form = _form(headers, body)
                    return _json(200, self.backchannel(self._client(headers, form), form))
                case "POST", "/protocol/openid-connect/token":
                    form = _form(headers, body)
                    return _json(200, self.token(self._client(headers, form), form, issuer), no_store=True)
                case (("GET" | "POST"), "/protocol/openid-connect/userinfo"):
                    return _json(200, self.userinfo(headers.get("Authorization", "")))
                case "GET", "/protocol/openid-connect/auth":
                    raise PscRefusal(400, "unsupported_response_type", "sandbox: CIBA only, no browser flow")
            raise PscRefusal(404, "not_found", f"no endpoint {method} {path}")
        except PscRefusal as refusal:
            extra = {"WWW-Authenticate": 'Basic realm="esante-wallet"'} if refusal.status == 401 else {}
            answer = _json(refusal.status, {"error": refusal.error, "error_description": refusal.description})
            return answer[0], answer[1], answer[2], {**answer[3], **extra}

    def discovery(self, issuer: str) -> Json:
        oidc = issuer + OIDC
        return {
            "issuer": issuer,
            "authorization_endpoint": oidc + "/auth",
            "token_endpoint": oidc + "/token",
            "userinfo_endpoint": oidc + "/userinfo",
            "jwks_uri": oidc + "/certs",
            "backchannel_authentication_endpoint": oidc + "/ext/ciba/auth",
            "backchannel_token_delivery_modes_supported": ["poll"],
            "backchannel_user_code_parameter_supported": False,
            "grant_types_supported": ["authorization_code", "refresh_token", CIBA_GRANT_TYPE],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({"RS256", self.algorithm}),  # RS256 is a must
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "scope_all"],
            "acr_values_supported": [ACR],
            "claims_supported": ["sub", "SubjectNameID", "preferred_username", "given_name", "family_name", "acr"],
        }

    # ------------------------------------------------------------------ CIBA
    def _client(self, headers: Mapping[str, str], form: dict[str, str]) -> str:
        """client_secret_basic (PSC's) or client_secret_post; anything else is invalid_client."""
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise PscRefusal(401, "invalid_client", "unreadable Basic credentials") from None
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        known = self.clients.get(client_id)
        if known is None or not secrets.compare_digest(known, secret):
            raise PscRefusal(401, "invalid_client", "unknown client or wrong secret")
        return client_id

    def backchannel(self, client_id: str, form: dict[str, str]) -> Json:
        if "openid" not in form.get("scope", "").split():
            raise PscRefusal(400, "invalid_scope", "scope must include openid")
        hints = [name for name in ("login_hint", "login_hint_token", "id_token_hint") if form.get(name)]
        if hints != ["login_hint"]:
            raise PscRefusal(400, "invalid_request", "exactly one hint, login_hint (national identifier)")
        acr = form.get("acr_values")
        if acr is not None and ACR not in acr.split():
            raise PscRefusal(400, "invalid_request", f"acr_values: {ACR} only")
        message = form.get("binding_message", "")
        if len(message) > MAX_BINDING_MESSAGE or any(ord(c) < 32 for c in message):
            raise PscRefusal(400, "invalid_binding_message", f"binding_message: at most {MAX_BINDING_MESSAGE} chars")
        hint = form["login_hint"]
        with self._lock:
            professional = self.professionals.get(hint[1:]) if len(hint) == 12 and hint[0] == "8" else None
            if professional is None:
                raise PscRefusal(400, "unknown_user_id", "no active e-CPS for this national identifier")
            behaviour = self.behaviour
            expires_in = behaviour.expires_in
            requested = form.get("requested_expiry")
            if requested is not None:
                if not requested.isdigit() or int(requested) <= 0:
                    raise PscRefusal(400, "invalid_request", "requested_expiry must be a positive integer")
                expires_in = min(expires_in, int(requested))
            now = self.clock()
            request = CibaRequest(
                auth_req_id=secrets.token_urlsafe(24),
                client_id=client_id,
                professional=professional,
                binding_message=message,
                expires_at=now + expires_in,
                interval=behaviour.interval,
                created=now,
                last_poll=now,
            )
            self.requests[request.auth_req_id] = request
        return {"auth_req_id": request.auth_req_id, "expires_in": expires_in, "interval": request.interval}

    def token(self, client_id: str, form: dict[str, str], issuer: str) -> Json:
        if form.get("grant_type") != CIBA_GRANT_TYPE:
            raise PscRefusal(400, "unsupported_grant_type", "this sandbox token endpoint serves CIBA only")
        with self._lock:
            request = self.requests.get(form.get("auth_req_id", ""))
            if request is None or request.client_id != client_id or request.status == "delivered":
                raise PscRefusal(400, "invalid_grant", "unknown or spent auth_req_id")
            now = self.clock()
            if now >= request.expires_at:
                raise PscRefusal(400, "expired_token", "the authentication request expired")
            too_soon = request.last_poll is not None and now - request.last_poll < request.interval - 0.2
            request.last_poll = now
            behaviour = self.behaviour
            if behaviour.slow_down > 0 or too_soon:
                behaviour.slow_down = max(0, behaviour.slow_down - 1)
                request.interval += 5
                raise PscRefusal(400, "slow_down", f"poll every {request.interval} s")
            request.polls += 1
            if request.status == "pending" and behaviour.auto and request.polls >= behaviour.after_polls:
                request.status = "approved" if behaviour.auto == "approve" else "denied"
            if request.status == "denied":
                raise PscRefusal(400, "access_denied", "the professional refused on the phone")
            if request.status == "pending":
                raise PscRefusal(400, "authorization_pending", "waiting for the professional")
            request.status = "delivered"
            return self._tokens_for(request, issuer)

    def _tokens_for(self, request: CibaRequest, issuer: str) -> Json:
        professional = request.professional
        forge = self.behaviour.forge
        if forge == "other-professional":
            professional = next(p for p in self.professionals.values() if p.rpps != professional.rpps)
        access_token = secrets.token_urlsafe(32)
        now = int(self.now())
        subject = f"f:sandbox:{professional.national_id}"
        self._tokens[access_token] = _Issued(professional, subject, self.clock() + 300)
        claims: Json = {
            "iss": issuer,
            "sub": subject,
            "aud": request.client_id,
            "azp": request.client_id,
            "exp": now + 300,
            "iat": now,
            "auth_time": now,
            "acr": ACR,
            "at_hash": _half_hash(access_token, self.algorithm),
            AUTH_REQ_ID_CLAIM: request.auth_req_id,
            "given_name": professional.given_name,
            "family_name": professional.family_name,
        }
        if self.behaviour.identifier_in_id_token:
            claims["preferred_username"] = professional.national_id
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "openid scope_all",
            "id_token": self._id_token(claims, forge, request.client_id),
        }

    def _id_token(self, claims: Json, forge: str | None, client_id: str) -> str:
        header: Json = {"alg": self.algorithm, "kid": self.key.kid, "typ": "JWT"}
        key = self.key
        match forge:
            case "signature":
                key = self._new_key(str(self.key.kid))
            case "unknown-key":
                key = self._new_key("sandbox-unknown")
                header["kid"] = "sandbox-unknown"
            case "audience":
                claims["aud"], claims["azp"] = "another-client", "another-client"
            case "issuer":
                claims["iss"] = "https://psc.invalid/auth/realms/esante-wallet"
            case "expired":
                issued = int(claims["iat"]) - 4000
                claims.update(iat=issued, auth_time=issued, exp=issued + 400)
            case "auth_req_id":
                claims[AUTH_REQ_ID_CLAIM] = "another-request"
            case "hs256":
                secret = OctKey.import_key(self.clients[client_id].encode())
                return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, secret, algorithms=["HS256"])
            case "none":
                parts = [{"alg": "none", "typ": "JWT"}, claims]
                return ".".join(_b64(json.dumps(p).encode()) for p in parts) + "."
        return jwt.encode(header, claims, key, algorithms=[self.algorithm])

    def userinfo(self, authorization: str) -> Json:
        if not authorization.startswith("Bearer "):
            raise PscRefusal(401, "invalid_token", "Bearer access token required")
        with self._lock:
            issued = self._tokens.get(authorization[7:])
            if issued is None or self.clock() >= issued.expires_at:
                raise PscRefusal(401, "invalid_token", "unknown or expired access token")
        p = issued.professional
        return {
            "sub": issued.subject,
            "SubjectNameID": p.national_id,
            "preferred_username": p.national_id,
            "given_name": p.given_name,
            "family_name": p.family_name,
            "otherIds": [{"identifiant": p.rpps, "origine": "RPPS", "qualite": 1}],
            "SubjectRefPro": {"exercices": [{"codeProfession": p.profession}]},
        }

    # ------------------------------------------------------------------ the phone, for tests and the demo
    def answer(self, approve: bool, *, auth_req_id: str | None = None, rpps: str | None = None) -> CibaRequest:
        """The professional validates (or refuses) on the phone: that request, or the newest pending one
        of that RPPS."""
        with self._lock:
            if auth_req_id is not None:
                request = self.requests.get(auth_req_id)
            else:
                pending = [r for r in self.requests.values() if r.status == "pending" and r.professional.rpps == rpps]
                request = max(pending, key=lambda r: r.created) if pending else None
            if request is None or request.status != "pending":
                raise PscRefusal(404, "not_found", "no pending request to answer")
            request.status = "approved" if approve else "denied"
            return request

    def pending(self) -> list[Json]:
        with self._lock:
            return [
                {
                    "auth_req_id": r.auth_req_id,
                    "rpps": r.professional.rpps,
                    "binding_message": r.binding_message,
                    "status": r.status,
                    "polls": r.polls,
                }
                for r in self.requests.values()
            ]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._tokens.clear()
            self.behaviour = PscBehaviour()
            self.professionals = dict(self._default_professionals)

    def configure(self, body: Json) -> Json:
        with self._lock:
            current = asdict(self.behaviour)
            unknown = set(body) - set(current)
            if unknown:
                raise PscRefusal(400, "invalid_request", f"unknown setting(s): {', '.join(sorted(unknown))}")
            merged = {**current, **body}
            for name in ("interval", "expires_in", "after_polls"):
                if not isinstance(merged[name], int) or isinstance(merged[name], bool) or merged[name] < 1:
                    raise PscRefusal(400, "invalid_request", f"{name} must be a positive integer")
            if not isinstance(merged["slow_down"], int) or merged["slow_down"] < 0:
                raise PscRefusal(400, "invalid_request", "slow_down must be a whole number")
            if merged["auto"] not in (None, "approve", "deny"):
                raise PscRefusal(400, "invalid_request", "auto: approve, deny or null")
            if merged["forge"] not in (None, *FORGERIES, *FORGERIES_UNSIGNED):
                raise PscRefusal(400, "invalid_request", f"forge: {', '.join((*FORGERIES, *FORGERIES_UNSIGNED))}")
            self.behaviour = PscBehaviour(**merged)
            return asdict(self.behaviour)

    def _control(self, method: str, name: str, body: Json) -> Json:
        match method, name:
            case "GET", "requests":
                return {"requests": self.pending()}
            case "POST", "approve" | "deny":
                auth_req_id, rpps = body.get("auth_req_id"), body.get("rpps")
                if (
                    not isinstance(auth_req_id, str | None)
                    or not isinstance(rpps, str | None)
                    or not (auth_req_id or rpps)
                ):
                    raise PscRefusal(400, "invalid_request", "auth_req_id or rpps")
                request = self.answer(name == "approve", auth_req_id=auth_req_id, rpps=rpps)
                return {"auth_req_id": request.auth_req_id, "status": request.status}
            case "POST", "settings":
                return self.configure(body)
            case "POST", "professionals":
                fields_ = [body.get(k) for k in ("rpps", "given_name", "family_name")]
                if not all(isinstance(v, str) and v for v in fields_) or not (
                    len(fields_[0] or "") == 11 and str(fields_[0]).isdigit()
                ):
                    raise PscRefusal(400, "invalid_request", "rpps (11 digits), given_name, family_name")
                professional = Professional(*[str(v) for v in fields_])
                with self._lock:
                    self.professionals[professional.rpps] = professional
                return {"rpps": professional.rpps}
            case "POST", "reset":
                self.reset()
                return {"status": "reset"}
        raise PscRefusal(404, "not_found", f"no control {method} {name}")


def _half_hash(value: str, algorithm: str) -> str:
    digest = hashlib.sha256(value.encode("ascii")).digest()  # RS256 and ES256 both hash with SHA-256
    return _b64(digest[: len(digest) // 2])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(status: int, body: Json, *, no_store: bool = False) -> Answer:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"} if no_store or status >= 400 else {}
    return status, "application/json", json.dumps(body, ensure_ascii=False).encode("utf-8"), headers


def _json_body(body: bytes) -> Json:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PscRefusal(400, "invalid_request", "body must be JSON") from None
    if not isinstance(value, dict):
        raise PscRefusal(400, "invalid_request", "body must be a JSON object")
    return value


def _form(headers: Mapping[str, str], body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; a repeated parameter is invalid (RFC 6749 §3.2)."""
    if not headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
        raise PscRefusal(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise PscRefusal(400, "invalid_request", "unreadable form") from None
    if any(len(values) != 1 for values in parsed.values()):
        raise PscRefusal(400, "invalid_request", "a parameter is repeated")
    return {name: values[0] for name, values in parsed.items()}


__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "ISSUER_PATH",
    "PROFESSIONALS",
    "Professional",
    "PscBehaviour",
    "PscProvider",
]
