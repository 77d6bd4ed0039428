"""Secure messages (MSSanté) through the sync process to a real SMTP server on 127.0.0.1.

The operator is :class:`sandbox.mssante.SandboxMailServer` (aiosmtpd): STARTTLS required, a client
certificate from the test CA required in the handshake, closed mailboxes refused with 550. The
counter sessions run on the real workflow against the sandbox teleservices (``counter_rig``); the
mail leaves through ``comptoir sync``'s :class:`~sync.service.SyncService` configured by its TOML.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from appliance.codes.reader import CodeReader
from appliance.messaging import xdm_files
from appliance.scenario import START, CounterRig, ScenarioClock, ScenarioRunner, counter_rig
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from sandbox.backoffice.pki import Pki
from sandbox.mssante import SandboxMailServer
from sandbox.population import PEOPLE
from sync.mssante import SmtpSecureMail, SmtpSettings
from sync.service import ConfigError, SyncService, load_config

SENDER = "officine@pharmacie-test.mssante.fr"


def _matricule(key: str) -> str:
    found = PEOPLE[key].ins
    assert found is not None
    return found.matricule


DURAND_MATRICULE = _matricule("durand")
DURAND_BOX = f"{DURAND_MATRICULE}@patient.mssante.fr"
VIDAL_BOX = "helene.vidal@medecin.mssante.fr"
LOGIN: list[dict[str, Any]] = [
    {"operator": {"name": "alice", "role": "pharmacien", "pin": "2468"}},
    {"intent": "login", "operator": "alice", "pin": "2468"},
]


def durand(serial: str) -> list[dict[str, Any]]:
    """Marie-Claire Durand by apCV (qualified INS), her ePrescription by Dr Vidal, up to the payment."""
    return [
        {"scan": "APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE"},
        {"scan": "AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"},
        {"scan": "EP7K2Q-9XWM-4TDA-LR8C"},
        {"intent": "confirm_prescription"},
        {"box": {"cip13": "3400930000120", "serial": f"{serial}1", "expiry": "2027-05-31"}},
        {"box": {"cip13": "3400930000120", "serial": f"{serial}2", "expiry": "2027-05-31"}},
        {"box": {"cip13": "3400930000649", "serial": f"{serial}3", "expiry": "2027-09-30"}},
        {"intent": "continue"},
        {"intent": "validate", "pin": "2468"},
    ]


RECUP: list[dict[str, Any]] = [
    {"card": "insert", "case": "insi-two"},
    {"intent": "choose_beneficiary", "index": 0},
    {"intent": "choose_identity", "index": 0},
    {"intent": "document_refused"},
    {"scan": "EP8DCI-5PCM-1DBS-7DCI"},
    {"intent": "confirm_prescription"},
    {"box": {"cip13": "3400930000489", "serial": "RCP0001"}},
    {"intent": "assign_box", "line": 1},
    {"box": {"cip13": "3400930002599", "serial": "RCP0002"}},
    {"intent": "continue"},
    {"intent": "validate", "pin": "2468"},
]


@dataclasses.dataclass
class Counter:
    rig: CounterRig
    runner: ScenarioRunner
    db: Path

    def play(self, *lines: dict[str, Any]) -> Any:
        for number, line in enumerate(lines, start=1):
            self.runner.play(number, line)
            last = self.runner.last
            if last is not None and "intent" in line and line["intent"] not in ("prescriber_summary",):
                assert last.accepted, (line, last.message)
        return self.runner.last

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def counter(tmp_path: Path) -> Iterator[Counter]:
    clock = ScenarioClock()
    db = tmp_path / "counter.db"
    with counter_rig(db_path=db, key_path=None, sandbox_url=None, clock=clock, mail=False) as rig:
        runner = ScenarioRunner(
            rig.counter, CodeReader(), clock, rig.network, rig.deliver, rig.add_operator, rig.db_state, rig.set_fault
        )
        box = Counter(rig, runner, db)
        box.play(*LOGIN)
        yield box


@pytest.fixture
def operator(tmp_path: Path, pki: Pki) -> Iterator[SandboxMailServer]:
    server = SandboxMailServer(tmp_path / "operator", pki)
    server.start()
    yield server
    server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = START.timestamp()

    def __call__(self) -> float:
        return self.now


def write_config(path: Path, db: Path, operator: SandboxMailServer, **mssante: Any) -> Path:
    client = operator.client_certificate()
    table: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": operator.port,
        "sender": SENDER,
        "ca": str(operator.ca),
        "cert": str(client.cert),
        "key": str(client.key),
        "timeout": 5.0,
    } | mssante
    lines = ["[store]", f'db = "{db}"', f'key = "{db}.key"', "", "[mssante]"]
    for name, value in table.items():
        if value is None:
            continue
        lines.append(f"{name} = {value}" if isinstance(value, int | float) else f'{name} = "{value}"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sync(tmp_path: Path, counter: Counter, operator: SandboxMailServer, clock: Clock | None = None) -> SyncService:
    return SyncService(load_config(write_config(tmp_path / "sync.toml", counter.db, operator)), clock=clock or Clock())


def received(operator: SandboxMailServer) -> list[EmailMessage]:
    return [m.message() for m in operator.messages()]


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


# ---------------------------------------------------------------------------------- the patient


def test_the_receipt_of_a_qualified_patient_reaches_their_mailbox_over_starttls_with_the_pharmacy_certificate(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    counter.play(*durand("RCT"), {"intent": "close"})
    receipt = counter.rig.counter.last_outcome["receipt"]  # type: ignore[index]
    service = sync(tmp_path, counter, operator)
    try:
        report = service.run_pass()
    finally:
        service.close()
    assert report.delivered == 1 and report.deferred == 0
    [got] = operator.messages()
    assert got.rcpt_tos == (DURAND_BOX,) and got.mail_from == SENDER
    assert got.client == "pharmacie-bac-a-sable", "the pharmacy's certificate was presented in the handshake"
    mail = got.message()
    assert mail.get_content_type() == "multipart/mixed"
    assert mail["To"] == DURAND_BOX and mail["From"] == SENDER
    assert mail["Subject"] == "Votre facture n° 1 – Pharmacie du Bac à sable"
    assert mail["X-MSS-MES"] == "FIN", "nobody reads the counter's mailbox: the patient cannot answer"
    assert "\n".join(receipt) in text_of(mail), "the receipt lines as the kiosk showed them"
    assert receipt[0] == "Facture n° 1" and receipt[-1] == "Réglé : 0,00 €"
    assert counter.query("SELECT kind, status FROM secure_messages") == [("receipt", "sent")]
    assert counter.query("SELECT count(*) FROM outbox WHERE stream = 'mssante' AND delivered_at IS NULL") == [(0,)]


def test_a_patient_whose_identity_is_only_retrieved_gets_no_mail(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    counter.play(*RECUP)
    assert counter.rig.counter.outcome()["ins_status"] == "RECUP"
    refused = counter.play({"intent": "prescriber_summary", "agreed": True})
    assert not refused.accepted and refused.message == "Identité non qualifiée : pas de messagerie sécurisée"
    counter.play({"intent": "close"})
    service = sync(tmp_path, counter, operator)
    try:
        service.run_pass()
    finally:
        service.close()
    assert counter.query("SELECT count(*) FROM secure_messages") == [(0,)]
    assert operator.messages() == []


def test_a_dmp_document_goes_to_the_patient_as_an_ihe_xdm_archive_unless_hidden_from_them(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    counter.play(
        *durand("DMP"),
        {"intent": "dmp_document", "kind": "vaccination", "visibility": "all"},
        {"intent": "dmp_document", "kind": "pharmaceutical-interview", "visibility": "hidden-from-patient"},
        {"intent": "close"},
    )
    service = sync(tmp_path, counter, operator)
    try:
        service.run_pass()
    finally:
        service.close()
    assert counter.query("SELECT kind, status FROM secure_messages ORDER BY id") == [
        ("receipt", "sent"),
        ("dmp-document", "sent"),
    ]
    receipt, note = received(operator)
    assert [m["To"] for m in (receipt, note)] == [DURAND_BOX, DURAND_BOX]
    assert note["Subject"] == "XDM/1.0/DDM+Note de vaccination DURAND Marie 19/08/1982"
    assert note["X-MSS-CODECDA"] == "87273-9" and note["X-MSS-INS"] == "O"
    [archive] = list(note.iter_attachments())
    assert archive.get_filename() == "IHE_XDM.zip" and archive.get_content_type() == "application/zip"
    files = xdm_files(archive.get_content())
    assert set(files) == {"INDEX.HTM", "README.TXT", "IHE_XDM/SUBSET01/METADATA.XML", "IHE_XDM/SUBSET01/DOC0001.XML"}
    cda: bytes = files["IHE_XDM/SUBSET01/DOC0001.XML"]
    assert b"87273-9" in cda and DURAND_MATRICULE.encode() in cda
    metadata = files["IHE_XDM/SUBSET01/METADATA.XML"]
    assert b'<rim:Slot name="URI"><rim:ValueList><rim:Value>DOC0001.XML</rim:Value>' in metadata
    assert f"<rim:Value>{len(cda)}</rim:Value>".encode() in metadata
    assert "Note de vaccination" in text_of(note)


# ---------------------------------------------------------------------------------- the prescriber


def test_the_prescriber_gets_the_dispensing_summary_only_after_the_patient_agreed(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    counter.play(*durand("PRS"))
    declined = counter.play({"intent": "prescriber_summary", "agreed": False})
    assert declined.accepted
    service = sync(tmp_path, counter, operator)
    try:
        service.run_pass()
        assert [m["To"] for m in received(operator)] == [DURAND_BOX], "declined: the receipt only"
        agreed = counter.play({"intent": "prescriber_summary", "agreed": True})
        assert agreed.accepted and agreed.message == "Synthèse envoyée au prescripteur"
        counter.play({"intent": "close"})
        service.run_pass()
    finally:
        service.close()
    summary = received(operator)[1]
    assert summary["To"] == VIDAL_BOX and "X-MSS-MES" not in summary
    assert summary["Subject"] == "Synthèse de dispensation DURAND Marie 19/08/1982"
    text = text_of(summary)
    assert f"INS : {DURAND_MATRICULE}" in text
    assert "Ordonnance EP7K2Q-9XWM-4TDA-LR8C du 10/06/2026" in text
    assert "- ligne 1 (DOLIPRANE 1000 mg cp B/8) : DOLIPRANE 1000 mg cp B/8 ×2" in text
    assert counter.query("SELECT prescriber_mailbox FROM prescriptions") == [(VIDAL_BOX,)]


# ---------------------------------------------------------------------------------- failures


def test_a_refused_recipient_is_marked_refused_journalled_and_never_retried(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    operator.close_mailbox(DURAND_BOX)
    counter.play(*durand("REF"), {"intent": "close"})
    clock = Clock()
    service = sync(tmp_path, counter, operator, clock)
    try:
        first = service.run_pass()
        clock.now += 3600
        second = service.run_pass()
    finally:
        service.close()
    assert first.delivered == 1 and second.delivered == 0 and second.deferred == 0
    assert operator.messages() == []
    assert counter.query("SELECT status FROM secure_messages") == [("refused",)]
    [(response, attempts)] = counter.query("SELECT response, attempts FROM outbox WHERE stream = 'mssante'")
    assert attempts == 1 and "550 5.1.1" in response and DURAND_BOX not in response
    [(details,)] = counter.query("SELECT details FROM audit_journal WHERE action = 'mssante.refused'")
    assert "Destinataire MSSanté refusé" in details and DURAND_BOX not in details


def test_an_operator_down_then_up_gets_the_message_once(
    tmp_path: Path, counter: Counter, operator: SandboxMailServer
) -> None:
    counter.play(*durand("DWN"), {"intent": "close"})
    operator.stop()
    clock = Clock()
    service = sync(tmp_path, counter, operator, clock)
    try:
        down = service.run_pass()
        assert down.deferred == 1 and down.delivered == 0
        [(attempts, error, due)] = counter.query(
            "SELECT attempts, last_error, next_attempt_at FROM outbox WHERE stream = 'mssante'"
        )
        assert attempts == 1 and "unreachable" in error and due > clock.now
        operator.start()
        assert service.run_pass().delivered == 0, "backing off: not due yet"
        clock.now = due
        assert service.run_pass().delivered == 1
        clock.now += 3600
        assert service.run_pass().delivered == 0
    finally:
        service.close()
    assert [m["To"] for m in received(operator)] == [DURAND_BOX]
    assert counter.query("SELECT status FROM secure_messages") == [("sent",)]


def test_a_client_without_certificate_is_refused_by_the_operator(tmp_path: Path, operator: SandboxMailServer) -> None:
    client = operator.client_certificate()
    settings = SmtpSettings(host="127.0.0.1", port=operator.port, sender=SENDER, ca=operator.ca, timeout=5)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, DURAND_BOX, "test"
    message.set_content("test")
    with pytest.raises(TeleserviceUnavailable, match="TLS session"):
        SmtpSecureMail(settings).send(message)
    assert operator.messages() == []
    SmtpSecureMail(dataclasses.replace(settings, cert=client.cert, key=client.key)).send(message)
    assert len(operator.messages()) == 1
    config = write_config(tmp_path / "nocert.toml", tmp_path / "c.db", operator, cert=None, key=None)
    with pytest.raises(ConfigError, match="cert is required"):
        load_config(config)


def test_nothing_is_sent_in_clear_nor_to_an_operator_outside_the_trusted_ca(tmp_path: Path, pki: Pki) -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, DURAND_BOX, "test"
    message.set_content("test")
    with SandboxMailServer(tmp_path / "plain", pki, starttls=False) as plain:
        client = plain.client_certificate()
        settings = SmtpSettings(
            host="127.0.0.1", port=plain.port, sender=SENDER, ca=plain.ca, cert=client.cert, key=client.key, timeout=5
        )
        with pytest.raises(TeleserviceUnavailable, match="STARTTLS"):
            SmtpSecureMail(settings).send(message)
        assert plain.messages() == []
    with SandboxMailServer(tmp_path / "tls", pki) as server:
        other = Pki(tmp_path / "other-ca", "another CA")
        settings = dataclasses.replace(settings, port=server.port, ca=other.ca.cert)
        with pytest.raises(TeleserviceUnavailable, match="TLS refused"):
            SmtpSecureMail(settings).send(message)
        assert server.messages() == []


def test_implicit_tls_and_a_permanent_refusal_of_the_recipient(tmp_path: Path, pki: Pki) -> None:
    with SandboxMailServer(tmp_path / "smtps", pki, implicit_tls=True) as server:
        client = server.client_certificate()
        settings = SmtpSettings(
            host="127.0.0.1",
            port=server.port,
            tls="implicit",
            sender=SENDER,
            ca=server.ca,
            cert=client.cert,
            key=client.key,
            timeout=5,
        )
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = SENDER, "someone@example.org", "test"
        message.set_content("test")
        with pytest.raises(TeleserviceRefused) as refusal:
            SmtpSecureMail(settings).send(message)
        assert refusal.value.code == "mss-recipient" and "example.org" not in refusal.value.message
        message.replace_header("To", VIDAL_BOX)
        SmtpSecureMail(settings).send(message)
        assert [m.rcpt_tos for m in server.messages()] == [(VIDAL_BOX,)]
        assert server.messages()[0].client == "pharmacie-bac-a-sable"


def test_without_mssante_configured_the_messages_wait_and_the_loop_still_sleeps(
    tmp_path: Path, counter: Counter
) -> None:
    counter.play(*durand("NOC"), {"intent": "close"})
    config = tmp_path / "bare.toml"
    config.write_text(f'[store]\ndb = "{counter.db}"\nkey = "{counter.db}.key"\n', encoding="utf-8")
    service = SyncService(load_config(config), clock=Clock())
    try:
        assert service.run_pass().delivered == 0
        assert service._next_due() == float("inf"), "a stream nobody drains here does not make the loop spin"
    finally:
        service.close()
    assert counter.query("SELECT count(*) FROM outbox WHERE stream = 'mssante' AND delivered_at IS NULL") == [(1,)]
