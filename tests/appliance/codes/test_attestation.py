"""The mutuelle attestation reader is tolerant and follows a configurable layout."""

from datetime import date
from pathlib import Path

import pytest

from appliance.codes.attestation import AttestationLayout, parse_attestation
from appliance.codes.config import CodeConfig, ConfigError
from appliance.codes.errors import AttestationError

GOOD = b"AMC01\x1d88888888\x1dSP,ISANTE\x1dCSR01\x1d0012345678\x1d20260101\x1d20261231"


def test_every_field_of_the_sandbox_layout_is_read() -> None:
    attestation = parse_attestation(GOOD)
    assert attestation.to_fields() == {
        "amc_number": "88888888",
        "conventions": ["SP", "ISANTE"],
        "csr": "CSR01",
        "member_number": "0012345678",
        "valid_from": "2026-01-01",
        "valid_to": "2026-12-31",
    }
    assert attestation.problems == ()
    assert attestation.covers(date(2026, 6, 1))
    assert not attestation.covers(date(2027, 1, 1))


def test_other_separators_spaces_and_date_styles_are_tolerated() -> None:
    attestation = parse_attestation(b"AMC01| 88888888 | SP+ISANTE |CSR01|42| 01/01/2026 |2026-12-31")
    assert attestation.conventions == ("SP", "ISANTE")
    assert (attestation.valid_from, attestation.valid_to) == (date(2026, 1, 1), date(2026, 12, 31))
    assert attestation.problems == ()


def test_named_fields_may_replace_positions() -> None:
    attestation = parse_attestation(b"AMC01;valid_to=31122026;amc_number=12345678;valid_from=01012026")
    assert attestation.amc_number == "12345678"
    assert attestation.valid_to == date(2026, 12, 31)
    assert attestation.problems == ()


def test_unreadable_fields_are_reported_one_by_one() -> None:
    attestation = parse_attestation(b"AMC01\x1d123\x1dSP\x1d\x1d\x1d20261301\x1d20250101")
    assert attestation.problems == (
        "AMC number '123' must be 8 to 10 digits",
        "attestation valid from '20261301' is not a date",
    )
    attestation = parse_attestation(b"AMC01\x1d12345678\x1d\x1d\x1d\x1d20261231\x1d20260101")
    assert attestation.problems == ("attestation period ends (2026-01-01) before it starts (2026-12-31)",)


def test_a_code_without_the_marker_is_not_an_attestation() -> None:
    with pytest.raises(AttestationError, match="marker"):
        parse_attestation(b"XYZ\x1d88888888")
    with pytest.raises(AttestationError, match="not text"):
        parse_attestation(b"AMC01\xff\xfe")


def test_a_payer_layout_is_read_from_the_configuration_file(tmp_path: Path) -> None:
    config_file = tmp_path / "comptoir.toml"
    config_file.write_text(
        """
[codes.attestation]
marker = "MUT"
separators = ["#"]
fields = ["member_number", "amc_number", "valid_from", "valid_to", "conventions"]
date_formats = ["%d%m%y"]
[codes.eprescription]
patterns = ["^[0-9]{22}$"]
""",
        encoding="utf-8",
    )
    config = CodeConfig.from_toml(config_file)
    attestation = parse_attestation(b"MUT#A77#12345678#010126#311226#PH2", config.attestation)
    assert (attestation.member_number, attestation.amc_number, attestation.conventions) == (
        "A77",
        "12345678",
        ("PH2",),
    )
    assert attestation.valid_to == date(2026, 12, 31)
    assert config.opaque.eprescription == ("^[0-9]{22}$",)
    assert isinstance(config.attestation, AttestationLayout)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[codes.attestation]\ncolour = 'red'\n", "unknown"),
        ("[codes.apcv]\npatterns = ['(']\n", "regular expression"),
        ("[codes\n", "cannot read"),
    ],
)
def test_a_bad_configuration_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    config_file = tmp_path / "bad.toml"
    config_file.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        CodeConfig.from_toml(config_file)
