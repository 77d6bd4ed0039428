"""The teleservices port over HTTP(S): how the counter reaches the national services (or the sandbox).

:class:`HttpTeleservices` implements :class:`appliance.teleservices.Teleservices` against the JSON API
documented in :mod:`sandbox.server`, and INSi in the CNAM service's own protocol, SOAP 1.2 (envelopes in
:mod:`sync.insi_soap`; endpoint and context values in :class:`~sync.insi_soap.InsiSettings`, so that the
real service is a matter of configuration). The Dossier Pharmaceutique (:meth:`HttpTeleservices.dp_consult`,
the ``dp`` outbox stream) speaks an invented JSON protocol: the real one is not public. Failures are told
apart the way the workflow needs:

- no usable answer — connection refused or reset, timeout, connection closed before the answer, a 5xx,
  408 or 429, an answer that is not the expected JSON (or SOAP), a SOAP ``Receiver`` fault →
  :class:`TeleserviceUnavailable` (carry on in degraded mode, complete later);
- the service said no — any other 4xx with ``{"code", "message"}``, a SOAP ``Sender`` fault (whatever the
  HTTP status: INSi serves its refusals with a 500) → :class:`TeleserviceRefused`, whose message (French)
  is shown to the pharmacist.

Interactive calls are tried once with a short timeout (default 2 s): the workflow, not the adapter,
decides to fall back. :meth:`HttpTeleservices.deliver` (the outbox) sends an ``Idempotency-Key`` header
and retries a bounded number of times with exponential backoff when the service is unavailable; the
service applies a key once and replays its answer, so a retry after a lost response is safe.

TLS is verified by default (``verify=True``: the certifi store; a path: that CA bundle; False: no
verification); ``cert=(certificate, key)`` presents the pharmacy's client certificate (mutual TLS).
Error messages carry the service and the kind of failure, never patient data.
"""

from __future__ import annotations

import base64
import functools
import os
import ssl
import time
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote

import httpx

from appliance.domain import (
    AmcRights,
    AmoRights,
    ApcvContext,
    Beneficiary,
    DpEntry,
    Ins,
    InsiResult,
    PrescribedFor,
    Prescription,
    PrescriptionLine,
    Traits,
)
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from sync import dmp_xds, insi_soap
from sync.insi_soap import InsiSettings

Json = dict[str, Any]

STREAM_PATHS = {
    "execution": "/eprescription/executions",
    "batch": "/claims/batches",
    "dmp": "/dmp/repository",
    "dp": "/dp/dispensations",
}
"""Outbox stream → path of the service that receives it (``dmp``: the DMP's XDS.b Document Repository,
IHE ITI-41 in SOAP 1.2 with MTOM/XOP, :mod:`sync.dmp_xds`; ``dp``: the Dossier Pharmaceutique, in the
invented JSON of :meth:`HttpTeleservices.dp_consult`)."""

_TRANSIENT_4XX = frozenset({408, 425, 429})


def ssl_context(verify: bool | str = True, cert: tuple[str, str] | None = None) -> ssl.SSLContext | bool:
    """The TLS settings for httpx: verification on unless ``verify`` is False, with a client certificate.

    One context per set of files (and their versions) for the whole process: the teleservices and Pro Santé
    Connect clients share it instead of each parsing the CA bundle (certifi's is 1.7 MB of X.509 objects in
    the kiosk's memory). ``SSLContext`` is safe to share between connections and threads."""
    files = [path for path in (verify if isinstance(verify, str) else None, *(cert or ())) if path]
    versions = tuple(os.stat(path).st_mtime_ns if os.path.exists(path) else None for path in files)
    return _ssl_context(verify, cert, versions)


@functools.lru_cache(maxsize=8)
def _ssl_context(
    verify: bool | str, cert: tuple[str, str] | None, _versions: tuple[int | None, ...]
) -> ssl.SSLContext | bool:
    if verify is False:
        if cert is None:
            return False
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = httpx.create_ssl_context()
    else:
        context = ssl.create_default_context(cafile=verify)
    if cert is not None:
        context.load_cert_chain(cert[0], cert[1])
    return context


# --- JSON → domain


def _date(value: Any) -> date:
    if not isinstance(value, str):
        raise ValueError("date expected")
    return date.fromisoformat(value)


def _traits(d: Json) -> Traits:
    return Traits(
        birth_name=str(d["birth_name"]),
        first_names=str(d["first_names"]),
        sex=str(d["sex"]),
        birth_date=_date(d["birth_date"]),
        birth_place=d.get("birth_place") or None,
    )


def _ins(d: Json) -> Ins:
    return Ins(matricule=str(d["matricule"]), oid=str(d["oid"]), traits=_traits(d["traits"]))


def _beneficiary(d: Json) -> Beneficiary:
    return Beneficiary(
        nir=str(d["nir"]),
        rank=int(d["rank"]),
        traits=_traits(d["traits"]),
        holder_nir=str(d.get("holder_nir") or ""),
    )


def _amo(d: Json) -> AmoRights:
    return AmoRights(
        nir=str(d["nir"]),
        regime=str(d["regime"]),
        fund=str(d["fund"]),
        valid_from=_date(d["valid_from"]),
        valid_to=_date(d["valid_to"]),
        ald=bool(d.get("ald", False)),
        c2s=bool(d.get("c2s", False)),
    )


def _amc(d: Json) -> AmcRights:
    return AmcRights(
        amc_number=str(d["amc_number"]),
        member_number=str(d["member_number"]),
        valid_from=_date(d["valid_from"]),
        valid_to=_date(d["valid_to"]),
        coverage_pct=int(d["coverage_pct"]),
        accreditation=d.get("accreditation") or None,
        conventions=tuple(str(c) for c in d.get("conventions") or ()),
    )


def _prescription(d: Json) -> Prescription:
    return Prescription(
        prescription_id=str(d["prescription_id"]),
        prescriber=str(d["prescriber"]),
        prescribed_on=_date(d["prescribed_on"]),
        renewals=int(d.get("renewals") or 0),
        lines=tuple(
            PrescriptionLine(
                line_no=int(li["line_no"]),
                label=str(li["label"]),
                quantity=int(li["quantity"]),
                cip13=li.get("cip13") or None,
                ald=bool(li.get("ald", False)),
            )
            for li in d["lines"]
        ),
        patient_nir=d.get("patient_nir") or None,
        prescriber_mailbox=str(d["prescriber_mailbox"]) if d.get("prescriber_mailbox") else None,
        patient=None
        if not d.get("patient")
        else PrescribedFor(
            birth_name=str(d["patient"]["birth_name"]),
            first_names=str(d["patient"]["first_names"]),
            birth_date=_date(d["patient"]["birth_date"]),
        ),
    )


def _dp_entries(d: Json) -> list[DpEntry]:
    return [
        DpEntry(
            day=_date(e["day"]),
            label=str(e["label"]),
            quantity=int(e["quantity"]),
            cip13=e.get("cip13") or None,
            pharmacy=str(e.get("pharmacy") or ""),
        )
        for e in d["dispensations"]
    ]


def _apcv(d: Json) -> ApcvContext:
    return ApcvContext(
        beneficiaries=tuple(_beneficiary(b) for b in d["beneficiaries"]),
        ins={str(nir): _ins(i) for nir, i in (d.get("ins") or {}).items()},
        expires_at=float(d.get("expires_at") or 0.0),
    )


class HttpTeleservices:
    """:class:`~appliance.teleservices.Teleservices` over HTTP(S) with httpx."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 2.0,
        client: httpx.Client | None = None,
        verify: bool | str = True,
        cert: tuple[str, str] | None = None,
        deliver_attempts: int = 4,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        insi: InsiSettings | None = None,
    ) -> None:
        if deliver_attempts < 1:
            raise ValueError("deliver_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self.insi = insi or InsiSettings()
        self.insi_url = self.insi.url(self.base_url)
        self.timeout = timeout
        self.deliver_attempts = deliver_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._sleep = sleep
        self._owns_client = client is None
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(timeout),
            verify=ssl_context(verify, cert),
            headers={"Accept": "application/json", "User-Agent": "comptoir"},
        )

    def close(self) -> None:
        """Close the connections, when the client is ours."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> HttpTeleservices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport

    def _call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Json:
        try:
            response = self._client.request(
                method, self.base_url + path, json=body, params=params, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise TeleserviceUnavailable(f"{service}: no answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise TeleserviceUnavailable(f"{service}: {type(exc).__name__}") from exc
        status = response.status_code
        if status >= 500 or status in _TRANSIENT_4XX:
            raise TeleserviceUnavailable(f"{service}: HTTP {status}")
        if status >= 400:
            code, message = f"HTTP_{status}", f"Le service {service} a refusé la demande (HTTP {status})."
            try:
                error = response.json()
            except ValueError:
                error = None
            if isinstance(error, dict):
                code = str(error.get("code") or code)
                message = str(error.get("message") or message)
            raise TeleserviceRefused(code, message)
        if not 200 <= status < 300:
            raise TeleserviceUnavailable(f"{service}: unexpected HTTP {status}")
        try:
            answer = response.json()
        except ValueError as exc:
            raise TeleserviceUnavailable(f"{service}: answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise TeleserviceUnavailable(f"{service}: answer is not a JSON object")
        return answer

    def _soap(self, request: insi_soap.SoapRequest) -> InsiResult:
        """POST one INSi envelope; a RESULTAT becomes an :class:`InsiResult`, a Fault a refusal or an outage."""
        service = "insi"
        headers = {"Content-Type": request.content_type, "Accept": insi_soap.MEDIA_TYPE}
        try:
            response = self._client.post(self.insi_url, content=request.envelope, headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise TeleserviceUnavailable(f"{service}: no answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise TeleserviceUnavailable(f"{service}: {type(exc).__name__}") from exc
        status = response.status_code
        if status in _TRANSIENT_4XX:
            raise TeleserviceUnavailable(f"{service}: HTTP {status}")
        fault = insi_soap.fault_of(response.content)
        if fault is not None:
            if fault.temporary:
                raise TeleserviceUnavailable(f"{service}: HTTP {status} (SOAP fault {fault.code} {fault.subcode})")
            raise TeleserviceRefused(fault.business_code, fault.message)
        if status >= 500:
            raise TeleserviceUnavailable(f"{service}: HTTP {status}")
        if status >= 400:
            raise TeleserviceRefused(f"HTTP_{status}", f"Le service {service} a refusé la demande (HTTP {status}).")
        if not 200 <= status < 300:
            raise TeleserviceUnavailable(f"{service}: unexpected HTTP {status}")
        try:
            return insi_soap.parse_response(response.content)
        except insi_soap.InsiAnswerError as exc:
            raise TeleserviceUnavailable(f"{service}: answer is not an INSi RESULTAT ({exc})") from exc
        except insi_soap.SoapFault as exc:  # pragma: no cover - fault_of found none
            raise TeleserviceRefused(exc.business_code, exc.message) from exc

    @staticmethod
    def _parse(service: str, parse: Callable[[Json], Any], answer: Json) -> Any:
        try:
            return parse(answer)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TeleserviceUnavailable(f"{service}: answer is not in the expected shape") from exc

    # --- interactive calls

    def apcv_context(self, token: bytes) -> ApcvContext:
        answer = self._call("apcv", "POST", "/apcv/context", body={"token": base64.b64encode(token).decode("ascii")})
        result: ApcvContext = self._parse("apcv", _apcv, answer)
        return result

    def insi_search_card(self, beneficiary: Beneficiary) -> InsiResult:
        """``rechercherInsAvecCarteVitale``: the card holder's NIR, the beneficiary's birth date and rank."""
        return self._soap(insi_soap.card_request(beneficiary, self.insi))

    def insi_search_traits(self, traits: Traits) -> InsiResult:
        """``rechercherInsAvecTraitsIdentite``: birth name, first names, sex, birth date, birth place if known."""
        return self._soap(insi_soap.traits_request(traits, self.insi))

    def adri(self, beneficiary: Beneficiary, day: date) -> AmoRights:
        body = {
            "nir": beneficiary.nir,
            "holder_nir": beneficiary.holder_nir or beneficiary.nir,
            "birth_date": beneficiary.traits.birth_date.isoformat(),
            "rank": beneficiary.rank,
            "day": day.isoformat(),
        }
        result: AmoRights = self._parse("adri", _amo, self._call("adri", "POST", "/adri", body=body))
        return result

    def _amc_call(self, service: str, amc_number: str, member_number: str, nir: str, day: date) -> AmcRights:
        body = {"amc_number": amc_number, "member_number": member_number, "nir": nir, "day": day.isoformat()}
        result: AmcRights = self._parse(service, _amc, self._call(service, "POST", f"/amc/{service}", body=body))
        return result

    def idb(self, amc_number: str, member_number: str, nir: str, day: date) -> AmcRights:
        return self._amc_call("idb", amc_number, member_number, nir, day)

    def dld(self, amc_number: str, member_number: str, nir: str, day: date) -> AmcRights:
        return self._amc_call("dld", amc_number, member_number, nir, day)

    def fetch_prescription(self, prescription_id: str) -> Prescription:
        path = "/eprescription/prescriptions/" + quote(prescription_id, safe="")
        answer = self._call("eprescription", "GET", path)
        result: Prescription = self._parse("eprescription", _prescription, answer)
        return result

    def dp_consult(self, beneficiary: Beneficiary, since: date) -> list[DpEntry]:
        """The dispensations the patient's Dossier Pharmaceutique lists since ``since``, newest first.

        The DP's protocol is not public (it is given to software vendors under agreement), so this one
        is **invented**, JSON over the same mutual-TLS client as the other services; a real connector
        would replace it behind the same port. ``POST /dp/consult`` with the carte Vitale's data::

            {"nir": beneficiary's NIR, "holder_nir": card holder's NIR, "rank": 1,
             "birth_date": "YYYY-MM-DD", "since": "YYYY-MM-DD"}
            → {"dispensations": [{"day", "cip13", "label", "quantity", "pharmacy"}]}

        A card the DP does not know is a refusal (404 ``DP_UNKNOWN``). The feed is the ``dp`` outbox
        stream (:meth:`deliver`, ``POST /dp/dispensations`` with an ``Idempotency-Key``)::

            {"nir", "holder_nir", "rank", "birth_date", "dispensed_on": "YYYY-MM-DD",
             "pharmacy": {"finess", "name"}, "lines": [{"cip13", "quantity", "lot"}]}
            → {"status": "recorded", "dp_id", "lines"}
        """
        body = {
            "nir": beneficiary.nir,
            "holder_nir": beneficiary.holder_nir or beneficiary.nir,
            "rank": beneficiary.rank,
            "birth_date": beneficiary.traits.birth_date.isoformat(),
            "since": since.isoformat(),
        }
        result: list[DpEntry] = self._parse("dp", _dp_entries, self._call("dp", "POST", "/dp/consult", body=body))
        return result

    def remittances(self, since: date) -> list[Json]:
        """Payment and rejection returns (NOEMIE-like) paid on or after ``since`` (back-office side)."""
        answer = self._call("remittance", "GET", "/claims/remittances", params={"since": since.isoformat()})
        found = answer.get("remittances")
        if not isinstance(found, list):
            raise TeleserviceUnavailable("remittance: answer is not in the expected shape")
        return found

    # --- outbox delivery

    def deliver(self, stream: str, key: str, payload: dict[str, Any], *, attempts: int | None = None) -> dict[str, Any]:
        """Send one outbox message; retried with backoff while unavailable, never when refused.

        ``stream`` is "execution" (the payload's ``step`` is 1 or 2), "batch" (answer: the ARL), "dmp"
        (an ITI-41 submission from :meth:`appliance.dmp.Submission.wire`, sent as SOAP 1.2 with MTOM/XOP;
        its uniqueIds, derived from the outbox message, make a repeat harmless) or "dp" (a dispensation
        fed to the Dossier Pharmaceutique, see :meth:`dp_consult`). ``attempts`` overrides
        ``deliver_attempts`` (1 for a delivery tried from the counter, which must not wait). Raises
        :class:`TeleserviceUnavailable` when every attempt failed, so the outbox keeps the message.
        """
        path = STREAM_PATHS.get(stream)
        if path is None:
            raise ValueError(f"unknown outbox stream {stream!r} (expected one of {', '.join(STREAM_PATHS)})")
        if not key:
            raise ValueError("an outbox message needs an idempotency key")
        tries = max(1, attempts if attempts is not None else self.deliver_attempts)
        delay = self.backoff
        for attempt in range(1, tries + 1):
            try:
                if stream == "dmp":
                    return dmp_xds.provide_and_register(
                        self._client, self.base_url + path, payload, timeout=self.timeout
                    )
                return self._call(stream, "POST", path, body=payload, headers={"Idempotency-Key": key})
            except TeleserviceUnavailable:
                if attempt == tries:
                    raise
            self._sleep(delay)
            delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover
