"""The pharmacist panel's « Dossier pharmaceutique » section, without a window: the consent, the consult,
the list, and what never reaches a patient screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from appliance.workflow import messages as msg
from appliance.workflow.machine import Outcome
from appliance.workflow.session import Step
from tests.ui.states import AMC, AMO, DP_CONSULTED, PATIENT, document_check, prescription_to_confirm, view
from ui.controller import Result

if TYPE_CHECKING:
    from ui.viewmodel import KioskViewModel


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def intent(self, name: str, **args: Any) -> None:
        self.sent.append((name, args))

    def claim_shown(self, claim: int) -> None:
        pass


@pytest.fixture
def kiosk() -> tuple[KioskViewModel, Recorder]:
    from ui.viewmodel import KioskViewModel

    actions = Recorder()
    return KioskViewModel(actions, now=lambda: 100.0), actions


def rights(dp: dict[str, Any] | None, **changes: Any) -> dict[str, Any]:
    state = {"step": "rights", "patient": PATIENT, "rights": {"amo": AMO, "amc": AMC}, "operator": True, "dp": dp}
    return view(**{**state, **changes})


def result(state: dict[str, Any], kind: str = "scan", message: str | None = None, ok: bool = True) -> Result:
    return Result(kind, Outcome(ok, Step(state["step"]), message), state)


def unlock(vm: KioskViewModel) -> None:
    vm.open_panel()
    vm.unlocked, vm.operator_name = True, "alice"


def test_the_consent_is_asked_then_the_consult_offered(kiosk: Any) -> None:
    vm, actions = kiosk
    unlock(vm)
    vm.finished(result(rights({"consent": None, "consulted": False, "history": []})))
    assert vm.dp_shown
    assert vm.dp_title == "Dossier pharmaceutique : accord du patient ?"
    assert [(a["intent"], a["text"]) for a in vm.dp_actions] == [
        ("dp_consent", "Le patient accepte"),
        ("dp_refuse", "Refuse"),
    ]
    vm.dp_action("dp_consent")
    vm.dp_action("dp_refuse")
    assert actions.sent == [("dp_consent", {"agreed": True}), ("dp_consent", {"agreed": False})]
    vm.finished(result(rights({"consent": True, "consulted": False, "history": []}), "intent:dp_consent"))
    assert [a["intent"] for a in vm.dp_actions] == ["dp_consult"] and vm.dp_actions[0]["text"] == "Consulter"
    vm.dp_action("dp_consult")
    assert actions.sent[-1] == ("dp_consult", {})
    vm.finished(result(rights({"consent": False, "consulted": False, "history": []}), "intent:dp_consent"))
    assert vm.dp_title == "Dossier pharmaceutique : refusé par le patient"
    assert [a["intent"] for a in vm.dp_actions] == ["dp_consent"]


def test_the_consulted_dp_is_listed_on_the_panel(kiosk: Any) -> None:
    vm, _ = kiosk
    unlock(vm)
    vm.finished(result(rights(DP_CONSULTED), "intent:dp_consult", "Dossier pharmaceutique : 3 délivrance(s)"))
    assert vm.dp_title == "Dossier pharmaceutique : 3 délivrance(s)"
    assert vm.dp_rows[0] == {
        "text": "22/05/2026   1 × CETIRIZINE ARROW 10 mg cp B/7",
        "detail": "Pharmacie de la Gare, Lyon",
    }
    assert [r["text"].split()[0] for r in vm.dp_rows] == ["22/05/2026", "09/04/2026", "02/03/2026"]
    assert vm.message == "Dossier pharmaceutique : 3 délivrance(s)"  # on the open panel's banner
    vm.finished(result(rights({"consent": True, "consulted": True, "history": []}), "intent:dp_consult"))
    assert vm.dp_title == "Dossier pharmaceutique : aucune délivrance récente" and vm.dp_rows == []


def test_what_the_dp_answered_never_stays_for_the_patient(kiosk: Any) -> None:
    vm, _ = kiosk
    unlock(vm)
    vm.finished(result(rights(DP_CONSULTED), "intent:dp_consult", "Dossier pharmaceutique : 3 délivrance(s)"))
    vm.close_panel()
    assert vm.message == "" and not vm.panel_open
    # an answer arriving once the panel was closed is not said at all
    vm.finished(result(rights(DP_CONSULTED), "intent:dp_consult", msg.DP_OFFLINE))
    assert vm.message == ""
    # another message is not touched by closing the panel
    vm.open_panel()
    vm.finished(result(rights(DP_CONSULTED), "scan", "Droits mutuelle enregistrés"))
    vm.close_panel()
    assert vm.message == "Droits mutuelle enregistrés"


def test_locking_the_panel_forgets_the_list(kiosk: Any) -> None:
    vm, actions = kiosk
    unlock(vm)
    vm.finished(result(rights(DP_CONSULTED), "intent:dp_consult"))
    assert len(vm.dp_rows) == 3
    vm.lock()
    assert vm.dp_rows == [] and not vm.dp_shown
    assert actions.sent[-1] == ("logout", {})
    # the core then projects no list without an operator
    vm.finished(result(rights({"consent": True, "consulted": True, "history": []}, operator=False), "intent:logout"))
    assert vm.dp_rows == []


def test_without_login_the_dp_acts_open_the_panel_instead(kiosk: Any) -> None:
    vm, actions = kiosk
    vm.finished(result(rights({"consent": None, "consulted": False, "history": []}, operator=False)))
    assert not vm.dp_shown and vm.dp_rows == []
    vm.dp_action("dp_consent")
    assert actions.sent == [] and vm.panel_open and vm.message == msg.PROFESSIONAL_NEEDED


def test_the_section_gives_way_to_the_acts_that_need_the_whole_panel(kiosk: Any) -> None:
    vm, _ = kiosk
    unlock(vm)
    vm.finished(result(document_check(operator=True, dp={"consent": None, "consulted": False, "history": []})))
    assert not vm.dp_shown
    vm.finished(result(prescription_to_confirm(operator=True, dp=DP_CONSULTED)))
    assert vm.dp_shown and len(vm.dp_rows) == 3
    vm.finished(result(view(operator=True), "intent:close"))
    assert not vm.dp_shown and vm.dp_rows == [] and vm.dp_actions == []
