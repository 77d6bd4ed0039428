"""Secure messages (MSSanté), core side: what the store says at send time, the mail composed from it,
and their delivery through the outbox (once), with a fake :class:`~appliance.ports.SecureMail`.

The sessions run on the real workflow against the sandbox teleservices (``counter_rig``, no mail
server: the SMTP side is in ``tests/sync/test_mssante.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from datetime import date
from email.message import EmailMessage
from typing import Any

import pytest

from appliance import messaging
from appliance.codes.reader import CodeReader
from appliance.delivery import deliver_mail
from appliance.domain import Ins, Prescription, PrescriptionLine
from appliance.messaging import MailSettings, compose, patient_address, xdm_files
from appliance.scenario import CounterRig, ScenarioClock, ScenarioRunner, counter_rig
from appliance.store import operators as operators_module
from appliance.teleservices import TeleserviceRefused, TeleserviceUnavailable
from appliance.workflow import messages as msg
from appliance.workflow.events import Intent
from sandbox.population import PEOPLE

SETTINGS = MailSettings(sender="officine@pharmacie-test.mssante.fr")


def _ins(key: str) -> Ins:
    found = PEOPLE[key].ins
    assert found is not None
    return found


DURAND = _ins("durand")
LOGIN: list[dict[str, Any]] = [
    {"operator": {"name": "alice", "role": "pharmacien", "pin": "2468"}},
    {"intent": "login", "operator": "alice", "pin": "2468"},
]


def durand(serial: str) -> list[dict[str, Any]]:
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


ALD_SESSION: list[dict[str, Any]] = [
    {"scan": "APCV01:c2FuZGJveC1jb250ZXh0LWFsZA"},
    {"scan": "EP9ALD-2MRC-5RSS-3B8E"},
    {"intent": "confirm_prescription", "renewal": 0},
    {"box": {"cip13": "3400930001189", "serial": "MSG0101"}},
    {"box": {"cip13": "3400930001257", "serial": "MSG0102"}},
    {"box": {"cip13": "3400930001318", "serial": "MSG0103"}},
    {"box": {"cip13": "3400930000120", "serial": "MSG0104"}},
    {"intent": "continue"},
    {"intent": "validate", "pin": "2468"},
]


@dataclasses.dataclass
class Counter:
    rig: CounterRig
    runner: ScenarioRunner

    def play(self, *lines: dict[str, Any]) -> None:
        for number, line in enumerate(lines, start=1):
            self.runner.play(number, line)
            if "intent" in line and self.runner.last is not None:
                assert self.runner.last.accepted, (line, self.runner.last.message)

    @property
    def records(self) -> Any:
        return self.rig.records

    def name(self, cip13: str) -> str | None:
        product = self.rig.counter.products.get(cip13)
        return product.name if product else None

    def facts(self, message_id: int) -> dict[str, Any]:
        found = self.records.secure_message_facts(message_id, product_name=self.name)
        assert found is not None
        return dict(found)


@pytest.fixture(scope="module")
def sessions() -> Iterator[Counter]:
    """Durand (qualified, Dr Vidal's prescription): receipt, vaccination note, summary agreed;
    then the ALD patient (qualified; Dr Colonna has no MSSanté address, so the counter offers no summary): receipt."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operators_module, "PIN_KDF", operators_module.ScryptParams(log2_n=4, r=8, p=1))
        clock = ScenarioClock()
        with counter_rig(db_path=None, key_path=None, sandbox_url=None, clock=clock, mail=False) as rig:
            args = (rig.counter, CodeReader(), clock, rig.network, rig.deliver, rig.add_operator)
            box = Counter(rig, ScenarioRunner(*args, rig.db_state, rig.set_fault))
            box.play(*LOGIN, *durand("MSG"))
            box.play(
                {"intent": "dmp_document", "kind": "vaccination", "visibility": "all"},
                {"intent": "prescriber_summary", "agreed": True},
                {"intent": "close"},
            )
            box.receipt = rig.counter.last_outcome["receipt"]  # type: ignore[attr-defined, index]
            box.play(*ALD_SESSION)
            refused = rig.counter.handle(Intent("prescriber_summary", {"agreed": True}))
            assert not refused.accepted and refused.message == msg.PRESCRIBER_NO_MAILBOX
            box.play({"intent": "close"})
            yield box


@pytest.fixture
def counter() -> Iterator[Counter]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operators_module, "PIN_KDF", operators_module.ScryptParams(log2_n=4, r=8, p=1))
        clock = ScenarioClock()
        with counter_rig(db_path=None, key_path=None, sandbox_url=None, clock=clock, mail=False) as rig:
            args = (rig.counter, CodeReader(), clock, rig.network, rig.deliver, rig.add_operator)
            box = Counter(rig, ScenarioRunner(*args, rig.db_state, rig.set_fault))
            box.play(*LOGIN)
            yield box


class Mailbox:
    """A :class:`~appliance.ports.SecureMail` that keeps what it is handed, or fails as told."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.fail: list[Exception] = []

    def send(self, message: EmailMessage) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.sent.append(message)


# ---------------------------------------------------------------------------------- addresses


def test_the_patient_mailbox_is_the_ins_matricule_at_patient_mssante_fr() -> None:
    assert patient_address("282087505612339") == "282087505612339@patient.mssante.fr"
    assert patient_address(" 165112a00403160 ") == "165112A00403160@patient.mssante.fr", "born in Corsica"
    for wrong in ("2820875056123", "28208750561233X", "282087505612339@x", ""):
        with pytest.raises(ValueError):
            patient_address(wrong)


# ---------------------------------------------------------------------------------- the facts


def test_the_message_facts_read_back_what_each_message_says(sessions: Counter) -> None:
    kinds = sessions.rig.db.conn.execute("SELECT id, kind, status FROM secure_messages ORDER BY id").fetchall()
    assert kinds == [
        (1, "receipt", "queued"),
        (2, "dmp-document", "queued"),
        (3, "prescriber-summary", "queued"),
        (4, "receipt", "queued"),
    ]  # none for Dr Colonna, who has no MSSanté address: the counter said so
    receipt = sessions.facts(1)
    assert receipt["to"] == f"{DURAND.matricule}@patient.mssante.fr" and receipt["claim"] == 1
    assert receipt["lines"] == sessions.receipt, "the receipt as the kiosk showed it"  # type: ignore[attr-defined]
    assert receipt["subject"] == "Votre facture n° 1 – Pharmacie du Bac à sable"
    assert receipt["ins"] == DURAND and receipt["qualified"] is True
    document = sessions.facts(2)
    assert document["to"] == receipt["to"] and document["dmp"]["kind"] == "vaccination"
    assert document["lines"][0] == "Note de vaccination"
    summary = sessions.facts(3)
    assert summary["to"] == "helene.vidal@medecin.mssante.fr"
    assert summary["lines"][:2] == [
        "Patient : DURAND Marie Claire, né(e) le 19/08/1982",
        f"INS : {DURAND.matricule} (OID {DURAND.oid})",
    ]
    assert "Ordonnance EP7K2Q-9XWM-4TDA-LR8C du 10/06/2026" in summary["lines"]
    assert sessions.records.secure_message_facts(99) is None


def test_the_prescriber_address_is_stored_with_the_prescription_and_completed_late(counter: Counter) -> None:
    counter.play(*durand("STO"))
    conn = counter.rig.db.conn
    assert conn.execute("SELECT prescriber_mailbox FROM prescriptions").fetchall() == [
        ("helene.vidal@medecin.mssante.fr",)
    ]
    later = Prescription(
        "EP7K2Q-9XWM-4TDA-LR8C",
        "Dr Hélène VIDAL",
        date(2026, 6, 10),
        0,
        (PrescriptionLine(1, "DOLIPRANE", 2, "3400930000120"),),
        prescriber_mailbox="h.vidal@cabinet.mssante.fr",
    )
    counter.records.complete_prescription(later)
    assert conn.execute("SELECT prescriber_mailbox FROM prescriptions").fetchall() == [("h.vidal@cabinet.mssante.fr",)]


# ---------------------------------------------------------------------------------- the mail


def test_a_receipt_is_a_multipart_mail_to_the_patient_with_the_receipt_lines(sessions: Counter) -> None:
    facts = sessions.facts(1)
    mail = compose(facts, SETTINGS)
    assert mail.get_content_type() == "multipart/mixed"
    assert mail["From"] == SETTINGS.sender and mail["To"] == f"{DURAND.matricule}@patient.mssante.fr"
    assert mail["Date"] == "Mon, 15 Jun 2026 09:00:00 +0000", "when it was queued: a copy sent again is the same mail"
    assert mail["Message-ID"] == compose(facts, SETTINGS)["Message-ID"]
    assert mail["Message-ID"].startswith("<mss-1.") and mail["Message-ID"].endswith("@pharmacie-test.mssante.fr>")
    assert mail["X-MSS-MES"] == "FIN" and "X-MSS-NIL" not in mail and "X-MSS-INS" not in mail
    body = mail.get_body(("plain",))
    assert body is not None and list(mail.iter_attachments()) == []
    assert "\n".join(facts["lines"]) in body.get_content()
    declared = compose(facts, MailSettings(SETTINGS.sender, product_reference="REF-1234", patient_replies=True))
    assert declared["X-MSS-NIL"] == "REF-1234" and "X-MSS-MES" not in declared


def test_a_dmp_document_travels_as_ihe_xdm_with_its_cda_and_metadata(sessions: Counter) -> None:
    mail = compose(sessions.facts(2), SETTINGS)
    assert mail["Subject"] == "XDM/1.0/DDM+Note de vaccination DURAND Marie 19/08/1982"
    assert mail["X-MSS-CODECDA"] == "87273-9" and mail["X-MSS-INS"] == "O"
    [part] = list(mail.iter_attachments())
    assert part.get_filename() == "IHE_XDM.zip"
    files = xdm_files(part.get_content())
    cda: bytes = files["IHE_XDM/SUBSET01/DOC0001.XML"]
    metadata = files["IHE_XDM/SUBSET01/METADATA.XML"].decode()
    assert cda.startswith(b"<?xml") and DURAND.matricule.encode() in cda
    for name, value in (("size", str(len(cda))), ("hash", hashlib.sha1(cda).hexdigest()), ("URI", "DOC0001.XML")):  # noqa: S324
        assert f'<rim:Slot name="{name}"><rim:ValueList><rim:Value>{value}</rim:Value>' in metadata
    assert metadata.index('name="URI"') < metadata.index("<rim:Name>"), "ebRIM: the slots come before the name"
    assert f"{DURAND.matricule}^^^&amp;{DURAND.oid}&amp;ISO^NH" in metadata
    assert 'href="IHE_XDM/SUBSET01/DOC0001.XML"' in files["INDEX.HTM"].decode()


def test_a_document_the_cda_builder_cannot_make_goes_as_its_text(sessions: Counter) -> None:
    facts = sessions.facts(2)
    facts["dmp"] = {**facts["dmp"], "operator": None}  # no author: the DMP builder refuses the CDA
    mail = compose(facts, SETTINGS)
    assert list(mail.iter_attachments()) == [] and "X-MSS-CODECDA" not in mail
    assert not str(mail["Subject"]).startswith(messaging.XDM_SUBJECT_PREFIX)
    body = mail.get_body(("plain",))
    assert body is not None and "Note de vaccination" in body.get_content()


@pytest.mark.parametrize(
    ("change", "code", "reason"),
    [
        ({"to": None}, "mss-no-address", messaging.NO_PATIENT_MAILBOX),
        ({"to": "282087505612339"}, "mss-no-address", messaging.NO_PATIENT_MAILBOX),
        ({"kind": "nonsense"}, "mss-kind", "Message sécurisé inconnu : nonsense"),
    ],
)
def test_a_receipt_with_nowhere_to_go_is_refused(
    sessions: Counter, change: dict[str, Any], code: str, reason: str
) -> None:
    with pytest.raises(TeleserviceRefused) as refusal:
        compose({**sessions.facts(1), **change}, SETTINGS)
    assert (refusal.value.code, refusal.value.message) == (code, reason)


def test_no_prescriber_address_or_a_document_hidden_from_the_patient_is_refused(sessions: Counter) -> None:
    with pytest.raises(TeleserviceRefused, match="Pas d'adresse MSSanté du prescripteur"):
        compose({**sessions.facts(3), "to": ""}, SETTINGS)  # an address gone between the counter and the mail
    hidden = sessions.facts(2)
    hidden["dmp"] = {**hidden["dmp"], "visibility": "hidden-from-patient"}
    with pytest.raises(TeleserviceRefused, match="masqué au patient"):
        compose(hidden, SETTINGS)


# ---------------------------------------------------------------------------------- delivery


def _mssante_outbox(counter: Counter) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = counter.rig.db.conn.execute(
        "SELECT key, attempts, delivered_at IS NOT NULL, response FROM outbox WHERE stream = 'mssante' ORDER BY id"
    ).fetchall()
    return found


def test_each_message_is_sent_once_and_marked_sent(counter: Counter) -> None:
    counter.play(*durand("ONE"), {"intent": "close"})
    mailbox = Mailbox()
    first = deliver_mail(counter.records, mailbox, SETTINGS, clock=counter.rig.clock, product_name=counter.name)
    again = deliver_mail(counter.records, mailbox, SETTINGS, clock=counter.rig.clock, product_name=counter.name)
    assert (first.delivered, again.delivered) == (1, 0)
    assert [m["To"] for m in mailbox.sent] == [f"{DURAND.matricule}@patient.mssante.fr"]
    [(key, attempts, delivered, _)] = _mssante_outbox(counter)
    assert key == "mss:1" and attempts == 1 and delivered
    assert counter.records.secure_message_facts(1)["status"] == "sent"


def test_a_message_already_sent_is_not_sent_again_when_its_outbox_entry_was_not_closed(counter: Counter) -> None:
    counter.play(*durand("CRS"), {"intent": "close"})
    counter.records.mark_secure_message(1, "sent")  # the operator took it, then the box stopped
    mailbox = Mailbox()
    report = deliver_mail(counter.records, mailbox, SETTINGS, clock=counter.rig.clock)
    assert report.delivered == 1 and mailbox.sent == []
    assert _mssante_outbox(counter)[0][2] == 1


def test_an_operator_unavailable_keeps_the_message_for_later_with_back_off(counter: Counter) -> None:
    counter.play(*durand("UNV"), {"intent": "close"})
    mailbox = Mailbox()
    mailbox.fail.append(TeleserviceUnavailable("mssante: operator unreachable (ConnectionRefusedError)"))
    clock = counter.rig.clock
    down = deliver_mail(counter.records, mailbox, SETTINGS, clock=clock)
    assert (down.delivered, down.deferred) == (0, 1)
    row = counter.rig.db.conn.execute("SELECT next_attempt_at FROM outbox WHERE key = 'mss:1'").fetchone()
    due = float(row[0])
    assert due > clock()
    assert deliver_mail(counter.records, mailbox, SETTINGS, clock=clock).delivered == 0, "not due yet"
    counter.rig.clock.now = due  # type: ignore[attr-defined]
    assert deliver_mail(counter.records, mailbox, SETTINGS, clock=clock).delivered == 1
    assert len(mailbox.sent) == 1


def test_a_refusal_marks_the_message_refused_journals_it_and_the_stream_carries_on(counter: Counter) -> None:
    counter.play(*durand("RFS"))
    counter.play({"intent": "prescriber_summary", "agreed": True}, {"intent": "close"})
    mailbox = Mailbox()
    mailbox.fail.append(TeleserviceRefused("mss-recipient", "Destinataire MSSanté refusé (550 5.1.1 unknown)"))
    report = deliver_mail(counter.records, mailbox, SETTINGS, clock=counter.rig.clock)
    assert (report.delivered, report.refused) == (1, 1), "the receipt refused, the summary sent behind it"
    assert [m["To"] for m in mailbox.sent] == ["helene.vidal@medecin.mssante.fr"]
    conn = counter.rig.db.conn
    assert conn.execute("SELECT status FROM secure_messages ORDER BY id").fetchall() == [("refused",), ("sent",)]
    [(subject, details)] = conn.execute(
        "SELECT subject, details FROM audit_journal WHERE action = 'mssante.refused'"
    ).fetchall()
    assert subject == "1" and '"kind":"receipt"' in details.replace(" ", "")
    assert DURAND.matricule not in details
    assert deliver_mail(counter.records, mailbox, SETTINGS, clock=counter.rig.clock).refused == 0, "never retried"
