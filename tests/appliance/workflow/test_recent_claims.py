"""The pharmacist's "Dernières factures" and the bill a power cut hid from its patient, through ``Counter.handle``.

The pharmacist asks for the last claims from the panel (an intent); the kiosk tells the core when the
patient's screen showed a bill (``ResultShown``) and when it starts (``Started``). A restart is a new
Counter on the same SQLite file, as after a power cut.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from appliance.store import audit
from appliance.store.recent_claims import RECOVERY_WINDOW_S, SHOWN_SETTING
from appliance.workflow.events import ResultShown, Started
from sandbox.population import CASES, PEOPLE
from tests.appliance.workflow.conftest import Box, Clock

Boot = Callable[[], Box]


def _listed(box: Box) -> list[audit.AuditEntry]:
    return [e for e in audit.entries(box.db, limit=10_000) if e.action == "claims.listed"]


def _billed_and_shown(box: Box, case: str = "durand", boxes: int = 1) -> int:
    number = box.bill(case, boxes)
    box.send(ResultShown(number))
    assert box.intent("close").accepted
    return number


# ---------------------------------------------------------------------------------------------- the list
def test_the_list_is_newest_first_with_amounts_operator_and_patient_initials(boot: Boot, clock: Clock) -> None:
    box = boot()
    first = _billed_and_shown(box, "durand", boxes=1)
    clock.now += 60
    second = _billed_and_shown(box, "ald", boxes=2)
    assert box.intent("login", operator="alice", pin="2468").accepted

    outcome = box.intent("recent_claims")

    assert outcome.accepted and outcome.message is None
    listed = box.counter.view()["recent_claims"]
    assert [c["claim"] for c in listed] == [second, first]
    newest = listed[0]
    assert newest["total"] == newest["amo"] + newest["amc"] + newest["patient"] > 0
    assert newest["operator"] == "alice"
    traits = PEOPLE[CASES["ald"].members[0]].beneficiary.traits  # opened from the sealed fields...
    assert newest["initials"] == f"{traits.first_names[0]}. {traits.birth_name[0]}."
    shown = json.dumps(listed)  # ...but the screen faces the patient: never a name in full
    assert traits.birth_name not in shown and traits.first_names.split()[0] not in shown
    assert (newest["day"], listed[1]["time"]) == ("15/06/2026", "11:00")  # 09:00 UTC is 11:00 in Paris
    assert newest["time"] == "11:01" and newest["interrupted"] is False


def test_the_list_holds_ten_claims_unless_asked_for_more_or_fewer(boot: Boot, clock: Clock) -> None:
    box = boot()
    numbers = []
    for _ in range(12):
        clock.now += 30
        numbers.append(_billed_and_shown(box))
    box.intent("login", operator="alice", pin="2468")
    box.intent("recent_claims")
    assert [c["claim"] for c in box.counter.view()["recent_claims"]] == numbers[::-1][:10]
    box.intent("recent_claims", limit=3)
    assert [c["claim"] for c in box.counter.view()["recent_claims"]] == numbers[::-1][:3]


def test_every_listing_is_audited_under_the_operator_who_looked(boot: Boot) -> None:
    box = boot()
    number = _billed_and_shown(box)
    box.intent("login", operator="bruno", pin="1357")
    box.intent("recent_claims")
    box.intent("recent_claims")

    rows = _listed(box)
    bruno = box.counter.operator_id
    assert len(rows) == 2
    assert all(row.operator_id == bruno for row in rows)
    assert rows[0].details["claims"] == [number]
    patient = box.db.conn.execute("SELECT patient_id FROM claims WHERE number = ?", (number,)).fetchone()[0]
    assert rows[0].details["patients"] == [patient]
    assert "DURAND" not in repr(rows[0].details)  # the journal names nobody
    assert audit.verify(box.db).ok


def test_without_an_operator_the_list_is_refused_in_french_and_nothing_is_read(boot: Boot) -> None:
    box = boot()
    _billed_and_shown(box)

    outcome = box.intent("recent_claims")

    assert not outcome.accepted
    assert outcome.message == "Identifiez-vous pour voir les dernières factures"
    assert box.counter.view()["recent_claims"] == []
    assert _listed(box) == []


def test_the_list_goes_at_logout_and_is_never_shown_during_a_patient_session(boot: Boot) -> None:
    box = boot()
    _billed_and_shown(box)
    box.intent("login", operator="alice", pin="2468")
    box.intent("recent_claims")
    assert box.counter.view()["recent_claims"]

    box.bill()  # the next patient: the previous ones' names leave the screen
    assert box.counter.view()["recent_claims"] == []
    refused = box.intent("recent_claims")
    assert not refused.accepted
    assert refused.message == "Terminez la session en cours pour voir les dernières factures"

    box.intent("close")
    box.intent("recent_claims")
    box.intent("logout")
    assert box.counter.view()["recent_claims"] == []


# ---------------------------------------------------------------------------------------------- recovery
def test_a_claim_committed_but_never_shown_is_pointed_out_after_a_restart(boot: Boot, clock: Clock) -> None:
    before = boot()
    _billed_and_shown(before)
    clock.now += 120
    cut_off = before.bill()  # COMMIT done, then the power goes before the payment screen
    clock.now += 300  # five minutes to boot again

    after = boot()
    outcome = after.send(Started())

    assert outcome.accepted and outcome.message is None  # nothing said to the patient
    assert after.counter.view()["interrupted"] == {
        "claim": cut_off,
        "time": "11:02",
        "text": f"Facture n° {cut_off} enregistrée à 11:02 avant l'arrêt : vérifiez avec le patient.",
    }
    journal = [e for e in audit.entries(after.db, limit=10_000) if e.action == "claim.interrupted"]
    assert [e.subject for e in journal] == [str(cut_off)]
    # the pharmacist logs in and finds it, marked, at the top of the list
    after.intent("login", operator="alice", pin="2468")
    after.intent("recent_claims")
    top = after.counter.view()["recent_claims"][0]
    assert (top["claim"], top["interrupted"]) == (cut_off, True)
    # once they have seen the list, the banner goes with their session
    after.intent("logout")
    assert after.counter.view()["interrupted"] is None


def test_a_claim_whose_result_was_shown_is_not_pointed_out(boot: Boot, clock: Clock) -> None:
    before = boot()
    number = before.bill()
    before.send(ResultShown(number))  # the payment screen was up; the patient had not touched "Terminer"
    clock.now += 60

    after = boot()
    after.send(Started())

    assert after.counter.view()["interrupted"] is None
    assert after.db.conn.execute("SELECT value FROM pharmacy WHERE key = ?", (SHOWN_SETTING,)).fetchone() == (
        str(number),
    )
    shown = [e for e in audit.entries(after.db, limit=10_000) if e.action == "claim.shown"]
    assert [e.subject for e in shown] == [str(number)]


def test_an_old_unshown_claim_is_not_pointed_out(boot: Boot, clock: Clock) -> None:
    before = boot()
    before.bill()
    clock.now += RECOVERY_WINDOW_S + 1  # the box stayed off for a quarter of an hour

    after = boot()
    after.send(Started())

    assert after.counter.view()["interrupted"] is None


def test_a_late_or_unknown_report_never_hides_a_newer_claim(boot: Boot, clock: Clock) -> None:
    before = boot()
    older = _billed_and_shown(before)
    newest = before.bill()
    before.send(ResultShown(older))  # a stale report
    before.send(ResultShown(newest + 5))  # a number that is no claim of this file

    after = boot()
    after.send(Started())

    assert after.counter.view()["interrupted"]["claim"] == newest


def test_a_start_with_no_claim_at_all_points_out_nothing(boot: Boot) -> None:
    box = boot()
    assert box.send(Started()).accepted
    assert box.counter.view()["interrupted"] is None
