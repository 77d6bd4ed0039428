"""A bill committed, then the kiosk stopped before its payment screen: the next start tells the
pharmacist, on the panel only, and the list behind the PIN shows that bill first (offscreen, real core)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import run_windowed


@pytest.fixture(scope="module")
def recovery(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_windowed("recovery", tmp_path_factory.mktemp("recovery"), timeout=90)


def test_the_panel_opens_at_start_with_the_bill_to_check(recovery: Any) -> None:
    claim = recovery["claim"]
    expected = f"Facture n° {claim} enregistrée à 11:00 avant l'arrêt : vérifiez avec le patient."
    assert recovery["banner"] == expected
    assert expected in recovery["locked_texts"]
    assert "Qui êtes-vous ?" in recovery["locked_texts"]  # the list itself waits for the PIN
    assert not any(str(claim) in text for text in recovery["locked_texts"] if text != expected)


def test_nothing_of_it_reaches_the_patient_screen(recovery: Any) -> None:
    assert not any("arrêt" in text or "Facture" in text for text in recovery["patient_texts"])


def test_after_the_pin_the_list_shows_that_bill_first_with_its_patient(recovery: Any) -> None:
    texts = recovery["list_texts"]
    rows = [text for text in texts if text.startswith("[b]N° ")]
    assert rows and rows[0].startswith(f"[b]N° {recovery['claim']}[/b]   11:00   M. D.\n")  # initials only
    assert "Total " in rows[0] and "alice" in rows[0]
    assert not any("DURAND" in text or "Marie" in text for text in texts)
    assert any("avant l'arrêt" in text for text in texts)  # the banner stays above the list


def test_the_start_and_the_look_are_in_the_journal(recovery: Any) -> None:
    journal = recovery["journal"]
    assert journal["interrupted"] == [str(recovery["claim"])]
    assert journal["listed_by"] == [journal["alice"]]


def test_the_screenshots_are_written(recovery: Any) -> None:
    assert [Path(png).name for png in recovery["pngs"]] == ["recovery-list.png", "recovery-locked.png"]
