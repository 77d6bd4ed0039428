"""The store commands, run as separate processes the way an installer or support engineer runs them."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.store import open_database
from appliance.store.operators import MAX_FAILED_ATTEMPTS, AuthenticationError, OperatorLocked, authenticate
from appliance.store.sealing import FieldCipher


def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("COMPTOIR_DB", "COMPTOIR_KEY")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "appliance.store.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
    )


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "comptoir.db", tmp_path / "comptoir.key"


def test_install_add_operators_verify_back_up_and_restore(paths: tuple[Path, Path], tmp_path: Path) -> None:
    db, key = paths
    created = run("key", "create", "--key", str(key))
    assert created.returncode == 0, created.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    assert run("key", "create", "--key", str(key)).returncode == 1

    added = run(
        "operator",
        "add",
        "--db",
        str(db),
        "--key",
        str(key),
        "--name",
        "Marie",
        "--role",
        "titulaire",
        "--pin-stdin",
        stdin="4821\n",
    )
    assert added.returncode == 0, added.stderr
    assert "operator 1 added" in added.stdout
    duplicate = run(
        "operator",
        "add",
        "--db",
        str(db),
        "--key",
        str(key),
        "--name",
        "MARIE",
        "--role",
        "pharmacien",
        "--pin-stdin",
        stdin="1234\n",
    )
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    short = run(
        "operator",
        "add",
        "--db",
        str(db),
        "--key",
        str(key),
        "--name",
        "Paul",
        "--role",
        "preparateur",
        "--pin-stdin",
        stdin="12\n",
    )
    assert short.returncode == 1 and "4 to 8 digits" in short.stderr

    verified = run("audit", "verify", "--db", str(db), "--key", str(key))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout

    made = run("backup", "--db", str(db), "--key", str(key), "--to", str(tmp_path / "backups"))
    assert made.returncode == 0, made.stderr
    backup_file = Path(made.stdout.strip())
    assert backup_file.is_file()

    restored = run("restore", str(backup_file), "--db", str(tmp_path / "restored.db"), "--key", str(key))
    assert restored.returncode == 0, restored.stderr
    assert run("audit", "verify", "--db", str(tmp_path / "restored.db"), "--key", str(key)).returncode == 0

    data = bytearray(backup_file.read_bytes())
    data[-1] ^= 0xFF
    backup_file.write_bytes(bytes(data))
    refused = run("restore", str(backup_file), "--db", str(tmp_path / "other.db"), "--key", str(key))
    assert refused.returncode == 1
    assert "altered" in refused.stderr and "Traceback" not in refused.stderr


def test_audit_verify_exits_1_and_names_the_broken_seq(paths: tuple[Path, Path], tmp_path: Path) -> None:
    db, key = paths
    FieldCipher.create_key(key)
    for name in ("Marie", "Paul"):
        assert (
            run(
                "operator",
                "add",
                "--db",
                str(db),
                "--key",
                str(key),
                "--name",
                name,
                "--role",
                "pharmacien",
                "--pin-stdin",
                stdin="4821\n",
            ).returncode
            == 0
        )
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_journal_no_update")
    conn.execute('UPDATE audit_journal SET details = \'{"role":"titulaire"}\' WHERE seq = 2')
    conn.close()
    verified = run("audit", "verify", "--db", str(db), "--key", str(key))
    assert verified.returncode == 1
    assert "first broken seq 2" in verified.stdout
    assert "row seq 2 changed" in verified.stdout


def test_db_and_key_default_to_the_environment(paths: tuple[Path, Path], tmp_path: Path) -> None:
    db, key = paths
    env = {"COMPTOIR_DB": str(db), "COMPTOIR_KEY": str(key)}
    assert run("key", "create", env=env).returncode == 0
    assert (
        run(
            "operator", "add", "--name", "Anne", "--role", "titulaire", "--pin-stdin", stdin="2468\n", env=env
        ).returncode
        == 0
    )
    assert run("backup", "--to", str(tmp_path / "b"), env=env).returncode == 0
    missing = run("audit", "verify")
    assert missing.returncode == 2 and "COMPTOIR_DB" in missing.stderr


def test_an_operator_added_with_an_rpps_can_log_in_with_their_cps(paths: tuple[Path, Path]) -> None:
    db, key = paths
    FieldCipher.create_key(key)
    added = run(
        "operator", "add", "--db", str(db), "--key", str(key), "--name", "Camille", "--role", "pharmacien",
        "--rpps", "10001234567", "--pin-stdin", stdin="2468\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    again = run(
        "operator", "add", "--db", str(db), "--key", str(key), "--name", "Dominique", "--role", "pharmacien",
        "--rpps", "10001234567", "--pin-stdin", stdin="1357\n",
    )  # fmt: skip
    assert again.returncode == 1
    assert "RPPS" in again.stderr
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT name FROM operators WHERE rpps = '10001234567'").fetchall() == [("Camille",)]
        assert conn.execute("SELECT count(*) FROM operators WHERE name = 'Dominique'").fetchone() == (0,)


def test_operator_unlock_lifts_a_lock_and_is_audited(paths: tuple[Path, Path]) -> None:
    db, key = paths
    FieldCipher.create_key(key)
    added = run(
        "operator", "add", "--db", str(db), "--key", str(key), "--name", "Marie", "--role", "pharmacien",
        "--pin-stdin", stdin="4821\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    store = open_database(db, key_file=key)
    try:
        now = time.time()
        for _ in range(MAX_FAILED_ATTEMPTS):
            with pytest.raises(AuthenticationError):
                authenticate(store, 1, "0000", now=now)
        with pytest.raises(OperatorLocked):
            authenticate(store, 1, "4821", now=now)
    finally:
        store.close()
    unlocked = run(
        "operator", "unlock", "marie", "--db", str(db), "--key", str(key), "--reason", "locked out by a patient"
    )  # fmt: skip
    assert unlocked.returncode == 0, unlocked.stderr
    assert "operator 1 (Marie) unlocked" in unlocked.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT failed_attempts, locked_until FROM operators").fetchall() == [(0, None)]
        row = conn.execute(
            "SELECT operator_id, action, subject, details FROM audit_journal ORDER BY seq DESC"
        ).fetchone()
    assert row[:3] == (None, "operator.unlocked", "operator:1")
    details = json.loads(row[3])
    assert details == {"reason": "locked out by a patient", "consecutive_failures": 5, "locked_until": now + 60}

    again = run("operator", "unlock", "Marie", env={"COMPTOIR_DB": str(db), "COMPTOIR_KEY": str(key)})
    assert again.returncode == 0 and "was not locked" in again.stdout
    unknown = run("operator", "unlock", "Paul", "--db", str(db))
    assert unknown.returncode == 1 and "no active operator named 'Paul'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    assert run("audit", "verify", "--db", str(db), "--key", str(key)).returncode == 0
