"""FAKE evdev source for the keyboard-wedge tests: simulated scanners and recorded input events.

Nothing here touches ``/dev/input`` (this machine has none, and no uinput):

- :class:`ScannerKeyboard` turns a string into the ``input_event`` sequence a keyboard-wedge
  scanner configured for a given xkb layout would send: for each character the keys to hold
  (Shift for capitals and, on AZERTY, for digits; AltGr where the layout needs it; a dead key
  then space or the letter), key down then key up, each report closed by SYN_REPORT, with
  timestamps at the given pace. Group separators are sent the way the scanner is configured to.
- :class:`FakeEvdevInterface` and :class:`FakeDevice` stand in for ``EvdevInterface`` and
  ``EvdevDevice``: they replay recorded sessions on a :class:`VirtualClock` (so an idle gap
  happens in virtual time, instantly), can raise ``ENODEV`` mid-scan, and bring the device
  back after a few polls.
- :func:`write_recording` / :func:`read_recording` store events as raw ``struct input_event``
  bytes, the kernel layout. ``python -m tests.drivers.evdev_recording`` regenerates the files
  in ``recordings/``.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from drivers.keyboard_wedge import (
    DeviceInfo,
    InputEventRecord,
    pack_input_events,
    unpack_input_events,
)
from drivers.keymaps import (
    EV_KEY,
    EV_SYN,
    KEY_ENTER,
    KEY_F8,
    KEY_KPENTER,
    KEY_LEFTALT,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_RIGHTALT,
    KEY_RIGHTBRACE,
    KEY_TAB,
    KEYPAD_DIGITS,
    SYN_REPORT,
    Chord,
    KeyTranslator,
)

RECORDINGS = Path(__file__).parent / "recordings"
T0 = 1_732_500_000.0
"""A realistic CLOCK_REALTIME start for recordings (late 2024)."""

GsMode = Literal["substitute", "fkey", "alt", "ctrl", "ctrl_us"]
"""How the simulated scanner sends 0x1D: its substitute character, an F-key, Alt+0029 on the
keypad, Ctrl + the layout's ``]``, or Ctrl + the US ``]`` key position."""
Terminator = Literal["enter", "kp_enter", "tab"]
_TERMINATOR_KEYS = {"enter": KEY_ENTER, "kp_enter": KEY_KPENTER, "tab": KEY_TAB}
_KP_CODE_OF_DIGIT = {digit: code for code, digit in KEYPAD_DIGITS.items()}

Frame = list[tuple[int, int]]
"""One HID report: (key code, value) pairs, sent together and closed by SYN_REPORT."""


@dataclass
class ScannerKeyboard:
    """A keyboard-wedge scanner set to type on ``layout`` (and ``variant``)."""

    layout: str = "fr"
    variant: str | None = None
    gs: GsMode = "substitute"
    gs_substitute: str = "@"
    gs_key: int = KEY_F8
    key_interval_ms: float = 2.0
    """Time between two key presses (a report down, a report up half-way)."""
    caps_lock: bool = False
    """CapsLock is on in the host, so the scanner compensates (it does: it reads the LED)."""
    _keymap: KeyTranslator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._keymap = KeyTranslator(self.layout, self.variant)

    def type(self, text: str, *, start: float = T0, terminator: Terminator | None = "enter") -> list[InputEventRecord]:
        """The events for ``text`` (``\\x1d`` sent per :attr:`gs`), then the terminator key."""
        strokes: list[list[Frame]] = []
        for char in text:
            strokes.extend(self._strokes_for(char))
        if terminator is not None:
            strokes.append(_tap(Chord(_TERMINATOR_KEYS[terminator])))
        return self._timed(strokes, start)

    def tap(self, code: int, *, start: float = T0) -> list[InputEventRecord]:
        """One key pressed and released (e.g. CapsLock)."""
        return self._timed([_tap(Chord(code))], start)

    def _strokes_for(self, char: str) -> list[list[Frame]]:
        if char == "\x1d":
            return self._gs_strokes()
        chords = self._keymap.chord_for(char, caps_lock=self.caps_lock)
        if chords is None:
            raise ValueError(f"layout {self.layout!r} cannot type {char!r}")
        return [_tap(chord) for chord in chords]

    def _gs_strokes(self) -> list[list[Frame]]:
        if self.gs == "substitute":
            return self._strokes_for(self.gs_substitute)
        if self.gs == "fkey":
            return [_tap(Chord(self.gs_key))]
        if self.gs == "alt":
            frames: list[Frame] = [[(KEY_LEFTALT, 1)]]
            for digit in "0029":
                code = _KP_CODE_OF_DIGIT[int(digit)]
                frames += [[(code, 1)], [(code, 0)]]
            frames.append([(KEY_LEFTALT, 0)])
            return [frames]
        if self.gs == "ctrl":
            chords = self._keymap.chord_for("]", caps_lock=self.caps_lock)
            if chords is None or len(chords) != 1:
                raise ValueError(f"layout {self.layout!r} has no plain ] key")
            (bracket,) = chords
        else:
            bracket = Chord(KEY_RIGHTBRACE)
        down, up = _tap(bracket)
        return [[[(KEY_LEFTCTRL, 1), *down], [*up, (KEY_LEFTCTRL, 0)]]]

    def _timed(self, strokes: list[list[Frame]], start: float) -> list[InputEventRecord]:
        """Space key presses ``key_interval_ms`` apart, the frames of one stroke evenly between."""
        events: list[InputEventRecord] = []
        interval = self.key_interval_ms / 1000
        for index, frames in enumerate(strokes):
            at = start + index * interval
            step = interval / len(frames)
            for frame_index, frame in enumerate(frames):
                events.extend(frame_events(frame, at + frame_index * step))
        return events


def _tap(chord: Chord) -> list[Frame]:
    mods = [code for held, code in ((chord.shift, KEY_LEFTSHIFT), (chord.altgr, KEY_RIGHTALT)) if held]
    down = [(code, 1) for code in mods] + [(chord.code, 1)]
    up = [(chord.code, 0)] + [(code, 0) for code in reversed(mods)]
    return [down, up]


def frame_events(frame: Iterable[tuple[int, int]], at: float) -> list[InputEventRecord]:
    """EV_KEY events at ``at`` closed by a SYN_REPORT, as one HID report gives."""
    events = [InputEventRecord.at(at, EV_KEY, code, value) for code, value in frame]
    events.append(InputEventRecord.at(at, EV_SYN, SYN_REPORT, 0))
    return events


def shifted(events: Sequence[InputEventRecord], seconds: float) -> list[InputEventRecord]:
    """The same events ``seconds`` later (microsecond exact)."""
    delta = round(seconds * 1_000_000)
    out = []
    for event in events:
        usec = event.sec * 1_000_000 + event.usec + delta
        out.append(InputEventRecord(usec // 1_000_000, usec % 1_000_000, event.type, event.code, event.value))
    return out


def write_recording(path: Path, events: Iterable[InputEventRecord]) -> None:
    path.write_bytes(pack_input_events(events))


def read_recording(path: Path) -> list[InputEventRecord]:
    return unpack_input_events(path.read_bytes())


# --------------------------------------------------------------------------------------------
# FAKE interface and device
# --------------------------------------------------------------------------------------------


class VirtualClock:
    """Monotonic seconds that only move when the fake device says time passed."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance_to(self, when: float) -> None:
        with self._lock:
            self._now = max(self._now, when)


@dataclass(frozen=True)
class RecordedSession:
    """What the device sends from being plugged in (opened) to being unplugged."""

    events: Sequence[InputEventRecord]
    unplug_after_ms: float | None = None
    """None: stays plugged, silent, once the events are out. Else: ENODEV this long after the last."""


SCANNER_INFO = DeviceInfo(
    path="/dev/input/event5",
    name="Honeywell Imaging & Mobility 1900",
    phys="usb-0000:01:00.0-1.3/input0",
    uniq="19123B4567",
    vendor=0x0C2E,
    product=0x0B61,
    by_id=("usb-Honeywell_Imaging___Mobility_1900_19123B4567-event-kbd",),
)
KEYBOARD_INFO = DeviceInfo(
    path="/dev/input/event3",
    name="AT Translated Set 2 keyboard",
    phys="isa0060/serio0/input0",
    by_id=(),
)


class FakeEvdevInterface:
    """FAKE interface: lists a real-looking keyboard and the scanner, and opens the scanner
    as a :class:`FakeDevice` playing the next :class:`RecordedSession`.

    Each session is moved in time to start ``lead_ms`` after the virtual "now" when it is
    opened. The scanner is absent from the first ``absent_at_start`` listings, and from
    ``absent_after_unplug`` listings after an unplug, then back (replugged).
    """

    def __init__(
        self,
        sessions: Iterable[RecordedSession],
        clock: VirtualClock,
        *,
        scanner: DeviceInfo = SCANNER_INFO,
        absent_at_start: int = 0,
        absent_after_unplug: int = 2,
        lead_ms: float = 10.0,
    ) -> None:
        self.sessions = list(sessions)
        self.clock = clock
        self.scanner = scanner
        self.lead_ms = lead_ms
        self.absent_after_unplug = absent_after_unplug
        self._absent_left = absent_at_start
        self.list_calls = 0
        self.opened: list[FakeDevice] = []

    def list_devices(self) -> list[DeviceInfo]:
        self.list_calls += 1
        if self._absent_left > 0:
            self._absent_left -= 1
            return [KEYBOARD_INFO]
        return [KEYBOARD_INFO, self.scanner]

    def open(self, info: DeviceInfo, *, grab: bool) -> FakeDevice:
        if info != self.scanner:
            raise PermissionError(errno.EACCES, "the fake only opens the scanner", info.path)
        session = self.sessions.pop(0) if self.sessions else RecordedSession(())
        events = list(session.events)
        if events:
            events = shifted(events, self.clock() + self.lead_ms / 1000 - events[0].timestamp)
        device = FakeDevice(info, events, session.unplug_after_ms, self, grabbed=grab)
        self.opened.append(device)
        return device

    def unplugged(self) -> None:
        self._absent_left = self.absent_after_unplug


class FakeDevice:
    """FAKE opened device: returns one SYN frame per read, in virtual time."""

    def __init__(
        self,
        info: DeviceInfo,
        events: list[InputEventRecord],
        unplug_after_ms: float | None,
        interface: FakeEvdevInterface,
        *,
        grabbed: bool,
    ) -> None:
        self._info = info
        self._events = events
        self._index = 0
        self._unplug_after_ms = unplug_after_ms
        self._interface = interface
        self._clock = interface.clock
        self.grabbed = grabbed
        self.closed = False
        self.gone = False
        self._interrupted = threading.Event()

    @property
    def info(self) -> DeviceInfo:
        return self._info

    def read(self, timeout: float | None) -> list[InputEventRecord]:
        if self._interrupted.is_set():
            return []
        if self.gone:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        now = self._clock()
        limit = None if timeout is None else now + timeout
        if self._index < len(self._events):
            at = self._events[self._index].timestamp
            if limit is not None and at > limit:
                self._clock.advance_to(limit)
                return []
            self._clock.advance_to(at)
            return self._next_frame()
        if self._unplug_after_ms is not None:
            last = self._events[-1].timestamp if self._events else now
            unplug_at = last + self._unplug_after_ms / 1000
            if limit is not None and unplug_at > limit:
                self._clock.advance_to(limit)
                return []
            self._clock.advance_to(unplug_at)
            self.gone = True
            self._interface.unplugged()
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        if limit is not None:
            self._clock.advance_to(limit)
            return []
        self._interrupted.wait()  # nothing more will ever come: block like poll() until stop()
        return []

    def _next_frame(self) -> list[InputEventRecord]:
        frame = []
        while self._index < len(self._events):
            event = self._events[self._index]
            self._index += 1
            frame.append(event)
            if event.type == EV_SYN and event.code == SYN_REPORT:
                break
        return frame

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        self.closed = True


# --------------------------------------------------------------------------------------------
# Recordings
# --------------------------------------------------------------------------------------------

GS1_PAYLOAD = "0103400930000120" + "17261231" + "10LOT-A1b" + "\x1d" + "21SN42xYz"
"""GS1 DataMatrix on a medicine box: (01) GTIN with the CIP13 3400930000120, (17) expiry
2026-12-31, (10) lot, GS, (21) serial. Mixed case and ``-`` exercise AZERTY."""

RECORDING_FILES: dict[str, tuple[ScannerKeyboard, str, Terminator]] = {
    "fr_gs1_alt0029_enter.evdev": (
        ScannerKeyboard("fr", gs="alt", key_interval_ms=1.6),
        GS1_PAYLOAD,
        "enter",
    ),
}


def main() -> None:
    RECORDINGS.mkdir(exist_ok=True)
    for name, (keyboard, text, terminator) in RECORDING_FILES.items():
        events = keyboard.type(text, start=T0, terminator=terminator)
        write_recording(RECORDINGS / name, events)
        print(f"{name}: {len(events)} events")


if __name__ == "__main__":
    main()
