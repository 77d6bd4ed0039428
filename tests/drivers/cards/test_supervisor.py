"""The reader supervisor against real pcscd + vpcd: initial state, insert/remove, kinds, restarts, stop."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from appliance.cards import AbsenceCause, CardAbsent, CardKind, CardPresent
from drivers.cards.atr import AtrRules
from drivers.cards.pcsc import PcscApi, ReaderState
from drivers.cards.supervisor import ReaderSupervisor, SupervisorConfig
from tests.drivers.cards.conftest import READER, SLOT0, SLOT1, Recorder, StatusRecorder, wait_card
from tests.drivers.cards.pcscd import PcscDaemon
from tests.drivers.cards.people import family_card, pharmacist_cps
from tests.drivers.cards.virtual import CPS_ATR, VITALE_ATR, UnknownCard, VpcdSlot

FAST = SupervisorConfig(retry_initial_s=0.1, retry_max_s=0.4)


class CountingApi(PcscApi):
    """The real PC/SC calls, counted: proves waits block instead of spinning."""

    def __init__(self) -> None:
        self.establishes = 0
        self.status_calls = 0

    def establish(self) -> int:
        self.establishes += 1
        return super().establish()

    def get_status_change(
        self, context: int, timeout_ms: int, states: Sequence[tuple[str, int]]
    ) -> list[ReaderState] | None:
        self.status_calls += 1
        return super().get_status_change(context, timeout_ms, states)


class Harness:
    def __init__(self, config: SupervisorConfig = FAST, rules: AtrRules | None = None) -> None:
        self.events = Recorder()
        self.status = StatusRecorder()
        self.api = CountingApi()
        kwargs = {"rules": rules} if rules is not None else {}
        self.supervisor = ReaderSupervisor(
            self.events, self.status, config=config, api_factory=lambda: self.api, **kwargs
        )

    def present(self, reader: str = SLOT0, start: int = 0, timeout: float = 5.0) -> CardPresent:
        event: CardPresent = self.events.wait_for(
            lambda e: isinstance(e, CardPresent) and e.reader == reader, timeout, start
        )
        return event

    def absent(self, reader: str = SLOT0, start: int = 0, timeout: float = 5.0) -> CardAbsent:
        event: CardAbsent = self.events.wait_for(
            lambda e: isinstance(e, CardAbsent) and e.reader == reader, timeout, start
        )
        return event


@pytest.fixture
def harness(pcscd: PcscDaemon) -> Iterator[Harness]:
    h = Harness()
    yield h
    h.supervisor.stop()
    assert not h.supervisor.running


def test_nothing_runs_before_start(pcscd: PcscDaemon) -> None:
    h = Harness()
    time.sleep(0.1)
    assert not h.supervisor.running and h.api.establishes == 0 and h.events.items == []


def test_card_already_present_is_reported_at_start(harness: Harness, slot: VpcdSlot) -> None:
    slot.insert(family_card())
    wait_card(SLOT0, present=True)
    harness.supervisor.start()
    event = harness.present()
    assert event == CardPresent(SLOT0, VITALE_ATR, CardKind.VITALE)
    assert harness.events.items[0] == event
    assert harness.supervisor.present_cards() == {SLOT0: event}


def test_insert_and_remove(harness: Harness, slot: VpcdSlot) -> None:
    harness.supervisor.start()
    assert harness.status.calls.wait_for(lambda c: c == ("found", SLOT0))
    time.sleep(0.2)
    assert harness.events.items == []  # empty readers: nothing to say
    slot.insert(pharmacist_cps())
    assert harness.present() == CardPresent(SLOT0, CPS_ATR, CardKind.CPS)
    slot.remove()
    assert harness.absent() == CardAbsent(SLOT0, CardKind.CPS, AbsenceCause.REMOVED)
    slot.insert(family_card())
    assert harness.present(start=2).kind is CardKind.VITALE
    assert len(harness.events.items) == 3


def test_unknown_card_and_two_slots(harness: Harness, slot: VpcdSlot, slot1: VpcdSlot) -> None:
    harness.supervisor.start()
    slot.insert(UnknownCard())
    slot1.insert(pharmacist_cps())
    assert harness.present(SLOT0).kind is CardKind.UNKNOWN
    assert harness.present(SLOT1).kind is CardKind.CPS


def test_atr_rules_are_configurable(pcscd: PcscDaemon, slot: VpcdSlot) -> None:
    h = Harness(rules=AtrRules.parse("cps 3B 8F 80 01 80 4F .. A0 00 00 03 06 03 00 01 00 00 00 00 6A"))
    try:
        h.supervisor.start()
        slot.insert(UnknownCard())
        assert h.present().kind is CardKind.CPS
    finally:
        h.supervisor.stop()


def test_stops_promptly_and_does_not_spin_while_idle(harness: Harness, slot: VpcdSlot) -> None:
    harness.supervisor.start()
    slot.insert(family_card())
    harness.present()
    calls = harness.api.status_calls
    time.sleep(1.0)
    # Blocked in SCardGetStatusChange: vpcd's presence polls every 400 ms do not wake it up.
    assert harness.api.status_calls - calls <= 2
    started = time.monotonic()
    harness.supervisor.stop()
    assert time.monotonic() - started < 1.0
    assert not harness.supervisor.running


def test_pcscd_killed_and_restarted_during_monitoring(harness: Harness, pcscd: PcscDaemon, slot: VpcdSlot) -> None:
    harness.supervisor.start()
    slot.insert(family_card())
    harness.present()
    pcscd.kill()
    lost = harness.absent()
    assert lost == CardAbsent(SLOT0, CardKind.VITALE, AbsenceCause.SERVICE_LOST)
    assert harness.status.calls.wait_for(lambda c: c == ("lost", "pcsc"))
    attempts = harness.api.establishes
    time.sleep(1.0)
    # Back-off while pcscd is down: 0.1, 0.2, 0.4, 0.4... s, not a busy loop.
    assert 1 <= harness.api.establishes - attempts <= 6
    assert harness.supervisor.running
    pcscd.start()  # the virtual card reconnects by itself, like a card left in the reader
    assert harness.status.calls.wait_for(lambda c: c == ("found", "pcsc"))
    back = harness.present(start=2)
    assert back == CardPresent(SLOT0, VITALE_ATR, CardKind.VITALE)
    slot.remove()
    assert harness.absent(start=3).cause is AbsenceCause.REMOVED


def test_supervisor_started_before_pcscd(pcscd: PcscDaemon, slot: VpcdSlot) -> None:
    pcscd.stop()
    h = Harness()
    try:
        h.supervisor.start()
        assert h.status.calls.wait_for(lambda c: c == ("lost", "pcsc"))
        slot.insert(pharmacist_cps())
        pcscd.start()
        assert h.present(timeout=5.0).kind is CardKind.CPS
        assert ("found", "pcsc") in h.status.calls.items
    finally:
        h.supervisor.stop()


def test_reader_unplugged_and_plugged_back_across_restarts(pcscd: PcscDaemon, slot: VpcdSlot) -> None:
    """This pcscd cannot hot-plug serial readers (see tests/drivers/cards/pcscd.py): the reader leaves and comes
    back across restarts, which the supervisor must notice all the same (reader lost, then found)."""
    port = pcscd.ports[READER]
    h = Harness()
    try:
        h.supervisor.start()
        slot.insert(pharmacist_cps())
        h.present()
        pcscd.remove_reader(READER)
        pcscd.restart()
        assert h.status.calls.wait_for(lambda c: c == ("lost", SLOT0))
        assert h.status.calls.wait_for(lambda c: c == ("lost", SLOT1))
        # A graceful stop (SIGTERM) may show the card or the reader gone before closing the service: any cause.
        assert h.absent().kind is CardKind.CPS
        assert h.supervisor.present_cards() == {}
        found = len(h.status.calls.items)
        pcscd.add_reader(READER, port)
        pcscd.restart()
        assert h.status.calls.wait_for(lambda c: c == ("found", SLOT0), start=found)
        assert h.present(start=2).kind is CardKind.CPS  # the card left in the reader is seen again
    finally:
        h.supervisor.stop()
        if READER not in pcscd.ports:
            pcscd.add_reader(READER, port)
            pcscd.restart()


def test_a_failing_sink_does_not_stop_the_supervisor(pcscd: PcscDaemon, slot: VpcdSlot) -> None:
    seen: list[CardPresent | CardAbsent] = []

    def sink(event: CardPresent | CardAbsent) -> None:
        seen.append(event)
        raise RuntimeError("kiosk bug")

    supervisor = ReaderSupervisor(sink, config=FAST)
    try:
        supervisor.start()
        slot.insert(family_card())
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        slot.remove()
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(type(e), e.reader) for e in seen] == [(CardPresent, SLOT0), (CardAbsent, SLOT0)]
        assert supervisor.running
    finally:
        supervisor.stop()
