"""IHE ITI-41 Provide and Register Document Set-b over SOAP 1.2 with MTOM/XOP: the DMP's feed.

The core builds the submission (:mod:`appliance.dmp`: the CDA and its ``lcm:SubmitObjectsRequest``);
this module carries it the way an XDS.b Document Repository expects (IHE ITI TF-2b 3.41, ITI TF-2x
V.3 web services):

- a SOAP 1.2 envelope whose header has the WS-Addressing ``Action``
  (``urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b``, ``mustUnderstand``), a ``MessageID``, the
  ``ReplyTo`` anonymous address and ``To``; its body is ``xdsb:ProvideAndRegisterDocumentSetRequest``
  with the ``lcm:SubmitObjectsRequest`` and one ``xdsb:Document id="Document01"`` per document;
- MTOM/XOP packaging: ``multipart/related; type="application/xop+xml"; start-info="application/soap+xml"``,
  the envelope as the root part (``application/xop+xml``), each document as a binary part that its
  ``xdsb:Document`` points to with ``xop:Include href="cid:..."``.

The answer is an ``rs:RegistryResponse`` (MTOM or plain SOAP): ``Success`` (or ``PartialSuccess``) is
a delivery; ``Failure`` is a refusal whose first ``RegistryError`` becomes a
:class:`~appliance.teleservices.TeleserviceRefused` with a French message. A SOAP fault from the
``Sender`` is a refusal too; everything else that is not an answer (connection trouble, 5xx,
``Receiver`` faults, an answer that does not parse or does not relate to our message) leaves the
document in the outbox (:class:`~appliance.teleservices.TeleserviceUnavailable`). Messages name the
error codes, never patient data.
"""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from lxml import etree
from lxml.builder import ElementMaker

from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
RESPONSE_ACTION = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-bResponse"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
PARTIAL_SUCCESS = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"
FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"

_TRANSIENT = frozenset({408, 425, 429})
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

REGISTRY_ERRORS = {
    "XDSUnknownPatientId": "Patient inconnu du DMP : aucun DMP ouvert pour cette INS",
    "XDSPatientIdDoesNotMatch": "Identifiant patient différent entre le document et ses métadonnées",
    "XDSRegistryMetadataError": "Métadonnées du document refusées par le DMP",
    "XDSRepositoryMetadataError": "Métadonnées du document refusées par le DMP",
    "XDSRepositoryError": "Document refusé par le DMP",
    "XDSMissingDocument": "Envoi incomplet : le document manque",
    "XDSMissingDocumentMetadata": "Envoi incomplet : les métadonnées du document manquent",
    "XDSDuplicateUniqueIdInRegistry": "Un envoi de même identifiant est déjà dans le DMP",
    "XDSNonIdenticalHash": "Un autre document porte déjà cet identifiant dans le DMP",
    "XDSRegistryNotAvailable": "DMP momentanément indisponible",
    "XDSRegistryBusy": "DMP momentanément indisponible",
}
"""French labels of the IHE error codes (ITI TF-3 4.2.4) shown to the pharmacist."""
_TRANSIENT_ERRORS = frozenset({"XDSRegistryNotAvailable", "XDSRegistryBusy", "XDSRepositoryBusy"})


@dataclass(frozen=True, slots=True)
class MtomRequest:
    content_type: str
    body: bytes
    message_id: str


def envelope(payload: dict[str, Any], *, to: str, message_id: str, cids: list[str]) -> bytes:
    """The SOAP 1.2 envelope of the request, each document replaced by an ``xop:Include`` of ``cids``."""
    s = ElementMaker(namespace=SOAP12, nsmap={"s": SOAP12, "a": WSA})
    a = ElementMaker(namespace=WSA, nsmap={"a": WSA})
    x = ElementMaker(namespace=XDSB, nsmap={"xdsb": XDSB, "xop": XOP})
    must = {f"{{{SOAP12}}}mustUnderstand": "true"}
    submit = etree.fromstring(payload["metadata"], _PARSER)
    documents = [
        x.Document(etree.Element(f"{{{XOP}}}Include", href=f"cid:{cid}"), id=str(doc["id"]))
        for doc, cid in zip(payload["documents"], cids, strict=True)
    ]
    root = s.Envelope(
        s.Header(
            a.Action(ACTION, **must),
            a.MessageID(message_id),
            a.ReplyTo(a.Address(ANONYMOUS)),
            a.To(to, **must),
        ),
        s.Body(x.ProvideAndRegisterDocumentSetRequest(submit, *documents)),
    )
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data


def package(payload: dict[str, Any], *, to: str, message_id: str | None = None) -> MtomRequest:
    """The whole MTOM/XOP request: its ``Content-Type`` header and multipart body."""
    if payload.get("profile") != "ITI-41":
        raise ValueError("the dmp stream carries ITI-41 submissions (appliance.dmp.Submission.wire())")
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    token = uuid.uuid4().hex
    boundary = f"MIMEBoundary_{token}"
    root_cid = f"root.{token}@comptoir"
    cids = [f"doc{i}.{token}@comptoir" for i in range(1, len(payload["documents"]) + 1)]
    parts = [
        (
            f'Content-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <{root_cid}>\r\n\r\n"
        ).encode("ascii")
        + envelope(payload, to=to, message_id=message_id, cids=cids)
    ]
    for doc, cid in zip(payload["documents"], cids, strict=True):
        head = (
            f"Content-Type: {doc['mime_type']}\r\nContent-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n"
        ).encode("ascii")
        parts.append(head + bytes(doc["content"]))
    delimiter = f"--{boundary}".encode("ascii")
    body = b"".join(delimiter + b"\r\n" + part + b"\r\n" for part in parts) + delimiter + b"--\r\n"
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; start="<{root_cid}>"; '
        f'start-info="application/soap+xml"; action="{ACTION}"'
    )
    return MtomRequest(content_type, body, message_id)


def mime_parts(content_type: str, body: bytes) -> tuple[bytes, dict[str, bytes]]:
    """The root part and the other parts by Content-ID (without angle brackets) of a multipart/related
    body; a body that is not multipart is its own root."""
    if not content_type.lower().startswith("multipart/"):
        return body, {}
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise ValueError("multipart body without parts")
    start = str(message.get_param("start", "", header="content-type") or "").strip("<>")
    parts: dict[str, bytes] = {}
    root: bytes | None = None
    for part in message.iter_parts():
        cid = str(part.get("Content-ID", "")).strip().strip("<>")
        data = part.get_payload(decode=True)
        content = data if isinstance(data, bytes) else b""
        if root is None and (not start or cid == start):
            root = content
        else:
            parts[cid] = content
    if root is None:
        raise ValueError("no root part")
    return root, parts


@dataclass(frozen=True, slots=True)
class RegistryError:
    code: str
    context: str
    severity: str
    location: str


@dataclass(frozen=True, slots=True)
class RegistryResult:
    status: str
    errors: tuple[RegistryError, ...]
    relates_to: str | None


def _soap(root_part: bytes) -> etree._Element:
    doc = etree.fromstring(root_part, _PARSER)
    if doc.tag != f"{{{SOAP12}}}Envelope":
        raise ValueError("not a SOAP 1.2 envelope")
    return doc


def fault_of(envelope_el: etree._Element) -> tuple[str, str] | None:
    """(code value, reason) of a SOAP 1.2 fault, or None."""
    fault = envelope_el.find(f"{{{SOAP12}}}Body/{{{SOAP12}}}Fault")
    if fault is None:
        return None
    code = fault.findtext(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value", default="") or ""
    reason = fault.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text", default="") or ""
    return code.rsplit(":", 1)[-1], reason


def registry_result(envelope_el: etree._Element) -> RegistryResult:
    response = envelope_el.find(f"{{{SOAP12}}}Body/{{{RS}}}RegistryResponse")
    if response is None:
        raise ValueError("no RegistryResponse in the answer")
    errors = tuple(
        RegistryError(
            code=str(e.get("errorCode", "")),
            context=str(e.get("codeContext", "")),
            severity=str(e.get("severity", "")),
            location=str(e.get("location", "")),
        )
        for e in response.iterfind(f"{{{RS}}}RegistryErrorList/{{{RS}}}RegistryError")
    )
    relates = envelope_el.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}RelatesTo")
    return RegistryResult(str(response.get("status", "")), errors, relates)


def refusal(errors: tuple[RegistryError, ...]) -> TeleserviceRefused:
    """The refusal shown to the pharmacist for a Failure: the first error's code and a French label."""
    first = next((e for e in errors if not e.severity.endswith("Warning")), errors[0] if errors else None)
    if first is None:
        return TeleserviceRefused("XDSFailure", "Le DMP a refusé le document.")
    label = REGISTRY_ERRORS.get(first.code, "Le DMP a refusé le document")
    detail = first.context.strip()[:200]
    return TeleserviceRefused(first.code, f"{label} : {detail}" if detail else label)


def provide_and_register(client: httpx.Client, url: str, payload: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Send one ITI-41 submission to the repository at ``url``; the answer as a small JSON-able dict."""
    request = package(payload, to=url)
    headers = {
        "Content-Type": request.content_type,
        "Accept": "multipart/related, application/soap+xml",
        "MIME-Version": "1.0",
    }
    try:
        response = client.post(url, content=request.body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise TeleserviceUnavailable(f"dmp: no answer within {timeout:g} s") from exc
    except httpx.TransportError as exc:
        raise TeleserviceUnavailable(f"dmp: {type(exc).__name__}") from exc
    status = response.status_code
    if status in _TRANSIENT:
        raise TeleserviceUnavailable(f"dmp: HTTP {status}")
    try:
        root_part, _ = mime_parts(response.headers.get("content-type", ""), response.content)
        answer = _soap(root_part)
    except (ValueError, etree.XMLSyntaxError) as exc:
        if status >= 500:
            raise TeleserviceUnavailable(f"dmp: HTTP {status}") from exc
        if status >= 400:
            raise TeleserviceRefused(f"HTTP_{status}", f"Le DMP a refusé la demande (HTTP {status}).") from exc
        raise TeleserviceUnavailable("dmp: the answer is not a SOAP 1.2 message") from exc
    fault = fault_of(answer)
    if fault is not None:
        code, reason = fault
        if code in ("Sender", "VersionMismatch", "MustUnderstand", "DataEncodingUnknown"):
            raise TeleserviceRefused(f"SOAP_{code}", f"Le DMP a refusé la demande : {reason[:200]}")
        raise TeleserviceUnavailable(f"dmp: HTTP {status}, SOAP fault {code}")
    if not 200 <= status < 300:
        raise TeleserviceUnavailable(f"dmp: unexpected HTTP {status}")
    try:
        result = registry_result(answer)
    except ValueError as exc:
        raise TeleserviceUnavailable(f"dmp: {exc}") from exc
    if result.relates_to is not None and result.relates_to != request.message_id:
        raise TeleserviceUnavailable("dmp: the answer relates to another message")
    action = answer.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}Action")
    if action is not None and action != RESPONSE_ACTION:
        raise TeleserviceUnavailable("dmp: unexpected answer action")
    if result.status in (SUCCESS, PARTIAL_SUCCESS):
        return {
            "status": result.status.rsplit(":", 1)[-1],
            "document_unique_id": payload.get("document_unique_id"),
            "warnings": [e.code for e in result.errors],
        }
    if result.status == FAILURE:
        if result.errors and all(e.code in _TRANSIENT_ERRORS for e in result.errors):
            raise TeleserviceUnavailable(f"dmp: {result.errors[0].code}")
        raise refusal(result.errors)
    raise TeleserviceUnavailable("dmp: RegistryResponse without a known status")
