"""The reader decides what a scan is and never lets bad input escape as an exception."""

from __future__ import annotations

import pytest

from appliance.codes.kinds import CodeKind
from appliance.codes.reader import CodeReader
from sandbox.samples import all_samples
from sandbox.twoddoc_issuer import trust_list

SAMPLES = {sample.name: sample for sample in all_samples()}
KIND_OF_SAMPLE = {
    "apcv": CodeKind.APCV,
    "eprescription": CodeKind.EPRESCRIPTION,
    "ins": CodeKind.INS,
    "ins-wrong-key": CodeKind.INS,
    "box-doliprane": CodeKind.GS1,
    "amc-attestation": CodeKind.AMC_ATTESTATION,
    "unknown": CodeKind.UNKNOWN,
    "2ddoc-address": CodeKind.TWO_D_DOC,
    "2ddoc-forged": CodeKind.TWO_D_DOC,
}


@pytest.mark.parametrize("name", sorted(KIND_OF_SAMPLE))
def test_each_sample_is_recognised_and_judged(name: str) -> None:
    sample = SAMPLES[name]
    result = CodeReader(trust_list()).read(sample.payload)
    assert result.kind is KIND_OF_SAMPLE[name]
    assert result.valid is sample.expect_valid
    assert result.raw == sample.payload


def test_a_2d_doc_without_its_key_in_the_trust_list_is_not_valid() -> None:
    result = CodeReader().read(SAMPLES["2ddoc-address"].payload)
    assert result.fields["signature"] == "unknown-key"
    assert not result.valid


def test_the_symbology_prefix_is_kept_in_raw_but_not_in_the_fields() -> None:
    payload = b"]d2" + SAMPLES["box-doliprane"].payload
    result = CodeReader().read(payload)
    assert result.kind is CodeKind.GS1
    assert result.raw == payload
    assert result.fields["serial"] == "SN0000123456"


def test_a_gs1_symbology_reported_by_the_reader_makes_a_gs1_message() -> None:
    result = CodeReader().read(b"0104012345678901", symbology="]d2")
    assert result.kind is CodeKind.GS1
    assert result.valid


def test_an_opaque_code_matching_no_pattern_takes_the_kind_the_step_expects() -> None:
    token = b"\x02VENDOR-CONTEXT\x00\x01"
    assert CodeReader().read(token).kind is CodeKind.UNKNOWN
    expected = CodeReader().read(token, expect={CodeKind.APCV})
    assert expected.kind is CodeKind.APCV
    assert expected.valid
    assert expected.fields["matched_pattern"] is False
    ambiguous = CodeReader().read(token, expect={CodeKind.APCV, CodeKind.EPRESCRIPTION})
    assert ambiguous.kind is CodeKind.UNKNOWN


def test_a_structured_code_keeps_its_kind_whatever_the_step_expects() -> None:
    result = CodeReader().read(SAMPLES["box-doliprane"].payload, expect={CodeKind.EPRESCRIPTION})
    assert result.kind is CodeKind.GS1


def test_a_damaged_code_of_a_known_kind_says_what_is_wrong() -> None:
    result = CodeReader().read(b"IS01" + b"0" * 22 + b"S1123")
    assert result.kind is CodeKind.INS
    assert not result.valid
    assert result.errors == ("INS field S1 (matricule) must have 15 characters",)


def test_an_empty_scan_is_unknown_and_says_so() -> None:
    result = CodeReader().read(b"")
    assert result.kind is CodeKind.UNKNOWN
    assert result.errors == ("the code is empty",)


def test_a_prefix_reported_and_left_in_the_data_is_removed_once() -> None:
    payload = SAMPLES["ins"].payload
    result = CodeReader().read(b"]d1" + payload, symbology="]d1")
    assert result.kind is CodeKind.INS
    assert result.valid
