"""The thread every scanner driver reads its device in: started on demand, stopped promptly.

Drivers differ in what they read (an evdev device, a serial port, camera frames) but not in how
their thread lives: nothing starts at construction, ``start`` twice is harmless, ``stop`` sets an
event the reading loop waits on (never a busy loop), wakes the device up if it blocks, and waits a
bounded time for the thread.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class DriverThread(ABC):
    """Base of the scanner drivers: subclasses implement :meth:`_run` and :attr:`source`."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    @abstractmethod
    def source(self) -> str:
        """The device id put in every ScanEvent."""

    @abstractmethod
    def _run(self) -> None:
        """The reading loop; it returns soon after ``self._stop`` is set."""

    def _interrupt(self) -> None:  # noqa: B027 - optional hook: polling loops need no wake-up
        """Wake a reading loop blocked on its device; nothing to do for loops that poll."""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start reading in a daemon thread (the device is opened, and reopened, there)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"scanner {self.source}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the loop to end, wake it, and wait up to ``timeout`` seconds for the thread."""
        self._stop.set()
        self._interrupt()
        if self.join(timeout):
            self._thread = None

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (a finite source is exhausted); True when it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("scanner %s still running after %s s", self.source, timeout)
            return False
        return True
