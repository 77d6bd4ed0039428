"""Serial scanner: the pure framer, then the whole driver over a pseudo-terminal.

The pty's slave is reached through a symlink standing for ``/dev/serial/by-id/...``: unplugging closes the
pty (reads on the slave fail with EIO, as on a real unplug) and replugging points the link at a new pty,
which is what udev does when the scanner comes back as another ``ttyACMn``.
"""

from __future__ import annotations

import os
import threading
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.scan import ScanEvent
from drivers.serial_scanner import (
    SerialFramer,
    SerialPort,
    SerialScanner,
    SerialScannerConfig,
    Terminator,
    open_pyserial,
)

pytestmark = pytest.mark.timeout(10)

WAIT = 2.0
"""Upper bound for anything the driver should do "at once"; never reached when things work."""

GS1 = b"]d2010340093000012017251231103A45\x1d21SERIAL99"


# --- framer ------------------------------------------------------------------------------------------


def test_framer_cuts_on_cr_and_keeps_the_rest() -> None:
    framer = SerialFramer(Terminator.CR, idle_gap=None)
    assert framer.feed(b"ABC\rDE", 0.0) == [b"ABC"]
    assert framer.pending
    assert framer.feed(b"F\r", 0.001) == [b"DEF"]
    assert not framer.pending


def test_framer_crlf_split_across_reads() -> None:
    framer = SerialFramer(Terminator.CRLF, idle_gap=None)
    assert framer.feed(b"ONE\r", 0.0) == []
    assert framer.feed(b"\nTWO\r\n", 0.001) == [b"ONE", b"TWO"]


def test_framer_lf_terminator() -> None:
    framer = SerialFramer(Terminator.LF, idle_gap=None)
    assert framer.feed(b"A\nB\n", 0.0) == [b"A", b"B"]


def test_framer_idle_gap_without_terminator() -> None:
    framer = SerialFramer(Terminator.NONE, idle_gap=0.05)
    assert framer.feed(b"ABC", 0.00) == []
    assert framer.feed(b"DEF", 0.04) == []
    assert framer.poll(0.08) == []
    assert framer.poll(0.0901) == [b"ABCDEF"]
    assert framer.poll(1.0) == []


def test_framer_gap_before_new_bytes_separates_two_scans() -> None:
    # The reader may only wake up when the next scan's bytes arrive: the gap still separates them.
    framer = SerialFramer(Terminator.NONE, idle_gap=0.05)
    framer.feed(b"FIRST", 0.0)
    assert framer.feed(b"SECOND", 0.5) == [b"FIRST"]
    assert framer.poll(0.6) == [b"SECOND"]


def test_framer_idle_gap_flushes_a_frame_missing_its_terminator() -> None:
    framer = SerialFramer(Terminator.CR, idle_gap=0.05)
    assert framer.feed(b"NOSUFFIX", 0.0) == []
    assert framer.poll(0.1) == [b"NOSUFFIX"]


def test_framer_keeps_group_separators_and_aim_prefix() -> None:
    framer = SerialFramer(Terminator.CR, idle_gap=0.05)
    assert framer.feed(GS1 + b"\r", 0.0) == [GS1]


def test_framer_drops_blank_frames() -> None:
    # A CRLF scanner configured as CR leaves a lone LF behind: it must not become a scan.
    framer = SerialFramer(Terminator.CR, idle_gap=0.05)
    assert framer.feed(b"CODE\r\n", 0.0) == [b"CODE"]
    assert framer.poll(0.1) == []
    assert framer.feed(b"\r\r", 0.2) == []


def test_framer_drops_runaway_input() -> None:
    framer = SerialFramer(Terminator.CR, idle_gap=None, max_frame=8)
    assert framer.feed(b"123456789", 0.0) == []
    assert not framer.pending
    assert framer.feed(b"OK\r", 0.1) == [b"OK"]


def test_framer_reset_discards_partial() -> None:
    framer = SerialFramer(Terminator.CR, idle_gap=0.05)
    framer.feed(b"HALF", 0.0)
    framer.reset()
    assert framer.poll(1.0) == []
    assert framer.feed(b"WHOLE\r", 1.0) == [b"WHOLE"]


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="idle gap"):
        SerialScannerConfig(path="/dev/null", terminator=Terminator.NONE, idle_gap_ms=None)
    with pytest.raises(ValueError):
        SerialScannerConfig(path="/dev/null", idle_gap_ms=0)
    assert SerialScannerConfig(path="/dev/serial/by-id/usb-Acme_Imager-if00").source == ("serial:usb-Acme_Imager-if00")
    assert SerialScannerConfig(path="/dev/ttyACM0", source_id="desk").source == "desk"


# --- driver over a pty ---------------------------------------------------------------------------------


class FakeScanner:
    """The scanner's side of a pty, reachable through a by-id style symlink that survives replugs."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master = -1
        self.slave = -1

    def plug(self) -> None:
        self.master, self.slave = os.openpty()
        # Raw from the start: otherwise the line discipline turns CR into LF before the driver opens the port.
        tty.setraw(self.slave)
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(self.slave), tmp)
        os.replace(tmp, self.link)

    def unplug(self) -> None:
        os.close(self.master)
        os.close(self.slave)
        self.master = self.slave = -1

    def send(self, data: bytes) -> None:
        os.write(self.master, data)


class Events:
    """Collects scans and status changes from the driver thread; waits are bounded."""

    def __init__(self) -> None:
        self.scans: list[ScanEvent] = []
        self.status: list[tuple[str, str]] = []
        self._changed = threading.Condition()
        self.opens = 0

    def opener(self, config: SerialScannerConfig) -> SerialPort:
        """The real pyserial opener, counted: pyserial flushes the input when it opens the port, so the
        test must not write scanner bytes before that."""
        port = open_pyserial(config)
        with self._changed:
            self.opens += 1
            self._changed.notify_all()
        return port

    def wait_open(self, count: int = 1) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.opens >= count, WAIT), "port never opened"

    def __call__(self, event: ScanEvent) -> None:
        with self._changed:
            self.scans.append(event)
            self._changed.notify_all()

    def device_lost(self, source: str, reason: str) -> None:
        with self._changed:
            self.status.append(("lost", source))
            self._changed.notify_all()

    def device_found(self, source: str) -> None:
        with self._changed:
            self.status.append(("found", source))
            self._changed.notify_all()

    def raws(self, count: int) -> list[bytes]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.scans) >= count, WAIT)
            return [scan.raw for scan in self.scans]

    def wait_status(self, count: int) -> list[str]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.status) >= count, WAIT)
            return [kind for kind, _ in self.status]


@pytest.fixture
def device(tmp_path: Path) -> Iterator[FakeScanner]:
    fake = FakeScanner(tmp_path / "usb-Acme_2D_Imager_0001-if00")
    fake.plug()
    yield fake
    if fake.master >= 0:
        fake.unplug()


def make_scanner(
    device: FakeScanner,
    events: Events,
    *,
    terminator: Terminator = Terminator.CR,
    idle_gap_ms: float | None = 50.0,
    aim_prefix: bool = False,
) -> SerialScanner:
    config = SerialScannerConfig(
        path=str(device.link),
        terminator=terminator,
        idle_gap_ms=idle_gap_ms,
        aim_prefix=aim_prefix,
        reconnect_interval_s=0.05,
    )
    return SerialScanner(config, events, events, opener=events.opener)


@pytest.fixture
def events() -> Events:
    return Events()


def test_terminator_framing(device: FakeScanner, events: Events) -> None:
    scanner = make_scanner(device, events, terminator=Terminator.CRLF, idle_gap_ms=None)
    scanner.start()
    try:
        events.wait_open()
        device.send(b"ePRESCRIPTION-0001")
        device.send(b"AB\r")
        device.send(b"\n")
        assert events.raws(1) == [b"ePRESCRIPTION-0001AB"]
        event = events.scans[0]
        assert event.source == "serial:usb-Acme_2D_Imager_0001-if00"
        assert event.symbology is None
        assert abs(event.timestamp - time.time()) < 5
    finally:
        scanner.stop()


def test_idle_gap_framing(device: FakeScanner, events: Events) -> None:
    scanner = make_scanner(device, events, terminator=Terminator.NONE, idle_gap_ms=50)
    scanner.start()
    try:
        events.wait_open()
        device.send(b"FIRST-")
        device.send(b"CODE")
        assert events.raws(1) == [b"FIRST-CODE"]
        device.send(b"SECOND")
        assert events.raws(2) == [b"FIRST-CODE", b"SECOND"]
    finally:
        scanner.stop()


def test_gs1_payload_keeps_group_separator_and_aim_prefix(device: FakeScanner, events: Events) -> None:
    scanner = make_scanner(device, events, aim_prefix=True)
    scanner.start()
    try:
        events.wait_open()
        device.send(GS1 + b"\r")
        assert events.raws(1) == [GS1]
        assert b"\x1d" in events.scans[0].raw
        assert events.scans[0].symbology == "]d2"
    finally:
        scanner.stop()


def test_two_scans_back_to_back(device: FakeScanner, events: Events) -> None:
    scanner = make_scanner(device, events)
    scanner.start()
    try:
        events.wait_open()
        device.send(b"BOX-1\rBOX-2\r")
        assert events.raws(2) == [b"BOX-1", b"BOX-2"]
    finally:
        scanner.stop()


def test_unplug_mid_frame_then_replug(device: FakeScanner, events: Events) -> None:
    scanner = make_scanner(device, events, terminator=Terminator.CR, idle_gap_ms=None)
    scanner.start()
    try:
        events.wait_open()
        device.send(b"BEFORE\r")
        assert events.raws(1) == [b"BEFORE"]
        device.send(b"HALF-A-CO")
        time.sleep(0.05)  # let the driver read the partial frame before the cable goes
        device.unplug()
        assert events.wait_status(1) == ["lost"]
        device.plug()
        assert events.wait_status(2) == ["lost", "found"]
        device.send(b"DE\rAFTER\r")
        # The half frame was dropped with the old device: its tail alone is not glued to the old head.
        assert events.raws(3) == [b"BEFORE", b"DE", b"AFTER"]
        assert all(source == scanner.source for _, source in events.status)
    finally:
        scanner.stop()


def test_device_absent_at_start_is_reported_then_found(tmp_path: Path, events: Events) -> None:
    fake = FakeScanner(tmp_path / "late-scanner")
    scanner = make_scanner(fake, events)
    scanner.start()
    try:
        assert events.wait_status(1) == ["lost"]
        time.sleep(0.12)  # a few failed attempts: still reported once
        assert events.wait_status(1) == ["lost"]
        fake.plug()
        assert events.wait_status(2) == ["lost", "found"]
        fake.send(b"LATE\r")
        assert events.raws(1) == [b"LATE"]
    finally:
        scanner.stop()
        if fake.master >= 0:
            fake.unplug()


def test_failing_sink_does_not_stop_the_driver(device: FakeScanner, events: Events) -> None:
    calls: list[bytes] = []

    def flaky(event: ScanEvent) -> None:
        calls.append(event.raw)
        if len(calls) == 1:
            raise RuntimeError("core busy")
        events(event)

    scanner = SerialScanner(SerialScannerConfig(path=str(device.link)), flaky, opener=events.opener)
    scanner.start()
    try:
        events.wait_open()
        device.send(b"ONE\rTWO\r")
        assert events.raws(1) == [b"TWO"]
    finally:
        scanner.stop()


def test_nothing_opened_before_start(device: FakeScanner, events: Events) -> None:
    opened: list[str] = []

    def opener(config: SerialScannerConfig) -> SerialPort:
        opened.append(config.path)
        raise OSError("not expected")

    SerialScanner(SerialScannerConfig(path=str(device.link)), events, opener=opener)
    assert opened == []
    assert not any(t.name.startswith("scanner ") for t in threading.enumerate())


def test_stop_is_prompt_while_reading_and_while_waiting_to_reconnect(
    device: FakeScanner, tmp_path: Path, events: Events
) -> None:
    scanner = make_scanner(device, events)
    scanner.start()
    events.wait_open()
    began = time.monotonic()
    scanner.stop()
    assert time.monotonic() - began < 0.5
    assert not scanner.running

    # Waiting between reconnection attempts must be interruptible too (a long interval on purpose).
    config = SerialScannerConfig(path=str(tmp_path / "absent"), reconnect_interval_s=30)
    absent = SerialScanner(config, events, events)
    absent.start()
    assert events.wait_status(1) == ["lost"]
    began = time.monotonic()
    absent.stop()
    assert time.monotonic() - began < 0.5
    assert not absent.running
