"""USB keyboard-wedge barcode scanners read through evdev, grabbed so scans never reach the kiosk.

The contract follows Odoo's IoT box (an interface lists devices, a driver matches one and
handles it) without any registry built at import time:

- :class:`WedgeInterface` lists the input devices present and opens (grabs) one.
  :class:`EvdevInterface` is the real, thin one over ``/dev/input`` and python-evdev; tests
  inject a fake that replays recorded ``struct input_event`` records.
- :class:`KeyboardWedgeScanner` is the driver: it matches one device with its
  :class:`DeviceMatch`, reads it on its own thread, and hands each scan to the core as a
  :class:`~appliance.scan.ScanEvent` through a ``ScanSink``. It reports unplug/replug to a
  ``DeviceStatusSink`` and finds the device again by polling.
- :class:`ScanAssembler` is the pure logic: input events in, completed bursts out (key codes
  translated with xkb, group separators normalised to 0x1D, framing by terminator key or
  idle gap, scanner told from a person by inter-key timing).

Nothing opens a device or starts a thread at import or construction time: only ``start()``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import logging
import os
import select
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from appliance.codes.symbology import split_symbology
from appliance.ports import Clock, DeviceStatusSink, ScanSink
from appliance.scan import ScanEvent
from drivers.keymaps import (
    EV_KEY,
    EV_SYN,
    KEY_RIGHTBRACE,
    KEYPAD_DIGITS,
    SYN_DROPPED,
    SYN_REPORT,
    KeyStroke,
    KeyTranslator,
    keysym_exists,
)
from drivers.worker import DriverThread

log = logging.getLogger(__name__)

GS = "\x1d"
"""ASCII group separator, the FNC1 stand-in of GS1 and the field separator of 2D-DOC."""

# --------------------------------------------------------------------------------------------
# Kernel input events
# --------------------------------------------------------------------------------------------

INPUT_EVENT = struct.Struct("llHHi")
"""``struct input_event`` as the kernel lays it out: timeval (sec, usec as native long), type
(u16), code (u16), value (s32). 24 bytes on 64-bit Linux."""


class InputEventRecord(NamedTuple):
    """One ``struct input_event``."""

    sec: int
    usec: int
    type: int
    code: int
    value: int

    @property
    def timestamp(self) -> float:
        return self.sec + self.usec / 1_000_000

    @classmethod
    def at(cls, timestamp: float, type_: int, code: int, value: int) -> InputEventRecord:
        usec_total = round(timestamp * 1_000_000)
        return cls(usec_total // 1_000_000, usec_total % 1_000_000, type_, code, value)


def pack_input_events(events: Iterable[InputEventRecord]) -> bytes:
    """Serialise events as the kernel would hand them to ``read(2)`` on ``/dev/input/eventN``."""
    return b"".join(INPUT_EVENT.pack(*event) for event in events)


def unpack_input_events(data: bytes) -> list[InputEventRecord]:
    """Parse raw ``struct input_event`` records (a recording, or bytes read from the device)."""
    if len(data) % INPUT_EVENT.size:
        raise ValueError(f"{len(data)} bytes is not a whole number of {INPUT_EVENT.size}-byte input events")
    return [InputEventRecord(*fields) for fields in INPUT_EVENT.iter_unpack(data)]


# --------------------------------------------------------------------------------------------
# Devices: what an interface lists, how a driver matches one
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """An input device as listed by an interface (nothing is held open)."""

    path: str
    """``/dev/input/eventN``: changes across replugs, never use it as identity."""
    name: str
    phys: str = ""
    """Physical topology, e.g. ``usb-0000:01:00.0-1.3/input0``: stable for a given USB port."""
    uniq: str = ""
    """Serial number when the device reports one."""
    vendor: int = 0
    product: int = 0
    by_id: tuple[str, ...] = ()
    """Basenames of the ``/dev/input/by-id`` links pointing at it (vendor, model, serial)."""


@dataclass(frozen=True, slots=True)
class DeviceMatch:
    """Stable identity of one scanner. Every field given must match; at least one is required.

    Prefer ``by_id`` (``usb-Honeywell_1900-event-kbd``: survives replug on any port), else
    ``uniq`` (serial), else ``name`` (shell glob) with ``phys`` to tell two identical models apart.
    """

    by_id: str | None = None
    """Basename (or full path) of a ``/dev/input/by-id`` link."""
    name: str | None = None
    """Device name, shell-style glob allowed (``"Honeywell*"``)."""
    phys: str | None = None
    uniq: str | None = None
    vendor: int | None = None
    product: int | None = None

    def __post_init__(self) -> None:
        if all(getattr(self, f) is None for f in ("by_id", "name", "phys", "uniq", "vendor", "product")):
            raise ValueError("DeviceMatch needs at least one of by_id, name, phys, uniq, vendor, product")

    def matches(self, info: DeviceInfo) -> bool:
        if self.by_id is not None and os.path.basename(self.by_id) not in info.by_id:
            return False
        if self.name is not None and not fnmatch.fnmatchcase(info.name, self.name):
            return False
        checks = ((self.phys, info.phys), (self.uniq, info.uniq))
        if any(want is not None and want != got for want, got in checks):
            return False
        ids = ((self.vendor, info.vendor), (self.product, info.product))
        return all(want is None or want == got for want, got in ids)

    def identity(self) -> str:
        """A readable stable id, used as the ScanEvent source when none is configured."""
        if self.by_id is not None:
            return os.path.basename(self.by_id)
        if self.uniq is not None:
            return self.uniq
        parts = [p for p in (self.name, self.phys) if p is not None]
        if self.vendor is not None or self.product is not None:
            parts.append(f"{self.vendor or 0:04x}:{self.product or 0:04x}")
        return "@".join(parts)


DEFAULT_TERMINATORS = frozenset({"Return", "KP_Enter", "Tab", "ISO_Left_Tab"})


@dataclass(frozen=True, slots=True)
class KeyboardWedgeConfig:
    """One keyboard-wedge scanner: which device, which layout it types on, how it frames scans."""

    match: DeviceMatch
    layout: str = "fr"
    """xkb layout the scanner is configured for: ``fr`` (AZERTY), ``us``, ``be``, ``ch``..."""
    variant: str | None = None
    """xkb variant, e.g. ``"fr"`` with ``ch`` for Swiss French; None for the layout's default."""
    gs_substitute: str | None = None
    """The character the scanner types in place of GS (0x1D), e.g. ``"@"`` or ``"~"``. Every
    such character becomes 0x1D, so pick one that never occurs in the codes read."""
    gs_key: str | None = None
    """xkb keysym name of the key the scanner presses for GS, e.g. ``"F8"``."""
    max_inter_key_ms: float = 30.0
    """A burst with any gap between two key presses longer than this is a person typing.
    Scanners type a key every 1-10 ms; even a fast typist leaves 60 ms and more between most keys."""
    idle_gap_ms: float = 50.0
    """No key event for this long ends a scan that has no terminator key."""
    terminators: frozenset[str] = DEFAULT_TERMINATORS
    """Keysym names that end a scan (not part of it). Ctrl+] and Alt+0029 never end one."""
    encoding: str = "latin-1"
    """How typed text becomes ``ScanEvent.raw``. ISO-8859-1 is the default character set of QR
    and DataMatrix, so a scanner that types ``é`` for byte 0xE9 gives 0xE9 back. Characters
    the encoding cannot hold become ``?``."""
    aim_prefix: bool = False
    """The scanner prefixes the AIM symbology id (``]d2``...): copy it to ``ScanEvent.symbology``.
    The raw bytes keep it (the core parses from the exact bytes), as in the serial driver."""
    source_id: str | None = None
    """``ScanEvent.source``; default ``evdev:`` + the match identity."""
    grab: bool = True
    """Take the device exclusively (EVIOCGRAB) so scans never reach the kiosk as keystrokes."""
    rediscover_interval_s: float = 1.0
    """How often to look for the device again while it is absent."""

    def __post_init__(self) -> None:
        if self.gs_substitute is not None and len(self.gs_substitute) != 1:
            raise ValueError(f"gs_substitute must be one character, not {self.gs_substitute!r}")
        if not 0 < self.max_inter_key_ms < self.idle_gap_ms:
            raise ValueError(
                f"need 0 < max_inter_key_ms ({self.max_inter_key_ms}) < idle_gap_ms ({self.idle_gap_ms}):"
                " a longer inter-key limit would never be seen, the idle gap ends the burst first"
            )
        if self.rediscover_interval_s <= 0:
            raise ValueError("rediscover_interval_s must be positive")
        "".encode(self.encoding)  # unknown codec -> LookupError now rather than at the first scan

    @property
    def source(self) -> str:
        return self.source_id or f"evdev:{self.match.identity()}"


# --------------------------------------------------------------------------------------------
# The pure logic: events in, bursts out
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Burst:
    """Keys that came together, ended by a terminator key or an idle gap."""

    text: str
    raw: bytes
    is_scan: bool
    """True when the keys came at scanner speed; False for a person typing."""
    ended_by: str
    """The terminator keysym (``Return``, ``Tab``...) or ``"idle"``."""
    presses: int
    """Key presses that typed something (the terminator included; modifiers are not counted)."""
    slowest_gap_ms: float | None
    """Longest gap between two such presses; None for a single press (a burst of one key
    proves nothing about its speed, so it is never taken for a scan)."""
    started_at: float
    ended_at: float
    """Time of the last key event (before the idle gap, if that ended it)."""


@dataclass(slots=True)
class _OpenBurst:
    started_at: float
    last_press: float
    last_event: float
    presses: int = 1
    slowest_gap: float | None = None
    chars: list[str] = field(default_factory=list)
    dropped: bool = False


_EPSILON = 1e-6  # event timestamps have microsecond resolution


class ScanAssembler:
    """Pure framing of keyboard-wedge input: feed ``input_event`` records, get :class:`Burst` s.

    - Keys become text with a :class:`KeyTranslator` on the configured layout (Shift, AltGr,
      CapsLock and dead keys tracked by xkb).
    - Group separator, whichever way the scanner sends it, becomes ``\\x1d``: the configured
      substitute character, the configured key (``F8``), Ctrl+] (xkb's Control transformation
      on the layout's ``]``, or Ctrl plus the US ``]`` key position), or an Alt code typed on
      the keypad (Alt held, KP0 KP0 KP2 KP9, Alt released; any Alt code works: with a leading
      0 it is Windows-1252, without it is code page 437, as on Windows).
    - Other control characters are kept only when typed with Ctrl (Ctrl+D is EOT); Backspace,
      Escape, Delete are not data.
    - A burst ends on a terminator key (Enter, keypad Enter, Tab by default) or when no key
      event comes for ``idle_gap_ms``: :meth:`expire` checks that with the current time, and
      the next event's timestamp does too. Times are the events' timestamps.
    - A burst is a scan when it has at least two key presses that type something (characters,
      GS, Alt-code digits, the terminator; not modifiers nor dead keys on their own) and none
      came more than ``max_inter_key_ms`` after the previous one.
    - When the kernel reports dropped events (SYN_DROPPED), the burst in progress is discarded
      whole, up to its terminator or idle gap.
    - Bursts with no text (a lone Enter, Shift pressed alone) are dropped silently.
    """

    def __init__(self, config: KeyboardWedgeConfig, translator: KeyTranslator | None = None) -> None:
        self.config = config
        self.translator = translator or KeyTranslator(config.layout, config.variant)
        for name in (config.gs_key, *config.terminators):
            if name is not None and not keysym_exists(name):
                raise ValueError(f"{name!r} is not an xkb keysym name (F8, Return, KP_Enter, Tab...)")
        self._idle = config.idle_gap_ms / 1000
        self._max_gap = config.max_inter_key_ms / 1000
        self._burst: _OpenBurst | None = None
        self._alt_digits = ""
        self._resyncing = False

    @property
    def pending(self) -> bool:
        """A burst is open (some keys came, not yet ended)."""
        return self._burst is not None

    def deadline(self) -> float | None:
        """When the open burst ends by idle gap if no key comes, or None if none is open."""
        return None if self._burst is None else self._burst.last_event + self._idle

    def reset(self) -> None:
        """Discard the open burst and every held key (device lost, reopened)."""
        self._burst = None
        self._alt_digits = ""
        self._resyncing = False
        self.translator.reset()

    def expire(self, now: float) -> list[Burst]:
        """End the open burst if ``now`` is past its idle deadline."""
        deadline = self.deadline()
        if deadline is None or now < deadline - _EPSILON:
            return []
        return self._finish("idle")

    def feed(self, event: InputEventRecord) -> list[Burst]:
        """Take one event; return the bursts it completed (usually none, at most two)."""
        if event.type == EV_SYN:
            if event.code == SYN_DROPPED:
                # The kernel buffer overflowed: keys were lost, so the key state is unknown and the
                # burst in progress (up to its end: terminator or idle gap) has holes.
                log.warning("input events dropped by the kernel; discarding the scan in progress")
                self.reset()
                now = event.timestamp
                self._burst = _OpenBurst(started_at=now, last_press=now, last_event=now, presses=0, dropped=True)
                self._resyncing = True
            elif event.code == SYN_REPORT:
                self._resyncing = False
            return []
        if event.type != EV_KEY or self._resyncing:
            return []
        now = event.timestamp
        done = self.expire(now)
        stroke = self.translator.feed(event.code, event.value)
        if self._burst is not None:
            self._burst.last_event = now
        if stroke is not None:
            done.extend(self._press(stroke, now))
        if self._alt_digits and not self.translator.alt_held:
            self._append(_alt_code(self._alt_digits))
            self._alt_digits = ""
        return done

    def _press(self, stroke: KeyStroke, now: float) -> list[Burst]:
        if stroke.keysym in self.config.terminators:
            self._count_press(now)
            return self._finish(stroke.keysym)
        if stroke.alt and stroke.code in KEYPAD_DIGITS:
            self._count_press(now)
            self._alt_digits += str(KEYPAD_DIGITS[stroke.code])
            return []
        text = self._text_of(stroke)
        if text:  # modifiers, dead keys, unconfigured function keys: no press of their own
            self._count_press(now)
            self._append(text)
        return []

    def _count_press(self, now: float) -> None:
        burst = self._burst
        if burst is None:
            self._burst = _OpenBurst(started_at=now, last_press=now, last_event=now)
            return
        burst.presses += 1
        if burst.presses == 1:  # first real press of a burst opened by SYN_DROPPED
            burst.last_press = now
            return
        gap = now - burst.last_press
        burst.slowest_gap = gap if burst.slowest_gap is None else max(burst.slowest_gap, gap)
        burst.last_press = now

    def _text_of(self, stroke: KeyStroke) -> str:
        config = self.config
        if config.gs_key is not None and stroke.keysym == config.gs_key:
            return GS
        if stroke.ctrl and stroke.code == KEY_RIGHTBRACE:
            return GS  # Ctrl + the US "]" key, whatever this layout prints on it
        text = stroke.text
        if not stroke.ctrl and any(not ch.isprintable() for ch in text):
            return ""
        if config.gs_substitute is not None:
            text = text.replace(config.gs_substitute, GS)
        return text

    def _append(self, text: str) -> None:
        if text and self._burst is not None:
            self._burst.chars.append(text)

    def _finish(self, ended_by: str) -> list[Burst]:
        burst, self._burst = self._burst, None
        self._alt_digits = ""
        if burst is None:
            return []
        text = "".join(burst.chars)
        if burst.dropped:
            log.warning("discarded a burst of %d keys with events dropped by the kernel", burst.presses)
            return []
        if not text:
            return []
        slowest = burst.slowest_gap
        is_scan = slowest is not None and slowest <= self._max_gap + _EPSILON
        return [
            Burst(
                text=text,
                raw=text.encode(self.config.encoding, errors="replace"),
                is_scan=is_scan,
                ended_by=ended_by,
                presses=burst.presses,
                slowest_gap_ms=None if slowest is None else slowest * 1000,
                started_at=burst.started_at,
                ended_at=burst.last_event,
            )
        ]


def _alt_code(digits: str) -> str:
    value = int(digits)
    if value > 255:
        return chr(value) if value <= 0x10FFFF else ""
    codec = "cp1252" if digits.startswith("0") else "cp437"
    try:
        return bytes([value]).decode(codec)
    except UnicodeDecodeError:  # the five holes of cp1252
        return chr(value)


# --------------------------------------------------------------------------------------------
# Sources: the interface lists and opens devices, a device is read with a timeout
# --------------------------------------------------------------------------------------------


class WedgeDevice(Protocol):
    """An opened (grabbed) input device."""

    @property
    def info(self) -> DeviceInfo: ...

    def read(self, timeout: float | None) -> Sequence[InputEventRecord]:
        """Events available within ``timeout`` seconds (None: wait until some come or
        :meth:`interrupt`); empty when the time ran out or it was interrupted. Raises
        ``OSError`` (``ENODEV`` when unplugged) when the device is gone."""
        ...

    def interrupt(self) -> None:
        """Make the current or next :meth:`read` return at once. Callable from any thread."""
        ...

    def close(self) -> None: ...


class WedgeInterface(Protocol):
    """Lists the input devices present and opens one."""

    def list_devices(self) -> Sequence[DeviceInfo]: ...

    def open(self, info: DeviceInfo, *, grab: bool) -> WedgeDevice: ...


_EVIOCSCLOCKID = 0x400445A0  # _IOW('E', 0xa0, int)


class EvdevInterface:
    """The real interface: ``/dev/input/event*`` through python-evdev (imported on first use).

    Event timestamps are switched to CLOCK_MONOTONIC (EVIOCSCLOCKID) so they compare with
    ``time.monotonic()``, the scanner's default clock; on a kernel that refuses, events are
    stamped with ``time.monotonic()`` when read (timing then has the read granularity).
    """

    def __init__(self, input_dir: str = "/dev/input") -> None:
        self.input_dir = input_dir

    def list_devices(self) -> list[DeviceInfo]:
        import evdev

        links: dict[str, list[str]] = {}
        by_id_dir = Path(self.input_dir, "by-id")
        if by_id_dir.is_dir():
            for link in by_id_dir.iterdir():
                links.setdefault(os.path.realpath(link), []).append(link.name)
        found = []
        for path in sorted(evdev.list_devices(self.input_dir, writable=False)):
            try:
                device = evdev.InputDevice(path)
            except OSError as exc:  # unplugged meanwhile, or no permission
                log.debug("cannot open %s to identify it: %s", path, exc)
                continue
            try:
                found.append(
                    DeviceInfo(
                        path=path,
                        name=str(device.name),
                        phys=str(device.phys or ""),
                        uniq=str(device.uniq or ""),
                        vendor=int(device.info.vendor),
                        product=int(device.info.product),
                        by_id=tuple(sorted(links.get(os.path.realpath(path), []))),
                    )
                )
            finally:
                device.close()
        return found

    def open(self, info: DeviceInfo, *, grab: bool) -> EvdevDevice:
        return EvdevDevice(info, grab=grab)


class EvdevDevice:
    """One opened evdev device, read with ``poll`` on its fd and a wake-up pipe."""

    def __init__(self, info: DeviceInfo, *, grab: bool) -> None:
        import evdev

        self._info = info
        self._device: Any = evdev.InputDevice(info.path)
        self._lock = threading.Lock()
        self._closed = False
        try:
            if grab:
                self._device.grab()
            self._kernel_time = _use_monotonic_timestamps(self._device.fd)
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self._device.close()
            raise
        self._poll = select.poll()
        self._poll.register(self._device.fd, select.POLLIN)
        self._poll.register(self._wake_r, select.POLLIN)

    @property
    def info(self) -> DeviceInfo:
        return self._info

    def read(self, timeout: float | None) -> list[InputEventRecord]:
        ready = self._poll.poll(None if timeout is None else max(0, round(timeout * 1000)))
        fds = {fd for fd, _ in ready}
        if self._wake_r in fds:
            _drain(self._wake_r)
            return []
        if not fds:
            return []
        try:
            events = list(self._device.read())
        except BlockingIOError:
            return []
        if self._kernel_time:
            return [InputEventRecord(e.sec, e.usec, e.type, e.code, e.value) for e in events]
        now = time.monotonic()
        return [InputEventRecord.at(now, e.type, e.code, e.value) for e in events]

    def interrupt(self) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(BlockingIOError):  # pipe full: a wake-up is pending anyway
                    os.write(self._wake_w, b"\0")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)
        self._device.close()  # closing the fd also releases the grab


def _use_monotonic_timestamps(fd: int) -> bool:
    try:
        fcntl.ioctl(fd, _EVIOCSCLOCKID, struct.pack("i", time.CLOCK_MONOTONIC))
    except OSError as exc:
        log.warning("evdev: cannot switch event timestamps to CLOCK_MONOTONIC (%s); stamping on read", exc)
        return False
    return True


def _drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 64):
            pass


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------

TypingSink = Callable[[str, Burst], None]
"""Told ``(source, burst)`` for each burst typed at human speed."""


class _NoStatus:
    def device_lost(self, source: str, reason: str) -> None:
        pass

    def device_found(self, source: str) -> None:
        pass


class KeyboardWedgeScanner(DriverThread):
    """Driver for one keyboard-wedge scanner: scans go to ``sink`` as :class:`ScanEvent` s.

    ``start()`` runs a thread that finds the device (:class:`DeviceMatch`), grabs it and reads
    it; ``stop()`` ends it within milliseconds. Both sinks are called from that thread.

    Human typing (a burst slower than ``max_inter_key_ms``, or a single key) is never reported
    as a scan: it goes to ``on_typing`` when given, and is dropped (logged at debug level)
    otherwise.

    When reading fails (``ENODEV`` on unplug, or any other ``OSError``) the scan in progress is
    discarded, ``status.device_lost`` is told, and the device is looked for again every
    ``rediscover_interval_s`` (a blocking wait, woken by ``stop()``); when it is back it is
    grabbed again and ``status.device_found`` is told. ``device_found`` is also told on the
    first connection, and ``device_lost(source, "not found")`` when it is absent at start.

    ``clock`` gives "now" in the time base of the event timestamps (monotonic seconds with
    :class:`EvdevInterface`); ``wall_clock`` stamps the ScanEvents.
    """

    def __init__(
        self,
        config: KeyboardWedgeConfig,
        sink: ScanSink,
        *,
        status: DeviceStatusSink | None = None,
        on_typing: TypingSink | None = None,
        interface: WedgeInterface | None = None,
        clock: Clock = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.config = config
        self._sink = sink
        self._status: DeviceStatusSink = status or _NoStatus()
        self._on_typing = on_typing
        self._interface = interface
        self._clock = clock
        self._wall_clock = wall_clock
        self._assembler = ScanAssembler(config)  # compiles the keymap: a bad layout fails here
        self._lock = threading.Lock()
        self._device: WedgeDevice | None = None

    @property
    def source(self) -> str:
        return self.config.source

    @property
    def connected(self) -> bool:
        return self._device is not None

    def supports(self, info: DeviceInfo) -> bool:
        """Whether this driver handles the listed device."""
        return self.config.match.matches(info)

    def start(self) -> None:
        if self._interface is None:
            self._interface = EvdevInterface()
        super().start()

    def _interrupt(self) -> None:
        """A read blocked on the device returns at once (its wake-up pipe)."""
        with self._lock:
            if self._device is not None:
                self._device.interrupt()

    def __enter__(self) -> KeyboardWedgeScanner:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        connected: bool | None = None  # None: not yet known
        while not self._stop.is_set():
            device, reason = self._open()
            if device is None:
                if connected is not False:
                    connected = False
                    self._tell_lost(reason)
                if self._stop.wait(self.config.rediscover_interval_s):
                    break
                continue
            with self._lock:
                if self._stop.is_set():
                    device.close()
                    break
                self._device = device
            self._assembler.reset()
            connected = True
            log.info("%s: reading %s (%s)", self.source, device.info.path, device.info.name)
            self._tell_found()
            try:
                self._pump(device)
            except OSError as exc:
                reason = _describe(exc)
                log.warning("%s: device lost: %s", self.source, reason)
                self._lost(reason)
                connected = False
            except Exception:
                log.exception("%s: driver error; reconnecting", self.source)
                self._lost("driver error")
                connected = False
            finally:
                with self._lock:
                    self._device = None
                device.close()
            if connected is False and self._stop.wait(self.config.rediscover_interval_s):
                break

    def _lost(self, reason: str) -> None:
        self._assembler.reset()  # the scan in progress is incomplete: never deliver it
        self._tell_lost(reason)

    def _open(self) -> tuple[WedgeDevice | None, str]:
        if self._interface is None:
            raise RuntimeError("not started")
        try:
            candidates = [info for info in self._interface.list_devices() if self.supports(info)]
        except OSError as exc:
            return None, f"cannot list input devices: {_describe(exc)}"
        if not candidates:
            return None, "not found"
        if len(candidates) > 1:
            log.warning("%s: %d devices match, using %s", self.source, len(candidates), candidates[0].path)
        try:
            return self._interface.open(candidates[0], grab=self.config.grab), ""
        except OSError as exc:
            return None, f"cannot open {candidates[0].path}: {_describe(exc)}"

    def _pump(self, device: WedgeDevice) -> None:
        assembler = self._assembler
        while not self._stop.is_set():
            deadline = assembler.deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            events = device.read(timeout)
            if self._stop.is_set():
                return
            for event in events:
                self._deliver(assembler.feed(event))
            self._deliver(assembler.expire(self._clock()))

    def _deliver(self, bursts: list[Burst]) -> None:
        for burst in bursts:
            try:
                if burst.is_scan:
                    self._sink(self._scan_event(burst))
                elif self._on_typing is not None:
                    self._on_typing(self.source, burst)
                else:
                    log.debug("%s: ignoring typing (%d keys)", self.source, burst.presses)
            except Exception:
                log.exception("%s: scan sink failed", self.source)

    def _scan_event(self, burst: Burst) -> ScanEvent:
        symbology = split_symbology(burst.raw)[0] if self.config.aim_prefix else None
        return ScanEvent(
            raw=burst.raw,
            source=self.source,
            timestamp=self._wall_clock(),
            symbology=symbology,
            extra={"ended_by": burst.ended_by, "layout": self._layout_name()},
        )

    def _layout_name(self) -> str:
        variant = self.config.variant
        return self.config.layout + (f"({variant})" if variant else "")

    def _tell_lost(self, reason: str) -> None:
        try:
            self._status.device_lost(self.source, reason)
        except Exception:
            log.exception("%s: status sink failed", self.source)

    def _tell_found(self) -> None:
        try:
            self._status.device_found(self.source)
        except Exception:
            log.exception("%s: status sink failed", self.source)


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENODEV:
        return "unplugged (ENODEV)"
    name = errno.errorcode.get(exc.errno or 0, "")
    return f"{exc.strerror or exc} ({name})" if name else str(exc)
