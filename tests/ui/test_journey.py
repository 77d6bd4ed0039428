"""A whole counter session touched through on the kiosk, against the sandbox teleservices (offscreen)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import run_windowed


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_windowed("journey", tmp_path_factory.mktemp("journey"), timeout=80)


def test_the_session_goes_through_every_step_to_the_receipt(journey: Any) -> None:
    visited = journey["visited"]
    for screen in ("choose", "identity", "rights", "prescription", "dispensation", "control", "payment", "thanks"):
        assert screen in visited, visited
    assert visited.index("prescription") < visited.index("dispensation") < visited.index("control")
    assert visited[-1] == "thanks"
    assert journey["touches"] >= 20


def test_what_the_patient_reads_on_the_way(journey: Any) -> None:
    assert "Le pharmacien vérifie votre pièce d'identité…" in journey["identity_texts"]
    assert "Bonjour Lea" in journey["identity_texts"]
    assert "Bonjour Marie, voici vos droits" in journey["rights_texts"]
    assert "Au nom de Marie DURAND, 19/08/1982" in journey["prescription_texts"]
    assert "Le pharmacien vérifie votre ordonnance…" in journey["prescription_texts"]
    assert "Marie Claire DURAND, 19/08/1982" in journey["control_texts"]
    assert "Rien à payer" in journey["payment_texts"]
    assert "Facture n° 1" in journey["thanks_texts"]


def test_the_pin_pad_unlocks_without_showing_the_pin(journey: Any) -> None:
    assert journey["unlocked"] is True
    assert "••••" in journey["pin_texts"]
    assert "2468" not in journey["pin_texts"]


def test_the_claim_is_recorded_and_the_screen_cleared(journey: Any, tmp_path: Path) -> None:
    assert journey["db"]["claim_numbers"] == [1]
    assert journey["db"]["prescriptions_dispensed"] == 1
    final = " ".join(journey["final_texts"])
    assert "Présentez votre carte Vitale" in final
    assert "Marie" not in final and "DURAND" not in final


def test_the_payment_screen_reports_the_bill_shown(journey: Any) -> None:
    """So that a restart does not point the pharmacist to a bill the patient did see."""
    assert journey["last_claim_shown"] == 1


def test_the_panel_opens_by_itself_on_the_login_when_an_act_is_due(journey: Any) -> None:
    login = journey["identity_panel"]
    assert login["open"] and not login["unlocked"]
    assert "Qui êtes-vous ?" in login["texts"] and "Le pharmacien vérifie votre pièce d'identité…" in login["texts"]
    # the family's card pulled out locked it: the next patient's prescription opens it on the login again
    assert journey["prescription_panel"]["open"] and not journey["prescription_panel"]["unlocked"]
    assert "Le pharmacien vérifie votre ordonnance…" in journey["prescription_panel"]["texts"]
    assert {"confirm_prescription", "reject_prescription"} <= set(journey["prescription_buttons"])
    assert journey["after_prescription"] == {"screen": "dispensation", "panel_open": False}
    assert journey["control_panel_open"]  # still logged in: straight to the validation


def test_the_pharmacist_checks_a_minors_document_with_the_guardians(journey: Any) -> None:
    documents = set(journey["document_buttons"])
    assert {"document:passeport", "document:cni", "document:livret-famille", "document:acte-naissance"} <= documents
    assert {"document_absent", "document_refused", "document_contradicts"} <= documents
    assert {"guardian:passeport", "guardian:cni", "guardian:titre-sejour"} <= set(journey["guardian_buttons"])
    after = journey["after_document"]
    assert after["screen"] == "rights" and not after["panel_open"]  # done: the patient sees their screen
    assert after["message"].startswith("Identité qualifiée (Livret de famille")


def test_each_professional_act_is_journaled_under_the_pharmacist(journey: Any) -> None:
    operators = {action: operator for action, operator in journey["journal"]}
    for action in ("identity.document", "prescription.confirmed", "claim.created"):
        assert operators.get(action) is not None, journey["journal"]


def test_the_annotation_touched_on_the_panel_is_recorded(journey: Any) -> None:
    """A hidden section of the panel takes no touch meant for the one shown over it."""
    assert journey["annotated"] == {"annotation": "Une seule boîte en stock", "message": "Note enregistrée"}
