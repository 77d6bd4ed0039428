"""From the store's facts to a document: what may leave, what waits, what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.dmp.model import finess_problem
from appliance.dmp.source import document_from
from appliance.domain import IdentityStatus, Visibility
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from tests.appliance.dmp.documents import patient

AT = 1_781_510_400.0


def _facts(**changes: Any) -> dict[str, Any]:
    line = {"cip13": "3400930000120", "gtin": "03400930000120", "lot": "L1", "expiry": "2027-12-31", "at": AT}
    facts: dict[str, Any] = {
        "document": 4,
        "kind": "vaccination",
        "visibility": "hidden-from-patient",
        "at": AT,
        "patient_id": 1,
        "ins": patient(),
        "status": IdentityStatus.QUAL,
        "operator": {"id": 2, "name": "dupont", "role": "pharmacien", "rpps": "10001234567"},
        "finess": "750000010",
        "pharmacy_name": "Pharmacie du Bac à sable",
        "box_id": "ab" * 16,
        "visit": [{**line, "label": "VACCIN"}],
        "note": "RAS",
        "history": [line, {**line, "lot": "L0", "at": AT - 86400 * 30}],
    }
    facts.update(changes)
    return facts


def test_the_facts_make_the_document() -> None:
    doc = document_from(_facts())
    assert doc.kind.name == "vaccination" and doc.visibility is Visibility.HIDDEN_FROM_PATIENT
    assert doc.author.rpps == "10001234567" and doc.pharmacy.finess == "750000010"
    assert [p.label for p in doc.products] == ["VACCIN"] and doc.note == "RAS"
    assert doc.written_at.timestamp() == AT
    review = document_from(_facts(kind="medication-review"))
    assert [p.lot for p in review.products] == ["L1", "L0"]  # the twelve months, not only the visit


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"ins": None}, "no-ins"),
        ({"status": IdentityStatus.RECUP}, "not-qualified"),
        ({"operator": None}, "dmp-author"),
        ({"kind": "certificate"}, "dmp-kind"),
    ],
)
def test_what_must_not_leave_is_refused(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(TeleserviceRefused) as refused:
        document_from(_facts(**changes))
    assert refused.value.code == code
    with pytest.raises(TeleserviceRefused):
        document_from(None)


@pytest.mark.parametrize("finess", [None, "12345", "750000011"])
def test_an_unconfigured_pharmacy_keeps_the_document_waiting(finess: str | None) -> None:
    with pytest.raises(TeleserviceUnavailable, match="finess"):
        document_from(_facts(finess=finess))


def test_finess_numbers() -> None:
    assert finess_problem("750000010") is None and finess_problem("2A0000015") is None
    assert finess_problem("750000011") is not None and finess_problem("75000001") is not None
