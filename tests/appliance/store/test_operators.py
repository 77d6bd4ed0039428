"""Operators: personal PINs under a memory-hard KDF, a lock-out that doubles with each failure after the
5th, every attempt audited."""

from __future__ import annotations

import pytest
import sqlite_utils

from appliance.domain import Role
from appliance.store import StoreError, audit, transaction
from appliance.store import operators as ops
from appliance.store.operators import (
    LOCKOUT_BASE_SECONDS,
    LOCKOUT_MAX_SECONDS,
    MAX_FAILED_ATTEMPTS,
    InvalidPin,
    Operator,
    OperatorLocked,
    PinRejected,
    UnknownOperator,
    add_operator,
    authenticate,
    clear_lock,
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


def fail(db: sqlite_utils.Database, operator_id: int, now: float) -> float | None:
    """One wrong PIN at ``now``: the end of the lock it caused, or None if it only counted down."""
    try:
        authenticate(db, operator_id, "0000", now=now)
    except OperatorLocked as locked:
        return locked.until
    except PinRejected:
        return None
    raise AssertionError("a wrong PIN was accepted")


def lock_lengths(db: sqlite_utils.Database, operator_id: int, failures: int, start: float = T0) -> list[float]:
    """Drive ``failures`` wrong PINs, each at the moment the previous lock ends (no time passes between
    the free ones); the length of the lock each caused (0: none)."""
    now, lengths = start, []
    for _ in range(failures):
        until = fail(db, operator_id, now)
        lengths.append(0.0 if until is None else until - now)
        now = now if until is None else until
    return lengths


def test_the_first_failures_are_free_and_the_fifth_locks_for_a_minute(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    for left in range(MAX_FAILED_ATTEMPTS - 1, 0, -1):
        with pytest.raises(PinRejected) as rejected:
            authenticate(db, marie, "0000", now=T0)
        assert rejected.value.attempts_left == left
    with pytest.raises(OperatorLocked) as locked:
        authenticate(db, marie, "0000", now=T0 + 1)
    assert locked.value.until == T0 + 1 + LOCKOUT_BASE_SECONDS == T0 + 1 + 60
    # while locked, even the right PIN is refused (and not even checked)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "4821", now=T0 + LOCKOUT_BASE_SECONDS)
    # after the lock, the right PIN works
    assert authenticate(db, marie, "4821", now=T0 + 1 + LOCKOUT_BASE_SECONDS).id == marie
    assert actions(db) == [
        "operator.added",
        *["operator.auth.failed"] * MAX_FAILED_ATTEMPTS,
        "operator.locked",
        "operator.auth.refused_locked",
        "operator.auth.ok",
    ]
    locked_row = audit.entries(db)[-3]
    assert locked_row.details == {"locked_until": T0 + 1 + 60, "seconds": 60}
    assert audit.verify(db).ok


def test_each_failure_after_a_lock_ends_locks_again_for_twice_as_long(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    minute = 60.0
    assert lock_lengths(db, marie, 12) == [
        0, 0, 0, 0, minute, 2 * minute, 4 * minute, 8 * minute, 16 * minute, 32 * minute, 64 * minute, 128 * minute,
    ]  # fmt: skip
    assert [ops.lockout_seconds(n) for n in range(1, 8)] == [0, 0, 0, 0, 60, 120, 240]
    failed = [
        e.details["consecutive_failures"] for e in audit.entries(db, limit=1000) if e.action == "operator.auth.failed"
    ]
    assert failed == list(range(1, 13))
    locks = [e.details["seconds"] for e in audit.entries(db, limit=1000) if e.action == "operator.locked"]
    assert locks == [60 * 2**k for k in range(8)]
    assert audit.verify(db).ok


def test_the_lock_never_exceeds_a_day(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    lengths = lock_lengths(db, marie, 20)
    assert lengths[14] == 60 * 2**10 < LOCKOUT_MAX_SECONDS  # the 15th: 17 h 04 min
    assert lengths[15:] == [LOCKOUT_MAX_SECONDS] * 5 == [24 * 3600] * 5  # from the 16th on
    assert ops.lockout_seconds(10**9) == LOCKOUT_MAX_SECONDS


def test_a_lock_ending_does_not_give_a_fresh_set_of_attempts(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    for _ in range(MAX_FAILED_ATTEMPTS - 1):
        with pytest.raises(PinRejected):
            authenticate(db, marie, "0000", now=T0)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "0000", now=T0)
    # long after the lock ended, one wrong PIN is enough to lock again (for twice as long)
    later = T0 + 7 * 24 * 3600
    with pytest.raises(OperatorLocked) as locked:
        authenticate(db, marie, "0000", now=later)
    assert locked.value.until == later + 2 * LOCKOUT_BASE_SECONDS
    count = db.execute("SELECT failed_attempts FROM operators WHERE id = ?", [marie]).fetchone()[0]
    assert count == MAX_FAILED_ATTEMPTS + 1


def test_a_success_after_a_lock_resets_the_sequence(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    lengths = lock_lengths(db, marie, MAX_FAILED_ATTEMPTS + 2)
    now = T0 + sum(lengths)
    assert authenticate(db, marie, "4821", now=now).id == marie
    # the free attempts are back, and the next lock is the base one again
    assert lock_lengths(db, marie, MAX_FAILED_ATTEMPTS, start=now) == [0, 0, 0, 0, LOCKOUT_BASE_SECONDS]


def test_clear_lock_lifts_the_lock_resets_the_sequence_and_is_audited(db: sqlite_utils.Database) -> None:
    anne = add_operator(db, "Anne", Role.TITULAIRE, "2222")
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    assert clear_lock(db, marie, by=anne, reason="nothing to clear") is False  # nothing to clear, no row
    assert "operator.unlocked" not in actions(db)
    lengths = lock_lengths(db, marie, MAX_FAILED_ATTEMPTS + 3)
    now = T0 + sum(lengths[:-1]) + 1  # inside the last lock (8 min)
    with pytest.raises(OperatorLocked):
        authenticate(db, marie, "4821", now=now)

    assert clear_lock(db, marie, by=anne, reason="unlocked by a colleague", now=now) is True
    unlocked = audit.entries(db)[-1]
    assert unlocked.action == "operator.unlocked"
    assert unlocked.operator_id == anne and unlocked.subject == f"operator:{marie}"
    assert unlocked.details == {
        "reason": "unlocked by a colleague",
        "consecutive_failures": MAX_FAILED_ATTEMPTS + 3,
        "locked_until": T0 + sum(lengths),
    }
    assert unlocked.at == now
    # at once, the right PIN works; and wrong ones start over with the free attempts
    assert authenticate(db, marie, "4821", now=now).id == marie
    assert clear_lock(db, marie, by=None, reason="CPS login") is False
    assert lock_lengths(db, marie, MAX_FAILED_ATTEMPTS, start=now) == [0, 0, 0, 0, LOCKOUT_BASE_SECONDS]
    assert clear_lock(db, marie, by=None, reason="CPS login") is True
    assert authenticate(db, marie, "4821", now=now + 1).id == marie
    assert audit.verify(db).ok


def test_clear_lock_clears_a_count_below_the_lock_and_refuses_unknowns(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    with pytest.raises(PinRejected):
        authenticate(db, marie, "0000", now=T0)
    assert clear_lock(db, marie, by=None, reason="CPS login") is True
    assert audit.entries(db)[-1].details["locked_until"] is None
    with pytest.raises(UnknownOperator):
        clear_lock(db, 99, by=None, reason="CPS login")
    with pytest.raises(ValueError, match="reason"):
        clear_lock(db, marie, by=None, reason="  ")


def test_clear_lock_joins_the_callers_transaction(db: sqlite_utils.Database) -> None:
    marie = add_operator(db, "Marie", Role.PHARMACIEN, "4821")
    lock_lengths(db, marie, MAX_FAILED_ATTEMPTS)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction(db):
        assert clear_lock(db, marie, by=None, reason="CPS login")
        raise Abort
    with pytest.raises(OperatorLocked):  # rolled back with the caller: still locked
        authenticate(db, marie, "4821", now=T0 + 1)


def test_a_week_of_walking_through_the_pins_tries_only_a_few_dozen(db: sqlite_utils.Database) -> None:
    """Someone at the patient screen tries a new wrong PIN the very second each lock ends, for 7 days."""
    marie = add_operator(db, "Marie", Role.TITULAIRE, "4821")
    now, end, tried = T0, T0 + 7 * 24 * 3600, 0
    while now < end:
        until = fail(db, marie, now)
        tried += 1
        if until is not None:
            # the locked screen is tried too: refused without a PIN check, and it does not count
            with pytest.raises(OperatorLocked):
                authenticate(db, marie, "0000", now=until - 1)
            now = until
    assert tried == 21  # 15 on the first day, then one a day (the old rule allowed 480 a day)
    assert tried < 50 < 10_000
    assert actions(db).count("operator.auth.failed") == tried


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
    assert encoded.startswith(("argon2id$m=19456,t=2,p=1$", "scrypt$ln=15,r=8,p=1$"))
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
