"""Test helpers: a device database, a sync configuration file, events in the outbox, a TCP proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.store import outbox
from appliance.store.database import open_database, transaction
from appliance.store.sealing import FieldCipher
from sandbox.backoffice.pki import Pki
from sync.service import SyncService, load_config


def make_device_db(directory: Path) -> tuple[Path, Path]:
    """A migrated counter database and its field key file."""
    directory.mkdir(parents=True, exist_ok=True)
    db_path, key_path = directory / "comptoir.db", directory / "keys" / "field.key"
    key_path.parent.mkdir(exist_ok=True)
    FieldCipher.create_key(key_path)
    open_database(db_path).close()
    return db_path, key_path


def enqueue_events(db_path: Path, count: int, *, start: int = 0, per_transaction: int = 1000) -> list[str]:
    """``count`` back-office events (ids and amounts only); returns their keys in order."""
    keys = []
    db = open_database(db_path)
    try:
        for first in range(start, start + count, per_transaction):
            with transaction(db) as conn:
                for n in range(first, min(first + per_transaction, start + count)):
                    key = f"event:test:{n}"
                    outbox.enqueue(
                        conn,
                        stream="events",
                        key=key,
                        payload={"type": "claim.created", "claim": n, "total_cents": 100 + n},
                    )
                    keys.append(key)
    finally:
        db.close()
    return keys


def write_sync_config(
    path: Path,
    *,
    db: Path,
    key: Path,
    pki: Pki,
    broker_port: int | None,
    device: str = "ph1/c1",
    command_key: Path | None = None,
    teleservices: dict[str, str] | None = None,
    telemetry_interval: float = 60.0,
    publish_timeout: float = 3.0,
    window: int = 200,
) -> Path:
    """The TOML the sync process reads."""
    lines = ["[store]", f'db = "{db}"', f'key = "{key}"', ""]
    if broker_port is not None:
        pharmacy, name = device.split("/")
        issued = pki.client(device)
        lines += [
            "[backoffice]",
            'host = "127.0.0.1"',
            f"port = {broker_port}",
            f'pharmacy = "{pharmacy}"',
            f'device = "{name}"',
            f'ca = "{pki.ca.cert}"',
            f'cert = "{issued.cert}"',
            f'key = "{issued.key}"',
            f"telemetry_interval = {telemetry_interval}",
            f"publish_timeout = {publish_timeout}",
            "reconnect_max = 2",
        ]
        if command_key is not None:
            lines.append(f'command_key = "{command_key}"')
        lines.append("")
    if teleservices:
        lines += ["[teleservices]", *(f'{k} = "{v}"' for k, v in teleservices.items()), ""]
    lines += ["[sync]", f"window = {window}", "poll_interval = 0.1", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class TcpProxy:
    """127.0.0.1 relay in front of the broker, to cut the network without touching either end.

    ``up``: relay both ways. ``down()``: close every connection and refuse new ones (the network is
    gone). ``swallow_downstream``: bytes from the broker are read and dropped, so the broker applies
    what the box sends but the box never hears back (PUBACKs lost)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = int(self._listener.getsockname()[1])
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.accepting = True
        self.swallow_downstream = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.accepting:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, downstream: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if downstream and self.swallow_downstream:
                    continue
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Close the open connections (new ones still accepted if ``accepting``)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for s in pair:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

    def down(self) -> None:
        self.accepting = False
        self.cut()

    def up(self) -> None:
        self.swallow_downstream = False
        self.accepting = True

    def close(self) -> None:
        self._stop.set()
        self.down()
        self._listener.close()
        self._thread.join(2)


@contextmanager
def running(config: Path) -> Iterator[list[SyncService]]:
    """The sync loop on a thread of its own (it opens the database there)."""
    stop = threading.Event()
    holder: list[SyncService] = []

    def main() -> None:
        service = SyncService(load_config(config))
        holder.append(service)
        service.run(stop)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    try:
        yield holder
    finally:
        stop.set()
        for service in holder:
            service.wake.set()
        thread.join(10)
        assert not thread.is_alive()
