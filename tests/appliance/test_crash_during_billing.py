"""Power cut during billing: the counter process is killed (SIGKILL) at chosen points and at random ones.

After every kill the database is reopened as the next boot would, and must be intact: SQLite's own
integrity check, the audit chain, claim and batch numbers 1..max with no gap and no repeat (a number
taken by a transaction that never committed is given back), every number the patient was shown
still there with the boxes it was shown with, no half-written claim (dispensation, lines, batch,
execution data, outbox messages and audit row all present, or none of them), no serial dispensed
twice, no duplicated outbox key.

The counter is :mod:`tests.appliance.crash_worker`, the real Counter on the real SQLite store with
the teleservices unreachable (degraded mode). Two kinds of rounds, in a seeded order:

- **aimed** (the ones the assertions count on): the worker stops at a named point of its k-th
  session, claim or batch closing (database just opened; a session with its boxes scanned; the
  validation PIN checked; inside the claim transaction with the number just taken, or with only
  COMMIT left; after the COMMIT, before the screen; inside the batch-closing transaction), says so in
  its log and waits; the parent kills it there. Whatever the machine's load, each kill lands exactly
  at its point (the ``paused`` line is the log's last), and what the database holds afterwards is
  known exactly: how many claims the round committed and handed out, whether the claim or the batch
  in hand is absent, present and pointed out, or still open;
- **random** (extra coverage, no statistics asserted): killed after a random delay once sessions
  run, some a random few milliseconds after the PIN is given for billing, one during start-up.

After every kill the next boot's start-up check runs too (``Started`` on a new Counter, with the clock
the next process will have): a claim committed but never shown is pointed out to the pharmacist, and a
claim the screen showed never is.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.products import ProductTable
from appliance.store import audit, numbering
from appliance.store.database import open_database, rows
from appliance.store.records import BOX_ID_KEY, CounterRecords
from appliance.store.sealing import FieldCipher
from appliance.workflow.events import Started
from appliance.workflow.machine import Counter
from tests.appliance.crash_worker import BATCH_EVERY, PAUSE_ENV, START

REPO = Path(__file__).resolve().parents[2]
SEED = 20260615
RANDOM_ROUNDS = 6
AIMED_ROUNDS = (
    ("open", 1),
    ("session", 1),
    ("session", 3),
    ("billing", 1),
    ("billing", 4),
    ("number", 1),
    ("number", 3),
    ("number", 5),
    ("commit", 1),
    ("commit", 2),
    ("commit", 5),
    ("shown", 1),
    ("shown", 2),
    ("close", 1),
    ("close", 2),
)
"""(stage, k): the worker stops at that point of its k-th session, claim or batch closing (see
:mod:`tests.appliance.crash_worker`) and is killed there."""
AIMED_STATE = {
    "open": "starting",
    "session": "session",
    "billing": "billing",
    "number": "number",
    "commit": "number",
    "shown": "number",
    "close": "claimed",
}
"""Where the log says the worker was when killed at each stage."""
STARTUP_KILLS = 1
"""Random rounds killed without waiting for the worker to be ready (imports, open, migrations, login)."""
NEAR_BILLING_KILLS = 3
"""Random rounds killed a random few milliseconds after a PIN is given for billing; the others are
killed after a random delay wherever the session happens to be."""
MAX_DELAY_S = 0.6
NEAR_BILLING_WINDOW_S = 0.006
WAIT_TIMEOUT_S = 20.0
WORKER_MAX_SECONDS = 25.0


def committed_in_round(stage: str, k: int) -> int:
    """Claims a round killed at ``stage`` of its k-th session, claim or batch closing has committed."""
    return {"open": 0, "shown": k, "close": BATCH_EVERY * k}.get(stage, k - 1)


def handed_in_round(stage: str, k: int) -> int:
    """Claim numbers that round showed to patients (``shown`` stops before the k-th is on screen)."""
    return {"open": 0, "shown": k - 1, "close": BATCH_EVERY * k}.get(stage, k - 1)


@dataclass
class Handed:
    """What the side file says the patient was shown: claim number, prescription and boxes."""

    number: int
    prescription_id: str
    serials: tuple[str, ...]


@dataclass
class RoundLog:
    lines: list[str]
    claims: list[Handed] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    paused: tuple[int, str] | None = None
    state: str = "starting"
    """Where the worker was when killed: starting, idle, session, billing, number."""
    open_number: int | None = None
    """The claim number taken by the transaction in progress when killed (state ``number``)."""
    shown: set[int] = field(default_factory=set)
    """Claims the core recorded as shown on the screen (``ResultShown`` done)."""

    @classmethod
    def parse(cls, text: str) -> RoundLog:
        lines = [line for line in text.splitlines() if line]
        log = cls(lines)
        for line in lines:
            word, _, rest = line.partition(" ")
            if word == "ready":
                log.state = "idle"
            elif word == "begin":
                log.state = "session"
            elif word == "billing":
                log.state = "billing"
            elif word == "number":
                log.state, log.open_number = "number", int(rest)
            elif word == "claim":
                number, prescription_id, serials = rest.split(" ")
                log.claims.append(Handed(int(number), prescription_id, tuple(serials.split(","))))
                log.state, log.open_number = "claimed", None
            elif word == "shown":
                log.shown.add(int(rest))
            elif word == "batch":
                log.batches.append(int(rest))
            elif word == "paused":
                number, stage = rest.split(" ")
                log.paused = (int(number), stage)
        return log


@dataclass
class Stats:
    random_rounds: int = 0
    near_billing: int = 0
    startup_kills: int = 0
    in_session: int = 0
    in_billing: int = 0
    inside_transaction: int = 0
    """Kills after the claim number was taken and before COMMIT (the claim is not in the database)."""
    after_commit_before_shown: int = 0
    paused_kills: int = 0
    paused_at: dict[str, int] = field(default_factory=dict)
    """Aimed kills by stage."""
    flagged_after_restart: int = 0
    """Restarts that pointed the pharmacist to a claim committed but never shown."""
    claims_per_round: list[int] = field(default_factory=list)


class Worker:
    def __init__(self, tmp: Path, round_no: int, env: dict[str, str]) -> None:
        self.log_path = tmp / f"round-{round_no:03d}.log"
        self.err_path = tmp / f"round-{round_no:03d}.err"
        self.started = time.monotonic()
        with self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.appliance.crash_worker",
                    "--db",
                    str(tmp / "counter.db"),
                    "--key",
                    str(tmp / "counter.key"),
                    "--log",
                    str(self.log_path),
                    "--round",
                    str(round_no),
                    "--max-seconds",
                    str(WORKER_MAX_SECONDS),
                ],
                cwd=REPO,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8") if self.log_path.exists() else ""

    def wait_for(self, predicate: Callable[[RoundLog], bool], what: str, poll_s: float = 0.005) -> None:
        deadline = time.monotonic() + WAIT_TIMEOUT_S
        while not predicate(RoundLog.parse(self.text())):
            if self.proc.poll() is not None:
                raise AssertionError(f"worker ended by itself before {what}: {self.stderr()}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"worker never reached {what} within {WAIT_TIMEOUT_S} s")
            time.sleep(poll_s)

    def sleep_alive(self, seconds: float) -> None:
        time.sleep(seconds)
        if self.proc.poll() is not None:
            raise AssertionError(f"worker ended by itself (status {self.proc.returncode}): {self.stderr()}")

    def kill(self) -> RoundLog:
        self.proc.send_signal(signal.SIGKILL)
        status = self.proc.wait(timeout=10)
        assert status == -signal.SIGKILL, f"worker ended with {status}, not by the kill: {self.stderr()}"
        return RoundLog.parse(self.text())

    def stderr(self) -> str:
        return self.err_path.read_text(encoding="utf-8", errors="replace")[-3000:]


@dataclass
class Store:
    """What the database holds after a kill, checked for the invariants of DESIGN §5."""

    claims: dict[int, tuple[str, tuple[str, ...]]]
    """number -> (prescription id, serials in line order)."""
    batches: list[int]
    closed_batches: set[int] = field(default_factory=set)


def check_store(tmp: Path, handed: dict[int, Handed], logged_batches: set[int], previous: Store | None) -> Store:
    db = open_database(tmp / "counter.db", key_file=tmp / "counter.key")  # as the next boot: WAL recovery
    try:
        conn = db.conn
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        report = audit.verify(db)
        assert report.ok, report.problems

        # Claim numbers: 1..max, no gap, no repeat, and the series is not ahead of the claims (a number
        # taken by a transaction killed before COMMIT must be given back, not skipped).
        numbers = [int(r[0]) for r in conn.execute("SELECT number FROM claims ORDER BY number")]
        assert numbers == list(range(1, len(numbers) + 1)), f"claim numbers with gaps or repeats: {numbers}"
        assert numbering.current_number(db, "claim") == len(numbers)

        claims: dict[int, tuple[str, tuple[str, ...]]] = {}
        for claim in rows(
            conn,
            "SELECT c.id, c.number, c.dispensation_id, c.total_cents, c.amo_cents, c.amc_cents, c.patient_cents,"
            " d.prescription_id, d.renewal FROM claims c JOIN dispensations d ON d.id = c.dispensation_id",
        ):
            lines = rows(
                conn,
                "SELECT serial, total_cents, amo_cents, amc_cents, patient_cents FROM dispensation_lines"
                " WHERE dispensation_id = ? ORDER BY id",
                (claim["dispensation_id"],),
            )
            number = int(claim["number"])
            assert lines, f"claim {number} has no dispensation lines"
            for column in ("total_cents", "amo_cents", "amc_cents", "patient_cents"):
                assert claim[column] == sum(line[column] for line in lines), f"claim {number}: {column} != lines"
            pid, renewal = claim["prescription_id"], claim["renewal"]
            assert pid, f"claim {number}: the worker always bills a prescription"
            execution = conn.execute(
                "SELECT claim_id, step1 FROM execution_data WHERE prescription_id = ? AND renewal = ?", (pid, renewal)
            ).fetchall()
            assert execution == [(claim["id"], "queued")], f"claim {number}: execution data {execution}"
            box = conn.execute("SELECT value FROM pharmacy WHERE key = ?", (BOX_ID_KEY,)).fetchone()[0]
            wanted = {f"exec1:{box}:{pid}:{renewal}", f"fetch:{pid}"}
            keys = {str(r[0]) for r in conn.execute("SELECT key FROM outbox WHERE key IN (?, ?)", tuple(wanted))}
            assert keys == wanted, f"claim {number}: outbox has only {keys}"
            claims[number] = (str(pid), tuple(str(line["serial"]) for line in lines))

        # Nothing of a claim without the claim: no orphan dispensation, prescription or execution data.
        orphans = conn.execute(
            "SELECT count(*) FROM dispensations d WHERE NOT EXISTS (SELECT 1 FROM claims c WHERE c.dispensation_id"
            " = d.id)"
        ).fetchone()[0]
        assert orphans == 0, f"{orphans} dispensation(s) without their claim"
        assert conn.execute(
            "SELECT count(*) FROM prescriptions p WHERE NOT EXISTS (SELECT 1 FROM dispensations d"
            " WHERE d.prescription_id = p.prescription_id)"
        ).fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM execution_data").fetchone() == (len(numbers),)
        assert conn.execute(
            "SELECT count(*) FROM outbox WHERE stream = 'execution' OR key LIKE 'fetch:%'"
        ).fetchone() == (2 * len(numbers),)
        created = dict(
            conn.execute("SELECT subject, count(*) FROM audit_journal WHERE action = 'claim.created' GROUP BY subject")
        )
        assert created == {str(n): 1 for n in numbers}, "each claim has exactly one claim.created audit row"

        # Serials: a box is dispensed once; outbox keys are unique.
        assert (
            conn.execute(
                "SELECT gtin, serial FROM dispensation_lines GROUP BY gtin, serial HAVING count(*) > 1"
            ).fetchall()
            == []
        )
        assert conn.execute("SELECT key FROM outbox GROUP BY key HAVING count(*) > 1").fetchall() == []

        # Batches: 1..max, at most one open, each with its claims; a closed one has its message and audit row.
        batches = rows(conn, "SELECT id, number, status FROM batches ORDER BY number")
        batch_numbers = [int(b["number"]) for b in batches]
        assert batch_numbers == list(range(1, len(batches) + 1)), f"batch numbers: {batch_numbers}"
        assert numbering.current_number(db, "batch") == len(batches)
        assert sum(1 for b in batches if b["status"] == "open") <= 1
        for batch in batches:
            count = conn.execute("SELECT count(*) FROM claims WHERE batch_id = ?", (batch["id"],)).fetchone()[0]
            assert count > 0, f"batch {batch['number']} has no claim"
            if batch["status"] == "closed":
                assert conn.execute(
                    "SELECT count(*) FROM outbox WHERE key = ?", (f"batch:{batch['number']}",)
                ).fetchone() == (1,)
                assert conn.execute(
                    "SELECT count(*) FROM audit_journal WHERE action = 'batch.closed' AND subject = ?",
                    (str(batch["number"]),),
                ).fetchone() == (1,)
        closed = {int(b["number"]) for b in batches if b["status"] == "closed"}
        assert logged_batches <= closed, f"batches closed on screen but not in the database: {logged_batches - closed}"

        # What the patients were shown is there, with the boxes they were shown with (no claim lost).
        lost = sorted(set(handed) - set(claims))
        assert not lost, f"claim numbers handed out but missing from the database: {lost}"
        for number, seen in handed.items():
            assert claims[number] == (seen.prescription_id, seen.serials), f"claim {number} differs from the screen"

        # Committed claims never change or vanish from one boot to the next.
        if previous is not None:
            for number, content in previous.claims.items():
                assert claims.get(number) == content, f"committed claim {number} changed or vanished"

        # Sealed identities still open with the key.
        cipher = FieldCipher.load(tmp / "counter.key")
        for patient in rows(conn, "SELECT birth_name, birth_date FROM patients"):
            cipher.open(patient["birth_name"], "patients.birth_name")
            cipher.open(patient["birth_date"], "patients.birth_date")
        return Store(claims, batch_numbers, closed)
    finally:
        db.close()


def flagged_at_next_boot(tmp: Path, round_no: int) -> int | None:
    """What the next kiosk start points the pharmacist to: a new Counter on the same files, with the
    clock the next worker will have (each round's clock starts 10 minutes after the previous one's)."""
    db = open_database(tmp / "counter.db")
    try:
        at = START.timestamp() + (round_no + 1) * 600.0
        records = CounterRecords(db, FieldCipher.load(tmp / "counter.key"), lambda: at)
        counter = Counter(records, None, ProductTable(), clock=lambda: at)  # type: ignore[arg-type]
        assert counter.handle(Started()).accepted
        return counter.interrupted.number if counter.interrupted is not None else None
    finally:
        db.close()


def _next_billing(seen: int) -> Callable[[RoundLog], bool]:
    """True once a PIN was given for billing (and the transaction may have started) after line ``seen``."""
    return lambda log: log.state in ("billing", "number") and len(log.lines) > seen


@pytest.mark.timeout(300)  # 20-40 s on an idle machine; under load every worker start is slower
def test_sigkill_at_random_points_during_billing_leaves_every_claim_whole(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    schedule: list[tuple[str, int] | None] = [None] * RANDOM_ROUNDS
    aimed_slots = rng.sample(range(1, RANDOM_ROUNDS + len(AIMED_ROUNDS) - 1), len(AIMED_ROUNDS))
    for slot, aimed in sorted(zip(aimed_slots, AIMED_ROUNDS, strict=True)):  # never last: a round follows
        schedule.insert(slot, aimed)
    modes = ["start-up"] * STARTUP_KILLS + ["near billing"] * NEAR_BILLING_KILLS
    modes += ["anytime"] * (RANDOM_ROUNDS - len(modes))
    rng.shuffle(modes)
    started = time.monotonic()
    stats = Stats()
    handed: dict[int, Handed] = {}
    shown: set[int] = set()
    logged_batches: set[int] = set()
    store: Store | None = None

    for round_no, spec in enumerate(schedule):
        if spec is None:
            worker = Worker(tmp_path, round_no, {})
            mode = modes.pop()
            if mode == "start-up":  # imports, WAL recovery, migrations, operator, login
                worker.sleep_alive(rng.uniform(0.3, 1.0))
            else:
                worker.wait_for(lambda log: log.state != "starting", "ready")
                worker.sleep_alive(rng.uniform(0.01, MAX_DELAY_S))
                if mode == "near billing":  # the next PIN given for billing, then a few milliseconds
                    worker.wait_for(_next_billing(len(RoundLog.parse(worker.text()).lines)), "billing", 0.0002)
                    time.sleep(rng.uniform(0.0, NEAR_BILLING_WINDOW_S))
                    stats.near_billing += 1
            log = worker.kill()
        else:
            stage, k = spec
            worker = Worker(tmp_path, round_no, {PAUSE_ENV: f"{k}:{stage}"})
            worker.wait_for(lambda log: log.paused is not None, f"the pause at {stage} {k}")
            worker.sleep_alive(rng.uniform(0.0, 0.05))
            log = worker.kill()

        claims_before = len(store.claims) if store is not None else 0
        for claim in log.claims:
            assert claim.number not in handed, f"claim number {claim.number} handed out twice"
            handed[claim.number] = claim
        logged_batches.update(log.batches)
        shown.update(log.shown)
        store = check_store(tmp_path, handed, logged_batches, store)
        stats.claims_per_round.append(len(store.claims))

        in_db = log.open_number is not None and log.open_number in store.claims
        flagged = flagged_at_next_boot(tmp_path, round_no)
        if store.claims and max(store.claims) in shown:
            assert flagged is None, f"claim {flagged} pointed out although its screen was shown"
        if log.state == "number" and in_db:  # killed between COMMIT and screen
            assert flagged == log.open_number, f"claim {log.open_number} never shown, not pointed out ({flagged})"
        if flagged is not None:
            stats.flagged_after_restart += 1
        if spec is not None:
            # The kill landed at its point: the worker was stopped there, nothing happened after it.
            stage, k = spec
            assert log.paused is not None and log.paused[1] == stage, (spec, log.lines[-3:])
            assert log.lines[-1].startswith("paused "), f"the worker went on after its pause: {log.lines[-3:]}"
            assert log.state == AIMED_STATE[stage], (spec, log.state)
            # ...so what the database holds is known exactly.
            assert len(store.claims) - claims_before == committed_in_round(stage, k), (spec, stats.claims_per_round)
            assert len(log.claims) == handed_in_round(stage, k), (spec, log.claims)
            number = log.paused[0]
            if stage == "shown":
                assert number in store.claims and flagged == number, "committed, unseen, and pointed out"
            elif stage in ("number", "commit"):
                assert number not in store.claims, f"claim {number} committed although killed before COMMIT"
                assert number == len(store.claims) + 1, "the paused claim's number is the next one to give"
            elif stage == "close":
                assert number in store.batches and number not in store.closed_batches, "killed before COMMIT"
                assert number not in logged_batches
            stats.paused_kills += 1
            stats.paused_at[stage] = stats.paused_at.get(stage, 0) + 1
            continue
        stats.random_rounds += 1
        if log.state == "starting":
            stats.startup_kills += 1
        elif log.state in ("session", "billing", "number"):
            stats.in_session += 1
            if log.state in ("billing", "number"):
                stats.in_billing += 1
            if log.state == "number" and not in_db:
                stats.inside_transaction += 1
            if log.state == "number" and in_db:
                stats.after_commit_before_shown += 1

    elapsed = time.monotonic() - started
    print(
        f"\ncrash test: {len(schedule)} kills in {elapsed:.1f} s; aimed {stats.paused_kills} {stats.paused_at};"
        f" random {stats.random_rounds} (near billing {stats.near_billing}, start-up {stats.startup_kills},"
        f" mid-session {stats.in_session}, in billing {stats.in_billing},"
        f" inside the claim transaction {stats.inside_transaction},"
        f" committed but not yet shown {stats.after_commit_before_shown});"
        f" pointed out after restart {stats.flagged_after_restart}; claims {stats.claims_per_round[-1]},"
        f" handed out {len(handed)}, batches closed {len(logged_batches)}"
    )
    # Every aimed kill happened (where it did is asserted round by round), whatever the machine's load;
    # where the random ones landed is only printed.
    wanted: dict[str, int] = {}
    for stage, _ in AIMED_ROUNDS:
        wanted[stage] = wanted.get(stage, 0) + 1
    assert stats.paused_at == wanted, stats
    assert stats.flagged_after_restart >= wanted["shown"]
    assert stats.claims_per_round == sorted(stats.claims_per_round), "claims never vanish"
    assert stats.claims_per_round[-1] >= sum(committed_in_round(stage, k) for stage, k in AIMED_ROUNDS), stats
    assert len(handed) >= sum(handed_in_round(stage, k) for stage, k in AIMED_ROUNDS), stats
