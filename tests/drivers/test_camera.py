"""Camera scanner on real rendered codes pasted into 640x480 frames, as a patient would present them."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from appliance.scan import ScanEvent
from drivers.camera import (
    CameraScanner,
    CameraScannerConfig,
    KivyCameraFrames,
    PresenceTracker,
    rgba_to_grey,
)
from drivers.imaging import Frame, Symbol, render

pytestmark = pytest.mark.timeout(10)

APCV = b"APCV:ctx=7f3a9c0e-1b2d-4e5f-8a9b-0c1d2e3f4a5b;v=2"
EPRESCRIPTION = b"EP-2025-0000000012345678"
MUTUELLE = b"AMC 99999999\x1dTYPE=SP\x1dMEMBRE=123456789\x1d20250101-20251231"
GS1_BOX = b"0103400930000120172512311012AB\x1d21SN0001"

QR_APCV = render(APCV, Symbol.QR, scale=3)
QR_EPRESCRIPTION = render(EPRESCRIPTION, Symbol.QR, scale=3)
DM_MUTUELLE = render(MUTUELLE, Symbol.DATAMATRIX, scale=4)
DM_BOX = render(GS1_BOX, Symbol.DATAMATRIX, gs1=True, scale=4)


def scene(*codes: tuple[Frame, int, int], seed: int = 0) -> Frame:
    """A 640x480 greyscale frame: a light noisy background with codes pasted at (x, y)."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(170, 256, size=(480, 640), dtype=np.uint8)
    for image, x, y in codes:
        height, width = image.shape
        frame[y : y + height, x : x + width] = image
    return frame


def empty(seed: int = 0) -> Frame:
    return scene(seed=seed)


class FakeClock:
    """Monotonic time that the test moves: one camera frame = 1/30 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1 / 30) -> None:
        self.now += seconds


class Sink:
    def __init__(self) -> None:
        self.events: list[ScanEvent] = []
        self.lost: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: ScanEvent) -> None:
        with self._lock:
            self.events.append(event)

    def device_lost(self, source: str, reason: str) -> None:
        self.lost.append(reason)

    def device_found(self, source: str) -> None:
        raise AssertionError("not expected")

    @property
    def raws(self) -> list[bytes]:
        with self._lock:
            return [event.raw for event in self.events]


def make(
    sink: Sink,
    clock: FakeClock,
    *,
    symbols: frozenset[Symbol] = frozenset(Symbol),
    frames: Iterator[Frame | None] | list[Frame | None] | None = None,
) -> CameraScanner:
    config = CameraScannerConfig(
        source_id="camera:test", symbols=symbols, forget_after_frames=3, forget_after_seconds=0.2
    )
    return CameraScanner(config, frames if frames is not None else [], sink, sink, clock=clock)


def feed(scanner: CameraScanner, clock: FakeClock, frames: list[Frame]) -> None:
    for frame in frames:
        scanner.process(frame)
        clock.tick()


# --- tracker -------------------------------------------------------------------------------------------


def test_tracker_reports_arrivals_only() -> None:
    tracker: PresenceTracker[str] = PresenceTracker(forget_after_frames=3, forget_after_seconds=0.0)
    assert tracker.update(["a"], 0.0) == ["a"]
    assert tracker.update(["a", "b", "b"], 0.1) == ["b"]
    assert tracker.update(["a", "b"], 0.2) == []
    assert tracker.in_view == {"a", "b"}


def test_tracker_needs_both_missed_frames_and_time() -> None:
    tracker: PresenceTracker[str] = PresenceTracker(forget_after_frames=3, forget_after_seconds=1.0)
    tracker.update(["a"], 0.0)
    for t in (0.1, 0.2, 0.3, 0.4):  # many missed frames, little time: a blur, still there
        tracker.update([], t)
    assert tracker.update(["a"], 0.5) == []
    tracker.update([], 2.0)  # long time, one missed frame: a stalled camera, still there
    assert tracker.update(["a"], 2.1) == []
    for t in (2.2, 2.3, 3.2):
        tracker.update([], t)
    assert tracker.in_view == frozenset()
    assert tracker.update(["a"], 3.3) == ["a"]


def test_tracker_reset() -> None:
    tracker: PresenceTracker[str] = PresenceTracker()
    tracker.update(["a"], 0.0)
    tracker.reset()
    assert tracker.update(["a"], 0.1) == ["a"]


def test_config_rules() -> None:
    with pytest.raises(ValueError):
        CameraScannerConfig(forget_after_frames=0)
    with pytest.raises(ValueError):
        CameraScannerConfig(forget_after_seconds=-1)


# --- scanner on rendered frames ------------------------------------------------------------------------


def test_qr_held_for_ten_frames_gives_one_event() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    # The hand moves a little from frame to frame.
    feed(scanner, clock, [scene((QR_APCV, 100 + 3 * i, 80 + 2 * i), seed=i) for i in range(10)])
    assert sink.raws == [APCV]
    event = sink.events[0]
    assert event.source == "camera:test"
    assert event.symbology == "]Q1"
    assert abs(event.timestamp - time.time()) < 5


def test_code_reported_again_after_leaving_and_coming_back() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    feed(scanner, clock, [scene((QR_APCV, 200, 150))] * 5)
    feed(scanner, clock, [empty(i) for i in range(10)])  # 10 frames = 0.33 s out of view
    feed(scanner, clock, [scene((QR_APCV, 320, 200))] * 5)
    assert sink.raws == [APCV, APCV]


def test_short_dropout_is_not_a_new_presentation() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    feed(scanner, clock, [scene((QR_APCV, 200, 150))] * 3)
    feed(scanner, clock, [empty(1), empty(2)])  # two blurred frames
    feed(scanner, clock, [scene((QR_APCV, 205, 152))] * 3)
    assert sink.raws == [APCV]


def test_two_codes_in_one_frame_give_two_events() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    feed(scanner, clock, [scene((QR_APCV, 40, 40), (DM_MUTUELLE, 340, 300))] * 4)
    assert sorted(sink.raws) == sorted([APCV, MUTUELLE])
    assert sorted(str(event.symbology)[:2] for event in sink.events) == ["]Q", "]d"]


def test_two_different_qr_codes_in_one_frame() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    feed(scanner, clock, [scene((QR_APCV, 40, 40), (QR_EPRESCRIPTION, 400, 250))] * 3)
    assert sorted(sink.raws) == sorted([APCV, EPRESCRIPTION])


def test_restricted_to_datamatrix_ignores_a_qr() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock, symbols=frozenset({Symbol.DATAMATRIX}))
    feed(scanner, clock, [scene((QR_APCV, 100, 100))] * 5)
    assert sink.raws == []
    feed(scanner, clock, [scene((QR_APCV, 100, 100), (DM_MUTUELLE, 340, 300))] * 3)
    assert sink.raws == [MUTUELLE]
    # The workflow moves to a step expecting a QR: the QR still shown is read now.
    scanner.set_symbols({Symbol.QR})
    assert scanner.symbols == {Symbol.QR}
    feed(scanner, clock, [scene((QR_APCV, 100, 100), (DM_MUTUELLE, 340, 300))] * 3)
    assert sink.raws == [MUTUELLE, APCV]


def test_no_symbols_expected_decodes_nothing() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock, symbols=frozenset())
    feed(scanner, clock, [scene((QR_APCV, 100, 100))] * 3)
    assert sink.raws == []


def test_datamatrix_keeps_group_separators() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock, symbols=frozenset({Symbol.DATAMATRIX}))
    feed(scanner, clock, [scene((DM_MUTUELLE, 250, 200))] * 2)
    feed(scanner, clock, [scene((DM_BOX, 50, 300))] * 2)
    assert sink.raws[0] == MUTUELLE
    assert sink.raws[0].count(b"\x1d") == 3
    assert sink.raws[1] == GS1_BOX
    # zxing-cpp renders these as rectangular (DMRE) symbols and reports their GS1 form as ]d8, not ]d2.
    assert sink.events[1].symbology in {"]d2", "]d8"}


def test_frames_without_code_give_nothing() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    blank = np.full((480, 640), 255, dtype=np.uint8)
    feed(scanner, clock, [blank, *(empty(seed) for seed in range(5))])
    assert sink.raws == []


def test_colour_frames_decode_too_and_bad_frames_are_skipped() -> None:
    sink, clock = Sink(), FakeClock()
    scanner = make(sink, clock)
    colour = np.repeat(scene((QR_EPRESCRIPTION, 300, 100))[..., None], 3, axis=2)
    bad = np.zeros((4, 4, 7), dtype=np.float64)
    feed(scanner, clock, [bad, colour])  # type: ignore[list-item]
    assert sink.raws == [EPRESCRIPTION]


def test_failing_sink_does_not_stop_the_scanner() -> None:
    seen: list[bytes] = []

    def flaky(event: ScanEvent) -> None:
        seen.append(event.raw)
        raise RuntimeError("core busy")

    clock = FakeClock()
    scanner = CameraScanner(CameraScannerConfig(), [], flaky, clock=clock)
    feed(scanner, clock, [scene((QR_APCV, 10, 10), (DM_MUTUELLE, 340, 300))])
    assert sorted(seen) == sorted([APCV, MUTUELLE])


# --- the thread ----------------------------------------------------------------------------------------


def test_thread_decodes_a_finite_source() -> None:
    sink = Sink()
    frames: list[Frame | None] = [None, *[scene((QR_APCV, 100, 100))] * 5, None, empty()]
    scanner = CameraScanner(CameraScannerConfig(source_id="camera:0"), frames, sink)
    assert not scanner.running  # nothing runs at construction
    scanner.start()
    assert scanner.join(5.0)
    assert sink.raws == [APCV]


def test_symbols_changed_from_another_thread_while_running() -> None:
    sink = Sink()
    go_on = threading.Event()

    def frames() -> Iterator[Frame | None]:
        for _ in range(3):
            yield scene((QR_APCV, 100, 100))
        go_on.wait(5.0)
        for _ in range(3):
            yield scene((QR_APCV, 100, 100))

    config = CameraScannerConfig(symbols=frozenset({Symbol.DATAMATRIX}))
    scanner = CameraScanner(config, frames(), sink)
    scanner.start()
    scanner.set_symbols([Symbol.QR, Symbol.DATAMATRIX])
    go_on.set()
    assert scanner.join(5.0)
    assert sink.raws == [APCV]


def test_stop_is_prompt() -> None:
    sink = Sink()
    produced = threading.Event()

    def endless() -> Iterator[Frame | None]:
        seed = 0
        while True:
            seed += 1
            produced.set()
            yield empty(seed % 4)

    scanner = CameraScanner(CameraScannerConfig(), endless(), sink)
    scanner.start()
    assert produced.wait(5.0)
    time.sleep(0.05)
    began = time.monotonic()
    scanner.stop()
    assert time.monotonic() - began < 0.5
    assert not scanner.running


def test_failing_source_reports_device_lost() -> None:
    sink = Sink()

    def broken() -> Iterator[Frame | None]:
        yield empty()
        raise OSError("VIDIOC_DQBUF: No such device")

    scanner = CameraScanner(CameraScannerConfig(), broken(), sink, sink)
    scanner.start()
    assert scanner.join(5.0)
    assert len(sink.lost) == 1
    assert "No such device" in sink.lost[0]


# --- Kivy adapter, without Kivy ------------------------------------------------------------------------


def test_rgba_to_grey() -> None:
    rgba = np.array([[[255, 255, 255, 255], [0, 0, 0, 255]], [[255, 0, 0, 255], [0, 255, 0, 255]]], dtype=np.uint8)
    grey = rgba_to_grey(rgba.tobytes(), (2, 2))
    assert grey.dtype == np.uint8
    assert grey.tolist() == [[255, 0], [76, 149]]
    assert rgba_to_grey(rgba.tobytes(), (2, 2), flip_vertical=True).tolist() == [[76, 149], [255, 0]]


def test_kivy_adapter_feeds_the_scanner_without_kivy() -> None:
    """Everything but the Kivy calls: pixels in, latest grey frame out, ``None`` while idle, end on close."""
    frames = KivyCameraFrames(poll=0.01)
    assert "kivy" not in sys.modules  # constructing it imports nothing

    grey = scene((QR_APCV, 120, 90))
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    frames.push_rgba(empty().repeat(4).tobytes(), (640, 480))  # superseded before being taken
    frames.push_rgba(rgba.tobytes(), (640, 480))

    sink = Sink()
    scanner = CameraScanner(CameraScannerConfig(), frames, sink)
    scanner.start()
    deadline = time.monotonic() + 5.0
    while not sink.raws and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sink.raws == [APCV]
    frames.close()  # no camera opened: only ends the iteration
    assert scanner.join(2.0)
