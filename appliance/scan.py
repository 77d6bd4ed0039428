"""What a code reader hands to the core: the raw bytes of one scan and where they came from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ScanEvent:
    """One code read by one device.

    The raw bytes are kept exactly as read (group separators 0x1D included) because the
    opaque codes (apCV, ePrescription, mutuelle attestation) must be forwarded untouched and
    signatures are computed over the bytes, not over a decoded text.
    """

    raw: bytes
    source: str
    """Stable id of the device that read it, e.g. ``evdev:usb-Honeywell_1900-event-kbd``."""
    timestamp: float
    """Wall-clock seconds (``time.time()``) when the scan was complete."""
    symbology: str | None = None
    """AIM symbology identifier (``]d2``, ``]Q1``...) when the reader knows it."""
    extra: dict[str, str] = field(default_factory=dict, compare=False)
