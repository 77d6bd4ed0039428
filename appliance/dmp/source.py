"""From the store's facts to a :class:`~appliance.dmp.model.DmpDocument` (at delivery time).

:meth:`appliance.store.records.CounterRecords.dmp_facts` reads them; this module checks that the
document may leave (qualified INS, a known author, the pharmacy's FINESS) and assembles it. A refusal
is final for the message (:class:`TeleserviceRefused`, French message for the pharmacist); a missing
setting keeps it in the outbox until the pharmacy is configured (:class:`TeleserviceUnavailable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from appliance.dmp.model import KINDS, DmpDocument, Pharmacist, Pharmacy, Product, document_ids, finess_problem
from appliance.domain import IdentityStatus, Ins, Visibility
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable

NOT_QUALIFIED = "Identité non qualifiée : pas d'envoi au DMP"


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def _products(lines: list[Mapping[str, Any]]) -> tuple[Product, ...]:
    return tuple(
        Product(
            gtin=str(li["gtin"]),
            cip13=str(li["cip13"]),
            label=None if li.get("label") is None else str(li["label"]),
            lot=None if li.get("lot") is None else str(li["lot"]),
            expiry=None if li.get("expiry") is None else str(li["expiry"]),
            dispensed_at=_moment(float(li["at"])),
        )
        for li in lines
    )


def document_from(facts: Mapping[str, Any] | None) -> DmpDocument:
    """The document ``facts`` describe, or the reason it cannot be sent (raised)."""
    if facts is None:
        raise TeleserviceRefused("dmp-unknown", "Document DMP introuvable dans les enregistrements")
    kind = KINDS.get(str(facts["kind"]))
    if kind is None:
        raise TeleserviceRefused("dmp-kind", f"Type de document DMP inconnu : {facts['kind']}")
    ins = facts["ins"]
    if not isinstance(ins, Ins) or not ins.matricule or not ins.oid:
        raise TeleserviceRefused("no-ins", NOT_QUALIFIED)
    if facts["status"] is not IdentityStatus.QUAL:
        raise TeleserviceRefused("not-qualified", NOT_QUALIFIED)
    operator = facts["operator"]
    if not operator:
        raise TeleserviceRefused("dmp-author", "Auteur du document DMP inconnu : le document n'est pas envoyé")
    finess = facts["finess"]
    if not finess:
        raise TeleserviceUnavailable("dmp: FINESS de la pharmacie non renseigné (réglage « finess »)")
    problem = finess_problem(str(finess))
    if problem:
        raise TeleserviceUnavailable(f"dmp: {problem} (réglage « finess »)")
    name = str(facts["pharmacy_name"] or f"Pharmacie {finess}")
    lines = facts["history"] if kind.name == "medication-review" else facts["visit"]
    return DmpDocument(
        kind=kind,
        visibility=Visibility(str(facts["visibility"])),
        patient=ins,
        author=Pharmacist(
            operator_id=int(operator["id"]),
            name=str(operator["name"]),
            rpps=None if not operator.get("rpps") else str(operator["rpps"]),
        ),
        pharmacy=Pharmacy(finess=str(finess), name=name),
        written_at=_moment(float(facts["at"])),
        ids=document_ids(str(facts["box_id"]), int(facts["document"])),
        products=_products(list(lines)),
        note=str(facts.get("note") or ""),
    )
