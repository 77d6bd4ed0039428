"""The panel's e-CPS login without a window: the view model's states, and the job that waits for the phone
off the UI thread and off the counter's worker, sending ``psc_login`` only with a verified identity."""

from __future__ import annotations

import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from appliance.psc import PendingLogin, ProfessionalIdentity, PscCancelled, PscDenied, PscError, PscExpired
from appliance.workflow import messages as msg
from appliance.workflow.machine import Outcome
from appliance.workflow.session import Step
from tests.ui.states import view
from ui.controller import Result
from ui.ecps import FAILED, EcpsLogin

if TYPE_CHECKING:
    from ui.viewmodel import KioskViewModel

ALICE = "10000000007"


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def intent(self, name: str, **args: Any) -> None:
        self.sent.append((name, args))

    def claim_shown(self, claim: int) -> None:
        pass


class FakeEcps:
    """What the panel asks of the e-CPS login (:class:`ui.ecps.EcpsLogin`)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled = 0

    def start(self, rpps: str, listener: Any) -> None:
        self.started.append(rpps)

    def cancel(self) -> None:
        self.cancelled += 1


@pytest.fixture
def panel() -> tuple[KioskViewModel, Recorder, FakeEcps]:
    from ui.viewmodel import KioskViewModel

    actions, ecps = Recorder(), FakeEcps()
    vm = KioskViewModel(actions, now=lambda: 100.0)
    vm.set_operators(["alice", "bruno", "claire"])
    vm.set_operator_rpps({"alice": ALICE, "bruno": "10000000015"})
    vm.ecps, vm.ecps_ready = ecps, True
    vm.open_panel()
    return vm, actions, ecps


def psc_result(accepted: bool = True, message: str = "Bonjour alice") -> Result:
    state = view(operator=accepted, operator_name="alice" if accepted else None)
    return Result("intent:psc_login", Outcome(accepted, Step.ATTRACT, message), state)


def test_the_chosen_operator_logs_in_with_the_phone(panel: Any) -> None:
    vm, actions, ecps = panel
    vm.choose_operator("alice")
    assert vm.pin_for == "login" and vm.ecps_possible
    vm.ecps_login()
    assert ecps.started == [ALICE] and vm.ecps_waiting and vm.pin_for == "" and vm.ecps_name == "alice"
    vm.ecps_started("Comptoir 4821")
    assert vm.ecps_code == "Comptoir 4821"
    assert actions.sent == [], "nothing reaches the core before the token is verified"
    vm.finished(psc_result())
    assert vm.unlocked and not vm.ecps_waiting and vm.operator_name == "alice" and vm.message == "Bonjour alice"


def test_an_operator_without_rpps_has_only_the_pin(panel: Any) -> None:
    vm, _, ecps = panel
    vm.choose_operator("claire")
    assert not vm.ecps_possible
    vm.ecps_login()
    assert ecps.started == [] and "Pas de RPPS enregistré pour claire" in vm.message


def test_a_refusal_on_the_phone_is_said_and_the_pin_pad_comes_back(panel: Any) -> None:
    vm, _, _ = panel
    vm.choose_operator("alice")
    vm.ecps_login()
    vm.ecps_failed(PscDenied().message)
    assert not vm.ecps_waiting and not vm.unlocked and vm.pin_for == "login"
    assert vm.message == "Connexion e-CPS refusée sur le téléphone" and vm.message_ok is False


def test_cancel_stops_the_wait_and_a_late_login_is_undone(panel: Any) -> None:
    vm, actions, ecps = panel
    vm.choose_operator("alice")
    vm.ecps_login()
    vm.cancel_ecps()
    assert ecps.cancelled == 1 and not vm.ecps_waiting and vm.message == "Connexion e-CPS annulée"
    vm.finished(psc_result())  # the token was being checked as Annuler was touched
    assert not vm.unlocked and actions.sent[-1] == ("logout", {})


def test_closing_the_panel_cancels_the_wait(panel: Any) -> None:
    vm, _, ecps = panel
    vm.choose_operator("alice")
    vm.ecps_login()
    vm.close_panel()
    assert ecps.cancelled == 1 and not vm.ecps_waiting


def test_an_e_cps_the_pharmacy_does_not_know(panel: Any) -> None:
    vm, _, _ = panel
    vm.ask_rpps()
    for digit in "10001234567":
        vm.pin.press(digit)
    assert vm.pin.mask == "10001234567", "an RPPS is no secret: shown, so it can be checked"
    vm.submit_pin()
    assert vm.ecps_waiting and vm.ecps_name == "RPPS 10001234567"
    vm.finished(psc_result(False, msg.CPS_UNKNOWN))
    assert not vm.unlocked and not vm.ecps_waiting and vm.message == msg.CPS_UNKNOWN and vm.pin_for == ""


def test_the_rpps_pad_wants_eleven_digits_and_the_pin_pad_stays_masked(panel: Any) -> None:
    vm, _, ecps = panel
    vm.ask_rpps()
    for digit in "1000":
        vm.pin.press(digit)
    vm.submit_pin()
    assert ecps.started == [] and vm.message == "Numéro RPPS : 11 chiffres" and vm.pin_for == "rpps"
    vm.close_pin()
    vm.choose_operator("alice")
    for digit in "2468":
        vm.pin.press(digit)
    assert vm.pin.mask == "••••"
    vm.ask_rpps()
    for digit in ALICE:
        vm.pin.press(digit)
    vm.submit_pin()
    assert ecps.started == [ALICE] and vm.ecps_name == "alice"


# ------------------------------------------------------------------------------------------- the job
class FakeProvider:
    def __init__(self, answer: ProfessionalIdentity | Exception) -> None:
        self.answer = answer
        self.release = threading.Event()
        self.waited = threading.Event()

    def start(self, rpps: str) -> PendingLogin:
        return PendingLogin("id-1", rpps, "Comptoir 0042", 1e9, 1.0)

    def wait(self, pending: PendingLogin, cancelled: threading.Event | None = None) -> ProfessionalIdentity:
        self.waited.set()
        assert cancelled is not None
        while not self.release.wait(0.01):
            if cancelled.is_set():
                raise PscCancelled()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class Listener:
    def __init__(self) -> None:
        self.said: queue.Queue[tuple[str, str]] = queue.Queue()

    def ecps_started(self, binding_message: str) -> None:
        self.said.put(("started", binding_message))

    def ecps_failed(self, message: str) -> None:
        self.said.put(("failed", message))


def run_job(answer: ProfessionalIdentity | Exception) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    sent: list[tuple[str, str]] = []
    posted: queue.Queue[Any] = queue.Queue()
    provider = FakeProvider(answer)
    job = EcpsLogin(provider, lambda rpps, name: sent.append((rpps, name)), posted.put)
    listener = Listener()
    job.start(ALICE, listener)
    assert provider.waited.wait(2.0) and job.busy, "the wait runs on its own thread"
    provider.release.set()
    deadline = time.monotonic() + 2.0
    while job.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    job.stop()
    while not posted.empty():
        posted.get()()
    return sent, list(listener.said.queue)


def test_the_job_sends_psc_login_with_the_verified_identity() -> None:
    sent, said = run_job(ProfessionalIdentity(ALICE, "8" + ALICE, "sub", "Alice", "MARTIN", "eidas1"))
    assert sent == [(ALICE, "Alice MARTIN")] and said == [("started", "Comptoir 0042")]


@pytest.mark.parametrize("refusal", [PscDenied(), PscExpired(), RuntimeError("bug")])
def test_the_job_says_why_and_sends_nothing(refusal: Exception) -> None:
    sent, said = run_job(refusal)
    expected = refusal.message if isinstance(refusal, PscError) else FAILED
    assert sent == [] and said == [("started", "Comptoir 0042"), ("failed", expected)]


def test_a_cancelled_job_sends_nothing_and_says_nothing() -> None:
    sent: list[tuple[str, str]] = []
    posted: queue.Queue[Any] = queue.Queue()
    provider = FakeProvider(ProfessionalIdentity(ALICE, "8" + ALICE, "sub"))
    job = EcpsLogin(provider, lambda rpps, name: sent.append((rpps, name)), posted.put)
    job.start(ALICE, Listener())
    assert provider.waited.wait(2.0)
    job.cancel()
    job.stop()
    assert not job.busy and sent == []
