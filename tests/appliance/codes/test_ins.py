"""The INS DataMatrix gives the five traits and a matricule whose key is checked."""

from datetime import date

import pytest

from appliance.codes.errors import InsCodeError
from appliance.codes.ins import HEADER, InsOid, build_ins_payload, parse_ins
from sandbox.samples import MARIE

GS = b"\x1d"


def test_the_traits_are_read_from_an_ans_layout_payload() -> None:
    ins = parse_ins(build_ins_payload(MARIE))
    assert ins.to_fields() == {
        "matricule": MARIE.matricule,
        "oid": "1.2.250.1.213.1.4.10",
        "birth_name": "DURAND",
        "first_names": "MARIE CLAIRE",
        "sex": "F",
        "birth_date": "1982-08-19",
        "birth_place": "75056",
    }
    assert ins.problems == ()
    assert ins.register is InsOid.TEST


def test_fields_may_come_in_any_order() -> None:
    payload = (
        HEADER
        + b"S5FS72A004S601-02-1990S41'ILE"
        + GS
        + b"S2"
        + InsOid.NIR.value.encode()
        + GS
        + b"S1"
        + MARIE.matricule.encode()
        + b"S3ANNE"
    )
    ins = parse_ins(payload)
    assert (ins.sex, ins.birth_place, ins.birth_date, ins.birth_name, ins.first_names) == (
        "F",
        "2A004",
        date(1990, 2, 1),
        "1'ILE",
        "ANNE",
    )
    assert ins.register is InsOid.NIR


@pytest.mark.parametrize(
    ("oid", "register"),
    [(o.value, o) for o in InsOid],
)
def test_the_oid_tells_the_register(oid: str, register: InsOid) -> None:
    payload = build_ins_payload(MARIE).replace(InsOid.TEST.value.encode(), oid.encode())
    assert parse_ins(payload).register is register


def test_a_wrong_matricule_key_is_a_problem_not_a_crash() -> None:
    payload = build_ins_payload(MARIE).replace(MARIE.matricule.encode(), MARIE.matricule[:13].encode() + b"00")
    ins = parse_ins(payload)
    assert ins.problems == (f"NIR key 00 does not match, expected {MARIE.matricule[13:]}",)


def test_an_unknown_oid_is_a_problem() -> None:
    payload = build_ins_payload(MARIE).replace(InsOid.TEST.value.encode(), b"1.2.3.4")
    assert "not an INS register" in parse_ins(payload).problems[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.replace(b"IS01", b"IS02"), "must start with IS01"),
        (lambda p: p.replace(b"S6", b"S9"), "unknown field 'S9'"),
        (lambda p: p.replace(b"19-08-1982", b"31-02-1982"), "not a calendar date"),
        (lambda p: p.replace(b"19-08-1982", b"1982-08-19"), "not DD-MM-YYYY"),
        (lambda p: p.replace(b"S5F", b"S5X"), "must be M, F or I"),
        (lambda p: p[: p.index(b"S7")], r"lacks S7 \(birth_place\)"),
        (lambda p: p + b"S1" + MARIE.matricule.encode(), "repeats field S1"),
    ],
)
def test_a_broken_layout_raises_an_ins_error_naming_the_fault(mutate, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InsCodeError, match=message):
        parse_ins(mutate(build_ins_payload(MARIE)))
