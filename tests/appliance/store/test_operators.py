"""Operators: personal PINs under a memory-hard KDF, lock-out after 5 failures, every attempt audited."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.domain import Role
from appliance.store import StoreError, audit, transaction
from appliance.store import operators as ops
from appliance.store.operators import (
    LOCKOUT_SECONDS,
    MAX_FAILED_ATTEMPTS,
    InvalidPin,
    Operator,
    OperatorLocked,
    PinRejected,
    UnknownOperator,
    add_operator,
    authenticate,
    list_operators,
)

T0 = 1_750_000_000.0


def actions(db: sqlite_utils.Database) -> list[str]:
    return [entry.action for entry in audit.entries(db, limit=1000)]


def pin_hash(db: sqlite_utils.Database, operator_id: int) -> str:
    return str(db.execute("SELECT pin_hash FROM operators WHERE id = ?", [operator_id]).fetchone()[0])


def test_the_right_pin_returns_the_operator(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    assert authenticate(db, marie, "4821", now=T0) == Operator(marie, "Marie", Role.PHARMACIEN)
    assert actions(db) == ["operator.added", "operator.auth.ok"]


def test_a_wrong_pin_counts_down_the_attempts_left(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    for left in range(MAX_FAILED_ATTEMPTS - 1, 0, -1):
        with pytest.raises(PinRejected) as rejected:
            authenticate(db, marie, "0000", now=T0)
        assert rejected.value.attempts_left == left
    assert actions(db).count("operator.auth.failed") == MAX_FAILED_ATTEMPTS - 1


def test_a_success_resets_the_count(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(PinRejected):
            authenticate(db, marie, "0000", now=T0)
    authenticate(db, marie, "4821", now=T0)
    with pytest.raises(PinRejected) as rejected:
        authenticate(db, marie, "0000", now=T0)
    assert rejected.value.attempts_left == MAX_FAILED_ATTEMPTS - 1


def test_five_failures_lock_for_fifteen_minutes_then_unlock(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(PinRejected):
            authenticate(db, marie, "0000", now=T0)
    with pytest.raises(OperatorLocked) as locked:
        authenticate(db, marie, "0000", now=T0 + 1)
    assert locked.value.until == T0 + 1 + LOCKOUT_SECONDS == T0 + 1 + 15 * 60
    # while locked, even the right PIN is refused (and not even checked)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "4821", now=T0 + LOCKOUT_SECONDS)
    # after the lock, the right PIN works and the attempts are fresh again
    assert authenticate(db, marie, "4821", now=T0 + 1 + LOCKOUT_SECONDS).id == marie
    with pytest.raises(PinRejected) as rejected:
        authenticate(db, marie, "0000", now=T0 + 2 + LOCKOUT_SECONDS)
    assert rejected.value.attempts_left == MAX_FAILED_ATTEMPTS - 1
    assert actions(db) == [
        "operator.added",
        *["operator.auth.failed"] * MAX_FAILED_ATTEMPTS,
        "operator.locked",
        "operator.auth.refused_locked",
        "operator.auth.ok",
        "operator.auth.failed",
    ]
    assert audit.verify(db).ok


def test_an_expired_lock_gives_a_fresh_set_of_attempts_even_after_a_failure(
    db: sqlite_utils.Database,
) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(PinRejected):
            authenticate(db, marie, "0000", now=T0)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "0000", now=T0)
    with pytest.raises(PinRejected) as rejected:
        authenticate(db, marie, "0000", now=T0 + LOCKOUT_SECONDS)
    assert rejected.value.attempts_left == MAX_FAILED_ATTEMPTS - 1


def test_the_audit_journal_names_the_operator_but_never_the_pin(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    with pytest.raises(PinRejected):
        authenticate(db, marie, "9173", now=T0)
    failed = audit.entries(db)[-1]
    assert failed.operator_id == marie and failed.subject == f"operator:{marie}"
    dump = "\n".join(str(entry) for entry in audit.entries(db))
    assert "4821" not in dump and "9173" not in dump


def test_authentication_refuses_to_run_inside_a_transaction(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    with pytest.raises(StoreError, match="must not run inside a transaction"), transaction(db):
        authenticate(db, marie, "4821", now=T0)


def test_an_unknown_operator_is_refused_and_audited(db: sqlite_utils.Database) -> None:
    with pytest.raises(UnknownOperator):
        authenticate(db, 99, "4821", now=T0)
    assert audit.entries(db)[-1].action == "operator.auth.unknown"


def test_pin_hashes_never_contain_the_pin_and_differ_for_equal_pins(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    paul = add_operator(db, "Paul", Role.PREPARATEUR, "4821")
    assert "4821" not in pin_hash(db, marie)
    assert pin_hash(db, marie) != pin_hash(db, paul)
    algorithm = pin_hash(db, marie).split("$")[0]
    assert algorithm == ("argon2id" if ops.argon2id_available() else "scrypt")


def test_the_production_parameters_are_memory_hard_and_stored_with_the_hash() -> None:
    encoded = ops.hash_pin("4821", ops.Argon2idParams() if ops.argon2id_available() else ops.ScryptParams())
    assert encoded.startswith(("argon2id$m=65536,t=3,p=4$", "scrypt$ln=15,r=8,p=1$"))
    assert ops.verify_pin("4821", encoded)
    assert not ops.verify_pin("4822", encoded)


def test_a_login_with_older_parameters_rehashes_the_pin(
    db: sqlite_utils.Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    old = pin_hash(db, marie)
    stronger = ops.ScryptParams(log2_n=5, r=8, p=1)
    monkeypatch.setattr(ops, "PIN_KDF", stronger)
    authenticate(db, marie, "4821", now=T0)
    assert pin_hash(db, marie) != old
    assert pin_hash(db, marie).startswith(stronger.encode())
    assert authenticate(db, marie, "4821", now=T0).id == marie


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "", "١٢٣٤"])
def test_a_pin_is_4_to_8_ascii_digits(db: sqlite_utils.Database, pin: str) -> None:
    with pytest.raises(InvalidPin):
        add_operator(db, "Marie", Role.PHARMACIEN, pin)


def test_names_are_unique_so_no_account_is_shared(db: sqlite_utils.Database) -> None:
    add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    with pytest.raises(StoreError, match="already exists"):
        add_operator(db, "marie ", Role.PREPARATEUR, "1111")


def test_operators_are_listed_by_name_with_their_role(db: sqlite_utils.Database) -> None:
    paul = add_operator(db, "Paul", Role.PREPARATEUR, "1111")
    anne = add_operator(db, "Anne", Role.TITULAIRE, "2222", by=None)
    assert list_operators(db) == [
        Operator(anne, "Anne", Role.TITULAIRE),
        Operator(paul, "Paul", Role.PREPARATEUR),
    ]


def test_a_new_pin_clears_a_lock(db: sqlite_utils.Database) -> None:
    anne = add_operator(db, "Anne", Role.TITULAIRE, "2222")
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(PinRejected):
            authenticate(db, marie, "0000", now=T0)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "0000", now=T0)
    ops.set_pin(db, marie, "5555", by=anne)
    assert authenticate(db, marie, "5555", now=T0 + 1).id == marie
    assert "operator.pin_changed" in actions(db)
