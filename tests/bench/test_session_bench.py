"""The session benchmark measures what it claims: behaviour only, never speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import session
from bench.session import LOOKUPS, STEPS, Report, parse_args, print_report, run_benchmark

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO / "appliance" / "store" / "records.py"
"""Look-ups the shipped schema serves with a full scan (reported by the benchmark, not fixed there)."""


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, str]:
    args = parse_args(["--quick", "--dir", str(tmp_path_factory.mktemp("bench"))])
    report = run_benchmark(args)
    lines: list[str] = []
    print_report(report, args, out=lines.append)
    return report, "\n".join(lines)


def test_table_has_every_row(quick: tuple[Report, str]) -> None:
    _, text = quick
    for step in STEPS:
        assert f"step: {step}" in text
    for row in (
        "in validate: PIN check (Argon2id)",
        "in validate: claim commit",
        "teleservice HTTP calls",
        "whole session ",
        "whole session without PIN check",
        "record_claim (WAL, FULL)",
        "raw insert (WAL, FULL)",
        "raw insert (WAL, NORMAL)",
        "× raw fsync'd inserts",
    ):
        assert row in text, row
    for lookup in LOOKUPS:
        assert re.search(rf"^{re.escape(lookup.name)}\s", text, re.MULTILINE), lookup.name
    assert "of 1000 ms" in text
    assert "of 5 ms" in text


def test_every_session_reached_a_claim_with_nothing_to_pay(quick: tuple[Report, str]) -> None:
    report, _ = quick
    runs = report.sessions.runs
    assert len(runs) == 5
    assert [r.refused for r in runs] == [[] for _ in runs]
    assert [r.claim for r in runs] == [1, 2, 3, 4, 5]  # gapless numbers, one claim per session
    assert all(r.to_pay_cents == 0 for r in runs)
    for r in runs:
        assert set(r.step_ms) == set(STEPS)
        assert r.pin_ms > 0 and r.claim_commit_ms > 0 and r.http_ms > 0
        assert r.pin_ms < r.step_ms["validate"] and r.total_ms > r.step_ms["validate"]
    # the sessions went through the sandbox over HTTP: apCV, ADRi, IDB, ePrescription, execution step 1
    assert report.sessions.http_calls == {
        "apcv": 1,
        "adri": 1,
        "idb": 1,
        "eprescription": 1,
        "execution": 1,
    }


def test_durable_and_raw_commits_both_measured(quick: tuple[Report, str]) -> None:
    report, _ = quick
    names = [s.name for s in report.commits]
    assert names == ["record_claim (WAL, FULL)", "raw insert (WAL, FULL)", "raw insert (WAL, NORMAL)"]
    for series in report.commits:
        assert len(series.times_ms) == 30
        assert series.per_second > 0
    claim, raw_full, raw_normal = report.commits
    assert raw_full.statements == raw_normal.statements == 3  # BEGIN, INSERT, COMMIT
    assert claim.statements > 10  # a claim is one transaction of many statements


def test_lookup_database_is_generated_as_asked(quick: tuple[Report, str]) -> None:
    db = quick[0].lookup_db
    assert db.sessions == 20_000
    for table in ("claims", "dispensations"):
        assert db.rows[table] == 20_000
    assert db.rows["dispensation_lines"] > db.rows["dispensations"]
    assert db.rows["patients"] == db.patients
    assert db.rows["batches"] >= 1


def test_lookup_sql_is_the_counters(quick: tuple[Report, str]) -> None:
    """The statements timed are the ones the records module runs (so the bench cannot drift away)."""
    source = " ".join(RECORDS.read_text(encoding="utf-8").split())
    for lookup in LOOKUPS:
        if lookup.caller.startswith("(no caller"):
            continue
        assert lookup.source in source, lookup.name


def test_indexed_lookups_use_an_index_and_every_lookup_found_rows(quick: tuple[Report, str]) -> None:
    report, _ = quick
    for result in report.lookups:
        assert len(result.times_ms) == 50
        assert result.found > 0 or result.lookup.name == "serial already dispensed", result.lookup.name
        assert result.indexed, (result.lookup.name, result.plan)
        assert not any(step.startswith("SCAN") for step in result.plan)


def test_every_lookup_uses_an_index(quick: tuple[Report, str]) -> None:
    report, _ = quick
    assert [r.lookup.name for r in report.lookups if not r.indexed] == []


def test_uses_index_reads_query_plans() -> None:
    assert session.uses_index(["SEARCH patients USING INDEX sqlite_autoindex_patients_1 (card_index=?)"])
    assert session.uses_index(["SEARCH claims USING INTEGER PRIMARY KEY (rowid=?)"])
    assert not session.uses_index(["SCAN dispensations"])
    assert not session.uses_index([])


def test_script_runs_from_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "session.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--lookup-db-sessions" in done.stdout
