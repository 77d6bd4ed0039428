"""Three generated months of activity, end to end: files -> database -> matches -> report, against the truth."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from appliance.payments.bank import parse_statement
from appliance.payments.cli import main
from appliance.payments.matcher import Reconciliation
from appliance.payments.model import Part, Status
from appliance.payments.noemie import load_remittances
from appliance.payments.report import report_data
from appliance.payments.store import open_payments_database, record_manual_match, run
from appliance.store import StoreError, audit
from appliance.store.sealing import FieldCipher
from sandbox import payments as gen

OUTCOME_STATUSES = {
    "paid": {Status.MATCHED},
    "partial": {Status.PARTIAL},
    "rejected": {Status.REJECTED},
    "unpaid": {Status.PENDING, Status.UNPAID_OVERDUE},
    "not-credited": {Status.PAID_NOT_CREDITED},
    "awaiting": {Status.AWAITING_CREDIT},
}


@pytest.fixture(scope="module")
def months(tmp_path_factory: pytest.TempPathFactory) -> tuple[gen.Activity, Path]:
    activity = gen.generate(months=3, claims_per_day=12, seed=7)
    directory = tmp_path_factory.mktemp("months")
    gen.write_files(activity, directory)
    FieldCipher.create_key(directory / "counter.key")
    db = open_payments_database(directory / "counter.db", key_file=directory / "counter.key")
    gen.seed_database(db, activity)
    db.close()
    return activity, directory


def _run(directory: Path, bank: str, db_path: Path) -> Reconciliation:
    db = open_payments_database(db_path, key_file=directory / "counter.key")
    try:
        result, _ = run(db, load_remittances(directory / "remittances"), [parse_statement(directory / bank)])
    finally:
        db.close()
    return result


def _credit_refs(result: Reconciliation) -> dict[str, str]:
    return {c.credit.key: c.credit.bank_reference for c in result.credits}


@pytest.mark.parametrize("bank", ["bank.xml", "bank.cfonb"])
def test_every_transfer_found_no_false_match_and_every_claim_as_generated(
    months: tuple[gen.Activity, Path], tmp_path: Path, bank: str
) -> None:
    activity, directory = months
    db_path = tmp_path / "counter.db"
    (tmp_path / "counter.db").write_bytes((directory / "counter.db").read_bytes())
    result = _run(directory, bank, db_path)
    refs = _credit_refs(result)
    matched = {rid: refs[key] for rid, (key, _) in result.matches.items()}
    wrong = {rid: ref for rid, ref in matched.items() if activity.truth.get(rid) != ref}
    assert wrong == {}
    creditable = {rid for rid, ref in activity.truth.items() if ref is not None}
    assert len(creditable & matched.keys()) / len(creditable) >= 0.97
    assert {r.rule for r in result.remittances if r.credit_key} >= {"reference", "amount-same-day", "amount-run"}
    by_part = {(p.claim_number, p.part): p for p in result.parts}
    disagreements = [
        (key, outcome, by_part[key].status)
        for key, outcome in activity.outcome.items()
        if by_part[key].status not in OUTCOME_STATUSES[outcome]
    ]
    assert len(disagreements) <= len(activity.outcome) * 0.01, disagreements[:10]
    unknown = {c.credit.bank_reference for c in result.credits if c.status is Status.CREDIT_UNKNOWN}
    assert unknown == activity.unexplained
    late = [p for p in result.parts if p.payer == gen.LATE_PAYER and p.status is Status.UNPAID_OVERDUE]
    assert late, "the late payer leaves overdue claims"
    rejected = [p for p in result.parts if p.status is Status.REJECTED]
    assert rejected and all(p.reason and p.action for p in rejected)
    partial = [p for p in result.parts if p.status is Status.PARTIAL]
    assert partial and all("Ne pas refacturer" in p.action for p in partial)
    withheld = [r for r in result.remittances if r.remittance.adjustments]
    assert len(withheld) == sum(1 for r in activity.returns if r.withholdings) > 0
    assert all(r.remittance.total_cents < r.remittance.paid_cents for r in withheld)
    credited = [r for r in withheld if activity.truth.get(r.remittance.remittance_id)]
    assert credited and all(r.status is Status.MATCHED for r in credited)  # the bank got the net amount


def test_rerunning_changes_nothing_and_journals_nothing(months: tuple[gen.Activity, Path], tmp_path: Path) -> None:
    _, directory = months
    db_path = tmp_path / "counter.db"
    db_path.write_bytes((directory / "counter.db").read_bytes())
    first = _run(directory, "bank.xml", db_path)

    def snapshot() -> dict[str, list[tuple[object, ...]]]:
        conn = sqlite3.connect(db_path)
        tables = [
            "payment_remittances",
            "payment_remittance_lines",
            "payment_adjustments",
            "bank_credits",
            "payment_matches",
            "payment_part_status",
            "audit_journal",
        ]
        try:
            return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}  # noqa: S608
        finally:
            conn.close()

    before = snapshot()
    again = _run(directory, "bank.xml", db_path)
    assert snapshot() == before
    assert again.matches == first.matches
    same_statement_other_format = _run(directory, "bank.cfonb", db_path)
    assert snapshot()["bank_credits"] == before["bank_credits"]
    assert same_statement_other_format.matches == first.matches


def test_manual_matches_are_audited_and_win(months: tuple[gen.Activity, Path], tmp_path: Path) -> None:
    _, directory = months
    db_path = tmp_path / "counter.db"
    db_path.write_bytes((directory / "counter.db").read_bytes())
    first = _run(directory, "bank.xml", db_path)
    stray = next(r for r in first.remittances if r.status is Status.PAID_NOT_CREDITED)
    unknown = next(c for c in first.credits if c.status is Status.CREDIT_UNKNOWN)
    db: sqlite_utils.Database = open_payments_database(db_path, key_file=directory / "counter.key")
    try:
        seq = record_manual_match(
            db,
            remittance_id=stray.remittance.remittance_id,
            credit_key=unknown.credit.key,
            operator_id=1,
            note="confirmé par la CPAM",
        )
        with pytest.raises(StoreError, match="unknown bank credit"):
            record_manual_match(db, remittance_id=stray.remittance.remittance_id, credit_key="nope", operator_id=1)
        entry = next(e for e in audit.entries(db, limit=10_000) if e.seq == seq)
        assert entry.action == "payments.manual-match" and entry.operator_id == 1
        assert entry.details == {"credit": unknown.credit.key, "note": "confirmé par la CPAM"}
        assert audit.verify(db).ok
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.conn.execute("DELETE FROM payment_manual_matches")
    finally:
        db.close()
    second = _run(directory, "bank.xml", db_path)
    assert second.matches[stray.remittance.remittance_id] == (unknown.credit.key, "manual")
    db = open_payments_database(db_path, key_file=directory / "counter.key")
    try:
        record_manual_match(db, remittance_id=stray.remittance.remittance_id, credit_key=None, operator_id=1)
    finally:
        db.close()
    third = _run(directory, "bank.xml", db_path)
    assert stray.remittance.remittance_id not in third.matches


def test_report_data_is_json_ready_and_adds_up(months: tuple[gen.Activity, Path], tmp_path: Path) -> None:
    _, directory = months
    db_path = tmp_path / "counter.db"
    db_path.write_bytes((directory / "counter.db").read_bytes())
    data = report_data(_run(directory, "bank.xml", db_path))
    assert json.loads(json.dumps(data)) == data
    s = data["summary"]
    assert sum(s["by_status"].values()) == s["parts"] == len(data["parts"])
    assert sum(w["matched"] for w in data["weeks"]) == s["credited_cents"]
    assert sum(w["outstanding"] for w in data["weeks"]) == s["outstanding_cents"]
    assert all(isinstance(p["expected_cents"], int) for p in data["parts"])
    assert {p["part"] for p in data["parts"]} == {Part.AMO.value, Part.AMC.value}
    withholdings = [a for r in data["remittances"] for a in r["adjustments"] if a["kind"] == "withholding"]
    assert withholdings and s["withheld_cents"] == -sum(a["amount_cents"] for a in withholdings) > 0
    assert all(r["total_cents"] == r["paid_cents"] + r["adjusted_cents"] for r in data["remittances"])
    assert data["warnings"] == [] and s["warnings"] == 0


def test_the_command_prints_a_summary_and_writes_csv_and_html(
    months: tuple[gen.Activity, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, directory = months
    db_path = tmp_path / "counter.db"
    db_path.write_bytes((directory / "counter.db").read_bytes())
    out = tmp_path / "out"
    args = ["reconcile", "--remittances", str(directory / "remittances"), "--bank", str(directory / "bank.cfonb")]
    assert main([*args, "--db", str(db_path), "--key", str(directory / "counter.key"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "payé et crédité" in printed and "virements inexpliqués : 2" in printed
    with (out / "reconciliation.csv").open(encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert {row["status"] for row in table} >= {"matched", "rejected", "partial", "credited-unknown"}
    page = (out / "reconciliation.html").read_text(encoding="utf-8")
    assert "<svg" in page and "<script" not in page and "reste dû" in page
    assert main([*args, "--out", str(tmp_path / "no-db")]) == 0  # without a database: what the remittances say
    assert "parts de factures suivies" in capsys.readouterr().out


def test_the_command_names_the_bad_file_and_line(
    months: tuple[gen.Activity, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, directory = months
    remittances = tmp_path / "remittances"
    remittances.mkdir()
    good = sorted((directory / "remittances").iterdir())[0]
    raw = good.read_bytes()
    assert raw[128:132] == b"0040"  # the first data record starts with the 040 payee
    (remittances / good.name).write_bytes(raw[:129] + b"041" + raw[132:])
    code = main(
        [
            "reconcile",
            "--remittances",
            str(remittances),
            "--bank",
            str(directory / "bank.xml"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 1
    assert f"{remittances / good.name}, line 2: unknown entity type '041' at column 2" in capsys.readouterr().err
    config = tmp_path / "bad.toml"
    config.write_text("[payments]\ncredit_days_afer = 3\n")
    code = main(
        [
            "reconcile",
            "--remittances",
            str(directory / "remittances"),
            "--bank",
            str(directory / "bank.xml"),
            "--config",
            str(config),
        ]
    )
    assert code == 2 and "credit_days_afer" in capsys.readouterr().err


def test_a_claim_rejected_by_its_acknowledgement_is_followed_with_its_reason(
    months: tuple[gen.Activity, Path], tmp_path: Path
) -> None:
    _, directory = months
    db_path = tmp_path / "counter.db"
    db_path.write_bytes((directory / "counter.db").read_bytes())
    conn = sqlite3.connect(db_path, isolation_level=None)
    conn.execute("UPDATE claims SET status = 'rejected' WHERE number = 1")
    conn.execute(
        "INSERT INTO rejections(claim_id, reason, action, at) SELECT id, 'NIR inconnu', 'Corriger puis refacturer', 0"
        " FROM claims WHERE number = 1"
    )
    conn.close()
    result = _run(directory, "bank.xml", db_path)
    first = [p for p in result.parts if p.claim_number == 1]
    assert first and all(p.status is Status.REJECTED and p.reason == "NIR inconnu" for p in first)
    assert all(p.action == "Corriger puis refacturer" for p in first)
