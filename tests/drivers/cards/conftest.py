"""Fixtures: one private pcscd for the session (real pcscd, real vpcd), vpcd slots, event recorders."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from drivers.cards.pcsc import STATE_PRESENT, STATE_UNAWARE, PcscApi, PcscError
from tests.drivers.cards.pcscd import PcscDaemon, missing_tools, wait_until
from tests.drivers.cards.virtual import VpcdSlot

READER = "Comptoir vpcd"
SLOT0 = f"{READER} 00 00"
SLOT1 = f"{READER} 00 01"

T = TypeVar("T")


@pytest.fixture(scope="session")
def pcscd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PcscDaemon]:
    reason = missing_tools()
    if reason is not None:
        pytest.fail(f"the smart-card tests run a private pcscd with vpcd, which cannot work here: {reason}")
    daemon = PcscDaemon(tmp_path_factory.mktemp("pcscd"), debug=bool(os.environ.get("COMPTOIR_PCSCD_DEBUG")))
    daemon.add_reader(READER)
    daemon.start()
    yield daemon
    daemon.stop()


def card_state(reader: str) -> int | None:
    """The reader's PC/SC state now, None when pcscd or the reader is not there."""
    api = PcscApi()
    try:
        context = api.establish()
    except PcscError:
        return None
    try:
        answer = api.get_status_change(context, 0, [(reader, STATE_UNAWARE)])
        return None if not answer else answer[0].event_state
    except PcscError:
        return None
    finally:
        api.release(context)


def wait_card(reader: str, present: bool, timeout: float = 5.0) -> None:
    """Wait until pcscd sees the reader with (or without) a card."""

    def seen() -> bool:
        state = card_state(reader)
        return state is not None and bool(state & STATE_PRESENT) == present

    assert wait_until(seen, timeout, step=0.05), f"{reader}: card {'never came' if present else 'never left'}"


def _slot(daemon: PcscDaemon, offset: int, reader: str) -> Iterator[VpcdSlot]:
    if not daemon.running:
        daemon.start()
    slot = VpcdSlot(daemon.ports[READER] + offset)
    yield slot
    slot.remove()
    if daemon.running:
        wait_card(reader, present=False)


@pytest.fixture
def slot(pcscd: PcscDaemon) -> Iterator[VpcdSlot]:
    """Slot 00 of the test reader, empty at start and at the end."""
    yield from _slot(pcscd, 0, SLOT0)


@pytest.fixture
def slot1(pcscd: PcscDaemon) -> Iterator[VpcdSlot]:
    """Slot 01 of the test reader."""
    yield from _slot(pcscd, 1, SLOT1)


class Recorder:
    """Collects what a driver emits, from its thread; tests wait for an item with a bounded timeout."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 5.0, start: int = 0) -> Any:
        """The first item from index ``start`` that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.items[start:]:
                    if predicate(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing matched within {timeout} s; got {self.items!r}")
                self._cond.wait(left)

    def of_type(self, kind: type[T]) -> list[T]:
        with self._cond:
            return [item for item in self.items if isinstance(item, kind)]


class StatusRecorder:
    """A DeviceStatusSink that records ("lost", source) and ("found", source)."""

    def __init__(self) -> None:
        self.calls = Recorder()

    def device_lost(self, source: str, reason: str) -> None:
        self.calls(("lost", source))

    def device_found(self, source: str) -> None:
        self.calls(("found", source))
