"""What each role may do is a setting, enforced by the core; e-CPS logins behave as the other logins.

A préparateur acts under a pharmacist's responsibility: by default they handle identities,
prescriptions, boxes, the DP and batches, but not the DMP, the prescriber's summary or a colleague's
lock; the pharmacy may widen or narrow that per role.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from appliance.domain import DEFAULT_ACTS, Act, Role
from appliance.scenario import START
from appliance.store import audit
from appliance.store import operators as operators_module
from appliance.workflow import messages as msg
from appliance.workflow.events import CardInserted, Intent
from appliance.workflow.machine import CounterSettings
from sandbox.population import CASES, PEOPLE
from tests.appliance.workflow.conftest import PIN, PRODUCTS, Box, Clock

Boot = Callable[[], Box]
BRUNO_PIN = "1357"


def _journal(box: Box, action: str) -> list[audit.AuditEntry]:
    return [e for e in audit.entries(box.db, limit=10_000) if e.action == action]


def test_a_preparer_handles_the_batch_but_not_a_colleagues_lock_and_the_refusal_is_journaled(boot: Boot) -> None:
    box = boot()
    assert box.intent("login", operator="bruno", pin=BRUNO_PIN).accepted

    assert box.intent("send_batch").accepted  # Act.BATCH is a préparateur's by default
    refused = box.intent("unlock_operator", operator="alice")

    assert not refused.accepted and refused.message == msg.ACT_NOT_ALLOWED
    (entry,) = _journal(box, "act.refused")
    assert entry.details == {"act": "unlock", "role": "preparateur"} and entry.operator_id is not None


def test_the_pharmacy_can_narrow_what_a_preparer_may_do(boot: Boot) -> None:
    box = boot()
    box.counter.settings = CounterSettings(acts={"preparateur": ["identity", "prescription"]})  # type: ignore[dict-item]
    assert box.intent("login", operator="bruno", pin=BRUNO_PIN).accepted

    refused = box.intent("send_batch")

    assert not refused.accepted and refused.message == msg.ACT_NOT_ALLOWED
    assert box.counter.settings.acts[Role.PREPARATEUR] == {Act.IDENTITY, Act.PRESCRIPTION}
    assert box.counter.settings.acts[Role.PHARMACIEN] == DEFAULT_ACTS[Role.PHARMACIEN]  # left out: defaults


def test_a_preparer_still_cannot_validate_whatever_the_acts_say(boot: Boot) -> None:
    box = boot()
    box.counter.settings = CounterSettings(acts={"preparateur": [a.value for a in Act]})  # type: ignore[dict-item]
    assert box.intent("login", operator="bruno", pin=BRUNO_PIN).accepted
    person = PEOPLE[CASES["durand"].members[0]]
    box.send(CardInserted((person.beneficiary,), {person.beneficiary.nir: person.amo}, START.date()))
    box._ok(box._scan("EP0001-0000-ROLE-0001"))
    box._ok(box.intent("enter_line", label="CIP", quantity=1, cip13=PRODUCTS[0]))
    box._ok(box.intent("confirm_prescription"))
    box._ok(box._scan(f"010{PRODUCTS[0]}17271231" + "10LOT\x1d21ROLE01"))
    box._ok(box.intent("continue"))

    refused = box.intent("validate", operator="bruno", pin=BRUNO_PIN)

    assert not refused.accepted and refused.message == msg.NEED_PHARMACIST
    assert box.db.conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert [e.details for e in _journal(box, "control.validate-refused")] == [{"role": "preparateur"}]


@pytest.mark.parametrize(
    ("acts", "said"),
    [
        ({"stagiaire": ["identity"]}, "roles: titulaire, pharmacien, preparateur"),
        ({"preparateur": ["vaccinate"]}, "acts: identity, prescription"),
    ],
)
def test_an_unknown_role_or_act_in_the_settings_is_refused_with_the_known_ones(acts: dict, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        CounterSettings(acts=acts)


def test_an_ecps_login_maps_the_rpps_journals_it_lifts_a_lock_and_still_asks_the_pin_to_validate(
    boot: Boot, clock: Clock
) -> None:
    box = boot()
    alice = next(op.id for op in operators_module.list_operators(box.db) if op.name == "alice")
    operators_module.set_rpps(box.db, alice, "10000000007", by=None)
    for _ in range(5):
        box.intent("login", operator="alice", pin="0000")

    outcome = box.send(Intent("psc_login", {"rpps": "10000000007", "name": "ALICE"}))

    assert outcome.accepted and box.counter.operator is not None and box.counter.operator.id == alice
    assert box.counter.cps_operator is None  # no card: validating without the PIN is the CPS's alone
    assert [e.operator_id for e in _journal(box, "operator.psc.login")] == [alice]
    assert [e.details["reason"] for e in _journal(box, "operator.unlocked")] == ["psc-login"]
    assert box.bill() == 1  # the bill validates with alice's PIN
    unknown = box.send(Intent("psc_login", {"rpps": "10000000015", "name": "X"}))
    assert not unknown.accepted and [e.subject for e in _journal(box, "operator.psc.unknown")] == ["rpps:10000000015"]


def test_without_a_login_the_dp_consent_is_refused_and_nothing_is_recorded(boot: Boot) -> None:
    box = boot()
    box.bill()  # a session left on the payment screen, for a carte Vitale patient; nobody logged in now

    refused = box.intent("dp_consent", agreed=True)

    assert not refused.accepted and refused.message == msg.PROFESSIONAL_NEEDED
    assert box.db.conn.execute("SELECT count(*) FROM dp_consents").fetchone()[0] == 0


def test_the_dp_consent_is_kept_for_the_next_visit_and_feeds_the_next_dispensation(boot: Boot) -> None:
    box = boot()
    assert box.intent("login", operator="alice", pin=PIN).accepted
    box.bill()
    assert box.intent("dp_consent", agreed=True).message == msg.DP_AGREED
    consult = box.intent("dp_consult")  # offline here
    assert consult.accepted and consult.message == msg.DP_OFFLINE
    assert box.intent("close").accepted

    box.bill()  # the same patient again: the consent is known, this dispensation is fed

    assert box.counter.view()["dp"]["consent"] is True
    fed = box.db.conn.execute("SELECT payload FROM outbox WHERE stream = 'dp'").fetchall()
    assert len(fed) == 1 and "NIR" not in str(fed) and "DURAND" not in str(fed)
