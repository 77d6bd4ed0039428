"""Keyboard-wedge scanners: from recorded evdev input events to ScanEvents.

The assembler tests feed events straight in; the scanner tests run the real reader thread on
a FAKE evdev interface (tests/drivers/evdev_recording.py) in virtual time.
"""

from __future__ import annotations

import errno
import os
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest

from appliance.scan import ScanEvent
from drivers.keyboard_wedge import (
    INPUT_EVENT,
    Burst,
    DeviceInfo,
    DeviceMatch,
    EvdevInterface,
    InputEventRecord,
    KeyboardWedgeConfig,
    KeyboardWedgeScanner,
    ScanAssembler,
    pack_input_events,
    unpack_input_events,
)
from drivers.keymaps import (
    EV_KEY,
    EV_MSC,
    EV_SYN,
    KEY_CAPSLOCK,
    KEY_ENTER,
    KEY_LEFTSHIFT,
    SYN_DROPPED,
    SYN_REPORT,
    KeymapError,
)
from tests.drivers.evdev_recording import (
    GS1_PAYLOAD,
    RECORDINGS,
    SCANNER_INFO,
    T0,
    FakeEvdevInterface,
    RecordedSession,
    ScannerKeyboard,
    VirtualClock,
    frame_events,
    read_recording,
    shifted,
)

GS1_RAW = GS1_PAYLOAD.encode("ascii")
MATCH = DeviceMatch(by_id="usb-Honeywell_Imaging___Mobility_1900_19123B4567-event-kbd")


def config(**overrides: object) -> KeyboardWedgeConfig:
    values: dict[str, object] = {"match": MATCH, "rediscover_interval_s": 0.005}
    values.update(overrides)
    return KeyboardWedgeConfig(**values)  # type: ignore[arg-type]


def assemble(events: Iterable[InputEventRecord], **overrides: object) -> list[Burst]:
    assembler = ScanAssembler(config(**overrides))
    bursts: list[Burst] = []
    last = T0
    for event in events:
        bursts += assembler.feed(event)
        last = event.timestamp
    return bursts + assembler.expire(last + 10)


def scans(bursts: Sequence[Burst]) -> list[bytes]:
    return [b.raw for b in bursts if b.is_scan]


# --------------------------------------------------------------------------------------------
# Recorded events, byte for byte
# --------------------------------------------------------------------------------------------


def test_recorded_input_events_replay_to_the_gs1_datamatrix_with_its_group_separator() -> None:
    """fr_gs1_alt0029_enter.evdev: an AZERTY scanner sending GS as Alt+0029, read as raw bytes."""
    data = (RECORDINGS / "fr_gs1_alt0029_enter.evdev").read_bytes()
    kernel_layout = struct.Struct("llHHi")  # struct input_event on 64-bit Linux: 24 bytes
    assert INPUT_EVENT.size == kernel_layout.size == 24
    assert len(data) % 24 == 0
    records = [InputEventRecord(*fields) for fields in kernel_layout.iter_unpack(data)]
    assert records == unpack_input_events(data)
    assert {r.type for r in records} == {EV_KEY, EV_SYN}

    (burst,) = assemble(records)
    assert burst.raw == GS1_RAW
    assert burst.is_scan and burst.ended_by == "Return"


def test_pack_and_unpack_are_the_kernel_layout() -> None:
    events = frame_events([(KEY_LEFTSHIFT, 1), (2, 1)], T0 + 0.000123)
    data = pack_input_events(events)
    assert len(data) == 3 * 24
    assert data[:24] == struct.pack("llHHi", int(T0), 123, EV_KEY, KEY_LEFTSHIFT, 1)
    assert unpack_input_events(data) == events
    with pytest.raises(ValueError, match="whole number"):
        unpack_input_events(data[:-1])


def test_azerty_scanner_types_digits_with_shift_written_by_hand() -> None:
    """No simulator: the events a French scanner sends for "12" then Enter."""
    events = [
        *frame_events([(KEY_LEFTSHIFT, 1), (2, 1)], T0),
        *frame_events([(2, 0), (KEY_LEFTSHIFT, 0)], T0 + 0.001),
        *frame_events([(KEY_LEFTSHIFT, 1), (3, 1)], T0 + 0.002),
        *frame_events([(3, 0), (KEY_LEFTSHIFT, 0)], T0 + 0.003),
        *frame_events([(KEY_ENTER, 1)], T0 + 0.004),
        *frame_events([(KEY_ENTER, 0)], T0 + 0.005),
    ]
    assert scans(assemble(events)) == [b"12"]
    # The same keys read as if the scanner were QWERTY: Shift+1 Shift+2 is "!@".
    assert scans(assemble(events, layout="us")) == [b"!@"]


# --------------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------------

TEXT = "AbC-123/xyz.Q0"


@pytest.mark.parametrize(("layout", "variant"), [("fr", None), ("us", None), ("be", None), ("ch", None), ("ch", "fr")])
def test_each_layout_reads_back_what_the_scanner_typed(layout: str, variant: str | None) -> None:
    events = ScannerKeyboard(layout, variant).type(TEXT)
    assert scans(assemble(events, layout=layout, variant=variant)) == [TEXT.encode()]


def test_a_scanner_read_with_the_wrong_layout_is_garbled() -> None:
    """Why the layout is per device: a QWERTY scanner read as AZERTY loses its digits."""
    events = ScannerKeyboard("us").type("A1Q")
    assert scans(assemble(events, layout="fr")) == [b"Q&A"]


def test_caps_lock_on_the_host_is_tracked() -> None:
    keyboard = ScannerKeyboard("fr", caps_lock=True)
    events = keyboard.tap(KEY_CAPSLOCK) + keyboard.type("Lot42abc", start=T0 + 0.004)
    assert scans(assemble(events)) == [b"Lot42abc"]


def test_altgr_characters_on_azerty() -> None:
    text = "a@b#c[d]e{f}g|h\\i`j~k^l€"
    events = ScannerKeyboard("fr").type(text)
    assert [b.text for b in assemble(events) if b.is_scan] == [text]


def test_accented_letters_through_dead_keys_become_latin1_bytes() -> None:
    events = ScannerKeyboard("fr").type("PRÉNOM ÉLÈVE ê^")
    assert scans(assemble(events)) == ["PRÉNOM ÉLÈVE ê^".encode("latin-1")]
    assert scans(assemble(events, encoding="utf-8")) == ["PRÉNOM ÉLÈVE ê^".encode()]


def test_unknown_layout_fails_when_the_driver_is_configured() -> None:
    with pytest.raises(KeymapError):
        KeyboardWedgeScanner(config(layout="xx"), lambda e: None)


# --------------------------------------------------------------------------------------------
# Group separator: every path gives 0x1D
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layout", "keyboard", "settings"),
    [
        ("fr", ScannerKeyboard("fr", gs="substitute", gs_substitute="@"), {"gs_substitute": "@"}),
        ("fr", ScannerKeyboard("fr", gs="substitute", gs_substitute="~"), {"gs_substitute": "~"}),
        ("us", ScannerKeyboard("us", gs="substitute", gs_substitute="~"), {"gs_substitute": "~"}),
        ("fr", ScannerKeyboard("fr", gs="fkey"), {"gs_key": "F8"}),
        ("fr", ScannerKeyboard("fr", gs="alt"), {}),
        ("ch", ScannerKeyboard("ch", gs="alt"), {}),
        ("fr", ScannerKeyboard("fr", gs="ctrl"), {}),
        ("fr", ScannerKeyboard("fr", gs="ctrl_us"), {}),
        ("us", ScannerKeyboard("us", gs="ctrl"), {}),
        ("ch", ScannerKeyboard("ch", gs="ctrl_us"), {}),
    ],
    ids=[
        "fr-@",
        "fr-~",
        "us-~",
        "fr-F8",
        "fr-alt0029",
        "ch-alt0029",
        "fr-ctrl]",
        "fr-ctrl-us]",
        "us-ctrl]",
        "ch-ctrl-us]",
    ],
)
def test_gs1_datamatrix_group_separator_survives(
    layout: str, keyboard: ScannerKeyboard, settings: dict[str, object]
) -> None:
    events = keyboard.type(GS1_PAYLOAD)
    assert scans(assemble(events, layout=layout, **settings)) == [GS1_RAW]


def test_without_a_configured_substitute_the_character_is_data() -> None:
    events = ScannerKeyboard("fr", gs="substitute", gs_substitute="@").type(GS1_PAYLOAD)
    assert scans(assemble(events)) == [GS1_RAW.replace(b"\x1d", b"@")]


def test_an_unconfigured_function_key_is_not_data() -> None:
    events = ScannerKeyboard("fr", gs="fkey").type(GS1_PAYLOAD)
    assert scans(assemble(events)) == [GS1_RAW.replace(b"\x1d", b"")]


# --------------------------------------------------------------------------------------------
# Framing: Enter, keypad Enter, Tab, idle gap
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("terminator", "keysym"), [("enter", "Return"), ("kp_enter", "KP_Enter"), ("tab", "Tab")])
def test_a_terminator_key_ends_the_scan_at_once(terminator: str, keysym: str) -> None:
    events = ScannerKeyboard("fr").type("ABC123", terminator=terminator)  # type: ignore[arg-type]
    assembler = ScanAssembler(config())
    bursts = [b for e in events for b in assembler.feed(e)]
    assert [(b.raw, b.ended_by) for b in bursts] == [(b"ABC123", keysym)]
    assert not assembler.pending


def test_an_idle_gap_ends_a_scan_without_terminator() -> None:
    events = ScannerKeyboard("fr").type("ABC123", terminator=None)
    assembler = ScanAssembler(config(idle_gap_ms=50))
    assert [b for e in events for b in assembler.feed(e)] == []
    last = events[-1].timestamp
    assert assembler.deadline() == pytest.approx(last + 0.050)
    assert assembler.expire(last + 0.049) == []
    (burst,) = assembler.expire(last + 0.050)
    assert (burst.raw, burst.ended_by, burst.is_scan) == (b"ABC123", "idle", True)


def test_the_next_key_after_an_idle_gap_starts_a_new_scan() -> None:
    keyboard = ScannerKeyboard("fr")
    first = keyboard.type("0001", terminator=None)
    second = keyboard.type("0002", terminator=None, start=T0 + 0.3)
    assert scans(assemble(first + second)) == [b"0001", b"0002"]


def test_an_empty_line_is_no_scan() -> None:
    assert assemble(ScannerKeyboard("fr").type("")) == []


def test_kernel_dropped_events_discard_the_scan_in_progress() -> None:
    keyboard = ScannerKeyboard("fr")
    half = keyboard.type("0103400930000120", terminator=None)
    dropped = [InputEventRecord.at(half[-1].timestamp + 0.001, EV_SYN, SYN_DROPPED, 0)]
    rest = keyboard.type("17261231", start=half[-1].timestamp + 0.002)
    sync = [InputEventRecord.at(rest[-1].timestamp, EV_SYN, SYN_REPORT, 0)]
    after = keyboard.type("0002", start=rest[-1].timestamp + 0.1)
    assert scans(assemble(half + dropped + rest + sync + after)) == [b"0002"]


def test_non_key_events_are_ignored() -> None:
    events = ScannerKeyboard("fr").type("42")
    msc = [InputEventRecord(e.sec, e.usec, EV_MSC, 4, 0x70004) for e in events if e.type == EV_KEY]
    assert scans(assemble(sorted(events + msc, key=lambda e: (e.timestamp, e.type != EV_MSC)))) == [b"42"]


# --------------------------------------------------------------------------------------------
# Scanner or person
# --------------------------------------------------------------------------------------------


def test_a_person_typing_is_not_a_scan() -> None:
    """Keys 40 ms apart are within the 50 ms idle gap but slower than 30 ms: typing."""
    events = ScannerKeyboard("fr", key_interval_ms=40).type("3400930000120")
    (burst,) = assemble(events, max_inter_key_ms=30, idle_gap_ms=50)
    assert not burst.is_scan
    assert burst.text == "3400930000120"
    assert burst.slowest_gap_ms == pytest.approx(40, abs=0.01)


def test_a_person_typing_slowly_gives_single_keys_none_a_scan() -> None:
    events = ScannerKeyboard("fr", key_interval_ms=180).type("123")
    bursts = assemble(events)
    assert scans(bursts) == []
    assert [b.text for b in bursts] == ["1", "2", "3"]
    assert all(b.presses == 1 for b in bursts)


def test_one_late_key_makes_the_whole_burst_typing() -> None:
    keyboard = ScannerKeyboard("fr")
    head = keyboard.type("1234", terminator=None)
    tail = keyboard.type("5678", start=head[-1].timestamp + 0.035)
    (burst,) = assemble(head + tail, max_inter_key_ms=30)
    assert not burst.is_scan
    assert scans(assemble(head + tail, max_inter_key_ms=45, idle_gap_ms=60)) == [b"12345678"]


def test_a_held_key_autorepeat_is_typing() -> None:
    down = frame_events([(16, 1)], T0)
    repeats = [e for i in range(1, 4) for e in frame_events([(16, 2)], T0 + 0.25 + 0.033 * i)]
    (burst,) = assemble(down + repeats + frame_events([(16, 0)], T0 + 0.4), idle_gap_ms=300)
    assert burst.text == "aaaa" and not burst.is_scan


@pytest.mark.parametrize(
    "settings",
    [
        {"max_inter_key_ms": 60, "idle_gap_ms": 50},
        {"max_inter_key_ms": 0},
        {"gs_substitute": "@@"},
        {"rediscover_interval_s": 0},
        {"encoding": "no-such-codec"},
        {"gs_key": "f8"},
        {"terminators": frozenset({"Enter"})},
    ],
)
def test_inconsistent_settings_are_refused(settings: dict[str, object]) -> None:
    with pytest.raises((ValueError, LookupError)):
        ScanAssembler(config(**settings))


def test_device_match_uses_stable_identity() -> None:
    replugged = DeviceInfo(path="/dev/input/event9", name=SCANNER_INFO.name, by_id=SCANNER_INFO.by_id)
    assert MATCH.matches(SCANNER_INFO) and MATCH.matches(replugged)
    assert DeviceMatch(name="Honeywell*", phys=SCANNER_INFO.phys).matches(SCANNER_INFO)
    assert not DeviceMatch(name="Honeywell*", phys="usb-0000:01:00.0-1.4/input0").matches(SCANNER_INFO)
    assert DeviceMatch(vendor=0x0C2E, product=0x0B61).matches(SCANNER_INFO)
    assert not DeviceMatch(uniq="other").matches(SCANNER_INFO)
    with pytest.raises(ValueError, match="at least one"):
        DeviceMatch()
    assert config().source == "evdev:usb-Honeywell_Imaging___Mobility_1900_19123B4567-event-kbd"


# --------------------------------------------------------------------------------------------
# The driver thread, on a FAKE evdev interface in virtual time
# --------------------------------------------------------------------------------------------


class Recorder:
    """ScanSink, typing callback and DeviceStatusSink, recording calls in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self._changed = threading.Condition()

    def _add(self, kind: str, value: object) -> None:
        with self._changed:
            self.calls.append((kind, value))
            self._changed.notify_all()

    def __call__(self, event: ScanEvent) -> None:
        self._add("scan", event)

    def typing(self, source: str, burst: Burst) -> None:
        self._add("typing", burst.text)

    def device_lost(self, source: str, reason: str) -> None:
        self._add("lost", reason)

    def device_found(self, source: str) -> None:
        self._add("found", source)

    def wait_for(self, count: int, timeout: float = 3.0) -> list[tuple[str, object]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.calls) >= count, timeout), self.calls
            return list(self.calls)

    def scans(self) -> list[bytes]:
        return [value.raw for kind, value in self.calls if isinstance(value, ScanEvent)]


def scanner_on(
    sessions: Iterable[RecordedSession], recorder: Recorder, **settings: object
) -> tuple[KeyboardWedgeScanner, FakeEvdevInterface]:
    clock = VirtualClock()
    absent_at_start = int(settings.pop("absent_at_start", 0))  # type: ignore[call-overload]
    interface = FakeEvdevInterface(sessions, clock, absent_at_start=absent_at_start)
    scanner = KeyboardWedgeScanner(
        config(**settings),
        recorder,
        status=recorder,
        on_typing=recorder.typing,
        interface=interface,
        clock=clock,
        wall_clock=lambda: 1_750_000_000.5,
    )
    return scanner, interface


def test_scans_reach_the_sink_as_scan_events_from_the_grabbed_device() -> None:
    keyboard = ScannerKeyboard("fr", gs="fkey")
    events = keyboard.type(GS1_PAYLOAD) + keyboard.type("3400930000120", start=T0 + 0.5, terminator=None)
    recorder = Recorder()
    scanner, interface = scanner_on([RecordedSession(events)], recorder, gs_key="F8")
    with scanner:
        calls = recorder.wait_for(3)
    assert calls[0] == ("found", scanner.source)
    first, second = (value for _, value in calls[1:])
    assert first == ScanEvent(raw=GS1_RAW, source=scanner.source, timestamp=1_750_000_000.5)
    assert isinstance(second, ScanEvent)
    assert (second.raw, second.extra["ended_by"]) == (b"3400930000120", "idle")
    (device,) = interface.opened
    assert device.grabbed and device.closed
    assert device.info == SCANNER_INFO  # not the laptop keyboard listed next to it


def test_recorded_input_events_replay_through_the_driver_thread() -> None:
    recorded = read_recording(RECORDINGS / "fr_gs1_alt0029_enter.evdev")
    recorder = Recorder()
    scanner, _ = scanner_on([RecordedSession(recorded)], recorder)
    with scanner:
        recorder.wait_for(2)
    assert recorder.scans() == [GS1_RAW]


def test_typing_goes_to_the_typing_callback_not_the_sink() -> None:
    events = ScannerKeyboard("fr", key_interval_ms=40).type("1234")
    events += ScannerKeyboard("fr").type("5678", start=events[-1].timestamp + 0.5)
    recorder = Recorder()
    scanner, _ = scanner_on([RecordedSession(events)], recorder)
    with scanner:
        calls = recorder.wait_for(3)
    assert [kind for kind, _ in calls] == ["found", "typing", "scan"]
    assert calls[1][1] == "1234" and recorder.scans() == [b"5678"]


def test_typing_is_dropped_without_a_callback() -> None:
    events = ScannerKeyboard("fr", key_interval_ms=40).type("1234")
    events += ScannerKeyboard("fr").type("5678", start=events[-1].timestamp + 0.5)
    recorder = Recorder()
    clock = VirtualClock()
    scanner = KeyboardWedgeScanner(
        config(),
        recorder,
        status=recorder,
        interface=FakeEvdevInterface([RecordedSession(events)], clock),
        clock=clock,
    )
    with scanner:
        recorder.wait_for(2)
    assert [kind for kind, _ in recorder.calls] == ["found", "scan"]


def test_unplug_mid_scan_then_replug() -> None:
    """The half scan is dropped, the device is lost then found, and the next scan is read."""
    keyboard = ScannerKeyboard("fr", gs="alt")
    partial = keyboard.type(GS1_PAYLOAD, terminator=None)[:100]
    after = keyboard.type("0103400930000120")
    sessions = [RecordedSession(partial, unplug_after_ms=2), RecordedSession(after)]
    recorder = Recorder()
    scanner, interface = scanner_on(sessions, recorder)
    with scanner:
        calls = recorder.wait_for(4)
    assert calls == [
        ("found", scanner.source),
        ("lost", "unplugged (ENODEV)"),
        ("found", scanner.source),
        ("scan", calls[3][1]),
    ]
    assert recorder.scans() == [b"0103400930000120"]
    first, second = interface.opened
    assert first.gone and first.closed and second.grabbed
    assert interface.list_calls >= 4  # the replugged device was looked for, then found


def test_replug_releases_modifiers_held_at_unplug() -> None:
    keyboard = ScannerKeyboard("fr")
    shift_down = frame_events([(KEY_LEFTSHIFT, 1)], T0)
    after = keyboard.type("é1")  # é is unshifted KEY_2: a stuck Shift would make it "2"
    recorder = Recorder()
    scanner, _ = scanner_on([RecordedSession(shift_down, unplug_after_ms=1), RecordedSession(after)], recorder)
    with scanner:
        recorder.wait_for(4)
    assert recorder.scans() == ["é1".encode("latin-1")]


def test_absent_at_start_is_reported_then_found() -> None:
    recorder = Recorder()
    events = ScannerKeyboard("fr").type("42")
    scanner, _ = scanner_on([RecordedSession(events)], recorder, absent_at_start=3)
    with scanner:
        calls = recorder.wait_for(3)
    assert calls[:2] == [("lost", "not found"), ("found", scanner.source)]
    assert recorder.scans() == [b"42"]


def test_stop_returns_promptly_while_waiting_for_keys() -> None:
    recorder = Recorder()
    scanner, interface = scanner_on([RecordedSession(())], recorder)
    scanner.start()
    recorder.wait_for(1)
    started = time.monotonic()
    scanner.stop()
    assert time.monotonic() - started < 0.5
    assert not scanner.running and interface.opened[0].closed


def test_stop_returns_promptly_while_waiting_for_the_device() -> None:
    recorder = Recorder()
    scanner, _ = scanner_on([], recorder, absent_at_start=10**6, rediscover_interval_s=30.0)
    scanner.start()
    assert recorder.wait_for(1) == [("lost", "not found")]
    started = time.monotonic()
    scanner.stop()
    assert time.monotonic() - started < 0.5
    assert not scanner.running


def test_nothing_runs_or_opens_before_start() -> None:
    threads = threading.active_count()
    recorder = Recorder()
    scanner, interface = scanner_on([RecordedSession(())], recorder)
    unstarted_real = KeyboardWedgeScanner(config(), recorder)
    assert threading.active_count() == threads
    assert interface.list_calls == 0 and not scanner.running and not unstarted_real.running
    unstarted_real.stop()  # harmless


def test_real_interface_with_no_input_devices_reports_not_found(tmp_path: Path) -> None:
    recorder = Recorder()
    scanner = KeyboardWedgeScanner(config(), recorder, status=recorder, interface=EvdevInterface(str(tmp_path)))
    with scanner:
        assert recorder.wait_for(1) == [("lost", "not found")]


def test_a_failing_sink_does_not_kill_the_driver() -> None:
    keyboard = ScannerKeyboard("fr")
    events = keyboard.type("0001") + keyboard.type("0002", start=T0 + 0.2)
    seen: list[bytes] = []
    done = threading.Event()

    def sink(event: ScanEvent) -> None:
        seen.append(event.raw)
        if len(seen) == 2:
            done.set()
        raise RuntimeError("core bug")

    clock = VirtualClock()
    scanner = KeyboardWedgeScanner(
        config(), sink, interface=FakeEvdevInterface([RecordedSession(events)], clock), clock=clock
    )
    with scanner:
        assert done.wait(3)
    assert seen == [b"0001", b"0002"]


def test_recording_helper_shifts_time_exactly() -> None:
    events = read_recording(RECORDINGS / "fr_gs1_alt0029_enter.evdev")
    moved = shifted(events, 12.345678)
    assert [(m.sec * 10**6 + m.usec) - (e.sec * 10**6 + e.usec) for e, m in zip(events, moved, strict=True)] == [
        12_345_678
    ] * len(events)


class _PipeInputDevice:
    """Stands in for evdev.InputDevice inside the real EvdevDevice: a pipe as the device fd."""

    instances: ClassVar[list[_PipeInputDevice]] = []

    def __init__(self, path: str) -> None:
        self.fd, self.write_fd = os.pipe()
        self.grabbed = False
        self.unplugged = False
        _PipeInputDevice.instances.append(self)

    def grab(self) -> None:
        self.grabbed = True

    def read(self) -> list[SimpleNamespace]:
        if self.unplugged:
            raise OSError(errno.ENODEV, "No such device")
        os.read(self.fd, 1)
        return [SimpleNamespace(sec=1, usec=2, type=EV_KEY, code=KEY_ENTER, value=1)]

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.write_fd)


def test_real_evdev_device_layer_polls_wakes_and_reports_unplug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thin adapter over python-evdev, with a pipe in place of /dev/input/eventN."""
    import evdev

    monkeypatch.setattr(evdev, "InputDevice", _PipeInputDevice)
    device = EvdevInterface().open(SCANNER_INFO, grab=True)
    fake = _PipeInputDevice.instances[-1]
    try:
        assert fake.grabbed
        assert device.read(0.01) == []  # timeout, nothing came
        os.write(fake.write_fd, b"k")
        (event,) = device.read(None)
        assert (event.type, event.code, event.value) == (EV_KEY, KEY_ENTER, 1)
        # A pipe refuses EVIOCSCLOCKID, so the event was stamped on read with the monotonic clock.
        assert abs(event.timestamp - time.monotonic()) < 1

        threading.Timer(0.05, device.interrupt).start()
        started = time.monotonic()
        assert device.read(None) == []
        assert time.monotonic() - started < 1

        fake.unplugged = True
        os.write(fake.write_fd, b"k")
        with pytest.raises(OSError) as lost:
            device.read(None)
        assert lost.value.errno == errno.ENODEV
    finally:
        device.close()
    device.interrupt()  # after close: harmless
