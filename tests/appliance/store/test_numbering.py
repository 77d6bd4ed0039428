"""Claim numbers: gapless and never repeated, even when claims are rolled back or written concurrently."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest
import sqlite_utils

from appliance.store import StoreError, open_database, transaction
from appliance.store.numbering import current_number, next_number, start_series


def test_numbers_across_rollbacks_have_no_gap_and_no_repeat(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE test_claims (number INTEGER NOT NULL UNIQUE)")
    rng = random.Random(7)
    for _ in range(300):
        try:
            with transaction(db) as conn:
                number = next_number(conn, "claim")
                conn.execute("INSERT INTO test_claims(number) VALUES (?)", (number,))
                if rng.random() < 0.4:
                    raise RuntimeError("the claim was abandoned")
        except RuntimeError:
            pass
    numbers = [row[0] for row in db.execute("SELECT number FROM test_claims ORDER BY number")]
    assert numbers == list(range(1, len(numbers) + 1))
    assert current_number(db, "claim") == len(numbers)


def test_series_are_independent(db: sqlite_utils.Database) -> None:
    with transaction(db) as conn:
        assert [next_number(conn, "claim") for _ in range(3)] == [1, 2, 3]
        assert next_number(conn, "batch") == 1
    assert current_number(db, "unknown") == 0


def test_two_connections_claiming_at_once_never_get_the_same_number(db_path: Path) -> None:
    open_database(db_path).close()
    claimed: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        db = open_database(db_path)
        try:
            for _ in range(50):
                with transaction(db) as conn:
                    number = next_number(conn, "claim")
                with lock:
                    claimed.append(number)
        finally:
            db.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == list(range(1, 201))


def test_a_number_is_claimed_only_inside_a_transaction(db: sqlite_utils.Database) -> None:
    with pytest.raises(StoreError, match="inside the caller's transaction"):
        next_number(db.conn, "claim")


def test_a_series_can_continue_from_the_previous_software_but_never_go_back(
    db: sqlite_utils.Database,
) -> None:
    with transaction(db) as conn:
        start_series(conn, "claim", 41_230)
        assert next_number(conn, "claim") == 41_231
    with pytest.raises(StoreError, match="repeat"), transaction(db) as conn:
        start_series(conn, "claim", 100)
