"""NOEMIE PS remittances as published (files built by ``noemie_ps``, from the published positions), and
the sandbox's: every entity read, withholdings, control totals checked, rejections with their reasons,
and every malformed record named by its line, entity and field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import httpx
import pytest

from appliance.payments.model import AdjustmentKind, LineStatus, Part, PaymentsFileError
from appliance.payments.noemie import (
    format_entity,
    load_remittances,
    parse_noemie,
    parse_remittance_file,
    parse_sandbox_remittances,
    read_noemie,
)
from sandbox import population as pop
from sandbox.payments import PAYERS, Line, Return, Withholding, noemie_file, noemie_files
from sandbox.server import SandboxServer
from sync.teleservices_http import HttpTeleservices
from tests.appliance.payments import noemie_ps as ps

CPAM = PAYERS[0]
DAY = date(2026, 3, 2)
LOT_DAY = date(2026, 2, 26)
TARI = "Table de prix de l'organisme non à jour"
ADHE = "Assuré inconnu de l'organisme complémentaire"


def sample_entities() -> list[str]:
    """A CPAM return: a mandataire and the pharmacy; a payment of lot 12 (one invoice paid, one partly
    paid with its AMC part rejected, one deferred) less a withholding; a flat-rate payment; a return
    without payment rejecting an invoice; a 990 closing every level. Totals written by hand."""
    return [
        ps.e020(123456789),  # 0
        ps.e040(750000001),  # 1
        ps.e071(DAY, "P260302000001", "CPAM DE PARIS", "CPAM751"),  # 2
        ps.e081("01"),  # 3
        ps.e080(LOT_DAY, 12),  # 4
        ps.e102("000000101", "012", LOT_DAY, "F", LOT_DAY),  # 5
        ps.e103(),  # 6
        ps.e198(1500, "P", 1500),  # 7
        ps.e210(1, "PH7", 1500, LOT_DAY),  # 8
        ps.e102("000000102", "012", LOT_DAY, "F", LOT_DAY),  # 9
        ps.e103(),  # 10
        ps.e198(2000, "P", 1700),  # 11
        ps.e199(800, "R", 0, 88888888),  # 12
        ps.e210(1, "PH7", 2000, LOT_DAY),  # 13
        ps.e294("TARI", TARI, "O"),  # 14
        ps.e294("ADHE", ADHE, "C"),  # 15
        ps.e102("000000104", "012", LOT_DAY, "F", LOT_DAY),  # 16
        ps.e198(900, "D", 0),  # 17
        ps.e990(3, 3200),  # 18: closes the lot: 3 invoices, 15.00 + 17.00
        ps.e990(1, 3200),  # 19: closes the 081: 1 lot
        ps.e081("05"),  # 20
        ps.e250(1, "D260000001", date(2026, 1, 15), "IND", "RPR", 500, "N", 0),  # 21
        ps.e990(1, 500, "N"),  # 22: closes the 081 of withholdings
        ps.e990(2, 2700),  # 23: closes the payment: 2 returns, 32.00 - 5.00
        ps.e071(DAY, "P260302000002", "CPAM DE PARIS", "CPAM751"),  # 24
        ps.e081("03"),  # 25
        ps.e261(12001, 10000),  # 26
        ps.e990(1, 10000),  # 27
        ps.e990(1, 10000),  # 28
        ps.e070(DAY),  # 29
        ps.e081("01"),  # 30
        ps.e080(LOT_DAY, 12),  # 31
        ps.e102("000000103", "012", LOT_DAY, "F", LOT_DAY),  # 32
        ps.e103(),  # 33
        ps.e198(900, "R", 0, " "),  # 34
        ps.e290(1, "DROI", "Droits non ouverts à la date des soins"),  # 35
        ps.e990(1, 0),  # 36
        ps.e990(1, 0),  # 37
        ps.e990(1, 0),  # 38
        ps.e990(3, 12700),  # 39: closes the 040: 2 payments, 1 return without payment
        ps.e990(1, 12700),  # 40: closes the 020
    ]


def sample(newline: str = "", **changes: object) -> str:
    return ps.build(sample_entities(), lots=2, total=12700, newline=newline, **changes)  # type: ignore[arg-type]


def test_a_published_layout_file_gives_payments_lines_reasons_and_withholdings() -> None:
    remittances = {r.remittance_id: r for r in parse_noemie(sample(), "rsp")}
    assert set(remittances) == {"CPAM751:P260302000001", "CPAM751:P260302000002", "CP751:REJ-000007-20260302-1"}
    paid = remittances["CPAM751:P260302000001"]
    assert (paid.payer, paid.payer_name, paid.paid_on, paid.payment_reference) == (
        "CPAM751",
        "CPAM DE PARIS",
        DAY,
        "P260302000001",
    )
    assert (paid.paid_cents, paid.adjusted_cents, paid.total_cents) == (3200, -500, 2700)
    lines = {(line.claim_number, line.part): line for line in paid.lines}
    assert set(lines) == {(101, Part.AMO), (102, Part.AMO), (102, Part.AMC)}  # 104 is deferred: no line yet
    first = lines[(101, Part.AMO)]
    assert (first.status, first.paid_cents, first.billed_cents, first.batch_number) == (
        LineStatus.PAID,
        1500,
        1500,
        "12",
    )
    assert first.payer_code == "CPAM751" and first.source == f"rsp:{ps.where(sample_entities(), 7)[0]}"
    partial = lines[(102, Part.AMO)]
    assert (partial.status, partial.paid_cents, partial.billed_cents) == (LineStatus.PARTIAL, 1700, 2000)
    assert partial.reason_code == "TARI" and partial.reason == TARI and "Ne pas refacturer" in partial.action
    amc = lines[(102, Part.AMC)]
    assert (amc.status, amc.paid_cents, amc.payer_code, amc.reason_code) == (LineStatus.REJECTED, 0, "88888888", "ADHE")
    assert amc.reason == ADHE and "attestation mutuelle" in amc.action
    (withheld,) = paid.adjustments
    assert withheld.kind is AdjustmentKind.WITHHOLDING and withheld.amount_cents == -500
    assert (withheld.reference, withheld.nature, withheld.operation) == ("D260000001", "IND", "RPR")
    assert withheld.recorded_on == date(2026, 1, 15) and withheld.balance_cents == 0
    assert withheld.label == "Retenue : indu sur prestations"
    flat = remittances["CPAM751:P260302000002"]
    assert flat.lines == () and flat.total_cents == 10000
    assert flat.adjustments[0].kind is AdjustmentKind.LUMP_SUM and flat.adjustments[0].reference == "12001"
    rejection = remittances["CP751:REJ-000007-20260302-1"]
    assert rejection.total_cents == 0 and rejection.payment_reference == ""
    (refused,) = rejection.lines
    assert (refused.claim_number, refused.status, refused.reason_code) == (103, LineStatus.REJECTED, "DROI")
    assert refused.reason == "Droits non ouverts à la date des soins" and "ADRi" in refused.action


def test_every_published_entity_of_the_file_is_read_in_order() -> None:
    file = read_noemie(sample(), "rsp")
    assert [e.type for e in file.entities] == [e[:3] for e in sample_entities()]
    assert {e.type for e in file.entities} >= {
        "020", "040", "070", "071", "080", "081", "102", "103", "198", "199", "210", "250", "261", "290", "294", "990",
    }  # fmt: skip
    assert file.header["emitter_type"] == "CP" and file.header["currency"] == "U"
    assert file.records == len(sample()) // 128 and file.trailer["lots"] == "002"
    line, column = ps.where(sample_entities(), 21)
    withholding = file.entities[21]
    assert (withholding.line, withholding.column) == (line, column)


@pytest.mark.parametrize("newline", ["", "\r\n", "\n", "end"])
def test_records_may_be_separated_or_not(newline: str) -> None:
    def content(text: str) -> list[tuple[object, ...]]:
        return [
            (r.remittance_id, r.total_cents, [(ln.claim_number, ln.status) for ln in r.lines])
            for r in parse_noemie(text, "a")
        ]

    text = sample() + "\r\n" if newline == "end" else sample(newline)  # "end": one newline after the records
    assert content(text) == content(sample())


def test_a_part_paid_back_is_a_correction_and_294_o_also_explains_the_amc_part() -> None:
    entities = [
        ps.e040(750000001),
        ps.e071(DAY, "P260302000009", "CPAM DE PARIS", "CPAM751"),
        ps.e081("04"),
        ps.e102("000000201", kind="E"),
        ps.e198(0, "P", 300, "N"),
        ps.e102("000000202"),
        ps.e199(400, "R", 0, 77553311),
        ps.e294("PIEC", "Pièce justificative manquante", "O"),
        ps.e990(2, 300, "N"),
        ps.e990(1, 300, "N"),
        ps.e990(1, 300, "N"),
    ]
    (r,) = parse_noemie(ps.build(entities, lots=0, total=300, sign="N"), "f")
    assert r.total_cents == -300 and r.adjustments[0].kind is AdjustmentKind.CORRECTION
    assert r.adjustments[0].reference == "201" and r.adjustments[0].nature == "AMO"
    (line,) = r.lines
    assert line.part is Part.AMC and line.reason_code == "PIEC" and line.batch_number == ""


# ---------------------------------------------------------------------------------------------- controls


def _swap(index: int, new: str) -> str:
    entities = sample_entities()
    entities[index] = new
    return ps.build(entities, lots=2, total=12700)


CONTROLS: dict[str, tuple[Callable[[], str], tuple[int, int] | int, str]] = {
    "990 count of a lot": (
        lambda: _swap(18, ps.e990(2, 3200)),
        (18, 23),
        "field «Compteur du niveau inférieur dans la hiérarchie» (entity positions 23-30, column {col}):"
        " says 2, the 080 (lot) of line {lot} has 3 entities directly under it",
    ),
    "990 total of a payment": (
        lambda: _swap(23, ps.e990(2, 3200)),
        (23, 31),
        "field «Cumul des montants de niveau inférieur» (entity positions 31-41, column {col}): says 32,00 €,"
        " the amounts within the 071 (date comptable et référence du virement) of line {payment} add up to 27,00 €",
    ),
    "990 sign of the withholdings": (
        lambda: _swap(22, ps.e990(1, 500, "P")),
        (22, 31),
        "says 5,00 €, the amounts within the 081 (type de retour) of line {withholdings} add up to -5,00 €",
    ),
    "990 sign not published": (
        lambda: _swap(22, ps.e990(1, 500, "X")),
        (22, 42),
        "field «Signe de l'acte» (entity positions 42-42, column {col}): must be N (negative) or P (positive), not 'X'",
    ),
    "999 records": (
        lambda: sample(records=9),
        -1,
        "999 fin de fichier, field «Nombre d'enregistrements» (columns 56-63): says 9, the file has {records} records",
    ),
    "999 lots": (
        lambda: ps.build(sample_entities(), lots=3, total=12700),
        -1,
        "field «Nombre de lots» (columns 83-85): says 3, the file has 2 lots (080)",
    ),
    "999 total": (
        lambda: ps.build(sample_entities(), lots=2, total=12700, sign="N"),
        -1,
        "field «Cumul des montants du fichier» (columns 86-96): says -127,00 €,"
        " the amounts of the file add up to 127,00 €",
    ),
}


@pytest.mark.parametrize("case", sorted(CONTROLS))
def test_control_totals_are_checked_against_the_content(case: str) -> None:
    make, at, message = CONTROLS[case]
    text = make()
    records = len(text) // 128
    entities = sample_entities()
    if isinstance(at, tuple):
        line, col = ps.where(entities, *at)
    else:
        line, col = records, 0
    expected = message.format(
        col=col,
        lot=ps.where(entities, 4)[0],
        payment=ps.where(entities, 2)[0],
        withholdings=ps.where(entities, 20)[0],
        records=records,
    )
    with pytest.raises(PaymentsFileError) as caught:
        parse_noemie(text, "rsp")
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"rsp, line {line}: ") and expected in str(caught.value)


# ---------------------------------------------------------------------------------------------- malformed


def _record_cut() -> str:
    records = sample("\r\n").split("\r\n")
    records[2] = records[2][:-1]
    return "\r\n".join(records)


MALFORMED: dict[str, tuple[Callable[[], str], Callable[[list[str]], int], str]] = {
    "record of 127 characters": (_record_cut, lambda e: 3, "record is 127 characters long: NOEMIE PS records are 128"),
    "truncated file": (
        lambda: sample()[:-5],
        lambda e: len(sample()) // 128,
        "not a whole number of 128-character records (the last record has 123: truncated?)",
    ),
    "unknown entity": (
        lambda: _swap(8, "219" + ps.e210(1, "PH7", 1500, LOT_DAY)[3:]),
        lambda e: ps.where(e, 8)[0],
        "unknown entity type '219' at column {col8} (NOEMIE PS entities: 020, 040, 070, 071, 080, 081, 100, 102,",
    ),
    "bad amount": (
        lambda: _swap(11, ps.e198(2000, "P", 1700).replace("00001700", "00017X0O")),
        lambda e: ps.where(e, 11, 15)[0],
        "entity 198 (part AMO) starting at column {col11}{of_line}, field «Montant AMO payé» (entity positions 15-22,"
        " column {col11_15}): must be 8 digits (or blank), not '00017X0O'",
    ),
    "entity one character short": (
        lambda: _swap(5, ps.entity("102", "04", {(6, 14): "000000101", (30, 30): "F"}, length=39)),
        lambda e: ps.where(e, 5, 40)[0],
        "entity 102 (facture) starting at column {col5}{of_line5}: no end-of-entity '@' at its position 40",
    ),
    "bad date": (
        lambda: _swap(2, ps.e071(DAY, "P260302000001", "CPAM DE PARIS", "CPAM751").replace("260302P", "261302P")),
        lambda e: ps.where(e, 2, 6)[0],
        "field «Date de la journée comptable ou date d'émission du virement» (entity positions 6-11, column"
        " {col2_6}): is not a date AAMMJJ: '261302'",
    ),
    "state not published": (
        lambda: _swap(7, ps.e198(1500, "X", 1500)),
        lambda e: ps.where(e, 7, 14)[0],
        "field «État paiement part AMO» (entity positions 14-14, column {col7_14}): 'X' is not a published value",
    ),
    "level not published": (
        lambda: _swap(2, ps.e071(DAY, "P260302000001", "", "CPAM751", level="03")),
        lambda e: ps.where(e, 2, 4)[0],
        "field «Niveau de rupture» (entity positions 4-5, column {col2_4}): is '03', the published level is 02",
    ),
    "a part outside any invoice": (
        lambda: _swap(5, ps.e198(1500, "P", 1500)),
        lambda e: ps.where(e, 5)[0],
        "entity 198 (part AMO) at column {col5}: outside any invoice (102)",
    ),
    "paid on a rejected part": (
        lambda: _swap(12, ps.e199(800, "R", 10, 88888888)),
        lambda e: ps.where(e, 12, 15)[0],
        "field «Montant AMC payé» (entity positions 15-22, column {col12_15}): an amount paid on a rejected part (R)",
    ),
    "not euros": (
        lambda: sample(header=ps.Header(currency="F")),
        lambda e: 1,
        "000 en-tête, field «Unité monétaire» (columns 70-70): 'F' is not a published value ('U')",
    ),
    "record length": (
        lambda: sample(header=ps.Header(length=120)),
        lambda e: 1,
        "000 en-tête, field «Longueur d'enregistrement» (columns 83-85): must be 128, not '120'",
    ),
    "no header": (lambda: sample()[128:], lambda e: 1, "the first record must be the 000 header, not '002'"),
    "no trailer": (
        lambda: sample()[:-128],
        lambda e: len(sample()) // 128 - 1,
        "the last record must be the 999 trailer, not '1",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_file_is_refused_naming_line_entity_and_field(tmp_path: Path, case: str) -> None:
    make, line_of, message = MALFORMED[case]
    entities = sample_entities()
    text = make()
    line = line_of(entities)
    fmt: dict[str, object] = {}
    for index, position in ((2, 6), (2, 4), (5, 1), (5, 40), (7, 14), (8, 1), (11, 1), (11, 15), (12, 15)):
        fmt[f"col{index}" + ("" if position == 1 else f"_{position}")] = ps.where(entities, index, position)[1]
    start11, start5 = ps.where(entities, 11), ps.where(entities, 5)
    fmt["of_line"] = "" if start11[0] == ps.where(entities, 11, 15)[0] else f" of line {start11[0]}"
    fmt["of_line5"] = "" if start5[0] == ps.where(entities, 5, 40)[0] else f" of line {start5[0]}"
    path = tmp_path / "retour.rsp"
    path.write_bytes(text.encode("iso-8859-1"))
    with pytest.raises(PaymentsFileError) as caught:
        parse_remittance_file(path)
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"{path}, line {line}: "), str(caught.value)
    assert message.format(**fmt) in str(caught.value)


def test_the_writer_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError, match="does not fit in 'Numéro de lot'"):
        format_entity("080", day=DAY, batch=1000)
    with pytest.raises(ValueError, match="unknown zones"):
        format_entity("990", count=1, total=0, sign="P", colour="red")


# ---------------------------------------------------------------------------------------------- the sandbox's files


def sandbox_sample() -> str:
    paid = Return(
        CPAM,
        12,
        DAY,
        "P260302000001",
        [
            Line(101, Part.AMO, "CPAM751", 1500, 1500, day=LOT_DAY),
            Line(102, Part.AMO, "CPAM751", 2000, 1700, "TARI", LOT_DAY),
        ],
        [Withholding("D260000001", 500, date(2026, 1, 15))],
    )
    rejected = Return(CPAM, 12, DAY, "", [Line(103, Part.AMO, "CPAM751", 900, 0, "DROI", LOT_DAY)])
    return noemie_file(CPAM, [paid, rejected], DAY, 7)


def test_the_sandbox_writes_the_published_layout() -> None:
    header, data, trailer, entities = ps.split(sandbox_sample())
    assert header[:5] == "000CP" and header[69] == "U" and header[82:85] == "128" and header[49:55] == "000007"
    assert trailer[:5] == "999CP" and int(trailer[55:63]) == len(data) + 2 and trailer[82:85] == "002"
    assert trailer[85:97] == f"{3200 - 500:011d}P"
    types = [e[:3] for e in entities]
    assert types[:4] == ["040", "071", "081", "080"] and "250" in types and "294" in types and "070" in types
    payment = next(e for e in entities if e.startswith("071"))
    assert payment[11:43].rstrip() == "P260302000001" and payment[75:85].rstrip() == "CPAM751"
    withholding = next(e for e in entities if e.startswith("250"))
    assert withholding[29:38] == "00000500N"
    by_id = {r.remittance_id: r for r in parse_noemie(sandbox_sample(), "s")}
    assert by_id["CPAM751:P260302000001"].total_cents == 2700


def test_the_same_payment_in_two_files_is_one_remittance_and_a_copy_adds_nothing(tmp_path: Path) -> None:
    other = Return(CPAM, 13, DAY, "P260302000001", [Line(104, Part.AMO, "CPAM751", 500, 500)])
    (tmp_path / "a.rsp").write_bytes(sandbox_sample().encode("iso-8859-1"))
    (tmp_path / "b.rsp").write_bytes(noemie_file(CPAM, [other], DAY, 8).encode("iso-8859-1"))
    (tmp_path / "copy-of-a.rsp").write_bytes(sandbox_sample().encode("iso-8859-1"))
    (tmp_path / ".hidden").write_text("garbage")
    remittances = load_remittances(tmp_path)
    paid = next(r for r in remittances if r.payment_reference == "P260302000001")
    assert sorted(line.claim_number for line in paid.lines) == [101, 102, 104]
    assert len(paid.adjustments) == 1 and paid.total_cents == 3200 - 500 + 500
    assert len(remittances) == 2


def _sandbox_batch(server: SandboxServer) -> None:
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


def test_the_sandbox_server_serves_its_remittances_as_json_and_as_noemie_ps_files() -> None:
    server = SandboxServer(port=0, today=lambda: pop.REFERENCE_DAY)
    server.start()
    try:
        _sandbox_batch(server)
        raw = HttpTeleservices(server.url).remittances(pop.REFERENCE_DAY)
        with httpx.Client(base_url=server.url, timeout=2.0) as http:
            files = http.get("/claims/remittances/noemie", params={"since": pop.REFERENCE_DAY.isoformat()}).json()[
                "files"
            ]
            later = http.get("/claims/remittances/noemie", params={"since": "2030-01-01"}).json()
    finally:
        server.stop()
    assert later == {"files": []}
    from_json = parse_sandbox_remittances(raw)
    amo = next(r for r in from_json if r.payer == "AMO")
    lines = {line.claim_number: line for line in amo.lines}
    assert lines[501].status is LineStatus.PAID and lines[501].paid_cents == 650 and lines[501].part is Part.AMO
    assert lines[502].status is LineStatus.REJECTED and lines[502].reason and lines[502].action
    assert amo.payment_reference.startswith("VIR AMO ") and amo.paid_on == pop.REFERENCE_DAY
    amc = next(r for r in from_json if r.payer != "AMO")
    assert amc.lines[0].part is Part.AMC and amc.lines[0].payer_code == amc.payer
    from_files = [r for f in files for r in parse_noemie(f["content"], f["name"])]
    for got in from_files:
        ps.split(next(f["content"] for f in files if f["name"] == got.source))  # the published layout
    assert {r.remittance_id: r.total_cents for r in from_files} == {r.remittance_id: r.total_cents for r in from_json}
    for r in from_files:
        twin = next(j for j in from_json if j.remittance_id == r.remittance_id)
        assert [(ln.claim_number, ln.part, ln.status, ln.paid_cents, ln.reason) for ln in r.lines] == [
            (ln.claim_number, ln.part, ln.status, ln.paid_cents, ln.reason) for ln in twin.lines
        ]
        assert all(ln.batch_number == "77" for ln in r.lines)


def test_noemie_files_of_the_sandbox_json_without_a_server() -> None:
    files = noemie_files(
        [
            {
                "remittance_id": "RSP-000003",
                "payer": "AMO",
                "batch_number": "B10",
                "paid_on": "2026-06-15",
                "payment_reference": "VIR AMO RSP-000003",
                "claims": [{"claim_number": "101", "status": "paid", "paid_cents": 650}],
            }
        ]
    )
    (only,) = files
    assert only["name"] == "20260615-AMO.rsp" and only["payer"] == "AMO"
    (r,) = parse_noemie(only["content"], "f")
    assert r.remittance_id == "AMO:VIR AMO RSP-000003" and r.lines[0].batch_number == "B10"


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
