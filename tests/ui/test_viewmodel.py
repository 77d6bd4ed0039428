"""The view model without a window: what each step shows, PIN handling, timeouts, cancel, panel lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from appliance.products import ProductTable
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step
from tests.ui.states import BASE, STATES, view
from ui.controller import Result

if TYPE_CHECKING:
    from ui.viewmodel import KioskViewModel


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def intent(self, name: str, **args: Any) -> None:
        self.sent.append((name, args))


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def kiosk() -> tuple[KioskViewModel, Recorder, FakeTime]:
    """Kivy is imported here, not at collection: other test modules check it stays out of their way."""
    from ui.viewmodel import KioskViewModel

    actions, clock = Recorder(), FakeTime()
    return KioskViewModel(actions, now=clock, thanks_s=5, banner_s=6, panel_lock_s=30), actions, clock


def result(state: dict[str, Any], kind: str = "scan", message: str | None = None, ok: bool = True) -> Result:
    return Result(kind, Outcome(ok, Step(state["step"]), message), state)


def test_fixture_views_have_the_keys_of_the_real_projection() -> None:
    counter = Counter(None, None, ProductTable(), clock=lambda: 1_781_510_400.0)  # type: ignore[arg-type]
    assert set(counter.view()) == set(BASE)


@pytest.mark.parametrize("state", STATES, ids=[s.name for s in STATES])
def test_each_state_picks_its_screen(kiosk: Any, state: Any) -> None:
    vm, _, _ = kiosk
    vm.finished(result(state.view, state.kind, state.message, state.accepted))
    if not state.busy:
        assert vm.screen == state.screen


def test_what_the_screens_are_given(kiosk: Any) -> None:
    vm, _, _ = kiosk
    by_name = {s.name: s for s in STATES}
    vm.finished(result(by_name["choose"].view))
    assert [b["text"] for b in vm.beneficiaries] == [
        "Jean Pierre MARTIN",
        "Sophie BERNARD",
        "Lea MARTIN",
        "Hugo MARTIN",
    ]
    vm.finished(result(by_name["identity-choices"].view))
    assert vm.identity_title == "Plusieurs identités : le pharmacien choisit"
    assert (
        "née" not in vm.identity_choices[0]["text"] and "né(e) le 04/07/1990 (13055)" in vm.identity_choices[0]["text"]
    )
    vm.finished(result(by_name["rights"].view))
    assert vm.amo_ok and vm.amo_text == "Assurance Maladie : droits ouverts jusqu'au 31/12/2029"
    assert not vm.amc_ok and vm.amc_text == "Attestation mutuelle expirée le 31/12/2025"
    vm.finished(result(by_name["control"].view))
    assert [d["text"] for d in vm.discrepancies] == [
        "Ligne 1 : 1 boîte(s) délivrée(s) sur 2 prescrite(s)",
        "Ligne 2 : substitution (CIP 3400930000779 au lieu de 3400930000649)",
    ]
    assert all(line["gap"] for line in vm.lines)
    vm.finished(result(by_name["payment"].view, "intent:validate"))
    assert vm.to_pay_text == "3,45\u00a0€"


def test_a_reader_error_is_said_plainly(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.finished(result(view(), "scan", "Code illisible, réessayez (GS1 code cannot be read: ...)", ok=False))
    assert vm.message == "Code illisible, réessayez"
    assert vm.message_ok is False


def test_offline_banner_lists_what_will_be_completed_later(kiosk: Any) -> None:
    vm, _, _ = kiosk
    state = view(step="rights", online=False, later=["la recherche INSi"])
    vm.finished(result(state, "card-inserted", "Hors ligne : la recherche INSi sera complété au retour du réseau"))
    assert vm.offline_text == "Hors ligne — à compléter au retour du réseau : la recherche INSi"
    assert vm.message == ""  # the banner already says it


def test_thanks_then_attract_and_the_receipt_is_forgotten(kiosk: Any) -> None:
    vm, _, clock = kiosk
    vm.finished(result(view(receipt=["Facture n° 3"]), "intent:close", "Merci, à bientôt"))
    assert vm.screen == "thanks" and vm.receipt == ["Facture n° 3"]
    clock.now += 5.1
    vm.refresh()
    assert vm.screen == "attract" and vm.receipt == []


def test_idle_timeout_clears_every_patient_property(kiosk: Any) -> None:
    vm, _, _ = kiosk
    control = next(s for s in STATES if s.name == "control").view
    vm.finished(result(control))
    assert vm.patient_name == "Marie Claire DURAND" and vm.lines
    vm.finished(result(view(), "tick", "Session fermée après inactivité"))
    assert vm.screen == "attract"
    assert (vm.greeting, vm.patient_name, list(vm.lines), list(vm.boxes), list(vm.discrepancies)) == (
        "",
        "",
        [],
        [],
        [],
    )
    assert vm.to_pay_text == "" and vm.prescription_title == ""


def test_waiting_screen_only_for_slow_calls_and_cancel_hides_the_late_answer(kiosk: Any) -> None:
    vm, actions, clock = kiosk
    vm.began("scan")
    vm.refresh()
    assert vm.busy and not vm.waiting
    clock.now += 0.3
    vm.refresh()
    assert vm.screen == "waiting" and 0 < vm.progress < 1
    vm.cancel()
    assert vm.cancelling and actions.sent[-1] == ("cancel", {})
    vm.began("intent:cancel")
    vm.finished(result(view(step="rights", patient={"first_names": "A", "birth_name": "B", "birth_date": "x"})))
    assert vm.screen == "waiting" and vm.greeting == ""  # the answer that came back is not shown
    vm.finished(result(view(), "intent:cancel", "Session annulée"))
    assert vm.screen == "attract" and not vm.busy and vm.message == "Session annulée"


def test_pin_is_never_in_a_property_and_is_sent_once(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.open_panel()
    vm.choose_operator("alice")
    for digit in "2468":
        vm.pin.press(digit)
    shown = {name: getattr(vm, name) for name in vm.properties()} | {n: getattr(vm.pin, n) for n in vm.pin.properties()}
    assert "2468" not in repr(shown)
    assert vm.pin.mask == "••••"
    vm.submit_pin()
    assert actions.sent == [("login", {"operator": "alice", "pin": "2468"})]
    assert vm.pin.mask == "" and vm.pin.take() == ""


def test_login_unlocks_then_the_panel_locks_on_timeout_and_card_removal(kiosk: Any) -> None:
    vm, actions, clock = kiosk
    vm.open_panel()
    vm.choose_operator("alice")
    vm.pin.press("1")
    vm.submit_pin()
    vm.finished(result(view(operator=True), "intent:login", "Bonjour alice"))
    assert vm.unlocked and vm.pin_for == ""
    clock.now += 31
    vm.refresh()
    assert not vm.unlocked and not vm.panel_open and actions.sent[-1] == ("logout", {})
    vm.unlocked = True
    vm.finished(result(view(), "card-removed"))
    assert not vm.unlocked and vm.message == "Carte retirée : espace pharmacien verrouillé"


def test_a_wrong_pin_keeps_the_panel_locked(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.open_panel()
    vm.choose_operator("alice")
    vm.pin.press("9")
    vm.submit_pin()
    vm.finished(result(view(), "intent:login", "Code personnel incorrect (4 essai(s) restant(s))", ok=False))
    assert not vm.unlocked and vm.message_ok is False


def test_validation_asks_the_pin_again_and_closes_the_panel_once_billed(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.unlocked, vm.operator_name = True, "alice"
    vm.finished(result(view(step="control")))
    vm.validate_pressed()
    assert vm.panel_open and vm.pin_for == "validate"
    vm.pin.press("2")
    vm.submit_pin()
    assert actions.sent[-1] == ("validate", {"operator": "alice", "pin": "2"})
    vm.finished(result(view(step="payment", amounts={"total": 1, "amo": 0, "amc": 0, "to_pay": 0}), "intent:validate"))
    assert not vm.panel_open and vm.screen == "payment" and vm.to_pay_text == "Rien à payer"


def test_cps_pin_goes_to_the_card_then_validation_needs_no_pin(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    checked: list[str] = []
    vm.verify_cps = checked.append
    vm.cps_inserted("Alice Martin", tries_left=3)
    assert vm.panel_open and vm.pin_for == "cps" and "Alice Martin" in vm.message
    for digit in "1234":
        vm.pin.press(digit)
    vm.submit_pin()
    assert checked == ["1234"] and actions.sent == []  # the card checks the PIN, not the core
    vm.finished(result(view(operator=True, cps=True), "intent:cps_login", "Bonjour alice"))
    assert vm.unlocked and vm.cps_open and vm.operator_name == "Alice Martin"
    vm.finished(result(view(step="control", operator=True, cps=True)))
    vm.validate_pressed()
    assert actions.sent[-1] == ("validate", {"cps": True}) and vm.pin_for == ""


def test_a_pin_refused_by_the_card_keeps_the_panel_locked(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.verify_cps = lambda pin: None
    vm.cps_inserted("Alice Martin", tries_left=3)
    vm.pin.press("9")
    vm.submit_pin()
    vm.finished(result(view(), "intent:cps_login", "Code CPS incorrect (2 essai(s) restant(s))", ok=False))
    assert not vm.unlocked and vm.pin_for == "cps" and vm.message_ok is False


def test_cps_card_removed_locks_the_panel_and_logs_out(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.verify_cps = lambda pin: None
    vm.cps_inserted("Alice Martin", tries_left=3)
    vm.pin.press("1")
    vm.submit_pin()
    vm.finished(result(view(operator=True, cps=True), "intent:cps_login", "Bonjour alice"))
    assert vm.unlocked
    vm.cps_removed()
    assert not vm.unlocked and not vm.cps_open and not vm.panel_open and vm.operator_name == ""
    assert actions.sent[-1] == ("logout", {})
    assert vm.message == "Carte CPS retirée : espace pharmacien verrouillé"


def test_a_cps_pulled_out_while_its_pin_is_checked_opens_no_session(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.verify_cps = lambda pin: None
    vm.cps_inserted("Alice Martin", tries_left=3)
    vm.pin.press("1")
    vm.submit_pin()
    vm.cps_removed()
    vm.finished(result(view(operator=True, cps=True), "intent:cps_login", "Bonjour alice"))
    assert not vm.unlocked and actions.sent[-1] == ("logout", {})
