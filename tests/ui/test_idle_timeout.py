"""A patient who walks away: after the idle timeout the kiosk shows nothing of them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import run_windowed


@pytest.fixture(scope="module")
def idle(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_windowed("idle", tmp_path_factory.mktemp("idle"), timeout=60)


def test_the_patient_was_on_screen_before(idle: Any) -> None:
    assert idle["before"]["screen"] == "identity"
    assert "Bonjour Lea" in idle["before"]["texts"]


def test_the_idle_timeout_clears_the_screen(idle: Any) -> None:
    after = idle["after"]
    assert after["screen"] == "attract"
    assert after["message"] == "Session fermée après inactivité"
    shown = " ".join(after["texts"])
    assert "Lea" not in shown and "MARTIN" not in shown
    assert idle["properties"] == {"greeting": "", "patient_name": "", "beneficiaries": [], "lines": [], "amo_text": ""}
    assert idle["cleared_after_s"] < 2.0  # the UI's Tick, sent from the Kivy clock, found the timeout
