"""The RPPS of an operator's CPS (migration 9): the CPS login maps one card to one active person."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.domain import Role
from appliance.store import operators
from appliance.store.database import StoreError
from appliance.store.migrations import MIGRATIONS, OPERATOR_RPPS


def test_the_migration_is_appended_as_version_9() -> None:
    assert MIGRATIONS[8] is OPERATOR_RPPS and OPERATOR_RPPS.version == 9


def test_an_rpps_maps_to_its_active_operator_only(db: sqlite_utils.Database) -> None:
    alice = operators.add_operator(db, "alice", Role.PHARMACIEN, "2468")
    operators.set_rpps(db, alice, "10000000007", by=None)
    found = operators.operator_by_rpps(db, "10000000007")
    assert found == operators.Operator(alice, "alice", Role.PHARMACIEN)
    assert operators.operator_by_rpps(db, "10000000999") is None
    db.conn.execute("UPDATE operators SET active = 0 WHERE id = ?", (alice,))
    assert operators.operator_by_rpps(db, "10000000007") is None
    actions = [r[0] for r in db.conn.execute("SELECT action FROM audit_journal ORDER BY seq")]
    assert "operator.rpps_set" in actions


def test_one_card_one_person_and_well_formed(db: sqlite_utils.Database) -> None:
    alice = operators.add_operator(db, "alice", Role.PHARMACIEN, "2468")
    bruno = operators.add_operator(db, "bruno", Role.PREPARATEUR, "1357")
    operators.set_rpps(db, alice, "10000000007", by=None)
    with pytest.raises(StoreError, match="already belongs"):
        operators.set_rpps(db, bruno, "10000000007", by=alice)
    with pytest.raises(ValueError, match="11 digits"):
        operators.set_rpps(db, bruno, "1234", by=alice)
    with pytest.raises(operators.UnknownOperator):
        operators.set_rpps(db, 999, "10000000015", by=alice)
    operators.set_rpps(db, bruno, None, by=alice)  # several operators without a CPS is fine
    operators.set_rpps(db, alice, None, by=alice)
    assert operators.operator_by_rpps(db, "10000000007") is None
