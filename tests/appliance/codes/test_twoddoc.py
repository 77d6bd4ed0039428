"""2D-DOC (ANTS, C40): reading the header and the fields, and checking the ECDSA signature."""

from __future__ import annotations

import base64
from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.codes.errors import TwoDDocError
from appliance.codes.trust import TrustList
from appliance.codes.twoddoc import (
    DATA_IDENTIFIERS,
    GS,
    RS,
    US,
    SignatureStatus,
    TwoDDoc,
    TwoDDocField,
    looks_like_2d_doc,
    parse_2d_doc,
)
from sandbox.twoddoc_issuer import encode_header, issue_2d_doc, sign, trust_list

TRUST = trust_list()

ADDRESS_FIELDS = [
    ("10", "M JEAN DUPONT"),  # variable, max 38
    ("22", "12 RUE DES LILAS"),  # variable, max 38
    ("24", "75011"),  # fixed, 5
    ("25", "PARIS"),  # variable, max 32
    ("26", "FR"),  # fixed, 2 (last)
]


def _issue(**kwargs: object) -> bytes:
    options: dict[str, object] = {
        "doc_type": "00",
        "issue_date": date(2024, 3, 1),
        "signature_date": date(2024, 3, 2),
    }
    options.update(kwargs)
    fields = options.pop("fields", ADDRESS_FIELDS)
    return issue_2d_doc(fields, **options)  # type: ignore[arg-type]


def _text(payload: bytes) -> str:
    return payload.decode("ascii").replace(GS, "<GS>").replace(RS, "<RS>").replace(US, "<US>")


def _bytes(text: str) -> bytes:
    return text.replace("<GS>", GS).replace("<RS>", RS).replace("<US>", US).encode("ascii")


# --- the header -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "perimeter", "country", "header_length"),
    [("02", None, None, 22), ("03", "01", None, 24), ("04", "01", "FR", 26)],
)
def test_each_version_has_its_own_header(
    version: str, perimeter: str | None, country: str | None, header_length: int
) -> None:
    doc = parse_2d_doc(_issue(version=version), TRUST)
    assert doc.version == version
    assert (doc.ca_id, doc.cert_id) == ("FR00", "TS01")
    assert doc.issue_date == date(2024, 3, 1)
    assert doc.signature_date == date(2024, 3, 2)
    assert doc.doc_type == "00"
    assert doc.perimeter == perimeter
    assert doc.country == country
    assert doc.signed_bytes[header_length : header_length + 2] == b"10"


def test_the_header_reads_exactly_as_the_specification_lays_it_out() -> None:
    # DC | 04 | FR00 | TS01 | 1E58 | 1E59 | B2 | 01 | FR, then the message.
    doc = parse_2d_doc(_bytes("DC04FR00TS011E581E59B201FR10A<US>"), TRUST)
    assert doc.version == "04"
    assert (doc.ca_id, doc.cert_id, doc.doc_type, doc.perimeter, doc.country) == (
        "FR00",
        "TS01",
        "B2",
        "01",
        "FR",
    )
    assert doc.issue_date == date(2021, 4, 8)  # 0x1E58 = 7768 days after 2000-01-01
    assert doc.signature_date == date(2021, 4, 9)


def test_ffff_dates_mean_no_date() -> None:
    doc = parse_2d_doc(_issue(issue_date=None, signature_date=None), TRUST)
    assert doc.signed_bytes[12:20] == b"FFFFFFFF"
    assert doc.issue_date is None
    assert doc.signature_date is None
    assert doc.to_fields()["issue_date"] is None
    assert doc.signature_status is SignatureStatus.VALID


def test_dates_count_days_from_the_first_of_january_2000() -> None:
    doc = parse_2d_doc(_issue(issue_date=date(2000, 1, 1), signature_date=date(2000, 1, 2)), TRUST)
    assert doc.signed_bytes[12:20] == b"00000001"
    assert (doc.issue_date, doc.signature_date) == (date(2000, 1, 1), date(2000, 1, 2))


# --- the signature ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["02", "03", "04"])
@pytest.mark.parametrize(("cert_id", "raw_length"), [("TS01", 64), ("TS02", 96), ("TS03", 132)])
def test_a_signed_document_verifies_for_every_version_and_curve(version: str, cert_id: str, raw_length: int) -> None:
    doc = parse_2d_doc(_issue(version=version, cert_id=cert_id), TRUST)
    assert doc.signature_status is SignatureStatus.VALID
    assert doc.valid
    assert doc.problems == ()
    assert len(doc.signature) == raw_length  # r||s on P-256, P-384, P-521


def test_the_signature_covers_every_byte_before_the_unit_separator() -> None:
    payload = _issue()
    doc = parse_2d_doc(payload, TRUST)
    assert doc.signed_bytes == payload[: payload.index(US.encode())]


def test_one_changed_byte_of_content_makes_the_signature_invalid() -> None:
    payload = _issue()
    forged = payload.replace(b"75011", b"75012")
    doc = parse_2d_doc(forged, TRUST)
    assert doc.get("24") == "75012"
    assert doc.signature_status is SignatureStatus.INVALID
    assert doc.problems == ("signature does not match the content",)


def test_a_changed_header_date_makes_the_signature_invalid() -> None:
    payload = bytearray(_issue())
    payload[15] = ord("0") if payload[15] != ord("0") else ord("1")
    doc = parse_2d_doc(bytes(payload), TRUST)
    assert doc.signature_status is SignatureStatus.INVALID


def test_a_document_signed_by_another_key_than_the_one_it_names_is_invalid() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    impostor = ec.derive_private_key(0xBAD_5EED, ec.SECP256R1())
    doc = parse_2d_doc(_issue(key=impostor), TRUST)
    assert doc.signature_status is SignatureStatus.INVALID
    assert doc.problems == ("signature does not match the content",)


def test_a_certificate_missing_from_the_trust_list_gives_unknown_key() -> None:
    doc = parse_2d_doc(_issue(), TrustList())
    assert doc.signature_status is SignatureStatus.UNKNOWN_KEY
    assert doc.problems == ("no public key for certificate FR00/TS01 in the trust list",)
    assert doc.to_fields()["signature"] == "unknown-key"
    assert doc.get("10") == "M JEAN DUPONT"  # the content is still read


def test_a_document_without_unit_separator_has_no_signature() -> None:
    payload = _issue()
    unsigned = payload[: payload.index(US.encode())]
    doc = parse_2d_doc(unsigned, TRUST)
    assert doc.signature_status is SignatureStatus.INVALID
    assert doc.problems == ("no signature",)
    assert doc.signed_bytes == unsigned
    assert doc.get("26") == "FR"


def test_an_empty_signature_is_no_signature() -> None:
    payload = _issue()
    doc = parse_2d_doc(payload[: payload.index(US.encode()) + 1], TRUST)
    assert doc.signature_status is SignatureStatus.INVALID
    assert doc.problems == ("no signature",)


def test_a_signature_of_the_wrong_length_is_invalid_not_a_crash() -> None:
    # Signed with the P-256 key, but the header names TS02, a P-384 key: 64 bytes where 96 are needed.
    from sandbox.twoddoc_issuer import sandbox_certificate

    doc = parse_2d_doc(_issue(cert_id="TS02", key=sandbox_certificate("TS01").private_key), TRUST)
    assert doc.signature_status is SignatureStatus.INVALID
    assert doc.problems == ("signature is 64 bytes long where a P-384 key needs 96",)


@pytest.mark.parametrize(
    ("signature", "problem"),
    [
        ("ABC1DEF", "characters outside A-Z and 2-7 ('1')"),
        ("abcdefgh", "characters outside A-Z and 2-7"),
        ("ABCDEFGHI", "9 characters is not a possible unpadded length"),
        ("AB======", "characters outside A-Z and 2-7 ('=')"),
        ("AB" + RS, "characters outside A-Z and 2-7 ('\\x1e')"),
        ("AF", "not canonical Base32"),
    ],
)
def test_a_signature_that_is_not_base32_is_invalid_with_a_clear_problem(signature: str, problem: str) -> None:
    payload = _issue()
    broken = payload[: payload.index(US.encode()) + 1] + signature.encode("ascii")
    doc = parse_2d_doc(broken, TRUST)
    assert doc.signature_status is SignatureStatus.INVALID
    assert len(doc.problems) == 1
    assert problem in doc.problems[0]
    assert doc.signature == b""


def test_an_unknown_key_also_reports_a_malformed_signature() -> None:
    payload = _issue()
    broken = payload[: payload.index(US.encode()) + 1] + b"NOT1BASE32"
    doc = parse_2d_doc(broken, TrustList())
    assert doc.signature_status is SignatureStatus.UNKNOWN_KEY
    assert doc.problems[0] == "no public key for certificate FR00/TS01 in the trust list"
    assert "not Base32" in doc.problems[1]


def test_the_issuer_signature_is_unpadded_base32_of_r_and_s() -> None:
    from sandbox.twoddoc_issuer import sandbox_certificate

    text = sign(b"DC04...", sandbox_certificate("TS01").private_key)
    assert len(text) == 103 and "=" not in text  # ceil(64 * 8 / 5)
    assert len(base64.b32decode(text + "=")) == 64


# --- the annex (version 04) -------------------------------------------------------------------------------


def test_the_annex_after_the_signature_is_read_apart_and_is_not_signed() -> None:
    payload = _issue(annex=[("01", "SERIE 42")])
    assert payload.endswith(_bytes("<GS>01SERIE 42"))
    doc = parse_2d_doc(payload, TRUST)
    assert doc.signature_status is SignatureStatus.VALID
    assert doc.annex == (TwoDDocField("01", "Identifiant unique du document", "SERIE 42"),)
    assert "01" not in doc.to_fields()["data"]
    # Changing the annex does not touch the signature: its values cannot be trusted.
    changed = parse_2d_doc(payload.replace(b"SERIE 42", b"SERIE 43"), TRUST)
    assert changed.signature_status is SignatureStatus.VALID
    assert changed.annex[0].value == "SERIE 43"


# --- the fields -------------------------------------------------------------------------------------------


def test_the_issuer_terminates_only_variable_fields_that_are_neither_full_nor_last() -> None:
    payload = _issue(version="02")
    header = "DC02FR00TS01227A227B00"  # 2024-03-01 and 2024-03-02 are days 0x227A and 0x227B
    assert _text(payload).startswith(header + "10M JEAN DUPONT<GS>2212 RUE DES LILAS<GS>247501125PARIS<GS>26FR<US>")


def test_fixed_and_variable_fields_are_read_with_their_names() -> None:
    doc = parse_2d_doc(_issue(), TRUST)
    assert doc.fields == (
        TwoDDocField("10", DATA_IDENTIFIERS["10"].name, "M JEAN DUPONT"),
        TwoDDocField("22", DATA_IDENTIFIERS["22"].name, "12 RUE DES LILAS"),
        TwoDDocField("24", DATA_IDENTIFIERS["24"].name, "75011"),
        TwoDDocField("25", DATA_IDENTIFIERS["25"].name, "PARIS"),
        TwoDDocField("26", DATA_IDENTIFIERS["26"].name, "FR"),
    )
    assert DATA_IDENTIFIERS["24"].fixed and not DATA_IDENTIFIERS["25"].fixed


def test_a_fixed_length_field_needs_no_terminator_even_before_another_field() -> None:
    doc = parse_2d_doc(_bytes("DC02FR00TS01FFFFFFFF0024750112612RUE<US>"), TRUST)
    assert [(f.id, f.value) for f in doc.fields] == [("24", "75011"), ("26", "12"), ("RU", "E")]


def test_a_variable_field_at_its_maximum_length_ends_without_a_group_separator() -> None:
    full = "X" * 38  # field 10 holds at most 38 characters
    payload = _issue(fields=[("10", full), ("25", "PARIS"), ("26", "FR")])
    assert _text(payload)[26:].startswith("10" + full + "25PARIS<GS>26FR<US>")
    doc = parse_2d_doc(payload, TRUST)
    assert doc.signature_status is SignatureStatus.VALID
    assert doc.get("10") == full
    assert doc.get("25") == "PARIS"


def test_a_group_separator_after_a_full_variable_field_is_tolerated() -> None:
    doc = parse_2d_doc(_bytes("DC02FR00TS01FFFFFFFF0010" + "Y" * 38 + "<GS>25PARIS<US>"), TRUST)
    assert [(f.id, f.value) for f in doc.fields] == [("10", "Y" * 38), ("25", "PARIS")]


def test_the_last_variable_field_before_the_unit_separator_needs_no_terminator() -> None:
    doc = parse_2d_doc(_issue(fields=[("24", "75011"), ("25", "PARIS")]), TRUST)
    assert doc.get("25") == "PARIS"
    assert doc.signed_bytes.endswith(b"25PARIS")


def test_a_trailing_group_separator_before_the_unit_separator_is_tolerated() -> None:
    doc = parse_2d_doc(_bytes("DC02FR00TS01FFFFFFFF0025PARIS<GS><US>"), TRUST)
    assert [(f.id, f.value) for f in doc.fields] == [("25", "PARIS")]


def test_a_record_separator_marks_a_truncated_value() -> None:
    payload = _issue(fields=[("12", "JEAN CHRISTOPHE MARIE"), ("13", "DUPONT"), ("24", "75011")], truncated={"12"})
    assert _bytes("12JEAN CHRISTOPHE MARIE<RS>13DUPONT<GS>2475011<US>") in payload
    doc = parse_2d_doc(payload, TRUST)
    assert doc.signature_status is SignatureStatus.VALID
    assert [f.truncated for f in doc.fields] == [True, False, False]
    assert doc.to_fields()["truncated"] == ["12"]
    assert doc.to_fields()["data"]["12"] == "JEAN CHRISTOPHE MARIE"


def test_an_unknown_identifier_is_read_as_a_variable_field() -> None:
    doc = parse_2d_doc(_bytes("DC04FR00TS01FFFFFFFFB201FRF0DEPOT<GS>F1NEG<GS>2475011<US>"), TRUST)
    assert [(f.id, f.name, f.value) for f in doc.fields] == [
        ("F0", None, "DEPOT"),
        ("F1", None, "NEG"),
        ("24", DATA_IDENTIFIERS["24"].name, "75011"),
    ]


def test_outside_the_ants_perimeter_every_identifier_is_variable() -> None:
    doc = parse_2d_doc(_bytes("DC03FR00TS01FFFFFFFF00022475011123<GS>25PARIS<US>"), TRUST)
    assert doc.perimeter == "02"
    assert [(f.id, f.name, f.value) for f in doc.fields] == [("24", None, "75011123"), ("25", None, "PARIS")]


def test_the_published_ants_specimen_reads_completely() -> None:
    # The tax notice specimen (type 28) of the ANTS documentation, signed by FR00/0001.
    specimen = _bytes(
        "DC04FR000001FFFF23DC2801FR432,75<GS>44227801234567845202146RETI PATRICK<GS>4A31072022"
        "4Y145 RUE JULLIARD/ZASPECIMEN/78320/LEVIS STNOM<GS>4163198<GS>47300112345678948RETISOPHIE<GS>"
        "4907019877654324V3542<GS>4W182<GS>4X3724<GS><US>6W76EBC3I2LWHBVGNNYTL34SC6V32S2GDCIQQZLZNMTKCHN"
        "VEUISJYUQH5WE3AJJICBNG3YMQ2NXXHP5ZHVOQE332R6TUJDHNOHQ6BI"
    )
    assert looks_like_2d_doc(specimen)
    doc = parse_2d_doc(specimen, TRUST)
    assert doc.to_fields() == {
        "version": "04",
        "ca_id": "FR00",
        "cert_id": "0001",
        "issue_date": None,
        "signature_date": "2025-02-18",
        "doc_type": "28",
        "perimeter": "01",
        "country": "FR",
        "data": {
            "43": "2,75",
            "44": "2278012345678",
            "45": "2021",
            "46": "RETI PATRICK",
            "4A": "31072022",
            "4Y": "145 RUE JULLIARD/ZASPECIMEN/78320/LEVIS STNOM",
            "41": "63198",
            "47": "3001123456789",
            "48": "RETISOPHIE",
            "49": "0701987765432",
            "4V": "3542",
            "4W": "182",
            "4X": "3724",
        },
        "truncated": [],
        "signature": "unknown-key",
    }
    assert len(doc.signature) == 64


def test_to_fields_has_exactly_the_decode_command_keys() -> None:
    fields = parse_2d_doc(_issue(version="02"), TRUST).to_fields()
    assert list(fields) == [
        "version",
        "ca_id",
        "cert_id",
        "issue_date",
        "signature_date",
        "doc_type",
        "perimeter",
        "country",
        "data",
        "truncated",
        "signature",
    ]
    assert fields["version"] == "02"
    assert fields["issue_date"] == "2024-03-01"
    assert fields["perimeter"] is None and fields["country"] is None
    assert fields["data"] == dict(ADDRESS_FIELDS)
    assert fields["signature"] == "valid"


# --- malformed input: TwoDDocError, in plain words ----------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "too short to hold a header"),
        (b"DC0", "too short to hold a header"),
        (b"IS0100000", "not a 2D-DOC: it starts with 'IS'"),
        (b"DC01FR00TS01FFFFFFFF00", "version '01' is not supported"),
        (b"DC05FR00TS01FFFFFFFF00", "version '05' is not supported"),
        (b"DC04FR00TS01FFFFFFFF0001", "header is cut short: 24 characters where version 04 needs 26"),
        (b"DC02FR00TS01ZZZZFFFF00", "2D-DOC issue date 'ZZZZ' is not hexadecimal"),
        (b"DC02FR00TS01FFFF1e5800", "2D-DOC signature date '1e58' is not hexadecimal"),
        (b"DC02FR00TS01+1E5FFFF00", "2D-DOC issue date '+1E5' is not hexadecimal"),
        (b"DC02fr00TS01FFFFFFFF00", "2D-DOC CA id 'fr00' is not 4 capital letters or digits"),
        (b"DC02FR00TS\x1d1FFFFFFFF00", "certificate id 'TS\\x1d1' is not 4 capital letters or digits"),
        (b"DC02FR00TS01FFFFFFFF0-", "document type '0-' is not 2 capital letters or digits"),
        (b"DC04FR00TS01FFFFFFFF000.FR", "perimeter '0.' is not 2 capital letters or digits"),
        (b"DC04FR00TS01FFFFFFFF00011F", "country '1F' is not 2 capital letters"),
        ("DC02FR00TS01FFFFFFFF0010JÉRÔME".encode(), "not ASCII text (0xC3 at position 25)"),
        (b"DC02FR00TS01FFFFFFFF00247501", "field 24 (Code postal"),
        (b"DC02FR00TS01FFFFFFFF0024750", "is cut short: 3 characters where 5 are required"),
        (b"DC02FR00TS01FFFFFFFF002475\x1d12\x1f", "has a separator within its fixed length of 5"),
        (b"DC02FR00TS01FFFFFFFF0010A\x1d1", "message ends in the middle of a data identifier ('1')"),
        (b"DC02FR00TS01FFFFFFFF0010A\x1d\x1d10B\x1f", "data identifier '\\x1d1' (character 4)"),
        (b"DC02FR00TS01FFFFFFFF00a1B\x1f", "data identifier 'a1' (character 0) is not 2 capital letters"),
        (b"DC02FR00TS01FFFFFFFF0010A\x1d10B\x1f", "data identifier 10 appears twice"),
        (b"DC02FR00TS01FFFFFFFF0031FR76\x1d\x1f", "field 31 (Code IBAN) is too short: 4 characters"),
        (b"DC02FR00TS01FFFFFFFF0010A\x07B\x1f", "field 10 (Ligne 1 de l'adresse"),
        (b"DC02FR00TS01FFFFFFFF0010A\x1cB\x1f", "holds a control character (0x1C)"),
        (b"DC04FR00TS01FFFFFFFF0001FR10A\x1fAAAA\x1d1", "annex ends in the middle of a data identifier"),
    ],
)
def test_malformed_input_raises_a_two_d_doc_error_naming_the_fault(payload: bytes, message: str) -> None:
    with pytest.raises(TwoDDocError) as caught:
        parse_2d_doc(payload, TRUST)
    assert message in str(caught.value)


def test_looks_like_2d_doc_is_a_cheap_check_of_the_marker_and_version() -> None:
    assert looks_like_2d_doc(_issue())
    assert looks_like_2d_doc(b"DC02")
    assert looks_like_2d_doc(b"DC01FR00")  # routed to the parser, which says version 01 is not supported
    assert not looks_like_2d_doc(b"DC05FR00")
    assert not looks_like_2d_doc(b"DCXX")
    assert not looks_like_2d_doc(b"IS01" + b"0" * 22 + b"S1123")
    assert not looks_like_2d_doc(b"0103400930000120\x1d")
    assert not looks_like_2d_doc(b"")


def test_the_issuer_refuses_values_the_specification_does_not_allow() -> None:
    with pytest.raises(ValueError, match="needs exactly 5 characters"):
        _issue(fields=[("24", "7501")])
    with pytest.raises(ValueError, match="holds at most 38 characters"):
        _issue(fields=[("10", "X" * 39)])
    with pytest.raises(ValueError, match="cannot be truncated"):
        _issue(fields=[("24", "75011")], truncated={"24"})
    with pytest.raises(ValueError, match="neither perimeter nor country"):
        encode_header(
            version="02",
            ca_id="FR00",
            cert_id="TS01",
            issue_date=None,
            signature_date=None,
            doc_type="00",
            country="FR",
        )


# --- a real DataMatrix --------------------------------------------------------------------------------------


def test_a_rendered_datamatrix_decodes_back_to_a_document_that_verifies() -> None:
    from drivers.imaging import Symbol, decode_frame, render

    payload = _issue(fields=[*ADDRESS_FIELDS[:3], ("12", "JEAN CHRISTOPHE MARIE")], cert_id="TS02", truncated={"12"})
    found = decode_frame(render(payload, Symbol.DATAMATRIX), [Symbol.DATAMATRIX])
    assert len(found) == 1
    assert found[0].raw == payload  # the separators survive: read from .bytes, not .text
    doc = parse_2d_doc(found[0].raw, TRUST)
    assert doc.signature_status is SignatureStatus.VALID
    assert doc.to_fields()["truncated"] == ["12"]


# --- whatever the bytes: a document or a TwoDDocError ------------------------------------------------------

VALID = _issue(fields=[*ADDRESS_FIELDS, ("12", "JEAN")], truncated={"12"})
VALID_DOC = parse_2d_doc(VALID, TRUST)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_or_error(data: bytes) -> TwoDDoc | None:
    try:
        doc = parse_2d_doc(data, TRUST)
    except TwoDDocError as exc:
        assert str(exc).startswith(("2D-DOC", "not a 2D-DOC"))
        return None
    assert isinstance(doc.signature_status, SignatureStatus)
    assert (doc.signature_status is SignatureStatus.VALID) == (doc.problems == ())
    doc.to_fields()
    return doc


def _still_valid_means_untouched(doc: TwoDDoc | None) -> None:
    """A mutated code may verify only if the signed part is unchanged (the mutation hit the annex)."""
    if doc is not None and doc.signature_status is SignatureStatus.VALID:
        assert doc.signed_bytes == VALID_DOC.signed_bytes
        assert doc.fields == VALID_DOC.fields


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_two_d_doc_error(data: bytes) -> None:
    _parse_or_error(data)


@FAST
@given(st.sampled_from([b"DC02", b"DC03", b"DC04"]), st.binary(max_size=200))
def test_random_bytes_after_a_plausible_marker_never_raise_anything_else(prefix: bytes, data: bytes) -> None:
    _parse_or_error(prefix + data)


@FAST
@given(st.data())
def test_byte_flips_of_a_valid_code_are_read_or_refused_never_a_crash(data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(VALID) - 1))
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != VALID[index]))
    mutated = VALID[:index] + bytes([byte]) + VALID[index + 1 :]
    doc = _parse_or_error(mutated)
    _still_valid_means_untouched(doc)


@FAST
@given(st.integers(0, len(VALID) - 1))
def test_truncations_of_a_valid_code_are_read_or_refused_never_a_crash(length: int) -> None:
    doc = _parse_or_error(VALID[:length])
    if doc is not None:
        assert doc.signature_status is SignatureStatus.INVALID


@FAST
@given(
    st.integers(0, len(VALID)),
    st.binary(min_size=1, max_size=8) | st.sampled_from([GS.encode(), RS.encode(), US.encode(), b"FFFF", b"\xc3\xa9"]),
)
def test_insertions_into_a_valid_code_are_read_or_refused_never_a_crash(index: int, inserted: bytes) -> None:
    doc = _parse_or_error(VALID[:index] + inserted + VALID[index:])
    _still_valid_means_untouched(doc)
