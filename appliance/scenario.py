"""`comptoir scenario FILE`: play a scripted counter session against the sandbox and print a transcript.

A script is JSON lines (format in ``docs/scenarios.md``): scans, card insert/remove, intents
(touches), clock advances, network down/up, and ``expect`` lines checked against the state. The
runner is a composition root: it wires a real SQLite store, the real sandbox HTTP server (started
here unless ``--sandbox URL`` is given) and the HTTP teleservice adapter to the core workflow.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from appliance.codes.kinds import CodeKind
from appliance.codes.reader import CodeReader
from appliance.domain import Role
from appliance.psc import ProfessionalIdentity, PscError
from appliance.teleservices import Teleservices
from appliance.workflow.events import CardInserted, CardRemoved, Event, Intent, NetworkChanged, Scanned, Tick
from appliance.workflow.machine import Counter, Outcome
from appliance.workflow.session import Step

EXPECTED_KINDS = {
    Step.ATTRACT: frozenset({CodeKind.APCV}),
    Step.RIGHTS: frozenset({CodeKind.EPRESCRIPTION}),
    Step.PRESCRIPTION: frozenset({CodeKind.EPRESCRIPTION}),
}
START = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)
"""Scenario clocks start on the sandbox population's reference day."""


class ScriptError(ValueError):
    """A script line the runner cannot understand (exit status 2)."""


class ScenarioClock:
    def __init__(self, start: datetime = START) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now


class NetworkSwitch:
    """The teleservices as seen through the box's network link: ``down`` sends every call to a closed
    port on 127.0.0.1, so the adapter meets a real "connection refused"."""

    def __init__(self, online: Teleservices, offline: Teleservices) -> None:
        self._online, self._offline = online, offline
        self.up = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._online if self.up else self._offline, name)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Transcript:
    entries: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _get(state: dict[str, Any], path: str) -> Any:
    value: Any = state
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyError(path)
    return value


def check_expectations(expected: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Differences between an ``expect`` line and the state, in words (empty when it holds).

    ``"path": value`` compares equal; ``"path~": "text"`` checks that the value contains the text.
    """
    problems = []
    for raw_path, wanted in expected.items():
        contains = raw_path.endswith("~")
        path = raw_path.rstrip("~")
        try:
            actual = _get(state, path)
        except KeyError:
            problems.append(f"{path}: not in the state (expected {json.dumps(wanted, ensure_ascii=False)})")
            continue
        if contains:
            if actual is None or str(wanted) not in str(actual):
                problems.append(f"{path}: expected to contain {wanted!r}, got {json.dumps(actual, ensure_ascii=False)}")
        elif actual != wanted:
            shown = json.dumps(wanted, ensure_ascii=False), json.dumps(actual, ensure_ascii=False)
            problems.append(f"{path}: expected {shown[0]}, got {shown[1]}")
    return problems


class ScenarioRunner:
    """Plays script lines one by one against a :class:`Counter`."""

    def __init__(
        self,
        counter: Counter,
        reader: CodeReader,
        clock: ScenarioClock,
        network: NetworkSwitch,
        deliver: Callable[[], dict[str, Any]],
        add_operator: Callable[[str, Role, str, str | None], None],
        db_state: Callable[[], dict[str, Any]],
        set_fault: Callable[[Any], None],
        mail_state: Callable[[], dict[str, Any]] | None = None,
        *,
        psc_login: Callable[[str, bool], ProfessionalIdentity] | None = None,
    ) -> None:
        self.counter = counter
        self.reader = reader
        self.clock = clock
        self.network = network
        self.deliver = deliver
        self.add_operator = add_operator
        self.db_state = db_state
        self.set_fault = set_fault
        self.mail_state = mail_state
        self.psc_login = psc_login
        """A whole e-CPS login against the sandbox Pro Santé Connect, its phone answering yes or no."""
        self.last: Outcome | None = None
        self.transcript = Transcript()

    def state(self) -> dict[str, Any]:
        counter = self.counter
        outcome = counter.outcome()
        if counter.step is Step.ATTRACT and counter.last_outcome is not None:
            outcome = counter.last_outcome
        return {
            "step": counter.step.value,
            "accepted": self.last.accepted if self.last else None,
            "message": self.last.message if self.last else None,
            "view": counter.view(),
            "outcome": outcome,
            "db": self.db_state(),
            "mail": self.mail_state() if self.mail_state is not None else {},
        }

    def play(self, number: int, line: dict[str, Any]) -> None:
        if "expect" in line:
            problems = check_expectations(dict(line["expect"]), self.state())
            for problem in problems:
                self.transcript.failures.append(f"line {number}: {problem}")
            self.transcript.entries.append({"line": number, "expect": line["expect"], "holds": not problems})
            return
        if "comment" in line and len(line) == 1:
            return
        if "operator" in line and "intent" not in line:
            spec = line["operator"]
            rpps = spec.get("rpps")
            self.add_operator(
                str(spec["name"]), Role(spec["role"]), str(spec["pin"]), None if rpps is None else str(rpps)
            )
            entry = {"line": number, "operator": spec["name"], "role": spec["role"]}
            if rpps is not None:
                entry["rpps"] = rpps
            self.transcript.entries.append(entry)
            return
        if "fault" in line:
            self.set_fault(line["fault"])
            self.transcript.entries.append({"line": number, "fault": line["fault"]})
            return
        if "sync" in line:
            report = self.deliver()
            self.transcript.entries.append({"line": number, "sync": report})
            return
        if "psc" in line:
            self._psc(number, line["psc"])
            return
        event = self._event(line)
        self.last = self.counter.handle(event)
        if isinstance(event, NetworkChanged) and event.online:
            report = self.deliver()
            self.transcript.entries.append(
                {
                    "line": number,
                    "event": line,
                    "accepted": True,
                    "sync": report,
                    "step": self.counter.step.value,
                }
            )
            return
        self.transcript.entries.append(
            {
                "line": number,
                "event": _printable(line),
                "accepted": self.last.accepted,
                "step": self.last.step.value,
                "message": self.last.message,
            }
        )

    def _psc(self, number: int, spec: Any) -> None:
        """An e-CPS login played whole: the CIBA request, the phone's answer, the polling and the ID
        token's checks, then ``psc_login`` with the RPPS the token proves (nothing when it fails)."""
        if not isinstance(spec, dict) or not isinstance(spec.get("rpps"), str):
            raise ScriptError('psc: {"rpps": "11 digits", "approve": true or false}')
        if self.psc_login is None:
            raise ScriptError("psc: this run has no Pro Santé Connect")
        try:
            identity = self.psc_login(spec["rpps"], bool(spec.get("approve", True)))
        except PscError as refusal:
            self.last = Outcome(False, self.counter.step, refusal.message)
        else:
            self.last = self.counter.handle(Intent("psc_login", {"rpps": identity.rpps, "name": identity.display_name}))
        self.transcript.entries.append(
            {
                "line": number,
                "psc": spec,
                "accepted": self.last.accepted,
                "step": self.last.step.value,
                "message": self.last.message,
            }
        )

    def _event(self, line: dict[str, Any]) -> Event:
        if "scan" in line or "scan_b64" in line or "box" in line:
            raw = _scan_bytes(line)
            code = self.reader.read(raw, expect=EXPECTED_KINDS.get(self.counter.step))
            return Scanned(code)
        if "card" in line:
            if line["card"] == "remove":
                return CardRemoved()
            if line["card"] == "insert":
                return _card(line)
            raise ScriptError(f"card must be insert or remove, not {line['card']!r}")
        if "intent" in line:
            args = {k: v for k, v in line.items() if k != "intent"}
            return Intent(str(line["intent"]), args)
        if "advance" in line:
            self.clock.now += float(line["advance"])
            return Tick()
        if "network" in line:
            up = line["network"] == "up"
            if line["network"] not in ("up", "down"):
                raise ScriptError("network must be up or down")
            self.network.up = up
            return NetworkChanged(up)
        raise ScriptError(f"unknown script line: {json.dumps(line, ensure_ascii=False)}")


def _printable(line: dict[str, Any]) -> dict[str, Any]:
    """The event as shown in the transcript: a PIN never appears."""
    return {k: ("****" if k == "pin" else v) for k, v in line.items()}


def _scan_bytes(line: dict[str, Any]) -> bytes:
    if "scan_b64" in line:
        return base64.b64decode(line["scan_b64"])
    if "box" in line:
        box = line["box"]
        expiry = date.fromisoformat(box.get("expiry", "2027-12-31")).strftime("%y%m%d")
        gtin = "0" + box["cip13"]
        return f"01{gtin}17{expiry}10{box.get('lot', 'LOT1')}\x1d21{box['serial']}".encode("ascii")
    return str(line["scan"]).encode("latin-1")


def _card(line: dict[str, Any]) -> CardInserted:
    from sandbox.population import CASES, PEOPLE

    case = CASES.get(str(line.get("case", "")))
    if case is None:
        raise ScriptError(f"unknown population case {line.get('case')!r}")
    members = [PEOPLE[key] for key in case.members]
    data_on = date.fromisoformat(line["data_on"]) if "data_on" in line else START.date()
    return CardInserted(
        beneficiaries=tuple(p.beneficiary for p in members),
        amo={p.beneficiary.nir: p.card_amo for p in members},
        data_on=data_on,
    )


def read_script(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"line {number}: not JSON ({exc.msg})") from None
        if not isinstance(line, dict):
            raise ScriptError(f"line {number}: a script line is a JSON object")
        yield number, line


@contextlib.contextmanager
def _sandbox(url: str | None, population: Any = None, today: Callable[[], date] | None = None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    from sandbox.server import SandboxServer

    options: dict[str, Any] = {}
    if population is not None:
        options["population"] = population
    if today is not None:
        options["today"] = today
    server = SandboxServer(port=0, **options)
    base = server.start()
    try:
        yield base
    finally:
        server.stop()


@dataclass
class CounterRig:
    """A :class:`Counter` wired to a real SQLite store, the sandbox over HTTP and a network switch.

    Shared by the scenario runner and the kiosk's composition root so both drive the very same core.
    """

    counter: Counter
    db: Any
    records: Any
    clock: Callable[[], float]
    network: NetworkSwitch
    base_url: str
    mail: Any = None
    """The SMTP client of the pharmacy's MSSanté mailbox (:class:`sync.mssante.SmtpSecureMail`), None
    when the sandbox operator could not start (aiosmtpd, a development dependency, missing)."""
    mailbox: Any = None
    """The sandbox MSSanté operator (:class:`sandbox.mssante.SandboxMailServer`) the mail goes to."""

    def add_operator(self, name: str, role: Role, pin: str, rpps: str | None = None) -> None:
        """Create an operator unless one of that name exists (scripts and demos replay safely), and
        record the RPPS of their CPS when given (the CPS login maps a card to them by it)."""
        from appliance.store import operators

        existing = {op.name: op.id for op in operators.list_operators(self.db)}
        operator_id = existing.get(name)
        if operator_id is None:
            operator_id = operators.add_operator(self.db, name, role, pin)
        if rpps is not None:
            operators.set_rpps(self.db, operator_id, rpps, by=None)

    def psc_login(self, rpps: str, approve: bool) -> ProfessionalIdentity:
        """An e-CPS login against the sandbox Pro Santé Connect with the kiosk's own client: the
        backchannel request, the phone validating (or refusing), the polling, the ID token verified."""
        import httpx

        from sandbox.psc import CLIENT_ID, CLIENT_SECRET, ISSUER_PATH
        from sync.psc import PscClient, PscSettings

        settings = PscSettings(self.base_url + ISSUER_PATH, CLIENT_ID, CLIENT_SECRET, timeout_s=2.0, max_wait_s=30.0)
        with PscClient(settings) as client:
            pending = client.start(rpps)
            answer = f"{self.base_url}/_sandbox/psc/{'approve' if approve else 'deny'}"
            httpx.post(answer, json={"auth_req_id": pending.auth_req_id}, timeout=5.0).raise_for_status()
            return client.wait(pending)

    def operator_names(self) -> list[str]:
        """Active operators, by name, for the kiosk's login pad."""
        from appliance.store import operators

        return [op.name for op in operators.list_operators(self.db)]

    def deliver(self) -> dict[str, Any]:
        """Move the outbox now (when the network is up)."""
        from appliance.delivery import deliver_pending

        if not self.network.up:
            return {"delivered": 0, "deferred": 0, "refused": 0, "offline": True}
        report = deliver_pending(
            self.records,
            self.network,
            clock=self.clock,
            qualification_visits=self.counter.settings.qualification_visits,
        )
        if self.mail is not None:
            from appliance.delivery import deliver_mail
            from appliance.messaging import MailSettings
            from sandbox.mssante import SANDBOX_SENDER

            products = self.counter.products
            sent = deliver_mail(
                self.records,
                self.mail,
                MailSettings(sender=SANDBOX_SENDER),
                clock=self.clock,
                product_name=lambda cip13: p.name if (p := products.get(cip13)) else None,
            )
            report.delivered += sent.delivered
            report.deferred += sent.deferred
            report.refused += sent.refused
        return {"delivered": report.delivered, "deferred": report.deferred, "refused": report.refused}

    def mail_state(self) -> dict[str, Any]:
        """What the sandbox MSSanté operator received, in order: ``count`` and ``messages`` (``from``,
        ``to``, ``subject``, ``text``, ``attachments`` by file name, the ``X-MSS-*`` ``headers``, the
        ``client`` certificate's name)."""
        if self.mailbox is None:
            return {"count": 0, "messages": []}
        messages = []
        for received in self.mailbox.messages():
            mail = received.message()
            body = mail.get_body(("plain",))
            messages.append(
                {
                    "from": received.mail_from,
                    "to": ",".join(received.rcpt_tos),
                    "subject": str(mail["Subject"] or ""),
                    "text": str(body.get_content()).replace("\r\n", "\n") if body is not None else "",
                    "attachments": [part.get_filename() for part in mail.iter_attachments()],
                    "headers": {k: str(v) for k, v in mail.items() if k.upper().startswith("X-MSS-")},
                    "client": received.client,
                }
            )
        return {"count": len(messages), "messages": messages}

    def db_state(self) -> dict[str, Any]:
        from appliance.store import audit

        conn = self.db.conn
        numbers = [int(r[0]) for r in conn.execute("SELECT number FROM claims ORDER BY number")]
        names = {int(i): str(n) for i, n in conn.execute("SELECT id, name FROM operators")}
        acts: dict[str, list[str | None]] = {}
        for entry in audit.entries(self.db, limit=100_000):
            acts.setdefault(entry.action.replace(".", "_"), []).append(names.get(entry.operator_id or 0))
        return {
            "acts": acts,
            "identity_checks": [
                {"patient": r[0], "outcome": r[1], "document": r[2], "guardian_document": r[3], "operator": names[r[4]]}
                for r in conn.execute(
                    "SELECT patient_id, outcome, document, guardian_document, operator_id FROM identity_checks"
                    " ORDER BY id"
                )
            ],
            "doubtful": {str(r[0]): bool(r[1]) for r in conn.execute("SELECT id, doubtful FROM patients")},
            "claims": conn.execute("SELECT count(*) FROM claims").fetchone()[0],
            "claim_numbers": numbers,
            "outbox_pending": conn.execute("SELECT count(*) FROM outbox WHERE delivered_at IS NULL").fetchone()[0],
            "rejected_claims": conn.execute("SELECT count(*) FROM claims WHERE status = 'rejected'").fetchone()[0],
            "accepted_claims": conn.execute("SELECT count(*) FROM claims WHERE status = 'accepted'").fetchone()[0],
            "patient_status": {str(r[0]): r[1] for r in conn.execute("SELECT id, status FROM patients")},
            "prescriptions_dispensed": conn.execute(
                "SELECT count(*) FROM prescriptions WHERE status = 'dispensed'"
            ).fetchone()[0],
            "rejections": [
                {"reason": r[0], "action": r[1]} for r in conn.execute("SELECT reason, action FROM rejections")
            ],
            "executions_completed": conn.execute("SELECT count(*) FROM execution_data WHERE step2 = 'sent'").fetchone()[
                0
            ],
            "dmp_sent": conn.execute("SELECT count(*) FROM dmp_documents WHERE status = 'sent'").fetchone()[0],
            "dmp_documents": conn.execute("SELECT count(*) FROM dmp_documents").fetchone()[0],
            "secure_messages": [
                {"kind": r[0], "status": r[1]}
                for r in conn.execute("SELECT kind, status FROM secure_messages ORDER BY id").fetchall()
            ],
            "batches": [
                {
                    "number": r[0],
                    "status": r[1],
                    "claims": [
                        c[0]
                        for c in conn.execute(
                            "SELECT number FROM claims WHERE batch_id = ? ORDER BY number", (r[2],)
                        ).fetchall()
                    ],
                }
                for r in conn.execute("SELECT number, status, id FROM batches ORDER BY number").fetchall()
            ],
            "claim_batches": {str(n): self.records.claim_batches(n) for n in numbers},
            "resubmissions": conn.execute("SELECT count(*) FROM claim_resubmissions").fetchone()[0],
            "dp_consents": [
                {"patient": r[0], "agreed": bool(r[1]), "operator": names[r[2]]}
                for r in conn.execute("SELECT patient_id, agreed, operator_id FROM dp_consents ORDER BY id")
            ],
            "dp_fed": conn.execute(
                "SELECT count(*) FROM outbox WHERE stream = 'dp' AND delivered_at IS NOT NULL"
                " AND json_extract(response, '$.refused') IS NULL"
            ).fetchone()[0],
            "dp_pending": conn.execute(
                "SELECT count(*) FROM outbox WHERE stream = 'dp' AND delivered_at IS NULL"
            ).fetchone()[0],
        }

    def set_fault(self, fault: Any) -> None:
        """Switch a fault on in the sandbox (latency, 5xx, hang, lost response) or clear them all."""
        import httpx

        if fault == "clear":
            httpx.delete(f"{self.base_url}/_sandbox/faults", timeout=5.0).raise_for_status()
        else:
            httpx.post(f"{self.base_url}/_sandbox/faults", json=fault, timeout=5.0).raise_for_status()


@contextlib.contextmanager
def counter_rig(
    *,
    db_path: Path | None,
    key_path: Path | None,
    sandbox_url: str | None,
    clock: Callable[[], float] | None = None,
    population: Any = None,
    sandbox_today: Callable[[], date] | None = None,
    timeout: float = 2.0,
    mail: bool = True,
) -> Iterator[CounterRig]:
    """Open (or create) the database and key, start the sandbox unless given, and build the counter.

    With ``mail``, the sandbox MSSanté operator (an SMTP server requiring STARTTLS and a client
    certificate) is started too and :meth:`CounterRig.deliver` sends the secure messages to it.
    """
    from appliance.products import DEFAULT_PRODUCTS_PATH, ProductTable
    from appliance.store.database import open_database
    from appliance.store.records import CounterRecords
    from appliance.store.sealing import FieldCipher
    from sync.teleservices_http import HttpTeleservices

    with contextlib.ExitStack() as stack:
        if db_path is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="comptoir-scenario-")))
            db_path = workdir / "counter.db"
        key_path = key_path or db_path.with_name(db_path.name + ".key")
        if not key_path.exists():
            FieldCipher.create_key(key_path)
        cipher = FieldCipher.load(key_path)
        db = open_database(db_path, key_file=key_path)
        stack.callback(db.close)
        _sandbox_pharmacy(db)
        the_clock: Callable[[], float] = clock if clock is not None else ScenarioClock()
        base_url = stack.enter_context(_sandbox(sandbox_url, population, sandbox_today))
        online = HttpTeleservices(base_url, timeout=timeout)
        offline = HttpTeleservices(f"http://127.0.0.1:{_closed_port()}", timeout=0.5)
        network = NetworkSwitch(online, offline)
        records = CounterRecords(db, cipher, the_clock)
        counter = Counter(records, network, ProductTable.load(DEFAULT_PRODUCTS_PATH), clock=the_clock)
        mail_client, mailbox = _sandbox_mail(stack, timeout) if mail else (None, None)
        yield CounterRig(counter, db, records, the_clock, network, base_url, mail_client, mailbox)


def _sandbox_mail(stack: contextlib.ExitStack, timeout: float) -> tuple[Any, Any]:
    """The sandbox MSSanté operator on 127.0.0.1 and the pharmacy's client for it (its own test CA),
    or (None, None) without aiosmtpd: the secure messages then wait in the outbox."""
    try:
        from sandbox.mssante import SANDBOX_SENDER, SandboxMailServer
    except ImportError:
        return None, None
    from sync.mssante import SmtpSecureMail, SmtpSettings

    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="comptoir-mssante-")))
    server = SandboxMailServer(directory)
    server.start()
    stack.callback(server.stop)
    issued = server.client_certificate()
    settings = SmtpSettings(
        host="127.0.0.1",
        port=server.port,
        sender=SANDBOX_SENDER,
        ca=server.ca,
        cert=issued.cert,
        key=issued.key,
        timeout=max(timeout, 2.0),
    )
    return SmtpSecureMail(settings), server


def _sandbox_pharmacy(db: Any) -> None:
    """Give a database that has none the sandbox's test pharmacy (FINESS and name): the DMP documents
    name the pharmacy that wrote them, and the rig always talks to the sandbox."""
    from appliance.store.database import get_setting, set_setting, transaction
    from sandbox.dmp_registry import TEST_PHARMACY

    if get_setting(db, "finess") is not None:
        return
    with transaction(db) as conn:
        for key, value in TEST_PHARMACY.items():
            if conn.execute("SELECT 1 FROM pharmacy WHERE key = ?", (key,)).fetchone() is None:
                set_setting(conn, key, value)


def run_scenario(
    script: Path,
    *,
    db_path: Path | None,
    key_path: Path | None,
    sandbox_url: str | None,
    out: Callable[[str], None] = print,
) -> int:
    """Play ``script``; 0 when every expectation holds, 1 when one does not, 2 for a bad script."""
    try:
        lines = list(read_script(script))
    except (OSError, ScriptError) as exc:
        print(f"comptoir scenario: {exc}", file=sys.stderr)
        return 2
    clock = ScenarioClock()
    with counter_rig(db_path=db_path, key_path=key_path, sandbox_url=sandbox_url, clock=clock) as rig:
        runner = ScenarioRunner(
            rig.counter,
            CodeReader(),
            clock,
            rig.network,
            rig.deliver,
            rig.add_operator,
            rig.db_state,
            rig.set_fault,
            mail_state=rig.mail_state,
            psc_login=rig.psc_login,
        )
        try:
            for number, line in lines:
                runner.play(number, line)
        except (ScriptError, KeyError, TypeError, ValueError) as exc:
            print(f"comptoir scenario: line {number}: {exc}", file=sys.stderr)
            return 2
        final = runner.state()
        out(
            json.dumps(
                {
                    "transcript": runner.transcript.entries,
                    "outcome": final["outcome"],
                    "failures": runner.transcript.failures,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        for failure in runner.transcript.failures:
            print(f"expectation failed: {failure}", file=sys.stderr)
        return 1 if runner.transcript.failures else 0
    return 2  # unreachable: counter_rig does not swallow exceptions
