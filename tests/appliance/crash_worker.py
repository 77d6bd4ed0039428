"""A counter that bills sessions until it is killed: the subject of ``test_crash_during_billing``.

Run as ``python -m tests.appliance.crash_worker --db FILE --key FILE --log FILE --round N``. It opens
the real SQLite store (creating the key file and the operator when missing, as a first boot would),
wires the real :class:`~appliance.workflow.machine.Counter` to an :class:`HttpTeleservices` pointed
at a closed port on 127.0.0.1 (every call meets a real "connection refused", so the workflow runs
in degraded mode), and loops complete sessions: carte Vitale, paper prescription typed line by line,
boxes scanned through the :class:`CodeReader` with serials never used before, pharmacist's PIN,
bill, close; every few sessions the open batch is closed.

The log file is what the outside world saw, one line per event, written with ``os.write`` so that a
SIGKILL cannot lose a line already written (the kernel has it):

- ``ready``: the store is open, sessions start;
- ``begin <session>``: a session starts; ``billing <session>``: the PIN is given (validate);
- ``number <n>``: ``record_claim`` took claim number ``n`` (inside its transaction, not committed);
- ``claim <n> <prescription> <serial,serial…>``: the claim is committed and its number is on the
  screen — this line is fsynced, it is the number handed out to the patient;
- ``shown <n>``: the core has durably recorded that the screen showed claim ``n`` (``ResultShown``, as
  the kiosk reports it), so a restart must not point the pharmacist to it;
- ``batch <n>``: batch ``n`` was closed;
- ``paused <n> <stage>``: the worker stopped at a named point and waits to be killed (see below).

Pause hook (this worker only, production code is untouched): with ``COMPTOIR_CRASH_PAUSE=<k>:<stage>``
the worker stops at that point of its ``k``-th session, claim or batch closing, writes ``paused``, and
sleeps until it is killed there (the parent reads the line, then sends SIGKILL: the kill lands at that
point whatever the machine's load). The stages, in the order a session meets them:

- ``open`` (``k`` = 1): the database is open (WAL recovered, migrations run), before the login;
- ``session``: the ``k``-th session has its prescription confirmed and its boxes scanned, before control;
- ``billing``: the PIN given to validate the ``k``-th session was checked (that check commits on its
  own), before the claim's transaction;
- ``number``: inside the ``k``-th claim's transaction, right after the claim number was taken;
- ``commit``: after the last statement of that transaction (the ``claim.created`` audit row), just
  before COMMIT;
- ``shown``: after the COMMIT, before the screen shows the number (``n`` is the claim number);
- ``close``: inside the transaction that closes the ``k``-th batch of this process, after its last
  statement (the ``batch.closed`` audit row), before COMMIT (``n`` is the batch number).

``number``, ``commit`` and ``close`` wrap the module-level functions ``numbering.next_number`` and
``audit.append`` that the store calls, ``billing`` the records' ``authenticate``; the others are the
session's own steps. ``n`` is the claim number (claim stages), the batch number (``close``), or the
session's ordinal.

The worker stops by itself after ``--max-seconds`` or ``--max-sessions``, so a lost test never
leaves it running.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from appliance.codes.kinds import CodeKind
from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
from appliance.store import audit, numbering, operators
from appliance.store.database import open_database
from appliance.store.records import CounterRecords
from appliance.store.sealing import FieldCipher
from appliance.workflow.events import CardInserted, Event, Intent, ResultShown, Scanned
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step
from sandbox.population import CASES, PEOPLE
from sync.teleservices_http import HttpTeleservices

START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
"""The sandbox population's reference day (card rights and box expiries are valid on it)."""
OPERATOR, PIN = "crash-pharmacien", "2468"
PAUSE_ENV = "COMPTOIR_CRASH_PAUSE"
PAUSE_STAGES = ("open", "session", "billing", "number", "commit", "shown", "close")
"""Where the worker can stop to be killed, in the order a session meets them (see the module's doc)."""
PATIENT_CASES = ("corsica", "ald", "durand", "le-goff", "c2s", "martin-family")
"""Cards of the sandbox population; a multi-beneficiary card goes through the choice of a person."""
PRODUCTS = (
    "3400930000120",  # DOLIPRANE 1000 mg
    "3400930000649",  # AMOXICILLINE BIOGARAN 1 g
    "3400930001028",  # KARDEGIC 75 mg
    "3400930001189",  # METFORMINE ARROW 850 mg
    "3400930002148",  # SMECTA 3 g
    "3400930002339",  # CETIRIZINE ARROW 10 mg
)
AMC_ATTESTATION = "AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"
BATCH_EVERY = 4
"""Close the open batch after every this many sessions (exercises batch numbering too)."""


class SideLog:
    """Append-only lines the test reads after the kill (``os.write``: nothing buffered in the process)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def line(self, text: str, *, durable: bool = False) -> None:
        os.write(self.fd, (text + "\n").encode("utf-8"))
        if durable:
            os.fsync(self.fd)


class WorkerClock:
    """The reference day plus the real time elapsed: audit times increase, dates stay valid."""

    def __init__(self, offset: float) -> None:
        self.base = START.timestamp() + offset
        self.t0 = time.monotonic()

    def __call__(self) -> float:
        return self.base + (time.monotonic() - self.t0)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _pause_spec() -> tuple[int, str] | None:
    raw = os.environ.get(PAUSE_ENV, "").strip()
    if not raw:
        return None
    k, _, stage = raw.partition(":")
    if stage not in PAUSE_STAGES or not k.isdigit() or int(k) < 1:
        raise SystemExit(f"crash_worker: bad {PAUSE_ENV}={raw!r} (want <k>:<stage>, stage in {PAUSE_STAGES})")
    return int(k), stage


Hold = Callable[[str, int, int], None]
"""``hold(stage, k, n)``: stop there if this is the pause asked for (``k``-th time at ``stage``)."""


def install_hooks(log: SideLog, *, hold_seconds: float) -> Hold:
    """Trace (and optionally pause) the billing and batch transactions from the outside of production code."""
    pause = _pause_spec()
    taken = {"claims": 0, "closed": 0}
    real_next_number = numbering.next_number
    real_append = audit.append

    def hold(stage: str, k: int, number: int) -> None:
        if pause is not None and pause == (k, stage):
            log.line(f"paused {number} {stage}")
            time.sleep(hold_seconds)  # the test kills us here
            raise SystemExit(f"crash_worker: paused at {stage} but never killed")

    def traced_next_number(conn: sqlite3.Connection, series: str) -> int:
        number = real_next_number(conn, series)
        if series == "claim":
            taken["claims"] += 1
            log.line(f"number {number}")
            hold("number", taken["claims"], number)
        return number

    def traced_append(conn: sqlite3.Connection, **kwargs: Any) -> int:
        seq = real_append(conn, **kwargs)
        if kwargs.get("action") == "claim.created":
            hold("commit", taken["claims"], int(kwargs.get("subject") or 0))
        elif kwargs.get("action") == "batch.closed":
            taken["closed"] += 1
            hold("close", taken["closed"], int(kwargs.get("subject") or 0))
        return seq

    numbering.next_number = traced_next_number
    audit.append = traced_append
    return hold


class Driver:
    """Plays whole sessions on a Counter, refusing to go on if the workflow says no."""

    def __init__(
        self,
        counter: Counter,
        reader: CodeReader,
        log: SideLog,
        round_no: int,
        hold: Hold | None = None,
    ) -> None:
        self.counter = counter
        self.reader = reader
        self.log = log
        self.round_no = round_no
        self.hold: Hold = hold or (lambda stage, k, number: None)
        self.billing = 0
        """The ordinal of the session whose validation PIN is being checked (0: none)."""
        self.claims = 0
        """Claims this process committed."""
        real_authenticate = counter.records.authenticate

        def authenticate(operator: int | str, pin: str) -> Any:
            checked = real_authenticate(operator, pin)
            if self.billing:
                self.hold("billing", self.billing, self.billing)
            return checked

        counter.records.authenticate = authenticate  # type: ignore[method-assign]

    def send(self, event: Event, *, want: Step | None = None) -> Outcome:
        outcome = self.counter.handle(event)
        if not outcome.accepted or (want is not None and outcome.step is not want):
            raise RuntimeError(f"workflow refused {event!r}: step {outcome.step.value}, {outcome.message!r}")
        return outcome

    def scan(self, raw: str, *, want: Step | None = None) -> Outcome:
        expected = {
            Step.ATTRACT: frozenset({CodeKind.APCV}),
            Step.RIGHTS: frozenset({CodeKind.EPRESCRIPTION}),
            Step.PRESCRIPTION: frozenset({CodeKind.EPRESCRIPTION}),
        }.get(self.counter.step)
        code = self.reader.read(raw.encode("latin-1"), expect=expected)
        return self.send(Scanned(code), want=want)

    def intent(self, name: str, *, want: Step | None = None, **args: Any) -> Outcome:
        return self.send(Intent(name, args), want=want)

    def session(self, index: int) -> None:
        tag = f"{self.round_no:04d}"
        seq = f"{index:04d}"
        self.log.line(f"begin {tag}.{seq}")
        case = CASES[PATIENT_CASES[(self.round_no + index) % len(PATIENT_CASES)]]
        members = [PEOPLE[key] for key in case.members]
        card = CardInserted(
            beneficiaries=tuple(p.beneficiary for p in members),
            amo={p.beneficiary.nir: p.amo for p in members},
            data_on=START.date(),
        )
        if len(members) > 1:
            self.send(card, want=Step.CHOOSE_BENEFICIARY)
            self.intent("choose_beneficiary", want=Step.RIGHTS, index=index % len(members))
        else:
            self.send(card, want=Step.RIGHTS)
        if index % 3 == 1:
            self.scan(AMC_ATTESTATION, want=Step.RIGHTS)  # offline: rights from the paper, IDB queued
        prescription_id = f"EP{tag}-{seq}-CRSH-{(index * 7919) % 10000:04d}"
        self.scan(prescription_id, want=Step.PRESCRIPTION)  # offline: "type the paper prescription"
        count = 1 + index % 3
        lines = [PRODUCTS[(index + j) % len(PRODUCTS)] for j in range(count)]
        for cip13 in lines:
            self.intent("enter_line", want=Step.PRESCRIPTION, label=f"CIP {cip13}", quantity=1, cip13=cip13)
        self.intent("confirm_prescription", want=Step.DISPENSATION)
        serials = []
        for j, cip13 in enumerate(lines):
            serial = f"K{tag}S{seq}B{j}"
            serials.append(serial)
            self.scan(f"010{cip13}17271231" + f"10LOT{j}\x1d21{serial}", want=Step.DISPENSATION)
        self.hold("session", index + 1, index + 1)
        self.intent("continue", want=Step.CONTROL)
        self.log.line(f"billing {tag}.{seq}")
        self.billing = index + 1
        try:
            self.intent("validate", want=Step.PAYMENT, pin=PIN)
        finally:
            self.billing = 0
        number = self.counter.session.claim_number
        assert number is not None
        self.claims += 1
        self.hold("shown", self.claims, number)  # committed, not on the screen yet
        self.log.line(f"claim {number} {prescription_id} {','.join(serials)}", durable=True)
        self.send(ResultShown(number))  # what the kiosk's view model reports once the screen is up
        self.log.line(f"shown {number}")
        self.intent("close", want=Step.ATTRACT)
        if index % BATCH_EVERY == BATCH_EVERY - 1:
            outcome = self.intent("send_batch", want=Step.ATTRACT)
            closed = [word for word in (outcome.message or "").split() if word.isdigit()]
            self.log.line(f"batch {closed[0] if closed else '-'}")


def ensure_operator(db: sqlite_utils.Database) -> None:
    if not any(op.name == OPERATOR for op in operators.list_operators(db)):
        operators.add_operator(db, OPERATOR, Role("pharmacien"), PIN)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--round", type=int, required=True, dest="round_no")
    parser.add_argument("--max-sessions", type=int, default=500)
    parser.add_argument("--max-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.max_seconds

    # The test-suite's cheap PIN hashing (same algorithm, minimum cost), as tests/appliance/store does.
    if operators.argon2id_available():
        operators.PIN_KDF = operators.Argon2idParams(memory_kib=8, iterations=1, lanes=1)
    else:
        operators.PIN_KDF = operators.ScryptParams(log2_n=4, r=8, p=1)

    log = SideLog(args.log)
    hold = install_hooks(log, hold_seconds=args.max_seconds)
    if not args.key.exists():
        FieldCipher.create_key(args.key)
    cipher = FieldCipher.load(args.key)
    db = open_database(args.db, key_file=args.key)
    try:
        ensure_operator(db)
        clock: Callable[[], float] = WorkerClock(offset=args.round_no * 600.0)
        offline = HttpTeleservices(f"http://127.0.0.1:{_closed_port()}", timeout=0.5)
        records = CounterRecords(db, cipher, clock)
        counter = Counter(records, offline, ProductTable.load(DEFAULT_PRODUCTS_PATH), clock=clock)
        driver = Driver(counter, CodeReader(), log, args.round_no, hold)
        hold("open", 1, 0)  # the database is open and migrated, nobody logged in yet
        driver.intent("login", operator=OPERATOR, pin=PIN)
        log.line("ready")
        for index in range(args.max_sessions):
            if time.monotonic() > deadline:
                break
            driver.session(index)
        log.line("done")
    finally:
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
