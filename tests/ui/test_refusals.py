"""Refusals through the real kiosk stack (controller, worker, core, view model), without a window:
a refused event leaves the screen where it was, and a professional act needs the pharmacist's login."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.workflow import messages as msg
from ui.config import KioskConfig

APCV = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
PRESCRIPTION = b"EP7K2Q-9XWM-4TDA-LR8C"


class Pump:
    """Runs what the worker posts for the UI thread, until the view model applied ``n`` more results."""

    def __init__(self, kiosk: Any, posted: queue.Queue[Callable[[], None]]) -> None:
        self.kiosk, self.posted = kiosk, posted

    def __call__(self, action: Callable[[], None], n: int = 1) -> None:
        vm = self.kiosk.vm
        target = vm.results + n
        action()
        while vm.results < target:
            self.posted.get(timeout=10)()


@pytest.fixture
def kiosk(tmp_path: Path) -> Iterator[tuple[Any, Pump]]:
    from ui.kiosk import kiosk_against_sandbox

    posted: queue.Queue[Callable[[], None]] = queue.Queue()
    with kiosk_against_sandbox(KioskConfig(), posted.put, db_path=tmp_path / "c.db") as kiosk:
        pump = Pump(kiosk, posted)
        pump(lambda: None)  # the start-up check
        yield kiosk, pump


def test_a_refused_card_insert_leaves_the_screen_where_it_was(kiosk: Any) -> None:
    k, pump = kiosk
    pump(lambda: k.devices.scan(APCV))
    assert k.vm.screen == "rights" and k.vm.greeting == "Bonjour Marie"
    pump(lambda: k.devices.insert_card("martin-family"))
    assert k.vm.last_result.kind == "card-inserted" and not k.vm.last_result.outcome.accepted
    assert (k.vm.screen, k.vm.step, k.vm.greeting) == ("rights", "rights", "Bonjour Marie")
    assert k.vm.message.startswith("Ce n'est pas le moment") and not k.vm.message_ok
    assert not k.vm.panel_open


def test_a_professional_act_without_a_login_is_refused_and_the_panel_asks_for_one(kiosk: Any) -> None:
    k, pump = kiosk
    pump(lambda: k.devices.scan(APCV))
    pump(lambda: k.devices.scan(PRESCRIPTION))
    assert k.vm.screen == "prescription" and k.vm.pending_act == "confirm-prescription"
    assert k.vm.panel_open and not k.vm.unlocked and k.vm.pin_for == ""  # opened by itself on the login
    assert k.vm.pharmacist_needed == "Le pharmacien vérifie votre ordonnance…"
    # even sent straight to the core (no button offers it without a login), the act is refused
    pump(lambda: k.controller.intent("confirm_prescription", renewal=0))
    assert k.vm.last_result.outcome.message == msg.PROFESSIONAL_NEEDED
    assert k.vm.screen == "prescription" and k.vm.pending_act == "confirm-prescription"
    # through the view model, nothing is even sent
    before = k.vm.results
    k.vm.confirm_prescription()
    assert k.vm.results == before and k.controller.idle and k.vm.message == msg.PROFESSIONAL_NEEDED
    # after the pharmacist's PIN, the same touch goes through
    k.vm.choose_operator("alice")
    for digit in "2468":
        k.vm.pin.press(digit)
    pump(k.vm.submit_pin)
    assert k.vm.unlocked
    pump(k.vm.confirm_prescription)
    assert k.vm.screen == "dispensation" and not k.vm.panel_open
