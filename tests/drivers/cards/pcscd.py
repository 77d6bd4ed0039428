"""A private pcscd for the tests and the benchmark: its own socket, its own reader.conf, vpcd readers.

pcscd 1.9.9 (Debian) always listens on ``/run/pcscd/pcscd.comm``, except when it is socket-activated: then
it uses the listening socket it inherits as file descriptor 3 (``LISTEN_FDS=1``, ``LISTEN_PID`` = its own
pid, the systemd protocol; its log says "Started by systemd"). So the harness binds a Unix socket in a
private directory, hands it to ``pcscd -f -a -c <conf dir>`` that way, and points the client library at it
with ``PCSCLITE_CSOCK_NAME``. libpcsclite reads that variable once per process, at its first call: the
harness keeps the path already set, so that several daemons in one process (one after the other) share it.

``-c`` gives pcscd a private reader.conf directory holding one vpcd entry per virtual reader, on free TCP
ports (vpcd listens on the given port for slot ``00`` and the next for slot ``01``), so test runs never meet
the system's vpcd on 35963 nor each other. pcscd still writes and removes ``/run/pcscd/pcscd.pid``: harmless
for a socket-activated daemon, which skips the "another pcscd is running" check. Needs root for that
directory (as on the appliance and in CI).

Serial readers cannot be hot-plugged in this pcscd: built with libudev, its SIGUSR1 rescan
(``HPReCheckSerialReaders``) does nothing, and vpcd never reports its reader gone. A reader appears or
disappears only when pcscd restarts with another reader.conf: :meth:`PcscDaemon.restart` does that. And
vpcd serves one reader entry per daemon (see :meth:`PcscDaemon.add_reader`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")


def missing_tools() -> str | None:
    """Why a private pcscd with vpcd cannot run here, or None."""
    if shutil.which("pcscd") is None and not Path("/usr/sbin/pcscd").exists():
        return "pcscd is not installed (Debian package pcscd)"
    if not VPCD_DRIVER.exists():
        return f"{VPCD_DRIVER} is missing (Debian package vsmartcard-vpcd)"
    if os.geteuid() != 0:
        return "pcscd writes /run/pcscd/pcscd.pid: run as root"
    return None


def free_port_pair() -> int:
    """A port p with p and p+1 free on every interface (vpcd binds both, on all addresses)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = int(probe.getsockname()[1])
        if port >= 65535:
            continue
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("", port))
                b.bind(("", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no two consecutive free TCP ports")


def _socket_path() -> Path:
    if "PCSCLITE_CSOCK_NAME" not in os.environ:
        base = Path(tempfile.gettempdir()) / f"comptoir-pcscd-{os.getpid()}"
        os.environ["PCSCLITE_CSOCK_NAME"] = str(base / "pcscd.comm")
    return Path(os.environ["PCSCLITE_CSOCK_NAME"])


class PcscDaemon:
    """One private pcscd; ``start``/``kill``/``stop``/``restart``; vpcd readers by name."""

    def __init__(self, workdir: Path, *, debug: bool = False) -> None:
        self.workdir = workdir
        self.conf_dir = workdir / "reader.conf.d"
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "pcscd.log"
        self.socket_path = _socket_path()
        self.debug = debug
        self.ports: dict[str, int] = {}
        self.process: subprocess.Popen[bytes] | None = None

    def add_reader(self, name: str, port: int | None = None) -> int:
        """A vpcd reader named ``name`` (slots ``name 00 00`` and ``name 00 01``): its slot 00 port.

        Taken into account at the next start. One vpcd reader per daemon: vpcd keeps its connection state per
        slot number (0, 1) in one table shared by all its readers, so a second vpcd entry would share the
        first one's slots.
        """
        if self.ports and name not in self.ports:
            raise ValueError("vpcd supports one reader entry per pcscd (its slot state is shared)")
        port = port or free_port_pair()
        self.ports[name] = port
        (self.conf_dir / name.replace(" ", "_")).write_text(
            f'FRIENDLYNAME "{name}"\nDEVICENAME /dev/null:{port}\nLIBPATH {VPCD_DRIVER}\nCHANNELID {port}\n',
            encoding="ascii",
        )
        return port

    def remove_reader(self, name: str) -> None:
        """Take ``name`` out of the reader.conf (gone at the next start: a reader unplugged while down)."""
        self.ports.pop(name, None)
        with contextlib.suppress(FileNotFoundError):
            (self.conf_dir / name.replace(" ", "_")).unlink()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start pcscd on a fresh listening socket; clients may connect at once (the kernel queues them)."""
        if self.running:
            return
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(64)
        fd = os.dup(listener.fileno())
        listener.close()
        # fd 3 is where socket activation expects the socket; bash (dash takes one-digit fds only) moves it there
        # and execs pcscd, keeping its pid, which is what LISTEN_PID must name.
        redirect = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "
        flags = "-f -a -d" if self.debug else "-f -a"
        command = redirect + f'LISTEN_PID=$$ LISTEN_FDS=1 exec pcscd {flags} -c "$0"'
        with open(self.log_path, "ab") as log:
            # The conf dir goes in as $0, never into the command text.
            self.process = subprocess.Popen(
                ["/bin/bash", "-c", command, str(self.conf_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                env={k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")},
            )
        os.close(fd)

    def kill(self) -> None:
        """SIGKILL: pcscd dies without cleaning anything, as in a crash."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s."""
        self._end(signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.process = None
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds (tests only: bounded, small steps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
