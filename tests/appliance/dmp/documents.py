"""DMP documents for the tests: a sandbox patient, a pharmacist, the sandbox pharmacy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from appliance.dmp import KINDS, Submission, submission
from appliance.dmp.model import DmpDocument, Pharmacist, Pharmacy, Product, document_ids
from appliance.domain import Ins, Visibility
from sandbox import population as pop

WRITTEN = datetime(2025, 3, 14, 9, 30, tzinfo=UTC)
BOX = "0123456789abcdef0123456789abcdef"
PHARMACY = Pharmacy("750000010", "Pharmacie du Bac à sable")
PHARMACIST = Pharmacist(operator_id=2, name="Dupont", rpps="10001234567")
VACCINE = Product(
    gtin="03400930000120",
    cip13="3400930000120",
    label="VACCIN GRIPPE (test)",
    lot="FLU24A",
    expiry="2026-06-30",
    dispensed_at=WRITTEN,
)


def patient(key: str = "durand") -> Ins:
    ins = pop.person(key).ins
    assert ins is not None
    return ins


def document(
    kind: str = "vaccination",
    visibility: Visibility = Visibility.ALL,
    *,
    number: int = 1,
    ins: Ins | None = None,
    **changes: Any,
) -> DmpDocument:
    doc = DmpDocument(
        kind=KINDS[kind],
        visibility=visibility,
        patient=ins or patient(),
        author=PHARMACIST,
        pharmacy=PHARMACY,
        written_at=WRITTEN,
        ids=document_ids(BOX, number),
        products=(VACCINE,),
        note="Patient informé des effets indésirables possibles.",
    )
    return replace(doc, **changes) if changes else doc


def wire(doc: DmpDocument | None = None) -> dict[str, Any]:
    """The payload the delivery hands to the teleservice port for stream ``dmp``."""
    return built(doc).wire()


def built(doc: DmpDocument | None = None) -> Submission:
    return submission(doc or document(), submitted_at=WRITTEN)
