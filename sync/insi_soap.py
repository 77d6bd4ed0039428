"""INSi, the CNAM teleservice that returns a person's INS: SOAP 1.2 envelopes built and read with lxml.

The service is described by the WSDL ``DESIR_ICIR_EXP_1.5.0`` (service ``ICIR-v1``, port type
``ICIRService``, document/literal over SOAP 1.2). Two operations, told apart by their WS-Addressing
action ``urn:ServiceIdentiteCertifiee:1.0.0:<operation>``:

- ``rechercherInsAvecCarteVitale``: body ``RECVITALE`` (namespace ``http://www.cnamts.fr/INSiRecVit``)
  with ``MatriculeIndividu`` / ``MatriculeOD`` (``NumIdentifiant`` 13 + ``Cle`` 2), ``NomNaissance``,
  ``DateNaissance``, ``RangNaissance`` — what the carte Vitale says of a beneficiary;
- ``rechercherInsAvecTraitsIdentite``: body ``RECSANSVITALE`` (``http://www.cnamts.fr/INSiRecSans``) with
  ``NomNaissance``, ``Prenom``, ``Sexe``, ``DateNaissance`` and, optionally, ``LieuNaissance`` (COG).

Headers of every request: ``ctxbam:ContexteBAM`` (``urn:siram:bam:ctxbam``, Version 01_02: Id, Temps,
Emetteur, COUVERTURE), ``ctxlps:ContexteLPS`` (``urn:siram:lps:ctxlps``, Nature CTXLPS, Version 01_00:
Id, Temps, Emetteur, LPS with IDAM R="4", Version, Instance, Nom), ``wsa:Action`` and ``wsa:MessageID``
(``http://www.w3.org/2005/08/addressing``). ``wsse:Security`` carries the professional's signed SAML
assertion in CPS mode; with the structure's certificate over mutual TLS (the box's case) there is none.

The answer's body is ``RESULTAT`` (``http://www.cnamts.fr/INSiResultat``): ``CR`` (``CodeCR`` 00 one
identity, 01 none, 02 several; ``LibelleCR``) and, with 00, one ``INDIVIDU``: ``INSACTIF`` (the current
matricule and its OID), ``INSHISTO`` (zero or more former matricules, each with its OID and optional
``DateDeb`` / ``DateFin``) and ``TIQ`` (the traits: ``NomNaissance``, ``Prenom``, ``ListePrenom``,
``Sexe``, ``DateNaissance``, ``LieuNaissance``). The published schema gives no identity with 02; this
reader accepts several ``INDIVIDU`` there (the sandbox lists the candidates so that the pharmacist's
choice can be exercised). A refusal is a SOAP 1.2 Fault (served with HTTP 500 by the service): Code
``Sender`` or ``Receiver``, a Subcode such as ``siram_100``, a French Reason, and ``siram:Erreur``
(``urn:siram``, attributes ``code`` e.g. ``desir_550``, ``severite``, ``messageID``) in its Detail.

Sources: the WSDL and schemas, and the request/response fixtures of the CNDA qualification cases, as
published with the open client padoa/tlsi-ins. Nothing here does I/O: :mod:`sync.teleservices_http`
sends the bytes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from lxml import etree
from lxml.builder import ElementMaker

from appliance.codes.nir import nir_key
from appliance.domain import Beneficiary, Ins, InsiOutcome, InsiResult, PastIns, Traits

NS_SOAP = "http://www.w3.org/2003/05/soap-envelope"
NS_SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
NS_WSA = "http://www.w3.org/2005/08/addressing"
NS_WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS_CTXBAM = "urn:siram:bam:ctxbam"
NS_CTXLPS = "urn:siram:lps:ctxlps"
NS_SIRAM = "urn:siram"
NS_RECVIT = "http://www.cnamts.fr/INSiRecVit"
NS_RECSANS = "http://www.cnamts.fr/INSiRecSans"
NS_RESULTAT = "http://www.cnamts.fr/INSiResultat"
NS_XML = "http://www.w3.org/XML/1998/namespace"

MEDIA_TYPE = "application/soap+xml"
"""SOAP 1.2 over HTTP (RFC 3902); the action travels as the media type's ``action`` parameter too."""

CONTEXT_BAM_VERSION = "01_02"
CONTEXT_LPS_VERSION = "01_00"
LABELS = {
    InsiOutcome.FOUND: "OK",
    InsiOutcome.NONE: "Aucune identite trouvee",
    InsiOutcome.SEVERAL: "Plusieurs identites trouvees",
}
"""``LibelleCR`` of each ``CodeCR``, as the service writes them."""

UNAVAILABLE_SUBCODES = frozenset({"siram_40"})
"""Fault subcodes that mean "an upstream service of the Assurance Maladie is unavailable": try later."""


class Operation(StrEnum):
    """The two operations of the ICIR port type."""

    CARD = "rechercherInsAvecCarteVitale"
    TRAITS = "rechercherInsAvecTraitsIdentite"

    @property
    def action(self) -> str:
        """Its ``wsa:Action`` (and SOAP 1.2 ``action`` media type parameter)."""
        return f"urn:ServiceIdentiteCertifiee:1.0.0:{self.value}"

    @property
    def response_action(self) -> str:
        return self.action + "Response"

    @property
    def body_tag(self) -> str:
        """Clark name of the request body element."""
        return f"{{{NS_RECVIT}}}RECVITALE" if self is Operation.CARD else f"{{{NS_RECSANS}}}RECSANSVITALE"

    @classmethod
    def from_action(cls, action: str) -> Operation | None:
        return next((op for op in cls if op.action == action), None)


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("comptoir")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def _new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class InsiSettings:
    """Where INSi is and who calls it: the values of the context headers, from the configuration.

    The defaults suit the sandbox (``/lps`` under the teleservices' base URL). Against the CNAM service,
    ``endpoint`` is the absolute URL it gives, ``emitter`` the structure's identifier and ``idam`` the
    software's authorisation number; the client certificate is the pharmacy's (mutual TLS).
    """

    endpoint: str = "/lps"
    """A path under the teleservices' base URL, or an absolute ``https://`` URL."""
    emitter: str = "comptoir-sandbox"
    """``Emetteur`` of ContexteBAM and ContexteLPS: the calling structure's identifier (FINESS...)."""
    idam: str = "SANDBOX-IDAM"
    """The software's authorisation number (``IDAM``, R="4"), given by the CNAM to the editor."""
    software_name: str = "comptoir"
    software_version: str = field(default_factory=_package_version)
    instance: str = field(default_factory=_new_uuid)
    """``Instance``: this installation's identifier (a UUID); configure it to keep it across restarts."""

    def url(self, base_url: str) -> str:
        if self.endpoint.startswith(("https://", "http://")):
            return self.endpoint
        return base_url.rstrip("/") + "/" + self.endpoint.lstrip("/")


class InsiSettingsError(ValueError):
    """A ``[teleservices.insi]`` table that cannot be used (the message names the key)."""


_SETTING_KEYS = ("endpoint", "emitter", "idam", "software_name", "software_version", "instance")


def settings_from_table(table: Mapping[str, Any], where: str = "teleservices.insi") -> InsiSettings:
    """Settings from a TOML table; an absolute endpoint (the real service) needs ``emitter`` and ``idam``."""
    if not isinstance(table, Mapping):
        raise InsiSettingsError(f"[{where}] must be a table")
    unknown = sorted(set(table) - set(_SETTING_KEYS))
    if unknown:
        raise InsiSettingsError(f"[{where}] unknown key(s): {', '.join(unknown)} (known: {', '.join(_SETTING_KEYS)})")
    values: dict[str, str] = {}
    for key in _SETTING_KEYS:
        if key in table:
            value = table[key]
            if not isinstance(value, str) or not value.strip():
                raise InsiSettingsError(f"[{where}] {key} must be a non-empty string")
            values[key] = value.strip()
    settings = InsiSettings(**values)
    if settings.endpoint.startswith(("https://", "http://")):
        missing = [key for key in ("emitter", "idam") if key not in values]
        if missing:
            raise InsiSettingsError(
                f"[{where}] an absolute endpoint is a real INSi service: set {' and '.join(missing)} "
                "(the structure's identifier and the software's authorisation number)"
            )
    return settings


# --- building requests

_NSMAP: dict[str | None, str] = {
    "soap": NS_SOAP,
    "wsa": NS_WSA,
    "ctxbam": NS_CTXBAM,
    "ctxlps": NS_CTXLPS,
}
_SOAP = ElementMaker(namespace=NS_SOAP, nsmap=_NSMAP)
_WSA = ElementMaker(namespace=NS_WSA, nsmap=_NSMAP)
_BAM = ElementMaker(namespace=NS_CTXBAM, nsmap=_NSMAP)
_LPS = ElementMaker(namespace=NS_CTXLPS, nsmap=_NSMAP)
_RECVIT = ElementMaker(namespace=NS_RECVIT, nsmap={**_NSMAP, "insi_recvit_ins": NS_RECVIT})
_RECSANS = ElementMaker(namespace=NS_RECSANS, nsmap={**_NSMAP, "insi_recsans_ins": NS_RECSANS})
_WSSE = ElementMaker(namespace=NS_WSSE, nsmap={**_NSMAP, "wsse": NS_WSSE})


@dataclass(frozen=True, slots=True)
class SoapRequest:
    """One envelope ready to POST."""

    operation: Operation
    message_id: str
    envelope: bytes

    @property
    def content_type(self) -> str:
        return f'{MEDIA_TYPE}; charset=utf-8; action="{self.operation.action}"'


def _timestamp(now: datetime) -> str:
    """``xsd:dateTime`` in UTC with milliseconds, as the service's clients write ``Temps``."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.astimezone(UTC).microsecond // 1000:03d}Z"


def _headers(
    operation: Operation,
    settings: InsiSettings,
    message_id: str,
    now: datetime,
    security: etree._Element | None,
) -> list[etree._Element]:
    temps = _timestamp(now)
    headers = [
        _BAM.ContexteBAM(
            _BAM.Id(_new_uuid()),
            _BAM.Temps(temps),
            _BAM.Emetteur(settings.emitter),
            _BAM.COUVERTURE(),
            Version=CONTEXT_BAM_VERSION,
        ),
        _LPS.ContexteLPS(
            _LPS.Id(_new_uuid()),
            _LPS.Temps(temps),
            _LPS.Emetteur(settings.emitter),
            _LPS.LPS(
                _LPS.IDAM(settings.idam, R="4"),
                _LPS.Version(settings.software_version),
                _LPS.Instance(settings.instance),
                _LPS.Nom(settings.software_name),
            ),
            Nature="CTXLPS",
            Version=CONTEXT_LPS_VERSION,
        ),
        _WSA.Action(operation.action),
        _WSA.MessageID(message_id),
    ]
    if security is not None:
        headers.append(_WSSE.Security(security))
    return headers


def _envelope(
    operation: Operation,
    body: etree._Element,
    settings: InsiSettings,
    *,
    message_id: str | None,
    now: datetime | None,
    security: etree._Element | None,
) -> SoapRequest:
    message_id = message_id or f"uuid:{_new_uuid()}"
    now = now or datetime.now(UTC)
    envelope = _SOAP.Envelope(
        _SOAP.Header(*_headers(operation, settings, message_id, now, security)),
        _SOAP.Body(body),
    )
    data = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    return SoapRequest(operation, message_id, data)


def _split_matricule(nir: str, maker: ElementMaker, tag: str) -> etree._Element:
    parts = [maker.NumIdentifiant(nir[:13])]
    if len(nir) >= 15:
        parts.append(maker.Cle(nir[13:15]))
    return maker(tag, *parts)


def card_request(
    beneficiary: Beneficiary,
    settings: InsiSettings,
    *,
    message_id: str | None = None,
    now: datetime | None = None,
    security: etree._Element | None = None,
) -> SoapRequest:
    """``rechercherInsAvecCarteVitale`` for a beneficiary read from a carte Vitale.

    ``MatriculeOD`` is the card holder's NIR (ouvrant droit); ``MatriculeIndividu`` the beneficiary's
    own NIR when the card gives one that differs from the holder's.
    """
    holder = beneficiary.holder_nir or beneficiary.nir
    parts: list[etree._Element] = []
    if beneficiary.nir and beneficiary.nir != holder:
        parts.append(_split_matricule(beneficiary.nir, _RECVIT, "MatriculeIndividu"))
    parts.append(_split_matricule(holder, _RECVIT, "MatriculeOD"))
    if beneficiary.traits.birth_name:
        parts.append(_RECVIT.NomNaissance(beneficiary.traits.birth_name))
    parts.append(_RECVIT.DateNaissance(beneficiary.traits.birth_date.isoformat()))
    parts.append(_RECVIT.RangNaissance(str(beneficiary.rank)))
    body = _RECVIT.RECVITALE(*parts)
    return _envelope(Operation.CARD, body, settings, message_id=message_id, now=now, security=security)


def traits_request(
    traits: Traits,
    settings: InsiSettings,
    *,
    message_id: str | None = None,
    now: datetime | None = None,
    security: etree._Element | None = None,
) -> SoapRequest:
    """``rechercherInsAvecTraitsIdentite``: birth name, first name(s), sex, birth date, optional place."""
    parts = [
        _RECSANS.NomNaissance(traits.birth_name),
        _RECSANS.Prenom(traits.first_names),
        _RECSANS.Sexe(traits.sex),
        _RECSANS.DateNaissance(traits.birth_date.isoformat()),
    ]
    if traits.birth_place:
        parts.append(_RECSANS.LieuNaissance(traits.birth_place))
    body = _RECSANS.RECSANSVITALE(*parts)
    return _envelope(Operation.TRAITS, body, settings, message_id=message_id, now=now, security=security)


# --- reading answers


class InsiAnswerError(ValueError):
    """Not a usable INSi answer: not XML, not a SOAP 1.2 envelope, or not shaped like ``RESULTAT``."""


class SoapFault(Exception):
    """A SOAP 1.2 Fault: the service (or the sandbox) refused the request, or could not serve it."""

    def __init__(
        self,
        code: str,
        subcode: str = "",
        reason: str = "",
        error_code: str = "",
        error_text: str = "",
        severity: str = "",
    ) -> None:
        super().__init__(f"SOAP fault {code} {subcode}".strip())
        self.code = code
        """Local name of the fault code: Sender, Receiver, VersionMismatch, MustUnderstand..."""
        self.subcode = subcode
        """Local name of the first subcode, e.g. ``siram_100``."""
        self.reason = reason
        self.error_code = error_code
        """``siram:Erreur/@code`` of the Detail, e.g. ``desir_550``."""
        self.error_text = error_text
        self.severity = severity

    @property
    def temporary(self) -> bool:
        """The service could not answer now (Receiver fault, upstream unavailable): try again later."""
        return self.code == "Receiver" or self.subcode in UNAVAILABLE_SUBCODES

    @property
    def business_code(self) -> str:
        return self.error_code or self.subcode or self.code or "SOAP_FAULT"

    @property
    def message(self) -> str:
        """For the pharmacist, in French: the Reason, then the Detail's explanation when it adds one."""
        reason = self.reason or "Le téléservice INSi a refusé la demande."
        if self.error_text and self.error_text not in reason:
            return f"{reason} ({self.error_text})"
        return reason


_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_blank_text=True
)


def parse_xml(data: bytes) -> etree._Element:
    """Parse a SOAP message; DTDs are refused (SOAP 1.2 forbids them) and no entity is expanded."""
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise InsiAnswerError(f"not well-formed XML ({exc.msg})") from None
    if root.getroottree().docinfo.doctype:
        raise InsiAnswerError("a SOAP message must not contain a document type declaration")
    return root


def _local(qname_text: str) -> str:
    """``soap:Sender`` → ``Sender`` (fault codes are QNames; the service even prefixes its subcodes)."""
    return qname_text.strip().rpartition(":")[2]


def envelope_body(root: etree._Element) -> etree._Element:
    """The ``Body`` of a SOAP 1.2 envelope; a SOAP 1.1 or other root is not a usable answer."""
    if root.tag == f"{{{NS_SOAP11}}}Envelope":
        raise InsiAnswerError("SOAP 1.1 envelope where SOAP 1.2 is expected")
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise InsiAnswerError(f"root element {root.tag!r} is not a SOAP 1.2 Envelope")
    body = root.find(f"{{{NS_SOAP}}}Body")
    if body is None:
        raise InsiAnswerError("SOAP envelope without a Body")
    return body


def read_fault(fault: etree._Element) -> SoapFault:
    s = f"{{{NS_SOAP}}}"
    code = _local(fault.findtext(f"{s}Code/{s}Value") or "")
    subcode = _local(fault.findtext(f"{s}Code/{s}Subcode/{s}Value") or "")
    texts = fault.findall(f"{s}Reason/{s}Text")
    french = [t for t in texts if (t.get(f"{{{NS_XML}}}lang") or "").lower().startswith("fr")]
    reason = " ".join((french or texts)[0].itertext()).strip() if texts else ""
    error = fault.find(f"{s}Detail/{{{NS_SIRAM}}}Erreur")
    return SoapFault(
        code=code or "Receiver",
        subcode=subcode,
        reason=reason,
        error_code=(error.get("code") or "") if error is not None else "",
        error_text=" ".join(error.itertext()).strip() if error is not None else "",
        severity=(error.get("severite") or "") if error is not None else "",
    )


def fault_of(data: bytes) -> SoapFault | None:
    """The Fault an answer carries, or None (also when the answer is not SOAP at all)."""
    try:
        body = envelope_body(parse_xml(data))
    except InsiAnswerError:
        return None
    fault = body.find(f"{{{NS_SOAP}}}Fault")
    return read_fault(fault) if fault is not None else None


def _text(parent: etree._Element, path: str, *, required: bool = True) -> str:
    value = parent.findtext(path, namespaces={"r": NS_RESULTAT})
    value = (value or "").strip()
    if required and not value:
        raise InsiAnswerError(f"RESULTAT lacks {path.replace('r:', '')}")
    return value


def _day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InsiAnswerError(f"{what} is not a YYYY-MM-DD date") from None  # no patient data in messages


def _matricule(ins: etree._Element, where: str) -> str:
    number = _text(ins, "r:IdIndividu/r:NumIdentifiant")
    key = _text(ins, "r:IdIndividu/r:Cle", required=False)
    if len(number) != 13:
        raise InsiAnswerError(f"{where} NumIdentifiant must have 13 characters")
    return number + (key or nir_key(number))


def _identity(individu: etree._Element) -> tuple[Ins, tuple[PastIns, ...]]:
    active = individu.find(f"{{{NS_RESULTAT}}}INSACTIF")
    tiq = individu.find(f"{{{NS_RESULTAT}}}TIQ")
    if active is None or tiq is None:
        raise InsiAnswerError("INDIVIDU lacks INSACTIF or TIQ")
    first_names = _text(tiq, "r:ListePrenom", required=False) or _text(tiq, "r:Prenom")
    traits = Traits(
        birth_name=_text(tiq, "r:NomNaissance"),
        first_names=first_names,
        sex=_text(tiq, "r:Sexe"),
        birth_date=_day(_text(tiq, "r:DateNaissance"), "DateNaissance"),
        birth_place=_text(tiq, "r:LieuNaissance", required=False) or None,
    )
    ins = Ins(matricule=_matricule(active, "INSACTIF"), oid=_text(active, "r:OID"), traits=traits)
    history = []
    for past in individu.findall(f"{{{NS_RESULTAT}}}INSHISTO"):
        start = _text(past, "r:DateDeb", required=False)
        end = _text(past, "r:DateFin", required=False)
        history.append(
            PastIns(
                matricule=_matricule(past, "INSHISTO"),
                oid=_text(past, "r:OID"),
                valid_from=_day(start, "DateDeb") if start else None,
                valid_to=_day(end, "DateFin") if end else None,
            )
        )
    return ins, tuple(history)


def parse_response(data: bytes) -> InsiResult:
    """The :class:`InsiResult` of an answer. Raises :class:`SoapFault` for a Fault and
    :class:`InsiAnswerError` for anything that is not a RESULTAT the domain can use."""
    body = envelope_body(parse_xml(data))
    fault = body.find(f"{{{NS_SOAP}}}Fault")
    if fault is not None:
        raise read_fault(fault)
    result = body.find(f"{{{NS_RESULTAT}}}RESULTAT")
    if result is None:
        raise InsiAnswerError("SOAP Body holds no RESULTAT")
    code = _text(result, "r:CR/r:CodeCR")
    try:
        outcome = InsiOutcome(code)
    except ValueError:
        raise InsiAnswerError(f"CodeCR {code!r} is not 00, 01 or 02") from None
    found = [_identity(i) for i in result.findall(f"{{{NS_RESULTAT}}}INDIVIDU")]
    if outcome is InsiOutcome.FOUND:
        if len(found) != 1:
            raise InsiAnswerError(f"CodeCR 00 with {len(found)} INDIVIDU (exactly one expected)")
        ins, history = found[0]
        return InsiResult(outcome, (ins,), history)
    if outcome is InsiOutcome.NONE:
        if found:
            raise InsiAnswerError("CodeCR 01 with an INDIVIDU")
        return InsiResult(outcome)
    return InsiResult(outcome, tuple(ins for ins, _ in found))
