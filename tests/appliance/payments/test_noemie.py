"""NOEMIE-style remittances from files and from the sandbox: every sum checked, every problem named by file and line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest

from appliance.payments.model import LineStatus, Part, PaymentsFileError
from appliance.payments.noemie import format_entity, load_remittances, parse_noemie, parse_remittance_file
from sandbox import population as pop
from sandbox.payments import PAYERS, Line, Return, noemie_file
from sandbox.server import SandboxServer
from sync.teleservices_http import HttpTeleservices

CPAM = PAYERS[0]
DAY = date(2026, 3, 2)


def sample() -> str:
    paid = Return(
        CPAM,
        12,
        DAY,
        "P260302000001",
        [
            Line(101, Part.AMO, "CPAM751", 1500, 1500, day=date(2026, 2, 26)),
            Line(102, Part.AMO, "CPAM751", 2000, 1700, "TARI", date(2026, 2, 26)),
        ],
    )
    rejected = Return(CPAM, 12, DAY, "", [Line(103, Part.AMO, "CPAM751", 900, 0, "DROI", date(2026, 2, 26))])
    return noemie_file(CPAM, [paid, rejected], DAY, 7)


def test_a_file_gives_its_remittances_with_lines_reasons_and_actions() -> None:
    remittances = parse_noemie(sample(), "rsp.txt")
    by_id = {r.remittance_id: r for r in remittances}
    paid = by_id["CPAM751:P260302000001"]
    assert paid.paid_on == DAY and paid.payer_name == "CPAM DE PARIS" and paid.total_cents == 3200
    lines = {line.claim_number: line for line in paid.lines}
    assert lines[101].status is LineStatus.PAID and lines[101].batch_number == "12"
    assert lines[102].status is LineStatus.PARTIAL and lines[102].reason_code == "TARI"
    assert "Ne pas refacturer" in lines[102].action and "table" in lines[102].reason.lower()
    rejection = next(r for r in remittances if r.remittance_id != paid.remittance_id)
    assert rejection.total_cents == 0 and rejection.lines[0].status is LineStatus.REJECTED
    assert "ADRi" in rejection.lines[0].action
    assert lines[101].source.startswith("rsp.txt:")


def test_entities_may_share_a_line_or_be_wrapped() -> None:
    one_line = sample().replace("\n", "")
    wrapped = "\n".join(one_line[i : i + 80] for i in range(0, len(one_line), 80))

    def content(text: str) -> list[tuple[object, ...]]:
        return [
            (r.remittance_id, r.total_cents, [(ln.claim_number, ln.paid_cents, ln.status) for ln in r.lines])
            for r in parse_noemie(text, "a")
        ]

    assert content(one_line) == content(wrapped) == content(sample())
    assert [total for _, total, _ in content(wrapped)] == [3200, 0]


def _replace_entity(text: str, prefix: str, new: str) -> str:
    lines = text.splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith(prefix))
    lines[n] = new
    return "\n".join(lines) + "\n"


def _line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if line.startswith(prefix))


BROKEN: dict[str, tuple[Callable[[str], str], str, str]] = {
    "unknown type": (lambda t: _replace_entity(t, "010", "01501xx@"), "010", "unknown entity type '015'"),
    "wrong level": (lambda t: t.replace("02002", "02003", 1), "020", "must be at level 02"),
    "short entity": (lambda t: _replace_entity(t, "020", "02002000000012@"), "020", "expected 14"),
    "letters in an amount": (
        lambda t: t.replace("00000001500", "000000015X0", 1),
        "100",
        "billed (column 23) must be 11 digits",
    ),
    "bad date": (lambda t: t.replace("20260302P2", "20261302P2", 1), "030", "not a date YYYYMMDD"),
    "invoice not adding up": (
        lambda t: t.replace("00000001500", "00000001400", 2),
        "100",
        "its parts add up",
    ),
    "end count": (lambda t: t.replace("99900000019", "99900000018"), "999", "counts 18 entities"),
    "no end": (lambda t: t.rsplit("999", 1)[0], "300", "must end with an end entity"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_bad_file_is_refused_naming_the_file_and_the_line(tmp_path: Path, case: str) -> None:
    corrupt, entity, message = BROKEN[case]
    text = corrupt(sample())
    path = tmp_path / "retour.rsp"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PaymentsFileError) as caught:
        parse_remittance_file(path)
    if case == "no end":
        expected_line = len(text.splitlines())
    else:
        expected_line = _line_of(text, "01501" if case == "unknown type" else entity)
    assert caught.value.line == expected_line, str(caught.value)
    assert str(caught.value).startswith(f"{path}, line {expected_line}: ")
    assert message in str(caught.value)


def test_a_truncated_entity_names_its_line() -> None:
    text = sample()[:-5]
    with pytest.raises(PaymentsFileError, match=r"line 20: entity '999' is not ended by '@'"):
        parse_noemie(text, "f")


def test_the_writer_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        format_entity("020", batch_number=10**9, claims=1)


def test_the_same_payment_in_two_files_is_one_remittance_and_a_copy_adds_nothing(tmp_path: Path) -> None:
    other = Return(CPAM, 13, DAY, "P260302000001", [Line(104, Part.AMO, "CPAM751", 500, 500)])
    (tmp_path / "a.rsp").write_text(sample())
    (tmp_path / "b.rsp").write_text(noemie_file(CPAM, [other], DAY, 8))
    (tmp_path / "copy-of-a.rsp").write_text(sample())
    (tmp_path / ".hidden").write_text("garbage")
    remittances = load_remittances(tmp_path)
    paid = next(r for r in remittances if r.payment_reference == "P260302000001")
    assert sorted(line.claim_number for line in paid.lines) == [101, 102, 104]
    assert paid.total_cents == 3700
    assert len(remittances) == 2


def test_the_sandbox_remittances_parse_including_its_payment_rejection() -> None:
    server = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY)
    server.start()
    try:
        claims = []
        for key, number in (("durand", "501"), ("payment-rejected", "502")):
            p = pop.person(key)
            claims.append(
                {
                    "claim_number": number,
                    "nir": p.beneficiary.nir,
                    "total_cents": 1000,
                    "amo_cents": 650,
                    "amc_cents": 350 if p.amc else 0,
                    "patient_cents": 0 if p.amc else 350,
                    "amc_number": p.amc.amc_number if p.amc else None,
                }
            )
        with httpx.Client(base_url=server.url, timeout=2.0) as http:
            ack = http.post(
                "/claims/batches", json={"batch_number": "77", "claims": claims}, headers={"Idempotency-Key": "p1"}
            )
            assert ack.json()["ack"] == "positive"
        raw = HttpTeleservices(server.url).remittances(pop.REFERENCE_DAY)
    finally:
        server.stop()
    from appliance.payments.noemie import parse_sandbox_remittances

    remittances = parse_sandbox_remittances(raw)
    amo = next(r for r in remittances if r.payer == "AMO")
    lines = {line.claim_number: line for line in amo.lines}
    assert lines[501].status is LineStatus.PAID and lines[501].paid_cents == 650 and lines[501].part is Part.AMO
    assert lines[502].status is LineStatus.REJECTED and lines[502].reason and lines[502].action
    assert amo.payment_reference.startswith("VIR AMO ") and amo.paid_on == pop.REFERENCE_DAY
    amc = next(r for r in remittances if r.payer != "AMO")
    assert amc.lines[0].part is Part.AMC and amc.lines[0].payer_code == amc.payer


def test_bad_sandbox_json_names_the_file_and_the_remittance(tmp_path: Path) -> None:
    path = tmp_path / "remittances.json"
    path.write_text(
        '{"remittances": [{"remittance_id": "RSP1", "payer": "AMO", "paid_on": "2026-06-15",'
        ' "payment_reference": "VIR AMO RSP1", "claims": [{"claim_number": "1", "status": "paid"}]}]}'
    )
    with pytest.raises(PaymentsFileError, match=r"remittances.json: remittance #1 \(RSP1\), claim #1: paid_cents"):
        parse_remittance_file(path)
    path.write_text('{"remittances": [\n{"remittance_id": }]}')
    with pytest.raises(PaymentsFileError, match=r"remittances.json, line 2: not valid JSON"):
        parse_remittance_file(path)
