"""Who may act at the counter: a login that ends by itself, and a PIN lock-out a patient cannot abuse.

The screen faces the patient: anyone can type PINs on it, so wrong PINs lock a pharmacist's code
for longer and longer, and the pharmacist's CPS (card + card PIN) still lets them in and lifts the
lock. A login left open ends after ``operator_idle_s`` without a professional act.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.domain import Role
from appliance.store import audit
from appliance.store import operators as operators_module
from appliance.workflow import messages as msg
from appliance.workflow.events import Intent, Tick
from tests.appliance.workflow.conftest import PIN, Box, Clock

Boot = Callable[[], Box]
RPPS = "10000000007"


def _alice(box: Box) -> int:
    return next(op.id for op in operators_module.list_operators(box.db) if op.name == "alice")


def _wrong_pins(box: Box, count: int, clock: Clock) -> list[str]:
    said = []
    for _ in range(count):
        outcome = box.intent("login", operator="alice", pin="0000")
        assert not outcome.accepted
        said.append(outcome.message or "")
        clock.now += 1
    return said


def test_wrong_pins_typed_at_the_screen_lock_the_code_and_say_to_use_the_cps(boot: Boot, clock: Clock) -> None:
    box = boot()
    said = _wrong_pins(box, 5, clock)
    assert said[0] == msg.PIN_WRONG.format(left=4)
    assert said[-1].startswith("Code bloqué jusqu'à ") and said[-1].endswith("connectez-vous avec votre carte CPS")
    assert not box.intent("login", operator="alice", pin=PIN).accepted  # even the right PIN, while locked
    assert box.counter.operator is None


def test_the_pharmacists_cps_still_opens_the_panel_and_lifts_the_lock(boot: Boot, clock: Clock) -> None:
    box = boot()
    operators_module.set_rpps(box.db, _alice(box), RPPS, by=None)
    _wrong_pins(box, 6, clock)  # a patient playing with the pad

    assert box.send(Intent("cps_login", {"rpps": RPPS, "name": "ALICE"})).accepted
    assert box.counter.operator is not None and box.counter.operator.name == "alice"
    unlocked = [e for e in audit.entries(box.db, limit=10_000) if e.action == "operator.unlocked"]
    assert [(e.operator_id, e.details["reason"]) for e in unlocked] == [(_alice(box), "cps-login")]
    assert box.intent("logout").accepted
    assert box.intent("login", operator="alice", pin=PIN).accepted  # her PIN works again at once


def test_a_lock_that_ends_tomorrow_says_the_day(boot: Boot, clock: Clock) -> None:
    box = boot()
    _wrong_pins(box, 5, clock)
    for _ in range(11):  # each further failure, once the lock is over, doubles it: 2 min ... 24 h
        clock.now += operators_module.LOCKOUT_MAX_SECONDS
        failed_at = clock.now
        said = _wrong_pins(box, 1, clock)
    assert operators_module.lockout_seconds(16) == operators_module.LOCKOUT_MAX_SECONDS
    until = failed_at + operators_module.LOCKOUT_MAX_SECONDS
    assert said[0] == msg.LOCKED.format(until=f"{msg.fr_day(until)} {msg.fr_time(until)}")


def test_a_login_left_open_ends_after_the_idle_time_and_is_audited(boot: Boot, clock: Clock) -> None:
    box = boot()
    idle = box.counter.settings.operator_idle_s
    assert box.intent("login", operator="alice", pin=PIN).accepted
    clock.now += idle - 1
    assert box.send(Tick()).message is None and box.counter.operator is not None
    assert box.intent("send_batch").accepted  # a professional act: the login lives on from here
    clock.now += idle - 1
    box.send(Tick())
    assert box.counter.operator is not None

    clock.now += 1
    outcome = box.send(Tick())

    assert outcome.message == msg.OPERATOR_TIMEOUT and box.counter.operator is None
    assert box.counter.view()["operator"] is False
    refused = box.intent("send_batch")
    assert not refused.accepted and refused.message == msg.PROFESSIONAL_NEEDED
    timeouts = [e for e in audit.entries(box.db, limit=10_000) if e.action == "operator.timeout"]
    assert [e.operator_id for e in timeouts] == [_alice(box)]


def test_an_act_after_the_idle_time_is_refused_even_before_any_tick(boot: Boot, clock: Clock) -> None:
    box = boot()
    assert box.intent("login", operator="alice", pin=PIN).accepted
    clock.now += box.counter.settings.operator_idle_s

    outcome = box.intent("send_batch")

    assert not outcome.accepted and outcome.message == msg.PROFESSIONAL_NEEDED
    assert box.counter.operator is None


def test_a_colleague_pharmacist_lifts_the_lock_under_their_name_a_preparer_cannot(boot: Boot, clock: Clock) -> None:
    box = boot()
    operators_module.add_operator(box.db, "carole", Role.TITULAIRE, "8642")
    _wrong_pins(box, 5, clock)
    assert box.intent("login", operator="bruno", pin="1357").accepted
    refused = box.intent("unlock_operator", operator="alice")
    assert not refused.accepted and refused.message == msg.ACT_NOT_ALLOWED

    assert box.intent("login", operator="carole", pin="8642").accepted
    outcome = box.intent("unlock_operator", operator="alice")

    assert outcome.accepted and outcome.message == "Code de alice débloqué"
    unlocked = [e for e in audit.entries(box.db, limit=10_000) if e.action == "operator.unlocked"]
    carole = next(op.id for op in operators_module.list_operators(box.db) if op.name == "carole")
    assert [(e.operator_id, e.details["reason"]) for e in unlocked] == [(carole, "colleague")]
    assert box.intent("login", operator="alice", pin=PIN).accepted
