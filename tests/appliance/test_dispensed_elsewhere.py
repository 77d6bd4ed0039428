"""A prescription another pharmacy already dispensed: the service says so, and the box says it plainly.

Two boxes of two pharmacies (two databases) against one sandbox ePrescription service over HTTP: the
first dispenses the sample prescription; the second, at validation, hears « déjà délivrée » from the
service (not a clash of idempotency keys) and bills nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.scenario import EXPECTED_KINDS, CounterRig, ScenarioClock, counter_rig
from appliance.store import numbering
from appliance.workflow import messages as msg
from appliance.workflow.events import Intent, Scanned
from appliance.workflow.machine import Outcome
from appliance.workflow.session import Step
from sandbox.population import SAMPLE_PRESCRIPTION_ID

APCV = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
BOXES = ("3400930000120", "3400930000120", "3400930000649")


@pytest.fixture
def two_pharmacies(tmp_path: Path) -> Iterator[tuple[CounterRig, CounterRig]]:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(
            counter_rig(db_path=tmp_path / "a.db", key_path=None, sandbox_url=None, clock=ScenarioClock())
        )
        second = stack.enter_context(
            counter_rig(db_path=tmp_path / "b.db", key_path=None, sandbox_url=first.base_url, clock=ScenarioClock())
        )
        for rig in (first, second):
            rig.add_operator("alice", Role.PHARMACIEN, "2468")
        yield first, second


def _scan(rig: CounterRig, raw: bytes) -> Outcome:
    code = CodeReader().read(raw, expect=EXPECTED_KINDS.get(rig.counter.step))
    return rig.counter.handle(Scanned(code))


def _to_control(rig: CounterRig, serial: str) -> None:
    counter = rig.counter
    assert counter.handle(Intent("login", {"operator": "alice", "pin": "2468"})).accepted
    assert _scan(rig, APCV).accepted
    assert _scan(rig, SAMPLE_PRESCRIPTION_ID.encode("ascii")).step is Step.PRESCRIPTION
    assert counter.handle(Intent("confirm_prescription", {})).step is Step.DISPENSATION
    for i, cip13 in enumerate(BOXES):
        assert _scan(rig, f"010{cip13}17271231\x1d10LOT\x1d21{serial}{i}".encode("ascii")).accepted
    assert counter.handle(Intent("continue", {})).step is Step.CONTROL


def test_the_second_pharmacy_is_told_the_prescription_was_dispensed_elsewhere(
    two_pharmacies: tuple[CounterRig, CounterRig],
) -> None:
    first, second = two_pharmacies
    _to_control(first, "A")
    assert first.counter.handle(Intent("validate", {"pin": "2468"})).step is Step.PAYMENT

    _to_control(second, "B")
    outcome = second.counter.handle(Intent("validate", {"pin": "2468"}))

    assert not outcome.accepted and outcome.message == msg.PRESCRIPTION_DISPENSED_ELSEWHERE
    assert "idempotence" not in (outcome.message or "").lower()
    assert second.counter.step is Step.CONTROL  # nothing billed: the pharmacist cancels or sorts it out
    conn = second.db.conn
    assert conn.execute("SELECT count(*) FROM claims").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert numbering.current_number(second.db, "claim") == 0  # no number spent on the refused bill
