"""The INS DataMatrix gives the five traits and a matricule whose key is checked."""

from dataclasses import replace
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.codes.errors import InsCodeError
from appliance.codes.ins import HEADER, InsOid, build_ins_payload, parse_ins
from appliance.codes.nir import nir_key
from sandbox.samples import MARIE

GS = b"\x1d"
TEST_OID = InsOid.TEST.value.encode()  # "1.2.250.1.213.1.4.10": 20 characters, the maximum of S2


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
    ins = parse_ins(build_ins_payload(replace(MARIE, oid=oid)))
    assert ins.register is register and ins.problems == ()


def test_a_wrong_matricule_key_is_a_problem_not_a_crash() -> None:
    payload = build_ins_payload(MARIE).replace(MARIE.matricule.encode(), MARIE.matricule[:13].encode() + b"00")
    ins = parse_ins(payload)
    assert ins.problems == (f"NIR key 00 does not match, expected {MARIE.matricule[13:]}",)


def test_an_unknown_oid_is_a_problem() -> None:
    payload = build_ins_payload(replace(MARIE, oid="1.2.3.4"))
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


# --- variable fields at their maximum length carry no separator (ANS format v2.2, as 2D-DOC)

HUNDRED_FIRST = ("MARIE CLAIRE " * 8)[:99] + "E"
HUNDRED_BIRTH = ("DURAND-" * 15)[:99] + "X"


def _body(*fields: bytes) -> bytes:
    return HEADER + b"".join(fields)


def test_a_twenty_character_oid_is_followed_directly_by_the_next_field() -> None:
    assert len(TEST_OID) == 20
    payload = _body(
        b"S1" + MARIE.matricule.encode(),
        b"S2" + TEST_OID,
        b"S3MARIE CLAIRE",
        GS,
        b"S4DURAND",
        GS,
        b"S5FS619-08-1982S775056",
    )
    ins = parse_ins(payload)
    assert (ins.oid, ins.first_names, ins.birth_name) == (InsOid.TEST.value, "MARIE CLAIRE", "DURAND")
    assert ins.problems == ()


def test_a_separator_after_a_field_at_its_maximum_length_is_tolerated() -> None:
    payload = _body(b"S2" + TEST_OID + GS, b"S1" + MARIE.matricule.encode(), b"S3MARIE", GS, b"S4DURAND", GS)
    ins = parse_ins(payload + b"S5FS619-08-1982S775056")
    assert ins.oid == InsOid.TEST.value and ins.first_names == "MARIE"


def test_hundred_character_names_need_no_separator() -> None:
    assert len(HUNDRED_FIRST) == len(HUNDRED_BIRTH) == 100
    payload = _body(
        b"S3" + HUNDRED_FIRST.encode(),
        b"S4" + HUNDRED_BIRTH.encode(),
        b"S5F",
        b"S2" + TEST_OID,
        b"S1" + MARIE.matricule.encode(),
        b"S619-08-1982S775056",
    )
    assert GS not in payload
    ins = parse_ins(payload)
    assert (ins.first_names, ins.birth_name, ins.sex, ins.oid) == (HUNDRED_FIRST, HUNDRED_BIRTH, "F", InsOid.TEST)


def test_the_builder_leaves_out_the_separator_exactly_at_the_maximum() -> None:
    longest = replace(MARIE, first_names=HUNDRED_FIRST, birth_name=HUNDRED_BIRTH)
    payload = build_ins_payload(longest)
    assert b"S2" + TEST_OID + b"S3" + HUNDRED_FIRST.encode() + b"S4" + HUNDRED_BIRTH.encode() + b"S5F" in payload
    assert GS not in payload
    shorter = build_ins_payload(replace(MARIE, oid=InsOid.NIR.value, birth_name=HUNDRED_BIRTH[:99]))
    assert b"S2" + InsOid.NIR.value.encode() + GS in shorter and HUNDRED_BIRTH[:99].encode() + GS + b"S5" in shorter
    assert parse_ins(payload).to_fields() == {
        **parse_ins(build_ins_payload(MARIE)).to_fields(),
        "first_names": HUNDRED_FIRST,
        "birth_name": HUNDRED_BIRTH,
    }


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (b"S2" + b"1.2.250.1.213.1.4.100" + GS, r"S2 \(oid\) is longer than 20 characters"),
        (b"S2" + b"1.2.250.1.213.1.4.100", r"S2 \(oid\) is longer than 20 characters"),
        (b"S4" + HUNDRED_BIRTH.encode() + b"Z" + GS, r"S4 \(birth_name\) is longer than 100 characters"),
        (b"S3" + HUNDRED_FIRST.encode() + b"ZZ", r"S3 \(first_names\) is longer than 100 characters"),
        (b"S4" + HUNDRED_BIRTH.encode() + b"S4X", r"S4 \(birth_name\) is longer than 100 characters"),
    ],
)
def test_a_variable_field_over_its_maximum_is_refused(field: bytes, message: str) -> None:
    others = {
        b"S1": b"S1" + MARIE.matricule.encode(),
        b"S2": b"S2" + TEST_OID,
        b"S3": b"S3MARIE" + GS,
        b"S4": b"S4DURAND" + GS,
        b"S5": b"S5F",
        b"S6": b"S619-08-1982",
        b"S7": b"S775056",
    }
    del others[field[:2]]
    with pytest.raises(InsCodeError, match=message):
        parse_ins(_body(field, *others.values()))


@settings(max_examples=150, deadline=None)
@given(
    oid=st.sampled_from([o.value for o in InsOid]),
    first_names=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ -'", min_size=1, max_size=100).filter(str.strip),
    birth_name=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ -'", min_size=1, max_size=100).filter(str.strip),
)
def test_any_lengths_up_to_the_maximum_round_trip(oid: str, first_names: str, birth_name: str) -> None:
    identity = replace(MARIE, oid=oid, first_names=first_names, birth_name=birth_name)
    assert parse_ins(build_ins_payload(identity)) == identity


# --- the first digit of the matricule against the OID


def _matricule(first: str) -> str:
    body = first + MARIE.matricule[1:13]
    return body + nir_key(body)


@pytest.mark.parametrize("oid", [InsOid.NIR, InsOid.TEST, InsOid.DEMO])
@pytest.mark.parametrize("first", ["7", "8"])
def test_a_provisional_number_under_an_ins_nir_oid_is_an_error(oid: InsOid, first: str) -> None:
    ins = parse_ins(build_ins_payload(replace(MARIE, matricule=_matricule(first), oid=oid.value)))
    assert ins.problems == (
        f"INS matricule starts with {first}: a provisional number, which the INS-NIR OID {oid.value} cannot "
        "carry (an INS-NIR is a definitive NIR, starting with 1 or 2)",
    )


def test_other_first_digits_under_an_ins_nir_oid_are_not_a_definitive_nir() -> None:
    ins = parse_ins(build_ins_payload(replace(MARIE, matricule=_matricule("3"), oid=InsOid.NIR.value)))
    assert ins.problems == (
        "INS matricule starts with '3': not a definitive NIR (1 or 2), as the INS-NIR OID 1.2.250.1.213.1.4.8 requires",
    )


@pytest.mark.parametrize("first", ["1", "2", "7", "8"])
def test_the_ins_nia_oid_takes_a_waiting_number_shaped_like_a_nir(first: str) -> None:
    """The NIA is built like a NIR: the INSi qualification case TEST_2.05 returns one starting with 1."""
    ins = parse_ins(build_ins_payload(replace(MARIE, matricule=_matricule(first), oid=InsOid.NIA.value)))
    assert ins.problems == () and ins.register is InsOid.NIA


@pytest.mark.parametrize("first", ["1", "2"])
def test_a_definitive_nir_under_the_ins_nir_oids(first: str) -> None:
    for oid in (InsOid.NIR, InsOid.TEST, InsOid.DEMO):
        assert parse_ins(build_ins_payload(replace(MARIE, matricule=_matricule(first), oid=oid.value))).problems == ()


# --- real DataMatrix symbols, rendered and read back by zxing-cpp


def test_a_rendered_datamatrix_with_fields_at_their_maximum_reads_back() -> None:
    from drivers.imaging import Symbol, decode_frame, render

    longest = replace(MARIE, first_names=HUNDRED_FIRST, birth_name=HUNDRED_BIRTH)
    payload = build_ins_payload(longest)
    found = decode_frame(render(payload, Symbol.DATAMATRIX), [Symbol.DATAMATRIX])
    assert len(found) == 1 and found[0].raw == payload
    assert parse_ins(found[0].raw) == longest


def test_a_rendered_datamatrix_with_a_provisional_number_under_the_nir_oid_is_read_and_refused() -> None:
    from appliance.codes.reader import CodeReader
    from drivers.imaging import Symbol, decode_frame, render

    provisional = replace(MARIE, matricule=_matricule("8"), oid=InsOid.NIR.value)
    payload = build_ins_payload(provisional)
    found = decode_frame(render(payload, Symbol.DATAMATRIX), [Symbol.DATAMATRIX])
    assert [f.raw for f in found] == [payload]
    assert b"S2" + InsOid.NIR.value.encode() + GS in payload  # 19 characters: the separator is there
    decoded = CodeReader().read(found[0].raw)
    assert not decoded.valid and "a provisional number" in decoded.errors[0]
