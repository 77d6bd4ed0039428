"""The view model without a window: what each step shows, PIN handling, timeouts, cancel, panel lock,
the last claims and the start after a bill its patient never saw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from appliance.products import ProductTable
from appliance.workflow import messages as msg
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step
from tests.ui.states import (
    BASE,
    CLAIMS,
    INTERRUPTED,
    LINES,
    OTHER_PATIENT,
    PATIENT,
    STATES,
    document_check,
    pending,
    prescription_to_confirm,
    view,
)
from ui.controller import Result

if TYPE_CHECKING:
    from ui.viewmodel import KioskViewModel


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.shown: list[int] = []

    def intent(self, name: str, **args: Any) -> None:
        self.sent.append((name, args))

    def claim_shown(self, claim: int) -> None:
        self.shown.append(claim)


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
    assert vm.pharmacist_needed == "Le pharmacien vérifie votre identité…"
    assert vm.identity_choices[0]["text"] == "Nadia PETIT, femme, née le 04/07/1990 (13055)"
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
    vm.finished(result(state, "card-inserted", "Hors ligne : la recherche INSi sera complétée au retour du réseau"))
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
    vm.finished(result(view(step="control", operator=True)))
    vm.validate_pressed()
    assert vm.panel_open and vm.pin_for == "validate"
    vm.pin.press("2")
    vm.submit_pin()
    assert actions.sent[-1] == ("validate", {"operator": "alice", "pin": "2"})
    billed = view(step="payment", operator=True, amounts={"total": 1, "amo": 0, "amc": 0, "to_pay": 0})
    vm.finished(result(billed, "intent:validate"))
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


# ---------------------------------------------------------------------------------------------- last claims
def _login(vm: Any, name: str = "alice") -> None:
    vm.choose_operator(name)
    vm.pin.press("2")
    vm.submit_pin()
    vm.finished(result(view(operator=True, interrupted=INTERRUPTED), "intent:login", f"Bonjour {name}"))


def test_a_start_after_a_cut_off_bill_opens_the_panel_then_the_list_after_login(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(view(interrupted=INTERRUPTED), "started"))

    assert vm.panel_open and not vm.unlocked
    assert vm.recovery_text == "Facture n° 12 enregistrée à 11:02 avant l'arrêt : vérifiez avec le patient."
    assert vm.screen == "attract" and vm.message == ""  # the patient's screen says nothing of it

    _login(vm)
    assert actions.sent[-1] == ("recent_claims", {})  # straight to the list, no extra touch
    assert not vm.claims_open  # until the core agreed (and audited the read)
    vm.finished(result(view(operator=True, recent_claims=CLAIMS, interrupted=INTERRUPTED), "intent:recent_claims"))

    assert vm.claims_open
    first = vm.recent_claims[0]
    assert first["text"] == "[b]N° 12[/b]   11:02   M. D."
    assert first["detail"] == ("Total 23,45\u00a0€ · AMO 15,00\u00a0€ · AMC 5,00\u00a0€ · patient 3,45\u00a0€ · alice")
    assert first["gap"] and not any(row["gap"] for row in vm.recent_claims[1:])
    assert vm.recent_claims[-1]["text"].startswith("[b]N° 8[/b]   14/06/2026 17:45")
    assert vm.recent_claims[-1]["detail"].endswith("alice · acceptée")


def test_a_start_with_nothing_cut_off_leaves_the_patient_screen_alone(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(view(), "started"))
    assert not vm.panel_open and vm.recovery_text == "" and vm.screen == "attract"
    assert actions.sent == []


def test_the_list_is_asked_from_the_panel_and_forgotten_when_it_locks(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.open_panel()
    _login(vm)
    vm.finished(result(view(operator=True), "intent:login"))
    vm.show_claims()
    assert actions.sent[-1] == ("recent_claims", {})
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "intent:recent_claims"))
    assert vm.claims_open and len(vm.recent_claims) == 5
    vm.close_claims()
    assert not vm.claims_open and vm.unlocked
    vm.show_claims()
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "intent:recent_claims"))
    vm.lock()
    assert not vm.claims_open and list(vm.recent_claims) == [] and actions.sent[-1] == ("logout", {})


def test_a_refused_list_keeps_the_page_and_says_why(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.unlocked = True
    vm.show_claims()
    refusal = "Terminez la session en cours pour voir les dernières factures"
    vm.finished(result(view(step="rights", operator=True), "intent:recent_claims", refusal, ok=False))
    assert not vm.claims_open and vm.message == refusal and not vm.message_ok


def test_a_patient_session_closes_the_list(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.panel_open, vm.unlocked, vm.claims_open = True, True, True
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "intent:recent_claims"))
    assert vm.claims_open and vm.recent_claims
    vm.finished(result(view(step="choose-beneficiary", operator=True), "card-inserted"))
    assert not vm.claims_open and list(vm.recent_claims) == []


def test_the_payment_screen_is_reported_shown_once_and_from_the_clock(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    payment = view(step="payment", claim=7, amounts={"total": 1, "amo": 0, "amc": 0, "to_pay": 0})
    vm.finished(result(payment, "intent:validate", "Rien à payer"))
    assert vm.screen == "payment" and actions.shown == []  # not before a frame was drawn
    vm.refresh()
    assert actions.shown == [7]
    vm.finished(result(payment, "intent:dmp_document", "Document envoyé au DMP"))
    vm.refresh()
    assert actions.shown == [7]


def test_a_bill_hidden_by_the_waiting_screen_is_not_reported(kiosk: Any) -> None:
    vm, actions, clock = kiosk
    vm.began("intent:dmp_document")
    clock.now += 1
    vm.refresh()
    assert vm.screen == "waiting"
    vm.finished(result(view(step="payment", claim=8, amounts={"total": 1, "amo": 0, "amc": 0, "to_pay": 0}), "tick"))
    vm.refresh()
    assert actions.shown == []


def test_the_kiosks_own_events_do_not_end_a_wait(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.began("scan")
    vm.finished(result(view(), "shown"))
    vm.finished(result(view(), "started"))
    assert vm.busy


def test_the_names_are_dropped_as_soon_as_the_panel_closes(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.open_panel()
    vm.unlocked = True
    vm.show_claims()
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "intent:recent_claims"))
    assert vm.claims_open and vm.recent_claims
    vm.close_panel()
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "tick"))  # the core still holds them
    assert not vm.claims_open and list(vm.recent_claims) == []


# ---------------------------------------------------------------------------------------------- professional acts
def _unlock(vm: Any, name: str = "alice") -> None:
    vm.choose_operator(name)
    vm.pin.press("2")
    vm.submit_pin()
    vm.finished(result(dict(vm._view, operator=True, operator_name=name), "intent:login", f"Bonjour {name}"))


def test_a_pending_act_opens_the_panel_on_its_login_then_closes_it_once_done(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(document_check(), "intent:choose_beneficiary"))
    assert vm.screen == "identity" and vm.pharmacist_needed == "Le pharmacien vérifie votre pièce d'identité…"
    assert vm.panel_open and not vm.unlocked and vm.pin_for == ""  # the operators' list first
    _unlock(vm)
    assert vm.unlocked and vm.pending_act == "identity-document"
    vm.document_chosen("passeport")
    assert actions.sent[-1] == ("document_checked", {"document": "passeport"})
    vm.finished(result(view(step="rights", patient=PATIENT, operator=True), "intent:document_checked"))
    assert not vm.panel_open and vm.unlocked and vm.screen == "rights"  # the patient sees their rights
    vm.finished(result(prescription_to_confirm(operator=True), "scan"))
    assert vm.panel_open and vm.pin_for == "" and vm.unlocked  # straight to the act: still logged in
    assert [a["intent"] for a in vm.work_actions] == ["cancel", "reject_prescription", "confirm_prescription"]
    vm.work_action("confirm_prescription")
    assert actions.sent[-1] == ("confirm_prescription", {"renewal": 0})


def test_a_pending_act_opens_the_cps_pad_when_a_card_is_in_the_reader(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.verify_cps = lambda pin: None
    vm.cps_holder = "Alice Martin"
    vm.finished(result(pending("validate", step="control", patient=PATIENT), "intent:continue"))
    assert vm.panel_open and vm.pin_for == "cps"


def test_a_panel_opened_by_hand_stays_open_after_the_act(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.finished(result(view(step="rights", patient=PATIENT)))
    vm.open_panel()
    _unlock(vm)
    vm.finished(result(prescription_to_confirm(operator=True), "scan"))
    vm.finished(result(view(step="dispensation", patient=PATIENT, operator=True), "intent:confirm_prescription"))
    assert vm.panel_open


def test_no_professional_act_is_sent_without_a_login(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(document_check(minor=True)))
    vm.close_panel()
    vm.choose_identity(0)
    vm.document_chosen("cni")
    vm.document_chosen("refused")
    vm.confirm_prescription()
    vm.assign_box(1)
    vm.annotate("Patient informé de l'écart")
    vm.enter_line("DOLIPRANE", "3400930000120")
    for intent in ("confirm_traits", "accept_prescription_patient", "reject_prescription", "remove_box", "validate"):
        vm.work_action(intent)
    assert actions.sent == []
    assert vm.message == msg.PROFESSIONAL_NEEDED and not vm.message_ok
    assert vm.panel_open and not vm.unlocked and vm.pin_for == ""  # on the login


def test_the_documents_an_adult_may_show(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(document_check(operator=True)))
    assert [(d["index"], d["text"]) for d in vm.documents] == [
        ("passeport", "Passeport"),
        ("cni", "Carte d'identité"),
        ("titre-sejour", "Titre de séjour"),
        ("absent", "Pas de pièce"),
        ("refused", "Refus du patient"),
        ("contradicts", "Pièce non conforme"),
    ]
    assert [d.get("intent") for d in vm.documents[3:]] == [
        "document_absent",
        "document_refused",
        "document_contradicts",
    ]
    assert vm.guardian_documents == [] and not vm.minor
    _unlock(vm)
    for answer in ("absent", "refused", "contradicts"):
        vm.document_chosen(answer)
    assert [name for name, _ in actions.sent[-3:]] == ["document_absent", "document_refused", "document_contradicts"]


def test_a_minors_family_record_comes_with_the_guardians_document(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(document_check(minor=True)))
    _unlock(vm)
    assert vm.minor and [d["index"] for d in vm.documents][:5] == [
        "passeport",
        "cni",
        "titre-sejour",
        "livret-famille",
        "acte-naissance",
    ]
    assert "moins de 18 ans" in vm.work_title
    sent = len(actions.sent)
    vm.document_chosen("livret-famille")
    assert len(actions.sent) == sent and vm.guardian_for == "livret-famille"
    assert "représentant légal" in vm.work_title
    assert [g["index"] for g in vm.guardian_documents] == ["passeport", "cni", "titre-sejour", "back"]
    vm.guardian_chosen("back")
    assert vm.guardian_for == "" and len(actions.sent) == sent
    vm.document_chosen("acte-naissance")
    vm.guardian_chosen("cni")
    assert actions.sent[-1] == ("document_checked", {"document": "acte-naissance", "guardian_document": "cni"})
    assert vm.guardian_for == ""


def test_the_prescription_patient_is_shown_to_both_and_compared_on_the_panel(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    mismatch = pending(
        "prescription-patient",
        step="prescription",
        patient=PATIENT,
        prescription=OTHER_PATIENT,
        lines=2,
        line_list=[dict(line, dispensed=0) for line in LINES],
        operator=True,
    )
    vm.finished(result(mismatch, "scan", msg.PRESCRIPTION_OTHER_PATIENT))
    assert vm.prescription_patient == "Marie DURAND, 03/05/1970"
    assert [row["text"] for row in vm.prescription_rows] == [
        "Sur l'ordonnance : Marie DURAND, 03/05/1970",
        "Patient identifié : Marie Claire DURAND, 12/03/1968",
        "Diffère : Date de naissance",
    ]
    _unlock(vm)
    assert [a["intent"] for a in vm.work_actions] == ["cancel", "reject_prescription", "accept_prescription_patient"]
    vm.work_action("accept_prescription_patient")
    assert actions.sent[-1] == ("accept_prescription_patient", {})
    vm.finished(result(prescription_to_confirm(operator=True), "scan"))
    assert vm.prescription_rows == [] and vm.prescription_patient == "Marie DURAND, 12/03/1968"


def test_a_box_is_assigned_to_a_line_on_the_panel_with_its_serial(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    boxes = [
        {
            "name": "CLAMOXYL",
            "cip13": "3400930000779",
            "serial": "S9",
            "expiry": "",
            "line": None,
            "substitution": False,
        }
    ]
    state = pending(
        "assign-box", step="dispensation", patient=PATIENT, lines=2, line_list=LINES, boxes=1, box_list=boxes
    )
    vm.finished(result(state, "scan", "CLAMOXYL : à quelle ligne correspond cette boîte ?"))
    _unlock(vm)
    vm.assign_box(2)
    assert actions.sent[-1] == ("assign_box", {"line": 2, "serial": "S9"})
    vm.work_action("remove_box")
    assert actions.sent[-1] == ("remove_box", {"serial": "S9"})


def test_a_refused_event_leaves_the_screen_where_it_was(kiosk: Any) -> None:
    """Even when the projection that came back with the refusal has moved on (the core rolls a refused
    event back; the kiosk does not count on it)."""
    vm, _, clock = kiosk
    rights = view(step="rights", patient=PATIENT)
    vm.finished(result(rights, "scan"))
    moved = view(step="identity", patient={"first_names": "LEA", "birth_name": "MARTIN", "birth_date": "14/02/2012"})
    vm.finished(result(moved, "card-inserted", msg.NOT_NOW.format(what=msg.EXPECTED["rights"]), ok=False))
    assert (vm.step, vm.screen, vm.greeting) == ("rights", "rights", "Bonjour Marie")
    assert vm.message.startswith("Ce n'est pas le moment") and not vm.message_ok
    assert not vm.panel_open
    # on the thank-you screen too: the receipt stays up
    vm.finished(result(view(receipt=["Facture n° 3"]), "intent:close", "Merci, à bientôt"))
    vm.finished(result(view(step="identity", patient=PATIENT), "card-inserted", "Carte illisible", ok=False))
    assert vm.screen == "thanks" and vm.receipt == ["Facture n° 3"]
    clock.now += 6
    vm.refresh()
    assert vm.screen == "attract"


def test_a_refused_event_still_reports_the_network_and_the_login(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.finished(result(view(step="rights", patient=PATIENT, operator=True)))
    vm.unlocked = True
    vm.finished(result(view(step="rights", patient=PATIENT, online=False, operator=False), "scan", "Refusé", ok=False))
    assert not vm.online and vm.offline_text == "Hors ligne"
    assert not vm.unlocked  # the core had ended the login meanwhile


def test_the_core_ending_the_login_locks_the_panel(kiosk: Any) -> None:
    vm, actions, _ = kiosk
    vm.finished(result(document_check()))
    _unlock(vm)
    assert vm.panel_open and vm.unlocked
    sent = len(actions.sent)
    vm.finished(result(document_check(operator=False), "tick", msg.OPERATOR_TIMEOUT))
    assert not vm.unlocked and not vm.panel_open and vm.operator_name == ""
    assert len(actions.sent) == sent  # no logout to send: the core already ended it
    assert vm.message == msg.OPERATOR_TIMEOUT


def test_the_last_claims_show_initials_only(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.panel_open, vm.unlocked = True, True
    vm.finished(result(view(operator=True, recent_claims=CLAIMS), "intent:recent_claims"))
    assert [row["text"].split("   ")[-1] for row in vm.recent_claims][:3] == ["M. D.", "J. M.", "N. P."]
    shown = repr([dict(row) for row in vm.recent_claims])
    assert not any(name in shown for name in ("DURAND", "Marie", "MARTIN", "PETIT", "Nadia"))


# ---------------------------------------------------------------------------------------------- MSSanté
def test_a_qualified_patient_reads_that_the_receipt_goes_to_their_mailbox_and_the_panel_offers_the_summary(
    kiosk: Any,
) -> None:
    vm, actions, _ = kiosk
    vm.unlocked, vm.operator_name = True, "alice"
    amounts = {"total": 1, "amo": 0, "amc": 0, "to_pay": 0}
    billed = view(step="payment", operator=True, amounts=amounts, mailbox=True, prescriber_mailbox=True)
    vm.finished(result(billed, "intent:validate"))

    assert vm.amount_details[-1] == msg.RECEIPT_MAILED
    assert [a["index"] for a in vm.work_actions] == ["prescriber_summary_no", "prescriber_summary_yes"]
    vm.work_action("prescriber_summary_yes")
    assert actions.sent[-1] == ("prescriber_summary", {"agreed": True})


def test_without_a_qualified_ins_nothing_is_said_of_a_mailbox_and_no_summary_is_offered(kiosk: Any) -> None:
    vm, _, _ = kiosk
    vm.unlocked = True
    amounts = {"total": 1, "amo": 0, "amc": 0, "to_pay": 0}
    vm.finished(
        result(view(step="payment", operator=True, amounts=amounts, prescriber_mailbox=True), "intent:validate")
    )
    assert msg.RECEIPT_MAILED not in vm.amount_details and vm.work_actions == []
