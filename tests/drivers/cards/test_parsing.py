"""Pure parts: ATR rules, BER-TLV, the Vitale files and the CPS holder record (no pcscd needed)."""

from __future__ import annotations

import pytest

from appliance.cards import CardError, CardKind, CardReadError
from drivers.cards.apdu import iter_tlv, read_binary, read_binary_sfi, select_aid, tlv
from drivers.cards.atr import DEFAULT_ATR_RULES, AtrRules, atr_text
from drivers.cards.cps import parse_holder, verify_command
from drivers.cards.vitale import VITALE_AID, parse_vitale
from tests.drivers.cards.people import FATHER, MOTHER, PHARMACIST_RPPS
from tests.drivers.cards.virtual import CPS_ATR, UNKNOWN_ATR, VITALE_ATR, CardPerson, VirtualVitale


@pytest.mark.parametrize(
    ("atr", "kind"),
    [
        ("3B 75 13 00 00 43 09 EA 90 00", CardKind.VITALE),
        ("3B 75 13 00 00 45 09 FA 90 00", CardKind.VITALE),
        ("3B 75 13 00 00 49 09 EA 90 00", CardKind.VITALE),
        ("3B AC 00 40 2A 00 12 25 00 64 80 82 02 12 00 90 00", CardKind.CPS),
        ("3B 8F 80 01 00 31 B8 64 04 B0 EC C1 73 94 01 80 82 90 00 0E", CardKind.CPS),
        ("3F 65 25 00 2C 09 69 90 00", CardKind.UNKNOWN),  # Vitale 1: no Vitale 2 structure
        ("3B 8F 80 01 80 4F 0C A0 00 00 03 06 03 00 01 00 00 00 00 6A", CardKind.UNKNOWN),
        ("", CardKind.UNKNOWN),  # a mute card
    ],
)
def test_default_atr_rules(atr: str, kind: CardKind) -> None:
    assert DEFAULT_ATR_RULES.classify(bytes.fromhex(atr)) is kind


def test_virtual_cards_use_listed_atrs() -> None:
    assert DEFAULT_ATR_RULES.classify(VITALE_ATR) is CardKind.VITALE
    assert DEFAULT_ATR_RULES.classify(CPS_ATR) is CardKind.CPS
    assert DEFAULT_ATR_RULES.classify(UNKNOWN_ATR) is CardKind.UNKNOWN
    assert atr_text(VITALE_ATR) == "3B 75 13 00 00 44 09 EA 90 00"


def test_atr_rules_from_config_text() -> None:
    rules = AtrRules.parse("# comment\n\nVITALE   3b 75 13 00 00 .. 09 ea 90 00\ncps 3B AC .*\n")
    assert [r.kind for r in rules.rules] == [CardKind.VITALE, CardKind.CPS]
    assert rules.classify(bytes.fromhex("3B751300004A09EA9000")) is CardKind.VITALE
    with pytest.raises(ValueError, match="line 1"):
        AtrRules.parse("badge 3B 00")
    with pytest.raises(ValueError, match="line 2"):
        AtrRules.parse("cps 3B\nvitale 3B [")


def test_tlv_round_trip_with_long_lengths_and_padding() -> None:
    long = b"x" * 300
    data = tlv(0x65, tlv(0x80, b"A")) + tlv(0x5F20, b"B") + tlv(0x81, long) + b"\x00\x00"
    parsed = list(iter_tlv(data))
    assert [(t.tag, len(t.value)) for t in parsed] == [(0x65, 3), (0x5F20, 1), (0x81, 300)]
    assert parsed[0].find(0x80) == b"A"
    with pytest.raises(CardReadError):
        list(iter_tlv(tlv(0x80, b"abc")[:-1]))
    with pytest.raises(CardReadError):
        list(iter_tlv(b"\x80\x85\x00"))


def test_apdu_builders() -> None:
    assert read_binary_sfi(2) == bytes.fromhex("00B0820000")
    assert read_binary(0x100) == bytes.fromhex("00B0010000")
    assert select_aid(VITALE_AID) == bytes.fromhex("00A404000BD250000002564954414C4500")
    with pytest.raises(ValueError):
        read_binary_sfi(31)


def test_parse_vitale_checks_every_file() -> None:
    card = VirtualVitale([FATHER, MOTHER])
    parsed = parse_vitale(card.files["mf"], card.files["vitale"])
    assert [b.nir for b in parsed.beneficiaries] == [FATHER.nir, MOTHER.nir]
    with pytest.raises(CardReadError, match="sans bénéficiaire"):
        parse_vitale(b"", card.files["vitale"])
    bad_date = VirtualVitale([CardPerson("X", "Y", "19801332", FATHER.nir)])
    with pytest.raises(CardReadError, match="birth date"):
        parse_vitale(bad_date.files["mf"], bad_date.files["vitale"])
    bad_rank = VirtualVitale([CardPerson("X", "Y", "19801201", FATHER.nir, rank=0)])
    with pytest.raises(CardReadError, match="rank"):
        parse_vitale(bad_rank.files["mf"], bad_rank.files["vitale"])


def test_cps_holder_record_and_pin_format() -> None:
    record = tlv(0x80, PHARMACIST_RPPS.encode()) + tlv(0x81, b"Durand") + tlv(0x82, b"Sophie")
    assert parse_holder(record).last_name == "DURAND"
    bad_key = PHARMACIST_RPPS[:-1] + str((int(PHARMACIST_RPPS[-1]) + 1) % 10)
    with pytest.raises(CardReadError):
        parse_holder(tlv(0x80, bad_key.encode()) + tlv(0x81, b"Durand"))
    assert verify_command("1234") == bytes.fromhex("0020000108") + b"1234" + b"\xff" * 4
    for pin in ("123", "123456789", "12 4", "١٢٣٤"):
        with pytest.raises(CardError):
            verify_command(pin)
