"""The whole chain on real pcscd + vpcd: supervisor -> card station -> what the workflow and kiosk receive."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.cards import UNKNOWN_CARD_MESSAGE, CardKind, CardProblem, CpsInserted, CpsRemoved, PinState
from appliance.workflow.events import CardInserted, CardRemoved
from drivers.cards import CardStation, PcscCpsAuthenticator, PcscVitaleReader, ReaderSupervisor
from drivers.cards.supervisor import SupervisorConfig
from tests.drivers.cards.conftest import SLOT0, Recorder
from tests.drivers.cards.pcscd import PcscDaemon
from tests.drivers.cards.people import CORSICAN, PHARMACIST_RPPS, corsican_card, family_card, pharmacist_cps
from tests.drivers.cards.virtual import UnknownCard, VpcdSlot


@pytest.fixture
def station(pcscd: PcscDaemon) -> Iterator[Recorder]:
    received = Recorder()
    supervisor = ReaderSupervisor(
        CardStation(received, PcscVitaleReader(), PcscCpsAuthenticator()),
        config=SupervisorConfig(retry_initial_s=0.1, retry_max_s=0.4),
    )
    supervisor.start()
    yield received
    supervisor.stop()


def test_vitale_in_gives_card_inserted_and_out_card_removed(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(family_card())
    inserted: CardInserted = station.wait_for(lambda e: isinstance(e, CardInserted))
    assert len(inserted.beneficiaries) == 3
    slot.remove()
    station.wait_for(lambda e: isinstance(e, CardRemoved))
    assert [type(e) for e in station.items] == [CardInserted, CardRemoved]


def test_corsican_card(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(corsican_card())
    inserted: CardInserted = station.wait_for(lambda e: isinstance(e, CardInserted))
    assert [b.nir for b in inserted.beneficiaries] == [CORSICAN.nir]


def test_vitale_pulled_out_mid_read_says_so_and_sends_nothing_half_read(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(family_card(vanish_after=3))
    problem: CardProblem = station.wait_for(lambda e: isinstance(e, CardProblem))
    assert problem == CardProblem(SLOT0, CardKind.VITALE, "Carte retirée pendant la lecture, réinsérez-la")
    assert station.of_type(CardInserted) == [] and station.of_type(CardRemoved) == []


def test_cps_in_and_out(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(pharmacist_cps())
    inserted: CpsInserted = station.wait_for(lambda e: isinstance(e, CpsInserted))
    assert inserted.holder.rpps == PHARMACIST_RPPS and inserted.pin == PinState(3)
    slot.remove()
    removed: CpsRemoved = station.wait_for(lambda e: isinstance(e, CpsRemoved))
    assert removed.reader == SLOT0


def test_blocked_cps_is_announced_blocked(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(pharmacist_cps(tries_left=0))
    inserted: CpsInserted = station.wait_for(lambda e: isinstance(e, CpsInserted))
    assert inserted.pin.blocked


def test_unknown_card(station: Recorder, slot: VpcdSlot) -> None:
    slot.insert(UnknownCard())
    problem: CardProblem = station.wait_for(lambda e: isinstance(e, CardProblem))
    assert problem == CardProblem(SLOT0, CardKind.UNKNOWN, UNKNOWN_CARD_MESSAGE)
    slot.remove()


def test_cps_removal_is_told_even_after_a_failed_insertion(station: Recorder, slot: VpcdSlot) -> None:
    """The panel lock must not depend on the insertion having gone well."""
    card = pharmacist_cps()
    card.vanish_after = 1
    slot.insert(card)
    station.wait_for(lambda e: isinstance(e, CardProblem))
    station.wait_for(lambda e: isinstance(e, CpsRemoved))
