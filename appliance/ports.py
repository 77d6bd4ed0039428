"""Ports the adapters implement or call: plain callables and protocols, no adapter imports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from appliance.scan import ScanEvent

ScanSink = Callable[[ScanEvent], None]
"""Where drivers deliver scans. Called from the driver's thread: it must not block."""

Clock = Callable[[], float]
"""Monotonic seconds, injectable so that timing rules (scanner vs person, idle gaps) test exactly."""


class DeviceStatusSink(Protocol):
    """Told when a device is lost (unplugged) or found again, so the kiosk can say so."""

    def device_lost(self, source: str, reason: str) -> None: ...

    def device_found(self, source: str) -> None: ...
