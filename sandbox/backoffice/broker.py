"""A real mosquitto on 127.0.0.1 for the tests, the benchmark and development (never shipped).

It runs the shipped ACL file verbatim and the shipped configuration rendered with a temporary
directory's paths (:func:`sync.broker.render_config`), so what is tested is what is deployed. Every
wait is bounded; :meth:`MosquittoBroker.kill` is a SIGKILL (a crash), :meth:`MosquittoBroker.stop` a
SIGTERM (mosquitto saves its persistence file on the way out).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from sandbox.backoffice.pki import Pki
from sync.broker import SHIPPED_ACL, BrokerFiles, render_config

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """The broker did not start (its log says why)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, *, up: bool, timeout: float) -> bool:
    """Wait until 127.0.0.1:``port`` accepts connections (``up``) or refuses them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                accepting = True
        except OSError:
            accepting = False
        if accepting == up:
            return True
        time.sleep(0.02)
    return False


class MosquittoBroker:
    """mosquitto with mutual TLS and the comptoir ACL, in ``directory``, on one fixed port."""

    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        port: int | None = None,
        max_inflight: int = 1000,
        autosave_changes: int = 1000,
    ) -> None:
        self.directory = directory
        self.pki = pki
        self.port = port or free_port()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        server = pki.server("broker")
        self.files = BrokerFiles(pki.ca.cert, server.cert, server.key, SHIPPED_ACL, directory / "data")
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        self.conf.write_text(
            render_config(
                self.files,
                port=self.port,
                bind="127.0.0.1",
                run_as=getpass.getuser(),
                log_dest=f"file {self.log}",
                max_inflight=max_inflight,
                autosave_changes=autosave_changes,
            ),
            encoding="utf-8",
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BrokerError("the broker is not running")
        return self.process.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start mosquitto and wait until it accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        if not wait_port(self.port, up=False, timeout=timeout):
            raise BrokerError(f"port {self.port} is still taken")
        self.process = subprocess.Popen(  # noqa: S603 - fixed binary, our own configuration file
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"mosquitto exited ({self.process.returncode}): {self.tail_log()}")
            if wait_port(self.port, up=True, timeout=0.1):
                return
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.port} within {timeout} s: {self.tail_log()}")

    def tail_log(self, size: int = 2000) -> str:
        """The end of the broker's log, for failure messages."""
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the broker crashes, no goodbye, no last save."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean stop (persistence saved)."""
        self._end(signal.SIGTERM)

    def _end(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self, *, crash: bool = True, down_for: float = 0.0) -> None:
        """Kill (or stop) the broker, leave it down ``down_for`` seconds, start it again on the same port."""
        if crash:
            self.kill()
        else:
            self.stop()
        time.sleep(down_for)
        self.start()

    def cpu_seconds(self) -> float:
        """User + system CPU time the broker process has used (from /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def rss_bytes(self) -> int:
        """Resident memory of the broker process."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
