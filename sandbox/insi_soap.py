"""The sandbox's side of INSi: reads the SOAP 1.2 requests and writes the answers the CNAM service gives.

The envelopes are those of the WSDL ``DESIR_ICIR_EXP_1.5.0`` (see :mod:`sync.insi_soap` for the layout
and its sources); this module reads them on its own, with lxml and the published namespaces, so that a
mistake in the box's builder is not mirrored here. What the sandbox checks, each failure answered
with a SOAP 1.2 Fault (HTTP 500, as the service does; 415 for another media type):

- the media type ``application/soap+xml`` and a SOAP 1.2 envelope (a SOAP 1.1 one: ``VersionMismatch``);
- ``wsa:Action`` one of the two operations and ``wsa:MessageID`` present (WS-Addressing subcodes
  ``ActionNotSupported`` / ``MessageAddressingHeaderRequired``), the body the operation's;
- ``ContexteLPS`` with a non-empty ``IDAM``: else the service's own refusal ``siram_100`` / ``desir_550``
  ("Numéro d'autorisation du logiciel inconnu."); ``ContexteBAM`` with its ``Emetteur``;
- the search fields: ``MatriculeOD`` (or ``MatriculeIndividu``) and ``DateNaissance`` by card;
  ``NomNaissance``, ``Prenom``, ``Sexe`` and ``DateNaissance`` by traits.

Answers: ``RESULTAT`` with ``CodeCR`` 00 (one ``INDIVIDU`` with ``INSACTIF``, ``INSHISTO`` and ``TIQ``),
01, or 02. With 02 the service names nobody; the sandbox lists the candidates as ``INDIVIDU`` elements so
that the pharmacist's choice can be exercised (the box reads both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from lxml import etree
from lxml.builder import ElementMaker

from appliance.domain import Ins, InsiOutcome, InsiResult, PastIns, Traits
from sync.insi_soap import (
    LABELS,
    MEDIA_TYPE,
    NS_CTXBAM,
    NS_CTXLPS,
    NS_RECSANS,
    NS_RECVIT,
    NS_RESULTAT,
    NS_SIRAM,
    NS_SOAP,
    NS_SOAP11,
    NS_WSA,
    NS_XML,
    InsiAnswerError,
    Operation,
    parse_xml,
)

FAULT_STATUS = 500
"""The service answers its faults with HTTP 500, Sender ones included."""
INVALID = "requete_invalide"


class RequestFault(Exception):
    """A request the sandbox refuses, answered as a SOAP 1.2 Fault."""

    def __init__(
        self,
        reason: str,
        *,
        code: str = "Sender",
        subcode: str = f"siram:{INVALID}",
        error_code: str = INVALID,
        detail: str = "",
        status: int = FAULT_STATUS,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.error_code = error_code
        self.detail = detail or reason
        self.status = status


def _invalid(what: str) -> RequestFault:
    return RequestFault(f"Requête INSi invalide : {what}.")


@dataclass(frozen=True, slots=True)
class CardSearch:
    holder_nir: str
    birth_date: date
    rank: int


@dataclass(frozen=True, slots=True)
class InsiCall:
    """What a valid request asks, and who asks it."""

    operation: Operation
    message_id: str
    emitter: str
    idam: str
    card: CardSearch | None = None
    traits: Traits | None = None


def _one(parent: etree._Element, path: str, namespaces: dict[str, str]) -> str:
    return (parent.findtext(path, namespaces=namespaces) or "").strip()


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _invalid(f"{name} n'est pas une date AAAA-MM-JJ") from None


def _matricule(element: etree._Element | None) -> str:
    if element is None:
        return ""
    ns = {"v": NS_RECVIT}
    return _one(element, "v:NumIdentifiant", ns) + _one(element, "v:Cle", ns)


def read_request(data: bytes, content_type: str) -> InsiCall:
    """The call a request makes; raises :class:`RequestFault` naming what is wrong with it."""
    if content_type.split(";")[0].strip().lower() != MEDIA_TYPE:
        raise RequestFault(
            f"Requête INSi invalide : type de contenu {MEDIA_TYPE} attendu (SOAP 1.2).",
            status=415,
        )
    try:
        root = parse_xml(data)
    except InsiAnswerError as exc:
        raise _invalid(f"XML illisible ({exc})") from None
    if root.tag == f"{{{NS_SOAP11}}}Envelope":
        raise RequestFault("Enveloppe SOAP 1.1 : le service INSi parle SOAP 1.2.", code="VersionMismatch", subcode="")
    if root.tag != f"{{{NS_SOAP}}}Envelope":
        raise _invalid("l'élément racine n'est pas une enveloppe SOAP 1.2")
    ns = {"s": NS_SOAP, "wsa": NS_WSA, "bam": NS_CTXBAM, "lps": NS_CTXLPS}
    header = root.find("s:Header", ns)
    body = root.find("s:Body", ns)
    if header is None or body is None:
        raise _invalid("en-tête ou corps SOAP absent")
    message_id = _one(header, "wsa:MessageID", ns)
    action = _one(header, "wsa:Action", ns)
    if not action or not message_id:
        missing = "wsa:Action" if not action else "wsa:MessageID"
        raise RequestFault(
            f"Requête INSi invalide : en-tête {missing} absent.",
            subcode="wsa:MessageAddressingHeaderRequired",
        )
    operation = Operation.from_action(action)
    if operation is None:
        raise RequestFault(f"Action {action!r} inconnue du service INSi.", subcode="wsa:ActionNotSupported")
    idam = _one(header, "lps:ContexteLPS/lps:LPS/lps:IDAM", ns)
    if not idam:
        raise RequestFault(
            "L'accès par ce progiciel au service n'est pas autorisé. "
            "Contactez l'éditeur du progiciel ou votre responsable informatique.",
            subcode="siram:siram_100",
            error_code="desir_550",
            detail="Numéro d'autorisation du logiciel inconnu.",
        )
    emitter = _one(header, "bam:ContexteBAM/bam:Emetteur", ns)
    if not emitter:
        raise _invalid("contexte ContexteBAM absent ou sans Emetteur")
    children = list(body)
    if len(children) != 1 or children[0].tag != operation.body_tag:
        raise _invalid(f"le corps ne correspond pas à l'opération {operation.value}")
    search = children[0]
    if operation is Operation.CARD:
        v = {"v": NS_RECVIT}
        holder = _matricule(search.find("v:MatriculeOD", v)) or _matricule(search.find("v:MatriculeIndividu", v))
        if not holder:
            raise _invalid("MatriculeOD manquant")
        born = _one(search, "v:DateNaissance", v)
        if not born:
            raise _invalid("DateNaissance manquante")
        rank_text = _one(search, "v:RangNaissance", v) or "1"
        if not rank_text.isdigit():
            raise _invalid("RangNaissance n'est pas un nombre")
        card = CardSearch(holder, _day(born, "DateNaissance"), int(rank_text))
        return InsiCall(operation, message_id, emitter, idam, card=card)
    r = {"r": NS_RECSANS}
    values = {name: _one(search, f"r:{name}", r) for name in ("NomNaissance", "Sexe", "DateNaissance")}
    first_names = " ".join((p.text or "").strip() for p in search.findall("r:Prenom", r) if (p.text or "").strip())
    absent = [name for name, value in (*values.items(), ("Prenom", first_names)) if not value]
    if absent:
        raise _invalid(f"{', '.join(absent)} manquant(s)")
    traits = Traits(
        birth_name=values["NomNaissance"],
        first_names=first_names,
        sex=values["Sexe"],
        birth_date=_day(values["DateNaissance"], "DateNaissance"),
        birth_place=_one(search, "r:LieuNaissance", r) or None,
    )
    return InsiCall(operation, message_id, emitter, idam, traits=traits)


# --- answers

_S = ElementMaker(namespace=NS_SOAP, nsmap={"soap": NS_SOAP})
_R = ElementMaker(namespace=NS_RESULTAT, nsmap={None: NS_RESULTAT})


def _envelope(content: etree._Element) -> bytes:
    data: bytes = etree.tostring(_S.Envelope(_S.Body(content)), xml_declaration=True, encoding="UTF-8")
    return data


def _id(matricule: str, oid: str) -> list[etree._Element]:
    return [_R.IdIndividu(_R.NumIdentifiant(matricule[:13]), _R.Cle(matricule[13:15])), _R.OID(oid)]


def _individu(ins: Ins, history: tuple[PastIns, ...] = ()) -> etree._Element:
    t = ins.traits
    parts = [_R.INSACTIF(*_id(ins.matricule, ins.oid))]
    for past in history:
        dates = []
        if past.valid_from is not None:
            dates.append(_R.DateDeb(past.valid_from.isoformat()))
        if past.valid_to is not None:
            dates.append(_R.DateFin(past.valid_to.isoformat()))
        parts.append(_R.INSHISTO(*_id(past.matricule, past.oid), *dates))
    traits = [
        _R.NomNaissance(t.birth_name),
        _R.Prenom(t.first_names.split()[0] if t.first_names.split() else t.first_names),
        _R.ListePrenom(t.first_names),
        _R.Sexe(t.sex),
        _R.DateNaissance(t.birth_date.isoformat()),
    ]
    if t.birth_place:
        traits.append(_R.LieuNaissance(t.birth_place))
    parts.append(_R.TIQ(*traits))
    return _R.INDIVIDU(*parts)


def result_envelope(result: InsiResult) -> bytes:
    """The ``RESULTAT`` of a search: 00 with the identity and its INS history, 01, or 02."""
    content = [_R.CR(_R.CodeCR(result.outcome.value), _R.LibelleCR(LABELS[result.outcome]))]
    if result.outcome is InsiOutcome.FOUND:
        content.append(_individu(result.identities[0], result.history))
    elif result.outcome is InsiOutcome.SEVERAL:
        content.extend(_individu(ins) for ins in result.identities)
    return _envelope(_R.RESULTAT(*content))


def fault_envelope(fault: RequestFault, message_id: str = "") -> bytes:
    """A SOAP 1.2 Fault: Code (and Subcode), a French Reason, ``siram:Erreur`` in the Detail."""
    code = [_S.Value(f"soap:{fault.code}")]
    if fault.subcode:
        # A QName: its prefix (wsa or siram) is declared where it is used.
        prefix = fault.subcode.partition(":")[0] if ":" in fault.subcode else ""
        nsmap = {prefix: {"wsa": NS_WSA, "siram": NS_SIRAM}[prefix]} if prefix else {}
        value = etree.Element(f"{{{NS_SOAP}}}Value", nsmap=nsmap)
        value.text = fault.subcode
        code.append(_S.Subcode(value))
    reason = _S.Text(fault.reason)
    reason.set(f"{{{NS_XML}}}lang", "fr")
    erreur = etree.Element(f"{{{NS_SIRAM}}}Erreur", nsmap={"siram": NS_SIRAM})
    erreur.set("code", fault.error_code)
    erreur.set("severite", "erreur")
    if message_id:
        erreur.set("messageID", message_id)
    erreur.text = fault.detail
    return _envelope(_S.Fault(_S.Code(*code), _S.Reason(reason), _S.Detail(erreur)))


def unavailable_envelope() -> bytes:
    """What the fault switch answers: the service could not reach the Assurance Maladie's (Receiver)."""
    fault = RequestFault(
        "Service momentanément indisponible.",
        code="Receiver",
        subcode="siram:siram_40",
        error_code="siram_40",
        detail="Service amont de l'Assurance Maladie indisponible.",
    )
    return fault_envelope(fault)
