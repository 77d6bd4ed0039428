"""The e-CPS login on the panel, offscreen, against the sandbox Pro Santé Connect over HTTP (127.0.0.1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import run_windowed


@pytest.fixture(scope="module")
def ecps(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_windowed("ecps", tmp_path_factory.mktemp("ecps"), timeout=90)


def test_the_panel_offers_the_e_cps_beside_the_pin(ecps: Any) -> None:
    assert "ecps_rpps" in ecps["login_buttons"]
    assert {"ecps", "pin_back", "pin:1"} <= set(ecps["pad_buttons"])


def test_the_panel_waits_for_the_phone_with_the_code_it_shows(ecps: Any) -> None:
    waiting = ecps["waiting"]
    assert waiting["page"] == "ecps"
    assert "Validez sur votre téléphone…" in waiting["texts"] and "Connexion e-CPS de alice" in waiting["texts"]
    assert any(waiting["code"] in text for text in waiting["texts"])
    assert [(r["rpps"], r["binding_message"]) for r in ecps["phone"]] == [("10000000007", waiting["code"])]


def test_the_counter_goes_on_while_the_phone_is_asked(ecps: Any) -> None:
    assert ecps["served_while_waiting"] is True


def test_validated_on_the_phone_the_panel_opens(ecps: Any) -> None:
    unlocked = ecps["unlocked"]
    assert unlocked["operator"] == "alice" and unlocked["message"] == "Bonjour alice"
    assert "Espace pharmacien — alice" in unlocked["texts"]


def test_an_rpps_typed_then_refused_on_the_phone(ecps: Any) -> None:
    assert "10000000015" in ecps["rpps_texts"]
    denied = ecps["denied"]
    assert denied["message"] == "Connexion e-CPS refusée sur le téléphone" and not denied["unlocked"]


def test_cancelled_at_the_kiosk_nobody_is_logged_in(ecps: Any) -> None:
    cancelled = ecps["cancelled"]
    assert cancelled["message"] == "Connexion e-CPS annulée" and not cancelled["waiting"] and cancelled["page"] == "pin"
    assert ecps["after_cancel"] == {"unlocked": False, "operator": "alice"}
    assert ecps["journal"].count("operator.psc.login") == 1
