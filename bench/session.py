"""Counter session benchmark: a whole session's software time, durable commits, five-year look-ups.

Three measures, each printed as a table next to its peer or limit measured in the same run (DESIGN §8):

1. **Sessions**: the apCV session of ``docs/scenarios/apcv-full.jsonl`` (identify, mutuelle attestation,
   ePrescription, three boxes, validate with the PIN, close) played many times by the real core
   (:class:`Counter`, :class:`CounterRecords` on a SQLite file on disk, ``HttpTeleservices``) against one
   sandbox server on 127.0.0.1. Software time = wall time of the ``Counter.handle`` calls (local HTTP
   round trips and durable commits included), against the one-second target.
2. **Durable commits**: claims per second through ``CounterRecords.record_claim`` (WAL, synchronous=FULL)
   next to raw one-row inserts each committed in WAL with synchronous=FULL, and NORMAL, on the same disk.
3. **Look-ups**: a generated five-year database (600,000 sessions) and the look-ups the counter makes
   per session, timed and checked with EXPLAIN QUERY PLAN (an index, or a full scan).

    python bench/session.py [--quick] [--sessions N] [--lookup-db-sessions N]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import numpy as np

from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
from appliance.scenario import EXPECTED_KINDS, START, ScenarioClock
from appliance.store import operators
from appliance.store.database import connect, open_database
from appliance.store.records import ClaimDraft, ClaimRecord, CounterRecords
from appliance.store.sealing import FieldCipher
from appliance.workflow.events import Event, Intent, Scanned
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step
from bench.population import bench_population, prescription_id
from sandbox.population import Population
from sandbox.server import SandboxServer
from sync.teleservices_http import HttpTeleservices

SESSION_TARGET_MS: Final = 1000.0
"""A whole counter session's software time (DESIGN §8)."""
LOOKUP_LIMIT_MS: Final = 5.0
"""A look-up on the five-year database "in milliseconds" (DESIGN §8): p95 under this."""
FIVE_YEARS_SESSIONS: Final = 600_000
DAYS: Final = 5 * 365

PIN: Final = "2468"
APCV_SCAN: Final = b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"
"""Marie-Claire Durand's apCV token, as in ``docs/scenarios/apcv-full.jsonl``."""
AMC_SCAN: Final = b"AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"
BOXES: Final = (("3400930000120", "270531"), ("3400930000120", "270531"), ("3400930000649", "270930"))
"""(CIP13, expiry YYMMDD) of the three boxes: two Doliprane 1000, one amoxicillin."""


def p50(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 50))


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 95))


def _ms(start_ns: int) -> float:
    return (time.perf_counter_ns() - start_ns) / 1e6


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A plain-text table; the first ``left`` columns are left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


# ---------------------------------------------------------------------------------------------- 1. sessions


class TimedRecords(CounterRecords):
    """The real records, with the PIN check and the claim commit timed apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pin_ms: list[float] = []
        self.claim_ms: list[float] = []
        self.last_draft: ClaimDraft | None = None

    def authenticate(self, operator: int | str, pin: str) -> operators.Operator:
        start = time.perf_counter_ns()
        try:
            return super().authenticate(operator, pin)
        finally:
            self.pin_ms.append(_ms(start))

    def record_claim(self, draft: ClaimDraft) -> ClaimRecord:
        start = time.perf_counter_ns()
        try:
            return super().record_claim(draft)
        finally:
            self.claim_ms.append(_ms(start))
            self.last_draft = draft


class TimedTeleservices:
    """The HTTP teleservices, each call timed: how much of a session is local round trips."""

    def __init__(self, inner: HttpTeleservices) -> None:
        self._inner = inner
        self.call_ms: list[float] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target):
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return target(*args, **kwargs)
            finally:
                self.call_ms.append(_ms(start))

        return timed


STEPS: Final = (
    "apCV identify",
    "AMC attestation",
    "ePrescription",
    "confirm prescription",
    "3 boxes",
    "continue to control",
    "validate",
    "close",
)


@dataclass
class SessionRun:
    """One played session."""

    step_ms: dict[str, float]
    refused: list[str]
    claim: int | None
    to_pay_cents: int | None
    pin_ms: float
    claim_commit_ms: float
    http_ms: float
    """Time inside the teleservice calls (HTTP to the sandbox on 127.0.0.1, both ends in this process)."""
    read_ms: float
    """Time spent turning scanned bytes into codes (``CodeReader.read``), outside ``Counter.handle``."""

    @property
    def total_ms(self) -> float:
        return sum(self.step_ms.values())


@dataclass
class Counterside:
    """A counter wired as in ``appliance.scenario``, against a running sandbox."""

    counter: Counter
    records: TimedRecords
    teleservices: TimedTeleservices
    reader: CodeReader
    clock: ScenarioClock
    db_path: Path
    cipher: FieldCipher


@contextlib.contextmanager
def counter_against_sandbox(workdir: Path, population: Population) -> Iterator[tuple[Counterside, str]]:
    """Start-up (not timed): database, key, sandbox server, teleservices, operator created and logged in."""
    key_path = workdir / "counter.db.key"
    FieldCipher.create_key(key_path)
    cipher = FieldCipher.load(key_path)
    db_path = workdir / "counter.db"
    db = open_database(db_path)
    server = SandboxServer(port=0, population=population, today=START.date)
    try:
        base_url = server.start()
        clock = ScenarioClock()
        records = TimedRecords(db, cipher, clock)
        teleservices = TimedTeleservices(HttpTeleservices(base_url, timeout=2.0))
        counter = Counter(records, teleservices, ProductTable.load(DEFAULT_PRODUCTS_PATH), clock=clock)
        operators.add_operator(db, "alice", Role.PHARMACIEN, PIN)
        login = counter.handle(Intent("login", {"operator": "alice", "pin": PIN}))
        if not login.accepted:
            raise RuntimeError(f"login refused: {login.message}")
        records.pin_ms.clear()
        yield Counterside(counter, records, teleservices, CodeReader(), clock, db_path, cipher), base_url
    finally:
        server.stop()
        db.close()


def play_session(side: Counterside, rx_id: str, number: int) -> SessionRun:
    """One apCV session; times every ``Counter.handle`` call (and the code reading apart)."""
    counter, reader = side.counter, side.reader
    step_ms: dict[str, float] = dict.fromkeys(STEPS, 0.0)
    refused: list[str] = []
    read_ms = 0.0
    pins, claims = len(side.records.pin_ms), len(side.records.claim_ms)
    calls = len(side.teleservices.call_ms)

    def scan(raw: bytes) -> Event:
        nonlocal read_ms
        start = time.perf_counter_ns()
        code = reader.read(raw, expect=EXPECTED_KINDS.get(counter.step))
        read_ms += _ms(start)
        return Scanned(code)

    def handle(step: str, event: Event) -> Outcome:
        start = time.perf_counter_ns()
        outcome = counter.handle(event)
        step_ms[step] += _ms(start)
        if not outcome.accepted:
            refused.append(f"{step}: {outcome.message}")
        return outcome

    handle("apCV identify", scan(APCV_SCAN))
    handle("AMC attestation", scan(AMC_SCAN))
    handle("ePrescription", scan(rx_id.encode("ascii")))
    handle("confirm prescription", Intent("confirm_prescription", {}))
    for k, (cip13, expiry) in enumerate(BOXES):
        raw = f"010{cip13}17{expiry}10LOT{number % 97}\x1d21B{number:08d}S{k}".encode("ascii")
        handle("3 boxes", scan(raw))
    handle("continue to control", Intent("continue", {}))
    handle("validate", Intent("validate", {"pin": PIN}))
    outcome = counter.outcome()
    amounts = outcome.get("amounts")
    claim = outcome.get("claim")
    to_pay = amounts["to_pay"] if amounts else None
    handle("close", Intent("close", {}))
    if counter.step is not Step.ATTRACT:  # a refused step left the session open
        counter.handle(Intent("cancel", {}))
    return SessionRun(
        step_ms=step_ms,
        refused=refused,
        claim=int(claim) if claim is not None else None,
        to_pay_cents=int(to_pay) if to_pay is not None else None,
        pin_ms=sum(side.records.pin_ms[pins:]),
        claim_commit_ms=sum(side.records.claim_ms[claims:]),
        http_ms=sum(side.teleservices.call_ms[calls:]),
        read_ms=read_ms,
    )


@dataclass
class SessionReport:
    runs: list[SessionRun]
    http_calls: dict[str, float]
    """Sandbox requests per session, by service (from ``/_sandbox/state`` before each reset)."""
    draft: ClaimDraft | None
    seconds: float


def run_sessions(workdir: Path, sessions: int) -> tuple[SessionReport, Counterside, Callable[[], None]]:
    """Play ``sessions`` sessions; the counter stays open for the durable-commit measure (call the closer)."""
    population, ids = bench_population(sessions)
    stack = contextlib.ExitStack()
    side, base_url = stack.enter_context(counter_against_sandbox(workdir, population))
    control = stack.enter_context(httpx.Client(base_url=base_url, timeout=5.0))
    runs: list[SessionRun] = []
    calls: Tally[str] = Tally()
    started = time.perf_counter()
    try:
        for number, rx_id in enumerate(ids, start=1):
            control.post("/_sandbox/reset").raise_for_status()  # not timed: fresh sandbox state per session
            side.clock.now += 240.0
            runs.append(play_session(side, rx_id, number))
            state = control.get("/_sandbox/state").json()
            calls.update({k: int(v) for k, v in state["requests"].items() if v})
    except BaseException:
        stack.close()
        raise
    report = SessionReport(
        runs=runs,
        http_calls={k: v / max(1, len(runs)) for k, v in calls.items()},
        draft=side.records.last_draft,
        seconds=time.perf_counter() - started,
    )
    return report, side, stack.close


def session_rows(report: SessionReport) -> list[tuple[str, int, float, float, str]]:
    """(what, n, p50 ms, p95 ms, against) per step, then the PIN check, claim commit and whole session."""
    runs = report.runs
    rows: list[tuple[str, int, float, float, str]] = []
    for step in STEPS:
        times = [r.step_ms[step] for r in runs]
        rows.append((f"step: {step}", len(times), p50(times), p95(times), ""))
    pin = [r.pin_ms for r in runs]
    claim = [r.claim_commit_ms for r in runs]
    reads = [r.read_ms for r in runs]
    rows.append(("  in validate: PIN check (Argon2id)", len(pin), p50(pin), p95(pin), "deliberate cost"))
    rows.append(("  in validate: claim commit", len(claim), p50(claim), p95(claim), ""))
    http = [r.http_ms for r in runs]
    rows.append(("  in all steps: teleservice HTTP calls", len(http), p50(http), p95(http), ""))
    rows.append(("code reading, 6 scans (not in handle)", len(reads), p50(reads), p95(reads), ""))
    total = [r.total_ms for r in runs]
    rows.append(("whole session", len(total), p50(total), p95(total), _against(p95(total), SESSION_TARGET_MS)))
    without = [r.total_ms - r.pin_ms for r in runs]
    rows.append(("whole session without PIN check", len(without), p50(without), p95(without), ""))
    local = [r.total_ms - r.pin_ms - r.http_ms for r in runs]
    rows.append(("whole session without PIN check and HTTP", len(local), p50(local), p95(local), ""))
    return rows


def _against(value: float, limit: float) -> str:
    return f"{value / limit:.0%} of {limit:g} ms: {'yes' if value < limit else 'NO'}"


def format_sessions(report: SessionReport) -> str:
    cells = [(what, str(n), f"{a:.1f}", f"{b:.1f}", against) for what, n, a, b, against in session_rows(report)]
    return format_table(("session (Counter.handle wall time)", "n", "p50 ms", "p95 ms", "p95 vs target"), cells)


# ---------------------------------------------------------------------------------------- 2. durable commits

RAW_TABLE: Final = """
CREATE TABLE IF NOT EXISTS raw_claims (
    id               INTEGER PRIMARY KEY,
    number           INTEGER NOT NULL UNIQUE,
    batch_id         INTEGER NOT NULL,
    dispensation_id  INTEGER NOT NULL UNIQUE,
    patient_id       INTEGER NOT NULL,
    total_cents      INTEGER NOT NULL,
    amo_cents        INTEGER NOT NULL,
    amc_cents        INTEGER NOT NULL,
    patient_cents    INTEGER NOT NULL,
    to_pay_cents     INTEGER NOT NULL,
    amo_tiers_payant INTEGER NOT NULL,
    amc_tiers_payant INTEGER NOT NULL,
    amc_accreditation TEXT,
    status           TEXT NOT NULL DEFAULT 'pending',
    created_at       REAL NOT NULL
)
"""
"""A row like one ``claims`` row, with the same two unique indexes."""
RAW_INSERT: Final = (
    "INSERT INTO raw_claims(number, batch_id, dispensation_id, patient_id, total_cents, amo_cents, amc_cents,"
    " patient_cents, to_pay_cents, amo_tiers_payant, amc_tiers_payant, amc_accreditation, created_at)"
    " VALUES (?, 1, ?, 1, 790, 513, 277, 0, 0, 1, 1, 'IDB0123456789', ?)"
)


@dataclass
class CommitSeries:
    name: str
    times_ms: list[float] = field(default_factory=list)
    statements: int = 0
    """SQL statements per commit (BEGIN and COMMIT included)."""

    @property
    def per_second(self) -> float:
        return len(self.times_ms) / (sum(self.times_ms) / 1000.0) if self.times_ms else 0.0


def _raw_connection(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"{path}: not in WAL mode ({mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(RAW_TABLE)
    return conn


def _count_statements(conn: sqlite3.Connection, action: Callable[[], object]) -> int:
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    try:
        action()
    finally:
        conn.set_trace_callback(None)
    return len(seen)


def run_commits(side: Counterside, draft: ClaimDraft, per_kind: int, rounds: int) -> list[CommitSeries]:
    """Durable claims and raw inserts, taking turns in ``rounds`` so that all meet the same disk weather."""
    records = CounterRecords(side.records.db, side.cipher, side.clock)
    workdir = side.db_path.parent
    full = _raw_connection(workdir / "raw-full.db", "FULL")
    normal = _raw_connection(workdir / "raw-normal.db", "NORMAL")
    claims = CommitSeries("record_claim (WAL, FULL)")
    raw_full = CommitSeries("raw insert (WAL, FULL)")
    raw_normal = CommitSeries("raw insert (WAL, NORMAL)")
    counter = iter(range(1, 10**9))

    def claim_once() -> None:
        n = next(counter)
        boxes = tuple(dataclasses.replace(b, serial=f"D{n:08d}S{k}") for k, b in enumerate(draft.boxes))
        records.record_claim(dataclasses.replace(draft, prescription_id=prescription_id("DURA", n), boxes=boxes))

    def raw_once(conn: sqlite3.Connection) -> None:
        n = next(counter)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(RAW_INSERT, (n, n, time.time()))
        conn.execute("COMMIT")

    try:
        # one untimed commit each (page cache, WAL file), counting its statements
        claims.statements = _count_statements(records.db.conn, claim_once)
        raw_full.statements = _count_statements(full, lambda: raw_once(full))
        raw_normal.statements = _count_statements(normal, lambda: raw_once(normal))
        per_round = max(1, per_kind // rounds)
        for _ in range(rounds):
            for series, action in (
                (claims, claim_once),
                (raw_full, lambda: raw_once(full)),
                (raw_normal, lambda: raw_once(normal)),
            ):
                for _ in range(per_round):
                    start = time.perf_counter_ns()
                    action()
                    series.times_ms.append(_ms(start))
    finally:
        full.close()
        normal.close()
    return [claims, raw_full, raw_normal]


def format_commits(series: Sequence[CommitSeries]) -> str:
    reference = next(s for s in series if "FULL" in s.name and s.name.startswith("raw"))
    cells = [
        (
            s.name,
            str(len(s.times_ms)),
            str(s.statements),
            f"{s.per_second:.0f}",
            f"{p50(s.times_ms):.2f}",
            f"{p95(s.times_ms):.2f}",
            f"{s.per_second / reference.per_second:.2f}",
        )
        for s in series
    ]
    headers = ("durable commits, same disk", "commits", "stmts", "per s", "p50 ms", "p95 ms", "× raw FULL")
    return format_table(headers, cells)


# ------------------------------------------------------------------------------------------- 3. look-ups


@dataclass(frozen=True)
class Lookup:
    """A look-up the counter makes, with the SQL as written in ``appliance/store/records.py``."""

    name: str
    caller: str
    source: str
    """The statement as in the source (``{column}`` for the patient look-up's f-string)."""
    column: str | None = None
    proposed_index: str | None = None
    """For a look-up that scans: the index that would serve it (applied only to the bench's copy)."""

    @property
    def sql(self) -> str:
        return self.source.replace("{column}", self.column) if self.column else self.source


LOOKUPS: Final = (
    Lookup(
        "patient by INS index",
        "remember_patient (_find)",
        "SELECT * FROM patients WHERE {column} = ? ORDER BY id LIMIT 1",
        column="ins_index",
    ),
    Lookup(
        "patient by card index",
        "remember_patient (_find)",
        "SELECT * FROM patients WHERE {column} = ? ORDER BY id LIMIT 1",
        column="card_index",
    ),
    Lookup(
        "stored AMC rights",
        "stored_amc",
        "SELECT * FROM amc_rights WHERE patient_id = ? ORDER BY id DESC LIMIT 1",
    ),
    Lookup(
        "renewals dispensed",
        "dispensed_renewals",
        "SELECT renewal FROM dispensations WHERE prescription_id = ?",
    ),
    Lookup(
        "serial already dispensed",
        "serial_dispensed",
        "SELECT 1 FROM dispensation_lines WHERE gtin = ? AND serial = ?",
    ),
    Lookup("open batch", "_open_batch (record_claim)", "SELECT id, number FROM batches WHERE status = 'open'"),
    Lookup("claim by number", "(no caller yet: remittances, reprints)", "SELECT * FROM claims WHERE number = ?"),
    Lookup(
        "claims of a batch (per batch)",
        "close_batch, apply_acknowledgement",
        "SELECT number FROM claims WHERE batch_id = ?",
    ),
)


@dataclass
class LookupDb:
    path: Path
    sessions: int
    patients: int
    rows: dict[str, int]
    seconds: float
    size_bytes: int
    keys: dict[str, list[tuple[Any, ...]]]
    """Look-up name → parameters to time it with (hits and misses, as the counter meets them)."""


def _sealed_like(rng: random.Random, plaintext_len: int) -> bytes:
    """Bytes the size of a sealed field (version, nonce, ciphertext, tag): sealing bypassed for speed."""
    return rng.randbytes(1 + 12 + plaintext_len + 16)


def generate_lookup_db(path: Path, sessions: int, seed: int, chunk: int = 50_000) -> LookupDb:
    """A busy pharmacy's five years: patients, prescriptions, dispensations and their lines, claims,
    daily batches, mutuelle rights. The schema is the real one (migrations); blind indexes are real
    HMACs, sealed fields random bytes of the right size (same query shapes, no AES at generation)."""
    started = time.perf_counter()
    open_database(path).close()  # the real schema, WAL
    rng = random.Random(seed)
    cipher = FieldCipher(rng.randbytes(32))
    days = DAYS if sessions >= FIVE_YEARS_SESSIONS else max(1, round(DAYS * sessions / FIVE_YEARS_SESSIONS))
    n_patients = max(100, sessions // 15)
    epoch = START.timestamp() - days * 86400.0
    cips = [f"34009{300000 + 137 * i:08d}" for i in range(300)]

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("PRAGMA cache_size = -262144")
    keys: dict[str, list[tuple[Any, ...]]] = {lk.name: [] for lk in LOOKUPS}
    counts: Tally[str] = Tally()

    def insert(table: str, columns: str, values: list[tuple[Any, ...]]) -> None:
        if values:
            marks = ", ".join("?" * len(values[0]))
            conn.executemany(f"INSERT INTO {table}({columns}) VALUES ({marks})", values)  # noqa: S608
            counts[table] += len(values)

    # patients
    patients: list[tuple[Any, ...]] = []
    has_amc = [rng.random() < 0.7 for _ in range(n_patients)]
    for pid in range(1, n_patients + 1):
        nir = f"{rng.choice('12')}{rng.randrange(10**12, 10**13)}"
        birth = (START.date() - timedelta(days=rng.randrange(365, 95 * 365))).isoformat()
        card = cipher.index(f"{nir}|1|{birth}", "patients.card")
        ins = cipher.index(nir, "patients.ins") if rng.random() < 0.85 else None
        traits = cipher.index(f"NAME{pid}|FIRST|{nir[0]}|{birth}", "patients.traits")
        status = "QUAL" if ins else "PROV"
        created = epoch + rng.random() * days * 86400.0
        patients.append(
            (card, ins, traits, *(_sealed_like(rng, n) for n in (13, 13, 12, 16, 1, 10)), status, created, created)
        )
        if len(keys["patient by card index"]) < 5000:
            keys["patient by card index"].append((card,))
            if ins:
                keys["patient by INS index"].append((ins,))
    conn.execute("BEGIN")
    insert(
        "patients",
        "card_index, ins_index, traits_index, nir, matricule, birth_name, first_names, sex, birth_date,"
        " status, created_at, updated_at",
        patients,
    )
    conn.execute("COMMIT")

    # sessions, day by day: one batch per day (the last one still open)
    per_day = sessions / days
    open_rx: dict[int, tuple[str, int, int]] = {}  # patient → (prescription, renewals, last renewal)
    line_id = dispensation_id = 0
    claim_number = 0
    buffers: dict[str, list[tuple[Any, ...]]] = {
        t: [] for t in ("prescriptions", "dispensations", "dispensation_lines", "claims", "amc_rights", "batches")
    }

    def flush() -> None:
        conn.execute("BEGIN")
        insert("batches", "id, number, status, opened_at, closed_at", buffers["batches"])
        insert(
            "prescriptions",
            "prescription_id, patient_id, prescriber, prescribed_on, renewals, status, at",
            buffers["prescriptions"],
        )
        insert(
            "dispensations",
            "id, patient_id, prescription_id, operator_id, renewal, at",
            buffers["dispensations"],
        )
        insert(
            "dispensation_lines",
            "id, dispensation_id, line_no, cip13, gtin, serial, lot, expiry, total_cents, amo_cents, amc_cents,"
            " patient_cents",
            buffers["dispensation_lines"],
        )
        insert(
            "claims",
            "number, batch_id, dispensation_id, patient_id, total_cents, amo_cents, amc_cents, patient_cents,"
            " to_pay_cents, amo_tiers_payant, amc_tiers_payant, status, created_at",
            buffers["claims"],
        )
        insert(
            "amc_rights",
            "patient_id, amc_number, member_number, valid_from, valid_to, coverage_pct, accreditation, at",
            buffers["amc_rights"],
        )
        conn.execute("COMMIT")
        for values in buffers.values():
            values.clear()

    for day in range(days):
        opened = epoch + day * 86400.0 + 8 * 3600
        last_day = day == days - 1
        buffers["batches"].append(
            (day + 1, day + 1, "open" if last_day else "accepted", opened, None if last_day else opened + 11 * 3600)
        )
        if day % 10 == 0 and len(keys["claims of a batch (per batch)"]) < 5000:
            keys["claims of a batch (per batch)"].append((day + 1,))
        todays = int(per_day * (day + 1)) - int(per_day * day) if not last_day else sessions - claim_number
        for s in range(todays):
            at = opened + s * (11 * 3600 / max(1, todays))
            patient = 1 + int(n_patients * rng.random() ** 1.5)  # regulars come more often
            dispensation_id += 1
            claim_number += 1
            rx_id: str | None = None
            renewal = 0
            roll = rng.random()
            current = open_rx.get(patient)
            if current is not None and current[2] < current[1] and roll < 0.5:
                rx_id, renewals, renewal = current[0], current[1], current[2] + 1
                open_rx[patient] = (rx_id, renewals, renewal)
            elif roll < 0.85:
                rx_id = prescription_id(f"{rng.randrange(36**4):04X}"[-4:], dispensation_id)
                renewals = rng.choice((0, 0, 0, 0, 1, 2, 2, 5))
                open_rx[patient] = (rx_id, renewals, 0)
                day_on = (START.date() - timedelta(days=days - day + rng.randrange(0, 10))).isoformat()
                buffers["prescriptions"].append((rx_id, patient, "Dr X (RPPS)", day_on, renewals, "dispensed", at))
            buffers["dispensations"].append((dispensation_id, patient, rx_id, 1 + s % 4, renewal, at))
            if rx_id is not None and len(keys["renewals dispensed"]) < 10_000 and rng.random() < 0.05:
                keys["renewals dispensed"].append((rx_id,))
            total = 0
            for line_no in range(1, 1 + rng.choice((1, 1, 2, 2, 2, 3, 3, 4, 5))):
                line_id += 1
                cip13 = cips[int(len(cips) * rng.random() ** 2)]
                serial = f"{rng.getrandbits(40):010X}{line_id:08X}"  # random order, unique by construction
                price = rng.randrange(150, 4000)
                amo = price * 65 // 100
                amc = price - amo if has_amc[patient - 1] else 0
                expiry = (START.date() + timedelta(days=rng.randrange(-900, 900))).isoformat()
                buffers["dispensation_lines"].append(
                    (
                        line_id,
                        dispensation_id,
                        line_no,
                        cip13,
                        "0" + cip13,
                        serial,
                        f"L{line_id % 9973}",
                        expiry,
                        price,
                        amo,
                        amc,
                        price - amo - amc,
                    )
                )
                total += price
                if rng.random() < 0.01 and len(keys["serial already dispensed"]) < 5000:
                    keys["serial already dispensed"].append(("0" + cip13, serial))
            amo_total = total * 65 // 100
            amc_total = total - amo_total if has_amc[patient - 1] else 0
            rest = total - amo_total - amc_total
            buffers["claims"].append(
                (
                    claim_number,
                    day + 1,
                    dispensation_id,
                    patient,
                    total,
                    amo_total,
                    amc_total,
                    rest,
                    rest,
                    1,
                    int(amc_total > 0),
                    "pending" if last_day else "accepted",
                    at,
                )
            )
            if has_amc[patient - 1]:
                buffers["amc_rights"].append(
                    (patient, "88888888", _sealed_like(rng, 10), "2021-01-01", "2031-12-31", 100, "IDB0123456789", at)
                )
            if claim_number % 5000 == 0 and len(keys["claim by number"]) < 5000:
                keys["claim by number"].append((claim_number,))
            if claim_number % chunk == 0:
                flush()
    flush()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()

    # misses, as the counter meets them: a new box, a new prescription, a patient without mutuelle rights
    keys["serial already dispensed"] += [("03400930000120", f"NEW{i:012d}") for i in range(5000)]
    keys["renewals dispensed"] += [(prescription_id("NEWW", i),) for i in range(1, 5000)]
    keys["stored AMC rights"] = [(1 + int(n_patients * rng.random() ** 1.5),) for _ in range(5000)]
    keys["open batch"] = [()]
    for values in keys.values():
        rng.shuffle(values)
    return LookupDb(
        path=path,
        sessions=sessions,
        patients=n_patients,
        rows=dict(counts),
        seconds=time.perf_counter() - started,
        size_bytes=path.stat().st_size,
        keys=keys,
    )


def query_plan(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[str]:
    return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


def uses_index(plan: Sequence[str]) -> bool:
    """Every step searches through an index (or the rowid); no ``SCAN`` of a table."""
    return bool(plan) and all(
        step.startswith("SEARCH") and ("INDEX" in step or "INTEGER PRIMARY KEY" in step) for step in plan
    )


@dataclass
class LookupResult:
    lookup: Lookup
    times_ms: list[float]
    plan: list[str]
    found: int
    """How many of the timed look-ups returned a row."""
    with_proposed_index: bool = False

    @property
    def indexed(self) -> bool:
        return uses_index(self.plan)


def time_lookups(
    path: Path, keys: dict[str, list[tuple[Any, ...]]], samples: int, *, proposed: bool
) -> list[LookupResult]:
    """Each look-up ``samples`` times on a fresh connection with the store's settings, taking turns."""
    conn = connect(path)
    try:
        if proposed:
            for lookup in LOOKUPS:
                if lookup.proposed_index:
                    conn.execute(lookup.proposed_index.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS"))
        chosen = [lk for lk in LOOKUPS if not proposed or lk.proposed_index]
        results = {
            lk.name: LookupResult(lk, [], query_plan(conn, lk.sql, keys[lk.name][0]), 0, proposed) for lk in chosen
        }
        for lk in chosen:  # one untimed call each: statement cache
            conn.execute(lk.sql, keys[lk.name][0]).fetchall()
        for i in range(samples):
            for lk in chosen:
                params = keys[lk.name][i % len(keys[lk.name])]
                start = time.perf_counter_ns()
                found = conn.execute(lk.sql, params).fetchall()
                results[lk.name].times_ms.append(_ms(start))
                results[lk.name].found += bool(found)
        return list(results.values())
    finally:
        conn.close()


def format_lookups(results: Sequence[LookupResult]) -> str:
    cells = []
    for r in results:
        name = r.lookup.name + (" + proposed index" if r.with_proposed_index else "")
        cells.append(
            (
                name,
                r.lookup.caller if not r.with_proposed_index else (r.lookup.proposed_index or "").split(" ON ")[-1],
                f"{r.found}/{len(r.times_ms)}",
                f"{p50(r.times_ms):.3f}",
                f"{p95(r.times_ms):.3f}",
                _against(p95(r.times_ms), LOOKUP_LIMIT_MS),
                "index" if r.indexed else "SCAN",
            )
        )
    headers = ("look-up", "called by", "found", "p50 ms", "p95 ms", "p95 vs limit", "plan")
    return format_table(headers, cells, left=2)


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Report:
    sessions: SessionReport
    commits: list[CommitSeries]
    lookup_db: LookupDb
    lookups: list[LookupResult]
    proposed: list[LookupResult]
    workdir: str


def run_benchmark(args: argparse.Namespace) -> Report:
    parent = args.dir if args.dir is not None else None
    with tempfile.TemporaryDirectory(prefix="comptoir-bench-", dir=parent) as tmp:
        workdir = Path(tmp)
        (workdir / "session").mkdir()
        sessions, side, close = run_sessions(workdir / "session", args.sessions)
        try:
            if sessions.draft is None:
                raise RuntimeError("no session reached a claim: nothing to replay for the durable commits")
            commits = run_commits(side, sessions.draft, args.commits, args.rounds)
        finally:
            close()
        lookup_db = generate_lookup_db(workdir / "five-years.db", args.lookup_db_sessions, args.seed)
        lookups = time_lookups(lookup_db.path, lookup_db.keys, args.samples, proposed=False)
        proposed = time_lookups(lookup_db.path, lookup_db.keys, args.samples, proposed=True)
        return Report(sessions, commits, lookup_db, lookups, proposed, str(workdir))


def print_report(report: Report, args: argparse.Namespace, out: Callable[[str], None] = print) -> None:
    s = report.sessions
    ok = sum(r.claim is not None and r.to_pay_cents == 0 and not r.refused for r in s.runs)
    out(
        f"Counter session benchmark ({'quick' if args.quick else 'full'} run, seed {args.seed}); "
        f"files under {report.workdir} (same disk for every measure)."
    )
    out("")
    out(
        f"1. {len(s.runs)} apCV sessions (apCV → attestation → ePrescription → 3 boxes → validate → close) against "
        f"one sandbox on 127.0.0.1, real SQLite file, sandbox reset between sessions ({s.seconds:.1f} s)."
    )
    calls = ", ".join(f"{k} {v:g}" for k, v in sorted(s.http_calls.items()))
    out(f"   HTTP calls per session: {calls}. Sessions ending with a claim and nothing to pay: {ok}/{len(s.runs)}.")
    out("")
    out(format_sessions(s))
    refusals = [f"session {i}: {why}" for i, r in enumerate(s.runs, 1) for why in r.refused]
    for line in refusals[:10]:
        out(f"   refused: {line}")
    out("")
    out(
        f"2. Durable commits, {len(report.commits[0].times_ms)} of each, taking turns in {args.rounds} rounds; "
        "a claim is one transaction (prescription, dispensation, 3 lines, claim, number, batch, execution data, "
        "audit); the raw peer is one claims-like row per transaction."
    )
    out("")
    out(format_commits(report.commits))
    durable, raw = report.commits[0], report.commits[1]
    out(f"   record_claim = {durable.per_second / raw.per_second:.2f} × raw fsync'd inserts (synchronous=FULL).")
    out("")
    db = report.lookup_db
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(db.rows.items()))
    out(
        f"3. Look-ups on a generated database of {db.sessions:,} sessions ({db.patients:,} patients; {rows}): "
        f"{db.size_bytes / 2**20:.0f} MiB, generated in {db.seconds:.1f} s; {args.samples} timed look-ups each, "
        f"warm OS cache, fresh connection; limit {LOOKUP_LIMIT_MS:g} ms (p95)."
    )
    out("")
    out(format_lookups(report.lookups))
    scans = [r for r in report.lookups if not r.indexed]
    if scans:
        out("")
        out("   Full scans (missing index, schema not changed here; measured again with the index on the bench copy):")
        for r in scans:
            out(f"   - {r.lookup.name}: {r.lookup.sql}")
            out(f"     plan: {' / '.join(r.plan)}")
        if report.proposed:
            out("")
            out(format_lookups(report.proposed))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke run: few sessions, 20,000-session database")
    parser.add_argument("--sessions", type=int, default=None, help="sessions played (default 100, quick 5)")
    parser.add_argument(
        "--lookup-db-sessions",
        type=int,
        default=None,
        help="sessions in the generated database (600,000; quick 20,000)",
    )
    parser.add_argument("--commits", type=int, default=None, help="commits of each kind (default 300, quick 30)")
    parser.add_argument("--rounds", type=int, default=None, help="turns the commit kinds take (default 5, quick 3)")
    parser.add_argument("--samples", type=int, default=None, help="timed calls per look-up (default 200, quick 50)")
    parser.add_argument("--seed", type=int, default=2024, help="database generator seed")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary files go (default: system temp)")
    args = parser.parse_args(argv)
    defaults = {
        "sessions": (100, 5),
        "lookup_db_sessions": (FIVE_YEARS_SESSIONS, 20_000),
        "commits": (300, 30),
        "rounds": (5, 3),
        "samples": (200, 50),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report = run_benchmark(args)
    print_report(report, args)
    print()
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
