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
    assert "Pièce d'identité présentée et conforme ?" in journey["identity_texts"]
    assert "Bonjour Marie, voici vos droits" in journey["rights_texts"]
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
