"""An event is applied whole or not at all: a refusal leaves the screen and the database as they were.

The counter runs each event in one transaction and restores the session from a copy when the event
is refused. These tests make a teleservice say no *after* the event already wrote (the patient found
by INSi, a qualification prompt used) and check that nothing of it stays.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, NoReturn

from appliance.domain import Beneficiary, InsiOutcome, InsiResult
from appliance.store import audit
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from appliance.workflow.events import CardInserted, Intent
from appliance.workflow.session import Step
from sandbox.population import CASES, PEOPLE
from tests.appliance.workflow.conftest import PIN, Box

Boot = Callable[[], Box]
LE_GOFF = PEOPLE[CASES["le-goff"].members[0]]


class AdriSaysNo:
    """Test double of the teleservices: INSi finds the patient, then ADRi refuses (an unknown NIR, say)
    unless ``adri_ok``; every other call fails as a dead network would."""

    def __init__(self) -> None:
        self.adri_ok = False

    def insi_search_card(self, beneficiary: Beneficiary) -> InsiResult:
        return InsiResult(InsiOutcome.FOUND, (LE_GOFF.ins,))

    def adri(self, beneficiary: Beneficiary, day: date) -> Any:
        if self.adri_ok:
            return LE_GOFF.amo
        raise TeleserviceRefused("AMO_UNKNOWN", "Assuré inconnu de l'organisme")

    def __getattr__(self, name: str) -> Callable[..., NoReturn]:
        def call(*_: Any, **__: Any) -> NoReturn:
            raise TeleserviceUnavailable(name)

        return call


def _card() -> CardInserted:
    return CardInserted((LE_GOFF.beneficiary,), {}, None)


def _journal(box: Box) -> list[str]:
    return [entry.action for entry in audit.entries(box.db, limit=10_000)]


def _count(box: Box, table: str) -> int:
    return int(box.db.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608


def _qualified_patient(box: Box, tele: AdriSaysNo) -> None:
    """A first visit that qualifies the patient, so the next card goes straight on to ADRi."""
    tele.adri_ok = True
    box.counter.teleservices = tele
    assert box.intent("login", operator="alice", pin=PIN).accepted
    assert box.send(_card()).step is Step.IDENTITY
    assert box.intent("document_checked", document="passeport").step is Step.RIGHTS
    assert box.intent("cancel").accepted
    tele.adri_ok = False


def test_a_card_refused_after_insi_leaves_no_visit_no_journal_row_and_the_screen_on_attract(boot: Boot) -> None:
    box = boot()
    _qualified_patient(box, AdriSaysNo())
    before, history = _journal(box), _count(box, "identity_history")

    outcome = box.send(_card())  # INSi answers, the visit is written, then ADRi says no

    assert not outcome.accepted and outcome.message == "Assuré inconnu de l'organisme"
    assert outcome.step is Step.ATTRACT and box.counter.step is Step.ATTRACT
    assert box.counter.view()["patient"] is None and box.counter.session.patient_id is None
    assert _journal(box) == before  # not even "identify.card" or "patient.visit"
    assert _count(box, "identity_history") == history


def test_document_checked_then_refused_leaves_the_identity_unqualified_and_the_question_up(boot: Boot) -> None:
    box = boot()
    tele = AdriSaysNo()
    box.counter.teleservices = tele
    assert box.intent("login", operator="alice", pin=PIN).accepted
    assert box.send(_card()).step is Step.IDENTITY
    patient = box.counter.session.patient_id or 0

    outcome = box.intent("document_checked", document="passeport")  # qualified, then ADRi says no

    assert not outcome.accepted and outcome.step is Step.IDENTITY
    assert box.records.patient_status(patient).value == "RECUP"  # no QUAL left behind
    assert box.records.identity_checks(patient) == []
    view = box.counter.view()
    assert view["qualification_prompt"] and view["pending_act"] == "identity-document"
    assert view["ins_status"] == "RECUP"

    tele.adri_ok = True  # the same answer once the service agrees: recorded once
    assert box.intent("document_checked", document="passeport").step is Step.RIGHTS
    assert box.records.patient_status(patient).value == "QUAL"
    assert [c["outcome"] for c in box.records.identity_checks(patient)] == ["checked"]


def test_a_refused_act_keeps_the_step_the_lists_and_what_the_pharmacist_already_did(boot: Boot) -> None:
    box = boot()
    tele = AdriSaysNo()
    tele.adri_ok = True
    box.counter.teleservices = tele
    box.send(_card())
    assert box.intent("login", operator="alice", pin=PIN).accepted
    box.intent("document_checked", document="passeport")
    assert box.counter.step is Step.RIGHTS
    view = box.counter.view()

    refused = box.send(Intent("document_absent", {}))  # asked and answered already

    assert not refused.accepted and box.counter.view() == view
    assert [c["document"] for c in box.records.identity_checks(box.counter.session.patient_id or 0)] == ["passeport"]


def test_an_unexpected_failure_rolls_back_like_a_refusal_and_is_raised(boot: Boot) -> None:
    box = boot()

    class Broken(AdriSaysNo):
        def adri(self, beneficiary: Beneficiary, day: date) -> Any:
            if self.adri_ok:
                return LE_GOFF.amo
            raise RuntimeError("a bug in an adapter")

    _qualified_patient(box, Broken())
    before = _journal(box)
    try:
        box.send(_card())
    except RuntimeError:
        pass
    else:
        raise AssertionError("the failure must reach the kiosk's worker, which says so")
    assert box.counter.step is Step.ATTRACT and _journal(box) == before


def test_insi_answering_several_without_naming_them_leaves_a_provisional_identity_and_says_why(boot: Boot) -> None:
    box = boot()

    class SeveralUnnamed(AdriSaysNo):
        def insi_search_card(self, beneficiary: Beneficiary) -> InsiResult:
            return InsiResult(InsiOutcome.SEVERAL, ())  # as the real INSi answers 02

    tele = SeveralUnnamed()
    tele.adri_ok = True
    box.counter.teleservices = tele

    outcome = box.send(_card())

    assert outcome.accepted and outcome.step is Step.RIGHTS
    assert "Plusieurs identités possibles" in (outcome.message or "")
    assert box.counter.view()["ins_status"] == "PROV" and box.counter.view()["identity_choices"] == 0
