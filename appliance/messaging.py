"""Secure messaging (MSSanté): the mails the counter sends, composed from the store (no network here).

Three kinds of message leave the box through the outbox (stream ``mssante``, one row of
``secure_messages`` each, the outbox naming ids only):

- ``receipt``: the receipt of a claim, to the patient's Mon Espace Santé mailbox;
- ``dmp-document``: a copy of a document fed to the DMP, to the same mailbox, unless the patient chose
  to hide it from themselves;
- ``prescriber-summary``: the dispensing summary, to the prescriber's MSSanté address given by the
  ePrescription, when the patient agreed.

The patient's address is derived from their INS: ``<INS matricule>@patient.mssante.fr``; it is used
for a qualified identity only (RNIV: the INS travels only once qualified), which the counter checks
when it queues the message and :meth:`~appliance.store.records.CounterRecords.secure_message_facts`
checks again when it is sent.

:func:`compose` turns those facts into a MIME ``multipart/mixed`` message (:mod:`email`, policy
SMTP): a ``text/plain`` part, and for a DMP document an ``IHE_XDM.zip`` archive (IHE ITI XDM:
``INDEX.HTM``, ``README.TXT`` and ``IHE_XDM/SUBSET01/`` with ``METADATA.XML``, the XDS metadata of
:mod:`appliance.dmp` with the XDM ``URI``/``size``/``hash`` slots, and the CDA ``DOC0001.XML``). The
conventions of the ANS "Référentiel socle MSSanté #2" (clients de messagerie) are followed where they
apply: a message carrying an XDM archive has the subject ``XDM/1.0/DDM+<libellé> <NOM> <prénom>
<JJ/MM/AAAA>`` and the headers ``X-MSS-CODECDA`` (the CDA's type code) and ``X-MSS-INS`` (``O``: the
archive identifies the patient by a qualified INS); ``X-MSS-NIL`` (the software's product reference)
goes on every message when configured; ``X-MSS-MES: FIN`` tells Mon Espace Santé that the patient
cannot answer (the counter's mailbox is not read). One patient per message. The transport is the
:class:`~appliance.ports.SecureMail` port (SMTP with STARTTLS and the pharmacy's certificate in
:mod:`sync.mssante`).
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from appliance.domain import Ins, Traits
from appliance.teleservices import TeleserviceRefused
from appliance.workflow.messages import euros, fr_date, fr_day

STREAM = "mssante"
"""The outbox stream of secure messages (key ``mss:<secure_messages.id>``, payload ``{"message": id}``)."""
KINDS = ("receipt", "dmp-document", "prescriber-summary")
PATIENT_DOMAIN = "patient.mssante.fr"
"""Mon Espace Santé's MSSanté domain: a patient's mailbox is ``<INS matricule>@patient.mssante.fr``."""
XDM_SUBJECT_PREFIX = "XDM/1.0/DDM+"
XDM_ARCHIVE = "IHE_XDM.zip"
XDM_DOCUMENT = "DOC0001.XML"
XDM_SUBSET = "IHE_XDM/SUBSET01/"

NO_PATIENT_MAILBOX = "Identité non qualifiée : pas de messagerie sécurisée"
NO_PRESCRIBER_MAILBOX = "Pas d'adresse MSSanté du prescripteur : synthèse non envoyée"
HIDDEN_FROM_PATIENT = "Document masqué au patient : pas d'envoi à sa messagerie"

_MATRICULE = re.compile(r"[0-9]{5}(?:[0-9]{2}|2[AB])[0-9]{8}")
_ADDRESS = re.compile(r"[^@\s<>]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


@dataclass(frozen=True, slots=True)
class MailSettings:
    """What the pharmacy configures about its outgoing mail."""

    sender: str
    """The pharmacy's MSSanté mailbox the messages are sent from (``From``, SMTP ``MAIL FROM``)."""
    product_reference: str | None = None
    """``X-MSS-NIL``: the reference the software got when declared to the ANS (none in development)."""
    patient_replies: bool = False
    """Let patients answer in Mon Espace Santé (no ``X-MSS-MES: FIN``): only if someone reads the mailbox."""


def patient_address(matricule: str) -> str:
    """The Mon Espace Santé mailbox of the patient whose INS matricule is ``matricule`` (15 characters:
    the NIR with its key; ``2A``/``2B`` for a birth in Corsica)."""
    value = matricule.strip().upper()
    if not _MATRICULE.fullmatch(value):
        raise ValueError("an INS matricule has 15 characters (NIR and key)")
    return f"{value}@{PATIENT_DOMAIN}"


def is_address(value: str | None) -> bool:
    """Whether ``value`` looks like one mail address (no display name, no list)."""
    return value is not None and _ADDRESS.fullmatch(value.strip()) is not None


def _plain(text: str) -> str:
    """``text`` without its accents (subject conventions ask for the name without them)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def patient_label(traits: Traits) -> str:
    """``NOM Prénom JJ/MM/AAAA`` as MSSanté subjects name a patient: birth name in capitals and the first
    birth first name, both without accents."""
    first = traits.first_names.split()[0] if traits.first_names.split() else ""
    return f"{_plain(traits.birth_name).upper()} {_plain(first).title()} {fr_date(traits.birth_date)}"


# ----------------------------------------------------------------------------------- wording


def receipt_lines(
    number: int, boxes: Sequence[tuple[str, int]], *, amo_cents: int, amc_cents: int, to_pay_cents: int
) -> list[str]:
    """The receipt as the kiosk shows it when the session closes: ``boxes`` are (name, total cents) in
    the order dispensed; identical names are one line, ``NAME ×2 : 4,30 €``."""
    lines = [f"Facture n° {number}"]
    grouped: dict[str, list[int]] = {}
    for name, total in boxes:
        count_total = grouped.setdefault(name, [0, 0])
        count_total[0] += 1
        count_total[1] += total
    lines += [f"{name} ×{count} : {euros(total)}" for name, (count, total) in grouped.items()]
    lines.append(f"Payé par l'Assurance Maladie : {euros(amo_cents)}")
    lines.append(f"Payé par la mutuelle : {euros(amc_cents)}")
    lines.append(f"Réglé : {euros(to_pay_cents)}")
    return lines


def _discrepancy(d: Mapping[str, Any], names: Mapping[str, str]) -> str:
    line = d.get("line")
    where = f"ligne {line}" if line is not None else "hors ordonnance"
    kind = d.get("kind")
    if kind == "quantity":
        return f"{where} : {d.get('prescribed')} prescrit(s), {d.get('dispensed')} délivré(s)"
    if kind == "substitution":
        dispensed = str(d.get("dispensed", ""))
        return f"{where} : substitution par {names.get(dispensed, dispensed)}"
    dispensed = str(d.get("dispensed", ""))
    return f"{where} : boîte non rattachée ({names.get(dispensed, dispensed)})"


def summary_lines(
    *,
    traits: Traits,
    ins: Ins | None,
    prescription_id: str,
    prescribed_on: str | None,
    renewal: int,
    dispensed_at: float,
    pharmacy_name: str,
    finess: str | None,
    boxes: Sequence[Mapping[str, Any]],
    discrepancies: Sequence[Mapping[str, Any]],
    annotation: str,
) -> list[str]:
    """The dispensing summary for the prescriber: who (with the INS when qualified), which prescription,
    what was handed out line by line, the discrepancies and the pharmacist's note. ``boxes`` are
    ``{"line_no", "label", "name", "cip13", "substitution"}`` in the order dispensed."""
    first_names = traits.first_names.title()
    lines = [f"Patient : {traits.birth_name.upper()} {first_names}, né(e) le {fr_date(traits.birth_date)}"]
    if ins is not None:
        lines.append(f"INS : {ins.matricule} (OID {ins.oid})")
    written = f" du {fr_date(datetime.fromisoformat(prescribed_on).date())}" if prescribed_on else ""
    again = f", renouvellement n° {renewal}" if renewal else ""
    lines.append(f"Ordonnance {prescription_id}{written}{again}")
    where = pharmacy_name + (f" (FINESS {finess})" if finess else "")
    lines.append(f"Délivrée le {fr_day(dispensed_at)} par {where}")
    grouped: dict[tuple[Any, str, str, bool], int] = {}
    for box in boxes:
        key = (box.get("line_no"), str(box.get("label") or ""), str(box["name"]), bool(box.get("substitution")))
        grouped[key] = grouped.get(key, 0) + 1
    for (line, label, name, substituted), count in grouped.items():
        prescribed = f"ligne {line} ({label})" if line is not None else "hors ordonnance"
        lines.append(f"- {prescribed} : {name} ×{count}{' (substitution)' if substituted else ''}")
    names = {str(b["cip13"]): str(b["name"]) for b in boxes}
    if discrepancies:
        lines.append("Écarts : " + " ; ".join(_discrepancy(d, names) for d in discrepancies))
    if annotation.strip():
        lines.append(f"Note du pharmacien : {annotation.strip()}")
    return lines


def dmp_title(kind: str) -> str:
    try:
        from appliance.dmp.model import KINDS as DMP_KINDS
    except ImportError:  # pragma: no cover - the DMP package ships with the core
        return kind
    found = DMP_KINDS.get(kind)
    return found.title if found is not None else kind


def dmp_lines(dmp: Mapping[str, Any], pharmacy_name: str) -> list[str]:
    """The text of a DMP document for the patient's mailbox: what it is, who wrote it, the products."""
    lines = [dmp_title(str(dmp["kind"]))]
    operator = dmp.get("operator") or {}
    author = f" par {operator['name']}" if operator.get("name") else ""
    lines.append(f"Rédigé le {fr_day(float(dmp['at']))}{author}, {pharmacy_name}")
    products = dmp.get("history") if dmp["kind"] == "medication-review" else dmp.get("visit")
    for p in products or []:
        extra = ", ".join(x for x in (f"lot {p['lot']}" if p.get("lot") else "", p.get("expiry") or "") if x)
        lines.append(f"- {p.get('label') or p['cip13']}" + (f" ({extra})" if extra else ""))
    if dmp.get("note"):
        lines.append(f"Note : {dmp['note']}")
    return lines


# ----------------------------------------------------------------------------------- IHE XDM


def _zip_time(at: datetime) -> tuple[int, int, int, int, int, int]:
    t = at.astimezone(UTC)
    return (max(t.year, 1980), t.month, t.day, t.hour, t.minute, t.second - t.second % 2)


def xdm_metadata(metadata: bytes, document_id: str, document: bytes, uri: str = XDM_DOCUMENT) -> bytes:
    """The ITI-41 ``SubmitObjectsRequest`` turned into XDM's ``METADATA.XML``: the document entry gets the
    ``size``, ``hash`` (SHA-1, hex) and ``URI`` slots that point at its file in the subset."""
    from lxml import etree

    rim = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
    root = etree.fromstring(metadata)
    entries = root.findall(f".//{{{rim}}}ExtrinsicObject[@id='{document_id}']")
    if len(entries) != 1:
        raise ValueError(f"no document entry {document_id!r} in the metadata")
    entry = entries[0]
    slots = entry.findall(f"{{{rim}}}Slot")
    at = entry.index(slots[-1]) + 1 if slots else 0
    for offset, (name, value) in enumerate(
        (("size", str(len(document))), ("hash", hashlib.sha1(document).hexdigest()), ("URI", uri))  # noqa: S324
    ):
        slot = etree.Element(f"{{{rim}}}Slot", name=name)
        etree.SubElement(etree.SubElement(slot, f"{{{rim}}}ValueList"), f"{{{rim}}}Value").text = value
        entry.insert(at + offset, slot)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def xdm_archive(metadata: bytes, document: bytes, *, title: str, author: str, at: datetime) -> bytes:
    """``IHE_XDM.zip``: one submission set holding one CDA (IHE ITI TF-1 §16, TF-2b §3.32.4.1)."""
    index = (
        '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"><title>IHE XDM</title></head><body>\n'
        f"<h1>{_html(title)}</h1>\n<p>{_html(author)}</p>\n"
        f'<ul><li><a href="{XDM_SUBSET}{XDM_DOCUMENT}">{_html(title)} (CDA R2)</a></li>\n'
        f'<li><a href="{XDM_SUBSET}METADATA.XML">Métadonnées (IHE XDS.b)</a></li></ul>\n</body></html>\n'
    )
    readme = (
        f"{author}\r\n"
        "Archive IHE XDM (Cross-Enterprise Document Media Interchange) produite par comptoir.\r\n"
        f"{XDM_SUBSET}{XDM_DOCUMENT} : le document CDA R2 ; {XDM_SUBSET}METADATA.XML : ses métadonnées.\r\n"
        "Ouvrir INDEX.HTM pour la liste des documents.\r\n"
    )
    files = (
        ("INDEX.HTM", index.encode("utf-8")),
        ("README.TXT", readme.encode("utf-8")),
        (f"{XDM_SUBSET}METADATA.XML", metadata),
        (f"{XDM_SUBSET}{XDM_DOCUMENT}", document),
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files:
            info = zipfile.ZipInfo(name, date_time=_zip_time(at))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return out.getvalue()


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class _Cda:
    archive: bytes
    type_code: str
    label: str


def _dmp_cda(dmp: Mapping[str, Any], at: datetime, author: str) -> _Cda | None:
    """The document's CDA in an XDM archive, or None when it cannot be made (then the text goes alone).

    A document the DMP builder refuses (unknown author…) is sent as text; a pharmacy not configured yet
    (no FINESS) keeps the message waiting, as it keeps the DMP feed waiting
    (:class:`~appliance.teleservices.TeleserviceUnavailable` propagates).
    """
    try:
        from appliance.dmp import submission
        from appliance.dmp.source import document_from
    except ImportError:  # pragma: no cover - the DMP package ships with the core
        return None
    try:
        doc = document_from(dmp)
    except TeleserviceRefused:
        return None
    request = submission(doc, submitted_at=at)
    metadata = xdm_metadata(request.metadata, request.document_id, request.document)
    archive = xdm_archive(metadata, request.document, title=doc.kind.title, author=author, at=at)
    return _Cda(archive, doc.kind.type_code.code, doc.kind.type_code.display)


# ----------------------------------------------------------------------------------- the message


def _intro(kind: str, facts: Mapping[str, Any]) -> list[str]:
    name = str(facts.get("pharmacy_name") or "")
    day = fr_day(float(facts["at"]))
    if kind == "receipt":
        where = f"à la {name}" if name else "à la pharmacie"
        return ["Bonjour,", "", f"Voici la facture de votre passage du {day} {where}.", ""]
    if kind == "dmp-document":
        who = f"La {name}" if name else "Votre pharmacie"
        return ["Bonjour,", "", f"{who} a versé ce document à votre dossier médical (Mon espace santé).", ""]
    return ["Bonjour,", "", "Voici la synthèse de la dispensation de votre ordonnance, avec l'accord du patient.", ""]


def compose(facts: Mapping[str, Any], settings: MailSettings) -> EmailMessage:
    """The mail that ``facts`` (:meth:`~appliance.store.records.CounterRecords.secure_message_facts`) says.

    Raises :class:`~appliance.teleservices.TeleserviceRefused` when the message has nowhere to go (no
    qualified identity, no prescriber address, a document hidden from the patient): final for the
    message. Deterministic for a given message (its ``Date`` is when it was queued and its
    ``Message-ID`` names it), so a copy sent again after a lost answer is the same mail.
    """
    kind = str(facts["kind"])
    if kind not in KINDS:
        raise TeleserviceRefused("mss-kind", f"Message sécurisé inconnu : {kind}")
    dmp = facts.get("dmp")
    if kind == "dmp-document" and (dmp is None or dmp.get("visibility") == "hidden-from-patient"):
        raise TeleserviceRefused("mss-hidden", HIDDEN_FROM_PATIENT)
    to = str(facts.get("to") or "").strip()
    if not is_address(to):
        problem = NO_PRESCRIBER_MAILBOX if kind == "prescriber-summary" else NO_PATIENT_MAILBOX
        raise TeleserviceRefused("mss-no-address", problem)
    at = datetime.fromtimestamp(float(facts["at"]), tz=UTC)
    pharmacy = str(facts.get("pharmacy_name") or "")
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = settings.sender
    message["To"] = to
    message["Date"] = format_datetime(at)
    domain = settings.sender.rpartition("@")[2] or "comptoir.invalid"
    message["Message-ID"] = f"<mss-{int(facts['message'])}.{facts.get('box_id') or 'box'}@{domain}>"
    if settings.product_reference:
        message["X-MSS-NIL"] = settings.product_reference
    if to.lower().endswith("@" + PATIENT_DOMAIN) and not settings.patient_replies:
        message["X-MSS-MES"] = "FIN"
    cda = _dmp_cda(dmp, at, pharmacy) if kind == "dmp-document" and dmp is not None else None
    subject = str(facts["subject"])
    if cda is not None:
        traits = facts.get("traits")
        label = cda.label[:40] + (f" {patient_label(traits)}" if isinstance(traits, Traits) else "")
        subject = XDM_SUBJECT_PREFIX + label
        message["X-MSS-CODECDA"] = cda.type_code
        message["X-MSS-INS"] = "O"  # sent only for a qualified INS, which the CDA and the metadata carry
    message["Subject"] = subject
    closing = ["", "Ce message est envoyé automatiquement par le comptoir de la pharmacie."]
    body = [*_intro(kind, facts), *[str(line) for line in facts["lines"]], *closing]
    message.set_content("\n".join(body) + "\n", subtype="plain", charset="utf-8")
    message.make_mixed()
    if cda is not None:
        message.add_attachment(cda.archive, maintype="application", subtype="zip", filename=XDM_ARCHIVE)
    return message


def envelope(message: EmailMessage) -> tuple[str, list[str]]:
    """The SMTP envelope of a composed message: (MAIL FROM, [RCPT TO])."""
    return str(message["From"]), [str(message["To"])]


def xdm_files(archive: bytes) -> dict[str, bytes]:
    """The files of an ``IHE_XDM.zip`` by path (for receivers and tests)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as z:
        return {name: z.read(name) for name in z.namelist()}
