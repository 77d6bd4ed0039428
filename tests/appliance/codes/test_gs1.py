"""Medicine box DataMatrix: GTIN with its CIP13, expiry (day 00 = end of month), lot, serial."""

from datetime import date

import pytest

from appliance.codes.errors import Gs1Error
from appliance.codes.gs1 import looks_like_gs1, parse_gs1

BOX = b"010340093000012017270500" + b"10AB12\x1d21SN0000123456"


def test_the_fmd_data_is_read_with_the_cip13_inside_the_gtin() -> None:
    box = parse_gs1(BOX)
    assert box.to_fields() == {
        "gtin": "03400930000120",
        "cip13": "3400930000120",
        "expiry": "2027-05-31",
        "lot": "AB12",
        "serial": "SN0000123456",
    }


@pytest.mark.parametrize("prefix", [b"]d2", b"]C1", b"]Q3"])
def test_symbology_prefixes_are_recognised_and_removed(prefix: bytes) -> None:
    assert looks_like_gs1(prefix + BOX)
    box = parse_gs1(prefix + BOX)
    assert box.symbology == prefix.decode()
    assert box.serial == "SN0000123456"


def test_a_leading_fnc1_sent_as_group_separator_is_ignored() -> None:
    assert parse_gs1(b"\x1d" + BOX).gtin == "03400930000120"


def test_a_real_expiry_day_is_kept() -> None:
    assert parse_gs1(BOX.replace(b"17270500", b"17270514")).expiry == date(2027, 5, 14)


def test_without_the_separator_the_lot_swallows_the_serial() -> None:
    box = parse_gs1(BOX.replace(b"\x1d", b""))
    assert box.lot == "AB1221SN0000123456"
    assert box.serial is None


def test_a_foreign_gtin_has_no_cip13() -> None:
    assert parse_gs1(b"0104012345678901").cip13 is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"0103400930000121", "check digit"),
        (BOX.replace(b"17270500", b"17271300"), r"\(17\)"),
        (b"17270500", "no product code"),
        (b"]d2", "empty"),
        (b"]", "cannot be read"),
        (BOX + b"\xff", "not ASCII"),
        (BOX.replace(b"\x1d", b"\x1e"), "control characters"),
    ],
)
def test_bad_boxes_raise_a_gs1_error(payload: bytes, message: str) -> None:
    with pytest.raises(Gs1Error, match=message):
        parse_gs1(payload)


def test_biips_company_prefix_table_is_let_go_and_boxes_still_parse() -> None:
    """The table costs the kiosk about 15 MB and the counter never asks whose prefix a GTIN has: it is
    emptied when the module loads. This fails if a biip release moves it (then look again at the memory)."""
    import biip.gs1_prefixes

    assert biip.gs1_prefixes._GS1_COMPANY_PREFIX_TRIE == {}
    assert biip.gs1_prefixes.GS1CompanyPrefix.extract("03400930000120") is None
    assert parse_gs1(BOX).cip13 == "3400930000120"
