"""systemd's watchdog, pinged from the Kivy clock: a frozen UI stops pinging and gets restarted.

sd_notify is a datagram on the unix socket named by ``$NOTIFY_SOCKET`` (``@`` means the abstract
namespace); a few lines of the socket module instead of a dependency.
"""

from __future__ import annotations

import os
import socket


def sd_notify(message: str, socket_path: str | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``...) to systemd; False when not run under it."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # never block the UI thread: a full queue (nobody reading) drops the ping instead
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message.encode("utf-8"))
    except OSError:  # BlockingIOError included
        return False
    return True


def watchdog_interval(default: float = 10.0) -> float:
    """Half the watchdog period systemd asks for (``$WATCHDOG_USEC``), as its documentation advises."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    if usec.isdigit() and int(usec) > 0:
        return int(usec) / 2_000_000
    return default


class Watchdog:
    """Pings ``WATCHDOG=1``; call :meth:`ping` from the UI thread's clock, never from a helper thread."""

    def __init__(self, socket_path: str | None = None) -> None:
        self.socket_path = socket_path
        self.sent = 0

    def ready(self) -> bool:
        return sd_notify("READY=1", self.socket_path)

    def ping(self, *_: object) -> bool:
        ok = sd_notify("WATCHDOG=1", self.socket_path)
        self.sent += ok
        return ok
