"""The carte Vitale reader and the CPS authenticator against real pcscd + vpcd and virtual cards."""

from __future__ import annotations

from datetime import date

import pytest

from appliance.cards import CardError, CardReadError, CardRemovedError, PinBlocked, PinState, WrongPin
from appliance.workflow.events import CardInserted
from drivers.cards.cps import PcscCpsAuthenticator
from drivers.cards.vitale import PcscVitaleReader
from tests.drivers.cards.conftest import SLOT0, wait_card
from tests.drivers.cards.people import (
    CHILD,
    CORSICAN,
    FATHER,
    MOTHER,
    PHARMACIST_RPPS,
    TWIN_A,
    TWIN_B,
    family_card,
    nir,
    pharmacist_cps,
)
from tests.drivers.cards.virtual import CardPerson, UnknownCard, VirtualCard, VirtualVitale, VpcdSlot


def insert(slot: VpcdSlot, card: VirtualCard) -> None:
    """Insert ``card`` once pcscd has seen the slot empty (a swap faster than its poll is another test)."""
    if slot.card is not None:
        slot.remove()
        wait_card(SLOT0, present=False)
    slot.insert(card)
    slot.wait_connected()
    wait_card(SLOT0, present=True)


def test_family_card_gives_three_beneficiaries(slot: VpcdSlot) -> None:
    insert(slot, family_card())
    card = PcscVitaleReader().read_vitale(SLOT0)
    father, mother, child = card.beneficiaries
    assert [b.traits.first_names for b in card.beneficiaries] == ["PAUL", "CLAIRE", "LEA"]
    assert [b.nir for b in card.beneficiaries] == [FATHER.nir, MOTHER.nir, FATHER.nir]
    assert {b.holder_nir for b in card.beneficiaries} == {FATHER.nir}
    assert [b.rank for b in card.beneficiaries] == [1, 1, 1]
    assert (father.traits.sex, mother.traits.sex, child.traits.sex) == ("M", "F", "")  # the child carries a NIR
    assert child.traits.birth_date == date(2015, 3, 2)
    assert father.traits.birth_name == "MARTIN"
    assert card.data_on == date(2024, 1, 15)
    event = card.to_event()
    assert isinstance(event, CardInserted)
    assert event.beneficiaries == card.beneficiaries and event.amo == {} and event.data_on == date(2024, 1, 15)


def test_corsican_nir_is_read(slot: VpcdSlot) -> None:
    insert(slot, VirtualVitale([CORSICAN], data_on=None))
    card = PcscVitaleReader().read_vitale(SLOT0)
    (only,) = card.beneficiaries
    assert only.nir == CORSICAN.nir and only.nir[5:7] == "2A"
    assert only.traits.first_names == "MARIE-ANGE" and only.traits.sex == "F"
    assert card.data_on is None


def test_twins_get_their_rank_from_card_order_or_from_the_card(slot: VpcdSlot) -> None:
    mother = CardPerson("PETIT", "NADIA", "19880512", nir("2880575056001"))
    twin_a = CardPerson(TWIN_A.name, TWIN_A.first_name, TWIN_A.birth_date, mother.nir)
    twin_b = CardPerson(TWIN_B.name, TWIN_B.first_name, TWIN_B.birth_date, mother.nir, rank=None)
    insert(slot, VirtualVitale([mother, twin_a, twin_b]))
    assert [b.rank for b in PcscVitaleReader().read_vitale(SLOT0).beneficiaries] == [1, 1, 2]
    explicit = CardPerson(TWIN_A.name, TWIN_A.first_name, TWIN_A.birth_date, mother.nir, rank=2)
    insert(slot, VirtualVitale([mother, explicit]))
    assert [b.rank for b in PcscVitaleReader().read_vitale(SLOT0).beneficiaries] == [1, 2]


def test_files_longer_than_one_read(slot: VpcdSlot) -> None:
    people = [FATHER, MOTHER] + [
        CardPerson("MARTIN-DE-LA-FONTAINE", f"ENFANT{i}", f"201{i}0101", FATHER.nir) for i in range(9)
    ]
    card = VirtualVitale(people)
    assert len(card.files["mf"]) > 256
    insert(slot, card)
    read = PcscVitaleReader().read_vitale(SLOT0)
    assert len(read.beneficiaries) == 11
    assert read.beneficiaries[-1].traits.first_names == "ENFANT8"


@pytest.mark.parametrize("vanish_after", [1, 2, 3, 4])
def test_card_pulled_out_mid_read_returns_nothing(slot: VpcdSlot, vanish_after: int) -> None:
    """APDU 1 SELECT MF, 2 READ identity, 3 SELECT VITALE, 4 READ VITALE file: the card leaves at each."""
    card = family_card(vanish_after=vanish_after)
    insert(slot, card)
    with pytest.raises(CardRemovedError) as caught:
        PcscVitaleReader().read_vitale(SLOT0)
    assert caught.value.message == "Carte retirée pendant la lecture, réinsérez-la"
    assert slot.vanished.is_set()


def test_a_cps_is_not_read_as_a_vitale(slot: VpcdSlot) -> None:
    insert(slot, pharmacist_cps())
    with pytest.raises(CardReadError) as caught:
        PcscVitaleReader().read_vitale(SLOT0)
    assert "6A82" in caught.value.detail


def test_a_bad_nir_key_refuses_the_whole_card_without_logging_the_number(slot: VpcdSlot) -> None:
    bad = CardPerson("DUPONT", "JEAN", "19700101", FATHER.nir[:13] + "00")
    insert(slot, VirtualVitale([FATHER, bad]))
    with pytest.raises(CardReadError) as caught:
        PcscVitaleReader().read_vitale(SLOT0)
    assert "NirKeyError" in str(caught.value) and FATHER.nir[:13] not in str(caught.value)
    assert caught.value.message.startswith("Carte Vitale illisible")


def test_no_card_in_the_reader(slot: VpcdSlot) -> None:
    with pytest.raises(CardError):
        PcscVitaleReader().read_vitale(SLOT0)


# ------------------------------------------------------------------ CPS


def test_cps_holder_and_pin(slot: VpcdSlot) -> None:
    insert(slot, pharmacist_cps(pin="4321"))
    cps = PcscCpsAuthenticator()
    holder = cps.holder(SLOT0)
    assert (holder.rpps, holder.last_name, holder.first_name, holder.profession) == (
        PHARMACIST_RPPS,
        "DURAND",
        "Sophie",
        "21",
    )
    assert holder.display_name == "Sophie DURAND"
    assert cps.pin_state(SLOT0) == PinState(3)
    with pytest.raises(WrongPin) as wrong:
        cps.verify_pin(SLOT0, "0000")
    assert wrong.value.tries_left == 2
    assert wrong.value.message == "Code CPS incorrect (2 essai(s) restant(s))"
    assert cps.pin_state(SLOT0) == PinState(2)
    assert cps.verify_pin(SLOT0, "4321") == holder
    assert cps.pin_state(SLOT0) == PinState(3, verified=True)  # a right PIN resets the counter


def test_a_malformed_pin_costs_no_try(slot: VpcdSlot) -> None:
    card = pharmacist_cps()
    insert(slot, card)
    with pytest.raises(CardError) as caught:
        PcscCpsAuthenticator().verify_pin(SLOT0, "12a4")
    assert caught.value.message == "Le code CPS a 4 à 8 chiffres"
    assert card.tries_left == 3 and card.apdu_count == 0


def test_three_wrong_pins_block_the_cps(slot: VpcdSlot) -> None:
    insert(slot, pharmacist_cps())
    cps = PcscCpsAuthenticator()
    for left in (2, 1):
        with pytest.raises(WrongPin) as wrong:
            cps.verify_pin(SLOT0, "9999")
        assert wrong.value.tries_left == left
    with pytest.raises(PinBlocked):
        cps.verify_pin(SLOT0, "9999")
    assert cps.pin_state(SLOT0).blocked


def test_blocked_cps_says_so_even_with_the_right_pin(slot: VpcdSlot) -> None:
    insert(slot, pharmacist_cps(tries_left=0))
    cps = PcscCpsAuthenticator()
    assert cps.pin_state(SLOT0).blocked
    assert cps.holder(SLOT0).rpps == PHARMACIST_RPPS  # who it belongs to is still readable
    with pytest.raises(PinBlocked) as caught:
        cps.verify_pin(SLOT0, "1234")
    assert caught.value.message == "Carte CPS bloquée : débloquez-la avec son code de déblocage"


def test_cps_pulled_out_during_verify(slot: VpcdSlot) -> None:
    card = pharmacist_cps(pin="1234")
    card.vanish_after = 2  # SELECT answered, VERIFY never
    insert(slot, card)
    with pytest.raises(CardRemovedError):
        PcscCpsAuthenticator().verify_pin(SLOT0, "1234")
    assert card.tries_left == 3


def test_unknown_card_is_neither(slot: VpcdSlot) -> None:
    insert(slot, UnknownCard())
    with pytest.raises(CardReadError):
        PcscVitaleReader().read_vitale(SLOT0)
    with pytest.raises(CardReadError) as caught:
        PcscCpsAuthenticator().holder(SLOT0)
    assert caught.value.message == "Carte CPS non reconnue"


def test_nothing_is_half_read_from_a_child_record(slot: VpcdSlot) -> None:
    """Both files disagree on the number of people: refused, not truncated."""
    card = family_card()
    card.files["vitale"] = card.files["vitale"][: card.files["vitale"].index(bytes([0x65]), 3)] + b"\xff" * 8
    insert(slot, card)
    with pytest.raises(CardReadError) as caught:
        PcscVitaleReader().read_vitale(SLOT0)
    assert "3 identities but 1 NIRs" in caught.value.detail
    assert CHILD.first_name not in str(caught.value)
