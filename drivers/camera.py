"""The camera as a code scanner: zxing-cpp on every frame, one ``ScanEvent`` per code presented.

A camera sees the same code in thirty frames a second while the patient holds their phone up; the core wants
one scan. ``PresenceTracker`` turns "seen in this frame" into "arrived": a code is reported when it appears,
stays silent while it is in view (a few missed frames, from blur or a glare, do not count as leaving), and
is reported again only after it has been out of view for a configurable number of frames *and* time.

Decoding is restricted to the symbols the current workflow step expects (QR for the apCV or ePrescription,
DataMatrix for a mutuelle attestation or a box): fewer false reads and less CPU. The workflow changes that
set from its own thread with ``CameraScanner.set_symbols``.

The frame source is injected (any iterable of greyscale/colour numpy frames) so that everything here is
tested on rendered codes. ``KivyCameraFrames`` is the adapter for the real device; it only moves pixels.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from appliance.ports import Clock, DeviceStatusSink, ScanSink
from appliance.scan import ScanEvent
from drivers.imaging import FoundCode, Frame, Symbol, decode_frame
from drivers.worker import DriverThread

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

FrameSource = Iterable[Frame | None]
"""Frames in order. ``None`` means "no new frame yet": a live source yields it at least every ~0.1 s so
that ``CameraScanner.stop()`` is prompt. The scanner ends when the source is exhausted."""

CodeKey = tuple[Symbol | None, bytes]
"""What makes two reads "the same code": its symbol and its exact bytes (not its position)."""


@dataclass(frozen=True, slots=True)
class CameraScannerConfig:
    """Camera scanner settings.

    A code counts as gone after ``forget_after_frames`` consecutive frames without it *and*
    ``forget_after_seconds`` since it was last seen: the frame count rides out a few blurred frames, the
    time keeps the rule the same whatever the frame rate. The defaults (5 frames, 0.5 s) mean a patient who
    takes their phone away and shows it again gets a new read, while a hand that trembles does not.
    """

    source_id: str = "camera:0"
    """``ScanEvent.source``."""
    symbols: frozenset[Symbol] = frozenset(Symbol)
    """Symbols decoded until the workflow says otherwise (``CameraScanner.set_symbols``)."""
    forget_after_frames: int = 5
    forget_after_seconds: float = 0.5

    def __post_init__(self) -> None:
        if self.forget_after_frames < 1:
            raise ValueError(f"forget_after_frames must be at least 1, got {self.forget_after_frames}")
        if self.forget_after_seconds < 0:
            raise ValueError(f"forget_after_seconds must not be negative, got {self.forget_after_seconds}")


@dataclass(slots=True)
class _Sighting:
    last_seen: float
    missed_frames: int = 0


class PresenceTracker(Generic[K]):
    """Which things are in view, frame after frame; reports only arrivals. Pure: time is passed in."""

    def __init__(self, forget_after_frames: int = 5, forget_after_seconds: float = 0.5) -> None:
        self._forget_after_frames = forget_after_frames
        self._forget_after_seconds = forget_after_seconds
        self._in_view: dict[K, _Sighting] = {}

    @property
    def in_view(self) -> frozenset[K]:
        """Things seen recently enough to count as still present."""
        return frozenset(self._in_view)

    def update(self, seen: Iterable[K], now: float) -> list[K]:
        """Record one frame's sightings at ``now``; return those that just arrived, in the order seen."""
        arrived: list[K] = []
        seen_now: set[K] = set()
        for key in seen:
            if key in seen_now:
                continue
            seen_now.add(key)
            if key not in self._in_view:
                arrived.append(key)
            self._in_view[key] = _Sighting(last_seen=now)
        for key, sighting in list(self._in_view.items()):
            if key in seen_now:
                continue
            sighting.missed_frames += 1
            if (
                sighting.missed_frames >= self._forget_after_frames
                and now - sighting.last_seen >= self._forget_after_seconds
            ):
                del self._in_view[key]
        return arrived

    def reset(self) -> None:
        """Forget everything: every code in view will be reported again."""
        self._in_view.clear()


class CameraScanner(DriverThread):
    """Decodes a frame source in a thread and delivers one ``ScanEvent`` per code presented.

    Nothing runs at construction; ``start()`` starts the thread. ``process()`` does the work for one frame
    and may be called directly (it is what the thread calls). The sink is called from the scanner's thread; a
    sink that raises is logged and the scanner keeps going. A frame source that raises ends the scanner and
    is reported to the status sink as a lost device.
    """

    def __init__(
        self,
        config: CameraScannerConfig,
        frames: FrameSource,
        sink: ScanSink,
        status: DeviceStatusSink | None = None,
        *,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self._frames = frames
        self._sink = sink
        self._status = status
        self._clock = clock
        self._wall_clock = wall_clock
        self._tracker: PresenceTracker[CodeKey] = PresenceTracker(
            config.forget_after_frames, config.forget_after_seconds
        )
        self._symbols_lock = threading.Lock()
        self._symbols = frozenset(config.symbols)

    @property
    def source(self) -> str:
        return self.config.source_id

    @property
    def symbols(self) -> frozenset[Symbol]:
        with self._symbols_lock:
            return self._symbols

    def set_symbols(self, symbols: Iterable[Symbol]) -> None:
        """Decode only these symbols from the next frame on; an empty set pauses decoding. Thread-safe.

        A code of a symbol no longer decoded leaves the view as far as the scanner can tell: when its symbol
        is expected again while it is still shown, it is reported again (the new step may want it).
        """
        chosen = frozenset(symbols)
        with self._symbols_lock:
            self._symbols = chosen

    def process(self, frame: Frame) -> list[ScanEvent]:
        """Decode one frame, deliver the codes that just came into view, and return their events."""
        symbols = self.symbols
        found: list[FoundCode] = []
        if symbols:
            try:
                found = decode_frame(frame, symbols)
            except Exception:
                # A malformed frame (wrong dtype or shape) must not end the scanner; say what it was.
                log.exception(
                    "camera %s: cannot decode a %s frame of shape %s",
                    self.source,
                    getattr(frame, "dtype", "?"),
                    getattr(frame, "shape", "?"),
                )
        by_key = {(code.symbol, code.raw): code for code in found}
        events = []
        for key in self._tracker.update(by_key, self._clock()):
            code = by_key[key]
            event = ScanEvent(raw=code.raw, source=self.source, timestamp=self._wall_clock(), symbology=code.symbology)
            events.append(event)
            try:
                self._sink(event)
            except Exception:
                # No raw bytes in the log: a code may carry patient data.
                log.exception("scan sink failed on a %d-byte code from %s", len(code.raw), self.source)
        return events

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if self._stop.is_set():
                    return
                if frame is not None:
                    self.process(frame)
        except Exception as exc:
            log.exception("camera %s: frame source failed", self.source)
            if self._status is not None:
                try:
                    self._status.device_lost(self.source, f"frame source failed: {exc}")
                except Exception:
                    log.exception("device status sink failed")


def rgba_to_grey(pixels: bytes, size: tuple[int, int], *, flip_vertical: bool = False) -> Frame:
    """Greyscale (BT.601 luma) frame from RGBA bytes of ``size`` = (width, height), row by row.

    Greyscale because zxing-cpp binarises luminance anyway and a third of the data decodes faster.
    """
    width, height = size
    rgba = np.frombuffer(pixels, dtype=np.uint8).reshape(height, width, 4)
    if flip_vertical:
        rgba = rgba[::-1]
    rgb = rgba[..., :3].astype(np.uint16)
    grey = (rgb[..., 0] * 77 + rgb[..., 1] * 150 + rgb[..., 2] * 29) >> 8
    return np.ascontiguousarray(grey, dtype=np.uint8)


class KivyCameraFrames:
    """The real camera: V4L2 frames through Kivy's camera core provider, as a ``FrameSource``.

    Not tested on the device here (no camera, no Kivy in the test environment): keep it thin. What it does:

    - ``open()``/``close()`` run on the Kivy main thread (the texture lives in the GL context): they create
      ``kivy.core.camera.Camera`` (imported there, lazily, so that importing this module needs no Kivy)
      and start/stop it. Kivy picks its Linux provider (GStreamer's v4l2src or OpenCV), both V4L2.
    - on each ``on_texture`` (main thread), the texture's RGBA pixels are read back and turned into a
      greyscale numpy frame, which replaces any frame not yet taken: a slow decode skips frames instead of
      falling behind the patient.
    - iterating (on the scanner thread) yields the latest frame, or ``None`` every ``poll`` seconds when
      there is none, and ends after ``close()``.

    ``flip_vertical``: reading pixels back returns rows in upload order, which for Kivy's providers is top
    row first. Should a provider upload bottom-up, set it: a mirrored DataMatrix does not decode.
    Reading pixels back from the GPU costs time on a Pi-class board; a provider exposing its CPU buffer
    would avoid it, at the price of depending on provider internals.
    """

    def __init__(
        self,
        index: int = 0,
        resolution: tuple[int, int] = (640, 480),
        *,
        flip_vertical: bool = False,
        poll: float = 0.1,
    ) -> None:
        self.index = index
        self.resolution = resolution
        self.flip_vertical = flip_vertical
        self._poll = poll
        self._latest: queue.Queue[Frame] = queue.Queue(maxsize=1)
        self._closed = threading.Event()
        self._camera: Any = None

    def open(self) -> None:
        """Start the camera. Kivy main thread only."""
        if self._camera is not None:
            return
        core_camera = importlib.import_module("kivy.core.camera")
        self._closed.clear()
        camera = core_camera.Camera(index=self.index, resolution=self.resolution, stopped=True)
        camera.bind(on_texture=self._on_texture)
        camera.start()
        self._camera = camera

    def close(self) -> None:
        """Stop the camera and end the iteration. Kivy main thread only."""
        self._closed.set()
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.unbind(on_texture=self._on_texture)
            camera.stop()

    def _on_texture(self, camera: Any) -> None:
        texture = camera.texture
        if texture is not None:
            width, height = texture.size
            self.push_rgba(bytes(texture.pixels), (int(width), int(height)))

    def push_rgba(self, pixels: bytes, size: tuple[int, int]) -> None:
        """Offer a new RGBA picture of ``size`` = (width, height); it replaces one not yet taken."""
        frame = rgba_to_grey(pixels, size, flip_vertical=self.flip_vertical)
        with contextlib.suppress(queue.Empty):
            self._latest.get_nowait()
        try:
            self._latest.put_nowait(frame)
        except queue.Full:  # only one producer (the main thread); kept for safety
            log.debug("camera frame dropped")

    def __iter__(self) -> Iterator[Frame | None]:
        while not self._closed.is_set():
            try:
                yield self._latest.get(timeout=self._poll)
            except queue.Empty:
                yield None
