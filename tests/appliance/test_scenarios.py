"""Whole counter sessions, end to end over HTTP against the real sandbox server.

Each script in docs/scenarios/ is a specification: its ``expect`` lines state what the pharmacist
and the patient see at each step. They all must hold.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.scenario import run_scenario
from sandbox.population import PEOPLE

SCENARIOS = sorted((Path(__file__).parents[2] / "docs" / "scenarios").glob("*.jsonl"))
COMPTOIR = [sys.executable, "-m", "appliance.cli"]


def play(script: Path, tmp_path: Path, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    printed: list[str] = []
    status = run_scenario(script, db_path=kwargs.get("db"), key_path=None, sandbox_url=None, out=printed.append)
    return status, json.loads(printed[0]) if printed else {}


def test_there_is_a_scenario_for_each_case_the_issue_names() -> None:
    names = {path.stem for path in SCENARIOS}
    assert {
        "apcv-full",
        "family-card",
        "insi-two",
        "insi-none",
        "offline",
        "boxes-refused",
        "prescription-twice",
        "batch-rejected",
        "batch-resubmitted",
    } <= names


@pytest.mark.parametrize("script", SCENARIOS, ids=[path.stem for path in SCENARIOS])
def test_every_expectation_of_the_scenario_holds(script: Path, tmp_path: Path) -> None:
    status, transcript = play(script, tmp_path)
    assert transcript["failures"] == []
    assert status == 0
    assert all(entry.get("holds", True) for entry in transcript["transcript"])


def test_claims_sent_again_keep_their_numbers_and_no_number_is_skipped(tmp_path: Path) -> None:
    """batch-resubmitted: batch 1 refused, its two claims sent again in batch 2 with a third one."""
    db = tmp_path / "counter.db"
    status, _ = play(Path("docs/scenarios/batch-resubmitted.jsonl"), tmp_path, db=db)
    assert status == 0
    with sqlite3.connect(db) as conn:
        claims = [r[0] for r in conn.execute("SELECT number FROM claims ORDER BY number")]
        batches = [r[0] for r in conn.execute("SELECT number FROM batches ORDER BY number")]
        series = dict(conn.execute("SELECT series, last FROM numbering").fetchall())
        trips = conn.execute("SELECT count(*) FROM claim_resubmissions").fetchone()[0]
        rejections = conn.execute("SELECT count(*) FROM rejections").fetchone()[0]
        statuses = {r[0] for r in conn.execute("SELECT status FROM claims")}
    assert claims == [1, 2, 3] and series["claim"] == 3, "gapless: every number handed out is a claim"
    assert batches == [1, 2] and series["batch"] == 2, "sequential batches, none opened for nothing"
    assert trips == 2 and rejections == 2 and statuses == {"accepted"}
    verify = [*COMPTOIR, "audit", "verify", "--db", str(db), "--key", str(db.with_name(db.name + ".key"))]
    assert subprocess.run(verify, capture_output=True, timeout=60, check=False).returncode == 0


def test_the_apcv_patient_with_prescription_and_mutuelle_has_nothing_to_pay(tmp_path: Path) -> None:
    _, transcript = play(Path("docs/scenarios/apcv-full.jsonl"), tmp_path)
    outcome = transcript["outcome"]
    assert outcome["ins_status"] == "QUAL"
    assert outcome["claim"] == 1
    assert outcome["amounts"]["to_pay"] == 0
    assert outcome["amounts"]["amo"] + outcome["amounts"]["amc"] == outcome["amounts"]["total"]
    assert outcome["rights"]["amc_accreditation"]
    assert [line["line"] for line in outcome["lines"]] == [1, 1, 2]
    assert outcome["receipt"][-1] == "Réglé : 0,00 €"


def test_a_failed_expectation_exits_1_with_a_readable_difference(tmp_path: Path) -> None:
    script = tmp_path / "wrong.jsonl"
    script.write_text(
        '{"scan": "APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"}\n'
        '{"expect": {"step": "payment", "outcome.ins_status": "PROV"}}\n',
        encoding="utf-8",
    )
    done = subprocess.run([*COMPTOIR, "scenario", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert 'line 2: step: expected "payment", got "rights"' in done.stderr
    assert 'line 2: outcome.ins_status: expected "PROV", got "QUAL"' in done.stderr
    assert json.loads(done.stdout)["failures"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json\n", "line 1: not JSON"), ('{"dance": true}\n', "unknown script line"), ("[1]\n", "JSON object")],
)
def test_a_script_the_runner_cannot_read_exits_2(tmp_path: Path, text: str, message: str) -> None:
    script = tmp_path / "bad.jsonl"
    script.write_text(text, encoding="utf-8")
    done = subprocess.run([*COMPTOIR, "scenario", str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert message in done.stderr


def test_identity_is_sealed_on_disk_and_absent_from_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "counter.db"
    status, _ = play(Path("docs/scenarios/family-card.jsonl"), tmp_path, db=db)
    assert status == 0
    lea = PEOPLE["martin-lea"].beneficiary
    # Long enough not to occur by chance in ciphertext or in the schema's SQL text.
    secrets = [lea.nir, lea.traits.birth_name, lea.traits.birth_date.isoformat(), "MA0004512"]
    assert all(len(secret) >= 6 for secret in secrets)
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("counter.db"))
    for secret in secrets:
        assert secret.encode() not in stored, f"{secret} is in clear in the database files"
        assert secret not in caplog.text


def test_tampering_with_the_audit_journal_is_detected(tmp_path: Path) -> None:
    db = tmp_path / "counter.db"
    status, _ = play(Path("docs/scenarios/apcv-full.jsonl"), tmp_path, db=db)
    assert status == 0
    verify = [*COMPTOIR, "audit", "verify", "--db", str(db), "--key", str(db.with_name(db.name + ".key"))]
    assert subprocess.run(verify, capture_output=True, timeout=60, check=False).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER audit_journal_no_update")
        conn.execute("UPDATE audit_journal SET details = '{\"total\": 1}' WHERE action = 'claim.created'")
    done = subprocess.run(verify, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "seq" in (done.stdout + done.stderr)


def test_the_runner_uses_a_sandbox_already_running_when_given_its_url(tmp_path: Path) -> None:
    from sandbox.server import SandboxServer

    server = SandboxServer(port=0)
    base_url = server.start()
    try:
        printed: list[str] = []
        status = run_scenario(
            Path("docs/scenarios/apcv-full.jsonl"),
            db_path=None,
            key_path=None,
            sandbox_url=base_url,
            out=printed.append,
        )
        state = httpx.get(f"{base_url}/_sandbox/state", timeout=5).json()
    finally:
        server.stop()
    assert status == 0
    assert state["requests"]["apcv"] == 1
    assert len(state["executions"]) == 1
