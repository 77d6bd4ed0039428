"""apCV and ePrescription tokens are recognised by configurable patterns and kept byte for byte."""

import pytest

from appliance.codes.errors import OpaqueTokenError
from appliance.codes.kinds import CodeKind
from appliance.codes.opaque import OpaquePatterns, read_opaque


def test_the_sandbox_patterns_tell_apcv_from_eprescription() -> None:
    patterns = OpaquePatterns()
    assert patterns.match(b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE") is CodeKind.APCV
    assert patterns.match(b"EP7K2Q-9XWM-4TDA-LR8C") is CodeKind.EPRESCRIPTION
    assert patterns.match(b"EP7K2Q-9XWM-4TDA-LR8C-") is None
    assert patterns.match(b"hello") is None


def test_a_deployment_sets_its_own_patterns() -> None:
    patterns = OpaquePatterns(apcv=(r"^VITALE\|.+",), eprescription=(r"^[0-9]{22}$",))
    assert patterns.match(b"VITALE|\x00\x01binary") is CodeKind.APCV
    assert patterns.match(b"1234567890123456789012") is CodeKind.EPRESCRIPTION
    assert patterns.match(b"APCV01:c2FuZGJveC1jb250ZXh0LTAwMDE") is None


def test_a_broken_pattern_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        OpaquePatterns(apcv=("(",))


def test_binary_tokens_are_shown_in_base64_and_text_tokens_as_text() -> None:
    assert read_opaque(b"EP7K2Q-9XWM-4TDA-LR8C", CodeKind.EPRESCRIPTION, matched_pattern=True).to_fields() == {
        "token": "EP7K2Q-9XWM-4TDA-LR8C",
        "token_encoding": "text",
        "matched_pattern": True,
    }
    binary = read_opaque(b"\x00\xff", CodeKind.APCV, matched_pattern=False)
    assert binary.to_fields()["token"] == "AP8="
    assert binary.raw == b"\x00\xff"


def test_an_empty_token_is_refused() -> None:
    with pytest.raises(OpaqueTokenError):
        read_opaque(b"", CodeKind.APCV, matched_pattern=False)
