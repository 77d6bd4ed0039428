"""The counter's wall clock as the kiosk gives it to the core."""

from __future__ import annotations

import threading
import time
from datetime import datetime


class KioskClock:
    """Real seconds, optionally started at a chosen instant, and able to jump forward.

    The demo and the tests start it on the sandbox population's reference day so that rights and
    prescriptions are valid; ``advance`` lets a test reach the idle timeout without waiting two minutes.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._origin = time.time()
        self._offset = 0.0 if start is None else start.timestamp() - self._origin

    def __call__(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds
