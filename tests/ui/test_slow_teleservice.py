"""A teleservice answering in 1.5 s: the call runs off the UI thread, frames keep coming, Annuler is obeyed."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui.conftest import run_windowed


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return run_windowed("slow", tmp_path_factory.mktemp("slow"), timeout=60)


def test_the_waiting_screen_shows_while_the_call_runs(slow: Any) -> None:
    assert slow["call_s"] >= 1.4
    assert slow["screens"][0] == "waiting"
    assert "Un instant, s'il vous plaît" in slow["waiting_texts"]


def test_frames_keep_coming_during_the_call(slow: Any) -> None:
    # Run on the UI thread, the call would freeze it for 1.5 s in one gap; off it, the clock keeps
    # ticking (up to 60 a second; llvmpipe on a shared CPU draws fewer) and the progress bar moves.
    assert slow["frames"] >= 20
    assert slow["flips"] >= 5
    assert slow["max_gap_ms"] < 250


def test_cancel_is_taken_at_once_and_the_session_dropped_after_the_call(slow: Any) -> None:
    assert slow["cancel_reaction_ms"] is not None and slow["cancel_reaction_ms"] < 50
    assert slow["final"] == {"screen": "attract", "message": "Session annulée"}
