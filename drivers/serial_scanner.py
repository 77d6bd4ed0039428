"""Serial (RS-232 / USB-CDC) code scanners through pyserial, turned into core ``ScanEvent``s.

A serial scanner sends a byte stream, not scans: the driver has to cut it into frames itself. Scanners are
configured in the field with a suffix (CR, LF, CRLF) or with none at all, so framing is configurable: a
terminator ends a frame, and an idle gap (bytes followed by silence longer than the gap) also ends one, which
is the only framing when the scanner sends no suffix and a safety net when it was configured without one.

Nothing is interpreted here: 0x1D group separators and an AIM symbology prefix (``]d2``...) stay in the raw
bytes, because the core parses codes from the exact bytes (and strips the prefix itself).

Scanners get unplugged at a counter. A read error marks the device lost, the partial frame is dropped (half a
code is worse than none), and the port is reopened *by its path* (a stable ``/dev/serial/by-id/...`` link
follows the device to its new ``ttyACMn``) with a blocking wait between attempts. pyserial flushes the
input buffer when it opens a port, so bytes sent while the port was closed are gone: a scan made during a
replug has to be made again, and never arrives as half a code.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import serial

from appliance.codes.symbology import split_symbology
from appliance.ports import Clock, DeviceStatusSink, ScanSink
from appliance.scan import ScanEvent
from drivers.worker import DriverThread

log = logging.getLogger(__name__)


class Terminator(Enum):
    """Suffix the scanner appends to each code (its "suffix" setting)."""

    CR = b"\r"
    LF = b"\n"
    CRLF = b"\r\n"
    NONE = b""


@dataclass(frozen=True, slots=True)
class SerialScannerConfig:
    """How to reach one serial scanner and how it frames its codes.

    The defaults match a typical USB-CDC imager with a CR suffix: the baud rate only matters for real RS-232
    links (USB-CDC ignores it), and a 50 ms idle gap is long against a scanner's burst (about 1 ms per byte
    at 9600 baud) yet short against a person presenting the next code.
    """

    path: str
    """Device path; prefer the stable ``/dev/serial/by-id/...`` link so that a replug finds the device."""
    source_id: str | None = None
    """``ScanEvent.source``; defaults to ``serial:`` + the file name of ``path``."""
    baudrate: int = 9600
    terminator: Terminator = Terminator.CR
    idle_gap_ms: float | None = 50.0
    """Silence that ends a frame; None disables it (only allowed with a terminator)."""
    aim_prefix: bool = False
    """The scanner prefixes the AIM symbology id (``]d2``...): copy it to ``ScanEvent.symbology``.
    The raw bytes keep it (the core parses from the exact bytes), as in the keyboard-wedge driver."""
    max_frame: int = 8192
    """Longest frame accepted; longer unterminated input is line noise and is dropped."""
    read_timeout_ms: float = 20.0
    """Longest blocking read: bounds both the idle-gap flush latency and how fast ``stop()`` returns."""
    reconnect_interval_s: float = 1.0
    """Wait between attempts to reopen a lost port."""

    def __post_init__(self) -> None:
        if self.terminator is Terminator.NONE and self.idle_gap_ms is None:
            raise ValueError("a serial scanner without terminator needs an idle gap to frame its scans")
        if self.idle_gap_ms is not None and self.idle_gap_ms <= 0:
            raise ValueError(f"idle_gap_ms must be positive, got {self.idle_gap_ms}")
        if self.read_timeout_ms <= 0 or self.reconnect_interval_s <= 0:
            raise ValueError("read_timeout_ms and reconnect_interval_s must be positive")
        if self.max_frame < 1:
            raise ValueError(f"max_frame must be at least 1, got {self.max_frame}")

    @property
    def source(self) -> str:
        return self.source_id or f"serial:{os.path.basename(self.path)}"

    @property
    def idle_gap(self) -> float | None:
        """The idle gap in seconds, the unit of the clocks."""
        return None if self.idle_gap_ms is None else self.idle_gap_ms / 1000


class SerialFramer:
    """Cuts a timed byte stream into frames; pure (the caller passes the time), so it tests exactly.

    Frames made only of CR/LF bytes are dropped: no code is blank, and they are what a scanner sending
    CRLF leaves behind when it is configured as CR (or LF). Anything else passes untouched.
    """

    def __init__(self, terminator: Terminator, idle_gap: float | None, max_frame: int = 8192) -> None:
        """``idle_gap`` in seconds, like the times passed to ``feed`` and ``poll``; None: terminator only."""
        self._terminator = terminator.value
        self._idle_gap = idle_gap
        self._max_frame = max_frame
        self._buffer = bytearray()
        self._last_byte_at = 0.0

    @property
    def pending(self) -> bool:
        """Whether a partial frame is waiting for its terminator or idle gap."""
        return bool(self._buffer)

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """Add bytes that arrived at ``now``; return the frames they complete, oldest first."""
        frames = self.poll(now)
        if not data:
            return frames
        self._buffer += data
        self._last_byte_at = now
        if self._terminator:
            *complete, rest = bytes(self._buffer).split(self._terminator)
            frames.extend(frame for frame in complete if not _blank(frame))
            self._buffer = bytearray(rest)
        if len(self._buffer) > self._max_frame:
            log.warning("serial frame longer than %d bytes without terminator: dropped", self._max_frame)
            self._buffer.clear()
        return frames

    def poll(self, now: float) -> list[bytes]:
        """The pending frame if the line has been silent for longer than the idle gap at ``now``."""
        if self._buffer and self._idle_gap is not None and now - self._last_byte_at > self._idle_gap:
            frame = bytes(self._buffer)
            self._buffer.clear()
            if not _blank(frame):
                return [frame]
        return []

    def reset(self) -> None:
        """Forget the partial frame (the device went away in the middle of a scan)."""
        self._buffer.clear()


def _blank(frame: bytes) -> bool:
    return not frame.strip(b"\r\n")


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the scanner uses, so a test or another transport can stand in."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def close(self) -> None: ...


PortOpener = Callable[[SerialScannerConfig], SerialPort]
"""Opens the port named by the config; raises ``serial.SerialException`` or ``OSError`` when it cannot."""


def open_pyserial(config: SerialScannerConfig) -> SerialPort:
    """The real port: raw 8N1, no flow control, exclusive so that no other process steals bytes."""
    port: SerialPort = serial.Serial(
        config.path, baudrate=config.baudrate, timeout=config.read_timeout_ms / 1000, exclusive=True
    )
    return port


_READ_ERRORS = (serial.SerialException, OSError)


def _tell(notify: Callable[..., None], *args: str) -> None:
    """Call a status sink without letting its failure stop the driver."""
    try:
        notify(*args)
    except Exception:
        log.exception("device status sink failed")


class SerialScanner(DriverThread):
    """One serial scanner: a reader thread that frames the stream and hands each scan to the sink.

    Nothing is opened at construction; ``start()`` starts the thread, which opens the port. The sink and
    the status sink are called from that thread. A sink that raises is logged and the driver keeps going.
    """

    def __init__(
        self,
        config: SerialScannerConfig,
        sink: ScanSink,
        status: DeviceStatusSink | None = None,
        *,
        opener: PortOpener = open_pyserial,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self._sink = sink
        self._status = status
        self._opener = opener
        self._clock = clock
        self._wall_clock = wall_clock
        self._framer = SerialFramer(config.terminator, config.idle_gap, config.max_frame)
        self._lost = False

    @property
    def source(self) -> str:
        return self.config.source

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._open()
            if port is None:
                self._stop.wait(self.config.reconnect_interval_s)
                continue
            try:
                self._read_until_error(port)
            finally:
                self._framer.reset()
                self._close(port)

    def _open(self) -> SerialPort | None:
        try:
            port = self._opener(self.config)
        except _READ_ERRORS as exc:
            self._mark_lost(f"cannot open {self.config.path}: {exc}")
            return None
        if self._lost:
            self._lost = False
            log.info("scanner %s found again", self.source)
            if self._status is not None:
                _tell(self._status.device_found, self.source)
        return port

    def _read_until_error(self, port: SerialPort) -> None:
        while not self._stop.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except _READ_ERRORS as exc:
                if self._framer.pending:
                    log.warning("scanner %s lost in the middle of a scan: partial scan dropped", self.source)
                self._mark_lost(f"read failed: {exc}")
                # Wait before reopening, so that a device that fails right after opening is not hammered.
                self._stop.wait(self.config.reconnect_interval_s)
                return
            for frame in self._framer.feed(data, self._clock()):
                self._emit(frame)

    def _emit(self, frame: bytes) -> None:
        symbology = split_symbology(frame)[0] if self.config.aim_prefix else None
        event = ScanEvent(raw=frame, source=self.source, timestamp=self._wall_clock(), symbology=symbology)
        try:
            self._sink(event)
        except Exception:
            # No raw bytes in the log: a scan may carry patient data.
            log.exception("scan sink failed on a %d-byte scan from %s", len(frame), self.source)

    def _mark_lost(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        log.warning("scanner %s lost: %s", self.source, reason)
        if self._status is not None:
            _tell(self._status.device_lost, self.source, reason)

    def _close(self, port: SerialPort) -> None:
        try:
            port.close()
        except _READ_ERRORS:
            log.debug("closing %s failed", self.source, exc_info=True)
